// presence.hpp - header-only C++17 wrapper over the presence engine's C ABI.
//
//   #include "presence.hpp"   // needs include/presence.h on the include path
//
//   auto made = presence::Engine::create(R"({"clock":"manual"})");
//   if (!made) { log(made.error().message()); return; }
//   presence::Engine engine = std::move(*made);
//   presence::Result<presence::ConnectionId> c = engine.connect_user("alice");
//   presence::Result<presence::User> alice = engine.get_user("alice");   // a C++ struct
//
// Rules of this wrapper (in the style of wasmtime's .hh headers):
//
// * Two layers. The base layer never throws: every operation is `noexcept` and answers a
//   `[[nodiscard]] presence::Result<T>` holding either the value or a presence::Error
//   (the C PresenceResult and the message presence_last_error() left). It compiles with
//   -fno-exceptions -fno-rtti (Unreal's default). When exceptions are enabled
//   (__cpp_exceptions), `Result::or_throw()` is the throwing layer: it answers the value
//   or throws presence::Exception. Running out of memory inside a noexcept call
//   terminates, as in any noexcept code.
// * Answers are C++ types (User, ChannelState, std::vector<User>, ...), parsed from the
//   engine's JSON by a small reader in this header; the user needs no JSON library.
// * The engine's ABI version is checked when an Engine is created: a library older than
//   this header answers PRESENCE_ERR_STATE with a message naming both versions.
// * presence::Engine owns the handle (move-only); destroying it frees the engine. A
//   moved-from Engine holds no handle: its calls answer PRESENCE_ERR_NULL.
// * Events are typed (ABI version 2): a listener gets a presence::Event built from the
//   engine's PresenceEventInfo without JSON and without allocating; Event::json() renders
//   JSON only when asked. Engine::poll drains a connection's queue into a reused
//   presence::Batch, which allocates nothing in steady state.
// * Listeners are RAII tokens (presence::Listener): destroying one (or reset()) removes
//   its C listener without waiting (presence_remove_listener_nowait), so it never
//   deadlocks, from inside its own callback or under a lock the callback takes; the
//   engine frees the callback (user_data_free) once no call of it is running.
//   reset_and_wait() also waits for a call running on another thread (see docs/cpp.md).
//   A token must not outlive its Engine on another thread; on the same thread its
//   destructor sees that the engine is gone.
// * Event handlers must not throw. When exceptions are enabled the trampoline catches
//   whatever a handler throws (nothing crosses into C) and keeps the first one per
//   thread; the outermost wrapper call that ran the handlers answers a Result that is
//   not ok() and whose handler_exception() holds it (its value, if any, is still
//   there: the engine did the work); or_throw() rethrows it.
// * Event is a view: its string_views point into memory owned by the engine and are
//   valid only during the callback (or until its Batch is refilled). Copy what you keep.
// * Never destroy (or move-assign over) an Engine from inside one of its own callbacks.
// * The Engine is as thread-safe as the C engine; Listener tokens are not synchronised
//   themselves (do not reset one token from two threads).
#ifndef PRESENCE_HPP
#define PRESENCE_HPP

#include "presence.h"

#include <charconv>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <initializer_list>
#include <iterator>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#if defined(__cpp_exceptions)
#include <exception>
#include <stdexcept>
#endif

namespace presence {

/// Engine-assigned id of one live connection; 0 means "the host itself".
using ConnectionId = PresenceConnectionId;
/// Id of a registered listener; 0 is invalid.
using ListenerId = PresenceListenerId;
/// Milliseconds since the Unix epoch (UTC).
using UnixMillis = std::int64_t;

/// The viewer id of the host (own views of every user).
inline constexpr ConnectionId host = 0;

/// The ABI version this header was written against (the library must be at least this).
inline constexpr std::uint32_t required_abi_version = PRESENCE_ABI_VERSION;

/// Version string of the linked engine (static).
[[nodiscard]] inline std::string_view version() noexcept {
    const char *v = presence_version();
    return v ? std::string_view(v) : std::string_view();
}

/// ABI version of the linked engine.
[[nodiscard]] inline std::uint32_t abi_version() noexcept { return presence_abi_version(); }

/// "PRESENCE_ERR_NOT_FOUND" and friends.
[[nodiscard]] inline std::string_view result_name(PresenceResult r) noexcept {
    const char *n = presence_result_name(r);
    return n ? std::string_view(n) : std::string_view();
}

/// A failure: the C result code and its message.
class Error {
public:
    Error() noexcept = default;
    Error(PresenceResult code, std::string message) noexcept
        : code_(code), message_(std::move(message)) {}

    /// The C result code (PRESENCE_OK only in a default-constructed Error).
    [[nodiscard]] PresenceResult code() const noexcept { return code_; }
    /// The code's C name, e.g. "PRESENCE_ERR_JSON".
    [[nodiscard]] std::string_view code_name() const noexcept { return result_name(code_); }
    /// What went wrong, naming the function and argument (presence_last_error()).
    [[nodiscard]] const std::string &message() const noexcept { return message_; }

private:
    PresenceResult code_ = PRESENCE_OK;
    std::string message_;
};

#if defined(__cpp_exceptions)
/// What Result::or_throw() throws for an engine error.
class Exception : public std::runtime_error {
public:
    explicit Exception(const Error &error)
        : std::runtime_error(error.message()), code_(error.code()) {}
    [[nodiscard]] PresenceResult code() const noexcept { return code_; }
    [[nodiscard]] std::string_view code_name() const noexcept { return result_name(code_); }

private:
    PresenceResult code_;
};
#endif

namespace detail {

#if defined(__cpp_exceptions)
/// Per-thread state of the callback trampolines.
struct CallbackState {
    std::exception_ptr pending; ///< first exception a handler threw
    int depth = 0;              ///< handlers currently running on this thread
};
[[nodiscard]] inline CallbackState &callback_state() noexcept {
    static thread_local CallbackState state;
    return state;
}
#endif

/// The error presence_last_error() describes for result r.
[[nodiscard]] inline Error last_error(PresenceResult r) noexcept {
    const char *msg = presence_last_error();
    return Error(r, (msg != nullptr && *msg != '\0') ? std::string(msg)
                                                     : std::string(result_name(r)));
}

} // namespace detail

namespace detail {

/// What both forms of Result share: the engine's outcome and, with exceptions enabled,
/// the exception a handler threw during the call.
class ResultBase {
public:
    /// PRESENCE_OK when the engine call succeeded, else its code.
    [[nodiscard]] PresenceResult code() const noexcept { return error_.code(); }
    /// The error (code PRESENCE_OK when the engine call succeeded).
    [[nodiscard]] const Error &error() const noexcept { return error_; }
#if defined(__cpp_exceptions)
    /// The exception an event handler threw during this call, if any.
    [[nodiscard]] std::exception_ptr handler_exception() const noexcept { return handler_; }
    void set_handler_exception(std::exception_ptr e) noexcept { handler_ = std::move(e); }
#endif

protected:
    ResultBase() noexcept = default;
    explicit ResultBase(Error error) noexcept : error_(std::move(error)) {}
    [[nodiscard]] bool handler_threw() const noexcept {
#if defined(__cpp_exceptions)
        return handler_ != nullptr;
#else
        return false;
#endif
    }
    /// The throwing layer's common part: rethrow the handler's exception, or throw the error.
    void throw_if_failed(bool has_value) const {
#if defined(__cpp_exceptions)
        if (handler_) std::rethrow_exception(handler_);
        if (!has_value) throw Exception(error_);
#else
        (void)has_value;
#endif
    }

