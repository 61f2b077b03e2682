//! What the data plane keeps of a request once it has gone upstream: the facts
//! classification and the record stage still need.

use http::header::{HeaderName, HeaderValue};
use http::uri::PathAndQuery;
use http::{HeaderMap, Method};
use warden_policy::HeaderLookup;

/// What classification needs to know about a request after it has gone upstream; shared by
/// its attempts.
pub(crate) struct RequestInfo {
    pub method: Method,
    pub path: PathAndQuery,
    pub watched: WatchedHeaders,
    pub token_request: bool,
    pub grant_type: Option<String>,
    /// A `refresh_token` grant: counted in `warden_token_refresh_total`.
    pub refresh_grant: bool,
    /// For the access log; `None` when it is off.
    pub request_id: Option<HeaderValue>,
    pub trace_id: Option<String>,
}

/// The request headers the classifier may consult, kept past forwarding. Usually one or
/// none, so a linear scan beats any map.
#[derive(Clone, Default)]
pub(crate) struct WatchedHeaders(pub Vec<(HeaderName, HeaderValue)>);

impl WatchedHeaders {
    pub(crate) fn capture(names: &[HeaderName], headers: &HeaderMap) -> Self {
        WatchedHeaders(
            names
                .iter()
                .filter_map(|n| headers.get(n).map(|v| (n.clone(), v.clone())))
                .collect(),
        )
    }
}

impl HeaderLookup for WatchedHeaders {
    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n.as_str().eq_ignore_ascii_case(name))
            .and_then(|(_, v)| v.to_str().ok())
    }
}

/// The upstream's response headers, when there was a response.
pub(crate) struct ResponseHeaders<'a>(pub Option<&'a HeaderMap>);

impl HeaderLookup for ResponseHeaders<'_> {
    fn get(&self, name: &str) -> Option<&str> {
        self.0?.get(name)?.to_str().ok()
    }
}
