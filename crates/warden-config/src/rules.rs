//! `policy.rules`: each condition checked on its own, then the combinations that can
//! never match, which would otherwise be silent dead rules.

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::decode::DecodedRule;
use crate::diag::Diags;
use crate::forms::Ranges;
use crate::located::join_key;
use crate::model::{ErrorKind, Policy, RetryMode, Role, Rule, Then, When};
use crate::raw::RawWhen;

/// Every rule checked; `None` if any is invalid (all of them reported).
pub(crate) fn policy(rules: &[DecodedRule], diags: &mut Diags) -> Option<Policy> {
    let before = diags.len();
    let mut names: HashMap<&str, &str> = HashMap::new();
    let mut out = Vec::with_capacity(rules.len());
    for DecodedRule { path, rule } in rules {
        let name_path = join_key(path, "name");
        let name = rule.name.trim();
        if name.is_empty() {
            diags.error(name_path, "a rule needs a name");
        } else if name.chars().any(char::is_control) {
            diags.error(name_path, "a rule name cannot contain control characters");
        } else if let Some(first) = names.insert(name, path) {
            diags.error(
                name_path,
                format!("duplicate rule name `{name}` (also {first})"),
            );
        }
        let when = when(&rule.when, &join_key(path, "when"), diags);
        out.push(Rule {
            name: name.to_owned(),
            when,
            then: Then {
                verdict: rule.then.verdict,
                retry: rule.then.retry.unwrap_or(RetryMode::Default),
            },
        });
    }
    (diags.len() == before).then_some(Policy { rules: out })
}

fn when(raw: &RawWhen, path: &str, diags: &mut Diags) -> When {
    let at = |key: &str| join_key(path, key);
    let role: Option<Role> = raw.role;

    let method = raw.method.as_ref().map(|m| {
        non_empty(&m.0, &at("method"), diags);
        m.0.iter()
            .enumerate()
            .map(|(i, name)| {
                let upper = name.trim().to_ascii_uppercase();
                if upper.is_empty() || http::Method::from_bytes(upper.as_bytes()).is_err() {
                    diags.error(
                        item_path(&at("method"), m.0.len(), i),
                        format!("`{name}` is not an HTTP method name"),
                    );
                }
                upper
            })
            .collect()
    });

    if let Some(prefix) = &raw.path_prefix
        && !prefix.starts_with('/')
    {
        diags.error(
            at("path_prefix"),
            format!("`{prefix}` can never match: request paths start with `/`"),
        );
    }

    let status = raw.status.as_ref().map(|s| {
        ranges(&s.0, &at("status"), diags, |from, to, item| {
            for n in [from, to] {
                if !(100..=599).contains(&n) {
                    return Err(format!("{n} is not an HTTP status (100-599)"));
                }
            }
            if from > to {
                return Err(format!("{item}: the range is backwards ({from} > {to})"));
            }
            Ok(())
        })
        .into_iter()
        // In range 100..=599 by the check above, or already reported.
        .map(|(from, to)| (clamp_status(from), clamp_status(to)))
        .collect()
    });

    let oauth_error = raw.oauth_error.as_ref().map(|codes| {
        non_empty(&codes.0, &at("oauth_error"), diags);
        codes
            .0
            .iter()
            .enumerate()
            .map(|(i, code)| {
                let ok = !code.is_empty()
                    && code.len() <= 200
                    && code
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
                if !ok {
                    diags.error(
                        item_path(&at("oauth_error"), codes.0.len(), i),
                        format!(
                            "`{code}` can never match: stored OAuth error codes keep only \
                             letters, digits, `_`, `.` and `-` (at most 200)"
                        ),
                    );
                }
                code.to_ascii_lowercase()
            })
            .collect()
    });

    let grant_type = raw.grant_type.as_ref().map(|grants| {
        non_empty(&grants.0, &at("grant_type"), diags);
        for (i, grant) in grants.0.iter().enumerate() {
            if grant.is_empty() || grant.contains(char::is_whitespace) {
                diags.error(
                    item_path(&at("grant_type"), grants.0.len(), i),
                    format!("`{grant}` is not a grant_type"),
                );
            }
        }
        grants.0.clone()
    });

    let jsonrpc_error = raw.jsonrpc_error.as_ref().map(|c| {
        ranges(&c.0, &at("jsonrpc_error"), diags, |from, to, item| {
            if from > to {
                Err(format!("{item}: the range is backwards ({from} > {to})"))
            } else {
                Ok(())
            }
        })
    });

    if raw.mcp_tool_error == Some(false) {
        diags.error(
            at("mcp_tool_error"),
            "only `true` is meaningful: it matches a tools/call result with isError: true",
        );
    }
    let mcp_tool_error = raw.mcp_tool_error.filter(|&b| b);

    let error_kind: Option<Vec<ErrorKind>> = raw.error_kind.as_ref().map(|kinds| {
        non_empty(&kinds.0, &at("error_kind"), diags);
        kinds.0.clone()
    });

    let header = headers(raw.header.as_ref(), &at("header"), diags);
    let request_header = headers(raw.request_header.as_ref(), &at("request_header"), diags);

    let when = When {
        role,
        method,
        path_prefix: raw.path_prefix.clone(),
        status,
        oauth_error,
        grant_type,
        jsonrpc_error,
        mcp_tool_error,
        error_kind,
        header,
        request_header,
    };
    contradictions(&when, raw, path, diags);
    when
}

