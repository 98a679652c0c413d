//! Real WebSocket clients against a running server: authentication, presence, events in
//! order, privacy, and refusals with their close codes.
mod common;

use common::{Ended, Server, WAIT};
use serde_json::{json, Value};
use std::time::Duration;

fn users_by_id(members: &Value) -> Vec<(String, bool)> {
    let mut out: Vec<(String, bool)> = members
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["user_id"].as_str().unwrap().to_owned(), m["user"]["online"].as_bool().unwrap()))
        .collect();
    out.sort();
    out
}

#[tokio::test]
async fn tokens_are_checked_before_anything_else() {
    let server = Server::start(json!({}));
    let other_key = presence_server::auth::Keys::new("some-other-secret");
    let expired = {
        use jsonwebtoken::{encode, EncodingKey, Header};
        let claims = json!({"user_id": "alice", "exp": 1_000_000_000u64});
        encode(&Header::default(), &claims, &EncodingKey::from_secret(common::JWT_SECRET.as_bytes())).unwrap()
    };
    for (path, needle) in [
        ("/connect".to_string(), "missing token"),
        ("/connect?token=not.a.jwt".to_string(), "invalid token"),
        // A query the server cannot read is refused on the socket too, not with a bare 400.
        (format!("/connect?token={0}&token={0}", server.token("alice")), "duplicate field `token`"),
        (format!("/connect?token={}", other_key.sign("alice", 60)), "InvalidSignature"),
        (format!("/connect?token={expired}"), "ExpiredSignature"),
    ] {
        let mut client = server.raw_client(&path, None).await;
        let (frames, ended) = client.read_to_end(WAIT).await;
        assert_eq!(frames.len(), 1, "{path}: {frames:?}");
        assert_eq!(frames[0]["type"], "error");
        assert_eq!(frames[0]["code"], "invalid_token");
        let message = frames[0]["message"].as_str().unwrap();
        assert!(message.contains(needle), "{path}: {message}");
        assert_eq!(ended, Ended::Closed(4001, "invalid_token".into()), "{path}");
    }
    // A signed token whose user id the engine refuses.
    let mut client = server.raw_client(&format!("/connect?token={}", server.token("has space")), None).await;
    let (frames, ended) = client.read_to_end(WAIT).await;
    assert_eq!(frames[0]["code"], "invalid_user", "{frames:?}");
    assert_eq!(ended, Ended::Closed(4001, "invalid_user".into()));
    // Nothing of the refused attempts reached the engine.
    assert_eq!(server.metric("presence_engine_connections"), 0);

    let alice = server.client("alice").await;
    assert_eq!(server.metric("presence_connections"), 1);
    alice.close().await;
}

#[tokio::test]
async fn watch_answers_the_channel_and_events_follow_in_order() {
    let server = Server::start(json!({}));
    let mut bob = server.client("bob").await;
    let state = bob.ok("watch", json!({"cid": "team:red"})).await;
    assert_eq!(state["channel"]["cid"], "team:red");
    assert_eq!(
        users_by_id(&state["members"]),
        [("alice".into(), false), ("bob".into(), true), ("carol".into(), false)]
    );
    let own = bob.next_event().await;
    assert_eq!(
        (own["type"].as_str(), own["user"]["id"].as_str()),
        (Some("user.watching.start"), Some("bob"))
    );

    let mut alice = server.client("alice").await;
    alice.ok("set_status", json!({"status": "in a match"})).await;
    let me = alice.ok("set_invisible", json!({"invisible": true})).await;
    assert_eq!((me["online"].as_bool(), me["invisible"].as_bool()), (Some(true), Some(true)));
    alice.ok("set_invisible", json!({"invisible": false})).await;
    alice.close().await;

    let mut seen = Vec::new();
    for _ in 0..5 {
        let e = bob.next_event().await;
        assert_eq!(e["type"], "user.presence.changed", "{e}");
        assert_eq!(e["user"]["id"], "alice");
        assert!(e["user"].get("invisible").is_none(), "a public view shows no invisible flag: {e}");
        assert_eq!(e["connection_id"], bob.connection_id);
        seen.push((
            e["seq"].as_u64().unwrap(),
            e["user"]["online"].as_bool().unwrap(),
            e["user"]["status"].clone(),
        ));
    }
    assert!(seen.windows(2).all(|w| w[0].0 < w[1].0), "seq increases: {seen:?}");
    let flags: Vec<(bool, Value)> = seen.into_iter().map(|(_, online, status)| (online, status)).collect();
    assert_eq!(
        flags,
        [
            (true, Value::Null),
            (true, json!("in a match")),
            (false, json!("in a match")),
            (true, json!("in a match")),
            (false, json!("in a match")),
        ]
    );
    bob.assert_silent(Duration::from_millis(200)).await;
}

