//! HTTP/1 keep-alive that costs a bare socket between requests, not a connection's buffers.
//!
//! hyper gives every HTTP/1 connection an 8 KiB read buffer and an 8 KiB write buffer and
//! keeps both for as long as the connection is open, idle or not; a client pool that keeps
//! thousands of connections open between requests would hold tens of megabytes of empty
//! buffers (nginx frees its buffers between requests). So a connection that goes quiet gives
//! its hyper connection back: once no request has been in progress for [`PARK_AFTER`], the
//! hyper connection is told to finish (`graceful_shutdown`, which closes an idle HTTP/1
//! connection at once) and hands the socket back (`without_shutdown`), with any bytes of a
//! next request it had already read. The socket then waits for the next request's first byte
//! exactly as a new connection waits for its first one, and a new hyper connection is built
//! when it comes. While requests keep coming, one hyper connection serves them all: building
//! one per request cost about an eighth of a proxied request's instructions.
//!
//! Reusing the socket is only safe when hyper has consumed every request whole: the last
//! request's body must have been read to the end (unread body bytes would otherwise be taken
//! for the next request's head). [`ClientBody`] reports that; a response that goes out while
//! its request body is unfinished carries `Connection: close` and the socket closes after it,
//! as does one whose client asked to close or switched protocols.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf as _, Bytes, BytesMut};
use http::header::{CONNECTION, HeaderValue, UPGRADE};
use http::{Method, Request, Response, StatusCode, Version};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::server::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::head::{Session, Sessions};
use crate::idle::{Activity, Tracked};

/// How long an HTTP/1 connection keeps its hyper connection (and its buffers) with no request
/// in progress before it goes back to a bare socket. Long enough that a client sending
/// requests back to back, or several a second, keeps one hyper connection; short enough that
/// a pool of idle keep-alive connections costs sockets, not buffers.
pub const PARK_AFTER: Duration = Duration::from_millis(250);

/// The HTTP/2 connection preface (RFC 9113 §3.4): how a client that speaks HTTP/2 without
/// TLS (prior knowledge) opens.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// The request body as the proxy's service sees it: hyper's body, reporting when it has been
/// read to its end so the socket can carry another request.
pub struct ClientBody {
    inner: Incoming,
    ended: Option<Arc<AtomicBool>>,
}

impl ClientBody {
    /// A body nobody needs to hear the end of (HTTP/2 streams, tests).
    pub fn new(inner: Incoming) -> Self {
        ClientBody { inner, ended: None }
    }

    fn watched(inner: Incoming, ended: Arc<AtomicBool>) -> Self {
        if inner.is_end_stream() {
            ended.store(true, Ordering::Release);
        }
        ClientBody {
            inner,
            ended: Some(ended),
        }
    }

    fn mark_ended(&mut self) {
        if let Some(ended) = self.ended.take() {
            ended.store(true, Ordering::Release);
        }
    }
}

