//! The admin listener: liveness, readiness, Prometheus metrics, the connection-health API
//! and the status page that reads it.
#![forbid(unsafe_code)]

mod page;

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use warden_health::{HealthDetail, HealthReport, HealthRow};

/// Where the process is in its life, as `/readyz` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Phase {
    /// Listeners are being bound.
    Starting = 0,
    /// Every listener is bound and serving.
    Ready = 1,
    /// Shutdown began: no new connections, in-flight requests finishing.
    Draining = 2,
}

/// Readiness shared between the process lifecycle and the admin listener.
#[derive(Debug, Default)]
pub struct Readiness(AtomicU8);

impl Readiness {
    /// Called by the process lifecycle as it moves on; `/readyz` answers from the latest
    /// phase on its next request.
    pub fn set(&self, phase: Phase) {
        self.0.store(phase as u8, Ordering::Release);
    }

    /// The phase last set; [`Phase::Starting`] until the first `set`.
    pub fn phase(&self) -> Phase {
        match self.0.load(Ordering::Acquire) {
            1 => Phase::Ready,
            2 => Phase::Draining,
            _ => Phase::Starting,
        }
    }
}

/// The connection-health side of the admin API, implemented by whoever holds the health
/// records (the admin crate knows nothing of the proxy). The rows are warden-health's
/// types, which `warden status` reads back: one definition of the JSON for both sides.
pub trait ConnectionsApi: Send + Sync {
    /// `{"connections":[row, ...]}` (README › Admin listener).
    fn health(&self) -> HealthReport;
    /// One row plus its `events`, newest first; `None` for an unknown name.
    fn connection(&self, name: &str) -> Option<HealthDetail>;
    /// Clears needs_reauth and circuits and records `reset_admin`; the row afterwards, or
    /// `None` for an unknown name.
    fn reset(&self, name: &str) -> Option<HealthRow>;
    /// The effective config, secrets redacted (`GET /api/v1/config`); `None` answers 404.
    fn config(&self) -> Option<serde_json::Value> {
        None
    }
}

/// What the admin endpoints read.
pub struct AdminState {
    /// Shared with the lifecycle that sets it; `/readyz` reads it.
    pub readiness: Arc<Readiness>,
    /// The recorder's handle, rendered on every `GET /metrics`.
    pub metrics: PrometheusHandle,
    /// The records behind `/api/v1/...`; `None` answers those paths with 404, so the
    /// listener can serve probes and metrics without the proxy's health records.
    pub connections: Option<Arc<dyn ConnectionsApi>>,
    /// When set, mutating calls need `Authorization: Bearer <token>`.
    pub token: Option<String>,
}

/// How long an admin connection may go without a request in progress, from accept on: the
/// proxy's default `timeouts.client_idle`, so a silent or slowloris client of the admin
/// port is closed as one of a route's would be.
pub const ADMIN_CLIENT_IDLE: Duration = Duration::from_secs(60);

/// How long the admin listener's requests in flight may take to finish once it stops:
/// admin answers are computed in memory, so only a client that reads slowly takes this long.
const ADMIN_DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// The admin listener, bound but not yet serving, so the caller learns the port (and bind
/// errors) before it reports readiness.
pub struct AdminServer {
    listener: TcpListener,
    state: Arc<AdminState>,
    client_idle: Duration,
}

impl AdminServer {
    /// Binds with warden's listen backlog; nothing is accepted until [`AdminServer::serve`].
    pub async fn bind(addr: SocketAddr, state: AdminState) -> std::io::Result<AdminServer> {
        let listener = warden_net::listen(addr)?;
        Ok(AdminServer {
            listener,
            state: Arc::new(state),
            client_idle: ADMIN_CLIENT_IDLE,
        })
    }

    /// Closes connections after `idle` without a request in progress instead of
    /// [`ADMIN_CLIENT_IDLE`].
    pub fn with_client_idle(mut self, idle: Duration) -> Self {
        self.client_idle = idle;
        self
    }

