//! The status page at the admin listener's `/`, rendered by a real headless Chromium driven
//! over the WebDriver protocol: connections in every state, the badge and tooltip of each,
//! a state change picked up by polling, a reset through the page (bearer token asked for),
//! and the stale banner once the admin listener is gone.
//!
//! Needs Debian's `chromium` and `chromium-driver` (installed by `.ci/run`, found on `PATH`
//! or through `WARDEN_TEST_CHROMIUM` / `WARDEN_TEST_CHROMEDRIVER`): without them the test
//! skips with a banner naming the install line, and fails instead when `CI` is set.

mod support;
mod tools;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use support::upstream::Upstream;
use support::{DEADLINE, Warden, eventually, get, http_client};

const ADMIN_TOKEN: &str = "page-admin-token";

const TEST: &str = "the_status_page_shows_every_state_in_a_real_browser";

/// The browser and its driver, or `None` when this run skips (see `tools`).
fn browser_tools() -> Option<(PathBuf, PathBuf)> {
    let found = tools::require(TEST, &[&tools::CHROMIUM, &tools::CHROMEDRIVER])?;
    let [chromium, driver] = <[PathBuf; 2]>::try_from(found).ok()?;
    Some((chromium, driver))
}

/// A chromedriver process and the browser session it drives (through fantoccini). Dropping
/// it ends both: the driver runs in its own process group, and the whole group (driver,
/// browser and the browser's helpers) is killed, pass or fail.
struct Browser {
    driver: Child,
    client: fantoccini::Client,
    _profile: tempfile::TempDir,
}

/// Starts chromedriver and waits for the port it reports; `None` when it exits first.
fn spawn_driver(chromedriver: &std::path::Path) -> Option<(Child, u16)> {
    let mut driver = {
        use std::os::unix::process::CommandExt as _;
        Command::new(chromedriver)
            .args(["--port=0", "--log-level=WARNING"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("spawn chromedriver")
    };
    let stdout = driver.stdout.take().expect("piped stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    // Keeps draining after the port line so the driver never blocks on a full pipe. The
    // sender goes when stdout closes, so a driver that exits early is seen at once rather
    // than at the deadline.
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let port = line
                .split("started successfully on port ")
                .nth(1)
                .and_then(|rest| rest.trim_end_matches('.').trim().parse::<u16>().ok());
            if let Some(port) = port {
                let _ = tx.send(port);
            }
        }
    });
    match rx.recv_timeout(DEADLINE) {
        Ok(port) => Some((driver, port)),
        Err(_) => {
            kill_group(&mut driver);
            None
        }
    }
}

/// Kills `driver`'s process group (the driver and every browser process) and reaps it.
fn kill_group(driver: &mut Child) {
    // The negative pid names the process group.
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{}", driver.id())])
        .stderr(Stdio::null())
        .status();
    let _ = driver.kill();
    let _ = driver.wait();
}

/// A headless Chromium session on the chromedriver at `port`, its profile in `profile`.
async fn session(
    chromium: &Path,
    port: u16,
    profile: &Path,
) -> Result<fantoccini::Client, fantoccini::error::NewSessionError> {
    let args = [
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1280,720",
        &format!("--user-data-dir={}", profile.display()),
    ];
    let mut capabilities = serde_json::Map::new();
    capabilities.insert("browserName".to_owned(), json!("chrome"));
    capabilities.insert(
        "goog:chromeOptions".to_owned(),
        json!({ "binary": chromium, "args": args }),
    );
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    fantoccini::ClientBuilder::new(connector)
        .capabilities(capabilities)
        .connect(&format!("http://127.0.0.1:{port}"))
        .await
}

impl Browser {
    /// chromedriver and a session on it. A start that fails (chromedriver on `--port=0`
    /// was seen once to end at start without reporting a port, under a full-suite load) is
    /// killed and retried, three starts at most.
    async fn start((chromium, chromedriver): (PathBuf, PathBuf)) -> Browser {
        let mut failures = Vec::new();
        for _ in 0..3 {
            let Some((mut driver, port)) = spawn_driver(&chromedriver) else {
                failures.push("chromedriver exited without reporting a port".to_owned());
                continue;
            };
            let profile = tempfile::tempdir().expect("profile dir");
            match session(&chromium, port, profile.path()).await {
                Ok(client) => {
                    return Browser {
                        driver,
                        client,
                        _profile: profile,
                    };
                }
                Err(err) => {
                    kill_group(&mut driver);
                    failures.push(format!("no WebDriver session: {err}"));
                }
            }
        }
        panic!("chromedriver failed three starts: {failures:?}");
    }

