//! The parts of the boundary C cannot reach: a panic inside a call, values outside the
//! enumeration, the thread-locality of the last error.
use super::*;
use crate::engine::ListenerFilter;
use std::ffi::CStr;
use std::ptr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

fn last_error() -> String {
    unsafe { CStr::from_ptr(presence_last_error()) }.to_str().unwrap().to_owned()
}

fn new_engine() -> *mut PresenceEngine {
    let mut e = ptr::null_mut();
    assert_eq!(unsafe { presence_engine_new(ptr::null(), &mut e) }, PresenceResult::PRESENCE_OK);
    e
}

#[test]
fn a_panicking_listener_leaves_the_call_successful_and_is_reported() {
    let e = new_engine();
    let engine = unsafe { &(*e).engine };
    let calls = Arc::new(AtomicU32::new(0));
    let seen = calls.clone();
    // A listener (Rust, so it may panic) that panics on its first event only.
    engine
        .add_listener(ListenerFilter::all(), move |_| {
            if seen.fetch_add(1, Ordering::SeqCst) == 0 {
                panic!("listener exploded");
            }
        })
        .unwrap();
    let mut conn = 0;
    let r = unsafe { presence_connect(e, c"{\"id\":\"a\"}".as_ptr(), &mut conn) };
    assert_eq!(r, PresenceResult::PRESENCE_OK, "the change committed, so the call succeeds");
    assert_ne!(conn, 0, "the connection id is not lost");
    let panics = engine.listener_panics();
    assert_eq!(panics.count, 1);
    let message = panics.last_message.unwrap();
    assert!(message.contains("listener exploded") && message.starts_with("listener 1 panicked"), "{message}");

    // The listener keeps getting later events; the engine goes on working.
    let r = unsafe { presence_set_status(e, c"a".as_ptr(), c"back".as_ptr()) };
    assert_eq!(r, PresenceResult::PRESENCE_OK);
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    let mut json = ptr::null_mut();
    let r = unsafe { presence_get_user(e, 0, c"a".as_ptr(), &mut json) };
    assert_eq!(r, PresenceResult::PRESENCE_OK);
    let user = unsafe { CStr::from_ptr(json) }.to_str().unwrap().to_owned();
    assert!(user.contains("\"online\":true"), "{user}");
    assert!(user.contains("\"status\":\"back\""), "{user}");
    unsafe { presence_string_free(json) };
    unsafe { presence_engine_free(e) };
}

#[test]
fn a_panicking_command_answers_panic_then_state_from_then_on() {
    let e = new_engine();
    let mut conn = 0;
    assert_eq!(unsafe { presence_connect_user_json(e, "a", &mut conn) }, PresenceResult::PRESENCE_OK);
    unsafe { &(*e).engine }.panic_in_next_command();
    let r = unsafe { presence_set_status(e, c"a".as_ptr(), c"x".as_ptr()) };
    assert_eq!(r, PresenceResult::PRESENCE_ERR_PANIC);
    assert!(last_error().contains("internal error"), "{}", last_error());
    let mut json = ptr::null_mut();
    let r = unsafe { presence_get_user(e, 0, c"a".as_ptr(), &mut json) };
    assert_eq!(r, PresenceResult::PRESENCE_ERR_STATE);
    assert!(last_error().contains("poisoned"), "{}", last_error());
    assert_eq!(unsafe { presence_disconnect(e, conn) }, PresenceResult::PRESENCE_ERR_STATE);
    assert_eq!(unsafe { presence_tick(e) }, PresenceResult::PRESENCE_ERR_STATE);
    assert!(json.is_null(), "out-parameters are written only on success");
    unsafe { presence_engine_free(e) };
}

unsafe fn presence_connect_user_json(e: *mut PresenceEngine, id: &str, out: &mut u64) -> PresenceResult {
    let json = std::ffi::CString::new(format!("{{\"id\":\"{id}\"}}")).unwrap();
    unsafe { presence_connect(e, json.as_ptr(), out) }
}

