// The engine: a C# façade over the C ABI for Unity (Mono, IL2CPP) and any .NET host.
using System;
using System.Collections.Generic;
using System.Runtime.CompilerServices;
using System.Runtime.ExceptionServices;
using System.Runtime.InteropServices;
using System.Threading;
using AOT;
using Newtonsoft.Json;
using Newtonsoft.Json.Linq;

namespace Presence
{
    /// <summary>
    /// An in-process presence engine.
    ///
    /// Threading: events are raised on the thread that calls <see cref="Pump"/>
    /// (the engine is created with "dispatch":"manual" unless the config names
    /// another dispatch), so a MonoBehaviour's Update() can drive them. The C#
    /// object itself is not thread-safe: use it from one thread (Unity's main
    /// thread) or lock around it.
    ///
    /// Users: the engine keeps one <see cref="User"/> object per user id, strongly,
    /// until Dispose (the native engine keeps every user for its whole life too, so
    /// this adds no unbounded growth of its own). Every answer and event about a
    /// user updates and returns that same object. Snapshots (GetUser, queries,
    /// WatchChannel) always apply; events apply in seq order (an older event than
    /// the last one applied to a user is ignored).
    ///
    /// Errors: every failing call throws <see cref="PresenceException"/> with the
    /// C code and presence_last_error()'s message. An exception thrown by one of
    /// your event handlers never crosses into native code: the first one is kept
    /// and rethrown (with its stack) by the call that ran the handlers, normally
    /// Pump(), after the native call has returned.
    ///
    /// Dispose removes the native listeners, frees their GCHandles, then frees the
    /// native engine (through a SafeHandle); no handler runs after Dispose. If you
    /// forget Dispose, the finalizer frees the GCHandles and the SafeHandle frees
    /// the engine (the GCHandles are weak, so they do not keep the engine alive).
    /// </summary>
    public sealed class PresenceEngine : IDisposable
    {
        // Kept in a static field so the delegate (and its native thunk) is never collected.
        private static readonly PresenceEventInfoCallback s_callback = OnNativeEvent;
        private static int s_liveGCHandles;

        private readonly PresenceEngineHandle _handle;
        private readonly List<PresenceListener> _listeners = new List<PresenceListener>();
        private readonly List<PresenceListener> _deferredFree = new List<PresenceListener>();
        private readonly Dictionary<string, User> _users = new Dictionary<string, User>();
        private readonly Dictionary<ulong, PresenceConnection> _connections = new Dictionary<ulong, PresenceConnection>();
        // The registry User of each user key the engine handed out (PresenceEventInfo.user_key:
        // one per user for the engine's life, never reused), so an event finds its User with
        // one array read instead of a string lookup. Keys are given in creation order, so the
        // array grows to the highest key seen, up to MaxUserKeys (past it: the string cache
        // and the registry, still without allocating).
        private User[] _usersByKey = new User[0];
        private const ulong MaxUserKeys = 1 << 20;
        // Strings converted once: user ids, and apart from them channels and statuses (a few
        // statuses among thousands of ids would otherwise sit in long probe runs).
        private readonly Utf8Cache _userIds = new Utf8Cache();
        private readonly Utf8Cache _texts = new Utf8Cache();
        private static readonly PresenceEvent[] NoEvents = new PresenceEvent[0];
        private PresenceBatchHandle _batch;
        // Manual dispatch: host events are queued natively during presence_pump and drained
        // per batch after it, into one reused event (no native-to-managed call per event).
        private PresenceHostQueueHandle _hostQueue;
        private PresenceBatchHandle _hostBatch;
        private PresenceEvent _hostEvent;
        private bool _draining;
        /// <summary>The batch index of the host event being raised.</summary>
        private uint _raising;
        // The engine whose call is running on this thread (callbacks run inside calls), and
        // the one that was before this engine's outermost call began.
        [ThreadStatic] private static PresenceEngine t_calling;
        private PresenceEngine _outerEngine;
        // Events hand out native memory only while it lives: it changes when a handler
        // returns and when the batch is refilled (PresenceEvent.GetJson checks it).
        private long _generation;
        private PresenceListener _deliveryListener;
        private Action<PresenceEvent> _eventDelivered;
        private ExceptionDispatchInfo _pending;
        private int _callDepth;
        private bool _disposed;

        /// <summary>Create an engine. <paramref name="configJson"/> is the engine's config
        /// object (null: defaults); "dispatch":"manual" is added unless it names a dispatch.</summary>
        public PresenceEngine(string configJson = null)
        {
            NativeMethods.CheckAbi(NativeMethods.presence_abi_version(), NativeMethods.RequiredAbiVersion);
            string config = WithManualDispatch(configJson);
            IntPtr raw;
            PresenceResult r = NativeMethods.presence_engine_new(NativeMethods.Utf8(config), out raw);
            if (r != PresenceResult.Ok) throw LastError(r);
            _handle = new PresenceEngineHandle(raw);
            try
            {
                if (IsManualDispatch(config)) OpenHostQueue();
                else Register(null, null, false, DispatchHostEvent);
            }
            catch
            {
                _handle.Dispose();
                throw;
            }
        }

        ~PresenceEngine()
        {
            Dispose(false);
        }

        /// <summary>Same as the constructor.</summary>
        public static PresenceEngine Create(string configJson = null)
        {
            return new PresenceEngine(configJson);
        }

        /// <summary>presence_version().</summary>
        public static string Version { get { return NativeMethods.FromUtf8(NativeMethods.presence_version()); } }

        /// <summary>presence_abi_version().</summary>
        public static uint AbiVersion { get { return NativeMethods.presence_abi_version(); } }

        /// <summary>The C name of a result, e.g. "PRESENCE_ERR_JSON".</summary>
        public static string ResultName(PresenceResult r)
        {
            return NativeMethods.FromUtf8(NativeMethods.presence_result_name(r));
        }

        /// <summary>GCHandles currently allocated by all engines (for leak tests).</summary>
        internal static int LiveGCHandleCount { get { return Thread.VolatileRead(ref s_liveGCHandles); } }

