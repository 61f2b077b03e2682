//! One route's upstream connections: HTTP/1.1 connections driven by
//! `hyper::client::conn::http1`, kept in a small LIFO pool, or one multiplexed HTTP/2
//! connection when TLS's ALPN picks h2.
//!
//! Why not hyper-util's pooled client: it adds a task per checkout, a dispatch channel
//! and a keyed pool with waiters in front of the same `conn::http1` sender, about 4 µs of
//! user CPU per request beside nginx (docs/benchmarks.md). A route has one upstream, so
//! its pool needs no key: a vector under a mutex held for a push or a pop.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use http::header::{self, HeaderValue};
use http::uri::{Authority, PathAndQuery};
use http::{Request, Response, Uri, Version};
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_rustls::TlsConnector;
use warden_config::{Limits, Route, Scheme};
use warden_net::WarnEvery;

use super::negotiate::{Alpn, Negotiation, Turn};
use crate::body::{GiveBack, Lease, RequestBody};
use crate::tls::{self, TlsError};

/// How long a connection past `max_idle` may stay idle in the pool. The cap is on idle
/// connections, and one that waits a moment between two answers is not idle: under more
/// than `max_idle` concurrent requests, answers end and requests start in batches, and
/// closing every connection past the cap as it came back made about one request in six
/// open a new one (44,000 connects in 12 s at 2,000 concurrent requests), each leaving a
/// TIME_WAIT socket and an ephemeral port behind.
pub(crate) const PAST_CAP_GRACE: Duration = Duration::from_secs(1);

/// How long an idle pooled connection is kept; below the usual 60–120 s server keep-alive
/// so warden closes first and rarely races an upstream that is closing the same socket.
pub(crate) const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(55);

/// Why an exchange failed below HTTP, with the cause kept for classification.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SendError {
    #[error("dns error")]
    Dns(#[source] io::Error),
    #[error("connect error")]
    Connect(#[source] io::Error),
    #[error("connect timeout")]
    ConnectTimeout,
    #[error("tls handshake")]
    Tls(#[source] io::Error),
    #[error("http handshake")]
    Handshake(#[source] hyper::Error),
    /// The exchange failed on an open connection.
    #[error("upstream exchange")]
    Exchange(#[source] hyper::Error),
    /// Every connection the route may open was busy for `timeouts.connect`: warden's own
    /// limit, not the upstream's fault.
    #[error("every upstream connection busy")]
    Busy,
}

impl SendError {
    /// The request never left warden: sending it again is safe.
    pub(crate) fn nothing_sent(&self) -> bool {
        !matches!(self, SendError::Exchange(_))
    }
}

/// How many connections a route's pool keeps idle, and opens in all: the two pool settings
/// of `limits`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PoolSize {
    pub(crate) idle: usize,
    pub(crate) open: usize,
}

impl PoolSize {
    pub(crate) fn of(limits: &Limits) -> Self {
        PoolSize {
            idle: limits.max_idle_upstream_per_route,
            open: limits.max_upstream_per_route,
        }
    }
}

/// The connections of one route.
pub(crate) struct Upstream {
    host: String,
    port: u16,
    authority: Authority,
    /// HTTP/1.1's `Host` field, from `authority`: validated once, not per request.
    host_field: Option<HeaderValue>,
    /// `https` routes: rustls with ALPN h2 and http/1.1.
    tls: Option<(TlsConnector, ServerName<'static>)>,
    connect_timeout: Duration,
    max_idle: usize,
    idle_timeout: Duration,
    pool: Mutex<Pool>,
    slots: Arc<Slots>,
    /// Who connects while the upstream may speak h2 (`negotiate`).
    negotiation: Negotiation,
    /// A route at its connection limit says so, at most once per 10 s.
    full: WarnEvery,
}

/// The route's open connections, counted against `limits.max_upstream_per_route`: each
/// holds a [`Slot`] from before it connects until its driver ends. A request that finds
/// none idle and no slot free waits on `freed`, told when a connection comes back to the
/// pool or closes.
struct Slots {
    open: AtomicUsize,
    max: usize,
    freed: Notify,
}

impl Slots {
    fn reserve(self: &Arc<Self>) -> Option<Slot> {
        self.open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max).then_some(n + 1)
            })
            .ok()
            .map(|_| Slot(Arc::clone(self)))
    }
}

/// What a request waiting at the limit gets: a pooled connection, or a place to open one.
enum Free {
    Pooled(http1::SendRequest<RequestBody>),
    Slot(Slot),
    /// An h2 connection came up meanwhile: every request shares it.
    Shared,
}

/// One open (or opening) connection's place in [`Slots`], given back when it is dropped.
struct Slot(Arc<Slots>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::AcqRel);
        self.0.freed.notify_one();
    }
}

#[derive(Default)]
struct Pool {
    /// Idle HTTP/1.1 senders in the order they came back, most recently used last.
    http1: Vec<Pooled>,
    /// The multiplexed connection, when the upstream speaks h2.
    http2: Option<http2::SendRequest<RequestBody>>,
}

struct Pooled {
    sender: http1::SendRequest<RequestBody>,
    /// When it came back to the pool.
    used: Instant,
}

