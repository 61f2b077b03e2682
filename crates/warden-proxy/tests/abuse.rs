//! Resource bounds under hostile or careless clients, over real loopback sockets with the
//! proxy in-process: idle and silent connections, the connection limit, header-field
//! limits, strict HTTP/1 framing, and the upstream pool's cap. Where a timer decides, the
//! runtime's clock is paused, so the tests wait for nothing real.

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Empty};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use support::{Running, start};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::time::Instant;
use warden_config::Role;
use warden_fixtures::upstream::{Upstream, full};

/// The test upstream: answers `200` with the number of request header fields it got in
/// `x-fields`; `/slow` answers after 20 s; `/gather` answers only once `gather` requests are
/// in progress together, so a test can force that many upstream connections.
async fn upstream(gather: usize) -> Upstream {
    let barrier = Arc::new(tokio::sync::Barrier::new(gather.max(1)));
    Upstream::start(move |req: Request<Incoming>| {
        let barrier = Arc::clone(&barrier);
        async move {
            if req.uri().path() == "/gather" {
                barrier.wait().await;
            }
            if req.uri().path() == "/slow" {
                tokio::time::sleep(Duration::from_secs(20)).await;
            }
            let fields = req.headers().len().to_string();
            Response::builder()
                .header("x-fields", fields)
                .body(full("ok"))
                .expect("a valid response")
        }
    })
    .await
}

/// The proxy with one `api` route to `upstream`; `timeouts` go under `defaults`, `limits`
/// at the top level.
async fn proxy(upstream: SocketAddr, timeouts: &str, limits: &str) -> (Running, SocketAddr) {
    let yaml = format!(
        "version: 1\n\
         admin: {{ listen: 127.0.0.1:0 }}\n\
         defaults:\n  timeouts: {{ {timeouts} }}\n  retry: {{ max_attempts: 1 }}\n\
         limits: {{ {limits} }}\n\
         connections:\n  - name: t\n    api:\n      listen: 127.0.0.1:0\n      upstream: http://{upstream}\n"
    );
    let running = start(&yaml).await;
    let addr = running.addr("t", Role::Api).await;
    (running, addr)
}

/// Reads until the peer closes; `Err` if it does not within `within`.
async fn closed_within(stream: &mut TcpStream, within: Duration) -> Result<Vec<u8>, Vec<u8>> {
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + within;
    // Bounded: every round either reads bytes, ends, or hits the deadline.
    for _ in 0..10_000 {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return Err(seen),
            Ok(Ok(0)) | Ok(Err(_)) => return Ok(seen),
            Ok(Ok(n)) => seen.extend_from_slice(&buf[..n]),
        }
    }
    Err(seen)
}

/// One raw HTTP/1.1 exchange on `stream`: the head of the answer (status line and fields).
async fn raw_exchange(stream: &mut TcpStream, request: &[u8]) -> String {
    stream.write_all(request).await.unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    for _ in 0..1000 {
        let n = tokio::time::timeout(Duration::from_secs(30), stream.read(&mut buf))
            .await
            .expect("an answer in time")
            .unwrap();
        if n == 0 {
            break;
        }
        seen.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&seen);
        if let Some(end) = text.find("\r\n\r\n") {
            let len = text[..end]
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length: ")
                        .map(|v| v.trim().parse::<usize>().unwrap())
                })
                .unwrap_or(0);
            if seen.len() >= end + 4 + len {
                break;
            }
        }
    }
    String::from_utf8_lossy(&seen).into_owned()
}

#[tokio::test(start_paused = true)]
async fn silent_tcp_connection_is_closed_after_client_idle() {
    let upstream = upstream(1).await;
    let (_proxy, addr) = proxy(upstream.addr, "client_idle: 5s", "").await;
    let start = Instant::now();
    let mut silent = TcpStream::connect(addr).await.unwrap();
    let seen = closed_within(&mut silent, Duration::from_secs(60))
        .await
        .expect("a connection that never sends a byte is closed");
    assert!(seen.is_empty());
    let took = start.elapsed();
    assert!(
        took >= Duration::from_secs(5) && took < Duration::from_secs(7),
        "closed after {took:?}, client_idle 5s"
    );
}

#[tokio::test(start_paused = true)]
async fn silent_h2_connection_after_its_preface_is_closed() {
    let upstream = upstream(1).await;
    let (_proxy, addr) = proxy(upstream.addr, "client_idle: 5s", "").await;
    let mut h2 = TcpStream::connect(addr).await.unwrap();
    let start = Instant::now();
    h2.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .await
        .unwrap();
    // An empty SETTINGS frame, then nothing.
    h2.write_all(&[0, 0, 0, 4, 0, 0, 0, 0, 0]).await.unwrap();
    let seen = closed_within(&mut h2, Duration::from_secs(60))
        .await
        .expect("an HTTP/2 connection with no stream is closed after client_idle");
    // The server's SETTINGS came first: it was an HTTP/2 connection, not a refused one.
    assert_eq!(seen.get(3), Some(&4), "first frame is SETTINGS");
    let took = start.elapsed();
    assert!(
        took >= Duration::from_secs(5) && took < Duration::from_secs(7),
        "closed after {took:?}, client_idle 5s"
    );
}

