//! Deterministic simulation of cluster replication: 3 to 5 nodes (the core and the real
//! link state machine) over the in-memory model of the store, with random operations,
//! random delays (a node steps its link only now and then), crashes and restarts, store
//! outages and a short log retention (so readers fall behind and rebuild from snapshots).
//! After quiescence every live node must answer like one engine that applied every change
//! the store accepted, in the store's order.
use super::link::{Link, LinkSettings, LinkShared, LinkStatus, Replica};
use super::memory::{Applied, MemoryData, MemoryStore};
use super::testing::Rng;
use crate::config::Config;
use crate::core::State;
use crate::event::ConnectionId;
use crate::replication::{ConnectionChange, Delta, Field, RemoteChange};
use crate::time::Millis;
use crate::user::{UserPatch, View};
use serde_json::Value;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

const HEARTBEAT_MS: u64 = 100;
const LEASE_MS: u64 = 400;
const USERS: u64 = 8;

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
    fn apply_remote(&self, changes: Vec<RemoteChange>) {
        let mut state = self.state.borrow_mut();
        for change in &changes {
            state.apply_remote(self.now.get(), change);
        }
        state.take_outbox();
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

/// One random operation on a live node.
fn operate(rng: &mut Rng, node: &mut SimNode, now: Millis) {
    let mut state = node.replica.state.borrow_mut();
    match rng.below(6) {
        0 | 1 => {
            let mut patch = UserPatch::id(user_name(rng));
            if rng.chance(20) {
                patch.status = Some(Some(format!("s{}", rng.below(4))));
            }
            if let Ok(c) = state.connect(now, &patch) {
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
        _ => {
            let mut patch = UserPatch::id(user_name(rng));
            let value = rng.chance(80).then(|| Value::from(rng.below(10)));
            patch.custom.push(("level".into(), value));
            state.upsert_user(now, &patch).unwrap();
        }
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
            Applied::Delta(member, delta) => {
                let mut patch = UserPatch::id(delta.user.to_string());
                for (field, value) in &delta.fields {
                    match field {
                        Field::Status => patch.status = Some(value.clone()),
                        Field::Invisible => patch.invisible = Some(value.as_deref() == Some("1")),
                        Field::Custom(name) => patch
                            .custom
                            .push((name.clone(), value.as_deref().map(|v| serde_json::from_str(v).unwrap()))),
                        Field::UpdatedAt => {}
                    }
                }
                match delta.connection {
                    // The store counts a connection once, however often it is announced.
                    Some(ConnectionChange::Opened(c)) if open.contains_key(&(member.clone(), c.0)) => {
                        single.upsert_user(delta.at, &patch).unwrap();
                    }
                    Some(ConnectionChange::Opened(c)) => {
                        let id = single.connect(delta.at, &patch).unwrap();
                        open.insert((member.clone(), c.0), id);
                    }
                    Some(ConnectionChange::Closed(c)) => {
                        single.upsert_user(delta.at, &patch).unwrap();
                        if let Some(id) = open.remove(&(member.clone(), c.0)) {
                            single.disconnect(delta.at, id).unwrap();
                        }
                    }
                    None => single.upsert_user(delta.at, &patch).unwrap(),
                }
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
    // Quiescence: the store is back, nothing new happens, every live node keeps stepping
    // until dead leases expired, were reaped, and every log was read.
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
