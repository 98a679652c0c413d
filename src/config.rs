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
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub clock: Clock,
    pub start_time_ms: Millis,
    pub dispatch: Dispatch,
    pub last_active_refresh_ms: u64,
    pub connection_timeout_ms: u64,
    pub offline_grace_ms: u64,
    pub max_connections_per_user: u32,
    pub max_subscriptions_per_connection: u32,
    pub connection_queue_capacity: u32,
    pub query_limit_max: u32,
    /// Host deliveries (host and delivery listener calls) that may wait for dispatch;
    /// past it the oldest are discarded and an `engine.overflow` event reports how many.
    pub pending_dispatch_capacity: u32,
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
            pending_dispatch_capacity: 65_536,
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
        if self.start_time_ms < 0 {
            return Err(Error::invalid("config: start_time_ms must be >= 0"));
        }
        Ok(())
    }
}
