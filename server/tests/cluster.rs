//! Two real server processes in cluster mode against a real `redis-server` the tests start
//! on a free loopback port: a client on one server sees the users of the other come online,
//! change status, hide and leave, and a killed server's users go offline.
mod common;
#[path = "../../src/cluster/testing.rs"]
mod redis_server;

use common::{Client, Server};
use redis_server::{start_redis, RedisServer};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const HEARTBEAT_MS: u64 = 200;
/// Long enough that a busy machine does not starve a live server of its lease.
const LEASE_MS: u64 = 2000;

/// One test at a time: two servers and a redis-server each, on a small machine.
async fn serial() -> tokio::sync::MutexGuard<'static, ()> {
    static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    ONE_AT_A_TIME.lock().await
}

/// A server in cluster mode as node `node`, with the `team:red` channel of every test server.
fn node(redis: &RedisServer, namespace: &str, node: &str) -> Server {
    Server::start(json!({"cluster": {
        "redis_url": redis.url(), "node_id": node, "namespace": namespace,
        "heartbeat_ms": HEARTBEAT_MS, "lease_ms": LEASE_MS,
    }}))
}

fn link_up(server: &Server, node: &str) -> u64 {
    server.metric(&format!("presence_cluster_status{{node_id=\"{node}\",link=\"up\"}}"))
}

