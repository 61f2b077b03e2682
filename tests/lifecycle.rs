//! Process lifecycle: admin endpoints, zero-config mode, draining on SIGTERM/SIGINT.

mod support;

use std::sync::Arc;
use std::time::Duration;

use http::Response;
use support::upstream::{Upstream, full};
use support::{DEADLINE, Warden, eventually, get, http_client, one_route};
use tokio::sync::{Notify, Semaphore};

#[tokio::test]
async fn admin_serves_health_readiness_and_metrics() {
    let up = Upstream::recording(200, "{}").await;
    let warden = Warden::start(&one_route("mcp", &up.url(), ""));
    let client = http_client();
    let admin = warden.admin;

    assert_eq!(
        get(&client, &format!("http://{admin}/healthz"))
            .await
            .status,
        200
    );
    assert_eq!(
        get(&client, &format!("http://{admin}/readyz")).await.status,
        200
    );
    assert_eq!(
        get(&client, &format!("http://{}/x", warden.route("t", "mcp")))
            .await
            .status,
        200
    );

    let metrics = get(&client, &format!("http://{admin}/metrics"))
        .await
        .text();
    assert!(
        metrics.contains(&format!(
            "warden_build_info{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        )),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"warden_requests_total{connection="t",role="mcp",verdict="ok"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            r#"warden_request_duration_seconds_bucket{connection="t",role="mcp",le="+Inf"} 1"#
        ) || metrics
            .contains(r#"warden_request_duration_seconds_count{connection="t",role="mcp"} 1"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn zero_config_mode_forwards_to_the_given_upstream() {
    let up = Upstream::recording(200, r#"{"zero":true}"#).await;
    let url = up.url();
    let warden = Warden::start_args(
        &[
            "--listen",
            "127.0.0.1:0",
            "--upstream",
            &url,
            "--admin",
            "127.0.0.1:0",
        ],
        1,
    );
    let answer = get(
        &http_client(),
        &format!("http://{}/hello", warden.route("default", "mcp")),
    )
    .await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.body, r#"{"zero":true}"#);
    assert_eq!(up.seen()[0].target, "/hello");
}

/// SIGTERM with a request in flight: readiness turns 503, the request still completes, and
/// the process exits 0.
#[tokio::test]
async fn sigterm_drains_the_in_flight_request_and_exits_zero() {
    let arrived = Arc::new(Notify::new());
    let release = Arc::new(Semaphore::new(0));
    let (a, r) = (Arc::clone(&arrived), Arc::clone(&release));
    let up = Upstream::start(move |_req| {
        let (a, r) = (Arc::clone(&a), Arc::clone(&r));
        async move {
            a.notify_one();
            if let Ok(p) = r.acquire().await {
                p.forget();
            }
            Response::builder()
                .status(200)
                .body(full("done"))
                .expect("response")
        }
    })
    .await;
    let mut warden = Warden::start(&one_route("mcp", &up.url(), ""));
    let route = warden.route("t", "mcp");
    let admin = warden.admin;
    let client = http_client();

    let in_flight = tokio::spawn({
        let client = client.clone();
        async move { get(&client, &format!("http://{route}/slow")).await }
    });
    tokio::time::timeout(DEADLINE, arrived.notified())
        .await
        .expect("request reached the upstream");

    warden.signal("TERM");
    eventually("/readyz answers 503 while draining", || {
        let client = client.clone();
        async move { get(&client, &format!("http://{admin}/readyz")).await.status == 503 }
    })
    .await;
    // New connections to the route are refused while the old one drains.
    eventually("the route stops accepting", || async move {
        tokio::net::TcpStream::connect(route).await.is_err()
    })
    .await;

    release.add_permits(1);
    let answer = in_flight.await.expect("request task");
    assert_eq!(answer.status, 200);
    assert_eq!(answer.body, "done");

    let status = warden.wait_exit(DEADLINE);
    assert_eq!(status.code(), Some(0), "logs: {:?}", warden.logs());
}

#[tokio::test]
async fn drain_timeout_bounds_a_request_that_never_ends() {
    let arrived = Arc::new(Notify::new());
    let a = Arc::clone(&arrived);
    let up = Upstream::start(move |_req| {
        let a = Arc::clone(&a);
        async move {
            a.notify_one();
            std::future::pending::<()>().await;
            Response::new(full(""))
        }
    })
    .await;
    let mut warden = Warden::start(&format!(
        "{}shutdown: {{ drain_timeout: 200ms }}\n",
        one_route("mcp", &up.url(), "")
    ));
    let route = warden.route("t", "mcp");
    let stuck = tokio::spawn(async move {
        let _ = http_client()
            .request(
                http::Request::get(format!("http://{route}/stuck"))
                    .body(http_body_util::Full::new(bytes::Bytes::new()))
                    .expect("request"),
            )
            .await;
    });
    tokio::time::timeout(DEADLINE, arrived.notified())
        .await
        .expect("request reached the upstream");
    let signalled = std::time::Instant::now();
    warden.signal("INT");
    let status = warden.wait_exit(DEADLINE);
    assert_eq!(status.code(), Some(0));
    assert!(
        signalled.elapsed() >= Duration::from_millis(200),
        "exited before the drain timeout"
    );
    stuck.abort();
}
