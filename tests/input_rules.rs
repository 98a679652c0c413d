//! Rules every input passes through whatever the entry point: error messages stay small
//! whatever they quote, ids cannot hide invisible characters, and numbers at the edge of
//! their type never wrap.
mod common;

use common::{manual_engine, Recorder, MINUTE};
use presence::error::MAX_MESSAGE_BYTES;
use presence::ffi::{presence_engine_free, presence_engine_new, presence_get_user, presence_last_error};
use presence::{Answer, ConnectionId, Counts, ErrorKind};
use std::ffi::{CStr, CString};
use std::ptr;

const HUGE: usize = 50 * 1024 * 1024;

fn assert_bounded(message: &str, quoted_len: usize) {
    assert!(message.len() <= MAX_MESSAGE_BYTES, "message of {} bytes", message.len());
    assert!(message.contains(&format!("{quoted_len} bytes")), "message does not say the length: {message}");
}

#[test]
fn errors_quote_a_huge_id_in_a_few_hundred_bytes() {
    let e = manual_engine("");
    let id = "x".repeat(HUGE);
    let err = e.get_user(ConnectionId::HOST, &id).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert!(err.message().starts_with("unknown user \"xxx"), "{}", err.message());
    assert_bounded(err.message(), HUGE);
    for err in [
        e.set_invisible(&id, true).unwrap_err(),
        e.start_watching(ConnectionId(1), &format!("team:{id}"), false).unwrap_err(),
        e.upsert_user_json(&format!(r#"{{"id":"a {id}"}}"#)).unwrap_err(),
        e.stop_watching(ConnectionId(1), &id).unwrap_err(),
    ] {
        assert!(err.message().len() <= MAX_MESSAGE_BYTES, "{:?}: {} bytes", err.kind(), err.message().len());
    }
}

#[test]
fn errors_naming_a_huge_query_key_are_cut_and_say_how_long_they_were() {
    let e = manual_engine("");
    let key = "k".repeat(HUGE);
    let err = e.query_users(ConnectionId::HOST, &format!(r#"{{"{key}": 1}}"#)).unwrap_err();
    assert!(err.message().len() <= MAX_MESSAGE_BYTES, "{} bytes", err.message().len());
    assert!(err.message().contains("bytes in all"), "{}", &err.message()[..100]);
}

#[test]
fn c_last_error_for_a_huge_unknown_id_is_bounded() {
    let mut engine = ptr::null_mut();
    unsafe {
        assert_eq!(presence_engine_new(ptr::null(), &mut engine) as u32, 0);
        let id = CString::new("y".repeat(HUGE)).unwrap();
        let mut out = ptr::null_mut();
        let r = presence_get_user(engine, 0, id.as_ptr(), &mut out);
        assert_eq!(r as u32, ErrorKind::NotFound.code());
        assert!(out.is_null());
        let message = CStr::from_ptr(presence_last_error()).to_str().unwrap().to_owned();
        assert!(message.starts_with("presence_get_user: unknown user \"yyy"), "{}", &message[..60]);
        assert_bounded(&message, HUGE);
        presence_engine_free(engine);
    }
}

/// Zero-width space, zero-width joiner, word joiner, byte order mark, soft hyphen, a
/// right-to-left override and a tag character: all general category Cf.
const FORMAT_CHARACTERS: [char; 7] =
    ['\u{200B}', '\u{200D}', '\u{2060}', '\u{FEFF}', '\u{AD}', '\u{202E}', '\u{E0041}'];

#[test]
fn ids_with_format_characters_are_invalid_everywhere() {
    let e = manual_engine("");
    e.connect_json(r#"{"id":"alice"}"#).unwrap();
    e.upsert_channel_json(r#"{"type":"team","id":"red"}"#).unwrap();
    for c in FORMAT_CHARACTERS {
        let user = format!("alice{c}");
        let channel = format!("red{c}");
        let attempts = [
            e.connect_json(&serde_json::json!({"id": user}).to_string()).map(|_| ()),
            e.connect_user(&user).map(|_| ()),
            e.upsert_user_json(&serde_json::json!({"id": user}).to_string()),
            e.upsert_channel_json(&serde_json::json!({"type": "team", "id": channel}).to_string()),
            e.upsert_channel_json(
                &serde_json::json!({"type": "team", "id": "blue", "members": [user]}).to_string(),
            ),
            e.add_members_json("team:red", &serde_json::json!([user]).to_string()),
        ];
        for (i, r) in attempts.into_iter().enumerate() {
            let err = r.expect_err(&format!("attempt {i} with U+{:04X} accepted", c as u32));
            assert_eq!(err.kind(), ErrorKind::Invalid, "attempt {i}: {}", err.message());
            assert!(err.message().contains("format character"), "{}", err.message());
        }
    }
    // Nothing was created: one user, one channel.
    assert_eq!(e.counts(), Counts { users: 1, connections: 1, channels: 1 });
    // Letters from other scripts and emoji without joiners stay valid.
    for id in ["Ålice", "игрок", "プレイヤー", "😀"] {
        e.connect_json(&serde_json::json!({"id": id}).to_string()).unwrap();
    }
}

/// Year 9000, far beyond any real deadline but inside the supported time range.
const FAR: i64 = 221_845_392_000_000;

#[test]
fn durations_beyond_i64_mean_never_and_never_wrap() {
    for never in [u64::MAX, i64::MAX as u64 + 1, i64::MAX as u64] {
        let e = manual_engine(&format!(
            r#""connection_timeout_ms":{never},"offline_grace_ms":{never},"last_active_refresh_ms":{never}"#
        ));
        let host = Recorder::attach(&e);
        let alice = e.connect_json(r#"{"id":"alice"}"#).unwrap();
        e.connect_json(r#"{"id":"bob"}"#).unwrap();
        let last_active = e.get_user(ConnectionId::HOST, "alice").unwrap().to_value()["last_active"].clone();
        e.tick().unwrap();
        e.set_time(FAR).unwrap();
        e.tick().unwrap();
        // No timeout, no refresh.
        assert_eq!(e.counts().connections, 2, "{never}: a connection was closed");
        assert_eq!(e.get_user(ConnectionId::HOST, "alice").unwrap().to_value()["last_active"], last_active);
        // A grace without end: still online after the last connection closed.
        e.disconnect(alice).unwrap();
        e.set_time(FAR + 365 * 24 * 60 * MINUTE).unwrap();
        e.tick().unwrap();
        assert_eq!(e.get_user(ConnectionId::HOST, "alice").unwrap().to_value()["online"], true, "{never}");
        assert_eq!(
            host.take(),
            [
                "user.presence.changed alice online",
                "user.presence.changed bob online",
                "connection.closed alice online"
            ],
            "{never}"
        );
    }
}

#[test]
fn a_deadline_that_overflows_the_clock_is_never() {
    let e = manual_engine(
        r#""connection_timeout_ms":9223372036854775000,"offline_grace_ms":9223372036854775000"#,
    );
    let alice = e.connect_json(r#"{"id":"alice"}"#).unwrap();
    e.set_time(FAR).unwrap();
    e.tick().unwrap();
    e.disconnect(alice).unwrap();
    e.tick().unwrap();
    assert_eq!(e.get_user(ConnectionId::HOST, "alice").unwrap().to_value()["online"], true);
}

#[test]
fn numeric_config_keys_outside_their_type_are_rejected_with_a_message() {
    for (key, value) in [
        ("connection_timeout_ms", "18446744073709551616"),
        ("offline_grace_ms", "-1"),
        ("last_active_refresh_ms", "1.5"),
        ("start_time_ms", "9223372036854775808"),
        ("start_time_ms", "-1"),
        ("max_connections_per_user", "4294967296"),
        ("max_subscriptions_per_connection", "-1"),
        ("connection_queue_capacity", "1e3"),
        ("query_limit_max", "0"),
        ("last_active_refresh_ms", "0"),
    ] {
        let err = presence::Config::from_json(&format!(r#"{{"{key}":{value}}}"#)).unwrap_err();
        assert!(
            matches!(err.kind(), ErrorKind::Json | ErrorKind::Invalid),
            "{key}={value}: {:?}",
            err.kind()
        );
        assert!(err.message().starts_with("config"), "{key}={value}: {}", err.message());
    }
}
