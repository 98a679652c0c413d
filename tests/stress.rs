//! Concurrency stress: 8 threads issue mixed operations for a bounded time while
//! host and delivery listeners re-enter the engine (get_user, poll_events, set_status on
//! another user). Afterwards the invariants must hold:
//! - a user is online (host view) iff they hold a live connection, and online to others iff
//!   that and not invisible;
//! - `watcher_count` and the watcher list of every channel equal the distinct visible users
//!   whose live connections watch it;
//! - every subscription points at a live connection: a status change of each user reaches
//!   exactly the live connections subscribed to them (channel routes and direct routes);
//! - `seq` is strictly increasing in every listener's stream (per recipient for deliveries)
//!   and in every queue, the host stream has no gaps, and callbacks never overlap;
//! - nothing deadlocked: the workload runs on a spawned thread and the test fails (naming
//!   the threads that did not finish and what they were doing) if it is not done in 60 s.
//!
//! Run twice: with immediate dispatch, and with manual dispatch plus a pumping thread.
mod common;

use common::Rng;
use presence::{ConnectionId, Delivery, Engine, ErrorKind, Event, EventKind, ListenerFilter};
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

const THREADS: usize = 8;
const USERS: usize = 16;
const CHANNELS: usize = 6;
const DEADLINE: Duration = Duration::from_secs(60);

fn user(i: usize) -> String {
    format!("u{i}")
}
fn cid(i: usize) -> String {
    format!("team:c{i}")
}

/// What each listener saw, checked afterwards.
#[derive(Default)]
struct Streams {
    host_seqs: Vec<u64>,
    filtered_seqs: Vec<u64>,
    /// Per recipient connection.
    delivery_seqs: BTreeMap<u64, Vec<u64>>,
    delivery_global: Vec<u64>,
    closed: BTreeSet<u64>,
    close_reasons: BTreeMap<&'static str, u64>,
    /// Any violation noticed inside a callback.
    problems: Vec<String>,
}

/// A connection owned by one worker thread, with what the worker knows it did.
struct Owned {
    id: ConnectionId,
    user: String,
    watching: BTreeMap<String, bool>,
    direct: BTreeSet<String>,
    last_queue_seq: u64,
}

/// What the threads report back.
struct WorkerResult {
    owned: Vec<Owned>,
    ops: u64,
    errors: BTreeMap<String, u64>,
    problems: Vec<String>,
}

/// Labels of the operation each thread is doing, for the deadlock report.
const OP_NAMES: [&str; 16] = [
    "connect",
    "disconnect",
    "heartbeat",
    "set_invisible",
    "set_status",
    "upsert_user",
    "upsert_channel",
    "add_members",
    "remove_members",
    "watch",
    "stop_watching",
    "query_users",
    "query_channels",
    "unsubscribe",
    "poll_events",
    "tick",
];

/// One worker thread: the connections it owns and what it noticed.
struct Worker {
    e: Arc<Engine>,
    t: usize,
    rng: Rng,
    owned: Vec<Owned>,
    problems: Vec<String>,
}

impl Worker {
    /// Runs random operations until `stop`; `doing[t]` names the one in progress.
    fn run(e: Arc<Engine>, t: usize, stop: Arc<AtomicBool>, doing: Arc<Vec<AtomicUsize>>) -> WorkerResult {
        let rng = Rng(0x9e37_79b9_7f4a_7c15 ^ ((t as u64 + 1) * 0x1234_5678_9abc));
        let mut w = Worker { e, t, rng, owned: Vec::new(), problems: Vec::new() };
        let mut ops = 0u64;
        let mut errors: BTreeMap<String, u64> = BTreeMap::new();
        while !stop.load(Ordering::Relaxed) {
            let op = w.rng.below(OP_NAMES.len());
            doing[t].store(op + 1, Ordering::Relaxed);
            ops += 1;
            let Err(err) = w.op(op) else { continue };
            // Unknown users/channels and slow-consumer closes are expected under
            // concurrency; anything else is a failure.
            match err.kind() {
                ErrorKind::NotFound | ErrorKind::Limit => {
                    *errors.entry(format!("{} {:?}", OP_NAMES[op], err.kind())).or_default() += 1;
                }
                _ => w.problems.push(format!("{}: unexpected {err}", OP_NAMES[op])),
            }
            // A connection closed as a slow consumer (or by anything) is no longer ours.
            if err.kind() == ErrorKind::NotFound {
                let e = &w.e;
                w.owned.retain(|c| e.poll_events(c.id, 0).is_ok());
            }
        }
        doing[t].store(0, Ordering::Relaxed);
        WorkerResult { owned: w.owned, ops, errors, problems: w.problems }
    }

