//! Model-based property tests (issue 7).
//!
//! Random sequences of every engine operation run against the engine and against a small
//! reference model written here. The model stores only primary facts (users' fields, live
//! connections with what they watch and which users they subscribed to directly, channel
//! members, the clock) and recomputes everything derived from scratch when it is needed:
//! online-ness, each connection's subscription set (the union of its routes), watcher
//! counts and lists, the recipients of every event.
//!
//! After every step the test compares: the result (or error kind) of the operation, the
//! events host listeners saw, the deliveries each connection got (delivery listener and
//! `poll_events`), `seq` ordering, every user's view for the host and for every live
//! connection, every channel's state (members, watcher_count, watchers) and the counts.
//!
//! A failure prints the shrunk operation list (the `Debug` of [`Op`]) and the step that
//! disagreed. Connections are named by the order they were opened (`#0` is the first
//! connection of the case); a reference to a closed connection exercises `NotFound`.
mod common;

use common::{record_all, DeliveryLog, HostLog};
use presence::time::format_millis;
use presence::{ConnectionId, Delivery, Engine, ErrorKind, Event, EventKind, View};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::{Arc, Mutex};

const USERS: [&str; 5] = ["u0", "u1", "u2", "u3", "u4"];
const CHANNELS: [&str; 3] = ["team:a", "team:b", "dm:c"];
const STATUSES: [&str; 2] = ["busy", "away"];
const T0: i64 = 1_600_000_000_000;

// ---------------------------------------------------------------------------------------
// Operations

/// A connection reference, resolved when the step runs: `Conn(k)` with `k < 4` is the
/// `k`-th live connection (modulo how many are live, oldest first), printed `live#k`;
/// otherwise the `k`-th connection ever opened in the case (modulo how many), which may be
/// closed, printed `any#k`. With nothing to pick from, an id the engine never issued.
#[derive(Clone, Copy)]
struct Conn(u8);

impl fmt::Debug for Conn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 < 4 {
            write!(f, "live#{}", self.0)
        } else {
            write!(f, "any#{}", self.0 - 4)
        }
    }
}

#[derive(Clone, Copy, Debug)]
enum Viewer {
    Host,
    C(Conn),
}

