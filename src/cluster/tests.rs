//! The store scripts against their in-memory model: the same calls on a real Redis and on
//! the model leave the same logs and the same snapshots.
use super::memory::{MemoryData, MemoryStore};
use super::redis_store::RedisStore;
use super::store::{Registration, Store, StoreError, Stored, StoredChannel, StoredOp, SHARDS};
use super::testing::{start_redis, Rng};
use crate::event::ConnectionId;
use crate::replication::{ChannelDelta, ChannelOp, ConnectionChange, Delta, Field, UserDelta};
use crate::shared_str::SharedStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

fn random_delta(
    rng: &mut Rng,
    open: &mut Vec<(usize, u64, String)>,
    node: usize,
    next_conn: &mut u64,
) -> Delta {
    if rng.chance(40) {
        Delta::Channel(random_channel_delta(rng, open, node))
    } else {
        Delta::User(random_user_delta(rng, open, node, next_conn))
    }
}

fn random_channel_delta(rng: &mut Rng, open: &[(usize, u64, String)], node: usize) -> ChannelDelta {
    let cid: SharedStr = format!("room:{}", rng.below(6)).into();
    let user = |rng: &mut Rng| -> SharedStr { format!("user-{}", rng.below(12)).into() };
    let op = match rng.below(6) {
        0 | 1 => ChannelOp::Upsert {
            fields: vec![
                (Field::Custom("topic".into()), (rng.below(3) > 0).then(|| rng.below(9).to_string())),
                (Field::LastMessageAt, Some(rng.below(5000).to_string())),
            ],
            members: (0..rng.below(3)).map(|_| user(rng)).collect(),
            only_if_absent: rng.chance(10),
        },
        2 => ChannelOp::RemoveMembers(vec![user(rng), user(rng)]),
        3 => ChannelOp::Delete,
        _ => match open.iter().filter(|(n, _, _)| *n == node).nth(rng.below(3) as usize) {
            Some((_, c, u)) => ChannelOp::Watch {
                connection: ConnectionId(*c),
                user: u.as_str().into(),
                start: rng.chance(60),
            },
            None => ChannelOp::Delete,
        },
    };
    ChannelDelta { cid, at: 1_000 + rng.below(1000) as i64, op }
}

fn random_user_delta(
    rng: &mut Rng,
    open: &mut Vec<(usize, u64, String)>,
    node: usize,
    next_conn: &mut u64,
) -> UserDelta {
    let user: SharedStr = format!("user-{}", rng.below(12)).into();
    let mut delta = UserDelta::new(user.clone(), 1_000 + rng.below(1000) as i64);
    match rng.below(4) {
        0 => {
            *next_conn += 1;
            delta.connection = Some(ConnectionChange::Opened(ConnectionId(*next_conn)));
            delta.last_active = Some(delta.at);
            open.push((node, *next_conn, user.to_string()));
        }
        1 => {
            if let Some(pos) = open.iter().position(|(n, _, u)| *n == node && **u == *user) {
                let (_, c, _) = open.remove(pos);
                delta.connection = Some(ConnectionChange::Closed(ConnectionId(c)));
            }
        }
        2 => delta.fields.push((Field::Status, (rng.below(3) > 0).then(|| format!("s{}", rng.below(5))))),
        _ => {
            delta.fields.push((Field::Invisible, Some(rng.below(2).to_string())));
            delta.fields.push((Field::Custom("level".into()), Some(rng.below(50).to_string())));
        }
    }
    delta
}

/// Hash field order differs between Redis and the model; puts lists in one order.
fn sort_channel(change: &mut StoredChannel) {
    match &mut change.op {
        StoredOp::Full { fields, members, watchers } => {
            fields.sort();
            members.sort();
            watchers.sort();
        }
        StoredOp::Deleted(watchers) | StoredOp::Lost(watchers) => watchers.sort(),
        _ => {}
    }
}

#[test]
fn redis_scripts_match_the_in_memory_model() {
    let Some(server) = start_redis() else { return };
    let mut both = BothStores::register(&server.url());
    both.write_random_batches();
    both.write_random_deltas();
    both.reap_and_refuse_stale_writes();
    both.logs_agree();
    both.snapshots_agree();
    assert_eq!(both.data.lock().unwrap().retention, 1000);
}

/// A real Redis and the in-memory model, given the same calls by three nodes.
struct BothStores {
    redis: RedisStore,
    model: MemoryStore,
    data: Arc<Mutex<MemoryData>>,
    registrations: Vec<Registration>,
    rng: Rng,
    /// (node, connection, user) of the open connections.
    open: Vec<(usize, u64, String)>,
    next_conn: u64,
}

const NODES: [&str; 3] = ["a", "b", "c"];

