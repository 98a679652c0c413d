//! Workload 10: the typed Rust paths from a change to its consumer. `subscribe` receivers
//! drained on the same thread and on a second thread, a Rust delivery listener, and a
//! host listener filtered by user among 1 and among many listeners (the filter must cost
//! O(1): the row's baseline is the same listener alone, measured in the same run), and the
//! cost of adding a listener when 80,000 exist against adding the first ones.
use crate::report::{count, Cell, Report, Target};
use crate::workloads::{check, ns_per, progress, T0};
use crate::Params;
use presence::{Clock, Config, ConnectionId, Engine, ListenerFilter, UserPatch};
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Subscribers per status change in the receiver and listener rows.
const WIDTH: usize = 10;
const STATUSES: [&str; 2] = ["in lobby", "in match"];

fn engine(queue_capacity: u32) -> Engine {
    Engine::new(Config {
        clock: Clock::Manual,
        start_time_ms: T0,
        connection_queue_capacity: queue_capacity,
        ..Config::default()
    })
    .expect("engine")
}

/// An engine where `WIDTH` connections follow the presence of user "star".
fn followed_star(queue_capacity: u32) -> (Engine, Vec<ConnectionId>) {
    let eng = engine(queue_capacity);
    eng.connect(&UserPatch::id("star")).expect("connect");
    let conns = (0..WIDTH)
        .map(|i| {
            let c = eng.connect(&UserPatch::id(format!("w{i}"))).expect("connect");
            eng.query_users(c, r#"{"filter_conditions":{"id":"star"},"presence":true}"#).expect("subscribe");
            c
        })
        .collect();
    (eng, conns)
}

/// `reps` status changes of "star", alternating so each is a change.
fn flip_status(eng: &Engine, reps: usize, flip: &mut usize) {
    for _ in 0..reps {
        *flip += 1;
        eng.set_status("star", Some(STATUSES[*flip & 1])).expect("set_status");
    }
}

/// Best of `rounds` runs of `f`.
fn best(rounds: usize, mut f: impl FnMut() -> Duration) -> Duration {
    (0..rounds).map(|_| f()).min().expect("at least one round")
}

pub fn w10_dispatch(p: &Params, r: &mut Report) {
    let reps = (p.w10_deliveries / WIDTH).max(10);
    let deliveries = reps * WIDTH;
    progress(&format!("10: typed dispatch, {} deliveries", count(deliveries)));
    receivers_one_thread(p, r, reps);
    receiver_two_threads(p, r, reps);
    delivery_listener(p, r, reps);
    filtered_host_listener(p, r, reps);
    listener_adds(r);
}

/// Status changes fanned out to `WIDTH` receivers, drained on the same thread, against
/// the same through `poll_events` (the queue path the receiver replaces).
fn receivers_one_thread(p: &Params, r: &mut Report, reps: usize) {
    let batch = 100.min(reps);
    let (eng, conns) = followed_star(1 << 12);
    let receivers: Vec<_> = conns.iter().map(|&c| eng.subscribe(c).expect("subscribe")).collect();
    let (queued, qconns) = followed_star(1 << 12);
    let (mut ke, mut kq) = (0usize, 0usize);
    let deliveries = (reps / batch * batch) * WIDTH;
    let de = best(p.rounds, || {
        let t = Instant::now();
        for _ in 0..reps / batch {
            flip_status(&eng, batch, &mut ke);
            for rx in &receivers {
                let got = rx.try_iter().map(black_box).count();
                check(got == batch, || format!("receiver got {got}, expected {batch}"));
            }
        }
        t.elapsed()
    });
    let dq = best(p.rounds, || {
        let t = Instant::now();
        for _ in 0..reps / batch {
            flip_status(&queued, batch, &mut kq);
            for &c in &qconns {
                let got = queued.poll_events(c, usize::MAX).expect("poll").len();
                check(got == batch, || format!("queue got {got}, expected {batch}"));
            }
        }
        t.elapsed()
    });
    r.add(
        format!(
            "10 subscribe: status change to {WIDTH} receivers, drained on the same thread (base: poll_events)"
        ),
        Cell::ns(ns_per(de, deliveries), "delivery"),
        Cell::ns(ns_per(dq, deliveries), "delivery"),
        Target::EngineNsBelow(60.0),
    );
}

/// One producer thread changing status, one consumer thread blocked in `recv`, against a
/// bare crossbeam channel carrying the same number of values between two threads.
fn receiver_two_threads(p: &Params, r: &mut Report, reps: usize) {
    let de = best(p.rounds, || {
        let eng = engine(1 << 12);
        eng.connect(&UserPatch::id("star")).expect("connect");
        let c = eng.connect(&UserPatch::id("fan")).expect("connect");
        eng.query_users(c, r#"{"filter_conditions":{"id":"star"},"presence":true}"#).expect("subscribe");
        let rx = eng.subscribe(c).expect("subscribe");
        let backlog = rx.clone();
        let consumer = std::thread::spawn(move || rx.iter().take(reps).map(black_box).count());
        let t = Instant::now();
        let mut flip = 0;
        for _ in 0..reps {
            // A full receiver would close the connection as a slow consumer: stay below it.
            while backlog.len() > 1 << 11 {
                std::hint::spin_loop();
            }
            flip += 1;
            eng.set_status("star", Some(STATUSES[flip & 1])).expect("set_status");
        }
        let got = consumer.join().expect("consumer");
        let d = t.elapsed();
        check(got == reps, || format!("consumer got {got}, expected {reps}"));
        d
    });
    let db = best(p.rounds, || {
        let (tx, rx) = crossbeam_channel::bounded::<Arc<u64>>(1 << 12);
        let consumer = std::thread::spawn(move || rx.iter().take(reps).map(black_box).count());
        let t = Instant::now();
        for i in 0..reps {
            tx.send(Arc::new(i as u64)).expect("send");
        }
        let got = consumer.join().expect("consumer");
        check(got == reps, || format!("channel consumer got {got}"));
        t.elapsed()
    });
    r.add(
        "10 subscribe: producer thread to a consumer thread blocked in recv (base: bare channel)",
        Cell::ns(ns_per(de, reps), "delivery"),
        Cell::ns(ns_per(db, reps), "delivery"),
        Target::None,
    );
}

/// A Rust delivery listener (queues disabled) against the same changes into queues.
fn delivery_listener(p: &Params, r: &mut Report, reps: usize) {
    let (eng, _conns) = followed_star(0);
    let seen = Arc::new(AtomicU64::new(0));
    let counter = seen.clone();
    eng.add_delivery_listener(move |d| {
        counter.fetch_add(1, Relaxed);
        black_box(d);
    });
    let (queued, qconns) = followed_star(1 << 16);
    let batch = 1000.min(reps);
    let (mut ke, mut kq) = (0usize, 0usize);
    let deliveries = (reps / batch * batch) * WIDTH;
    let de = best(p.rounds, || {
        seen.store(0, Relaxed);
        let t = Instant::now();
        flip_status(&eng, reps / batch * batch, &mut ke);
        let d = t.elapsed();
        check(seen.load(Relaxed) as usize == deliveries, || "listener saw every delivery".into());
        d
    });
    let dq = best(p.rounds, || {
        let mut d = Duration::ZERO;
        for _ in 0..reps / batch {
            let t = Instant::now();
            flip_status(&queued, batch, &mut kq);
            d += t.elapsed();
            for &c in &qconns {
                queued.poll_events(c, usize::MAX).expect("poll");
            }
        }
        d
    });
    r.add(
        format!("10 Rust delivery listener: status change to {WIDTH} subscribers (base: into queues)"),
        Cell::ns(ns_per(de, deliveries), "delivery"),
        Cell::ns(ns_per(dq, deliveries), "delivery"),
        Target::EngineNsBelow(30.0),
    );
}

/// A host listener filtered to one user, called for that user's status changes, with
/// `listeners - 1` other users' listeners registered; the baseline is the same listener
/// alone.
fn filtered_host_listener(p: &Params, r: &mut Report, reps: usize) {
    let measure = |others: usize| {
        let eng = engine(0);
        eng.connect(&UserPatch::id("star")).expect("connect");
        for i in 0..others {
            eng.add_listener(ListenerFilter::user(format!("u{i}")), |_| {}).expect("listener");
        }
        let seen = Arc::new(AtomicU64::new(0));
        let counter = seen.clone();
        eng.add_listener(ListenerFilter::user("star"), move |e| {
            counter.fetch_add(1, Relaxed);
            black_box(e);
        })
        .expect("listener");
        let mut flip = 0;
        best(p.rounds, || {
            seen.store(0, Relaxed);
            let t = Instant::now();
            flip_status(&eng, reps, &mut flip);
            let d = t.elapsed();
            check(seen.load(Relaxed) as usize == reps, || "the filtered listener saw every change".into());
            d
        })
    };
    let alone = measure(0);
    let among = measure(p.w10_listeners - 1);
    r.add(
        format!(
            "10 host listener with a user filter among {} listeners (base: alone)",
            count(p.w10_listeners)
        ),
        Cell::ns(ns_per(among, reps), "change"),
        Cell::ns(ns_per(alone, reps), "change"),
        Target::RatioAtMost(1.5),
    );
}

/// Listeners registered before the last batch of adds is timed (80,000 once took 53 s when
/// every add copied the whole list).
const MANY_LISTENERS: usize = 80_000;
/// Adds timed at each end.
const ADD_BATCH: usize = 1000;

/// Adding listeners once `MANY_LISTENERS` exist, against adding the first `ADD_BATCH`
/// (the ratio is the growth from an empty registry: map depth and cache misses).
fn listener_adds(r: &mut Report) {
    let eng = engine(0);
    let add = |from: usize| {
        let t = Instant::now();
        for i in from..from + ADD_BATCH {
            let filter =
                if i % 2 == 0 { ListenerFilter::user(format!("u{i}")) } else { ListenerFilter::all() };
            eng.add_listener(filter, |_| {}).expect("listener");
        }
        t.elapsed()
    };
    let first = add(0);
    for i in ADD_BATCH..MANY_LISTENERS {
        eng.add_listener(ListenerFilter::user(format!("u{i}")), |_| {}).expect("listener");
    }
    let last = add(MANY_LISTENERS);
    r.add(
        format!(
            "10 add_listener, half of them user-filtered, with {} user-filtered listeners registered (base: the first {})",
            count(MANY_LISTENERS),
            count(ADD_BATCH)
        ),
        Cell::ns(ns_per(last, ADD_BATCH), "add"),
        Cell::ns(ns_per(first, ADD_BATCH), "add"),
        // Cheap at any count: O(log n) map inserts, far from the copy of the whole list an
        // add once made (53 s for 80,000, about 0.66 ms per add on average).
        Target::EngineNsBelow(10_000.0),
    );
}