impl Upstream {
    /// The connections of `route`: at most `size.open` open, and of those at most
    /// `size.idle` idle HTTP/1.1 connections (past it, for [`PAST_CAP_GRACE`]).
    pub(crate) fn new(route: &Route, size: PoolSize) -> Result<Arc<Upstream>, TlsError> {
        let https = route.upstream.scheme == Scheme::Https;
        let tls = if https {
            let mut config: ClientConfig = tls::client_config(&route.tls, true)?;
            config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
            let name = route
                .tls
                .server_name
                .clone()
                .unwrap_or_else(|| route.upstream.host.clone());
            let name =
                ServerName::try_from(name.clone()).map_err(|_| TlsError::ServerName(name))?;
            Some((TlsConnector::from(Arc::new(config)), name))
        } else {
            None
        };
        Ok(Arc::new(Upstream {
            host: route.upstream.host.clone(),
            port: route.upstream.port,
            authority: route.upstream.authority.clone(),
            host_field: HeaderValue::from_str(route.upstream.authority.as_str()).ok(),
            tls,
            connect_timeout: route.timeouts.connect,
            max_idle: size.idle,
            idle_timeout: POOL_IDLE_TIMEOUT,
            pool: Mutex::default(),
            slots: Arc::new(Slots {
                open: AtomicUsize::new(0),
                max: size.open,
                freed: Notify::new(),
            }),
            full: WarnEvery::new(Duration::from_secs(10)),
            negotiation: Negotiation::default(),
        }))
    }

    /// `http` or `https`.
    pub(crate) fn scheme(&self) -> http::uri::Scheme {
        if self.tls.is_some() {
            http::uri::Scheme::HTTPS
        } else {
            http::uri::Scheme::HTTP
        }
    }

    /// `host[:port]` as the config wrote it.
    pub(crate) fn authority(&self) -> &Authority {
        &self.authority
    }

    fn lock(&self) -> MutexGuard<'_, Pool> {
        // The pool is a list of senders: a panic elsewhere cannot leave it inconsistent.
        self.pool.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sends `req` (an absolute URI, as the data plane builds it) on a pooled or new
    /// connection and returns the response head, with the HTTP/1.1 connection it came on:
    /// keep the lease as long as the body, and drop it with the body.
    pub(crate) async fn round_trip(
        self: &Arc<Self>,
        mut req: Request<RequestBody>,
        deadline: Instant,
    ) -> Result<(Response<Incoming>, Option<Lease>), SendError> {
        if let Some(mut h2) = self.shared_http2() {
            *req.version_mut() = Version::HTTP_2;
            req.headers_mut().remove(header::HOST);
            return match h2.ready().await {
                Ok(()) => h2
                    .send_request(req)
                    .await
                    .map(|resp| (resp, None))
                    .map_err(SendError::Exchange),
                // The shared connection closed meanwhile: a new one replaces it.
                Err(_) => Box::pin(self.send_other(req, deadline)).await,
            };
        }
        if let Some(mut sender) = self.checkout() {
            // `send_pooled`, inline: as its own future it held the request once more, and
            // moving it there cost 1% of the instructions per request.
            let req = self.http1_form(req);
            return match sender.try_send_request(req).await {
                Ok(resp) => Ok((resp, Some(self.lend(sender)))),
                Err(err) => Box::pin(self.unsent(err, deadline)).await,
            };
        }
        // `send_other` boxes the connect path (DNS, TCP, TLS, handshake) and the wait at the
        // limit: they are the cold ones, and inline they would make every request's future
        // ~12 KB, moved into its box on every request.
        self.send_other(req, deadline).await
    }

    /// Sends on a pooled connection.
    async fn send_pooled(
        self: &Arc<Self>,
        mut sender: http1::SendRequest<RequestBody>,
        req: Request<RequestBody>,
        deadline: Instant,
    ) -> Result<(Response<Incoming>, Option<Lease>), SendError> {
        let req = self.http1_form(req);
        match sender.try_send_request(req).await {
            Ok(resp) => Ok((resp, Some(self.lend(sender)))),
            Err(err) => Box::pin(self.unsent(err, deadline)).await,
        }
    }

    /// A pooled connection failed the exchange. When it went away before the request was
    /// written (a keep-alive race with the upstream), another connection gets the request.
    async fn unsent(
        self: &Arc<Self>,
        mut err: hyper::client::conn::TrySendError<Request<RequestBody>>,
        deadline: Instant,
    ) -> Result<(Response<Incoming>, Option<Lease>), SendError> {
        match err.take_message() {
            Some(req) => self.send_other(req, deadline).await,
            None => Err(SendError::Exchange(err.into_error())),
        }
    }

    /// Sends on a new connection when the limit allows, else on the next one free. The
    /// wait is boxed apart from the sending: a request waiting at the limit holds a box of
    /// a few hundred bytes, not one the size of the connect path's future (~12 KB), which
    /// at 2,000 waiting requests was 24 MB.
    async fn send_other(
        self: &Arc<Self>,
        req: Request<RequestBody>,
        deadline: Instant,
    ) -> Result<(Response<Incoming>, Option<Lease>), SendError> {
        let slot = match self.slots.reserve() {
            Some(slot) => slot,
            None => match Box::pin(self.wait_for_connection(deadline)).await? {
                Free::Pooled(sender) => {
                    return Box::pin(self.send_pooled(sender, req, deadline)).await;
                }
                Free::Slot(slot) => slot,
                Free::Shared => return Box::pin(self.round_trip(req, deadline)).await,
            },
        };
        Box::pin(self.send_fresh(req, slot)).await
    }

