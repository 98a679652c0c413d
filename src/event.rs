//! Events: cheap shared values, rendered to JSON only when a consumer asks.
use crate::time::{format_millis, Millis};
use crate::user::{UserSnapshot, View};
use serde_json::{Map, Value};
use std::fmt;
use std::sync::Arc;

/// An engine-assigned connection id; never 0 (0 means "the host"), never reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnectionId(pub u64);

impl fmt::Display for ConnectionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Why a connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// The host called `disconnect`.
    Disconnect,
    /// No heartbeat within `connection_timeout_ms`.
    Timeout,
    /// Its event queue overflowed.
    SlowConsumer,
}

impl CloseReason {
    pub fn as_str(self) -> &'static str {
        match self {
            CloseReason::Disconnect => "disconnect",
            CloseReason::Timeout => "timeout",
            CloseReason::SlowConsumer => "slow_consumer",
        }
    }
}

/// The channel an event is about.
#[derive(Debug, Clone, PartialEq)]
pub struct ChannelRef {
    pub cid: Arc<str>,
    type_len: usize,
}

impl ChannelRef {
    pub(crate) fn new(cid: Arc<str>, type_len: usize) -> Self {
        ChannelRef { cid, type_len }
    }
    pub fn channel_type(&self) -> &str {
        &self.cid[..self.type_len]
    }
    pub fn channel_id(&self) -> &str {
        &self.cid[self.type_len + 1..]
    }
}

/// What happened.
#[derive(Debug, Clone, PartialEq)]
pub enum EventKind {
    /// A user's public `online` flipped, or their status changed.
    PresenceChanged { user: Arc<UserSnapshot> },
    /// A user's custom fields changed.
    UserUpdated { user: Arc<UserSnapshot> },
    /// A visible user's first connection started watching a channel.
    WatchingStart {
        channel: ChannelRef,
        user: Arc<UserSnapshot>,
        watcher_count: u32,
    },
    /// A visible user's last connection stopped watching a channel.
    WatchingStop {
        channel: ChannelRef,
        user: Arc<UserSnapshot>,
        watcher_count: u32,
    },
    MemberAdded {
        channel: ChannelRef,
        user: Arc<UserSnapshot>,
    },
    MemberRemoved {
        channel: ChannelRef,
        user: Arc<UserSnapshot>,
    },
    /// A connection ended; `user` is the owner as it was right after.
    ConnectionClosed {
        connection: ConnectionId,
        user: Arc<UserSnapshot>,
        reason: CloseReason,
    },
}

/// One event, shared between all its recipients.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub seq: u64,
    pub created_at: Millis,
    pub kind: EventKind,
}

impl Event {
    /// The wire name, such as `user.presence.changed`.
    pub fn type_name(&self) -> &'static str {
        match &self.kind {
            EventKind::PresenceChanged { .. } => "user.presence.changed",
            EventKind::UserUpdated { .. } => "user.updated",
            EventKind::WatchingStart { .. } => "user.watching.start",
            EventKind::WatchingStop { .. } => "user.watching.stop",
            EventKind::MemberAdded { .. } => "member.added",
            EventKind::MemberRemoved { .. } => "member.removed",
            EventKind::ConnectionClosed { .. } => "connection.closed",
        }
    }

    /// The user the event is about.
    pub fn user(&self) -> &UserSnapshot {
        match &self.kind {
            EventKind::PresenceChanged { user }
            | EventKind::UserUpdated { user }
            | EventKind::WatchingStart { user, .. }
            | EventKind::WatchingStop { user, .. }
            | EventKind::MemberAdded { user, .. }
            | EventKind::MemberRemoved { user, .. }
            | EventKind::ConnectionClosed { user, .. } => user,
        }
    }

    /// The id of the user the event is about.
    pub fn user_id(&self) -> &str {
        &self.user().id
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
        let mut m = Map::new();
        m.insert("type".into(), Value::from(self.type_name()));
        m.insert(
            "created_at".into(),
            Value::String(format_millis(self.created_at)),
        );
        m.insert("seq".into(), Value::from(self.seq));
        if let Some(c) = recipient {
            m.insert("connection_id".into(), Value::from(c.0));
        }
        if let Some(ch) = self.channel() {
            m.insert("cid".into(), Value::from(&*ch.cid));
            m.insert("channel_type".into(), Value::from(ch.channel_type()));
            m.insert("channel_id".into(), Value::from(ch.channel_id()));
        }
        match &self.kind {
            EventKind::PresenceChanged { user } | EventKind::UserUpdated { user } => {
                m.insert("user".into(), user.to_value(view));
            }
            EventKind::WatchingStart {
                user,
                watcher_count,
                ..
            }
            | EventKind::WatchingStop {
                user,
                watcher_count,
                ..
            } => {
                m.insert("user".into(), user.to_value(view));
                m.insert("watcher_count".into(), Value::from(*watcher_count));
            }
            EventKind::MemberAdded { user, .. } | EventKind::MemberRemoved { user, .. } => {
                let mut member = Map::new();
                member.insert("user_id".into(), Value::from(&*user.id));
                member.insert("user".into(), user.to_value(view));
                m.insert("member".into(), Value::Object(member));
            }
            EventKind::ConnectionClosed {
                connection,
                user,
                reason,
            } => {
                m.insert("closed_connection_id".into(), Value::from(connection.0));
                m.insert("user_id".into(), Value::from(&*user.id));
                m.insert("reason".into(), Value::from(reason.as_str()));
            }
        }
        Value::Object(m)
    }

    /// [`Event::to_value`] as a string.
    pub fn to_json(&self, view: View, recipient: Option<ConnectionId>) -> String {
        self.to_value(view, recipient).to_string()
    }
}

/// One event delivered to one connection, in the view that connection is entitled to.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub event: Arc<Event>,
    pub connection: ConnectionId,
    pub view: View,
}

impl Delivery {
    /// The user's `online` flag as the recipient sees it.
    pub fn online(&self) -> bool {
        self.event.user().online(self.view)
    }
    /// The delivered event as JSON, with `connection_id`.
    pub fn to_value(&self) -> Value {
        self.event.to_value(self.view, Some(self.connection))
    }
    pub fn to_json(&self) -> String {
        self.to_value().to_string()
    }
}
