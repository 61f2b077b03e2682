//! The end of a drain: waiting, up to a deadline, for the work a stopped listener left
//! running.
//!
//! Every listener stops the same way: its `CancellationToken` is cancelled, its accept loop
//! returns, and each connection finishes the request it is serving and closes. Whatever must
//! finish before the process may exit — connections, and the background work they started
//! (a coalesced token exchange, a recovery probe) — is a task of one `TaskTracker`, so one
//! wait covers all of it.

use std::time::Duration;

use tokio_util::task::TaskTracker;

/// Waits until every task of `tasks` has ended, for up to `timeout`; returns whether they
/// all did. Tasks spawned after this call are waited for too, as long as some are still
/// running when they start: a connection that starts a token exchange as it drains keeps
/// the drain open until the exchange ends.
pub async fn drain(tasks: &TaskTracker, timeout: Duration) -> bool {
    tasks.close();
    tokio::time::timeout(timeout, tasks.wait()).await.is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn waits_for_work_spawned_while_draining() {
        let tasks = TaskTracker::new();
        let inner = tasks.clone();
        tasks.spawn(async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            inner.spawn(tokio::time::sleep(Duration::from_secs(5)));
        });
        let start = tokio::time::Instant::now();
        assert!(drain(&tasks, Duration::from_secs(60)).await);
        assert_eq!(start.elapsed(), Duration::from_secs(6));
    }

    #[tokio::test(start_paused = true)]
    async fn gives_up_at_the_timeout() {
        let tasks = TaskTracker::new();
        tasks.spawn(tokio::time::sleep(Duration::from_secs(120)));
        let start = tokio::time::Instant::now();
        assert!(!drain(&tasks, Duration::from_secs(10)).await);
        assert_eq!(start.elapsed(), Duration::from_secs(10));
    }
}
