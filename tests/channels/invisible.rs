//! An invisible user, as every API other connections use shows them. One story told in
//! stages: each test replays the stages before the one it is named after.
use crate::common::views::*;
use crate::common::*;
use presence::{ConnectionId, Engine};
use serde_json::{json, Value};

/// Ghost is a member of team:red and watches it from `g1`; bob watches team:red and
/// team:blue with presence; carol subscribed to ghost directly.
struct Story {
    e: Engine,
    bob: ConnectionId,
    carol: ConnectionId,
    g1: ConnectionId,
    /// Connected while ghost is invisible.
    alice: Option<ConnectionId>,
    g2: Option<ConnectionId>,
}

impl Story {
    fn start() -> Story {
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
        Story { e, bob, carol, g1, alice: None, g2: None }
    }

    /// Ghost as others see her once she has changed while invisible.
    fn public() -> Value {
        json!({"id":"ghost","online":false,"status":"secret","last_active":at_min(1),
               "created_at":T0S,"updated_at":at_min(2),"level":9})
    }

    /// Going invisible looks like leaving, to everyone else.
    fn hide(self) -> Story {
        let (e, bob, carol, g1) = (&self.e, self.bob, self.carol, self.g1);
        e.set_time(T0 + MINUTE).unwrap();
        e.set_invisible("ghost", true).unwrap();
        assert_eq!(
            poll(e, bob),
            [to(bob, "user.presence.changed ghost offline"), to(bob, "user.watching.stop ghost offline")]
        );
        assert_eq!(poll(e, carol), [to(carol, "user.presence.changed ghost offline")]);
        assert_eq!(poll(e, g1), [to(g1, "user.watching.stop ghost online")], "her own view");
        self
    }

    /// Changes while invisible reach subscribers with online false; connecting and watching
    /// stay silent; refreshes do not move her last_active.
    fn change_while_hidden(mut self) -> Story {
        let (e, bob, carol) = (&self.e, self.bob, self.carol);
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
        assert_eq!(
            bob_saw[1].to_value()["user"],
            json!({"id":"ghost","online":false,"status":"secret","last_active":at_min(1),
                   "created_at":T0S,"updated_at":at_min(2)})
        );
        assert_eq!(
            poll(e, carol),
            [to(carol, "user.presence.changed ghost offline"), to(carol, "user.updated ghost offline")]
        );
        // Refreshes do not move her last_active while invisible; others' do.
        e.set_time(T0 + 20 * MINUTE).unwrap();
        e.tick().unwrap();
        assert!(poll(e, bob).is_empty());
        self.alice = Some(alice);
        self.g2 = Some(g2);
        self
    }

    /// get_user, query_users (filters and sorts), query_channels and watch_channel_state:
    /// offline to others, online to herself, a member shown offline, never a watcher.
    fn read_as_others(self) -> Story {
        let (e, bob, carol, g1, g2) = (&self.e, self.bob, self.carol, self.g1, self.g2.unwrap());
        let public = Story::public();
        assert_eq!(e.get_user(bob, "ghost").unwrap(), public);
        assert_eq!(
            e.get_user(g2, "ghost").unwrap(),
            with(public.clone(), json!({"online":true,"invisible":true}))
        );
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
        let red =
            &e.query_channels(bob, r#"{"filter_conditions":{"cid":"team:red"}}"#).unwrap()["channels"][0];
        assert_eq!(watcher_ids(red), ["bob"]);
        assert_eq!(red["watcher_count"], 1);
        assert_eq!(red["members"][2], member(public));
        for viewer in [carol, bob] {
            let blue = e.watch_channel_state(viewer, "team:blue", false).unwrap();
            assert_eq!(watcher_ids(&blue), ["bob", "carol"], "ghost watches team:blue from g2");
            assert_eq!(blue["watcher_count"], 2);
        }
        assert_eq!(poll(e, bob), [to(bob, "user.watching.start carol online")]);
        poll(e, carol);
        self
    }

    /// Membership events show her offline to others and online to herself.
    fn join_while_hidden(self) -> Story {
        let (e, bob, carol, g2) = (&self.e, self.bob, self.carol, self.g2.unwrap());
        e.add_members("team:blue", &strings(&["ghost"])).unwrap();
        assert_eq!(poll(e, bob), [to(bob, "member.added ghost offline")]);
        assert_eq!(poll(e, carol), [to(carol, "member.added ghost offline")]);
        assert_eq!(
            poll(e, g2),
            [to(g2, "user.watching.start carol online"), to(g2, "member.added ghost online")]
        );
        self
    }
}

#[test]
fn going_invisible_looks_like_leaving_to_everyone_else() {
    Story::start().hide();
}

#[test]
fn changes_while_invisible_reach_subscribers_as_offline_and_connecting_stays_silent() {
    Story::start().hide().change_while_hidden();
}

#[test]
fn others_read_an_invisible_user_as_offline_and_never_as_a_watcher() {
    Story::start().hide().change_while_hidden().read_as_others();
}

#[test]
fn membership_events_show_an_invisible_member_offline_to_others() {
    Story::start().hide().change_while_hidden().read_as_others().join_while_hidden();
}

#[test]
fn leaving_while_invisible_is_silent_and_coming_back_is_stamped_now() {
    let s = Story::start().hide().change_while_hidden().read_as_others().join_while_hidden();
    let (e, bob, carol) = (&s.e, s.bob, s.carol);
    // Leaving while invisible: nothing for others, last_active still frozen.
    e.set_time(T0 + 21 * MINUTE).unwrap();
    e.disconnect(s.g1).unwrap();
    e.disconnect(s.g2.unwrap()).unwrap();
    assert!(poll(e, bob).is_empty());
    assert!(poll(e, carol).is_empty());
    assert_eq!(e.get_user(bob, "ghost").unwrap(), Story::public());
    let g3 = e.connect_json(r#"{"id":"ghost"}"#).unwrap();
    assert!(poll(e, bob).is_empty());

    // Coming back is a visible change, stamped now.
    e.set_time(T0 + 22 * MINUTE).unwrap();
    e.set_invisible("ghost", false).unwrap();
    let back = e.poll_events(bob, 10).unwrap();
    assert_eq!(
        back.iter().map(describe_delivery).collect::<Vec<_>>(),
        [to(bob, "user.presence.changed ghost online")]
    );
    assert_eq!(back[0].to_value()["user"]["last_active"], at_min(22));
    assert_eq!(poll(e, carol), [to(carol, "user.presence.changed ghost online")]);
    e.disconnect(g3).unwrap();
    e.disconnect(s.alice.unwrap()).unwrap();
}
