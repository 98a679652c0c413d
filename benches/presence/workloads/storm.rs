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
    let mut rng = Rng::new(2);
    let mut perm: Vec<u32> = (0..p.w2_users as u32).collect();
    let mut w = StormWorld::build(p, &mut rng, &mut perm);
    let n = w.ids.len();
    // The online background: every member of it watches all its channels with presence.
    let online = ((n as f64 * p.w2_online_fraction).round() as usize).max(1);
    let background: Vec<usize> = rng.distinct(&mut perm, online).iter().map(|&u| u as usize).collect();
    let (econns, bconns) = w.go_online(&background);
    let mut is_background = vec![false; n];
    background.iter().for_each(|&u| is_background[u] = true);
    let pool: Vec<usize> = (0..n).filter(|&u| !is_background[u]).collect();
    check(!pool.is_empty(), || "no storm users".into());
    let (best_e, best_b) = w.storm_rounds(p, &mut rng, &pool, &econns, &bconns);
    check(w.eng.counts().connections == online && w.base.connection_count() == online, || {
        format!("connections after the storm: {:?}", w.eng.counts())
    });
    let avg_channels = w.memberships as f64 / n as f64;
    r.add(
        format!(
            "2 storm: connect + watch {avg_channels:.0} channels (presence) + disconnect, {} users, {} channels, {} online",
            count(n),
            count(w.cids.len()),
            count(online)
        ),
        Cell::rate(best_e.per_cycle, "cycle"),
        Cell::rate(best_b.per_cycle, "cycle"),
        Target::RatioAtMost(3.0),
    );
    r.add(
        format!("2 storm: events delivered into queues ({:.0} per cycle)", best_e.events_per_cycle),
        Cell::rate(best_e.per_event, "event"),
        Cell::rate(best_b.per_event, "event"),
        Target::None,
    );
}

/// Users and Zipf-sized group channels, the same in the engine and the baseline.
struct StormWorld {
    eng: Engine,
    base: Baseline,
    ids: Vec<String>,
    cids: Vec<String>,
    patches: Vec<UserPatch>,
    /// The channels of each user.
    user_channels: Vec<Vec<usize>>,
    memberships: usize,
}

/// The best round of one side.
#[derive(Clone, Copy)]
struct StormRound {
    per_cycle: f64,
    per_event: f64,
    events_per_cycle: f64,
}

impl StormWorld {
    fn build(p: &Params, rng: &mut Rng, perm: &mut [u32]) -> StormWorld {
        let (n, c) = (p.w2_users, p.w2_channels);
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
        let mut user_channels: Vec<Vec<usize>> = vec![Vec::new(); n];
        let members: Vec<Vec<u32>> = sizes
            .iter()
            .enumerate()
            .map(|(k, &s)| {
                let m = rng.distinct(perm, s).to_vec();
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
            eng.upsert_channel(&ChannelPatch { members: names, ..ChannelPatch::cid(cid.as_str()) })
                .expect("upsert_channel");
        }
        let patches: Vec<UserPatch> = ids.iter().map(|id| UserPatch::id(id.as_str())).collect();
        StormWorld { eng, base, ids, cids, patches, user_channels, memberships }
    }

    /// Connects the background users on both sides, each watching all its channels.
    fn go_online(&mut self, background: &[usize]) -> (Vec<ConnectionId>, Vec<u64>) {
        let (de, econns) = timed(|| {
            let mut conns = Vec::new();
            for &u in background {
                let conn = self.eng.connect(&self.patches[u]).expect("connect");
                for &ch in &self.user_channels[u] {
                    self.eng.start_watching(conn, &self.cids[ch], true).expect("watch");
                }
                conns.push(conn);
            }
            conns
        });
        let (db, bconns) = timed(|| {
            let mut conns = Vec::new();
            for &u in background {
                let conn = self.base.connect(&self.ids[u], now_ms());
                for &ch in &self.user_channels[u] {
                    self.base.watch(conn, &self.cids[ch]);
                }
                conns.push(conn);
            }
            conns
        });
        progress(&format!(
            "2: {} background users online and watching (engine {:.1} s, baseline {:.1} s)",
            count(background.len()),
            de.as_secs_f64(),
            db.as_secs_f64()
        ));
        self.drain_engine(&econns);
        self.drain_baseline(&bconns);
        (econns, bconns)
    }

    fn drain_engine(&self, conns: &[ConnectionId]) -> usize {
        conns.iter().map(|&c| self.eng.poll_events(c, usize::MAX).expect("poll").len()).sum()
    }

    fn drain_baseline(&mut self, conns: &[u64]) -> usize {
        conns.iter().map(|&c| self.base.poll(c, usize::MAX).len()).sum()
    }

    /// The storm rounds on both sides: random pool users come and go in chunks, the
    /// background's queues drained between chunks (outside the timing).
    fn storm_rounds(
        &mut self,
        p: &Params,
        rng: &mut Rng,
        pool: &[usize],
        econns: &[ConnectionId],
        bconns: &[u64],
    ) -> (StormRound, StormRound) {
        const CHUNK: usize = 32;
        let worst = StormRound { per_cycle: f64::MAX, per_event: 0.0, events_per_cycle: 0.0 };
        let (mut best_e, mut best_b) = (worst, worst);
        let (mut total_e, mut total_b) = (0usize, 0usize);
        let keep_best = |best: &mut StormRound, d: Duration, events: usize, cycles: usize| {
            let per_cycle = ns_per(d, cycles);
            if per_cycle < best.per_cycle {
                *best = StormRound {
                    per_cycle,
                    per_event: ns_per(d, events),
                    events_per_cycle: events as f64 / cycles as f64,
                };
            }
        };
        for _ in 0..p.rounds {
            let cycle_users: Vec<usize> = (0..p.w2_cycles).map(|_| pool[rng.below(pool.len())]).collect();
            let (mut d, mut events) = (Duration::ZERO, 0usize);
            for chunk in cycle_users.chunks(CHUNK) {
                d += storm_engine(&self.eng, chunk, &self.patches, &self.user_channels, &self.cids);
                events += self.drain_engine(econns);
            }
            total_e += events;
            keep_best(&mut best_e, d, events, cycle_users.len());
            let (mut d, mut events) = (Duration::ZERO, 0usize);
            for chunk in cycle_users.chunks(CHUNK) {
                d += storm_baseline(&mut self.base, chunk, &self.ids, &self.user_channels, &self.cids);
                events += self.drain_baseline(bconns);
            }
            total_b += events;
            keep_best(&mut best_b, d, events, cycle_users.len());
        }
        check_same_deliveries(total_e, total_b);
        (best_e, best_b)
    }
}

/// Both sides deliver the same events to the same background connections.
fn check_same_deliveries(total_e: usize, total_b: usize) {
    check(total_e > 0 && total_b > 0, || {
        format!("no events delivered: engine {total_e}, baseline {total_b}")
    });
    if total_e != total_b {
        eprintln!("  note: events delivered differ: engine {total_e}, baseline {total_b}");
    }
    check((total_e as f64 / total_b as f64 - 1.0).abs() < 0.5, || {
        format!("events delivered: engine {total_e}, baseline {total_b}")
    });
}
