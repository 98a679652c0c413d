//! A real `presence-server` process on a free loopback port, and real WebSocket clients.
#![allow(dead_code)]
use futures_util::{SinkExt, StreamExt};
use presence_server::auth::Keys;
use serde_json::{json, Value};
use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub const JWT_SECRET: &str = "test-jwt-secret";
pub const API_SECRET: &str = "test-api-secret";
/// How long a test waits for a frame that must come.
pub const WAIT: Duration = Duration::from_secs(5);

pub struct Server {
    child: Child,
    pub addr: String,
    _dir: tempfile::TempDir,
}

impl Server {
    /// Starts the server binary with the test secrets, a `team:red` channel of alice, bob
    /// and carol, and `overrides` merged over the top level of the config.
    pub fn start(overrides: Value) -> Server {
        let mut config = json!({
            "addr": "127.0.0.1:0",
            "jwt_secret": JWT_SECRET,
            "api_secret": API_SECRET,
            "channels": [{"type": "team", "id": "red", "members": ["alice", "bob", "carol"]}],
        });
        for (k, v) in overrides.as_object().expect("overrides are an object") {
            config[k] = v.clone();
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("server.json");
        std::fs::write(&path, config.to_string()).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_presence-server"))
            .arg("--config")
            .arg(&path)
            .env_remove("PRESENCE_ADDR")
            .stdout(Stdio::piped())
            .spawn()
            .expect("start presence-server");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let addr = line
            .trim()
            .strip_prefix("presence-server listening on http://")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_owned();
        Server { child, addr, _dir: dir }
    }

    pub fn token(&self, user_id: &str) -> String {
        Keys::new(JWT_SECRET).sign(user_id, 3600)
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Connects as `user_id` and reads the `connection.ok` frame.
    pub async fn client(&self, user_id: &str) -> Client {
        let mut client = self.raw_client(&format!("/connect?token={}", self.token(user_id)), None).await;
        let hello = client.next_frame().await;
        assert_eq!(hello["type"], "connection.ok", "{hello}");
        assert_eq!(hello["me"]["id"], user_id);
        client.connection_id = hello["connection_id"].as_u64().unwrap();
        client
    }

    /// Connects as `user_id`, watches `cid` with presence, and reads the user's own
    /// `user.watching.start`.
    pub async fn watcher(&self, user_id: &str, cid: &str) -> Client {
        let mut client = self.client(user_id).await;
        client.ok("watch", json!({ "cid": cid })).await;
        let own = client.next_event().await;
        assert_eq!(
            (own["type"].as_str(), own["user"]["id"].as_str()),
            (Some("user.watching.start"), Some(user_id))
        );
        client
    }

    /// Opens a socket at `path` (with an `Origin` header when given) without reading.
    pub async fn raw_client(&self, path: &str, origin: Option<&str>) -> Client {
        let mut request = format!("ws://{}{path}", self.addr).into_client_request().unwrap();
        if let Some(origin) = origin {
            request.headers_mut().insert("origin", origin.parse().unwrap());
        }
        let (ws, _) = tokio_tungstenite::connect_async(request).await.expect("websocket handshake");
        Client { ws, buffered: VecDeque::new(), next_id: 1, connection_id: 0 }
    }

    /// Calls the backend API with the API secret; answers the status and the JSON body.
    pub fn api(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        self.api_as(Some(API_SECRET), method, path, body)
    }

    pub fn api_as(
        &self,
        secret: Option<&str>,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut request = ureq::request(method, &self.url(path));
        if let Some(secret) = secret {
            request = request.set("Authorization", &format!("Bearer {secret}"));
        }
        let result = match body {
            Some(body) => request.send_json(body),
            None => request.call(),
        };
        let response = match result {
            Ok(r) => r,
            Err(ureq::Error::Status(_, r)) => r,
            Err(e) => panic!("{method} {path}: {e}"),
        };
        let status = response.status();
        (status, response.into_json().unwrap_or(Value::Null))
    }

    /// Stops the server process with SIGKILL: no close frames, no goodbye to anyone.
    pub fn kill(&mut self) {
        self.child.kill().expect("SIGKILL the server");
        self.child.wait().expect("reap the server");
    }

    /// The value of one metric; `name` includes the labels, if any, as `/metrics` prints them.
    pub fn metric(&self, name: &str) -> u64 {
        let text = ureq::get(&self.url("/metrics")).call().unwrap().into_string().unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
            .unwrap_or_else(|| panic!("metric {name} missing from:\n{text}"))
            .parse()
            .unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub struct Client {
    pub ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    /// Events read while waiting for an answer.
    buffered: VecDeque<Value>,
    next_id: u64,
    pub connection_id: u64,
}

/// How a socket ended, as the client saw it.
#[derive(Debug, PartialEq)]
pub enum Ended {
    Closed(u16, String),
    /// The stream ended without a close frame.
    Dropped,
}

impl Client {
    pub async fn send_text(&mut self, text: &str) {
        self.ws.send(Message::Text(text.into())).await.expect("send");
    }

    /// The next text frame (events read earlier first).
    pub async fn next_frame(&mut self) -> Value {
        if let Some(frame) = self.buffered.pop_front() {
            return frame;
        }
        self.read_frame().await
    }

    async fn read_frame(&mut self) -> Value {
        loop {
            let message = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("a frame within the wait")
                .expect("the socket is open")
                .expect("a readable frame");
            match message {
                Message::Text(text) => return serde_json::from_str(&text).expect("frames are JSON"),
                Message::Close(frame) => panic!("closed while a frame was expected: {frame:?}"),
                _ => continue,
            }
        }
    }

    /// The next event (a frame whose type is not `result` or `error`).
    pub async fn next_event(&mut self) -> Value {
        let frame = self.next_frame().await;
        assert!(frame["type"] != "result" && frame["type"] != "error", "expected an event, got {frame}");
        frame
    }

    /// Sends `{"type": kind, "id": n, ...fields}` and answers the frame with that id (a
    /// result or an error), keeping events that arrive meanwhile for `next_event`.
    pub async fn request(&mut self, kind: &str, fields: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        let mut message = json!({"type": kind, "id": id});
        for (k, v) in fields.as_object().unwrap() {
            message[k] = v.clone();
        }
        self.send_text(&message.to_string()).await;
        loop {
            let frame = self.read_frame().await;
            if frame["id"] == id {
                return frame;
            }
            self.buffered.push_back(frame);
        }
    }

    /// [`Client::request`], asserting success; answers the result.
    pub async fn ok(&mut self, kind: &str, fields: Value) -> Value {
        let frame = self.request(kind, fields).await;
        assert_eq!(frame["type"], "result", "{frame}");
        frame["result"].clone()
    }

    /// Reads until the socket ends (within `wait`); answers the text frames read and how it ended.
    pub async fn read_to_end(&mut self, wait: Duration) -> (Vec<Value>, Ended) {
        let mut frames: Vec<Value> = self.buffered.drain(..).collect();
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let next = tokio::time::timeout_at(deadline, self.ws.next())
                .await
                .expect("the socket ends within the wait");
            match next {
                Some(Ok(Message::Text(text))) => frames.push(serde_json::from_str(&text).unwrap()),
                Some(Ok(Message::Close(Some(frame)))) => {
                    return (frames, Ended::Closed(u16::from(frame.code), frame.reason.to_string()))
                }
                Some(Ok(Message::Close(None))) => {
                    return (frames, Ended::Closed(u16::from(CloseCode::Status), String::new()))
                }
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return (frames, Ended::Dropped),
            }
        }
    }

    /// Asserts that nothing arrives for `quiet`.
    pub async fn assert_silent(&mut self, quiet: Duration) {
        assert!(self.buffered.is_empty(), "unexpected frames {:?}", self.buffered);
        let deadline = tokio::time::Instant::now() + quiet;
        while let Ok(next) = tokio::time::timeout_at(deadline, self.ws.next()).await {
            match next {
                Some(Ok(Message::Text(text))) => panic!("unexpected frame {text}"),
                Some(Ok(_)) => continue,
                other => panic!("the socket ended: {other:?}"),
            }
        }
    }

    pub async fn close(mut self) {
        let _ = self.ws.close(None).await;
        while let Some(Ok(_)) = self.ws.next().await {}
    }
}
