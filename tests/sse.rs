//! Server-sent events reach the client as the upstream writes them, not when it finishes.

mod support;

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use support::{DEADLINE, Warden, http_client, one_route};
use tokio::sync::Semaphore;

const EVENTS: usize = 5;

/// The upstream writes event `i + 1` only after the client has read event `i`. If warden
/// held back any part of the stream, the client would never see event `i` and the test
/// would hit its deadline: the order of arrival is the assertion, not a wall-clock bound.
#[tokio::test]
async fn sse_events_arrive_one_by_one_in_lockstep() {
    let read = Arc::new(Semaphore::new(0));
    let up = support::mcp::sse_lockstep(EVENTS, Arc::clone(&read)).await;
    let warden = Warden::start(&one_route("mcp", &up.url(), ""));
    let addr = warden.route("t", "mcp");

    let resp = tokio::time::timeout(
        DEADLINE,
        http_client().request(
            http::Request::get(format!("http://{addr}/sse"))
                .header("accept", "text/event-stream")
                .body(Full::new(Bytes::new()))
                .expect("request"),
        ),
    )
    .await
    .expect("response head in time")
    .expect("response");
    assert_eq!(resp.headers()["content-type"], "text/event-stream");

    let mut body = resp.into_body();
    let mut buf = String::new();
    let mut order = Vec::new();
    while order.len() < EVENTS {
        let frame = tokio::time::timeout(DEADLINE, body.frame())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "event {} never arrived: warden buffered the stream",
                    order.len()
                )
            })
            .expect("stream ended early")
            .expect("frame");
        let Ok(data) = frame.into_data() else {
            continue;
        };
        buf.push_str(std::str::from_utf8(&data).expect("utf-8"));
        while let Some(end) = buf.find("\n\n") {
            let event: String = buf.drain(..end + 2).collect();
            let id = event
                .lines()
                .find_map(|l| l.strip_prefix("id: "))
                .expect("id line")
                .parse::<usize>()
                .expect("numeric id");
            order.push(id);
            // Let the upstream write the next one.
            read.add_permits(1);
        }
    }
    assert_eq!(order, (0..EVENTS).collect::<Vec<_>>());
}
