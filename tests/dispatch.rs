//! Dispatch rules a host can notice: no call waits for another thread's callbacks, a call
//! delivers a bounded amount, listener removal waits exactly as documented, a panicking
//! listener never fails the call that caused its event, a listener sees exactly the events
//! emitted after it was added, and filters that can never match are refused.
mod common;

use common::{kind, manual_engine, Recorder, T0};
use presence::{ConnectionId, Engine, ErrorKind, ListenerFilter, EXTRA_ITEMS};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

const PATIENCE: Duration = Duration::from_secs(10);

/// A host listener on `user`'s status changes that blocks (inside the callback, on the
/// dispatching thread) until the returned sender is used, and reports when it is blocked.
fn blocking_listener(e: &Engine, user: &str) -> (mpsc::Sender<()>, mpsc::Receiver<()>) {
    let (release, released) = mpsc::channel::<()>();
    let (entered_tx, entered) = mpsc::channel::<()>();
    let released = Mutex::new(released);
    let entered_tx = Mutex::new(entered_tx);
    e.add_listener(ListenerFilter::user(user), move |_| {
        entered_tx.lock().unwrap().send(()).unwrap();
        released.lock().unwrap().recv_timeout(PATIENCE).expect("the test releases the listener");
    })
    .unwrap();
    (release, entered)
}

/// Runs `f` on a new thread and answers whether it finished within `PATIENCE`.
fn finishes(f: impl FnOnce() + Send + 'static) -> bool {
    let (done_tx, done) = mpsc::channel();
    thread::spawn(move || {
        f();
        let _ = done_tx.send(());
    });
    done.recv_timeout(PATIENCE).is_ok()
}

