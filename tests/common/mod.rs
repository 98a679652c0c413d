//! Helpers shared by the integration tests: engines on a manual clock, recorders of what
//! listeners saw, JSON views to compare answers against, and a seeded generator.
#![allow(dead_code)]
pub mod views;

use presence::time::format_millis;
use presence::{ConnectionId, Delivery, Engine, ErrorKind, Event, ListenerFilter, View};
use std::sync::{Arc, Mutex};

/// 2019-01-07T13:17:42.375Z, the start of every manual clock in the tests.
pub const T0: i64 = 1_546_867_062_375;
pub const MINUTE: i64 = 60_000;
/// [`T0`] rendered.
pub const T0S: &str = "2019-01-07T13:17:42.375Z";

pub const HOST: ConnectionId = ConnectionId::HOST;

/// `T0 + minutes` rendered.
pub fn at_min(minutes: i64) -> String {
    format_millis(T0 + minutes * MINUTE)
}

/// The kind of the error `r` must hold.
pub fn kind<T>(r: presence::Result<T>) -> ErrorKind {
    match r {
        Ok(_) => panic!("expected an error, got Ok"),
        Err(e) => e.kind(),
    }
}

pub fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// An engine on a manual clock starting at [`T0`], with extra config keys merged in
/// (`extra` is a JSON object body such as `"connection_timeout_ms": 30000`).
pub fn manual_engine(extra: &str) -> Engine {
    let sep = if extra.is_empty() { "" } else { "," };
    Engine::from_json(Some(&format!(r#"{{"clock":"manual","start_time_ms":{T0}{sep}{extra}}}"#))).unwrap()
}

/// Everything host listeners saw, in order.
#[derive(Clone, Default)]
pub struct Recorder(Arc<Mutex<Vec<Event>>>);

impl Recorder {
    pub fn attach(engine: &Engine) -> Recorder {
        Recorder::attach_filtered(engine, ListenerFilter::all())
    }
    pub fn attach_filtered(engine: &Engine, filter: ListenerFilter) -> Recorder {
        let r = Recorder::default();
        let events = r.0.clone();
        engine.add_listener(filter, move |e| events.lock().unwrap().push(e.clone())).unwrap();
        r
    }
    /// Takes what was recorded so far as `"type user online"` lines (own view).
    pub fn take(&self) -> Vec<String> {
        self.take_events().iter().map(describe).collect()
    }
    pub fn take_events(&self) -> Vec<Event> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

/// `"user.presence.changed alice online"`: the type, the user and `online` in the own view.
pub fn describe(e: &Event) -> String {
    let online = if e.user().is_some_and(|u| u.online(View::Own)) { "online" } else { "offline" };
    format!("{} {} {}", e.type_name(), e.user_id().unwrap_or("-"), online)
}

/// `"#2 user.presence.changed alice offline"`: recipient, type, user, `online` as seen.
pub fn describe_delivery(d: &Delivery) -> String {
    let online = if d.online() { "online" } else { "offline" };
    format!("#{} {} {} {}", d.connection.0, d.event.type_name(), d.user_id(), online)
}

/// `"#<conn> <rest>"`, the shape of [`describe_delivery`].
pub fn to(c: ConnectionId, rest: &str) -> String {
    format!("#{} {}", c.0, rest)
}

/// Every delivery-listener call, in call order.
#[derive(Clone, Default)]
pub struct Deliveries(Arc<Mutex<Vec<Delivery>>>);

impl Deliveries {
    pub fn attach(e: &Engine) -> Deliveries {
        let d = Deliveries::default();
        let sink = d.0.clone();
        e.add_delivery_listener(move |x| sink.lock().unwrap().push(x.clone()));
        d
    }

    /// What was delivered so far, checked to be in `seq` order.
    pub fn take_raw(&self) -> Vec<Delivery> {
        let all = std::mem::take(&mut *self.0.lock().unwrap());
        for w in all.windows(2) {
            assert!(
                w[0].event.seq <= w[1].event.seq,
                "delivery listener called out of seq order: {} then {}",
                w[0].event.seq,
                w[1].event.seq
            );
        }
        all
    }

    /// [`describe_delivery`] lines; the recipients of one event (whose order is not
    /// specified) are listed by connection id.
    pub fn take(&self) -> Vec<String> {
        let mut all = self.take_raw();
        all.sort_by_key(|d| (d.event.seq, d.connection));
        all.iter().map(describe_delivery).collect()
    }
}

/// Drains a connection's queue as [`describe_delivery`] lines, checking strict seq order.
pub fn poll(e: &Engine, c: ConnectionId) -> Vec<String> {
    let got = e.poll_events(c, usize::MAX).unwrap();
    for w in got.windows(2) {
        assert!(w[0].event.seq < w[1].event.seq, "queue out of seq order");
    }
    for d in &got {
        assert_eq!(d.connection, c);
    }
    got.iter().map(describe_delivery).collect()
}

/// A deterministic pseudo-random sequence (xorshift64), so test data is varied but
/// reproducible from its seed.
pub struct Rng(pub u64);

impl Rng {
    /// Seeded from the clock (never 0, which xorshift cannot leave).
    /// Seeded from the clock, or from `PRESENCE_TEST_SEED` to replay a run a test printed.
    pub fn seeded() -> Rng {
        if let Some(seed) = std::env::var("PRESENCE_TEST_SEED").ok().and_then(|s| s.parse::<u64>().ok()) {
            return Rng(seed);
        }
        let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64;
        Rng(t | 1)
    }
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    /// Uniform enough in `0..n` (`0` when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Everything an engine emits from now on: host events and (event, recipient) deliveries.
pub type HostLog = Arc<Mutex<Vec<Arc<Event>>>>;
pub type DeliveryLog = Arc<Mutex<Vec<Delivery>>>;

/// Attaches a host listener and a delivery listener that record into the returned logs.
pub fn record_all(engine: &Engine) -> (HostLog, DeliveryLog) {
    let (host, deliveries) = (HostLog::default(), DeliveryLog::default());
    let h = host.clone();
    engine.add_listener(ListenerFilter::all(), move |e| h.lock().unwrap().push(Arc::new(e.clone()))).unwrap();
    let d = deliveries.clone();
    engine.add_delivery_listener(move |x| d.lock().unwrap().push(x.clone()));
    (host, deliveries)
}
