//! Real hyper servers on 127.0.0.1:0 that play the upstream, scripted per test. They run on
//! the caller's runtime, so a test on paused time keeps them in step with its clock.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// The body type every scripted handler answers with.
pub type UpBody = BoxBody<Bytes, Infallible>;

/// A whole body from anything that makes bytes.
pub fn full(body: impl Into<Bytes>) -> UpBody {
    Full::new(body.into()).boxed()
}

/// A request as the upstream saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    /// The request method.
    pub method: http::Method,
    /// Path and query, as sent.
    pub target: String,
    /// The HTTP version it came in.
    pub version: http::Version,
    /// Its header fields.
    pub headers: http::HeaderMap,
    /// Its whole body.
    pub body: Bytes,
}

/// A running upstream; stopped (listener and connections) when dropped.
pub struct Upstream {
    /// Where it listens.
    pub addr: SocketAddr,
    /// What [`Upstream::recording`] saw; empty for other handlers.
    pub seen: Arc<Mutex<Vec<Seen>>>,
    accepted: Arc<AtomicUsize>,
    open: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl Upstream {
    /// `http://addr`, for a config's `upstream:`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The requests [`Upstream::recording`] saw so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().expect("seen lock").clone()
    }

    /// TCP connections accepted so far: what a pool that keeps its connections must not
    /// raise.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// TCP connections open now.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }

