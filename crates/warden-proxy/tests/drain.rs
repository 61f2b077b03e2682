//! What a drain waits for besides client connections: a coalesced token exchange whose
//! callers have gone, and a probe in flight that the config before a reload started. The
//! proxy runs in-process on a paused clock, over real loopback sockets.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use warden_config::Role;
use warden_proxy::Proxy;

/// How long the test upstreams hold the answer the drain must wait for.
const HOLD: Duration = Duration::from_secs(10);
/// Longer than anything here takes: a drain that ends at the timeout has failed.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(60);
/// A bound on each wait for something the test expects to happen.
const DEADLINE: Duration = Duration::from_secs(30);

/// An upstream on this runtime (so the paused clock sees its timers) answering each request
/// with `answer`.
async fn upstream<F, Fut>(answer: F) -> SocketAddr
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let answer = answer.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| {
                    let answer = answer.clone();
                    async move { Ok::<_, Infallible>(answer(req).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

async fn start(yaml: &str) -> (Proxy, SocketAddr, CancellationToken) {
    let config = warden_config::parse(yaml, "test.yaml").expect("valid test config");
    let shutdown = CancellationToken::new();
    let proxy = Proxy::start(&config, shutdown.clone())
        .await
        .expect("proxy starts");
    let addr = proxy.bound().await[0].addr;
    (proxy, addr, shutdown)
}

/// One request (origin-form, with `Host`) on a connection of its own; the connection closes
/// when the returned future ends or is dropped.
async fn send(addr: SocketAddr, mut req: Request<Full<Bytes>>) -> (u16, Bytes) {
    let host = http::HeaderValue::from_str(&addr.to_string()).expect("host");
    req.headers_mut().insert(http::header::HOST, host);
    let stream = TcpStream::connect(addr).await.expect("connect");
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    let driver = tokio::spawn(conn);
    let resp = sender.send_request(req).await.expect("answer");
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    driver.abort();
    (status, body)
}

fn refresh_grant() -> Request<Full<Bytes>> {
    Request::post("/token")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Full::new(Bytes::from_static(
            b"grant_type=refresh_token&refresh_token=rt-1&client_id=app",
        )))
        .expect("request")
}

/// The types of the connection's health events, newest first.
fn events(proxy: &Proxy, connection: &str) -> Vec<String> {
    let detail = proxy.health().get(connection).expect("connection").detail();
    let detail = serde_json::to_value(detail).expect("json");
    detail["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| e["type"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// An IdP whose token endpoint counts grants and answers each after [`HOLD`].
async fn slow_idp(arrived: Arc<Notify>, hits: Arc<AtomicUsize>) -> SocketAddr {
    upstream(move |_req| {
        let (arrived, hits) = (Arc::clone(&arrived), Arc::clone(&hits));
        async move {
            hits.fetch_add(1, Ordering::SeqCst);
            arrived.notify_one();
            tokio::time::sleep(HOLD).await;
            Response::builder()
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from_static(
                    br#"{"access_token":"at-2","refresh_token":"rt-2"}"#,
                )))
                .expect("response")
        }
    })
    .await
}

fn oauth_config(idp: SocketAddr) -> String {
    format!(
        "version: 1
admin: {{ listen: 127.0.0.1:0 }}
connections:
  - name: c
    oauth: {{ listen: 127.0.0.1:0, upstream: http://{idp}, token_path: /token }}
"
    )
}

/// The caller of a refresh grant goes away while the exchange is at the IdP: the exchange
/// goes on (its answer is the connection's new refresh token), and the drain waits for it.
#[tokio::test(start_paused = true)]
async fn drain_waits_for_a_coalesced_exchange_whose_callers_have_gone() {
    let (arrived, hits) = (Arc::new(Notify::new()), Arc::new(AtomicUsize::new(0)));
    let idp = slow_idp(Arc::clone(&arrived), Arc::clone(&hits)).await;
    let (proxy, addr, shutdown) = start(&oauth_config(idp)).await;

    let caller = tokio::spawn(send(addr, refresh_grant()));
    tokio::time::timeout(DEADLINE, arrived.notified())
        .await
        .expect("the grant reaches the IdP");
    let at_idp = Instant::now();
    // The client gives up: its connection closes with the grant still at the IdP.
    caller.abort();
    let _ = caller.await;

    shutdown.cancel();
    assert!(proxy.drain(DRAIN_TIMEOUT).await, "the drain timed out");
    assert!(
        at_idp.elapsed() >= HOLD,
        "the drain ended {:?} after the grant reached the IdP, before its answer",
        at_idp.elapsed()
    );
    assert!(
        events(&proxy, "c").contains(&"refresh_succeeded".to_owned()),
        "the exchange ended before the drain did: {:?}",
        events(&proxy, "c")
    );
    assert_eq!(hits.load(Ordering::SeqCst), 1);
}

/// A drain that begins while a coalesced exchange is at the IdP: every caller waiting for
/// it gets the one answer before the drain ends.
#[tokio::test(start_paused = true)]
async fn drain_delivers_a_coalesced_answer_to_every_waiting_caller() {
    let (arrived, hits) = (Arc::new(Notify::new()), Arc::new(AtomicUsize::new(0)));
    let idp = slow_idp(Arc::clone(&arrived), Arc::clone(&hits)).await;
    let (proxy, addr, shutdown) = start(&oauth_config(idp)).await;

    let leader = tokio::spawn(send(addr, refresh_grant()));
    tokio::time::timeout(DEADLINE, arrived.notified())
        .await
        .expect("the grant reaches the IdP");
    let follower = tokio::spawn(send(addr, refresh_grant()));
    // The follower's grant is read and joins the exchange (no timer is due before HOLD).
    tokio::time::sleep(Duration::from_secs(1)).await;

    shutdown.cancel();
    let drained = tokio::spawn({
        let proxy = proxy.clone();
        async move { proxy.drain(DRAIN_TIMEOUT).await }
    });
    let (leader, follower) = (
        leader.await.expect("leader"),
        follower.await.expect("follower"),
    );
    assert_eq!(leader.0, 200);
    assert_eq!(follower, leader, "both callers get the one answer");
    assert_eq!(
        hits.load(Ordering::SeqCst),
        1,
        "the refresh token went to the IdP once"
    );
    assert!(drained.await.expect("drain task"), "the drain timed out");
}

/// A probe started before a reload is still in flight when shutdown comes: the drain waits
/// for it, and its answer closes the circuit.
#[tokio::test(start_paused = true)]
async fn drain_waits_for_a_probe_started_before_a_reload() {
    let probing = Arc::new(Notify::new());
    let probed = Arc::new(AtomicBool::new(false));
    let (p, done) = (Arc::clone(&probing), Arc::clone(&probed));
    let up = upstream(move |req| {
        let (p, done) = (Arc::clone(&p), Arc::clone(&done));
        async move {
            if req.uri().path() != "/probe" {
                return Response::builder()
                    .status(503)
                    .body(Full::new(Bytes::new()))
                    .expect("response");
            }
            p.notify_one();
            tokio::time::sleep(HOLD).await;
            done.store(true, Ordering::SeqCst);
            Response::new(Full::new(Bytes::from_static(b"ok")))
        }
    })
    .await;
    let yaml = format!(
        "version: 1
admin: {{ listen: 127.0.0.1:0 }}
defaults: {{ retry: {{ max_attempts: 1 }} }}
connections:
  - name: c
    mcp:
      listen: 127.0.0.1:0
      upstream: http://{up}
      circuit: {{ consecutive_failures: 1, probe: {{ interval: 1s, max_interval: 8s, path: /probe }} }}
"
    );
    let (proxy, addr, shutdown) = start(&yaml).await;
    let req = Request::get("/x")
        .body(Full::new(Bytes::new()))
        .expect("request");
    assert_eq!(send(addr, req).await.0, 503);
    let health = proxy.health().get("c").expect("connection");
    assert!(health.is_circuit_open(Role::Mcp), "one failure opens it");
    tokio::time::timeout(DEADLINE, probing.notified())
        .await
        .expect("a probe starts");

    // The reload replaces the prober; the old one's probe is still at the upstream.
    let config = warden_config::parse(&yaml, "test.yaml").expect("valid test config");
    proxy.reload(&config).await.expect("reload");
    shutdown.cancel();
    assert!(proxy.drain(DRAIN_TIMEOUT).await, "the drain timed out");
    assert!(
        probed.load(Ordering::SeqCst),
        "the drain ended before the probe's answer"
    );
    assert!(
        !health.is_circuit_open(Role::Mcp),
        "the drain ended before the probe was recorded"
    );
}

/// A reload that removes a route drains it: its listener stops accepting, the request in
/// flight gets its answer, and then its keep-alive connection closes instead of serving on
/// with the settings of a route that no longer exists.
#[tokio::test(start_paused = true)]
async fn a_reload_that_removes_a_route_drains_its_connections() {
    let arrived = Arc::new(Notify::new());
    let a = Arc::clone(&arrived);
    let up = upstream(move |_req| {
        let a = Arc::clone(&a);
        async move {
            a.notify_one();
            tokio::time::sleep(HOLD).await;
            Response::new(Full::new(Bytes::from_static(b"done")))
        }
    })
    .await;
    let route = |name: &str| {
        format!("  - name: {name}\n    api: {{ listen: 127.0.0.1:0, upstream: http://{up} }}\n")
    };
    let head = "version: 1\nadmin: { listen: 127.0.0.1:0 }\nconnections:\n";
    let (proxy, _, shutdown) = start(&format!("{head}{}{}", route("a"), route("b"))).await;
    let b = proxy
        .bound()
        .await
        .into_iter()
        .find(|r| r.connection == "b")
        .expect("route b")
        .addr;

    let stream = TcpStream::connect(b).await.expect("connect");
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    let mut connection = tokio::spawn(conn);
    let req = Request::get("/slow")
        .header(http::header::HOST, b.to_string())
        .body(Full::new(Bytes::new()))
        .expect("request");
    let in_flight = tokio::spawn(sender.send_request(req));
    tokio::time::timeout(DEADLINE, arrived.notified())
        .await
        .expect("the request reaches the upstream");

    let config = warden_config::parse(&format!("{head}{}", route("a")), "test.yaml")
        .expect("valid test config");
    let report = proxy.reload(&config).await.expect("reload");
    assert_eq!(report.removed.len(), 1, "{report:?}");
    // The accept loop lets its listener go as it stops: new connects are refused.
    let mut refused = false;
    for _ in 0..1000 {
        if TcpStream::connect(b).await.is_err() {
            refused = true;
            break;
        }
        tokio::task::yield_now().await;
    }
    assert!(refused, "the removed route still accepts");

    let resp = tokio::time::timeout(DEADLINE, in_flight)
        .await
        .expect("an answer")
        .expect("task")
        .expect("the request in flight is answered");
    assert_eq!(resp.status(), 200);
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    assert_eq!(body, "done");
    // Closed right after that answer, long before `timeouts.client_idle` would close it.
    tokio::time::timeout(Duration::from_secs(1), &mut connection)
        .await
        .expect("the removed route's connection closes after its answer")
        .expect("task")
        .expect("a clean close");

    shutdown.cancel();
    assert!(proxy.drain(DRAIN_TIMEOUT).await, "the drain timed out");
}