        /// <summary>Whether Dispose has run.</summary>
        public bool IsDisposed { get { return _disposed; } }

        // ---- typed events (raised inside Pump) --------------------------------

        /// <summary>user.presence.changed (host view: every user).</summary>
        public event Action<PresenceEvent> UserPresenceChanged;
        /// <summary>user.updated.</summary>
        public event Action<PresenceEvent> UserUpdated;
        /// <summary>user.watching.start.</summary>
        public event Action<PresenceEvent> UserWatchingStart;
        /// <summary>user.watching.stop.</summary>
        public event Action<PresenceEvent> UserWatchingStop;
        /// <summary>member.added.</summary>
        public event Action<PresenceEvent> MemberAdded;
        /// <summary>member.removed.</summary>
        public event Action<PresenceEvent> MemberRemoved;
        /// <summary>connection.closed.</summary>
        public event Action<PresenceEvent> ConnectionClosed;
        /// <summary>Every host event, after the typed event.</summary>
        public event Action<PresenceEvent> EventReceived;

        /// <summary>Every delivery (event, recipient connection): PresenceEvent.ConnectionId
        /// is the recipient. The first handler registers a native delivery listener.</summary>
        public event Action<PresenceEvent> EventDelivered
        {
            add { EnsureDeliveryListener(); _eventDelivered += value; }
            remove { _eventDelivered -= value; }
        }

        // ---- connections and users --------------------------------------------

        /// <summary>Open a connection for a user, upserting it first from
        /// {"id": userId, ...fields} (fields may hold "status", "invisible", custom ones).</summary>
        public PresenceConnection Connect(string userId, IDictionary<string, object> fields = null)
        {
            if (fields != null) return ConnectJson(UserJson(userId, fields));
            if (userId == null) throw new ArgumentNullException("userId");
            byte[] id = NativeMethods.Utf8(userId);
            ulong conn;
            IntPtr h = Enter();
            PresenceResult r;
            try { r = NativeMethods.presence_connect_user(h, id, out conn); }
            finally { Leave(); }
            return Opened(r, conn, userId);
        }

        /// <summary>Open a connection from a user JSON object {"id":..., ...}.</summary>
        public PresenceConnection ConnectJson(string userJson)
        {
            byte[] json = NativeMethods.Utf8(userJson);
            ulong id;
            IntPtr h = Enter();
            PresenceResult r;
            try { r = NativeMethods.presence_connect(h, json, out id); }
            finally { Leave(); }
            string userId = null;
            if (r == PresenceResult.Ok)
            {
                try { userId = JsonValue.String(JsonValue.ParseObject(userJson), "id"); }
                catch (JsonException) { }
            }
            return Opened(r, id, userId);
        }

        private PresenceConnection Opened(PresenceResult r, ulong id, string userId)
        {
            PresenceConnection conn = null;
            if (r == PresenceResult.Ok)
            {
                conn = new PresenceConnection(this, id, userId);
                _connections[id] = conn;
            }
            Check(r);
            return conn;
        }

        /// <summary>Close a connection (as PresenceConnection.Disconnect).</summary>
        public void Disconnect(ulong connectionId)
        {
            IntPtr h = Enter();
            PresenceResult r;
            try { r = NativeMethods.presence_disconnect(h, connectionId); }
            finally { Leave(); }
            Check(r);
            PresenceConnection conn;
            if (_connections.TryGetValue(connectionId, out conn)) conn.IsOpen = false;
        }

        /// <summary>Keep a connection alive (with connection_timeout_ms).</summary>
        public void Heartbeat(ulong connectionId)
        {
            IntPtr h = Enter();
            PresenceResult r;
            try { r = NativeMethods.presence_heartbeat(h, connectionId); }
            finally { Leave(); }
            Check(r);
        }

        /// <summary>Create or merge a user from a JSON object.</summary>
        public void UpsertUser(string userJson)
        {
            byte[] json = NativeMethods.Utf8(userJson);
            IntPtr h = Enter();
            PresenceResult r;
            try { r = NativeMethods.presence_upsert_user(h, json); }
            finally { Leave(); }
            Check(r);
        }

        /// <summary>Create or merge a user: {"id": userId, ...fields}; a null value removes a field.</summary>
        public void UpsertUser(string userId, IDictionary<string, object> fields)
        {
            UpsertUser(UserJson(userId, fields));
        }

        /// <summary>presence_set_invisible.</summary>
        public void SetInvisible(string userId, bool invisible)
        {
            byte[] id = NativeMethods.Utf8(userId);
            IntPtr h = Enter();
            PresenceResult r;
            try { r = NativeMethods.presence_set_invisible(h, id, invisible); }
            finally { Leave(); }
            Check(r);
        }

        /// <summary>presence_set_status; null clears the status.</summary>
        public void SetStatus(string userId, string status)
        {
            byte[] id = NativeMethods.Utf8(userId);
            byte[] text = NativeMethods.Utf8(status);
            IntPtr h = Enter();
            PresenceResult r;
            try { r = NativeMethods.presence_set_status(h, id, text); }
            finally { Leave(); }
            Check(r);
        }

        /// <summary>The user as <paramref name="viewer"/> sees it (0: the host), as JSON.</summary>
        public string GetUserJson(string userId, ulong viewer = 0)
        {
            byte[] id = NativeMethods.Utf8(userId);
            IntPtr h = Enter();
            IntPtr s = IntPtr.Zero;
            PresenceResult r;
            try { r = NativeMethods.presence_get_user(h, viewer, id, out s); }
            finally { Leave(); }
            return TakeChecked(r, s);
        }

        /// <summary>The registry User for an id, refreshed from the engine.</summary>
        public User GetUser(string userId, ulong viewer = 0)
        {
            string json = GetUserJson(userId, viewer);
            return UserFromView(JsonValue.ParseObject(json), json, 0);
        }

