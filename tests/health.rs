//! Connection health end to end: needs_reauth and its short-circuits, the circuit breaker and
//! its background recovery, the admin health API and reset.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use bytes::Bytes;
use http::Response;
use http_body_util::Full;
use serde_json::Value;
use support::upstream::{Upstream, full};
use support::{Warden, eventually, get, http_client, metric, scrape, send};

fn config(mcp: &str, idp: &str, extra: &str) -> String {
    format!(
        "version: 1
admin: {{ listen: 127.0.0.1:0 }}
defaults: {{ retry: {{ max_attempts: 1 }} }}
connections:
  - name: crm
    mcp:
      listen: 127.0.0.1:0
      upstream: {mcp}
      circuit: {{ consecutive_failures: 3, probe: {{ path: /healthz, interval: 100ms, max_interval: 400ms }} }}
    oauth:
      listen: 127.0.0.1:0
      upstream: {idp}
      token_path: /token
{extra}"
    )
}

async fn token(addr: std::net::SocketAddr, grant: &str) -> support::Answer {
    support::token(
        addr,
        format!("grant_type={grant}&refresh_token=rt-secret&code=c-secret"),
    )
    .await
}

async fn api(admin: std::net::SocketAddr, path: &str) -> Value {
    get(
        &http_client(),
        &format!("http://{admin}/api/v1/connections/{path}"),
    )
    .await
    .json()
}

