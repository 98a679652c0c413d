//! One WebSocket = one engine connection: authentication, the message loop, event push,
//! limits and close codes.
use crate::{App, Link};
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use futures_util::SinkExt;
use presence::Answer as _;
use presence::{CloseReason, ConnectionId, ErrorKind};
use serde_json::{json, Map, Value};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Close codes the server sends, with the reason text that goes with each.
pub mod close {
    pub const NORMAL: u16 = 1000;
    pub const UNSUPPORTED: u16 = 1003;
    pub const TOO_BIG: u16 = 1009;
    pub const UNAUTHORIZED: u16 = 4001;
    pub const ORIGIN: u16 = 4003;
    pub const RATE_LIMIT: u16 = 4008;
    pub const TOO_MANY_CONNECTIONS: u16 = 4009;
    pub const SLOW_CONSUMER: u16 = 4010;
    pub const TIMEOUT: u16 = 4011;
    pub const DISCONNECTED: u16 = 4012;
}

/// Why a socket is being closed by the server: a close code, the short reason sent in the
/// close frame, and (for refusals) an error frame sent just before it.
pub struct Closing {
    pub code: u16,
    pub reason: &'static str,
    pub error: Option<Value>,
}

impl Closing {
    /// A refusal: an error frame naming `code_name`, then the close frame.
    pub fn refuse(code: u16, code_name: &'static str, message: impl Into<String>) -> Closing {
        Closing { code, reason: code_name, error: Some(error_frame(None, code_name, &message.into())) }
    }

    fn engine(reason: CloseReason) -> Closing {
        let code = match reason {
            CloseReason::SlowConsumer => close::SLOW_CONSUMER,
            CloseReason::Timeout => close::TIMEOUT,
            // node_lost closes only other nodes' connections, never a socket of this server.
            CloseReason::Disconnect | CloseReason::NodeLost => close::DISCONNECTED,
        };
        Closing { code, reason: reason.as_str(), error: None }
    }
}

/// `{"type": "error", "id", "code", "message"}`; `id` echoes the request's when known.
pub fn error_frame(id: Option<&Value>, code: &str, message: &str) -> Value {
    let mut frame = json!({"type": "error", "code": code, "message": message});
    if let Some(id) = id {
        frame["id"] = id.clone();
    }
    frame
}

fn engine_code(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::Json => "bad_request",
        ErrorKind::Invalid | ErrorKind::Utf8 | ErrorKind::Null => "invalid",
        ErrorKind::NotFound => "not_found",
        ErrorKind::Limit => "limit",
        ErrorKind::State => "state",
        ErrorKind::Io | ErrorKind::Panic => "internal",
    }
}

/// A socket that ended: either it is gone (nothing more can be sent) or it gets a close.
enum End {
    Gone,
    Close(Closing),
}

/// Sustained rate with a burst allowance.
pub(crate) struct TokenBucket {
    tokens: f64,
    per_second: f64,
    burst: f64,
    last: Instant,
}

impl TokenBucket {
    fn new(per_second: u32, burst: u32) -> Self {
        let burst = f64::from(per_second.max(burst));
        TokenBucket { tokens: burst, per_second: f64::from(per_second), burst, last: Instant::now() }
    }

    fn take(&mut self) -> bool {
        let now = Instant::now();
        self.tokens =
            (self.tokens + now.duration_since(self.last).as_secs_f64() * self.per_second).min(self.burst);
        self.last = now;
        if self.tokens < 1.0 {
            return false;
        }
        self.tokens -= 1.0;
        true
    }
}

/// A user's share of the message rate, held by each of their sockets: a user who opens
/// more sockets gets no more engine time. The last socket to go removes it.
struct UserRate<'a> {
    app: &'a App,
    user_id: &'a str,
    bucket: Arc<parking_lot::Mutex<TokenBucket>>,
}