    Error error_;
#if defined(__cpp_exceptions)
    std::exception_ptr handler_;
#endif
};

} // namespace detail

/// Either a T or an Error; never throws. `Result<void>` carries only the outcome.
template <typename T>
class [[nodiscard]] Result : public detail::ResultBase {
public:
    Result(T value) noexcept : value_(std::move(value)) {}
    Result(Error error) noexcept : ResultBase(std::move(error)) {}

    /// Whether the call succeeded (and, with exceptions enabled, no handler threw).
    [[nodiscard]] bool ok() const noexcept { return value_.has_value() && !handler_threw(); }
    [[nodiscard]] explicit operator bool() const noexcept { return ok(); }
    /// Whether a value is present (the engine call succeeded). Check before `*` or `->`.
    [[nodiscard]] bool has_value() const noexcept { return value_.has_value(); }
    /// The value; requires has_value().
    [[nodiscard]] T &operator*() & noexcept { return *value_; }
    [[nodiscard]] const T &operator*() const & noexcept { return *value_; }
    [[nodiscard]] T &&operator*() && noexcept { return std::move(*value_); }
    [[nodiscard]] T *operator->() noexcept { return &*value_; }
    [[nodiscard]] const T *operator->() const noexcept { return &*value_; }
    /// The value, or `fallback` when the call failed.
    [[nodiscard]] T value_or(T fallback) && noexcept {
        return value_ ? std::move(*value_) : std::move(fallback);
    }
    [[nodiscard]] T value_or(T fallback) const & noexcept { return value_ ? *value_ : std::move(fallback); }

#if defined(__cpp_exceptions)
    /// The throwing layer: the value, or rethrow the handler's exception, or throw
    /// presence::Exception.
    T or_throw() && {
        throw_if_failed(value_.has_value());
        return std::move(*value_);
    }
#endif

private:
    std::optional<T> value_;
};

template <>
class [[nodiscard]] Result<void> : public detail::ResultBase {
public:
    Result() noexcept = default;
    Result(Error error) noexcept : ResultBase(std::move(error)) {}

    [[nodiscard]] bool ok() const noexcept { return has_value() && !handler_threw(); }
    [[nodiscard]] explicit operator bool() const noexcept { return ok(); }
    [[nodiscard]] bool has_value() const noexcept { return error_.code() == PRESENCE_OK; }

#if defined(__cpp_exceptions)
    void or_throw() && { throw_if_failed(has_value()); }
#endif
};

/// One custom field of a user or channel: its name and its value as JSON text.
struct CustomField {
    std::string name;
    std::string json; ///< e.g. "\"Alice\"", "7", "[1,2]"
};

/// The field called `name` in `fields`, or nullptr.
[[nodiscard]] inline const CustomField *find_field(const std::vector<CustomField> &fields,
                                                   std::string_view name) noexcept {
    for (const auto &f : fields) {
        if (f.name == name) return &f;
    }
    return nullptr;
}

/// A user as one viewer sees it.
struct User {
    std::string id;
    bool online = false;
    /// Present only in an own view (the user's own connections, the host).
    std::optional<bool> invisible;
    std::optional<std::string> status;
    std::optional<UnixMillis> last_active_ms;
    UnixMillis created_at_ms = 0;
    UnixMillis updated_at_ms = 0;
    std::vector<CustomField> custom;

    /// The custom field called `name`, or nullptr.
    [[nodiscard]] const CustomField *field(std::string_view name) const noexcept {
        return find_field(custom, name);
    }
};

/// A channel's own fields.
struct Channel {
    std::string cid; ///< "type:id"
    std::string type;
    std::string id;
    std::int64_t member_count = 0;
    UnixMillis created_at_ms = 0;
    UnixMillis updated_at_ms = 0;
    std::optional<UnixMillis> last_message_at_ms;
    std::vector<CustomField> custom;

    /// The custom field called `name`, or nullptr.
    [[nodiscard]] const CustomField *field(std::string_view name) const noexcept {
        return find_field(custom, name);
    }
};

/// A channel member: its id and the user as the viewer sees it.
struct Member {
    std::string user_id;
    User user;
};

/// What watch_channel and query_channels answer per channel.
struct ChannelState {
    Channel channel;
    std::vector<Member> members;
    std::int64_t watcher_count = 0; ///< distinct visible users watching
    std::vector<User> watchers;
};

namespace detail {

/// A minimal JSON reader for the engine's answers (RFC 8259; depth-limited).
namespace json {

struct Value {
    enum class Kind : std::uint8_t { null, boolean, number, string, array, object };
    Kind kind = Kind::null;
    bool boolean = false;
    std::string text;         ///< a string's decoded contents, or a number's text
    std::string key;          ///< the member name, inside an object
    std::string_view raw;     ///< the value's source text
    std::vector<Value> items; ///< array elements, or object members (with key)

    [[nodiscard]] const Value *find(std::string_view name) const noexcept {
        if (kind != Kind::object) return nullptr;
        for (const auto &m : items) {
            if (m.key == name) return &m;
        }
        return nullptr;
    }
};

class Reader {
public:
    explicit Reader(std::string_view text) noexcept : s_(text) {}

    /// Parse one whole document; false with error() on malformed input.
    [[nodiscard]] bool parse(Value &out) noexcept {
        if (!value(out, 0)) return false;
        skip_ws();
        if (pos_ != s_.size()) return fail("trailing characters");
        return true;
    }
    [[nodiscard]] const std::string &error() const noexcept { return error_; }

private:
    static constexpr int max_depth = 64;

