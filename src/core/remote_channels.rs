//! Replication (cluster mode), channels: applying what the store says happened to a
//! channel (changed elsewhere, or this node's own change read back), emitting what one
//! engine would have emitted for it.
//!
//! A node applies its own channel changes at once and reads them back later, so its view
//! can run ahead of the store. Two rules keep it converging: a deletion read from the
//! store ends only the watches of this node the store had then (a watch still on its way
//! re-creates the channel in the store, so the record stays), and a watch such a deletion
//! ended early comes back when the store confirms it.
use super::{ChannelIdx, State, UserIdx};
use crate::channel::parse_cid;
use crate::event::ConnectionId;
use crate::replication::{ChannelChange, ChannelOp, Delta, Field, FieldWrite, RemoteChannel};
use crate::shared_str::SharedStr;
use crate::time::Millis;
use crate::user::CustomFields;
use hashbrown::HashMap;
use serde_json::Value;
use std::sync::Arc;

impl State {
    /// Applies one change to a channel, as the store ordered it: member and watching
    /// events as a local change would emit them; deletions silently, as locally. A change
    /// at or below the version this node holds is already applied. Cost: O(size of the
    /// change × presence watchers); O(members + watchers) for deletions and snapshots.
    pub fn apply_remote_channel(&mut self, now: Millis, change: &RemoteChannel) {
        let Some(ch) = self.remote_channel_target(change) else { return };
        if change.created_at != 0 {
            self.channel_mut(ch).created_at = change.created_at;
        }
        let kept = self.apply_channel_change(now, ch, change);
        if kept {
            // Only a snapshot can lower it: the one this node rebuilds from after the store
            // lost its data.
            self.channel_mut(ch).version = change.version;
        }
        self.settle(now);
    }

    /// The channel a remote change applies to, created if the change creates one; `None`
    /// when it is older than what this node holds, names no channel here, or is not a cid
    /// an engine writes.
    fn remote_channel_target(&mut self, change: &RemoteChannel) -> Option<ChannelIdx> {
        let existing = self.channel_index.get(&*change.cid).copied();
        let whole = matches!(change.change, ChannelChange::Full { .. } | ChannelChange::Absent);
        if existing.is_some_and(|ch| !whole && change.version <= self.channel(ch).version) {
            return None;
        }
        let creates = matches!(
            change.change,
            ChannelChange::Upsert { .. }
                | ChannelChange::Watch { start: true, .. }
                | ChannelChange::OwnWatch { .. }
                | ChannelChange::Full { .. }
        );
        match existing {
            Some(ch) => Some(ch),
            // A cid not written by an engine is ignored.
            None if creates => parse_cid(&change.cid)
                .ok()
                .map(|type_len| self.create_channel(change.created_at, &change.cid, type_len)),
            None => None,
        }
    }

    /// Applies one remote channel change to `ch`; answers whether the channel keeps
    /// existing (and so takes the change's version).
    fn apply_channel_change(&mut self, now: Millis, ch: ChannelIdx, change: &RemoteChannel) -> bool {
        match &change.change {
            ChannelChange::Upsert { fields, added } => {
                self.write_channel_fields(ch, fields);
                for id in added {
                    let (u, _) = self.get_or_create_user(id, now);
                    self.add_member(now, ch, u);
                }
                true
            }
            ChannelChange::Removed(ids) => {
                for id in ids {
                    if let Some(u) = self.find_user(id) {
                        self.remove_member(now, ch, u);
                    }
                }
                true
            }
            ChannelChange::Deleted { own_watchers } => self.clear_channel(ch, |c| own_watchers.contains(&c)),
            ChannelChange::Watch { user, start: true } => {
                let (u, _) = self.get_or_create_user(user, now);
                self.remote_watchers_changed(now, ch, u, 1);
                true
            }
            ChannelChange::Watch { user, start: false } => {
                if let Some(u) = self.find_user(user) {
                    self.remote_watchers_changed(now, ch, u, -1);
                }
                true
            }
            ChannelChange::Lost(users) => {
                for user in users {
                    if let Some(u) = self.find_user(user) {
                        self.remote_watchers_changed(now, ch, u, -1);
                    }
                }
                true
            }
            ChannelChange::OwnWatch { connection } => {
                self.restore_watch(now, ch, *connection);
                true
            }
            ChannelChange::Full { fields, members, watchers, own_watchers } => {
                self.replace_channel(now, ch, fields, members, watchers);
                let pending = self.watches_on_their_way(&change.cid);
                self.drop_own_watchers(ch, |c| !own_watchers.contains(&c) && !pending.contains(&c));
                true
            }
            ChannelChange::Absent => {
                let pending = self.watches_on_their_way(&change.cid);
                self.clear_channel(ch, |c| !pending.contains(&c))
            }
        }
    }

