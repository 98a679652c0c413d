//! The C boundary (workload 7): the same calls through the C ABI and through `Engine`, on
//! two engines with the same contents.
use super::*;
use presence::ffi::{
    presence_connect, presence_engine_free, presence_engine_new, presence_heartbeat, presence_poll_events,
    presence_query_users, presence_set_status, presence_string_free, PresenceConnectionId, PresenceEngine,
    PresenceResult,
};
use std::ffi::{c_char, CStr, CString};

const OK: PresenceResult = PresenceResult::PRESENCE_OK;
/// Status changes that fill the watcher's queue before each drain.
const EVENTS: usize = 1000;

pub(super) fn w7_c_boundary(p: &Params, r: &mut Report) {
    let n = p.w7_online;
    progress(&format!("7: C boundary, {} connections", count(n)));
    let pair = Pair::new();
    heartbeat_rows(p, r, &pair, n);
    let mut star = StarWatchers::new(&pair);
    star.check_full_drain(&pair);
    drain_rows(p, r, &pair, &mut star);
}

/// A C engine and a Rust engine configured alike.
struct Pair {
    ce: *mut PresenceEngine,
    eng: Engine,
}

impl Pair {
    fn new() -> Pair {
        let config = r#"{"clock":"manual","start_time_ms":1700000000000,"connection_queue_capacity":4096}"#;
        let cconfig = CString::new(config).expect("config");
        let mut ce: *mut PresenceEngine = std::ptr::null_mut();
        // SAFETY: valid C string and out-pointer.
        check(unsafe { presence_engine_new(cconfig.as_ptr(), &mut ce) } == OK, || {
            "presence_engine_new".into()
        });
        Pair { ce, eng: Engine::from_json(Some(config)).expect("engine") }
    }

    /// Connects the same user on the C engine (answered) and on the Rust engine (answered).
    fn connect(&self, json: &str) -> (PresenceConnectionId, ConnectionId) {
        let cjson = CString::new(json).expect("json");
        let mut conn: PresenceConnectionId = 0;
        // SAFETY: live engine, valid C string, valid out-pointer.
        let rc = unsafe { presence_connect(self.ce, cjson.as_ptr(), &mut conn) };
        check(rc == OK, || format!("presence_connect: {rc:?}"));
        (conn, self.eng.connect_json(json).expect("connect"))
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        // SAFETY: the engine is not used afterwards.
        unsafe { presence_engine_free(self.ce) };
    }
}