    /// One of the connections this thread owns, if any.
    fn pick_conn(&mut self) -> Option<usize> {
        (!self.owned.is_empty()).then(|| self.rng.below(self.owned.len()))
    }

    fn any_user(&mut self) -> String {
        user(self.rng.below(USERS))
    }

    fn any_cid(&mut self) -> String {
        cid(self.rng.below(CHANNELS))
    }

    /// Operation `op` (an index into [`OP_NAMES`]).
    fn op(&mut self, op: usize) -> Result<(), presence::Error> {
        let e = self.e.clone();
        match op {
            0 => self.connect(),
            1 => match self.pick_conn() {
                Some(i) if self.rng.below(3) == 0 => {
                    let c = self.owned.remove(i);
                    e.disconnect(c.id)
                }
                _ => Ok(()),
            },
            2 => match self.pick_conn() {
                // A third of the connections never send heartbeats (they time out when
                // a timeout is configured).
                Some(i) if self.owned[i].id.0 % 3 != 0 => e.heartbeat(self.owned[i].id),
                _ => Ok(()),
            },
            3 => {
                let u = self.any_user();
                e.set_invisible(&u, self.rng.below(3) == 0)
            }
            4 => {
                let u = self.any_user();
                e.set_status(&u, Some(["a", "b", "c"][self.rng.below(3)]))
            }
            5 => {
                let u = self.any_user();
                e.upsert_user_json(&json!({"id": u, "level": self.rng.below(4)}).to_string())
            }
            6 => {
                let members: Vec<String> = (0..self.rng.below(4)).map(|_| self.any_user()).collect();
                e.upsert_channel_json(&json!({"cid": self.any_cid(), "members": members}).to_string())
            }
            7 => e.add_members(&self.any_cid(), &[self.any_user()]),
            8 => e.remove_members(&self.any_cid(), &[self.any_user()]),
            9 => self.pick_conn().map_or(Ok(()), |i| self.watch(i)),
            10 => self.pick_conn().map_or(Ok(()), |i| {
                let ch = self.any_cid();
                e.stop_watching(self.owned[i].id, &ch).map(|_| {
                    self.owned[i].watching.remove(&ch);
                })
            }),
            11 => match self.pick_conn() {
                Some(i) => self.query_users(i),
                None => e
                    .query_users(ConnectionId::HOST, r#"{"filter_conditions": {"online": true}}"#)
                    .map(|_| ()),
            },
            12 => self.pick_conn().map_or(Ok(()), |i| self.query_channels(i)),
            13 => self.pick_conn().map_or(Ok(()), |i| {
                let u = self.any_user();
                e.unsubscribe_user(self.owned[i].id, &u).map(|_| {
                    self.owned[i].direct.remove(&u);
                })
            }),
            14 => self.pick_conn().map_or(Ok(()), |i| self.poll(i)),
            _ => {
                e.tick().unwrap();
                Ok(())
            }
        }
    }

    /// Connects as one of this thread's two users (a fifth of the time invisible), up to
    /// six connections.
    fn connect(&mut self) -> Result<(), presence::Error> {
        if self.owned.len() >= 6 {
            return Ok(());
        }
        // Each thread's connections belong to users t and t+8, so per-user connection
        // counts stay small; every thread touches every user's data.
        let u = user(self.t + THREADS * self.rng.below(2));
        let invisible = self.rng.below(5) == 0;
        let patch = if invisible { json!({"id": u, "invisible": true}) } else { json!({"id": u}) };
        let c = self.e.connect_json(&patch.to_string())?;
        self.owned.push(Owned {
            id: c,
            user: u,
            watching: BTreeMap::new(),
            direct: BTreeSet::new(),
            last_queue_seq: 0,
        });
        Ok(())
    }

    fn watch(&mut self, i: usize) -> Result<(), presence::Error> {
        let ch = self.any_cid();
        let presence = self.rng.below(2) == 0;
        let state = self.e.watch_channel_state(self.owned[i].id, &ch, presence)?;
        *self.owned[i].watching.entry(ch).or_insert(false) |= presence;
        if state["watcher_count"].as_u64().unwrap() as usize != state["watchers"].as_array().unwrap().len() {
            self.problems.push(format!("watch answer inconsistent: {state}"));
        }
        Ok(())
    }

    fn query_users(&mut self, i: usize) -> Result<(), presence::Error> {
        let ids: Vec<String> = (0..3).map(|_| self.any_user()).collect();
        let q = json!({"filter_conditions": {"id": {"$in": ids}}, "presence": true});
        let v = self.e.query_users(self.owned[i].id, &q.to_string())?;
        for u in v["users"].as_array().unwrap() {
            self.owned[i].direct.insert(u["id"].as_str().unwrap().to_owned());
        }
        Ok(())
    }

    fn query_channels(&mut self, i: usize) -> Result<(), presence::Error> {
        let presence = self.rng.below(2) == 0;
        let q = json!({"filter_conditions": {"cid": {"$in": [self.any_cid()]}}, "presence": presence, "watch": true});
        let v = self.e.query_channels(self.owned[i].id, &q.to_string())?;
        for ch in v["channels"].as_array().unwrap() {
            let c = ch["channel"]["cid"].as_str().unwrap().to_owned();
            *self.owned[i].watching.entry(c).or_insert(false) |= presence;
        }
        Ok(())
    }

    /// Drains part of a queue, checking it is in `seq` order and holds only its own deliveries.
    fn poll(&mut self, i: usize) -> Result<(), presence::Error> {
        let c = &mut self.owned[i];
        for d in self.e.poll_events(c.id, 64)? {
            if d.event.seq <= c.last_queue_seq || d.connection != c.id {
                self.problems.push(format!(
                    "queue of {} out of order: {} after {}",
                    c.id, d.event.seq, c.last_queue_seq
                ));
            }
            c.last_queue_seq = d.event.seq;
        }
        Ok(())
    }
}

struct Summary {
    ops: u64,
    events: usize,
    deliveries: usize,
    reentrant_calls: u64,
}

/// What the listeners share with the checks.
struct Observers {
    streams: Arc<Mutex<Streams>>,
    reentrant: Arc<AtomicU64>,
    /// Set while the final probe runs: the delivery listener stops stealing from queues.
    probing: Arc<AtomicBool>,
}

/// Host listener: sees everything; re-enters with get_user and, now and then, a status
/// change of another user (whose events must come after the current one, in order). A
/// filtered host listener (the Unity-style per-user subscription). Delivery listener:
/// re-enters with get_user through the recipient and poll_events (stealing from queues,
/// except while the final probe runs).
fn attach_listeners(e: &Arc<Engine>) -> Observers {
    let streams = Arc::new(Mutex::new(Streams::default()));
    let in_callback = Arc::new(AtomicBool::new(false));
    let reentrant = Arc::new(AtomicU64::new(0));
    let probing = Arc::new(AtomicBool::new(false));
    {
        let (weak, streams, busy, reentrant) =
            (Arc::downgrade(e), streams.clone(), in_callback.clone(), reentrant.clone());
        e.add_listener(ListenerFilter::all(), move |ev: &Event| {
            if busy.swap(true, Ordering::SeqCst) {
                streams.lock().unwrap().problems.push("callbacks overlapped".into());
            }
            {
                let mut s = streams.lock().unwrap();
                s.host_seqs.push(ev.seq);
                if ev.user().is_none() {
                    s.problems.push(format!("unexpected {:?} at {}", ev.kind, ev.seq));
                }
                if let EventKind::ConnectionClosed { connection, reason, .. } = &ev.kind {
                    s.closed.insert(connection.0);
                    *s.close_reasons.entry(reason.as_str()).or_default() += 1;
                }
            }
            if let Some(e) = weak.upgrade() {
                let _ = e.get_user(ConnectionId::HOST, ev.user_id().unwrap_or("echo"));
                if ev.seq % 97 == 0 && ev.user_id() != Some("echo") {
                    let _ = e.set_status("echo", Some(&ev.seq.to_string()));
                }
                reentrant.fetch_add(1, Ordering::Relaxed);
            }
            busy.store(false, Ordering::SeqCst);
        })
        .unwrap();
    }
    {
        let streams = streams.clone();
        e.add_listener(ListenerFilter::user("u0"), move |ev: &Event| {
            let mut s = streams.lock().unwrap();
            if ev.user_id() != Some("u0") {
                s.problems.push(format!("filtered listener got {:?}", ev.user_id()));
            }
            s.filtered_seqs.push(ev.seq);
        })
        .unwrap();
    }
    {
        let (weak, streams, reentrant, busy, probing) =
            (Arc::downgrade(e), streams.clone(), reentrant.clone(), in_callback.clone(), probing.clone());
        e.add_delivery_listener(move |d: &Delivery| {
            if busy.swap(true, Ordering::SeqCst) {
                streams.lock().unwrap().problems.push("callbacks overlapped".into());
            }
            {
                let mut s = streams.lock().unwrap();
                s.delivery_seqs.entry(d.connection.0).or_default().push(d.event.seq);
                s.delivery_global.push(d.event.seq);
            }
            if let Some(e) = weak.upgrade() {
                let _ = e.get_user(d.connection, d.user_id());
                if d.event.seq % 13 == 0 && !probing.load(Ordering::SeqCst) {
                    let _ = e.poll_events(d.connection, 1);
                }
                reentrant.fetch_add(1, Ordering::Relaxed);
            }
            busy.store(false, Ordering::SeqCst);
        });
    }
    Observers { streams, reentrant, probing }
}

/// Runs the workers, a thread adding and removing listeners, and (manual dispatch) a
/// game-loop thread pumping, for `run_for`. The workload runs on its own thread so that a
/// deadlock fails the test, naming what each stuck thread was doing, instead of hanging it.
fn run_threads(e: &Arc<Engine>, run_for: Duration, pump: bool) -> Vec<WorkerResult> {
    let doing: Arc<Vec<AtomicUsize>> = Arc::new((0..THREADS + 2).map(|_| AtomicUsize::new(0)).collect());
    let stop = Arc::new(AtomicBool::new(false));
    let (done_tx, done_rx) = mpsc::channel();
    {
        let (e, stop, doing) = (e.clone(), stop.clone(), doing.clone());
        std::thread::spawn(move || {
            let mut handles = Vec::new();
            for t in 0..THREADS {
                let (e, stop, doing) = (e.clone(), stop.clone(), doing.clone());
                handles.push(std::thread::spawn(move || Worker::run(e, t, stop, doing)));
            }
            let churn = {
                let (e, stop, doing) = (e.clone(), stop.clone(), doing.clone());
                std::thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        doing[THREADS].store(1, Ordering::Relaxed);
                        let id = e.add_listener(ListenerFilter::event_type("user.updated"), |_| {}).unwrap();
                        std::thread::yield_now();
                        e.remove_listener(id).unwrap();
                    }
                    doing[THREADS].store(0, Ordering::Relaxed);
                })
            };
            let pumper = pump.then(|| {
                let (e, stop, doing) = (e.clone(), stop.clone(), doing.clone());
                std::thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        doing[THREADS + 1].store(1, Ordering::Relaxed);
                        e.pump();
                        std::thread::yield_now();
                    }
                    doing[THREADS + 1].store(0, Ordering::Relaxed);
                })
            });
            std::thread::sleep(run_for);
            stop.store(true, Ordering::Relaxed);
            let results: Vec<WorkerResult> = handles.into_iter().map(|h| h.join().unwrap()).collect();
            churn.join().unwrap();
            if let Some(p) = pumper {
                p.join().unwrap();
            }
            done_tx.send(results).unwrap();
        });
    }
    match done_rx.recv_timeout(run_for + DEADLINE) {
        Ok(results) => results,
        Err(_) => {
            let stuck: Vec<String> = doing
                .iter()
                .enumerate()
                .filter(|(_, d)| d.load(Ordering::Relaxed) != 0)
                .map(|(t, d)| match t {
                    t if t < THREADS => format!("worker {t} in {}", OP_NAMES[d.load(Ordering::Relaxed) - 1]),
                    t if t == THREADS => "listener churn thread".to_string(),
                    _ => "pump thread".to_string(),
                })
                .collect();
            panic!("deadlock: the workload did not finish within {DEADLINE:?}; stuck: {stuck:?}");
        }
    }
}

