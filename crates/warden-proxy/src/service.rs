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
use tokio_util::task::TaskTracker;
use tower::ServiceExt as _;
use warden_config::{Connection, ErrorKind, Role, Route, Verdict};
use warden_health::{Gate, GateRequest};
use warden_policy::Policy;

use crate::access;
use crate::attempt::{AttemptResult, AttemptService, Attempter};
use crate::body::{Prefixed, RequestBody, ResponseBody};
use crate::coalesce::{self, Coalescer, Joined, LeaderAnswer, Shared};
use crate::exchange::{self, TOKEN_BODY_LIMIT};
use crate::headers::{self, X_FORWARDED_PROTO};
use crate::health::ConnHealth;
use crate::local::LocalError;
use crate::metrics::{Outcome, RouteMetrics};
use crate::record::{Finish, Recorder, ToolCalls, Watch};
use crate::request::{RequestInfo, WatchedHeaders};
use crate::retry::{Attempt, AttemptBody, RetryOutcome, RetryPolicy, RetrySlots, RouteRetry};
use crate::short_circuit;
use crate::upstream::UpstreamClient;

/// The compiled policy and what the data plane derives from it, shared by every route.
pub struct Classifier {
    pub policy: Arc<Policy>,
    /// Request headers the classifier may look at after forwarding.
    pub watched_request_headers: Arc<[HeaderName]>,
    /// Whether any rule looks into answer bodies (`jsonrpc_error`, `mcp_tool_error`).
    pub body_rules: bool,
}

/// What every route shares with the whole proxy, across reloads.
pub(crate) struct ProxyWide {
    /// `limits.max_concurrent_retries`.
    pub(crate) retry_slots: Arc<RetrySlots>,
    /// Where work that outlives its request runs (a coalesced token exchange), so that a
    /// drain waits for it.
    pub(crate) tasks: TaskTracker,
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
    /// Whether any rule looks into answer bodies, so JSON-RPC errors and tool results
    /// must be classified and not only counted.
    body_rules: bool,
    /// Request headers the classifier may look at (`mcp-session-id` and those named by
    /// `request_header` rules); only these are kept past forwarding.
    watched_request_headers: Arc<[HeaderName]>,
    pub(crate) metrics: Arc<RouteMetrics>,
    pub(crate) health: Arc<ConnHealth>,
    retry: Arc<RouteRetry>,
    coalescer: Arc<Coalescer>,
    /// The proxy's drain tracker: coalesced exchanges run as its tasks.
    tasks: TaskTracker,
    /// `log.access`: one line per request.
    pub(crate) access_log: bool,
    /// The record stage's view of this route.
    recorder: Arc<Recorder>,
    /// The attempt stage's view of this route.
    attempter: Arc<Attempter>,
    /// What the upstream client was built from: a reload that keeps these keeps the
    /// client and its pooled connections.
    upstream_settings: (warden_config::Upstream, warden_config::Tls, Duration),
}

impl RouteCtx {
    pub fn new(
        connection: &Connection,
        route: &Route,
        client: UpstreamClient,
        config: &warden_config::Config,
        classifier: &Classifier,
        health: Arc<ConnHealth>,
        proxywide: &ProxyWide,
    ) -> Self {
        let limits = &config.limits;
        let scheme = match route.upstream.scheme {
            warden_config::Scheme::Http => Scheme::HTTP,
            warden_config::Scheme::Https => Scheme::HTTPS,
        };
        // Off in the config, or filtered out of the log (`RUST_LOG=warn`): then no request
        // id is made either, and the access path costs nothing.
        let access_log =
            config.log.access && tracing::enabled!(target: "warden::access", tracing::Level::INFO);
        let metrics = Arc::new(RouteMetrics::new(&connection.name, route.role));
        RouteCtx {
            attempter: Arc::new(Attempter {
                connection: connection.name.clone(),
                role: route.role,
                client: Arc::clone(&client),
                policy: Arc::clone(&classifier.policy),
                metrics: Arc::clone(&metrics),
                health: Arc::clone(&health),
            }),
            recorder: Arc::new(Recorder {
                connection: connection.name.clone(),
                role: route.role,
                metrics: Arc::clone(&metrics),
                policy: Arc::clone(&classifier.policy),
                body_rules: classifier.body_rules,
                access_log,
            }),
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
            body_rules: classifier.body_rules,
            watched_request_headers: Arc::clone(&classifier.watched_request_headers),
            metrics,
            health,
            retry: Arc::new(RouteRetry::new(
                &connection.name,
                route.role,
                route.retry,
                Arc::clone(&proxywide.retry_slots),
            )),
            coalescer: Arc::default(),
            tasks: proxywide.tasks.clone(),
            access_log,
            upstream_settings: upstream_settings(route),
        }
    }

