//! The per-route request path, as a pipeline of narrow stages:
//! `admit → read_ahead → gate → (coalesce) → retry loop → attempt → record`. Each stage is
//! a plain function given only what it needs of the route; this module runs them in order
//! and answers for a stage that refuses.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use arc_swap::ArcSwap;
use http::header::{self, HeaderValue};
use http::uri::PathAndQuery;
use http::{HeaderMap, Method, Request, Response, Uri, Version};
use tokio::time::Instant;
use warden_config::Role;
use warden_health::{Gate, GateRequest};
use warden_net::ClientBody;

use crate::access;
use crate::admit::{Admission, admit};
use crate::attempt::{self, Attempt, AttemptBody, AttemptResult, AttemptRoute};
use crate::body::{RequestBody, ResponseBody};
use crate::coalesce::{self, LeaderAnswer};
use crate::exchange;
use crate::headers::{self, X_FORWARDED_PROTO};
use crate::local::LocalError;
use crate::metrics::Outcome;
use crate::read_ahead::{ReadAhead, read_ahead};
use crate::record::{Finish, Watch};
use crate::request::{RequestInfo, ToolCalls, WatchedHeaders};
use crate::retry::{self, RetryRequest, RetryRoute};
use crate::route::{Route, RouteSettings, RouteState};
use crate::short_circuit;

