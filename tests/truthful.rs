//! The health word under mixed traffic, and verdicts decided by the whole answer: each
//! test drives a real warden over loopback against a scripted upstream.

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use http::Response;
use http_body_util::{BodyExt as _, Full};
use serde_json::{Value, json};
use support::idp::Held;
use support::upstream::{Raw, Upstream, full, scripted};
use support::{DEADLINE, Warden, eventually, get, http_client, metric, scrape, send};

async fn api(admin: SocketAddr, path: &str) -> Value {
    get(
        &http_client(),
        &format!("http://{admin}/api/v1/connections/{path}"),
    )
    .await
    .json()
}

async fn row(admin: SocketAddr) -> Value {
    api(admin, "health").await["connections"][0].clone()
}

async fn token(addr: SocketAddr, grant: &str) -> support::Answer {
    support::token(
        addr,
        format!("grant_type={grant}&refresh_token=rt-secret&client_id=app"),
    )
    .await
}

async fn mcp_post(addr: SocketAddr, body: &str) -> support::Answer {
    let req = http::Request::post(format!("http://{addr}/mcp"))
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(Full::new(Bytes::from(body.to_owned())))
        .expect("request");
    send(&http_client(), req).await
}

/// One connection `crm` with an mcp and an oauth route; one attempt per request.
fn crm(mcp: &str, oauth: &str, circuit: u32, rules: &str) -> String {
    format!(
        "version: 1
admin: {{ listen: 127.0.0.1:0 }}
defaults:
  retry: {{ max_attempts: 1 }}
  circuit: {{ consecutive_failures: {circuit} }}
connections:
  - name: crm
    mcp: {{ listen: 127.0.0.1:0, upstream: {mcp} }}
    oauth: {{ listen: 127.0.0.1:0, upstream: {oauth}, token_path: /token }}
{rules}"
    )
}

fn requests(m: &str, verdict: &str) -> f64 {
    metric(
        m,
        "warden_requests_total",
        &[("connection", "crm"), ("role", "mcp"), ("verdict", verdict)],
    )
    .unwrap_or(0.0)
}

