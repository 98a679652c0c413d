//! User JSON through upsert and connect: any input is accepted or fails with
//! Json/Invalid/Limit, and every accepted user renders and round-trips through a view.
#![no_main]
use libfuzzer_sys::fuzz_target;
use presence::{Answer, ConnectionId, Engine, ErrorKind};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let e = Engine::from_json(Some(r#"{"clock":"manual","max_connections_per_user":3}"#)).unwrap();
    let observer = e.connect_json(r#"{"id":"observer"}"#).unwrap();
    e.upsert_channel_json(r#"{"cid":"t:x","members":["observer"]}"#).unwrap();
    e.start_watching(observer, "t:x", true).unwrap();
    for (i, result) in [
        e.upsert_user_json(text).map(|_| ()),
        e.connect_json(text).map(|_| ()),
        e.connect_json(text).map(|_| ()),
    ]
    .into_iter()
    .enumerate()
    {
        if let Err(err) = result {
            assert!(
                matches!(err.kind(), ErrorKind::Json | ErrorKind::Invalid | ErrorKind::Limit),
                "step {i} {text:?}: {err}"
            );
            assert!(!err.message().is_empty());
        }
    }
    let Ok(v) = serde_json::from_str::<serde_json::Value>(text) else { return };
    let Some(id) = v.get("id").and_then(|i| i.as_str()) else { return };
    if let Ok(own) = e.get_user(ConnectionId::HOST, id).map(|u| u.to_value()) {
        assert_eq!(own["id"], serde_json::json!(id), "rendered id differs: {own}");
        let _ = e.add_members("t:x", &[id.to_string()]);
        let public = e.get_user(observer, id).unwrap().to_value();
        assert!(public.get("invisible").is_none() || id == "observer", "{public}");
        if own["invisible"] == serde_json::json!(true) && id != "observer" {
            assert_eq!(public["online"], serde_json::json!(false), "{public}");
        }
        let _ = e.set_invisible(id, true);
        let _ = e.poll_events(observer, usize::MAX).unwrap();
    }
});
