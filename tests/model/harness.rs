//! One case: each step runs on the engine and on the model, then everything observable is
//! compared.
use crate::common::{record_all, DeliveryLog, HostLog};
use crate::observed::{dv_of, ev_of, Dv, Ev};
use crate::ops::{Bad, Cfg, ChanFilter, ChanSort, Conn, Op, UserFilter, UserSort, Viewer};
use crate::reference::{Model, OpResult, Patch};
use crate::USERS;
use presence::Counts;
use presence::{Answer, ConnectionId, Delivery, Engine, ErrorKind, Event, View};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::sync::Arc;

pub struct Harness {
    pub engine: Engine,
    pub host: HostLog,
    pub deliveries: DeliveryLog,
    pub model: Model,
    /// Every connection id opened, in order (engine and model agree on them).
    pub opened: Vec<u64>,
    pub last_host_seq: u64,
    pub last_seq_per_conn: BTreeMap<u64, u64>,
    pub last_queue_seq: BTreeMap<u64, u64>,
}

pub fn patch_json(p: &Patch) -> String {
    let mut m = Map::new();
    m.insert("id".into(), json!(p.id));
    if let Some(i) = p.invisible {
        m.insert("invisible".into(), json!(i));
    }
    if let Some(s) = p.status {
        m.insert("status".into(), json!(s));
    }
    if let Some(n) = p.name {
        m.insert("name".into(), json!(n));
    }
    Value::Object(m).to_string()
}

fn kind(e: presence::Error) -> ErrorKind {
    e.kind()
}

/// An engine result with no answer to compare.
fn done<T>(r: presence::Result<T>) -> OpResult {
    r.map(|_| None).map_err(kind)
}

fn user_query_json(filter: &UserFilter, sort: UserSort, limit: u8, presence: bool) -> String {
    let mut q = Map::new();
    let filter = match filter {
        UserFilter::All => json!({}),
        UserFilter::IdIn(ids) => json!({"id": {"$in": ids}}),
        UserFilter::Online(b) => json!({"online": b}),
    };
    q.insert("filter_conditions".into(), filter);
    match sort {
        UserSort::Default => {}
        UserSort::IdAsc => {
            q.insert("sort".into(), json!([{"field": "id", "direction": 1}]));
        }
        UserSort::LastActiveDesc => {
            q.insert("sort".into(), json!({"last_active": -1}));
        }
    }
    q.insert("limit".into(), json!(limit));
    q.insert("presence".into(), json!(presence));
    Value::Object(q).to_string()
}

fn channel_query_json(filter: &ChanFilter, sort: ChanSort, limit: u8, presence: bool, watch: bool) -> String {
    let mut q = Map::new();
    let filter = match filter {
        ChanFilter::All => json!({}),
        ChanFilter::CidIn(cids) => json!({"cid": {"$in": cids}}),
        ChanFilter::MemberIs(u) => json!({"members": {"$in": [u]}}),
    };
    q.insert("filter_conditions".into(), filter);
    if let ChanSort::MemberCountDesc = sort {
        q.insert("sort".into(), json!({"member_count": -1}));
    }
    q.insert("limit".into(), json!(limit));
    q.insert("presence".into(), json!(presence));
    q.insert("watch".into(), json!(watch));
    Value::Object(q).to_string()
}

impl Harness {
    pub fn new(cfg: Cfg) -> Self {
        let engine = Engine::from_json(Some(&cfg.json())).expect("config");
        let (host, deliveries) = record_all(&engine);
        Harness {
            engine,
            host,
            deliveries,
            model: Model::new(cfg),
            opened: Vec::new(),
            last_host_seq: 0,
            last_seq_per_conn: BTreeMap::new(),
            last_queue_seq: BTreeMap::new(),
        }
    }

    pub fn conn(&self, c: Conn) -> u64 {
        let live: Vec<u64> = self.model.conns.keys().copied().collect();
        let (pool, k) = if c.0 < 4 { (&live, c.0 as usize) } else { (&self.opened, c.0 as usize - 4) };
        if pool.is_empty() {
            9999
        } else {
            pool[k % pool.len()]
        }
    }

    pub fn live(&self, c: u64) -> bool {
        self.model.conns.contains_key(&c)
    }

    /// `Ok(None)` after running `f` on the model if connection `c` is live, else NotFound.
    fn if_live(&mut self, c: u64, f: impl FnOnce(&mut Model)) -> OpResult {
        if !self.live(c) {
            return Err(ErrorKind::NotFound);
        }
        f(&mut self.model);
        Ok(None)
    }

