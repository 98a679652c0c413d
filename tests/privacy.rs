//! Privacy: no sequence of operations lets another connection observe an
//! invisible user as online, or see their `last_active` move, through events (queues and
//! the delivery listener), `get_user`, `query_users` (filters on `online`, sorts on `online`
//! and `last_active`), or channel states (watch answers, `query_channels`, watcher lists and
//! counts, member lists).
//!
//! Ground truth is the host's own view (the host is entitled to see `invisible`) plus this
//! test's bookkeeping of live connections and what they watch. The rules checked, for every
//! observer connection and every user `u` it does not belong to:
//! - `u` appears online exactly when `u` is online and not invisible (host view);
//! - no public rendering carries `invisible`;
//! - `u`'s `last_active` as others see it changes in a step only if `u` was online to others
//!   before or after that step (a visible session starting, refreshing or ending);
//! - a delivered event never shows an invisible `u` online, never carries a `last_active`
//!   that moved while `u` stayed hidden, and `user.watching.start` never names an invisible
//!   user (`user.watching.stop` may, only in the step that hid them);
//! - watcher lists never contain invisible users and `watcher_count` is the number of
//!   distinct visible users watching.
mod common;

use common::{record_all, DeliveryLog, HostLog};
use presence::{ConnectionId, Delivery, Engine, Event, EventKind, View};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

const USERS: [&str; 4] = ["u0", "u1", "u2", "u3"];
const CHANNELS: [&str; 2] = ["team:a", "team:b"];
const T0: i64 = 1_700_000_000_000;

/// Filters that select users online (in the viewer's view), spelled every way the query
/// language allows.
const ONLINE_TRUE: [&str; 10] = [
    r#"{"online": true}"#,
    r#"{"online": {"$eq": true}}"#,
    r#"{"online": {"$ne": false}}"#,
    r#"{"online": {"$in": [true]}}"#,
    r#"{"online": {"$nin": [false]}}"#,
    r#"{"online": {"$gt": false}}"#,
    r#"{"online": {"$gte": true}}"#,
    r#"{"$nor": [{"online": false}]}"#,
    r#"{"$or": [{"online": true}, {"id": "nobody"}]}"#,
    r#"{"$and": [{"online": true}, {"id": {"$exists": true}}]}"#,
];
/// Filters that select users offline (in the viewer's view).
const ONLINE_FALSE: [&str; 4] = [
    r#"{"online": false}"#,
    r#"{"online": {"$ne": true}}"#,
    r#"{"online": {"$lt": true}}"#,
    r#"{"$nor": [{"online": true}]}"#,
];

/// `k`-th live connection (oldest first, modulo how many), or a never-issued id.
#[derive(Clone, Copy, Debug)]
struct Live(u8);

