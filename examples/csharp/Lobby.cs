// A lobby host with an Update-like loop: players join a lobby channel, one
// joins invisible, one sets a status, one leaves, one times out. Everything the
// host sees is printed from the typed events, which are raised inside Pump(),
// once per frame, on this thread (as in a Unity MonoBehaviour.Update()).
using System;
using System.Collections.Generic;
using Presence;

public static class Lobby
{
    private const long StartMs = 1546867062375; // 2019-01-07T13:17:42.375Z

    private static int s_frame;

    private static void Log(string text)
    {
        Console.WriteLine("[frame {0}] {1}", s_frame, text);
    }

    public static int Main()
    {
        try
        {
            Run();
            return 0;
        }
        catch (PresenceException e)
        {
            Console.Error.WriteLine("error {0}: {1}", e.CodeName, e.Message);
            return 1;
        }
    }

    private static void Run()
    {
        Console.WriteLine("presence {0} (ABI {1})", PresenceEngine.Version, PresenceEngine.AbiVersion);
        using (var engine = new PresenceEngine(
            "{\"clock\":\"manual\",\"start_time_ms\":" + StartMs + ",\"connection_timeout_ms\":30000}"))
        {
            engine.UserPresenceChanged += e =>
                Log(e.UserId + (e.Online ? " is online" : " is offline") +
                    (e.User != null && e.User.Status != null ? " (" + e.User.Status + ")" : ""));
            engine.UserUpdated += e => Log(e.UserId + " updated their profile");
            engine.UserWatchingStart += e => Log(e.UserId + " opened " + e.Cid + ", " + e.WatcherCount + " watching");
            engine.UserWatchingStop += e => Log(e.UserId + " left " + e.Cid + ", " + e.WatcherCount + " watching");
            engine.MemberAdded += e => Log(e.Member.UserId + " joined " + e.Cid);
            engine.MemberRemoved += e => Log(e.Member.UserId + " was removed from " + e.Cid);
            engine.ConnectionClosed += e => Log("connection " + e.ClosedConnectionId + " of " + e.UserId + " closed: " + e.Reason);

            engine.UpsertChannel("lobby", "main", null, new Dictionary<string, object> { { "name", "Main lobby" } });
            var players = new List<PresenceConnection>();
            string[] names = { "alice", "bob", "carol", "dave" };

            for (s_frame = 1; s_frame <= 8; s_frame++)
            {
                engine.SetTime(StartMs + s_frame * 10000L); // 10 s per frame
                if (s_frame <= names.Length)
                {
                    string name = names[s_frame - 1];
                    var fields = new Dictionary<string, object> { { "status", "in lobby" } };
                    if (name == "carol") fields["invisible"] = true;
                    PresenceConnection conn = engine.Connect(name, fields);
                    engine.AddMembers("lobby:main", name);
                    conn.WatchChannel("lobby:main");
                    players.Add(conn);
                }
                else if (s_frame == 5)
                {
                    engine.UpsertUser("alice", new Dictionary<string, object> { { "avatar", "knight" } });
                    players[0].User.SetStatus("ready");
                }
                else if (s_frame == 6)
                {
                    players[1].Disconnect(); // bob leaves
                }

                // Everyone still here sends a heartbeat, except dave, who times out.
                foreach (PresenceConnection p in players)
                {
                    if (p.IsOpen && p.UserId != "dave") p.Heartbeat();
                }
                engine.Tick();
                Update(engine);
            }

            ChannelState lobby = players[0].WatchChannel("lobby:main");
            Console.WriteLine("{0}: {1} members, {2} watching", lobby.Channel.Custom["name"], lobby.Members.Count, lobby.WatcherCount);
            foreach (Member m in lobby.Members)
                Console.WriteLine("  {0,-6} {1,-8} last active {2:HH:mm:ss}", m.UserId, m.User.Online ? "online" : "offline", m.User.LastActive);
            Console.WriteLine("alice's feed: {0} events", players[0].PollEvents().Count);
        }
    }

    // What a MonoBehaviour.Update() would do.
    private static void Update(PresenceEngine engine)
    {
        engine.Pump();
    }
}
