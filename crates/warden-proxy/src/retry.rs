//! Inline retries of transient failures (SPEC §5), as a `tower::retry::Policy`: the request
//! body is buffered once and replayed per attempt; every attempt is classified and counted
//! by health; a retry happens only when it is safe, within budget, within the proxy-wide
//! cap on concurrent retries, and before the request's deadline.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue};
use http::{HeaderMap, Method, Request, StatusCode, Uri, Version};
use metrics::{Counter, Gauge, counter};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tower::retry::budget::{Budget as _, TpsBudget};
use warden_config::{Retry, RetryMode, Role, Verdict};
use warden_health::{Gate, GateRequest};

use crate::body::RequestBody;
use crate::jitter;

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
    /// Not safe to repeat, or a Retry-After past the backoff cap.
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

/// The proxy-wide limit on retries in flight, and its gauge.
pub(crate) struct RetrySlots {
    permits: Arc<Semaphore>,
    in_flight: Gauge,
}

impl RetrySlots {
    pub fn new(max: usize) -> Arc<RetrySlots> {
        Arc::new(RetrySlots {
            permits: Arc::new(Semaphore::new(max)),
            in_flight: metrics::gauge!("warden_retries_in_flight"),
        })
    }

    /// A slot, or None when every slot is taken: nobody queues behind a retry.
    fn try_take(&self) -> Option<Slot> {
        let permit = Arc::clone(&self.permits).try_acquire_owned().ok()?;
        self.in_flight.increment(1.0);
        Some(Slot {
            _permit: permit,
            in_flight: self.in_flight.clone(),
        })
    }
}

/// One held retry slot; given back (and the gauge lowered) on drop.
pub(crate) struct Slot {
    _permit: OwnedSemaphorePermit,
    in_flight: Gauge,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.in_flight.decrement(1.0);
    }
}

/// One route's retry settings and shared state.
pub(crate) struct RouteRetry {
    pub settings: Retry,
    /// Shared with the route's next settings after a reload that keeps its budget
    /// settings: a reload must not hand out a fresh allowance.
    pub budget: Arc<TpsBudget>,
    pub slots: Arc<RetrySlots>,
    outcomes: [Counter; RetryOutcome::ALL.len()],
}

/// The window SPEC §5 gives the budget.
const BUDGET_WINDOW: Duration = Duration::from_secs(10);

impl RouteRetry {
    pub fn new(connection: &str, role: Role, settings: Retry, slots: Arc<RetrySlots>) -> Self {
        // TpsBudget wants a percentage as a fraction (0.2 = 20 %).
        // TpsBudget asserts its inputs; keep them in its range whatever the config says.
        let budget = TpsBudget::new(
            BUDGET_WINDOW,
            settings.budget.min_per_second.min(1_000_000),
            (settings.budget.ratio as f32).clamp(0.0, 1000.0),
        );
        let outcomes = RetryOutcome::ALL.map(|o| {
            counter!(
                "warden_retries_total",
                "connection" => connection.to_owned(),
                "role" => role.as_str(),
                "outcome" => o.as_str()
            )
        });
        RouteRetry {
            settings,
            budget: Arc::new(budget),
            slots,
            outcomes,
        }
    }

    /// These settings, with `previous`'s budget (and what it has counted) when its budget
    /// settings are the same.
    pub fn inherit(mut self, previous: &RouteRetry) -> Self {
        if previous.settings.budget == self.settings.budget {
            self.budget = Arc::clone(&previous.budget);
        }
        self
    }

    /// Every request puts into the budget what its retries may take out.
    pub fn deposit(&self) {
        self.budget.deposit();
    }

    pub fn count(&self, outcome: RetryOutcome) {
        if let Some(i) = RetryOutcome::ALL.iter().position(|o| *o == outcome) {
            self.outcomes[i].increment(1);
        }
    }

    /// The un-jittered backoff ceiling before retry number `retry` (1-based): `base`,
    /// doubling, capped at `max`.
    pub fn ceiling(&self, retry: u32) -> Duration {
        let factor = 2u32.saturating_pow(retry.saturating_sub(1).min(31));
        self.settings
            .backoff
            .base
            .saturating_mul(factor)
            .min(self.settings.backoff.max)
    }
}

/// A request as each attempt sends it: the head cloned per attempt, the body replayed
/// from one buffer (or, when it was too large to buffer, streamed once).
pub(crate) struct Attempt {
    pub method: Method,
    pub uri: Uri,
    pub version: Version,
    pub headers: HeaderMap,
    pub body: AttemptBody,
}

