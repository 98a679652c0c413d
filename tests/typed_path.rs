//! The typed event path (C ABI version 2) against the JSON path and the engine's own
//! renderer: for random operation sequences, three engines driven alike must hand out the
//! same events. Engine `json` is drained with `presence_poll_events` and watched by the
//! JSON listeners, engine `typed` by `presence_poll_batch` and the typed listeners, engine
//! `reference` through the Rust API, rendered with `EventView` directly (the renderer
//! without the per-view cache). Every JSON text must match byte for byte, and every
//! `PresenceEventInfo` field must match the event it describes.
mod common;

use common::{Rng, T0};
use presence::event::EventView;
use presence::ffi::*;
use presence::{ConnectionId, Delivery, Engine, Event, ListenerFilter, View};
use std::ffi::{c_void, CStr, CString};
use std::os::raw::c_char;
use std::ptr;
use std::sync::{Arc, Mutex};

const CONFIG: &str = r#"{"clock":"manual","start_time_ms":1546867062375,"connection_queue_capacity":64}"#;

fn ok(r: PresenceResult) {
    assert_eq!(r, PresenceResult::PRESENCE_OK, "{}", unsafe {
        CStr::from_ptr(presence_last_error()).to_string_lossy()
    });
}

fn text(p: *const c_char) -> String {
    unsafe { CStr::from_ptr(p) }.to_str().unwrap().to_owned()
}

fn opt_text(p: *const c_char) -> Option<String> {
    (!p.is_null()).then(|| text(p))
}

/// What one listener saw: JSON texts in order.
type Seen = Mutex<Vec<String>>;

unsafe extern "C-unwind" fn json_listener(user_data: *mut c_void, event: *const PresenceEvent) {
    let seen = unsafe { &*(user_data as *const Seen) };
    seen.lock().unwrap().push(text(unsafe { (*event).json }));
}

unsafe extern "C-unwind" fn typed_listener(user_data: *mut c_void, event: *const PresenceEventInfo) {
    let seen = unsafe { &*(user_data as *const Seen) };
    let mut json = ptr::null();
    ok(unsafe { presence_event_info_json(event, &mut json) });
    // A second request answers the same rendering.
    let mut again = ptr::null();
    ok(unsafe { presence_event_info_json(event, &mut again) });
    assert_eq!(json, again);
    let info = unsafe { &*event };
    seen.lock().unwrap().push(format!("{} {}", text(json), describe_info(info)));
}

/// The info's fields as text, to compare with what the reference derives from the event.
fn describe_info(i: &PresenceEventInfo) -> String {
    format!(
        "kind={} seq={} to={} user={:?} cid={:?} online={} invisible={} status={:?} last_active={} watchers={} reason={} at={} closed={} type={} dropped={}",
        i.kind,
        i.seq,
        i.connection_id,
        opt_text(i.user_id),
        opt_text(i.cid),
        i.online,
        i.invisible,
        opt_text(i.status),
        i.last_active_ms,
        i.watcher_count,
        i.close_reason,
        i.created_at_ms,
        i.closed_connection_id,
        text(i.type_name),
        i.dropped,
    )
}

/// What `describe_info` must show for `event` delivered to `to` (0: the host) in `view`.
fn expected_info(event: &Event, to: u64, view: View) -> String {
    use presence::EventKind::*;
    let user = event.user();
    let (watchers, reason, closed, dropped) = match &event.kind {
        WatchingStart { watcher_count, .. } | WatchingStop { watcher_count, .. } => {
            (*watcher_count as i64, 0, 0, 0)
        }
        ConnectionClosed { connection, reason, .. } => (-1, *reason as u32, connection.0, 0),
        EngineOverflow { dropped } => (-1, 0, 0, *dropped),
        _ => (-1, 0, 0, 0),
    };
    format!(
        "kind={} seq={} to={to} user={:?} cid={:?} online={} invisible={} status={:?} last_active={} watchers={watchers} reason={reason} at={} closed={closed} type={} dropped={dropped}",
        event.kind.type_number(),
        event.seq,
        user.map(|u| u.id.to_string()),
        event.channel().map(|c| c.cid.to_string()),
        user.is_some_and(|u| u.online(view)),
        view == View::Own && user.is_some_and(|u| u.invisible),
        user.and_then(|u| u.status.as_deref()).map(str::to_owned),
        user.and_then(|u| u.last_active).unwrap_or(i64::MIN),
        event.created_at,
        event.type_name(),
    )
}

