//! Background recovery of open circuits (README › Connection health): each open route is
//! probed off the request path, with exponential backoff and equal jitter, at most
//! `max_concurrent_probes` in flight proxy-wide; the others wait their turn and none is
//! dropped.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use http::uri::PathAndQuery;
use tokio::sync::{Semaphore, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use warden_config::{ErrorKind, Role, TlsDetail};
use warden_health::ProbeOutcome;

use crate::backoff::Backoff;
use crate::health::{self, HealthHandle};
use crate::metrics::RouteMetrics;
use crate::upstream::{ProbeResult, UpstreamClient};

/// One route the prober looks after.
pub(crate) struct ProbeTarget {
    pub(crate) health: Arc<HealthHandle>,
    pub(crate) role: Role,
    pub(crate) upstream: UpstreamClient,
    /// `timeouts.request`, which bounds each probe.
    pub(crate) timeout: Duration,
    pub(crate) metrics: Arc<RouteMetrics>,
    pub(crate) path: PathAndQuery,
    /// `circuit.probe.interval` doubling to `circuit.probe.max_interval`.
    pub(crate) backoff: Backoff,
}

/// What one probe loop needs besides the probe itself.
pub(crate) struct LoopTarget {
    pub(crate) health: Arc<HealthHandle>,
    pub(crate) role: Role,
    pub(crate) metrics: Arc<RouteMetrics>,
    /// Delay `n` (counted from 0) comes before probe `n` of one outage, drawn with equal
    /// jitter (between half and all of its ceiling).
    pub(crate) backoff: Backoff,
}

/// The proxy-wide probe slots (`limits.max_concurrent_probes`): kept across reloads that
/// keep the count, so probes in flight stay counted.
pub(crate) fn probe_slots(max_concurrent: usize) -> Arc<Semaphore> {
    Arc::new(Semaphore::new(max_concurrent.max(1)))
}

/// Starts one probe loop per target, as tasks of `tasks`, until `stop` is cancelled: then
/// waiting probes end at once and a probe in flight finishes first, so a drain waits for it.
pub(crate) fn run(
    targets: Vec<ProbeTarget>,
    permits: Arc<Semaphore>,
    opened: watch::Receiver<u64>,
    stop: &CancellationToken,
    tasks: &TaskTracker,
) {
    for target in targets {
        let upstream = Arc::clone(&target.upstream);
        let (path, timeout) = (target.path.clone(), target.timeout);
        let looped = LoopTarget {
            health: target.health,
            role: target.role,
            metrics: target.metrics,
            backoff: target.backoff,
        };
        tasks.spawn(probe_loop(
            looped,
            move || {
                let upstream = Arc::clone(&upstream);
                let path = path.clone();
                async move { upstream.probe(path, timeout).await }
            },
            Arc::clone(&permits),
            opened.clone(),
            stop.clone(),
        ));
    }
}

/// Waits for the target's circuit to open, then probes it until it closes; again and again
/// until shutdown.
pub(crate) async fn probe_loop<P, F>(
    target: LoopTarget,
    probe: P,
    permits: Arc<Semaphore>,
    mut opened: watch::Receiver<u64>,
    shutdown: CancellationToken,
) where
    P: Fn() -> F,
    F: Future<Output = ProbeResult>,
{
    let LoopTarget {
        health,
        role,
        metrics,
        backoff,
    } = target;
    loop {
        // The generation is marked seen before the check, so an opening between the
        // check and the wait still wakes us.
        opened.borrow_and_update();
        if !health.is_circuit_open(role) {
            tokio::select! {
                biased;
                () = shutdown.cancelled() => return,
                changed = opened.changed() => if changed.is_err() { return },
            }
            continue;
        }
        let mut attempt = 0u32;
        while health.is_circuit_open(role) {
            let delay = backoff.equal(attempt);
            health.set_next_probe(role, health::now() + delay);
            tokio::select! {
                biased;
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(delay) => {}
            }
            // A reset may have closed it while we slept.
            if !health.is_circuit_open(role) {
                break;
            }
            let permit = tokio::select! {
                biased;
                () = shutdown.cancelled() => return,
                permit = permits.acquire() => match permit {
                    Ok(permit) => permit,
                    Err(_closed) => return,
                },
            };
            // In flight: shutdown waits for it rather than cancelling it.
            let result = probe().await;
            drop(permit);
            metrics.probe(result.is_ok());
            attempt = attempt.saturating_add(1);
            let next_probe = (!result.is_ok()).then(|| health::now() + backoff.ceiling(attempt));
            health.record_probe(
                role,
                ProbeOutcome {
                    status: result.status,
                    error_kind: result.error_kind,
                    tls_detail: result.tls_detail,
                    next_probe,
                },
            );
            tracing::debug!(
                connection = %health.name,
                role = %role,
                status = result.status,
                error_kind = result.error_kind.map(ErrorKind::as_str),
                tls_detail = result.tls_detail.map(TlsDetail::as_str),
                attempt,
                "probe"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use tokio::time::Instant;
    use warden_config::Verdict;
    use warden_health::UpstreamOutcome;

    use super::*;
    use crate::health::HealthHub;

    const YAML: &str = "version: 1
admin: { listen: 127.0.0.1:0 }
connections:
  - name: c
    mcp:
      listen: 127.0.0.1:0
      upstream: http://127.0.0.1:1
      circuit: { consecutive_failures: 1, probe: { interval: 1s, max_interval: 8s } }
";

    const BACKOFF: Backoff = Backoff {
        base: Duration::from_secs(1),
        max: Duration::from_secs(8),
    };

    fn open_circuit() -> (Arc<HealthHub>, LoopTarget) {
        let config = warden_config::parse(YAML, "test").expect("config");
        let hub = HealthHub::new(&config);
        let health = hub.get("c").expect("connection");
        health.record_upstream(
            Role::Mcp,
            UpstreamOutcome {
                verdict: Verdict::Transient,
                status: Some(503),
                error_kind: None,
                tls_detail: None,
            },
        );
        assert!(health.is_circuit_open(Role::Mcp));
        let target = LoopTarget {
            health,
            role: Role::Mcp,
            metrics: Arc::new(RouteMetrics::new("c", Role::Mcp)),
            backoff: BACKOFF,
        };
        (hub, target)
    }

    #[tokio::test(start_paused = true)]
    async fn probes_back_off_with_jitter_until_one_succeeds() {
        let (hub, target) = open_circuit();
        let health = Arc::clone(&target.health);
        let calls = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&calls);
        let start = Instant::now();
        let stop = CancellationToken::new();
        let looping = tokio::spawn(probe_loop(
            target,
            move || {
                let seen = Arc::clone(&seen);
                async move {
                    let mut calls = seen.lock().expect("calls");
                    calls.push(Instant::now());
                    let status = if calls.len() < 4 { 503 } else { 200 };
                    ProbeResult {
                        status: Some(status),
                        error_kind: None,
                        tls_detail: None,
                    }
                }
            },
            Arc::new(Semaphore::new(1)),
            hub.circuit_openings(),
            stop.clone(),
        ));
        // Paused time runs the whole outage in an instant.
        while health.is_circuit_open(Role::Mcp) {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let calls = calls.lock().expect("calls").clone();
        assert_eq!(
            calls.len(),
            4,
            "three failures, then the success that closes it"
        );
        let mut previous = start;
        for (attempt, at) in calls.iter().enumerate() {
            let gap = *at - previous;
            let ceiling = BACKOFF.ceiling(u32::try_from(attempt).expect("small"));
            assert!(
                gap >= ceiling / 2 && gap <= ceiling,
                "probe {attempt}: {gap:?} not within [{:?}, {ceiling:?}]",
                ceiling / 2
            );
            previous = *at;
        }
        stop.cancel();
        looping.await.expect("loop ends on shutdown");
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_cancels_a_waiting_probe_and_waits_for_one_in_flight() {
        // Waiting: the loop is asleep until its first probe; shutdown ends it at once.
        let (hub, target) = open_circuit();
        let stop = CancellationToken::new();
        let waiting = tokio::spawn(probe_loop(
            target,
            || async {
                ProbeResult {
                    status: Some(503),
                    error_kind: None,
                    tls_detail: None,
                }
            },
            Arc::new(Semaphore::new(1)),
            hub.circuit_openings(),
            stop.clone(),
        ));
        tokio::task::yield_now().await;
        stop.cancel();
        waiting.await.expect("waiting loop ends");

        // In flight: the probe is running when shutdown comes; the loop ends only after it.
        let (hub, target) = open_circuit();
        let stop = CancellationToken::new();
        let started = Arc::new(tokio::sync::Notify::new());
        let release = Arc::new(tokio::sync::Notify::new());
        let finished = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (s, r, f) = (
            Arc::clone(&started),
            Arc::clone(&release),
            Arc::clone(&finished),
        );
        let in_flight = tokio::spawn(probe_loop(
            target,
            move || {
                let (s, r, f) = (Arc::clone(&s), Arc::clone(&r), Arc::clone(&f));
                async move {
                    s.notify_one();
                    r.notified().await;
                    f.store(true, std::sync::atomic::Ordering::SeqCst);
                    ProbeResult {
                        status: Some(503),
                        error_kind: None,
                        tls_detail: None,
                    }
                }
            },
            Arc::new(Semaphore::new(1)),
            hub.circuit_openings(),
            stop.clone(),
        ));
        started.notified().await;
        stop.cancel();
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert!(
            !in_flight.is_finished(),
            "shutdown cancelled a probe in flight"
        );
        release.notify_one();
        in_flight.await.expect("loop ends after its probe");
        assert!(finished.load(std::sync::atomic::Ordering::SeqCst));
    }
}
