//! The functional core: users, connections, channels, subscriptions and timers as plain
//! data. Each command takes the current time, applies one change (or, on error, none) and
//! appends the events it caused to an outbox. It knows nothing of locks, threads, callbacks
//! or C; [`crate::Engine`] is the shell around it.
use crate::answer::{ChannelSnapshot, ChannelState, ChannelsAnswer, UsersAnswer, ViewedUser};
use crate::channel::{parse_cid, ChannelPatch};
use crate::config::Config;
use crate::error::{Error, ErrorKind, Result};
use crate::event::{ChannelRef, CloseReason, ConnectionId, Delivery, Event, EventKind};
use crate::query::{FieldValue, Query, Record};
use crate::time::{parse_millis, Millis};
use crate::user::{
    merge_custom, validate_status, validate_user_id, CustomFields, UserPatch, UserSnapshot, View,
};
use hashbrown::{DefaultHashBuilder, HashMap, HashSet, HashTable};
use serde_json::{json, Map, Value};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::hash::BuildHasher;
use std::sync::Arc;
use thin_vec::ThinVec;

type UserIdx = u32;
type ChannelIdx = u32;
/// Where a live connection's record sits; reused after the connection closes (every
/// reference to it is removed then). Recipients are stored as slots so fan-out indexes
/// a vector instead of probing a hash map.
type Slot = u32;

/// Snapshot file format version written by `save` and required by `load`.
pub const SNAPSHOT_VERSION: u64 = 1;

/// Something for the shell to dispatch: an event for host listeners, or one delivery.
#[derive(Debug, Clone)]
pub(crate) enum Outgoing {
    Event(Arc<Event>),
    Delivery(Delivery),
}

/// Who is asking: the host (own views of everyone) or a connection.
#[derive(Clone, Copy)]
enum Viewer {
    Host,
    Connection(Slot, UserIdx),
}

impl Viewer {
    fn view_of(self, user: UserIdx) -> View {
        match self {
            Viewer::Connection(_, u) if u != user => View::Public,
            _ => View::Own,
        }
    }
}

/// An optional timestamp in 8 bytes (`i64::MIN` = none): users are the bulk of memory.
#[derive(Clone, Copy, PartialEq, Eq)]
struct OptMillis(Millis);

impl OptMillis {
    const NONE: OptMillis = OptMillis(Millis::MIN);
    fn get(self) -> Option<Millis> {
        (self != Self::NONE).then_some(self.0)
    }
    fn from(t: Option<Millis>) -> Self {
        t.map_or(Self::NONE, OptMillis)
    }
}

/// Finds a user by id. A hash table of 4-byte indexes hashed by the id stored in the
/// record, instead of a map keyed by a second pointer to the id: about 40 bytes less per user.
#[derive(Default)]
struct UserIndex {
    table: HashTable<UserIdx>,
    hasher: DefaultHashBuilder,
}

impl UserIndex {
    /// O(1) expected.
    fn find(&self, users: &[UserRecord], id: &str) -> Option<UserIdx> {
        self.table.find(self.hasher.hash_one(id), |&u| &*users[u as usize].id == id).copied()
    }

    /// Indexes `users[u]`, whose id is not indexed yet. O(1) amortized.
    fn insert(&mut self, users: &[UserRecord], u: UserIdx) {
        let UserIndex { table, hasher } = self;
        let hash = hasher.hash_one(&*users[u as usize].id);
        table.insert_unique(hash, u, |&v| hasher.hash_one(&*users[v as usize].id));
    }
}

struct UserRecord {
    id: Arc<str>,
    status: Option<Arc<str>>,
    custom: Option<Arc<CustomFields>>,
    invisible: bool,
    /// A refresh timer for this user is in the heap.
    refresh_armed: bool,
    created_at: Millis,
    updated_at: Millis,
    last_active: OptMillis,
    /// Set while the user lingers online after their last connection closed.
    grace_until: OptMillis,
    connections: ThinVec<Slot>,
    /// Connections subscribed to this user's presence; positions are kept in each
    /// connection's `Subscription::pos` so removal is O(1).
    subscribers: ThinVec<Slot>,
    memberships: ThinVec<ChannelIdx>,
}

impl UserRecord {
    fn new(id: Arc<str>, now: Millis) -> Self {
        UserRecord {
            id,
            status: None,
            custom: None,
            invisible: false,
            refresh_armed: false,
            created_at: now,
            updated_at: now,
            last_active: OptMillis::NONE,
            grace_until: OptMillis::NONE,
            connections: ThinVec::new(),
            subscribers: ThinVec::new(),
            memberships: ThinVec::new(),
        }
    }
    fn connected(&self) -> bool {
        !self.connections.is_empty() || self.grace_until != OptMillis::NONE
    }
    fn public_online(&self) -> bool {
        self.connected() && !self.invisible
    }
    fn snapshot(&self) -> Arc<UserSnapshot> {
        Arc::new(UserSnapshot {
            id: self.id.clone(),
            status: self.status.clone(),
            custom: self.custom.clone(),
            invisible: self.invisible,
            connected: self.connected(),
            last_active: self.last_active.get(),
            created_at: self.created_at,
            updated_at: self.updated_at,
        })
    }
}

/// Why a connection is subscribed to a user; it stays subscribed while any route holds.
struct Subscription {
    /// Channels watched with presence that have this user as a member.
    channel_refs: u32,
    /// Returned by `query_users` with `presence: true`.
    direct: bool,
    /// Index of the connection in the user's `subscribers`.
    pos: u32,
}

struct ConnectionRecord {
    id: ConnectionId,
    user: UserIdx,
    last_seen: Millis,
    /// Channels watched, with the presence flag.
    watching: Vec<(ChannelIdx, bool)>,
    subscriptions: HashMap<UserIdx, Subscription>,
    queue: VecDeque<Delivery>,
    /// The queue overflowed; the connection closes when the command settles.
    overflowed: bool,
}

struct ChannelRecord {
    cid: Arc<str>,
    type_len: usize,
    custom: Option<Arc<CustomFields>>,
    created_at: Millis,
    updated_at: Millis,
    last_message_at: Option<Millis>,
    members: Vec<UserIdx>,
    member_pos: HashMap<UserIdx, u32>,
    /// Watching connections with their presence flag.
    watchers: HashMap<Slot, bool>,
    /// Connections watching, counted per user.
    watching_users: HashMap<UserIdx, u32>,
    /// Distinct visible users among the watchers.
    visible_watchers: u32,
}