    /// `Ok(None)` after running `f` on the model if user `u` exists, else NotFound.
    fn if_user(&mut self, u: &str, f: impl FnOnce(&mut Model)) -> OpResult {
        if !self.model.users.contains_key(u) {
            return Err(ErrorKind::NotFound);
        }
        f(&mut self.model);
        Ok(None)
    }

    fn viewer(&self, v: Viewer) -> u64 {
        match v {
            Viewer::Host => 0,
            Viewer::C(c) => self.conn(c),
        }
    }

    /// Runs one operation on both sides; answers (engine result, model result).
    pub fn step(&mut self, op: &Op) -> (OpResult, OpResult) {
        match op {
            Op::Connect { .. }
            | Op::Disconnect(_)
            | Op::Heartbeat(_)
            | Op::Upsert { .. }
            | Op::SetInvisible(..)
            | Op::SetStatus(..) => self.step_user(op),
            Op::UpsertChannel(..)
            | Op::AddMembers(..)
            | Op::RemoveMembers(..)
            | Op::DeleteChannel(_)
            | Op::Watch { .. }
            | Op::StopWatching(..)
            | Op::Unsubscribe(..) => self.step_channel(op),
            Op::QueryUsers { viewer, filter, sort, limit, presence } => {
                let v = self.viewer(*viewer);
                let query = user_query_json(filter, *sort, *limit, *presence);
                let got = self
                    .engine
                    .query_users(ConnectionId(v), &query)
                    .map(|a| Some(a.to_value()))
                    .map_err(kind);
                (got, self.model_query_users(v, filter, *sort, *limit, *presence))
            }
            Op::QueryChannels { viewer, filter, sort, limit, presence, watch } => {
                let v = self.viewer(*viewer);
                let query = channel_query_json(filter, *sort, *limit, *presence, *watch);
                let got = self
                    .engine
                    .query_channels(ConnectionId(v), &query)
                    .map(|a| Some(a.to_value()))
                    .map_err(kind);
                (got, self.model_query_channels(v, filter, *sort, *limit, *presence, *watch))
            }
            Op::Advance(ms) => {
                self.model.now += *ms as i64;
                (done(self.engine.set_time(self.model.now)), Ok(None))
            }
            Op::Tick => {
                self.engine.tick().unwrap();
                self.model.tick();
                (Ok(None), Ok(None))
            }
            Op::SetTimeBackwards => (done(self.engine.set_time(self.model.now - 1)), Err(ErrorKind::State)),
            Op::Bad(bad) => {
                let (got, want) = self.bad_call(bad);
                (done(got), Err(want))
            }
        }
    }