impl<'a> UserRate<'a> {
    fn join(app: &'a App, user_id: &'a str) -> Self {
        let bucket = app
            .rates
            .lock()
            .entry(user_id.to_owned())
            .or_insert_with(|| {
                let bucket = TokenBucket::new(app.config.messages_per_second, app.config.message_burst);
                Arc::new(parking_lot::Mutex::new(bucket))
            })
            .clone();
        UserRate { app, user_id, bucket }
    }

    fn take(&self) -> bool {
        self.bucket.lock().take()
    }
}

impl Drop for UserRate<'_> {
    fn drop(&mut self) {
        // Held by the map and this socket only: the user's last socket is going. (Sockets
        // join under the same lock, so no other can take a share meanwhile.)
        let mut rates = self.app.rates.lock();
        if Arc::strong_count(&self.bucket) == 2 {
            rates.remove(self.user_id);
        }
    }
}

/// Serves one upgraded socket. `admitted` is the user id the token named, or the refusal
/// decided before the upgrade.
pub async fn serve(app: Arc<App>, mut socket: WebSocket, admitted: Result<String, Closing>) {
    let closing = match admitted {
        Ok(user_id) => match open(&app, &user_id) {
            Ok((connection, link)) => {
                let end = session(&app, &mut socket, connection, &user_id, &link).await;
                app.links.write().remove(&connection);
                // The engine may have closed it already (timeout, slow consumer).
                let _ = app.engine.disconnect(connection);
                end
            }
            Err(refusal) => End::Close(refusal),
        },
        Err(refusal) => End::Close(refusal),
    };
    if let End::Close(closing) = closing {
        if closing.error.is_some() {
            app.metrics.refuse(closing.reason);
        }
        finish(&app, &mut socket, closing).await;
    }
}

fn open(app: &App, user_id: &str) -> Result<(ConnectionId, Arc<Link>), Closing> {
    let connection =
        app.engine.connect_json(&json!({ "id": user_id }).to_string()).map_err(|e| match e.kind() {
            ErrorKind::Limit => {
                Closing::refuse(close::TOO_MANY_CONNECTIONS, "too_many_connections", e.message())
            }
            _ => Closing::refuse(close::UNAUTHORIZED, "invalid_user", e.message()),
        })?;
    let link = Arc::new(Link::default());
    app.links.write().insert(connection, link.clone());
    // Deliveries queued before the link existed (the connect itself) are drained at the first wake.
    link.wake.notify_one();
    app.metrics.connections_opened.fetch_add(1, Ordering::Relaxed);
    Ok((connection, link))
}

/// Sends the close frame (after an error frame for refusals) and waits briefly for the
/// client's answer, so the close code reaches a client that reads.
async fn finish(app: &App, socket: &mut WebSocket, closing: Closing) {
    let timeout = Duration::from_millis(app.config.close_timeout_ms);
    let _ = tokio::time::timeout(timeout, async {
        if let Some(error) = &closing.error {
            socket.send(text(error.to_string())).await?;
        }
        let frame = CloseFrame { code: closing.code, reason: Utf8Bytes::from_static(closing.reason) };
        socket.send(Message::Close(Some(frame))).await?;
        while let Some(Ok(_)) = socket.recv().await {}
        Ok::<(), axum::Error>(())
    })
    .await;
}

fn text(s: String) -> Message {
    Message::Text(s.into())
}

/// The message loop of an open connection.
async fn session(
    app: &App,
    socket: &mut WebSocket,
    connection: ConnectionId,
    user_id: &str,
    link: &Link,
) -> End {
    let engine = &app.engine;
    let me = engine.get_user(connection, user_id).map_or(Value::Null, |u| u.to_value());
    let hello = json!({"type": "connection.ok", "connection_id": connection.0, "me": me});
    if socket.send(text(hello.to_string())).await.is_err() {
        return End::Gone;
    }
    let rate = UserRate::join(app, user_id);
    let mut ping = tokio::time::interval(Duration::from_millis(app.config.ping_interval_ms));
    ping.reset();
    loop {
        let step = tokio::select! {
            _ = link.closed.notified() => return End::Close(closed(link)),
            _ = link.wake.notified() => push_events(app, socket, connection, link).await,
            _ = ping.tick() => send_or_close(socket, link, Message::Ping(Default::default())).await,
            message = socket.recv() => receive(app, socket, (connection, user_id), link, &rate, message).await,
        };
        if let Err(end) = step {
            return end;
        }
    }
}

