//! Facts derived once per observation and shared by the user rules and the built-in tables,
//! so both judge the same normalized exchange.

use crate::observation::Observation;
use crate::sanitize::Sanitized;

/// The `Mcp-Session-Id` request header, as [`crate::HeaderLookup`] is asked for it.
pub(crate) const MCP_SESSION_ID: &str = "mcp-session-id";

/// The code a 401 token response stands for when its body names none (RFC 6749 §5.2: a
/// failed client authentication answers 401 `invalid_client`).
pub(crate) const INVALID_CLIENT: &str = "invalid_client";

/// The token response's `error`, sanitized and lower-cased into a stack buffer; `None` for
/// every other request. Kept apart from [`Facts`] (which borrows it) so that the common
/// path never moves the 200-byte buffer around.
pub(crate) fn sanitized_error(obs: &Observation<'_>) -> Option<Sanitized> {
    match obs.oauth_error {
        Some(raw) if obs.token_request => Some(Sanitized::new(raw, true)),
        _ => None,
    }
}

pub(crate) struct Facts<'s> {
    pub(crate) token_request: bool,
    /// The sanitized `error` (see [`sanitized_error`]); `None` also when nothing survived the
    /// sanitizer (`""`, `"\n"`): an empty code is no code.
    pub(crate) oauth_error: Option<&'s str>,
    /// The status the rules and the 400 rows see: a 2xx token response without
    /// `access_token` but with an `error` counts as a 400 with that error (README › Classification).
    pub(crate) rule_status: Option<u16>,
    /// A 404 on a non-token request that carried `Mcp-Session-Id`.
    pub(crate) session_expired: bool,
}

impl<'s> Facts<'s> {
    pub(crate) fn new(obs: &Observation<'_>, sanitized: Option<&'s Sanitized>) -> Self {
        let oauth_error = sanitized
            .filter(|code| !code.is_empty())
            .map(Sanitized::as_str);
        let error_in_2xx = obs.token_request
            && matches!(obs.status, Some(200..=299))
            && !obs.has_access_token
            && oauth_error.is_some();
        let rule_status = if error_in_2xx { Some(400) } else { obs.status };
        let session_expired = !obs.token_request
            && obs.status == Some(404)
            && obs.request_headers.get(MCP_SESSION_ID).is_some();
        Facts {
            token_request: obs.token_request,
            oauth_error,
            rule_status,
            session_expired,
        }
    }

    /// The OAuth code of a token response as it is stored, labelled and matched by
    /// `oauth_error` rules: the sanitized `error`, or `invalid_client` for a 401 that named
    /// none. `None` for every other request.
    pub(crate) fn token_code(&self) -> Option<&str> {
        if !self.token_request {
            return None;
        }
        match (&self.oauth_error, self.rule_status) {
            (Some(code), _) => Some(code),
            (None, Some(401)) => Some(INVALID_CLIENT),
            (None, _) => None,
        }
    }
}
