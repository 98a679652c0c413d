// One live client session of a user, as returned by PresenceEngine.Connect.
using System;
using System.Collections.Generic;

namespace Presence
{
    /// <summary>
    /// A connection: one live session of a user (a device, a game client).
    /// Calls go through its <see cref="Engine"/> with this connection's id (as the
    /// viewer for queries, so answers are in this user's view).
    /// </summary>
    public sealed class PresenceConnection
    {
        private Action<PresenceEvent> _eventReceived;

        internal PresenceConnection(PresenceEngine engine, ulong id, string userId)
        {
            Engine = engine;
            Id = id;
            UserId = userId;
            IsOpen = true;
        }

        /// <summary>The engine-assigned connection id (never 0).</summary>
        public ulong Id { get; private set; }

        /// <summary>The id of the connected user.</summary>
        public string UserId { get; private set; }

        /// <summary>The engine.</summary>
        public PresenceEngine Engine { get; private set; }

        /// <summary>False after Disconnect, Dispose, or a connection.closed event
        /// about this connection (timeout, slow_consumer) was pumped.</summary>
        public bool IsOpen { get; internal set; }

        /// <summary>Why the connection closed ("disconnect", "timeout", ...), once known.</summary>
        public string CloseReason { get; private set; }

        /// <summary>Raised (inside Pump) when the connection.closed event about this connection arrives.</summary>
        public event Action<PresenceConnection, string> Closed;

        /// <summary>Events delivered to this connection (inside Pump). The first handler
        /// registers the engine's native delivery listener.</summary>
        public event Action<PresenceEvent> EventReceived
        {
            add { Engine.EnsureDeliveryListener(); _eventReceived += value; }
            remove { _eventReceived -= value; }
        }

        /// <summary>This connection's user in its own view (refreshed from the engine):
        /// the registry object, so MarkInvisible()/MarkVisible() work on it.</summary>
        public User User { get { return Engine.GetUser(UserId, Id); } }

        /// <summary>Close the connection.</summary>
        public void Disconnect() { Engine.Disconnect(Id); }

        /// <summary>Keep the connection alive (with connection_timeout_ms).</summary>
        public void Heartbeat() { Engine.Heartbeat(Id); }

        /// <summary>Watch a channel (with presence: subscribe to its members).</summary>
        public ChannelState WatchChannel(string cid, bool presence = true)
        {
            return Engine.WatchChannel(Id, cid, presence);
        }

        /// <summary>Stop watching a channel.</summary>
        public void StopWatching(string cid) { Engine.StopWatching(Id, cid); }

        /// <summary>End this connection's query subscription to one user.</summary>
        public void UnsubscribeUser(string userId) { Engine.UnsubscribeUser(Id, userId); }

        /// <summary>Drain up to <paramref name="max"/> events queued for this connection.</summary>
        public IList<PresenceEvent> PollEvents(uint max = 1024) { return Engine.PollEvents(Id, max); }

        /// <summary>Same as PollEvents, as the raw JSON array.</summary>
        public string PollEventsJson(uint max = 1024) { return Engine.PollEventsJson(Id, max); }

        /// <summary>Query users as this connection sees them ("presence":true subscribes).</summary>
        public List<User> QueryUsers(string queryJson) { return Engine.QueryUsers(queryJson, Id); }

        /// <summary>Query channels as this connection sees them.</summary>
        public List<ChannelState> QueryChannels(string queryJson) { return Engine.QueryChannels(queryJson, Id); }

        /// <summary>A user as this connection sees it.</summary>
        public User GetUser(string userId) { return Engine.GetUser(userId, Id); }

        public override string ToString()
        {
            return "connection " + Id + " (" + UserId + (IsOpen ? ")" : ", closed)");
        }

        internal void OnClosed(string reason)
        {
            IsOpen = false;
            if (CloseReason != null) return;
            CloseReason = reason ?? "disconnect";
            var handler = Closed;
            if (handler != null) handler(this, CloseReason);
        }

        internal void RaiseEventReceived(PresenceEvent ev)
        {
            var handler = _eventReceived;
            if (handler != null) handler(ev);
        }
    }
}
