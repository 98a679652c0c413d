//! The backend HTTP API, health, metrics and the dev token endpoint of a running server.
mod common;

use common::Server;
use serde_json::json;

#[test]
fn the_api_needs_the_secret() {
    let server = Server::start(json!({}));
    for secret in [None, Some("wrong-secret"), Some("test-api-secre")] {
        let (status, body) = server.api_as(secret, "GET", "/api/users/alice", None);
        assert_eq!(status, 401, "{secret:?}");
        assert_eq!(body["code"], "unauthorized");
    }
    let (status, body) = server.api_as(None, "POST", "/api/users", Some(json!({"id": "mallory"})));
    assert_eq!((status, body["code"].as_str()), (401, Some("unauthorized")));
    assert_eq!(server.api("GET", "/api/users/mallory", None).0, 404, "nothing was written");
}

/// A caller without the secret is refused before its body is read: it cannot make the
/// server wait for, or buffer, up to the body limit per connection.
#[test]
fn the_secret_is_checked_before_the_body_is_read() {
    use std::io::{Read, Write};
    let server = Server::start(json!({}));
    for (method, path) in [
        ("POST", "/api/users"),
        ("POST", "/api/channels"),
        ("POST", "/api/channels/team:red/members"),
        ("DELETE", "/api/channels/team:red/members"),
    ] {
        let mut stream = std::net::TcpStream::connect(&server.addr).unwrap();
        stream.set_read_timeout(Some(common::WAIT)).unwrap();
        // A body announced at the limit, of which only a non-UTF-8 byte ever comes.
        let head = format!("{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 1048576\r\n\r\n\u{ff}");
        stream.write_all(head.as_bytes()).unwrap();
        let mut answer = Vec::new();
        let mut chunk = [0u8; 1024];
        while !answer.ends_with(b"}") {
            match stream.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => answer.extend_from_slice(&chunk[..n]),
                Err(e) => panic!("{method} {path}: no answer without the body: {e}"),
            }
        }
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.starts_with("HTTP/1.1 401"), "{method} {path}: {answer}");
        assert!(
            answer.ends_with(r#"{"code":"unauthorized","message":"missing or wrong API secret"}"#),
            "{answer}"
        );
    }
}

/// Connections that never complete a request head are closed: idle and half-sent
/// requests cannot hold the server's sockets until it has none left for anyone.
#[test]
fn a_request_head_that_never_completes_is_closed() {
    use std::io::{ErrorKind, Read, Write};
    use std::net::TcpStream;
    let server = Server::start(json!({}));
    let idle = TcpStream::connect(&server.addr).unwrap();
    let mut half = TcpStream::connect(&server.addr).unwrap();
    half.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n").unwrap();
    let mut kept_alive = TcpStream::connect(&server.addr).unwrap();
    kept_alive.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    for (name, mut stream) in [("idle", idle), ("half a head", half), ("kept alive", kept_alive)] {
        stream.set_read_timeout(Some(presence_server::HEADER_READ_TIMEOUT + common::WAIT)).unwrap();
        let mut answer = Vec::new();
        let read = stream.read_to_end(&mut answer);
        assert!(
            read.is_ok() || read.as_ref().is_err_and(|e| e.kind() == ErrorKind::ConnectionReset),
            "{name}: still open: {read:?}"
        );
    }
}

#[tokio::test]
async fn backend_changes_reach_watching_clients() {
    let server = Server::start(json!({}));
    let mut bob = server.watcher("bob", "team:red").await;

    let (status, body) =
        server.api("POST", "/api/users", Some(json!([{"id": "dave", "name": "Dave"}, {"id": "erin"}])));
    assert_eq!((status, body["upserted"].as_u64()), (200, Some(2)));
    assert_eq!(
        server.api("POST", "/api/channels/team:red/members", Some(json!({"user_ids": ["dave"]}))).0,
        200
    );
    let added = bob.next_event().await;
    assert_eq!(
        (added["type"].as_str(), added["member"]["user"]["name"].as_str()),
        (Some("member.added"), Some("Dave"))
    );
    assert_eq!(
        server.api("DELETE", "/api/channels/team:red/members", Some(json!({"user_ids": ["dave"]}))).0,
        200
    );
    assert_eq!(bob.next_event().await["type"], "member.removed");

    // Backend reads see the own view; a status set by the backend is presence.
    server.api("POST", "/api/users", Some(json!({"id": "alice", "status": "away", "invisible": true})));
    let (status, alice) = server.api("GET", "/api/users/alice", None);
    assert_eq!(
        (status, alice["invisible"].as_bool(), alice["status"].as_str()),
        (200, Some(true), Some("away"))
    );
    let changed = bob.next_event().await;
    assert_eq!(
        (changed["type"].as_str(), changed["user"]["status"].as_str()),
        (Some("user.presence.changed"), Some("away"))
    );

    assert_eq!(
        server
            .api("POST", "/api/channels", Some(json!({"type": "team", "id": "blue", "members": ["bob"]})))
            .0,
        200
    );
    let state = bob.ok("watch", json!({"cid": "team:blue", "presence": false})).await;
    assert_eq!(state["channel"]["member_count"], 1);
    bob.close().await;
}