impl ChannelRecord {
    fn reference(&self) -> ChannelRef {
        ChannelRef::new(self.cid.clone(), self.type_len)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    Refresh(UserIdx),
    Grace(UserIdx),
    Timeout(ConnectionId),
}

/// Who receives an event beyond the host listeners.
enum Recipients {
    Nobody,
    SubscribersOf(UserIdx),
    WatchersOf(ChannelIdx),
}

/// A user's presence as others see it, taken before a change to decide what to emit.
struct PresenceBefore {
    online: bool,
    status: Option<Arc<str>>,
    invisible: bool,
    /// Held live connections (the offline grace does not count).
    had_connections: bool,
}

/// The engine's state. See the module documentation.
pub(crate) struct State {
    config: Config,
    users: Vec<UserRecord>,
    user_index: UserIndex,
    connections: Vec<Option<ConnectionRecord>>,
    free_slots: Vec<Slot>,
    connection_slots: HashMap<ConnectionId, Slot>,
    channels: Vec<Option<ChannelRecord>>,
    free_channels: Vec<ChannelIdx>,
    channel_index: HashMap<Arc<str>, ChannelIdx>,
    timers: BinaryHeap<Reverse<(Millis, Timer)>>,
    next_connection: u64,
    seq: u64,
    outbox: Vec<Outgoing>,
    overflowed: Vec<Slot>,
    /// Record events for host listeners in the outbox.
    pub record_events: bool,
    /// Record deliveries for delivery listeners in the outbox.
    pub record_deliveries: bool,
}

fn not_found_connection(c: ConnectionId) -> Error {
    Error::not_found(format!("unknown connection {c}"))
}

fn not_found_user(id: &str) -> Error {
    Error::not_found(format!("unknown user {id:?}"))
}

fn not_found_channel(cid: &str) -> Error {
    Error::not_found(format!("unknown channel {cid:?}"))
}

impl State {
    /// An empty state. Cost: O(1).
    pub fn new(config: Config) -> Self {
        State {
            config,
            users: Vec::new(),
            user_index: UserIndex::default(),
            connections: Vec::new(),
            free_slots: Vec::new(),
            connection_slots: HashMap::new(),
            channels: Vec::new(),
            free_channels: Vec::new(),
            channel_index: HashMap::new(),
            timers: BinaryHeap::new(),
            next_connection: 1,
            seq: 0,
            outbox: Vec::new(),
            overflowed: Vec::new(),
            record_events: true,
            record_deliveries: true,
        }
    }

    /// Takes the events and deliveries emitted since the last call, in `seq` order.
    pub fn take_outbox(&mut self) -> Vec<Outgoing> {
        std::mem::take(&mut self.outbox)
    }

    pub fn user_count(&self) -> usize {
        self.users.len()
    }

    pub fn connection_count(&self) -> usize {
        self.connection_slots.len()
    }

    pub fn channel_count(&self) -> usize {
        self.channel_index.len()
    }

    // ----- lookups -----

    /// O(1) expected.
    fn find_user(&self, id: &str) -> Option<UserIdx> {
        self.user_index.find(&self.users, id)
    }

    fn user_idx(&self, id: &str) -> Result<UserIdx> {
        self.find_user(id).ok_or_else(|| not_found_user(id))
    }

    fn channel_idx(&self, cid: &str) -> Result<ChannelIdx> {
        parse_cid(cid)?;
        self.channel_index.get(cid).copied().ok_or_else(|| not_found_channel(cid))
    }

    fn channel(&self, ch: ChannelIdx) -> &ChannelRecord {
        self.channels[ch as usize].as_ref().expect("channel index points at a live channel")
    }

    fn channel_mut(&mut self, ch: ChannelIdx) -> &mut ChannelRecord {
        self.channels[ch as usize].as_mut().expect("channel index points at a live channel")
    }

    /// The slot of a live connection. O(1) expected.
    fn slot(&self, c: ConnectionId) -> Result<Slot> {
        self.connection_slots.get(&c).copied().ok_or_else(|| not_found_connection(c))
    }

    fn conn(&self, c: Slot) -> &ConnectionRecord {
        live(&self.connections, c)
    }

    fn conn_mut(&mut self, c: Slot) -> &mut ConnectionRecord {
        live_mut(&mut self.connections, c)
    }

    fn viewer(&self, viewer: ConnectionId) -> Result<Viewer> {
        if viewer.0 == 0 {
            Ok(Viewer::Host)
        } else {
            let c = self.slot(viewer)?;
            Ok(Viewer::Connection(c, self.conn(c).user))
        }
    }

    fn get_or_create_user(&mut self, id: &str, now: Millis) -> (UserIdx, bool) {
        if let Some(u) = self.find_user(id) {
            return (u, false);
        }
        let u = self.users.len() as UserIdx;
        self.users.push(UserRecord::new(Arc::from(id), now));
        self.user_index.insert(&self.users, u);
        (u, true)
    }

    // ----- emission -----

    /// Assigns the next `seq` and hands the event to the host-listener outbox and to each
    /// recipient's queue. `subject` is the user the event is about (recipients among their
    /// own connections get the own view). Cost: O(recipients).
    fn emit(&mut self, now: Millis, kind: EventKind, subject: UserIdx, recipients: Recipients) {
        self.seq += 1;
        let event = Arc::new(Event { seq: self.seq, created_at: now, kind });
        if self.record_events {
            self.outbox.push(Outgoing::Event(event.clone()));
        }
        let capacity = self.config.connection_queue_capacity as usize;
        if capacity == 0 && !self.record_deliveries {
            return;
        }
        let mut fan_out = FanOut {
            event: &event,
            subject,
            capacity,
            record: self.record_deliveries,
            outbox: &mut self.outbox,
            overflowed: &mut self.overflowed,
        };
        match recipients {
            Recipients::Nobody => {}
            Recipients::SubscribersOf(u) => {
                for &c in self.users[u as usize].subscribers.iter() {
                    fan_out.deliver(&mut self.connections, c);
                }
            }
            Recipients::WatchersOf(ch) => {
                if let Some(channel) = self.channels[ch as usize].as_ref() {
                    for &c in channel.watchers.keys() {
                        fan_out.deliver(&mut self.connections, c);
                    }
                }
            }
        }
    }

    /// Closes every connection whose queue overflowed during the command.
    fn settle(&mut self, now: Millis) {
        // `overflowed` holds slots marked during this command, and no command opens a
        // connection after marking one, so none of them can have been reused yet.
        while let Some(c) = self.overflowed.pop() {
            if self.connections[c as usize].is_some() {
                self.close_connection(now, c, CloseReason::SlowConsumer);
            }
        }
    }

