//! Engine configuration, parsed from JSON with unknown keys rejected so typos fail loudly.
use crate::error::{Error, Result};
use crate::time::{check_millis, Millis};
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

/// Engine settings, parsed from a JSON object by [`Config::from_json`]: absent keys keep
/// their defaults ([`Config::default`]), unknown keys answer `JSON`, values out of range
/// `INVALID`. Each field's text is also its section in `docs/config.md`.
///
/// Durations never wrap: one whose end lies beyond the largest time a signed 64-bit
/// millisecond count holds (any value above `i64::MAX`, such as `u64::MAX` for "never", or
/// a smaller one that overflows when added to the current time) means never.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// String: `"system"` (default) or `"manual"`.
    ///
    /// Where the engine's time comes from. `"system"` reads the wall clock at every call and
    /// refuses `set_time` (`STATE`). `"manual"` starts at `start_time_ms` and moves only when the
    /// host calls `set_time`, never backwards (`STATE`); use it for games with their own clock,
    /// simulations and tests. Timers (timeouts, offline grace, `last_active` refresh) run only
    /// inside `tick` either way.
    pub clock: Clock,
    /// Integer, Unix time in milliseconds; default `0` (1970-01-01T00:00:00.000Z); range 0
    /// to 253402300799999 (9999-12-31T23:59:59.999Z), the range of every time the engine
    /// holds.
    ///
    /// The time a `"manual"` clock starts at. Ignored with the system clock.
    pub start_time_ms: Millis,
    /// String: `"immediate"` (default) or `"manual"`.
    ///
    /// When listener callbacks run. `"immediate"`: on the thread whose call caused the events,
    /// before that call returns (events caused by a callback's own calls are delivered after the
    /// current one, in order; in cluster mode, other nodes' changes on the cluster link thread).
    /// `"manual"`: only inside `pump`, on the thread that calls it, the game-loop model (call
    /// `pump` once per frame). Callbacks never run concurrently and never
    /// while the engine holds its lock. Per-connection queues fill in both modes.
    pub dispatch: Dispatch,
    /// Integer, milliseconds; default `900000` (15 minutes); must be greater than 0.
    ///
    /// How often `tick` refreshes `last_active` of users who stay connected and visible, so that
    /// a long session does not look stale. A refresh emits no event. `last_active` is also set
    /// when a connection opens and when the last one closes. A period beyond the largest time
    /// (above `i64::MAX`) means never.
    pub last_active_refresh_ms: u64,
    /// Integer, milliseconds; default `0` (off).
    ///
    /// Heartbeats. When greater than 0, a connection that has neither been opened nor called
    /// `heartbeat` within this time is closed by the next `tick`, exactly as if disconnected,
    /// with close reason `timeout`. With 0, connections live until `disconnect`; so they do
    /// with a timeout beyond the largest time (above `i64::MAX`, such as `u64::MAX`).
    pub connection_timeout_ms: u64,
    /// Integer, milliseconds; default `0` (off).
    ///
    /// Anti-flap. When greater than 0, a user whose last connection closes stays online for this
    /// long (`tick` applies the expiry, with its `user.presence.changed`); a reconnect within the
    /// grace emits nothing at all. With 0, the last close takes the user offline at once. A
    /// grace beyond the largest time (above `i64::MAX`) never ends: the user stays online
    /// until they reconnect and leave again. Only a user others saw online gets a grace: a
    /// last connection closing while invisible starts none, and going invisible ends one.
    pub offline_grace_ms: u64,
    /// Integer; default `50`; range 1 to 4294967295.
    ///
    /// The most live connections one user may hold (devices, tabs, game clients). A `connect`
    /// beyond it answers `LIMIT` and changes nothing.
    pub max_connections_per_user: u32,
    /// Integer; default `10000`; range 0 to 4294967295.
    ///
    /// The most distinct users one connection may be subscribed to for presence, through every
    /// route together (`watch_channel` with presence, queries with `"presence": true`). An
    /// operation that would take a connection past it answers `LIMIT` and changes nothing; this
    /// includes `add_members` on a channel that a connection watches with presence.
    pub max_subscriptions_per_connection: u32,
    /// Integer, events; default `1024`; range 0 to 4294967295.
    ///
    /// The size of each connection's event queue (drained with `poll_events`). An event that
    /// does not fit is not queued: the connection is closed with reason `slow_consumer` when the
    /// call that overflowed it finishes, so nothing is dropped silently. 0 disables queues:
    /// events reach connections only through delivery listeners, and `poll_events` answers
    /// nothing. `subscribe` allocates a channel of this size, so it answers `LIMIT` above
    /// 1048576.
    pub connection_queue_capacity: u32,
    /// Integer; default `100`; range 1 to 4294967295.
    ///
    /// The largest `limit` a query may ask for; a larger one answers `LIMIT`. A query without
    /// `limit` gets `min(30, query_limit_max)` results at most.
    pub query_limit_max: u32,
    /// Object of integers; absent keys keep their defaults.
    ///
    /// Bounds on one query (`query_users`, `query_channels`), since the engine is locked
    /// while a query runs (parsing and rendering happen outside the lock). A query over a
    /// bound answers `LIMIT` naming the key, before any record is examined, with nothing
    /// subscribed or watched. Each key is an integer, 0 to 4294967295 (`max_work`: 0 to
    /// 18446744073709551615); 0 refuses every query that has any of what the key counts, and
    /// every query has at least one clause, a nesting of 1 and one sort key:
    /// - `max_clauses` (default 64): filter clauses, conditions and `$and`/`$or`/`$nor` nodes;
    /// - `max_depth` (default 8): nesting of the filter, a single condition being 1;
    /// - `max_text_clauses` (default 8): `$autocomplete` and `$contains` conditions;
    /// - `max_in_values` (default 1000): operands of one `$in`/`$nin`, user ids of one
    ///   `members` condition;
    /// - `max_sort_keys` (default 8): sort keys, the default order counting as one;
    /// - `max_work` (default 100000): records examined times work units per record.
    ///
    /// Records examined are those the filter names through an index (`id`/`cid` `$eq`/`$in`,
    /// channel `members` `$in`), otherwise all users or channels. Units per record: 1, plus 1
    /// per clause, 3 more per `$autocomplete`/`$contains`, 1 per 16 non-string `$in`/`$nin`
    /// operands, 2 per `members` user id and 2 per sort key. Scanning text adds as it goes:
    /// 1 unit per byte an `$autocomplete` looks at, 1 per 64 bytes a string `$contains`
    /// searches, 1 per array item a `$contains` compares; a query that runs out this way
    /// stops with `LIMIT` there. The defaults keep the costliest query that passes to a few
    /// milliseconds and refuse full scans of more than 25,000 users or channels: name
    /// records through the indexes, or raise `max_work` knowing that such a query blocks
    /// every other call while it runs.
    pub query_budget: QueryBudget,
    /// Integer, bytes; default `1073741824` (1 GiB); range 1 to 18446744073709551615.
    ///
    /// The largest snapshot file `load` reads. A larger file answers `LIMIT` before anything
    /// is read, and a file that grows while it is read stops being read at this size. The
    /// file is parsed as it is read, so `load` needs memory in proportion to the file, not
    /// to this limit.
    pub max_snapshot_bytes: u64,
    /// Integer, items; default `65536`; range 1 to 4294967295.
    ///
    /// How many host deliveries (calls of host and delivery listeners) may wait for dispatch:
    /// in manual dispatch until the next `pump`, in immediate dispatch past a call's delivery
    /// budget. When more are waiting, the oldest are discarded, and the next dispatch first
    /// delivers one `engine.overflow` event (host listeners only) with `dropped`, the number
    /// discarded, so nothing is dropped silently. It also bounds an `events` receiver: a
    /// consumer that falls this far behind is cut off. Per-connection queues are not affected.
    /// An `events` receiver (and a C host queue) allocates a channel of this size, so it answers
    /// `LIMIT` above 1048576.
    pub pending_dispatch_capacity: u32,
    /// Object or absent (default: absent, a single engine).
    ///
    /// Cluster mode: several engines share one presence through Redis or Valkey (how, and
    /// what is guaranteed: docs/cluster.md). Keys:
    /// - `redis_url` (string, required): the shared store, `redis://host:port/db`.
    /// - `node_id` (string, required): this node's name, unique among live nodes; 1 to 64
    ///   bytes of `[A-Za-z0-9_.-]`.
    /// - `namespace` (string, default `"presence"`, the characters of `node_id`): the prefix
    ///   of every key in the store, so several deployments can share one Redis.
    /// - `heartbeat_ms` (integer, ms, default `1000`, at least 1): how often the node renews
    ///   its lease and looks for dead nodes.
    /// - `lease_ms` (integer, ms, default `10000`, more than `heartbeat_ms`): a node that has
    ///   not renewed its lease for this long is dead; its connections close with reason
    ///   `node_lost` on every node within `lease_ms + heartbeat_ms`.
    /// - `stream_retention` (integer, default `10000`, at least 1): log entries kept per
    ///   shard; a node that falls further behind rebuilds its copy from a snapshot.
    /// - `max_pending_writes` (integer, default `10000`, 1 to 4294967295): changes kept while
    ///   the store is unreachable; past it, sticky writes answer `STATE`.
    /// - `poll_ms` (integer, ms, default `1`, at least 1): how long an idle link waits before
    ///   reading the store's logs again (local changes wake it at once).
    ///
    /// Unknown keys answer `JSON`; a bad name or timing `INVALID`; a library built without the
    /// cargo feature `cluster` answers `INVALID` naming it.
    pub cluster: Option<ClusterConfig>,
}

