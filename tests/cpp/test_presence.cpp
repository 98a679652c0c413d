// Tests of bindings/cpp/presence.hpp against the real engine (libpresence.a).
// Plain asserts: CHECK prints file:line on failure; the run ends with
// "N passed, M failed" and exits non-zero when anything failed.
#include "presence.hpp"

#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>
#include <string_view>
#include <unistd.h>
#include <utility>
#include <vector>

namespace {

int g_passed = 0;
int g_failed = 0;

#define CHECK(cond)                                                                  \
    do {                                                                             \
        if (cond) {                                                                  \
            ++g_passed;                                                              \
        } else {                                                                     \
            ++g_failed;                                                              \
            std::fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
        }                                                                            \
    } while (0)

// Expect `stmt` to throw presence::Error with `expected` code.
#define CHECK_THROWS_CODE(stmt, expected)                                            \
    do {                                                                             \
        bool thrown_ = false;                                                        \
        try {                                                                        \
            stmt;                                                                    \
        } catch (const presence::Error &e_) {                                        \
            thrown_ = true;                                                          \
            if (e_.code() == (expected) && std::string(e_.what()).size() > 0) {      \
                ++g_passed;                                                          \
            } else {                                                                 \
                ++g_failed;                                                          \
                std::fprintf(stderr, "%s:%d: %s threw %s (%s), expected %s\n",       \
                             __FILE__, __LINE__, #stmt,                              \
                             std::string(e_.code_name()).c_str(), e_.what(),         \
                             std::string(presence::result_name(expected)).c_str());  \
            }                                                                        \
        } catch (const std::exception &e_) {                                         \
            thrown_ = true;                                                          \
            ++g_failed;                                                              \
            std::fprintf(stderr, "%s:%d: %s threw a non-presence exception: %s\n",  \
                         __FILE__, __LINE__, #stmt, e_.what());                      \
        }                                                                            \
        if (!thrown_) {                                                              \
            ++g_failed;                                                              \
            std::fprintf(stderr, "%s:%d: %s did not throw\n", __FILE__, __LINE__, #stmt); \
        }                                                                            \
    } while (0)

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

// The raw text of the first scalar value of "key" in a compact JSON text
// ("true", "\"x\"", "12", ...); empty when absent.
std::string field(std::string_view json, std::string_view key) {
    std::string pat = "\"" + std::string(key) + "\":";
    size_t pos = json.find(pat);
    if (pos == std::string_view::npos) return {};
    pos += pat.size();
    size_t end = pos;
    if (end < json.size() && json[end] == '"') {
        ++end;
        while (end < json.size() && json[end] != '"') {
            if (json[end] == '\\') ++end;
            ++end;
        }
        ++end;
    } else {
        while (end < json.size() && json[end] != ',' && json[end] != '}' && json[end] != ']') ++end;
    }
    return std::string(json.substr(pos, end - pos));
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
                                std::string(e.json), e.seq, e.connection_id, e.online});
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

void test_version() {
    CHECK(!presence::version().empty());
    CHECK(presence::abi_version() >= 1);
    CHECK(presence::result_name(PRESENCE_OK) == "PRESENCE_OK");
    CHECK(presence::result_name(PRESENCE_ERR_NOT_FOUND) == "PRESENCE_ERR_NOT_FOUND");
    CHECK(presence::json_quote("a\"b\\c\n\x01") == "\"a\\\"b\\\\c\\n\\u0001\"");
    CHECK(presence::json_string_array(std::vector<std::string>{"a", "b"}) == "[\"a\",\"b\"]");
}

void test_create_and_errors() {
    {
        auto e = presence::Engine::create();
        CHECK(e.get() != nullptr);
    }
    CHECK_THROWS_CODE((void)presence::Engine::create("{not json"), PRESENCE_ERR_JSON);
    try {
        (void)presence::Engine::create(R"({"clokc":"manual"})");
        CHECK(!"unknown config key accepted");
    } catch (const presence::Error &e) {
        CHECK(e.code() == PRESENCE_ERR_JSON || e.code() == PRESENCE_ERR_INVALID);
        CHECK(has(e.what(), "clokc"));
    }

    CHECK(presence::Engine::create().cluster_status() == R"({"mode":"single"})");

    auto e = presence::Engine::create(manual_config());
    CHECK_THROWS_CODE(e.disconnect(424242), PRESENCE_ERR_NOT_FOUND);
    CHECK_THROWS_CODE(e.heartbeat(424242), PRESENCE_ERR_NOT_FOUND);
    CHECK_THROWS_CODE((void)e.connect("{\"id\":"), PRESENCE_ERR_JSON);
    CHECK_THROWS_CODE((void)e.connect(R"({"id":"has space"})"), PRESENCE_ERR_INVALID);
    CHECK_THROWS_CODE(e.upsert_user(R"({"id":"x","online":true})"), PRESENCE_ERR_INVALID);
    CHECK_THROWS_CODE((void)e.get_user("nobody"), PRESENCE_ERR_NOT_FOUND);
    CHECK_THROWS_CODE((void)e.watch_channel(424242, "lobby:x"), PRESENCE_ERR_NOT_FOUND);
    CHECK_THROWS_CODE(e.add_members("lobby:none", {"a"}), PRESENCE_ERR_NOT_FOUND);
    CHECK_THROWS_CODE((void)e.query_users(R"({"filter_conditions":{"id":{"$bogus":1}}})"),
                      PRESENCE_ERR_INVALID);
    CHECK_THROWS_CODE((void)e.poll_events(424242), PRESENCE_ERR_NOT_FOUND);
    CHECK_THROWS_CODE(e.upsert_user("{\"id\":\"\xff\"}"), PRESENCE_ERR_UTF8);
    CHECK_THROWS_CODE((void)e.query_users(R"({"limit":1000})"), PRESENCE_ERR_LIMIT);
    CHECK_THROWS_CODE(e.upsert_user(std::string_view("{\"id\":\"a\0b\"}", 13)), PRESENCE_ERR_INVALID);

    // The message of an error is the one presence_last_error() left.
    try {
        e.disconnect(424242);
        CHECK(!"no throw");
    } catch (const presence::Error &err) {
        CHECK(err.code() == PRESENCE_ERR_NOT_FOUND);
        CHECK(err.code_name() == "PRESENCE_ERR_NOT_FOUND");
        CHECK(std::string(err.what()) == presence_last_error());
    }

    // A moved-from engine holds no handle: calls throw PRESENCE_ERR_NULL.
    auto moved = std::move(e);
    CHECK(e.get() == nullptr); // NOLINT(bugprone-use-after-move)
    CHECK_THROWS_CODE(e.tick(), PRESENCE_ERR_NULL); // NOLINT(bugprone-use-after-move)
    moved.tick();
    CHECK(moved.get() != nullptr);
}

void test_users() {
    auto e = presence::Engine::create(manual_config());
    presence::ConnectionId c = e.connect(R"({"id":"alice","status":"ready","name":"Alice"})");
    CHECK(c != 0);
    std::string u = e.get_user("alice");
    CHECK(field(u, "id") == "\"alice\"");
    CHECK(field(u, "online") == "true");
    CHECK(field(u, "status") == "\"ready\"");
    CHECK(field(u, "name") == "\"Alice\"");
    CHECK(field(u, "invisible") == "false");
    CHECK(field(u, "last_active") == "\"2019-01-07T13:17:42.375Z\"");

    e.set_status("alice", "busy");
    CHECK(field(e.get_user("alice"), "status") == "\"busy\"");
    e.set_status("alice", std::nullopt);
    CHECK(field(e.get_user("alice"), "status").empty() ||
          field(e.get_user("alice"), "status") == "null");

    e.upsert_user(R"({"id":"alice","name":"Alice B"})");
    CHECK(field(e.get_user("alice"), "name") == "\"Alice B\"");
    e.upsert_user(R"({"id":"bob"})");
    CHECK(field(e.get_user("bob"), "online") == "false");

    e.set_invisible("alice", true);
    CHECK(field(e.get_user("alice"), "invisible") == "true");
    e.set_invisible("alice", false);
    CHECK(field(e.get_user("alice"), "invisible") == "false");

    e.heartbeat(c);
    presence::ConnectionId c2 = e.connect(R"({"id":"alice"})");
    CHECK(c2 != c);
    e.disconnect(c);
    CHECK(field(e.get_user("alice"), "online") == "true");
    e.disconnect(c2);
    CHECK(field(e.get_user("alice"), "online") == "false");
    CHECK_THROWS_CODE(e.disconnect(c2), PRESENCE_ERR_NOT_FOUND);
}

void test_channels_and_queries() {
    auto e = presence::Engine::create(manual_config());
    e.upsert_channel(R"({"type":"lobby","id":"main","members":["alice"],"topic":"fun"})");
    e.add_members("lobby:main", {"bob", "carol"});
    e.add_members("lobby:main", std::vector<std::string>{"dave"});
    e.add_members("lobby:main", R"(["erin"])");
    presence::ConnectionId c = e.connect(R"({"id":"alice"})");

    std::string state = e.watch_channel(c, "lobby:main");
    CHECK(has(state, "\"channel\":"));
    CHECK(has(state, "\"cid\":\"lobby:main\""));
    CHECK(field(state, "member_count") == "5");
    CHECK(count(state, "\"user_id\":") == 5);
    CHECK(field(state, "watcher_count") == "1");
    CHECK(has(state, "\"topic\":\"fun\""));
    // Watching again is idempotent.
    std::string again = e.watch_channel(c, "lobby:main", true);
    CHECK(field(again, "watcher_count") == "1");

    e.remove_members("lobby:main", {"erin"});
    e.remove_members("lobby:main", std::vector<std::string>{"dave"});
    e.remove_members("lobby:main", R"(["carol"])");
    std::string channels = e.query_channels(R"({"filter_conditions":{"type":"lobby"}})");
    CHECK(has(channels, "\"channels\":["));
    CHECK(field(channels, "member_count") == "2");
    CHECK(field(channels, "watcher_count") == "1");

    e.stop_watching(c, "lobby:main");
    CHECK(field(e.query_channels(c, R"({"filter_conditions":{"cid":"lobby:main"}})"),
                "watcher_count") == "0");

    std::string users = e.query_users(R"({"filter_conditions":{"online":true}})");
    CHECK(has(users, "\"users\":["));
    CHECK(has(users, "\"id\":\"alice\""));
    CHECK(!has(users, "\"id\":\"bob\""));
    std::string by_conn = e.query_users(
        c, R"({"filter_conditions":{"id":{"$in":["alice","bob"]}},"sort":[{"field":"id","direction":1}]})");
    CHECK(by_conn.find("\"alice\"") < by_conn.find("\"bob\""));

    // query_users with presence subscribes; unsubscribe_user ends it.
    presence::ConnectionId watcher = e.connect(R"({"id":"watcher"})");
    (void)e.query_users(watcher, R"({"filter_conditions":{"id":"zoe"},"presence":true})");
    CHECK_THROWS_CODE((void)e.query_users(watcher, "{"), PRESENCE_ERR_JSON);
    e.upsert_user(R"({"id":"zoe"})");
    (void)e.query_users(watcher, R"({"filter_conditions":{"id":"zoe"},"presence":true})");
    presence::ConnectionId zoe = e.connect(R"({"id":"zoe"})");
    CHECK(count(e.poll_events(watcher), "\"id\":\"zoe\"") == 1);
    e.unsubscribe_user(watcher, "zoe");
    e.set_status("zoe", "unseen");
    CHECK(e.poll_events(watcher) == "[]");
    CHECK_THROWS_CODE(e.unsubscribe_user(424242, "zoe"), PRESENCE_ERR_NOT_FOUND);
    e.disconnect(zoe);

    // delete_channel: gone for queries and watches.
    e.delete_channel("lobby:main");
    CHECK(!has(e.query_channels(R"({"filter_conditions":{"type":"lobby"}})"), "lobby:main"));
    CHECK_THROWS_CODE((void)e.watch_channel(c, "lobby:main"), PRESENCE_ERR_NOT_FOUND);
    CHECK_THROWS_CODE(e.delete_channel("lobby:main"), PRESENCE_ERR_NOT_FOUND);
}

void test_listeners() {
    auto e = presence::Engine::create(manual_config());
    std::vector<Recorded> all, presence_only, bob_only;
    auto l_all = e.add_listener(recorder(all));
    auto l_type = e.add_listener("user.presence.changed", std::nullopt, recorder(presence_only));
    auto l_user = e.add_listener(std::nullopt, std::string("bob"), recorder(bob_only));
    CHECK(l_all && l_type && l_user);
    CHECK(l_all.id() != l_type.id());

    presence::ConnectionId a = e.connect(R"({"id":"alice"})");
    presence::ConnectionId b = e.connect(R"({"id":"bob"})");
    e.upsert_user(R"({"id":"bob","name":"Bob"})");
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
    e.set_status("alice", "away");
    CHECK(presence_only.size() == before);
    CHECK(count_type(all, "user.presence.changed") == 3);
    {
        std::vector<Recorded> scoped;
        {
            auto tmp = e.add_listener(recorder(scoped));
            e.set_status("alice", "back");
            CHECK(scoped.size() == 1);
        }
        e.set_status("alice", "gone");
        CHECK(scoped.size() == 1);
    }
    // Moving a token keeps the listener.
    size_t n_bob = bob_only.size();
    presence::Listener moved = std::move(l_user);
    CHECK(!l_user); // NOLINT(bugprone-use-after-move)
    e.set_status("bob", "hi");
    CHECK(bob_only.size() == n_bob + 1);
    moved = presence::Listener(); // move-assign an empty token: removes
    e.set_status("bob", "bye");
    CHECK(bob_only.size() == n_bob + 1);

    // A callback may destroy its own token and call into the engine.
    presence::Listener self;
    int self_calls = 0;
    self = e.add_listener("user.updated", std::nullopt, [&](const presence::Event &) {
        ++self_calls;
        self.reset();
        e.set_status("alice", "from callback");
    });
    e.upsert_user(R"({"id":"alice","name":"A"})");
    e.upsert_user(R"({"id":"alice","name":"B"})");
    CHECK(self_calls == 1);
    CHECK(field(e.get_user("alice"), "status") == "\"from callback\"");

    // Delivery listener: one call per (event, recipient connection).
    std::vector<Recorded> delivered;
    auto l_del = e.add_delivery_listener(recorder(delivered));
    e.upsert_channel(R"({"type":"room","id":"r1","members":["alice","bob"]})");
    (void)e.watch_channel(a, "room:r1");
    delivered.clear();
    e.set_status("bob", "watching");
    CHECK(delivered.size() == 1);
    if (!delivered.empty()) {
        CHECK(delivered[0].conn == a);
        CHECK(delivered[0].type == "user.presence.changed");
        CHECK(delivered[0].user_id == "bob");
        CHECK(has(delivered[0].json, "\"connection_id\":" + std::to_string(a)));
    }
    l_del.reset();
    e.set_status("bob", "quiet");
    CHECK(delivered.size() == 1);

    // An empty std::function is refused.
    CHECK_THROWS_CODE((void)e.add_listener(presence::EventHandler()), PRESENCE_ERR_NULL);
    e.disconnect(b);
    e.disconnect(a);

    // A listener may outlive its engine on the same thread (documented).
    presence::Listener orphan;
    {
        auto e2 = presence::Engine::create();
        orphan = e2.add_listener([](const presence::Event &) {});
    }
    orphan.reset();
    CHECK(!orphan);
}

void test_callback_exceptions() {
    // Immediate dispatch: rethrown from the call that caused the event.
    auto e = presence::Engine::create(manual_config());
    int calls = 0;
    auto l = e.add_listener([&](const presence::Event &) {
        ++calls;
        throw std::runtime_error("boom from callback");
    });
    bool caught = false;
    try {
        (void)e.connect(R"({"id":"alice"})");
    } catch (const std::runtime_error &err) {
        caught = std::string(err.what()) == "boom from callback";
    }
    CHECK(caught);
    CHECK(calls == 1);
    // The state change itself happened, and nothing is pending any more.
    CHECK(field(e.get_user("alice"), "online") == "true");
    l.reset();
    e.tick();

    // Manual dispatch: rethrown from pump().
    auto m = presence::Engine::create(manual_config(kStart, "\"dispatch\":\"manual\""));
    int mcalls = 0;
    auto ml = m.add_listener([&](const presence::Event &) {
        ++mcalls;
        throw std::logic_error("manual boom");
    });
    presence::ConnectionId c = m.connect(R"({"id":"zed"})");
    CHECK(mcalls == 0);
    m.set_status("zed", "x");
    CHECK(mcalls == 0);
    caught = false;
    try {
        (void)m.pump();
    } catch (const std::logic_error &err) {
        caught = std::string(err.what()) == "manual boom";
    }
    CHECK(caught);
    CHECK(mcalls == 2); // both events were delivered; the first exception is kept
    m.disconnect(c);
}

void test_manual_dispatch_and_poll() {
    auto e = presence::Engine::create(manual_config(kStart, "\"dispatch\":\"manual\""));
    std::vector<Recorded> host, delivered;
    auto lh = e.add_listener(recorder(host));
    auto ld = e.add_delivery_listener(recorder(delivered));
    e.upsert_channel(R"({"type":"lobby","id":"l1","members":["alice","bob"]})");
    presence::ConnectionId b = e.connect(R"({"id":"bob"})");
    (void)e.watch_channel(b, "lobby:l1");
    CHECK(e.pump() > 0);
    host.clear();
    delivered.clear();
    CHECK(e.pump() == 0);

    presence::ConnectionId a = e.connect(R"({"id":"alice","status":"hi"})");
    CHECK(host.empty());
    CHECK(delivered.empty());
    uint32_t n = e.pump();
    CHECK(n >= 2);
    CHECK(count_type(host, "user.presence.changed") == 1);
    CHECK(count_type(delivered, "user.presence.changed") == 1);

    std::string polled = e.poll_events(b);
    CHECK(polled.front() == '[' && polled.back() == ']');
    CHECK(count(polled, "\"type\":\"user.presence.changed\"") == 1);
    CHECK(e.poll_events(b) == "[]");
    e.set_status("alice", "one");
    e.set_status("alice", "two");
    std::string first = e.poll_events(b, 1);
    CHECK(count(first, "\"type\":") == 1);
    CHECK(has(first, "\"status\":\"one\""));
    std::string second = e.poll_events(b, 10);
    CHECK(count(second, "\"type\":") == 1);
    CHECK(has(second, "\"status\":\"two\""));
    (void)e.pump();
    e.disconnect(a);
    e.disconnect(b);
    (void)e.pump();
}

// The brief's scenario: a user with status connects while another connection
// watches a channel with presence; invisible users appear offline; last_active
// refreshes after 15 minutes on the manual clock.
void test_presence_scenario() {
    auto e = presence::Engine::create(manual_config());
    std::vector<Recorded> delivered;
    auto ld = e.add_delivery_listener(recorder(delivered));
    e.upsert_channel(R"({"type":"lobby","id":"main","members":["alice","bob","carol"]})");

    presence::ConnectionId bob = e.connect(R"({"id":"bob"})");
    std::string state = e.watch_channel(bob, "lobby:main", true);
    CHECK(field(state, "watcher_count") == "1");
    CHECK(e.poll_events(bob) == "[]" || !has(e.poll_events(bob), "\"alice\""));
    delivered.clear();

    presence::ConnectionId alice = e.connect(R"({"id":"alice","status":"Looking for group"})");
    std::string events = e.poll_events(bob);
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
    presence::ConnectionId carol = e.connect(R"({"id":"carol","invisible":true})");
    CHECK(!has(e.poll_events(bob), "\"carol\""));
    for (const auto &d : delivered) CHECK(d.user_id != "carol");
    std::string carol_public = e.get_user(bob, "carol");
    CHECK(field(carol_public, "online") == "false");
    CHECK(!has(carol_public, "\"invisible\""));
    std::string carol_own = e.get_user(carol, "carol");
    CHECK(field(carol_own, "invisible") == "true");
    CHECK(field(e.get_user("carol"), "invisible") == "true");
    std::string online_users = e.query_users(bob, R"({"filter_conditions":{"online":true}})");
    CHECK(has(online_users, "\"alice\""));
    CHECK(!has(online_users, "\"carol\""));
    state = e.watch_channel(carol, "lobby:main");
    CHECK(field(state, "watcher_count") == "1"); // carol does not count
    // Going visible is a presence change for bob.
    e.set_invisible("carol", false);
    std::string carol_events = e.poll_events(bob);
    CHECK(has(carol_events, "\"id\":\"carol\""));
    CHECK(has(carol_events, "\"online\":true"));
    e.set_invisible("carol", true);
    CHECK(has(e.poll_events(bob), "\"online\":false"));
    CHECK(field(e.get_user(bob, "carol"), "online") == "false");

    // Manual clock: last_active refreshes after 15 minutes, silently.
    (void)e.poll_events(bob);
    delivered.clear();
    e.set_time(kStart + 14 * 60 * 1000);
    e.tick();
    CHECK(field(e.get_user("alice"), "last_active") == "\"2019-01-07T13:17:42.375Z\"");
    e.set_time(kStart + 15 * 60 * 1000);
    e.tick();
    CHECK(field(e.get_user("alice"), "last_active") == "\"2019-01-07T13:32:42.375Z\"");
    CHECK(field(e.get_user("carol"), "last_active") == "\"2019-01-07T13:17:42.375Z\"");
    CHECK(e.poll_events(bob) == "[]");
    CHECK(delivered.empty());
    CHECK_THROWS_CODE(e.set_time(kStart), PRESENCE_ERR_STATE);

    // Last connection closing sets last_active once more and flips online.
    e.set_time(std::chrono::system_clock::time_point(
        std::chrono::milliseconds(kStart + 20 * 60 * 1000)));
    e.disconnect(alice);
    std::string gone = e.poll_events(bob);
    CHECK(has(gone, "\"online\":false"));
    CHECK(has(gone, "\"last_active\":\"2019-01-07T13:37:42.375Z\""));
    e.disconnect(carol);
    e.disconnect(bob);
}

void test_save_load() {
    char dir_template[] = "/tmp/presence_cpp_test_XXXXXX";
    char *dir = mkdtemp(dir_template);
    CHECK(dir != nullptr);
    if (dir == nullptr) return;
    std::string path = std::string(dir) + "/state.json";

    auto e = presence::Engine::create(manual_config());
    presence::ConnectionId c = e.connect(R"({"id":"alice","status":"saved","level":7})");
    e.set_invisible("alice", true);
    e.upsert_channel(R"({"type":"lobby","id":"keep","members":["alice","bob"]})");
    e.save(path);
    CHECK_THROWS_CODE(e.load(path), PRESENCE_ERR_STATE); // has connections
    e.disconnect(c);

    auto f = presence::Engine::create(manual_config(kStart + 1000));
    f.load(path);
    std::string u = f.get_user("alice");
    CHECK(field(u, "status") == "\"saved\"");
    CHECK(field(u, "level") == "7");
    CHECK(field(u, "invisible") == "true");
    CHECK(field(u, "online") == "false");
    CHECK(field(f.query_channels(R"({"filter_conditions":{"cid":"lobby:keep"}})"),
                "member_count") == "2");
    CHECK_THROWS_CODE(f.load(std::string(dir) + "/missing.json"), PRESENCE_ERR_IO);
    CHECK_THROWS_CODE(f.save(std::string(dir) + "/no/such/dir/x.json"), PRESENCE_ERR_IO);
    std::remove(path.c_str());
    rmdir(dir);
}

void test_engine_move_keeps_listeners() {
    auto e = presence::Engine::create(manual_config());
    std::vector<Recorded> got;
    auto l = e.add_listener(recorder(got));
    presence::Engine moved = std::move(e);
    (void)moved.connect(R"({"id":"mover"})");
    CHECK(got.size() == 1);
    presence::Engine assigned = presence::Engine::create();
    assigned = std::move(moved);
    assigned.set_status("mover", "s");
    CHECK(got.size() == 2);
    l.reset();
    assigned.set_status("mover", "t");
    CHECK(got.size() == 2);
}

} // namespace

int main() {
    const std::pair<const char *, void (*)()> tests[] = {
        {"version", test_version},
        {"create_and_errors", test_create_and_errors},
        {"users", test_users},
        {"channels_and_queries", test_channels_and_queries},
        {"listeners", test_listeners},
        {"callback_exceptions", test_callback_exceptions},
        {"manual_dispatch_and_poll", test_manual_dispatch_and_poll},
        {"presence_scenario", test_presence_scenario},
        {"save_load", test_save_load},
        {"engine_move_keeps_listeners", test_engine_move_keeps_listeners},
    };
    for (const auto &[name, fn] : tests) {
        int failed_before = g_failed;
        try {
            fn();
        } catch (const presence::Error &e) {
            ++g_failed;
            std::fprintf(stderr, "%s: unexpected presence::Error %s: %s\n", name,
                         std::string(e.code_name()).c_str(), e.what());
        } catch (const std::exception &e) {
            ++g_failed;
            std::fprintf(stderr, "%s: unexpected exception: %s\n", name, e.what());
        }
        std::printf("%s %s\n", g_failed == failed_before ? "ok  " : "FAIL", name);
    }
    std::printf("%d passed, %d failed\n", g_passed, g_failed);
    return g_failed == 0 ? 0 : 1;
}
