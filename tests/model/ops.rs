//! The operations a case runs, and how they are generated.
use crate::{CHANNELS, STATUSES, T0, USERS};
use proptest::prelude::*;
use serde_json::json;
use std::fmt;

/// A connection reference, resolved when the step runs: `Conn(k)` with `k < 4` is the
/// `k`-th live connection (modulo how many are live, oldest first), printed `live#k`;
/// otherwise the `k`-th connection ever opened in the case (modulo how many), which may be
/// closed, printed `any#k`. With nothing to pick from, an id the engine never issued.
#[derive(Clone, Copy)]
pub struct Conn(pub u8);

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
pub enum Viewer {
    Host,
    C(Conn),
}

#[derive(Clone, Debug)]
pub enum UserFilter {
    All,
    IdIn(Vec<&'static str>),
    Online(bool),
}

#[derive(Clone, Copy, Debug)]
pub enum UserSort {
    /// No sort: `created_at` descending, ties by id.
    Default,
    IdAsc,
    LastActiveDesc,
}

#[derive(Clone, Debug)]
pub enum ChanFilter {
    All,
    CidIn(Vec<&'static str>),
    MemberIs(&'static str),
}

#[derive(Clone, Copy, Debug)]
pub enum ChanSort {
    /// No sort: `last_message_at` descending (never set here), ties by cid.
    Default,
    MemberCountDesc,
}

/// Inputs that must fail with a given kind and change nothing.
#[derive(Clone, Debug)]
pub enum Bad {
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
pub enum Op {
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
pub struct Cfg {
    pub timeout: u64,
    pub grace: u64,
    pub refresh: u64,
    pub max_conns: u32,
    pub max_subs: u32,
    /// `connection_queue_capacity` (0 disables queues).
    pub queue_cap: u32,
}

impl Cfg {
    pub fn json(&self) -> String {
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

pub fn user() -> impl Strategy<Value = &'static str> {
    prop::sample::select(&USERS[..])
}
pub fn cid() -> impl Strategy<Value = &'static str> {
    prop::sample::select(&CHANNELS[..])
}
pub fn conn() -> impl Strategy<Value = Conn> {
    prop_oneof![4 => (0u8..4).prop_map(Conn), 1 => (4u8..8).prop_map(Conn)]
}
pub fn viewer() -> impl Strategy<Value = Viewer> {
    prop_oneof![1 => Just(Viewer::Host), 3 => conn().prop_map(Viewer::C)]
}
pub fn users_list() -> impl Strategy<Value = Vec<&'static str>> {
    prop::collection::vec(user(), 0..4)
}
pub fn status_patch() -> impl Strategy<Value = Option<Option<&'static str>>> {
    prop_oneof![
        3 => Just(None),
        1 => Just(Some(None)),
        2 => prop::sample::select(&STATUSES[..]).prop_map(|s| Some(Some(s))),
    ]
}
pub fn name_patch() -> impl Strategy<Value = Option<Option<u8>>> {
    prop_oneof![4 => Just(None), 1 => Just(Some(None)), 2 => (0u8..2).prop_map(|n| Some(Some(n)))]
}
pub fn invisible_patch() -> impl Strategy<Value = Option<bool>> {
    prop_oneof![3 => Just(None), 1 => Just(Some(true)), 1 => Just(Some(false))]
}

pub fn op() -> impl Strategy<Value = Op> {
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

/// A short prelude (channels with members, a few connections) so that later steps find
/// something to act on, then up to `max` random steps.
pub fn ops(max: usize) -> impl Strategy<Value = Vec<Op>> {
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

pub fn any_cfg() -> impl Strategy<Value = Cfg> {
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

pub fn default_cfg() -> Cfg {
    Cfg { timeout: 0, grace: 0, refresh: 900_000, max_conns: 50, max_subs: 10_000, queue_cap: 1024 }
}
