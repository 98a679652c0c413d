//! An operation-sequence driver through the C ABI: the input bytes pick functions and
//! arguments (ids and JSON from a small dictionary, raw bytes that may be invalid UTF-8,
//! NULL pointers). Properties: no call answers `PRESENCE_ERR_PANIC` or a value outside the
//! enumeration; every failure leaves a message; required NULLs answer `PRESENCE_ERR_NULL`;
//! every returned string is valid JSON; callbacks (which re-enter the engine) see valid
//! events in strictly increasing `seq` order.
#![no_main]
use libfuzzer_sys::fuzz_target;
use presence::ffi::*;
use std::cell::Cell;
use std::ffi::{c_char, c_void, CStr, CString};
use std::ptr::{null, null_mut};

const IDS: [&str; 4] = ["a", "b", "c", "bad id"];
const CIDS: [&str; 3] = ["t:x", "t:y", "Bad"];
const USER_JSON: [&str; 6] = [
    r#"{"id":"a"}"#,
    r#"{"id":"b","invisible":true}"#,
    r#"{"id":"c","status":"busy","name":"C"}"#,
    r#"{"id":"a","invisible":false,"status":null}"#,
    r#"{"id":"b","online":true}"#,
    r#"{"id":5}"#,
];
const CHANNEL_JSON: [&str; 4] = [
    r#"{"cid":"t:x","members":["a","b"]}"#,
    r#"{"type":"t","id":"y","members":["c"],"color":"red"}"#,
    r#"{"cid":"t:x","member_count":1}"#,
    r#"{"cid":"t:y","last_message_at":"2020-01-01T00:00:00Z"}"#,
];
const QUERY_JSON: [&str; 6] = [
    r#"{}"#,
    r#"{"filter_conditions":{"online":true},"presence":true}"#,
    r#"{"filter_conditions":{"id":{"$in":["a","b"]}},"sort":{"last_active":-1}}"#,
    r#"{"presence":true,"watch":true}"#,
    r#"{"limit":1000}"#,
    r#"{"filter_conditions":{"members":{"$in":["a"]}},"watch":true}"#,
];

struct Input<'a>(&'a [u8]);
impl Input<'_> {
    fn byte(&mut self) -> u8 {
        match self.0.split_first() {
            Some((b, rest)) => {
                self.0 = rest;
                *b
            }
            None => 0,
        }
    }
    fn done(&self) -> bool {
        self.0.is_empty()
    }
    /// A string: usually from the dictionary, sometimes raw input bytes (no NUL).
    fn string(&mut self, dict: &[&str]) -> CString {
        let b = self.byte();
        if b < 224 {
            CString::new(dict[b as usize % dict.len()]).unwrap()
        } else {
            let n = (b - 224) as usize;
            let take = n.min(self.0.len());
            let raw: Vec<u8> = self.0[..take].iter().map(|&c| if c == 0 { b'?' } else { c }).collect();
            self.0 = &self.0[take..];
            CString::new(raw).unwrap()
        }
    }
}

struct Ctx {
    engine: *mut PresenceEngine,
    last_host_seq: Cell<u64>,
    calls: Cell<u32>,
}

fn check(r: PresenceResult, what: &str) -> bool {
    assert_ne!(r, PresenceResult::PRESENCE_ERR_PANIC, "{what} panicked: {}", last_error());
    assert!((r as u32) <= 9, "{what}: result {}", r as u32);
    if r != PresenceResult::PRESENCE_OK {
        assert!(!last_error().is_empty(), "{what} failed without a message");
    }
    r == PresenceResult::PRESENCE_OK
}

fn last_error() -> String {
    unsafe { CStr::from_ptr(presence_last_error()) }.to_string_lossy().into_owned()
}

unsafe fn take_json(s: *mut c_char, what: &str) {
    assert!(!s.is_null(), "{what}: NULL string on success");
    let text = unsafe { CStr::from_ptr(s) }.to_str().expect("UTF-8").to_owned();
    serde_json::from_str::<serde_json::Value>(&text).unwrap_or_else(|e| panic!("{what}: {e}: {text}"));
    unsafe { presence_string_free(s) };
}

