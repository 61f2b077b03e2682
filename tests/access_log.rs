//! The access log: one structured line per request, with a request id that reaches the
//! upstream, and never a query string or a secret.

mod support;

use bytes::Bytes;
use http_body_util::Full;
use serde_json::Value;
use support::upstream::Upstream;
use support::{Warden, eventually, http_client, one_route, send};

fn access_lines(w: &mut Warden) -> Vec<Value> {
    w.logs()
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|l| l["target"] == "warden::access")
        .collect()
}

#[tokio::test]
async fn each_request_logs_one_line_and_its_request_id_reaches_the_upstream() {
    let up = Upstream::recording(200, r#"{"ok":true}"#).await;
    let mut w = Warden::start(&one_route("mcp", &up.url(), ""));
    let addr = w.route("t", "mcp");

    // No x-request-id: one is made, forwarded and logged; a traceparent passes unchanged.
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let req = http::Request::get(format!("http://{addr}/mcp/items?code=s3cret-code&x=1"))
        .header("traceparent", traceparent)
        .header("authorization", "Bearer s3cret-token")
        .body(Full::new(Bytes::new()))
        .expect("request");
    assert_eq!(send(&http_client(), req).await.status, 200);
    // A client's own id is kept.
    let req = http::Request::post(format!("http://{addr}/mcp"))
        .header("x-request-id", "app-req-42")
        .body(Full::new(Bytes::from_static(b"{}")))
        .expect("request");
    assert_eq!(send(&http_client(), req).await.status, 200);

    let seen = up.seen();
    let made = seen[0].headers["x-request-id"]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert_eq!(made.len(), 32, "{made}");
    assert!(made.bytes().all(|b| b.is_ascii_hexdigit()), "{made}");
    assert_eq!(seen[0].headers["traceparent"], traceparent);
    assert_eq!(seen[1].headers["x-request-id"], "app-req-42");

    let mut lines = Vec::new();
    eventually("two access lines", || {
        lines = access_lines(&mut w);
        std::future::ready(lines.len() == 2)
    })
    .await;
    let first = &lines[0];
    for field in [
        "connection",
        "role",
        "method",
        "path",
        "status",
        "verdict",
        "rule",
        "attempts",
        "upstream_ms",
        "total_ms",
        "bytes",
        "request_id",
        "trace_id",
    ] {
        assert!(!first[field].is_null(), "{field} missing: {first}");
    }
    assert_eq!(first["connection"], "t");
    assert_eq!(first["role"], "mcp");
    assert_eq!(first["method"], "GET");
    assert_eq!(first["path"], "/mcp/items", "never the query: {first}");
    assert_eq!(first["status"], 200);
    assert_eq!(first["verdict"], "ok");
    assert_eq!(first["rule"], "http.2xx");
    assert_eq!(first["attempts"], 1);
    assert_eq!(first["bytes"], 11);
    assert_eq!(first["request_id"], made.as_str());
    assert_eq!(first["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(lines[1]["request_id"], "app-req-42");
    assert_eq!(lines[1]["method"], "POST");
    let all = w.logs().join("\n");
    assert!(!all.contains("s3cret"), "a secret reached the log");
}

#[tokio::test]
async fn log_access_false_turns_it_off_and_adds_no_header() {
    let up = Upstream::recording(503, "{}").await;
    let yaml = format!(
        "{}log: {{ access: false }}\n",
        one_route("api", &up.url(), "\n      retry: { max_attempts: 1 }")
    );
    let mut w = Warden::start(&yaml);
    let url = format!("http://{}/x", w.route("t", "api"));
    assert_eq!(support::get(&http_client(), &url).await.status, 503);
    assert!(up.seen()[0].headers.get("x-request-id").is_none());
    // The state change is logged right after the access line would have been: once it is
    // in, an access line would be too.
    eventually("the state change", || {
        let logged = w
            .logs()
            .iter()
            .any(|l| l.contains("connection state changed"));
        std::future::ready(logged)
    })
    .await;
    assert!(access_lines(&mut w).is_empty());
}

#[tokio::test]
async fn short_circuits_are_logged_too() {
    let (up, _) = support::upstream::scripted(vec![], (503, "{}")).await;
    let yaml = one_route(
        "api",
        &up.url(),
        "\n      retry: { max_attempts: 1 }\n      circuit: { consecutive_failures: 1, probe: { interval: 1h, max_interval: 1h } }",
    );
    let mut w = Warden::start(&yaml);
    let url = format!("http://{}/x", w.route("t", "api"));
    assert_eq!(support::get(&http_client(), &url).await.status, 503);
    assert_eq!(support::get(&http_client(), &url).await.status, 503);
    let mut lines = Vec::new();
    eventually("two access lines", || {
        lines = access_lines(&mut w);
        std::future::ready(lines.len() == 2)
    })
    .await;
    assert_eq!(lines[0]["verdict"], "transient");
    assert_eq!(lines[0]["attempts"], 1);
    assert_eq!(lines[1]["verdict"], "short_circuit");
    assert_eq!(lines[1]["attempts"], 0);
}
