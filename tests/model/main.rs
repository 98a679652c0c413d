//! Model-based property tests.
//!
//! Random sequences of every engine operation run against the engine and against a small
//! reference model written here. The model stores only primary facts (users' fields, live
//! connections with what they watch and which users they subscribed to directly, channel
//! members, the clock) and recomputes everything derived from scratch when it is needed:
//! online-ness, each connection's subscription set (the union of its routes), watcher
//! counts and lists, the recipients of every event.
//!
//! After every step the test compares: the result (or error kind) of the operation, the
//! events host listeners saw, the deliveries each connection got (delivery listener and
//! `poll_events`), `seq` ordering, every user's view for the host and for every live
//! connection, every channel's state (members, watcher_count, watchers) and the counts.
//!
//! A failure prints the shrunk operation list (the `Debug` of [`Op`]) and the step that
//! disagreed. Connections are named by the order they were opened (`#0` is the first
//! connection of the case); a reference to a closed connection exercises `NotFound`.
//!
//! Layout: `ops` (the operations and how they are generated), `reference` (the model),
//! `observed` (what is compared of events and deliveries), `harness` (one case: run a step
//! on both sides, then compare).
#[path = "../common/mod.rs"]
mod common;
mod harness;
mod observed;
mod ops;
mod reference;

use harness::Harness;
use ops::{any_cfg, default_cfg, ops, Cfg, Conn, Op};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use std::collections::BTreeMap;
use std::sync::Mutex;

const USERS: [&str; 5] = ["u0", "u1", "u2", "u3", "u4"];
const CHANNELS: [&str; 3] = ["team:a", "team:b", "dm:c"];
const STATUSES: [&str; 2] = ["busy", "away"];
const T0: i64 = 1_600_000_000_000;

/// Counts of what the cases exercised, for `model_stats`.
static STATS: Mutex<BTreeMap<String, u64>> = Mutex::new(BTreeMap::new());
static COLLECT_STATS: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

fn run_case(cfg: Cfg, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let mut h = Harness::new(cfg);
    let collect = COLLECT_STATS.load(std::sync::atomic::Ordering::Relaxed);
    for (i, op) in ops.iter().enumerate() {
        let (got, want) = h.step(op);
        h.model.settle();
        if collect {
            let name = format!("{op:?}");
            let name = name.split([' ', '(']).next().unwrap_or("").to_owned();
            let outcome = match &got {
                Ok(_) => "ok".to_owned(),
                Err(k) => format!("{k:?}"),
            };
            let events = h.model.host.len() as u64;
            let deliveries = h.model.deliveries.values().map(|v| v.len() as u64).sum::<u64>();
            let mut stats = STATS.lock().unwrap();
            *stats.entry(format!("op {name} {outcome}")).or_default() += 1;
            *stats.entry("events compared".into()).or_default() += events;
            *stats.entry("deliveries compared".into()).or_default() += deliveries;
            for ev in &h.model.host {
                *stats.entry(format!("event {}", ev.ty)).or_default() += 1;
                if let Some((_, reason)) = ev.closed {
                    *stats.entry(format!("closed {reason}")).or_default() += 1;
                }
            }
        }
        prop_assert_eq!(got, want, "result of step {}: {:?}", i, op);
        h.check(i, op)?;
    }
    Ok(())
}

/// Prints what 2000 cases of `model_any_config` exercise (run with `--ignored --nocapture`).
#[test]
#[ignore = "diagnostics only"]
fn model_stats() {
    use proptest::test_runner::TestRunner;
    COLLECT_STATS.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut runner = TestRunner::new(ProptestConfig {
        cases: 2000,
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    runner.run(&(any_cfg(), ops(40)), |(cfg, ops)| run_case(cfg, ops)).unwrap();
    for (k, v) in STATS.lock().unwrap().iter() {
        println!("{k:40} {v}");
    }
}

/// `PROPTEST_CASES` overrides the number of cases of every block (for quick runs or soaks).
fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(4000), max_shrink_iters: 20_000, failure_persistence: None, ..ProptestConfig::default() })]

    /// Default configuration (no timeouts, no grace, generous limits).
    #[test]
    fn model_default_config(ops in ops(40)) {
        run_case(default_cfg(), ops)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(3500), max_shrink_iters: 20_000, failure_persistence: None, ..ProptestConfig::default() })]

    /// Heartbeat timeouts, offline grace and a short refresh period, all together.
    #[test]
    fn model_timers(ops in ops(40)) {
        run_case(Cfg { timeout: 100, grace: 50, refresh: 40, max_conns: 50, max_subs: 10_000, queue_cap: 1024 }, ops)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(3500), max_shrink_iters: 20_000, failure_persistence: None, ..ProptestConfig::default() })]

    /// Every combination of timer settings and tight limits.
    #[test]
    fn model_any_config(cfg in any_cfg(), ops in ops(40)) {
        run_case(cfg, ops)?;
    }
}

/// A few hand-written sequences, so a regression shows up with a readable name.
#[test]
fn model_smoke_sequences() {
    use Op::*;
    let cases: Vec<(Cfg, Vec<Op>)> = vec![
        (
            default_cfg(),
            vec![
                UpsertChannel("team:a", vec!["u0", "u1"]),
                Connect { user: "u0", invisible: None, status: None, name: None },
                Watch { conn: Conn(0), cid: "team:a", presence: true },
                Connect { user: "u1", invisible: None, status: Some(Some("busy")), name: None },
                SetInvisible("u1", true),
                Watch { conn: Conn(1), cid: "team:a", presence: false },
                SetInvisible("u1", false),
                Disconnect(Conn(1)),
            ],
        ),
        (
            Cfg { timeout: 100, grace: 50, refresh: 40, max_conns: 2, max_subs: 3, queue_cap: 2 },
            vec![
                Connect { user: "u0", invisible: None, status: None, name: None },
                Connect { user: "u0", invisible: None, status: None, name: None },
                Connect { user: "u0", invisible: None, status: None, name: None },
                Advance(99),
                Heartbeat(Conn(0)),
                Advance(1),
                Tick,
                Advance(100),
                Tick,
                Advance(50),
                Tick,
            ],
        ),
    ];
    for (cfg, ops) in cases {
        if let Err(e) = run_case(cfg.clone(), ops.clone()) {
            panic!("{e}\nconfig {cfg:?}\nops {ops:#?}");
        }
    }
}
