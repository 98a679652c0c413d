//! Stream-style queries over users and channels (SPEC section 6): parsing the query
//! JSON, evaluating `filter_conditions` against a [`Record`], and sorting/paging.
//!
//! This module is pure: it knows nothing about the engine's state. The engine hands
//! it records through the [`Record`] trait (a view of one user or one channel, already
//! rendered for the viewer, so `online` is the viewer's `online`).
//!
//! Choices where the spec is silent (all documented again at the item concerned):
//! - A JSON `null` for a top-level query key means "absent" (the default applies).
//! - The default `limit` is `min(30, limit_max)`, so a small `query_limit_max` never
//!   makes a query without `limit` fail.
//! - A field object whose keys all lack a leading `$` (or an empty object) is a bare
//!   value compared with `$eq`; as soon as one key starts with `$` every key must be
//!   an operator.
//! - Ordering operators (`$gt` ...) work on every scalar field type: strings compare
//!   bytewise, `false < true`, timestamps and integers numerically.
//! - Custom-field sort order across JSON types: numbers < strings < booleans < anything
//!   else (null, arrays, objects), the last group comparing equal among itself.
//! - `$autocomplete` and `$contains` are rejected on boolean, timestamp and integer
//!   fields; on custom fields they simply do not match values of the wrong JSON type.
//! - A sort entry in array form needs both `field` and `direction`.
//! - For several `members` conditions under `$and`, [`Query::member_candidates`]
//!   returns the smallest of the id sets (each one alone is a sound candidate set).
use crate::error::{Error, Result};
use crate::time::{parse_millis, Millis};
use serde_json::{Map, Number, Value};
use std::cmp::Ordering;

/// The largest accepted `offset`.
const OFFSET_MAX: usize = 10_000;
/// The `limit` used when the query has none (capped by `limit_max`).
const DEFAULT_LIMIT: usize = 30;

/// What a query selects: users (`query_users`) or channels (`query_channels`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Target {
    Users,
    Channels,
}

impl Target {
    /// The field that is the record key (`id` for users, `cid` for channels).
    fn key_field(self) -> &'static str {
        match self {
            Target::Users => "id",
            Target::Channels => "cid",
        }
    }

    /// The field sorted on when the query gives no sort.
    fn default_sort_field(self) -> &'static str {
        match self {
            Target::Users => "created_at",
            Target::Channels => "last_message_at",
        }
    }

    /// The type of a named field for this target; unknown names are custom fields.
    fn field_kind(self, name: &str) -> Kind {
        match (self, name) {
            (Target::Users, "id" | "status") => Kind::Str,
            (Target::Users, "online") => Kind::Bool,
            (Target::Users, "last_active" | "created_at" | "updated_at") => Kind::Time,
            (Target::Channels, "cid" | "type" | "id") => Kind::Str,
            (Target::Channels, "members") => Kind::Members,
            (Target::Channels, "member_count") => Kind::Int,
            (Target::Channels, "created_at" | "updated_at" | "last_message_at") => Kind::Time,
            _ => Kind::Custom,
        }
    }
}

/// The declared type of a queryable field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Str,
    Bool,
    Time,
    Int,
    /// Channel membership: only `$in` / `$eq` with user ids, via [`Record::has_member`].
    Members,
    /// Any other field: a JSON value compared by JSON type.
    Custom,
}

impl Kind {
    fn describe(self) -> &'static str {
        match self {
            Kind::Str => "a string",
            Kind::Bool => "a boolean",
            Kind::Time => "an RFC 3339 timestamp string",
            Kind::Int => "an integer",
            Kind::Members => "a user id string",
            Kind::Custom => "a JSON value",
        }
    }
}

