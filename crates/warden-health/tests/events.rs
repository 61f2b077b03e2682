//! Which events are recorded when (README › Connection health), and the ring that keeps them.
#![allow(unused_must_use)]

mod support;

use warden_config::{ErrorKind, Role, Verdict};
use warden_health::{EventType, RoleSet};

use support::*;

#[test]
fn upstream_outcomes_record_on_change_only() {
    let mut h = crm(100);
    // (status, the events after it, newest first)
    let table: [(u16, &[&str]); 12] = [
        (200, &[]),
        (503, &["upstream_failed_transient"]),
        (502, &["upstream_failed_transient"]),
        (504, &["upstream_failed_transient"]),
        (401, &["upstream_failed_transient"]),
        (404, &["upstream_failed_transient"]),
        (503, &["upstream_failed_transient"]),
        (200, &["upstream_recovered", "upstream_failed_transient"]),
        (200, &["upstream_recovered", "upstream_failed_transient"]),
        (403, &["upstream_recovered", "upstream_failed_transient"]),
        (404, &["upstream_recovered", "upstream_failed_transient"]),
        (
            429,
            &[
                "upstream_failed_transient",
                "upstream_recovered",
                "upstream_failed_transient",
            ],
        ),
    ];
    for (n, (status, want)) in table.into_iter().enumerate() {
        answer(&mut h, Role::Mcp, status);
        assert_eq!(types(&h), want, "step {n}: {status}");
    }
}

#[test]
fn auth_and_client_error_neither_end_nor_start_a_run() {
    let mut h = crm(100);
    for status in [401, 403, 404, 400] {
        answer(&mut h, Role::Mcp, status);
    }
    assert!(types(&h).is_empty(), "no run started");
    answer(&mut h, Role::Mcp, 503);
    for status in [401, 403, 404, 400] {
        answer(&mut h, Role::Mcp, status);
    }
    answer(&mut h, Role::Mcp, 503);
    assert_eq!(types(&h), ["upstream_failed_transient"], "the run went on");
}

#[test]
fn upstream_events_carry_the_answer() {
    let mut h = crm(100);
    fault(&mut h, Role::Mcp, ErrorKind::Dns);
    answer(&mut h, Role::Mcp, 204);
    let events: Vec<_> = h.events().collect();
    assert_eq!(events[0].kind, EventType::UpstreamRecovered);
    assert_eq!(
        (events[0].status, events[0].error_kind, events[0].verdict),
        (Some(204), None, Some(Verdict::Ok))
    );
    assert_eq!(events[1].kind, EventType::UpstreamFailedTransient);
    assert_eq!(
        (events[1].status, events[1].error_kind, events[1].verdict),
        (None, Some(ErrorKind::Dns), Some(Verdict::Transient))
    );
    assert!(events.iter().all(|e| e.role == Some(Role::Mcp)));
    assert!(events.iter().all(|e| e.idp_error_code.is_none()));
}

#[test]
fn failure_runs_are_per_route() {
    let mut h = health(&[Role::Mcp, Role::Api, Role::Oauth], 100, 50);
    answer(&mut h, Role::Mcp, 503);
    answer(&mut h, Role::Api, 503);
    answer(&mut h, Role::Api, 200);
    answer(&mut h, Role::Mcp, 503);
    answer(&mut h, Role::Oauth, 500); // a non-token request on the oauth route
    let got: Vec<_> = h
        .events()
        .map(|e| (e.kind.as_str(), e.role.map(Role::as_str)))
        .collect();
    assert_eq!(
        got,
        [
            ("upstream_failed_transient", Some("oauth")),
            ("upstream_recovered", Some("api")),
            ("upstream_failed_transient", Some("api")),
            ("upstream_failed_transient", Some("mcp")),
        ]
    );
}

