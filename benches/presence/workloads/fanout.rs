//! Fan-out to many queues (workload 3).
use super::*;

pub(super) const STAR_QUERY: &str = r#"{"filter_conditions":{"id":"star"},"presence":true}"#;

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

pub(super) fn w3_fanout(p: &Params, r: &mut Report) {
    for &width in &p.w3_widths {
        progress(&format!("3: fan-out to {} connections", count(width)));
        let reps = (p.w3_deliveries / width).max(4);
        let mut flips = (0usize, 0usize);
        queue_row(p, r, width, reps, &mut flips);
        listener_row(p, r, width, reps, &mut flips);
    }
}

/// Through the per-connection queues, drained outside the timed region.
fn queue_row(p: &Params, r: &mut Report, width: usize, reps: usize, flips: &mut (usize, usize)) {
    let batch = (200_000 / width).clamp(1, 1000).min(reps);
    let (eng, econns) = fanout_engine(1 << 16, width);
    let (mut base, bconns) = fanout_baseline(1 << 16, width);
    let (mut de, mut db) = (Duration::MAX, Duration::MAX);
    for _ in 0..p.rounds {
        let (mut d, mut done) = (Duration::ZERO, 0);
        while done < reps {
            let b = batch.min(reps - done);
            d += fanout_engine_status(&eng, b, &mut flips.0);
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
            d += fanout_baseline_status(&mut base, b, &mut flips.1);
            for &c in &bconns {
                let got = base.poll(c, usize::MAX).len();
                check(got == b, || format!("baseline watcher got {got} events, expected {b}"));
            }
            done += b;
        }
        db = db.min(d);
    }
    let deliveries = reps * width;
    r.add(
        format!("3 fan-out: one status change to {} subscribers, into queues", count(width)),
        Cell::ns(ns_per(de, deliveries), "delivery"),
        Cell::ns(ns_per(db, deliveries), "delivery"),
        Target::EngineNsBelow(50.0),
    );
}

/// Through a delivery listener, queues disabled.
fn listener_row(p: &Params, r: &mut Report, width: usize, reps: usize, flips: &mut (usize, usize)) {
    use std::cell::Cell as StdCell;
    use std::rc::Rc;
    use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
    use std::sync::Arc;
    let deliveries = reps * width;
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
        de = de.min(fanout_engine_status(&eng, reps, &mut flips.0));
        let got = seen.load(Relaxed) as usize;
        check(got == deliveries, || format!("listener saw {got} deliveries, expected {deliveries}"));
        bseen.set(0);
        db = db.min(fanout_baseline_status(&mut base, reps, &mut flips.1));
        check(bseen.get() as usize == deliveries, || format!("baseline listener saw {}", bseen.get()));
    }
    r.add(
        format!("3 fan-out: one status change to {} subscribers, via a delivery listener", count(width)),
        Cell::ns(ns_per(de, deliveries), "delivery"),
        Cell::ns(ns_per(db, deliveries), "delivery"),
        Target::None,
    );
}
