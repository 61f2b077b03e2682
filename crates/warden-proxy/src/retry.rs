//! Inline retries of transient failures (README › Retries): an explicit loop around one
//! pure rule, [`decide`]. The request body is buffered once and replayed per attempt;
//! every attempt is classified and told to health once; a retry happens only when it is
//! safe, within budget, within the proxy-wide cap on concurrent retries, and before the
//! request's deadline.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use http::header::{HeaderName, HeaderValue};
use http::{HeaderMap, Method};
use http_body::Body as _;
use http_body_util::BodyExt as _;
use metrics::{Counter, Gauge, counter};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tower::retry::budget::{Budget as _, TpsBudget};
use warden_config::{Retry, RetryMode, Role, Verdict};
use warden_health::{Gate, GateRequest};

use crate::attempt::{Attempt, AttemptResult};
use crate::backoff::Backoff;
use crate::catalogue;
use crate::health::HealthHandle;

/// Set on every retry to its attempt number (2, 3, ...); first attempts go without it.
pub(crate) static X_WARDEN_ATTEMPT: HeaderName = HeaderName::from_static("x-warden-attempt");

/// Why a transient failure was or was not retried: the `outcome` label of
/// `warden_retries_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RetryOutcome {
    /// A retry ended ok.
    Success,
    /// A retry ended neither ok nor transient.
    Failed,
    /// Attempts, time or the circuit ran out while still transient.
    Exhausted,
    BudgetExhausted,
    ConcurrencyLimited,
    /// Not safe to repeat, a body too large to replay, or a Retry-After past the backoff
    /// cap.
    Unsafe,
}

impl RetryOutcome {
    const ALL: [RetryOutcome; 6] = [
        RetryOutcome::Success,
        RetryOutcome::Failed,
        RetryOutcome::Exhausted,
        RetryOutcome::BudgetExhausted,
        RetryOutcome::ConcurrencyLimited,
        RetryOutcome::Unsafe,
    ];

    fn as_str(self) -> &'static str {
        match self {
            RetryOutcome::Success => "success",
            RetryOutcome::Failed => "failed",
            RetryOutcome::Exhausted => "exhausted",
            RetryOutcome::BudgetExhausted => "budget_exhausted",
            RetryOutcome::ConcurrencyLimited => "concurrency_limited",
            RetryOutcome::Unsafe => "unsafe",
        }
    }
}

/// The proxy-wide limit on retries in flight (`limits.max_concurrent_retries`), and its
/// gauge.
pub(crate) struct RetrySlots {
    permits: Arc<Semaphore>,
    in_flight: Gauge,
}

impl RetrySlots {
    pub(crate) fn new(max: usize) -> Arc<RetrySlots> {
        Arc::new(RetrySlots {
            permits: Arc::new(Semaphore::new(max)),
            in_flight: metrics::gauge!(catalogue::RETRIES_IN_FLIGHT.name),
        })
    }

    /// A slot, or None when every slot is taken: nobody queues behind a retry.
    fn try_take(&self) -> Option<RetrySlot> {
        let permit = Arc::clone(&self.permits).try_acquire_owned().ok()?;
        self.in_flight.increment(1.0);
        Some(RetrySlot {
            _permit: permit,
            in_flight: self.in_flight.clone(),
        })
    }
}

/// One held retry slot; given back (and the gauge lowered) on drop.
struct RetrySlot {
    _permit: OwnedSemaphorePermit,
    in_flight: Gauge,
}

impl Drop for RetrySlot {
    fn drop(&mut self) {
        self.in_flight.decrement(1.0);
    }
}

/// `warden_retries_total{connection,role,outcome}`, resolved once per route.
pub(crate) struct RetryCounters([Counter; RetryOutcome::ALL.len()]);

impl RetryCounters {
    pub(crate) fn new(connection: &str, role: Role) -> Self {
        RetryCounters(RetryOutcome::ALL.map(|o| {
            counter!(
                catalogue::RETRIES.name,
                "connection" => connection.to_owned(),
                "role" => role.as_str(),
                "outcome" => o.as_str()
            )
        }))
    }

