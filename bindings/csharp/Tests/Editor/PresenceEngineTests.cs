// Tests of the Presence runtime against the real native engine, as NUnit tests: Unity's
// Test Framework runs them in the editor (Window > General > Test Runner, EditMode), and
// tests/csharp/run.sh runs the same file under Mono with nunit-console.
using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Runtime.CompilerServices;
using Newtonsoft.Json.Linq;
using NUnit.Framework;
using Presence;

[TestFixture]
public class PresenceEngineTests
{
    private const long Start = 1546867062375; // 2019-01-07T13:17:42.375Z
    private static readonly DateTime StartTime = new DateTime(2019, 1, 7, 13, 17, 42, 375, DateTimeKind.Utc);

    private static void Check(bool condition, string what = "")
    {
        Assert.IsTrue(condition, what);
    }

    private static void Throws(PresenceResult expected, TestDelegate action)
    {
        var e = Assert.Throws<PresenceException>(action);
        Assert.AreEqual(expected, e.Code, e.Message);
        Assert.IsNotEmpty(e.Message);
    }

    private static string Manual(string extra = null, long start = Start)
    {
        return "{\"clock\":\"manual\",\"start_time_ms\":" + start + (extra != null ? "," + extra : "") + "}";
    }

    /// <summary>Runs <paramref name="body"/> with the path of a file in a fresh temporary
    /// folder, removed afterwards.</summary>
    private static void WithTempFile(Action<string> body)
    {
        string dir = Path.Combine(Path.GetTempPath(), "presence_cs_" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(dir);
        try
        {
            body(Path.Combine(dir, "state.json"));
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    private static Dictionary<string, object> Fields(params object[] kv)
    {
        var d = new Dictionary<string, object>();
        for (int i = 0; i < kv.Length; i += 2) d[(string)kv[i]] = kv[i + 1];
        return d;
    }

    // ---------------------------------------------------------------------

    [Test]
    public void VersionAndJson()
    {
        Check(!string.IsNullOrEmpty(PresenceEngine.Version), "Version");
        Check(PresenceEngine.AbiVersion >= 1, "AbiVersion");
        Check(PresenceEngine.ResultName(PresenceResult.NotFound) == "PRESENCE_ERR_NOT_FOUND", "ResultName");
        Check(PresenceEngine.ResultName(PresenceResult.Ok) == "PRESENCE_OK", "ResultName ok");

        // Timestamps stay the strings the engine wrote (Newtonsoft would turn them into DateTime).
        JObject parsed = JsonValue.ParseObject("{\"t\":\"2019-01-07T13:17:42.375Z\",\"a\":[1,2.5]}");
        Check(JsonValue.String(parsed, "t") == "2019-01-07T13:17:42.375Z", "timestamp kept as text");
        Check(JsonValue.Time(parsed, "t") == StartTime, "timestamp parsed");
        Check(JsonValue.Compact(parsed) == "{\"t\":\"2019-01-07T13:17:42.375Z\",\"a\":[1,2.5]}", "round trip");
        Assert.Throws<Newtonsoft.Json.JsonReaderException>(() => JsonValue.ParseObject("{\"a\":}"));
        Assert.Throws<Newtonsoft.Json.JsonReaderException>(() => JsonValue.ParseObject("{} {}"));
        Assert.Throws<Newtonsoft.Json.JsonReaderException>(() => JsonValue.ParseObject("[1]"));

        // A library older than the binding is refused with a message naming both versions.
        var old = Assert.Throws<PresenceException>(() => NativeMethods.CheckAbi(1, 2));
        Check(old.Code == PresenceResult.State, "ABI mismatch code");
        StringAssert.Contains("needs ABI version 2", old.Message);
        StringAssert.Contains("has ABI version 1", old.Message);
        NativeMethods.CheckAbi(2, 2);
        NativeMethods.CheckAbi(3, 2);

        Check(PresenceEngine.WithManualDispatch(null) == "{\"dispatch\":\"manual\"}", "merge null");
        Check(PresenceEngine.WithManualDispatch("{}") == "{\"dispatch\":\"manual\"}", "merge empty");
        Check(PresenceEngine.WithManualDispatch("{\"clock\":\"manual\"}") == "{\"dispatch\":\"manual\",\"clock\":\"manual\"}", "merge");
        Check(PresenceEngine.WithManualDispatch("{\"dispatch\":\"immediate\"}") == "{\"dispatch\":\"immediate\"}", "merge keeps dispatch");
    }

    [Test]
    public void Errors()
    {
        Throws(PresenceResult.Json, () => new PresenceEngine("{not json"));
        try
        {
            new PresenceEngine("{\"clokc\":\"manual\"}");
            Check(false, "unknown config key accepted");
        }
        catch (PresenceException e)
        {
            Check(e.Code == PresenceResult.Json || e.Code == PresenceResult.Invalid, "unknown key code " + e.Code);
            Check(e.Message.Contains("clokc"), "message names the key: " + e.Message);
        }
        using (var engine = new PresenceEngine(Manual()))
        {
            Throws(PresenceResult.NotFound, () => engine.Disconnect(424242));
            Throws(PresenceResult.NotFound, () => engine.Heartbeat(424242));
            Throws(PresenceResult.Json, () => engine.ConnectJson("{\"id\":"));
            Throws(PresenceResult.Invalid, () => engine.Connect("has space"));
            Throws(PresenceResult.Invalid, () => engine.UpsertUser("x", Fields("online", true)));
            Throws(PresenceResult.NotFound, () => engine.GetUser("nobody"));
            Throws(PresenceResult.NotFound, () => engine.WatchChannel(424242, "lobby:x"));
            Throws(PresenceResult.NotFound, () => engine.AddMembers("lobby:none", "a"));
            Throws(PresenceResult.Invalid, () => engine.QueryUsers("{\"filter_conditions\":{\"id\":{\"$bogus\":1}}}"));
            Throws(PresenceResult.NotFound, () => engine.PollEvents(424242));
            Throws(PresenceResult.Invalid, () => engine.SetStatus("a\0b", "x"));
            // A lone surrogate has no UTF-8 form: refused, not turned into U+FFFD (which
            // would make "admin\uD800" and "admin\uDBFF" one user).
            Throws(PresenceResult.Utf8, () => engine.Connect("admin\uD800"));
            Throws(PresenceResult.Utf8, () => engine.Connect("admin", Fields("status", "\uDC00")));
            Throws(PresenceResult.Utf8, () => engine.SetStatus("admin", "x\uDBFF"));
            Check(engine.QueryUsers("{}").Count == 0, "no user made from a lone surrogate");
            Throws(PresenceResult.Limit, () => engine.QueryUsers("{\"limit\":1000}"));
            try
            {
                engine.Disconnect(424242);
            }
            catch (PresenceException e)
            {
                Check(e.Code == PresenceResult.NotFound && e.CodeName == "PRESENCE_ERR_NOT_FOUND", "CodeName");
                Check(e.Message.Contains("424242"), "message: " + e.Message);
            }
        }
    }

    [Test]
    public void Users()
    {
        using (var engine = new PresenceEngine(Manual()))
        {
            PresenceConnection conn = engine.Connect("alice", Fields("status", "ready", "name", "Alice"));
            Check(conn.Id != 0 && conn.UserId == "alice" && conn.IsOpen, "connection");
            Check(conn.Engine == engine, "connection engine");
            User alice = engine.GetUser("alice");
            Check(alice.Id == "alice" && alice.Online && alice.Status == "ready", "alice fields");
            Check(alice.LastActive == StartTime, "last_active " + alice.LastActive);
            Check(alice.LastActive.Value.Kind == DateTimeKind.Utc, "utc");
            Check(!alice.Invisible, "not invisible");
            Check(alice.CreatedAt == StartTime && alice.UpdatedAt.HasValue, "created_at");
            Check((string)alice.Custom["name"] == "Alice", "custom name");
            Check(!alice.Custom.ContainsKey("online") && !alice.Custom.ContainsKey("id"), "custom excludes managed");
            Check(alice.Json.Contains("\"id\":\"alice\""), "Json");
            Check(alice.Engine == engine, "user engine");
            Check(ReferenceEquals(alice, engine.GetUser("alice")), "registry identity");
            Check(ReferenceEquals(alice, conn.User), "conn.User is the registry object");
            User cached;
            Check(engine.TryGetCachedUser("alice", out cached) && ReferenceEquals(cached, alice), "TryGetCachedUser");
            Check(!engine.TryGetCachedUser("nobody", out cached), "TryGetCachedUser miss");
            Check(ReferenceEquals(alice, conn.GetUser("alice")), "conn.GetUser");

            engine.SetStatus("alice", "busy");
            Check(engine.GetUser("alice").Status == "busy", "SetStatus");
            alice.SetStatus(null);
            Check(engine.GetUser("alice").Status == null, "status cleared");
            engine.UpsertUser("{\"id\":\"alice\",\"name\":\"Alice B\"}");
            Check((string)engine.GetUser("alice").Custom["name"] == "Alice B", "UpsertUser json");
            engine.UpsertUser("alice", Fields("level", 3, "name", null));
            engine.GetUser("alice");
            Check((long)alice.Custom["level"] == 3 && !alice.Custom.ContainsKey("name"), "UpsertUser fields");
            engine.UpsertUser("bob", null);
            Check(!engine.GetUser("bob").Online, "bob offline");
            Check(engine.GetUserJson("bob").Contains("\"online\":false"), "GetUserJson");

            engine.SetInvisible("alice", true);
            engine.GetUser("alice");
            Check(alice.Invisible && !alice.Online, "invisible is offline to others");
            alice.MarkVisible();
            engine.GetUser("alice");
            Check(!alice.Invisible && alice.Online, "MarkVisible");
            alice.MarkInvisible();
            Check(conn.User.Invisible, "MarkInvisible");
            alice.MarkVisible();

            conn.Heartbeat();
            engine.Heartbeat(conn.Id);
            PresenceConnection second = engine.ConnectJson("{\"id\":\"alice\"}");
            Check(second.Id != conn.Id, "second connection");
            conn.Disconnect();
            Check(!conn.IsOpen, "IsOpen after Disconnect");
            Check(engine.GetUser("alice").Online, "still online");
            engine.Disconnect(second.Id);
            Check(!engine.GetUser("alice").Online, "offline");
            Throws(PresenceResult.NotFound, () => second.Disconnect());
            Check(conn.ToString().Contains("closed"), "ToString");
        }
    }

    [Test]
    public void ChannelsAndQueries()
    {
        using (var engine = new PresenceEngine(Manual()))
        {
            engine.UpsertChannel("{\"type\":\"lobby\",\"id\":\"main\",\"members\":[\"alice\"],\"topic\":\"fun\"}");
            engine.UpsertChannel("room", "r1", new[] { "alice", "bob" }, Fields("map", "dust"));
            engine.AddMembers("lobby:main", "bob", "carol");
            engine.AddMembers("lobby:main", new List<string> { "dave" });
            engine.AddMembersJson("lobby:main", "[\"erin\"]");
            PresenceConnection alice = engine.Connect("alice");

            ChannelState state = alice.WatchChannel("lobby:main");
            Check(state.Channel.Cid == "lobby:main" && state.Channel.Type == "lobby" && state.Channel.Id == "main", "channel ids");
            Check(state.Channel.MemberCount == 5 && state.Members.Count == 5, "members " + state.Members.Count);
            Check((string)state.Channel.Custom["topic"] == "fun", "channel custom");
            Check(state.Channel.CreatedAt == StartTime, "channel created_at");
            Check(state.WatcherCount == 1 && state.Watchers.Count == 1 && state.Watchers[0].Id == "alice", "watchers");
            Member bob = state.Members.FirstOrDefault(m => m.UserId == "bob");
            Check(bob != null && bob.User != null && bob.User.Id == "bob" && !bob.User.Online, "member user");
            Check(ReferenceEquals(bob.User, engine.GetUser("bob")), "member user is the registry object");
            Check(engine.WatchChannelJson(alice.Id, "lobby:main").Contains("\"watcher_count\":1"), "WatchChannelJson idempotent");

            engine.RemoveMembers("lobby:main", "erin");
            engine.RemoveMembers("lobby:main", new List<string> { "dave" });
            engine.RemoveMembersJson("lobby:main", "[\"carol\"]");
            List<ChannelState> lobbies = engine.QueryChannels("{\"filter_conditions\":{\"type\":\"lobby\"}}");
            Check(lobbies.Count == 1 && lobbies[0].Channel.MemberCount == 2, "QueryChannels");
            Check(lobbies[0].WatcherCount == 1, "QueryChannels watchers");
            Check(engine.QueryChannelsJson("{\"filter_conditions\":{\"cid\":\"room:r1\"}}").Contains("\"map\":\"dust\""), "QueryChannelsJson");

            alice.StopWatching("lobby:main");
            engine.WatchChannel(alice.Id, "room:r1", false);
            engine.StopWatching(alice.Id, "room:r1");
            Check(alice.QueryChannels("{\"filter_conditions\":{\"cid\":\"lobby:main\"}}")[0].WatcherCount == 0, "StopWatching");

            List<User> online = engine.QueryUsers("{\"filter_conditions\":{\"online\":true}}");
            Check(online.Count == 1 && online[0].Id == "alice", "QueryUsers online");
            List<User> sorted = alice.QueryUsers("{\"filter_conditions\":{\"id\":{\"$in\":[\"bob\",\"alice\"]}},\"sort\":[{\"field\":\"id\",\"direction\":1}]}");
            Check(sorted.Count == 2 && sorted[0].Id == "alice" && sorted[1].Id == "bob", "QueryUsers sort");
            Check(ReferenceEquals(sorted[1], bob.User), "query answers registry objects");
            Check(engine.QueryUsersJson("{}").StartsWith("{\"users\":["), "QueryUsersJson");
            Check(engine.QueryUsers(null).Count >= 2, "QueryUsers(null) = {}");

            // QueryUsers with presence subscribes; UnsubscribeUser ends it.
            PresenceConnection watcher = engine.Connect("watcher");
            engine.UpsertUser("zoe", null);
            watcher.QueryUsers("{\"filter_conditions\":{\"id\":\"zoe\"},\"presence\":true}");
            PresenceConnection zoe = engine.Connect("zoe");
            Check(watcher.PollEvents().Count(e => e.UserId == "zoe") == 1, "query subscription");
            watcher.UnsubscribeUser("zoe");
            engine.SetStatus("zoe", "unseen");
            Check(watcher.PollEvents().Count == 0, "UnsubscribeUser");
            engine.UnsubscribeUser(watcher.Id, "zoe");
            Throws(PresenceResult.NotFound, () => engine.UnsubscribeUser(424242, "zoe"));
            zoe.Disconnect();

            engine.DeleteChannel("room:r1");
            Check(engine.QueryChannels("{\"filter_conditions\":{\"cid\":\"room:r1\"}}").Count == 0, "DeleteChannel");
            Throws(PresenceResult.NotFound, () => engine.DeleteChannel("room:r1"));
        }
    }

    [Test]
    public void Events()
    {
        using (var engine = new PresenceEngine(Manual("\"connection_timeout_ms\":30000")))
        {
            var seen = new List<PresenceEvent>();
            var types = new List<string>();
            engine.UserPresenceChanged += e => types.Add("presence:" + e.UserId + ":" + e.Online);
            engine.UserUpdated += e => types.Add("updated:" + e.UserId);
            engine.UserWatchingStart += e => types.Add("start:" + e.UserId + ":" + e.Cid + ":" + e.WatcherCount);
            engine.UserWatchingStop += e => types.Add("stop:" + e.UserId + ":" + e.Cid + ":" + e.WatcherCount);
            engine.MemberAdded += e => types.Add("added:" + e.Member.UserId + ":" + e.Cid);
            engine.MemberRemoved += e => types.Add("removed:" + e.Member.UserId + ":" + e.Cid);
            engine.ConnectionClosed += e => types.Add("closed:" + e.ClosedConnectionId + ":" + e.Reason);
            engine.EventReceived += e => seen.Add(e.Clone());

            engine.UpsertChannel("lobby", "main", new[] { "alice" });
            PresenceConnection bob = engine.Connect("bob");
            Check(types.Count == 0 && seen.Count == 0, "manual dispatch: nothing before Pump");
            int pumped = engine.Pump();
            Check(pumped >= 1, "Pump delivered " + pumped);
            Check(types.Contains("presence:bob:True"), "bob online event");

            User alice = engine.GetUser("alice");
            var aliceChanges = new List<string>();
            alice.PresenceChanged += (user, isOnline, lastActive) =>
                aliceChanges.Add(user.Id + ":" + isOnline + ":" + (lastActive.HasValue ? lastActive.Value.ToString("HH:mm:ss.fff", System.Globalization.CultureInfo.InvariantCulture) : "-"));
            int aliceUpdated = 0;
            alice.Updated += u => aliceUpdated++;

            Check(bob.WatchChannel("lobby:main").WatcherCount == 1, "bob watches");
            engine.AddMembers("lobby:main", "bob");
            types.Clear();
            engine.Pump();
            Check(types.Contains("start:bob:lobby:main:1"), "watching start: " + string.Join(",", types.ToArray()));
            Check(types.Contains("added:bob:lobby:main"), "member added");

            PresenceConnection aliceConn = engine.Connect("alice", Fields("status", "hi"));
            engine.UpsertUser("alice", Fields("name", "Alice"));
            engine.Pump();
            Check(aliceChanges.Count == 1 && aliceChanges[0] == "alice:True:13:17:42.375", "User.PresenceChanged " + string.Join(",", aliceChanges.ToArray()));
            Check(aliceUpdated == 1, "User.Updated");
            Check(types.Contains("updated:alice"), "UserUpdated");
            Check(alice.Online && alice.Status == "hi" && (string)alice.Custom["name"] == "Alice", "registry updated by events");

            // PollEvents: typed, in seq order, same registry objects.
            IList<PresenceEvent> polled = bob.PollEvents();
            Check(polled.Count >= 2, "polled " + polled.Count);
            for (int i = 1; i < polled.Count; i++) Check(polled[i].Seq > polled[i - 1].Seq, "seq order");
            PresenceEvent p = polled.FirstOrDefault(e => e.Type == EventTypes.UserPresenceChanged && e.UserId == "alice");
            Check(p != null && p.ConnectionId == bob.Id && p.Online && ReferenceEquals(p.User, alice), "polled presence");
            Check(p != null && p.CreatedAt == StartTime && p.LastActive == StartTime && p.GetJson().Contains("\"connection_id\":" + bob.Id), "polled fields");
            Check(p != null && p.GetJson().Contains("\"user\":{\"id\":\"alice\""), "JSON on request");
            Check(bob.PollEventsJson() == "[]", "queue drained");
            Check(bob.PollEvents().Count == 0, "nothing more");
            Assert.Throws<InvalidOperationException>(() => p.GetJson(), "JSON of a polled event after the next poll");

            // Delivery: engine.EventDelivered and connection.EventReceived.
            var delivered = new List<PresenceEvent>();
            var bobReceived = new List<PresenceEvent>();
            engine.EventDelivered += delivered.Add;
            bob.EventReceived += bobReceived.Add;
            engine.SetStatus("alice", "away");
            engine.Pump();
            Check(delivered.Count == 1 && delivered[0].ConnectionId == bob.Id && delivered[0].UserId == "alice", "EventDelivered");
            Check(bobReceived.Count == 1 && bobReceived[0].Type == EventTypes.UserPresenceChanged, "connection.EventReceived");
            Check(aliceChanges.Count == 2 && alice.Status == "away", "status change is presence");
            bob.PollEvents();

            // Filtered listeners and their removal.
            var onlyBob = new List<PresenceEvent>();
            var onlyUpdates = new List<PresenceEvent>();
            var allDeliveries = new List<PresenceEvent>();
            PresenceListener l1 = engine.AddListener(null, "bob", onlyBob.Add);
            PresenceListener l2 = engine.AddListener(EventTypes.UserUpdated, null, onlyUpdates.Add);
            PresenceListener l3 = engine.AddDeliveryListener(allDeliveries.Add);
            Check(l1.Id != 0 && l2.Id != l1.Id && l3.IsDelivery && !l1.IsDelivery, "listener ids");
            engine.SetStatus("bob", "b1");
            engine.UpsertUser("alice", Fields("name", "A2"));
            engine.Pump();
            Check(onlyBob.Count == 1 && onlyBob[0].UserId == "bob", "user filter");
            Check(onlyUpdates.Count == 1 && onlyUpdates[0].UserId == "alice", "type filter");
            Check(allDeliveries.Count >= 1 && allDeliveries.All(e => e.ConnectionId != 0), "delivery listener");
            l1.Dispose();
            l2.Dispose();
            l3.Dispose();
            l1.Dispose(); // idempotent
            Check(l1.Removed && l2.Removed && l3.Removed, "Removed");
            engine.SetStatus("bob", "b2");
            engine.UpsertUser("alice", Fields("name", "A3"));
            engine.Pump();
            Check(onlyBob.Count == 1 && onlyUpdates.Count == 1, "no callback after listener Dispose");
            bob.PollEvents();

            // Watching stop, member removed, connection closed (disconnect, timeout).
            types.Clear();
            bob.StopWatching("lobby:main");
            engine.RemoveMembers("lobby:main", "bob");
            engine.Pump();
            Check(types.Contains("stop:bob:lobby:main:0"), "watching stop: " + string.Join(",", types.ToArray()));
            Check(types.Contains("removed:bob:lobby:main"), "member removed");

            types.Clear();
            string closedReason = null;
            aliceConn.Closed += (c, reason) => closedReason = reason;
            aliceConn.Disconnect();
            engine.Pump();
            Check(types.Contains("closed:" + aliceConn.Id + ":disconnect"), "closed by disconnect: " + string.Join(",", types.ToArray()));
            Check(closedReason == "disconnect" && aliceConn.CloseReason == "disconnect" && !aliceConn.IsOpen, "Closed event");
            Check(aliceChanges.Count == 3 && aliceChanges[2].StartsWith("alice:False:"), "offline change");
            Check(!alice.Online, "registry offline");

            types.Clear();
            string bobClosed = null;
            bob.Closed += (c, reason) => bobClosed = reason;
            engine.SetTime(Start + 31000);
            engine.Tick();
            engine.Pump();
            Check(types.Contains("closed:" + bob.Id + ":timeout"), "closed by timeout: " + string.Join(",", types.ToArray()));
            Check(bobClosed == "timeout" && !bob.IsOpen, "timeout reason");
            Check(seen.Count > 10, "EventReceived saw everything");
            for (int i = 1; i < seen.Count; i++) Check(seen[i].Seq > seen[i - 1].Seq, "host seq order");
        }

        // A queue that overflows closes its connection: reason slow_consumer.
        using (var engine = new PresenceEngine(Manual("\"connection_queue_capacity\":1")))
        {
            engine.UpsertChannel("lobby", "q", new[] { "slow", "chatty" });
            PresenceConnection slow = engine.Connect("slow");
            slow.WatchChannel("lobby:q");
            slow.PollEvents();
            string reason = null;
            slow.Closed += (c, r) => reason = r;
            engine.Connect("chatty");
            engine.SetStatus("chatty", "1");
            engine.Pump();
            Check(reason == "slow_consumer" && !slow.IsOpen, "slow_consumer: " + reason);
            Throws(PresenceResult.NotFound, () => slow.PollEvents());
        }

        // Several connections drained in one call: the array's order, each one's oldest
        // first; an unknown one anywhere drains nothing.
        using (var engine = new PresenceEngine(Manual()))
        {
            engine.UpsertChannel("lobby", "main", new[] { "star" });
            PresenceConnection first = engine.Connect("first"), second = engine.Connect("second");
            first.WatchChannel("lobby:main");
            second.WatchChannel("lobby:main");
            engine.Pump();
            engine.PollEvents(new[] { first.Id, second.Id });
            engine.Connect("star");
            engine.SetStatus("star", "ready");
            engine.Pump();
            Throws(PresenceResult.NotFound, () => engine.PollEvents(new[] { first.Id, 424242UL }));
            IList<PresenceEvent> both = engine.PollEvents(new[] { second.Id, first.Id }, 1);
            Check(both.Count == 2 && both[0].ConnectionId == second.Id && both[1].ConnectionId == first.Id, "the array's order");
            Check(both.All(e => e.Type == EventTypes.UserPresenceChanged && e.UserId == "star" && e.Online), "star online, first");
            both = engine.PollEvents(new[] { first.Id, second.Id });
            Check(both.Count == 2 && both[0].ConnectionId == first.Id && both[1].ConnectionId == second.Id, "then the status change");
            Check(both.All(e => e.UserId == "star" && e.User.Status == "ready"), "status ready");
            Check(engine.PollEvents(new ulong[0]).Count == 0 && engine.PollEvents(new[] { first.Id, second.Id }).Count == 0, "nothing left");
            Assert.Throws<ArgumentNullException>(() => engine.PollEvents((ulong[])null));
        }
    }

    [Test]
    public void InvisibleAndClock()
    {
        using (var engine = new PresenceEngine(Manual()))
        {
            engine.UpsertChannel("lobby", "main", new[] { "alice", "bob", "carol" });
            PresenceConnection bob = engine.Connect("bob");
            bob.WatchChannel("lobby:main");
            IList<PresenceEvent> own = bob.PollEvents();
            Check(own.Count == 1 && own[0].Type == EventTypes.UserWatchingStart && own[0].UserId == "bob", "bob's own watching start");
            PresenceConnection alice = engine.Connect("alice", Fields("status", "Looking for group"));
            IList<PresenceEvent> events = bob.PollEvents();
            Check(events.Count == 1 && events[0].Type == EventTypes.UserPresenceChanged && events[0].UserId == "alice" && events[0].Online, "bob sees alice");
            Check(events.Count == 1 && events[0].User.Status == "Looking for group", "status in event");

            var changes = new List<bool>();
            PresenceConnection carol = engine.Connect("carol", Fields("invisible", true));
            User carolUser = engine.GetUser("carol", bob.Id);
            carolUser.PresenceChanged += (u, online, last) => changes.Add(online);
            Check(bob.PollEvents().Count == 0, "invisible connect emits nothing to bob");
            Check(!carolUser.Online, "invisible is offline to bob");
            Check(!engine.GetUserJson("carol", bob.Id).Contains("invisible"), "public view has no invisible");
            Check(carol.User.Invisible && !carol.User.Online, "own view: invisible");
            Check(bob.QueryUsers("{\"filter_conditions\":{\"online\":true}}").All(u => u.Id != "carol"), "not in online query");
            Check(carol.WatchChannel("lobby:main").WatcherCount == 1, "invisible watcher not counted");
            engine.Pump();
            // Host listeners see own views, where the invisible connect was a change too (online
            // to others stayed false); each visibility flip is one more.
            int seen = changes.Count;
            Check(changes.All(online => !online), "nothing shows carol online while invisible");
            carolUser.MarkVisible();
            engine.Pump();
            Check(changes.Count == seen + 1 && changes[seen], "visible: online change");
            Check(bob.PollEvents().Any(e => e.UserId == "carol" && e.Online), "bob sees carol online");
            carolUser.MarkInvisible();
            engine.Pump();
            Check(changes.Count == seen + 2 && !changes[seen + 1] && !carolUser.Online && carolUser.Invisible, "invisible: offline change");
            Check(bob.PollEvents().Any(e => e.UserId == "carol" && !e.Online), "bob sees carol offline");

            // Manual clock: last_active refreshes after 15 minutes, without events.
            engine.SetTime(Start + 14 * 60000);
            engine.Tick();
            Check(engine.GetUser("alice").LastActive == StartTime, "no refresh yet");
            engine.SetTime(StartTime.AddMinutes(15));
            engine.Tick();
            Check(engine.GetUser("alice").LastActive == StartTime.AddMinutes(15), "refreshed " + engine.GetUser("alice").LastActive);
            Check(engine.GetUser("carol").LastActive == StartTime, "invisible not refreshed");
            Check(engine.Pump() == 0 && bob.PollEvents().Count == 0, "refresh emits nothing");
            Throws(PresenceResult.State, () => engine.SetTime(Start));
            alice.Disconnect();
            carol.Disconnect();
            bob.Disconnect();
        }
        using (var system = new PresenceEngine())
        {
            Throws(PresenceResult.State, () => system.SetTime(Start)); // system clock
        }
    }

    [Test]
    public void SaveLoad()
    {
        WithTempFile(path =>
        {
            string dir = Path.GetDirectoryName(path);
            using (var engine = new PresenceEngine(Manual()))
            {
                PresenceConnection c = engine.Connect("alice", Fields("status", "saved", "level", 7));
                engine.SetInvisible("alice", true);
                engine.UpsertChannel("lobby", "keep", new[] { "alice", "bob" });
                engine.Save(path);
                Check(File.Exists(path), "saved");
                Throws(PresenceResult.State, () => engine.Load(path));
                Check(engine.ClusterStatusJson() == "{\"mode\":\"single\"}", "single mode");
                c.Disconnect();
            }
            using (PresenceEngine engine = PresenceEngine.Create(Manual()))
            {
                engine.Load(path);
                User alice = engine.GetUser("alice");
                Check(alice.Status == "saved" && (long)alice.Custom["level"] == 7 && alice.Invisible && !alice.Online, "loaded user");
                Check(engine.QueryChannels("{\"filter_conditions\":{\"cid\":\"lobby:keep\"}}")[0].Channel.MemberCount == 2, "loaded channel");
                Throws(PresenceResult.Io, () => engine.Load(Path.Combine(dir, "missing.json")));
                Throws(PresenceResult.Io, () => engine.Save(Path.Combine(dir, "no/such/dir/x.json")));
            }
        });
    }

    // Events find their User by the engine's user key: a load gives the loaded users new
    // keys, so no user inherits the object of one known before it (here the file lists the
    // users in the other order, so reused keys would swap them).
    [Test]
    public void EventsAfterLoadNameTheirUsers()
    {
        WithTempFile(path =>
        {
            using (var other = new PresenceEngine(Manual()))
            {
                other.UpsertUser("bob", Fields("status", "b2"));
                other.UpsertUser("alice", Fields("status", "a2"));
                other.Save(path);
            }
            using (var engine = new PresenceEngine(Manual()))
            {
                var seen = new List<string>();
                engine.UserPresenceChanged += e => seen.Add(e.UserId + "=" + e.User.Id + ":" + e.Online + ":" + e.User.Status);
                PresenceConnection alice = engine.Connect("alice", Fields("status", "a1"));
                PresenceConnection bob = engine.Connect("bob", Fields("status", "b1"));
                engine.Pump();
                User aliceUser = engine.GetUser("alice");
                alice.Disconnect();
                bob.Disconnect();
                engine.Pump();
                engine.Load(path);
                engine.Connect("bob");
                engine.Connect("carol", Fields("status", "c1"));
                engine.Connect("alice");
                seen.Clear();
                engine.Pump();
                Check(string.Join(",", seen.ToArray()) == "bob=bob:True:b2,carol=carol:True:c1,alice=alice:True:a2",
                      "events after the load: " + string.Join(",", seen.ToArray()));
                Check(ReferenceEquals(engine.GetUser("alice"), aliceUser) && aliceUser.Online, "one User per id across the load");
            }
        });
    }

    [Test]
    public void HandlerExceptions()
    {
        using (var engine = new PresenceEngine(Manual()))
        {
            int calls = 0;
            engine.UserPresenceChanged += e => { calls++; throw new InvalidOperationException("boom " + calls); };
            engine.Connect("a");
            engine.Connect("b");
            try
            {
                engine.Pump();
                Check(false, "Pump should rethrow");
            }
            catch (InvalidOperationException e)
            {
                Check(e.Message == "boom 1", "first exception kept: " + e.Message);
                Check(e.StackTrace != null && e.StackTrace.Contains("Tests"), "stack preserved");
            }
            Check(calls == 2, "both events delivered");
            Check(engine.Pump() == 0, "nothing pending after rethrow");
        }
        // A later handler's own calls, and the user.updated refresh, never get an earlier
        // handler's exception: every event of the drain is still raised.
        using (var engine = new PresenceEngine(Manual()))
        {
            var log = new List<string>();
            engine.UserPresenceChanged += e =>
            {
                if (e.UserId == "a") throw new InvalidOperationException("boom a");
                log.Add("presence " + engine.GetUser(e.UserId).Id);
            };
            engine.UserUpdated += e => log.Add("updated " + e.UserId);
            engine.UpsertUser("c", Fields("x", 1));
            engine.Pump();
            log.Clear();
            engine.Connect("a");
            engine.Connect("b");
            engine.UpsertUser("c", Fields("x", 2));
            var ex = Assert.Throws<InvalidOperationException>(() => engine.Pump());
            Check(ex.Message == "boom a", "the first exception: " + ex.Message);
            Check(string.Join(",", log.ToArray()) == "presence b,updated c",
                  "later handlers ran undisturbed: " + string.Join(",", log.ToArray()));
        }
        // Immediate dispatch (explicit): handlers run inside the causing call.
        using (var engine = new PresenceEngine(Manual("\"dispatch\":\"immediate\"")))
        {
            int calls = 0;
            engine.UserPresenceChanged += e => calls++;
            engine.Connect("a");
            Check(calls == 1, "immediate dispatch");
            engine.UserUpdated += e => { throw new ArgumentException("from handler"); };
            bool caught = false;
            try { engine.UpsertUser("a", Fields("x", 1)); }
            catch (ArgumentException) { caught = true; }
            Check(caught, "immediate: rethrown from the causing call");
        }
    }

    [Test]
    public void Disposal()
    {
        int baseline = PresenceEngine.LiveGCHandleCount;
        var engine = new PresenceEngine(Manual());
        Check(PresenceEngine.LiveGCHandleCount == baseline, "host events come from a queue, without a GCHandle");
        int calls = 0;
        engine.EventReceived += e => calls++;
        PresenceListener extra = engine.AddListener(null, null, e => calls++);
        engine.EventDelivered += e => calls++;
        Check(PresenceEngine.LiveGCHandleCount == baseline + 2, "2 GCHandles: " + (PresenceEngine.LiveGCHandleCount - baseline));
        extra.Dispose();
        Check(PresenceEngine.LiveGCHandleCount == baseline + 1, "listener Dispose frees its GCHandle");
        PresenceConnection c = engine.Connect("alice");
        engine.Pump();
        Check(calls == 1, "one host event");
        engine.SetStatus("alice", "queued"); // queued, never delivered
        engine.Dispose();
        Check(engine.IsDisposed, "IsDisposed");
        Check(PresenceEngine.LiveGCHandleCount == baseline, "GCHandles freed by Dispose");
        Check(calls == 1, "no callback after Dispose");
        Check(!c.IsOpen, "connections closed by Dispose");
        bool disposedThrown = false;
        try { engine.Pump(); } catch (ObjectDisposedException) { disposedThrown = true; }
        Check(disposedThrown, "calls after Dispose throw ObjectDisposedException");
        engine.Dispose(); // idempotent

        // Dispose from inside a handler: the rest of the pump delivers nothing.
        var inner = new PresenceEngine(Manual());
        int innerCalls = 0;
        inner.UserPresenceChanged += e => { innerCalls++; inner.Dispose(); };
        inner.EventReceived += e => innerCalls++; // the same event's next handler
        inner.Connect("a");
        inner.Connect("b");
        inner.Pump();
        Check(innerCalls == 1, "no callback after Dispose inside a handler: " + innerCalls);
        Check(PresenceEngine.LiveGCHandleCount == baseline, "deferred GCHandle free");

        // Dispose from inside a native listener (it runs inside presence_pump, before the
        // host queue is drained): Pump returns normally.
        var listened = new PresenceEngine(Manual());
        int listenedCalls = 0;
        listened.UserPresenceChanged += e => listenedCalls++;
        listened.AddListener(null, null, e => { listenedCalls++; listened.Dispose(); });
        listened.Connect("a");
        listened.Connect("b");
        listened.Pump();
        Check(listenedCalls == 1, "no callback after Dispose inside a listener: " + listenedCalls);
        Check(PresenceEngine.LiveGCHandleCount == baseline, "listener's GCHandle freed after the pump");

        // Forgotten engines are finalized (weak GCHandles do not keep them alive).
        for (int i = 0; i < 3; i++) MakeGarbageEngine();
        for (int i = 0; i < 5 && PresenceEngine.LiveGCHandleCount != baseline; i++)
        {
            GC.Collect();
            GC.WaitForPendingFinalizers();
        }
        Check(PresenceEngine.LiveGCHandleCount == baseline, "finalizer frees GCHandles: " + (PresenceEngine.LiveGCHandleCount - baseline));
    }

    // Manual dispatch: Pump runs the listeners, then raises the engine's own events from a
    // native queue through one reused PresenceEvent; Clone() keeps one.
    [Test]
    public void PumpedEventsReuseOneObject()
    {
        using (var engine = new PresenceEngine(Manual()))
        {
            var kept = new List<PresenceEvent>();
            var order = new List<string>();
            PresenceEvent first = null;
            string json = null;
            engine.UserPresenceChanged += e =>
            {
                if (first == null) { first = e; json = e.GetJson(); }
                kept.Add(e.Clone());
                order.Add("event:" + e.UserId);
            };
            engine.AddListener(null, null, e => order.Add("listener:" + e.UserId));
            engine.Connect("a");
            engine.Connect("b");
            Check(engine.Pump() == 4, "2 listener calls and 2 events");
            Check(string.Join(",", order.ToArray()) == "listener:a,listener:b,event:a,event:b", "listeners first: " + string.Join(",", order.ToArray()));
            Check(kept.Count == 2 && kept[0].UserId == "a" && kept[1].UserId == "b" && kept[0].Seq < kept[1].Seq, "clones keep their values");
            Check(ReferenceEquals(first.UserId, "b") || first.UserId == "b", "the handed-out object was reused for the next event");
            Check(json != null && json.Contains("\"type\":\"user.presence.changed\"") && !json.Contains("connection_id"), "host JSON inside the handler: " + json);
            Assert.Throws<InvalidOperationException>(() => kept[0].GetJson(), "JSON after the handler returned");

            // A handler that pumps: the inner Pump runs the listeners, the outer one drains.
            int nested = 0;
            engine.UserUpdated += e => { nested++; engine.SetStatus("a", "from handler"); engine.Pump(); };
            engine.UpsertUser("a", Fields("x", 1));
            order.Clear();
            engine.Pump();
            Check(nested == 1, "user.updated once");
            Check(order.Contains("event:a"), "the inner Pump's event raised by the outer drain: " + string.Join(",", order.ToArray()));
        }
    }

    // A queue that falls pending_dispatch_capacity events behind within one Pump is cut off:
    // Pump raises what it got, throws, and the next frame works again.
    [Test]
    public void HostQueueCutOff()
    {
        using (var engine = new PresenceEngine(Manual("\"pending_dispatch_capacity\":4")))
        {
            int raised = 0;
            engine.UserPresenceChanged += e => raised++;
            // A listener that causes an event for every one it sees overfills the queue.
            int flips = 0;
            engine.AddListener(EventTypes.UserPresenceChanged, "a", e => { if (flips++ < 8) engine.SetStatus("a", "s" + flips); });
            engine.Connect("a");
            var ex = Assert.Throws<PresenceException>(() => engine.Pump());
            Check(ex.Code == PresenceResult.State && ex.Message.Contains("cut off"), "cut off: " + ex.Message);
            Check(raised == 4, "the events the queue got were raised: " + raised);
            raised = 0;
            engine.Connect("b");
            engine.Pump();
            Check(raised >= 1, "a new queue after the cut-off");
        }
    }

    // Unity developers count garbage per frame: an idle frame (nothing due, nothing queued)
    // allocates no managed memory at all, with handlers attached and connections open.
    [Test]
    public void IdleFramesAllocateNothing()
    {
        using (var engine = new PresenceEngine(Manual()))
        {
            int calls = 0;
            engine.UserPresenceChanged += e => calls++;
            engine.EventDelivered += e => calls++;
            engine.UpsertChannel("lobby", "main", new[] { "me", "friend" });
            PresenceConnection me = engine.Connect("me");
            me.WatchChannel("lobby:main");
            engine.Connect("friend");
            engine.Update(); // deliver what the setup caused, warm every path up
            engine.Update();
            int before = calls;
            long start = GC.GetAllocatedBytesForCurrentThread();
            for (int frame = 0; frame < 10000; frame++) engine.Update();
            long allocated = GC.GetAllocatedBytesForCurrentThread() - start;
            Assert.AreEqual(0, allocated, "bytes allocated over 10,000 idle frames");
            Assert.AreEqual(before, calls, "idle frames raise no events");
        }
    }

    // With events, Pump allocates nothing (one reused event, strings and users from the
    // cache, no JSON); PollEvents allocates the polled events' own objects and nothing
    // per event beyond them.
    [Test]
    public void EventsAllocateOnlyTheirOwnObjects()
    {
        using (var engine = new PresenceEngine(Manual()))
        {
            const int Users = 500;
            long received = 0, online = 0;
            engine.EventReceived += e => received++;
            engine.UserPresenceChanged += e => { if (e.UserId != null && e.Online) online++; };
            PresenceConnection watcher = engine.Connect("watcher");
            var ids = new string[Users];
            for (int i = 0; i < Users; i++) ids[i] = "user-" + i;
            engine.UpsertChannel("lobby", "all", ids);
            watcher.WatchChannel("lobby:all");
            var conns = new PresenceConnection[Users];
            for (int i = 0; i < Users; i++) conns[i] = engine.Connect(ids[i]);
            engine.Update(); // first sight of every id fills the string cache
            watcher.PollEvents();
            for (int i = 0; i < Users; i++) conns[i].Disconnect();
            for (int i = 0; i < Users; i++) conns[i] = engine.Connect(ids[i]);

            long receivedBefore = received, onlineBefore = online;
            long start = GC.GetAllocatedBytesForCurrentThread();
            engine.Update();
            long pumpBytes = GC.GetAllocatedBytesForCurrentThread() - start;
            long pumped = received - receivedBefore;
            start = GC.GetAllocatedBytesForCurrentThread();
            IList<PresenceEvent> polled = watcher.PollEvents(100000);
            long pollBytes = GC.GetAllocatedBytesForCurrentThread() - start;

            // Per user: offline, connection.closed, online again.
            Assert.AreEqual(3 * Users, pumped, "host events pumped");
            Assert.AreEqual(Users, online - onlineBefore, "online events handled");
            Assert.AreEqual(2 * Users, polled.Count, "offline+online deliveries polled");
            Assert.AreEqual(0, pumpBytes, "bytes allocated pumping " + pumped + " events");
            // A PresenceEvent is one object of 160 bytes on 64-bit Mono: nothing else per
            // polled event (but the array holding the events).
            const long PerEvent = 176;
            Assert.LessOrEqual(pollBytes, (PerEvent + 8) * polled.Count + 64,
                               "bytes per polled event: " + pollBytes / (double)polled.Count);
            Console.WriteLine("managed bytes per event: pumped {0:F1}, polled {1:F1}",
                              pumpBytes / (double)pumped, pollBytes / (double)polled.Count);
            Assert.AreEqual("user-0", polled[0].UserId);
            Assert.AreSame(polled[0].UserId, polled[Users].UserId, "a user id is converted once");
            long idle = GC.GetAllocatedBytesForCurrentThread();
            int left = watcher.PollEvents().Count;
            long emptyPollBytes = GC.GetAllocatedBytesForCurrentThread() - idle;
            Assert.AreEqual(0, left);
            Assert.AreEqual(0, emptyPollBytes, "an empty poll allocates nothing");
        }
    }

    // The string cache (a fixed table, compared by length and bytes) must never answer
    // another string or another user's object: more ids than the table has slots, of every
    // length from 1 to 40 bytes, multi-byte UTF-8, ids that differ only past byte 16, and
    // statuses that equal other users' ids.
    [Test]
    public void EventsNameTheirOwnUsers()
    {
        using (var engine = new PresenceEngine(Manual()))
        {
            const int Users = 6000;
            var ids = new string[Users];
            for (int i = 0; i < Users; i++)
            {
                string n = i.ToString(System.Globalization.CultureInfo.InvariantCulture);
                switch (i % 4)
                {
                    case 0: ids[i] = n; break;
                    case 1: ids[i] = "ü" + n; break;
                    case 2: ids[i] = "player-with-a-long-name-" + n; break;
                    default: ids[i] = new string('x', 1 + i % 40 > n.Length ? 1 + i % 40 - n.Length : 0) + n; break;
                }
            }
            var index = new Dictionary<string, int>();
            for (int i = 0; i < Users; i++)
            {
                index.Add(ids[i], i);
                engine.UpsertUser(ids[i], null);
            }
            engine.Pump();
            var seen = new int[Users];
            string suffix = "";
            string problem = null;
            engine.UserPresenceChanged += e =>
            {
                int i;
                if (e.UserId == null || !index.TryGetValue(e.UserId, out i))
                {
                    problem = problem ?? "an event about unknown user " + e.UserId;
                    return;
                }
                seen[i]++;
                // Each user's status is the next user's id (then with the round's suffix).
                string expected = ids[(i + 1) % Users] + suffix;
                if (e.User == null || e.User.Id != e.UserId)
                    problem = problem ?? "the event about " + e.UserId + " carries user " + (e.User != null ? e.User.Id : "null");
                else if (e.User.Status != expected)
                    problem = problem ?? e.UserId + " has status " + e.User.Status + ", not " + expected;
            };
            foreach (string round in new[] { "", "!" })
            {
                suffix = round;
                for (int i = 0; i < Users; i++) engine.SetStatus(ids[i], ids[(i + 1) % Users] + suffix);
                engine.Pump();
                Check(problem == null, problem);
            }
            Check(seen.All(c => c == 2), "every user's two events, once each");
            User last;
            Check(engine.TryGetCachedUser(ids[Users - 1], out last) && last.Status == ids[0] + "!", "the last status applied");
            Check(ReferenceEquals(engine.GetUser(ids[7]), engine.GetUser(ids[7])), "one User per id");
        }
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void MakeGarbageEngine()
    {
        var e = new PresenceEngine();
        e.AddListener(null, null, ev => { });
        e.Connect("ghost");
    }
}
