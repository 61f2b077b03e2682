//! README › Connection health's state machine, transition by transition.
#![allow(unused_must_use)]

mod support;

use warden_config::{ErrorKind, Role, Verdict};
use warden_health::{
    ConnectionHealth, HealthSettings, OutcomeSource, RoleSet, State, TokenOutcome, UpstreamOutcome,
};
use warden_policy::Event;

use support::*;

#[test]
fn healthy_degraded_healthy() {
    let mut h = crm(5);
    assert_eq!(h.state(), State::Healthy);

    let c = answer(&mut h, Role::Mcp, 503);
    assert_eq!(c.state_changed, Some((State::Healthy, State::Degraded)));
    assert_eq!(h.degraded_by(), Some(OutcomeSource::Upstream));

    let c = answer(&mut h, Role::Mcp, 503);
    assert_eq!(c.state_changed, None, "still degraded");

    let c = answer(&mut h, Role::Mcp, 200);
    assert_eq!(c.state_changed, Some((State::Degraded, State::Healthy)));
    assert_eq!(h.degraded_by(), None);
}

#[test]
fn every_transient_kind_degrades_and_only_a_success_on_its_route_heals() {
    let transients: [(&str, Role, Step); 8] = [
        ("408", Role::Mcp, |h| answer(h, Role::Mcp, 408)),
        ("429", Role::Mcp, |h| answer(h, Role::Mcp, 429)),
        ("500", Role::Mcp, |h| answer(h, Role::Mcp, 500)),
        ("511", Role::Mcp, |h| answer(h, Role::Mcp, 511)),
        ("connect", Role::Mcp, |h| {
            fault(h, Role::Mcp, ErrorKind::Connect)
        }),
        ("tls", Role::Mcp, |h| fault(h, Role::Mcp, ErrorKind::Tls)),
        ("token 503", Role::Oauth, |h| refresh_err(h, 503, None)),
        ("token timeout", Role::Oauth, |h| {
            refresh_fault(h, ErrorKind::Timeout)
        }),
    ];
    // (name, route it speaks for, heals a failing run on that route)
    let followers: [(&str, Role, bool, Step); 7] = [
        ("200", Role::Mcp, true, |h| answer(h, Role::Mcp, 200)),
        ("302", Role::Mcp, true, |h| answer(h, Role::Mcp, 302)),
        ("401 auth", Role::Mcp, false, |h| answer(h, Role::Mcp, 401)),
        ("404 client_error", Role::Mcp, false, |h| {
            answer(h, Role::Mcp, 404)
        }),
        ("token ok", Role::Oauth, true, |h| refresh_ok(h)),
        ("login ok", Role::Oauth, true, |h| login_ok(h)),
        // Discovery on the oauth route: not a token response, decides nothing.
        ("oauth discovery 200", Role::Api, false, |h| {
            answer(h, Role::Oauth, 200)
        }),
    ];
    for (t_name, t_role, transient) in transients {
        for (f_name, f_role, heals, follow) in followers {
            let mut h = crm(100);
            transient(&mut h);
            assert_eq!(h.state(), State::Degraded, "{t_name}");
            follow(&mut h);
            let want = if heals && f_role == t_role {
                State::Healthy
            } else {
                State::Degraded
            };
            assert_eq!(h.state(), want, "{t_name} then {f_name}");
        }
    }
}

#[test]
fn a_token_failure_degrades_as_a_token_response() {
    let mut h = crm(5);
    refresh_err(&mut h, 400, Some("temporarily_unavailable"));
    assert_eq!(h.state(), State::Degraded);
    assert_eq!(h.degraded_by(), Some(OutcomeSource::TokenResponse));
    assert_eq!(h.snapshot().degraded_by, Some(OutcomeSource::TokenResponse));
    answer(&mut h, Role::Mcp, 502);
    assert_eq!(
        h.degraded_by(),
        Some(OutcomeSource::Upstream),
        "the newest failure of the failing routes"
    );
    refresh_ok(&mut h);
    assert_eq!(h.state(), State::Degraded, "mcp is still failing");
    assert_eq!(h.degraded_by(), Some(OutcomeSource::Upstream));
    answer(&mut h, Role::Mcp, 200);
    assert_eq!(h.state(), State::Healthy);
}

