//! Channels and their members: creating, changing and deleting channels, adding and
//! removing members (with the presence subscriptions of the channel's watchers).
use super::{live_mut, place, ChannelIdx, ChannelRecord, Member, Recipients, Slot, State, UserIdx};
use crate::answer::ChannelSnapshot;
use crate::channel::ChannelPatch;
use crate::error::Result;
use crate::event::EventKind;
use crate::replication::{ChannelOp, Field, FieldWrite};
use crate::shared_str::SharedStr;
use crate::time::Millis;
use crate::user::{merge_custom, validate_user_id};
use hashbrown::{HashMap, HashSet};
use serde_json::Value;

impl State {
    /// Creates or merges a channel; `members` are added (users created as needed), each
    /// emitting `member.added`. Cost: O(input + members added × presence watchers).
    pub fn upsert_channel(&mut self, now: Millis, patch: &ChannelPatch) -> Result<()> {
        let type_len = patch.validate()?;
        let existing = self.channel_index.get(patch.cid.as_str()).copied();
        let custom =
            merge_custom("channel", existing.and_then(|ch| self.channel(ch).custom.as_ref()), &patch.custom)?;
        if let Some(ch) = existing {
            self.check_member_limits(ch, &patch.members)?;
        }
        let members = self.member_users(now, &patch.members);
        let ch = existing.unwrap_or_else(|| self.create_channel(now, &patch.cid, type_len));
        let channel = self.channel_mut(ch);
        let mut changed = false;
        if let Some(custom) = custom {
            channel.custom = if custom.is_empty() { None } else { Some(custom) };
            changed = true;
        }
        if let Some(t) = patch.last_message_at {
            changed |= channel.last_message_at != t;
            channel.last_message_at = t;
        }
        if changed && existing.is_some() {
            channel.updated_at = now;
        }
        let (cid, updated_at) = (channel.cid.clone(), channel.updated_at);
        self.replicate_channel(&cid, now, || ChannelOp::Upsert {
            fields: channel_fields(patch, changed.then_some(updated_at)),
            members: patch.members.iter().map(|m| SharedStr::new(m)).collect(),
            only_if_absent: false,
        });
        for u in members {
            self.add_member(now, ch, u);
        }
        self.settle(now);
        Ok(())
    }

    /// Adds an empty channel named by a validated `cid`. O(1) amortized.
    pub(super) fn create_channel(&mut self, now: Millis, cid: &str, type_len: usize) -> ChannelIdx {
        let cid = SharedStr::new(cid);
        let record = ChannelRecord {
            cid: cid.clone(),
            type_len,
            custom: None,
            created_at: now,
            updated_at: now,
            last_message_at: None,
            members: Vec::new(),
            member_pos: HashMap::new(),
            watchers: HashMap::new(),
            watching_users: HashMap::new(),
            visible_watchers: 0,
            version: 0,
        };
        let ch = place(&mut self.channels, &mut self.free_channels, record);
        self.channel_index.insert(cid, ch);
        ch
    }

    /// Fails when adding `ids` to channel `ch` would take one of its presence watchers past
    /// `max_subscriptions_per_connection`.
    fn check_member_limits(&self, ch: ChannelIdx, ids: &[String]) -> Result<()> {
        let channel = self.channel(ch);
        let new_members: Vec<UserIdx> = ids
            .iter()
            .filter_map(|id| self.find_user(id))
            .filter(|u| !channel.member_pos.contains_key(u))
            .collect();
        // Users that do not exist yet cannot be subscribed to by anyone.
        let unknown = ids.iter().filter(|id| self.find_user(id).is_none()).collect::<HashSet<_>>().len();
        for (&c, watcher) in &channel.watchers {
            if watcher.presence {
                let added = self.new_subscriptions(c, new_members.iter().copied()) + unknown;
                self.check_subscription_limit(c, added)?;
            }
        }
        Ok(())
    }