#[test]
fn every_token_response_records_one_event() {
    let mut h = crm(100);
    login_ok(&mut h);
    refresh_ok(&mut h);
    refresh_ok(&mut h);
    refresh_err(&mut h, 503, None);
    refresh_err(&mut h, 503, None);
    refresh_fault(&mut h, ErrorKind::Reset);
    refresh_err(&mut h, 400, Some("invalid_grant"));
    login_err(&mut h, 400, Some("invalid_client"));
    assert_eq!(
        types(&h),
        [
            "refresh_failed_revoked",
            "refresh_failed_revoked",
            "refresh_failed_transient",
            "refresh_failed_transient",
            "refresh_failed_transient",
            "refresh_succeeded",
            "refresh_succeeded",
            "connect_completed",
        ]
    );
    let newest = h.last_event().unwrap();
    assert_eq!(newest.role, Some(Role::Oauth));
    assert_eq!(newest.status, Some(400));
    assert_eq!(newest.verdict, Some(Verdict::Terminal));
    assert_eq!(newest.idp_error_code.as_deref(), Some("invalid_client"));
    let fault = h.events().nth(2).unwrap();
    assert_eq!(
        (fault.status, fault.error_kind),
        (None, Some(ErrorKind::Reset))
    );
}

#[test]
fn the_circuit_records_opened_probe_failed_closed() {
    let mut h = crm(3);
    fault(&mut h, Role::Mcp, ErrorKind::Tls);
    fault(&mut h, Role::Mcp, ErrorKind::Tls);
    let c = fault(&mut h, Role::Mcp, ErrorKind::Tls);
    assert_eq!(c.circuits_opened, RoleSet::from_iter([Role::Mcp]));
    probe_fault(&mut h, Role::Mcp, ErrorKind::Tls);
    probe_fault(&mut h, Role::Mcp, ErrorKind::Tls);
    probe(&mut h, Role::Mcp, 200);
    assert_eq!(
        types(&h),
        [
            "circuit_closed",
            "probe_failed",
            "probe_failed",
            "circuit_opened",
            "upstream_failed_transient",
        ]
    );
    // A bad certificate shows as an open circuit with `tls` in its events.
    let opened = h.events().nth(3).unwrap();
    assert_eq!(opened.error_kind, Some(ErrorKind::Tls));
    assert_eq!(opened.verdict, Some(Verdict::Transient));
    assert_eq!(opened.role, Some(Role::Mcp));
    assert!(h.events().nth(1).unwrap().error_kind == Some(ErrorKind::Tls));
}

#[test]
fn a_first_failure_that_opens_the_circuit_records_both_in_order() {
    let mut h = crm(1);
    refresh_err(&mut h, 503, None);
    answer(&mut h, Role::Mcp, 502);
    assert_eq!(
        types(&h),
        [
            "circuit_opened",
            "upstream_failed_transient",
            "circuit_opened",
            "refresh_failed_transient",
        ]
    );
}

#[test]
fn reset_records_reset_admin_without_a_role() {
    let mut h = crm(5);
    h.reset(tick());
    let e = h.last_event().unwrap();
    assert_eq!(e.kind, EventType::ResetAdmin);
    assert_eq!(
        (e.role, e.status, e.verdict, e.error_kind),
        (None, None, None, None)
    );
    assert!(e.idp_error_code.is_none());
}

#[test]
fn the_ring_keeps_the_newest_n_newest_first() {
    let mut h = health(&[Role::Oauth], 1_000, 5);
    for status in 500..508 {
        refresh_err(&mut h, status, None);
    }
    let statuses: Vec<_> = h.events().map(|e| e.status).collect();
    assert_eq!(
        statuses,
        [507, 506, 505, 504, 503].map(Some),
        "the oldest three fell out"
    );
    let detail = h.detail();
    assert_eq!(
        detail.events.iter().map(|e| e.status).collect::<Vec<_>>(),
        statuses
    );
    assert_eq!(detail.row.last_event.as_ref(), detail.events.first());
    // Newest first by time too.
    assert!(detail.events.windows(2).all(|w| w[0].at > w[1].at));
}