#[test]
fn circuit_opens_at_exactly_the_threshold() {
    for threshold in [1, 2, 3, 5, 10] {
        let mut h = crm(threshold);
        for n in 1..threshold {
            let c = answer(&mut h, Role::Mcp, 503);
            assert!(
                c.circuits_opened.is_empty(),
                "threshold {threshold}, attempt {n}"
            );
            assert_eq!(h.state(), State::Degraded);
            assert!(!h.is_circuit_open(Role::Mcp));
            assert_eq!(h.consecutive_failures(Role::Mcp), Some(n));
        }
        let before = h.state();
        let c = answer(&mut h, Role::Mcp, 503);
        assert_eq!(c.circuits_opened, RoleSet::from_iter([Role::Mcp]));
        assert_eq!(c.state_changed, Some((before, State::CircuitOpen)));
        assert!(h.is_circuit_open(Role::Mcp));
        assert!(!h.is_circuit_open(Role::Oauth));
        assert_eq!(h.open_circuits(), RoleSet::from_iter([Role::Mcp]));

        let c = answer(&mut h, Role::Mcp, 503);
        assert!(c.is_empty(), "an open circuit does not open again");
    }
}

#[test]
fn every_attempt_counts_retries_and_faults_alike() {
    // One request, three attempts (the first and two retries), each a different transient:
    // with a threshold of 3 that is enough.
    let mut h = crm(3);
    answer(&mut h, Role::Mcp, 503);
    fault(&mut h, Role::Mcp, ErrorKind::Reset);
    assert!(!h.is_circuit_open(Role::Mcp));
    let c = answer(&mut h, Role::Mcp, 429);
    assert!(c.circuits_opened.contains(Role::Mcp));
}

#[test]
fn a_non_transient_answer_restarts_the_count() {
    let answers: [(&str, Role, Step); 5] = [
        ("ok", Role::Mcp, |h| answer(h, Role::Mcp, 200)),
        ("auth", Role::Mcp, |h| answer(h, Role::Mcp, 403)),
        ("client_error", Role::Mcp, |h| answer(h, Role::Mcp, 404)),
        ("token ok", Role::Oauth, |h| refresh_ok(h)),
        ("token terminal", Role::Oauth, |h| {
            refresh_err(h, 400, Some("invalid_grant"))
        }),
    ];
    for (name, role, non_transient) in answers {
        let mut h = crm(3);
        let transient = |h: &mut ConnectionHealth| match role {
            Role::Oauth => {
                refresh_err(h, 503, None);
            }
            _ => {
                answer(h, role, 503);
            }
        };
        transient(&mut h);
        transient(&mut h);
        non_transient(&mut h);
        assert_eq!(h.consecutive_failures(role), Some(0), "{name}");
        transient(&mut h);
        transient(&mut h);
        assert!(!h.is_circuit_open(role), "{name}: the count restarted");
        transient(&mut h);
        assert!(h.is_circuit_open(role), "{name}: three in a row open it");
    }
}

#[test]
fn token_attempts_count_on_the_oauth_route_only() {
    let mut h = crm(2);
    refresh_fault(&mut h, ErrorKind::Connect);
    let c = refresh_err(&mut h, 502, None);
    assert_eq!(c.circuits_opened, RoleSet::from_iter([Role::Oauth]));
    assert_eq!(h.state(), State::CircuitOpen);
    assert!(!h.is_circuit_open(Role::Mcp));
    assert_eq!(h.consecutive_failures(Role::Mcp), Some(0));
}

