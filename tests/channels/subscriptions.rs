//! Presence subscriptions: the three routes (watching with presence, `query_channels` with
//! presence, `query_users` with presence), how they overlap and end, and the per-connection
//! subscription limit.
use crate::common::views::*;
use crate::common::*;
use presence::{Answer, ConnectionId, Delivery, Engine, ErrorKind};
use serde_json::{json, Value};
use std::sync::Arc;

#[test]
fn route_1_watch_with_presence_covers_current_and_future_members_until_stop() {
    let e = manual_engine("");
    e.upsert_channel_json(r#"{"type":"team","id":"red","members":["alice"]}"#).unwrap();
    e.upsert_user_json(r#"{"id":"carol"}"#).unwrap();
    let bob = e.connect_json(r#"{"id":"bob"}"#).unwrap();
    e.start_watching(bob, "team:red", true).unwrap();
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
    e.start_watching(bob, "team:red", false).unwrap();
    e.set_status("dave", Some("y")).unwrap();
    assert_eq!(poll(&e, bob), [to(bob, "user.watching.start bob online")]);
    // Upgrading the watch to presence subscribes.
    e.start_watching(bob, "team:red", true).unwrap();
    e.set_status("dave", Some("z")).unwrap();
    assert_eq!(poll(&e, bob), [to(bob, "user.presence.changed dave online")]);
    // Watching again without presence never removes it.
    e.start_watching(bob, "team:red", false).unwrap();
    e.disconnect(dave).unwrap();
    assert_eq!(poll(&e, bob), [to(bob, "user.presence.changed dave offline")]);
}

#[test]
fn route_1_ends_when_the_watching_connection_closes() {
    let e = manual_engine("");
    e.upsert_channel_json(r#"{"type":"team","id":"red","members":["alice"]}"#).unwrap();
    let b1 = e.connect_json(r#"{"id":"bob"}"#).unwrap();
    let b2 = e.connect_json(r#"{"id":"bob"}"#).unwrap();
    e.start_watching(b1, "team:red", true).unwrap();
    e.start_watching(b2, "team:red", true).unwrap();
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
        .unwrap()
        .to_value();
    assert_eq!(cids(&answer), ["team:blue", "team:red"]);
    // The answer is the state after watching: bob is a watcher of both.
    for state in answer["channels"].as_array().unwrap() {
        assert_eq!(watcher_ids(state), ["bob"]);
        assert_eq!(state["watcher_count"], 1);
    }
    assert_eq!(answer["channels"][1], e.watch_channel(bob, "team:red", false).unwrap().to_value());
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
    let answer = e.query_channels(bob, r#"{"watch":true}"#).unwrap().to_value();
    assert_eq!(answer["channels"][0]["watcher_count"], 1);
    assert_eq!(poll(&e, bob), [to(bob, "user.watching.start bob online")]);
    let alice = e.connect_json(r#"{"id":"alice"}"#).unwrap();
    assert!(poll(&e, bob).is_empty(), "watch without presence: no presence events");
    e.start_watching(alice, "team:red", false).unwrap();
    assert_eq!(poll(&e, bob), [to(bob, "user.watching.start alice online")]);
    // A plain query neither watches nor subscribes.
    let carol = e.connect_json(r#"{"id":"carol"}"#).unwrap();
    let plain = e.query_channels(carol, "{}").unwrap().to_value();
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
        .unwrap()
        .to_value();
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
    e.start_watching(bob, "team:red", true).unwrap();
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
    e.start_watching(bob, "team:red", true).unwrap();
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
    e.start_watching(alice, "team:red", true).unwrap();
    e.start_watching(bob, "team:red", true).unwrap();
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

/// A limit of 3 subscriptions per connection; team:big (m1..m4), team:small (m1..m3) and
/// team:pair (m1, m2); `bob` and `m4` connected; recorders attached from here on.
struct LimitFixture {
    e: Engine,
    bob: ConnectionId,
    m4: ConnectionId,
    rec: Recorder,
    d: Deliveries,
}

impl LimitFixture {
    fn new() -> LimitFixture {
        let e = manual_engine(r#""max_subscriptions_per_connection":3"#);
        e.upsert_channel_json(r#"{"type":"team","id":"big","members":["m1","m2","m3","m4"]}"#).unwrap();
        e.upsert_channel_json(r#"{"type":"team","id":"small","members":["m1","m2","m3"]}"#).unwrap();
        e.upsert_channel_json(r#"{"type":"team","id":"pair","members":["m1","m2"]}"#).unwrap();
        let bob = e.connect_json(r#"{"id":"bob"}"#).unwrap();
        let m4 = e.connect_json(r#"{"id":"m4"}"#).unwrap();
        let rec = Recorder::attach(&e);
        let d = Deliveries::attach(&e);
        LimitFixture { e, bob, m4, rec, d }
    }

    /// Bob subscribed to m1, m2 and m3 through every route: exactly at the limit, which is
    /// fine, and users already subscribed do not count again.
    fn at_the_limit() -> LimitFixture {
        let f = LimitFixture::new();
        let (e, bob) = (&f.e, f.bob);
        e.start_watching(bob, "team:small", true).unwrap();
        e.start_watching(bob, "team:pair", true).unwrap();
        e.query_users(bob, r#"{"filter_conditions":{"id":{"$in":["m1","m3"]}},"presence":true}"#).unwrap();
        e.query_channels(
            bob,
            r#"{"filter_conditions":{"cid":{"$in":["team:small","team:pair"]}},"presence":true}"#,
        )
        .unwrap();
        f.rec.take();
        f.d.take();
        f
    }

    /// Nothing was emitted and nothing delivered since the last look.
    fn unchanged(&self) {
        assert!(self.rec.take().is_empty(), "no event");
        assert!(self.d.take().is_empty(), "no delivery");
    }
}

#[test]
fn watching_with_presence_over_the_limit_answers_limit_and_a_plain_watch_stays() {
    let f = LimitFixture::new();
    let (e, bob) = (&f.e, f.bob);
    assert_eq!(kind(e.start_watching(bob, "team:big", true)), ErrorKind::Limit);
    assert_eq!(kind(e.watch_channel(bob, "team:big", true)), ErrorKind::Limit);
    f.unchanged();
    assert_eq!(host_state(e, "team:big")["watcher_count"], 0, "not watching");
    // Watching without presence needs no subscription; upgrading it is refused and keeps the watch.
    e.start_watching(bob, "team:big", false).unwrap();
    assert_eq!(f.d.take(), [to(bob, "user.watching.start bob online")]);
    f.rec.take();
    assert_eq!(kind(e.start_watching(bob, "team:big", true)), ErrorKind::Limit);
    e.set_status("m1", Some("x")).unwrap();
    f.rec.take();
    assert!(f.d.take().is_empty(), "still no presence subscription");
    assert_eq!(host_state(e, "team:big")["watcher_count"], 1, "the plain watch stays");
}

#[test]
fn adding_members_to_a_channel_watched_with_presence_at_the_limit_answers_limit() {
    let f = LimitFixture::at_the_limit();
    let e = &f.e;
    assert_eq!(kind(e.add_members("team:small", &strings(&["m4"]))), ErrorKind::Limit);
    assert_eq!(kind(e.add_members_json("team:small", r#"["newbie"]"#)), ErrorKind::Limit);
    assert_eq!(
        kind(e.upsert_channel_json(r#"{"cid":"team:small","members":["m4"],"color":"blue"}"#)),
        ErrorKind::Limit
    );
    f.unchanged();
    assert_eq!(
        host_state(e, "team:small")["channel"],
        json!({"cid":"team:small","type":"team","id":"small","member_count":3,"created_at":T0S,"updated_at":T0S})
    );
    assert_eq!(kind(e.get_user(HOST, "newbie")), ErrorKind::NotFound);
    e.add_members("team:small", &strings(&["m1", "m2"])).unwrap();
    e.add_members("team:big", &strings(&["newbie"])).unwrap();
    assert_eq!(f.rec.take(), ["member.added newbie offline"], "team:big has no presence watcher");
}

#[test]
fn queries_with_presence_over_the_limit_answer_limit_and_plain_queries_never_do() {
    let f = LimitFixture::at_the_limit();
    let (e, bob) = (&f.e, f.bob);
    assert_eq!(
        kind(e.query_users(bob, r#"{"filter_conditions":{"id":{"$in":["m4","m1"]}},"presence":true}"#)),
        ErrorKind::Limit
    );
    assert_eq!(
        kind(e.query_channels(bob, r#"{"filter_conditions":{"cid":"team:big"},"presence":true}"#)),
        ErrorKind::Limit
    );
    f.unchanged();
    assert_eq!(host_state(e, "team:big")["watcher_count"], 0, "query_channels did not watch");
    e.set_status("m4", Some("busy")).unwrap();
    f.rec.take();
    assert!(f.d.take().is_empty(), "bob is not subscribed to m4");
    assert_eq!(
        ids(&e
            .query_users(bob, r#"{"filter_conditions":{"id":{"$in":["m4","m1"]}},"sort":{"id":1}}"#)
            .unwrap()
            .to_value()),
        ["m1", "m4"]
    );
}

#[test]
fn leaving_a_route_frees_room_and_each_connection_has_its_own_budget() {
    let f = LimitFixture::at_the_limit();
    let (e, bob) = (&f.e, f.bob);
    e.stop_watching(bob, "team:small").unwrap();
    e.unsubscribe_user(bob, "m3").unwrap();
    e.query_users(bob, r#"{"filter_conditions":{"id":"m4"},"presence":true}"#).unwrap();
    let b2 = e.connect_json(r#"{"id":"bob"}"#).unwrap();
    e.start_watching(b2, "team:small", true).unwrap();
    f.rec.take();
    f.d.take();
    e.disconnect(f.m4).unwrap();
    assert_eq!(f.d.take(), [to(bob, "user.presence.changed m4 offline")]);
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
    assert_eq!(cids(&q(&["team:a", "team:b"]).unwrap().to_value()).len(), 2, "m2 counts once: 3 in all");
    assert_eq!(kind(q(&["team:c"])), ErrorKind::Limit);
    assert_eq!(kind(e.add_members_json("team:a", r#"["x","x"]"#)), ErrorKind::Limit);
    e.add_members("team:a", &strings(&["m3", "m2"])).unwrap();
    // A member that joins by watching itself counts like any other user.
    let w = e.connect_json(r#"{"id":"m4"}"#).unwrap();
    e.upsert_channel_json(r#"{"cid":"team:d","members":["m4","m5","m6"]}"#).unwrap();
    e.start_watching(w, "team:d", true).unwrap();
    assert_eq!(kind(e.add_members("team:d", &strings(&["m7"]))), ErrorKind::Limit);
    assert_eq!(host_state(&e, "team:d")["channel"]["member_count"], 3);
}