        /// <summary>The registry User for an id if this wrapper has seen it (no native call).</summary>
        public bool TryGetCachedUser(string userId, out User user)
        {
            return _users.TryGetValue(userId, out user);
        }

        // ---- channels ---------------------------------------------------------

        /// <summary>Create or merge a channel: {"type","id","members":[...], custom}.</summary>
        public void UpsertChannel(string channelJson)
        {
            byte[] json = NativeMethods.Utf8(channelJson);
            IntPtr h = Enter();
            PresenceResult r;
            try { r = NativeMethods.presence_upsert_channel(h, json); }
            finally { Leave(); }
            Check(r);
        }

        /// <summary>Create or merge a channel from parts.</summary>
        public void UpsertChannel(string type, string id, IEnumerable<string> members = null,
                                  IDictionary<string, object> custom = null)
        {
            var obj = new Dictionary<string, object>();
            if (custom != null)
                foreach (var kv in custom) obj[kv.Key] = kv.Value;
            obj["type"] = type;
            obj["id"] = id;
            if (members != null) obj["members"] = new List<string>(members);
            UpsertChannel(JsonValue.Serialize(obj));
        }

        /// <summary>Add members (creating unknown users with only their id).</summary>
        public void AddMembers(string cid, params string[] userIds)
        {
            AddMembersJson(cid, JsonValue.Serialize(userIds));
        }

        /// <summary>Add members.</summary>
        public void AddMembers(string cid, IEnumerable<string> userIds)
        {
            AddMembersJson(cid, JsonValue.Serialize(new List<string>(userIds)));
        }

        /// <summary>Add members given as a JSON array of user ids.</summary>
        public void AddMembersJson(string cid, string userIdsJson)
        {
            byte[] c = NativeMethods.Utf8(cid);
            byte[] ids = NativeMethods.Utf8(userIdsJson);
            IntPtr h = Enter();
            PresenceResult r;
            try { r = NativeMethods.presence_add_members(h, c, ids); }
            finally { Leave(); }
            Check(r);
        }

        /// <summary>Remove members.</summary>
        public void RemoveMembers(string cid, params string[] userIds)
        {
            RemoveMembersJson(cid, JsonValue.Serialize(userIds));
        }

        /// <summary>Remove members.</summary>
        public void RemoveMembers(string cid, IEnumerable<string> userIds)
        {
            RemoveMembersJson(cid, JsonValue.Serialize(new List<string>(userIds)));
        }

        /// <summary>Remove members given as a JSON array of user ids.</summary>
        public void RemoveMembersJson(string cid, string userIdsJson)
        {
            byte[] c = NativeMethods.Utf8(cid);
            byte[] ids = NativeMethods.Utf8(userIdsJson);
            IntPtr h = Enter();
            PresenceResult r;
            try { r = NativeMethods.presence_remove_members(h, c, ids); }
            finally { Leave(); }
            Check(r);
        }

        /// <summary>Delete a channel; its watchers stop watching it without events.</summary>
        public void DeleteChannel(string cid)
        {
            byte[] c = NativeMethods.Utf8(cid);
            IntPtr h = Enter();
            PresenceResult r;
            try { r = NativeMethods.presence_delete_channel(h, c); }
            finally { Leave(); }
            Check(r);
        }

        /// <summary>End the presence subscription that QueryUsers with "presence":true gave
        /// a connection to one user (subscriptions through watched channels stay).</summary>
        public void UnsubscribeUser(ulong connectionId, string userId)
        {
            byte[] id = NativeMethods.Utf8(userId);
            IntPtr h = Enter();
            PresenceResult r;
            try { r = NativeMethods.presence_unsubscribe_user(h, connectionId, id); }
            finally { Leave(); }
            Check(r);
        }

        /// <summary>Watch a channel from a connection; answers the channel state JSON.</summary>
        public string WatchChannelJson(ulong connectionId, string cid, bool presence = true)
        {
            byte[] c = NativeMethods.Utf8(cid);
            IntPtr h = Enter();
            IntPtr s = IntPtr.Zero;
            PresenceResult r;
            try { r = NativeMethods.presence_watch_channel(h, connectionId, c, presence, out s); }
            finally { Leave(); }
            return TakeChecked(r, s);
        }

        /// <summary>Watch a channel from a connection; answers the channel state.</summary>
        public ChannelState WatchChannel(ulong connectionId, string cid, bool presence = true)
        {
            return StateFromView(JsonValue.ParseObject(WatchChannelJson(connectionId, cid, presence)));
        }

        /// <summary>Stop watching a channel.</summary>
        public void StopWatching(ulong connectionId, string cid)
        {
            byte[] c = NativeMethods.Utf8(cid);
            IntPtr h = Enter();
            PresenceResult r;
            try { r = NativeMethods.presence_stop_watching(h, connectionId, c); }
            finally { Leave(); }
            Check(r);
        }

        // ---- queries ----------------------------------------------------------

        /// <summary>presence_query_users: {"users":[...]} as JSON.</summary>
        public string QueryUsersJson(string queryJson, ulong viewer = 0)
        {
            byte[] q = NativeMethods.Utf8(queryJson ?? "{}");
            IntPtr h = Enter();
            IntPtr s = IntPtr.Zero;
            PresenceResult r;
            try { r = NativeMethods.presence_query_users(h, viewer, q, out s); }
            finally { Leave(); }
            return TakeChecked(r, s);
        }

        /// <summary>Query users (Stream filter syntax); registry User objects.</summary>
        public List<User> QueryUsers(string queryJson, ulong viewer = 0)
        {
            var result = new List<User>();
            var users = JsonValue.Array(JsonValue.ParseObject(QueryUsersJson(queryJson, viewer)), "users");
            if (users != null)
            {
                foreach (JToken u in users)
                {
                    var view = u as JObject;
                    if (view != null) result.Add(UserFromView(view, null, 0));
                }
            }
            return result;
        }