#[test]
fn routes_count_separately() {
    let mut h = health(&[Role::Mcp, Role::Api, Role::Oauth], 2, 50);
    answer(&mut h, Role::Mcp, 503);
    answer(&mut h, Role::Api, 503);
    refresh_err(&mut h, 503, None);
    assert!(h.open_circuits().is_empty());
    let c = answer(&mut h, Role::Api, 503);
    assert_eq!(c.circuits_opened, RoleSet::from_iter([Role::Api]));
    assert_eq!(h.consecutive_failures(Role::Mcp), Some(1));
    assert_eq!(h.consecutive_failures(Role::Oauth), Some(1));
}

#[test]
fn a_failing_probe_keeps_the_circuit_open() {
    let mut h = crm(1);
    answer(&mut h, Role::Mcp, 503);
    for (status, kind) in [
        (Some(500), None),
        (None, Some(ErrorKind::Connect)),
        (Some(503), None),
    ] {
        let c = match (status, kind) {
            (Some(s), _) => probe(&mut h, Role::Mcp, s),
            (None, Some(k)) => probe_fault(&mut h, Role::Mcp, k),
            (None, None) => unreachable!(),
        };
        assert!(c.is_empty(), "{c:?}");
        assert_eq!(h.state(), State::CircuitOpen);
        let e = h.last_event().unwrap();
        assert_eq!(e.kind.as_str(), "probe_failed");
        assert_eq!(
            (e.status, e.error_kind, e.role),
            (status, kind, Some(Role::Mcp))
        );
        assert_eq!(e.verdict, None);
    }
}

#[test]
fn a_probe_answer_below_500_closes_the_circuit() {
    for status in [200, 204, 301, 401, 404, 499] {
        let mut h = crm(2);
        answer(&mut h, Role::Mcp, 503);
        answer(&mut h, Role::Mcp, 503);
        assert!(h.is_circuit_open(Role::Mcp));
        let c = probe(&mut h, Role::Mcp, status);
        assert_eq!(
            c.circuits_closed,
            RoleSet::from_iter([Role::Mcp]),
            "{status}"
        );
        assert!(!h.is_circuit_open(Role::Mcp));
        assert_eq!(h.consecutive_failures(Role::Mcp), Some(0));
        // The close ends the route's failure run: an idle connection reads healthy.
        assert_eq!(c.state_changed, Some((State::CircuitOpen, State::Healthy)));
        assert_eq!(types(&h)[0], "circuit_closed");
        assert_eq!(h.last_event().unwrap().status, Some(status));

        answer(&mut h, Role::Mcp, 503);
        assert!(
            !h.is_circuit_open(Role::Mcp),
            "the count restarted at the close"
        );
        answer(&mut h, Role::Mcp, 200);
        assert_eq!(h.state(), State::Healthy);
    }
}

#[test]
fn a_probe_of_a_closed_circuit_changes_nothing() {
    let mut h = crm(2);
    answer(&mut h, Role::Mcp, 503);
    let before = types(&h);
    assert!(probe(&mut h, Role::Mcp, 200).is_empty());
    assert!(probe(&mut h, Role::Mcp, 503).is_empty());
    assert!(probe(&mut h, Role::Api, 200).is_empty(), "no such route");
    assert_eq!(types(&h), before);
    assert_eq!(h.consecutive_failures(Role::Mcp), Some(1));
}

#[test]
fn an_in_flight_success_does_not_close_an_open_circuit() {
    let mut h = crm(1);
    answer(&mut h, Role::Mcp, 503);
    answer(&mut h, Role::Mcp, 200);
    assert!(h.is_circuit_open(Role::Mcp), "only a probe closes it");
    assert_eq!(h.consecutive_failures(Role::Mcp), Some(0));
    assert_eq!(h.state(), State::CircuitOpen);
}