#[derive(Clone, Debug)]
enum UserFilter {
    All,
    IdIn(Vec<&'static str>),
    Online(bool),
}

#[derive(Clone, Copy, Debug)]
enum UserSort {
    /// No sort: `created_at` descending, ties by id.
    Default,
    IdAsc,
    LastActiveDesc,
}

#[derive(Clone, Debug)]
enum ChanFilter {
    All,
    CidIn(Vec<&'static str>),
    MemberIs(&'static str),
}

#[derive(Clone, Copy, Debug)]
enum ChanSort {
    /// No sort: `last_message_at` descending (never set here), ties by cid.
    Default,
    MemberCountDesc,
}

/// Inputs that must fail with a given kind and change nothing.
#[derive(Clone, Debug)]
enum Bad {
    ConnectBadId,
    UpsertManagedField,
    WatchBadCid(Conn),
    AddMembersUnknownChannel,
    RemoveMembersUnknownUser(&'static str),
    QueryLimitTooBig,
    QueryPresenceAsHost,
    ChannelManagedField,
}

#[derive(Clone, Debug)]
enum Op {
    Connect {
        user: &'static str,
        invisible: Option<bool>,
        status: Option<Option<&'static str>>,
        name: Option<Option<u8>>,
    },
    Disconnect(Conn),
    Heartbeat(Conn),
    Upsert {
        user: &'static str,
        invisible: Option<bool>,
        status: Option<Option<&'static str>>,
        name: Option<Option<u8>>,
    },
    SetInvisible(&'static str, bool),
    SetStatus(&'static str, Option<&'static str>),
    UpsertChannel(&'static str, Vec<&'static str>),
    AddMembers(&'static str, Vec<&'static str>),
    RemoveMembers(&'static str, Vec<&'static str>),
    DeleteChannel(&'static str),
    Watch {
        conn: Conn,
        cid: &'static str,
        presence: bool,
    },
    StopWatching(Conn, &'static str),
    QueryUsers {
        viewer: Viewer,
        filter: UserFilter,
        sort: UserSort,
        limit: u8,
        presence: bool,
    },
    QueryChannels {
        viewer: Viewer,
        filter: ChanFilter,
        sort: ChanSort,
        limit: u8,
        presence: bool,
        watch: bool,
    },
    Unsubscribe(Conn, &'static str),
    /// `set_time(now + ms)` (no tick).
    Advance(u32),
    Tick,
    SetTimeBackwards,
    Bad(Bad),
}

/// Engine configuration knobs varied per case.
#[derive(Clone, Debug)]
struct Cfg {
    timeout: u64,
    grace: u64,
    refresh: u64,
    max_conns: u32,
    max_subs: u32,
    /// `connection_queue_capacity` (0 disables queues).
    queue_cap: u32,
}

impl Cfg {
    fn json(&self) -> String {
        json!({
            "clock": "manual",
            "start_time_ms": T0,
            "connection_timeout_ms": self.timeout,
            "offline_grace_ms": self.grace,
            "last_active_refresh_ms": self.refresh,
            "max_connections_per_user": self.max_conns,
            "max_subscriptions_per_connection": self.max_subs,
            "connection_queue_capacity": self.queue_cap,
        })
        .to_string()
    }
}

fn user() -> impl Strategy<Value = &'static str> {
    prop::sample::select(&USERS[..])
}
fn cid() -> impl Strategy<Value = &'static str> {
    prop::sample::select(&CHANNELS[..])
}
fn conn() -> impl Strategy<Value = Conn> {
    prop_oneof![4 => (0u8..4).prop_map(Conn), 1 => (4u8..8).prop_map(Conn)]
}
fn viewer() -> impl Strategy<Value = Viewer> {
    prop_oneof![1 => Just(Viewer::Host), 3 => conn().prop_map(Viewer::C)]
}
fn users_list() -> impl Strategy<Value = Vec<&'static str>> {
    prop::collection::vec(user(), 0..4)
}
fn status_patch() -> impl Strategy<Value = Option<Option<&'static str>>> {
    prop_oneof![
        3 => Just(None),
        1 => Just(Some(None)),
        2 => prop::sample::select(&STATUSES[..]).prop_map(|s| Some(Some(s))),
    ]
}
fn name_patch() -> impl Strategy<Value = Option<Option<u8>>> {
    prop_oneof![4 => Just(None), 1 => Just(Some(None)), 2 => (0u8..2).prop_map(|n| Some(Some(n)))]
}
fn invisible_patch() -> impl Strategy<Value = Option<bool>> {
    prop_oneof![3 => Just(None), 1 => Just(Some(true)), 1 => Just(Some(false))]
}

fn op() -> impl Strategy<Value = Op> {
    let bad = prop_oneof![
        Just(Bad::ConnectBadId),
        Just(Bad::UpsertManagedField),
        conn().prop_map(Bad::WatchBadCid),
        Just(Bad::AddMembersUnknownChannel),
        cid().prop_map(Bad::RemoveMembersUnknownUser),
        Just(Bad::QueryLimitTooBig),
        Just(Bad::QueryPresenceAsHost),
        Just(Bad::ChannelManagedField),
    ];
    let user_filter = prop_oneof![
        Just(UserFilter::All),
        prop::collection::vec(user(), 0..3).prop_map(UserFilter::IdIn),
        any::<bool>().prop_map(UserFilter::Online),
    ];
    let user_sort =
        prop_oneof![Just(UserSort::Default), Just(UserSort::IdAsc), Just(UserSort::LastActiveDesc)];
    let chan_filter = prop_oneof![
        Just(ChanFilter::All),
        prop::collection::vec(cid(), 0..3).prop_map(ChanFilter::CidIn),
        user().prop_map(ChanFilter::MemberIs),
    ];
    let chan_sort = prop_oneof![Just(ChanSort::Default), Just(ChanSort::MemberCountDesc)];
    prop_oneof![
        8 => (user(), invisible_patch(), status_patch(), name_patch()).prop_map(
            |(user, invisible, status, name)| Op::Connect { user, invisible, status, name }
        ),
        4 => conn().prop_map(Op::Disconnect),
        2 => conn().prop_map(Op::Heartbeat),
        3 => (user(), invisible_patch(), status_patch(), name_patch()).prop_map(
            |(user, invisible, status, name)| Op::Upsert { user, invisible, status, name }
        ),
        4 => (user(), any::<bool>()).prop_map(|(u, b)| Op::SetInvisible(u, b)),
        3 => (user(), prop::option::of(prop::sample::select(&STATUSES[..])))
            .prop_map(|(u, s)| Op::SetStatus(u, s)),
        4 => (cid(), users_list()).prop_map(|(c, m)| Op::UpsertChannel(c, m)),
        3 => (cid(), users_list()).prop_map(|(c, m)| Op::AddMembers(c, m)),
        3 => (cid(), users_list()).prop_map(|(c, m)| Op::RemoveMembers(c, m)),
        1 => cid().prop_map(Op::DeleteChannel),
        8 => (conn(), cid(), any::<bool>())
            .prop_map(|(conn, cid, presence)| Op::Watch { conn, cid, presence }),
        2 => (conn(), cid()).prop_map(|(c, ch)| Op::StopWatching(c, ch)),
        3 => (viewer(), user_filter, user_sort, prop::sample::select(vec![1u8, 2, 3, 30]), any::<bool>())
            .prop_map(|(viewer, filter, sort, limit, presence)| Op::QueryUsers {
                viewer, filter, sort, limit, presence
            }),
        3 => (viewer(), chan_filter, chan_sort, prop::sample::select(vec![1u8, 2, 30]), any::<bool>(), any::<bool>())
            .prop_map(|(viewer, filter, sort, limit, presence, watch)| Op::QueryChannels {
                viewer, filter, sort, limit, presence, watch
            }),
        2 => (conn(), user()).prop_map(|(c, u)| Op::Unsubscribe(c, u)),
        3 => prop::sample::select(vec![1u32, 10, 25, 40, 49, 50, 51, 99, 100, 101, 1000])
            .prop_map(Op::Advance),
        3 => Just(Op::Tick),
        1 => Just(Op::SetTimeBackwards),
        1 => bad.prop_map(Op::Bad),
    ]
}

// ---------------------------------------------------------------------------------------
// What is compared

/// An event as host listeners see it (own view), reduced to what the model predicts.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Ev {
    ty: &'static str,
    user: String,
    online: bool,
    status: Option<String>,
    cid: Option<String>,
    watcher_count: Option<u32>,
    /// `connection.closed`: the connection and the reason.
    closed: Option<(u64, &'static str)>,
}

/// One delivery to one connection: the event as that connection sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Dv {
    ev: Ev,
    own_view: bool,
}

fn ev_of(event: &Event, view: View) -> Ev {
    let user = event.user();
    let (watcher_count, closed) = match &event.kind {
        EventKind::WatchingStart { watcher_count, .. } | EventKind::WatchingStop { watcher_count, .. } => {
            (Some(*watcher_count), None)
        }
        EventKind::ConnectionClosed { connection, reason, .. } => {
            (None, Some((connection.0, reason.as_str())))
        }
        _ => (None, None),
    };
    Ev {
        ty: event.type_name(),
        user: user.id.to_string(),
        online: user.online(view),
        status: user.status.as_deref().map(str::to_owned),
        cid: event.channel().map(|c| c.cid.to_string()),
        watcher_count,
        closed,
    }
}

fn dv_of(d: &Delivery) -> Dv {
    Dv { ev: ev_of(&d.event, d.view), own_view: d.view == View::Own }
}

// ---------------------------------------------------------------------------------------
// The reference model

#[derive(Clone, Debug)]
struct MUser {
    /// Creation order (ties between due timers break by it).
    idx: usize,
    status: Option<String>,
    name: Option<u8>,
    invisible: bool,
    last_active: Option<i64>,
    created_at: i64,
    updated_at: i64,
    grace_until: Option<i64>,
}

#[derive(Clone, Debug)]
struct MConn {
    user: String,
    last_seen: i64,
    /// When the engine's timeout timer for it is due (connect + timeout, then each
    /// deadline it was pushed back to).
    timeout_due: i64,
    /// Watched channels in the order watching started, with the presence flag.
    watching: Vec<(String, bool)>,
    /// Users returned by `query_users` with presence (the "direct" route).
    direct: BTreeSet<String>,
}

#[derive(Clone, Debug)]
struct MChan {
    idx: usize,
    members: BTreeSet<String>,
    created_at: i64,
}

type OpResult = Result<Option<Value>, ErrorKind>;
/// A user's presence as the views show it: (online to others, online in the own view,
/// status, invisible).
type Views = (bool, bool, Option<String>, bool);

struct Model {
    cfg: Cfg,
    now: i64,
    users: BTreeMap<String, MUser>,
    conns: BTreeMap<u64, MConn>,
    chans: BTreeMap<String, MChan>,
    /// Channel slots: the engine reuses the slot of a deleted channel (last freed first);
    /// the slot orders watching events when a user's visibility flips.
    next_chan_idx: usize,
    free_chan_idx: Vec<usize>,
    next_conn: u64,
    host: Vec<Ev>,
    deliveries: BTreeMap<u64, Vec<Dv>>,
    /// Deliveries queued per connection during the current step (the harness drains every
    /// queue after each step).
    queued: BTreeMap<u64, usize>,
    /// Connections whose queue overflowed, in order; closed when the command settles.
    overflowed: Vec<u64>,
    overflowed_set: BTreeSet<u64>,
    /// Several slow consumers closed in one command: the engine closes them in an order
    /// that depends on its hash maps, so this step's events are compared as multisets.
    uncertain_order: bool,
}

struct Patch {
    id: &'static str,
    invisible: Option<bool>,
    status: Option<Option<&'static str>>,
    name: Option<Option<u8>>,
}

impl Model {
    /// The user behind viewer `v` (`None` for the host, 0); an unknown connection is NotFound.
    fn viewer_user(&self, v: u64) -> Result<Option<String>, ErrorKind> {
        match v {
            0 => Ok(None),
            _ => self.conns.get(&v).map(|c| Some(c.user.clone())).ok_or(ErrorKind::NotFound),
        }
    }

    fn new(cfg: Cfg) -> Self {
        Model {
            cfg,
            now: T0,
            users: BTreeMap::new(),
            conns: BTreeMap::new(),
            chans: BTreeMap::new(),
            next_chan_idx: 0,
            free_chan_idx: Vec::new(),
            next_conn: 1,
            host: Vec::new(),
            deliveries: BTreeMap::new(),
            queued: BTreeMap::new(),
            overflowed: Vec::new(),
            overflowed_set: BTreeSet::new(),
            uncertain_order: false,
        }
    }

    // ----- derived state, recomputed from scratch -----

    fn live_conns(&self, u: &str) -> Vec<u64> {
        self.conns.iter().filter(|(_, c)| c.user == u).map(|(&id, _)| id).collect()
    }
    fn connected(&self, u: &str) -> bool {
        !self.live_conns(u).is_empty() || self.users[u].grace_until.is_some()
    }
    fn public_online(&self, u: &str) -> bool {
        self.connected(u) && !self.users[u].invisible
    }
    /// `online` of `u` for a viewer (`None`: the host).
    fn online_for(&self, u: &str, viewer_user: Option<&str>) -> bool {
        if viewer_user.is_none_or(|v| v == u) {
            self.connected(u)
        } else {
            self.public_online(u)
        }
    }
    /// Users connection `c` receives user events about: the union of its routes.
    fn subs(&self, c: u64) -> BTreeSet<String> {
        let conn = &self.conns[&c];
        let mut s = conn.direct.clone();
        for (cid, presence) in &conn.watching {
            if *presence {
                s.extend(self.chans[cid].members.iter().cloned());
            }
        }
        s
    }
    fn watchers(&self, cid: &str) -> Vec<u64> {
        self.conns
            .iter()
            .filter(|(_, c)| c.watching.iter().any(|(w, _)| w == cid))
            .map(|(&id, _)| id)
            .collect()
    }
    fn user_watches(&self, u: &str, cid: &str) -> bool {
        self.watchers(cid).iter().any(|c| self.conns[c].user == u)
    }
    /// Distinct visible users among the channel's watchers.
    fn visible_watchers(&self, cid: &str) -> BTreeSet<String> {
        self.watchers(cid)
            .into_iter()
            .map(|c| self.conns[&c].user.clone())
            .filter(|u| !self.users[u].invisible)
            .collect()
    }

    // ----- rendering -----

    fn render_user(&self, u: &str, viewer_user: Option<&str>) -> Value {
        let user = &self.users[u];
        let own = viewer_user.is_none_or(|v| v == u);
        let mut m = Map::new();
        m.insert("id".into(), json!(u));
        m.insert("online".into(), json!(self.online_for(u, viewer_user)));
        if let Some(s) = &user.status {
            m.insert("status".into(), json!(s));
        }
        if let Some(t) = user.last_active {
            m.insert("last_active".into(), json!(format_millis(t)));
        }
        if own {
            m.insert("invisible".into(), json!(user.invisible));
        }
        m.insert("created_at".into(), json!(format_millis(user.created_at)));
        m.insert("updated_at".into(), json!(format_millis(user.updated_at)));
        if let Some(n) = user.name {
            m.insert("name".into(), json!(n));
        }
        Value::Object(m)
    }

    fn render_channel_state(&self, cid: &str, viewer_user: Option<&str>) -> Value {
        let ch = &self.chans[cid];
        let (ty, id) = cid.split_once(':').unwrap();
        let members: Vec<Value> = ch
            .members
            .iter()
            .map(|u| json!({"user_id": u, "user": self.render_user(u, viewer_user)}))
            .collect();
        let watchers = self.visible_watchers(cid);
        json!({
            "channel": {
                "cid": cid, "type": ty, "id": id,
                "member_count": ch.members.len(),
                "created_at": format_millis(ch.created_at),
                "updated_at": format_millis(ch.created_at),
            },
            "members": members,
            "watcher_count": watchers.len(),
            "watchers": watchers.iter().map(|u| self.render_user(u, viewer_user)).collect::<Vec<_>>(),
        })
    }

    // ----- emission -----

    fn ev(&self, ty: &'static str, u: &str, online: bool) -> Ev {
        Ev {
            ty,
            user: u.to_owned(),
            online,
            status: self.users[u].status.clone(),
            cid: None,
            watcher_count: None,
            closed: None,
        }
    }

    /// What the views show of `u`'s presence now.
    fn views(&self, u: &str) -> Views {
        let user = &self.users[u];
        (self.public_online(u), self.connected(u), user.status.clone(), user.invisible)
    }

    /// `user.presence.changed` to every recipient whose view of `u` changed since `before`:
    /// everyone subscribed when the public view changed, else host listeners and `u`'s own
    /// subscribed connections when only the own view did.
    fn presence_changed(&mut self, u: &str, before: Views) {
        let after = self.views(u);
        if after.0 != before.0 || after.2 != before.2 {
            self.emit_user("user.presence.changed", u, false);
        } else if after != before {
            self.emit_user("user.presence.changed", u, true);
        }
    }

    /// A user event: host listeners, and every connection subscribed to the user (only the
    /// user's own connections when `own_only`).
    fn emit_user(&mut self, ty: &'static str, u: &str, own_only: bool) {
        self.host.push(self.ev(ty, u, self.connected(u)));
        let recipients: Vec<u64> = self
            .conns
            .keys()
            .copied()
            .filter(|&c| self.subs(c).contains(u) && (!own_only || self.conns[&c].user == u))
            .collect();
        for c in recipients {
            let viewer = self.conns[&c].user.clone();
            let dv = Dv { ev: self.ev(ty, u, self.online_for(u, Some(&viewer))), own_view: viewer == u };
            self.deliver(c, dv);
        }
    }

    /// One delivery into a connection's queue (and to delivery listeners); a full queue
    /// marks the connection as a slow consumer and takes nothing more.
    fn deliver(&mut self, c: u64, dv: Dv) {
        if self.overflowed_set.contains(&c) {
            return;
        }
        if self.cfg.queue_cap > 0 {
            let queued = self.queued.entry(c).or_default();
            if *queued >= self.cfg.queue_cap as usize {
                self.overflowed_set.insert(c);
                self.overflowed.push(c);
                return;
            }
            *queued += 1;
        }
        self.deliveries.entry(c).or_default().push(dv);
    }

    /// End of a command: close every slow consumer (last overflowed first).
    fn settle(&mut self) {
        while let Some(c) = self.overflowed.pop() {
            if !self.overflowed.is_empty() {
                self.uncertain_order = true;
            }
            if self.conns.contains_key(&c) {
                self.close(c, "slow_consumer");
            }
        }
    }

    /// A channel event: host listeners, and every connection watching the channel.
    fn emit_channel(&mut self, ty: &'static str, cid: &str, u: &str, watcher_count: Option<u32>) {
        let mut ev = self.ev(ty, u, self.connected(u));
        ev.cid = Some(cid.to_owned());
        ev.watcher_count = watcher_count;
        self.host.push(ev.clone());
        for c in self.watchers(cid) {
            let viewer = self.conns[&c].user.clone();
            let mut seen = ev.clone();
            seen.online = self.online_for(u, Some(&viewer));
            self.deliver(c, Dv { ev: seen, own_view: viewer == u });
        }
    }

    // ----- commands -----

    fn create_user(&mut self, u: &str) -> bool {
        if self.users.contains_key(u) {
            return false;
        }
        let idx = self.users.len();
        self.users.insert(
            u.to_owned(),
            MUser {
                idx,
                status: None,
                name: None,
                invisible: false,
                last_active: None,
                created_at: self.now,
                updated_at: self.now,
                grace_until: None,
            },
        );
        true
    }

    /// Applies a user patch; answers (presence before, had live connections before,
    /// custom fields changed).
    fn apply_patch(&mut self, p: &Patch) -> (Views, bool, bool) {
        let created = self.create_user(p.id);
        let had_conns = !self.live_conns(p.id).is_empty();
        let user = &self.users[p.id];
        // A user the patch creates counts as already having the patched status and
        // visibility: creation alone emits nothing.
        let before = if created {
            (
                false,
                false,
                match p.status {
                    Some(s) => s.map(str::to_owned),
                    None => None,
                },
                p.invisible.unwrap_or(false),
            )
        } else {
            self.views(p.id)
        };
        let now = self.now;
        let user = self.users.get_mut(p.id).unwrap();
        let mut changed = false;
        if let Some(s) = p.status {
            let s = s.map(str::to_owned);
            if user.status != s {
                user.status = s;
                changed = true;
            }
        }
        // Visibility never moves updated_at (others would see it move while the user
        // appears offline).
        if let Some(i) = p.invisible {
            user.invisible = i;
        }
        // Hiding ends an offline grace: it keeps online only users others saw online.
        if user.invisible && !had_conns {
            user.grace_until = None;
        }
        let mut custom_changed = false;
        if let Some(n) = p.name {
            if user.name != n {
                user.name = n;
                changed = true;
                custom_changed = true;
            }
        }
        if changed {
            user.updated_at = now;
        }
        (before, had_conns, custom_changed && !created)
    }

    /// What a change to user `u` emits, compared with `before`.
    fn user_changed(&mut self, u: &str, before: Views, had_conns: bool, custom_changed: bool) {
        let flipped = self.users[u].invisible != before.3;
        let connected_now = !self.live_conns(u).is_empty();
        // Going invisible while connected stamps the last visible moment; coming back while
        // connected stamps now. A user who was not connected before (connecting with
        // `invisible: true`) was not visible, so nothing is stamped.
        if flipped && connected_now && had_conns {
            let now = self.now;
            self.users.get_mut(u).unwrap().last_active = Some(now);
        }
        self.presence_changed(u, before);
        if custom_changed {
            self.emit_user("user.updated", u, false);
        }
        if flipped {
            let mut watched: Vec<(usize, String)> = self
                .live_conns(u)
                .iter()
                .flat_map(|c| self.conns[c].watching.iter().map(|(w, _)| w.clone()))
                .map(|w| (self.chans[&w].idx, w))
                .collect();
            watched.sort();
            watched.dedup();
            let ty = if self.users[u].invisible { "user.watching.stop" } else { "user.watching.start" };
            for (_, cid) in watched {
                let count = self.visible_watchers(&cid).len() as u32;
                self.emit_channel(ty, &cid, u, Some(count));
            }
        }
    }

    fn connect(&mut self, p: &Patch) -> Result<u64, ErrorKind> {
        if self.users.contains_key(p.id) && self.live_conns(p.id).len() >= self.cfg.max_conns as usize {
            return Err(ErrorKind::Limit);
        }
        let (before, had_conns, custom_changed) = self.apply_patch(p);
        let c = self.next_conn;
        self.next_conn += 1;
        self.conns.insert(
            c,
            MConn {
                user: p.id.to_owned(),
                last_seen: self.now,
                timeout_due: self.now + self.cfg.timeout as i64,
                watching: Vec::new(),
                direct: BTreeSet::new(),
            },
        );
        let now = self.now;
        let user = self.users.get_mut(p.id).unwrap();
        user.grace_until = None;
        if !user.invisible {
            user.last_active = Some(now);
        }
        self.user_changed(p.id, before, had_conns, custom_changed);
        Ok(c)
    }

    fn upsert(&mut self, p: &Patch) {
        let (before, had_conns, custom_changed) = self.apply_patch(p);
        self.user_changed(p.id, before, had_conns, custom_changed);
    }

    fn unwatch(&mut self, c: u64, cid: &str) {
        let conn = self.conns.get_mut(&c).unwrap();
        let Some(pos) = conn.watching.iter().position(|(w, _)| w == cid) else {
            return;
        };
        conn.watching.remove(pos);
        let u = conn.user.clone();
        if !self.user_watches(&u, cid) && !self.users[&u].invisible {
            let count = self.visible_watchers(cid).len() as u32;
            self.emit_channel("user.watching.stop", cid, &u, Some(count));
        }
    }

    fn close(&mut self, c: u64, reason: &'static str) {
        let watching: Vec<String> = self.conns[&c].watching.iter().map(|(w, _)| w.clone()).collect();
        for w in watching {
            self.unwatch(c, &w);
        }
        let u = self.conns[&c].user.clone();
        let before = self.views(&u);
        self.conns.remove(&c);
        if self.live_conns(&u).is_empty() {
            let now = self.now;
            let grace = self.cfg.grace as i64;
            let user = self.users.get_mut(&u).unwrap();
            if !user.invisible {
                user.last_active = Some(now);
            }
            if grace > 0 && !user.invisible {
                user.grace_until = Some(now + grace);
            }
        }
        self.presence_changed(&u, before);
        let mut ev = self.ev("connection.closed", &u, self.connected(&u));
        ev.closed = Some((c, reason));
        self.host.push(ev);
    }

    /// Would connection `c` hold more than `max_subscriptions_per_connection` users after
    /// subscribing to `more`?
    fn over_limit<'a>(&self, c: u64, more: impl IntoIterator<Item = &'a String>) -> bool {
        let mut s = self.subs(c);
        s.extend(more.into_iter().cloned());
        s.len() > self.cfg.max_subs as usize
    }

    fn watch(&mut self, c: u64, cid: &str, presence: bool) -> Result<(), ErrorKind> {
        let was = self.conns[&c].watching.iter().find(|(w, _)| w == cid).map(|&(_, p)| p);
        if presence && was != Some(true) && self.over_limit(c, &self.chans[cid].members) {
            return Err(ErrorKind::Limit);
        }
        match was {
            Some(true) => {}
            Some(false) => {
                if presence {
                    let conn = self.conns.get_mut(&c).unwrap();
                    conn.watching.iter_mut().find(|(w, _)| w == cid).unwrap().1 = true;
                }
            }
            None => {
                let u = self.conns[&c].user.clone();
                let first = !self.user_watches(&u, cid);
                self.conns.get_mut(&c).unwrap().watching.push((cid.to_owned(), presence));
                if first && !self.users[&u].invisible {
                    let count = self.visible_watchers(cid).len() as u32;
                    self.emit_channel("user.watching.start", cid, &u, Some(count));
                }
            }
        }
        Ok(())
    }

    fn add_members(&mut self, cid: &str, ids: &[&'static str]) -> Result<(), ErrorKind> {
        let ids_set: Vec<String> = ids.iter().map(|s| s.to_string()).collect();
        let presence_watchers: Vec<u64> = self
            .conns
            .iter()
            .filter(|(_, c)| c.watching.iter().any(|(w, p)| w == cid && *p))
            .map(|(&id, _)| id)
            .collect();
        if presence_watchers.iter().any(|&c| self.over_limit(c, &ids_set)) {
            return Err(ErrorKind::Limit);
        }
        if !self.chans.contains_key(cid) {
            let idx = self.free_chan_idx.pop().unwrap_or_else(|| {
                self.next_chan_idx += 1;
                self.next_chan_idx - 1
            });
            self.chans.insert(cid.to_owned(), MChan { idx, members: BTreeSet::new(), created_at: self.now });
        }
        for &id in ids {
            self.create_user(id);
            if self.chans.get_mut(cid).unwrap().members.insert(id.to_owned()) {
                self.emit_channel("member.added", cid, id, None);
            }
        }
        Ok(())
    }

    fn tick(&mut self) {
        let now = self.now;
        let timeout = self.cfg.timeout as i64;
        loop {
            // The next due timer in the engine's order: (due, grace before timeout, user
            // creation order / connection id).
            let mut next: Option<(i64, u8, u64, String)> = None;
            for (u, user) in &self.users {
                if let Some(g) = user.grace_until {
                    if g <= now {
                        let key = (g, 1, user.idx as u64, u.clone());
                        if next.as_ref().is_none_or(|n| key < *n) {
                            next = Some(key);
                        }
                    }
                }
            }
            if timeout > 0 {
                for (&c, conn) in &self.conns {
                    if conn.timeout_due <= now {
                        let key = (conn.timeout_due, 2, c, String::new());
                        if next.as_ref().is_none_or(|n| key < *n) {
                            next = Some(key);
                        }
                    }
                }
            }
            let Some((_, kind, id, u)) = next else { break };
            if kind == 1 {
                let before = self.views(&u);
                self.users.get_mut(&u).unwrap().grace_until = None;
                self.presence_changed(&u, before);
            } else {
                let deadline = self.conns[&id].last_seen + timeout;
                if deadline <= now {
                    self.close(id, "timeout");
                } else {
                    self.conns.get_mut(&id).unwrap().timeout_due = deadline;
                }
            }
        }
        // last_active refresh: no events.
        let refresh = self.cfg.refresh as i64;
        let refreshed: Vec<String> = self
            .users
            .iter()
            .filter(|(u, user)| {
                !user.invisible
                    && !self.live_conns(u).is_empty()
                    && user.last_active.is_some_and(|t| t + refresh <= now)
            })
            .map(|(u, _)| u.clone())
            .collect();
        for u in refreshed {
            self.users.get_mut(&u).unwrap().last_active = Some(now);
        }
    }
}

// ---------------------------------------------------------------------------------------
// Running one case

struct Harness {
    engine: Engine,
    host: HostLog,
    deliveries: DeliveryLog,
    model: Model,
    /// Every connection id opened, in order (engine and model agree on them).
    opened: Vec<u64>,
    last_host_seq: u64,
    last_seq_per_conn: BTreeMap<u64, u64>,
    last_queue_seq: BTreeMap<u64, u64>,
}

fn patch_json(p: &Patch) -> String {
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
    fn new(cfg: Cfg) -> Self {
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

    fn conn(&self, c: Conn) -> u64 {
        let live: Vec<u64> = self.model.conns.keys().copied().collect();
        let (pool, k) = if c.0 < 4 { (&live, c.0 as usize) } else { (&self.opened, c.0 as usize - 4) };
        if pool.is_empty() {
            9999
        } else {
            pool[k % pool.len()]
        }
    }

    fn live(&self, c: u64) -> bool {
        self.model.conns.contains_key(&c)
    }

    /// Runs one operation on both sides; answers (engine result, model result).
    fn step(&mut self, op: &Op) -> (OpResult, OpResult) {
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

    fn model_query_users(
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

    fn model_query_channels(
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
    fn check(&mut self, step: usize, op: &Op) -> Result<(), TestCaseError> {
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

/// A step's events in a canonical order (for steps whose order the engine does not
/// define; callers leave out `watcher_count`, which depends on that order).
fn unordered(items: Vec<Ev>) -> Vec<String> {
    // What depends on the close order: watcher counts, and the closing user's online flag
    // in connection.closed and watching events.
    let mut v: Vec<String> = items
        .into_iter()
        .map(|mut e| {
            e.watcher_count = None;
            if e.closed.is_some() || e.ty.starts_with("user.watching") {
                e.online = false;
            }
            format!("{e:?}")
        })
        .collect();
    v.sort();
    v
}

/// Counts of what the cases exercised, for `model_stats`.
static STATS: Mutex<BTreeMap<String, u64>> = Mutex::new(BTreeMap::new());
static COLLECT_STATS: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

fn run_case(cfg: Cfg, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let mut h = Harness::new(cfg);
    let collect = COLLECT_STATS.load(std::sync::atomic::Ordering::Relaxed);
    for (i, op) in ops.iter().enumerate() {
        let (got, want) = h.step(op);
        h.model.settle();
        if collect {
            let name = format!("{op:?}");
            let name = name.split([' ', '(']).next().unwrap_or("").to_owned();
            let outcome = match &got {
                Ok(_) => "ok".to_owned(),
                Err(k) => format!("{k:?}"),
            };
            let events = h.model.host.len() as u64;
            let deliveries = h.model.deliveries.values().map(|v| v.len() as u64).sum::<u64>();
            let mut stats = STATS.lock().unwrap();
            *stats.entry(format!("op {name} {outcome}")).or_default() += 1;
            *stats.entry("events compared".into()).or_default() += events;
            *stats.entry("deliveries compared".into()).or_default() += deliveries;
            if h.model.uncertain_order {
                *stats.entry("steps compared as multisets".into()).or_default() += 1;
            }
            for ev in &h.model.host {
                *stats.entry(format!("event {}", ev.ty)).or_default() += 1;
                if let Some((_, reason)) = ev.closed {
                    *stats.entry(format!("closed {reason}")).or_default() += 1;
                }
            }
        }
        prop_assert_eq!(got, want, "result of step {}: {:?}", i, op);
        h.check(i, op)?;
    }
    Ok(())
}

/// Prints what 2000 cases of `model_any_config` exercise (run with `--ignored --nocapture`).
#[test]
#[ignore = "diagnostics only"]
fn model_stats() {
    use proptest::test_runner::TestRunner;
    COLLECT_STATS.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut runner = TestRunner::new(ProptestConfig {
        cases: 2000,
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    runner.run(&(any_cfg(), ops(40)), |(cfg, ops)| run_case(cfg, ops)).unwrap();
    for (k, v) in STATS.lock().unwrap().iter() {
        println!("{k:40} {v}");
    }
}

/// A short prelude (channels with members, a few connections) so that later steps find
/// something to act on, then up to `max` random steps.
fn ops(max: usize) -> impl Strategy<Value = Vec<Op>> {
    let channel = (cid(), users_list()).prop_map(|(c, m)| Op::UpsertChannel(c, m));
    let connect = (user(), invisible_patch(), status_patch())
        .prop_map(|(user, invisible, status)| Op::Connect { user, invisible, status, name: None });
    (
        prop::collection::vec(channel, 1..4),
        prop::collection::vec(connect, 0..4),
        prop::collection::vec(op(), 1..max),
    )
        .prop_map(|(mut a, b, c)| {
            a.extend(b);
            a.extend(c);
            a
        })
}

fn any_cfg() -> impl Strategy<Value = Cfg> {
    (
        prop::sample::select(vec![0u64, 0, 100]),
        prop::sample::select(vec![0u64, 0, 50]),
        prop::sample::select(vec![900_000u64, 40]),
        prop::sample::select(vec![50u32, 2]),
        prop::sample::select(vec![10_000u32, 3]),
        prop::sample::select(vec![1024u32, 1024, 1, 0]),
    )
        .prop_map(|(timeout, grace, refresh, max_conns, max_subs, queue_cap)| Cfg {
            timeout,
            grace,
            refresh,
            max_conns,
            max_subs,
            queue_cap,
        })
}

/// `PROPTEST_CASES` overrides the number of cases of every block (for quick runs or soaks).
fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn default_cfg() -> Cfg {
    Cfg { timeout: 0, grace: 0, refresh: 900_000, max_conns: 50, max_subs: 10_000, queue_cap: 1024 }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(4000), max_shrink_iters: 20_000, failure_persistence: None, ..ProptestConfig::default() })]

    /// Default configuration (no timeouts, no grace, generous limits).
    #[test]
    fn model_default_config(ops in ops(40)) {
        run_case(default_cfg(), ops)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(3500), max_shrink_iters: 20_000, failure_persistence: None, ..ProptestConfig::default() })]

    /// Heartbeat timeouts, offline grace and a short refresh period, all together.
    #[test]
    fn model_timers(ops in ops(40)) {
        run_case(Cfg { timeout: 100, grace: 50, refresh: 40, max_conns: 50, max_subs: 10_000, queue_cap: 1024 }, ops)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(3500), max_shrink_iters: 20_000, failure_persistence: None, ..ProptestConfig::default() })]

    /// Every combination of timer settings and tight limits.
    #[test]
    fn model_any_config(cfg in any_cfg(), ops in ops(40)) {
        run_case(cfg, ops)?;
    }
}

/// A few hand-written sequences, so a regression shows up with a readable name.
#[test]
fn model_smoke_sequences() {
    use Op::*;
    let cases: Vec<(Cfg, Vec<Op>)> = vec![
        (
            default_cfg(),
            vec![
                UpsertChannel("team:a", vec!["u0", "u1"]),
                Connect { user: "u0", invisible: None, status: None, name: None },
                Watch { conn: Conn(0), cid: "team:a", presence: true },
                Connect { user: "u1", invisible: None, status: Some(Some("busy")), name: None },
                SetInvisible("u1", true),
                Watch { conn: Conn(1), cid: "team:a", presence: false },
                SetInvisible("u1", false),
                Disconnect(Conn(1)),
            ],
        ),
        (
            Cfg { timeout: 100, grace: 50, refresh: 40, max_conns: 2, max_subs: 3, queue_cap: 2 },
            vec![
                Connect { user: "u0", invisible: None, status: None, name: None },
                Connect { user: "u0", invisible: None, status: None, name: None },
                Connect { user: "u0", invisible: None, status: None, name: None },
                Advance(99),
                Heartbeat(Conn(0)),
                Advance(1),
                Tick,
                Advance(100),
                Tick,
                Advance(50),
                Tick,
            ],
        ),
    ];
    for (cfg, ops) in cases {
        if let Err(e) = run_case(cfg.clone(), ops.clone()) {
            panic!("{e}\nconfig {cfg:?}\nops {ops:#?}");
        }
    }
}
