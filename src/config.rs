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
    /// current one, in order). `"manual"`: only inside `pump`, on the thread that calls it, the
    /// game-loop model (call `pump` once per frame). Callbacks never run concurrently and never
    /// while the engine holds its lock. Per-connection queues fill in both modes.
    pub dispatch: Dispatch,
    /// Integer, milliseconds; default `900000` (15 minutes); must be greater than 0.
    ///
    /// How often `tick` refreshes `last_active` of users who stay connected and visible, so that
    /// a long session does not look stale. A refresh emits no event. `last_active` is also set
    /// when a connection opens and when the last one closes.
    pub last_active_refresh_ms: u64,
    /// Integer, milliseconds; default `0` (off).
    ///
    /// Heartbeats. When greater than 0, a connection that has neither been opened nor called
    /// `heartbeat` within this time is closed by the next `tick`, exactly as if disconnected,
    /// with close reason `timeout`. With 0, connections live until `disconnect`.
    pub connection_timeout_ms: u64,
    /// Integer, milliseconds; default `0` (off).
    ///
    /// Anti-flap. When greater than 0, a user whose last connection closes stays online for this
    /// long (`tick` applies the expiry, with its `user.presence.changed`); a reconnect within the
    /// grace emits nothing at all. With 0, the last close takes the user offline at once.
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
    /// nothing.
    pub connection_queue_capacity: u32,
    /// Integer; default `100`; range 1 to 4294967295.
    ///
    /// The largest `limit` a query may ask for; a larger one answers `LIMIT`. A query without
    /// `limit` gets `min(30, query_limit_max)` results at most.
    pub query_limit_max: u32,
    /// Integer, bytes; default `1073741824` (1 GiB); range 1 to 18446744073709551615.
    ///
    /// The largest snapshot file `load` reads. A larger file answers `LIMIT` before anything
    /// is read, and a file that grows while it is read stops being read at this size. The
    /// file is parsed as it is read, so `load` needs memory in proportion to the file, not
    /// to this limit.
    pub max_snapshot_bytes: u64,
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
            max_snapshot_bytes: 1 << 30,
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
        check_millis("config: start_time_ms", self.start_time_ms)?;
        if self.max_snapshot_bytes == 0 {
            return Err(Error::invalid("config: max_snapshot_bytes must be > 0"));
        }
        Ok(())
    }
}
