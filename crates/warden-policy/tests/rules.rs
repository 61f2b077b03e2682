//! `policy.rules` from YAML (parsed and validated by warden-config): they run before the
//! built-in tables, the first match wins, and `then` reaches the decision intact.

mod common;

use common::{Ex, api, mcp, net, oauth_other, token, token_net};
use warden_config::{ErrorKind, RetryMode, Role, Rule, Then, Verdict, When};
use warden_policy::{Event, Policy, PolicyError, RuleRef};

const CONFIG: &str = r#"
version: 1
connections:
  - name: crm
    mcp: {listen: 127.0.0.1:15001, upstream: https://mcp.crm.example.com}
    api: {listen: 127.0.0.1:15003, upstream: https://api.crm.example.com}
    oauth: {listen: 127.0.0.1:15002, upstream: https://idp.example.com, token_path: /oauth2/token}
policy:
  rules:
    - name: scope-change-is-terminal            # 0
      when: { role: oauth, status: 400, oauth_error: [invalid_scope] }
      then: { verdict: terminal }
    - name: flaky-tool-server                   # 1
      when: { role: mcp, status: "500-599" }
      then: { verdict: transient, retry: never }
    - name: shadowed-by-flaky                   # 2: never reached for mcp 503
      when: { role: mcp, status: 503 }
      then: { verdict: ok }
    - name: maintenance-page                    # 3: any role, response header regex
      when: { status: 503, header: { x-maintenance: "^(?i)yes$" } }
      then: { verdict: client_error, retry: never }
    - name: tenant-server-errors                # 4
      when: { role: mcp, jsonrpc_error: { from: -32099, to: -32000 } }
      then: { verdict: client_error }
    - name: machine-clients-retry-401           # 5
      when: { role: oauth, grant_type: [client_credentials], status: 401 }
      then: { verdict: transient }
    - name: bad-cert-is-terminal                # 6
      when: { role: oauth, error_kind: [tls] }
      then: { verdict: terminal }
    - name: health-404-is-fine                  # 7
      when: { method: [get, HEAD], path_prefix: /health, status: 404 }
      then: { verdict: ok }
    - name: beta-tenants-403                    # 8
      when: { role: api, status: 403, request_header: { x-tenant: "^beta-" } }
      then: { verdict: client_error }
    - name: invalid-client-retry                # 9: matches the normalized 401 code too
      when: { oauth_error: [INVALID_CLIENT] }
      then: { verdict: transient, retry: never }
    - name: upstream-timeouts-never-retry       # 10
      when: { error_kind: [timeout, reset] }
      then: { verdict: transient, retry: never }
    - name: 2xx-without-token-ok                # 11: a silly rule, to test events
      when: { role: oauth, status: "200-299" }
      then: { verdict: ok }
"#;

fn policy() -> Policy {
    let config =
        warden_config::parse(CONFIG, "rules.yaml").unwrap_or_else(|e| panic!("{}", e.render()));
    assert_eq!(config.policy.rules.len(), 12);
    Policy::compile(&config.policy.rules).expect("compiles")
}

fn user(index: usize, name: &str) -> RuleRef {
    RuleRef::User(index, name.into())
}

struct Want {
    verdict: Verdict,
    retry: RetryMode,
    rule: RuleRef,
    event: Option<Event>,
    code: Option<&'static str>,
}

fn want(
    verdict: Verdict,
    retry: RetryMode,
    rule: RuleRef,
    event: Option<Event>,
    code: Option<&'static str>,
) -> Want {
    Want {
        verdict,
        retry,
        rule,
        event,
        code,
    }
}

#[test]
fn rules_override_builtins_first_match_wins() {
    use RetryMode::{Default as Dflt, Never};
    use Verdict::*;
    let policy = policy();
    let builtin = RuleRef::Builtin;
    let rft = Some(Event::RefreshFailedTransient);
    let rfr = Some(Event::RefreshFailedRevoked);
    let cases: Vec<(&str, Ex, Want)> = vec![
        // 0: the README's example: a built-in transient made terminal.
        (
            "400 invalid_scope",
            token(400).error("invalid_scope"),
            want(
                Terminal,
                Dflt,
                user(0, "scope-change-is-terminal"),
                rfr,
                Some("invalid_scope"),
            ),
        ),
        (
            "400 INVALID_SCOPE (case-insensitive)",
            token(400).error("INVALID_SCOPE"),
            want(
                Terminal,
                Dflt,
                user(0, "scope-change-is-terminal"),
                rfr,
                Some("invalid_scope"),
            ),
        ),
        (
            "200 error invalid_scope counts as 400",
            token(200).error("invalid_scope"),
            want(
                Terminal,
                Dflt,
                user(0, "scope-change-is-terminal"),
                rfr,
                Some("invalid_scope"),
            ),
        ),
        (
            "400 invalid_request: no rule",
            token(400).error("invalid_request"),
            want(
                Transient,
                Dflt,
                builtin("token.400_retryable"),
                rft,
                Some("invalid_request"),
            ),
        ),
        // 1 and 2: retry: never survives; the later, narrower rule is shadowed.
        (
            "mcp 503",
            mcp(503),
            want(Transient, Never, user(1, "flaky-tool-server"), None, None),
        ),
        (
            "mcp 599",
            mcp(599),
            want(Transient, Never, user(1, "flaky-tool-server"), None, None),
        ),
        (
            "mcp 503 maintenance: rule 1 is first",
            mcp(503).resp("x-maintenance", "yes"),
            want(Transient, Never, user(1, "flaky-tool-server"), None, None),
        ),
        // 3: header regex on another role.
        (
            "api 503 maintenance",
            api(503).resp("X-Maintenance", "YES"),
            want(ClientError, Never, user(3, "maintenance-page"), None, None),
        ),
        (
            "api 503 maintenance=no",
            api(503).resp("x-maintenance", "no"),
            want(Transient, Dflt, builtin("http.5xx"), None, None),
        ),
        (
            "api 503 no header",
            api(503),
            want(Transient, Dflt, builtin("http.5xx"), None, None),
        ),
        // 4: JSON-RPC ranges (built-ins ignore them).
        (
            "mcp 200 -32001",
            mcp(200).jsonrpc(-32001),
            want(
                ClientError,
                Dflt,
                user(4, "tenant-server-errors"),
                None,
                None,
            ),
        ),
        (
            "mcp 200 -32603",
            mcp(200).jsonrpc(-32603),
            want(Ok, Dflt, builtin("http.2xx"), None, None),
        ),
        (
            "mcp 200 no error",
            mcp(200),
            want(Ok, Dflt, builtin("http.2xx"), None, None),
        ),
        // 5: grant type, compared case-insensitively; the event follows the verdict.
        (
            "401 client_credentials",
            token(401).grant(Some("client_credentials")),
            want(
                Transient,
                Dflt,
                user(5, "machine-clients-retry-401"),
                rft,
                Some("invalid_client"),
            ),
        ),
        (
            "401 CLIENT_CREDENTIALS",
            token(401).grant(Some("CLIENT_CREDENTIALS")),
            want(
                Transient,
                Dflt,
                user(5, "machine-clients-retry-401"),
                rft,
                Some("invalid_client"),
            ),
        ),
        // 9 catches 401 refresh_token: its stored code is invalid_client.
        (
            "401 refresh_token (normalized code)",
            token(401),
            want(
                Transient,
                Never,
                user(9, "invalid-client-retry"),
                rft,
                Some("invalid_client"),
            ),
        ),
        (
            "401 error invalid_token: no rule",
            token(401).error("invalid_token"),
            want(
                Terminal,
                Dflt,
                builtin("token.401"),
                rfr,
                Some("invalid_token"),
            ),
        ),
        (
            "400 Invalid_Client",
            token(400).error("Invalid_Client"),
            want(
                Transient,
                Never,
                user(9, "invalid-client-retry"),
                rft,
                Some("invalid_client"),
            ),
        ),
        (
            "oauth non-token 401 has no oauth code",
            oauth_other(401),
            want(Auth, Dflt, builtin("http.auth"), None, None),
        ),
        // 6 and 10: network faults.
        (
            "token tls",
            token_net(ErrorKind::Tls),
            want(Terminal, Dflt, user(6, "bad-cert-is-terminal"), rfr, None),
        ),
        (
            "mcp tls: rule 6 is oauth only",
            net(Role::Mcp, ErrorKind::Tls),
            want(Transient, Dflt, builtin("network.tls"), None, None),
        ),
        (
            "mcp timeout",
            net(Role::Mcp, ErrorKind::Timeout),
            want(
                Transient,
                Never,
                user(10, "upstream-timeouts-never-retry"),
                None,
                None,
            ),
        ),
        (
            "token reset",
            token_net(ErrorKind::Reset),
            want(
                Transient,
                Never,
                user(10, "upstream-timeouts-never-retry"),
                rft,
                None,
            ),
        ),
        (
            "api connect: no rule",
            net(Role::Api, ErrorKind::Connect),
            want(Transient, Dflt, builtin("network.connect"), None, None),
        ),
        // 7: method list (upper-cased by config) and path prefix.
        (
            "GET /health/live 404",
            api(404).path("/health/live"),
            want(Ok, Dflt, user(7, "health-404-is-fine"), None, None),
        ),
        (
            "HEAD /healthz 404",
            mcp(404).method("HEAD").path("/healthz"),
            want(Ok, Dflt, user(7, "health-404-is-fine"), None, None),
        ),
        (
            "POST /health 404",
            api(404).method("POST").path("/health"),
            want(ClientError, Dflt, builtin("http.4xx"), None, None),
        ),
        (
            "GET /v1/health 404",
            api(404).path("/v1/health"),
            want(ClientError, Dflt, builtin("http.4xx"), None, None),
        ),
        // 8: request header regex.
        (
            "api 403 beta tenant",
            api(403).req("x-tenant", "beta-42"),
            want(ClientError, Dflt, user(8, "beta-tenants-403"), None, None),
        ),
        (
            "api 403 prod tenant",
            api(403).req("x-tenant", "prod-1"),
            want(Auth, Dflt, builtin("http.auth"), None, None),
        ),
        (
            "mcp 403 beta tenant: rule 8 is api only",
            mcp(403).req("x-tenant", "beta-42"),
            want(Auth, Dflt, builtin("http.auth"), None, None),
        ),
        // 11: a rule turning a token 2xx without token into ok still yields a success event.
        (
            "200 neither, refresh grant",
            token(200),
            want(
                Ok,
                Dflt,
                user(11, "2xx-without-token-ok"),
                Some(Event::RefreshSucceeded),
                None,
            ),
        ),
        (
            "200 neither, code grant",
            token(200).grant(Some("authorization_code")),
            want(
                Ok,
                Dflt,
                user(11, "2xx-without-token-ok"),
                Some(Event::ConnectCompleted),
                None,
            ),
        ),
        (
            "200 access_token",
            token(200).access_token(),
            want(
                Ok,
                Dflt,
                user(11, "2xx-without-token-ok"),
                Some(Event::RefreshSucceeded),
                None,
            ),
        ),
        // Untouched built-ins.
        (
            "400 invalid_grant",
            token(400).error("invalid_grant"),
            want(
                Terminal,
                Dflt,
                builtin("token.invalid_grant"),
                rfr,
                Some("invalid_grant"),
            ),
        ),
        (
            "mcp 404 session",
            mcp(404).req("mcp-session-id", "s"),
            want(
                ClientError,
                Dflt,
                builtin("http.session_expired"),
                None,
                Some("session_expired"),
            ),
        ),
    ];
    let mut failures = Vec::new();
    for (what, ex, w) in &cases {
        let d = policy.classify(&ex.obs());
        let got = (
            d.verdict,
            d.retry,
            &d.rule,
            d.event,
            d.code.as_ref().map(|c| c.sanitized.as_str()),
        );
        let exp = (w.verdict, w.retry, &w.rule, w.event, w.code);
        if got != exp {
            failures.push(format!("{what}:\n    got  {got:?}\n    want {exp:?}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

/// A token request decided by a user rule with a verdict the built-ins never give a token
/// request still records a (transient) event, so health tracking sees every token answer.
#[test]
fn user_verdicts_map_to_token_events() {
    for (verdict, event) in [
        (Verdict::Ok, Event::RefreshSucceeded),
        (Verdict::Terminal, Event::RefreshFailedRevoked),
        (Verdict::Transient, Event::RefreshFailedTransient),
        (Verdict::Auth, Event::RefreshFailedTransient),
        (Verdict::ClientError, Event::RefreshFailedTransient),
    ] {
        let rules = [Rule {
            name: "all-403".into(),
            when: When {
                status: Some(vec![(403, 403)]),
                ..When::default()
            },
            then: Then {
                verdict,
                retry: RetryMode::Default,
            },
        }];
        let policy = Policy::compile(&rules).expect("compiles");
        let d = policy.classify(&token(403).obs());
        assert_eq!((d.verdict, d.event), (verdict, Some(event)));
        // mcp requests get no event from this crate, whatever decided.
        let d = policy.classify(&mcp(403).obs());
        assert_eq!((d.verdict, d.event), (verdict, None));
    }
}

/// The README's example config (README › proxy.yaml) loads and behaves as its comments say.
#[test]
fn spec_example_rules() {
    let source = format!(
        "{}\n",
        r#"version: 1
connections:
  - name: crm
    mcp: { listen: 127.0.0.1:15001, upstream: https://mcp.crm.example.com }
    oauth: { listen: 127.0.0.1:15002, upstream: https://idp.example.com, token_path: /oauth2/token }
policy:
  rules:
    - name: scope-change-is-terminal
      when: { role: oauth, status: 400, oauth_error: [invalid_scope] }
      then: { verdict: terminal }
    - name: flaky-tool-server
      when: { role: mcp, status: "500-599" }
      then: { verdict: transient, retry: never }"#
    );
    let config =
        warden_config::parse(&source, "spec.yaml").unwrap_or_else(|e| panic!("{}", e.render()));
    let policy = Policy::compile(&config.policy.rules).expect("compiles");
    assert_eq!(policy.len(), 2);
    let d = policy.classify(&token(400).error("invalid_scope").obs());
    assert_eq!(
        (d.verdict, d.event),
        (Verdict::Terminal, Some(Event::RefreshFailedRevoked))
    );
    let d = policy.classify(&mcp(502).obs());
    assert_eq!((d.verdict, d.retry), (Verdict::Transient, RetryMode::Never));
    // The oauth route's 502 is not an mcp answer: built-in, default retry.
    let d = policy.classify(&token(502).obs());
    assert_eq!(
        (d.verdict, d.retry, d.rule),
        (
            Verdict::Transient,
            RetryMode::Default,
            RuleRef::Builtin("token.5xx")
        )
    );
}

/// A rule that bypassed warden-config's checks is an error, never a panic.
#[test]
fn bad_regex_is_an_error() {
    let rules = [
        Rule {
            name: "fine".into(),
            when: When {
                status: Some(vec![(500, 599)]),
                ..When::default()
            },
            then: Then {
                verdict: Verdict::Transient,
                retry: RetryMode::Default,
            },
        },
        Rule {
            name: "broken".into(),
            when: When {
                request_header: vec![("x-a".into(), "(unclosed".into())],
                ..When::default()
            },
            then: Then {
                verdict: Verdict::Ok,
                retry: RetryMode::Default,
            },
        },
    ];
    let err = Policy::compile(&rules).expect_err("must fail");
    let PolicyError::Regex {
        index,
        ref rule,
        key,
        ref header,
        ..
    } = err;
    assert_eq!(
        (index, rule.as_str(), key, header.as_str()),
        (1, "broken", "request_header", "x-a")
    );
    assert!(
        err.to_string()
            .contains("policy.rules[1] `broken`: request_header.x-a"),
        "{err}"
    );
}

#[test]
fn empty_rules_are_the_builtins() {
    let policy = Policy::compile(&[]).expect("compiles");
    assert!(policy.is_empty());
    let d = policy.classify(&mcp(503).obs());
    assert_eq!(d.rule, RuleRef::Builtin("http.5xx"));
}
