//! The per-route request path: check, rewrite, forward, account.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use http::header::{self, HeaderValue};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Method, Request, Response, Uri, Version};
use http_body_util::{LengthLimitError, Limited};
use hyper::body::Incoming;
use tokio::time::Instant;
use warden_config::{Connection, Role, Route, Verdict};

use crate::body::{RequestBody, ResponseBody};
use crate::headers::{self, X_FORWARDED_PROTO};
use crate::local::LocalError;
use crate::metrics::{Outcome, RouteMetrics};
use crate::upstream::{self, UpstreamClient};

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
    metrics: RouteMetrics,
}

impl RouteCtx {
    pub fn new(
        connection: &Connection,
        route: &Route,
        client: UpstreamClient,
        limits: &warden_config::Limits,
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
            metrics: RouteMetrics::new(&connection.name, route.role),
        }
    }

    async fn handle(
        &self,
        req: Request<Incoming>,
        client_addr: &HeaderValue,
    ) -> Response<ResponseBody> {
        let start = Instant::now();
        let (resp, outcome) = match self.forward(req, client_addr).await {
            Ok(resp) => {
                let verdict = provisional_verdict(resp.status().as_u16());
                (resp, Outcome::Verdict(verdict))
            }
            Err(local) => {
                let verdict = if local.error_kind().is_some() {
                    Verdict::Transient
                } else {
                    Verdict::ClientError
                };
                (
                    local.response(&self.connection, self.role),
                    Outcome::Verdict(verdict),
                )
            }
        };
        self.metrics.record(outcome, start.elapsed().as_secs_f64());
        resp
    }

    async fn forward(
        &self,
        req: Request<Incoming>,
        client_addr: &HeaderValue,
    ) -> Result<Response<ResponseBody>, LocalError> {
        self.admit(&req)?;
        let (mut parts, body) = req.into_parts();

        let path = parts
            .uri
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/"));
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

        let limit = usize::try_from(self.max_body_bytes).unwrap_or(usize::MAX);
        let body = RequestBody::Stream {
            body: Limited::new(body, limit),
        };
        let upstream_req = Request::from_parts(parts, body);

        let resp =
            match tokio::time::timeout(self.request_timeout, self.client.request(upstream_req))
                .await
            {
                Err(_elapsed) => return Err(LocalError::Timeout),
                Ok(Err(err)) => {
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
                    return Err(LocalError::Unreachable(kind));
                }
                Ok(Ok(resp)) => resp,
            };
        let (mut parts, body) = resp.into_parts();
        headers::strip_hop_by_hop(&mut parts.headers);
        Ok(Response::from_parts(parts, ResponseBody::Upstream { body }))
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

/// The verdict by status alone, until the policy engine classifies responses.
fn provisional_verdict(status: u16) -> Verdict {
    match status {
        408 | 429 | 500..=511 => Verdict::Transient,
        _ => Verdict::Ok,
    }
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