    /// Runs one bad input; answers the engine's result and the kind it must fail with.
    fn bad_call(&self, bad: &Bad) -> (presence::Result<()>, ErrorKind) {
        let (e, host) = (&self.engine, ConnectionId::HOST);
        match bad {
            Bad::ConnectBadId => (e.connect_json(r#"{"id":"bad id"}"#).map(|_| ()), ErrorKind::Invalid),
            Bad::UpsertManagedField => (
                e.upsert_user_json(r#"{"id":"u0","last_active":"2020-01-01T00:00:00.000Z"}"#),
                ErrorKind::Invalid,
            ),
            Bad::WatchBadCid(c) => {
                (e.start_watching(ConnectionId(self.conn(*c)), "Team:x", true), ErrorKind::Invalid)
            }
            Bad::AddMembersUnknownChannel => {
                (e.add_members_json("team:zz", r#"["u0"]"#), ErrorKind::NotFound)
            }
            Bad::RemoveMembersUnknownUser(cid) => {
                (e.remove_members_json(cid, r#"["u0","u1","u2","u3","u4","nobody"]"#), ErrorKind::NotFound)
            }
            Bad::QueryLimitTooBig => (e.query_users(host, r#"{"limit":101}"#).map(|_| ()), ErrorKind::Limit),
            Bad::QueryPresenceAsHost => {
                (e.query_users(host, r#"{"presence":true}"#).map(|_| ()), ErrorKind::Invalid)
            }
            Bad::ChannelManagedField => {
                (e.upsert_channel_json(r#"{"cid":"team:a","member_count":3}"#), ErrorKind::Invalid)
            }
        }
    }

    /// Users and their connections.
    fn step_user(&mut self, op: &Op) -> (OpResult, OpResult) {
        let e = &self.engine;
        match op {
            Op::Connect { user, invisible, status, name } => {
                let p = Patch { id: user, invisible: *invisible, status: *status, name: *name };
                let got = e.connect_json(&patch_json(&p));
                let want = self.model.connect(&p);
                if let Ok(c) = got {
                    self.opened.push(c.0);
                }
                (got.map(|c| Some(json!(c.0))).map_err(kind), want.map(|c| Some(json!(c))))
            }
            Op::Disconnect(c) => {
                let c = self.conn(*c);
                let got = done(e.disconnect(ConnectionId(c)));
                (got, self.if_live(c, |m| m.close(c, "disconnect")))
            }
            Op::Heartbeat(c) => {
                let c = self.conn(*c);
                let got = done(e.heartbeat(ConnectionId(c)));
                (got, self.if_live(c, |m| m.conns.get_mut(&c).unwrap().last_seen = m.now))
            }
            Op::Upsert { user, invisible, status, name } => {
                let p = Patch { id: user, invisible: *invisible, status: *status, name: *name };
                let got = done(e.upsert_user_json(&patch_json(&p)));
                self.model.upsert(&p);
                (got, Ok(None))
            }
            Op::SetInvisible(u, b) => {
                let got = done(e.set_invisible(u, *b));
                let p = Patch { id: u, invisible: Some(*b), status: None, name: None };
                (got, self.if_user(u, |m| m.upsert(&p)))
            }
            Op::SetStatus(u, s) => {
                let got = done(e.set_status(u, *s));
                let p = Patch { id: u, invisible: None, status: Some(*s), name: None };
                (got, self.if_user(u, |m| m.upsert(&p)))
            }
            _ => unreachable!("not a user operation: {op:?}"),
        }
    }

    /// Channels, members, watching and subscriptions.
    fn step_channel(&mut self, op: &Op) -> (OpResult, OpResult) {
        let e = &self.engine;
        match op {
            Op::UpsertChannel(cid, members) => {
                let got = done(e.upsert_channel_json(&json!({"cid": cid, "members": members}).to_string()));
                (got, self.model.add_members(cid, members).map(|_| None))
            }
            Op::AddMembers(cid, members) => {
                let got = done(e.add_members_json(cid, &json!(members).to_string()));
                let want = match self.model.chans.contains_key(*cid) {
                    true => self.model.add_members(cid, members).map(|_| None),
                    false => Err(ErrorKind::NotFound),
                };
                (got, want)
            }
            Op::RemoveMembers(cid, members) => {
                let got = done(e.remove_members_json(cid, &json!(members).to_string()));
                (got, self.model.remove_members(cid, members).map(|_| None))
            }
            Op::DeleteChannel(cid) => {
                let got = done(e.delete_channel(cid));
                (got, self.model.delete_channel(cid).map(|_| None))
            }
            Op::Watch { conn, cid, presence } => {
                let c = self.conn(*conn);
                let got = e
                    .watch_channel(ConnectionId(c), cid, *presence)
                    .map(|a| Some(a.to_value()))
                    .map_err(kind);
                let want = if !self.model.chans.contains_key(*cid) || !self.live(c) {
                    Err(ErrorKind::NotFound)
                } else {
                    self.model.watch(c, cid, *presence).map(|_| {
                        self.model.settle();
                        let viewer = self.model.conns[&c].user.clone();
                        Some(self.model.render_channel_state(cid, Some(&viewer)))
                    })
                };
                (got, want)
            }
            Op::StopWatching(conn, cid) => {
                let c = self.conn(*conn);
                let got = done(e.stop_watching(ConnectionId(c), cid));
                let want = match self.model.chans.contains_key(*cid) {
                    true => self.if_live(c, |m| m.unwatch(c, cid)),
                    false => Err(ErrorKind::NotFound),
                };
                (got, want)
            }
            Op::Unsubscribe(conn, u) => {
                let c = self.conn(*conn);
                let got = done(e.unsubscribe_user(ConnectionId(c), u));
                let want = match self.model.users.contains_key(*u) {
                    true => self.if_live(c, |m| {
                        m.conns.get_mut(&c).unwrap().direct.remove(*u);
                    }),
                    false => Err(ErrorKind::NotFound),
                };
                (got, want)
            }
            _ => unreachable!("not a channel operation: {op:?}"),
        }
    }

    pub fn model_query_users(
        &mut self,
        v: u64,
        filter: &UserFilter,
        sort: UserSort,
        limit: u8,
        presence: bool,
    ) -> OpResult {
        let m = &self.model;
        let viewer_user = m.viewer_user(v)?;
        if presence && v == 0 {
            return Err(ErrorKind::Invalid);
        }
        let mut rows: Vec<&String> = m
            .users
            .keys()
            .filter(|u| match filter {
                UserFilter::All => true,
                UserFilter::IdIn(ids) => ids.contains(&u.as_str()),
                UserFilter::Online(b) => m.online_for(u, viewer_user.as_deref()) == *b,
            })
            .collect();
        // Ties (and missing values, which sort last) break by id ascending.
        match sort {
            UserSort::IdAsc => rows.sort(),
            UserSort::Default => rows.sort_by_key(|u| (std::cmp::Reverse(m.users[*u].created_at), *u)),
            UserSort::LastActiveDesc => rows.sort_by_key(|u| {
                let t = m.users[*u].last_active;
                (t.is_none(), std::cmp::Reverse(t), *u)
            }),
        }
        rows.truncate(limit as usize);
        let page: Vec<String> = rows.into_iter().cloned().collect();
        let answer = json!({"users": page.iter().map(|u| m.render_user(u, viewer_user.as_deref())).collect::<Vec<_>>()});
        if presence {
            if m.over_limit(v, &page) {
                return Err(ErrorKind::Limit);
            }
            self.model.conns.get_mut(&v).unwrap().direct.extend(page);
        }
        Ok(Some(answer))
    }

    pub fn model_query_channels(
        &mut self,
        v: u64,
        filter: &ChanFilter,
        sort: ChanSort,
        limit: u8,
        presence: bool,
        watch: bool,
    ) -> OpResult {
        let m = &self.model;
        let viewer_user = m.viewer_user(v)?;
        let watch = watch || presence;
        if watch && v == 0 {
            return Err(ErrorKind::Invalid);
        }
        let mut rows: Vec<String> = m
            .chans
            .iter()
            .filter(|(cid, ch)| match filter {
                ChanFilter::All => true,
                ChanFilter::CidIn(cids) => cids.contains(&cid.as_str()),
                ChanFilter::MemberIs(u) => ch.members.contains(*u),
            })
            .map(|(cid, _)| cid.clone())
            .collect();
        match sort {
            ChanSort::Default => rows.sort(),
            ChanSort::MemberCountDesc => {
                rows.sort_by_key(|c| (std::cmp::Reverse(m.chans[c].members.len()), c.clone()))
            }
        }
        rows.truncate(limit as usize);
        if watch {
            if presence {
                let members: Vec<String> =
                    rows.iter().flat_map(|c| m.chans[c].members.iter().cloned()).collect();
                if m.over_limit(v, &members) {
                    return Err(ErrorKind::Limit);
                }
            }
            for cid in &rows {
                self.model.watch(v, cid, presence).expect("the limit was checked for the whole page");
            }
            self.model.settle();
        }
        let m = &self.model;
        Ok(Some(
            json!({"channels": rows.iter().map(|c| m.render_channel_state(c, viewer_user.as_deref())).collect::<Vec<_>>()}),
        ))
    }

    /// Compares everything observable after a step.
    pub fn check(&mut self, step: usize, op: &Op) -> Result<(), TestCaseError> {
        let at = format!("after step {step}: {op:?}");
        self.model.queued.clear();
        self.model.overflowed_set.clear();
        self.check_host_events(&at)?;
        let by_conn = self.check_deliveries(&at)?;
        self.check_queues(&by_conn, &at)?;
        self.check_views(&at)?;
        self.check_channels_and_counts(&at)
    }

    /// Host listener: exact sequence, consecutive seq (nothing lost or reordered).
    fn check_host_events(&mut self, at: &str) -> Result<(), TestCaseError> {
        let host: Vec<Arc<Event>> = std::mem::take(&mut *self.host.lock().unwrap());
        for ev in &host {
            prop_assert_eq!(ev.seq, self.last_host_seq + 1, "host seq gap {}", at);
            self.last_host_seq = ev.seq;
        }
        let got: Vec<Ev> = host.iter().map(|ev| ev_of(ev, View::Own)).collect();
        let want = std::mem::take(&mut self.model.host);
        prop_assert_eq!(got, want, "host events {}", at);
        Ok(())
    }

    /// Delivery listener, per recipient connection; answers what each connection got.
    fn check_deliveries(&mut self, at: &str) -> Result<BTreeMap<u64, Vec<Dv>>, TestCaseError> {
        let deliveries: Vec<Delivery> = std::mem::take(&mut *self.deliveries.lock().unwrap());
        let mut by_conn: BTreeMap<u64, Vec<Dv>> = BTreeMap::new();
        for d in &deliveries {
            let last = self.last_seq_per_conn.entry(d.connection.0).or_insert(0);
            prop_assert!(d.event.seq > *last, "delivery seq not increasing for {} {}", d.connection, at);
            *last = d.event.seq;
            by_conn.entry(d.connection.0).or_default().push(dv_of(d));
        }
        let want = std::mem::take(&mut self.model.deliveries);
        prop_assert_eq!(&by_conn, &want, "deliveries {}", at);
        Ok(by_conn)
    }

    /// The queues of live connections hold what the delivery listener got; closed ones are gone.
    fn check_queues(&mut self, by_conn: &BTreeMap<u64, Vec<Dv>>, at: &str) -> Result<(), TestCaseError> {
        let (e, m) = (&self.engine, &self.model);
        for &c in &self.opened {
            let polled = e.poll_events(ConnectionId(c), usize::MAX);
            if !m.conns.contains_key(&c) {
                prop_assert_eq!(
                    polled.map(|_| ()).map_err(|e| e.kind()),
                    Err(ErrorKind::NotFound),
                    "poll of closed {} {}",
                    c,
                    at
                );
                prop_assert_eq!(
                    e.get_user(ConnectionId(c), "u0").map(|_| ()).map_err(|e| e.kind()),
                    Err(ErrorKind::NotFound)
                );
                continue;
            }
            let polled = polled.map_err(|err| TestCaseError::fail(format!("poll {c}: {err} {at}")))?;
            for d in &polled {
                prop_assert_eq!(d.connection.0, c);
                let last = self.last_queue_seq.entry(c).or_insert(0);
                prop_assert!(d.event.seq > *last, "queue seq not increasing {}", at);
                *last = d.event.seq;
            }
            let got: Vec<Dv> = polled.iter().map(dv_of).collect();
            // The queue holds exactly what the delivery listener got (none with queues
            // disabled).
            let expected = match m.cfg.queue_cap {
                0 => Vec::new(),
                _ => by_conn.get(&c).cloned().unwrap_or_default(),
            };
            prop_assert_eq!(&got, &expected, "queue of {} {}", c, at);
        }
        Ok(())
    }

    /// Views: the host sees own views of everyone; each connection sees every user in the
    /// view it is entitled to.
    fn check_views(&self, at: &str) -> Result<(), TestCaseError> {
        let (e, m) = (&self.engine, &self.model);
        for u in USERS {
            let got = e.get_user(ConnectionId::HOST, u).map(|a| a.to_value());
            match m.users.contains_key(u) {
                true => prop_assert_eq!(got.ok(), Some(m.render_user(u, None)), "host view of {} {}", u, at),
                false => prop_assert_eq!(got.map_err(|e| e.kind()), Err(ErrorKind::NotFound)),
            }
        }
        // Views depend only on the viewer's user: one connection per user is enough.
        let mut live: Vec<(u64, String)> = m.conns.iter().map(|(&c, x)| (c, x.user.clone())).collect();
        live.sort_by(|a, b| a.1.cmp(&b.1));
        live.dedup_by(|a, b| a.1 == b.1);
        for (c, viewer) in &live {
            let got = e
                .query_users(ConnectionId(*c), r#"{"sort":{"id":1},"limit":100}"#)
                .map_err(|err| TestCaseError::fail(format!("query as {c}: {err} {at}")))?
                .to_value();
            let want =
                json!({"users": m.users.keys().map(|u| m.render_user(u, Some(viewer))).collect::<Vec<_>>()});
            prop_assert_eq!(got, want, "views of connection {} ({}) {}", c, viewer, at);
        }
        if let Some((c, viewer)) = live.first() {
            // One per-user lookup through a connection too.
            for u in m.users.keys() {
                let got = e.get_user(ConnectionId(*c), u).ok().map(|a| a.to_value());
                prop_assert_eq!(got, Some(m.render_user(u, Some(viewer))), "get_user {} as {} {}", u, c, at);
            }
        }
        Ok(())
    }

    /// Channels (members, watcher counts and watcher lists) and the counts.
    fn check_channels_and_counts(&self, at: &str) -> Result<(), TestCaseError> {
        let (e, m) = (&self.engine, &self.model);
        let got = e
            .query_channels(ConnectionId::HOST, r#"{"sort":{"cid":1},"limit":100}"#)
            .map_err(|err| TestCaseError::fail(format!("query_channels: {err}")))?
            .to_value();
        let want =
            json!({"channels": m.chans.keys().map(|c| m.render_channel_state(c, None)).collect::<Vec<_>>()});
        prop_assert_eq!(got, want, "channels {}", at);
        prop_assert_eq!(
            e.counts(),
            Counts { users: m.users.len(), connections: m.conns.len(), channels: m.chans.len() },
            "counts {}",
            at
        );
        Ok(())
    }
}
