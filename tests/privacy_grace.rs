//! The offline grace and heartbeat timeouts against visibility: a grace period keeps
//! online only a user others saw online, whatever happens in between (invisible connects,
//! disconnects, timeouts, visibility flips while connected, in grace or offline).
//!
//! Random sequences of those operations with an observer watching every user; after each
//! step, for every user:
//! - online to the observer (`get_user`, `{"online": true}` queries) implies not invisible;
//! - online to the observer without a live connection implies online to the observer
//!   before the step (a grace only extends a visible session, it never starts one);
//! - the observer got exactly one `user.presence.changed` about the user when its public
//!   view changed and none otherwise, showing the new `online`;
//! - host listeners (own views) got exactly one when the own view (`online` counting the
//!   grace, `invisible`) changed and none otherwise, showing the new own view.
mod common;

use common::{manual_engine, record_all, DeliveryLog, HostLog};
use presence::{ConnectionId, Engine, EventKind, View};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use std::collections::BTreeMap;

const USERS: [&str; 3] = ["u0", "u1", "u2"];

#[derive(Clone, Debug)]
enum Op {
    Connect(&'static str, Option<bool>),
    /// The k-th live connection of the subjects (modulo their number).
    Disconnect(usize),
    Heartbeat(usize),
    SetInvisible(&'static str, bool),
    Advance(i64),
    Tick,
}

fn op() -> impl Strategy<Value = Op> {
    let user = || prop::sample::select(&USERS[..]);
    prop_oneof![
        4 => (user(), prop_oneof![Just(None), Just(Some(true)), Just(Some(false))]).prop_map(|(u, i)| Op::Connect(u, i)),
        3 => (0usize..4).prop_map(Op::Disconnect),
        1 => (0usize..4).prop_map(Op::Heartbeat),
        5 => (user(), any::<bool>()).prop_map(|(u, b)| Op::SetInvisible(u, b)),
        3 => prop::sample::select(vec![10i64, 49, 50, 99, 100, 1000]).prop_map(Op::Advance),
        3 => Just(Op::Tick),
    ]
}

/// What one user looks like: to the observer, and in the own view.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Seen {
    public_online: bool,
    own_online: bool,
    invisible: bool,
}

struct Harness {
    engine: Engine,
    observer: ConnectionId,
    host: HostLog,
    deliveries: DeliveryLog,
    /// Live connections of the subjects and their users.
    live: BTreeMap<u64, &'static str>,
    seen: BTreeMap<&'static str, Seen>,
}

impl Harness {
    fn new(config: &str) -> Harness {
        let engine = manual_engine(config);
        let members: Vec<&str> = USERS.to_vec();
        engine
            .upsert_channel_json(
                &serde_json::json!({"type": "room", "id": "all", "members": members}).to_string(),
            )
            .unwrap();
        let observer = engine.connect_json(r#"{"id":"observer"}"#).unwrap();
        engine.watch_channel(observer, "room:all", true).unwrap();
        let (host, deliveries) = record_all(&engine);
        let mut h =
            Harness { engine, observer, host, deliveries, live: BTreeMap::new(), seen: BTreeMap::new() };
        h.seen = h.look();
        h
    }

    fn look(&self) -> BTreeMap<&'static str, Seen> {
        let online_q = self
            .engine
            .query_users(self.observer, r#"{"filter_conditions": {"online": true}, "limit": 100}"#)
            .unwrap();
        USERS
            .iter()
            .map(|&u| {
                let public = self.engine.get_user(self.observer, u).unwrap();
                let own = self.engine.get_user(ConnectionId::HOST, u).unwrap();
                let in_query = online_q["users"].as_array().unwrap().iter().any(|v| v["id"] == u);
                assert_eq!(in_query, public["online"], "{u}: get_user and the online query disagree");
                let seen = Seen {
                    public_online: public["online"].as_bool().unwrap(),
                    own_online: own["online"].as_bool().unwrap(),
                    invisible: own["invisible"].as_bool().unwrap(),
                };
                (u, seen)
            })
            .collect()
    }

    fn nth_live(&self, k: usize) -> Option<u64> {
        (!self.live.is_empty()).then(|| *self.live.keys().nth(k % self.live.len()).unwrap())
    }

    fn run(&mut self, op: &Op) {
        let e = &self.engine;
        match *op {
            Op::Connect(u, invisible) => {
                let mut patch = serde_json::json!({"id": u});
                if let Some(i) = invisible {
                    patch["invisible"] = i.into();
                }
                let c = e.connect_json(&patch.to_string()).unwrap();
                self.live.insert(c.0, u);
            }
            Op::Disconnect(k) => {
                if let Some(c) = self.nth_live(k) {
                    e.disconnect(ConnectionId(c)).unwrap();
                }
            }
            Op::Heartbeat(k) => {
                if let Some(c) = self.nth_live(k) {
                    e.heartbeat(ConnectionId(c)).unwrap();
                }
            }
            Op::SetInvisible(u, b) => e.set_invisible(u, b).unwrap(),
            Op::Advance(ms) => {
                e.set_time(e.now() + ms).unwrap();
                // The observer stays alive whatever the timeout.
                e.heartbeat(self.observer).unwrap();
            }
            Op::Tick => e.tick().unwrap(),
        }
    }

    fn check(&mut self, step: usize, op: &Op) -> Result<(), TestCaseError> {
        let host = std::mem::take(&mut *self.host.lock().unwrap());
        for ev in &host {
            if let EventKind::ConnectionClosed { connection, .. } = &ev.kind {
                self.live.remove(&connection.0);
            }
        }
        let delivered = std::mem::take(&mut *self.deliveries.lock().unwrap());
        self.engine.poll_events(self.observer, usize::MAX).unwrap();
        let now = self.look();
        let before = std::mem::replace(&mut self.seen, now);
        for u in USERS {
            let (b, a) = (before[u], self.seen[u]);
            let what = format!("step {step} {op:?}, user {u}: {b:?} -> {a:?}");
            prop_assert!(!(a.public_online && a.invisible), "{}: invisible yet online to others", what);
            let has_live = self.live.values().any(|&x| x == u);
            prop_assert!(
                !a.public_online || has_live || b.public_online,
                "{}: online to others without a connection, and was not before",
                what
            );
            let to_observer: Vec<bool> = delivered
                .iter()
                .filter(|d| d.connection == self.observer && d.user_id() == u)
                .filter(|d| d.event.type_name() == "user.presence.changed")
                .map(|d| d.online())
                .collect();
            let public_changed = a.public_online != b.public_online;
            let want: Vec<bool> = if public_changed { vec![a.public_online] } else { vec![] };
            prop_assert_eq!(to_observer, want, "{}: events to the observer", what);
            let to_host: Vec<(bool, bool)> = host
                .iter()
                .filter(|ev| ev.user_id() == Some(u) && ev.type_name() == "user.presence.changed")
                .filter_map(|ev| ev.user())
                .map(|user| (user.online(View::Own), user.invisible))
                .collect();
            let own_changed = (a.own_online, a.invisible) != (b.own_online, b.invisible);
            let want: Vec<(bool, bool)> =
                if own_changed { vec![(a.own_online, a.invisible)] } else { vec![] };
            prop_assert_eq!(to_host, want, "{}: events to host listeners", what);
        }
        Ok(())
    }
}

fn config() -> impl Strategy<Value = String> {
    (prop::sample::select(vec![50u64, 1000]), prop::sample::select(vec![0u64, 100])).prop_map(
        |(grace, timeout)| format!(r#""offline_grace_ms":{grace},"connection_timeout_ms":{timeout}"#),
    )
}

fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(1000), failure_persistence: None, ..ProptestConfig::default() })]

    /// No sequence lets the grace show a hidden session, and events follow each view.
    #[test]
    fn grace_extends_only_visible_sessions(cfg in config(), ops in prop::collection::vec(op(), 1..40)) {
        let mut h = Harness::new(&cfg);
        for (i, op) in ops.iter().enumerate() {
            h.run(op);
            h.check(i, op)?;
        }
    }
}

