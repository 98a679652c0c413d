//! Watching channels: which connections watch which channel (with or without presence
//! subscriptions to its members), the visible watcher count, the watching events, and the
//! channel state a watcher is shown.
use super::channels::channel_snapshot;
use super::{ChannelIdx, Recipients, Slot, State, UserIdx, Viewer, Watcher};
use crate::answer::ChannelState;
use crate::error::Result;
use crate::event::{ConnectionId, EventKind};
use crate::time::Millis;

impl State {
    /// Makes connection `c` watch a channel, with presence subscriptions to its members when
    /// `presence`. Watching again is idempotent (it can add presence, never remove it).
    /// Answers the channel state when `render`. Emits `user.watching.start` when this is
    /// the user's first connection watching and the user is visible.
    /// Cost: O(members) with presence or render, O(1) otherwise.
    pub fn watch_channel(
        &mut self,
        now: Millis,
        c: ConnectionId,
        cid: &str,
        presence: bool,
        render: bool,
    ) -> Result<Option<ChannelState>> {
        let ch = self.channel_idx(cid)?;
        let c = self.slot(c)?;
        let u = self.conn(c).user;
        self.watch(now, c, ch, presence)?;
        self.settle(now);
        // The watcher may have been closed as a slow consumer while settling.
        Ok(render.then(|| {
            let viewer = Viewer::Connection(c, u);
            self.channel_state(viewer, ch)
        }))
    }

    /// Fails when watching channel `ch` with presence would take `c` past
    /// `max_subscriptions_per_connection`.
    fn check_watch_limit(&self, c: Slot, ch: ChannelIdx) -> Result<()> {
        let members = &self.channel(ch).members;
        let have = self.conn(c).subscriptions.len();
        // Counting only matters when the limit could be reached.
        let added = if have + members.len() <= self.config.max_subscriptions_per_connection as usize {
            0
        } else {
            self.new_distinct_subscriptions(c, members.iter().copied())
        };
        self.check_subscription_limit(c, added)
    }

    pub(super) fn watch(&mut self, now: Millis, c: Slot, ch: ChannelIdx, presence: bool) -> Result<()> {
        let was = self.channel(ch).watchers.get(&c).map(|w| w.presence);
        if presence && was != Some(true) {
            self.check_watch_limit(c, ch)?;
        }
        match was {
            Some(true) => return Ok(()),
            Some(false) if !presence => return Ok(()),
            Some(false) => {
                if let Some(w) = self.channel_mut(ch).watchers.get_mut(&c) {
                    w.presence = true;
                }
            }
            None => self.start_watching(now, c, ch, presence),
        }
        if presence {
            let members = self.channel(ch).members.clone();
            for m in members {
                self.subscribe(c, m, false);
            }
        }
        Ok(())
    }

    /// Records a new watcher; the user's first watching connection counts them as a
    /// watcher and, when visible, emits `user.watching.start`. O(1).
    fn start_watching(&mut self, now: Millis, c: Slot, ch: ChannelIdx, presence: bool) {
        let u = self.conn(c).user;
        let pos = self.conn(c).watching.len() as u32;
        self.channel_mut(ch).watchers.insert(c, Watcher { presence, pos });
        self.conn_mut(c).watching.push(ch);
        self.forget_dropped_watch(c, ch, false);
        let (connection, cid) = (self.conn(c).id, self.channel(ch).cid.clone());
        self.replicate_watch(&cid, now, connection, u, true);
        self.watcher_added(now, ch, u);
    }

    /// Cluster mode: connection `c` now watches channel `ch` again, or stops watching it,
    /// by its own command, so a watch a deletion ended (see `dropped_watches`) must not come
    /// back; a stop is also sent, as the store may still hold the watch. O(1).
    fn forget_dropped_watch(&mut self, c: Slot, ch: ChannelIdx, stop: bool) {
        if self.dropped_watches.is_empty() {
            return;
        }
        let (connection, u, cid) = (self.conn(c).id, self.conn(c).user, self.channel(ch).cid.clone());
        if self.dropped_watches.remove(&(connection, cid.clone())).is_some() && stop {
            self.replicate_watch(&cid, 0, connection, u, false);
        }
    }

    /// One more connection of user `u` (on this node or another) watches channel `ch`: the
    /// user's first counts them as a watcher and, when visible, emits `user.watching.start`.
    /// O(1).
    pub(super) fn watcher_added(&mut self, now: Millis, ch: ChannelIdx, u: UserIdx) {
        let visible = !self.users[u as usize].invisible;
        let channel = self.channel_mut(ch);
        let count = channel.watching_users.entry(u).or_insert(0);
        *count += 1;
        if *count == 1 && visible {
            channel.visible_watchers += 1;
            self.emit_watching(now, ch, u, true);
        }
    }

