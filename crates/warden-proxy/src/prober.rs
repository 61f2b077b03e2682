//! Background recovery of open circuits (SPEC §5): each open route is probed off the
//! request path, with exponential backoff and jitter, at most `max_concurrent_probes` in
//! flight proxy-wide; the others wait their turn and none is dropped.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use http::uri::PathAndQuery;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use warden_config::{ErrorKind, Role};
use warden_health::ProbeOutcome;

use crate::health::{self, ConnHealth};
use crate::jitter;
use crate::service::RouteCtx;

/// One route the prober looks after.
pub(crate) struct ProbeTarget {
    pub health: Arc<ConnHealth>,
    pub role: Role,
    pub route: Arc<RouteCtx>,
    pub path: PathAndQuery,
    pub schedule: Schedule,
}

/// Delays between probes: `interval`, doubling to `max_interval`, each drawn with equal
/// jitter (between half and all of it).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Schedule {
    pub interval: Duration,
    pub max_interval: Duration,
}

impl Schedule {
    /// The un-jittered delay before probe number `attempt` (0-based) of one outage.
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempt.min(31));
        self.interval.saturating_mul(factor).min(self.max_interval)
    }
}

/// What a probe learned: an HTTP status, or the network fault that prevented one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ProbeResult {
    pub status: Option<u16>,
    pub error_kind: Option<ErrorKind>,
}

impl ProbeResult {
    /// Any HTTP answer below 500 means the upstream is back.
    pub fn is_ok(&self) -> bool {
        self.status.is_some_and(|s| s < 500)
    }
}

/// Runs one probe loop per target until shutdown; returns when every loop has ended
/// (waiting probes cancelled, in-flight ones finished).
pub(crate) async fn run(
    targets: Vec<ProbeTarget>,
    max_concurrent: usize,
    opened: watch::Receiver<u64>,
    shutdown: watch::Receiver<bool>,
) {
    let permits = Arc::new(Semaphore::new(max_concurrent.max(1)));
    let mut loops = JoinSet::new();
    for target in targets {
        let route = Arc::clone(&target.route);
        let path = target.path.clone();
        loops.spawn(probe_loop(
            target,
            move || {
                let route = Arc::clone(&route);
                let path = path.clone();
                async move { route.probe(path).await }
            },
            Arc::clone(&permits),
            opened.clone(),
            shutdown.clone(),
        ));
    }
    while loops.join_next().await.is_some() {}
}

/// Waits for the target's circuit to open, then probes it until it closes; again and again
/// until shutdown.
pub(crate) async fn probe_loop<P, F>(
    target: ProbeTarget,
    probe: P,
    permits: Arc<Semaphore>,
    mut opened: watch::Receiver<u64>,
    mut shutdown: watch::Receiver<bool>,
) where
    P: Fn() -> F,
    F: Future<Output = ProbeResult>,
{
    let ProbeTarget {
        health,
        role,
        route,
        schedule,
        ..
    } = target;
    loop {
        // The generation is marked seen before the check, so an opening between the
        // check and the wait still wakes us.
        opened.borrow_and_update();
        if !health.is_circuit_open(role) {
            tokio::select! {
                biased;
                _ = stopped(&mut shutdown) => return,
                changed = opened.changed() => if changed.is_err() { return },
            }
            continue;
        }
        let mut attempt = 0u32;
        while health.is_circuit_open(role) {
            let delay = jitter::equal(schedule.ceiling(attempt));
            health.set_next_probe(role, health::now() + delay);
            tokio::select! {
                biased;
                _ = stopped(&mut shutdown) => return,
                () = tokio::time::sleep(delay) => {}
            }
            // A reset may have closed it while we slept.
            if !health.is_circuit_open(role) {
                break;
            }
            let permit = tokio::select! {
                biased;
                _ = stopped(&mut shutdown) => return,
                permit = permits.acquire() => match permit {
                    Ok(permit) => permit,
                    Err(_closed) => return,
                },
            };
            // In flight: shutdown waits for it rather than cancelling it.
            let result = probe().await;
            drop(permit);
            route.metrics().probe(result.is_ok());
            attempt = attempt.saturating_add(1);
            let next_probe = (!result.is_ok()).then(|| health::now() + schedule.ceiling(attempt));
            health.record_probe(
                role,
                ProbeOutcome {
                    status: result.status,
                    error_kind: result.error_kind,
                    next_probe,
                },
            );
            tracing::debug!(
                connection = %health.name,
                role = %role,
                status = result.status,
                error_kind = result.error_kind.map(ErrorKind::as_str),
                attempt,
                "probe"
            );
        }
    }
}

async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}