    /// The bound address, with the real port when `bind` was given port 0.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` is cancelled, then stops accepting and returns once the
    /// requests in flight have been answered and their connections closed (for up to 5 s).
    ///
    /// Heads must arrive within hyper's header-read timeout (30 s from their first byte), and
    /// a connection with no request in progress is closed after `client_idle`.
    pub async fn serve(self, shutdown: CancellationToken) {
        let mut http = auto::Builder::new(TokioExecutor::new());
        http.http1().timer(TokioTimer::new());
        http.http2().timer(TokioTimer::new());
        let http = Arc::new(http);
        let tasks = TaskTracker::new();
        let AdminServer {
            listener,
            state,
            client_idle,
        } = self;
        warden_net::accept_loop(
            listener,
            "admin",
            None,
            &shutdown,
            &tasks,
            |stream, peer| {
                let state = Arc::clone(&state);
                let http = Arc::clone(&http);
                let shutdown = shutdown.clone();
                async move {
                    let activity = warden_net::Activity::default();
                    let service = warden_net::Tracked::new(
                        service_fn(move |req| {
                            let resp = route(&state, &req, peer.ip());
                            async move { Ok::<_, Infallible>(resp) }
                        }),
                        activity.clone(),
                    );
                    let mut conn = Box::pin(http.serve_connection(TokioIo::new(stream), service));
                    if let Err(err) =
                        warden_net::serve(conn.as_mut(), &activity, client_idle, &shutdown).await
                    {
                        tracing::debug!(error = %err, "admin connection ended with an error");
                    }
                }
            },
        )
        .await;
        if !warden_net::drain(&tasks, ADMIN_DRAIN_TIMEOUT).await {
            tracing::warn!(timeout = ?ADMIN_DRAIN_TIMEOUT, "admin requests still in flight; closing them");
        }
    }
}

fn route(state: &AdminState, req: &Request<Incoming>, peer: IpAddr) -> Response<Full<Bytes>> {
    let path = req.uri().path();
    if let Some(rest) = path.strip_prefix("/api/v1/connections/") {
        return connections_api(state, req, rest, peer);
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
    }
    match path {
        "/" => page::status_page(),
        "/healthz" => text(StatusCode::OK, "ok\n"),
        "/readyz" => match state.readiness.phase() {
            Phase::Ready => text(StatusCode::OK, "ready\n"),
            Phase::Starting => text(StatusCode::SERVICE_UNAVAILABLE, "starting\n"),
            Phase::Draining => text(StatusCode::SERVICE_UNAVAILABLE, "draining\n"),
        },
        "/api/v1/config" => match state.connections.as_ref().and_then(|api| api.config()) {
            Some(config) => json(StatusCode::OK, &config),
            None => json_error(StatusCode::NOT_FOUND, "not_found"),
        },
        "/metrics" => {
            let mut resp = Response::new(Full::new(Bytes::from(state.metrics.render())));
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            resp
        }
        _ => text(StatusCode::NOT_FOUND, "not found\n"),
    }
}

