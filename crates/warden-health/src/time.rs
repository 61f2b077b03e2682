//! RFC 3339 timestamps for events, without a date-time dependency.
//!
//! Events are shown to people and parsed by tooling, so their `at` is UTC with exactly
//! millisecond precision (`2025-05-17T18:53:00.123Z`): one fixed width sorts as text. The
//! only calendar work needed is days → civil date, a few lines of integer arithmetic.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Seconds from the epoch to `9999-12-31T23:59:59Z`, the last instant RFC 3339's four-digit
/// year can name. Later clocks are clamped there rather than printed as a malformed year.
const MAX_SECS: u64 = 253_402_300_799;

/// A [`SystemTime`] that displays (and serializes) as RFC 3339 UTC with milliseconds.
///
/// A wrapper rather than a `String` so that serializing an event writes straight into the
/// output: no allocation per timestamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rfc3339(pub SystemTime);

impl fmt::Display for Rfc3339 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A clock before 1970 is a misconfigured host; the epoch is the honest floor.
        let since = self.0.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
        let (secs, millis) = if since.as_secs() > MAX_SECS {
            (MAX_SECS, 999)
        } else {
            (since.as_secs(), since.subsec_millis())
        };
        let (year, month, day) = civil_from_days(secs / 86_400);
        let in_day = secs % 86_400;
        write!(
            f,
            "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{millis:03}Z",
            in_day / 3_600,
            in_day % 3_600 / 60,
            in_day % 60,
        )
    }
}

impl serde::Serialize for Rfc3339 {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// Days since 1970-01-01 → (year, month, day) in the proleptic Gregorian calendar
/// (Howard Hinnant's `civil_from_days`, restricted to non-negative days).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097; // [0, 146096]
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11], March-based
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64, millis: u64) -> String {
        Rfc3339(UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_millis(millis)).to_string()
    }

    #[test]
    fn known_instants() {
        // Expected values cross-checked with `date -u -d @SECS`.
        let table = [
            (0, 0, "1970-01-01T00:00:00.000Z"),
            (951_782_400, 0, "2000-02-29T00:00:00.000Z"),
            (951_868_799, 999, "2000-02-29T23:59:59.999Z"),
            (1_700_000_000, 7, "2023-11-14T22:13:20.007Z"),
            (1_735_689_599, 999, "2024-12-31T23:59:59.999Z"),
            (1_747_507_980, 123, "2025-05-17T18:53:00.123Z"),
            (4_107_542_400, 0, "2100-03-01T00:00:00.000Z"),
            (4_107_542_399, 0, "2100-02-28T23:59:59.000Z"),
            (MAX_SECS, 999, "9999-12-31T23:59:59.999Z"),
        ];
        for (secs, millis, want) in table {
            assert_eq!(at(secs, millis), want, "{secs}");
        }
    }

    #[test]
    fn sub_millisecond_is_truncated_not_rounded() {
        let t = UNIX_EPOCH + Duration::from_nanos(1_999_999);
        assert_eq!(Rfc3339(t).to_string(), "1970-01-01T00:00:00.001Z");
    }

    #[test]
    fn out_of_range_clocks_are_clamped() {
        let before = UNIX_EPOCH - Duration::from_secs(10);
        assert_eq!(Rfc3339(before).to_string(), "1970-01-01T00:00:00.000Z");
        let after = UNIX_EPOCH + Duration::from_secs(MAX_SECS + 86_400);
        assert_eq!(Rfc3339(after).to_string(), "9999-12-31T23:59:59.999Z");
    }

    #[test]
    fn every_day_round_trips_through_the_calendar() {
        // Walk 1970..2401 day by day: dates must advance by exactly one day each step.
        let (mut y, mut m, mut d) = civil_from_days(0);
        for days in 1..(431 * 366) {
            let next = civil_from_days(days);
            let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
            let len = match m {
                2 if leap => 29,
                2 => 28,
                4 | 6 | 9 | 11 => 30,
                _ => 31,
            };
            let want = if d < len {
                (y, m, d + 1)
            } else if m < 12 {
                (y, m + 1, 1)
            } else {
                (y + 1, 1, 1)
            };
            assert_eq!(next, want, "day {days}");
            (y, m, d) = next;
        }
    }

    #[test]
    fn serializes_as_a_string() {
        let t = Rfc3339(UNIX_EPOCH + Duration::from_millis(1_500));
        assert_eq!(
            serde_json::to_string(&t).unwrap(),
            "\"1970-01-01T00:00:01.500Z\""
        );
    }
}