    fn presence_before(&self, u: UserIdx) -> PresenceBefore {
        let user = &self.users[u as usize];
        PresenceBefore {
            online: user.public_online(),
            status: user.status.clone(),
            invisible: user.invisible,
            had_connections: !user.connections.is_empty(),
        }
    }

    /// Emits what a change to user `u` caused, compared with `before`: `user.presence.changed`
    /// when the public online flag or the status changed, `user.updated` when custom fields
    /// changed, and, when visibility flipped, watching events in every channel the user watches.
    fn user_changed(&mut self, now: Millis, u: UserIdx, before: PresenceBefore, custom_changed: bool) {
        let user = &mut self.users[u as usize];
        let visibility_flipped = user.invisible != before.invisible;
        // Flipping visibility while connected stamps the last visible moment (going
        // invisible) or now (coming back). Connecting invisibly stamps nothing: the user was
        // not visibly connected (a visible connect stamps by itself).
        if visibility_flipped && before.had_connections && !user.connections.is_empty() {
            user.last_active = OptMillis(now);
        }
        let online = user.public_online();
        let status_changed = user.status != before.status;
        if online != before.online || status_changed {
            let snap = user.snapshot();
            self.emit(now, EventKind::PresenceChanged { user: snap }, u, Recipients::SubscribersOf(u));
        }
        if custom_changed {
            let snap = self.users[u as usize].snapshot();
            self.emit(now, EventKind::UserUpdated { user: snap }, u, Recipients::SubscribersOf(u));
        }
        if visibility_flipped {
            if !self.users[u as usize].invisible {
                self.arm_refresh(now, u);
            }
            self.visibility_changed_in_channels(now, u);
        }
    }

    /// A user's visibility flipped: adjust `watcher_count` of every channel they watch and
    /// tell the watchers. Cost: O(channels watched by the user's connections).
    fn visibility_changed_in_channels(&mut self, now: Millis, u: UserIdx) {
        let user = &self.users[u as usize];
        let visible = !user.invisible;
        let mut watched: Vec<ChannelIdx> =
            user.connections.iter().flat_map(|&c| self.conn(c).watching.iter().map(|&(ch, _)| ch)).collect();
        watched.sort_unstable();
        watched.dedup();
        for ch in watched {
            let channel = self.channel_mut(ch);
            if visible {
                channel.visible_watchers += 1;
            } else {
                channel.visible_watchers -= 1;
            }
            let (channel_ref, watcher_count) = (channel.reference(), channel.visible_watchers);
            let user = self.users[u as usize].snapshot();
            let kind = if visible {
                EventKind::WatchingStart { channel: channel_ref, user, watcher_count }
            } else {
                EventKind::WatchingStop { channel: channel_ref, user, watcher_count }
            };
            self.emit(now, kind, u, Recipients::WatchersOf(ch));
        }
    }

    fn arm_refresh(&mut self, now: Millis, u: UserIdx) {
        let user = &mut self.users[u as usize];
        if !user.refresh_armed {
            user.refresh_armed = true;
            let due = now.saturating_add(self.config.last_active_refresh_ms as Millis);
            self.timers.push(Reverse((due, Timer::Refresh(u))));
        }
    }

    /// Applies the fields of `patch` to user `u`; answers whether custom fields changed.
    /// `custom` is the merged custom map computed (and size-checked) beforehand.
    fn apply_patch(
        &mut self,
        now: Millis,
        u: UserIdx,
        patch: &UserPatch,
        custom: Option<Arc<CustomFields>>,
    ) -> bool {
        let user = &mut self.users[u as usize];
        let mut changed = false;
        if let Some(status) = &patch.status {
            let status: Option<Arc<str>> = status.as_deref().map(Arc::from);
            if user.status != status {
                user.status = status;
                changed = true;
            }
        }
        // Visibility never touches updated_at: others would see it move while the user
        // appears offline.
        if let Some(invisible) = patch.invisible {
            user.invisible = invisible;
        }
        let custom_changed = custom.is_some();
        if let Some(custom) = custom {
            user.custom = if custom.is_empty() { None } else { Some(custom) };
            changed = true;
        }
        if changed {
            user.updated_at = now;
        }
        custom_changed
    }

    /// Validates `patch` against the stored user, answering the merged custom fields.
    fn prepare_patch(&self, patch: &UserPatch) -> Result<Option<Arc<CustomFields>>> {
        patch.validate()?;
        let current = self.find_user(&patch.id).and_then(|u| self.users[u as usize].custom.as_ref());
        merge_custom("user", current, &patch.custom)
    }

    // ----- users -----

    /// Takes the "before" picture for a patch; a user the patch creates counts as already
    /// having the patched status and visibility, so creation alone emits nothing.
    fn before_patch(&self, u: UserIdx, created: bool, patch: &UserPatch) -> PresenceBefore {
        let mut before = self.presence_before(u);
        if created {
            if let Some(status) = &patch.status {
                before.status = status.as_deref().map(Arc::from);
            }
            before.invisible = patch.invisible.unwrap_or(false);
        }
        before
    }

    /// Creates or merges a user (top-level merge: absent fields keep their value). Creating
    /// a user emits nothing; changing one emits `user.presence.changed` (status, or online
    /// flipped by `invisible`) and `user.updated` (custom fields).
    /// Cost: O(size of the input + subscribers of the user).
    pub fn upsert_user(&mut self, now: Millis, patch: &UserPatch) -> Result<()> {
        let custom = self.prepare_patch(patch)?;
        let (u, created) = self.get_or_create_user(&patch.id, now);
        let before = self.before_patch(u, created, patch);
        let custom_changed = self.apply_patch(now, u, patch, custom) && !created;
        self.user_changed(now, u, before, custom_changed);
        self.settle(now);
        Ok(())
    }

    /// Sets or clears the sticky invisible flag. Cost: O(subscribers + channels watched).
    pub fn set_invisible(&mut self, now: Millis, user_id: &str, invisible: bool) -> Result<()> {
        let u = self.user_idx(user_id)?;
        let mut patch = UserPatch::id(user_id);
        patch.invisible = Some(invisible);
        let before = self.presence_before(u);
        self.apply_patch(now, u, &patch, None);
        self.user_changed(now, u, before, false);
        self.settle(now);
        Ok(())
    }

