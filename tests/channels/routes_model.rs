//! Random route changes checked against a small model of who is subscribed to whom and who
//! watches what.
use crate::common::views::*;
use crate::common::*;
use presence::{ConnectionId, ErrorKind};
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};

/// Who is subscribed to whom through which route, and who watches what.
#[derive(Clone, Default)]
struct Model {
    /// Live connections and their users.
    conns: BTreeMap<ConnectionId, String>,
    /// Channels watched per connection, with the presence flag.
    watching: BTreeMap<ConnectionId, BTreeMap<String, bool>>,
    /// Users subscribed through `query_users` per connection.
    direct: BTreeMap<ConnectionId, BTreeSet<String>>,
    /// Live channels and their members.
    members: BTreeMap<String, BTreeSet<String>>,
    invisible: BTreeSet<String>,
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
    fn visible_watchers(&self, cid: &str) -> BTreeSet<String> {
        self.watchers(cid)
            .iter()
            .map(|c| self.conns[c].clone())
            .filter(|u| !self.invisible.contains(u))
            .collect()
    }
    fn online(&self) -> BTreeSet<String> {
        self.conns.values().filter(|u| !self.invisible.contains(*u)).cloned().collect()
    }
    /// The events (type, user, cid) a step from `self` to `after` must emit, apart from
    /// membership and connection.closed events, which the caller adds.
    fn implied_events(&self, after: &Model) -> Vec<(String, String, String)> {
        let mut out = Vec::new();
        let (was, is) = (self.online(), after.online());
        for u in was.symmetric_difference(&is) {
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
                let expected: BTreeSet<String> =
                    wanted.into_iter().filter(|w| m.members.contains_key(w)).collect();
                assert_eq!(got.iter().cloned().collect::<BTreeSet<_>>(), expected);
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