    /// At the limit: waits for a connection to come back to the pool or for one to close and
    /// free its slot, up to `timeouts.connect` or the request's `deadline`, whichever comes
    /// first. Either way the request is answered as warden's own refusal (`Busy`): cut off by
    /// the request's deadline instead, a wait would end as an upstream timeout and count
    /// against the upstream's health, which never saw the request.
    async fn wait_for_connection(&self, deadline: Instant) -> Result<Free, SendError> {
        if let Some(held) = self.full.due() {
            tracing::warn!(
                upstream = %self.authority,
                limit = self.slots.max,
                held_back = held,
                "every upstream connection of the route is busy: requests wait for one \
                 (limits.max_upstream_per_route)"
            );
        }
        let deadline = deadline.min(Instant::now() + self.connect_timeout);
        loop {
            // Registered before looking, so a connection freed in between still wakes it.
            let freed = self.slots.freed.notified();
            let mut freed = std::pin::pin!(freed);
            freed.as_mut().enable();
            if let Some(sender) = self.checkout() {
                return Ok(Free::Pooled(sender));
            }
            if self.shared_http2().is_some() {
                return Ok(Free::Shared);
            }
            if let Some(slot) = self.slots.reserve() {
                return Ok(Free::Slot(slot));
            }
            // A pooled connection whose last answer hyper is still finishing is ready in a
            // moment, and nothing would say so: wait on it directly.
            if let Some(mut sender) = self.checkout_finishing() {
                match tokio::time::timeout_at(deadline, sender.ready()).await {
                    Ok(Ok(())) => return Ok(Free::Pooled(sender)),
                    Ok(Err(_closed)) => continue,
                    Err(_elapsed) => return Err(SendError::Busy),
                }
            }
            if tokio::time::timeout_at(deadline, freed).await.is_err() {
                return Err(SendError::Busy);
            }
        }
    }

    /// Sends on a new connection, which takes `slot` for as long as it is open.
    async fn send_fresh(
        self: &Arc<Self>,
        mut req: Request<RequestBody>,
        slot: Slot,
    ) -> Result<(Response<Incoming>, Option<Lease>), SendError> {
        match self.connect(slot).await? {
            Connected::Http1(mut sender) => {
                let req = self.http1_form(req);
                let resp = sender
                    .send_request(req)
                    .await
                    .map_err(SendError::Exchange)?;
                Ok((resp, Some(self.lend(sender))))
            }
            Connected::Http2(mut sender) => {
                *req.version_mut() = Version::HTTP_2;
                req.headers_mut().remove(header::HOST);
                self.absolute_form(&mut req);
                // `connect` made it the shared connection already.
                let resp = sender
                    .send_request(req)
                    .await
                    .map_err(SendError::Exchange)?;
                Ok((resp, None))
            }
        }
    }

    fn lend(self: &Arc<Self>, sender: http1::SendRequest<RequestBody>) -> Lease {
        let pool: Arc<dyn GiveBack> = Arc::<Upstream>::clone(self);
        Lease::new(pool, sender)
    }

    /// HTTP/1.1 wants an origin-form target and a `Host` header: the upstream's, in place of
    /// the client's.
    fn http1_form(&self, mut req: Request<RequestBody>) -> Request<RequestBody> {
        let path = req
            .uri()
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/"));
        *req.uri_mut() = Uri::from(path);
        *req.version_mut() = Version::HTTP_11;
        let headers = req.headers_mut();
        match &self.host_field {
            Some(host) => {
                headers.insert(header::HOST, host.clone());
            }
            None => {
                headers.remove(header::HOST);
            }
        }
        req
    }

    /// HTTP/2 wants `:scheme` and `:authority`. A request a pooled HTTP/1.1 connection gave
    /// back unsent is already in origin form, and the new connection may have picked h2 (an
    /// upstream that turned h2 on since): h2 refuses a target without them.
    fn absolute_form(&self, req: &mut Request<RequestBody>) {
        if req.uri().authority().is_some() {
            return;
        }
        let mut parts = req.uri().clone().into_parts();
        parts.scheme = Some(self.scheme());
        parts.authority = Some(self.authority.clone());
        if parts.path_and_query.is_none() {
            parts.path_and_query = Some(PathAndQuery::from_static("/"));
        }
        // Scheme, authority and path are each valid, so the URI is.
        if let Ok(uri) = Uri::from_parts(parts) {
            *req.uri_mut() = uri;
        }
    }

    fn shared_http2(&self) -> Option<http2::SendRequest<RequestBody>> {
        let mut pool = self.lock();
        match &pool.http2 {
            Some(h2) if !h2.is_closed() => Some(h2.clone()),
            Some(_) => {
                pool.http2 = None;
                None
            }
            None => None,
        }
    }

    /// The most recently used ready connection; closed and expired ones met on the way are
    /// dropped. The pool is in the order its connections came back (most recent last), so
    /// the first expired one met means every one before it has expired too.
    fn checkout(&self) -> Option<http1::SendRequest<RequestBody>> {
        let now = Instant::now();
        let mut pool = self.lock();
        let idle = &mut pool.http1;
        let mut at = idle.len();
        while at > 0 {
            at -= 1;
            let pooled = &idle[at];
            if now.saturating_duration_since(pooled.used) > self.idle_timeout {
                idle.drain(..=at);
                return None;
            }
            if pooled.sender.is_closed() {
                idle.remove(at);
                continue;
            }
            if !pooled.sender.is_ready() {
                continue;
            }
            return Some(idle.remove(at).sender);
        }
        None
    }

    /// The most recently used pooled connection that is open but not yet ready: hyper has
    /// not finished with its last answer.
    fn checkout_finishing(&self) -> Option<http1::SendRequest<RequestBody>> {
        let mut pool = self.lock();
        let idle = &mut pool.http1;
        let at = idle.iter().rposition(|p| !p.sender.is_closed())?;
        Some(idle.remove(at).sender)
    }

    /// Keeps a connection whose answer is done with. Past the cap, the connections idle
    /// longest are closed once idle for [`PAST_CAP_GRACE`].
    fn checkin(&self, sender: http1::SendRequest<RequestBody>) {
        if sender.is_closed() || self.max_idle == 0 {
            return;
        }
        {
            let mut pool = self.lock();
            // Read under the lock: the pool stays ordered by return time.
            let now = Instant::now();
            pool.http1.push(Pooled { sender, used: now });
            self.trim(&mut pool.http1, now);
        }
        self.slots.freed.notify_one();
    }

