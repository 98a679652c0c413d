//! Three engines in three processes sharing one presence through Redis.
//!
//! `cargo run --example cluster` uses the Redis at 127.0.0.1:6379 if one answers there,
//! otherwise starts `redis-server` on a free port (and stops it at the end). It then starts
//! three node processes (this program again, as `cluster node <name> <redis-url>`), connects
//! alice on node-a and shows her appear on node-b and node-c, kills node-a with SIGKILL and
//! shows the others see her go offline (`node_lost`) once node-a's lease runs out.
#[path = "../src/cluster/testing.rs"]
mod redis_server;

use presence::{Engine, EventKind, ListenerFilter};
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const LEASE_MS: u64 = 2000;
const HEARTBEAT_MS: u64 = 250;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("node") {
        return run_node(&args[2], &args[3]);
    }
    let (url, _server) = if TcpStream::connect("127.0.0.1:6379").is_ok() {
        println!("using the Redis at 127.0.0.1:6379");
        ("redis://127.0.0.1:6379/0".to_string(), None)
    } else {
        let server =
            redis_server::start_redis().expect("redis-server is needed: apt-get install redis-server");
        println!("started redis-server on port {}", server.port);
        (server.url(), Some(server))
    };
    let mut nodes: Vec<(String, Child)> = ["node-a", "node-b", "node-c"]
        .iter()
        .map(|name| {
            let child = Command::new(std::env::current_exe().unwrap())
                .args(["node", name, &url])
                .stdin(Stdio::piped())
                .spawn()
                .expect("a node process starts");
            (name.to_string(), child)
        })
        .collect();
    std::thread::sleep(Duration::from_millis(1500));

    println!("\n--- alice connects on node-a ---");
    writeln!(nodes[0].1.stdin.as_mut().unwrap(), "connect alice").unwrap();
    std::thread::sleep(Duration::from_millis(1000));

    println!("\n--- node-a is killed (SIGKILL); its lease is {LEASE_MS} ms ---");
    let killed = Instant::now();
    nodes[0].1.kill().unwrap();
    nodes[0].1.wait().unwrap();
    std::thread::sleep(Duration::from_millis(LEASE_MS + HEARTBEAT_MS + 1000));
    println!("\n--- {} ms after the kill; stopping ---", killed.elapsed().as_millis());
    for (_, child) in &mut nodes[1..] {
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// One node: an engine in cluster mode printing what its host listener sees, and
/// connecting the users named on its stdin (`connect <user>`).
fn run_node(name: &str, url: &str) {
    let config = format!(
        r#"{{"cluster":{{"redis_url":"{url}","node_id":"{name}","namespace":"example",
        "heartbeat_ms":{HEARTBEAT_MS},"lease_ms":{LEASE_MS}}}}}"#
    );
    let engine = Engine::from_json(Some(&config)).expect("cluster config");
    let me = name.to_string();
    engine
        .add_listener(ListenerFilter::all(), move |e| match &e.kind {
            EventKind::PresenceChanged { user } => println!(
                "[{me}] {} is {}",
                user.id,
                if user.online(presence::View::Public) { "online" } else { "offline" }
            ),
            EventKind::ConnectionClosed { user, reason, connection } => {
                println!("[{me}] connection {connection} of {} closed: {}", user.id, reason.as_str())
            }
            EventKind::ClusterStatus { status, .. } => println!("[{me}] link {status}"),
            _ => {}
        })
        .expect("listen to every event");
    let mut held = Vec::new();
    for line in BufReader::new(std::io::stdin()).lines() {
        let line = line.unwrap();
        if let Some(user) = line.strip_prefix("connect ") {
            held.push(engine.connect_json(&format!(r#"{{"id":"{user}"}}"#)).unwrap());
        }
    }
    std::io::stdout().flush().unwrap();
}
