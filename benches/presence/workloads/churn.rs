//! The heartbeat churn (workload 1) and the queries over its world (workload 4).
use super::*;

const HEARTBEAT: u8 = 0;
const GET_USER: u8 = 1;
const STATUS: u8 = 2;

#[derive(Clone, Copy)]
struct Op {
    kind: u8,
    key: u32,
}

/// n registered users, a quarter online with one connection each, in both worlds.
pub struct Churn {
    n: usize,
    ids: Vec<String>,
    /// The user index of the i-th online user (scattered over the population).
    online_users: Vec<usize>,
    eng: Engine,
    econns: Vec<ConnectionId>,
    base: Baseline,
    bconns: Vec<u64>,
}

pub(super) fn build_churn(n: usize) -> Churn {
    let ids: Vec<String> = (0..n).map(user_id).collect();
    let online = (n / 4).max(1);
    let scatter = Scatter::new(n);
    let online_users: Vec<usize> = (0..online).map(|i| scatter.map(i)).collect();
    let eng = Engine::new(Config::default()).expect("engine");
    let mut base = Baseline::new(900_000, 1024);
    for id in &ids {
        eng.upsert_user(&UserPatch::id(id.as_str())).expect("upsert_user");
        base.register(id, now_ms());
    }
    let mut econns = Vec::with_capacity(online);
    let mut bconns = Vec::with_capacity(online);
    for &u in &online_users {
        econns.push(eng.connect(&UserPatch::id(ids[u].as_str())).expect("connect"));
        bconns.push(base.connect(&ids[u], now_ms()));
    }
    check(eng.counts() == Counts { users: n, connections: online, channels: 0 }, || {
        format!("churn world counts {:?}", eng.counts())
    });
    Churn { n, ids, online_users, eng, econns, base, bconns }
}

/// `count` operations: `mix` percent heartbeat / get_user / status change; heartbeats and
/// status changes pick an online user, get_user any registered user; keys uniform or
/// Zipf(0.99) (ranks scattered so hot users are not neighbours in memory).
fn churn_ops(w: &Churn, count: usize, mix: [usize; 3], zipf: bool, seed: u64) -> Vec<Op> {
    let mut rng = Rng::new(seed);
    let online = w.online_users.len();
    let tables = zipf.then(|| (Zipf::new(online, 0.99), Zipf::new(w.n, 0.99)));
    let (so, sn) = (Scatter::new(online), Scatter::new(w.n));
    (0..count)
        .map(|_| {
            let r = rng.below(100);
            let kind = if r < mix[0] {
                HEARTBEAT
            } else if r < mix[0] + mix[1] {
                GET_USER
            } else {
                STATUS
            };
            let key = match (&tables, kind) {
                (Some((_, zn)), GET_USER) => sn.map(zn.sample(&mut rng)),
                (None, GET_USER) => rng.below(w.n),
                (Some((zo, _)), _) => so.map(zo.sample(&mut rng)),
                (None, _) => rng.below(online),
            };
            Op { kind, key: key as u32 }
        })
        .collect()
}

// The timed regions are separate functions, never inlined, so that a profiler can be
// pointed at exactly one of them, e.g.
// `valgrind --tool=callgrind --toggle-collect='*workloads::churn_engine*' <bench binary>`.

#[inline(never)]
fn churn_engine(w: &Churn, ops: &[Op]) -> Duration {
    let t = Instant::now();
    for (i, op) in ops.iter().enumerate() {
        let k = op.key as usize;
        match op.kind {
            HEARTBEAT => w.eng.heartbeat(w.econns[k]).expect("heartbeat"),
            GET_USER => {
                black_box(w.eng.get_user(HOST, &w.ids[k]).expect("get_user").to_value());
            }
            _ => w.eng.set_status(&w.ids[w.online_users[k]], Some(STATUSES[i & 3])).expect("set_status"),
        }
    }
    t.elapsed()
}

#[inline(never)]
fn churn_baseline(w: &mut Churn, ops: &[Op]) -> Duration {
    let t = Instant::now();
    for (i, op) in ops.iter().enumerate() {
        let k = op.key as usize;
        match op.kind {
            HEARTBEAT => {
                let ok = w.base.heartbeat(w.bconns[k], now_ms());
                assert!(ok, "baseline heartbeat");
            }
            GET_USER => {
                black_box(w.base.get_user(&w.ids[k]).expect("baseline get_user"));
            }
            _ => {
                let ok = w.base.set_status(&w.ids[w.online_users[k]], Some(STATUSES[i & 3]), now_ms());
                assert!(ok, "baseline set_status");
            }
        }
    }
    t.elapsed()
}

