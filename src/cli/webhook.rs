//! `warden webhook`: a mutating admission webhook that injects the warden sidecar into Pods
//! as they are created, the way Linkerd and Istio inject theirs.
//!
//! HTTPS only (the API server insists), HTTP/1.1 and HTTP/2. The certificate files are
//! re-read when they change, so a rotation by cert-manager needs no restart. On SIGTERM
//! `/readyz` turns 503 first and the listener stays open for `--drain-delay`, so the API
//! server's calls that were already routed here are still answered while the endpoint is
//! being removed.

mod admission;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context as _;
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use self::admission::{Reply, Scope};
use super::inject::sidecar::SidecarArgs;

/// The API server sends at most a few MiB per object; anything larger is not a review.
const MAX_BODY_BYTES: usize = 8 * 1024 * 1024;
/// A client that has not finished its TLS handshake by then is not the API server.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How often a handshake may look at the certificate files' modification times.
const RELOAD_CHECK: Duration = Duration::from_secs(10);
/// Connections still open this long after the listener closed are cut.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(10);
/// A connection with no request in progress is closed after this, as the proxy's
/// `timeouts.client_idle` default does for its clients; the API server reconnects at will.
const CLIENT_IDLE: Duration = warden_admin::ADMIN_CLIENT_IDLE;

#[derive(Debug, clap::Args)]
pub(crate) struct WebhookArgs {
    /// PEM certificate chain for the webhook Service's DNS name.
    #[arg(long)]
    pub tls_cert: PathBuf,

    /// PEM private key of that certificate.
    #[arg(long)]
    pub tls_key: PathBuf,

    /// Address to serve HTTPS on.
    #[arg(long, default_value = "0.0.0.0:8443")]
    pub listen: SocketAddr,

    /// After SIGTERM, keep answering this long (with /readyz at 503) before closing the
    /// listener, while the Service stops routing here.
    #[arg(long, default_value = "5s", value_parser = warden_config::parse_duration)]
    pub drain_delay: Duration,

    #[command(flatten)]
    pub sidecar: SidecarArgs,
}

pub(super) fn webhook(args: WebhookArgs) -> anyhow::Result<ExitCode> {
    args.sidecar.validate()?;
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?
        .block_on(serve(args))
}

struct State {
    sidecar: SidecarArgs,
    draining: AtomicBool,
}

async fn serve(args: WebhookArgs) -> anyhow::Result<ExitCode> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certs = CertFiles::load(&args.tls_cert, &args.tls_key, Arc::clone(&provider))?;
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(certs));
    tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));

    let listener = warden_net::listen(args.listen)
        .with_context(|| format!("--listen: cannot listen on {}", args.listen))?;
    let addr = listener.local_addr().context("listener address")?;
    let state = Arc::new(State {
        sidecar: args.sidecar,
        draining: AtomicBool::new(false),
    });
    tracing::info!(%addr, image = %state.sidecar.image, "webhook listening");

    let mut http = auto::Builder::new(TokioExecutor::new());
    // hyper's header-read timeout (30 s from a head's first byte) needs a timer.
    http.http1().timer(TokioTimer::new());
    http.http2().timer(TokioTimer::new());
    let http = Arc::new(http);
    let stop = CancellationToken::new();
    let tasks = TaskTracker::new();
    // The first signal turns /readyz to 503 at once, and closes the listener once the
    // Service has had `--drain-delay` to stop routing here.
    let drain_delay = args.drain_delay;
    let signalled = async {
        let signal = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        tracing::info!(signal, delay = ?drain_delay, "draining");
        state.draining.store(true, Ordering::Relaxed);
        tokio::time::sleep(drain_delay).await;
        stop.cancel();
    };
    let accepting =
        warden_net::accept_loop(listener, "webhook", None, &stop, &tasks, |tcp, peer| {
            let acceptor = acceptor.clone();
            let http = Arc::clone(&http);
            let state = Arc::clone(&state);
            let stop = stop.clone();
            async move {
                let stream =
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                        Ok(Ok(stream)) => stream,
                        Ok(Err(err)) => {
                            tracing::debug!(%peer, error = %err, "TLS handshake failed");
                            return;
                        }
                        Err(_) => {
                            tracing::debug!(%peer, "TLS handshake timed out");
                            return;
                        }
                    };
                let activity = warden_net::Activity::default();
                let service = warden_net::Tracked::new(
                    service_fn(move |req| {
                        let state = Arc::clone(&state);
                        async move { Ok::<_, Infallible>(route(req, &state).await) }
                    }),
                    activity.clone(),
                );
                let mut conn = Box::pin(http.serve_connection(TokioIo::new(stream), service));
                if let Err(err) =
                    warden_net::serve(conn.as_mut(), &activity, CLIENT_IDLE, &stop).await
                {
                    tracing::debug!(%peer, error = %err, "connection ended with an error");
                }
            }
        });
    tokio::join!(signalled, accepting);
    if !warden_net::drain(&tasks, CLOSE_TIMEOUT).await {
        tracing::warn!("connections still open after {CLOSE_TIMEOUT:?}; closing them");
    }
    tracing::info!("stopped");
    Ok(ExitCode::SUCCESS)
}

