//! Workload 8, the typed C event path (ABI version 2), against the same baseline: a login/logout
//! workload drained through the C ABI with a reused batch (one call for a transition's
//! subscribers, and for comparison one call per subscriber, and the JSON calls of version
//! 1), a drain of 1000 queued events, and a typed delivery
//! listener (with the JSON listener for comparison). Every call goes through the exported
//! functions, as a C host makes them.
use crate::baseline::Baseline;
use crate::report::{count, Cell, Report, Target};
use crate::rng::Rng;
use crate::workloads::{
    check, fanout_baseline, fanout_baseline_status, ns_per, progress, timed, user_id, STATUSES, T0,
};
use crate::Params;
use presence::ffi::*;
use std::cell::Cell as StdCell;
use std::ffi::{c_char, c_void, CString};
use std::hint::black_box;
use std::ptr;
use std::rc::Rc;
use std::time::Duration;

const OK: PresenceResult = PresenceResult::PRESENCE_OK;
/// Connections subscribed to each user in the login/logout workload.
const FAN: usize = 10;
/// Users each watcher connection subscribes to (one query of 100 ids).
const PER_WATCHER: usize = 100;
/// Events queued for the drain row.
const DRAIN_EVENTS: usize = 1000;

#[track_caller]
fn ok(rc: PresenceResult, what: &str) {
    check(rc == OK, || format!("{what}: {rc:?}"));
}

fn c(s: &str) -> CString {
    CString::new(s).expect("no NUL")
}

/// An engine behind the C ABI, freed on drop.
struct CEngine(*mut PresenceEngine);