    /// Closes the connections past the cap that have been idle for [`PAST_CAP_GRACE`], the
    /// longest idle first.
    fn trim(&self, idle: &mut Vec<Pooled>, now: Instant) {
        let excess = idle.len().saturating_sub(self.max_idle);
        let stale = idle[..excess]
            .iter()
            .take_while(|p| now.saturating_duration_since(p.used) >= PAST_CAP_GRACE)
            .count();
        idle.drain(..stale);
    }

    /// Closes the connections idle past the timeout, and those past the cap (see
    /// [`Upstream::trim`]); gives back the room a burst made the list grow to. Run by
    /// [`sweep`].
    fn sweep_idle(&self) {
        let now = Instant::now();
        let mut pool = self.lock();
        let idle = &mut pool.http1;
        idle.retain(|p| {
            let expired =
                p.sender.is_ready() && now.saturating_duration_since(p.used) > self.idle_timeout;
            !p.sender.is_closed() && !expired
        });
        self.trim(idle, now);
        if idle.capacity() > 2 * self.max_idle.max(idle.len()) {
            idle.shrink_to(self.max_idle.max(idle.len()));
        }
    }

    /// A new connection: DNS, TCP, TLS and the HTTP handshake, all within
    /// `timeouts.connect`. Its driver holds `slot` until the connection ends.
    async fn connect(&self, slot: Slot) -> Result<Connected, SendError> {
        match tokio::time::timeout(self.connect_timeout, self.connect_or_share(slot)).await {
            Ok(result) => result,
            Err(_) => Err(SendError::ConnectTimeout),
        }
    }

    /// Over TLS, while the upstream may speak h2, one request connects and the others that
    /// need a connection meanwhile wait for its handshake (`negotiate`). A follower that
    /// finds an h2 connection shares it and gives its `slot` back.
    async fn connect_or_share(&self, slot: Slot) -> Result<Connected, SendError> {
        if self.tls.is_none() {
            return self.connect_inner(slot).await;
        }
        match self.negotiation.turn().await {
            Turn::Lead(lead) => {
                // An h2 connection that came up while this request waited for its slot (the
                // followers of the last handshake gave theirs back) is shared, not replaced.
                if let Some(shared) = self.shared_http2() {
                    drop(lead);
                    return Ok(Connected::Http2(shared));
                }
                let connected = self.connect_inner(slot).await;
                match &connected {
                    Ok(Connected::Http2(sender)) => {
                        self.share(sender);
                        lead.settle(Alpn::H2);
                    }
                    Ok(Connected::Http1(_)) => lead.settle(Alpn::Http1),
                    Err(_) => drop(lead),
                }
                connected
            }
            Turn::Followed => match self.shared_http2() {
                Some(shared) => Ok(Connected::Http2(shared)),
                None => self.connect_alone(slot).await,
            },
            Turn::Alone => self.connect_alone(slot).await,
        }
    }

    /// Makes a new h2 connection the route's shared one, and wakes the requests waiting at
    /// the connection limit: each of them can be sent on it now.
    fn share(&self, sender: &http2::SendRequest<RequestBody>) {
        self.lock().http2 = Some(sender.clone());
        self.slots.freed.notify_waiters();
    }

    /// A connect that nobody waits for; what it negotiated still counts.
    async fn connect_alone(&self, slot: Slot) -> Result<Connected, SendError> {
        let connected = self.connect_inner(slot).await;
        match &connected {
            Ok(Connected::Http2(sender)) => {
                self.share(sender);
                self.negotiation.learned(Alpn::H2);
            }
            Ok(Connected::Http1(_)) => self.negotiation.learned(Alpn::Http1),
            Err(_) => {}
        }
        connected
    }

    async fn connect_inner(&self, slot: Slot) -> Result<Connected, SendError> {
        let tcp = self.tcp().await?;
        let Some((connector, name)) = &self.tls else {
            return http1_handshake(TokioIo::new(tcp), slot).await;
        };
        let stream = connector
            .connect(name.clone(), tcp)
            .await
            .map_err(SendError::Tls)?;
        let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
        let io = TokioIo::new(stream);
        if h2 {
            let (sender, conn) = http2::Builder::new(TokioExecutor::new())
                .timer(TokioTimer::new())
                .handshake(io)
                .await
                .map_err(SendError::Handshake)?;
            spawn_driver(conn, slot);
            Ok(Connected::Http2(sender))
        } else {
            http1_handshake(io, slot).await
        }
    }

    async fn tcp(&self) -> Result<TcpStream, SendError> {
        let addrs: Vec<SocketAddr> = match self.host.parse::<std::net::IpAddr>() {
            Ok(ip) => vec![SocketAddr::new(ip, self.port)],
            Err(_) => tokio::net::lookup_host((self.host.as_str(), self.port))
                .await
                .map_err(SendError::Dns)?
                .collect(),
        };
        let mut last = io::Error::new(io::ErrorKind::NotFound, "no address");
        for addr in addrs {
            match TcpStream::connect(addr).await {
                Ok(stream) => {
                    let _ = stream.set_nodelay(true);
                    return Ok(stream);
                }
                Err(err) => last = err,
            }
        }
        Err(SendError::Connect(last))
    }
}

impl GiveBack for Upstream {
    fn give_back(&self, sender: http1::SendRequest<RequestBody>) {
        self.checkin(sender);
    }
}

enum Connected {
    Http1(http1::SendRequest<RequestBody>),
    Http2(http2::SendRequest<RequestBody>),
}