#[test]
fn a_call_returns_while_another_thread_runs_callbacks_and_its_events_follow_in_order() {
    let e = Arc::new(manual_engine(""));
    e.upsert_user_json(r#"{"id":"slow"}"#).unwrap();
    let (release, entered) = blocking_listener(&e, "slow");
    let seen = Recorder::attach(&e);
    let blocked = {
        let e = e.clone();
        thread::spawn(move || e.set_status("slow", Some("busy")).unwrap())
    };
    entered.recv_timeout(PATIENCE).unwrap();

    // Another thread's callbacks are running: this thread's calls still return.
    let e2 = e.clone();
    assert!(finishes(move || {
        e2.connect_json(r#"{"id":"quick"}"#).unwrap();
        e2.set_status("quick", Some("here")).unwrap();
    }));
    release.send(()).unwrap();
    blocked.join().unwrap();

    // The dispatching thread delivered the other thread's events after its own, in order.
    assert_eq!(
        seen.take(),
        [
            "user.presence.changed slow offline",
            "user.presence.changed quick online",
            "user.presence.changed quick online"
        ]
    );
}

#[test]
fn a_listener_that_emits_on_every_call_cannot_hold_a_call_forever() {
    let e = Arc::new(manual_engine(""));
    e.upsert_user_json(r#"{"id":"echo"}"#).unwrap();
    let calls = Arc::new(AtomicU64::new(0));
    let (weak, counter) = (Arc::downgrade(&e), calls.clone());
    e.add_listener(ListenerFilter::user("echo"), move |ev| {
        counter.fetch_add(1, Ordering::SeqCst);
        if let Some(e) = weak.upgrade() {
            e.set_status("echo", Some(&ev.seq.to_string())).unwrap();
        }
    })
    .unwrap();

    assert!(finishes({
        let e = e.clone();
        move || e.set_status("echo", Some("start")).unwrap()
    }));
    let first = calls.load(Ordering::SeqCst);
    assert!(first >= 1 && first <= 1 + EXTRA_ITEMS as u64, "one call delivered {first}");
    // The rest is delivered by later pumps, a bounded amount each, still in order.
    let delivered = e.pump();
    assert!(delivered as usize <= 1 + 2 * EXTRA_ITEMS, "one pump delivered {delivered}");
    assert_eq!(calls.load(Ordering::SeqCst), first + u64::from(delivered));
}

#[test]
fn events_a_callback_causes_are_delivered_before_the_call_returns() {
    let e = Arc::new(manual_engine(""));
    e.upsert_user_json(r#"{"id":"asker"}"#).unwrap();
    e.upsert_user_json(r#"{"id":"answerer"}"#).unwrap();
    let weak = Arc::downgrade(&e);
    e.add_listener(ListenerFilter::user("asker"), move |_| {
        if let Some(e) = weak.upgrade() {
            e.set_status("answerer", Some("answered")).unwrap();
        }
    })
    .unwrap();
    let seen = Recorder::attach(&e);
    e.set_status("asker", Some("asks")).unwrap();
    // The answer was queued by a callback of this call's own dispatch run, after the run
    // had emptied the queue: the run still delivers it.
    assert_eq!(
        seen.take(),
        ["user.presence.changed asker offline", "user.presence.changed answerer offline"]
    );
    assert_eq!(e.pump(), 0, "nothing was left for a pump");
}

#[test]
fn remove_listener_nowait_returns_while_the_listener_runs_on_another_thread() {
    let e = Arc::new(manual_engine(""));
    e.upsert_user_json(r#"{"id":"a"}"#).unwrap();
    // The callback takes a host lock the remover holds: waiting would deadlock.
    let host_lock = Arc::new(Mutex::new(()));
    let (entered_tx, entered) = mpsc::channel::<()>();
    let entered_tx = Mutex::new(entered_tx);
    let in_callback = host_lock.clone();
    let id = e
        .add_listener(ListenerFilter::user("a"), move |_| {
            entered_tx.lock().unwrap().send(()).unwrap();
            drop(in_callback.lock().unwrap());
        })
        .unwrap();
    let held = host_lock.lock().unwrap();
    let dispatching = {
        let e = e.clone();
        thread::spawn(move || e.set_status("a", Some("x")).unwrap())
    };
    entered.recv_timeout(PATIENCE).unwrap();
    let e2 = e.clone();
    assert!(finishes(move || e2.remove_listener_nowait(id).unwrap()));
    drop(held);
    dispatching.join().unwrap();
    assert_eq!(kind(e.remove_listener(id)), ErrorKind::NotFound, "it is gone");
}

#[test]
fn remove_listener_waits_for_the_call_in_flight_and_nothing_else() {
    let e = Arc::new(manual_engine(""));
    e.upsert_user_json(r#"{"id":"a"}"#).unwrap();
    let (release, entered) = blocking_listener(&e, "a");
    let finished_call = Arc::new(AtomicBool::new(false));
    let id = presence::ListenerId(1);
    let flag = finished_call.clone();
    let dispatching = {
        let e = e.clone();
        thread::spawn(move || {
            e.set_status("a", Some("x")).unwrap();
            flag.store(true, Ordering::SeqCst);
        })
    };
    entered.recv_timeout(PATIENCE).unwrap();
    let (removed_tx, removed) = mpsc::channel();
    let e2 = e.clone();
    thread::spawn(move || {
        e2.remove_listener(id).unwrap();
        removed_tx.send(()).unwrap();
    });
    assert!(removed.recv_timeout(Duration::from_millis(200)).is_err(), "it waits for the call in flight");
    release.send(()).unwrap();
    removed.recv_timeout(PATIENCE).expect("and returns once that call returned");
    dispatching.join().unwrap();
    assert!(finished_call.load(Ordering::SeqCst));
}

#[test]
fn a_panicking_listener_never_fails_the_call_and_the_others_still_get_the_event() {
    let e = manual_engine("");
    e.add_listener(ListenerFilter::all(), |_| panic!("host bug")).unwrap();
    let seen = Recorder::attach(&e);
    let conn = e.connect_json(r#"{"id":"a"}"#).expect("the connection exists, so connect answers it");
    assert_eq!(seen.take(), ["user.presence.changed a online"]);
    let panics = e.listener_panics();
    assert_eq!(panics.count, 1);
    assert_eq!(panics.last_message.as_deref(), Some("listener 1 panicked: host bug"));
    e.disconnect(conn).unwrap();
    assert_eq!(e.listener_panics().count, 3, "counted per call: going offline, then connection.closed");
}

#[test]
fn a_listener_added_late_in_manual_mode_sees_only_later_events() {
    let e = manual_engine(r#""dispatch":"manual""#);
    e.connect_json(r#"{"id":"a"}"#).unwrap();
    e.set_status("a", Some("one")).unwrap();
    let early = Recorder::attach(&e);
    e.set_status("a", Some("two")).unwrap();
    let late = Recorder::attach(&e);
    e.set_status("a", Some("three")).unwrap();
    assert_eq!(e.pump(), 3, "two for the early listener, one for the late one");
    let statuses = |r: &Recorder| -> Vec<String> {
        r.take_events()
            .iter()
            .map(|ev| ev.user().unwrap().status.as_deref().unwrap_or("").to_string())
            .collect()
    };
    assert_eq!(statuses(&early), ["two", "three"]);
    assert_eq!(statuses(&late), ["three"]);
}

#[test]
fn a_delivery_listener_added_late_sees_only_later_deliveries() {
    let e = manual_engine(r#""dispatch":"manual""#);
    e.upsert_channel_json(r#"{"type":"t","id":"x","members":["a","b"]}"#).unwrap();
    let b = e.connect_json(r#"{"id":"b"}"#).unwrap();
    e.start_watching(b, "t:x", true).unwrap();
    e.connect_json(r#"{"id":"a"}"#).unwrap();
    let deliveries = common::Deliveries::attach(&e);
    e.set_status("a", Some("later")).unwrap();
    e.pump();
    assert_eq!(deliveries.take(), [common::to(b, "user.presence.changed a online")]);
}

#[test]
fn filters_that_can_never_match_are_refused() {
    let e = Engine::from_json(None).unwrap();
    let err = e.add_listener(ListenerFilter::event_type("user.presence.change"), |_| {}).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Invalid);
    assert!(
        err.message()
            .starts_with("unknown event type \"user.presence.change\"; known types: user.presence.changed,"),
        "{}",
        err.message()
    );
    let huge = "x".repeat(100_000);
    let err = e.add_listener(ListenerFilter::event_type(huge), |_| {}).unwrap_err();
    assert!(err.message().len() < 1000, "the message quotes a bounded part: {}", err.message().len());
    for bad in ["", "has space", "tab\tin"] {
        let err = e.add_listener(ListenerFilter::user(bad), |_| {}).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Invalid, "{bad:?}");
        assert!(err.message().starts_with("user id filter: "), "{}", err.message());
    }
    assert!(e.events(ListenerFilter::user("")).is_err());
}

#[test]
fn a_user_filtered_listener_among_many_gets_only_its_user() {
    let e = manual_engine("");
    for i in 0..10_000 {
        e.add_listener(ListenerFilter::user(format!("u{i}")), |_| {}).unwrap();
    }
    let mine = Recorder::attach_filtered(&e, ListenerFilter::user("u7"));
    let all = Recorder::attach(&e);
    e.connect_json(r#"{"id":"u7"}"#).unwrap();
    e.connect_json(r#"{"id":"u8"}"#).unwrap();
    assert_eq!(mine.take(), ["user.presence.changed u7 online"]);
    assert_eq!(all.take().len(), 2);
    assert_eq!(e.now(), T0);
}

#[test]
fn a_subscribed_receiver_gets_the_connections_deliveries_in_order() {
    let e = manual_engine(r#""connection_queue_capacity":4"#);
    e.upsert_channel_json(r#"{"type":"t","id":"x","members":["a","b"]}"#).unwrap();
    let b = e.connect_json(r#"{"id":"b"}"#).unwrap();
    e.start_watching(b, "t:x", true).unwrap();
    let rx = e.subscribe(b).unwrap();
    // What was queued before subscribing comes first.
    assert_eq!(rx.try_recv().unwrap().event.type_name(), "user.watching.start");
    e.connect_json(r#"{"id":"a"}"#).unwrap();
    let d = rx.recv_timeout(PATIENCE).unwrap();
    assert_eq!((d.connection, d.user_id(), d.online()), (b, "a", true));
    assert!(e.poll_events(b, 10).unwrap().is_empty(), "the receiver takes the queue's place");

    // Dropping the receiver ends the subscription: the queue takes over.
    drop(rx);
    e.set_status("a", Some("q")).unwrap();
    assert_eq!(e.poll_events(b, 10).unwrap().len(), 1);
}

#[test]
fn a_receiver_that_is_not_drained_closes_its_connection_as_a_slow_consumer() {
    let e = manual_engine(r#""connection_queue_capacity":2"#);
    e.upsert_channel_json(r#"{"type":"t","id":"x","members":["a","b"]}"#).unwrap();
    let b = e.connect_json(r#"{"id":"b"}"#).unwrap();
    let rx = e.subscribe(b).unwrap();
    e.start_watching(b, "t:x", true).unwrap();
    let a = e.connect_json(r#"{"id":"a"}"#).unwrap();
    let closed = Recorder::attach_filtered(&e, ListenerFilter::event_type("connection.closed"));
    e.set_status("a", Some("one too many")).unwrap();
    assert_eq!(closed.take(), ["connection.closed b offline"]);
    assert_eq!(rx.iter().count(), 2, "the two that fit, then the channel is disconnected");
    assert_eq!(kind(e.poll_events(b, 1)), ErrorKind::NotFound);
    e.disconnect(a).unwrap();
}

#[test]
fn subscribe_needs_queues() {
    let e = manual_engine(r#""connection_queue_capacity":0"#);
    let c = e.connect_json(r#"{"id":"a"}"#).unwrap();
    assert_eq!(kind(e.subscribe(c)), ErrorKind::State);
    assert_eq!(kind(manual_engine("").subscribe(ConnectionId(99))), ErrorKind::NotFound);
}

#[test]
fn an_events_receiver_gets_matching_events_and_ends_when_dropped() {
    let e = manual_engine("");
    let rx = e.events(ListenerFilter::event_type("user.presence.changed")).unwrap();
    let c = e.connect_json(r#"{"id":"a"}"#).unwrap();
    e.disconnect(c).unwrap();
    let seen: Vec<(String, bool)> = rx
        .try_iter()
        .map(|ev| (ev.user_id().unwrap().to_owned(), ev.user().unwrap().online(presence::View::Own)))
        .collect();
    assert_eq!(seen, [("a".to_owned(), true), ("a".to_owned(), false)]);
    drop(rx);
    let all = Recorder::attach(&e);
    e.connect_json(r#"{"id":"b"}"#).unwrap();
    assert_eq!(all.take().len(), 1);
    // The dropped receiver's listener removed itself: listener ids 1 and 2 were taken.
    assert_eq!(kind(e.remove_listener(presence::ListenerId(1))), ErrorKind::NotFound);
}

#[test]
fn past_pending_dispatch_capacity_the_oldest_go_and_one_overflow_event_says_how_many() {
    let e = manual_engine(r#""dispatch":"manual","pending_dispatch_capacity":3"#);
    e.connect_json(r#"{"id":"a"}"#).unwrap();
    let host = Recorder::attach(&e);
    let deliveries = common::Deliveries::attach(&e);
    for i in 0..5 {
        e.set_status("a", Some(&format!("s{i}"))).unwrap();
    }
    assert_eq!(e.pump(), 4, "the overflow event, then the three newest");
    let events = host.take_events();
    assert_eq!(events[0].type_name(), "engine.overflow");
    assert_eq!(events[0].kind, presence::EventKind::EngineOverflow { dropped: 2 });
    assert!(events[0].user().is_none());
    let json = events[0].to_value(presence::View::Own, None);
    assert_eq!((json["type"].as_str(), json["dropped"].as_u64()), (Some("engine.overflow"), Some(2)));
    let statuses: Vec<_> = events[1..].iter().map(|ev| ev.user().unwrap().status.clone().unwrap()).collect();
    assert_eq!(statuses.iter().map(|s| &**s).collect::<Vec<_>>(), ["s2", "s3", "s4"]);
    let seqs: Vec<u64> = events.iter().map(|ev| ev.seq).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "still in seq order: {seqs:?}");
    assert!(deliveries.take().is_empty(), "the overflow event reaches host listeners only");
    assert_eq!(e.pump(), 0);
    assert_eq!(kind(Engine::from_json(Some(r#"{"pending_dispatch_capacity":0}"#))), ErrorKind::Invalid);
}

/// An engine made with `config` where `followers` connections follow the presence of the
/// online user "star".
fn star_with_followers(config: &str, followers: usize) -> (Engine, Vec<ConnectionId>) {
    let e = manual_engine(config);
    e.connect_json(r#"{"id":"star"}"#).unwrap();
    let conns = (0..followers)
        .map(|i| {
            let c = e.connect_json(&format!(r#"{{"id":"f{i}"}}"#)).unwrap();
            e.query_users(c, r#"{"filter_conditions":{"id":"star"},"presence":true}"#).unwrap();
            c
        })
        .collect();
    e.pump();
    (e, conns)
}

#[test]
fn an_event_with_more_recipients_than_one_dispatch_chunk_reaches_each_once_and_hosts_once() {
    for mode in [r#""dispatch":"immediate""#, r#""dispatch":"manual""#] {
        let (e, conns) = star_with_followers(mode, 600);
        let host = Recorder::attach(&e);
        let deliveries = common::Deliveries::attach(&e);
        e.set_status("star", Some("away")).unwrap();
        while e.pump() > 0 {}
        let events = host.take_events();
        assert_eq!(events.len(), 1, "{mode}: the host sees the change once");
        let got = deliveries.take_raw();
        assert_eq!(got.len(), 600, "{mode}");
        assert!(
            got.iter().all(|d| d.event.seq == events[0].seq && d.view == presence::View::Public),
            "{mode}"
        );
        let mut recipients: Vec<ConnectionId> = got.iter().map(|d| d.connection).collect();
        recipients.sort();
        assert_eq!(recipients, conns, "{mode}: every follower once");
    }
}

#[test]
fn past_pending_dispatch_capacity_an_events_newest_deliveries_still_carry_their_event() {
    let (e, conns) = star_with_followers(r#""dispatch":"manual","pending_dispatch_capacity":5"#, 8);
    let host = Recorder::attach(&e);
    let deliveries = common::Deliveries::attach(&e);
    e.set_status("star", Some("away")).unwrap();
    // One host call and eight deliveries waited: the host's and the three oldest deliveries went.
    assert_eq!(e.pump(), 6, "the overflow event, then the five newest deliveries");
    let events = host.take_events();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].kind, presence::EventKind::EngineOverflow { dropped: 4 });
    let got = deliveries.take_raw();
    assert_eq!(got.len(), 5);
    for d in &got {
        assert_eq!((d.user_id(), d.user().status.as_deref()), ("star", Some("away")));
        assert_eq!(d.event.seq, events[0].seq, "the overflow event names the newest discarded seq");
        assert!(conns.contains(&d.connection));
    }
    assert_eq!(e.pump(), 0);

    // Without host listeners only deliveries count, and the overflow event reaches no one.
    let (e, _) = star_with_followers(r#""dispatch":"manual","pending_dispatch_capacity":3"#, 5);
    let deliveries = common::Deliveries::attach(&e);
    e.set_status("star", Some("away")).unwrap();
    e.set_status("star", Some("back")).unwrap();
    assert_eq!(e.pump(), 3);
    let got = deliveries.take_raw();
    assert!(got.iter().all(|d| d.user().status.as_deref() == Some("back")), "the newest three");
}

#[test]
fn threads_sharing_the_delivery_of_long_fan_outs_deliver_each_recipient_once_in_seq_order() {
    const THREADS: usize = 4;
    const CHANGES: usize = 40;
    let e = Arc::new(manual_engine(r#""dispatch":"immediate""#));
    let stars: Vec<String> = (0..THREADS).map(|t| format!("star{t}")).collect();
    for s in &stars {
        e.connect_json(&format!(r#"{{"id":"{s}"}}"#)).unwrap();
    }
    let ids: Vec<String> = stars.iter().map(|s| format!("\"{s}\"")).collect();
    let query = format!(r#"{{"filter_conditions":{{"id":{{"$in":[{}]}}}},"presence":true}}"#, ids.join(","));
    let mut followers: Vec<ConnectionId> = (0..300)
        .map(|i| {
            let c = e.connect_json(&format!(r#"{{"id":"f{i}"}}"#)).unwrap();
            e.query_users(c, &query).unwrap();
            c
        })
        .collect();
    followers.sort();
    let host = Recorder::attach(&e);
    let deliveries = common::Deliveries::attach(&e);
    let workers: Vec<_> = stars
        .into_iter()
        .map(|star| {
            let e = e.clone();
            thread::spawn(move || {
                for i in 0..CHANGES {
                    e.set_status(&star, Some(&format!("s{i}"))).unwrap();
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    while e.pump() > 0 {}
    let events = host.take_events();
    assert_eq!(events.len(), THREADS * CHANGES, "the host sees every change once");
    let got = deliveries.take_raw(); // checks seq order
    assert_eq!(got.len(), THREADS * CHANGES * followers.len());
    for (event, group) in events.iter().zip(got.chunks(followers.len())) {
        let mut recipients: Vec<ConnectionId> = group.iter().map(|d| d.connection).collect();
        recipients.sort();
        assert_eq!(recipients, followers, "seq {}: each follower once", event.seq);
        assert!(group.iter().all(|d| d.event.seq == event.seq && d.user_id() == event.user_id().unwrap()));
    }
}
