//! Cluster mode in the shell: the link thread, and what of the engine it reaches (the
//! [`Replica`] side: deltas out, remote changes in, `cluster.status` events).
use super::Shared;
use crate::cluster::link::{Link, LinkSettings, LinkShared, LinkStatus, Progress, Replica};
use crate::cluster::redis_store::RedisStore;
use crate::config::ClusterConfig;
use crate::error::{Error, Result};
use crate::replication::{Delta, Remote};
use crate::shared_str::SharedStr;
use crate::time::system_now;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// Most log entries read per shard in one round (an entry holds up to one write script
/// call's changes of the shard: 64).
const READ_BATCH: usize = 128;
/// Most deltas written in one round: one pipeline of write script calls.
const WRITE_BATCH: usize = 4096;
/// Longest pause between attempts while the store is unreachable.
const RETRY_MS: u64 = 100;

/// The running link of one engine; stops and joins its thread when dropped.
pub(crate) struct ClusterLink {
    node_id: Arc<str>,
    max_pending: usize,
    shared: Arc<LinkShared>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl ClusterLink {
    /// Starts the link thread for `engine`. The store is reached from the thread, so an
    /// unreachable store at start is reported (`down`), not an error. Cost: O(1).
    pub(crate) fn start(engine: &Arc<Shared>, config: &ClusterConfig) -> Result<ClusterLink> {
        // Every round trip is bounded, so a paused or vanished store turns into `down`.
        let timeout = Duration::from_millis(config.heartbeat_ms.max(200));
        let store = RedisStore::new(&config.redis_url, &config.namespace, config.stream_retention, timeout)?;
        let settings = LinkSettings {
            node: config.node_id.clone(),
            heartbeat_ms: config.heartbeat_ms,
            lease_ms: config.lease_ms,
            read_batch: READ_BATCH,
            write_batch: WRITE_BATCH,
        };
        let shared = LinkShared::new();
        let stop = Arc::new(AtomicBool::new(false));
        let seed =
            system_now() as u64 ^ (std::process::id() as u64).rotate_left(32) ^ (Arc::as_ptr(engine) as u64);
        let mut link = Link::new(store, settings, shared.clone(), seed | 1);
        let (engine_for_waking, engine, stopping) = (engine, engine.clone(), stop.clone());
        let retry = Duration::from_millis(config.heartbeat_ms.min(RETRY_MS));
        let poll = Duration::from_millis(config.poll_ms);
        let thread = std::thread::Builder::new()
            .name(format!("presence-cluster-{}", config.node_id))
            .spawn(move || {
                while !stopping.load(Ordering::Acquire) {
                    // An idle round waits `poll_ms` for news from the store, or less when a
                    // command of this node recorded deltas (it unparks this thread).
                    match link.step(&*engine, system_now()) {
                        Progress::Busy => {}
                        Progress::Idle => std::thread::park_timeout(poll),
                        Progress::Down => std::thread::sleep(retry),
                    }
                }
            })
            .map_err(|e| Error::state(format!("cluster: cannot start the link thread: {e}")))?;
        let _ = engine_for_waking.link_thread.set(thread.thread().clone());
        Ok(ClusterLink {
            node_id: Arc::from(config.node_id.as_str()),
            max_pending: config.max_pending_writes as usize,
            shared,
            stop,
            thread: Some(thread),
        })
    }

    /// Refuses a sticky write while `max_pending_writes` changes wait for the store.
    pub(crate) fn check_room(&self) -> Result<()> {
        let pending = self.shared.pending.load(Ordering::Relaxed);
        if pending >= self.max_pending {
            return Err(Error::state(format!(
                "cluster: {pending} changes wait for the shared store (max_pending_writes {}); \
                 try again once it is reachable",
                self.max_pending
            )));
        }
        Ok(())
    }

    /// `{"mode":"cluster","node_id","link","nodes_alive","pending_writes","last_error"}`.
    pub(crate) fn status(&self) -> Value {
        let report = self.shared.report.lock().clone();
        json!({
            "mode": "cluster",
            "node_id": &*self.node_id,
            "link": report.status.as_str(),
            "nodes_alive": report.nodes_alive,
            "pending_writes": self.shared.pending.load(Ordering::Relaxed),
            "last_error": report.last_error,
        })
    }
}

impl Drop for ClusterLink {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            // An engine dropped from a callback on the link thread cannot wait for itself.
            if thread.thread().id() != std::thread::current().id() {
                let _ = thread.join();
            }
        }
    }
}

impl Replica for Shared {
    fn take_deltas(&self, into: &mut Vec<Delta>) {
        self.inner.lock().state.take_deltas(into);
    }

    fn apply_remote(&self, changes: Vec<Remote>) {
        let _ = self.run(|state, now| {
            for change in &changes {
                state.apply(now, change);
            }
            Ok(())
        });
    }

    fn channel_ids(&self) -> Vec<SharedStr> {
        self.inner.lock().state.channel_ids()
    }

    fn forget_versions(&self) {
        self.inner.lock().state.forget_versions();
    }

    fn announcement(&self, shared: bool) -> Vec<Delta> {
        let mut inner = self.inner.lock();
        let now = inner.now(self.config.clock);
        inner.state.announcement(now, shared)
    }

    fn link_changed(&self, status: LinkStatus) {
        let node: Arc<str> = self.config.cluster.as_ref().map_or("", |c| c.node_id.as_str()).into();
        let _ = self.run(|state, now| {
            state.cluster_status(now, status.as_str(), node);
            Ok(())
        });
    }
}