/// Pairs of conditions no single exchange can satisfy.
fn contradictions(when: &When, raw: &RawWhen, path: &str, diags: &mut Diags) {
    let at = |key: &str| join_key(path, key);
    let is_empty = raw.role.is_none()
        && raw.method.is_none()
        && raw.path_prefix.is_none()
        && raw.status.is_none()
        && raw.oauth_error.is_none()
        && raw.grant_type.is_none()
        && raw.jsonrpc_error.is_none()
        && raw.mcp_tool_error.is_none()
        && raw.error_kind.is_none()
        && raw.header.is_none()
        && raw.request_header.is_none();
    if is_empty {
        diags.error(
            path,
            "`when` has no condition; a rule must say what it matches (e.g. status, role)",
        );
        return;
    }
    match when.role {
        Some(Role::Oauth) if when.jsonrpc_error.is_some() => diags.error(
            at("jsonrpc_error"),
            "can never match with role oauth: token endpoints answer OAuth JSON, not JSON-RPC",
        ),
        Some(Role::Api) if when.jsonrpc_error.is_some() => diags.error(
            at("jsonrpc_error"),
            "can never match with role api: JSON-RPC errors are only read on mcp routes",
        ),
        Some(role @ (Role::Oauth | Role::Api)) if when.mcp_tool_error.is_some() => diags.error(
            at("mcp_tool_error"),
            format!("can never match with role {role}: tool results are only read on mcp routes"),
        ),
        Some(role @ (Role::Mcp | Role::Api)) => {
            for (key, present) in [
                ("grant_type", when.grant_type.is_some()),
                ("oauth_error", when.oauth_error.is_some()),
            ] {
                if present {
                    diags.error(
                        at(key),
                        format!(
                            "can never match with role {role}: only token requests on oauth \
                             routes have a {key}"
                        ),
                    );
                }
            }
        }
        _ => {}
    }
    if when.role.is_none() && when.jsonrpc_error.is_some() {
        for (key, present) in [
            ("grant_type", when.grant_type.is_some()),
            ("oauth_error", when.oauth_error.is_some()),
        ] {
            if present {
                diags.error(
                    at(key),
                    format!(
                        "can never match together with jsonrpc_error: {key} belongs to \
                         oauth token requests, JSON-RPC errors to mcp routes"
                    ),
                );
            }
        }
    }
    if when.error_kind.is_some() {
        let response_only = [
            ("status", when.status.is_some()),
            ("oauth_error", when.oauth_error.is_some()),
            ("jsonrpc_error", when.jsonrpc_error.is_some()),
            ("mcp_tool_error", when.mcp_tool_error.is_some()),
            ("header", raw.header.is_some()),
        ];
        let clashing: Vec<&str> = response_only
            .iter()
            .filter(|(_, present)| *present)
            .map(|(key, _)| *key)
            .collect();
        if !clashing.is_empty() {
            diags.error(
                at("error_kind"),
                format!(
                    "can never match together with {}: a network error has no response",
                    clashing.join(", ")
                ),
            );
        }
    }
}

/// Checks each range with `check(from, to, "item")`, reporting at the item's path.
fn ranges(
    ranges: &Ranges,
    path: &str,
    diags: &mut Diags,
    check: impl Fn(i64, i64, &str) -> Result<(), String>,
) -> Vec<(i64, i64)> {
    non_empty(ranges, path, diags);
    for (i, &(from, to)) in ranges.iter().enumerate() {
        let label = if from == to {
            format!("{from}")
        } else {
            format!("{from}-{to}")
        };
        if let Err(message) = check(from, to, &label) {
            diags.error(item_path(path, ranges.len(), i), message);
        }
    }
    ranges.clone()
}

fn clamp_status(n: i64) -> u16 {
    u16::try_from(n.clamp(100, 599)).unwrap_or(599)
}

/// `key[i]` when the key held a list, the key itself when it held one value.
///
/// A list of one is indistinguishable from a single value here; the index lookup falls
/// back to the key either way, so the position is right in both cases.
fn item_path(path: &str, len: usize, i: usize) -> String {
    if len > 1 {
        format!("{path}[{i}]")
    } else {
        path.to_owned()
    }
}

fn non_empty<T>(items: &[T], path: &str, diags: &mut Diags) {
    if items.is_empty() {
        diags.error(
            path,
            "an empty list can never match; remove the key or list at least one value",
        );
    }
}

/// `{name: value-regex}` to lower-case names and regexes known to compile.
fn headers(
    raw: Option<&BTreeMap<String, String>>,
    path: &str,
    diags: &mut Diags,
) -> Vec<(String, String)> {
    let Some(raw) = raw else {
        return Vec::new();
    };
    if raw.is_empty() {
        diags.error(
            path,
            "an empty mapping has no condition; remove the key or add `name: value-regex`",
        );
    }
    let mut out: Vec<(String, String)> = Vec::with_capacity(raw.len());
    let mut seen = HashSet::new();
    for (name, pattern) in raw {
        let key_path = join_key(path, name);
        let lower = name.to_ascii_lowercase();
        if http::HeaderName::from_bytes(lower.as_bytes()).is_err() {
            diags.error(
                key_path.as_str(),
                format!("`{name}` is not a valid header name"),
            );
        } else if !seen.insert(lower.clone()) {
            diags.error(
                key_path.as_str(),
                format!("header `{lower}` is given twice (names are case-insensitive)"),
            );
        }
        if let Err(err) = regex::Regex::new(pattern) {
            diags.error(
                key_path,
                format!("invalid regex `{pattern}`: {}", regex_reason(&err)),
            );
        }
        out.push((lower, pattern.clone()));
    }
    out
}

/// The regex crate's syntax errors span several lines (the pattern, a caret, the reason);
/// keep the reason.
fn regex_reason(err: &regex::Error) -> String {
    let text = err.to_string();
    text.lines()
        .find_map(|l| l.trim().strip_prefix("error: "))
        .map_or_else(|| text.replace('\n', " "), str::to_owned)
}
