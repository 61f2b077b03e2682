//! README › Connection health's per-route `degraded` and §6's `reason`: interleaved traffic on several routes,
//! a circuit closing on an idle connection, and the event that explains every state.
#![allow(unused_must_use)]

mod support;

use warden_config::{ErrorKind, Role, Verdict};
use warden_health::{GrantType, State, UpstreamOutcome};

use support::*;

/// The state after each step and whether that step changed it: one change per change of
/// the derivation, never a flap.
fn run(h: &mut warden_health::ConnectionHealth, steps: &[(&str, Step, State, bool)]) {
    for (name, step, want, changed) in steps {
        let c = step(h);
        assert_eq!(h.state(), *want, "{name}");
        assert_eq!(c.state_changed.is_some(), *changed, "{name}: {c:?}");
    }
}

#[test]
fn a_token_success_during_an_mcp_outage_keeps_the_connection_degraded() {
    let mut h = crm(100);
    run(
        &mut h,
        &[
            (
                "mcp 502",
                |h| answer(h, Role::Mcp, 502),
                State::Degraded,
                true,
            ),
            ("refresh 200", |h| refresh_ok(h), State::Degraded, false),
            (
                "mcp 502 again",
                |h| answer(h, Role::Mcp, 502),
                State::Degraded,
                false,
            ),
            ("login 200", |h| login_ok(h), State::Degraded, false),
            (
                "mcp 503",
                |h| answer(h, Role::Mcp, 503),
                State::Degraded,
                false,
            ),
            (
                "mcp 200",
                |h| answer(h, Role::Mcp, 200),
                State::Healthy,
                true,
            ),
        ],
    );
}

#[test]
fn two_failing_routes_need_two_recoveries() {
    let mut h = health(&[Role::Mcp, Role::Api, Role::Oauth], 100, 50);
    run(
        &mut h,
        &[
            (
                "api 503",
                |h| answer(h, Role::Api, 503),
                State::Degraded,
                true,
            ),
            (
                "refresh 503",
                |h| refresh_err(h, 503, None),
                State::Degraded,
                false,
            ),
            (
                "mcp 200",
                |h| answer(h, Role::Mcp, 200),
                State::Degraded,
                false,
            ),
            (
                "api 200",
                |h| answer(h, Role::Api, 200),
                State::Degraded,
                false,
            ),
            (
                "api 401 (auth)",
                |h| answer(h, Role::Api, 401),
                State::Degraded,
                false,
            ),
            ("refresh 200", |h| refresh_ok(h), State::Healthy, true),
            (
                "api 404 (client_error)",
                |h| answer(h, Role::Api, 404),
                State::Healthy,
                false,
            ),
        ],
    );
}

#[test]
fn an_idle_connection_turns_healthy_when_the_prober_closes_its_circuit() {
    let mut h = crm(2);
    run(
        &mut h,
        &[
            (
                "mcp 503",
                |h| answer(h, Role::Mcp, 503),
                State::Degraded,
                true,
            ),
            (
                "mcp 503",
                |h| answer(h, Role::Mcp, 503),
                State::CircuitOpen,
                true,
            ),
            (
                "probe 502",
                |h| probe(h, Role::Mcp, 502),
                State::CircuitOpen,
                false,
            ),
            (
                "probe 200",
                |h| probe(h, Role::Mcp, 200),
                State::Healthy,
                true,
            ),
        ],
    );
    assert!(!h.is_failing(Role::Mcp));
    assert_eq!(h.reason(), None);
    let row = h.snapshot();
    let mcp = row.routes.get(Role::Mcp).expect("mcp route");
    assert!(!mcp.failing);
    assert_eq!(mcp.since, None);
    assert_eq!(
        mcp.last_failure.as_ref().map(|e| e.status),
        Some(Some(503)),
        "the newest failure stays visible after the run ends"
    );
}

#[test]
fn a_circuit_closing_on_one_route_leaves_another_failing() {
    let mut h = health(&[Role::Mcp, Role::Api], 1, 50);
    answer(&mut h, Role::Mcp, 503);
    answer(&mut h, Role::Api, 503);
    assert_eq!(h.state(), State::CircuitOpen);
    probe(&mut h, Role::Mcp, 200);
    assert_eq!(h.state(), State::CircuitOpen, "api is still open");
    probe(&mut h, Role::Api, 204);
    assert_eq!(h.state(), State::Healthy);
}

