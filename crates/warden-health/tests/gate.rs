//! The gate: each state × role × kind of request (README › Retries's short-circuits), and
//! `Retry-After`'s rounding.
#![allow(unused_must_use)]

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use warden_config::{ErrorKind, Role, Verdict};
use warden_health::{ConnectionHealth, Gate, GateRequest, ProbeOutcome, State, TokenOutcome};
use warden_policy::Event;

use support::*;

/// What the gate should say, without the details.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Want {
    /// Forward.
    F,
    /// NeedsReauth.
    R,
    /// CircuitOpen.
    C,
}
use Want::{C, F, R};

fn short(gate: &Gate) -> Want {
    match gate {
        Gate::Forward => F,
        Gate::NeedsReauth { .. } => R,
        Gate::CircuitOpen { .. } => C,
    }
}

const REQUESTS: [GateRequest; 3] = [
    GateRequest::NotToken,
    GateRequest::RefreshGrant,
    GateRequest::OtherGrant,
];

fn all_routes() -> ConnectionHealth {
    health(&[Role::Mcp, Role::Api, Role::Oauth], 2, 50)
}

#[test]
fn gate_table() {
    // Per setup: the expected answer for role × request, requests in the order
    // NotToken, RefreshGrant, OtherGrant.
    type Row = (&'static str, Step, State, [[Want; 3]; 3]);
    let table: [Row; 8] = [
        ("healthy", |h| h.reset(tick()), State::Healthy, [[F; 3]; 3]),
        (
            "degraded",
            |h| refresh_err(h, 400, None),
            State::Degraded,
            [[F; 3]; 3],
        ),
        (
            "mcp circuit open",
            |h| {
                answer(h, Role::Mcp, 503);
                answer(h, Role::Mcp, 500)
            },
            State::CircuitOpen,
            [[C; 3], [F; 3], [F; 3]],
        ),
        (
            "api circuit open",
            |h| {
                fault(h, Role::Api, ErrorKind::Tls);
                fault(h, Role::Api, ErrorKind::Tls)
            },
            State::CircuitOpen,
            [[F; 3], [C; 3], [F; 3]],
        ),
        (
            "oauth circuit open",
            |h| {
                refresh_fault(h, ErrorKind::Connect);
                refresh_err(h, 503, None)
            },
            State::CircuitOpen,
            [[F; 3], [F; 3], [C; 3]],
        ),
        (
            "needs_reauth",
            |h| refresh_err(h, 401, None),
            State::NeedsReauth,
            [[R; 3], [R; 3], [F, R, F]],
        ),
        (
            "needs_reauth, oauth circuit open",
            |h| {
                refresh_err(h, 401, None);
                answer(h, Role::Oauth, 502);
                answer(h, Role::Oauth, 502)
            },
            State::NeedsReauth,
            [[R; 3], [R; 3], [C, R, C]],
        ),
        (
            "needs_reauth, mcp circuit open",
            |h| {
                answer(h, Role::Mcp, 503);
                answer(h, Role::Mcp, 503);
                refresh_err(h, 401, None)
            },
            State::NeedsReauth,
            [[R; 3], [R; 3], [F, R, F]],
        ),
    ];
    let now = Instant::now();
    for (name, setup, state, want) in table {
        let mut h = all_routes();
        setup(&mut h);
        assert_eq!(h.state(), state, "{name}");
        for (role, row) in [Role::Mcp, Role::Api, Role::Oauth].into_iter().zip(want) {
            for (request, want) in REQUESTS.into_iter().zip(row) {
                let gate = h.gate(role, request, now);
                assert_eq!(
                    short(&gate),
                    want,
                    "{name}: {role} {request:?} got {gate:?}"
                );
                assert_eq!(
                    gate.reason(),
                    match want {
                        F => None,
                        R => Some("needs_reauth"),
                        C => Some("circuit_open"),
                    }
                );
                assert_eq!(gate.is_forward(), want == F);
            }
        }
    }
}

/// What a user rule such as `{status: 500-599} -> terminal` gives a token response.
fn terminal_without_code() -> TokenOutcome<'static> {
    TokenOutcome {
        verdict: Verdict::Terminal,
        event: Event::RefreshFailedRevoked,
        code: None,
        status: Some(500),
        error_kind: None,
        tls_detail: None,
        has_access_token: false,
        grant_type: None,
    }
}

