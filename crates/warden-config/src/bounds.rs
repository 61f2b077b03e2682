//! Every bound on a proxy.yaml value, written once.
//!
//! The schema reads these (`raw` applies them with `#[schemars(transform = ...)]`) and so
//! do the checks in `validate` and `settings`: an editor's squiggle and `warden check` can
//! only disagree if someone stops using them.

use std::fmt;

use schemars::Schema;

/// The only `version` this warden reads.
pub(crate) const VERSION: u64 = 1;

/// `events_per_connection`: every connection keeps that many events, so the ring's memory
/// is the bound times the number of connections.
pub(crate) const EVENTS_PER_CONNECTION: Bound = Bound::between(1, 10_000);

/// `retry.max_attempts`: every attempt may wait a backoff, so more than 10 only stretches
/// a failure out.
pub(crate) const MAX_ATTEMPTS: Bound = Bound::between(1, 10);
/// `retry.budget.ratio`, a fraction of requests.
pub(crate) const BUDGET_RATIO: Bound = Bound::between(0, 1);
/// `circuit.consecutive_failures`: 0 would open the circuit before any failure.
pub(crate) const CONSECUTIVE_FAILURES: Bound = Bound::at_least(1);

/// Any whole number the model's type holds (`retry.max_body_bytes: 0` buffers nothing,
/// `budget.min_per_second: 0` allows no retries beyond the ratio).
pub(crate) const UNBOUNDED: Bound = Bound::at_least(0);

/// `limits.max_concurrent_retries`: 0 would turn retries off; `max_attempts: 1` says that.
pub(crate) const MAX_CONCURRENT_RETRIES: Bound = Bound::at_least(1);
/// `limits.max_concurrent_probes`: 0 would leave every open circuit open for good.
pub(crate) const MAX_CONCURRENT_PROBES: Bound = Bound::at_least(1);
/// `limits.max_request_body_bytes`: 0 would refuse every body.
pub(crate) const MAX_REQUEST_BODY_BYTES: Bound = Bound::at_least(1);
/// `limits.max_header_bytes`: below 1 KiB ordinary requests would get 431.
pub(crate) const MAX_HEADER_BYTES: Bound = Bound::at_least(1024);
/// `limits.max_connections`: 0 would accept nothing.
pub(crate) const MAX_CONNECTIONS: Bound = Bound::at_least(1);
/// `limits.max_upstream_per_route`: 0 would send nothing.
pub(crate) const MAX_UPSTREAM_PER_ROUTE: Bound = Bound::at_least(1);

/// A connection name's longest length: the name becomes a metrics label and a path segment
/// of the admin API, so it stays short.
pub(crate) const CONNECTION_NAME_MAX_LEN: usize = 63;

/// The schema's pattern for a connection name; [`is_connection_name`] is the same rule.
pub(crate) fn connection_name_pattern() -> String {
    format!("^[a-z0-9-]{{1,{CONNECTION_NAME_MAX_LEN}}}$")
}

/// Whether `name` matches [`connection_name_pattern`].
pub(crate) fn is_connection_name(name: &str) -> bool {
    (1..=CONNECTION_NAME_MAX_LEN).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// An inclusive range of whole numbers; without `max`, only the model's type limits it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Bound {
    pub(crate) min: u64,
    pub(crate) max: Option<u64>,
}

impl Bound {
    const fn between(min: u64, max: u64) -> Bound {
        Bound {
            min,
            max: Some(max),
        }
    }

    const fn at_least(min: u64) -> Bound {
        Bound { min, max: None }
    }

    /// The schema's `minimum` and `maximum`, as a schemars field transform.
    pub(crate) fn schema(self) -> impl FnMut(&mut Schema) {
        move |schema: &mut Schema| {
            schema.insert("minimum".into(), self.min.into());
            if let Some(max) = self.max {
                schema.insert("maximum".into(), max.into());
            }
        }
    }

    /// `value` converted to the model's type, or the message that says why it is out of
    /// range. Past the bound the message states the bound; past only the type's limit
    /// (which the schema does not show) it states that limit.
    pub(crate) fn check<T: Whole>(self, value: u64) -> Result<T, String> {
        let out_of_range = |must: String| format!("{value} is out of range: must be {must}");
        if value < self.min || self.max.is_some_and(|max| value > max) {
            return Err(out_of_range(self.to_string()));
        }
        T::try_from(value).map_err(|_| out_of_range(format!("at most {}", T::MAX)))
    }

    /// Whether a fraction lies in the bound.
    pub(crate) fn contains_fraction(self, value: f64) -> bool {
        // Bounds are small whole numbers, exact as f64.
        value >= self.min as f64 && self.max.is_none_or(|max| value <= max as f64)
    }
}

/// How messages state the bound: `between 1 and 10`, `at least 1024`.
impl fmt::Display for Bound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.max {
            Some(max) => write!(f, "between {} and {max}", self.min),
            None => write!(f, "at least {}", self.min),
        }
    }
}

/// The model's whole-number types, with the largest value each holds.
pub(crate) trait Whole: TryFrom<u64> {
    /// The largest value, as the message for a number past it states it.
    const MAX: u64;
}

impl Whole for u32 {
    const MAX: u64 = u32::MAX as u64;
}

impl Whole for u64 {
    const MAX: u64 = u64::MAX;
}

impl Whole for usize {
    // usize is at most 64 bits on every target Rust supports today; saturate otherwise.
    const MAX: u64 = if usize::BITS <= u64::BITS {
        usize::MAX as u64
    } else {
        u64::MAX
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_states_the_bound_or_the_type_limit() {
        assert_eq!(MAX_ATTEMPTS.check::<u32>(3), Ok(3));
        assert_eq!(
            MAX_ATTEMPTS.check::<u32>(11),
            Err("11 is out of range: must be between 1 and 10".to_owned())
        );
        assert_eq!(
            MAX_HEADER_BYTES.check::<usize>(1023),
            Err("1023 is out of range: must be at least 1024".to_owned())
        );
        assert_eq!(
            CONSECUTIVE_FAILURES.check::<u32>(5_000_000_000),
            Err("5000000000 is out of range: must be at most 4294967295".to_owned())
        );
        assert_eq!(
            CONSECUTIVE_FAILURES.check::<u64>(5_000_000_000),
            Ok(5_000_000_000)
        );
    }

    #[test]
    fn fractions() {
        assert!(BUDGET_RATIO.contains_fraction(0.0));
        assert!(BUDGET_RATIO.contains_fraction(1.0));
        assert!(!BUDGET_RATIO.contains_fraction(1.01));
        assert!(!BUDGET_RATIO.contains_fraction(-0.1));
        assert!(!BUDGET_RATIO.contains_fraction(f64::NAN));
    }

    /// The schema's pattern and the check are written apart; they must accept the same names.
    #[test]
    fn connection_name_pattern_and_check_agree() {
        let pattern = regex::Regex::new(&connection_name_pattern()).unwrap();
        let long = "a".repeat(CONNECTION_NAME_MAX_LEN);
        let too_long = "a".repeat(CONNECTION_NAME_MAX_LEN + 1);
        for name in [
            "crm",
            "a-1",
            "-",
            long.as_str(),
            too_long.as_str(),
            "",
            "CRM",
            "a_b",
            "a b",
            "é",
            "a\n",
        ] {
            assert_eq!(pattern.is_match(name), is_connection_name(name), "{name:?}");
        }
    }
}
