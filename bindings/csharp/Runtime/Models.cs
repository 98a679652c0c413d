// Typed views of the engine's JSON: User, Channel, Member, ChannelState, PresenceEvent.
using System;
using System.Collections.Generic;
using System.Globalization;
using System.IO;
using System.Runtime.CompilerServices;
using Newtonsoft.Json;
using Newtonsoft.Json.Linq;

namespace Presence
{
    /// <summary>Raised by <see cref="User.PresenceChanged"/>: the Stream Unity SDK shape.</summary>
    public delegate void PresenceChangedHandler(User user, bool isOnline, DateTime? lastActive);

    /// <summary>The event type names the engine emits.</summary>
    public static class EventTypes
    {
        public const string UserPresenceChanged = "user.presence.changed";
        public const string UserUpdated = "user.updated";
        public const string UserWatchingStart = "user.watching.start";
        public const string UserWatchingStop = "user.watching.stop";
        public const string MemberAdded = "member.added";
        public const string MemberRemoved = "member.removed";
        public const string ConnectionClosed = "connection.closed";
        public const string EngineOverflow = "engine.overflow";
        public const string ClusterStatus = "cluster.status";

        /// <summary>The type name of a native PRESENCE_EVENT_* kind (null if unknown).</summary>
        internal static string Name(uint kind)
        {
            switch (kind)
            {
                case EventKinds.UserPresenceChanged: return UserPresenceChanged;
                case EventKinds.UserUpdated: return UserUpdated;
                case EventKinds.UserWatchingStart: return UserWatchingStart;
                case EventKinds.UserWatchingStop: return UserWatchingStop;
                case EventKinds.MemberAdded: return MemberAdded;
                case EventKinds.MemberRemoved: return MemberRemoved;
                case EventKinds.ConnectionClosed: return ConnectionClosed;
                case EventKinds.EngineOverflow: return EngineOverflow;
                case EventKinds.ClusterStatus: return ClusterStatus;
                default: return null;
            }
        }

        /// <summary>The reason name of a native PRESENCE_CLOSE_* value (null if unknown).</summary>
        internal static string CloseReasonName(uint reason)
        {
            switch (reason)
            {
                case 1: return "disconnect";
                case 2: return "timeout";
                case 3: return "slow_consumer";
                case 4: return "node_lost";
                default: return null;
            }
        }
    }

    /// <summary>The native PRESENCE_EVENT_* kinds (PresenceEventInfo.kind).</summary>
    internal static class EventKinds
    {
        internal const uint UserPresenceChanged = 1;
        internal const uint UserUpdated = 2;
        internal const uint UserWatchingStart = 3;
        internal const uint UserWatchingStop = 4;
        internal const uint MemberAdded = 5;
        internal const uint MemberRemoved = 6;
        internal const uint ConnectionClosed = 7;
        internal const uint EngineOverflow = 8;
        internal const uint ClusterStatus = 9;
    }

    /// <summary>The engine's times (Unix milliseconds, UTC) as DateTime.</summary>
    internal static class UnixTime
    {
        private const long EpochTicks = 621355968000000000;
        private const long TicksPerMillisecond = 10000;

        internal static DateTime ToDateTime(long ms)
        {
            return new DateTime(EpochTicks + ms * TicksPerMillisecond, DateTimeKind.Utc);
        }

        /// <summary>long.MinValue (the engine's "never") gives null.</summary>
        internal static DateTime? ToNullable(long ms)
        {
            return ms == long.MinValue ? (DateTime?)null : ToDateTime(ms);
        }

        /// <summary>Whole milliseconds (the engine's resolution); null gives long.MinValue.</summary>
        internal static long ToMillis(DateTime? time)
        {
            return time.HasValue ? (time.Value.ToUniversalTime().Ticks - EpochTicks) / TicksPerMillisecond : long.MinValue;
        }
    }

    /// <summary>
    /// A user. The engine keeps one User object per user id (see
    /// <see cref="PresenceEngine"/>): every query, GetUser, WatchChannel and
    /// event about that id updates and answers the same object, so handlers
    /// attached to <see cref="PresenceChanged"/> keep firing.
    /// </summary>
    public sealed class User
    {
        private static readonly HashSet<string> Managed = new HashSet<string>
        {
            "id", "online", "status", "last_active", "invisible", "created_at", "updated_at",
        };

