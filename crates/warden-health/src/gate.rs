//! The per-request question: may this request go upstream, and if not, why.

use std::sync::Arc;
use std::time::Duration;

use warden_policy::is_refresh;

/// What kind of request is asking, as far as short-circuits care (README › Connection health).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GateRequest {
    /// Anything but a token request: an mcp/api request, or a request to a path other
    /// than `token_path` on the oauth route (authorize, discovery, JWKS...).
    NotToken,
    /// A token request with `grant_type=refresh_token`.
    RefreshGrant,
    /// A token request with any other grant (or none): a new login.
    OtherGrant,
}

impl GateRequest {
    /// A token request, by its `grant_type` (compared as the policy engine does).
    pub fn token(grant_type: Option<&str>) -> Self {
        if is_refresh(grant_type) {
            GateRequest::RefreshGrant
        } else {
            GateRequest::OtherGrant
        }
    }
}

/// The answer to [`crate::ConnectionHealth::gate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Gate {
    /// Send it upstream.
    Forward,
    /// Answer at once: `401` for mcp/api requests, `400` with the code for refresh
    /// grants (README › Connection health).
    NeedsReauth {
        /// The code of the terminal answer that set `needs_reauth`, for the 401 body's
        /// `idp_error_code` and the 400 body's `error`. `None` when the terminal verdict
        /// named no code (a user rule on a status, or a terminal mcp/api answer); the
        /// 400 body then needs a fallback such as `invalid_grant`. An `Arc` so the gate
        /// allocates nothing and the caller can drop the lock before building the answer.
        idp_error_code: Option<Arc<str>>,
    },
    /// Answer `503` with `Retry-After` at once.
    CircuitOpen {
        /// Whole seconds until the next probe, rounded up, at least one.
        retry_after: Duration,
    },
}

impl Gate {
    /// The `reason` label of `warden_short_circuits_total` and the value of
    /// `x-warden-short-circuit`; `None` for [`Gate::Forward`].
    pub const fn reason(&self) -> Option<&'static str> {
        match self {
            Gate::Forward => None,
            Gate::NeedsReauth { .. } => Some("needs_reauth"),
            Gate::CircuitOpen { .. } => Some("circuit_open"),
        }
    }

    /// The common case, checked first on every request.
    pub const fn is_forward(&self) -> bool {
        matches!(self, Gate::Forward)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grant_types() {
        assert_eq!(
            GateRequest::token(Some("refresh_token")),
            GateRequest::RefreshGrant
        );
        assert_eq!(
            GateRequest::token(Some("Refresh_Token")),
            GateRequest::RefreshGrant
        );
        assert_eq!(
            GateRequest::token(Some("authorization_code")),
            GateRequest::OtherGrant
        );
        assert_eq!(GateRequest::token(None), GateRequest::OtherGrant);
    }
}