    /// Sets (`Some`) or clears (`None`) the status. Cost: O(subscribers of the user).
    pub fn set_status(&mut self, now: Millis, user_id: &str, status: Option<&str>) -> Result<()> {
        if let Some(s) = status {
            validate_status(s)?;
        }
        let u = self.user_idx(user_id)?;
        if self.users[u as usize].status.as_deref() == status {
            return Ok(());
        }
        let before = self.presence_before(u);
        let user = &mut self.users[u as usize];
        user.status = status.map(Arc::from);
        user.updated_at = now;
        self.user_changed(now, u, before, false);
        self.settle(now);
        Ok(())
    }

    /// The user as `viewer` sees it (0: the host, own view). Cost: O(size of the user).
    pub fn get_user(&self, viewer: ConnectionId, user_id: &str) -> Result<ViewedUser> {
        let viewer = self.viewer(viewer)?;
        let u = self.user_idx(user_id)?;
        Ok(self.viewed(viewer, u))
    }

    /// The user's snapshot (own view data), for the typed Rust API. Cost: O(1).
    pub fn user_snapshot(&self, user_id: &str) -> Result<Arc<UserSnapshot>> {
        Ok(self.users[self.user_idx(user_id)? as usize].snapshot())
    }

    // ----- connections -----

    /// Upserts the user in `patch` and opens a connection for them. The first connection of
    /// a visible user emits `user.presence.changed` (online); later ones emit nothing.
    /// Cost: O(size of the input + subscribers of the user + log(timers)).
    pub fn connect(&mut self, now: Millis, patch: &UserPatch) -> Result<ConnectionId> {
        if let Some(u) = self.find_user(&patch.id) {
            let max = self.config.max_connections_per_user as usize;
            if self.users[u as usize].connections.len() >= max {
                return Err(Error::limit(format!(
                    "user {:?} already holds {max} connections (max_connections_per_user)",
                    patch.id
                )));
            }
        }
        let custom = self.prepare_patch(patch)?;
        let (u, created) = self.get_or_create_user(&patch.id, now);
        let before = self.before_patch(u, created, patch);
        let custom_changed = self.apply_patch(now, u, patch, custom) && !created;
        let id = ConnectionId(self.next_connection);
        self.next_connection += 1;
        let record = ConnectionRecord {
            id,
            user: u,
            last_seen: now,
            watching: Vec::new(),
            subscriptions: HashMap::new(),
            queue: VecDeque::new(),
            overflowed: false,
        };
        let c = match self.free_slots.pop() {
            Some(c) => {
                self.connections[c as usize] = Some(record);
                c
            }
            None => {
                self.connections.push(Some(record));
                (self.connections.len() - 1) as Slot
            }
        };
        self.connection_slots.insert(id, c);
        let user = &mut self.users[u as usize];
        user.connections.push(c);
        user.grace_until = OptMillis::NONE;
        if !user.invisible {
            user.last_active = OptMillis(now);
            self.arm_refresh(now, u);
        }
        self.user_changed(now, u, before, custom_changed);
        if self.config.connection_timeout_ms > 0 {
            let due = now.saturating_add(self.config.connection_timeout_ms as Millis);
            self.timers.push(Reverse((due, Timer::Timeout(id))));
        }
        self.settle(now);
        Ok(id)
    }

    /// Closes a connection as the host asked. Cost: O(channels it watched + users it was
    /// subscribed to + subscribers of its user).
    pub fn disconnect(&mut self, now: Millis, c: ConnectionId) -> Result<()> {
        let c = self.slot(c)?;
        self.close_connection(now, c, CloseReason::Disconnect);
        self.settle(now);
        Ok(())
    }

    /// Records a sign of life. Cost: O(1).
    pub fn heartbeat(&mut self, now: Millis, c: ConnectionId) -> Result<()> {
        let c = self.slot(c)?;
        self.conn_mut(c).last_seen = now;
        Ok(())
    }

    fn close_connection(&mut self, now: Millis, c: Slot, reason: CloseReason) {
        let conn = self.conn(c);
        let u = conn.user;
        let watching: Vec<ChannelIdx> = conn.watching.iter().map(|&(ch, _)| ch).collect();
        for ch in watching {
            self.unwatch(now, c, ch);
        }
        let conn = self.connections[c as usize].take().expect("closing a live connection");
        self.connection_slots.remove(&conn.id);
        self.free_slots.push(c);
        for (&s, sub) in &conn.subscriptions {
            remove_subscriber(&mut self.users, &mut self.connections, s, sub.pos);
        }
        let before = self.presence_before(u);
        let user = &mut self.users[u as usize];
        user.connections.retain(|&x| x != c);
        if user.connections.is_empty() {
            if !user.invisible {
                user.last_active = OptMillis(now);
            }
            if self.config.offline_grace_ms > 0 {
                let due = now.saturating_add(self.config.offline_grace_ms as Millis);
                user.grace_until = OptMillis(due);
                self.timers.push(Reverse((due, Timer::Grace(u))));
            }
        }
        self.user_changed(now, u, before, false);
        let user = self.users[u as usize].snapshot();
        self.emit(
            now,
            EventKind::ConnectionClosed { connection: conn.id, user, reason },
            u,
            Recipients::Nobody,
        );
    }

    /// Drains up to `max` queued deliveries of a connection, oldest first. Cost: O(max).
    pub fn poll(&mut self, c: ConnectionId, max: usize) -> Result<Vec<Delivery>> {
        let c = self.slot(c)?;
        let conn = self.conn_mut(c);
        let n = max.min(conn.queue.len());
        Ok(conn.queue.drain(..n).collect())
    }

    // ----- subscriptions -----

    /// How many of `users` connection `c` is not yet subscribed to.
    fn new_subscriptions(&self, c: Slot, users: impl IntoIterator<Item = UserIdx>) -> usize {
        let conn = self.conn(c);
        let mut seen = HashSet::new();
        users.into_iter().filter(|u| !conn.subscriptions.contains_key(u) && seen.insert(*u)).count()
    }

    /// [`State::new_subscriptions`] for users known to be distinct (one channel's members,
    /// one query page): no set needed.
    fn new_distinct_subscriptions(&self, c: Slot, users: impl IntoIterator<Item = UserIdx>) -> usize {
        let conn = self.conn(c);
        users.into_iter().filter(|u| !conn.subscriptions.contains_key(u)).count()
    }

