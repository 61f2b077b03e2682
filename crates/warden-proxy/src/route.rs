//! A route as the data plane runs it: the state it keeps across reloads, keyed by
//! (connection, role), and the settings a reload swaps (README › Reload).
//!
//! A reload builds new [`RouteSettings`] for every route and pairs them with the route's
//! existing [`RouteState`]: its pooled upstream connections, its refresh coalescing, its
//! retry budget, its metric handles and its health record go on as they were, so a refresh
//! burst that spans a reload still reaches the IdP once and pooled connections stay warm.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use arc_swap::ArcSwap;
use http::HeaderName;
use http::uri::{Authority, PathAndQuery, Scheme};
use tokio_util::task::TaskTracker;
use tower::retry::budget::TpsBudget;
use warden_config::{Connection, Role};
use warden_policy::Policy;

use crate::backoff::Backoff;
use crate::coalesce::RefreshFlights;
use crate::health::HealthHandle;
use crate::metrics::RouteMetrics;
use crate::record::Recorder;
use crate::retry::{self, RetryCounters, RetrySlots};
use crate::upstream::{PoolSize, Upstream, UpstreamClient};

/// The compiled policy and what the data plane derives from it, shared by every route.
pub(crate) struct Classifier {
    pub(crate) policy: Arc<Policy>,
    /// Request headers the classifier may look at after forwarding.
    pub(crate) watched_request_headers: Arc<[HeaderName]>,
    /// Whether any rule looks into answer bodies (`jsonrpc_error`, `mcp_tool_error`).
    pub(crate) body_rules: bool,
}

/// One version of a route: its lasting state and the settings of this version. Each
/// request reads the current version once, so it finishes with the settings it started
/// with.
pub(crate) struct Route {
    pub(crate) state: Arc<RouteState>,
    pub(crate) settings: RouteSettings,
}

/// What outlives one version of a route's settings.
pub(crate) struct RouteState {
    pub(crate) connection: String,
    pub(crate) role: Role,
    /// The connection's health record, shared by its routes.
    pub(crate) health: Arc<HealthHandle>,
    pub(crate) metrics: Arc<RouteMetrics>,
    /// `warden_retries_total`, by outcome.
    pub(crate) retries: RetryCounters,
    /// Refresh grants in flight (oauth routes).
    pub(crate) refreshes: RefreshFlights,
    /// The pooled client; replaced by a reload only when what it was built from changed.
    upstream: ArcSwap<Upstream>,
    /// The retry budget; replaced by a reload only when the budget settings changed, so a
    /// reload never hands out a fresh allowance.
    budget: ArcSwap<TpsBudget>,
    /// What `upstream` and `budget` were built from, compared at each reload.
    built_from: Mutex<BuiltFrom>,
}

struct BuiltFrom {
    upstream: UpstreamKey,
    budget: warden_config::Budget,
}

/// What an upstream client is built from: a reload that keeps all of it keeps the client
/// and its pooled connections.
#[derive(PartialEq)]
struct UpstreamKey {
    upstream: warden_config::Upstream,
    tls: warden_config::Tls,
    connect: Duration,
    size: PoolSize,
}

impl UpstreamKey {
    fn of(route: &warden_config::Route, size: PoolSize) -> Self {
        UpstreamKey {
            upstream: route.upstream.clone(),
            tls: route.tls.clone(),
            connect: route.timeouts.connect,
            size,
        }
    }
}

impl RouteState {
    pub(crate) fn new(
        connection: &Connection,
        route: &warden_config::Route,
        health: Arc<HealthHandle>,
        upstream: UpstreamClient,
        size: PoolSize,
        tasks: TaskTracker,
    ) -> Self {
        RouteState {
            connection: connection.name.clone(),
            role: route.role,
            health,
            metrics: Arc::new(RouteMetrics::new(&connection.name, route.role)),
            retries: RetryCounters::new(&connection.name, route.role),
            refreshes: RefreshFlights::new(tasks),
            upstream: ArcSwap::new(upstream),
            budget: ArcSwap::from_pointee(retry::budget(&route.retry.budget)),
            built_from: Mutex::new(BuiltFrom {
                upstream: UpstreamKey::of(route, size),
                budget: route.retry.budget,
            }),
        }
    }