    /// One connection of user `u` (on this node or another) no longer watches channel `ch`:
    /// the user's last stops counting and, when visible, emits `user.watching.stop`. O(1).
    pub(super) fn watcher_removed(&mut self, now: Millis, ch: ChannelIdx, u: UserIdx) {
        let visible = !self.users[u as usize].invisible;
        let channel = self.channel_mut(ch);
        let count = channel.watching_users.get_mut(&u).expect("watcher counted");
        *count -= 1;
        if *count == 0 {
            channel.watching_users.remove(&u);
            if visible {
                channel.visible_watchers -= 1;
                self.emit_watching(now, ch, u, false);
            }
        }
    }

    /// Emits `user.watching.start` (or `stop`) of user `u` in channel `ch` to its watchers,
    /// with the channel's visible watcher count as it is now. O(watchers).
    fn emit_watching(&mut self, now: Millis, ch: ChannelIdx, u: UserIdx, started: bool) {
        let channel = self.channel(ch);
        let (channel, watcher_count) = (channel.reference(), channel.visible_watchers);
        let user = self.users[u as usize].snapshot();
        let kind = if started {
            EventKind::WatchingStart { channel, user, watcher_count }
        } else {
            EventKind::WatchingStop { channel, user, watcher_count }
        };
        self.emit(now, kind, u, Recipients::WatchersOf(ch));
    }

    /// Stops connection `c` watching a channel (a no-op when it was not watching).
    /// Cost: O(members) when it watched with presence, O(1) otherwise (whatever else the
    /// connection watches).
    pub fn stop_watching(&mut self, now: Millis, c: ConnectionId, cid: &str) -> Result<()> {
        let ch = self.channel_idx(cid)?;
        let c = self.slot(c)?;
        self.unwatch(now, c, ch);
        self.settle(now);
        Ok(())
    }

    pub(super) fn unwatch(&mut self, now: Millis, c: Slot, ch: ChannelIdx) {
        let Some(Watcher { presence, pos }) = self.channel_mut(ch).watchers.remove(&c) else {
            self.forget_dropped_watch(c, ch, true);
            return;
        };
        self.remove_watching(c, pos);
        self.watch_ended(now, c, ch, presence);
    }

    /// What follows once connection `c` no longer watches channel `ch` (with `presence` as
    /// it watched): its subscriptions through the channel end, the user's last watching
    /// connection stops counting and, when visible, emits `user.watching.stop`.
    /// Cost: O(members) with presence, O(1) otherwise.
    pub(super) fn watch_ended(&mut self, now: Millis, c: Slot, ch: ChannelIdx, presence: bool) {
        let u = self.conn(c).user;
        if presence {
            let members = self.channel(ch).members.clone();
            for m in members {
                self.unsubscribe(c, m, false);
            }
        }
        let (connection, cid) = (self.conn(c).id, self.channel(ch).cid.clone());
        self.replicate_watch(&cid, now, connection, u, false);
        self.watcher_removed(now, ch, u);
    }

    /// A user's visibility flipped: adjust `watcher_count` of every channel they watch and
    /// tell the watchers. Cost: O(channels watched by the user's connections).
    pub(super) fn visibility_changed_in_channels(&mut self, now: Millis, u: UserIdx) {
        let user = &self.users[u as usize];
        let visible = !user.invisible;
        let mut watched: Vec<ChannelIdx> =
            user.connections.iter().flat_map(|&c| self.conn(c).watching.iter().copied()).collect();
        watched.extend(self.remote_watched.get(&u).into_iter().flat_map(|chs| chs.keys().copied()));
        watched.sort_unstable();
        watched.dedup();
        for ch in watched {
            let channel = self.channel_mut(ch);
            if visible {
                channel.visible_watchers += 1;
            } else {
                channel.visible_watchers -= 1;
            }
            self.emit_watching(now, ch, u, visible);
        }
    }

    /// `{"channel", "members", "watcher_count", "watchers"}` as `viewer` sees it.
    /// Cost: O(members log members + watchers).
    pub(super) fn channel_state(&self, viewer: Viewer, ch: ChannelIdx) -> ChannelState {
        let channel = self.channel(ch);
        let by_id = |a: &UserIdx, b: &UserIdx| self.users[*a as usize].id.cmp(&self.users[*b as usize].id);
        let mut members: Vec<UserIdx> = channel.members.clone();
        members.sort_unstable_by(by_id);
        let mut watchers: Vec<UserIdx> =
            channel.watching_users.keys().copied().filter(|&u| !self.users[u as usize].invisible).collect();
        watchers.sort_unstable_by(by_id);
        ChannelState {
            channel: channel_snapshot(channel),
            members: members.into_iter().map(|u| self.viewed(viewer, u)).collect(),
            watcher_count: channel.visible_watchers,
            watchers: watchers.into_iter().map(|u| self.viewed(viewer, u)).collect(),
        }
    }
}