    fn check_subscription_limit(&self, c: Slot, added: usize) -> Result<()> {
        let max = self.config.max_subscriptions_per_connection as usize;
        let have = self.conn(c).subscriptions.len();
        if added > 0 && have + added > max {
            return Err(Error::limit(format!(
                "connection {} would hold {} presence subscriptions, more than max_subscriptions_per_connection {max}",
                self.conn(c).id,
                have + added
            )));
        }
        Ok(())
    }

    /// Adds one route (a presence-watched channel, or `direct`) from `c` to user `u`. O(1).
    fn subscribe(&mut self, c: Slot, u: UserIdx, direct: bool) {
        let user = &mut self.users[u as usize];
        let conn = live_mut(&mut self.connections, c);
        let sub = conn.subscriptions.entry(u).or_insert_with(|| {
            user.subscribers.push(c);
            Subscription { channel_refs: 0, direct: false, pos: (user.subscribers.len() - 1) as u32 }
        });
        if direct {
            sub.direct = true;
        } else {
            sub.channel_refs += 1;
        }
    }

    /// Drops one route from `c` to `u`; the subscription ends with its last route. O(1).
    fn unsubscribe(&mut self, c: Slot, u: UserIdx, direct: bool) {
        let conn = live_mut(&mut self.connections, c);
        let Some(sub) = conn.subscriptions.get_mut(&u) else {
            return;
        };
        if direct {
            sub.direct = false;
        } else {
            sub.channel_refs = sub.channel_refs.saturating_sub(1);
        }
        if sub.channel_refs == 0 && !sub.direct {
            let pos = sub.pos;
            conn.subscriptions.remove(&u);
            remove_subscriber(&mut self.users, &mut self.connections, u, pos);
        }
    }

    /// Ends the `query_users` route from `c` to a user; channel routes stay. Cost: O(1).
    pub fn unsubscribe_user(&mut self, c: ConnectionId, user_id: &str) -> Result<()> {
        let c = self.slot(c)?;
        let u = self.user_idx(user_id)?;
        self.unsubscribe(c, u, true);
        Ok(())
    }

