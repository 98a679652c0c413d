//! The link between one engine and the shared store, as a state machine driven by
//! [`Link::step`]: it keeps the node's lease, writes what the node changed, reads what the
//! others changed, reaps dead nodes, and recovers from outages, fencing and data loss.
//! It is generic over the [`Store`], so the simulation drives the same code as Redis.
use super::store::{
    member, shard_of, Beat, Entry, Registration, Store, StoreError, StoreResult, Stored, StoredChange,
    StoredChannel, StoredOp, StoredWatch, SHARDS,
};
use crate::event::ConnectionId;
use crate::replication::{
    ChannelChange, ChannelDelta, ChannelOp, ConnectionChange, Delta, Remote, RemoteChange, RemoteChannel,
};
use crate::shared_str::SharedStr;
use crate::time::Millis;
use parking_lot::Mutex;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// The state of the link, as `cluster.status` and `presence_cluster_status` report it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkStatus {
    Up,
    Down,
    /// Declared dead by the others; this node took a new incarnation and re-announced.
    Fenced,
}

impl LinkStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            LinkStatus::Up => "up",
            LinkStatus::Down => "down",
            LinkStatus::Fenced => "fenced",
        }
    }
}

/// What one [`Link::step`] achieved, for pacing the loop that drives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// Wrote or read something: step again at once.
    Busy,
    /// Up, with nothing to do: wait for news before the next step.
    Idle,
    /// The store is unreachable (or refused this incarnation): retry after a pause.
    Down,
}

/// The engine as the link sees it.
pub trait Replica {
    /// Moves the deltas this node made since the last call into `into`, in order.
    fn take_deltas(&self, into: &mut Vec<Delta>);
    /// Applies changes made elsewhere, in the store's order, and delivers their events.
    fn apply_remote(&self, changes: Vec<Remote>);
    /// The cids of every channel this node knows.
    fn channel_ids(&self) -> Vec<SharedStr>;
    /// Forgets the store versions of every user: the store lost its data and counts anew.
    fn forget_versions(&self);
    /// Deltas that re-create this node's part of the store: one per live connection and
    /// per watch and, with `shared`, every user's and channel's shared fields (written only
    /// where the store lacks them).
    fn announcement(&self, shared: bool) -> Vec<Delta>;
    /// The link changed state.
    fn link_changed(&self, status: LinkStatus);
}

/// What the link reports to `presence_cluster_status`, readable from any thread.
#[derive(Debug, Clone, PartialEq)]
pub struct LinkReport {
    pub status: LinkStatus,
    pub nodes_alive: u32,
    pub last_error: Option<String>,
}

/// State shared between the link and the engine.
pub struct LinkShared {
    pub report: Mutex<LinkReport>,
    /// Deltas waiting to be written; the engine refuses sticky writes past the bound.
    pub pending: AtomicUsize,
}

impl LinkShared {
    pub fn new() -> Arc<Self> {
        Arc::new(LinkShared {
            report: Mutex::new(LinkReport { status: LinkStatus::Down, nodes_alive: 0, last_error: None }),
            pending: AtomicUsize::new(0),
        })
    }
}

/// How the link behaves.
#[derive(Debug, Clone)]
pub struct LinkSettings {
    pub node: String,
    pub heartbeat_ms: u64,
    pub lease_ms: u64,
    /// Most log entries read per shard in one step.
    pub read_batch: usize,
    /// Most deltas written in one step, so a long queue (a burst, or what waited through
    /// an outage) never holds back the lease renewal and the reads.
    pub write_batch: usize,
}

/// See the module documentation.
pub struct Link<S: Store> {
    store: S,
    settings: LinkSettings,
    shared: Arc<LinkShared>,
    registration: Option<Registration>,
    /// The last log entry applied, per shard.
    cursors: [u64; SHARDS],
    pending: VecDeque<Delta>,
    next_beat: Millis,
    /// The last status reported through the replica.
    reported: Option<LinkStatus>,
    /// The store epoch this node last registered under.
    last_epoch: Option<String>,
    /// Declared dead: report `fenced` once registered anew.
    fenced: bool,
    /// The store lost its data: register anew and re-announce every user.
    store_lost: bool,
    epoch_seed: u64,
}

