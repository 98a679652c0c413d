//! The imperative shell: one lock around the core's `State`, a clock, and the operations
//! of [`Engine`]. Listeners live in `listeners`, delivery to them after the lock is
//! released in `dispatch`.
#[cfg(feature = "cluster")]
mod cluster;
mod dispatch;
mod listeners;
mod receivers;

pub use dispatch::{ListenerPanics, EXTRA_ITEMS};
pub(crate) use listeners::DeliveryRun;
pub use listeners::{ListenerFilter, ListenerId};
pub(crate) use receivers::EventsGuard;
pub use receivers::MAX_RECEIVER_BOUND;

use crate::answer::{ChannelState, ChannelsAnswer, UsersAnswer, ViewedUser};
use crate::channel::{parse_user_ids_json, ChannelPatch};
use crate::config::{Clock, Config, Dispatch};
use crate::core::{Outgoing, Restore, State};
use crate::error::{Error, Result};
use crate::event::{ConnectionId, Delivery, Event, EventKind};
use crate::persist;
use crate::query::{Query, Target};
use crate::time::{check_millis, system_now, Millis};
use crate::user::{UserChanges, UserPatch};
use dispatch::Dispatcher;
use listeners::Registry;
use parking_lot::{Mutex, MutexGuard};
use serde_json::Value;
use std::collections::VecDeque;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::path::Path;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

/// How many users, live connections and channels an engine holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counts {
    /// Users known to the engine, online or not.
    pub users: usize,
    /// Live connections.
    pub connections: usize,
    /// Channels.
    pub channels: usize,
}

struct Inner {
    state: State,
    /// Events and their deliveries waiting for dispatch, in `seq` order. Never starts with
    /// a delivery: whoever takes an event off the front while its deliveries stay puts the
    /// event back to head them (for delivery listeners only).
    outbox: VecDeque<Outgoing>,
    /// How many items of `outbox` are listener calls (what `pending_dispatch_capacity`
    /// bounds).
    outbox_calls: usize,
    /// Manual clock time, or the last system time seen (so time never moves backwards).
    now: Millis,
    /// Host deliveries discarded from the front of `outbox` since the last dispatch (past
    /// `pending_dispatch_capacity`), and the `seq` of the newest of them.
    discarded: u64,
    discarded_seq: u64,
    /// Set when a command panicked: its change may be half-applied, so every later call
    /// answers `STATE`.
    poisoned: bool,
}

impl Inner {
    /// Discards the oldest listener calls beyond `capacity`, counting them for the
    /// `engine.overflow` event that the next dispatch delivers first. O(discarded).
    fn bound_outbox(&mut self, capacity: usize) {
        if self.outbox_calls <= capacity {
            return;
        }
        let mut head = None;
        while self.outbox_calls > capacity {
            let Some(item) = self.outbox.pop_front() else { break };
            let is_call = item.is_call();
            if let Outgoing::Event { event, .. } = item {
                head = Some(event);
            }
            if is_call {
                self.outbox_calls -= 1;
                self.discarded += 1;
                self.discarded_seq = head.as_ref().map_or(self.discarded_seq, |e| e.seq);
            }
        }
        self.head_rest(|| head);
    }

    /// Moves up to `max` items (at least two) from the front of the outbox into `items`,
    /// after the `engine.overflow` event if listener calls were discarded. Answers how
    /// many, and whether that emptied the outbox.
    fn take_front(&mut self, clock: Clock, items: &mut Vec<Outgoing>, max: usize) -> (usize, bool) {
        let max = max.max(2);
        let overflow = self.take_overflow(clock);
        if overflow.is_none() && items.is_empty() && self.outbox.len() <= max {
            // The whole outbox: exchange the buffers instead of moving item by item.
            let room = VecDeque::from(std::mem::take(items));
            *items = Vec::from(std::mem::replace(&mut self.outbox, room));
            self.outbox_calls = 0;
            return (items.len(), true);
        }
        let overflowed = overflow.is_some() as usize;
        items.extend(overflow);
        let n = (max - overflowed).min(self.outbox.len());
        let mut calls = 0;
        items.extend(self.outbox.drain(..n).inspect(|item| calls += item.is_call() as usize));
        self.outbox_calls -= calls;
        self.head_rest(|| {
            items.iter().rev().find_map(|item| match item {
                Outgoing::Event { event, .. } => Some(event.clone()),
                Outgoing::Delivery { .. } => None,
            })
        });
        (n + overflowed, self.outbox.is_empty())
    }

