//! Listeners: one per route, each serving HTTP/1.1 and HTTP/2 to local clients, and their
//! graceful drain.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::HeaderName;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use warden_config::{Config, Role};
use warden_policy::Policy;

use http::uri::PathAndQuery;

use crate::health::HealthHub;
use crate::prober::{self, ProbeTarget, Schedule};
use crate::retry::RetrySlots;
use crate::service::{Classifier, RouteCtx, RouteService};
use crate::tls::TlsError;
use crate::upstream;

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("connections[{connection}].{role}: {source}")]
    Tls {
        connection: String,
        role: Role,
        #[source]
        source: TlsError,
    },
    #[error("policy.rules: {0}")]
    Policy(#[from] warden_policy::PolicyError),
    #[error("connections[{connection}].{role}.listen: cannot listen on {addr}: {source}")]
    Bind {
        connection: String,
        role: Role,
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// A bound listener's address, as the OS assigned it (port 0 in the config gets a real one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BoundRoute {
    pub connection: String,
    pub role: Role,
    pub addr: SocketAddr,
}

/// Every route's listener, bound and ready to serve.
pub struct Proxy {
    routes: Vec<(TcpListener, Arc<RouteCtx>)>,
    http: auto::Builder<TokioExecutor>,
    health: Arc<HealthHub>,
    probes: Vec<ProbeTarget>,
    max_concurrent_probes: usize,
}

impl Proxy {
    /// Builds every route (TLS material is read here, so bad files fail before any socket is
    /// bound) and then binds every listener.
    pub async fn bind(config: &Config) -> Result<Proxy, ProxyError> {
        let classifier = Classifier {
            policy: Arc::new(Policy::compile(&config.policy.rules)?),
            watched_request_headers: watched_request_headers(config),
            jsonrpc_rules: config
                .policy
                .rules
                .iter()
                .any(|r| r.when.jsonrpc_error.is_some()),
        };
        let health = HealthHub::new(config);
        let retry_slots = RetrySlots::new(config.limits.max_concurrent_retries);
        let mut ctxs = Vec::new();
        let mut probes = Vec::new();
        for (conn, route) in config.routes() {
            let client = upstream::client(route).map_err(|source| ProxyError::Tls {
                connection: conn.name.clone(),
                role: route.role,
                source,
            })?;
            let conn_health = health
                .get(&conn.name)
                .map(Arc::clone)
                .expect("the hub has a record for every configured connection");
            let ctx = Arc::new(RouteCtx::new(
                conn,
                route,
                client,
                &config.limits,
                &classifier,
                Arc::clone(&conn_health),
                Arc::clone(&retry_slots),
            ));
            probes.push(ProbeTarget {
                health: conn_health,
                role: route.role,
                route: Arc::clone(&ctx),
                path: PathAndQuery::from_maybe_shared(route.circuit.probe.path.clone())
                    .unwrap_or_else(|_| PathAndQuery::from_static("/")),
                schedule: Schedule {
                    interval: route.circuit.probe.interval,
                    max_interval: route.circuit.probe.max_interval,
                },
            });
            ctxs.push(ctx);
        }
        let mut routes = Vec::with_capacity(ctxs.len());
        for ctx in ctxs {
            let listener =
                TcpListener::bind(ctx.listen)
                    .await
                    .map_err(|source| ProxyError::Bind {
                        connection: ctx.connection.clone(),
                        role: ctx.role,
                        addr: ctx.listen,
                        source,
                    })?;
            routes.push((listener, ctx));
        }
        Ok(Proxy {
            routes,
            http: server_builder(config.limits.max_header_bytes),
            health,
            probes,
            max_concurrent_probes: config.limits.max_concurrent_probes,
        })
    }

    /// The connections' health, for the admin API.
    pub fn health(&self) -> Arc<HealthHub> {
        Arc::clone(&self.health)
    }

    pub fn bound(&self) -> Vec<BoundRoute> {
        self.routes
            .iter()
            .filter_map(|(l, ctx)| {
                Some(BoundRoute {
                    connection: ctx.connection.clone(),
                    role: ctx.role,
                    addr: l.local_addr().ok()?,
                })
            })
            .collect()
    }

    /// Serves until `shutdown` turns true, then stops accepting, lets in-flight requests
    /// finish for up to `drain_timeout` and returns whether they all did.
    pub async fn serve(self, mut shutdown: watch::Receiver<bool>, drain_timeout: Duration) -> bool {
        // Every connection task holds a clone of `open`; when the last is gone, `recv`
        // returns None and the drain is complete.
        let (open, mut all_closed) = mpsc::channel::<()>(1);
        let prober = tokio::spawn(prober::run(
            self.probes,
            self.max_concurrent_probes,
            self.health.circuit_openings(),
            shutdown.clone(),
        ));
        let http = Arc::new(self.http);
        let mut accept_loops = JoinSet::new();
        for (listener, ctx) in self.routes {
            accept_loops.spawn(accept_loop(
                listener,
                ctx,
                Arc::clone(&http),
                open.clone(),
                shutdown.clone(),
            ));
        }
        drop(open);
        // A dropped sender counts as the signal too: nobody is left to stop us otherwise.
        stopped(&mut shutdown).await;
        // The listeners close with their loops, so new connections are refused from here.
        while accept_loops.join_next().await.is_some() {}

        tracing::info!(timeout = ?drain_timeout, "draining in-flight requests");
        let drain = async {
            all_closed.recv().await;
            // Waiting probes were cancelled by the signal; in-flight ones finish.
            let _ = prober.await;
        };
        match tokio::time::timeout(drain_timeout, drain).await {
            Ok(()) => true,
            Err(_) => {
                tracing::warn!(timeout = ?drain_timeout, "drain timeout reached; closing the remaining connections");
                false
            }
        }
    }
}

fn server_builder(max_header_bytes: usize) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        // hyper answers 431 itself when a head outgrows its read buffer; it refuses buffers
        // below 8 KiB, and smaller limits are enforced on the parsed head instead.
        .max_buf_size(max_header_bytes.max(8192));
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(max_header_bytes).unwrap_or(u32::MAX));
    builder
}