impl<S: Store> Link<S> {
    pub fn new(store: S, settings: LinkSettings, shared: Arc<LinkShared>, epoch_seed: u64) -> Self {
        Link {
            store,
            settings,
            shared,
            registration: None,
            cursors: [0; SHARDS],
            pending: VecDeque::new(),
            next_beat: Millis::MIN,
            reported: None,
            last_epoch: None,
            fenced: false,
            store_lost: false,
            epoch_seed,
        }
    }

    /// One round at local time `now`: take new deltas, keep the lease, write, read. Cost: O(deltas + entries read), plus a
    /// snapshot of a shard when this node fell behind its log.
    pub fn step(&mut self, replica: &dyn Replica, now: Millis) -> Progress {
        let mut fresh = Vec::new();
        replica.take_deltas(&mut fresh);
        let up = self.registration.is_some() && self.reported == Some(LinkStatus::Up);
        for delta in fresh {
            self.enqueue(delta, up);
        }
        let busy = !self.pending.is_empty();
        let result = self.round(replica, now);
        self.shared.pending.store(self.pending.len(), Ordering::Relaxed);
        match result {
            Ok(read) => {
                self.report(replica, LinkStatus::Up, None);
                if busy || read {
                    Progress::Busy
                } else {
                    Progress::Idle
                }
            }
            Err(StoreError::Fenced) => {
                // Refused mid-write: the next round registers anew and re-announces.
                self.fenced = true;
                self.registration = None;
                self.shared.report.lock().status = LinkStatus::Fenced;
                Progress::Busy
            }
            Err(StoreError::Lost) => {
                self.store_lost = true;
                self.registration = None;
                Progress::Busy
            }
            Err(e @ StoreError::Down(_)) => {
                // Back up, the lease and the epoch are checked before anything is written.
                self.next_beat = Millis::MIN;
                self.report(replica, LinkStatus::Down, Some(e.to_string()));
                Progress::Down
            }
        }
    }

    /// Queues a delta. While the link is down an open and a close of the same connection
    /// cancel out (the open stays as a bare change of its user only if nothing earlier
    /// waits for that user, so a user created meanwhile still reaches the store), and so do
    /// a start and a stop of the same watch, which keeps what waits bounded by the live
    /// connections, their watches and the users and channels touched. Cost: O(1) while up,
    /// O(pending) per close or stop while down.
    fn enqueue(&mut self, delta: Delta, up: bool) {
        if !up && self.cancelled(&delta) {
            return;
        }
        self.pending.push_back(delta);
    }

    /// Whether `delta` cancels out against what waits (see [`Link::enqueue`]).
    fn cancelled(&mut self, delta: &Delta) -> bool {
        match delta {
            Delta::User(delta) => {
                let Some(ConnectionChange::Closed(c)) = delta.connection else { return false };
                let opened = self.pending.iter().rposition(
                    |d| matches!(d, Delta::User(d) if d.connection == Some(ConnectionChange::Opened(c))),
                );
                let bare_open = |d: &Delta| matches!(d, Delta::User(d) if d.fields.is_empty());
                let Some(pos) = opened.filter(|&p| bare_open(&self.pending[p]) && delta.fields.is_empty())
                else {
                    return false;
                };
                if self.pending.iter().take(pos).any(|d| matches!(d, Delta::User(d) if d.user == delta.user))
                {
                    self.pending.remove(pos);
                } else if let Delta::User(bare) = &mut self.pending[pos] {
                    bare.connection = None;
                    bare.last_active = delta.last_active.or(bare.last_active);
                }
                true
            }
            Delta::Channel(ChannelDelta {
                cid,
                op: ChannelOp::Watch { connection, start: false, .. },
                ..
            }) => {
                let started = self.pending.iter().rposition(|d| {
                    matches!(d, Delta::Channel(d) if d.cid == *cid
                        && matches!(d.op, ChannelOp::Watch { connection: c, start: true, .. } if c == *connection))
                });
                started.map(|pos| self.pending.remove(pos)).is_some()
            }
            Delta::Channel(_) => false,
        }
    }