pub(crate) enum AttemptBody {
    Buffered(Bytes),
    /// Sent once; an attempt with this body is never repeated.
    Streaming(RequestBody),
}

impl Attempt {
    pub fn into_request(self) -> Request<RequestBody> {
        let body = match self.body {
            AttemptBody::Buffered(bytes) => RequestBody::bytes(bytes),
            AttemptBody::Streaming(body) => body,
        };
        let mut req = Request::new(body);
        *req.method_mut() = self.method;
        *req.uri_mut() = self.uri;
        *req.version_mut() = self.version;
        *req.headers_mut() = self.headers;
        req
    }

    fn try_clone(&self) -> Option<Attempt> {
        let AttemptBody::Buffered(bytes) = &self.body else {
            return None;
        };
        Some(Attempt {
            method: self.method.clone(),
            uri: self.uri.clone(),
            version: self.version,
            headers: self.headers.clone(),
            body: AttemptBody::Buffered(bytes.clone()),
        })
    }
}

/// What the retry policy needs to know about one attempt's answer.
pub(crate) trait AttemptFacts {
    fn verdict(&self) -> Verdict;
    fn retry_mode(&self) -> RetryMode;
    fn status(&self) -> Option<StatusCode>;
    /// The request never left warden (the connection could not be set up).
    fn nothing_sent(&self) -> bool;
    fn retry_after(&self) -> Option<Duration>;
    /// Tells health this attempt's outcome now: it will not be the answer the client
    /// gets, so nobody records it at the answer's end.
    fn settle(&mut self) {}
    /// Takes what is left of a discarded answer (its unread body), to be finished off
    /// while the retry waits; None when there is nothing worth reading.
    fn take_leftover(&mut self) -> Option<Pin<Box<dyn Future<Output = ()> + Send>>> {
        None
    }
}

/// Decides, per attempt, whether to try again (SPEC §5).
pub(crate) struct RetryPolicy<H> {
    pub route: Arc<RouteRetry>,
    pub health: H,
    pub role: Role,
    pub gate_request: GateRequest,
    pub refresh_grant: bool,
    pub idempotent: bool,
    pub deadline: Instant,
    /// Attempts made so far.
    pub attempts: u32,
    /// The slot of the retry now in flight, if any.
    slot: Option<Slot>,
}

/// tower's `Retry` clones its policy into each request's future; a clone starts with no
/// slot held (the slot belongs to the retry in flight, not to the policy's settings).
impl<H: Clone> Clone for RetryPolicy<H> {
    fn clone(&self) -> Self {
        RetryPolicy {
            route: Arc::clone(&self.route),
            health: self.health.clone(),
            role: self.role,
            gate_request: self.gate_request,
            refresh_grant: self.refresh_grant,
            idempotent: self.idempotent,
            deadline: self.deadline,
            attempts: self.attempts,
            slot: None,
        }
    }
}

/// The health gate as the retry policy sees it (so the policy is testable without a proxy).
pub(crate) trait HealthGate {
    fn gate(&self, role: Role, request: GateRequest) -> Gate;
}

impl<H> RetryPolicy<H> {
    pub fn new(
        route: Arc<RouteRetry>,
        health: H,
        role: Role,
        gate_request: GateRequest,
        method: &Method,
        deadline: Instant,
    ) -> Self {
        RetryPolicy {
            route,
            health,
            role,
            gate_request,
            refresh_grant: gate_request == GateRequest::RefreshGrant,
            idempotent: is_idempotent(method),
            deadline,
            attempts: 1,
            slot: None,
        }
    }

    /// SPEC §5: safe to repeat when nothing was sent, on 429/502/503/504, or for an
    /// idempotent method; a refresh grant only when nothing was sent or on 429/503 (a
    /// refresh token that reached the IdP may have been rotated).
    fn safe_to_repeat(&self, facts: &impl AttemptFacts) -> bool {
        if facts.nothing_sent() {
            return true;
        }
        let status = facts.status().map(|s| s.as_u16());
        if self.refresh_grant {
            return matches!(status, Some(429 | 503));
        }
        matches!(status, Some(429 | 502 | 503 | 504)) || self.idempotent
    }