    /// After a reload, keeps what must outlive one version of the settings: the
    /// coalescer (a refresh burst that spans the reload must still reach the IdP once),
    /// the metric handles and the retry budget.
    pub(crate) fn inherit(mut self, previous: &RouteCtx) -> Self {
        self.coalescer = Arc::clone(&previous.coalescer);
        self.metrics = Arc::clone(&previous.metrics);
        self.attempter = Arc::new(Attempter {
            connection: self.connection.clone(),
            role: self.role,
            client: Arc::clone(&self.client),
            policy: Arc::clone(&self.policy),
            metrics: Arc::clone(&self.metrics),
            health: Arc::clone(&self.health),
        });
        self.recorder = Arc::new(Recorder {
            connection: self.connection.clone(),
            role: self.role,
            metrics: Arc::clone(&self.metrics),
            policy: Arc::clone(&self.policy),
            body_rules: self.body_rules,
            access_log: self.access_log,
        });
        let retry = Arc::try_unwrap(self.retry);
        self.retry = match retry {
            Ok(retry) => Arc::new(retry.inherit(&previous.retry)),
            Err(shared) => shared,
        };
        self
    }

    /// The upstream client, when `route` would build the same one: same origin, same TLS
    /// settings naming no files (a reload re-reads certificate files, which may have
    /// been rotated), same connect timeout and pool cap.
    pub(crate) fn reusable_client(&self, route: &Route, max_idle: usize) -> Option<UpstreamClient> {
        let tls = &route.tls;
        let files = tls.ca_file.is_some() || tls.client_cert.is_some() || tls.client_key.is_some();
        (!files
            && self.upstream_settings == upstream_settings(route)
            && self.client.max_idle() == max_idle)
            .then(|| Arc::clone(&self.client))
    }

