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
    pub admin: Admin,
    pub limits: Limits,
    pub events_per_connection: usize,
    pub shutdown: Shutdown,
    pub log: Log,
    pub connections: Vec<Connection>,
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

#[derive(Debug, Clone, PartialEq)]
pub struct Admin {
    pub listen: SocketAddr,
    /// When set, mutating admin calls need `Authorization: Bearer <contents>`.
    pub token_file: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    pub max_concurrent_retries: usize,
    pub max_concurrent_probes: usize,
    pub max_request_body_bytes: u64,
    pub max_header_bytes: usize,
    /// Client connections held at once across every route; past it new connections wait
    /// in the kernel's backlog instead of exhausting descriptors.
    pub max_connections: usize,
    /// Idle pooled upstream connections kept per route.
    pub max_idle_upstream_per_route: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Shutdown {
    pub drain_timeout: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Log {
    /// One structured line per request at INFO.
    pub access: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Connection {
    /// `[a-z0-9-]+`, unique; used as the `connection` metrics label.
    pub name: String,
    /// One to three routes, at most one per role, ordered mcp, api, oauth.
    pub routes: Vec<Route>,
}

impl Connection {
    pub fn route(&self, role: Role) -> Option<&Route> {
        self.routes.iter().find(|r| r.role == role)
    }
}

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
    Mcp,
    Api,
    Oauth,
}

impl Role {
    pub const ALL: [Role; Role::COUNT] = variant_array(Role::VARIANTS);

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

#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    pub role: Role,
    pub listen: SocketAddr,
    pub upstream: Upstream,
    pub tls: Tls,
    /// Only on `oauth` routes: requests to this exact path are token requests.
    pub token_path: Option<String>,
    pub timeouts: Timeouts,
    pub retry: Retry,
    pub circuit: Circuit,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::IntoStaticStr)]
#[strum(serialize_all = "lowercase")]
pub enum Scheme {
    Http,
    Https,
}

impl Scheme {
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// An upstream origin: `scheme://host[:port]`, nothing else. The client's path and query are
/// forwarded as they came, so a path here would be ambiguous and is rejected at load.
#[derive(Debug, Clone, PartialEq)]
pub struct Upstream {
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

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Tls {
    /// Extra PEM roots trusted in addition to the system roots.
    pub ca_file: Option<PathBuf>,
    /// Client certificate chain (PEM) for mTLS; set together with `client_key`.
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
    /// SNI and certificate name to verify instead of the upstream host.
    pub server_name: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Timeouts {
    pub connect: Duration,
    /// From the request's arrival until the upstream's response head, retries included.
    pub request: Duration,
    /// How long a client connection may go without a request in progress, from accept on,
    /// before warden closes it.
    pub client_idle: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Retry {
    /// Attempts in all, the first included (1 = no retry).
    pub max_attempts: u32,
    pub backoff: Backoff,
    pub budget: Budget,
    pub max_body_bytes: u64,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    pub base: Duration,
    pub max: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Budget {
    pub ratio: f64,
    pub min_per_second: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Circuit {
    pub consecutive_failures: u32,
    pub probe: Probe,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Probe {
    pub path: String,
    pub interval: Duration,
    pub max_interval: Duration,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Policy {
    pub rules: Vec<Rule>,
}

/// One `policy.rules` entry, validated; the policy engine compiles it into a matcher.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub name: String,
    pub when: When,
    pub then: Then,
}

/// Every condition is optional; all present conditions must hold. Lists mean "any of".
#[derive(Debug, Clone, Default, PartialEq)]
pub struct When {
    pub role: Option<Role>,
    /// Upper-case method names.
    pub method: Option<Vec<String>>,
    pub path_prefix: Option<String>,
    /// Inclusive ranges; a single status is a range of one.
    pub status: Option<Vec<(u16, u16)>>,
    /// Lower-case codes, compared ASCII case-insensitively against the sanitized code.
    pub oauth_error: Option<Vec<String>>,
    pub grant_type: Option<Vec<String>>,
    /// Inclusive ranges of JSON-RPC error codes.
    pub jsonrpc_error: Option<Vec<(i64, i64)>>,
    /// `Some(true)`: a `tools/call` result with `isError: true`.
    pub mcp_tool_error: Option<bool>,
    pub error_kind: Option<Vec<ErrorKind>>,
    /// Response header name (lower case) and value regex (already checked to compile).
    pub header: Vec<(String, String)>,
    /// Request header name (lower case) and value regex (already checked to compile).
    pub request_header: Vec<(String, String)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Then {
    pub verdict: Verdict,
    pub retry: RetryMode,
}

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
    Ok,
    Transient,
    Terminal,
    Auth,
    ClientError,
}

impl Verdict {
    pub const ALL: [Verdict; Verdict::COUNT] = variant_array(Verdict::VARIANTS);

    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RetryMode {
    #[default]
    Default,
    Never,
}

/// Why a TLS handshake with an upstream failed (SPEC §5, `tls_detail`): a closed set, so
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
    Expired,
    NotYetValid,
    /// The upstream refused warden's client certificate (or asked for one it did not get).
    ClientCertRejected,
    /// Any other handshake failure: protocol versions, ciphers, a bad or revoked
    /// certificate, an alert from the server.
    Handshake,
}

impl TlsDetail {
    pub const ALL: [TlsDetail; TlsDetail::COUNT] = variant_array(TlsDetail::VARIANTS);

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
    Connect,
    Timeout,
    Reset,
    Tls,
    Dns,
}

impl ErrorKind {
    pub const ALL: [ErrorKind; ErrorKind::COUNT] = variant_array(ErrorKind::VARIANTS);

    pub fn as_str(self) -> &'static str {
        self.into()
    }
}
