//! The login/logout storm (workload 2).
use super::*;

/// Channel sizes `largest / k^a` (k = 1..=channels, at least 1) with the exponent `a`
/// chosen so that they add up to about `total` memberships.
fn zipf_sizes(channels: usize, largest: usize, total: usize) -> Vec<usize> {
    let sizes = |a: f64| -> Vec<usize> {
        (1..=channels).map(|k| ((largest as f64 / (k as f64).powf(a)).round() as usize).max(1)).collect()
    };
    let (mut lo, mut hi) = (0.0f64, 4.0f64);
    if sizes(0.0).iter().sum::<usize>() <= total {
        return sizes(0.0);
    }
    for _ in 0..60 {
        let mid = (lo + hi) / 2.0;
        if sizes(mid).iter().sum::<usize>() > total {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    sizes(hi)
}

/// Connect, watch every channel with presence, disconnect: once per user in `users`.
#[inline(never)]
fn storm_engine(
    eng: &Engine,
    users: &[usize],
    patches: &[UserPatch],
    user_channels: &[Vec<usize>],
    cids: &[String],
) -> Duration {
    let t = Instant::now();
    for &u in users {
        let conn = eng.connect(&patches[u]).expect("connect");
        for &ch in &user_channels[u] {
            eng.start_watching(conn, &cids[ch], true).expect("watch");
        }
        eng.disconnect(conn).expect("disconnect");
    }
    t.elapsed()
}

#[inline(never)]
fn storm_baseline(
    base: &mut Baseline,
    users: &[usize],
    ids: &[String],
    user_channels: &[Vec<usize>],
    cids: &[String],
) -> Duration {
    let t = Instant::now();
    for &u in users {
        let conn = base.connect(&ids[u], now_ms());
        for &ch in &user_channels[u] {
            base.watch(conn, &cids[ch]);
        }
        base.disconnect(conn, now_ms());
    }
    t.elapsed()
}

pub(super) fn w2_storm(p: &Params, r: &mut Report) {
    let n = p.w2_users;
    let c = p.w2_channels;
    let sizes = zipf_sizes(c, p.w2_largest.min(n), n * p.w2_per_user);
    let memberships: usize = sizes.iter().sum();
    progress(&format!(
        "2: {} users, {} channels (largest {}, {} memberships)",
        count(n),
        count(c),
        sizes[0],
        memberships
    ));
    let ids: Vec<String> = (0..n).map(|i| format!("p{i:06}")).collect();
    let cids: Vec<String> = (0..c).map(|k| format!("group:g{k:05}")).collect();
    let mut rng = Rng::new(2);
    let mut perm: Vec<u32> = (0..n as u32).collect();
    let mut user_channels: Vec<Vec<usize>> = vec![Vec::new(); n];
    let members: Vec<Vec<u32>> = sizes
        .iter()
        .enumerate()
        .map(|(k, &s)| {
            let m = rng.distinct(&mut perm, s).to_vec();
            for &u in &m {
                user_channels[u as usize].push(k);
            }
            m
        })
        .collect();
    let config = Config {
        connection_queue_capacity: 1 << 16,
        max_subscriptions_per_connection: 100_000_000,
        ..Config::default()
    };
    let eng = Engine::new(config).expect("engine");
    let mut base = Baseline::new(900_000, 1 << 16);
    let now = now_ms();
    for id in &ids {
        eng.upsert_user(&UserPatch::id(id.as_str())).expect("upsert_user");
        base.register(id, now);
    }
    for (k, cid) in cids.iter().enumerate() {
        let names: Vec<String> = members[k].iter().map(|&u| ids[u as usize].clone()).collect();
        base.create_channel(cid);
        for id in &names {
            base.add_member(cid, id, now);
        }
        eng.upsert_channel(&ChannelPatch { cid: cid.clone(), members: names, ..Default::default() })
            .expect("upsert_channel");
    }
    let patches: Vec<UserPatch> = ids.iter().map(|id| UserPatch::id(id.as_str())).collect();

    // The online background: every member of it watches all its channels with presence.
    let online = ((n as f64 * p.w2_online_fraction).round() as usize).max(1);
    let background: Vec<usize> = rng.distinct(&mut perm, online).iter().map(|&u| u as usize).collect();
    let mut is_background = vec![false; n];
    let (mut econns, mut bconns) = (Vec::new(), Vec::new());
    let (de, _) = timed(|| {
        for &u in &background {
            let conn = eng.connect(&patches[u]).expect("connect");
            for &ch in &user_channels[u] {
                eng.start_watching(conn, &cids[ch], true).expect("watch");
            }
            econns.push(conn);
        }
    });
    let (db, _) = timed(|| {
        for &u in &background {
            let conn = base.connect(&ids[u], now_ms());
            for &ch in &user_channels[u] {
                base.watch(conn, &cids[ch]);
            }
            bconns.push(conn);
        }
    });
    for &u in &background {
        is_background[u] = true;
    }
    progress(&format!(
        "2: {} background users online and watching (engine {:.1} s, baseline {:.1} s)",
        count(online),
        de.as_secs_f64(),
        db.as_secs_f64()
    ));
    let drain_engine = |conns: &[ConnectionId]| -> usize {
        conns.iter().map(|&c| eng.poll_events(c, usize::MAX).expect("poll").len()).sum()
    };
    let drain_baseline = |base: &mut Baseline, conns: &[u64]| -> usize {
        conns.iter().map(|&c| base.poll(c, usize::MAX).len()).sum()
    };
    drain_engine(&econns);
    drain_baseline(&mut base, &bconns);

    let pool: Vec<usize> = (0..n).filter(|&u| !is_background[u]).collect();
    check(!pool.is_empty(), || "no storm users".into());
    const CHUNK: usize = 32;
    // (ns per cycle, ns per event, events per cycle) of the best round, per side.
    let mut best_e = (f64::MAX, 0.0, 0.0);
    let mut best_b = (f64::MAX, 0.0, 0.0);
    let (mut total_e, mut total_b) = (0usize, 0usize);
    for _ in 0..p.rounds {
        let cycle_users: Vec<usize> = (0..p.w2_cycles).map(|_| pool[rng.below(pool.len())]).collect();
        let (mut d, mut events) = (Duration::ZERO, 0usize);
        for chunk in cycle_users.chunks(CHUNK) {
            d += storm_engine(&eng, chunk, &patches, &user_channels, &cids);
            events += drain_engine(&econns);
        }
        total_e += events;
        let cyc = ns_per(d, cycle_users.len());
        if cyc < best_e.0 {
            best_e = (cyc, ns_per(d, events), events as f64 / cycle_users.len() as f64);
        }
        let (mut d, mut events) = (Duration::ZERO, 0usize);
        for chunk in cycle_users.chunks(CHUNK) {
            d += storm_baseline(&mut base, chunk, &ids, &user_channels, &cids);
            events += drain_baseline(&mut base, &bconns);
        }
        total_b += events;
        let cyc = ns_per(d, cycle_users.len());
        if cyc < best_b.0 {
            best_b = (cyc, ns_per(d, events), events as f64 / cycle_users.len() as f64);
        }
    }
    check(eng.counts().connections == online && base.connection_count() == online, || {
        format!("connections after the storm: {:?}", eng.counts())
    });
    check(total_e > 0 && total_b > 0, || {
        format!("no events delivered: engine {total_e}, baseline {total_b}")
    });
    // Both sides deliver the same events to the same background connections.
    if total_e != total_b {
        eprintln!("  note: events delivered differ: engine {total_e}, baseline {total_b}");
    }
    check((total_e as f64 / total_b as f64 - 1.0).abs() < 0.5, || {
        format!("events delivered: engine {total_e}, baseline {total_b}")
    });
    let avg_channels = memberships as f64 / n as f64;
    r.add(
        format!(
            "2 storm: connect + watch {avg_channels:.0} channels (presence) + disconnect, {} users, {} channels, {} online",
            count(n),
            count(c),
            count(online)
        ),
        Cell::rate(best_e.0, "cycle"),
        Cell::rate(best_b.0, "cycle"),
        Target::RatioAtMost(3.0),
    );
    r.add(
        format!("2 storm: events delivered into queues ({:.0} per cycle)", best_e.2),
        Cell::rate(best_e.1, "event"),
        Cell::rate(best_b.1, "event"),
        Target::None,
    );
}