    // ----- channels -----

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
        let ch = match existing {
            Some(ch) => ch,
            None => {
                let cid: Arc<str> = Arc::from(patch.cid.as_str());
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
                };
                let ch = match self.free_channels.pop() {
                    Some(ch) => {
                        self.channels[ch as usize] = Some(record);
                        ch
                    }
                    None => {
                        self.channels.push(Some(record));
                        (self.channels.len() - 1) as ChannelIdx
                    }
                };
                self.channel_index.insert(cid, ch);
                ch
            }
        };
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
        self.add_member_ids(now, ch, &patch.members);
        self.settle(now);
        Ok(())
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
        for (&c, &presence) in &channel.watchers {
            if presence {
                let added = self.new_subscriptions(c, new_members.iter().copied()) + unknown;
                self.check_subscription_limit(c, added)?;
            }
        }
        Ok(())
    }

    fn add_member_ids(&mut self, now: Millis, ch: ChannelIdx, ids: &[String]) {
        for id in ids {
            let (u, _) = self.get_or_create_user(id, now);
            self.add_member(now, ch, u);
        }
    }

    fn add_member(&mut self, now: Millis, ch: ChannelIdx, u: UserIdx) {
        let channel = self.channel_mut(ch);
        if channel.member_pos.contains_key(&u) {
            return;
        }
        channel.member_pos.insert(u, channel.members.len() as u32);
        channel.members.push(u);
        let presence_watchers: Vec<Slot> =
            channel.watchers.iter().filter(|(_, &p)| p).map(|(&c, _)| c).collect();
        let channel_ref = channel.reference();
        self.users[u as usize].memberships.push(ch);
        for c in presence_watchers {
            self.subscribe(c, u, false);
        }
        let user = self.users[u as usize].snapshot();
        self.emit(now, EventKind::MemberAdded { channel: channel_ref, user }, u, Recipients::WatchersOf(ch));
    }

    fn remove_member(&mut self, now: Millis, ch: ChannelIdx, u: UserIdx) {
        let channel = self.channel_mut(ch);
        let Some(pos) = channel.member_pos.remove(&u) else {
            return;
        };
        channel.members.swap_remove(pos as usize);
        if let Some(&moved) = channel.members.get(pos as usize) {
            channel.member_pos.insert(moved, pos);
        }
        let presence_watchers: Vec<Slot> =
            channel.watchers.iter().filter(|(_, &p)| p).map(|(&c, _)| c).collect();
        let channel_ref = channel.reference();
        self.users[u as usize].memberships.retain(|&x| x != ch);
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

    /// Adds members (creating unknown users with only their id), each emitting
    /// `member.added`. Cost: O(ids × presence watchers of the channel).
    pub fn add_members(&mut self, now: Millis, cid: &str, ids: &[String]) -> Result<()> {
        let ch = self.channel_idx(cid)?;
        for id in ids {
            validate_user_id(id)?;
        }
        self.check_member_limits(ch, ids)?;
        self.add_member_ids(now, ch, ids);
        self.settle(now);
        Ok(())
    }

    /// Removes members, each emitting `member.removed`; users that exist but are not members
    /// are skipped, unknown users are `NotFound` (and nothing changes).
    /// Cost: O(ids × (presence watchers + memberships of the user)).
    pub fn remove_members(&mut self, now: Millis, cid: &str, ids: &[String]) -> Result<()> {
        let ch = self.channel_idx(cid)?;
        let users = ids.iter().map(|id| self.user_idx(id)).collect::<Result<Vec<_>>>()?;
        for u in users {
            self.remove_member(now, ch, u);
        }
        self.settle(now);
        Ok(())
    }

    /// Deletes a channel. Its watchers stop watching and its members leave without events.
    /// Cost: O(members × presence watchers + watchers).
    pub fn delete_channel(&mut self, _now: Millis, cid: &str) -> Result<()> {
        let ch = self.channel_idx(cid)?;
        let watchers: Vec<(Slot, bool)> = self.channel(ch).watchers.iter().map(|(&c, &p)| (c, p)).collect();
        let members = self.channel(ch).members.clone();
        for (c, presence) in watchers {
            if presence {
                for &u in &members {
                    self.unsubscribe(c, u, false);
                }
            }
            self.conn_mut(c).watching.retain(|&(x, _)| x != ch);
        }
        for &u in &members {
            self.users[u as usize].memberships.retain(|&x| x != ch);
        }
        let channel = self.channels[ch as usize].take().expect("live channel");
        self.channel_index.remove(&channel.cid);
        self.free_channels.push(ch);
        Ok(())
    }

    // ----- watching -----

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

    fn watch(&mut self, now: Millis, c: Slot, ch: ChannelIdx, presence: bool) -> Result<()> {
        let was = self.channel(ch).watchers.get(&c).copied();
        if presence && was != Some(true) {
            let members = &self.channel(ch).members;
            let have = self.conn(c).subscriptions.len();
            // Counting only matters when the limit could be reached.
            let added = if have + members.len() <= self.config.max_subscriptions_per_connection as usize {
                0
            } else {
                self.new_distinct_subscriptions(c, members.iter().copied())
            };
            self.check_subscription_limit(c, added)?;
        }
        match was {
            Some(true) => return Ok(()),
            Some(false) if !presence => return Ok(()),
            Some(false) => {
                self.channel_mut(ch).watchers.insert(c, true);
                let conn = self.conn_mut(c);
                if let Some(entry) = conn.watching.iter_mut().find(|(x, _)| *x == ch) {
                    entry.1 = true;
                }
            }
            None => {
                let u = self.conn(c).user;
                let visible = !self.users[u as usize].invisible;
                let channel = self.channel_mut(ch);
                channel.watchers.insert(c, presence);
                let count = channel.watching_users.entry(u).or_insert(0);
                *count += 1;
                let first = *count == 1;
                if first && visible {
                    channel.visible_watchers += 1;
                }
                let (channel_ref, watcher_count) = (channel.reference(), channel.visible_watchers);
                self.conn_mut(c).watching.push((ch, presence));
                if first && visible {
                    let user = self.users[u as usize].snapshot();
                    self.emit(
                        now,
                        EventKind::WatchingStart { channel: channel_ref, user, watcher_count },
                        u,
                        Recipients::WatchersOf(ch),
                    );
                }
            }
        }
        if presence {
            let members = self.channel(ch).members.clone();
            for m in members {
                self.subscribe(c, m, false);
            }
        }
        Ok(())
    }

    /// Stops connection `c` watching a channel (a no-op when it was not watching).
    /// Cost: O(members) when it watched with presence, O(1) otherwise.
    pub fn stop_watching(&mut self, now: Millis, c: ConnectionId, cid: &str) -> Result<()> {
        let ch = self.channel_idx(cid)?;
        let c = self.slot(c)?;
        self.unwatch(now, c, ch);
        self.settle(now);
        Ok(())
    }

    fn unwatch(&mut self, now: Millis, c: Slot, ch: ChannelIdx) {
        let Some(presence) = self.channel_mut(ch).watchers.remove(&c) else {
            return;
        };
        let conn = self.conn_mut(c);
        let u = conn.user;
        conn.watching.retain(|&(x, _)| x != ch);
        if presence {
            let members = self.channel(ch).members.clone();
            for m in members {
                self.unsubscribe(c, m, false);
            }
        }
        let visible = !self.users[u as usize].invisible;
        let channel = self.channel_mut(ch);
        let count = channel.watching_users.get_mut(&u).expect("watcher counted");
        *count -= 1;
        if *count == 0 {
            channel.watching_users.remove(&u);
            if visible {
                channel.visible_watchers -= 1;
                let (channel_ref, watcher_count) = (channel.reference(), channel.visible_watchers);
                let user = self.users[u as usize].snapshot();
                self.emit(
                    now,
                    EventKind::WatchingStop { channel: channel_ref, user, watcher_count },
                    u,
                    Recipients::WatchersOf(ch),
                );
            }
        }
    }

    /// `{"channel", "members", "watcher_count", "watchers"}` as `viewer` sees it.
    /// Cost: O(members log members + watchers).
    fn channel_state(&self, viewer: Viewer, ch: ChannelIdx) -> ChannelState {
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

    fn viewed(&self, viewer: Viewer, u: UserIdx) -> ViewedUser {
        ViewedUser { user: self.users[u as usize].snapshot(), view: viewer.view_of(u) }
    }

    // ----- queries -----

    /// Answers `{"users": [...]}`. With `presence`, subscribes the viewer to every user
    /// returned. Cost: O(k) for `id $eq/$in` filters naming k ids, O(users) for any other
    /// filter, plus O(m log m) to sort the m matches.
    pub fn query_users(&mut self, viewer: ConnectionId, query: &Query) -> Result<UsersAnswer> {
        let who = self.viewer(viewer)?;
        if query.presence && matches!(who, Viewer::Host) {
            return Err(Error::invalid(
                "query_users: presence needs a connection as viewer, not the host (0)",
            ));
        }
        let candidates: Vec<UserIdx> = match query.candidate_keys() {
            Some(keys) => {
                let mut v: Vec<UserIdx> = keys.iter().filter_map(|k| self.find_user(k)).collect();
                v.sort_unstable();
                v.dedup();
                v
            }
            None => (0..self.users.len() as UserIdx).collect(),
        };
        let rows: Vec<UserRow> = candidates
            .into_iter()
            .map(|u| UserRow { user: &self.users[u as usize], idx: u, view: who.view_of(u) })
            .filter(|row| query.matches(row))
            .collect();
        let page: Vec<(UserIdx, ViewedUser)> =
            query.sort_and_page(rows).into_iter().map(|row| (row.idx, self.viewed(who, row.idx))).collect();
        if let (true, Viewer::Connection(c, _)) = (query.presence, who) {
            self.check_subscription_limit(
                c,
                self.new_distinct_subscriptions(c, page.iter().map(|(u, _)| *u)),
            )?;
            for (u, _) in &page {
                self.subscribe(c, *u, true);
            }
        }
        Ok(UsersAnswer { users: page.into_iter().map(|(_, v)| v).collect() })
    }

    /// Answers `{"channels": [state, ...]}`. With `watch` or `presence` the viewer watches
    /// every channel returned (with presence subscriptions when `presence`). Cost: O(k) for
    /// `cid $eq/$in` naming k channels, O(memberships of the named users) for `members $in`,
    /// O(channels) otherwise; plus sorting and rendering the page.
    pub fn query_channels(
        &mut self,
        now: Millis,
        viewer: ConnectionId,
        query: &Query,
    ) -> Result<ChannelsAnswer> {
        let who = self.viewer(viewer)?;
        let watch = query.watch || query.presence;
        if watch && matches!(who, Viewer::Host) {
            return Err(Error::invalid(
                "query_channels: watch and presence need a connection as viewer, not the host (0)",
            ));
        }
        let mut candidates: Vec<ChannelIdx> = if let Some(keys) = query.candidate_keys() {
            keys.iter().filter_map(|k| self.channel_index.get(k.as_str()).copied()).collect()
        } else if let Some(ids) = query.member_candidates() {
            ids.iter()
                .filter_map(|id| self.find_user(id))
                .flat_map(|u| self.users[u as usize].memberships.iter().copied())
                .collect()
        } else {
            self.channel_index.values().copied().collect()
        };
        candidates.sort_unstable();
        candidates.dedup();
        let rows: Vec<ChannelRow> = candidates
            .into_iter()
            .map(|ch| ChannelRow { channel: self.channel(ch), idx: ch, state: self })
            .filter(|row| query.matches(row))
            .collect();
        let page: Vec<ChannelIdx> = query.sort_and_page(rows).into_iter().map(|row| row.idx).collect();
        if let (true, Viewer::Connection(c, _)) = (watch, who) {
            if query.presence {
                let members = page.iter().flat_map(|&ch| {
                    let watched_with_presence = self.channel(ch).watchers.get(&c) == Some(&true);
                    self.channel(ch).members.iter().copied().filter(move |_| !watched_with_presence)
                });
                self.check_subscription_limit(c, self.new_subscriptions(c, members))?;
            }
            for &ch in &page {
                self.watch(now, c, ch, query.presence)?;
            }
            self.settle(now);
        }
        Ok(ChannelsAnswer { channels: page.into_iter().map(|ch| self.channel_state(who, ch)).collect() })
    }

    // ----- time -----

    /// Applies every timer due at `now`: heartbeat timeouts, offline grace expiry and
    /// last_active refresh. Cost: O(d log n) for d due timers; O(1) when nothing is due.
    pub fn tick(&mut self, now: Millis) {
        while let Some(&Reverse((due, timer))) = self.timers.peek() {
            if due > now {
                break;
            }
            self.timers.pop();
            match timer {
                Timer::Timeout(id) => {
                    let Ok(c) = self.slot(id) else {
                        continue; // closed already
                    };
                    let deadline =
                        self.conn(c).last_seen.saturating_add(self.config.connection_timeout_ms as Millis);
                    if deadline <= now {
                        self.close_connection(now, c, CloseReason::Timeout);
                    } else {
                        self.timers.push(Reverse((deadline, timer)));
                    }
                }
                Timer::Grace(u) => {
                    let user = &self.users[u as usize];
                    if user.grace_until == OptMillis(due) && user.connections.is_empty() {
                        let before = self.presence_before(u);
                        self.users[u as usize].grace_until = OptMillis::NONE;
                        self.user_changed(now, u, before, false);
                    }
                }
                Timer::Refresh(u) => {
                    let refresh = self.config.last_active_refresh_ms as Millis;
                    let user = &mut self.users[u as usize];
                    if user.connections.is_empty() || user.invisible {
                        user.refresh_armed = false;
                        continue;
                    }
                    let last = user.last_active.get().unwrap_or(now);
                    let next = if last.saturating_add(refresh) <= now {
                        user.last_active = OptMillis(now);
                        now.saturating_add(refresh)
                    } else {
                        last.saturating_add(refresh)
                    };
                    if next > now {
                        self.timers.push(Reverse((next, timer)));
                    } else {
                        // Time has saturated: there is no later moment to refresh at.
                        user.refresh_armed = false;
                    }
                }
            }
        }
        self.settle(now);
    }

    // ----- persistence -----

    /// Users and channels as the snapshot document `save` writes. Cost: O(everything).
    pub fn snapshot_value(&self) -> Value {
        let users: Vec<Value> = self
            .users
            .iter()
            .map(|u| {
                let mut v = u.snapshot().to_value(View::Own);
                if let Value::Object(m) = &mut v {
                    m.shift_remove("online");
                }
                v
            })
            .collect();
        let mut channels: Vec<&ChannelRecord> = self.channels.iter().flatten().collect();
        channels.sort_by(|a, b| a.cid.cmp(&b.cid));
        let channels: Vec<Value> = channels
            .into_iter()
            .map(|ch| {
                let mut v = serde_json::to_value(channel_snapshot(ch)).expect("a channel always serializes");
                let mut members: Vec<&str> =
                    ch.members.iter().map(|&u| &*self.users[u as usize].id).collect();
                members.sort_unstable();
                if let Value::Object(m) = &mut v {
                    m.insert("members".into(), json!(members));
                }
                v
            })
            .collect();
        json!({"format": "presence-engine", "version": SNAPSHOT_VERSION, "users": users, "channels": channels})
    }

    /// Replaces every user and channel with those of a snapshot document; all users start
    /// offline. Allowed only without connections. On error nothing changes.
    /// Cost: O(size of the snapshot).
    pub fn load_snapshot(&mut self, doc: &Value) -> Result<()> {
        if !self.connection_slots.is_empty() {
            return Err(Error::state(format!(
                "load needs an engine without connections; {} are open",
                self.connection_slots.len()
            )));
        }
        let mut fresh = State::new(self.config.clone());
        fresh.record_events = false;
        fresh.record_deliveries = false;
        // Whatever is wrong inside the file is a malformed document to the caller.
        fresh.read_snapshot(doc).map_err(|e| match e.kind() {
            ErrorKind::Json => e,
            _ => Error::json(format!("snapshot: {}", e.message())),
        })?;
        self.users = fresh.users;
        self.user_index = fresh.user_index;
        self.channels = fresh.channels;
        self.free_channels = fresh.free_channels;
        self.channel_index = fresh.channel_index;
        self.timers.clear();
        Ok(())
    }

    fn read_snapshot(&mut self, doc: &Value) -> Result<()> {
        let bad = |what: String| Error::json(format!("snapshot: {what}"));
        if doc.get("format").and_then(Value::as_str) != Some("presence-engine") {
            return Err(bad("not a presence-engine snapshot (\"format\" missing or wrong)".into()));
        }
        match doc.get("version").and_then(Value::as_u64) {
            Some(SNAPSHOT_VERSION) => {}
            other => return Err(bad(format!("unsupported version {other:?}, expected {SNAPSHOT_VERSION}"))),
        }
        let time = |m: &mut Map<String, Value>, key: &str| -> Result<Option<Millis>> {
            match m.shift_remove(key) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => parse_millis(&s).map(Some),
                Some(other) => Err(Error::json(format!("snapshot: {key} must be a timestamp, got {other}"))),
            }
        };
        let users = doc
            .get("users")
            .and_then(Value::as_array)
            .ok_or_else(|| bad("missing \"users\" array".into()))?;
        for user in users {
            let Value::Object(mut m) = user.clone() else {
                return Err(bad("a user is not an object".into()));
            };
            let last_active = time(&mut m, "last_active")?;
            let created_at = time(&mut m, "created_at")?.unwrap_or(0);
            let updated_at = time(&mut m, "updated_at")?.unwrap_or(created_at);
            let patch = UserPatch::from_value(Value::Object(m))?;
            if self.find_user(&patch.id).is_some() {
                return Err(bad(format!("user {:?} appears twice", patch.id)));
            }
            let custom = merge_custom("user", None, &patch.custom)?;
            let (u, _) = self.get_or_create_user(&patch.id, created_at);
            self.apply_patch(created_at, u, &patch, custom);
            let record = &mut self.users[u as usize];
            record.last_active = OptMillis::from(last_active);
            record.updated_at = updated_at;
        }
        let channels = doc
            .get("channels")
            .and_then(Value::as_array)
            .ok_or_else(|| bad("missing \"channels\" array".into()))?;
        for channel in channels {
            let Value::Object(mut m) = channel.clone() else {
                return Err(bad("a channel is not an object".into()));
            };
            let created_at = time(&mut m, "created_at")?.unwrap_or(0);
            let updated_at = time(&mut m, "updated_at")?.unwrap_or(created_at);
            m.shift_remove("member_count");
            m.shift_remove("type");
            m.shift_remove("id");
            let patch = ChannelPatch::from_json(&Value::Object(m).to_string())?;
            if self.channel_index.contains_key(patch.cid.as_str()) {
                return Err(bad(format!("channel {:?} appears twice", patch.cid)));
            }
            self.upsert_channel(created_at, &patch)?;
            let ch = self.channel_index[patch.cid.as_str()];
            let record = self.channel_mut(ch);
            record.created_at = created_at;
            record.updated_at = updated_at;
        }
        Ok(())
    }
}