    /// Answers whether log entries were read.
    fn round(&mut self, replica: &dyn Replica, now: Millis) -> StoreResult<bool> {
        if self.registration.is_none() {
            self.register(replica)?;
            self.next_beat = now.saturating_add(self.settings.heartbeat_ms as Millis);
        } else if now >= self.next_beat {
            self.beat(replica)?;
            self.next_beat = now.saturating_add(self.settings.heartbeat_ms as Millis);
        }
        self.flush()?;
        self.catch_up(replica)
    }

    /// Takes a new incarnation, re-announces this node's connections (and, after the store
    /// lost its data, every user) ahead of what waits, and rebuilds every shard.
    fn register(&mut self, replica: &dyn Replica) -> StoreResult<()> {
        self.epoch_seed = self.epoch_seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let fresh_epoch = format!("{:016x}", self.epoch_seed);
        let registration = self.store.register(&self.settings.node, self.settings.lease_ms, &fresh_epoch)?;
        let lost = self.store_lost || self.last_epoch.as_ref().is_some_and(|e| *e != registration.epoch);
        self.store_lost = false;
        if lost {
            replica.forget_versions();
            self.cursors = [0; SHARDS];
        }
        self.last_epoch = Some(registration.epoch.clone());
        self.registration = Some(registration);
        let announce = replica.announcement(lost);
        for delta in announce.into_iter().rev() {
            self.pending.push_front(delta);
        }
        // Everything before the rebuild, so the snapshots hold what this node announced.
        while !self.pending.is_empty() {
            self.flush()?;
        }
        for shard in 0..SHARDS {
            self.rebuild(replica, shard)?;
        }
        if std::mem::take(&mut self.fenced) {
            replica.link_changed(LinkStatus::Fenced);
        }
        Ok(())
    }

    fn beat(&mut self, replica: &dyn Replica) -> StoreResult<()> {
        let registration = self.registration.as_ref().expect("beating while registered");
        let me = member(&self.settings.node, registration.incarnation);
        match self.store.beat(&me, self.settings.lease_ms, &registration.epoch)? {
            Beat::Renewed { alive, expired, now } => {
                self.shared.report.lock().nodes_alive = alive;
                for dead in expired {
                    self.store.reap(&dead, now, self.settings.lease_ms)?;
                }
                Ok(())
            }
            Beat::Fenced => {
                self.fenced = true;
                self.registration = None;
                self.register(replica)
            }
            Beat::EpochChanged => {
                self.store_lost = true;
                self.registration = None;
                self.register(replica)
            }
        }
    }

