//! Hot reload: SIGHUP and file changes swap config and rules while serving; an invalid file
//! keeps the running config; health survives.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use http::Response;
use support::idp::Held;
use support::upstream::{Upstream, full};
use support::{DEADLINE, Warden, eventually, get, http_client, metric, scrape};
use tokio::sync::{Notify, Semaphore};

fn reloads(m: &str, result: &str) -> f64 {
    metric(m, "warden_config_reloads_total", &[("result", result)]).unwrap_or(0.0)
}

async fn wait_for_reload(warden: &Warden, result: &str, count: f64) {
    let admin = warden.admin;
    eventually(
        &format!("reload counter {result} = {count}"),
        || async move { reloads(&scrape(admin).await, result) >= count },
    )
    .await;
}

/// The address a route got after a reload, read from warden's `listening` log lines.
async fn wait_for_route(warden: &mut Warden, connection: &str, role: &str) -> std::net::SocketAddr {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let found = warden.logs().iter().rev().find_map(|line| {
            let v: serde_json::Value = serde_json::from_str(line).ok()?;
            (v["message"] == "listening" && v["connection"] == connection && v["role"] == role)
                .then(|| v["addr"].as_str()?.parse().ok())
                .flatten()
        });
        if let Some(addr) = found {
            return addr;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no listener for {connection}/{role}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

fn base(mcp: &str) -> String {
    format!(
        "version: 1
admin: {{ listen: 127.0.0.1:0 }}
defaults: {{ retry: {{ max_attempts: 1 }} }}
connections:
  - name: a
    mcp: {{ listen: 127.0.0.1:0, upstream: {mcp} }}
"
    )
}

#[tokio::test]
async fn sighup_adds_a_route_and_changes_a_rule_without_dropping_a_request_in_flight() {
    let arrived = Arc::new(Notify::new());
    let release = Arc::new(Semaphore::new(0));
    let (a, r) = (Arc::clone(&arrived), Arc::clone(&release));
    let mcp = Upstream::start(move |req| {
        let (a, r) = (Arc::clone(&a), Arc::clone(&r));
        async move {
            if req.uri().path() == "/slow" {
                a.notify_one();
                if let Ok(p) = r.acquire().await {
                    p.forget();
                }
                return Response::new(full("slow done"));
            }
            Response::builder()
                .status(404)
                .body(full(""))
                .expect("response")
        }
    })
    .await;
    let api = Upstream::recording(200, r#"{"api":true}"#).await;
    let mut warden = Warden::start(&base(&mcp.url()));
    let addr = warden.route("a", "mcp");
    let client = http_client();

    // Before: a 404 is a client error.
    assert_eq!(
        get(&client, &format!("http://{addr}/missing")).await.status,
        404
    );
    let in_flight = tokio::spawn({
        let client = client.clone();
        async move { get(&client, &format!("http://{addr}/slow")).await }
    });
    tokio::time::timeout(DEADLINE, arrived.notified())
        .await
        .expect("in flight");

    let changed = format!(
        "{}  - name: b
    api: {{ listen: 127.0.0.1:0, upstream: {} }}
policy:
  rules:
    - name: missing-is-transient
      when: {{ role: mcp, status: 404 }}
      then: {{ verdict: transient }}
",
        base(&mcp.url()),
        api.url()
    );
    std::fs::write(warden.config_path(), changed).expect("rewrite config");
    warden.signal("HUP");
    wait_for_reload(&warden, "success", 1.0).await;

    let b = wait_for_route(&mut warden, "b", "api").await;
    let answer = get(&client, &format!("http://{b}/new")).await;
    assert_eq!(answer.body, r#"{"api":true}"#);
    // The same keep-alive client, the same route: the new rule applies.
    assert_eq!(
        get(&client, &format!("http://{addr}/missing")).await.status,
        404
    );
    let m = scrape(warden.admin).await;
    assert_eq!(
        metric(
            &m,
            "warden_upstream_errors_total",
            &[
                ("connection", "a"),
                ("verdict", "transient"),
                ("code", "404")
            ]
        ),
        Some(1.0),
        "{m}"
    );
    // The request in flight across the reload completes.
    release.add_permits(1);
    let answer = in_flight.await.expect("task");
    assert_eq!(answer.status, 200);
    assert_eq!(answer.body, "slow done");
}

#[tokio::test]
async fn an_invalid_file_keeps_the_running_config() {
    let mcp = Upstream::recording(200, "{}").await;
    let mut warden = Warden::start(&base(&mcp.url()));
    let addr = warden.route("a", "mcp");
    std::fs::write(
        warden.config_path(),
        base(&mcp.url()).replace("upstream: http", "upstream: ftp"),
    )
    .expect("rewrite config");
    warden.signal("HUP");
    wait_for_reload(&warden, "error", 1.0).await;
    assert_eq!(reloads(&scrape(warden.admin).await, "success"), 0.0);
    assert_eq!(
        get(&http_client(), &format!("http://{addr}/")).await.status,
        200
    );
    let logged = warden
        .logs()
        .iter()
        .any(|l| l.contains("connections[0].mcp.upstream") && l.contains("config error"));
    assert!(
        logged,
        "every error is logged with its key: {:?}",
        warden.logs()
    );
}

#[tokio::test]
async fn a_file_change_alone_triggers_a_reload() {
    let mcp = Upstream::recording(200, "{}").await;
    let api = Upstream::recording(200, "{}").await;
    let mut warden = Warden::start(&base(&mcp.url()));
    let more = format!(
        "{}  - name: c
    api: {{ listen: 127.0.0.1:0, upstream: {} }}
",
        base(&mcp.url()),
        api.url()
    );
    std::fs::write(warden.config_path(), more).expect("rewrite config");
    wait_for_reload(&warden, "success", 1.0).await;
    let c = wait_for_route(&mut warden, "c", "api").await;
    assert_eq!(
        get(&http_client(), &format!("http://{c}/")).await.status,
        200
    );
}

#[tokio::test]
async fn needs_reauth_survives_a_reload_that_does_not_touch_the_connection() {
    let hits = Arc::new(AtomicUsize::new(0));
    let h = Arc::clone(&hits);
    let idp = Upstream::start(move |_req| {
        h.fetch_add(1, Ordering::SeqCst);
        async move {
            Response::builder()
                .status(400)
                .header("content-type", "application/json")
                .body(full(r#"{"error":"invalid_grant"}"#))
                .expect("response")
        }
    })
    .await;
    let other = Upstream::recording(200, "{}").await;
    let yaml = format!(
        "version: 1
admin: {{ listen: 127.0.0.1:0 }}
connections:
  - name: crm
    oauth: {{ listen: 127.0.0.1:0, upstream: {}, token_path: /token }}
",
        idp.url()
    );
    let mut warden = Warden::start(&yaml);
    let oauth = warden.route("crm", "oauth");
    let refresh = || support::token(oauth, "grant_type=refresh_token&refresh_token=r");
    assert_eq!(refresh().await.status, 400);
    std::fs::write(
        warden.config_path(),
        format!(
            "{yaml}  - name: other\n    api: {{ listen: 127.0.0.1:0, upstream: {} }}\n",
            other.url()
        ),
    )
    .expect("rewrite config");
    warden.signal("HUP");
    wait_for_reload(&warden, "success", 1.0).await;
    wait_for_route(&mut warden, "other", "api").await;

    let health = get(
        &http_client(),
        &format!("http://{}/api/v1/connections/crm", warden.admin),
    )
    .await
    .json();
    assert_eq!(health["state"], "needs_reauth");
    assert_eq!(health["idp_error_code"], "invalid_grant");
    let answer = refresh().await;
    assert_eq!(answer.headers["x-warden-short-circuit"], "needs_reauth");
    assert_eq!(hits.load(Ordering::SeqCst), 1);
}

async fn refresh(addr: std::net::SocketAddr) -> support::Answer {
    support::token(
        addr,
        "grant_type=refresh_token&refresh_token=rt-1&client_id=app",
    )
    .await
}

#[tokio::test]
async fn a_refresh_burst_that_spans_a_reload_reaches_the_idp_once() {
    let idp = Held::start(200, r#"{"access_token":"at-2","refresh_token":"rt-2"}"#).await;
    let yaml = |events: u32| {
        format!(
            "version: 1
admin: {{ listen: 127.0.0.1:0 }}
events_per_connection: {events}
connections:
  - name: a
    oauth: {{ listen: 127.0.0.1:0, upstream: {}, token_path: /token }}
",
            idp.upstream.url()
        )
    };
    let mut warden = Warden::start_with_env(&yaml(50), &[("RUST_LOG", "info,warden_proxy=debug")]);
    let oauth = warden.route("a", "oauth");
    let first = tokio::spawn(refresh(oauth));
    tokio::time::timeout(DEADLINE, idp.arrived.notified())
        .await
        .expect("the first grant reaches the IdP");

    // A reload while that grant is at the IdP; the route is kept.
    std::fs::write(warden.config_path(), yaml(60)).expect("rewrite config");
    warden.signal("HUP");
    wait_for_reload(&warden, "success", 1.0).await;

    // The same refresh token after the reload joins the exchange in flight.
    let second = tokio::spawn(refresh(oauth));
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while !warden
        .logs()
        .iter()
        .any(|l| l.contains("refresh grant joins the exchange in flight"))
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the grant after the reload did not join the one in flight"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    idp.release.notify_one();
    let (first, second) = (first.await.expect("first"), second.await.expect("second"));
    assert_eq!(first.status, 200);
    assert_eq!(second.body, first.body, "both get the one answer");
    assert_eq!(idp.hits(), 1, "the refresh token went to the IdP once");
}

#[tokio::test]
async fn a_reload_keeps_pooled_upstream_connections() {
    let up = Upstream::recording(200, "ok").await;
    let addr = up.addr;
    let yaml = |extra: &str| format!("{}{extra}", base(&format!("http://{addr}")));
    let warden = Warden::start(&yaml(""));
    let url = format!("http://{}/x", warden.route("a", "mcp"));
    for _ in 0..3 {
        assert_eq!(get(&http_client(), &url).await.status, 200);
    }
    assert_eq!(up.accepted(), 1);

    std::fs::write(warden.config_path(), yaml("events_per_connection: 7\n")).expect("rewrite");
    warden.signal("HUP");
    wait_for_reload(&warden, "success", 1.0).await;
    for _ in 0..3 {
        assert_eq!(get(&http_client(), &url).await.status, 200);
    }
    assert_eq!(up.accepted(), 1, "the reload kept the pooled connection");
}
