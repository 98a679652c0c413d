//! Evaluation: each operator on each field type, logic, index hints.
use super::*;

// ----- operators on user fields --------------------------------------------

#[test]
fn string_field_ops() {
    let u = users();
    assert_eq!(hits(&uf(json!({"id": "bob"})), &u), ["bob"]);
    assert_eq!(hits(&uf(json!({"id": {"$eq": "bob"}})), &u), ["bob"]);
    assert_eq!(hits(&uf(json!({"id": {"$ne": "bob"}})), &u), ["alice", "carol"]);
    assert_eq!(hits(&uf(json!({"id": {"$gt": "bob"}})), &u), ["carol"]);
    assert_eq!(hits(&uf(json!({"id": {"$gte": "bob"}})), &u), ["bob", "carol"]);
    assert_eq!(hits(&uf(json!({"id": {"$lt": "bob"}})), &u), ["alice"]);
    assert_eq!(hits(&uf(json!({"id": {"$lte": "bob"}})), &u), ["alice", "bob"]);
    assert_eq!(hits(&uf(json!({"id": {"$in": ["bob", "zed"]}})), &u), ["bob"]);
    assert_eq!(hits(&uf(json!({"id": {"$in": []}})), &u), Vec::<&str>::new());
    assert_eq!(hits(&uf(json!({"id": {"$nin": ["bob"]}})), &u), ["alice", "carol"]);
    assert_eq!(hits(&uf(json!({"id": {"$exists": true}})), &u).len(), 3);
    // status: missing on bob.
    assert_eq!(hits(&uf(json!({"status": "away"})), &u), ["carol"]);
    assert_eq!(hits(&uf(json!({"status": {"$ne": "away"}})), &u), ["alice", "bob"]);
    assert_eq!(hits(&uf(json!({"status": {"$nin": ["away"]}})), &u), ["alice", "bob"]);
    assert_eq!(hits(&uf(json!({"status": {"$in": ["away", "x"]}})), &u), ["carol"]);
    assert_eq!(hits(&uf(json!({"status": {"$gt": "a"}})), &u), ["carol"]);
    assert_eq!(hits(&uf(json!({"status": {"$exists": true}})), &u), ["alice", "carol"]);
    assert_eq!(hits(&uf(json!({"status": {"$exists": false}})), &u), ["bob"]);
    assert_eq!(hits(&uf(json!({"status": {"$autocomplete": "che"}})), &u), ["alice"]);
    assert_eq!(hits(&uf(json!({"status": {"$autocomplete": "PLAY"}})), &u), ["alice"]);
    assert_eq!(hits(&uf(json!({"status": {"$autocomplete": "hess"}})), &u), Vec::<&str>::new());
    assert_eq!(hits(&uf(json!({"status": {"$contains": "ing Ch"}})), &u), ["alice"]);
    assert_eq!(hits(&uf(json!({"status": {"$contains": "chess"}})), &u), Vec::<&str>::new());
    // Bytewise: uppercase sorts before lowercase.
    assert_eq!(hits(&uf(json!({"status": {"$lt": "a"}})), &u), ["alice"]);
}

#[test]
fn bool_field_ops() {
    let u = users();
    assert_eq!(hits(&uf(json!({"online": true})), &u), ["alice", "carol"]);
    assert_eq!(hits(&uf(json!({"online": {"$eq": false}})), &u), ["bob"]);
    assert_eq!(hits(&uf(json!({"online": {"$ne": true}})), &u), ["bob"]);
    assert_eq!(hits(&uf(json!({"online": {"$gt": false}})), &u), ["alice", "carol"]);
    assert_eq!(hits(&uf(json!({"online": {"$gte": false}})), &u).len(), 3);
    assert_eq!(hits(&uf(json!({"online": {"$lt": true}})), &u), ["bob"]);
    assert_eq!(hits(&uf(json!({"online": {"$lte": false}})), &u), ["bob"]);
    assert_eq!(hits(&uf(json!({"online": {"$in": [false]}})), &u), ["bob"]);
    assert_eq!(hits(&uf(json!({"online": {"$nin": [false]}})), &u), ["alice", "carol"]);
    assert_eq!(hits(&uf(json!({"online": {"$exists": false}})), &u), Vec::<&str>::new());
}