    fn count(&self, outcome: RetryOutcome) {
        if let Some(i) = RetryOutcome::ALL.iter().position(|o| *o == outcome) {
            self.0[i].increment(1);
        }
    }
}

/// The window README › Retries gives the budget.
const BUDGET_WINDOW: Duration = Duration::from_secs(10);

/// A route's retry budget: `ratio` of the requests plus `min_per_second` per second.
pub(crate) fn budget(settings: &warden_config::Budget) -> TpsBudget {
    // TpsBudget wants a percentage as a fraction (0.2 = 20 %), and asserts its inputs;
    // keep them in its range whatever the config says.
    TpsBudget::new(
        BUDGET_WINDOW,
        settings.min_per_second.min(1_000_000),
        (settings.ratio as f32).clamp(0.0, 1000.0),
    )
}

/// Everything the retry rules look at after one attempt. Built by the loop, which does
/// the I/O ([`Check`]s included); read by [`decide`], which does none.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Facts {
    /// The attempt's verdict.
    pub(crate) verdict: Verdict,
    /// The deciding rule said `retry: never`.
    pub(crate) retry_never: bool,
    pub(crate) status: Option<u16>,
    /// The request never left warden (the connection or TLS handshake failed).
    pub(crate) nothing_sent: bool,
    /// The answer's `Retry-After`, relative to now.
    pub(crate) retry_after: Option<Duration>,
    /// The body was buffered and can be sent again.
    pub(crate) replayable: bool,
    /// A `refresh_token` grant.
    pub(crate) refresh_grant: bool,
    pub(crate) idempotent: bool,
    /// Attempts made so far, this one included.
    pub(crate) attempts: u32,
    /// `retry.max_attempts`.
    pub(crate) max_attempts: u32,
    /// `retry.backoff.max`.
    pub(crate) backoff_max: Duration,
    /// The jittered backoff drawn for the next attempt.
    pub(crate) backoff: Duration,
    /// Until the request's deadline.
    pub(crate) time_left: Duration,
    /// Whether the route's gate is open; None until [`decide`] asks.
    pub(crate) gate_open: Option<bool>,
    /// Whether a retry slot was taken; None until [`decide`] asks.
    pub(crate) slot_taken: Option<bool>,
    /// Whether the budget allowed a withdrawal; None until [`decide`] asks.
    pub(crate) budget_allows: Option<bool>,
}

/// What the loop must find out before [`decide`] can say more. Asked in this order, and
/// each only once every rule before it allows a retry: health counts the attempt before
/// the gate is asked (a circuit this attempt opens stops the next), and a slot is taken
/// before the budget is drawn on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Check {
    Gate,
    Slot,
    Budget,
}

/// What happens after one attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decision {
    /// This attempt's answer goes to the client; the outcome to count, if any (None: a
    /// first attempt that needed no retry, or retries are off).
    Answer(Option<RetryOutcome>),
    /// Find this out, then decide again.
    Check(Check),
    /// Send the request again after this delay.
    Retry(Duration),
}

/// README › Retries, rule by rule. No I/O, no clock, no randomness: the loop puts all of
/// that into `facts`.
pub(crate) fn decide(facts: &Facts) -> Decision {
    use Decision::Answer;
    use RetryOutcome::{BudgetExhausted, ConcurrencyLimited, Exhausted, Failed, Success, Unsafe};
    if facts.verdict != Verdict::Transient {
        let retried = facts.attempts > 1;
        return Answer(retried.then_some(if facts.verdict == Verdict::Ok {
            Success
        } else {
            Failed
        }));
    }
    if facts.max_attempts <= 1 {
        return Answer(None);
    }
    // Rule 3: a body too large to buffer streamed through once.
    if !facts.replayable {
        return Answer(Some(Unsafe));
    }
    // Rules 1 and 4. No byte of the answer has reached the client here: warden decides at
    // the response head, before it forwards anything, and never retries once it has.
    if facts.retry_never || !safe_to_repeat(facts) {
        return Answer(Some(Unsafe));
    }
    // Rule 2.
    if facts.attempts >= facts.max_attempts {
        return Answer(Some(Exhausted));
    }
    // Rule 5: a Retry-After within the cap is waited out exactly.
    let delay = match facts.retry_after {
        Some(after) if after > facts.backoff_max => return Answer(Some(Unsafe)),
        Some(after) => after,
        None => facts.backoff,
    };
    // Rule 6.
    if delay >= facts.time_left {
        return Answer(Some(Exhausted));
    }
    // Rule 7.
    match facts.gate_open {
        None => return Decision::Check(Check::Gate),
        Some(false) => return Answer(Some(Exhausted)),
        Some(true) => {}
    }
    // Rule 8.
    match facts.slot_taken {
        None => return Decision::Check(Check::Slot),
        Some(false) => return Answer(Some(ConcurrencyLimited)),
        Some(true) => {}
    }
    // Rule 9.
    match facts.budget_allows {
        None => Decision::Check(Check::Budget),
        Some(false) => Answer(Some(BudgetExhausted)),
        Some(true) => Decision::Retry(delay),
    }
}

