//! The pooled client that carries one route's requests to its upstream.

use std::error::Error as StdError;
use std::io;

use hyper_rustls::{FixedServerNameResolver, HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rustls::pki_types::ServerName;
use warden_config::{ErrorKind, Route, Scheme};

use crate::body::RequestBody;
use crate::tls::{self, TlsError};

pub type UpstreamClient = Client<HttpsConnector<HttpConnector>, RequestBody>;

/// How long an idle pooled connection is kept; below the usual 60–120 s server keep-alive
/// so warden closes first and rarely races an upstream that is closing the same socket.
const POOL_IDLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(55);

pub fn client(route: &Route) -> Result<UpstreamClient, TlsError> {
    let https = route.upstream.scheme == Scheme::Https;
    let tls = tls::client_config(&route.tls, https)?;

    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(route.timeouts.connect));

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
    let connector = builder.enable_all_versions().wrap_connector(http);

    Ok(Client::builder(TokioExecutor::new())
        .timer(TokioTimer::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(POOL_IDLE_TIMEOUT)
        .build(connector))
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