fn reference_json(event: &Event, view: View, to: Option<ConnectionId>) -> String {
    serde_json::to_string(&EventView { event, view, recipient: to }).unwrap()
}

struct Engines {
    json: *mut PresenceEngine,
    typed: *mut PresenceEngine,
    reference: Engine,
    /// Seen by the JSON host and delivery listeners, the typed ones, and the reference's.
    json_seen: [Box<Seen>; 2],
    typed_seen: [Box<Seen>; 2],
    reference_seen: [Arc<Seen>; 2],
    batch: *mut PresenceEventBatch,
}

impl Engines {
    fn new() -> Engines {
        let config = CString::new(CONFIG).unwrap();
        let (mut json, mut typed) = (ptr::null_mut(), ptr::null_mut());
        ok(unsafe { presence_engine_new(config.as_ptr(), &mut json) });
        ok(unsafe { presence_engine_new(config.as_ptr(), &mut typed) });
        let reference = Engine::from_json(Some(CONFIG)).unwrap();
        let json_seen = [Box::new(Seen::default()), Box::new(Seen::default())];
        let typed_seen = [Box::new(Seen::default()), Box::new(Seen::default())];
        let reference_seen = [Arc::new(Seen::default()), Arc::new(Seen::default())];
        let mut id = 0;
        let data = |s: &Seen| s as *const Seen as *mut c_void;
        unsafe {
            ok(presence_add_listener(
                json,
                ptr::null(),
                ptr::null(),
                Some(json_listener),
                data(&json_seen[0]),
                &mut id,
            ));
            ok(presence_add_delivery_listener(json, Some(json_listener), data(&json_seen[1]), &mut id));
            ok(presence_add_typed_listener(
                typed,
                ptr::null(),
                ptr::null(),
                Some(typed_listener),
                data(&typed_seen[0]),
                None,
                &mut id,
            ));
            ok(presence_add_typed_delivery_listener(
                typed,
                Some(typed_listener),
                data(&typed_seen[1]),
                None,
                &mut id,
            ));
        }
        let host = reference_seen[0].clone();
        reference
            .add_listener(ListenerFilter::all(), move |e| {
                let line =
                    format!("{} {}", reference_json(e, View::Own, None), expected_info(e, 0, View::Own));
                host.lock().unwrap().push(line);
            })
            .unwrap();
        let deliveries = reference_seen[1].clone();
        reference.add_delivery_listener(move |d: &Delivery| {
            let json = reference_json(&d.event, d.view, Some(d.connection));
            deliveries
                .lock()
                .unwrap()
                .push(format!("{json} {}", expected_info(&d.event, d.connection.0, d.view)));
        });
        let mut batch = ptr::null_mut();
        ok(unsafe { presence_batch_new(&mut batch) });
        Engines { json, typed, reference, json_seen, typed_seen, reference_seen, batch }
    }

    /// Runs one operation on all three engines; they must agree on its outcome.
    fn run(&self, op: &Op) {
        let outcomes: Vec<bool> = [self.json, self.typed].iter().map(|&e| op.run_c(e)).collect();
        let reference = op.run_rust(&self.reference);
        assert_eq!(outcomes, [reference, reference], "{op:?}");
    }

    /// Drains connection `conn` of all three engines and compares what came out.
    fn drain(&self, conn: u64) {
        let Ok(expected) = self.reference.poll_events(ConnectionId(conn), 1000) else {
            return;
        };
        let mut array = ptr::null_mut();
        ok(unsafe { presence_poll_events(self.json, conn, 1000, &mut array) });
        let reference_array = serde_json::to_string(&expected).unwrap();
        assert_eq!(text(array), reference_array, "presence_poll_events of #{conn}");
        unsafe { presence_string_free(array) };

        ok(unsafe { presence_poll_batch(self.typed, conn, 1000, self.batch) });
        assert_eq!(unsafe { presence_batch_len(self.batch) } as usize, expected.len());
        let mut texts = Vec::new();
        for (i, d) in expected.iter().enumerate() {
            let info = unsafe { presence_batch_event(self.batch, i as u32) };
            assert_eq!(describe_info(unsafe { &*info }), expected_info(&d.event, conn, d.view));
            let mut json = ptr::null();
            ok(unsafe { presence_batch_event_json(self.batch, i as u32, &mut json) });
            texts.push(json);
            assert_eq!(text(json), reference_json(&d.event, d.view, Some(d.connection)));
        }
        // Pointers handed out earlier stay valid while the batch is not refilled.
        for (p, d) in texts.iter().zip(&expected) {
            assert_eq!(text(*p), reference_json(&d.event, d.view, Some(d.connection)));
        }
        assert!(unsafe { presence_batch_event(self.batch, expected.len() as u32) }.is_null());
    }

