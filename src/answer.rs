//! Answers to reads (`get_user`, `watch_channel`, queries) as plain values taken under
//! the lock and serialized after it is released, straight into the output string.
//! [`Answer`] is the one step that renders any of them as JSON.
use crate::event::Member;
use crate::shared_str::SharedStr;
use crate::time::{Millis, Timestamp};
use crate::user::{CustomFields, UserSnapshot, UserView, View};
use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::Value;
use std::sync::Arc;

/// JSON rendering of a read's answer, the same for every answer: the text the C ABI
/// hands out, or a [`Value`] to inspect. Cost: O(size of the answer).
pub trait Answer: Serialize {
    /// The answer as JSON text.
    fn to_json(&self) -> String {
        serde_json::to_string(self).expect("answers always serialize")
    }

    /// The answer as a JSON value.
    fn to_value(&self) -> Value {
        serde_json::to_value(self).expect("answers always serialize")
    }
}

impl Answer for ViewedUser {}
impl Answer for ChannelState {}
impl Answer for UsersAnswer {}
impl Answer for ChannelsAnswer {}

/// A user as one viewer is entitled to see them.
#[derive(Debug, Clone)]
pub struct ViewedUser {
    /// The user at the moment of the answer.
    pub user: Arc<UserSnapshot>,
    /// The view the viewer is entitled to: own for the user's own connections and the
    /// host, public for everyone else.
    pub view: View,
}

impl Serialize for ViewedUser {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        UserView { user: &self.user, view: self.view }.serialize(s)
    }
}

/// A channel's own fields: `cid`, `type`, `id`, `member_count`, `created_at`,
/// `updated_at`, `last_message_at` (when set), then custom fields.
#[derive(Debug, Clone)]
pub struct ChannelSnapshot {
    /// `type:id`.
    pub cid: SharedStr,
    /// The length in bytes of the `type` part of `cid`.
    pub type_len: usize,
    /// How many users are members.
    pub member_count: usize,
    /// When the channel was created (Unix milliseconds).
    pub created_at: Millis,
    /// When the channel's fields or members last changed (Unix milliseconds).
    pub updated_at: Millis,
    /// The host-set time of the channel's last message, used for sorting; `None` if never set.
    pub last_message_at: Option<Millis>,
    /// Custom fields in insertion order; `None` when there are none.
    pub custom: Option<Arc<CustomFields>>,
}

impl Serialize for ChannelSnapshot {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        self.serialize_fields(&mut m)?;
        m.end()
    }
}

impl ChannelSnapshot {
    /// Writes the channel's fields into a map being serialized, so a caller can add more.
    pub(crate) fn serialize_fields<M: SerializeMap>(&self, m: &mut M) -> Result<(), M::Error> {
        m.serialize_entry("cid", &*self.cid)?;
        m.serialize_entry("type", &self.cid[..self.type_len])?;
        m.serialize_entry("id", &self.cid[self.type_len + 1..])?;
        m.serialize_entry("member_count", &self.member_count)?;
        m.serialize_entry("created_at", &Timestamp(self.created_at))?;
        m.serialize_entry("updated_at", &Timestamp(self.updated_at))?;
        if let Some(t) = self.last_message_at {
            m.serialize_entry("last_message_at", &Timestamp(t))?;
        }
        for (k, v) in self.custom.iter().flat_map(|c| c.iter()) {
            m.serialize_entry(k, v)?;
        }
        Ok(())
    }
}

/// `{"channel", "members": [{"user_id", "user"}], "watcher_count", "watchers"}`.
#[derive(Debug, Clone)]
pub struct ChannelState {
    /// The channel's own fields.
    pub channel: ChannelSnapshot,
    /// Sorted by user id.
    pub members: Vec<ViewedUser>,
    /// Distinct visible users watching the channel (invisible users are never counted).
    pub watcher_count: u32,
    /// Distinct visible watching users, sorted by id.
    pub watchers: Vec<ViewedUser>,
}

impl Serialize for ChannelState {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        struct Members<'a>(&'a [ViewedUser]);
        impl Serialize for Members<'_> {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_seq(self.0.iter().map(|m| Member(UserView { user: &m.user, view: m.view })))
            }
        }
        let mut m = s.serialize_map(Some(4))?;
        m.serialize_entry("channel", &self.channel)?;
        m.serialize_entry("members", &Members(&self.members))?;
        m.serialize_entry("watcher_count", &self.watcher_count)?;
        m.serialize_entry("watchers", &self.watchers)?;
        m.end()
    }
}

/// `{"users": [...]}`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct UsersAnswer {
    /// The page of matching users, in the query's sort order.
    pub users: Vec<ViewedUser>,
}

/// `{"channels": [state, ...]}`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ChannelsAnswer {
    /// The page of matching channels, in the query's sort order.
    pub channels: Vec<ChannelState>,
}