/// One value of a record field, as the engine exposes it to queries.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum FieldValue<'a> {
    Str(&'a str),
    Bool(bool),
    Time(Millis),
    Int(i64),
    /// A custom field's JSON value.
    Json(&'a Value),
}

/// A user or channel as seen by a query. Implementations should answer each method
/// in O(1) (a hash lookup at most); every cost below assumes so.
pub(crate) trait Record {
    /// The user id or channel cid.
    fn key(&self) -> &str;
    /// The value of a field; `None` when the record has no such field.
    fn field(&self, name: &str) -> Option<FieldValue<'_>>;
    /// Whether the user is a member (channels); users answer `false`.
    fn has_member(&self, user_id: &str) -> bool;
}

/// A parsed `filter_conditions` tree.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Filter {
    /// All must hold (an empty `And` matches everything).
    And(Vec<Filter>),
    /// At least one must hold.
    Or(Vec<Filter>),
    /// None may hold.
    Nor(Vec<Filter>),
    /// One operator on one field.
    Cond(Cond),
}

/// One operator applied to one field.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Cond {
    field: String,
    op: Op,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CmpOp {
    Gt,
    Gte,
    Lt,
    Lte,
}

#[derive(Debug, Clone, PartialEq)]
enum Op {
    Eq(Val),
    Ne(Val),
    Cmp(CmpOp, Val),
    In(ValSet),
    Nin(ValSet),
    Exists(bool),
    /// The query, already lower-cased.
    Autocomplete(String),
    Contains(Val),
    /// `members` `$eq`/`$in`: the channel contains at least one of these users.
    Members(Vec<String>),
}

/// A filter operand, already checked against the field's type.
#[derive(Debug, Clone, PartialEq)]
enum Val {
    Str(String),
    Bool(bool),
    /// Timestamps (milliseconds) and integers.
    Num(i64),
    /// Custom-field operands.
    Json(Value),
}

/// The operands of `$in`/`$nin`. String operands also sit in a hash set, so testing a
/// record against `id $in [100 ids]` is one lookup rather than 100 comparisons.
#[derive(Debug, Clone, PartialEq)]
struct ValSet {
    vals: Vec<Val>,
    strings: hashbrown::HashSet<String>,
}

impl ValSet {
    fn new(vals: Vec<Val>) -> Self {
        let strings = vals
            .iter()
            .filter_map(|v| match v {
                Val::Str(s) | Val::Json(Value::String(s)) => Some(s.clone()),
                _ => None,
            })
            .collect();
        ValSet { vals, strings }
    }

    /// O(1) expected for a string field value, O(operands) otherwise.
    fn contains(&self, have: &Scalar<'_>) -> bool {
        match have {
            Scalar::Str(s) => self.strings.contains(*s),
            _ => self.vals.iter().any(|v| scalar_eq(have, &Scalar::of_val(v))),
        }
    }
}

/// One sort key: a field and a direction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SortKey {
    field: String,
    descending: bool,
}

/// A parsed, validated query.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Query {
    pub filter: Filter,
    /// Never empty after parsing: the target's default sort fills in.
    pub sort: Vec<SortKey>,
    pub offset: usize,
    pub limit: usize,
    pub presence: bool,
    pub watch: bool,
    target: Target,
}

