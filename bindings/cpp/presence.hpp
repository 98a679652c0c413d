// presence.hpp - header-only C++17 wrapper over the presence engine's C ABI.
//
//   #include "presence.hpp"   // needs include/presence.h on the include path
//
//   auto engine = presence::Engine::create(R"({"clock":"manual"})");
//   presence::ConnectionId c = engine.connect(R"({"id":"alice","status":"in lobby"})");
//   std::string user = engine.get_user("alice");
//
// Rules of this wrapper (in the style of wasmtime's .hh headers):
//
// * Every call either returns a value or throws presence::Error, which carries
//   the C PresenceResult (code()) and the message left by presence_last_error()
//   (what()). Nothing fails silently.
// * presence::Engine owns the handle (move-only); destroying it calls
//   presence_engine_free. A moved-from Engine holds no handle: calls on it throw
//   Error with PRESENCE_ERR_NULL.
// * Every string the C side hands over is copied into a std::string and released
//   with presence_string_free (detail::OwnedString), also when a call throws.
// * Listeners are RAII tokens: presence::Listener removes its C listener when it
//   is destroyed (or reset()), then frees the std::function it boxed. Keep the
//   token alive for as long as you want callbacks. A Listener should not outlive
//   its Engine; if it does (on the same thread), its destructor sees that the
//   engine is gone and only frees the box. Never destroy a Listener on one thread
//   while its Engine is being destroyed on another.
// * Exceptions never cross the C callback. The trampoline catches anything the
//   std::function throws and keeps the *first* such exception (per thread); the
//   wrapper call that ran the callbacks rethrows it once the C call has returned:
//   with "dispatch":"immediate" that is the call that caused the event, with
//   "dispatch":"manual" it is pump(). Calls made from inside a callback never
//   rethrow a pending exception (it waits for the outermost call). A pending
//   callback exception takes precedence over that outer call's own error.
//   Later exceptions thrown by other callbacks before the rethrow are dropped.
//   The rethrowing call itself did its work (e.g. connect() opened the
//   connection; only its return value is lost).
// * Event is a view: its string_views point into memory owned by the engine and
//   are valid only during the callback. Copy what you need to keep.
// * Never destroy (or move-assign over) an Engine from inside one of its own
//   callbacks: presence_engine_free must not run inside a callback.
// * The Engine is as thread-safe as the C engine; Listener tokens are not
//   synchronised themselves (do not reset one token from two threads).
#ifndef PRESENCE_HPP
#define PRESENCE_HPP

#include "presence.h"

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <functional>
#include <initializer_list>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace presence {

/// Engine-assigned id of one live connection; 0 means "the host itself".
using ConnectionId = PresenceConnectionId;
/// Id of a registered listener; 0 is invalid.
using ListenerId = PresenceListenerId;

/// The viewer id of the host (own views of every user).
inline constexpr ConnectionId host = 0;

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

/// The error every failing call throws.
class Error : public std::runtime_error {
public:
    Error(PresenceResult code, const std::string &message)
        : std::runtime_error(message), code_(code) {}

    /// The C result code (never PRESENCE_OK).
    [[nodiscard]] PresenceResult code() const noexcept { return code_; }
    /// The code's C name, e.g. "PRESENCE_ERR_JSON".
    [[nodiscard]] std::string_view code_name() const noexcept { return result_name(code_); }

private:
    PresenceResult code_;
};

/// One event as a callback sees it. Every view is valid only during the callback.
struct Event {
    std::string_view type;      ///< "user.presence.changed", ...
    std::string_view user_id;   ///< the user the event is about; empty when none
    std::string_view cid;       ///< the channel; empty when none
    std::string_view json;      ///< the whole event object
    std::uint64_t seq = 0;      ///< engine-wide, strictly increasing
    ConnectionId connection_id = 0; ///< recipient; 0 for host listeners
    /// The user's online flag as the recipient sees it: for host listeners that is
    /// the own view, where an invisible user with connections is online.
    bool online = false;
};

/// Callback type of listeners.
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

struct EngineDeleter {
    void operator()(PresenceEngine *e) const noexcept { presence_engine_free(e); }
};

struct StringDeleter {
    void operator()(char *s) const noexcept { presence_string_free(s); }
};

/// A string owned by the C side, released with presence_string_free.
class OwnedString {
public:
    OwnedString() noexcept = default;
    /// Where the C call writes its `char **out_json`.
    [[nodiscard]] char **out() noexcept {
        ptr_.reset();
        return &raw_;
    }
    /// Take ownership of what the C call wrote, then copy it out.
    [[nodiscard]] std::string str() {
        adopt();
        return ptr_ ? std::string(ptr_.get()) : std::string();
    }
    ~OwnedString() { adopt(); }
    OwnedString(const OwnedString &) = delete;
    OwnedString &operator=(const OwnedString &) = delete;

private:
    void adopt() noexcept {
        if (raw_ != nullptr) {
            ptr_.reset(raw_);
            raw_ = nullptr;
        }
    }
    char *raw_ = nullptr;
    std::unique_ptr<char, StringDeleter> ptr_;
};

