//! Deterministic simulation of cluster replication: 3 to 5 nodes (the core and the real
//! link state machine) over the in-memory model of the store, with random operations,
//! random delays (a node steps its link only now and then), crashes and restarts, store
//! outages and a short log retention (so readers fall behind and rebuild from snapshots).
//! Operations touch users, connections, channels, members and watches. After quiescence
//! every live node must answer like one engine that applied every change the store
//! accepted, in the store's order.
use super::link::{Link, LinkSettings, LinkShared, LinkStatus, Replica};
use super::memory::{Applied, MemoryData, MemoryStore};
use super::testing::Rng;
use crate::channel::ChannelPatch;
use crate::config::Config;
use crate::core::State;
use crate::event::ConnectionId;
use crate::replication::{ChannelDelta, ChannelOp, ConnectionChange, Delta, Field, Remote, UserDelta};
use crate::shared_str::SharedStr;
use crate::time::Millis;
use crate::user::{UserChanges, UserPatch, View};
use serde_json::Value;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

const HEARTBEAT_MS: u64 = 100;
const LEASE_MS: u64 = 400;
const USERS: u64 = 8;
const CHANNELS: u64 = 4;

/// The core of one node as the link sees it.
struct SimReplica {
    state: RefCell<State>,
    now: Cell<Millis>,
    node: Arc<str>,
}

impl Replica for SimReplica {
    fn take_deltas(&self, into: &mut Vec<Delta>) {
        self.state.borrow_mut().take_deltas(into);
    }
    fn apply_remote(&self, changes: Vec<Remote>) {
        let mut state = self.state.borrow_mut();
        for change in &changes {
            state.apply(self.now.get(), change);
        }
        state.take_outbox();
    }
    fn channel_ids(&self) -> Vec<SharedStr> {
        self.state.borrow().channel_ids()
    }
    fn forget_versions(&self) {
        self.state.borrow_mut().forget_versions();
    }
    fn announcement(&self, users: bool) -> Vec<Delta> {
        self.state.borrow().announcement(self.now.get(), users)
    }
    fn link_changed(&self, status: LinkStatus) {
        self.state.borrow_mut().cluster_status(self.now.get(), status.as_str(), self.node.clone());
    }
}

struct SimNode {
    replica: SimReplica,
    link: Link<MemoryStore>,
    connections: Vec<ConnectionId>,
}

fn quiet_config() -> Config {
    Config { connection_queue_capacity: 0, ..Config::default() }
}

impl SimNode {
    fn start(name: &str, data: &Arc<Mutex<MemoryData>>, now: Millis, seed: u64) -> SimNode {
        let mut state = State::new(quiet_config());
        state.record_events = false;
        state.record_deliveries = false;
        state.enable_replication();
        let settings = LinkSettings {
            node: name.to_string(),
            heartbeat_ms: HEARTBEAT_MS,
            lease_ms: LEASE_MS,
            read_batch: 7,
            write_batch: 5,
        };
        SimNode {
            replica: SimReplica { state: RefCell::new(state), now: Cell::new(now), node: Arc::from(name) },
            link: Link::new(MemoryStore(data.clone()), settings, LinkShared::new(), seed),
            connections: Vec::new(),
        }
    }

    fn step(&mut self, now: Millis) {
        self.replica.now.set(now);
        self.link.step(&self.replica, now);
    }
}

fn user_name(rng: &mut Rng) -> String {
    format!("u{}", rng.below(USERS))
}

fn channel_name(rng: &mut Rng) -> String {
    format!("room:c{}", rng.below(CHANNELS))
}

