//! The proxy in-process: started from config text on the test's own runtime, so a test on
//! paused time drives every timer of the data path (backoff, Retry-After, timeouts, probes)
//! with tokio's clock while the bytes still cross real loopback sockets.
#![allow(dead_code)]

use std::net::SocketAddr;

use tokio_util::sync::CancellationToken;
use warden_config::Role;
use warden_proxy::Proxy;

/// A running proxy; shut down when dropped.
pub(crate) struct Running {
    pub(crate) proxy: Proxy,
    stop: CancellationToken,
}

impl Running {
    /// The bound address of `connection`'s `role` listener.
    pub(crate) async fn addr(&self, connection: &str, role: Role) -> SocketAddr {
        self.proxy
            .bound()
            .await
            .into_iter()
            .find(|b| b.connection == connection && b.role == role)
            .unwrap_or_else(|| panic!("no listener for {connection}/{role}"))
            .addr
    }

    /// Whether `connection`'s circuit on `role` is open now.
    pub(crate) fn circuit_open(&self, connection: &str, role: Role) -> bool {
        self.proxy
            .health()
            .get(connection)
            .unwrap_or_else(|| panic!("no connection {connection}"))
            .is_circuit_open(role)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Parses `yaml` and starts the proxy. The one place a test calls `Proxy::start`, so a
/// change of its shutdown handle is a change here. The metrics recorder is installed first:
/// the proxy takes its metric handles as it builds the routes.
pub(crate) async fn start(yaml: &str) -> Running {
    warden_fixtures::metrics::recorder();
    let config = warden_config::parse(yaml, "test.yaml").expect("valid test config");
    let stop = CancellationToken::new();
    let proxy = Proxy::start(&config, stop.clone())
        .await
        .expect("proxy starts");
    Running { proxy, stop }
}

/// This binary's metrics, as a scrape would show them.
pub(crate) fn scrape() -> String {
    warden_fixtures::metrics::recorder().render()
}

/// `warden_retries_total` of `connection` for `outcome` (0 when never counted).
pub(crate) fn retries(connection: &str, outcome: &str) -> f64 {
    warden_fixtures::metrics::metric(
        &scrape(),
        "warden_retries_total",
        &[("connection", connection), ("outcome", outcome)],
    )
    .unwrap_or(0.0)
}
