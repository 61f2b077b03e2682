//! The per-request calls must not touch the heap: `gate` in every state, and recording the
//! common answers (an ok on a healthy route, more failures of a run already recorded).
//! Counted with a thread-local counting allocator around the system one.
//!
//! The allocator is `warden-fixtures`' (its only `unsafe`); the library itself stays
//! `#![forbid(unsafe_code)]`.
#![allow(unused_must_use)]

mod support;

use std::time::{Instant, SystemTime};
use warden_fixtures::alloc::{Counting, allocations};

use warden_config::{Role, Verdict};
use warden_health::{ConnectionHealth, GateRequest, UpstreamOutcome};

use support::*;

#[global_allocator]
static GLOBAL: Counting = Counting;

fn gate_everything(h: &ConnectionHealth) -> usize {
    let now = Instant::now();
    allocations(|| {
        for role in [Role::Mcp, Role::Oauth] {
            for request in [
                GateRequest::NotToken,
                GateRequest::RefreshGrant,
                GateRequest::OtherGrant,
            ] {
                std::hint::black_box(h.gate(role, request, now));
            }
        }
    })
}

#[test]
fn gate_allocates_nothing_in_any_state() {
    let mut h = crm(1);
    assert_eq!(gate_everything(&h), 0, "healthy");
    answer(&mut h, Role::Mcp, 503);
    h.set_next_probe(Role::Mcp, Instant::now());
    assert_eq!(gate_everything(&h), 0, "circuit open");
    refresh_err(&mut h, 400, Some("invalid_client"));
    assert_eq!(gate_everything(&h), 0, "needs_reauth with a code");
}

fn outcome(verdict: Verdict, status: u16) -> UpstreamOutcome {
    UpstreamOutcome {
        verdict,
        status: Some(status),
        error_kind: None,
        tls_detail: None,
    }
}

#[test]
fn recording_the_common_answers_allocates_nothing() {
    let mut h = crm(1_000);
    let at = SystemTime::now();
    let n = allocations(|| {
        for _ in 0..100 {
            h.record_upstream(Role::Mcp, outcome(Verdict::Ok, 200), at);
            h.record_upstream(Role::Mcp, outcome(Verdict::Auth, 401), at);
        }
    });
    assert_eq!(n, 0, "ok and auth answers on a healthy route");

    h.record_upstream(Role::Mcp, outcome(Verdict::Transient, 503), at);
    let n = allocations(|| {
        for _ in 0..100 {
            h.record_upstream(Role::Mcp, outcome(Verdict::Transient, 503), at);
        }
    });
    assert_eq!(n, 0, "a failure run already recorded");
}
