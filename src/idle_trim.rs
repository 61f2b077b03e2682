//! Gives memory freed when a burst of connections ends back to the OS: every few seconds
//! each runtime worker hands its allocator cache back to the shared heap, then the heap's
//! unused pages are purged.
//!
//! jemalloc keeps recently freed blocks in a cache per thread, and a thread tidies its cache
//! only while it allocates. A worker that goes quiet when a burst ends keeps its cache (a
//! few MB after 2,000 connections: docs/benchmarks.md) until the next burst, and the pages
//! under those blocks stay resident. Only the owning thread can flush its cache, so a worker
//! does it itself, when it is about to park (tokio's `on_thread_park`) and a new epoch has
//! begun since its last flush. A ticker task starts an epoch every [`EVERY`], and wakes the
//! other workers: a worker parked since before the epoch began would otherwise not park
//! again, and so not flush, until the next burst.
//!
//! Once every worker has flushed, the ticker purges the heap's unused pages. jemalloc's
//! background thread does that gradually, as it decays; measured a minute after a burst,
//! it had left 4 to 5 MB resident that a purge gave back.
//!
//! The cost is one atomic load per park, one flush per worker and one purge every
//! [`EVERY`]. Under load a worker refills its cache in microseconds, and the pages a purge
//! took are faulted back in as they are reused.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// How often each worker hands its cache back and the heap is purged. Long enough that
/// refilling the caches and faulting purged pages back in cost nothing measurable under
/// load; short enough that what a burst freed goes back to the OS within an interval of
/// being freed (the pool's idle upstream connections are freed 55 s after their last use).
pub(crate) const EVERY: Duration = Duration::from_secs(10);

thread_local! {
    /// The last epoch this thread flushed in. A new worker starts at 0 and so flushes at
    /// its first park, which costs nothing.
    static SEEN: Cell<u64> = const { Cell::new(0) };
}

/// How long the ticker waits for every worker to flush before it wakes them again, and
/// how many times. A wake-up can miss: tokio wakes no parked worker while another is
/// searching for work.
const RECHECK: Duration = Duration::from_millis(10);
const RECHECKS: usize = 20;

/// What the trim asks of the allocator.
pub(crate) struct Allocator {
    /// Hands the calling thread's cache back to the shared heap.
    pub(crate) flush: Box<dyn Fn() + Send + Sync>,
    /// Returns the heap's unused pages to the OS.
    pub(crate) purge: Box<dyn Fn() + Send + Sync>,
}

/// The epoch workers compare against when they park, and the allocator's calls.
pub(crate) struct Trim {
    epoch: AtomicU64,
    /// The epoch of the last flush, and how many workers have flushed in it.
    flushed: Mutex<(u64, usize)>,
    allocator: Allocator,
}

impl Trim {
    /// Epochs start at 1, so a thread's first park counts as a new epoch.
    pub(crate) fn new(allocator: Allocator) -> Arc<Self> {
        Arc::new(Self {
            epoch: AtomicU64::new(1),
            flushed: Mutex::new((0, 0)),
            allocator,
        })
    }

    /// What a worker runs before it parks: flushes its cache once per epoch.
    pub(crate) fn on_park(&self) {
        let epoch = self.epoch.load(Ordering::Relaxed);
        if SEEN.with(|seen| seen.replace(epoch)) == epoch {
            return;
        }
        (self.allocator.flush)();
        let mut flushed = self.flushed.lock().unwrap_or_else(PoisonError::into_inner);
        *flushed = match *flushed {
            (last, n) if last == epoch => (epoch, n + 1),
            _ => (epoch, 1),
        };
    }

    /// Starts an epoch and waits until `workers` have flushed in it, waking parked workers
    /// (so each parks again, and flushes) until they have or [`RECHECKS`] run out. Runs on
    /// a worker, where a spawned task wakes a parked one once a second task queues behind
    /// it (the first takes the spawning worker's LIFO slot). Returns whether all flushed.
    pub(crate) async fn next_epoch(&self, workers: usize) -> bool {
        let epoch = self.epoch.fetch_add(1, Ordering::Relaxed) + 1;
        for _ in 0..RECHECKS {
            for _ in 0..workers.max(2) {
                drop(tokio::spawn(async {}));
            }
            tokio::time::sleep(RECHECK).await;
            let flushed = *self.flushed.lock().unwrap_or_else(PoisonError::into_inner);
            if flushed.0 == epoch && flushed.1 >= workers {
                return true;
            }
        }
        false
    }

    /// Runs [`Trim::next_epoch`], then purges, every `every`, for the life of the runtime.
    pub(crate) async fn tick(self: Arc<Self>, every: Duration, workers: usize) {
        let mut interval = tokio::time::interval(every);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The first tick is immediate; every thread flushes at its first park anyway.
        interval.tick().await;
        loop {
            interval.tick().await;
            if !self.next_epoch(workers).await {
                tracing::debug!(workers, "not every worker handed its allocator cache back");
            }
            (self.allocator.purge)();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Allocator, Trim};
    use std::collections::HashSet;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};
    use std::thread::ThreadId;
    use std::time::{Duration, Instant};

