//! The validated configuration the rest of warden runs on.
//!
//! Everything here is already checked and has every default filled in and every route
//! override merged, so consumers never re-validate and never see an `Option` that means
//! "use the default".

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use strum::{EnumCount as _, VariantArray as _};

use crate::variants::variant_array;

/// A whole, validated proxy.yaml.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// `admin`: where operators and probes reach warden, apart from any app's traffic.
    pub admin: Admin,
    /// `limits`: proxy-wide, because descriptors and memory are shared by every route.
    pub limits: Limits,
    /// `events_per_connection`: each connection keeps a ring of its newest events so its
    /// history stays readable without growing memory.
    pub events_per_connection: usize,
    /// `shutdown`: how a rollout's SIGTERM ends the requests in flight.
    pub shutdown: Shutdown,
    /// `log`: what warden writes beyond its own lifecycle.
    pub log: Log,
    /// `connections`, in file order, which is the order every listing shows them in.
    pub connections: Vec<Connection>,
    /// `policy`: the operator's rules, checked before the built-in tables.
    pub policy: Policy,
}

impl Config {
    /// Every route of every connection, in file order (within a connection: mcp, api, oauth).
    pub fn routes(&self) -> impl Iterator<Item = (&Connection, &Route)> {
        self.connections
            .iter()
            .flat_map(|c| c.routes.iter().map(move |r| (c, r)))
    }
}

/// `admin`: the listener for probes, metrics and operators, kept off the routes' ports so
/// no app traffic can reach it.
#[derive(Debug, Clone, PartialEq)]
pub struct Admin {
    /// Usually loopback, so only the pod (and the kubelet's probes) can reach it.
    pub listen: SocketAddr,
    /// When set, mutating admin calls need `Authorization: Bearer <contents>`.
    pub token_file: Option<PathBuf>,
}

/// `limits`: the proxy-wide bounds that keep a sidecar from taking its app down with it.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// Retries in flight across the proxy, so an outage cannot multiply the traffic it gets.
    pub max_concurrent_retries: usize,
    /// Recovery probes in flight across the proxy, so many open circuits cannot flood
    /// upstreams that are already down.
    pub max_concurrent_probes: usize,
    /// Larger bodies get 413: a sidecar must not let one client fill its memory.
    pub max_request_body_bytes: u64,
    /// Larger request heads get 431, the same over HTTP/1 and HTTP/2.
    pub max_header_bytes: usize,
    /// Client connections held at once across every route; past it new connections wait
    /// in the kernel's backlog instead of exhausting descriptors.
    pub max_connections: usize,
    /// Idle pooled upstream connections kept per route; past it, the longest idle close
    /// once idle for 1 s.
    pub max_idle_upstream_per_route: usize,
    /// Upstream connections open per route, busy or idle: a burst of clients waits for
    /// one of them instead of each opening its own, so neither warden's memory and
    /// descriptors nor the upstream's load grow with the burst.
    pub max_upstream_per_route: usize,
}

/// `shutdown`: what SIGTERM does to the requests in flight.
#[derive(Debug, Clone, PartialEq)]
pub struct Shutdown {
    /// How long in-flight requests may finish before warden exits; zero stops at once.
    pub drain_timeout: Duration,
}

/// `log`: what warden writes per request.
#[derive(Debug, Clone, PartialEq)]
pub struct Log {
    /// One structured line per request at INFO.
    pub access: bool,
}

/// One upstream service and the authorization server that issues its tokens: they share one
/// health record, because a dead refresh token breaks the service too.
#[derive(Debug, Clone, PartialEq)]
pub struct Connection {
    /// `[a-z0-9-]+`, unique; used as the `connection` metrics label.
    pub name: String,
    /// One to three routes, at most one per role, ordered mcp, api, oauth.
    pub routes: Vec<Route>,
}

impl Connection {
    /// The route of `role`, if the connection has one; a connection has at most one per role.
    pub fn route(&self, role: Role) -> Option<&Route> {
        self.routes.iter().find(|r| r.role == role)
    }
}

/// What a route carries, which decides how its answers are classified.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    serde::Serialize,
    serde::Deserialize,
    schemars::JsonSchema,
    strum::IntoStaticStr,
    strum::VariantArray,
    strum::EnumCount,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum Role {
    /// An MCP server (Streamable HTTP): JSON-RPC errors and tool results are read too.
    Mcp,
    /// Any other HTTP API: classified by status and network faults alone.
    Api,
    /// The OAuth 2.0 authorization server: token answers decide whether a login is dead.
    Oauth,
}

impl Role {
    /// In the order routes are listed within a connection (mcp, api, oauth).
    pub const ALL: [Role; Role::COUNT] = variant_array(Role::VARIANTS);

    /// The key in proxy.yaml, also the `role` metrics label and log field.
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Role {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|role| role.as_str() == s)
            .ok_or_else(|| format!("unknown role `{s}` (expected mcp, api or oauth)"))
    }
}