/// The `cluster` config object (see docs/cluster.md).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// The shared store, `redis://host:port/db`.
    pub redis_url: String,
    /// Unique per live node; `[A-Za-z0-9_.-]`, 1..=64 bytes.
    pub node_id: String,
    /// Prefix of every key, so several deployments can share one Redis (default `presence`).
    #[serde(default = "ClusterConfig::default_namespace")]
    pub namespace: String,
    /// How often the node renews its lease and looks for dead nodes (default 1000).
    #[serde(default = "ClusterConfig::default_heartbeat_ms")]
    pub heartbeat_ms: u64,
    /// A node that has not renewed its lease for this long is dead (default 10000).
    #[serde(default = "ClusterConfig::default_lease_ms")]
    pub lease_ms: u64,
    /// Log entries kept per shard.
    #[serde(default = "ClusterConfig::default_stream_retention")]
    pub stream_retention: u64,
    /// Changes kept while the store is unreachable.
    #[serde(default = "ClusterConfig::default_max_pending_writes")]
    pub max_pending_writes: u32,
    /// Longest wait of one read of the store's logs.
    #[serde(default = "ClusterConfig::default_poll_ms")]
    pub poll_ms: u64,
}

impl ClusterConfig {
    /// A cluster config with every optional key at its default.
    pub fn new(redis_url: impl Into<String>, node_id: impl Into<String>) -> Self {
        ClusterConfig {
            redis_url: redis_url.into(),
            node_id: node_id.into(),
            namespace: Self::default_namespace(),
            heartbeat_ms: Self::default_heartbeat_ms(),
            lease_ms: Self::default_lease_ms(),
            stream_retention: Self::default_stream_retention(),
            max_pending_writes: Self::default_max_pending_writes(),
            poll_ms: Self::default_poll_ms(),
        }
    }
    fn default_namespace() -> String {
        "presence".into()
    }
    fn default_heartbeat_ms() -> u64 {
        1000
    }
    fn default_lease_ms() -> u64 {
        10_000
    }
    fn default_stream_retention() -> u64 {
        10_000
    }
    fn default_max_pending_writes() -> u32 {
        10_000
    }
    fn default_poll_ms() -> u64 {
        1
    }

