//! The record stage: each request is counted once, when its answer ends (or its client
//! goes away), with its final verdict.
//!
//! The head's verdict is only a first word. A JSON-RPC error or a failing tool inside a
//! `200` (matched by a `jsonrpc_error` or `mcp_tool_error` rule), or an upstream that breaks
//! off mid-body, decides the request's real outcome, and health must see that outcome, not
//! the head's. Nothing is held back to decide: the body passes frame by frame, and
//! [`Finish`] only looks at the frames on their way.

use std::sync::Arc;

use http::HeaderMap;
use tokio::time::Instant;
use warden_config::{ErrorKind, Role, TlsDetail, Verdict};
use warden_health::{GrantType, TokenOutcome, UpstreamOutcome};
use warden_policy::{Decision, Event, Observation, Policy, RuleRef};

use crate::health::HealthHandle;
use crate::metrics::{Outcome, RouteMetrics, ToolResult};
use crate::observe::jsonrpc::{self, JsonRpcSseWatcher, MessageFacts};
use crate::request::{RequestInfo, ResponseHeaders, ToolCalls};

/// How much of one MCP JSON body or one SSE event is kept to look at; larger ones pass
/// unread, so a hostile upstream cannot make warden hold its stream.
pub(crate) const WATCH_LIMIT: usize = 64 * 1024;

/// One attempt's classification, not yet told to health. The retry loop settles the
/// attempts it discards at once; the final attempt's is settled by [`Finish`] when the
/// answer ends, with the final verdict.
pub(crate) struct Pending {
    pub health: Arc<HealthHandle>,
    pub role: Role,
    pub token_request: bool,
    pub grant_type: Option<GrantType>,
    pub decision: Decision,
    pub status: Option<u16>,
    pub error_kind: Option<ErrorKind>,
    pub tls_detail: Option<TlsDetail>,
    pub has_access_token: bool,
}

impl Pending {
    /// Tells health the head's verdict: the answer is done (or discarded).
    pub(crate) fn settle(self) {
        let verdict = self.decision.verdict;
        self.settle_as(verdict, false);
    }

    /// Tells health the body failed after the head: a transient `reset`.
    pub(crate) fn settle_broken(self) {
        self.settle_as(Verdict::Transient, true);
    }

    /// Tells health the final verdict; `broke_off` when the body failed after the head.
    fn settle_as(self, verdict: Verdict, broke_off: bool) {
        let error_kind = if broke_off {
            Some(ErrorKind::Reset)
        } else {
            self.error_kind
        };
        if self.token_request {
            let Some(mut outcome) = TokenOutcome::from_decision(
                &self.decision,
                self.status,
                error_kind,
                self.has_access_token,
            ) else {
                return;
            };
            outcome.grant_type = self.grant_type;
            outcome.tls_detail = self.tls_detail;
            if verdict != outcome.verdict {
                outcome.verdict = verdict;
                if verdict == Verdict::Transient {
                    outcome.event = Event::RefreshFailedTransient;
                }
            }
            self.health.record_token(outcome);
        } else {
            self.health.record_upstream(
                self.role,
                UpstreamOutcome {
                    verdict,
                    status: self.status,
                    error_kind,
                    tls_detail: self.tls_detail,
                },
            );
        }
    }
}

/// The upstream exchange behind an answer, for the access log.
#[derive(Debug, Clone)]
pub(crate) struct Exchanged {
    pub attempts: u32,
    pub upstream_seconds: f64,
    pub rule: Option<RuleRef>,
}

/// What the record stage needs of its route: the route builds it once per version of its
/// settings.
pub(crate) struct Recorder {
    pub connection: String,
    pub role: Role,
    pub metrics: Arc<RouteMetrics>,
    pub policy: Arc<Policy>,
    /// Whether any rule reads answer bodies (`jsonrpc_error`, `mcp_tool_error`).
    pub body_rules: bool,
    /// `log.access`, and the target not filtered out.
    pub access_log: bool,
}

/// What an MCP answer body is looked at for.
pub(crate) enum Watch {
    /// An event stream: each event's data is one JSON-RPC message (or batch).
    Sse(JsonRpcSseWatcher),
    /// One JSON document, looked at once complete; `None` once it outgrew [`WATCH_LIMIT`].
    Json(Option<Vec<u8>>),
}

impl Watch {
    pub(crate) fn sse() -> Self {
        Watch::Sse(JsonRpcSseWatcher::new(WATCH_LIMIT))
    }

    pub(crate) fn json() -> Self {
        Watch::Json(Some(Vec::new()))
    }
}

/// How an answer ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum End {
    /// The last frame went out.
    Complete,
    /// The upstream's body failed after the head (reset, truncated).
    BrokeOff,
    /// The body was dropped before its end: the client went away (or hyper had no need to
    /// read an empty body).
    Dropped,
}