#[test]
fn bad_api_input_gets_a_clear_answer() {
    let server = Server::start(json!({}));
    let cases = [
        ("POST", "/api/users", Some(json!({"id": "x", "online": true})), 400, "invalid"),
        ("POST", "/api/users", Some(json!({"id": "has space"})), 400, "invalid"),
        ("POST", "/api/channels", Some(json!({"type": "Bad Type", "id": "x"})), 400, "invalid"),
        ("POST", "/api/channels/team:red/members", Some(json!({"ids": ["x"]})), 400, "bad_request"),
        ("POST", "/api/channels/team:nope/members", Some(json!({"user_ids": ["x"]})), 404, "not_found"),
        ("GET", "/api/users/nobody", None, 404, "not_found"),
    ];
    for (method, path, body, status, code) in cases {
        let (got, answer) = server.api(method, path, body.clone());
        assert_eq!(
            (got, answer["code"].as_str()),
            (status, Some(code)),
            "{method} {path} {body:?}: {answer}"
        );
        assert!(!answer["message"].as_str().unwrap().is_empty());
    }
    // An array with an invalid user is refused whole: nothing before it was written.
    let (status, answer) =
        server.api("POST", "/api/users", Some(json!([{"id": "dave", "name": "Dave"}, {"id": "has space"}])));
    assert_eq!((status, answer["code"].as_str()), (400, Some("invalid")), "{answer}");
    assert_eq!(server.api("GET", "/api/users/dave", None).0, 404, "nothing was written");
    let raw = ureq::post(&server.url("/api/users"))
        .set("Authorization", &format!("Bearer {}", common::API_SECRET))
        .send_string("{\"id\":");
    let Err(ureq::Error::Status(400, response)) = raw else { panic!("{raw:?}") };
    assert_eq!(response.into_json::<serde_json::Value>().unwrap()["code"], "invalid_json");
    // A body over the limit is refused once the limit is passed (the writer may then see
    // the connection closed under it).
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(&server.addr).unwrap();
    let mut writer = stream.try_clone().unwrap();
    let head = format!(
        "POST /api/users HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Length: 2000000\r\n\r\n",
        common::API_SECRET
    );
    std::thread::spawn(move || {
        let _ = writer.write_all(head.as_bytes());
        let _ = writer.write_all(&vec![b' '; 2_000_000]);
    });
    let mut answer = [0u8; 12];
    stream.read_exact(&mut answer).unwrap();
    assert_eq!(&answer, b"HTTP/1.1 413");
}

#[tokio::test]
async fn health_metrics_and_dev_tokens() {
    let server = Server::start(json!({}));
    let health: serde_json::Value = ureq::get(&server.url("/healthz")).call().unwrap().into_json().unwrap();
    assert_eq!(health["status"], "ok");
    // Dev tokens are off unless enabled.
    let off = ureq::get(&server.url("/dev/token?user_id=alice")).call();
    assert!(matches!(off, Err(ureq::Error::Status(404, _))), "{off:?}");

    let mut alice = server.client("alice").await;
    let _bob = server.client("bob").await;
    alice.ok("set_invisible", json!({"invisible": true})).await;
    assert_eq!(server.metric("presence_connections"), 2);
    assert_eq!(server.metric("presence_online_users"), 1, "alice is invisible");
    assert_eq!(server.metric("presence_users"), 3);
    assert_eq!(server.metric("presence_messages_received_total"), 1);
    assert_eq!(server.metric("presence_cluster_mode"), 0);
    let page = ureq::get(&server.url("/")).call().unwrap();
    assert_eq!(page.header("content-type"), Some("text/html; charset=utf-8"));
    assert!(page.into_string().unwrap().contains("<script src=\"/app.js\">"));

    let dev = Server::start(json!({"dev_tokens": true}));
    let token: serde_json::Value =
        ureq::get(&dev.url("/dev/token?user_id=carol")).call().unwrap().into_json().unwrap();
    assert_eq!(
        presence_server::auth::Keys::new(common::JWT_SECRET).verify(token["token"].as_str().unwrap()),
        Ok("carol".into())
    );
    let bad = ureq::get(&dev.url("/dev/token?user_id=a%20b")).call();
    assert!(matches!(bad, Err(ureq::Error::Status(400, _))), "{bad:?}");
}
