//! Body types of the data plane: what goes upstream and what goes back to the client.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::client::conn::http1;
use warden_net::ClientBody;

use crate::record::{End, Finish};

pin_project_lite::pin_project! {
    /// A body whose first bytes warden has already read (to look at them) followed by the
    /// unread rest, emitted exactly as it arrived: the prefix as one frame, then the rest's
    /// frames, then any trailers that were read with the prefix.
    pub struct Prefixed<B> {
        prefix: Option<Bytes>,
        trailers: Option<HeaderMap>,
        #[pin]
        rest: Option<B>,
    }
}

impl<B> Prefixed<B> {
    /// `prefix`, already read from `rest`, then the rest.
    pub(crate) fn resume(prefix: Bytes, rest: B) -> Self {
        Prefixed {
            prefix: Some(prefix),
            trailers: None,
            rest: Some(rest),
        }
    }

    /// A body that is only its rest: nothing was read ahead.
    pub(crate) fn streaming(rest: B) -> Self {
        Prefixed {
            prefix: None,
            trailers: None,
            rest: Some(rest),
        }
    }

    pub(crate) fn prefix(&self) -> &[u8] {
        self.prefix.as_deref().unwrap_or_default()
    }

    /// Whether the whole body is in the prefix (and the trailers).
    pub(crate) fn is_complete(&self) -> bool {
        self.rest.is_none()
    }

    /// The whole body as bytes, when it was read completely and has no trailers: what can
    /// be replayed or shared.
    pub(crate) fn complete_bytes(&self) -> Option<Bytes> {
        (self.rest.is_none() && self.trailers.is_none())
            .then(|| self.prefix.clone().unwrap_or_default())
    }
}

impl<B> Prefixed<B>
where
    B: Body<Data = Bytes> + Unpin,
{
    /// Reads `body` until at least `limit` bytes or its end, whichever comes first.
    pub(crate) async fn read(mut body: B, limit: usize) -> Result<Self, B::Error> {
        if body.is_end_stream() {
            // No body at all (a GET): nothing to wait for.
            return Ok(Prefixed {
                prefix: None,
                trailers: None,
                rest: None,
            });
        }
        let mut buf = BytesMut::new();
        let mut trailers = None;
        let mut ended = false;
        while buf.len() < limit {
            match body.frame().await {
                None => {
                    ended = true;
                    break;
                }
                Some(frame) => match frame?.into_data() {
                    Ok(data) => buf.extend_from_slice(&data),
                    Err(frame) => {
                        // Trailers end a body.
                        trailers = frame.into_trailers().ok();
                        ended = true;
                        break;
                    }
                },
            }
        }
        // A body whose size hint says it is done needs no further poll.
        let ended = ended || body.is_end_stream();
        Ok(Prefixed {
            prefix: Some(buf.freeze()),
            trailers,
            rest: if ended { None } else { Some(body) },
        })
    }
}

impl<B> Body for Prefixed<B>
where
    B: Body<Data = Bytes>,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let mut this = self.project();
        if let Some(prefix) = this.prefix.take()
            && !prefix.is_empty()
        {
            return Poll::Ready(Some(Ok(Frame::data(prefix))));
        }
        if let Some(rest) = this.rest.as_mut().as_pin_mut() {
            match rest.poll_frame(cx) {
                Poll::Ready(None) => this.rest.set(None),
                other => return other,
            }
        }
        Poll::Ready(this.trailers.take().map(|t| Ok(Frame::trailers(t))))
    }

    fn is_end_stream(&self) -> bool {
        self.prefix.as_ref().is_none_or(Bytes::is_empty)
            && self.trailers.is_none()
            && self.rest.as_ref().is_none_or(Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        let ahead = self.prefix.as_ref().map_or(0, |p| p.len() as u64);
        match &self.rest {
            None => SizeHint::with_exact(ahead),
            Some(rest) => {
                let hint = rest.size_hint();
                let mut out = SizeHint::new();
                out.set_lower(hint.lower() + ahead);
                if let Some(upper) = hint.upper() {
                    out.set_upper(upper + ahead);
                }
                out
            }
        }
    }
}

