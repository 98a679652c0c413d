//! Replication as plain data: what this node changed (deltas for the shared store, in the
//! order the changes happened) and what the store says changed (remote changes, in the
//! order the store applied them). Nothing here knows of Redis, threads or time sources.
use crate::event::ConnectionId;
use crate::time::Millis;
use std::sync::Arc;

/// A shared field of a user as the store keeps it; every value travels as text.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Field {
    /// The status text.
    Status,
    /// `"1"` or `"0"`.
    Invisible,
    /// Decimal Unix milliseconds.
    UpdatedAt,
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
            Field::Custom(name) => format!("f:{name}"),
        }
    }

    /// The field a store name stands for; `None` for names that are not user fields.
    pub fn from_store_name(name: &str) -> Option<Field> {
        match name {
            "s" => Some(Field::Status),
            "i" => Some(Field::Invisible),
            "ua" => Some(Field::UpdatedAt),
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

/// One change this node made to one user: what the store applies atomically in one
/// script call.
#[derive(Debug, Clone, PartialEq)]
pub struct Delta {
    pub user: Arc<str>,
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

impl Delta {
    /// A delta about `user` at `at` that changes nothing yet.
    pub fn new(user: Arc<str>, at: Millis) -> Self {
        Delta { user, at, last_active: None, connection: None, fields: Vec::new(), only_if_absent: false }
    }
}

/// One change to one user as the store ordered it.
#[cfg(feature = "cluster")]
#[derive(Debug, Clone, PartialEq)]
pub struct RemoteChange {
    pub user: Arc<str>,
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
