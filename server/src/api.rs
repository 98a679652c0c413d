//! HTTP routes: the WebSocket upgrade, the backend API, health, metrics, the dev token
//! endpoint and the web page.
use crate::socket::{self, close, Closing};
use crate::App;
use axum::extract::rejection::QueryRejection;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use presence::{Answer, Error, ErrorKind, UserPatch};
use serde::Deserialize;
use serde_json::{json, Value};
use std::fmt::Write;
use std::sync::atomic::Ordering;
use std::sync::Arc;

const INDEX_HTML: &str = include_str!("../static/index.html");
const APP_JS: &str = include_str!("../static/app.js");
const STYLE_CSS: &str = include_str!("../static/style.css");

/// Request bodies of the backend API above this size are refused with 413.
const API_BODY_LIMIT: usize = 1 << 20;

pub fn router(app: Arc<App>) -> Router {
    let backend = Router::new()
        .route("/api/users", post(upsert_users))
        .route("/api/users/{id}", get(get_user))
        .route("/api/channels", post(upsert_channel))
        .route("/api/channels/{cid}/members", post(members).delete(members))
        // Before any extractor: a caller without the secret gets no body read or buffered.
        .route_layer(middleware::from_fn_with_state(app.clone(), require_api_secret));
    Router::new()
        .route("/", get(|| async { ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], INDEX_HTML) }))
        .route(
            "/app.js",
            get(|| async { ([(header::CONTENT_TYPE, "text/javascript; charset=utf-8")], APP_JS) }),
        )
        .route(
            "/style.css",
            get(|| async { ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], STYLE_CSS) }),
        )
        .route("/connect", get(connect))
        .route("/healthz", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/metrics", get(metrics))
        .route("/dev/token", get(dev_token))
        .merge(backend)
        .layer(DefaultBodyLimit::max(API_BODY_LIMIT))
        .with_state(app)
}

#[derive(Deserialize)]
struct ConnectParams {
    token: Option<String>,
}

/// Upgrades every request, refused ones included, so that each refusal reaches the client
/// as an error frame and a close code rather than a bare HTTP status a browser hides.
async fn connect(
    State(app): State<Arc<App>>,
    params: Result<Query<ConnectParams>, QueryRejection>,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    let origin = headers.get(header::ORIGIN).and_then(|o| o.to_str().ok());
    let admitted = match (origin, params.map(|Query(params)| params.token)) {
        (Some(origin), _) if !origin_allowed(&app.config.allowed_origins, origin) => Err(Closing::refuse(
            close::ORIGIN,
            "origin_not_allowed",
            format!("origin {origin} is not allowed"),
        )),
        (_, Err(e)) => Err(Closing::refuse(close::UNAUTHORIZED, "invalid_token", e.body_text())),
        (_, Ok(None)) => Err(Closing::refuse(close::UNAUTHORIZED, "invalid_token", "missing token")),
        (_, Ok(Some(token))) => {
            app.keys.verify(&token).map_err(|e| Closing::refuse(close::UNAUTHORIZED, "invalid_token", e))
        }
    };
    let max = app.config.max_message_bytes;
    // Small buffers: a socket costs its buffers' size whether or not it is busy.
    upgrade
        .read_buffer_size(8 * 1024)
        .write_buffer_size(16 * 1024)
        .max_message_size(max)
        .max_frame_size(max)
        .on_upgrade(move |ws| socket::serve(app, ws, admitted))
}

fn origin_allowed(allowed: &[String], origin: &str) -> bool {
    allowed.is_empty() || allowed.iter().any(|a| a == origin)
}

