//! Body types of the data plane: what goes upstream and what goes back to the client.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;

use crate::observe::jsonrpc::{self, JsonRpcSseWatcher};

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
    /// A body that is only its rest: nothing was read ahead.
    pub fn streaming(rest: B) -> Self {
        Prefixed {
            prefix: None,
            trailers: None,
            rest: Some(rest),
        }
    }

    pub fn prefix(&self) -> &[u8] {
        self.prefix.as_deref().unwrap_or_default()
    }

    /// Whether the whole body is in the prefix (and the trailers).
    pub fn is_complete(&self) -> bool {
        self.rest.is_none()
    }

    /// The whole body as bytes, when it was read completely and has no trailers: what can
    /// be replayed or shared.
    pub fn complete_bytes(&self) -> Option<Bytes> {
        (self.rest.is_none() && self.trailers.is_none())
            .then(|| self.prefix.clone().unwrap_or_default())
    }
}

impl<B> Prefixed<B>
where
    B: Body<Data = Bytes> + Unpin,
{
    /// Reads `body` until at least `limit` bytes or its end, whichever comes first.
    pub async fn read(mut body: B, limit: usize) -> Result<Self, B::Error> {
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
        Client { #[pin] body: Prefixed<Limited<Incoming>> },
        Bytes { #[pin] body: Full<Bytes> },
    }
}

impl RequestBody {
    pub fn client(body: Prefixed<Limited<Incoming>>) -> Self {
        RequestBody::Client { body }
    }

    pub fn empty() -> Self {
        RequestBody::bytes(Bytes::new())
    }

    pub fn bytes(bytes: Bytes) -> Self {
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
            RequestBodyProj::Client { body } => body.poll_frame(cx),
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

pin_project_lite::pin_project! {
    /// A response body for the client: the upstream's stream, passed frame by frame as it
    /// arrives, or a small answer warden wrote itself.
    #[project = ResponseBodyProj]
    pub enum ResponseBody {
        Upstream { #[pin] body: Incoming },
        Prefixed { #[pin] body: Prefixed<Incoming> },
        Watched { #[pin] body: Watched },
        Local { #[pin] body: Full<Bytes> },
    }
}

impl ResponseBody {
    pub fn local(bytes: impl Into<Bytes>) -> Self {
        ResponseBody::Local {
            body: Full::new(bytes.into()),
        }
    }

    /// The whole body, when warden has already read all of it (a token answer).
    pub fn complete_bytes(&self) -> Option<Bytes> {
        match self {
            ResponseBody::Prefixed { body } => body.complete_bytes(),
            _ => None,
        }
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.project() {
            ResponseBodyProj::Upstream { body } => body.poll_frame(cx),
            ResponseBodyProj::Prefixed { body } => body.poll_frame(cx),
            ResponseBodyProj::Watched { body } => body.poll_frame(cx),
            ResponseBodyProj::Local { body } => body.poll_frame(cx).map_err(|never| match never {}),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ResponseBody::Upstream { body } => body.is_end_stream(),
            ResponseBody::Prefixed { body } => body.is_end_stream(),
            ResponseBody::Watched { body } => body.body.is_end_stream(),
            ResponseBody::Local { body } => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ResponseBody::Upstream { body } => body.size_hint(),
            ResponseBody::Prefixed { body } => body.size_hint(),
            ResponseBody::Watched { body } => body.body.size_hint(),
            ResponseBody::Local { body } => body.size_hint(),
        }
    }
}

/// How much of one MCP JSON body or one SSE event is kept to look for JSON-RPC errors;
/// larger ones pass uncounted, so a hostile upstream cannot make warden hold its stream.
pub const WATCH_LIMIT: usize = 64 * 1024;

/// What a watched MCP body is being looked at for.
pub enum JsonRpcWatch {
    /// An event stream: each event's data is one JSON-RPC message (or batch).
    Sse(JsonRpcSseWatcher),
    /// One JSON document, looked at once it is complete; `None` once it outgrew
    /// [`WATCH_LIMIT`] or was looked at.
    Json(Option<Vec<u8>>),
}

impl JsonRpcWatch {
    pub fn json() -> Self {
        JsonRpcWatch::Json(Some(Vec::new()))
    }

    pub fn sse() -> Self {
        JsonRpcWatch::Sse(JsonRpcSseWatcher::new(WATCH_LIMIT))
    }
}

/// What to do with each JSON-RPC error code seen in a watched body.
pub type OnJsonRpcError = Box<dyn FnMut(i64) + Send + Sync>;

pin_project_lite::pin_project! {
    /// An MCP response body passed through frame by frame, unchanged and undelayed, while
    /// the JSON-RPC error objects in it are reported.
    pub struct Watched {
        #[pin]
        body: Incoming,
        watch: JsonRpcWatch,
        on_error: OnJsonRpcError,
    }
}

impl Watched {
    pub fn new(body: Incoming, watch: JsonRpcWatch, on_error: OnJsonRpcError) -> Self {
        Watched {
            body,
            watch,
            on_error,
        }
    }
}

impl Body for Watched {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let mut this = self.project();
        let polled = this.body.as_mut().poll_frame(cx);
        let mut count = |code: i64| (this.on_error)(code);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    match this.watch {
                        JsonRpcWatch::Sse(watcher) => watcher.feed(data, &mut count),
                        JsonRpcWatch::Json(buf) => {
                            if let Some(b) = buf {
                                if b.len() + data.len() > WATCH_LIMIT {
                                    *buf = None;
                                } else {
                                    b.extend_from_slice(data);
                                }
                            }
                        }
                    }
                }
                // A body of known length is done with its last byte; the server may not
                // poll again to learn that.
                if this.body.is_end_stream() {
                    finish(this.watch, &mut count);
                }
            }
            Poll::Ready(None) => finish(this.watch, &mut count),
            _ => {}
        }
        polled
    }
}

fn finish(watch: &mut JsonRpcWatch, count: &mut impl FnMut(i64)) {
    match watch {
        JsonRpcWatch::Sse(watcher) => {
            watcher.finish();
        }
        JsonRpcWatch::Json(buf) => {
            if let Some(b) = buf.take() {
                jsonrpc::error_codes(&b, count);
            }
        }
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
}
