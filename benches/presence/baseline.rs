//! The floor: a deliberately minimal single-threaded implementation of the same
//! bookkeeping as the engine — a hash map from user id to a user with a connection
//! counter, plain vectors of subscribers (with positions for O(1) removal, as the engine
//! keeps), channels as vectors of members, watchers as vectors — with no validation, no
//! event objects (a 24-byte `Copy` struct per delivery), no JSON and no locking.
//!
//! It does the same logical work as the engine for every operation the workloads use:
//! the same recipients get the same number of deliveries in the same order, `seq` is
//! counted, subscriptions are reference-counted per (connection, user) so a connection
//! subscribed through several channels gets each event once, the per-user watcher count
//! decides `user.watching.*`, the last_active refresh timers live in a binary heap.
//! Simplifications, none of which the workloads exercise: every watch is a presence
//! watch, members are never removed, ids are trusted, a full queue only counts the
//! overflow.
// Answers are built in full (as an API answer would be) even where nothing reads a field.
#![allow(dead_code)]
use hashbrown::hash_map::Entry;
use hashbrown::HashMap;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::rc::Rc;

pub type Millis = i64;
/// "Never": a missing timestamp.
pub const NEVER: Millis = i64::MIN;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Presence,
    WatchingStart,
    WatchingStop,
}

/// One delivery: 24 bytes, the size of the engine's `Delivery`.
#[derive(Debug, Clone, Copy)]
pub struct BEvent {
    pub seq: u64,
    pub user: u32,
    pub channel: u32,
    pub kind: Kind,
    pub online: bool,
}

/// What a delivery listener receives.
pub struct BDelivery<'a> {
    pub event: &'a BEvent,
    pub connection: u64,
}

/// A user as a viewer sees it (owned, like an API answer).
#[derive(Debug, Clone)]
pub struct View {
    pub id: Rc<str>,
    pub online: bool,
    pub invisible: bool,
    pub status: Option<Box<str>>,
    pub last_active: Millis,
}

pub struct ChannelState {
    pub cid: Rc<str>,
    pub member_count: usize,
    pub members: Vec<View>,
    pub watcher_count: u32,
    pub watchers: Vec<View>,
}

pub struct User {
    pub id: Rc<str>,
    pub conns: u32,
    pub invisible: bool,
    refresh_armed: bool,
    pub status: Option<Box<str>>,
    pub last_active: Millis,
    pub updated_at: Millis,
    pub subscribers: Vec<u64>,
    pub memberships: Vec<u32>,
}

struct Sub {
    refs: u32,
    pos: u32,
}

struct Conn {
    user: u32,
    last_seen: Millis,
    queue: VecDeque<BEvent>,
    watching: Vec<u32>,
    subs: HashMap<u32, Sub>,
}

pub struct Channel {
    pub cid: Rc<str>,
    pub members: Vec<u32>,
    pub watchers: Vec<u64>,
    watching_users: HashMap<u32, u32>,
    visible_watchers: u32,
    last_message_at: Millis,
}

type Listener = Box<dyn Fn(&BDelivery)>;

pub struct Baseline {
    pub users: Vec<User>,
    index: HashMap<Rc<str>, u32>,
    conns: HashMap<u64, Conn>,
    next_conn: u64,
    pub channels: Vec<Channel>,
    channel_index: HashMap<Rc<str>, u32>,
    timers: BinaryHeap<Reverse<(Millis, u32)>>,
    refresh_ms: Millis,
    seq: u64,
    queue_capacity: usize,
    pub overflows: u64,
    listeners: Vec<Listener>,
}

/// Pushes one delivery to connection `c` (queue and listeners).
fn deliver(
    conns: &mut HashMap<u64, Conn>,
    listeners: &[Listener],
    capacity: usize,
    overflows: &mut u64,
    c: u64,
    ev: &BEvent,
) {
    let Some(conn) = conns.get_mut(&c) else {
        return;
    };
    if capacity > 0 {
        if conn.queue.len() < capacity {
            conn.queue.push_back(*ev);
        } else {
            *overflows += 1;
        }
    }
    for l in listeners {
        l(&BDelivery { event: ev, connection: c });
    }
}

/// Removes subscriber position `pos` of user `u`, fixing the moved subscriber's position.
fn remove_subscriber(users: &mut [User], conns: &mut HashMap<u64, Conn>, u: u32, pos: u32) {
    let subscribers = &mut users[u as usize].subscribers;
    subscribers.swap_remove(pos as usize);
    if let Some(&moved) = subscribers.get(pos as usize) {
        if let Some(sub) = conns.get_mut(&moved).and_then(|c| c.subs.get_mut(&u)) {
            sub.pos = pos;
        }
    }
}

