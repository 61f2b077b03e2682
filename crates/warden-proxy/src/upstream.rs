//! The pooled client that carries one route's requests to its upstream.

use std::error::Error as StdError;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use http::Uri;
use tower::Service;

use hyper_rustls::{FixedServerNameResolver, HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rustls::pki_types::ServerName;
use warden_config::{ErrorKind, Route, Scheme};

use crate::body::RequestBody;
use crate::tls::{self, TlsError};

type BoxError = Box<dyn StdError + Send + Sync>;

pub type UpstreamClient = Client<TimedConnector<HttpsConnector<HttpConnector>>, RequestBody>;

/// How long an idle pooled connection is kept; below the usual 60–120 s server keep-alive
/// so warden closes first and rarely races an upstream that is closing the same socket.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(55);

/// `max_idle` is `limits.max_idle_upstream_per_route`: connections returned to a full pool
/// are closed, so a burst does not leave its peak number of sockets (and their buffers)
/// pooled until the idle timeout.
pub fn client(route: &Route, max_idle: usize) -> Result<UpstreamClient, TlsError> {
    let https = route.upstream.scheme == Scheme::Https;
    let tls = tls::client_config(&route.tls, https)?;

    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);

    let builder = HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http();
    let builder = match &route.tls.server_name {
        Some(name) => {
            let name = ServerName::try_from(name.clone())
                .map_err(|_| TlsError::ServerName(name.clone()))?;
            builder.with_server_name_resolver(FixedServerNameResolver::new(name))
        }
        None => builder,
    };
    let connector = TimedConnector {
        inner: builder.enable_all_versions().wrap_connector(http),
        timeout: route.timeouts.connect,
    };

    Ok(Client::builder(TokioExecutor::new())
        .timer(TokioTimer::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(POOL_IDLE_TIMEOUT)
        .pool_max_idle_per_host(max_idle)
        .build(connector))
}

/// `timeouts.connect` over the whole connection setup, TCP and TLS handshake together:
/// hyper-util's own connect timeout stops at TCP, and a server that accepts but never
/// finishes the handshake must not hold a request until `timeouts.request`.
#[derive(Clone)]
pub struct TimedConnector<C> {
    inner: C,
    timeout: Duration,
}

/// The connection setup took longer than `timeouts.connect`.
#[derive(Debug, thiserror::Error)]
#[error("connect timeout")]
pub struct ConnectTimeout;

impl<C> Service<Uri> for TimedConnector<C>
where
    C: Service<Uri> + Send,
    C::Future: Send + 'static,
    C::Error: Into<BoxError>,
{
    type Response = C::Response;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<C::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let connecting = self.inner.call(uri);
        let timeout = self.timeout;
        Box::pin(async move {
            match tokio::time::timeout(timeout, connecting).await {
                Ok(result) => result.map_err(Into::into),
                Err(_) => Err(Box::new(ConnectTimeout) as BoxError),
            }
        })
    }
}

/// Names the network fault behind a failed exchange by walking the error's causes.
pub fn error_kind(err: &hyper_util::client::legacy::Error) -> ErrorKind {
    let fallback = if err.is_connect() {
        ErrorKind::Connect
    } else {
        ErrorKind::Reset
    };
    let mut cur: Option<&(dyn StdError + 'static)> = Some(err);
    let mut kind = None;
    while let Some(e) = cur {
        if e.downcast_ref::<rustls::Error>().is_some() {
            return ErrorKind::Tls;
        }
        if e.is::<ConnectTimeout>() {
            return ErrorKind::Timeout;
        }
        if let Some(io) = e.downcast_ref::<io::Error>() {
            kind = kind.or(match io.kind() {
                io::ErrorKind::TimedOut => Some(ErrorKind::Timeout),
                io::ErrorKind::ConnectionRefused
                | io::ErrorKind::AddrNotAvailable
                | io::ErrorKind::NetworkUnreachable
                | io::ErrorKind::HostUnreachable => Some(ErrorKind::Connect),
                io::ErrorKind::ConnectionReset
                | io::ErrorKind::ConnectionAborted
                | io::ErrorKind::BrokenPipe
                | io::ErrorKind::UnexpectedEof => Some(ErrorKind::Reset),
                _ => None,
            });
        }
        // hyper-util's resolver failure has no public type; its message is stable.
        if e.to_string() == "dns error" {
            return ErrorKind::Dns;
        }
        if let Some(h) = e.downcast_ref::<hyper::Error>() {
            if h.is_timeout() {
                kind = kind.or(Some(ErrorKind::Timeout));
            } else if h.is_incomplete_message() || h.is_canceled() || h.is_closed() {
                kind = kind.or(Some(ErrorKind::Reset));
            }
        }
        // A wrapping io::Error reports its inner error's source, skipping the inner error
        // itself (where rustls puts its verdict), so step into it explicitly.
        cur = match e.downcast_ref::<io::Error>() {
            Some(io) => io.get_ref().map(|inner| inner as &(dyn StdError + 'static)),
            None => e.source(),
        };
    }
    kind.unwrap_or(fallback)
}