    /// Serves `handler` over plain HTTP/1.1 and h2c.
    pub async fn start<F, Fut>(handler: F) -> Upstream
    where
        F: Fn(Request<Incoming>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Response<UpBody>> + Send + 'static,
    {
        Self::start_inner(handler, None).await
    }

    /// Serves `handler` over TLS (HTTP/2 or HTTP/1.1 by ALPN, as `tls` offers).
    pub async fn start_tls<F, Fut>(tls: Arc<rustls::ServerConfig>, handler: F) -> Upstream
    where
        F: Fn(Request<Incoming>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Response<UpBody>> + Send + 'static,
    {
        Self::start_inner(handler, Some(tls)).await
    }

    /// Records every request (body read in full) and answers `status` with `body`.
    pub async fn recording(status: u16, body: &'static str) -> Upstream {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&seen);
        let mut up = Self::start(move |req| {
            let log = Arc::clone(&log);
            async move {
                record(&log, req).await;
                json_answer(status, body)
            }
        })
        .await;
        up.seen = seen;
        up
    }

    async fn start_inner<F, Fut>(handler: F, tls: Option<Arc<rustls::ServerConfig>>) -> Upstream
    where
        F: Fn(Request<Incoming>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Response<UpBody>> + Send + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind upstream");
        let addr = listener.local_addr().expect("upstream addr");
        let handler = Arc::new(handler);
        let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
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
                let open = Arc::clone(&o);
                let handler = Arc::clone(&handler);
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req| {
                        let handler = Arc::clone(&handler);
                        async move { Ok::<_, Infallible>(handler(req).await) }
                    });
                    let mut http = auto::Builder::new(TokioExecutor::new());
                    // Room for the tests that send the most fields warden lets through.
                    http.http1().max_headers(1000);
                    match acceptor {
                        Some(acceptor) => {
                            // A failed handshake (the point of some tests) just ends here.
                            if let Ok(tls) = acceptor.accept(stream).await {
                                let _ = http.serve_connection(TokioIo::new(tls), svc).await;
                            }
                        }
                        None => {
                            let _ = http.serve_connection(TokioIo::new(stream), svc).await;
                        }
                    }
                    open.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
        Upstream {
            addr,
            seen: Arc::new(Mutex::new(Vec::new())),
            accepted,
            open,
            task,
        }
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// `status` with a JSON `body`.
pub fn json_answer(status: u16, body: impl Into<Bytes>) -> Response<UpBody> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(full(body))
        .expect("a valid response")
}

/// Reads the whole request and appends it to `log`.
pub async fn record(log: &Mutex<Vec<Seen>>, req: Request<Incoming>) -> Seen {
    let seen = read(req).await;
    log.lock().expect("seen lock").push(seen.clone());
    seen
}

/// Reads the whole request.
pub async fn read(req: Request<Incoming>) -> Seen {
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    Seen {
        method: parts.method,
        target: parts
            .uri
            .path_and_query()
            .map(|p| p.as_str().to_owned())
            .unwrap_or_default(),
        version: parts.version,
        headers: parts.headers,
        body,
    }
}

/// A `Stream` over an mpsc receiver, for upstream bodies written piece by piece.
pub struct RxStream<T>(pub tokio::sync::mpsc::Receiver<T>);

impl<T> futures_core::Stream for RxStream<T> {
    type Item = T;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<T>> {
        self.0.poll_recv(cx)
    }
}

/// An upstream answering a scripted list of (status, JSON body) in order, then `fallback`
/// for ever; the counter says how many requests reached it.
pub async fn scripted(
    script: Vec<(u16, &'static str)>,
    fallback: (u16, &'static str),
) -> (Upstream, Arc<AtomicUsize>) {
    let script = Arc::new(Mutex::new(VecDeque::from(script)));
    let hits = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&hits);
    let up = Upstream::start(move |_req| {
        seen.fetch_add(1, Ordering::SeqCst);
        let (status, body) = script
            .lock()
            .expect("script")
            .pop_front()
            .unwrap_or(fallback);
        async move { json_answer(status, body) }
    })
    .await;
    (up, hits)
}

/// One scripted answer of [`sequence`]: a status and extra header fields, body `{}`.
pub type Reply = (u16, Vec<(&'static str, String)>);

/// Every request a [`sequence`] upstream got, with the time it arrived on tokio's clock
/// (paused or not).
pub type Log = Arc<Mutex<Vec<(Instant, Seen)>>>;

/// An upstream that answers the n-th request (0-based) with `replies[n]`, the last one
/// repeating, and logs every request with its arrival time: the gaps between attempts
/// are the backoff.
pub async fn sequence(replies: Vec<Reply>) -> (Upstream, Log) {
    assert!(!replies.is_empty(), "a sequence needs at least one reply");
    let log: Log = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&log);
    let count = Arc::new(AtomicUsize::new(0));
    let up = Upstream::start(move |req| {
        let seen = Arc::clone(&seen);
        let n = count.fetch_add(1, Ordering::SeqCst);
        let (status, headers) = replies[n.min(replies.len() - 1)].clone();
        async move {
            let arrived = Instant::now();
            let s = read(req).await;
            seen.lock().expect("log").push((arrived, s));
            let mut resp = Response::builder().status(status);
            for (k, v) in headers {
                resp = resp.header(k, v);
            }
            resp.body(full("{}")).expect("a valid response")
        }
    })
    .await;
    (up, log)
}

/// An upstream answering 200 until `down` is set, 503 after; the counter says how many
/// requests other than warden's probes reached it.
pub async fn switchable(down: Arc<AtomicBool>) -> (Upstream, Arc<AtomicUsize>) {
    let requests = Arc::new(AtomicUsize::new(0));
    let r = Arc::clone(&requests);
    let up = Upstream::start(move |req| {
        let probe = req
            .headers()
            .get("user-agent")
            .is_some_and(|ua| ua.as_bytes().starts_with(b"warden-probe"));
        if !probe {
            r.fetch_add(1, Ordering::SeqCst);
        }
        let status = if down.load(Ordering::SeqCst) {
            503
        } else {
            200
        };
        async move {
            Response::builder()
                .status(status)
                .body(full("{}"))
                .expect("a valid response")
        }
    })
    .await;
    (up, requests)
}

/// A raw TCP upstream that reads each request head, writes `answer` as it stands and
/// closes: for answers a well-behaved server library refuses to write (a body cut short,
/// HTTP/1.0). Stopped when dropped.
pub struct Raw {
    /// Where it listens.
    pub addr: SocketAddr,
    hits: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl Raw {
    /// Starts answering every request with `answer`.
    pub async fn start(answer: &'static [u8]) -> Raw {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let hits = Arc::new(AtomicUsize::new(0));
        let h = Arc::clone(&hits);
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else {
                    continue;
                };
                let h = Arc::clone(&h);
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 16 * 1024];
                    let mut seen = Vec::new();
                    while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => seen.extend_from_slice(&buf[..n]),
                        }
                    }
                    h.fetch_add(1, Ordering::SeqCst);
                    let _ = stream.write_all(answer).await;
                    let _ = stream.shutdown().await;
                });
            }
        });
        Raw { addr, hits, task }
    }

    /// `http://addr`, for a config's `upstream:`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Requests whose head it read.
    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

impl Drop for Raw {
    fn drop(&mut self) {
        self.task.abort();
    }
}
