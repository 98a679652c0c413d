//! Watching a channel: the state answered, and `user.watching.start`/`stop` as users' first
//! and last connections come and go, turn invisible, or the channel is deleted.
use crate::common::views::*;
use crate::common::*;
use presence::Counts;
use presence::ErrorKind;
use serde_json::json;

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
    assert_eq!(e.counts(), Counts { users: 2, connections: 2, channels: 0 });
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