async fn route(req: Request<Incoming>, state: &State) -> Response<Full<Bytes>> {
    match (req.method(), req.uri().path()) {
        (&Method::GET, "/healthz") => text(StatusCode::OK, "ok\n"),
        (&Method::GET, "/readyz") if state.draining.load(Ordering::Relaxed) => {
            text(StatusCode::SERVICE_UNAVAILABLE, "draining\n")
        }
        (&Method::GET, "/readyz") => text(StatusCode::OK, "ready\n"),
        (&Method::POST, "/mutate") => mutate(req, state, Scope::Pod).await,
        (&Method::POST, "/mutate/namespace") => mutate(req, state, Scope::Namespace).await,
        (_, "/mutate" | "/mutate/namespace") => {
            let mut resp = text(StatusCode::METHOD_NOT_ALLOWED, "POST an AdmissionReview\n");
            resp.headers_mut()
                .insert(header::ALLOW, header::HeaderValue::from_static("POST"));
            resp
        }
        _ => text(StatusCode::NOT_FOUND, "not found\n"),
    }
}

async fn mutate(req: Request<Incoming>, state: &State, scope: Scope) -> Response<Full<Bytes>> {
    let body = match Limited::new(req.into_body(), MAX_BODY_BYTES)
        .collect()
        .await
    {
        Ok(body) => body.to_bytes(),
        Err(err) if err.is::<http_body_util::LengthLimitError>() => {
            return json(
                StatusCode::PAYLOAD_TOO_LARGE,
                &serde_json::json!({"error": format!("the body is larger than {MAX_BODY_BYTES} bytes")}),
            );
        }
        Err(err) => {
            return json(
                StatusCode::BAD_REQUEST,
                &serde_json::json!({"error": format!("reading the body: {err}")}),
            );
        }
    };
    match admission::review(&body, &state.sidecar, scope) {
        Reply::Review { review, summary } => {
            tracing::info!(?scope, "{summary}");
            json(StatusCode::OK, &review)
        }
        Reply::BadRequest(message) => {
            tracing::warn!("rejected a request: {message}");
            json(
                StatusCode::BAD_REQUEST,
                &serde_json::json!({ "error": message }),
            )
        }
    }
}

fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

fn json(status: StatusCode, value: &serde_json::Value) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(value.to_string())));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    resp
}

/// The serving certificate, re-read when either file's modification time changes (a
/// Secret volume swaps both at once). A new pair that fails to load is logged and the old
/// one kept: a bad rotation must not take the webhook down.
#[derive(Debug)]
struct CertFiles {
    cert: PathBuf,
    key: PathBuf,
    provider: Arc<CryptoProvider>,
    current: Mutex<Current>,
}

#[derive(Debug)]
struct Current {
    key: Arc<CertifiedKey>,
    stamp: [Option<SystemTime>; 2],
    checked: Instant,
}

impl CertFiles {
    fn load(cert: &Path, key: &Path, provider: Arc<CryptoProvider>) -> anyhow::Result<CertFiles> {
        let stamp = stamp(cert, key);
        let loaded = certified_key(cert, key, &provider)?;
        Ok(CertFiles {
            cert: cert.to_owned(),
            key: key.to_owned(),
            provider,
            current: Mutex::new(Current {
                key: loaded,
                stamp,
                checked: Instant::now(),
            }),
        })
    }

    fn current(&self) -> Arc<CertifiedKey> {
        // A poisoned lock only means a panic elsewhere mid-swap; the key inside is whole.
        let mut current = self
            .current
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if current.checked.elapsed() >= RELOAD_CHECK {
            current.checked = Instant::now();
            let stamp = stamp(&self.cert, &self.key);
            if stamp != current.stamp {
                match certified_key(&self.cert, &self.key, &self.provider) {
                    Ok(key) => {
                        current.key = key;
                        current.stamp = stamp;
                        tracing::info!("certificate reloaded");
                    }
                    Err(err) => {
                        tracing::warn!(error = %format!("{err:#}"), "certificate files changed but cannot be loaded; keeping the old certificate");
                    }
                }
            }
        }
        Arc::clone(&current.key)
    }
}

impl ResolvesServerCert for CertFiles {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

fn stamp(cert: &Path, key: &Path) -> [Option<SystemTime>; 2] {
    [cert, key].map(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
}

fn certified_key(
    cert: &Path,
    key: &Path,
    provider: &CryptoProvider,
) -> anyhow::Result<Arc<CertifiedKey>> {
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .with_context(|| format!("--tls-cert: reading {}", cert.display()))?;
    anyhow::ensure!(
        !chain.is_empty(),
        "--tls-cert: {} holds no certificate",
        cert.display()
    );
    let private = PrivateKeyDer::from_pem_file(key)
        .with_context(|| format!("--tls-key: reading {}", key.display()))?;
    let certified = CertifiedKey::from_der(chain, private, provider).with_context(|| {
        format!(
            "--tls-key: {} does not fit the certificate in {}",
            key.display(),
            cert.display()
        )
    })?;
    Ok(Arc::new(certified))
}