        private readonly PresenceEngine _engine;
        private JObject _custom = new JObject();

        internal User(PresenceEngine engine, string id)
        {
            _engine = engine;
            Id = id;
        }

        /// <summary>The user id.</summary>
        public string Id { get; private set; }

        /// <summary>
        /// Online as other users see it: at least one live connection and not
        /// invisible. (The engine's own view reports "online" for an invisible
        /// user with connections; this property folds <see cref="Invisible"/> in.)
        /// </summary>
        public bool Online { get; private set; }

        /// <summary>Custom status text, or null.</summary>
        public string Status { get; private set; }

        /// <summary>Last activity (UTC), or null when never connected.</summary>
        public DateTime? LastActive { get { return UnixTime.ToNullable(_lastActiveMs); } }

        // Kept as the engine's milliseconds: events set it without building a DateTime.
        private long _lastActiveMs = long.MinValue;

        /// <summary>Whether the user is invisible. Known from own views (the host's,
        /// or the user's own connections); a public view that shows the user online
        /// clears it, otherwise it keeps the last known value.</summary>
        public bool Invisible { get; private set; }

        /// <summary>Creation time (UTC).</summary>
        public DateTime? CreatedAt { get; private set; }

        /// <summary>Last update time (UTC).</summary>
        public DateTime? UpdatedAt { get; private set; }

        /// <summary>Custom fields (name, image, ...), as Newtonsoft.Json tokens.</summary>
        public IDictionary<string, JToken> Custom { get { return _custom; } }

        /// <summary>The JSON object of the last snapshot (GetUser, a query, a channel state)
        /// this User was updated from; events update the typed properties only.</summary>
        public string Json { get; private set; }

        /// <summary>Seq of the last event applied to this object (0: none).</summary>
        public ulong LastEventSeq { get; private set; }

        /// <summary>The engine that owns this object.</summary>
        public PresenceEngine Engine { get { return _engine; } }

        /// <summary>A user.presence.changed event about this user was pumped.</summary>
        public event PresenceChangedHandler PresenceChanged;

        /// <summary>A user.updated event (custom fields changed) about this user was pumped.</summary>
        public event Action<User> Updated;

        /// <summary>Become invisible (presence_set_invisible(id, true)).</summary>
        public void MarkInvisible() { _engine.SetInvisible(Id, true); }

        /// <summary>Become visible again (presence_set_invisible(id, false)).</summary>
        public void MarkVisible() { _engine.SetInvisible(Id, false); }

        /// <summary>Set (or with null clear) the custom status.</summary>
        public void SetStatus(string status) { _engine.SetStatus(Id, status); }

        public override string ToString()
        {
            return Id + (Online ? " (online)" : " (offline)");
        }

        /// <summary>Apply a snapshot (a query answer) or an event's view (seq &gt; 0).
        /// Events older than the last applied one are ignored.</summary>
        internal void Apply(JObject view, string json, ulong seq)
        {
            if (seq != 0)
            {
                if (seq <= LastEventSeq) return;
                LastEventSeq = seq;
            }
            bool online = JsonValue.Bool(view, "online");
            JToken invisible;
            if (view.TryGetValue("invisible", out invisible) && invisible.Type == JTokenType.Boolean)
            {
                Invisible = (bool)invisible;
                Online = online && !Invisible;
            }
            else
            {
                Online = online;
                if (online) Invisible = false;
            }
            Status = JsonValue.String(view, "status");
            _lastActiveMs = UnixTime.ToMillis(JsonValue.Time(view, "last_active"));
            CreatedAt = JsonValue.Time(view, "created_at");
            UpdatedAt = JsonValue.Time(view, "updated_at");
            var custom = new JObject();
            foreach (var kv in view)
            {
                if (!Managed.Contains(kv.Key)) custom[kv.Key] = kv.Value;
            }
            _custom = custom;
            Json = json;
        }