#[test]
fn freeing_an_engine_inside_its_own_callback_is_refused() {
    let e = new_engine();
    struct Handle(*mut PresenceEngine);
    unsafe impl Send for Handle {}
    unsafe impl Sync for Handle {}
    let handle = Handle(e);
    let refusal = Arc::new(std::sync::Mutex::new(String::new()));
    let seen = refusal.clone();
    unsafe { &(*e).engine }
        .add_listener(ListenerFilter::all(), move |_| {
            let h = &handle;
            unsafe { presence_engine_free(h.0) };
            *seen.lock().unwrap() = last_error();
        })
        .unwrap();
    let mut conn = 0;
    assert_eq!(unsafe { presence_connect_user_json(e, "a", &mut conn) }, PresenceResult::PRESENCE_OK);
    let message = refusal.lock().unwrap().clone();
    assert!(message.starts_with("presence_engine_free: called from inside"), "{message}");
    // Still alive and usable.
    assert_eq!(unsafe { presence_disconnect(e, conn) }, PresenceResult::PRESENCE_OK);
    unsafe { presence_engine_free(e) };
}

#[test]
fn result_names_cover_the_enumeration_and_beyond() {
    let name =
        |v: u32| unsafe { CStr::from_ptr(presence_result_name(PresenceResultArg(v))) }.to_str().unwrap();
    assert_eq!(name(0), "PRESENCE_OK");
    assert_eq!(name(3), "PRESENCE_ERR_JSON");
    assert_eq!(name(9), "PRESENCE_ERR_PANIC");
    assert_eq!(name(10), "PRESENCE_UNKNOWN");
    assert_eq!(name(u32::MAX), "PRESENCE_UNKNOWN");
    for &kind in crate::ErrorKind::ALL {
        assert_eq!(engine::code(kind) as u32, kind.code());
        assert_eq!(name(kind.code()), kind.name());
    }
}

#[test]
fn the_last_error_is_per_thread_and_survives_success() {
    let r = unsafe { presence_connect(ptr::null_mut(), ptr::null(), ptr::null_mut()) };
    assert_eq!(r, PresenceResult::PRESENCE_ERR_NULL);
    assert_eq!(last_error(), "presence_connect: engine is NULL");
    std::thread::spawn(|| assert_eq!(last_error(), "")).join().unwrap();
    assert_eq!(presence_abi_version(), PRESENCE_ABI_VERSION);
    assert_eq!(last_error(), "presence_connect: engine is NULL");
}

#[test]
fn messages_with_nul_bytes_survive() {
    support::set_last_error("f", "a\0b");
    assert_eq!(last_error(), "f: a\\0b");
}

#[test]
fn remove_listener_nowait_removes_and_answers_not_found_the_second_time() {
    unsafe extern "C-unwind" fn count(user_data: *mut std::ffi::c_void, _: *const PresenceEvent) {
        unsafe { &*(user_data as *const AtomicU32) }.fetch_add(1, Ordering::SeqCst);
    }
    let e = new_engine();
    let calls = AtomicU32::new(0);
    let mut id = 0;
    let user_data = &calls as *const AtomicU32 as *mut std::ffi::c_void;
    let r = unsafe { presence_add_listener(e, ptr::null(), ptr::null(), Some(count), user_data, &mut id) };
    assert_eq!(r, PresenceResult::PRESENCE_OK);
    let mut conn = 0;
    assert_eq!(unsafe { presence_connect_user_json(e, "a", &mut conn) }, PresenceResult::PRESENCE_OK);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(unsafe { presence_remove_listener_nowait(e, id) }, PresenceResult::PRESENCE_OK);
    assert_eq!(unsafe { presence_disconnect(e, conn) }, PresenceResult::PRESENCE_OK);
    assert_eq!(calls.load(Ordering::SeqCst), 1, "never called after removal");
    assert_eq!(unsafe { presence_remove_listener_nowait(e, id) }, PresenceResult::PRESENCE_ERR_NOT_FOUND);
    assert_eq!(last_error(), format!("presence_remove_listener_nowait: unknown listener {id}"));
    unsafe { presence_engine_free(e) };
}