#[test]
fn needs_reauth_carries_the_terminal_code() {
    let table: [(&str, Step, Option<&str>); 7] = [
        (
            "a later terminal answer without a code keeps the earlier code",
            |h| {
                refresh_err(h, 400, Some("invalid_client"));
                h.record_token(terminal_without_code(), tick())
            },
            Some("invalid_client"),
        ),
        (
            "a terminal answer without a code",
            |h| h.record_token(terminal_without_code(), tick()),
            None,
        ),
        (
            "401 without error",
            |h| refresh_err(h, 401, None),
            Some("invalid_client"),
        ),
        (
            "400 invalid_grant",
            |h| refresh_err(h, 400, Some("invalid_grant")),
            Some("invalid_grant"),
        ),
        (
            "upper case",
            |h| refresh_err(h, 400, Some("Unauthorized_Client")),
            Some("unauthorized_client"),
        ),
        (
            "a later login failing transiently keeps the terminal code",
            |h| {
                refresh_err(h, 400, Some("invalid_client"));
                login_err(h, 503, None)
            },
            Some("invalid_client"),
        ),
        (
            "a later terminal code replaces it",
            |h| {
                refresh_err(h, 400, Some("invalid_grant"));
                login_err(h, 400, Some("invalid_client"))
            },
            Some("invalid_client"),
        ),
    ];
    let now = Instant::now();
    for (name, setup, code) in table {
        let mut h = crm(5);
        setup(&mut h);
        let want = Gate::NeedsReauth {
            idp_error_code: code.map(Arc::from),
        };
        assert_eq!(
            h.gate(Role::Mcp, GateRequest::NotToken, now),
            want,
            "{name}"
        );
        assert_eq!(
            h.gate(Role::Oauth, GateRequest::RefreshGrant, now),
            want,
            "{name}"
        );
    }
}

#[test]
fn the_short_circuit_code_outlives_the_rows_code() {
    let mut h = crm(5);
    refresh_err(&mut h, 400, Some("invalid_client"));
    login_err(&mut h, 503, None);
    assert_eq!(
        h.idp_error_code(),
        None,
        "the row follows the newest token event"
    );
    assert_eq!(
        h.gate(Role::Mcp, GateRequest::NotToken, Instant::now()),
        Gate::NeedsReauth {
            idp_error_code: Some(Arc::from("invalid_client"))
        }
    );
}

#[test]
fn after_clearing_everything_forwards() {
    let now = Instant::now();
    let clearers: [(&str, Step); 2] = [("login", login_ok), ("reset", |h| h.reset(tick()))];
    for (name, clear) in clearers {
        let mut h = crm(5);
        refresh_err(&mut h, 400, Some("invalid_grant"));
        clear(&mut h);
        for role in [Role::Mcp, Role::Oauth] {
            for request in REQUESTS {
                assert_eq!(h.gate(role, request, now), Gate::Forward, "{name}");
            }
        }
    }
}

fn open_mcp() -> ConnectionHealth {
    let mut h = crm(1);
    answer(&mut h, Role::Mcp, 503);
    h
}

fn retry_after(h: &ConnectionHealth, now: Instant) -> Duration {
    match h.gate(Role::Mcp, GateRequest::NotToken, now) {
        Gate::CircuitOpen { retry_after } => retry_after,
        other => panic!("expected an open circuit, got {other:?}"),
    }
}

#[test]
fn retry_after_counts_up_to_the_next_probe() {
    let now = Instant::now();
    let ms = Duration::from_millis;
    let table = [
        ("1.2 s", Some(now + ms(1_200)), 2),
        ("0.3 s", Some(now + ms(300)), 1),
        ("exactly 3 s", Some(now + ms(3_000)), 3),
        ("3.001 s", Some(now + ms(3_001)), 4),
        ("now", Some(now), 1),
        ("past", now.checked_sub(ms(2_500)), 1),
        ("unknown", None, 1),
    ];
    for (name, next, secs) in table {
        let mut h = open_mcp();
        if let Some(next) = next {
            h.set_next_probe(Role::Mcp, next);
        }
        assert_eq!(retry_after(&h, now), Duration::from_secs(secs), "{name}");
    }
}

#[test]
fn retry_after_follows_the_probers_schedule() {
    let t0 = Instant::now();
    let mut h = open_mcp();
    assert_eq!(
        retry_after(&h, t0),
        Duration::from_secs(1),
        "before the prober says"
    );
    h.set_next_probe(Role::Mcp, t0 + Duration::from_secs(1));
    // The probe fails; the prober backs off to 2 s later.
    h.record_probe(
        Role::Mcp,
        ProbeOutcome::answered(503, Some(t0 + Duration::from_secs(3))),
        tick(),
    );
    let t1 = t0 + Duration::from_millis(1_100);
    assert_eq!(retry_after(&h, t1), Duration::from_secs(2));
    assert_eq!(h.next_probe(Role::Mcp), Some(t0 + Duration::from_secs(3)));

    // Closed: the schedule is gone, and a late word from the prober is ignored.
    probe(&mut h, Role::Mcp, 200);
    h.set_next_probe(Role::Mcp, t0 + Duration::from_secs(60));
    assert_eq!(h.next_probe(Role::Mcp), None);
    // The next outage starts without a schedule.
    answer(&mut h, Role::Mcp, 503);
    assert_eq!(retry_after(&h, t1), Duration::from_secs(1));
}
