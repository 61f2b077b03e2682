//! The per-route request path: check, rewrite, forward, account.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use http::header::{self, HeaderName, HeaderValue};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderMap, Method, Request, Response, Uri, Version};
use http_body_util::{LengthLimitError, Limited};
use hyper::body::Incoming;
use tokio::time::Instant;
use tower::ServiceExt as _;
use warden_config::{Connection, ErrorKind, Role, Route, Verdict};
use warden_health::{Gate, GateRequest};
use warden_policy::{Observation, Policy};

use crate::attempt::{AttemptResult, AttemptService, RequestInfo, ResponseHeaders, WatchedHeaders};
use crate::body::{JsonRpcWatch, Prefixed, RequestBody, ResponseBody};
use crate::coalesce::{self, Coalescer, Joined, Shared};
use crate::exchange::{self, TOKEN_BODY_LIMIT};
use crate::headers::{self, X_FORWARDED_PROTO};
use crate::health::ConnHealth;
use crate::local::LocalError;
use crate::metrics::{Outcome, RouteMetrics};
use crate::retry::{Attempt, AttemptBody, RetryOutcome, RetryPolicy, RetrySlots, RouteRetry};
use crate::short_circuit;
use crate::upstream::{self, UpstreamClient};

/// The compiled policy and what the data plane derives from it, shared by every route.
pub struct Classifier {
    pub policy: Arc<Policy>,
    /// Request headers the classifier may look at after forwarding.
    pub watched_request_headers: Arc<[HeaderName]>,
    /// Whether any rule matches on `jsonrpc_error`.
    pub jsonrpc_rules: bool,
}

/// Everything one route's requests need, built once per route.
pub struct RouteCtx {
    pub connection: String,
    pub role: Role,
    pub listen: SocketAddr,
    scheme: Scheme,
    authority: Authority,
    pub(crate) client: UpstreamClient,
    request_timeout: Duration,
    max_body_bytes: u64,
    max_header_bytes: usize,
    /// Oauth routes: requests to exactly this path are token requests.
    token_path: Option<String>,
    pub(crate) policy: Arc<Policy>,
    /// Whether any rule matches on `jsonrpc_error`, so JSON-RPC errors in bodies must be
    /// classified and not only counted.
    jsonrpc_rules: bool,
    /// Request headers the classifier may look at (`mcp-session-id` and those named by
    /// `request_header` rules); only these are kept past forwarding.
    watched_request_headers: Arc<[HeaderName]>,
    pub(crate) metrics: Arc<RouteMetrics>,
    pub(crate) health: Arc<ConnHealth>,
    retry: Arc<RouteRetry>,
    coalescer: Arc<Coalescer>,
}

impl RouteCtx {
    pub fn new(
        connection: &Connection,
        route: &Route,
        client: UpstreamClient,
        limits: &warden_config::Limits,
        classifier: &Classifier,
        health: Arc<ConnHealth>,
        retry_slots: Arc<RetrySlots>,
    ) -> Self {
        let scheme = match route.upstream.scheme {
            warden_config::Scheme::Http => Scheme::HTTP,
            warden_config::Scheme::Https => Scheme::HTTPS,
        };
        RouteCtx {
            connection: connection.name.clone(),
            role: route.role,
            listen: route.listen,
            scheme,
            authority: route.upstream.authority.clone(),
            client,
            request_timeout: route.timeouts.request,
            max_body_bytes: limits.max_request_body_bytes,
            max_header_bytes: limits.max_header_bytes,
            token_path: route.token_path.clone(),
            policy: Arc::clone(&classifier.policy),
            jsonrpc_rules: classifier.jsonrpc_rules,
            watched_request_headers: Arc::clone(&classifier.watched_request_headers),
            metrics: Arc::new(RouteMetrics::new(&connection.name, route.role)),
            health,
            retry: Arc::new(RouteRetry::new(
                &connection.name,
                route.role,
                route.retry,
                retry_slots,
            )),
            coalescer: Arc::default(),
        }
    }