/// Runs one request through the route's stages. Returns a `Result` (that is never an error)
/// so that it is the service's future itself, boxed once: a wrapping `async` block would
/// hold this future and be moved whole into the box, a copy of several KB per request.
async fn handle(
    route: Arc<Route>,
    req: Request<ClientBody>,
    client_addr: HeaderValue,
) -> Result<Response<ResponseBody>, Infallible> {
    let start = Instant::now();
    // The stages before the upstream (admission, read-ahead, the health gate), in a block:
    // a local that was ever borrowed keeps its room in the future until its scope ends, so
    // in the function's own scope the client's request, its parts and body (about 700
    // bytes, all moved on by then) were held beside the retry loop's future, and every
    // request's future took a 4 KiB block where 3 KiB now do. (Two functions would do the
    // same, at the price of moving what this block hands on once more.)
    let Ready {
        attempt,
        info,
        request,
        refresh_key,
    } = {
        let (req, client_addr) = (req, client_addr);
        let (state, settings) = (&*route.state, &route.settings);
        let admission = Admission {
            authority: &settings.authority,
            listen: settings.listen,
            max_header_bytes: settings.max_header_bytes,
            max_body_bytes: settings.max_body_bytes,
        };
        if let Err(local) = admit(&req, &admission) {
            let resp = answer_locally(state, local, start);
            access_local(
                state,
                settings,
                req.method(),
                req.uri().path(),
                req.headers(),
                &resp,
                start,
            );
            return Ok(resp);
        }
        let (mut parts, body) = req.into_parts();
        let (request_id, trace_id) = if settings.access_log {
            (
                Some(access::request_id(&mut parts.headers)),
                access::trace_id(&parts.headers),
            )
        } else {
            (None, None)
        };
        let path = parts
            .uri
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/"));
        let token_request = settings.token_path.as_deref() == Some(path.path());
        let watched = WatchedHeaders::capture(&settings.watched_request_headers, &parts.headers);
        let plan = ReadAhead {
            max_body_bytes: settings.max_body_bytes,
            replay: settings.retry.max_attempts > 1,
            replay_bytes: settings.retry.max_body_bytes,
            token_request,
            mcp: state.role == Role::Mcp,
        };
        let body = match read_ahead(&parts.headers, body, plan).await {
            Ok(body) => body,
            Err(local) => {
                let resp = answer_locally(state, local, start);
                return Ok(logged(state, settings, &parts, &path, resp, start));
            }
        };
        let grant_type = if token_request {
            exchange::grant_type(body.prefix())
        } else {
            None
        };
        let gate_request = if token_request {
            GateRequest::token(grant_type.as_deref())
        } else {
            GateRequest::NotToken
        };
        match state.health.gate(state.role, gate_request) {
            Gate::Forward => {}
            refused => {
                let resp = short_circuit(state, refused, gate_request, start);
                return Ok(logged(state, settings, &parts, &path, resp, start));
            }
        }
        let refresh_grant = gate_request == GateRequest::RefreshGrant;
        let refresh_key = refresh_grant
            .then(|| exchange::form_field(body.prefix(), b"refresh_token"))
            .flatten()
            .map(|token| state.refreshes.key(&token));
        let tools = if state.role == Role::Mcp {
            ToolCalls::of_request(body.complete_bytes().as_deref())
        } else {
            ToolCalls::None
        };

        let body = match body.complete_bytes() {
            Some(bytes) if bytes.len() as u64 <= settings.retry.max_body_bytes => {
                AttemptBody::Buffered(bytes)
            }
            _ => AttemptBody::Streaming(RequestBody::client(body)),
        };
        let attempt = forwarded(settings, parts, path.clone(), &client_addr, body);
        let info = Arc::new(RequestInfo {
            method: attempt.method.clone(),
            path,
            watched,
            token_request,
            grant_type,
            refresh_grant,
            request_id,
            trace_id,
            tools,
        });
        let request = RetryRequest {
            gate_request,
            idempotent: retry::is_idempotent(&info.method),
            deadline: start + settings.request_timeout,
        };
        Ready {
            attempt,
            info,
            request,
            refresh_key,
        }
    };
    let state = &*route.state;
    let answer = match refresh_key {
        Some(key) => {
            let exchange = {
                let (route, info) = (Arc::clone(&route), Arc::clone(&info));
                move || async move { send(&route, attempt, &info, request).await }
            };
            coalesce::coalesced(
                &state.refreshes,
                key,
                exchange,
                request.deadline,
                &state.connection,
                state.role,
            )
            .await
        }
        None => {
            let mut result = send(&route, attempt, &info, request).await;
            let verdict = result.verdict();
            let pending = result.pending.take();
            let exchange = Some(result.exchanged());
            let response = match result.outcome {
                Ok((resp, _)) => resp,
                Err(local) => local.response(&route.state.connection, route.state.role),
            };
            LeaderAnswer {
                response,
                pending,
                verdict,
                exchange,
            }
        }
    };
    // Bound again rather than kept across the exchange: 16 bytes that took the request's
    // future past 2.5 KiB.
    let (state, settings) = (&*route.state, &route.settings);
    let from_upstream = answer.pending.is_some();
    let (parts, body) = answer.response.into_parts();
    let mut finish = Finish::new(
        Arc::clone(&settings.recorder),
        info,
        start,
        parts.status.as_u16(),
        answer.verdict,
        answer.pending,
        answer.exchange,
    );
    if from_upstream && let Some(watch) = watch_for(state.role, &parts.headers) {
        finish = finish.watch(watch, &parts);
    }
    if !from_upstream && LocalError::UpstreamBusy.marks(&parts.headers) {
        finish = finish.shed();
    }
    Ok(Response::from_parts(parts, body.finish_with(finish)))
}

/// A request past every stage that may refuse it, ready to go upstream.
struct Ready {
    attempt: Attempt,
    info: Arc<RequestInfo>,
    request: RetryRequest,
    refresh_key: Option<u64>,
}

/// The retry loop around the attempt stage, each given its narrow view of the route.
#[cfg(not(feature = "bench-bare"))]
async fn send(
    route: &Route,
    attempt: Attempt,
    info: &RequestInfo,
    request: RetryRequest,
) -> AttemptResult {
    let (state, settings) = (&*route.state, &route.settings);
    let upstream = state.upstream();
    let budget = state.budget();
    let retries = RetryRoute {
        settings: &settings.retry,
        backoff: settings.backoff,
        budget: &budget,
        slots: &settings.retry_slots,
        counters: &state.retries,
        health: &state.health,
        role: state.role,
    };
    let deadline = request.deadline;
    let upstream = &upstream;
    retry::send_with_retries(&retries, request, attempt, |one, number| {
        // Built for each attempt, in its box: kept here beside the retry loop, it made
        // every request's future 48 bytes larger, past the 2.5 KiB size class.
        let route = AttemptRoute {
            connection: &state.connection,
            role: state.role,
            upstream,
            policy: &settings.policy,
            metrics: &state.metrics,
            health: &state.health,
        };
        // Boxed: an attempt's future holds the upstream exchange's, several KB; inline,
        // every request's future would carry it and be moved (copied) whole into its box.
        boxed(|| attempt::attempt(route, one, number, info, deadline))
    })
    .await
}

