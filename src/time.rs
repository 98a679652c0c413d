//! Timestamps: milliseconds since the Unix epoch, rendered as RFC 3339 UTC with
//! millisecond precision and a `Z` suffix (`2019-01-07T13:17:42.375Z`).
use crate::error::{Error, Result};
use chrono::{DateTime, SecondsFormat, Utc};

/// Milliseconds since the Unix epoch.
pub type Millis = i64;

/// Renders `ms` as `2019-01-07T13:17:42.375Z`. Cost: O(1).
pub fn format_millis(ms: Millis) -> String {
    match civil(ms) {
        Some(bytes) => String::from_utf8(bytes.to_vec()).expect("ASCII"),
        None => match DateTime::<Utc>::from_timestamp_millis(ms) {
            Some(t) => t.to_rfc3339_opts(SecondsFormat::Millis, true),
            None => String::from("1970-01-01T00:00:00.000Z"),
        },
    }
}

/// A timestamp that serializes as [`format_millis`] renders it, without allocating.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timestamp(pub Millis);

impl serde::Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        match civil(self.0) {
            Some(bytes) => s.serialize_str(std::str::from_utf8(&bytes).expect("ASCII")),
            None => s.serialize_str(&format_millis(self.0)),
        }
    }
}

/// `ms` as the 24 ASCII bytes of `YYYY-MM-DDTHH:MM:SS.mmmZ`, for years 1970..=9999 (the
/// rest goes through chrono). Hand-rolled (days-to-civil) because every rendered user
/// carries three timestamps.
fn civil(ms: Millis) -> Option<[u8; 24]> {
    const MAX: Millis = 253_402_300_799_999; // 9999-12-31T23:59:59.999Z
    if !(0..=MAX).contains(&ms) {
        return None;
    }
    let (days, ms_of_day) = (ms / 86_400_000, ms % 86_400_000);
    // Howard Hinnant's civil_from_days, for days since 1970-01-01 >= 0.
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let (h, m, s, milli) =
        (ms_of_day / 3_600_000, ms_of_day / 60_000 % 60, ms_of_day / 1000 % 60, ms_of_day % 1000);
    let mut out = [0u8; 24];
    let mut put = |at: usize, value: i64, width: usize| {
        let mut v = value;
        for i in (0..width).rev() {
            out[at + i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
    };
    put(0, year, 4);
    put(5, month, 2);
    put(8, day, 2);
    put(11, h, 2);
    put(14, m, 2);
    put(17, s, 2);
    put(20, milli, 3);
    for (i, c) in [(4, b'-'), (7, b'-'), (10, b'T'), (13, b':'), (16, b':'), (19, b'.'), (23, b'Z')] {
        out[i] = c;
    }
    Some(out)
}

/// Parses an RFC 3339 timestamp (any offset) into milliseconds. Cost: O(len).
pub fn parse_millis(s: &str) -> Result<Millis> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.timestamp_millis())
        .map_err(|e| Error::invalid(format!("'{s}' is not an RFC 3339 timestamp: {e}")))
}

/// The system clock in milliseconds. Reads `SystemTime` directly: chrono's `Utc::now` was
/// most of the cost of a heartbeat.
pub fn system_now() -> Millis {
    match std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        Ok(d) => d.as_millis() as Millis,
        Err(before_epoch) => -(before_epoch.duration().as_millis() as Millis),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_like_stream() {
        assert_eq!(format_millis(1546867062375), "2019-01-07T13:17:42.375Z");
        assert_eq!(parse_millis("2019-01-07T13:17:42.375Z").unwrap(), 1546867062375);
        assert!(parse_millis("yesterday").is_err());
    }

    #[test]
    fn fast_formatter_agrees_with_chrono() {
        let chrono_fmt = |ms: Millis| {
            DateTime::<Utc>::from_timestamp_millis(ms).unwrap().to_rfc3339_opts(SecondsFormat::Millis, true)
        };
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        let mut samples = vec![0, 1, 86_399_999, 86_400_000, 951_782_400_000, 253_402_300_799_999];
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            samples.push((x % 253_402_300_800_000) as Millis);
        }
        for ms in samples {
            assert_eq!(format_millis(ms), chrono_fmt(ms), "{ms}");
        }
        assert_eq!(format_millis(-1), "1969-12-31T23:59:59.999Z");
    }
}
