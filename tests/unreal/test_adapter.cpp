// Runs the Unreal plugin's engine-independent core (PresenceEventAdapter.h, PresenceTypes.h)
// against the real engine, with stub/CoreMinimal.h standing in for Unreal's Core types:
// every event kind reaches the right sink method with the right payload, and answers
// convert to the Blueprint structs. Built by tests/unreal/run.sh with -fno-exceptions
// -fno-rtti, as Unreal builds modules.
#include "PresenceEventAdapter.h"
#include "../cpp/check.h"

#include <cstdio>
#include <string>
#include <vector>

namespace {

FString F(const char16_t *Text) { return FString(Text); }

constexpr int64 kStart = 1546867062375; // 2019-01-07T13:17:42.375Z
// FDateTime ticks of kStart: (days from 0001-01-01 to 1970-01-01) * 864e9 + ms * 1e4.
constexpr int64 kStartTicks = 621355968000000000LL + kStart * 10000;

struct RecordingSink : IPresenceEventSink {
    std::vector<FPresenceChange> Changes;
    std::vector<FString> Updated;
    std::vector<FPresenceWatching> Watching;
    std::vector<FPresenceMembership> Members;
    std::vector<FPresenceConnectionClosed> Closed;
    std::vector<char> Order; // one letter per call, to check the sequence

