//! Events: cheap shared values, rendered to JSON only when a consumer asks.
use crate::shared_str::SharedStr;
use crate::time::{Millis, Timestamp};
use crate::user::{UserSnapshot, UserView, View};
use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::Value;
use std::ffi::CStr;
use std::fmt;
use std::sync::{Arc, OnceLock};

/// An engine-assigned connection id; never 0 (0 means "the host"), never reused.
/// (Transparent: the C ABI reads a host's array of ids as ids in place.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(transparent)]
pub struct ConnectionId(pub u64);

impl fmt::Display for ConnectionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The one list of close reasons: each reason, its stable number and its wire name.
/// `CloseReason`, its `ALL` and `as_str` come from here; a test checks the bindings'
/// documentation against it.
macro_rules! close_reasons {
    ($($(#[doc = $doc:literal])* $reason:ident = $number:literal, $name:literal;)*) => {
        /// Why a connection ended. `reason as u32` is its stable number.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        #[repr(u32)]
        pub enum CloseReason {
            $($(#[doc = $doc])* $reason = $number,)*
        }

        impl CloseReason {
            /// Every reason, in numeric order.
            pub const ALL: &'static [CloseReason] = &[$(CloseReason::$reason,)*];

            /// The wire name, such as `slow_consumer`.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(CloseReason::$reason => $name,)*
                }
            }
        }
    };
}

close_reasons! {
    /// The host called `disconnect`.
    Disconnect = 1, "disconnect";
    /// No heartbeat within `connection_timeout_ms`.
    Timeout = 2, "timeout";
    /// Its event queue overflowed.
    SlowConsumer = 3, "slow_consumer";
    /// In cluster mode: the node holding it stopped renewing its lease.
    NodeLost = 4, "node_lost";
}

/// The channel an event is about.
#[derive(Debug, Clone, PartialEq)]
pub struct ChannelRef {
    /// `type:id`.
    pub cid: SharedStr,
    type_len: usize,
}

impl ChannelRef {
    pub(crate) fn new(cid: SharedStr, type_len: usize) -> Self {
        ChannelRef { cid, type_len }
    }
    /// The `type` part of the cid.
    pub fn channel_type(&self) -> &str {
        &self.cid[..self.type_len]
    }
    /// The `id` part of the cid.
    pub fn channel_id(&self) -> &str {
        &self.cid[self.type_len + 1..]
    }
}

/// What happened.
#[derive(Debug, Clone, PartialEq)]
pub enum EventKind {
    /// A user's public `online` flipped, or their status changed.
    PresenceChanged {
        /// The user after the change.
        user: UserSnapshot,
    },
    /// A user's custom fields changed.
    UserUpdated {
        /// The user after the change.
        user: UserSnapshot,
    },
    /// A visible user's first connection started watching a channel.
    WatchingStart {
        /// The channel watched.
        channel: ChannelRef,
        /// The user who started watching.
        user: UserSnapshot,
        /// The channel's `watcher_count` after the change.
        watcher_count: u32,
    },
    /// A visible user's last connection stopped watching a channel.
    WatchingStop {
        /// The channel no longer watched.
        channel: ChannelRef,
        /// The user who stopped watching.
        user: UserSnapshot,
        /// The channel's `watcher_count` after the change.
        watcher_count: u32,
    },
    /// A user became a member of a channel.
    MemberAdded {
        /// The channel.
        channel: ChannelRef,
        /// The new member.
        user: UserSnapshot,
    },
    /// A user stopped being a member of a channel.
    MemberRemoved {
        /// The channel.
        channel: ChannelRef,
        /// The former member.
        user: UserSnapshot,
    },
    /// A connection ended; `user` is the owner as it was right after. With reason
    /// `node_lost` the connection was another node's (its id is that node's).
    ConnectionClosed {
        /// The connection that ended.
        connection: ConnectionId,
        /// Its user.
        user: UserSnapshot,
        /// Why it ended.
        reason: CloseReason,
    },
    /// Host deliveries waiting for dispatch passed `pending_dispatch_capacity`; the
    /// oldest `dropped` were discarded. Host listeners only; its `seq` is that of the
    /// newest discarded event, so each listener's stream stays in `seq` order.
    EngineOverflow {
        /// How many host deliveries were discarded.
        dropped: u64,
    },
    /// Cluster mode, host listeners only: the link to the shared store went `up` or
    /// `down`, or this node was declared dead and re-announced itself (`fenced`).
    ClusterStatus {
        /// `up`, `down` or `fenced`.
        status: &'static str,
        /// This node's `node_id`.
        node_id: Arc<str>,
    },
}

/// The one list of event types: each `EventKind` variant, its stable number and its wire
/// name. `EventKind::TYPES`, `type_name` and `type_number` come from here (a variant missing
/// from the list does not build); a test checks the bindings' lists against it.
macro_rules! event_types {
    ($($kind:ident = $number:literal, $name:literal;)*) => {
        impl EventKind {
            /// Every event type as (stable number, wire name), in numeric order.
            pub const TYPES: &'static [(u32, &'static str)] = &[$(($number, $name),)*];

            /// The wire name, such as `user.presence.changed`.
            pub fn type_name(&self) -> &'static str {
                match self {
                    $(EventKind::$kind { .. } => $name,)*
                }
            }

            /// The wire name followed by a NUL, for C callers to borrow.
            pub(crate) fn type_name_nul(&self) -> &'static str {
                match self {
                    $(EventKind::$kind { .. } => concat!($name, "\0"),)*
                }
            }

            /// The stable number of the type: never reused, never 0.
            pub fn type_number(&self) -> u32 {
                match self {
                    $(EventKind::$kind { .. } => $number,)*
                }
            }
        }
    };
}