#[tokio::test]
async fn an_invisible_user_never_leaks_to_another_client() {
    let server = Server::start(json!({}));
    let mut alice = server.client("alice").await;
    alice.ok("set_invisible", json!({"invisible": true})).await;
    alice.ok("watch", json!({"cid": "team:red"})).await;
    alice.ok("update_user", json!({"set": {"name": "Alice"}})).await;

    let mut carol = server.client("carol").await;
    let state = carol.ok("watch", json!({"cid": "team:red"})).await;
    assert_eq!(
        users_by_id(&state["members"]),
        [("alice".into(), false), ("bob".into(), false), ("carol".into(), true)]
    );
    let watchers: Vec<&str> =
        state["watchers"].as_array().unwrap().iter().map(|u| u["id"].as_str().unwrap()).collect();
    assert_eq!(watchers, ["carol"], "an invisible watcher is not listed");
    assert_eq!(state["watcher_count"], 1);
    assert!(state["members"][0]["user"].get("invisible").is_none(), "{state}");

    let found = carol.ok("query_users", json!({"query": {"filter_conditions": {"online": true}}})).await;
    let ids: Vec<&str> =
        found["users"].as_array().unwrap().iter().map(|u| u["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["carol"]);
    let seen = carol.ok("get_user", json!({"user_id": "alice"})).await;
    assert_eq!((seen["online"].as_bool(), seen.get("invisible")), (Some(false), None));
    assert_eq!(seen["name"], "Alice");

    // Alice's own view knows.
    let own = alice.ok("get_user", json!({"user_id": "alice"})).await;
    assert_eq!((own["online"].as_bool(), own["invisible"].as_bool()), (Some(true), Some(true)));

    // Carol hears her own watching.start and alice's custom field change, never alice online.
    alice.ok("update_user", json!({"set": {"name": "Alice B."}})).await;
    alice.close().await;
    let mut frames = Vec::new();
    while let Ok(frame) = tokio::time::timeout(Duration::from_millis(300), carol.next_frame()).await {
        frames.push(frame);
    }
    let kinds: Vec<&str> = frames.iter().map(|f| f["type"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["user.watching.start", "user.updated"], "{frames:?}");
    assert!(frames.iter().all(|f| f["user"]["online"] != true || f["user"]["id"] == "carol"), "{frames:?}");
    assert!(!Value::Array(frames).to_string().contains("\"invisible\":true"));
}

#[tokio::test]
async fn bad_messages_get_error_frames_and_the_socket_stays_usable() {
    let server = Server::start(json!({}));
    let mut alice = server.client("alice").await;
    let cases: [(&str, &str, &str); 8] = [
        ("{not json", "invalid_json", "key must be a string"),
        ("[1,2]", "bad_request", "a message is a JSON object"),
        (r#"{"id":1}"#, "bad_request", "missing field 'type'"),
        (r#"{"id":2,"type":"dance"}"#, "unknown_type", "unknown message type 'dance'"),
        (r#"{"id":3,"type":"watch"}"#, "bad_request", "missing field 'cid'"),
        (r#"{"id":4,"type":"watch","cid":"team:blue"}"#, "not_found", "team:blue"),
        (r#"{"id":5,"type":"set_status","status":7}"#, "bad_request", "'status' must be a string or null"),
        (r#"{"id":6,"type":"update_user","set":{"id":"bob"}}"#, "invalid", "'id' cannot be changed"),
    ];
    for (text, code, needle) in cases {
        alice.send_text(text).await;
        let frame = alice.next_frame().await;
        assert_eq!(frame["type"], "error", "{text}: {frame}");
        assert_eq!(frame["code"], code, "{text}: {frame}");
        assert!(frame["message"].as_str().unwrap().contains(needle), "{text}: {frame}");
        let id: Value = serde_json::from_str::<Value>(text)
            .ok()
            .and_then(|v| v.get("id").cloned())
            .unwrap_or(Value::Null);
        assert_eq!(frame.get("id").cloned().unwrap_or(Value::Null), id, "{text}: the request id is echoed");
    }
    // Hostile shapes: deep nesting stops at the JSON parser's recursion limit.
    alice.send_text(&"[".repeat(5000)).await;
    let frame = alice.next_frame().await;
    assert_eq!(frame["code"], "invalid_json", "{frame}");
    assert!(frame["message"].as_str().unwrap().contains("recursion limit"), "{frame}");
    let frame = alice.request("watch", json!({"cid": "team:red", "presence": "yes"})).await;
    assert_eq!(frame["code"], "bad_request", "{frame}");
    let frame = alice.request("update_user", json!({"set": {"online": true}})).await;
    assert_eq!((frame["code"].as_str(), frame["type"].as_str()), (Some("invalid"), Some("error")), "{frame}");
    let frame =
        alice.request("query_users", json!({"query": {"filter_conditions": {"id": {"$regex": "a"}}}})).await;
    assert_eq!(frame["code"], "invalid", "{frame}");
    assert!(frame["message"].as_str().unwrap().contains("$regex"), "{frame}");
    // Still connected and answering.
    let me = alice.ok("set_status", json!({"status": "fine"})).await;
    assert_eq!(me["status"], "fine");
    alice.close().await;
}

#[tokio::test]
async fn limits_close_with_their_codes() {
    let server = Server::start(json!({
        "max_message_bytes": 1024,
        "messages_per_second": 5,
        "message_burst": 5,
        "allowed_origins": ["http://good.example"],
        "engine": {"max_connections_per_user": 2},
    }));
    // Oversize frame.
    let mut alice = server.client("alice").await;
    alice.send_text(&format!(r#"{{"type":"set_status","status":"{}"}}"#, "x".repeat(2000))).await;
    let (_, ended) = alice.read_to_end(WAIT).await;
    assert_eq!(ended, Ended::Closed(1009, "message_too_big".into()));

    // Rate: the burst passes, the next message closes the socket.
    let mut bob = server.client("bob").await;
    for _ in 0..5 {
        bob.ok("get_user", json!({"user_id": "bob"})).await;
    }
    bob.send_text(r#"{"type":"get_user","user_id":"bob"}"#).await;
    let (frames, ended) = bob.read_to_end(WAIT).await;
    assert_eq!(frames.last().map(|f| f["code"].clone()), Some(json!("rate_limited")), "{frames:?}");
    assert_eq!(ended, Ended::Closed(4008, "rate_limited".into()));

    // The rate is the user's, shared by their sockets: a second socket adds nothing.
    let mut dave = server.client("dave").await;
    let mut dave_again = server.client("dave").await;
    for _ in 0..3 {
        dave.ok("get_user", json!({"user_id": "dave"})).await;
    }
    for _ in 0..2 {
        dave_again.ok("get_user", json!({"user_id": "dave"})).await;
    }
    dave_again.send_text(r#"{"type":"get_user","user_id":"dave"}"#).await;
    let (frames, ended) = dave_again.read_to_end(WAIT).await;
    assert_eq!(
        frames.last().map(|f| f["message"].clone()),
        Some(json!("more than 5 messages per second from this user")),
        "{frames:?}"
    );
    assert_eq!(ended, Ended::Closed(4008, "rate_limited".into()));
    dave.close().await;

    // The engine's connections-per-user limit.
    let first = server.client("carol").await;
    let second = server.client("carol").await;
    let mut third = server.raw_client(&format!("/connect?token={}", server.token("carol")), None).await;
    let (frames, ended) = third.read_to_end(WAIT).await;
    assert_eq!(frames[0]["code"], "too_many_connections", "{frames:?}");
    assert_eq!(ended, Ended::Closed(4009, "too_many_connections".into()));
    first.close().await;
    second.close().await;

    // Origins: a page elsewhere is refused; the allowed one and programs (no Origin) pass.
    let token = server.token("dave");
    let mut evil = server.raw_client(&format!("/connect?token={token}"), Some("http://evil.example")).await;
    let (frames, ended) = evil.read_to_end(WAIT).await;
    assert_eq!(frames[0]["code"], "origin_not_allowed", "{frames:?}");
    assert_eq!(ended, Ended::Closed(4003, "origin_not_allowed".into()));
    let mut good = server.raw_client(&format!("/connect?token={token}"), Some("http://good.example")).await;
    assert_eq!(good.next_frame().await["type"], "connection.ok");

    // Binary frames are refused.
    use futures_util::SinkExt;
    good.ws.send(tokio_tungstenite::tungstenite::Message::Binary(vec![1, 2, 3].into())).await.unwrap();
    let (_, ended) = good.read_to_end(WAIT).await;
    assert_eq!(ended, Ended::Closed(1003, "binary_unsupported".into()));

    let refused = ureq::get(&server.url("/metrics")).call().unwrap().into_string().unwrap();
    for (reason, times) in
        [("message_too_big", 1), ("rate_limited", 2), ("too_many_connections", 1), ("origin_not_allowed", 1)]
    {
        assert!(
            refused.contains(&format!("presence_refused_total{{reason=\"{reason}\"}} {times}")),
            "{refused}"
        );
    }
    // Every closed socket left the engine.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(server.metric("presence_engine_connections"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_closed_as_a_slow_consumer() {
    let server = Server::start(json!({"engine": {"connection_queue_capacity": 256}}));
    let mut slow = server.client("bob").await;
    slow.ok("watch", json!({"cid": "team:red"})).await;
    let mut fast = server.client("carol").await;
    fast.ok("watch", json!({"cid": "team:red"})).await;
    // The reading client reads all the time, on its own task.
    let reader = tokio::spawn(async move {
        let mut statuses = 0;
        loop {
            let frame = fast.next_frame().await;
            if frame["type"] == "user.presence.changed" && frame["user"]["id"] == "alice" {
                statuses += 1;
            }
            if frame["user"]["status"] == "done" {
                return (fast, statuses);
            }
        }
    });

    // Status changes of alice, 8 per API call and about 1 KiB each, until the server gives
    // up on the client that reads nothing. (The reading client's queue overflows only if
    // its socket task is not scheduled once in 32 calls.)
    let mut sent = 0;
    let status = |n: usize| json!({"id": "alice", "status": format!("{n:06}-{}", "s".repeat(1000))});
    while server.metric("presence_queue_drops_total") == 0 {
        let batch: Vec<Value> = (sent..sent + 8).map(status).collect();
        assert_eq!(server.api("POST", "/api/users", Some(Value::Array(batch))).0, 200);
        sent += 8;
        assert!(sent < 200_000, "the slow consumer was never closed");
    }
    server.api("POST", "/api/users", Some(json!({"id": "alice", "status": "done"})));
    // What the slow client gets when it reads again: events in order, then the close code.
    let (frames, ended) = slow.read_to_end(Duration::from_secs(10)).await;
    assert_eq!(ended, Ended::Closed(4010, "slow_consumer".into()));
    let seqs: Vec<u64> = frames.iter().filter_map(|f| f["seq"].as_u64()).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "in order");
    assert!(frames.len() < sent, "it fell behind: {} of {sent}", frames.len());
    // The reading client got every change, and is still connected.
    let (mut fast, statuses) = reader.await.unwrap();
    assert_eq!(statuses, sent + 1);
    let me = fast.ok("get_user", json!({"user_id": "carol"})).await;
    assert_eq!(me["online"], true);
    assert_eq!(server.metric("presence_queue_drops_total"), 1);
    fast.close().await;
}

#[tokio::test]
async fn pongs_are_heartbeats_and_silence_times_out() {
    let server = Server::start(json!({"ping_interval_ms": 100, "engine": {"connection_timeout_ms": 600}}));
    let mut alive = server.client("alice").await;
    let mut silent = server.client("bob").await;
    // Reading answers the server's pings: alive well past the timeout. A client that
    // answers nothing (it does not read) is closed with the timeout code.
    tokio::join!(
        alive.assert_silent(Duration::from_millis(1500)),
        tokio::time::sleep(Duration::from_millis(1500))
    );
    alive.ok("get_user", json!({"user_id": "alice"})).await;
    let (_, ended) = silent.read_to_end(WAIT).await;
    assert_eq!(ended, Ended::Closed(4011, "timeout".into()));
    assert_eq!(server.metric("presence_timeouts_total"), 1);
    alive.close().await;
}

#[tokio::test]
async fn a_dropped_connection_goes_offline_for_the_others() {
    let server = Server::start(json!({}));
    let mut bob = server.watcher("bob", "team:red").await;
    let alice = server.client("alice").await;
    let online = bob.next_event().await;
    assert_eq!(
        (online["user"]["id"].as_str(), online["user"]["online"].as_bool()),
        (Some("alice"), Some(true))
    );
    // The TCP connection goes away without a close frame (a killed client).
    drop(alice);
    let offline = bob.next_event().await;
    assert_eq!(
        (offline["user"]["id"].as_str(), offline["user"]["online"].as_bool()),
        (Some("alice"), Some(false))
    );
    assert_eq!(server.metric("presence_engine_connections"), 1);
    bob.close().await;
}
