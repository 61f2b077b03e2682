//! `warden run --listen --upstream`: the same defaults and upstream checks as a file.

use warden_config::{Config, ConfigError, Role, Scheme, ZeroConfig, zero_config};

fn z(upstream: &str, role: Role) -> ZeroConfig {
    ZeroConfig {
        listen: "127.0.0.1:15001".parse().unwrap(),
        upstream: upstream.into(),
        role,
        admin: "127.0.0.1:9901".parse().unwrap(),
        token_path: None,
    }
}

#[test]
fn one_connection_one_route_all_defaults() {
    let config = zero_config(&z("https://mcp.example.com", Role::Mcp)).unwrap();
    assert_eq!(config.connections.len(), 1);
    let conn = &config.connections[0];
    assert_eq!(conn.name, "default");
    assert_eq!(conn.routes.len(), 1);
    let route = &conn.routes[0];
    assert_eq!(route.role, Role::Mcp);
    assert_eq!(route.listen, "127.0.0.1:15001".parse().unwrap());
    assert_eq!(route.upstream.scheme, Scheme::Https);
    assert_eq!(route.upstream.host, "mcp.example.com");
    assert_eq!(route.token_path, None);
    assert_eq!(config.admin.listen, "127.0.0.1:9901".parse().unwrap());
    assert!(config.policy.rules.is_empty());
}

/// A minimal file and zero-config mode give the same settings.
#[test]
fn matches_a_minimal_file() {
    let from_file: Config = warden_config::parse(
        "version: 1\nconnections:\n  - name: default\n    mcp: {listen: 127.0.0.1:15001, upstream: https://mcp.example.com}\n",
        "minimal.yaml",
    )
    .unwrap();
    let zero = zero_config(&z("https://mcp.example.com", Role::Mcp)).unwrap();
    assert_eq!(zero, from_file);
}

#[test]
fn oauth_route_gets_the_documented_token_path() {
    let config = zero_config(&z("https://idp.example.com", Role::Oauth)).unwrap();
    assert_eq!(
        config.connections[0].routes[0].token_path.as_deref(),
        Some("/token")
    );
    assert_eq!(warden_config::ZERO_CONFIG_TOKEN_PATH, "/token");
}

#[test]
fn token_path_flag_sets_the_oauth_route_path() {
    let mut okta = z("https://example.okta.com", Role::Oauth);
    okta.token_path = Some("/oauth2/default/v1/token".into());
    let config = zero_config(&okta).unwrap();
    assert_eq!(
        config.connections[0].routes[0].token_path.as_deref(),
        Some("/oauth2/default/v1/token")
    );
}

#[test]
fn token_path_flag_is_checked() {
    let mut mcp = z("https://mcp.example.com", Role::Mcp);
    mcp.token_path = Some("/token".into());
    let mut bad = z("https://idp.example.com", Role::Oauth);
    bad.token_path = Some("token?x=1".into());
    for zc in [mcp, bad] {
        let Err(ConfigError::Invalid { diagnostics, .. }) = zero_config(&zc) else {
            panic!("{zc:?} must be rejected");
        };
        assert_eq!(diagnostics.len(), 1, "{diagnostics:?}");
        assert_eq!(diagnostics[0].path, "--token-path");
    }
}

#[test]
fn upstream_errors_name_the_flag() {
    for bad in [
        "ftp://x.example.com",
        "x.example.com",
        "https://x.example.com/mcp",
        "",
    ] {
        match zero_config(&z(bad, Role::Api)) {
            Err(ConfigError::Invalid { diagnostics, .. }) => {
                assert_eq!(diagnostics.len(), 1, "{bad}");
                assert_eq!(diagnostics[0].path, "--upstream");
                assert_eq!((diagnostics[0].line, diagnostics[0].column), (None, None));
            }
            other => panic!("{bad}: {other:?}"),
        }
    }
}

#[test]
fn admin_on_the_listen_port_is_refused() {
    let mut zc = z("http://127.0.0.1:8080", Role::Mcp);
    zc.admin = "0.0.0.0:15001".parse().unwrap();
    let err = zero_config(&zc).unwrap_err();
    assert_eq!(err.diagnostics()[0].path, "--admin");
    assert_eq!(
        err.render(),
        "command line: --admin: port 15001 is already used by --listen (127.0.0.1:15001)\n"
    );
}