impl std::fmt::Debug for ClientBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientBody")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl Body for ClientBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let frame = std::task::ready!(Pin::new(&mut self.inner).poll_frame(cx));
        match &frame {
            None => self.mark_ended(),
            Some(Ok(_)) if self.inner.is_end_stream() => self.mark_ended(),
            _ => {}
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

/// The hyper builders a client connection is served with; build once per listener.
#[derive(Clone, Debug)]
pub struct Builders {
    http1: http1::Builder,
    http2: http2::Builder<TokioExecutor>,
    /// HTTP/1 sessions open now, which decides whether request heads are copied out of
    /// hyper's read buffer (`head`).
    open: Arc<Sessions>,
    /// HTTP/1 hyper connections built, for tests to see when a socket was parked.
    #[cfg(test)]
    sessions: Arc<std::sync::atomic::AtomicUsize>,
}

impl Builders {
    /// Takes the caller's settings for both protocols. HTTP/1 keep-alive must stay on (the
    /// default): with it off hyper would answer `Connection: close`.
    pub fn new(http1: http1::Builder, http2: http2::Builder<TokioExecutor>) -> Self {
        Builders {
            http1,
            http2,
            open: Arc::default(),
            #[cfg(test)]
            sessions: Arc::default(),
        }
    }
}

/// Serves one client connection (HTTP/1, or HTTP/2 by prior knowledge) until the client
/// closes it, it stays without a request for `idle`, or `shutdown` turns true. The socket is
/// held bare between HTTP/1 requests (see the module docs).
///
/// Everything is taken by value so that a caller can spawn this future as it is: a wrapping
/// `async` block would store the arguments a second time in every waiting connection's task.
/// For the same reason this is not an `async fn`, whose future keeps its arguments twice
/// (as given, and as the body's variables); an `async move` block uses them in place.
#[allow(
    clippy::manual_async_fn,
    reason = "an async fn's future stores its arguments twice"
)]
pub fn serve_parked<S, B>(
    mut stream: TcpStream,
    builders: Arc<Builders>,
    service: S,
    idle: Duration,
    shutdown: CancellationToken,
) -> impl Future<Output = ()>
where
    S: hyper::service::Service<Request<ClientBody>, Response = Response<B>>
        + Clone
        + Send
        + Unpin
        + 'static,
    S::Future: Send + Unpin + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    async move {
        let sniffed = tokio::select! {
            sniffed = tokio::time::timeout(idle, sniff(&mut stream)) => sniffed,
            () = shutdown.cancelled() => return,
        };
        let (protocol, mut prefix) = match sniffed {
            Ok(Ok(Some(found))) => found,
            Ok(Ok(None)) => return,
            Ok(Err(err)) => {
                tracing::debug!(error = %err, "client connection failed before its first request");
                return;
            }
            Err(_) => {
                tracing::debug!(?idle, "closing a client connection that sent nothing");
                return;
            }
        };
        if protocol == Protocol::Http2 {
            Box::pin(serve_h2(
                Rewind::new(prefix, stream),
                &builders,
                service,
                idle,
                &shutdown,
            ))
            .await;
            return;
        }
        // `client_idle` runs from the first byte of the first request, and then from the end of
        // each request.
        let mut deadline = Instant::now() + idle;
        loop {
            let session = Box::pin(serve_session(
                Rewind::new(prefix, stream),
                &builders,
                service.clone(),
                (idle, deadline),
                &shutdown,
            ))
            .await;
            let Some(parked) = session else {
                return;
            };
            (stream, prefix, deadline) = (parked.stream, parked.rest, parked.deadline);
            if shutdown.is_cancelled() {
                return;
            }
            if prefix.is_empty() {
                // Parked: the socket alone waits for the next request's first byte.
                let next = tokio::select! {
                    next = tokio::time::timeout_at(deadline, crate::first_byte(&stream)) => next,
                    () = shutdown.cancelled() => return,
                };
                match next {
                    Ok(Ok(true)) => {}
                    Ok(Ok(false) | Err(_)) => return,
                    Err(_) => {
                        tracing::debug!(?idle, "closing an idle client connection");
                        return;
                    }
                }
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Protocol {
    Http1,
    Http2,
}

/// Tells HTTP/2 by prior knowledge from HTTP/1; `None` when the client closes first. What
/// had to be read to decide is returned to be served.
///
/// The first bytes are peeked, not read: nearly always they decide, and left in the socket
/// they reach hyper in its first read, with the rest of the head. A head handed to hyper in
/// two reads (the sniffed bytes, then the socket) makes it grow its read buffer from 8 to
/// 16 KiB, a buffer the connection then keeps for as long as it stays busy: 32 of the
/// 107 MB warden had allocated at 2,000 busy connections. Only a client whose first segment
/// is a part of the preface (a byte at a time, or an h2 preface split across segments) is
/// read from.
///
/// The 16 KiB had one use: room for the 8 KiB hyper reserves before reading the socket while
/// a request is in flight. Without it that read takes a new 8 KiB block per request, since
/// the request's header values hold the old one. With 64 blocks of a size in jemalloc's
/// thread caches (`src/allocator.rs`) such a block costs about 320 instructions per
/// request at 32 connections, against 2,100 with the default 20 (docs/benchmarks.md, "A read
/// buffer with headroom" and "Peeking again").
async fn sniff(stream: &mut TcpStream) -> io::Result<Option<(Protocol, Bytes)>> {
    let mut first = [0u8; H2_PREFACE.len()];
    let peeked = std::future::poll_fn(|cx| {
        let mut buf = ReadBuf::new(&mut first);
        stream.poll_peek(cx, &mut buf)
    })
    .await?;
    if peeked == 0 {
        return Ok(None);
    }
    if first[..peeked] != H2_PREFACE[..peeked] {
        return Ok(Some((Protocol::Http1, Bytes::new())));
    }
    if peeked == H2_PREFACE.len() {
        return Ok(Some((Protocol::Http2, Bytes::new())));
    }
    let mut read = BytesMut::with_capacity(H2_PREFACE.len());
    loop {
        if stream.read_buf(&mut read).await? == 0 {
            return Ok(None);
        }
        let n = read.len().min(H2_PREFACE.len());
        if read[..n] != H2_PREFACE[..n] {
            return Ok(Some((Protocol::Http1, read.freeze())));
        }
        if n == H2_PREFACE.len() {
            return Ok(Some((Protocol::Http2, read.freeze())));
        }
    }
}

async fn serve_h2<S, B>(
    io: Rewind,
    builders: &Builders,
    service: S,
    idle: Duration,
    shutdown: &CancellationToken,
) where
    S: hyper::service::Service<Request<ClientBody>, Response = Response<B>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let activity = Activity::default();
    let service = Tracked::new(Unwatched(service), activity.clone());
    let conn = builders.http2.serve_connection(TokioIo::new(io), service);
    let mut conn = std::pin::pin!(conn);
    if let Err(err) = crate::serve(conn.as_mut(), &activity, idle, shutdown).await {
        tracing::debug!(error = %err, "HTTP/2 client connection ended with an error");
    }
}

/// A socket handed back by [`serve_session`], and when `client_idle` closes it.
struct Parked {
    stream: TcpStream,
    /// Bytes of a next request hyper had read.
    rest: Bytes,
    deadline: Instant,
}

/// Serves HTTP/1 requests on one hyper connection until none has been in progress for
/// [`PARK_AFTER`]; returns the socket (and any bytes of a next request hyper read ahead) when
/// it may carry another. `idle` is `client_idle`, and `deadline` when it runs out if no request
/// comes.
async fn serve_session<S, B>(
    io: Rewind,
    builders: &Builders,
    service: S,
    (idle, deadline): (Duration, Instant),
    shutdown: &CancellationToken,
) -> Option<Parked>
where
    S: hyper::service::Service<Request<ClientBody>, Response = Response<B>>
        + Send
        + Unpin
        + 'static,
    S::Future: Send + Unpin + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    #[cfg(test)]
    builders.sessions.fetch_add(1, Ordering::SeqCst);
    let turn = Arc::new(Turn::new());
    let activity = Activity::default();
    let service = Tracked::new(
        Watched {
            inner: service,
            turn: Arc::clone(&turn),
            session: builders.open.open(),
        },
        activity.clone(),
    );
    let mut conn = builders.http1.serve_connection(TokioIo::new(io), service);
    // Before any request, a head that never completes (slowloris) meets the deadline; once
    // requests are served, quiet time counts from the end of the last one.
    let quiet = PARK_AFTER.min(deadline.saturating_duration_since(Instant::now()));
    tokio::select! {
        result = std::future::poll_fn(|cx| conn.poll_without_shutdown(cx)) => {
            // hyper ended the connection: the client closed or asked to, or an error.
            if let Err(err) = result {
                tracing::debug!(error = %err, "client connection ended with an error");
            }
            return None;
        }
        () = activity.idle_for(quiet) => {}
        () = shutdown.cancelled() => {
            // The request in flight finishes; the socket is not reused.
            Pin::new(&mut conn).graceful_shutdown();
            let _ = std::future::poll_fn(|cx| conn.poll_without_shutdown(cx)).await;
            return None;
        }
    }
    // Once a request was served, `client_idle` runs from the end of the last one.
    let deadline = activity.last_end().map_or(deadline, |end| end + idle);
    if deadline <= Instant::now() {
        tracing::debug!(?idle, "closing an idle client connection");
        return None;
    }
    if !turn.reusable.load(Ordering::Acquire) || !turn.body_ended.load(Ordering::Acquire) {
        return None;
    }
    // No request in progress: hyper closes at once and hands the socket back.
    Pin::new(&mut conn).graceful_shutdown();
    match tokio::time::timeout(
        PARK_AFTER,
        std::future::poll_fn(|cx| conn.poll_without_shutdown(cx)),
    )
    .await
    {
        Ok(Ok(())) => {}
        Ok(Err(err)) => {
            tracing::debug!(error = %err, "client connection ended with an error");
            return None;
        }
        Err(_) => return None,
    }
    let parts = conn.into_parts();
    let (stream, unread) = parts.io.into_inner().into_parts();
    // Copied out, never kept as they are: hyper's read-ahead is a view into its 8 KiB read
    // buffer (even when empty), and keeping it would keep that buffer while the socket waits.
    let rest = if parts.read_buf.is_empty() && unread.is_empty() {
        Bytes::new()
    } else {
        let mut both = BytesMut::with_capacity(parts.read_buf.len() + unread.len());
        both.extend_from_slice(&parts.read_buf);
        both.extend_from_slice(&unread);
        both.freeze()
    };
    Some(Parked {
        stream,
        rest,
        deadline,
    })
}

/// What the requests of one hyper connection tell about its socket's reuse.
struct Turn {
    /// The last request's body was read to its end.
    body_ended: Arc<AtomicBool>,
    /// Neither side asked to close, and every response went out with its body complete.
    reusable: AtomicBool,
}

impl Turn {
    fn new() -> Self {
        Turn {
            body_ended: Arc::new(AtomicBool::new(true)),
            reusable: AtomicBool::new(true),
        }
    }
}

/// The service of one HTTP/1 request: watches its body's end and decides at the response's
/// head whether the socket can carry another request, telling the client when not.
struct Watched<S> {
    inner: S,
    turn: Arc<Turn>,
    /// Counted among the open sessions for as long as hyper holds this service.
    session: Session,
}

impl<S, B> hyper::service::Service<Request<Incoming>> for Watched<S>
where
    S: hyper::service::Service<Request<ClientBody>, Response = Response<B>>,
    S::Future: Unpin,
{
    type Response = Response<B>;
    type Error = S::Error;
    type Future = WatchedFuture<S::Future>;

    fn call(&self, mut req: Request<Incoming>) -> Self::Future {
        self.session.detach_head(&mut req);
        let wants_more = client_keeps_alive(&req);
        self.turn.body_ended.store(false, Ordering::Release);
        let req = req.map(|body| ClientBody::watched(body, Arc::clone(&self.turn.body_ended)));
        WatchedFuture {
            inner: self.inner.call(req),
            turn: Arc::clone(&self.turn),
            wants_more,
        }
    }
}

/// Whether the client expects the connection to stay open after this request, as hyper
/// decides it: HTTP/1.1 without `Connection: close`, or HTTP/1.0 with `Connection:
/// keep-alive`; and no protocol switch.
fn client_keeps_alive<B>(req: &Request<B>) -> bool {
    let asked = match req.version() {
        Version::HTTP_11 => !has_token(req.headers(), "close"),
        Version::HTTP_10 => has_token(req.headers(), "keep-alive"),
        _ => false,
    };
    asked && req.method() != Method::CONNECT && !req.headers().contains_key(UPGRADE)
}

fn has_close(headers: &http::HeaderMap) -> bool {
    has_token(headers, "close")
}

fn has_token(headers: &http::HeaderMap, token: &str) -> bool {
    headers.get_all(CONNECTION).iter().any(|v| {
        v.to_str()
            .is_ok_and(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    })
}

/// The response future of a [`Watched`] request.
struct WatchedFuture<F> {
    inner: F,
    turn: Arc<Turn>,
    wants_more: bool,
}

impl<F, B, E> Future for WatchedFuture<F>
where
    F: Future<Output = Result<Response<B>, E>> + Unpin,
{
    type Output = Result<Response<B>, E>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut response = std::task::ready!(Pin::new(&mut self.inner).poll(cx))?;
        let body_done = self.turn.body_ended.load(Ordering::Acquire);
        let reusable = self.wants_more
            && body_done
            && response.status() != StatusCode::SWITCHING_PROTOCOLS
            && !has_close(response.headers());
        if !reusable {
            self.turn.reusable.store(false, Ordering::Release);
        }
        if self.wants_more && !reusable && !has_close(response.headers()) {
            // The socket closes after this response: say so, so the client does not send
            // its next request into a closing socket.
            response
                .headers_mut()
                .insert(CONNECTION, HeaderValue::from_static("close"));
        }
        Poll::Ready(Ok(response))
    }
}

/// HTTP/2 streams' bodies, whose end nobody waits for.
#[derive(Clone)]
struct Unwatched<S>(S);

impl<S, B> hyper::service::Service<Request<Incoming>> for Unwatched<S>
where
    S: hyper::service::Service<Request<ClientBody>, Response = Response<B>>,
{
    type Response = Response<B>;
    type Error = S::Error;
    type Future = S::Future;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        self.0.call(req.map(ClientBody::new))
    }
}