    bool fail(const char *what) noexcept {
        if (error_.empty()) error_ = std::string(what) + " at byte " + std::to_string(pos_);
        return false;
    }
    void skip_ws() noexcept {
        while (pos_ < s_.size() &&
               (s_[pos_] == ' ' || s_[pos_] == '\n' || s_[pos_] == '\r' || s_[pos_] == '\t'))
            ++pos_;
    }
    bool literal(std::string_view word) noexcept {
        if (s_.substr(pos_, word.size()) != word) return fail("invalid literal");
        pos_ += word.size();
        return true;
    }
    bool value(Value &out, int depth) noexcept {
        if (depth > max_depth) return fail("nesting too deep");
        skip_ws();
        if (pos_ >= s_.size()) return fail("unexpected end");
        const std::size_t start = pos_;
        bool good = true;
        switch (s_[pos_]) {
        case 'n': out.kind = Value::Kind::null; good = literal("null"); break;
        case 't': out.kind = Value::Kind::boolean; out.boolean = true; good = literal("true"); break;
        case 'f': out.kind = Value::Kind::boolean; good = literal("false"); break;
        case '"': out.kind = Value::Kind::string; good = string(out.text); break;
        case '[': out.kind = Value::Kind::array; good = array(out, depth); break;
        case '{': out.kind = Value::Kind::object; good = object(out, depth); break;
        default: out.kind = Value::Kind::number; good = number(out.text); break;
        }
        if (good) out.raw = s_.substr(start, pos_ - start);
        return good;
    }
    bool number(std::string &out) noexcept {
        const std::size_t start = pos_;
        if (pos_ < s_.size() && s_[pos_] == '-') ++pos_;
        const std::size_t digits = pos_;
        while (pos_ < s_.size() && ((s_[pos_] >= '0' && s_[pos_] <= '9') || s_[pos_] == '.' ||
                                    s_[pos_] == 'e' || s_[pos_] == 'E' || s_[pos_] == '+' ||
                                    s_[pos_] == '-'))
            ++pos_;
        if (pos_ == digits) return fail("unexpected character");
        out.assign(s_.substr(start, pos_ - start));
        return true;
    }
    static void put_utf8(std::string &out, std::uint32_t cp) {
        if (cp < 0x80) {
            out += static_cast<char>(cp);
        } else if (cp < 0x800) {
            out += static_cast<char>(0xC0 | (cp >> 6));
            out += static_cast<char>(0x80 | (cp & 0x3F));
        } else if (cp < 0x10000) {
            out += static_cast<char>(0xE0 | (cp >> 12));
            out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
            out += static_cast<char>(0x80 | (cp & 0x3F));
        } else {
            out += static_cast<char>(0xF0 | (cp >> 18));
            out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
            out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
            out += static_cast<char>(0x80 | (cp & 0x3F));
        }
    }
    bool hex4(std::uint32_t &out) noexcept {
        if (s_.size() - pos_ < 4) return fail("short \\u escape");
        out = 0;
        for (int i = 0; i < 4; ++i) {
            const char c = s_[pos_++];
            out <<= 4;
            if (c >= '0' && c <= '9') out |= static_cast<std::uint32_t>(c - '0');
            else if (c >= 'a' && c <= 'f') out |= static_cast<std::uint32_t>(c - 'a' + 10);
            else if (c >= 'A' && c <= 'F') out |= static_cast<std::uint32_t>(c - 'A' + 10);
            else return fail("bad \\u escape");
        }
        return true;
    }
    bool string(std::string &out) noexcept {
        ++pos_; // the opening quote
        out.clear();
        while (pos_ < s_.size()) {
            const char c = s_[pos_++];
            if (c == '"') return true;
            if (static_cast<unsigned char>(c) < 0x20) return fail("control character in string");
            if (c != '\\') {
                out += c;
                continue;
            }
            if (pos_ >= s_.size()) break;
            const char e = s_[pos_++];
            switch (e) {
            case '"': out += '"'; break;
            case '\\': out += '\\'; break;
            case '/': out += '/'; break;
            case 'b': out += '\b'; break;
            case 'f': out += '\f'; break;
            case 'n': out += '\n'; break;
            case 'r': out += '\r'; break;
            case 't': out += '\t'; break;
            case 'u': {
                std::uint32_t cp = 0;
                if (!hex4(cp)) return false;
                if (cp >= 0xD800 && cp < 0xDC00) {
                    std::uint32_t low = 0;
                    if (s_.substr(pos_, 2) != "\\u") return fail("lone surrogate");
                    pos_ += 2;
                    if (!hex4(low)) return false;
                    if (low < 0xDC00 || low > 0xDFFF) return fail("lone surrogate");
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
                } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
                    return fail("lone surrogate");
                }
                put_utf8(out, cp);
                break;
            }
            default: return fail("bad escape");
            }
        }
        return fail("unterminated string");
    }
    bool array(Value &out, int depth) noexcept {
        ++pos_;
        skip_ws();
        if (pos_ < s_.size() && s_[pos_] == ']') {
            ++pos_;
            return true;
        }
        for (;;) {
            out.items.emplace_back();
            if (!value(out.items.back(), depth + 1)) return false;
            skip_ws();
            if (pos_ >= s_.size()) return fail("unterminated array");
            const char c = s_[pos_++];
            if (c == ']') return true;
            if (c != ',') return fail("expected , or ]");
        }
    }
    bool object(Value &out, int depth) noexcept {
        ++pos_;
        skip_ws();
        if (pos_ < s_.size() && s_[pos_] == '}') {
            ++pos_;
            return true;
        }
        for (;;) {
            skip_ws();
            if (pos_ >= s_.size() || s_[pos_] != '"') return fail("expected a member name");
            std::string key;
            if (!string(key)) return false;
            skip_ws();
            if (pos_ >= s_.size() || s_[pos_] != ':') return fail("expected :");
            ++pos_;
            out.items.emplace_back();
            out.items.back().key = std::move(key);
            if (!value(out.items.back(), depth + 1)) return false;
            skip_ws();
            if (pos_ >= s_.size()) return fail("unterminated object");
            const char c = s_[pos_++];
            if (c == '}') return true;
            if (c != ',') return fail("expected , or }");
        }
    }

    std::string_view s_;
    std::size_t pos_ = 0;
    std::string error_;
};

} // namespace json

/// Days since 1970-01-01 of a civil date (Howard Hinnant's algorithm).
[[nodiscard]] constexpr std::int64_t days_from_civil(std::int64_t y, unsigned m, unsigned d) noexcept {
    y -= m <= 2 ? 1 : 0;
    const std::int64_t era = (y >= 0 ? y : y - 399) / 400;
    const auto yoe = static_cast<unsigned>(y - era * 400);
    const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + static_cast<std::int64_t>(doe) - 719468;
}

/// Reads the engine's timestamps: "2019-01-07T13:17:42.375Z" (fraction optional).
[[nodiscard]] inline std::optional<UnixMillis> parse_time(std::string_view t) noexcept {
    auto num = [&](std::size_t at, std::size_t len, int &out) {
        if (at + len > t.size()) return false;
        auto r = std::from_chars(t.data() + at, t.data() + at + len, out);
        return r.ec == std::errc() && r.ptr == t.data() + at + len;
    };
    int y = 0, mo = 0, d = 0, h = 0, mi = 0, s = 0;
    if (t.size() < 20 || t[4] != '-' || t[7] != '-' || t[10] != 'T' || t[13] != ':' ||
        t[16] != ':' || t.back() != 'Z' || !num(0, 4, y) || !num(5, 2, mo) || !num(8, 2, d) ||
        !num(11, 2, h) || !num(14, 2, mi) || !num(17, 2, s) || mo < 1 || mo > 12 || d < 1 ||
        d > 31)
        return std::nullopt;
    int ms = 0;
    if (t[19] == '.') {
        const std::size_t digits = t.size() - 21;
        if (digits < 1 || digits > 9) return std::nullopt;
        int frac = 0;
        if (!num(20, digits, frac)) return std::nullopt;
        ms = frac;
        for (std::size_t i = digits; i < 3; ++i) ms *= 10;
        for (std::size_t i = 3; i < digits; ++i) ms /= 10;
    } else if (t.size() != 20) {
        return std::nullopt;
    }
    const std::int64_t days =
        days_from_civil(y, static_cast<unsigned>(mo), static_cast<unsigned>(d));
    return ((days * 24 + h) * 60 + mi) * 60000 + std::int64_t{s} * 1000 + ms;
}

/// Turns parsed JSON into the answer types; `failed` names the first shape error.
class Decoder {
public:
    [[nodiscard]] bool failed() const noexcept { return !error_.empty(); }
    [[nodiscard]] const std::string &error() const noexcept { return error_; }