/// Best interleaved round of engine and baseline over the same ops: ns per op each.
fn churn_measure(p: &Params, w: &mut Churn, ops: &[Op]) -> (f64, f64) {
    let (mut de, mut db) = (Duration::MAX, Duration::MAX);
    for _ in 0..p.rounds {
        de = de.min(churn_engine(w, ops));
        db = db.min(churn_baseline(w, ops));
    }
    (ns_per(de, ops.len()), ns_per(db, ops.len()))
}

pub(super) fn w1_heartbeat_churn(p: &Params, r: &mut Report) -> Churn {
    let mix = [90, 8, 2];
    let mut per_size: Vec<(usize, [(f64, f64); 2])> = Vec::new();
    let mut largest = None;
    let sizes = p.w1_sizes.clone();
    for (si, &n) in sizes.iter().enumerate() {
        progress(&format!("1: building {} users, {} online", count(n), count(n / 4)));
        let mut w = build_churn(n);
        let mut figures = [(0.0, 0.0); 2];
        for (zi, zipf) in [false, true].into_iter().enumerate() {
            let ops = churn_ops(&w, p.w1_ops, mix, zipf, 11 + zi as u64);
            let (e, b) = churn_measure(p, &mut w, &ops);
            figures[zi] = (e, b);
            let dist = if zipf { "Zipf(0.99)" } else { "uniform" };
            r.add(
                format!(
                    "1 churn 90% heartbeat/8% get_user/2% status, {dist}, {} users ({} online)",
                    count(n),
                    count(n / 4)
                ),
                Cell::rate(e, "op"),
                Cell::rate(b, "op"),
                Target::RatioAtMost(3.0),
            );
        }
        // The engine answered sane values after the churn.
        let any = &w.ids[w.online_users[0]];
        let v = w.eng.get_user(HOST, any).expect("get_user").to_value();
        check(v["id"] == any.as_str() && v["online"] == true, || format!("get_user after churn: {v}"));
        // Nothing due: the refresh is 15 minutes away.
        let k = p.w1_idle_ticks;
        let (mut de, mut db) = (Duration::MAX, Duration::MAX);
        for _ in 0..p.rounds {
            de = de.min(
                timed(|| {
                    for _ in 0..k {
                        w.eng.tick().unwrap();
                    }
                })
                .0,
            );
            db = db.min(
                timed(|| {
                    for _ in 0..k {
                        black_box(w.base.tick(now_ms()));
                    }
                })
                .0,
            );
        }
        r.add(
            format!("5 tick, nothing due, {} users ({} online), system clock", count(n), count(n / 4)),
            Cell::ns(ns_per(de, k), "tick"),
            Cell::ns(ns_per(db, k), "tick"),
            Target::EngineNsBelow(1000.0),
        );
        per_size.push((n, figures));
        if si + 1 == sizes.len() {
            // Where the time goes at the largest size: each operation alone.
            for (name, mix, share) in [
                ("heartbeat only", [100, 0, 0], 1),
                ("get_user (host) only", [0, 100, 0], 4),
                ("set_status only", [0, 0, 100], 4),
            ] {
                let ops = churn_ops(&w, p.w1_ops / share, mix, false, 21);
                let (e, b) = churn_measure(p, &mut w, &ops);
                r.add(
                    format!("1 breakdown: {name}, uniform, {} users", count(n)),
                    Cell::rate(e, "op"),
                    Cell::rate(b, "op"),
                    Target::None,
                );
            }
            largest = Some(w);
        }
    }
    let (n0, f0) = per_size[0];
    let (n1, f1) = *per_size.last().expect("sizes");
    for (zi, dist) in ["uniform", "Zipf(0.99)"].into_iter().enumerate() {
        r.add(
            format!("1 flatness, {dist}: cost per op at {} ÷ at {} users", count(n1), count(n0)),
            Cell::factor(f1[zi].0 / f0[zi].0),
            Cell::factor(f1[zi].1 / f0[zi].1),
            Target::EngineFactorAtMost(1.5),
        );
    }
    largest.expect("at least one size")
}

// ----- 4. queries -----