#[test]
fn string_arguments_read_the_same_on_the_short_ascii_path_and_the_general_one() {
    let read = |bytes: &[u8]| {
        let owned = std::ffi::CString::new(bytes).unwrap();
        unsafe { support::str_arg(owned.as_ptr(), "id") }
            .map(str::to_owned)
            .map_err(|e| e.message().to_owned())
    };
    for len in [0, 1, 4, 31, 32, 33, 100] {
        let s = "x".repeat(len);
        assert_eq!(read(s.as_bytes()), Ok(s), "{len} ASCII bytes");
    }
    assert_eq!(read("joué".as_bytes()), Ok("joué".to_owned()));
    assert_eq!(read(b"abc\xff"), Err("id is not valid UTF-8 (invalid byte at offset 3)".to_owned()));
    let long_then_bad = [b"y".repeat(40), b"\xc3".to_vec()].concat();
    assert_eq!(read(&long_then_bad), Err("id is not valid UTF-8 (invalid byte at offset 40)".to_owned()));
}

#[test]
fn connect_user_names_the_right_user_from_a_callback_and_after_a_refused_id() {
    let e = new_engine();
    let engine = unsafe { &(*e).engine };
    // A host listener that connects "nested" from inside the connect of "outer", whose
    // call is still on the stack then.
    let nested = Arc::new(AtomicU32::new(0));
    let seen = nested.clone();
    let handle = e as usize;
    engine
        .add_listener(ListenerFilter::user("outer"), move |_| {
            if seen.fetch_add(1, Ordering::SeqCst) == 0 {
                let mut conn = 0;
                let r = unsafe {
                    presence_connect_user(handle as *mut PresenceEngine, c"nested".as_ptr(), &mut conn)
                };
                assert_eq!(r, PresenceResult::PRESENCE_OK);
            }
        })
        .unwrap();
    let mut conn = 0;
    assert_eq!(
        unsafe { presence_connect_user(e, c"outer".as_ptr(), &mut conn) },
        PresenceResult::PRESENCE_OK
    );
    assert_eq!(nested.load(Ordering::SeqCst), 1);
    let long = std::ffi::CString::new("x".repeat(300)).unwrap();
    assert_eq!(
        unsafe { presence_connect_user(e, long.as_ptr(), &mut conn) },
        PresenceResult::PRESENCE_ERR_INVALID
    );
    assert!(last_error().contains("user id must be 1..=255 bytes, got 300 bytes"), "{}", last_error());
    assert_eq!(
        unsafe { presence_connect_user(e, c"short".as_ptr(), &mut conn) },
        PresenceResult::PRESENCE_OK
    );
    for id in ["outer", "nested", "short"] {
        let viewed = engine.get_user(crate::ConnectionId::HOST, id).unwrap();
        assert!(viewed.user.connected && &*viewed.user.id == id, "{id}: {:?}", viewed.user);
    }
    assert_eq!(engine.counts().users, 3, "no user was made of a mixed-up id");
    unsafe { presence_engine_free(e) };
}

#[test]
fn a_status_with_a_nul_inside_has_its_whole_length_in_the_info() {
    let e = new_engine();
    let mut watcher = 0;
    unsafe {
        assert_eq!(presence_connect_user(e, c"w".as_ptr(), &mut watcher), PresenceResult::PRESENCE_OK);
        let mut out = ptr::null_mut();
        let query = c"{\"filter_conditions\":{\"id\":\"s\"},\"presence\":true}";
        assert_eq!(presence_upsert_user(e, c"{\"id\":\"s\"}".as_ptr()), PresenceResult::PRESENCE_OK);
        assert_eq!(presence_query_users(e, watcher, query.as_ptr(), &mut out), PresenceResult::PRESENCE_OK);
        presence_string_free(out);
        let r = presence_upsert_user(e, c"{\"id\":\"s\",\"status\":\"a\\u0000b\"}".as_ptr());
        assert_eq!(r, PresenceResult::PRESENCE_OK);
        let mut batch = ptr::null_mut();
        assert_eq!(presence_batch_new(&mut batch), PresenceResult::PRESENCE_OK);
        assert_eq!(presence_poll_batch(e, watcher, 10, batch), PresenceResult::PRESENCE_OK);
        assert_eq!(presence_batch_len(batch), 1);
        let info = &*presence_batch_event(batch, 0);
        assert_eq!(info.status_len, 3);
        assert_eq!(CStr::from_ptr(info.status).to_bytes(), b"a");
        assert_eq!(std::slice::from_raw_parts(info.status.cast::<u8>(), 3), b"a\0b");
        assert_eq!(CStr::from_ptr(info.user_id).to_bytes(), b"s");
        presence_batch_free(batch);
        presence_engine_free(e);
    }
}

