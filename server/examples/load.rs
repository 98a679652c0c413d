//! Load test, bounded in time: thousands of WebSocket clients on loopback connect to a
//! `presence-server` process, all watch one shared channel with presence, and churn (status
//! changes of the channel's members, reconnects of the others). Prints connects per second,
//! event latency (from the change being sent to each watcher receiving it), and server
//! memory per connection, beside the same work done in-process by the engine in this run.
//!
//! `cargo build --release -p presence-server && cargo run --release -p presence-server --example load`
//! Options: `--clients N` (2000), `--members N` (50), `--seconds S` (10), `--changes-per-second R` (10).
use futures_util::{SinkExt, StreamExt};
use presence::{Answer, Engine};
use presence_server::auth::Keys;
use serde_json::json;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

const SECRET: &str = "load-test-jwt-secret";
const CID: &str = "load:room";
/// The whole run is abandoned past this.
const DEADLINE: Duration = Duration::from_secs(180);

struct Options {
    clients: usize,
    members: usize,
    seconds: u64,
    changes_per_second: u64,
}

fn options() -> Options {
    let mut o = Options { clients: 2000, members: 50, seconds: 10, changes_per_second: 10 };
    let args: Vec<String> = std::env::args().skip(1).collect();
    for pair in args.chunks(2) {
        let value = || {
            pair.get(1).and_then(|v| v.parse().ok()).unwrap_or_else(|| panic!("{} needs a number", pair[0]))
        };
        match pair[0].as_str() {
            "--clients" => o.clients = value() as usize,
            "--members" => o.members = value() as usize,
            "--seconds" => o.seconds = value(),
            "--changes-per-second" => o.changes_per_second = value(),
            other => panic!("unknown option {other}"),
        }
    }
    assert!(o.members <= o.clients && o.members > 0, "--members must be in 1..=clients");
    o
}

fn user(i: usize) -> String {
    format!("user{i:05}")
}