/// Everything recorded when one request's answer ends.
pub(crate) struct Finish {
    ctx: Arc<Recorder>,
    info: Arc<RequestInfo>,
    start: Instant,
    /// The upstream exchange behind the answer, for the access log.
    exchange: Option<Exchanged>,
    /// Body bytes sent to the client so far.
    bytes: u64,
    /// Time to the response head, which `warden_request_duration_seconds` measures: an
    /// SSE stream's length is not upstream latency.
    head_seconds: f64,
    refresh_grant: bool,
    /// The final attempt, when this request's own exchange made it (a coalesced follower
    /// shares the leader's, which the leader records).
    pending: Option<Pending>,
    head_verdict: Verdict,
    /// The worst verdict a body-reading rule gave, if any did.
    body_verdict: Option<Verdict>,
    broke_off: bool,
    /// Answered by warden at its own upstream connection limit: a short circuit, not a
    /// verdict on anything the upstream or the client did.
    shed: bool,
    status: Option<u16>,
    /// Kept only when body rules may need them.
    response_headers: Option<HeaderMap>,
    watch: Option<Watch>,
}

impl Finish {
    pub(crate) fn new(
        ctx: Arc<Recorder>,
        info: Arc<RequestInfo>,
        start: Instant,
        status: u16,
        head_verdict: Verdict,
        pending: Option<Pending>,
        exchange: Option<Exchanged>,
    ) -> Self {
        Finish {
            refresh_grant: info.refresh_grant,
            ctx,
            info,
            start,
            exchange,
            bytes: 0,
            head_seconds: start.elapsed().as_secs_f64(),
            pending,
            head_verdict,
            body_verdict: None,
            broke_off: false,
            shed: false,
            status: Some(status),
            response_headers: None,
            watch: None,
        }
    }

    /// Records the request as a short circuit (`upstream_busy`): warden's own limit
    /// answered it.
    pub(crate) fn shed(mut self) -> Self {
        self.shed = true;
        self
    }

    /// Looks at an MCP answer's body for JSON-RPC errors and tool results.
    pub(crate) fn watch(mut self, watch: Watch, head: &http::response::Parts) -> Self {
        if self.ctx.body_rules {
            self.response_headers = Some(head.headers.clone());
        }
        self.watch = Some(watch);
        self
    }

    /// One data frame on its way to the client.
    pub(crate) fn feed(&mut self, data: &[u8]) {
        self.bytes += data.len() as u64;
        let Some(mut watch) = self.watch.take() else {
            return;
        };
        let every_result = matches!(self.info.tools, ToolCalls::Ids(_));
        match &mut watch {
            Watch::Sse(watcher) => {
                watcher.feed_messages(data, every_result, &mut |m| self.observe(m));
            }
            Watch::Json(buf) => {
                if let Some(b) = buf {
                    if b.len() + data.len() > WATCH_LIMIT {
                        *buf = None;
                    } else {
                        b.extend_from_slice(data);
                    }
                }
            }
        }
        self.watch = Some(watch);
    }

    /// The answer ended: finish looking, then count the request once with its final
    /// verdict and tell health.
    pub(crate) fn end(mut self, end: End) {
        if let Some(watch) = self.watch.take() {
            match watch {
                Watch::Sse(mut watcher) => {
                    watcher.finish();
                }
                // A JSON answer cut short is not looked at: half a document says nothing.
                Watch::Json(Some(buf)) if end == End::Complete => {
                    let every_result = matches!(self.info.tools, ToolCalls::Ids(_));
                    jsonrpc::messages(&buf, every_result, &mut |m| self.observe(m));
                }
                Watch::Json(_) => {}
            }
        }
        if end == End::BrokeOff {
            self.broke_off = true;
            self.body_verdict = Some(worst(self.body_verdict, Verdict::Transient));
            self.ctx
                .metrics
                .upstream_error(Verdict::Transient, ErrorKind::Reset.as_str());
        }
        let verdict = self.body_verdict.unwrap_or(self.head_verdict);
        if self.refresh_grant {
            self.ctx.metrics.token_refresh(verdict);
        }
        if self.shed {
            self.ctx
                .metrics
                .short_circuit("upstream_busy", self.head_seconds);
        } else {
            self.ctx
                .metrics
                .record(Outcome::Verdict(verdict), self.head_seconds);
        }
        if verdict != self.head_verdict || self.broke_off {
            tracing::info!(
                connection = %self.ctx.connection,
                role = %self.ctx.role,
                status = self.status,
                head_verdict = self.head_verdict.as_str(),
                verdict = verdict.as_str(),
                error_kind = self.broke_off.then_some(ErrorKind::Reset.as_str()),
                "answer reclassified by its body"
            );
        }
        if self.ctx.access_log {
            self.access_line(verdict, end);
        }
        if let Some(pending) = self.pending.take() {
            pending.settle_as(verdict, self.broke_off);
        }
    }

