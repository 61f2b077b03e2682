//! End to end: a scripted token endpoint and MCP server answer each case of README › Classification and
//! `/metrics` shows the classifier's verdict, while the client gets every byte unchanged.

mod support;

use bytes::Bytes;
use http::Response;
use http_body_util::Full;
use support::upstream::{Upstream, full, scripted};
use support::{Warden, http_client, metric, one_route, scrape, send};

/// These tests are about how one answer is classified: one attempt per request.
fn no_retries(yaml: String) -> String {
    format!("{yaml}defaults:\n  retry: {{ max_attempts: 1 }}\n")
}

async fn reset(admin: std::net::SocketAddr, connection: &str) {
    let req = http::Request::post(format!(
        "http://{admin}/api/v1/connections/{connection}/reset"
    ))
    .body(Full::new(Bytes::new()))
    .expect("request");
    assert_eq!(send(&http_client(), req).await.status, 200);
}

async fn token_request(addr: std::net::SocketAddr, grant: &str) -> support::Answer {
    support::token(
        addr,
        format!("grant_type={grant}&refresh_token=secret-rt&client_id=app"),
    )
    .await
}

#[tokio::test]
async fn token_endpoint_answers_are_classified_per_spec_table() {
    // (status, body, grant, expected verdict, expected code label or "")
    let cases: &[(u16, &str, &str, &str, &str)] = &[
        (
            200,
            r#"{"access_token":"at-1","token_type":"Bearer"}"#,
            "refresh_token",
            "ok",
            "",
        ),
        (
            400,
            r#"{"error":"invalid_grant"}"#,
            "refresh_token",
            "terminal",
            "invalid_grant",
        ),
        (
            400,
            r#"{"error":"INVALID_CLIENT"}"#,
            "refresh_token",
            "terminal",
            "invalid_client",
        ),
        (
            400,
            r#"{"error":"unsupported_grant_type"}"#,
            "refresh_token",
            "terminal",
            "unsupported_grant_type",
        ),
        (401, "", "refresh_token", "terminal", "invalid_client"),
        (
            200,
            r#"{"error":"unauthorized_client"}"#,
            "refresh_token",
            "terminal",
            "unauthorized_client",
        ),
        (
            400,
            r#"{"error":"invalid_scope"}"#,
            "refresh_token",
            "transient",
            "invalid_scope",
        ),
        (400, "<html>bad</html>", "refresh_token", "transient", "400"),
        (
            400,
            r#"{"error":"https://evil.example/x"}"#,
            "refresh_token",
            "transient",
            "other",
        ),
        (
            200,
            r#"{"token_type":"Bearer"}"#,
            "refresh_token",
            "transient",
            "200",
        ),
        (429, "", "refresh_token", "transient", "429"),
        (
            503,
            r#"{"error":"temporarily_unavailable"}"#,
            "refresh_token",
            "transient",
            "temporarily_unavailable",
        ),
        (
            200,
            r#"{"access_token":"at-2"}"#,
            "authorization_code",
            "ok",
            "",
        ),
    ];
    let (idp, _) = scripted(
        cases.iter().map(|c| (c.0, c.1)).collect(),
        (500, "script exhausted"),
    )
    .await;
    let warden = Warden::start(&no_retries(one_route("oauth", &idp.url(), "")));
    let addr = warden.route("t", "oauth");

    for (status, body, grant, _, _) in cases {
        let answer = token_request(addr, grant).await;
        assert_eq!(answer.status, *status);
        assert_eq!(
            answer.body,
            body.as_bytes(),
            "warden must not change the answer"
        );
        // A terminal answer puts the connection in needs_reauth, which would short-circuit
        // the next refresh; this test is about classification, so start clean each time.
        reset(warden.admin, "t").await;
    }

    let m = scrape(warden.admin).await;
    let count = |verdict: &str| cases.iter().filter(|c| c.3 == verdict).count() as f64;
    for verdict in ["ok", "transient", "terminal"] {
        assert_eq!(
            metric(
                &m,
                "warden_requests_total",
                &[("connection", "t"), ("role", "oauth"), ("verdict", verdict)]
            ),
            Some(count(verdict)),
            "requests_total verdict={verdict}\n{m}"
        );
    }
    for (_, _, _, verdict, code) in cases.iter().filter(|c| c.3 != "ok") {
        let want = cases
            .iter()
            .filter(|c| c.3 == *verdict && c.4 == *code)
            .count() as f64;
        assert_eq!(
            metric(
                &m,
                "warden_upstream_errors_total",
                &[
                    ("connection", "t"),
                    ("role", "oauth"),
                    ("verdict", verdict),
                    ("code", code)
                ]
            ),
            Some(want),
            "upstream_errors verdict={verdict} code={code}\n{m}"
        );
    }
    let refreshes = |verdict: &str| {
        cases
            .iter()
            .filter(|c| c.2 == "refresh_token" && c.3 == verdict)
            .count() as f64
    };
    for (result, verdict) in [
        ("success", "ok"),
        ("terminal", "terminal"),
        ("transient", "transient"),
    ] {
        assert_eq!(
            metric(
                &m,
                "warden_token_refresh_total",
                &[("connection", "t"), ("result", result)]
            ),
            Some(refreshes(verdict)),
            "token_refresh result={result}\n{m}"
        );
    }
    assert!(
        !m.contains("secret-rt") && !m.contains("at-1"),
        "secrets leaked into metrics"
    );
    assert!(!m.contains("evil"), "unsanitized code leaked into metrics");
}

