//! The store scripts against their in-memory model: the same calls on a real Redis and on
//! the model leave the same logs and the same snapshots.
use super::memory::{MemoryData, MemoryStore};
use super::redis_store::RedisStore;
use super::store::{Registration, Store, StoreError, Stored, StoredChannel, StoredOp, SHARDS};
use super::testing::{start_redis, Rng};
use crate::event::ConnectionId;
use crate::replication::{ChannelDelta, ChannelOp, ConnectionChange, Delta, Field, UserDelta};
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
    let cid: Arc<str> = format!("room:{}", rng.below(6)).into();
    let user = |rng: &mut Rng| -> Arc<str> { format!("user-{}", rng.below(12)).into() };
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
    let user: Arc<str> = format!("user-{}", rng.below(12)).into();
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
    let mut redis = RedisStore::new(&server.url(), "t", 1000, Duration::from_secs(5)).unwrap();
    let data = Arc::new(Mutex::new(MemoryData::new(1000)));
    let mut model = MemoryStore(data.clone());
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let nodes = ["a", "b", "c"];
    let mut registrations = Vec::new();
    for node in nodes {
        let r = redis.register(node, 60_000, "e1").unwrap();
        let m = model.register(node, 60_000, "e1").unwrap();
        assert_eq!(r.incarnation, m.incarnation);
        assert_eq!(r.epoch, "e1");
        registrations.push(r);
    }
    let (mut open, mut next_conn) = (Vec::new(), 0);
    // Many deltas per call, as a busy link writes them: several script calls per shard, a
    // user changed many times in one call.
    for _ in 0..20 {
        let node = rng.below(3) as usize;
        let deltas: Vec<Delta> = (0..1 + rng.below(300))
            .map(|_| random_delta(&mut rng, &mut open, node, &mut next_conn))
            .collect();
        let r = redis.write(nodes[node], &registrations[node], &deltas);
        let m = model.write(nodes[node], &registrations[node], &deltas);
        assert_eq!(r, m);
    }
    for _ in 0..1000 {
        let node = rng.below(3) as usize;
        let delta = random_delta(&mut rng, &mut open, node, &mut next_conn);
        let r = redis.write(nodes[node], &registrations[node], std::slice::from_ref(&delta));
        let m = model.write(nodes[node], &registrations[node], std::slice::from_ref(&delta));
        assert_eq!(r, m, "{delta:?}");
    }
    // Node b dies: reaping closes its connections everywhere and fences its writes.
    let dead = super::store::member("b", registrations[1].incarnation);
    assert!(redis.reap(&dead, 5_000, 10_000).unwrap());
    assert!(model.reap(&dead, 5_000, 10_000).unwrap());
    let late = random_delta(&mut rng, &mut open, 1, &mut next_conn);
    assert_eq!(
        redis.write("b", &registrations[1], std::slice::from_ref(&late)),
        (0, Err(StoreError::Fenced))
    );
    assert_eq!(
        model.write("b", &registrations[1], std::slice::from_ref(&late)),
        (0, Err(StoreError::Fenced))
    );
    // A write under an epoch the store does not hold (it lost its data) is refused too.
    let stale = Registration { incarnation: registrations[0].incarnation, epoch: "e0".into() };
    assert_eq!(redis.write("a", &stale, std::slice::from_ref(&late)), (0, Err(StoreError::Lost)));
    assert_eq!(model.write("a", &stale, std::slice::from_ref(&late)), (0, Err(StoreError::Lost)));

    let cursors = [0; SHARDS];
    // Hash field order differs between Redis and the model; the sets must not.
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
    let from_redis = normalized(redis.read(&cursors, 10_000).unwrap());
    let from_model = normalized(model.read(&cursors, 10_000).unwrap());
    assert_eq!(from_redis.len(), from_model.len());
    for (r, m) in from_redis.iter().zip(&from_model) {
        assert_eq!(r, m);
    }
    assert!(from_redis.iter().any(|e| e.changes.len() > 1), "user changes of one call shared an entry");
    let logged = |what: fn(&Stored) -> bool| from_redis.iter().flat_map(|e| &e.changes).any(what);
    assert!(logged(|c| matches!(c, Stored::User(u) if u.lost.is_some())), "reaping logged lost connections");
    assert!(logged(
        |c| matches!(c, Stored::Channel(ch) if matches!(&ch.op, StoredOp::Lost(w) if !w.is_empty()))
    ));
    assert!(logged(
        |c| matches!(c, Stored::Channel(ch) if matches!(&ch.op, StoredOp::Deleted(w) if !w.is_empty()))
    ));
    for shard in 0..SHARDS {
        let mut r = redis.snapshot(shard).unwrap();
        let mut m = model.snapshot(shard).unwrap();
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
    assert_eq!(data.lock().unwrap().retention, 1000);
}