    /// Checks names (they become parts of store keys) and timings.
    pub fn validate(&self) -> Result<()> {
        let name_ok = |s: &str| {
            (1..=64).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
        };
        if !name_ok(&self.node_id) {
            return Err(Error::invalid(format!(
                "config: cluster.node_id {:?} must be 1..=64 bytes of [A-Za-z0-9_.-]",
                self.node_id
            )));
        }
        if !name_ok(&self.namespace) {
            return Err(Error::invalid(format!(
                "config: cluster.namespace {:?} must be 1..=64 bytes of [A-Za-z0-9_.-]",
                self.namespace
            )));
        }
        if self.heartbeat_ms == 0 || self.lease_ms <= self.heartbeat_ms {
            return Err(Error::invalid("config: cluster needs heartbeat_ms > 0 and lease_ms > heartbeat_ms"));
        }
        if self.stream_retention == 0 || self.max_pending_writes == 0 || self.poll_ms == 0 {
            return Err(Error::invalid(
                "config: cluster.stream_retention, max_pending_writes and poll_ms must be > 0",
            ));
        }
        Ok(())
    }
}

/// Bounds on the size and work of one query: the `query_budget` key, whose documentation
/// on [`Config::query_budget`] says how each bound counts.
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
            max_snapshot_bytes: 1 << 30,
            pending_dispatch_capacity: 65_536,
            cluster: None,
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
        if self.pending_dispatch_capacity == 0 {
            return Err(Error::invalid("config: pending_dispatch_capacity must be > 0"));
        }
        check_millis("config: start_time_ms", self.start_time_ms)?;
        if self.max_snapshot_bytes == 0 {
            return Err(Error::invalid("config: max_snapshot_bytes must be > 0"));
        }
        if let Some(cluster) = &self.cluster {
            if !cfg!(feature = "cluster") {
                return Err(Error::invalid(
                    "config: cluster mode needs the library built with the cargo feature \"cluster\"",
                ));
            }
            cluster.validate()?;
        }
        Ok(())
    }
}

#[cfg(all(test, not(feature = "cluster")))]
mod tests {
    use super::Config;
    use crate::ErrorKind;

    #[test]
    fn a_cluster_config_names_the_missing_feature() {
        let err = Config::from_json(r#"{"cluster":{"redis_url":"redis://127.0.0.1/0","node_id":"a"}}"#)
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Invalid);
        assert!(err.message().contains("feature \"cluster\""), "{}", err.message());
    }
}
