//! One case: each step runs on the engine and on the model, then everything observable is
//! compared.
use crate::common::{record_all, DeliveryLog, HostLog};
use crate::observed::{dv_of, ev_of, unordered, Dv, Ev};
use crate::ops::{Bad, ChanFilter, ChanSort, Cfg, Conn, Op, UserFilter, UserSort, Viewer};
use crate::reference::{Model, OpResult, Patch};
use crate::USERS;
use presence::{ConnectionId, Delivery, Engine, ErrorKind, Event, View};
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

    /// Runs one operation on both sides; answers (engine result, model result).
    pub fn step(&mut self, op: &Op) -> (OpResult, OpResult) {
        let e = &self.engine;
        let kind = |r: presence::Error| r.kind();
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
                let got = e.disconnect(ConnectionId(c)).map(|_| None).map_err(kind);
                let want = if self.live(c) {
                    self.model.close(c, "disconnect");
                    Ok(None)
                } else {
                    Err(ErrorKind::NotFound)
                };
                (got, want)
            }
            Op::Heartbeat(c) => {
                let c = self.conn(*c);
                let got = e.heartbeat(ConnectionId(c)).map(|_| None).map_err(kind);
                let want = if self.live(c) {
                    self.model.conns.get_mut(&c).unwrap().last_seen = self.model.now;
                    Ok(None)
                } else {
                    Err(ErrorKind::NotFound)
                };
                (got, want)
            }
            Op::Upsert { user, invisible, status, name } => {
                let p = Patch { id: user, invisible: *invisible, status: *status, name: *name };
                let got = e.upsert_user_json(&patch_json(&p)).map(|_| None).map_err(kind);
                self.model.upsert(&p);
                (got, Ok(None))
            }
            Op::SetInvisible(u, b) => {
                let got = e.set_invisible(u, *b).map(|_| None).map_err(kind);
                let want = if self.model.users.contains_key(*u) {
                    self.model.upsert(&Patch { id: u, invisible: Some(*b), status: None, name: None });
                    Ok(None)
                } else {
                    Err(ErrorKind::NotFound)
                };
                (got, want)
            }
            Op::SetStatus(u, s) => {
                let got = e.set_status(u, *s).map(|_| None).map_err(kind);
                let want = if self.model.users.contains_key(*u) {
                    self.model.upsert(&Patch { id: u, invisible: None, status: Some(*s), name: None });
                    Ok(None)
                } else {
                    Err(ErrorKind::NotFound)
                };
                (got, want)
            }
            Op::UpsertChannel(cid, members) => {
                let got = e
                    .upsert_channel_json(&json!({"cid": cid, "members": members}).to_string())
                    .map(|_| None)
                    .map_err(kind);
                let want = self.model.add_members(cid, members).map(|_| None);
                (got, want)
            }
            Op::AddMembers(cid, members) => {
                let got = e.add_members_json(cid, &json!(members).to_string()).map(|_| None).map_err(kind);
                let want = if self.model.chans.contains_key(*cid) {
                    self.model.add_members(cid, members).map(|_| None)
                } else {
                    Err(ErrorKind::NotFound)
                };
                (got, want)
            }
            Op::RemoveMembers(cid, members) => {
                let got = e.remove_members_json(cid, &json!(members).to_string()).map(|_| None).map_err(kind);
                let m = &mut self.model;
                let want = if !m.chans.contains_key(*cid) || members.iter().any(|u| !m.users.contains_key(*u))
                {
                    Err(ErrorKind::NotFound)
                } else {
                    for u in members {
                        if m.chans.get_mut(*cid).unwrap().members.remove(*u) {
                            m.emit_channel("member.removed", cid, u, None);
                        }
                    }
                    Ok(None)
                };
                (got, want)
            }
            Op::DeleteChannel(cid) => {
                let got = e.delete_channel(cid).map(|_| None).map_err(kind);
                let m = &mut self.model;
                let want = match m.chans.remove(*cid) {
                    None => Err(ErrorKind::NotFound),
                    Some(ch) => {
                        // Watchers stop watching and members leave, without events.
                        m.free_chan_idx.push(ch.idx);
                        for conn in m.conns.values_mut() {
                            conn.watching.retain(|(w, _)| w != cid);
                        }
                        Ok(None)
                    }
                };
                (got, want)
            }
            Op::Watch { conn, cid, presence } => {
                let c = self.conn(*conn);
                let got = e.watch_channel_state(ConnectionId(c), cid, *presence).map(Some).map_err(kind);
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
                let got = e.stop_watching(ConnectionId(c), cid).map(|_| None).map_err(kind);
                let want = if !self.model.chans.contains_key(*cid) || !self.live(c) {
                    Err(ErrorKind::NotFound)
                } else {
                    self.model.unwatch(c, cid);
                    Ok(None)
                };
                (got, want)
            }
            Op::QueryUsers { viewer, filter, sort, limit, presence } => {
                let v = match viewer {
                    Viewer::Host => 0,
                    Viewer::C(c) => self.conn(*c),
                };
                let mut q = Map::new();
                q.insert(
                    "filter_conditions".into(),
                    match filter {
                        UserFilter::All => json!({}),
                        UserFilter::IdIn(ids) => json!({"id": {"$in": ids}}),
                        UserFilter::Online(b) => json!({"online": b}),
                    },
                );
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
                let got =
                    e.query_users(ConnectionId(v), &Value::Object(q).to_string()).map(Some).map_err(kind);
                let want = self.model_query_users(v, filter, *sort, *limit, *presence);
                (got, want)
            }
            Op::QueryChannels { viewer, filter, sort, limit, presence, watch } => {
                let v = match viewer {
                    Viewer::Host => 0,
                    Viewer::C(c) => self.conn(*c),
                };
                let mut q = Map::new();
                q.insert(
                    "filter_conditions".into(),
                    match filter {
                        ChanFilter::All => json!({}),
                        ChanFilter::CidIn(cids) => json!({"cid": {"$in": cids}}),
                        ChanFilter::MemberIs(u) => json!({"members": {"$in": [u]}}),
                    },
                );
                if let ChanSort::MemberCountDesc = sort {
                    q.insert("sort".into(), json!({"member_count": -1}));
                }
                q.insert("limit".into(), json!(limit));
                q.insert("presence".into(), json!(presence));
                q.insert("watch".into(), json!(watch));
                let got =
                    e.query_channels(ConnectionId(v), &Value::Object(q).to_string()).map(Some).map_err(kind);
                let want = self.model_query_channels(v, filter, *sort, *limit, *presence, *watch);
                (got, want)
            }
            Op::Unsubscribe(conn, u) => {
                let c = self.conn(*conn);
                let got = e.unsubscribe_user(ConnectionId(c), u).map(|_| None).map_err(kind);
                let want = if !self.live(c) || !self.model.users.contains_key(*u) {
                    Err(ErrorKind::NotFound)
                } else {
                    self.model.conns.get_mut(&c).unwrap().direct.remove(*u);
                    Ok(None)
                };
                (got, want)
            }
            Op::Advance(ms) => {
                self.model.now += *ms as i64;
                let got = e.set_time(self.model.now).map(|_| None).map_err(kind);
                (got, Ok(None))
            }
            Op::Tick => {
                e.tick();
                self.model.tick();
                (Ok(None), Ok(None))
            }
            Op::SetTimeBackwards => {
                let got = e.set_time(self.model.now - 1).map(|_| None).map_err(kind);
                (got, Err(ErrorKind::State))
            }
            Op::Bad(bad) => {
                let (got, want) = match bad {
                    Bad::ConnectBadId => {
                        (e.connect_json(r#"{"id":"bad id"}"#).map(|_| ()), ErrorKind::Invalid)
                    }
                    Bad::UpsertManagedField => (
                        e.upsert_user_json(r#"{"id":"u0","last_active":"2020-01-01T00:00:00.000Z"}"#),
                        ErrorKind::Invalid,
                    ),
                    Bad::WatchBadCid(c) => {
                        (e.watch_channel(ConnectionId(self.conn(*c)), "Team:x", true), ErrorKind::Invalid)
                    }
                    Bad::AddMembersUnknownChannel => {
                        (e.add_members_json("team:zz", r#"["u0"]"#), ErrorKind::NotFound)
                    }
                    Bad::RemoveMembersUnknownUser(cid) => (
                        e.remove_members_json(cid, r#"["u0","u1","u2","u3","u4","nobody"]"#),
                        ErrorKind::NotFound,
                    ),
                    Bad::QueryLimitTooBig => {
                        (e.query_users(ConnectionId::HOST, r#"{"limit":101}"#).map(|_| ()), ErrorKind::Limit)
                    }
                    Bad::QueryPresenceAsHost => (
                        e.query_users(ConnectionId::HOST, r#"{"presence":true}"#).map(|_| ()),
                        ErrorKind::Invalid,
                    ),
                    Bad::ChannelManagedField => {
                        (e.upsert_channel_json(r#"{"cid":"team:a","member_count":3}"#), ErrorKind::Invalid)
                    }
                };
                (got.map(|_| None).map_err(kind), Err(want))
            }
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
        let e = &self.engine;
        let m = &mut self.model;
        let at = || format!("after step {step}: {op:?}");

        // Host listener: exact sequence, consecutive seq (nothing lost or reordered).
        let host: Vec<Arc<Event>> = std::mem::take(&mut *self.host.lock().unwrap());
        for ev in &host {
            prop_assert_eq!(ev.seq, self.last_host_seq + 1, "host seq gap {}", at());
            self.last_host_seq = ev.seq;
        }
        let uncertain = std::mem::take(&mut m.uncertain_order);
        m.queued.clear();
        m.overflowed_set.clear();
        let got: Vec<Ev> = host.iter().map(|ev| ev_of(ev, View::Own)).collect();
        let want = std::mem::take(&mut m.host);
        if uncertain {
            let mask = unordered;
            prop_assert_eq!(mask(got), mask(want), "host events (as a multiset) {}", at());
        } else {
            prop_assert_eq!(got, want, "host events {}", at());
        }

        // Delivery listener, per recipient connection, and the queues of live connections.
        let deliveries: Vec<Delivery> = std::mem::take(&mut *self.deliveries.lock().unwrap());
        let mut by_conn: BTreeMap<u64, Vec<Dv>> = BTreeMap::new();
        for d in &deliveries {
            let last = self.last_seq_per_conn.entry(d.connection.0).or_insert(0);
            prop_assert!(d.event.seq > *last, "delivery seq not increasing for {} {}", d.connection, at());
            *last = d.event.seq;
            by_conn.entry(d.connection.0).or_default().push(dv_of(d));
        }
        let want = std::mem::take(&mut m.deliveries);
        if uncertain {
            // Own-view flags are kept in the comparison through the event text.
            let norm = |x: &BTreeMap<u64, Vec<Dv>>| -> BTreeMap<u64, (Vec<String>, usize)> {
                x.iter()
                    .map(|(c, v)| {
                        let own = v.iter().filter(|d| d.own_view).count();
                        (*c, (unordered(v.iter().map(|d| d.ev.clone()).collect()), own))
                    })
                    .collect()
            };
            prop_assert_eq!(norm(&by_conn), norm(&want), "deliveries (as multisets) {}", at());
        } else {
            prop_assert_eq!(&by_conn, &want, "deliveries {}", at());
        }
        for &c in &self.opened {
            let polled = e.poll_events(ConnectionId(c), usize::MAX);
            if m.conns.contains_key(&c) {
                let polled =
                    polled.map_err(|err| TestCaseError::fail(format!("poll {c}: {err} {}", at())))?;
                for d in &polled {
                    prop_assert_eq!(d.connection.0, c);
                    let last = self.last_queue_seq.entry(c).or_insert(0);
                    prop_assert!(d.event.seq > *last, "queue seq not increasing {}", at());
                    *last = d.event.seq;
                }
                let got: Vec<Dv> = polled.iter().map(dv_of).collect();
                // The queue holds exactly what the delivery listener got (none with queues
                // disabled).
                let expected = match m.cfg.queue_cap {
                    0 => Vec::new(),
                    _ => by_conn.get(&c).cloned().unwrap_or_default(),
                };
                prop_assert_eq!(&got, &expected, "queue of {} {}", c, at());
            } else {
                prop_assert_eq!(
                    polled.map(|_| ()).map_err(|e| e.kind()),
                    Err(ErrorKind::NotFound),
                    "poll of closed {} {}",
                    c,
                    at()
                );
                prop_assert_eq!(
                    e.get_user(ConnectionId(c), "u0").map(|_| ()).map_err(|e| e.kind()),
                    Err(ErrorKind::NotFound)
                );
            }
        }

        // Views: the host sees own views of everyone; each connection sees every user in
        // the view it is entitled to.
        for u in USERS {
            let got = e.get_user(ConnectionId::HOST, u);
            match m.users.contains_key(u) {
                true => {
                    prop_assert_eq!(got.ok(), Some(m.render_user(u, None)), "host view of {} {}", u, at())
                }
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
                .map_err(|err| TestCaseError::fail(format!("query as {c}: {err} {}", at())))?;
            let want =
                json!({"users": m.users.keys().map(|u| m.render_user(u, Some(viewer))).collect::<Vec<_>>()});
            prop_assert_eq!(got, want, "views of connection {} ({}) {}", c, viewer, at());
        }
        if let Some((c, viewer)) = live.first() {
            // One per-user lookup through a connection too.
            for u in m.users.keys() {
                let got = e.get_user(ConnectionId(*c), u).ok();
                prop_assert_eq!(
                    got,
                    Some(m.render_user(u, Some(viewer))),
                    "get_user {} as {} {}",
                    u,
                    c,
                    at()
                );
            }
        }

        // Channels: members, watcher counts and watcher lists.
        let got = e
            .query_channels(ConnectionId::HOST, r#"{"sort":{"cid":1},"limit":100}"#)
            .map_err(|err| TestCaseError::fail(format!("query_channels: {err}")))?;
        let want =
            json!({"channels": m.chans.keys().map(|c| m.render_channel_state(c, None)).collect::<Vec<_>>()});
        prop_assert_eq!(got, want, "channels {}", at());

        prop_assert_eq!(e.counts(), (m.users.len(), m.conns.len(), m.chans.len()), "counts {}", at());
        Ok(())
    }
}