    type Flushes = Arc<Mutex<Vec<ThreadId>>>;

    fn runtime(trim: &Arc<Trim>, parks: &Arc<AtomicUsize>) -> tokio::runtime::Runtime {
        let hook = Arc::clone(trim);
        let parks = Arc::clone(parks);
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .on_thread_park(move || {
                parks.fetch_add(1, Ordering::Relaxed);
                hook.on_park();
            })
            .enable_all()
            .build()
            .expect("a test runtime starts")
    }

    /// Polls until `flushes` holds `n` distinct threads, or 10 s pass.
    fn distinct_within_deadline(flushes: &Flushes, n: usize) -> usize {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let seen: HashSet<ThreadId> = flushes
                .lock()
                .expect("not poisoned")
                .iter()
                .copied()
                .collect();
            if seen.len() >= n || Instant::now() > deadline {
                return seen.len();
            }
            std::thread::yield_now();
        }
    }

    #[derive(Debug, Clone, Copy, PartialEq)]
    enum Event {
        Flush(u64, ThreadId),
        Purge,
    }

    /// An allocator that logs its calls: a flush with the epoch its thread is in (set
    /// before the flush runs) and the thread.
    fn logging(log: &Arc<Mutex<Vec<Event>>>) -> Allocator {
        let (flushes, purges) = (Arc::clone(log), Arc::clone(log));
        Allocator {
            flush: Box::new(move || {
                let epoch = super::SEEN.with(std::cell::Cell::get);
                let thread = std::thread::current().id();
                flushes
                    .lock()
                    .expect("not poisoned")
                    .push(Event::Flush(epoch, thread));
            }),
            purge: Box::new(move || purges.lock().expect("not poisoned").push(Event::Purge)),
        }
    }

    /// The case the wake-ups exist for: both workers are parked when an epoch begins, woken
    /// only by the ticker's own timer, as in a proxy that has gone quiet after a burst. The
    /// purge follows both flushes, so it takes the pages under what they handed back.
    #[test]
    fn each_epoch_reaches_every_parked_worker_then_purges() {
        let log: Arc<Mutex<Vec<Event>>> = Arc::default();
        let trim = Trim::new(logging(&log));
        let rt = runtime(&trim, &Arc::default());
        let ticker = rt.spawn(Arc::clone(&trim).tick(Duration::from_millis(50), 2));
        let deadline = Instant::now() + Duration::from_secs(10);
        while trim.epoch.load(Ordering::Relaxed) <= 7 && Instant::now() < deadline {
            std::thread::yield_now();
        }
        ticker.abort();
        let log = log.lock().expect("not poisoned").clone();
        let purges: Vec<usize> = (0..log.len()).filter(|&i| log[i] == Event::Purge).collect();
        assert!(purges.len() >= 5, "a purge per epoch: {log:?}");
        // Epoch 2 is the ticker's first; the purge that ends epoch e is the (e-1)th.
        for (epoch, purge) in (2..=6).zip(&purges) {
            let flushes: Vec<(usize, ThreadId)> = log
                .iter()
                .enumerate()
                .filter_map(|(i, e)| match e {
                    Event::Flush(at, thread) if *at == epoch => Some((i, *thread)),
                    _ => None,
                })
                .collect();
            let threads: HashSet<ThreadId> = flushes.iter().map(|(_, t)| *t).collect();
            assert_eq!(
                threads.len(),
                2,
                "epoch {epoch}: each worker flushed: {log:?}"
            );
            assert!(
                flushes.iter().all(|(i, _)| i < purge),
                "epoch {epoch}: the purge follows the flushes: {log:?}"
            );
        }
    }

    /// A worker that parks again in the same epoch does not flush again: under load a
    /// worker parks thousands of times a second.
    #[test]
    fn a_worker_flushes_once_per_epoch() {
        let flushes: Flushes = Arc::default();
        let record = Arc::clone(&flushes);
        let trim = Trim::new(Allocator {
            flush: Box::new(move || {
                record
                    .lock()
                    .expect("not poisoned")
                    .push(std::thread::current().id());
            }),
            purge: Box::new(|| {}),
        });
        let parks = Arc::new(AtomicUsize::new(0));
        let rt = runtime(&trim, &parks);
        assert_eq!(
            distinct_within_deadline(&flushes, 2),
            2,
            "both workers parked"
        );
        flushes.lock().expect("not poisoned").clear();
        let before = parks.load(Ordering::Relaxed);
        // Work that parks the workers many times over, in one epoch.
        rt.block_on(async {
            for _ in 0..200 {
                tokio::spawn(tokio::task::yield_now())
                    .await
                    .expect("the task runs");
            }
        });
        assert!(
            parks.load(Ordering::Relaxed) > before + 50,
            "the workers parked between the tasks"
        );
        assert!(flushes.lock().expect("not poisoned").is_empty());
    }
}
