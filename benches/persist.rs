//! What `save` and `load` cost the rest of the engine at scale: how long a heartbeat on
//! another thread waits while a save runs (against the same heartbeat loop with no save,
//! measured in the same run), and the peak memory each adds on top of the engine.
//!
//! `cargo bench --bench persist` runs it at 1M users (users carry a status and a custom
//! field; 20,000 channels of 50 members; 1,000 open connections for the heartbeats);
//! `PRESENCE_BENCH_SCALE=0.1` shrinks the user count. Without `--bench` (as `cargo test
//! --release` runs it) it runs with 2,000 users and checks only that the snapshot loads
//! back complete, never anything about timing. Peak memory is the process's `VmHWM`
//! after resetting it through `/proc/self/clear_refs` (Linux).
use presence::{ConnectionId, Engine, UserPatch};
use serde_json::json;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const MB: f64 = (1 << 20) as f64;

fn status_kb(key: &str) -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(key))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Resets the peak to the current resident size; answers that size in bytes.
fn reset_peak() -> f64 {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    status_kb("VmRSS:").unwrap_or(0.0) * 1024.0
}

/// CPU time of the calling thread: on a shared machine wall time also counts waiting for
/// a core.
fn thread_cpu() -> Duration {
    let mut t = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `t` is a valid timespec for the call to fill.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

fn peak() -> f64 {
    status_kb("VmHWM:").unwrap_or(0.0) * 1024.0
}

/// Heartbeats on another thread until `stop`; answers the longest single call and the
/// number of calls.
fn heartbeats(
    engine: Arc<Engine>,
    connections: Vec<ConnectionId>,
    stop: Arc<AtomicBool>,
) -> (Duration, usize) {
    let (mut longest, mut calls) = (Duration::ZERO, 0);
    while !stop.load(Ordering::Relaxed) {
        let c = connections[calls % connections.len()];
        let t = Instant::now();
        engine.heartbeat(c).unwrap();
        longest = longest.max(t.elapsed());
        calls += 1;
        if calls % 64 == 0 {
            std::thread::yield_now();
        }
    }
    (longest, calls)
}

/// Runs `work` while another thread heartbeats; answers what `work` answered, its wall
/// time, and the heartbeats' longest call and count.
fn with_heartbeats<T>(
    engine: &Arc<Engine>,
    connections: &[ConnectionId],
    work: impl FnOnce() -> T,
) -> (T, Times, Duration, usize) {
    let stop = Arc::new(AtomicBool::new(false));
    let beating = {
        let (engine, connections, stop) = (engine.clone(), connections.to_vec(), stop.clone());
        std::thread::spawn(move || heartbeats(engine, connections, stop))
    };
    std::thread::sleep(Duration::from_millis(20));
    let (t, cpu) = (Instant::now(), thread_cpu());
    let out = work();
    let (wall, cpu) = (t.elapsed(), thread_cpu() - cpu);
    stop.store(true, Ordering::Relaxed);
    let (longest, calls) = beating.join().unwrap();
    (out, Times { wall, cpu }, longest, calls)
}

struct Times {
    wall: Duration,
    cpu: Duration,
}

impl Times {
    /// "wall s / CPU s", as the table prints it.
    fn seconds(&self) -> String {
        format!("{:.2} s / {:.2} s", self.wall.as_secs_f64(), self.cpu.as_secs_f64())
    }
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let scale: f64 = std::env::var("PRESENCE_BENCH_SCALE").ok().and_then(|s| s.parse().ok()).unwrap_or(1.0);
    let users = if full { (1_000_000.0 * scale) as usize } else { 2_000 };
    let channels = (users / 50).min(20_000);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("snapshot.json");
    let (engine, connections) = build_world(users, channels);

    let before = reset_peak();
    let ((), save_time, save_longest, save_calls) =
        with_heartbeats(&engine, &connections, || engine.save(&path).unwrap());
    let save_peak = peak() - before;
    let file = std::fs::metadata(&path).unwrap().len() as f64;

    // The same heartbeat loop for as long, with nothing else running: the baseline.
    let (_, _, idle_longest, idle_calls) = with_heartbeats(&engine, &connections, || {
        std::thread::sleep(save_time.wall.max(Duration::from_millis(50)))
    });

    let loaded = Engine::from_json(Some(r#"{"clock":"manual"}"#)).unwrap();
    let before = reset_peak();
    let (t, cpu) = (Instant::now(), thread_cpu());
    loaded.load(&path).unwrap();
    let load_time = Times { wall: t.elapsed(), cpu: thread_cpu() - cpu };
    let load_peak = peak() - before;
    assert_eq!(
        loaded.counts(),
        presence::Counts { users, connections: 0, channels },
        "the snapshot loads back complete"
    );

    if !full {
        println!("persist smoke run: {users} users saved and loaded back");
        return;
    }
    println!("| {users} users, {channels} channels | figure |");
    println!("|---|---|");
    println!("| file size | {:.0} MB |", file / MB);
    println!("| save, wall / CPU time | {} |", save_time.seconds());
    println!(
        "| longest heartbeat during save / without save (ratio) | {:.1} ms / {:.1} ms ({:.1}x); {save_calls} / {idle_calls} calls |",
        save_longest.as_secs_f64() * 1e3,
        idle_longest.as_secs_f64() * 1e3,
        save_longest.as_secs_f64() / idle_longest.as_secs_f64().max(1e-9)
    );
    println!("| peak memory added by save | {:.0} MB |", save_peak / MB);
    println!("| load, wall / CPU time | {} |", load_time.seconds());
    println!("| peak memory added by load (including the loaded state) | {:.0} MB |", load_peak / MB);
}

/// Users with a status and a custom field, channels of 50 members, 1000 connections.
fn build_world(users: usize, channels: usize) -> (Arc<Engine>, Vec<ConnectionId>) {
    let engine =
        Arc::new(Engine::from_json(Some(r#"{"clock":"manual","start_time_ms":1546867062375}"#)).unwrap());
    eprintln!("building {users} users, {channels} channels ...");
    for i in 0..users {
        let body = json!({"id": format!("user-{i:07}"), "status": "playing", "level": i % 100});
        engine.upsert_user_json(&body.to_string()).unwrap();
    }
    for c in 0..channels {
        let members: Vec<String> = (0..50).map(|m| format!("user-{:07}", (c * 50 + m) % users)).collect();
        engine
            .upsert_channel_json(&json!({"cid": format!("team:{c}"), "members": members}).to_string())
            .unwrap();
    }
    let connections: Vec<ConnectionId> = (0..1000.min(users))
        .map(|i| engine.connect(&UserPatch::id(format!("user-{i:07}"))).unwrap())
        .collect();
    (engine, connections)
}
