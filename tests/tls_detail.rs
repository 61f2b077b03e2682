//! A TLS failure says why (README › Connection health `tls_detail`): an unknown CA, a name mismatch, an
//! expired or not-yet-valid certificate and a refused client certificate each reach the
//! 502 body and the connection's health event with their own name, against real rustls
//! servers presenting rcgen certificates.

mod support;

use std::sync::Arc;

use http::Response;
use serde_json::Value;
use support::pki::Ca;
use support::upstream::{Upstream, full};
use support::{Warden, get, http_client};

async fn tls_upstream(tls: Arc<rustls::ServerConfig>) -> Upstream {
    Upstream::start_tls(tls, |_req| async {
        Response::builder()
            .status(200)
            .body(full(r#"{"ok":true}"#))
            .expect("response")
    })
    .await
}

/// Sends one request through warden (trusting `trusted`) to `up`; returns the 502's JSON
/// body and the connection's newest `upstream_failed_transient` event.
async fn fail_through(up: &Upstream, trusted: &Ca, extra_tls: &str) -> (Value, Value) {
    let files = tempfile::tempdir().expect("dir");
    let ca_file = trusted.write(files.path(), "ca.pem");
    let yaml = format!(
        "version: 1
admin: {{ listen: 127.0.0.1:0 }}
connections:
  - name: secure
    mcp:
      listen: 127.0.0.1:0
      upstream: https://127.0.0.1:{port}
      tls: {{ ca_file: {ca}{extra_tls} }}
      retry: {{ max_attempts: 1 }}
",
        port = up.addr.port(),
        ca = ca_file.display(),
    );
    let mut warden = Warden::start(&yaml);
    let client = http_client();
    let answer = get(
        &client,
        &format!("http://{}/", warden.route("secure", "mcp")),
    )
    .await;
    assert_eq!(answer.status, 502, "{}", answer.text());
    assert_eq!(answer.headers["x-warden-error"], "upstream_unreachable");
    let body = answer.json();
    assert_eq!(body["error_kind"], "tls", "{body}");

    let detail = get(
        &client,
        &format!("http://{}/api/v1/connections/secure", warden.admin),
    )
    .await
    .json();
    let event = detail["events"]
        .as_array()
        .expect("events")
        .iter()
        .find(|e| e["type"] == "upstream_failed_transient")
        .unwrap_or_else(|| panic!("no upstream_failed_transient event: {detail}"))
        .clone();
    assert_eq!(event["error_kind"], "tls", "{event}");
    // The access line says it too.
    let deadline = std::time::Instant::now() + support::DEADLINE;
    let access = loop {
        let line = warden
            .logs()
            .iter()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|l| l["target"] == "warden::access");
        if let Some(line) = line {
            break line;
        }
        assert!(std::time::Instant::now() < deadline, "no access line");
        std::thread::sleep(std::time::Duration::from_millis(10));
    };
    assert_eq!(access["error_kind"], "tls", "{access}");
    assert_eq!(access["tls_detail"], body["tls_detail"], "{access}");
    (body, event)
}

fn assert_detail(body: &Value, event: &Value, want: &str) {
    assert_eq!(body["tls_detail"], want, "502 body: {body}");
    assert_eq!(event["tls_detail"], want, "event: {event}");
}

#[tokio::test]
async fn an_unknown_ca_is_named_unknown_ca() {
    let real = Ca::new("the upstream's ca");
    let other = Ca::new("some other ca");
    let up = tls_upstream(real.server_config(&["127.0.0.1"], &[b"h2"], None)).await;
    let (body, event) = fail_through(&up, &other, "").await;
    assert_detail(&body, &event, "unknown_ca");
}

#[tokio::test]
async fn a_certificate_for_another_name_is_named_name_mismatch() {
    let ca = Ca::new("warden test ca");
    let up = tls_upstream(ca.server_config(&["mcp.other.test"], &[b"h2"], None)).await;
    let (body, event) = fail_through(&up, &ca, "").await;
    assert_detail(&body, &event, "name_mismatch");
}

#[tokio::test]
async fn an_expired_certificate_is_named_expired() {
    let ca = Ca::new("warden test ca");
    let leaf = ca.leaf_with(&["127.0.0.1"], |p| {
        p.not_before = rcgen::date_time_ymd(2001, 1, 1);
        p.not_after = rcgen::date_time_ymd(2002, 1, 1);
    });
    let up = tls_upstream(ca.server_config_for(leaf, &[b"h2"], None)).await;
    let (body, event) = fail_through(&up, &ca, "").await;
    assert_detail(&body, &event, "expired");
}

#[tokio::test]
async fn a_certificate_from_the_future_is_named_not_yet_valid() {
    let ca = Ca::new("warden test ca");
    let leaf = ca.leaf_with(&["127.0.0.1"], |p| {
        p.not_before = rcgen::date_time_ymd(2090, 1, 1);
        p.not_after = rcgen::date_time_ymd(2091, 1, 1);
    });
    let up = tls_upstream(ca.server_config_for(leaf, &[b"h2"], None)).await;
    let (body, event) = fail_through(&up, &ca, "").await;
    assert_detail(&body, &event, "not_yet_valid");
}

/// Over HTTP/1.1: a TLS 1.3 server refuses the missing client certificate after the
/// handshake, with an alert warden reads as the answer's first bytes.
#[tokio::test]
async fn a_refused_client_certificate_is_named_client_cert_rejected() {
    let server_ca = Ca::new("server ca");
    let client_ca = Ca::new("client ca");
    let up =
        tls_upstream(server_ca.server_config(&["127.0.0.1"], &[b"http/1.1"], Some(&client_ca)))
            .await;
    let (body, event) = fail_through(&up, &server_ca, "").await;
    assert_detail(&body, &event, "client_cert_rejected");
}

/// The circuit a bad certificate opens says why, and so does each failed recovery probe.
#[tokio::test]
async fn the_circuit_and_its_probes_name_the_cause() {
    let real = Ca::new("the upstream's ca");
    let other = Ca::new("some other ca");
    let up = tls_upstream(real.server_config(&["127.0.0.1"], &[b"h2"], None)).await;
    let files = tempfile::tempdir().expect("dir");
    let ca_file = other.write(files.path(), "ca.pem");
    let warden = Warden::start(&format!(
        "version: 1
admin: {{ listen: 127.0.0.1:0 }}
connections:
  - name: secure
    mcp:
      listen: 127.0.0.1:0
      upstream: https://127.0.0.1:{port}
      tls: {{ ca_file: {ca} }}
      retry: {{ max_attempts: 1 }}
      circuit: {{ consecutive_failures: 1, probe: {{ interval: 100ms, max_interval: 200ms }} }}
",
        port = up.addr.port(),
        ca = ca_file.display(),
    ));
    let client = http_client();
    let answer = get(
        &client,
        &format!("http://{}/", warden.route("secure", "mcp")),
    )
    .await;
    assert_eq!(answer.status, 502);
    let url = format!("http://{}/api/v1/connections/secure", warden.admin);
    support::eventually("a probe_failed event", || {
        let client = client.clone();
        let url = url.clone();
        async move {
            let detail = get(&client, &url).await.json();
            detail["events"]
                .as_array()
                .is_some_and(|e| e.iter().any(|e| e["type"] == "probe_failed"))
        }
    })
    .await;
    let detail = get(&client, &url).await.json();
    assert_eq!(detail["state"], "circuit_open", "{detail}");
    for kind in ["circuit_opened", "probe_failed"] {
        let event = detail["events"]
            .as_array()
            .expect("events")
            .iter()
            .find(|e| e["type"] == kind)
            .unwrap_or_else(|| panic!("no {kind}: {detail}"));
        assert_eq!(event["tls_detail"], "unknown_ca", "{event}");
    }
}

/// Only a TLS failure carries the field: other faults keep the documented shape.
#[tokio::test]
async fn other_faults_carry_no_tls_detail() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    drop(listener);
    let warden = Warden::start(&support::one_route(
        "mcp",
        &format!("http://127.0.0.1:{port}"),
        "\n      retry: { max_attempts: 1 }",
    ));
    let client = http_client();
    let answer = get(&client, &format!("http://{}/", warden.route("t", "mcp"))).await;
    assert_eq!(answer.status, 502);
    let body = answer.json();
    assert_eq!(body["error_kind"], "connect", "{body}");
    assert!(body.get("tls_detail").is_none(), "{body}");
    let detail = get(
        &client,
        &format!("http://{}/api/v1/connections/t", warden.admin),
    )
    .await
    .json();
    for event in detail["events"].as_array().expect("events") {
        assert!(event.get("tls_detail").is_none(), "{event}");
    }
}