    /// Writes what waits, in order, at most `write_batch` deltas. Cost: one pipeline.
    fn flush(&mut self) -> StoreResult<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let registration = self.registration.as_ref().expect("writing while registered");
        let deltas = self.pending.make_contiguous();
        let deltas = &deltas[..deltas.len().min(self.settings.write_batch)];
        let (done, result) = self.store.write(&self.settings.node, registration, deltas);
        self.pending.drain(..done);
        result
    }

    /// Applies the log entries that follow each shard's cursor; a shard whose next entry
    /// is missing (trimmed past, or lost) is rebuilt from a snapshot instead.
    fn catch_up(&mut self, replica: &dyn Replica) -> StoreResult<bool> {
        let entries = self.store.read(&self.cursors, self.settings.read_batch)?;
        let read = !entries.is_empty();
        let mut changes = Vec::with_capacity(entries.len());
        let mut gaps = [false; SHARDS];
        for Entry { shard, seq, changes: stored } in entries {
            if gaps[shard] || seq <= self.cursors[shard] {
                continue;
            }
            if seq != self.cursors[shard] + 1 {
                gaps[shard] = true;
                continue;
            }
            self.cursors[shard] = seq;
            // A channel change has an entry of its own, so `seq` is its version.
            changes.extend(stored.into_iter().filter_map(|change| self.remote(change, seq)));
        }
        if !changes.is_empty() {
            replica.apply_remote(changes);
        }
        for shard in (0..SHARDS).filter(|&s| gaps[s]) {
            self.rebuild(replica, shard)?;
        }
        Ok(read)
    }

    /// Replaces what this node holds of a shard by a snapshot of it: every user and
    /// channel in it, and the channels this node knows there that the store no longer has.
    fn rebuild(&mut self, replica: &dyn Replica, shard: usize) -> StoreResult<()> {
        let snapshot = self.store.snapshot(shard)?;
        let mut changes: Vec<Remote> =
            snapshot.users.into_iter().map(|u| Remote::User(self.remote_user(u))).collect();
        let known: Vec<SharedStr> =
            replica.channel_ids().into_iter().filter(|cid| shard_of(cid) == shard).collect();
        let stored: std::collections::HashSet<String> =
            snapshot.channels.iter().map(|c| c.cid.clone()).collect();
        changes.extend(snapshot.channels.into_iter().filter_map(|c| self.remote_channel(c, snapshot.seq)));
        changes.extend(known.into_iter().filter(|cid| !stored.contains(&**cid)).map(|cid| {
            Remote::Channel(RemoteChannel {
                cid,
                version: snapshot.seq,
                created_at: 0,
                change: ChannelChange::Absent,
            })
        }));
        if !changes.is_empty() {
            replica.apply_remote(changes);
        }
        self.cursors[shard] = snapshot.seq;
        Ok(())
    }

    fn remote(&self, change: Stored, seq: u64) -> Option<Remote> {
        match change {
            Stored::User(change) => Some(Remote::User(self.remote_user(change))),
            Stored::Channel(change) => self.remote_channel(change, seq),
        }
    }

    fn remote_user(&self, change: StoredChange) -> RemoteChange {
        let node = &self.settings.node;
        let remote_connections = change.connections_elsewhere(node);
        let lost = match change.lost {
            Some((dead, ids)) if dead != *node => ids,
            _ => Vec::new(),
        };
        RemoteChange {
            user: change.user.into(),
            version: change.version,
            created_at: change.created_at,
            last_active: change.last_active,
            fields: change.fields,
            full: change.full,
            remote_connections,
            lost,
        }
    }

    /// A channel change as this node applies it: watches of its own connections (of any of
    /// its incarnations) are told apart from the others'; `None` when nothing is left.
    fn remote_channel(&self, change: StoredChannel, version: u64) -> Option<Remote> {
        let node = self.settings.node.as_str();
        let own = |w: &StoredWatch| w.node() == node;
        let split = |watchers: Vec<StoredWatch>| -> (Vec<ConnectionId>, Vec<SharedStr>) {
            let (mine, others): (Vec<_>, Vec<_>) = watchers.into_iter().partition(own);
            (
                mine.into_iter().map(|w| w.connection).collect(),
                others.into_iter().map(|w| w.user.into()).collect(),
            )
        };
        let users = |ids: Vec<String>| ids.into_iter().map(SharedStr::from).collect::<Vec<SharedStr>>();
        let change_kind = match change.op {
            StoredOp::Upsert { fields, added } => ChannelChange::Upsert { fields, added: users(added) },
            StoredOp::Removed(ids) => ChannelChange::Removed(users(ids)),
            StoredOp::Deleted(watchers) => ChannelChange::Deleted { own_watchers: split(watchers).0 },
            StoredOp::Watch { watch, start } if own(&watch) => {
                if !start {
                    return None;
                }
                ChannelChange::OwnWatch { connection: watch.connection }
            }
            StoredOp::Watch { watch, start } => ChannelChange::Watch { user: watch.user.into(), start },
            StoredOp::Lost(watchers) => {
                let (_, lost) = split(watchers);
                if lost.is_empty() {
                    return None;
                }
                ChannelChange::Lost(lost)
            }
            StoredOp::Full { fields, members, watchers } => {
                let (own_watchers, watchers) = split(watchers);
                ChannelChange::Full { fields, members: users(members), watchers, own_watchers }
            }
        };
        Some(Remote::Channel(RemoteChannel {
            cid: change.cid.into(),
            version,
            created_at: change.created_at,
            change: change_kind,
        }))
    }

    fn report(&mut self, replica: &dyn Replica, status: LinkStatus, error: Option<String>) {
        {
            let mut report = self.shared.report.lock();
            report.status = status;
            if error.is_some() {
                report.last_error = error;
            }
        }
        if self.reported != Some(status) {
            // The first `up` of a fresh engine is news too: the host learns the link works.
            self.reported = Some(status);
            replica.link_changed(status);
        }
    }
}
