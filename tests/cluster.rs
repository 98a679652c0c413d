//! Cluster mode against a real `redis-server` the tests start on a free loopback port:
//! presence merged across nodes, node loss (SIGKILL) and fencing, store restarts and
//! pauses, readers that fall behind the log, ordering, invisibility, channels, members and
//! watchers shared by every node, and random operations on three node processes compared
//! with one engine.
#![cfg(feature = "cluster")]
mod common;
#[path = "../src/cluster/testing.rs"]
mod redis_server;

use common::Rng;
use presence::{Answer, ConnectionId, Engine, Event, EventKind, ListenerFilter, UserPatch, View};
use redis_server::{start_redis, RedisServer};
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const HEARTBEAT_MS: u64 = 100;
const LEASE_MS: u64 = 600;

/// A cluster config with `heartbeat_ms` 100 and the given lease; `extra` adds keys to the
/// `cluster` object (`,"stream_retention":10`).
fn cluster_config(server_url: &str, node: &str, namespace: &str, lease_ms: u64, extra: &str) -> String {
    format!(
        r#"{{"cluster":{{"redis_url":"{server_url}","node_id":"{node}","namespace":"{namespace}",
        "heartbeat_ms":{HEARTBEAT_MS},"lease_ms":{lease_ms}{extra}}}}}"#
    )
}

/// One test with nodes at a time: leases of 600 ms must not expire because a dozen
/// servers and node processes compete for two cores.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
    ONE_AT_A_TIME.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Polls `f` until it holds; fails with `what` after `within`.
