//! The query language against hand-built records: parsing, evaluation, sorting.
mod eval;
mod parse;
mod sort;

use super::*;
use crate::error::{Error, ErrorKind};
use crate::time::parse_millis;
use serde_json::json;
use std::collections::HashMap;

#[derive(Debug, Clone)]
enum TV {
    S(String),
    B(bool),
    T(Millis),
    I(i64),
    J(Value),
}

#[derive(Debug, Clone)]
struct Rec {
    key: String,
    fields: HashMap<String, TV>,
    members: Vec<String>,
}

impl Rec {
    fn new(key: &str) -> Rec {
        Rec { key: key.to_owned(), fields: HashMap::new(), members: Vec::new() }
    }
    fn with(mut self, name: &str, v: TV) -> Rec {
        self.fields.insert(name.to_owned(), v);
        self
    }
    fn s(self, name: &str, v: &str) -> Rec {
        self.with(name, TV::S(v.to_owned()))
    }
    fn b(self, name: &str, v: bool) -> Rec {
        self.with(name, TV::B(v))
    }
    fn t(self, name: &str, v: &str) -> Rec {
        self.with(name, TV::T(parse_millis(v).unwrap()))
    }
    fn i(self, name: &str, v: i64) -> Rec {
        self.with(name, TV::I(v))
    }
    fn j(self, name: &str, v: Value) -> Rec {
        self.with(name, TV::J(v))
    }
    fn m(mut self, ids: &[&str]) -> Rec {
        self.members = ids.iter().map(|s| s.to_string()).collect();
        self
    }
}

impl Record for Rec {
    fn key(&self) -> &str {
        &self.key
    }
    fn field(&self, name: &str) -> Option<FieldValue<'_>> {
        Some(match self.fields.get(name)? {
            TV::S(s) => FieldValue::Str(s),
            TV::B(b) => FieldValue::Bool(*b),
            TV::T(t) => FieldValue::Time(*t),
            TV::I(i) => FieldValue::Int(*i),
            TV::J(v) => FieldValue::Json(v),
        })
    }
    fn has_member(&self, user_id: &str) -> bool {
        self.members.iter().any(|m| m == user_id)
    }
}

fn uq(json: &str) -> Query {
    Query::parse(Target::Users, json, 100).unwrap()
}
fn cq(json: &str) -> Query {
    Query::parse(Target::Channels, json, 100).unwrap()
}
fn uf(filter: Value) -> Query {
    uq(&json!({ "filter_conditions": filter }).to_string())
}
fn cf(filter: Value) -> Query {
    cq(&json!({ "filter_conditions": filter }).to_string())
}
fn uerr(json: &str) -> Error {
    Query::parse(Target::Users, json, 100).unwrap_err()
}
fn cerr(json: &str) -> Error {
    Query::parse(Target::Channels, json, 100).unwrap_err()
}
fn uferr(filter: Value) -> Error {
    uerr(&json!({ "filter_conditions": filter }).to_string())
}
fn cferr(filter: Value) -> Error {
    cerr(&json!({ "filter_conditions": filter }).to_string())
}
fn keys(recs: &[Rec]) -> Vec<&str> {
    recs.iter().map(|r| r.key.as_str()).collect()
}
/// Keys of the records of `recs` matching `q`, in input order.
fn hits<'a>(q: &Query, recs: &'a [Rec]) -> Vec<&'a str> {
    recs.iter().filter(|r| q.matches(*r, &mut 0)).map(|r| r.key.as_str()).collect()
}

fn users() -> Vec<Rec> {
    vec![
        Rec::new("alice")
            .s("id", "alice")
            .b("online", true)
            .t("last_active", "2024-01-01T10:00:00Z")
            .t("created_at", "2023-01-01T00:00:00Z")
            .t("updated_at", "2024-01-01T00:00:00Z")
            .s("status", "Playing Chess")
            .j("name", json!("Alice Liddell"))
            .j("level", json!(10))
            .j("tags", json!(["red", "blue", 3]))
            .j("vip", json!(true)),
        Rec::new("bob")
            .s("id", "bob")
            .b("online", false)
            .t("last_active", "2024-01-02T10:00:00Z")
            .t("created_at", "2023-02-01T00:00:00Z")
            .t("updated_at", "2024-01-02T00:00:00Z")
            .j("name", json!("Bob O'Brien"))
            .j("level", json!(2.5))
            .j("tags", json!(["green"]))
            .j("vip", json!(false)),
        Rec::new("carol")
            .s("id", "carol")
            .b("online", true)
            .t("created_at", "2023-03-01T00:00:00Z")
            .t("updated_at", "2024-01-03T00:00:00Z")
            .s("status", "away")
            .j("name", json!("carol-ann smith"))
            .j("level", json!("high")),
    ]
}

fn channels() -> Vec<Rec> {
    vec![
        Rec::new("messaging:a")
            .s("cid", "messaging:a")
            .s("type", "messaging")
            .s("id", "a")
            .i("member_count", 2)
            .t("created_at", "2023-01-01T00:00:00Z")
            .t("updated_at", "2023-01-02T00:00:00Z")
            .t("last_message_at", "2024-05-01T00:00:00Z")
            .j("topic", json!("Lobby chat"))
            .m(&["alice", "bob"]),
        Rec::new("team:b")
            .s("cid", "team:b")
            .s("type", "team")
            .s("id", "b")
            .i("member_count", 1)
            .t("created_at", "2023-02-01T00:00:00Z")
            .t("updated_at", "2023-02-02T00:00:00Z")
            .m(&["carol"]),
        Rec::new("team:c")
            .s("cid", "team:c")
            .s("type", "team")
            .s("id", "c")
            .i("member_count", 0)
            .t("created_at", "2023-03-01T00:00:00Z")
            .t("updated_at", "2023-03-02T00:00:00Z")
            .t("last_message_at", "2024-06-01T00:00:00Z"),
    ]
}