#[tokio::test]
async fn a_token_success_during_an_mcp_outage_keeps_the_connection_degraded() {
    let (mcp, _) = scripted(vec![], (502, "{}")).await;
    let (idp, _) = scripted(vec![], (200, r#"{"access_token":"at"}"#)).await;
    let mut w = Warden::start(&crm(&mcp.url(), &idp.url(), 100, ""));
    let mcp_addr = w.route("crm", "mcp");
    let oauth = w.route("crm", "oauth");
    let mcp_url = format!("http://{mcp_addr}/mcp");

    for round in 0..3 {
        assert_eq!(get(&http_client(), &mcp_url).await.status, 502);
        assert_eq!(token(oauth, "refresh_token").await.status, 200);
        let r = row(w.admin).await;
        assert_eq!(r["state"], "degraded", "round {round}: {r}");
        assert_eq!(r["last_event"]["type"], "refresh_succeeded", "{r}");
        assert_eq!(r["reason"]["type"], "upstream_failed_transient", "{r}");
        assert_eq!(r["reason"]["role"], "mcp", "{r}");
        assert_eq!(r["reason"]["status"], 502, "{r}");
        assert_eq!(r["routes"]["mcp"]["failing"], true, "{r}");
        assert_eq!(r["routes"]["oauth"]["failing"], false, "{r}");
    }
    // One change into degraded, none back and forth.
    let changes: Vec<String> = w
        .logs()
        .iter()
        .filter(|l| l.contains("connection state changed"))
        .cloned()
        .collect();
    assert_eq!(changes.len(), 1, "{changes:#?}");
    let line: Value = serde_json::from_str(&changes[0]).expect("json log");
    assert_eq!(line["to"], "degraded", "{line}");
    assert_eq!(line["role"], "mcp", "{line}");
    assert_eq!(line["status"], 502, "{line}");
    assert_eq!(line["cause"], "upstream_failed_transient", "{line}");
}

/// GETs `url` and reads the body until it ends or breaks: whether it broke, and what came.
async fn get_through(url: &str) -> (http::StatusCode, bool, Bytes) {
    tokio::time::timeout(DEADLINE, async {
        let resp = http_client()
            .request(
                http::Request::get(url)
                    .body(Full::new(Bytes::new()))
                    .expect("request"),
            )
            .await
            .expect("head");
        let status = resp.status();
        let mut body = resp.into_body();
        let mut got = Vec::new();
        loop {
            match body.frame().await {
                None => return (status, false, Bytes::from(got)),
                Some(Err(_)) => return (status, true, Bytes::from(got)),
                Some(Ok(frame)) => {
                    if let Some(d) = frame.data_ref() {
                        got.extend_from_slice(d);
                    }
                }
            }
        }
    })
    .await
    .expect("within the deadline")
}

#[tokio::test]
async fn a_body_that_breaks_off_after_the_head_is_transient_and_degrades() {
    let cases: [(&str, &'static [u8]); 2] = [
        (
            "content-length cut short",
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"partial\":",
        ),
        (
            "chunked body without its last chunk",
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
        ),
    ];
    for (name, answer) in cases {
        let up = Raw::start(answer).await;
        let (idp, _) = scripted(vec![], (200, "{}")).await;
        let w = Warden::start(&crm(&up.url(), &idp.url(), 100, ""));
        let url = format!("http://{}/mcp", w.route("crm", "mcp"));
        let (status, broke, _) = get_through(&url).await;
        assert_eq!(status, 200, "{name}");
        assert!(broke, "{name}: the client sees the truncation");
        let admin = w.admin;
        eventually("the request to be counted", || async move {
            requests(&scrape(admin).await, "transient") == 1.0
        })
        .await;
        let m = scrape(admin).await;
        assert_eq!(requests(&m, "ok"), 0.0, "{name}: never counted ok");
        let r = row(admin).await;
        assert_eq!(r["state"], "degraded", "{name}: {r}");
        assert_eq!(r["reason"]["error_kind"], "reset", "{name}: {r}");
        assert_eq!(r["reason"]["status"], 200, "{name}: {r}");
        assert_eq!(
            metric(
                &m,
                "warden_upstream_errors_total",
                &[
                    ("connection", "crm"),
                    ("role", "mcp"),
                    ("verdict", "transient"),
                    ("code", "reset")
                ]
            ),
            Some(1.0),
            "{name}"
        );
    }
}

#[tokio::test]
async fn a_terminal_jsonrpc_error_rule_in_an_sse_answer_sets_needs_reauth() {
    let sse = "event: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":1,\"error\":{\"code\":-32001,\"message\":\"upstream credential expired\"}}\n\n";
    let mcp = support::mcp::answering("text/event-stream", sse).await;
    let (idp, _) = scripted(vec![], (200, "{}")).await;
    let rules = "policy:
  rules:
    - name: upstream-credential-expired
      when: { role: mcp, jsonrpc_error: -32001 }
      then: { verdict: terminal }
";
    let w = Warden::start(&crm(&mcp.url(), &idp.url(), 100, rules));
    let addr = w.route("crm", "mcp");
    let answer = mcp_post(
        addr,
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x"}}"#,
    )
    .await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.text(), sse, "the stream passes unchanged");
    let admin = w.admin;
    eventually("needs_reauth", || async move {
        row(admin).await["state"] == "needs_reauth"
    })
    .await;
    let r = row(admin).await;
    assert_eq!(r["reason"]["type"], "upstream_failed_terminal", "{r}");
    assert_eq!(r["reason"]["role"], "mcp", "{r}");
    let m = scrape(admin).await;
    assert_eq!(requests(&m, "terminal"), 1.0);
    assert_eq!(requests(&m, "ok"), 0.0);
    assert_eq!(
        metric(
            &m,
            "warden_mcp_tool_calls_total",
            &[("connection", "crm"), ("result", "jsonrpc_error")]
        ),
        Some(1.0)
    );
    // And the connection now short-circuits.
    let refused = mcp_post(addr, r#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#).await;
    assert_eq!(refused.status, 401);
    assert_eq!(refused.headers["x-warden-short-circuit"], "needs_reauth");
}

#[tokio::test]
async fn tool_results_are_counted_by_outcome_in_json_and_sse() {
    let calls = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&calls);
    // Answers echo the request's id; tool `broken` fails, `unknown` is no tool at all.
    let mcp = Upstream::start(move |req| {
        seen.fetch_add(1, Ordering::SeqCst);
        async move {
            let sse = req.headers().get("x-test-sse").is_some();
            let body = req.into_body().collect().await.expect("body").to_bytes();
            let msg: Value = serde_json::from_slice(&body).expect("json-rpc");
            let id = msg["id"].clone();
            let answer = match msg["params"]["name"].as_str() {
                Some("broken") => json!({"jsonrpc":"2.0","id":id,"result":{"content":[{"type":"text","text":"boom"}],"isError":true}}),
                Some("unknown") => json!({"jsonrpc":"2.0","id":id,"error":{"code":-32602,"message":"Unknown tool"}}),
                _ => json!({"jsonrpc":"2.0","id":id,"result":{"content":[{"type":"text","text":"fine"}]}}),
            };
            let (content_type, text) = if sse {
                ("text/event-stream", format!("event: message\ndata: {answer}\n\n"))
            } else {
                ("application/json", answer.to_string())
            };
            Response::builder()
                .header("content-type", content_type)
                .body(full(text))
                .expect("response")
        }
    })
    .await;
    let (idp, _) = scripted(vec![], (200, "{}")).await;
    let w = Warden::start(&crm(&mcp.url(), &idp.url(), 100, ""));
    let addr = w.route("crm", "mcp");
    let call = |id: u32, name: &str, sse: bool| {
        let body = format!(
            r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"{name}","arguments":{{}}}}}}"#
        );
        let mut req = http::Request::post(format!("http://{addr}/mcp"))
            .header("content-type", "application/json");
        if sse {
            req = req.header("x-test-sse", "1");
        }
        let req = req.body(Full::new(Bytes::from(body))).expect("request");
        async move { send(&http_client(), req).await }
    };
    for sse in [false, true] {
        let mut id = if sse { 10 } else { 0 };
        for name in ["fine", "broken", "broken", "unknown"] {
            id += 1;
            assert_eq!(call(id, name, sse).await.status, 200);
        }
    }
    // A result to something that is not a tools/call is no tool call.
    let list = mcp_post(addr, r#"{"jsonrpc":"2.0","id":99,"method":"tools/list"}"#).await;
    assert_eq!(list.status, 200);
    assert_eq!(calls.load(Ordering::SeqCst), 9);
    let admin = w.admin;
    let tool = |m: &str, result: &str| {
        metric(
            m,
            "warden_mcp_tool_calls_total",
            &[("connection", "crm"), ("result", result)],
        )
    };
    eventually("every answer counted", || async move {
        requests(&scrape(admin).await, "ok") == 9.0
    })
    .await;
    let m = scrape(admin).await;
    assert_eq!(tool(&m, "ok"), Some(2.0), "{m}");
    assert_eq!(tool(&m, "tool_error"), Some(4.0), "{m}");
    assert_eq!(tool(&m, "jsonrpc_error"), Some(2.0), "{m}");
    // Without a rule, counting never changes the verdict or the health.
    assert_eq!(row(admin).await["state"], "healthy");
}

