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
use warden_config::{Connection, ErrorKind, Role, Route, Verdict};
use warden_health::{Gate, GateRequest, TokenOutcome, UpstreamOutcome};
use warden_policy::{HeaderLookup, Observation, Policy};

use crate::body::{JsonRpcWatch, Prefixed, RequestBody, ResponseBody, Watched};
use crate::exchange::{self, TOKEN_BODY_LIMIT, TokenAnswer};
use crate::headers::{self, X_FORWARDED_PROTO};
use crate::health::ConnHealth;
use crate::local::LocalError;
use crate::metrics::{Outcome, RouteMetrics};
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
    client: UpstreamClient,
    request_timeout: Duration,
    max_body_bytes: u64,
    max_header_bytes: usize,
    /// Oauth routes: requests to exactly this path are token requests.
    token_path: Option<String>,
    policy: Arc<Policy>,
    /// Whether any rule matches on `jsonrpc_error`, so JSON-RPC errors in bodies must be
    /// classified and not only counted.
    jsonrpc_rules: bool,
    /// Request headers the classifier may look at (`mcp-session-id` and those named by
    /// `request_header` rules); only these are kept past forwarding.
    watched_request_headers: Arc<[HeaderName]>,
    metrics: Arc<RouteMetrics>,
    health: Arc<ConnHealth>,
}

