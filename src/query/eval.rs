//! Evaluation: whether a record satisfies a filter, how values of different types
//! compare, and which keys a filter pins (the index hints the engine starts from).
use super::{CmpOp, Cond, FieldValue, Filter, Op, Record, Val, ValSet};
use serde_json::{Number, Value};
use std::cmp::Ordering;

/// Whether `r` satisfies `filter`, adding to `text_work` the work units of the text it
/// scanned (see [`crate::config::QueryBudget`]).
pub(super) fn eval<R: Record + ?Sized>(filter: &Filter, r: &R, text_work: &mut u64) -> bool {
    match filter {
        Filter::And(children) => children.iter().all(|f| eval(f, r, text_work)),
        Filter::Or(children) => children.iter().any(|f| eval(f, r, text_work)),
        Filter::Nor(children) => !children.iter().any(|f| eval(f, r, text_work)),
        Filter::Cond(cond) => eval_cond(cond, r, text_work),
    }
}

/// Work units of text scanning: `$autocomplete` looks at every character (1 unit per
/// byte), `$contains` runs a fast substring search (1 unit per 64 bytes) or compares
/// array items (1 unit each).
const CONTAINS_BYTES_PER_UNIT: usize = 64;

fn eval_cond<R: Record + ?Sized>(cond: &Cond, r: &R, text_work: &mut u64) -> bool {
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
            Scalar::Str(s) => {
                *text_work += s.len() as u64;
                autocomplete(s, q)
            }
            _ => false,
        },
        Op::Contains(v) => match (&fv, v) {
            (FieldValue::Json(Value::Array(items)), Val::Json(want)) => {
                *text_work += items.len() as u64;
                items.iter().any(|item| json_eq(item, want))
            }
            (_, Val::Str(want)) | (_, Val::Json(Value::String(want))) => match have {
                Scalar::Str(s) => {
                    *text_work += (s.len() / CONTAINS_BYTES_PER_UNIT) as u64;
                    s.contains(want.as_str())
                }
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
pub(super) enum Num {
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
pub(super) enum Scalar<'a> {
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

    pub(super) fn of_field(fv: &FieldValue<'a>) -> Scalar<'a> {
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
    pub(super) fn rank(&self) -> u8 {
        match self {
            Scalar::Num(_) => 0,
            Scalar::Str(_) => 1,
            Scalar::Bool(_) => 2,
            Scalar::Other(_) => 3,
        }
    }
}

/// Ordering for filters: `None` when the types differ (never matches).
pub(super) fn filter_cmp(a: &Scalar<'_>, b: &Scalar<'_>) -> Option<Ordering> {
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

impl ValSet {
    /// O(1) expected for a string field value, O(operands) otherwise.
    fn contains(&self, have: &Scalar<'_>) -> bool {
        match have {
            Scalar::Str(s) => self.strings.contains(*s),
            _ => self.vals.iter().any(|v| scalar_eq(have, &Scalar::of_val(v))),
        }
    }
}

// Index hints

/// See [`super::Query::candidate_keys`].
pub(super) fn key_candidates(filter: &Filter, key_field: &str) -> Option<Vec<String>> {
    match filter {
        Filter::Cond(Cond { field, op }) if field == key_field => match op {
            Op::Eq(Val::Str(s)) => Some(vec![s.clone()]),
            Op::In(set) => Some(super::parse::dedup(
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

/// See [`super::Query::member_candidates`].
pub(super) fn member_ids(filter: &Filter) -> Option<Vec<String>> {
    match filter {
        Filter::Cond(Cond { op: Op::Members(ids), .. }) => Some(ids.clone()),
        Filter::And(children) => children.iter().filter_map(member_ids).min_by_key(Vec::len),
        _ => None,
    }
}