fn closed(link: &Link) -> Closing {
    Closing::engine(link.reason.lock().unwrap_or(CloseReason::Disconnect))
}

/// Sends one frame, unless the engine closes the connection while the client is not
/// reading (the send would otherwise wait for it forever).
async fn send_or_close(socket: &mut WebSocket, link: &Link, message: Message) -> Result<(), End> {
    unless_closed(link, socket.send(message)).await
}

async fn unless_closed(
    link: &Link,
    io: impl std::future::Future<Output = Result<(), axum::Error>>,
) -> Result<(), End> {
    tokio::select! {
        done = io => done.map_err(|_| End::Gone),
        _ = link.closed.notified() => Err(End::Close(closed(link))),
    }
}

/// Drains the connection's engine queue into the socket, oldest first, flushing once per
/// batch rather than once per event.
async fn push_events(
    app: &App,
    socket: &mut WebSocket,
    connection: ConnectionId,
    link: &Link,
) -> Result<(), End> {
    loop {
        let batch = match app.engine.poll_events(connection, 64) {
            Ok(batch) => batch,
            // Closed by the engine between the wake and this poll.
            Err(_) => return Err(End::Close(closed(link))),
        };
        if batch.is_empty() {
            return Ok(());
        }
        for delivery in &batch {
            unless_closed(link, socket.feed(text(delivery.to_json()))).await?;
        }
        unless_closed(link, socket.flush()).await?;
        app.metrics.events_delivered.fetch_add(batch.len() as u64, Ordering::Relaxed);
    }
}

async fn receive(
    app: &App,
    socket: &mut WebSocket,
    (connection, user_id): (ConnectionId, &str),
    link: &Link,
    rate: &UserRate<'_>,
    message: Option<Result<Message, axum::Error>>,
) -> Result<(), End> {
    let message = match message {
        None => return Err(End::Gone),
        Some(Err(e)) => {
            // tungstenite refuses a frame or message over the configured size this way.
            let too_big = e.to_string().contains("too long") || e.to_string().contains("Space limit");
            return Err(if too_big {
                End::Close(Closing::refuse(close::TOO_BIG, "message_too_big", e.to_string()))
            } else {
                End::Gone
            });
        }
        Some(Ok(message)) => message,
    };
    // Any frame from the client (a pong above all) is a sign of life.
    let _ = app.engine.heartbeat(connection);
    match message {
        Message::Text(body) => {
            app.metrics.messages_received.fetch_add(1, Ordering::Relaxed);
            if !rate.take() {
                let limit = app.config.messages_per_second;
                return Err(End::Close(Closing::refuse(
                    close::RATE_LIMIT,
                    "rate_limited",
                    format!("more than {limit} messages per second from this user"),
                )));
            }
            let answer = handle(app, connection, user_id, body.as_str());
            send_or_close(socket, link, text(answer.to_string())).await
        }
        Message::Binary(_) => Err(End::Close(Closing::refuse(
            close::UNSUPPORTED,
            "binary_unsupported",
            "messages are JSON text frames",
        ))),
        Message::Close(_) => Err(End::Gone),
        Message::Ping(_) | Message::Pong(_) => Ok(()),
    }
}

