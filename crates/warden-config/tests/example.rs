//! The shipped example, /proxy.yaml, parses to the values it says.

use std::path::PathBuf;
use std::time::Duration;

use warden_config::{ErrorKind, RetryMode, Role, Scheme, Verdict};

fn example() -> warden_config::Config {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../proxy.yaml");
    match warden_config::load(&path) {
        Ok(config) => config,
        Err(err) => panic!("{}", err.render()),
    }
}

#[test]
fn first_line_points_editors_at_the_schema() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../proxy.yaml");
    let source = std::fs::read_to_string(path).unwrap();
    assert_eq!(
        source.lines().next(),
        Some("# yaml-language-server: $schema=./schema/proxy.schema.json")
    );
}

#[test]
fn top_level_sections() {
    let c = example();
    assert_eq!(c.admin.listen, "127.0.0.1:9901".parse().unwrap());
    assert_eq!(c.admin.token_file, None);
    assert_eq!(c.limits.max_concurrent_retries, 5);
    assert_eq!(c.limits.max_concurrent_probes, 5);
    assert_eq!(c.limits.max_request_body_bytes, 10_485_760);
    assert_eq!(c.limits.max_header_bytes, 65_536);
    assert_eq!(c.limits.max_connections, 10_000);
    assert_eq!(c.limits.max_idle_upstream_per_route, 64);
    assert_eq!(c.limits.max_upstream_per_route, 256);
    assert_eq!(c.events_per_connection, 50);
    assert_eq!(c.shutdown.drain_timeout, Duration::from_secs(30));
}

#[test]
fn crm_routes_merge_overrides_over_defaults() {
    let c = example();
    let names: Vec<_> = c.connections.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["crm", "billing"]);
    let crm = &c.connections[0];
    let roles: Vec<_> = crm.routes.iter().map(|r| r.role).collect();
    assert_eq!(roles, [Role::Mcp, Role::Oauth]);

    let mcp = crm.route(Role::Mcp).unwrap();
    assert_eq!(mcp.listen, "127.0.0.1:15001".parse().unwrap());
    assert_eq!(mcp.upstream.scheme, Scheme::Https);
    assert_eq!(mcp.upstream.host, "mcp.crm.example.com");
    assert_eq!(mcp.upstream.port, 443);
    assert_eq!(mcp.upstream.to_string(), "https://mcp.crm.example.com");
    assert_eq!(mcp.tls, Default::default());
    assert_eq!(mcp.token_path, None);
    // Overridden...
    assert_eq!(mcp.retry.max_attempts, 2);
    // ...and everything else inherited.
    assert_eq!(mcp.retry.backoff.base, Duration::from_millis(100));
    assert_eq!(mcp.retry.backoff.max, Duration::from_secs(2));
    assert_eq!(mcp.retry.budget.ratio, 0.2);
    assert_eq!(mcp.retry.budget.min_per_second, 10);
    assert_eq!(mcp.retry.max_body_bytes, 65_536);
    assert_eq!(mcp.timeouts.connect, Duration::from_secs(2));
    assert_eq!(mcp.timeouts.request, Duration::from_secs(30));
    assert_eq!(mcp.circuit.consecutive_failures, 5);
    assert_eq!(mcp.circuit.probe.path, "/");
    assert_eq!(mcp.circuit.probe.interval, Duration::from_secs(1));
    assert_eq!(mcp.circuit.probe.max_interval, Duration::from_secs(300));

    let oauth = crm.route(Role::Oauth).unwrap();
    assert_eq!(oauth.listen, "127.0.0.1:15002".parse().unwrap());
    assert_eq!(oauth.upstream.host, "idp.example.com");
    assert_eq!(oauth.token_path.as_deref(), Some("/oauth2/token"));
    assert_eq!(oauth.timeouts.request, Duration::from_secs(10));
    assert_eq!(oauth.timeouts.connect, Duration::from_secs(2));
    assert_eq!(oauth.retry.max_attempts, 3);
}

#[test]
fn billing_api_route() {
    let c = example();
    let billing = &c.connections[1];
    assert_eq!(billing.routes.len(), 1);
    let api = billing.route(Role::Api).unwrap();
    assert_eq!(api.upstream.port, 8443);
    assert_eq!(
        api.upstream.authority.as_str(),
        "api.billing.example.com:8443"
    );
    assert_eq!(api.circuit.consecutive_failures, 6);
    assert_eq!(api.circuit.probe.path, "/healthz");
    assert_eq!(api.circuit.probe.interval, Duration::from_secs(1));
    assert_eq!(c.routes().count(), 3);
}

#[test]
fn rules() {
    let c = example();
    let rules = &c.policy.rules;
    let names: Vec<_> = rules.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "scope-change-is-terminal",
            "flaky-tool-server",
            "tool-overloaded",
            "device-flow-pending",
            "maintenance-window",
            "no-retry-on-post-timeout",
        ]
    );
    let scope = &rules[0];
    assert_eq!(scope.when.role, Some(Role::Oauth));
    assert_eq!(scope.when.status, Some(vec![(400, 400)]));
    assert_eq!(
        scope.when.oauth_error,
        Some(vec!["invalid_scope".to_owned()])
    );
    assert_eq!(scope.then.verdict, Verdict::Terminal);
    assert_eq!(scope.then.retry, RetryMode::Default);

    let flaky = &rules[1];
    assert_eq!(flaky.when.status, Some(vec![(500, 599)]));
    assert_eq!(flaky.then.retry, RetryMode::Never);

    let overloaded = &rules[2];
    assert_eq!(overloaded.when.method, Some(vec!["POST".to_owned()]));
    assert_eq!(overloaded.when.path_prefix.as_deref(), Some("/mcp"));
    assert_eq!(overloaded.when.jsonrpc_error, Some(vec![(-32099, -32000)]));
    assert_eq!(
        overloaded.when.request_header,
        [("mcp-session-id".to_owned(), ".+".to_owned())]
    );

    let device = &rules[3];
    assert_eq!(
        device.when.grant_type,
        Some(vec![
            "urn:ietf:params:oauth:grant-type:device_code".to_owned()
        ])
    );
    assert_eq!(device.then.verdict, Verdict::Ok);

    let maintenance = &rules[4];
    assert_eq!(maintenance.when.status, Some(vec![(503, 503), (520, 530)]));
    assert_eq!(
        maintenance.when.header,
        [("x-maintenance".to_owned(), "^(true|1)$".to_owned())]
    );

    let timeouts = &rules[5];
    assert_eq!(
        timeouts.when.error_kind,
        Some(vec![ErrorKind::Timeout, ErrorKind::Reset])
    );
}
