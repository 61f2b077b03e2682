//! `warden status`: the real binary against a running warden whose connection goes through
//! every state, and against admin endpoints that are gone or answer garbage. The exit code
//! is the contract scripts rely on: 0 serving, 1 needs an operator, 2 unknown.

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use http::Response;
use http_body_util::Full;
use serde_json::Value;
use support::upstream::{Upstream, full};
use support::{Warden, get, http_client, send};

/// `warden status ARGS` as a script would run it (stdout a pipe), off the async runtime so
/// in-process upstreams keep answering meanwhile.
async fn status(args: &[&str]) -> (i32, String, String) {
    let args: Vec<String> = std::iter::once("status".to_owned())
        .chain(args.iter().map(|a| (*a).to_owned()))
        .collect();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        support::run_warden(&args, &std::env::temp_dir())
    })
    .await
    .expect("run warden status")
}

/// The table's data lines, split on runs of two or more spaces (cells hold single spaces).
fn table(stdout: &str) -> Vec<Vec<String>> {
    stdout
        .lines()
        .take_while(|l| !l.is_empty())
        .map(|l| {
            l.split("  ")
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .collect()
}

fn line<'a>(rows: &'a [Vec<String>], name: &str) -> &'a [String] {
    rows.iter()
        .find(|r| r.first().is_some_and(|n| n == name))
        .unwrap_or_else(|| panic!("no row {name} in {rows:?}"))
}