    /// Writes shared fields of channel `ch` as the store holds them. O(fields).
    fn write_channel_fields(&mut self, ch: ChannelIdx, fields: &[FieldWrite]) {
        let channel = self.channel_mut(ch);
        let mut custom = channel.custom.as_deref().cloned().unwrap_or_default();
        let mut custom_written = false;
        for (field, value) in fields {
            match field {
                Field::LastMessageAt => {
                    channel.last_message_at = value.as_deref().and_then(|v| v.parse().ok())
                }
                Field::UpdatedAt => {
                    if let Some(t) = value.as_deref().and_then(|v| v.parse().ok()) {
                        channel.updated_at = t;
                    }
                }
                Field::Custom(name) => {
                    custom_written = true;
                    match value.as_deref().map(serde_json::from_str::<Value>) {
                        Some(Ok(v)) => {
                            custom.insert(name.clone(), v);
                        }
                        // A value that is not JSON was not written by an engine: ignore it.
                        Some(Err(_)) => {}
                        None => {
                            custom.shift_remove(name);
                        }
                    }
                }
                Field::Status | Field::Invisible => {}
            }
        }
        if custom_written {
            channel.custom = (!custom.is_empty()).then(|| Arc::new(custom as CustomFields));
        }
    }

    /// Makes channel `ch` what a snapshot says, with member and watching events for the
    /// differences. O(members + watchers).
    fn replace_channel(
        &mut self,
        now: Millis,
        ch: ChannelIdx,
        fields: &[FieldWrite],
        members: &[SharedStr],
        watchers: &[SharedStr],
    ) {
        let channel = self.channel_mut(ch);
        channel.custom = None;
        channel.last_message_at = None;
        self.write_channel_fields(ch, fields);
        let wanted: Vec<UserIdx> = members.iter().map(|id| self.get_or_create_user(id, now).0).collect();
        let gone: Vec<UserIdx> =
            self.channel(ch).members.iter().copied().filter(|u| !wanted.contains(u)).collect();
        for u in gone {
            self.remove_member(now, ch, u);
        }
        for u in wanted {
            self.add_member(now, ch, u);
        }
        let mut want: HashMap<UserIdx, i64> = HashMap::new();
        for id in watchers {
            *want.entry(self.get_or_create_user(id, now).0).or_default() += 1;
        }
        for (u, n) in self.remote_watchers_of(ch) {
            *want.entry(u).or_default() -= i64::from(n);
        }
        for (u, by) in want {
            self.remote_watchers_changed(now, ch, u, by);
        }
    }

    /// The users watching channel `ch` from other nodes, with their watching connections.
    /// O(users watching).
    fn remote_watchers_of(&self, ch: ChannelIdx) -> Vec<(UserIdx, u32)> {
        let watching = self.channel(ch).watching_users.keys();
        watching
            .filter_map(|u| self.remote_watched.get(u).and_then(|chs| chs.get(&ch)).map(|&n| (*u, n)))
            .collect()
    }

    /// Adds (`by` > 0) or removes watching connections of user `u` on other nodes, one
    /// event-emitting step at a time; never below none. O(|by|).
    fn remote_watchers_changed(&mut self, now: Millis, ch: ChannelIdx, u: UserIdx, by: i64) {
        for _ in 0..by.max(0) {
            *self.remote_watched.entry(u).or_default().entry(ch).or_insert(0) += 1;
            self.watcher_added(now, ch, u);
        }
        for _ in 0..(-by).max(0) {
            let Some(chs) = self.remote_watched.get_mut(&u) else { return };
            let Some(n) = chs.get_mut(&ch) else { return };
            *n -= 1;
            if *n == 0 {
                chs.remove(&ch);
                if chs.is_empty() {
                    self.remote_watched.remove(&u);
                }
            }
            self.watcher_removed(now, ch, u);
        }
    }