        /// <summary>Apply a typed event's view of this user. <paramref name="ownView"/>: the
        /// view says whether the user is invisible. <paramref name="lastActiveMs"/>:
        /// long.MinValue leaves LastActive as it is. Events older than the last one are ignored.</summary>
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        internal void ApplyEvent(bool online, bool ownView, bool invisible, string status, long lastActiveMs, ulong seq)
        {
            if (seq <= LastEventSeq) return;
            LastEventSeq = seq;
            if (ownView)
            {
                Invisible = invisible;
                Online = online && !invisible;
            }
            else
            {
                Online = online;
                if (online) Invisible = false;
            }
            Status = status;
            if (lastActiveMs != long.MinValue) _lastActiveMs = lastActiveMs;
        }

        /// <summary>This user as a channel member (one object, reused by every member event).</summary>
        internal Member AsMember
        {
            get
            {
                if (_member == null) _member = new Member(Id, this);
                return _member;
            }
        }

        private Member _member;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        internal void RaisePresenceChanged(PresenceEvent ev)
        {
            var handler = PresenceChanged;
            if (handler != null) handler(this, ev.Online, ev.LastActive);
        }

        internal void RaiseUpdated()
        {
            var handler = Updated;
            if (handler != null) handler(this);
        }

        /// <summary>Online as others see it, from one view.</summary>
        internal static bool PublicOnline(JObject view)
        {
            return JsonValue.Bool(view, "online") && !JsonValue.Bool(view, "invisible");
        }
    }

    /// <summary>A channel (cid = type:id).</summary>
    public sealed class Channel
    {
        private static readonly HashSet<string> Managed = new HashSet<string>
        {
            "cid", "type", "id", "member_count", "created_at", "updated_at", "last_message_at",
        };

        internal Channel(JObject view)
        {
            Cid = JsonValue.String(view, "cid");
            Type = JsonValue.String(view, "type");
            Id = JsonValue.String(view, "id");
            MemberCount = (int)JsonValue.Long(view, "member_count");
            CreatedAt = JsonValue.Time(view, "created_at");
            UpdatedAt = JsonValue.Time(view, "updated_at");
            LastMessageAt = JsonValue.Time(view, "last_message_at");
            var custom = new JObject();
            foreach (var kv in view)
            {
                if (!Managed.Contains(kv.Key)) custom[kv.Key] = kv.Value;
            }
            Custom = custom;
        }

        public string Cid { get; private set; }
        public string Type { get; private set; }
        public string Id { get; private set; }
        public int MemberCount { get; private set; }
        public DateTime? CreatedAt { get; private set; }
        public DateTime? UpdatedAt { get; private set; }
        public DateTime? LastMessageAt { get; private set; }
        /// <summary>Custom fields, as Newtonsoft.Json tokens.</summary>
        public IDictionary<string, JToken> Custom { get; private set; }

        public override string ToString() { return Cid; }
    }

    /// <summary>A channel member: the user id and the (registry) User.</summary>
    public sealed class Member
    {
        internal Member(string userId, User user)
        {
            UserId = userId;
            User = user;
        }

        public string UserId { get; private set; }
        public User User { get; private set; }

        public override string ToString() { return UserId; }
    }

    /// <summary>What watch_channel and query_channels answer for one channel.</summary>
    public sealed class ChannelState
    {
        internal ChannelState(Channel channel, List<Member> members, int watcherCount, List<User> watchers)
        {
            Channel = channel;
            Members = members;
            WatcherCount = watcherCount;
            Watchers = watchers;
        }

        public Channel Channel { get; private set; }
        public IList<Member> Members { get; private set; }
        /// <summary>Distinct visible users watching.</summary>
        public int WatcherCount { get; private set; }
        public IList<User> Watchers { get; private set; }

        public override string ToString()
        {
            return Channel + " (" + Members.Count + " members, " + WatcherCount + " watching)";
        }
    }

