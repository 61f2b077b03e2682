//! README › Classification's two built-in tables, one match arm per row, each under the row it implements.
//!
//! Rows the README's classification tables do not list are marked "not in the table" with the reason for the
//! choice. Every arm names itself with a stable string ([`BUILTIN_RULES`]) that shows up in
//! `Decision::rule`, so a log line says which row decided.

use warden_config::{ErrorKind, Verdict};

use crate::facts::Facts;
use crate::observation::Observation;

/// One row's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Row {
    pub(crate) verdict: Verdict,
    pub(crate) name: &'static str,
}

const fn row(verdict: Verdict, name: &'static str) -> Row {
    Row { verdict, name }
}

/// Every name a built-in row can report in [`crate::RuleRef::Builtin`].
pub const BUILTIN_RULES: [&str; 31] = [
    // token requests
    "token.ok",
    "token.2xx_without_token",
    "token.invalid_grant",
    "token.invalid_client",
    "token.unauthorized_client",
    "token.unsupported_grant_type",
    "token.400_retryable",
    "token.401",
    "token.429",
    "token.5xx",
    "token.network",
    "token.3xx",
    "token.4xx",
    "token.unexpected_status",
    // mcp / api / other requests
    "http.2xx",
    "http.3xx",
    "http.auth",
    "http.session_expired",
    "http.408",
    "http.429",
    "http.5xx",
    "http.4xx",
    "http.5xx_unassigned",
    "http.1xx",
    "http.unexpected_status",
    "network.connect",
    "network.timeout",
    "network.reset",
    "network.tls",
    "network.dns",
    "network.unknown",
];

/// RFC 6749 §5.2 codes after which no refresh can succeed: the grant or the client itself
/// is no longer accepted. Everything else on a 400 may pass (README › Classification).
fn token_400(code: Option<&str>) -> Row {
    use Verdict::{Terminal, Transient};
    match code {
        // | 400 `invalid_grant`, `invalid_client`, `unauthorized_client`,
        // |     `unsupported_grant_type`                                   | terminal |
        Some("invalid_grant") => row(Terminal, "token.invalid_grant"),
        Some("invalid_client") => row(Terminal, "token.invalid_client"),
        Some("unauthorized_client") => row(Terminal, "token.unauthorized_client"),
        Some("unsupported_grant_type") => row(Terminal, "token.unsupported_grant_type"),
        // | 400 `invalid_request`, `invalid_scope`, `server_error`,
        // |     `temporarily_unavailable`, other or no code                | transient |
        _ => row(Transient, "token.400_retryable"),
    }
}

/// README › Classification, first table: a request to an oauth route's `token_path`.
///
/// `facts.oauth_error` is already sanitized and lower-cased, so the code comparisons above
/// are the README's ASCII case-insensitive ones (README › Classification).
pub(crate) fn token_response(obs: &Observation<'_>, facts: &Facts<'_>) -> Row {
    use Verdict::{Ok, Terminal, Transient};
    let code = facts.oauth_error;
    match obs.status {
        // | 2xx with `access_token` | ok |
        Some(200..=299) if obs.has_access_token => row(Ok, "token.ok"),
        // | 2xx without `access_token` but with an `error` field | as the same `error` with 400 |
        Some(200..=299) if code.is_some() => token_400(code),
        // | 2xx with neither | transient |
        Some(200..=299) => row(Transient, "token.2xx_without_token"),
        // | 400 ... | terminal / transient by code (above) |
        Some(400) => token_400(code),
        // | 401, any body | terminal |
        Some(401) => row(Terminal, "token.401"),
        // | 429, 5xx, connect error, reset, timeout | transient |
        Some(429) => row(Transient, "token.429"),
        Some(500..=599) => row(Transient, "token.5xx"),
        None => row(Transient, "token.network"),
        // Not in the table. A token endpoint that redirects did not issue a token, and no
        // login can fix a misrouted endpoint: transient (never needs_reauth).
        Some(300..=399) => row(Transient, "token.3xx"),
        // Not in the table: only 400-with-a-terminal-code and 401 prove the grant or client
        // dead. A 403/404/405/... says the endpoint or a gateway in front of it is unhappy,
        // which re-authorizing does not cure; transient keeps it visible (degraded,
        // refresh_failed_transient) without destroying the connection.
        Some(402..=499) => row(Transient, "token.4xx"),
        // Not in the table: 1xx as a final answer, or a status above 599 — a broken
        // upstream, like a 5xx.
        Some(_) => row(Transient, "token.unexpected_status"),
    }
}

/// README › Classification, second table: requests on mcp and api routes, and every non-token request on
/// an oauth route.
pub(crate) fn http_response(obs: &Observation<'_>, facts: &Facts<'_>) -> Row {
    use Verdict::{Auth, ClientError, Ok, Transient};
    match obs.status {
        // | 2xx, 3xx | ok | (JSON-RPC errors are counted, the verdict is unchanged)
        Some(200..=299) => row(Ok, "http.2xx"),
        Some(300..=399) => row(Ok, "http.3xx"),
        // | 401, 403 | auth |
        Some(401 | 403) => row(Auth, "http.auth"),
        // | 404 with an `Mcp-Session-Id` request header | client_error, code session_expired |
        Some(404) if facts.session_expired => row(ClientError, "http.session_expired"),
        // | 408, 429, 500–511 | transient |
        Some(408) => row(Transient, "http.408"),
        Some(429) => row(Transient, "http.429"),
        Some(500..=511) => row(Transient, "http.5xx"),
        // | connect refused, reset, timeout, DNS failure, TLS failure | transient |
        None => network(obs.error_kind),
        // | other 4xx | client_error |
        Some(400..=499) => row(ClientError, "http.4xx"),
        // Not in the table: 512–599 are unassigned 5xx codes, still "the server failed"
        // (Envoy's `retry_on: 5xx` and outlier detection count every 5xx): transient.
        Some(512..=599) => row(Transient, "http.5xx_unassigned"),
        // Not in the table: a 1xx can only be final as 101 Switching Protocols, i.e. an
        // upgrade that succeeded.
        Some(100..=199) => row(Ok, "http.1xx"),
        // Not in the table: a status above 599 is a broken upstream, which nginx answers
        // with 502: transient.
        Some(_) => row(Transient, "http.unexpected_status"),
    }
}

/// A failure below HTTP: transient whatever the kind (a bad certificate included: it opens
/// the circuit and never asks for a login that could not fix it).
fn network(kind: Option<ErrorKind>) -> Row {
    let name = match kind {
        Some(ErrorKind::Connect) => "network.connect",
        Some(ErrorKind::Timeout) => "network.timeout",
        Some(ErrorKind::Reset) => "network.reset",
        Some(ErrorKind::Tls) => "network.tls",
        Some(ErrorKind::Dns) => "network.dns",
        None => "network.unknown",
    };
    row(Verdict::Transient, name)
}