        /// <summary>presence_query_channels: {"channels":[state...]} as JSON.</summary>
        public string QueryChannelsJson(string queryJson, ulong viewer = 0)
        {
            byte[] q = NativeMethods.Utf8(queryJson ?? "{}");
            IntPtr h = Enter();
            IntPtr s = IntPtr.Zero;
            PresenceResult r;
            try { r = NativeMethods.presence_query_channels(h, viewer, q, out s); }
            finally { Leave(); }
            return TakeChecked(r, s);
        }

        /// <summary>Query channels (Stream filter syntax).</summary>
        public List<ChannelState> QueryChannels(string queryJson, ulong viewer = 0)
        {
            var result = new List<ChannelState>();
            var channels = JsonValue.Array(JsonValue.ParseObject(QueryChannelsJson(queryJson, viewer)), "channels");
            if (channels != null)
            {
                foreach (JToken c in channels)
                {
                    var view = c as JObject;
                    if (view != null) result.Add(StateFromView(view));
                }
            }
            return result;
        }

        // ---- events -----------------------------------------------------------

        /// <summary>A host listener filtered by event type and/or user id (null: any).
        /// Dispose the answer to remove it.</summary>
        public PresenceListener AddListener(string eventType, string userId, Action<PresenceEvent> handler)
        {
            if (handler == null) throw new ArgumentNullException("handler");
            return Register(eventType, userId, false, handler);
        }

        /// <summary>A delivery listener: one call per (event, recipient connection).</summary>
        public PresenceListener AddDeliveryListener(Action<PresenceEvent> handler)
        {
            if (handler == null) throw new ArgumentNullException("handler");
            return Register(null, null, true, handler);
        }

        /// <summary>Drain up to <paramref name="max"/> queued events of a connection, as a JSON array.</summary>
        public string PollEventsJson(ulong connectionId, uint max = 1024)
        {
            IntPtr h = Enter();
            IntPtr s = IntPtr.Zero;
            PresenceResult r;
            try { r = NativeMethods.presence_poll_events(h, connectionId, max, out s); }
            finally { Leave(); }
            return TakeChecked(r, s);
        }

        /// <summary>Drain up to <paramref name="max"/> queued events of a connection, typed,
        /// through one reused native batch: no JSON, user ids converted once. With no events
        /// it answers a shared empty list and allocates nothing; otherwise it allocates the
        /// events and the list holding them.</summary>
        public IList<PresenceEvent> PollEvents(ulong connectionId, uint max = 1024)
        {
            return Poll(connectionId, null, max);
        }

        /// <summary>Drain up to <paramref name="maxEach"/> queued events of each of several
        /// connections, in the array's order (each one's oldest first), with one native call
        /// and one hold of the engine's lock: for a server that drains its connections each
        /// frame. Each event's ConnectionId names its recipient. An unknown or closed
        /// connection throws (NotFound) with nothing drained. Allocates like the
        /// one-connection form.</summary>
        public IList<PresenceEvent> PollEvents(ulong[] connectionIds, uint maxEach = 1024)
        {
            if (connectionIds == null) throw new ArgumentNullException("connectionIds");
            return Poll(0, connectionIds, maxEach);
        }

        /// <summary>The batch drain of one connection, or of <paramref name="connectionIds"/>
        /// when it is not null.</summary>
        private unsafe IList<PresenceEvent> Poll(ulong connectionId, ulong[] connectionIds, uint max)
        {
            if (_batch == null) _batch = new PresenceBatchHandle();
            IntPtr h = Enter();
            PresenceResult r;
            uint n = 0;
            bool added = false;
            try
            {
                _batch.DangerousAddRef(ref added);
                IntPtr batch = _batch.DangerousGetHandle();
                _generation++;
                if (connectionIds == null)
                {
                    r = NativeMethods.presence_poll_batch(h, connectionId, max, batch);
                }
                else
                {
                    fixed (ulong* ids = connectionIds)
                        r = NativeMethods.presence_poll_batch_many(h, (IntPtr)ids, (uint)connectionIds.Length, max, batch);
                }
                if (r == PresenceResult.Ok) n = NativeMethods.presence_batch_len(batch);
                if (n == 0)
                {
                    Check(r);
                    return NoEvents;
                }
                var events = new PresenceEvent[n];
                var info = (NativeEventInfo*)NativeMethods.presence_batch_events(batch);
                for (uint i = 0; i < n; i++) events[i] = MakeEvent((IntPtr)(info + i), batch, i);
                return events;
            }
            finally
            {
                if (added) _batch.DangerousRelease();
                Leave();
            }
        }

        /// <summary>One frame of the engine: <see cref="Tick"/> (timeouts, offline grace,
        /// last_active refresh) then <see cref="Pump"/> (this frame's events, raised on this
        /// thread). Call it from a MonoBehaviour's Update(). Cost: what is due plus the
        /// events delivered; with nothing due and nothing pending it is two native calls
        /// and allocates nothing. Answers how many callbacks ran.</summary>
        public int Update()
        {
            Tick();
            return Pump();
        }

        /// <summary>Raise the pending events on this thread; answers how many native
        /// deliveries ran (each listener's call, and each event queued for PresenceEngine's
        /// own events). <see cref="Update"/> calls it after Tick.
        /// With "dispatch":"manual" (the default), listeners run first (in seq order), then
        /// PresenceEngine's own events are raised from a native queue drained in batches
        /// of up to 1024 (one native call per batch, nothing allocated per event). Cost:
        /// O(events delivered). A Pump() called from a handler runs the listeners and
        /// leaves the draining to the outer Pump().</summary>
        public int Pump()
        {
            IntPtr h = Enter();
            uint delivered;
            PresenceResult r;
            PresenceException cutOff = null;
            try
            {
                r = NativeMethods.presence_pump(h, out delivered);
                // A listener may have disposed the engine (and the host queue) inside presence_pump.
                if (r == PresenceResult.Ok && _hostQueue != null && !_draining && !_disposed)
                {
                    PresenceResult drained = DrainHostQueue();
                    if (drained != PresenceResult.Ok) cutOff = ReopenHostQueue(drained);
                }
            }
            finally { Leave(); }
            if (cutOff != null) throw cutOff;
            Check(r);
            return (int)delivered;
        }