/// What a typed delivery callback saw, and how to remove itself after some calls.
#[derive(Default)]
struct TypedLog {
    /// (seq, recipient, online) per call.
    calls: std::sync::Mutex<Vec<(u64, u64, bool)>>,
    /// Interleaving with other listeners: "typed" per call.
    order: Option<Arc<std::sync::Mutex<Vec<(&'static str, u64)>>>>,
    /// Removes the listener (without waiting) during call number `remove_at`.
    remove_at: Option<usize>,
    engine: std::cell::Cell<usize>,
    id: std::cell::Cell<u64>,
}

unsafe extern "C-unwind" fn log_typed(user_data: *mut std::ffi::c_void, info: *const PresenceEventInfo) {
    let log = unsafe { &*(user_data as *const TypedLog) };
    let info = unsafe { &*info };
    let mut calls = log.calls.lock().unwrap();
    calls.push((info.seq, info.connection_id, info.online));
    if let Some(order) = &log.order {
        order.lock().unwrap().push(("typed", info.connection_id));
    }
    if log.remove_at == Some(calls.len()) {
        let r =
            unsafe { presence_remove_listener_nowait(log.engine.get() as *mut PresenceEngine, log.id.get()) };
        assert_eq!(r, PresenceResult::PRESENCE_OK);
    }
}

/// Connects `star` and `followers` connections that follow its presence (subscribed by a
/// query), in that order; answers the followers.
fn follow(engine: &crate::Engine, star: &str, followers: usize) -> Vec<u64> {
    engine.connect_user(star).unwrap();
    let query = format!(r#"{{"filter_conditions":{{"id":"{star}"}},"presence":true}}"#);
    (0..followers)
        .map(|i| {
            let c = engine.connect_user(&format!("{star}-f{i}")).unwrap();
            engine.query_users(c, &query).unwrap();
            c.0
        })
        .collect()
}

/// A C engine made with `config`.
fn engine_with(config: &str) -> *mut PresenceEngine {
    let config = std::ffi::CString::new(config).unwrap();
    let mut e = ptr::null_mut();
    assert_eq!(unsafe { presence_engine_new(config.as_ptr(), &mut e) }, PresenceResult::PRESENCE_OK);
    e
}

/// An engine made with `config` where `followers` connections follow "star" (online),
/// with a typed delivery listener logging into `log`; answers the followers.
fn star_followed_typed(config: &str, followers: usize, log: &TypedLog) -> (*mut PresenceEngine, Vec<u64>) {
    let e = engine_with(config);
    let engine = unsafe { &(*e).engine };
    let followers = follow(engine, "star", followers);
    engine.pump();
    let user_data = log as *const TypedLog as *mut std::ffi::c_void;
    let mut id = 0;
    let r = unsafe { presence_add_typed_delivery_listener(e, Some(log_typed), user_data, None, &mut id) };
    assert_eq!(r, PresenceResult::PRESENCE_OK);
    log.engine.set(e as usize);
    log.id.set(id);
    (e, followers)
}

#[test]
fn a_lone_typed_delivery_listener_gets_every_recipient_of_an_event_larger_than_a_chunk_in_order() {
    for mode in ["immediate", "manual"] {
        let config = format!(r#"{{"clock":"manual","dispatch":"{mode}"}}"#);
        let log = TypedLog::default();
        let (e, followers) = star_followed_typed(&config, 600, &log);
        let engine = unsafe { &(*e).engine };
        // One change: a run of 600 deliveries, longer than a dispatch chunk.
        engine.set_status("star", Some("away")).unwrap();
        let mut handed = 0;
        loop {
            let n = engine.pump();
            if n == 0 {
                break;
            }
            handed += n;
        }
        let calls = log.calls.lock().unwrap().clone();
        assert_eq!(calls.len(), 600, "{mode}");
        if mode == "manual" {
            assert_eq!(handed, 600, "pump counts each delivery of a run");
        }
        let seq = calls[0].0;
        assert!(calls.iter().all(|&(s, _, online)| s == seq && online), "{mode}: one event, star online");
        let recipients: Vec<u64> = calls.iter().map(|&(_, c, _)| c).collect();
        assert_eq!(recipients, followers, "{mode}: every follower once, in subscription order");
        unsafe { presence_engine_free(e) };
    }
}

#[test]
fn a_typed_delivery_listener_removed_in_the_middle_of_a_run_gets_none_of_the_rest() {
    let log = TypedLog { remove_at: Some(3), ..TypedLog::default() };
    let (e, followers) = star_followed_typed(r#"{"clock":"manual"}"#, 10, &log);
    let engine = unsafe { &(*e).engine };
    engine.set_status("star", Some("away")).unwrap();
    engine.set_status("star", Some("back")).unwrap();
    let recipients: Vec<u64> = log.calls.lock().unwrap().iter().map(|&(_, c, _)| c).collect();
    assert_eq!(recipients, followers[..3], "removed by its third call");
    unsafe { presence_engine_free(e) };
}

#[test]
fn typed_and_rust_delivery_listeners_still_take_turns_per_delivery() {
    let order = Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = TypedLog { order: Some(order.clone()), ..TypedLog::default() };
    let (e, followers) = star_followed_typed(r#"{"clock":"manual"}"#, 3, &log);
    let engine = unsafe { &(*e).engine };
    let seen = order.clone();
    engine.add_delivery_listener(move |d| seen.lock().unwrap().push(("rust", d.connection.0)));
    engine.set_status("star", Some("away")).unwrap();
    let expected: Vec<(&str, u64)> = followers.iter().flat_map(|&c| [("typed", c), ("rust", c)]).collect();
    assert_eq!(*order.lock().unwrap(), expected);
    unsafe { presence_engine_free(e) };
}

#[test]
fn each_recipient_of_a_run_gets_its_own_json_with_its_connection_id() {
    unsafe extern "C-unwind" fn ask_json(user_data: *mut std::ffi::c_void, info: *const PresenceEventInfo) {
        let seen = unsafe { &*(user_data as *const std::sync::Mutex<Vec<(u64, String)>>) };
        let mut json = ptr::null();
        assert_eq!(unsafe { presence_event_info_json(info, &mut json) }, PresenceResult::PRESENCE_OK);
        let text = unsafe { CStr::from_ptr(json) }.to_str().unwrap().to_owned();
        seen.lock().unwrap().push((unsafe { (*info).connection_id }, text));
    }
    let e = engine_with(r#"{"clock":"manual"}"#);
    let followers = follow(unsafe { &(*e).engine }, "star", 3);
    let seen: std::sync::Mutex<Vec<(u64, String)>> = std::sync::Mutex::new(Vec::new());
    let mut id = 0;
    let user_data = &seen as *const _ as *mut std::ffi::c_void;
    let r = unsafe { presence_add_typed_delivery_listener(e, Some(ask_json), user_data, None, &mut id) };
    assert_eq!(r, PresenceResult::PRESENCE_OK);
    let engine = unsafe { &(*e).engine };
    engine.set_status("star", Some("away")).unwrap();
    let seen = seen.lock().unwrap();
    assert_eq!(seen.iter().map(|(c, _)| *c).collect::<Vec<_>>(), followers);
    for (connection, json) in seen.iter() {
        let value: serde_json::Value = serde_json::from_str(json).unwrap();
        assert_eq!(value["connection_id"], serde_json::json!(connection), "{json}");
        assert_eq!(value["user"]["status"], serde_json::json!("away"), "{json}");
    }
    unsafe { presence_engine_free(e) };
}

/// What `watch_removal` sees: calls, calls still running after its removal returned,
/// order per recipient.
#[derive(Default)]
struct RemovalWatch {
    calls: std::sync::atomic::AtomicU64,
    removed: std::sync::atomic::AtomicBool,
    late: std::sync::atomic::AtomicU64,
    last_seq: std::sync::Mutex<std::collections::HashMap<u64, u64>>,
    out_of_order: std::sync::atomic::AtomicU64,
}

unsafe extern "C-unwind" fn watch_removal(user_data: *mut std::ffi::c_void, info: *const PresenceEventInfo) {
    let w = unsafe { &*(user_data as *const RemovalWatch) };
    let info = unsafe { &*info };
    let previous = w.last_seq.lock().unwrap().insert(info.connection_id, info.seq);
    if previous.is_some_and(|p| p >= info.seq) {
        w.out_of_order.fetch_add(1, Ordering::SeqCst);
    }
    w.calls.fetch_add(1, Ordering::SeqCst);
    // Some work, then a look: a removal that returned while this call still ran broke
    // its promise to wait for it.
    for i in 0..5_000u32 {
        std::hint::black_box(i);
    }
    if w.removed.load(Ordering::SeqCst) {
        w.late.fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn a_typed_delivery_listener_removed_from_another_thread_mid_runs_is_never_called_after() {
    for _ in 0..5 {
        let e = new_engine();
        let engine = unsafe { &(*e).engine };
        // Two users each followed by 300 connections: runs longer than a dispatch chunk.
        for star in ["star-a", "star-b"] {
            follow(engine, star, 300);
        }
        let watch = RemovalWatch::default();
        let mut id = 0;
        let user_data = &watch as *const RemovalWatch as *mut std::ffi::c_void;
        let r =
            unsafe { presence_add_typed_delivery_listener(e, Some(watch_removal), user_data, None, &mut id) };
        assert_eq!(r, PresenceResult::PRESENCE_OK);
        let stop = std::sync::atomic::AtomicBool::new(false);
        let mut stray = 0;
        std::thread::scope(|s| {
            for star in ["star-a", "star-b"] {
                let stop = &stop;
                s.spawn(move || {
                    let mut n = 0u64;
                    while !stop.load(Ordering::SeqCst) {
                        n += 1;
                        engine
                            .set_status(star, Some(if n % 2 == 0 { "in match" } else { "in lobby" }))
                            .unwrap();
                    }
                });
            }
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
            while watch.calls.load(Ordering::SeqCst) < 3_000 && std::time::Instant::now() < deadline {
                std::thread::yield_now();
            }
            let removal = unsafe { presence_remove_listener(e, id) };
            watch.removed.store(true, Ordering::SeqCst);
            // The producers go on long enough for any stray call to show.
            let calls = watch.calls.load(Ordering::SeqCst);
            std::thread::sleep(std::time::Duration::from_millis(50));
            stray = watch.calls.load(Ordering::SeqCst) - calls;
            // Before any assertion: a failing one would wait for the producers forever.
            stop.store(true, Ordering::SeqCst);
            assert_eq!(removal, PresenceResult::PRESENCE_OK);
        });
        assert!(watch.calls.load(Ordering::SeqCst) >= 3_000, "deliveries went on while the producers ran");
        assert_eq!(stray, 0, "calls that began after the removal returned");
        assert_eq!(watch.late.load(Ordering::SeqCst), 0, "calls still running when the removal returned");
        assert_eq!(watch.out_of_order.load(Ordering::SeqCst), 0, "seq order per recipient");
        unsafe { presence_engine_free(e) };
    }
}