impl Query {
    /// Parses query JSON `{"filter_conditions": {...}, "sort": [...] or {...},
    /// "offset": 0, "limit": 30, "presence": false, "watch": false}` (`watch` only for
    /// [`Target::Channels`]). Every key is optional; a `null` value counts as absent.
    ///
    /// Errors: JSON that does not parse, a non-object, an unknown key or a key of the
    /// wrong JSON type is `Json`; a bad filter, sort direction, `limit` of 0 or less,
    /// non-integer `limit`/`offset` or `offset` above 10000 is `Invalid`; `limit`
    /// above `limit_max` is `Limit`. The default limit is `min(30, limit_max)`.
    ///
    /// Cost: O(length of `json`).
    pub(crate) fn parse(target: Target, json: &str, limit_max: usize) -> Result<Query> {
        let root: Value = serde_json::from_str(json).map_err(|e| Error::json(format!("query: {e}")))?;
        let Value::Object(root) = root else {
            return Err(Error::json(format!("query must be a JSON object, got {}", show(&root))));
        };
        let mut query = Query {
            filter: Filter::And(Vec::new()),
            sort: Vec::new(),
            offset: 0,
            limit: DEFAULT_LIMIT.min(limit_max.max(1)),
            presence: false,
            watch: false,
            target,
        };
        for (key, value) in &root {
            if value.is_null() {
                if is_query_key(target, key) {
                    continue;
                }
                return Err(Error::json(format!("unknown query key '{key}'")));
            }
            match key.as_str() {
                "filter_conditions" => {
                    let Value::Object(obj) = value else {
                        return Err(wrong_type(key, "an object", value));
                    };
                    query.filter = parse_filter_object(target, obj)?;
                }
                "sort" => query.sort = parse_sort(target, value)?,
                "offset" => {
                    let n = parse_count(key, value)?;
                    if n < 0 || n > OFFSET_MAX as i128 {
                        return Err(Error::invalid(format!("offset {n} is outside 0..={OFFSET_MAX}")));
                    }
                    query.offset = n as usize;
                }
                "limit" => {
                    let n = parse_count(key, value)?;
                    if n < 1 {
                        return Err(Error::invalid(format!("limit {n} must be at least 1")));
                    }
                    if n > limit_max as i128 {
                        return Err(Error::limit(format!("limit {n} exceeds query_limit_max {limit_max}")));
                    }
                    query.limit = n as usize;
                }
                "presence" => {
                    query.presence = value.as_bool().ok_or_else(|| wrong_type(key, "a boolean", value))?;
                }
                "watch" if target == Target::Channels => {
                    query.watch = value.as_bool().ok_or_else(|| wrong_type(key, "a boolean", value))?;
                }
                _ => return Err(Error::json(format!("unknown query key '{key}'"))),
            }
        }
        if query.sort.is_empty() {
            query.sort.push(SortKey { field: target.default_sort_field().to_owned(), descending: true });
        }
        Ok(query)
    }

    /// When the filter pins the key field (users `id`, channels `cid`) with `$eq` or
    /// `$in`, at top level or inside `$and` at any depth, the keys every match must be
    /// among (the intersection when pinned several times, without duplicates, in the
    /// order of the first pin); `None` otherwise (`$or`/`$nor` are not looked into).
    ///
    /// Cost: O(size of filter + number of keys named · number of pins).
    pub(crate) fn candidate_keys(&self) -> Option<Vec<String>> {
        key_candidates(&self.filter, self.target.key_field())
    }

    /// Channels only: when the filter has `members` `$in`/`$eq` at top level or inside
    /// `$and` at any depth, the user ids named (a matching channel contains at least
    /// one of them), without duplicates. With several such conditions the smallest
    /// id set is returned. `None` otherwise, and always for users.
    ///
    /// Cost: O(size of filter + number of ids named).
    pub(crate) fn member_candidates(&self) -> Option<Vec<String>> {
        if self.target != Target::Channels {
            return None;
        }
        member_ids(&self.filter)
    }

    /// Whether the record satisfies the filter.
    ///
    /// Cost: O(size of filter) field lookups; `$in`/`$nin`/`members` are linear in
    /// their list, `$autocomplete`/`$contains` linear in the field value.
    pub(crate) fn matches<R: Record + ?Sized>(&self, r: &R) -> bool {
        eval(&self.filter, r)
    }

    /// Sorts by the sort keys in order (missing values last whatever the direction;
    /// final tie-break by key ascending), then skips `offset` and keeps `limit`.
    ///
    /// Cost: O(n + m log m) comparisons with m = min(n, offset + limit) (a selection
    /// pass, then a sort of the page prefix); each comparison is O(number of sort keys)
    /// field lookups.
    pub(crate) fn sort_and_page<R: Record>(&self, mut records: Vec<R>) -> Vec<R> {
        if self.offset >= records.len() {
            return Vec::new();
        }
        let end = self.offset.saturating_add(self.limit).min(records.len());
        let cmp = |a: &R, b: &R| compare_records(&self.sort, a, b);
        if end < records.len() {
            records.select_nth_unstable_by(end, cmp);
            records.truncate(end);
        }
        records.sort_unstable_by(cmp);
        records.drain(..self.offset);
        records
    }
}

// ---------------------------------------------------------------------------------
// Parsing