pub(super) fn w4_queries(p: &Params, r: &mut Report, mut w: Churn) {
    let n = w.n;
    let channels = p.w4_channels;
    let m = p.w4_members.min(n);
    progress(&format!("4: adding {} channels of {m} members to the {} users", count(channels), count(n)));
    let mut rng = Rng::new(41);
    let mut perm: Vec<u32> = (0..n as u32).collect();
    let now = now_ms();
    for k in 0..channels {
        let cid = format!("team:c{k:06}");
        let members: Vec<String> =
            rng.distinct(&mut perm, m).iter().map(|&u| w.ids[u as usize].clone()).collect();
        w.base.create_channel(&cid);
        for id in &members {
            w.base.add_member(&cid, id, now);
        }
        w.eng.upsert_channel(&ChannelPatch { cid, members, ..Default::default() }).expect("upsert_channel");
    }
    check(w.eng.counts().channels == channels, || format!("channels {:?}", w.eng.counts()));
    const Q: usize = 64;
    let user_sets: Vec<Vec<u32>> = (0..Q).map(|_| rng.distinct(&mut perm, 100.min(n)).to_vec()).collect();
    let member_sets: Vec<Vec<u32>> = (0..Q).map(|_| rng.distinct(&mut perm, 3).to_vec()).collect();
    let quote =
        |set: &[u32]| set.iter().map(|&u| format!("\"{}\"", w.ids[u as usize])).collect::<Vec<_>>().join(",");
    let user_json: Vec<String> = user_sets
        .iter()
        .map(|s| {
            format!(
                r#"{{"filter_conditions":{{"id":{{"$in":[{}]}}}},"sort":[{{"field":"last_active","direction":-1}}],"limit":100}}"#,
                quote(s)
            )
        })
        .collect();
    let member_json: Vec<String> = member_sets
        .iter()
        .map(|s| format!(r#"{{"filter_conditions":{{"members":{{"$in":[{}]}}}}}}"#, quote(s)))
        .collect();
    let ids_of = |sets: &[Vec<u32>]| -> Vec<Vec<&str>> {
        sets.iter().map(|s| s.iter().map(|&u| w.ids[u as usize].as_str()).collect()).collect()
    };
    let (user_ids, member_ids) = (ids_of(&user_sets), ids_of(&member_sets));

    // Sanity: both sides answer the same users (users connected within the same
    // millisecond may sort differently in the two worlds), the engine's sorted by
    // last_active descending with missing values last.
    for i in 0..4.min(Q) {
        let v = w.eng.query_users(HOST, &user_json[i]).expect("query_users").to_value();
        let users = v["users"].as_array().expect("users array");
        let b = w.base.query_users(&user_ids[i], 100);
        let mut engine_ids: Vec<&str> = users.iter().filter_map(|u| u["id"].as_str()).collect();
        let mut base_ids: Vec<&str> = b.iter().map(|u| &*u.id).collect();
        engine_ids.sort_unstable();
        base_ids.sort_unstable();
        let seen: Vec<Option<&str>> = users.iter().map(|u| u["last_active"].as_str()).collect();
        let sorted = seen.windows(2).all(|p| match (p[0], p[1]) {
            (Some(a), Some(b)) => a >= b,
            (None, Some(_)) => false,
            _ => true,
        });
        check(users.len() == b.len() && engine_ids == base_ids && sorted, || {
            format!("query_users: engine {} rows, baseline {}, sorted {sorted}", users.len(), b.len())
        });
        let v = w.eng.query_channels(HOST, &member_json[i]).expect("query_channels").to_value();
        let chans = v["channels"].as_array().expect("channels array");
        let b = w.base.query_channels(&member_ids[i], 30);
        check(
            !chans.is_empty()
                && chans.len() == b.len()
                && chans.iter().zip(&b).all(|(e, b)| {
                    e["channel"]["cid"] == *b.cid
                        && e["members"].as_array().map(Vec::len) == Some(b.members.len())
                }),
            || format!("query_channels differ: engine {} rows, baseline {}", chans.len(), b.len()),
        );
    }

    let k = p.w4_queries;
    let (mut de, mut db) = (Duration::MAX, Duration::MAX);
    for _ in 0..p.rounds {
        let (d, _) = timed(|| {
            for i in 0..k {
                black_box(w.eng.query_users(HOST, &user_json[i % Q]).expect("query").to_value());
            }
        });
        de = de.min(d);
        let (d, _) = timed(|| {
            for i in 0..k {
                black_box(w.base.query_users(&user_ids[i % Q], 100));
            }
        });
        db = db.min(d);
    }
    r.add(
        format!("4 query_users id $in 100 ids, sort last_active desc, limit 100 ({} users)", count(n)),
        Cell::rate(ns_per(de, k), "query"),
        Cell::rate(ns_per(db, k), "query"),
        Target::None,
    );
    let (mut de, mut db) = (Duration::MAX, Duration::MAX);
    for _ in 0..p.rounds {
        let (d, _) = timed(|| {
            for i in 0..k {
                black_box(w.eng.query_channels(HOST, &member_json[i % Q]).expect("query").to_value());
            }
        });
        de = de.min(d);
        let (d, _) = timed(|| {
            for i in 0..k {
                black_box(w.base.query_channels(&member_ids[i % Q], 30));
            }
        });
        db = db.min(d);
    }
    r.add(
        format!(
            "4 query_channels members $in 3 ids ({} channels x {m} members, {} users)",
            count(channels),
            count(n)
        ),
        Cell::rate(ns_per(de, k), "query"),
        Cell::rate(ns_per(db, k), "query"),
        Target::None,
    );
    w4_budget(p, r, &w, &mut rng, &mut perm);
}

/// The costliest queries the default `query_budget` lets through, and what refusing the
/// ones it stops costs. A passing query must take a few milliseconds at most, since the
/// engine is locked while it runs; a refused one is parsed outside the lock and stopped
/// before any record is examined. The baseline answers the 1000 ids without a filter.
fn w4_budget(p: &Params, r: &mut Report, w: &Churn, rng: &mut Rng, perm: &mut [u32]) {
    let n = w.n;
    let ids: Vec<&str> =
        rng.distinct(perm, 1000.min(n)).iter().map(|&u| w.ids[u as usize].as_str()).collect();
    let quoted = serde_json::to_string(&ids).expect("ids");
    // Conditions on a field every user has, so each one is evaluated in full.
    let nor: Vec<String> =
        (0..40).map(|i| format!(r#"{{"created_at":{{"$lt":"2000-01-01T00:00:{i:02}Z"}}}}"#)).collect();
    let sort: Vec<String> =
        ["last_active", "created_at", "updated_at", "status", "online", "name", "level", "id"]
            .iter()
            .map(|f| format!(r#"{{"field":"{f}","direction":-1}}"#))
            .collect();
    let widest = format!(
        r#"{{"filter_conditions":{{"id":{{"$in":{quoted}}},"$nor":[{}]}},"sort":[{}],"limit":100}}"#,
        nor.join(","),
        sort.join(",")
    );
    let members = serde_json::to_string(&ids[..100.min(ids.len())]).expect("ids");
    let by_members = format!(r#"{{"filter_conditions":{{"members":{{"$in":{members}}}}},"limit":100}}"#);
    let ors: Vec<String> = (0..5000).map(|i| format!(r#"{{"name":{{"$autocomplete":"p{i}"}}}}"#)).collect();
    let refused = [
        format!(r#"{{"filter_conditions":{{"$or":[{}]}}}}"#, ors.join(",")),
        r#"{"filter_conditions":{"online":true}}"#.to_owned(),
    ];
    let base_ids: Vec<&str> = ids.clone();
    let time_best = |f: &dyn Fn()| -> f64 {
        (0..p.rounds.max(3)).map(|_| timed(f).0.as_nanos() as f64).fold(f64::MAX, f64::min)
    };
    let baseline = time_best(&|| {
        black_box(w.base.query_users(&base_ids, 100));
    });
    let rows: [(&str, &dyn Fn()); 4] = [
        ("id $in 1000 ids, $nor of 40 conditions, 8 sort keys (passes)", &|| {
            black_box(w.eng.query_users(HOST, &widest).expect("widest query passes"));
        }),
        ("query_channels members $in 100 ids (passes)", &|| {
            black_box(w.eng.query_channels(HOST, &by_members).expect("members query passes"));
        }),
        ("$or of 5000 $autocomplete (refused: LIMIT)", &|| {
            let answer = w.eng.query_users(HOST, &refused[0]);
            check(answer.as_ref().err().map(|e| e.kind()) == Some(presence::ErrorKind::Limit), || {
                "refused".into()
            });
        }),
        ("full scan of every user (refused: LIMIT past 25k users)", &|| {
            // 4 units per user: the record, one condition, the default sort key.
            let refused_here = n as u64 * 4 > presence::QueryBudget::default().max_work;
            let answer = w.eng.query_users(HOST, &refused[1]);
            check(
                answer.as_ref().err().map(|e| e.kind()) == refused_here.then_some(presence::ErrorKind::Limit),
                || format!("full scan of {n} users: {:?}", answer.as_ref().err()),
            );
        }),
    ];
    for (name, run) in rows {
        // A refused query's cost is parsing its JSON, outside the engine's lock.
        let target = if name.contains("passes") { Target::EngineNsBelow(5e6) } else { Target::None };
        r.add(
            format!("4 budget: {name}, {} users", count(n)),
            Cell::ns(time_best(run), "query"),
            Cell::ns(baseline, "query"),
            target,
        );
    }
}