impl BothStores {
    fn register(url: &str) -> BothStores {
        let mut redis = RedisStore::new(url, "t", 1000, Duration::from_secs(5)).unwrap();
        let data = Arc::new(Mutex::new(MemoryData::new(1000)));
        let mut model = MemoryStore(data.clone());
        let mut registrations = Vec::new();
        for node in NODES {
            let r = redis.register(node, 60_000, "e1").unwrap();
            let m = model.register(node, 60_000, "e1").unwrap();
            assert_eq!(r.incarnation, m.incarnation);
            assert_eq!(r.epoch, "e1");
            registrations.push(r);
        }
        BothStores {
            redis,
            model,
            data,
            registrations,
            rng: Rng(0x9e37_79b9_7f4a_7c15),
            open: Vec::new(),
            next_conn: 0,
        }
    }

    fn delta(&mut self, node: usize) -> Delta {
        random_delta(&mut self.rng, &mut self.open, node, &mut self.next_conn)
    }

    /// The same write on both; both answer alike.
    fn write(&mut self, node: usize, deltas: &[Delta]) {
        let r = self.redis.write(NODES[node], &self.registrations[node], deltas);
        let m = self.model.write(NODES[node], &self.registrations[node], deltas);
        assert_eq!(r, m, "{deltas:?}");
    }

    /// Many deltas per call, as a busy link writes them: several script calls per shard, a
    /// user changed many times in one call.
    fn write_random_batches(&mut self) {
        for _ in 0..20 {
            let node = self.rng.below(3) as usize;
            let deltas: Vec<Delta> = (0..1 + self.rng.below(300)).map(|_| self.delta(node)).collect();
            self.write(node, &deltas);
        }
    }

    fn write_random_deltas(&mut self) {
        for _ in 0..1000 {
            let node = self.rng.below(3) as usize;
            let delta = self.delta(node);
            self.write(node, std::slice::from_ref(&delta));
        }
    }

    /// Node b dies: reaping closes its connections everywhere and fences its writes; a
    /// write under an epoch the store does not hold (it lost its data) is refused too.
    fn reap_and_refuse_stale_writes(&mut self) {
        let dead = super::store::member("b", self.registrations[1].incarnation);
        assert!(self.redis.reap(&dead, 5_000, 10_000).unwrap());
        assert!(self.model.reap(&dead, 5_000, 10_000).unwrap());
        let late = self.delta(1);
        let late = std::slice::from_ref(&late);
        assert_eq!(self.redis.write("b", &self.registrations[1], late), (0, Err(StoreError::Fenced)));
        assert_eq!(self.model.write("b", &self.registrations[1], late), (0, Err(StoreError::Fenced)));
        let stale = Registration { incarnation: self.registrations[0].incarnation, epoch: "e0".into() };
        assert_eq!(self.redis.write("a", &stale, late), (0, Err(StoreError::Lost)));
        assert_eq!(self.model.write("a", &stale, late), (0, Err(StoreError::Lost)));
    }

    /// Both logs hold the same entries (hash field order aside), with shared user entries,
    /// lost connections and deleted channels among them.
    fn logs_agree(&mut self) {
        let cursors = [0; SHARDS];
        let normalized = |mut entries: Vec<super::store::Entry>| {
            for change in entries.iter_mut().flat_map(|e| &mut e.changes) {
                match change {
                    Stored::User(change) => {
                        change.connections.sort();
                        if let Some((_, ids)) = &mut change.lost {
                            ids.sort();
                        }
                    }
                    Stored::Channel(change) => sort_channel(change),
                }
            }
            entries
        };
        let from_redis = normalized(self.redis.read(&cursors, 10_000).unwrap());
        let from_model = normalized(self.model.read(&cursors, 10_000).unwrap());
        assert_eq!(from_redis.len(), from_model.len());
        for (r, m) in from_redis.iter().zip(&from_model) {
            assert_eq!(r, m);
        }
        assert!(from_redis.iter().any(|e| e.changes.len() > 1), "user changes of one call shared an entry");
        let logged = |what: fn(&Stored) -> bool| from_redis.iter().flat_map(|e| &e.changes).any(what);
        assert!(
            logged(|c| matches!(c, Stored::User(u) if u.lost.is_some())),
            "reaping logged lost connections"
        );
        assert!(logged(
            |c| matches!(c, Stored::Channel(ch) if matches!(&ch.op, StoredOp::Lost(w) if !w.is_empty()))
        ));
        assert!(logged(
            |c| matches!(c, Stored::Channel(ch) if matches!(&ch.op, StoredOp::Deleted(w) if !w.is_empty()))
        ));
    }

    /// Every shard's snapshot is the same set of users and channels.
    fn snapshots_agree(&mut self) {
        for shard in 0..SHARDS {
            let mut r = self.redis.snapshot(shard).unwrap();
            let mut m = self.model.snapshot(shard).unwrap();
            for snapshot in [&mut r, &mut m] {
                snapshot.users.sort_by(|a, b| a.user.cmp(&b.user));
                for u in &mut snapshot.users {
                    u.fields.sort();
                    u.connections.sort();
                }
                snapshot.channels.sort_by(|a, b| a.cid.cmp(&b.cid));
                snapshot.channels.iter_mut().for_each(sort_channel);
            }
            assert_eq!(r, m);
        }
    }
}
