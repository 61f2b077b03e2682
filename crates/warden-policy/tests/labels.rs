//! Metric labels come from closed sets, whatever the input (README › Admin listener (metrics)).

use proptest::prelude::*;
use warden_policy::{
    JSONRPC_CODE_LABELS, OAUTH_CODE_LABELS, OAUTH_CODES, SESSION_EXPIRED, jsonrpc_code_label,
    oauth_code_label, sanitize_code, status_label,
};

#[test]
fn oauth_labels() {
    for code in [
        "invalid_request",
        "invalid_client",
        "invalid_grant",
        "unauthorized_client",
        "unsupported_grant_type",
        "invalid_scope",
        "server_error",
        "temporarily_unavailable",
    ] {
        assert_eq!(oauth_code_label(code), code);
        assert_eq!(oauth_code_label(&code.to_ascii_uppercase()), code);
    }
    for code in [
        "",
        "other",
        "invalid_token",
        "slow_down",
        "access_denied",
        "redacted",
        "invalid_grant2",
        "invalid_gran",
        " invalid_grant",
        SESSION_EXPIRED,
    ] {
        assert_eq!(oauth_code_label(code), "other", "{code:?}");
    }
    assert_eq!(OAUTH_CODE_LABELS.len(), OAUTH_CODES.len() + 1);
}

#[test]
fn jsonrpc_labels() {
    for (code, want) in [
        (-32700, "-32700"),
        (-32600, "-32600"),
        (-32601, "-32601"),
        (-32602, "-32602"),
        (-32603, "-32603"),
        (-32099, "server_error"),
        (-32050, "server_error"),
        (-32000, "server_error"),
        (-32100, "other"),
        (-31999, "other"),
        (-32604, "other"),
        (-32699, "other"),
        (-32701, "other"),
        (0, "other"),
        (1, "other"),
        (-1, "other"),
        (i64::MIN, "other"),
        (i64::MAX, "other"),
    ] {
        assert_eq!(jsonrpc_code_label(code), want, "{code}");
    }
}

proptest! {
    #[test]
    fn any_oauth_code_maps_into_the_closed_set(raw in any::<String>()) {
        prop_assert!(OAUTH_CODE_LABELS.contains(&oauth_code_label(&raw)));
        prop_assert!(OAUTH_CODE_LABELS.contains(&oauth_code_label(&sanitize_code(&raw))));
    }

    #[test]
    fn any_jsonrpc_code_maps_into_the_closed_set(code in any::<i64>()) {
        prop_assert!(JSONRPC_CODE_LABELS.contains(&jsonrpc_code_label(code)));
    }

    #[test]
    fn any_status_label_is_bounded(status in any::<u16>()) {
        let label = status_label(status);
        prop_assert!(label == "other" || (label.len() == 3 && (100..=599).contains(&status)));
    }
}