    /// Keeps the outbox from starting with a delivery after its front was cut inside an
    /// event's run: that event (`last_taken`, the last event taken off the front, asked
    /// for only then) heads the rest again, for delivery listeners only.
    fn head_rest(&mut self, last_taken: impl FnOnce() -> Option<Arc<Event>>) {
        if let Some(Outgoing::Delivery { .. }) = self.outbox.front() {
            if let Some(event) = last_taken() {
                self.outbox.push_front(Outgoing::Event { event, host: false });
            }
        }
    }

    /// The `engine.overflow` event for what was discarded, if anything was.
    fn take_overflow(&mut self, clock: Clock) -> Option<Outgoing> {
        if self.discarded == 0 {
            return None;
        }
        let dropped = std::mem::take(&mut self.discarded);
        let created_at = self.now(clock);
        let kind = EventKind::EngineOverflow { dropped };
        Some(Outgoing::Event {
            event: Arc::new(Event::new(self.discarded_seq, created_at, kind)),
            host: true,
        })
    }

    fn now(&mut self, clock: Clock) -> Millis {
        if clock == Clock::System {
            self.now = self.now.max(system_now());
        }
        self.now
    }
}

/// A presence engine. Thread-safe: every method takes `&self`; share it with `Arc`.
///
/// State changes happen inside a short critical section; callbacks run afterwards, never
/// under the lock, never concurrently, in `seq` order. With [`Dispatch::Immediate`] a call
/// delivers what it caused before it returns, on its own thread, unless another thread is
/// delivering at that moment: then that thread delivers it, and the call returns without
/// waiting for anyone's callbacks. A call delivers at most what it caused plus
/// [`EXTRA_ITEMS`] more (what callbacks caused, what other threads left); anything beyond
/// waits for the next call or [`Engine::pump`]. With [`Dispatch::Manual`] callbacks run
/// only inside [`Engine::pump`].
///
/// If a command panics (an internal bug), the panic propagates from that call and the
/// engine is poisoned: every later call answers [`ErrorKind::State`](crate::ErrorKind).
///
/// In cluster mode the engine also runs one background thread, the link to the shared
/// store; changes from other nodes are applied and dispatched on it like local ones.
pub struct Engine {
    shared: Arc<Shared>,
    #[cfg(feature = "cluster")]
    cluster: Option<cluster::ClusterLink>,
}

/// What the engine's handle and the cluster link thread share. [`Engine`] dereferences
/// to it, so the engine's operations read as if these were its own fields.
pub struct Shared {
    config: Config,
    inner: Mutex<Inner>,
    listeners: Mutex<Registry>,
    next_listener: AtomicU64,
    dispatcher: Dispatcher,
    /// Makes the next command panic, to test poisoning.
    #[cfg(test)]
    panic_next: std::sync::atomic::AtomicBool,
    /// Cluster mode: the link thread, woken when a command recorded deltas so that they
    /// leave at once instead of at its next poll.
    link_thread: std::sync::OnceLock<std::thread::Thread>,
}

impl std::ops::Deref for Engine {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.shared
    }
}

impl Engine {
    /// A new engine; in cluster mode its link thread starts too (the store is reached from
    /// that thread: an unreachable store is reported, not an error). Cost: O(1).
    pub fn new(config: Config) -> Result<Engine> {
        config.validate()?;
        let mut state = State::new(config.clone());
        state.record_events = false;
        state.record_deliveries = false;
        if config.cluster.is_some() {
            state.enable_replication();
        }
        let now = match config.clock {
            Clock::Manual => config.start_time_ms,
            Clock::System => system_now(),
        };
        let shared = Arc::new(Shared {
            config,
            inner: Mutex::new(Inner {
                state,
                outbox: VecDeque::new(),
                outbox_calls: 0,
                now,
                discarded: 0,
                discarded_seq: 0,
                poisoned: false,
            }),
            listeners: Mutex::new(Registry::default()),
            next_listener: AtomicU64::new(1),
            dispatcher: Dispatcher::default(),
            #[cfg(test)]
            panic_next: std::sync::atomic::AtomicBool::new(false),
            link_thread: std::sync::OnceLock::new(),
        });
        #[cfg(feature = "cluster")]
        let cluster = match &shared.config.cluster {
            Some(c) => Some(cluster::ClusterLink::start(&shared, c)?),
            None => None,
        };
        Ok(Engine {
            shared,
            #[cfg(feature = "cluster")]
            cluster,
        })
    }

