//! Metric handles of one route, resolved once when the route is built so the hot path
//! only touches atomics, never the registry.

use metrics::{Counter, Histogram, counter, histogram};
use warden_config::{Role, Verdict};
use warden_policy::JSONRPC_CODE_LABELS;

use crate::catalogue;

/// `warden_requests_total` verdict labels: the classifier's five plus warden's own answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Verdict(Verdict),
    ShortCircuit,
}

impl Outcome {
    fn index(self) -> usize {
        match self {
            Outcome::Verdict(v) => verdict_index(v),
            Outcome::ShortCircuit => Verdict::ALL.len(),
        }
    }
}

fn verdict_index(v: Verdict) -> usize {
    match v {
        Verdict::Ok => 0,
        Verdict::Transient => 1,
        Verdict::Terminal => 2,
        Verdict::Auth => 3,
        Verdict::ClientError => 4,
    }
}

/// `warden_mcp_tool_calls_total` results: what a `tools/call` answer said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ToolResult {
    Ok,
    /// A result with `isError: true`: the tool failed.
    ToolError,
    /// A JSON-RPC error object (unknown tool, bad arguments on some servers).
    JsonRpcError,
}

impl ToolResult {
    const ALL: [ToolResult; 3] = [
        ToolResult::Ok,
        ToolResult::ToolError,
        ToolResult::JsonRpcError,
    ];

    const fn as_str(self) -> &'static str {
        match self {
            ToolResult::Ok => "ok",
            ToolResult::ToolError => "tool_error",
            ToolResult::JsonRpcError => "jsonrpc_error",
        }
    }

    const fn index(self) -> usize {
        match self {
            ToolResult::Ok => 0,
            ToolResult::ToolError => 1,
            ToolResult::JsonRpcError => 2,
        }
    }
}

/// `warden_token_refresh_total` results, in label order.
const REFRESH_RESULTS: [&str; 3] = ["success", "transient", "terminal"];

pub(crate) struct RouteMetrics {
    connection: String,
    role: Role,
    requests: [Counter; Verdict::ALL.len() + 1],
    duration: Histogram,
    /// Oauth routes only: `refresh_token` grants by result.
    token_refresh: Option<[Counter; REFRESH_RESULTS.len()]>,
    /// Mcp routes only: JSON-RPC errors by code label, in `JSONRPC_CODE_LABELS` order.
    jsonrpc: Option<[Counter; JSONRPC_CODE_LABELS.len()]>,
    /// Mcp routes only: `tools/call` answers by result, in `ToolResult::ALL` order.
    tool_calls: Option<[Counter; ToolResult::ALL.len()]>,
    /// `warden_short_circuits_total` by reason, in `SHORT_CIRCUIT_REASONS` order.
    short_circuits: [Counter; SHORT_CIRCUIT_REASONS.len()],
    /// `warden_probes_total` by result: success, failure.
    probes: [Counter; 2],
}

const SHORT_CIRCUIT_REASONS: [&str; 3] = ["needs_reauth", "circuit_open", "upstream_busy"];

impl RouteMetrics {
    pub(crate) fn new(connection: &str, role: Role) -> Self {
        let labels = |verdict: &'static str| {
            [
                ("connection", connection.to_owned()),
                ("role", role.as_str().to_owned()),
                ("verdict", verdict.to_owned()),
            ]
        };
        let requests = std::array::from_fn(|i| match Verdict::ALL.get(i) {
            Some(v) => counter!(catalogue::REQUESTS.name, &labels(v.as_str())),
            None => counter!(catalogue::REQUESTS.name, &labels("short_circuit")),
        });
        debug_assert!(
            Verdict::ALL
                .iter()
                .enumerate()
                .all(|(i, v)| verdict_index(*v) == i)
        );
        let duration = histogram!(
            catalogue::REQUEST_DURATION.name,
            "connection" => connection.to_owned(),
            "role" => role.as_str()
        );
        let token_refresh = (role == Role::Oauth).then(|| {
            REFRESH_RESULTS.map(|result| {
                counter!(
                    catalogue::TOKEN_REFRESH.name,
                    "connection" => connection.to_owned(),
                    "result" => result
                )
            })
        });
        let jsonrpc = (role == Role::Mcp).then(|| {
            JSONRPC_CODE_LABELS.map(|code| {
                counter!(
                    catalogue::JSONRPC_ERRORS.name,
                    "connection" => connection.to_owned(),
                    "code" => code
                )
            })
        });
        let tool_calls = (role == Role::Mcp).then(|| {
            ToolResult::ALL.map(|result| {
                counter!(
                    catalogue::MCP_TOOL_CALLS.name,
                    "connection" => connection.to_owned(),
                    "result" => result.as_str()
                )
            })
        });
        let short_circuits = SHORT_CIRCUIT_REASONS.map(|reason| {
            counter!(
                catalogue::SHORT_CIRCUITS.name,
                "connection" => connection.to_owned(),
                "role" => role.as_str(),
                "reason" => reason
            )
        });
        let probes = ["success", "failure"].map(|result| {
            counter!(
                catalogue::PROBES.name,
                "connection" => connection.to_owned(),
                "role" => role.as_str(),
                "result" => result
            )
        });
        RouteMetrics {
            short_circuits,
            probes,
            connection: connection.to_owned(),
            role,
            requests,
            duration,
            token_refresh,
            jsonrpc,
            tool_calls,
        }
    }

    /// One `tools/call` answer.
    pub(crate) fn tool_call(&self, result: ToolResult) {
        if let Some(handles) = &self.tool_calls {
            handles[result.index()].increment(1);
        }
    }

    pub(crate) fn record(&self, outcome: Outcome, seconds: f64) {
        self.requests[outcome.index()].increment(1);
        self.duration.record(seconds);
    }

    /// A non-ok upstream answer, by verdict and code label. Labels come from closed sets
    /// (the classifier's labels), so the registry lookup here cannot grow without bound;
    /// it happens only on failures.
    pub(crate) fn upstream_error(&self, verdict: Verdict, code: &'static str) {
        counter!(
            catalogue::UPSTREAM_ERRORS.name,
            "connection" => self.connection.clone(),
            "role" => self.role.as_str(),
            "verdict" => verdict.as_str(),
            "code" => code
        )
        .increment(1);
    }

    /// A request answered by warden for the upstream; `reason` is one of
    /// `needs_reauth`, `circuit_open`, `upstream_busy`.
    pub(crate) fn short_circuit(&self, reason: &'static str, seconds: f64) {
        self.record(Outcome::ShortCircuit, seconds);
        if let Some(i) = SHORT_CIRCUIT_REASONS.iter().position(|r| *r == reason) {
            self.short_circuits[i].increment(1);
        }
    }

    pub(crate) fn probe(&self, ok: bool) {
        self.probes[usize::from(!ok)].increment(1);
    }

    /// A `refresh_token` grant's outcome.
    pub(crate) fn token_refresh(&self, verdict: Verdict) {
        let index = match verdict {
            Verdict::Ok => 0,
            Verdict::Terminal => 2,
            Verdict::Transient | Verdict::Auth | Verdict::ClientError => 1,
        };
        if let Some(handles) = &self.token_refresh {
            handles[index].increment(1);
        }
    }

    /// A JSON-RPC error object seen in an MCP response body.
    pub(crate) fn jsonrpc_error(&self, label: &'static str) {
        if let Some(handles) = &self.jsonrpc {
            let index = JSONRPC_CODE_LABELS
                .iter()
                .position(|l| *l == label)
                .unwrap_or(JSONRPC_CODE_LABELS.len() - 1);
            handles[index].increment(1);
        }
    }
}
