//! Whatever the API accepts survives `save` then `load`: random operation sequences,
//! times near both ends of the supported range in random offsets included, end in a
//! snapshot that loads into an engine showing every user and channel as before (offline),
//! and that saves again to the same bytes. Times outside the range answer `INVALID`.
mod common;

use chrono::{FixedOffset, SecondsFormat, TimeZone};
use common::{manual_engine, Recorder, MINUTE};
use presence::time::{MAX_MILLIS, MIN_MILLIS};
use presence::{ConnectionId, Engine, ErrorKind, UserPatch};
use proptest::prelude::*;
use serde_json::{json, Value};

const USERS: [&str; 5] = ["ann", "bo", "cé", "dan", "eve"];
const CIDS: [&str; 3] = ["team:red", "dm:x", "game:1"];
const DAY: i64 = 86_400_000;

#[derive(Debug, Clone)]
enum Op {
    Upsert {
        user: usize,
        status: Option<Option<String>>,
        invisible: Option<bool>,
        custom: Option<(String, Value)>,
    },
    Connect(usize),
    Disconnect(usize),
    SetTime(i64),
    Tick,
    Channel {
        cid: usize,
        members: Vec<usize>,
        last_message_at: Option<(i64, i32)>,
        custom: Option<Value>,
    },
    ClearLastMessage(usize),
    RemoveMember(usize, usize),
    DeleteChannel(usize),
}

/// A time near an edge of the supported range, or anywhere inside it.
fn instant() -> impl Strategy<Value = i64> {
    prop_oneof![
        (MIN_MILLIS - DAY..MIN_MILLIS + DAY),
        (MAX_MILLIS - DAY..MAX_MILLIS + DAY),
        (MIN_MILLIS..=MAX_MILLIS),
    ]
}

fn value() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(Value::from),
        "\\PC{0,8}".prop_map(Value::from),
        Just(json!({"nested": [1, "two", null, {"three": true}]})),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    let user = 0..USERS.len();
    let cid = 0..CIDS.len();
    prop_oneof![
        (
            user.clone(),
            proptest::option::of(proptest::option::of("\\PC{0,12}")),
            proptest::option::of(any::<bool>()),
            proptest::option::of(("[a-z]{1,3}", value()))
        )
            .prop_map(|(user, status, invisible, custom)| Op::Upsert {
                user,
                status,
                invisible,
                custom
            }),
        user.clone().prop_map(Op::Connect),
        (0..4usize).prop_map(Op::Disconnect),
        prop_oneof![(0..10 * MINUTE).prop_map(|d| -d - 1), instant()].prop_map(Op::SetTime),
        Just(Op::Tick),
        (
            cid.clone(),
            proptest::collection::vec(user.clone(), 0..3),
            proptest::option::of((instant(), -1439..=1439i32)),
            proptest::option::of(value())
        )
            .prop_map(|(cid, members, last_message_at, custom)| Op::Channel {
                cid,
                members,
                last_message_at,
                custom
            }),
        cid.clone().prop_map(Op::ClearLastMessage),
        (cid.clone(), user).prop_map(|(c, u)| Op::RemoveMember(c, u)),
        cid.prop_map(Op::DeleteChannel),
    ]
}

/// `ms` written in a fixed offset of `minutes`, as a client might send it; `None` when the
/// local time has no RFC 3339 spelling (a year outside 0..=9999).
fn rfc3339(ms: i64, minutes: i32) -> Option<String> {
    let offset = FixedOffset::east_opt(minutes * 60)?;
    let text = offset.timestamp_millis_opt(ms).single()?.to_rfc3339_opts(SecondsFormat::Millis, false);
    text.as_bytes()[4].eq(&b'-').then_some(text)
}

fn in_range(ms: i64) -> bool {
    (MIN_MILLIS..=MAX_MILLIS).contains(&ms)
}

fn apply(e: &Engine, op: &Op, open: &mut Vec<ConnectionId>, now: &mut i64) {
    match op {
        Op::Upsert { user, status, invisible, custom } => {
            let mut patch = UserPatch::id(USERS[*user]);
            patch.status = status.clone();
            patch.invisible = *invisible;
            patch.custom = custom.iter().map(|(k, v)| (format!("x{k}"), Some(v.clone()))).collect();
            e.upsert_user(&patch).unwrap();
        }
        Op::Connect(user) => open.push(e.connect(&UserPatch::id(USERS[*user])).unwrap()),
        Op::Disconnect(n) => {
            if !open.is_empty() {
                let c = open.remove(n % open.len());
                e.disconnect(c).unwrap();
            }
        }
        Op::SetTime(t) => {
            let t = if *t < 0 { now.saturating_sub(*t).min(MAX_MILLIS + 1) } else { *t };
            match e.set_time(t) {
                Ok(()) => *now = t,
                Err(err) if !in_range(t) => assert_eq!(err.kind(), ErrorKind::Invalid, "{t}"),
                Err(err) => assert!(t < *now && err.kind() == ErrorKind::State, "{t}: {err}"),
            }
        }
        Op::Tick => e.tick().unwrap(),
        Op::Channel { cid, members, last_message_at, custom } => {
            let mut body =
                json!({"cid": CIDS[*cid], "members": members.iter().map(|&u| USERS[u]).collect::<Vec<_>>()});
            if let Some(v) = custom {
                body["topic"] = v.clone();
            }
            let mut accepted = true;
            if let Some((ms, minutes)) = last_message_at {
                let Some(text) = rfc3339(*ms, *minutes) else {
                    return;
                };
                body["last_message_at"] = json!(text);
                accepted = in_range(*ms);
            }
            match e.upsert_channel_json(&body.to_string()) {
                Ok(()) => assert!(accepted, "{body} was accepted"),
                Err(err) => {
                    assert!(!accepted, "{body}: {err}");
                    assert_eq!(err.kind(), ErrorKind::Invalid, "{body}: {err}");
                }
            }
        }
        Op::ClearLastMessage(cid) => {
            let _ = e.upsert_channel_json(&json!({"cid": CIDS[*cid], "last_message_at": null}).to_string());
        }
        Op::RemoveMember(cid, user) => {
            let _ = e.remove_members(CIDS[*cid], &[USERS[*user].to_string()]);
        }
        Op::DeleteChannel(cid) => {
            let _ = e.delete_channel(CIDS[*cid]);
        }
    }
}

