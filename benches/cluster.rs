//! Cluster mode through a real `redis-server` on loopback (started by this program), each
//! row with its same-run comparison where one makes sense:
//! cross-node latency (connect on A to delivery on B) against the same on one engine,
//! presence changes per second with several nodes writing against one engine alone,
//! Redis commands and bytes per change, and the time from a node kill to offline.
//!
//! `cargo bench --bench cluster` runs the full sizes; `PRESENCE_BENCH_SCALE=0.1` shrinks
//! them. Without `--bench` (as `cargo test --release` runs it) a tiny smoke run checks only
//! that every row ran, never anything about timing.
#[path = "../src/cluster/testing.rs"]
mod redis_server;

use presence::{ConnectionId, Engine, EventKind, ListenerFilter, View};
use redis_server::RedisServer;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

const HEARTBEAT_MS: u64 = 100;
const LEASE_MS: u64 = 1000;
const CHILD_ENV: &str = "PRESENCE_BENCH_CLUSTER_CHILD";
const CHILD_USER_ENV: &str = "PRESENCE_BENCH_CLUSTER_CHILD_USER";

struct Sizes {
    latency_samples: usize,
    writers: usize,
    write_seconds: f64,
    kills: usize,
}

fn config(url: &str, node: &str, namespace: &str) -> String {
    format!(
        r#"{{"cluster":{{"redis_url":"{url}","node_id":"{node}","namespace":"{namespace}",
        "heartbeat_ms":{HEARTBEAT_MS},"lease_ms":{LEASE_MS},"max_pending_writes":100000}}}}"#
    )
}

fn node(url: &str, name: &str, namespace: &str) -> Engine {
    let engine = Engine::from_json(Some(&config(url, name, namespace))).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while engine.cluster_status()["link"] != "up" {
        assert!(Instant::now() < deadline, "{name} did not link");
        std::thread::sleep(Duration::from_millis(5));
    }
    engine
}

fn percentiles(mut samples: Vec<Duration>) -> (Duration, Duration, Duration) {
    samples.sort();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    (at(0.5), at(0.99), *samples.last().unwrap())
}

fn micros(d: Duration) -> String {
    format!("{:.0} µs", d.as_secs_f64() * 1e6)
}

