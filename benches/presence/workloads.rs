//! The workloads, each measured for the engine and for the baseline in
//! the same run. Every timed region does only the operation under test: op sequences,
//! ids, patches and query strings are prepared before it, and queue draining happens
//! outside it. Sanity checks (never timing) run in both modes.
use crate::baseline::{Baseline, Millis};
use crate::report::{count, Cell, Report, Target};
use crate::rng::{Rng, Scatter, Zipf};
use crate::{alloc, Params};
use presence::channel::ChannelPatch;
use presence::Counts;
use presence::{Clock, Config, ConnectionId, Engine, UserPatch};
use std::hint::black_box;
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Manual clocks start here (2023-11-14).
pub(crate) const T0: Millis = 1_700_000_000_000;
pub(crate) const STATUSES: [&str; 4] = ["in lobby", "in match", "away", "busy"];
const HOST: ConnectionId = ConnectionId::HOST;

/// Runs the selected workloads (`p.only`, all when empty) in an order that keeps at most
/// one million-user world alive at a time.
pub fn run_all(p: &Params, r: &mut Report) {
    let on = |w: u8| p.only.is_empty() || p.only.contains(&w);
    if on(1) {
        let big = w1_heartbeat_churn(p, r);
        if on(4) {
            w4_queries(p, r, big);
        }
    } else if on(4) {
        let n = *p.w1_sizes.last().expect("sizes");
        progress(&format!("4: building {} users, {} online", count(n), count(n / 4)));
        w4_queries(p, r, build_churn(n));
    }
    if on(5) {
        w5_timers(p, r);
    }
    if on(2) {
        w2_storm(p, r);
    }
    if on(3) {
        w3_fanout(p, r);
    }
    if on(6) {
        w6_memory(p, r);
    }
    if on(7) {
        w7_c_boundary(p, r);
    }
    if on(8) {
        crate::typed_c::w8_typed_c(p, r);
    }
    if on(9) {
        w9_teardown(p, r);
    }
    if on(10) {
        crate::dispatch::w10_dispatch(p, r);
    }
}

// ----- helpers -----

fn now_ms() -> Millis {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock after 1970").as_millis() as Millis
}

pub(crate) fn ns_per(d: Duration, n: usize) -> f64 {
    d.as_nanos() as f64 / n.max(1) as f64
}

pub(crate) fn timed<T>(f: impl FnOnce() -> T) -> (Duration, T) {
    let t = Instant::now();
    let v = f();
    (t.elapsed(), v)
}

pub(crate) fn progress(msg: &str) {
    static START: OnceLock<Instant> = OnceLock::new();
    let start = START.get_or_init(Instant::now);
    eprintln!("[{:>6.1} s] {msg}", start.elapsed().as_secs_f64());
}

/// A sanity check (both modes): the workload did what it claims.
#[track_caller]
pub(crate) fn check(ok: bool, what: impl FnOnce() -> String) {
    if !ok {
        panic!("presence bench sanity check failed: {}", what());
    }
}

pub(crate) fn user_id(i: usize) -> String {
    format!("u{i:07}")
}

// ----- 1. heartbeat churn -----

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

