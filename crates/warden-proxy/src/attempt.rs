//! One upstream attempt: send, read the head (and a token answer's body), classify, and
//! tell health and the metrics. The retry policy sees each attempt's result and decides
//! whether another follows.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Response, StatusCode, Version};
use http_body::Body as _;
use http_body_util::{BodyExt as _, LengthLimitError};
use tokio::time::Instant;
use warden_config::{ErrorKind, RetryMode, Role, TlsDetail, Verdict};
use warden_health::{Gate, GateRequest, GrantType};
use warden_policy::{Decision, Observation};

use crate::body::{Prefixed, ResponseBody};
use crate::exchange::{TOKEN_BODY_LIMIT, TokenAnswer};
use crate::headers;
use crate::health::ConnHealth;
use crate::local::LocalError;
use crate::metrics::RouteMetrics;
use crate::record::{Exchanged, Pending};
use crate::request::{RequestInfo, ResponseHeaders};
use crate::retry::{Attempt, AttemptFacts, HealthGate, parse_retry_after};
use crate::upstream;
use crate::upstream::UpstreamClient;

/// One attempt's answer and what was concluded from it.
pub(crate) struct AttemptResult {
    pub outcome: Result<(Response<ResponseBody>, TokenAnswer), LocalError>,
    /// None when the failure was the client's (its body broke the limit mid-stream):
    /// nothing to classify.
    pub decision: Option<Decision>,
    pub status: Option<u16>,
    pub nothing_sent: bool,
    /// The attempt's classification until health is told: by the retry loop when it
    /// discards this attempt, else when the client's answer ends.
    pub pending: Option<Pending>,
    /// Which attempt this was (1 for the first), and how long it waited for its head.
    pub number: u32,
    pub upstream_seconds: f64,
}

impl AttemptResult {
    /// What the access log says of this exchange.
    pub fn exchanged(&self) -> Exchanged {
        Exchanged {
            attempts: self.number,
            upstream_seconds: self.upstream_seconds,
            rule: self.decision.as_ref().map(|d| d.rule.clone()),
        }
    }

    pub fn verdict(&self) -> Verdict {
        self.decision
            .as_ref()
            .map_or(Verdict::ClientError, |d| d.verdict)
    }
}

impl AttemptFacts for AttemptResult {
    fn verdict(&self) -> Verdict {
        AttemptResult::verdict(self)
    }

    fn retry_mode(&self) -> RetryMode {
        self.decision.as_ref().map_or(RetryMode::Never, |d| d.retry)
    }

    fn status(&self) -> Option<StatusCode> {
        self.status.and_then(|s| StatusCode::from_u16(s).ok())
    }

    fn nothing_sent(&self) -> bool {
        self.nothing_sent
    }

    fn retry_after(&self) -> Option<Duration> {
        let (resp, _) = self.outcome.as_ref().ok()?;
        parse_retry_after(resp.headers())
    }

    fn settle(&mut self) {
        if let Some(pending) = self.pending.take() {
            pending.settle();
        }
    }

    fn take_leftover(&mut self) -> Option<Pin<Box<dyn Future<Output = ()> + Send>>> {
        let (resp, _) = self.outcome.as_mut().ok()?;
        let small = resp
            .body()
            .size_hint()
            .upper()
            .is_some_and(|n| n <= DRAIN_LIMIT);
        if !small {
            return None;
        }
        let body = std::mem::replace(resp.body_mut(), ResponseBody::local(Bytes::new()));
        // The leftover was settled when the retry was decided; draining records nothing.
        Some(Box::pin(async move {
            let _ = body.collect().await;
        }))
    }
}

/// A discarded answer of known length up to this is read to its end before a retry, which
/// keeps its connection pooled; anything larger, or of unknown length, is dropped.
const DRAIN_LIMIT: u64 = 64 * 1024;

impl HealthGate for Arc<ConnHealth> {
    fn gate(&self, role: Role, request: GateRequest) -> Gate {
        ConnHealth::gate(self, role, request)
    }
}

/// The inner service of the retry layer: each call is one attempt.
#[derive(Clone)]
pub(crate) struct AttemptService {
    pub ctx: Arc<Attempter>,
    pub info: Arc<RequestInfo>,
    pub deadline: Instant,
}

impl tower::Service<Attempt> for AttemptService {
    type Response = AttemptResult;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<AttemptResult, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, attempt: Attempt) -> Self::Future {
        let ctx = Arc::clone(&self.ctx);
        let info = Arc::clone(&self.info);
        let deadline = self.deadline;
        Box::pin(async move { Ok(ctx.attempt(attempt, &info, deadline).await) })
    }
}

/// The attempt stage's view of its route: what sending and classifying one attempt
/// needs, and nothing else.
pub(crate) struct Attempter {
    pub connection: String,
    pub role: Role,
    pub client: UpstreamClient,
    pub policy: Arc<warden_policy::Policy>,
    pub metrics: Arc<RouteMetrics>,
    pub health: Arc<ConnHealth>,
}