async fn token(addr: SocketAddr) -> u16 {
    support::token(addr, "grant_type=refresh_token&refresh_token=rt")
        .await
        .status
        .as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_table_and_exit_code_follow_each_state() {
    let (idp, _) = support::upstream::scripted(
        vec![
            (200, r#"{"access_token":"at"}"#),
            (503, r#"{"error":"temporarily_unavailable"}"#),
            (400, r#"{"error":"invalid_client"}"#),
        ],
        (200, "{}"),
    )
    .await;
    let down = Arc::new(AtomicBool::new(false));
    let (mcp, _) = support::upstream::switchable(Arc::clone(&down)).await;
    let warden = Warden::start(&format!(
        "version: 1
admin: {{ listen: 127.0.0.1:0 }}
defaults: {{ retry: {{ max_attempts: 1 }} }}
connections:
  - name: crm
    mcp:
      listen: 127.0.0.1:0
      upstream: {mcp}
      circuit: {{ consecutive_failures: 2, probe: {{ interval: 1h, max_interval: 1h }} }}
    oauth:
      listen: 127.0.0.1:0
      upstream: {idp}
      token_path: /token
  - name: inventory-api
    api:
      listen: 127.0.0.1:0
      upstream: {mcp}
",
        mcp = mcp.url(),
        idp = idp.url(),
    ));
    let admin = format!("http://{}", warden.admin);
    let oauth = warden.route("crm", "oauth");
    let crm_mcp = format!("http://{}/mcp", warden.route("crm", "mcp"));

    // Nothing happened yet: both healthy.
    let (code, out, err) = status(&["--admin", &admin]).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(!out.contains('\x1b'), "colour on a pipe: {out:?}");
    let rows = table(&out);
    assert_eq!(
        rows[0],
        [
            "NAME",
            "STATE",
            "CIRCUITS",
            "IDP CODE",
            "REASON",
            "LAST EVENT",
            "AGE"
        ]
    );
    assert_eq!(
        line(&rows, "crm"),
        [
            "crm",
            "healthy",
            "mcp:closed,oauth:closed",
            "-",
            "-",
            "-",
            "-"
        ]
    );
    assert_eq!(
        line(&rows, "inventory-api"),
        ["inventory-api", "healthy", "api:closed", "-", "-", "-", "-"]
    );
    // Aligned: every column starts at the same offset on every line.
    let lines: Vec<&str> = out.lines().take(3).collect();
    let state_col = lines[0].find("STATE").expect("STATE");
    assert!(
        lines[1..]
            .iter()
            .all(|l| l.find("healthy") == Some(state_col)),
        "{out}"
    );

    // A successful login, then a transient refresh failure: degraded, still exit 0.
    assert_eq!(token(oauth).await, 200);
    assert_eq!(token(oauth).await, 503);
    let (code, out, err) = status(&["--admin", &admin]).await;
    assert_eq!(code, 0, "{out}{err}");
    let rows = table(&out);
    let crm = line(&rows, "crm");
    assert_eq!(crm[1], "degraded");
    assert_eq!(crm[3], "temporarily_unavailable");
    assert_eq!(crm[4], "refresh_failed_transient oauth 503");
    assert_eq!(crm[5], "refresh_failed_transient oauth 503");
    assert!(crm[6].ends_with('s'), "age in seconds: {crm:?}");

    // The IdP rejects the client: needs_reauth, exit 1, and the advice under the table.
    assert_eq!(token(oauth).await, 400);
    let (code, out, err) = status(&["--admin", &admin]).await;
    assert_eq!(code, 1, "{out}{err}");
    let crm = line(&table(&out), "crm").to_vec();
    assert_eq!(crm[1], "needs_reauth");
    assert_eq!(crm[3], "invalid_client");
    assert_eq!(crm[4], "refresh_failed_revoked oauth 400");
    assert_eq!(crm[5], "refresh_failed_revoked oauth 400");
    assert!(
        out.contains(
            "crm: the IdP answered invalid_client: fix the client secret first, then reconnect"
        ),
        "{out}"
    );

    // --json: the API's own answer, same exit code.
    let (code, out, _) = status(&["--admin", &admin, "--json"]).await;
    assert_eq!(code, 1);
    let printed: Value = serde_json::from_str(&out).expect("JSON on stdout");
    let api = get(
        &http_client(),
        &format!("{admin}/api/v1/connections/health"),
    )
    .await
    .json();
    assert_eq!(printed, api);

    // Reset, then the MCP server goes down: the circuit opens, exit 1 again. A bare
    // host:port works as --admin too.
    let reset = send(
        &http_client(),
        http::Request::post(format!("{admin}/api/v1/connections/crm/reset"))
            .body(Full::new(Bytes::new()))
            .expect("request"),
    )
    .await;
    assert_eq!(reset.status, 200);
    let (code, out, err) = status(&["--admin", &warden.admin.to_string()]).await;
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(line(&table(&out), "crm")[1], "healthy");
    down.store(true, Ordering::SeqCst);
    for _ in 0..2 {
        assert_eq!(get(&http_client(), &crm_mcp).await.status, 503);
    }
    let (code, out, err) = status(&["--admin", &admin]).await;
    assert_eq!(code, 1, "{out}{err}");
    let crm = line(&table(&out), "crm").to_vec();
    assert_eq!(crm[1], "circuit_open");
    assert_eq!(crm[2], "mcp:open,oauth:closed");
    assert_eq!(crm[3], "-");
    assert_eq!(crm[4], "circuit_opened mcp 503");

    // On a terminal the state is coloured, unless NO_COLOR says otherwise.
    let (_, tty) = on_a_terminal(&["--admin", &admin], &[]).await;
    assert!(tty.contains("\x1b[33mcircuit_open\x1b[0m"), "{tty:?}");
    let (_, tty) = on_a_terminal(&["--admin", &admin], &[("NO_COLOR", "1")]).await;
    assert!(!tty.contains('\x1b'), "{tty:?}");
    assert!(tty.contains("circuit_open"), "{tty:?}");
}

/// Runs `warden status ARGS` with stdout on a pseudo-terminal, through util-linux's
/// `script` (Essential on Debian); its exit code and what the terminal showed.
async fn on_a_terminal(args: &[&str], env: &[(&str, &str)]) -> (i32, String) {
    let quote = |s: &str| format!("'{}'", s.replace('\'', r"'\''"));
    let command = std::iter::once(support::warden_bin())
        .chain(std::iter::once("status"))
        .chain(args.iter().copied())
        .map(quote)
        .collect::<Vec<_>>()
        .join(" ");
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    tokio::task::spawn_blocking(move || {
        let out = std::process::Command::new("script")
            .args(["-qec", &command, "/dev/null"])
            .env_remove("NO_COLOR")
            .envs(env)
            .output()
            .expect("run script(1)");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    })
    .await
    .expect("join")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_admin_exits_2_with_one_line() {
    // A port that was just free: nothing listens there.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port");
    let (code, out, err) = status(&["--admin", &format!("http://{addr}")]).await;
    assert_eq!(code, 2, "{out}{err}");
    assert!(out.is_empty(), "{out}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("warden status: admin API unreachable at "),
        "{err}"
    );
    assert!(err.contains(&addr.to_string()), "{err}");

    let (code, _, err) = status(&["--admin", "https://127.0.0.1:9901"]).await;
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("plain http://"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_answering_garbage_exits_2() {
    for (status_code, body, says) in [
        (200, "<html>not warden</html>", "did not answer JSON"),
        (200, r#"{"status":"ok"}"#, "without a connections list"),
        (
            200,
            r#"{"connections":[{"name":1}]}"#,
            "without a connections list",
        ),
        (500, "{}", "answered 500"),
        (404, "not found", "answered 404"),
    ] {
        let fake = Upstream::start(move |_req| async move {
            Response::builder()
                .status(status_code)
                .header("content-type", "application/json")
                .body(full(body))
                .expect("response")
        })
        .await;
        let (code, out, err) = status(&["--admin", &fake.url()]).await;
        assert_eq!(code, 2, "{body}: {out}{err}");
        assert!(out.is_empty(), "{out}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains(says), "{body}: {err}");
    }
    // An empty list is a valid answer: nothing needs attention.
    let empty =
        Upstream::start(|_req| async { Response::new(full(r#"{"connections":[]}"#)) }).await;
    let (code, out, err) = status(&["--admin", &empty.url()]).await;
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(table(&out).len(), 1, "just the header: {out}");
}