    std::string str(const json::Value *v, const char *what) {
        if (v == nullptr || v->kind != json::Value::Kind::string) {
            mismatch(what, "a string");
            return {};
        }
        return v->text;
    }
    std::int64_t integer(const json::Value *v, const char *what) {
        std::int64_t n = 0;
        if (v == nullptr || v->kind != json::Value::Kind::number ||
            std::from_chars(v->text.data(), v->text.data() + v->text.size(), n).ec != std::errc())
            mismatch(what, "an integer");
        return n;
    }
    UnixMillis time(const json::Value *v, const char *what) {
        return optional_time(v, what).value_or(0);
    }
    std::optional<UnixMillis> optional_time(const json::Value *v, const char *what) {
        if (v == nullptr || v->kind == json::Value::Kind::null) return std::nullopt;
        std::optional<UnixMillis> t;
        if (v->kind == json::Value::Kind::string) t = parse_time(v->text);
        if (!t) mismatch(what, "an RFC 3339 timestamp");
        return t;
    }

    User user(const json::Value &v) {
        User u;
        if (v.kind != json::Value::Kind::object) {
            mismatch("user", "an object");
            return u;
        }
        for (const auto &m : v.items) {
            if (m.key == "id") u.id = str(&m, "user.id");
            else if (m.key == "online") u.online = boolean(&m, "user.online");
            else if (m.key == "invisible") u.invisible = boolean(&m, "user.invisible");
            else if (m.key == "status") {
                if (m.kind != json::Value::Kind::null) u.status = str(&m, "user.status");
            } else if (m.key == "last_active") u.last_active_ms = optional_time(&m, "user.last_active");
            else if (m.key == "created_at") u.created_at_ms = time(&m, "user.created_at");
            else if (m.key == "updated_at") u.updated_at_ms = time(&m, "user.updated_at");
            else u.custom.push_back(CustomField{m.key, std::string(m.raw)});
        }
        if (u.id.empty()) mismatch("user.id", "present");
        return u;
    }

    Channel channel(const json::Value &v) {
        Channel c;
        if (v.kind != json::Value::Kind::object) {
            mismatch("channel", "an object");
            return c;
        }
        for (const auto &m : v.items) {
            if (m.key == "cid") c.cid = str(&m, "channel.cid");
            else if (m.key == "type") c.type = str(&m, "channel.type");
            else if (m.key == "id") c.id = str(&m, "channel.id");
            else if (m.key == "member_count") c.member_count = integer(&m, "channel.member_count");
            else if (m.key == "created_at") c.created_at_ms = time(&m, "channel.created_at");
            else if (m.key == "updated_at") c.updated_at_ms = time(&m, "channel.updated_at");
            else if (m.key == "last_message_at")
                c.last_message_at_ms = optional_time(&m, "channel.last_message_at");
            else c.custom.push_back(CustomField{m.key, std::string(m.raw)});
        }
        return c;
    }

    std::vector<User> users(const json::Value *v, const char *what) {
        std::vector<User> out;
        if (v == nullptr || v->kind != json::Value::Kind::array) {
            mismatch(what, "an array");
            return out;
        }
        out.reserve(v->items.size());
        for (const auto &item : v->items) out.push_back(user(item));
        return out;
    }

    ChannelState state(const json::Value &v) {
        ChannelState s;
        const json::Value *channel_v = v.find("channel");
        if (channel_v == nullptr) {
            mismatch("channel state", "an object with \"channel\"");
            return s;
        }
        s.channel = channel(*channel_v);
        const json::Value *members = v.find("members");
        if (members == nullptr || members->kind != json::Value::Kind::array) {
            mismatch("members", "an array");
            return s;
        }
        s.members.reserve(members->items.size());
        for (const auto &m : members->items) {
            const json::Value *u = m.find("user");
            s.members.push_back(Member{str(m.find("user_id"), "member.user_id"),
                                       u ? user(*u) : User{}});
        }
        s.watcher_count = integer(v.find("watcher_count"), "watcher_count");
        s.watchers = users(v.find("watchers"), "watchers");
        return s;
    }

    void mismatch(const char *what, const char *expected) {
        if (error_.empty()) error_ = std::string(what) + " is not " + expected;
    }

private:
    bool boolean(const json::Value *v, const char *what) {
        if (v == nullptr || v->kind != json::Value::Kind::boolean) {
            mismatch(what, "a boolean");
            return false;
        }
        return v->boolean;
    }
    std::string error_;
};

/// Parse an engine answer `text` and decode it with `decode(decoder, root)`.
template <typename T, typename F>
[[nodiscard]] Result<T> decode(std::string_view text, F decode_fn) noexcept {
    json::Value root;
    json::Reader reader(text);
    if (!reader.parse(root)) {
        return Error(PRESENCE_ERR_JSON, "engine answer did not parse: " + reader.error());
    }
    Decoder decoder;
    T value = decode_fn(decoder, root);
    if (decoder.failed()) {
        return Error(PRESENCE_ERR_JSON, "engine answer has an unexpected shape: " + decoder.error());
    }
    return value;
}

} // namespace detail

/// The kinds of events (one per event type).
enum class EventKind : std::uint8_t {
    unknown,
    user_presence_changed, ///< "user.presence.changed"
    user_updated,          ///< "user.updated"
    user_watching_start,   ///< "user.watching.start"
    user_watching_stop,    ///< "user.watching.stop"
    member_added,          ///< "member.added"
    member_removed,        ///< "member.removed"
    connection_closed,     ///< "connection.closed"
    engine_overflow,       ///< "engine.overflow" (host listeners only)
    cluster_status,        ///< "cluster.status" (host listeners only)
};

namespace detail {

struct KindName {
    std::uint32_t c_kind;
    EventKind kind;
    std::string_view name;
};

/// In PRESENCE_EVENT_* order (checked at compile time below).
inline constexpr KindName kind_names[] = {
    {PRESENCE_EVENT_USER_PRESENCE_CHANGED, EventKind::user_presence_changed, "user.presence.changed"},
    {PRESENCE_EVENT_USER_UPDATED, EventKind::user_updated, "user.updated"},
    {PRESENCE_EVENT_USER_WATCHING_START, EventKind::user_watching_start, "user.watching.start"},
    {PRESENCE_EVENT_USER_WATCHING_STOP, EventKind::user_watching_stop, "user.watching.stop"},
    {PRESENCE_EVENT_MEMBER_ADDED, EventKind::member_added, "member.added"},
    {PRESENCE_EVENT_MEMBER_REMOVED, EventKind::member_removed, "member.removed"},
    {PRESENCE_EVENT_CONNECTION_CLOSED, EventKind::connection_closed, "connection.closed"},
    {PRESENCE_EVENT_ENGINE_OVERFLOW, EventKind::engine_overflow, "engine.overflow"},
    {PRESENCE_EVENT_CLUSTER_STATUS, EventKind::cluster_status, "cluster.status"},
};

[[nodiscard]] constexpr bool kinds_in_order() noexcept {
    for (std::size_t i = 0; i < std::size(kind_names); ++i) {
        if (kind_names[i].c_kind != i + 1) return false;
    }
    return true;
}
static_assert(kinds_in_order(), "kind_names must list PRESENCE_EVENT_* as 1, 2, ...");

[[nodiscard]] inline std::string_view close_reason_name(std::uint32_t reason) noexcept {
    switch (reason) {
    case PRESENCE_CLOSE_DISCONNECT: return "disconnect";
    case PRESENCE_CLOSE_TIMEOUT: return "timeout";
    case PRESENCE_CLOSE_SLOW_CONSUMER: return "slow_consumer";
    case PRESENCE_CLOSE_NODE_LOST: return "node_lost";
    default: return {};
    }
}

[[nodiscard]] inline std::string_view view(const char *s) noexcept {
    return s ? std::string_view(s) : std::string_view();
}

/// A string of known length from a PresenceEventInfo (no scan for the NUL); empty for NULL.
[[nodiscard]] inline std::string_view view(const char *s, std::uint32_t len) noexcept {
    return s ? std::string_view(s, len) : std::string_view();
}

} // namespace detail