    fn check_listeners(&self) {
        for k in 0..2 {
            let mut reference = std::mem::take(&mut *self.reference_seen[k].lock().unwrap());
            let mut typed = std::mem::take(&mut *self.typed_seen[k].lock().unwrap());
            let mut json = std::mem::take(&mut *self.json_seen[k].lock().unwrap());
            if k == 1 {
                // The recipients of one event come in no particular order (each one's
                // events in seq order is checked elsewhere); each line names its seq and
                // recipient, so sorted lines compare the same deliveries.
                for lines in [&mut reference, &mut typed, &mut json] {
                    lines.sort();
                }
            }
            assert_eq!(typed, reference, "typed {} listener", ["host", "delivery"][k]);
            let reference_json: Vec<&str> =
                reference.iter().map(|l| l.split_once(" kind=").unwrap().0).collect();
            assert_eq!(json, reference_json, "JSON {} listener", ["host", "delivery"][k]);
        }
    }
}

impl Drop for Engines {
    fn drop(&mut self) {
        unsafe {
            presence_batch_free(self.batch);
            presence_engine_free(self.json);
            presence_engine_free(self.typed);
        }
    }
}

#[derive(Debug)]
enum Op {
    ConnectUser(String),
    ConnectJson(String),
    Disconnect(u64),
    Status(String, Option<String>),
    Invisible(String, bool),
    Custom(String, u32),
    Channel(String, Vec<String>),
    Watch(u64, String, bool),
    StopWatching(u64, String),
    RemoveMember(String, String),
    QueryPresence(u64),
    Advance(i64),
}

