//! Parsing: query JSON into a [`Query`], every operand checked against its field's type.
use super::{CmpOp, Cond, Filter, Kind, Op, Query, Target, Val, ValSet, DEFAULT_LIMIT, OFFSET_MAX};
use crate::error::{Error, Result};
use crate::time::parse_millis;
use serde_json::{Map, Value};

/// See [`Query::parse`].
pub(super) fn query(target: Target, json: &str, limit_max: usize) -> Result<Query> {
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
        if value.is_null() && is_query_key(target, key) {
            continue;
        }
        apply_key(&mut query, key, value, limit_max)?;
    }
    if query.sort.is_empty() {
        query.sort.push(super::sort::default_key(target));
    }
    Ok(query)
}

/// Sets what one top-level key of the query says.
fn apply_key(query: &mut Query, key: &str, value: &Value, limit_max: usize) -> Result<()> {
    let target = query.target;
    match key {
        _ if value.is_null() => return Err(Error::json(format!("unknown query key '{key}'"))),
        "filter_conditions" => {
            let Value::Object(obj) = value else {
                return Err(wrong_type(key, "an object", value));
            };
            query.filter = parse_filter_object(target, obj)?;
        }
        "sort" => query.sort = super::sort::parse(target, value)?,
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
        "presence" => query.presence = parse_bool(key, value)?,
        "watch" if target == Target::Channels => query.watch = parse_bool(key, value)?,
        _ => return Err(Error::json(format!("unknown query key '{key}'"))),
    }
    Ok(())
}

fn parse_bool(key: &str, value: &Value) -> Result<bool> {
    value.as_bool().ok_or_else(|| wrong_type(key, "a boolean", value))
}

fn is_query_key(target: Target, key: &str) -> bool {
    matches!(key, "filter_conditions" | "sort" | "offset" | "limit" | "presence")
        || (key == "watch" && target == Target::Channels)
}

/// Renders a JSON value for an error message, shortened to about 80 characters.
pub(super) fn show(v: &Value) -> String {
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

pub(super) fn wrong_type(key: &str, want: &str, got: &Value) -> Error {
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
    let op = match op {
        _ if kind == Kind::Members => parse_members_op(field, op, v)?,
        "$eq" => Op::Eq(parse_operand(field, kind, op, v)?),
        "$ne" => Op::Ne(parse_operand(field, kind, op, v)?),
        "$gt" | "$gte" | "$lt" | "$lte" => parse_cmp(field, kind, op, v)?,
        "$in" | "$nin" => parse_set(field, kind, op, v)?,
        "$exists" => match v {
            Value::Bool(b) => Op::Exists(*b),
            _ => return Err(type_error(field, op, "a boolean", v)),
        },
        "$autocomplete" => parse_autocomplete(field, kind, op, v)?,
        "$contains" => parse_contains(field, kind, op, v)?,
        _ => return Err(Error::invalid(format!("unknown operator '{op}' on field '{field}'"))),
    };
    Ok(Cond { field: field.to_owned(), op })
}

/// `$gt`, `$gte`, `$lt`, `$lte`: custom fields compare only numbers, strings and booleans.
fn parse_cmp(field: &str, kind: Kind, op: &str, v: &Value) -> Result<Op> {
    let cmp = match op {
        "$gt" => CmpOp::Gt,
        "$gte" => CmpOp::Gte,
        "$lt" => CmpOp::Lt,
        _ => CmpOp::Lte,
    };
    if kind == Kind::Custom && !matches!(v, Value::Number(_) | Value::String(_) | Value::Bool(_)) {
        return Err(type_error(field, op, "a number, string or boolean", v));
    }
    Ok(Op::Cmp(cmp, parse_operand(field, kind, op, v)?))
}

/// `$in`, `$nin`: an array of operands of the field's type.
fn parse_set(field: &str, kind: Kind, op: &str, v: &Value) -> Result<Op> {
    let Value::Array(items) = v else {
        return Err(type_error(field, op, "an array", v));
    };
    let label = format!("{op} element");
    let vals =
        items.iter().map(|item| parse_operand(field, kind, &label, item)).collect::<Result<Vec<_>>>()?;
    Ok(if op == "$in" { Op::In(ValSet::new(vals)) } else { Op::Nin(ValSet::new(vals)) })
}

fn parse_autocomplete(field: &str, kind: Kind, op: &str, v: &Value) -> Result<Op> {
    if !matches!(kind, Kind::Str | Kind::Custom) {
        return Err(Error::invalid(format!("filter field '{field}': {op} applies only to string fields")));
    }
    match v {
        Value::String(s) => Ok(Op::Autocomplete(s.chars().flat_map(char::to_lowercase).collect())),
        _ => Err(type_error(field, op, "a string", v)),
    }
}

fn parse_contains(field: &str, kind: Kind, op: &str, v: &Value) -> Result<Op> {
    match kind {
        Kind::Str => match v {
            Value::String(s) => Ok(Op::Contains(Val::Str(s.clone()))),
            _ => Err(type_error(field, op, "a string", v)),
        },
        Kind::Custom => Ok(Op::Contains(Val::Json(v.clone()))),
        _ => Err(Error::invalid(format!(
            "filter field '{field}': {op} applies only to string and custom fields"
        ))),
    }
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

/// Removes duplicates, keeping the first occurrence of each. O(n²) for tiny lists,
/// a hash set otherwise.
pub(super) fn dedup(ids: Vec<String>) -> Vec<String> {
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