#[test]
fn terminal_token_verdicts_set_needs_reauth() {
    let terminal: [(u16, Option<&str>); 6] = [
        (400, Some("invalid_grant")),
        (400, Some("invalid_client")),
        (400, Some("unauthorized_client")),
        (400, Some("unsupported_grant_type")),
        (400, Some("INVALID_GRANT")),
        (401, None),
    ];
    for (status, code) in terminal {
        let mut h = crm(5);
        login_ok(&mut h);
        assert!(h.token_acquired());
        let c = refresh_err(&mut h, status, code);
        assert_eq!(
            c.state_changed,
            Some((State::Healthy, State::NeedsReauth)),
            "{status} {code:?}"
        );
        assert!(h.needs_reauth());
        assert!(!h.token_acquired(), "a terminal verdict drops the token");
        assert_eq!(h.last_event().unwrap().verdict, Some(Verdict::Terminal));
    }
}

#[test]
fn transient_token_verdicts_do_not_set_needs_reauth() {
    let transient: [(u16, Option<&str>); 6] = [
        (400, Some("invalid_request")),
        (400, Some("invalid_scope")),
        (400, Some("server_error")),
        (400, None),
        (429, None),
        (503, Some("temporarily_unavailable")),
    ];
    for (status, code) in transient {
        let mut h = crm(5);
        login_ok(&mut h);
        refresh_err(&mut h, status, code);
        assert!(!h.needs_reauth(), "{status} {code:?}");
        assert!(h.token_acquired(), "a transient failure keeps the token");
        assert_eq!(h.state(), State::Degraded);
    }
}

#[test]
fn needs_reauth_is_cleared_by_a_2xx_token_response_or_a_reset() {
    let clearers: [(&str, Step); 3] = [
        ("new login", |h| login_ok(h)),
        ("refresh", |h| refresh_ok(h)),
        ("reset", |h| h.reset(tick())),
    ];
    for (name, clear) in clearers {
        let mut h = crm(5);
        refresh_err(&mut h, 400, Some("invalid_client"));
        clear(&mut h);
        assert!(!h.needs_reauth(), "{name}");
        assert_eq!(h.state(), State::Healthy, "{name}");
    }
}

#[test]
fn needs_reauth_survives_everything_else() {
    let keepers: [(&str, Step); 6] = [
        ("login failing transiently", |h| login_err(h, 503, None)),
        ("login failing terminally", |h| {
            login_err(h, 400, Some("invalid_client"))
        }),
        ("2xx without access_token", |h| {
            token(h, "authorization_code", Some(200), None, false, None)
        }),
        ("mcp ok", |h| answer(h, Role::Mcp, 200)),
        ("oauth non-token ok", |h| answer(h, Role::Oauth, 200)),
        ("probe", |h| probe(h, Role::Mcp, 200)),
    ];
    for (name, keep) in keepers {
        let mut h = crm(5);
        refresh_err(&mut h, 400, Some("invalid_grant"));
        keep(&mut h);
        assert!(h.needs_reauth(), "{name}");
        assert_eq!(h.state(), State::NeedsReauth, "{name}");
    }
}

#[test]
fn a_terminal_upstream_verdict_sets_needs_reauth() {
    // Only a user rule says `terminal` for an mcp answer; the verdict is what counts.
    let mut h = crm(5);
    let c = h.record_upstream(
        Role::Mcp,
        UpstreamOutcome {
            verdict: Verdict::Terminal,
            status: Some(403),
            error_kind: None,
            tls_detail: None,
        },
        tick(),
    );
    assert_eq!(c.state_changed, Some((State::Healthy, State::NeedsReauth)));
    assert_eq!(
        types(&h),
        ["upstream_failed_terminal"],
        "the state has a cause"
    );
    assert_eq!(h.reason().unwrap().status, Some(403));
    login_ok(&mut h);
    assert_eq!(h.state(), State::Healthy);
}

