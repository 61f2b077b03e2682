//! `GET /api/v1/config` on the admin listener: the effective config a running warden uses,
//! defaults filled in, with no secret and no path to a secret file in it, and the new
//! settings after a reload.

mod support;

use support::pki::Ca;
use support::{Warden, eventually, get, http_client};

const ADMIN_TOKEN: &str = "admin-token-value-never-shown";

#[tokio::test]
async fn the_effective_config_shows_no_secret_and_follows_reloads() {
    let files = tempfile::tempdir().expect("dir");
    let secrets = files.path().join("secret-dir");
    std::fs::create_dir(&secrets).expect("mkdir");
    let token_file = secrets.join("admin-token");
    std::fs::write(&token_file, ADMIN_TOKEN).expect("write token");
    let ca = Ca::new("client ca");
    let leaf = ca.leaf(&["warden.client"]);
    let cert = files.path().join("client.pem");
    let key = secrets.join("client.key");
    std::fs::write(&cert, &leaf.cert_pem).expect("write cert");
    std::fs::write(&key, &leaf.key_pem).expect("write key");

    let yaml = |attempts: u32| {
        format!(
            "version: 1
admin:
  listen: 127.0.0.1:0
  token_file: {token}
connections:
  - name: crm
    mcp:
      listen: 127.0.0.1:0
      upstream: https://mcp.crm.example.com
      tls: {{ client_cert: {cert}, client_key: {key} }}
      retry: {{ max_attempts: {attempts} }}
    oauth:
      listen: 127.0.0.1:0
      upstream: https://idp.example.com
      token_path: /oauth2/default/v1/token
",
            token = token_file.display(),
            cert = cert.display(),
            key = key.display(),
        )
    };
    let warden = Warden::start(&yaml(3));
    let client = http_client();
    let url = format!("http://{}/api/v1/config", warden.admin);
    let answer = get(&client, &url).await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.headers["content-type"], "application/json");
    let text = answer.text();
    for secret in [
        ADMIN_TOKEN,
        "secret-dir",
        "admin-token",
        "client.key",
        "PRIVATE KEY",
    ] {
        assert!(!text.contains(secret), "`{secret}` shown: {text}");
    }
    let config = answer.json();
    assert_eq!(config["admin"]["token_file"], "<redacted>");
    let crm = &config["connections"][0];
    assert_eq!(crm["name"], "crm");
    assert_eq!(crm["mcp"]["tls"]["client_key"], "<redacted>");
    assert_eq!(crm["mcp"]["tls"]["client_cert"], cert.display().to_string());
    assert_eq!(crm["mcp"]["retry"]["max_attempts"], 3);
    // Defaults are filled in.
    assert_eq!(crm["mcp"]["timeouts"]["connect"], "2s");
    assert_eq!(crm["oauth"]["token_path"], "/oauth2/default/v1/token");
    // As configured: the port the OS picked is in the `listening` log line.
    assert_eq!(crm["mcp"]["listen"], "127.0.0.1:0");

    std::fs::write(warden.config_path(), yaml(1)).expect("rewrite");
    warden.signal("HUP");
    eventually("the reloaded config is shown", || {
        let client = client.clone();
        let url = url.clone();
        async move {
            get(&client, &url).await.json()["connections"][0]["mcp"]["retry"]["max_attempts"] == 1
        }
    })
    .await;
    let text = get(&client, &url).await.text();
    assert!(
        !text.contains(ADMIN_TOKEN) && !text.contains("secret-dir"),
        "{text}"
    );
}