event_types! {
    PresenceChanged = 1, "user.presence.changed";
    UserUpdated = 2, "user.updated";
    WatchingStart = 3, "user.watching.start";
    WatchingStop = 4, "user.watching.stop";
    MemberAdded = 5, "member.added";
    MemberRemoved = 6, "member.removed";
    ConnectionClosed = 7, "connection.closed";
    EngineOverflow = 8, "engine.overflow";
    ClusterStatus = 9, "cluster.status";
}

/// One event, shared between all its recipients.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// The engine's counter: strictly increasing, in the order the changes happened.
    pub seq: u64,
    /// The engine's time of the change (Unix milliseconds).
    pub created_at: Millis,
    /// What happened, with its payload.
    pub kind: EventKind,
    /// Its JSON in each view, rendered on first request (then shared by every recipient).
    json: JsonCache,
}

/// The event as JSON in one view, without `connection_id`, followed by a NUL so that C
/// callers can borrow it as it is.
pub(crate) struct Rendered {
    /// The JSON text and a trailing NUL (kept as rendered: shrinking would copy it again).
    text: String,
    /// Where a delivery's `"connection_id"` goes: right after the `seq` entry.
    split: usize,
}

impl Rendered {
    fn new(event: &Event, view: View) -> Rendered {
        // Room for a typical event with its NUL, so rendering rarely reallocates.
        let mut bytes = Vec::with_capacity(384);
        serde_json::to_writer(&mut bytes, &EventView { event, view, recipient: None })
            .expect("an event always serializes");
        bytes.push(0);
        let text = String::from_utf8(bytes).expect("serde_json writes UTF-8");
        // `type` and `created_at` come first and never contain `,"seq":`.
        let seq_at = text.find(",\"seq\":").expect("an event renders its seq");
        let split = seq_at + ",\"seq\":".len() + decimal_digits(event.seq);
        Rendered { text, split }
    }

    /// The JSON text.
    pub(crate) fn json(&self) -> &str {
        &self.text[..self.text.len() - 1]
    }

    /// The JSON text as a C string.
    pub(crate) fn c_str(&self) -> &CStr {
        CStr::from_bytes_with_nul(self.text.as_bytes()).expect("JSON escapes NUL, and one ends the text")
    }

    /// Appends the JSON text to `out`, with `"connection_id"` after `seq` when delivered.
    pub(crate) fn write(&self, recipient: Option<ConnectionId>, out: &mut Vec<u8>) {
        let json = self.json().as_bytes();
        match recipient {
            None => out.extend_from_slice(json),
            Some(c) => {
                out.extend_from_slice(&json[..self.split]);
                out.extend_from_slice(b",\"connection_id\":");
                let mut digits = [0u8; 20];
                out.extend_from_slice(format_decimal(c.0, &mut digits));
                out.extend_from_slice(&json[self.split..]);
            }
        }
    }
}

