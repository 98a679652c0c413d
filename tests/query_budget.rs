//! `query_budget`: no query holds the engine for long. Every bound answers `LIMIT` with a
//! message naming its key, before anything is examined or subscribed, and queries inside
//! the budget answer as before.
mod common;

use common::manual_engine;
use presence::{Answer, ConnectionId, Engine, ErrorKind};
use serde_json::json;

const HOST: ConnectionId = ConnectionId::HOST;

fn users(e: &Engine, n: usize, name: impl Fn(usize) -> String) {
    for i in 0..n {
        e.upsert_user_json(&json!({"id": format!("u{i:06}"), "name": name(i)}).to_string()).unwrap();
    }
}

fn limit_naming<T: std::fmt::Debug>(result: presence::Result<T>, key: &str) {
    let err = result.expect_err("a query over budget was answered");
    assert_eq!(err.kind(), ErrorKind::Limit, "{}", err.message());
    assert!(err.message().contains(&format!("query_budget.{key}")), "{}", err.message());
}

fn query(filter: serde_json::Value) -> String {
    json!({"filter_conditions": filter}).to_string()
}

#[test]
fn the_reported_stalls_are_refused_before_any_work() {
    let e = manual_engine("");
    users(&e, 20_000, |i| format!("Player {i}"));
    // An $or of 5000 $autocomplete clauses (it held the lock 56 s over 200k users).
    let ors: Vec<_> = (0..5000).map(|i| json!({"name": {"$autocomplete": format!("p{i}")}})).collect();
    limit_naming(e.query_users(HOST, &query(json!({"$or": ors}))), "max_clauses");
    // A sort with 10k keys (44 s).
    let sort: Vec<_> = (0..10_000).map(|i| json!({"field": format!("f{i}"), "direction": 1})).collect();
    limit_naming(e.query_users(HOST, &json!({"sort": sort}).to_string()), "max_sort_keys");
    // A full scan of 20k users with a heavy filter passes the default work.
    let heavy: Vec<_> = (0..30).map(|i| json!({"name": format!("n{i}")})).collect();
    limit_naming(e.query_users(HOST, &query(json!({"$or": heavy}))), "max_work");
}

