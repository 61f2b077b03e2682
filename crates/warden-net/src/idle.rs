//! `timeouts.client_idle`: a client connection with no request in progress is closed after
//! this long, counted from accept and from the end of each response.
//!
//! hyper's own header-read timer starts at the first byte of a head, so a client that
//! connects and never sends anything (or an HTTP/2 client that stops after its preface) would
//! hold its socket forever. Counting requests in progress at the service boundary covers
//! HTTP/1 and HTTP/2 alike: a request is in progress from the service call until its response
//! body is dropped, so long streams (SSE) are never cut, and a slowloris head, which never
//! reaches the service, is.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};
use hyper_util::server::graceful::GracefulConnection;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// How long a connection closed for idleness may take to say goodbye (HTTP/2 GOAWAY, a
/// request that raced the timer) before the socket is dropped regardless.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// Requests in progress on one client connection.
///
/// A request's start and end cost two atomic updates and a clock read: neither arms a timer
/// nor wakes the connection's task. The idle timer is armed once and, when it fires, looks at
/// what happened meanwhile: it waits for the requests in progress to end, or re-arms itself
/// from the end of the last one. A timer armed and cancelled per request (and a wake-up of
/// the connection's task at each start and end) cost about 4 % of a proxied request.
#[derive(Clone)]
pub struct Activity(Arc<Inner>);

struct Inner {
    in_progress: AtomicUsize,
    /// When the last request ended, in nanoseconds since `epoch` (0: none has).
    last_end: AtomicU64,
    epoch: Instant,
    /// The idle timer fired with requests in progress and waits for `changed`.
    waiting: AtomicBool,
    changed: Notify,
}

impl Default for Activity {
    fn default() -> Self {
        Activity(Arc::new(Inner {
            in_progress: AtomicUsize::new(0),
            last_end: AtomicU64::new(0),
            epoch: Instant::now(),
            waiting: AtomicBool::new(false),
            changed: Notify::new(),
        }))
    }
}

/// One request in progress; dropped when its response body is done with.
pub struct ActivityGuard(Arc<Inner>);

impl Drop for ActivityGuard {
    fn drop(&mut self) {
        let inner = &*self.0;
        // At least 1: 0 stands for "no request has ended".
        let since_epoch = u64::try_from(inner.epoch.elapsed().as_nanos())
            .unwrap_or(u64::MAX)
            .max(1);
        inner.last_end.fetch_max(since_epoch, Ordering::SeqCst);
        // Stored before the count drops, so an idle timer that sees no request in progress
        // also sees when the last one ended.
        if inner.in_progress.fetch_sub(1, Ordering::SeqCst) == 1
            && inner.waiting.swap(false, Ordering::SeqCst)
        {
            inner.changed.notify_waiters();
        }
    }
}

impl Activity {
    /// Marks a request as started; the connection is not idle until the guard is dropped,
    /// which callers tie to the end of the response body so streams are never cut.
    pub fn begin(&self) -> ActivityGuard {
        self.0.in_progress.fetch_add(1, Ordering::SeqCst);
        ActivityGuard(Arc::clone(&self.0))
    }

    /// Requests started and not yet finished, at the instant of the call (it may change
    /// right after).
    pub fn in_progress(&self) -> usize {
        self.0.in_progress.load(Ordering::SeqCst)
    }

    /// When the last request ended, if one has.
    pub(crate) fn last_end(&self) -> Option<Instant> {
        match self.0.last_end.load(Ordering::SeqCst) {
            0 => None,
            nanos => Some(self.0.epoch + Duration::from_nanos(nanos)),
        }
    }

    /// Resolves once no request has been in progress for `idle` without a break.
    pub async fn idle_for(&self, idle: Duration) {
        let armed = Instant::now();
        let sleep = tokio::time::sleep_until(armed + idle);
        let mut sleep = std::pin::pin!(sleep);
        loop {
            sleep.as_mut().await;
            self.none_in_progress().await;
            // Quiet since the timer was armed, or since the last request ended.
            let quiet_since = self.last_end().map_or(armed, |end| end.max(armed));
            let due = quiet_since + idle;
            if due <= Instant::now() {
                return;
            }
            sleep.as_mut().reset(due);
        }
    }

    /// Resolves once no request is in progress.
    async fn none_in_progress(&self) {
        loop {
            let changed = self.0.changed.notified();
            let mut changed = std::pin::pin!(changed);
            // Registered (and the wish to hear of it published) before the count is read, so
            // the end of the last request cannot slip between the two.
            changed.as_mut().enable();
            self.0.waiting.store(true, Ordering::SeqCst);
            if self.in_progress() == 0 {
                self.0.waiting.store(false, Ordering::SeqCst);
                return;
            }
            changed.await;
        }
    }
}

