// Tests of bindings/cpp/presence.hpp against the real engine (libpresence.a).
// Plain asserts: CHECK prints file:line on failure; the run ends with
// "N passed, M failed" and exits non-zero when anything failed.
#include "check.h"
#include "presence.hpp"

#include <cstdio>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <mutex>
#include <thread>
#include <functional>
#include <string>
#include <string_view>
#include <unistd.h>
#include <utility>
#include <vector>

namespace {

// Expect `stmt` to throw presence::Error with `expected` code.
// Expect the Result of `expr` to be an error with `expected` code and a message.
#define CHECK_CODE(expr, expected)                                                   \
    do {                                                                             \
        const auto &r_ = (expr);                                                     \
        if (!r_.ok() && r_.code() == (expected) && !r_.error().message().empty()) {  \
            ++g_passed;                                                              \
        } else {                                                                     \
            ++g_failed;                                                              \
            std::fprintf(stderr, "%s:%d: %s answered %s (%s), expected %s\n",        \
                         __FILE__, __LINE__, #expr,                                  \
                         std::string(r_.error().code_name()).c_str(),                \
                         r_.error().message().c_str(),                               \
                         std::string(presence::result_name(expected)).c_str());      \
        }                                                                            \
    } while (0)

// The value of a Result that must succeed (a default value, and a failure, if not).
template <typename T>
T take(presence::Result<T> r, const char *file, int line, const char *expr) {
    if (r.ok()) {
        ++g_passed;
        return std::move(*r);
    }
    ++g_failed;
    std::fprintf(stderr, "%s:%d: %s failed: %s %s\n", file, line, expr,
                 std::string(r.error().code_name()).c_str(), r.error().message().c_str());
    if constexpr (std::is_default_constructible_v<T>) {
        return T{};
    } else {
        std::abort();
    }
}
void take(presence::Result<void> r, const char *file, int line, const char *expr) {
    if (r.ok()) {
        ++g_passed;
        return;
    }
    ++g_failed;
    std::fprintf(stderr, "%s:%d: %s failed: %s %s\n", file, line, expr,
                 std::string(r.error().code_name()).c_str(), r.error().message().c_str());
}
#define OK(expr) take((expr), __FILE__, __LINE__, #expr)

bool has(std::string_view haystack, std::string_view needle) {
    return haystack.find(needle) != std::string_view::npos;
}

// How many times `needle` occurs.
int count(std::string_view haystack, std::string_view needle) {
    int n = 0;
    for (size_t pos = haystack.find(needle); pos != std::string_view::npos;
         pos = haystack.find(needle, pos + needle.size())) {
        ++n;
    }
    return n;
}

struct Recorded {
    std::string type, user_id, cid, json;
    uint64_t seq;
    presence::ConnectionId conn;
    bool online;
};

// A handler that copies every event into `into`.
presence::EventHandler recorder(std::vector<Recorded> &into) {
    return [&into](const presence::Event &e) {
        into.push_back(Recorded{std::string(e.type), std::string(e.user_id), std::string(e.cid),
                                std::string(e.json().value_or(std::string_view())), e.seq,
                                e.connection_id, e.online});
    };
}

int count_type(const std::vector<Recorded> &events, std::string_view type) {
    int n = 0;
    for (const auto &e : events) n += e.type == type ? 1 : 0;
    return n;
}

constexpr int64_t kStart = 1546867062375; // 2019-01-07T13:17:42.375Z

std::string manual_config(int64_t start = kStart, std::string_view extra = {}) {
    std::string cfg = "{\"clock\":\"manual\",\"start_time_ms\":" + std::to_string(start);
    if (!extra.empty()) {
        cfg += ',';
        cfg += extra;
    }
    cfg += '}';
    return cfg;
}

presence::Engine make_engine(const std::string &config) {
    return OK(presence::Engine::create(config));
}

// The JSON text of a custom field, or "" when absent.
std::string custom(const presence::User &u, std::string_view name) {
    const presence::CustomField *f = u.field(name);
    return f ? f->json : std::string();
}

void test_version_and_abi() {
    CHECK(!presence::version().empty());
    CHECK(presence::abi_version() >= presence::required_abi_version);
    CHECK(presence::result_name(PRESENCE_OK) == "PRESENCE_OK");
    CHECK(presence::result_name(PRESENCE_ERR_NOT_FOUND) == "PRESENCE_ERR_NOT_FOUND");
    CHECK(presence::json_quote("a\"b\\c\n\x01") == "\"a\\\"b\\\\c\\n\\u0001\"");
    CHECK(presence::json_string_array(std::vector<std::string>{"a", "b"}) == "[\"a\",\"b\"]");
    // A library older than the header is refused with a message naming both versions.
    presence::Result<void> old = presence::detail::check_abi(1, 2);
    CHECK(!old.ok());
    CHECK(old.code() == PRESENCE_ERR_STATE);
    CHECK(has(old.error().message(), "needs ABI version 2"));
    CHECK(has(old.error().message(), "has ABI version 1"));
    CHECK(presence::detail::check_abi(2, 2).ok());
    CHECK(presence::detail::check_abi(3, 2).ok());
}

void test_create_and_errors() {
    {
        auto e = make_engine("");
        CHECK(e.get() != nullptr);
    }
    CHECK_CODE(presence::Engine::create("{not json"), PRESENCE_ERR_JSON);
    auto typo = presence::Engine::create(R"({"clokc":"manual"})");
    CHECK(!typo.ok());
    CHECK(typo.code() == PRESENCE_ERR_JSON || typo.code() == PRESENCE_ERR_INVALID);
    CHECK(has(typo.error().message(), "clokc"));

    CHECK(*make_engine("").cluster_status() == R"({"mode":"single"})");

    auto e = make_engine(manual_config());
    CHECK_CODE(e.disconnect(424242), PRESENCE_ERR_NOT_FOUND);
    CHECK_CODE(e.heartbeat(424242), PRESENCE_ERR_NOT_FOUND);
    CHECK_CODE(e.connect("{\"id\":"), PRESENCE_ERR_JSON);
    CHECK_CODE(e.connect(R"({"id":"has space"})"), PRESENCE_ERR_INVALID);
    CHECK_CODE(e.upsert_user(R"({"id":"x","online":true})"), PRESENCE_ERR_INVALID);
    CHECK_CODE(e.get_user("nobody"), PRESENCE_ERR_NOT_FOUND);
    CHECK_CODE(e.watch_channel(424242, "lobby:x"), PRESENCE_ERR_NOT_FOUND);
    CHECK_CODE(e.add_members("lobby:none", {"a"}), PRESENCE_ERR_NOT_FOUND);
    CHECK_CODE(e.query_users(R"({"filter_conditions":{"id":{"$bogus":1}}})"), PRESENCE_ERR_INVALID);
    CHECK_CODE(e.poll_events_json(424242), PRESENCE_ERR_NOT_FOUND);
    CHECK_CODE(e.upsert_user("{\"id\":\"\xff\"}"), PRESENCE_ERR_UTF8);
    CHECK_CODE(e.query_users(R"({"limit":1000})"), PRESENCE_ERR_LIMIT);
    CHECK_CODE(e.upsert_user(std::string_view("{\"id\":\"a\0b\"}", 13)), PRESENCE_ERR_INVALID);
    CHECK_CODE(e.set_status("alice", std::string_view("a\0b", 3)), PRESENCE_ERR_INVALID);
    CHECK_CODE(e.add_members("lobby:x", {std::string_view("a\0b", 3)}), PRESENCE_ERR_INVALID);

    // The message of an error is the one presence_last_error() left.
    presence::Result<void> r = e.disconnect(424242);
    CHECK(r.code() == PRESENCE_ERR_NOT_FOUND);
    CHECK(r.error().code_name() == "PRESENCE_ERR_NOT_FOUND");
    CHECK(r.error().message() == presence_last_error());
    CHECK(!r.has_value());
    // A failed value-returning call keeps no value; value_or gives the fallback.
    CHECK(e.connect("{").value_or(77) == 77);

    // A moved-from engine holds no handle: calls answer PRESENCE_ERR_NULL.
    auto moved = std::move(e);
    CHECK(e.get() == nullptr); // NOLINT(bugprone-use-after-move)
    CHECK_CODE(e.tick(), PRESENCE_ERR_NULL); // NOLINT(bugprone-use-after-move)
    OK(moved.tick());
    CHECK(moved.get() != nullptr);
}

void test_users() {
    auto e = make_engine(manual_config());
    presence::ConnectionId c = OK(e.connect(R"({"id":"alice","status":"ready","name":"Alice","tags":["a",{"k":null}]})"));
    CHECK(c != 0);
    presence::User u = OK(e.get_user("alice"));
    CHECK(u.id == "alice");
    CHECK(u.online);
    CHECK(u.status == std::optional<std::string>("ready"));
    CHECK(custom(u, "name") == "\"Alice\"");
    CHECK(custom(u, "tags") == "[\"a\",{\"k\":null}]");
    CHECK(u.invisible == std::optional<bool>(false));
    CHECK(u.last_active_ms == std::optional<int64_t>(kStart));
    CHECK(u.created_at_ms == kStart);
    CHECK(u.updated_at_ms == kStart);
    CHECK(u.field("id") == nullptr);

    OK(e.set_status("alice", "busy"));
    CHECK(OK(e.get_user("alice")).status == std::optional<std::string>("busy"));
    OK(e.set_status("alice", std::nullopt));
    CHECK(!OK(e.get_user("alice")).status);

    OK(e.upsert_user(R"({"id":"alice","name":"Alice \"B\" \u00e9\ud83d\ude00"})"));
    CHECK(custom(OK(e.get_user("alice")), "name") == "\"Alice \\\"B\\\" \u00e9\U0001F600\"");
    OK(e.upsert_user(R"({"id":"bob"})"));
    presence::User bob = OK(e.get_user("bob"));
    CHECK(!bob.online);
    CHECK(!bob.last_active_ms);
    // Another connection's view of alice is public: no invisible field.
    presence::ConnectionId b = OK(e.connect(R"({"id":"bob"})"));
    CHECK(!OK(e.get_user(b, "alice")).invisible);

    OK(e.set_invisible("alice", true));
    CHECK(OK(e.get_user("alice")).invisible == std::optional<bool>(true));
    CHECK(!OK(e.get_user(b, "alice")).online);
    OK(e.set_invisible("alice", false));
    CHECK(OK(e.get_user("alice")).invisible == std::optional<bool>(false));

    OK(e.heartbeat(c));
    presence::ConnectionId c2 = OK(e.connect(R"({"id":"alice"})"));
    CHECK(c2 != c);
    OK(e.disconnect(c));
    CHECK(OK(e.get_user("alice")).online);
    OK(e.disconnect(c2));
    CHECK(!OK(e.get_user("alice")).online);
    CHECK_CODE(e.disconnect(c2), PRESENCE_ERR_NOT_FOUND);
    OK(e.disconnect(b));
}

void test_channels_and_queries() {
    auto e = make_engine(manual_config());
    OK(e.upsert_channel(R"({"type":"lobby","id":"main","members":["alice"],"topic":"fun"})"));
    OK(e.add_members("lobby:main", {"bob", "carol"}));
    OK(e.add_members("lobby:main", std::vector<std::string>{"dave", "erin"}));
    presence::ConnectionId c = OK(e.connect(R"({"id":"alice"})"));

    presence::ChannelState state = OK(e.watch_channel(c, "lobby:main"));
    CHECK(state.channel.cid == "lobby:main");
    CHECK(state.channel.type == "lobby");
    CHECK(state.channel.id == "main");
    CHECK(state.channel.member_count == 5);
    CHECK(state.channel.created_at_ms == kStart);
    CHECK(!state.channel.last_message_at_ms);
    CHECK(state.members.size() == 5);
    CHECK(state.watcher_count == 1);
    CHECK(state.watchers.size() == 1 && state.watchers[0].id == "alice");
    CHECK(state.channel.field("topic") && state.channel.field("topic")->json == "\"fun\"");
    bool alice_online = false;
    for (const auto &m : state.members) {
        CHECK(m.user_id == m.user.id);
        if (m.user_id == "alice") alice_online = m.user.online;
    }
    CHECK(alice_online);
    // Watching again is idempotent.
    CHECK(OK(e.watch_channel(c, "lobby:main", true)).watcher_count == 1);

    OK(e.remove_members("lobby:main", {"erin"}));
    OK(e.remove_members("lobby:main", std::vector<std::string>{"dave", "carol"}));
    OK(e.upsert_channel(R"({"type":"lobby","id":"main","last_message_at":"2019-01-07T13:17:43Z"})"));
    std::vector<presence::ChannelState> channels =
        OK(e.query_channels(R"({"filter_conditions":{"type":"lobby"}})"));
    CHECK(channels.size() == 1);
    if (!channels.empty()) {
        CHECK(channels[0].channel.member_count == 2);
        CHECK(channels[0].watcher_count == 1);
        CHECK(channels[0].channel.last_message_at_ms == std::optional<int64_t>(kStart + 625));
    }

    OK(e.stop_watching(c, "lobby:main"));
    std::vector<presence::ChannelState> after =
        OK(e.query_channels(c, R"({"filter_conditions":{"cid":"lobby:main"}})"));
    CHECK(after.size() == 1 && after[0].watcher_count == 0 && after[0].watchers.empty());

    std::vector<presence::User> users = OK(e.query_users(R"({"filter_conditions":{"online":true}})"));
    CHECK(users.size() == 1 && users[0].id == "alice");
    std::vector<presence::User> sorted = OK(e.query_users(
        c, R"({"filter_conditions":{"id":{"$in":["alice","bob"]}},"sort":[{"field":"id","direction":1}]})"));
    CHECK(sorted.size() == 2 && sorted[0].id == "alice" && sorted[1].id == "bob");

    // query_users with presence subscribes; unsubscribe_user ends it.
    presence::ConnectionId watcher = OK(e.connect(R"({"id":"watcher"})"));
    CHECK(OK(e.query_users(watcher, R"({"filter_conditions":{"id":"zoe"},"presence":true})")).empty());
    CHECK_CODE(e.query_users(watcher, "{"), PRESENCE_ERR_JSON);
    OK(e.upsert_user(R"({"id":"zoe"})"));
    CHECK(OK(e.query_users(watcher, R"({"filter_conditions":{"id":"zoe"},"presence":true})")).size() == 1);
    presence::ConnectionId zoe = OK(e.connect(R"({"id":"zoe"})"));
    CHECK(count(OK(e.poll_events_json(watcher)), "\"id\":\"zoe\"") == 1);
    OK(e.unsubscribe_user(watcher, "zoe"));
    OK(e.set_status("zoe", "unseen"));
    CHECK(OK(e.poll_events_json(watcher)) == "[]");
    CHECK_CODE(e.unsubscribe_user(424242, "zoe"), PRESENCE_ERR_NOT_FOUND);
    OK(e.disconnect(zoe));

    // delete_channel: gone for queries and watches.
    OK(e.delete_channel("lobby:main"));
    CHECK(OK(e.query_channels(R"({"filter_conditions":{"type":"lobby"}})")).empty());
    CHECK_CODE(e.watch_channel(c, "lobby:main"), PRESENCE_ERR_NOT_FOUND);
    CHECK_CODE(e.delete_channel("lobby:main"), PRESENCE_ERR_NOT_FOUND);
}

// The reader behind the typed answers, on hostile input: every malformed text is an
// error naming what is wrong, never a crash or a partial value.
void test_json_reader() {
    using presence::detail::json::Reader;
    using presence::detail::json::Value;
    const char *bad[] = {"", "{", "[1,", "{\"a\"}", "{\"a\":}", "\"abc", "\"\\x\"", "\"\\ud800\"",
                         "\"\\udc00x\"", "tru", "nul", "[1]x", "{\"a\":1,}", "\"a\x01\"", "-", "{1:2}"};
    for (const char *text : bad) {
        Value v;
        Reader r(text);
        CHECK(!r.parse(v));
        CHECK(!r.error().empty());
    }
    std::string deep(200, '[');
    deep += std::string(200, ']');
    Value v;
    Reader deep_reader(deep);
    CHECK(!deep_reader.parse(v));
    CHECK(has(deep_reader.error(), "nesting too deep"));

    Value ok;
    Reader good(R"( {"a" : [true, false, null, -1.5e3, "x\n\u0041"], "b":{}} )");
    CHECK(good.parse(ok));
    const Value *a = ok.find("a");
    CHECK(a && a->items.size() == 5 && a->items[4].text == "x\nA" && a->items[3].text == "-1.5e3");
    CHECK(ok.find("b") && ok.find("b")->raw == "{}");
    CHECK(ok.find("c") == nullptr);

    // A well-formed text of the wrong shape is PRESENCE_ERR_JSON naming the field.
    auto wrong = presence::detail::decode<presence::User>(
        R"({"id":"a","online":"yes"})",
        [](presence::detail::Decoder &d, const Value &root) { return d.user(root); });
    CHECK(wrong.code() == PRESENCE_ERR_JSON);
    CHECK(has(wrong.error().message(), "user.online"));
    auto bad_time = presence::detail::decode<presence::User>(
        R"({"id":"a","online":true,"last_active":"yesterday"})",
        [](presence::detail::Decoder &d, const Value &root) { return d.user(root); });
    CHECK(bad_time.code() == PRESENCE_ERR_JSON);
    CHECK(presence::detail::parse_time("1970-01-01T00:00:00Z") == std::optional<int64_t>(0));
    CHECK(presence::detail::parse_time("2019-01-07T13:17:42.375Z") == std::optional<int64_t>(kStart));
    CHECK(presence::detail::parse_time("1969-12-31T23:59:59.9Z") == std::optional<int64_t>(-100));
    CHECK(!presence::detail::parse_time("2019-13-07T13:17:42Z"));
    CHECK(!presence::detail::parse_time("2019-01-07 13:17:42Z"));
}

void test_listeners() {
    auto e = make_engine(manual_config());
    std::vector<Recorded> all, presence_only, bob_only;
    auto l_all = OK(e.add_listener(recorder(all)));
    auto l_type = OK(e.add_listener("user.presence.changed", std::nullopt, recorder(presence_only)));
    auto l_user = OK(e.add_listener(std::nullopt, "bob", recorder(bob_only)));
    CHECK(l_all && l_type && l_user);
    CHECK(l_all.id() != l_type.id());

    presence::ConnectionId a = OK(e.connect(R"({"id":"alice"})"));
    presence::ConnectionId b = OK(e.connect(R"({"id":"bob"})"));
    OK(e.upsert_user(R"({"id":"bob","name":"Bob"})"));
    CHECK(count_type(all, "user.presence.changed") == 2);
    CHECK(count_type(all, "user.updated") == 1);
    CHECK(presence_only.size() == 2);
    CHECK(count_type(presence_only, "user.updated") == 0);
    CHECK(bob_only.size() == 2);
    for (const auto &r : bob_only) CHECK(r.user_id == "bob");
    for (size_t i = 1; i < all.size(); ++i) CHECK(all[i].seq > all[i - 1].seq);
    for (const auto &r : all) CHECK(r.conn == 0);
    if (!all.empty()) {
        CHECK(all[0].online);
        CHECK(all[0].user_id == "alice");
        CHECK(has(all[0].json, "\"type\":\"user.presence.changed\""));
    }

    // Token removal: no callback after the token dies.
    size_t before = presence_only.size();
    l_type.reset();
    CHECK(!l_type);
    OK(e.set_status("alice", "away"));
    CHECK(presence_only.size() == before);
    CHECK(count_type(all, "user.presence.changed") == 3);
    {
        std::vector<Recorded> scoped;
        {
            auto tmp = OK(e.add_listener(recorder(scoped)));
            OK(e.set_status("alice", "back"));
            CHECK(scoped.size() == 1);
        }
        OK(e.set_status("alice", "gone"));
        CHECK(scoped.size() == 1);
    }
    // Moving a token keeps the listener.
    size_t n_bob = bob_only.size();
    presence::Listener moved = std::move(l_user);
    CHECK(!l_user); // NOLINT(bugprone-use-after-move)
    OK(e.set_status("bob", "hi"));
    CHECK(bob_only.size() == n_bob + 1);
    moved = presence::Listener(); // move-assign an empty token: removes
    OK(e.set_status("bob", "bye"));
    CHECK(bob_only.size() == n_bob + 1);

    // A callback may destroy its own token and call into the engine.
    presence::Listener self;
    int self_calls = 0;
    self = OK(e.add_listener("user.updated", std::nullopt, [&](const presence::Event &) {
        ++self_calls;
        self.reset();
        (void)e.set_status("alice", "from callback");
    }));
    OK(e.upsert_user(R"({"id":"alice","name":"A"})"));
    OK(e.upsert_user(R"({"id":"alice","name":"B"})"));
    CHECK(self_calls == 1);
    CHECK(OK(e.get_user("alice")).status == std::optional<std::string>("from callback"));

    // Delivery listener: one call per (event, recipient connection).
    std::vector<Recorded> delivered;
    auto l_del = OK(e.add_delivery_listener(recorder(delivered)));
    OK(e.upsert_channel(R"({"type":"room","id":"r1","members":["alice","bob"]})"));
    (void)OK(e.watch_channel(a, "room:r1"));
    delivered.clear();
    OK(e.set_status("bob", "watching"));
    CHECK(delivered.size() == 1);
    if (!delivered.empty()) {
        CHECK(delivered[0].conn == a);
        CHECK(delivered[0].type == "user.presence.changed");
        CHECK(delivered[0].user_id == "bob");
        CHECK(has(delivered[0].json, "\"connection_id\":" + std::to_string(a)));
    }
    l_del.reset();
    OK(e.set_status("bob", "quiet"));
    CHECK(delivered.size() == 1);

    // An empty std::function, or a filter with a NUL byte, is refused.
    CHECK_CODE(e.add_listener(presence::EventHandler()), PRESENCE_ERR_NULL);
    CHECK_CODE(e.add_listener(std::string_view("a\0b", 3), std::nullopt, recorder(all)),
               PRESENCE_ERR_INVALID);
    OK(e.disconnect(b));
    OK(e.disconnect(a));

    // A listener may outlive its engine on the same thread (documented).
    presence::Listener orphan;
    {
        auto e2 = make_engine("");
        orphan = OK(e2.add_listener([](const presence::Event &) {}));
    }
    orphan.reset();
    CHECK(!orphan);
}

// Every typed field of Event, checked against what the event is about.
void test_typed_event_fields() {
    auto e = make_engine(manual_config(kStart, "\"connection_timeout_ms\":1000"));
    struct Seen {
        presence::EventKind kind;
        std::string user_id, cid, close_reason;
        std::optional<std::string> status;
        std::optional<int64_t> last_active_ms;
        int64_t watcher_count;
        bool online, invisible;
        presence::ConnectionId closed;
        int64_t created_at_ms;
        std::string type;
    };
    std::vector<Seen> seen;
    auto l = OK(e.add_listener([&](const presence::Event &ev) {
        seen.push_back(Seen{ev.kind, std::string(ev.user_id), std::string(ev.cid),
                            std::string(ev.close_reason),
                            ev.status ? std::optional<std::string>(*ev.status) : std::nullopt,
                            ev.last_active_ms, ev.watcher_count, ev.online, ev.invisible,
                            ev.closed_connection_id, ev.created_at_ms, std::string(ev.type)});
    }));
    OK(e.upsert_channel(R"({"type":"lobby","id":"m"})"));
    presence::ConnectionId a = OK(e.connect(R"({"id":"alice","status":"s \"q\""})"));
    OK(e.add_members("lobby:m", {"alice"}));
    (void)OK(e.watch_channel(a, "lobby:m"));
    OK(e.set_invisible("alice", true));
    OK(e.set_time(kStart + 5000));
    OK(e.tick()); // the connection times out
    CHECK(seen.size() == 7);
    if (seen.size() == 7) {
        CHECK(seen[0].kind == presence::EventKind::user_presence_changed);
        CHECK(seen[0].online && !seen[0].invisible);
        CHECK(seen[0].status == std::optional<std::string>("s \"q\""));
        CHECK(seen[0].last_active_ms == std::optional<int64_t>(kStart));
        CHECK(seen[0].watcher_count == -1);
        CHECK(seen[1].kind == presence::EventKind::member_added && seen[1].cid == "lobby:m");
        CHECK(seen[1].user_id == "alice" && seen[1].status == std::optional<std::string>("s \"q\""));
        CHECK(seen[2].kind == presence::EventKind::user_watching_start && seen[2].watcher_count == 1);
        // Going invisible: the own view says so first, then the user stops counting as a watcher.
        CHECK(seen[3].kind == presence::EventKind::user_presence_changed && seen[3].invisible);
        CHECK(seen[4].kind == presence::EventKind::user_watching_stop && seen[4].watcher_count == 0);
        // The invisible user's last connection closing changes the own view: offline now.
        CHECK(seen[5].kind == presence::EventKind::user_presence_changed);
        CHECK(!seen[5].online && seen[5].invisible);
        CHECK(seen[6].kind == presence::EventKind::connection_closed && seen[6].close_reason == "timeout");
        CHECK(seen[6].user_id == "alice" && seen[6].closed == a);
        CHECK(seen[6].type == "connection.closed" && seen[6].created_at_ms == kStart + 5000);
        CHECK(seen[0].type == "user.presence.changed" && seen[0].created_at_ms == kStart);
    }
    CHECK(presence::event_kind("no.such.type") == presence::EventKind::unknown);
}

// Past pending_dispatch_capacity the oldest host calls go, and the first event of the next
// pump says how many; events about different users carry different keys.
void test_overflow_and_user_keys() {
    auto e = make_engine(manual_config(kStart, R"("dispatch":"manual","pending_dispatch_capacity":3)"));
    (void)OK(e.connect_user("alice"));
    (void)OK(e.connect_user("bob"));
    (void)OK(e.pump());
    std::vector<std::pair<presence::EventKind, std::uint64_t>> seen;
    std::vector<std::uint64_t> keys;
    auto l = OK(e.add_listener([&](const presence::Event &ev) {
        seen.emplace_back(ev.kind, ev.dropped);
        keys.push_back(ev.user_key);
    }));
    for (int i = 0; i < 5; ++i) OK(e.set_status(i % 2 ? "alice" : "bob", "s" + std::to_string(i)));
    CHECK(OK(e.pump()) == 4);
    CHECK(seen.size() == 4);
    if (seen.size() == 4) {
        CHECK(seen[0].first == presence::EventKind::engine_overflow && seen[0].second == 2);
        CHECK(keys[0] == 0); // about no user
        CHECK(seen[1].first == presence::EventKind::user_presence_changed && seen[1].second == 0);
        // s2 (bob), s3 (alice), s4 (bob)
        CHECK(keys[1] != 0 && keys[2] != 0 && keys[1] != keys[2] && keys[1] == keys[3]);
    }
}

// Draining a queue into a reused Batch: typed fields, JSON only on request (the same
// text the JSON drain gives), nothing left behind, errors for unknown connections.
void test_batch_poll() {
    auto e = make_engine(manual_config());
    auto batch = OK(presence::Batch::create());
    OK(e.upsert_channel(R"({"type":"lobby","id":"main","members":["alice","bob"]})"));
    presence::ConnectionId bob = OK(e.connect_user("bob"));
    presence::ConnectionId twin = OK(e.connect_user("bob")); // same subscriptions, drained as JSON
    (void)OK(e.watch_channel(bob, "lobby:main"));
    (void)OK(e.watch_channel(twin, "lobby:main"));
    (void)OK(e.poll(bob, batch)); // bob's own watching event
    (void)OK(e.poll_events_json(twin));
    CHECK(OK(e.poll(bob, batch)) == 0);
    CHECK(batch.empty());

    presence::ConnectionId alice = OK(e.connect(R"({"id":"alice","status":"ready"})"));
    OK(e.set_status("alice", std::nullopt));
    OK(e.disconnect(alice));
    CHECK(OK(e.poll(bob, batch, 2)) == 2);
    CHECK(batch.size() == 2);
    std::string json_drain = OK(e.poll_events_json(twin, 2));
    std::vector<std::string> texts;
    for (presence::Event ev : batch) {
        CHECK(ev.kind == presence::EventKind::user_presence_changed);
        CHECK(ev.type == "user.presence.changed");
        CHECK(ev.connection_id == bob);
        CHECK(ev.user_id == "alice");
        CHECK(ev.online);
        CHECK(!ev.invisible);
        CHECK(ev.last_active_ms == std::optional<int64_t>(kStart));
        CHECK(ev.created_at_ms == kStart);
        CHECK(ev.closed_connection_id == 0);
        CHECK(ev.user_key != 0 && ev.user_key == ev.info().user_key && ev.dropped == 0);
        presence::Result<std::string_view> text = ev.json();
        CHECK(text.ok());
        texts.emplace_back(text.value_or(std::string_view()));
    }
    CHECK(batch[0].status == std::optional<std::string_view>("ready"));
    CHECK(!batch[1].status);
    CHECK(batch[0].seq < batch[1].seq);
    // The same events as JSON, but for the twin connection.
    for (std::string &t : texts) {
        const std::string from = "\"connection_id\":" + std::to_string(bob);
        CHECK(has(t, from));
        t.replace(t.find(from), from.size(), "\"connection_id\":" + std::to_string(twin));
    }
    CHECK(json_drain == "[" + texts[0] + "," + texts[1] + "]");

    // The rest, then nothing: the batch is cleared by every poll.
    CHECK(OK(e.poll(bob, batch)) == 1);
    CHECK(batch[0].user_id == "alice" && !batch[0].online);
    CHECK(OK(e.poll(bob, batch)) == 0);
    CHECK(batch.empty());
    CHECK_CODE(e.poll(424242, batch), PRESENCE_ERR_NOT_FOUND);

    // Several connections at once: the list's order, each one's oldest first; an unknown
    // one anywhere moves nothing.
    OK(e.set_status("alice", "back"));
    OK(e.set_status("alice", "gone"));
    CHECK_CODE(e.poll(std::vector<presence::ConnectionId>{twin, 424242}, batch), PRESENCE_ERR_NOT_FOUND);
    CHECK(batch.empty());
    CHECK(OK(e.poll(std::vector<presence::ConnectionId>{twin, bob}, batch, 1)) == 2);
    CHECK(batch[0].connection_id == twin && !batch[0].online && !batch[0].status); // left from above
    CHECK(batch[1].connection_id == bob && batch[1].status == std::optional<std::string_view>("back"));
    const presence::ConnectionId both[] = {bob, twin};
    CHECK(OK(e.poll(both, 2, batch)) == 3);
    CHECK(batch[0].connection_id == bob && batch[0].status == std::optional<std::string_view>("gone"));
    CHECK(batch[1].connection_id == twin && batch[1].status == std::optional<std::string_view>("back"));
    CHECK(batch[2].connection_id == twin && batch[2].status == std::optional<std::string_view>("gone"));
    CHECK(OK(e.poll(both, 0, batch)) == 0);
    CHECK_CODE(e.connect_user(std::string_view("a\0b", 3)), PRESENCE_ERR_INVALID);
    CHECK_CODE(e.connect_user("has space"), PRESENCE_ERR_INVALID);
    OK(e.disconnect(bob));
    OK(e.disconnect(twin));
}

// Destroying a token while holding a lock its callback is waiting for, on another
// thread: the token's removal must not wait for that callback (a deadlock otherwise).
void test_token_destroyed_under_the_callbacks_lock() {
    auto e = make_engine(manual_config());
    std::mutex lock;
    std::atomic<bool> in_callback{false};
    std::atomic<int> calls{0};
    presence::Listener token = OK(e.add_listener("user.presence.changed", std::nullopt, [&](const presence::Event &) {
        in_callback = true;
        std::lock_guard<std::mutex> guard(lock);
        ++calls;
    }));
    OK(e.upsert_user(R"({"id":"alice"})"));
    std::atomic<bool> done{false};
    std::thread watchdog([&] {
        for (int i = 0; i < 300 && !done; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(100));
        if (!done) {
            std::fprintf(stderr, "token_destroyed_under_the_callbacks_lock: deadlocked\n");
            std::_Exit(1);
        }
    });
    {
        std::unique_lock<std::mutex> held(lock);
        std::thread other([&] { (void)e.set_status("alice", "x"); }); // its callback waits for `lock`
        while (!in_callback) std::this_thread::yield();
        token.reset(); // must return although the callback is running, blocked on `lock`
        held.unlock();
        other.join();
    }
    done = true;
    watchdog.join();
    CHECK(calls == 1);
    OK(e.set_status("alice", "y"));
    CHECK(calls == 1); // removed: no call after reset()

    // reset_and_wait from the dispatching thread's own callback is allowed too.
    presence::Listener self;
    int self_calls = 0;
    self = OK(e.add_listener("user.presence.changed", std::nullopt, [&](const presence::Event &) {
        ++self_calls;
        self.reset_and_wait();
    }));
    OK(e.set_status("alice", "z"));
    OK(e.set_status("alice", "w"));
    CHECK(self_calls == 1);
}

void test_manual_dispatch_and_poll() {
    auto e = make_engine(manual_config(kStart, "\"dispatch\":\"manual\""));
    std::vector<Recorded> host, delivered;
    auto lh = OK(e.add_listener(recorder(host)));
    auto ld = OK(e.add_delivery_listener(recorder(delivered)));
    OK(e.upsert_channel(R"({"type":"lobby","id":"l1","members":["alice","bob"]})"));
    presence::ConnectionId b = OK(e.connect(R"({"id":"bob"})"));
    (void)OK(e.watch_channel(b, "lobby:l1"));
    CHECK(OK(e.pump()) > 0);
    host.clear();
    delivered.clear();
    CHECK(OK(e.pump()) == 0);

    presence::ConnectionId a = OK(e.connect(R"({"id":"alice","status":"hi"})"));
    CHECK(host.empty());
    CHECK(delivered.empty());
    uint32_t n = OK(e.pump());
    CHECK(n >= 2);
    CHECK(count_type(host, "user.presence.changed") == 1);
    CHECK(count_type(delivered, "user.presence.changed") == 1);

    std::string polled = OK(e.poll_events_json(b));
    CHECK(polled.front() == '[' && polled.back() == ']');
    CHECK(count(polled, "\"type\":\"user.presence.changed\"") == 1);
    CHECK(OK(e.poll_events_json(b)) == "[]");
    OK(e.set_status("alice", "one"));
    OK(e.set_status("alice", "two"));
    std::string first = OK(e.poll_events_json(b, 1));
    CHECK(count(first, "\"type\":") == 1);
    CHECK(has(first, "\"status\":\"one\""));
    std::string second = OK(e.poll_events_json(b, 10));
    CHECK(count(second, "\"type\":") == 1);
    CHECK(has(second, "\"status\":\"two\""));
    (void)OK(e.pump());
    OK(e.disconnect(a));
    OK(e.disconnect(b));
    (void)OK(e.pump());
}

// A user with status connects while another connection watches a channel with
// presence; invisible users appear offline; last_active refreshes after 15 minutes
// on the manual clock.
void test_presence_scenario() {
    auto e = make_engine(manual_config());
    std::vector<Recorded> delivered;
    auto ld = OK(e.add_delivery_listener(recorder(delivered)));
    OK(e.upsert_channel(R"({"type":"lobby","id":"main","members":["alice","bob","carol"]})"));

    presence::ConnectionId bob = OK(e.connect(R"({"id":"bob"})"));
    CHECK(OK(e.watch_channel(bob, "lobby:main", true)).watcher_count == 1);
    CHECK(!has(OK(e.poll_events_json(bob)), "\"alice\""));
    delivered.clear();

    presence::ConnectionId alice = OK(e.connect(R"({"id":"alice","status":"Looking for group"})"));
    std::string events = OK(e.poll_events_json(bob));
    CHECK(count(events, "\"type\":\"user.presence.changed\"") == 1);
    CHECK(has(events, "\"id\":\"alice\""));
    CHECK(has(events, "\"online\":true"));
    CHECK(has(events, "\"status\":\"Looking for group\""));
    CHECK(has(events, "\"connection_id\":" + std::to_string(bob)));
    CHECK(has(events, "\"last_active\":\"2019-01-07T13:17:42.375Z\""));
    CHECK(!has(events, "\"invisible\""));
    int alice_deliveries = 0;
    for (const auto &d : delivered) {
        if (d.type == "user.presence.changed" && d.user_id == "alice" && d.conn == bob) {
            ++alice_deliveries;
            CHECK(d.online);
        }
    }
    CHECK(alice_deliveries == 1);

    // Invisible: carol connects invisible, bob sees nothing, and she is offline to him.
    delivered.clear();
    presence::ConnectionId carol = OK(e.connect(R"({"id":"carol","invisible":true})"));
    CHECK(!has(OK(e.poll_events_json(bob)), "\"carol\""));
    for (const auto &d : delivered) CHECK(d.user_id != "carol");
    presence::User carol_public = OK(e.get_user(bob, "carol"));
    CHECK(!carol_public.online);
    CHECK(!carol_public.invisible);
    CHECK(OK(e.get_user(carol, "carol")).invisible == std::optional<bool>(true));
    std::vector<presence::User> online = OK(e.query_users(bob, R"({"filter_conditions":{"online":true}})"));
    CHECK(online.size() == 2); // alice and bob, not carol
    for (const auto &u : online) CHECK(u.id != "carol");
    CHECK(OK(e.watch_channel(carol, "lobby:main")).watcher_count == 1); // carol does not count
    // Going visible is a presence change for bob.
    OK(e.set_invisible("carol", false));
    std::string carol_events = OK(e.poll_events_json(bob));
    CHECK(has(carol_events, "\"id\":\"carol\""));
    CHECK(has(carol_events, "\"online\":true"));
    OK(e.set_invisible("carol", true));
    CHECK(has(OK(e.poll_events_json(bob)), "\"online\":false"));
    CHECK(!OK(e.get_user(bob, "carol")).online);

    // Manual clock: last_active refreshes after 15 minutes, silently.
    (void)OK(e.poll_events_json(bob));
    delivered.clear();
    OK(e.set_time(kStart + 14 * 60 * 1000));
    OK(e.tick());
    CHECK(OK(e.get_user("alice")).last_active_ms == std::optional<int64_t>(kStart));
    OK(e.set_time(kStart + 15 * 60 * 1000));
    OK(e.tick());
    CHECK(OK(e.get_user("alice")).last_active_ms == std::optional<int64_t>(kStart + 15 * 60 * 1000));
    CHECK(OK(e.get_user("carol")).last_active_ms == std::optional<int64_t>(kStart));
    CHECK(OK(e.poll_events_json(bob)) == "[]");
    CHECK(delivered.empty());
    CHECK_CODE(e.set_time(kStart), PRESENCE_ERR_STATE);

    // Last connection closing sets last_active once more and flips online.
    OK(e.set_time(std::chrono::system_clock::time_point(
        std::chrono::milliseconds(kStart + 20 * 60 * 1000))));
    OK(e.disconnect(alice));
    std::string gone = OK(e.poll_events_json(bob));
    CHECK(has(gone, "\"online\":false"));
    CHECK(has(gone, "\"last_active\":\"2019-01-07T13:37:42.375Z\""));
    OK(e.disconnect(carol));
    OK(e.disconnect(bob));
}

void test_save_load() {
    char dir_template[] = "/tmp/presence_cpp_test_XXXXXX";
    char *dir = mkdtemp(dir_template);
    CHECK(dir != nullptr);
    if (dir == nullptr) return;
    std::string path = std::string(dir) + "/state.json";

    auto e = make_engine(manual_config());
    presence::ConnectionId c = OK(e.connect(R"({"id":"alice","status":"saved","level":7})"));
    OK(e.set_invisible("alice", true));
    OK(e.upsert_channel(R"({"type":"lobby","id":"keep","members":["alice","bob"]})"));
    OK(e.save(path));
    CHECK_CODE(e.load(path), PRESENCE_ERR_STATE); // has connections
    OK(e.disconnect(c));

    auto f = make_engine(manual_config(kStart + 1000));
    OK(f.load(path));
    presence::User u = OK(f.get_user("alice"));
    CHECK(u.status == std::optional<std::string>("saved"));
    CHECK(custom(u, "level") == "7");
    CHECK(u.invisible == std::optional<bool>(true));
    CHECK(!u.online);
    auto kept = OK(f.query_channels(R"({"filter_conditions":{"cid":"lobby:keep"}})"));
    CHECK(kept.size() == 1 && kept[0].channel.member_count == 2);
    CHECK_CODE(f.load(std::string(dir) + "/missing.json"), PRESENCE_ERR_IO);
    CHECK_CODE(f.save(std::string(dir) + "/no/such/dir/x.json"), PRESENCE_ERR_IO);
    std::remove(path.c_str());
    rmdir(dir);
}

void test_engine_move_keeps_listeners() {
    auto e = make_engine(manual_config());
    std::vector<Recorded> got;
    auto l = OK(e.add_listener(recorder(got)));
    presence::Engine moved = std::move(e);
    (void)OK(moved.connect(R"({"id":"mover"})"));
    CHECK(got.size() == 1);
    presence::Engine assigned = make_engine("");
    assigned = std::move(moved);
    OK(assigned.set_status("mover", "s"));
    CHECK(got.size() == 2);
    l.reset();
    OK(assigned.set_status("mover", "t"));
    CHECK(got.size() == 2);
}

#if defined(__cpp_exceptions)
// The throwing layer: or_throw() answers the value or throws presence::Exception with
// the code and message; a handler's exception comes back from the outermost call.
void test_throwing_layer() {
    auto e = presence::Engine::create(manual_config()).or_throw();
    presence::ConnectionId c = e.connect(R"({"id":"alice"})").or_throw();
    CHECK(e.get_user("alice").or_throw().online);
    bool thrown = false;
    try {
        e.disconnect(424242).or_throw();
    } catch (const presence::Exception &ex) {
        thrown = ex.code() == PRESENCE_ERR_NOT_FOUND && ex.code_name() == "PRESENCE_ERR_NOT_FOUND" &&
                 std::string(ex.what()) == presence_last_error();
    }
    CHECK(thrown);

    // Immediate dispatch: the call that caused the event reports the handler's exception.
    int calls = 0;
    auto l = e.add_listener([&](const presence::Event &) {
        ++calls;
        throw std::runtime_error("boom from callback");
    }).or_throw();
    presence::Result<void> r = e.set_status("alice", "x");
    CHECK(!r.ok());
    CHECK(r.has_value()); // the engine did the work
    CHECK(r.code() == PRESENCE_OK);
    CHECK(r.handler_exception() != nullptr);
    thrown = false;
    try {
        presence::Result<presence::ConnectionId> again = e.connect(R"({"id":"bob"})");
        CHECK(again.has_value() && *again != 0);
        (void)std::move(again).or_throw();
    } catch (const std::runtime_error &ex) {
        thrown = std::string(ex.what()) == "boom from callback";
    }
    CHECK(thrown);
    CHECK(calls == 2);
    CHECK(OK(e.get_user("alice")).status == std::optional<std::string>("x"));
    l.reset();
    OK(e.tick()); // nothing pending any more
    OK(e.disconnect(c));

    // Manual dispatch: pump() reports it; both events were delivered.
    auto m = presence::Engine::create(manual_config(kStart, "\"dispatch\":\"manual\"")).or_throw();
    int mcalls = 0;
    auto ml = m.add_listener([&](const presence::Event &) {
        ++mcalls;
        throw std::logic_error("manual boom");
    }).or_throw();
    presence::ConnectionId z = m.connect(R"({"id":"zed"})").or_throw();
    m.set_status("zed", "y").or_throw();
    CHECK(mcalls == 0);
    thrown = false;
    try {
        (void)m.pump().or_throw();
    } catch (const std::logic_error &ex) {
        thrown = std::string(ex.what()) == "manual boom";
    }
    CHECK(thrown);
    CHECK(mcalls == 2);
    m.disconnect(z).or_throw();
}
#endif

} // namespace