#[test]
fn time_field_ops() {
    let u = users();
    let t = "2024-01-02T10:00:00Z";
    assert_eq!(hits(&uf(json!({"last_active": t})), &u), ["bob"]);
    // Same instant in another offset and precision.
    assert_eq!(hits(&uf(json!({"last_active": "2024-01-02T12:00:00.000+02:00"})), &u), ["bob"]);
    assert_eq!(hits(&uf(json!({"last_active": {"$ne": t}})), &u), ["alice", "carol"]);
    assert_eq!(hits(&uf(json!({"last_active": {"$gt": "2024-01-01T10:00:00Z"}})), &u), ["bob"]);
    assert_eq!(hits(&uf(json!({"last_active": {"$gte": "2024-01-01T10:00:00Z"}})), &u), ["alice", "bob"]);
    assert_eq!(hits(&uf(json!({"last_active": {"$lt": t}})), &u), ["alice"]);
    assert_eq!(hits(&uf(json!({"last_active": {"$lte": t}})), &u), ["alice", "bob"]);
    assert_eq!(hits(&uf(json!({"last_active": {"$in": [t]}})), &u), ["bob"]);
    assert_eq!(hits(&uf(json!({"last_active": {"$nin": [t]}})), &u), ["alice", "carol"]);
    assert_eq!(hits(&uf(json!({"last_active": {"$exists": false}})), &u), ["carol"]);
    // Several operators in one field object: a range.
    let q = uf(json!({"created_at": {"$gte": "2023-02-01T00:00:00Z", "$lt": "2023-03-01T00:00:00Z"}}));
    assert_eq!(hits(&q, &u), ["bob"]);
    assert_eq!(hits(&uf(json!({"updated_at": {"$gt": "2024-01-02T00:00:00Z"}})), &u), ["carol"]);
}

#[test]
fn custom_field_ops() {
    let u = users();
    // $eq: numbers numerically, strings, bools, arrays.
    assert_eq!(hits(&uf(json!({"level": 10.0})), &u), ["alice"]);
    assert_eq!(hits(&uf(json!({"level": 10})), &u), ["alice"]);
    assert_eq!(hits(&uf(json!({"level": "high"})), &u), ["carol"]);
    assert_eq!(hits(&uf(json!({"vip": true})), &u), ["alice"]);
    assert_eq!(hits(&uf(json!({"tags": ["green"]})), &u), ["bob"]);
    assert_eq!(hits(&uf(json!({"tags": {"$eq": ["red", "blue", 3.0]}})), &u), ["alice"]);
    // An object whose keys have no '$' is a bare value.
    let q = uf(json!({"obj": {"a": 1}}));
    let r = Rec::new("x").j("obj", json!({"a": 1.0}));
    assert!(q.matches(&r, &mut 0));
    assert!(!q.matches(&Rec::new("y").j("obj", json!({"a": 2})), &mut 0));
    // $ne / $nin: missing and other types match.
    assert_eq!(hits(&uf(json!({"level": {"$ne": 10}})), &u), ["bob", "carol"]);
    assert_eq!(hits(&uf(json!({"vip": {"$ne": true}})), &u), ["bob", "carol"]);
    assert_eq!(hits(&uf(json!({"level": {"$nin": [10, "high"]}})), &u), ["bob"]);
    assert_eq!(hits(&uf(json!({"level": {"$in": [2.5, "high"]}})), &u), ["bob", "carol"]);
    // Ordering ops only within a JSON type.
    assert_eq!(hits(&uf(json!({"level": {"$gt": 2}})), &u), ["alice", "bob"]);
    assert_eq!(hits(&uf(json!({"level": {"$gte": 10}})), &u), ["alice"]);
    assert_eq!(hits(&uf(json!({"level": {"$lt": 3}})), &u), ["bob"]);
    assert_eq!(hits(&uf(json!({"level": {"$lte": 2.5}})), &u), ["bob"]);
    assert_eq!(hits(&uf(json!({"level": {"$gt": "a"}})), &u), ["carol"]);
    assert_eq!(hits(&uf(json!({"vip": {"$lt": true}})), &u), ["bob"]);
    // $exists.
    assert_eq!(hits(&uf(json!({"vip": {"$exists": true}})), &u), ["alice", "bob"]);
    assert_eq!(hits(&uf(json!({"vip": {"$exists": false}})), &u), ["carol"]);
    assert_eq!(hits(&uf(json!({"nope": {"$exists": false}})), &u).len(), 3);
    assert_eq!(hits(&uf(json!({"nope": "x"})), &u), Vec::<&str>::new());
    // $autocomplete on words split on non-alphanumerics.
    assert_eq!(hits(&uf(json!({"name": {"$autocomplete": "lid"}})), &u), ["alice"]);
    assert_eq!(hits(&uf(json!({"name": {"$autocomplete": "BRI"}})), &u), ["bob"]);
    assert_eq!(hits(&uf(json!({"name": {"$autocomplete": "ann"}})), &u), ["carol"]);
    assert_eq!(hits(&uf(json!({"name": {"$autocomplete": "a"}})), &u), ["alice", "carol"]);
    assert_eq!(hits(&uf(json!({"level": {"$autocomplete": "1"}})), &u), Vec::<&str>::new());
    // $contains: arrays hold the value; strings hold the substring.
    assert_eq!(hits(&uf(json!({"tags": {"$contains": "blue"}})), &u), ["alice"]);
    assert_eq!(hits(&uf(json!({"tags": {"$contains": 3.0}})), &u), ["alice"]);
    assert_eq!(hits(&uf(json!({"name": {"$contains": "O'B"}})), &u), ["bob"]);
    assert_eq!(hits(&uf(json!({"level": {"$contains": 1}})), &u), Vec::<&str>::new());
}

