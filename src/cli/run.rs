//! `warden run`: bind, serve, drain on SIGTERM/SIGINT.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use anyhow::Context as _;
use tokio_util::sync::CancellationToken;
use warden_admin::{AdminServer, AdminState, ConnectionsApi, Phase, Readiness};
use warden_config::{Config, Role, ZeroConfig};
use warden_health::{HealthDetail, HealthReport, HealthRow};
use warden_proxy::Proxy;
use warden_proxy::health::HealthHub;

use super::reload;
use crate::{allocator, idle_trim, telemetry};

#[derive(Debug, clap::Args)]
pub(crate) struct RunArgs {
    /// Config file (ignored in zero-config mode).
    #[arg(long, short = 'c', env = "WARDEN_CONFIG", default_value = "proxy.yaml")]
    config: PathBuf,

    /// Zero-config mode: listen here and forward to --upstream.
    #[arg(long, requires = "upstream")]
    listen: Option<SocketAddr>,

    /// Zero-config mode: the upstream origin, `http(s)://host[:port]`.
    #[arg(long, requires = "listen")]
    upstream: Option<String>,

    /// Zero-config mode: the route's role.
    #[arg(long, requires = "listen", default_value = "mcp", value_parser = parse_role)]
    role: Role,

    /// Zero-config mode, --role oauth: the token endpoint's path [default: /token] (Okta:
    /// /oauth2/default/v1/token, Keycloak: /realms/NAME/protocol/openid-connect/token).
    /// Requests to other paths are forwarded but not read as token requests, so a revoked
    /// refresh token on a wrong path goes unnoticed.
    #[arg(long, requires = "listen", value_name = "PATH")]
    token_path: Option<String>,

    /// Zero-config mode: the admin listener.
    #[arg(long, requires = "listen", default_value = "127.0.0.1:9901")]
    admin: SocketAddr,
}

fn parse_role(s: &str) -> Result<Role, String> {
    s.parse()
}

pub(super) fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let config = match (&args.listen, &args.upstream) {
        (Some(listen), Some(upstream)) => warden_config::zero_config(&ZeroConfig {
            listen: *listen,
            upstream: upstream.clone(),
            role: args.role,
            admin: args.admin,
            token_path: args.token_path.clone(),
        })
        .map(|config| (config, None)),
        _ => load(&args.config),
    };
    let (config, loaded) = match config {
        Ok(pair) => pair,
        Err(err) => {
            super::log_invalid(&err);
            return Ok(ExitCode::FAILURE);
        }
    };
    let watched = loaded.map(|fingerprint| reload::Watched {
        path: args.config,
        fingerprint,
    });
    runtime()?.block_on(serve(config, watched))
}

/// One worker thread per CPU this process may run on (taskset and cgroup cpusets count);
/// with a single CPU the current-thread scheduler avoids cross-thread wake-ups entirely.
/// Every 10 s each worker hands its allocator cache back and unused pages are purged
/// (`idle_trim`).
pub(crate) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut builder = if cpus == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(cpus);
        b
    };
    let trim = idle_trim::Trim::new(allocator::trim_calls());
    let on_park = Arc::clone(&trim);
    let runtime = builder
        .enable_all()
        .on_thread_park(move || on_park.on_park())
        .build()
        .context("starting the async runtime")?;
    drop(runtime.spawn(trim.tick(idle_trim::EVERY, cpus)));
    Ok(runtime)
}

/// Reads and validates the config file, and notes what it held, so a change made at any
/// moment after this read is seen by the reloader.
fn load(
    path: &std::path::Path,
) -> Result<(Config, Option<reload::Fingerprint>), warden_config::ConfigError> {
    // Standard input is read once: there is no file to watch for a reload.
    if warden_config::is_stdin(path) {
        return warden_config::load(path).map(|config| (config, None));
    }
    let text = std::fs::read(path).map_err(|source| warden_config::ConfigError::Io {
        path: path.to_owned(),
        source,
    })?;
    let source = String::from_utf8(text.clone()).map_err(|_| warden_config::ConfigError::Io {
        path: path.to_owned(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, "not UTF-8"),
    })?;
    let config = warden_config::parse(&source, &path.display().to_string())?;
    Ok((config, Some(reload::Fingerprint::of(&text))))
}

async fn serve(config: Config, watched: Option<reload::Watched>) -> anyhow::Result<ExitCode> {
    // Handlers go in first: a signal that arrives while starting must start a drain, not
    // kill the process with the default disposition.
    let signals = Signals::install()?;
    let running = launch(&config).await?;
    reload::log_listening(&config, &running.proxy.bound().await);
    for warning in warden_config::warnings(&config) {
        tracing::warn!(key = %warning.path, message = %warning.message, "config warning");
    }

    let drain_timeout = Arc::new(std::sync::Mutex::new(config.shutdown.drain_timeout));
    let (hangups, terminated) = signals.split();
    let reloader = tokio::spawn(reload::watch(reload::Reloader {
        proxy: running.proxy.clone(),
        watched,
        hangups,
        admin: config.admin.clone(),
        drain_timeout: Arc::clone(&drain_timeout),
        stop: running.shutdown.clone(),
        effective: Arc::clone(&running.effective),
    }));

    let signal = terminated.await;
    tracing::info!(signal, "shutting down");
    running.begin_shutdown();
    let _ = reloader.await;
    let timeout = *drain_timeout.lock().unwrap_or_else(|p| p.into_inner());
    running.finish_shutdown(timeout).await;
    Ok(ExitCode::SUCCESS)
}

