//! warden's classifier: one upstream exchange ([`Observation`]) in, one [`Decision`] out.
//!
//! `policy.rules` are checked first, in file order, and the first that matches decides;
//! otherwise README › Classification's built-in tables do. The crate is pure — no I/O, no async, no HTTP
//! types — so the proxy calls it inline on every response and its tests are plain tables.
//!
//! Decisions the classification contract (README › Classification) leaves open, made here:
//!
//! - **Token requests decided by a user rule still get an event**, derived from the verdict
//!   (`ok` → `refresh_succeeded`/`connect_completed` by grant type, `terminal` →
//!   `refresh_failed_revoked`, anything else → `refresh_failed_transient`), so health
//!   tracking sees every token response whoever classified it.
//! - **Rules see the normalized token response**: a 2xx without `access_token` but with an
//!   `error` matches `status: 400` (README: "as the same error with 400"), and a 401 without
//!   `error` matches `oauth_error: [invalid_client]` — rules match what is stored and shown.
//! - **An `error` that sanitizes to nothing** (`""`, `"<>"`) counts as no `error` at all.
//! - **`ok` verdicts carry no code**, even when the body also had an `error`.
//! - Token responses outside the table (3xx, 4xx other than 400/401/429, 1xx, >599) are
//!   transient: only a terminal RFC 6749 code or a 401 proves the grant dead.
//! - On other requests, 512–599 and >599 are transient; a final 1xx (101) is ok.
//! - `oauth_code_label` keeps `server_error` and `temporarily_unavailable` as their own
//!   labels (see [`OAUTH_CODES`]).
#![forbid(unsafe_code)]

mod builtin;
mod decision;
mod facts;
mod labels;
mod observation;
mod rules;
mod sanitize;

pub use builtin::BUILTIN_RULES;
pub use decision::{Code, Decision, Event, RuleRef};
pub use labels::{
    JSONRPC_CODE_LABELS, OAUTH_CODE_LABELS, OAUTH_CODES, OTHER, SESSION_EXPIRED, error_kind_label,
    jsonrpc_code_label, oauth_code_label, status_label,
};
pub use observation::{HeaderLookup, NoHeaders, Observation};
pub use rules::PolicyError;
pub use sanitize::{MAX_CODE_LEN, REDACTED, sanitize, sanitize_code};

use warden_config::{RetryMode, Rule, Verdict};

use crate::facts::Facts;
use crate::rules::CompiledRule;

/// A compiled `policy.rules` list plus the built-in tables. Cheap to share (`Arc`) and
/// immutable: a reload compiles a new one and swaps it in.
#[derive(Debug, Default)]
pub struct Policy {
    rules: Box<[CompiledRule]>,
}

impl Policy {
    /// Compiles `rules` (every regex once, here, never per request). The rules are expected
    /// to come validated from warden-config; anything that still fails is an error.
    pub fn compile(rules: &[Rule]) -> Result<Policy, PolicyError> {
        let rules = rules
            .iter()
            .enumerate()
            .map(|(index, rule)| CompiledRule::compile(index, rule))
            .collect::<Result<_, _>>()?;
        Ok(Policy { rules })
    }

    /// The built-in tables alone.
    pub fn builtin() -> Policy {
        Policy::default()
    }

    /// Whether `policy.rules[index]` looks into answer bodies (`jsonrpc_error` or
    /// `mcp_tool_error`): only such a rule can give a body-level verdict.
    pub fn reads_body(&self, index: usize) -> bool {
        self.rules.get(index).is_some_and(CompiledRule::reads_body)
    }

    /// How many user rules were compiled.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// True when only the built-in tables decide.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Classifies one exchange: the first matching user rule, else the built-in tables.
    ///
    /// Allocates nothing unless the decision carries a [`Code`] (an error answer with an
    /// OAuth or session code): the common 2xx path is allocation-free.
    pub fn classify(&self, obs: &Observation<'_>) -> Decision {
        let sanitized = facts::sanitized_error(obs);
        let facts = Facts::new(obs, sanitized.as_ref());
        let (verdict, retry, rule) = match self.rules.iter().find(|r| r.matches(obs, &facts)) {
            Some(r) => (
                r.then.verdict,
                r.then.retry,
                RuleRef::User(r.index, r.name.clone()),
            ),
            None => {
                let row = if obs.token_request {
                    builtin::token_response(obs, &facts)
                } else {
                    builtin::http_response(obs, &facts)
                };
                (row.verdict, RetryMode::Default, RuleRef::Builtin(row.name))
            }
        };
        Decision {
            verdict,
            retry,
            rule,
            event: obs
                .token_request
                .then(|| token_event(verdict, obs.grant_type)),
            code: code(verdict, &facts),
        }
    }
}

/// README › Connection health: every token response records one event, named by its verdict.
fn token_event(verdict: Verdict, grant_type: Option<&str>) -> Event {
    match verdict {
        Verdict::Ok if is_refresh(grant_type) => Event::RefreshSucceeded,
        Verdict::Ok => Event::ConnectCompleted,
        Verdict::Terminal => Event::RefreshFailedRevoked,
        Verdict::Transient | Verdict::Auth | Verdict::ClientError => Event::RefreshFailedTransient,
    }
}

/// A `refresh_token` grant, compared ASCII case-insensitively.
pub fn is_refresh(grant_type: Option<&str>) -> bool {
    grant_type.is_some_and(|g| g.trim().eq_ignore_ascii_case("refresh_token"))
}

/// The code to store and label, if the answer was not ok and named one.
fn code(verdict: Verdict, facts: &Facts<'_>) -> Option<Code> {
    if verdict == Verdict::Ok {
        return None;
    }
    if let Some(code) = facts.token_code() {
        return Some(Code {
            sanitized: code.to_owned(),
            label: oauth_code_label(code),
        });
    }
    facts.session_expired.then(|| Code {
        sanitized: SESSION_EXPIRED.to_owned(),
        label: SESSION_EXPIRED,
    })
}