/// The kind of an event type name (unknown for names this header does not know).
[[nodiscard]] inline EventKind event_kind(std::string_view type) noexcept {
    for (const auto &k : detail::kind_names) {
        if (k.name == type) return k.kind;
    }
    return EventKind::unknown;
}

/// One event, typed: in a listener callback, or read from a Batch. Every string_view is
/// valid only during the callback, or until the batch is refilled or destroyed. Building
/// one allocates nothing; JSON is rendered only when json() is called.
class Event {
public:
    EventKind kind = EventKind::unknown;
    std::string_view type;      ///< "user.presence.changed", ...
    std::uint64_t seq = 0;      ///< engine-wide, strictly increasing
    ConnectionId connection_id = 0; ///< recipient; 0 for host listeners
    std::string_view user_id;   ///< the user the event is about; empty when none
    std::string_view cid;       ///< the channel; empty when none
    /// The user's online flag as the recipient sees it: for host listeners that is
    /// the own view, where an invisible user with connections is online.
    bool online = false;
    bool invisible = false;     ///< own views only; false in public views
    std::optional<std::string_view> status; ///< the user's status, when set
    std::optional<UnixMillis> last_active_ms;
    std::int64_t watcher_count = -1;        ///< user.watching.*: the count after the change
    std::string_view close_reason;          ///< connection.closed: "disconnect", "timeout", ...
    ConnectionId closed_connection_id = 0;  ///< connection.closed: the connection that ended
    UnixMillis created_at_ms = 0;           ///< when the event happened
    /// The user's key: a number per user, never given to another user for the engine's
    /// life (index per-user data by it instead of hashing `user_id`); 0 when none.
    std::uint64_t user_key = 0;
    std::uint64_t dropped = 0;              ///< engine.overflow: how many calls were discarded

    /// The event as JSON (the same text the JSON calls give), rendered on request; valid
    /// as long as the event's strings are.
    [[nodiscard]] Result<std::string_view> json() const noexcept {
        const char *text = nullptr;
        const PresenceResult r = batch_ != nullptr ? presence_batch_event_json(batch_, index_, &text)
                                                   : presence_event_info_json(info_, &text);
        if (r != PRESENCE_OK) return detail::last_error(r);
        return detail::view(text);
    }

    /// The C view this event was read from.
    [[nodiscard]] const PresenceEventInfo &info() const noexcept { return *info_; }

    /// A typed view of `info`; `batch`/`index` name where JSON is rendered from (none in a callback).
    Event(const PresenceEventInfo &info, PresenceEventBatch *batch = nullptr, std::uint32_t index = 0) noexcept
        : seq(info.seq), connection_id(info.connection_id), user_id(detail::view(info.user_id, info.user_id_len)),
          cid(detail::view(info.cid, info.cid_len)), online(info.online), invisible(info.invisible),
          watcher_count(info.watcher_count), close_reason(detail::close_reason_name(info.close_reason)),
          closed_connection_id(info.closed_connection_id), created_at_ms(info.created_at_ms),
          user_key(info.user_key), dropped(info.dropped), info_(&info), batch_(batch), index_(index) {
        // The PRESENCE_EVENT_* numbers are 1, 2, ... in kind_names' order.
        if (info.kind >= 1 && info.kind <= std::size(detail::kind_names)) {
            const detail::KindName &k = detail::kind_names[info.kind - 1];
            kind = k.kind;
            type = k.name;
        } else {
            type = detail::view(info.type_name);
        }
        if (info.status != nullptr) status = std::string_view(info.status, info.status_len);
        if (info.last_active_ms != INT64_MIN) last_active_ms = info.last_active_ms;
    }

private:
    const PresenceEventInfo *info_;
    PresenceEventBatch *batch_;
    std::uint32_t index_;
};

/// Callback type of listeners. Must not throw (see the rules at the top).
using EventHandler = std::function<void(const Event &)>;

/// Quote a string as a JSON string literal (with the quotes).
[[nodiscard]] inline std::string json_quote(std::string_view s) {
    std::string out;
    out.reserve(s.size() + 2);
    out += '"';
    for (char ch : s) {
        const auto c = static_cast<unsigned char>(ch);
        switch (c) {
        case '"': out += "\\\""; break;
        case '\\': out += "\\\\"; break;
        case '\b': out += "\\b"; break;
        case '\f': out += "\\f"; break;
        case '\n': out += "\\n"; break;
        case '\r': out += "\\r"; break;
        case '\t': out += "\\t"; break;
        default:
            if (c < 0x20) {
                char buf[8];
                std::snprintf(buf, sizeof buf, "\\u%04x", static_cast<unsigned>(c));
                out += buf;
            } else {
                out += ch;
            }
        }
    }
    out += '"';
    return out;
}

/// A JSON array of strings: ["a","b"].
template <typename Range>
[[nodiscard]] std::string json_string_array(const Range &items) {
    std::string out = "[";
    bool first = true;
    for (const auto &item : items) {
        if (!first) out += ',';
        first = false;
        out += json_quote(std::string_view(item));
    }
    out += ']';
    return out;
}