#[derive(Clone, Debug)]
enum Op {
    Connect(&'static str, Option<bool>),
    Disconnect(Live),
    Heartbeat(Live),
    SetInvisible(&'static str, bool),
    Upsert(&'static str, Option<bool>, Option<&'static str>),
    SetStatus(&'static str, Option<&'static str>),
    Channel(&'static str, Vec<&'static str>),
    RemoveMember(&'static str, &'static str),
    Watch(Live, &'static str, bool),
    StopWatching(Live, &'static str),
    QueryUsers(Live, bool),
    QueryChannels(Live, bool, bool),
    Unsubscribe(Live, &'static str),
    Advance(u32),
    Tick,
}

fn op() -> impl Strategy<Value = Op> {
    let user = || prop::sample::select(&USERS[..]);
    let cid = || prop::sample::select(&CHANNELS[..]);
    let live = || (0u8..4).prop_map(Live);
    let invisible = || prop_oneof![Just(None), Just(Some(true)), Just(Some(false))];
    let status = || prop::option::of(prop::sample::select(vec!["busy", "away"]));
    prop_oneof![
        6 => (user(), invisible()).prop_map(|(u, i)| Op::Connect(u, i)),
        3 => live().prop_map(Op::Disconnect),
        1 => live().prop_map(Op::Heartbeat),
        6 => (user(), any::<bool>()).prop_map(|(u, b)| Op::SetInvisible(u, b)),
        2 => (user(), invisible(), status()).prop_map(|(u, i, s)| Op::Upsert(u, i, s)),
        2 => (user(), status()).prop_map(|(u, s)| Op::SetStatus(u, s)),
        3 => (cid(), prop::collection::vec(user(), 0..4)).prop_map(|(c, m)| Op::Channel(c, m)),
        1 => (cid(), user()).prop_map(|(c, u)| Op::RemoveMember(c, u)),
        5 => (live(), cid(), any::<bool>()).prop_map(|(l, c, p)| Op::Watch(l, c, p)),
        2 => (live(), cid()).prop_map(|(l, c)| Op::StopWatching(l, c)),
        2 => (live(), any::<bool>()).prop_map(|(l, p)| Op::QueryUsers(l, p)),
        2 => (live(), any::<bool>(), any::<bool>()).prop_map(|(l, p, w)| Op::QueryChannels(l, p, w)),
        1 => (live(), user()).prop_map(|(l, u)| Op::Unsubscribe(l, u)),
        3 => prop::sample::select(vec![1u32, 30, 41, 50, 99, 100, 200]).prop_map(Op::Advance),
        3 => Just(Op::Tick),
    ]
}

/// What the host (entitled to everything) says about a user.
#[derive(Clone, Debug, PartialEq)]
struct Truth {
    connected: bool,
    invisible: bool,
    last_active: Option<String>,
}

impl Truth {
    fn public_online(&self) -> bool {
        self.connected && !self.invisible
    }
}

struct Harness {
    engine: Engine,
    host: HostLog,
    deliveries: DeliveryLog,
    /// Live connections and their users.
    live: BTreeMap<u64, String>,
    /// Every connection ever opened and its user.
    owners: BTreeMap<u64, String>,
    /// Channels each live connection watches.
    watching: BTreeMap<u64, BTreeSet<String>>,
    truth: BTreeMap<String, Truth>,
    /// Steps checked / observations made, for the summary.
    observations: u64,
}

fn str_of(v: &Value, key: &str) -> Option<String> {
    v.get(key).and_then(Value::as_str).map(str::to_owned)
}

impl Harness {
    fn new(cfg: &str) -> Self {
        let engine = Engine::from_json(Some(cfg)).unwrap();
        let (host, deliveries) = record_all(&engine);
        Harness {
            engine,
            host,
            deliveries,
            live: BTreeMap::new(),
            owners: BTreeMap::new(),
            watching: BTreeMap::new(),
            truth: BTreeMap::new(),
            observations: 0,
        }
    }

    fn conn(&self, l: Live) -> u64 {
        if self.live.is_empty() {
            9999
        } else {
            *self.live.keys().nth(l.0 as usize % self.live.len()).unwrap()
        }
    }

    fn read_truth(&self) -> BTreeMap<String, Truth> {
        USERS
            .iter()
            .filter_map(|u| {
                let v = self.engine.get_user(ConnectionId::HOST, u).ok()?;
                Some((
                    u.to_string(),
                    Truth {
                        connected: v["online"].as_bool().unwrap(),
                        invisible: v["invisible"].as_bool().unwrap(),
                        last_active: str_of(&v, "last_active"),
                    },
                ))
            })
            .collect()
    }

    /// Runs one step; answers the JSON answers it produced that others could read.
    fn run(&mut self, op: &Op) -> Vec<(u64, Value)> {
        let e = &self.engine;
        match op {
            Op::Watch(..) | Op::QueryUsers(..) | Op::QueryChannels(..) => {
                return self.read(op).into_iter().collect()
            }
            Op::Connect(u, invisible) => {
                let mut patch = json!({"id": u});
                if let Some(i) = invisible {
                    patch["invisible"] = json!(i);
                }
                if let Ok(c) = e.connect_json(&patch.to_string()) {
                    self.live.insert(c.0, u.to_string());
                    self.owners.insert(c.0, u.to_string());
                    self.watching.insert(c.0, BTreeSet::new());
                }
            }
            Op::Disconnect(l) => {
                let c = self.conn(*l);
                if e.disconnect(ConnectionId(c)).is_ok() {
                    self.live.remove(&c);
                    self.watching.remove(&c);
                }
            }
            Op::Heartbeat(l) => {
                let _ = e.heartbeat(ConnectionId(self.conn(*l)));
            }
            Op::SetInvisible(u, b) => {
                let _ = e.set_invisible(u, *b);
            }
            Op::Upsert(u, i, s) => {
                let mut patch = json!({"id": u});
                if let Some(i) = i {
                    patch["invisible"] = json!(i);
                }
                if let Some(s) = s {
                    patch["status"] = json!(s);
                }
                e.upsert_user_json(&patch.to_string()).unwrap();
            }
            Op::SetStatus(u, s) => {
                let _ = e.set_status(u, *s);
            }
            Op::Channel(cid, members) => {
                let _ = e.upsert_channel_json(&json!({"cid": cid, "members": members}).to_string());
            }
            Op::RemoveMember(cid, u) => {
                let _ = e.remove_members(cid, &[u.to_string()]);
            }
            Op::StopWatching(l, cid) => {
                let c = self.conn(*l);
                if e.stop_watching(ConnectionId(c), cid).is_ok() {
                    self.watching.get_mut(&c).unwrap().remove(*cid);
                }
            }
            Op::Unsubscribe(l, u) => {
                let _ = e.unsubscribe_user(ConnectionId(self.conn(*l)), u);
            }
            Op::Advance(ms) => {
                let now = e.now();
                e.set_time(now + *ms as i64).unwrap();
            }
            Op::Tick => e.tick().unwrap(),
        }
        Vec::new()
    }

    /// The operations that answer JSON: watching and queries. Answers (connection, answer).
    fn read(&mut self, op: &Op) -> Option<(u64, Value)> {
        let e = &self.engine;
        match op {
            Op::Watch(l, cid, presence) => {
                let c = self.conn(*l);
                let state = e.watch_channel_state(ConnectionId(c), cid, *presence).ok()?;
                self.watching.get_mut(&c).unwrap().insert(cid.to_string());
                Some((c, json!({"channels": [state]})))
            }
            Op::QueryUsers(l, presence) => {
                let c = self.conn(*l);
                let q = json!({"filter_conditions": {"online": true}, "presence": presence});
                Some((c, e.query_users(ConnectionId(c), &q.to_string()).ok()?))
            }
            Op::QueryChannels(l, presence, watch) => {
                let c = self.conn(*l);
                let q = json!({"presence": presence, "watch": watch});
                let v = e.query_channels(ConnectionId(c), &q.to_string()).ok()?;
                if *presence || *watch {
                    for ch in v["channels"].as_array().unwrap() {
                        let cid = str_of(&ch["channel"], "cid").unwrap();
                        self.watching.get_mut(&c).unwrap().insert(cid);
                    }
                }
                Some((c, v))
            }
            _ => None,
        }
    }

    /// Checks one user rendering seen by `observer` (who is `observer_user`).
    fn check_user_view(
        &mut self,
        observer_user: &str,
        v: &Value,
        before: &BTreeMap<String, Truth>,
        what: &str,
    ) -> Result<(), TestCaseError> {
        self.observations += 1;
        let id = str_of(v, "id").unwrap();
        if id == observer_user {
            return Ok(());
        }
        let t = &self.truth[&id];
        prop_assert!(v.get("invisible").is_none(), "{what}: public view of {id} shows invisible: {v}");
        prop_assert_eq!(
            v["online"].as_bool(),
            Some(t.public_online()),
            "{}: {} seen with the wrong online flag (truth {:?}): {}",
            what,
            id,
            t,
            v
        );
        prop_assert_eq!(&str_of(v, "last_active"), &t.last_active, "{}: last_active of {}", what, id);
        if let Some(b) = before.get(&id) {
            if b.last_active != t.last_active {
                prop_assert!(
                    b.public_online() || t.public_online(),
                    "{}: last_active of {} moved from {:?} to {:?} while they were hidden/offline (before {:?}, after {:?})",
                    what,
                    id,
                    b.last_active,
                    t.last_active,
                    b,
                    t
                );
            }
        }
        Ok(())
    }

    /// Checks a `{"channels": [...]}` answer as `observer` sees it.
    fn check_channels(
        &mut self,
        observer: u64,
        answer: &Value,
        before: &BTreeMap<String, Truth>,
        what: &str,
    ) -> Result<(), TestCaseError> {
        let observer_user = self.live.get(&observer).cloned().unwrap_or_default();
        for state in answer["channels"].as_array().unwrap() {
            let cid = str_of(&state["channel"], "cid").unwrap();
            let watchers = state["watchers"].as_array().unwrap();
            let listed: BTreeSet<String> = watchers.iter().map(|w| str_of(w, "id").unwrap()).collect();
            let expected: BTreeSet<String> = self
                .watching
                .iter()
                .filter(|(_, chs)| chs.contains(&cid))
                .map(|(c, _)| self.live[c].clone())
                .filter(|u| !self.truth[u].invisible)
                .collect();
            prop_assert_eq!(&listed, &expected, "{}: watchers of {}", what, cid);
            prop_assert_eq!(
                state["watcher_count"].as_u64(),
                Some(expected.len() as u64),
                "{}: watcher_count of {}",
                what,
                cid
            );
            for w in watchers {
                self.check_user_view(&observer_user, w, before, what)?;
            }
            for m in state["members"].as_array().unwrap() {
                self.check_user_view(&observer_user, &m["user"], before, what)?;
            }
        }
        Ok(())
    }

    fn check(&mut self, step: usize, op: &Op, answers: Vec<(u64, Value)>) -> Result<(), TestCaseError> {
        let what = format!("step {step} {op:?}");
        let before = std::mem::take(&mut self.truth);
        self.truth = self.read_truth();
        // Connections closed by timeouts (or any other reason) leave the bookkeeping.
        let host: Vec<Arc<Event>> = std::mem::take(&mut *self.host.lock().unwrap());
        for ev in &host {
            if let EventKind::ConnectionClosed { connection, .. } = &ev.kind {
                self.live.remove(&connection.0);
                self.watching.remove(&connection.0);
            }
        }

        // Answers produced by the step itself.
        for (c, answer) in &answers {
            let observer_user = self.live.get(c).cloned().unwrap_or_default();
            if answer.get("users").is_some() {
                for v in answer["users"].as_array().unwrap() {
                    self.check_user_view(&observer_user, v, &before, &what)?;
                }
            } else {
                self.check_channels(*c, answer, &before, &what)?;
            }
        }
        self.check_deliveries(&host, &before, &what)?;
        // Every observer looks at everyone: get_user, filtered and sorted queries, channels.
        let live: Vec<(u64, String)> = self.live.iter().map(|(c, u)| (*c, u.clone())).collect();
        for (c, observer_user) in &live {
            self.check_observer(*c, observer_user, &before, &what)?;
        }
        // The host's channel view must agree on counts too.
        let channels = self.engine.query_channels(ConnectionId::HOST, r#"{"limit": 100}"#).unwrap();
        for state in channels["channels"].as_array().unwrap() {
            let n = state["watchers"].as_array().unwrap().len() as u64;
            prop_assert_eq!(state["watcher_count"].as_u64(), Some(n), "{}: host watcher_count", what);
        }
        Ok(())
    }

    /// Events: every delivery, through the delivery listener and through the queues.
    fn check_deliveries(
        &mut self,
        host: &[Arc<Event>],
        before: &BTreeMap<String, Truth>,
        what: &str,
    ) -> Result<(), TestCaseError> {
        let by_seq: BTreeMap<u64, Arc<Event>> = host.iter().map(|e| (e.seq, e.clone())).collect();
        let hidden_now: BTreeSet<String> = before
            .iter()
            .filter(|(u, b)| !b.invisible && self.truth[*u].invisible)
            .map(|(u, _)| u.clone())
            .collect();
        let mut delivered: Vec<Delivery> = std::mem::take(&mut *self.deliveries.lock().unwrap());
        for c in self.live.keys() {
            delivered.extend(self.engine.poll_events(ConnectionId(*c), usize::MAX).unwrap());
        }
        for d in &delivered {
            self.check_delivery(d, &by_seq, &hidden_now, before, what)?;
        }
        Ok(())
    }

    /// One delivery to another user's connection: public view, never invisible, never
    /// online while invisible, no watching.start for an invisible user (watching.stop only
    /// in the step that hid them), no moved last_active while hidden throughout.
    fn check_delivery(
        &mut self,
        d: &Delivery,
        by_seq: &BTreeMap<u64, Arc<Event>>,
        hidden_now: &BTreeSet<String>,
        before: &BTreeMap<String, Truth>,
        what: &str,
    ) -> Result<(), TestCaseError> {
        let subject = d.user_id().to_owned();
        let recipient_user = self.owners[&d.connection.0].clone();
        if recipient_user == subject {
            prop_assert_eq!(d.view, View::Own);
            return Ok(());
        }
        prop_assert_eq!(d.view, View::Public, "{}: delivery view", what);
        let json = d.to_value();
        let user_json = match json.get("user") {
            Some(u) => u.clone(),
            None => json["member"]["user"].clone(),
        };
        prop_assert!(
            user_json.get("invisible").is_none(),
            "{}: delivered event shows invisible: {}",
            what,
            json
        );
        let at_emission = by_seq.get(&d.event.seq).and_then(|e| e.user().cloned());
        let invisible_then = at_emission.as_ref().map(|u| u.invisible).unwrap_or(d.user().invisible);
        if invisible_then {
            prop_assert_eq!(
                user_json["online"].as_bool(),
                Some(false),
                "{}: invisible {} delivered online: {}",
                what,
                subject,
                json
            );
        }
        match d.event.type_name() {
            "user.watching.start" => {
                prop_assert!(!invisible_then, "{}: watching.start names invisible {}", what, subject)
            }
            "user.watching.stop" if invisible_then => prop_assert!(
                hidden_now.contains(&subject),
                "{}: watching.stop names {} who was already invisible",
                what,
                subject
            ),
            _ => {}
        }
        let b = before.get(&subject);
        let t = &self.truth[&subject];
        let hidden_throughout = b.is_none_or(|b| !b.public_online()) && !t.public_online();
        if hidden_throughout {
            if let Some(b) = b {
                prop_assert_eq!(
                    &str_of(&user_json, "last_active"),
                    &b.last_active,
                    "{}: event about hidden {} carries a moved last_active: {}",
                    what,
                    subject,
                    json
                );
            }
        }
        self.observations += 1;
        Ok(())
    }

    /// Connection `c` (of `observer_user`) looks at everyone: get_user, queries filtered
    /// and sorted on what it may not see, and channels.
    fn check_observer(
        &mut self,
        c: u64,
        observer_user: &str,
        before: &BTreeMap<String, Truth>,
        what: &str,
    ) -> Result<(), TestCaseError> {
        let viewer = ConnectionId(c);
        for u in self.truth.keys().cloned().collect::<Vec<_>>() {
            let v = self.engine.get_user(viewer, &u).unwrap();
            self.check_user_view(observer_user, &v, before, &format!("{what} get_user({c})"))?;
        }
        let online_for =
            |u: &str, t: &Truth| if u == observer_user { t.connected } else { t.public_online() };
        let expect_online: BTreeSet<String> =
            self.truth.iter().filter(|(u, t)| online_for(u, t)).map(|(u, _)| u.clone()).collect();
        let expect_offline: BTreeSet<String> =
            self.truth.keys().filter(|u| !expect_online.contains(*u)).cloned().collect();
        for (filters, expected) in [(&ONLINE_TRUE[..], &expect_online), (&ONLINE_FALSE[..], &expect_offline)]
        {
            for f in filters {
                let q = format!(r#"{{"filter_conditions": {f}, "limit": 100}}"#);
                let got = self.engine.query_users(viewer, &q).unwrap();
                let ids: BTreeSet<String> =
                    got["users"].as_array().unwrap().iter().map(|v| str_of(v, "id").unwrap()).collect();
                prop_assert_eq!(&ids, expected, "{}: query {} as {}", what, f, c);
                self.observations += 1;
            }
        }
        self.check_sorts(c, observer_user, before, what)?;
        let channels = self.engine.query_channels(viewer, r#"{"limit": 100}"#).unwrap();
        self.check_channels(c, &channels, before, &format!("{what} query_channels({c})"))
    }

    /// Sorting on `online` and `last_active` uses only what the viewer may see.
    fn check_sorts(
        &mut self,
        c: u64,
        observer_user: &str,
        before: &BTreeMap<String, Truth>,
        what: &str,
    ) -> Result<(), TestCaseError> {
        for sort in [
            r#"[{"field":"online","direction":-1}]"#,
            r#"{"online": 1}"#,
            r#"{"last_active": -1}"#,
            r#"{"last_active": 1}"#,
        ] {
            let q = format!(r#"{{"sort": {sort}, "limit": 100}}"#);
            let got = self.engine.query_users(ConnectionId(c), &q).unwrap();
            let rows = got["users"].as_array().unwrap().clone();
            for v in &rows {
                self.check_user_view(observer_user, v, before, &format!("{what} sort {sort}"))?;
            }
            let mut expected = rows.clone();
            let key = |v: &Value| -> (Option<String>, String) {
                let k = if sort.contains("online") {
                    Some(v["online"].as_bool().unwrap().to_string())
                } else {
                    str_of(v, "last_active")
                };
                (k, str_of(v, "id").unwrap())
            };
            let descending = sort.contains("-1");
            expected.sort_by(|a, b| {
                let (ka, ia) = key(a);
                let (kb, ib) = key(b);
                let ord = match (ka, kb) {
                    (None, None) => std::cmp::Ordering::Equal,
                    (None, Some(_)) => std::cmp::Ordering::Greater,
                    (Some(_), None) => std::cmp::Ordering::Less,
                    (Some(x), Some(y)) if descending => y.cmp(&x),
                    (Some(x), Some(y)) => x.cmp(&y),
                };
                ord.then(ia.cmp(&ib))
            });
            prop_assert_eq!(&rows, &expected, "{}: order of sort {} as {}", what, sort, c);
        }
        Ok(())
    }
}

fn config() -> impl Strategy<Value = String> {
    (
        prop::sample::select(vec![0u64, 100]),
        prop::sample::select(vec![0u64, 50]),
        prop::sample::select(vec![900_000u64, 40]),
    )
        .prop_map(|(timeout, grace, refresh)| {
            json!({
                "clock": "manual", "start_time_ms": T0,
                "connection_timeout_ms": timeout, "offline_grace_ms": grace,
                "last_active_refresh_ms": refresh,
            })
            .to_string()
        })
}

fn run_case(cfg: &str, ops: &[Op]) -> Result<u64, TestCaseError> {
    let mut h = Harness::new(cfg);
    for (i, op) in ops.iter().enumerate() {
        let answers = h.run(op);
        h.check(i, op, answers)?;
    }
    Ok(h.observations)
}

fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(1500), max_shrink_iters: 20_000, failure_persistence: None, ..ProptestConfig::default() })]

    /// No operation sequence leaks an invisible user's presence or activity to others.
    #[test]
    fn invisible_users_never_leak(cfg in config(), ops in prop::collection::vec(op(), 1..40)) {
        run_case(&cfg, &ops)?;
    }
}

/// Regression (found by `invisible_users_never_leak`): an offline user who connects with
/// `"invisible": true` used to get `last_active` stamped to the connect time, so every
/// other connection saw it move although the user never appeared online. Repro: upsert `{"id":"a"}`; observer `b` connects; time moves; connect
/// `{"id":"a","invisible":true}`; `get_user(b, "a")` now shows `last_active` = connect time.
#[test]
fn connect_with_invisible_true_does_not_move_last_active() {
    let e = Engine::from_json(Some(r#"{"clock":"manual","start_time_ms":1000}"#)).unwrap();
    e.upsert_user_json(r#"{"id":"a"}"#).unwrap();
    let b = e.connect_json(r#"{"id":"b"}"#).unwrap();
    let seen_before = e.get_user(b, "a").unwrap();
    e.set_time(5000).unwrap();
    e.connect_json(r#"{"id":"a","invisible":true}"#).unwrap();
    let seen_after = e.get_user(b, "a").unwrap();
    assert_eq!(seen_after["online"], json!(false));
    assert_eq!(
        seen_after.get("last_active"),
        seen_before.get("last_active"),
        "b saw a's last_active move while a connected invisibly: before {seen_before}, after {seen_after}"
    );
    // The same through a query sorted on last_active and through events.
    let got =
        e.query_users(b, r#"{"filter_conditions": {"id": "a", "last_active": {"$exists": true}}}"#).unwrap();
    assert_eq!(got["users"], json!([]), "a must not have gained a last_active");
}

/// Once visible again, last_active moves as normal; while invisible it stays put through
/// every route, including refresh ticks and reconnects.
#[test]
fn last_active_is_frozen_while_invisible() {
    let e = Engine::from_json(Some(r#"{"clock":"manual","start_time_ms":1000,"last_active_refresh_ms":10}"#))
        .unwrap();
    let b = e.connect_json(r#"{"id":"b"}"#).unwrap();
    let a1 = e.connect_json(r#"{"id":"a"}"#).unwrap();
    e.upsert_channel_json(r#"{"cid":"team:x","members":["a","b"]}"#).unwrap();
    e.watch_channel(b, "team:x", true).unwrap();
    e.set_time(2000).unwrap();
    e.set_invisible("a", true).unwrap();
    let frozen = e.get_user(b, "a").unwrap()["last_active"].clone();
    for t in [3000, 4000, 5000] {
        e.set_time(t).unwrap();
        e.tick().unwrap();
        let a2 = e.connect_json(r#"{"id":"a"}"#).unwrap();
        e.set_status("a", Some(&format!("s{t}"))).unwrap();
        e.disconnect(a2).unwrap();
        assert_eq!(e.get_user(b, "a").unwrap()["last_active"], frozen);
        assert_eq!(e.get_user(b, "a").unwrap()["online"], json!(false));
    }
    e.disconnect(a1).unwrap();
    assert_eq!(e.get_user(b, "a").unwrap()["last_active"], frozen);
    for d in e.poll_events(b, usize::MAX).unwrap() {
        let v = d.to_value();
        if d.user_id() == "a" {
            assert_eq!(v["user"]["online"], json!(false), "{v}");
            assert!(v["user"].get("invisible").is_none(), "{v}");
            if d.event.seq > 0 && d.event.type_name() == "user.presence.changed" {
                assert_eq!(v["user"]["last_active"], frozen, "{v}");
            }
        }
    }
}