    /// <summary>One event, from a listener, a delivery or PollEvents. Built from the
    /// engine's typed event without JSON; <see cref="GetJson"/> renders JSON on request.
    ///
    /// What you may keep: with "dispatch":"manual" (the default), the handlers of
    /// PresenceEngine's own events (UserPresenceChanged ... EventReceived) all receive one
    /// reused PresenceEvent per engine, overwritten by the next event: read it in the
    /// handler, keep its values (strings, User, DateTime) or a <see cref="Clone"/>.
    /// Listeners (AddListener, AddDeliveryListener, EventDelivered,
    /// PresenceConnection.EventReceived) and PollEvents hand out events of their own.</summary>
    public sealed class PresenceEvent
    {
        private readonly PresenceEngine _engine;

        internal PresenceEvent(PresenceEngine engine)
        {
            _engine = engine;
        }

        // Filled by PresenceEngine.FillEvent straight from the native PresenceEventInfo, every
        // field on every event (so a reused event carries nothing over). The native values are
        // kept as they came and converted when a property is read: a pumped event whose
        // handler never reads CreatedAt builds no DateTime.
        /// <summary>Where GetJson finds the native event: the info (a callback's, or in
        /// <see cref="NativeBatch"/> at <see cref="NativeIndex"/>) and the engine generation
        /// it lives in.</summary>
        internal IntPtr NativeInfo;
        internal IntPtr NativeBatch;
        internal uint NativeIndex;
        internal long Generation;
        /// <summary>The PRESENCE_EVENT_* kind.</summary>
        internal uint Kind;
        internal long CreatedAtMs;
        /// <summary>long.MinValue: none.</summary>
        internal long LastActiveMs;
        /// <summary>Negative: none.</summary>
        internal long WatcherCountValue;
        /// <summary>The PRESENCE_CLOSE_* reason; 0 for events other than connection.closed.</summary>
        internal uint CloseReason;
        internal ulong ClosedConnection;

        /// <summary>A copy to keep: the handlers of PresenceEngine's events receive one
        /// reused PresenceEvent, overwritten by the next event. The copy's GetJson() works
        /// as long as the original's would.</summary>
        public PresenceEvent Clone()
        {
            return (PresenceEvent)MemberwiseClone();
        }

        /// <summary>"user.presence.changed", ... (see <see cref="EventTypes"/>).</summary>
        public string Type { get { return EventTypes.Name(Kind); } }
        /// <summary>Engine-wide, strictly increasing.</summary>
        public ulong Seq { get; internal set; }
        /// <summary>When the event happened (UTC).</summary>
        public DateTime CreatedAt { get { return UnixTime.ToDateTime(CreatedAtMs); } }
        /// <summary>The recipient connection; 0 for host listeners.</summary>
        public ulong ConnectionId { get; internal set; }
        /// <summary>The user the event is about, or null.</summary>
        public string UserId { get; internal set; }
        /// <summary>The channel, or null.</summary>
        public string Cid { get; internal set; }
        /// <summary>The user's online flag as others see it (invisible folded in).</summary>
        public bool Online { get; internal set; }
        /// <summary>The user's last_active in this event, or null.</summary>
        public DateTime? LastActive { get { return UnixTime.ToNullable(LastActiveMs); } }
        /// <summary>The registry User the event is about, or null.</summary>
        public User User { get; internal set; }
        /// <summary>member.added / member.removed: the member.</summary>
        public Member Member { get; internal set; }
        /// <summary>The channel's type (the part of Cid before ':'), or null.</summary>
        public string ChannelType { get { return Cid == null ? null : Cid.Substring(0, Cid.IndexOf(':')); } }
        /// <summary>The channel's id (the part of Cid after ':'), or null.</summary>
        public string ChannelId { get { return Cid == null ? null : Cid.Substring(Cid.IndexOf(':') + 1); } }
        /// <summary>user.watching.*: the channel's watcher count after the change.</summary>
        public int? WatcherCount { get { return WatcherCountValue >= 0 ? (int?)(int)WatcherCountValue : null; } }
        /// <summary>connection.closed: the connection that ended.</summary>
        public ulong? ClosedConnectionId { get { return CloseReason != 0 ? (ulong?)ClosedConnection : null; } }
        /// <summary>connection.closed: "disconnect", "timeout", "slow_consumer", "node_lost".</summary>
        public string Reason { get { return EventTypes.CloseReasonName(CloseReason); } }

