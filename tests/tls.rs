//! HTTPS upstreams: a CA made in the test, HTTP/2 by ALPN, wrong CA, mTLS, server_name.

mod support;

use std::sync::{Arc, Mutex};

use http::Response;
use support::pki::Ca;
use support::upstream::{Upstream, full, record};
use support::{Warden, get, http_client};

async fn tls_upstream(tls: Arc<rustls::ServerConfig>) -> Upstream {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    let mut up = Upstream::start_tls(tls, move |req| {
        let log = Arc::clone(&log);
        async move {
            record(&log, req).await;
            Response::builder()
                .status(200)
                .body(full(r#"{"ok":true}"#))
                .expect("response")
        }
    })
    .await;
    up.seen = seen;
    up
}

fn config(upstream: &str, tls: &str) -> String {
    format!(
        "version: 1
admin: {{ listen: 127.0.0.1:0 }}
connections:
  - name: secure
    mcp:
      listen: 127.0.0.1:0
      upstream: {upstream}
      tls: {tls}
"
    )
}

#[tokio::test]
async fn https_upstream_with_test_ca_speaks_http2() {
    let ca = Ca::new("warden test ca");
    let up = tls_upstream(ca.server_config(&["127.0.0.1"], &[b"h2", b"http/1.1"], None)).await;
    let files = tempfile::tempdir().expect("dir");
    let ca_file = ca.write(files.path(), "ca.pem");
    let warden = Warden::start(&config(
        &format!("https://127.0.0.1:{}", up.addr.port()),
        &format!("{{ ca_file: {} }}", ca_file.display()),
    ));

    let answer = get(
        &http_client(),
        &format!("http://{}/tools?x=1", warden.route("secure", "mcp")),
    )
    .await;
    assert_eq!(answer.status, 200, "body: {}", answer.text());
    let seen = up.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(
        seen[0].version,
        http::Version::HTTP_2,
        "ALPN offered h2, warden must use it"
    );
    assert_eq!(seen[0].target, "/tools?x=1");
    // `:authority` names the upstream; the client's Host (warden's own address) must not
    // ride along as a field that differs from it (RFC 9113 §8.3.1).
    assert!(
        !seen[0].headers.contains_key(http::header::HOST),
        "host: {:?}",
        seen[0].headers.get(http::header::HOST)
    );
}

#[tokio::test]
async fn https_upstream_over_http1_when_alpn_offers_only_that() {
    let ca = Ca::new("warden test ca");
    let up = tls_upstream(ca.server_config(&["127.0.0.1"], &[b"http/1.1"], None)).await;
    let files = tempfile::tempdir().expect("dir");
    let ca_file = ca.write(files.path(), "ca.pem");
    let warden = Warden::start(&config(
        &format!("https://127.0.0.1:{}", up.addr.port()),
        &format!("{{ ca_file: {} }}", ca_file.display()),
    ));
    let answer = get(
        &http_client(),
        &format!("http://{}/", warden.route("secure", "mcp")),
    )
    .await;
    assert_eq!(answer.status, 200);
    assert_eq!(up.seen()[0].version, http::Version::HTTP_11);
    assert_eq!(
        up.seen()[0].headers["host"],
        format!("127.0.0.1:{}", up.addr.port())
    );
}

#[tokio::test]
async fn wrong_ca_is_a_502_naming_tls() {
    let real = Ca::new("the upstream's ca");
    let other = Ca::new("some other ca");
    let up = tls_upstream(real.server_config(&["127.0.0.1"], &[b"h2"], None)).await;
    let files = tempfile::tempdir().expect("dir");
    let ca_file = other.write(files.path(), "ca.pem");
    let warden = Warden::start(&config(
        &format!("https://127.0.0.1:{}", up.addr.port()),
        &format!("{{ ca_file: {} }}", ca_file.display()),
    ));

    let answer = get(
        &http_client(),
        &format!("http://{}/", warden.route("secure", "mcp")),
    )
    .await;
    assert_eq!(answer.status, 502);
    assert_eq!(answer.headers["x-warden-error"], "upstream_unreachable");
    let json = answer.json();
    assert_eq!(json["error"], "upstream_unreachable");
    assert_eq!(json["connection"], "secure");
    assert_eq!(json["role"], "mcp");
    assert_eq!(json["error_kind"], "tls");
    assert!(up.seen().is_empty());
}

#[tokio::test]
async fn mutual_tls_presents_the_client_certificate() {
    let server_ca = Ca::new("server ca");
    let client_ca = Ca::new("client ca");
    let up =
        tls_upstream(server_ca.server_config(&["127.0.0.1"], &[b"h2"], Some(&client_ca))).await;
    let files = tempfile::tempdir().expect("dir");
    let ca_file = server_ca.write(files.path(), "ca.pem");
    let leaf = client_ca.leaf(&["warden.client"]);
    let cert = files.path().join("client.pem");
    let key = files.path().join("client.key");
    std::fs::write(&cert, &leaf.cert_pem).expect("write cert");
    std::fs::write(&key, &leaf.key_pem).expect("write key");
    let upstream = format!("https://127.0.0.1:{}", up.addr.port());

    let with_cert = Warden::start(&config(
        &upstream,
        &format!(
            "{{ ca_file: {}, client_cert: {}, client_key: {} }}",
            ca_file.display(),
            cert.display(),
            key.display()
        ),
    ));
    let answer = get(
        &http_client(),
        &format!("http://{}/", with_cert.route("secure", "mcp")),
    )
    .await;
    assert_eq!(answer.status, 200, "body: {}", answer.text());

    // Without a certificate the upstream refuses. (Over HTTP/1.1: a TLS 1.3 server's refusal
    // comes after the handshake, and over HTTP/2 it surfaces as a dropped connection.)
    let up =
        tls_upstream(server_ca.server_config(&["127.0.0.1"], &[b"http/1.1"], Some(&client_ca)))
            .await;
    let upstream = format!("https://127.0.0.1:{}", up.addr.port());
    let without = Warden::start(&config(
        &upstream,
        &format!("{{ ca_file: {} }}", ca_file.display()),
    ));
    let answer = get(
        &http_client(),
        &format!("http://{}/", without.route("secure", "mcp")),
    )
    .await;
    assert_eq!(answer.status, 502);
    assert_eq!(answer.json()["error_kind"], "tls");
}

#[tokio::test]
async fn server_name_overrides_the_verified_name() {
    let ca = Ca::new("warden test ca");
    let up = tls_upstream(ca.server_config(&["mcp.internal.test"], &[b"h2"], None)).await;
    let files = tempfile::tempdir().expect("dir");
    let ca_file = ca.write(files.path(), "ca.pem");
    let upstream = format!("https://127.0.0.1:{}", up.addr.port());

    let named = Warden::start(&config(
        &upstream,
        &format!(
            "{{ ca_file: {}, server_name: mcp.internal.test }}",
            ca_file.display()
        ),
    ));
    let answer = get(
        &http_client(),
        &format!("http://{}/", named.route("secure", "mcp")),
    )
    .await;
    assert_eq!(answer.status, 200, "body: {}", answer.text());

    // Without the override the certificate does not match 127.0.0.1.
    let unnamed = Warden::start(&config(
        &upstream,
        &format!("{{ ca_file: {} }}", ca_file.display()),
    ));
    let answer = get(
        &http_client(),
        &format!("http://{}/", unnamed.route("secure", "mcp")),
    )
    .await;
    assert_eq!(answer.status, 502);
}
