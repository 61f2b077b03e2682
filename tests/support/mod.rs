//! Shared harness for the black-box tests: a warden process on loopback, scripted upstreams,
//! and a plain HTTP client. Everything started here is stopped when its handle drops, so a
//! failing assertion never leaves a process or a listener behind.
#![allow(dead_code)]

pub mod pki;
pub mod upstream;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// How long a test waits for anything that should happen promptly. Generous so a loaded CI
/// machine does not flake; a hang still fails instead of blocking the suite.
pub const DEADLINE: Duration = Duration::from_secs(10);

pub fn warden_bin() -> &'static str {
    env!("CARGO_BIN_EXE_warden")
}

/// A running `warden run` process.
pub struct Warden {
    child: Option<Child>,
    pub dir: tempfile::TempDir,
    pub admin: SocketAddr,
    /// (connection, role) → bound listener address.
    pub routes: HashMap<(String, String), SocketAddr>,
    /// Log lines seen so far (JSON), for assertions on what was logged.
    logs: mpsc::Receiver<String>,
    pub seen_logs: Vec<String>,
}

impl Warden {
    /// Starts warden with `yaml` as its config and waits until every listener is bound.
    pub fn start(yaml: &str) -> Warden {
        Self::start_with_env(yaml, &[])
    }

    pub fn start_with_env(yaml: &str, env: &[(&str, &str)]) -> Warden {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = dir.path().join("proxy.yaml");
        std::fs::write(&config, yaml).expect("write config");
        let expected_routes = count_routes(yaml);
        let mut cmd = Command::new(warden_bin());
        cmd.args(["--log-format", "json", "run", "--config"])
            .arg(&config)
            .env_remove("WARDEN_CONFIG")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        Self::spawn(cmd, dir, expected_routes)
    }

    /// Starts warden with explicit arguments after `run` (zero-config mode).
    pub fn start_args(args: &[&str], expected_routes: usize) -> Warden {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut cmd = Command::new(warden_bin());
        cmd.args(["--log-format", "json", "run"])
            .args(args)
            .env_remove("WARDEN_CONFIG")
            .env("RUST_LOG", "info")
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        Self::spawn(cmd, dir, expected_routes)
    }

    fn spawn(mut cmd: Command, dir: tempfile::TempDir, expected_routes: usize) -> Warden {
        let mut child = cmd.spawn().expect("spawn warden");
        let stderr = child.stderr.take().expect("piped stderr");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut warden = Warden {
            child: Some(child),
            dir,
            admin: "0.0.0.0:0".parse().expect("addr"),
            routes: HashMap::new(),
            logs: rx,
            seen_logs: Vec::new(),
        };
        let deadline = Instant::now() + DEADLINE;
        let mut admin = None;
        while admin.is_none() || warden.routes.len() < expected_routes {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = match warden.logs.recv_timeout(left) {
                Ok(line) => line,
                Err(_) => panic!(
                    "warden did not start within {DEADLINE:?}; exit: {:?}; logs:\n{}",
                    warden
                        .child
                        .as_mut()
                        .and_then(|c| c.try_wait().ok().flatten()),
                    warden.seen_logs.join("\n")
                ),
            };
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) {
                let addr = v["addr"]
                    .as_str()
                    .and_then(|a| a.parse::<SocketAddr>().ok());
                match (v["message"].as_str(), addr) {
                    (Some("admin listening"), Some(addr)) => admin = Some(addr),
                    (Some("listening"), Some(addr)) => {
                        let conn = v["connection"].as_str().unwrap_or_default().to_owned();
                        let role = v["role"].as_str().unwrap_or_default().to_owned();
                        warden.routes.insert((conn, role), addr);
                    }
                    _ => {}
                }
            }
            warden.seen_logs.push(line);
        }
        warden.admin = admin.expect("admin address");
        warden
    }

    pub fn route(&self, connection: &str, role: &str) -> SocketAddr {
        *self
            .routes
            .get(&(connection.to_owned(), role.to_owned()))
            .unwrap_or_else(|| panic!("no listener for {connection}/{role}: {:?}", self.routes))
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    pub fn signal(&self, sig: &str) {
        // The shell's builtin `kill`: no dependency on a procps binary being installed.
        let status = Command::new("sh")
            .args(["-c", &format!("kill -{sig} {}", self.pid())])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{sig} failed");
    }

    /// Waits for the process to exit on its own, within the deadline.
    pub fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        let deadline = Instant::now() + within;
        let child = self.child.as_mut().expect("running");
        loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                self.child = None;
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "warden did not exit within {within:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Every log line so far, including those still buffered.
    pub fn logs(&mut self) -> &[String] {
        while let Ok(line) = self.logs.try_recv() {
            self.seen_logs.push(line);
        }
        &self.seen_logs
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("proxy.yaml")
    }
}

