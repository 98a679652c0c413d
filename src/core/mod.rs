//! The functional core: users, connections, channels, subscriptions and timers as plain
//! data. Each command takes the current time, applies one change (or, on error, none) and
//! appends the events it caused to an outbox. It knows nothing of locks, threads, callbacks,
//! C or file formats; [`crate::Engine`] is the shell around it.
//!
//! One child module per concern, each with its own `impl State` block; the records and the
//! helpers every concern shares (lookups, `emit`, `settle`) live here.
mod channels;
mod connections;
mod emission;
mod queries;
#[cfg(feature = "cluster")]
mod remote;
#[cfg(feature = "cluster")]
mod remote_channels;
mod replication;
mod snapshot;
mod subscriptions;
mod timers;
mod users;
mod watching;

pub(crate) use snapshot::{LoadedChannel, LoadedUser, Restore, Saved, SavedChannel};

use crate::channel::parse_cid;
use crate::config::Config;
use crate::error::{quote, Error, Result};
use crate::event::{ChannelRef, ConnectionId, Delivery, Event};
use crate::replication::Delta;
use crate::shared_str::SharedStr;
use crate::time::Millis;
use crate::user::{CustomFields, UserSnapshot, View};
use crossbeam_channel::{Sender, TrySendError};
use hashbrown::{HashMap, HashTable};
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

/// Something for the shell to dispatch, in `seq` order: an event, then its deliveries.
/// The deliveries of one event follow it and share it, so fan-out copies no reference
/// to the event per recipient.
#[derive(Debug, Clone)]
pub(crate) enum Outgoing {
    /// An event; `host`: for host listeners (otherwise it only heads its deliveries).
    Event { event: Arc<Event>, host: bool },
    /// A delivery of the nearest event before it.
    Delivery { connection: ConnectionId, view: View },
}

