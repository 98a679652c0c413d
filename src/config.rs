//! Engine configuration, parsed from JSON with unknown keys rejected so typos fail loudly.
use crate::error::{Error, Result};
use crate::time::Millis;
use serde::Deserialize;

/// Where time comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Clock {
    /// Wall-clock time; `set_time` is refused.
    #[default]
    System,
    /// Starts at `start_time_ms` and moves only with `set_time` (never backwards).
    Manual,
}

/// When callbacks run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Dispatch {
    /// On the thread whose call caused the events, before that call returns.
    #[default]
    Immediate,
    /// Only inside `pump`, on the thread that calls it (game-loop model).
    Manual,
}

/// Engine settings; [`Config::default`] holds the default of every field.
///
/// Numbers: every key takes a JSON integer of its type's range; anything else (a negative
/// or fractional number, a count above `u32::MAX`, a duration above `u64::MAX`) is
/// rejected with a message. Durations are milliseconds; a duration whose end lies beyond
/// what a signed 64-bit millisecond time can hold (any value above `i64::MAX`, such as a
/// host's `u64::MAX` for "never", or a smaller one that overflows when added to the
/// current time) means **never**: that timeout never fires, that grace never ends, that
/// refresh never comes. Nothing wraps around.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub clock: Clock,
    /// Manual clock only: the starting time, Unix milliseconds, at least 0.
    pub start_time_ms: Millis,
    pub dispatch: Dispatch,
    /// How often `last_active` of a connected visible user is refreshed; more than 0.
    pub last_active_refresh_ms: u64,
    /// Close a connection without a heartbeat for this long (reason `timeout`); 0 never.
    pub connection_timeout_ms: u64,
    /// Keep a user online this long after their last connection closed; 0: no grace.
    pub offline_grace_ms: u64,
    /// More than 0.
    pub max_connections_per_user: u32,
    pub max_subscriptions_per_connection: u32,
    /// Per-connection event queue; 0 disables queues.
    pub connection_queue_capacity: u32,
    /// The largest query `limit`; more than 0.
    pub query_limit_max: u32,
    /// How big and how costly one query may be.
    pub query_budget: QueryBudget,
}

/// Bounds on one query (`query_users`, `query_channels`), so that no query holds the
/// engine for long: the engine is locked while a query runs. A query over a bound answers
/// `LIMIT` with a message naming the key, before any record is examined. Every key is a
/// JSON integer; absent keys keep their defaults (`"query_budget": {"max_work": 1000000}`
/// raises one bound only).
///
/// The work of a query is the number of records it examines times the work units each
/// costs. Records examined are the users or channels its filter names through an index
/// (`id`/`cid` `$eq`/`$in`, channel `members` `$in`), otherwise all of them. Units per
/// record: 1, plus 1 per filter clause (a condition, or `$and`/`$or`/`$nor`), plus 3 more
/// per `$autocomplete`/`$contains`, plus 1 per 16 non-string operands of an `$in`/`$nin`,
/// plus 2 per user id of a `members` condition, plus 2 per sort key. Scanning text adds
/// to the work as it happens: 1 unit per byte an `$autocomplete` looks at, 1 per 64 bytes
/// a string `$contains` searches, 1 per array item a `$contains` compares; a query that
/// runs out of work this way stops with `LIMIT` at that point.
///
/// With the defaults the costliest query that passes takes a few milliseconds at most
/// (see the README's performance section); a full scan of more than 25,000 records is
/// refused, so large worlds query through the indexes or raise `max_work` knowing that
/// such a query blocks every other call for its duration.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueryBudget {
    /// Filter clauses: conditions and `$and`/`$or`/`$nor` nodes. Default 64.
    pub max_clauses: u32,
    /// Nesting of the filter (a single condition is 1). Default 8.
    pub max_depth: u32,
    /// `$autocomplete` and `$contains` conditions. Default 8.
    pub max_text_clauses: u32,
    /// Operands of one `$in`/`$nin` or user ids of one `members` condition. Default 1000.
    pub max_in_values: u32,
    /// Sort keys. Default 8.
    pub max_sort_keys: u32,
    /// Records examined × work units per record (see above). Default 100,000.
    pub max_work: u64,
}

impl Default for QueryBudget {
    fn default() -> Self {
        QueryBudget {
            max_clauses: 64,
            max_depth: 8,
            max_text_clauses: 8,
            max_in_values: 1000,
            max_sort_keys: 8,
            max_work: 100_000,
        }
    }
}

/// The moment `duration_ms` after `now`, or `None` when that lies beyond the largest
/// time `Millis` holds: the event it would schedule never comes (see [`Config`]). O(1).
pub(crate) fn deadline_after(now: Millis, duration_ms: u64) -> Option<Millis> {
    Millis::try_from(duration_ms).ok().and_then(|d| now.checked_add(d))
}

impl Default for Config {
    fn default() -> Self {
        Config {
            clock: Clock::System,
            start_time_ms: 0,
            dispatch: Dispatch::Immediate,
            last_active_refresh_ms: 900_000,
            connection_timeout_ms: 0,
            offline_grace_ms: 0,
            max_connections_per_user: 50,
            max_subscriptions_per_connection: 10_000,
            connection_queue_capacity: 1024,
            query_limit_max: 100,
            query_budget: QueryBudget::default(),
        }
    }
}

impl Config {
    /// Parses config JSON; absent keys keep their defaults. Cost: O(len).
    pub fn from_json(json: &str) -> Result<Config> {
        let value: serde_json::Value =
            serde_json::from_str(json).map_err(|e| Error::json(format!("config: {e}")))?;
        if !value.is_object() {
            return Err(Error::json("config: expected a JSON object"));
        }
        let config: Config =
            serde_json::from_value(value).map_err(|e| Error::json(format!("config: {e}")))?;
        config.validate()?;
        Ok(config)
    }

    /// Checks values serde cannot: positive limits, a refresh period that is not zero.
    pub fn validate(&self) -> Result<()> {
        if self.last_active_refresh_ms == 0 {
            return Err(Error::invalid("config: last_active_refresh_ms must be > 0"));
        }
        if self.max_connections_per_user == 0 {
            return Err(Error::invalid("config: max_connections_per_user must be > 0"));
        }
        if self.query_limit_max == 0 {
            return Err(Error::invalid("config: query_limit_max must be > 0"));
        }
        if self.start_time_ms < 0 {
            return Err(Error::invalid("config: start_time_ms must be >= 0"));
        }
        Ok(())
    }
}
