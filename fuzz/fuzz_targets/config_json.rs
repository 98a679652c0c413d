//! Config JSON: any input either builds an engine or fails with Json/Invalid; an engine
//! built from it works (connect, watch, query, time, tick) without panicking.
#![no_main]
use libfuzzer_sys::fuzz_target;
use presence::{ConnectionId, Engine, ErrorKind};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    match Engine::from_json(Some(text)) {
        Err(e) => assert!(matches!(e.kind(), ErrorKind::Json | ErrorKind::Invalid), "config {text:?}: {e}"),
        Ok(engine) => {
            let c = engine.connect_json(r#"{"id":"a","status":"s"}"#);
            let _ = engine.upsert_channel_json(r#"{"cid":"t:x","members":["a","b"]}"#);
            if let Ok(c) = c {
                let _ = engine.watch_channel_state(c, "t:x", true);
                let _ = engine.query_users(c, r#"{"presence":true}"#);
                let _ = engine.poll_events(c, usize::MAX);
            }
            let _ = engine.query_channels(ConnectionId::HOST, "{}");
            let now = engine.now();
            let _ = engine.set_time(now.saturating_add(1_000_000_000));
            engine.tick().expect("tick on a healthy engine");
            // The end of the supported range exercises saturation of every timer.
            let _ = engine.set_time(presence::time::MAX_MILLIS);
            engine.tick().expect("tick on a healthy engine");
            let _ = engine.get_user(ConnectionId::HOST, "a").unwrap();
        }
    }
});
