//! Inline retries against real upstreams that count and timestamp what reaches them.

mod support;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Response;
use http_body_util::Full;
use support::upstream::{Seen, Upstream, full, record};
use support::{Warden, get, http_client, metric, one_route, scrape, send};

/// A request as the upstream saw it, and when.
type Log = Arc<Mutex<Vec<(Instant, Seen)>>>;

/// An upstream that answers the n-th request (0-based) with `statuses[n]` (the last one
/// repeating), each with the given extra headers, and logs every request.
async fn scripted(statuses: Vec<(u16, Vec<(&'static str, &'static str)>)>) -> (Upstream, Log) {
    let log: Log = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&log);
    let count = Arc::new(AtomicUsize::new(0));
    let up = Upstream::start(move |req| {
        let (seen, count) = (Arc::clone(&seen), Arc::clone(&count));
        let n = count.fetch_add(1, Ordering::SeqCst);
        let (status, headers) = statuses[n.min(statuses.len() - 1)].clone();
        async move {
            let arrived = Instant::now();
            let scratch = Mutex::new(Vec::new());
            let s = record(&scratch, req).await;
            seen.lock().expect("log").push((arrived, s));
            let mut resp = Response::builder().status(status);
            for (k, v) in headers {
                resp = resp.header(k, v);
            }
            resp.body(full("{}")).expect("response")
        }
    })
    .await;
    (up, log)
}

fn config(upstream: &str, role: &str, retry: &str, extra: &str) -> String {
    format!(
        // The circuit breaker is not under test here: keep it out of the way.
        "{}defaults:\n  retry: {retry}\n  circuit: {{ consecutive_failures: 1000 }}\n{extra}",
        one_route(role, upstream, "")
    )
}

fn retries(m: &str, outcome: &str) -> f64 {
    metric(
        m,
        "warden_retries_total",
        &[("connection", "t"), ("outcome", outcome)],
    )
    .unwrap_or(0.0)
}

#[tokio::test]
async fn two_503s_then_200_is_retried_with_growing_jittered_backoff() {
    let (up, log) = scripted(vec![(503, vec![]), (503, vec![]), (200, vec![])]).await;
    let warden = Warden::start(&config(
        &up.url(),
        "mcp",
        "{ max_attempts: 3, backoff: { base: 100ms, max: 2s } }",
        "",
    ));
    let answer = get(
        &http_client(),
        &format!("http://{}/tools", warden.route("t", "mcp")),
    )
    .await;
    assert_eq!(answer.status, 200);

    let log = log.lock().expect("log").clone();
    assert_eq!(log.len(), 3, "three upstream hits");
    assert!(log[0].1.headers.get("x-warden-attempt").is_none());
    assert_eq!(log[1].1.headers["x-warden-attempt"], "2");
    assert_eq!(log[2].1.headers["x-warden-attempt"], "3");
    // Full jitter: each gap is drawn from [0, ceiling], the ceiling doubling. A generous
    // allowance covers a loaded machine's scheduling and a fresh upstream connection.
    let slack = Duration::from_millis(250);
    let gaps: Vec<Duration> = log.windows(2).map(|w| w[1].0 - w[0].0).collect();
    assert!(gaps[0] <= Duration::from_millis(100) + slack, "{gaps:?}");
    assert!(gaps[1] <= Duration::from_millis(200) + slack, "{gaps:?}");
    let m = scrape(warden.admin).await;
    assert_eq!(retries(&m, "success"), 1.0, "{m}");
}

