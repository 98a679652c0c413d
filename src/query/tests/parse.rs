//! Parsing: the envelope, its defaults and every kind of rejected filter.
use super::*;

// ----- parsing of the envelope ---------------------------------------------

#[test]
fn defaults() {
    let q = uq("{}");
    assert_eq!(q.filter, Filter::And(vec![]));
    assert_eq!((q.offset, q.limit, q.presence, q.watch), (0, 30, false, false));
    assert_eq!(q.sort, vec![SortKey { field: "created_at".into(), descending: true }]);
    let q = cq("{}");
    assert_eq!(q.sort, vec![SortKey { field: "last_message_at".into(), descending: true }]);
    // Empty sort falls back to the default too.
    assert_eq!(uq(r#"{"sort": []}"#).sort[0].field, "created_at");
    assert_eq!(cq(r#"{"sort": {}}"#).sort[0].field, "last_message_at");
    // null means absent.
    let q = cq(r#"{"filter_conditions": null, "sort": null, "limit": null, "watch": null}"#);
    assert_eq!(q.limit, 30);
    // Default limit is capped by a small limit_max.
    assert_eq!(Query::parse(Target::Users, "{}", 10).unwrap().limit, 10);
    // Everything matches an empty filter.
    assert_eq!(hits(&q, &channels()).len(), 3);
}

#[test]
fn envelope_values() {
    let q = cq(r#"{"offset": 10000, "limit": 100, "presence": true, "watch": true}"#);
    assert_eq!((q.offset, q.limit, q.presence, q.watch), (10000, 100, true, true));
    let q = uq(r#"{"offset": 0, "limit": 1, "presence": false}"#);
    assert_eq!((q.offset, q.limit, q.presence), (0, 1, false));
}

#[test]
fn envelope_errors() {
    assert_eq!(uerr("{").kind(), ErrorKind::Json);
    assert_eq!(uerr("").kind(), ErrorKind::Json);
    assert_eq!(uerr("[]").kind(), ErrorKind::Json);
    assert_eq!(uerr(r#"{"watch": false}"#).kind(), ErrorKind::Json);
    assert!(uerr(r#"{"watch": false}"#).message().contains("watch"));
    assert_eq!(uerr(r#"{"filter": {}}"#).kind(), ErrorKind::Json);
    assert_eq!(uerr(r#"{"filter_conditions": []}"#).kind(), ErrorKind::Json);
    assert_eq!(uerr(r#"{"limit": "10"}"#).kind(), ErrorKind::Json);
    assert_eq!(uerr(r#"{"offset": true}"#).kind(), ErrorKind::Json);
    assert_eq!(uerr(r#"{"presence": 1}"#).kind(), ErrorKind::Json);
    assert_eq!(cerr(r#"{"watch": "yes"}"#).kind(), ErrorKind::Json);
    assert_eq!(uerr(r#"{"sort": "name"}"#).kind(), ErrorKind::Json);

    let e = uerr(r#"{"limit": 0}"#);
    assert_eq!(e.kind(), ErrorKind::Invalid);
    assert_eq!(uerr(r#"{"limit": -5}"#).kind(), ErrorKind::Invalid);
    assert_eq!(uerr(r#"{"limit": 2.5}"#).kind(), ErrorKind::Invalid);
    let e = uerr(r#"{"limit": 500}"#);
    assert_eq!(e.kind(), ErrorKind::Limit);
    assert_eq!(e.message(), "limit 500 exceeds query_limit_max 100");
    assert_eq!(uerr(r#"{"limit": 18446744073709551615}"#).kind(), ErrorKind::Limit);
    assert_eq!(uerr(r#"{"limit": 101}"#).kind(), ErrorKind::Limit);
    assert_eq!(uerr(r#"{"offset": 10001}"#).kind(), ErrorKind::Invalid);
    assert_eq!(uerr(r#"{"offset": -1}"#).kind(), ErrorKind::Invalid);
}

// ----- filter errors -------------------------------------------------------

#[test]
fn filter_errors() {
    let e = uferr(json!({"online": "yes"}));
    assert_eq!(e.kind(), ErrorKind::Invalid);
    assert_eq!(e.message(), r#"filter field 'online': $eq needs a boolean, got "yes""#);
    let e = uferr(json!({"name": {"$regex": "a.*"}}));
    assert_eq!(e.kind(), ErrorKind::Invalid);
    assert_eq!(e.message(), "unknown operator '$regex' on field 'name'");
    let e = uferr(json!({"$not": [{"id": "a"}]}));
    assert_eq!(e.kind(), ErrorKind::Invalid);
    assert!(e.message().contains("'$not'"));
    // Mixed operator / non-operator keys.
    assert!(uferr(json!({"name": {"$eq": 1, "x": 2}})).message().contains("'x'"));
}

#[test]
fn user_filter_type_errors() {
    let cases_users = [
        json!({"id": 1}),
        json!({"id": {"$in": ["a", 2]}}),
        json!({"status": {"$gt": true}}),
        json!({"online": {"$in": [true, "no"]}}),
        json!({"online": 1}),
        json!({"last_active": "yesterday"}),
        json!({"last_active": 1546867062375i64}),
        json!({"created_at": {"$lt": null}}),
        json!({"updated_at": {"$nin": ["2024-01-01"]}}),
        json!({"id": {"$in": "a"}}),
        json!({"id": {"$nin": {"a": 1}}}),
        json!({"id": {"$exists": "yes"}}),
        json!({"name": {"$autocomplete": 3}}),
        json!({"online": {"$autocomplete": "t"}}),
        json!({"online": {"$contains": true}}),
        json!({"status": {"$contains": 1}}),
        json!({"last_active": {"$contains": "2024"}}),
        json!({"name": {"$gt": [1]}}),
        json!({"name": {"$lte": null}}),
        json!({"$and": []}),
        json!({"$or": {"id": "a"}}),
        json!({"$nor": ["id"]}),
    ];
    for f in cases_users {
        let e = uferr(f.clone());
        assert_eq!(e.kind(), ErrorKind::Invalid, "{f}");
    }
    let e = uferr(json!({"last_active": {"$gte": "yesterday"}}));
    assert!(e.message().contains("'last_active'") && e.message().contains("$gte"));
}

#[test]
fn channel_filter_type_errors() {
    let cases_channels = [
        json!({"cid": true}),
        json!({"type": {"$ne": 3}}),
        json!({"member_count": "2"}),
        json!({"member_count": 1.5}),
        json!({"member_count": {"$in": [1, "2"]}}),
        json!({"member_count": {"$autocomplete": "1"}}),
        json!({"last_message_at": "soon"}),
        json!({"members": {"$nin": ["a"]}}),
        json!({"members": {"$ne": "a"}}),
        json!({"members": {"$exists": true}}),
        json!({"members": {"$in": ["a", 1]}}),
        json!({"members": {"$in": "a"}}),
        json!({"members": 7}),
        json!({"members": {"$size": 2}}),
    ];
    for f in cases_channels {
        let e = cferr(f.clone());
        assert_eq!(e.kind(), ErrorKind::Invalid, "{f}");
    }
    let e = cferr(json!({"member_count": "2"}));
    assert_eq!(e.message(), r#"filter field 'member_count': $eq needs an integer, got "2""#);
    assert!(cferr(json!({"members": {"$nin": ["a"]}})).message().contains("$nin"));
}
