//! The benchmarks: what the engine exists for, measured side by side with a minimal baseline in
//! one run, printed as one table.
//!
//! `cargo bench --bench presence` runs the full workloads (cargo passes `--bench`) and
//! prints the table on stdout (progress goes to stderr). `PRESENCE_BENCH_SCALE=0.1`
//! shrinks the full run (user, channel and operation counts scale with it);
//! `PRESENCE_BENCH_ONLY=2,3` runs only those workloads (for profiling one of them).
//!
//! Without `--bench` (as `cargo test --release` runs it) every workload runs in a tiny
//! smoke mode: a few hundred users, well under two seconds, checking only that the
//! workloads ran and their results are sane — never anything about timing.
//!
//! Each figure is the best of a few interleaved rounds (engine, baseline, engine, ...),
//! so that load from other processes on a shared machine hits both sides alike; the
//! ratio engine/baseline is the figure to drive down.
#[path = "presence/alloc.rs"]
mod alloc;
#[path = "presence/baseline.rs"]
mod baseline;
#[path = "presence/dispatch.rs"]
mod dispatch;
#[path = "presence/report.rs"]
mod report;
#[path = "presence/rng.rs"]
mod rng;
#[path = "presence/typed_c.rs"]
mod typed_c;
#[path = "presence/workloads/mod.rs"]
mod workloads;

#[global_allocator]
static GLOBAL: alloc::Counting = alloc::Counting;

use std::time::Instant;

/// Sizes and repetition counts of one run.
pub struct Params {
    pub full: bool,
    pub scale: f64,
    /// Workload numbers to run (`PRESENCE_BENCH_ONLY=1,4`); empty: all.
    pub only: Vec<u8>,
    /// Interleaved rounds per measurement (the best one counts).
    pub rounds: usize,
    pub w1_sizes: Vec<usize>,
    pub w1_ops: usize,
    pub w1_idle_ticks: usize,
    pub w2_users: usize,
    pub w2_channels: usize,
    pub w2_largest: usize,
    pub w2_per_user: usize,
    pub w2_online_fraction: f64,
    pub w2_cycles: usize,
    pub w3_widths: Vec<usize>,
    pub w3_deliveries: usize,
    pub w4_channels: usize,
    pub w4_members: usize,
    pub w4_queries: usize,
    pub w5_online: usize,
    pub w5_idle_ticks: usize,
    pub w5_steps: usize,
    pub w6_offline: usize,
    pub w6_online: usize,
    pub w6_memberships: usize,
    pub w7_online: usize,
    pub w7_heartbeats: usize,
    pub w7_poll_rounds: usize,
    pub w8_users: usize,
    pub w8_ops: usize,
    pub w8_drain_rounds: usize,
    pub w8_changes: usize,
    /// Channel counts N for the teardown rows (the last is compared with the first).
    pub w9_sizes: Vec<usize>,
    pub w10_deliveries: usize,
    pub w10_listeners: usize,
}

impl Params {
    fn new(full: bool, scale: f64) -> Params {
        if full {
            Params::full(scale)
        } else {
            Params::smoke(scale)
        }
    }

    /// The sizes `cargo test` runs: every workload once, small, sanity checks only.
    fn smoke(scale: f64) -> Params {
        Params {
            full: false,
            scale,
            only: Vec::new(),
            rounds: 1,
            w1_sizes: vec![100, 400],
            w1_ops: 4000,
            w1_idle_ticks: 1000,
            w2_users: 300,
            w2_channels: 30,
            w2_largest: 120,
            w2_per_user: 20,
            w2_online_fraction: 0.2,
            w2_cycles: 40,
            w3_widths: vec![10, 200],
            w3_deliveries: 4000,
            w4_channels: 40,
            w4_members: 20,
            w4_queries: 20,
            w5_online: 400,
            w5_idle_ticks: 1000,
            w5_steps: 5,
            w6_offline: 400,
            w6_online: 200,
            w6_memberships: 20,
            w7_online: 50,
            w7_heartbeats: 2000,
            w7_poll_rounds: 2,
            w8_users: 300,
            w8_ops: 500,
            w8_drain_rounds: 2,
            w8_changes: 200,
            w9_sizes: vec![100, 1000],
            w10_deliveries: 2000,
            w10_listeners: 100,
        }
    }

