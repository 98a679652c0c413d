//! Issue 3: channels, members, watchers, presence subscriptions (SPEC section 4), event
//! delivery (section 5) and Stream-style queries (section 6), all through the engine on a
//! manual clock, asserting exact event sequences and exact JSON views.
mod common;

use common::*;
use presence::time::format_millis;
use presence::{ConnectionId, Delivery, Engine, ErrorKind};
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};

const HOST: ConnectionId = ConnectionId::HOST;

/// `T0` rendered.
const T0S: &str = "2019-01-07T13:17:42.375Z";

/// `T0 + minutes` rendered.
fn at_min(minutes: i64) -> String {
    format_millis(T0 + minutes * MINUTE)
}

/// `"#<conn> <rest>"`, the shape of [`describe_delivery`].
fn to(c: ConnectionId, rest: &str) -> String {
    format!("#{} {}", c.0, rest)
}

/// Every delivery-listener call, in call order.
#[derive(Clone, Default)]
struct Deliveries(Arc<Mutex<Vec<Delivery>>>);

impl Deliveries {
    fn attach(e: &Engine) -> Deliveries {
        let d = Deliveries::default();
        let sink = d.0.clone();
        e.add_delivery_listener(move |x| sink.lock().unwrap().push(x.clone()));
        d
    }