async fn http1_handshake<T>(io: T, slot: Slot) -> Result<Connected, SendError>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (sender, conn) = http1::Builder::new()
        .handshake(io)
        .await
        .map_err(SendError::Handshake)?;
    spawn_driver(conn, slot);
    Ok(Connected::Http1(sender))
}

/// Drives one upstream connection until it closes, holding its `slot` until then; its
/// errors reach the exchange that was using it.
fn spawn_driver<F, E>(conn: F, slot: Slot)
where
    F: Future<Output = Result<(), E>> + Send + 'static,
    E: std::fmt::Display,
{
    tokio::spawn(Driven { conn, _slot: slot });
}

pin_project_lite::pin_project! {
    /// An upstream connection's task. Not an `async move { conn.await }` block: that keeps
    /// the captured connection and the awaited one side by side, twice the size for every
    /// upstream connection open.
    struct Driven<F> {
        #[pin]
        conn: F,
        _slot: Slot,
    }
}

impl<F, E> Future for Driven<F>
where
    F: Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let ended = std::task::ready!(self.project().conn.poll(cx));
        if let Err(err) = ended {
            tracing::trace!(error = %err, "upstream connection ended");
        }
        Poll::Ready(())
    }
}

/// How often idle connections past [`POOL_IDLE_TIMEOUT`] are looked for: a connection is
/// closed at most this long after its timeout. Every half timeout (27.5 s) let one stay
/// open up to 82 s, and decided by chance whether a burst's connections were still held a
/// minute after it.
const SWEEP_EVERY: Duration = Duration::from_secs(5);

