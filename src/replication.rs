//! Replication as plain data: what this node changed (deltas for the shared store, in the
//! order the changes happened) and what the store says changed (remote changes, in the
//! order the store applied them). Nothing here knows of Redis, threads or time sources.
use crate::event::ConnectionId;
use crate::shared_str::SharedStr;
use crate::time::Millis;

/// A shared field of a user as the store keeps it; every value travels as text.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Field {
    /// The status text.
    Status,
    /// `"1"` or `"0"`.
    Invisible,
    /// Decimal Unix milliseconds.
    UpdatedAt,
    /// A channel's `last_message_at`: decimal Unix milliseconds.
    LastMessageAt,
    /// A custom field; its value is compact JSON.
    Custom(String),
}

#[cfg(feature = "cluster")]
impl Field {
    /// The name of the field in the store (`s`, `i`, `ua`, `f:<name>`).
    pub fn store_name(&self) -> String {
        match self {
            Field::Status => "s".into(),
            Field::Invisible => "i".into(),
            Field::UpdatedAt => "ua".into(),
            Field::LastMessageAt => "lm".into(),
            Field::Custom(name) => format!("f:{name}"),
        }
    }

    /// The field a store name stands for; `None` for names that are not user fields.
    pub fn from_store_name(name: &str) -> Option<Field> {
        match name {
            "s" => Some(Field::Status),
            "i" => Some(Field::Invisible),
            "ua" => Some(Field::UpdatedAt),
            "lm" => Some(Field::LastMessageAt),
            _ => name.strip_prefix("f:").map(|n| Field::Custom(n.to_string())),
        }
    }
}

/// One field written: `Some(text)` sets it, `None` removes it.
pub type FieldWrite = (Field, Option<String>);

/// A connection of this node that opened or closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionChange {
    Opened(ConnectionId),
    Closed(ConnectionId),
}

/// One change this node made, to one user or one channel: what the store applies
/// atomically in one script call.
#[derive(Debug, Clone, PartialEq)]
pub enum Delta {
    User(UserDelta),
    Channel(ChannelDelta),
}

/// One change this node made to one user.
#[derive(Debug, Clone, PartialEq)]
pub struct UserDelta {
    pub user: SharedStr,
    /// When the change happened (the user's `created_at` if the store does not know them).
    pub at: Millis,
    /// The user's `last_active` after the change, when the change set it; the store keeps
    /// the latest any node set.
    pub last_active: Option<Millis>,
    pub connection: Option<ConnectionChange>,
    pub fields: Vec<FieldWrite>,
    /// Write the fields only if the store does not know the user (re-announcing after
    /// the store lost its data: the first node to re-announce a user wins).
    pub only_if_absent: bool,
}

impl UserDelta {
    /// A delta about `user` at `at` that changes nothing yet.
    pub fn new(user: SharedStr, at: Millis) -> Self {
        UserDelta { user, at, last_active: None, connection: None, fields: Vec::new(), only_if_absent: false }
    }
}

/// One change this node made to one channel.
#[derive(Debug, Clone, PartialEq)]
pub struct ChannelDelta {
    pub cid: SharedStr,
    /// When the change happened (the channel's `created_at` if it creates the channel).
    pub at: Millis,
    pub op: ChannelOp,
}

/// What a [`ChannelDelta`] does in the store.
#[derive(Debug, Clone, PartialEq)]
pub enum ChannelOp {
    /// Creates the channel if the store lacks it, writes `fields` (custom fields,
    /// `last_message_at`, `updated_at`) and adds `members`. With `only_if_absent` nothing
    /// happens where the store has the channel (re-announcing after the store lost data).
    Upsert { fields: Vec<FieldWrite>, members: Vec<SharedStr>, only_if_absent: bool },
    /// Removes members; nothing where the store lacks the channel.
    RemoveMembers(Vec<SharedStr>),
    /// Deletes the channel with its members and watchers.
    Delete,
    /// A connection of this node (of `user`) started or stopped watching. A start where
    /// the store lacks the channel (deleted elsewhere meanwhile) creates it empty: this
    /// node's connection still watches it.
    Watch { connection: ConnectionId, user: SharedStr, start: bool },
}

/// One change made elsewhere, as the store ordered it.
#[cfg(feature = "cluster")]
#[derive(Debug, Clone, PartialEq)]
pub enum Remote {
    User(RemoteChange),
    Channel(RemoteChannel),
}

/// One change to one channel as the store ordered it.
#[cfg(feature = "cluster")]
#[derive(Debug, Clone, PartialEq)]
pub struct RemoteChannel {
    pub cid: SharedStr,
    /// The shard's sequence number of the change (channel versions are those numbers, so
    /// they keep increasing when a channel is deleted and created again).
    pub version: u64,
    pub created_at: Millis,
    pub change: ChannelChange,
}

/// What happened to a channel, as [`RemoteChannel`] carries it.
#[cfg(feature = "cluster")]
#[derive(Debug, Clone, PartialEq)]
pub enum ChannelChange {
    /// Created or merged: fields written, members added.
    Upsert {
        fields: Vec<FieldWrite>,
        added: Vec<SharedStr>,
    },
    Removed(Vec<SharedStr>),
    /// Deleted; `own_watchers` are this node's connections that watched it in the store then.
    Deleted {
        own_watchers: Vec<ConnectionId>,
    },
    /// A connection of another node (of `user`) started or stopped watching.
    Watch {
        user: SharedStr,
        start: bool,
    },
    /// A connection of this node started watching, as this node wrote it.
    OwnWatch {
        connection: ConnectionId,
    },
    /// Watchers that went with a dead node: the user of each lost connection.
    Lost(Vec<SharedStr>),
    /// The whole channel from a snapshot: every field, every member, the user of each
    /// watching connection of other nodes, and this node's watching connections.
    Full {
        fields: Vec<FieldWrite>,
        members: Vec<SharedStr>,
        watchers: Vec<SharedStr>,
        own_watchers: Vec<ConnectionId>,
    },
    /// A snapshot of the channel's shard does not have it.
    Absent,
}

/// One change to one user as the store ordered it.
#[cfg(feature = "cluster")]
#[derive(Debug, Clone, PartialEq)]
pub struct RemoteChange {
    pub user: SharedStr,
    /// The user's version in the store after the change; versions of one user strictly
    /// increase, so a change at or below the version a node holds is already applied.
    pub version: u64,
    pub created_at: Millis,
    pub last_active: Option<Millis>,
    /// Fields written by the change; with `full`, every shared field the user has.
    pub fields: Vec<FieldWrite>,
    /// `fields` is the whole user (a snapshot): fields not named are removed.
    pub full: bool,
    /// Live connections the user holds on other nodes after the change.
    pub remote_connections: u32,
    /// Connections of a dead node that this change closed (reason `node_lost`).
    pub lost: Vec<ConnectionId>,
}
