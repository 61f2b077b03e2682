//! Harness for the black-box tests of the binary: a `warden` process on loopback, its
//! logs, and its admin scrape. Upstreams, IdPs, the client and the rest of the fixtures
//! live in `warden-fixtures`, re-exported here. Everything started here is stopped when
//! its handle drops, so a failing assertion never leaves a process or a listener behind.
#![allow(dead_code, unused_imports)]

pub(crate) use warden_fixtures::client::{
    Answer, DEADLINE, HttpClient, eventually, get, h2_client, http_client, raw_exchange, send,
    token, token_at,
};
pub(crate) use warden_fixtures::config::one_route;
pub(crate) use warden_fixtures::metrics::metric;
pub(crate) use warden_fixtures::{idp, mcp, pki, upstream};

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub(crate) fn warden_bin() -> &'static str {
    env!("CARGO_BIN_EXE_warden")
}

/// A running `warden run` process.
pub(crate) struct Warden {
    child: Option<Child>,
    pub(crate) dir: tempfile::TempDir,
    pub(crate) admin: SocketAddr,
    /// (connection, role) → bound listener address.
    pub(crate) routes: HashMap<(String, String), SocketAddr>,
    /// Log lines seen so far (JSON), for assertions on what was logged.
    logs: mpsc::Receiver<String>,
    pub(crate) seen_logs: Vec<String>,
}

impl Warden {
    /// Starts warden with `yaml` as its config and waits until every listener is bound.
    pub(crate) fn start(yaml: &str) -> Warden {
        Self::start_with_env(yaml, &[])
    }

    pub(crate) fn start_with_env(yaml: &str, env: &[(&str, &str)]) -> Warden {
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
    pub(crate) fn start_args(args: &[&str], expected_routes: usize) -> Warden {
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

    pub(crate) fn route(&self, connection: &str, role: &str) -> SocketAddr {
        *self
            .routes
            .get(&(connection.to_owned(), role.to_owned()))
            .unwrap_or_else(|| panic!("no listener for {connection}/{role}: {:?}", self.routes))
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    pub(crate) fn signal(&self, sig: &str) {
        // The shell's builtin `kill`: no dependency on a procps binary being installed.
        let status = Command::new("sh")
            .args(["-c", &format!("kill -{sig} {}", self.pid())])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{sig} failed");
    }

    /// Waits for the process to exit on its own, within the deadline.
    pub(crate) fn wait_exit(&mut self, within: Duration) -> ExitStatus {
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
    pub(crate) fn logs(&mut self) -> &[String] {
        while let Ok(line) = self.logs.try_recv() {
            self.seen_logs.push(line);
        }
        &self.seen_logs
    }

    pub(crate) fn config_path(&self) -> PathBuf {
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
pub(crate) fn run_warden(args: &[&str], cwd: &Path) -> (i32, String, String) {
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

/// The admin listener's Prometheus scrape.
pub(crate) async fn scrape(admin: SocketAddr) -> String {
    get(&http_client(), &format!("http://{admin}/metrics"))
        .await
        .text()
}