fn connections_api(
    state: &AdminState,
    req: &Request<Incoming>,
    rest: &str,
    peer: IpAddr,
) -> Response<Full<Bytes>> {
    let Some(api) = &state.connections else {
        return json_error(StatusCode::NOT_FOUND, "not_found");
    };
    let method = req.method();
    match rest.split_once('/') {
        None if rest == "health" => match *method {
            Method::GET | Method::HEAD => json(StatusCode::OK, &api.health()),
            _ => json_error(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
        },
        None => match *method {
            Method::GET | Method::HEAD => match api.connection(rest) {
                Some(detail) => json(StatusCode::OK, &detail),
                None => json_error(StatusCode::NOT_FOUND, "unknown_connection"),
            },
            _ => json_error(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
        },
        Some((name, "reset")) => {
            if method != Method::POST {
                return json_error(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed");
            }
            // The token is checked before the name, so the API tells nothing about which
            // connections exist to a caller without it.
            if let Some(token) = &state.token
                && !bearer_matches(req, token)
            {
                let mut resp = json_error(StatusCode::UNAUTHORIZED, "unauthorized");
                resp.headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
                return resp;
            }
            if !mutation_allowed(state.token.is_some(), peer) {
                return json_error(StatusCode::FORBIDDEN, "forbidden_without_token");
            }
            match api.reset(name) {
                Some(row) => json(StatusCode::OK, &row),
                None => json_error(StatusCode::NOT_FOUND, "unknown_connection"),
            }
        }
        Some(_) => json_error(StatusCode::NOT_FOUND, "not_found"),
    }
}

/// Whether a mutating call may go ahead once the token (if any) was checked: with a token
/// configured the token decides; without one, only a loopback peer may (like linkerd's
/// admin `/shutdown`), since the admin port may be bound on every interface.
fn mutation_allowed(token_configured: bool, peer: IpAddr) -> bool {
    token_configured || peer.to_canonical().is_loopback()
}

/// Whether the request carries `Authorization: Bearer <token>`, compared in time that
/// does not depend on where the first differing byte is. The scheme name is
/// case-insensitive (RFC 9110 §11.1).
fn bearer_matches(req: &Request<Incoming>, token: &str) -> bool {
    let Some(given) = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer_credentials)
    else {
        return false;
    };
    constant_time_eq(given.trim().as_bytes(), token.as_bytes())
}

/// The credentials of an `Authorization` value with the `Bearer` scheme, in any case.
fn bearer_credentials(value: &str) -> Option<&str> {
    let (scheme, credentials) = value.trim_start().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then_some(credentials)
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    // The length is not secret-dependent enough to hide (tokens have a fixed format); the
    // content is compared without an early exit.
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn json(status: StatusCode, value: &impl serde::Serialize) -> Response<Full<Bytes>> {
    let body = serde_json::to_vec(value).unwrap_or_else(|_| b"{}".to_vec());
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

fn json_error(status: StatusCode, error: &'static str) -> Response<Full<Bytes>> {
    json(status, &serde_json::json!({ "error": error }))
}

fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::{bearer_credentials, constant_time_eq, mutation_allowed};
    use std::net::IpAddr;

    #[test]
    fn reset_without_token_only_from_loopback() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(mutation_allowed(false, ip("127.0.0.1")));
        assert!(mutation_allowed(false, ip("127.9.9.9")));
        assert!(mutation_allowed(false, ip("::1")));
        assert!(mutation_allowed(false, ip("::ffff:127.0.0.1")));
        assert!(!mutation_allowed(false, ip("10.0.0.7")));
        assert!(!mutation_allowed(false, ip("192.168.1.2")));
        assert!(!mutation_allowed(false, ip("::ffff:10.0.0.7")));
        assert!(!mutation_allowed(false, ip("fe80::1")));
        assert!(!mutation_allowed(false, ip("0.0.0.0")));
        // With a token, the token decides (checked before), wherever the caller is.
        assert!(mutation_allowed(true, ip("10.0.0.7")));
    }

    #[test]
    fn bearer_scheme_is_case_insensitive() {
        assert_eq!(bearer_credentials("Bearer abc"), Some("abc"));
        assert_eq!(bearer_credentials("bearer abc"), Some("abc"));
        assert_eq!(bearer_credentials("BEARER abc"), Some("abc"));
        assert_eq!(bearer_credentials("Basic abc"), None);
        assert_eq!(bearer_credentials("Bearerabc"), None);
        assert_eq!(bearer_credentials(""), None);
    }

    #[test]
    fn token_comparison() {
        assert!(constant_time_eq(b"s3cret", b"s3cret"));
        assert!(!constant_time_eq(b"s3cret", b"s3creT"));
        assert!(!constant_time_eq(b"s3cret", b"s3cre"));
        assert!(!constant_time_eq(b"", b"x"));
    }
}