unsafe extern "C-unwind" fn on_event(user_data: *mut c_void, event: *const PresenceEvent) {
    let ctx = unsafe { &*(user_data as *const Ctx) };
    let ev = unsafe { &*event };
    let ty = unsafe { CStr::from_ptr(ev.r#type) }.to_str().unwrap();
    assert!(ty.contains('.'), "{ty}");
    let json = unsafe { CStr::from_ptr(ev.json) }.to_str().unwrap();
    let v: serde_json::Value = serde_json::from_str(json).unwrap();
    assert_eq!(v["seq"].as_u64(), Some(ev.seq));
    if ev.connection_id == 0 {
        assert!(ev.seq > ctx.last_host_seq.get(), "host seq {} after {}", ev.seq, ctx.last_host_seq.get());
        ctx.last_host_seq.set(ev.seq);
    }
    // Re-enter: read the user, and now and then change another one.
    if !ev.user_id.is_null() {
        let mut out = null_mut();
        if check(unsafe { presence_get_user(ctx.engine, 0, ev.user_id, &mut out) }, "get_user in callback") {
            unsafe { take_json(out, "get_user in callback") };
        }
    }
    let calls = ctx.calls.get() + 1;
    ctx.calls.set(calls);
    if calls % 7 == 0 && calls < 200 {
        check(
            unsafe { presence_set_status(ctx.engine, c"c".as_ptr(), c"echo".as_ptr()) },
            "set_status in callback",
        );
    }
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input(data);
    let config = match input.byte() % 4 {
        0 => c"{\"clock\":\"manual\",\"connection_queue_capacity\":4}",
        1 => c"{\"clock\":\"manual\",\"dispatch\":\"manual\",\"connection_timeout_ms\":10,\"offline_grace_ms\":5}",
        2 => c"{\"clock\":\"manual\",\"max_subscriptions_per_connection\":2,\"max_connections_per_user\":2}",
        _ => c"{\"clock\":\"manual\",\"last_active_refresh_ms\":3}",
    };
    let mut engine = null_mut();
    assert!(check(unsafe { presence_engine_new(config.as_ptr(), &mut engine) }, "engine_new"));
    // One context per listener (each checks its own stream), alive until the engine is freed.
    let mut contexts: Vec<Box<Ctx>> = Vec::new();
    let mut new_ctx = || -> *mut c_void {
        contexts.push(Box::new(Ctx { engine, last_host_seq: Cell::new(0), calls: Cell::new(0) }));
        &**contexts.last().unwrap() as *const Ctx as *mut c_void
    };

    let mut conns: Vec<u64> = vec![0, 12345];
    let mut listeners: Vec<u64> = vec![0, 999];
    let mut now: i64 = 0;
    let mut steps = 0;
    while !input.done() && steps < 200 {
        steps += 1;
        let op = input.byte() % 27;
        let conn = conns[input.byte() as usize % conns.len()];
        unsafe {
            match op {
                0 => {
                    let j = input.string(&USER_JSON);
                    let mut out = 0;
                    if check(presence_connect(engine, j.as_ptr(), &mut out), "connect") {
                        assert_ne!(out, 0);
                        conns.push(out);
                    }
                }
                1 => {
                    check(presence_disconnect(engine, conn), "disconnect");
                }
                2 => {
                    check(presence_heartbeat(engine, conn), "heartbeat");
                }
                3 => {
                    let j = input.string(&USER_JSON);
                    check(presence_upsert_user(engine, j.as_ptr()), "upsert_user");
                }
                4 => {
                    let id = input.string(&IDS);
                    check(
                        presence_set_invisible(engine, id.as_ptr(), input.byte() % 2 == 0),
                        "set_invisible",
                    );
                }
                5 => {
                    let id = input.string(&IDS);
                    let s = input.string(&["busy", "away"]);
                    let sp = if input.byte() % 3 == 0 { null() } else { s.as_ptr() };
                    check(presence_set_status(engine, id.as_ptr(), sp), "set_status");
                }
                6 => {
                    let id = input.string(&IDS);
                    let mut out = null_mut();
                    if check(presence_get_user(engine, conn, id.as_ptr(), &mut out), "get_user") {
                        take_json(out, "get_user");
                    }
                }
                7 => {
                    let j = input.string(&CHANNEL_JSON);
                    check(presence_upsert_channel(engine, j.as_ptr()), "upsert_channel");
                }
                8 | 9 => {
                    let cid = input.string(&CIDS);
                    let ids = input.string(&[r#"["a","b"]"#, r#"["c","new"]"#, r#"["zz"]"#, "[1]", "x"]);
                    if op == 8 {
                        check(presence_add_members(engine, cid.as_ptr(), ids.as_ptr()), "add_members");
                    } else {
                        check(presence_remove_members(engine, cid.as_ptr(), ids.as_ptr()), "remove_members");
                    }
                }
                10 => {
                    let cid = input.string(&CIDS);
                    check(presence_delete_channel(engine, cid.as_ptr()), "delete_channel");
                }
                11 => {
                    let cid = input.string(&CIDS);
                    let presence = input.byte() % 2 == 0;
                    let mut out = null_mut();
                    let want_state = input.byte() % 2 == 0;
                    let outp = if want_state { &mut out as *mut _ } else { null_mut() };
                    if check(presence_watch_channel(engine, conn, cid.as_ptr(), presence, outp), "watch")
                        && want_state
                    {
                        take_json(out, "watch state");
                    }
                }
                12 => {
                    let cid = input.string(&CIDS);
                    check(presence_stop_watching(engine, conn, cid.as_ptr()), "stop_watching");
                }
                13 | 14 => {
                    let q = input.string(&QUERY_JSON);
                    let mut out = null_mut();
                    let r = if op == 13 {
                        presence_query_users(engine, conn, q.as_ptr(), &mut out)
                    } else {
                        presence_query_channels(engine, conn, q.as_ptr(), &mut out)
                    };
                    if check(r, "query") {
                        take_json(out, "query");
                    }
                }
                15 => {
                    let id = input.string(&IDS);
                    check(presence_unsubscribe_user(engine, conn, id.as_ptr()), "unsubscribe_user");
                }
                16 => {
                    let ty = input.string(&["user.presence.changed", "member.added", "nonsense"]);
                    let user = input.string(&IDS);
                    let typ = if input.byte() % 2 == 0 { null() } else { ty.as_ptr() };
                    let up = if input.byte() % 2 == 0 { null() } else { user.as_ptr() };
                    let mut out = 0;
                    if check(
                        presence_add_listener(engine, typ, up, Some(on_event), new_ctx(), &mut out),
                        "add_listener",
                    ) {
                        listeners.push(out);
                    }
                }
                17 => {
                    let mut out = 0;
                    if check(
                        presence_add_delivery_listener(engine, Some(on_event), new_ctx(), &mut out),
                        "add_delivery_listener",
                    ) {
                        listeners.push(out);
                    }
                }
                18 => {
                    let id = listeners[input.byte() as usize % listeners.len()];
                    check(presence_remove_listener(engine, id), "remove_listener");
                }
                19 => {
                    let mut out = null_mut();
                    if check(presence_poll_events(engine, conn, input.byte() as u32, &mut out), "poll_events")
                    {
                        take_json(out, "poll_events");
                    }
                }
                20 => {
                    let mut n = 0;
                    check(
                        presence_pump(engine, if input.byte() % 2 == 0 { &mut n } else { null_mut() }),
                        "pump",
                    );
                }
                21 => {
                    check(presence_tick(engine), "tick");
                }
                22 => {
                    now += input.byte() as i64;
                    assert!(check(presence_set_time(engine, now), "set_time"));
                    // Before the epoch is out of range (INVALID); only a later start can go back.
                    if now >= 1 && input.byte() % 4 == 0 {
                        assert_eq!(presence_set_time(engine, now - 1), PresenceResult::PRESENCE_ERR_STATE);
                    }
                }
                23 => {
                    // NULL where a pointer is required.
                    let mut out = 0u64;
                    assert_eq!(presence_connect(engine, null(), &mut out), PresenceResult::PRESENCE_ERR_NULL);
                    assert_eq!(
                        presence_connect(engine, c"{\"id\":\"a\"}".as_ptr(), null_mut()),
                        PresenceResult::PRESENCE_ERR_NULL
                    );
                    assert_eq!(
                        presence_upsert_user(null_mut(), c"{\"id\":\"a\"}".as_ptr()),
                        PresenceResult::PRESENCE_ERR_NULL
                    );
                    assert_eq!(
                        presence_query_users(engine, 0, c"{}".as_ptr(), null_mut()),
                        PresenceResult::PRESENCE_ERR_NULL
                    );
                    assert_eq!(
                        presence_add_delivery_listener(engine, None, null_mut(), &mut out),
                        PresenceResult::PRESENCE_ERR_NULL
                    );
                    assert!(!last_error().is_empty());
                }
                24 => {
                    // Save and load through the C ABI (load only works without connections).
                    let path = CString::new(
                        std::env::temp_dir()
                            .join(format!("presence-cabi-{}.json", std::process::id()))
                            .to_str()
                            .unwrap(),
                    )
                    .unwrap();
                    if check(presence_save(engine, path.as_ptr()), "save") {
                        let r = presence_load(engine, path.as_ptr());
                        check(r, "load");
                    }
                }
                25 => {
                    // Several connections (known, closed, unknown or 0) drained into one
                    // batch: all or nothing, each info naming a listed connection, each
                    // connection's events in `seq` order.
                    let listed: Vec<u64> =
                        (0..input.byte() % 5).map(|_| conns[input.byte() as usize % conns.len()]).collect();
                    let max_each = u32::from(input.byte() % 4);
                    let mut batch = null_mut();
                    assert!(check(presence_batch_new(&mut batch), "batch_new"));
                    let ok = check(
                        presence_poll_batch_many(engine, listed.as_ptr(), listed.len() as u32, max_each, batch),
                        "poll_batch_many",
                    );
                    let n = presence_batch_len(batch);
                    assert!(ok || n == 0, "a failed poll left {n} events");
                    assert!(n as usize <= listed.len() * max_each as usize);
                    let mut last_seq = std::collections::HashMap::new();
                    for i in 0..n {
                        let info = &*presence_batch_event(batch, i);
                        assert!(listed.contains(&info.connection_id));
                        let last = last_seq.insert(info.connection_id, info.seq).unwrap_or(0);
                        assert!(info.seq > last, "connection {}: seq {} after {last}", info.connection_id, info.seq);
                    }
                    presence_batch_free(batch);
                }
                _ => {
                    let mut out = null_mut();
                    if check(presence_get_user(engine, 0, c"a".as_ptr(), &mut out), "get_user host") {
                        take_json(out, "get_user host");
                    }
                }
            }
        }
    }
    unsafe {
        let mut n = 0;
        check(presence_pump(engine, &mut n), "final pump");
        presence_engine_free(engine);
    }
    drop(contexts);
});