impl Outgoing {
    /// Whether the item is a listener call (a host event or a delivery), as
    /// `pending_dispatch_capacity` counts them; an event heading deliveries only is not.
    pub fn is_call(&self) -> bool {
        !matches!(self, Outgoing::Event { host: false, .. })
    }
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

/// Hashes the ids clients choose (user ids, cids) for the user and channel indexes:
/// SipHash-1-3 with keys drawn from the operating system's randomness per index, the
/// standard library's `RandomState`. Without the keys, nobody can choose ids that collide
/// (which would turn each O(1) lookup into a scan of the colliding ids); the fast seeded
/// hash used elsewhere for engine-assigned numbers does not claim that against an
/// attacker who can observe timings.
type IdHasher = std::hash::RandomState;

/// Finds a user by id. A hash table of 4-byte indexes hashed by the id stored in the
/// record, instead of a map keyed by a second pointer to the id: about 40 bytes less per user.
#[derive(Default)]
struct UserIndex {
    table: HashTable<UserIdx>,
    hasher: IdHasher,
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
    id: SharedStr,
    /// See `UserSnapshot::key`.
    key: u64,
    status: Option<SharedStr>,
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
    /// Channels the user is a member of; positions are kept in each channel's
    /// `Member::membership` so removal is O(1).
    memberships: ThinVec<ChannelIdx>,
    /// Cluster mode: live connections the user holds on other nodes.
    remote_connections: u32,
    /// Cluster mode: the user's version in the shared store, as last applied here.
    #[cfg_attr(not(feature = "cluster"), allow(dead_code))]
    version: u64,
}

impl UserRecord {
    fn new(id: SharedStr, key: u64, now: Millis) -> Self {
        UserRecord {
            id,
            key,
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
            remote_connections: 0,
            version: 0,
        }
    }
    fn connected(&self) -> bool {
        !self.connections.is_empty() || self.remote_connections > 0 || self.grace_until != OptMillis::NONE
    }
    fn public_online(&self) -> bool {
        self.connected() && !self.invisible
    }
    fn snapshot(&self) -> UserSnapshot {
        UserSnapshot {
            id: self.id.clone(),
            key: self.key,
            status: self.status.clone(),
            custom: self.custom.clone(),
            invisible: self.invisible,
            connected: self.connected(),
            last_active: self.last_active.get(),
            created_at: self.created_at,
            updated_at: self.updated_at,
        }
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

/// A live connection. The fields fan-out reads for every delivery come first and share
/// one cache line (the record is aligned to it): a recipient costs one line of its record
/// and one of its queue, not two or three lines of a record straddling them.
#[repr(C, align(64))]
struct ConnectionRecord {
    queue: VecDeque<Delivery>,
    /// Where the connection's deliveries go instead of `queue` while its receiver lives
    /// (`Engine::subscribe`); bounded by the same capacity.
    sink: Option<Sender<Delivery>>,
    id: ConnectionId,
    user: UserIdx,
    /// The queue overflowed; the connection closes when the command settles.
    overflowed: bool,
    last_seen: Millis,
    /// Channels watched; positions are kept in each channel's `Watcher::pos` so removal
    /// is O(1).
    watching: ThinVec<ChannelIdx>,
    subscriptions: HashMap<UserIdx, Subscription>,
}

impl ConnectionRecord {
    /// Queues a delivery in the sink, or in `queue` when there is no live sink; answers
    /// false when the queue or sink is full. Always inlined into the fan-out's loop.
    #[inline(always)]
    fn enqueue(&mut self, mut delivery: Delivery, capacity: usize) -> bool {
        if let Some(sink) = &self.sink {
            match sink.try_send(delivery) {
                Ok(()) => return true,
                Err(TrySendError::Full(_)) => return false,
                // The receiver was dropped: the subscription ends, the queue takes over.
                Err(TrySendError::Disconnected(back)) => {
                    self.sink = None;
                    delivery = back;
                }
            }
        }
        if self.queue.len() >= capacity {
            return false;
        }
        self.queue.push_back(delivery);
        true
    }
}

struct ChannelRecord {
    cid: SharedStr,
    type_len: usize,
    custom: Option<Arc<CustomFields>>,
    created_at: Millis,
    updated_at: Millis,
    last_message_at: Option<Millis>,
    members: Vec<UserIdx>,
    member_pos: HashMap<UserIdx, Member>,
    /// Watching connections of this node.
    watchers: HashMap<Slot, Watcher>,
    /// Connections watching (of this node and, in cluster mode, of others), counted per user.
    watching_users: HashMap<UserIdx, u32>,
    /// Distinct visible users among the watchers.
    visible_watchers: u32,
    /// Cluster mode: the store's sequence number of the last change applied here.
    #[cfg_attr(not(feature = "cluster"), allow(dead_code))]
    version: u64,
}

/// Where a member sits: in the channel's `members`, and in the user's `memberships`.
#[derive(Clone, Copy)]
struct Member {
    pos: u32,
    membership: u32,
}

/// One connection watching a channel.
#[derive(Clone, Copy)]
struct Watcher {
    /// With presence subscriptions to the members.
    presence: bool,
    /// Index of the channel in the connection's `watching`.
    pos: u32,
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

/// Who receives an event beyond the host listeners (events for host listeners only go
/// through `State::emit_to_host`).
enum Recipients {
    SubscribersOf(UserIdx),
    /// The subscribers of a user that are that user's own connections (own views only).
    OwnSubscribersOf(UserIdx),
    WatchersOf(ChannelIdx),
}

/// A user's presence as others and as the user see it, taken before a change to decide
/// what to emit.
struct PresenceBefore {
    /// Online in public views.
    online: bool,
    /// Online in the own view (live connections or the offline grace).
    connected: bool,
    status: Option<SharedStr>,
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
    channel_index: HashMap<SharedStr, ChannelIdx, IdHasher>,
    timers: BinaryHeap<Reverse<(Millis, Timer)>>,
    next_connection: u64,
    /// The key of the next user created or loaded: keys are never given twice.
    next_user_key: u64,
    seq: u64,
    outbox: Vec<Outgoing>,
    /// How many items of `outbox` are listener calls.
    outbox_calls: usize,
    overflowed: Vec<Slot>,
    /// The slots of the connections a `poll_many_into` drains, found before any moves
    /// (kept for its room).
    poll_slots: Vec<Slot>,
    /// Cluster mode: what this node changed, for the shared store (`None`: not replicating).
    replication: Option<Vec<Delta>>,
    /// Cluster mode: per user, the channels watched by connections on other nodes and how
    /// many of those connections watch each (they count in `watching_users` too).
    remote_watched: HashMap<UserIdx, HashMap<ChannelIdx, u32>>,
    /// Cluster mode: watches of this node's connections that a channel deletion read from
    /// the store ended while the connection's own watch was still on its way there (with
    /// the presence flag); the watch comes back when the store confirms it.
    dropped_watches: HashMap<(ConnectionId, SharedStr), bool>,
    /// Record events for host listeners in the outbox.
    pub record_events: bool,
    /// Record deliveries for delivery listeners in the outbox.
    pub record_deliveries: bool,
}

/// Puts `item` into a free place of `items` (or a new one at the end), answering its index.
fn place<T>(items: &mut Vec<Option<T>>, free: &mut Vec<u32>, item: T) -> u32 {
    match free.pop() {
        Some(i) => {
            items[i as usize] = Some(item);
            i
        }
        None => {
            items.push(Some(item));
            (items.len() - 1) as u32
        }
    }
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
            channel_index: HashMap::default(),
            timers: BinaryHeap::new(),
            next_connection: 1,
            next_user_key: 1,
            seq: 0,
            outbox: Vec::new(),
            outbox_calls: 0,
            overflowed: Vec::new(),
            poll_slots: Vec::new(),
            replication: None,
            remote_watched: HashMap::new(),
            dropped_watches: HashMap::new(),
            record_events: true,
            record_deliveries: true,
        }
    }

    /// Takes the events and deliveries emitted since the last call, in `seq` order.
    #[cfg(all(test, feature = "cluster"))]
    pub fn take_outbox(&mut self) -> Vec<Outgoing> {
        self.outbox_calls = 0;
        std::mem::take(&mut self.outbox)
    }

    /// Drains the events and deliveries emitted since the last call, in `seq` order, with
    /// how many of them are listener calls, keeping the outbox's room: a command's events
    /// cost no allocation once the outbox has held as many.
    pub fn drain_outbox(&mut self) -> (std::vec::Drain<'_, Outgoing>, usize) {
        let calls = std::mem::take(&mut self.outbox_calls);
        (self.outbox.drain(..), calls)
    }

    /// Takes the events and deliveries emitted since the last call, in `seq` order, with
    /// how many of them are listener calls, leaving `room` (an empty vector, its capacity
    /// reused) as the outbox. O(1).
    pub fn swap_outbox(&mut self, room: Vec<Outgoing>) -> (Vec<Outgoing>, usize) {
        debug_assert!(room.is_empty());
        (std::mem::replace(&mut self.outbox, room), std::mem::take(&mut self.outbox_calls))
    }

    /// The `seq` of the latest event emitted (0 before the first).
    pub fn seq(&self) -> u64 {
        self.seq
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
        self.find_user(id).ok_or_else(|| Error::not_found(format!("unknown user {}", quote(id))))
    }

    fn channel_idx(&self, cid: &str) -> Result<ChannelIdx> {
        parse_cid(cid)?;
        self.channel_index
            .get(cid)
            .copied()
            .ok_or_else(|| Error::not_found(format!("unknown channel {}", quote(cid))))
    }

    fn channel(&self, ch: ChannelIdx) -> &ChannelRecord {
        self.channels[ch as usize].as_ref().expect("channel index points at a live channel")
    }

    fn channel_mut(&mut self, ch: ChannelIdx) -> &mut ChannelRecord {
        self.channels[ch as usize].as_mut().expect("channel index points at a live channel")
    }

    /// The slot of a live connection. O(1) expected.
    fn slot(&self, c: ConnectionId) -> Result<Slot> {
        self.connection_slots
            .get(&c)
            .copied()
            .ok_or_else(|| Error::not_found(format!("unknown connection {c}")))
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
        match self.find_user(id) {
            Some(u) => (u, false),
            None => (self.create_user(id, now), true),
        }
    }

    /// Creates user `id`, which must not exist yet.
    fn create_user(&mut self, id: &str, now: Millis) -> UserIdx {
        let u = self.users.len() as UserIdx;
        let key = self.next_user_key;
        self.next_user_key += 1;
        self.users.push(UserRecord::new(SharedStr::new(id), key, now));
        self.user_index.insert(&self.users, u);
        u
    }
}

/// The record in a slot that references say is live (they are removed when it closes).
fn live(connections: &[Option<ConnectionRecord>], c: Slot) -> &ConnectionRecord {
    connections[c as usize].as_ref().expect("slot of a live connection")
}

fn live_mut(connections: &mut [Option<ConnectionRecord>], c: Slot) -> &mut ConnectionRecord {
    connections[c as usize].as_mut().expect("slot of a live connection")
}

/// Asks the processor to start loading the cache line at `p` while other work goes on: a
/// hint that changes no result (and does nothing where no stable prefetch instruction
/// exists). For the records fan-out is about to read, which are otherwise each a cache
/// miss waited for in turn.
#[inline(always)]
fn prefetch<T>(p: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch reads nothing the program sees and never faults, whatever the
    // address.
    unsafe {
        std::arch::x86_64::_mm_prefetch(p.cast(), std::arch::x86_64::_MM_HINT_T0)
    };
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

#[cfg(test)]
mod tests {
    use super::{ConnectionRecord, State, UserIndex};
    use crate::config::Config;
    use crate::event::{ConnectionId, Delivery};
    use crossbeam_channel::Sender;
    use std::collections::VecDeque;
    use std::hash::BuildHasher;
    use std::mem::{offset_of, size_of};

    #[test]
    fn fan_out_reads_one_cache_line_of_a_connection_record() {
        let ends = [
            offset_of!(ConnectionRecord, queue) + size_of::<VecDeque<Delivery>>(),
            offset_of!(ConnectionRecord, sink) + size_of::<Option<Sender<Delivery>>>(),
            offset_of!(ConnectionRecord, id) + size_of::<ConnectionId>(),
            offset_of!(ConnectionRecord, user) + size_of::<u32>(),
            offset_of!(ConnectionRecord, overflowed) + size_of::<bool>(),
        ];
        assert!(ends.iter().all(|&end| end <= 64), "{ends:?}");
        // Two lines per slot, the second for what only commands on the connection touch.
        assert_eq!(size_of::<Option<ConnectionRecord>>(), 128);
    }

    /// Draining a very long list of connections keeps no room for it afterwards; a usual
    /// list's room is kept for the next call.
    #[test]
    fn draining_a_long_list_keeps_no_room_for_it() {
        let mut s = State::new(Config::default());
        let c = s.connect(0, "u", crate::user::UserChanges::default()).unwrap();
        let mut out = VecDeque::new();
        assert_eq!(s.poll_many_into(&[c; 100], 10, &mut out).unwrap(), 0);
        assert!(s.poll_slots.capacity() >= 100);
        assert_eq!(s.poll_many_into(&vec![c; 1_000_000], 10, &mut out).unwrap(), 0);
        assert_eq!(s.poll_slots.capacity(), 0);
    }

    /// Each index draws its own secret keys, so the hash of an id cannot be known in
    /// advance (and colliding ids cannot be chosen) from outside the process.
    #[test]
    fn id_indexes_are_keyed_per_instance() {
        let (a, b) = (UserIndex::default(), UserIndex::default());
        let differ =
            (0..8).map(|i| format!("user{i}")).any(|id| a.hasher.hash_one(&id) != b.hasher.hash_one(&id));
        assert!(differ);
        let (s, t) = (State::new(Config::default()), State::new(Config::default()));
        assert_ne!(
            s.channel_index.hasher().hash_one("team:red"),
            t.channel_index.hasher().hash_one("team:red")
        );
    }
}