/// One listener in front of one upstream, with every setting merged from `defaults`.
#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    /// Which key of its connection the route was written under.
    pub role: Role,
    /// Where the app connects with plain HTTP; warden adds TLS towards the upstream.
    pub listen: SocketAddr,
    /// The one origin every request of the route goes to.
    pub upstream: Upstream,
    /// TLS towards an https upstream; empty for http ones.
    pub tls: Tls,
    /// Only on `oauth` routes: requests to this exact path are token requests.
    pub token_path: Option<String>,
    /// `defaults.timeouts` with the route's own overrides merged in.
    pub timeouts: Timeouts,
    /// `defaults.retry` with the route's own overrides merged in.
    pub retry: Retry,
    /// `defaults.circuit` with the route's own overrides merged in.
    pub circuit: Circuit,
}

/// How warden talks to an upstream; the app always talks plain HTTP to warden.
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::IntoStaticStr)]
#[strum(serialize_all = "lowercase")]
pub enum Scheme {
    /// Plain HTTP: TLS settings are rejected at load, since they could not apply.
    Http,
    /// TLS with the system roots plus `tls.ca_file`.
    Https,
}

impl Scheme {
    /// As written in a URL, without `://`.
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// An upstream origin: `scheme://host[:port]`, nothing else. The client's path and query are
/// forwarded as they came, so a path here would be ambiguous and is rejected at load.
#[derive(Debug, Clone, PartialEq)]
pub struct Upstream {
    /// Whether warden adds TLS, and the default port.
    pub scheme: Scheme,
    /// Host as written (IPv6 without brackets), used for TLS server name by default.
    pub host: String,
    /// Explicit or the scheme's default port.
    pub port: u16,
    /// `host[:port]` as written in the URL; what `Host`/`:authority` become upstream.
    pub authority: http::uri::Authority,
}

impl std::fmt::Display for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}://{}", self.scheme.as_str(), self.authority)
    }
}

/// A route's TLS settings towards its upstream; all empty means the system roots, the
/// upstream host as server name and no client certificate.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Tls {
    /// Extra PEM roots trusted in addition to the system roots.
    pub ca_file: Option<PathBuf>,
    /// Client certificate chain (PEM) for mTLS; set together with `client_key`.
    pub client_cert: Option<PathBuf>,
    /// PEM private key of `client_cert`; validation guarantees both or neither.
    pub client_key: Option<PathBuf>,
    /// SNI and certificate name to verify instead of the upstream host.
    pub server_name: Option<String>,
}

/// `timeouts`: the waits warden bounds so a stuck upstream or client cannot hold its
/// resources forever.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Timeouts {
    /// TCP connect plus TLS handshake, bounded apart from `request` so an unreachable
    /// upstream fails fast instead of using up the request's whole deadline.
    pub connect: Duration,
    /// From the request's arrival until the upstream's response head, retries included.
    pub request: Duration,
    /// How long a client connection may go without a request in progress, from accept on,
    /// before warden closes it.
    pub client_idle: Duration,
}

/// `retry`: how much inline retrying a route may do before its client sees a failure.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Retry {
    /// Attempts in all, the first included (1 = no retry).
    pub max_attempts: u32,
    /// The wait between attempts, so retries do not hammer a struggling upstream.
    pub backoff: Backoff,
    /// Retries as a share of requests, so retries cannot multiply an outage.
    pub budget: Budget,
    /// Larger request bodies stream through once and are never retried: replaying one
    /// would mean holding all of it in memory.
    pub max_body_bytes: u64,
}

/// Exponential backoff with full jitter, so clients that failed together do not retry
/// together.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    /// The ceiling of the first wait; each further attempt doubles it.
    pub base: Duration,
    /// The cap on any one wait, `Retry-After` included: a longer `Retry-After` ends the
    /// retries instead of holding the client.
    pub max: Duration,
}

/// The retry budget (tower's `TpsBudget`, 10 s window).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Budget {
    /// Retries may be at most this fraction of requests.
    pub ratio: f64,
    /// Retries per second always allowed, so a quiet route can still retry.
    pub min_per_second: u32,
}

/// `circuit`: when a route stops sending requests to a failing upstream and answers 503
/// itself until a probe sees it recover.
#[derive(Debug, Clone, PartialEq)]
pub struct Circuit {
    /// Transient failures in a row that open the circuit; retries count too.
    pub consecutive_failures: u32,
    /// The background prober that closes the circuit again.
    pub probe: Probe,
}

/// The background recovery probe of an open circuit, never on a request's path.
#[derive(Debug, Clone, PartialEq)]
pub struct Probe {
    /// Requested with GET; any answer below 500 means the upstream is back.
    pub path: String,
    /// The first delay's ceiling; it doubles (with jitter) after each failed probe.
    pub interval: Duration,
    /// The longest delay, so a long outage is still noticed when it ends.
    pub max_interval: Duration,
}

/// `policy`: the operator's classification rules.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Policy {
    /// In file order: the first rule that matches decides.
    pub rules: Vec<Rule>,
}

/// One `policy.rules` entry, validated; the policy engine compiles it into a matcher.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    /// Unique; events, logs and metrics name the rule that decided a verdict by it.
    pub name: String,
    /// What the exchange must look like.
    pub when: When,
    /// What a match decides.
    pub then: Then,
}

