//! One supported time range, 1970-01-01T00:00:00.000Z to 9999-12-31T23:59:59.999Z: every
//! door a time comes in by answers `INVALID` outside it and changes nothing, and the edges
//! themselves are accepted, rendered as the instant they are, and survive save and load.
mod common;

use common::{manual_engine, T0};
use presence::channel::ChannelPatch;
use presence::time::{MAX_MILLIS, MIN_MILLIS};
use presence::{ConnectionId, Engine, ErrorKind, UserPatch};

const OUTSIDE: [&str; 4] = [
    "9999-12-31T23:59:59.999-01:00", // year 10000 in UTC
    "0000-01-01T00:00:00+01:00",     // year -1 in UTC
    "1969-12-31T23:59:59.999Z",
    "1970-01-01T00:59:59.999+01:00",
];

fn invalid(result: presence::Result<()>) -> String {
    let e = result.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Invalid, "{}", e.message());
    assert!(e.message().contains("outside the supported time range"), "{}", e.message());
    e.message().to_string()
}

#[test]
fn set_time_outside_the_range_is_invalid_and_moves_nothing() {
    let e = manual_engine("");
    for t in [MAX_MILLIS + 1, 253_402_300_800_000, i64::MAX] {
        invalid(e.set_time(t));
        assert_eq!(e.now(), T0);
    }
    e.set_time(MAX_MILLIS).unwrap();
    e.upsert_user(&UserPatch::id("late")).unwrap();
    let user = e.get_user(ConnectionId::HOST, "late").unwrap();
    assert_eq!(user["created_at"], "9999-12-31T23:59:59.999Z");
}

#[test]
fn start_time_outside_the_range_is_invalid() {
    for start in [-1, MAX_MILLIS + 1, i64::MAX, i64::MIN] {
        let e = Engine::from_json(Some(&format!(r#"{{"clock":"manual","start_time_ms":{start}}}"#)))
            .err()
            .expect("out of range");
        assert_eq!(e.kind(), ErrorKind::Invalid, "{start}: {}", e.message());
        assert!(e.message().contains("start_time_ms"), "{}", e.message());
    }
    for start in [MIN_MILLIS, MAX_MILLIS] {
        let e = Engine::from_json(Some(&format!(r#"{{"clock":"manual","start_time_ms":{start}}}"#))).unwrap();
        assert_eq!(e.now(), start);
    }
}

#[test]
fn last_message_at_outside_the_range_is_invalid_in_json_and_typed() {
    let e = manual_engine("");
    e.upsert_channel_json(r#"{"cid":"team:red","last_message_at":"2019-01-07T13:17:42.375Z"}"#).unwrap();
    let before = e.query_channels_json(ConnectionId::HOST, r#"{"filter_conditions":{}}"#).unwrap();
    for t in OUTSIDE {
        invalid(e.upsert_channel_json(&format!(r#"{{"cid":"team:red","last_message_at":"{t}"}}"#)));
        invalid(e.upsert_channel_json(&format!(r#"{{"cid":"team:new","last_message_at":"{t}"}}"#)));
    }
    for t in [MAX_MILLIS + 1, -1, i64::MAX, i64::MIN] {
        let patch =
            ChannelPatch { cid: "team:red".into(), last_message_at: Some(Some(t)), ..Default::default() };
        invalid(e.upsert_channel(&patch));
    }
    assert_eq!(e.query_channels_json(ConnectionId::HOST, r#"{"filter_conditions":{}}"#).unwrap(), before);
    assert_eq!(e.counts().channels, 1, "no channel was created by a rejected upsert");
}

#[test]
fn the_edges_survive_save_and_load() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("edges.json");
    let e = manual_engine("");
    e.upsert_channel_json(r#"{"cid":"team:first","last_message_at":"1970-01-01T01:00:00+01:00"}"#).unwrap();
    e.upsert_channel_json(r#"{"cid":"team:last","last_message_at":"9999-12-31T22:59:59.999-01:00"}"#)
        .unwrap();
    e.set_time(MAX_MILLIS).unwrap();
    let c = e.connect(&UserPatch::id("u")).unwrap();
    e.disconnect(c).unwrap();
    e.save(&path).unwrap();

    let loaded = manual_engine("");
    loaded.load(&path).unwrap();
    let user = loaded.get_user(ConnectionId::HOST, "u").unwrap();
    assert_eq!(user["last_active"], "9999-12-31T23:59:59.999Z");
    let channels =
        loaded.query_channels(ConnectionId::HOST, r#"{"filter_conditions":{},"sort":{"cid":1}}"#).unwrap();
    let times: Vec<&str> = channels["channels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["channel"]["last_message_at"].as_str().unwrap())
        .collect();
    assert_eq!(times, ["1970-01-01T00:00:00.000Z", "9999-12-31T23:59:59.999Z"]);
}

#[test]
fn a_snapshot_with_a_time_outside_the_range_is_rejected_whole() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("outside.json");
    for t in OUTSIDE {
        std::fs::write(
            &path,
            format!(
                r#"{{"format":"presence-engine","version":1,"users":[{{"id":"a","created_at":"{t}"}}],"channels":[]}}"#
            ),
        )
        .unwrap();
        let e = manual_engine("");
        e.upsert_user(&UserPatch::id("kept")).unwrap();
        let err = e.load(&path).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Json, "{}", err.message());
        assert!(err.message().contains("outside the supported time range"), "{}", err.message());
        assert!(e.user("kept").is_ok());
    }
}