#[tokio::test]
async fn unreachable_token_endpoint_is_a_transient_refresh_failure() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let warden = Warden::start(&no_retries(one_route(
        "oauth",
        &format!("http://127.0.0.1:{port}"),
        "",
    )));
    let answer = token_request(warden.route("t", "oauth"), "refresh_token").await;
    assert_eq!(answer.status, 502);
    let m = scrape(warden.admin).await;
    assert_eq!(
        metric(
            &m,
            "warden_upstream_errors_total",
            &[
                ("role", "oauth"),
                ("verdict", "transient"),
                ("code", "connect")
            ]
        ),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        metric(&m, "warden_token_refresh_total", &[("result", "transient")]),
        Some(1.0)
    );
}

#[tokio::test]
async fn mcp_answers_are_classified_per_spec_table() {
    let (up, _) = scripted(
        vec![
            (200, "{}"),
            (401, ""),
            (403, ""),
            (404, ""),
            (404, ""),
            (408, ""),
            (500, ""),
            (511, ""),
            (422, ""),
        ],
        (500, "script exhausted"),
    )
    .await;
    let warden = Warden::start(&no_retries(one_route("mcp", &up.url(), "")));
    let addr = warden.route("t", "mcp");
    let client = http_client();
    for i in 0..9 {
        let mut req = http::Request::post(format!("http://{addr}/mcp"));
        if i == 4 {
            req = req.header("mcp-session-id", "sess-1");
        }
        send(&client, req.body(Full::new(Bytes::new())).expect("request")).await;
    }
    let m = scrape(warden.admin).await;
    let v = |verdict: &str| {
        metric(
            &m,
            "warden_requests_total",
            &[("role", "mcp"), ("verdict", verdict)],
        )
    };
    assert_eq!(v("ok"), Some(1.0), "{m}");
    assert_eq!(v("auth"), Some(2.0), "{m}");
    assert_eq!(v("client_error"), Some(3.0), "{m}");
    assert_eq!(v("transient"), Some(3.0), "{m}");
    let e = |verdict: &str, code: &str| {
        metric(
            &m,
            "warden_upstream_errors_total",
            &[("role", "mcp"), ("verdict", verdict), ("code", code)],
        )
    };
    assert_eq!(e("client_error", "session_expired"), Some(1.0), "{m}");
    assert_eq!(e("client_error", "404"), Some(1.0), "{m}");
    assert_eq!(e("transient", "511"), Some(1.0), "{m}");
    assert_eq!(e("auth", "403"), Some(1.0), "{m}");
}

