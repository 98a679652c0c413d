//! Stream-style queries over users and channels: parsing the query JSON (`parse`),
//! evaluating `filter_conditions` against a [`Record`] (`eval`), and sorting and paging
//! (`sort`).
//!
//! This module is pure: it knows nothing about the engine's state. The engine hands
//! it records through the [`Record`] trait (a view of one user or one channel, already
//! rendered for the viewer, so `online` is the viewer's `online`).
//!
//! Rules a reader might not guess (each is documented again at the item concerned):
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
mod eval;
mod parse;
mod sort;
#[cfg(test)]
mod tests;

use crate::config::QueryBudget;
use crate::error::{Error, Result};
use crate::time::Millis;
use serde_json::Value;

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
}

/// The size of a filter, as [`Query::check_budget`] counts it.
#[derive(Default)]
struct Size {
    clauses: usize,
    depth: usize,
    text_clauses: usize,
    /// The longest operand list.
    in_values: usize,
    /// Work units per record examined, apart from sorting.
    units: u64,
}

impl Size {
    /// Adds `filter`, found at nesting level `depth`. O(size of filter).
    fn add(&mut self, filter: &Filter, depth: usize) {
        self.clauses += 1;
        self.depth = self.depth.max(depth);
        self.units += 1;
        match filter {
            Filter::And(children) | Filter::Or(children) | Filter::Nor(children) => {
                for child in children {
                    self.add(child, depth + 1);
                }
            }
            Filter::Cond(cond) => match &cond.op {
                Op::Autocomplete(_) | Op::Contains(_) => {
                    self.text_clauses += 1;
                    self.units += 3;
                }
                Op::In(set) | Op::Nin(set) => {
                    self.in_values = self.in_values.max(set.vals.len());
                    // String operands are one hash lookup; the others are compared in turn.
                    self.units += (set.vals.len() - set.strings.len()) as u64 / 16;
                }
                Op::Members(ids) => {
                    self.in_values = self.in_values.max(ids.len());
                    self.units += 2 * ids.len() as u64;
                }
                _ => {}
            },
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
        parse::query(target, json, limit_max)
    }

    /// When the filter pins the key field (users `id`, channels `cid`) with `$eq` or
    /// `$in`, at top level or inside `$and` at any depth, the keys every match must be
    /// among (the intersection when pinned several times, without duplicates, in the
    /// order of the first pin); `None` otherwise (`$or`/`$nor` are not looked into).
    ///
    /// Cost: O(size of filter + number of keys named · number of pins).
    pub(crate) fn candidate_keys(&self) -> Option<Vec<String>> {
        eval::key_candidates(&self.filter, self.target.key_field())
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
        eval::member_ids(&self.filter)
    }

    /// Checks the query against `budget` for examining `examined` records (see
    /// [`QueryBudget`] for the rules and the work units), before any is examined; `Limit`
    /// names the bound passed. Answers the work units left for scanning text, to pass to
    /// [`Query::select`].
    ///
    /// Cost: O(size of filter).
    pub(crate) fn check_budget(&self, budget: &QueryBudget, examined: usize) -> Result<u64> {
        let mut size = Size::default();
        size.add(&self.filter, 1);
        let over = |what: &str, n: usize, key: &str, max: u64| {
            Error::limit(format!("query has {n} {what}, more than query_budget.{key} {max}"))
        };
        let checks = [
            ("filter clauses", size.clauses, "max_clauses", budget.max_clauses),
            ("levels of filter nesting", size.depth, "max_depth", budget.max_depth),
            (
                "$autocomplete/$contains conditions",
                size.text_clauses,
                "max_text_clauses",
                budget.max_text_clauses,
            ),
            ("operands in one $in/$nin/members list", size.in_values, "max_in_values", budget.max_in_values),
            ("sort keys", self.sort.len(), "max_sort_keys", budget.max_sort_keys),
        ];
        for (what, n, key, max) in checks {
            if n as u64 > u64::from(max) {
                return Err(over(what, n, key, u64::from(max)));
            }
        }
        let per_record = 1 + size.units + 2 * self.sort.len() as u64;
        let work = (examined as u64).saturating_mul(per_record);
        if work > budget.max_work {
            return Err(Error::limit(format!(
                "query would examine {examined} records at {per_record} work units each ({work}), more than \
                 query_budget.max_work {}: name the records through id/cid $in or members $in, or simplify it",
                budget.max_work
            )));
        }
        Ok(budget.max_work - work)
    }

    /// The records that satisfy the filter, in their order; `Limit` as soon as scanning
    /// text takes more than `text_budget` work units (from [`Query::check_budget`]).
    ///
    /// Cost: O(records × size of filter) field lookups; `$in`/`$nin`/`members` are linear
    /// in their list, `$autocomplete`/`$contains` linear in the field value.
    pub(crate) fn select<R: Record>(
        &self,
        records: impl IntoIterator<Item = R>,
        text_budget: u64,
    ) -> Result<Vec<R>> {
        let mut text_work = 0;
        let mut selected = Vec::new();
        for r in records {
            if self.matches(&r, &mut text_work) {
                selected.push(r);
            }
            if text_work > text_budget {
                return Err(Error::limit(format!(
                    "query scanned more text than query_budget.max_work allows (over {text_budget} units \
                     left for $autocomplete/$contains): name the records through id/cid $in or members $in"
                )));
            }
        }
        Ok(selected)
    }

    /// Whether the record satisfies the filter, adding the text work done to `text_work`.
    fn matches<R: Record + ?Sized>(&self, r: &R, text_work: &mut u64) -> bool {
        eval::eval(&self.filter, r, text_work)
    }

    /// Sorts by the sort keys in order (missing values last whatever the direction;
    /// final tie-break by key ascending), then skips `offset` and keeps `limit`.
    ///
    /// Cost: O(n + m log m) comparisons with m = min(n, offset + limit) (a selection
    /// pass, then a sort of the page prefix); each comparison is O(number of sort keys)
    /// field lookups.
    pub(crate) fn sort_and_page<R: Record>(&self, records: Vec<R>) -> Vec<R> {
        sort::page(&self.sort, self.offset, self.limit, records)
    }
}