/// Closes idle connections past the timeout, every [`SWEEP_EVERY`], for as long as the
/// upstream exists: connections are freed even when no request comes to notice them.
pub(super) fn sweep(upstream: &Arc<Upstream>) {
    let weak: Weak<Upstream> = Arc::downgrade(upstream);
    let every = SWEEP_EVERY.min(upstream.idle_timeout);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tick.tick().await;
            let Some(upstream) = weak.upgrade() else {
                return;
            };
            upstream.sweep_idle();
        }
    });
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use bytes::Bytes;
    use http_body_util::{BodyExt as _, Full};
    use hyper::service::service_fn;
    use tokio::net::TcpListener;
    use tokio::sync::Semaphore;

    use super::*;

    /// A loopback HTTP/1.1 upstream that counts the connections it accepted and those
    /// that are still open; each answer waits for a permit of `gate`.
    struct Counting {
        addr: SocketAddr,
        accepted: Arc<AtomicUsize>,
        open: Arc<AtomicUsize>,
        task: tokio::task::JoinHandle<()>,
    }

    impl Drop for Counting {
        fn drop(&mut self) {
            self.task.abort();
        }
    }

    async fn counting(gate: Arc<Semaphore>) -> Counting {
        counting_holding(gate, Arc::new(Semaphore::new(Semaphore::MAX_PERMITS))).await
    }

    /// A body of one chunk that ends only once `hold` gives a permit: an answer still
    /// streaming.
    struct Held {
        sent: bool,
        ends: Pin<Box<dyn Future<Output = ()> + Send + Sync>>,
    }

    impl hyper::body::Body for Held {
        type Data = Bytes;
        type Error = Infallible;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<hyper::body::Frame<Bytes>, Infallible>>> {
            if !self.sent {
                self.sent = true;
                return Poll::Ready(Some(Ok(hyper::body::Frame::data(Bytes::from_static(b"x")))));
            }
            std::task::ready!(self.ends.as_mut().poll(cx));
            Poll::Ready(None)
        }
    }

    /// As [`counting_holding`], answering everything but `/hold` at once.
    async fn holding(hold: Arc<Semaphore>) -> Counting {
        counting_holding(Arc::new(Semaphore::new(Semaphore::MAX_PERMITS)), hold).await
    }

    /// As [`counting`]; `/hold` is answered at once with a body that ends when `hold` gives
    /// a permit.
    async fn counting_holding(gate: Arc<Semaphore>, hold: Arc<Semaphore>) -> Counting {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let accepted = Arc::new(AtomicUsize::new(0));
        let open = Arc::new(AtomicUsize::new(0));
        let (a, o) = (Arc::clone(&accepted), Arc::clone(&open));
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                a.fetch_add(1, Ordering::SeqCst);
                o.fetch_add(1, Ordering::SeqCst);
                let (o, gate, hold) = (Arc::clone(&o), Arc::clone(&gate), Arc::clone(&hold));
                tokio::spawn(async move {
                    let svc = service_fn(move |req: Request<Incoming>| {
                        let (gate, hold) = (Arc::clone(&gate), Arc::clone(&hold));
                        async move {
                            if req.uri().path() == "/hold" {
                                let ends = Box::pin(async move {
                                    let _permit = hold.acquire().await;
                                });
                                let body = Held { sent: false, ends };
                                return Ok::<_, Infallible>(Response::new(body.boxed()));
                            }
                            let _permit = gate.acquire().await;
                            Ok(Response::new(Full::new(Bytes::from_static(b"ok")).boxed()))
                        }
                    });
                    // No header-read timeout: on paused time its 30 s would close an idle
                    // connection before warden's pool does, hiding when the pool does.
                    let _ = hyper::server::conn::http1::Builder::new()
                        .header_read_timeout(None)
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                    o.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
        Counting {
            addr,
            accepted,
            open,
            task,
        }
    }

    /// A request deadline that never decides.
    fn far() -> Instant {
        Instant::now() + Duration::from_secs(3600)
    }

    fn upstream(addr: SocketAddr, max_idle: usize) -> Arc<Upstream> {
        limited(addr, max_idle, 10_000)
    }

    /// As [`upstream`], opening at most `max_open` connections.
    fn limited(addr: SocketAddr, max_idle: usize, max_open: usize) -> Arc<Upstream> {
        let config = warden_config::zero_config(&warden_config::ZeroConfig {
            listen: "127.0.0.1:0".parse().expect("addr"),
            upstream: format!("http://{addr}"),
            role: warden_config::Role::Api,
            admin: "127.0.0.1:0".parse().expect("addr"),
            token_path: None,
        })
        .expect("config");
        let route = &config.connections[0].routes[0];
        let size = PoolSize {
            idle: max_idle,
            open: max_open,
        };
        Upstream::new(route, size).expect("upstream")
    }

    /// `GET /hold` on `up`: the head of an answer still streaming, and its lease.
    async fn hold(up: &Arc<Upstream>, addr: SocketAddr) -> (Response<Incoming>, Option<Lease>) {
        let mut req = Request::new(RequestBody::empty());
        *req.uri_mut() = format!("http://{addr}/hold").parse().expect("uri");
        let (resp, lease) = up.round_trip(req, far()).await.expect("answer");
        assert_eq!(resp.status(), 200);
        (resp, lease)
    }

    /// At the limit, requests wait for the connections already open instead of opening
    /// more; each gets its answer once one comes back.
    #[tokio::test]
    async fn at_the_limit_requests_wait_for_a_connection_to_come_back() {
        let gate = Arc::new(Semaphore::new(0));
        let server = counting(Arc::clone(&gate)).await;
        let up = limited(server.addr, 64, 2);
        held_burst(&up, &server, &gate, 2).await;
        // Ten answers on two connections (ten connections without the limit).
        assert_eq!(server.accepted.load(Ordering::SeqCst), 2);
        assert_eq!(up.slots.open.load(Ordering::SeqCst), 2);
    }

    /// A request that finds every connection busy for `timeouts.connect` is told so, as
    /// warden's own limit, not as an upstream fault.
    #[tokio::test]
    async fn at_the_limit_a_request_waits_no_longer_than_the_connect_timeout() {
        let hold_gate = Arc::new(Semaphore::new(0));
        let server = holding(Arc::clone(&hold_gate)).await;
        let up = limited(server.addr, 64, 1);
        let streaming = hold(&up, server.addr).await;
        // Paused once connected (see the burst test).
        tokio::time::pause();
        let start = Instant::now();
        let mut req = Request::new(RequestBody::empty());
        *req.uri_mut() = format!("http://{}/x", server.addr).parse().expect("uri");
        let Err(err) = up.round_trip(req, far()).await else {
            panic!("an answer while every connection was busy");
        };
        assert!(matches!(err, SendError::Busy), "{err:?}");
        assert!(err.nothing_sent());
        // What a recovery probe that met it reports: no connection in time, not a refusal.
        assert_eq!(
            crate::upstream::error_kind(&err),
            warden_config::ErrorKind::Timeout
        );
        // The timer's millisecond ticks round up.
        let waited = start.elapsed();
        assert!(
            waited >= up.connect_timeout && waited <= up.connect_timeout + Duration::from_millis(5),
            "waited {waited:?}"
        );
        assert_eq!(server.accepted.load(Ordering::SeqCst), 1);
        drop(streaming);
    }

    /// A wait at the limit that the request's own deadline cuts short (`timeouts.request`
    /// below `timeouts.connect`) is still warden's refusal: the upstream never saw the
    /// request, so it must not count as the upstream timing out.
    #[tokio::test]
    async fn at_the_limit_the_request_deadline_ends_a_wait_as_busy_not_as_a_timeout() {
        let server = holding(Arc::new(Semaphore::new(0))).await;
        let up = limited(server.addr, 64, 1);
        let streaming = hold(&up, server.addr).await;
        tokio::time::pause();
        let start = Instant::now();
        let deadline = start + up.connect_timeout / 4;
        let mut req = Request::new(RequestBody::empty());
        *req.uri_mut() = format!("http://{}/x", server.addr).parse().expect("uri");
        let Err(failure) = up.send(req, false, deadline).await else {
            panic!("an answer while every connection was busy");
        };
        assert!(
            matches!(failure, crate::upstream::send::Failure::Busy),
            "{failure:?}"
        );
        let waited = start.elapsed();
        assert!(
            waited >= up.connect_timeout / 4 && waited < up.connect_timeout,
            "waited {waited:?}"
        );
        assert_eq!(server.accepted.load(Ordering::SeqCst), 1);
        drop(streaming);
    }

    /// A connection that closes frees its place for a request waiting at the limit.
    #[tokio::test]
    async fn a_connection_that_closes_frees_its_place_for_a_waiting_request() {
        let server = holding(Arc::new(Semaphore::new(0))).await;
        let up = limited(server.addr, 64, 1);
        let streaming = hold(&up, server.addr).await;
        let waiting = {
            let up = Arc::clone(&up);
            let addr = server.addr;
            tokio::spawn(async move { get(&up, addr).await })
        };
        tokio::task::yield_now().await;
        assert_eq!(server.accepted.load(Ordering::SeqCst), 1);
        // Dropped before its end, the answer's connection cannot be reused: it closes.
        drop(streaming);
        waiting.await.expect("served on a new connection");
        assert_eq!(server.accepted.load(Ordering::SeqCst), 2);
    }

    async fn get(up: &Arc<Upstream>, addr: SocketAddr) {
        let mut req = Request::new(RequestBody::empty());
        *req.uri_mut() = format!("http://{addr}/x").parse().expect("uri");
        let (resp, lease) = up.round_trip(req, far()).await.expect("answer");
        assert_eq!(resp.status(), 200);
        let body = resp.into_body().collect().await.expect("body").to_bytes();
        assert_eq!(body, "ok");
        drop(lease);
    }

    async fn until(what: &str, check: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !check() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::task::yield_now().await;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// A TLS upstream whose ALPN offers `alpn`, and a pool of `open` connections to it.
    async fn tls_pool(
        alpn: &[&[u8]],
        open: usize,
    ) -> (warden_fixtures::Upstream, Arc<Upstream>, tempfile::TempDir) {
        let ca = warden_fixtures::pki::Ca::new("pool test ca");
        let up = warden_fixtures::Upstream::start_tls(
            ca.server_config(&["127.0.0.1"], alpn, None),
            |_req| async { http::Response::new(warden_fixtures::upstream::full("ok")) },
        )
        .await;
        let dir = tempfile::tempdir().expect("dir");
        let ca_file = ca.write(dir.path(), "ca.pem");
        let yaml = warden_fixtures::config::one_route(
            "api",
            &format!("https://127.0.0.1:{}", up.addr.port()),
            &format!("\n      tls: {{ ca_file: {} }}", ca_file.display()),
        );
        let config = warden_config::parse(&yaml, "test").expect("config");
        let pool = Upstream::new(&config.connections[0].routes[0], PoolSize { idle: 4, open })
            .expect("upstream");
        (up, pool, dir)
    }

    /// A request a pooled HTTP/1.1 connection gave back unsent is in origin form; when the
    /// new connection's ALPN picks h2, it still goes out.
    #[tokio::test]
    async fn an_origin_form_request_goes_out_on_a_new_h2_connection() {
        let (_up, pool, _dir) = tls_pool(&[b"h2"], 4).await;
        let mut req = Request::new(RequestBody::empty());
        *req.uri_mut() = Uri::from_static("/x");
        let slot = pool.slots.reserve().expect("a free slot");
        let (resp, lease) = pool.send_fresh(req, slot).await.expect("answer");
        assert!(lease.is_none(), "h2 connections are shared, not lent");
        assert_eq!(resp.status(), 200);
        let body = resp.into_body().collect().await.expect("body").to_bytes();
        assert_eq!(body, "ok");
    }

    /// Ten requests at once through `pool`, each to its end; the statuses.
    async fn tls_burst(pool: &Arc<Upstream>) -> Vec<u16> {
        let requests: Vec<_> = (0..10)
            .map(|_| {
                let pool = Arc::clone(pool);
                tokio::spawn(async move {
                    // Absolute, as the service hands requests over.
                    let mut req = Request::new(RequestBody::empty());
                    *req.uri_mut() = format!("https://{}/x", pool.authority)
                        .parse()
                        .expect("uri");
                    let (resp, lease) = pool.round_trip(req, far()).await.expect("answer");
                    let status = resp.status().as_u16();
                    resp.into_body().collect().await.expect("body");
                    drop(lease);
                    status
                })
            })
            .collect();
        let mut statuses = Vec::new();
        for request in requests {
            statuses.push(request.await.expect("request"));
        }
        statuses
    }

    /// Requests that need a connection while an h2 upstream has none share the one the first
    /// of them opens, instead of each opening its own (`negotiate`).
    #[tokio::test]
    async fn a_burst_on_a_cold_h2_upstream_opens_one_connection() {
        let (up, pool, _dir) = tls_pool(&[b"h2"], 64).await;
        assert_eq!(tls_burst(&pool).await, [200; 10]);
        assert_eq!(up.accepted(), 1, "one TLS handshake for ten requests");
    }

    /// A burst larger than the route's limit: the requests that waited for a slot find the
    /// shared connection too, instead of leading new handshakes.
    #[tokio::test]
    async fn a_burst_past_the_limit_on_a_cold_h2_upstream_still_opens_one_connection() {
        let (up, pool, _dir) = tls_pool(&[b"h2"], 4).await;
        assert_eq!(tls_burst(&pool).await, [200; 10]);
        assert_eq!(up.accepted(), 1, "one TLS handshake for ten requests");
    }

    /// At a limit of one, requests that wait for the only slot while the h2 connection comes
    /// up are sent on it, not refused as busy.
    #[tokio::test]
    async fn at_a_limit_of_one_an_h2_upstream_serves_a_burst() {
        let (up, pool, _dir) = tls_pool(&[b"h2"], 1).await;
        assert_eq!(tls_burst(&pool).await, [200; 10]);
        assert_eq!(up.accepted(), 1);
    }

    /// Over HTTP/1.1 each request in flight needs its own connection: after the first
    /// handshake said so, connects do not wait for each other.
    #[tokio::test]
    async fn a_burst_on_a_cold_http1_tls_upstream_connects_without_waiting_after_the_first() {
        let (up, pool, _dir) = tls_pool(&[b"http/1.1"], 64).await;
        assert_eq!(tls_burst(&pool).await, [200; 10]);
        assert!(up.accepted() >= 1);
        assert!(matches!(
            pool.negotiation.turn().await,
            super::super::negotiate::Turn::Alone
        ));
    }

    #[tokio::test]
    async fn sequential_requests_share_one_connection() {
        let server = counting(Arc::new(Semaphore::new(Semaphore::MAX_PERMITS))).await;
        let up = upstream(server.addr, 64);
        for _ in 0..20 {
            get(&up, server.addr).await;
        }
        assert_eq!(server.accepted.load(Ordering::SeqCst), 1);
    }

    /// Ten requests at once through `up`, each answer held until all ten arrived.
    fn burst(up: &Arc<Upstream>, addr: SocketAddr) -> Vec<tokio::task::JoinHandle<()>> {
        (0..10)
            .map(|_| {
                let up = Arc::clone(up);
                tokio::spawn(async move { get(&up, addr).await })
            })
            .collect()
    }

    /// A [`burst`] whose answers `gate` holds until the upstream has accepted `connections`
    /// connections; returns once every answer has arrived.
    async fn held_burst(
        up: &Arc<Upstream>,
        server: &Counting,
        gate: &Semaphore,
        connections: usize,
    ) {
        let requests = burst(up, server.addr);
        until("the connections", || {
            server.accepted.load(Ordering::SeqCst) == connections
        })
        .await;
        gate.add_permits(Semaphore::MAX_PERMITS / 2);
        for request in requests {
            request.await.expect("request");
        }
    }

    /// The cap is on idle connections: a burst past it keeps its connections for the
    /// requests that come right after, and once they have been idle a while no more than
    /// the cap stay open.
    #[tokio::test]
    async fn a_burst_past_the_cap_reuses_its_connections_then_leaves_the_cap_open() {
        let gate = Arc::new(Semaphore::new(0));
        let server = counting(Arc::clone(&gate)).await;
        let up = upstream(server.addr, 3);
        held_burst(&up, &server, &gate, 10).await;
        assert_eq!(up.lock().http1.len(), 10, "all ten back in the pool");
        // Ten more at once, right after: the same ten connections serve them (three when
        // the ones past the cap closed as they came back: seven new connections).
        for request in burst(&up, server.addr) {
            request.await.expect("request");
        }
        assert_eq!(
            server.accepted.load(Ordering::SeqCst),
            10,
            "pooled ones reused"
        );
        // Idle for the grace, the seven past the cap close; the three most recent stay.
        // Time is paused only now: paused, a park jumps to the next timer, which while
        // connecting is the connect timeout.
        tokio::time::pause();
        tokio::time::advance(PAST_CAP_GRACE).await;
        up.sweep_idle();
        assert_eq!(up.lock().http1.len(), 3);
        until("seven to close", || server.open.load(Ordering::SeqCst) == 3).await;
        for _ in 0..5 {
            get(&up, server.addr).await;
        }
        assert_eq!(
            server.accepted.load(Ordering::SeqCst),
            10,
            "pooled ones reused"
        );
    }

    #[tokio::test]
    async fn a_cap_of_zero_keeps_no_connection() {
        let server = counting(Arc::new(Semaphore::new(Semaphore::MAX_PERMITS))).await;
        let up = upstream(server.addr, 0);
        for _ in 0..3 {
            get(&up, server.addr).await;
        }
        assert_eq!(server.accepted.load(Ordering::SeqCst), 3);
        assert!(up.lock().http1.is_empty());
        until("all to close", || server.open.load(Ordering::SeqCst) == 0).await;
    }

    /// Connections still streaming an answer are not idle: they neither count against the
    /// cap nor push the next requests onto connections of their own.
    #[tokio::test]
    async fn answers_still_streaming_leave_the_pool_to_idle_connections() {
        let hold = Arc::new(Semaphore::new(0));
        let server = holding(Arc::clone(&hold)).await;
        let up = upstream(server.addr, 2);
        let mut streaming = Vec::new();
        for _ in 0..2 {
            let mut req = Request::new(RequestBody::empty());
            *req.uri_mut() = format!("http://{}/hold", server.addr).parse().expect("uri");
            let (resp, lease) = up.round_trip(req, far()).await.expect("answer");
            assert_eq!(resp.status(), 200);
            streaming.push((resp, lease));
        }
        for _ in 0..5 {
            get(&up, server.addr).await;
        }
        // Two connections streaming, and one the five requests took turns on (seven when
        // the streaming ones filled the pool: one connection per request).
        assert_eq!(server.accepted.load(Ordering::SeqCst), 3);
        hold.add_permits(2);
        for (resp, lease) in streaming {
            let body = resp.into_body().collect().await.expect("body").to_bytes();
            assert_eq!(body, "x");
            drop(lease);
        }
        // Back in the pool as their answers ended; past the cap of two idle, one closes
        // once idle for the grace.
        assert_eq!(up.lock().http1.len(), 3);
        tokio::time::pause();
        tokio::time::advance(PAST_CAP_GRACE).await;
        up.sweep_idle();
        assert_eq!(up.lock().http1.len(), 2);
        until("one past the cap to close", || {
            server.open.load(Ordering::SeqCst) == 2
        })
        .await;
    }

    /// A burst's connections are gone a little after the idle timeout, not up to half a
    /// timeout later.
    #[tokio::test]
    async fn the_sweeper_closes_an_idle_connection_soon_after_its_timeout() {
        let server = counting(Arc::new(Semaphore::new(Semaphore::MAX_PERMITS))).await;
        let up = upstream(server.addr, 64);
        sweep(&up);
        get(&up, server.addr).await;
        assert_eq!(up.lock().http1.len(), 1);
        // Paused once connected (see the burst test).
        tokio::time::pause();
        tokio::time::sleep(POOL_IDLE_TIMEOUT + SWEEP_EVERY + Duration::from_secs(1)).await;
        assert!(up.lock().http1.is_empty(), "still pooled");
        until("the connection to close", || {
            server.open.load(Ordering::SeqCst) == 0
        })
        .await;
    }

    #[tokio::test]
    async fn the_sweep_closes_connections_idle_past_the_timeout() {
        let server = counting(Arc::new(Semaphore::new(Semaphore::MAX_PERMITS))).await;
        let mut up = upstream(server.addr, 64);
        Arc::get_mut(&mut up).expect("sole owner").idle_timeout = Duration::ZERO;
        get(&up, server.addr).await;
        until("the answer to end", || {
            up.lock().http1.iter().any(|p| p.sender.is_ready())
        })
        .await;
        assert_eq!(server.open.load(Ordering::SeqCst), 1);
        up.sweep_idle();
        assert!(up.lock().http1.is_empty());
        until("the idle connection to close", || {
            server.open.load(Ordering::SeqCst) == 0
        })
        .await;
    }
}