impl Attempter {
    /// Sends one attempt and classifies its answer (counting upstream errors); health is
    /// told later, through the result's [`Pending`].
    pub(crate) async fn attempt(
        &self,
        attempt: Attempt,
        info: &RequestInfo,
        deadline: Instant,
    ) -> AttemptResult {
        let number = attempt
            .headers
            .get(&crate::retry::X_WARDEN_ATTEMPT)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or(1);
        let sent_at = Instant::now();
        let sent = self.send(attempt, info, deadline).await;
        let upstream_seconds = sent_at.elapsed().as_secs_f64();
        let nothing_sent = matches!(
            &sent,
            Err(Failure::Upstream {
                nothing_sent: true,
                ..
            })
        );
        let outcome = sent.map_err(Failure::into_local);
        let tls_detail = outcome.as_ref().err().and_then(|local| local.tls_detail());
        let (status, answer, error_kind) = match &outcome {
            Ok((resp, answer)) => (Some(resp.status().as_u16()), Some(answer), None),
            Err(local) => match local.error_kind() {
                Some(kind) => (None, None, Some(kind)),
                None => {
                    return AttemptResult {
                        outcome,
                        decision: None,
                        status: None,
                        nothing_sent,
                        pending: None,
                        number,
                        upstream_seconds,
                    };
                }
            },
        };
        let response_headers = outcome.as_ref().ok().map(|(resp, _)| resp.headers());
        let obs = Observation {
            role: self.role,
            method: info.method.as_str(),
            path: info.path.path(),
            token_request: info.token_request,
            grant_type: info.grant_type.as_deref(),
            status,
            oauth_error: answer.and_then(|a| a.error.as_deref()),
            has_access_token: answer.is_some_and(|a| a.has_access_token),
            jsonrpc_error: None,
            mcp_tool_error: false,
            error_kind,
            response_headers: &ResponseHeaders(response_headers),
            request_headers: &info.watched,
        };
        let decision = self.policy.classify(&obs);
        if decision.verdict != Verdict::Ok {
            self.metrics
                .upstream_error(decision.verdict, decision.code_label(&obs));
        }
        let has_access_token = obs.has_access_token;
        tracing::debug!(
            connection = %self.connection,
            role = %self.role,
            status,
            error_kind = error_kind.map(ErrorKind::as_str),
            tls_detail = tls_detail.map(TlsDetail::as_str),
            verdict = decision.verdict.as_str(),
            rule = decision.rule.name(),
            "classified"
        );
        AttemptResult {
            outcome,
            pending: Some(Pending {
                health: Arc::clone(&self.health),
                role: self.role,
                token_request: info.token_request,
                grant_type: info.grant_type.as_deref().map(GrantType::from_form_value),
                decision: decision.clone(),
                status,
                error_kind,
                tls_detail,
                has_access_token,
            }),
            decision: Some(decision),
            status,
            nothing_sent,
            number,
            upstream_seconds,
        }
    }

    /// Sends `attempt` and returns the response head (token answers: with their body read
    /// ahead and looked at), all before `deadline`.
    async fn send(
        &self,
        attempt: Attempt,
        info: &RequestInfo,
        deadline: Instant,
    ) -> Result<(Response<ResponseBody>, TokenAnswer), Failure> {
        let request = attempt.into_request();
        let exchange = async {
            let resp = self.client.send(request).await.map_err(Failure::from)?;
            let (mut parts, body) = resp.into_parts();
            headers::strip_hop_by_hop(&mut parts.headers);
            // The client keeps its own protocol and keep-alive whatever the upstream
            // speaks: an HTTP/1.0 upstream must not turn the client's connection into
            // one-request-per-connection. (HTTP/2 clients ignore the field.)
            parts.version = Version::HTTP_11;
            if !info.token_request {
                return Ok((
                    Response::from_parts(parts, ResponseBody::upstream(body)),
                    TokenAnswer::default(),
                ));
            }
            let body = Prefixed::read(body, TOKEN_BODY_LIMIT)
                .await
                .map_err(|err| {
                    tracing::debug!(
                        connection = %self.connection,
                        error = %err,
                        "upstream token answer broke off"
                    );
                    Failure::Upstream {
                        kind: ErrorKind::Reset,
                        nothing_sent: false,
                        tls: None,
                    }
                })?;
            let answer = if body.is_complete() {
                TokenAnswer::parse(body.prefix())
            } else {
                TokenAnswer::default()
            };
            Ok((
                Response::from_parts(parts, ResponseBody::prefixed(body)),
                answer,
            ))
        };
        match tokio::time::timeout_at(deadline, exchange).await {
            Ok(result) => result,
            Err(_elapsed) => Err(Failure::Upstream {
                kind: ErrorKind::Timeout,
                nothing_sent: false,
                tls: None,
            }),
        }
    }
}

/// How an attempt failed below HTTP.
pub(crate) enum Failure {
    Upstream {
        kind: ErrorKind,
        nothing_sent: bool,
        /// Why the TLS handshake failed, when it did.
        tls: Option<TlsDetail>,
    },
    /// The client's body passed `limits.max_request_body_bytes` while it streamed.
    BodyTooLarge,
}

impl Failure {
    fn into_local(self) -> LocalError {
        match self {
            Failure::BodyTooLarge => LocalError::BodyTooLarge,
            Failure::Upstream {
                kind: ErrorKind::Timeout,
                ..
            } => LocalError::Timeout,
            Failure::Upstream {
                tls: Some(detail), ..
            } => LocalError::Tls(detail),
            Failure::Upstream { kind, .. } => LocalError::Unreachable(kind),
        }
    }
}

impl From<upstream::SendError> for Failure {
    fn from(err: upstream::SendError) -> Self {
        if is_body_limit(&err) {
            return Failure::BodyTooLarge;
        }
        let (kind, tls) = upstream::fault(&err);
        tracing::debug!(
            kind = kind.as_str(),
            tls_detail = tls.map(TlsDetail::as_str),
            error = %upstream::causes(&err),
            "upstream exchange failed"
        );
        Failure::Upstream {
            kind,
            tls,
            // A failure before the exchange means the request never left: safe to send
            // again.
            nothing_sent: err.nothing_sent(),
        }
    }
}

fn is_body_limit(err: &upstream::SendError) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cur {
        if e.is::<LengthLimitError>() {
            return true;
        }
        cur = e.source();
    }
    false
}