#[tokio::test]
async fn retry_after_is_honoured_within_the_cap_and_refused_beyond_it() {
    let (up, log) = scripted(vec![(503, vec![("retry-after", "1")]), (200, vec![])]).await;
    let warden = Warden::start(&config(
        &up.url(),
        "api",
        "{ backoff: { base: 10ms, max: 2s } }",
        "",
    ));
    let answer = get(
        &http_client(),
        &format!("http://{}/", warden.route("t", "api")),
    )
    .await;
    assert_eq!(answer.status, 200);
    let log = log.lock().expect("log").clone();
    assert_eq!(log.len(), 2);
    assert!(
        log[1].0 - log[0].0 >= Duration::from_secs(1),
        "retried before Retry-After"
    );

    let (up, log) = scripted(vec![(503, vec![("retry-after", "5")]), (200, vec![])]).await;
    let warden = Warden::start(&config(
        &up.url(),
        "api",
        "{ backoff: { base: 10ms, max: 2s } }",
        "",
    ));
    let answer = get(
        &http_client(),
        &format!("http://{}/", warden.route("t", "api")),
    )
    .await;
    assert_eq!(
        answer.status, 503,
        "Retry-After past the cap: the client gets the 503"
    );
    assert_eq!(answer.headers["retry-after"], "5");
    assert_eq!(log.lock().expect("log").len(), 1);
    assert_eq!(retries(&scrape(warden.admin).await, "unsafe"), 1.0);
}

#[tokio::test]
async fn only_idempotent_methods_are_retried_after_a_500() {
    let (up, log) = scripted(vec![(500, vec![]), (200, vec![])]).await;
    let warden = Warden::start(&config(
        &up.url(),
        "mcp",
        "{ backoff: { base: 10ms, max: 50ms } }",
        "",
    ));
    let addr = warden.route("t", "mcp");
    let client = http_client();
    let post = http::Request::post(format!("http://{addr}/rpc"))
        .body(Full::new(Bytes::from_static(b"{\"id\":1}")))
        .expect("request");
    assert_eq!(
        send(&client, post).await.status,
        500,
        "a POST that reached the upstream is not repeated"
    );
    assert_eq!(log.lock().expect("log").len(), 1);
    assert_eq!(retries(&scrape(warden.admin).await, "unsafe"), 1.0);

    let (up, log) = scripted(vec![(500, vec![]), (200, vec![])]).await;
    let warden = Warden::start(&config(
        &up.url(),
        "mcp",
        "{ backoff: { base: 10ms, max: 50ms } }",
        "",
    ));
    let answer = get(
        &client,
        &format!("http://{}/resource", warden.route("t", "mcp")),
    )
    .await;
    assert_eq!(answer.status, 200);
    assert_eq!(log.lock().expect("log").len(), 2);
}

/// A TLS upstream that drops the first connection before the handshake: the first attempt
/// fails while connecting (nothing was sent), the retry gets through.
#[tokio::test]
async fn a_post_that_never_left_is_retried_with_the_identical_body() {
    let ca = support::pki::Ca::new("retry ca");
    let tls = ca.server_config(&["127.0.0.1"], &[b"http/1.1"], None);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&bodies);
    let server = tokio::spawn(async move {
        let acceptor = tokio_rustls::TlsAcceptor::from(tls);
        let mut first = true;
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            if std::mem::take(&mut first) {
                drop(stream);
                continue;
            }
            let acceptor = acceptor.clone();
            let seen = Arc::clone(&seen);
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(stream).await else {
                    return;
                };
                let svc =
                    hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let seen = Arc::clone(&seen);
                        async move {
                            let scratch = Mutex::new(Vec::new());
                            let s = record(&scratch, req).await;
                            seen.lock().expect("bodies").push(s.body);
                            Ok::<_, std::convert::Infallible>(Response::new(full("ok")))
                        }
                    });
                let _ = hyper_util::server::conn::auto::Builder::new(
                    hyper_util::rt::TokioExecutor::new(),
                )
                .serve_connection(hyper_util::rt::TokioIo::new(tls), svc)
                .await;
            });
        }
    });
    let files = tempfile::tempdir().expect("dir");
    let ca_file = ca.write(files.path(), "ca.pem");
    let warden = Warden::start(
        &config(
            &format!("https://127.0.0.1:{port}"),
            "mcp",
            "{ backoff: { base: 10ms, max: 50ms } }",
            "",
        )
        .replace(
            &format!("upstream: https://127.0.0.1:{port}"),
            &format!(
                "upstream: https://127.0.0.1:{port}\n      tls: {{ ca_file: {} }}",
                ca_file.display()
            ),
        ),
    );
    let payload =
        Bytes::from_static(br#"{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"n":1}}"#);
    let post = http::Request::post(format!("http://{}/rpc", warden.route("t", "mcp")))
        .body(Full::new(payload.clone()))
        .expect("request");
    let answer = send(&http_client(), post).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(*bodies.lock().expect("bodies"), vec![payload]);
    assert_eq!(retries(&scrape(warden.admin).await, "success"), 1.0);
    server.abort();
}

