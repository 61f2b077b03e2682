//! Metric label values (README › Admin listener (metrics)): every function here maps any input into a closed set,
//! so no upstream, however hostile, can grow the number of series.

use warden_config::ErrorKind;

/// Label for anything outside a closed set.
pub const OTHER: &str = "other";

/// The code and label of a 404 to a request that carried `Mcp-Session-Id`.
pub const SESSION_EXPIRED: &str = "session_expired";

/// OAuth error codes that are their own label.
///
/// RFC 6749 §5.2's six token-endpoint codes, plus `server_error` and
/// `temporarily_unavailable`. The latter two are RFC 6749 codes too (§4.1.2.1, registered in
/// the OAuth Extensions Error Registry); README › Classification names them in its table, token endpoints
/// return them in practice, and they say "the IdP is having trouble" as opposed to "the
/// IdP sent something unknown" — a distinction worth a series. The set stays closed.
pub const OAUTH_CODES: [&str; 8] = [
    "invalid_request",
    "invalid_client",
    "invalid_grant",
    "unauthorized_client",
    "unsupported_grant_type",
    "invalid_scope",
    "server_error",
    "temporarily_unavailable",
];

/// Every value [`oauth_code_label`] can return.
pub const OAUTH_CODE_LABELS: [&str; 9] = [
    OAUTH_CODES[0],
    OAUTH_CODES[1],
    OAUTH_CODES[2],
    OAUTH_CODES[3],
    OAUTH_CODES[4],
    OAUTH_CODES[5],
    OAUTH_CODES[6],
    OAUTH_CODES[7],
    OTHER,
];

/// Every value [`jsonrpc_code_label`] can return.
pub const JSONRPC_CODE_LABELS: [&str; 7] = [
    "-32700",
    "-32600",
    "-32601",
    "-32602",
    "-32603",
    "server_error",
    OTHER,
];

/// The label of a (sanitized) OAuth error code: itself when it is one of [`OAUTH_CODES`]
/// (compared ASCII case-insensitively, returned in lower case), else `other`. The event
/// keeps the full sanitized text; only the label is folded.
pub fn oauth_code_label(sanitized: &str) -> &'static str {
    OAUTH_CODES
        .iter()
        .find(|code| code.eq_ignore_ascii_case(sanitized))
        .copied()
        .unwrap_or(OTHER)
}

/// The label of a JSON-RPC error code (README › Admin listener (metrics)): the five standard codes as their decimal
/// text, the implementation-defined server range `-32099..=-32000` as `server_error`, and
/// everything else — application codes included — as `other`.
pub fn jsonrpc_code_label(code: i64) -> &'static str {
    match code {
        -32700 => JSONRPC_CODE_LABELS[0],
        -32600 => JSONRPC_CODE_LABELS[1],
        -32601 => JSONRPC_CODE_LABELS[2],
        -32602 => JSONRPC_CODE_LABELS[3],
        -32603 => JSONRPC_CODE_LABELS[4],
        -32099..=-32000 => JSONRPC_CODE_LABELS[5],
        _ => OTHER,
    }
}

/// Three ASCII digits for every status 100..=599, built at compile time so
/// [`status_label`] hands out `&'static str` without formatting or allocating.
static STATUS_DIGITS: [[u8; 3]; 500] = {
    let mut table = [[0u8; 3]; 500];
    let mut i = 0;
    while i < 500 {
        let n = i + 100;
        // Each digit is < 10, so the casts cannot truncate.
        table[i] = [
            b'0' + (n / 100) as u8,
            b'0' + (n / 10 % 10) as u8,
            b'0' + (n % 10) as u8,
        ];
        i += 1;
    }
    table
};

/// An HTTP status as a label: its decimal text for 100..=599, else `other` (hyper accepts
/// up to 999 from a peer; those are not worth a series each).
pub fn status_label(status: u16) -> &'static str {
    match status {
        100..=599 => {
            std::str::from_utf8(&STATUS_DIGITS[usize::from(status - 100)]).unwrap_or(OTHER)
        }
        _ => OTHER,
    }
}

/// The label of a network fault: its config name (`connect`, `timeout`, ...).
pub fn error_kind_label(kind: ErrorKind) -> &'static str {
    kind.as_str()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status_is_its_text() {
        for s in 100..=599u16 {
            assert_eq!(status_label(s), s.to_string());
        }
        for s in [0, 99, 600, 999, u16::MAX] {
            assert_eq!(status_label(s), OTHER);
        }
    }
}
