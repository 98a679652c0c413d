//! Creating channels, adding and removing members, channel fields and cids, and channels
//! surviving save and load.
use crate::common::views::*;
use crate::common::*;
use presence::Counts;
use presence::{ConnectionId, Engine, ErrorKind};
use serde_json::{json, Value};

#[test]
fn upsert_channel_creates_the_channel_and_its_missing_members() {
    let e = manual_engine("");
    e.upsert_user_json(r#"{"id":"b","name":"Bee"}"#).unwrap();
    let rec = Recorder::attach(&e);
    e.upsert_channel_json(r#"{"type":"team","id":"red","members":["a","b"],"color":"red"}"#).unwrap();
    assert_eq!(e.counts(), Counts { users: 2, connections: 0, channels: 1 });
    assert_eq!(
        rec.take(),
        ["member.added a offline", "member.added b offline"],
        "membership events are emitted even without watchers (host listeners see all)"
    );
    // "a" did not exist: created with only its id. "b" is untouched.
    assert_eq!(e.get_user(HOST, "a").unwrap(), own(user("a"), false));
    assert_eq!(e.get_user(HOST, "b").unwrap(), own(with(user("b"), json!({"name":"Bee"})), false));
    assert_eq!(
        host_state(&e, "team:red"),
        json!({
            "channel": {"cid":"team:red","type":"team","id":"red","member_count":2,
                        "created_at":T0S,"updated_at":T0S,"color":"red"},
            "members": [member(own(user("a"), false)),
                        member(own(with(user("b"), json!({"name":"Bee"})), false))],
            "watcher_count": 0,
            "watchers": []
        })
    );
    // The cid form works too, and type/id may be repeated consistently.
    e.upsert_channel_json(r#"{"cid":"dm:a-b"}"#).unwrap();
    e.upsert_channel_json(r#"{"cid":"dm:x","type":"dm","id":"x"}"#).unwrap();
    assert_eq!(
        host_state(&e, "dm:a-b")["channel"],
        json!({"cid":"dm:a-b","type":"dm","id":"a-b","member_count":0,"created_at":T0S,"updated_at":T0S})
    );
    assert_eq!(e.counts(), Counts { users: 2, connections: 0, channels: 3 });
}

#[test]
fn upsert_adds_members_never_removes_and_merges_custom_fields() {
    let e = manual_engine("");
    e.upsert_channel_json(r#"{"type":"team","id":"red","members":["a","b"],"color":"red","size":1}"#)
        .unwrap();
    e.set_time(T0 + MINUTE).unwrap();
    let rec = Recorder::attach(&e);
    e.upsert_channel_json(
        r#"{"type":"team","id":"red","members":["c","a"],"color":null,"size":2,"motto":"go",
            "last_message_at":"2019-01-07T13:00:00.000Z"}"#,
    )
    .unwrap();
    assert_eq!(rec.take(), ["member.added c offline"], "a was already a member");
    let m1 = at_min(1);
    let c_user = json!({"id":"c","online":false,"invisible":false,"created_at":m1,"updated_at":m1});
    assert_eq!(
        host_state(&e, "team:red"),
        json!({
            "channel": {"cid":"team:red","type":"team","id":"red","member_count":3,
                        "created_at":T0S,"updated_at":m1,
                        "last_message_at":"2019-01-07T13:00:00.000Z","size":2,"motto":"go"},
            "members": [member(own(user("a"), false)), member(own(user("b"), false)), member(c_user)],
            "watcher_count": 0,
            "watchers": []
        })
    );
    // Managed fields cannot be set; a bad member id rejects the whole upsert.
    assert_eq!(kind(e.upsert_channel_json(r#"{"cid":"team:red","member_count":9}"#)), ErrorKind::Invalid);
    assert_eq!(
        kind(e.upsert_channel_json(r#"{"cid":"team:red","members":["ok","a b"]}"#)),
        ErrorKind::Invalid
    );
    assert_eq!(kind(e.upsert_channel_json(r#"{"cid":"team:red","members":"a"}"#)), ErrorKind::Json);
    assert_eq!(kind(e.upsert_channel_json(r#"{"cid":"team:red""#)), ErrorKind::Json);
    assert_eq!(e.counts(), Counts { users: 3, connections: 0, channels: 1 }, "user \"ok\" was not created");
    assert_eq!(host_state(&e, "team:red")["channel"]["member_count"], 3);
    assert!(rec.take().is_empty());
}

#[test]
fn add_and_remove_members_with_their_error_cases() {
    let e = manual_engine("");
    e.upsert_channel_json(r#"{"type":"team","id":"red","members":["a"]}"#).unwrap();
    e.upsert_user_json(r#"{"id":"zed"}"#).unwrap();
    let rec = Recorder::attach(&e);

    e.add_members_json("team:red", r#"["b","c","b","a"]"#).unwrap();
    assert_eq!(rec.take(), ["member.added b offline", "member.added c offline"]);
    e.add_members("team:red", &strings(&["d"])).unwrap();
    assert_eq!(rec.take(), ["member.added d offline"]);
    assert_eq!(e.counts(), Counts { users: 5, connections: 0, channels: 1 });

    // Unknown user: NotFound, nothing removed (not even the valid ids before it).
    assert_eq!(kind(e.remove_members_json("team:red", r#"["a","nobody"]"#)), ErrorKind::NotFound);
    assert_eq!(host_state(&e, "team:red")["channel"]["member_count"], 4);
    assert_eq!(kind(e.get_user(HOST, "nobody")), ErrorKind::NotFound);
    // An existing user who is not a member: a silent no-op.
    e.remove_members_json("team:red", r#"["zed"]"#).unwrap();
    assert!(rec.take().is_empty());

    e.remove_members_json("team:red", r#"["a","c"]"#).unwrap();
    assert_eq!(rec.take(), ["member.removed a offline", "member.removed c offline"]);
    e.remove_members("team:red", &strings(&["d"])).unwrap();
    assert_eq!(rec.take(), ["member.removed d offline"]);
    let members = member_ids(&host_state(&e, "team:red"));
    assert_eq!(members, ["b"]);
    assert_eq!(
        e.counts(),
        Counts { users: 5, connections: 0, channels: 1 },
        "removing members never deletes users"
    );

    // Malformed input.
    assert_eq!(kind(e.add_members_json("team:red", "[1]")), ErrorKind::Json);
    assert_eq!(kind(e.add_members_json("team:red", r#""a""#)), ErrorKind::Json);
    assert_eq!(kind(e.add_members_json("team:red", "[")), ErrorKind::Json);
    assert_eq!(kind(e.add_members_json("team:red", r#"["new1","a b"]"#)), ErrorKind::Invalid);
    assert_eq!(kind(e.add_members("team:red", &strings(&["new2", ""]))), ErrorKind::Invalid);
    assert_eq!(kind(e.remove_members_json("team:red", "{}")), ErrorKind::Json);
    assert_eq!(
        e.counts(),
        Counts { users: 5, connections: 0, channels: 1 },
        "a rejected add creates no user"
    );
    // Bad and unknown channels.
    assert_eq!(kind(e.add_members("Team:red", &strings(&["a"]))), ErrorKind::Invalid);
    assert_eq!(kind(e.add_members("team:blue", &strings(&["a"]))), ErrorKind::NotFound);
    assert_eq!(kind(e.remove_members("team:blue", &strings(&["a"]))), ErrorKind::NotFound);
    assert_eq!(kind(e.remove_members("team", &strings(&["a"]))), ErrorKind::Invalid);
    assert!(rec.take().is_empty());
}

#[test]
fn cid_validation_and_unknown_channels() {
    let e = manual_engine("");
    let c = e.connect_json(r#"{"id":"a"}"#).unwrap();
    let long_type = format!("{}:x", "t".repeat(65));
    let long_id = format!("t:{}", "x".repeat(65));
    let ok_id = format!("t:{}", "x".repeat(64));
    for bad in ["general", ":x", "t:", "Team:x", "t y:x", "t:a:b", "t:a b", "t:a\u{1}", &long_type, &long_id]
    {
        let json = json!({ "cid": bad }).to_string();
        assert_eq!(kind(e.upsert_channel_json(&json)), ErrorKind::Invalid, "{bad:?}");
        assert_eq!(kind(e.watch_channel(c, bad, false)), ErrorKind::Invalid, "{bad:?}");
        assert_eq!(kind(e.watch_channel_state(c, bad, true)), ErrorKind::Invalid, "{bad:?}");
        assert_eq!(kind(e.stop_watching(c, bad)), ErrorKind::Invalid, "{bad:?}");
        assert_eq!(kind(e.delete_channel(bad)), ErrorKind::Invalid, "{bad:?}");
        assert_eq!(kind(e.add_members(bad, &[])), ErrorKind::Invalid, "{bad:?}");
    }
    e.upsert_channel_json(&json!({ "cid": ok_id }).to_string()).unwrap();
    e.upsert_channel_json(r#"{"type":"a-z_0-9","id":"Ünïcødé.!"}"#).unwrap();
    assert_eq!(e.counts().channels, 2);
    for unknown in ["t:none", "team:red"] {
        assert_eq!(kind(e.watch_channel(c, unknown, false)), ErrorKind::NotFound);
        assert_eq!(kind(e.watch_channel_state(c, unknown, false)), ErrorKind::NotFound);
        assert_eq!(kind(e.stop_watching(c, unknown)), ErrorKind::NotFound);
        assert_eq!(kind(e.delete_channel(unknown)), ErrorKind::NotFound);
    }
    // Unknown connections.
    assert_eq!(kind(e.watch_channel(ConnectionId(99), &ok_id, false)), ErrorKind::NotFound);
    assert_eq!(kind(e.stop_watching(ConnectionId(99), &ok_id)), ErrorKind::NotFound);
    assert_eq!(kind(e.watch_channel(HOST, &ok_id, false)), ErrorKind::NotFound, "the host cannot watch");
}

#[test]
fn a_user_may_be_a_member_of_many_channels() {
    let e = manual_engine("");
    for (i, team) in ["red", "blue", "green"].iter().enumerate() {
        e.set_time(T0 + i as i64 * MINUTE).unwrap();
        e.upsert_channel_json(&json!({"type":"team","id":team,"members":["a", team]}).to_string()).unwrap();
    }
    let q = |who: &str| {
        let v = e
            .query_channels(
                HOST,
                &json!({"filter_conditions":{"members":{"$in":[who]}},"sort":{"cid":1}}).to_string(),
            )
            .unwrap();
        cids(&v)
    };
    assert_eq!(q("a"), ["team:blue", "team:green", "team:red"]);
    assert_eq!(q("blue"), ["team:blue"]);
    e.remove_members("team:blue", &strings(&["a"])).unwrap();
    assert_eq!(q("a"), ["team:green", "team:red"]);
    e.delete_channel("team:red").unwrap();
    assert_eq!(q("a"), ["team:green"]);
    assert_eq!(q("red"), Vec::<String>::new());
    assert_eq!(
        e.counts(),
        Counts { users: 4, connections: 0, channels: 2 },
        "deleting a channel keeps its users"
    );
}

#[test]
fn channel_fields_last_message_at_and_cid_consistency() {
    let e = manual_engine("");
    e.upsert_channel_json(r#"{"type":"team","id":"red","last_message_at":"2019-01-07T14:17:42.375+01:00"}"#)
        .unwrap();
    assert_eq!(host_state(&e, "team:red")["channel"]["last_message_at"], T0S, "normalized to UTC");
    e.set_time(T0 + MINUTE).unwrap();
    e.upsert_channel_json(r#"{"cid":"team:red","last_message_at":null}"#).unwrap();
    assert_eq!(
        host_state(&e, "team:red")["channel"],
        json!({"cid":"team:red","type":"team","id":"red","member_count":0,"created_at":T0S,"updated_at":at_min(1)})
    );
    e.set_time(T0 + 2 * MINUTE).unwrap();
    e.upsert_channel_json(r#"{"cid":"team:red"}"#).unwrap();
    assert_eq!(host_state(&e, "team:red")["channel"]["updated_at"], at_min(1), "no change, no update");
    assert_eq!(
        kind(e.upsert_channel_json(r#"{"type":"team","id":"red","cid":"team:blue"}"#)),
        ErrorKind::Json,
        "cid inconsistent with type and id"
    );
    assert_eq!(kind(e.upsert_channel_json(r#"{"type":"team"}"#)), ErrorKind::Json);
    assert_eq!(
        kind(e.upsert_channel_json(r#"{"cid":"team:red","last_message_at":"noon"}"#)),
        ErrorKind::Invalid
    );
    assert_eq!(kind(e.upsert_channel_json(r#"{"cid":"team:red","last_message_at":5}"#)), ErrorKind::Json);
    let huge = json!({"cid":"team:red","blob":"x".repeat(6000)});
    assert_eq!(
        kind(e.upsert_channel_json(&huge.to_string())),
        ErrorKind::Invalid,
        "5 KiB of custom data at most"
    );
    assert_eq!(e.counts().channels, 1);
    assert!(host_state(&e, "team:red")["channel"].get("blob").is_none());
}

/// A saved engine and what its channels looked like, and an engine that loaded the file
/// over a channel and user of its own.
struct SavedAndLoaded {
    /// The states of team:red, team:blue and dm:empty before the save.
    before: Vec<Value>,
    all_before: Value,
    loaded: Engine,
    path: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl SavedAndLoaded {
    fn new() -> SavedAndLoaded {
        let e = manual_engine("");
        e.upsert_user_json(r#"{"id":"alice","status":"away","name":"Alice"}"#).unwrap();
        e.upsert_channel_json(
            r#"{"type":"team","id":"red","members":["alice","bob"],"color":"red","last_message_at":"2019-01-07T13:00:00.000Z"}"#,
        )
        .unwrap();
        e.set_time(T0 + MINUTE).unwrap();
        e.upsert_channel_json(r#"{"cid":"team:blue","members":["carol"],"cfg":{"a":[1,2],"b":null}}"#)
            .unwrap();
        e.upsert_channel_json(r#"{"cid":"dm:empty"}"#).unwrap();
        e.set_time(T0 + 2 * MINUTE).unwrap();
        e.upsert_channel_json(r#"{"cid":"team:red","color":"crimson","members":["carol"]}"#).unwrap();
        let c = e.connect_json(r#"{"id":"bob","invisible":true}"#).unwrap();
        e.disconnect(c).unwrap();
        let before: Vec<Value> =
            ["team:red", "team:blue", "dm:empty"].iter().map(|cid| host_state(&e, cid)).collect();
        let all_before = e.query_channels(HOST, r#"{"sort":{"cid":1}}"#).unwrap();

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("presence.json");
        e.save(&path).unwrap();
        let loaded = manual_engine("");
        loaded.upsert_channel_json(r#"{"cid":"old:gone","members":["zed"]}"#).unwrap();
        loaded.load(&path).unwrap();
        SavedAndLoaded { before, all_before, loaded, path, _dir: dir }
    }
}

#[test]
fn save_then_load_gives_back_channels_with_members_and_custom_fields() {
    let SavedAndLoaded { before, all_before, loaded, .. } = &SavedAndLoaded::new();
    assert_eq!(
        loaded.counts(),
        Counts { users: 3, connections: 0, channels: 3 },
        "the load replaced what was there"
    );
    for (cid, state) in ["team:red", "team:blue", "dm:empty"].iter().zip(before) {
        assert_eq!(&host_state(loaded, cid), state, "{cid}");
    }
    assert_eq!(&loaded.query_channels(HOST, r#"{"sort":{"cid":1}}"#).unwrap(), all_before);
    assert_eq!(
        before[0]["channel"],
        json!({"cid":"team:red","type":"team","id":"red","member_count":3,"created_at":T0S,
               "updated_at":at_min(2),"last_message_at":"2019-01-07T13:00:00.000Z","color":"crimson"})
    );
    assert_eq!(
        before[1]["channel"]["cfg"],
        json!({"a":[1,2],"b":null}),
        "a null inside a custom object is kept"
    );
    assert_eq!(member_ids(&before[0]), ["alice", "bob", "carol"]);
    assert_eq!(kind(loaded.delete_channel("old:gone")), ErrorKind::NotFound);
    assert_eq!(kind(loaded.get_user(HOST, "zed")), ErrorKind::NotFound);
}

#[test]
fn a_loaded_engine_is_fully_wired_member_index_watching_and_presence_routes() {
    let SavedAndLoaded { before, loaded, path, .. } = &SavedAndLoaded::new();
    let by_member = |id: &str| {
        cids(&loaded.query_channels(HOST, &json!({"filter_conditions":{"members":id}}).to_string()).unwrap())
    };
    assert_eq!(by_member("carol"), ["team:red", "team:blue"]);
    assert_eq!(by_member("zed"), Vec::<String>::new());
    let dave = loaded.connect_json(r#"{"id":"dave"}"#).unwrap();
    loaded.watch_channel(dave, "team:red", true).unwrap();
    let bob = loaded.connect_json(r#"{"id":"bob"}"#).unwrap();
    assert_eq!(loaded.get_user(dave, "bob").unwrap()["online"], false, "bob's invisible flag was saved");
    let alice = loaded.connect_json(r#"{"id":"alice"}"#).unwrap();
    assert_eq!(
        poll(loaded, dave),
        [to(dave, "user.watching.start dave online"), to(dave, "user.presence.changed alice online")]
    );
    assert_eq!(kind(loaded.load(path)), ErrorKind::State, "no load while connections are open");
    loaded.disconnect(alice).unwrap();
    loaded.disconnect(bob).unwrap();
    loaded.disconnect(dave).unwrap();
    loaded.load(path).unwrap();
    assert_eq!(host_state(loaded, "team:red"), before[0], "watchers are not saved");
}
