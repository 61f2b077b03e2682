//! Hot reload: SIGHUP or a change of the config file rebuilds config and policy off the
//! request path and swaps them in; an invalid file is rejected with every error logged and
//! the running config kept.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use warden_proxy::catalogue;

use metrics::{Counter, counter};
use tokio::signal::unix::Signal;
use tokio_util::sync::CancellationToken;
use warden_config::Admin;
use warden_proxy::Proxy;

/// How often the file is looked at. A content fingerprint is compared rather than inotify
/// events: Kubernetes updates a mounted ConfigMap by swapping a symlink, which file
/// watchers often miss, and a 1 s poll of one small file costs nothing.
const POLL: Duration = Duration::from_secs(1);

/// The config file and what it held when it was last loaded.
pub(super) struct Watched {
    pub path: PathBuf,
    pub fingerprint: Fingerprint,
}

/// A file's length and a hash of its content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Fingerprint(usize, u64);

impl Fingerprint {
    pub(super) fn of(bytes: &[u8]) -> Fingerprint {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        bytes.hash(&mut h);
        Fingerprint(bytes.len(), h.finish())
    }
}

pub(super) struct Reloader {
    pub proxy: Proxy,
    /// None in zero-config mode: nothing to reload.
    pub watched: Option<Watched>,
    pub hangups: Signal,
    /// The admin settings warden started with: they need a restart to change.
    pub admin: Admin,
    pub drain_timeout: Arc<Mutex<Duration>>,
    pub stop: CancellationToken,
    /// What `GET /api/v1/config` shows: replaced when a reload takes effect.
    pub effective: Arc<Mutex<serde_json::Value>>,
}

/// Reloads on SIGHUP at once, and on a file change once the new content has stayed the
/// same for one more poll (an editor's save in several writes is one change).
pub(super) async fn watch(mut r: Reloader) {
    let outcomes = Outcomes::new();
    let stop = r.stop.clone();
    let Some(watched) = r.watched.take() else {
        // Zero-config mode: SIGHUP must not kill the process, and has nothing to reload.
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                Some(()) = r.hangups.recv() => tracing::info!("SIGHUP: no config file to reload"),
            }
        }
    };
    let path = watched.path;
    let mut seen = Some(watched.fingerprint);
    let mut pending = None;
    let mut tick = tokio::time::interval(POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            () = stop.cancelled() => return,
            Some(()) = r.hangups.recv() => {
                tracing::info!(path = %path.display(), "SIGHUP: reloading");
                seen = fingerprint(&path);
                pending = None;
                reload(&r, &path, &outcomes).await;
            }
            _ = tick.tick() => {
                let now = fingerprint(&path);
                if now == seen {
                    pending = None;
                } else if pending == Some(now) {
                    tracing::info!(path = %path.display(), "config file changed: reloading");
                    seen = now;
                    pending = None;
                    reload(&r, &path, &outcomes).await;
                } else {
                    pending = Some(now);
                }
            }
        }
    }
}

async fn reload(r: &Reloader, path: &std::path::Path, outcomes: &Outcomes) {
    let config = match warden_config::load(path) {
        Ok(config) => config,
        Err(err) => {
            for d in err.diagnostics() {
                tracing::error!(
                    line = d.line,
                    column = d.column,
                    key = %d.path,
                    message = %d.message,
                    "config error; keeping the running config"
                );
            }
            if err.diagnostics().is_empty() {
                tracing::error!(error = %err, "config unreadable; keeping the running config");
            }
            outcomes.error.increment(1);
            return;
        }
    };
    if let Err(message) = crate::fds::check_current(&config) {
        tracing::error!(%message, "config refused; keeping the running config");
        outcomes.error.increment(1);
        return;
    }
    if config.admin != r.admin {
        tracing::warn!("admin settings changed: they take effect at the next restart");
    }
    match r.proxy.reload(&config).await {
        Ok(report) => {
            *r.drain_timeout.lock().unwrap_or_else(|p| p.into_inner()) =
                config.shutdown.drain_timeout;
            // The admin settings in force are the ones warden started with.
            let mut shown = config.clone();
            shown.admin = r.admin.clone();
            *r.effective.lock().unwrap_or_else(|p| p.into_inner()) =
                warden_config::effective_json(&shown);
            log_listening(&config, &report.added);
            for gone in &report.removed {
                tracing::info!(connection = %gone.connection, role = %gone.role, addr = %gone.addr, "listener closed");
            }
            tracing::info!(
                added = report.added.len(),
                removed = report.removed.len(),
                kept = report.kept,
                rules = config.policy.rules.len(),
                "config reloaded"
            );
            outcomes.success.increment(1);
        }
        Err(err) => {
            tracing::error!(error = %err, "reload failed; keeping the running config");
            outcomes.error.increment(1);
        }
    }
}

/// `warden_config_reloads_total{result}`, both series present from the start.
struct Outcomes {
    success: Counter,
    error: Counter,
}

impl Outcomes {
    fn new() -> Self {
        Outcomes {
            success: counter!(catalogue::CONFIG_RELOADS.name, "result" => "success"),
            error: counter!(catalogue::CONFIG_RELOADS.name, "result" => "error"),
        }
    }
}

/// The file's fingerprint; None when it cannot be read (a half-done symlink swap), which
/// counts as a change once it is readable again.
fn fingerprint(path: &std::path::Path) -> Option<Fingerprint> {
    std::fs::read(path)
        .ok()
        .map(|bytes| Fingerprint::of(&bytes))
}

/// One `listening` line per route: operators read them, and so do the tests, to learn the
/// ports the OS picked.
pub(crate) fn log_listening(config: &warden_config::Config, bound: &[warden_proxy::BoundRoute]) {
    for (conn, route) in config.routes() {
        let Some(b) = bound
            .iter()
            .find(|b| b.connection == conn.name && b.role == route.role)
        else {
            continue;
        };
        tracing::info!(
            connection = %b.connection,
            role = %b.role,
            addr = %b.addr,
            upstream = %route.upstream,
            "listening"
        );
    }
}
