//! README › Admin listener's `idp_error_code` rule: the newest token failure's code, cleared by a newer
//! success or reset, never hidden by bookkeeping events — however many of them.
#![allow(unused_must_use)]

mod support;

use warden_config::{ErrorKind, Role, Verdict};
use warden_health::{ConnectionHealth, TokenOutcome};
use warden_policy::Event;

use support::*;

#[test]
fn the_code_follows_the_token_events() {
    // (what happens, the code after it)
    let table: [(&str, Step, Option<&str>); 12] = [
        ("nothing yet", |h| h.reset(tick()), None),
        (
            "revoked",
            |h| refresh_err(h, 400, Some("invalid_client")),
            Some("invalid_client"),
        ),
        (
            "mcp failure",
            |h| answer(h, Role::Mcp, 503),
            Some("invalid_client"),
        ),
        (
            "mcp recovery",
            |h| answer(h, Role::Mcp, 200),
            Some("invalid_client"),
        ),
        ("new login", login_ok, None),
        (
            "transient with a code",
            |h| refresh_err(h, 400, Some("temporarily_unavailable")),
            Some("temporarily_unavailable"),
        ),
        (
            "a newer failure replaces it",
            |h| refresh_err(h, 400, Some("invalid_request")),
            Some("invalid_request"),
        ),
        (
            "newest only: a failure without a code",
            |h| refresh_err(h, 503, None),
            None,
        ),
        (
            "revoked again",
            |h| refresh_err(h, 400, Some("invalid_grant")),
            Some("invalid_grant"),
        ),
        ("refresh succeeds", refresh_ok, None),
        (
            "401 names invalid_client",
            |h| refresh_err(h, 401, None),
            Some("invalid_client"),
        ),
        ("reset", |h| h.reset(tick()), None),
    ];
    let mut h = crm(100);
    for (name, step, code) in table {
        step(&mut h);
        assert_eq!(h.idp_error_code(), code, "{name}");
        assert_eq!(h.snapshot().idp_error_code.as_deref(), code, "{name}");
    }
}

#[test]
fn bookkeeping_events_never_hide_the_code() {
    let mut h = crm(2);
    refresh_err(&mut h, 400, Some("invalid_client"));
    // Circuit, probe and upstream events pile up on top of it.
    answer(&mut h, Role::Mcp, 503);
    fault(&mut h, Role::Mcp, ErrorKind::Timeout);
    probe(&mut h, Role::Mcp, 502);
    probe_fault(&mut h, Role::Mcp, ErrorKind::Connect);
    probe(&mut h, Role::Mcp, 200);
    // The close ended the failure run: the next success is not a recovery event.
    answer(&mut h, Role::Mcp, 200);
    assert_eq!(
        types(&h),
        [
            "circuit_closed",
            "probe_failed",
            "probe_failed",
            "circuit_opened",
            "upstream_failed_transient",
            "refresh_failed_revoked",
        ]
    );
    assert_eq!(h.idp_error_code(), Some("invalid_client"));
    let row = h.snapshot();
    assert_eq!(row.idp_error_code.as_deref(), Some("invalid_client"));
    assert_eq!(row.last_event.unwrap().kind.as_str(), "circuit_closed");
}

#[test]
fn the_code_outlives_the_ring() {
    // Ring of 50, then 60 probe failures: the revocation event is long gone.
    let mut h = health(&[Role::Mcp, Role::Oauth], 1, 50);
    refresh_err(&mut h, 400, Some("invalid_grant"));
    answer(&mut h, Role::Mcp, 503);
    for _ in 0..60 {
        probe(&mut h, Role::Mcp, 503);
    }
    assert_eq!(h.events().len(), 50);
    assert!(h.events().all(|e| e.kind.as_str() == "probe_failed"));
    assert_eq!(h.idp_error_code(), Some("invalid_grant"));
    assert_eq!(
        h.snapshot().idp_error_code.as_deref(),
        Some("invalid_grant")
    );

    // And the same past the ring for a success: the code stays cleared.
    refresh_ok(&mut h);
    for _ in 0..60 {
        probe(&mut h, Role::Mcp, 503);
    }
    assert_eq!(h.idp_error_code(), None);
}

#[test]
fn the_event_carries_the_code_it_was_recorded_with() {
    let mut h = crm(5);
    refresh_err(&mut h, 400, Some("invalid_grant"));
    refresh_err(&mut h, 400, Some("temporarily_unavailable"));
    let codes: Vec<_> = h
        .events()
        .map(|e| e.idp_error_code.as_deref().map(str::to_owned))
        .collect();
    assert_eq!(
        codes,
        [
            Some("temporarily_unavailable".to_owned()),
            Some("invalid_grant".to_owned())
        ]
    );
}

fn record_raw(h: &mut ConnectionHealth, code: &str) {
    // A caller that forgot to sanitize: the record sanitizes again.
    h.record_token(
        TokenOutcome {
            verdict: Verdict::Terminal,
            event: Event::RefreshFailedRevoked,
            code: Some(code),
            status: Some(400),
            error_kind: None,
            tls_detail: None,
            has_access_token: false,
            grant_type: None,
        },
        tick(),
    );
}

#[test]
fn only_sanitized_codes_are_stored() {
    let long = "a".repeat(5_000);
    let table = [
        ("https://evil.example/phish", Some("redacted".to_owned())),
        ("see www.evil.example", Some("redacted".to_owned())),
        (
            "Invalid_Grant<script>",
            Some("invalid_grantscript".to_owned()),
        ),
        (long.as_str(), Some("a".repeat(200))),
        ("<>", None),
    ];
    for (raw, want) in table {
        let mut h = crm(5);
        record_raw(&mut h, raw);
        assert_eq!(h.idp_error_code().map(str::to_owned), want, "{raw:.40}");
        assert_eq!(
            h.last_event()
                .unwrap()
                .idp_error_code
                .as_deref()
                .map(str::to_owned),
            want
        );
        assert!(h.needs_reauth());
    }
}