async fn refresh(addr: std::net::SocketAddr, token: &str) -> support::Answer {
    let req = http::Request::post(format!("http://{addr}/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Full::new(Bytes::from(format!(
            "grant_type=refresh_token&refresh_token={token}&client_id=app"
        ))))
        .expect("request");
    send(&http_client(), req).await
}

#[tokio::test]
async fn a_refresh_grant_is_retried_on_503_but_never_after_a_500() {
    let (idp, log) = scripted(vec![(500, vec![]), (200, vec![])]).await;
    let warden = Warden::start(&config(
        &idp.url(),
        "oauth",
        "{ backoff: { base: 10ms, max: 50ms } }",
        "",
    ));
    let answer = refresh(warden.route("t", "oauth"), "rt-1").await;
    assert_eq!(answer.status, 500);
    assert_eq!(
        log.lock().expect("log").len(),
        1,
        "a refresh token that reached the IdP is never replayed"
    );

    let (idp, log) = scripted(vec![(503, vec![]), (200, vec![])]).await;
    let warden = Warden::start(&config(
        &idp.url(),
        "oauth",
        "{ backoff: { base: 10ms, max: 50ms } }",
        "",
    ));
    let answer = refresh(warden.route("t", "oauth"), "rt-2").await;
    assert_eq!(answer.status, 200);
    let log = log.lock().expect("log").clone();
    assert_eq!(log.len(), 2);
    assert_eq!(
        log[0].1.body, log[1].1.body,
        "the retry replays the same form"
    );
}

#[tokio::test]
async fn a_body_too_large_to_replay_is_streamed_once_and_not_retried() {
    let (up, log) = scripted(vec![(503, vec![]), (200, vec![])]).await;
    let warden = Warden::start(&config(
        &up.url(),
        "api",
        "{ max_body_bytes: 1024, backoff: { base: 10ms, max: 50ms } }",
        "",
    ));
    let big = Bytes::from(vec![b'z'; 100_000]);
    let put = http::Request::put(format!("http://{}/blob", warden.route("t", "api")))
        .body(Full::new(big.clone()))
        .expect("request");
    assert_eq!(send(&http_client(), put).await.status, 503);
    let log = log.lock().expect("log").clone();
    assert_eq!(log.len(), 1);
    assert!(log[0].1.body == big, "the body reached the upstream intact");
    assert_eq!(retries(&scrape(warden.admin).await, "unsafe"), 1.0);
}