#[test]
fn precedence_needs_reauth_over_circuit_over_degraded() {
    let mut h = crm(2);
    answer(&mut h, Role::Mcp, 503);
    assert_eq!(h.state(), State::Degraded);
    answer(&mut h, Role::Mcp, 503);
    assert_eq!(h.state(), State::CircuitOpen);
    refresh_err(&mut h, 503, None);
    assert_eq!(
        h.state(),
        State::CircuitOpen,
        "degraded too, but the circuit wins"
    );
    let c = refresh_err(&mut h, 401, None);
    assert_eq!(
        c.state_changed,
        Some((State::CircuitOpen, State::NeedsReauth))
    );
    assert!(
        h.is_circuit_open(Role::Mcp),
        "the circuit is still open underneath"
    );
    let row = h.snapshot();
    assert_eq!(row.state, State::NeedsReauth);
    assert_eq!(row.circuit.get(Role::Mcp).map(|c| c.as_str()), Some("open"));

    // A reset clears both; the newest outcome (the terminal answer) was not transient.
    let c = h.reset(tick());
    assert_eq!(c.state_changed, Some((State::NeedsReauth, State::Healthy)));
    assert_eq!(c.circuits_closed, RoleSet::from_iter([Role::Mcp]));
    assert!(h.open_circuits().is_empty());
    assert!(!h.needs_reauth());
}

#[test]
fn needs_reauth_cleared_while_a_circuit_is_open_shows_the_circuit() {
    let mut h = crm(1);
    refresh_err(&mut h, 400, Some("invalid_grant"));
    answer(&mut h, Role::Mcp, 503);
    assert_eq!(h.state(), State::NeedsReauth);
    let c = login_ok(&mut h);
    assert_eq!(
        c.state_changed,
        Some((State::NeedsReauth, State::CircuitOpen))
    );
}

#[test]
fn reset_closes_every_circuit_and_ends_their_failure_runs() {
    let mut h = health(&[Role::Mcp, Role::Api, Role::Oauth], 1, 50);
    answer(&mut h, Role::Mcp, 503);
    answer(&mut h, Role::Api, 503);
    assert_eq!(
        h.open_circuits(),
        RoleSet::from_iter([Role::Mcp, Role::Api])
    );
    let c = h.reset(tick());
    assert_eq!(
        c.circuits_closed,
        RoleSet::from_iter([Role::Mcp, Role::Api])
    );
    assert_eq!(c.state_changed, Some((State::CircuitOpen, State::Healthy)));
    assert_eq!(h.consecutive_failures(Role::Mcp), Some(0));
    assert_eq!(types(&h)[0], "reset_admin");
    // Nothing to clear: still one event, no changes.
    let mut fresh = crm(5);
    let c = fresh.reset(tick());
    assert!(c.is_empty());
    assert_eq!(types(&fresh), ["reset_admin"]);
}

#[test]
fn token_acquired_follows_the_token_responses() {
    let mut h = crm(5);
    let steps: [(&str, Step, bool); 9] = [
        (
            "2xx without access_token",
            |h| token(h, "authorization_code", Some(200), None, false, None),
            false,
        ),
        ("login", |h| login_ok(h), true),
        ("refresh 503", |h| refresh_err(h, 503, None), true),
        (
            "refresh timeout",
            |h| refresh_fault(h, ErrorKind::Timeout),
            true,
        ),
        ("mcp 401", |h| answer(h, Role::Mcp, 401), true),
        (
            "revoked",
            |h| refresh_err(h, 400, Some("invalid_grant")),
            false,
        ),
        ("login again", |h| login_ok(h), true),
        ("refresh", |h| refresh_ok(h), true),
        ("reset", |h| h.reset(tick()), false),
    ];
    for (name, step, want) in steps {
        step(&mut h);
        assert_eq!(h.token_acquired(), want, "{name}");
    }
}

