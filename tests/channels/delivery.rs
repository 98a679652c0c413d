//! Delivery: the delivery listener and per-connection queues agree, follow `seq`, overflow
//! into a slow-consumer close, and work with manual dispatch and re-entrant callbacks.
use crate::common::views::*;
use crate::common::*;
use presence::{ConnectionId, Delivery, ErrorKind};
use serde_json::{json, Value};
use std::sync::Arc;

#[test]
fn delivery_listener_and_queues_agree_and_follow_seq_order() {
    let e = manual_engine("");
    e.upsert_channel_json(r#"{"type":"team","id":"red","members":["alice","bob","carol"]}"#).unwrap();
    let d = Deliveries::attach(&e);
    let rec = Recorder::attach(&e);
    let bob = e.connect_json(r#"{"id":"bob"}"#).unwrap();
    let carol = e.connect_json(r#"{"id":"carol"}"#).unwrap();
    e.watch_channel(bob, "team:red", true).unwrap();
    e.query_users(carol, r#"{"filter_conditions":{"id":"alice"},"presence":true}"#).unwrap();
    let alice = e.connect_json(r#"{"id":"alice"}"#).unwrap();
    e.watch_channel(carol, "team:red", false).unwrap();
    e.watch_channel(alice, "team:red", false).unwrap();
    e.set_status("alice", Some("a")).unwrap();
    e.upsert_user_json(r#"{"id":"alice","name":"A"}"#).unwrap();
    e.add_members("team:red", &strings(&["dave"])).unwrap();
    e.disconnect(alice).unwrap();

    let events = rec.take_events();
    for w in events.windows(2) {
        assert_eq!(w[0].seq + 1, w[1].seq, "host listeners see every event, seq without gaps");
    }
    let raw = d.take_raw();
    // Each delivery is one of the host's events (same seq, same shared event).
    for x in &raw {
        let host = events.iter().find(|ev| ev.seq == x.event.seq).unwrap();
        assert_eq!(*host, *x.event);
    }
    for c in [bob, carol, alice] {
        let from_listener: Vec<(u64, String)> =
            raw.iter().filter(|x| x.connection == c).map(|x| (x.event.seq, describe_delivery(x))).collect();
        let queued = e.poll_events(c, usize::MAX);
        if c == alice {
            assert_eq!(kind(queued), ErrorKind::NotFound);
            continue;
        }
        let from_queue: Vec<(u64, String)> =
            queued.unwrap().iter().map(|x| (x.event.seq, describe_delivery(x))).collect();
        assert_eq!(from_listener, from_queue, "connection {c}");
    }
    let lines: Vec<String> = {
        let mut r = raw.clone();
        r.sort_by_key(|x| (x.event.seq, x.connection));
        r.iter().map(describe_delivery).collect()
    };
    assert_eq!(
        lines,
        [
            to(bob, "user.watching.start bob online"),
            to(bob, "user.presence.changed alice online"),
            to(carol, "user.presence.changed alice online"),
            to(bob, "user.watching.start carol online"),
            to(carol, "user.watching.start carol online"),
            to(bob, "user.watching.start alice online"),
            to(carol, "user.watching.start alice online"),
            to(alice, "user.watching.start alice online"),
            to(bob, "user.presence.changed alice online"),
            to(carol, "user.presence.changed alice online"),
            to(bob, "user.updated alice online"),
            to(carol, "user.updated alice online"),
            to(bob, "member.added dave offline"),
            to(carol, "member.added dave offline"),
            to(alice, "member.added dave offline"),
            to(bob, "user.watching.stop alice online"),
            to(carol, "user.watching.stop alice online"),
            to(bob, "user.presence.changed alice offline"),
            to(carol, "user.presence.changed alice offline"),
        ]
    );
}

#[test]
fn poll_events_drains_up_to_max_oldest_first() {
    let e = manual_engine("");
    e.upsert_user_json(r#"{"id":"alice"}"#).unwrap();
    let bob = e.connect_json(r#"{"id":"bob"}"#).unwrap();
    e.query_users(bob, r#"{"filter_conditions":{"id":"alice"},"presence":true}"#).unwrap();
    for i in 0..5 {
        e.set_status("alice", Some(&format!("s{i}"))).unwrap();
    }
    let status = |v: Vec<Delivery>| -> Vec<String> {
        v.iter().map(|d| d.to_value()["user"]["status"].as_str().unwrap().to_string()).collect()
    };
    assert_eq!(status(e.poll_events(bob, 2).unwrap()), ["s0", "s1"]);
    assert!(e.poll_events(bob, 0).unwrap().is_empty());
    assert_eq!(status(e.poll_events(bob, 10).unwrap()), ["s2", "s3", "s4"]);
    assert!(e.poll_events(bob, 10).unwrap().is_empty());
    assert_eq!(kind(e.poll_events(ConnectionId(99), 1)), ErrorKind::NotFound);
    assert_eq!(kind(e.poll_events(HOST, 1)), ErrorKind::NotFound);
}

#[test]
fn a_queue_that_overflows_closes_its_connection_as_a_slow_consumer() {
    let e = manual_engine(r#""connection_queue_capacity":4"#);
    e.upsert_channel_json(r#"{"type":"team","id":"red","members":["alice"]}"#).unwrap();
    let bob = e.connect_json(r#"{"id":"bob"}"#).unwrap();
    let carol = e.connect_json(r#"{"id":"carol"}"#).unwrap();
    e.watch_channel(carol, "team:red", false).unwrap();
    e.query_users(carol, r#"{"filter_conditions":{"id":"alice"},"presence":true}"#).unwrap();
    assert_eq!(poll(&e, carol), [to(carol, "user.watching.start carol online")]);
    let rec = Recorder::attach(&e);
    let d = Deliveries::attach(&e);

    e.watch_channel(bob, "team:red", true).unwrap();
    let alice = e.connect_json(r#"{"id":"alice"}"#).unwrap();
    e.set_status("alice", Some("1")).unwrap();
    assert_eq!(
        poll(&e, carol),
        [
            to(carol, "user.watching.start bob online"),
            to(carol, "user.presence.changed alice online"),
            to(carol, "user.presence.changed alice online"),
        ],
        "carol keeps up"
    );
    e.set_status("alice", Some("2")).unwrap();
    assert_eq!(poll(&e, carol), [to(carol, "user.presence.changed alice online")]);
    assert_eq!(e.counts().connections, 3, "bob's queue is full (4 entries) but has not overflowed");
    rec.take();
    d.take();

    e.set_status("alice", Some("3")).unwrap();
    let events = rec.take_events();
    assert_eq!(
        events.iter().map(describe).collect::<Vec<_>>(),
        [
            "user.presence.changed alice online",
            "user.watching.stop bob online",
            "user.presence.changed bob offline",
            "connection.closed bob offline",
        ]
    );
    let closed = events[3].to_value(presence::View::Own, None);
    assert_eq!(closed["reason"], "slow_consumer");
    assert_eq!(closed["closed_connection_id"], bob.0);
    assert_eq!(
        d.take(),
        [to(carol, "user.presence.changed alice online"), to(carol, "user.watching.stop bob online")],
        "the overflowing event is not handed to bob anywhere"
    );
    assert_eq!(
        poll(&e, carol),
        [to(carol, "user.presence.changed alice online"), to(carol, "user.watching.stop bob online")]
    );
    assert_eq!(kind(e.poll_events(bob, 10)), ErrorKind::NotFound);
    assert_eq!(e.counts().connections, 2);
    assert_eq!(host_state(&e, "team:red")["watcher_count"], 1);
    // Nothing more reaches bob: alice's next change goes to carol only.
    e.disconnect(alice).unwrap();
    assert_eq!(d.take(), [to(carol, "user.presence.changed alice offline")]);
}

#[test]
fn capacity_zero_disables_queues_but_delivery_listeners_still_get_everything() {
    let e = manual_engine(r#""connection_queue_capacity":0"#);
    e.upsert_channel_json(r#"{"type":"team","id":"red","members":["alice"]}"#).unwrap();
    let d = Deliveries::attach(&e);
    let bob = e.connect_json(r#"{"id":"bob"}"#).unwrap();
    e.watch_channel(bob, "team:red", true).unwrap();
    let alice = e.connect_json(r#"{"id":"alice"}"#).unwrap();
    for i in 0..50 {
        e.set_status("alice", Some(&i.to_string())).unwrap();
    }
    e.disconnect(alice).unwrap();
    let got = d.take();
    assert_eq!(got.len(), 53);
    assert_eq!(got[0], to(bob, "user.watching.start bob online"));
    assert_eq!(got[52], to(bob, "user.presence.changed alice offline"));
    assert!(e.poll_events(bob, 100).unwrap().is_empty());
    assert_eq!(e.counts().connections, 1, "no queue, no overflow: bob stays connected");
}

#[test]
fn connection_closed_reaches_host_listeners_only() {
    let e = manual_engine("");
    e.upsert_channel_json(r#"{"type":"team","id":"red","members":["alice"]}"#).unwrap();
    let bob = e.connect_json(r#"{"id":"bob"}"#).unwrap();
    let a1 = e.connect_json(r#"{"id":"alice"}"#).unwrap();
    let a2 = e.connect_json(r#"{"id":"alice"}"#).unwrap();
    e.watch_channel(bob, "team:red", true).unwrap();
    e.watch_channel(a2, "team:red", true).unwrap();
    e.query_users(a2, r#"{"filter_conditions":{"id":"alice"},"presence":true}"#).unwrap();
    poll(&e, bob);
    poll(&e, a2);
    let d = Deliveries::attach(&e);
    let rec = Recorder::attach_filtered(&e, presence::ListenerFilter::event_type("connection.closed"));
    e.disconnect(a1).unwrap();
    assert_eq!(rec.take(), ["connection.closed alice online"]);
    assert!(d.take().is_empty(), "neither the watcher, the subscriber nor the user's other connection");
    assert!(poll(&e, bob).is_empty());
    assert!(poll(&e, a2).is_empty());
}

#[test]
fn a_delivery_callback_may_call_the_engine_and_its_events_follow_in_seq_order() {
    let e = Arc::new(manual_engine(""));
    e.upsert_channel_json(r#"{"type":"team","id":"red","members":["alice"]}"#).unwrap();
    let bob = e.connect_json(r#"{"id":"bob"}"#).unwrap();
    e.watch_channel(bob, "team:red", true).unwrap();
    poll(&e, bob);
    let d = Deliveries::attach(&e);
    let weak = Arc::downgrade(&e);
    e.add_delivery_listener(move |x| {
        // Greet every new member, from inside the callback.
        if x.event.type_name() == "member.added" {
            let e = weak.upgrade().unwrap();
            e.set_status(x.user_id(), Some("welcome")).unwrap();
        }
    });
    e.add_members("team:red", &strings(&["carol", "dave"])).unwrap();
    let raw = d.take_raw();
    let seqs: Vec<u64> = raw.iter().map(|x| x.event.seq).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    assert_eq!(
        raw.iter().map(describe_delivery).collect::<Vec<_>>(),
        [
            to(bob, "member.added carol offline"),
            to(bob, "member.added dave offline"),
            to(bob, "user.presence.changed carol offline"),
            to(bob, "user.presence.changed dave offline"),
        ]
    );
    assert_eq!(raw[2].to_value()["user"]["status"], "welcome");
    let queued: Vec<u64> = e.poll_events(bob, 10).unwrap().iter().map(|x| x.event.seq).collect();
    assert_eq!(queued, seqs);
}

#[test]
fn with_manual_dispatch_queues_fill_at_once_and_pump_delivers_the_same_in_seq_order() {
    let e = manual_engine(r#""dispatch":"manual""#);
    e.upsert_channel_json(r#"{"type":"team","id":"red","members":["alice"]}"#).unwrap();
    let d = Deliveries::attach(&e);
    let rec = Recorder::attach(&e);
    let bob = e.connect_json(r#"{"id":"bob"}"#).unwrap();
    e.watch_channel(bob, "team:red", true).unwrap();
    let alice = e.connect_json(r#"{"id":"alice"}"#).unwrap();
    e.watch_channel(alice, "team:red", false).unwrap();
    e.remove_members("team:red", &strings(&["alice"])).unwrap();
    e.set_status("alice", Some("gone")).unwrap();
    let queued = e.poll_events(bob, 100).unwrap();
    assert!(d.take().is_empty() && rec.take().is_empty(), "nothing runs before pump");
    assert_eq!(
        queued.iter().map(describe_delivery).collect::<Vec<_>>(),
        [
            to(bob, "user.watching.start bob online"),
            to(bob, "user.presence.changed alice online"),
            to(bob, "user.watching.start alice online"),
            to(bob, "member.removed alice online"),
        ]
    );
    assert!(e.pump() > 0);
    let pumped = d.take_raw();
    let for_bob: Vec<u64> = pumped.iter().filter(|x| x.connection == bob).map(|x| x.event.seq).collect();
    assert_eq!(for_bob, queued.iter().map(|x| x.event.seq).collect::<Vec<_>>());
    assert_eq!(
        pumped.iter().filter(|x| x.connection == alice).map(describe_delivery).collect::<Vec<_>>(),
        [to(alice, "user.watching.start alice online"), to(alice, "member.removed alice online")]
    );
    assert_eq!(
        rec.take(),
        [
            "user.presence.changed bob online",
            "user.watching.start bob online",
            "user.presence.changed alice online",
            "user.watching.start alice online",
            "member.removed alice online",
            "user.presence.changed alice online",
        ]
    );
    assert_eq!(e.pump(), 0);
}

#[test]
fn watching_stop_and_member_removed_deliveries_as_json() {
    let e = manual_engine("");
    e.upsert_channel_json(r#"{"type":"game-1","id":"lobby_A","members":["alice","bob"]}"#).unwrap();
    let bob = e.connect_json(r#"{"id":"bob"}"#).unwrap();
    e.set_time(T0 + MINUTE).unwrap();
    let alice = e.connect_json(r#"{"id":"alice","status":"ready"}"#).unwrap();
    e.watch_channel(bob, "game-1:lobby_A", false).unwrap();
    e.watch_channel(alice, "game-1:lobby_A", false).unwrap();
    poll(&e, bob);
    e.set_time(T0 + 2 * MINUTE).unwrap();
    e.stop_watching(alice, "game-1:lobby_A").unwrap();
    e.remove_members("game-1:lobby_A", &strings(&["alice"])).unwrap();
    let got: Vec<Value> = e.poll_events(bob, 10).unwrap().iter().map(Delivery::to_value).collect();
    let m1 = at_min(1);
    let m2 = at_min(2);
    let alice_public = json!({"id":"alice","online":true,"status":"ready","last_active":m1,"created_at":T0S,"updated_at":m1});
    assert_eq!(
        got,
        [
            json!({"type":"user.watching.stop","created_at":m2,"seq":got[0]["seq"],"connection_id":bob.0,
                   "cid":"game-1:lobby_A","channel_type":"game-1","channel_id":"lobby_A",
                   "user":alice_public.clone(),"watcher_count":1}),
            json!({"type":"member.removed","created_at":m2,"seq":got[1]["seq"],"connection_id":bob.0,
                   "cid":"game-1:lobby_A","channel_type":"game-1","channel_id":"lobby_A",
                   "member":{"user_id":"alice","user":alice_public}}),
        ]
    );
    assert_eq!(got[0]["seq"].as_u64().unwrap() + 1, got[1]["seq"].as_u64().unwrap());
    assert_eq!(
        poll(&e, alice),
        [to(alice, "user.watching.start alice online")],
        "nothing after she stopped watching: not her own stop, not her removal"
    );
}