/// Rule 4: safe to repeat when nothing was sent, on 429/502/503/504, or for an idempotent
/// method; a refresh grant only when nothing was sent or on 429/503 (a refresh token that
/// reached the IdP may have been rotated).
fn safe_to_repeat(facts: &Facts) -> bool {
    if facts.nothing_sent {
        return true;
    }
    if facts.refresh_grant {
        return matches!(facts.status, Some(429 | 503));
    }
    matches!(facts.status, Some(429 | 502 | 503 | 504)) || facts.idempotent
}

pub(crate) fn is_idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}

/// `Retry-After` as seconds or an HTTP date, relative to now.
pub(crate) fn parse_retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers
        .get(http::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(
        at.duration_since(std::time::SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

/// What the retry loop needs of its route.
pub(crate) struct RetryRoute<'a> {
    pub(crate) settings: &'a Retry,
    pub(crate) backoff: Backoff,
    pub(crate) budget: &'a TpsBudget,
    pub(crate) slots: &'a RetrySlots,
    pub(crate) counters: &'a RetryCounters,
    pub(crate) health: &'a HealthHandle,
    pub(crate) role: Role,
}

/// What the retry rules need of the request.
#[derive(Clone, Copy)]
pub(crate) struct RetryRequest {
    /// What the health gate is asked for before each retry.
    pub(crate) gate_request: GateRequest,
    pub(crate) idempotent: bool,
    /// `timeouts.request`, from arrival.
    pub(crate) deadline: Instant,
}

/// A discarded answer of known length up to this is read to its end before a retry, which
/// keeps its connection pooled; anything larger, or of unknown length, is dropped.
const DRAIN_LIMIT: u64 = 64 * 1024;

/// Sends `attempt` with `send` (given the attempt and its number, 1 for the first), again
/// as long as [`decide`] says so; returns the answer the client gets.
pub(crate) async fn send_with_retries<S, F>(
    route: &RetryRoute<'_>,
    request: RetryRequest,
    attempt: Attempt,
    mut send: S,
) -> AttemptResult
where
    S: FnMut(Attempt, u32) -> F,
    F: Future<Output = AttemptResult>,
{
    // Every request puts into the budget what its retries may take out.
    route.budget.deposit();
    let retries_on = route.settings.max_attempts > 1;
    let mut next = attempt;
    let mut number = 1;
    // The slot of the retry in flight: held from the decision to retry until its answer,
    // backoff included.
    let mut held: Option<RetrySlot> = None;
    loop {
        // A buffered body's request is copied, and the copy kept for a retry: the original
        // goes out, with the spare capacity hyper gave its header map (the copy has none,
        // and the upstream's `Host` field would make it grow).
        let kept = if retries_on { next.try_clone() } else { None };
        let mut result = send(next, number).await;
        held.take();
        let mut facts = facts_of(&result, route, request, kept.is_some());
        let decision = loop {
            match decide(&facts) {
                Decision::Check(Check::Gate) => {
                    // This attempt is done with: health counts it before the gate is asked.
                    result.settle();
                    let gate = route.health.gate(route.role, request.gate_request);
                    facts.gate_open = Some(matches!(gate, Gate::Forward));
                }
                Decision::Check(Check::Slot) => {
                    held = route.slots.try_take();
                    facts.slot_taken = Some(held.is_some());
                }
                Decision::Check(Check::Budget) => {
                    facts.budget_allows = Some(route.budget.withdraw());
                }
                settled => break settled,
            }
        };
        let delay = match decision {
            Decision::Retry(delay) => delay,
            other => {
                if let Decision::Answer(Some(outcome)) = other {
                    route.counters.count(outcome);
                }
                return result;
            }
        };
        // decide retries only a replayable request, whose copy was kept.
        let Some(mut again) = kept else {
            return result;
        };
        number += 1;
        // Upstream logs can tell a retry from a first attempt (Envoy's
        // x-envoy-attempt-count, by another name).
        again
            .headers
            .insert(X_WARDEN_ATTEMPT.clone(), HeaderValue::from(number));
        tracing::debug!(
            attempt = number,
            delay_ms = delay.as_millis() as u64,
            verdict = facts.verdict.as_str(),
            status = facts.status,
            "retrying"
        );
        // Boxed: only a retry waits, and inline the wait would grow every request's future.
        Box::pin(async {
            discard(result, request.deadline).await;
            // tokio's timer has millisecond ticks: a zero wait must not sleep one.
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
        })
        .await;
        next = again;
    }
}

/// The facts of one attempt, before any [`Check`].
fn facts_of(
    result: &AttemptResult,
    route: &RetryRoute<'_>,
    request: RetryRequest,
    replayable: bool,
) -> Facts {
    let verdict = result.verdict();
    let transient = verdict == Verdict::Transient;
    // What only a transient attempt's decision reads is only worked out for one.
    let (retry_after, backoff, time_left) = if transient {
        let retry_after = result
            .outcome
            .as_ref()
            .ok()
            .and_then(|(resp, _)| parse_retry_after(resp.headers()));
        (
            retry_after,
            route.backoff.full(result.number.saturating_sub(1)),
            request.deadline.saturating_duration_since(Instant::now()),
        )
    } else {
        (None, Duration::ZERO, Duration::ZERO)
    };
    Facts {
        verdict,
        retry_never: result.retry_mode() == RetryMode::Never,
        status: result.status,
        nothing_sent: result.nothing_sent,
        retry_after,
        replayable,
        refresh_grant: request.gate_request == GateRequest::RefreshGrant,
        idempotent: request.idempotent,
        attempts: result.number,
        max_attempts: route.settings.max_attempts,
        backoff_max: route.settings.backoff.max,
        backoff,
        time_left,
        gate_open: None,
        slot_taken: None,
        budget_allows: None,
    }
}

/// Lets go of an answer a retry replaces. Reading a small one to its end gives its
/// connection back to the pool, so the retry need not open a new one.
async fn discard(result: AttemptResult, deadline: Instant) {
    let Ok((resp, _)) = result.outcome else {
        return;
    };
    let small = resp
        .body()
        .size_hint()
        .upper()
        .is_some_and(|n| n <= DRAIN_LIMIT);
    if small {
        let _ = tokio::time::timeout_at(deadline, resp.into_body().collect()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_as_seconds_or_http_date() {
        let mut h = HeaderMap::new();
        assert_eq!(parse_retry_after(&h), None);
        h.insert(http::header::RETRY_AFTER, HeaderValue::from_static("7"));
        assert_eq!(parse_retry_after(&h), Some(Duration::from_secs(7)));
        let soon = std::time::SystemTime::now() + Duration::from_secs(30);
        let date = httpdate::fmt_http_date(soon);
        h.insert(
            http::header::RETRY_AFTER,
            HeaderValue::try_from(date).expect("date"),
        );
        let d = parse_retry_after(&h).expect("date parses");
        assert!(
            d > Duration::from_secs(25) && d <= Duration::from_secs(30),
            "{d:?}"
        );
        h.insert(
            http::header::RETRY_AFTER,
            HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"),
        );
        assert_eq!(
            parse_retry_after(&h),
            Some(Duration::ZERO),
            "a date in the past: now"
        );
        h.insert(http::header::RETRY_AFTER, HeaderValue::from_static("soon"));
        assert_eq!(parse_retry_after(&h), None);
    }

    const T: Verdict = Verdict::Transient;
    const BACKOFF: Duration = Duration::from_millis(50);

    /// A POST's first attempt answered 503, with every later check passing: a retry.
    const BASE: Facts = Facts {
        verdict: T,
        retry_never: false,
        status: Some(503),
        nothing_sent: false,
        retry_after: None,
        replayable: true,
        refresh_grant: false,
        idempotent: false,
        attempts: 1,
        max_attempts: 3,
        backoff_max: Duration::from_secs(2),
        backoff: BACKOFF,
        time_left: Duration::from_secs(30),
        gate_open: Some(true),
        slot_taken: Some(true),
        budget_allows: Some(true),
    };

    /// README › Retries, one row per rule (and per outcome label): why, the facts, what
    /// decide says.
    #[test]
    fn decide_table() {
        use Decision::{Answer, Check as Ask, Retry};
        use RetryOutcome::*;
        let retry = Retry(BACKOFF);
        let status = |status: u16| Facts {
            status: Some(status),
            ..BASE
        };
        let no_answer = Facts {
            status: None,
            ..BASE
        };
        let refresh = Facts {
            refresh_grant: true,
            ..BASE
        };
        let rows: Vec<(&str, Facts, Decision)> = vec![
            // Outcomes of an attempt that is not transient.
            (
                "ok, first attempt: nothing to count",
                Facts {
                    verdict: Verdict::Ok,
                    status: Some(200),
                    ..BASE
                },
                Answer(None),
            ),
            (
                "ok after a retry",
                Facts {
                    verdict: Verdict::Ok,
                    status: Some(200),
                    attempts: 2,
                    ..BASE
                },
                Answer(Some(Success)),
            ),
            (
                "client_error after a retry",
                Facts {
                    verdict: Verdict::ClientError,
                    status: Some(404),
                    attempts: 2,
                    ..BASE
                },
                Answer(Some(Failed)),
            ),
            (
                "terminal after a retry",
                Facts {
                    verdict: Verdict::Terminal,
                    status: Some(400),
                    attempts: 2,
                    ..BASE
                },
                Answer(Some(Failed)),
            ),
            (
                "auth, first attempt",
                Facts {
                    verdict: Verdict::Auth,
                    status: Some(401),
                    ..BASE
                },
                Answer(None),
            ),
            (
                "retries off (max_attempts 1)",
                Facts {
                    max_attempts: 1,
                    ..BASE
                },
                Answer(None),
            ),
            // Rule 1: transient, and the rule did not say retry: never.
            ("rule 1: transient 503", BASE, retry),
            (
                "rule 1: the rule says retry: never",
                Facts {
                    retry_never: true,
                    ..BASE
                },
                Answer(Some(Unsafe)),
            ),
            // Rule 2: attempts remain.
            (
                "rule 2: attempts used up",
                Facts {
                    attempts: 3,
                    ..BASE
                },
                Answer(Some(Exhausted)),
            ),
            (
                "rule 2: one attempt left",
                Facts {
                    attempts: 2,
                    ..BASE
                },
                retry,
            ),
            // Rule 3: the body was buffered.
            (
                "rule 3: body too large to replay",
                Facts {
                    replayable: false,
                    ..BASE
                },
                Answer(Some(Unsafe)),
            ),
            // Rule 4: safe to repeat.
            ("rule 4: POST 500", status(500), Answer(Some(Unsafe))),
            (
                "rule 4: POST timeout after sending",
                no_answer,
                Answer(Some(Unsafe)),
            ),
            ("rule 4: POST 429", status(429), retry),
            ("rule 4: POST 502", status(502), retry),
            ("rule 4: POST 504", status(504), retry),
            (
                "rule 4: POST, nothing sent",
                Facts {
                    nothing_sent: true,
                    ..no_answer
                },
                retry,
            ),
            (
                "rule 4: idempotent 500",
                Facts {
                    idempotent: true,
                    ..status(500)
                },
                retry,
            ),
            (
                "rule 4: idempotent timeout",
                Facts {
                    idempotent: true,
                    ..no_answer
                },
                retry,
            ),
            (
                "rule 4: refresh 502 may have been rotated",
                Facts {
                    status: Some(502),
                    ..refresh
                },
                Answer(Some(Unsafe)),
            ),
            (
                "rule 4: refresh 500",
                Facts {
                    status: Some(500),
                    ..refresh
                },
                Answer(Some(Unsafe)),
            ),
            (
                "rule 4: refresh 504",
                Facts {
                    status: Some(504),
                    ..refresh
                },
                Answer(Some(Unsafe)),
            ),
            (
                "rule 4: refresh timeout",
                Facts {
                    status: None,
                    ..refresh
                },
                Answer(Some(Unsafe)),
            ),
            (
                "rule 4: refresh timeout, idempotent or not",
                Facts {
                    status: None,
                    idempotent: true,
                    ..refresh
                },
                Answer(Some(Unsafe)),
            ),
            ("rule 4: refresh 503", refresh, retry),
            (
                "rule 4: refresh 429",
                Facts {
                    status: Some(429),
                    ..refresh
                },
                retry,
            ),
            (
                "rule 4: refresh, nothing sent",
                Facts {
                    status: None,
                    nothing_sent: true,
                    ..refresh
                },
                retry,
            ),
            // Rule 5: Retry-After within backoff.max, waited out exactly.
            (
                "rule 5: Retry-After past backoff.max",
                Facts {
                    retry_after: Some(Duration::from_secs(3)),
                    ..BASE
                },
                Answer(Some(Unsafe)),
            ),
            (
                "rule 5: Retry-After within backoff.max",
                Facts {
                    retry_after: Some(Duration::from_secs(2)),
                    ..BASE
                },
                Retry(Duration::from_secs(2)),
            ),
            (
                "rule 5: Retry-After 0",
                Facts {
                    retry_after: Some(Duration::ZERO),
                    ..BASE
                },
                Retry(Duration::ZERO),
            ),
            // Rule 6: the backoff ends before the deadline.
            (
                "rule 6: backoff past the deadline",
                Facts {
                    time_left: BACKOFF,
                    ..BASE
                },
                Answer(Some(Exhausted)),
            ),
            (
                "rule 6: Retry-After past the deadline",
                Facts {
                    retry_after: Some(Duration::from_secs(2)),
                    time_left: Duration::from_secs(1),
                    ..BASE
                },
                Answer(Some(Exhausted)),
            ),
            // Rule 7: the gate is open (asked only once rules 1-6 allow a retry).
            (
                "rule 7: gate not asked yet",
                Facts {
                    gate_open: None,
                    slot_taken: None,
                    budget_allows: None,
                    ..BASE
                },
                Ask(Check::Gate),
            ),
            (
                "rule 7: circuit opened meanwhile",
                Facts {
                    gate_open: Some(false),
                    slot_taken: None,
                    budget_allows: None,
                    ..BASE
                },
                Answer(Some(Exhausted)),
            ),
            // Rule 8: a proxy-wide slot is free (taken only once the gate is open).
            (
                "rule 8: slot not asked yet",
                Facts {
                    slot_taken: None,
                    budget_allows: None,
                    ..BASE
                },
                Ask(Check::Slot),
            ),
            (
                "rule 8: no retry slot free",
                Facts {
                    slot_taken: Some(false),
                    budget_allows: None,
                    ..BASE
                },
                Answer(Some(ConcurrencyLimited)),
            ),
            // Rule 9: the budget allows it (drawn on only once a slot is held).
            (
                "rule 9: budget not asked yet",
                Facts {
                    budget_allows: None,
                    ..BASE
                },
                Ask(Check::Budget),
            ),
            (
                "rule 9: budget spent",
                Facts {
                    budget_allows: Some(false),
                    ..BASE
                },
                Answer(Some(BudgetExhausted)),
            ),
        ];
        for (why, facts, want) in rows {
            assert_eq!(decide(&facts), want, "{why}");
        }
    }

    /// An unsafe or exhausted attempt is never checked against the gate, a slot or the
    /// budget: those checks have effects (health counts the attempt, a slot is held, the
    /// budget drawn on) that only a retry may cause.
    #[test]
    fn no_check_before_the_pure_rules_allow_a_retry() {
        let unasked = Facts {
            gate_open: None,
            slot_taken: None,
            budget_allows: None,
            ..BASE
        };
        for facts in [
            Facts {
                status: Some(500),
                ..unasked
            },
            Facts {
                attempts: 3,
                ..unasked
            },
            Facts {
                time_left: Duration::ZERO,
                ..unasked
            },
            Facts {
                replayable: false,
                ..unasked
            },
        ] {
            assert!(
                matches!(decide(&facts), Decision::Answer(Some(_))),
                "{facts:?}"
            );
        }
    }

    mod looped {
        //! The loop around [`decide`], with a scripted attempt stage instead of a server.

        use std::sync::Mutex;

        use bytes::Bytes;
        use http::{Response, StatusCode, Uri, Version};
        use warden_config::{Backoff as BackoffSettings, Budget};
        use warden_health::GateRequest;
        use warden_policy::{Decision as Classified, RuleRef};

        use super::*;
        use crate::attempt::AttemptBody;
        use crate::body::ResponseBody;
        use crate::exchange::TokenAnswer;
        use crate::health::HealthHub;
        use crate::record::Pending;

        /// A connection whose circuit opens after `failures` transient attempts in a row.
        fn health(failures: u32) -> (Arc<HealthHub>, Arc<HealthHandle>) {
            let yaml = format!(
                "version: 1
admin: {{ listen: 127.0.0.1:0 }}
connections:
  - name: c
    mcp:
      listen: 127.0.0.1:0
      upstream: http://127.0.0.1:1
      circuit: {{ consecutive_failures: {failures} }}
"
            );
            let config = warden_config::parse(&yaml, "test").expect("config");
            let hub = HealthHub::new(&config);
            let health = hub.get("c").expect("connection");
            (hub, health)
        }

        fn answer(status: u16, number: u32, health: &Arc<HealthHandle>) -> AttemptResult {
            let verdict = if status < 400 { Verdict::Ok } else { T };
            let decision = Classified {
                verdict,
                retry: RetryMode::Default,
                rule: RuleRef::Builtin("http.5xx"),
                event: None,
                code: None,
            };
            let mut resp = Response::new(ResponseBody::local(Bytes::from_static(b"x")));
            *resp.status_mut() = StatusCode::from_u16(status).expect("status");
            AttemptResult {
                outcome: Ok((resp, TokenAnswer::default())),
                pending: Some(Pending {
                    health: Arc::clone(health),
                    role: Role::Mcp,
                    token_request: false,
                    grant_type: None,
                    decision: decision.clone(),
                    status: Some(status),
                    error_kind: None,
                    tls_detail: None,
                    has_access_token: false,
                }),
                decision: Some(decision),
                status: Some(status),
                nothing_sent: false,
                number,
                upstream_seconds: 0.0,
            }
        }

        fn post() -> Attempt {
            Attempt {
                method: Method::POST,
                uri: Uri::from_static("http://127.0.0.1:1/mcp"),
                version: Version::HTTP_11,
                headers: HeaderMap::new(),
                body: AttemptBody::Buffered(Bytes::from_static(b"{}")),
            }
        }

        const SETTINGS: Retry = Retry {
            max_attempts: 3,
            backoff: BackoffSettings {
                base: Duration::from_millis(100),
                max: Duration::from_secs(2),
            },
            budget: Budget {
                ratio: 0.2,
                min_per_second: 10,
            },
            max_body_bytes: 65536,
        };

        /// What the scripted attempt stage saw of each attempt: its number, its
        /// `x-warden-attempt`, the retry slots free while it ran, and when it ran.
        type Seen = Arc<Mutex<Vec<(u32, Option<String>, usize, Instant)>>>;

        /// Runs the loop against `statuses`, one per attempt.
        async fn run(
            statuses: &'static [u16],
            health: &Arc<HealthHandle>,
        ) -> (
            AttemptResult,
            Vec<(u32, Option<String>, usize, Instant)>,
            usize,
        ) {
            let budget = budget(&SETTINGS.budget);
            let slots = RetrySlots::new(1);
            let counters = RetryCounters::new("c", Role::Mcp);
            let route = RetryRoute {
                settings: &SETTINGS,
                backoff: Backoff {
                    base: SETTINGS.backoff.base,
                    max: SETTINGS.backoff.max,
                },
                budget: &budget,
                slots: &slots,
                counters: &counters,
                health,
                role: Role::Mcp,
            };
            let request = RetryRequest {
                gate_request: GateRequest::NotToken,
                idempotent: false,
                deadline: Instant::now() + Duration::from_secs(30),
            };
            let seen: Seen = Arc::default();
            let result = send_with_retries(&route, request, post(), |attempt, number| {
                let header = attempt
                    .headers
                    .get(&X_WARDEN_ATTEMPT)
                    .map(|v| v.to_str().expect("ascii").to_owned());
                let free = slots.permits.available_permits();
                seen.lock()
                    .expect("seen")
                    .push((number, header, free, Instant::now()));
                let status = statuses[usize::try_from(number - 1).expect("small")];
                let result = answer(status, number, health);
                async move { result }
            })
            .await;
            let seen = seen.lock().expect("seen").clone();
            (result, seen, slots.permits.available_permits())
        }

        #[tokio::test(start_paused = true)]
        async fn retries_carry_their_number_hold_a_slot_and_back_off_within_the_ceiling() {
            let (_hub, health) = health(5);
            let start = Instant::now();
            let (result, seen, free_after) = run(&[503, 503, 200], &health).await;
            let numbers: Vec<_> = seen
                .iter()
                .map(|(n, h, free, _)| (*n, h.clone(), *free))
                .collect();
            assert_eq!(
                numbers,
                [
                    (1, None, 1),
                    (2, Some("2".to_owned()), 0),
                    (3, Some("3".to_owned()), 0)
                ],
                "numbered attempts; a retry holds its slot while it runs"
            );
            assert_eq!(free_after, 1, "the slot is back once the answer is in");
            assert_eq!(result.number, 3);
            assert_eq!(result.verdict(), Verdict::Ok);
            assert!(
                result.pending.is_some(),
                "the answer the client gets is told to health when it ends, not here"
            );
            let mut previous = start;
            for (i, (_, _, _, at)) in seen.iter().enumerate().skip(1) {
                let ceiling =
                    SETTINGS.backoff.base * 2u32.pow(u32::try_from(i - 1).expect("small"));
                let waited = *at - previous;
                assert!(
                    waited <= ceiling,
                    "retry {i}: waited {waited:?} > {ceiling:?}"
                );
                previous = *at;
            }
        }

        #[tokio::test(start_paused = true)]
        async fn a_circuit_the_discarded_attempts_open_stops_the_next() {
            // Two transient attempts in a row open the circuit: each discarded attempt is
            // told to health before the gate is asked, so the third is never sent.
            let (_hub, health) = health(2);
            let (result, seen, free_after) = run(&[503, 503, 200], &health).await;
            assert_eq!(seen.len(), 2, "the open circuit stopped the third attempt");
            assert!(health.is_circuit_open(Role::Mcp));
            assert_eq!(
                result.status,
                Some(503),
                "the last answer goes to the client"
            );
            assert!(
                result.pending.is_none(),
                "told to health already: not counted twice"
            );
            assert_eq!(free_after, 1);
        }
    }

    #[test]
    fn idempotent_methods() {
        for m in [
            Method::GET,
            Method::HEAD,
            Method::OPTIONS,
            Method::TRACE,
            Method::PUT,
            Method::DELETE,
        ] {
            assert!(is_idempotent(&m), "{m}");
        }
        for m in [Method::POST, Method::PATCH] {
            assert!(!is_idempotent(&m), "{m}");
        }
    }
}
