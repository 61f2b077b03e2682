//! `limits.max_connections`: client connections held at once, across every listener.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::warn::WarnEvery;

/// A semaphore of connection slots. An accept loop takes a slot *before* it accepts, so
/// once every slot is held the listeners stop accepting and new connections wait in the
/// kernel's listen backlog: no descriptor is spent on them, and nothing spins.
pub struct ConnectionLimit {
    slots: Arc<Semaphore>,
    limit: Mutex<usize>,
    /// `warden_client_connections`: slots held.
    gauge: metrics::Gauge,
    warn: WarnEvery,
}

/// A slot taken before `accept`: not yet a connection, so not yet counted.
pub struct Slot {
    slot: OwnedSemaphorePermit,
    gauge: metrics::Gauge,
}

impl Slot {
    /// The slot now holds an accepted connection: counted until the permit is dropped.
    pub fn connected(self) -> ConnectionPermit {
        self.gauge.increment(1.0);
        ConnectionPermit {
            _slot: self.slot,
            gauge: self.gauge,
        }
    }
}

/// One held slot with its connection; the connection's task keeps it until the socket is
/// closed.
pub struct ConnectionPermit {
    _slot: OwnedSemaphorePermit,
    gauge: metrics::Gauge,
}

impl Drop for ConnectionPermit {
    fn drop(&mut self) {
        self.gauge.decrement(1.0);
    }
}

impl ConnectionLimit {
    /// `limit` is clamped to at least one slot (and tokio's maximum), so a listener can
    /// always make progress; `gauge` is reset to 0 and then follows the connections held.
    pub fn new(limit: usize, gauge: metrics::Gauge) -> Arc<Self> {
        let limit = limit.clamp(1, Semaphore::MAX_PERMITS);
        gauge.set(0.0);
        Arc::new(ConnectionLimit {
            slots: Arc::new(Semaphore::new(limit)),
            limit: Mutex::new(limit),
            gauge,
            warn: WarnEvery::new(Duration::from_secs(10)),
        })
    }

    /// Waits for a free slot. When none is free, says so (once per 10 s at most), naming
    /// `listener`, the listener that had to stop accepting.
    pub async fn acquire(&self, listener: &str) -> Slot {
        let slot = match Arc::clone(&self.slots).try_acquire_owned() {
            Ok(slot) => slot,
            Err(_) => {
                if let Some(suppressed) = self.warn.due() {
                    let limit = *self.limit.lock().unwrap_or_else(|p| p.into_inner());
                    tracing::warn!(
                        listener,
                        max_connections = limit,
                        suppressed,
                        "limits.max_connections reached: new connections wait in the listen backlog"
                    );
                }
                Arc::clone(&self.slots)
                    .acquire_owned()
                    .await
                    .expect("the connection semaphore is never closed")
            }
        };
        Slot {
            slot,
            gauge: self.gauge.clone(),
        }
    }

    /// Applies a reloaded `limits.max_connections`. Connections already open stay open; a
    /// lower limit takes effect as they close.
    pub fn resize(&self, new: usize) {
        let new = new.clamp(1, Semaphore::MAX_PERMITS);
        let mut limit = self.limit.lock().unwrap_or_else(|p| p.into_inner());
        if new > *limit {
            self.slots.add_permits(new - *limit);
        } else if new < *limit {
            let excess = *limit - new;
            let missing = excess - self.slots.forget_permits(excess);
            if missing > 0 {
                // Slots held by open connections are retired as those close.
                let slots = Arc::clone(&self.slots);
                tokio::spawn(async move {
                    for _ in 0..missing {
                        match slots.acquire().await {
                            Ok(slot) => slot.forget(),
                            Err(_) => return,
                        }
                    }
                });
            }
        }
        *limit = new;
    }

    /// Free slots now (for tests and the startup log).
    pub fn available(&self) -> usize {
        self.slots.available_permits()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gauge() -> metrics::Gauge {
        metrics::Gauge::noop()
    }

    #[tokio::test(start_paused = true)]
    async fn waits_for_a_slot_and_resizes() {
        let limit = ConnectionLimit::new(2, gauge());
        let a = limit.acquire("t").await;
        let _b = limit.acquire("t").await;
        let waiting = tokio::time::timeout(Duration::from_secs(1), limit.acquire("t")).await;
        assert!(waiting.is_err(), "a third slot must wait");
        drop(a);
        let _c = tokio::time::timeout(Duration::from_secs(1), limit.acquire("t"))
            .await
            .expect("freed slot");
        limit.resize(4);
        assert_eq!(limit.available(), 2);
        limit.resize(1);
        tokio::task::yield_now().await;
        assert_eq!(limit.available(), 0);
    }
}