async fn accept_loop(
    listener: TcpListener,
    ctx: Arc<RouteCtx>,
    http: Arc<auto::Builder<TokioExecutor>>,
    open: mpsc::Sender<()>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let accepted = tokio::select! {
            biased;
            _ = stopped(&mut shutdown) => return,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(pair) => pair,
            Err(err) => {
                // Out of descriptors or memory: pausing beats a hot loop of failed accepts.
                tracing::warn!(connection = %ctx.connection, role = %ctx.role, error = %err, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let service = RouteService::new(Arc::clone(&ctx), peer);
        let conn = http
            .serve_connection(TokioIo::new(stream), service)
            .into_owned();
        let open = open.clone();
        let mut shutdown = shutdown.clone();
        tokio::spawn(async move {
            let mut conn = std::pin::pin!(conn);
            let result = tokio::select! {
                result = conn.as_mut() => result,
                _ = stopped(&mut shutdown) => {
                    // Finish the request in flight, then close (HTTP/2: GOAWAY).
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(err) = result {
                tracing::debug!(%peer, error = %err, "client connection ended with an error");
            }
            drop(open);
        });
    }
}

/// Resolves once shutdown is asked for, or once nobody is left who could ask.
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

/// The request headers classification may need after the request has gone upstream:
/// `mcp-session-id` (SPEC §4: a 404 with it means the session expired) and whatever
/// `request_header` rules name.
fn watched_request_headers(config: &Config) -> Arc<[HeaderName]> {
    let mut names = vec![HeaderName::from_static("mcp-session-id")];
    for rule in &config.policy.rules {
        for (name, _) in &rule.when.request_header {
            if let Ok(name) = HeaderName::from_bytes(name.as_bytes())
                && !names.contains(&name)
            {
                names.push(name);
            }
        }
    }
    names.into()
}