    /// The users `ids` name, unknown ones created with only their id. A created user's
    /// delta is recorded here, ahead of the channel change naming it: the link writes deltas
    /// in order and may stop between two (a node dying mid-way), and the store must not keep
    /// a membership whose user it never heard of.
    fn member_users(&mut self, now: Millis, ids: &[String]) -> Vec<UserIdx> {
        ids.iter()
            .map(|id| {
                let (u, created) = self.get_or_create_user(id, now);
                if created {
                    self.replicate(now, u, None, Vec::new);
                }
                u
            })
            .collect()
    }

    pub(super) fn add_member(&mut self, now: Millis, ch: ChannelIdx, u: UserIdx) {
        let memberships = &mut self.users[u as usize].memberships;
        let channel = self.channels[ch as usize].as_mut().expect("channel index points at a live channel");
        if channel.member_pos.contains_key(&u) {
            return;
        }
        let member = Member { pos: channel.members.len() as u32, membership: memberships.len() as u32 };
        memberships.push(ch);
        channel.member_pos.insert(u, member);
        channel.members.push(u);
        let presence_watchers = presence_watchers(channel);
        let channel_ref = channel.reference();
        for c in presence_watchers {
            self.subscribe(c, u, false);
        }
        let user = self.users[u as usize].snapshot();
        self.emit(now, EventKind::MemberAdded { channel: channel_ref, user }, u, Recipients::WatchersOf(ch));
    }

    pub(super) fn remove_member(&mut self, now: Millis, ch: ChannelIdx, u: UserIdx) {
        let Some(presence_watchers) = self.unlink_member(ch, u) else {
            return;
        };
        let channel_ref = self.channel(ch).reference();
        let user = self.users[u as usize].snapshot();
        self.emit(
            now,
            EventKind::MemberRemoved { channel: channel_ref, user },
            u,
            Recipients::WatchersOf(ch),
        );
        for c in presence_watchers {
            self.unsubscribe(c, u, false);
        }
    }

    /// Removes a member without an event (the channel is going away).
    #[cfg(feature = "cluster")]
    pub(super) fn remove_member_silently(&mut self, ch: ChannelIdx, u: UserIdx) {
        for c in self.unlink_member(ch, u).unwrap_or_default() {
            self.unsubscribe(c, u, false);
        }
    }

    /// Takes user `u` out of channel `ch`'s members, answering the connections subscribed to
    /// the user through watching the channel with presence (`None`: not a member).
    fn unlink_member(&mut self, ch: ChannelIdx, u: UserIdx) -> Option<Vec<Slot>> {
        let channel = self.channel_mut(ch);
        let member = channel.member_pos.remove(&u)?;
        channel.members.swap_remove(member.pos as usize);
        if let Some(&moved) = channel.members.get(member.pos as usize) {
            if let Some(m) = channel.member_pos.get_mut(&moved) {
                m.pos = member.pos;
            }
        }
        let presence_watchers = presence_watchers(channel);
        self.remove_membership(u, member.membership);
        Some(presence_watchers)
    }

    /// Adds members (creating unknown users with only their id), each emitting
    /// `member.added`. Cost: O(ids × presence watchers of the channel).
    pub fn add_members(&mut self, now: Millis, cid: &str, ids: &[String]) -> Result<()> {
        let ch = self.channel_idx(cid)?;
        for id in ids {
            validate_user_id(id)?;
        }
        self.check_member_limits(ch, ids)?;
        let members = self.member_users(now, ids);
        let cid = self.channel(ch).cid.clone();
        self.replicate_channel(&cid, now, || ChannelOp::Upsert {
            fields: Vec::new(),
            members: ids.iter().map(|m| SharedStr::new(m)).collect(),
            only_if_absent: false,
        });
        for u in members {
            self.add_member(now, ch, u);
        }
        self.settle(now);
        Ok(())
    }

    /// Removes members, each emitting `member.removed`; users that exist but are not members
    /// are skipped, unknown users are `NotFound` (and nothing changes).
    /// Cost: O(ids × presence watchers).
    pub fn remove_members(&mut self, now: Millis, cid: &str, ids: &[String]) -> Result<()> {
        let ch = self.channel_idx(cid)?;
        let users = ids.iter().map(|id| self.user_idx(id)).collect::<Result<Vec<_>>>()?;
        let cid = self.channel(ch).cid.clone();
        self.replicate_channel(&cid, now, || {
            ChannelOp::RemoveMembers(ids.iter().map(|m| SharedStr::new(m)).collect())
        });
        for u in users {
            self.remove_member(now, ch, u);
        }
        self.settle(now);
        Ok(())
    }