impl Op {
    fn random(rng: &mut Rng, conns: u64) -> Op {
        let user = |rng: &mut Rng| format!("u{}", rng.below(6));
        let channel = |rng: &mut Rng| format!("team:c{}", rng.below(3));
        let conn = |rng: &mut Rng| 1 + rng.below(conns.max(1) as usize) as u64;
        match rng.below(12) {
            0 | 1 => Op::ConnectUser(user(rng)),
            2 => Op::ConnectJson(format!(r#"{{"id":"{}","name":"n{}"}}"#, user(rng), rng.below(3))),
            3 => Op::Disconnect(conn(rng)),
            4 => Op::Status(
                user(rng),
                [None, Some("away".to_owned()), Some("in \"lobby\"".to_owned())][rng.below(3)].clone(),
            ),
            5 => Op::Invisible(user(rng), rng.below(2) == 0),
            6 => Op::Custom(user(rng), rng.below(3) as u32),
            7 => Op::Channel(channel(rng), (0..rng.below(4)).map(|_| user(rng)).collect()),
            8 => Op::Watch(conn(rng), channel(rng), rng.below(3) > 0),
            9 => Op::StopWatching(conn(rng), channel(rng)),
            10 => Op::RemoveMember(channel(rng), user(rng)),
            _ => {
                if rng.below(2) == 0 {
                    Op::QueryPresence(conn(rng))
                } else {
                    Op::Advance(rng.below(120_000) as i64)
                }
            }
        }
    }

    fn run_c(&self, e: *mut PresenceEngine) -> bool {
        let c = |s: &str| CString::new(s).unwrap();
        let r = unsafe {
            match self {
                Op::ConnectUser(u) => presence_connect_user(e, c(u).as_ptr(), &mut 0),
                Op::ConnectJson(j) => presence_connect(e, c(j).as_ptr(), &mut 0),
                Op::Disconnect(id) => presence_disconnect(e, *id),
                Op::Status(u, s) => {
                    let s = s.as_deref().map(c);
                    presence_set_status(e, c(u).as_ptr(), s.as_ref().map_or(ptr::null(), |s| s.as_ptr()))
                }
                Op::Invisible(u, v) => presence_set_invisible(e, c(u).as_ptr(), *v),
                Op::Custom(u, n) => {
                    presence_upsert_user(e, c(&format!(r#"{{"id":"{u}","level":{n}}}"#)).as_ptr())
                }
                Op::Channel(cid, members) => {
                    let (t, id) = cid.split_once(':').unwrap();
                    let json = serde_json::json!({"type": t, "id": id, "members": members}).to_string();
                    presence_upsert_channel(e, c(&json).as_ptr())
                }
                Op::Watch(conn, cid, p) => {
                    presence_watch_channel(e, *conn, c(cid).as_ptr(), *p, ptr::null_mut())
                }
                Op::StopWatching(conn, cid) => presence_stop_watching(e, *conn, c(cid).as_ptr()),
                Op::RemoveMember(cid, u) => {
                    presence_remove_members(e, c(cid).as_ptr(), c(&format!(r#"["{u}"]"#)).as_ptr())
                }
                Op::QueryPresence(conn) => {
                    let mut out = ptr::null_mut();
                    let q = c(r#"{"filter_conditions":{"online":true},"presence":true}"#);
                    let r = presence_query_users(e, *conn, q.as_ptr(), &mut out);
                    presence_string_free(out);
                    r
                }
                Op::Advance(ms) => {
                    let moved = presence_set_time(e, T0 + *ms);
                    ok(presence_tick(e));
                    moved
                }
            }
        };
        r == PresenceResult::PRESENCE_OK
    }

    fn run_rust(&self, e: &Engine) -> bool {
        match self {
            Op::ConnectUser(u) => e.connect_user(u).is_ok(),
            Op::ConnectJson(j) => e.connect_json(j).is_ok(),
            Op::Disconnect(id) => e.disconnect(ConnectionId(*id)).is_ok(),
            Op::Status(u, s) => e.set_status(u, s.as_deref()).is_ok(),
            Op::Invisible(u, v) => e.set_invisible(u, *v).is_ok(),
            Op::Custom(u, n) => e.upsert_user_json(&format!(r#"{{"id":"{u}","level":{n}}}"#)).is_ok(),
            Op::Channel(cid, members) => {
                let (t, id) = cid.split_once(':').unwrap();
                e.upsert_channel_json(
                    &serde_json::json!({"type": t, "id": id, "members": members}).to_string(),
                )
                .is_ok()
            }
            Op::Watch(conn, cid, p) => e.start_watching(ConnectionId(*conn), cid, *p).is_ok(),
            Op::StopWatching(conn, cid) => e.stop_watching(ConnectionId(*conn), cid).is_ok(),
            Op::RemoveMember(cid, u) => e.remove_members(cid, std::slice::from_ref(u)).is_ok(),
            Op::QueryPresence(conn) => e
                .query_users(ConnectionId(*conn), r#"{"filter_conditions":{"online":true},"presence":true}"#)
                .is_ok(),
            Op::Advance(ms) => {
                let moved = e.set_time(T0 + *ms).is_ok();
                e.tick().unwrap();
                moved
            }
        }
    }
}

#[test]
fn the_typed_path_hands_out_what_the_json_path_does_for_random_operation_sequences() {
    let seed = Rng::seeded().0;
    eprintln!("seed {seed}");
    for case in 0..40u64 {
        let mut rng = Rng(seed.wrapping_add(case.wrapping_mul(0x9e37_79b9_7f4a_7c15)) | 1);
        let engines = Engines::new();
        let mut conns = 0u64;
        for step in 0..120 {
            let op = Op::random(&mut rng, conns);
            if matches!(op, Op::ConnectUser(_) | Op::ConnectJson(_)) {
                conns += 1;
            }
            engines.run(&op);
            if step % 7 == 0 {
                for conn in 1..=conns {
                    engines.drain(conn);
                }
            }
            engines.check_listeners();
        }
        for conn in 1..=conns {
            engines.drain(conn);
        }
    }
}