/// Every user (own view, `online` aside) and every channel with its member ids.
fn picture(e: &Engine) -> (Vec<Value>, Value) {
    let users = USERS
        .iter()
        .filter_map(|id| e.get_user(ConnectionId::HOST, id).ok())
        .map(|mut u| {
            u.as_object_mut().unwrap().remove("online");
            u
        })
        .collect();
    let mut channels = e
        .query_channels(ConnectionId::HOST, r#"{"filter_conditions":{},"sort":{"cid":1},"limit":100}"#)
        .unwrap();
    for ch in channels["channels"].as_array_mut().unwrap() {
        let members = ch["members"].as_array().unwrap().iter().map(|m| m["user_id"].clone()).collect();
        ch["members"] = Value::Array(members);
        ch.as_object_mut().unwrap().remove("watchers");
    }
    (users, channels)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn any_reachable_state_saves_and_loads_back_equal(
        start in prop_oneof![Just(MIN_MILLIS), Just(MAX_MILLIS - 5 * MINUTE), MIN_MILLIS..=MAX_MILLIS],
        grace in prop_oneof![Just(0u64), Just(30_000u64)],
        ops in proptest::collection::vec(op(), 1..40),
    ) {
        let e = Engine::from_json(Some(&format!(
            r#"{{"clock":"manual","start_time_ms":{start},"offline_grace_ms":{grace},"last_active_refresh_ms":60000}}"#
        ))).unwrap();
        let (mut open, mut now) = (Vec::new(), start);
        for op in &ops {
            apply(&e, op, &mut open, &mut now);
        }
        let dir = tempfile::tempdir().unwrap();
        let (first, second) = (dir.path().join("first.json"), dir.path().join("second.json"));
        e.save(&first).unwrap();

        let loaded = manual_engine("");
        loaded.load(&first).unwrap();
        prop_assert_eq!(picture(&loaded), picture(&e));
        for id in USERS {
            if let Ok(u) = loaded.get_user(ConnectionId::HOST, id) {
                prop_assert_eq!(&u["online"], &json!(false), "{} loads offline", id);
            }
        }
        loaded.save(&second).unwrap();
        prop_assert_eq!(std::fs::read(&first).unwrap(), std::fs::read(&second).unwrap());
    }
}

/// Before: loading while a user was inside the offline grace dropped the grace timer and
/// its event, so a host following events kept that user online while `get_user` said
/// offline.
#[test]
fn load_during_an_offline_grace_emits_the_offline_event() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("empty.json");
    manual_engine("").save(&path).unwrap();

    let e = manual_engine(r#""offline_grace_ms":30000"#);
    let events = Recorder::attach(&e);
    let c = e.connect(&UserPatch::id("alice")).unwrap();
    e.upsert_user(&UserPatch::id("bob")).unwrap();
    let b = e.connect(&UserPatch::id("bob")).unwrap();
    e.disconnect(c).unwrap();
    e.disconnect(b).unwrap();
    assert_eq!(
        events.take(),
        [
            "user.presence.changed alice online",
            "user.presence.changed bob online",
            "connection.closed alice online",
            "connection.closed bob online"
        ],
        "inside the grace both still show online"
    );
    e.load(&path).unwrap();
    assert_eq!(events.take(), ["user.presence.changed alice offline", "user.presence.changed bob offline"]);
    e.set_time(e.now() + MINUTE).unwrap();
    e.tick().unwrap();
    assert!(events.take().is_empty(), "no grace expires after the load");

    // Loading back a snapshot that holds them: the host's view and get_user agree.
    let with_users = dir.path().join("users.json");
    let source = manual_engine(r#""offline_grace_ms":30000"#);
    let c = source.connect(&UserPatch::id("alice")).unwrap();
    source.disconnect(c).unwrap();
    source.save(&with_users).unwrap();
    let c = e.connect(&UserPatch::id("alice")).unwrap();
    e.disconnect(c).unwrap();
    events.take();
    e.load(&with_users).unwrap();
    assert_eq!(events.take(), ["user.presence.changed alice offline"]);
    assert_eq!(e.get_user(ConnectionId::HOST, "alice").unwrap()["online"], false);
}
