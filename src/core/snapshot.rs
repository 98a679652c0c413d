//! What a snapshot holds, as plain data: the core hands out users and channels to save and
//! accepts loaded ones entry by entry. The file format lives in `crate::persist`.
use super::channels::channel_snapshot;
use super::{OptMillis, State, UserIdx};
use crate::answer::ChannelSnapshot;
use crate::channel::ChannelPatch;
use crate::config::Config;
use crate::error::{quote, Error, Result};
use crate::time::Millis;
use crate::user::{merge_custom, UserPatch, UserSnapshot};

/// Users and channels to save, taken under the lock: the records' shared parts (ids,
/// status, custom fields) are reference-counted, not copied.
pub(crate) struct Saved {
    /// In creation order.
    pub users: Vec<UserSnapshot>,
    /// In no particular order; the file format sorts them.
    pub channels: Vec<SavedChannel>,
}

pub(crate) struct SavedChannel {
    pub channel: ChannelSnapshot,
    /// Members as positions in `Saved::users`, in no particular order: copying them is a
    /// memcpy, where taking their ids would touch every member's id under the lock.
    pub members: Vec<u32>,
}

/// A saved user: their fields, and the times the engine manages.
pub(crate) struct LoadedUser {
    pub patch: UserPatch,
    pub last_active: Option<Millis>,
    pub created_at: Millis,
    pub updated_at: Millis,
}

/// A saved channel: its fields and members, and the times the engine manages.
pub(crate) struct LoadedChannel {
    pub patch: ChannelPatch,
    pub created_at: Millis,
    pub updated_at: Millis,
}

/// A fresh state being filled with loaded entries; it replaces the users and channels of
/// the engine only once every entry was accepted.
pub(crate) struct Restore(State);

impl Restore {
    /// Adds a user; each id may come once. Cost: O(size of the user).
    pub fn add_user(&mut self, entry: LoadedUser) -> Result<()> {
        let state = &mut self.0;
        let LoadedUser { patch, last_active, created_at, updated_at } = entry;
        if state.find_user(&patch.id).is_some() {
            return Err(Error::invalid(format!("user {} appears twice", quote(&patch.id))));
        }
        let custom = merge_custom("user", None, &patch.custom)?;
        let (u, _) = state.get_or_create_user(&patch.id, created_at);
        state.apply_patch(created_at, u, patch.changes(), custom);
        let record = &mut state.users[u as usize];
        record.last_active = OptMillis::from(last_active);
        record.updated_at = updated_at;
        Ok(())
    }

    /// Adds a channel and its members (creating users named only there); each cid may come
    /// once. Cost: O(size of the channel).
    pub fn add_channel(&mut self, entry: LoadedChannel) -> Result<()> {
        let state = &mut self.0;
        let LoadedChannel { patch, created_at, updated_at } = entry;
        if state.channel_index.contains_key(patch.cid.as_str()) {
            return Err(Error::invalid(format!("channel {} appears twice", quote(&patch.cid))));
        }
        state.upsert_channel(created_at, &patch)?;
        let ch = state.channel_index[patch.cid.as_str()];
        let record = state.channel_mut(ch);
        record.created_at = created_at;
        record.updated_at = updated_at;
        Ok(())
    }
}

impl Restore {
    /// An empty state to fill, with the engine's config. Cost: O(1).
    pub fn new(config: Config) -> Restore {
        let mut fresh = State::new(config);
        fresh.record_events = false;
        fresh.record_deliveries = false;
        Restore(fresh)
    }
}

impl State {
    /// Users and channels to save. Cost: O(users + channels) reference-count increments
    /// and a copy of each channel's member positions; nothing is sorted or rendered here.
    pub fn save(&self) -> Saved {
        let users = self.users.iter().map(|u| u.snapshot()).collect();
        let channels = self
            .channels
            .iter()
            .flatten()
            .map(|ch| SavedChannel { channel: channel_snapshot(ch), members: ch.members.clone() })
            .collect();
        Saved { users, channels }
    }

    /// Replaces every user and channel with those of `restore`; all users start offline.
    /// Allowed only without connections (`STATE`; nothing changes then). A user still inside
    /// the offline grace leaves it first, with the events its expiry would emit, so that
    /// whoever follows events ends with the same view as `get_user`. Cost: O(users in grace
    /// + the size of the replaced state, freed).
    pub fn replace(&mut self, now: Millis, restore: Restore) -> Result<()> {
        if !self.connection_slots.is_empty() {
            return Err(Error::state(format!(
                "load needs an engine without connections; {} are open",
                self.connection_slots.len()
            )));
        }
        for u in 0..self.users.len() as UserIdx {
            if self.users[u as usize].grace_until != OptMillis::NONE {
                let before = self.presence_before(u);
                self.users[u as usize].grace_until = OptMillis::NONE;
                self.user_changed(now, u, before, false);
            }
        }
        let Restore(fresh) = restore;
        self.users = fresh.users;
        // Loaded users are new to the host: keys continue, so none names an earlier user.
        for user in &mut self.users {
            user.key = self.next_user_key;
            self.next_user_key += 1;
        }
        self.user_index = fresh.user_index;
        self.channels = fresh.channels;
        self.free_channels = fresh.free_channels;
        self.channel_index = fresh.channel_index;
        self.timers.clear();
        Ok(())
    }
}