/// An error answer of the HTTP API: `{"code", "message"}` with a matching status.
struct ApiError(StatusCode, &'static str, String);

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        let (status, code) = match e.kind() {
            ErrorKind::Json => (StatusCode::BAD_REQUEST, "bad_request"),
            ErrorKind::Invalid | ErrorKind::Utf8 | ErrorKind::Null => (StatusCode::BAD_REQUEST, "invalid"),
            ErrorKind::NotFound => (StatusCode::NOT_FOUND, "not_found"),
            ErrorKind::Limit => (StatusCode::TOO_MANY_REQUESTS, "limit"),
            ErrorKind::State => (StatusCode::CONFLICT, "state"),
            ErrorKind::Io | ErrorKind::Panic => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        };
        ApiError(status, code, e.message().to_owned())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({"code": self.1, "message": self.2}))).into_response()
    }
}

type ApiResult = Result<Json<Value>, ApiError>;

/// The backend's routes need `Authorization: Bearer <api_secret>`.
async fn require_api_secret(State(app): State<Arc<App>>, request: Request, next: Next) -> Response {
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if crate::auth::secrets_match(given.as_bytes(), app.config.api_secret.as_bytes()) {
        next.run(request).await
    } else {
        ApiError(StatusCode::UNAUTHORIZED, "unauthorized", "missing or wrong API secret".into())
            .into_response()
    }
}

/// Parses a body as JSON here (rather than with axum's extractor) so a bad body gets the
/// same `{"code", "message"}` answer as every other error.
fn parse_body(body: &str) -> Result<Value, ApiError> {
    serde_json::from_str(body).map_err(|e| ApiError(StatusCode::BAD_REQUEST, "invalid_json", e.to_string()))
}

/// `POST /api/users`: one user object or an array of them, each upserted in turn once all
/// of them are valid, so that a refused array wrote nothing.
async fn upsert_users(State(app): State<Arc<App>>, body: String) -> ApiResult {
    let users = match parse_body(&body)? {
        Value::Array(users) => users,
        user => vec![user],
    };
    let patches = users.into_iter().map(UserPatch::from_value).collect::<Result<Vec<_>, _>>()?;
    for patch in &patches {
        app.engine.upsert_user(patch)?;
    }
    Ok(Json(json!({"upserted": patches.len()})))
}

/// `GET /api/users/{id}`: the user in the own view.
async fn get_user(State(app): State<Arc<App>>, Path(id): Path<String>) -> ApiResult {
    Ok(Json(app.engine.get_user(presence::ConnectionId::HOST, &id)?.to_value()))
}

/// `POST /api/channels`: engine channel JSON (`type`, `id`, `members`, custom fields).
async fn upsert_channel(State(app): State<Arc<App>>, body: String) -> ApiResult {
    app.engine.upsert_channel_json(&parse_body(&body)?.to_string())?;
    Ok(Json(json!({})))
}

fn member_ids(body: &str) -> Result<String, ApiError> {
    match parse_body(body)?.get("user_ids") {
        Some(ids @ Value::Array(_)) => Ok(ids.to_string()),
        _ => Err(ApiError(StatusCode::BAD_REQUEST, "bad_request", "expected {\"user_ids\": [...]}".into())),
    }
}

/// `POST /api/channels/{cid}/members` with `{"user_ids": [...]}` adds members; `DELETE`
/// with the same body removes them.
async fn members(
    State(app): State<Arc<App>>,
    method: Method,
    Path(cid): Path<String>,
    body: String,
) -> ApiResult {
    let ids = member_ids(&body)?;
    if method == Method::DELETE {
        app.engine.remove_members_json(&cid, &ids)?;
    } else {
        app.engine.add_members_json(&cid, &ids)?;
    }
    Ok(Json(json!({})))
}

#[derive(Deserialize)]
struct TokenParams {
    user_id: String,
}

/// `GET /dev/token?user_id=...`: a 24-hour token for anyone. Only with `dev_tokens`.
async fn dev_token(State(app): State<Arc<App>>, Query(params): Query<TokenParams>) -> ApiResult {
    if !app.config.dev_tokens {
        return Err(ApiError(StatusCode::NOT_FOUND, "not_found", "dev tokens are disabled".into()));
    }
    presence::user::validate_user_id(&params.user_id)?;
    Ok(Json(json!({"user_id": params.user_id, "token": app.keys.sign(&params.user_id, 24 * 3600)})))
}