/// The connections the workers still own that the engine did not close; asserts the
/// engine agrees on which are live.
fn live_connections<'a>(e: &Engine, results: &'a [WorkerResult], closed: &BTreeSet<u64>) -> Vec<&'a Owned> {
    let mut live: Vec<&Owned> =
        results.iter().flat_map(|r| r.owned.iter()).filter(|c| !closed.contains(&c.id.0)).collect();
    live.sort_by_key(|c| c.id);
    assert_eq!(
        e.counts().connections,
        live.len(),
        "live connections: engine vs bookkeeping (closed: {})",
        closed.len()
    );
    for c in &live {
        assert!(e.poll_events(c.id, 0).is_ok(), "{} should be live", c.id);
    }
    for c in closed {
        assert_eq!(e.poll_events(ConnectionId(*c), 0).unwrap_err().kind(), ErrorKind::NotFound);
    }
    live
}

/// Online iff a (visible) live connection, for the host and for another user. Answers each
/// existing user's invisible flag.
fn check_online(e: &Engine, live: &[&Owned], problems: &mut Vec<String>) -> BTreeMap<String, bool> {
    let observer = live.first().map(|c| (c.id, c.user.clone()));
    let mut invisible: BTreeMap<String, bool> = BTreeMap::new();
    for i in 0..USERS {
        let u = user(i);
        let Ok(own) = e.get_user(ConnectionId::HOST, &u) else { continue };
        let connected = live.iter().any(|c| c.user == u);
        let inv = own["invisible"].as_bool().unwrap();
        invisible.insert(u.clone(), inv);
        if own["online"].as_bool() != Some(connected) {
            problems.push(format!("{u}: host sees online={} but live connection={connected}", own["online"]));
        }
        if let Some((obs, obs_user)) = &observer {
            if *obs_user != u {
                let public = e.get_user(*obs, &u).unwrap();
                if public["online"].as_bool() != Some(connected && !inv) {
                    problems.push(format!(
                        "{u}: public online={} but connected={connected} invisible={inv}",
                        public["online"]
                    ));
                }
            }
        }
    }
    invisible
}