/// One event on its way to its recipients.
struct FanOut<'a> {
    event: &'a Arc<Event>,
    subject: UserIdx,
    capacity: usize,
    record: bool,
    outbox: &'a mut Vec<Outgoing>,
    overflowed: &'a mut Vec<Slot>,
}

impl FanOut<'_> {
    /// Queues the event for connection `c` (own view when it belongs to the subject) and
    /// records the delivery for listeners; a full queue marks the connection overflowed
    /// instead. O(1).
    #[inline]
    fn deliver(&mut self, connections: &mut [Option<ConnectionRecord>], c: Slot) {
        let conn = live_mut(connections, c);
        if conn.overflowed {
            return;
        }
        let view = if conn.user == self.subject { View::Own } else { View::Public };
        let connection = conn.id;
        if self.capacity > 0 {
            if conn.queue.len() >= self.capacity {
                conn.overflowed = true;
                self.overflowed.push(c);
                return;
            }
            conn.queue.push_back(Delivery { event: self.event.clone(), connection, view });
        }
        if self.record {
            self.outbox.push(Outgoing::Delivery(Delivery { event: self.event.clone(), connection, view }));
        }
    }
}

/// The record in a slot that references say is live (they are removed when it closes).
fn live(connections: &[Option<ConnectionRecord>], c: Slot) -> &ConnectionRecord {
    connections[c as usize].as_ref().expect("slot of a live connection")
}