impl Baseline {
    pub fn new(refresh_ms: Millis, queue_capacity: usize) -> Baseline {
        Baseline {
            users: Vec::new(),
            index: HashMap::new(),
            conns: HashMap::new(),
            next_conn: 1,
            channels: Vec::new(),
            channel_index: HashMap::new(),
            timers: BinaryHeap::new(),
            refresh_ms,
            seq: 0,
            queue_capacity,
            overflows: 0,
            listeners: Vec::new(),
        }
    }

    pub fn add_delivery_listener(&mut self, l: impl Fn(&BDelivery) + 'static) {
        self.listeners.push(Box::new(l));
    }

    pub fn connection_count(&self) -> usize {
        self.conns.len()
    }

    /// The user's index, creating the user when unknown.
    pub fn register(&mut self, id: &str, now: Millis) -> u32 {
        if let Some(&u) = self.index.get(id) {
            return u;
        }
        let id: Rc<str> = Rc::from(id);
        let u = self.users.len() as u32;
        self.users.push(User {
            id: id.clone(),
            conns: 0,
            invisible: false,
            refresh_armed: false,
            status: None,
            last_active: NEVER,
            updated_at: now,
            subscribers: Vec::new(),
            memberships: Vec::new(),
        });
        self.index.insert(id, u);
        u
    }

    fn emit_to_subscribers(&mut self, ev: BEvent, u: u32) {
        let Baseline { users, conns, listeners, queue_capacity, overflows, .. } = self;
        for &c in &users[u as usize].subscribers {
            deliver(conns, listeners, *queue_capacity, overflows, c, &ev);
        }
    }

    fn emit_to_watchers(&mut self, ev: BEvent, ch: u32) {
        let Baseline { channels, conns, listeners, queue_capacity, overflows, .. } = self;
        for &c in &channels[ch as usize].watchers {
            deliver(conns, listeners, *queue_capacity, overflows, c, &ev);
        }
    }

    fn presence_event(&mut self, u: u32, channel: u32, kind: Kind) -> BEvent {
        self.seq += 1;
        let user = &self.users[u as usize];
        BEvent { seq: self.seq, user: u, channel, kind, online: user.conns > 0 && !user.invisible }
    }

    pub fn connect(&mut self, id: &str, now: Millis) -> u64 {
        let u = self.register(id, now);
        let c = self.next_conn;
        self.next_conn += 1;
        self.conns.insert(
            c,
            Conn {
                user: u,
                last_seen: now,
                queue: VecDeque::new(),
                watching: Vec::new(),
                subs: HashMap::new(),
            },
        );
        let user = &mut self.users[u as usize];
        user.conns += 1;
        let first = user.conns == 1;
        if !user.invisible {
            user.last_active = now;
            if !user.refresh_armed {
                user.refresh_armed = true;
                self.timers.push(Reverse((now + self.refresh_ms, u)));
            }
            if first {
                let ev = self.presence_event(u, u32::MAX, Kind::Presence);
                self.emit_to_subscribers(ev, u);
            }
        }
        c
    }

    pub fn heartbeat(&mut self, c: u64, now: Millis) -> bool {
        match self.conns.get_mut(&c) {
            Some(conn) => {
                conn.last_seen = now;
                true
            }
            None => false,
        }
    }

    fn view(&self, u: u32) -> View {
        let user = &self.users[u as usize];
        View {
            id: user.id.clone(),
            online: user.conns > 0,
            invisible: user.invisible,
            status: user.status.clone(),
            last_active: user.last_active,
        }
    }

    /// The host's (own) view of a user.
    pub fn get_user(&self, id: &str) -> Option<View> {
        self.index.get(id).map(|&u| self.view(u))
    }

    pub fn set_status(&mut self, id: &str, status: Option<&str>, now: Millis) -> bool {
        let Some(&u) = self.index.get(id) else {
            return false;
        };
        let user = &mut self.users[u as usize];
        let new: Option<Box<str>> = status.map(Box::from);
        if user.status != new {
            user.status = new;
            user.updated_at = now;
            let ev = self.presence_event(u, u32::MAX, Kind::Presence);
            self.emit_to_subscribers(ev, u);
        }
        true
    }

