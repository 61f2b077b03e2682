//! What `warden run` says before it serves: config errors and fatal errors follow
//! `--log-format` from the first line (a log collector parses them like every other line),
//! an error's cause is not printed twice, and zero-config mode takes `--token-path`.

mod support;

use std::process::{Command, Stdio};

use serde_json::Value;
use support::upstream::scripted;
use support::{Warden, get, http_client, warden_bin};

/// Runs `warden ARGS` to completion in `dir`; (exit code, stderr lines).
fn run(args: &[&str], dir: &std::path::Path) -> (i32, Vec<String>) {
    let out = Command::new(warden_bin())
        .args(args)
        .current_dir(dir)
        .env_remove("WARDEN_CONFIG")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .output()
        .expect("run warden");
    let stderr = String::from_utf8_lossy(&out.stderr);
    (
        out.status.code().unwrap_or(-1),
        stderr.lines().map(str::to_owned).collect(),
    )
}

/// Every line parsed as JSON; the test fails naming the first line that is not.
fn json_lines(lines: &[String]) -> Vec<Value> {
    assert!(!lines.is_empty(), "no output at all");
    lines
        .iter()
        .map(|l| {
            serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON log line ({e}): {l}"))
        })
        .collect()
}

/// Two independent mistakes: a bad admin address and a bad duration.
const BROKEN: &str = "version: 1
admin: { listen: localhost:9901 }
connections:
  - name: crm
    mcp:
      listen: 127.0.0.1:0
      upstream: https://mcp.example.com
      timeouts: { connect: fast }
";

#[test]
fn config_errors_at_startup_are_json_lines_under_log_format_json() {
    let dir = tempfile::tempdir().expect("dir");
    std::fs::write(dir.path().join("proxy.yaml"), BROKEN).expect("write");
    let (code, lines) = run(
        &["--log-format", "json", "run", "--config", "proxy.yaml"],
        dir.path(),
    );
    assert_eq!(code, 1, "{lines:#?}");
    let logs = json_lines(&lines);
    let errors: Vec<&Value> = logs
        .iter()
        .filter(|l| l["level"] == "ERROR" && l["key"].is_string())
        .collect();
    assert_eq!(errors.len(), 2, "{logs:#?}");
    for e in &errors {
        assert_eq!(e["file"], "proxy.yaml", "{e}");
        assert!(e["line"].as_u64().is_some(), "{e}");
        assert!(e["column"].as_u64().is_some(), "{e}");
        let message = e["message"].as_str().expect("message");
        assert!(message.starts_with("proxy.yaml:"), "{message}");
    }
    let keys: Vec<&str> = errors.iter().filter_map(|e| e["key"].as_str()).collect();
    assert!(
        keys.contains(&"connections[0].mcp.timeouts.connect"),
        "{keys:?}"
    );
    assert!(
        logs.iter()
            .any(|l| l["message"] == "invalid config; not starting" && l["errors"] == 2),
        "{logs:#?}"
    );
}

#[test]
fn an_unreadable_config_is_a_json_line_too() {
    let dir = tempfile::tempdir().expect("dir");
    let (code, lines) = run(
        &["--log-format", "json", "run", "--config", "missing.yaml"],
        dir.path(),
    );
    assert_eq!(code, 1);
    let logs = json_lines(&lines);
    assert!(
        logs.iter().any(|l| l["level"] == "ERROR"
            && l["error"]
                .as_str()
                .is_some_and(|e| e.contains("missing.yaml"))),
        "{logs:#?}"
    );
}

#[test]
fn human_format_keeps_the_file_line_column_form() {
    let dir = tempfile::tempdir().expect("dir");
    std::fs::write(dir.path().join("proxy.yaml"), BROKEN).expect("write");
    let (code, lines) = run(
        &["--log-format", "human", "run", "--config", "proxy.yaml"],
        dir.path(),
    );
    assert_eq!(code, 1);
    let text = lines.join("\n");
    assert!(
        text.contains("proxy.yaml:8:") && text.contains("connections[0].mcp.timeouts.connect"),
        "{text}"
    );
    assert!(serde_json::from_str::<Value>(&lines[0]).is_err(), "{text}");
}