fn is_query_key(target: Target, key: &str) -> bool {
    matches!(key, "filter_conditions" | "sort" | "offset" | "limit" | "presence")
        || (key == "watch" && target == Target::Channels)
}

/// Renders a JSON value for an error message, shortened to about 80 characters.
fn show(v: &Value) -> String {
    let mut s = v.to_string();
    if s.len() > 80 {
        let mut cut = 77;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push_str("...");
    }
    s
}

fn wrong_type(key: &str, want: &str, got: &Value) -> Error {
    Error::json(format!("query key '{key}' must be {want}, got {}", show(got)))
}

/// `offset`/`limit`: a JSON integer (as i128 so that u64 values fit), else an error.
fn parse_count(key: &str, v: &Value) -> Result<i128> {
    let Value::Number(n) = v else {
        return Err(wrong_type(key, "an integer", v));
    };
    if let Some(i) = n.as_i64() {
        Ok(i128::from(i))
    } else if let Some(u) = n.as_u64() {
        Ok(i128::from(u))
    } else {
        Err(Error::invalid(format!("{key} must be an integer, got {n}")))
    }
}

/// A filter object: several keys are an implicit AND.
fn parse_filter_object(target: Target, obj: &Map<String, Value>) -> Result<Filter> {
    let mut parts = Vec::with_capacity(obj.len());
    for (key, value) in obj {
        if key.starts_with('$') {
            let children = match key.as_str() {
                "$and" | "$or" | "$nor" => parse_logical(target, key, value)?,
                _ => {
                    return Err(Error::invalid(format!(
                        "unknown operator '{key}' in filter (expected a field name, $and, $or or $nor)"
                    )))
                }
            };
            parts.push(match key.as_str() {
                "$and" => Filter::And(children),
                "$or" => Filter::Or(children),
                _ => Filter::Nor(children),
            });
        } else {
            parts.push(parse_field(target, key, value)?);
        }
    }
    Ok(if parts.len() == 1 { parts.pop().unwrap_or(Filter::And(Vec::new())) } else { Filter::And(parts) })
}

fn parse_logical(target: Target, op: &str, value: &Value) -> Result<Vec<Filter>> {
    let list = match value {
        Value::Array(list) if !list.is_empty() => list,
        _ => {
            return Err(Error::invalid(format!(
                "{op} needs a non-empty array of filter objects, got {}",
                show(value)
            )))
        }
    };
    list.iter()
        .map(|item| match item {
            Value::Object(obj) => parse_filter_object(target, obj),
            _ => Err(Error::invalid(format!(
                "{op} needs an array of filter objects, got element {}",
                show(item)
            ))),
        })
        .collect()
}

/// `"field": value` or `"field": {"$op": value, ...}` (several operators: all hold).
fn parse_field(target: Target, name: &str, value: &Value) -> Result<Filter> {
    let kind = target.field_kind(name);
    let ops = match value {
        Value::Object(obj) if obj.keys().any(|k| k.starts_with('$')) => obj,
        _ => return parse_op(name, kind, "$eq", value).map(Filter::Cond),
    };
    let mut conds = ops
        .iter()
        .map(|(op, v)| parse_op(name, kind, op, v).map(Filter::Cond))
        .collect::<Result<Vec<_>>>()?;
    Ok(if conds.len() == 1 { conds.pop().unwrap_or(Filter::And(Vec::new())) } else { Filter::And(conds) })
}

fn type_error(field: &str, op: &str, want: &str, got: &Value) -> Error {
    Error::invalid(format!("filter field '{field}': {op} needs {want}, got {}", show(got)))
}