    pub fn create_channel(&mut self, cid: &str) -> u32 {
        let cid: Rc<str> = Rc::from(cid);
        let ch = self.channels.len() as u32;
        self.channels.push(Channel {
            cid: cid.clone(),
            members: Vec::new(),
            watchers: Vec::new(),
            watching_users: HashMap::new(),
            visible_watchers: 0,
            last_message_at: NEVER,
        });
        self.channel_index.insert(cid, ch);
        ch
    }

    /// Adds a member (creating the user when unknown); presence watchers subscribe to it.
    pub fn add_member(&mut self, cid: &str, id: &str, now: Millis) {
        let ch = self.channel_index[cid];
        let u = self.register(id, now);
        self.channels[ch as usize].members.push(u);
        self.users[u as usize].memberships.push(ch);
        let Baseline { channels, conns, users, .. } = self;
        for &c in &channels[ch as usize].watchers {
            if let Some(conn) = conns.get_mut(&c) {
                subscribe(users, conn, c, u);
            }
        }
        // member.added to the watchers: counted like the engine's event, delivered to the
        // watchers when there are any (there are none in the workloads' setup).
        self.seq += 1;
    }

    /// Presence-watches a channel (idempotent).
    pub fn watch(&mut self, c: u64, cid: &str) {
        let ch = self.channel_index[cid];
        let Baseline { users, conns, channels, .. } = self;
        let Some(conn) = conns.get_mut(&c) else {
            return;
        };
        if conn.watching.contains(&ch) {
            return;
        }
        conn.watching.push(ch);
        let u = conn.user;
        let channel = &mut channels[ch as usize];
        channel.watchers.push(c);
        for &m in &channel.members {
            subscribe(users, conn, c, m);
        }
        let count = channel.watching_users.entry(u).or_insert(0);
        *count += 1;
        let start = *count == 1 && !users[u as usize].invisible;
        if start {
            channel.visible_watchers += 1;
            let ev = self.presence_event(u, ch, Kind::WatchingStart);
            self.emit_to_watchers(ev, ch);
        }
    }

    fn unwatch(&mut self, c: u64, ch: u32) {
        let Baseline { users, conns, channels, .. } = self;
        let Some(conn) = conns.get_mut(&c) else {
            return;
        };
        let Some(i) = conn.watching.iter().position(|&x| x == ch) else {
            return;
        };
        conn.watching.swap_remove(i);
        let u = conn.user;
        // Work on the subscription map outside the connection table, so the positions of
        // other connections can be fixed while it is borrowed.
        let mut subs = std::mem::take(&mut conn.subs);
        let channel = &mut channels[ch as usize];
        if let Some(i) = channel.watchers.iter().position(|&x| x == c) {
            channel.watchers.swap_remove(i);
        }
        for &m in &channel.members {
            if let Some(sub) = subs.get_mut(&m) {
                sub.refs -= 1;
                if sub.refs == 0 {
                    let pos = sub.pos;
                    subs.remove(&m);
                    remove_subscriber(users, conns, m, pos);
                }
            }
        }
        conns.get_mut(&c).expect("live").subs = subs;
        let count = channel.watching_users.get_mut(&u).expect("counted");
        *count -= 1;
        let stop = *count == 0;
        if stop {
            channel.watching_users.remove(&u);
        }
        let stop = stop && !users[u as usize].invisible;
        if stop {
            channel.visible_watchers -= 1;
            let ev = self.presence_event(u, ch, Kind::WatchingStop);
            self.emit_to_watchers(ev, ch);
        }
    }

    /// A direct subscription, as `query_users` with `presence: true` makes.
    pub fn subscribe_direct(&mut self, c: u64, id: &str) {
        let u = self.index[id];
        if let Some(conn) = self.conns.get_mut(&c) {
            subscribe(&mut self.users, conn, c, u);
        }
    }

    pub fn disconnect(&mut self, c: u64, now: Millis) -> bool {
        let Some(conn) = self.conns.get_mut(&c) else {
            return false;
        };
        let watching = std::mem::take(&mut conn.watching);
        for &ch in &watching {
            // `unwatch` looks the channel up in `watching`; put it back one at a time.
            self.conns.get_mut(&c).expect("live").watching.push(ch);
            self.unwatch(c, ch);
        }
        let conn = self.conns.remove(&c).expect("live");
        for (m, sub) in conn.subs {
            remove_subscriber(&mut self.users, &mut self.conns, m, sub.pos);
        }
        let u = conn.user;
        let user = &mut self.users[u as usize];
        user.conns -= 1;
        if user.conns == 0 && !user.invisible {
            user.last_active = now;
            let ev = self.presence_event(u, u32::MAX, Kind::Presence);
            self.emit_to_subscribers(ev, u);
        }
        self.seq += 1; // connection.closed, to host listeners only
        true
    }