pin_project_lite::pin_project! {
    /// A request body on its way upstream: the client's stream, capped at
    /// `limits.max_request_body_bytes` and possibly with a prefix warden read to look at, or
    /// bytes warden holds itself (a probe's empty body).
    #[project = RequestBodyProj]
    pub enum RequestBody {
        /// Boxed: a request is moved through the retry loop and the upstream connection's
        /// dispatch queue, whose first block holds 32 requests and is allocated per upstream
        /// connection. Inline, the client's stream (184 bytes) would make every request 408
        /// bytes instead of 264, for a body most requests (buffered ones) never have.
        Client { body: Pin<Box<Prefixed<Limited<ClientBody>>>> },
        Bytes { #[pin] body: Full<Bytes> },
    }
}

impl RequestBody {
    pub(crate) fn client(body: Prefixed<Limited<ClientBody>>) -> Self {
        RequestBody::Client {
            body: Box::pin(body),
        }
    }

    pub(crate) fn empty() -> Self {
        RequestBody::bytes(Bytes::new())
    }

    pub(crate) fn bytes(bytes: Bytes) -> Self {
        RequestBody::Bytes {
            body: Full::new(bytes),
        }
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl Body for RequestBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.project() {
            RequestBodyProj::Client { body } => body.as_mut().poll_frame(cx),
            RequestBodyProj::Bytes { body } => body.poll_frame(cx).map_err(|never| match never {}),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            RequestBody::Client { body } => body.is_end_stream(),
            RequestBody::Bytes { body } => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            RequestBody::Client { body } => body.size_hint(),
            RequestBody::Bytes { body } => body.size_hint(),
        }
    }
}

/// Takes back an HTTP/1.1 upstream connection whose answer is done with: the route's
/// upstream pool. A trait so that the body, which only carries the connection, does not
/// depend on the pool.
pub(crate) trait GiveBack: Send + Sync {
    fn give_back(&self, sender: http1::SendRequest<RequestBody>);
}

/// An HTTP/1.1 upstream connection lent to one exchange, given back when the answer's body is
/// done with (read to its end, or dropped) rather than when its head arrives. The pool then
/// holds connections that are idle or about to be, and its cap counts idle ones, as it says.
/// Given back at the head, a busy route's pool filled up with connections still streaming
/// their answers, and requests past the cap opened connections of their own.
pub(crate) struct Lease {
    pool: Arc<dyn GiveBack>,
    /// `None` only once given back.
    sender: Option<http1::SendRequest<RequestBody>>,
}

impl Lease {
    pub(crate) fn new(pool: Arc<dyn GiveBack>, sender: http1::SendRequest<RequestBody>) -> Self {
        Lease {
            pool,
            sender: Some(sender),
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(sender) = self.sender.take() {
            self.pool.give_back(sender);
        }
    }
}

pin_project_lite::pin_project! {
    /// Where a response body's bytes come from: the upstream's stream, passed frame by
    /// frame as it arrives (possibly after a prefix warden read to look at), or a small
    /// answer warden wrote itself.
    #[project = InnerProj]
    pub enum Inner {
        /// The lease is dropped after the body: the connection goes back to the pool once
        /// its answer is done with.
        Upstream { #[pin] body: Incoming, lease: Option<Lease> },
        /// Boxed, as is `Resumed`: only token answers are read into, and inline either would
        /// more than double every response that is moved from the upstream to the client.
        Prefixed { body: Pin<Box<Prefixed<Incoming>>> },
        /// An answer warden read further into (a coalesced token answer too large to
        /// share), resumed where the reading stopped.
        Resumed { body: Pin<Box<Prefixed<Inner>>> },
        Local { #[pin] body: Full<Bytes> },
    }
}

impl Body for Inner {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.project() {
            InnerProj::Upstream { body, .. } => body.poll_frame(cx),
            InnerProj::Prefixed { body } => body.as_mut().poll_frame(cx),
            InnerProj::Resumed { body } => body.as_mut().poll_frame(cx),
            InnerProj::Local { body } => body.poll_frame(cx).map_err(|never| match never {}),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Inner::Upstream { body, .. } => body.is_end_stream(),
            Inner::Prefixed { body } => body.is_end_stream(),
            Inner::Resumed { body } => body.is_end_stream(),
            Inner::Local { body } => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Inner::Upstream { body, .. } => body.size_hint(),
            Inner::Prefixed { body } => body.size_hint(),
            Inner::Resumed { body } => body.size_hint(),
            Inner::Local { body } => body.size_hint(),
        }
    }
}

pin_project_lite::pin_project! {
    /// A response body for the client, with what is recorded when it ends: the request is
    /// counted once, at the end of its answer, with its final verdict (see
    /// [`crate::record`]). A body dropped early (the client went away) records then.
    pub struct ResponseBody {
        #[pin]
        inner: Inner,
        finish: Option<Box<Finish>>,
    }

    impl PinnedDrop for ResponseBody {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if let Some(finish) = this.finish.take() {
                // An empty body (a 204, a HEAD answer) is never polled: it ended, nobody left.
                let end = if this.inner.is_end_stream() { End::Complete } else { End::Dropped };
                finish.end(end);
            }
        }
    }
}

impl ResponseBody {
    fn new(inner: Inner) -> Self {
        ResponseBody {
            inner,
            finish: None,
        }
    }

    pub(crate) fn local(bytes: impl Into<Bytes>) -> Self {
        ResponseBody::new(Inner::Local {
            body: Full::new(bytes.into()),
        })
    }

    pub(crate) fn upstream(body: Incoming, lease: Option<Lease>) -> Self {
        ResponseBody::new(Inner::Upstream { body, lease })
    }

    pub(crate) fn prefixed(body: Prefixed<Incoming>) -> Self {
        ResponseBody::new(Inner::Prefixed {
            body: Box::pin(body),
        })
    }

    /// `prefix` (already read from `rest`), then the rest of `rest`.
    pub(crate) fn resumed(prefix: Bytes, rest: ResponseBody) -> Self {
        let inner = rest.into_inner();
        ResponseBody::new(Inner::Resumed {
            body: Box::pin(Prefixed::resume(prefix, inner)),
        })
    }

    /// Records `finish` when this body ends.
    pub(crate) fn finish_with(mut self, finish: Finish) -> Self {
        self.finish = Some(Box::new(finish));
        self
    }

    /// The whole body, when warden has already read all of it (a token answer).
    pub(crate) fn complete_bytes(&self) -> Option<Bytes> {
        match &self.inner {
            Inner::Prefixed { body } => body.complete_bytes(),
            Inner::Local { body } if body.is_end_stream() => Some(Bytes::new()),
            _ => None,
        }
    }

    /// The bytes without the record (which is then not made: the caller records).
    fn into_inner(mut self) -> Inner {
        self.finish = None;
        // A placeholder takes the inner body's place for the drop that follows.
        std::mem::replace(
            &mut self.inner,
            Inner::Local {
                body: Full::new(Bytes::new()),
            },
        )
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let mut this = self.project();
        let polled = this.inner.as_mut().poll_frame(cx);
        let end = match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let (Some(data), Some(finish)) = (frame.data_ref(), this.finish.as_mut()) {
                    finish.feed(data);
                }
                // A body of known length is done with its last byte; the server may not
                // poll again to learn that.
                this.inner.is_end_stream().then_some(End::Complete)
            }
            Poll::Ready(Some(Err(_))) => Some(End::BrokeOff),
            Poll::Ready(None) => Some(End::Complete),
            Poll::Pending => None,
        };
        if let Some(end) = end
            && let Some(finish) = this.finish.take()
        {
            finish.end(end);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, StreamBody};

    fn chunks(
        parts: &[&'static str],
    ) -> impl Body<Data = Bytes, Error = std::convert::Infallible> + Unpin {
        let frames: Vec<Result<Frame<Bytes>, std::convert::Infallible>> = parts
            .iter()
            .map(|p| Ok(Frame::data(Bytes::from_static(p.as_bytes()))))
            .collect();
        StreamBody::new(futures_lite_iter(frames))
    }

    /// A stream over a vector without pulling in a stream crate.
    fn futures_lite_iter<T: Unpin>(items: Vec<T>) -> VecStream<T> {
        VecStream(items.into_iter())
    }

    struct VecStream<T>(std::vec::IntoIter<T>);

    impl<T: Unpin> futures_core::Stream for VecStream<T> {
        type Item = T;
        fn poll_next(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<T>> {
            Poll::Ready(self.0.next())
        }
    }

    #[tokio::test]
    async fn prefix_then_rest_reassemble_byte_exact() {
        let body = chunks(&["abc", "defg", "hij", "k"]);
        let read = Prefixed::read(body, 5).await.expect("read");
        assert_eq!(read.prefix(), b"abcdefg");
        assert!(!read.is_complete());
        let all = read.collect().await.expect("collect").to_bytes();
        assert_eq!(all, "abcdefghijk");
    }

    #[tokio::test]
    async fn small_body_is_read_completely() {
        let read = Prefixed::read(chunks(&["ab", "c"]), 1024)
            .await
            .expect("read");
        assert!(read.is_complete());
        assert_eq!(read.size_hint().exact(), Some(3));
        assert_eq!(read.collect().await.expect("collect").to_bytes(), "abc");
    }

    /// Each upstream connection's dispatch queue allocates room for 32 requests up front
    /// (hyper's tokio mpsc block), and every request and answer is moved several times on
    /// its way: neither may carry a rarely used body inline.
    #[test]
    fn a_request_and_a_response_are_small() {
        // 408 and 288 bytes with the client's stream and a read-into answer inline.
        let size = std::mem::size_of::<http::Request<RequestBody>>();
        assert!(size <= 272, "Request<RequestBody> is {size} bytes");
        // 160, and 200 since an upstream body carries its connection's lease (40 bytes).
        let size = std::mem::size_of::<http::Response<ResponseBody>>();
        assert!(size <= 200, "Response<ResponseBody> is {size} bytes");
    }
}