        private const uint HostBatchSize = 1024;

        /// <summary>Raise every queued host event through the one reused _hostEvent. Runs
        /// inside Enter/Leave; the handles are ref-counted so a Dispose from a handler
        /// frees them only after the loop.</summary>
        private unsafe PresenceResult DrainHostQueue()
        {
            bool queueAdded = false, batchAdded = false;
            PresenceHostQueueHandle queueHandle = _hostQueue;
            PresenceBatchHandle batchHandle = _hostBatch;
            _draining = true;
            try
            {
                queueHandle.DangerousAddRef(ref queueAdded);
                batchHandle.DangerousAddRef(ref batchAdded);
                IntPtr queue = queueHandle.DangerousGetHandle();
                IntPtr batch = batchHandle.DangerousGetHandle();
                while (!_disposed)
                {
                    _generation++;
                    PresenceResult r = NativeMethods.presence_host_queue_poll(queue, HostBatchSize, batch);
                    if (r != PresenceResult.Ok) return r;
                    uint n = NativeMethods.presence_batch_len(batch);
                    if (n == 0) return PresenceResult.Ok;
                    var info = (NativeEventInfo*)NativeMethods.presence_batch_events(batch);
                    uint next = 0;
                    while (next < n)
                    {
                        // A handler's exception is kept for Pump to rethrow; the rest of the
                        // batch is still raised.
                        try { next = RaiseHostEvents(info, n, batch, next); }
                        catch (Exception ex)
                        {
                            StorePending(ex);
                            _generation++;
                            next = _raising + 1;
                        }
                    }
                }
                return PresenceResult.Ok;
            }
            finally
            {
                _draining = false;
                if (batchAdded) batchHandle.DangerousRelease();
                if (queueAdded) queueHandle.DangerousRelease();
            }
        }

        /// <summary>Raise host events <paramref name="from"/> to <paramref name="n"/> of a
        /// batch through the one reused _hostEvent (n when Dispose stops it early). Apart from
        /// DrainHostQueue's exception handling: under Mono, a loop inside a try block keeps its
        /// locals in memory.</summary>
        private unsafe uint RaiseHostEvents(NativeEventInfo* info, uint n, IntPtr batch, uint from)
        {
            PresenceEvent ev = _hostEvent;
            for (uint i = from; i < n; i++)
            {
                if (_disposed) return n;
                _raising = i;
                FillEvent(ev, (IntPtr)(info + i), batch, i);
                DispatchHostEvent(ev);
                _generation++; // GetJson belongs to the handler that got the event
            }
            return n;
        }

        /// <summary>The host queue was cut off (it fell pending_dispatch_capacity events
        /// behind within one Pump; every event it got was raised): open a new queue so the
        /// next frame works again, and answer the error for Pump to throw.</summary>
        private PresenceException ReopenHostQueue(PresenceResult failure)
        {
            PresenceException error = LastError(failure);
            _hostQueue.Dispose();
            _hostQueue = null;
            if (!_disposed) OpenHostQueue();
            return error;
        }

        // ---- time and persistence ---------------------------------------------

        /// <summary>Apply what is due: timeouts, grace expiry, last_active refresh.</summary>
        public void Tick()
        {
            IntPtr h = Enter();
            PresenceResult r;
            try { r = NativeMethods.presence_tick(h); }
            finally { Leave(); }
            Check(r);
        }

        /// <summary>Move the manual clock (never backwards).</summary>
        public void SetTime(long unixMs)
        {
            IntPtr h = Enter();
            PresenceResult r;
            try { r = NativeMethods.presence_set_time(h, unixMs); }
            finally { Leave(); }
            Check(r);
        }

        /// <summary>Move the manual clock to a point in time.</summary>
        public void SetTime(DateTime time)
        {
            var epoch = new DateTime(1970, 1, 1, 0, 0, 0, DateTimeKind.Utc);
            SetTime((long)Math.Round((time.ToUniversalTime() - epoch).TotalMilliseconds));
        }

        /// <summary>Write users and channels to a file, atomically.</summary>
        public void Save(string path)
        {
            byte[] p = NativeMethods.Utf8(path);
            IntPtr h = Enter();
            PresenceResult r;
            try { r = NativeMethods.presence_save(h, p); }
            finally { Leave(); }
            Check(r);
        }

        /// <summary>Cluster mode: the link to the shared store as JSON
        /// (<c>{"mode":"cluster","node_id","link":"up"|"down"|"fenced","nodes_alive","pending_writes","last_error"}</c>);
        /// <c>{"mode":"single"}</c> without a <c>cluster</c> config.</summary>
        public string ClusterStatusJson()
        {
            IntPtr h = Enter();
            IntPtr s = IntPtr.Zero;
            PresenceResult r;
            try { r = NativeMethods.presence_cluster_status(h, out s); }
            finally { Leave(); }
            return TakeChecked(r, s);
        }

        /// <summary>Load users and channels (only while there are no connections).</summary>
        public void Load(string path)
        {
            byte[] p = NativeMethods.Utf8(path);
            IntPtr h = Enter();
            PresenceResult r;
            try { r = NativeMethods.presence_load(h, p); }
            finally { Leave(); }
            Check(r);
        }

        // ---- disposal ---------------------------------------------------------

        /// <summary>Remove the listeners, free their GCHandles, then free the engine.
        /// Safe to call from an event handler (the native engine is then freed when
        /// Pump returns). Idempotent.</summary>
        public void Dispose()
        {
            Dispose(true);
            GC.SuppressFinalize(this);
        }