/// A NUL-terminated copy of a string_view (the C ABI needs C strings).
class CStr {
public:
    explicit CStr(std::string_view s) : s_(s) {
        if (s_.find('\0') != std::string::npos) {
            throw Error(PRESENCE_ERR_INVALID, "string argument contains a NUL byte");
        }
    }
    [[nodiscard]] const char *get() const noexcept { return s_.c_str(); }

private:
    std::string s_;
};

/// Like CStr, but nullopt becomes a NULL pointer.
class OptCStr {
public:
    template <typename T>
    explicit OptCStr(const std::optional<T> &s) {
        if (s) value_.emplace(std::string_view(*s));
    }
    [[nodiscard]] const char *get() const noexcept { return value_ ? value_->get() : nullptr; }

private:
    std::optional<CStr> value_;
};

/// Per-thread state of the callback trampolines.
struct CallbackState {
    std::exception_ptr pending; ///< first exception a callback threw
    int depth = 0;              ///< callbacks currently running on this thread
};

[[nodiscard]] inline CallbackState &callback_state() noexcept {
    static thread_local CallbackState state;
    return state;
}

/// Rethrow (once) the first exception a callback threw, unless we are
/// ourselves inside a callback.
inline void rethrow_pending() {
    CallbackState &st = callback_state();
    if (st.depth == 0 && st.pending) {
        std::exception_ptr p = std::exchange(st.pending, nullptr);
        std::rethrow_exception(p);
    }
}

/// Turn a C result into "return normally" or "throw".
inline void check(PresenceResult r) {
    if (r != PRESENCE_OK) {
        const char *msg = presence_last_error();
        std::string text = (msg != nullptr && *msg != '\0') ? std::string(msg)
                                                           : std::string(result_name(r));
        rethrow_pending();
        throw Error(r, text);
    }
    rethrow_pending();
}

/// What a Listener boxes: the user_data of the C listener points here.
struct ListenerBox {
    std::shared_ptr<EventHandler> fn;
};

[[nodiscard]] inline std::string_view view(const char *s) noexcept {
    return s ? std::string_view(s) : std::string_view();
}

/// The C callback of every listener. Never lets an exception escape.
inline void trampoline(void *user_data, const PresenceEvent *ev) noexcept {
    if (user_data == nullptr || ev == nullptr) return;
    CallbackState &st = callback_state();
    // Keep the std::function alive even if the callback destroys its own token.
    std::shared_ptr<EventHandler> keep = static_cast<ListenerBox *>(user_data)->fn;
    if (!keep || !*keep) return;
    ++st.depth;
    try {
        Event e;
        e.type = view(ev->type);
        e.user_id = view(ev->user_id);
        e.cid = view(ev->cid);
        e.json = view(ev->json);
        e.seq = ev->seq;
        e.connection_id = ev->connection_id;
        e.online = ev->online;
        (*keep)(e);
    } catch (...) {
        if (!st.pending) st.pending = std::current_exception();
    }
    --st.depth;
}

} // namespace detail

class Engine;

/// RAII token of a registered listener. Move-only. Destroying it (or reset())
/// removes the listener: no callback runs through it afterwards.
class [[nodiscard]] Listener {
public:
    /// An empty token (no listener).
    Listener() noexcept = default;
    Listener(Listener &&other) noexcept
        : engine_(std::exchange(other.engine_, nullptr)), alive_(std::move(other.alive_)),
          id_(std::exchange(other.id_, 0)), box_(std::move(other.box_)) {}
    Listener &operator=(Listener &&other) noexcept {
        if (this != &other) {
            reset();
            engine_ = std::exchange(other.engine_, nullptr);
            alive_ = std::move(other.alive_);
            id_ = std::exchange(other.id_, 0);
            box_ = std::move(other.box_);
        }
        return *this;
    }
    Listener(const Listener &) = delete;
    Listener &operator=(const Listener &) = delete;
    ~Listener() { reset(); }

    /// Remove the listener now (idempotent).
    void reset() noexcept {
        if (id_ != 0) {
            if (auto alive = alive_.lock()) {
                (void)presence_remove_listener(engine_, id_);
            }
        }
        engine_ = nullptr;
        alive_.reset();
        id_ = 0;
        box_.reset();
    }

    /// The C listener id (0 when empty).
    [[nodiscard]] ListenerId id() const noexcept { return id_; }
    /// Whether this token holds a listener.
    [[nodiscard]] explicit operator bool() const noexcept { return id_ != 0; }

private:
    friend class Engine;
    Listener(PresenceEngine *engine, std::weak_ptr<void> alive, ListenerId id,
             std::unique_ptr<detail::ListenerBox> box) noexcept
        : engine_(engine), alive_(std::move(alive)), id_(id), box_(std::move(box)) {}