#[test]
fn channel_field_ops() {
    let c = channels();
    assert_eq!(hits(&cf(json!({"type": "team"})), &c), ["team:b", "team:c"]);
    assert_eq!(hits(&cf(json!({"cid": {"$in": ["team:c", "x:y"]}})), &c), ["team:c"]);
    assert_eq!(hits(&cf(json!({"id": {"$autocomplete": "B"}})), &c), ["team:b"]);
    assert_eq!(hits(&cf(json!({"cid": {"$contains": ":a"}})), &c), ["messaging:a"]);
    assert_eq!(hits(&cf(json!({"member_count": 2})), &c), ["messaging:a"]);
    assert_eq!(hits(&cf(json!({"member_count": {"$ne": 2}})), &c), ["team:b", "team:c"]);
    assert_eq!(hits(&cf(json!({"member_count": {"$gt": 0}})), &c), ["messaging:a", "team:b"]);
    assert_eq!(hits(&cf(json!({"member_count": {"$gte": 1}})), &c), ["messaging:a", "team:b"]);
    assert_eq!(hits(&cf(json!({"member_count": {"$lt": 1}})), &c), ["team:c"]);
    assert_eq!(hits(&cf(json!({"member_count": {"$lte": 1}})), &c), ["team:b", "team:c"]);
    assert_eq!(hits(&cf(json!({"member_count": {"$in": [0, 2]}})), &c), ["messaging:a", "team:c"]);
    assert_eq!(hits(&cf(json!({"member_count": {"$nin": [0, 2]}})), &c), ["team:b"]);
    assert_eq!(hits(&cf(json!({"last_message_at": {"$exists": true}})), &c), ["messaging:a", "team:c"]);
    assert_eq!(hits(&cf(json!({"last_message_at": {"$gt": "2024-05-15T00:00:00Z"}})), &c), ["team:c"]);
    assert_eq!(hits(&cf(json!({"topic": {"$autocomplete": "cha"}})), &c), ["messaging:a"]);
    // members: $in (any of) and $eq / bare.
    assert_eq!(hits(&cf(json!({"members": {"$in": ["bob", "carol"]}})), &c), ["messaging:a", "team:b"]);
    assert_eq!(hits(&cf(json!({"members": {"$eq": "carol"}})), &c), ["team:b"]);
    assert_eq!(hits(&cf(json!({"members": "alice"})), &c), ["messaging:a"]);
    assert_eq!(hits(&cf(json!({"members": {"$in": []}})), &c), Vec::<&str>::new());
    // Users have no `members`: it is a custom field there.
    let q = uf(json!({"members": {"$exists": false}}));
    assert_eq!(hits(&q, &users()).len(), 3);
}