    /// Whether and after how long to retry, or the outcome that ends the exchange (None:
    /// the first attempt was not transient, nothing to count).
    pub fn decide(
        &mut self,
        facts: &mut impl AttemptFacts,
    ) -> Result<Duration, Option<RetryOutcome>>
    where
        H: HealthGate,
    {
        // The previous retry's answer is in: its slot is free again.
        self.slot = None;
        let retried = self.attempts > 1;
        if facts.verdict() != Verdict::Transient {
            return Err(retried.then_some(if facts.verdict() == Verdict::Ok {
                RetryOutcome::Success
            } else {
                RetryOutcome::Failed
            }));
        }
        let settings = &self.route.settings;
        if settings.max_attempts <= 1 {
            return Err(None);
        }
        // No byte of the answer has reached the client here: warden decides at the response
        // head, before it forwards anything, and never retries once it has.
        if facts.retry_mode() == RetryMode::Never || !self.safe_to_repeat(facts) {
            return Err(Some(RetryOutcome::Unsafe));
        }
        if self.attempts >= settings.max_attempts {
            return Err(Some(RetryOutcome::Exhausted));
        }
        let delay = match facts.retry_after() {
            Some(after) if after > settings.backoff.max => {
                return Err(Some(RetryOutcome::Unsafe));
            }
            Some(after) => after,
            None => jitter::full(self.route.ceiling(self.attempts)),
        };
        if Instant::now() + delay >= self.deadline {
            return Err(Some(RetryOutcome::Exhausted));
        }
        // Every other check allows a retry: this attempt is done with, and health must
        // count it before the gate is asked (a circuit this attempt opens stops the next).
        facts.settle();
        if !matches!(
            self.health.gate(self.role, self.gate_request),
            Gate::Forward
        ) {
            return Err(Some(RetryOutcome::Exhausted));
        }
        let Some(slot) = self.route.slots.try_take() else {
            return Err(Some(RetryOutcome::ConcurrencyLimited));
        };
        if !self.route.budget.withdraw() {
            return Err(Some(RetryOutcome::BudgetExhausted));
        }
        self.slot = Some(slot);
        self.attempts += 1;
        Ok(delay)
    }
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

impl<H, S> tower::retry::Policy<Attempt, S, std::convert::Infallible> for RetryPolicy<H>
where
    H: HealthGate,
    S: AttemptFacts,
{
    type Future = Pin<Box<dyn Future<Output = ()> + Send>>;

    fn retry(
        &mut self,
        req: &mut Attempt,
        result: &mut Result<S, std::convert::Infallible>,
    ) -> Option<Self::Future> {
        let facts = match result {
            Ok(facts) => facts,
            Err(never) => match *never {},
        };
        match self.decide(facts) {
            Ok(delay) => {
                // Upstream logs can tell a retry from a first attempt (Envoy's
                // x-envoy-attempt-count, by another name).
                req.headers
                    .insert(X_WARDEN_ATTEMPT.clone(), HeaderValue::from(self.attempts));
                tracing::debug!(
                    attempt = self.attempts,
                    delay_ms = delay.as_millis() as u64,
                    verdict = facts.verdict().as_str(),
                    status = facts.status().map(|s| s.as_u16()),
                    "retrying"
                );
                let leftover = facts.take_leftover();
                let deadline = self.deadline;
                Some(Box::pin(async move {
                    // Reading a small discarded body to its end gives its connection back
                    // to the pool, so the retry need not open a new one.
                    if let Some(drain) = leftover {
                        let _ = tokio::time::timeout_at(deadline, drain).await;
                    }
                    // tokio's timer has millisecond ticks: a zero wait must not sleep one.
                    if !delay.is_zero() {
                        tokio::time::sleep(delay).await;
                    }
                }))
            }
            Err(outcome) => {
                if let Some(outcome) = outcome {
                    self.route.count(outcome);
                }
                None
            }
        }
    }

    fn clone_request(&mut self, req: &Attempt) -> Option<Attempt> {
        req.try_clone()
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

    /// One attempt's facts, as the table gives them.
    #[derive(Clone, Copy)]
    struct Facts {
        verdict: Verdict,
        never: bool,
        status: Option<u16>,
        nothing_sent: bool,
        retry_after: Option<u64>,
    }

    impl AttemptFacts for Facts {
        fn verdict(&self) -> Verdict {
            self.verdict
        }
        fn retry_mode(&self) -> RetryMode {
            if self.never {
                RetryMode::Never
            } else {
                RetryMode::Default
            }
        }
        fn status(&self) -> Option<StatusCode> {
            self.status.and_then(|s| StatusCode::from_u16(s).ok())
        }
        fn nothing_sent(&self) -> bool {
            self.nothing_sent
        }
        fn retry_after(&self) -> Option<Duration> {
            self.retry_after.map(Duration::from_secs)
        }
    }

    struct FixedGate(bool);

    impl HealthGate for FixedGate {
        fn gate(&self, _role: Role, _request: GateRequest) -> Gate {
            if self.0 {
                Gate::Forward
            } else {
                Gate::CircuitOpen {
                    retry_after: Duration::from_secs(1),
                }
            }
        }
    }

    const T: Verdict = Verdict::Transient;

    fn answer(verdict: Verdict, status: Option<u16>) -> Facts {
        Facts {
            verdict,
            never: false,
            status,
            nothing_sent: false,
            retry_after: None,
        }
    }

    /// What the table varies besides the facts.
    #[derive(Clone, Copy)]
    struct Setup {
        method: &'static str,
        refresh: bool,
        /// Attempts made before this decision.
        attempts: u32,
        max_attempts: u32,
        gate_open: bool,
        slots: usize,
        budget_ok: bool,
        /// Time left before the request's deadline.
        left: Duration,
    }

    const POST: Setup = Setup {
        method: "POST",
        refresh: false,
        attempts: 1,
        max_attempts: 3,
        gate_open: true,
        slots: 5,
        budget_ok: true,
        left: Duration::from_secs(30),
    };

    fn decide(setup: Setup, facts: Facts) -> Result<Duration, Option<RetryOutcome>> {
        let settings = Retry {
            max_attempts: setup.max_attempts,
            backoff: warden_config::Backoff {
                base: Duration::from_millis(100),
                max: Duration::from_secs(2),
            },
            budget: warden_config::Budget {
                ratio: if setup.budget_ok { 0.2 } else { 0.0 },
                min_per_second: if setup.budget_ok { 10 } else { 0 },
            },
            max_body_bytes: 65536,
        };
        let route = Arc::new(RouteRetry::new(
            "t",
            Role::Mcp,
            settings,
            RetrySlots::new(setup.slots),
        ));
        let request = if setup.refresh {
            GateRequest::RefreshGrant
        } else {
            GateRequest::NotToken
        };
        let method = Method::from_bytes(setup.method.as_bytes()).expect("method");
        let mut policy = RetryPolicy::new(
            route,
            FixedGate(setup.gate_open),
            Role::Mcp,
            request,
            &method,
            Instant::now() + setup.left,
        );
        policy.attempts = setup.attempts;
        let mut facts = facts;
        policy.decide(&mut facts)
    }

    /// `Ok(())`: a retry (its delay checked against the backoff); `Err`: what ends it.
    type Want = Result<(), Option<RetryOutcome>>;

    /// SPEC §5's retry rules, one row each: (why, setup, facts, what decide says).
    #[test]
    fn decide_table() {
        use RetryOutcome::*;
        let retry = Ok(());
        let sent_nothing = Facts {
            nothing_sent: true,
            ..answer(T, None)
        };
        let refresh = Setup {
            refresh: true,
            ..POST
        };
        let rows: Vec<(&str, Setup, Facts, Want)> = vec![
            (
                "ok, first attempt: nothing to count",
                POST,
                answer(Verdict::Ok, Some(200)),
                Err(None),
            ),
            (
                "ok after a retry",
                Setup {
                    attempts: 2,
                    ..POST
                },
                answer(Verdict::Ok, Some(200)),
                Err(Some(Success)),
            ),
            (
                "client_error after a retry",
                Setup {
                    attempts: 2,
                    ..POST
                },
                answer(Verdict::ClientError, Some(404)),
                Err(Some(Failed)),
            ),
            (
                "terminal after a retry",
                Setup {
                    attempts: 2,
                    ..POST
                },
                answer(Verdict::Terminal, Some(400)),
                Err(Some(Failed)),
            ),
            (
                "retries off",
                Setup {
                    max_attempts: 1,
                    ..POST
                },
                answer(T, Some(503)),
                Err(None),
            ),
            (
                "rule says retry: never",
                POST,
                Facts {
                    never: true,
                    ..answer(T, Some(503))
                },
                Err(Some(Unsafe)),
            ),
            (
                "POST 500: not safe",
                POST,
                answer(T, Some(500)),
                Err(Some(Unsafe)),
            ),
            (
                "POST timeout after sending: not safe",
                POST,
                answer(T, None),
                Err(Some(Unsafe)),
            ),
            ("POST 429", POST, answer(T, Some(429)), retry),
            ("POST 502", POST, answer(T, Some(502)), retry),
            ("POST 503", POST, answer(T, Some(503)), retry),
            ("POST 504", POST, answer(T, Some(504)), retry),
            ("POST, nothing sent", POST, sent_nothing, retry),
            (
                "GET 500: idempotent",
                Setup {
                    method: "GET",
                    ..POST
                },
                answer(T, Some(500)),
                retry,
            ),
            (
                "PUT timeout: idempotent",
                Setup {
                    method: "PUT",
                    ..POST
                },
                answer(T, None),
                retry,
            ),
            (
                "PATCH 500",
                Setup {
                    method: "PATCH",
                    ..POST
                },
                answer(T, Some(500)),
                Err(Some(Unsafe)),
            ),
            (
                "refresh 502: may have been rotated",
                refresh,
                answer(T, Some(502)),
                Err(Some(Unsafe)),
            ),
            (
                "refresh 504",
                refresh,
                answer(T, Some(504)),
                Err(Some(Unsafe)),
            ),
            (
                "refresh timeout",
                refresh,
                answer(T, None),
                Err(Some(Unsafe)),
            ),
            ("refresh 503", refresh, answer(T, Some(503)), retry),
            ("refresh 429", refresh, answer(T, Some(429)), retry),
            ("refresh, nothing sent", refresh, sent_nothing, retry),
            (
                "attempts used up",
                Setup {
                    attempts: 3,
                    ..POST
                },
                answer(T, Some(503)),
                Err(Some(Exhausted)),
            ),
            (
                "Retry-After past backoff.max",
                POST,
                Facts {
                    retry_after: Some(3),
                    ..answer(T, Some(503))
                },
                Err(Some(Unsafe)),
            ),
            (
                "Retry-After within backoff.max",
                POST,
                Facts {
                    retry_after: Some(2),
                    ..answer(T, Some(503))
                },
                retry,
            ),
            (
                "backoff past the deadline",
                Setup {
                    left: Duration::ZERO,
                    ..POST
                },
                answer(T, Some(503)),
                Err(Some(Exhausted)),
            ),
            (
                "circuit opened meanwhile",
                Setup {
                    gate_open: false,
                    ..POST
                },
                answer(T, Some(503)),
                Err(Some(Exhausted)),
            ),
            (
                "no retry slot free",
                Setup { slots: 0, ..POST },
                answer(T, Some(503)),
                Err(Some(ConcurrencyLimited)),
            ),
            (
                "budget spent",
                Setup {
                    budget_ok: false,
                    ..POST
                },
                answer(T, Some(503)),
                Err(Some(BudgetExhausted)),
            ),
        ];
        for (why, setup, facts, want) in rows {
            let got = decide(setup, facts);
            match (got, want) {
                (Ok(delay), Ok(())) => {
                    let ceiling = Duration::from_millis(100) * 2u32.pow(setup.attempts - 1);
                    let bound = facts.retry_after.map_or(ceiling, Duration::from_secs);
                    assert!(delay <= bound, "{why}: {delay:?} > {bound:?}");
                    if let Some(secs) = facts.retry_after {
                        assert_eq!(
                            delay,
                            Duration::from_secs(secs),
                            "{why}: waited out exactly"
                        );
                    }
                }
                (got, want) => assert_eq!(got.map(|_| ()), want, "{why}"),
            }
        }
    }

    #[test]
    fn backoff_ceiling_doubles_from_base_to_max() {
        let settings = Retry {
            max_attempts: 10,
            backoff: warden_config::Backoff {
                base: Duration::from_millis(100),
                max: Duration::from_millis(1_000),
            },
            budget: warden_config::Budget {
                ratio: 0.2,
                min_per_second: 10,
            },
            max_body_bytes: 0,
        };
        let route = RouteRetry::new("t", Role::Mcp, settings, RetrySlots::new(1));
        let ceilings: Vec<u128> = (1..=6).map(|n| route.ceiling(n).as_millis()).collect();
        assert_eq!(ceilings, [100, 200, 400, 800, 1_000, 1_000]);
        assert_eq!(route.ceiling(u32::MAX), Duration::from_millis(1_000));
    }

    #[test]
    fn idempotent_methods() {
        for m in [
            Method::GET,
            Method::HEAD,
            Method::OPTIONS,
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
