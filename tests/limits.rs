//! What warden refuses or answers itself: oversized heads and bodies, forward-proxy use,
//! unreachable upstreams, the client connection gauge. Timeouts are tested in-process on
//! paused time: crates/warden-proxy/tests/data_path.rs.

mod support;

use std::net::TcpListener;

use bytes::Bytes;
use http_body_util::Full;
use support::upstream::Upstream;
use support::{Warden, get, http_client, one_route, raw_exchange, send};

#[tokio::test]
async fn oversized_request_head_gets_431() {
    let up = Upstream::recording(200, "{}").await;
    let warden = Warden::start(&format!(
        "{}limits: {{ max_header_bytes: 2048 }}\n",
        one_route("mcp", &up.url(), "")
    ));
    let addr = warden.route("t", "mcp");

    let big = "v".repeat(3000);
    let req = http::Request::get(format!("http://{addr}/"))
        .header("x-big", big)
        .body(Full::new(Bytes::new()))
        .expect("request");
    let answer = send(&http_client(), req).await;
    assert_eq!(answer.status, 431);
    assert_eq!(answer.headers["x-warden-error"], "request_header_too_large");

    // Far past the read buffer, hyper answers 431 before warden sees the request.
    let huge = "v".repeat(100_000);
    let raw = format!("GET / HTTP/1.1\r\nhost: x\r\nx-huge: {huge}\r\n\r\n");
    let (status, _) = raw_exchange(addr, raw.as_bytes()).await;
    assert_eq!(status, 431);

    // Under the limit passes.
    let answer = get(&http_client(), &format!("http://{addr}/ok")).await;
    assert_eq!(answer.status, 200);
    assert_eq!(
        up.seen().len(),
        1,
        "refused requests must not reach the upstream"
    );
}

#[tokio::test]
async fn oversized_body_gets_413_declared_or_streamed() {
    let up = Upstream::recording(200, "{}").await;
    let warden = Warden::start(&format!(
        "{}limits: {{ max_request_body_bytes: 1024 }}\n",
        one_route("api", &up.url(), "")
    ));
    let addr = warden.route("t", "api");

    // Declared too large: refused before anything goes upstream.
    let req = http::Request::post(format!("http://{addr}/upload"))
        .body(Full::new(Bytes::from(vec![b'x'; 2048])))
        .expect("request");
    let answer = send(&http_client(), req).await;
    assert_eq!(answer.status, 413);
    assert_eq!(answer.headers["x-warden-error"], "request_body_too_large");
    assert_eq!(answer.json()["error"], "request_body_too_large");
    assert!(up.seen().is_empty());

    // Chunked, no length: cut off when the stream passes the limit.
    let chunk = "x".repeat(600);
    let raw = format!(
        "POST /upload HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n{len:x}\r\n{chunk}\r\n{len:x}\r\n{chunk}\r\n0\r\n\r\n",
        len = chunk.len()
    );
    let (status, text) = raw_exchange(addr, raw.as_bytes()).await;
    assert_eq!(status, 413, "{text}");

    // Exactly at the limit passes.
    let req = http::Request::post(format!("http://{addr}/upload"))
        .body(Full::new(Bytes::from(vec![b'y'; 1024])))
        .expect("request");
    assert_eq!(send(&http_client(), req).await.status, 200);
}

#[tokio::test]
async fn forward_proxy_use_is_refused() {
    let up = Upstream::recording(200, "{}").await;
    let warden = Warden::start(&one_route("mcp", &up.url(), ""));
    let addr = warden.route("t", "mcp");

    let (status, text) = raw_exchange(
        addr,
        b"GET http://example.com/secret HTTP/1.1\r\nhost: example.com\r\n\r\n",
    )
    .await;
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("forward_proxy_refused"), "{text}");

    let (status, text) = raw_exchange(
        addr,
        b"CONNECT example.com:443 HTTP/1.1\r\nhost: example.com:443\r\n\r\n",
    )
    .await;
    assert_eq!(status, 405, "{text}");
    assert!(text.contains("connect_refused"), "{text}");
    assert!(
        up.seen().is_empty(),
        "nothing refused may reach the upstream"
    );

    // Absolute-form naming the upstream itself is an ordinary request.
    let req = format!(
        "GET http://{}/fine HTTP/1.1\r\nhost: {}\r\n\r\n",
        up.addr, up.addr
    );
    let (status, _) = raw_exchange(addr, req.as_bytes()).await;
    assert_eq!(status, 200);
    assert_eq!(up.seen()[0].target, "/fine");
}

#[tokio::test]
async fn unreachable_upstream_gets_502_json() {
    // A port that was just free: nothing listens there.
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let warden = Warden::start(&one_route("oauth", &format!("http://127.0.0.1:{port}"), ""));
    let answer = get(
        &http_client(),
        &format!("http://{}/token", warden.route("t", "oauth")),
    )
    .await;
    assert_eq!(answer.status, 502);
    assert_eq!(answer.headers["x-warden-error"], "upstream_unreachable");
    assert_eq!(answer.headers["content-type"], "application/json");
    let json = answer.json();
    assert_eq!(json["error"], "upstream_unreachable");
    assert_eq!(json["connection"], "t");
    assert_eq!(json["role"], "oauth");
    assert_eq!(json["error_kind"], "connect");
}

#[tokio::test]
async fn client_connections_are_counted_in_a_gauge() {
    let up = Upstream::recording(200, "{}").await;
    let warden = Warden::start(&one_route("mcp", &up.url(), ""));
    let addr = warden.route("t", "mcp");
    let metrics = format!("http://{}/metrics", warden.admin);
    let gauge = |text: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix("warden_client_connections "))
            .map(|v| v.trim().parse::<f64>().expect("a number"))
    };
    // Held open, with one request served on it so it is surely accepted.
    let mut held = tokio::net::TcpStream::connect(addr).await.expect("connect");
    tokio::io::AsyncWriteExt::write_all(&mut held, b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .expect("write");
    let mut buf = [0u8; 512];
    let n = tokio::io::AsyncReadExt::read(&mut held, &mut buf)
        .await
        .expect("read");
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    support::eventually("the gauge counts the open connection", || {
        let metrics = metrics.clone();
        async move {
            let text = get(&http_client(), &metrics).await.text();
            gauge(&text) == Some(1.0)
        }
    })
    .await;
    drop(held);
    support::eventually("the gauge drops when it closes", || {
        let metrics = metrics.clone();
        async move {
            let text = get(&http_client(), &metrics).await.text();
            gauge(&text) == Some(0.0)
        }
    })
    .await;
}