    fn built_from(&self) -> MutexGuard<'_, BuiltFrom> {
        // Two plain values replaced whole: a panic elsewhere cannot leave them half-set.
        self.built_from
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The current client, when `route` would build the same one: same origin, same TLS
    /// settings naming no files (a reload re-reads certificate files, which may have been
    /// rotated), same connect timeout and pool cap.
    pub(crate) fn reusable_upstream(
        &self,
        route: &warden_config::Route,
        size: PoolSize,
    ) -> Option<UpstreamClient> {
        let tls = &route.tls;
        let files = tls.ca_file.is_some() || tls.client_cert.is_some() || tls.client_key.is_some();
        (!files && self.built_from().upstream == UpstreamKey::of(route, size))
            .then(|| self.upstream.load_full())
    }

    /// Takes on a new version of `route`'s settings: `upstream` (the current client when
    /// [`Self::reusable_upstream`] offered it) and a new budget only when its settings
    /// changed.
    pub(crate) fn adopt(
        &self,
        route: &warden_config::Route,
        size: PoolSize,
        upstream: UpstreamClient,
    ) {
        let mut built = self.built_from();
        if !Arc::ptr_eq(&self.upstream.load(), &upstream) {
            self.upstream.store(upstream);
        }
        built.upstream = UpstreamKey::of(route, size);
        if built.budget != route.retry.budget {
            self.budget
                .store(Arc::new(retry::budget(&route.retry.budget)));
            built.budget = route.retry.budget;
        }
    }

    /// The route's upstream client.
    pub(crate) fn upstream(&self) -> UpstreamClient {
        self.upstream.load_full()
    }

    /// The route's retry budget.
    pub(crate) fn budget(&self) -> Arc<TpsBudget> {
        self.budget.load_full()
    }
}

/// What a reload swaps: one version of a route's settings.
pub(crate) struct RouteSettings {
    pub(crate) listen: SocketAddr,
    pub(crate) scheme: Scheme,
    pub(crate) authority: Authority,
    pub(crate) request_timeout: Duration,
    pub(crate) max_body_bytes: u64,
    pub(crate) max_header_bytes: usize,
    /// Oauth routes: requests to exactly this path are token requests.
    pub(crate) token_path: Option<String>,
    pub(crate) policy: Arc<Policy>,
    /// Request headers the classifier may look at (`mcp-session-id` and those named by
    /// `request_header` rules); only these are kept past forwarding.
    pub(crate) watched_request_headers: Arc<[HeaderName]>,
    /// `log.access`: one line per request.
    pub(crate) access_log: bool,
    pub(crate) retry: warden_config::Retry,
    pub(crate) backoff: Backoff,
    /// The proxy-wide retry slots (`limits.max_concurrent_retries`).
    pub(crate) retry_slots: Arc<RetrySlots>,
    /// The record stage's view of this version.
    pub(crate) recorder: Arc<Recorder>,
    /// What the prober sends, and how it backs off.
    pub(crate) probe_path: PathAndQuery,
    pub(crate) probe_backoff: Backoff,
}