    /// Drains up to `max` queued deliveries.
    pub fn poll(&mut self, c: u64, max: usize) -> Vec<BEvent> {
        match self.conns.get_mut(&c) {
            Some(conn) => {
                let n = max.min(conn.queue.len());
                conn.queue.drain(..n).collect()
            }
            None => Vec::new(),
        }
    }

    /// Applies the last_active refresh timers due at `now`; answers how many were due.
    pub fn tick(&mut self, now: Millis) -> usize {
        let mut due_count = 0;
        while let Some(&Reverse((due, u))) = self.timers.peek() {
            if due > now {
                break;
            }
            self.timers.pop();
            due_count += 1;
            let user = &mut self.users[u as usize];
            if user.conns == 0 || user.invisible {
                user.refresh_armed = false;
                continue;
            }
            let next = if user.last_active + self.refresh_ms <= now {
                user.last_active = now;
                now + self.refresh_ms
            } else {
                user.last_active + self.refresh_ms
            };
            self.timers.push(Reverse((next, u)));
        }
        due_count
    }

    fn by_last_active_desc(&self, a: u32, b: u32) -> std::cmp::Ordering {
        let (ua, ub) = (&self.users[a as usize], &self.users[b as usize]);
        // Missing values last, then descending, then id ascending.
        (ua.last_active == NEVER)
            .cmp(&(ub.last_active == NEVER))
            .then(ub.last_active.cmp(&ua.last_active))
            .then_with(|| ua.id.cmp(&ub.id))
    }

    /// Users named by `ids`, sorted by last_active descending, at most `limit`.
    pub fn query_users(&self, ids: &[&str], limit: usize) -> Vec<View> {
        let mut rows: Vec<u32> = ids.iter().filter_map(|id| self.index.get(*id).copied()).collect();
        rows.sort_unstable();
        rows.dedup();
        rows.sort_unstable_by(|&a, &b| self.by_last_active_desc(a, b));
        rows.truncate(limit);
        rows.into_iter().map(|u| self.view(u)).collect()
    }

    /// Channels with any of `ids` as a member, by last_message_at descending then cid,
    /// at most `limit`, each rendered with its members and watchers sorted by id.
    pub fn query_channels(&self, ids: &[&str], limit: usize) -> Vec<ChannelState> {
        let mut chs: Vec<u32> = ids
            .iter()
            .filter_map(|id| self.index.get(*id))
            .flat_map(|&u| self.users[u as usize].memberships.iter().copied())
            .collect();
        chs.sort_unstable();
        chs.dedup();
        chs.sort_unstable_by(|&a, &b| {
            let (ca, cb) = (&self.channels[a as usize], &self.channels[b as usize]);
            (ca.last_message_at == NEVER)
                .cmp(&(cb.last_message_at == NEVER))
                .then(cb.last_message_at.cmp(&ca.last_message_at))
                .then_with(|| ca.cid.cmp(&cb.cid))
        });
        chs.truncate(limit);
        chs.into_iter()
            .map(|ch| {
                let channel = &self.channels[ch as usize];
                let by_id = |a: &u32, b: &u32| self.users[*a as usize].id.cmp(&self.users[*b as usize].id);
                let mut members = channel.members.clone();
                members.sort_unstable_by(by_id);
                let mut watchers: Vec<u32> = channel
                    .watching_users
                    .keys()
                    .copied()
                    .filter(|&u| !self.users[u as usize].invisible)
                    .collect();
                watchers.sort_unstable_by(by_id);
                ChannelState {
                    cid: channel.cid.clone(),
                    member_count: channel.members.len(),
                    members: members.into_iter().map(|u| self.view(u)).collect(),
                    watcher_count: channel.visible_watchers,
                    watchers: watchers.into_iter().map(|u| self.view(u)).collect(),
                }
            })
            .collect()
    }
}

/// Adds one route from connection `c` to user `m`.
fn subscribe(users: &mut [User], conn: &mut Conn, c: u64, m: u32) {
    match conn.subs.entry(m) {
        Entry::Occupied(mut e) => e.get_mut().refs += 1,
        Entry::Vacant(e) => {
            let subscribers = &mut users[m as usize].subscribers;
            subscribers.push(c);
            e.insert(Sub { refs: 1, pos: (subscribers.len() - 1) as u32 });
        }
    }
}
