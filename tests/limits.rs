//! Resource bounds and configured limits.
//!
//! - A connection that never drains its queue cannot hold more than
//!   `connection_queue_capacity` deliveries: the overflowing event closes it with reason
//!   `slow_consumer`, its queue is discarded, `poll_events` answers `NotFound`, and the host
//!   sees `connection.closed`. Nothing is dropped silently.
//! - Every configured limit (`max_connections_per_user`, `max_subscriptions_per_connection`
//!   through watch, query_users, query_channels, add_members and upsert_channel, and
//!   `query_limit_max`) answers `ErrorKind::Limit` and changes nothing: the full observable
//!   state (views, channels, watcher counts, subscriptions, emitted events) is identical
//!   before and after.
//! - Input rules hold for the typed Rust API as well as for JSON.
use presence::channel::ChannelPatch;
use presence::Counts;
use presence::{
    Answer, CloseReason, ConnectionId, Delivery, Engine, ErrorKind, Event, EventKind, ListenerFilter,
    UserPatch,
};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

struct Recorder {
    events: Arc<Mutex<Vec<Arc<Event>>>>,
    deliveries: Arc<Mutex<Vec<Delivery>>>,
}

fn engine(config: Value) -> (Engine, Recorder) {
    let mut cfg = json!({"clock": "manual", "start_time_ms": 1_000_000});
    for (k, v) in config.as_object().unwrap() {
        cfg[k] = v.clone();
    }
    let e = Engine::from_json(Some(&cfg.to_string())).unwrap();
    let events = Arc::new(Mutex::new(Vec::new()));
    let deliveries = Arc::new(Mutex::new(Vec::new()));
    let ev = events.clone();
    e.add_listener(ListenerFilter::all(), move |x| ev.lock().unwrap().push(Arc::new(x.clone()))).unwrap();
    let dv = deliveries.clone();
    e.add_delivery_listener(move |d| dv.lock().unwrap().push(d.clone()));
    (e, Recorder { events, deliveries })
}

impl Recorder {
    fn take_events(&self) -> Vec<Arc<Event>> {
        std::mem::take(&mut *self.events.lock().unwrap())
    }
    fn take_deliveries(&self) -> Vec<Delivery> {
        std::mem::take(&mut *self.deliveries.lock().unwrap())
    }
}