/// Drives one client connection (pinned by the caller, who may box it) until it ends, closing
/// it after `idle` without a request in progress, or gracefully once `shutdown` is cancelled
/// (in-flight requests finish).
pub async fn serve<C>(
    mut conn: Pin<&mut C>,
    activity: &Activity,
    idle: Duration,
    shutdown: &CancellationToken,
) -> Result<(), C::Error>
where
    C: GracefulConnection,
{
    tokio::select! {
        result = conn.as_mut() => result,
        () = activity.idle_for(idle) => {
            tracing::debug!(?idle, "closing an idle client connection");
            conn.as_mut().graceful_shutdown();
            tokio::select! {
                result = conn.as_mut() => result,
                () = activity.idle_for(CLOSE_GRACE) => Ok(()),
            }
        }
        () = shutdown.cancelled() => {
            // Finish the request in flight, then close (HTTP/2: GOAWAY).
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    }
}

/// A hyper service that counts its requests in progress into an [`Activity`].
#[derive(Clone)]
pub struct Tracked<S> {
    inner: S,
    activity: Activity,
}

impl<S> Tracked<S> {
    /// Wraps `inner`; every clone of `activity` (held by the connection's idle timer) sees
    /// the requests it serves.
    pub fn new(inner: S, activity: Activity) -> Self {
        Tracked { inner, activity }
    }
}

impl<S, R, B> hyper::service::Service<Request<R>> for Tracked<S>
where
    S: hyper::service::Service<Request<R>, Response = Response<B>>,
{
    type Response = Response<TrackedBody<B>>;
    type Error = S::Error;
    type Future = TrackedFuture<S::Future>;

    fn call(&self, req: Request<R>) -> Self::Future {
        let guard = self.activity.begin();
        TrackedFuture {
            inner: self.inner.call(req),
            guard: Some(guard),
        }
    }
}

pin_project_lite::pin_project! {
    /// The service's future, holding the request's guard until the response exists (a
    /// request the client cancels drops it here).
    pub struct TrackedFuture<F> {
        #[pin]
        inner: F,
        guard: Option<ActivityGuard>,
    }
}

impl<F, B, E> Future for TrackedFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<TrackedBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = std::task::ready!(this.inner.poll(cx));
        let guard = this.guard.take();
        Poll::Ready(result.map(|resp| resp.map(|inner| TrackedBody { inner, guard })))
    }
}

pin_project_lite::pin_project! {
    /// A response body that ends its request's activity when it ends or is dropped.
    pub struct TrackedBody<B> {
        #[pin]
        inner: B,
        guard: Option<ActivityGuard>,
    }
}

impl<B: Body> Body for TrackedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let frame = std::task::ready!(this.inner.poll_frame(cx));
        if frame.is_none() {
            this.guard.take();
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn idle_counts_from_the_last_request() {
        let activity = Activity::default();
        let start = tokio::time::Instant::now();
        let guard = activity.begin();
        let a = activity.clone();
        let idle = tokio::spawn(async move { a.idle_for(Duration::from_secs(60)).await });
        tokio::time::sleep(Duration::from_secs(100)).await;
        assert!(!idle.is_finished(), "a request in progress is not idle");
        drop(guard);
        idle.await.unwrap();
        assert_eq!(start.elapsed(), Duration::from_secs(160));
    }

    struct CountingWaker(AtomicUsize);

    impl std::task::Wake for CountingWaker {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// Requests that start and end while the idle timer waits neither wake the connection's
    /// task nor re-arm the timer; when it fires it re-arms once, from the last request's end.
    #[tokio::test(start_paused = true)]
    async fn requests_do_not_wake_the_idle_timer() {
        let activity = Activity::default();
        let start = Instant::now();
        let wakes = Arc::new(CountingWaker(AtomicUsize::new(0)));
        let waker = std::task::Waker::from(Arc::clone(&wakes));
        let mut cx = Context::from_waker(&waker);
        let mut idle = Box::pin(activity.idle_for(Duration::from_secs(60)));
        assert!(idle.as_mut().poll(&mut cx).is_pending());
        tokio::time::advance(Duration::from_secs(30)).await;
        for _ in 0..100 {
            drop(activity.begin());
        }
        assert_eq!(wakes.0.load(Ordering::SeqCst), 0, "woken by a request");
        // The timer fires at 60 s and re-arms for 90 s: the last request ended at 30 s.
        tokio::time::advance(Duration::from_secs(31)).await;
        assert_eq!(wakes.0.load(Ordering::SeqCst), 1, "the timer fired once");
        assert!(idle.as_mut().poll(&mut cx).is_pending(), "re-armed");
        tokio::time::advance(Duration::from_secs(29)).await;
        assert_eq!(wakes.0.load(Ordering::SeqCst), 2);
        assert!(idle.as_mut().poll(&mut cx).is_ready());
        assert_eq!(start.elapsed(), Duration::from_secs(90));
    }
}