    /// One line per request, when its answer ends: what an operator greps for first.
    fn access_line(&self, verdict: Verdict, end: End) {
        let exchange = self.exchange.as_ref();
        tracing::info!(
            target: "warden::access",
            connection = %self.ctx.connection,
            role = %self.ctx.role,
            method = %self.info.method,
            path = self.info.path.path(),
            status = self.status,
            verdict = if self.shed { "short_circuit" } else { verdict.as_str() },
            rule = exchange.and_then(|e| e.rule.as_ref()).map(RuleRef::name),
            attempts = exchange.map_or(0, |e| e.attempts),
            upstream_ms = exchange.map(|e| e.upstream_seconds * 1000.0),
            total_ms = self.start.elapsed().as_secs_f64() * 1000.0,
            bytes = self.bytes,
            error_kind = self
                .broke_off
                .then_some(ErrorKind::Reset)
                .or(self.pending.as_ref().and_then(|p| p.error_kind))
                .map(ErrorKind::as_str),
            tls_detail = self
                .pending
                .as_ref()
                .and_then(|p| p.tls_detail)
                .map(TlsDetail::as_str),
            client_gone = end == End::Dropped,
            request_id = self.info.request_id.as_ref().and_then(|v| v.to_str().ok()),
            trace_id = self.info.trace_id.as_deref(),
            "request"
        );
    }

    /// One JSON-RPC message of the answer.
    fn observe(&mut self, message: MessageFacts) {
        let metrics = &self.ctx.metrics;
        let tool_answer = self.info.tools.answers(&message);
        if let Some(code) = message.error_code {
            let label = warden_policy::jsonrpc_code_label(code);
            metrics.jsonrpc_error(label);
            if tool_answer {
                metrics.tool_call(ToolResult::JsonRpcError);
            }
            self.classify_body(label, |obs| obs.jsonrpc_error = Some(code));
        } else if let Some(is_error) = message.tool_error
            && tool_answer
        {
            if is_error {
                metrics.tool_call(ToolResult::ToolError);
                self.classify_body("tool_error", |obs| obs.mcp_tool_error = true);
            } else {
                metrics.tool_call(ToolResult::Ok);
            }
        }
    }

    /// Classifies the answer with one body fact; only a rule that reads bodies
    /// (`jsonrpc_error`, `mcp_tool_error`) gives a body-level verdict.
    fn classify_body(&mut self, label: &'static str, fact: impl FnOnce(&mut Observation<'_>)) {
        if !self.ctx.body_rules {
            return;
        }
        let policy = &self.ctx.policy;
        let response_headers = ResponseHeaders(self.response_headers.as_ref());
        let mut obs = Observation::new(
            self.ctx.role,
            self.info.method.as_str(),
            self.info.path.path(),
        );
        obs.status = self.status;
        obs.response_headers = &response_headers;
        obs.request_headers = &self.info.watched;
        fact(&mut obs);
        let decision = policy.classify(&obs);
        let RuleRef::User(index, _) = &decision.rule else {
            return;
        };
        if !policy.reads_body(*index) {
            return;
        }
        if decision.verdict != Verdict::Ok {
            self.ctx.metrics.upstream_error(decision.verdict, label);
        }
        self.body_verdict = Some(worst(self.body_verdict, decision.verdict));
    }
}

/// The more severe of two verdicts, for an answer with several body facts: terminal over
/// transient over auth over client_error over ok.
fn worst(current: Option<Verdict>, new: Verdict) -> Verdict {
    let rank = |v: Verdict| match v {
        Verdict::Ok => 0,
        Verdict::ClientError => 1,
        Verdict::Auth => 2,
        Verdict::Transient => 3,
        Verdict::Terminal => 4,
    };
    match current {
        Some(current) if rank(current) >= rank(new) => current,
        _ => new,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worst_is_by_severity() {
        assert_eq!(worst(None, Verdict::Ok), Verdict::Ok);
        assert_eq!(
            worst(Some(Verdict::Terminal), Verdict::Transient),
            Verdict::Terminal
        );
        assert_eq!(
            worst(Some(Verdict::Transient), Verdict::Terminal),
            Verdict::Terminal
        );
        assert_eq!(
            worst(Some(Verdict::Ok), Verdict::ClientError),
            Verdict::ClientError
        );
        assert_eq!(
            worst(Some(Verdict::Auth), Verdict::ClientError),
            Verdict::Auth
        );
    }
}