fn build_churn(n: usize) -> Churn {
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
                black_box(w.eng.get_user(HOST, &w.ids[k]).expect("get_user"));
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

fn w1_heartbeat_churn(p: &Params, r: &mut Report) -> Churn {
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
        let v = w.eng.get_user(HOST, any).expect("get_user");
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

fn w4_queries(p: &Params, r: &mut Report, mut w: Churn) {
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
        let v = w.eng.query_users(HOST, &user_json[i]).expect("query_users");
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
        let v = w.eng.query_channels(HOST, &member_json[i]).expect("query_channels");
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
                black_box(w.eng.query_users(HOST, &user_json[i % Q]).expect("query"));
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
                black_box(w.eng.query_channels(HOST, &member_json[i % Q]).expect("query"));
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
            black_box(w.eng.query_users_answer(HOST, &widest).expect("widest query passes"));
        }),
        ("query_channels members $in 100 ids (passes)", &|| {
            black_box(w.eng.query_channels_answer(HOST, &by_members).expect("members query passes"));
        }),
        ("$or of 5000 $autocomplete (refused: LIMIT)", &|| {
            let answer = w.eng.query_users_answer(HOST, &refused[0]);
            check(answer.as_ref().err().map(|e| e.kind()) == Some(presence::ErrorKind::Limit), || {
                "refused".into()
            });
        }),
        ("full scan of every user (refused: LIMIT past 25k users)", &|| {
            // 4 units per user: the record, one condition, the default sort key.
            let refused_here = n as u64 * 4 > presence::QueryBudget::default().max_work;
            let answer = w.eng.query_users_answer(HOST, &refused[1]);
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

// ----- 5. timers -----

fn w5_timers(p: &Params, r: &mut Report) {
    let n = p.w5_online;
    // Connections are spread evenly over one refresh period, so advancing the clock by a
    // hundredth of the period makes exactly 1% of the users' refresh timers due.
    const PERIOD: Millis = 1_000_000;
    progress(&format!("5: connecting {} users over one refresh period", count(n)));
    let config = Config {
        clock: Clock::Manual,
        start_time_ms: T0,
        last_active_refresh_ms: PERIOD as u64,
        ..Config::default()
    };
    let eng = Engine::new(config).expect("engine");
    let mut base = Baseline::new(PERIOD, 1024);
    let at = |i: usize| T0 + (i as Millis * PERIOD) / n as Millis;
    for i in 0..n {
        let id = user_id(i);
        eng.set_time(at(i)).expect("set_time");
        eng.connect(&UserPatch::id(id.as_str())).expect("connect");
        base.connect(&id, at(i));
    }
    let now = at(n - 1);
    let k = p.w5_idle_ticks;
    let (mut de, mut db) = (Duration::MAX, Duration::MAX);
    for _ in 0..p.rounds {
        de = de.min(
            timed(|| {
                for _ in 0..k {
                    eng.tick().unwrap();
                }
            })
            .0,
        );
        db = db.min(
            timed(|| {
                for _ in 0..k {
                    black_box(base.tick(black_box(now)));
                }
            })
            .0,
        );
    }
    r.add(
        format!("5 tick, nothing due, {} online, manual clock", count(n)),
        Cell::ns(ns_per(de, k), "tick"),
        Cell::ns(ns_per(db, k), "tick"),
        Target::EngineNsBelow(1000.0),
    );

    let (mut de, mut db, mut due) = (Duration::ZERO, Duration::ZERO, 0);
    let mut first_step = 0;
    for step in 1..=p.w5_steps as Millis {
        let t = T0 + PERIOD + step * PERIOD / 100 - 1;
        if step == 1 {
            first_step = t;
        }
        eng.set_time(t).expect("set_time");
        de += timed(|| eng.tick().unwrap()).0;
        let (d, n_due) = timed(|| base.tick(t));
        db += d;
        due += n_due;
    }
    let steps = p.w5_steps;
    check(due.abs_diff(steps * n / 100) <= steps + 1 && due > 0, || {
        format!("{due} timers due in {steps} steps of 1% of {n}")
    });
    // The engine refreshed the first user at the first step and left the last alone.
    let first = eng.user(&user_id(0)).expect("user").last_active;
    let last = eng.user(&user_id(n - 1)).expect("user").last_active;
    check(first == Some(first_step) && last == Some(at(n - 1)), || {
        format!("last_active after refresh: first {first:?}, last {last:?}")
    });
    r.add(
        format!(
            "5 tick, 1% due ({} last_active refreshes per tick), {} online",
            count(due / steps),
            count(n)
        ),
        Cell::ns(ns_per(de, steps), "tick"),
        Cell::ns(ns_per(db, steps), "tick"),
        Target::None,
    );
    r.add(
        format!("5 tick, 1% due, per due item, {} online", count(n)),
        Cell::ns(ns_per(de, due), "item"),
        Cell::ns(ns_per(db, due), "item"),
        Target::None,
    );
}

// ----- 2. login/logout storm -----

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
            eng.watch_channel(conn, &cids[ch], true).expect("watch");
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

fn w2_storm(p: &Params, r: &mut Report) {
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
                eng.watch_channel(conn, &cids[ch], true).expect("watch");
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

// ----- 3. fan-out -----

const STAR_QUERY: &str = r#"{"filter_conditions":{"id":"star"},"presence":true}"#;

fn fanout_engine(capacity: u32, width: usize) -> (Engine, Vec<ConnectionId>) {
    let eng = Engine::new(Config {
        clock: Clock::Manual,
        start_time_ms: T0,
        connection_queue_capacity: capacity,
        ..Config::default()
    })
    .expect("engine");
    eng.connect(&UserPatch::id("star")).expect("connect");
    let conns = (0..width)
        .map(|i| {
            let c = eng.connect(&UserPatch::id(format!("w{i:06}"))).expect("connect");
            eng.query_users(c, STAR_QUERY).expect("subscribe");
            c
        })
        .collect();
    (eng, conns)
}

pub(crate) fn fanout_baseline(capacity: usize, width: usize) -> (Baseline, Vec<u64>) {
    let mut base = Baseline::new(900_000, capacity);
    base.connect("star", T0);
    let conns = (0..width)
        .map(|i| {
            let c = base.connect(&format!("w{i:06}"), T0);
            base.subscribe_direct(c, "star");
            c
        })
        .collect();
    (base, conns)
}

/// `reps` status changes of "star" (each a change: the status alternates).
#[inline(never)]
fn fanout_engine_status(eng: &Engine, reps: usize, flip: &mut usize) -> Duration {
    let t = Instant::now();
    for _ in 0..reps {
        *flip += 1;
        eng.set_status("star", Some(STATUSES[*flip & 1])).expect("set_status");
    }
    t.elapsed()
}

#[inline(never)]
pub(crate) fn fanout_baseline_status(base: &mut Baseline, reps: usize, flip: &mut usize) -> Duration {
    let t = Instant::now();
    for _ in 0..reps {
        *flip += 1;
        base.set_status("star", Some(STATUSES[*flip & 1]), T0);
    }
    t.elapsed()
}

fn w3_fanout(p: &Params, r: &mut Report) {
    use std::cell::Cell as StdCell;
    use std::rc::Rc;
    use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
    use std::sync::Arc;
    for &width in &p.w3_widths {
        progress(&format!("3: fan-out to {} connections", count(width)));
        let reps = (p.w3_deliveries / width).max(4);
        let batch = (200_000 / width).clamp(1, 1000).min(reps);

        // Through the per-connection queues, drained outside the timed region.
        let (eng, econns) = fanout_engine(1 << 16, width);
        let (mut base, bconns) = fanout_baseline(1 << 16, width);
        let (mut ke, mut kb) = (0usize, 0usize);
        let (mut de, mut db) = (Duration::MAX, Duration::MAX);
        for _ in 0..p.rounds {
            let (mut d, mut done) = (Duration::ZERO, 0);
            while done < reps {
                let b = batch.min(reps - done);
                d += fanout_engine_status(&eng, b, &mut ke);
                for &c in &econns {
                    let got = eng.poll_events(c, usize::MAX).expect("poll").len();
                    check(got == b, || format!("watcher got {got} events, expected {b}"));
                }
                done += b;
            }
            de = de.min(d);
            let (mut d, mut done) = (Duration::ZERO, 0);
            while done < reps {
                let b = batch.min(reps - done);
                d += fanout_baseline_status(&mut base, b, &mut kb);
                for &c in &bconns {
                    let got = base.poll(c, usize::MAX).len();
                    check(got == b, || format!("baseline watcher got {got} events, expected {b}"));
                }
                done += b;
            }
            db = db.min(d);
        }
        drop((eng, econns, base, bconns));
        let deliveries = reps * width;
        r.add(
            format!("3 fan-out: one status change to {} subscribers, into queues", count(width)),
            Cell::ns(ns_per(de, deliveries), "delivery"),
            Cell::ns(ns_per(db, deliveries), "delivery"),
            Target::EngineNsBelow(50.0),
        );

        // Through a delivery listener, queues disabled.
        let (eng, _econns) = fanout_engine(0, width);
        let seen = Arc::new(AtomicU64::new(0));
        let counter = seen.clone();
        eng.add_delivery_listener(move |d| {
            counter.fetch_add(1, Relaxed);
            black_box(d);
        });
        let (mut base, _bconns) = fanout_baseline(0, width);
        let bseen = Rc::new(StdCell::new(0u64));
        let bcounter = bseen.clone();
        base.add_delivery_listener(move |d| {
            bcounter.set(bcounter.get() + 1);
            black_box(d);
        });
        let (mut de, mut db) = (Duration::MAX, Duration::MAX);
        for _ in 0..p.rounds {
            seen.store(0, Relaxed);
            de = de.min(fanout_engine_status(&eng, reps, &mut ke));
            let got = seen.load(Relaxed) as usize;
            check(got == deliveries, || format!("listener saw {got} deliveries, expected {deliveries}"));
            bseen.set(0);
            db = db.min(fanout_baseline_status(&mut base, reps, &mut kb));
            check(bseen.get() as usize == deliveries, || format!("baseline listener saw {}", bseen.get()));
        }
        r.add(
            format!("3 fan-out: one status change to {} subscribers, via a delivery listener", count(width)),
            Cell::ns(ns_per(de, deliveries), "delivery"),
            Cell::ns(ns_per(db, deliveries), "delivery"),
            Target::None,
        );
    }
}

// ----- 6. memory -----

fn w6_memory(p: &Params, r: &mut Report) {
    let n = p.w6_offline;
    progress(&format!("6: memory of {} offline users", count(n)));
    let ids: Vec<String> = (0..n).map(user_id).collect();
    let eng = Engine::new(Config::default()).expect("engine");
    let window = alloc::Window::start();
    for id in &ids {
        eng.upsert_user(&UserPatch::id(id.as_str())).expect("upsert_user");
    }
    let (eb, ek) = window.stop();
    check(eng.counts().users == n, || "users registered".into());
    drop(eng);
    let mut base = Baseline::new(900_000, 1024);
    let window = alloc::Window::start();
    for id in &ids {
        base.register(id, T0);
    }
    let (bb, bk) = window.stop();
    drop(base);
    check(eb > 0 && bb > 0, || format!("bytes {eb} {bb}"));
    let per = |x: i64| x as f64 / n as f64;
    r.add(
        format!("6 memory per registered offline user ({} users, 8-byte ids)", count(n)),
        Cell::bytes(per(eb), per(ek), "user"),
        Cell::bytes(per(bb), per(bk), "user"),
        Target::EngineBytesBelow(200.0),
    );

    let n = p.w6_online;
    let k = p.w6_memberships;
    let channels = (n / 10).max(k);
    progress(&format!("6: memory of {} online users in {k} of {} channels each", count(n), count(channels)));
    let ids: Vec<String> = (0..n).map(user_id).collect();
    let cids: Vec<String> = (0..channels).map(|c| format!("team:m{c:06}")).collect();
    let mut rng = Rng::new(6);
    let mut perm: Vec<u32> = (0..channels as u32).collect();
    let mut members: Vec<Vec<String>> = vec![Vec::new(); channels];
    for id in &ids {
        for &ch in rng.distinct(&mut perm, k) {
            members[ch as usize].push(id.clone());
        }
    }
    let eng = Engine::new(Config::default()).expect("engine");
    for cid in &cids {
        eng.upsert_channel(&ChannelPatch { cid: cid.clone(), ..Default::default() }).expect("upsert_channel");
    }
    let mut conns = Vec::with_capacity(n);
    let window = alloc::Window::start();
    for (cid, m) in cids.iter().zip(&members) {
        eng.add_members(cid, m).expect("add_members");
    }
    let (emb, emk) = window.stop();
    let window = alloc::Window::start();
    for id in &ids {
        conns.push(eng.connect(&UserPatch::id(id.as_str())).expect("connect"));
    }
    let (ecb, eck) = window.stop();
    let (eb, ek) = (emb + ecb, emk + eck);
    check(eng.counts() == Counts { users: n, connections: n, channels }, || {
        format!("online world counts {:?}", eng.counts())
    });
    drop(eng);
    let mut base = Baseline::new(900_000, 1024);
    for cid in &cids {
        base.create_channel(cid);
    }
    let mut bconns = Vec::with_capacity(n);
    let window = alloc::Window::start();
    for (cid, m) in cids.iter().zip(&members) {
        for id in m {
            base.add_member(cid, id, T0);
        }
    }
    let (bmb, bmk) = window.stop();
    let window = alloc::Window::start();
    for id in &ids {
        bconns.push(base.connect(id, T0));
    }
    let (bcb, bck) = window.stop();
    let (bb, bk) = (bmb + bcb, bmk + bck);
    drop(base);
    let per = |x: i64| x as f64 / n as f64;
    progress(&format!(
        "6: per online user, registering + {k} memberships: engine {:.0} B ({:.1} allocs), baseline {:.0} B ({:.1}); connecting: engine {:.0} B ({:.1}), baseline {:.0} B ({:.1})",
        per(emb), per(emk), per(bmb), per(bmk), per(ecb), per(eck), per(bcb), per(bck)
    ));
    r.add(
        format!(
            "6 memory per online user (1 connection, {k} memberships; {} users, {} channels)",
            count(n),
            count(channels)
        ),
        Cell::bytes(per(eb), per(ek), "user"),
        Cell::bytes(per(bb), per(bk), "user"),
        Target::None,
    );
}

// ----- 7. the C boundary -----

fn w7_c_boundary(p: &Params, r: &mut Report) {
    use presence::ffi::{
        presence_connect, presence_engine_free, presence_engine_new, presence_heartbeat,
        presence_poll_events, presence_query_users, presence_set_status, presence_string_free,
        PresenceConnectionId, PresenceEngine, PresenceResult,
    };
    use std::ffi::{c_char, CStr, CString};
    const OK: PresenceResult = PresenceResult::PRESENCE_OK;
    let n = p.w7_online;
    progress(&format!("7: C boundary, {} connections", count(n)));
    let config = r#"{"clock":"manual","start_time_ms":1700000000000,"connection_queue_capacity":4096}"#;
    let cconfig = CString::new(config).expect("config");
    let mut ce: *mut PresenceEngine = std::ptr::null_mut();
    // SAFETY: valid C string and out-pointer.
    check(unsafe { presence_engine_new(cconfig.as_ptr(), &mut ce) } == OK, || "presence_engine_new".into());
    let eng = Engine::from_json(Some(config)).expect("engine");
    let connect_c = |json: &str| -> PresenceConnectionId {
        let json = CString::new(json).expect("json");
        let mut conn: PresenceConnectionId = 0;
        // SAFETY: live engine, valid C string, valid out-pointer.
        let rc = unsafe { presence_connect(ce, json.as_ptr(), &mut conn) };
        check(rc == OK, || format!("presence_connect: {rc:?}"));
        conn
    };
    let (mut cconns, mut rconns) = (Vec::new(), Vec::new());
    for i in 0..n {
        let json = format!(r#"{{"id":"{}"}}"#, user_id(i));
        cconns.push(connect_c(&json));
        rconns.push(eng.connect_json(&json).expect("connect"));
    }
    let mut rng = Rng::new(7);
    let keys: Vec<u32> = (0..p.w7_heartbeats).map(|_| rng.below(n) as u32).collect();
    // Called through a function pointer, as a C host calls into the shared library.
    type Heartbeat = unsafe extern "C" fn(*mut PresenceEngine, PresenceConnectionId) -> PresenceResult;
    let heartbeat: Heartbeat = black_box(presence_heartbeat as Heartbeat);
    let (mut dc, mut dr) = (Duration::MAX, Duration::MAX);
    let mut failures = 0usize;
    for _ in 0..p.rounds {
        let (d, f) = timed(|| {
            let mut f = 0;
            for &k in &keys {
                // SAFETY: live engine.
                if unsafe { heartbeat(ce, cconns[k as usize]) } != OK {
                    f += 1;
                }
            }
            f
        });
        dc = dc.min(d);
        failures += f;
        let (d, f) = timed(|| {
            let mut f = 0;
            for &k in &keys {
                if eng.heartbeat(rconns[k as usize]).is_err() {
                    f += 1;
                }
            }
            f
        });
        dr = dr.min(d);
        failures += f;
    }
    check(failures == 0, || format!("{failures} heartbeats failed"));
    r.add(
        format!("7 heartbeat: presence_heartbeat (C ABI) vs Engine::heartbeat, {} connections", count(n)),
        Cell::ns(ns_per(dc, keys.len()), "call"),
        Cell::ns(ns_per(dr, keys.len()), "call"),
        Target::None,
    );

    // A watcher subscribed to "star" on each engine; 1000 status changes fill its queue.
    const EVENTS: usize = 1000;
    connect_c(r#"{"id":"star"}"#);
    let cwatcher = connect_c(r#"{"id":"watcher"}"#);
    let query = CString::new(STAR_QUERY).expect("query");
    let mut out: *mut c_char = std::ptr::null_mut();
    // SAFETY: live engine, valid strings and out-pointer; the answer is freed once.
    unsafe {
        check(presence_query_users(ce, cwatcher, query.as_ptr(), &mut out) == OK, || {
            "presence_query_users".into()
        });
        presence_string_free(out);
    }
    eng.connect_json(r#"{"id":"star"}"#).expect("connect");
    let rwatcher = eng.connect_json(r#"{"id":"watcher"}"#).expect("connect");
    eng.query_users(rwatcher, STAR_QUERY).expect("subscribe");
    let star = CString::new("star").expect("id");
    let statuses: Vec<CString> = STATUSES.iter().map(|s| CString::new(*s).expect("status")).collect();
    let mut flips = 0usize;
    let mut fill = |eng: &Engine| {
        for _ in 0..EVENTS {
            flips += 1;
            // SAFETY: live engine, valid strings.
            let rc = unsafe { presence_set_status(ce, star.as_ptr(), statuses[flips & 1].as_ptr()) };
            check(rc == OK, || format!("presence_set_status: {rc:?}"));
            eng.set_status("star", Some(STATUSES[flips & 1])).expect("set_status");
        }
    };
    let poll_c = |max: u32| -> usize {
        let mut out: *mut c_char = std::ptr::null_mut();
        // SAFETY: live engine, valid out-pointer; the answer is freed once, below.
        let rc = unsafe { presence_poll_events(ce, cwatcher, max, &mut out) };
        check(rc == OK, || format!("presence_poll_events: {rc:?}"));
        // SAFETY: a string from the library.
        let len = unsafe { CStr::from_ptr(out) }.to_bytes().len();
        unsafe { presence_string_free(out) };
        len
    };
    // Sanity: a full drain answers a JSON array of all the events, and nothing is left.
    fill(&eng);
    {
        let mut out: *mut c_char = std::ptr::null_mut();
        // SAFETY: as above.
        let rc = unsafe { presence_poll_events(ce, cwatcher, EVENTS as u32, &mut out) };
        check(rc == OK, || format!("presence_poll_events: {rc:?}"));
        let text = unsafe { CStr::from_ptr(out) }.to_str().expect("utf-8").to_owned();
        unsafe { presence_string_free(out) };
        let v: serde_json::Value = serde_json::from_str(&text).expect("JSON array");
        check(v.as_array().map(Vec::len) == Some(EVENTS), || {
            format!("polled {} events", v.as_array().map_or(0, Vec::len))
        });
        check(poll_c(10) == 2, || "queue not empty after draining".into());
        let got = eng.poll_events(rwatcher, EVENTS).expect("poll").len();
        check(got == EVENTS, || format!("Rust poll got {got}"));
    }
    let mut best = [Duration::MAX; 5];
    for _ in 0..p.w7_poll_rounds {
        let mut measure = |slot: usize, f: &mut dyn FnMut()| {
            fill(&eng);
            let (d, _) = timed(&mut *f);
            best[slot] = best[slot].min(d);
            // Leave nothing behind for the next variant.
            poll_c(u32::MAX);
            eng.poll_events(rwatcher, usize::MAX).expect("poll");
        };
        measure(0, &mut || {
            black_box(poll_c(EVENTS as u32));
        });
        measure(1, &mut || {
            for _ in 0..EVENTS {
                black_box(poll_c(1));
            }
        });
        measure(2, &mut || {
            black_box(eng.poll_events(rwatcher, EVENTS).expect("poll"));
        });
        measure(3, &mut || {
            for _ in 0..EVENTS {
                black_box(eng.poll_events(rwatcher, 1).expect("poll"));
            }
        });
        measure(4, &mut || {
            for d in eng.poll_events(rwatcher, EVENTS).expect("poll") {
                black_box(d.to_json());
            }
        });
    }
    let per = |slot: usize| ns_per(best[slot], EVENTS);
    r.add(
        "7 drain 1000 events: one presence_poll_events(max=1000) vs Engine::poll_events(1000)",
        Cell::ns(per(0), "event"),
        Cell::ns(per(2), "event"),
        Target::None,
    );
    r.add(
        "7 drain 1000 events: 1000 x presence_poll_events(max=1) vs 1000 x Engine::poll_events(1)",
        Cell::ns(per(1), "event"),
        Cell::ns(per(3), "event"),
        Target::None,
    );
    r.add(
        "7 drain 1000 events: presence_poll_events(max=1000) vs Engine::poll_events(1000) + Delivery::to_json",
        Cell::ns(per(0), "event"),
        Cell::ns(per(4), "event"),
        Target::None,
    );
    // SAFETY: the engine is not used afterwards.
    unsafe { presence_engine_free(ce) };
}

// ----- 9. teardown of many channels -----

fn shared_channel(cid: &str) -> ChannelPatch {
    ChannelPatch { cid: cid.to_owned(), members: vec!["shared".to_owned()], ..Default::default() }
}

/// N channels `team:t0..` sharing the member `shared`, and `watcher`'s connection watching
/// every one of them (with presence).
fn teardown_world(n: usize) -> (Engine, ConnectionId, Vec<String>) {
    let config = r#"{"clock":"manual","start_time_ms":1700000000000,"connection_queue_capacity":0}"#;
    let eng = Engine::from_json(Some(config)).expect("engine");
    let cids: Vec<String> = (0..n).map(|i| format!("team:t{i}")).collect();
    let watcher = eng.connect(&UserPatch::id("watcher")).expect("connect");
    for cid in &cids {
        eng.upsert_channel(&shared_channel(cid)).expect("upsert_channel");
        eng.watch_channel(watcher, cid, true).expect("watch");
    }
    (eng, watcher, cids)
}

/// Disconnecting one connection that watches N channels, and deleting N channels that share
/// a member: both must cost O(N). Each is measured at the smallest and the largest N; the
/// baseline disconnects the same watcher, and for deletion the baseline column is the
/// engine creating the same channels (a plainly linear operation, for scale).
fn w9_teardown(p: &Params, r: &mut Report) {
    let mut per_size = Vec::new();
    for &n in &p.w9_sizes {
        progress(&format!("9: teardown of {} channels", count(n)));
        let (mut disconnect, mut base_disconnect, mut delete, mut create) =
            (f64::MAX, f64::MAX, f64::MAX, f64::MAX);
        for _ in 0..p.rounds {
            let (eng, watcher, cids) = teardown_world(n);
            let (d, ()) = timed(|| eng.disconnect(watcher).expect("disconnect"));
            disconnect = disconnect.min(ns_per(d, n));
            check(eng.counts().connections == 0, || "the watcher is gone".into());
            let (d, ()) = timed(|| {
                for cid in &cids {
                    eng.delete_channel(cid).expect("delete_channel");
                }
            });
            delete = delete.min(ns_per(d, n));
            check(eng.counts().channels == 0, || "every channel deleted".into());
            let patches: Vec<ChannelPatch> = cids.iter().map(|cid| shared_channel(cid)).collect();
            let (d, ()) = timed(|| {
                for patch in &patches {
                    eng.upsert_channel(patch).expect("upsert_channel");
                }
            });
            create = create.min(ns_per(d, n));
            drop(eng);

            let mut base = Baseline::new(900_000, 0);
            let c = base.connect("watcher", T0);
            for cid in &cids {
                base.create_channel(cid);
                base.add_member(cid, "shared", T0);
                base.watch(c, cid);
            }
            let (d, ok) = timed(|| base.disconnect(c, T0));
            check(ok, || "baseline disconnect".into());
            base_disconnect = base_disconnect.min(ns_per(d, n));
        }
        r.add(
            format!("9 disconnect of one connection watching N channels (presence), N = {}", count(n)),
            Cell::ns(disconnect, "channel"),
            Cell::ns(base_disconnect, "channel"),
            Target::None,
        );
        r.add(
            format!("9 delete N channels sharing a member (baseline: create them), N = {}", count(n)),
            Cell::ns(delete, "channel"),
            Cell::ns(create, "channel"),
            Target::None,
        );
        per_size.push((n, disconnect, base_disconnect, delete, create));
    }
    if let (Some(&(n0, d0, b0, x0, c0)), Some(&(n1, d1, b1, x1, c1))) = (per_size.first(), per_size.last()) {
        r.add(
            format!("9 linearity: disconnect cost per channel at N = {} ÷ at N = {}", count(n1), count(n0)),
            Cell::factor(d1 / d0),
            Cell::factor(b1 / b0),
            Target::EngineFactorAtMost(2.0),
        );
        r.add(
            format!("9 linearity: delete cost per channel at N = {} ÷ at N = {}", count(n1), count(n0)),
            Cell::factor(x1 / x0),
            Cell::factor(c1 / c0),
            Target::EngineFactorAtMost(2.0),
        );
    }
}