#[tokio::test]
async fn an_mcp_tool_error_rule_turns_a_failing_tool_into_a_failure_health_sees() {
    let body = r#"{"jsonrpc":"2.0","id":1,"result":{"content":[],"isError":true}}"#;
    let mcp = support::mcp::answering("application/json", body).await;
    let (idp, _) = scripted(vec![], (200, "{}")).await;
    let rules = "policy:
  rules:
    - name: failing-tools-are-an-outage
      when: { role: mcp, mcp_tool_error: true }
      then: { verdict: transient }
";
    let w = Warden::start(&crm(&mcp.url(), &idp.url(), 2, rules));
    let addr = w.route("crm", "mcp");
    let call = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x"}}"#;
    assert_eq!(mcp_post(addr, call).await.text(), body);
    let admin = w.admin;
    eventually("degraded", || async move {
        row(admin).await["state"] == "degraded"
    })
    .await;
    assert_eq!(mcp_post(addr, call).await.status, 200);
    eventually("the second failing tool opens the circuit", || async move {
        row(admin).await["state"] == "circuit_open"
    })
    .await;
    let m = scrape(admin).await;
    assert_eq!(requests(&m, "transient"), 2.0);
    assert_eq!(
        metric(
            &m,
            "warden_upstream_errors_total",
            &[
                ("connection", "crm"),
                ("role", "mcp"),
                ("verdict", "transient"),
                ("code", "tool_error")
            ]
        ),
        Some(2.0)
    );
}

