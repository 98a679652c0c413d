//! Sorting and paging: the `sort` key of a query, the order it defines, and the page cut.
use super::eval::{filter_cmp, Scalar};
use super::parse::{show, wrong_type};
use super::{Kind, Record, SortKey, Target};
use crate::error::{Error, Result};
use serde_json::{Map, Value};
use std::cmp::Ordering;

/// The sort when the query gives none: newest first by the target's default field.
pub(super) fn default_key(target: Target) -> SortKey {
    SortKey { field: target.default_sort_field().to_owned(), descending: true }
}

/// `sort`: `[{"field": ..., "direction": 1 or -1}, ...]` or `{"field": direction, ...}`
/// (the object form keeps its key order).
pub(super) fn parse(target: Target, v: &Value) -> Result<Vec<SortKey>> {
    match v {
        Value::Array(items) => items.iter().map(|item| parse_entry(target, item)).collect(),
        Value::Object(obj) => obj.iter().map(|(f, d)| sort_key(target, f, d)).collect(),
        _ => Err(wrong_type("sort", "an array or an object", v)),
    }
}

/// One entry of the array form; both `field` and `direction` are required.
fn parse_entry(target: Target, item: &Value) -> Result<SortKey> {
    let Value::Object(obj) = item else {
        return Err(Error::json(format!(
            "sort entries must be objects {{\"field\": ..., \"direction\": 1 or -1}}, got {}",
            show(item)
        )));
    };
    let (field, direction) = entry_parts(obj)?;
    let field = field.ok_or_else(|| Error::json("sort entry needs 'field'"))?;
    let direction =
        direction.ok_or_else(|| Error::json(format!("sort entry for '{field}' needs 'direction'")))?;
    sort_key(target, field, direction)
}

/// The `field` and `direction` of an array-form entry, rejecting any other key.
fn entry_parts(obj: &Map<String, Value>) -> Result<(Option<&str>, Option<&Value>)> {
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
    Ok((field, direction))
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

/// See [`super::Query::sort_and_page`].
pub(super) fn page<R: Record>(keys: &[SortKey], offset: usize, limit: usize, mut records: Vec<R>) -> Vec<R> {
    if offset >= records.len() {
        return Vec::new();
    }
    let end = offset.saturating_add(limit).min(records.len());
    let cmp = |a: &R, b: &R| compare_records(keys, a, b);
    if end < records.len() {
        records.select_nth_unstable_by(end, cmp);
        records.truncate(end);
    }
    records.sort_unstable_by(cmp);
    records.drain(..offset);
    records
}

/// Total order for sorting values of one field (ascending).
fn sort_cmp(a: &Scalar<'_>, b: &Scalar<'_>) -> Ordering {
    filter_cmp(a, b).unwrap_or_else(|| a.rank().cmp(&b.rank()))
}

/// The order of two records under `keys`: missing values last whatever the direction,
/// then by key ascending.
pub(super) fn compare_records<R: Record>(keys: &[SortKey], a: &R, b: &R) -> Ordering {
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