/// A socket with bytes already read from it put back in front.
struct Rewind {
    prefix: Bytes,
    inner: TcpStream,
}

impl Rewind {
    fn new(prefix: Bytes, inner: TcpStream) -> Self {
        Rewind { prefix, inner }
    }

    fn into_parts(self) -> (TcpStream, Bytes) {
        (self.inner, self.prefix)
    }
}

impl AsyncRead for Rewind {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            buf.put_slice(&self.prefix[..n]);
            self.prefix.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Rewind {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::net::SocketAddr;
    use std::sync::atomic::AtomicUsize;

    use http_body_util::{BodyExt as _, Empty, Full};
    use tokio::io::AsyncWriteExt as _;
    use tokio::net::TcpListener;

    use super::*;

    type BoxFuture =
        Pin<Box<dyn Future<Output = Result<Response<Full<Bytes>>, Infallible>> + Send>>;

    /// Answers with the path and, when `read_body`, the request body's length; then the query
    /// and the `x-echo` values, when there are any.
    #[derive(Clone)]
    struct Echo {
        read_body: bool,
    }

    impl hyper::service::Service<Request<ClientBody>> for Echo {
        type Response = Response<Full<Bytes>>;
        type Error = Infallible;
        type Future = BoxFuture;

        fn call(&self, req: Request<ClientBody>) -> Self::Future {
            let read_body = self.read_body;
            Box::pin(async move {
                let path = req.uri().path().to_owned();
                let req_query = req.uri().query().map(str::to_owned);
                let echoed: Vec<String> = req
                    .headers()
                    .get_all("x-echo")
                    .iter()
                    .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                    .collect();
                let len = if read_body {
                    req.into_body()
                        .collect()
                        .await
                        .map_or(0, |b| b.to_bytes().len())
                } else {
                    0
                };
                let mut text = format!("{path} {len}");
                if let Some(query) = req_query {
                    text = format!("{text} ?{query}");
                }
                if !echoed.is_empty() {
                    text = format!("{text} {}", echoed.join(","));
                }
                Ok(Response::new(Full::new(Bytes::from(text))))
            })
        }
    }

    struct Server {
        addr: SocketAddr,
        accepted: Arc<AtomicUsize>,
        /// HTTP/1 hyper connections built.
        sessions: Arc<AtomicUsize>,
        /// HTTP/1 hyper connections open now.
        open: Arc<Sessions>,
        _stop: tokio_util::sync::DropGuard,
        task: tokio::task::JoinHandle<()>,
    }

    impl Drop for Server {
        fn drop(&mut self) {
            self.task.abort();
        }
    }

    fn builders() -> Builders {
        let mut h1 = http1::Builder::new();
        h1.timer(hyper_util::rt::TokioTimer::new());
        Builders::new(h1, http2::Builder::new(TokioExecutor::new()))
    }

    async fn start(read_body: bool, idle: Duration) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let shutdown = CancellationToken::new();
        let stop = shutdown.clone().drop_guard();
        let count = Arc::clone(&accepted);
        let builders = Arc::new(builders());
        let sessions = Arc::clone(&builders.sessions);
        let open = Arc::clone(&builders.open);
        let task = tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                count.fetch_add(1, Ordering::SeqCst);
                let builders = Arc::clone(&builders);
                let shutdown = shutdown.clone();
                tokio::spawn(async move {
                    serve_parked(stream, builders, Echo { read_body }, idle, shutdown).await;
                });
            }
        });
        Server {
            addr,
            sessions,
            open,
            accepted,
            _stop: stop,
            task,
        }
    }

    /// Writes `raw` and reads until the server closes or `deadline` passes.
    async fn exchange_raw(addr: SocketAddr, raw: &[u8]) -> String {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream.write_all(raw).await.unwrap();
        let mut out = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut out))
            .await
            .expect("the server closes the connection")
            .unwrap();
        String::from_utf8(out).unwrap()
    }

    #[tokio::test]
    async fn keep_alive_requests_share_one_socket() {
        let server = start(true, Duration::from_secs(60)).await;
        let stream = TcpStream::connect(server.addr).await.unwrap();
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .unwrap();
        let conn = tokio::spawn(conn);
        for i in 0..3 {
            let req = Request::post(format!("/r{i}"))
                .header("host", "x")
                .body(Full::new(Bytes::from(vec![b'a'; 100 * (i + 1)])))
                .unwrap();
            let resp = sender.send_request(req).await.unwrap();
            assert_eq!(resp.status(), 200);
            assert!(
                !has_close(resp.headers()),
                "request {i} closed the connection"
            );
            let body = resp.into_body().collect().await.unwrap().to_bytes();
            assert_eq!(body, format!("/r{i} {}", 100 * (i + 1)));
        }
        assert_eq!(server.accepted.load(Ordering::SeqCst), 1);
        conn.abort();
    }

    /// Past `COPY_ABOVE` open sessions heads are copied out of hyper's buffer (`head`):
    /// what the service gets must be the same request.
    #[tokio::test]
    async fn with_many_sessions_open_a_head_arrives_whole() {
        let server = start(true, Duration::from_secs(60)).await;
        // Each holds a session open: its body never comes.
        let mut held = Vec::new();
        for _ in 0..=crate::head::COPY_ABOVE {
            let mut stream = TcpStream::connect(server.addr).await.unwrap();
            stream
                .write_all(b"POST /hold HTTP/1.1\r\nhost: x\r\ncontent-length: 10\r\n\r\n")
                .await
                .unwrap();
            held.push(stream);
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while server.open.count() <= crate::head::COPY_ABOVE {
            assert!(
                tokio::time::Instant::now() < deadline,
                "sessions did not open"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let answer = exchange_raw(
            server.addr,
            b"GET /a/b?q=1&r=%20 HTTP/1.1\r\nhost: x\r\nx-echo: one\r\nx-empty:\r\n\
              x-echo: two words\r\nconnection: close\r\n\r\n",
        )
        .await;
        assert!(
            answer.ends_with("\r\n\r\n/a/b 0 ?q=1&r=%20 one,two words"),
            "{answer}"
        );
        drop(held);
    }

    /// What stays allocated while a served connection waits for its next request: the hyper
    /// connection (and its buffers) is boxed per session and dropped at parking, so it is not
    /// here.
    #[tokio::test]
    async fn a_parked_connection_is_a_small_task() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let _client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (stream, _) = listener.accept().await.unwrap();
        let fut = serve_parked(
            stream,
            Arc::new(builders()),
            Echo { read_body: false },
            Duration::from_secs(1),
            CancellationToken::new(),
        );
        let size = std::mem::size_of_val(&fut);
        // 792 bytes with `peek().await` and the arguments kept twice.
        assert!(size <= 576, "a parked connection's future is {size} bytes");
    }

    /// A pair of connected loopback sockets: (client, server).
    async fn socket_pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        (client, server)
    }

    /// hyper must get a head in one read: given the sniffed bytes first and the rest after,
    /// it grows its read buffer to 16 KiB for the life of the connection.
    #[tokio::test]
    async fn an_http1_head_is_left_whole_in_the_socket() {
        let (mut client, mut server) = socket_pair().await;
        let head = b"POST /x HTTP/1.1\r\nhost: a\r\ncontent-length: 0\r\n\r\n";
        client.write_all(head).await.unwrap();
        let (protocol, prefix) = sniff(&mut server).await.unwrap().expect("bytes came");
        assert_eq!(protocol, Protocol::Http1);
        assert!(prefix.is_empty(), "{} bytes were taken", prefix.len());
        let mut left = vec![0; head.len()];
        server.read_exact(&mut left).await.unwrap();
        assert_eq!(&left[..], &head[..]);
    }

    #[tokio::test]
    async fn a_whole_h2_preface_is_left_in_the_socket() {
        let (mut client, mut server) = socket_pair().await;
        client.write_all(H2_PREFACE).await.unwrap();
        let (protocol, prefix) = sniff(&mut server).await.unwrap().expect("bytes came");
        assert_eq!(protocol, Protocol::Http2);
        assert!(prefix.is_empty(), "{} bytes were taken", prefix.len());
    }

    /// A first segment that is a part of the preface cannot decide: it is read, and so is
    /// what follows, until it does.
    #[tokio::test]
    async fn a_split_preface_is_read_until_it_decides() {
        for rest in [&H2_PREFACE[8..], &b"ET / HTTP/1.1\r\n\r\n"[..]] {
            let (mut client, mut server) = socket_pair().await;
            let start = if rest.starts_with(b"ET") {
                &b"P"[..]
            } else {
                &H2_PREFACE[..8]
            };
            client.write_all(start).await.unwrap();
            // The server has the first segment before the rest is sent.
            let mut seen = [0u8; 1];
            server.peek(&mut seen).await.unwrap();
            let mut sniffing = Box::pin(sniff(&mut server));
            let first = std::future::poll_fn(|cx| Poll::Ready(sniffing.as_mut().poll(cx))).await;
            assert!(first.is_pending(), "decided on a part of the preface");
            client.write_all(rest).await.unwrap();
            let (protocol, prefix) = sniffing.await.unwrap().expect("bytes came");
            let expected = if rest.starts_with(b"ET") {
                Protocol::Http1
            } else {
                Protocol::Http2
            };
            assert_eq!(protocol, expected);
            assert!(prefix.starts_with(start), "{prefix:?}");
        }
    }

    #[tokio::test]
    async fn a_client_that_closes_at_once_is_none() {
        let (client, mut server) = socket_pair().await;
        drop(client);
        assert!(sniff(&mut server).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn pipelined_requests_are_answered_in_order() {
        let server = start(false, Duration::from_secs(60)).await;
        let out = exchange_raw(
            server.addr,
            b"GET /a HTTP/1.1\r\nhost: x\r\n\r\nGET /b HTTP/1.1\r\nhost: x\r\n\r\nGET /c HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
        )
        .await;
        let a = out.find("/a 0").expect("first answer");
        let b = out.find("/b 0").expect("second answer");
        let c = out.find("/c 0").expect("third answer");
        assert!(a < b && b < c, "{out}");
        assert_eq!(out.matches("HTTP/1.1 200").count(), 3, "{out}");
    }

    #[tokio::test]
    async fn an_unread_body_closes_the_socket_and_says_so() {
        // The service answers without reading the body; the body's bytes must not be taken
        // for a next request's head.
        let server = start(false, Duration::from_secs(60)).await;
        let out = exchange_raw(
            server.addr,
            b"POST /p HTTP/1.1\r\nhost: x\r\ncontent-length: 40\r\n\r\nGET /smuggled HTTP/1.1\r\nhost: x\r\n\r\n",
        )
        .await;
        assert_eq!(out.matches("HTTP/1.1").count(), 1, "{out}");
        assert!(out.contains("connection: close"), "{out}");
        assert!(!out.contains("smuggled"), "{out}");
    }

    #[tokio::test]
    async fn a_read_body_leaves_the_socket_open_for_the_next_request() {
        let server = start(true, Duration::from_secs(60)).await;
        let out = exchange_raw(
            server.addr,
            b"POST /p HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\n\r\nhelloGET /next HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
        )
        .await;
        assert!(out.contains("/p 5"), "{out}");
        assert!(out.contains("/next 0"), "{out}");
        let first = &out[..out.find("/p 5").unwrap()];
        assert!(!first.contains("connection: close"), "{out}");
    }

    #[tokio::test]
    async fn http_1_0_and_close_requests_get_one_answer() {
        let server = start(false, Duration::from_secs(60)).await;
        let out = exchange_raw(server.addr, b"GET /old HTTP/1.0\r\n\r\n").await;
        // read_to_end returned: the server closed after one answer.
        assert_eq!(out.matches("HTTP/1").count(), 1, "{out}");
        assert!(out.contains("/old 0"), "{out}");
        let out = exchange_raw(
            server.addr,
            b"GET /ka HTTP/1.0\r\nconnection: keep-alive\r\n\r\nGET /again HTTP/1.0\r\n\r\n",
        )
        .await;
        assert!(out.contains("/ka 0") && out.contains("/again 0"), "{out}");
        let out = exchange_raw(
            server.addr,
            b"GET /c HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
        )
        .await;
        assert_eq!(out.matches("HTTP/1").count(), 1, "{out}");
        assert!(out.contains("/c 0"), "{out}");
    }

    /// Requests that follow each other closely share one hyper connection (building one per
    /// request cost an eighth of a proxied request); a connection quiet for [`PARK_AFTER`] is
    /// parked, and the next request is served on a new one.
    #[tokio::test(start_paused = true)]
    async fn close_requests_share_a_hyper_connection_and_a_quiet_socket_is_parked() {
        let server = start(false, Duration::from_secs(60)).await;
        let mut stream = TcpStream::connect(server.addr).await.unwrap();
        let mut buf = vec![0u8; 4096];
        for i in 0..3 {
            stream
                .write_all(format!("GET /q{i} HTTP/1.1\r\nhost: x\r\n\r\n").as_bytes())
                .await
                .unwrap();
            let n = stream.read(&mut buf).await.unwrap();
            assert!(String::from_utf8_lossy(&buf[..n]).contains(&format!("/q{i} 0")));
        }
        assert_eq!(server.sessions.load(Ordering::SeqCst), 1);
        tokio::time::sleep(PARK_AFTER + Duration::from_millis(50)).await;
        stream
            .write_all(b"GET /later HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .unwrap();
        let n = stream.read(&mut buf).await.unwrap();
        assert!(String::from_utf8_lossy(&buf[..n]).contains("/later 0"));
        assert_eq!(
            server.sessions.load(Ordering::SeqCst),
            2,
            "the quiet socket was parked and served again"
        );
        assert_eq!(server.accepted.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_parked_socket_is_closed_after_idle() {
        let idle = Duration::from_secs(60);
        let server = start(false, idle).await;
        let mut stream = TcpStream::connect(server.addr).await.unwrap();
        stream
            .write_all(b"GET /a HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .unwrap();
        let mut buf = vec![0u8; 4096];
        let n = stream.read(&mut buf).await.unwrap();
        assert!(String::from_utf8_lossy(&buf[..n]).contains("/a 0"));
        let answered = tokio::time::Instant::now();
        let n = stream.read(&mut buf).await.unwrap();
        assert_eq!(n, 0, "the server closes the idle socket");
        let waited = answered.elapsed();
        assert!(
            waited >= idle && waited < idle + Duration::from_secs(1),
            "closed after {waited:?}"
        );
    }

    #[tokio::test]
    async fn http2_by_prior_knowledge_is_served() {
        let server = start(true, Duration::from_secs(60)).await;
        let stream = TcpStream::connect(server.addr).await.unwrap();
        let (mut sender, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
                .await
                .unwrap();
        let conn = tokio::spawn(conn);
        for i in 0..2 {
            let req = Request::get(format!("http://x/h{i}"))
                .body(Empty::<Bytes>::new())
                .unwrap();
            let resp = sender.send_request(req).await.unwrap();
            let body = resp.into_body().collect().await.unwrap().to_bytes();
            assert_eq!(body, format!("/h{i} 0"));
        }
        assert_eq!(server.accepted.load(Ordering::SeqCst), 1);
        conn.abort();
    }
}