fn parse_op(field: &str, kind: Kind, op: &str, v: &Value) -> Result<Cond> {
    let op = if kind == Kind::Members {
        parse_members_op(field, op, v)?
    } else {
        match op {
            "$eq" => Op::Eq(parse_operand(field, kind, op, v)?),
            "$ne" => Op::Ne(parse_operand(field, kind, op, v)?),
            "$gt" | "$gte" | "$lt" | "$lte" => {
                let cmp = match op {
                    "$gt" => CmpOp::Gt,
                    "$gte" => CmpOp::Gte,
                    "$lt" => CmpOp::Lt,
                    _ => CmpOp::Lte,
                };
                if kind == Kind::Custom && !matches!(v, Value::Number(_) | Value::String(_) | Value::Bool(_))
                {
                    return Err(type_error(field, op, "a number, string or boolean", v));
                }
                Op::Cmp(cmp, parse_operand(field, kind, op, v)?)
            }
            "$in" | "$nin" => {
                let Value::Array(items) = v else {
                    return Err(type_error(field, op, "an array", v));
                };
                let label = format!("{op} element");
                let vals = items
                    .iter()
                    .map(|item| parse_operand(field, kind, &label, item))
                    .collect::<Result<Vec<_>>>()?;
                if op == "$in" {
                    Op::In(ValSet::new(vals))
                } else {
                    Op::Nin(ValSet::new(vals))
                }
            }
            "$exists" => match v {
                Value::Bool(b) => Op::Exists(*b),
                _ => return Err(type_error(field, op, "a boolean", v)),
            },
            "$autocomplete" => {
                if !matches!(kind, Kind::Str | Kind::Custom) {
                    return Err(Error::invalid(format!(
                        "filter field '{field}': {op} applies only to string fields"
                    )));
                }
                match v {
                    Value::String(s) => Op::Autocomplete(s.chars().flat_map(char::to_lowercase).collect()),
                    _ => return Err(type_error(field, op, "a string", v)),
                }
            }
            "$contains" => match kind {
                Kind::Str => match v {
                    Value::String(s) => Op::Contains(Val::Str(s.clone())),
                    _ => return Err(type_error(field, op, "a string", v)),
                },
                Kind::Custom => Op::Contains(Val::Json(v.clone())),
                _ => {
                    return Err(Error::invalid(format!(
                        "filter field '{field}': {op} applies only to string and custom fields"
                    )))
                }
            },
            _ => return Err(Error::invalid(format!("unknown operator '{op}' on field '{field}'"))),
        }
    };
    Ok(Cond { field: field.to_owned(), op })
}

fn parse_members_op(field: &str, op: &str, v: &Value) -> Result<Op> {
    match op {
        "$eq" => match v {
            Value::String(s) => Ok(Op::Members(vec![s.clone()])),
            _ => Err(type_error(field, op, "a user id string", v)),
        },
        "$in" => {
            let ids = match v {
                Value::Array(items) => {
                    items.iter().map(|item| item.as_str().map(str::to_owned)).collect::<Option<Vec<_>>>()
                }
                _ => None,
            };
            ids.map(|ids| Op::Members(dedup(ids)))
                .ok_or_else(|| type_error(field, op, "an array of user id strings", v))
        }
        "$ne" | "$gt" | "$gte" | "$lt" | "$lte" | "$nin" | "$exists" | "$autocomplete" | "$contains" => {
            Err(Error::invalid(format!("filter field '{field}': {op} is not supported (only $in and $eq)")))
        }
        _ => Err(Error::invalid(format!("unknown operator '{op}' on field '{field}'"))),
    }
}

/// Checks an operand against the field type and converts it.
fn parse_operand(field: &str, kind: Kind, op: &str, v: &Value) -> Result<Val> {
    let bad = || type_error(field, op, kind.describe(), v);
    match kind {
        Kind::Str | Kind::Members => v.as_str().map(|s| Val::Str(s.to_owned())).ok_or_else(bad),
        Kind::Bool => v.as_bool().map(Val::Bool).ok_or_else(bad),
        Kind::Int => v.as_i64().map(Val::Num).ok_or_else(bad),
        Kind::Time => {
            let s = v.as_str().ok_or_else(bad)?;
            parse_millis(s).map(Val::Num).map_err(|_| bad())
        }
        Kind::Custom => Ok(Val::Json(v.clone())),
    }
}

