//! Real hyper servers on 127.0.0.1:0 that play the upstream, scripted per test.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
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

pub type UpBody = BoxBody<Bytes, Infallible>;

pub fn full(body: impl Into<Bytes>) -> UpBody {
    Full::new(body.into()).boxed()
}

/// A request as the upstream saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: http::Method,
    pub target: String,
    pub version: http::Version,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

pub struct Upstream {
    pub addr: SocketAddr,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    task: JoinHandle<()>,
}

impl Upstream {
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().expect("seen lock").clone()
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
                Response::builder()
                    .status(status)
                    .header("content-type", "application/json")
                    .body(full(body))
                    .expect("response")
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
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let handler = Arc::clone(&handler);
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req| {
                        let handler = Arc::clone(&handler);
                        async move { Ok::<_, Infallible>(handler(req).await) }
                    });
                    let http = auto::Builder::new(TokioExecutor::new());
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
                });
            }
        });
        Upstream {
            addr,
            seen: Arc::new(Mutex::new(Vec::new())),
            task,
        }
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Reads the whole request and appends it to `log`.
pub async fn record(log: &Mutex<Vec<Seen>>, req: Request<Incoming>) -> Seen {
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let seen = Seen {
        method: parts.method,
        target: parts
            .uri
            .path_and_query()
            .map(|p| p.as_str().to_owned())
            .unwrap_or_default(),
        version: parts.version,
        headers: parts.headers,
        body,
    };
    log.lock().expect("seen lock").push(seen.clone());
    seen
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
) -> (Upstream, Arc<std::sync::atomic::AtomicUsize>) {
    let script = Arc::new(Mutex::new(std::collections::VecDeque::from(script)));
    let hits = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = Arc::clone(&hits);
    let up = Upstream::start(move |_req| {
        seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let (status, body) = script
            .lock()
            .expect("script")
            .pop_front()
            .unwrap_or(fallback);
        async move {
            Response::builder()
                .status(status)
                .header("content-type", "application/json")
                .body(full(body))
                .expect("response")
        }
    })
    .await;
    (up, hits)
}