    /// Deletes a channel. Its watchers stop watching and its members leave without events.
    /// Cost: O(members × presence watchers + watchers), whatever else they watch or
    /// belong to.
    pub fn delete_channel(&mut self, cid: &str) -> Result<()> {
        let ch = self.channel_idx(cid)?;
        let channel = self.channels[ch as usize].take().expect("live channel");
        self.replicate_channel(&channel.cid, 0, || ChannelOp::Delete);
        self.forget_remote_watchers(ch, &channel);
        for (&c, watcher) in &channel.watchers {
            if watcher.presence {
                for &u in &channel.members {
                    self.unsubscribe(c, u, false);
                }
            }
            self.remove_watching(c, watcher.pos);
        }
        for (&u, member) in &channel.member_pos {
            self.remove_membership(u, member.membership);
        }
        self.channel_index.remove(&channel.cid);
        self.free_channels.push(ch);
        Ok(())
    }
}

/// The shared fields a channel patch writes, as the store keeps them, with `updated_at`
/// when the channel changed.
fn channel_fields(patch: &ChannelPatch, updated_at: Option<Millis>) -> Vec<FieldWrite> {
    let mut fields: Vec<FieldWrite> = patch
        .custom
        .iter()
        .map(|(name, v)| (Field::Custom(name.clone()), v.as_ref().map(Value::to_string)))
        .collect();
    if let Some(t) = patch.last_message_at {
        fields.push((Field::LastMessageAt, t.map(|t| t.to_string())));
    }
    if let Some(t) = updated_at {
        fields.push((Field::UpdatedAt, Some(t.to_string())));
    }
    fields
}

/// Connections watching the channel with presence.
fn presence_watchers(channel: &ChannelRecord) -> Vec<Slot> {
    channel.watchers.iter().filter(|(_, w)| w.presence).map(|(&c, _)| c).collect()
}

impl State {
    /// Drops what `remote_watched` holds for channel `ch` (whose record is `channel`), as
    /// the channel goes away. O(users watching it).
    pub(super) fn forget_remote_watchers(&mut self, ch: ChannelIdx, channel: &ChannelRecord) {
        if self.remote_watched.is_empty() {
            return;
        }
        for u in channel.watching_users.keys() {
            if let Some(chs) = self.remote_watched.get_mut(u) {
                chs.remove(&ch);
                if chs.is_empty() {
                    self.remote_watched.remove(u);
                }
            }
        }
    }

    /// Removes the membership at `pos` of user `u`, fixing the position kept by the channel
    /// that moved into its place. O(1).
    pub(super) fn remove_membership(&mut self, u: UserIdx, pos: u32) {
        let memberships = &mut self.users[u as usize].memberships;
        memberships.swap_remove(pos as usize);
        if let Some(&moved) = memberships.get(pos as usize) {
            if let Some(m) = self.channels[moved as usize].as_mut().and_then(|c| c.member_pos.get_mut(&u)) {
                m.membership = pos;
            }
        }
    }

    /// Removes the channel at `pos` of connection `c`'s watching list, fixing the position
    /// kept by the channel that moved into its place. O(1).
    pub(super) fn remove_watching(&mut self, c: Slot, pos: u32) {
        let watching = &mut live_mut(&mut self.connections, c).watching;
        watching.swap_remove(pos as usize);
        if let Some(&moved) = watching.get(pos as usize) {
            if let Some(w) = self.channels[moved as usize].as_mut().and_then(|ch| ch.watchers.get_mut(&c)) {
                w.pos = pos;
            }
        }
    }
}

/// The channel's own fields as plain data.
pub(super) fn channel_snapshot(ch: &ChannelRecord) -> ChannelSnapshot {
    ChannelSnapshot {
        cid: ch.cid.clone(),
        type_len: ch.type_len,
        member_count: ch.members.len(),
        created_at: ch.created_at,
        updated_at: ch.updated_at,
        last_message_at: ch.last_message_at,
        custom: ch.custom.clone(),
    }
}
