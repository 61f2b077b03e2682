//! The classifier alone: what it adds to every proxied response.
//!
//! `classify/mix` cycles through a realistic traffic mix with the README › proxy.yaml example rules
//! compiled, one observation per iteration, so criterion's time is ns per observation.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use warden_config::{ErrorKind, Role};
use warden_policy::{Observation, Policy, sanitize, sanitize_code};

const SPEC_EXAMPLE: &str = r#"
version: 1
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
      then: { verdict: transient, retry: never }
"#;

const MCP_REQ: [(&str, &str); 3] = [
    ("accept", "application/json, text/event-stream"),
    ("content-type", "application/json"),
    ("mcp-session-id", "1868a90c-7f3b-4c2e-9a51-0d3f1b2c4e5a"),
];
const MCP_JSON: [(&str, &str); 2] = [
    ("content-type", "application/json"),
    ("content-length", "512"),
];
const MCP_SSE: [(&str, &str); 2] = [
    ("content-type", "text/event-stream"),
    ("cache-control", "no-cache"),
];
const TOKEN_REQ: [(&str, &str); 1] = [("content-type", "application/x-www-form-urlencoded")];
const TOKEN_RESP: [(&str, &str); 2] = [
    ("content-type", "application/json"),
    ("cache-control", "no-store"),
];

fn mcp(status: u16) -> Observation<'static> {
    Observation {
        status: Some(status),
        request_headers: &MCP_REQ,
        response_headers: &MCP_JSON,
        ..Observation::new(Role::Mcp, "POST", "/mcp")
    }
}

fn token(status: u16) -> Observation<'static> {
    Observation {
        token_request: true,
        grant_type: Some("refresh_token"),
        status: Some(status),
        request_headers: &TOKEN_REQ,
        response_headers: &TOKEN_RESP,
        ..Observation::new(Role::Oauth, "POST", "/oauth2/token")
    }
}

/// 70% mcp 200, 10% mcp SSE with a JSON-RPC error, 10% token 200 refresh, 5% token 400
/// invalid_grant, 5% 503 (mcp and token alternately); interleaved so branch prediction
/// cannot learn a run of one kind.
fn mix() -> Vec<Observation<'static>> {
    let mut out = Vec::with_capacity(100);
    for i in 0..100 {
        let obs = match i % 20 {
            0 | 10 => Observation {
                jsonrpc_error: Some(-32603),
                response_headers: &MCP_SSE,
                ..mcp(200)
            },
            5 | 15 => Observation {
                has_access_token: true,
                ..token(200)
            },
            7 => Observation {
                oauth_error: Some("invalid_grant"),
                ..token(400)
            },
            17 if i % 40 == 17 => mcp(503),
            17 => token(503),
            _ => mcp(200),
        };
        out.push(obs);
    }
    out
}

fn bench(c: &mut Criterion) {
    let config = warden_config::parse(SPEC_EXAMPLE, "bench.yaml").expect("valid config");
    let policy = Policy::compile(&config.policy.rules).expect("compiles");
    let builtin = Policy::builtin();
    let mix = mix();

    let mut g = c.benchmark_group("classify");
    g.bench_function("mix", |b| {
        let mut i = 0;
        b.iter(|| {
            let obs = &mix[i % mix.len()];
            i += 1;
            policy.classify(black_box(obs))
        })
    });
    let ok = mcp(200);
    g.bench_function("mcp_200_no_rules", |b| {
        b.iter(|| builtin.classify(black_box(&ok)))
    });
    g.bench_function("mcp_200_spec_rules", |b| {
        b.iter(|| policy.classify(black_box(&ok)))
    });
    let revoked = Observation {
        oauth_error: Some("invalid_grant"),
        ..token(400)
    };
    g.bench_function("token_400_invalid_grant", |b| {
        b.iter(|| policy.classify(black_box(&revoked)))
    });
    let net = Observation {
        error_kind: Some(ErrorKind::Connect),
        ..Observation::new(Role::Mcp, "POST", "/mcp")
    };
    g.bench_function("mcp_connect_error", |b| {
        b.iter(|| policy.classify(black_box(&net)))
    });
    g.finish();

    let mut g = c.benchmark_group("sanitize");
    // 5 KB of what a hostile IdP might send: mixed junk, quotes, control characters, no URL
    // (a URL would stop the scan early), so every byte is looked at.
    let mut hostile = String::with_capacity(5 * 1024 + 32);
    while hostile.len() < 5 * 1024 {
        hostile.push_str("invalid_grant\"<script>\n\t\u{7}é☃ ");
    }
    let mut end = 5 * 1024;
    while !hostile.is_char_boundary(end) {
        end -= 1;
    }
    hostile.truncate(end);
    g.bench_function("5kb_hostile", |b| b.iter(|| sanitize(black_box(&hostile))));
    g.bench_function("5kb_hostile_code", |b| {
        b.iter(|| sanitize_code(black_box(&hostile)))
    });
    // Worst cases: nothing kept, so the filter runs to the end; a `.` in every chunk, so
    // every byte goes through the URL check; and a `w`-heavy value (markers are keyed on
    // `:` and `.` so that letters stay on the fast path).
    let dropped = "\"<>\n\t{}()".repeat(5 * 1024 / 10);
    g.bench_function("5kb_all_dropped", |b| {
        b.iter(|| sanitize(black_box(&dropped)))
    });
    let dot_heavy = "ww.".repeat(5 * 1024 / 3);
    g.bench_function("5kb_dot_heavy", |b| {
        b.iter(|| sanitize(black_box(&dot_heavy)))
    });
    let w_heavy = "ww_".repeat(5 * 1024 / 3);
    g.bench_function("5kb_w_heavy", |b| b.iter(|| sanitize(black_box(&w_heavy))));
    g.bench_function("invalid_grant", |b| {
        b.iter(|| sanitize_code(black_box("invalid_grant")))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
