//! Channel JSON and member-id arrays: accepted or Json/Invalid/NotFound/Limit; the engine
//! stays consistent (watcher counts match watcher lists, member counts match members).
#![no_main]
use libfuzzer_sys::fuzz_target;
use presence::{Answer, ConnectionId, Engine, ErrorKind};

fn check(e: &Engine) {
    let all = e.query_channels(ConnectionId::HOST, r#"{"limit":100}"#).unwrap().to_value();
    for ch in all["channels"].as_array().unwrap() {
        let members = ch["members"].as_array().unwrap().len() as u64;
        assert_eq!(ch["channel"]["member_count"].as_u64(), Some(members), "{ch}");
        let watchers = ch["watchers"].as_array().unwrap().len() as u64;
        assert_eq!(ch["watcher_count"].as_u64(), Some(watchers), "{ch}");
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let e = Engine::from_json(Some(r#"{"max_subscriptions_per_connection":4}"#)).unwrap();
    let c = e.connect_json(r#"{"id":"w"}"#).unwrap();
    e.upsert_channel_json(r#"{"cid":"t:x","members":["a"]}"#).unwrap();
    e.start_watching(c, "t:x", true).unwrap();
    let ok = |r: presence::Result<()>, what: &str| {
        if let Err(err) = r {
            assert!(
                matches!(
                    err.kind(),
                    ErrorKind::Json | ErrorKind::Invalid | ErrorKind::NotFound | ErrorKind::Limit
                ),
                "{what} {text:?}: {err}"
            );
        }
    };
    ok(e.upsert_channel_json(text), "upsert_channel");
    check(&e);
    ok(e.add_members_json("t:x", text), "add_members");
    check(&e);
    ok(e.remove_members_json("t:x", text), "remove_members");
    check(&e);
    // The text as a cid.
    ok(e.start_watching(c, text, true), "watch");
    ok(e.stop_watching(c, text), "stop_watching");
    ok(e.delete_channel(text), "delete_channel");
    check(&e);
    let _ = e.poll_events(c, usize::MAX).unwrap();
});
