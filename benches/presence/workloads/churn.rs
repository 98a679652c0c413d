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
    pub(super) n: usize,
    pub(super) ids: Vec<String>,
    /// The user index of the i-th online user (scattered over the population).
    online_users: Vec<usize>,
    pub(super) eng: Engine,
    econns: Vec<ConnectionId>,
    pub(super) base: Baseline,
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
        idle_tick_row(p, r, &mut w);
        per_size.push((n, figures));
        if si + 1 == sizes.len() {
            breakdown_rows(p, r, &mut w);
            largest = Some(w);
        }
    }
    flatness_rows(r, &per_size);
    largest.expect("at least one size")
}

/// Ticks with nothing due (the refresh is 15 minutes away), on the system clock.
fn idle_tick_row(p: &Params, r: &mut Report, w: &mut Churn) {
    let (n, k) = (w.n, p.w1_idle_ticks);
    let (mut de, mut db) = (Duration::MAX, Duration::MAX);
    for _ in 0..p.rounds {
        de = de.min(timed(|| (0..k).for_each(|_| w.eng.tick().unwrap())).0);
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
}

/// Where the time goes at the largest size: each operation alone.
fn breakdown_rows(p: &Params, r: &mut Report, w: &mut Churn) {
    for (name, mix, share) in [
        ("heartbeat only", [100, 0, 0], 1),
        ("get_user (host) only", [0, 100, 0], 4),
        ("set_status only", [0, 0, 100], 4),
    ] {
        let ops = churn_ops(w, p.w1_ops / share, mix, false, 21);
        let (e, b) = churn_measure(p, w, &ops);
        r.add(
            format!("1 breakdown: {name}, uniform, {} users", count(w.n)),
            Cell::rate(e, "op"),
            Cell::rate(b, "op"),
            Target::None,
        );
    }
}

/// Cost per op at the largest size over the smallest, per key distribution.
fn flatness_rows(r: &mut Report, per_size: &[(usize, [(f64, f64); 2])]) {
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
}