/// One random operation on a live node's channels; refused ones (an unknown channel or
/// user) change nothing.
fn operate_channel(rng: &mut Rng, state: &mut State, connections: &[ConnectionId], now: Millis) {
    let cid = channel_name(rng);
    let _ = match rng.below(7) {
        0 | 1 => {
            let mut patch = ChannelPatch { cid, ..ChannelPatch::default() };
            for _ in 0..rng.below(3) {
                patch.members.push(user_name(rng));
            }
            if rng.chance(40) {
                patch.custom.push(("topic".into(), rng.chance(80).then(|| Value::from(rng.below(5)))));
            }
            if rng.chance(20) {
                patch.last_message_at = Some(rng.chance(80).then_some(now));
            }
            state.upsert_channel(now, &patch)
        }
        2 => state.add_members(now, &cid, &[user_name(rng)]),
        3 => state.remove_members(now, &cid, &[user_name(rng)]),
        4 => state.delete_channel(&cid),
        _ if connections.is_empty() => Ok(()),
        5 => {
            let c = connections[rng.below(connections.len() as u64) as usize];
            state.watch_channel(now, c, &cid, rng.chance(50), false).map(|_| ())
        }
        _ => {
            let c = connections[rng.below(connections.len() as u64) as usize];
            state.stop_watching(now, c, &cid)
        }
    };
}

/// One random operation on a live node.
fn operate(rng: &mut Rng, node: &mut SimNode, now: Millis) {
    let mut state = node.replica.state.borrow_mut();
    match rng.below(10) {
        0 | 1 => {
            let mut patch = UserPatch::id(user_name(rng));
            if rng.chance(20) {
                patch.status = Some(Some(format!("s{}", rng.below(4))));
            }
            if let Ok(c) = state.connect(now, &patch.id, patch.changes()) {
                node.connections.push(c);
            }
        }
        2 if !node.connections.is_empty() => {
            let c = node.connections.swap_remove(rng.below(node.connections.len() as u64) as usize);
            state.disconnect(now, c).unwrap();
        }
        3 => {
            let mut patch = UserPatch::id(user_name(rng));
            patch.status = Some(rng.chance(70).then(|| format!("s{}", rng.below(4))));
            state.upsert_user(now, &patch).unwrap();
        }
        4 => {
            let mut patch = UserPatch::id(user_name(rng));
            patch.invisible = Some(rng.chance(40));
            state.upsert_user(now, &patch).unwrap();
        }
        5 => {
            let mut patch = UserPatch::id(user_name(rng));
            let value = rng.chance(80).then(|| Value::from(rng.below(10)));
            patch.custom.push(("level".into(), value));
            state.upsert_user(now, &patch).unwrap();
        }
        _ => operate_channel(rng, &mut state, &node.connections, now),
    }
    state.take_outbox();
}

/// One engine that applies what the store accepted, in the store's order.
fn reference(history: &[Applied]) -> State {
    let mut single = State::new(quiet_config());
    single.record_events = false;
    single.record_deliveries = false;
    let mut open: HashMap<(String, u64), ConnectionId> = HashMap::new();
    for applied in history {
        match applied {
            Applied::Delta(member, Delta::User(delta)) => replay_user(&mut single, &mut open, member, delta),
            Applied::Delta(member, Delta::Channel(delta)) => {
                replay_channel(&mut single, &open, member, delta)
            }
            Applied::Reaped(member, at) => {
                let lost: Vec<(String, u64)> = open.keys().filter(|(m, _)| m == member).cloned().collect();
                for key in lost {
                    let id = open.remove(&key).expect("listed above");
                    single.disconnect(*at, id).unwrap();
                }
            }
        }
        single.take_outbox();
    }
    single
}

type Open = HashMap<(String, u64), ConnectionId>;

fn replay_user(single: &mut State, open: &mut Open, member: &str, delta: &UserDelta) {
    let mut patch = UserPatch::id(delta.user.to_string());
    for (field, value) in &delta.fields {
        match field {
            Field::Status => patch.status = Some(value.clone()),
            Field::Invisible => patch.invisible = Some(value.as_deref() == Some("1")),
            Field::Custom(name) => {
                patch.custom.push((name.clone(), value.as_deref().map(|v| serde_json::from_str(v).unwrap())))
            }
            Field::UpdatedAt | Field::LastMessageAt => {}
        }
    }
    let key = |c: ConnectionId| (member.to_string(), c.0);
    match delta.connection {
        // The store counts a connection once, however often it is announced.
        Some(ConnectionChange::Opened(c)) if open.contains_key(&key(c)) => {
            single.upsert_user(delta.at, &patch).unwrap();
        }
        Some(ConnectionChange::Opened(c)) => {
            let id = single.connect(delta.at, &patch.id, patch.changes()).unwrap();
            open.insert(key(c), id);
        }
        Some(ConnectionChange::Closed(c)) => {
            single.upsert_user(delta.at, &patch).unwrap();
            if let Some(id) = open.remove(&key(c)) {
                single.disconnect(delta.at, id).unwrap();
            }
        }
        None => single.upsert_user(delta.at, &patch).unwrap(),
    }
}

