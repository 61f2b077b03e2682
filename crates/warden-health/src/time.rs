//! RFC 3339 timestamps for events, formatted and parsed by `humantime`.
//!
//! Events are shown to people and parsed by tooling, so their `at` is UTC with exactly
//! millisecond precision (`2025-05-17T18:53:00.123Z`): one fixed width sorts as text.
//! humantime writes exactly that form and covers RFC 3339's whole four-digit-year range;
//! what it refuses (a clock before 1970 or after 9999) is clamped here first.

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

impl Rfc3339 {
    /// `2025-05-17T18:53:00.123Z`, or RFC 3339 UTC with any number of fractional digits
    /// (none included); `None` for anything else.
    pub fn parse(text: &str) -> Option<SystemTime> {
        humantime::parse_rfc3339(text).ok()
    }
}

impl fmt::Display for Rfc3339 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A clock before 1970 is a misconfigured host; the epoch is the honest floor.
        let since = self.0.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
        let clamped = if since.as_secs() > MAX_SECS {
            UNIX_EPOCH + Duration::from_secs(MAX_SECS) + Duration::from_millis(999)
        } else {
            UNIX_EPOCH + since
        };
        fmt::Display::fmt(&humantime::format_rfc3339_millis(clamped), f)
    }
}

impl serde::Serialize for Rfc3339 {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Rfc3339 {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Rfc3339::parse(&text).map(Rfc3339).ok_or_else(|| {
            serde::de::Error::invalid_value(
                serde::de::Unexpected::Str(&text),
                &"an RFC 3339 UTC timestamp",
            )
        })
    }
}

/// `#[serde(with = "rfc3339")]` for a `SystemTime` field.
pub(crate) mod rfc3339 {
    use std::time::SystemTime;

    use super::Rfc3339;

    pub(crate) fn serialize<S: serde::Serializer>(
        at: &SystemTime,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serde::Serialize::serialize(&Rfc3339(*at), serializer)
    }

    pub(crate) fn deserialize<'de, D: serde::Deserializer<'de>>(
        deserializer: D,
    ) -> Result<SystemTime, D::Error> {
        <Rfc3339 as serde::Deserialize>::deserialize(deserializer).map(|at| at.0)
    }

    /// The same for an `Option<SystemTime>`, `null` when `None`.
    pub(crate) mod option {
        use std::time::SystemTime;

        use super::Rfc3339;

        pub(crate) fn serialize<S: serde::Serializer>(
            at: &Option<SystemTime>,
            serializer: S,
        ) -> Result<S::Ok, S::Error> {
            serde::Serialize::serialize(&at.map(Rfc3339), serializer)
        }

        pub(crate) fn deserialize<'de, D: serde::Deserializer<'de>>(
            deserializer: D,
        ) -> Result<Option<SystemTime>, D::Error> {
            <Option<Rfc3339> as serde::Deserialize>::deserialize(deserializer)
                .map(|at| at.map(|at| at.0))
        }
    }
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
            let parsed = Rfc3339::parse(want).expect("parses");
            assert_eq!(
                parsed,
                UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_millis(millis),
                "{want}"
            );
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
    fn parses_what_the_api_and_people_write() {
        assert_eq!(Rfc3339::parse("1970-01-01T00:00:00Z"), Some(UNIX_EPOCH));
        assert_eq!(
            Rfc3339::parse("2024-02-29T00:00:00.5Z"),
            Some(UNIX_EPOCH + Duration::from_millis(1_709_164_800_500))
        );
        for bad in [
            "",
            "2025-05-17",
            "2025-13-01T00:00:00Z",
            "x-05-17T18:53:00Z",
            "2025-05-17T18:53:00+02:00",
        ] {
            assert_eq!(Rfc3339::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn serializes_as_a_string_and_back() {
        let t = Rfc3339(UNIX_EPOCH + Duration::from_millis(1_500));
        let json = serde_json::to_string(&t).unwrap();
        assert_eq!(json, "\"1970-01-01T00:00:01.500Z\"");
        assert_eq!(serde_json::from_str::<Rfc3339>(&json).unwrap(), t);
        assert!(serde_json::from_str::<Rfc3339>("\"yesterday\"").is_err());
    }
}
