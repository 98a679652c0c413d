// Unity quick start (shown verbatim in bindings/csharp/README.md): attach to a GameObject.
using System.Collections.Generic;
using Presence;
using UnityEngine;

public class PresenceQuickStart : MonoBehaviour
{
    private PresenceEngine _engine;
    private PresenceConnection _local;

    private void Start()
    {
        // "dispatch":"manual" is added to the config: events are raised inside Update().
        _engine = new PresenceEngine();
        _engine.UserPresenceChanged += e => Debug.Log(e.UserId + (e.Online ? " is online" : " is offline"));

        _engine.UpsertChannel("lobby", "main", new[] { "me", "friend" });
        _local = _engine.Connect("me", new Dictionary<string, object> { { "status", "In the lobby" } });
        ChannelState lobby = _local.WatchChannel("lobby:main");
        foreach (Member member in lobby.Members)
        {
            member.User.PresenceChanged += (user, isOnline, lastActive) =>
                Debug.Log(user.Id + " online: " + isOnline + ", last active " + lastActive);
        }

        _engine.Connect("friend"); // another player joins (normally your server does this)
    }

    private void Update()
    {
        // One frame: tick the clock (timeouts, last_active refresh), then raise this
        // frame's events on the main thread. Nothing due, nothing pending: no garbage.
        _engine.Update();
        foreach (PresenceEvent e in _local.PollEvents())
            Debug.Log("my feed: " + e.Type + " " + e.UserId);
    }

    private void OnDestroy()
    {
        _engine.Dispose(); // removes listeners, frees GCHandles, then the native engine
    }
}