/// Connect on `from`, wait for the presence event on `to`'s host listener.
fn latencies(from: &Engine, to: &Engine, samples: usize, prefix: &str) -> Vec<Duration> {
    let (tx, rx) = mpsc::channel::<(String, Instant)>();
    let watched = prefix.to_string();
    to.add_listener(ListenerFilter::event_type("user.presence.changed"), move |e| {
        if let EventKind::PresenceChanged { user } = &e.kind {
            if user.online(View::Public) && user.id.starts_with(watched.as_str()) {
                let _ = tx.send((user.id.to_string(), Instant::now()));
            }
        }
    })
    .expect("a known event type");
    let mut out = Vec::with_capacity(samples);
    for i in 0..samples {
        let id = format!("{prefix}{i}");
        let started = Instant::now();
        let c = from.connect_json(&format!(r#"{{"id":"{id}"}}"#)).unwrap();
        loop {
            let (who, at) = rx.recv_timeout(Duration::from_secs(10)).expect("the connect arrived");
            if who == id {
                out.push(at - started);
                break;
            }
        }
        from.disconnect(c).unwrap();
    }
    out
}

fn latency_row(url: &str, sizes: &Sizes) {
    let (a, b) = (node(url, "lat-a", "bench-latency"), node(url, "lat-b", "bench-latency"));
    let cross = percentiles(latencies(&a, &b, sizes.latency_samples, "x"));
    let single = Engine::from_json(None).unwrap();
    let local = percentiles(latencies(&single, &single, sizes.latency_samples, "x"));
    println!(
        "| cross-node latency, connect on A to event on B ({} samples) | p50 {}, p99 {}, max {} | one engine: p50 {}, p99 {}, max {} |",
        sizes.latency_samples,
        micros(cross.0),
        micros(cross.1),
        micros(cross.2),
        micros(local.0),
        micros(local.1),
        micros(local.2)
    );
}

/// Each writer thread changes the status of its node's own users as fast as the node
/// accepts. A full pending queue answers STATE; the writer then sleeps 1 ms (the queue
/// holds far more than the link writes in that time) instead of spinning on the cores the
/// links and Redis need.
fn write_for(engines: &[Arc<Engine>], seconds: f64) -> u64 {
    let stop = Arc::new(AtomicBool::new(false));
    let accepted = Arc::new(AtomicU64::new(0));
    let threads: Vec<_> = engines
        .iter()
        .enumerate()
        .map(|(n, engine)| {
            let (engine, stop, accepted) = (engine.clone(), stop.clone(), accepted.clone());
            std::thread::spawn(move || {
                let users: Vec<String> = (0..100).map(|i| format!("w{n}-{i}")).collect();
                for u in &users {
                    engine.upsert_user_json(&format!(r#"{{"id":"{u}"}}"#)).unwrap();
                }
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let status = format!("s{i}");
                    if engine.set_status(&users[(i % 100) as usize], Some(&status)).is_ok() {
                        accepted.fetch_add(1, Ordering::Relaxed);
                    } else {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    i += 1;
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs_f64(seconds));
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }
    accepted.load(Ordering::Relaxed)
}

fn throughput_rows(server: &RedisServer, sizes: &Sizes) {
    let url = server.url();
    let engines: Vec<Arc<Engine>> =
        (0..sizes.writers).map(|n| Arc::new(node(&url, &format!("w{n}"), "bench-write"))).collect();
    let cpu = redis_cpu_seconds(server);
    let (commands, input, output) = (
        server.info_number("total_commands_processed").unwrap(),
        server.info_number("total_net_input_bytes").unwrap(),
        server.info_number("total_net_output_bytes").unwrap(),
    );
    let started = Instant::now();
    let accepted = write_for(&engines, sizes.write_seconds);
    // Each writer also created its 100 users; the store has everything when no change
    // waits in a link and the users' versions (one per change) add up to all of it.
    let expected = accepted + 100 * sizes.writers as u64;
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut stored = 0;
    while stored < expected {
        assert!(Instant::now() < deadline, "the writes did not drain: {stored} of {expected} stored");
        std::thread::sleep(Duration::from_millis(1));
        if engines.iter().all(|e| e.cluster_status()["pending_writes"] == 0) {
            stored = stored_changes(server);
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = redis_cpu_seconds(server) - cpu;
    let commands = server.info_number("total_commands_processed").unwrap() - commands;
    let bytes = server.info_number("total_net_input_bytes").unwrap() - input
        + server.info_number("total_net_output_bytes").unwrap()
        - output;
    let single = Arc::new(Engine::from_json(None).unwrap());
    let single_rate =
        write_for(std::slice::from_ref(&single), sizes.write_seconds) as f64 / sizes.write_seconds;
    let changes = stored.max(1);
    println!(
        "| presence changes through one Redis, {} nodes writing, until all are stored | {:.0} changes/s | one engine alone: {:.0} changes/s |",
        sizes.writers,
        stored as f64 / elapsed,
        single_rate
    );
    println!(
        "| Redis commands per change ({} nodes, each also reading every change) | {:.2} | per write script call (up to 64 changes of one shard): 5, plus 2 per user changed, 1 per connect or disconnect |",
        sizes.writers,
        commands as f64 / changes as f64
    );
    println!("| Redis bytes per change, in + out | {:.0} B | |", bytes as f64 / changes as f64);
    println!(
        "| Redis CPU time per change (user + sys) | {:.2} µs | Redis busy {:.0}% of one core meanwhile |",
        cpu * 1e6 / changes as f64,
        cpu * 100.0 / elapsed
    );
}

/// CPU time the Redis process used so far (user + sys).
fn redis_cpu_seconds(server: &RedisServer) -> f64 {
    ["used_cpu_user", "used_cpu_sys"]
        .iter()
        .map(|field| server.info(field).and_then(|v| v.parse::<f64>().ok()).unwrap())
        .sum()
}

/// The changes the store applied to the writers' users: the sum of their versions.
fn stored_changes(server: &RedisServer) -> u64 {
    const SUM: &str = "local n = 0
        for s = 0, 15 do
          local shard = ARGV[1] .. s .. '}:'
          for _, u in ipairs(redis.call('SMEMBERS', shard .. 'users')) do
            n = n + tonumber(redis.call('HGET', shard .. 'u:' .. u, 'v'))
          end
        end
        return n";
    server
        .command(&["EVAL", SUM, "0", "bench-write:{s"])
        .and_then(|r| r.trim_start_matches(':').parse().ok())
        .unwrap_or(0)
}

fn kill_row(url: &str, sizes: &Sizes) {
    let a = node(url, "watcher", "bench-kill");
    let mut took = Vec::new();
    for k in 0..sizes.kills {
        let user = format!("victim{k}");
        let mut child = Command::new(std::env::current_exe().unwrap())
            .env(CHILD_ENV, config(url, &format!("victim-node{k}"), "bench-kill"))
            .env(CHILD_USER_ENV, &user)
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while a.get_user(ConnectionId::HOST, &user).map_or(true, |u| !u.user.online(View::Public)) {
            assert!(Instant::now() < deadline, "the victim did not come online");
            std::thread::sleep(Duration::from_millis(2));
        }
        child.kill().unwrap();
        let killed = Instant::now();
        child.wait().unwrap();
        while a.get_user(ConnectionId::HOST, &user).is_ok_and(|u| u.user.online(View::Public)) {
            assert!(killed.elapsed() < Duration::from_secs(30), "the victim did not go offline");
            std::thread::sleep(Duration::from_millis(2));
        }
        took.push(killed.elapsed());
    }
    let worst = took.iter().max().unwrap();
    println!(
        "| node kill (SIGKILL) to offline everywhere ({} kills) | worst {} ms | lease + heartbeat: {} ms |",
        sizes.kills,
        worst.as_millis(),
        LEASE_MS + HEARTBEAT_MS
    );
}

/// The killed node: connects its user, then waits to be killed.
fn run_child(config: &str) {
    let user = std::env::var(CHILD_USER_ENV).unwrap();
    let engine = Engine::from_json(Some(config)).unwrap();
    let _c: ConnectionId = engine.connect_json(&format!(r#"{{"id":"{user}"}}"#)).unwrap();
    loop {
        std::thread::sleep(Duration::from_secs(1));
    }
}

fn main() {
    if let Ok(config) = std::env::var(CHILD_ENV) {
        return run_child(&config);
    }
    let full = std::env::args().any(|a| a == "--bench");
    let scale: f64 = std::env::var("PRESENCE_BENCH_SCALE").ok().and_then(|s| s.parse().ok()).unwrap_or(1.0);
    let sizes = if full {
        Sizes {
            latency_samples: ((2000.0 * scale) as usize).max(20),
            writers: 3,
            write_seconds: (5.0 * scale).max(0.5),
            kills: ((5.0 * scale) as usize).max(1),
        }
    } else {
        Sizes { latency_samples: 20, writers: 2, write_seconds: 0.2, kills: 1 }
    };
    let Some(server) = redis_server::start_redis() else { return };
    println!("| cluster (redis-server on loopback) | figure | same-run comparison |");
    println!("|---|---|---|");
    latency_row(&server.url(), &sizes);
    throughput_rows(&server, &sizes);
    kill_row(&server.url(), &sizes);
}
