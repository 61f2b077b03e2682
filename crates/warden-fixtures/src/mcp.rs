//! MCP servers over Streamable HTTP: answers as JSON or as one SSE event, and an event
//! stream written in lockstep with its reader.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http::Response;
use http_body_util::{BodyExt as _, StreamBody};
use hyper::body::Frame;
use tokio::sync::{Semaphore, mpsc};

use crate::upstream::{RxStream, Upstream, full};

/// An MCP server that answers every request with `body` as `content_type`
/// (`application/json`, or `text/event-stream` for an SSE answer).
pub async fn answering(content_type: &'static str, body: &'static str) -> Upstream {
    Upstream::start(move |_req| async move {
        Response::builder()
            .header("content-type", content_type)
            .body(full(body))
            .expect("a valid response")
    })
    .await
}

/// An SSE stream of `events` JSON-RPC messages (`id: i`, `data: {"n":i}`) that writes
/// event `i + 1` only after a permit is added to `read`: a test adds one each time it has
/// read an event, so anything that held back part of the stream would stall it.
pub async fn sse_lockstep(events: usize, read: Arc<Semaphore>) -> Upstream {
    Upstream::start(move |_req| {
        let gate = Arc::clone(&read);
        async move {
            let (tx, rx) = mpsc::channel::<Result<Frame<Bytes>, Infallible>>(1);
            tokio::spawn(async move {
                for i in 0..events {
                    if i > 0 {
                        match gate.acquire().await {
                            Ok(permit) => permit.forget(),
                            Err(_) => return,
                        }
                    }
                    let event = format!("id: {i}\nevent: message\ndata: {{\"n\":{i}}}\n\n");
                    if tx.send(Ok(Frame::data(Bytes::from(event)))).await.is_err() {
                        return;
                    }
                }
            });
            Response::builder()
                .header("content-type", "text/event-stream")
                .header("cache-control", "no-cache")
                .body(StreamBody::new(RxStream(rx)).boxed())
                .expect("a valid response")
        }
    })
    .await
}
