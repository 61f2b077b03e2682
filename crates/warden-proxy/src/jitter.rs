//! Randomness for spreading retries and probes, so many clients of one upstream do not act in
//! step. Not for anything secret: a per-thread SplitMix64 seeded from the hasher keys std
//! draws from the OS.

use std::cell::Cell;
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

thread_local! {
    static STATE: Cell<u64> = Cell::new(seed());
}

fn seed() -> u64 {
    let mut h = RandomState::new().build_hasher();
    h.write_u64(0x9E37_79B9_7F4A_7C15);
    h.finish()
}

pub(crate) fn next_u64() -> u64 {
    STATE.with(|s| {
        let x = s.get().wrapping_add(0x9E37_79B9_7F4A_7C15);
        s.set(x);
        let mut z = x;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    })
}

/// A uniformly random fraction in [0, 1).
pub fn fraction() -> f64 {
    // 53 random bits: every value is an exact f64.
    (next_u64() >> 11) as f64 / (1u64 << 53) as f64
}

/// Full jitter (AWS's "exponential backoff and jitter"): uniform in [0, max].
pub fn full(max: Duration) -> Duration {
    max.mul_f64(fraction())
}

/// Equal jitter: uniform in [max/2, max]. For probes, whose Retry-After promise should not
/// collapse to "now".
pub fn equal(max: Duration) -> Duration {
    let half = max / 2;
    half + half.mul_f64(fraction())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds() {
        let max = Duration::from_millis(800);
        for _ in 0..10_000 {
            let f = fraction();
            assert!((0.0..1.0).contains(&f));
            assert!(full(max) <= max);
            let e = equal(max);
            assert!(e >= max / 2 && e <= max);
        }
    }

    #[test]
    fn spreads() {
        // Not a statistics test: only that values are not stuck.
        let seen: std::collections::HashSet<u64> = (0..100).map(|_| next_u64()).collect();
        assert_eq!(seen.len(), 100);
    }
}