/// Ten refresh grants with the same refresh token: the first goes upstream, the other
/// nine join it (seen in warden's debug log) before the IdP answers.
async fn ten_refreshes(status: u16, body: Bytes) -> (Vec<support::Answer>, usize) {
    let idp = Held::start(status, body).await;
    let (mcp, _) = scripted(vec![], (200, "{}")).await;
    let mut w = Warden::start_with_env(
        &crm(&mcp.url(), &idp.upstream.url(), 100, ""),
        &[("RUST_LOG", "info,warden_proxy=debug")],
    );
    let oauth = w.route("crm", "oauth");
    let leader = tokio::spawn(async move { token(oauth, "refresh_token").await });
    tokio::time::timeout(DEADLINE, idp.arrived.notified())
        .await
        .expect("the leader's grant reaches the IdP");
    let followers: Vec<_> = (0..9)
        .map(|_| tokio::spawn(async move { token(oauth, "refresh_token").await }))
        .collect();
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let joined = w
            .logs()
            .iter()
            .filter(|l| l.contains("refresh grant joins the exchange in flight"))
            .count();
        if joined == 9 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {joined} of 9 joined"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    idp.release.notify_one();
    let mut answers = vec![leader.await.expect("leader")];
    for f in followers {
        answers.push(f.await.expect("follower"));
    }
    (answers, idp.hits())
}

#[tokio::test]
async fn a_two_megabyte_refresh_answer_reaches_its_requester_byte_exact_while_nine_share_the_exchange()
 {
    let mut big = Vec::with_capacity(2 * 1024 * 1024 + 64);
    big.extend_from_slice(br#"{"error":"invalid_request","error_description":""#);
    big.resize(2 * 1024 * 1024, b'x');
    big.extend_from_slice(br#""}"#);
    let big = Bytes::from(big);
    let (answers, hits) = ten_refreshes(400, big.clone()).await;
    assert_eq!(
        hits, 1,
        "one upstream request: the refresh token is never replayed"
    );
    assert_eq!(answers[0].status, 400);
    assert!(
        answers[0].body == big,
        "the leader gets the IdP's answer byte-exact"
    );
    for a in &answers[1..] {
        assert_eq!(a.status, 502);
        assert_eq!(a.headers["x-warden-error"], "coalesced_answer_too_large");
    }
}

#[tokio::test]
async fn a_refresh_answer_under_the_share_limit_reaches_all_ten_byte_exact() {
    // 200 KB of nested `[`: far past what warden parses, well within what it shares.
    let nested = Bytes::from(vec![b'['; 200 * 1024]);
    let (answers, hits) = ten_refreshes(400, nested.clone()).await;
    assert_eq!(hits, 1);
    for a in &answers {
        assert_eq!(a.status, 400);
        assert!(a.body == nested, "byte-exact");
    }
}

#[tokio::test]
async fn token_events_name_their_grant_type() {
    let (mcp, _) = scripted(vec![], (200, "{}")).await;
    let (idp, _) = scripted(vec![], (401, r#"{"error":"invalid_client"}"#)).await;
    let w = Warden::start(&crm(&mcp.url(), &idp.url(), 100, ""));
    assert_eq!(
        token(w.route("crm", "oauth"), "client_credentials")
            .await
            .status,
        401
    );
    let r = row(w.admin).await;
    assert_eq!(r["state"], "needs_reauth");
    assert_eq!(r["reason"]["type"], "refresh_failed_revoked");
    assert_eq!(r["reason"]["grant_type"], "client_credentials", "{r}");
    let m = scrape(w.admin).await;
    assert_eq!(
        metric(
            &m,
            "warden_token_refresh_total",
            &[("connection", "crm"), ("result", "terminal")]
        )
        .unwrap_or(0.0),
        0.0,
        "a client_credentials grant is no refresh"
    );
}

#[tokio::test]
async fn an_http_1_0_upstream_leaves_the_client_on_http_1_1_keep_alive() {
    let up = Raw::start(b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nhello from 1.0").await;
    let w = Warden::start(&support::one_route("api", &up.url(), ""));
    let addr = w.route("t", "api");
    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .expect("handshake");
    let driver = tokio::spawn(conn);
    for n in 0..3 {
        let req = http::Request::get(format!("/r{n}"))
            .header("host", addr.to_string())
            .body(Full::new(Bytes::new()))
            .expect("request");
        let resp = tokio::time::timeout(DEADLINE, sender.send_request(req))
            .await
            .expect("in time")
            .unwrap_or_else(|e| panic!("request {n} on the same connection: {e}"));
        assert_eq!(resp.version(), http::Version::HTTP_11, "request {n}");
        assert!(
            resp.headers()
                .get("connection")
                .is_none_or(|v| v != "close"),
            "request {n}"
        );
        let body = resp.into_body().collect().await.expect("body").to_bytes();
        assert_eq!(body, "hello from 1.0");
    }
    driver.abort();
}