#[tokio::test]
async fn retries_in_flight_never_exceed_max_concurrent_retries() {
    const MAX: usize = 5;
    let current = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let (c, p) = (Arc::clone(&current), Arc::clone(&peak));
    let up = Upstream::start(move |req| {
        let (c, p) = (Arc::clone(&c), Arc::clone(&p));
        let retry = req.headers().contains_key("x-warden-attempt");
        async move {
            if retry {
                let now = c.fetch_add(1, Ordering::SeqCst) + 1;
                p.fetch_max(now, Ordering::SeqCst);
            }
            // Slow answers, so the 20 requests and their retries overlap.
            tokio::time::sleep(Duration::from_millis(150)).await;
            if retry {
                c.fetch_sub(1, Ordering::SeqCst);
            }
            Response::builder()
                .status(503)
                .body(full(""))
                .expect("response")
        }
    })
    .await;
    let warden = Warden::start(&config(
        &up.url(),
        "api",
        "{ max_attempts: 3, backoff: { base: 1ms, max: 5ms }, budget: { ratio: 1.0, min_per_second: 1000 } }",
        &format!("limits: {{ max_concurrent_retries: {MAX} }}\n"),
    ));
    let addr = warden.route("t", "api");
    let client = http_client();
    let requests: Vec<_> = (0..20)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move { get(&client, &format!("http://{addr}/")).await.status })
        })
        .collect();
    for r in requests {
        assert_eq!(r.await.expect("task"), 503);
    }
    let peak = peak.load(Ordering::SeqCst);
    assert!(peak <= MAX, "{peak} retries at the upstream at once");
    assert!(peak > 0);
    let m = scrape(warden.admin).await;
    assert!(retries(&m, "concurrency_limited") > 0.0, "{m}");
    assert_eq!(
        metric(&m, "warden_retries_in_flight", &[]),
        Some(0.0),
        "{m}"
    );
}

#[tokio::test]
async fn the_budget_caps_retries_in_a_burst() {
    let (up, log) = scripted(vec![(503, vec![])]).await;
    // ratio 0: only the reserve of min_per_second x 10 s = 10 retries.
    let warden = Warden::start(&config(
        &up.url(),
        "api",
        "{ max_attempts: 2, backoff: { base: 1ms, max: 2ms }, budget: { ratio: 0, min_per_second: 1 } }",
        "",
    ));
    let addr = warden.route("t", "api");
    let client = http_client();
    for _ in 0..20 {
        assert_eq!(get(&client, &format!("http://{addr}/")).await.status, 503);
    }
    assert_eq!(
        log.lock().expect("log").len(),
        30,
        "20 first attempts + the 10 the budget allows"
    );
    let m = scrape(warden.admin).await;
    assert_eq!(retries(&m, "budget_exhausted"), 10.0, "{m}");
    assert_eq!(retries(&m, "exhausted"), 10.0, "{m}");
}

