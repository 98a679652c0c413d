//! Users, connections and events through the Rust API: one test per presence rule and per
//! event, on a manual clock, asserting the exact events and views.
mod common;

use common::*;
use presence::Counts;
use presence::{Answer, ConnectionId, Engine, ErrorKind, ListenerFilter, UserPatch};
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};

fn public_view(e: &Engine, viewer: ConnectionId, id: &str) -> Value {
    e.get_user(viewer, id).unwrap().to_value()
}

#[test]
fn several_connections_merge_into_one_online_flag() {
    let e = manual_engine("");
    let rec = Recorder::attach(&e);
    let phone = e.connect_json(r#"{"id":"alice"}"#).unwrap();
    assert_eq!(rec.take(), ["user.presence.changed alice online"]);
    let pc = e.connect_json(r#"{"id":"alice"}"#).unwrap();
    assert_ne!(phone, pc);
    assert!(rec.take().is_empty(), "a second connection emits nothing");
    e.disconnect(phone).unwrap();
    assert_eq!(rec.take(), ["connection.closed alice online"], "closing one of two changes nothing else");
    e.disconnect(pc).unwrap();
    assert_eq!(rec.take(), ["user.presence.changed alice offline", "connection.closed alice offline"]);
}

#[test]
fn connection_ids_are_nonzero_and_never_reused() {
    let e = manual_engine("");
    let mut seen = std::collections::HashSet::new();
    for _ in 0..20 {
        let c = e.connect_json(r#"{"id":"a"}"#).unwrap();
        assert_ne!(c.0, 0);
        assert!(seen.insert(c));
        e.disconnect(c).unwrap();
    }
}

#[test]
fn connection_closed_carries_reason_and_ids() {
    let e = manual_engine("");
    let rec = Recorder::attach(&e);
    let c = e.connect_json(r#"{"id":"alice"}"#).unwrap();
    e.disconnect(c).unwrap();
    let closed = rec.take_events().pop().unwrap();
    let v = closed.to_value(presence::View::Own, None);
    assert_eq!(v["type"], "connection.closed");
    assert_eq!(v["closed_connection_id"], c.0);
    assert_eq!(v["user_id"], "alice");
    assert_eq!(v["reason"], "disconnect");
    assert_eq!(v["created_at"], "2019-01-07T13:17:42.375Z");
}

#[test]
fn invisible_user_is_offline_to_others_and_sticky_across_reconnects() {
    let e = manual_engine("");
    let rec = Recorder::attach(&e);
    let bob = e.connect_json(r#"{"id":"bob"}"#).unwrap();
    let a1 = e.connect_json(r#"{"id":"alice"}"#).unwrap();
    rec.take();
    e.set_invisible("alice", true).unwrap();
    let events = rec.take_events();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].type_name(), "user.presence.changed");
    // The host sees the own view: connected, and invisible.
    let own = events[0].to_value(presence::View::Own, None);
    assert_eq!((own["user"]["online"].clone(), own["user"]["invisible"].clone()), (json!(true), json!(true)));
    let public = events[0].to_value(presence::View::Public, None);
    assert_eq!(public["user"]["online"], false);
    assert!(public["user"].get("invisible").is_none(), "the public view never shows invisible");

    let seen_by_bob = public_view(&e, bob, "alice");
    assert_eq!(seen_by_bob["online"], false);
    assert!(seen_by_bob.get("invisible").is_none());
    let own_view = public_view(&e, a1, "alice");
    assert_eq!((own_view["online"].clone(), own_view["invisible"].clone()), (json!(true), json!(true)));

    // Reconnecting with only the id keeps invisible: still offline to others. The host
    // (own view) sees the invisible session end and start again.
    e.disconnect(a1).unwrap();
    assert_eq!(rec.take(), ["user.presence.changed alice offline", "connection.closed alice offline"]);
    let a2 = e.connect_json(r#"{"id":"alice"}"#).unwrap();
    assert_eq!(rec.take(), ["user.presence.changed alice online"]);
    assert_eq!(public_view(&e, bob, "alice")["online"], false);
    assert_eq!(public_view(&e, HOST, "alice")["invisible"], true);

    e.set_invisible("alice", false).unwrap();
    assert_eq!(rec.take(), ["user.presence.changed alice online"]);
    assert_eq!(public_view(&e, bob, "alice")["online"], true);
    e.disconnect(a2).unwrap();
}

#[test]
fn invisible_in_the_connect_payload_means_no_public_online_event() {
    let e = manual_engine("");
    e.upsert_channel_json(r#"{"type":"room","id":"r","members":["ghost"]}"#).unwrap();
    let other = e.connect_json(r#"{"id":"other"}"#).unwrap();
    e.start_watching(other, "room:r", true).unwrap();
    e.poll_events(other, 100).unwrap();
    let rec = Recorder::attach(&e);
    let c = e.connect_json(r#"{"id":"ghost","invisible":true}"#).unwrap();
    // Only own views change: the host hears of it, subscribers in public view do not.
    assert_eq!(rec.take(), ["user.presence.changed ghost online"]);
    assert!(e.poll_events(other, 100).unwrap().is_empty(), "an invisible login is not a public change");
    assert_eq!(public_view(&e, HOST, "ghost")["online"], true);
    assert_eq!(public_view(&e, other, "ghost")["online"], false);
    e.disconnect(c).unwrap();
    assert_eq!(rec.take(), ["user.presence.changed ghost offline", "connection.closed ghost offline"]);
    assert!(e.poll_events(other, 100).unwrap().is_empty());
}

#[test]
fn setting_invisible_while_offline_tells_only_own_views() {
    let e = manual_engine("");
    e.upsert_channel_json(r#"{"type":"room","id":"r","members":["a"]}"#).unwrap();
    let other = e.connect_json(r#"{"id":"other"}"#).unwrap();
    e.start_watching(other, "room:r", true).unwrap();
    e.poll_events(other, 100).unwrap();
    let rec = Recorder::attach(&e);
    e.set_invisible("a", true).unwrap();
    e.set_invisible("a", true).unwrap();
    e.set_invisible("a", false).unwrap();
    let invisible: Vec<_> = rec.take_events().iter().map(|ev| ev.user().unwrap().invisible).collect();
    assert_eq!(invisible, [true, false], "one event per flip, none when nothing changed");
    assert!(e.poll_events(other, 100).unwrap().is_empty());
}

#[test]
fn last_active_is_set_on_connect_refreshed_every_15_minutes_and_on_last_close() {
    let e = manual_engine("");
    let rec = Recorder::attach(&e);
    let c = e.connect_json(r#"{"id":"alice"}"#).unwrap();
    rec.take();
    let last = |e: &Engine| public_view(e, HOST, "alice")["last_active"].as_str().unwrap().to_string();
    assert_eq!(last(&e), "2019-01-07T13:17:42.375Z");
    e.set_time(T0 + 14 * MINUTE).unwrap();
    e.tick().unwrap();
    assert_eq!(last(&e), "2019-01-07T13:17:42.375Z", "not refreshed before 15 minutes");
    e.set_time(T0 + 15 * MINUTE).unwrap();
    e.tick().unwrap();
    assert_eq!(last(&e), "2019-01-07T13:32:42.375Z");
    e.set_time(T0 + 31 * MINUTE).unwrap();
    e.tick().unwrap();
    assert_eq!(last(&e), "2019-01-07T13:48:42.375Z");
    assert!(rec.take().is_empty(), "a refresh emits no event");
    e.set_time(T0 + 40 * MINUTE).unwrap();
    e.disconnect(c).unwrap();
    assert_eq!(last(&e), "2019-01-07T13:57:42.375Z", "the last close is an accurate last seen");
    e.set_time(T0 + 120 * MINUTE).unwrap();
    e.tick().unwrap();
    assert_eq!(last(&e), "2019-01-07T13:57:42.375Z", "offline users are not refreshed");
}

#[test]
fn last_active_refresh_period_is_configurable() {
    let e = manual_engine(r#""last_active_refresh_ms":1000"#);
    e.connect_json(r#"{"id":"a"}"#).unwrap();
    e.set_time(T0 + 1000).unwrap();
    e.tick().unwrap();
    assert_eq!(public_view(&e, HOST, "a")["last_active"], "2019-01-07T13:17:43.375Z");
}

#[test]
fn last_active_does_not_move_while_invisible() {
    let e = manual_engine("");
    let c = e.connect_json(r#"{"id":"alice"}"#).unwrap();
    e.set_time(T0 + MINUTE).unwrap();
    e.set_invisible("alice", true).unwrap();
    let frozen = public_view(&e, HOST, "alice")["last_active"].clone();
    assert_eq!(frozen, "2019-01-07T13:18:42.375Z", "going invisible stamps the last visible moment");
    for m in [16, 31, 60] {
        e.set_time(T0 + m * MINUTE).unwrap();
        e.tick().unwrap();
        assert_eq!(public_view(&e, HOST, "alice")["last_active"], frozen);
    }
    let c2 = e.connect_json(r#"{"id":"alice"}"#).unwrap();
    e.disconnect(c2).unwrap();
    e.disconnect(c).unwrap();
    assert_eq!(public_view(&e, HOST, "alice")["last_active"], frozen);
    e.set_invisible("alice", false).unwrap();
    assert_eq!(public_view(&e, HOST, "alice")["last_active"], frozen, "offline: nothing to stamp");
}

#[test]
fn heartbeats_keep_a_connection_alive_and_a_lapse_closes_it_with_timeout() {
    let e = manual_engine(r#""connection_timeout_ms":30000"#);
    let rec = Recorder::attach(&e);
    let c = e.connect_json(r#"{"id":"alice"}"#).unwrap();
    rec.take();
    for s in [20, 40, 60] {
        e.set_time(T0 + s * 1000).unwrap();
        e.heartbeat(c).unwrap();
        e.tick().unwrap();
    }
    assert!(rec.take().is_empty());
    e.set_time(T0 + 89_999).unwrap();
    e.tick().unwrap();
    assert!(rec.take().is_empty(), "29.999 s after the last heartbeat: still alive");
    e.set_time(T0 + 90_000).unwrap();
    e.tick().unwrap();
    let events = rec.take_events();
    assert_eq!(
        events.iter().map(describe).collect::<Vec<_>>(),
        ["user.presence.changed alice offline", "connection.closed alice offline"]
    );
    assert_eq!(events[1].to_value(presence::View::Own, None)["reason"], "timeout");
    assert_eq!(e.heartbeat(c).unwrap_err().kind(), ErrorKind::NotFound);
}

#[test]
fn without_a_timeout_connections_live_until_disconnect() {
    let e = manual_engine("");
    let c = e.connect_json(r#"{"id":"a"}"#).unwrap();
    e.set_time(T0 + 24 * 60 * MINUTE).unwrap();
    e.tick().unwrap();
    e.heartbeat(c).unwrap();
}

#[test]
fn offline_grace_hides_a_quick_reconnect_and_expires_on_tick() {
    let e = manual_engine(r#""offline_grace_ms":5000"#);
    let rec = Recorder::attach(&e);
    let c = e.connect_json(r#"{"id":"alice"}"#).unwrap();
    rec.take();
    e.disconnect(c).unwrap();
    assert_eq!(rec.take(), ["connection.closed alice online"], "still online during the grace");
    e.set_time(T0 + 4000).unwrap();
    e.tick().unwrap();
    let c = e.connect_json(r#"{"id":"alice"}"#).unwrap();
    assert!(rec.take().is_empty(), "a reconnect within the grace emits nothing at all");
    e.set_time(T0 + 20_000).unwrap();
    e.tick().unwrap();
    assert!(rec.take().is_empty(), "the old grace timer is void after the reconnect");
    e.disconnect(c).unwrap();
    assert_eq!(rec.take(), ["connection.closed alice online"]);
    e.set_time(T0 + 24_999).unwrap();
    e.tick().unwrap();
    assert!(rec.take().is_empty());
    e.set_time(T0 + 25_000).unwrap();
    e.tick().unwrap();
    assert_eq!(rec.take(), ["user.presence.changed alice offline"]);
    assert_eq!(public_view(&e, HOST, "alice")["last_active"], "2019-01-07T13:18:02.375Z");
}

#[test]
fn status_changes_are_presence_events() {
    let e = manual_engine("");
    let rec = Recorder::attach(&e);
    let c = e.connect_json(r#"{"id":"alice","status":"lobby"}"#).unwrap();
    assert_eq!(rec.take(), ["user.presence.changed alice online"]);
    e.set_status("alice", Some("in match")).unwrap();
    let ev = rec.take_events();
    assert_eq!(ev.len(), 1);
    assert_eq!(ev[0].to_value(presence::View::Public, None)["user"]["status"], "in match");
    e.set_status("alice", Some("in match")).unwrap();
    assert!(rec.take().is_empty(), "the same status is no change");
    e.set_status("alice", None).unwrap();
    assert_eq!(rec.take(), ["user.presence.changed alice online"]);
    assert!(public_view(&e, HOST, "alice").get("status").is_none());
    e.upsert_user_json(r#"{"id":"alice","status":"afk"}"#).unwrap();
    assert_eq!(rec.take(), ["user.presence.changed alice online"]);
    e.upsert_user_json(r#"{"id":"alice","status":null}"#).unwrap();
    assert_eq!(rec.take(), ["user.presence.changed alice online"]);
    e.disconnect(c).unwrap();
    e.set_status("alice", Some("away")).unwrap();
    assert_eq!(
        rec.take(),
        [
            "user.presence.changed alice offline",
            "connection.closed alice offline",
            "user.presence.changed alice offline"
        ]
    );
}

#[test]
fn custom_fields_emit_user_updated_and_merge_at_the_top_level() {
    let e = manual_engine("");
    e.upsert_user_json(r#"{"id":"alice","name":"Alice","image":"a.png","status":"hi"}"#).unwrap();
    let rec = Recorder::attach(&e);
    e.set_time(T0 + 1000).unwrap();
    e.upsert_user_json(r#"{"id":"alice","name":"Alice B.","image":null}"#).unwrap();
    let ev = rec.take_events();
    assert_eq!(ev.len(), 1);
    assert_eq!(ev[0].type_name(), "user.updated");
    assert_eq!(
        e.get_user(HOST, "alice").unwrap().to_value(),
        json!({"id":"alice","online":false,"status":"hi","invisible":false,
               "created_at":"2019-01-07T13:17:42.375Z","updated_at":"2019-01-07T13:17:43.375Z","name":"Alice B."})
    );
    e.upsert_user_json(r#"{"id":"alice","name":"Alice B."}"#).unwrap();
    assert!(rec.take().is_empty(), "an unchanged value is no change");
    // Connecting with only the id keeps every field.
    e.set_invisible("alice", true).unwrap();
    e.connect_json(r#"{"id":"alice"}"#).unwrap();
    let own = e.get_user(HOST, "alice").unwrap().to_value();
    assert_eq!(
        (own["name"].clone(), own["status"].clone(), own["invisible"].clone()),
        (json!("Alice B."), json!("hi"), json!(true))
    );
}

#[test]
fn creating_a_user_emits_nothing() {
    let e = manual_engine("");
    let rec = Recorder::attach(&e);
    e.upsert_user_json(r#"{"id":"new","status":"hello","name":"N"}"#).unwrap();
    assert!(rec.take().is_empty());
}

#[test]
fn user_json_has_exactly_the_documented_fields() {
    let e = manual_engine("");
    let c = e.connect_json(r#"{"id":"alice","status":"hi","name":"Alice"}"#).unwrap();
    let other = e.connect_json(r#"{"id":"bob"}"#).unwrap();
    assert_eq!(
        e.get_user(other, "alice").unwrap().to_value().to_string(),
        r#"{"id":"alice","online":true,"status":"hi","last_active":"2019-01-07T13:17:42.375Z","created_at":"2019-01-07T13:17:42.375Z","updated_at":"2019-01-07T13:17:42.375Z","name":"Alice"}"#
    );
    assert_eq!(
        e.get_user(c, "alice").unwrap().to_value().to_string(),
        r#"{"id":"alice","online":true,"status":"hi","last_active":"2019-01-07T13:17:42.375Z","invisible":false,"created_at":"2019-01-07T13:17:42.375Z","updated_at":"2019-01-07T13:17:42.375Z","name":"Alice"}"#
    );
}

#[test]
fn seq_is_one_strictly_increasing_counter() {
    let e = manual_engine("");
    let rec = Recorder::attach(&e);
    let a = e.connect_json(r#"{"id":"a"}"#).unwrap();
    e.connect_json(r#"{"id":"b","status":"x"}"#).unwrap();
    e.set_status("a", Some("y")).unwrap();
    e.upsert_user_json(r#"{"id":"a","k":1}"#).unwrap();
    e.disconnect(a).unwrap();
    let seqs: Vec<u64> = rec.take_events().iter().map(|e| e.seq).collect();
    assert_eq!(seqs, [1, 2, 3, 4, 5, 6]);
}

#[test]
fn listeners_filter_by_type_and_user_and_can_be_removed() {
    let e = manual_engine("");
    let all = Recorder::attach(&e);
    let alice = Recorder::attach_filtered(&e, ListenerFilter::user("alice"));
    let closed = Recorder::attach_filtered(&e, ListenerFilter::event_type("connection.closed"));
    let both = Recorder::attach_filtered(
        &e,
        ListenerFilter { event_type: Some("user.presence.changed".into()), user_id: Some("bob".into()) },
    );
    let a = e.connect_json(r#"{"id":"alice"}"#).unwrap();
    let b = e.connect_json(r#"{"id":"bob"}"#).unwrap();
    e.disconnect(a).unwrap();
    e.disconnect(b).unwrap();
    assert_eq!(all.take().len(), 6);
    assert_eq!(
        alice.take(),
        [
            "user.presence.changed alice online",
            "user.presence.changed alice offline",
            "connection.closed alice offline"
        ]
    );
    assert_eq!(closed.take(), ["connection.closed alice offline", "connection.closed bob offline"]);
    assert_eq!(both.take(), ["user.presence.changed bob online", "user.presence.changed bob offline"]);

    let count = Arc::new(Mutex::new(0));
    let c2 = count.clone();
    let id = e.add_listener(ListenerFilter::all(), move |_| *c2.lock().unwrap() += 1).unwrap();
    e.connect_json(r#"{"id":"carol"}"#).unwrap();
    e.remove_listener(id).unwrap();
    e.connect_json(r#"{"id":"dave"}"#).unwrap();
    assert_eq!(*count.lock().unwrap(), 1);
    assert_eq!(e.remove_listener(id).unwrap_err().kind(), ErrorKind::NotFound);
}

#[test]
fn immediate_dispatch_runs_before_the_call_returns_and_reentrant_events_follow_in_order() {
    let e = Arc::new(manual_engine(""));
    let log = Arc::new(Mutex::new(Vec::new()));
    let (weak, l) = (Arc::downgrade(&e), log.clone());
    e.add_listener(ListenerFilter::all(), move |ev| {
        l.lock().unwrap().push(format!("{} {}", ev.seq, describe(ev)));
        // Re-enter: the first time alice comes online, set bob's status.
        if ev.user_id() == Some("alice") && ev.type_name() == "user.presence.changed" {
            let e = weak.upgrade().unwrap();
            e.set_status("bob", Some("alice is here")).unwrap();
            // The nested call's event is not delivered inside this callback.
            assert_eq!(l.lock().unwrap().len(), 2);
            assert_eq!(e.get_user(HOST, "bob").unwrap().to_value()["status"], "alice is here");
        }
    })
    .unwrap();
    e.connect_json(r#"{"id":"bob"}"#).unwrap();
    e.connect_json(r#"{"id":"alice"}"#).unwrap();
    assert_eq!(
        *log.lock().unwrap(),
        [
            "1 user.presence.changed bob online",
            "2 user.presence.changed alice online",
            "3 user.presence.changed bob online"
        ]
    );
}

#[test]
fn manual_dispatch_waits_for_pump() {
    let e = Engine::from_json(Some(r#"{"clock":"manual","dispatch":"manual"}"#)).unwrap();
    let rec = Recorder::attach(&e);
    let c = e.connect_json(r#"{"id":"a"}"#).unwrap();
    e.disconnect(c).unwrap();
    assert!(rec.take().is_empty());
    assert_eq!(e.pump(), 3);
    assert_eq!(
        rec.take(),
        ["user.presence.changed a online", "user.presence.changed a offline", "connection.closed a offline"]
    );
    assert_eq!(e.pump(), 0);
}

#[test]
fn pump_runs_callbacks_on_the_pumping_thread() {
    let e = Arc::new(Engine::from_json(Some(r#"{"dispatch":"manual"}"#)).unwrap());
    let threads = Arc::new(Mutex::new(Vec::new()));
    let t = threads.clone();
    e.add_listener(ListenerFilter::all(), move |_| t.lock().unwrap().push(std::thread::current().id()))
        .unwrap();
    let e2 = e.clone();
    std::thread::spawn(move || e2.connect_json(r#"{"id":"a"}"#).unwrap()).join().unwrap();
    assert!(threads.lock().unwrap().is_empty());
    e.pump();
    assert_eq!(*threads.lock().unwrap(), [std::thread::current().id()]);
}

#[test]
fn bad_input_answers_the_right_error_and_changes_nothing() {
    let e = manual_engine(r#""max_connections_per_user":2"#);
    assert_eq!(kind(e.connect_json(r#"{"id":"has space"}"#)), ErrorKind::Invalid);
    assert_eq!(kind(e.connect_json(r#"{"id":""}"#)), ErrorKind::Invalid);
    assert_eq!(kind(e.connect_json(&format!(r#"{{"id":"{}"}}"#, "x".repeat(256)))), ErrorKind::Invalid);
    assert_eq!(kind(e.connect_json("{not json")), ErrorKind::Json);
    assert_eq!(kind(e.connect_json(r#"{"name":"no id"}"#)), ErrorKind::Json);
    let long_status = format!(r#"{{"id":"a","status":"{}"}}"#, "s".repeat(1025));
    assert_eq!(kind(e.upsert_user_json(&long_status)), ErrorKind::Invalid);
    assert_eq!(kind(e.set_status("a", Some(&"s".repeat(1025)))), ErrorKind::Invalid);
    let big_custom = format!(r#"{{"id":"a","blob":"{}"}}"#, "b".repeat(5 * 1024));
    assert_eq!(kind(e.upsert_user_json(&big_custom)), ErrorKind::Invalid);
    for managed in ["online", "last_active", "created_at", "updated_at"] {
        let err = e.upsert_user_json(&format!(r#"{{"id":"a","{managed}":true}}"#)).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Invalid);
        assert!(err.message().contains(managed), "{}", err.message());
    }
    assert_eq!(e.counts().users, 0, "no failed call created a user");

    assert_eq!(kind(e.disconnect(ConnectionId(99))), ErrorKind::NotFound);
    assert_eq!(kind(e.heartbeat(ConnectionId(99))), ErrorKind::NotFound);
    assert_eq!(kind(e.get_user(ConnectionId(99), "a")), ErrorKind::NotFound);
    assert_eq!(kind(e.get_user(HOST, "nobody")), ErrorKind::NotFound);
    assert_eq!(kind(e.set_invisible("nobody", true)), ErrorKind::NotFound);

    e.connect_json(r#"{"id":"a","status":"ok"}"#).unwrap();
    assert_eq!(kind(e.set_status("a", Some(&"s".repeat(1025)))), ErrorKind::Invalid);
    e.connect_json(r#"{"id":"a"}"#).unwrap();
    let err = e.connect_json(r#"{"id":"a","status":"changed"}"#).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Limit);
    assert!(err.message().contains("max_connections_per_user"));
    assert_eq!(
        e.get_user(HOST, "a").unwrap().to_value()["status"],
        "ok",
        "a refused connect changes nothing"
    );
    assert_eq!(e.counts().connections, 2);

    e.set_time(T0 + 10).unwrap();
    let err = e.set_time(T0 + 9).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::State);
    assert!(err.message().contains("backwards"));
    assert_eq!(e.now(), T0 + 10);
}

#[test]
fn config_is_validated() {
    let kind = |j: &str| Engine::from_json(Some(j)).map(|_| ()).unwrap_err().kind();
    assert_eq!(kind(r#"{"clok":"manual"}"#), ErrorKind::Json, "unknown keys fail loudly");
    assert_eq!(kind(r#"{"clock":"sundial"}"#), ErrorKind::Json);
    assert_eq!(kind(r#"{"dispatch":"later"}"#), ErrorKind::Json);
    assert_eq!(kind(r#"{"max_connections_per_user":-1}"#), ErrorKind::Json);
    assert_eq!(kind(r#"{"max_connections_per_user":0}"#), ErrorKind::Invalid);
    assert_eq!(kind("[]"), ErrorKind::Json);
    let system = Engine::from_json(None).unwrap();
    assert_eq!(system.set_time(0).unwrap_err().kind(), ErrorKind::State);
    assert!(system.now() > T0);
}

#[test]
fn typed_api_matches_the_json_one() {
    let e = manual_engine("");
    let mut patch = UserPatch::id("alice");
    patch.status = Some(Some("ready".into()));
    patch.custom.push(("level".into(), Some(json!(7))));
    let c = e.connect(&patch).unwrap();
    let user = e.get_user(ConnectionId::HOST, "alice").unwrap().user;
    assert_eq!(&*user.id, "alice");
    assert!(user.online(presence::View::Public));
    assert_eq!(user.status.as_deref(), Some("ready"));
    assert_eq!(user.last_active, Some(T0));
    assert_eq!(user.custom.as_ref().unwrap()["level"], 7);
    e.disconnect(c).unwrap();
    assert!(!e.get_user(ConnectionId::HOST, "alice").unwrap().user.online(presence::View::Own));
}

#[test]
fn save_then_load_gives_back_every_user_field_all_offline() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("presence.json");
    let e = manual_engine("");
    e.connect_json(r#"{"id":"alice","status":"hi","name":"Alice","stats":{"wins":3}}"#).unwrap();
    e.connect_json(r#"{"id":"ghost","invisible":true}"#).unwrap();
    e.upsert_user_json(r#"{"id":"never"}"#).unwrap();
    e.set_time(T0 + 5 * MINUTE).unwrap();
    e.upsert_user_json(r#"{"id":"alice","image":"a.png"}"#).unwrap();
    e.save(&path).unwrap();

    let restored = manual_engine("");
    restored.load(&path).unwrap();
    for id in ["alice", "ghost", "never"] {
        let mut expected = e.get_user(HOST, id).unwrap().to_value();
        expected["online"] = json!(false);
        assert_eq!(restored.get_user(HOST, id).unwrap().to_value(), expected, "{id}");
    }
    assert_eq!(restored.counts(), Counts { users: 3, connections: 0, channels: 0 });
    let err = e.load(&path).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::State, "load needs an engine without connections");
    assert_eq!(restored.load(dir.path().join("missing.json")).unwrap_err().kind(), ErrorKind::Io);
    std::fs::write(&path, "{\"format\":").unwrap();
    assert_eq!(restored.load(&path).unwrap_err().kind(), ErrorKind::Json);
    assert_eq!(
        restored.counts(),
        Counts { users: 3, connections: 0, channels: 0 },
        "a failed load leaves the engine unchanged"
    );
}

#[test]
fn connect_user_is_connect_with_the_id_alone() {
    let e = manual_engine(r#""max_connections_per_user":2"#);
    let rec = Recorder::attach(&e);
    let viewer = e.connect_user("viewer").unwrap();
    e.upsert_user_json(r#"{"id":"alice","status":"afk","invisible":true,"level":7}"#).unwrap();
    rec.take();
    // A known user keeps everything the id alone does not name.
    let c = e.connect_user("alice").unwrap();
    assert_eq!(rec.take(), ["user.presence.changed alice online"], "her own view: online though invisible");
    let own = e.get_user(c, "alice").unwrap().to_value();
    assert_eq!((&own["status"], &own["invisible"], &own["level"]), (&json!("afk"), &json!(true), &json!(7)));
    assert_eq!(public_view(&e, viewer, "alice")["online"], json!(false));
    // An unknown user is created with its id only, as `{"id": ...}` would.
    let bob = e.connect_user("bob").unwrap();
    let carol = e.connect_json(r#"{"id":"carol"}"#).unwrap();
    let mut typed = e.get_user(bob, "bob").unwrap().to_value();
    let mut patched = e.get_user(carol, "carol").unwrap().to_value();
    typed["id"] = json!("");
    patched["id"] = json!("");
    assert_eq!(typed, patched, "both created at the same moment with nothing but an id");
    assert_eq!(typed["online"], json!(true));
    // The same refusals, with the same messages, as the patch form.
    let too_long = "x".repeat(256);
    for id in ["", "has space", too_long.as_str()] {
        let typed = e.connect_user(id).unwrap_err();
        let patch = e.connect(&UserPatch::id(id)).unwrap_err();
        assert_eq!((typed.kind(), typed.message()), (ErrorKind::Invalid, patch.message()), "id {id:?}");
    }
    e.connect_user("alice").unwrap();
    let typed = e.connect_user("alice").unwrap_err();
    let patch = e.connect(&UserPatch::id("alice")).unwrap_err();
    assert_eq!((typed.kind(), typed.message()), (ErrorKind::Limit, patch.message()));
    assert_eq!(e.counts(), Counts { users: 4, connections: 5, channels: 0 });
}