fn decimal_digits(n: u64) -> usize {
    n.checked_ilog10().map_or(1, |d| d as usize + 1)
}

/// `n` in decimal, written into `buf`, without allocating.
fn format_decimal(mut n: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut at = buf.len();
    loop {
        at -= 1;
        buf[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &buf[at..];
        }
    }
}

/// One rendering per view, each made at most once. A clone starts empty and equality
/// ignores it: it is a cache of what the rest of the event determines. The renderings are
/// boxed: typed consumers never ask for one, and unboxed they would add 48 bytes to every
/// event (168 with its user's snapshot and the boxes: one allocation per event costs less
/// than a small event and a separate snapshot did).
#[derive(Default)]
struct JsonCache([OnceLock<Box<Rendered>>; 2]);

impl JsonCache {
    fn get(&self, event: &Event, view: View) -> &Rendered {
        let slot = match view {
            View::Own => &self.0[0],
            View::Public => &self.0[1],
        };
        slot.get_or_init(|| Box::new(Rendered::new(event, view)))
    }
}

impl Clone for JsonCache {
    fn clone(&self) -> Self {
        JsonCache::default()
    }
}

impl PartialEq for JsonCache {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl fmt::Debug for JsonCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("JsonCache")
    }
}

impl Event {
    /// An event; its JSON is rendered later, once per view, when someone asks.
    pub fn new(seq: u64, created_at: Millis, kind: EventKind) -> Event {
        Event { seq, created_at, kind, json: JsonCache::default() }
    }

    /// The event as JSON in `view`, without `connection_id`: rendered on the first call
    /// for that view, shared afterwards. Cost: O(size of the user) once, then O(1).
    pub(crate) fn rendered(&self, view: View) -> &Rendered {
        self.json.get(self, view)
    }

    /// The wire name, such as `user.presence.changed`.
    pub fn type_name(&self) -> &'static str {
        self.kind.type_name()
    }

    /// The user the event is about; `None` only for events about the engine itself
    /// (`engine.overflow`, `cluster.status`), which reach host listeners only: every delivery has a user.
    pub fn user(&self) -> Option<&UserSnapshot> {
        match &self.kind {
            EventKind::PresenceChanged { user }
            | EventKind::UserUpdated { user }
            | EventKind::WatchingStart { user, .. }
            | EventKind::WatchingStop { user, .. }
            | EventKind::MemberAdded { user, .. }
            | EventKind::MemberRemoved { user, .. }
            | EventKind::ConnectionClosed { user, .. } => Some(user),
            EventKind::EngineOverflow { .. } | EventKind::ClusterStatus { .. } => None,
        }
    }

    /// The id of the user the event is about (see [`Event::user`]).
    pub fn user_id(&self) -> Option<&str> {
        self.user().map(|u| &*u.id)
    }

    /// The channel the event is about, if any.
    pub fn channel(&self) -> Option<&ChannelRef> {
        match &self.kind {
            EventKind::WatchingStart { channel, .. }
            | EventKind::WatchingStop { channel, .. }
            | EventKind::MemberAdded { channel, .. }
            | EventKind::MemberRemoved { channel, .. } => Some(channel),
            _ => None,
        }
    }

    /// The whole event as JSON in `view`, with `connection_id` when delivered to a connection.
    /// Cost: O(size of the user).
    pub fn to_value(&self, view: View, recipient: Option<ConnectionId>) -> Value {
        serde_json::to_value(EventView { event: self, view, recipient }).expect("an event always serializes")
    }

    /// [`Event::to_value`] as a string. The JSON of each view is rendered once per event
    /// and shared by every recipient; a delivery's `connection_id` is spliced in. Cost:
    /// O(size of the user) for the first call in a view, then O(length) to copy it.
    pub fn to_json(&self, view: View, recipient: Option<ConnectionId>) -> String {
        let mut out = Vec::new();
        self.rendered(view).write(recipient, &mut out);
        String::from_utf8(out).expect("spliced JSON is UTF-8")
    }
}

