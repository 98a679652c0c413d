//! The workloads, each measured for the engine and for the baseline in
//! the same run. Every timed region does only the operation under test: op sequences,
//! ids, patches and query strings are prepared before it, and queue draining happens
//! outside it. Sanity checks (never timing) run in both modes.
use crate::baseline::{Baseline, Millis};
use crate::report::{count, Cell, Report, Target};
use crate::rng::{Rng, Scatter, Zipf};
use crate::{alloc, Params};
use presence::channel::ChannelPatch;
use presence::Counts;
use presence::{Answer, Clock, Config, ConnectionId, Engine, UserPatch};
use std::hint::black_box;
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Manual clocks start here (2023-11-14).
pub(crate) const T0: Millis = 1_700_000_000_000;
pub(crate) const STATUSES: [&str; 4] = ["in lobby", "in match", "away", "busy"];
const HOST: ConnectionId = ConnectionId::HOST;

mod c_boundary;
mod churn;
mod fanout;
mod memory;
mod queries;
mod storm;
mod teardown;
mod timers;

use c_boundary::w7_c_boundary;
use churn::{build_churn, w1_heartbeat_churn};
pub(crate) use fanout::{fanout_baseline, fanout_baseline_status};
use fanout::{w3_fanout, STAR_QUERY};
use memory::w6_memory;
use queries::w4_queries;
use storm::w2_storm;
use teardown::w9_teardown;
use timers::w5_timers;

/// Runs the selected workloads (`p.only`, all when empty) in an order that keeps at most
/// one million-user world alive at a time.
pub fn run_all(p: &Params, r: &mut Report) {
    let on = |w: u8| p.only.is_empty() || p.only.contains(&w);
    if on(1) {
        let big = w1_heartbeat_churn(p, r);
        if on(4) {
            w4_queries(p, r, big);
        }
    } else if on(4) {
        let n = *p.w1_sizes.last().expect("sizes");
        progress(&format!("4: building {} users, {} online", count(n), count(n / 4)));
        w4_queries(p, r, build_churn(n));
    }
    if on(5) {
        w5_timers(p, r);
    }
    if on(2) {
        w2_storm(p, r);
    }
    if on(3) {
        w3_fanout(p, r);
    }
    if on(6) {
        w6_memory(p, r);
    }
    if on(7) {
        w7_c_boundary(p, r);
    }
    if on(8) {
        crate::typed_c::w8_typed_c(p, r);
    }
    if on(9) {
        w9_teardown(p, r);
    }
    if on(10) {
        crate::dispatch::w10_dispatch(p, r);
    }
}

// ----- helpers -----

fn now_ms() -> Millis {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock after 1970").as_millis() as Millis
}

pub(crate) fn ns_per(d: Duration, n: usize) -> f64 {
    d.as_nanos() as f64 / n.max(1) as f64
}

pub(crate) fn timed<T>(f: impl FnOnce() -> T) -> (Duration, T) {
    let t = Instant::now();
    let v = f();
    (t.elapsed(), v)
}

pub(crate) fn progress(msg: &str) {
    static START: OnceLock<Instant> = OnceLock::new();
    let start = START.get_or_init(Instant::now);
    eprintln!("[{:>6.1} s] {msg}", start.elapsed().as_secs_f64());
}

/// A sanity check (both modes): the workload did what it claims.
#[track_caller]
pub(crate) fn check(ok: bool, what: impl FnOnce() -> String) {
    if !ok {
        panic!("presence bench sanity check failed: {}", what());
    }
}

pub(crate) fn user_id(i: usize) -> String {
    format!("u{i:07}")
}