fn live_mut(connections: &mut [Option<ConnectionRecord>], c: Slot) -> &mut ConnectionRecord {
    connections[c as usize].as_mut().expect("slot of a live connection")
}

/// Removes the subscriber at `pos` of user `u`, fixing the position kept by the
/// connection that moved into its place. O(1).
fn remove_subscriber(
    users: &mut [UserRecord],
    connections: &mut [Option<ConnectionRecord>],
    u: UserIdx,
    pos: u32,
) {
    let subscribers = &mut users[u as usize].subscribers;
    subscribers.swap_remove(pos as usize);
    if let Some(&moved) = subscribers.get(pos as usize) {
        if let Some(sub) = live_mut(connections, moved).subscriptions.get_mut(&u) {
            sub.pos = pos;
        }
    }
}

fn channel_snapshot(ch: &ChannelRecord) -> ChannelSnapshot {
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

struct UserRow<'a> {
    user: &'a UserRecord,
    idx: UserIdx,
    view: View,
}

impl Record for UserRow<'_> {
    fn key(&self) -> &str {
        &self.user.id
    }
    fn field(&self, name: &str) -> Option<FieldValue<'_>> {
        let u = self.user;
        match name {
            "id" => Some(FieldValue::Str(&u.id)),
            "online" => Some(FieldValue::Bool(match self.view {
                View::Own => u.connected(),
                View::Public => u.public_online(),
            })),
            "status" => u.status.as_deref().map(FieldValue::Str),
            "last_active" => u.last_active.get().map(FieldValue::Time),
            "created_at" => Some(FieldValue::Time(u.created_at)),
            "updated_at" => Some(FieldValue::Time(u.updated_at)),
            other => u.custom.as_ref().and_then(|c| c.get(other)).map(FieldValue::Json),
        }
    }
    fn has_member(&self, _user_id: &str) -> bool {
        false
    }
}

struct ChannelRow<'a> {
    channel: &'a ChannelRecord,
    idx: ChannelIdx,
    state: &'a State,
}

impl Record for ChannelRow<'_> {
    fn key(&self) -> &str {
        &self.channel.cid
    }
    fn field(&self, name: &str) -> Option<FieldValue<'_>> {
        let ch = self.channel;
        match name {
            "cid" => Some(FieldValue::Str(&ch.cid)),
            "type" => Some(FieldValue::Str(&ch.cid[..ch.type_len])),
            "id" => Some(FieldValue::Str(&ch.cid[ch.type_len + 1..])),
            "member_count" => Some(FieldValue::Int(ch.members.len() as i64)),
            "created_at" => Some(FieldValue::Time(ch.created_at)),
            "updated_at" => Some(FieldValue::Time(ch.updated_at)),
            "last_message_at" => ch.last_message_at.map(FieldValue::Time),
            other => ch.custom.as_ref().and_then(|c| c.get(other)).map(FieldValue::Json),
        }
    }
    fn has_member(&self, user_id: &str) -> bool {
        self.state.find_user(user_id).is_some_and(|u| self.channel.member_pos.contains_key(&u))
    }
}