fn parse_sort(target: Target, v: &Value) -> Result<Vec<SortKey>> {
    match v {
        Value::Array(items) => items
            .iter()
            .map(|item| {
                let Value::Object(obj) = item else {
                    return Err(Error::json(format!(
                        "sort entries must be objects {{\"field\": ..., \"direction\": 1 or -1}}, got {}",
                        show(item)
                    )));
                };
                let mut field = None;
                let mut direction = None;
                for (k, v) in obj {
                    match k.as_str() {
                        "field" => {
                            field = Some(v.as_str().ok_or_else(|| {
                                Error::json(format!("sort entry 'field' must be a string, got {}", show(v)))
                            })?)
                        }
                        "direction" => direction = Some(v),
                        _ => return Err(Error::json(format!("unknown sort entry key '{k}'"))),
                    }
                }
                let field = field.ok_or_else(|| Error::json("sort entry needs 'field'"))?;
                let direction = direction
                    .ok_or_else(|| Error::json(format!("sort entry for '{field}' needs 'direction'")))?;
                sort_key(target, field, direction)
            })
            .collect(),
        Value::Object(obj) => obj.iter().map(|(f, d)| sort_key(target, f, d)).collect(),
        _ => Err(wrong_type("sort", "an array or an object", v)),
    }
}

fn sort_key(target: Target, field: &str, direction: &Value) -> Result<SortKey> {
    if field.is_empty() {
        return Err(Error::invalid("sort field must not be empty"));
    }
    if target.field_kind(field) == Kind::Members {
        return Err(Error::invalid(format!("cannot sort by '{field}'")));
    }
    let descending = match direction.as_i64() {
        Some(1) => false,
        Some(-1) => true,
        _ => {
            return Err(Error::invalid(format!(
                "sort field '{field}': direction must be 1 or -1, got {}",
                show(direction)
            )))
        }
    };
    Ok(SortKey { field: field.to_owned(), descending })
}

/// Removes duplicates, keeping the first occurrence of each. O(n²) for tiny lists,
/// a hash set otherwise.
fn dedup(ids: Vec<String>) -> Vec<String> {
    if ids.len() <= 16 {
        let mut out: Vec<String> = Vec::with_capacity(ids.len());
        for id in ids {
            if !out.contains(&id) {
                out.push(id);
            }
        }
        out
    } else {
        let mut seen = hashbrown::HashSet::with_capacity(ids.len());
        ids.into_iter().filter(|id| seen.insert(id.clone())).collect()
    }
}

// ---------------------------------------------------------------------------------
// Index hints

fn key_candidates(filter: &Filter, key_field: &str) -> Option<Vec<String>> {
    match filter {
        Filter::Cond(Cond { field, op }) if field == key_field => match op {
            Op::Eq(Val::Str(s)) => Some(vec![s.clone()]),
            Op::In(set) => Some(dedup(
                set.vals
                    .iter()
                    .filter_map(|v| match v {
                        Val::Str(s) => Some(s.clone()),
                        _ => None,
                    })
                    .collect(),
            )),
            _ => None,
        },
        Filter::And(children) => {
            let mut acc: Option<Vec<String>> = None;
            for child in children {
                if let Some(keys) = key_candidates(child, key_field) {
                    acc = Some(match acc {
                        None => keys,
                        Some(prev) => {
                            let set: hashbrown::HashSet<&str> = keys.iter().map(String::as_str).collect();
                            prev.into_iter().filter(|k| set.contains(k.as_str())).collect()
                        }
                    });
                }
            }
            acc
        }
        _ => None,
    }
}

fn member_ids(filter: &Filter) -> Option<Vec<String>> {
    match filter {
        Filter::Cond(Cond { op: Op::Members(ids), .. }) => Some(ids.clone()),
        Filter::And(children) => children.iter().filter_map(member_ids).min_by_key(Vec::len),
        _ => None,
    }
}

// ---------------------------------------------------------------------------------
// Evaluation

fn eval<R: Record + ?Sized>(filter: &Filter, r: &R) -> bool {
    match filter {
        Filter::And(children) => children.iter().all(|f| eval(f, r)),
        Filter::Or(children) => children.iter().any(|f| eval(f, r)),
        Filter::Nor(children) => !children.iter().any(|f| eval(f, r)),
        Filter::Cond(cond) => eval_cond(cond, r),
    }
}