    /// This node's watch of `connection`, confirmed by the store after a deletion read
    /// earlier ended it here: it watches again (without presence if presence no longer
    /// fits its subscription limit). O(members).
    fn restore_watch(&mut self, now: Millis, ch: ChannelIdx, connection: ConnectionId) {
        let key = (connection, self.channel(ch).cid.clone());
        let Some(presence) = self.dropped_watches.remove(&key) else { return };
        let Ok(c) = self.slot(connection) else { return };
        // The store has this watch already.
        let replication = self.replication.take();
        if self.watch(now, c, ch, presence).is_err() {
            let _ = self.watch(now, c, ch, false);
        }
        self.replication = replication;
    }

    /// This node's connections whose watch of `cid` waits in the outbox. O(outbox).
    fn watches_on_their_way(&self, cid: &str) -> Vec<ConnectionId> {
        let deltas = self.replication.iter().flatten();
        deltas
            .filter_map(|d| match d {
                Delta::Channel(d) if &*d.cid == cid => match d.op {
                    ChannelOp::Watch { connection, start: true, .. } => Some(connection),
                    _ => None,
                },
                _ => None,
            })
            .collect()
    }

    /// Ends, silently, the watches of this node's connections that `drop` names (the store
    /// no longer has them), remembering them so a later confirmation restores them.
    /// O(watchers + members × presence watchers dropped).
    fn drop_own_watchers(&mut self, ch: ChannelIdx, drop: impl Fn(ConnectionId) -> bool) {
        let cid = self.channel(ch).cid.clone();
        let dropped: Vec<_> = self
            .channel(ch)
            .watchers
            .iter()
            .filter(|(&c, _)| drop(self.conn(c).id))
            .map(|(&c, &w)| (c, w))
            .collect();
        for (c, watcher) in dropped {
            self.channel_mut(ch).watchers.remove(&c);
            self.remove_watching(c, watcher.pos);
            if watcher.presence {
                for m in self.channel(ch).members.clone() {
                    self.unsubscribe(c, m, false);
                }
            }
            let (id, u) = (self.conn(c).id, self.conn(c).user);
            self.dropped_watches.insert((id, cid.clone()), watcher.presence);
            self.uncount_watchers(ch, u, 1);
        }
        self.recount_visible_watchers(ch);
    }

    /// Forgets `n` watching connections of user `u` on other nodes, without events.
    fn remote_watchers_changed_silently(&mut self, ch: ChannelIdx, u: UserIdx, n: u32) {
        if let Some(chs) = self.remote_watched.get_mut(&u) {
            chs.remove(&ch);
            if chs.is_empty() {
                self.remote_watched.remove(&u);
            }
        }
        self.uncount_watchers(ch, u, n);
    }

    /// Lowers user `u`'s watching connections on channel `ch` by `n` without events.
    fn uncount_watchers(&mut self, ch: ChannelIdx, u: UserIdx, n: u32) {
        let counts = &mut self.channel_mut(ch).watching_users;
        if let Some(count) = counts.get_mut(&u) {
            *count = count.saturating_sub(n);
            if *count == 0 {
                counts.remove(&u);
            }
        }
    }

    fn recount_visible_watchers(&mut self, ch: ChannelIdx) {
        let channel = self.channels[ch as usize].as_ref().expect("live channel");
        let visible =
            channel.watching_users.keys().filter(|&&u| !self.users[u as usize].invisible).count() as u32;
        self.channel_mut(ch).visible_watchers = visible;
    }

    /// The store deleted channel `ch`: its fields, members and other nodes' watchers go
    /// silently (as with a local deletion), and so do this node's watches that `drop` names.
    /// The record stays while other watches of this node remain (their confirmation, still
    /// on its way, re-creates the channel in the store). Answers whether it stays.
    /// O(members × presence watchers + watchers).
    fn clear_channel(&mut self, ch: ChannelIdx, drop: impl Fn(ConnectionId) -> bool) -> bool {
        self.drop_own_watchers(ch, drop);
        for (u, n) in self.remote_watchers_of(ch) {
            self.remote_watchers_changed_silently(ch, u, n);
        }
        let channel = self.channel_mut(ch);
        channel.custom = None;
        channel.last_message_at = None;
        for u in channel.members.clone() {
            self.remove_member_silently(ch, u);
        }
        if self.channel(ch).watchers.is_empty() {
            let record = self.channels[ch as usize].take().expect("live channel");
            self.channel_index.remove(&record.cid);
            self.free_channels.push(ch);
            return false;
        }
        self.recount_visible_watchers(ch);
        true
    }
}
