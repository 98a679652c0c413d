//! Expected JSON views of users and channels, and readers of query answers.
use super::{HOST, T0S};
use presence::{Answer, Engine};
use serde_json::{json, Value};

/// A user never connected, created at `T0`, in the public view.
pub fn user(id: &str) -> Value {
    json!({"id": id, "online": false, "created_at": T0S, "updated_at": T0S})
}

/// `base` with the fields of `extra` set (a `null` removes one).
pub fn with(mut base: Value, extra: Value) -> Value {
    let (Value::Object(b), Value::Object(x)) = (&mut base, extra) else { panic!("objects only") };
    for (k, v) in x {
        if v.is_null() {
            b.shift_remove(&k);
        } else {
            b.insert(k, v);
        }
    }
    base
}

/// The own view of a user built with [`user`]: adds `invisible`.
pub fn own(base: Value, invisible: bool) -> Value {
    with(base, json!({ "invisible": invisible }))
}

/// A channel member entry for `user`.
pub fn member(user: Value) -> Value {
    json!({"user_id": user["id"].clone(), "user": user})
}

/// The ids of a `query_users` answer, in order.
pub fn ids(v: &Value) -> Vec<String> {
    v["users"].as_array().unwrap().iter().map(|u| u["id"].as_str().unwrap().to_string()).collect()
}

/// The cids of a `query_channels` answer, in order.
pub fn cids(v: &Value) -> Vec<String> {
    v["channels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["channel"]["cid"].as_str().unwrap().to_string())
        .collect()
}

/// The state of one channel as the host sees it.
pub fn host_state(e: &Engine, cid: &str) -> Value {
    let v =
        e.query_channels(HOST, &json!({"filter_conditions": {"cid": cid}}).to_string()).unwrap().to_value();
    let list = v["channels"].as_array().unwrap();
    assert_eq!(list.len(), 1, "{cid} not found: {v}");
    list[0].clone()
}

/// The `user_id`s of a channel state's `members`.
pub fn member_ids(state: &Value) -> Vec<String> {
    state["members"].as_array().unwrap().iter().map(|m| m["user_id"].as_str().unwrap().to_string()).collect()
}

/// The ids of a channel state's `watchers`.
pub fn watcher_ids(state: &Value) -> Vec<String> {
    state["watchers"].as_array().unwrap().iter().map(|u| u["id"].as_str().unwrap().to_string()).collect()
}