namespace detail {

/// Is the linked library recent enough for this header? (Versions are additive.)
[[nodiscard]] inline Result<void> check_abi(std::uint32_t linked, std::uint32_t required) noexcept {
    if (linked >= required) return {};
    return Error(PRESENCE_ERR_STATE,
                 "presence.hpp needs ABI version " + std::to_string(required) +
                     " but the linked presence library has ABI version " +
                     std::to_string(linked) + "; link the library this header came with");
}

/// Attach a handler exception pending on this thread to the outermost call's result.
template <typename R>
[[nodiscard]] R with_pending(R result) noexcept {
#if defined(__cpp_exceptions)
    CallbackState &st = callback_state();
    if (st.depth == 0 && st.pending) result.set_handler_exception(std::exchange(st.pending, nullptr));
#endif
    return result;
}

/// The outcome of a C call with no value.
[[nodiscard]] inline Result<void> done(PresenceResult r) noexcept {
    return with_pending(r == PRESENCE_OK ? Result<void>() : Result<void>(last_error(r)));
}

/// The outcome of a C call that wrote `value` on success.
template <typename T>
[[nodiscard]] Result<T> done(PresenceResult r, T value) noexcept {
    return with_pending(r == PRESENCE_OK ? Result<T>(std::move(value)) : Result<T>(last_error(r)));
}

struct EngineDeleter {
    void operator()(PresenceEngine *e) const noexcept { presence_engine_free(e); }
};

struct StringDeleter {
    void operator()(char *s) const noexcept { presence_string_free(s); }
};

/// A string the C side hands over through `char **`, released with presence_string_free.
class OwnedString {
public:
    OwnedString() noexcept = default;
    [[nodiscard]] char **out() noexcept { return &raw_; }
    [[nodiscard]] std::string_view view() const noexcept {
        return raw_ ? std::string_view(raw_) : std::string_view();
    }
    ~OwnedString() { std::unique_ptr<char, StringDeleter> release(raw_); }
    OwnedString(const OwnedString &) = delete;
    OwnedString &operator=(const OwnedString &) = delete;

private:
    char *raw_ = nullptr;
};

/// A NUL-terminated copy of a string_view; invalid (with error()) when it holds a NUL.
class CStr {
public:
    explicit CStr(std::string_view s) noexcept : s_(s), valid_(s.find('\0') == std::string_view::npos) {}
    [[nodiscard]] const char *get() const noexcept { return s_.c_str(); }
    [[nodiscard]] bool valid() const noexcept { return valid_; }
    [[nodiscard]] static Error error() noexcept {
        return Error(PRESENCE_ERR_INVALID, "string argument contains a NUL byte");
    }

private:
    std::string s_;
    bool valid_;
};

/// Like CStr, but nullopt becomes a NULL pointer.
class OptCStr {
public:
    explicit OptCStr(std::optional<std::string_view> s) noexcept {
        if (s) value_.emplace(*s);
    }
    [[nodiscard]] const char *get() const noexcept { return value_ ? value_->get() : nullptr; }
    [[nodiscard]] bool valid() const noexcept { return !value_ || value_->valid(); }

private:
    std::optional<CStr> value_;
};

/// What a listener's user_data points to. The engine frees it (box_free) once the
/// listener is removed and no dispatch still holds it, or with the engine: a callback
/// that destroys its own token keeps running on a live box.
struct ListenerBox {
    EventHandler fn;
};

inline void box_free(void *box) noexcept { delete static_cast<ListenerBox *>(box); }

/// Run a handler, keeping (with exceptions enabled) the first exception it throws.
inline void run_handler(const EventHandler &handler, const Event &e) noexcept {
#if defined(__cpp_exceptions)
    CallbackState &st = callback_state();
    ++st.depth;
    try {
        handler(e);
    } catch (...) {
        if (!st.pending) st.pending = std::current_exception();
    }
    --st.depth;
#else
    handler(e);
#endif
}

/// The C callback of every listener.
inline void trampoline(void *user_data, const PresenceEventInfo *info) noexcept {
    if (user_data == nullptr || info == nullptr) return;
    run_handler(static_cast<ListenerBox *>(user_data)->fn, Event(*info));
}

struct BatchDeleter {
    void operator()(PresenceEventBatch *b) const noexcept { presence_batch_free(b); }
};

} // namespace detail

class Engine;

/// RAII token of a registered listener. Move-only. Destroying it (or reset())
/// removes the listener: no callback runs through it afterwards. The engine frees the
/// callback once the listener is removed (or the engine freed).
class [[nodiscard]] Listener {
public:
    /// An empty token (no listener).
    Listener() noexcept = default;
    Listener(Listener &&other) noexcept
        : engine_(std::exchange(other.engine_, nullptr)), alive_(std::move(other.alive_)),
          id_(std::exchange(other.id_, 0)) {}
    Listener &operator=(Listener &&other) noexcept {
        if (this != &other) {
            reset();
            engine_ = std::exchange(other.engine_, nullptr);
            alive_ = std::move(other.alive_);
            id_ = std::exchange(other.id_, 0);
        }
        return *this;
    }
    Listener(const Listener &) = delete;
    Listener &operator=(const Listener &) = delete;
    ~Listener() { reset(); }

    /// Remove the listener now (idempotent), without waiting: no call of it starts after
    /// this returns, but one already running on another thread may finish afterwards (the
    /// engine frees the callback once it has). So it never deadlocks, even when the caller
    /// holds a lock the callback takes. The destructor does this.
    void reset() noexcept { remove(&presence_remove_listener_nowait); }

    /// Remove the listener and wait for a call of it running on another thread to return:
    /// afterwards the callback is certainly not running. Never call it while holding a lock
    /// the callback takes (that is what reset() is for).
    void reset_and_wait() noexcept { remove(&presence_remove_listener); }

    /// The C listener id (0 when empty).
    [[nodiscard]] ListenerId id() const noexcept { return id_; }
    /// Whether this token holds a listener.
    [[nodiscard]] explicit operator bool() const noexcept { return id_ != 0; }

private:
    friend class Engine;
    Listener(PresenceEngine *engine, std::weak_ptr<void> alive, ListenerId id) noexcept
        : engine_(engine), alive_(std::move(alive)), id_(id) {}

    void remove(PresenceResult (*remove_fn)(PresenceEngine *, PresenceListenerId)) noexcept {
        if (id_ != 0) {
            if (auto alive = alive_.lock()) {
                (void)remove_fn(engine_, id_);
            }
        }
        engine_ = nullptr;
        alive_.reset();
        id_ = 0;
    }

    PresenceEngine *engine_ = nullptr;
    std::weak_ptr<void> alive_;
    ListenerId id_ = 0;
};

/// A reusable buffer of typed events drained from one connection's queue
/// (Engine::poll). Refilling it allocates nothing in steady state. Events read from it
/// (operator[], iteration) are valid until the next poll into it or its destruction.
/// One thread at a time.
class Batch {
public:
    [[nodiscard]] static Result<Batch> create() noexcept {
        PresenceEventBatch *raw = nullptr;
        const PresenceResult r = presence_batch_new(&raw);
        if (r != PRESENCE_OK) return detail::last_error(r);
        return Batch(raw);
    }

    /// How many events the last poll delivered.
    [[nodiscard]] std::uint32_t size() const noexcept { return presence_batch_len(handle_.get()); }
    [[nodiscard]] bool empty() const noexcept { return size() == 0; }
    /// Event i (i < size()).
    [[nodiscard]] Event operator[](std::uint32_t i) const noexcept {
        return Event(*presence_batch_event(handle_.get(), i), handle_.get(), i);
    }

    class iterator {
    public:
        Event operator*() const noexcept { return (*batch_)[i_]; }
        iterator &operator++() noexcept {
            ++i_;
            return *this;
        }
        bool operator!=(const iterator &o) const noexcept { return i_ != o.i_; }

    private:
        friend class Batch;
        iterator(const Batch *batch, std::uint32_t i) noexcept : batch_(batch), i_(i) {}
        const Batch *batch_;
        std::uint32_t i_;
    };
    [[nodiscard]] iterator begin() const noexcept { return iterator(this, 0); }
    [[nodiscard]] iterator end() const noexcept { return iterator(this, size()); }

    /// The raw C handle (still owned by this Batch).
    [[nodiscard]] PresenceEventBatch *get() const noexcept { return handle_.get(); }

private:
    explicit Batch(PresenceEventBatch *raw) noexcept : handle_(raw) {}
    std::unique_ptr<PresenceEventBatch, detail::BatchDeleter> handle_;
};

/// An engine. Move-only; owns its PresenceEngine handle. Every method is noexcept and
/// answers a Result.
class Engine {
public:
    /// Create an engine. An empty config means the defaults (NULL to the C side).
    /// Fails with PRESENCE_ERR_STATE when the linked library's ABI is older than the header's.
    [[nodiscard]] static Result<Engine> create(std::string_view config_json = {}) noexcept {
        if (Result<void> abi = detail::check_abi(abi_version(), required_abi_version); !abi) {
            return abi.error();
        }
        detail::CStr config(config_json);
        if (!config.valid()) return detail::CStr::error();
        PresenceEngine *raw = nullptr;
        const PresenceResult r =
            presence_engine_new(config_json.empty() ? nullptr : config.get(), &raw);
        if (r != PRESENCE_OK) return detail::last_error(r);
        return Engine(raw);
    }

