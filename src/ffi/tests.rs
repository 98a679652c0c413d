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
fn a_panic_becomes_presence_err_panic_and_the_engine_stays_usable() {
    let e = new_engine();
    let engine = unsafe { &(*e).engine };
    let calls = Arc::new(AtomicU32::new(0));
    let seen = calls.clone();
    // A listener (Rust, so it may panic) that panics on its first event only.
    engine.add_listener(ListenerFilter::all(), move |_| {
        if seen.fetch_add(1, Ordering::SeqCst) == 0 {
            panic!("listener exploded");
        }
    });
    let mut conn = 0;
    let r = unsafe { presence_connect(e, c"{\"id\":\"a\"}".as_ptr(), &mut conn) };
    assert_eq!(r, PresenceResult::PRESENCE_ERR_PANIC);
    let msg = last_error();
    assert!(msg.starts_with("presence_connect: internal error"), "{msg}");
    assert!(msg.contains("listener exploded"), "{msg}");
    assert_eq!(conn, 0, "out-parameters are written only on success");

    // The connection was made before the listener ran; the engine goes on working.
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
