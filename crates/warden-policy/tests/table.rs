//! README › Classification, every row of both tables, plus the edges around them, against the built-in
//! policy (no user rules). Each case pins verdict, event, stored code, its label and the
//! deciding row, so a wrong row anywhere fails here.

mod common;

use common::{Ex, api, mcp, net, oauth_other, token, token_net};
use warden_config::{ErrorKind, RetryMode, Role, Verdict};
use warden_policy::{BUILTIN_RULES, Event, Policy, RuleRef};

use Event::{ConnectCompleted, RefreshFailedRevoked, RefreshFailedTransient, RefreshSucceeded};
use Verdict::{Auth, ClientError, Ok, Terminal, Transient};

struct Case {
    what: String,
    ex: Ex,
    verdict: Verdict,
    event: Option<Event>,
    /// (stored code, label)
    code: Option<(&'static str, &'static str)>,
    rule: &'static str,
}

fn case(
    what: impl Into<String>,
    ex: Ex,
    verdict: Verdict,
    event: Option<Event>,
    code: Option<(&'static str, &'static str)>,
    rule: &'static str,
) -> Case {
    Case {
        what: what.into(),
        ex,
        verdict,
        event,
        code,
        rule,
    }
}

fn run(cases: &[Case]) {
    let policy = Policy::builtin();
    let mut failures = Vec::new();
    for c in cases {
        let d = policy.classify(&c.ex.obs());
        let code = d.code.as_ref().map(|c| (c.sanitized.as_str(), c.label));
        let got = (d.verdict, d.event, code, d.rule.clone());
        let want = (c.verdict, c.event, c.code, RuleRef::Builtin(c.rule));
        if got != want {
            failures.push(format!("{}:\n    got  {got:?}\n    want {want:?}", c.what));
        }
        assert_eq!(d.retry, RetryMode::Default, "{}", c.what);
        assert!(
            BUILTIN_RULES.contains(&c.rule),
            "{}: unknown row {}",
            c.what,
            c.rule
        );
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

const RFT: Option<Event> = Some(RefreshFailedTransient);
const RFR: Option<Event> = Some(RefreshFailedRevoked);

/// README › Classification, first table, row by row.
#[test]
fn token_table_rows() {
    let mut cases = vec![
        // | 2xx with access_token | ok | refresh_succeeded (grant refresh_token) or connect_completed |
        case(
            "200 access_token, refresh_token grant",
            token(200).access_token(),
            Ok,
            Some(RefreshSucceeded),
            None,
            "token.ok",
        ),
        case(
            "200 access_token, authorization_code grant",
            token(200).access_token().grant(Some("authorization_code")),
            Ok,
            Some(ConnectCompleted),
            None,
            "token.ok",
        ),
        case(
            "201 access_token",
            token(201).access_token(),
            Ok,
            Some(RefreshSucceeded),
            None,
            "token.ok",
        ),
        // | 2xx without access_token but with an error field | as the same error with 400 |
        case(
            "200 error invalid_grant",
            token(200).error("invalid_grant"),
            Terminal,
            RFR,
            Some(("invalid_grant", "invalid_grant")),
            "token.invalid_grant",
        ),
        case(
            "200 error invalid_request",
            token(200).error("invalid_request"),
            Transient,
            RFT,
            Some(("invalid_request", "invalid_request")),
            "token.400_retryable",
        ),
        // | 2xx with neither | transient | refresh_failed_transient |
        case(
            "200 neither",
            token(200),
            Transient,
            RFT,
            None,
            "token.2xx_without_token",
        ),
        // | 401, any body; no error field: code invalid_client | terminal | refresh_failed_revoked |
        case(
            "401 no error",
            token(401),
            Terminal,
            RFR,
            Some(("invalid_client", "invalid_client")),
            "token.401",
        ),
        case(
            "401 error invalid_token",
            token(401).error("invalid_token"),
            Terminal,
            RFR,
            Some(("invalid_token", "other")),
            "token.401",
        ),
        case(
            "401 error invalid_client",
            token(401).error("invalid_client"),
            Terminal,
            RFR,
            Some(("invalid_client", "invalid_client")),
            "token.401",
        ),
        // | 400 with no code | transient |
        case(
            "400 no code",
            token(400),
            Transient,
            RFT,
            None,
            "token.400_retryable",
        ),
        case(
            "400 other code",
            token(400).error("slow_down"),
            Transient,
            RFT,
            Some(("slow_down", "other")),
            "token.400_retryable",
        ),
        // | 429, 5xx, connect error, reset, timeout | transient | refresh_failed_transient |
        case("429", token(429), Transient, RFT, None, "token.429"),
        case("500", token(500), Transient, RFT, None, "token.5xx"),
        case(
            "503 with error temporarily_unavailable",
            token(503).error("temporarily_unavailable"),
            Transient,
            RFT,
            Some(("temporarily_unavailable", "temporarily_unavailable")),
            "token.5xx",
        ),
        case(
            "connect error",
            token_net(ErrorKind::Connect),
            Transient,
            RFT,
            None,
            "token.network",
        ),
        case(
            "reset",
            token_net(ErrorKind::Reset),
            Transient,
            RFT,
            None,
            "token.network",
        ),
        case(
            "timeout",
            token_net(ErrorKind::Timeout),
            Transient,
            RFT,
            None,
            "token.network",
        ),
    ];
    // | 400 invalid_grant, invalid_client, unauthorized_client, unsupported_grant_type | terminal | refresh_failed_revoked |
    for (code, rule) in [
        ("invalid_grant", "token.invalid_grant"),
        ("invalid_client", "token.invalid_client"),
        ("unauthorized_client", "token.unauthorized_client"),
        ("unsupported_grant_type", "token.unsupported_grant_type"),
    ] {
        cases.push(case(
            format!("400 {code}"),
            token(400).error(code),
            Terminal,
            RFR,
            Some((code, code)),
            rule,
        ));
    }
    // | 400 invalid_request, invalid_scope, server_error, temporarily_unavailable | transient | refresh_failed_transient |
    for code in [
        "invalid_request",
        "invalid_scope",
        "server_error",
        "temporarily_unavailable",
    ] {
        cases.push(case(
            format!("400 {code}"),
            token(400).error(code),
            Transient,
            RFT,
            Some((code, code)),
            "token.400_retryable",
        ));
    }
    run(&cases);
}

/// README › Classification, second table, row by row, on both mcp and api routes.
#[test]
fn http_table_rows() {
    let mut cases = Vec::new();
    for (route, ex) in [("mcp", mcp as fn(u16) -> Ex), ("api", api)] {
        // | 2xx, 3xx | ok |
        for s in [200, 202, 204, 299] {
            cases.push(case(
                format!("{route} {s}"),
                ex(s),
                Ok,
                None,
                None,
                "http.2xx",
            ));
        }
        for s in [301, 302, 304, 307, 399] {
            cases.push(case(
                format!("{route} {s}"),
                ex(s),
                Ok,
                None,
                None,
                "http.3xx",
            ));
        }
        // | 401, 403 | auth |
        for s in [401, 403] {
            cases.push(case(
                format!("{route} {s}"),
                ex(s),
                Auth,
                None,
                None,
                "http.auth",
            ));
        }
        // | 404 with an Mcp-Session-Id request header | client_error, code session_expired |
        cases.push(case(
            format!("{route} 404 with Mcp-Session-Id"),
            ex(404).req("mcp-session-id", "1868a90c"),
            ClientError,
            None,
            Some(("session_expired", "session_expired")),
            "http.session_expired",
        ));
        // | 408, 429, 500–511 | transient |
        cases.push(case(
            format!("{route} 408"),
            ex(408),
            Transient,
            None,
            None,
            "http.408",
        ));
        cases.push(case(
            format!("{route} 429"),
            ex(429),
            Transient,
            None,
            None,
            "http.429",
        ));
        for s in 500..=511 {
            cases.push(case(
                format!("{route} {s}"),
                ex(s),
                Transient,
                None,
                None,
                "http.5xx",
            ));
        }
        // | other 4xx | client_error |
        for s in [
            400, 402, 404, 405, 406, 409, 410, 411, 412, 413, 415, 418, 422, 428, 431, 451, 499,
        ] {
            cases.push(case(
                format!("{route} {s}"),
                ex(s),
                ClientError,
                None,
                None,
                "http.4xx",
            ));
        }
    }
    // | connect refused, reset, timeout, DNS failure, TLS failure | transient, with error_kind |
    for role in [Role::Mcp, Role::Api, Role::Oauth] {
        for (kind, rule) in [
            (ErrorKind::Connect, "network.connect"),
            (ErrorKind::Reset, "network.reset"),
            (ErrorKind::Timeout, "network.timeout"),
            (ErrorKind::Dns, "network.dns"),
            (ErrorKind::Tls, "network.tls"),
        ] {
            cases.push(case(
                format!("{role} {kind:?}"),
                net(role, kind),
                Transient,
                None,
                None,
                rule,
            ));
        }
    }
    run(&cases);
}

/// Beyond the rows: case, missing and odd bodies, every 5xx, grant types, every ErrorKind,
/// statuses the README's tables leave open, and requests that only look like token requests.
#[test]
fn edge_cases() {
    let long = "invalid_grant".repeat(400);
    let mut cases = vec![
        // Case-insensitive codes, stored in lower case.
        case(
            "400 INVALID_GRANT",
            token(400).error("INVALID_GRANT"),
            Terminal,
            RFR,
            Some(("invalid_grant", "invalid_grant")),
            "token.invalid_grant",
        ),
        case(
            "400 Invalid_Client",
            token(400).error("Invalid_Client"),
            Terminal,
            RFR,
            Some(("invalid_client", "invalid_client")),
            "token.invalid_client",
        ),
        case(
            "400 UNAUTHORIZED_CLIENT",
            token(400).error("UNAUTHORIZED_CLIENT"),
            Terminal,
            RFR,
            Some(("unauthorized_client", "unauthorized_client")),
            "token.unauthorized_client",
        ),
        case(
            "400 Unsupported_Grant_Type",
            token(400).error("Unsupported_Grant_Type"),
            Terminal,
            RFR,
            Some(("unsupported_grant_type", "unsupported_grant_type")),
            "token.unsupported_grant_type",
        ),
        case(
            "400 INVALID_SCOPE",
            token(400).error("INVALID_SCOPE"),
            Transient,
            RFT,
            Some(("invalid_scope", "invalid_scope")),
            "token.400_retryable",
        ),
        case(
            "200 INVALID_CLIENT without token",
            token(200).error("INVALID_CLIENT"),
            Terminal,
            RFR,
            Some(("invalid_client", "invalid_client")),
            "token.invalid_client",
        ),
        // Sanitizing decides what is compared: dropped characters join the rest.
        case(
            "400 ' invalid_grant\\n'",
            token(400).error(" invalid_grant\n"),
            Terminal,
            RFR,
            Some(("invalid_grant", "invalid_grant")),
            "token.invalid_grant",
        ),
        case(
            "400 'invalid grant' (space dropped)",
            token(400).error("invalid grant"),
            Transient,
            RFT,
            Some(("invalidgrant", "other")),
            "token.400_retryable",
        ),
        case(
            "400 URL-shaped code",
            token(400).error("https://evil.example/x"),
            Transient,
            RFT,
            Some(("redacted", "other")),
            "token.400_retryable",
        ),
        case(
            "400 www code",
            token(400).error("see www.evil.example"),
            Transient,
            RFT,
            Some(("redacted", "other")),
            "token.400_retryable",
        ),
        // Missing or unusable `error`: the proxy passes None for a non-string or a non-JSON body.
        case(
            "400 error not a string (None)",
            token(400),
            Transient,
            RFT,
            None,
            "token.400_retryable",
        ),
        case(
            "400 HTML body (None)",
            token(400).resp("content-type", "text/html"),
            Transient,
            RFT,
            None,
            "token.400_retryable",
        ),
        case(
            "400 error empty string",
            token(400).error(""),
            Transient,
            RFT,
            None,
            "token.400_retryable",
        ),
        case(
            "400 error only junk",
            token(400).error("\"<>\n"),
            Transient,
            RFT,
            None,
            "token.400_retryable",
        ),
        case(
            "200 error empty string, no token",
            token(200).error(""),
            Transient,
            RFT,
            None,
            "token.2xx_without_token",
        ),
        case(
            "200 access_token wins over error",
            token(200).access_token().error("invalid_grant"),
            Ok,
            Some(RefreshSucceeded),
            None,
            "token.ok",
        ),
        case(
            "200 error unauthorized_client, client_credentials",
            token(200)
                .error("unauthorized_client")
                .grant(Some("client_credentials")),
            Terminal,
            RFR,
            Some(("unauthorized_client", "unauthorized_client")),
            "token.unauthorized_client",
        ),
        case(
            "200 error server_error",
            token(200).error("server_error"),
            Transient,
            RFT,
            Some(("server_error", "server_error")),
            "token.400_retryable",
        ),
        // 401: any body, invalid_client when it names nothing.
        case(
            "401 HTML body",
            token(401).resp("content-type", "text/html"),
            Terminal,
            RFR,
            Some(("invalid_client", "invalid_client")),
            "token.401",
        ),
        case(
            "401 error empty",
            token(401).error(""),
            Terminal,
            RFR,
            Some(("invalid_client", "invalid_client")),
            "token.401",
        ),
        case(
            "401 error INVALID_GRANT",
            token(401).error("INVALID_GRANT"),
            Terminal,
            RFR,
            Some(("invalid_grant", "invalid_grant")),
            "token.401",
        ),
        case(
            "401 authorization_code grant",
            token(401).grant(Some("authorization_code")),
            Terminal,
            RFR,
            Some(("invalid_client", "invalid_client")),
            "token.401",
        ),
        // Long hostile code: cut to 200, labelled other.
        case(
            "400 5 KB code",
            token(400).error(&long),
            Transient,
            RFT,
            Some((leak(&long[..200]), "other")),
            "token.400_retryable",
        ),
        // Grant types.
        case(
            "grant REFRESH_TOKEN",
            token(200).access_token().grant(Some("REFRESH_TOKEN")),
            Ok,
            Some(RefreshSucceeded),
            None,
            "token.ok",
        ),
        case(
            "grant client_credentials",
            token(200).access_token().grant(Some("client_credentials")),
            Ok,
            Some(ConnectCompleted),
            None,
            "token.ok",
        ),
        case(
            "grant jwt-bearer",
            token(200)
                .access_token()
                .grant(Some("urn:ietf:params:oauth:grant-type:jwt-bearer")),
            Ok,
            Some(ConnectCompleted),
            None,
            "token.ok",
        ),
        case(
            "no grant_type",
            token(200).access_token().grant(None),
            Ok,
            Some(ConnectCompleted),
            None,
            "token.ok",
        ),
        case(
            "grant refresh_token, 400 invalid_grant",
            token(400).error("invalid_grant"),
            Terminal,
            RFR,
            Some(("invalid_grant", "invalid_grant")),
            "token.invalid_grant",
        ),
        case(
            "grant authorization_code, 400 invalid_grant",
            token(400)
                .error("invalid_grant")
                .grant(Some("authorization_code")),
            Terminal,
            RFR,
            Some(("invalid_grant", "invalid_grant")),
            "token.invalid_grant",
        ),
        // 429 with Retry-After: still just transient (the proxy reads the header).
        case(
            "token 429 Retry-After",
            token(429).resp("retry-after", "5"),
            Transient,
            RFT,
            None,
            "token.429",
        ),
        case(
            "mcp 429 Retry-After",
            mcp(429).resp("retry-after", "120"),
            Transient,
            None,
            None,
            "http.429",
        ),
        case(
            "token 429 with error",
            token(429).error("slow_down"),
            Transient,
            RFT,
            Some(("slow_down", "other")),
            "token.429",
        ),
        // Token statuses the README's tables leave open: transient, never revoked.
        case("token 403", token(403), Transient, RFT, None, "token.4xx"),
        case(
            "token 403 invalid_client",
            token(403).error("invalid_client"),
            Transient,
            RFT,
            Some(("invalid_client", "invalid_client")),
            "token.4xx",
        ),
        case("token 404", token(404), Transient, RFT, None, "token.4xx"),
        case("token 405", token(405), Transient, RFT, None, "token.4xx"),
        case("token 302", token(302), Transient, RFT, None, "token.3xx"),
        case("token 304", token(304), Transient, RFT, None, "token.3xx"),
        case(
            "token 100",
            token(100),
            Transient,
            RFT,
            None,
            "token.unexpected_status",
        ),
        case(
            "token 600",
            token(600),
            Transient,
            RFT,
            None,
            "token.unexpected_status",
        ),
        case(
            "token 404 with Mcp-Session-Id",
            token(404).req("mcp-session-id", "x"),
            Transient,
            RFT,
            None,
            "token.4xx",
        ),
        case(
            "token status None, no kind",
            Ex {
                kind: None,
                ..token_net(ErrorKind::Connect)
            },
            Transient,
            RFT,
            None,
            "token.network",
        ),
        // Session ids: only a 404 with the request header, header names case-insensitive.
        case(
            "mcp 404 without Mcp-Session-Id",
            mcp(404),
            ClientError,
            None,
            None,
            "http.4xx",
        ),
        case(
            "mcp 404 Mcp-Session-Id mixed case",
            mcp(404).req("Mcp-Session-Id", "abc"),
            ClientError,
            None,
            Some(("session_expired", "session_expired")),
            "http.session_expired",
        ),
        case(
            "mcp 404 with empty Mcp-Session-Id",
            mcp(404).req("mcp-session-id", ""),
            ClientError,
            None,
            Some(("session_expired", "session_expired")),
            "http.session_expired",
        ),
        case(
            "mcp 404 with Mcp-Session-Id on the response only",
            mcp(404).resp("mcp-session-id", "abc"),
            ClientError,
            None,
            None,
            "http.4xx",
        ),
        case(
            "mcp 400 with Mcp-Session-Id",
            mcp(400).req("mcp-session-id", "abc"),
            ClientError,
            None,
            None,
            "http.4xx",
        ),
        case(
            "mcp 200 with Mcp-Session-Id",
            mcp(200).req("mcp-session-id", "abc"),
            Ok,
            None,
            None,
            "http.2xx",
        ),
        // JSON-RPC errors never change the verdict.
        case(
            "mcp 200 SSE with -32603",
            mcp(200)
                .resp("content-type", "text/event-stream")
                .jsonrpc(-32603),
            Ok,
            None,
            None,
            "http.2xx",
        ),
        case(
            "mcp 200 with -32001",
            mcp(200).jsonrpc(-32001),
            Ok,
            None,
            None,
            "http.2xx",
        ),
        case(
            "mcp 400 with -32600",
            mcp(400).jsonrpc(-32600),
            ClientError,
            None,
            None,
            "http.4xx",
        ),
        case(
            "mcp 500 with -32603",
            mcp(500).jsonrpc(-32603),
            Transient,
            None,
            None,
            "http.5xx",
        ),
        // Non-token requests on oauth routes use the second table, with no event and no code.
        case(
            "oauth non-token 200",
            oauth_other(200),
            Ok,
            None,
            None,
            "http.2xx",
        ),
        case(
            "oauth non-token 401",
            oauth_other(401),
            Auth,
            None,
            None,
            "http.auth",
        ),
        case(
            "oauth non-token 400",
            oauth_other(400),
            ClientError,
            None,
            None,
            "http.4xx",
        ),
        case(
            "oauth non-token 503",
            oauth_other(503),
            Transient,
            None,
            None,
            "http.5xx",
        ),
        case(
            "oauth non-token 404 with Mcp-Session-Id",
            oauth_other(404).req("mcp-session-id", "s"),
            ClientError,
            None,
            Some(("session_expired", "session_expired")),
            "http.session_expired",
        ),
        case(
            "oauth non-token 400 with stray error",
            oauth_other(400).error("invalid_grant"),
            ClientError,
            None,
            None,
            "http.4xx",
        ),
        case(
            "mcp 200 with stray oauth facts",
            mcp(200).error("invalid_grant").grant(Some("refresh_token")),
            Ok,
            None,
            None,
            "http.2xx",
        ),
        // Statuses the README's tables leave open on other requests.
        case(
            "mcp 512",
            mcp(512),
            Transient,
            None,
            None,
            "http.5xx_unassigned",
        ),
        case(
            "mcp 599",
            mcp(599),
            Transient,
            None,
            None,
            "http.5xx_unassigned",
        ),
        case(
            "api 520",
            api(520),
            Transient,
            None,
            None,
            "http.5xx_unassigned",
        ),
        case("mcp 101", mcp(101), Ok, None, None, "http.1xx"),
        case(
            "mcp 600",
            mcp(600),
            Transient,
            None,
            None,
            "http.unexpected_status",
        ),
        case(
            "mcp 999",
            mcp(999),
            Transient,
            None,
            None,
            "http.unexpected_status",
        ),
        case(
            "mcp status None, no kind",
            Ex {
                kind: None,
                ..net(Role::Mcp, ErrorKind::Connect)
            },
            Transient,
            None,
            None,
            "network.unknown",
        ),
    ];
    // Every status 500–511 (and beyond) on token and mcp routes.
    for s in 500..=599 {
        cases.push(case(
            format!("token {s}"),
            token(s),
            Transient,
            RFT,
            None,
            "token.5xx",
        ));
        let rule = if s <= 511 {
            "http.5xx"
        } else {
            "http.5xx_unassigned"
        };
        cases.push(case(
            format!("mcp {s}"),
            mcp(s),
            Transient,
            None,
            None,
            rule,
        ));
    }
    // Every ErrorKind on a token request, both grant families.
    for kind in ErrorKind::ALL {
        cases.push(case(
            format!("token {kind:?}"),
            token_net(kind),
            Transient,
            RFT,
            None,
            "token.network",
        ));
        cases.push(case(
            format!("token {kind:?} authorization_code"),
            token_net(kind).grant(Some("authorization_code")),
            Transient,
            RFT,
            None,
            "token.network",
        ));
    }
    run(&cases);
}

fn leak(s: &str) -> &'static str {
    Box::leak(s.to_owned().into_boxed_str())
}

/// The metric `code` label falls back to the error kind, then the status.
#[test]
fn code_label_for_metrics() {
    let policy = Policy::builtin();
    for (ex, want) in [
        (token(400).error("invalid_grant"), "invalid_grant"),
        (token(401), "invalid_client"),
        (token(400).error("x-custom"), "other"),
        (mcp(404).req("mcp-session-id", "s"), "session_expired"),
        (mcp(503), "503"),
        (mcp(404), "404"),
        (mcp(999), "other"),
        (net(Role::Mcp, ErrorKind::Tls), "tls"),
        (token_net(ErrorKind::Dns), "dns"),
        (
            Ex {
                kind: None,
                ..net(Role::Api, ErrorKind::Tls)
            },
            "other",
        ),
    ] {
        let obs = ex.obs();
        assert_eq!(policy.classify(&obs).code_label(&obs), want, "{ex:?}");
    }
}

#[test]
fn event_names() {
    let names: Vec<&str> = Event::ALL.iter().map(|e| e.as_str()).collect();
    assert_eq!(
        names,
        [
            "connect_completed",
            "refresh_succeeded",
            "refresh_failed_revoked",
            "refresh_failed_transient"
        ]
    );
}
