//! Helpers shared by the integration tests.
#![allow(dead_code)]
use presence::{Delivery, Engine, Event, ListenerFilter, View};
use std::sync::{Arc, Mutex};

/// 2019-01-07T13:17:42.375Z, the timestamp in the spec's examples.
pub const T0: i64 = 1_546_867_062_375;
pub const MINUTE: i64 = 60_000;

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
        engine.add_listener(filter, move |e| events.lock().unwrap().push(e.clone()));
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
    let online = if e.user().online(View::Own) { "online" } else { "offline" };
    format!("{} {} {}", e.type_name(), e.user_id(), online)
}

/// `"#2 user.presence.changed alice offline"`: recipient, type, user, `online` as seen.
pub fn describe_delivery(d: &Delivery) -> String {
    let online = if d.online() { "online" } else { "offline" };
    format!("#{} {} {} {}", d.connection.0, d.event.type_name(), d.event.user_id(), online)
}

/// A deterministic pseudo-random sequence (xorshift64), so test data is varied but
/// reproducible from its seed.
pub struct Rng(pub u64);

impl Rng {
    /// Seeded from the clock (never 0, which xorshift cannot leave).
    pub fn seeded() -> Rng {
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
    engine.add_listener(ListenerFilter::all(), move |e| h.lock().unwrap().push(Arc::new(e.clone())));
    let d = deliveries.clone();
    engine.add_delivery_listener(move |x| d.lock().unwrap().push(x.clone()));
    (host, deliveries)
}
