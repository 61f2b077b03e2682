//! The per-request calls must not touch the heap: `gate` in every state, and recording the
//! common answers (an ok on a healthy route, more failures of a run already recorded).
//! Counted with a thread-local counting allocator around the system one.
//!
//! This test binary's allocator is the only `unsafe` in the crate: a `GlobalAlloc` cannot
//! be written without it, and the library itself stays `#![forbid(unsafe_code)]`.
#![allow(unused_must_use)]

mod support;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::time::{Instant, SystemTime};

use warden_config::{Role, Verdict};
use warden_health::{ConnectionHealth, GateRequest, UpstreamOutcome};

use support::*;

struct Counting;

thread_local! {
    // `const` init: no lazy allocation inside the allocator.
    static ALLOCS: Cell<usize> = const { Cell::new(0) };
}

// SAFETY: every call is forwarded unchanged to `System`; the counter touches no memory the
// caller owns.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.with(|c| c.set(c.get() + 1));
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.with(|c| c.set(c.get() + 1));
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations(f: impl FnOnce()) -> usize {
    let before = ALLOCS.with(Cell::get);
    f();
    ALLOCS.with(Cell::get) - before
}

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