/// Every condition is optional; all present conditions must hold. Lists mean "any of".
#[derive(Debug, Clone, Default, PartialEq)]
pub struct When {
    /// Only exchanges on routes of this role.
    pub role: Option<Role>,
    /// Upper-case method names.
    pub method: Option<Vec<String>>,
    /// Request paths starting with this, compared byte for byte.
    pub path_prefix: Option<String>,
    /// Inclusive ranges; a single status is a range of one.
    pub status: Option<Vec<(u16, u16)>>,
    /// Lower-case codes, compared ASCII case-insensitively against the sanitized code.
    pub oauth_error: Option<Vec<String>>,
    /// The `grant_type` of a token request, so refresh grants can be told from logins.
    pub grant_type: Option<Vec<String>>,
    /// Inclusive ranges of JSON-RPC error codes.
    pub jsonrpc_error: Option<Vec<(i64, i64)>>,
    /// `Some(true)`: a `tools/call` result with `isError: true`.
    pub mcp_tool_error: Option<bool>,
    /// Network failures below HTTP, which have no status to match on.
    pub error_kind: Option<Vec<ErrorKind>>,
    /// Response header name (lower case) and value regex (already checked to compile).
    pub header: Vec<(String, String)>,
    /// Request header name (lower case) and value regex (already checked to compile).
    pub request_header: Vec<(String, String)>,
}

/// What a matching rule decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Then {
    /// Replaces the built-in tables' verdict.
    pub verdict: Verdict,
    /// Lets a rule forbid retries for answers the built-in rules would retry.
    pub retry: RetryMode,
}

/// The class of an upstream answer; health, retries and metrics all act on it rather than
/// on raw statuses.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    serde::Serialize,
    serde::Deserialize,
    schemars::JsonSchema,
    strum::IntoStaticStr,
    strum::VariantArray,
    strum::EnumCount,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum Verdict {
    /// The exchange worked.
    Ok,
    /// May work if tried again: counts toward the circuit and may be retried.
    Transient,
    /// Will not work until someone logs in again (a revoked refresh token): the
    /// connection goes to `needs_reauth`.
    Terminal,
    /// The app's own credentials were refused (401/403 from the service); not the
    /// upstream's health.
    Auth,
    /// The app sent something wrong; not the upstream's health either.
    ClientError,
}

impl Verdict {
    /// Every verdict, for labels that must be pre-registered and for exhaustive tests.
    pub const ALL: [Verdict; Verdict::COUNT] = variant_array(Verdict::VARIANTS);

    /// The name in proxy.yaml, the `verdict` metrics label and the access log.
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// Whether a rule's match may be retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RetryMode {
    /// The usual retry rules apply (README "Retries").
    #[default]
    Default,
    /// Never retried, e.g. a 503 that means "quota exceeded" and will not pass on retry.
    Never,
}

/// Why a TLS handshake with an upstream failed (README › Connection health, `tls_detail`): a closed set, so
/// an operator can tell a missing CA from a wrong `server_name` or an expired certificate
/// without reading rustls' debug output, and a label or field built from it stays bounded.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    serde::Serialize,
    serde::Deserialize,
    strum::IntoStaticStr,
    strum::VariantArray,
    strum::EnumCount,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum TlsDetail {
    /// The upstream's chain does not lead to a trusted root (`tls.ca_file`, self-signed).
    UnknownCa,
    /// The certificate is not valid for the name warden checked (`tls.server_name`).
    NameMismatch,
    /// The certificate's validity ended: the upstream must renew it.
    Expired,
    /// The certificate is not valid yet, usually a clock skew on one side.
    NotYetValid,
    /// The upstream refused warden's client certificate (or asked for one it did not get).
    ClientCertRejected,
    /// Any other handshake failure: protocol versions, ciphers, a bad or revoked
    /// certificate, an alert from the server.
    Handshake,
}

impl TlsDetail {
    /// Every detail, for exhaustive tests of the closed set.
    pub const ALL: [TlsDetail; TlsDetail::COUNT] = variant_array(TlsDetail::VARIANTS);

    /// The `tls_detail` value in error bodies, events and logs.
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

impl std::fmt::Display for TlsDetail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why an upstream exchange failed below HTTP.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    serde::Serialize,
    serde::Deserialize,
    schemars::JsonSchema,
    strum::IntoStaticStr,
    strum::VariantArray,
    strum::EnumCount,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum ErrorKind {
    /// The TCP connection could not be made (refused, unreachable).
    Connect,
    /// No answer in time: `timeouts.connect` or `timeouts.request` ran out.
    Timeout,
    /// The connection broke after it was made, before or during the answer.
    Reset,
    /// The TLS handshake failed; `TlsDetail` says why.
    Tls,
    /// The upstream's name did not resolve.
    Dns,
}

impl ErrorKind {
    /// Every kind, for labels that must be pre-registered and for exhaustive tests.
    pub const ALL: [ErrorKind; ErrorKind::COUNT] = variant_array(ErrorKind::VARIANTS);

    /// The `error_kind` value in proxy.yaml, metrics labels, events and error bodies.
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}