/// Everything observable without changing anything: every user in the host view and in
/// the view of every given connection, every channel's state, and the counts.
fn dump(e: &Engine, conns: &[ConnectionId]) -> Value {
    let mut viewers = vec![ConnectionId::HOST];
    viewers.extend_from_slice(conns);
    let views: Vec<Value> = viewers
        .iter()
        .map(|&v| {
            json!({
                "users": e.query_users(v, r#"{"sort": {"id": 1}, "limit": 100}"#).ok(),
                "channels": e.query_channels(v, r#"{"sort": {"cid": 1}, "limit": 100}"#).ok(),
            })
        })
        .collect();
    let Counts { users, connections, channels } = e.counts();
    json!({"views": views, "counts": [users, connections, channels]})
}

/// The users connection `c` is subscribed to, observed by changing every user's status
/// and seeing whose `user.presence.changed` reaches `c`. Changes state (statuses).
fn probe_subscriptions(e: &Engine, c: ConnectionId, users: &[&str], tag: &str) -> BTreeSet<String> {
    e.poll_events(c, usize::MAX).unwrap();
    for u in users {
        e.set_status(u, Some(&format!("{tag}-{u}"))).unwrap();
    }
    e.poll_events(c, usize::MAX)
        .unwrap()
        .into_iter()
        .filter(|d| d.event.type_name() == "user.presence.changed")
        .map(|d| d.user_id().to_owned())
        .collect()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// Asserts that `op` fails with `Limit` and a message, emits nothing and changes nothing.
fn assert_limit_changes_nothing<T: std::fmt::Debug>(
    e: &Engine,
    rec: &Recorder,
    conns: &[ConnectionId],
    what: &str,
    op: impl FnOnce() -> presence::Result<T>,
) {
    rec.take_events();
    rec.take_deliveries();
    let before = dump(e, conns);
    let err = op().expect_err(what);
    assert_eq!(err.kind(), ErrorKind::Limit, "{what}: {err}");
    assert!(!err.message().is_empty(), "{what}: the error needs a message");
    assert_eq!(dump(e, conns), before, "{what}: state changed");
    assert!(rec.take_events().is_empty(), "{what}: emitted events");
    assert!(rec.take_deliveries().is_empty(), "{what}: delivered events");
}

// ---------------------------------------------------------------------------------------
// Queues

#[test]
fn a_queue_that_is_never_drained_closes_its_connection_at_capacity() {
    const CAP: usize = 16;
    let (e, rec) = engine(json!({"connection_queue_capacity": CAP}));
    let lazy = e.connect_json(r#"{"id":"lazy"}"#).unwrap();
    e.connect_json(r#"{"id":"busy"}"#).unwrap();
    let other = e.connect_json(r#"{"id":"other"}"#).unwrap();
    e.upsert_channel_json(r#"{"cid":"team:x","members":["busy","lazy","other"]}"#).unwrap();
    e.start_watching(lazy, "team:x", true).unwrap();
    e.start_watching(other, "team:x", true).unwrap();
    e.poll_events(lazy, usize::MAX).unwrap();
    e.poll_events(other, usize::MAX).unwrap();
    rec.take_events();
    rec.take_deliveries();

    // Exactly at capacity the connection lives and its queue holds everything, in order.
    for i in 0..CAP {
        e.set_status("busy", Some(&format!("s{i}"))).unwrap();
        e.poll_events(other, usize::MAX).unwrap();
    }
    let delivered_to_lazy = |ds: &[Delivery]| ds.iter().filter(|d| d.connection == lazy).count();
    assert_eq!(delivered_to_lazy(&rec.take_deliveries()), CAP);
    let peek = e.poll_events(lazy, 1).unwrap();
    assert_eq!(peek.len(), 1);
    // One slot free again; fill it, then overflow.
    e.set_status("busy", Some("fill")).unwrap();
    assert_eq!(e.counts().connections, 3, "still open at exactly capacity");
    e.set_status("busy", Some("overflow")).unwrap();

    // Closed as a slow consumer; the queue is gone.
    let err = e.poll_events(lazy, usize::MAX).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert_eq!(e.get_user(ConnectionId::HOST, "lazy").unwrap().to_value()["online"], json!(false));
    assert_eq!(e.counts().connections, 2);
    let events = rec.take_events();
    let closed: Vec<_> = events
        .iter()
        .filter_map(|ev| match &ev.kind {
            EventKind::ConnectionClosed { connection, reason, user } => {
                Some((*connection, *reason, user.id.to_string()))
            }
            _ => None,
        })
        .collect();
    assert_eq!(closed, vec![(lazy, CloseReason::SlowConsumer, "lazy".to_string())]);
    let json = events
        .iter()
        .find(|ev| ev.type_name() == "connection.closed")
        .unwrap()
        .to_value(presence::View::Own, None);
    assert_eq!(json["reason"], json!("slow_consumer"));
    // Nothing dropped silently: the overflowing event reached no callback as a delivery to
    // the closed connection, and the others got everything.
    let ds = rec.take_deliveries();
    assert_eq!(delivered_to_lazy(&ds), 1, "only the delivery that filled the queue");
    let to_other: Vec<u64> = ds.iter().filter(|d| d.connection == other).map(|d| d.event.seq).collect();
    assert!(to_other.len() >= 2, "other saw fill, overflow and lazy going offline");
    // The engine keeps working for everyone else.
    e.set_status("busy", Some("after")).unwrap();
    assert!(!e.poll_events(other, usize::MAX).unwrap().is_empty());
    assert_eq!(e.disconnect(lazy).unwrap_err().kind(), ErrorKind::NotFound);
}

#[test]
fn an_undrained_connection_never_holds_more_than_capacity_under_a_flood() {
    // A flood of 200 000 events: every never-draining connection is cut off at capacity,
    // a draining one is never cut off, and no queue ever holds more than capacity.
    const CAP: usize = 64;
    let (e, _rec) = engine(json!({"connection_queue_capacity": CAP}));
    let mut sleepers = Vec::new();
    for i in 0..20 {
        let c = e.connect_json(&format!(r#"{{"id":"sleeper{i}"}}"#)).unwrap();
        sleepers.push(c);
    }
    let reader = e.connect_json(r#"{"id":"reader"}"#).unwrap();
    e.upsert_channel_json(r#"{"cid":"team:flood","members":["talker"]}"#).unwrap();
    for &c in sleepers.iter().chain([&reader]) {
        e.start_watching(c, "team:flood", true).unwrap();
    }
    e.upsert_user_json(r#"{"id":"talker"}"#).unwrap();
    let mut max_seen = 0;
    for i in 0..200_000u32 {
        e.set_status("talker", Some(if i % 2 == 0 { "a" } else { "b" })).unwrap();
        if i % 10 == 0 {
            let got = e.poll_events(reader, usize::MAX).unwrap();
            max_seen = max_seen.max(got.len());
        }
    }
    assert!(max_seen <= CAP, "reader's queue held {max_seen} > {CAP}");
    for &c in &sleepers {
        assert_eq!(e.poll_events(c, 1).unwrap_err().kind(), ErrorKind::NotFound);
    }
    assert_eq!(e.counts().connections, 1, "only the reader is left");
    assert!(e.poll_events(reader, usize::MAX).is_ok());
}

#[test]
fn draining_into_a_reused_queue_keeps_order_and_the_capacity() {
    // `poll_events_into` trades a wholly drained queue for the caller's: the connection
    // then queues into the caller's old room, which may be far larger than the capacity.
    const CAP: usize = 4;
    let (e, _rec) = engine(json!({"connection_queue_capacity": CAP}));
    let w = e.connect_json(r#"{"id":"w"}"#).unwrap();
    e.upsert_user_json(r#"{"id":"star"}"#).unwrap();
    e.query_users(w, r#"{"filter_conditions":{"id":"star"},"presence":true}"#).unwrap();
    let statuses = |out: &std::collections::VecDeque<Delivery>| -> Vec<String> {
        out.iter().map(|d| d.user().status.as_deref().unwrap_or("-").to_owned()).collect()
    };
    let mut out = std::collections::VecDeque::with_capacity(1000);
    for s in ["a", "b", "c"] {
        e.set_status("star", Some(s)).unwrap();
    }
    assert_eq!(e.poll_events_into(w, 100, &mut out).unwrap(), 3);
    assert_eq!(statuses(&out), ["a", "b", "c"]);
    // A partial drain appends the oldest after what `out` holds; the rest stay queued.
    for s in ["d", "e", "f"] {
        e.set_status("star", Some(s)).unwrap();
    }
    assert_eq!(e.poll_events_into(w, 2, &mut out).unwrap(), 2);
    assert_eq!(statuses(&out), ["a", "b", "c", "d", "e"]);
    out.clear();
    assert_eq!(e.poll_events_into(w, 100, &mut out).unwrap(), 1);
    assert_eq!(statuses(&out), ["f"]);
    // The connection now queues into a traded room; the capacity still closes it at once
    // when it overflows.
    out.clear();
    assert_eq!(e.poll_events_into(w, 100, &mut out).unwrap(), 0);
    for i in 0..CAP {
        e.set_status("star", Some(&format!("s{i}"))).unwrap();
    }
    assert_eq!(e.counts().connections, 1, "open at exactly capacity");
    e.set_status("star", Some("overflow")).unwrap();
    assert_eq!(e.poll_events_into(w, 100, &mut out).unwrap_err().kind(), ErrorKind::NotFound);
    assert_eq!(e.counts().connections, 0);
}

#[test]
fn draining_several_connections_at_once_keeps_each_ones_order_and_checks_every_id_first() {
    let (e, _rec) = engine(json!({}));
    e.upsert_user_json(r#"{"id":"star"}"#).unwrap();
    let watchers: Vec<ConnectionId> = ["w1", "w2", "w3"]
        .iter()
        .map(|id| {
            let w = e.connect_user(id).unwrap();
            e.query_users(w, r#"{"filter_conditions":{"id":"star"},"presence":true}"#).unwrap();
            w
        })
        .collect();
    for s in ["a", "b", "c"] {
        e.set_status("star", Some(s)).unwrap();
    }
    let seen = |out: &std::collections::VecDeque<Delivery>| -> Vec<(u64, String)> {
        out.iter().map(|d| (d.connection.0, d.user().status.as_deref().unwrap_or("-").to_owned())).collect()
    };
    let [w1, w2, w3] = [watchers[0], watchers[1], watchers[2]];
    let mut out = std::collections::VecDeque::new();
    // List order, each connection's oldest first, at most `max_each` of each; the rest stay.
    assert_eq!(e.poll_events_many_into(&[w3, w1], 2, &mut out).unwrap(), 4);
    let s = |c: ConnectionId, v: &str| (c.0, v.to_owned());
    assert_eq!(seen(&out), [s(w3, "a"), s(w3, "b"), s(w1, "a"), s(w1, "b")]);
    // An unknown id anywhere in the list fails the call before anything moves.
    out.clear();
    for bad in [ConnectionId(0), ConnectionId(999)] {
        let err = e.poll_events_many_into(&[w2, bad, w1], 100, &mut out).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotFound);
        assert_eq!(err.message(), format!("unknown connection {bad}"));
        assert!(out.is_empty());
    }
    // A connection listed twice is drained twice; an empty list moves nothing.
    assert_eq!(e.poll_events_many_into(&[w2, w2], 2, &mut out).unwrap(), 3);
    assert_eq!(seen(&out), [s(w2, "a"), s(w2, "b"), s(w2, "c")]);
    assert_eq!(e.poll_events_many_into(&[], 100, &mut out).unwrap(), 0);
    out.clear();
    assert_eq!(e.poll_events_many_into(&watchers, 100, &mut out).unwrap(), 2);
    assert_eq!(seen(&out), [s(w1, "c"), s(w3, "c")]);
    // A closed connection is unknown too.
    e.disconnect(w3).unwrap();
    assert_eq!(e.poll_events_many_into(&watchers, 100, &mut out).unwrap_err().kind(), ErrorKind::NotFound);
}

#[test]
fn capacity_zero_disables_queues_without_closing_anyone() {
    let (e, rec) = engine(json!({"connection_queue_capacity": 0}));
    let a = e.connect_json(r#"{"id":"a"}"#).unwrap();
    e.upsert_channel_json(r#"{"cid":"team:x","members":["b"]}"#).unwrap();
    e.start_watching(a, "team:x", true).unwrap();
    rec.take_deliveries();
    for i in 0..5000 {
        e.set_status("b", Some(&i.to_string())).unwrap();
    }
    assert!(e.poll_events(a, usize::MAX).unwrap().is_empty());
    assert_eq!(e.counts().connections, 1);
    // Delivery callbacks still see everything.
    let ds = rec.take_deliveries();
    assert_eq!(ds.iter().filter(|d| d.connection == a).count(), 5000);
}

// ---------------------------------------------------------------------------------------
// Configured limits

#[test]
fn max_connections_per_user() {
    let (e, rec) = engine(json!({"max_connections_per_user": 2}));
    let watcher = e.connect_json(r#"{"id":"w"}"#).unwrap();
    e.upsert_channel_json(r#"{"cid":"team:x","members":["a"]}"#).unwrap();
    e.start_watching(watcher, "team:x", true).unwrap();
    let a1 = e.connect_json(r#"{"id":"a","status":"one"}"#).unwrap();
    let a2 = e.connect_json(r#"{"id":"a"}"#).unwrap();
    e.poll_events(watcher, usize::MAX).unwrap();
    let conns = [watcher, a1, a2];
    // The rejected connect must not apply its patch either.
    assert_limit_changes_nothing(&e, &rec, &conns, "third connection", || {
        e.connect_json(r#"{"id":"a","status":"two","invisible":true,"name":"x"}"#)
    });
    assert_limit_changes_nothing(&e, &rec, &conns, "third connection (typed)", || {
        e.connect(&UserPatch::id("a"))
    });
    // Other users are unaffected, and a slot frees when a connection closes.
    e.connect_json(r#"{"id":"b"}"#).unwrap();
    e.disconnect(a1).unwrap();
    let a3 = e.connect_json(r#"{"id":"a"}"#).unwrap();
    assert_ne!(a3, a1, "connection ids are never reused");
    assert!(e.poll_events(watcher, usize::MAX).is_ok());
}

#[test]
fn max_subscriptions_per_connection_via_watch_channel() {
    let (e, rec) = engine(json!({"max_subscriptions_per_connection": 3}));
    let c = e.connect_json(r#"{"id":"viewer"}"#).unwrap();
    let other = e.connect_json(r#"{"id":"other"}"#).unwrap();
    e.upsert_channel_json(r#"{"cid":"team:big","members":["m1","m2","m3","m4"]}"#).unwrap();
    e.upsert_channel_json(r#"{"cid":"team:small","members":["m1","m2"]}"#).unwrap();
    e.start_watching(other, "team:big", false).unwrap();
    e.poll_events(other, usize::MAX).unwrap();
    let conns = [c, other];
    assert_limit_changes_nothing(&e, &rec, &conns, "watch 4 members with presence", || {
        e.watch_channel(c, "team:big", true)
    });
    // Not watching at all: no watching.start reached `other`, and no subscription exists.
    assert!(e.poll_events(other, usize::MAX).unwrap().is_empty());
    assert!(probe_subscriptions(&e, c, &["m1", "m2", "m3", "m4"], "p1").is_empty());
    // Within the limit it works; upgrading a presence-less watch is checked too.
    e.start_watching(c, "team:small", true).unwrap();
    e.start_watching(c, "team:big", false).unwrap();
    assert_limit_changes_nothing(&e, &rec, &conns, "upgrade a watch to presence", || {
        e.start_watching(c, "team:big", true)
    });
    assert_eq!(probe_subscriptions(&e, c, &["m1", "m2", "m3", "m4"], "p2"), set(&["m1", "m2"]));
    // Exactly at the limit is fine.
    e.upsert_channel_json(r#"{"cid":"team:three","members":["m1","m2","m3"]}"#).unwrap();
    e.start_watching(c, "team:three", true).unwrap();
    assert_eq!(probe_subscriptions(&e, c, &["m1", "m2", "m3", "m4"], "p3"), set(&["m1", "m2", "m3"]));
}

#[test]
fn max_subscriptions_per_connection_via_query_users() {
    let (e, rec) = engine(json!({"max_subscriptions_per_connection": 3}));
    let c = e.connect_json(r#"{"id":"viewer"}"#).unwrap();
    for u in ["m1", "m2", "m3", "m4"] {
        e.upsert_user_json(&json!({"id": u}).to_string()).unwrap();
    }
    let q = r#"{"filter_conditions": {"id": {"$in": ["m1","m2","m3","m4"]}}, "presence": true}"#;
    assert_limit_changes_nothing(&e, &rec, &[c], "query_users presence over the limit", || {
        e.query_users(c, q)
    });
    assert!(probe_subscriptions(&e, c, &["m1", "m2", "m3", "m4"], "p1").is_empty());
    // A page that fits subscribes; paging further past the limit fails again.
    e.query_users(c, r#"{"filter_conditions": {"id": {"$in": ["m1","m2"]}}, "presence": true}"#).unwrap();
    assert_limit_changes_nothing(&e, &rec, &[c], "second page over the limit", || {
        e.query_users(c, r#"{"filter_conditions": {"id": {"$in": ["m3","m4"]}}, "presence": true}"#)
    });
    // Users already subscribed do not count twice.
    e.query_users(c, r#"{"filter_conditions": {"id": {"$in": ["m1","m2","m3"]}}, "presence": true}"#)
        .unwrap();
    assert_eq!(probe_subscriptions(&e, c, &["m1", "m2", "m3", "m4"], "p2"), set(&["m1", "m2", "m3"]));
}

#[test]
fn max_subscriptions_per_connection_via_query_channels() {
    let (e, rec) = engine(json!({"max_subscriptions_per_connection": 3}));
    let c = e.connect_json(r#"{"id":"viewer"}"#).unwrap();
    let other = e.connect_json(r#"{"id":"other"}"#).unwrap();
    e.upsert_channel_json(r#"{"cid":"team:a","members":["m1","m2"]}"#).unwrap();
    e.upsert_channel_json(r#"{"cid":"team:b","members":["m3","m4"]}"#).unwrap();
    e.start_watching(other, "team:a", false).unwrap();
    e.start_watching(other, "team:b", false).unwrap();
    e.poll_events(other, usize::MAX).unwrap();
    // Together the two channels have 4 members: neither channel may end up watched.
    for watch in [false, true] {
        let q = json!({"presence": true, "watch": watch}).to_string();
        assert_limit_changes_nothing(&e, &rec, &[c, other], "query_channels presence", || {
            e.query_channels(c, &q)
        });
    }
    assert!(e.poll_events(other, usize::MAX).unwrap().is_empty(), "no watching.start");
    assert!(probe_subscriptions(&e, c, &["m1", "m2", "m3", "m4"], "p1").is_empty());
    // One page that fits works.
    e.query_channels(c, r#"{"filter_conditions": {"cid": "team:a"}, "presence": true}"#).unwrap();
    assert_eq!(probe_subscriptions(&e, c, &["m1", "m2", "m3", "m4"], "p2"), set(&["m1", "m2"]));
}

#[test]
fn max_subscriptions_per_connection_via_add_members_and_upsert_channel() {
    let (e, rec) = engine(json!({"max_subscriptions_per_connection": 3}));
    let c = e.connect_json(r#"{"id":"viewer"}"#).unwrap();
    let plain = e.connect_json(r#"{"id":"plain"}"#).unwrap();
    e.upsert_channel_json(r#"{"cid":"team:a","members":["m1","m2"]}"#).unwrap();
    e.start_watching(c, "team:a", true).unwrap();
    e.start_watching(plain, "team:a", false).unwrap();
    e.poll_events(c, usize::MAX).unwrap();
    e.poll_events(plain, usize::MAX).unwrap();
    let conns = [c, plain];
    // Unknown users would be created: they must not be.
    assert_limit_changes_nothing(&e, &rec, &conns, "add_members over the limit", || {
        e.add_members_json("team:a", r#"["m3","new1"]"#)
    });
    assert_eq!(e.get_user(ConnectionId::HOST, "new1").unwrap_err().kind(), ErrorKind::NotFound);
    assert_limit_changes_nothing(&e, &rec, &conns, "add_members (typed) over the limit", || {
        e.add_members("team:a", &["m3".to_string(), "m4".to_string()])
    });
    // An upsert that adds too many members applies none of its other changes either.
    assert_limit_changes_nothing(&e, &rec, &conns, "upsert_channel over the limit", || {
        e.upsert_channel_json(r#"{"cid":"team:a","members":["m3","m4"],"color":"red","last_message_at":"2020-01-01T00:00:00Z"}"#)
    });
    // Exactly at the limit is fine, and duplicates count once.
    e.add_members_json("team:a", r#"["m3","m3","m1"]"#).unwrap();
    assert_eq!(probe_subscriptions(&e, c, &["m1", "m2", "m3"], "p"), set(&["m1", "m2", "m3"]));
}

#[test]
fn query_limit_max() {
    let (e, rec) = engine(json!({"query_limit_max": 5}));
    let c = e.connect_json(r#"{"id":"viewer"}"#).unwrap();
    for i in 0..8 {
        e.upsert_user_json(&json!({"id": format!("u{i}")}).to_string()).unwrap();
    }
    e.upsert_channel_json(r#"{"cid":"team:a","members":["u1"]}"#).unwrap();
    for q in [r#"{"limit": 6}"#, r#"{"limit": 6, "presence": true}"#, r#"{"limit": 1000000}"#] {
        assert_limit_changes_nothing(&e, &rec, &[c], q, || e.query_users(c, q));
    }
    for q in [r#"{"limit": 6}"#, r#"{"limit": 6, "presence": true, "watch": true}"#] {
        assert_limit_changes_nothing(&e, &rec, &[c], q, || e.query_channels(c, q));
    }
    assert!(probe_subscriptions(&e, c, &["u1", "u2"], "p").is_empty());
    // Without a limit the default is capped at the maximum instead of failing.
    let got = e.query_users(c, "{}").unwrap().to_value();
    assert_eq!(got["users"].as_array().unwrap().len(), 5);
    assert_eq!(e.query_users(c, r#"{"limit": 5}"#).unwrap().to_value()["users"].as_array().unwrap().len(), 5);
}

// ---------------------------------------------------------------------------------------
// Input rules through the typed API

#[test]
fn typed_patches_follow_the_json_rules() {
    let (e, rec) = engine(json!({}));
    let c = e.connect_json(r#"{"id":"ok"}"#).unwrap();
    e.upsert_channel_json(r#"{"cid":"team:a","members":["ok"]}"#).unwrap();
    let before = dump(&e, &[c]);
    rec.take_events();
    let bad_ids = ["", "has space", "tab\t", "ctl\u{1}", &"x".repeat(256)];
    for id in bad_ids {
        let what = format!("id {id:?}");
        assert_eq!(e.upsert_user(&UserPatch::id(id)).unwrap_err().kind(), ErrorKind::Invalid, "{what}");
        assert_eq!(e.connect(&UserPatch::id(id)).unwrap_err().kind(), ErrorKind::Invalid, "{what}");
        let patch =
            ChannelPatch { cid: "team:a".into(), members: vec![id.to_string()], ..Default::default() };
        assert_eq!(e.upsert_channel(&patch).unwrap_err().kind(), ErrorKind::Invalid, "{what}");
        assert_eq!(
            e.add_members("team:a", &[id.to_string()]).unwrap_err().kind(),
            ErrorKind::Invalid,
            "{what}"
        );
    }
    let long_status = UserPatch { status: Some(Some("s".repeat(1025))), ..UserPatch::id("ok") };
    assert_eq!(e.upsert_user(&long_status).unwrap_err().kind(), ErrorKind::Invalid);
    assert_eq!(e.set_status("ok", Some(&"s".repeat(1025))).unwrap_err().kind(), ErrorKind::Invalid);
    let big_custom =
        UserPatch { custom: vec![("blob".into(), Some(json!("x".repeat(5 * 1024))))], ..UserPatch::id("ok") };
    assert_eq!(e.upsert_user(&big_custom).unwrap_err().kind(), ErrorKind::Invalid);
    assert_eq!(dump(&e, &[c]), before, "rejected typed input changed something");
    assert!(rec.take_events().is_empty());
    // Exactly at the limits is accepted.
    e.upsert_user(&UserPatch { status: Some(Some("s".repeat(1024))), ..UserPatch::id("x".repeat(255)) })
        .unwrap();
}

/// Custom fields cannot shadow managed fields, whatever the entry point. Through JSON the
/// managed names are rejected (or parsed as the real field); a typed `UserPatch` naming
/// `online`, `invisible`, `id`, ... as a custom field must be rejected too, or it renders
/// over the real field: `"online": true` for an invisible user, `"invisible"` in a public
/// view, another user's `id`.
#[test]
fn typed_user_custom_fields_cannot_shadow_managed_fields() {
    let (e, _rec) = engine(json!({}));
    let observer = e.connect_json(r#"{"id":"observer"}"#).unwrap();
    e.upsert_user_json(r#"{"id":"ghost","invisible":true}"#).unwrap();
    let mut problems = Vec::new();
    for key in ["online", "last_active", "created_at", "updated_at", "invisible", "id", "status"] {
        let value = match key {
            "online" | "invisible" => json!(true),
            _ => json!("2020-01-01T00:00:00.000Z"),
        };
        let before = e.get_user(observer, "ghost").unwrap().to_value();
        let typed = UserPatch { custom: vec![(key.to_string(), Some(value))], ..UserPatch::id("ghost") };
        let result = e.upsert_user(&typed);
        let seen = e.get_user(observer, "ghost").unwrap().to_value();
        if result.as_ref().map_err(|e| e.kind()) != Err(ErrorKind::Invalid) {
            problems.push(format!("custom {key:?}: {result:?}; observer saw {before} then {seen}"));
        }
    }
    assert!(problems.is_empty(), "typed custom fields accepted:\n{}", problems.join("\n"));
}

/// The same for channels: a typed `ChannelPatch` custom field named like a managed channel
/// field must be rejected rather than render over `member_count`, `cid`, ...
#[test]
fn typed_channel_custom_fields_cannot_shadow_managed_fields() {
    let (e, _rec) = engine(json!({}));
    e.upsert_channel_json(r#"{"cid":"team:a","members":["m"]}"#).unwrap();
    let mut problems = Vec::new();
    for key in ["member_count", "created_at", "updated_at", "cid", "type", "id", "members", "last_message_at"]
    {
        let patch = ChannelPatch {
            cid: "team:a".into(),
            custom: vec![(key.to_string(), Some(json!(99)))],
            ..Default::default()
        };
        let result = e.upsert_channel(&patch);
        if result.as_ref().map_err(|e| e.kind()) != Err(ErrorKind::Invalid) {
            let state = e
                .query_channels(ConnectionId::HOST, r#"{"filter_conditions":{"cid":"team:a"}}"#)
                .unwrap()
                .to_value();
            problems
                .push(format!("custom {key:?}: {result:?}; channel now {}", state["channels"][0]["channel"]));
        }
    }
    assert!(problems.is_empty(), "typed custom fields accepted:\n{}", problems.join("\n"));
}

// ---------------------------------------------------------------------------------------
// Time at the edge of the range

/// Found by fuzzing (fuzz/fuzz_targets/config_json.rs): with a connected visible user,
/// `set_time(i64::MAX)` then `tick()` never returned — the last_active refresh timer was
/// re-armed at `now.saturating_add(refresh)` = `i64::MAX`, due again at once, so `tick`
/// looped forever holding the engine lock. The end of time is now `MAX_MILLIS`; the test
/// runs there, on a thread so a hang fails it.
#[test]
fn tick_at_the_end_of_time_returns() {
    for config in
        [r#"{"clock":"manual"}"#, r#"{"clock":"manual","connection_timeout_ms":10,"offline_grace_ms":10}"#]
    {
        let (tx, rx) = std::sync::mpsc::channel();
        let owned = config.to_string();
        std::thread::spawn(move || {
            let e = Engine::from_json(Some(&owned)).unwrap();
            let c = e.connect_json(r#"{"id":"a"}"#).unwrap();
            e.connect_json(r#"{"id":"b"}"#).unwrap();
            e.set_time(presence::time::MAX_MILLIS - 5).unwrap();
            e.tick().unwrap();
            e.set_time(presence::time::MAX_MILLIS).unwrap();
            e.tick().unwrap();
            let _ = e.disconnect(c);
            e.tick().unwrap();
            let v = e.get_user(ConnectionId::HOST, "a").unwrap().to_value();
            tx.send(v).unwrap();
        });
        let got = rx.recv_timeout(std::time::Duration::from_secs(10));
        assert!(got.is_ok(), "{config}: tick at the end of time did not return within 10 s");
    }
}

/// A receiver's channel is allocated whole: a bound above `MAX_RECEIVER_BOUND` answers
/// `LIMIT` naming the setting (it aborted the process on the failed allocation), and
/// the largest allowed bound works.
#[test]
fn receivers_refuse_a_bound_they_cannot_allocate() {
    use presence::MAX_RECEIVER_BOUND;
    let huge = u32::MAX;
    let e = Engine::from_json(Some(
        &json!({"connection_queue_capacity": huge, "pending_dispatch_capacity": huge}).to_string(),
    ))
    .unwrap();
    let c = e.connect_user("alice").unwrap();
    let err = e.subscribe(c).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Limit);
    assert_eq!(
        err.message(),
        format!("connection_queue_capacity is {huge}: a receiver allocates room for that many events at once, so it takes at most {MAX_RECEIVER_BOUND}")
    );
    let err = e.events(ListenerFilter::all()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Limit);
    assert_eq!(
        err.message(),
        format!("pending_dispatch_capacity is {huge}: a receiver allocates room for that many events at once, so it takes at most {MAX_RECEIVER_BOUND}")
    );
    e.disconnect(c).unwrap();

    let max = MAX_RECEIVER_BOUND;
    let e = Engine::from_json(Some(
        &json!({"connection_queue_capacity": max, "pending_dispatch_capacity": max}).to_string(),
    ))
    .unwrap();
    let c = e.connect_user("alice").unwrap();
    let inbox = e.subscribe(c).unwrap();
    let events = e.events(ListenerFilter::all()).unwrap();
    e.set_status("alice", Some("here")).unwrap();
    assert_eq!(events.try_recv().unwrap().type_name(), "user.presence.changed");
    assert!(inbox.try_recv().is_err(), "alice subscribes to nobody");
}
