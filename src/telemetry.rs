//! The process-wide Prometheus recorder and the metric descriptions.

use std::time::Duration;

use anyhow::Context as _;
use metrics::{Unit, describe_counter, describe_gauge, describe_histogram, gauge};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Seconds; spans a fast loopback hop (1 ms) to a slow upstream near the default 30 s
/// request timeout.
const DURATION_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// How often recorded histogram samples are folded into their buckets; between scrapes the
/// raw samples are held in memory, so this bounds that memory under load.
const UPKEEP_INTERVAL: Duration = Duration::from_secs(1);

pub fn install() -> anyhow::Result<PrometheusHandle> {
    let recorder = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full("warden_request_duration_seconds".to_owned()),
            DURATION_BUCKETS,
        )
        .context("histogram buckets")?
        .build_recorder();
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder).context("installing the metrics recorder")?;
    describe();
    gauge!("warden_build_info", "version" => env!("CARGO_PKG_VERSION")).set(1.0);
    Ok(handle)
}

/// Runs the recorder's upkeep forever; spawn it on the runtime.
pub async fn upkeep(handle: PrometheusHandle) {
    let mut tick = tokio::time::interval(UPKEEP_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        handle.run_upkeep();
    }
}

/// `# HELP` for every metric family SPEC §7 names, so a scrape explains itself. A family
/// shows only once it has a series; describing one early costs nothing.
fn describe() {
    describe_gauge!("warden_build_info", "warden's version; always 1");
    describe_counter!(
        "warden_requests_total",
        "Requests answered, by the verdict on the upstream's answer (or short_circuit)"
    );
    describe_histogram!(
        "warden_request_duration_seconds",
        Unit::Seconds,
        "Time from a request's arrival until its response head goes to the client"
    );
    describe_counter!(
        "warden_upstream_errors_total",
        "Upstream answers and network faults that were not ok, by verdict and code (HTTP status, sanitized OAuth code or error kind)"
    );
    describe_counter!(
        "warden_token_refresh_total",
        "refresh_token grants answered by the token endpoint, by result (success, transient, terminal)"
    );
    describe_counter!(
        "warden_retries_total",
        "Retry decisions by outcome: success, failed, exhausted, budget_exhausted, concurrency_limited, unsafe"
    );
    describe_gauge!(
        "warden_retries_in_flight",
        "Retry slots held proxy-wide (limits.max_concurrent_retries), backoff included"
    );
    describe_counter!(
        "warden_short_circuits_total",
        "Requests warden answered itself instead of the upstream, by reason (needs_reauth, circuit_open)"
    );
    describe_gauge!(
        "warden_connection_state",
        "1 for the connection's current state (healthy, degraded, circuit_open, needs_reauth), 0 for the others"
    );
    describe_gauge!(
        "warden_connection_needs_reauth",
        "1 while the connection needs a new login or new client credentials"
    );
    describe_counter!(
        "warden_probes_total",
        "Background probes of an open circuit, by result (success, failure)"
    );
    describe_counter!(
        "warden_jsonrpc_errors_total",
        "JSON-RPC error objects in MCP answers, by code class"
    );
    describe_counter!(
        "warden_mcp_tool_calls_total",
        "MCP tools/call answers, by result (ok, tool_error, jsonrpc_error)"
    );
    describe_gauge!(
        "warden_client_connections",
        "Client connections open, proxy-wide"
    );
    describe_counter!(
        "warden_config_reloads_total",
        "Config reloads, by result (success, error)"
    );
}