fn eval_cond<R: Record + ?Sized>(cond: &Cond, r: &R) -> bool {
    if let Op::Members(ids) = &cond.op {
        return ids.iter().any(|id| r.has_member(id));
    }
    let Some(fv) = r.field(&cond.field) else {
        return matches!(cond.op, Op::Exists(false) | Op::Ne(_) | Op::Nin(_));
    };
    let have = Scalar::of_field(&fv);
    match &cond.op {
        Op::Eq(v) => scalar_eq(&have, &Scalar::of_val(v)),
        Op::Ne(v) => !scalar_eq(&have, &Scalar::of_val(v)),
        Op::Cmp(op, v) => match filter_cmp(&have, &Scalar::of_val(v)) {
            Some(ord) => match op {
                CmpOp::Gt => ord == Ordering::Greater,
                CmpOp::Gte => ord != Ordering::Less,
                CmpOp::Lt => ord == Ordering::Less,
                CmpOp::Lte => ord != Ordering::Greater,
            },
            None => false,
        },
        Op::In(set) => set.contains(&have),
        Op::Nin(set) => !set.contains(&have),
        Op::Exists(want) => *want,
        Op::Autocomplete(q) => match have {
            Scalar::Str(s) => autocomplete(s, q),
            _ => false,
        },
        Op::Contains(v) => match (&fv, v) {
            (FieldValue::Json(Value::Array(items)), Val::Json(want)) => {
                items.iter().any(|item| json_eq(item, want))
            }
            (_, Val::Str(want)) | (_, Val::Json(Value::String(want))) => match have {
                Scalar::Str(s) => s.contains(want.as_str()),
                _ => false,
            },
            _ => false,
        },
        Op::Members(_) => false,
    }
}

/// Whether any word of `text` (split on non-alphanumeric characters) starts with
/// `query_lower`, case-insensitively.
fn autocomplete(text: &str, query_lower: &str) -> bool {
    text.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()).any(|word| {
        let mut chars = word.chars().flat_map(char::to_lowercase);
        query_lower.chars().all(|q| chars.next() == Some(q))
    })
}

/// A number from a field or operand: integers exactly, other numbers as f64.
#[derive(Debug, Clone, Copy)]
enum Num {
    I(i128),
    F(f64),
}

impl Num {
    fn of(n: &Number) -> Num {
        if let Some(i) = n.as_i64() {
            Num::I(i128::from(i))
        } else if let Some(u) = n.as_u64() {
            Num::I(i128::from(u))
        } else {
            Num::F(n.as_f64().unwrap_or(0.0))
        }
    }

    fn cmp(self, other: Num) -> Ordering {
        match (self, other) {
            (Num::I(a), Num::I(b)) => a.cmp(&b),
            (Num::F(a), Num::F(b)) => a.total_cmp(&b),
            (Num::I(a), Num::F(b)) => cmp_int_float(a, b),
            (Num::F(a), Num::I(b)) => cmp_int_float(b, a).reverse(),
        }
    }
}

/// Exact comparison of an integer with a float.
fn cmp_int_float(i: i128, f: f64) -> Ordering {
    if f.is_nan() {
        return Ordering::Less;
    }
    // Beyond ±2^100 every i128 built from an i64/u64 is smaller in magnitude.
    if f >= 1e30 {
        return Ordering::Less;
    }
    if f <= -1e30 {
        return Ordering::Greater;
    }
    let floor = f.floor();
    match i.cmp(&(floor as i128)) {
        Ordering::Equal if f > floor => Ordering::Less,
        ord => ord,
    }
}

