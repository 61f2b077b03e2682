//! Every metric family warden exports, with its type and `# HELP` text, written once.
//!
//! The recording sites name a family through these constants, and `warden run` describes
//! every entry of [`ALL`] to the recorder, so a family cannot be recorded under a name that
//! has no HELP text, and a scrape explains itself without the README.

/// How a family is exported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Only ever goes up.
    Counter,
    /// Set to the current value.
    Gauge,
    /// A distribution, in seconds.
    Histogram,
}

/// One metric family.
#[derive(Debug, Clone, Copy)]
pub struct Family {
    /// The exported name.
    pub name: &'static str,
    /// Its type.
    pub kind: Kind,
    /// Its `# HELP` text.
    pub help: &'static str,
}

const fn family(name: &'static str, kind: Kind, help: &'static str) -> Family {
    Family { name, kind, help }
}

/// `warden_build_info{version}`.
pub const BUILD_INFO: Family = family(
    "warden_build_info",
    Kind::Gauge,
    "warden's version; always 1",
);
/// `warden_requests_total{connection,role,verdict}`.
pub const REQUESTS: Family = family(
    "warden_requests_total",
    Kind::Counter,
    "Requests answered, by the verdict on the upstream's answer (or short_circuit)",
);
/// `warden_request_duration_seconds{connection,role}`.
pub const REQUEST_DURATION: Family = family(
    "warden_request_duration_seconds",
    Kind::Histogram,
    "Time from a request's arrival until its response head goes to the client",
);
/// `warden_upstream_errors_total{connection,role,verdict,code}`.
pub const UPSTREAM_ERRORS: Family = family(
    "warden_upstream_errors_total",
    Kind::Counter,
    "Upstream answers and network faults that were not ok, by verdict and code (HTTP status, sanitized OAuth code or error kind)",
);
/// `warden_token_refresh_total{connection,result}`.
pub const TOKEN_REFRESH: Family = family(
    "warden_token_refresh_total",
    Kind::Counter,
    "refresh_token grants answered by the token endpoint, by result (success, transient, terminal)",
);
/// `warden_retries_total{connection,role,outcome}`.
pub const RETRIES: Family = family(
    "warden_retries_total",
    Kind::Counter,
    "Retry decisions by outcome: success, failed, exhausted, budget_exhausted, concurrency_limited, unsafe",
);
/// `warden_retries_in_flight`.
pub const RETRIES_IN_FLIGHT: Family = family(
    "warden_retries_in_flight",
    Kind::Gauge,
    "Retry slots held proxy-wide (limits.max_concurrent_retries), backoff included",
);
/// `warden_short_circuits_total{connection,role,reason}`.
pub const SHORT_CIRCUITS: Family = family(
    "warden_short_circuits_total",
    Kind::Counter,
    "Requests warden answered itself instead of the upstream, by reason (needs_reauth, circuit_open, upstream_busy)",
);
/// `warden_connection_state{connection,state}`.
pub const CONNECTION_STATE: Family = family(
    "warden_connection_state",
    Kind::Gauge,
    "1 for the connection's current state (healthy, degraded, circuit_open, needs_reauth), 0 for the others",
);
/// `warden_connection_needs_reauth{connection}`.
pub const CONNECTION_NEEDS_REAUTH: Family = family(
    "warden_connection_needs_reauth",
    Kind::Gauge,
    "1 while the connection needs a new login or new client credentials",
);
/// `warden_probes_total{connection,role,result}`.
pub const PROBES: Family = family(
    "warden_probes_total",
    Kind::Counter,
    "Background probes of an open circuit, by result (success, failure)",
);
/// `warden_jsonrpc_errors_total{connection,code_class}`.
pub const JSONRPC_ERRORS: Family = family(
    "warden_jsonrpc_errors_total",
    Kind::Counter,
    "JSON-RPC error objects in MCP answers, by code class",
);
/// `warden_mcp_tool_calls_total{connection,result}`.
pub const MCP_TOOL_CALLS: Family = family(
    "warden_mcp_tool_calls_total",
    Kind::Counter,
    "MCP tools/call answers, by result (ok, tool_error, jsonrpc_error)",
);
/// `warden_client_connections`.
pub const CLIENT_CONNECTIONS: Family = family(
    "warden_client_connections",
    Kind::Gauge,
    "Client connections open, proxy-wide",
);
/// `warden_config_reloads_total{result}`.
pub const CONFIG_RELOADS: Family = family(
    "warden_config_reloads_total",
    Kind::Counter,
    "Config reloads, by result (success, error)",
);

/// Every family, in the order the README lists them.
pub const ALL: &[Family] = &[
    BUILD_INFO,
    REQUESTS,
    REQUEST_DURATION,
    UPSTREAM_ERRORS,
    TOKEN_REFRESH,
    RETRIES,
    RETRIES_IN_FLIGHT,
    SHORT_CIRCUITS,
    CONNECTION_STATE,
    CONNECTION_NEEDS_REAUTH,
    PROBES,
    JSONRPC_ERRORS,
    MCP_TOOL_CALLS,
    CLIENT_CONNECTIONS,
    CONFIG_RELOADS,
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_prefixed_and_every_family_has_help() {
        let mut names: Vec<_> = ALL.iter().map(|f| f.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), ALL.len(), "a family is listed twice");
        for f in ALL {
            assert!(f.name.starts_with("warden_"), "{}", f.name);
            assert!(!f.help.trim().is_empty(), "{} has no HELP", f.name);
            let suffix_fits = match f.kind {
                Kind::Counter => f.name.ends_with("_total"),
                Kind::Histogram => f.name.ends_with("_seconds"),
                Kind::Gauge => !f.name.ends_with("_total"),
            };
            assert!(suffix_fits, "{}'s name does not fit its type", f.name);
        }
    }
}