        private void Dispose(bool disposing)
        {
            if (_disposed) return;
            _disposed = true;
            if (disposing && _handle != null && !_handle.IsClosed)
            {
                bool added = false;
                try
                {
                    _handle.DangerousAddRef(ref added);
                    IntPtr h = _handle.DangerousGetHandle();
                    foreach (var reg in _listeners)
                    {
                        if (!reg.Removed && reg.Id != 0) NativeMethods.presence_remove_listener(h, reg.Id);
                    }
                }
                finally
                {
                    if (added) _handle.DangerousRelease();
                }
            }
            foreach (var reg in _listeners)
            {
                reg.Removed = true;
                if (disposing && _callDepth > 0) _deferredFree.Add(reg); // a callback is running
                else reg.FreeGCHandle();
            }
            _listeners.Clear();
            if (disposing)
            {
                if (_hostQueue != null) _hostQueue.Dispose(); // likewise, after a drain in progress
                if (_hostBatch != null) _hostBatch.Dispose();
                if (_batch != null) _batch.Dispose();
                _handle.Dispose(); // with a call in progress, SafeHandle frees it when that call ends
                foreach (var conn in _connections.Values) conn.IsOpen = false;
                _connections.Clear();
                _users.Clear();
                _usersByKey = new User[0];
                _deliveryListener = null;
                _eventDelivered = null;
            }
        }

        // ---- internals --------------------------------------------------------

        internal void RemoveListener(PresenceListener reg)
        {
            if (reg.Removed) return;
            reg.Removed = true;
            _listeners.Remove(reg);
            if (!_disposed)
            {
                IntPtr h = Enter();
                PresenceResult r;
                try { r = NativeMethods.presence_remove_listener(h, reg.Id); }
                finally
                {
                    // Leave() frees deferred handles once no native call is running.
                    _deferredFree.Add(reg);
                    Leave();
                }
                Check(r);
            }
            else
            {
                reg.FreeGCHandle();
            }
        }

        internal void EnsureDeliveryListener()
        {
            if (_deliveryListener == null)
                _deliveryListener = Register(null, null, true, DispatchDelivery);
        }

        /// <summary>The native host queue Pump() drains (manual dispatch only: otherwise
        /// events are raised by the dispatching call, through a listener).</summary>
        private void OpenHostQueue()
        {
            IntPtr h = Enter();
            PresenceResult r;
            IntPtr queue;
            try { r = NativeMethods.presence_host_queue_new(h, null, null, out queue); }
            finally { Leave(); }
            Check(r);
            _hostQueue = new PresenceHostQueueHandle(queue);
            if (_hostBatch == null) _hostBatch = new PresenceBatchHandle();
            if (_hostEvent == null) _hostEvent = new PresenceEvent(this);
        }

        /// <summary>Whether a config (after WithManualDispatch) asks for "dispatch":"manual".</summary>
        private static bool IsManualDispatch(string config)
        {
            try { return JsonValue.String(JsonValue.ParseObject(config), "dispatch") == "manual"; }
            catch (JsonException) { return false; }
        }

        private PresenceListener Register(string eventType, string userId, bool delivery, Action<PresenceEvent> handler)
        {
            byte[] type = NativeMethods.Utf8(eventType);
            byte[] user = NativeMethods.Utf8(userId);
            IntPtr h = Enter();
            var reg = new PresenceListener(this, handler, delivery);
            PresenceResult r;
            ulong id = 0;
            try
            {
                // Weak: the native side must not keep the engine alive (the finalizer frees it).
                reg.GCHandle = GCHandle.Alloc(reg, GCHandleType.Weak);
                Interlocked.Increment(ref s_liveGCHandles);
                IntPtr userData = GCHandle.ToIntPtr(reg.GCHandle);
                reg.UserData = userData;
                // No user_data_free: the GCHandle is freed here, once no native call runs.
                r = delivery
                    ? NativeMethods.presence_add_typed_delivery_listener(h, s_callback, userData, IntPtr.Zero, out id)
                    : NativeMethods.presence_add_typed_listener(h, type, user, s_callback, userData, IntPtr.Zero, out id);
            }
            finally
            {
                Leave();
            }
            if (r == PresenceResult.Ok)
            {
                reg.Id = id;
                _listeners.Add(reg);
            }
            else
            {
                reg.Removed = true;
                reg.FreeGCHandle();
            }
            Check(r);
            return reg;
        }

        [MonoPInvokeCallback(typeof(PresenceEventInfoCallback))]
        private static void OnNativeEvent(IntPtr userData, IntPtr info)
        {
            PresenceEngine engine = null;
            try
            {
                if (userData == IntPtr.Zero || info == IntPtr.Zero) return;
                PresenceEngine calling = t_calling;
                PresenceListener reg = calling != null ? calling.FindListener(userData) : null;
                if (reg == null) reg = GCHandle.FromIntPtr(userData).Target as PresenceListener;
                if (reg == null || reg.Removed) return;
                engine = reg.Engine;
                if (engine == null || engine._disposed) return;
                engine.Deliver(reg, info);
            }
            catch (Exception ex)
            {
                // Never let an exception unwind into native code.
                if (engine != null) engine.StorePending(ex);
            }
        }

        private void Deliver(PresenceListener reg, IntPtr info)
        {
            PresenceEvent ev = MakeEvent(info, IntPtr.Zero, 0);
            try
            {
                reg.Handler(ev);
            }
            catch (Exception ex)
            {
                StorePending(ex);
            }
            finally
            {
                _generation++; // the native event is gone once the callback returns
            }
        }

        private void StorePending(Exception ex)
        {
            if (_pending == null) _pending = ExceptionDispatchInfo.Capture(ex);
        }

