//! Exponential backoff with jitter, for retries (README › Retries) and recovery probes
//! (README › Connection health): one formula and one way of counting for both, so the
//! two cannot drift apart.
//!
//! Delays are counted from 0: delay `n` is the one waited after `n` earlier delays of the
//! same series (the first retry waits delay 0, as does the first probe of an outage).
//! Delay `n`'s ceiling is `base × 2^n`, capped at `max`.

use std::time::Duration;

use tower::util::rng::{HasherRng, Rng};

/// A backoff series: `base`, doubling, capped at `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Backoff {
    pub(crate) base: Duration,
    pub(crate) max: Duration,
}

impl Backoff {
    /// The un-jittered ceiling of delay `n` (counted from 0).
    pub(crate) fn ceiling(&self, n: u32) -> Duration {
        let factor = 2u32.saturating_pow(n.min(31));
        self.base.saturating_mul(factor).min(self.max)
    }

    /// Full jitter (AWS's "exponential backoff and jitter"): uniform in `[0, ceiling(n)]`.
    /// Retries use it: clients of one upstream that failed together spread out at once.
    pub(crate) fn full(&self, n: u32) -> Duration {
        self.full_with(n, &mut HasherRng::new())
    }

    /// Equal jitter: uniform in `[ceiling(n)/2, ceiling(n)]`. Probes use it: the
    /// `Retry-After` a short-circuit promises should not collapse to "now".
    pub(crate) fn equal(&self, n: u32) -> Duration {
        self.equal_with(n, &mut HasherRng::new())
    }

    fn full_with(&self, n: u32, rng: &mut impl Rng) -> Duration {
        self.ceiling(n).mul_f64(rng.next_f64())
    }

    fn equal_with(&self, n: u32, rng: &mut impl Rng) -> Duration {
        let half = self.ceiling(n) / 2;
        half + half.mul_f64(rng.next_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const B: Backoff = Backoff {
        base: Duration::from_millis(100),
        max: Duration::from_millis(1_000),
    };

    /// An rng that always returns one value: the ends of the jitter ranges, exactly.
    struct Fixed(u64);

    impl Rng for Fixed {
        fn next_u64(&mut self) -> u64 {
            self.0
        }
    }

    #[test]
    fn ceiling_doubles_from_base_to_max_counting_from_zero() {
        let ceilings: Vec<u128> = (0..6).map(|n| B.ceiling(n).as_millis()).collect();
        assert_eq!(ceilings, [100, 200, 400, 800, 1_000, 1_000]);
        assert_eq!(B.ceiling(u32::MAX), B.max);
        let probes = Backoff {
            base: Duration::from_secs(1),
            max: Duration::from_secs(8),
        };
        let secs: Vec<u64> = (0..6).map(|n| probes.ceiling(n).as_secs()).collect();
        assert_eq!(secs, [1, 2, 4, 8, 8, 8]);
    }

    #[test]
    fn jitter_ranges_end_where_the_documentation_says() {
        for n in 0..6 {
            let ceiling = B.ceiling(n);
            assert_eq!(B.full_with(n, &mut Fixed(0)), Duration::ZERO);
            assert_eq!(B.equal_with(n, &mut Fixed(0)), ceiling / 2);
            // The largest draw: [0, 1) scaled stays within the ceiling, within a nanosecond.
            let top = B.full_with(n, &mut Fixed(u64::MAX));
            assert!(
                top <= ceiling && ceiling - top <= Duration::from_nanos(1),
                "{n}: {top:?}"
            );
            let top = B.equal_with(n, &mut Fixed(u64::MAX));
            assert!(
                top <= ceiling && ceiling - top <= Duration::from_nanos(1),
                "{n}: {top:?}"
            );
        }
    }

    #[test]
    fn every_sample_lies_in_its_range() {
        let mut rng = HasherRng::new();
        for n in 0..8 {
            let ceiling = B.ceiling(n);
            for _ in 0..1_000 {
                assert!(B.full_with(n, &mut rng) <= ceiling);
                let e = B.equal_with(n, &mut rng);
                assert!(e >= ceiling / 2 && e <= ceiling, "{n}: {e:?}");
            }
        }
        assert!(B.full(3) <= B.ceiling(3));
        let e = B.equal(3);
        assert!(e >= B.ceiling(3) / 2 && e <= B.ceiling(3));
    }
}
