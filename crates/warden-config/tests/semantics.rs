//! Values and checks that only show in a whole file: forms, merging, listeners, rules.

use std::time::Duration;

use warden_config::{Config, Diagnostic, RetryMode, Role, Verdict};

const ROUTE: &str = "version: 1\nconnections:\n  - name: crm\n    mcp: {listen: 127.0.0.1:15001, upstream: https://mcp.crm.example.com}\n";

fn ok(source: &str) -> Config {
    warden_config::parse(source, "test.yaml").unwrap_or_else(|e| panic!("{}", e.render()))
}

fn errors(source: &str) -> Vec<Diagnostic> {
    match warden_config::parse(source, "test.yaml") {
        Ok(_) => panic!("accepted:\n{source}"),
        Err(e) => e.diagnostics().to_vec(),
    }
}

/// The single rule's `when`, written as a flow mapping.
fn rule(when: &str) -> String {
    format!(
        "{ROUTE}policy:\n  rules:\n    - name: r\n      when: {when}\n      then: {{verdict: transient}}\n"
    )
}

fn rule_error(when: &str) -> Diagnostic {
    let mut d = errors(&rule(when));
    assert_eq!(d.len(), 1, "{when}: {d:?}");
    d.remove(0)
}

#[test]
fn status_forms() {
    for (when, expected) in [
        ("{status: 503}", vec![(503, 503)]),
        ("{status: \"404\"}", vec![(404, 404)]),
        ("{status: \"500-511\"}", vec![(500, 511)]),
        ("{status: {from: 500, to: 599}}", vec![(500, 599)]),
        (
            "{status: [429, \"500-502\", {from: 504, to: 504}]}",
            vec![(429, 429), (500, 502), (504, 504)],
        ),
    ] {
        let config = ok(&rule(when));
        assert_eq!(config.policy.rules[0].when.status, Some(expected), "{when}");
    }
}

#[test]
fn status_errors() {
    let d = rule_error("{status: 700}");
    assert_eq!(d.path, "policy.rules[0].when.status");
    assert!(d.message.contains("700 is not an HTTP status"), "{d}");
    let d = rule_error("{status: [404, \"600-650\"]}");
    assert_eq!(d.path, "policy.rules[0].when.status[1]");
    let d = rule_error("{status: []}");
    assert!(d.message.contains("empty list can never match"), "{d}");
    let d = rule_error("{status: 5xx}");
    assert!(d.message.contains("\"500-599\""), "{d}");
}

#[test]
fn jsonrpc_forms() {
    let config = ok(&rule("{jsonrpc_error: -32603}"));
    assert_eq!(
        config.policy.rules[0].when.jsonrpc_error,
        Some(vec![(-32603, -32603)])
    );
    let config = ok(&rule(
        "{jsonrpc_error: [-32700, {from: -32099, to: -32000}]}",
    ));
    assert_eq!(
        config.policy.rules[0].when.jsonrpc_error,
        Some(vec![(-32700, -32700), (-32099, -32000)])
    );
    let d = rule_error("{jsonrpc_error: {from: -32000, to: -32099}}");
    assert!(d.message.contains("backwards"), "{d}");
}

#[test]
fn names_are_normalized() {
    let config = ok(&rule(
        "{method: [get, Post], oauth_error: Invalid_Grant, grant_type: refresh_token, header: {X-Foo: 'a+'}, request_header: {Mcp-Session-Id: '.'}}",
    ));
    let when = &config.policy.rules[0].when;
    assert_eq!(when.method, Some(vec!["GET".to_owned(), "POST".to_owned()]));
    assert_eq!(when.oauth_error, Some(vec!["invalid_grant".to_owned()]));
    assert_eq!(when.grant_type, Some(vec!["refresh_token".to_owned()]));
    assert_eq!(when.header, [("x-foo".to_owned(), "a+".to_owned())]);
    assert_eq!(
        when.request_header,
        [("mcp-session-id".to_owned(), ".".to_owned())]
    );
    let then = config.policy.rules[0].then;
    assert_eq!(
        (then.verdict, then.retry),
        (Verdict::Transient, RetryMode::Default)
    );
}