    /// A new engine from config JSON (`None`: defaults). Cost: O(len).
    pub fn from_json(config_json: Option<&str>) -> Result<Engine> {
        Engine::new(match config_json {
            Some(json) => Config::from_json(json)?,
            None => Config::default(),
        })
    }

    /// The configuration the engine was created with. Cost: O(1).
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The engine's current time in Unix milliseconds. Cost: O(1).
    pub fn now(&self) -> Millis {
        self.inner.lock().now(self.config.clock)
    }

    /// `{"mode":"cluster","node_id","link":"up"|"down"|"fenced","nodes_alive","pending_writes",
    /// "last_error"}` in cluster mode, `{"mode":"single"}` otherwise. Cost: O(1).
    pub fn cluster_status(&self) -> Value {
        #[cfg(feature = "cluster")]
        if let Some(link) = &self.cluster {
            return link.status();
        }
        serde_json::json!({"mode": "single"})
    }

    /// Refuses a sticky write while too many changes wait for an unreachable store.
    fn check_store_room(&self) -> Result<()> {
        #[cfg(feature = "cluster")]
        if let Some(link) = &self.cluster {
            return link.check_room();
        }
        Ok(())
    }
}

impl Shared {
    /// The state lock, unless a command panicked under it earlier.
    fn lock(&self) -> Result<MutexGuard<'_, Inner>> {
        let inner = self.inner.lock();
        if inner.poisoned {
            return Err(Error::state(
                "the engine is poisoned: an earlier call panicked inside it and may have left its state half-changed",
            ));
        }
        Ok(inner)
    }

    /// Runs one command under the lock, queues what it emitted, then dispatches (immediate
    /// mode): callbacks run after the lock is released. A panicking command poisons the engine and
    /// propagates.
    fn run<T>(&self, command: impl FnOnce(&mut State, Millis) -> Result<T>) -> Result<T> {
        let (result, queued, inner) = {
            let mut inner = self.lock()?;
            let now = inner.now(self.config.clock);
            let state = &mut inner.state;
            let outcome = catch_unwind(AssertUnwindSafe(|| {
                #[cfg(test)]
                if self.panic_next.swap(false, std::sync::atomic::Ordering::Relaxed) {
                    panic!("a command failed inside the engine");
                }
                command(state, now)
            }));
            let result = match outcome {
                Ok(result) => result,
                Err(payload) => {
                    inner.poisoned = true;
                    drop(inner);
                    resume_unwind(payload);
                }
            };
            if let Some(link) = self.link_thread.get() {
                if inner.state.has_deltas() {
                    link.unpark();
                }
            }
            let Inner { state, outbox, outbox_calls, .. } = &mut *inner;
            let queued = if outbox.is_empty() {
                // The usual case (the last dispatch took everything): the emitted vector
                // becomes the outbox and the outbox's room goes back to the state, so
                // nothing is copied or allocated.
                let room = Vec::from(std::mem::take(outbox));
                let (emitted, calls) = state.swap_outbox(room);
                *outbox = VecDeque::from(emitted);
                *outbox_calls = calls;
                outbox.len()
            } else {
                let (emitted, calls) = state.drain_outbox();
                let queued = emitted.len();
                outbox.extend(emitted);
                *outbox_calls += calls;
                queued
            };
            inner.bound_outbox(self.config.pending_dispatch_capacity as usize);
            if queued > 0 {
                self.appended();
            }
            (result, queued, inner)
        };
        if queued > 0 && self.config.dispatch == Dispatch::Immediate {
            // The dispatch run takes its first items under this hold of the lock.
            self.dispatch_locked(queued + EXTRA_ITEMS, inner);
        }
        result
    }
}

impl Engine {
    /// Makes the next command panic inside the lock, as an internal bug would.
    #[cfg(test)]
    pub(crate) fn panic_in_next_command(&self) {
        self.panic_next.store(true, std::sync::atomic::Ordering::Relaxed);
    }

    // ----- users -----

    /// Upserts the user and opens a connection. Cost: O(input + subscribers of the user).
    pub fn connect(&self, user: &UserPatch) -> Result<ConnectionId> {
        if user.status.is_some() || user.invisible.is_some() || !user.custom.is_empty() {
            self.check_store_room()?;
        }
        self.run(|s, now| s.connect(now, &user.id, user.changes()))
    }

