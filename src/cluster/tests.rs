//! The store scripts against their in-memory model: the same calls on a real Redis and on
//! the model leave the same logs and the same snapshots.
use super::memory::{MemoryData, MemoryStore};
use super::redis_store::RedisStore;
use super::store::{Registration, Store, StoreError, SHARDS};
use super::testing::{start_redis, Rng};
use crate::event::ConnectionId;
use crate::replication::{ConnectionChange, Delta, Field};
use std::sync::{Arc, Mutex};
use std::time::Duration;

fn random_delta(
    rng: &mut Rng,
    open: &mut Vec<(usize, u64, String)>,
    node: usize,
    next_conn: &mut u64,
) -> Delta {
    let user: Arc<str> = format!("user-{}", rng.below(12)).into();
    let mut delta = Delta::new(user.clone(), 1_000 + rng.below(1000) as i64);
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
    for _ in 0..400 {
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
        for e in &mut entries {
            e.change.connections.sort();
            if let Some((_, ids)) = &mut e.change.lost {
                ids.sort();
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
    assert!(from_redis.iter().any(|e| e.change.lost.is_some()), "reaping logged lost connections");
    for shard in 0..SHARDS {
        let (rs, mut ru) = redis.snapshot(shard).unwrap();
        let (ms, mut mu) = model.snapshot(shard).unwrap();
        assert_eq!(rs, ms);
        ru.sort_by(|a, b| a.user.cmp(&b.user));
        mu.sort_by(|a, b| a.user.cmp(&b.user));
        for u in ru.iter_mut().chain(mu.iter_mut()) {
            u.fields.sort();
            u.connections.sort();
        }
        assert_eq!(ru, mu);
    }
    assert_eq!(data.lock().unwrap().retention, 1000);
}