    pub(crate) async fn handle(
        self: Arc<Self>,
        req: Request<Incoming>,
        client_addr: &HeaderValue,
    ) -> Response<ResponseBody> {
        let start = Instant::now();
        if let Err(local) = self.admit(&req) {
            let resp = self.answer_locally(local, start);
            self.access_local(req.method(), req.uri().path(), req.headers(), &resp, start);
            return resp;
        }
        let (mut parts, body) = req.into_parts();
        let (request_id, trace_id) = if self.access_log {
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
        let token_request = self.token_path.as_deref() == Some(path.path());
        let watched = WatchedHeaders::capture(&self.watched_request_headers, &parts.headers);
        let body = match self.read_ahead(&parts.headers, body, token_request).await {
            Ok(body) => body,
            Err(local) => {
                let resp = self.answer_locally(local, start);
                self.access_local(&parts.method, path.path(), &parts.headers, &resp, start);
                return resp;
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
        match self.health.gate(self.role, gate_request) {
            Gate::Forward => {}
            refused => {
                let resp = self.short_circuit(refused, gate_request, start);
                self.access_local(&parts.method, path.path(), &parts.headers, &resp, start);
                return resp;
            }
        }
        let refresh_grant = gate_request == GateRequest::RefreshGrant;
        let refresh_key = refresh_grant
            .then(|| exchange::form_field(body.prefix(), b"refresh_token"))
            .flatten()
            .map(|token| self.coalescer.key(&token));
        let tools = if self.role == Role::Mcp {
            ToolCalls::of_request(body.complete_bytes().as_deref())
        } else {
            ToolCalls::None
        };

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
            refresh_grant,
            request_id,
            trace_id,
        });
        let deadline = start + self.request_timeout;

        let answer = match refresh_key {
            Some(key) => {
                self.coalesced(key, attempt, Arc::clone(&info), gate_request, deadline)
                    .await
            }
            None => {
                let mut result = self
                    .exchange(attempt, Arc::clone(&info), gate_request, deadline)
                    .await;
                let verdict = result.verdict();
                let pending = result.pending.take();
                let exchange = Some(result.exchanged());
                let response = match result.outcome {
                    Ok((resp, _)) => resp,
                    Err(local) => local.response(&self.connection, self.role),
                };
                LeaderAnswer {
                    response,
                    pending,
                    verdict,
                    exchange,
                }
            }
        };
        let from_upstream = answer.pending.is_some();
        let (parts, body) = answer.response.into_parts();
        let mut finish = Finish::new(
            Arc::clone(&self.recorder),
            info,
            start,
            parts.status.as_u16(),
            answer.verdict,
            answer.pending,
            answer.exchange,
        );
        if from_upstream && let Some(watch) = self.watch_for(&parts.headers) {
            finish = finish.watch(watch, &parts, tools);
        }
        Response::from_parts(parts, body.finish_with(finish))
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
        let mut ahead = 0;
        if token_request {
            ahead = TOKEN_BODY_LIMIT
                .max(usize::try_from(self.retry.settings.max_body_bytes).unwrap_or(0));
        }
        if replay && declared.is_none_or(|len| len <= self.retry.settings.max_body_bytes) {
            // One byte past the replay limit tells "fits" from "too large to replay".
            ahead = ahead.max(
                usize::try_from(self.retry.settings.max_body_bytes.saturating_add(1))
                    .unwrap_or(usize::MAX),
            );
        }
        if self.role == Role::Mcp {
            // Which messages are `tools/call`s decides which answers are tool results.
            ahead = ahead.max(TOKEN_BODY_LIMIT);
        }
        if ahead == 0 {
            return Ok(Prefixed::streaming(body));
        }
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
            ctx: Arc::clone(&self.attempter),
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
    /// cancel it for the others, and a drain waits for it even when every caller has gone.
    async fn coalesced(
        self: &Arc<Self>,
        key: u64,
        attempt: Attempt,
        info: Arc<RequestInfo>,
        gate_request: GateRequest,
        deadline: Instant,
    ) -> LeaderAnswer {
        let publisher = match self.coalescer.join(key) {
            Joined::Follow(slot) => {
                tracing::debug!(
                    connection = %self.connection,
                    "refresh grant joins the exchange in flight"
                );
                let shared = coalesce::wait(slot).await.unwrap_or_else(|| {
                    Arc::new(Shared {
                        answer: Err(LocalError::Unreachable(ErrorKind::Reset)),
                        verdict: Verdict::Transient,
                    })
                });
                return LeaderAnswer {
                    response: shared.response(&self.connection, self.role),
                    pending: None,
                    verdict: shared.verdict,
                    exchange: None,
                };
            }
            Joined::Lead(publisher) => publisher,
        };
        let (own_tx, own_rx) = tokio::sync::oneshot::channel::<LeaderAnswer>();
        let ctx = Arc::clone(self);
        self.tasks.spawn(async move {
            let result = ctx.exchange(attempt, info, gate_request, deadline).await;
            let (shared, own) = coalesce::share(result, deadline, &ctx.connection, ctx.role).await;
            publisher.publish(Arc::new(shared));
            if let Err(own) = own_tx.send(own)
                && let Some(pending) = own.pending
            {
                // The requester went away: nobody reads the rest, record it as it stands.
                pending.settle();
            }
        });
        own_rx.await.unwrap_or_else(|_| LeaderAnswer {
            response: LocalError::Unreachable(ErrorKind::Reset)
                .response(&self.connection, self.role),
            pending: None,
            verdict: Verdict::Transient,
            exchange: None,
        })
    }

    /// The access line of an answer warden wrote itself before any upstream work (a
    /// refusal or a short-circuit).
    fn access_local(
        &self,
        method: &Method,
        path: &str,
        headers: &HeaderMap,
        resp: &Response<ResponseBody>,
        start: Instant,
    ) {
        if !self.access_log {
            return;
        }
        let outcome = resp
            .headers()
            .get(&crate::short_circuit::X_WARDEN_SHORT_CIRCUIT)
            .map_or("client_error", |_| "short_circuit");
        tracing::info!(
            target: "warden::access",
            connection = %self.connection,
            role = %self.role,
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

    /// The route's upstream client, which the prober probes with.
    pub(crate) fn upstream(&self) -> UpstreamClient {
        Arc::clone(&self.client)
    }

    /// MCP answers carry JSON-RPC messages as one JSON body or as an event stream; both are
    /// watched for error objects and tool results as they pass.
    fn watch_for(&self, headers: &HeaderMap) -> Option<Watch> {
        if self.role != Role::Mcp {
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

fn upstream_settings(route: &Route) -> (warden_config::Upstream, warden_config::Tls, Duration) {
    (
        route.upstream.clone(),
        route.tls.clone(),
        route.timeouts.connect,
    )
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