    /// The sizes `cargo bench` runs, multiplied by `PRESENCE_BENCH_SCALE` where a size may shrink.
    fn full(scale: f64) -> Params {
        let s = |n: usize, min: usize| ((n as f64 * scale).round() as usize).max(min);
        Params {
            full: true,
            scale,
            only: Vec::new(),
            rounds: 3,
            w1_sizes: vec![s(10_000, 100), s(100_000, 300), s(1_000_000, 1000)],
            w1_ops: s(2_000_000, 20_000),
            w1_idle_ticks: 200_000,
            w2_users: s(100_000, 300),
            w2_channels: s(10_000, 30),
            w2_largest: s(10_000, 30),
            w2_per_user: 20,
            w2_online_fraction: 0.1,
            w2_cycles: s(400, 40),
            w3_widths: [10, 200, 10_000, 100_000]
                .into_iter()
                .filter(|&w| w <= 200 || w as f64 <= 100_000.0 * scale)
                .collect(),
            w3_deliveries: s(2_000_000, 20_000),
            w4_channels: s(100_000, 40),
            w4_members: 20,
            w4_queries: 2000,
            w5_online: s(1_000_000, 1000),
            w5_idle_ticks: 200_000,
            w5_steps: 20,
            w6_offline: s(1_000_000, 1000),
            w6_online: s(100_000, 300),
            w6_memberships: 20,
            w7_online: 10_000,
            w7_heartbeats: 2_000_000,
            w7_poll_rounds: 30,
            w8_users: s(10_000, 300),
            w8_ops: s(200_000, 2000),
            w8_drain_rounds: 30,
            w8_changes: s(200_000, 2000),
            w9_sizes: vec![s(10_000, 100), s(100_000, 1000)],
            w10_deliveries: s(2_000_000, 20_000),
            w10_listeners: 10_000,
        }
    }
}

fn main() {
    let full = std::env::args().skip(1).any(|a| a == "--bench");
    let scale = match std::env::var("PRESENCE_BENCH_SCALE") {
        Ok(v) => match v.trim().parse::<f64>() {
            Ok(s) if s > 0.0 && s.is_finite() => s,
            _ => panic!("PRESENCE_BENCH_SCALE must be a positive number, got {v:?}"),
        },
        Err(_) => 1.0,
    };
    let mut p = Params::new(full, scale);
    if let Ok(v) = std::env::var("PRESENCE_BENCH_ONLY") {
        p.only = v
            .split(',')
            .filter(|w| !w.trim().is_empty())
            .map(|w| match w.trim().parse::<u8>() {
                Ok(n @ 1..=10) => n,
                _ => panic!("PRESENCE_BENCH_ONLY lists workloads 1..=10, got {v:?}"),
            })
            .collect();
    }
    let started = Instant::now();
    if full {
        eprintln!("presence bench: full run, scale {scale}");
    }
    let mut report = report::Report::default();
    workloads::run_all(&p, &mut report);
    let elapsed = started.elapsed();
    if full {
        println!(
            "presence-engine benchmark, scale {scale}, {:.0} s; ratio = engine cost / baseline cost (1.0 = the floor)\n",
            elapsed.as_secs_f64()
        );
        print!("{}", report.table());
    } else {
        println!(
            "presence bench smoke mode: {} rows from the workloads ran and were sane in {:.2} s (no timing checked; `cargo bench --bench presence` for figures)",
            report.rows.len(),
            elapsed.as_secs_f64()
        );
    }
}