    /// What was delivered so far, checked to be in `seq` order.
    fn take_raw(&self) -> Vec<Delivery> {
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
    fn take(&self) -> Vec<String> {
        let mut all = self.take_raw();
        all.sort_by_key(|d| (d.event.seq, d.connection));
        all.iter().map(describe_delivery).collect()
    }
}

/// Drains a connection's queue as [`describe_delivery`] lines, checking strict seq order.
fn poll(e: &Engine, c: ConnectionId) -> Vec<String> {
    let got = e.poll_events(c, usize::MAX).unwrap();
    for w in got.windows(2) {
        assert!(w[0].event.seq < w[1].event.seq, "queue out of seq order");
    }
    for d in &got {
        assert_eq!(d.connection, c);
    }
    got.iter().map(describe_delivery).collect()
}

/// A user never connected, created at `T0`, in the public view.
fn user(id: &str) -> Value {
    json!({"id": id, "online": false, "created_at": T0S, "updated_at": T0S})
}

/// `base` with the fields of `extra` set (a `null` removes one).
fn with(mut base: Value, extra: Value) -> Value {
    let (Value::Object(b), Value::Object(x)) = (&mut base, extra) else { panic!("objects only") };
    for (k, v) in x {
        if v.is_null() {
            b.shift_remove(&k);
        } else {
            b.insert(k, v);
        }
    }
    base
}

/// The own view of a user built with [`user`]: adds `invisible`.
fn own(base: Value, invisible: bool) -> Value {
    with(base, json!({ "invisible": invisible }))
}

fn member(user: Value) -> Value {
    json!({"user_id": user["id"].clone(), "user": user})
}

/// The ids of a `query_users` answer, in order.
fn ids(v: &Value) -> Vec<String> {
    v["users"].as_array().unwrap().iter().map(|u| u["id"].as_str().unwrap().to_string()).collect()
}

/// The cids of a `query_channels` answer, in order.
fn cids(v: &Value) -> Vec<String> {
    v["channels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["channel"]["cid"].as_str().unwrap().to_string())
        .collect()
}

/// The state of one channel as the host sees it.
fn host_state(e: &Engine, cid: &str) -> Value {
    let v = e.query_channels(HOST, &json!({"filter_conditions": {"cid": cid}}).to_string()).unwrap();
    let list = v["channels"].as_array().unwrap();
    assert_eq!(list.len(), 1, "{cid} not found: {v}");
    list[0].clone()
}

/// The `user_id`s of a channel state's `members`.
fn member_ids(state: &Value) -> Vec<String> {
    state["members"].as_array().unwrap().iter().map(|m| m["user_id"].as_str().unwrap().to_string()).collect()
}

/// The ids of a channel state's `watchers`.
fn watcher_ids(state: &Value) -> Vec<String> {
    state["watchers"].as_array().unwrap().iter().map(|u| u["id"].as_str().unwrap().to_string()).collect()
}

fn kind<T: std::fmt::Debug>(r: presence::Result<T>) -> ErrorKind {
    r.unwrap_err().kind()
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

// ----- channels and members -----

#[test]
fn upsert_channel_creates_the_channel_and_its_missing_members() {
    let e = manual_engine("");
    e.upsert_user_json(r#"{"id":"b","name":"Bee"}"#).unwrap();
    let rec = Recorder::attach(&e);
    e.upsert_channel_json(r#"{"type":"team","id":"red","members":["a","b"],"color":"red"}"#).unwrap();
    assert_eq!(e.counts(), (2, 0, 1));
    assert_eq!(
        rec.take(),
        ["member.added a offline", "member.added b offline"],
        "membership events are emitted even without watchers (host listeners see all)"
    );
    // "a" did not exist: created with only its id. "b" is untouched.
    assert_eq!(e.get_user(HOST, "a").unwrap(), own(user("a"), false));
    assert_eq!(e.get_user(HOST, "b").unwrap(), own(with(user("b"), json!({"name":"Bee"})), false));
    assert_eq!(
        host_state(&e, "team:red"),
        json!({
            "channel": {"cid":"team:red","type":"team","id":"red","member_count":2,
                        "created_at":T0S,"updated_at":T0S,"color":"red"},
            "members": [member(own(user("a"), false)),
                        member(own(with(user("b"), json!({"name":"Bee"})), false))],
            "watcher_count": 0,
            "watchers": []
        })
    );
    // The cid form works too, and type/id may be repeated consistently.
    e.upsert_channel_json(r#"{"cid":"dm:a-b"}"#).unwrap();
    e.upsert_channel_json(r#"{"cid":"dm:x","type":"dm","id":"x"}"#).unwrap();
    assert_eq!(
        host_state(&e, "dm:a-b")["channel"],
        json!({"cid":"dm:a-b","type":"dm","id":"a-b","member_count":0,"created_at":T0S,"updated_at":T0S})
    );
    assert_eq!(e.counts(), (2, 0, 3));
}

#[test]
fn upsert_adds_members_never_removes_and_merges_custom_fields() {
    let e = manual_engine("");
    e.upsert_channel_json(r#"{"type":"team","id":"red","members":["a","b"],"color":"red","size":1}"#)
        .unwrap();
    e.set_time(T0 + MINUTE).unwrap();
    let rec = Recorder::attach(&e);
    e.upsert_channel_json(
        r#"{"type":"team","id":"red","members":["c","a"],"color":null,"size":2,"motto":"go",
            "last_message_at":"2019-01-07T13:00:00.000Z"}"#,
    )
    .unwrap();
    assert_eq!(rec.take(), ["member.added c offline"], "a was already a member");
    let m1 = at_min(1);
    let c_user = json!({"id":"c","online":false,"invisible":false,"created_at":m1,"updated_at":m1});
    assert_eq!(
        host_state(&e, "team:red"),
        json!({
            "channel": {"cid":"team:red","type":"team","id":"red","member_count":3,
                        "created_at":T0S,"updated_at":m1,
                        "last_message_at":"2019-01-07T13:00:00.000Z","size":2,"motto":"go"},
            "members": [member(own(user("a"), false)), member(own(user("b"), false)), member(c_user)],
            "watcher_count": 0,
            "watchers": []
        })
    );
    // Managed fields cannot be set; a bad member id rejects the whole upsert.
    assert_eq!(kind(e.upsert_channel_json(r#"{"cid":"team:red","member_count":9}"#)), ErrorKind::Invalid);
    assert_eq!(
        kind(e.upsert_channel_json(r#"{"cid":"team:red","members":["ok","a b"]}"#)),
        ErrorKind::Invalid
    );
    assert_eq!(kind(e.upsert_channel_json(r#"{"cid":"team:red","members":"a"}"#)), ErrorKind::Json);
    assert_eq!(kind(e.upsert_channel_json(r#"{"cid":"team:red""#)), ErrorKind::Json);
    assert_eq!(e.counts(), (3, 0, 1), "user \"ok\" was not created");
    assert_eq!(host_state(&e, "team:red")["channel"]["member_count"], 3);
    assert!(rec.take().is_empty());
}

#[test]
fn add_and_remove_members_with_their_error_cases() {
    let e = manual_engine("");
    e.upsert_channel_json(r#"{"type":"team","id":"red","members":["a"]}"#).unwrap();
    e.upsert_user_json(r#"{"id":"zed"}"#).unwrap();
    let rec = Recorder::attach(&e);

    e.add_members_json("team:red", r#"["b","c","b","a"]"#).unwrap();
    assert_eq!(rec.take(), ["member.added b offline", "member.added c offline"]);
    e.add_members("team:red", &strings(&["d"])).unwrap();
    assert_eq!(rec.take(), ["member.added d offline"]);
    assert_eq!(e.counts(), (5, 0, 1));

    // Unknown user: NotFound, nothing removed (not even the valid ids before it).
    assert_eq!(kind(e.remove_members_json("team:red", r#"["a","nobody"]"#)), ErrorKind::NotFound);
    assert_eq!(host_state(&e, "team:red")["channel"]["member_count"], 4);
    assert_eq!(kind(e.get_user(HOST, "nobody")), ErrorKind::NotFound);
    // An existing user who is not a member: a silent no-op.
    e.remove_members_json("team:red", r#"["zed"]"#).unwrap();
    assert!(rec.take().is_empty());

    e.remove_members_json("team:red", r#"["a","c"]"#).unwrap();
    assert_eq!(rec.take(), ["member.removed a offline", "member.removed c offline"]);
    e.remove_members("team:red", &strings(&["d"])).unwrap();
    assert_eq!(rec.take(), ["member.removed d offline"]);
    let members = member_ids(&host_state(&e, "team:red"));
    assert_eq!(members, ["b"]);
    assert_eq!(e.counts(), (5, 0, 1), "removing members never deletes users");

    // Malformed input.
    assert_eq!(kind(e.add_members_json("team:red", "[1]")), ErrorKind::Json);
    assert_eq!(kind(e.add_members_json("team:red", r#""a""#)), ErrorKind::Json);
    assert_eq!(kind(e.add_members_json("team:red", "[")), ErrorKind::Json);
    assert_eq!(kind(e.add_members_json("team:red", r#"["new1","a b"]"#)), ErrorKind::Invalid);
    assert_eq!(kind(e.add_members("team:red", &strings(&["new2", ""]))), ErrorKind::Invalid);
    assert_eq!(kind(e.remove_members_json("team:red", "{}")), ErrorKind::Json);
    assert_eq!(e.counts(), (5, 0, 1), "a rejected add creates no user");
    // Bad and unknown channels.
    assert_eq!(kind(e.add_members("Team:red", &strings(&["a"]))), ErrorKind::Invalid);
    assert_eq!(kind(e.add_members("team:blue", &strings(&["a"]))), ErrorKind::NotFound);
    assert_eq!(kind(e.remove_members("team:blue", &strings(&["a"]))), ErrorKind::NotFound);
    assert_eq!(kind(e.remove_members("team", &strings(&["a"]))), ErrorKind::Invalid);
    assert!(rec.take().is_empty());
}

#[test]
fn cid_validation_and_unknown_channels() {
    let e = manual_engine("");
    let c = e.connect_json(r#"{"id":"a"}"#).unwrap();
    let long_type = format!("{}:x", "t".repeat(65));
    let long_id = format!("t:{}", "x".repeat(65));
    let ok_id = format!("t:{}", "x".repeat(64));
    for bad in ["general", ":x", "t:", "Team:x", "t y:x", "t:a:b", "t:a b", "t:a\u{1}", &long_type, &long_id]
    {
        let json = json!({ "cid": bad }).to_string();
        assert_eq!(kind(e.upsert_channel_json(&json)), ErrorKind::Invalid, "{bad:?}");
        assert_eq!(kind(e.watch_channel(c, bad, false)), ErrorKind::Invalid, "{bad:?}");
        assert_eq!(kind(e.watch_channel_state(c, bad, true)), ErrorKind::Invalid, "{bad:?}");
        assert_eq!(kind(e.stop_watching(c, bad)), ErrorKind::Invalid, "{bad:?}");
        assert_eq!(kind(e.delete_channel(bad)), ErrorKind::Invalid, "{bad:?}");
        assert_eq!(kind(e.add_members(bad, &[])), ErrorKind::Invalid, "{bad:?}");
    }
    e.upsert_channel_json(&json!({ "cid": ok_id }).to_string()).unwrap();
    e.upsert_channel_json(r#"{"type":"a-z_0-9","id":"Ünïcødé.!"}"#).unwrap();
    assert_eq!(e.counts().2, 2);
    for unknown in ["t:none", "team:red"] {
        assert_eq!(kind(e.watch_channel(c, unknown, false)), ErrorKind::NotFound);
        assert_eq!(kind(e.watch_channel_state(c, unknown, false)), ErrorKind::NotFound);
        assert_eq!(kind(e.stop_watching(c, unknown)), ErrorKind::NotFound);
        assert_eq!(kind(e.delete_channel(unknown)), ErrorKind::NotFound);
    }
    // Unknown connections.
    assert_eq!(kind(e.watch_channel(ConnectionId(99), &ok_id, false)), ErrorKind::NotFound);
    assert_eq!(kind(e.stop_watching(ConnectionId(99), &ok_id)), ErrorKind::NotFound);
    assert_eq!(kind(e.watch_channel(HOST, &ok_id, false)), ErrorKind::NotFound, "the host cannot watch");
}

#[test]
fn a_user_may_be_a_member_of_many_channels() {
    let e = manual_engine("");
    for (i, team) in ["red", "blue", "green"].iter().enumerate() {
        e.set_time(T0 + i as i64 * MINUTE).unwrap();
        e.upsert_channel_json(&json!({"type":"team","id":team,"members":["a", team]}).to_string()).unwrap();
    }
    let q = |who: &str| {
        let v = e
            .query_channels(
                HOST,
                &json!({"filter_conditions":{"members":{"$in":[who]}},"sort":{"cid":1}}).to_string(),
            )
            .unwrap();
        cids(&v)
    };
    assert_eq!(q("a"), ["team:blue", "team:green", "team:red"]);
    assert_eq!(q("blue"), ["team:blue"]);
    e.remove_members("team:blue", &strings(&["a"])).unwrap();
    assert_eq!(q("a"), ["team:green", "team:red"]);
    e.delete_channel("team:red").unwrap();
    assert_eq!(q("a"), ["team:green"]);
    assert_eq!(q("red"), Vec::<String>::new());
    assert_eq!(e.counts(), (4, 0, 2), "deleting a channel keeps its users");
}

// ----- watching -----

#[test]
fn watch_channel_state_answers_sorted_members_and_visible_watchers() {
    let e = manual_engine("");
    e.upsert_channel_json(r#"{"type":"team","id":"red","members":["zoe","bob","amy"],"color":"red"}"#)
        .unwrap();
    let zoe = e.connect_json(r#"{"id":"zoe"}"#).unwrap();
    e.set_time(T0 + MINUTE).unwrap();
    let bob = e.connect_json(r#"{"id":"bob","status":"ready"}"#).unwrap();
    e.watch_channel(zoe, "team:red", false).unwrap();
    let state = e.watch_channel_state(bob, "team:red", true).unwrap();
    let m1 = at_min(1);
    let zoe_public = with(user("zoe"), json!({"online":true,"last_active":T0S}));
    let bob_own = json!({"id":"bob","online":true,"status":"ready","last_active":m1,"invisible":false,
                         "created_at":T0S,"updated_at":m1});
    assert_eq!(
        state,
        json!({
            "channel": {"cid":"team:red","type":"team","id":"red","member_count":3,
                        "created_at":T0S,"updated_at":T0S,"color":"red"},
            "members": [member(user("amy")), member(bob_own.clone()), member(zoe_public.clone())],
            "watcher_count": 2,
            "watchers": [bob_own, zoe_public]
        })
    );
    // Watching without asking for the answer, and watching again, are both idempotent.
    e.watch_channel(bob, "team:red", true).unwrap();
    let again = e.watch_channel_state(bob, "team:red", false).unwrap();
    assert_eq!(again, state);
    // A watcher who is not a member shows up in watchers but not in members.
    let eve = e.connect_json(r#"{"id":"eve"}"#).unwrap();
    let seen_by_eve = e.watch_channel_state(eve, "team:red", false).unwrap();
    assert_eq!(seen_by_eve["watcher_count"], 3);
    assert_eq!(watcher_ids(&seen_by_eve), ["bob", "eve", "zoe"]);
    assert_eq!(seen_by_eve["members"].as_array().unwrap().len(), 3);
    assert!(seen_by_eve["watchers"][0].get("invisible").is_none(), "others get public views");
    assert_eq!(seen_by_eve["watchers"][1]["invisible"], false, "eve gets her own view");
}

#[test]
fn watching_start_and_stop_follow_the_first_and_last_connection_of_a_user() {
    let e = manual_engine("");
    e.upsert_channel_json(r#"{"type":"team","id":"red","members":["alice","bob"]}"#).unwrap();
    let bob = e.connect_json(r#"{"id":"bob"}"#).unwrap();
    let a1 = e.connect_json(r#"{"id":"alice"}"#).unwrap();
    let a2 = e.connect_json(r#"{"id":"alice"}"#).unwrap();
    let rec = Recorder::attach(&e);
    let d = Deliveries::attach(&e);

    e.watch_channel(bob, "team:red", false).unwrap();
    assert_eq!(d.take(), [to(bob, "user.watching.start bob online")], "the new watcher is told too");
    e.watch_channel(a1, "team:red", false).unwrap();
    let raw = d.take_raw();
    let mut lines: Vec<_> = raw.iter().map(describe_delivery).collect();
    lines.sort();
    assert_eq!(
        lines,
        [to(bob, "user.watching.start alice online"), to(a1, "user.watching.start alice online")]
    );
    let v = raw.iter().find(|x| x.connection == bob).unwrap().to_value();
    assert_eq!(
        v,
        json!({"type":"user.watching.start","created_at":T0S,"seq":raw[0].event.seq,
               "connection_id":bob.0,"cid":"team:red","channel_type":"team","channel_id":"red",
               "user":with(user("alice"), json!({"online":true,"last_active":T0S})),
               "watcher_count":2})
    );
    assert_eq!(raw[0].event.seq, raw[1].event.seq, "one event, two recipients");
    assert_eq!(rec.take(), ["user.watching.start bob online", "user.watching.start alice online"]);

    // A second connection of the same user: no event, no change of watcher_count.
    e.watch_channel(a2, "team:red", false).unwrap();
    assert!(d.take().is_empty());
    assert_eq!(host_state(&e, "team:red")["watcher_count"], 2);
    e.stop_watching(a1, "team:red").unwrap();
    assert!(d.take().is_empty(), "alice still watches through a2");
    assert_eq!(host_state(&e, "team:red")["watcher_count"], 2);
    // Stopping when not watching is a no-op.
    e.stop_watching(a1, "team:red").unwrap();
    assert!(d.take().is_empty());
    assert!(rec.take().is_empty());

    // Her last watching connection closes: stop goes to the remaining watchers.
    e.disconnect(a2).unwrap();
    let stop = d.take_raw();
    assert_eq!(
        stop.iter().map(describe_delivery).collect::<Vec<_>>(),
        [to(bob, "user.watching.stop alice online")]
    );
    assert_eq!(stop[0].to_value()["watcher_count"], 1);
    assert_eq!(rec.take(), ["user.watching.stop alice online", "connection.closed alice online"]);
    e.stop_watching(bob, "team:red").unwrap();
    assert!(d.take().is_empty(), "nobody is left watching");
    assert_eq!(rec.take(), ["user.watching.stop bob online"]);
    assert_eq!(host_state(&e, "team:red")["watcher_count"], 0);
    assert_eq!(host_state(&e, "team:red")["watchers"], json!([]));
}

#[test]
fn disconnecting_the_last_connection_stops_watching_before_going_offline() {
    let e = manual_engine("");
    e.upsert_channel_json(r#"{"type":"team","id":"red","members":["alice"]}"#).unwrap();
    let bob = e.connect_json(r#"{"id":"bob"}"#).unwrap();
    let alice = e.connect_json(r#"{"id":"alice"}"#).unwrap();
    e.watch_channel(bob, "team:red", true).unwrap();
    e.watch_channel(alice, "team:red", false).unwrap();
    poll(&e, bob);
    let rec = Recorder::attach(&e);
    e.disconnect(alice).unwrap();
    assert_eq!(
        rec.take(),
        [
            "user.watching.stop alice online",
            "user.presence.changed alice offline",
            "connection.closed alice offline"
        ]
    );
    assert_eq!(
        poll(&e, bob),
        [to(bob, "user.watching.stop alice online"), to(bob, "user.presence.changed alice offline")],
        "bob watches and is subscribed; connection.closed is for host listeners only"
    );
}

#[test]
fn going_invisible_stops_watching_everywhere_and_coming_back_starts_again() {
    let e = manual_engine("");
    e.upsert_channel_json(r#"{"type":"team","id":"red"}"#).unwrap();
    e.upsert_channel_json(r#"{"type":"team","id":"blue"}"#).unwrap();
    let bob = e.connect_json(r#"{"id":"bob"}"#).unwrap();
    let a1 = e.connect_json(r#"{"id":"alice"}"#).unwrap();
    let a2 = e.connect_json(r#"{"id":"alice"}"#).unwrap();
    e.watch_channel(bob, "team:red", false).unwrap();
    e.watch_channel(a1, "team:red", false).unwrap();
    e.watch_channel(a2, "team:red", false).unwrap();
    e.watch_channel(a2, "team:blue", false).unwrap();
    let d = Deliveries::attach(&e);
    let rec = Recorder::attach(&e);

    e.set_invisible("alice", true).unwrap();
    // Host (own view): alice still connected.
    let host_lines = rec.take();
    assert_eq!(host_lines.len(), 3);
    assert_eq!(host_lines[0], "user.presence.changed alice online");
    let mut rest = host_lines[1..].to_vec();
    rest.sort();
    assert_eq!(rest, ["user.watching.stop alice online", "user.watching.stop alice online"]);
    let mut got = d.take();
    got.sort();
    let mut want = vec![
        to(bob, "user.watching.stop alice offline"),
        to(a1, "user.watching.stop alice online"),
        to(a2, "user.watching.stop alice online"),
        to(a2, "user.watching.stop alice online"),
    ];
    want.sort();
    assert_eq!(got, want, "others see her offline, her own connections see the own view");
    let seen_by_bob = e.watch_channel_state(bob, "team:red", false).unwrap();
    assert_eq!(watcher_ids(&seen_by_bob), ["bob"]);
    assert_eq!(seen_by_bob["watcher_count"], 1);
    assert_eq!(watcher_ids(&host_state(&e, "team:blue")), Vec::<String>::new());
    assert_eq!(host_state(&e, "team:blue")["watcher_count"], 0);
    d.take();
    // Watching and stopping while invisible: silent.
    let a3 = e.connect_json(r#"{"id":"alice"}"#).unwrap();
    e.watch_channel(a3, "team:red", false).unwrap();
    e.stop_watching(a1, "team:red").unwrap();
    e.stop_watching(a2, "team:blue").unwrap();
    assert!(d.take().is_empty());
    assert!(rec.take().is_empty());

    e.set_invisible("alice", false).unwrap();
    assert_eq!(rec.take(), ["user.presence.changed alice online", "user.watching.start alice online"]);
    let mut got = d.take();
    got.sort();
    let mut want = vec![
        to(bob, "user.watching.start alice online"),
        to(a2, "user.watching.start alice online"),
        to(a3, "user.watching.start alice online"),
    ];
    want.sort();
    assert_eq!(got, want, "only team:red, still watched by a2 and a3");
    assert_eq!(host_state(&e, "team:red")["watcher_count"], 2);
    assert_eq!(host_state(&e, "team:blue")["watcher_count"], 0);
}

#[test]
fn member_events_reach_the_watchers_in_the_view_each_is_entitled_to() {
    let e = manual_engine("");
    e.upsert_channel_json(r#"{"type":"team","id":"red"}"#).unwrap();
    let bob = e.connect_json(r#"{"id":"bob"}"#).unwrap();
    let carol = e.connect_json(r#"{"id":"carol"}"#).unwrap();
    let outsider = e.connect_json(r#"{"id":"dan"}"#).unwrap();
    e.watch_channel(bob, "team:red", false).unwrap();
    e.watch_channel(carol, "team:red", false).unwrap();
    poll(&e, bob);
    poll(&e, carol);
    let d = Deliveries::attach(&e);

    e.add_members("team:red", &strings(&["carol"])).unwrap();
    let raw = d.take_raw();
    assert_eq!(raw.len(), 2);
    let for_bob = raw.iter().find(|x| x.connection == bob).unwrap().to_value();
    let for_carol = raw.iter().find(|x| x.connection == carol).unwrap().to_value();
    let seq = raw[0].event.seq;
    let carol_public = with(user("carol"), json!({"online":true,"last_active":T0S}));
    assert_eq!(
        for_bob,
        json!({"type":"member.added","created_at":T0S,"seq":seq,"connection_id":bob.0,
               "cid":"team:red","channel_type":"team","channel_id":"red",
               "member":{"user_id":"carol","user":carol_public.clone()}})
    );
    assert_eq!(for_carol["member"]["user"], own(carol_public.clone(), false));
    assert_eq!(for_carol["connection_id"], carol.0);
    e.remove_members("team:red", &strings(&["carol"])).unwrap();
    assert_eq!(d.take(), [to(bob, "member.removed carol online"), to(carol, "member.removed carol online")]);
    assert_eq!(poll(&e, bob), [to(bob, "member.added carol online"), to(bob, "member.removed carol online")]);
    assert_eq!(
        poll(&e, carol),
        [to(carol, "member.added carol online"), to(carol, "member.removed carol online")]
    );
    assert!(poll(&e, outsider).is_empty(), "not a watcher");
}

#[test]
fn delete_channel_ends_watching_and_membership_silently() {
    let e = manual_engine("");
    e.upsert_channel_json(r#"{"type":"team","id":"red","members":["alice","bob"]}"#).unwrap();
    let bob = e.connect_json(r#"{"id":"bob"}"#).unwrap();
    let alice = e.connect_json(r#"{"id":"alice"}"#).unwrap();
    e.watch_channel(bob, "team:red", true).unwrap();
    e.watch_channel(alice, "team:red", false).unwrap();
    poll(&e, bob);
    let rec = Recorder::attach(&e);
    let d = Deliveries::attach(&e);
    e.delete_channel("team:red").unwrap();
    assert!(rec.take().is_empty(), "no events");
    assert!(d.take().is_empty());
    assert_eq!(e.counts(), (2, 2, 0));
    assert_eq!(kind(e.watch_channel_state(bob, "team:red", false)), ErrorKind::NotFound);
    // Bob's presence subscription through the channel is gone.
    e.set_status("alice", Some("away")).unwrap();
    assert_eq!(rec.take(), ["user.presence.changed alice online"]);
    assert!(d.take().is_empty());
    assert!(poll(&e, bob).is_empty());
    // A channel re-created with the same cid starts empty: no members, no watchers.
    e.upsert_channel_json(r#"{"type":"team","id":"red"}"#).unwrap();
    assert_eq!(host_state(&e, "team:red")["members"], json!([]));
    assert_eq!(host_state(&e, "team:red")["watcher_count"], 0);
    e.add_members("team:red", &strings(&["alice"])).unwrap();
    assert!(d.take().is_empty(), "bob and alice no longer watch it");
    e.stop_watching(bob, "team:red").unwrap();
    e.disconnect(alice).unwrap();
    assert_eq!(
        rec.take(),
        [
            "member.added alice online",
            "user.presence.changed alice offline",
            "connection.closed alice offline"
        ]
    );
}

// ----- presence subscriptions (SPEC section 4) -----

#[test]
fn route_1_watch_with_presence_covers_current_and_future_members_until_stop() {
    let e = manual_engine("");
    e.upsert_channel_json(r#"{"type":"team","id":"red","members":["alice"]}"#).unwrap();
    e.upsert_user_json(r#"{"id":"carol"}"#).unwrap();
    let bob = e.connect_json(r#"{"id":"bob"}"#).unwrap();
    e.watch_channel(bob, "team:red", true).unwrap();
    assert_eq!(poll(&e, bob), [to(bob, "user.watching.start bob online")]);

    let alice = e.connect_json(r#"{"id":"alice"}"#).unwrap();
    e.upsert_user_json(r#"{"id":"alice","name":"Alice"}"#).unwrap();
    e.set_status("carol", Some("not a member yet")).unwrap();
    assert_eq!(
        poll(&e, bob),
        [to(bob, "user.presence.changed alice online"), to(bob, "user.updated alice online")]
    );
    // A future member is subscribed from the moment it is added...
    e.add_members("team:red", &strings(&["carol"])).unwrap();
    let carol = e.connect_json(r#"{"id":"carol"}"#).unwrap();
    assert_eq!(
        poll(&e, bob),
        [to(bob, "member.added carol offline"), to(bob, "user.presence.changed carol online")]
    );
    // ...also through an upsert naming a user that does not exist yet.
    e.upsert_channel_json(r#"{"cid":"team:red","members":["dave"]}"#).unwrap();
    let dave = e.connect_json(r#"{"id":"dave"}"#).unwrap();
    assert_eq!(
        poll(&e, bob),
        [to(bob, "member.added dave offline"), to(bob, "user.presence.changed dave online")]
    );
    // ...and a removed member drops out.
    e.remove_members("team:red", &strings(&["carol"])).unwrap();
    e.disconnect(carol).unwrap();
    assert_eq!(poll(&e, bob), [to(bob, "member.removed carol online")]);

    // Stopping the watch ends the route.
    e.stop_watching(bob, "team:red").unwrap();
    e.disconnect(alice).unwrap();
    e.set_status("dave", Some("x")).unwrap();
    assert!(poll(&e, bob).is_empty());
    // Watching again without presence gives watcher events but no presence.
    e.watch_channel(bob, "team:red", false).unwrap();
    e.set_status("dave", Some("y")).unwrap();
    assert_eq!(poll(&e, bob), [to(bob, "user.watching.start bob online")]);
    // Upgrading the watch to presence subscribes.
    e.watch_channel(bob, "team:red", true).unwrap();
    e.set_status("dave", Some("z")).unwrap();
    assert_eq!(poll(&e, bob), [to(bob, "user.presence.changed dave online")]);
    // Watching again without presence never removes it.
    e.watch_channel(bob, "team:red", false).unwrap();
    e.disconnect(dave).unwrap();
    assert_eq!(poll(&e, bob), [to(bob, "user.presence.changed dave offline")]);
}

#[test]
fn route_1_ends_when_the_watching_connection_closes() {
    let e = manual_engine("");
    e.upsert_channel_json(r#"{"type":"team","id":"red","members":["alice"]}"#).unwrap();
    let b1 = e.connect_json(r#"{"id":"bob"}"#).unwrap();
    let b2 = e.connect_json(r#"{"id":"bob"}"#).unwrap();
    e.watch_channel(b1, "team:red", true).unwrap();
    e.watch_channel(b2, "team:red", true).unwrap();
    let d = Deliveries::attach(&e);
    let alice = e.connect_json(r#"{"id":"alice"}"#).unwrap();
    assert_eq!(
        d.take(),
        [to(b1, "user.presence.changed alice online"), to(b2, "user.presence.changed alice online")]
    );
    e.disconnect(b1).unwrap();
    assert!(d.take().is_empty(), "bob still watches through b2: no watching.stop, no presence change");
    assert_eq!(kind(e.poll_events(b1, 10)), ErrorKind::NotFound);
    e.disconnect(alice).unwrap();
    assert_eq!(d.take(), [to(b2, "user.presence.changed alice offline")]);
}

#[test]
fn route_2_query_channels_with_presence_watches_and_subscribes() {
    let e = manual_engine("");
    e.upsert_channel_json(r#"{"type":"team","id":"red","members":["alice","bob"]}"#).unwrap();
    e.upsert_channel_json(r#"{"type":"team","id":"blue","members":["carol"]}"#).unwrap();
    e.upsert_channel_json(r#"{"type":"dm","id":"x","members":["dave"]}"#).unwrap();
    let bob = e.connect_json(r#"{"id":"bob"}"#).unwrap();
    let d = Deliveries::attach(&e);
    let answer = e
        .query_channels(bob, r#"{"filter_conditions":{"type":"team"},"sort":{"cid":1},"presence":true}"#)
        .unwrap();
    assert_eq!(cids(&answer), ["team:blue", "team:red"]);
    // The answer is the state after watching: bob is a watcher of both.
    for state in answer["channels"].as_array().unwrap() {
        assert_eq!(watcher_ids(state), ["bob"]);
        assert_eq!(state["watcher_count"], 1);
    }
    assert_eq!(answer["channels"][1], e.watch_channel_state(bob, "team:red", false).unwrap());
    assert_eq!(
        d.take(),
        [to(bob, "user.watching.start bob online"), to(bob, "user.watching.start bob online")]
    );
    poll(&e, bob);
    let carol = e.connect_json(r#"{"id":"carol"}"#).unwrap();
    let alice = e.connect_json(r#"{"id":"alice"}"#).unwrap();
    let dave = e.connect_json(r#"{"id":"dave"}"#).unwrap();
    assert_eq!(
        poll(&e, bob),
        [to(bob, "user.presence.changed carol online"), to(bob, "user.presence.changed alice online")],
        "dm:x was not returned"
    );
    // Future members of a returned channel are covered as well.
    e.add_members("team:blue", &strings(&["dave"])).unwrap();
    e.set_status("dave", Some("hi")).unwrap();
    assert_eq!(
        poll(&e, bob),
        [to(bob, "member.added dave online"), to(bob, "user.presence.changed dave online")]
    );
    // The route ends like a watch: stop_watching or disconnect.
    e.stop_watching(bob, "team:blue").unwrap();
    e.disconnect(carol).unwrap();
    e.disconnect(dave).unwrap();
    e.disconnect(alice).unwrap();
    assert_eq!(poll(&e, bob), [to(bob, "user.presence.changed alice offline")]);
}

#[test]
fn query_channels_with_watch_only_watches_without_subscribing() {
    let e = manual_engine("");
    e.upsert_channel_json(r#"{"type":"team","id":"red","members":["alice"]}"#).unwrap();
    let bob = e.connect_json(r#"{"id":"bob"}"#).unwrap();
    let answer = e.query_channels(bob, r#"{"watch":true}"#).unwrap();
    assert_eq!(answer["channels"][0]["watcher_count"], 1);
    assert_eq!(poll(&e, bob), [to(bob, "user.watching.start bob online")]);
    let alice = e.connect_json(r#"{"id":"alice"}"#).unwrap();
    assert!(poll(&e, bob).is_empty(), "watch without presence: no presence events");
    e.watch_channel(alice, "team:red", false).unwrap();
    assert_eq!(poll(&e, bob), [to(bob, "user.watching.start alice online")]);
    // A plain query neither watches nor subscribes.
    let carol = e.connect_json(r#"{"id":"carol"}"#).unwrap();
    let plain = e.query_channels(carol, "{}").unwrap();
    assert_eq!(plain["channels"][0]["watcher_count"], 2);
    assert!(poll(&e, carol).is_empty());
    e.disconnect(alice).unwrap();
    assert!(poll(&e, carol).is_empty());
}

#[test]
fn route_3_query_users_with_presence_until_unsubscribe_or_disconnect() {
    let e = manual_engine("");
    for id in ["alice", "carol", "dave"] {
        e.upsert_user_json(&json!({ "id": id }).to_string()).unwrap();
    }
    let bob = e.connect_json(r#"{"id":"bob"}"#).unwrap();
    let answer = e
        .query_users(
            bob,
            r#"{"filter_conditions":{"id":{"$in":["alice","carol","dave"]}},"sort":{"id":1},"limit":2,"presence":true}"#,
        )
        .unwrap();
    assert_eq!(ids(&answer), ["alice", "carol"]);
    assert!(poll(&e, bob).is_empty(), "subscribing emits nothing");
    let alice = e.connect_json(r#"{"id":"alice"}"#).unwrap();
    let carol = e.connect_json(r#"{"id":"carol"}"#).unwrap();
    let dave = e.connect_json(r#"{"id":"dave"}"#).unwrap();
    e.upsert_user_json(r#"{"id":"carol","level":3}"#).unwrap();
    assert_eq!(
        poll(&e, bob),
        [
            to(bob, "user.presence.changed alice online"),
            to(bob, "user.presence.changed carol online"),
            to(bob, "user.updated carol online"),
        ],
        "dave was cut by the limit: not subscribed"
    );
    e.unsubscribe_user(bob, "alice").unwrap();
    e.unsubscribe_user(bob, "alice").unwrap();
    e.unsubscribe_user(bob, "dave").unwrap();
    assert_eq!(kind(e.unsubscribe_user(bob, "nobody")), ErrorKind::NotFound);
    assert_eq!(kind(e.unsubscribe_user(ConnectionId(99), "alice")), ErrorKind::NotFound);
    e.disconnect(alice).unwrap();
    e.disconnect(carol).unwrap();
    e.disconnect(dave).unwrap();
    assert_eq!(poll(&e, bob), [to(bob, "user.presence.changed carol offline")]);
    // No watching events: query_users never watches anything.
    // The route ends with the connection: a new connection of bob starts clean.
    e.disconnect(bob).unwrap();
    let bob2 = e.connect_json(r#"{"id":"bob"}"#).unwrap();
    e.connect_json(r#"{"id":"carol"}"#).unwrap();
    assert!(poll(&e, bob2).is_empty());
}

#[test]
fn a_user_reached_by_several_routes_is_delivered_once_and_each_route_holds_on_its_own() {
    let e = manual_engine("");
    e.upsert_channel_json(r#"{"type":"team","id":"red","members":["alice","bob"]}"#).unwrap();
    e.upsert_channel_json(r#"{"type":"team","id":"blue","members":["alice"]}"#).unwrap();
    let bob = e.connect_json(r#"{"id":"bob"}"#).unwrap();
    let alice = e.connect_json(r#"{"id":"alice"}"#).unwrap();
    e.watch_channel(bob, "team:red", true).unwrap();
    e.query_channels(bob, r#"{"filter_conditions":{"cid":"team:blue"},"presence":true}"#).unwrap();
    e.query_users(bob, r#"{"filter_conditions":{"id":"alice"},"presence":true}"#).unwrap();
    poll(&e, bob);
    let d = Deliveries::attach(&e);
    let mut status = 0;
    let mut change = |e: &Engine| {
        status += 1;
        e.set_status("alice", Some(&status.to_string())).unwrap();
    };

    change(&e);
    assert_eq!(d.take(), [to(bob, "user.presence.changed alice online")], "three routes, one delivery");
    e.unsubscribe_user(bob, "alice").unwrap();
    change(&e);
    assert_eq!(d.take(), [to(bob, "user.presence.changed alice online")], "two channel routes left");
    e.stop_watching(bob, "team:red").unwrap();
    change(&e);
    assert_eq!(d.take(), [to(bob, "user.presence.changed alice online")], "team:blue left");
    // Re-adding the direct route, then leaving the last channel route.
    e.query_users(bob, r#"{"filter_conditions":{"id":"alice"},"presence":true}"#).unwrap();
    e.remove_members("team:blue", &strings(&["alice"])).unwrap();
    change(&e);
    assert_eq!(
        d.take(),
        [to(bob, "member.removed alice online"), to(bob, "user.presence.changed alice online")],
        "the direct route holds after the member left"
    );
    // unsubscribe_user never ends a channel route.
    e.watch_channel(bob, "team:red", true).unwrap();
    e.unsubscribe_user(bob, "alice").unwrap();
    change(&e);
    assert_eq!(
        d.take(),
        [to(bob, "user.watching.start bob online"), to(bob, "user.presence.changed alice online")]
    );
    // Removed from the only presence channel: nothing left.
    e.remove_members("team:red", &strings(&["alice"])).unwrap();
    change(&e);
    e.disconnect(alice).unwrap();
    assert_eq!(d.take(), [to(bob, "member.removed alice online")]);
    // The queue saw exactly what the delivery listener saw.
    assert_eq!(poll(&e, bob).len(), 8);
}

#[test]
fn presence_subscription_to_oneself_and_views_per_recipient_in_the_same_event() {
    let e = manual_engine("");
    e.upsert_channel_json(r#"{"type":"team","id":"red","members":["alice","bob"]}"#).unwrap();
    let alice = e.connect_json(r#"{"id":"alice","status":"here"}"#).unwrap();
    let bob = e.connect_json(r#"{"id":"bob"}"#).unwrap();
    e.watch_channel(alice, "team:red", true).unwrap();
    e.watch_channel(bob, "team:red", true).unwrap();
    let d = Deliveries::attach(&e);
    e.set_time(T0 + MINUTE).unwrap();
    e.set_invisible("alice", true).unwrap();
    let raw = d.take_raw();
    let mut lines: Vec<String> = raw.iter().map(describe_delivery).collect();
    lines.sort();
    assert_eq!(
        lines,
        [
            to(alice, "user.presence.changed alice online"),
            to(alice, "user.watching.stop alice online"),
            to(bob, "user.presence.changed alice offline"),
            to(bob, "user.watching.stop alice offline"),
        ]
    );
    let changed: Vec<&Delivery> =
        raw.iter().filter(|x| x.event.type_name() == "user.presence.changed").collect();
    assert_eq!(changed[0].event.seq, changed[1].event.seq, "the same event");
    assert!(Arc::ptr_eq(&changed[0].event, &changed[1].event), "shared, not copied");
    let view_of = |c: ConnectionId| {
        raw.iter().find(|x| x.connection == c && x.event.seq == changed[0].event.seq).unwrap().to_value()
    };
    let m1 = at_min(1);
    let public = json!({"id":"alice","online":false,"status":"here","last_active":m1,"created_at":T0S,"updated_at":T0S});
    assert_eq!(
        view_of(bob),
        json!({"type":"user.presence.changed","created_at":m1,"seq":changed[0].event.seq,
               "connection_id":bob.0,"user":public.clone()})
    );
    assert_eq!(
        view_of(alice),
        json!({"type":"user.presence.changed","created_at":m1,"seq":changed[0].event.seq,
               "connection_id":alice.0,"user":own(with(public, json!({"online":true})), true)})
    );
    // The watching.stop event: watcher_count 1 (bob), alice rendered per recipient.
    let stops: Vec<Value> =
        raw.iter().filter(|x| x.event.type_name() == "user.watching.stop").map(|x| x.to_value()).collect();
    for s in &stops {
        assert_eq!(s["watcher_count"], 1);
        let is_alice = s["connection_id"] == alice.0;
        assert_eq!(s["user"]["online"], is_alice);
        assert_eq!(s["user"].get("invisible").is_some(), is_alice);
    }
}

// ----- delivery -----

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
    assert_eq!(e.counts().1, 3, "bob's queue is full (4 entries) but has not overflowed");
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
    assert_eq!(e.counts().1, 2);
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
    assert_eq!(e.counts().1, 1, "no queue, no overflow: bob stays connected");
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
            e.set_status(x.event.user_id(), Some("welcome")).unwrap();
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
fn max_subscriptions_per_connection_answers_limit_and_changes_nothing() {
    let e = manual_engine(r#""max_subscriptions_per_connection":3"#);
    e.upsert_channel_json(r#"{"type":"team","id":"big","members":["m1","m2","m3","m4"]}"#).unwrap();
    e.upsert_channel_json(r#"{"type":"team","id":"small","members":["m1","m2","m3"]}"#).unwrap();
    e.upsert_channel_json(r#"{"type":"team","id":"pair","members":["m1","m2"]}"#).unwrap();
    let bob = e.connect_json(r#"{"id":"bob"}"#).unwrap();
    let m4 = e.connect_json(r#"{"id":"m4"}"#).unwrap();
    let rec = Recorder::attach(&e);
    let d = Deliveries::attach(&e);
    let unchanged = |rec: &Recorder, d: &Deliveries| {
        assert!(rec.take().is_empty(), "no event");
        assert!(d.take().is_empty(), "no delivery");
    };

    // watch_channel / watch_channel_state with presence over the limit.
    assert_eq!(kind(e.watch_channel(bob, "team:big", true)), ErrorKind::Limit);
    assert_eq!(kind(e.watch_channel_state(bob, "team:big", true)), ErrorKind::Limit);
    unchanged(&rec, &d);
    assert_eq!(host_state(&e, "team:big")["watcher_count"], 0, "not watching");
    // Watching without presence needs no subscription; upgrading it is refused and keeps the watch.
    e.watch_channel(bob, "team:big", false).unwrap();
    assert_eq!(d.take(), [to(bob, "user.watching.start bob online")]);
    rec.take();
    assert_eq!(kind(e.watch_channel(bob, "team:big", true)), ErrorKind::Limit);
    e.set_status("m1", Some("x")).unwrap();
    rec.take();
    assert!(d.take().is_empty(), "still no presence subscription");
    e.stop_watching(bob, "team:big").unwrap();
    rec.take();

    // Exactly at the limit is fine; users already subscribed do not count again.
    e.watch_channel(bob, "team:small", true).unwrap();
    e.watch_channel(bob, "team:pair", true).unwrap();
    e.query_users(bob, r#"{"filter_conditions":{"id":{"$in":["m1","m3"]}},"presence":true}"#).unwrap();
    e.query_channels(
        bob,
        r#"{"filter_conditions":{"cid":{"$in":["team:small","team:pair"]}},"presence":true}"#,
    )
    .unwrap();
    rec.take();
    d.take();

    // add_members / upsert_channel into a channel bob watches with presence.
    assert_eq!(kind(e.add_members("team:small", &strings(&["m4"]))), ErrorKind::Limit);
    assert_eq!(kind(e.add_members_json("team:small", r#"["newbie"]"#)), ErrorKind::Limit);
    assert_eq!(
        kind(e.upsert_channel_json(r#"{"cid":"team:small","members":["m4"],"color":"blue"}"#)),
        ErrorKind::Limit
    );
    unchanged(&rec, &d);
    assert_eq!(
        host_state(&e, "team:small")["channel"],
        json!({"cid":"team:small","type":"team","id":"small","member_count":3,"created_at":T0S,"updated_at":T0S})
    );
    assert_eq!(kind(e.get_user(HOST, "newbie")), ErrorKind::NotFound);
    e.add_members("team:small", &strings(&["m1", "m2"])).unwrap();
    e.add_members("team:big", &strings(&["newbie"])).unwrap();
    assert_eq!(rec.take(), ["member.added newbie offline"], "team:big has no presence watcher");

    // query_users / query_channels with presence over the limit.
    assert_eq!(
        kind(e.query_users(bob, r#"{"filter_conditions":{"id":{"$in":["m4","m1"]}},"presence":true}"#)),
        ErrorKind::Limit
    );
    assert_eq!(
        kind(e.query_channels(bob, r#"{"filter_conditions":{"cid":"team:big"},"presence":true}"#)),
        ErrorKind::Limit
    );
    unchanged(&rec, &d);
    assert_eq!(host_state(&e, "team:big")["watcher_count"], 0, "query_channels did not watch");
    e.set_status("m4", Some("busy")).unwrap();
    rec.take();
    assert!(d.take().is_empty(), "bob is not subscribed to m4");
    // A plain query (no presence) is never limited.
    assert_eq!(
        ids(&e
            .query_users(bob, r#"{"filter_conditions":{"id":{"$in":["m4","m1"]}},"sort":{"id":1}}"#)
            .unwrap()),
        ["m1", "m4"]
    );

    // Leaving a route frees room; another connection has its own budget.
    e.stop_watching(bob, "team:small").unwrap();
    e.unsubscribe_user(bob, "m3").unwrap();
    e.query_users(bob, r#"{"filter_conditions":{"id":"m4"},"presence":true}"#).unwrap();
    let b2 = e.connect_json(r#"{"id":"bob"}"#).unwrap();
    e.watch_channel(b2, "team:small", true).unwrap();
    rec.take();
    d.take();
    e.disconnect(m4).unwrap();
    assert_eq!(d.take(), [to(bob, "user.presence.changed m4 offline")]);
}

// ----- queries through the engine (SPEC section 6) -----

/// Five users with distinct created_at, custom fields, last_active and online flags:
/// ann (online, la +5), bob (online, la +6), cyd (never connected), dee (offline, la +8),
/// eve (never connected, updated at +9). Answers ann's connection.
fn user_fixture(e: &Engine) -> ConnectionId {
    let users = [
        r#"{"id":"ann","name":"Ann Lee","age":30,"tags":["x","y"],"team":"red"}"#,
        r#"{"id":"bob","name":"Bob","age":25,"team":"blue"}"#,
        r#"{"id":"cyd","name":"bobby tables","status":"busy","tags":["y"]}"#,
        r#"{"id":"dee","age":40,"team":"red"}"#,
        r#"{"id":"eve"}"#,
    ];
    for (i, u) in users.iter().enumerate() {
        e.set_time(T0 + i as i64 * MINUTE).unwrap();
        e.upsert_user_json(u).unwrap();
    }
    e.set_time(T0 + 5 * MINUTE).unwrap();
    let ann = e.connect_json(r#"{"id":"ann"}"#).unwrap();
    e.set_time(T0 + 6 * MINUTE).unwrap();
    e.connect_json(r#"{"id":"bob"}"#).unwrap();
    e.set_time(T0 + 7 * MINUTE).unwrap();
    let dee = e.connect_json(r#"{"id":"dee"}"#).unwrap();
    e.set_time(T0 + 8 * MINUTE).unwrap();
    e.disconnect(dee).unwrap();
    e.set_time(T0 + 9 * MINUTE).unwrap();
    e.upsert_user_json(r#"{"id":"eve","team":"green"}"#).unwrap();
    ann
}

#[test]
fn user_queries_support_every_operator_and_field() {
    let e = manual_engine("");
    let ann = user_fixture(&e);
    let q = |filter: Value| -> Vec<String> {
        let v = e.query_users(ann, &json!({ "filter_conditions": filter }).to_string()).unwrap();
        let via_host = e.query_users(HOST, &json!({ "filter_conditions": filter }).to_string()).unwrap();
        assert_eq!(ids(&v), ids(&via_host), "no invisible user here: every viewer agrees on {filter}");
        ids(&v)
    };
    // Default sort: created_at descending.
    assert_eq!(q(json!({})), ["eve", "dee", "cyd", "bob", "ann"]);
    assert_eq!(q(json!({"team": "red"})), ["dee", "ann"]);
    assert_eq!(q(json!({"team": {"$eq": "red"}})), ["dee", "ann"]);
    assert_eq!(q(json!({"team": {"$ne": "red"}})), ["eve", "cyd", "bob"], "$ne matches a missing field");
    assert_eq!(q(json!({"age": {"$gt": 25}})), ["dee", "ann"]);
    assert_eq!(q(json!({"age": {"$gte": 30}})), ["dee", "ann"]);
    assert_eq!(q(json!({"age": {"$lt": 30}})), ["bob"]);
    assert_eq!(q(json!({"age": {"$lte": 30}})), ["bob", "ann"]);
    assert_eq!(q(json!({"age": {"$gt": 20, "$lt": 35}})), ["bob", "ann"]);
    assert_eq!(q(json!({"id": {"$in": ["ann", "cyd", "zzz"]}})), ["cyd", "ann"]);
    assert_eq!(q(json!({"id": {"$nin": ["ann", "cyd"]}})), ["eve", "dee", "bob"]);
    assert_eq!(q(json!({"id": "bob"})), ["bob"]);
    assert_eq!(q(json!({"id": {"$gt": "cyd"}})), ["eve", "dee"]);
    assert_eq!(q(json!({"status": {"$exists": true}})), ["cyd"]);
    assert_eq!(q(json!({"status": "busy"})), ["cyd"]);
    assert_eq!(q(json!({"age": {"$exists": false}})), ["eve", "cyd"]);
    assert_eq!(q(json!({"name": {"$autocomplete": "bo"}})), ["cyd", "bob"]);
    assert_eq!(q(json!({"name": {"$autocomplete": "LEE"}})), ["ann"]);
    assert_eq!(q(json!({"name": {"$autocomplete": "tab"}})), ["cyd"]);
    assert_eq!(q(json!({"id": {"$autocomplete": "d"}})), ["dee"]);
    assert_eq!(q(json!({"tags": {"$contains": "y"}})), ["cyd", "ann"]);
    assert_eq!(q(json!({"tags": {"$contains": "x"}})), ["ann"]);
    assert_eq!(q(json!({"name": {"$contains": "ob"}})), ["cyd", "bob"]);
    assert_eq!(q(json!({"$and": [{"team": "red"}, {"age": {"$gt": 35}}]})), ["dee"]);
    assert_eq!(q(json!({"$or": [{"team": "blue"}, {"status": "busy"}]})), ["cyd", "bob"]);
    assert_eq!(q(json!({"$nor": [{"team": "red"}, {"online": true}]})), ["eve", "cyd"]);
    assert_eq!(q(json!({"online": true})), ["bob", "ann"]);
    assert_eq!(q(json!({"online": false})), ["eve", "dee", "cyd"]);
    assert_eq!(q(json!({"online": {"$ne": true}, "team": "red"})), ["dee"]);
    assert_eq!(q(json!({"last_active": {"$gte": at_min(6)}})), ["dee", "bob"]);
    assert_eq!(q(json!({"last_active": {"$exists": false}})), ["eve", "cyd"]);
    assert_eq!(q(json!({"created_at": {"$lt": at_min(2)}})), ["bob", "ann"]);
    assert_eq!(q(json!({"created_at": at_min(3)})), ["dee"]);
    assert_eq!(q(json!({"updated_at": {"$gt": at_min(4)}})), ["eve"]);
    // Timestamps in any RFC 3339 offset.
    assert_eq!(q(json!({"created_at": {"$lte": "2019-01-07T14:19:42.375+01:00"}})), ["cyd", "bob", "ann"]);
}

#[test]
fn user_queries_sort_in_both_forms_with_missing_values_last_and_ties_by_id() {
    let e = manual_engine("");
    let ann = user_fixture(&e);
    let q = |sort: Value| -> Vec<String> {
        ids(&e.query_users(ann, &json!({ "sort": sort }).to_string()).unwrap())
    };
    assert_eq!(q(json!([{"field": "age", "direction": 1}])), ["bob", "ann", "dee", "cyd", "eve"]);
    assert_eq!(q(json!({"age": 1})), ["bob", "ann", "dee", "cyd", "eve"]);
    assert_eq!(q(json!({"age": -1})), ["dee", "ann", "bob", "cyd", "eve"], "missing last in both directions");
    assert_eq!(q(json!({"last_active": -1})), ["dee", "bob", "ann", "cyd", "eve"]);
    assert_eq!(q(json!({"last_active": 1})), ["ann", "bob", "dee", "cyd", "eve"]);
    assert_eq!(q(json!({"created_at": 1})), ["ann", "bob", "cyd", "dee", "eve"]);
    assert_eq!(q(json!({"updated_at": -1})), ["eve", "dee", "cyd", "bob", "ann"]);
    assert_eq!(q(json!({"id": -1})), ["eve", "dee", "cyd", "bob", "ann"]);
    assert_eq!(q(json!({"team": 1})), ["bob", "eve", "ann", "dee", "cyd"], "the red tie breaks by id");
    assert_eq!(q(json!({"team": -1})), ["ann", "dee", "eve", "bob", "cyd"], "ties stay ascending by id");
    assert_eq!(
        q(json!([{"field": "team", "direction": 1}, {"field": "id", "direction": -1}])),
        ["bob", "eve", "dee", "ann", "cyd"]
    );
    assert_eq!(q(json!({"online": -1})), ["ann", "bob", "cyd", "dee", "eve"]);
    assert_eq!(q(json!({"status": 1})), ["cyd", "ann", "bob", "dee", "eve"]);
    assert_eq!(q(json!([])), ["eve", "dee", "cyd", "bob", "ann"], "an empty sort is the default");
}

#[test]
fn user_queries_page_with_offset_and_limit() {
    let e = manual_engine("");
    let ann = user_fixture(&e);
    let q = |extra: &str| -> presence::Result<Vec<String>> {
        e.query_users(ann, &format!(r#"{{"sort":{{"id":1}}{extra}}}"#)).map(|v| ids(&v))
    };
    assert_eq!(q(r#","limit":2"#).unwrap(), ["ann", "bob"]);
    assert_eq!(q(r#","limit":2,"offset":2"#).unwrap(), ["cyd", "dee"]);
    assert_eq!(q(r#","limit":2,"offset":4"#).unwrap(), ["eve"]);
    assert_eq!(q(r#","offset":5"#).unwrap(), Vec::<String>::new(), "offset at the end");
    assert_eq!(q(r#","offset":10000"#).unwrap(), Vec::<String>::new(), "offset past the end");
    assert_eq!(q(r#","limit":100"#).unwrap().len(), 5);
    assert_eq!(q(r#","limit":null,"offset":null"#).unwrap().len(), 5);
    assert_eq!(kind(q(r#","offset":10001"#)), ErrorKind::Invalid);
    assert_eq!(kind(q(r#","offset":-1"#)), ErrorKind::Invalid);
    assert_eq!(kind(q(r#","limit":0"#)), ErrorKind::Invalid);
    assert_eq!(kind(q(r#","limit":-3"#)), ErrorKind::Invalid);
    assert_eq!(kind(q(r#","limit":101"#)), ErrorKind::Limit);
    assert_eq!(kind(q(r#","limit":1.5"#)), ErrorKind::Invalid);
    assert_eq!(kind(q(r#","limit":"2""#)), ErrorKind::Json);

    // Default limit 30; query_limit_max caps both the limit and the default.
    let big = manual_engine(r#""query_limit_max":40"#);
    for i in 0..45 {
        big.upsert_user_json(&json!({ "id": format!("u{i:02}") }).to_string()).unwrap();
    }
    assert_eq!(ids(&big.query_users(HOST, "{}").unwrap()).len(), 30);
    assert_eq!(ids(&big.query_users(HOST, r#"{"limit":40}"#).unwrap()).len(), 40);
    assert_eq!(kind(big.query_users(HOST, r#"{"limit":41}"#)), ErrorKind::Limit);
    assert_eq!(
        ids(&big.query_users(HOST, r#"{"offset":40,"sort":{"id":-1}}"#).unwrap()),
        ["u04", "u03", "u02", "u01", "u00"]
    );
    let small = manual_engine(r#""query_limit_max":3"#);
    for i in 0..5 {
        small.upsert_user_json(&json!({ "id": format!("u{i}") }).to_string()).unwrap();
    }
    assert_eq!(ids(&small.query_users(HOST, "{}").unwrap()).len(), 3);
    assert_eq!(kind(small.query_users(HOST, r#"{"limit":4}"#)), ErrorKind::Limit);
}

#[test]
fn malformed_queries_are_rejected_with_the_right_kind() {
    let e = manual_engine("");
    let ann = user_fixture(&e);
    e.upsert_channel_json(r#"{"type":"team","id":"red","members":["ann"]}"#).unwrap();
    let users = |q: &str| e.query_users(ann, q);
    let channels = |q: &str| e.query_channels(ann, q);
    let err = users(r#"{"filter_conditions":{"age":{"$regex":"3"}}}"#).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Invalid);
    assert!(err.message().contains("$regex"), "{}", err.message());
    let err = users(r#"{"filter_conditions":{"$xor":[{"id":"a"}]}}"#).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Invalid);
    assert!(err.message().contains("$xor"), "{}", err.message());
    for bad in [
        r#"{"filter_conditions":{"online":"yes"}}"#,
        r#"{"filter_conditions":{"id":5}}"#,
        r#"{"filter_conditions":{"id":{"$in":"ann"}}}"#,
        r#"{"filter_conditions":{"created_at":{"$gt":5}}}"#,
        r#"{"filter_conditions":{"last_active":"yesterday"}}"#,
        r#"{"filter_conditions":{"status":{"$exists":1}}}"#,
        r#"{"filter_conditions":{"online":{"$autocomplete":"t"}}}"#,
        r#"{"filter_conditions":{"$or":[]}}"#,
        r#"{"filter_conditions":{"$and":{"id":"ann"}}}"#,
        r#"{"sort":{"age":2}}"#,
        r#"{"sort":{"age":"asc"}}"#,
    ] {
        assert_eq!(kind(users(bad)), ErrorKind::Invalid, "{bad}");
    }
    for bad in [
        r#"{"filter_conditions":{"member_count":"two"}}"#,
        r#"{"filter_conditions":{"members":{"$in":[1]}}}"#,
        r#"{"filter_conditions":{"members":{"$nin":["ann"]}}}"#,
        r#"{"filter_conditions":{"last_message_at":{"$lt":"soon"}}}"#,
        r#"{"filter_conditions":{"cid":{"$bogus":1}}}"#,
        r#"{"sort":{"members":1}}"#,
    ] {
        assert_eq!(kind(channels(bad)), ErrorKind::Invalid, "{bad}");
    }
    for bad in ["{", "[]", "", r#"{"filter_conditions":[]}"#, r#"{"unknown":1}"#, r#"{"presence":"yes"}"#] {
        assert_eq!(kind(users(bad)), ErrorKind::Json, "{bad}");
        assert_eq!(kind(channels(bad)), ErrorKind::Json, "{bad}");
    }
    assert_eq!(kind(users(r#"{"watch":true}"#)), ErrorKind::Json, "watch is for channels only");
    // The host cannot subscribe or watch; unknown viewers are NotFound.
    assert_eq!(kind(e.query_users(HOST, r#"{"presence":true}"#)), ErrorKind::Invalid);
    assert_eq!(kind(e.query_channels(HOST, r#"{"presence":true}"#)), ErrorKind::Invalid);
    assert_eq!(kind(e.query_channels(HOST, r#"{"watch":true}"#)), ErrorKind::Invalid);
    assert_eq!(kind(e.query_users(ConnectionId(99), "{}")), ErrorKind::NotFound);
    assert_eq!(kind(e.query_channels(ConnectionId(99), "{}")), ErrorKind::NotFound);
    // A rejected query changed nothing: ann watches nothing and is subscribed to nobody.
    assert_eq!(host_state(&e, "team:red")["watcher_count"], 0);
    assert!(poll(&e, ann).is_empty());
}

/// team:red (ann, bob; last message +30), team:blue (bob; +10), dm:ann-cyd (no last message),
/// team:green (no members; +20), created a minute apart; team:red's color changed at +4.
fn channel_fixture(e: &Engine) {
    let channels = [
        json!({"type":"team","id":"red","members":["ann","bob"],"color":"red","last_message_at":at_min(30)}),
        json!({"type":"team","id":"blue","members":["bob"],"color":"blue","last_message_at":at_min(10)}),
        json!({"type":"dm","id":"ann-cyd","members":["ann","cyd"]}),
        json!({"type":"team","id":"green","size":5,"last_message_at":at_min(20)}),
    ];
    for (i, c) in channels.iter().enumerate() {
        e.set_time(T0 + i as i64 * MINUTE).unwrap();
        e.upsert_channel_json(&c.to_string()).unwrap();
    }
    e.set_time(T0 + 4 * MINUTE).unwrap();
    e.upsert_channel_json(r#"{"cid":"team:red","color":"crimson"}"#).unwrap();
}

#[test]
fn channel_queries_support_every_field_sort_and_page() {
    let e = manual_engine("");
    channel_fixture(&e);
    let viewer = e.connect_json(r#"{"id":"ann"}"#).unwrap();
    let q = |query: Value| -> Vec<String> {
        let v = e.query_channels(viewer, &query.to_string()).unwrap();
        assert_eq!(cids(&v), cids(&e.query_channels(HOST, &query.to_string()).unwrap()));
        cids(&v)
    };
    let f = |filter: Value| q(json!({ "filter_conditions": filter }));
    // Default sort: last_message_at descending, missing last.
    assert_eq!(f(json!({})), ["team:red", "team:green", "team:blue", "dm:ann-cyd"]);
    assert_eq!(f(json!({"type": "team"})), ["team:red", "team:green", "team:blue"]);
    assert_eq!(f(json!({"type": {"$ne": "team"}})), ["dm:ann-cyd"]);
    assert_eq!(f(json!({"id": "red"})), ["team:red"]);
    assert_eq!(f(json!({"id": {"$autocomplete": "cy"}})), ["dm:ann-cyd"]);
    assert_eq!(f(json!({"cid": "team:blue"})), ["team:blue"]);
    assert_eq!(f(json!({"cid": {"$in": ["team:blue", "dm:ann-cyd", "x:y"]}})), ["team:blue", "dm:ann-cyd"]);
    assert_eq!(f(json!({"cid": {"$nin": ["team:blue", "dm:ann-cyd"]}})), ["team:red", "team:green"]);
    assert_eq!(f(json!({"members": {"$in": ["bob"]}})), ["team:red", "team:blue"]);
    assert_eq!(f(json!({"members": {"$in": ["cyd", "bob"]}})), ["team:red", "team:blue", "dm:ann-cyd"]);
    assert_eq!(f(json!({"members": "ann"})), ["team:red", "dm:ann-cyd"]);
    assert_eq!(f(json!({"members": {"$eq": "ann"}})), ["team:red", "dm:ann-cyd"]);
    assert_eq!(f(json!({"members": {"$in": ["nobody"]}})), Vec::<String>::new());
    assert_eq!(f(json!({"members": {"$in": ["ann"]}, "type": "team"})), ["team:red"]);
    assert_eq!(f(json!({"member_count": {"$gte": 2}})), ["team:red", "dm:ann-cyd"]);
    assert_eq!(f(json!({"member_count": 0})), ["team:green"]);
    assert_eq!(f(json!({"created_at": {"$gt": at_min(1)}})), ["team:green", "dm:ann-cyd"]);
    assert_eq!(f(json!({"updated_at": {"$gt": at_min(3)}})), ["team:red"]);
    assert_eq!(f(json!({"last_message_at": {"$exists": false}})), ["dm:ann-cyd"]);
    assert_eq!(f(json!({"last_message_at": {"$lt": at_min(25)}})), ["team:green", "team:blue"]);
    assert_eq!(f(json!({"color": {"$in": ["blue", "crimson"]}})), ["team:red", "team:blue"]);
    assert_eq!(f(json!({"color": {"$autocomplete": "CRI"}})), ["team:red"]);
    assert_eq!(f(json!({"size": {"$gt": 1}})), ["team:green"]);
    assert_eq!(f(json!({"$or": [{"size": 5}, {"member_count": 1}]})), ["team:green", "team:blue"]);
    assert_eq!(f(json!({"$nor": [{"type": "dm"}, {"color": {"$exists": true}}]})), ["team:green"]);
    assert_eq!(
        f(json!({"$and": [{"type": "team"}, {"members": {"$in": ["bob"]}}, {"color": "blue"}]})),
        ["team:blue"]
    );

    let s = |sort: Value| q(json!({ "sort": sort }));
    assert_eq!(s(json!({"member_count": -1})), ["dm:ann-cyd", "team:red", "team:blue", "team:green"]);
    assert_eq!(
        s(json!([{"field": "created_at", "direction": 1}])),
        ["team:red", "team:blue", "dm:ann-cyd", "team:green"]
    );
    assert_eq!(s(json!({"last_message_at": 1})), ["team:blue", "team:green", "team:red", "dm:ann-cyd"]);
    assert_eq!(s(json!({"color": -1})), ["team:red", "team:blue", "dm:ann-cyd", "team:green"]);
    assert_eq!(s(json!({"type": 1})), ["dm:ann-cyd", "team:blue", "team:green", "team:red"]);
    assert_eq!(
        s(json!({"updated_at": -1, "cid": -1})),
        ["team:red", "team:green", "dm:ann-cyd", "team:blue"]
    );

    assert_eq!(q(json!({"sort": {"cid": 1}, "offset": 1, "limit": 2})), ["team:blue", "team:green"]);
    assert_eq!(q(json!({"sort": {"cid": 1}, "offset": 3, "limit": 2})), ["team:red"]);
    assert_eq!(q(json!({"offset": 4})), Vec::<String>::new());
    assert_eq!(kind(e.query_channels(viewer, r#"{"limit":0}"#)), ErrorKind::Invalid);
    assert_eq!(kind(e.query_channels(viewer, r#"{"limit":101}"#)), ErrorKind::Limit);
    assert_eq!(kind(e.query_channels(viewer, r#"{"offset":10001}"#)), ErrorKind::Invalid);
}

#[test]
fn channel_query_answers_render_members_and_watchers_for_the_viewer() {
    let e = manual_engine("");
    channel_fixture(&e);
    e.set_time(T0 + 5 * MINUTE).unwrap();
    let ann = e.connect_json(r#"{"id":"ann"}"#).unwrap();
    let cyd = e.connect_json(r#"{"id":"cyd"}"#).unwrap();
    e.watch_channel(cyd, "dm:ann-cyd", false).unwrap();
    let query = r#"{"filter_conditions":{"members":{"$in":["cyd"]}}}"#;
    let m5 = at_min(5);
    let m2 = at_min(2);
    let ann_user = json!({"id":"ann","online":true,"last_active":m5,"created_at":T0S,"updated_at":T0S});
    let cyd_user = json!({"id":"cyd","online":true,"last_active":m5,"created_at":m2,"updated_at":m2});
    let channel = json!({"cid":"dm:ann-cyd","type":"dm","id":"ann-cyd","member_count":2,"created_at":m2,"updated_at":m2});
    let answer = |members: Value, watchers: Value| json!({"channels":[{"channel":channel.clone(),"members":members,"watcher_count":1,"watchers":watchers}]});
    assert_eq!(
        e.query_channels(ann, query).unwrap(),
        answer(
            json!([member(own(ann_user.clone(), false)), member(cyd_user.clone())]),
            json!([cyd_user.clone()])
        )
    );
    assert_eq!(
        e.query_channels(cyd, query).unwrap(),
        answer(
            json!([member(ann_user.clone()), member(own(cyd_user.clone(), false))]),
            json!([own(cyd_user.clone(), false)])
        )
    );
    assert_eq!(
        e.query_channels(HOST, query).unwrap(),
        answer(
            json!([member(own(ann_user, false)), member(own(cyd_user.clone(), false))]),
            json!([own(cyd_user, false)])
        )
    );
}

#[test]
fn online_in_user_queries_depends_on_the_viewer() {
    let e = manual_engine("");
    e.upsert_user_json(r#"{"id":"off"}"#).unwrap();
    let bob = e.connect_json(r#"{"id":"bob"}"#).unwrap();
    let ghost = e.connect_json(r#"{"id":"ghost","invisible":true}"#).unwrap();
    let q = |viewer: ConnectionId, filter: Value| -> Vec<String> {
        let query = json!({"filter_conditions": filter, "sort": {"id": 1}}).to_string();
        ids(&e.query_users(viewer, &query).unwrap())
    };
    assert_eq!(q(bob, json!({"online": true})), ["bob"], "invisible never matches online for others");
    assert_eq!(q(bob, json!({"online": false})), ["ghost", "off"]);
    assert_eq!(q(bob, json!({"online": {"$in": [true]}})), ["bob"]);
    assert_eq!(q(bob, json!({"online": {"$ne": false}})), ["bob"]);
    assert_eq!(q(bob, json!({"$nor": [{"online": false}]})), ["bob"]);
    assert_eq!(q(ghost, json!({"online": true})), ["bob", "ghost"], "but for themselves");
    assert_eq!(q(HOST, json!({"online": true})), ["bob", "ghost"], "the host sees own views");
    let sorted = |viewer| {
        ids(&e
            .query_users(
                viewer,
                r#"{"sort":[{"field":"online","direction":-1},{"field":"id","direction":1}]}"#,
            )
            .unwrap())
    };
    assert_eq!(sorted(bob), ["bob", "ghost", "off"]);
    assert_eq!(sorted(ghost), ["bob", "ghost", "off"]);
    let by_online_asc = |viewer| ids(&e.query_users(viewer, r#"{"sort":{"online":1}}"#).unwrap());
    assert_eq!(by_online_asc(bob), ["ghost", "off", "bob"]);
    assert_eq!(by_online_asc(ghost), ["off", "bob", "ghost"]);
    let seen = |viewer| {
        e.query_users(viewer, r#"{"filter_conditions":{"id":"ghost"}}"#).unwrap()["users"][0].clone()
    };
    assert_eq!(seen(bob), json!({"id":"ghost","online":false,"created_at":T0S,"updated_at":T0S}));
    assert_eq!(
        seen(ghost),
        json!({"id":"ghost","online":true,"invisible":true,"created_at":T0S,"updated_at":T0S})
    );
    assert_eq!(seen(HOST), seen(ghost));
}

#[test]
fn indexed_id_and_member_filters_answer_like_an_equivalent_scan() {
    let e = manual_engine("");
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut conns = Vec::new();
    for i in 0..60 {
        e.set_time(T0 + i * 1000).unwrap();
        let id = format!("u{i:02}");
        let mut u = json!({"id": id, "score": rng.below(5)});
        if rng.below(3) == 0 {
            u["invisible"] = json!(true);
        }
        e.upsert_user_json(&u.to_string()).unwrap();
        if rng.below(2) == 0 {
            conns.push(e.connect_json(&json!({ "id": id }).to_string()).unwrap());
        }
    }
    for i in 0..25 {
        e.set_time(T0 + (60 + i) * 1000).unwrap();
        let members: Vec<String> = (0..rng.below(8)).map(|_| format!("u{:02}", rng.below(60))).collect();
        let mut c = json!({"type": if i % 3 == 0 { "dm" } else { "team" }, "id": format!("c{i:02}"), "members": members});
        if rng.below(2) == 0 {
            c["last_message_at"] = json!(format_millis(T0 + rng.below(100) as i64 * 1000));
        }
        e.upsert_channel_json(&c.to_string()).unwrap();
    }
    let viewers = [HOST, conns[0], conns[conns.len() / 2], *conns.last().unwrap()];
    let sorts = [
        json!(null),
        json!({"last_active": -1}),
        json!([{"field":"score","direction":1}]),
        json!({"online": -1}),
    ];
    for round in 0..40 {
        let k = 1 + rng.below(12);
        let mut keys: Vec<String> = (0..k).map(|_| format!("u{:02}", rng.below(70))).collect();
        if round % 4 == 0 {
            keys.push(keys[0].clone());
        }
        let eqs: Vec<Value> = keys.iter().map(|id| json!({ "id": id })).collect();
        let member_eqs: Vec<Value> = keys.iter().map(|id| json!({ "members": id })).collect();
        let sort = &sorts[round % sorts.len()];
        let viewer = viewers[round % viewers.len()];
        let offset = if round % 5 == 0 { 1 } else { 0 };
        let run_users = |filter: Value| {
            let q = json!({"filter_conditions": filter, "sort": sort, "limit": 100, "offset": offset});
            e.query_users(viewer, &q.to_string()).unwrap()
        };
        let pairs = [
            (json!({"id": {"$in": keys}}), json!({"$or": eqs})),
            (json!({"id": {"$in": keys}, "online": true}), json!({"$and": [{"$or": eqs}, {"online": true}]})),
            (
                json!({"$and": [{"$and": [{"id": {"$in": keys}}]}, {"score": {"$gte": 2}}]}),
                json!({"$or": eqs, "score": {"$gte": 2}}),
            ),
            (json!({"id": keys[0]}), json!({"$or": [{"id": keys[0]}]})),
        ];
        for (indexed, scan) in &pairs {
            assert_eq!(run_users(indexed.clone()), run_users(scan.clone()), "users {indexed} vs {scan}");
        }
        let run_channels = |filter: Value| {
            let q = json!({"filter_conditions": filter, "limit": 100, "offset": offset});
            e.query_channels(viewer, &q.to_string()).unwrap()
        };
        let channel_keys: Vec<String> = keys.iter().map(|k| format!("team:c{}", &k[1..])).collect();
        let channel_eqs: Vec<Value> = channel_keys.iter().map(|c| json!({ "cid": c })).collect();
        let pairs = [
            (json!({"members": {"$in": keys}}), json!({"$or": member_eqs})),
            (
                json!({"members": {"$in": keys}, "type": "team"}),
                json!({"$and": [{"$or": member_eqs}, {"type": "team"}]}),
            ),
            (json!({"cid": {"$in": channel_keys}}), json!({"$or": channel_eqs})),
            (
                json!({"cid": {"$in": channel_keys}, "members": {"$in": keys}}),
                json!({"$and": [{"$or": channel_eqs}, {"$or": member_eqs}]}),
            ),
        ];
        for (indexed, scan) in &pairs {
            assert_eq!(
                run_channels(indexed.clone()),
                run_channels(scan.clone()),
                "channels {indexed} vs {scan}"
            );
        }
    }
    // The data is not degenerate: some indexed queries match, some channels are found by member.
    let all: Vec<String> = (0..60).map(|i| format!("u{i:02}")).collect();
    assert_eq!(
        ids(&e
            .query_users(HOST, &json!({"filter_conditions":{"id":{"$in":all}},"limit":100}).to_string())
            .unwrap())
        .len(),
        60
    );
    let found = e
        .query_channels(HOST, &json!({"filter_conditions":{"members":{"$in":all}},"limit":100}).to_string())
        .unwrap();
    assert!(cids(&found).len() > 10, "{}", cids(&found).len());
    // Membership changes are reflected by the index.
    let c = cids(&found)[0].clone();
    let state = host_state(&e, &c);
    let first = member_ids(&state)[0].clone();
    let by_member = |id: &str| {
        cids(
            &e.query_channels(HOST, &json!({"filter_conditions":{"members":id},"limit":100}).to_string())
                .unwrap(),
        )
    };
    assert!(by_member(&first).contains(&c));
    e.remove_members(&c, std::slice::from_ref(&first)).unwrap();
    assert!(!by_member(&first).contains(&c));
    e.add_members(&c, std::slice::from_ref(&first)).unwrap();
    assert!(by_member(&first).contains(&c));
}

// ----- privacy -----

#[test]
fn an_invisible_user_is_offline_and_no_watcher_through_every_api_others_use() {
    let e = manual_engine("");
    e.upsert_channel_json(r#"{"type":"team","id":"red","members":["alice","bob","ghost"]}"#).unwrap();
    e.upsert_channel_json(r#"{"type":"team","id":"blue","members":["bob"]}"#).unwrap();
    let bob = e.connect_json(r#"{"id":"bob"}"#).unwrap();
    let carol = e.connect_json(r#"{"id":"carol"}"#).unwrap();
    e.watch_channel(bob, "team:red", true).unwrap();
    e.watch_channel(bob, "team:blue", true).unwrap();
    e.query_users(carol, r#"{"filter_conditions":{"id":"ghost"},"presence":true}"#).unwrap();
    let g1 = e.connect_json(r#"{"id":"ghost"}"#).unwrap();
    e.watch_channel(g1, "team:red", false).unwrap();
    assert_eq!(
        poll(&e, bob),
        [
            to(bob, "user.watching.start bob online"),
            to(bob, "user.watching.start bob online"),
            to(bob, "user.presence.changed ghost online"),
            to(bob, "user.watching.start ghost online"),
        ]
    );
    assert_eq!(poll(&e, carol), [to(carol, "user.presence.changed ghost online")]);
    poll(&e, g1);

    // Going invisible looks like leaving, to everyone else.
    e.set_time(T0 + MINUTE).unwrap();
    e.set_invisible("ghost", true).unwrap();
    assert_eq!(
        poll(&e, bob),
        [to(bob, "user.presence.changed ghost offline"), to(bob, "user.watching.stop ghost offline")]
    );
    assert_eq!(poll(&e, carol), [to(carol, "user.presence.changed ghost offline")]);
    assert_eq!(poll(&e, g1), [to(g1, "user.watching.stop ghost online")], "her own view");

    // Changes while invisible reach subscribers with online false; connecting and watching stay silent.
    e.set_time(T0 + 2 * MINUTE).unwrap();
    let alice = e.connect_json(r#"{"id":"alice"}"#).unwrap();
    e.set_status("ghost", Some("secret")).unwrap();
    let g2 = e.connect_json(r#"{"id":"ghost"}"#).unwrap();
    e.watch_channel(g2, "team:blue", false).unwrap();
    e.upsert_user_json(r#"{"id":"ghost","level":9}"#).unwrap();
    let bob_saw = e.poll_events(bob, 10).unwrap();
    assert_eq!(
        bob_saw.iter().map(describe_delivery).collect::<Vec<_>>(),
        [
            to(bob, "user.presence.changed alice online"),
            to(bob, "user.presence.changed ghost offline"),
            to(bob, "user.updated ghost offline"),
        ]
    );
    let m1 = at_min(1);
    let m2 = at_min(2);
    assert_eq!(
        bob_saw[1].to_value()["user"],
        json!({"id":"ghost","online":false,"status":"secret","last_active":m1,"created_at":T0S,"updated_at":m2})
    );
    assert_eq!(
        poll(&e, carol),
        [to(carol, "user.presence.changed ghost offline"), to(carol, "user.updated ghost offline")]
    );
    // Refreshes do not move her last_active while invisible; others' do.
    e.set_time(T0 + 20 * MINUTE).unwrap();
    e.tick();
    assert!(poll(&e, bob).is_empty());

    // get_user.
    let public = json!({"id":"ghost","online":false,"status":"secret","last_active":m1,
                        "created_at":T0S,"updated_at":m2,"level":9});
    assert_eq!(e.get_user(bob, "ghost").unwrap(), public);
    assert_eq!(
        e.get_user(g2, "ghost").unwrap(),
        with(public.clone(), json!({"online":true,"invisible":true}))
    );
    // query_users: filters and sorts.
    let users = |viewer, q: Value| ids(&e.query_users(viewer, &q.to_string()).unwrap());
    assert_eq!(
        users(bob, json!({"filter_conditions":{"online":true},"sort":{"id":1}})),
        ["alice", "bob", "carol"]
    );
    assert_eq!(
        users(g1, json!({"filter_conditions":{"online":true},"sort":{"id":1}})),
        ["alice", "bob", "carol", "ghost"]
    );
    assert_eq!(users(bob, json!({"sort":{"last_active":-1}})), ["alice", "bob", "carol", "ghost"]);
    assert_eq!(
        users(bob, json!({"filter_conditions":{"last_active":{"$gt":at_min(5)}},"sort":{"id":1}})),
        ["alice", "bob", "carol"]
    );
    let found = e.query_users(bob, r#"{"filter_conditions":{"id":{"$in":["ghost"]}}}"#).unwrap();
    assert_eq!(found, json!({ "users": [public.clone()] }));
    // query_channels and watch_channel_state: a member shown offline, never a watcher.
    let red = &e.query_channels(bob, r#"{"filter_conditions":{"cid":"team:red"}}"#).unwrap()["channels"][0];
    assert_eq!(watcher_ids(red), ["bob"]);
    assert_eq!(red["watcher_count"], 1);
    assert_eq!(red["members"][2], member(public.clone()));
    for viewer in [carol, bob] {
        let blue = e.watch_channel_state(viewer, "team:blue", false).unwrap();
        assert_eq!(watcher_ids(&blue), ["bob", "carol"], "ghost watches team:blue from g2");
        assert_eq!(blue["watcher_count"], 2);
    }
    assert_eq!(poll(&e, bob), [to(bob, "user.watching.start carol online")]);
    poll(&e, carol);
    // Membership events.
    e.add_members("team:blue", &strings(&["ghost"])).unwrap();
    assert_eq!(poll(&e, bob), [to(bob, "member.added ghost offline")]);
    assert_eq!(poll(&e, carol), [to(carol, "member.added ghost offline")]);
    assert_eq!(
        poll(&e, g2),
        [to(g2, "user.watching.start carol online"), to(g2, "member.added ghost online")]
    );

    // Leaving while invisible: nothing for others, last_active still frozen.
    e.set_time(T0 + 21 * MINUTE).unwrap();
    e.disconnect(g1).unwrap();
    e.disconnect(g2).unwrap();
    assert!(poll(&e, bob).is_empty());
    assert!(poll(&e, carol).is_empty());
    assert_eq!(e.get_user(bob, "ghost").unwrap(), public);
    let g3 = e.connect_json(r#"{"id":"ghost"}"#).unwrap();
    assert!(poll(&e, bob).is_empty());

    // Coming back is a visible change, stamped now.
    e.set_time(T0 + 22 * MINUTE).unwrap();
    e.set_invisible("ghost", false).unwrap();
    let back = e.poll_events(bob, 10).unwrap();
    assert_eq!(
        back.iter().map(describe_delivery).collect::<Vec<_>>(),
        [to(bob, "user.presence.changed ghost online")]
    );
    assert_eq!(back[0].to_value()["user"]["last_active"], at_min(22));
    assert_eq!(poll(&e, carol), [to(carol, "user.presence.changed ghost online")]);
    e.disconnect(g3).unwrap();
    e.disconnect(alice).unwrap();
}

// ----- persistence -----

#[test]
fn save_then_load_gives_back_channels_with_members_and_custom_fields() {
    let e = manual_engine("");
    e.upsert_user_json(r#"{"id":"alice","status":"away","name":"Alice"}"#).unwrap();
    e.upsert_channel_json(
        r#"{"type":"team","id":"red","members":["alice","bob"],"color":"red","last_message_at":"2019-01-07T13:00:00.000Z"}"#,
    )
    .unwrap();
    e.set_time(T0 + MINUTE).unwrap();
    e.upsert_channel_json(r#"{"cid":"team:blue","members":["carol"],"cfg":{"a":[1,2],"b":null}}"#).unwrap();
    e.upsert_channel_json(r#"{"cid":"dm:empty"}"#).unwrap();
    e.set_time(T0 + 2 * MINUTE).unwrap();
    e.upsert_channel_json(r#"{"cid":"team:red","color":"crimson","members":["carol"]}"#).unwrap();
    let c = e.connect_json(r#"{"id":"bob","invisible":true}"#).unwrap();
    e.disconnect(c).unwrap();
    let before: Vec<Value> =
        ["team:red", "team:blue", "dm:empty"].iter().map(|cid| host_state(&e, cid)).collect();
    let all_before = e.query_channels(HOST, r#"{"sort":{"cid":1}}"#).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("presence.json");
    e.save(&path).unwrap();
    let loaded = manual_engine("");
    loaded.upsert_channel_json(r#"{"cid":"old:gone","members":["zed"]}"#).unwrap();
    loaded.load(&path).unwrap();
    assert_eq!(loaded.counts(), (3, 0, 3), "the load replaced what was there");
    for (cid, state) in ["team:red", "team:blue", "dm:empty"].iter().zip(&before) {
        assert_eq!(&host_state(&loaded, cid), state, "{cid}");
    }
    assert_eq!(loaded.query_channels(HOST, r#"{"sort":{"cid":1}}"#).unwrap(), all_before);
    assert_eq!(
        before[0]["channel"],
        json!({"cid":"team:red","type":"team","id":"red","member_count":3,"created_at":T0S,
               "updated_at":at_min(2),"last_message_at":"2019-01-07T13:00:00.000Z","color":"crimson"})
    );
    assert_eq!(
        before[1]["channel"]["cfg"],
        json!({"a":[1,2],"b":null}),
        "a null inside a custom object is kept"
    );
    assert_eq!(member_ids(&before[0]), ["alice", "bob", "carol"]);
    assert_eq!(kind(loaded.delete_channel("old:gone")), ErrorKind::NotFound);
    assert_eq!(kind(loaded.get_user(HOST, "zed")), ErrorKind::NotFound);

    // The loaded engine is fully wired: the member index, watching and presence routes work.
    let by_member = |id: &str| {
        cids(&loaded.query_channels(HOST, &json!({"filter_conditions":{"members":id}}).to_string()).unwrap())
    };
    assert_eq!(by_member("carol"), ["team:red", "team:blue"]);
    assert_eq!(by_member("zed"), Vec::<String>::new());
    let dave = loaded.connect_json(r#"{"id":"dave"}"#).unwrap();
    loaded.watch_channel(dave, "team:red", true).unwrap();
    let bob = loaded.connect_json(r#"{"id":"bob"}"#).unwrap();
    assert_eq!(loaded.get_user(dave, "bob").unwrap()["online"], false, "bob's invisible flag was saved");
    let alice = loaded.connect_json(r#"{"id":"alice"}"#).unwrap();
    assert_eq!(
        poll(&loaded, dave),
        [to(dave, "user.watching.start dave online"), to(dave, "user.presence.changed alice online")]
    );
    assert_eq!(kind(loaded.load(&path)), ErrorKind::State, "no load while connections are open");
    loaded.disconnect(alice).unwrap();
    loaded.disconnect(bob).unwrap();
    loaded.disconnect(dave).unwrap();
    loaded.load(&path).unwrap();
    assert_eq!(host_state(&loaded, "team:red"), before[0], "watchers are not saved");
}

// ----- subscriptions against a model -----

/// What the routes of SPEC section 4 say, for the model test below.
#[derive(Clone, Default)]
struct Model {
    /// Live connections and their users.
    conns: std::collections::BTreeMap<ConnectionId, String>,
    /// Channels watched per connection, with the presence flag.
    watching: std::collections::BTreeMap<ConnectionId, std::collections::BTreeMap<String, bool>>,
    /// Users subscribed through `query_users` per connection.
    direct: std::collections::BTreeMap<ConnectionId, std::collections::BTreeSet<String>>,
    /// Live channels and their members.
    members: std::collections::BTreeMap<String, std::collections::BTreeSet<String>>,
    invisible: std::collections::BTreeSet<String>,
}

impl Model {
    fn subscribers(&self, user: &str) -> Vec<ConnectionId> {
        self.conns
            .keys()
            .copied()
            .filter(|c| {
                self.direct[c].contains(user)
                    || self.watching[c].iter().any(|(ch, &p)| p && self.members[ch].contains(user))
            })
            .collect()
    }
    fn watchers(&self, cid: &str) -> Vec<ConnectionId> {
        self.watching.iter().filter(|(_, w)| w.contains_key(cid)).map(|(c, _)| *c).collect()
    }
    fn visible_watchers(&self, cid: &str) -> std::collections::BTreeSet<String> {
        self.watchers(cid)
            .iter()
            .map(|c| self.conns[c].clone())
            .filter(|u| !self.invisible.contains(u))
            .collect()
    }
    fn online(&self) -> std::collections::BTreeSet<String> {
        self.conns.values().filter(|u| !self.invisible.contains(*u)).cloned().collect()
    }
    /// Own views: whether connected, and whether invisible.
    fn own_views(&self) -> std::collections::BTreeSet<(String, bool, bool)> {
        let connected: std::collections::BTreeSet<&String> = self.conns.values().collect();
        let all = connected.iter().copied().chain(self.invisible.iter());
        all.map(|u| (u.clone(), connected.contains(u), self.invisible.contains(u))).collect()
    }
    /// Users whose own view changed from `self` to `after` but whose public view did not.
    fn own_view_only_changes(&self, after: &Model) -> std::collections::BTreeSet<String> {
        let public: std::collections::BTreeSet<String> =
            self.online().symmetric_difference(&after.online()).cloned().collect();
        let (was, is) = (self.own_views(), after.own_views());
        was.symmetric_difference(&is).map(|(u, _, _)| u.clone()).filter(|u| !public.contains(u)).collect()
    }
    /// The events (type, user, cid) a step from `self` to `after` must emit, apart from
    /// membership and connection.closed events, which the caller adds.
    fn implied_events(&self, after: &Model) -> Vec<(String, String, String)> {
        let mut out = Vec::new();
        let (was, is) = (self.online(), after.online());
        for u in was.symmetric_difference(&is).chain(&self.own_view_only_changes(after)) {
            out.push(("user.presence.changed".to_string(), u.clone(), String::new()));
        }
        for ch in self.members.keys().filter(|ch| after.members.contains_key(*ch)) {
            let (before, now) = (self.visible_watchers(ch), after.visible_watchers(ch));
            for u in now.difference(&before) {
                out.push(("user.watching.start".to_string(), u.clone(), ch.clone()));
            }
            for u in before.difference(&now) {
                out.push(("user.watching.stop".to_string(), u.clone(), ch.clone()));
            }
        }
        out
    }
}

/// Random route changes (watch with and without presence, stop, query_channels with presence
/// or watch, query_users with presence, unsubscribe, member changes, channel deletion,
/// visibility, connects and disconnects) against [`Model`]. After each step: the step emitted
/// exactly the events the model implies, each delivered once to exactly the connections it is
/// for (subscribers of the user, or watchers of the channel), with the right view and
/// watcher_count; then a presence event about every user reaches exactly its subscribers;
/// and every channel's members, watchers and watcher_count match.
#[test]
fn recipients_events_and_watcher_counts_match_a_model_of_the_routes() {
    let e = manual_engine(r#""connection_queue_capacity":0"#);
    let d = Deliveries::attach(&e);
    let rec = Recorder::attach(&e);
    let users: Vec<String> = (0..10).map(|i| format!("p{i}")).collect();
    let rooms: Vec<String> = (0..5).map(|i| format!("room:r{i}")).collect();
    for u in &users {
        e.upsert_user_json(&json!({ "id": u }).to_string()).unwrap();
    }
    for c in &rooms {
        e.upsert_channel_json(&json!({ "cid": c }).to_string()).unwrap();
    }
    let mut m = Model {
        members: rooms.iter().map(|c| (c.clone(), Default::default())).collect(),
        ..Default::default()
    };
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let pick = |rng: &mut Rng, v: &[String]| v[rng.below(v.len())].clone();

    for step in 0..700 {
        let before = m.clone();
        let live: Vec<ConnectionId> = m.conns.keys().copied().collect();
        let op = if live.is_empty() { 0 } else { rng.below(13) };
        let c = if live.is_empty() { HOST } else { live[rng.below(live.len())] };
        let cid = pick(&mut rng, &rooms);
        let who = pick(&mut rng, &users);
        let mut extra: Vec<(String, String, String)> = Vec::new();
        match op {
            0 | 1 => {
                let conn = e.connect_json(&json!({ "id": who }).to_string()).unwrap();
                m.conns.insert(conn, who);
                m.watching.insert(conn, Default::default());
                m.direct.insert(conn, Default::default());
            }
            2 => {
                e.disconnect(c).unwrap();
                extra.push(("connection.closed".into(), m.conns[&c].clone(), String::new()));
                m.conns.remove(&c);
                m.watching.remove(&c);
                m.direct.remove(&c);
            }
            3 | 4 => {
                let presence = rng.below(2) == 0;
                if m.members.contains_key(&cid) {
                    let state = e.watch_channel_state(c, &cid, presence).unwrap();
                    *m.watching.get_mut(&c).unwrap().entry(cid).or_insert(false) |= presence;
                    assert_eq!(state["watcher_count"], state["watchers"].as_array().unwrap().len());
                } else {
                    assert_eq!(kind(e.watch_channel(c, &cid, presence)), ErrorKind::NotFound);
                }
            }
            5 => {
                if m.members.contains_key(&cid) {
                    e.stop_watching(c, &cid).unwrap();
                    m.watching.get_mut(&c).unwrap().remove(&cid);
                }
            }
            6 => {
                let wanted: Vec<String> = (0..3).map(|_| pick(&mut rng, &rooms)).collect();
                let presence = rng.below(2) == 0;
                let q = json!({"filter_conditions": {"cid": {"$in": wanted}}, "presence": presence, "watch": !presence});
                let got = cids(&e.query_channels(c, &q.to_string()).unwrap());
                let expected: std::collections::BTreeSet<String> =
                    wanted.into_iter().filter(|w| m.members.contains_key(w)).collect();
                assert_eq!(got.iter().cloned().collect::<std::collections::BTreeSet<_>>(), expected);
                for ch in got {
                    *m.watching.get_mut(&c).unwrap().entry(ch).or_insert(false) |= presence;
                }
            }
            7 => {
                let wanted: Vec<String> = (0..3).map(|_| pick(&mut rng, &users)).collect();
                let q = json!({"filter_conditions": {"id": {"$in": wanted}}, "presence": true});
                let got = ids(&e.query_users(c, &q.to_string()).unwrap());
                m.direct.get_mut(&c).unwrap().extend(got);
            }
            8 => {
                e.unsubscribe_user(c, &who).unwrap();
                m.direct.get_mut(&c).unwrap().remove(&who);
            }
            9 => {
                if let Some(set) = m.members.get_mut(&cid) {
                    e.add_members(&cid, std::slice::from_ref(&who)).unwrap();
                    if set.insert(who.clone()) {
                        extra.push(("member.added".into(), who, cid));
                    }
                }
            }
            10 => {
                if let Some(set) = m.members.get_mut(&cid) {
                    e.remove_members(&cid, std::slice::from_ref(&who)).unwrap();
                    if set.remove(&who) {
                        extra.push(("member.removed".into(), who, cid));
                    }
                }
            }
            11 => {
                if m.members.remove(&cid).is_some() {
                    e.delete_channel(&cid).unwrap();
                    for w in m.watching.values_mut() {
                        w.remove(&cid);
                    }
                } else {
                    e.upsert_channel_json(&json!({ "cid": cid }).to_string()).unwrap();
                    m.members.insert(cid, Default::default());
                }
            }
            _ => {
                let now = !m.invisible.contains(&who);
                e.set_invisible(&who, now).unwrap();
                if now {
                    m.invisible.insert(who);
                } else {
                    m.invisible.remove(&who);
                }
            }
        }

        // The step's events, and who got them.
        let events = rec.take_events();
        let mut got: Vec<(String, String, String)> = events
            .iter()
            .map(|ev| {
                let ch = ev.channel().map(|c| c.cid.to_string()).unwrap_or_default();
                (ev.type_name().to_string(), ev.user_id().to_string(), ch)
            })
            .collect();
        let own_only = before.own_view_only_changes(&m);
        let mut want = before.implied_events(&m);
        want.extend(extra);
        got.sort();
        want.sort();
        assert_eq!(got, want, "step {step} (op {op}): events");
        let deliveries = d.take_raw();
        for ev in &events {
            let mut to: Vec<ConnectionId> =
                deliveries.iter().filter(|x| x.event.seq == ev.seq).map(|x| x.connection).collect();
            to.sort();
            let expected = match ev.channel() {
                _ if ev.type_name() == "connection.closed" => Vec::new(),
                Some(ch) => m.watchers(&ch.cid),
                // A change only the user's own view shows reaches only their own connections.
                None if own_only.contains(ev.user_id()) => {
                    m.subscribers(ev.user_id()).into_iter().filter(|c| m.conns[c] == ev.user_id()).collect()
                }
                None => m.subscribers(ev.user_id()),
            };
            assert_eq!(to, expected, "step {step} (op {op}): recipients of {}", describe(ev));
            if let Some(ch) = ev.channel().filter(|_| ev.type_name().starts_with("user.watching")) {
                assert_eq!(
                    ev.to_value(presence::View::Own, None)["watcher_count"],
                    m.visible_watchers(&ch.cid).len()
                );
            }
        }
        for x in &deliveries {
            let own_user = m.conns[&x.connection] == x.event.user_id();
            assert_eq!(
                x.view == presence::View::Own,
                own_user,
                "step {step}: view of {}",
                describe_delivery(x)
            );
        }
        assert_eq!(
            deliveries.len(),
            events
                .iter()
                .map(|ev| deliveries.iter().filter(|x| x.event.seq == ev.seq).count())
                .sum::<usize>()
        );

        // Every user's next presence event reaches exactly the subscribed connections.
        for u in &users {
            e.set_status(u, Some(&format!("s{step}"))).unwrap();
            let mut to: Vec<ConnectionId> = d.take_raw().iter().map(|x| x.connection).collect();
            to.sort();
            assert_eq!(to, m.subscribers(u), "step {step} (op {op}): recipients of {u}'s status");
        }
        rec.take();
        // Members, watchers and watcher_count of every channel.
        for ch in m.members.keys() {
            let state = host_state(&e, ch);
            let expected = m.visible_watchers(ch);
            assert_eq!(
                watcher_ids(&state),
                expected.iter().cloned().collect::<Vec<_>>(),
                "step {step}: {ch}"
            );
            assert_eq!(state["watcher_count"], expected.len(), "step {step}: {ch}");
            assert_eq!(
                member_ids(&state),
                m.members[ch].iter().cloned().collect::<Vec<_>>(),
                "step {step}: {ch}"
            );
        }
    }
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

#[test]
fn channel_fields_last_message_at_and_cid_consistency() {
    let e = manual_engine("");
    e.upsert_channel_json(r#"{"type":"team","id":"red","last_message_at":"2019-01-07T14:17:42.375+01:00"}"#)
        .unwrap();
    assert_eq!(host_state(&e, "team:red")["channel"]["last_message_at"], T0S, "normalized to UTC");
    e.set_time(T0 + MINUTE).unwrap();
    e.upsert_channel_json(r#"{"cid":"team:red","last_message_at":null}"#).unwrap();
    assert_eq!(
        host_state(&e, "team:red")["channel"],
        json!({"cid":"team:red","type":"team","id":"red","member_count":0,"created_at":T0S,"updated_at":at_min(1)})
    );
    e.set_time(T0 + 2 * MINUTE).unwrap();
    e.upsert_channel_json(r#"{"cid":"team:red"}"#).unwrap();
    assert_eq!(host_state(&e, "team:red")["channel"]["updated_at"], at_min(1), "no change, no update");
    assert_eq!(
        kind(e.upsert_channel_json(r#"{"type":"team","id":"red","cid":"team:blue"}"#)),
        ErrorKind::Json,
        "cid inconsistent with type and id"
    );
    assert_eq!(kind(e.upsert_channel_json(r#"{"type":"team"}"#)), ErrorKind::Json);
    assert_eq!(
        kind(e.upsert_channel_json(r#"{"cid":"team:red","last_message_at":"noon"}"#)),
        ErrorKind::Invalid
    );
    assert_eq!(kind(e.upsert_channel_json(r#"{"cid":"team:red","last_message_at":5}"#)), ErrorKind::Json);
    let huge = json!({"cid":"team:red","blob":"x".repeat(6000)});
    assert_eq!(
        kind(e.upsert_channel_json(&huge.to_string())),
        ErrorKind::Invalid,
        "5 KiB of custom data at most"
    );
    assert_eq!(e.counts().2, 1);
    assert!(host_state(&e, "team:red")["channel"].get("blob").is_none());
}

#[test]
fn subscription_limit_counts_distinct_users_across_the_channels_of_one_query() {
    let e = manual_engine(r#""max_subscriptions_per_connection":3"#);
    e.upsert_channel_json(r#"{"type":"team","id":"a","members":["m1","m2"]}"#).unwrap();
    e.upsert_channel_json(r#"{"type":"team","id":"b","members":["m2","m3"]}"#).unwrap();
    e.upsert_channel_json(r#"{"type":"team","id":"c","members":["m4"]}"#).unwrap();
    let v = e.connect_json(r#"{"id":"viewer"}"#).unwrap();
    let q = |cids: &[&str]| {
        e.query_channels(v, &json!({"filter_conditions":{"cid":{"$in":cids}},"presence":true}).to_string())
    };
    assert_eq!(kind(q(&["team:a", "team:b", "team:c"])), ErrorKind::Limit);
    assert_eq!(host_state(&e, "team:a")["watcher_count"], 0, "all or nothing");
    assert_eq!(cids(&q(&["team:a", "team:b"]).unwrap()).len(), 2, "m2 counts once: 3 in all");
    assert_eq!(kind(q(&["team:c"])), ErrorKind::Limit);
    assert_eq!(kind(e.add_members_json("team:a", r#"["x","x"]"#)), ErrorKind::Limit);
    e.add_members("team:a", &strings(&["m3", "m2"])).unwrap();
    // A member that joins by watching itself counts like any other user.
    let w = e.connect_json(r#"{"id":"m4"}"#).unwrap();
    e.upsert_channel_json(r#"{"cid":"team:d","members":["m4","m5","m6"]}"#).unwrap();
    e.watch_channel(w, "team:d", true).unwrap();
    assert_eq!(kind(e.add_members("team:d", &strings(&["m7"]))), ErrorKind::Limit);
    assert_eq!(host_state(&e, "team:d")["channel"]["member_count"], 3);
}