    Engine(Engine &&) noexcept = default;
    Engine &operator=(Engine &&other) noexcept {
        if (this != &other) {
            alive_ = std::move(other.alive_); // listeners of the old engine see it gone
            handle_ = std::move(other.handle_);
        }
        return *this;
    }
    Engine(const Engine &) = delete;
    Engine &operator=(const Engine &) = delete;
    ~Engine() = default; // alive_ (declared last) dies first, then the handle

    /// The raw C handle (still owned by this Engine), for calls this wrapper lacks.
    [[nodiscard]] PresenceEngine *get() const noexcept { return handle_.get(); }

    // ---- connections and users ------------------------------------------

    /// Open a connection for a user (upserted from user_json: {"id":..., ...}).
    [[nodiscard]] Result<ConnectionId> connect(std::string_view user_json) noexcept {
        detail::CStr user(user_json);
        if (!user.valid()) return detail::CStr::error();
        ConnectionId id = 0;
        const PresenceResult r = presence_connect(get(), user.get(), &id);
        return detail::done(r, id);
    }

    /// Open a connection for a user id, without JSON (an unknown user is created with
    /// only its id).
    [[nodiscard]] Result<ConnectionId> connect_user(std::string_view user_id) noexcept {
        detail::CStr id(user_id);
        if (!id.valid()) return detail::CStr::error();
        ConnectionId conn = 0;
        const PresenceResult r = presence_connect_user(get(), id.get(), &conn);
        return detail::done(r, conn);
    }

    Result<void> disconnect(ConnectionId conn) noexcept {
        return detail::done(presence_disconnect(get(), conn));
    }

    Result<void> heartbeat(ConnectionId conn) noexcept {
        return detail::done(presence_heartbeat(get(), conn));
    }

    Result<void> upsert_user(std::string_view user_json) noexcept {
        detail::CStr user(user_json);
        if (!user.valid()) return detail::CStr::error();
        return detail::done(presence_upsert_user(get(), user.get()));
    }

    Result<void> set_invisible(std::string_view user_id, bool invisible) noexcept {
        detail::CStr id(user_id);
        if (!id.valid()) return detail::CStr::error();
        return detail::done(presence_set_invisible(get(), id.get(), invisible));
    }

    /// Set the custom status; std::nullopt clears it.
    Result<void> set_status(std::string_view user_id, std::optional<std::string_view> status) noexcept {
        detail::CStr id(user_id);
        detail::OptCStr text(status);
        if (!id.valid() || !text.valid()) return detail::CStr::error();
        return detail::done(presence_set_status(get(), id.get(), text.get()));
    }

    /// The user as `viewer` sees it (host: own view).
    [[nodiscard]] Result<User> get_user(ConnectionId viewer, std::string_view user_id) noexcept {
        detail::CStr id(user_id);
        if (!id.valid()) return detail::CStr::error();
        detail::OwnedString out;
        const PresenceResult r = presence_get_user(get(), viewer, id.get(), out.out());
        return answer<User>(r, out, [](detail::Decoder &d, const detail::json::Value &v) {
            return d.user(v);
        });
    }

    /// The user in the host's (own) view.
    [[nodiscard]] Result<User> get_user(std::string_view user_id) noexcept {
        return get_user(host, user_id);
    }

    // ---- channels -------------------------------------------------------

    /// {"type","id","members":[...], custom fields}
    Result<void> upsert_channel(std::string_view channel_json) noexcept {
        detail::CStr channel(channel_json);
        if (!channel.valid()) return detail::CStr::error();
        return detail::done(presence_upsert_channel(get(), channel.get()));
    }

    /// Add members (unknown users are created with only their id).
    Result<void> add_members(std::string_view cid, std::initializer_list<std::string_view> user_ids) noexcept {
        return members(&presence_add_members, cid, json_string_array(user_ids));
    }
    Result<void> add_members(std::string_view cid, const std::vector<std::string> &user_ids) noexcept {
        return members(&presence_add_members, cid, json_string_array(user_ids));
    }

    Result<void> remove_members(std::string_view cid, std::initializer_list<std::string_view> user_ids) noexcept {
        return members(&presence_remove_members, cid, json_string_array(user_ids));
    }
    Result<void> remove_members(std::string_view cid, const std::vector<std::string> &user_ids) noexcept {
        return members(&presence_remove_members, cid, json_string_array(user_ids));
    }

    /// Delete a channel; its watchers stop watching it without events.
    Result<void> delete_channel(std::string_view cid) noexcept {
        detail::CStr c(cid);
        if (!c.valid()) return detail::CStr::error();
        return detail::done(presence_delete_channel(get(), c.get()));
    }

    /// Start (or keep) watching a channel; answers its state as `conn` sees it.
    [[nodiscard]] Result<ChannelState> watch_channel(ConnectionId conn, std::string_view cid,
                                                     bool presence = true) noexcept {
        detail::CStr c(cid);
        if (!c.valid()) return detail::CStr::error();
        detail::OwnedString out;
        const PresenceResult r = presence_watch_channel(get(), conn, c.get(), presence, out.out());
        return answer<ChannelState>(r, out, [](detail::Decoder &d, const detail::json::Value &v) {
            return d.state(v);
        });
    }

    Result<void> stop_watching(ConnectionId conn, std::string_view cid) noexcept {
        detail::CStr c(cid);
        if (!c.valid()) return detail::CStr::error();
        return detail::done(presence_stop_watching(get(), conn, c.get()));
    }

    /// End the presence subscription that query_users with "presence":true gave
    /// `conn` to one user (subscriptions through watched channels stay).
    Result<void> unsubscribe_user(ConnectionId conn, std::string_view user_id) noexcept {
        detail::CStr id(user_id);
        if (!id.valid()) return detail::CStr::error();
        return detail::done(presence_unsubscribe_user(get(), conn, id.get()));
    }

    // ---- queries --------------------------------------------------------

    /// The users matching a query (Stream filter syntax) as `viewer` sees them.
    [[nodiscard]] Result<std::vector<User>> query_users(ConnectionId viewer,
                                                        std::string_view query_json) noexcept {
        detail::CStr q(query_json);
        if (!q.valid()) return detail::CStr::error();
        detail::OwnedString out;
        const PresenceResult r = presence_query_users(get(), viewer, q.get(), out.out());
        return answer<std::vector<User>>(r, out, [](detail::Decoder &d, const detail::json::Value &v) {
            return d.users(v.find("users"), "users");
        });
    }
    [[nodiscard]] Result<std::vector<User>> query_users(std::string_view query_json) noexcept {
        return query_users(host, query_json);
    }

    /// The channels matching a query, each with members and watchers, as `viewer` sees them.
    [[nodiscard]] Result<std::vector<ChannelState>> query_channels(ConnectionId viewer,
                                                                   std::string_view query_json) noexcept {
        detail::CStr q(query_json);
        if (!q.valid()) return detail::CStr::error();
        detail::OwnedString out;
        const PresenceResult r = presence_query_channels(get(), viewer, q.get(), out.out());
        return answer<std::vector<ChannelState>>(
            r, out, [](detail::Decoder &d, const detail::json::Value &v) {
                std::vector<ChannelState> states;
                const detail::json::Value *list = v.find("channels");
                if (list == nullptr || list->kind != detail::json::Value::Kind::array) {
                    d.mismatch("channels", "an array");
                    return states;
                }
                states.reserve(list->items.size());
                for (const auto &item : list->items) states.push_back(d.state(item));
                return states;
            });
    }
    [[nodiscard]] Result<std::vector<ChannelState>> query_channels(std::string_view query_json) noexcept {
        return query_channels(host, query_json);
    }

