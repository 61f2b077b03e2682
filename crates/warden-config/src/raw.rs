//! proxy.yaml exactly as written: the input shape and the source of the JSON Schema.
//!
//! Everything with a default is optional here; defaults, merging and every semantic check
//! happen in validation, which turns these into the `model` types. Doc comments on fields
//! are the descriptions editors show, so they carry units and defaults.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::Deserialize;

use crate::bounds;
use crate::forms::{CodeSpec, DurationStr, OneOrMany, StatusSpec};
use crate::model::{ErrorKind, RetryMode, Role, Verdict};

/// warden's proxy.yaml (version 1): listeners, upstreams, retry and circuit settings, and
/// classification rules.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "warden proxy.yaml")]
#[allow(
    dead_code,
    reason = "decoded section by section in `decode`; this shape feeds the schema and the key list"
)]
#[schemars(rename = "Config")]
pub(crate) struct RawConfig {
    /// Format version. Must be 1.
    #[schemars(range(equal = bounds::VERSION))]
    pub version: u64,
    /// Admin API, metrics and status page.
    pub admin: Option<RawAdmin>,
    /// Settings every route inherits; a route may override any of them, field by field.
    pub defaults: Option<RawDefaults>,
    /// Proxy-wide limits.
    pub limits: Option<RawLimits>,
    /// Newest events kept per connection. Default 50, at most 10000.
    #[schemars(transform = bounds::EVENTS_PER_CONNECTION.schema())]
    pub events_per_connection: Option<u64>,
    pub shutdown: Option<RawShutdown>,
    /// What warden logs.
    pub log: Option<RawLog>,
    /// Upstream connections: each has one to three routes (mcp, api, oauth).
    #[schemars(length(min = 1))]
    pub connections: Vec<RawConnection>,
    /// Classification rules, checked before the built-in table.
    pub policy: Option<RawPolicy>,
}

/// Admin API, metrics and status page.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Admin")]
pub(crate) struct RawAdmin {
    /// ip:port the admin API listens on. Default 127.0.0.1:9901.
    #[schemars(example = "127.0.0.1:9901")]
    pub listen: Option<String>,
    /// File holding a bearer token; when set, mutating admin calls need
    /// `Authorization: Bearer <token>`. Default: none (no token needed).
    pub token_file: Option<String>,
}

