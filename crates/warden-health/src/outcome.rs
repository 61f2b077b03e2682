//! What the proxy tells the health record after each upstream exchange or probe.
//!
//! Plain copies of the classifier's output and the answer's status: the record keeps
//! nothing a request or response body could smuggle in beyond the sanitized code.

use std::time::Instant;

use warden_config::{ErrorKind, TlsDetail, Verdict};
use warden_policy::{Decision, Event};

use crate::grant::GrantType;

/// One classified token response (a request to `token_path` on the oauth route), one per
/// attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenOutcome<'a> {
    /// Decides whether the connection needs reauth or the route failed.
    pub verdict: Verdict,
    /// The event the policy engine named for it.
    pub event: Event,
    /// The sanitized code (`Decision::code`'s `sanitized`). Sanitized again when stored,
    /// so a caller's mistake cannot put a raw IdP string into the record.
    pub code: Option<&'a str>,
    /// `None` for a network fault.
    pub status: Option<u16>,
    /// The network fault, when `status` is `None`, so events can say what broke.
    pub error_kind: Option<ErrorKind>,
    /// Why the TLS handshake failed, when `error_kind` is `tls`.
    pub tls_detail: Option<TlsDetail>,
    /// The response carried an `access_token` (only its presence; never its value).
    pub has_access_token: bool,
    /// The request's grant type; `None` when the form named none.
    pub grant_type: Option<GrantType>,
}

impl<'a> TokenOutcome<'a> {
    /// From the policy engine's decision; `None` if the decision was not for a token
    /// request (it then names no event).
    pub fn from_decision(
        decision: &'a Decision,
        status: Option<u16>,
        error_kind: Option<ErrorKind>,
        has_access_token: bool,
    ) -> Option<Self> {
        Some(TokenOutcome {
            verdict: decision.verdict,
            event: decision.event?,
            code: decision.code.as_ref().map(|c| c.sanitized.as_str()),
            status,
            error_kind,
            tls_detail: None,
            has_access_token,
            grant_type: None,
        })
    }

    /// The same outcome, naming the request's grant type (from its form value).
    pub fn with_grant_type(mut self, grant_type: Option<&str>) -> Self {
        self.grant_type = grant_type.map(GrantType::from_form_value);
        self
    }

    /// The same outcome naming why its TLS handshake failed.
    pub fn with_tls_detail(mut self, detail: Option<TlsDetail>) -> Self {
        self.tls_detail = detail;
        self
    }
}

/// One classified answer (or network fault) of any other request: mcp, api, or a
/// non-token request on the oauth route. One per attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpstreamOutcome {
    /// Decides whether the route is degraded and whether the failure counts toward the
    /// circuit.
    pub verdict: Verdict,
    /// `None` for a network fault.
    pub status: Option<u16>,
    /// The network fault, when `status` is `None`, so events can say what broke.
    pub error_kind: Option<ErrorKind>,
    /// Why the TLS handshake failed, when `error_kind` is `tls`.
    pub tls_detail: Option<TlsDetail>,
}

impl UpstreamOutcome {
    /// Copies what health needs out of the classifier's decision; the rule and code stay
    /// behind, since only token answers store a code.
    pub fn from_decision(
        decision: &Decision,
        status: Option<u16>,
        error_kind: Option<ErrorKind>,
    ) -> Self {
        UpstreamOutcome {
            verdict: decision.verdict,
            status,
            error_kind,
            tls_detail: None,
        }
    }

    /// The same outcome naming why its TLS handshake failed.
    pub fn with_tls_detail(mut self, detail: Option<TlsDetail>) -> Self {
        self.tls_detail = detail;
        self
    }
}

/// A background probe's answer for an open circuit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbeOutcome {
    /// `None` when no HTTP answer came (a network fault).
    pub status: Option<u16>,
    /// The network fault, when `status` is `None`, so `probe_failed` says what broke.
    pub error_kind: Option<ErrorKind>,
    /// Why the TLS handshake failed, when `error_kind` is `tls`.
    pub tls_detail: Option<TlsDetail>,
    /// When the prober will probe next if this one failed (drives `Retry-After`).
    pub next_probe: Option<Instant>,
}

impl ProbeOutcome {
    /// An HTTP answer.
    pub const fn answered(status: u16, next_probe: Option<Instant>) -> Self {
        ProbeOutcome {
            status: Some(status),
            error_kind: None,
            tls_detail: None,
            next_probe,
        }
    }

    /// No HTTP answer.
    pub const fn fault(kind: ErrorKind, next_probe: Option<Instant>) -> Self {
        ProbeOutcome {
            status: None,
            error_kind: Some(kind),
            tls_detail: None,
            next_probe,
        }
    }

    /// The same outcome naming why its TLS handshake failed.
    pub const fn with_tls_detail(mut self, detail: Option<TlsDetail>) -> Self {
        self.tls_detail = detail;
        self
    }

    /// README › Connection health: any HTTP answer below 500 closes the circuit — the upstream is there, and
    /// whatever it thinks of the probe's path is not an outage.
    pub const fn is_ok(&self) -> bool {
        matches!(self.status, Some(status) if status < 500)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_ok_is_any_answer_below_500() {
        for (status, ok) in [(200, true), (302, true), (404, true), (499, true)] {
            assert_eq!(ProbeOutcome::answered(status, None).is_ok(), ok);
        }
        for status in [500, 503, 599] {
            assert!(!ProbeOutcome::answered(status, None).is_ok());
        }
        assert!(!ProbeOutcome::fault(ErrorKind::Connect, None).is_ok());
    }
}