    /// Opens a connection for user `user_id`, creating the user with only its id if
    /// unknown (an existing user keeps its status, invisibility and custom fields):
    /// [`Engine::connect`] with [`UserPatch::id`], without building the patch. Errors as
    /// `connect`'s: an invalid id, `max_connections_per_user`. Cost: O(len of the id +
    /// subscribers of the user); allocates nothing for the id of a known user.
    pub fn connect_user(&self, user_id: &str) -> Result<ConnectionId> {
        self.run(|s, now| s.connect(now, user_id, UserChanges::default()))
    }

    /// [`Engine::connect`] from user JSON. Cost: O(len + subscribers of the user).
    pub fn connect_json(&self, user_json: &str) -> Result<ConnectionId> {
        let patch = UserPatch::from_json(user_json)?;
        self.connect(&patch)
    }

    /// Closes a connection (reason `disconnect`). Cost: O(channels watched + subscriptions
    /// held + subscribers of its user).
    pub fn disconnect(&self, connection: ConnectionId) -> Result<()> {
        self.run(|s, now| s.disconnect(now, connection))
    }

    /// Records a sign of life for `connection_timeout_ms`. Cost: O(1).
    pub fn heartbeat(&self, connection: ConnectionId) -> Result<()> {
        let mut inner = self.lock()?;
        let now = inner.now(self.config.clock);
        inner.state.heartbeat(now, connection)
    }

    /// Creates or merges a user (top-level merge). Cost: O(input + subscribers of the user).
    pub fn upsert_user(&self, user: &UserPatch) -> Result<()> {
        self.check_store_room()?;
        self.run(|s, now| s.upsert_user(now, user))
    }

    /// [`Engine::upsert_user`] from JSON; parsing adds O(len).
    pub fn upsert_user_json(&self, user_json: &str) -> Result<()> {
        let patch = UserPatch::from_json(user_json)?;
        self.upsert_user(&patch)
    }

    /// Sets or clears the sticky invisible flag. Cost: O(subscribers + channels watched).
    pub fn set_invisible(&self, user_id: &str, invisible: bool) -> Result<()> {
        self.check_store_room()?;
        self.run(|s, now| s.set_invisible(now, user_id, invisible))
    }

    /// Sets (`Some`) or clears (`None`) the status. Cost: O(subscribers of the user).
    pub fn set_status(&self, user_id: &str, status: Option<&str>) -> Result<()> {
        self.check_store_room()?;
        self.run(|s, now| s.set_status(now, user_id, status))
    }

    /// The user in the view `viewer` is entitled to (`ConnectionId::HOST`: the host, own
    /// view). Cost: O(1) under the lock; rendering with [`Answer`](crate::Answer) happens
    /// afterwards in O(size of the user).
    pub fn get_user(&self, viewer: ConnectionId, user_id: &str) -> Result<ViewedUser> {
        self.lock()?.state.get_user(viewer, user_id)
    }

    // ----- channels -----

    /// Creates or merges a channel, adding the members it names. Cost: O(input + members
    /// added × presence watchers).
    pub fn upsert_channel(&self, channel: &ChannelPatch) -> Result<()> {
        self.check_store_room()?;
        self.run(|s, now| s.upsert_channel(now, channel))
    }

    /// [`Engine::upsert_channel`] from JSON; parsing adds O(len).
    pub fn upsert_channel_json(&self, channel_json: &str) -> Result<()> {
        let patch = ChannelPatch::from_json(channel_json)?;
        self.upsert_channel(&patch)
    }

    /// Adds members, creating unknown users. Cost: O(ids × presence watchers).
    pub fn add_members(&self, cid: &str, user_ids: &[String]) -> Result<()> {
        self.check_store_room()?;
        self.run(|s, now| s.add_members(now, cid, user_ids))
    }

    /// [`Engine::add_members`] from a JSON array of ids; parsing adds O(len).
    pub fn add_members_json(&self, cid: &str, user_ids_json: &str) -> Result<()> {
        let ids = parse_user_ids_json(user_ids_json)?;
        self.add_members(cid, &ids)
    }

    /// Removes members. Cost: O(ids × (presence watchers + memberships of the user)).
    pub fn remove_members(&self, cid: &str, user_ids: &[String]) -> Result<()> {
        self.check_store_room()?;
        self.run(|s, now| s.remove_members(now, cid, user_ids))
    }

