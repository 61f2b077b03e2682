//! One attempt on the wire: the request out, the response head back (a token answer's
//! body read ahead and looked at), all before the request's deadline; and how it failed
//! when it did.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response, Version};
use http_body_util::LengthLimitError;
use tokio::time::Instant;
use warden_config::{ErrorKind, TlsDetail};

use super::pool::{SendError, Upstream};
use super::{causes, fault};
use crate::body::{Prefixed, RequestBody, ResponseBody};
use crate::exchange::{TOKEN_BODY_LIMIT, TokenAnswer};
use crate::headers;
use crate::local::LocalError;

/// How an attempt failed below HTTP.
#[derive(Debug)]
pub(crate) enum Failure {
    Upstream {
        kind: ErrorKind,
        /// The request never left warden: safe to send again.
        nothing_sent: bool,
        /// Why the TLS handshake failed, when it did.
        tls: Option<TlsDetail>,
    },
    /// The client's body passed `limits.max_request_body_bytes` while it streamed.
    BodyTooLarge,
    /// Every connection the route may open stayed busy for `timeouts.connect`, or until the
    /// request's deadline.
    Busy,
}

impl Failure {
    /// The answer warden gives the client for this failure.
    pub(crate) fn into_local(self) -> LocalError {
        match self {
            Failure::BodyTooLarge => LocalError::BodyTooLarge,
            Failure::Busy => LocalError::UpstreamBusy,
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

impl From<SendError> for Failure {
    fn from(err: SendError) -> Self {
        if is_body_limit(&err) {
            return Failure::BodyTooLarge;
        }
        // warden's own limit: nothing the upstream did, so nothing health should hear of.
        if matches!(err, SendError::Busy) {
            return Failure::Busy;
        }
        let (kind, tls) = fault(&err);
        tracing::debug!(
            kind = kind.as_str(),
            tls_detail = tls.map(TlsDetail::as_str),
            error = %causes(&err),
            "upstream exchange failed"
        );
        Failure::Upstream {
            kind,
            tls,
            // A failure before the exchange means the request never left.
            nothing_sent: err.nothing_sent(),
        }
    }
}

fn is_body_limit(err: &SendError) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cur {
        if e.is::<LengthLimitError>() {
            return true;
        }
        cur = e.source();
    }
    false
}

impl Upstream {
    /// Sends `request` and returns the response head, hop-by-hop headers gone; with
    /// `token_answer`, the body is read ahead (bounded) and its `error`/`access_token`
    /// looked at. All before `deadline`.
    pub(crate) fn send(
        self: &Arc<Self>,
        request: Request<RequestBody>,
        token_answer: bool,
        deadline: Instant,
    ) -> Bounded<impl Future<Output = Exchanged> + '_> {
        Bounded {
            exchange: tokio::time::timeout_at(
                deadline,
                self.exchange(request, token_answer, deadline),
            ),
        }
    }

    /// [`Upstream::send`] inside its deadline, which a wait at the connection limit needs to
    /// know of (see `wait_for_connection`).
    async fn exchange(
        self: &Arc<Self>,
        request: Request<RequestBody>,
        token_answer: bool,
        deadline: Instant,
    ) -> Exchanged {
        let (resp, lease) = self
            .round_trip(request, deadline)
            .await
            .map_err(Failure::from)?;
        let (mut parts, body) = resp.into_parts();
        headers::strip_hop_by_hop(&mut parts.headers);
        // The client keeps its own protocol and keep-alive whatever the upstream
        // speaks: an HTTP/1.0 upstream must not turn the client's connection into
        // one-request-per-connection. (HTTP/2 clients ignore the field.)
        parts.version = Version::HTTP_11;
        if !token_answer {
            return Ok((
                Response::from_parts(parts, ResponseBody::upstream(body, lease)),
                TokenAnswer::default(),
            ));
        }
        let body = Prefixed::read(body, TOKEN_BODY_LIMIT).await;
        // Read to its end (nearly always: token answers are small), the connection is
        // idle again; if not, the pool skips it until it is.
        drop(lease);
        let body = body.map_err(|err| {
            tracing::debug!(
                upstream = %self.authority(),
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
    }
}

/// What one attempt's exchange ends in.
type Exchanged = Result<(Response<ResponseBody>, TokenAnswer), Failure>;

pin_project_lite::pin_project! {
    /// An exchange bounded by the request's deadline, past which it fails as a timeout. A
    /// struct rather than an `async` block around the timeout: the block would keep the
    /// exchange it captured beside the one it awaits, and every attempt's future would
    /// carry the request once more (264 bytes, enough to take it up a size class).
    pub(crate) struct Bounded<F> {
        #[pin]
        exchange: tokio::time::Timeout<F>,
    }
}

impl<F: Future<Output = Exchanged>> Future for Bounded<F> {
    type Output = Exchanged;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Exchanged> {
        Poll::Ready(match std::task::ready!(self.project().exchange.poll(cx)) {
            Ok(result) => result,
            Err(_elapsed) => Err(Failure::Upstream {
                kind: ErrorKind::Timeout,
                nothing_sent: false,
                tls: None,
            }),
        })
    }
}