fn heartbeat_rows(p: &Params, r: &mut Report, pair: &Pair, n: usize) {
    let (cconns, rconns): (Vec<_>, Vec<_>) =
        (0..n).map(|i| pair.connect(&format!(r#"{{"id":"{}"}}"#, user_id(i)))).unzip();
    let mut rng = Rng::new(7);
    let keys: Vec<u32> = (0..p.w7_heartbeats).map(|_| rng.below(n) as u32).collect();
    // Called through a function pointer, as a C host calls into the shared library.
    type Heartbeat = unsafe extern "C" fn(*mut PresenceEngine, PresenceConnectionId) -> PresenceResult;
    let heartbeat: Heartbeat = black_box(presence_heartbeat as Heartbeat);
    let (mut dc, mut dr) = (Duration::MAX, Duration::MAX);
    let mut failures = 0usize;
    for _ in 0..p.rounds {
        // SAFETY: live engine.
        let (d, f) = timed(|| {
            keys.iter().filter(|&&k| unsafe { heartbeat(pair.ce, cconns[k as usize]) } != OK).count()
        });
        dc = dc.min(d);
        failures += f;
        let (d, f) =
            timed(|| keys.iter().filter(|&&k| pair.eng.heartbeat(rconns[k as usize]).is_err()).count());
        dr = dr.min(d);
        failures += f;
    }
    check(failures == 0, || format!("{failures} heartbeats failed"));
    r.add(
        format!("7 heartbeat: presence_heartbeat (C ABI) vs Engine::heartbeat, {} connections", count(n)),
        Cell::ns(ns_per(dc, keys.len()), "call"),
        Cell::ns(ns_per(dr, keys.len()), "call"),
        Target::None,
    );
}

/// A watcher subscribed to "star" on each engine; [`EVENTS`] status changes fill its queue.
struct StarWatchers {
    cwatcher: PresenceConnectionId,
    rwatcher: ConnectionId,
    star: CString,
    statuses: Vec<CString>,
    flips: usize,
}

impl StarWatchers {
    fn new(pair: &Pair) -> StarWatchers {
        pair.connect(r#"{"id":"star"}"#);
        let (cwatcher, rwatcher) = pair.connect(r#"{"id":"watcher"}"#);
        let query = CString::new(STAR_QUERY).expect("query");
        let mut out: *mut c_char = std::ptr::null_mut();
        // SAFETY: live engine, valid strings and out-pointer; the answer is freed once.
        unsafe {
            check(presence_query_users(pair.ce, cwatcher, query.as_ptr(), &mut out) == OK, || {
                "presence_query_users".into()
            });
            presence_string_free(out);
        }
        pair.eng.query_users(rwatcher, STAR_QUERY).expect("subscribe");
        StarWatchers {
            cwatcher,
            rwatcher,
            star: CString::new("star").expect("id"),
            statuses: STATUSES.iter().map(|s| CString::new(*s).expect("status")).collect(),
            flips: 0,
        }
    }

    /// Queues [`EVENTS`] events for each watcher.
    fn fill(&mut self, pair: &Pair) {
        for _ in 0..EVENTS {
            self.flips += 1;
            let status = &self.statuses[self.flips & 1];
            // SAFETY: live engine, valid strings.
            let rc = unsafe { presence_set_status(pair.ce, self.star.as_ptr(), status.as_ptr()) };
            check(rc == OK, || format!("presence_set_status: {rc:?}"));
            pair.eng.set_status("star", Some(STATUSES[self.flips & 1])).expect("set_status");
        }
    }

    /// One `presence_poll_events` call: the answer's text.
    fn poll_c_text(&self, pair: &Pair, max: u32) -> String {
        let mut out: *mut c_char = std::ptr::null_mut();
        // SAFETY: live engine, valid out-pointer; the answer is a string of the library,
        // copied and then freed once.
        unsafe {
            let rc = presence_poll_events(pair.ce, self.cwatcher, max, &mut out);
            check(rc == OK, || format!("presence_poll_events: {rc:?}"));
            let text = CStr::from_ptr(out).to_str().expect("utf-8").to_owned();
            presence_string_free(out);
            text
        }
    }

    /// One `presence_poll_events` call, as timed: the answer's length only.
    fn poll_c(&self, pair: &Pair, max: u32) -> usize {
        let mut out: *mut c_char = std::ptr::null_mut();
        // SAFETY: live engine, valid out-pointer; the answer is freed once.
        unsafe {
            let rc = presence_poll_events(pair.ce, self.cwatcher, max, &mut out);
            check(rc == OK, || format!("presence_poll_events: {rc:?}"));
            let len = CStr::from_ptr(out).to_bytes().len();
            presence_string_free(out);
            len
        }
    }

    /// Sanity: a full drain answers a JSON array of all the events, and nothing is left.
    fn check_full_drain(&mut self, pair: &Pair) {
        self.fill(pair);
        let v: serde_json::Value =
            serde_json::from_str(&self.poll_c_text(pair, EVENTS as u32)).expect("JSON array");
        check(v.as_array().map(Vec::len) == Some(EVENTS), || {
            format!("polled {} events", v.as_array().map_or(0, Vec::len))
        });
        check(self.poll_c(pair, 10) == 2, || "queue not empty after draining".into());
        let got = pair.eng.poll_events(self.rwatcher, EVENTS).expect("poll").len();
        check(got == EVENTS, || format!("Rust poll got {got}"));
    }
}

fn drain_rows(p: &Params, r: &mut Report, pair: &Pair, star: &mut StarWatchers) {
    let (eng, rwatcher) = (&pair.eng, star.rwatcher);
    let mut best = [Duration::MAX; 5];
    for _ in 0..p.w7_poll_rounds {
        for (slot, best) in best.iter_mut().enumerate() {
            star.fill(pair);
            let (d, _) = timed(|| match slot {
                0 => {
                    black_box(star.poll_c(pair, EVENTS as u32));
                }
                1 => (0..EVENTS).for_each(|_| {
                    black_box(star.poll_c(pair, 1));
                }),
                2 => {
                    black_box(eng.poll_events(rwatcher, EVENTS).expect("poll"));
                }
                3 => (0..EVENTS).for_each(|_| {
                    black_box(eng.poll_events(rwatcher, 1).expect("poll"));
                }),
                _ => eng.poll_events(rwatcher, EVENTS).expect("poll").iter().for_each(|d| {
                    black_box(d.to_json());
                }),
            });
            *best = (*best).min(d);
            // Leave nothing behind for the next variant.
            star.poll_c(pair, u32::MAX);
            eng.poll_events(rwatcher, usize::MAX).expect("poll");
        }
    }
    let per = |slot: usize| ns_per(best[slot], EVENTS);
    for (row, c, rust) in [
        ("7 drain 1000 events: one presence_poll_events(max=1000) vs Engine::poll_events(1000)", 0, 2),
        ("7 drain 1000 events: 1000 x presence_poll_events(max=1) vs 1000 x Engine::poll_events(1)", 1, 3),
        (
            "7 drain 1000 events: presence_poll_events(max=1000) vs Engine::poll_events(1000) + Delivery::to_json",
            0,
            4,
        ),
    ] {
        r.add(row, Cell::ns(per(c), "event"), Cell::ns(per(rust), "event"), Target::None);
    }
}