/// The sequence that revealed an invisible session: connect invisibly, disconnect, turn
/// visible while the grace would still run.
#[test]
fn an_invisible_session_leaves_no_grace_to_reveal() {
    let mut h = Harness::new(r#""offline_grace_ms":60000"#);
    let ops = [
        Op::Connect("u0", Some(true)),
        Op::Disconnect(0),
        Op::SetInvisible("u0", false),
        Op::Advance(10),
        Op::Tick,
    ];
    for (i, op) in ops.iter().enumerate() {
        h.run(op);
        h.check(i, op).unwrap();
        assert!(!h.seen["u0"].public_online, "step {i}: u0 appears online");
    }
}

/// A visible session in its grace that is hidden ends there: turning visible again does
/// not bring the user back online to others.
#[test]
fn hiding_during_the_grace_ends_it() {
    let mut h = Harness::new(r#""offline_grace_ms":60000"#);
    let ops = [
        Op::Connect("u0", None),
        Op::Disconnect(0),
        Op::SetInvisible("u0", true),
        Op::SetInvisible("u0", false),
    ];
    let public: Vec<bool> = ops
        .iter()
        .enumerate()
        .map(|(i, op)| {
            h.run(op);
            h.check(i, op).unwrap();
            h.seen["u0"].public_online
        })
        .collect();
    assert_eq!(public, [true, true, false, false]);
}