    void HandleUserPresenceChanged(const FPresenceChange &C) override { Changes.push_back(C); Order.push_back('P'); }
    void HandleUserUpdated(const FString &UserId) override { Updated.push_back(UserId); Order.push_back('U'); }
    void HandleUserWatching(const FPresenceWatching &W) override { Watching.push_back(W); Order.push_back('W'); }
    void HandleMemberChanged(const FPresenceMembership &M) override { Members.push_back(M); Order.push_back('M'); }
    void HandleConnectionClosed(const FPresenceConnectionClosed &C) override { Closed.push_back(C); Order.push_back('C'); }
};

template <typename T>
T must(presence::Result<T> r) {
    if (!r.has_value()) {
        std::fprintf(stderr, "engine call failed: %s\n", r.error().message().c_str());
        std::abort();
    }
    if constexpr (!std::is_void_v<T>) return std::move(*r);
}

void test_conversions() {
    CHECK(PresenceAdapter::ToFString("abc") == F(u"abc"));
    CHECK(PresenceAdapter::ToFString("\xc3\xa9\xf0\x9f\x98\x80") == F(u"\u00e9\U0001F600"));
    CHECK(PresenceAdapter::ToFString("") == FString());
    CHECK(PresenceAdapter::ToUtf8(F(u"\u00e9\U0001F600x")) == "\xc3\xa9\xf0\x9f\x98\x80x");
    CHECK(PresenceAdapter::ToUtf8(FString()).empty());
    CHECK(PresenceAdapter::ToDateTime(0).GetTicks() == 621355968000000000LL);
    CHECK(PresenceAdapter::ToDateTime(kStart).GetTicks() == kStartTicks);
    CHECK(PresenceAdapter::ToDateTime(-1).GetTicks() == 621355968000000000LL - 10000);
}

void test_events_reach_the_sink() {
    presence::Engine engine = must(presence::Engine::create(
        R"({"clock":"manual","start_time_ms":1546867062375,"dispatch":"manual","connection_timeout_ms":1000})"));
    RecordingSink sink;
    presence::Listener listener =
        must(engine.add_listener([&](const presence::Event &e) { PresenceAdapter::Dispatch(e, sink); }));

    must(engine.upsert_channel(R"({"type":"lobby","id":"main"})"));
    presence::ConnectionId alice = must(engine.connect(R"({"id":"ali\u00e9","status":"in lobby"})"));
    must(engine.add_members("lobby:main", {"ali\xc3\xa9", "bob"}));
    (void)must(engine.watch_channel(alice, "lobby:main"));
    must(engine.upsert_user(R"({"id":"bob","level":3})"));
    CHECK(sink.Order.empty()); // manual dispatch: nothing before the pump
    (void)must(engine.pump());
    must(engine.remove_members("lobby:main", {"bob"}));
    must(engine.set_time(kStart + 5000));
    must(engine.tick()); // alice times out
    (void)must(engine.pump());

    const std::string order(sink.Order.begin(), sink.Order.end());
    CHECK(order == "PMMWUMWPC");
    if (sink.Changes.size() == 2) {
        CHECK(sink.Changes[0].UserId == F(u"ali\u00e9"));
        CHECK(sink.Changes[0].bOnline);
        CHECK(!sink.Changes[0].bInvisible);
        CHECK(sink.Changes[0].Status == F(u"in lobby"));
        CHECK(sink.Changes[0].LastActive.GetTicks() == kStartTicks);
        CHECK(!sink.Changes[1].bOnline);
        CHECK(sink.Changes[1].LastActive.GetTicks() == kStartTicks + 5000 * 10000);
    }
    CHECK(sink.Members.size() == 3);
    if (sink.Members.size() == 3) {
        CHECK(sink.Members[0].UserId == F(u"ali\u00e9") && sink.Members[0].bAdded);
        CHECK(sink.Members[1].UserId == F(u"bob") && sink.Members[1].ChannelId == F(u"lobby:main"));
        CHECK(sink.Members[2].UserId == F(u"bob") && !sink.Members[2].bAdded);
    }
    CHECK(sink.Watching.size() == 2);
    if (sink.Watching.size() == 2) {
        CHECK(sink.Watching[0].bStarted && sink.Watching[0].WatcherCount == 1);
        CHECK(sink.Watching[0].ChannelId == F(u"lobby:main"));
        CHECK(!sink.Watching[1].bStarted && sink.Watching[1].WatcherCount == 0);
    }
    CHECK(sink.Updated.size() == 1 && sink.Updated[0] == F(u"bob"));
    CHECK(sink.Closed.size() == 1);
    if (sink.Closed.size() == 1) {
        CHECK(sink.Closed[0].UserId == F(u"ali\u00e9"));
        CHECK(sink.Closed[0].Reason == F(u"timeout"));
    }
}

void test_answers_convert() {
    presence::Engine engine = must(presence::Engine::create(R"({"clock":"manual","start_time_ms":1546867062375})"));
    must(engine.upsert_channel(R"({"type":"lobby","id":"main","members":["alice","bob"]})"));
    presence::ConnectionId alice = must(engine.connect(R"({"id":"alice","status":"ready","rank":7})"));
    FPresenceChannelState state = PresenceAdapter::ToChannelState(must(engine.watch_channel(alice, "lobby:main")));
    CHECK(state.ChannelId == F(u"lobby:main"));
    CHECK(state.MemberCount == 2 && state.Members.Num() == 2);
    CHECK(state.WatcherCount == 1 && state.Watchers.Num() == 1);
    FPresenceUser user = PresenceAdapter::ToUser(must(engine.get_user("alice")));
    CHECK(user.UserId == F(u"alice") && user.bOnline && !user.bInvisible);
    CHECK(user.Status == F(u"ready"));
    CHECK(user.LastActive.GetTicks() == kStartTicks);
    CHECK(user.CustomFieldNames.Num() == 1 && user.CustomFieldNames[0] == F(u"rank"));
    CHECK(user.CustomFieldJson.Num() == 1 && user.CustomFieldJson[0] == F(u"7"));
    FPresenceUser bob = PresenceAdapter::ToUser(must(engine.get_user(alice, "bob")));
    CHECK(!bob.bOnline && bob.Status.IsEmpty() && bob.LastActive.GetTicks() == 0);
}

} // namespace

int main() {
    test_conversions();
    test_events_reach_the_sink();
    test_answers_convert();
    return finish("unreal adapter: ");
}