/// A started warden: the proxy serving and the admin listener up, readiness 200.
pub(crate) struct Running {
    pub proxy: Proxy,
    pub admin_addr: SocketAddr,
    readiness: Arc<Readiness>,
    /// Cancelled when shutdown begins: the proxy's listeners and the reloader stop.
    pub shutdown: CancellationToken,
    /// What `GET /api/v1/config` shows; the reloader replaces it.
    pub effective: Arc<Mutex<serde_json::Value>>,
    /// Stops the admin listener, once the proxy has drained: `/readyz` answers 503
    /// throughout the drain.
    stop_admin: CancellationToken,
    admin_task: tokio::task::JoinHandle<()>,
}

/// Starts metrics, the proxy and the admin listener for `config`.
pub(crate) async fn launch(config: &Config) -> anyhow::Result<Running> {
    let metrics = telemetry::install()?;
    tokio::spawn(telemetry::upkeep(metrics.clone()));

    let token = match &config.admin.token_file {
        Some(path) => Some(read_token(path)?),
        None => None,
    };
    crate::fds::raise_and_check(config)?;
    let shutdown = CancellationToken::new();
    let proxy = Proxy::start(config, shutdown.clone()).await?;

    let readiness = Arc::new(Readiness::default());
    let effective = Arc::new(Mutex::new(warden_config::effective_json(config)));
    let admin = AdminServer::bind(
        config.admin.listen,
        AdminState {
            readiness: Arc::clone(&readiness),
            metrics,
            connections: Some(Arc::new(HealthApi {
                health: proxy.health(),
                effective: Arc::clone(&effective),
            })),
            token,
        },
    )
    .await
    .with_context(|| format!("admin.listen: cannot listen on {}", config.admin.listen))?;
    let admin_addr = admin.local_addr().context("admin listener address")?;

    let stop_admin = CancellationToken::new();
    let admin_task = tokio::spawn(admin.serve(stop_admin.clone()));
    readiness.set(Phase::Ready);
    // Logged once ready: whoever waits for these lines may rely on /readyz saying 200.
    tracing::info!(addr = %admin_addr, "admin listening");
    Ok(Running {
        proxy,
        admin_addr,
        readiness,
        shutdown,
        effective,
        stop_admin,
        admin_task,
    })
}

impl Running {
    /// Readiness flips first so the orchestrator stops routing here while requests drain;
    /// then the listeners close.
    pub(super) fn begin_shutdown(&self) {
        self.readiness.set(Phase::Draining);
        self.shutdown.cancel();
    }

    /// Waits for in-flight requests (up to `drain_timeout`), then stops the admin listener
    /// and lets its own requests in flight finish.
    pub(super) async fn finish_shutdown(self, drain_timeout: std::time::Duration) {
        let drained = self.proxy.drain(drain_timeout).await;
        self.stop_admin.cancel();
        let _ = self.admin_task.await;
        if drained {
            tracing::info!("drained; exiting");
        }
    }
}

/// The admin bearer token: the file's content without surrounding whitespace.
fn read_token(path: &std::path::Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("admin.token_file: cannot read {}", path.display()))?;
    let token = text.trim();
    anyhow::ensure!(
        !token.is_empty(),
        "admin.token_file: {} is empty",
        path.display()
    );
    Ok(token.to_owned())
}

/// The admin API's view of the proxy's health records and of the config it runs.
struct HealthApi {
    health: Arc<HealthHub>,
    effective: Arc<Mutex<serde_json::Value>>,
}

impl ConnectionsApi for HealthApi {
    fn health(&self) -> HealthReport {
        HealthReport {
            connections: self.health.rows(),
        }
    }

    fn connection(&self, name: &str) -> Option<HealthDetail> {
        Some(self.health.get(name)?.detail())
    }

    fn reset(&self, name: &str) -> Option<HealthRow> {
        let row = self.health.get(name)?.reset();
        tracing::info!(connection = name, "reset by admin");
        Some(row)
    }

    fn config(&self) -> Option<serde_json::Value> {
        Some(
            self.effective
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        )
    }
}

/// SIGTERM, SIGINT and SIGHUP, registered before anything else happens.
pub(crate) struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    pub(crate) fn install() -> anyhow::Result<Signals> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Signals {
            term: signal(SignalKind::terminate()).context("installing the SIGTERM handler")?,
            int: signal(SignalKind::interrupt()).context("installing the SIGINT handler")?,
            hup: signal(SignalKind::hangup()).context("installing the SIGHUP handler")?,
        })
    }

    /// SIGHUP for the reloader; a future that resolves on SIGTERM or SIGINT.
    pub(crate) fn split(
        self,
    ) -> (
        tokio::signal::unix::Signal,
        impl std::future::Future<Output = &'static str>,
    ) {
        let Signals {
            mut term,
            mut int,
            hup,
        } = self;
        let terminated = async move {
            tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = int.recv() => "SIGINT",
            }
        };
        (hup, terminated)
    }
}