    PresenceEngine *engine_ = nullptr;
    std::weak_ptr<void> alive_;
    ListenerId id_ = 0;
    std::unique_ptr<detail::ListenerBox> box_;
};

/// An engine. Move-only; owns its PresenceEngine handle.
class Engine {
public:
    /// Create an engine. An empty config means the defaults (NULL to the C side).
    [[nodiscard]] static Engine create(std::string_view config_json = {}) {
        PresenceEngine *raw = nullptr;
        if (config_json.empty()) {
            detail::check(presence_engine_new(nullptr, &raw));
        } else {
            detail::CStr config(config_json);
            detail::check(presence_engine_new(config.get(), &raw));
        }
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
    [[nodiscard]] ConnectionId connect(std::string_view user_json) {
        detail::CStr user(user_json);
        ConnectionId id = 0;
        detail::check(presence_connect(get(), user.get(), &id));
        return id;
    }

    void disconnect(ConnectionId conn) { detail::check(presence_disconnect(get(), conn)); }

    void heartbeat(ConnectionId conn) { detail::check(presence_heartbeat(get(), conn)); }

    void upsert_user(std::string_view user_json) {
        detail::CStr user(user_json);
        detail::check(presence_upsert_user(get(), user.get()));
    }

    void set_invisible(std::string_view user_id, bool invisible) {
        detail::CStr id(user_id);
        detail::check(presence_set_invisible(get(), id.get(), invisible));
    }

    /// Set the custom status; std::nullopt clears it.
    void set_status(std::string_view user_id, std::optional<std::string_view> status) {
        detail::CStr id(user_id);
        detail::OptCStr text(status);
        detail::check(presence_set_status(get(), id.get(), text.get()));
    }

    /// The user as `viewer` sees it (0: the host, own view). JSON object.
    [[nodiscard]] std::string get_user(ConnectionId viewer, std::string_view user_id) {
        detail::CStr id(user_id);
        detail::OwnedString out;
        detail::check(presence_get_user(get(), viewer, id.get(), out.out()));
        return out.str();
    }

    /// The user in the host's (own) view.
    [[nodiscard]] std::string get_user(std::string_view user_id) { return get_user(host, user_id); }

    // ---- channels -------------------------------------------------------

    /// {"type","id","members":[...], custom fields}
    void upsert_channel(std::string_view channel_json) {
        detail::CStr channel(channel_json);
        detail::check(presence_upsert_channel(get(), channel.get()));
    }

    /// Add members given as a JSON array of user ids: R"(["a","b"])".
    void add_members(std::string_view cid, std::string_view user_ids_json) {
        detail::CStr c(cid);
        detail::CStr ids(user_ids_json);
        detail::check(presence_add_members(get(), c.get(), ids.get()));
    }
    void add_members(std::string_view cid, const std::vector<std::string> &user_ids) {
        add_members(cid, std::string_view(json_string_array(user_ids)));
    }
    void add_members(std::string_view cid, std::initializer_list<std::string_view> user_ids) {
        add_members(cid, std::string_view(json_string_array(user_ids)));
    }

    /// Remove members given as a JSON array of user ids.
    void remove_members(std::string_view cid, std::string_view user_ids_json) {
        detail::CStr c(cid);
        detail::CStr ids(user_ids_json);
        detail::check(presence_remove_members(get(), c.get(), ids.get()));
    }
    void remove_members(std::string_view cid, const std::vector<std::string> &user_ids) {
        remove_members(cid, std::string_view(json_string_array(user_ids)));
    }
    void remove_members(std::string_view cid, std::initializer_list<std::string_view> user_ids) {
        remove_members(cid, std::string_view(json_string_array(user_ids)));
    }

    /// Delete a channel; its watchers stop watching it without events.
    void delete_channel(std::string_view cid) {
        detail::CStr c(cid);
        detail::check(presence_delete_channel(get(), c.get()));
    }

    /// Start (or keep) watching a channel; answers the channel state JSON
    /// {"channel":{...},"members":[...],"watcher_count":n,"watchers":[...]}.
    [[nodiscard]] std::string watch_channel(ConnectionId conn, std::string_view cid,
                                            bool presence = true) {
        detail::CStr c(cid);
        detail::OwnedString out;
        detail::check(presence_watch_channel(get(), conn, c.get(), presence, out.out()));
        return out.str();
    }

    void stop_watching(ConnectionId conn, std::string_view cid) {
        detail::CStr c(cid);
        detail::check(presence_stop_watching(get(), conn, c.get()));
    }

    /// End the presence subscription that query_users with "presence":true gave
    /// `conn` to one user (subscriptions through watched channels stay).
    void unsubscribe_user(ConnectionId conn, std::string_view user_id) {
        detail::CStr id(user_id);
        detail::check(presence_unsubscribe_user(get(), conn, id.get()));
    }

    // ---- queries --------------------------------------------------------

    /// {"users":[...]} as `viewer` sees them.
    [[nodiscard]] std::string query_users(ConnectionId viewer, std::string_view query_json) {
        detail::CStr q(query_json);
        detail::OwnedString out;
        detail::check(presence_query_users(get(), viewer, q.get(), out.out()));
        return out.str();
    }
    [[nodiscard]] std::string query_users(std::string_view query_json) {
        return query_users(host, query_json);
    }

    /// {"channels":[state, ...]} as `viewer` sees them.
    [[nodiscard]] std::string query_channels(ConnectionId viewer, std::string_view query_json) {
        detail::CStr q(query_json);
        detail::OwnedString out;
        detail::check(presence_query_channels(get(), viewer, q.get(), out.out()));
        return out.str();
    }
    [[nodiscard]] std::string query_channels(std::string_view query_json) {
        return query_channels(host, query_json);
    }

    // ---- events ---------------------------------------------------------

    /// A host listener, optionally filtered by event type and by user id.
    /// It sees every event (own views). Keep the token alive.
    [[nodiscard]] Listener add_listener(std::optional<std::string> type,
                                        std::optional<std::string> user_id, EventHandler fn) {
        detail::OptCStr t(type);
        detail::OptCStr u(user_id);
        auto box = make_box(std::move(fn));
        ListenerId id = 0;
        detail::check(presence_add_listener(get(), t.get(), u.get(), &detail::trampoline,
                                            box.get(), &id));
        return Listener(get(), alive_, id, std::move(box));
    }

    /// A host listener for every event.
    [[nodiscard]] Listener add_listener(EventHandler fn) {
        return add_listener(std::nullopt, std::nullopt, std::move(fn));
    }

    /// A delivery listener: one call per (event, recipient connection).
    [[nodiscard]] Listener add_delivery_listener(EventHandler fn) {
        auto box = make_box(std::move(fn));
        ListenerId id = 0;
        detail::check(
            presence_add_delivery_listener(get(), &detail::trampoline, box.get(), &id));
        return Listener(get(), alive_, id, std::move(box));
    }

    /// Drain up to `max` events from a connection's queue; a JSON array ("[]" when empty).
    [[nodiscard]] std::string poll_events(ConnectionId conn, std::uint32_t max = 1024) {
        detail::OwnedString out;
        detail::check(presence_poll_events(get(), conn, max, out.out()));
        return out.str();
    }

    /// Run pending callbacks ("dispatch":"manual"); answers how many were delivered.
    [[nodiscard]] std::uint32_t pump() {
        std::uint32_t delivered = 0;
        detail::check(presence_pump(get(), &delivered));
        return delivered;
    }

    // ---- time and persistence -------------------------------------------

    /// Apply everything due (timeouts, grace expiry, last_active refresh).
    void tick() { detail::check(presence_tick(get())); }

    /// Move the manual clock (never backwards).
    void set_time(std::int64_t unix_ms) { detail::check(presence_set_time(get(), unix_ms)); }
    void set_time(std::chrono::system_clock::time_point t) {
        set_time(static_cast<std::int64_t>(
            std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count()));
    }

    void save(std::string_view path) {
        detail::CStr p(path);
        detail::check(presence_save(get(), p.get()));
    }

    void load(std::string_view path) {
        detail::CStr p(path);
        detail::check(presence_load(get(), p.get()));
    }

    /// Cluster mode: the link to the shared store as JSON (`{"mode":"cluster","node_id",
    /// "link":"up"|"down"|"fenced","nodes_alive","pending_writes","last_error"}`);
    /// `{"mode":"single"}` without a `cluster` config.
    [[nodiscard]] std::string cluster_status() {
        detail::OwnedString out;
        detail::check(presence_cluster_status(get(), out.out()));
        return out.str();
    }

private:
    explicit Engine(PresenceEngine *raw) : handle_(raw), alive_(std::make_shared<char>(0)) {}

    static std::unique_ptr<detail::ListenerBox> make_box(EventHandler fn) {
        if (!fn) throw Error(PRESENCE_ERR_NULL, "listener callback is empty");
        auto box = std::make_unique<detail::ListenerBox>();
        box->fn = std::make_shared<EventHandler>(std::move(fn));
        return box;
    }

    std::unique_ptr<PresenceEngine, detail::EngineDeleter> handle_;
    std::shared_ptr<void> alive_; // listeners hold a weak_ptr: "is the engine still there?"
};

} // namespace presence

#endif // PRESENCE_HPP