    pub(crate) async fn handle(
        self: Arc<Self>,
        req: Request<Incoming>,
        client_addr: &HeaderValue,
    ) -> Response<ResponseBody> {
        let start = Instant::now();
        if let Err(local) = self.admit(&req) {
            return self.answer_locally(local, start);
        }
        let (parts, body) = req.into_parts();
        let path = parts
            .uri
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/"));
        let token_request = self.token_path.as_deref() == Some(path.path());
        let watched = WatchedHeaders::capture(&self.watched_request_headers, &parts.headers);
        let body = match self.read_ahead(&parts.headers, body, token_request).await {
            Ok(body) => body,
            Err(local) => return self.answer_locally(local, start),
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
        match self.health.gate(self.role, gate_request) {
            Gate::Forward => {}
            refused => return self.short_circuit(refused, gate_request, start),
        }
        let refresh_key = (gate_request == GateRequest::RefreshGrant)
            .then(|| exchange::form_field(body.prefix(), b"refresh_token"))
            .flatten()
            .map(|token| self.coalescer.key(&token));

        let body = match body.complete_bytes() {
            Some(bytes) if bytes.len() as u64 <= self.retry.settings.max_body_bytes => {
                AttemptBody::Buffered(bytes)
            }
            _ => AttemptBody::Streaming(RequestBody::client(body)),
        };
        let attempt = self.upstream_attempt(parts, path.clone(), client_addr, body);
        let info = Arc::new(RequestInfo {
            method: attempt.method.clone(),
            path,
            watched,
            token_request,
            grant_type,
        });
        let deadline = start + self.request_timeout;

        let (verdict, resp) = match refresh_key {
            Some(key) => {
                let shared = self
                    .coalesced(key, attempt, Arc::clone(&info), gate_request, deadline)
                    .await;
                (shared.verdict, shared.response(&self.connection, self.role))
            }
            None => {
                let result = self
                    .exchange(attempt, Arc::clone(&info), gate_request, deadline)
                    .await;
                let verdict = result.verdict();
                let resp = match result.outcome {
                    Ok((resp, _)) => resp,
                    Err(local) => local.response(&self.connection, self.role),
                };
                (verdict, resp)
            }
        };
        if gate_request == GateRequest::RefreshGrant {
            self.metrics.token_refresh(verdict);
        }
        self.metrics
            .record(Outcome::Verdict(verdict), start.elapsed().as_secs_f64());
        resp
    }

    /// Reads the start of a request body before forwarding: a token request's form (for its
    /// grant type and refresh token) and, when retries are on, a body small enough to
    /// replay. Anything larger streams on unread.
    async fn read_ahead(
        &self,
        headers: &HeaderMap,
        body: Incoming,
        token_request: bool,
    ) -> Result<Prefixed<Limited<Incoming>>, LocalError> {
        let body = limit(body, self.max_body_bytes);
        let replay = self.retry.settings.max_attempts > 1;
        let declared = headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        let ahead = if token_request {
            TOKEN_BODY_LIMIT.max(usize::try_from(self.retry.settings.max_body_bytes).unwrap_or(0))
        } else if replay && declared.is_none_or(|len| len <= self.retry.settings.max_body_bytes) {
            // One byte past the replay limit tells "fits" from "too large to replay".
            usize::try_from(self.retry.settings.max_body_bytes.saturating_add(1))
                .unwrap_or(usize::MAX)
        } else {
            return Ok(Prefixed::streaming(body));
        };
        Prefixed::read(body, ahead).await.map_err(|err| {
            if err.is::<LengthLimitError>() {
                LocalError::BodyTooLarge
            } else {
                LocalError::ClientBody
            }
        })
    }

    /// The request as the upstream gets it: its URI, `Host`/`:authority` set from it, hop-by-
    /// hop headers gone, `x-forwarded-*` added.
    fn upstream_attempt(
        &self,
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
        uri.scheme = Some(self.scheme.clone());
        uri.authority = Some(self.authority.clone());
        uri.path_and_query = Some(path);
        // Scheme, authority and path are each valid, so the URI is.
        let uri = Uri::from_parts(uri).unwrap_or_default();
        headers::strip_hop_by_hop(&mut headers);
        // The client sets Host (HTTP/1.1) or :authority (HTTP/2) from the URI.
        headers.remove(header::HOST);
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

    /// Attempts, retried as the policy allows (SPEC §5).
    async fn exchange(
        self: &Arc<Self>,
        attempt: Attempt,
        info: Arc<RequestInfo>,
        gate_request: GateRequest,
        deadline: Instant,
    ) -> AttemptResult {
        let replayable = matches!(attempt.body, AttemptBody::Buffered(_));
        self.retry.deposit();
        let policy = RetryPolicy::new(
            Arc::clone(&self.retry),
            Arc::clone(&self.health),
            self.role,
            gate_request,
            &info.method,
            deadline,
        );
        let attempts = AttemptService {
            ctx: Arc::clone(self),
            info,
            deadline,
        };
        let result = match tower::retry::Retry::new(policy, attempts)
            .oneshot(attempt)
            .await
        {
            Ok(result) => result,
            Err(never) => match never {},
        };
        // A body too large to replay was never offered to the policy; say why it was not
        // retried all the same.
        if !replayable
            && result.verdict() == Verdict::Transient
            && self.retry.settings.max_attempts > 1
        {
            self.retry.count(RetryOutcome::Unsafe);
        }
        result
    }

    /// A refresh grant: joins the exchange already in flight for the same refresh token, or
    /// starts it. The exchange runs on its own task, so a caller that goes away does not
    /// cancel it for the others.
    async fn coalesced(
        self: &Arc<Self>,
        key: u64,
        attempt: Attempt,
        info: Arc<RequestInfo>,
        gate_request: GateRequest,
        deadline: Instant,
    ) -> Arc<Shared> {
        let slot = match self.coalescer.join(key) {
            Joined::Follow(slot) => slot,
            Joined::Lead(publisher) => {
                let slot = publisher.subscribe();
                let ctx = Arc::clone(self);
                tokio::spawn(async move {
                    let result = ctx.exchange(attempt, info, gate_request, deadline).await;
                    publisher.publish(Arc::new(Shared::from_result(result)));
                });
                slot
            }
        };
        match coalesce::wait(slot).await {
            Some(shared) => shared,
            None => Arc::new(Shared {
                answer: Err(LocalError::Unreachable(ErrorKind::Reset)),
                verdict: Verdict::Transient,
            }),
        }
    }

    /// Answers for an upstream that must not be asked (SPEC §5). Not an upstream outcome:
    /// health records nothing, the metrics say short_circuit.
    fn short_circuit(
        &self,
        gate: Gate,
        request: GateRequest,
        start: Instant,
    ) -> Response<ResponseBody> {
        let reason = gate.reason().unwrap_or("circuit_open");
        self.metrics
            .short_circuit(reason, start.elapsed().as_secs_f64());
        match gate {
            Gate::NeedsReauth { idp_error_code } if request == GateRequest::RefreshGrant => {
                short_circuit::refresh_refused(idp_error_code.as_deref())
            }
            Gate::NeedsReauth { idp_error_code } => {
                short_circuit::needs_reauth(&self.connection, idp_error_code.as_deref())
            }
            Gate::CircuitOpen { retry_after } => {
                short_circuit::circuit_open(&self.connection, self.role, retry_after)
            }
            Gate::Forward => unreachable_forward(&self.connection, self.role),
        }
    }

    /// A request warden refused or could not read: not an upstream outcome, so it is not
    /// classified, only counted.
    fn answer_locally(&self, local: LocalError, start: Instant) -> Response<ResponseBody> {
        self.metrics.record(
            Outcome::Verdict(Verdict::ClientError),
            start.elapsed().as_secs_f64(),
        );
        local.response(&self.connection, self.role)
    }

    pub(crate) fn metrics_handle(&self) -> Arc<RouteMetrics> {
        Arc::clone(&self.metrics)
    }

    /// A recovery probe: `GET path` to the upstream, bounded by `timeouts.request`; only
    /// the status matters and the body is dropped unread.
    pub(crate) async fn probe(&self, path: PathAndQuery) -> crate::prober::ProbeResult {
        let mut uri = http::uri::Parts::default();
        uri.scheme = Some(self.scheme.clone());
        uri.authority = Some(self.authority.clone());
        uri.path_and_query = Some(path);
        let Ok(uri) = Uri::from_parts(uri) else {
            return crate::prober::ProbeResult {
                status: None,
                error_kind: Some(ErrorKind::Connect),
            };
        };
        let mut req = Request::new(RequestBody::empty());
        *req.uri_mut() = uri;
        req.headers_mut().insert(
            header::USER_AGENT,
            HeaderValue::from_static(concat!("warden-probe/", env!("CARGO_PKG_VERSION"))),
        );
        let (status, error_kind) =
            match tokio::time::timeout(self.request_timeout, self.client.request(req)).await {
                Err(_) => (None, Some(ErrorKind::Timeout)),
                Ok(Ok(resp)) => (Some(resp.status().as_u16()), None),
                Ok(Err(err)) => (None, Some(upstream::error_kind(&err))),
            };
        crate::prober::ProbeResult { status, error_kind }
    }

    /// MCP answers carry JSON-RPC messages as one JSON body or as an event stream; both are
    /// watched for error objects as they pass.
    pub(crate) fn jsonrpc_watch(&self, headers: &HeaderMap) -> Option<JsonRpcWatch> {
        if self.role != Role::Mcp {
            return None;
        }
        let content_type = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
        let essence = content_type.split(';').next()?.trim();
        if essence.eq_ignore_ascii_case("text/event-stream") {
            Some(JsonRpcWatch::sse())
        } else if essence.eq_ignore_ascii_case("application/json") {
            Some(JsonRpcWatch::json())
        } else {
            None
        }
    }

    /// Counts each JSON-RPC error of an MCP answer and, when `policy.rules` match on
    /// `jsonrpc_error`, classifies it with the answer's other facts: a matching rule's
    /// verdict is counted as an upstream error with the JSON-RPC code's label. The request's
    /// own verdict was decided at the response head, before the body streamed.
    pub(crate) fn on_jsonrpc_error(
        &self,
        info: &RequestInfo,
        head: &http::response::Parts,
    ) -> crate::body::OnJsonRpcError {
        let metrics = Arc::clone(&self.metrics);
        if !self.jsonrpc_rules {
            return Box::new(move |code| {
                metrics.jsonrpc_error(warden_policy::jsonrpc_code_label(code));
            });
        }
        let policy = Arc::clone(&self.policy);
        let role = self.role;
        let method = info.method.clone();
        let path = info.path.clone();
        let watched = info.watched.clone();
        let status = head.status.as_u16();
        let response_headers = head.headers.clone();
        Box::new(move |code| {
            let label = warden_policy::jsonrpc_code_label(code);
            metrics.jsonrpc_error(label);
            let response_headers = ResponseHeaders(Some(&response_headers));
            let mut obs = Observation::new(role, method.as_str(), path.path());
            obs.status = Some(status);
            obs.jsonrpc_error = Some(code);
            obs.response_headers = &response_headers;
            obs.request_headers = &watched;
            let decision = policy.classify(&obs);
            if matches!(decision.rule, warden_policy::RuleRef::User(..))
                && decision.verdict != Verdict::Ok
            {
                metrics.upstream_error(decision.verdict, label);
            }
        })
    }

    /// Refuses what a reverse proxy for one upstream must not carry, before any upstream work.
    fn admit(&self, req: &Request<Incoming>) -> Result<(), LocalError> {
        if req.method() == Method::CONNECT {
            return Err(LocalError::Connect);
        }
        crate::strict::check(req)?;
        // HTTP/2 requests always carry an authority; only an HTTP/1 absolute-form target
        // says the client takes warden for a forward proxy.
        if req.version() < Version::HTTP_2
            && let Some(target) = req.uri().authority()
            && !self.is_own_authority(target)
        {
            return Err(LocalError::AbsoluteForm);
        }
        if headers::head_bytes(req.headers()) > self.max_header_bytes {
            return Err(LocalError::HeaderTooLarge);
        }
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|len| len > self.max_body_bytes) {
            return Err(LocalError::BodyTooLarge);
        }
        Ok(())
    }

    fn is_own_authority(&self, target: &Authority) -> bool {
        target == &self.authority
            || (target.port_u16() == Some(self.listen.port())
                && target
                    .host()
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip == self.listen.ip()))
    }
}