/// Microseconds since the run began: the status text a change carries, so each receiver
/// can tell how long the change took to reach it.
fn micros() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    EPOCH.get_or_init(Instant::now).elapsed().as_micros() as u64
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// The status stamp in a `user.presence.changed` frame, found without parsing the frame.
fn stamp(frame: &str) -> Option<u64> {
    if !frame.starts_with(r#"{"type":"user.presence.changed""#) {
        return None;
    }
    let at = frame.find(r#""status":"t="#)? + r#""status":"t="#.len();
    frame[at..].split('"').next()?.parse().ok()
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

struct Shared {
    addr: String,
    keys: Keys,
    ready: AtomicUsize,
    watching: AtomicUsize,
    latencies: parking_lot::Mutex<Vec<u64>>,
    /// Cleared when the churn ends, so the members' going offline at the end is not counted.
    recording: std::sync::atomic::AtomicBool,
    closed_early: AtomicUsize,
}

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Connects and reads `connection.ok`.
async fn connect(shared: &Shared, i: usize) -> Socket {
    let url = format!("ws://{}/connect?token={}", shared.addr, shared.keys.sign(&user(i), 3600));
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.expect("connect");
    while let Some(Ok(message)) = ws.next().await {
        if matches!(&message, Message::Text(text) if text.starts_with(r#"{"type":"connection.ok""#)) {
            break;
        }
    }
    ws
}

/// Watches the channel and reads the answer.
async fn watch(ws: &mut Socket) {
    ws.send(Message::Text(json!({"type": "watch", "id": 1, "cid": CID}).to_string().into())).await.unwrap();
    while let Some(Ok(message)) = ws.next().await {
        if let Message::Text(text) = message {
            if text.starts_with(r#"{"type":"result""#) {
                break;
            }
        }
    }
}

/// One client: connects, watches once `go` says so, then reads events (recording
/// latencies) and obeys commands: `true` sends a stamped status change, `false` reconnects.
async fn client(
    shared: Arc<Shared>,
    i: usize,
    mut go: tokio::sync::watch::Receiver<bool>,
    mut commands: mpsc::UnboundedReceiver<bool>,
) {
    let mut ws = connect(&shared, i).await;
    shared.ready.fetch_add(1, Ordering::Relaxed);
    let _ = go.wait_for(|go| *go).await;
    watch(&mut ws).await;
    shared.watching.fetch_add(1, Ordering::Relaxed);
    let mut latencies = Vec::new();
    loop {
        tokio::select! {
            command = commands.recv() => match command {
                Some(true) => {
                    let change = json!({"type": "set_status", "status": format!("t={}", micros())});
                    if ws.send(Message::Text(change.to_string().into())).await.is_err() {
                        break;
                    }
                }
                Some(false) => {
                    let _ = ws.close(None).await;
                    ws = connect(&shared, i).await;
                    watch(&mut ws).await;
                }
                None => break,
            },
            message = ws.next() => match message {
                Some(Ok(Message::Text(text))) => {
                    if let Some(sent) = stamp(&text).filter(|_| shared.recording.load(Ordering::Relaxed)) {
                        latencies.push(micros().saturating_sub(sent));
                    }
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => {
                    // Closed by the server: slow consumer, timeout, or a crash.
                    shared.closed_early.fetch_add(1, Ordering::Relaxed);
                    break;
                }
                Some(Ok(_)) => {}
            },
        }
    }
    shared.latencies.lock().extend(latencies);
}

struct InProcess {
    connects_per_s: f64,
    watches_per_s: f64,
    fan_out_us: Vec<u64>,
}

/// The same work with the engine called directly: connect and watch every client, then
/// status changes of members fanned out into every watcher's queue and drained.
fn in_process(o: &Options) -> InProcess {
    let engine =
        Engine::from_json(Some(&json!({"connection_queue_capacity": 1 << 20}).to_string())).expect("engine");
    let members: Vec<String> = (0..o.members).map(user).collect();
    engine
        .upsert_channel_json(&json!({"type": "load", "id": "room", "members": members}).to_string())
        .unwrap();
    let start = Instant::now();
    let connections: Vec<_> =
        (0..o.clients).map(|i| engine.connect_json(&json!({ "id": user(i) }).to_string()).unwrap()).collect();
    let connects_per_s = o.clients as f64 / start.elapsed().as_secs_f64();
    let start = Instant::now();
    for &c in &connections {
        engine.watch_channel(c, CID, true).unwrap().to_json();
    }
    let watches_per_s = o.clients as f64 / start.elapsed().as_secs_f64();
    for &c in &connections {
        engine.poll_events(c, usize::MAX).unwrap();
    }
    let changes = (o.seconds * o.changes_per_second) as usize;
    let mut fan_out_us = Vec::with_capacity(changes);
    for n in 0..changes {
        let start = Instant::now();
        engine.set_status(&user(n % o.members), Some(&format!("t={n}"))).unwrap();
        // What a server does per change: render each delivery for its recipient.
        for &c in &connections {
            for d in engine.poll_events(c, usize::MAX).unwrap() {
                std::hint::black_box(d.to_json());
            }
        }
        fan_out_us.push(start.elapsed().as_micros() as u64);
    }
    fan_out_us.sort_unstable();
    InProcess { connects_per_s, watches_per_s, fan_out_us }
}

fn main() {
    let o = options();
    let run_started = Instant::now();
    micros();
    let exe = std::env::current_exe().unwrap();
    let server_bin = exe.parent().and_then(|p| p.parent()).map(|p| p.join("presence-server")).unwrap();
    assert!(
        server_bin.is_file(),
        "{} is missing: run `cargo build --release -p presence-server` first",
        server_bin.display()
    );

    let dir = std::env::temp_dir().join(format!("presence-load-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = json!({
        "addr": "127.0.0.1:0",
        "jwt_secret": SECRET,
        "api_secret": "load-test-api-secret",
        "messages_per_second": 1000,
        "message_burst": 1000,
        // Every join is announced to every watcher: queues must hold a full join wave.
        "engine": {"connection_queue_capacity": (o.clients * 2).max(1024)},
        "channels": [{"type": "load", "id": "room", "members": (0..o.members).map(user).collect::<Vec<_>>()}],
    });
    let config_path = dir.join("server.json");
    std::fs::write(&config_path, config.to_string()).unwrap();
    let mut server =
        Command::new(&server_bin).arg("--config").arg(&config_path).stdout(Stdio::piped()).spawn().unwrap();
    let mut line = String::new();
    BufReader::new(server.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let addr = line.trim().rsplit("http://").next().unwrap().to_owned();
    std::thread::sleep(Duration::from_millis(200));
    let rss_idle = rss_kib(server.id());

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let shared = Arc::new(Shared {
        addr,
        keys: Keys::new(SECRET),
        ready: AtomicUsize::new(0),
        watching: AtomicUsize::new(0),
        latencies: parking_lot::Mutex::new(Vec::new()),
        recording: std::sync::atomic::AtomicBool::new(true),
        closed_early: AtomicUsize::new(0),
    });

    // Phase 1: everyone connects, at most 64 handshakes in flight; then everyone watches.
    let (go, go_rx) = tokio::sync::watch::channel(false);
    let wait_for = |count: &AtomicUsize| {
        while count.load(Ordering::Relaxed) < o.clients {
            assert!(run_started.elapsed() < DEADLINE, "past the deadline");
            std::thread::sleep(Duration::from_millis(5));
        }
    };
    let connect_start = Instant::now();
    let mut commands = Vec::with_capacity(o.clients);
    let mut tasks = Vec::with_capacity(o.clients);
    runtime.block_on(async {
        for i in 0..o.clients {
            while i - shared.ready.load(Ordering::Relaxed) >= 64 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            let (tx, rx) = mpsc::unbounded_channel();
            commands.push(tx);
            tasks.push(tokio::spawn(client(shared.clone(), i, go_rx.clone(), rx)));
        }
    });
    wait_for(&shared.ready);
    let connect_time = connect_start.elapsed();
    std::thread::sleep(Duration::from_millis(500));
    let rss_connected = rss_kib(server.id());
    let watch_start = Instant::now();
    go.send(true).unwrap();
    wait_for(&shared.watching);
    let watch_time = watch_start.elapsed();
    // Let the join wave's announcements drain before measuring memory and latency.
    std::thread::sleep(Duration::from_secs(2));
    let rss_watching = rss_kib(server.id());

    // Phase 2: churn for the configured time.
    let changes = o.seconds * o.changes_per_second;
    let churners = o.clients - o.members;
    runtime.block_on(async {
        let period = Duration::from_micros(1_000_000 / o.changes_per_second.max(1));
        let mut every = tokio::time::interval(period);
        for n in 0..changes as usize {
            every.tick().await;
            let _ = commands[n % o.members].send(true);
            // One reconnect of a non-member per five changes.
            if churners > 0 && n % 5 == 0 {
                let _ = commands[o.members + (n / 5) % churners].send(false);
            }
        }
        // Let the last changes arrive.
        tokio::time::sleep(Duration::from_secs(2)).await;
        shared.recording.store(false, Ordering::Relaxed);
        commands.clear();
        for task in tasks {
            let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
        }
    });
    let _ = server.kill();
    let _ = server.wait();
    let _ = std::fs::remove_dir_all(&dir);

    let mut latencies = std::mem::take(&mut *shared.latencies.lock());
    latencies.sort_unstable();
    let expected = changes as usize * o.clients;
    let baseline = in_process(&o);

    let connects_per_s = o.clients as f64 / connect_time.as_secs_f64();
    let watches_per_s = o.clients as f64 / watch_time.as_secs_f64();
    let per_connection = (rss_connected.saturating_sub(rss_idle)) as f64 / o.clients as f64;
    let per_watcher = (rss_watching.saturating_sub(rss_idle)) as f64 / o.clients as f64;
    println!(
        "load: {} clients on loopback, {} channel members, {} status changes over {} s (each to all {} watchers), one reconnect per 5 changes",
        o.clients, o.members, changes, o.seconds, o.clients
    );
    println!("| measure | server over WebSocket | engine in-process | ratio |");
    println!("|---|---:|---:|---:|");
    println!(
        "| connect (token check, handshake, connection.ok) | {connects_per_s:.0} /s | {:.0} /s | {:.1}x |",
        baseline.connects_per_s,
        baseline.connects_per_s / connects_per_s
    );
    println!(
        "| watch with presence (each announced to all watchers) | {watches_per_s:.0} /s | {:.0} /s | {:.1}x |",
        baseline.watches_per_s,
        baseline.watches_per_s / watches_per_s
    );
    for (name, p) in [("p50", 0.50), ("p99", 0.99)] {
        let server_ms = percentile(&latencies, p) as f64 / 1000.0;
        let engine_ms = percentile(&baseline.fan_out_us, p) as f64 / 1000.0;
        println!(
            "| change → every watcher, {name} | {server_ms:.2} ms (to each receipt) | {engine_ms:.2} ms (whole fan-out, rendered) | {:.1}x |",
            server_ms / engine_ms.max(0.001)
        );
    }
    println!(
        "| server memory per connection | {per_connection:.1} KiB connected, {per_watcher:.1} KiB watching (RSS {} → {} → {} MiB) | | |",
        rss_idle / 1024,
        rss_connected / 1024,
        rss_watching / 1024
    );
    println!(
        "events received {} of {expected} expected; sockets closed early: {}; run took {:.1} s",
        latencies.len(),
        shared.closed_early.load(Ordering::Relaxed),
        run_started.elapsed().as_secs_f64()
    );
}
