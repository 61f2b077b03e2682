//! The answers warden gives instead of the upstream's while a connection cannot recover by
//! itself (README › Connection health), byte for byte as the contract states them.

use std::time::Duration;

use http::header::{self, HeaderName, HeaderValue};
use http::{Response, StatusCode};
use warden_config::Role;

use crate::body::ResponseBody;

pub(crate) static X_WARDEN_SHORT_CIRCUIT: HeaderName =
    HeaderName::from_static("x-warden-short-circuit");

const REAUTH_CHALLENGE: &str =
    r#"Bearer error="invalid_token", error_description="connection needs re-authorization""#;

/// An mcp/api request while the connection needs re-authorization: 401, so the client
/// takes its usual "token rejected" path (refresh, then a new login).
pub(crate) fn needs_reauth(
    connection: &str,
    idp_error_code: Option<&str>,
) -> Response<ResponseBody> {
    // Connection names are `[a-z0-9-]` and codes are sanitized to `[a-z0-9_.-]`: neither
    // needs JSON escaping.
    let code = match idp_error_code {
        Some(code) => format!("\"{code}\""),
        None => "null".to_owned(),
    };
    let body = format!(
        r#"{{"error":"needs_reauth","connection":"{connection}","idp_error_code":{code}}}"#
    );
    let mut resp = json(StatusCode::UNAUTHORIZED, body, "needs_reauth");
    resp.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static(REAUTH_CHALLENGE),
    );
    resp
}

/// A refresh grant while the connection needs re-authorization: the IdP's own terminal
/// answer again (RFC 6749 §5.2 shape), without asking the IdP to reject it once more.
pub(crate) fn refresh_refused(stored_code: Option<&str>) -> Response<ResponseBody> {
    // A terminal verdict from a user rule may carry no code; `invalid_grant` is what a
    // client must treat as "log in again".
    let code = stored_code.unwrap_or("invalid_grant");
    let body =
        format!(r#"{{"error":"{code}","error_description":"connection needs re-authorization"}}"#);
    let mut resp = json(StatusCode::BAD_REQUEST, body, "needs_reauth");
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// A request to a route whose circuit is open: 503 with the time until the next probe.
pub(crate) fn circuit_open(
    connection: &str,
    role: Role,
    retry_after: Duration,
) -> Response<ResponseBody> {
    let body = format!(
        r#"{{"error":"upstream_unavailable","connection":"{connection}","role":"{role}"}}"#
    );
    let mut resp = json(StatusCode::SERVICE_UNAVAILABLE, body, "circuit_open");
    let seconds = retry_after.as_secs().max(1);
    resp.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    resp
}

fn json(status: StatusCode, body: String, reason: &'static str) -> Response<ResponseBody> {
    crate::local::json_answer(status, body, &X_WARDEN_SHORT_CIRCUIT, reason)
}
