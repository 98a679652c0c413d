//! Timestamps: milliseconds since the Unix epoch, rendered as RFC 3339 UTC with
//! millisecond precision and a `Z` suffix (`2019-01-07T13:17:42.375Z`).
//!
//! The engine holds only times from [`MIN_MILLIS`] (1970-01-01T00:00:00.000Z) to
//! [`MAX_MILLIS`] (9999-12-31T23:59:59.999Z): every time that comes in (`set_time`,
//! `start_time_ms`, timestamp fields in any offset, snapshot files) is checked against
//! that range at the door and answers `INVALID` outside it, so everything the engine
//! holds renders as exactly the instant it is and survives `save` then `load`.
use crate::error::{Error, Result};
use chrono::DateTime;

/// Milliseconds since the Unix epoch.
pub type Millis = i64;

/// The earliest time the engine holds: 1970-01-01T00:00:00.000Z.
pub const MIN_MILLIS: Millis = 0;
/// The latest time the engine holds: 9999-12-31T23:59:59.999Z, the last instant with a
/// four-digit year in UTC.
pub const MAX_MILLIS: Millis = 253_402_300_799_999;

/// Answers `ms` when it lies in the supported range, `INVALID` naming `what` otherwise.
/// Cost: O(1).
pub fn check_millis(what: &str, ms: Millis) -> Result<Millis> {
    if (MIN_MILLIS..=MAX_MILLIS).contains(&ms) {
        Ok(ms)
    } else {
        Err(Error::invalid(format!(
            "{what} {ms} is outside the supported time range {MIN_MILLIS}..={MAX_MILLIS} \
             (1970-01-01T00:00:00.000Z to 9999-12-31T23:59:59.999Z)"
        )))
    }
}

/// Renders `ms` as `2019-01-07T13:17:42.375Z`. Cost: O(1).
///
/// # Panics
/// When `ms` is outside [`MIN_MILLIS`]..=[`MAX_MILLIS`]: such a time has no four-digit
/// rendering, and the engine never holds one.
pub fn format_millis(ms: Millis) -> String {
    match civil(ms) {
        Some(bytes) => String::from_utf8(bytes.to_vec()).expect("ASCII"),
        None => panic!("{ms} ms is outside the supported time range"),
    }
}

/// A timestamp that serializes as [`format_millis`] renders it, without allocating. A
/// time outside the supported range is a serialization error, never another instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timestamp(pub Millis);

impl serde::Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        match civil(self.0) {
            Some(bytes) => s.serialize_str(std::str::from_utf8(&bytes).expect("ASCII")),
            None => {
                Err(serde::ser::Error::custom(format!("{} ms is outside the supported time range", self.0)))
            }
        }
    }
}

/// `ms` as the 24 ASCII bytes of `YYYY-MM-DDTHH:MM:SS.mmmZ`, for the supported range
/// only. Hand-rolled (days-to-civil) because every rendered user carries three timestamps.
fn civil(ms: Millis) -> Option<[u8; 24]> {
    if !(MIN_MILLIS..=MAX_MILLIS).contains(&ms) {
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

/// Parses an RFC 3339 timestamp (any offset) into milliseconds; `INVALID` when it does not
/// parse or names an instant outside the supported range in UTC (for instance
/// `9999-12-31T23:59:59.999-01:00`). Cost: O(len).
pub fn parse_millis(s: &str) -> Result<Millis> {
    let ms = DateTime::parse_from_rfc3339(s)
        .map(|t| t.timestamp_millis())
        .map_err(|e| Error::invalid(format!("'{s}' is not an RFC 3339 timestamp: {e}")))?;
    check_millis(&format!("timestamp '{s}' ="), ms)
}

/// The system clock in milliseconds, held to the supported range (a clock set before 1970
/// reads as 1970). Reads `SystemTime` directly: chrono's `Utc::now` was most of the cost
/// of a heartbeat.
pub fn system_now() -> Millis {
    match std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        Ok(d) => (d.as_millis().min(MAX_MILLIS as u128)) as Millis,
        Err(_) => MIN_MILLIS,
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
    fn only_the_supported_range_comes_in() {
        use crate::error::ErrorKind::Invalid;
        assert_eq!(parse_millis("1970-01-01T00:00:00Z").unwrap(), MIN_MILLIS);
        assert_eq!(parse_millis("9999-12-31T23:59:59.999Z").unwrap(), MAX_MILLIS);
        assert_eq!(parse_millis("1970-01-01T01:00:00+01:00").unwrap(), MIN_MILLIS);
        assert_eq!(parse_millis("9999-12-31T22:59:59.999-01:00").unwrap(), MAX_MILLIS);
        for outside in [
            "9999-12-31T23:59:59.999-01:00",
            "0000-01-01T00:00:00+01:00",
            "1969-12-31T23:59:59.999Z",
            "1970-01-01T00:59:59.999+01:00",
        ] {
            let e = parse_millis(outside).unwrap_err();
            assert_eq!(e.kind(), Invalid, "{outside}");
            assert!(e.message().contains("outside the supported time range"), "{}", e.message());
        }
        assert_eq!(check_millis("t", MAX_MILLIS + 1).unwrap_err().kind(), Invalid);
        assert_eq!(check_millis("t", -1).unwrap_err().kind(), Invalid);
        assert_eq!(check_millis("t", i64::MAX).unwrap_err().kind(), Invalid);
    }

    #[test]
    fn rendering_has_no_fallback() {
        assert_eq!(format_millis(MAX_MILLIS), "9999-12-31T23:59:59.999Z");
        assert_eq!(format_millis(MIN_MILLIS), "1970-01-01T00:00:00.000Z");
        for outside in [i64::MAX, MAX_MILLIS + 1, -1, i64::MIN] {
            assert!(serde_json::to_string(&Timestamp(outside)).is_err(), "{outside}");
            assert!(std::panic::catch_unwind(|| format_millis(outside)).is_err(), "{outside}");
        }
    }

    #[test]
    fn fast_formatter_agrees_with_chrono() {
        use chrono::{SecondsFormat, Utc};
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
    }
}