/// Timeouts, retry and circuit settings every route inherits.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Defaults")]
pub(crate) struct RawDefaults {
    pub timeouts: Option<RawTimeouts>,
    pub retry: Option<RawRetry>,
    pub circuit: Option<RawCircuit>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Timeouts")]
pub(crate) struct RawTimeouts {
    /// TCP connect plus TLS handshake to the upstream. Default 2s.
    pub connect: Option<DurationStr>,
    /// From the request's arrival until the upstream's response head, retries included.
    /// Default 30s.
    pub request: Option<DurationStr>,
    /// A client connection with no request in progress is closed after this, counted from
    /// accept and from the end of each response (HTTP/2: no open stream). Default 60s.
    pub client_idle: Option<DurationStr>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Retry")]
pub(crate) struct RawRetry {
    /// Attempts in all, the first included (1 = never retry). Default 3, at most 10.
    #[schemars(transform = bounds::MAX_ATTEMPTS.schema())]
    pub max_attempts: Option<u64>,
    /// Exponential backoff (x2, full jitter); Retry-After is honoured up to `max`.
    pub backoff: Option<RawBackoff>,
    /// Retries allowed on top of requests, so retries cannot multiply an outage.
    pub budget: Option<RawBudget>,
    /// Request bodies larger than this (bytes) are streamed and never retried. Default 65536.
    pub max_body_bytes: Option<u64>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Backoff")]
pub(crate) struct RawBackoff {
    /// First backoff before jitter. Default 100ms.
    pub base: Option<DurationStr>,
    /// Cap on any one backoff, Retry-After included. Default 2s.
    pub max: Option<DurationStr>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Budget")]
pub(crate) struct RawBudget {
    /// Retries may be at most this fraction of requests (10 s window). Default 0.2.
    #[schemars(transform = bounds::BUDGET_RATIO.schema())]
    pub ratio: Option<f64>,
    /// Retries per second always allowed on top of `ratio`. Default 10.
    pub min_per_second: Option<u64>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Circuit")]
pub(crate) struct RawCircuit {
    /// Transient failures in a row that open the circuit. Default 5.
    #[schemars(transform = bounds::CONSECUTIVE_FAILURES.schema())]
    pub consecutive_failures: Option<u64>,
    /// Background recovery probe while the circuit is open.
    pub probe: Option<RawProbe>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Probe")]
pub(crate) struct RawProbe {
    /// Path probed with GET; any answer below 500 closes the circuit. Default `/`.
    pub path: Option<String>,
    /// First probe delay; doubles (with jitter) up to `max_interval`. Default 1s.
    pub interval: Option<DurationStr>,
    /// Longest delay between probes. Default 5m.
    pub max_interval: Option<DurationStr>,
}

/// Proxy-wide limits.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Limits")]
pub(crate) struct RawLimits {
    /// Inline retries in flight across the proxy. Default 5.
    #[schemars(transform = bounds::MAX_CONCURRENT_RETRIES.schema())]
    pub max_concurrent_retries: Option<u64>,
    /// Background recovery probes in flight across the proxy. Default 5.
    #[schemars(transform = bounds::MAX_CONCURRENT_PROBES.schema())]
    pub max_concurrent_probes: Option<u64>,
    /// Larger request bodies get 413. Default 10485760 (10 MiB).
    #[schemars(transform = bounds::MAX_REQUEST_BODY_BYTES.schema())]
    pub max_request_body_bytes: Option<u64>,
    /// Larger request heads get 431. Default 65536, at least 1024.
    #[schemars(transform = bounds::MAX_HEADER_BYTES.schema())]
    pub max_header_bytes: Option<u64>,
    /// Client connections held at once across every route; past it new connections wait
    /// in the kernel's listen backlog. Default 10000.
    #[schemars(transform = bounds::MAX_CONNECTIONS.schema())]
    pub max_connections: Option<u64>,
    /// Idle pooled upstream connections kept per route; past it, the longest idle close
    /// once idle for 1 s. Default 64.
    pub max_idle_upstream_per_route: Option<u64>,
    /// Upstream connections open per route, busy or idle; past it a request waits up to
    /// `timeouts.connect` for one, then gets 503 `upstream_busy`. Default 256.
    #[schemars(transform = bounds::MAX_UPSTREAM_PER_ROUTE.schema())]
    pub max_upstream_per_route: Option<u64>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Shutdown")]
pub(crate) struct RawShutdown {
    /// How long in-flight requests may finish after SIGTERM; 0s stops at once. Default 30s.
    pub drain_timeout: Option<DurationStr>,
}

/// What warden logs.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Log")]
pub(crate) struct RawLog {
    /// One structured line per request at INFO (no query string, no secrets). Default true.
    pub access: Option<bool>,
}

/// One upstream connection: an MCP server or HTTP API and the authorization server that
/// issues its tokens, sharing one health state.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[allow(
    dead_code,
    reason = "decoded key by key in `decode`; this shape feeds the schema and the key list"
)]
#[schemars(rename = "Connection")]
pub(crate) struct RawConnection {
    /// `[a-z0-9-]`, 1 to 63 characters, unique; the `connection` metrics label.
    #[schemars(regex(pattern = bounds::connection_name_pattern()))]
    pub name: String,
    /// Route to an MCP server (Streamable HTTP).
    pub mcp: Option<RawRoute>,
    /// Route to any other HTTP API (same rules as mcp, minus JSON-RPC).
    pub api: Option<RawRoute>,
    /// Route to the OAuth 2.0 authorization server of this connection.
    pub oauth: Option<RawRoute>,
}

/// One listener in front of one upstream.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Route")]
pub(crate) struct RawRoute {
    /// ip:port the application connects to with plain HTTP, e.g. 127.0.0.1:15001.
    #[schemars(example = "127.0.0.1:15001")]
    pub listen: String,
    /// `http://` or `https://` and host[:port] only; the client's path and query are
    /// forwarded as they came.
    #[schemars(example = "https://mcp.example.com")]
    pub upstream: String,
    /// TLS to the upstream (https upstreams only).
    pub tls: Option<RawTls>,
    /// oauth routes only, required there: requests to this exact path are token requests;
    /// others pass through as api traffic.
    #[schemars(example = "/oauth2/token")]
    pub token_path: Option<String>,
    /// Overrides `defaults.timeouts`, field by field.
    pub timeouts: Option<RawTimeouts>,
    /// Overrides `defaults.retry`, field by field.
    pub retry: Option<RawRetry>,
    /// Overrides `defaults.circuit`, field by field.
    pub circuit: Option<RawCircuit>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Tls")]
pub(crate) struct RawTls {
    /// PEM file of extra root certificates, trusted in addition to the system roots.
    pub ca_file: Option<String>,
    /// PEM client certificate chain for mTLS; set together with `client_key`.
    pub client_cert: Option<String>,
    /// PEM private key for `client_cert`.
    pub client_key: Option<String>,
    /// Name sent as SNI and verified in the certificate, instead of the upstream host.
    pub server_name: Option<String>,
}

/// Classification rules.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[allow(
    dead_code,
    reason = "decoded rule by rule in `decode`; this shape feeds the schema and the key list"
)]
#[schemars(rename = "Policy")]
pub(crate) struct RawPolicy {
    /// Checked in order before the built-in table; the first match wins.
    pub rules: Option<Vec<RawRule>>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Rule")]
pub(crate) struct RawRule {
    /// Unique; shown in events and logs when the rule decides a verdict.
    pub name: String,
    /// Conditions; all present must hold. Lists mean "any of".
    pub when: RawWhen,
    pub then: RawThen,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "When")]
pub(crate) struct RawWhen {
    /// Route role the rule applies to.
    pub role: Option<Role>,
    /// Request method(s), e.g. POST.
    pub method: Option<OneOrMany<String>>,
    /// Request path prefix, starting with `/`.
    pub path_prefix: Option<String>,
    pub status: Option<StatusSpec>,
    /// OAuth `error` code(s) of a token response, e.g. invalid_grant (case-insensitive).
    pub oauth_error: Option<OneOrMany<String>>,
    /// `grant_type` of a token request, e.g. refresh_token.
    pub grant_type: Option<OneOrMany<String>>,
    pub jsonrpc_error: Option<CodeSpec>,
    /// `true`: an MCP `tools/call` result with `isError: true` (a failing tool, which MCP
    /// servers answer with HTTP 200). Only `true` is meaningful.
    pub mcp_tool_error: Option<bool>,
    /// Network failure(s) below HTTP; such failures have no response, hence no status.
    pub error_kind: Option<OneOrMany<ErrorKind>>,
    /// Response headers: `{name: value-regex}`; every entry must match.
    pub header: Option<BTreeMap<String, String>>,
    /// Request headers: `{name: value-regex}`; every entry must match.
    pub request_header: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Then")]
pub(crate) struct RawThen {
    pub verdict: Verdict,
    /// `never` turns off retries for matching responses. Default `default`.
    pub retry: Option<RetryMode>,
}