/// An event rendered for one recipient: `type`, `created_at`, `seq`, `connection_id` (when
/// delivered), the channel fields, then the payload of its kind.
#[derive(Clone, Copy)]
pub struct EventView<'a> {
    /// The event to render.
    pub event: &'a Event,
    /// The view its user is rendered in.
    pub view: View,
    /// The connection it is delivered to, rendered as `connection_id`; `None` for host
    /// listeners.
    pub recipient: Option<ConnectionId>,
}

impl Serialize for EventView<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let e = self.event;
        let user = |user| UserView { user, view: self.view };
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("type", e.type_name())?;
        m.serialize_entry("created_at", &Timestamp(e.created_at))?;
        m.serialize_entry("seq", &e.seq)?;
        if let Some(c) = self.recipient {
            m.serialize_entry("connection_id", &c.0)?;
        }
        if let Some(ch) = e.channel() {
            m.serialize_entry("cid", &*ch.cid)?;
            m.serialize_entry("channel_type", ch.channel_type())?;
            m.serialize_entry("channel_id", ch.channel_id())?;
        }
        match &e.kind {
            EventKind::PresenceChanged { user: u } | EventKind::UserUpdated { user: u } => {
                m.serialize_entry("user", &user(u))?;
            }
            EventKind::WatchingStart { user: u, watcher_count, .. }
            | EventKind::WatchingStop { user: u, watcher_count, .. } => {
                m.serialize_entry("user", &user(u))?;
                m.serialize_entry("watcher_count", watcher_count)?;
            }
            EventKind::MemberAdded { user: u, .. } | EventKind::MemberRemoved { user: u, .. } => {
                m.serialize_entry("member", &Member(user(u)))?;
            }
            EventKind::ConnectionClosed { connection, user: u, reason } => {
                m.serialize_entry("closed_connection_id", &connection.0)?;
                m.serialize_entry("user_id", &*u.id)?;
                m.serialize_entry("reason", reason.as_str())?;
            }
            EventKind::EngineOverflow { dropped } => {
                m.serialize_entry("dropped", dropped)?;
            }
            EventKind::ClusterStatus { status, node_id } => {
                m.serialize_entry("status", status)?;
                m.serialize_entry("node_id", &**node_id)?;
            }
        }
        m.end()
    }
}

/// `{"user_id", "user"}`: a channel member.
#[derive(Clone, Copy)]
pub struct Member<'a>(pub UserView<'a>);

impl Serialize for Member<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(2))?;
        m.serialize_entry("user_id", &*self.0.user.id)?;
        m.serialize_entry("user", &self.0)?;
        m.end()
    }
}

/// One event delivered to one connection, in the view that connection is entitled to.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The event, shared with its other recipients.
    pub event: Arc<Event>,
    /// The recipient.
    pub connection: ConnectionId,
    /// The view the recipient is entitled to.
    pub view: View,
}

impl Delivery {
    /// The user the delivered event is about: every delivery has one (events about the
    /// engine itself reach host listeners only).
    pub fn user(&self) -> &UserSnapshot {
        self.event.user().expect("deliveries are made of events about a user")
    }
    /// The id of [`Delivery::user`].
    pub fn user_id(&self) -> &str {
        &self.user().id
    }
    /// The user's `online` flag as the recipient sees it.
    pub fn online(&self) -> bool {
        self.user().online(self.view)
    }
    /// The delivered event as JSON, with `connection_id`.
    pub fn to_value(&self) -> Value {
        self.event.to_value(self.view, Some(self.connection))
    }
    /// The delivered event as JSON text, with `connection_id`; see [`Event::to_json`]
    /// for its cost.
    pub fn to_json(&self) -> String {
        self.event.to_json(self.view, Some(self.connection))
    }

    /// Appends [`Delivery::to_json`] to `out`, without allocating once `out` has room.
    pub(crate) fn write_json(&self, out: &mut Vec<u8>) {
        self.event.rendered(self.view).write(Some(self.connection), out);
    }
}

/// A delivery serializes as the event in its recipient's view, with `connection_id`, so a
/// batch of them renders as one JSON array in a single pass.
impl Serialize for Delivery {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        EventView { event: &self.event, view: self.view, recipient: Some(self.connection) }.serialize(s)
    }
}