#[test]
fn rules_that_can_never_match() {
    for (when, path, needle) in [
        ("{}", "policy.rules[0].when", "no condition"),
        (
            "{role: oauth, jsonrpc_error: -1}",
            "policy.rules[0].when.jsonrpc_error",
            "role oauth",
        ),
        (
            "{role: api, jsonrpc_error: -1}",
            "policy.rules[0].when.jsonrpc_error",
            "role api",
        ),
        (
            "{role: mcp, grant_type: x}",
            "policy.rules[0].when.grant_type",
            "role mcp",
        ),
        (
            "{role: api, oauth_error: x}",
            "policy.rules[0].when.oauth_error",
            "role api",
        ),
        (
            "{jsonrpc_error: -1, oauth_error: x}",
            "policy.rules[0].when.oauth_error",
            "jsonrpc_error",
        ),
        (
            "{status: 502, error_kind: connect}",
            "policy.rules[0].when.error_kind",
            "no response",
        ),
        (
            "{header: {a: b}, error_kind: tls}",
            "policy.rules[0].when.error_kind",
            "no response",
        ),
        ("{method: []}", "policy.rules[0].when.method", "empty list"),
        (
            "{header: {}}",
            "policy.rules[0].when.header",
            "empty mapping",
        ),
        (
            "{path_prefix: mcp}",
            "policy.rules[0].when.path_prefix",
            "start with `/`",
        ),
        (
            "{oauth_error: 'invalid grant'}",
            "policy.rules[0].when.oauth_error",
            "can never match",
        ),
        (
            "{method: 'GE T'}",
            "policy.rules[0].when.method",
            "not an HTTP method",
        ),
        (
            "{header: {'bad name': x}}",
            "policy.rules[0].when.header.bad name",
            "not a valid header name",
        ),
        (
            "{request_header: {x: '['}}",
            "policy.rules[0].when.request_header.x",
            "invalid regex",
        ),
        (
            "{error_kind: disk}",
            "policy.rules[0].when.error_kind",
            "unknown value `disk`",
        ),
        (
            "{role: admin}",
            "policy.rules[0].when.role",
            "expected one of: mcp, api, oauth",
        ),
    ] {
        let d = rule_error(when);
        assert_eq!(d.path, path, "{when}: {d}");
        assert!(d.message.contains(needle), "{when}: {d}");
    }
}

#[test]
fn ok_with_never_is_fine_and_names_are_unique() {
    let config = ok(&format!(
        "{ROUTE}policy:\n  rules:\n    - {{name: a, when: {{status: 200}}, then: {{verdict: ok, retry: never}}}}\n"
    ));
    assert_eq!(config.policy.rules[0].then.retry, RetryMode::Never);
    let d = errors(&format!(
        "{ROUTE}policy:\n  rules:\n    - {{name: a, when: {{status: 200}}, then: {{verdict: ok}}}}\n    - {{name: a, when: {{status: 201}}, then: {{verdict: ok}}}}\n"
    ));
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].path, "policy.rules[1].name");
    assert_eq!((d[0].line, d[0].column), (Some(8), Some(8)));
}

#[test]
fn nested_overrides_merge_field_by_field() {
    let config = ok(
        "version: 1\ndefaults:\n  retry: {max_attempts: 4, backoff: {base: 50ms}, budget: {ratio: 0}}\n  circuit: {probe: {interval: 2s}}\nconnections:\n  - name: crm\n    mcp:\n      listen: 127.0.0.1:15001\n      upstream: https://mcp.crm.example.com\n      retry: {backoff: {max: 5s}}\n      circuit: {probe: {max_interval: 1m}}\n      timeouts: {connect: 500ms}\n",
    );
    let route = &config.connections[0].routes[0];
    assert_eq!(route.retry.max_attempts, 4);
    assert_eq!(route.retry.backoff.base, Duration::from_millis(50));
    assert_eq!(route.retry.backoff.max, Duration::from_secs(5));
    assert_eq!(route.retry.budget.ratio, 0.0);
    assert_eq!(route.retry.budget.min_per_second, 10);
    assert_eq!(route.circuit.probe.interval, Duration::from_secs(2));
    assert_eq!(route.circuit.probe.max_interval, Duration::from_secs(60));
    assert_eq!(route.timeouts.connect, Duration::from_millis(500));
    assert_eq!(route.timeouts.request, Duration::from_secs(30));
}

#[test]
fn a_bad_default_is_reported_once() {
    let d = errors(
        "version: 1\ndefaults: {timeouts: {connect: 0s}}\nconnections:\n  - name: a\n    mcp: {listen: 127.0.0.1:1, upstream: http://a}\n  - name: b\n    mcp: {listen: 127.0.0.1:2, upstream: http://b}\n",
    );
    assert_eq!(d.len(), 1, "{d:?}");
    assert_eq!(d[0].path, "defaults.timeouts.connect");
    assert_eq!(d[0].message, "must be more than 0");
}

#[test]
fn zero_drain_timeout_is_allowed() {
    let config = ok(&format!("{ROUTE}shutdown: {{drain_timeout: 0s}}\n"));
    assert_eq!(config.shutdown.drain_timeout, Duration::ZERO);
}

