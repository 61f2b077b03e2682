//! The descriptor limit. A sidecar that runs out of descriptors fails every request of the
//! app beside it, so the soft `RLIMIT_NOFILE` is raised to the hard limit at start (as
//! nginx's `worker_rlimit_nofile` and Go's runtime do), and a `limits.max_connections` that
//! cannot fit is refused up front rather than discovered under load.

use anyhow::Context as _;
use warden_config::Config;

/// Descriptors warden needs besides client and upstream connections: the runtime, the
/// admin listener and its clients, config reads, TLS files, log output.
const RESERVE: u64 = 64;

/// What a config needs, in descriptors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Needs {
    /// Held at all times when `max_connections` clients are connected: those sockets,
    /// one listener per route, each route's idle upstream pool, and [`RESERVE`].
    pub at_least: u64,
    /// As above with every route's upstream connections open, as many as
    /// `limits.max_upstream_per_route` allows (the idle ones among them).
    pub at_full_load: u64,
}

pub(crate) fn needs(config: &Config) -> Needs {
    let clients = config.limits.max_connections as u64;
    let routes = config.routes().count() as u64;
    let limits = &config.limits;
    let pooled = routes.saturating_mul(limits.max_idle_upstream_per_route as u64);
    let open = routes.saturating_mul(
        limits
            .max_upstream_per_route
            .max(limits.max_idle_upstream_per_route) as u64,
    );
    let fixed = clients.saturating_add(routes).saturating_add(RESERVE);
    Needs {
        at_least: fixed.saturating_add(pooled),
        at_full_load: fixed.saturating_add(open),
    }
}

/// Whether `config` fits a descriptor limit of `limit`: `Err` with the reason when even the
/// client connections cannot all be held.
pub(crate) fn check(config: &Config, limit: u64) -> Result<Needs, String> {
    let needs = needs(config);
    if needs.at_least > limit {
        return Err(format!(
            "limits.max_connections is {} but the descriptor limit is {limit}: \
             {} connections, listeners and idle upstream pools need about {} descriptors. \
             Lower limits.max_connections (or max_idle_upstream_per_route), or raise the hard \
             limit (ulimit -Hn, systemd LimitNOFILE=, the container runtime's nofile ulimit)",
            config.limits.max_connections, config.limits.max_connections, needs.at_least
        ));
    }
    Ok(needs)
}

/// Raises the soft descriptor limit to the hard one and checks `config` against it; logs
/// the limit in effect.
pub(crate) fn raise_and_check(config: &Config) -> anyhow::Result<()> {
    let (soft, hard) =
        rlimit::getrlimit(rlimit::Resource::NOFILE).context("reading RLIMIT_NOFILE")?;
    let limit = rlimit::increase_nofile_limit(u64::MAX).context("raising RLIMIT_NOFILE")?;
    let needs = check(config, limit).map_err(anyhow::Error::msg)?;
    tracing::info!(
        limit,
        was = soft,
        hard,
        max_connections = config.limits.max_connections,
        "descriptor limit"
    );
    if needs.at_full_load > limit {
        tracing::warn!(
            limit,
            needed = needs.at_full_load,
            "with every route at limits.max_upstream_per_route, upstream connections could \
             run out of descriptors (they then fail as connect errors); lower \
             limits.max_connections or max_upstream_per_route, or raise the hard limit to be \
             safe"
        );
    }
    Ok(())
}

/// On reload: the limit in force now, checked without changing it.
pub(crate) fn check_current(config: &Config) -> Result<(), String> {
    let (soft, _) = rlimit::getrlimit(rlimit::Resource::NOFILE)
        .map_err(|err| format!("reading RLIMIT_NOFILE: {err}"))?;
    check(config, soft).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(max_connections: usize) -> Config {
        let mut config = warden_config::zero_config(&warden_config::ZeroConfig {
            listen: "127.0.0.1:15001".parse().unwrap(),
            upstream: "http://127.0.0.1:9".into(),
            role: warden_config::Role::Mcp,
            admin: "127.0.0.1:9901".parse().unwrap(),
            token_path: None,
        })
        .unwrap();
        config.limits.max_connections = max_connections;
        config
    }

    #[test]
    fn default_fits_a_common_hard_limit() {
        let needs = check(&config(10_000), 20_000).unwrap();
        assert_eq!(needs.at_least, 10_000 + 1 + 64 + RESERVE);
        assert_eq!(needs.at_full_load, 10_000 + 1 + 256 + RESERVE);
    }

    #[test]
    fn too_many_connections_for_the_limit_is_refused() {
        let err = check(&config(10_000), 1024).unwrap_err();
        assert!(err.contains("limits.max_connections is 10000"), "{err}");
        assert!(err.contains("descriptor limit is 1024"), "{err}");
    }
}