/// Bench-only (`--features bench-bare`): the attempt sent once, neither classified nor told
/// to health, so an A/B against the real path shows what retries and classification cost.
/// Metrics and the access log are kept.
#[cfg(feature = "bench-bare")]
async fn send(
    route: &Route,
    attempt: Attempt,
    info: &RequestInfo,
    request: RetryRequest,
) -> AttemptResult {
    let upstream = route.state.upstream();
    let sent_at = Instant::now();
    let outcome = upstream
        .send(attempt.into_request(), info.token_request, request.deadline)
        .await
        .map_err(crate::upstream::Failure::into_local);
    AttemptResult {
        status: outcome
            .as_ref()
            .ok()
            .map(|(resp, _)| resp.status().as_u16()),
        outcome,
        decision: None,
        nothing_sent: false,
        pending: None,
        number: 1,
        upstream_seconds: sent_at.elapsed().as_secs_f64(),
    }
}

/// Boxes the future `make` builds. The box is allocated first, so the future (several KB)
/// can be built in it, where `Box::pin(future)` builds it on the stack and copies it in.
#[inline(always)]
fn boxed<F: Future>(make: impl FnOnce() -> F) -> Pin<Box<F>> {
    Box::into_pin(Box::write(Box::new_uninit(), make()))
}

/// The request as the upstream gets it: its URI, hop-by-hop headers gone, `x-forwarded-*`
/// added. `Host` (HTTP/1.1) or `:authority` (HTTP/2) is set from the URI when it is sent.
fn forwarded(
    settings: &RouteSettings,
    parts: http::request::Parts,
    path: PathAndQuery,
    client_addr: &HeaderValue,
    body: AttemptBody,
) -> Attempt {
    let http::request::Parts {
        method,
        mut headers,
        ..
    } = parts;
    let mut uri = http::uri::Parts::default();
    uri.scheme = Some(settings.scheme.clone());
    uri.authority = Some(settings.authority.clone());
    uri.path_and_query = Some(path);
    // Scheme, authority and path are each valid, so the URI is.
    let uri = Uri::from_parts(uri).unwrap_or_default();
    headers::strip_hop_by_hop(&mut headers);
    // The client's Host stays in for now: the upstream client replaces its value (HTTP/1.1)
    // or drops it for `:authority` (HTTP/2), which spares a removal and a re-insertion.
    headers::append_forwarded_for(&mut headers, client_addr);
    headers.insert(X_FORWARDED_PROTO.clone(), HeaderValue::from_static("http"));
    Attempt {
        method,
        uri,
        // The pooled client speaks HTTP/2 upstream when ALPN offers it, whatever the
        // client used; it needs an HTTP/1.1 request to decide that itself.
        version: Version::HTTP_11,
        headers,
        body,
    }
}

/// [`access_local`] for a request already in parts; returns the answer it logged.
fn logged(
    state: &RouteState,
    settings: &RouteSettings,
    parts: &http::request::Parts,
    path: &PathAndQuery,
    resp: Response<ResponseBody>,
    start: Instant,
) -> Response<ResponseBody> {
    access_local(
        state,
        settings,
        &parts.method,
        path.path(),
        &parts.headers,
        &resp,
        start,
    );
    resp
}