/// A listener that cannot bind is a fatal error: one JSON line, its OS error said once.
#[test]
fn a_busy_port_is_one_json_line_without_the_cause_twice() {
    let busy = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = busy.local_addr().expect("addr").port();
    let dir = tempfile::tempdir().expect("dir");
    std::fs::write(
        dir.path().join("proxy.yaml"),
        format!(
            "version: 1
admin: {{ listen: 127.0.0.1:0 }}
connections:
  - name: crm
    mcp: {{ listen: 127.0.0.1:{port}, upstream: http://127.0.0.1:1 }}
"
        ),
    )
    .expect("write");
    let (code, lines) = run(
        &["--log-format", "json", "run", "--config", "proxy.yaml"],
        dir.path(),
    );
    drop(busy);
    assert_eq!(code, 1, "{lines:#?}");
    let logs = json_lines(&lines);
    let fatal = logs
        .iter()
        .find(|l| l["level"] == "ERROR" && l["error"].is_string())
        .unwrap_or_else(|| panic!("no fatal error line: {logs:#?}"));
    let error = fatal["error"].as_str().expect("error");
    let os = std::io::Error::from(std::io::ErrorKind::AddrInUse).to_string();
    assert!(error.contains(&port.to_string()), "{error}");
    assert_eq!(
        error.matches("os error").count(),
        1,
        "the cause is repeated: {error} (io: {os})"
    );
}

#[test]
fn token_path_is_documented_in_help_with_its_default() {
    let dir = tempfile::tempdir().expect("dir");
    let out = Command::new(warden_bin())
        .args(["run", "--help"])
        .current_dir(dir.path())
        .output()
        .expect("run warden");
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("--token-path <PATH>"), "{help}");
    assert!(help.contains("[default: /token]"), "{help}");
}

#[test]
fn token_path_needs_role_oauth() {
    let dir = tempfile::tempdir().expect("dir");
    let (code, lines) = run(
        &[
            "--log-format",
            "json",
            "run",
            "--listen",
            "127.0.0.1:0",
            "--upstream",
            "http://127.0.0.1:1",
            "--admin",
            "127.0.0.1:0",
            "--token-path",
            "/oauth2/v1/token",
        ],
        dir.path(),
    );
    assert_eq!(code, 1);
    let logs = json_lines(&lines);
    assert!(logs.iter().any(|l| l["key"] == "--token-path"), "{logs:#?}");
}

/// An Okta-style token path: with `--token-path` the revoked refresh token is seen for what
/// it is, and the next refresh is answered by warden without reaching the IdP.
#[tokio::test]
async fn zero_config_oauth_honours_token_path() {
    let (idp, hits) = scripted(
        vec![(400, r#"{"error":"invalid_grant"}"#)],
        (200, r#"{"access_token":"at"}"#),
    )
    .await;
    let url = idp.url();
    let warden = Warden::start_args(
        &[
            "--listen",
            "127.0.0.1:0",
            "--upstream",
            &url,
            "--role",
            "oauth",
            "--token-path",
            "/oauth2/default/v1/token",
            "--admin",
            "127.0.0.1:0",
        ],
        1,
    );
    let client = http_client();
    let url = format!(
        "http://{}/oauth2/default/v1/token",
        warden.route("default", "oauth")
    );
    let refresh = || support::token_at(&url, "grant_type=refresh_token&refresh_token=rt-1");
    let first = refresh().await;
    assert_eq!(first.status, 400);
    let health = get(
        &client,
        &format!("http://{}/api/v1/connections/health", warden.admin),
    )
    .await
    .json();
    let row = &health["connections"][0];
    assert_eq!(row["state"], "needs_reauth", "{health}");
    assert_eq!(row["idp_error_code"], "invalid_grant", "{health}");

    let second = refresh().await;
    assert_eq!(second.status, 400);
    assert_eq!(second.headers["x-warden-short-circuit"], "needs_reauth");
    assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 1);
}

/// A flag `run` refuses is a log line too, in the format asked for.
#[test]
fn a_bad_flag_of_run_is_a_json_line() {
    let dir = tempfile::tempdir().expect("dir");
    let (code, lines) = run(
        &[
            "--log-format",
            "json",
            "run",
            "--listen",
            "nope",
            "--upstream",
            "http://x",
        ],
        dir.path(),
    );
    assert_eq!(code, 2, "{lines:#?}");
    let logs = json_lines(&lines);
    assert_eq!(logs.len(), 1, "{logs:#?}");
    assert_eq!(logs[0]["level"], "ERROR");
    assert!(
        logs[0]["error"]
            .as_str()
            .is_some_and(|e| e.contains("--listen")),
        "{logs:#?}"
    );
}