    // ---- events ---------------------------------------------------------

    /// A host listener, optionally filtered by event type and by user id.
    /// It sees every event (own views). Keep the token alive.
    [[nodiscard]] Result<Listener> add_listener(std::optional<std::string_view> type,
                                                std::optional<std::string_view> user_id,
                                                EventHandler fn) noexcept {
        detail::OptCStr t(type);
        detail::OptCStr u(user_id);
        if (!t.valid() || !u.valid()) return detail::CStr::error();
        return listen(std::move(fn), [&](void *box, ListenerId *id) {
            return presence_add_typed_listener(get(), t.get(), u.get(), &detail::trampoline, box,
                                               &detail::box_free, id);
        });
    }

    /// A host listener for every event.
    [[nodiscard]] Result<Listener> add_listener(EventHandler fn) noexcept {
        return add_listener(std::nullopt, std::nullopt, std::move(fn));
    }

    /// A delivery listener: one call per (event, recipient connection).
    [[nodiscard]] Result<Listener> add_delivery_listener(EventHandler fn) noexcept {
        return listen(std::move(fn), [&](void *box, ListenerId *id) {
            return presence_add_typed_delivery_listener(get(), &detail::trampoline, box,
                                                        &detail::box_free, id);
        });
    }

    /// Move up to `max` queued events of `conn` into `batch` (cleared first); answers how
    /// many. Allocates nothing when `batch` is reused in steady state.
    [[nodiscard]] Result<std::uint32_t> poll(ConnectionId conn, Batch &batch,
                                             std::uint32_t max = 1024) noexcept {
        const PresenceResult r = presence_poll_batch(get(), conn, max, batch.get());
        return detail::done(r, r == PRESENCE_OK ? batch.size() : 0U);
    }

    /// Move up to `max_each` queued events of each of `count` connections into `batch`
    /// (cleared first), in the array's order, under one hold of the engine's lock; answers
    /// how many. Each event's `connection_id` names its recipient. An unknown connection
    /// fails the call (PRESENCE_ERR_NOT_FOUND) with nothing moved; more than UINT32_MAX
    /// connections is PRESENCE_ERR_INVALID. Allocates nothing when `batch` is reused in
    /// steady state.
    [[nodiscard]] Result<std::uint32_t> poll(const ConnectionId *conns, std::size_t count, Batch &batch,
                                             std::uint32_t max_each = 1024) noexcept {
        if (count > UINT32_MAX) {
            return Result<std::uint32_t>(Error(PRESENCE_ERR_INVALID, "more than UINT32_MAX connections"));
        }
        const PresenceResult r = presence_poll_batch_many(get(), conns, static_cast<std::uint32_t>(count),
                                                          max_each, batch.get());
        return detail::done(r, r == PRESENCE_OK ? batch.size() : 0U);
    }

    /// The same for a vector of connections.
    [[nodiscard]] Result<std::uint32_t> poll(const std::vector<ConnectionId> &conns, Batch &batch,
                                             std::uint32_t max_each = 1024) noexcept {
        return poll(conns.data(), conns.size(), batch, max_each);
    }

    /// Drain up to `max` events from a connection's queue as a JSON array ("[]" when empty).
    [[nodiscard]] Result<std::string> poll_events_json(ConnectionId conn, std::uint32_t max = 1024) noexcept {
        detail::OwnedString out;
        const PresenceResult r = presence_poll_events(get(), conn, max, out.out());
        return detail::done(r, std::string(out.view()));
    }

    /// Run pending callbacks ("dispatch":"manual"); answers how many were delivered.
    [[nodiscard]] Result<std::uint32_t> pump() noexcept {
        std::uint32_t delivered = 0;
        const PresenceResult r = presence_pump(get(), &delivered);
        return detail::done(r, delivered);
    }

    // ---- time and persistence -------------------------------------------

    /// Apply everything due (timeouts, grace expiry, last_active refresh).
    Result<void> tick() noexcept { return detail::done(presence_tick(get())); }

    /// Move the manual clock (never backwards).
    Result<void> set_time(UnixMillis unix_ms) noexcept {
        return detail::done(presence_set_time(get(), unix_ms));
    }
    Result<void> set_time(std::chrono::system_clock::time_point t) noexcept {
        return set_time(static_cast<UnixMillis>(
            std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count()));
    }

    Result<void> save(std::string_view path) noexcept {
        detail::CStr p(path);
        if (!p.valid()) return detail::CStr::error();
        return detail::done(presence_save(get(), p.get()));
    }

    Result<void> load(std::string_view path) noexcept {
        detail::CStr p(path);
        if (!p.valid()) return detail::CStr::error();
        return detail::done(presence_load(get(), p.get()));
    }

    /// Cluster mode: the link to the shared store as JSON (`{"mode":"cluster","node_id",
    /// "link":"up"|"down"|"fenced","nodes_alive","pending_writes","last_error"}`);
    /// `{"mode":"single"}` without a `cluster` config.
    [[nodiscard]] Result<std::string> cluster_status() noexcept {
        detail::OwnedString out;
        const PresenceResult r = presence_cluster_status(get(), out.out());
        return detail::done(r, std::string(out.view()));
    }

private:
    explicit Engine(PresenceEngine *raw) noexcept : handle_(raw), alive_(std::make_shared<char>(0)) {}

    using MembersFn = PresenceResult (*)(PresenceEngine *, const char *, const char *);
    Result<void> members(MembersFn fn, std::string_view cid, const std::string &ids_json) noexcept {
        detail::CStr c(cid);
        detail::CStr ids(ids_json);
        if (!c.valid() || !ids.valid()) return detail::CStr::error();
        return detail::done(fn(get(), c.get(), ids.get()));
    }

    /// Decode the JSON a C call wrote into `out` once it succeeded.
    template <typename T, typename F>
    [[nodiscard]] static Result<T> answer(PresenceResult r, const detail::OwnedString &out,
                                          F decode_fn) noexcept {
        if (r != PRESENCE_OK) return detail::with_pending(Result<T>(detail::last_error(r)));
        return detail::with_pending(detail::decode<T>(out.view(), decode_fn));
    }

    template <typename Register>
    [[nodiscard]] Result<Listener> listen(EventHandler fn, Register register_fn) noexcept {
        if (!fn) return Error(PRESENCE_ERR_NULL, "listener callback is empty");
        auto box = std::make_unique<detail::ListenerBox>();
        box->fn = std::move(fn);
        ListenerId id = 0;
        const PresenceResult r = register_fn(box.get(), &id);
        if (r != PRESENCE_OK) return detail::last_error(r);
        (void)box.release(); // the engine owns it now and frees it with detail::box_free
        return Listener(get(), alive_, id);
    }

    std::unique_ptr<PresenceEngine, detail::EngineDeleter> handle_;
    std::shared_ptr<void> alive_; // listeners hold a weak_ptr: "is the engine still there?"
};

} // namespace presence

#endif // PRESENCE_HPP