/// A field value or operand reduced to what comparisons look at.
#[derive(Debug, Clone, Copy)]
enum Scalar<'a> {
    Num(Num),
    Str(&'a str),
    Bool(bool),
    /// JSON null, arrays and objects.
    Other(&'a Value),
}

impl<'a> Scalar<'a> {
    fn of_json(v: &'a Value) -> Scalar<'a> {
        match v {
            Value::Number(n) => Scalar::Num(Num::of(n)),
            Value::String(s) => Scalar::Str(s),
            Value::Bool(b) => Scalar::Bool(*b),
            other => Scalar::Other(other),
        }
    }

    fn of_field(fv: &FieldValue<'a>) -> Scalar<'a> {
        match *fv {
            FieldValue::Str(s) => Scalar::Str(s),
            FieldValue::Bool(b) => Scalar::Bool(b),
            FieldValue::Time(t) => Scalar::Num(Num::I(i128::from(t))),
            FieldValue::Int(i) => Scalar::Num(Num::I(i128::from(i))),
            FieldValue::Json(v) => Scalar::of_json(v),
        }
    }

    fn of_val(v: &'a Val) -> Scalar<'a> {
        match v {
            Val::Str(s) => Scalar::Str(s),
            Val::Bool(b) => Scalar::Bool(*b),
            Val::Num(n) => Scalar::Num(Num::I(i128::from(*n))),
            Val::Json(v) => Scalar::of_json(v),
        }
    }

    /// Sort rank across types: numbers < strings < booleans < everything else.
    fn rank(&self) -> u8 {
        match self {
            Scalar::Num(_) => 0,
            Scalar::Str(_) => 1,
            Scalar::Bool(_) => 2,
            Scalar::Other(_) => 3,
        }
    }
}

/// Ordering for filters: `None` when the types differ (never matches).
fn filter_cmp(a: &Scalar<'_>, b: &Scalar<'_>) -> Option<Ordering> {
    match (a, b) {
        (Scalar::Num(x), Scalar::Num(y)) => Some(x.cmp(*y)),
        (Scalar::Str(x), Scalar::Str(y)) => Some(x.as_bytes().cmp(y.as_bytes())),
        (Scalar::Bool(x), Scalar::Bool(y)) => Some(x.cmp(y)),
        _ => None,
    }
}

fn scalar_eq(a: &Scalar<'_>, b: &Scalar<'_>) -> bool {
    match (a, b) {
        (Scalar::Other(x), Scalar::Other(y)) => json_eq(x, y),
        _ => filter_cmp(a, b) == Some(Ordering::Equal),
    }
}

/// JSON equality with numbers compared numerically (`1 == 1.0`), recursively.
fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => Num::of(x).cmp(Num::of(y)) == Ordering::Equal,
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| json_eq(p, q))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, p)| y.get(k).is_some_and(|q| json_eq(p, q)))
        }
        _ => a == b,
    }
}

/// Total order for sorting values of one field (ascending).
fn sort_cmp(a: &Scalar<'_>, b: &Scalar<'_>) -> Ordering {
    filter_cmp(a, b).unwrap_or_else(|| a.rank().cmp(&b.rank()))
}

fn compare_records<R: Record>(keys: &[SortKey], a: &R, b: &R) -> Ordering {
    for key in keys {
        let ord = match (a.field(&key.field), b.field(&key.field)) {
            (None, None) => Ordering::Equal,
            (None, Some(_)) => Ordering::Greater,
            (Some(_), None) => Ordering::Less,
            (Some(x), Some(y)) => {
                let ord = sort_cmp(&Scalar::of_field(&x), &Scalar::of_field(&y));
                if key.descending {
                    ord.reverse()
                } else {
                    ord
                }
            }
        };
        if ord != Ordering::Equal {
            return ord;
        }
    }
    a.key().as_bytes().cmp(b.key().as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;
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
        recs.iter().filter(|r| q.matches(*r)).map(|r| r.key.as_str()).collect()
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
        assert!(q.matches(&r));
        assert!(!q.matches(&Rec::new("y").j("obj", json!({"a": 2}))));
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
        assert_eq!(
            cf(json!({"$and": [{"cid": "team:b"}]})).candidate_keys(),
            Some(vec!["team:b".to_owned()])
        );
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

    #[test]
    fn matches_unsized_record() {
        let q = uf(json!({"id": "alice"}));
        let u = users();
        let dynr: &dyn Record = &u[0];
        assert!(q.matches(dynr));
    }
}