#[test]
fn only_an_ok_answer_with_access_token_acquires_a_token() {
    // A user rule may call a 2xx without `access_token` ok: it clears needs_reauth (the
    // grant works) but proves no token.
    let mut h = crm(5);
    refresh_err(&mut h, 401, None);
    h.record_token(
        TokenOutcome {
            verdict: Verdict::Ok,
            event: Event::ConnectCompleted,
            code: None,
            status: Some(204),
            error_kind: None,
            tls_detail: None,
            has_access_token: false,
            grant_type: None,
        },
        tick(),
    );
    assert!(!h.needs_reauth());
    assert!(!h.token_acquired());
    // And a user rule that calls a 2xx with `access_token` transient judged it unusable.
    h.record_token(
        TokenOutcome {
            verdict: Verdict::Transient,
            event: Event::RefreshFailedTransient,
            code: None,
            status: Some(200),
            error_kind: None,
            tls_detail: None,
            has_access_token: true,
            grant_type: None,
        },
        tick(),
    );
    assert!(!h.token_acquired());
}

#[test]
fn reconfigure_keeps_the_state() {
    let mut h = crm(3);
    refresh_err(&mut h, 400, Some("invalid_client"));
    answer(&mut h, Role::Mcp, 503);
    answer(&mut h, Role::Mcp, 503);

    // Lower the mcp threshold to 2: the next transient opens the circuit.
    let settings = HealthSettings::new(50)
        .with_consecutive_failures(Role::Mcp, 2)
        .with_consecutive_failures(Role::Api, 4);
    let c = h.reconfigure(&[Role::Mcp, Role::Api], settings);
    assert!(c.is_empty());
    assert!(h.needs_reauth(), "health survives a reload");
    assert!(!h.has_oauth());
    assert_eq!(h.roles(), RoleSet::from_iter([Role::Mcp, Role::Api]));
    assert_eq!(h.consecutive_failures(Role::Api), Some(0));
    let c = answer(&mut h, Role::Mcp, 503);
    assert!(c.circuits_opened.contains(Role::Mcp));

    // Removing a route with an open circuit reports it closed.
    let c = h.reconfigure(&[Role::Api], settings);
    assert_eq!(c.circuits_closed, RoleSet::from_iter([Role::Mcp]));
    assert!(h.open_circuits().is_empty());
    assert_eq!(h.consecutive_failures(Role::Mcp), None);
}

#[test]
fn reconfigure_shrinks_the_ring() {
    let mut h = health(&[Role::Oauth], 5, 10);
    for _ in 0..10 {
        refresh_ok(&mut h);
    }
    let c = h.reconfigure(&[Role::Oauth], HealthSettings::new(3));
    assert!(c.is_empty());
    assert_eq!(h.events().len(), 3);
}

#[test]
fn from_config_uses_each_routes_threshold() {
    let yaml = r#"
version: 1
connections:
  - name: crm
    mcp:
      listen: 127.0.0.1:15001
      upstream: https://mcp.example.com
      circuit: { consecutive_failures: 2 }
    oauth:
      listen: 127.0.0.1:15002
      upstream: https://idp.example.com
      token_path: /token
"#;
    let config = warden_config::parse(yaml, "proxy.yaml").expect("valid config");
    let mut h = ConnectionHealth::from_config(&config.connections[0], 7);
    assert_eq!(h.name(), "crm");
    assert!(h.has_oauth());
    answer(&mut h, Role::Mcp, 503);
    assert!(
        answer(&mut h, Role::Mcp, 503)
            .circuits_opened
            .contains(Role::Mcp)
    );
    for _ in 0..4 {
        refresh_err(&mut h, 503, None);
    }
    assert!(
        !h.is_circuit_open(Role::Oauth),
        "oauth keeps the default of 5"
    );
    assert!(
        refresh_err(&mut h, 503, None)
            .circuits_opened
            .contains(Role::Oauth)
    );
    for _ in 0..10 {
        refresh_ok(&mut h);
    }
    assert_eq!(h.events().len(), 7);
}