#[tokio::test]
async fn concurrent_refreshes_of_one_token_share_one_upstream_exchange() {
    // A rotating IdP: the first use of a refresh token succeeds, any reuse is invalid_grant.
    let used = Arc::new(Mutex::new(HashMap::<String, usize>::new()));
    let hits = Arc::new(AtomicUsize::new(0));
    let (u, h) = (Arc::clone(&used), Arc::clone(&hits));
    let idp = Upstream::start(move |req| {
        let (u, h) = (Arc::clone(&u), Arc::clone(&h));
        async move {
            h.fetch_add(1, Ordering::SeqCst);
            let scratch = Mutex::new(Vec::new());
            let seen = record(&scratch, req).await;
            let form = String::from_utf8_lossy(&seen.body).into_owned();
            let token = form
                .split('&')
                .find_map(|kv| kv.strip_prefix("refresh_token="))
                .unwrap_or_default()
                .to_owned();
            // Slow enough that the whole burst arrives while this exchange is in flight.
            tokio::time::sleep(Duration::from_millis(500)).await;
            let uses = {
                let mut used = u.lock().expect("used");
                let n = used.entry(token.clone()).or_default();
                *n += 1;
                *n
            };
            let (status, body) = if uses == 1 {
                (
                    200,
                    format!(
                        r#"{{"access_token":"at-for-{token}","refresh_token":"next-{token}"}}"#
                    ),
                )
            } else {
                (400, r#"{"error":"invalid_grant"}"#.to_owned())
            };
            Response::builder()
                .status(status)
                .header("content-type", "application/json")
                .body(full(body))
                .expect("response")
        }
    })
    .await;
    let warden = Warden::start(&one_route("oauth", &idp.url(), ""));
    let addr = warden.route("t", "oauth");

    let burst: Vec<_> = (0..20)
        .map(|_| tokio::spawn(async move { refresh(addr, "rt-shared").await }))
        .collect();
    let mut bodies = Vec::new();
    for r in burst {
        let answer = r.await.expect("task");
        assert_eq!(answer.status, 200);
        bodies.push(answer.body);
    }
    assert_eq!(
        hits.load(Ordering::SeqCst),
        1,
        "the IdP saw the refresh token once"
    );
    assert!(
        bodies.iter().all(|b| *b == bodies[0]),
        "every caller got the same answer"
    );
    assert!(bodies[0].starts_with(br#"{"access_token":"at-for-rt-shared""#));

    // Different refresh tokens are different exchanges.
    let (a, b) = tokio::join!(refresh(addr, "rt-a"), refresh(addr, "rt-b"));
    assert_eq!(
        (a.status, b.status),
        (http::StatusCode::OK, http::StatusCode::OK)
    );
    assert_eq!(hits.load(Ordering::SeqCst), 3);
    let health = get(
        &http_client(),
        &format!("http://{}/api/v1/connections/health", warden.admin),
    )
    .await
    .json();
    assert_eq!(health["connections"][0]["state"], "healthy");
}

#[tokio::test]
async fn an_sse_stream_that_breaks_mid_way_ends_for_the_client_without_a_retry() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // A raw upstream: one chunked event, then the connection drops without the last chunk.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let hits = Arc::new(AtomicUsize::new(0));
    let h = Arc::clone(&hits);
    let server = tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            h.fetch_add(1, Ordering::SeqCst);
            let mut buf = [0u8; 4096];
            let _ = stream.read(&mut buf).await;
            let event = "data: {\"n\":1}\n\n";
            let head = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n{:x}\r\n{event}\r\n",
                event.len()
            );
            let _ = stream.write_all(head.as_bytes()).await;
            let _ = stream.flush().await;
            tokio::time::sleep(Duration::from_millis(100)).await;
            drop(stream);
        }
    });
    let warden = Warden::start(&one_route("mcp", &format!("http://127.0.0.1:{port}"), ""));
    let resp = http_client()
        .request(
            http::Request::get(format!("http://{}/sse", warden.route("t", "mcp")))
                .body(Full::new(Bytes::new()))
                .expect("request"),
        )
        .await
        .expect("response head");
    assert_eq!(resp.status(), 200);
    let mut body = resp.into_body();
    let first = http_body_util::BodyExt::frame(&mut body)
        .await
        .expect("a frame")
        .expect("data");
    assert_eq!(first.into_data().expect("data"), "data: {\"n\":1}\n\n");
    // Then the stream breaks off for the client too: never a clean end, never a second copy.
    let rest =
        tokio::time::timeout(support::DEADLINE, http_body_util::BodyExt::collect(body)).await;
    assert!(
        rest.expect("the stream ends").is_err(),
        "a broken stream must not look complete"
    );
    assert_eq!(
        hits.load(Ordering::SeqCst),
        1,
        "no retry once the answer streamed"
    );
    server.abort();
}

#[tokio::test]
async fn retries_count_toward_the_circuit_and_an_opening_circuit_stops_them() {
    let (up, log) = scripted(vec![(503, vec![])]).await;
    let warden = Warden::start(&format!(
        "{}defaults:\n  retry: {{ max_attempts: 5, backoff: {{ base: 1ms, max: 5ms }} }}\n  circuit: {{ consecutive_failures: 2, probe: {{ interval: 1h, max_interval: 1h }} }}\n",
        one_route("api", &up.url(), "")
    ));
    let answer = get(
        &http_client(),
        &format!("http://{}/", warden.route("t", "api")),
    )
    .await;
    assert_eq!(answer.status, 503);
    assert!(
        answer.headers.get("x-warden-short-circuit").is_none(),
        "the client gets the upstream's own last answer"
    );
    assert_eq!(
        log.lock().expect("log").len(),
        2,
        "the second failure opened the circuit"
    );
    let m = scrape(warden.admin).await;
    assert_eq!(retries(&m, "exhausted"), 1.0, "{m}");
    assert_eq!(
        metric(&m, "warden_connection_state", &[("state", "circuit_open")]),
        Some(1.0)
    );
}