/// Replays a channel change the store accepted (a change it skipped is not in the history).
fn replay_channel(single: &mut State, open: &Open, member: &str, delta: &ChannelDelta) {
    let cid = delta.cid.to_string();
    let upsert = |single: &mut State, patch: &ChannelPatch| single.upsert_channel(delta.at, patch).unwrap();
    match &delta.op {
        ChannelOp::Upsert { fields, members, .. } => {
            let mut patch = ChannelPatch { cid, ..ChannelPatch::default() };
            patch.members = members.iter().map(|m| m.to_string()).collect();
            for (field, value) in fields {
                match field {
                    Field::Custom(name) => patch
                        .custom
                        .push((name.clone(), value.as_deref().map(|v| serde_json::from_str(v).unwrap()))),
                    Field::LastMessageAt => {
                        patch.last_message_at = Some(value.as_deref().map(|v| v.parse().unwrap()))
                    }
                    _ => {}
                }
            }
            upsert(single, &patch);
        }
        ChannelOp::RemoveMembers(ids) => {
            let known: Vec<String> = ids
                .iter()
                .filter(|id| single.get_user(ConnectionId::HOST, id).is_ok())
                .map(|id| id.to_string())
                .collect();
            single.remove_members(delta.at, &cid, &known).unwrap();
        }
        ChannelOp::Delete => single.delete_channel(&cid).unwrap(),
        ChannelOp::Watch { connection, start, .. } => {
            // A watch of a channel deleted meanwhile creates it, as the store does (also
            // for a connection whose opening the store never took, written after the node
            // took a new incarnation).
            if *start && !single.channel_ids().iter().any(|c| **c == *cid) {
                upsert(single, &ChannelPatch { cid: cid.clone(), ..ChannelPatch::default() });
            }
            let Some(&id) = open.get(&(member.to_string(), connection.0)) else { return };
            if *start {
                single.watch_channel(delta.at, id, &cid, false, false).unwrap();
            } else {
                single.stop_watching(delta.at, id, &cid).unwrap();
            }
        }
    }
}

/// What a host asking about every user would see: id, own-view online, public online,
/// status, invisible, custom fields, created_at.
fn answers(state: &State) -> Vec<String> {
    let mut all: Vec<String> = state
        .user_ids()
        .into_iter()
        .map(|id| {
            let u = state.get_user(ConnectionId::HOST, &id).unwrap().user;
            format!(
                "{id} own:{} public:{} status:{:?} invisible:{} custom:{:?} created:{}",
                u.online(View::Own),
                u.online(View::Public),
                u.status,
                u.invisible,
                u.custom,
                u.created_at
            )
        })
        .collect();
    all.sort();
    all.extend(state.channel_answers());
    all
}

/// Runs one case; answers a description of the first difference, if any.
fn run_case(seed: u64) -> Result<(), String> {
    let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let node_count = 3 + rng.below(3) as usize;
    let data = Arc::new(Mutex::new(MemoryData::new(4 + rng.below(40) as usize)));
    let names: Vec<String> = (0..node_count).map(|i| format!("n{i}")).collect();
    let mut now: Millis = 1_000;
    data.lock().unwrap().now = now;
    let mut nodes: Vec<Option<SimNode>> =
        names.iter().map(|n| Some(SimNode::start(n, &data, now, rng.next()))).collect();
    let mut outage_until: Millis = 0;
    for _ in 0..150 + rng.below(150) {
        now += rng.below(60) as Millis;
        {
            let mut d = data.lock().unwrap();
            d.now = now;
            d.down = now < outage_until;
        }
        let i = rng.below(node_count as u64) as usize;
        match rng.below(100) {
            0..=49 => {
                if let Some(node) = &mut nodes[i] {
                    operate(&mut rng, node, now);
                }
            }
            50..=89 => {
                if let Some(node) = &mut nodes[i] {
                    node.step(now);
                }
            }
            90..=93 => nodes[i] = None,
            94..=97 => {
                if nodes[i].is_none() {
                    nodes[i] = Some(SimNode::start(&names[i], &data, now, rng.next()));
                }
            }
            _ => outage_until = now + rng.below(3 * LEASE_MS) as Millis,
        }
    }
    quiesce(&data, &mut nodes, now);
    compare_with_one_engine(&data, &nodes, &names)
}