#[tokio::test]
async fn policy_rules_from_proxy_yaml_override_the_builtin_table() {
    let (idp, _) = scripted(
        vec![
            (400, r#"{"error":"invalid_scope"}"#),
            (400, r#"{"error":"invalid_request"}"#),
        ],
        (500, "script exhausted"),
    )
    .await;
    let yaml = format!(
        "{}policy:
  rules:
    - name: scope-change-is-terminal
      when: {{ role: oauth, status: 400, oauth_error: [invalid_scope] }}
      then: {{ verdict: terminal }}
",
        one_route("oauth", &idp.url(), "")
    );
    let warden = Warden::start(&no_retries(yaml));
    let addr = warden.route("t", "oauth");
    token_request(addr, "refresh_token").await;
    reset(warden.admin, "t").await;
    token_request(addr, "refresh_token").await;
    let m = scrape(warden.admin).await;
    assert_eq!(
        metric(
            &m,
            "warden_upstream_errors_total",
            &[("verdict", "terminal"), ("code", "invalid_scope")]
        ),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        metric(
            &m,
            "warden_upstream_errors_total",
            &[("verdict", "transient"), ("code", "invalid_request")]
        ),
        Some(1.0),
        "{m}"
    );
}

#[tokio::test]
async fn jsonrpc_errors_in_sse_and_json_bodies_are_counted_and_passed_unchanged() {
    const SSE: &str = concat!(
        "event: message\r\ndata: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"ok\":true}}\r\n\r\n",
        ": keep-alive\n\n",
        "event: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":2,\ndata: \"error\":{\"code\":-32601,\"message\":\"no such tool\"}}\n\n",
        "data: {\"jsonrpc\":\"2.0\",\"id\":3,\"error\":{\"code\":-32001,\"message\":\"busy\"}}\n\n",
        "data: {\"jsonrpc\":\"2.0\",\"id\":4,\"error\":{\"code\":7,\"message\":\"app\"}}\n\n",
    );
    const JSON: &str = r#"[{"jsonrpc":"2.0","id":5,"error":{"code":-32700,"message":"parse"}},{"jsonrpc":"2.0","id":6,"result":{}}]"#;
    let up = Upstream::start(|req| async move {
        if req.uri().path() == "/sse" {
            // Written in small pieces so events straddle frames.
            let (tx, rx) = tokio::sync::mpsc::channel(4);
            tokio::spawn(async move {
                for piece in SSE.as_bytes().chunks(7) {
                    let frame = hyper::body::Frame::data(Bytes::copy_from_slice(piece));
                    if tx
                        .send(Ok::<_, std::convert::Infallible>(frame))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            });
            Response::builder()
                .header("content-type", "text/event-stream")
                .body(http_body_util::BodyExt::boxed(
                    http_body_util::StreamBody::new(support::upstream::RxStream(rx)),
                ))
                .expect("response")
        } else {
            Response::builder()
                .header("content-type", "application/json; charset=utf-8")
                .body(full(JSON))
                .expect("response")
        }
    })
    .await;
    let warden = Warden::start(&no_retries(one_route("mcp", &up.url(), "")));
    let addr = warden.route("t", "mcp");
    let client = http_client();

    let sse = support::get(&client, &format!("http://{addr}/sse")).await;
    assert_eq!(
        sse.body,
        SSE.as_bytes(),
        "the event stream must pass byte for byte"
    );
    let json = support::get(&client, &format!("http://{addr}/json")).await;
    assert_eq!(json.body, JSON.as_bytes());

    let m = scrape(warden.admin).await;
    let errors = |code: &str| {
        metric(
            &m,
            "warden_jsonrpc_errors_total",
            &[("connection", "t"), ("code", code)],
        )
    };
    assert_eq!(errors("-32601"), Some(1.0), "{m}");
    assert_eq!(errors("server_error"), Some(1.0), "{m}");
    assert_eq!(errors("other"), Some(1.0), "{m}");
    assert_eq!(errors("-32700"), Some(1.0), "{m}");
    assert_eq!(errors("-32600"), Some(0.0), "{m}");
    // JSON-RPC errors inside a 200 do not change the verdict.
    assert_eq!(
        metric(
            &m,
            "warden_requests_total",
            &[("role", "mcp"), ("verdict", "ok")]
        ),
        Some(2.0)
    );
}

#[tokio::test]
async fn jsonrpc_error_rules_classify_errors_seen_in_the_body() {
    const BODY: &str = r#"{"jsonrpc":"2.0","id":1,"error":{"code":-32001,"message":"overloaded"}}"#;
    let up = Upstream::start(|_req| async {
        Response::builder()
            .header("content-type", "application/json")
            .body(full(BODY))
            .expect("response")
    })
    .await;
    let yaml = format!(
        "{}policy:
  rules:
    - name: tool-overloaded
      when: {{ role: mcp, jsonrpc_error: {{ from: -32099, to: -32000 }}, request_header: {{ mcp-session-id: \"^s-\" }} }}
      then: {{ verdict: transient }}
",
        one_route("mcp", &up.url(), "")
    );
    let warden = Warden::start(&no_retries(yaml));
    let addr = warden.route("t", "mcp");
    let client = http_client();
    // The rule needs the session header: the first request does not match, the second does.
    support::get(&client, &format!("http://{addr}/mcp")).await;
    let req = http::Request::post(format!("http://{addr}/mcp"))
        .header("mcp-session-id", "s-1")
        .body(Full::new(Bytes::new()))
        .expect("request");
    assert_eq!(send(&client, req).await.body, BODY.as_bytes());

    let m = scrape(warden.admin).await;
    assert_eq!(
        metric(
            &m,
            "warden_jsonrpc_errors_total",
            &[("code", "server_error")]
        ),
        Some(2.0),
        "{m}"
    );
    assert_eq!(
        metric(
            &m,
            "warden_upstream_errors_total",
            &[
                ("role", "mcp"),
                ("verdict", "transient"),
                ("code", "server_error")
            ]
        ),
        Some(1.0),
        "{m}"
    );
}
