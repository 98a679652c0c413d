//! presence-server: the presence engine behind a WebSocket front door, with a backend HTTP
//! API, health and metrics endpoints, and a live web page.
//!
//! Each WebSocket is one engine connection. The engine's per-connection queue is the only
//! buffer: a delivery listener wakes the socket's task, which drains the queue into the
//! socket. A client that stops reading stops the draining, its queue fills, and the engine
//! closes it as a slow consumer.
pub mod api;
pub mod auth;
pub mod config;
pub mod socket;

use config::ServerConfig;
use parking_lot::{Mutex, RwLock};
use presence::{CloseReason, ConnectionId, Engine, EventKind, ListenerFilter, SharedStr, View};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::Notify;

/// What the engine's listeners share with one socket's task.
#[derive(Default)]
pub struct Link {
    /// Woken when a delivery lands in the connection's queue.
    pub wake: Notify,
    /// Woken when the engine closed the connection; the reason is in `reason`.
    pub closed: Notify,
    pub reason: Mutex<Option<CloseReason>>,
}

/// Counters for `/metrics`.
#[derive(Default)]
pub struct Metrics {
    pub connections_opened: AtomicU64,
    pub events_delivered: AtomicU64,
    pub messages_received: AtomicU64,
    pub slow_consumers: AtomicU64,
    pub timeouts: AtomicU64,
    pub refused: Mutex<HashMap<&'static str, u64>>,
}

impl Metrics {
    pub fn refuse(&self, reason: &'static str) {
        *self.refused.lock().entry(reason).or_default() += 1;
    }
}

pub struct App {
    pub config: ServerConfig,
    pub engine: Engine,
    pub keys: auth::Keys,
    pub links: RwLock<HashMap<ConnectionId, Arc<Link>>>,
    /// Users online in the public view, kept from the engine's own events.
    pub online: Mutex<HashSet<SharedStr>>,
    /// Each connected user's message allowance, shared by all of that user's sockets.
    pub(crate) rates: Mutex<HashMap<String, Arc<Mutex<socket::TokenBucket>>>>,
    pub metrics: Metrics,
}

impl App {
    /// Builds the engine from the config, creates the configured channels, and installs
    /// the listeners that feed sockets and metrics.
    pub fn new(config: ServerConfig) -> Result<Arc<App>, String> {
        let engine = Engine::from_json(Some(&config.engine_config()?.to_string()))
            .map_err(|e| format!("engine config: {e}"))?;
        if engine.config().connection_queue_capacity == 0 {
            return Err(
                "engine config: connection_queue_capacity must be > 0 (sockets drain the queues)".into()
            );
        }
        for channel in &config.channels {
            engine.upsert_channel_json(&channel.to_string()).map_err(|e| format!("channels: {e}"))?;
        }
        let app = Arc::new(App {
            keys: auth::Keys::new(&config.jwt_secret),
            config,
            engine,
            links: RwLock::new(HashMap::new()),
            online: Mutex::new(HashSet::new()),
            rates: Mutex::new(HashMap::new()),
            metrics: Metrics::default(),
        });
        app.install_listeners()?;
        Ok(app)
    }

    /// The listeners that wake sockets, close them with their reason, and keep `online`.
    /// They hold a weak reference: the engine they live in belongs to the app.
    fn install_listeners(self: &Arc<App>) -> Result<(), String> {
        let weak = Arc::downgrade(self);
        self.engine.add_delivery_listener(move |d| {
            if let Some(link) = weak.upgrade().and_then(|app| app.links.read().get(&d.connection).cloned()) {
                link.wake.notify_one();
            }
        });
        let weak = Arc::downgrade(self);
        self.engine
            .add_listener(ListenerFilter::event_type("connection.closed"), move |e| {
                if let (Some(app), EventKind::ConnectionClosed { connection, reason, .. }) =
                    (weak.upgrade(), &e.kind)
                {
                    app.connection_closed(*connection, *reason);
                }
            })
            .map_err(|e| format!("listener: {e}"))?;
        let weak = Arc::downgrade(self);
        self.engine
            .add_listener(ListenerFilter::event_type("user.presence.changed"), move |e| {
                let (Some(app), Some(user)) = (weak.upgrade(), e.user()) else { return };
                let mut online = app.online.lock();
                if user.online(View::Public) {
                    online.insert(user.id.clone());
                } else {
                    online.remove(&*user.id);
                }
            })
            .map_err(|e| format!("listener: {e}"))?;
        Ok(())
    }

    /// Counts the close and tells the socket's task why its connection ended.
    fn connection_closed(&self, connection: ConnectionId, reason: CloseReason) {
        match reason {
            CloseReason::SlowConsumer => self.metrics.slow_consumers.fetch_add(1, Ordering::Relaxed),
            CloseReason::Timeout => self.metrics.timeouts.fetch_add(1, Ordering::Relaxed),
            CloseReason::Disconnect => 0,
            // The id is the dead node's, and may equal the id of a socket of this server.
            CloseReason::NodeLost => return,
        };
        let link = self.links.read().get(&connection).cloned();
        if let Some(link) = link {
            *link.reason.lock() = Some(reason);
            link.closed.notify_one();
        }
    }
}

/// How long a connection may take to send a request head, counted from when it opened or
/// answered its previous request. WebSockets are not affected once upgraded.
pub const HEADER_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Serves until the process is stopped. Prints `listening on http://ADDR` once bound, so a
/// parent process (tests, the load generator) can read the port when `addr` ends in `:0`.
pub async fn run(app: Arc<App>) -> std::io::Result<()> {
    let mut listener = tokio::net::TcpListener::bind(&app.config.addr).await?;
    println!("presence-server listening on http://{}", listener.local_addr()?);
    let ticker = app.clone();
    tokio::spawn(async move {
        // Timeouts and last_active refreshes fall due with time, not with calls: the engine
        // applies them when ticked.
        let mut every = tokio::time::interval(std::time::Duration::from_millis(250));
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            // Only a poisoned engine fails here, and every other call reports that too.
            let _ = ticker.engine.tick();
        }
    });
    let router = api::router(app);
    loop {
        // Waits out accept errors (out of descriptors) the way axum::serve does.
        let (stream, _) = axum::serve::Listener::accept(&mut listener).await;
        let service = hyper_util::service::TowerToHyperService::new(router.clone());
        tokio::spawn(async move {
            // axum::serve sets no timer, so it never times out a request head.
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder.timer(hyper_util::rt::TokioTimer::new()).header_read_timeout(HEADER_READ_TIMEOUT);
            // A connection's error ends that connection only.
            let _ =
                builder.serve_connection(hyper_util::rt::TokioIo::new(stream), service).with_upgrades().await;
        });
    }
}
