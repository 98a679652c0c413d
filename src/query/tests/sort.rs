//! Sorting and paging.
use super::*;
use crate::query::sort::compare_records;

// ----- sorting and paging --------------------------------------------------

#[test]
fn default_sorts() {
    let q = uq("{}");
    assert_eq!(keys(&q.sort_and_page(users())), ["carol", "bob", "alice"]);
    // Channels: last_message_at descending, missing last.
    let q = cq("{}");
    assert_eq!(keys(&q.sort_and_page(channels())), ["team:c", "messaging:a", "team:b"]);
}

#[test]
fn sort_forms() {
    let list = uq(r#"{"sort": [{"field": "last_active", "direction": 1}]}"#);
    let obj = uq(r#"{"sort": {"last_active": 1}}"#);
    assert_eq!(list.sort, obj.sort);
    // Missing value (carol) last in both directions.
    assert_eq!(keys(&list.sort_and_page(users())), ["alice", "bob", "carol"]);
    let q = uq(r#"{"sort": {"last_active": -1}}"#);
    assert_eq!(keys(&q.sort_and_page(users())), ["bob", "alice", "carol"]);
    // Object form keeps key order: online first, then id descending.
    let q = uq(r#"{"sort": {"online": -1, "id": -1}}"#);
    assert_eq!(keys(&q.sort_and_page(users())), ["carol", "alice", "bob"]);
    let q = uq(r#"{"sort": {"id": -1, "online": -1}}"#);
    assert_eq!(keys(&q.sort_and_page(users())), ["carol", "bob", "alice"]);
    let q = uq(r#"{"sort": [{"field": "online", "direction": 1}, {"field": "status", "direction": 1}]}"#);
    assert_eq!(keys(&q.sort_and_page(users())), ["bob", "alice", "carol"]);
    // Integers.
    let q = cq(r#"{"sort": {"member_count": 1}}"#);
    assert_eq!(keys(&q.sort_and_page(channels())), ["team:c", "team:b", "messaging:a"]);
}

#[test]
fn custom_sort_types_and_ties() {
    let recs = vec![
        Rec::new("e").j("x", json!(true)),
        Rec::new("d").j("x", json!("b")),
        Rec::new("c").j("x", json!(2)),
        Rec::new("b").j("x", json!(1.5)),
        Rec::new("a"),
        Rec::new("f").j("x", json!([1])),
        Rec::new("g").j("x", json!(false)),
        Rec::new("h").j("x", json!(2.0)),
    ];
    let q = uq(r#"{"sort": {"x": 1}}"#);
    assert_eq!(keys(&q.sort_and_page(recs.clone())), ["b", "c", "h", "d", "g", "e", "f", "a"]);
    let q = uq(r#"{"sort": {"x": -1}}"#);
    assert_eq!(keys(&q.sort_and_page(recs)), ["f", "e", "g", "d", "c", "h", "b", "a"]);
    // All missing: key ascending.
    let recs = vec![Rec::new("z"), Rec::new("m"), Rec::new("a")];
    let q = uq(r#"{"sort": {"x": -1}}"#);
    assert_eq!(keys(&q.sort_and_page(recs)), ["a", "m", "z"]);
}

#[test]
fn sort_errors() {
    for s in [
        r#"{"sort": {"id": 0}}"#,
        r#"{"sort": {"id": 2}}"#,
        r#"{"sort": {"id": "asc"}}"#,
        r#"{"sort": {"id": -1.0}}"#,
        r#"{"sort": [{"field": "id", "direction": "desc"}]}"#,
        r#"{"sort": {"": 1}}"#,
    ] {
        assert_eq!(uerr(s).kind(), ErrorKind::Invalid, "{s}");
    }
    assert!(uerr(r#"{"sort": {"id": 0}}"#).message().contains("'id'"));
    assert_eq!(cerr(r#"{"sort": {"members": 1}}"#).kind(), ErrorKind::Invalid);
    for s in [
        r#"{"sort": [{"direction": 1}]}"#,
        r#"{"sort": [{"field": "id"}]}"#,
        r#"{"sort": [{"field": 1, "direction": 1}]}"#,
        r#"{"sort": ["id"]}"#,
        r#"{"sort": [{"field": "id", "direction": 1, "x": 1}]}"#,
    ] {
        assert_eq!(uerr(s).kind(), ErrorKind::Json, "{s}");
    }
}

#[test]
fn paging() {
    let recs: Vec<Rec> = (0..10).map(|i| Rec::new(&format!("u{i}")).j("n", json!(i))).collect();
    let page = |json: &str| keys(&uq(json).sort_and_page(recs.clone())).join(",");
    assert_eq!(page(r#"{"sort": {"n": 1}, "limit": 3}"#), "u0,u1,u2");
    assert_eq!(page(r#"{"sort": {"n": 1}, "limit": 3, "offset": 2}"#), "u2,u3,u4");
    assert_eq!(page(r#"{"sort": {"n": -1}, "limit": 3, "offset": 8}"#), "u1,u0");
    assert_eq!(page(r#"{"sort": {"n": 1}, "offset": 9}"#), "u9");
    assert_eq!(page(r#"{"sort": {"n": 1}, "offset": 10}"#), "");
    assert_eq!(page(r#"{"sort": {"n": 1}, "offset": 10000}"#), "");
    assert_eq!(page(r#"{"sort": {"n": 1}, "limit": 100}"#).split(',').count(), 10);
    assert_eq!(page(r#"{"sort": {"n": 1}, "limit": 10}"#).split(',').count(), 10);
    assert_eq!(page(r#"{"sort": {"n": -1}, "limit": 1}"#), "u9");
    assert!(uq("{}").sort_and_page(Vec::<Rec>::new()).is_empty());
    // The page is the same slice as a full sort would give.
    let q = uq(r#"{"sort": {"n": -1}, "limit": 4, "offset": 3}"#);
    let mut full = recs.clone();
    full.sort_by(|a, b| compare_records(&q.sort, a, b));
    assert_eq!(keys(&q.sort_and_page(recs.clone())), keys(&full[3..7]));
}