/// The store is back, nothing new happens, every live node keeps stepping until dead
/// leases expired, were reaped, and every log was read.
fn quiesce(data: &Mutex<MemoryData>, nodes: &mut [Option<SimNode>], mut now: Millis) {
    data.lock().unwrap().down = false;
    for _ in 0..(3 * LEASE_MS / HEARTBEAT_MS + 4) {
        now += HEARTBEAT_MS as Millis;
        data.lock().unwrap().now = now;
        for node in nodes.iter_mut().flatten() {
            node.step(now);
        }
    }
    for _ in 0..3 {
        for node in nodes.iter_mut().flatten() {
            node.step(now);
        }
    }
}

/// Every live node answers what one engine answers after all the changes the store took.
fn compare_with_one_engine(
    data: &Mutex<MemoryData>,
    nodes: &[Option<SimNode>],
    names: &[String],
) -> Result<(), String> {
    let expected = answers(&reference(&data.lock().unwrap().history));
    for (i, node) in nodes.iter().enumerate() {
        if let Some(node) = node {
            let got = answers(&node.replica.state.borrow());
            if got != expected {
                let diff: Vec<_> = got.iter().zip(&expected).filter(|(g, e)| g != e).take(3).collect();
                return Err(format!(
                    "node {} differs from one engine (node has {} users, engine {}): {diff:?}",
                    names[i],
                    got.len(),
                    expected.len()
                ));
            }
        }
    }
    Ok(())
}

#[test]
fn every_node_converges_to_one_engine() {
    let cases: u64 = std::env::var("PRESENCE_SIM_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(2000);
    for seed in 1..=cases {
        if let Err(why) = run_case(seed) {
            panic!("simulation case {seed} failed: {why}");
        }
    }
}

/// A watch ended by a deletion read from the store comes back when the store confirms the
/// connection's later watch: node a watches, unwatches and watches again while node b's
/// deletion lands between the first watch and the rest in the store.
#[test]
fn a_watch_a_deletion_ended_comes_back_when_the_store_confirms_it() {
    let data = Arc::new(Mutex::new(MemoryData::new(1000)));
    let (mut a, mut b) = (SimNode::start("a", &data, 1_000, 1), SimNode::start("b", &data, 1_000, 2));
    let x = {
        let mut state = a.replica.state.borrow_mut();
        state
            .upsert_channel(1_000, &ChannelPatch { cid: "room:r".into(), ..ChannelPatch::default() })
            .unwrap();
        let x = state.connect(1_000, "x", UserChanges::default()).unwrap();
        state.watch_channel(1_000, x, "room:r", true, false).unwrap();
        x
    };
    a.step(1_001);
    b.step(1_002);
    b.replica.state.borrow_mut().delete_channel("room:r").unwrap();
    {
        let mut state = a.replica.state.borrow_mut();
        state.stop_watching(1_003, x, "room:r").unwrap();
        state.watch_channel(1_003, x, "room:r", true, false).unwrap();
    }
    b.step(1_004);
    for now in 1_005..1_010 {
        a.step(now);
        b.step(now);
    }
    let expected = answers(&reference(&data.lock().unwrap().history));
    let watched = r#"room:r members:[] watchers:["x"] count:1"#;
    assert!(expected.iter().any(|l| l.starts_with(watched)), "{expected:?}");
    assert_eq!(answers(&a.replica.state.borrow()), expected);
    assert_eq!(answers(&b.replica.state.borrow()), expected);
}