#[test]
fn each_size_bound_answers_limit_and_the_bound_itself_passes() {
    let e = manual_engine("");
    users(&e, 3, |i| format!("Player {i}"));
    let conds =
        |n: usize| -> Vec<serde_json::Value> { (0..n).map(|i| json!({"id": format!("x{i}")})).collect() };
    // 64 clauses: the $or node and 63 conditions.
    assert!(e.query_users(HOST, &query(json!({"$or": conds(63)}))).is_ok());
    limit_naming(e.query_users(HOST, &query(json!({"$or": conds(64)}))), "max_clauses");
    // Depth 8: seven nested $and around one condition.
    let nest = |levels: usize| (0..levels).fold(json!({"id": "u000000"}), |f, _| json!({"$and": [f]}));
    assert_eq!(
        e.query_users(HOST, &query(nest(7))).unwrap().to_value()["users"].as_array().unwrap().len(),
        1
    );
    limit_naming(e.query_users(HOST, &query(nest(8))), "max_depth");
    let text = |n: usize| -> Vec<serde_json::Value> {
        (0..n).map(|i| json!({"name": {"$autocomplete": format!("q{i}")}})).collect()
    };
    assert!(e.query_users(HOST, &query(json!({"$or": text(8)}))).is_ok());
    limit_naming(e.query_users(HOST, &query(json!({"$or": text(9)}))), "max_text_clauses");
    let ids = |n: usize| -> Vec<String> { (0..n).map(|i| format!("u{i:06}")).collect() };
    assert_eq!(
        e.query_users(HOST, &query(json!({"id": {"$in": ids(1000)}}))).unwrap().to_value()["users"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
    limit_naming(e.query_users(HOST, &query(json!({"id": {"$in": ids(1001)}}))), "max_in_values");
    limit_naming(e.query_users(HOST, &query(json!({"name": {"$nin": ids(1001)}}))), "max_in_values");
    limit_naming(e.query_channels(HOST, &query(json!({"members": {"$in": ids(1001)}}))), "max_in_values");
    let sort = |n: usize| -> Vec<serde_json::Value> {
        (0..n).map(|i| json!({"field": format!("f{i}"), "direction": -1})).collect()
    };
    assert!(e.query_users(HOST, &json!({"sort": sort(8)}).to_string()).is_ok());
    limit_naming(e.query_users(HOST, &json!({"sort": sort(9)}).to_string()), "max_sort_keys");
}

#[test]
fn work_counts_records_examined_through_the_indexes() {
    // 2 units per record for a one-condition filter plus 2 for the default sort key.
    let e = manual_engine(r#""query_budget": {"max_work": 400}"#);
    users(&e, 100, |i| format!("Player {i}"));
    let online = query(json!({"online": false}));
    assert!(e.query_users(HOST, &online).is_ok(), "100 users x 4 units = 400");
    e.upsert_user_json(r#"{"id":"one-more"}"#).unwrap();
    limit_naming(e.query_users(HOST, &online), "max_work");
    let err = e.query_users(HOST, &online).unwrap_err();
    assert!(err.message().contains("examine 101 records at 4 work units each (404)"), "{}", err.message());
    // Named through the index, only the named users count.
    let by_id = query(json!({"id": {"$in": ["u000001", "u000002"]}, "online": false}));
    assert_eq!(e.query_users(HOST, &by_id).unwrap().to_value()["users"].as_array().unwrap().len(), 2);
    // Channels: the whole set, or the memberships of the named members.
    for c in 0..50 {
        e.upsert_channel_json(
            &json!({"type": "team", "id": format!("c{c}"), "members": ["u000000"]}).to_string(),
        )
        .unwrap();
    }
    for c in 0..80 {
        e.upsert_channel_json(
            &json!({"type": "room", "id": format!("r{c}"), "members": ["u000001"]}).to_string(),
        )
        .unwrap();
    }
    let all = json!({"filter_conditions": {"member_count": 1}, "sort": {"cid": 1}}).to_string();
    limit_naming(e.query_channels(HOST, &all), "max_work");
    // members $in: 1 + 1 + 2 units, + 2 for the sort: 6 per channel.
    let of = |u: &str| query(json!({"members": {"$in": [u]}}));
    assert_eq!(
        e.query_channels(HOST, &of("u000000")).unwrap().to_value()["channels"].as_array().unwrap().len(),
        30
    );
    limit_naming(e.query_channels(HOST, &of("u000001")), "max_work");
}

#[test]
fn scanning_long_text_stops_when_the_work_runs_out() {
    let e = manual_engine(r#""query_budget": {"max_work": 20000}"#);
    users(&e, 10, |i| format!("{} {i}", "word ".repeat(400)));
    users_with_short_names(&e);
    let search = query(json!({"name": {"$autocomplete": "zzz"}}));
    let err = e.query_users(HOST, &search).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Limit);
    assert!(err.message().contains("$autocomplete/$contains"), "{}", err.message());
    // $contains searches fast: the same text fits.
    assert!(e.query_users(HOST, &query(json!({"name": {"$contains": "zzz"}}))).is_ok());
    // Short names fit too.
    let short = query(json!({"id": {"$in": ["s0", "s1"]}, "name": {"$autocomplete": "sho"}}));
    assert_eq!(e.query_users(HOST, &short).unwrap().to_value()["users"].as_array().unwrap().len(), 2);
}

fn users_with_short_names(e: &Engine) {
    for i in 0..2 {
        e.upsert_user_json(&json!({"id": format!("s{i}"), "name": "short name"}).to_string()).unwrap();
    }
}

#[test]
fn a_refused_query_subscribes_and_watches_nothing() {
    let e = manual_engine(r#""query_budget": {"max_work": 10}"#);
    users(&e, 10, |i| format!("Player {i}"));
    e.upsert_channel_json(r#"{"type":"team","id":"red","members":["u000000"]}"#).unwrap();
    let viewer = e.connect_json(r#"{"id":"viewer"}"#).unwrap();
    e.poll_events(viewer, 100).unwrap();
    limit_naming(e.query_users(viewer, &json!({"presence": true}).to_string()), "max_work");
    e.upsert_channel_json(r#"{"type":"team","id":"blue"}"#).unwrap();
    e.upsert_channel_json(r#"{"type":"team","id":"green"}"#).unwrap();
    limit_naming(
        e.query_channels(viewer, &json!({"presence": true, "sort": {"cid": 1}}).to_string()),
        "max_work",
    );
    e.set_status("u000000", Some("busy")).unwrap();
    assert!(e.poll_events(viewer, 100).unwrap().is_empty(), "the refused queries subscribed the viewer");
    assert_eq!(
        e.query_channels(HOST, &query(json!({"cid": "team:red"}))).unwrap().to_value()["channels"][0]
            ["watcher_count"],
        0
    );
}

#[test]
fn the_budget_is_configurable_and_checked() {
    let e = manual_engine(r#""query_budget": {"max_work": 1000000000, "max_clauses": 10000}"#);
    users(&e, 3, |i| format!("Player {i}"));
    let ors: Vec<_> = (0..5000).map(|i| json!({"id": format!("x{i}")})).collect();
    assert!(e.query_users(HOST, &query(json!({"$or": ors}))).is_ok());
    let err = presence::Config::from_json(r#"{"query_budget": {"max_clause": 1}}"#).unwrap_err();
    assert!(err.message().contains("max_clause"), "{}", err.message());
    let err = presence::Config::from_json(r#"{"query_budget": {"max_work": -1}}"#).unwrap_err();
    assert!(err.message().starts_with("config"), "{}", err.message());
}