fn limit(body: Incoming, max: u64) -> Limited<Incoming> {
    Limited::new(body, usize::try_from(max).unwrap_or(usize::MAX))
}

/// The hyper service of one accepted client connection. Each request reads the route's
/// current settings, so a reload reaches keep-alive connections too.
#[derive(Clone)]
pub struct RouteService {
    ctx: Arc<arc_swap::ArcSwap<RouteCtx>>,
    /// The peer's IP, formatted once per connection for `x-forwarded-for`.
    client_addr: HeaderValue,
}

impl RouteService {
    pub fn new(ctx: Arc<arc_swap::ArcSwap<RouteCtx>>, peer: SocketAddr) -> Self {
        let client_addr = HeaderValue::try_from(peer.ip().to_string())
            .unwrap_or_else(|_| HeaderValue::from_static("unknown"));
        RouteService { ctx, client_addr }
    }
}

impl hyper::service::Service<Request<Incoming>> for RouteService {
    type Response = Response<ResponseBody>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        let ctx = self.ctx.load_full();
        let client_addr = self.client_addr.clone();
        Box::pin(async move { Ok(ctx.handle(req, &client_addr).await) })
    }
}

/// `short_circuit` is only called for a refusing gate; answering 503 keeps the request
/// from the upstream should that ever change.
fn unreachable_forward(connection: &str, role: Role) -> Response<ResponseBody> {
    short_circuit::circuit_open(connection, role, std::time::Duration::from_secs(1))
}