#[test]
fn logic() {
    let u = users();
    // Implicit AND across top-level fields.
    assert_eq!(hits(&uf(json!({"online": true, "status": "away"})), &u), ["carol"]);
    assert_eq!(hits(&uf(json!({"$and": [{"online": true}, {"level": {"$gt": 5}}]})), &u), ["alice"]);
    assert_eq!(hits(&uf(json!({"$or": [{"id": "bob"}, {"level": "high"}]})), &u), ["bob", "carol"]);
    assert_eq!(hits(&uf(json!({"$nor": [{"id": "bob"}, {"level": "high"}]})), &u), ["alice"]);
    // Nested.
    let q = uf(json!({
        "$or": [
            {"$and": [{"online": false}, {"vip": false}]},
            {"$nor": [{"online": true}, {"id": "bob"}]},
            {"$and": [{"$or": [{"id": "carol"}]}, {"status": {"$exists": true}}]}
        ]
    }));
    assert_eq!(hits(&q, &u), ["bob", "carol"]);
    // A logical operator next to fields: all must hold.
    let q = uf(json!({"online": true, "$or": [{"id": "alice"}, {"id": "bob"}]}));
    assert_eq!(hits(&q, &u), ["alice"]);
}

// ----- index hints ---------------------------------------------------------

#[test]
fn candidate_keys() {
    assert_eq!(uf(json!({"id": "a"})).candidate_keys(), Some(vec!["a".to_owned()]));
    assert_eq!(
        uf(json!({"id": {"$in": ["a", "b", "a"]}, "online": true})).candidate_keys(),
        Some(vec!["a".to_owned(), "b".to_owned()])
    );
    // Nested $and, intersected with the top level.
    let q = uf(json!({
        "id": {"$in": ["a", "b", "c"]},
        "$and": [{"$and": [{"id": {"$in": ["c", "b", "z"]}}]}, {"online": true}]
    }));
    assert_eq!(q.candidate_keys(), Some(vec!["b".to_owned(), "c".to_owned()]));
    // $in and $ne in one field object.
    let q = uf(json!({"id": {"$in": ["a", "b"], "$ne": "a"}}));
    assert_eq!(q.candidate_keys(), Some(vec!["a".to_owned(), "b".to_owned()]));
    assert_eq!(uf(json!({"id": {"$in": []}})).candidate_keys(), Some(vec![]));
    // Not pinned.
    assert_eq!(uf(json!({})).candidate_keys(), None);
    assert_eq!(uf(json!({"id": {"$ne": "a"}})).candidate_keys(), None);
    assert_eq!(uf(json!({"$or": [{"id": "a"}, {"id": "b"}]})).candidate_keys(), None);
    assert_eq!(uf(json!({"$nor": [{"id": "a"}]})).candidate_keys(), None);
    assert_eq!(uf(json!({"name": "a"})).candidate_keys(), None);
    // Channels pin `cid`, not `id`.
    assert_eq!(cf(json!({"id": "a"})).candidate_keys(), None);
    assert_eq!(cf(json!({"$and": [{"cid": "team:b"}]})).candidate_keys(), Some(vec!["team:b".to_owned()]));
}

#[test]
fn member_candidates() {
    assert_eq!(
        cf(json!({"members": {"$in": ["a", "b", "a"]}})).member_candidates(),
        Some(vec!["a".to_owned(), "b".to_owned()])
    );
    assert_eq!(cf(json!({"members": "a"})).member_candidates(), Some(vec!["a".to_owned()]));
    let q = cf(json!({"$and": [{"type": "team"}, {"$and": [{"members": {"$in": ["x", "y"]}}]}]}));
    assert_eq!(q.member_candidates(), Some(vec!["x".to_owned(), "y".to_owned()]));
    // Several: the smallest set.
    let q = cf(json!({"members": {"$in": ["x", "y"]}, "$and": [{"members": "z"}]}));
    assert_eq!(q.member_candidates(), Some(vec!["z".to_owned()]));
    assert_eq!(cf(json!({"$or": [{"members": "a"}]})).member_candidates(), None);
    assert_eq!(cf(json!({"type": "team"})).member_candidates(), None);
    assert_eq!(uf(json!({"members": "a"})).member_candidates(), None);
}

#[test]
fn matches_unsized_record() {
    let q = uf(json!({"id": "alice"}));
    let u = users();
    let dynr: &dyn Record = &u[0];
    assert!(q.matches(dynr, &mut 0));
}