/// Answers one client message: `{"type": "result", "id", "result"}` or an error frame.
pub fn handle(app: &App, connection: ConnectionId, user_id: &str, body: &str) -> Value {
    let request: Value = match serde_json::from_str(body) {
        Ok(Value::Object(map)) => Value::Object(map),
        Ok(_) => return error_frame(None, "bad_request", "a message is a JSON object"),
        Err(e) => return error_frame(None, "invalid_json", &e.to_string()),
    };
    let id = request.get("id");
    match answer(app, connection, user_id, &request) {
        Ok(result) => {
            let mut frame = json!({"type": "result", "result": result});
            if let Some(id) = id {
                frame["id"] = id.clone();
            }
            frame
        }
        Err((code, message)) => error_frame(id, code, &message),
    }
}

type Answer = Result<Value, (&'static str, String)>;

fn field<'a>(request: &'a Value, name: &str) -> Result<&'a Value, (&'static str, String)> {
    request.get(name).ok_or_else(|| ("bad_request", format!("missing field '{name}'")))
}

fn string_field<'a>(request: &'a Value, name: &str) -> Result<&'a str, (&'static str, String)> {
    field(request, name)?.as_str().ok_or_else(|| ("bad_request", format!("'{name}' must be a string")))
}

fn object_field(request: &Value, name: &str) -> Result<Map<String, Value>, (&'static str, String)> {
    match request.get(name) {
        None => Ok(Map::new()),
        Some(Value::Object(map)) => Ok(map.clone()),
        Some(_) => Err(("bad_request", format!("'{name}' must be an object"))),
    }
}

/// The user's own changes answer the user as their own connection now sees them.
fn answer(app: &App, connection: ConnectionId, user_id: &str, request: &Value) -> Answer {
    let engine = &app.engine;
    let me = || engine.get_user(connection, user_id).map(|u| u.to_value());
    let kind = string_field(request, "type")?;
    let result = match kind {
        "watch" => {
            let presence = match request.get("presence") {
                None => true,
                Some(v) => v.as_bool().ok_or(("bad_request", "'presence' must be a boolean".to_string()))?,
            };
            engine.watch_channel(connection, string_field(request, "cid")?, presence).map(|a| a.to_value())
        }
        "stop_watching" => {
            engine.stop_watching(connection, string_field(request, "cid")?).map(|()| json!({}))
        }
        "query_users" => engine
            .query_users(connection, &Value::Object(object_field(request, "query")?).to_string())
            .map(|a| a.to_value()),
        "query_channels" => engine
            .query_channels(connection, &Value::Object(object_field(request, "query")?).to_string())
            .map(|a| a.to_value()),
        "get_user" => engine.get_user(connection, string_field(request, "user_id")?).map(|u| u.to_value()),
        "set_status" => match field(request, "status")? {
            Value::Null => engine.set_status(user_id, None),
            Value::String(status) => engine.set_status(user_id, Some(status)),
            _ => return Err(("bad_request", "'status' must be a string or null".into())),
        }
        .and_then(|()| me()),
        "set_invisible" => {
            let invisible = field(request, "invisible")?
                .as_bool()
                .ok_or(("bad_request", "'invisible' must be a boolean".to_string()))?;
            engine.set_invisible(user_id, invisible).and_then(|()| me())
        }
        "update_user" => {
            let mut patch = object_field(request, "set")?;
            if patch.contains_key("id") {
                return Err(("invalid", "'id' cannot be changed".into()));
            }
            match request.get("unset") {
                None => {}
                Some(Value::Array(names)) => {
                    for name in names {
                        let name =
                            name.as_str().ok_or(("bad_request", "'unset' lists field names".to_string()))?;
                        patch.insert(name.to_owned(), Value::Null);
                    }
                }
                Some(_) => return Err(("bad_request", "'unset' must be an array of field names".into())),
            }
            patch.insert("id".into(), Value::String(user_id.to_owned()));
            engine.upsert_user_json(&Value::Object(patch).to_string()).and_then(|()| me())
        }
        "unsubscribe_user" => {
            engine.unsubscribe_user(connection, string_field(request, "user_id")?).map(|()| json!({}))
        }
        other => return Err(("unknown_type", format!("unknown message type '{other}'"))),
    };
    result.map_err(|e| (engine_code(e.kind()), e.message().to_owned()))
}
