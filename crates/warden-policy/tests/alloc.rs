//! `classify` must not touch the heap on the common path (a 2xx with nothing to store):
//! counted with a thread-local counting allocator around the system one.
//!
//! The allocator is `warden-fixtures`' (its only `unsafe`); the library itself stays
//! `#![forbid(unsafe_code)]`.

mod common;

use common::{api, mcp, token};
use warden_fixtures::alloc::{Counting, allocations};
use warden_policy::Policy;

#[global_allocator]
static GLOBAL: Counting = Counting;

const RULES: &str = r#"
version: 1
connections:
  - name: crm
    mcp: {listen: 127.0.0.1:15001, upstream: https://mcp.crm.example.com}
policy:
  rules:
    - name: scope-change-is-terminal
      when: { role: oauth, status: 400, oauth_error: [invalid_scope] }
      then: { verdict: terminal }
    - name: flaky-tool-server
      when: { role: mcp, status: "500-599" }
      then: { verdict: transient, retry: never }
    - name: header-rule
      when: { header: { x-maintenance: "^yes$" }, request_header: { x-tenant: "^beta-" } }
      then: { verdict: client_error }
    - name: oauth-codes
      when: { oauth_error: [invalid_client, slow_down] }
      then: { verdict: transient }
"#;

#[test]
fn common_path_does_not_allocate() {
    let config =
        warden_config::parse(RULES, "alloc.yaml").unwrap_or_else(|e| panic!("{}", e.render()));
    let with_rules = Policy::compile(&config.policy.rules).expect("compiles");
    let builtin = Policy::builtin();
    let long_code = "Invalid_Scope_".repeat(400);
    let exchanges = [
        mcp(200),
        mcp(202).jsonrpc(-32603),
        api(204),
        api(304),
        mcp(503),
        mcp(401),
        api(404),
        token(200).access_token(),
        token(200).access_token().grant(Some("authorization_code")),
        mcp(200)
            .resp("x-maintenance", "yes")
            .req("x-tenant", "prod-1"),
        // An error code that must be sanitized and compared, but is not stored (ok verdict).
        token(200).access_token().error(&long_code),
    ];
    for policy in [&builtin, &with_rules] {
        for ex in &exchanges {
            let obs = ex.obs();
            // Warm-up: the regex crate builds a per-thread search cache on first use.
            policy.classify(&obs);
            let n = allocations(|| {
                for _ in 0..100 {
                    std::hint::black_box(policy.classify(std::hint::black_box(&obs)));
                }
            });
            assert_eq!(n, 0, "{ex:?} allocated {n} times in 100 calls");
        }
    }
}

/// The counter works: a stored code costs exactly its one `String`.
#[test]
fn stored_code_costs_one_allocation() {
    let policy = Policy::builtin();
    let long = "x".repeat(5 * 1024);
    for ex in [
        token(400).error("invalid_grant"),
        token(400).error(&long),
        token(401),
    ] {
        let obs = ex.obs();
        let n = allocations(|| {
            std::hint::black_box(policy.classify(&obs));
        });
        assert_eq!(n, 1, "{ex:?}");
    }
    let n = allocations(|| {
        std::hint::black_box(warden_policy::sanitize(&long));
    });
    assert_eq!(n, 1);
}