fn wait_until(what: &str, within: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn link(engine: &Engine) -> String {
    engine.cluster_status()["link"].as_str().unwrap().to_string()
}

/// An engine in cluster mode (lease 600 ms) whose link is up.
fn node(server: &RedisServer, name: &str, namespace: &str) -> Engine {
    linked(&cluster_config(&server.url(), name, namespace, LEASE_MS, ""))
}

fn linked(config: &str) -> Engine {
    let engine = Engine::from_json(Some(config)).unwrap();
    wait_until("the node is linked", Duration::from_secs(10), || link(&engine) == "up");
    engine
}

fn public_online(engine: &Engine, viewer: ConnectionId, user: &str) -> Option<bool> {
    engine.get_user(viewer, user).ok().map(|u| u.to_value()["online"] == true)
}

fn presence_lines(engine: &Engine, c: ConnectionId) -> Vec<String> {
    engine
        .poll_events(c, 10_000)
        .unwrap()
        .iter()
        .filter(|d| d.event.type_name() == "user.presence.changed")
        .map(|d| format!("{} {}", d.user_id(), if d.online() { "online" } else { "offline" }))
        .collect()
}

/// A subscriber connection on `engine` following `user` (who must be known there).
fn follower(engine: &Engine, name: &str, user: &str) -> ConnectionId {
    let c = engine.connect_json(&format!(r#"{{"id":"{name}"}}"#)).unwrap();
    wait_until(&format!("{user} is known"), Duration::from_secs(5), || {
        engine.get_user(ConnectionId::HOST, user).is_ok()
    });
    let q = format!(r#"{{"filter_conditions":{{"id":"{user}"}},"presence":true}}"#);
    engine.query_users(c, &q).unwrap();
    c
}

#[test]
fn the_first_connection_anywhere_brings_a_user_online_and_the_last_takes_them_offline() {
    let _serial = serial();
    let Some(server) = start_redis() else { return };
    let (a, b) = (node(&server, "a", "merge"), node(&server, "b", "merge"));
    a.upsert_user_json(r#"{"id":"alice"}"#).unwrap();
    let on_a = follower(&a, "fa", "alice");
    let on_b = follower(&b, "fb", "alice");

    let alice_a = a.connect_json(r#"{"id":"alice"}"#).unwrap();
    wait_until("b sees alice online", Duration::from_secs(5), || {
        public_online(&b, on_b, "alice") == Some(true)
    });
    let alice_b = b.connect_json(r#"{"id":"alice"}"#).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(presence_lines(&a, on_a), ["alice online"]);
    assert_eq!(presence_lines(&b, on_b), ["alice online"]);

    // Closing one of two connections emits nothing anywhere.
    a.disconnect(alice_a).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(public_online(&a, on_a, "alice"), Some(true));
    assert_eq!(presence_lines(&a, on_a), Vec::<String>::new());
    assert_eq!(presence_lines(&b, on_b), Vec::<String>::new());

    // Closing the last emits exactly one offline on each node.
    b.disconnect(alice_b).unwrap();
    wait_until("a sees alice offline", Duration::from_secs(5), || {
        public_online(&a, on_a, "alice") == Some(false)
    });
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(presence_lines(&a, on_a), ["alice offline"]);
    assert_eq!(presence_lines(&b, on_b), ["alice offline"]);
}

#[test]
fn a_thousand_status_changes_arrive_in_order() {
    let _serial = serial();
    let Some(server) = start_redis() else { return };
    let (a, b) = (node(&server, "a", "order"), node(&server, "b", "order"));
    a.connect_json(r#"{"id":"alice"}"#).unwrap();
    wait_until("b knows alice", Duration::from_secs(5), || b.get_user(ConnectionId::HOST, "alice").is_ok());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    b.add_listener(ListenerFilter::user("alice"), move |e: &Event| {
        if let EventKind::PresenceChanged { user } = &e.kind {
            s.lock().unwrap().push(user.status.as_deref().unwrap_or_default().to_string());
        }
    })
    .unwrap();
    for i in 0..1000 {
        a.set_status("alice", Some(&format!("s{i}"))).unwrap();
    }
    wait_until("b saw the last status", Duration::from_secs(20), || {
        seen.lock().unwrap().last().map(String::as_str) == Some("s999")
    });
    let expected: Vec<String> = (0..1000).map(|i| format!("s{i}")).collect();
    assert_eq!(*seen.lock().unwrap(), expected);
}

#[test]
fn an_invisible_user_is_offline_on_every_node() {
    let _serial = serial();
    let Some(server) = start_redis() else { return };
    let (a, b) = (node(&server, "a", "invisible"), node(&server, "b", "invisible"));
    a.upsert_user_json(r#"{"id":"alice","invisible":true}"#).unwrap();
    let on_b = follower(&b, "fb", "alice");
    wait_until("b knows alice is invisible", Duration::from_secs(5), || {
        b.get_user(ConnectionId::HOST, "alice").is_ok_and(|u| u.user.invisible)
    });
    let alice = a.connect_json(r#"{"id":"alice"}"#).unwrap();
    wait_until("b counts alice's connection", Duration::from_secs(5), || {
        b.get_user(ConnectionId::HOST, "alice").is_ok_and(|u| u.user.online(View::Own))
    });
    // Own view (the host) knows she is connected; everyone else sees her offline.
    assert_eq!(public_online(&b, on_b, "alice"), Some(false));
    let online = b.query_users(on_b, r#"{"filter_conditions":{"online":true}}"#).unwrap().to_value();
    let ids: Vec<&str> =
        online["users"].as_array().unwrap().iter().map(|u| u["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["fb"]);
    assert_eq!(presence_lines(&b, on_b), Vec::<String>::new());

    // Becoming visible on a shows her online on b, once.
    a.set_invisible("alice", false).unwrap();
    wait_until("b sees alice", Duration::from_secs(5), || public_online(&b, on_b, "alice") == Some(true));
    a.disconnect(alice).unwrap();
    wait_until("b sees alice leave", Duration::from_secs(5), || {
        public_online(&b, on_b, "alice") == Some(false)
    });
    assert_eq!(presence_lines(&b, on_b), ["alice online", "alice offline"]);
}

/// A node in a child process (this test binary, running `child_node`), driven by lines
/// on its stdin.
struct ChildNode {
    process: Child,
    input: ChildStdin,
    output: BufReader<ChildStdout>,
}

impl ChildNode {
    fn start(server: &RedisServer, name: &str, namespace: &str) -> ChildNode {
        ChildNode::start_config(&cluster_config(&server.url(), name, namespace, LEASE_MS, ""))
    }

    fn start_config(config: &str) -> ChildNode {
        let mut process = Command::new(std::env::current_exe().unwrap())
            .args(["--ignored", "--exact", "child_node", "--nocapture", "--test-threads=1"])
            .env("PRESENCE_CHILD_CONFIG", config)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let input = process.stdin.take().unwrap();
        let output = BufReader::new(process.stdout.take().unwrap());
        let mut child = ChildNode { process, input, output };
        assert_eq!(child.answer(), "ready");
        child
    }

    /// The next line that is an answer (the test harness prints its own lines too).
    fn answer(&mut self) -> String {
        loop {
            let mut line = String::new();
            assert!(self.output.read_line(&mut line).unwrap() > 0, "child node exited");
            // libtest may print "test child_node ... " on the same line first.
            if let Some((_, answer)) = line.trim_end_matches(['\r', '\n']).split_once("child: ") {
                return answer.to_string();
            }
        }
    }

    fn call(&mut self, command: &str) -> String {
        writeln!(self.input, "{command}").unwrap();
        self.answer()
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill").args([signal, &self.process.id().to_string()]).status().unwrap();
        assert!(status.success());
    }
}

impl Drop for ChildNode {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

/// The child side of [`ChildNode`]: does nothing unless started by a test.
#[test]
#[ignore = "runs only as a child process of the cluster tests"]
fn child_node() {
    let Ok(config) = std::env::var("PRESENCE_CHILD_CONFIG") else { return };
    let engine = Engine::from_json(Some(&config)).unwrap();
    wait_until("the child is linked", Duration::from_secs(10), || link(&engine) == "up");
    println!("child: ready");
    let mut connections = Vec::new();
    for line in std::io::stdin().lock().lines() {
        let line = line.unwrap();
        let words: Vec<&str> = line.split_whitespace().collect();
        let answer = match words.as_slice() {
            ["connect", user] => {
                let c = engine.connect_json(&format!(r#"{{"id":"{user}"}}"#)).unwrap();
                connections.push(c);
                c.0.to_string()
            }
            ["disconnect", id] => {
                let c = ConnectionId(id.parse().unwrap());
                engine.disconnect(c).map(|_| "ok".to_string()).unwrap_or_else(|e| e.to_string())
            }
            ["status", user, text] => engine
                .set_status(user, Some(text))
                .map(|_| "ok".to_string())
                .unwrap_or_else(|e| e.to_string()),
            ["invisible", user, on] => engine
                .set_invisible(user, *on == "1")
                .map(|_| "ok".to_string())
                .unwrap_or_else(|e| e.to_string()),
            ["watch", user, cid] => {
                let c = engine.connect_json(&format!(r#"{{"id":"{user}"}}"#)).unwrap();
                connections.push(c);
                engine
                    .start_watching(c, cid, false)
                    .map(|_| c.0.to_string())
                    .unwrap_or_else(|e| e.to_string())
            }
            ["create", cid] => engine
                .upsert_channel_json(&format!(r#"{{"cid":"{cid}"}}"#))
                .map(|_| "ok".to_string())
                .unwrap_or_else(|e| e.to_string()),
            ["members", cid, op, ids @ ..] => {
                let ids: Vec<String> = ids.iter().map(|id| id.to_string()).collect();
                let done = match *op {
                    "add" => engine.add_members(cid, &ids),
                    _ => engine.remove_members(cid, &ids),
                };
                done.map(|_| "ok".to_string()).unwrap_or_else(|e| e.to_string())
            }
            ["channel", cid] => {
                let known = engine.query_channels(
                    ConnectionId::HOST,
                    &format!(r#"{{"filter_conditions":{{"cid":"{cid}"}}}}"#),
                );
                if known.unwrap().channels.is_empty() { "unknown" } else { "known" }.to_string()
            }
            ["dump"] => dump(&engine),
            ["link"] => link(&engine),
            _ => format!("unknown command {line:?}"),
        };
        println!("child: {answer}");
    }
}

/// Every user as the host sees them, one line, sorted: id, connected, public online,
/// status, invisible, custom fields; then every channel (members, watchers, count).
fn dump(engine: &Engine) -> String {
    let all = engine
        .query_users(ConnectionId::HOST, r#"{"limit":100,"sort":[{"field":"id","direction":1}]}"#)
        .unwrap()
        .to_value();
    let mut out = Vec::new();
    for u in all["users"].as_array().unwrap() {
        let id = u["id"].as_str().unwrap();
        let snap = engine.get_user(ConnectionId::HOST, id).unwrap().user;
        out.push(format!(
            "{id}:{}:{}:{}:{}:{}",
            snap.online(View::Own),
            snap.online(View::Public),
            snap.status.as_deref().unwrap_or("-"),
            snap.invisible,
            snap.custom.as_ref().map_or("{}".to_string(), |c| serde_json::to_string(&**c).unwrap())
        ));
    }
    let channels = engine
        .query_channels(ConnectionId::HOST, r#"{"limit":100,"sort":[{"field":"cid","direction":1}]}"#)
        .unwrap();
    for state in &channels.channels {
        let cid = &state.channel.cid;
        out.push(format!("{cid}: {}", channel_line(engine, cid).unwrap()));
    }
    out.join(",")
}

/// A channel as the host of `engine` sees it: members, watchers, watcher count and custom
/// fields (`None`: unknown there).
fn channel_line(engine: &Engine, cid: &str) -> Option<String> {
    let q = format!(r#"{{"filter_conditions":{{"cid":"{cid}"}}}}"#);
    let answer = engine.query_channels(ConnectionId::HOST, &q).unwrap();
    let state = answer.channels.first()?;
    let ids = |v: &[presence::answer::ViewedUser]| {
        v.iter().map(|u| u.user.id.to_string()).collect::<Vec<_>>().join(" ")
    };
    Some(format!(
        "members [{}] watchers [{}] count {} custom {}",
        ids(&state.members),
        ids(&state.watchers),
        state.watcher_count,
        state.channel.custom.as_ref().map_or("{}".to_string(), |c| serde_json::to_string(&**c).unwrap())
    ))
}

/// The watching and member events `c` received: `type user count`.
fn channel_events(engine: &Engine, c: ConnectionId) -> Vec<String> {
    engine
        .poll_events(c, 10_000)
        .unwrap()
        .iter()
        .filter_map(|d| match &d.event.kind {
            EventKind::WatchingStart { user, watcher_count, .. } => {
                Some(format!("start {} {watcher_count}", user.id))
            }
            EventKind::WatchingStop { user, watcher_count, .. } => {
                Some(format!("stop {} {watcher_count}", user.id))
            }
            EventKind::MemberAdded { user, .. } => Some(format!("added {}", user.id)),
            EventKind::MemberRemoved { user, .. } => Some(format!("removed {}", user.id)),
            _ => None,
        })
        .collect()
}

#[test]
fn channels_members_and_watchers_are_shared_by_every_node() {
    let _serial = serial();
    let Some(server) = start_redis() else { return };
    let (a, b) = (node(&server, "a", "channels"), node(&server, "b", "channels"));
    a.upsert_channel_json(r#"{"cid":"team:red","members":["alice","bob"],"topic":"raid"}"#).unwrap();
    let expected = r#"members [alice bob] watchers [] count 0 custom {"topic":"raid"}"#;
    wait_until("b knows the channel", Duration::from_secs(5), || {
        channel_line(&b, "team:red").as_deref() == Some(expected)
    });

    // A watcher on b counts on a, and a's watchers hear of it.
    let dave = a.connect_json(r#"{"id":"dave"}"#).unwrap();
    a.start_watching(dave, "team:red", false).unwrap();
    let carol = b.connect_json(r#"{"id":"carol"}"#).unwrap();
    wait_until("b counts dave", Duration::from_secs(5), || {
        channel_line(&b, "team:red").is_some_and(|l| l.contains("count 1"))
    });
    b.start_watching(carol, "team:red", false).unwrap();
    let both = r#"members [alice bob] watchers [carol dave] count 2 custom {"topic":"raid"}"#;
    wait_until("a counts carol", Duration::from_secs(5), || {
        channel_line(&a, "team:red").as_deref() == Some(both)
    });
    assert_eq!(channel_line(&b, "team:red").as_deref(), Some(both));

    // Members removed on b leave on a, with the event a's watchers would get locally.
    b.remove_members("team:red", &["bob".to_string()]).unwrap();
    wait_until("a sees bob leave", Duration::from_secs(5), || {
        channel_line(&a, "team:red").is_some_and(|l| l.starts_with("members [alice]"))
    });
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(channel_events(&a, dave), ["start dave 1", "start carol 2", "removed bob"]);

    // carol stops watching on b: dave hears it on a.
    b.stop_watching(carol, "team:red").unwrap();
    wait_until("a counts one watcher", Duration::from_secs(5), || {
        channel_line(&a, "team:red").is_some_and(|l| l.contains("count 1"))
    });
    assert_eq!(channel_events(&a, dave), ["stop carol 1"]);

    // A deletion on b ends the channel everywhere, a's watcher included.
    b.delete_channel("team:red").unwrap();
    wait_until("a forgets the channel", Duration::from_secs(5), || channel_line(&a, "team:red").is_none());
    assert_eq!(channel_line(&b, "team:red"), None);
    let keys = server.command(&["KEYS", "channels:*ch:*"]);
    assert_eq!(keys.as_deref(), Some("*0"), "the channel's hash is deleted");
}

#[test]
fn a_killed_node_s_watchers_leave_every_channel() {
    let _serial = serial();
    let Some(server) = start_redis() else { return };
    let a = node(&server, "a", "killwatch");
    a.upsert_channel_json(r#"{"cid":"team:blue","members":["erin"]}"#).unwrap();
    let dave = a.connect_json(r#"{"id":"dave"}"#).unwrap();
    a.start_watching(dave, "team:blue", false).unwrap();
    let mut child = ChildNode::start(&server, "b", "killwatch");
    wait_until("b knows the channel", Duration::from_secs(5), || child.call("channel team:blue") == "known");
    child.call("watch frank team:blue");
    child.call("watch frank team:blue");
    wait_until("a counts frank", Duration::from_secs(5), || {
        channel_line(&a, "team:blue").is_some_and(|l| l.contains("watchers [dave frank] count 2"))
    });

    child.signal("-KILL");
    wait_until("frank stops watching on a", Duration::from_secs(10), || {
        channel_line(&a, "team:blue").is_some_and(|l| l.contains("watchers [dave] count 1"))
    });
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(channel_events(&a, dave), ["start dave 1", "start frank 2", "stop frank 1"]);
    // The dead incarnation's watch lists are gone, and so are its watchers in the hash.
    wait_until("the dead lease is dropped", Duration::from_secs(5), || {
        server.command(&["ZCARD", "killwatch:{m}:leases"]).as_deref() == Some(":1")
    });
    assert_eq!(server.command(&["KEYS", "killwatch:*watches:b#*"]).as_deref(), Some("*0"));
}

#[test]
fn a_killed_node_s_users_go_offline_everywhere_with_node_lost() {
    let _serial = serial();
    let Some(server) = start_redis() else { return };
    let a = node(&server, "a", "kill");
    let closes = Arc::new(Mutex::new(Vec::new()));
    let c = closes.clone();
    a.add_listener(ListenerFilter::event_type("connection.closed"), move |e: &Event| {
        if let EventKind::ConnectionClosed { reason, .. } = &e.kind {
            c.lock().unwrap().push(format!("{} {}", e.user_id().unwrap(), reason.as_str()));
        }
    })
    .unwrap();
    let mut child = ChildNode::start(&server, "b", "kill");
    child.call("connect bob");
    child.call("connect bob");
    let on_a = follower(&a, "fa", "bob");
    wait_until("a sees bob online", Duration::from_secs(5), || public_online(&a, on_a, "bob") == Some(true));
    presence_lines(&a, on_a);

    child.signal("-KILL");
    let killed = Instant::now();
    wait_until("a sees bob offline", Duration::from_secs(10), || {
        public_online(&a, on_a, "bob") == Some(false)
    });
    let took = killed.elapsed();
    eprintln!("kill to offline: {} ms (lease {LEASE_MS} ms, heartbeat {HEARTBEAT_MS} ms)", took.as_millis());
    // Within lease + heartbeat, with room for a loaded machine.
    assert!(took < Duration::from_millis(LEASE_MS + HEARTBEAT_MS + 1500), "took {took:?}");
    assert_eq!(presence_lines(&a, on_a), ["bob offline"]);
    assert_eq!(*closes.lock().unwrap(), ["bob node_lost", "bob node_lost"]);
    // The dead incarnation's keys are gone.
    wait_until("the dead lease is dropped", Duration::from_secs(5), || {
        server.command(&["ZCARD", "kill:{m}:leases"]).as_deref() == Some(":1")
    });
    let shard_keys = server.command(&["KEYS", "kill:*conns:b#*"]);
    assert_eq!(shard_keys.as_deref(), Some("*0"));
}

#[test]
fn a_node_that_returns_after_being_declared_dead_is_fenced_and_converges() {
    let _serial = serial();
    let Some(server) = start_redis() else { return };
    let a = node(&server, "a", "fence");
    let mut child = ChildNode::start(&server, "b", "fence");
    child.call("connect bob");
    a.upsert_channel_json(r#"{"cid":"team:red"}"#).unwrap();
    wait_until("b knows the channel", Duration::from_secs(5), || child.call("channel team:red") == "known");
    child.call("watch bob team:red");
    let on_a = follower(&a, "fa", "bob");
    wait_until("a sees bob online", Duration::from_secs(5), || public_online(&a, on_a, "bob") == Some(true));
    let watched = "members [] watchers [bob] count 1 custom {}";
    wait_until("a counts bob", Duration::from_secs(5), || {
        channel_line(&a, "team:red").as_deref() == Some(watched)
    });

    // Frozen past its lease: the others reap it.
    child.signal("-STOP");
    wait_until("a sees bob offline", Duration::from_secs(10), || {
        public_online(&a, on_a, "bob") == Some(false)
    });
    wait_until("a no longer counts bob", Duration::from_secs(5), || {
        channel_line(&a, "team:red").as_deref() == Some("members [] watchers [] count 0 custom {}")
    });
    // Thawed: its old incarnation is refused, it takes a new one and re-announces bob and
    // his watch.
    child.signal("-CONT");
    wait_until("a sees bob again", Duration::from_secs(10), || public_online(&a, on_a, "bob") == Some(true));
    wait_until("a counts bob again", Duration::from_secs(5), || {
        channel_line(&a, "team:red").as_deref() == Some(watched)
    });
    assert_eq!(child.call("status bob back"), "ok");
    wait_until("a sees the status", Duration::from_secs(5), || {
        a.get_user(ConnectionId::HOST, "bob").is_ok_and(|u| u.user.status.as_deref() == Some("back"))
    });
    // Offline when reaped, online when re-announced, then the status change.
    assert_eq!(presence_lines(&a, on_a), ["bob offline", "bob online", "bob online"]);
    assert_eq!(child.call("dump"), dump(&a));
}

/// Statuses of `cluster.status` events seen by host listeners of `engine` from now on.
fn link_events(engine: &Engine) -> Arc<Mutex<Vec<String>>> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    engine
        .add_listener(ListenerFilter::event_type("cluster.status"), move |e: &Event| {
            if let EventKind::ClusterStatus { status, .. } = &e.kind {
                s.lock().unwrap().push(status.to_string());
            }
        })
        .unwrap();
    seen
}

#[test]
fn a_store_restarted_without_its_data_is_refilled_by_the_nodes() {
    let _serial = serial();
    let Some(mut server) = start_redis() else { return };
    let (a, b) = (node(&server, "a", "restart"), node(&server, "b", "restart"));
    let statuses = link_events(&a);
    a.connect_json(r#"{"id":"alice","status":"here","level":7}"#).unwrap();
    let bob = b.connect_json(r#"{"id":"bob"}"#).unwrap();
    a.upsert_channel_json(r#"{"cid":"team:red","members":["alice","carol"],"topic":"raid"}"#).unwrap();
    wait_until("b knows the channel", Duration::from_secs(5), || channel_line(&b, "team:red").is_some());
    b.start_watching(bob, "team:red", false).unwrap();
    let channel = r#"members [alice carol] watchers [bob] count 1 custom {"topic":"raid"}"#;
    wait_until("both know both", Duration::from_secs(5), || {
        dump(&a) == dump(&b)
            && dump(&a).contains("bob:true")
            && channel_line(&a, "team:red").as_deref() == Some(channel)
    });
    let before = dump(&a);

    server.restart_empty();
    wait_until("alice is back in the store", Duration::from_secs(10), || {
        server.command(&["EXISTS", &format!("restart:{{s{}}}:u:alice", shard_of("alice"))]).as_deref()
            == Some(":1")
    });
    wait_until("both converge again", Duration::from_secs(10), || dump(&a) == before && dump(&b) == before);
    // The channel, its members and b's watcher are re-announced too.
    wait_until("the channel is back in the store", Duration::from_secs(10), || {
        let key = format!("restart:{{s{}}}:ch:team:red", shard_of("team:red"));
        server.command(&["HGET", &key, "f:topic"]).as_deref() == Some("$6")
    });
    for node in [&a, &b] {
        wait_until("the channel converges", Duration::from_secs(10), || {
            channel_line(node, "team:red").as_deref() == Some(channel)
        });
    }
    assert_eq!(b.get_user(ConnectionId::HOST, "alice").unwrap().user.custom.as_ref().unwrap()["level"], 7);
    wait_until("a reports the link up", Duration::from_secs(5), || link(&a) == "up");
    let seen = statuses.lock().unwrap().clone();
    assert_eq!(seen.first().map(String::as_str), Some("down"), "{seen:?}");
    assert_eq!(seen.last().map(String::as_str), Some("up"), "{seen:?}");
}

#[test]
fn a_store_restarted_from_an_older_save_is_refilled_and_read_again() {
    let _serial = serial();
    let Some(mut server) = start_redis() else { return };
    let (a, b) = (node(&server, "a", "older"), node(&server, "b", "older"));
    a.connect_json(r#"{"id":"alice","status":"saved"}"#).unwrap();
    wait_until("b knows alice", Duration::from_secs(5), || b.get_user(ConnectionId::HOST, "alice").is_ok());
    server.save();
    a.connect_json(r#"{"id":"carol"}"#).unwrap();
    for n in 0..20 {
        a.set_status("alice", Some(&format!("after the save {n}"))).unwrap();
    }
    wait_until("b is up to date", Duration::from_secs(5), || {
        public_online(&b, ConnectionId::HOST, "carol") == Some(true) && dump(&b) == dump(&a)
    });

    server.restart_from_save();
    wait_until("a is linked again", Duration::from_secs(10), || link(&a) == "up");
    // Written after the restart, where the store's sequence numbers went back.
    a.set_status("alice", Some("after the restart")).unwrap();
    wait_until("b sees the new status", Duration::from_secs(10), || {
        b.get_user(ConnectionId::HOST, "alice")
            .is_ok_and(|u| u.user.status.as_deref() == Some("after the restart"))
    });
    let c = node(&server, "c", "older");
    wait_until("a node started now knows carol online", Duration::from_secs(10), || {
        public_online(&c, ConnectionId::HOST, "carol") == Some(true)
    });
    wait_until("every node agrees", Duration::from_secs(10), || dump(&a) == dump(&b) && dump(&b) == dump(&c));
}

/// The shard of a user, as the link computes it (FNV-1a of the id, 16 shards).
fn shard_of(user: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in user.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h % 16
}

#[test]
fn a_paused_store_loses_no_sticky_write() {
    let _serial = serial();
    let Some(server) = start_redis() else { return };
    // A lease longer than the pause: the nodes come back without being fenced.
    let a = linked(&cluster_config(&server.url(), "a", "pause", 5000, ""));
    let b = linked(&cluster_config(&server.url(), "b", "pause", 5000, ""));
    let statuses = link_events(&a);
    a.connect_json(r#"{"id":"alice"}"#).unwrap();
    wait_until("b knows alice", Duration::from_secs(5), || b.get_user(ConnectionId::HOST, "alice").is_ok());

    assert_eq!(server.command(&["CLIENT", "PAUSE", "1500", "ALL"]).as_deref(), Some("+OK"));
    wait_until("a notices", Duration::from_secs(5), || link(&a) == "down");
    a.set_status("alice", Some("written while paused")).unwrap();
    wait_until("the write waits", Duration::from_secs(5), || {
        a.cluster_status()["pending_writes"].as_u64().is_some_and(|n| n >= 1)
    });
    wait_until("b sees the write", Duration::from_secs(10), || {
        b.get_user(ConnectionId::HOST, "alice")
            .is_ok_and(|u| u.user.status.as_deref() == Some("written while paused"))
    });
    wait_until("a is up again", Duration::from_secs(5), || link(&a) == "up");
    assert_eq!(*statuses.lock().unwrap(), ["down", "up"]);
    assert_eq!(a.cluster_status()["pending_writes"], 0);
}

#[test]
fn a_reader_paused_past_the_log_retention_rebuilds_from_a_snapshot() {
    let _serial = serial();
    let Some(server) = start_redis() else { return };
    // Small stream nodes so that trimming to the retention is close to exact.
    assert_eq!(server.command(&["CONFIG", "SET", "stream-node-max-entries", "4"]).as_deref(), Some("+OK"));
    // A lease longer than the reader's pause, a log of about 10 entries per shard.
    let config = |n: &str| cluster_config(&server.url(), n, "retention", 10_000, r#","stream_retention":10"#);
    let a = linked(&config("a"));
    let mut child = ChildNode::start_config(&config("b"));
    a.connect_json(r#"{"id":"alice"}"#).unwrap();
    wait_until("b knows alice", Duration::from_secs(5), || child.call("dump").contains("alice"));

    child.signal("-STOP");
    // The custom field is written first: its log entry is trimmed away by the statuses
    // after it, so only a snapshot can tell b about it.
    a.upsert_user_json(r#"{"id":"alice","level":1}"#).unwrap();
    let shard = shard_of("alice");
    let (log, user) = (format!("retention:{{s{shard}}}:log"), format!("retention:{{s{shard}}}:u:alice"));
    let number = |reply: Option<String>| reply.unwrap().trim_start_matches(':').parse::<u64>().unwrap();
    let version = || server.reply(&["HGET", &user, "v"]).map_or(0, |(_, body)| body.parse().unwrap_or(0));
    // One status at a time, each stored before the next: user changes written together
    // share a log entry, and these must fill many entries.
    for i in 0..300 {
        a.set_status("alice", Some(&format!("s{i}"))).unwrap();
        // Version 1 is the connect, 2 the custom field.
        wait_until("the store has the status", Duration::from_secs(10), || version() >= 3 + i);
    }
    let kept = number(server.command(&["XLEN", &log]));
    assert!(kept < 100, "the log kept {kept} entries; the reader must have fallen behind");
    child.signal("-CONT");
    wait_until("b converges", Duration::from_secs(10), || child.call("dump") == dump(&a));
    assert!(dump(&a).contains(r#"alice:true:true:s299:false:{"level":1}"#), "{}", dump(&a));
}

#[test]
fn three_node_processes_with_random_operations_end_where_one_engine_ends() {
    let _serial = serial();
    let Some(server) = start_redis() else { return };
    // Nobody polls: without queues, watchers are not closed as slow consumers.
    let unqueued = |name: &str| {
        let config = cluster_config(&server.url(), name, "random", LEASE_MS, "");
        ChildNode::start_config(&format!(r#"{{"connection_queue_capacity":0,{}"#, &config[1..]))
    };
    let mut run = RandomRun {
        nodes: ["n0", "n1", "n2"].into_iter().map(unqueued).collect(),
        single: Engine::from_json(Some(r#"{"connection_queue_capacity":0}"#)).unwrap(),
        open: Vec::new(),
        rng: Rng::seeded(),
    };
    run.create_channels();
    eprintln!("random operations seeded with {} (PRESENCE_TEST_SEED replays the operations)", run.rng.0);
    let started = Instant::now();
    let mut ops = 0;
    let mut stalled = false;
    while started.elapsed() < Duration::from_secs(3) {
        run.step();
        ops += 1;
        if !stalled && started.elapsed() > Duration::from_secs(1) {
            // One node stalls past its lease mid-run: the others reap it, it is fenced when
            // it wakes, re-announces what it holds, and everything still converges.
            stalled = true;
            run.nodes[1].signal("-STOP");
            std::thread::sleep(Duration::from_millis(3 * LEASE_MS));
            run.nodes[1].signal("-CONT");
        }
    }
    let expected = dump(&run.single);
    assert!(expected.contains("room:a: members"), "channels are compared: {expected}");
    for node in &mut run.nodes {
        assert_converges(node, &expected);
    }
    eprintln!("{ops} random operations on 3 node processes converged");
}

const RANDOM_RUN_CHANNELS: [&str; 3] = ["room:a", "room:b", "room:c"];

/// Three node processes and one engine given the same random operations.
struct RandomRun {
    nodes: Vec<ChildNode>,
    single: Engine,
    /// (node, connection id on that node, connection on the single engine, user)
    open: Vec<(usize, String, ConnectionId, String)>,
    rng: Rng,
}

impl RandomRun {
    fn create_channels(&mut self) {
        for cid in RANDOM_RUN_CHANNELS {
            assert_eq!(self.nodes[0].call(&format!("create {cid}")), "ok");
            self.single.upsert_channel_json(&format!(r#"{{"cid":"{cid}"}}"#)).unwrap();
        }
        for node in &mut self.nodes {
            wait_until("every node knows the channels", Duration::from_secs(20), || {
                RANDOM_RUN_CHANNELS.iter().all(|cid| node.call(&format!("channel {cid}")) == "known")
            });
        }
    }

    /// One random operation on a node, and on the single engine if the node took it.
    fn step(&mut self) {
        let user = format!("u{}", self.rng.below(12));
        // Sticky writes of a user go through one node, so their order is the order issued.
        let owner = shard_of(&user) as usize % 3;
        // Fewer connections per user than one engine's max_connections_per_user.
        let held = self.open.iter().filter(|(_, _, _, u)| *u == user).count();
        let cid = RANDOM_RUN_CHANNELS[self.rng.below(3)];
        // Member changes of a channel go through one node too.
        let channel_owner = shard_of(cid) as usize % 3;
        let single = &self.single;
        match self.rng.below(8) {
            5 => {
                if self.nodes[channel_owner].call(&format!("members {cid} add {user}")) == "ok" {
                    single.add_members(cid, std::slice::from_ref(&user)).unwrap();
                }
            }
            6 => {
                if self.nodes[channel_owner].call(&format!("members {cid} remove {user}")) == "ok" {
                    single.remove_members(cid, std::slice::from_ref(&user)).unwrap();
                }
            }
            7 if held < 20 => {
                let n = self.rng.below(3);
                let id = self.nodes[n].call(&format!("watch {user} {cid}"));
                assert!(id.parse::<u64>().is_ok(), "node n{n} refused to watch {cid} for {user}: {id}");
                let c = single.connect(&UserPatch::id(user.as_str())).unwrap();
                single.start_watching(c, cid, false).unwrap();
                self.open.push((n, id, c, user));
            }
            0 | 1 if held < 20 => {
                let n = self.rng.below(3);
                let id = self.nodes[n].call(&format!("connect {user}"));
                assert!(id.parse::<u64>().is_ok(), "node n{n} refused to connect {user}: {id}");
                let c = single.connect(&UserPatch::id(user.as_str())).unwrap();
                self.open.push((n, id, c, user));
            }
            2 if !self.open.is_empty() => {
                let (n, id, c, _) = self.open.swap_remove(self.rng.below(self.open.len()));
                assert_eq!(self.nodes[n].call(&format!("disconnect {id}")), "ok");
                single.disconnect(c).unwrap();
            }
            3 => {
                let text = format!("s{}", self.rng.below(5));
                if self.nodes[owner].call(&format!("status {user} {text}")) == "ok" {
                    single.set_status(&user, Some(&text)).unwrap();
                }
            }
            _ => {
                let on = self.rng.below(2) == 1;
                if self.nodes[owner].call(&format!("invisible {user} {}", u8::from(on))) == "ok" {
                    single.set_invisible(&user, on).unwrap();
                }
            }
        }
    }
}

/// Waits until the node's dump equals `expected`; generous, since convergence only has to
/// happen and a shared CI machine can be slow. The failure names what differs.
fn assert_converges(node: &mut ChildNode, expected: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let got = node.call("dump");
        if got == expected {
            return;
        }
        let only = |a: &str, b: &str| -> Vec<String> {
            let b: Vec<&str> = b.split(',').collect();
            a.split(',').filter(|x| !b.contains(x)).map(str::to_string).collect()
        };
        assert!(
            Instant::now() < deadline,
            "a node differs from one engine: it alone has {:?}, it lacks {:?}",
            only(&got, expected),
            only(expected, &got)
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A loopback URL where nothing listens.
fn unreachable_url() -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    format!("redis://127.0.0.1:{port}/0")
}

#[test]
fn an_unreachable_store_is_reported_and_local_service_goes_on() {
    let engine =
        Engine::from_json(Some(&cluster_config(&unreachable_url(), "a", "away", LEASE_MS, ""))).unwrap();
    let statuses = link_events(&engine);
    let alice = engine.connect_json(r#"{"id":"alice"}"#).unwrap();
    wait_until("the failure is reported", Duration::from_secs(5), || {
        engine.cluster_status()["last_error"].as_str().is_some_and(|e| e.contains("store unavailable"))
    });
    let status = engine.cluster_status();
    assert_eq!(
        (status["mode"].as_str(), status["node_id"].as_str(), status["link"].as_str()),
        (Some("cluster"), Some("a"), Some("down"))
    );
    assert!(engine.get_user(ConnectionId::HOST, "alice").unwrap().user.online(View::Public));
    assert!(!statuses.lock().unwrap().iter().any(|s| s == "up"), "{:?}", statuses.lock().unwrap());
    engine.disconnect(alice).unwrap();
    // The store is the source of truth in cluster mode: load is refused.
    let err = engine.load("/nonexistent/snapshot.json").unwrap_err();
    assert_eq!(err.kind(), presence::ErrorKind::State);
    assert!(err.message().contains("cluster mode"), "{}", err.message());
}

#[test]
fn sticky_writes_past_the_bound_answer_state_while_the_store_is_away() {
    let config = cluster_config(&unreachable_url(), "a", "bound", LEASE_MS, r#","max_pending_writes":3"#);
    let engine = Engine::from_json(Some(&config)).unwrap();
    engine.upsert_user_json(r#"{"id":"alice"}"#).unwrap();
    for i in 0..2 {
        engine.set_status("alice", Some(&format!("s{i}"))).unwrap();
    }
    wait_until("three writes wait", Duration::from_secs(5), || {
        engine.cluster_status()["pending_writes"] == 3
    });
    let err = engine.set_status("alice", Some("one too many")).unwrap_err();
    assert_eq!(err.kind(), presence::ErrorKind::State);
    assert!(err.message().contains("max_pending_writes 3"), "{}", err.message());
    assert_eq!(engine.get_user(ConnectionId::HOST, "alice").unwrap().user.status.as_deref(), Some("s1"));
    // Connections are never refused: they are what the node serves locally.
    engine.connect_json(r#"{"id":"bob"}"#).unwrap();
}

#[test]
fn cluster_config_names_are_checked() {
    for (node, namespace, why) in
        [("a b", "ns", "node_id"), ("a", "n{s}", "namespace"), ("", "ns", "node_id")]
    {
        let config = cluster_config(&unreachable_url(), node, namespace, LEASE_MS, "");
        let err = Engine::from_json(Some(&config)).err().expect("refused");
        assert_eq!(err.kind(), presence::ErrorKind::Invalid, "{node:?} {namespace:?}");
        assert!(err.message().contains(why), "{}", err.message());
    }
    let lease_too_short = cluster_config(&unreachable_url(), "a", "ns", 50, "");
    assert_eq!(
        Engine::from_json(Some(&lease_too_short)).err().map(|e| e.kind()),
        Some(presence::ErrorKind::Invalid)
    );
    let typo = r#"{"cluster":{"redis_url":"redis://127.0.0.1:1/0","node_id":"a","leese_ms":5}}"#;
    assert_eq!(Engine::from_json(Some(typo)).err().map(|e| e.kind()), Some(presence::ErrorKind::Json));
}
