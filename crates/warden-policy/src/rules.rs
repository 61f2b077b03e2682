//! `policy.rules`, compiled once into matchers that need no allocation to evaluate.

use std::sync::Arc;

use regex::Regex;
use warden_config::{ErrorKind, Role, Rule, Then};

use crate::facts::Facts;
use crate::observation::{HeaderLookup, Observation};

/// Why a rule set could not be compiled. warden-config has already checked every regex, so
/// this only shows when a `Rule` was built by hand or the two crates disagree; it is still
/// an error and not a panic, because a reload must never bring the proxy down.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// A header condition's value regex did not compile.
    #[error("policy.rules[{index}] `{rule}`: {key}.{header}: invalid regex: {source}")]
    Regex {
        /// Position in `policy.rules`, so the message points at the file.
        index: usize,
        /// The rule's name, for the operator who knows rules by name.
        rule: String,
        /// `header` or `request_header`.
        key: &'static str,
        /// The header name the regex belongs to.
        header: String,
        /// The regex engine's own reason.
        #[source]
        source: regex::Error,
    },
}

/// Header conditions: lower-case name and the compiled value regex.
type HeaderConds = Box<[(Box<str>, Regex)]>;

/// One compiled rule. Conditions that were absent are `None`/empty and always hold.
#[derive(Debug)]
pub(crate) struct CompiledRule {
    pub(crate) index: usize,
    pub(crate) name: Arc<str>,
    role: Option<Role>,
    methods: Option<Box<[Box<str>]>>,
    path_prefix: Option<Box<str>>,
    status: Option<Box<[(u16, u16)]>>,
    oauth_error: Option<Box<[Box<str>]>>,
    grant_type: Option<Box<[Box<str>]>>,
    jsonrpc_error: Option<Box<[(i64, i64)]>>,
    mcp_tool_error: bool,
    error_kind: Option<Box<[ErrorKind]>>,
    header: HeaderConds,
    request_header: HeaderConds,
    pub(crate) then: Then,
}

fn boxed(items: &[String]) -> Box<[Box<str>]> {
    items.iter().map(|s| Box::from(s.as_str())).collect()
}

fn regexes(
    index: usize,
    rule: &Rule,
    key: &'static str,
    pairs: &[(String, String)],
) -> Result<HeaderConds, PolicyError> {
    pairs
        .iter()
        .map(|(name, pattern)| {
            Regex::new(pattern)
                .map(|re| (Box::from(name.to_ascii_lowercase().as_str()), re))
                .map_err(|source| PolicyError::Regex {
                    index,
                    rule: rule.name.clone(),
                    key,
                    header: name.clone(),
                    source,
                })
        })
        .collect()
}

impl CompiledRule {
    pub(crate) fn compile(index: usize, rule: &Rule) -> Result<Self, PolicyError> {
        let w = &rule.when;
        Ok(CompiledRule {
            index,
            name: Arc::from(rule.name.as_str()),
            role: w.role,
            methods: w.method.as_deref().map(boxed),
            path_prefix: w.path_prefix.as_deref().map(Box::from),
            status: w.status.as_deref().map(Box::from),
            // Lower-cased again in case a Rule was built by hand: codes are compared to the
            // sanitized lower-case code.
            oauth_error: w.oauth_error.as_deref().map(|codes| {
                codes
                    .iter()
                    .map(|c| Box::from(c.to_ascii_lowercase().as_str()))
                    .collect()
            }),
            grant_type: w.grant_type.as_deref().map(boxed),
            jsonrpc_error: w.jsonrpc_error.as_deref().map(Box::from),
            mcp_tool_error: w.mcp_tool_error == Some(true),
            error_kind: w.error_kind.as_deref().map(Box::from),
            header: regexes(index, rule, "header", &w.header)?,
            request_header: regexes(index, rule, "request_header", &w.request_header)?,
            then: rule.then,
        })
    }

    pub(crate) fn reads_body(&self) -> bool {
        self.jsonrpc_error.is_some() || self.mcp_tool_error
    }

    /// All present conditions hold; a list holds when any of its items does. A condition
    /// on something the exchange does not have (a status on a network fault, a grant type
    /// on an mcp request, a missing header) does not hold. Cheapest checks first.
    pub(crate) fn matches(&self, obs: &Observation<'_>, facts: &Facts<'_>) -> bool {
        self.role.is_none_or(|role| role == obs.role)
            && any(&self.status, |&(from, to)| {
                facts.rule_status.is_some_and(|s| (from..=to).contains(&s))
            })
            && any(&self.error_kind, |&kind| obs.error_kind == Some(kind))
            && any(&self.jsonrpc_error, |&(from, to)| {
                obs.jsonrpc_error.is_some_and(|c| (from..=to).contains(&c))
            })
            && (!self.mcp_tool_error || obs.mcp_tool_error)
            && any(&self.methods, |m| m.eq_ignore_ascii_case(obs.method))
            && self
                .path_prefix
                .as_deref()
                .is_none_or(|prefix| obs.path.starts_with(prefix))
            && any(&self.oauth_error, |code| {
                facts.token_code().is_some_and(|c| c == &**code)
            })
            && any(&self.grant_type, |grant| {
                obs.token_request
                    && obs
                        .grant_type
                        .is_some_and(|g| g.trim().eq_ignore_ascii_case(grant))
            })
            && headers_match(&self.header, obs.response_headers)
            && headers_match(&self.request_header, obs.request_headers)
    }
}

/// `None` (no condition) holds; a list holds when any item does.
fn any<T>(items: &Option<Box<[T]>>, pred: impl Fn(&T) -> bool) -> bool {
    items.as_deref().is_none_or(|items| items.iter().any(pred))
}

/// Every listed header is present and its first value matches its regex (an unanchored
/// search, as in nginx's `~`; anchor with `^…$` for a full match).
fn headers_match(conds: &[(Box<str>, Regex)], headers: &dyn HeaderLookup) -> bool {
    conds
        .iter()
        .all(|(name, re)| headers.get(name).is_some_and(|v| re.is_match(v)))
}