#[test]
fn the_reason_explains_every_state_and_never_contradicts_it() {
    let mut h = crm(3);
    assert_eq!(h.reason(), None, "healthy has no reason");

    answer(&mut h, Role::Mcp, 502);
    refresh_ok(&mut h);
    assert_eq!(h.state(), State::Degraded);
    assert_eq!(h.last_event().unwrap().kind.as_str(), "refresh_succeeded");
    let reason = h.reason().expect("degraded has a reason");
    assert_eq!(
        (reason.kind.as_str(), reason.role, reason.status),
        ("upstream_failed_transient", Some(Role::Mcp), Some(502)),
        "the failing route's failure, not the newest event"
    );

    fault(&mut h, Role::Mcp, ErrorKind::Timeout);
    let reason = h.reason().unwrap();
    assert_eq!(
        reason.error_kind,
        Some(ErrorKind::Timeout),
        "the failing route's newest failure"
    );

    fault(&mut h, Role::Mcp, ErrorKind::Connect);
    assert_eq!(h.state(), State::CircuitOpen);
    refresh_ok(&mut h);
    let reason = h.reason().unwrap();
    assert_eq!(
        (reason.kind.as_str(), reason.error_kind),
        ("circuit_opened", Some(ErrorKind::Connect)),
        "the failure that opened the circuit"
    );

    refresh_err(&mut h, 400, Some("invalid_grant"));
    answer(&mut h, Role::Mcp, 503);
    probe(&mut h, Role::Mcp, 502);
    assert_eq!(h.state(), State::NeedsReauth);
    let reason = h.reason().unwrap();
    assert_eq!(
        (
            reason.kind.as_str(),
            reason.idp_error_code.as_deref(),
            reason.grant_type
        ),
        (
            "refresh_failed_revoked",
            Some("invalid_grant"),
            Some(GrantType::RefreshToken)
        )
    );
    assert_eq!(h.snapshot().reason.as_ref(), Some(reason));

    login_ok(&mut h);
    probe(&mut h, Role::Mcp, 200);
    assert_eq!(h.state(), State::Healthy);
    assert_eq!(h.snapshot().reason, None);
}

#[test]
fn a_terminal_rule_verdict_on_mcp_is_the_reason_for_needs_reauth() {
    let mut h = crm(5);
    let terminal = UpstreamOutcome {
        verdict: Verdict::Terminal,
        status: Some(200),
        error_kind: None,
        tls_detail: None,
    };
    let c = h.record_upstream(Role::Mcp, terminal, tick());
    assert_eq!(c.state_changed, Some((State::Healthy, State::NeedsReauth)));
    let reason = h.reason().unwrap();
    assert_eq!(
        (reason.kind.as_str(), reason.role, reason.verdict),
        (
            "upstream_failed_terminal",
            Some(Role::Mcp),
            Some(Verdict::Terminal)
        )
    );
    // A second one while set records no second event.
    h.record_upstream(Role::Mcp, terminal, tick());
    assert_eq!(types(&h), ["upstream_failed_terminal"]);
}

#[test]
fn token_events_carry_their_grant_type() {
    let mut h = crm(100);
    token(&mut h, "client_credentials", Some(401), None, false, None);
    let e = h.last_event().unwrap();
    assert_eq!(e.kind.as_str(), "refresh_failed_revoked");
    assert_eq!(e.grant_type, Some(GrantType::ClientCredentials));
    token(&mut h, "something-made-up", Some(503), None, false, None);
    assert_eq!(h.last_event().unwrap().grant_type, Some(GrantType::Other));
    refresh_ok(&mut h);
    assert_eq!(
        h.last_event().unwrap().grant_type,
        Some(GrantType::RefreshToken)
    );
}

#[test]
fn the_failure_run_remembers_when_it_began() {
    let mut h = crm(100);
    answer(&mut h, Role::Mcp, 503);
    let since = h.snapshot().routes.get(Role::Mcp).unwrap().since;
    assert!(since.is_some());
    answer(&mut h, Role::Mcp, 502);
    answer(&mut h, Role::Mcp, 401);
    let row = h.snapshot();
    let mcp = row.routes.get(Role::Mcp).unwrap();
    assert_eq!(mcp.since, since, "the run continues");
    assert_eq!(mcp.last_failure.as_ref().unwrap().status, Some(502));
    assert!(!row.routes.get(Role::Oauth).unwrap().failing);
}