int main() {
    const std::pair<const char *, void (*)()> tests[] = {
        {"version_and_abi", test_version_and_abi},
        {"create_and_errors", test_create_and_errors},
        {"users", test_users},
        {"channels_and_queries", test_channels_and_queries},
        {"json_reader", test_json_reader},
        {"listeners", test_listeners},
        {"typed_event_fields", test_typed_event_fields},
        {"batch_poll", test_batch_poll},
        {"overflow_and_user_keys", test_overflow_and_user_keys},
        {"token_destroyed_under_the_callbacks_lock", test_token_destroyed_under_the_callbacks_lock},
        {"manual_dispatch_and_poll", test_manual_dispatch_and_poll},
        {"presence_scenario", test_presence_scenario},
        {"save_load", test_save_load},
        {"engine_move_keeps_listeners", test_engine_move_keeps_listeners},
#if defined(__cpp_exceptions)
        {"throwing_layer", test_throwing_layer},
#endif
    };
    for (const auto &[name, fn] : tests) {
        int failed_before = g_failed;
        fn();
        std::printf("%s %s\n", g_failed == failed_before ? "ok  " : "FAIL", name);
    }
#if defined(__cpp_exceptions)
    std::printf("mode: exceptions\n");
#else
    std::printf("mode: -fno-exceptions -fno-rtti\n");
#endif
    return finish("");
}