    async fn goto(&self, url: &str) {
        self.client.goto(url).await.expect("WebDriver navigate");
    }

    /// Runs `script` (a function body) in the page and returns what it returns.
    async fn eval(&self, script: &str) -> Value {
        self.client
            .execute(script, vec![])
            .await
            .unwrap_or_else(|err| panic!("WebDriver execute: {err}"))
    }

    /// The element matching `css`.
    async fn find(&self, css: &str) -> fantoccini::elements::Element {
        self.client
            .find(fantoccini::Locator::Css(css))
            .await
            .unwrap_or_else(|err| panic!("no element {css}: {err}"))
    }

    async fn click(&self, css: &str) {
        self.find(css)
            .await
            .click()
            .await
            .unwrap_or_else(|err| panic!("click {css}: {err}"));
    }

    async fn type_into(&self, css: &str, text: &str) {
        self.find(css)
            .await
            .send_keys(text)
            .await
            .unwrap_or_else(|err| panic!("type into {css}: {err}"));
    }

    /// A PNG of the whole page, cropped to its content (the `<html>` element).
    async fn screenshot(&self) -> Vec<u8> {
        self.find("html")
            .await
            .screenshot()
            .await
            .unwrap_or_else(|err| panic!("screenshot: {err}"))
    }

    /// Polls `script` until `done` accepts its value; the last value on timeout, in the
    /// failure message.
    async fn wait_until(&self, what: &str, script: &str, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            let value = self.eval(script).await;
            if done(&value) {
                return value;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {what}; the page shows: {value:#}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Ends the session, so the browser quits and reaps its own processes; dropping the
    /// `Browser` then kills whatever is left.
    async fn close(self) {
        let _ = self.client.clone().close().await;
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        kill_group(&mut self.driver);
    }
}

/// The table as the page rendered it: per row, the cells' text, the badge's text and
/// tooltip, the circuits by role; plus the banner and the token form (if displayed), the
/// summary and whether the page's stylesheet applied (a CSP refusal would leave the badge unstyled).
const SNAPSHOT: &str = r##"
const shown = (id) => getComputedStyle(document.getElementById(id)).display !== "none";
const rows = [...document.querySelectorAll("#rows tr[data-name]")].map((tr) => {
  const badge = tr.querySelector(".badge");
  const circuits = {};
  for (const c of tr.querySelectorAll("[data-role]")) circuits[c.dataset.role] = c.textContent;
  return {
    name: tr.querySelector("th[scope=row]").textContent,
    badge: badge ? badge.textContent : "",
    advice: tr.querySelector(".advice") ? tr.querySelector(".advice").textContent : "",
    title: badge ? badge.title : "",
    cells: [...tr.children].map((c) => c.textContent),
    circuits,
    button: tr.querySelector("button").getAttribute("aria-label"),
  };
});
const badge = document.querySelector(".badge");
return {
  rows,
  summary: document.getElementById("summary").textContent,
  stale: shown("stale") ? document.getElementById("stale").textContent : null,
  authShown: shown("auth"),
  styled: badge ? getComputedStyle(badge).display === "inline-block" : null,
  live: document.getElementById("status").getAttribute("aria-live"),
  headers: [...document.querySelectorAll("thead th")].map((th) => th.getAttribute("scope")),
  history: [...document.querySelectorAll("#rows tr.history")].filter((tr) => !tr.hidden)
    .map((tr) => ({ after: tr.previousElementSibling.dataset.name, text: tr.textContent })),
};
"##;

fn row<'a>(snapshot: &'a Value, name: &str) -> &'a Value {
    snapshot["rows"]
        .as_array()
        .and_then(|rows| rows.iter().find(|r| r["name"] == name))
        .unwrap_or_else(|| panic!("no row {name}: {snapshot:#}"))
}

/// An upstream answering a scripted list of (status, body), then `fallback`.
async fn scripted(script: Vec<(u16, &'static str)>, fallback: (u16, &'static str)) -> Upstream {
    support::upstream::scripted(script, fallback).await.0
}

async fn token(addr: SocketAddr) -> u16 {
    support::token(addr, "grant_type=refresh_token&refresh_token=rt")
        .await
        .status
        .as_u16()
}

fn output_dir() -> PathBuf {
    // target/<profile>/deps/status_page-<hash> → target/test-output
    let exe = std::env::current_exe().expect("test binary path");
    exe.ancestors()
        .find(|p| p.file_name().is_some_and(|n| n == "deps"))
        .and_then(Path::parent)
        .and_then(Path::parent)
        .map_or_else(std::env::temp_dir, Path::to_path_buf)
        .join("test-output")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_page_shows_every_state_in_a_real_browser() {
    let Some(browser_tools) = browser_tools() else {
        return;
    };
    let client = http_client();
    // crm: the IdP rejects the client → needs_reauth.
    let crm_idp = scripted(
        vec![(400, r#"{"error":"invalid_client"}"#)],
        (200, r#"{"access_token":"at"}"#),
    )
    .await;
    // search: the MCP server is down → circuit open (and stays so: probes are an hour out).
    let search_mcp = scripted(vec![], (503, "{}")).await;
    // billing: one 503 from the token endpoint → degraded, refresh failing.
    let billing_idp = scripted(
        vec![(503, r#"{"error":"temporarily_unavailable"}"#)],
        (200, r#"{"access_token":"at"}"#),
    )
    .await;
    // docs: healthy until the test takes its MCP server down.
    let docs_down = Arc::new(AtomicBool::new(false));
    let (docs_mcp, _) = support::upstream::switchable(Arc::clone(&docs_down)).await;
    let ok = scripted(vec![], (200, r#"{"access_token":"at"}"#)).await;
    // ledger: one 503 from the token endpoint opens the oauth circuit, the prober's next
    // 200 closes it, which ends the route's failure run: the idle connection is healthy.
    let ledger_idp = scripted(vec![(503, "{}")], (200, "{}")).await;

    let token_file = tempfile::NamedTempFile::new().expect("token file");
    std::fs::write(token_file.path(), ADMIN_TOKEN).expect("write token");
    let route = |role: &str, upstream: &str, extra: &str| {
        format!("    {role}:\n      listen: 127.0.0.1:0\n      upstream: {upstream}\n{extra}")
    };
    let oauth = |upstream: &str| route("oauth", upstream, "      token_path: /token\n");
    let down_circuit =
        "      circuit: { consecutive_failures: 1, probe: { interval: 1h, max_interval: 1h } }\n";
    let yaml = format!(
        "version: 1
admin: {{ listen: 127.0.0.1:0, token_file: {token} }}
defaults: {{ retry: {{ max_attempts: 1 }} }}
connections:
  - name: crm
{crm_mcp}{crm_oauth}  - name: search
{search_mcp}{search_oauth}  - name: billing
{billing_mcp}{billing_oauth}  - name: docs
{docs_mcp}{docs_oauth}  - name: metrics-api
{api}  - name: ledger
{ledger_oauth}",
        token = token_file.path().display(),
        crm_mcp = route("mcp", &ok.url(), ""),
        crm_oauth = oauth(&crm_idp.url()),
        search_mcp = route("mcp", &search_mcp.url(), down_circuit),
        search_oauth = oauth(&ok.url()),
        billing_mcp = route("mcp", &ok.url(), ""),
        billing_oauth = oauth(&billing_idp.url()),
        docs_mcp = route("mcp", &docs_mcp.url(), ""),
        docs_oauth = oauth(&ok.url()),
        api = route("api", &ok.url(), ""),
        ledger_oauth = route(
            "oauth",
            &ledger_idp.url(),
            "      token_path: /token\n      circuit: { consecutive_failures: 1, probe: { interval: 50ms, max_interval: 50ms } }\n"
        ),
    );
    let mut warden = Some(Warden::start(&yaml));
    let w = warden.as_ref().expect("running");

    assert_eq!(token(w.route("crm", "oauth")).await, 400);
    let search = format!("http://{}/mcp", w.route("search", "mcp"));
    assert_eq!(get(&client, &search).await.status, 503);
    assert_eq!(token(w.route("billing", "oauth")).await, 503);
    assert_eq!(token(w.route("docs", "oauth")).await, 200);
    let docs = format!("http://{}/mcp", w.route("docs", "mcp"));
    assert_eq!(get(&client, &docs).await.status, 200);
    let api = format!("http://{}/v1/things", w.route("metrics-api", "api"));
    assert_eq!(get(&client, &api).await.status, 200);
    assert_eq!(token(w.route("ledger", "oauth")).await, 503);
    let ledger = format!("http://{}/api/v1/connections/ledger", w.admin);
    eventually("the ledger circuit to close again", || async {
        let detail = get(&client, &ledger).await.json();
        detail["state"] == "healthy" && detail["last_event"]["type"] == "circuit_closed"
    })
    .await;

    // The page itself: self-contained, locked down, never cached.
    let page = get(&client, &format!("http://{}/", w.admin)).await;
    assert_eq!(page.status, 200);
    assert_eq!(page.headers["content-type"], "text/html; charset=utf-8");
    assert_eq!(page.headers["cache-control"], "no-store");
    let csp = page.headers["content-security-policy"]
        .to_str()
        .expect("ascii");
    assert!(csp.starts_with("default-src 'none'"), "{csp}");
    assert!(csp.contains("connect-src 'self'"), "{csp}");
    assert!(!csp.contains("unsafe-inline"), "{csp}");

    let browser = Browser::start(browser_tools).await;
    browser.goto(&format!("http://{}/?poll=300", w.admin)).await;
    let shown = browser
        .wait_until("six rendered rows", SNAPSHOT, |v| {
            v["rows"].as_array().is_some_and(|r| r.len() == 6)
        })
        .await;
    assert_eq!(
        shown["styled"], true,
        "the stylesheet was refused: {shown:#}"
    );
    assert_eq!(shown["live"], "polite");
    assert_eq!(shown["stale"], Value::Null);
    assert_eq!(shown["headers"], json!(vec!["col"; 8]));
    assert_eq!(
        shown["summary"],
        "6 connections: 1 reauth, 1 circuit open, 1 degraded"
    );

    let crm = row(&shown, "crm");
    assert_eq!(crm["badge"], "reauth");
    let title = crm["title"].as_str().expect("title");
    assert!(title.contains("invalid_client"), "{title}");
    assert!(
        title.contains("fix the client secret first, then reconnect"),
        "{title}"
    );
    // What to do is on the page too, not only in the tooltip.
    assert_eq!(crm["advice"], title);
    assert_eq!(crm["cells"][2], "needs_reauth");
    // The reason explains the state; here it is also the newest event.
    assert_eq!(
        crm["cells"][4],
        "refresh_failed_revoked · oauth · 400 invalid_client"
    );
    assert_eq!(
        crm["cells"][5],
        "refresh_failed_revoked · oauth · 400 invalid_client"
    );
    assert!(
        crm["cells"][6]
            .as_str()
            .is_some_and(|age| age.ends_with(" s ago")),
        "{crm}"
    );
    assert_eq!(crm["button"], "Reset crm");

    let search_row = row(&shown, "search");
    assert_eq!(search_row["badge"], "upstream down");
    assert!(
        search_row["title"]
            .as_str()
            .is_some_and(|t| t.contains("mcp")),
        "{search_row}"
    );
    assert_eq!(
        search_row["circuits"],
        json!({ "mcp": "mcp open", "oauth": "oauth closed" })
    );
    assert_eq!(search_row["cells"][2], "circuit_open");
    assert!(
        search_row["cells"][4]
            .as_str()
            .is_some_and(|r| r.starts_with("circuit_opened · mcp")),
        "{search_row}"
    );

    let billing = row(&shown, "billing");
    assert_eq!(billing["badge"], "refresh failing");
    assert!(
        billing["title"]
            .as_str()
            .is_some_and(|t| t.contains("temporarily_unavailable")),
        "{billing}"
    );
    assert_eq!(billing["cells"][2], "degraded");
    assert!(
        billing["cells"][4]
            .as_str()
            .is_some_and(|r| r.starts_with("refresh_failed_transient · oauth · 503")),
        "{billing}"
    );

    let ledger_row = row(&shown, "ledger");
    assert_eq!(ledger_row["badge"], "", "{ledger_row}");
    assert_eq!(ledger_row["cells"][2], "healthy");

    for healthy in ["docs", "metrics-api", "ledger"] {
        let r = row(&shown, healthy);
        assert_eq!(r["badge"], "", "{r}");
        assert_eq!(r["cells"][2], "healthy");
        assert_eq!(r["cells"][4], "—", "healthy has no reason: {r}");
    }
    assert_eq!(
        row(&shown, "docs")["circuits"],
        json!({ "mcp": "mcp closed", "oauth": "oauth closed" })
    );
    assert_eq!(
        row(&shown, "metrics-api")["circuits"],
        json!({ "api": "api closed" })
    );
    assert_eq!(row(&shown, "metrics-api")["cells"][5], "none");

    // A row opens to show its event history, newest first, fetched from the admin API.
    browser
        .click("button[aria-label='History of billing']")
        .await;
    let shown = browser
        .wait_until("billing's history", SNAPSHOT, |v| {
            v["history"]
                .as_array()
                .is_some_and(|h| h.iter().any(|e| e["after"] == "billing"))
        })
        .await;
    let history = shown["history"][0]["text"].as_str().expect("history text");
    assert!(
        history.contains("refresh_failed_transient · oauth · 503"),
        "{history}"
    );

    // A state change reaches the page by polling: the docs MCP server starts failing. The
    // row is updated in place: whoever had the focus on its Reset button keeps it.
    let focused = browser
        .eval(r#"document.querySelector("button[aria-label='Reset docs']").focus(); return document.activeElement.getAttribute("aria-label");"#)
        .await;
    assert_eq!(focused, "Reset docs");
    docs_down.store(true, Ordering::SeqCst);
    assert_eq!(get(&client, &docs).await.status, 503);
    let shown = browser
        .wait_until("docs turning degraded", SNAPSHOT, |v| {
            v["rows"]
                .as_array()
                .and_then(|rows| rows.iter().find(|r| r["name"] == "docs"))
                .is_some_and(|r| r["badge"] == "degraded")
        })
        .await;
    let focused = browser
        .eval(r#"return document.activeElement.getAttribute("aria-label");"#)
        .await;
    assert_eq!(focused, "Reset docs", "a poll took the focus away");
    let docs_row = row(&shown, "docs");
    assert_eq!(
        docs_row["cells"][4],
        "upstream_failed_transient · mcp · 503"
    );
    assert_eq!(
        docs_row["cells"][5],
        "upstream_failed_transient · mcp · 503"
    );
    assert!(
        docs_row["title"]
            .as_str()
            .is_some_and(|t| t.contains("upstream request")),
        "{docs_row}"
    );

    // Every badge is on screen now: the screenshot for people to look at (no focus ring).
    browser
        .eval("document.activeElement.blur(); return null;")
        .await;
    let png = browser.screenshot().await;
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    let out = output_dir();
    std::fs::create_dir_all(&out).expect("create test-output");
    std::fs::write(out.join("status-page.png"), &png).expect("write screenshot");

    // Reset through the page: the admin wants its bearer token, the page asks for it.
    browser.click("button[aria-label='Reset crm']").await;
    browser
        .wait_until("the token form", SNAPSHOT, |v| v["authShown"] == true)
        .await;
    browser.type_into("#token", ADMIN_TOKEN).await;
    browser.click("#auth button[type=submit]").await;
    let shown = browser
        .wait_until("crm reset", SNAPSHOT, |v| {
            v["rows"]
                .as_array()
                .and_then(|rows| rows.iter().find(|r| r["name"] == "crm"))
                .is_some_and(|r| r["cells"][2] == "healthy")
        })
        .await;
    assert_eq!(row(&shown, "crm")["badge"], "");
    assert_eq!(shown["authShown"], false);
    let health = get(
        &client,
        &format!("http://{}/api/v1/connections/crm", w.admin),
    )
    .await
    .json();
    assert_eq!(health["needs_reauth"], false);
    assert_eq!(health["events"][0]["type"], "reset_admin");
    // The token stays in the page's memory, nowhere the browser would keep it.
    let stored = browser
        .eval("return localStorage.length + sessionStorage.length + document.cookie.length;")
        .await;
    assert_eq!(stored, 0);

    // The admin listener goes away: the page says its data is stale, and keeps the rows.
    drop(warden.take());
    let shown = browser
        .wait_until("the stale banner", SNAPSHOT, |v| v["stale"].is_string())
        .await;
    let stale = shown["stale"].as_str().expect("banner");
    assert!(
        stale.starts_with("Stale — admin unreachable since "),
        "{stale}"
    );
    assert_eq!(shown["rows"].as_array().map(Vec::len), Some(6));
    browser.close().await;
}

/// On a machine without chromium the browser test skips loudly, and under CI it fails:
/// re-runs it from this binary with `PATH` stripped of the browser.
#[test]
fn the_browser_test_skips_without_chromium_and_fails_under_ci() {
    tools::assert_skip_and_ci_failure(&[&tools::CHROMIUM, &tools::CHROMEDRIVER], &[TEST]);
}