impl CEngine {
    fn new(extra: &str) -> CEngine {
        let config = c(&format!(r#"{{"clock":"manual","start_time_ms":{T0}{extra}}}"#));
        let mut e = ptr::null_mut();
        // SAFETY: a valid C string and out-pointer.
        ok(unsafe { presence_engine_new(config.as_ptr(), &mut e) }, "presence_engine_new");
        CEngine(e)
    }

    fn connect(&self, id: &CString) -> PresenceConnectionId {
        let mut conn = 0;
        // SAFETY: a live engine, a valid C string and out-pointer.
        ok(unsafe { presence_connect_user(self.0, id.as_ptr(), &mut conn) }, "presence_connect_user");
        conn
    }

    fn query(&self, viewer: PresenceConnectionId, query: &str) {
        let query = c(query);
        let mut out: *mut c_char = ptr::null_mut();
        // SAFETY: a live engine, valid strings and out-pointer; the answer is freed once.
        unsafe {
            ok(presence_query_users(self.0, viewer, query.as_ptr(), &mut out), "presence_query_users");
            presence_string_free(out);
        }
    }
}

impl Drop for CEngine {
    fn drop(&mut self) {
        // SAFETY: not used afterwards.
        unsafe { presence_engine_free(self.0) };
    }
}

/// A reused batch, freed on drop.
struct Batch(*mut PresenceEventBatch);

impl Batch {
    fn new() -> Batch {
        let mut b = ptr::null_mut();
        // SAFETY: a valid out-pointer.
        ok(unsafe { presence_batch_new(&mut b) }, "presence_batch_new");
        Batch(b)
    }

    /// Drains up to `max` events of `conn`, reading each info as a host would; answers
    /// how many came.
    #[inline]
    fn drain(&self, e: &CEngine, conn: PresenceConnectionId, max: u32) -> usize {
        // SAFETY: a live engine and batch; infos are read before the next refill.
        unsafe {
            ok(presence_poll_batch(e.0, conn, max, self.0), "presence_poll_batch");
            self.read_all()
        }
    }

    /// `drain` for several connections in one `presence_poll_batch_many`.
    #[inline]
    fn drain_many(&self, e: &CEngine, conns: &[PresenceConnectionId], max_each: u32) -> usize {
        // SAFETY: a live engine and batch, `conns.len()` ids; infos are read before the
        // next refill.
        unsafe {
            ok(
                presence_poll_batch_many(e.0, conns.as_ptr(), conns.len() as u32, max_each, self.0),
                "presence_poll_batch_many",
            );
            self.read_all()
        }
    }

    /// Reads each info of the batch as a host would; answers how many.
    #[inline]
    fn read_all(&self) -> usize {
        // SAFETY: a live batch; its infos are valid until the next refill.
        unsafe {
            let n = presence_batch_len(self.0);
            for i in 0..n {
                let info = &*presence_batch_event(self.0, i);
                black_box((info.kind, info.online, *info.user_id));
            }
            n as usize
        }
    }
}

impl Drop for Batch {
    fn drop(&mut self) {
        // SAFETY: not used afterwards.
        unsafe { presence_batch_free(self.0) };
    }
}

pub fn w8_typed_c(p: &Params, r: &mut Report) {
    login_logout(p, r);
    drain(p, r);
    listeners(p, r);
}

/// The `FAN` watcher positions subscribed to user `i` (of `watchers`); each watcher ends
/// up with `PER_WATCHER` users when `users` = `watchers` × `PER_WATCHER` / `FAN`.
fn subscribers_of(i: usize, watchers: usize) -> impl Iterator<Item = usize> {
    (0..FAN).map(move |j| (i + j * (watchers / FAN)) % watchers)
}

fn login_logout(p: &Params, r: &mut Report) {
    let mut w = LoginWorld::build(p);
    let mut rng = Rng::new(8);
    let picks: Vec<u32> = (0..p.w8_ops).map(|_| rng.below(w.users) as u32).collect();
    let expected = picks.len() * 2 * FAN;
    let batch = Batch::new();
    // The best round of each way, each checked for every delivery: typed with one poll per
    // pair, typed with one poll per subscriber, JSON, baseline.
    let mut best = [Duration::MAX; 4];
    let mut measure = |way: usize, run: &mut dyn FnMut() -> usize| {
        let (d, n) = timed(run);
        let what = ["typed drains, one per pair", "typed drains", "JSON drains", "baseline drains"][way];
        check(n == expected, || format!("{what} got {n} events, expected {expected}"));
        best[way] = best[way].min(d);
    };
    for _ in 0..p.rounds {
        measure(0, &mut || w.typed_many(&picks, &batch));
        measure(1, &mut || w.typed(&picks, &batch));
        measure(2, &mut || w.json(&picks));
        measure(3, &mut || w.baseline(&picks));
    }
    let transitions = 2 * picks.len();
    let users = count(w.users);
    let rows = [
        (format!("8 login/logout of a random user of {users}, {FAN} subscribers' queues drained via C into a reused batch, one presence_poll_batch_many per pair"), Target::EngineNsBelow(500.0)),
        (format!("8 login/logout of a random user of {users}, the same with one presence_poll_batch per subscriber"), Target::None),
        (format!("8 login/logout of a random user of {users}, the same via JSON (presence_connect, presence_poll_events)"), Target::None),
    ];
    for (way, (name, target)) in rows.into_iter().enumerate() {
        r.add(
            name,
            Cell::ns(ns_per(best[way], transitions), "transition"),
            Cell::ns(ns_per(best[3], transitions), "transition"),
            target,
        );
    }
}

/// Users each followed by `FAN` watcher connections (subscribed by a presence query), in
/// a C engine and in the baseline.
struct LoginWorld {
    users: usize,
    watchers: usize,
    ids: Vec<String>,
    cids: Vec<CString>,
    json_ids: Vec<CString>,
    e: CEngine,
    cwatchers: Vec<PresenceConnectionId>,
    base: Baseline,
    bwatchers: Vec<u64>,
}

impl LoginWorld {
    fn build(p: &Params) -> LoginWorld {
        let users = (p.w8_users / PER_WATCHER).max(FAN) * PER_WATCHER;
        let watchers = users * FAN / PER_WATCHER;
        progress(&format!("8: login/logout of {} users, {FAN} subscribers each", count(users)));
        let ids: Vec<String> = (0..users).map(user_id).collect();
        let cids: Vec<CString> = ids.iter().map(|id| c(id)).collect();
        let json_ids: Vec<CString> = ids.iter().map(|id| c(&format!(r#"{{"id":"{id}"}}"#))).collect();
        let mut followed: Vec<Vec<usize>> = vec![Vec::new(); watchers];
        for i in 0..users {
            for w in subscribers_of(i, watchers) {
                followed[w].push(i);
            }
        }
        let e = CEngine::new("");
        let mut base = Baseline::new(900_000, 1024);
        for (id, json) in ids.iter().zip(&json_ids) {
            // SAFETY: a live engine, a valid C string.
            ok(unsafe { presence_upsert_user(e.0, json.as_ptr()) }, "presence_upsert_user");
            base.register(id, T0);
        }
        let (mut cwatchers, mut bwatchers) = (Vec::new(), Vec::new());
        for (w, list) in followed.iter().enumerate() {
            let wid = format!("w{w:06}");
            let cw = e.connect(&c(&wid));
            let names: Vec<String> = list.iter().map(|&i| format!("\"{}\"", ids[i])).collect();
            e.query(
                cw,
                &format!(
                    r#"{{"filter_conditions":{{"id":{{"$in":[{}]}}}},"presence":true,"limit":100}}"#,
                    names.join(",")
                ),
            );
            cwatchers.push(cw);
            let bw = base.connect(&wid, T0);
            for &i in list {
                base.subscribe_direct(bw, &ids[i]);
            }
            bwatchers.push(bw);
        }
        LoginWorld { users, watchers, ids, cids, json_ids, e, cwatchers, base, bwatchers }
    }

    /// `presence_connect_user`, `presence_disconnect`, the followers drained into `batch`.
    fn typed(&self, picks: &[u32], batch: &Batch) -> usize {
        let mut events = 0;
        for &i in picks {
            let conn = self.e.connect(&self.cids[i as usize]);
            // SAFETY: a live engine.
            ok(unsafe { presence_disconnect(self.e.0, conn) }, "presence_disconnect");
            for w in subscribers_of(i as usize, self.watchers) {
                events += batch.drain(&self.e, self.cwatchers[w], 64);
            }
        }
        events
    }

    /// `presence_connect_user`, `presence_disconnect`, the followers drained into `batch`
    /// by one `presence_poll_batch_many`.
    fn typed_many(&self, picks: &[u32], batch: &Batch) -> usize {
        let mut events = 0;
        let mut followers = [0; FAN];
        for &i in picks {
            let conn = self.e.connect(&self.cids[i as usize]);
            // SAFETY: a live engine.
            ok(unsafe { presence_disconnect(self.e.0, conn) }, "presence_disconnect");
            for (slot, w) in followers.iter_mut().zip(subscribers_of(i as usize, self.watchers)) {
                *slot = self.cwatchers[w];
            }
            events += batch.drain_many(&self.e, &followers, 64);
        }
        events
    }

    /// The same with JSON: `presence_connect`, the followers drained by
    /// `presence_poll_events`.
    fn json(&self, picks: &[u32]) -> usize {
        let mut events = 0;
        for &i in picks {
            let mut conn = 0;
            // SAFETY: a live engine, valid strings and out-pointers; answers freed once.
            unsafe {
                ok(
                    presence_connect(self.e.0, self.json_ids[i as usize].as_ptr(), &mut conn),
                    "presence_connect",
                );
                ok(presence_disconnect(self.e.0, conn), "presence_disconnect");
                for w in subscribers_of(i as usize, self.watchers) {
                    let mut out: *mut c_char = ptr::null_mut();
                    ok(
                        presence_poll_events(self.e.0, self.cwatchers[w], 64, &mut out),
                        "presence_poll_events",
                    );
                    events += black_box(std::ffi::CStr::from_ptr(out).to_bytes())
                        .iter()
                        .filter(|&&b| b == b'{')
                        .count()
                        / 2;
                    presence_string_free(out);
                }
            }
        }
        events
    }

    fn baseline(&mut self, picks: &[u32]) -> usize {
        let mut events = 0;
        for &i in picks {
            let conn = self.base.connect(&self.ids[i as usize], T0);
            self.base.disconnect(conn, T0);
            for w in subscribers_of(i as usize, self.watchers) {
                events += black_box(self.base.poll(self.bwatchers[w], 64)).len();
            }
        }
        events
    }
}

fn drain(p: &Params, r: &mut Report) {
    progress("8: drain 1000 events through presence_poll_batch");
    let e = CEngine::new(",\"connection_queue_capacity\":4096");
    let star = c("star");
    e.connect(&star);
    let watcher = e.connect(&c("watcher"));
    e.query(watcher, r#"{"filter_conditions":{"id":"star"},"presence":true}"#);
    let mut base = Baseline::new(900_000, 4096);
    base.connect("star", T0);
    let bwatcher = base.connect("watcher", T0);
    base.subscribe_direct(bwatcher, "star");
    let statuses: Vec<CString> = STATUSES.iter().map(|s| c(s)).collect();
    let batch = Batch::new();
    let mut flips = 0usize;
    let (mut dt, mut db) = (Duration::MAX, Duration::MAX);
    for _ in 0..p.w8_drain_rounds {
        for _ in 0..DRAIN_EVENTS {
            flips += 1;
            // SAFETY: a live engine, valid strings.
            ok(
                unsafe { presence_set_status(e.0, star.as_ptr(), statuses[flips & 1].as_ptr()) },
                "presence_set_status",
            );
            base.set_status("star", Some(STATUSES[flips & 1]), T0);
        }
        let (d, n) = timed(|| batch.drain(&e, watcher, DRAIN_EVENTS as u32));
        check(n == DRAIN_EVENTS, || format!("drained {n} events"));
        dt = dt.min(d);
        let (d, n) = timed(|| {
            let events = base.poll(bwatcher, DRAIN_EVENTS);
            for ev in &events {
                black_box(ev);
            }
            events.len()
        });
        check(n == DRAIN_EVENTS, || format!("baseline drained {n} events"));
        db = db.min(d);
    }
    r.add(
        "8 drain 1000 events: presence_poll_batch(max=1000) into a reused batch, each info read",
        Cell::ns(ns_per(dt, DRAIN_EVENTS), "event"),
        Cell::ns(ns_per(db, DRAIN_EVENTS), "event"),
        Target::EngineNsBelow(30.0),
    );
}

unsafe extern "C-unwind" fn count_typed(user_data: *mut c_void, event: *const PresenceEventInfo) {
    // SAFETY: `user_data` is the counter registered with the listener; `event` is live.
    unsafe {
        let calls = &*(user_data as *const StdCell<u64>);
        calls.set(calls.get() + 1);
        black_box((*event).online);
    }
}

unsafe extern "C-unwind" fn count_json(user_data: *mut c_void, event: *const PresenceEvent) {
    // SAFETY: as `count_typed`.
    unsafe {
        let calls = &*(user_data as *const StdCell<u64>);
        calls.set(calls.get() + 1);
        black_box(*(*event).json);
    }
}

/// One status change of "star" to `FAN` subscribers with queues off, delivered to a C
/// listener; `add` registers it with the counter as `user_data`.
fn listener_row(p: &Params, add: impl Fn(*mut PresenceEngine, *mut c_void)) -> Duration {
    let e = CEngine::new(",\"connection_queue_capacity\":0");
    let star = c("star");
    e.connect(&star);
    for w in 0..FAN {
        let conn = e.connect(&c(&format!("w{w:06}")));
        e.query(conn, r#"{"filter_conditions":{"id":"star"},"presence":true}"#);
    }
    let calls = StdCell::new(0u64);
    add(e.0, &calls as *const StdCell<u64> as *mut c_void);
    let statuses: Vec<CString> = STATUSES.iter().map(|s| c(s)).collect();
    let mut flips = 0usize;
    let mut best = Duration::MAX;
    for _ in 0..p.rounds {
        calls.set(0);
        let (d, _) = timed(|| {
            for _ in 0..p.w8_changes {
                flips += 1;
                // SAFETY: a live engine, valid strings.
                ok(
                    unsafe { presence_set_status(e.0, star.as_ptr(), statuses[flips & 1].as_ptr()) },
                    "presence_set_status",
                );
            }
        });
        let expected = (p.w8_changes * FAN) as u64;
        check(calls.get() == expected, || format!("listener saw {}, expected {expected}", calls.get()));
        best = best.min(d);
    }
    best
}

fn listeners(p: &Params, r: &mut Report) {
    progress("8: typed and JSON delivery listeners through C");
    let typed = listener_row(p, |e, data| {
        let mut id = 0;
        // SAFETY: a live engine; the counter outlives the engine.
        ok(unsafe { presence_add_typed_delivery_listener(e, Some(count_typed), data, None, &mut id) }, "add");
    });
    let json = listener_row(p, |e, data| {
        let mut id = 0;
        // SAFETY: as above.
        ok(unsafe { presence_add_delivery_listener(e, Some(count_json), data, &mut id) }, "add");
    });
    let (mut base, _conns) = fanout_baseline(0, FAN);
    let seen = Rc::new(StdCell::new(0u64));
    let counter = seen.clone();
    base.add_delivery_listener(move |d| {
        counter.set(counter.get() + 1);
        black_box(d);
    });
    let mut flips = 0usize;
    let mut db = Duration::MAX;
    for _ in 0..p.rounds {
        db = db.min(fanout_baseline_status(&mut base, p.w8_changes, &mut flips));
    }
    check(seen.get() as usize == p.rounds * p.w8_changes * FAN, || {
        format!("baseline listener saw {}", seen.get())
    });
    let deliveries = p.w8_changes * FAN;
    r.add(
        format!("8 typed delivery listener (C): one status change to {FAN} subscribers"),
        Cell::ns(ns_per(typed, deliveries), "delivery"),
        Cell::ns(ns_per(db, deliveries), "delivery"),
        Target::EngineNsBelow(30.0),
    );
    r.add(
        format!("8 JSON delivery listener (C): one status change to {FAN} subscribers"),
        Cell::ns(ns_per(json, deliveries), "delivery"),
        Cell::ns(ns_per(db, deliveries), "delivery"),
        Target::None,
    );
}