        /// <summary>The whole event as JSON, rendered now. Only inside the handler that
        /// received the event, or for a polled event until the next PollEvents; otherwise
        /// InvalidOperationException.</summary>
        public string GetJson()
        {
            return _engine.EventJson(NativeInfo, NativeBatch, NativeIndex, Generation);
        }

        public override string ToString()
        {
            return "#" + Seq + " " + Type + (UserId != null ? " " + UserId : "") + (Cid != null ? " " + Cid : "");
        }
    }

    /// <summary>The engine's JSON through Newtonsoft.Json, and typed reads of parsed objects.</summary>
    internal static class JsonValue
    {
        private static readonly string[] TimeFormats =
        {
            "yyyy-MM-dd'T'HH:mm:ss.FFFFFFFK",
            "yyyy-MM-dd'T'HH:mm:ssK",
        };

        /// <summary>Parse a JSON text, keeping timestamps as the strings the engine wrote.</summary>
        internal static JToken Parse(string json)
        {
            using (var reader = new JsonTextReader(new StringReader(json)))
            {
                reader.DateParseHandling = DateParseHandling.None;
                reader.FloatParseHandling = FloatParseHandling.Double;
                JToken token = JToken.ReadFrom(reader);
                if (reader.Read()) throw new JsonReaderException("trailing characters after the JSON value");
                return token;
            }
        }

        /// <summary>Parse a JSON object.</summary>
        internal static JObject ParseObject(string json)
        {
            var obj = Parse(json) as JObject;
            if (obj == null) throw new JsonReaderException("expected a JSON object");
            return obj;
        }

        /// <summary>Compact JSON text of a value (strings, numbers, bools, lists, dictionaries, tokens).</summary>
        internal static string Serialize(object value)
        {
            return JsonConvert.SerializeObject(value, Formatting.None);
        }

        internal static string Compact(JToken token)
        {
            return token.ToString(Formatting.None);
        }

        internal static string String(JObject d, string key)
        {
            JToken v;
            return d != null && d.TryGetValue(key, out v) && v.Type == JTokenType.String ? (string)v : null;
        }

        internal static bool Bool(JObject d, string key)
        {
            JToken v;
            return d != null && d.TryGetValue(key, out v) && v.Type == JTokenType.Boolean && (bool)v;
        }

        internal static long Long(JObject d, string key)
        {
            long? v = NullableLong(d, key);
            return v.HasValue ? v.Value : 0;
        }

        internal static long? NullableLong(JObject d, string key)
        {
            JToken v;
            if (d == null || !d.TryGetValue(key, out v)) return null;
            if (v.Type == JTokenType.Integer || v.Type == JTokenType.Float) return (long)v;
            return null;
        }

        internal static ulong? NullableULong(JObject d, string key)
        {
            JToken v;
            if (d == null || !d.TryGetValue(key, out v)) return null;
            if (v.Type == JTokenType.Integer || v.Type == JTokenType.Float) return (ulong)v;
            return null;
        }

        internal static JObject Object(JObject d, string key)
        {
            JToken v;
            return d != null && d.TryGetValue(key, out v) ? v as JObject : null;
        }

        internal static JArray Array(JObject d, string key)
        {
            JToken v;
            return d != null && d.TryGetValue(key, out v) ? v as JArray : null;
        }

        internal static DateTime? Time(JObject d, string key)
        {
            return ParseTime(String(d, key));
        }

        /// <summary>RFC 3339 ("2019-01-07T13:17:42.375Z") to a UTC DateTime.</summary>
        internal static DateTime? ParseTime(string s)
        {
            if (string.IsNullOrEmpty(s)) return null;
            DateTime t;
            if (DateTime.TryParseExact(s, TimeFormats, CultureInfo.InvariantCulture,
                    DateTimeStyles.AdjustToUniversal | DateTimeStyles.AssumeUniversal, out t))
                return DateTime.SpecifyKind(t, DateTimeKind.Utc);
            if (DateTime.TryParse(s, CultureInfo.InvariantCulture,
                    DateTimeStyles.AdjustToUniversal | DateTimeStyles.AssumeUniversal, out t))
                return DateTime.SpecifyKind(t, DateTimeKind.Utc);
            return null;
        }
    }
}