/// The access line of an answer warden wrote itself before any upstream work (a refusal
/// or a short-circuit).
fn access_local(
    state: &RouteState,
    settings: &RouteSettings,
    method: &Method,
    path: &str,
    headers: &HeaderMap,
    resp: &Response<ResponseBody>,
    start: Instant,
) {
    if !settings.access_log {
        return;
    }
    let outcome = resp
        .headers()
        .get(&short_circuit::X_WARDEN_SHORT_CIRCUIT)
        .map_or("client_error", |_| "short_circuit");
    tracing::info!(
        target: "warden::access",
        connection = %state.connection,
        role = %state.role,
        method = %method,
        path,
        status = resp.status().as_u16(),
        verdict = outcome,
        attempts = 0,
        total_ms = start.elapsed().as_secs_f64() * 1000.0,
        request_id = headers.get(&access::X_REQUEST_ID).and_then(|v| v.to_str().ok()),
        trace_id = access::trace_id(headers).as_deref(),
        "request"
    );
}

/// Answers for an upstream that must not be asked (README › Connection health). Not an
/// upstream outcome: health records nothing, the metrics say short_circuit.
fn short_circuit(
    state: &RouteState,
    gate: Gate,
    request: GateRequest,
    start: Instant,
) -> Response<ResponseBody> {
    let reason = gate.reason().unwrap_or("circuit_open");
    state
        .metrics
        .short_circuit(reason, start.elapsed().as_secs_f64());
    match gate {
        Gate::NeedsReauth { idp_error_code } if request == GateRequest::RefreshGrant => {
            short_circuit::refresh_refused(idp_error_code.as_deref())
        }
        Gate::NeedsReauth { idp_error_code } => {
            short_circuit::needs_reauth(&state.connection, idp_error_code.as_deref())
        }
        Gate::CircuitOpen { retry_after } => {
            short_circuit::circuit_open(&state.connection, state.role, retry_after)
        }
        // Only a refusing gate gets here; answering 503 keeps the request from the
        // upstream should that ever change.
        Gate::Forward => short_circuit::circuit_open(
            &state.connection,
            state.role,
            std::time::Duration::from_secs(1),
        ),
    }
}

/// A request warden refused or could not read: not an upstream outcome, so it is not
/// classified, only counted.
fn answer_locally(state: &RouteState, local: LocalError, start: Instant) -> Response<ResponseBody> {
    state.metrics.record(
        Outcome::Verdict(warden_config::Verdict::ClientError),
        start.elapsed().as_secs_f64(),
    );
    local.response(&state.connection, state.role)
}

/// MCP answers carry JSON-RPC messages as one JSON body or as an event stream; both are
/// watched for error objects and tool results as they pass.
fn watch_for(role: Role, headers: &HeaderMap) -> Option<Watch> {
    if role != Role::Mcp {
        return None;
    }
    let content_type = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    let essence = content_type.split(';').next()?.trim();
    if essence.eq_ignore_ascii_case("text/event-stream") {
        Some(Watch::sse())
    } else if essence.eq_ignore_ascii_case("application/json") {
        Some(Watch::json())
    } else {
        None
    }
}

/// The hyper service of one accepted client connection. Each request reads the route's
/// current version, so a reload reaches keep-alive connections too.
#[derive(Clone)]
pub(crate) struct RouteService {
    route: Arc<ArcSwap<Route>>,
    /// The peer's IP, formatted once per connection for `x-forwarded-for`.
    client_addr: HeaderValue,
}

impl RouteService {
    pub(crate) fn new(route: Arc<ArcSwap<Route>>, peer: SocketAddr) -> Self {
        let client_addr = HeaderValue::try_from(peer.ip().to_string())
            .unwrap_or_else(|_| HeaderValue::from_static("unknown"));
        RouteService { route, client_addr }
    }
}

impl hyper::service::Service<Request<ClientBody>> for RouteService {
    type Response = Response<ResponseBody>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn call(&self, req: Request<ClientBody>) -> Self::Future {
        let route = self.route.load_full();
        let client_addr = self.client_addr.clone();
        boxed(|| handle(route, req, client_addr))
    }
}