    /// [`Engine::remove_members`] from a JSON array of ids; parsing adds O(len).
    pub fn remove_members_json(&self, cid: &str, user_ids_json: &str) -> Result<()> {
        let ids = parse_user_ids_json(user_ids_json)?;
        self.remove_members(cid, &ids)
    }

    /// Deletes a channel; watchers stop watching without events. Cost: O(members ×
    /// presence watchers).
    pub fn delete_channel(&self, cid: &str) -> Result<()> {
        self.check_store_room()?;
        self.run(|s, _| s.delete_channel(cid))
    }

    /// Makes a connection watch a channel (with presence subscriptions to its members when
    /// `presence`) and answers the channel state: members and watchers in the views this
    /// connection may see. Cost: O(members log members) under the lock; rendering with
    /// [`Answer`](crate::Answer) happens afterwards in O(members).
    pub fn watch_channel(&self, connection: ConnectionId, cid: &str, presence: bool) -> Result<ChannelState> {
        self.run(|s, now| s.watch_channel(now, connection, cid, presence, true))
            .map(|state| state.expect("a rendering watch answers a state"))
    }

    /// [`Engine::watch_channel`] without the answer, for callers that do not read it.
    /// Cost: O(members) with presence, O(1) without.
    pub fn start_watching(&self, connection: ConnectionId, cid: &str, presence: bool) -> Result<()> {
        self.run(|s, now| s.watch_channel(now, connection, cid, presence, false)).map(|_| ())
    }

    /// Stops watching (a no-op when not watching). Cost: O(members) with presence, O(1)
    /// without.
    pub fn stop_watching(&self, connection: ConnectionId, cid: &str) -> Result<()> {
        self.run(|s, now| s.stop_watching(now, connection, cid))
    }

    /// Ends the `query_users` presence route from a connection to a user. Cost: O(1).
    pub fn unsubscribe_user(&self, connection: ConnectionId, user_id: &str) -> Result<()> {
        self.run(|s, _| s.unsubscribe_user(connection, user_id))
    }

    /// Stream-style user query: `{"users": [...]}`. With `"presence": true` the viewer is
    /// subscribed to every user returned. Cost: O(k) for `id $in` naming k ids, O(users)
    /// for other filters, plus sorting the matches; rendering with [`Answer`](crate::Answer)
    /// happens after the lock, in O(page).
    pub fn query_users(&self, viewer: ConnectionId, query_json: &str) -> Result<UsersAnswer> {
        let query = Query::parse(Target::Users, query_json, self.config.query_limit_max as usize)?;
        self.run(|s, _| s.query_users(viewer, &query))
    }

    /// Stream-style channel query: `{"channels": [...]}`. With `"watch": true` or
    /// `"presence": true` the viewer watches every channel returned. Cost: O(k) for
    /// `cid $in`, O(memberships) for `members $in`, O(channels) otherwise, plus sorting;
    /// rendering with [`Answer`](crate::Answer) happens after the lock, in O(page).
    pub fn query_channels(&self, viewer: ConnectionId, query_json: &str) -> Result<ChannelsAnswer> {
        let query = Query::parse(Target::Channels, query_json, self.config.query_limit_max as usize)?;
        self.run(|s, now| s.query_channels(now, viewer, &query))
    }

    // ----- events -----

    /// Drains up to `max` events from a connection's queue, oldest first. Cost: O(max).
    pub fn poll_events(&self, connection: ConnectionId, max: usize) -> Result<Vec<Delivery>> {
        self.lock()?.state.poll(connection, max)
    }

    /// [`Engine::poll_events`] into a queue the caller reuses: moves up to `max` events
    /// onto the end of `out`, answering how many moved. When `out` is empty and all the
    /// queued events are asked for, the connection's queue and `out` trade places (the
    /// connection keeps `out`'s room), so draining everything each frame costs O(1) under
    /// the lock and allocates nothing once the rooms have grown. Otherwise O(moved),
    /// allocating nothing once `out` has room.
    pub fn poll_events_into(
        &self,
        connection: ConnectionId,
        max: usize,
        out: &mut VecDeque<Delivery>,
    ) -> Result<usize> {
        self.lock()?.state.poll_into(connection, max, out)
    }

