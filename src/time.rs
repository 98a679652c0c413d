//! Timestamps: milliseconds since the Unix epoch, rendered as RFC 3339 UTC with
//! millisecond precision and a `Z` suffix (`2019-01-07T13:17:42.375Z`).
use crate::error::{Error, Result};
use chrono::{DateTime, SecondsFormat, Utc};

/// Milliseconds since the Unix epoch.
pub type Millis = i64;

/// Renders `ms` as `2019-01-07T13:17:42.375Z`. Cost: O(1).
pub fn format_millis(ms: Millis) -> String {
    match DateTime::<Utc>::from_timestamp_millis(ms) {
        Some(t) => t.to_rfc3339_opts(SecondsFormat::Millis, true),
        None => String::from("1970-01-01T00:00:00.000Z"),
    }
}

/// Parses an RFC 3339 timestamp (any offset) into milliseconds. Cost: O(len).
pub fn parse_millis(s: &str) -> Result<Millis> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.timestamp_millis())
        .map_err(|e| Error::invalid(format!("'{s}' is not an RFC 3339 timestamp: {e}")))
}

/// The system clock in milliseconds.
pub fn system_now() -> Millis {
    Utc::now().timestamp_millis()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_like_stream() {
        assert_eq!(format_millis(1546867062375), "2019-01-07T13:17:42.375Z");
        assert_eq!(
            parse_millis("2019-01-07T13:17:42.375Z").unwrap(),
            1546867062375
        );
        assert!(parse_millis("yesterday").is_err());
    }
}