        private void DispatchHostEvent(PresenceEvent ev)
        {
            // Handlers are read once into locals and invoked here rather than through a
            // helper: per event under Mono, every call not inlined shows.
            Action<PresenceEvent> handler;
            switch (ev.Kind)
            {
                case EventKinds.UserPresenceChanged:
                    if (ev.User != null) ev.User.RaisePresenceChanged(ev);
                    handler = UserPresenceChanged;
                    break;
                case EventKinds.UserUpdated:
                    // Custom fields are not part of the typed event: refresh them (JSON, but
                    // only for this rare event, never for presence changes).
                    if (ev.User != null)
                    {
                        UserFromView(JsonValue.ParseObject(GetUserJson(ev.User.Id)), null, 0);
                        ev.User.RaiseUpdated();
                    }
                    handler = UserUpdated;
                    break;
                case EventKinds.UserWatchingStart: handler = UserWatchingStart; break;
                case EventKinds.UserWatchingStop: handler = UserWatchingStop; break;
                case EventKinds.MemberAdded: handler = MemberAdded; break;
                case EventKinds.MemberRemoved: handler = MemberRemoved; break;
                case EventKinds.ConnectionClosed:
                    PresenceConnection conn;
                    if (ev.CloseReason != 0 && _connections.TryGetValue(ev.ClosedConnection, out conn))
                    {
                        _connections.Remove(ev.ClosedConnection);
                        conn.OnClosed(ev.Reason);
                    }
                    handler = ConnectionClosed;
                    break;
                default: handler = null; break;
            }
            // A handler may have disposed the engine: no handler runs after Dispose.
            if (handler != null && !_disposed) handler(ev);
            handler = EventReceived;
            if (handler != null && !_disposed) handler(ev);
        }

        private void DispatchDelivery(PresenceEvent ev)
        {
            Raise(_eventDelivered, ev);
            PresenceConnection conn;
            if (_connections.TryGetValue(ev.ConnectionId, out conn)) conn.RaiseEventReceived(ev);
        }

        private static void Raise(Action<PresenceEvent> handler, PresenceEvent ev)
        {
            if (handler != null) handler(ev);
        }

        /// <summary>A new PresenceEvent from a native PresenceEventInfo (see FillEvent).</summary>
        private PresenceEvent MakeEvent(IntPtr infoPtr, IntPtr batch, uint index)
        {
            var ev = new PresenceEvent(this);
            FillEvent(ev, infoPtr, batch, index);
            return ev;
        }

        /// <summary>Fill every field of <paramref name="ev"/> from a native PresenceEventInfo,
        /// read in place: no JSON, strings and registry Users from the cache, times kept as
        /// milliseconds until read. Allocates nothing once the strings and the user are cached.</summary>
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private unsafe void FillEvent(PresenceEvent ev, IntPtr infoPtr, IntPtr batch, uint index)
        {
            NativeEventInfo* info = (NativeEventInfo*)infoPtr;
            ev.NativeInfo = infoPtr;
            ev.NativeBatch = batch;
            ev.NativeIndex = index;
            ev.Generation = _generation;
            uint kind = info->Kind;
            ev.Kind = kind;
            ulong seq = info->Seq;
            ev.Seq = seq;
            ev.CreatedAtMs = info->CreatedAtMs;
            ulong connectionId = info->ConnectionId;
            ev.ConnectionId = connectionId;
            ev.Cid = info->Cid == null ? null : _texts.Get(info->Cid, info->CidLen);
            bool online = info->Online != 0, invisible = info->Invisible != 0;
            // Online as others see it: the host's own view folds invisible in.
            ev.Online = online && !invisible;
            long lastActiveMs = info->LastActiveMs;
            ev.LastActiveMs = lastActiveMs;
            ev.WatcherCountValue = info->WatcherCount;
            uint closeReason = info->CloseReason;
            ev.CloseReason = closeReason;
            ev.ClosedConnection = info->ClosedConnectionId;
            string userId = null;
            User user = null;
            if (info->UserId != null)
            {
                ulong key = info->UserKey;
                User[] byKey = _usersByKey;
                if (key < (ulong)byKey.Length && (user = byKey[(int)key]) != null) userId = user.Id;
                else user = UserOfNewKey(info, key, out userId);
            }
            ev.UserId = userId;
            if (closeReason == 0 && user != null)
            {
                // Own views (the host's) say whether the user is invisible; public ones do not.
                string status = info->Status == null ? null : _texts.Get(info->Status, info->StatusLen);
                user.ApplyEvent(online, connectionId == 0, invisible, status, lastActiveMs, seq);
                ev.User = user;
                ev.Member = kind == EventKinds.MemberAdded || kind == EventKinds.MemberRemoved ? user.AsMember : null;
            }
            else
            {
                ev.User = null;
                ev.Member = null;
            }
        }

        /// <summary>The registry User of an event's user the first time its key is seen (the
        /// id converted once through the string cache), remembered under the key unless the
        /// key is past <see cref="MaxUserKeys"/>.</summary>
        private unsafe User UserOfNewKey(NativeEventInfo* info, ulong key, out string userId)
        {
            userId = _userIds.Get(info->UserId, info->UserIdLen);
            User user = Registry(userId);
            if (key != 0 && key < MaxUserKeys)
            {
                if (key >= (ulong)_usersByKey.Length)
                {
                    int size = Math.Max(_usersByKey.Length, 1024);
                    while ((ulong)size <= key) size *= 2;
                    Array.Resize(ref _usersByKey, size);
                }
                _usersByKey[(int)key] = user;
            }
            return user;
        }

        /// <summary>The event's JSON while its native memory lives.</summary>
        internal string EventJson(IntPtr info, IntPtr batch, uint index, long generation)
        {
            if (generation != _generation || _disposed)
                throw new InvalidOperationException(
                    "PresenceEvent.GetJson() works only inside the handler, or until the next PollEvents for polled events");
            IntPtr json;
            PresenceResult r = batch != IntPtr.Zero
                ? NativeMethods.presence_batch_event_json(batch, index, out json)
                : NativeMethods.presence_event_info_json(info, out json);
            if (r != PresenceResult.Ok) throw LastError(r);
            return NativeMethods.FromUtf8(json);
        }

        internal User Registry(string id)
        {
            User user;
            if (!_users.TryGetValue(id, out user))
            {
                user = new User(this, id);
                _users[id] = user;
            }
            return user;
        }

        internal User UserFromView(JObject view, string json, ulong seq)
        {
            string id = JsonValue.String(view, "id");
            if (id == null) throw new FormatException("user object without an id");
            User user = Registry(id);
            user.Apply(view, json ?? JsonValue.Compact(view), seq);
            return user;
        }

