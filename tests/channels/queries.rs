//! `query_users` and `query_channels`: every operator, field, sort and page, malformed
//! queries, views per viewer, and indexed filters answering like a scan.
use crate::common::views::*;
use crate::common::*;
use presence::time::format_millis;
use presence::{Answer, ConnectionId, Engine, ErrorKind};
use serde_json::{json, Value};

/// Five users with distinct created_at, custom fields, last_active and online flags:
/// ann (online, la +5), bob (online, la +6), cyd (never connected), dee (offline, la +8),
/// eve (never connected, updated at +9). Answers ann's connection.
fn user_fixture(e: &Engine) -> ConnectionId {
    let users = [
        r#"{"id":"ann","name":"Ann Lee","age":30,"tags":["x","y"],"team":"red"}"#,
        r#"{"id":"bob","name":"Bob","age":25,"team":"blue"}"#,
        r#"{"id":"cyd","name":"bobby tables","status":"busy","tags":["y"]}"#,
        r#"{"id":"dee","age":40,"team":"red"}"#,
        r#"{"id":"eve"}"#,
    ];
    for (i, u) in users.iter().enumerate() {
        e.set_time(T0 + i as i64 * MINUTE).unwrap();
        e.upsert_user_json(u).unwrap();
    }
    e.set_time(T0 + 5 * MINUTE).unwrap();
    let ann = e.connect_json(r#"{"id":"ann"}"#).unwrap();
    e.set_time(T0 + 6 * MINUTE).unwrap();
    e.connect_json(r#"{"id":"bob"}"#).unwrap();
    e.set_time(T0 + 7 * MINUTE).unwrap();
    let dee = e.connect_json(r#"{"id":"dee"}"#).unwrap();
    e.set_time(T0 + 8 * MINUTE).unwrap();
    e.disconnect(dee).unwrap();
    e.set_time(T0 + 9 * MINUTE).unwrap();
    e.upsert_user_json(r#"{"id":"eve","team":"green"}"#).unwrap();
    ann
}

#[test]
fn user_queries_support_every_operator_and_field() {
    let e = manual_engine("");
    let ann = user_fixture(&e);
    let q = |filter: Value| -> Vec<String> {
        let v = e.query_users(ann, &json!({ "filter_conditions": filter }).to_string()).unwrap().to_value();
        let via_host =
            e.query_users(HOST, &json!({ "filter_conditions": filter }).to_string()).unwrap().to_value();
        assert_eq!(ids(&v), ids(&via_host), "no invisible user here: every viewer agrees on {filter}");
        ids(&v)
    };
    // Default sort: created_at descending.
    assert_eq!(q(json!({})), ["eve", "dee", "cyd", "bob", "ann"]);
    assert_eq!(q(json!({"team": "red"})), ["dee", "ann"]);
    assert_eq!(q(json!({"team": {"$eq": "red"}})), ["dee", "ann"]);
    assert_eq!(q(json!({"team": {"$ne": "red"}})), ["eve", "cyd", "bob"], "$ne matches a missing field");
    assert_eq!(q(json!({"age": {"$gt": 25}})), ["dee", "ann"]);
    assert_eq!(q(json!({"age": {"$gte": 30}})), ["dee", "ann"]);
    assert_eq!(q(json!({"age": {"$lt": 30}})), ["bob"]);
    assert_eq!(q(json!({"age": {"$lte": 30}})), ["bob", "ann"]);
    assert_eq!(q(json!({"age": {"$gt": 20, "$lt": 35}})), ["bob", "ann"]);
    assert_eq!(q(json!({"id": {"$in": ["ann", "cyd", "zzz"]}})), ["cyd", "ann"]);
    assert_eq!(q(json!({"id": {"$nin": ["ann", "cyd"]}})), ["eve", "dee", "bob"]);
    assert_eq!(q(json!({"id": "bob"})), ["bob"]);
    assert_eq!(q(json!({"id": {"$gt": "cyd"}})), ["eve", "dee"]);
    assert_eq!(q(json!({"status": {"$exists": true}})), ["cyd"]);
    assert_eq!(q(json!({"status": "busy"})), ["cyd"]);
    assert_eq!(q(json!({"age": {"$exists": false}})), ["eve", "cyd"]);
    assert_eq!(q(json!({"name": {"$autocomplete": "bo"}})), ["cyd", "bob"]);
    assert_eq!(q(json!({"name": {"$autocomplete": "LEE"}})), ["ann"]);
    assert_eq!(q(json!({"name": {"$autocomplete": "tab"}})), ["cyd"]);
    assert_eq!(q(json!({"id": {"$autocomplete": "d"}})), ["dee"]);
    assert_eq!(q(json!({"tags": {"$contains": "y"}})), ["cyd", "ann"]);
    assert_eq!(q(json!({"tags": {"$contains": "x"}})), ["ann"]);
    assert_eq!(q(json!({"name": {"$contains": "ob"}})), ["cyd", "bob"]);
    assert_eq!(q(json!({"$and": [{"team": "red"}, {"age": {"$gt": 35}}]})), ["dee"]);
    assert_eq!(q(json!({"$or": [{"team": "blue"}, {"status": "busy"}]})), ["cyd", "bob"]);
    assert_eq!(q(json!({"$nor": [{"team": "red"}, {"online": true}]})), ["eve", "cyd"]);
    assert_eq!(q(json!({"online": true})), ["bob", "ann"]);
    assert_eq!(q(json!({"online": false})), ["eve", "dee", "cyd"]);
    assert_eq!(q(json!({"online": {"$ne": true}, "team": "red"})), ["dee"]);
    assert_eq!(q(json!({"last_active": {"$gte": at_min(6)}})), ["dee", "bob"]);
    assert_eq!(q(json!({"last_active": {"$exists": false}})), ["eve", "cyd"]);
    assert_eq!(q(json!({"created_at": {"$lt": at_min(2)}})), ["bob", "ann"]);
    assert_eq!(q(json!({"created_at": at_min(3)})), ["dee"]);
    assert_eq!(q(json!({"updated_at": {"$gt": at_min(4)}})), ["eve"]);
    // Timestamps in any RFC 3339 offset.
    assert_eq!(q(json!({"created_at": {"$lte": "2019-01-07T14:19:42.375+01:00"}})), ["cyd", "bob", "ann"]);
}

#[test]
fn user_queries_sort_in_both_forms_with_missing_values_last_and_ties_by_id() {
    let e = manual_engine("");
    let ann = user_fixture(&e);
    let q = |sort: Value| -> Vec<String> {
        ids(&e.query_users(ann, &json!({ "sort": sort }).to_string()).unwrap().to_value())
    };
    assert_eq!(q(json!([{"field": "age", "direction": 1}])), ["bob", "ann", "dee", "cyd", "eve"]);
    assert_eq!(q(json!({"age": 1})), ["bob", "ann", "dee", "cyd", "eve"]);
    assert_eq!(q(json!({"age": -1})), ["dee", "ann", "bob", "cyd", "eve"], "missing last in both directions");
    assert_eq!(q(json!({"last_active": -1})), ["dee", "bob", "ann", "cyd", "eve"]);
    assert_eq!(q(json!({"last_active": 1})), ["ann", "bob", "dee", "cyd", "eve"]);
    assert_eq!(q(json!({"created_at": 1})), ["ann", "bob", "cyd", "dee", "eve"]);
    assert_eq!(q(json!({"updated_at": -1})), ["eve", "dee", "cyd", "bob", "ann"]);
    assert_eq!(q(json!({"id": -1})), ["eve", "dee", "cyd", "bob", "ann"]);
    assert_eq!(q(json!({"team": 1})), ["bob", "eve", "ann", "dee", "cyd"], "the red tie breaks by id");
    assert_eq!(q(json!({"team": -1})), ["ann", "dee", "eve", "bob", "cyd"], "ties stay ascending by id");
    assert_eq!(
        q(json!([{"field": "team", "direction": 1}, {"field": "id", "direction": -1}])),
        ["bob", "eve", "dee", "ann", "cyd"]
    );
    assert_eq!(q(json!({"online": -1})), ["ann", "bob", "cyd", "dee", "eve"]);
    assert_eq!(q(json!({"status": 1})), ["cyd", "ann", "bob", "dee", "eve"]);
    assert_eq!(q(json!([])), ["eve", "dee", "cyd", "bob", "ann"], "an empty sort is the default");
}

#[test]
fn user_queries_page_with_offset_and_limit() {
    let e = manual_engine("");
    let ann = user_fixture(&e);
    let q = |extra: &str| -> presence::Result<Vec<String>> {
        e.query_users(ann, &format!(r#"{{"sort":{{"id":1}}{extra}}}"#)).map(|v| ids(&v.to_value()))
    };
    assert_eq!(q(r#","limit":2"#).unwrap(), ["ann", "bob"]);
    assert_eq!(q(r#","limit":2,"offset":2"#).unwrap(), ["cyd", "dee"]);
    assert_eq!(q(r#","limit":2,"offset":4"#).unwrap(), ["eve"]);
    assert_eq!(q(r#","offset":5"#).unwrap(), Vec::<String>::new(), "offset at the end");
    assert_eq!(q(r#","offset":10000"#).unwrap(), Vec::<String>::new(), "offset past the end");
    assert_eq!(q(r#","limit":100"#).unwrap().len(), 5);
    assert_eq!(q(r#","limit":null,"offset":null"#).unwrap().len(), 5);
    assert_eq!(kind(q(r#","offset":10001"#)), ErrorKind::Invalid);
    assert_eq!(kind(q(r#","offset":-1"#)), ErrorKind::Invalid);
    assert_eq!(kind(q(r#","limit":0"#)), ErrorKind::Invalid);
    assert_eq!(kind(q(r#","limit":-3"#)), ErrorKind::Invalid);
    assert_eq!(kind(q(r#","limit":101"#)), ErrorKind::Limit);
    assert_eq!(kind(q(r#","limit":1.5"#)), ErrorKind::Invalid);
    assert_eq!(kind(q(r#","limit":"2""#)), ErrorKind::Json);

    // Default limit 30; query_limit_max caps both the limit and the default.
    let big = manual_engine(r#""query_limit_max":40"#);
    for i in 0..45 {
        big.upsert_user_json(&json!({ "id": format!("u{i:02}") }).to_string()).unwrap();
    }
    assert_eq!(ids(&big.query_users(HOST, "{}").unwrap().to_value()).len(), 30);
    assert_eq!(ids(&big.query_users(HOST, r#"{"limit":40}"#).unwrap().to_value()).len(), 40);
    assert_eq!(kind(big.query_users(HOST, r#"{"limit":41}"#)), ErrorKind::Limit);
    assert_eq!(
        ids(&big.query_users(HOST, r#"{"offset":40,"sort":{"id":-1}}"#).unwrap().to_value()),
        ["u04", "u03", "u02", "u01", "u00"]
    );
    let small = manual_engine(r#""query_limit_max":3"#);
    for i in 0..5 {
        small.upsert_user_json(&json!({ "id": format!("u{i}") }).to_string()).unwrap();
    }
    assert_eq!(ids(&small.query_users(HOST, "{}").unwrap().to_value()).len(), 3);
    assert_eq!(kind(small.query_users(HOST, r#"{"limit":4}"#)), ErrorKind::Limit);
}

#[test]
fn malformed_queries_are_rejected_with_the_right_kind() {
    let e = manual_engine("");
    let ann = user_fixture(&e);
    e.upsert_channel_json(r#"{"type":"team","id":"red","members":["ann"]}"#).unwrap();
    let users = |q: &str| e.query_users(ann, q);
    let channels = |q: &str| e.query_channels(ann, q);
    let err = users(r#"{"filter_conditions":{"age":{"$regex":"3"}}}"#).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Invalid);
    assert!(err.message().contains("$regex"), "{}", err.message());
    let err = users(r#"{"filter_conditions":{"$xor":[{"id":"a"}]}}"#).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Invalid);
    assert!(err.message().contains("$xor"), "{}", err.message());
    for bad in [
        r#"{"filter_conditions":{"online":"yes"}}"#,
        r#"{"filter_conditions":{"id":5}}"#,
        r#"{"filter_conditions":{"id":{"$in":"ann"}}}"#,
        r#"{"filter_conditions":{"created_at":{"$gt":5}}}"#,
        r#"{"filter_conditions":{"last_active":"yesterday"}}"#,
        r#"{"filter_conditions":{"status":{"$exists":1}}}"#,
        r#"{"filter_conditions":{"online":{"$autocomplete":"t"}}}"#,
        r#"{"filter_conditions":{"$or":[]}}"#,
        r#"{"filter_conditions":{"$and":{"id":"ann"}}}"#,
        r#"{"sort":{"age":2}}"#,
        r#"{"sort":{"age":"asc"}}"#,
    ] {
        assert_eq!(kind(users(bad)), ErrorKind::Invalid, "{bad}");
    }
    for bad in [
        r#"{"filter_conditions":{"member_count":"two"}}"#,
        r#"{"filter_conditions":{"members":{"$in":[1]}}}"#,
        r#"{"filter_conditions":{"members":{"$nin":["ann"]}}}"#,
        r#"{"filter_conditions":{"last_message_at":{"$lt":"soon"}}}"#,
        r#"{"filter_conditions":{"cid":{"$bogus":1}}}"#,
        r#"{"sort":{"members":1}}"#,
    ] {
        assert_eq!(kind(channels(bad)), ErrorKind::Invalid, "{bad}");
    }
    for bad in ["{", "[]", "", r#"{"filter_conditions":[]}"#, r#"{"unknown":1}"#, r#"{"presence":"yes"}"#] {
        assert_eq!(kind(users(bad)), ErrorKind::Json, "{bad}");
        assert_eq!(kind(channels(bad)), ErrorKind::Json, "{bad}");
    }
    assert_eq!(kind(users(r#"{"watch":true}"#)), ErrorKind::Json, "watch is for channels only");
    // The host cannot subscribe or watch; unknown viewers are NotFound.
    assert_eq!(kind(e.query_users(HOST, r#"{"presence":true}"#)), ErrorKind::Invalid);
    assert_eq!(kind(e.query_channels(HOST, r#"{"presence":true}"#)), ErrorKind::Invalid);
    assert_eq!(kind(e.query_channels(HOST, r#"{"watch":true}"#)), ErrorKind::Invalid);
    assert_eq!(kind(e.query_users(ConnectionId(99), "{}")), ErrorKind::NotFound);
    assert_eq!(kind(e.query_channels(ConnectionId(99), "{}")), ErrorKind::NotFound);
    // A rejected query changed nothing: ann watches nothing and is subscribed to nobody.
    assert_eq!(host_state(&e, "team:red")["watcher_count"], 0);
    assert!(poll(&e, ann).is_empty());
}

/// team:red (ann, bob; last message +30), team:blue (bob; +10), dm:ann-cyd (no last message),
/// team:green (no members; +20), created a minute apart; team:red's color changed at +4.
fn channel_fixture(e: &Engine) {
    let channels = [
        json!({"type":"team","id":"red","members":["ann","bob"],"color":"red","last_message_at":at_min(30)}),
        json!({"type":"team","id":"blue","members":["bob"],"color":"blue","last_message_at":at_min(10)}),
        json!({"type":"dm","id":"ann-cyd","members":["ann","cyd"]}),
        json!({"type":"team","id":"green","size":5,"last_message_at":at_min(20)}),
    ];
    for (i, c) in channels.iter().enumerate() {
        e.set_time(T0 + i as i64 * MINUTE).unwrap();
        e.upsert_channel_json(&c.to_string()).unwrap();
    }
    e.set_time(T0 + 4 * MINUTE).unwrap();
    e.upsert_channel_json(r#"{"cid":"team:red","color":"crimson"}"#).unwrap();
}

/// The cids `query` answers to `viewer`, checked to be what the host gets too.
fn channel_query(e: &Engine, viewer: ConnectionId, query: Value) -> Vec<String> {
    let v = e.query_channels(viewer, &query.to_string()).unwrap().to_value();
    assert_eq!(cids(&v), cids(&e.query_channels(HOST, &query.to_string()).unwrap().to_value()));
    cids(&v)
}

/// [`channel_fixture`] and the connection of ann, who is a member of team:red and dm:ann-cyd.
fn channel_fixture_seen_by_ann() -> (Engine, ConnectionId) {
    let e = manual_engine("");
    channel_fixture(&e);
    let ann = e.connect_json(r#"{"id":"ann"}"#).unwrap();
    (e, ann)
}

#[test]
fn channel_queries_filter_on_every_field() {
    let (e, viewer) = channel_fixture_seen_by_ann();
    let f = |filter: Value| channel_query(&e, viewer, json!({ "filter_conditions": filter }));
    // Default sort: last_message_at descending, missing last.
    assert_eq!(f(json!({})), ["team:red", "team:green", "team:blue", "dm:ann-cyd"]);
    assert_eq!(f(json!({"type": "team"})), ["team:red", "team:green", "team:blue"]);
    assert_eq!(f(json!({"type": {"$ne": "team"}})), ["dm:ann-cyd"]);
    assert_eq!(f(json!({"id": "red"})), ["team:red"]);
    assert_eq!(f(json!({"id": {"$autocomplete": "cy"}})), ["dm:ann-cyd"]);
    assert_eq!(f(json!({"cid": "team:blue"})), ["team:blue"]);
    assert_eq!(f(json!({"cid": {"$in": ["team:blue", "dm:ann-cyd", "x:y"]}})), ["team:blue", "dm:ann-cyd"]);
    assert_eq!(f(json!({"cid": {"$nin": ["team:blue", "dm:ann-cyd"]}})), ["team:red", "team:green"]);
    assert_eq!(f(json!({"members": {"$in": ["bob"]}})), ["team:red", "team:blue"]);
    assert_eq!(f(json!({"members": {"$in": ["cyd", "bob"]}})), ["team:red", "team:blue", "dm:ann-cyd"]);
    assert_eq!(f(json!({"members": "ann"})), ["team:red", "dm:ann-cyd"]);
    assert_eq!(f(json!({"members": {"$eq": "ann"}})), ["team:red", "dm:ann-cyd"]);
    assert_eq!(f(json!({"members": {"$in": ["nobody"]}})), Vec::<String>::new());
    assert_eq!(f(json!({"members": {"$in": ["ann"]}, "type": "team"})), ["team:red"]);
    assert_eq!(f(json!({"member_count": {"$gte": 2}})), ["team:red", "dm:ann-cyd"]);
    assert_eq!(f(json!({"member_count": 0})), ["team:green"]);
    assert_eq!(f(json!({"created_at": {"$gt": at_min(1)}})), ["team:green", "dm:ann-cyd"]);
    assert_eq!(f(json!({"updated_at": {"$gt": at_min(3)}})), ["team:red"]);
    assert_eq!(f(json!({"last_message_at": {"$exists": false}})), ["dm:ann-cyd"]);
    assert_eq!(f(json!({"last_message_at": {"$lt": at_min(25)}})), ["team:green", "team:blue"]);
    assert_eq!(f(json!({"color": {"$in": ["blue", "crimson"]}})), ["team:red", "team:blue"]);
    assert_eq!(f(json!({"color": {"$autocomplete": "CRI"}})), ["team:red"]);
    assert_eq!(f(json!({"size": {"$gt": 1}})), ["team:green"]);
    assert_eq!(f(json!({"$or": [{"size": 5}, {"member_count": 1}]})), ["team:green", "team:blue"]);
    assert_eq!(f(json!({"$nor": [{"type": "dm"}, {"color": {"$exists": true}}]})), ["team:green"]);
    assert_eq!(
        f(json!({"$and": [{"type": "team"}, {"members": {"$in": ["bob"]}}, {"color": "blue"}]})),
        ["team:blue"]
    );
}

#[test]
fn channel_queries_sort_on_every_field() {
    let (e, viewer) = channel_fixture_seen_by_ann();
    let s = |sort: Value| channel_query(&e, viewer, json!({ "sort": sort }));
    assert_eq!(s(json!({"member_count": -1})), ["dm:ann-cyd", "team:red", "team:blue", "team:green"]);
    assert_eq!(
        s(json!([{"field": "created_at", "direction": 1}])),
        ["team:red", "team:blue", "dm:ann-cyd", "team:green"]
    );
    assert_eq!(s(json!({"last_message_at": 1})), ["team:blue", "team:green", "team:red", "dm:ann-cyd"]);
    assert_eq!(s(json!({"color": -1})), ["team:red", "team:blue", "dm:ann-cyd", "team:green"]);
    assert_eq!(s(json!({"type": 1})), ["dm:ann-cyd", "team:blue", "team:green", "team:red"]);
    assert_eq!(
        s(json!({"updated_at": -1, "cid": -1})),
        ["team:red", "team:green", "dm:ann-cyd", "team:blue"]
    );
}

#[test]
fn channel_queries_page_with_offset_and_limit() {
    let (e, viewer) = channel_fixture_seen_by_ann();
    let q = |query: Value| channel_query(&e, viewer, query);
    assert_eq!(q(json!({"sort": {"cid": 1}, "offset": 1, "limit": 2})), ["team:blue", "team:green"]);
    assert_eq!(q(json!({"sort": {"cid": 1}, "offset": 3, "limit": 2})), ["team:red"]);
    assert_eq!(q(json!({"offset": 4})), Vec::<String>::new());
    assert_eq!(kind(e.query_channels(viewer, r#"{"limit":0}"#)), ErrorKind::Invalid);
    assert_eq!(kind(e.query_channels(viewer, r#"{"limit":101}"#)), ErrorKind::Limit);
    assert_eq!(kind(e.query_channels(viewer, r#"{"offset":10001}"#)), ErrorKind::Invalid);
}

#[test]
fn channel_query_answers_render_members_and_watchers_for_the_viewer() {
    let e = manual_engine("");
    channel_fixture(&e);
    e.set_time(T0 + 5 * MINUTE).unwrap();
    let ann = e.connect_json(r#"{"id":"ann"}"#).unwrap();
    let cyd = e.connect_json(r#"{"id":"cyd"}"#).unwrap();
    e.start_watching(cyd, "dm:ann-cyd", false).unwrap();
    let query = r#"{"filter_conditions":{"members":{"$in":["cyd"]}}}"#;
    let m5 = at_min(5);
    let m2 = at_min(2);
    let ann_user = json!({"id":"ann","online":true,"last_active":m5,"created_at":T0S,"updated_at":T0S});
    let cyd_user = json!({"id":"cyd","online":true,"last_active":m5,"created_at":m2,"updated_at":m2});
    let channel = json!({"cid":"dm:ann-cyd","type":"dm","id":"ann-cyd","member_count":2,"created_at":m2,"updated_at":m2});
    let answer = |members: Value, watchers: Value| json!({"channels":[{"channel":channel.clone(),"members":members,"watcher_count":1,"watchers":watchers}]});
    assert_eq!(
        e.query_channels(ann, query).unwrap().to_value(),
        answer(
            json!([member(own(ann_user.clone(), false)), member(cyd_user.clone())]),
            json!([cyd_user.clone()])
        )
    );
    assert_eq!(
        e.query_channels(cyd, query).unwrap().to_value(),
        answer(
            json!([member(ann_user.clone()), member(own(cyd_user.clone(), false))]),
            json!([own(cyd_user.clone(), false)])
        )
    );
    assert_eq!(
        e.query_channels(HOST, query).unwrap().to_value(),
        answer(
            json!([member(own(ann_user, false)), member(own(cyd_user.clone(), false))]),
            json!([own(cyd_user, false)])
        )
    );
}

#[test]
fn online_in_user_queries_depends_on_the_viewer() {
    let e = manual_engine("");
    e.upsert_user_json(r#"{"id":"off"}"#).unwrap();
    let bob = e.connect_json(r#"{"id":"bob"}"#).unwrap();
    let ghost = e.connect_json(r#"{"id":"ghost","invisible":true}"#).unwrap();
    let q = |viewer: ConnectionId, filter: Value| -> Vec<String> {
        let query = json!({"filter_conditions": filter, "sort": {"id": 1}}).to_string();
        ids(&e.query_users(viewer, &query).unwrap().to_value())
    };
    assert_eq!(q(bob, json!({"online": true})), ["bob"], "invisible never matches online for others");
    assert_eq!(q(bob, json!({"online": false})), ["ghost", "off"]);
    assert_eq!(q(bob, json!({"online": {"$in": [true]}})), ["bob"]);
    assert_eq!(q(bob, json!({"online": {"$ne": false}})), ["bob"]);
    assert_eq!(q(bob, json!({"$nor": [{"online": false}]})), ["bob"]);
    assert_eq!(q(ghost, json!({"online": true})), ["bob", "ghost"], "but for themselves");
    assert_eq!(q(HOST, json!({"online": true})), ["bob", "ghost"], "the host sees own views");
    let sorted = |viewer| {
        ids(&e
            .query_users(
                viewer,
                r#"{"sort":[{"field":"online","direction":-1},{"field":"id","direction":1}]}"#,
            )
            .unwrap()
            .to_value())
    };
    assert_eq!(sorted(bob), ["bob", "ghost", "off"]);
    assert_eq!(sorted(ghost), ["bob", "ghost", "off"]);
    let by_online_asc = |viewer| ids(&e.query_users(viewer, r#"{"sort":{"online":1}}"#).unwrap().to_value());
    assert_eq!(by_online_asc(bob), ["ghost", "off", "bob"]);
    assert_eq!(by_online_asc(ghost), ["off", "bob", "ghost"]);
    let seen = |viewer| {
        e.query_users(viewer, r#"{"filter_conditions":{"id":"ghost"}}"#).unwrap().to_value()["users"][0]
            .clone()
    };
    assert_eq!(seen(bob), json!({"id":"ghost","online":false,"created_at":T0S,"updated_at":T0S}));
    assert_eq!(
        seen(ghost),
        json!({"id":"ghost","online":true,"invisible":true,"created_at":T0S,"updated_at":T0S})
    );
    assert_eq!(seen(HOST), seen(ghost));
}

/// 60 users u00..u59 (random scores, a third invisible, about half connected) and 25
/// channels c00..c24 (every third a dm, up to 7 random members, some with a last message),
/// from a fixed seed. Answers the host and three of the connections as viewers.
fn random_population(e: &Engine, rng: &mut Rng) -> [ConnectionId; 4] {
    let mut conns = Vec::new();
    for i in 0..60 {
        e.set_time(T0 + i * 1000).unwrap();
        let id = format!("u{i:02}");
        let mut u = json!({"id": id, "score": rng.below(5)});
        if rng.below(3) == 0 {
            u["invisible"] = json!(true);
        }
        e.upsert_user_json(&u.to_string()).unwrap();
        if rng.below(2) == 0 {
            conns.push(e.connect_json(&json!({ "id": id }).to_string()).unwrap());
        }
    }
    for i in 0..25 {
        e.set_time(T0 + (60 + i) * 1000).unwrap();
        let members: Vec<String> = (0..rng.below(8)).map(|_| format!("u{:02}", rng.below(60))).collect();
        let mut c = json!({"type": if i % 3 == 0 { "dm" } else { "team" }, "id": format!("c{i:02}"), "members": members});
        if rng.below(2) == 0 {
            c["last_message_at"] = json!(format_millis(T0 + rng.below(100) as i64 * 1000));
        }
        e.upsert_channel_json(&c.to_string()).unwrap();
    }
    [HOST, conns[0], conns[conns.len() / 2], *conns.last().unwrap()]
}

/// `id` filters through the index (`$in`, equality, nested `$and`) answer exactly what the
/// equivalent `$or` scans answer.
fn assert_user_index_answers_like_a_scan(
    e: &Engine,
    viewer: ConnectionId,
    keys: &[String],
    sort: &Value,
    offset: usize,
) {
    let eqs: Vec<Value> = keys.iter().map(|id| json!({ "id": id })).collect();
    let run = |filter: Value| {
        let q = json!({"filter_conditions": filter, "sort": sort, "limit": 100, "offset": offset});
        e.query_users(viewer, &q.to_string()).unwrap().to_value()
    };
    let pairs = [
        (json!({"id": {"$in": keys}}), json!({"$or": eqs})),
        (json!({"id": {"$in": keys}, "online": true}), json!({"$and": [{"$or": eqs}, {"online": true}]})),
        (
            json!({"$and": [{"$and": [{"id": {"$in": keys}}]}, {"score": {"$gte": 2}}]}),
            json!({"$or": eqs, "score": {"$gte": 2}}),
        ),
        (json!({"id": keys[0]}), json!({"$or": [{"id": keys[0]}]})),
    ];
    for (indexed, scan) in &pairs {
        assert_eq!(run(indexed.clone()), run(scan.clone()), "users {indexed} vs {scan}");
    }
}

/// `members` and `cid` filters through the indexes answer exactly what the equivalent `$or`
/// scans answer.
fn assert_channel_index_answers_like_a_scan(
    e: &Engine,
    viewer: ConnectionId,
    keys: &[String],
    offset: usize,
) {
    let member_eqs: Vec<Value> = keys.iter().map(|id| json!({ "members": id })).collect();
    let run = |filter: Value| {
        let q = json!({"filter_conditions": filter, "limit": 100, "offset": offset});
        e.query_channels(viewer, &q.to_string()).unwrap().to_value()
    };
    let channel_keys: Vec<String> = keys.iter().map(|k| format!("team:c{}", &k[1..])).collect();
    let channel_eqs: Vec<Value> = channel_keys.iter().map(|c| json!({ "cid": c })).collect();
    let pairs = [
        (json!({"members": {"$in": keys}}), json!({"$or": member_eqs})),
        (
            json!({"members": {"$in": keys}, "type": "team"}),
            json!({"$and": [{"$or": member_eqs}, {"type": "team"}]}),
        ),
        (json!({"cid": {"$in": channel_keys}}), json!({"$or": channel_eqs})),
        (
            json!({"cid": {"$in": channel_keys}, "members": {"$in": keys}}),
            json!({"$and": [{"$or": channel_eqs}, {"$or": member_eqs}]}),
        ),
    ];
    for (indexed, scan) in &pairs {
        assert_eq!(run(indexed.clone()), run(scan.clone()), "channels {indexed} vs {scan}");
    }
}

/// The cids of the channels with `id` as a member.
fn channels_of(e: &Engine, id: &str) -> Vec<String> {
    cids(
        &e.query_channels(HOST, &json!({"filter_conditions":{"members":id},"limit":100}).to_string())
            .unwrap()
            .to_value(),
    )
}

/// Every channel that has a member among u00..u59.
fn channels_with_members(e: &Engine) -> Vec<String> {
    let all: Vec<String> = (0..60).map(|i| format!("u{i:02}")).collect();
    let q = json!({"filter_conditions":{"members":{"$in":all}},"limit":100});
    cids(&e.query_channels(HOST, &q.to_string()).unwrap().to_value())
}

#[test]
fn indexed_id_and_member_filters_answer_like_an_equivalent_scan() {
    let e = manual_engine("");
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let viewers = random_population(&e, &mut rng);
    let sorts = [
        json!(null),
        json!({"last_active": -1}),
        json!([{"field":"score","direction":1}]),
        json!({"online": -1}),
    ];
    for round in 0..40 {
        let k = 1 + rng.below(12);
        let mut keys: Vec<String> = (0..k).map(|_| format!("u{:02}", rng.below(70))).collect();
        if round % 4 == 0 {
            keys.push(keys[0].clone());
        }
        let viewer = viewers[round % viewers.len()];
        let offset = if round % 5 == 0 { 1 } else { 0 };
        assert_user_index_answers_like_a_scan(&e, viewer, &keys, &sorts[round % sorts.len()], offset);
        assert_channel_index_answers_like_a_scan(&e, viewer, &keys, offset);
    }
    // The data is not degenerate: some indexed queries match, some channels are found by member.
    let all: Vec<String> = (0..60).map(|i| format!("u{i:02}")).collect();
    assert_eq!(
        ids(&e
            .query_users(HOST, &json!({"filter_conditions":{"id":{"$in":all}},"limit":100}).to_string())
            .unwrap()
            .to_value())
        .len(),
        60
    );
    let found = channels_with_members(&e);
    assert!(found.len() > 10, "{}", found.len());
}

#[test]
fn the_member_index_follows_membership_changes() {
    let e = manual_engine("");
    random_population(&e, &mut Rng(0x9e37_79b9_7f4a_7c15));
    let c = channels_with_members(&e)[0].clone();
    let first = member_ids(&host_state(&e, &c))[0].clone();
    assert!(channels_of(&e, &first).contains(&c));
    e.remove_members(&c, std::slice::from_ref(&first)).unwrap();
    assert!(!channels_of(&e, &first).contains(&c));
    e.add_members(&c, std::slice::from_ref(&first)).unwrap();
    assert!(channels_of(&e, &first).contains(&c));
}