/// A scripted IdP that counts the token requests that reach it.
async fn idp(script: Vec<(u16, &'static str)>) -> (Upstream, Arc<AtomicUsize>) {
    support::upstream::scripted(script, (500, "{}")).await
}

#[tokio::test]
async fn a_revoked_client_short_circuits_until_a_new_login() {
    let (idp, idp_hits) = idp(vec![
        (200, r#"{"access_token":"at","refresh_token":"rt2"}"#),
        (
            400,
            r#"{"error":"invalid_client","error_description":"secret rotated"}"#,
        ),
        (200, r#"{"access_token":"at-new"}"#),
    ])
    .await;
    let mcp = Upstream::recording(200, "{}").await;
    let warden = Warden::start(&config(&mcp.url(), &idp.url(), ""));
    let (mcp_addr, oauth) = (warden.route("crm", "mcp"), warden.route("crm", "oauth"));

    assert_eq!(token(oauth, "refresh_token").await.status, 200);
    let row = &api(warden.admin, "health").await["connections"][0];
    assert_eq!(row["state"], "healthy");
    assert_eq!(row["token_acquired"], true);
    assert_eq!(row["has_oauth"], true);

    assert_eq!(token(oauth, "refresh_token").await.status, 400);
    let row = &api(warden.admin, "health").await["connections"][0];
    assert_eq!(row["name"], "crm");
    assert_eq!(row["state"], "needs_reauth");
    assert_eq!(row["needs_reauth"], true);
    assert_eq!(row["token_acquired"], false);
    assert_eq!(row["idp_error_code"], "invalid_client");
    assert_eq!(row["last_event"]["type"], "refresh_failed_revoked");

    // MCP requests: 401 at once, the MCP server untouched.
    let answer = get(&http_client(), &format!("http://{mcp_addr}/mcp")).await;
    assert_eq!(answer.status, 401);
    assert_eq!(
        answer.headers["www-authenticate"],
        r#"Bearer error="invalid_token", error_description="connection needs re-authorization""#
    );
    assert_eq!(answer.headers["x-warden-short-circuit"], "needs_reauth");
    assert_eq!(
        answer.body,
        r#"{"error":"needs_reauth","connection":"crm","idp_error_code":"invalid_client"}"#
    );
    assert!(mcp.seen().is_empty());

    // Refresh grants: 400 with the stored code, not forwarded.
    let answer = token(oauth, "refresh_token").await;
    assert_eq!(answer.status, 400);
    assert_eq!(answer.headers["x-warden-short-circuit"], "needs_reauth");
    assert_eq!(
        answer.body,
        r#"{"error":"invalid_client","error_description":"connection needs re-authorization"}"#
    );
    assert_eq!(idp_hits.load(Ordering::SeqCst), 2);

    let m = scrape(warden.admin).await;
    assert_eq!(
        metric(
            &m,
            "warden_connection_needs_reauth",
            &[("connection", "crm")]
        ),
        Some(1.0)
    );
    assert_eq!(
        metric(
            &m,
            "warden_connection_state",
            &[("connection", "crm"), ("state", "needs_reauth")]
        ),
        Some(1.0)
    );
    assert_eq!(
        metric(
            &m,
            "warden_short_circuits_total",
            &[("role", "mcp"), ("reason", "needs_reauth")]
        ),
        Some(1.0)
    );
    assert_eq!(
        metric(
            &m,
            "warden_short_circuits_total",
            &[("role", "oauth"), ("reason", "needs_reauth")]
        ),
        Some(1.0)
    );
    assert_eq!(
        metric(
            &m,
            "warden_requests_total",
            &[("role", "mcp"), ("verdict", "short_circuit")]
        ),
        Some(1.0)
    );

    // A new login passes through and clears the state.
    assert_eq!(token(oauth, "authorization_code").await.status, 200);
    assert_eq!(idp_hits.load(Ordering::SeqCst), 3);
    let detail = api(warden.admin, "crm").await;
    assert_eq!(detail["state"], "healthy");
    assert_eq!(detail["idp_error_code"], Value::Null);
    let types: Vec<&str> = detail["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| e["type"].as_str().expect("type"))
        .collect();
    assert_eq!(
        types,
        [
            "connect_completed",
            "refresh_failed_revoked",
            "refresh_succeeded"
        ]
    );
    for field in [
        "at",
        "type",
        "role",
        "status",
        "idp_error_code",
        "verdict",
        "error_kind",
    ] {
        assert!(
            detail["events"][0].get(field).is_some(),
            "event lacks {field}: {detail}"
        );
    }
    assert_eq!(
        get(&http_client(), &format!("http://{mcp_addr}/mcp"))
            .await
            .status,
        200
    );
    let m = scrape(warden.admin).await;
    assert_eq!(
        metric(
            &m,
            "warden_connection_needs_reauth",
            &[("connection", "crm")]
        ),
        Some(0.0)
    );
    let api_text = get(
        &http_client(),
        &format!("http://{}/api/v1/connections/crm", warden.admin),
    )
    .await
    .text();
    for secret in ["rt-secret", "c-secret", "at-new", "rt2", "secret rotated"] {
        assert!(!api_text.contains(secret), "{secret} leaked into the API");
        assert!(!m.contains(secret), "{secret} leaked into metrics");
    }
}

#[tokio::test]
async fn a_failing_upstream_opens_the_circuit_and_the_prober_closes_it() {
    let down = Arc::new(AtomicBool::new(true));
    let (mcp, requests) = support::upstream::switchable(Arc::clone(&down)).await;
    let (idp, _) = idp(vec![]).await;
    let warden = Warden::start(&config(&mcp.url(), &idp.url(), ""));
    let addr = warden.route("crm", "mcp");
    let client = http_client();

    for _ in 0..3 {
        let answer = get(&client, &format!("http://{addr}/mcp")).await;
        assert_eq!(answer.status, 503);
        assert!(answer.headers.get("x-warden-short-circuit").is_none());
    }
    let answer = get(&client, &format!("http://{addr}/mcp")).await;
    assert_eq!(answer.status, 503);
    assert_eq!(answer.headers["x-warden-short-circuit"], "circuit_open");
    let retry_after: u64 = answer.headers["retry-after"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("whole seconds");
    assert!(retry_after >= 1);
    assert_eq!(
        answer.body,
        r#"{"error":"upstream_unavailable","connection":"crm","role":"mcp"}"#
    );
    assert_eq!(
        requests.load(Ordering::SeqCst),
        3,
        "the open circuit kept the request away"
    );
    let row = &api(warden.admin, "health").await["connections"][0];
    assert_eq!(row["state"], "circuit_open");
    assert_eq!(row["circuit"]["mcp"], "open");
    assert_eq!(row["circuit"]["oauth"], "closed");

    down.store(false, Ordering::SeqCst);
    eventually("the prober closes the circuit", || async {
        api(warden.admin, "health").await["connections"][0]["circuit"]["mcp"] == "closed"
    })
    .await;
    // No app traffic since the outage: the close alone makes the idle connection healthy.
    let row = &api(warden.admin, "health").await["connections"][0];
    assert_eq!(row["state"], "healthy", "{row}");
    assert_eq!(row["reason"], serde_json::Value::Null, "{row}");
    assert_eq!(row["routes"]["mcp"]["failing"], false, "{row}");
    assert_eq!(
        get(&client, &format!("http://{addr}/mcp")).await.status,
        200
    );
    let detail = api(warden.admin, "crm").await;
    assert_eq!(detail["state"], "healthy");
    let types: Vec<&str> = detail["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| e["type"].as_str().expect("type"))
        .collect();
    assert!(types.contains(&"circuit_opened"), "{types:?}");
    assert!(types.contains(&"circuit_closed"), "{types:?}");
    assert_eq!(
        types.last(),
        Some(&"upstream_failed_transient"),
        "{types:?}"
    );
    assert_eq!(
        types.first(),
        Some(&"circuit_closed"),
        "the close ended the run: the next success is no recovery event {types:?}"
    );
    let m = scrape(warden.admin).await;
    assert!(
        metric(
            &m,
            "warden_probes_total",
            &[("role", "mcp"), ("result", "success")]
        ) >= Some(1.0)
    );
    assert_eq!(
        metric(
            &m,
            "warden_short_circuits_total",
            &[("role", "mcp"), ("reason", "circuit_open")]
        ),
        Some(1.0)
    );
}

#[tokio::test]
async fn reset_needs_the_bearer_token_and_clears_the_state() {
    let (idp, _) = idp(vec![(401, "")]).await;
    let mcp = Upstream::recording(200, "{}").await;
    let files = tempfile::tempdir().expect("dir");
    let token_file = files.path().join("admin-token");
    std::fs::write(&token_file, "s3cret-admin\n").expect("write token");
    let warden = Warden::start(&config(&mcp.url(), &idp.url(), "").replace(
        "admin: { listen: 127.0.0.1:0 }",
        &format!(
            "admin: {{ listen: 127.0.0.1:0, token_file: {} }}",
            token_file.display()
        ),
    ));
    token(warden.route("crm", "oauth"), "refresh_token").await;
    assert_eq!(
        api(warden.admin, "health").await["connections"][0]["idp_error_code"],
        "invalid_client"
    );

    let client = http_client();
    let post = |path: &str, auth: Option<&str>| {
        let mut req =
            http::Request::post(format!("http://{}/api/v1/connections/{path}", warden.admin));
        if let Some(auth) = auth {
            req = req.header("authorization", auth);
        }
        send(&client, req.body(Full::new(Bytes::new())).expect("request"))
    };
    assert_eq!(post("crm/reset", None).await.status, 401);
    assert_eq!(post("crm/reset", Some("Bearer wrong")).await.status, 401);
    // Checked before the name: no token, no learning which names exist.
    assert_eq!(post("nope/reset", None).await.status, 401);
    assert_eq!(
        post("nope/reset", Some("Bearer s3cret-admin")).await.status,
        404
    );
    let answer = post("crm/reset", Some("Bearer s3cret-admin")).await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.json()["state"], "healthy");

    let detail = api(warden.admin, "crm").await;
    assert_eq!(detail["needs_reauth"], false);
    assert_eq!(detail["idp_error_code"], Value::Null);
    assert_eq!(detail["events"][0]["type"], "reset_admin");
    assert_eq!(
        get(&client, &format!("http://{}/x", warden.route("crm", "mcp")))
            .await
            .status,
        200
    );
    assert_eq!(
        get(
            &client,
            &format!("http://{}/api/v1/connections/nope", warden.admin)
        )
        .await
        .status,
        404
    );
}

#[tokio::test]
async fn a_bad_certificate_opens_the_circuit_and_never_asks_for_reauth() {
    let real = support::pki::Ca::new("real");
    let tls_up = Upstream::start_tls(
        real.server_config(&["127.0.0.1"], &[b"h2"], None),
        |_req| async { Response::new(full("{}")) },
    )
    .await;
    let (idp, _) = idp(vec![]).await;
    let upstream = format!("https://127.0.0.1:{}", tls_up.addr.port());
    let warden = Warden::start(&config(&upstream, &idp.url(), ""));
    let addr = warden.route("crm", "mcp");
    for _ in 0..3 {
        assert_eq!(
            get(&http_client(), &format!("http://{addr}/")).await.status,
            502
        );
    }
    let detail = api(warden.admin, "crm").await;
    assert_eq!(detail["state"], "circuit_open");
    assert_eq!(detail["needs_reauth"], false);
    let opened = detail["events"]
        .as_array()
        .expect("events")
        .iter()
        .find(|e| e["type"] == "circuit_opened")
        .expect("circuit_opened event");
    assert_eq!(opened["error_kind"], "tls");
}

#[tokio::test]
async fn sigterm_with_probes_pending_exits_zero() {
    let up = Upstream::start(|_req| async {
        Response::builder()
            .status(503)
            .body(full(""))
            .expect("response")
    })
    .await;
    let mut warden = Warden::start(&format!(
        "version: 1
admin: {{ listen: 127.0.0.1:0 }}
shutdown: {{ drain_timeout: 5s }}
connections:
  - name: down
    mcp:
      listen: 127.0.0.1:0
      upstream: {}
      circuit: {{ consecutive_failures: 1, probe: {{ interval: 1h, max_interval: 1h }} }}
",
        up.url()
    ));
    let addr = warden.route("down", "mcp");
    assert_eq!(
        get(&http_client(), &format!("http://{addr}/")).await.status,
        503
    );
    assert_eq!(
        api(warden.admin, "health").await["connections"][0]["state"],
        "circuit_open"
    );
    // A probe is now scheduled an hour out; shutdown must not wait for it.
    let signalled = std::time::Instant::now();
    warden.signal("TERM");
    let status = warden.wait_exit(support::DEADLINE);
    assert_eq!(status.code(), Some(0));
    assert!(signalled.elapsed() < std::time::Duration::from_secs(5));
}