impl RouteSettings {
    pub(crate) fn new(
        state: &RouteState,
        route: &warden_config::Route,
        config: &warden_config::Config,
        classifier: &Classifier,
        retry_slots: Arc<RetrySlots>,
    ) -> Self {
        let scheme = match route.upstream.scheme {
            warden_config::Scheme::Http => Scheme::HTTP,
            warden_config::Scheme::Https => Scheme::HTTPS,
        };
        // Off in the config, or filtered out of the log (`RUST_LOG=warn`): then no request
        // id is made either, and the access path costs nothing.
        let access_log =
            config.log.access && tracing::enabled!(target: "warden::access", tracing::Level::INFO);
        RouteSettings {
            listen: route.listen,
            scheme,
            authority: route.upstream.authority.clone(),
            request_timeout: route.timeouts.request,
            max_body_bytes: config.limits.max_request_body_bytes,
            max_header_bytes: config.limits.max_header_bytes,
            token_path: route.token_path.clone(),
            policy: Arc::clone(&classifier.policy),
            watched_request_headers: Arc::clone(&classifier.watched_request_headers),
            access_log,
            retry: route.retry,
            retry_slots,
            backoff: Backoff {
                base: route.retry.backoff.base,
                max: route.retry.backoff.max,
            },
            recorder: Arc::new(Recorder {
                connection: state.connection.clone(),
                role: state.role,
                metrics: Arc::clone(&state.metrics),
                policy: Arc::clone(&classifier.policy),
                body_rules: classifier.body_rules,
                access_log,
            }),
            probe_path: PathAndQuery::from_maybe_shared(route.circuit.probe.path.clone())
                .unwrap_or_else(|_| PathAndQuery::from_static("/")),
            probe_backoff: Backoff {
                base: route.circuit.probe.interval,
                max: route.circuit.probe.max_interval,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::HealthHub;

    const YAML: &str = "version: 1
admin: { listen: 127.0.0.1:0 }
connections:
  - name: c
    mcp:
      listen: 127.0.0.1:0
      upstream: http://127.0.0.1:1
";

    const SIZE: PoolSize = PoolSize { idle: 8, open: 16 };

    fn state() -> (warden_config::Config, RouteState) {
        let config = warden_config::parse(YAML, "test").expect("config");
        let hub = HealthHub::new(&config);
        let (conn, route) = config.routes().next().expect("a route");
        let upstream = Upstream::new(route, SIZE).expect("client");
        let state = RouteState::new(
            conn,
            route,
            hub.get("c").expect("record"),
            upstream,
            SIZE,
            TaskTracker::new(),
        );
        (config, state)
    }

    #[test]
    fn a_reload_keeps_the_client_and_budget_unless_what_they_were_built_from_changed() {
        let (config, state) = state();
        let (_, route) = config.routes().next().expect("a route");
        let client = state.upstream();
        let budget = state.budget();

        // The same settings: the same client and budget.
        let kept = state
            .reusable_upstream(route, SIZE)
            .expect("same settings: kept");
        assert!(Arc::ptr_eq(&kept, &client));
        state.adopt(route, SIZE, kept);
        assert!(Arc::ptr_eq(&state.upstream(), &client));
        assert!(Arc::ptr_eq(&state.budget(), &budget));

        // A new pool cap or limit, connect timeout or TLS file: a new client.
        let more_idle = PoolSize { idle: 9, ..SIZE };
        assert!(state.reusable_upstream(route, more_idle).is_none());
        let more_open = PoolSize { open: 9, ..SIZE };
        assert!(state.reusable_upstream(route, more_open).is_none());
        let mut slower = route.clone();
        slower.timeouts.connect += Duration::from_secs(1);
        assert!(state.reusable_upstream(&slower, SIZE).is_none());
        let mut with_ca = route.clone();
        with_ca.tls.ca_file = Some("/etc/ssl/ca.pem".into());
        assert!(state.reusable_upstream(&with_ca, SIZE).is_none());

        // New budget settings: a new budget; the client handed over is installed.
        let mut stingier = slower;
        stingier.retry.budget.ratio /= 2.0;
        let fresh = Upstream::new(&stingier, SIZE).expect("client");
        state.adopt(&stingier, SIZE, Arc::clone(&fresh));
        assert!(Arc::ptr_eq(&state.upstream(), &fresh));
        assert!(!Arc::ptr_eq(&state.budget(), &budget));
        assert!(
            state.reusable_upstream(&stingier, SIZE).is_some(),
            "the new client is what the next reload compares against"
        );
    }
}
