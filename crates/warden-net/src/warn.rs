//! A warning that repeats at most once per period, so a condition that persists (an fd
//! limit reached, a connection limit full) is visible without flooding the log.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

/// One per condition, held by whatever hits it (a connection limit, an accept loop): every
/// occurrence goes through [`WarnEvery::due`], which lets one warning through per period.
pub struct WarnEvery {
    period: Duration,
    last: Mutex<Option<Instant>>,
    /// Occurrences since the last warning was let through.
    suppressed: AtomicU64,
}

impl WarnEvery {
    /// The first occurrence is always let through; `const` so a warner can also live in a
    /// `static`.
    pub const fn new(period: Duration) -> Self {
        WarnEvery {
            period,
            last: Mutex::new(None),
            suppressed: AtomicU64::new(0),
        }
    }

    /// Counts one occurrence; `Some(n)` when a warning is due now, `n` being how many were
    /// held back since the previous one.
    pub fn due(&self) -> Option<u64> {
        let now = Instant::now();
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        match *last {
            Some(at) if now.duration_since(at) < self.period => {
                self.suppressed.fetch_add(1, Ordering::Relaxed);
                None
            }
            _ => {
                *last = Some(now);
                Some(self.suppressed.swap(0, Ordering::Relaxed))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn once_per_period() {
        let w = WarnEvery::new(Duration::from_secs(10));
        assert_eq!(w.due(), Some(0));
        assert_eq!(w.due(), None);
        assert_eq!(w.due(), None);
        tokio::time::advance(Duration::from_secs(10)).await;
        assert_eq!(w.due(), Some(2));
    }
}