#[test]
fn listeners() {
    // Port 0 never collides; different addresses on one port are fine; IPv6 works.
    let config = ok(
        "version: 1\nadmin: {listen: \"[::1]:0\"}\nconnections:\n  - name: a\n    mcp: {listen: 127.0.0.1:0, upstream: http://a}\n    api: {listen: 127.0.0.1:0, upstream: http://b}\n  - name: b\n    mcp: {listen: 127.0.0.2:15001, upstream: http://a}\n    api: {listen: 127.0.0.3:15001, upstream: http://b}\n",
    );
    assert_eq!(config.admin.listen, "[::1]:0".parse().unwrap());
    // A route on the default admin port.
    let d = errors(
        "version: 1\nconnections:\n  - name: a\n    mcp: {listen: \"[::]:9901\", upstream: http://a}\n",
    );
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].path, "connections[0].mcp.listen");
    assert!(
        d[0].message
            .contains("admin.listen defaults to 127.0.0.1:9901"),
        "{}",
        d[0]
    );
}

#[test]
fn tls_settings() {
    let config = ok(
        "version: 1\nconnections:\n  - name: a\n    mcp:\n      listen: 127.0.0.1:1\n      upstream: https://a.example.com\n      tls: {ca_file: /ca.pem, client_cert: /c.pem, client_key: /k.pem, server_name: a.internal}\n",
    );
    let tls = &config.connections[0].routes[0].tls;
    assert_eq!(
        tls.ca_file.as_deref(),
        Some(std::path::Path::new("/ca.pem"))
    );
    assert_eq!(
        tls.client_key.as_deref(),
        Some(std::path::Path::new("/k.pem"))
    );
    assert_eq!(tls.server_name.as_deref(), Some("a.internal"));
    let d = errors(
        "version: 1\nconnections:\n  - name: a\n    mcp:\n      listen: 127.0.0.1:1\n      upstream: https://a.example.com\n      tls: {client_key: /k.pem}\n",
    );
    assert_eq!(d[0].path, "connections[0].mcp.tls.client_key");
    assert!(d[0].message.contains("needs client_cert"));
}

#[test]
fn ranges_and_limits() {
    for (section, path, needle) in [
        (
            "defaults: {retry: {max_attempts: 0}}",
            "defaults.retry.max_attempts",
            "between 1 and 10",
        ),
        (
            "defaults: {retry: {max_attempts: 11}}",
            "defaults.retry.max_attempts",
            "between 1 and 10",
        ),
        (
            "defaults: {retry: {budget: {ratio: 1.01}}}",
            "defaults.retry.budget.ratio",
            "between 0 and 1",
        ),
        (
            "defaults: {circuit: {probe: {path: health}}}",
            "defaults.circuit.probe.path",
            "start with `/`",
        ),
        (
            "defaults: {circuit: {probe: {interval: 10m}}}",
            "defaults.circuit.probe.interval",
            "more than probe max_interval 5m (the default)",
        ),
        (
            "defaults: {timeouts: {request: 30}}",
            "defaults.timeouts.request",
            "has no unit",
        ),
        (
            "limits: {max_header_bytes: 1023}",
            "limits.max_header_bytes",
            "at least 1024",
        ),
        (
            "limits: {max_request_body_bytes: 0}",
            "limits.max_request_body_bytes",
            "at least 1",
        ),
        (
            "limits: {max_concurrent_probes: 0}",
            "limits.max_concurrent_probes",
            "at least 1",
        ),
        (
            "events_per_connection: 10001",
            "events_per_connection",
            "between 1 and 10000",
        ),
        (
            "defaults: {circuit: {consecutive_failures: 5000000000}}",
            "defaults.circuit.consecutive_failures",
            "5000000000 is out of range: must be at most 4294967295",
        ),
        (
            "shutdown: {drain_timeout: forever}",
            "shutdown.drain_timeout",
            "not a duration",
        ),
        ("admin: {listen: 9901}", "admin.listen", "expected a string"),
    ] {
        let d = errors(&format!("{ROUTE}{section}\n"));
        assert_eq!(d.len(), 1, "{section}: {d:?}");
        assert_eq!(d[0].path, path, "{section}");
        assert!(d[0].message.contains(needle), "{section}: {}", d[0]);
    }
}

#[test]
fn routes_come_out_in_role_order() {
    let config = ok(
        "version: 1\nconnections:\n  - name: a\n    oauth: {listen: 127.0.0.1:3, upstream: http://c, token_path: /t}\n    api: {listen: 127.0.0.1:2, upstream: http://b}\n    mcp: {listen: 127.0.0.1:1, upstream: http://a}\n",
    );
    let roles: Vec<Role> = config.connections[0]
        .routes
        .iter()
        .map(|r| r.role)
        .collect();
    assert_eq!(roles, [Role::Mcp, Role::Api, Role::Oauth]);
}