impl Drop for Warden {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn count_routes(yaml: &str) -> usize {
    yaml.lines()
        .filter(|l| {
            let t = l.trim_start();
            t.starts_with("mcp:") || t.starts_with("api:") || t.starts_with("oauth:")
        })
        .count()
}

/// Runs `warden` with `args` to completion and returns (exit code, stdout, stderr).
pub fn run_warden(args: &[&str], cwd: &Path) -> (i32, String, String) {
    let out = Command::new(warden_bin())
        .args(args)
        .current_dir(cwd)
        .env_remove("WARDEN_CONFIG")
        .output()
        .expect("run warden");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

pub type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// An HTTP/1.1 client that keeps nothing from one test to the next.
pub fn http_client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

/// An HTTP/2 client with prior knowledge (h2c), as a local app speaking HTTP/2 would be.
pub fn h2_client() -> HttpClient {
    Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http()
}

pub struct Answer {
    pub status: http::StatusCode,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

impl Answer {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", self.text()))
    }
}

/// Sends one request and reads the whole answer, within the deadline.
pub async fn send(client: &HttpClient, req: http::Request<Full<Bytes>>) -> Answer {
    tokio::time::timeout(DEADLINE, async {
        let resp = client.request(req).await.expect("request failed");
        let (parts, body) = resp.into_parts();
        let body = body.collect().await.expect("read body").to_bytes();
        Answer {
            status: parts.status,
            headers: parts.headers,
            body,
        }
    })
    .await
    .expect("request did not finish within the deadline")
}

pub async fn get(client: &HttpClient, url: &str) -> Answer {
    send(
        client,
        http::Request::get(url)
            .body(Full::new(Bytes::new()))
            .expect("request"),
    )
    .await
}

/// Polls `f` until it returns true or the deadline passes.
pub async fn eventually<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        if f().await {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A minimal config with one connection `t` and one route of `role` to `upstream`.
pub fn one_route(role: &str, upstream: &str, extra_route: &str) -> String {
    let token = if role == "oauth" {
        "\n      token_path: /token"
    } else {
        ""
    };
    format!(
        "version: 1
admin:
  listen: 127.0.0.1:0
connections:
  - name: t
    {role}:
      listen: 127.0.0.1:0
      upstream: {upstream}{token}{extra_route}
"
    )
}

/// A raw HTTP/1.1 exchange over a fresh TCP connection, for requests a well-behaved client
/// library refuses to send (absolute-form targets, CONNECT, oversized or chunked bodies).
/// Returns the status code and the whole response text read until the answer is complete.
pub async fn raw_exchange(addr: SocketAddr, request: &[u8]) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    tokio::time::timeout(DEADLINE, async {
        let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
        // The server may answer and close before it has read everything we send; that is
        // fine, the answer is what we check.
        let _ = stream.write_all(request).await;
        let mut buf = Vec::new();
        let mut chunk = [0u8; 8192];
        loop {
            let n = match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            buf.extend_from_slice(&chunk[..n]);
            if let Some(head_end) = find(&buf, b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
                let len = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse::<usize>().ok())
                    .unwrap_or(0);
                if buf.len() >= head_end + 4 + len {
                    break;
                }
            }
        }
        let text = String::from_utf8_lossy(&buf).into_owned();
        let status = text
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no status line in {text:?}"));
        (status, text)
    })
    .await
    .expect("raw exchange within the deadline")
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The value of the series `name` whose labels include all of `labels` (order-insensitive),
/// from a Prometheus text scrape; None when absent.
pub fn metric(scrape: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    scrape.lines().find_map(|line| {
        if line.starts_with('#') {
            return None;
        }
        let (series, value) = line.rsplit_once(' ')?;
        let (series_name, label_text) = match series.split_once('{') {
            Some((n, rest)) => (n, rest.strip_suffix('}')?),
            None => (series, ""),
        };
        if series_name != name {
            return None;
        }
        let have: Vec<(&str, &str)> = label_text
            .split("\",")
            .filter(|p| !p.is_empty())
            .filter_map(|p| {
                let (k, v) = p.split_once("=\"")?;
                Some((k, v.trim_end_matches('"')))
            })
            .collect();
        labels
            .iter()
            .all(|want| have.contains(want))
            .then(|| value.parse().ok())
            .flatten()
    })
}

pub async fn scrape(admin: SocketAddr) -> String {
    get(&http_client(), &format!("http://{admin}/metrics"))
        .await
        .text()
}
