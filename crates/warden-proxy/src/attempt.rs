//! One upstream attempt: send it, classify its head (and a token answer's body), count an
//! upstream error. Health is told later, through the result's [`Pending`]: by the retry
//! loop when it discards the attempt, else when the client's answer ends.

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, Uri, Version};
use tokio::time::Instant;
use warden_config::{ErrorKind, RetryMode, Role, TlsDetail, Verdict};
use warden_health::GrantType;
use warden_policy::{Decision, Observation, Policy};

use crate::body::{RequestBody, ResponseBody};
use crate::exchange::TokenAnswer;
use crate::health::HealthHandle;
use crate::local::LocalError;
use crate::metrics::RouteMetrics;
use crate::record::{Exchanged, Pending};
use crate::request::{RequestInfo, ResponseHeaders};
use crate::upstream::{Failure, Upstream};

/// A request as each attempt sends it: the head cloned per attempt, the body replayed
/// from one buffer (or, when it was too large to buffer, streamed once).
pub(crate) struct Attempt {
    pub(crate) method: Method,
    pub(crate) uri: Uri,
    pub(crate) version: Version,
    pub(crate) headers: HeaderMap,
    pub(crate) body: AttemptBody,
}

pub(crate) enum AttemptBody {
    Buffered(Bytes),
    /// Sent once; an attempt with this body is never repeated.
    Streaming(RequestBody),
}

impl Attempt {
    pub(crate) fn into_request(self) -> Request<RequestBody> {
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

    /// A copy to send, when the body was buffered; None for a streamed body, which is sent
    /// once.
    pub(crate) fn try_clone(&self) -> Option<Attempt> {
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

/// One attempt's answer and what was concluded from it.
pub(crate) struct AttemptResult {
    pub(crate) outcome: Result<(Response<ResponseBody>, TokenAnswer), LocalError>,
    /// None when the failure was the client's (its body broke the limit mid-stream):
    /// nothing to classify.
    pub(crate) decision: Option<Decision>,
    pub(crate) status: Option<u16>,
    pub(crate) nothing_sent: bool,
    /// The attempt's classification until health is told.
    pub(crate) pending: Option<Pending>,
    /// Which attempt this was (1 for the first), and how long it waited for its head.
    pub(crate) number: u32,
    pub(crate) upstream_seconds: f64,
}

impl AttemptResult {
    /// What the access log says of this exchange.
    pub(crate) fn exchanged(&self) -> Exchanged {
        Exchanged {
            attempts: self.number,
            upstream_seconds: self.upstream_seconds,
            rule: self.decision.as_ref().map(|d| d.rule.clone()),
        }
    }

    pub(crate) fn verdict(&self) -> Verdict {
        self.decision
            .as_ref()
            .map_or(Verdict::ClientError, |d| d.verdict)
    }

    /// The deciding rule's `retry` setting.
    pub(crate) fn retry_mode(&self) -> RetryMode {
        self.decision.as_ref().map_or(RetryMode::Never, |d| d.retry)
    }

    /// Tells health this attempt's outcome now: it will not be the answer the client gets,
    /// so nobody records it at the answer's end.
    pub(crate) fn settle(&mut self) {
        if let Some(pending) = self.pending.take() {
            pending.settle();
        }
    }
}

/// What sending and classifying one attempt needs of its route, and nothing else.
pub(crate) struct AttemptRoute<'a> {
    pub(crate) connection: &'a str,
    pub(crate) role: Role,
    pub(crate) upstream: &'a Arc<Upstream>,
    pub(crate) policy: &'a Policy,
    pub(crate) metrics: &'a RouteMetrics,
    pub(crate) health: &'a Arc<HealthHandle>,
}

/// Sends attempt number `number` (1 for the first) and classifies its answer, counting
/// upstream errors; health is told later, through the result's [`Pending`].
pub(crate) async fn attempt(
    route: AttemptRoute<'_>,
    attempt: Attempt,
    number: u32,
    info: &RequestInfo,
    deadline: Instant,
) -> AttemptResult {
    let sent_at = Instant::now();
    let sent = route
        .upstream
        .send(attempt.into_request(), info.token_request, deadline)
        .await;
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
        role: route.role,
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
    let decision = route.policy.classify(&obs);
    if decision.verdict != Verdict::Ok {
        route
            .metrics
            .upstream_error(decision.verdict, decision.code_label(&obs));
    }
    let has_access_token = obs.has_access_token;
    tracing::debug!(
        connection = %route.connection,
        role = %route.role,
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
            health: Arc::clone(route.health),
            role: route.role,
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