#[tokio::test(start_paused = true)]
async fn keep_alive_connection_is_closed_after_client_idle_but_not_mid_request() {
    let upstream = upstream(1).await;
    let (_proxy, addr) = proxy(upstream.addr, "client_idle: 5s, request: 60s", "").await;
    let mut conn = TcpStream::connect(addr).await.unwrap();
    // Keep the connection busy past client_idle with requests, each well within it.
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_secs(3)).await;
        let head = raw_exchange(&mut conn, b"GET / HTTP/1.1\r\nhost: t\r\n\r\n").await;
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    }
    // A request in progress longer than client_idle is not cut.
    let head = raw_exchange(&mut conn, b"GET /slow HTTP/1.1\r\nhost: t\r\n\r\n").await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let idle_from = Instant::now();
    closed_within(&mut conn, Duration::from_secs(60))
        .await
        .expect("closed once idle");
    let took = idle_from.elapsed();
    assert!(
        took >= Duration::from_secs(5) && took < Duration::from_secs(7),
        "closed {took:?} after its last response"
    );
}

#[tokio::test(start_paused = true)]
async fn client_past_max_connections_waits_and_is_served_once_one_closes() {
    let upstream = upstream(1).await;
    let (_proxy, addr) = proxy(upstream.addr, "client_idle: 600s", "max_connections: 2").await;
    let mut first = TcpStream::connect(addr).await.unwrap();
    let mut second = TcpStream::connect(addr).await.unwrap();
    for c in [&mut first, &mut second] {
        let head = raw_exchange(c, b"GET / HTTP/1.1\r\nhost: t\r\n\r\n").await;
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    }
    // The third completes its TCP handshake in the backlog, but is not served.
    let mut third = TcpStream::connect(addr).await.unwrap();
    third
        .write_all(b"GET / HTTP/1.1\r\nhost: t\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 64];
    let early = tokio::time::timeout(Duration::from_secs(50), third.read(&mut buf)).await;
    assert!(early.is_err(), "the third client must wait: got {early:?}");
    drop(first);
    let n = tokio::time::timeout(Duration::from_secs(30), third.read(&mut buf))
        .await
        .expect("served once a slot is free")
        .unwrap();
    assert!(
        buf[..n].starts_with(b"HTTP/1.1 200"),
        "{:?}",
        String::from_utf8_lossy(&buf[..n])
    );
    // The second is still served as before.
    let head = raw_exchange(&mut second, b"GET / HTTP/1.1\r\nhost: t\r\n\r\n").await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
}

fn with_fields(builder: http::request::Builder, n: usize) -> http::request::Builder {
    (0..n).fold(builder, |b, i| b.header(format!("x-f{i}"), "v"))
}

async fn h1_request(addr: SocketAddr, fields: usize) -> Response<Bytes> {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = with_fields(Request::get("/").header("host", "t"), fields)
        .body(Empty::<Bytes>::new())
        .unwrap();
    let resp = send.send_request(req).await.unwrap();
    let (parts, body) = resp.into_parts();
    Response::from_parts(parts, body.collect().await.unwrap().to_bytes())
}

async fn h2_request(addr: SocketAddr, fields: usize) -> Response<Bytes> {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let req = with_fields(Request::get(format!("http://{addr}/")), fields)
        .body(Empty::<Bytes>::new())
        .unwrap();
    let resp = send.send_request(req).await.unwrap();
    let (parts, body) = resp.into_parts();
    Response::from_parts(parts, body.collect().await.unwrap().to_bytes())
}

fn assert_json_431(resp: &Response<Bytes>) {
    assert_eq!(resp.status(), 431);
    let body: serde_json::Value = serde_json::from_slice(resp.body()).expect("a JSON body");
    assert_eq!(body["error"], "request_header_too_large");
}

#[tokio::test]
async fn header_field_limits_are_the_same_on_http1_and_http2() {
    let upstream = upstream(1).await;
    let (_proxy, addr) = proxy(upstream.addr, "connect: 2s", "").await;

    let resp = h1_request(addr, 150).await;
    assert_eq!(resp.status(), 200);
    let got: usize = resp.headers()["x-fields"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(got >= 150, "the upstream got {got} fields");
    let resp = h2_request(addr, 150).await;
    assert_eq!(resp.status(), 200);
    let got: usize = resp.headers()["x-fields"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(got >= 150, "the upstream got {got} fields");

    for fields in [201, 300, 1000] {
        assert_json_431(&h1_request(addr, fields).await);
        assert_json_431(&h2_request(addr, fields).await);
    }
}

#[tokio::test]
async fn ambiguous_host_and_transfer_encoding_get_400() {
    let upstream = upstream(1).await;
    let (_proxy, addr) = proxy(upstream.addr, "connect: 2s", "").await;
    let cases: [(&[u8], &str); 4] = [
        (b"GET / HTTP/1.1\r\nhost: a\r\nhost: b\r\n\r\n", "bad_host"),
        (b"GET / HTTP/1.1\r\n\r\n", "bad_host"),
        (
            b"POST / HTTP/1.1\r\nhost: a\r\ntransfer-encoding: identity, chunked\r\n\r\n0\r\n\r\n",
            "bad_transfer_encoding",
        ),
        (
            b"POST / HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n",
            "bad_transfer_encoding",
        ),
    ];
    for (request, code) in cases {
        let mut conn = TcpStream::connect(addr).await.unwrap();
        let answer = raw_exchange(&mut conn, request).await;
        assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
        assert!(answer.contains(&format!(r#""error":"{code}""#)), "{answer}");
    }
    assert_eq!(upstream.accepted(), 0, "nothing was forwarded");
    // A well-formed request still passes.
    let mut conn = TcpStream::connect(addr).await.unwrap();
    let answer = raw_exchange(&mut conn, b"GET / HTTP/1.1\r\nhost: a\r\n\r\n").await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

#[tokio::test]
async fn upstream_pool_keeps_no_more_than_its_cap() {
    const BURST: usize = 6;
    let upstream = upstream(BURST).await;
    let (_proxy, addr) = proxy(
        upstream.addr,
        "request: 10s",
        "max_idle_upstream_per_route: 2",
    )
    .await;
    // BURST requests held together at the upstream need BURST upstream connections.
    let burst: Vec<_> = (0..BURST)
        .map(|_| {
            tokio::spawn(async move {
                let mut conn = TcpStream::connect(addr).await.unwrap();
                raw_exchange(&mut conn, b"GET /gather HTTP/1.1\r\nhost: t\r\n\r\n").await
            })
        })
        .collect();
    for answer in burst {
        let answer = answer.await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    }
    assert_eq!(upstream.accepted(), BURST);
    // Connections past the cap are closed as they come back to the pool.
    let deadline = Instant::now() + Duration::from_secs(10);
    while upstream.open() > 2 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(upstream.open(), 2, "idle upstream connections kept");
}

/// At `max_upstream_per_route`, a request waits for a connection up to `timeouts.connect`,
/// then gets warden's 503: warden's own limit, so the upstream's health is not touched.
#[tokio::test(start_paused = true)]
async fn at_the_upstream_connection_limit_a_request_gets_503_and_health_stays_healthy() {
    let upstream = upstream(1).await;
    let (proxy, addr) = proxy(
        upstream.addr,
        "connect: 2s, request: 60s",
        "max_upstream_per_route: 1",
    )
    .await;
    // The one connection the route may open, busy for 20 s.
    let slow = tokio::spawn(async move {
        let mut conn = TcpStream::connect(addr).await.unwrap();
        raw_exchange(&mut conn, b"GET /slow HTTP/1.1\r\nhost: t\r\n\r\n").await
    });
    let deadline = Instant::now() + Duration::from_secs(1);
    while upstream.accepted() == 0 {
        assert!(
            Instant::now() < deadline,
            "the slow request reached the upstream"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let start = Instant::now();
    let mut conn = TcpStream::connect(addr).await.unwrap();
    let answer = raw_exchange(&mut conn, b"GET / HTTP/1.1\r\nhost: t\r\n\r\n").await;
    let waited = start.elapsed();
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("x-warden-error: upstream_busy"), "{answer}");
    assert!(answer.contains("retry-after: 1"), "{answer}");
    assert!(answer.contains(r#""error":"upstream_busy""#), "{answer}");
    assert!(
        waited >= Duration::from_secs(2) && waited < Duration::from_secs(3),
        "answered after {waited:?}, connect timeout 2s"
    );
    assert_eq!(upstream.accepted(), 1, "no second upstream connection");
    let row = proxy
        .proxy
        .health()
        .get("t")
        .expect("the connection")
        .snapshot();
    assert_eq!(row.state.as_str(), "healthy");
    // Counted as warden's own answer, once its body has gone out.
    let deadline = Instant::now() + Duration::from_secs(1);
    let busy = || {
        warden_fixtures::metrics::metric(
            &support::scrape(),
            "warden_short_circuits_total",
            &[("connection", "t"), ("reason", "upstream_busy")],
        )
    };
    while busy() != Some(1.0) {
        assert!(Instant::now() < deadline, "short circuits: {:?}", busy());
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    // The slow answer still arrives on its connection; after it the route serves again.
    let answer = slow.await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let answer = raw_exchange(&mut conn, b"GET / HTTP/1.1\r\nhost: t\r\n\r\n").await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert_eq!(upstream.accepted(), 1, "the one connection serves both");
}
