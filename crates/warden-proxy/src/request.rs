//! What the data plane keeps of a request once it has gone upstream: the facts
//! classification and the record stage still need.

use http::header::{HeaderName, HeaderValue};
use http::uri::PathAndQuery;
use http::{HeaderMap, Method};
use warden_policy::HeaderLookup;

use crate::observe::jsonrpc::{self, MessageFacts};

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
    /// The request's `tools/call` ids, which tell tool results in an MCP answer.
    pub tools: ToolCalls,
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

/// Which answers of an MCP exchange are `tools/call` results.
pub(crate) enum ToolCalls {
    /// The request was read and holds no `tools/call`.
    None,
    /// The ids of the request's `tools/call` messages.
    Ids(Vec<serde_json::Value>),
    /// The request body was not read (too large): only `isError: true`, which only a tool
    /// result carries, is counted.
    Unknown,
}

impl ToolCalls {
    /// From the request body, when warden read all of it.
    pub(crate) fn of_request(body: Option<&[u8]>) -> ToolCalls {
        match body {
            None => ToolCalls::Unknown,
            Some(body) => {
                let ids = jsonrpc::tool_call_ids(body);
                if ids.is_empty() {
                    ToolCalls::None
                } else {
                    ToolCalls::Ids(ids)
                }
            }
        }
    }

    pub(crate) fn answers(&self, message: &MessageFacts) -> bool {
        match self {
            ToolCalls::None => false,
            ToolCalls::Ids(ids) => message.id.as_ref().is_some_and(|id| ids.contains(id)),
            ToolCalls::Unknown => message.tool_error == Some(true),
        }
    }
}