/// Watcher counts and lists: the distinct visible users whose live connections watch.
fn check_watchers(
    channels: &[serde_json::Value],
    live: &[&Owned],
    invisible: &BTreeMap<String, bool>,
    problems: &mut Vec<String>,
) {
    for state in channels {
        let ch = state["channel"]["cid"].as_str().unwrap();
        let expected: BTreeSet<String> = live
            .iter()
            .filter(|c| c.watching.contains_key(ch))
            .map(|c| c.user.clone())
            .filter(|u| !invisible[u])
            .collect();
        let listed: BTreeSet<String> = state["watchers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|w| w["id"].as_str().unwrap().to_owned())
            .collect();
        if listed != expected || state["watcher_count"].as_u64() != Some(expected.len() as u64) {
            problems.push(format!(
                "{ch}: watcher_count {} watchers {listed:?}, expected {expected:?}",
                state["watcher_count"]
            ));
        }
    }
}

/// Every subscription points at a live connection, and each live connection is subscribed
/// to exactly the union of its routes: a probe status change of every user reaches exactly
/// those connections.
fn check_subscriptions(
    e: &Engine,
    channels: &[serde_json::Value],
    live: &[&Owned],
    invisible: &BTreeMap<String, bool>,
    pump: bool,
    problems: &mut Vec<String>,
) {
    let members: BTreeMap<String, BTreeSet<String>> = channels
        .iter()
        .map(|s| {
            (
                s["channel"]["cid"].as_str().unwrap().to_owned(),
                s["members"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|m| m["user_id"].as_str().unwrap().to_owned())
                    .collect(),
            )
        })
        .collect();
    for c in live {
        e.poll_events(c.id, usize::MAX).unwrap();
    }
    let probe_users: Vec<String> = (0..USERS).map(user).filter(|u| invisible.contains_key(u)).collect();
    for u in &probe_users {
        e.set_status(u, Some("probe")).unwrap();
    }
    if pump {
        drain(e);
    }
    let mut reached: BTreeMap<u64, BTreeSet<String>> = BTreeMap::new();
    for c in live {
        for d in e.poll_events(c.id, usize::MAX).unwrap() {
            if d.event.type_name() == "user.presence.changed" && d.user().status.as_deref() == Some("probe") {
                reached.entry(c.id.0).or_default().insert(d.user_id().to_owned());
            }
        }
    }
    for c in live {
        let mut expected: BTreeSet<String> = c.direct.clone();
        for (ch, presence) in &c.watching {
            if *presence {
                expected.extend(members[ch].iter().cloned());
            }
        }
        expected.retain(|u| probe_users.contains(u));
        let got = reached.remove(&c.id.0).unwrap_or_default();
        if got != expected {
            problems.push(format!("{} ({}) subscribed to {got:?}, expected {expected:?}", c.id, c.user));
        }
    }
    // Deliveries during the probe went only to live connections.
    if !reached.is_empty() {
        problems.push(format!("probe reached unknown connections {:?}", reached.keys()));
    }
}

/// seq: host stream strictly increasing and gap-free (nothing lost: the workloads set
/// `pending_dispatch_capacity` above what eight threads can leave waiting, so no
/// `engine.overflow` may appear), every other stream
/// strictly increasing (per recipient), the global delivery stream never going back.
fn check_seq_streams(s: &Streams, problems: &mut Vec<String>) {
    let host = &s.host_seqs;
    if let Some(w) = host.windows(2).find(|w| w[1] != w[0] + 1) {
        problems.push(format!("host stream: {} followed by {}", w[0], w[1]));
    }
    if host.first() != Some(&1) {
        problems.push(format!("host stream starts at {:?}", host.first()));
    }
    if let Some(w) = s.filtered_seqs.windows(2).find(|w| w[1] <= w[0]) {
        problems.push(format!("filtered stream: {} then {}", w[0], w[1]));
    }
    for (c, seqs) in &s.delivery_seqs {
        if let Some(w) = seqs.windows(2).find(|w| w[1] <= w[0]) {
            problems.push(format!("deliveries to {c}: {} then {}", w[0], w[1]));
        }
    }
    if let Some(w) = s.delivery_global.windows(2).find(|w| w[1] < w[0]) {
        problems.push(format!("delivery stream went back: {} then {}", w[0], w[1]));
    }
}

/// Pumps until nothing is waiting for dispatch.
fn drain(e: &Engine) {
    while e.pump() > 0 {}
}

fn run_workload(config: &str, run_for: Duration, pump: bool) -> Summary {
    let e = Arc::new(Engine::from_json(Some(config)).unwrap());
    let observers = attach_listeners(&e);
    e.upsert_user_json(r#"{"id":"echo"}"#).unwrap();
    let results = run_threads(&e, run_for, pump);
    // No call waits for another thread's callbacks, so in either mode what the last
    // calls left (past a dispatching thread's budget) waits for a pump.
    drain(&e);
    let panics = e.listener_panics();
    assert_eq!(panics.count, 0, "listener panics: {:?}", panics.last_message);

    let mut problems: Vec<String> = Vec::new();
    let ops: u64 = results.iter().map(|r| r.ops).sum();
    let mut errors: BTreeMap<String, u64> = BTreeMap::new();
    for r in &results {
        problems.extend(r.problems.iter().cloned());
        for (k, v) in &r.errors {
            *errors.entry(k.clone()).or_default() += v;
        }
    }
    let closed = observers.streams.lock().unwrap().closed.clone();
    let live = live_connections(&e, &results, &closed);
    let invisible = check_online(&e, &live, &mut problems);
    let channels = e.query_channels(ConnectionId::HOST, r#"{"sort": {"cid": 1}, "limit": 100}"#).unwrap();
    let channels = channels["channels"].as_array().unwrap();
    check_watchers(channels, &live, &invisible, &mut problems);
    observers.probing.store(true, Ordering::SeqCst);
    check_subscriptions(&e, channels, &live, &invisible, pump, &mut problems);
    let s = observers.streams.lock().unwrap();
    check_seq_streams(&s, &mut problems);
    problems.extend(s.problems.iter().cloned());

    let deliveries: usize = s.delivery_seqs.values().map(Vec::len).sum();
    let (events, reentrant_calls) = (s.host_seqs.len(), observers.reentrant.load(Ordering::Relaxed));
    eprintln!(
        "stress ({}): {THREADS} threads, {ops} operations in {run_for:?}, {events} events, {deliveries} deliveries, \
         {reentrant_calls} re-entrant calls from callbacks, connections closed {:?}, {} live at the end; expected errors: {errors:?}",
        if pump { "manual dispatch + pump thread" } else { "immediate dispatch" },
        s.close_reasons,
        live.len()
    );
    assert!(problems.is_empty(), "{} invariant violations:\n{}", problems.len(), problems.join("\n"));
    Summary { ops, events, deliveries, reentrant_calls }
}

#[test]
fn eight_threads_with_reentrant_listeners_immediate_dispatch() {
    let s = run_workload(
        r#"{"connection_queue_capacity": 128, "max_connections_per_user": 8, "max_subscriptions_per_connection": 14, "pending_dispatch_capacity": 100000000}"#,
        Duration::from_millis(1800),
        false,
    );
    assert!(s.ops > 1000 && s.events > 100 && s.deliveries > 100 && s.reentrant_calls > 100);
}

#[test]
fn eight_threads_with_reentrant_listeners_manual_dispatch() {
    let s = run_workload(
        r#"{"dispatch": "manual", "connection_queue_capacity": 128, "max_connections_per_user": 8, "connection_timeout_ms": 20, "pending_dispatch_capacity": 100000000}"#,
        Duration::from_millis(1200),
        true,
    );
    assert!(s.ops > 1000 && s.events > 100 && s.deliveries > 100 && s.reentrant_calls > 100);
}

/// `remove_listener` promises the listener is never called again once it returns, even for
/// an event being dispatched at that moment. Another thread keeps emitting (and therefore
/// dispatching) events while listeners are added and removed in a loop; a call that starts
/// after its removal returned is a violation.
#[test]
fn a_removed_listener_is_never_called_again() {
    let e = Arc::new(Engine::from_json(None).unwrap());
    e.upsert_user_json(r#"{"id":"talker"}"#).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let emitters: Vec<_> = (0..2)
        .map(|t| {
            let (e, stop) = (e.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    i += 1;
                    e.set_status("talker", Some(&format!("{t}-{i}"))).unwrap();
                }
            })
        })
        .collect();
    let late_calls = Arc::new(AtomicU64::new(0));
    let started = std::time::Instant::now();
    let mut cycles = 0u64;
    let mut calls_total = 0u64;
    while started.elapsed() < Duration::from_millis(600) {
        cycles += 1;
        let removed = Arc::new(AtomicBool::new(false));
        let calls = Arc::new(AtomicU64::new(0));
        let id = {
            let (removed, calls, late) = (removed.clone(), calls.clone(), late_calls.clone());
            e.add_listener(ListenerFilter::all(), move |_| {
                // First thing: a call that begins after `removed` was set began after
                // remove_listener returned (a call already running then is fine).
                if removed.load(Ordering::SeqCst) {
                    late.fetch_add(1, Ordering::SeqCst);
                }
                calls.fetch_add(1, Ordering::SeqCst);
            })
            .unwrap()
        };
        while calls.load(Ordering::SeqCst) == 0 && started.elapsed() < Duration::from_secs(5) {
            std::thread::yield_now();
        }
        e.remove_listener(id).unwrap();
        removed.store(true, Ordering::SeqCst);
        calls_total += calls.load(Ordering::SeqCst);
    }
    stop.store(true, Ordering::Relaxed);
    for h in emitters {
        h.join().unwrap();
    }
    eprintln!(
        "listener removal: {cycles} add/remove cycles, {calls_total} calls, {} late",
        late_calls.load(Ordering::SeqCst)
    );
    assert_eq!(late_calls.load(Ordering::SeqCst), 0, "a listener ran after remove_listener returned");
}
