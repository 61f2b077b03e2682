//! One route's circuit breaker (README › Retries `circuit_open`).
//!
//! Counting is per attempt, retries included, because every attempt hit the upstream: a
//! request that failed three times is three pieces of evidence. Any answer that is not
//! transient proves the upstream is answering and restarts the count. Only a probe (or an
//! admin reset) closes an open circuit: the prober owns recovery, with its own backoff,
//! so the request path never decides when to let traffic back in.

use std::time::{Duration, Instant};

/// The `Retry-After` when the next probe's time is unknown or already past.
pub const MIN_RETRY_AFTER: Duration = Duration::from_secs(1);

/// `Retry-After` for a request refused by an open circuit: whole seconds until the next
/// probe, rounded up, at least one (README › Retries). Rounding up means a client that honours it
/// never comes back before the probe that could have closed the circuit.
pub fn retry_after(next_probe: Option<Instant>, now: Instant) -> Duration {
    let Some(next) = next_probe else {
        return MIN_RETRY_AFTER;
    };
    let wait = next.saturating_duration_since(now);
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    Duration::from_secs(secs).max(MIN_RETRY_AFTER)
}

#[derive(Debug, Clone)]
pub(crate) struct Circuit {
    /// Transient attempts in a row that open the circuit; at least 1.
    threshold: u32,
    /// Transient attempts in a row so far. Keeps counting while open (in-flight requests
    /// still answer), which changes nothing until the circuit closes and resets it.
    failures: u32,
    open: bool,
    /// When the prober will probe next, as it last said; `None` until it says.
    next_probe: Option<Instant>,
}

impl Circuit {
    pub(crate) fn new(threshold: u32) -> Self {
        Circuit {
            threshold: threshold.max(1),
            failures: 0,
            open: false,
            next_probe: None,
        }
    }

    /// Counts one attempt's outcome. Returns true when this attempt opened the circuit.
    pub(crate) fn record(&mut self, transient: bool) -> bool {
        if !transient {
            self.failures = 0;
            return false;
        }
        self.failures = self.failures.saturating_add(1);
        if self.open || self.failures < self.threshold {
            return false;
        }
        self.open = true;
        // A previous outage's schedule means nothing now; the prober will say.
        self.next_probe = None;
        true
    }

    /// Closes the circuit and restarts the count. Returns true if it was open.
    pub(crate) fn close(&mut self) -> bool {
        let was_open = self.open;
        self.open = false;
        self.failures = 0;
        self.next_probe = None;
        was_open
    }

    pub(crate) fn is_open(&self) -> bool {
        self.open
    }

    pub(crate) fn failures(&self) -> u32 {
        self.failures
    }

    pub(crate) fn next_probe(&self) -> Option<Instant> {
        self.next_probe
    }

    /// Ignored while closed: a late word from a prober that has stopped must not linger
    /// into the next outage.
    pub(crate) fn set_next_probe(&mut self, at: Option<Instant>) {
        if self.open {
            self.next_probe = at;
        }
    }

    /// A reload may change the threshold; the count so far is kept and compared against
    /// the new threshold at the next transient attempt.
    pub(crate) fn set_threshold(&mut self, threshold: u32) {
        self.threshold = threshold.max(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        let now = Instant::now();
        let ms = Duration::from_millis;
        let table = [
            (Some(now + ms(1_200)), 2),
            (Some(now + ms(300)), 1),
            (Some(now + ms(2_000)), 2),
            (Some(now + ms(2_001)), 3),
            (Some(now + Duration::from_nanos(1)), 1),
            (Some(now), 1),
            (now.checked_sub(ms(5_000)), 1),
            (None, 1),
            (Some(now + Duration::from_secs(300)), 300),
        ];
        for (next, want) in table {
            assert_eq!(
                retry_after(next, now),
                Duration::from_secs(want),
                "{next:?}"
            );
        }
    }

    #[test]
    fn opens_once_at_the_threshold() {
        let mut c = Circuit::new(3);
        assert!(!c.record(true));
        assert!(!c.record(true));
        assert!(c.record(true));
        assert!(c.is_open());
        assert!(!c.record(true), "already open: no second opening");
        assert_eq!(c.failures(), 4);
        assert!(c.close());
        assert!(!c.close());
        assert_eq!(c.failures(), 0);
    }

    #[test]
    fn zero_threshold_behaves_as_one() {
        let mut c = Circuit::new(0);
        assert!(c.record(true));
    }

    #[test]
    fn next_probe_only_while_open() {
        let now = Instant::now();
        let mut c = Circuit::new(1);
        c.set_next_probe(Some(now));
        assert_eq!(c.next_probe(), None);
        c.record(true);
        c.set_next_probe(Some(now));
        assert_eq!(c.next_probe(), Some(now));
        c.close();
        assert_eq!(c.next_probe(), None);
    }
}
