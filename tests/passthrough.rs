//! Bodies, headers and targets pass through warden unchanged, except for what a proxy must
//! change (hop-by-hop headers, Host, x-forwarded-*).

mod support;

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::Response;
use http_body_util::Full;
use support::upstream::{Upstream, full, record};
use support::{Warden, h2_client, http_client, one_route, send};

/// 1 MiB that is not a repeating pattern, so a dropped or reordered chunk cannot go unseen.
fn mebibyte() -> Bytes {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..1 << 20)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect::<Vec<u8>>()
        .into()
}

/// An upstream that echoes the request body with status 201 and a few headers, some of them
/// hop-by-hop.
async fn echo_upstream() -> Upstream {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    let mut up = Upstream::start(move |req| {
        let log = Arc::clone(&log);
        async move {
            let seen = record(&log, req).await;
            Response::builder()
                .status(201)
                .header("x-custom", "abc")
                .header("connection", "x-up-hop")
                .header("x-up-hop", "1")
                .header("keep-alive", "timeout=5")
                .body(full(seen.body))
                .expect("response")
        }
    })
    .await;
    up.seen = seen;
    up
}

#[tokio::test]
async fn post_of_one_mebibyte_passes_byte_exact_with_headers_rewritten() {
    let up = echo_upstream().await;
    let warden = Warden::start(&one_route("mcp", &up.url(), ""));
    let addr = warden.route("t", "mcp");
    let body = mebibyte();

    let req = http::Request::post(format!("http://{addr}/echo/p%20a;b?x=1&y=%2F&z=%zz"))
        .header("x-client", "1")
        .header("connection", "x-client-hop")
        .header("x-client-hop", "must-not-pass")
        .header("keep-alive", "timeout=1")
        .header("x-forwarded-for", "10.1.2.3")
        .body(Full::new(body.clone()))
        .expect("request");
    let answer = send(&http_client(), req).await;

    assert_eq!(answer.status, 201);
    assert_eq!(answer.body.len(), body.len());
    assert!(
        answer.body == body,
        "response body differs from what was sent"
    );
    assert_eq!(answer.headers["x-custom"], "abc");
    assert!(
        answer.headers.get("x-up-hop").is_none(),
        "Connection-named header leaked"
    );
    assert!(answer.headers.get("keep-alive").is_none());

    let seen = up.seen();
    assert_eq!(seen.len(), 1);
    let s = &seen[0];
    assert_eq!(s.method, http::Method::POST);
    assert_eq!(
        s.target, "/echo/p%20a;b?x=1&y=%2F&z=%zz",
        "target must pass byte for byte"
    );
    assert!(s.body == body, "upstream got a different body");
    assert_eq!(s.headers["x-client"], "1");
    assert!(
        s.headers.get("x-client-hop").is_none(),
        "Connection-named header leaked"
    );
    assert!(s.headers.get("keep-alive").is_none());
    assert_eq!(s.headers["host"], up.addr.to_string());
    assert_eq!(s.headers["x-forwarded-for"], "10.1.2.3, 127.0.0.1");
    assert_eq!(s.headers["x-forwarded-proto"], "http");
}

#[tokio::test]
async fn get_of_one_mebibyte_response_passes_byte_exact() {
    let payload = mebibyte();
    let served = payload.clone();
    let up = Upstream::start(move |_req| {
        let served = served.clone();
        async move {
            Response::builder()
                .status(200)
                .header("content-type", "application/octet-stream")
                .header("etag", "\"v1\"")
                .body(full(served))
                .expect("response")
        }
    })
    .await;
    let warden = Warden::start(&one_route("api", &up.url(), ""));
    let addr = warden.route("t", "api");

    let answer = support::get(&http_client(), &format!("http://{addr}/blob")).await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.headers["etag"], "\"v1\"");
    assert_eq!(answer.headers["content-length"], payload.len().to_string());
    assert!(answer.body == payload, "response body differs");
}

#[tokio::test]
async fn http2_client_reaches_http1_upstream() {
    let up = echo_upstream().await;
    let warden = Warden::start(&one_route("mcp", &up.url(), ""));
    let addr = warden.route("t", "mcp");

    let req = http::Request::post(format!("http://{addr}/rpc?id=7"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from_static(
            br#"{"jsonrpc":"2.0","id":7}"#,
        )))
        .expect("request");
    let answer = send(&h2_client(), req).await;
    assert_eq!(answer.status, 201);
    assert_eq!(answer.body, &br#"{"jsonrpc":"2.0","id":7}"#[..]);

    let seen = up.seen();
    assert_eq!(seen[0].version, http::Version::HTTP_11);
    assert_eq!(seen[0].target, "/rpc?id=7");
    assert_eq!(seen[0].headers["host"], up.addr.to_string());
}
