//! `100ms`, `2s`, `5m`, `1h`: the only duration spelling proxy.yaml accepts.
//!
//! One integer and one unit, nothing else: `1.5s`, `2 s` or `1m30s` are rejected rather than
//! guessed at, so a value always means exactly what it says.

use std::time::Duration;

/// Parses a duration, or says in one line what is wrong with it.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let digits_end = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(digits_end);
    let hint = "write a whole number followed by ms, s, m or h, e.g. 100ms, 2s, 5m";
    if number.is_empty() {
        return Err(format!("`{text}` is not a duration: {hint}"));
    }
    let seconds_per_unit: u64 = match unit {
        "ms" => 0,
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "" => {
            return Err(format!(
                "`{text}` has no unit: write e.g. {number}s or {number}ms (units: ms, s, m, h)"
            ));
        }
        _ => return Err(format!("`{text}` is not a duration: {hint}")),
    };
    let too_large = || format!("`{text}` is too large");
    let n: u64 = number.parse().map_err(|_| too_large())?;
    if seconds_per_unit == 0 {
        Ok(Duration::from_millis(n))
    } else {
        n.checked_mul(seconds_per_unit)
            .map(Duration::from_secs)
            .ok_or_else(too_large)
    }
}

/// Renders a duration the way proxy.yaml spells it, for messages.
pub(crate) fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if !ms.is_multiple_of(1000) || ms == 0 {
        format!("{ms}ms")
    } else if ms.is_multiple_of(3_600_000) {
        format!("{}h", ms / 3_600_000)
    } else if ms.is_multiple_of(60_000) {
        format!("{}m", ms / 60_000)
    } else {
        format!("{}s", ms / 1000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_each_unit() {
        assert_eq!(parse_duration("100ms"), Ok(Duration::from_millis(100)));
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("007s"), Ok(Duration::from_secs(7)));
    }

    #[test]
    fn rejects_everything_else() {
        for bad in [
            "", "s", "2", "2 s", " 2s", "2s ", "1.5s", "-1s", "+1s", "2S", "2sec", "1m30s", "2d",
            "2us", "ms",
        ] {
            let err = parse_duration(bad).expect_err(bad);
            assert!(err.contains(&format!("`{bad}`")), "{bad}: {err}");
        }
        assert!(parse_duration("2").unwrap_err().contains("has no unit"));
    }

    #[test]
    fn rejects_overflow_without_panicking() {
        assert!(parse_duration("99999999999999999999s").is_err());
        assert!(parse_duration("18446744073709551615h").is_err());
        assert!(parse_duration("18446744073709551615ms").is_ok());
    }

    #[test]
    fn formats_back() {
        assert_eq!(format_duration(Duration::from_millis(100)), "100ms");
        assert_eq!(format_duration(Duration::from_secs(2)), "2s");
        assert_eq!(format_duration(Duration::from_secs(300)), "5m");
        assert_eq!(format_duration(Duration::from_secs(7200)), "2h");
        assert_eq!(format_duration(Duration::ZERO), "0ms");
    }
}
