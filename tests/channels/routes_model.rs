//! Random route changes checked against a small model of who is subscribed to whom and who
//! watches what.
use crate::common::views::*;
use crate::common::*;
use presence::{ConnectionId, Engine, ErrorKind, View};
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
    /// Own views: whether connected, and whether invisible.
    fn own_views(&self) -> BTreeSet<(String, bool, bool)> {
        let connected: BTreeSet<&String> = self.conns.values().collect();
        let all = connected.iter().copied().chain(self.invisible.iter());
        all.map(|u| (u.clone(), connected.contains(u), self.invisible.contains(u))).collect()
    }
    /// Users whose own view changed from `self` to `after` but whose public view did not.
    fn own_view_only_changes(&self, after: &Model) -> BTreeSet<String> {
        let public: BTreeSet<String> = self.online().symmetric_difference(&after.online()).cloned().collect();
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

/// An event reduced to (type, user, cid); the cid is empty for user events.
type Ev = (String, String, String);

/// The engine and [`Model`] side by side, driven by one seeded generator.
struct Run {
    e: Engine,
    d: Deliveries,
    rec: Recorder,
    users: Vec<String>,
    rooms: Vec<String>,
    m: Model,
    rng: Rng,
}

impl Run {
    /// Ten users p0..p9 and five empty channels room:r0..r4, nobody connected.
    fn new() -> Run {
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
        let m = Model {
            members: rooms.iter().map(|c| (c.clone(), Default::default())).collect(),
            ..Default::default()
        };
        Run { e, d, rec, users, rooms, m, rng: Rng(0x2545_f491_4f6c_dd1d) }
    }

    fn pick(&mut self, users: bool) -> String {
        let v = if users { &self.users } else { &self.rooms };
        v[self.rng.below(v.len())].clone()
    }

    /// Applies one random operation to both sides; answers the operation's number and the
    /// membership and connection.closed events it must emit (the model implies the rest).
    fn random_op(&mut self) -> (usize, Vec<Ev>) {
        let live: Vec<ConnectionId> = self.m.conns.keys().copied().collect();
        let op = if live.is_empty() { 0 } else { self.rng.below(13) };
        let c = if live.is_empty() { HOST } else { live[self.rng.below(live.len())] };
        let cid = self.pick(false);
        let who = self.pick(true);
        let mut extra = Vec::new();
        match op {
            0 | 1 => self.connect(who),
            2 => extra.push(self.disconnect(c)),
            3 | 4 => {
                let presence = self.rng.below(2) == 0;
                self.watch(c, cid, presence);
            }
            5 => {
                if self.m.members.contains_key(&cid) {
                    self.e.stop_watching(c, &cid).unwrap();
                    self.m.watching.get_mut(&c).unwrap().remove(&cid);
                }
            }
            6 => self.query_channels(c),
            7 => self.query_users(c),
            8 => {
                self.e.unsubscribe_user(c, &who).unwrap();
                self.m.direct.get_mut(&c).unwrap().remove(&who);
            }
            9 | 10 => extra.extend(self.change_member(op == 9, cid, who)),
            11 => self.create_or_delete(cid),
            _ => self.toggle_invisible(who),
        }
        (op, extra)
    }

    fn connect(&mut self, who: String) {
        let conn = self.e.connect_json(&json!({ "id": who }).to_string()).unwrap();
        self.m.conns.insert(conn, who);
        self.m.watching.insert(conn, Default::default());
        self.m.direct.insert(conn, Default::default());
    }

    fn disconnect(&mut self, c: ConnectionId) -> Ev {
        self.e.disconnect(c).unwrap();
        let closed = ("connection.closed".into(), self.m.conns[&c].clone(), String::new());
        self.m.conns.remove(&c);
        self.m.watching.remove(&c);
        self.m.direct.remove(&c);
        closed
    }

    fn watch(&mut self, c: ConnectionId, cid: String, presence: bool) {
        if self.m.members.contains_key(&cid) {
            let state = self.e.watch_channel_state(c, &cid, presence).unwrap();
            *self.m.watching.get_mut(&c).unwrap().entry(cid).or_insert(false) |= presence;
            assert_eq!(state["watcher_count"], state["watchers"].as_array().unwrap().len());
        } else {
            assert_eq!(kind(self.e.watch_channel(c, &cid, presence)), ErrorKind::NotFound);
        }
    }

    /// `query_channels` for three random cids, with presence or with watch only.
    fn query_channels(&mut self, c: ConnectionId) {
        let wanted: Vec<String> = (0..3).map(|_| self.pick(false)).collect();
        let presence = self.rng.below(2) == 0;
        let q =
            json!({"filter_conditions": {"cid": {"$in": wanted}}, "presence": presence, "watch": !presence});
        let got = cids(&self.e.query_channels(c, &q.to_string()).unwrap());
        let expected: BTreeSet<String> =
            wanted.into_iter().filter(|w| self.m.members.contains_key(w)).collect();
        assert_eq!(got.iter().cloned().collect::<BTreeSet<_>>(), expected);
        for ch in got {
            *self.m.watching.get_mut(&c).unwrap().entry(ch).or_insert(false) |= presence;
        }
    }

    /// `query_users` with presence for three random ids.
    fn query_users(&mut self, c: ConnectionId) {
        let wanted: Vec<String> = (0..3).map(|_| self.pick(true)).collect();
        let q = json!({"filter_conditions": {"id": {"$in": wanted}}, "presence": true});
        let got = ids(&self.e.query_users(c, &q.to_string()).unwrap());
        self.m.direct.get_mut(&c).unwrap().extend(got);
    }

    fn change_member(&mut self, add: bool, cid: String, who: String) -> Option<Ev> {
        let set = self.m.members.get_mut(&cid)?;
        let who_slice = std::slice::from_ref(&who);
        if add {
            self.e.add_members(&cid, who_slice).unwrap();
            set.insert(who.clone()).then(|| ("member.added".into(), who, cid))
        } else {
            self.e.remove_members(&cid, who_slice).unwrap();
            set.remove(&who).then(|| ("member.removed".into(), who, cid))
        }
    }

    fn create_or_delete(&mut self, cid: String) {
        if self.m.members.remove(&cid).is_some() {
            self.e.delete_channel(&cid).unwrap();
            for w in self.m.watching.values_mut() {
                w.remove(&cid);
            }
        } else {
            self.e.upsert_channel_json(&json!({ "cid": cid }).to_string()).unwrap();
            self.m.members.insert(cid, Default::default());
        }
    }

    fn toggle_invisible(&mut self, who: String) {
        let now = !self.m.invisible.contains(&who);
        self.e.set_invisible(&who, now).unwrap();
        if now {
            self.m.invisible.insert(who);
        } else {
            self.m.invisible.remove(&who);
        }
    }

    /// The step emitted exactly the events `want`, each delivered once to exactly the
    /// connections it is for, with the right view and watcher_count. A presence change of
    /// a user in `own_only` (only their own view changed) reaches only their own connections.
    fn check_events(&self, at: &str, want: Vec<Ev>, own_only: &BTreeSet<String>) {
        let (m, events) = (&self.m, self.rec.take_events());
        let mut got: Vec<Ev> = events
            .iter()
            .map(|ev| {
                let ch = ev.channel().map(|c| c.cid.to_string()).unwrap_or_default();
                (ev.type_name().to_string(), ev.user_id().unwrap().to_string(), ch)
            })
            .collect();
        let mut want = want;
        got.sort();
        want.sort();
        assert_eq!(got, want, "{at}: events");
        let deliveries = self.d.take_raw();
        for ev in &events {
            let mut to: Vec<ConnectionId> =
                deliveries.iter().filter(|x| x.event.seq == ev.seq).map(|x| x.connection).collect();
            to.sort();
            let expected = match ev.channel() {
                _ if ev.type_name() == "connection.closed" => Vec::new(),
                Some(ch) => m.watchers(&ch.cid),
                None if own_only.contains(ev.user_id().unwrap()) => m
                    .subscribers(ev.user_id().unwrap())
                    .into_iter()
                    .filter(|c| Some(m.conns[c].as_str()) == ev.user_id())
                    .collect(),
                None => m.subscribers(ev.user_id().unwrap()),
            };
            assert_eq!(to, expected, "{at}: recipients of {}", describe(ev));
            if let Some(ch) = ev.channel().filter(|_| ev.type_name().starts_with("user.watching")) {
                assert_eq!(ev.to_value(View::Own, None)["watcher_count"], m.visible_watchers(&ch.cid).len());
            }
        }
        for x in &deliveries {
            let own_user = m.conns[&x.connection] == x.user_id();
            assert_eq!(x.view == View::Own, own_user, "{at}: view of {}", describe_delivery(x));
        }
        assert_eq!(
            deliveries.len(),
            events
                .iter()
                .map(|ev| deliveries.iter().filter(|x| x.event.seq == ev.seq).count())
                .sum::<usize>()
        );
    }

    /// Every user's next presence event reaches exactly the subscribed connections.
    fn check_status_recipients(&self, at: &str, step: usize) {
        for u in &self.users {
            self.e.set_status(u, Some(&format!("s{step}"))).unwrap();
            let mut to: Vec<ConnectionId> = self.d.take_raw().iter().map(|x| x.connection).collect();
            to.sort();
            assert_eq!(to, self.m.subscribers(u), "{at}: recipients of {u}'s status");
        }
        self.rec.take();
    }

    /// Members, watchers and watcher_count of every channel.
    fn check_channels(&self, at: &str) {
        for ch in self.m.members.keys() {
            let state = host_state(&self.e, ch);
            let expected = self.m.visible_watchers(ch);
            assert_eq!(watcher_ids(&state), expected.iter().cloned().collect::<Vec<_>>(), "{at}: {ch}");
            assert_eq!(state["watcher_count"], expected.len(), "{at}: {ch}");
            assert_eq!(
                member_ids(&state),
                self.m.members[ch].iter().cloned().collect::<Vec<_>>(),
                "{at}: {ch}"
            );
        }
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
    let mut run = Run::new();
    for step in 0..700 {
        let before = run.m.clone();
        let (op, extra) = run.random_op();
        let at = format!("step {step} (op {op})");
        let mut want = before.implied_events(&run.m);
        want.extend(extra);
        run.check_events(&at, want, &before.own_view_only_changes(&run.m));
        run.check_status_recipients(&at, step);
        run.check_channels(&at);
    }
}
