//! What the proxy saw of one upstream exchange, borrowed from its own buffers.
//!
//! Everything is a reference or a small copy so that building an observation on the hot path
//! costs nothing: the proxy fills it from the request and response heads it already holds
//! (and, for token responses, from the small JSON body it reads anyway).

use warden_config::{ErrorKind, Role};

/// Header access without tying this crate to `http`: the proxy implements it for its
/// `HeaderMap`; tests and benches use slices of pairs.
pub trait HeaderLookup {
    /// The first value of the header `name` (given in lower case), if it is present and
    /// representable as text. Rules match only this first value.
    fn get(&self, name: &str) -> Option<&str>;
}

/// No headers at all: the default for observations that carry none (network faults, tests).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NoHeaders;

impl HeaderLookup for NoHeaders {
    fn get(&self, _name: &str) -> Option<&str> {
        None
    }
}

/// Pairs of (name, value); names compare ASCII case-insensitively, so callers need not
/// lower-case what they copied from the wire. (A slice is unsized, so an observation takes
/// `&&[..]`, an array or a `Vec`; the impls below cover those.)
impl HeaderLookup for [(&str, &str)] {
    fn get(&self, name: &str) -> Option<&str> {
        find_pair(self, name)
    }
}

fn find_pair<'h>(pairs: &'h [(&str, &str)], name: &str) -> Option<&'h str> {
    pairs
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|&(_, v)| v)
}

impl HeaderLookup for &[(&str, &str)] {
    fn get(&self, name: &str) -> Option<&str> {
        find_pair(self, name)
    }
}

impl<const N: usize> HeaderLookup for [(&str, &str); N] {
    fn get(&self, name: &str) -> Option<&str> {
        find_pair(self, name)
    }
}

impl HeaderLookup for Vec<(&str, &str)> {
    fn get(&self, name: &str) -> Option<&str> {
        find_pair(self, name)
    }
}

impl HeaderLookup for Vec<(String, String)> {
    fn get(&self, name: &str) -> Option<&str> {
        self.iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// One upstream exchange as the classifier sees it.
///
/// Build it with [`Observation::new`] and struct-update syntax, so a new field never breaks
/// a caller:
///
/// ```
/// use warden_config::Role;
/// use warden_policy::Observation;
///
/// let obs = Observation { status: Some(503), ..Observation::new(Role::Mcp, "POST", "/mcp") };
/// assert_eq!(obs.status, Some(503));
/// ```
#[derive(Clone, Copy)]
pub struct Observation<'a> {
    /// The route's role.
    pub role: Role,
    /// Upper-case request method.
    pub method: &'a str,
    /// Request path, without the query.
    pub path: &'a str,
    /// An oauth route AND the path is its `token_path`. Everything else — including other
    /// paths on an oauth route — is classified as a plain API request.
    pub token_request: bool,
    /// `grant_type` from the token request's form body, as sent (compared
    /// ASCII case-insensitively).
    pub grant_type: Option<&'a str>,
    /// `None` when the exchange failed below HTTP (see `error_kind`).
    pub status: Option<u16>,
    /// The raw `error` member of a token response, when the body was a JSON object whose
    /// `error` is a string. Sanitized here before any use.
    pub oauth_error: Option<&'a str>,
    /// The token response body had a non-empty string `access_token`.
    pub has_access_token: bool,
    /// A JSON-RPC error code seen in an mcp response (JSON or SSE). Never changes the
    /// built-in verdict; rules may match it.
    pub jsonrpc_error: Option<i64>,
    /// An mcp `tools/call` result with `isError: true` was seen in the body. Never changes
    /// the built-in verdict; `mcp_tool_error` rules match it.
    pub mcp_tool_error: bool,
    /// The network fault, when `status` is `None`.
    pub error_kind: Option<ErrorKind>,
    /// The answer's headers, for `header` rules; a lookup rather than a map so the proxy
    /// lends its own header map without copying it.
    pub response_headers: &'a dyn HeaderLookup,
    /// The request's headers, for `request_header` rules and `Mcp-Session-Id`; borrowed
    /// for the same reason.
    pub request_headers: &'a dyn HeaderLookup,
}

impl<'a> Observation<'a> {
    /// An exchange with no answer yet: no status, no body facts, no headers. Fill in the
    /// rest with struct-update syntax.
    pub const fn new(role: Role, method: &'a str, path: &'a str) -> Self {
        Observation {
            role,
            method,
            path,
            token_request: false,
            grant_type: None,
            status: None,
            oauth_error: None,
            has_access_token: false,
            jsonrpc_error: None,
            mcp_tool_error: false,
            error_kind: None,
            response_headers: &NoHeaders,
            request_headers: &NoHeaders,
        }
    }
}

impl std::fmt::Debug for Observation<'_> {
    /// Headers are left out: they may hold credentials, and `dyn HeaderLookup` cannot list
    /// them anyway. The raw `oauth_error` is shown sanitized, like everywhere else.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Observation")
            .field("role", &self.role)
            .field("method", &self.method)
            .field("path", &self.path)
            .field("token_request", &self.token_request)
            .field("grant_type", &self.grant_type.map(crate::sanitize))
            .field("status", &self.status)
            .field("oauth_error", &self.oauth_error.map(crate::sanitize))
            .field("has_access_token", &self.has_access_token)
            .field("jsonrpc_error", &self.jsonrpc_error)
            .field("mcp_tool_error", &self.mcp_tool_error)
            .field("error_kind", &self.error_kind)
            .finish_non_exhaustive()
    }
}