/// Prometheus text format.
async fn metrics(State(app): State<Arc<App>>) -> impl IntoResponse {
    let mut text = MetricsText::default();
    connection_metrics(&app, &mut text);
    cluster_metrics(&app, &mut text);
    refused_metrics(&app, &mut text);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text.0)
}

/// The Prometheus text exposition being written.
#[derive(Default)]
struct MetricsText(String);

impl MetricsText {
    /// A metric's HELP and TYPE lines.
    fn header(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    /// An unlabelled metric with its header.
    fn metric(&mut self, name: &str, kind: &str, help: &str, value: u64) {
        self.header(name, kind, help);
        let _ = writeln!(self.0, "{name} {value}");
    }

    /// One labelled sample of a metric whose header was written.
    fn sample(&mut self, name: &str, labels: &str, value: u64) {
        let _ = writeln!(self.0, "{name}{{{labels}}} {value}");
    }
}

fn connection_metrics(app: &App, text: &mut MetricsText) {
    let presence::Counts { users, connections, channels } = app.engine.counts();
    let m = &app.metrics;
    let counter = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
    text.metric(
        "presence_connections",
        "gauge",
        "Open WebSocket connections.",
        app.links.read().len() as u64,
    );
    text.metric("presence_engine_connections", "gauge", "Connections the engine holds.", connections as u64);
    let online = app.online.lock().len() as u64;
    text.metric("presence_online_users", "gauge", "Users online in the public view.", online);
    text.metric("presence_users", "gauge", "Users the engine knows.", users as u64);
    text.metric("presence_channels", "gauge", "Channels the engine knows.", channels as u64);
    let opened = counter(&m.connections_opened);
    text.metric("presence_connections_opened_total", "counter", "Connections accepted.", opened);
    let delivered = counter(&m.events_delivered);
    text.metric("presence_events_delivered_total", "counter", "Events written to sockets.", delivered);
    let received = counter(&m.messages_received);
    text.metric("presence_messages_received_total", "counter", "Client messages received.", received);
    let help = "Connections closed because their queue overflowed.";
    text.metric("presence_queue_drops_total", "counter", help, counter(&m.slow_consumers));
    let help = "Connections closed for missing heartbeats.";
    text.metric("presence_timeouts_total", "counter", help, counter(&m.timeouts));
}

fn cluster_metrics(app: &App, text: &mut MetricsText) {
    let cluster = app.engine.cluster_status();
    let clustered = cluster["mode"] == "cluster";
    text.metric("presence_cluster_mode", "gauge", "1 in cluster mode, 0 single-node.", u64::from(clustered));
    if !clustered {
        return;
    }
    let number = |key: &str| cluster[key].as_u64().unwrap_or(0);
    let help = "Live nodes, as the last lease renewal saw them.";
    text.metric("presence_cluster_nodes_alive", "gauge", help, number("nodes_alive"));
    let help = "Changes waiting for the store to answer.";
    text.metric("presence_cluster_pending_writes", "gauge", help, number("pending_writes"));
    let help = "Link to the cluster store: 1 for the state it is in.";
    text.header("presence_cluster_status", "gauge", help);
    let node = cluster["node_id"].as_str().unwrap_or_default();
    for link in ["up", "down", "fenced"] {
        let labels = format!("node_id=\"{node}\",link=\"{link}\"");
        text.sample("presence_cluster_status", &labels, u64::from(cluster["link"] == link));
    }
}

fn refused_metrics(app: &App, text: &mut MetricsText) {
    let help = "Sockets refused or closed by a limit, by reason.";
    text.header("presence_refused_total", "counter", help);
    let mut refused: Vec<_> = app.metrics.refused.lock().iter().map(|(k, v)| (*k, *v)).collect();
    refused.sort();
    for (reason, count) in refused {
        text.sample("presence_refused_total", &format!("reason=\"{reason}\""), count);
    }
}