/// Polls `f` until it holds; fails with `what` after `within`.
async fn wait_until(what: &str, within: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Servers `a` and `b`, both linked and each counting two live nodes.
async fn pair(redis: &RedisServer, namespace: &str) -> (Server, Server) {
    let (a, b) = (node(redis, namespace, "a"), node(redis, namespace, "b"));
    for (server, name) in [(&a, "a"), (&b, "b")] {
        wait_until(&format!("{name} is linked to both"), Duration::from_secs(10), || {
            link_up(server, name) == 1 && server.metric("presence_cluster_nodes_alive") == 2
        })
        .await;
    }
    (a, b)
}

/// `(user id, public online, status)` of a presence event, asserting it has no `invisible`
/// flag (only the own view has one).
fn presence(event: &Value) -> (String, bool, Value) {
    assert_eq!(event["type"], "user.presence.changed", "{event}");
    assert!(event["user"].get("invisible").is_none(), "a public view shows no invisible flag: {event}");
    (
        event["user"]["id"].as_str().unwrap().to_owned(),
        event["user"]["online"].as_bool().unwrap(),
        event["user"]["status"].clone(),
    )
}

fn online_ids(found: &Value) -> Vec<&str> {
    found["users"].as_array().unwrap().iter().map(|u| u["id"].as_str().unwrap()).collect()
}

/// Sends a message without waiting for its answer, so the caller can time what another
/// server delivers; the answer is read with [`answered`].
async fn send(client: &mut Client, kind: &str, fields: Value) {
    let mut message = json!({"type": kind});
    for (k, v) in fields.as_object().unwrap() {
        message[k] = v.clone();
    }
    client.send_text(&message.to_string()).await;
}

async fn answered(client: &mut Client) -> Value {
    let frame = client.next_frame().await;
    assert_eq!(frame["type"], "result", "{frame}");
    frame["result"].clone()
}

#[tokio::test]
async fn a_client_on_one_server_follows_a_user_on_the_other() {
    let _serial = serial().await;
    let Some(redis) = start_redis() else { return };
    let (a, b) = pair(&redis, "follow").await;
    assert_eq!(a.metric("presence_cluster_mode"), 1);
    let mut carol = a.watcher("carol", "team:red").await;

    let mut bob = b.client("bob").await;
    assert_eq!(presence(&carol.next_event().await), ("bob".into(), true, Value::Null));

    // Status changes, timed from bob's message on b to carol's receipt on a.
    let mut took = Vec::new();
    for i in 0..20 {
        let status = format!("round {i}");
        let sent = Instant::now();
        send(&mut bob, "set_status", json!({ "status": status })).await;
        assert_eq!(presence(&carol.next_event().await), ("bob".into(), true, json!(status)));
        took.push(sent.elapsed());
        assert_eq!(answered(&mut bob).await["status"], json!(status));
    }
    took.sort();
    eprintln!(
        "status change from a client on b to a client on a, {} changes: p50 {:.2} ms, max {:.2} ms",
        took.len(),
        took[took.len() / 2].as_secs_f64() * 1000.0,
        took[took.len() - 1].as_secs_f64() * 1000.0
    );

    // Invisible: offline to carol, in the event and in every answer of a.
    let me = bob.ok("set_invisible", json!({"invisible": true})).await;
    assert_eq!((me["online"].as_bool(), me["invisible"].as_bool()), (Some(true), Some(true)));
    assert_eq!(presence(&carol.next_event().await), ("bob".into(), false, json!("round 19")));
    let seen = carol.ok("get_user", json!({"user_id": "bob"})).await;
    assert_eq!((seen["online"].as_bool(), seen.get("invisible")), (Some(false), None), "{seen}");
    let found = carol.ok("query_users", json!({"query": {"filter_conditions": {"online": true}}})).await;
    assert_eq!(online_ids(&found), ["carol"]);
    let state = carol.ok("watch", json!({"cid": "team:red"})).await;
    let bob_member = state["members"].as_array().unwrap().iter().find(|m| m["user_id"] == "bob").unwrap();
    assert_eq!(
        (bob_member["user"]["online"].as_bool(), bob_member["user"].get("invisible")),
        (Some(false), None)
    );
    assert_eq!(a.metric("presence_online_users"), 1, "only carol, as a counts them");
    // The backend of a reads the own view: connected (on b) and invisible.
    let (_, own) = a.api("GET", "/api/users/bob", None);
    assert_eq!((own["online"].as_bool(), own["invisible"].as_bool()), (Some(true), Some(true)), "{own}");

    bob.ok("set_invisible", json!({"invisible": false})).await;
    assert_eq!(presence(&carol.next_event().await), ("bob".into(), true, json!("round 19")));
    // The socket on b closes: bob's last connection anywhere.
    bob.close().await;
    assert_eq!(presence(&carol.next_event().await), ("bob".into(), false, json!("round 19")));
    carol.assert_silent(Duration::from_millis(300)).await;
    carol.close().await;
}

#[tokio::test]
async fn a_killed_server_s_users_go_offline_on_the_others() {
    let _serial = serial().await;
    let Some(redis) = start_redis() else { return };
    let (a, mut b) = pair(&redis, "kill").await;
    // Channels and memberships are shared: the backend tells one server, here b.
    let channel = json!({"type": "team", "id": "blue", "members": ["carol", "dave"]});
    assert_eq!(b.api("POST", "/api/channels", Some(channel)).0, 200);
    wait_until("a knows team:blue", Duration::from_secs(5), || a.metric("presence_channels") == 2).await;
    let mut carol = a.watcher("carol", "team:blue").await;
    let dave = [b.client("dave").await, b.client("dave").await];
    assert_eq!(presence(&carol.next_event().await), ("dave".into(), true, Value::Null));
    // Connection ids are per server: one of dave's sockets on b has carol's id on a, and
    // closing dave's connections as node_lost must not close carol's socket.
    assert!(dave.iter().any(|d| d.connection_id == carol.connection_id));
    wait_until("a counts dave online", Duration::from_secs(5), || a.metric("presence_online_users") == 2)
        .await;

    b.kill();
    let killed = Instant::now();
    assert_eq!(presence(&carol.next_event().await), ("dave".into(), false, Value::Null));
    let took = killed.elapsed();
    eprintln!(
        "server killed to offline on the other: {} ms (lease {LEASE_MS} ms, heartbeat {HEARTBEAT_MS} ms)",
        took.as_millis()
    );
    // Within lease + heartbeat, with room for a loaded machine.
    assert!(took < Duration::from_millis(LEASE_MS + HEARTBEAT_MS + 1500), "took {took:?}");

    let seen = carol.ok("get_user", json!({"user_id": "dave"})).await;
    assert_eq!(seen["online"], false);
    carol.assert_silent(Duration::from_millis(300)).await;
    assert_eq!(a.metric("presence_online_users"), 1);
    assert_eq!(a.metric("presence_connections"), 1, "carol's socket is still open");
    wait_until("a counts one live node", Duration::from_secs(5), || {
        a.metric("presence_cluster_nodes_alive") == 1
    })
    .await;
    assert_eq!(link_up(&a, "a"), 1);
    drop(dave);
    carol.close().await;
}

#[tokio::test]
async fn without_redis_a_server_serves_its_own_clients_and_reports_the_link_down() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let server = Server::start(json!({"cluster": {
        "redis_url": format!("redis://127.0.0.1:{port}/0"), "node_id": "alone",
    }}));
    assert_eq!(server.metric("presence_cluster_mode"), 1);
    assert_eq!(server.metric("presence_cluster_status{node_id=\"alone\",link=\"down\"}"), 1);
    assert_eq!(server.metric("presence_cluster_status{node_id=\"alone\",link=\"up\"}"), 0);
    let mut bob = server.watcher("bob", "team:red").await;
    let mut alice = server.client("alice").await;
    assert_eq!(presence(&bob.next_event().await), ("alice".into(), true, Value::Null));
    assert_eq!(alice.ok("set_status", json!({"status": "here"})).await["status"], "here");
    assert_eq!(presence(&bob.next_event().await), ("alice".into(), true, json!("here")));
    wait_until("the writes wait for the store", Duration::from_secs(5), || {
        server.metric("presence_cluster_pending_writes") > 0
    })
    .await;
    alice.close().await;
    bob.close().await;
}

#[test]
fn a_bad_cluster_section_stops_the_server_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("server.json");
    let config = json!({
        "jwt_secret": common::JWT_SECRET, "api_secret": common::API_SECRET,
        "cluster": {"redis_url": "redis://127.0.0.1:1/0", "node_id": "not a name"},
    });
    std::fs::write(&path, config.to_string()).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_presence-server"))
        .arg("--config")
        .arg(&path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("engine config") && stderr.contains("node_id"), "{stderr}");
}
