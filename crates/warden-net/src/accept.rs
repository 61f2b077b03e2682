//! The accept loop every listener runs (the proxy's routes, the admin API, the webhook), and
//! what it does when `accept` fails.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::limit::{ConnectionLimit, ConnectionPermit, Slot};
use crate::warn::WarnEvery;

/// Accepts on `listener` until `stop` is cancelled, and runs the future `handle` makes of
/// each connection as a task of `tasks`, so that a drain ([`drain`](fn@crate::drain))
/// waits for it.
///
/// With a `limit`, a slot is taken *before* each accept and held until the connection's task
/// ends: once every slot is held the listener stops accepting and new connections wait in
/// the kernel's listen backlog instead of costing a descriptor. `name` names the listener in
/// warnings. The listener is dropped on return, so later connects are refused rather than
/// left waiting in a backlog nobody reads.
pub async fn accept_loop<H, F>(
    listener: TcpListener,
    name: &str,
    limit: Option<&ConnectionLimit>,
    stop: &CancellationToken,
    tasks: &TaskTracker,
    mut handle: H,
) where
    H: FnMut(TcpStream, SocketAddr) -> F,
    F: Future<Output = ()> + Send + 'static,
{
    let mut backoff = AcceptBackoff::default();
    loop {
        let slot: Option<Slot> = match limit {
            Some(limit) => tokio::select! {
                biased;
                () = stop.cancelled() => return,
                slot = limit.acquire(name) => Some(slot),
            },
            None => None,
        };
        let accepted = tokio::select! {
            biased;
            () = stop.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(pair) => {
                backoff.succeeded();
                pair
            }
            Err(err) => {
                drop(slot);
                tokio::select! {
                    biased;
                    () = stop.cancelled() => return,
                    () = backoff.failed(&err, name) => continue,
                }
            }
        };
        let permit = slot.map(Slot::connected);
        tasks.spawn(holding(handle(stream, peer), permit));
    }
}

pin_project_lite::pin_project! {
    /// A connection's future and the slot it holds until the task drops it.
    ///
    /// Not an `async move { connection.await; drop(permit) }` block: such a block keeps the
    /// captured future and the awaited one side by side, which doubled what every waiting
    /// connection costs (a silent connection's task went from about 1 KB to 2 KB).
    struct Holding<F> {
        #[pin]
        connection: F,
        _permit: Option<ConnectionPermit>,
    }
}

/// The task of one connection.
fn holding<F: Future<Output = ()>>(connection: F, permit: Option<ConnectionPermit>) -> Holding<F> {
    Holding {
        connection,
        _permit: permit,
    }
}

impl<F: Future<Output = ()>> Future for Holding<F> {
    type Output = ();

    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<()> {
        self.project().connection.poll(cx)
    }
}

/// The first pause after a resource error, doubled on each one in a row up to [`MAX_PAUSE`].
const FIRST_PAUSE: Duration = Duration::from_millis(5);
const MAX_PAUSE: Duration = Duration::from_secs(1);

/// Whether an accept error concerns only the connection being accepted (it was reset or
/// aborted before we got to it): the listener is fine and the next accept may go at once.
pub(crate) fn is_per_connection(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionRefused
            | io::ErrorKind::Interrupted
            | io::ErrorKind::WouldBlock
    )
}

/// Paces an accept loop through resource errors (out of descriptors, memory or buffers):
/// retrying at once would spin, a fixed short pause would still warn twenty times a second.
/// The pause doubles while errors continue, and the warning repeats once per 10 s at most.
pub(crate) struct AcceptBackoff {
    pause: Duration,
    warn: WarnEvery,
}

impl Default for AcceptBackoff {
    fn default() -> Self {
        AcceptBackoff {
            pause: FIRST_PAUSE,
            warn: WarnEvery::new(Duration::from_secs(10)),
        }
    }
}

impl AcceptBackoff {
    /// After an accept succeeded.
    pub(crate) fn succeeded(&mut self) {
        self.pause = FIRST_PAUSE;
    }