    /// [`Engine::poll_events_into`] for several connections under one hold of the lock:
    /// moves up to `max_each` events of each of `connections`, in list order (each
    /// connection's oldest first), onto the end of `out`, answering how many moved. Each
    /// [`Delivery`] names its connection. A host that drains many connections each frame
    /// pays the lock, and in C the call, once instead of per connection. Every id is checked
    /// first: an unknown or closed one fails the call (`NOT_FOUND`) with nothing moved. A
    /// connection listed twice is drained twice. Cost: O(connections + moved), allocating
    /// nothing once `out` has room.
    pub fn poll_events_many_into(
        &self,
        connections: &[ConnectionId],
        max_each: usize,
        out: &mut VecDeque<Delivery>,
    ) -> Result<usize> {
        self.lock()?.state.poll_many_into(connections, max_each, out)
    }

    /// Runs, on this thread, the callbacks of the events waiting for dispatch when it is
    /// called, plus at most [`EXTRA_ITEMS`] more that callbacks cause; answers how many
    /// callbacks ran. In immediate mode there is normally little waiting. Answers 0 from
    /// inside a callback, and while another thread is delivering (that thread delivers).
    /// Cost: O(events × matching listeners).
    pub fn pump(&self) -> u32 {
        let waiting = self.inner.lock().outbox.len();
        self.dispatch(waiting + EXTRA_ITEMS)
    }

    // ----- time -----

    /// Applies timeouts, grace expiry and last_active refresh that are due. Fails only on
    /// a poisoned engine. Cost: O(d log n) for d due timers; O(1) when nothing is due.
    pub fn tick(&self) -> Result<()> {
        self.run(|s, now| {
            s.tick(now);
            Ok(())
        })
    }

    /// Moves the manual clock to `unix_ms` (never backwards: `STATE`; outside
    /// [`crate::time::MIN_MILLIS`]..=[`crate::time::MAX_MILLIS`]: `INVALID`). Cost: O(1);
    /// apply what became due with [`Engine::tick`].
    pub fn set_time(&self, unix_ms: Millis) -> Result<()> {
        if self.config.clock != Clock::Manual {
            return Err(Error::state("set_time needs \"clock\": \"manual\""));
        }
        check_millis("set_time:", unix_ms)?;
        let mut inner = self.lock()?;
        if unix_ms < inner.now {
            return Err(Error::state(format!(
                "time cannot move backwards: now {}, asked {unix_ms}",
                inner.now
            )));
        }
        inner.now = unix_ms;
        Ok(())
    }

    // ----- persistence -----

    /// Writes users and channels to `path` atomically (temporary file with an unpredictable
    /// name in the same folder, fsync, rename, fsync of the folder). `path` must name a
    /// regular file or nothing: a folder, device, FIFO or symlink answers `IO` and is left
    /// alone. Cost under the lock: O(users + channels) reference-count increments and a copy
    /// of each channel's member positions, about 0.2 µs per user (mostly cache misses); the
    /// document is sorted, rendered and streamed to the file after the lock is released, in
    /// memory O(users + channels) beyond the shared data.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let saved = self.lock()?.state.save();
        persist::save(path.as_ref(), saved)
    }

    /// Replaces users and channels with those saved at `path`; everyone starts offline.
    /// Only while no connection is open (`STATE`). Only a regular file is read (`IO`
    /// otherwise, without blocking on a FIFO), of at most [`Config::max_snapshot_bytes`]
    /// (`LIMIT`). The file is parsed and the new state built before the lock is taken;
    /// the lock is held only to swap it in. A user still inside the offline grace leaves it
    /// first with the events its expiry emits. On error the engine is unchanged.
    /// Cost: O(size of the file), memory proportional to it.
    pub fn load(&self, path: impl AsRef<Path>) -> Result<()> {
        if self.config.cluster.is_some() {
            return Err(Error::state(
                "load is not allowed in cluster mode: the shared store is the source of truth",
            ));
        }
        let open = self.lock()?.state.connection_count();
        if open > 0 {
            return Err(Error::state(format!("load needs an engine without connections; {open} are open")));
        }
        let mut restore = Restore::new(self.config.clone());
        persist::load(path.as_ref(), self.config.max_snapshot_bytes, &mut restore)?;
        self.run(|s, now| s.replace(now, restore))
    }

    /// Numbers of users, connections and channels (also of a poisoned engine). Cost: O(1).
    pub fn counts(&self) -> Counts {
        let inner = self.inner.lock();
        Counts {
            users: inner.state.user_count(),
            connections: inner.state.connection_count(),
            channels: inner.state.channel_count(),
        }
    }
}
