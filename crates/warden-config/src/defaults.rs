//! The values proxy.yaml falls back to (README › proxy.yaml), as `Default` impls on the model so that
//! zero-config mode, tests and other crates build the same config a minimal file gives.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

use crate::model::{
    Admin, Backoff, Budget, Circuit, Limits, Log, Probe, Retry, Shutdown, Timeouts,
};

/// Loopback, so the admin API is reachable from inside the pod only unless configured.
pub const DEFAULT_ADMIN_LISTEN: SocketAddr =
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 9901));
/// Enough history to see what led to a state, small enough to keep for every connection.
pub const DEFAULT_EVENTS_PER_CONNECTION: usize = 50;
/// Token path of an oauth route in zero-config mode, where there is no file to give one.
pub const ZERO_CONFIG_TOKEN_PATH: &str = "/token";

impl Default for Admin {
    fn default() -> Self {
        Admin {
            listen: DEFAULT_ADMIN_LISTEN,
            token_file: None,
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_concurrent_retries: 5,
            max_concurrent_probes: 5,
            max_request_body_bytes: 10 * 1024 * 1024,
            max_header_bytes: 64 * 1024,
            max_connections: 10_000,
            max_idle_upstream_per_route: 64,
            max_upstream_per_route: 256,
        }
    }
}

/// The access log is on by default: a sidecar's per-request line is what ties an app's
/// failure to an upstream answer.
impl Default for Log {
    fn default() -> Self {
        Log { access: true }
    }
}

impl Default for Shutdown {
    fn default() -> Self {
        Shutdown {
            drain_timeout: Duration::from_secs(30),
        }
    }
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(2),
            request: Duration::from_secs(30),
            client_idle: Duration::from_secs(60),
        }
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            base: Duration::from_millis(100),
            max: Duration::from_secs(2),
        }
    }
}

impl Default for Budget {
    fn default() -> Self {
        Budget {
            ratio: 0.2,
            min_per_second: 10,
        }
    }
}

impl Default for Retry {
    fn default() -> Self {
        Retry {
            max_attempts: 3,
            backoff: Backoff::default(),
            budget: Budget::default(),
            max_body_bytes: 64 * 1024,
        }
    }
}

impl Default for Probe {
    fn default() -> Self {
        Probe {
            path: "/".into(),
            interval: Duration::from_secs(1),
            max_interval: Duration::from_secs(5 * 60),
        }
    }
}

impl Default for Circuit {
    fn default() -> Self {
        Circuit {
            consecutive_failures: 5,
            probe: Probe::default(),
        }
    }
}