    /// After an accept failed: returns at once for a per-connection error, and pauses
    /// otherwise. `listener` names the listener in the warning.
    pub(crate) async fn failed(&mut self, err: &io::Error, listener: &str) {
        if is_per_connection(err) {
            tracing::debug!(listener, error = %err, "accept: connection gone before it was accepted");
            return;
        }
        if let Some(suppressed) = self.warn.due() {
            tracing::warn!(
                listener,
                error = %err,
                pause = ?self.pause,
                suppressed,
                "accept failed (descriptor or memory limit?); pausing this listener"
            );
        }
        tokio::time::sleep(self.pause).await;
        self.pause = (self.pause * 2).min(MAX_PAUSE);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tokio::sync::{Notify, mpsc};

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_slot_per_connection_task_and_a_stop_that_lets_the_listener_go() {
        let listener = crate::listen("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        let limit = ConnectionLimit::new(1, metrics::Gauge::noop());
        let (stop, tasks) = (CancellationToken::new(), TaskTracker::new());
        let release = Arc::new(Notify::new());
        let (accepted_tx, mut accepted) = mpsc::unbounded_channel();
        let looping = tokio::spawn({
            let (stop, tasks, release) = (stop.clone(), tasks.clone(), Arc::clone(&release));
            async move {
                accept_loop(listener, "t", Some(&limit), &stop, &tasks, |stream, _| {
                    let (tx, release) = (accepted_tx.clone(), Arc::clone(&release));
                    async move {
                        let _ = tx.send(());
                        release.notified().await;
                        drop(stream);
                    }
                })
                .await;
            }
        });
        let wait = Duration::from_secs(5);
        let _first = TcpStream::connect(addr).await.unwrap();
        tokio::time::timeout(wait, accepted.recv()).await.unwrap();
        let _second = TcpStream::connect(addr).await.unwrap();
        assert!(
            tokio::time::timeout(wait, accepted.recv()).await.is_err(),
            "accepted past the limit"
        );
        release.notify_one();
        tokio::time::timeout(wait, accepted.recv())
            .await
            .expect("the first connection's slot goes to the second");

        stop.cancel();
        looping.await.unwrap();
        assert!(TcpStream::connect(addr).await.is_err(), "still listening");
        assert!(
            !crate::drain(&tasks, wait).await,
            "the second connection is still running"
        );
        release.notify_one();
        assert!(crate::drain(&tasks, wait).await);
    }

    /// Every waiting connection is one such task: it must cost its connection's future and
    /// little more (not that future twice, as an `async move` block that awaits it does).
    #[tokio::test]
    async fn a_connection_task_is_its_future_and_a_permit() {
        let big = [0u8; 1000];
        let connection = async move {
            tokio::task::yield_now().await;
            std::hint::black_box(&big);
        };
        let alone = std::mem::size_of_val(&connection);
        let task = holding(connection, None);
        let size = std::mem::size_of_val(&task);
        assert!(
            size <= alone + 32,
            "task {size} bytes for a {alone}-byte future"
        );
        task.await;
    }

    #[test]
    fn per_connection_errors() {
        assert!(is_per_connection(&io::ErrorKind::ConnectionAborted.into()));
        assert!(!is_per_connection(&io::Error::from_raw_os_error(24))); // EMFILE
    }

    #[tokio::test(start_paused = true)]
    async fn pause_doubles_up_to_a_second() {
        let mut b = AcceptBackoff::default();
        let emfile = io::Error::from_raw_os_error(24);
        let start = tokio::time::Instant::now();
        for _ in 0..20 {
            b.failed(&emfile, "test").await;
        }
        assert_eq!(b.pause, MAX_PAUSE);
        let took = start.elapsed();
        assert!(
            took > Duration::from_secs(5) && took < Duration::from_secs(20),
            "{took:?}"
        );
        b.succeeded();
        assert_eq!(b.pause, FIRST_PAUSE);
        let before = tokio::time::Instant::now();
        b.failed(&io::ErrorKind::ConnectionReset.into(), "test")
            .await;
        assert_eq!(before.elapsed(), Duration::ZERO);
    }
}