impl RouteCtx {
    pub fn new(
        connection: &Connection,
        route: &Route,
        client: UpstreamClient,
        limits: &warden_config::Limits,
        classifier: &Classifier,
        health: Arc<ConnHealth>,
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
        }
    }

    async fn handle(
        &self,
        req: Request<Incoming>,
        client_addr: &HeaderValue,
    ) -> Response<ResponseBody> {
        let start = Instant::now();
        if let Err(local) = self.admit(&req) {
            return self.answer_locally(local, start);
        }
        let method = req.method().clone();
        let path = req
            .uri()
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/"));
        let token_request = self.token_path.as_deref() == Some(path.path());
        let watched = WatchedHeaders::capture(&self.watched_request_headers, req.headers());

        let (req, grant_type) = if token_request {
            match read_token_request(req, self.max_body_bytes).await {
                Ok(pair) => pair,
                Err(local) => return self.answer_locally(local, start),
            }
        } else {
            let (parts, body) = req.into_parts();
            (
                Request::from_parts(
                    parts,
                    RequestBody::client(Prefixed::streaming(limit(body, self.max_body_bytes))),
                ),
                None,
            )
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

        let info = RequestInfo {
            method,
            path,
            watched,
        };
        let outcome = self.forward(req, &info, client_addr).await;
        let RequestInfo {
            method,
            path,
            watched,
        } = info;
        let (status, answer, error_kind) = match &outcome {
            Ok((resp, answer)) => (Some(resp.status().as_u16()), Some(answer), None),
            Err(LocalError::Unreachable(kind)) => (None, None, Some(*kind)),
            Err(LocalError::Timeout) => (None, None, Some(ErrorKind::Timeout)),
            Err(local) => return self.answer_locally(*local, start),
        };
        let response_headers = outcome.as_ref().ok().map(|(resp, _)| resp.headers());
        let obs = Observation {
            role: self.role,
            method: method.as_str(),
            path: path.path(),
            token_request,
            grant_type: grant_type.as_deref(),
            status,
            oauth_error: answer.and_then(|a| a.error.as_deref()),
            has_access_token: answer.is_some_and(|a| a.has_access_token),
            jsonrpc_error: None,
            error_kind,
            response_headers: &ResponseHeaders(response_headers),
            request_headers: &watched,
        };
        let decision = self.policy.classify(&obs);
        if decision.verdict != Verdict::Ok {
            self.metrics
                .upstream_error(decision.verdict, decision.code_label(&obs));
        }
        if token_request && warden_policy::is_refresh(obs.grant_type) {
            self.metrics.token_refresh(decision.verdict);
        }
        if token_request {
            if let Some(outcome) =
                TokenOutcome::from_decision(&decision, status, error_kind, obs.has_access_token)
            {
                self.health.record_token(outcome);
            }
        } else {
            self.health.record_upstream(
                self.role,
                UpstreamOutcome::from_decision(&decision, status, error_kind),
            );
        }
        tracing::debug!(
            connection = %self.connection,
            role = %self.role,
            status,
            verdict = decision.verdict.as_str(),
            rule = decision.rule.name(),
            "classified"
        );
        self.metrics.record(
            Outcome::Verdict(decision.verdict),
            start.elapsed().as_secs_f64(),
        );
        match outcome {
            Ok((resp, _)) => resp,
            Err(local) => local.response(&self.connection, self.role),
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

    /// Sends `req` upstream and returns the response head (token responses: with their body
    /// read ahead and looked at).
    async fn forward(
        &self,
        req: Request<RequestBody>,
        info: &RequestInfo,
        client_addr: &HeaderValue,
    ) -> Result<(Response<ResponseBody>, TokenAnswer), LocalError> {
        let path = info.path.clone();
        let token_request = self.token_path.as_deref() == Some(path.path());
        let (mut parts, body) = req.into_parts();
        let mut uri = http::uri::Parts::default();
        uri.scheme = Some(self.scheme.clone());
        uri.authority = Some(self.authority.clone());
        uri.path_and_query = Some(path);
        parts.uri = Uri::from_parts(uri).map_err(|_| LocalError::AbsoluteForm)?;
        // The pooled client speaks HTTP/2 upstream when ALPN offers it, whatever the
        // client used; it needs an HTTP/1.1 request to decide that itself.
        parts.version = Version::HTTP_11;

        let headers = &mut parts.headers;
        headers::strip_hop_by_hop(headers);
        // The client sets Host (HTTP/1.1) or :authority (HTTP/2) from the URI.
        headers.remove(header::HOST);
        headers::append_forwarded_for(headers, client_addr);
        headers.insert(X_FORWARDED_PROTO.clone(), HeaderValue::from_static("http"));
        let upstream_req = Request::from_parts(parts, body);

        let exchange = async {
            let resp = self.client.request(upstream_req).await?;
            let (mut parts, body) = resp.into_parts();
            headers::strip_hop_by_hop(&mut parts.headers);
            if !token_request {
                let body = match self.jsonrpc_watch(&parts.headers) {
                    Some(watch) => ResponseBody::Watched {
                        body: Watched::new(body, watch, self.on_jsonrpc_error(info, &parts)),
                    },
                    None => ResponseBody::Upstream { body },
                };
                return Ok((Response::from_parts(parts, body), TokenAnswer::default()));
            }
            let body = Prefixed::read(body, TOKEN_BODY_LIMIT)
                .await
                .map_err(Fault::Body)?;
            let answer = if body.is_complete() {
                TokenAnswer::parse(body.prefix())
            } else {
                TokenAnswer::default()
            };
            let resp = Response::from_parts(parts, ResponseBody::Prefixed { body });
            Ok((resp, answer))
        };
        match tokio::time::timeout(self.request_timeout, exchange).await {
            Err(_elapsed) => Err(LocalError::Timeout),
            Ok(Ok(pair)) => Ok(pair),
            Ok(Err(Fault::Client(err))) => {
                if is_body_limit(&err) {
                    return Err(LocalError::BodyTooLarge);
                }
                let kind = upstream::error_kind(&err);
                tracing::debug!(
                    connection = %self.connection,
                    role = %self.role,
                    kind = kind.as_str(),
                    error = %err,
                    "upstream exchange failed"
                );
                Err(match kind {
                    ErrorKind::Timeout => LocalError::Timeout,
                    kind => LocalError::Unreachable(kind),
                })
            }
            Ok(Err(Fault::Body(err))) => {
                tracing::debug!(
                    connection = %self.connection,
                    role = %self.role,
                    error = %err,
                    "upstream token response body failed"
                );
                Err(LocalError::Unreachable(ErrorKind::Reset))
            }
        }
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
    fn jsonrpc_watch(&self, headers: &HeaderMap) -> Option<JsonRpcWatch> {
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
    fn on_jsonrpc_error(
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
        let watched = WatchedHeaders(info.watched.0.clone());
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

/// How an upstream exchange failed below HTTP.
enum Fault {
    Client(hyper_util::client::legacy::Error),
    Body(hyper::Error),
}

impl From<hyper_util::client::legacy::Error> for Fault {
    fn from(err: hyper_util::client::legacy::Error) -> Self {
        Fault::Client(err)
    }
}

fn limit(body: Incoming, max: u64) -> Limited<Incoming> {
    Limited::new(body, usize::try_from(max).unwrap_or(usize::MAX))
}

/// Reads a token request's form body ahead (bounded) for its `grant_type`; the body goes
/// upstream unchanged.
async fn read_token_request(
    req: Request<Incoming>,
    max: u64,
) -> Result<(Request<RequestBody>, Option<String>), LocalError> {
    let (parts, body) = req.into_parts();
    let body = Prefixed::read(limit(body, max), TOKEN_BODY_LIMIT)
        .await
        .map_err(|err| {
            if err.is::<LengthLimitError>() {
                LocalError::BodyTooLarge
            } else {
                LocalError::ClientBody
            }
        })?;
    let grant_type = exchange::grant_type(body.prefix());
    Ok((
        Request::from_parts(parts, RequestBody::client(body)),
        grant_type,
    ))
}

fn is_body_limit(err: &hyper_util::client::legacy::Error) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cur {
        if e.is::<LengthLimitError>() {
            return true;
        }
        cur = e.source();
    }
    false
}

/// The hyper service of one accepted client connection.
#[derive(Clone)]
pub struct RouteService {
    ctx: Arc<RouteCtx>,
    /// The peer's IP, formatted once per connection for `x-forwarded-for`.
    client_addr: HeaderValue,
}

impl RouteService {
    pub fn new(ctx: Arc<RouteCtx>, peer: SocketAddr) -> Self {
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
        let this = self.clone();
        Box::pin(async move { Ok(this.ctx.handle(req, &this.client_addr).await) })
    }
}

/// What classification needs to know about a request after it has gone upstream.
struct RequestInfo {
    method: Method,
    path: PathAndQuery,
    watched: WatchedHeaders,
}

/// The request headers the classifier may consult, kept past forwarding. Usually one or
/// none, so a linear scan beats any map.
struct WatchedHeaders(Vec<(HeaderName, HeaderValue)>);

impl WatchedHeaders {
    fn capture(names: &[HeaderName], headers: &HeaderMap) -> Self {
        WatchedHeaders(
            names
                .iter()
                .filter_map(|n| headers.get(n).map(|v| (n.clone(), v.clone())))
                .collect(),
        )
    }
}

impl HeaderLookup for WatchedHeaders {
    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n.as_str().eq_ignore_ascii_case(name))
            .and_then(|(_, v)| v.to_str().ok())
    }
}

/// The upstream's response headers, when there was a response.
struct ResponseHeaders<'a>(Option<&'a HeaderMap>);

impl HeaderLookup for ResponseHeaders<'_> {
    fn get(&self, name: &str) -> Option<&str> {
        self.0?.get(name)?.to_str().ok()
    }
}

/// `short_circuit` is only called for a refusing gate; answering 503 keeps the request
/// from the upstream should that ever change.
fn unreachable_forward(connection: &str, role: Role) -> Response<ResponseBody> {
    short_circuit::circuit_open(connection, role, std::time::Duration::from_secs(1))
}