        internal ChannelState StateFromView(JObject view)
        {
            var channel = new Channel(JsonValue.Object(view, "channel") ?? new JObject());
            var members = new List<Member>();
            var memberList = JsonValue.Array(view, "members");
            if (memberList != null)
            {
                foreach (JToken m in memberList)
                {
                    var mv = m as JObject;
                    if (mv == null) continue;
                    string memberId = JsonValue.String(mv, "user_id");
                    var uv = JsonValue.Object(mv, "user");
                    User user = uv != null ? UserFromView(uv, null, 0) : memberId != null ? Registry(memberId) : null;
                    members.Add(new Member(memberId ?? (user != null ? user.Id : null), user));
                }
            }
            var watchers = new List<User>();
            var watcherList = JsonValue.Array(view, "watchers");
            if (watcherList != null)
            {
                foreach (JToken w in watcherList)
                {
                    var wv = w as JObject;
                    if (wv != null) watchers.Add(UserFromView(wv, null, 0));
                }
            }
            return new ChannelState(channel, members, (int)JsonValue.Long(view, "watcher_count"), watchers);
        }

        private static string UserJson(string userId, IDictionary<string, object> fields)
        {
            if (userId == null) throw new ArgumentNullException("userId");
            var obj = new Dictionary<string, object>();
            obj["id"] = userId;
            if (fields != null)
            {
                foreach (var kv in fields)
                {
                    if (kv.Key != "id") obj[kv.Key] = kv.Value;
                }
            }
            return JsonValue.Serialize(obj);
        }

        /// <summary>Add "dispatch":"manual" to a config object that names no dispatch,
        /// keeping the caller's text (so numbers stay exactly as written).</summary>
        internal static string WithManualDispatch(string configJson)
        {
            if (configJson == null || configJson.Trim().Length == 0) return "{\"dispatch\":\"manual\"}";
            JObject cfg;
            try { cfg = JsonValue.ParseObject(configJson); }
            catch (JsonException) { return configJson; } // let the engine report the error
            if (cfg.Property("dispatch") != null) return configJson;
            int brace = configJson.IndexOf('{');
            return configJson.Substring(0, brace + 1) + "\"dispatch\":\"manual\"" +
                   (cfg.Count > 0 ? "," : "") + configJson.Substring(brace + 1);
        }

        private IntPtr Enter()
        {
            if (_disposed) throw new ObjectDisposedException("PresenceEngine");
            bool added = false;
            _handle.DangerousAddRef(ref added);
            if (_callDepth++ == 0)
            {
                _outerEngine = t_calling;
                t_calling = this;
            }
            return _handle.DangerousGetHandle();
        }

        private void Leave()
        {
            if (--_callDepth == 0)
            {
                t_calling = _outerEngine;
                _outerEngine = null;
                if (_deferredFree.Count > 0)
                {
                    foreach (var reg in _deferredFree) reg.FreeGCHandle();
                    _deferredFree.Clear();
                }
            }
            _handle.DangerousRelease();
        }

        /// <summary>This engine's live listener registered with <paramref name="userData"/>,
        /// without going through the GCHandle (whose Target costs more than the rest of a
        /// delivery under Mono).</summary>
        private PresenceListener FindListener(IntPtr userData)
        {
            for (int i = 0; i < _listeners.Count; i++)
            {
                PresenceListener reg = _listeners[i];
                if (reg.UserData == userData) return reg;
            }
            return null;
        }

        private static PresenceException LastError(PresenceResult r)
        {
            string message = NativeMethods.FromUtf8(NativeMethods.presence_last_error());
            if (string.IsNullOrEmpty(message)) message = ResultName(r) ?? r.ToString();
            return new PresenceException(r, message);
        }

        private void Check(PresenceResult r)
        {
            if (r != PresenceResult.Ok)
            {
                PresenceException ex = LastError(r);
                ThrowPending();
                throw ex;
            }
            ThrowPending();
        }

        private void ThrowPending()
        {
            // Only the outermost call rethrows: a call made by a handler (a native listener's,
            // or one raised while Pump drains the host queue) must not get another handler's
            // exception.
            if (_pending != null && _callDepth == 0)
            {
                ExceptionDispatchInfo p = _pending;
                _pending = null;
                p.Throw();
            }
        }

        private string TakeChecked(PresenceResult r, IntPtr s)
        {
            string text;
            try { text = NativeMethods.FromUtf8(s); }
            finally { if (s != IntPtr.Zero) NativeMethods.presence_string_free(s); }
            Check(r);
            return text;
        }

        internal static void OnGCHandleFreed()
        {
            Interlocked.Decrement(ref s_liveGCHandles);
        }
    }

    /// <summary>A registered native listener. Dispose removes it (no callback afterwards).</summary>
    public sealed class PresenceListener : IDisposable
    {
        internal PresenceListener(PresenceEngine engine, Action<PresenceEvent> handler, bool delivery)
        {
            Engine = engine;
            Handler = handler;
            IsDelivery = delivery;
        }

        /// <summary>The native listener id.</summary>
        public ulong Id { get; internal set; }
        /// <summary>Whether this is a delivery listener.</summary>
        public bool IsDelivery { get; private set; }
        /// <summary>Whether the listener has been removed.</summary>
        public bool Removed { get; internal set; }

        internal PresenceEngine Engine { get; private set; }
        internal Action<PresenceEvent> Handler { get; private set; }
        internal GCHandle GCHandle;
        /// <summary>The user_data given to the native listener (the GCHandle as a pointer).</summary>
        internal IntPtr UserData;

        public void Dispose()
        {
            if (!Removed && Engine != null) Engine.RemoveListener(this);
        }

        internal void FreeGCHandle()
        {
            if (GCHandle.IsAllocated)
            {
                GCHandle.Free();
                PresenceEngine.OnGCHandleFreed();
            }
        }
    }
}
