//! Timers (workload 5).
use super::*;

/// Connections are spread evenly over one refresh period, so advancing the clock by a
/// hundredth of the period makes exactly 1% of the users' refresh timers due.
const PERIOD: Millis = 1_000_000;

pub(super) fn w5_timers(p: &Params, r: &mut Report) {
    let n = p.w5_online;
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
    idle_tick_row(p, r, &eng, &mut base, at(n - 1), n);

    due_rows(p, r, &eng, &mut base, at, n);
}

fn idle_tick_row(p: &Params, r: &mut Report, eng: &Engine, base: &mut Baseline, now: Millis, n: usize) {
    let k = p.w5_idle_ticks;
    let (mut de, mut db) = (Duration::MAX, Duration::MAX);
    for _ in 0..p.rounds {
        de = de.min(timed(|| (0..k).for_each(|_| eng.tick().unwrap())).0);
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
}

/// Steps of 1% of a refresh period: each tick refreshes the 1% of users whose timer is due.
fn due_rows(
    p: &Params,
    r: &mut Report,
    eng: &Engine,
    base: &mut Baseline,
    at: impl Fn(usize) -> Millis,
    n: usize,
) {
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
    let first = eng.get_user(HOST, &user_id(0)).expect("user").user.last_active;
    let last = eng.get_user(HOST, &user_id(n - 1)).expect("user").user.last_active;
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
