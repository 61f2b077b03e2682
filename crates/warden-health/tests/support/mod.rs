//! Shared test drivers: answers go through the real policy engine, so these tests pin the
//! health rules against the verdicts and events the proxy will actually pass in.
#![allow(dead_code)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use warden_config::{ErrorKind, Role};
use warden_health::{
    Changes, ConnectionHealth, HealthSettings, ProbeOutcome, TokenOutcome, UpstreamOutcome,
};
use warden_policy::{Observation, Policy};

/// One step of a table-driven test: something that happens to a connection.
pub(crate) type Step = fn(&mut ConnectionHealth) -> Changes;

pub(crate) const NAME: &str = "crm";

/// 2023-11-14T22:13:20Z.
pub(crate) const EPOCH_SECS: u64 = 1_700_000_000;

pub(crate) fn at_ms(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(EPOCH_SECS) + Duration::from_millis(ms)
}

/// A fresh, increasing timestamp per call: events get distinct times.
pub(crate) fn tick() -> SystemTime {
    static CLOCK: AtomicU64 = AtomicU64::new(0);
    at_ms(CLOCK.fetch_add(1, Ordering::Relaxed))
}

pub(crate) fn health(roles: &[Role], threshold: u32, events: usize) -> ConnectionHealth {
    let settings = roles.iter().fold(HealthSettings::new(events), |s, &r| {
        s.with_consecutive_failures(r, threshold)
    });
    ConnectionHealth::new(NAME, roles, settings)
}

/// mcp + oauth, ring of 50.
pub(crate) fn crm(threshold: u32) -> ConnectionHealth {
    health(&[Role::Mcp, Role::Oauth], threshold, 50)
}

/// One token response, classified by the built-in tables.
pub(crate) fn token(
    h: &mut ConnectionHealth,
    grant: &str,
    status: Option<u16>,
    error: Option<&str>,
    access_token: bool,
    error_kind: Option<ErrorKind>,
) -> Changes {
    let obs = Observation {
        token_request: true,
        grant_type: Some(grant),
        status,
        oauth_error: error,
        has_access_token: access_token,
        error_kind,
        ..Observation::new(Role::Oauth, "POST", "/oauth2/token")
    };
    let decision = Policy::builtin().classify(&obs);
    let outcome = TokenOutcome::from_decision(&decision, status, error_kind, access_token)
        .expect("a token request's decision names an event")
        .with_grant_type(Some(grant));
    h.record_token(outcome, tick())
}

pub(crate) fn login_ok(h: &mut ConnectionHealth) -> Changes {
    token(h, "authorization_code", Some(200), None, true, None)
}

pub(crate) fn refresh_ok(h: &mut ConnectionHealth) -> Changes {
    token(h, "refresh_token", Some(200), None, true, None)
}

/// A refresh grant answered with `status` and an optional `error` code.
pub(crate) fn refresh_err(h: &mut ConnectionHealth, status: u16, error: Option<&str>) -> Changes {
    token(h, "refresh_token", Some(status), error, false, None)
}

pub(crate) fn refresh_fault(h: &mut ConnectionHealth, kind: ErrorKind) -> Changes {
    token(h, "refresh_token", None, None, false, Some(kind))
}

/// A new login answered with `status` and an optional `error` code.
pub(crate) fn login_err(h: &mut ConnectionHealth, status: u16, error: Option<&str>) -> Changes {
    token(h, "authorization_code", Some(status), error, false, None)
}

/// One non-token answer on `role`, classified by the built-in tables.
pub(crate) fn answer(h: &mut ConnectionHealth, role: Role, status: u16) -> Changes {
    let obs = Observation {
        status: Some(status),
        ..Observation::new(role, "POST", "/mcp")
    };
    let decision = Policy::builtin().classify(&obs);
    h.record_upstream(
        role,
        UpstreamOutcome::from_decision(&decision, Some(status), None),
        tick(),
    )
}

/// One network fault on `role`.
pub(crate) fn fault(h: &mut ConnectionHealth, role: Role, kind: ErrorKind) -> Changes {
    let obs = Observation {
        error_kind: Some(kind),
        ..Observation::new(role, "POST", "/mcp")
    };
    let decision = Policy::builtin().classify(&obs);
    h.record_upstream(
        role,
        UpstreamOutcome::from_decision(&decision, None, Some(kind)),
        tick(),
    )
}

pub(crate) fn probe(h: &mut ConnectionHealth, role: Role, status: u16) -> Changes {
    h.record_probe(role, ProbeOutcome::answered(status, None), tick())
}

pub(crate) fn probe_fault(h: &mut ConnectionHealth, role: Role, kind: ErrorKind) -> Changes {
    h.record_probe(role, ProbeOutcome::fault(kind, None), tick())
}

/// Event types, newest first.
pub(crate) fn types(h: &ConnectionHealth) -> Vec<&'static str> {
    h.events().map(|e| e.kind.as_str()).collect()
}
