//! What the classifier says about one exchange.

use std::sync::Arc;

use strum::{EnumCount as _, VariantArray as _};
use warden_config::{RetryMode, Verdict};

use crate::labels;
use crate::observation::Observation;

/// The outcome of [`crate::Policy::classify`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// What health, retries and metrics act on.
    pub verdict: Verdict,
    /// `Never` when the deciding rule said `retry: never`; built-in rows always say
    /// `Default` (whether a retry is *safe* is the proxy's call, README › Retries).
    pub retry: RetryMode,
    /// Which rule decided, for logs and debugging.
    pub rule: RuleRef,
    /// The health event a token response implies (README › Connection health); `None` for every other request,
    /// whose events depend on history and are derived by the health crate.
    pub event: Option<Event>,
    /// The error code to store and label; `None` for `ok` verdicts, network faults and
    /// answers whose only code is their HTTP status (see [`Decision::code_label`]).
    pub code: Option<Code>,
}

impl Decision {
    /// The `code` label of `warden_upstream_errors_total` (README › Admin listener (metrics)): the OAuth or session
    /// code's label when there is one, else the network fault's kind, else the HTTP status;
    /// always from a closed set.
    pub fn code_label(&self, obs: &Observation<'_>) -> &'static str {
        if let Some(code) = &self.code {
            return code.label;
        }
        match (obs.status, obs.error_kind) {
            (Some(status), _) => labels::status_label(status),
            (None, Some(kind)) => labels::error_kind_label(kind),
            (None, None) => labels::OTHER,
        }
    }
}

/// The rule that decided.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RuleRef {
    /// A row of README › Classification's tables, by a stable name such as `token.invalid_grant` or
    /// `http.5xx` (all listed in [`crate::BUILTIN_RULES`]).
    Builtin(&'static str),
    /// `policy.rules[index]` and its name. The name is shared with the compiled policy, so
    /// a decision costs no allocation and outlives a reload.
    User(usize, Arc<str>),
}

impl RuleRef {
    /// The bare name, as logs and events show it (without `builtin:` or the rule index).
    pub fn name(&self) -> &str {
        match self {
            RuleRef::Builtin(name) => name,
            RuleRef::User(_, name) => name,
        }
    }
}

impl std::fmt::Display for RuleRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RuleRef::Builtin(name) => write!(f, "builtin:{name}"),
            RuleRef::User(index, name) => write!(f, "policy.rules[{index}]:{name}"),
        }
    }
}

/// Events a token response implies (README › Connection health).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    strum::IntoStaticStr,
    strum::VariantArray,
    strum::EnumCount,
)]
#[strum(serialize_all = "snake_case")]
pub enum Event {
    /// A login finished: a grant other than `refresh_token` got a token.
    ConnectCompleted,
    /// A refresh token was exchanged for a new access token.
    RefreshSucceeded,
    /// The IdP said the grant is dead (a terminal answer): someone must log in again.
    RefreshFailedRevoked,
    /// The token endpoint failed in a way that may pass (429, 5xx, a network fault).
    RefreshFailedTransient,
}

impl Event {
    /// Every event, for labels that must be pre-registered and for exhaustive tests.
    pub const ALL: [Event; Event::COUNT] = warden_config::variant_array(Event::VARIANTS);

    /// The README › Connection health event type name.
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

impl std::fmt::Display for Event {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error code, both forms.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Code {
    /// Sanitized (README › Classification) and lower-cased; at most 200 characters of `[a-z0-9_.-]`, or
    /// `redacted`. What events store and the admin API shows.
    pub sanitized: String,
    /// The metric label: one of [`crate::OAUTH_CODE_LABELS`] or `session_expired`.
    pub label: &'static str,
}
