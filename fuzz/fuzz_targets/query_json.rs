//! Query JSON for users and channels, as the host and as a connection: accepted or
//! Json/Invalid/Limit, never a panic; answers have the documented shape and respect the
//! limit; an invisible user never matches `online` for another viewer.
#![no_main]
use libfuzzer_sys::fuzz_target;
use presence::{Answer, ConnectionId, Engine, ErrorKind};
use std::sync::OnceLock;

fn engine() -> &'static (Engine, ConnectionId) {
    static E: OnceLock<(Engine, ConnectionId)> = OnceLock::new();
    E.get_or_init(|| {
        let e = Engine::from_json(Some(r#"{"clock":"manual","start_time_ms":1000}"#)).unwrap();
        for i in 0..40 {
            let _ = e.upsert_user_json(
                &serde_json::json!({"id": format!("u{i}"), "n": i, "tag": (["x","y"][i % 2]), "status": if i % 3 == 0 { Some("busy") } else { None }})
                    .to_string(),
            );
            if i % 4 == 0 {
                e.set_time(1000 + i as i64).unwrap();
                let _ = e.connect_json(&format!(r#"{{"id":"u{i}"}}"#));
            }
        }
        e.connect_json(r#"{"id":"ghost","invisible":true}"#).unwrap();
        for ch in 0..10 {
            let members: Vec<String> = (0..5).map(|k| format!("u{}", (ch * 3 + k) % 40)).collect();
            e.upsert_channel_json(&serde_json::json!({"cid": format!("t:c{ch}"), "members": members, "ghost": ch}).to_string())
                .unwrap();
        }
        let viewer = e.connect_json(r#"{"id":"viewer"}"#).unwrap();
        (e, viewer)
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let (e, viewer) = engine();
    for who in [ConnectionId::HOST, *viewer] {
        match e.query_users(who, text) {
            Ok(answer) => {
                let v = answer.to_value();
                let users = v["users"].as_array().expect("users array");
                assert!(users.len() <= 100);
                if who != ConnectionId::HOST {
                    for u in users {
                        if u["id"] == "ghost" {
                            assert_eq!(u["online"], serde_json::json!(false), "{u}");
                        }
                        assert!(u.get("invisible").is_none() || u["id"] == "viewer");
                    }
                }
            }
            Err(err) => assert!(
                matches!(err.kind(), ErrorKind::Json | ErrorKind::Invalid | ErrorKind::Limit),
                "query_users {text:?}: {err}"
            ),
        }
        match e.query_channels(who, text) {
            Ok(answer) => {
                let v = answer.to_value();
                let chans = v["channels"].as_array().expect("channels array");
                assert!(chans.len() <= 100);
            }
            Err(err) => assert!(
                matches!(err.kind(), ErrorKind::Json | ErrorKind::Invalid | ErrorKind::Limit),
                "query_channels {text:?}: {err}"
            ),
        }
    }
    // Subscriptions from presence/watch queries must not pile up across runs.
    let _ = e.poll_events(*viewer, usize::MAX);
});
