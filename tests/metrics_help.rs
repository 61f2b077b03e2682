//! Every metric family a running warden exports has `# HELP` and `# TYPE`, so a scrape
//! explains itself to whoever reads it without the README.

mod support;

use std::collections::BTreeSet;

use support::upstream::scripted;
use support::{Warden, get, http_client, scrape};

#[tokio::test]
async fn every_metric_family_has_help() {
    let (mcp, _) = scripted(vec![(503, "{}")], (200, "{}")).await;
    let (idp, _) = scripted(vec![], (200, r#"{"access_token":"at"}"#)).await;
    let warden = Warden::start(&format!(
        "version: 1
admin: {{ listen: 127.0.0.1:0 }}
connections:
  - name: crm
    mcp:
      listen: 127.0.0.1:0
      upstream: {}
      retry: {{ max_attempts: 2 }}
    oauth:
      listen: 127.0.0.1:0
      upstream: {}
      token_path: /token
",
        mcp.url(),
        idp.url()
    ));
    // One transient answer and its retry: errors, retries and durations get series.
    let answer = get(
        &http_client(),
        &format!("http://{}/mcp", warden.route("crm", "mcp")),
    )
    .await;
    assert_eq!(answer.status, 200);

    let text = scrape(warden.admin).await;
    let families = |prefix: &str| -> BTreeSet<String> {
        text.lines()
            .filter_map(|l| l.strip_prefix(prefix))
            .filter_map(|rest| rest.split_whitespace().next())
            .map(str::to_owned)
            .collect()
    };
    let typed = families("# TYPE ");
    let helped = families("# HELP ");
    for expected in [
        "warden_build_info",
        "warden_requests_total",
        "warden_request_duration_seconds",
        "warden_upstream_errors_total",
        "warden_retries_total",
        "warden_connection_state",
        "warden_connection_needs_reauth",
    ] {
        assert!(typed.contains(expected), "{expected} not exported:\n{text}");
    }
    let missing: Vec<&String> = typed.difference(&helped).collect();
    assert!(missing.is_empty(), "no # HELP for {missing:?}:\n{text}");
}
