//! The files under deploy/ and the Dockerfile, checked against the real thing: the
//! example Deployment is what `warden inject` makes, the ConfigMap passes `warden check`,
//! the kustomize component adds the same sidecar, the alerts pass promtool's checks and
//! unit tests, and every metric the alerts and the dashboard query is one a running
//! warden exports.
//!
//! promtool comes from the Debian package `prometheus` (installed by .ci/run); without it
//! the promtool tests skip with a banner, and fail instead when `CI` is set.
//! `WARDEN_BLESS=1 cargo test --test deploy` regenerates deploy/example/deployment.yaml.

mod k8s;
mod support;
mod tools;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("read {rel}: {e}"))
}

fn docs(rel: &str) -> Vec<Value> {
    k8s::docs(&read(rel))
}

/// promtool's path, or `None` when this run skips (see `tools`).
fn promtool_path(test: &str) -> Option<PathBuf> {
    tools::require(test, &[&tools::PROMTOOL]).and_then(|mut found| found.pop())
}

/// Runs promtool, failing the test on any error.
fn promtool(promtool: &Path, args: &[&str], dir: &Path) -> String {
    let out = Command::new(promtool)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", promtool.display()));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "promtool {} failed:\n{text}",
        args.join(" ")
    );
    text
}

/// The PrometheusRule's groups as a plain rules file promtool reads (JSON is YAML).
fn write_rules(dir: &Path) {
    let rule = docs("deploy/monitoring/prometheusrule.yaml").remove(0);
    assert_eq!(rule["kind"], "PrometheusRule");
    let spec = serde_json::to_string_pretty(&rule["spec"]).expect("spec as JSON");
    std::fs::write(dir.join("rules.yaml"), spec).expect("write rules.yaml");
}

#[test]
fn the_example_deployment_is_what_inject_makes() {
    let dir = tempfile::tempdir().expect("temp dir");
    let app = root().join("deploy/app/deployment.yaml");
    let (code, out, err) =
        support::run_warden(&["inject", "-f", app.to_str().expect("utf-8")], dir.path());
    assert_eq!(code, 0, "{err}");
    let example = root().join("deploy/example/deployment.yaml");
    if std::env::var_os("WARDEN_BLESS").is_some() {
        std::fs::write(&example, &out).expect("write example");
    }
    assert!(
        std::fs::read_to_string(&example).expect("read example") == out,
        "deploy/example/deployment.yaml is not `warden inject -f deploy/app/deployment.yaml` \
         (WARDEN_BLESS=1 regenerates it):\n{out}"
    );
    let doc = k8s::docs(&out).remove(0);
    k8s::validate(&doc);
    k8s::assert_sidecar(&doc, &k8s::default_image(), "warden-config");
}

#[test]
fn the_config_map_holds_a_proxy_yaml_that_passes_warden_check() {
    let cm = docs("deploy/config/configmap.yaml").remove(0);
    k8s::validate(&cm);
    assert_eq!(
        cm["metadata"]["name"], "warden-config",
        "the name inject mounts"
    );
    let proxy = cm["data"]["proxy.yaml"].as_str().expect("data.proxy.yaml");
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("proxy.yaml"), proxy).expect("write proxy.yaml");
    let (code, out, err) = support::run_warden(&["check", "--config", "proxy.yaml"], dir.path());
    assert_eq!(code, 0, "warden check failed:\n{out}{err}");
    // The probes and the PodMonitor reach the admin port on the pod IP, not loopback.
    let config: Value = serde_saphyr::from_str(proxy).expect("proxy.yaml");
    assert_eq!(config["admin"]["listen"], "0.0.0.0:9901");
}

#[test]
fn the_kustomize_component_adds_the_same_sidecar_as_inject() {
    let example = docs("deploy/example/deployment.yaml").remove(0);
    let want_container = k8s::warden_init(&example).expect("example is injected");
    let want_volume = &k8s::pod_spec(&example).expect("pod spec")["volumes"][0];

    let component = docs("deploy/kustomize/component/kustomization.yaml").remove(0);
    assert_eq!(component["kind"], "Component");
    let patches = component["patches"].as_array().expect("patches");
    let mut kinds = BTreeSet::new();
    for patch in patches {
        let file = patch["path"].as_str().expect("patch path");
        let doc = docs(&format!("deploy/kustomize/component/{file}")).remove(0);
        let spec = k8s::pod_spec(&doc).unwrap_or_else(|| panic!("{file}: no pod spec"));
        assert_eq!(&spec["initContainers"][0], want_container, "{file}");
        assert_eq!(spec["initContainers"].as_array().map(Vec::len), Some(1));
        assert_eq!(&spec["volumes"][0], want_volume, "{file}");
        assert_eq!(
            patch["target"]["annotationSelector"], "warden.io/inject!=disabled",
            "{file}: the opt-out inject honours"
        );
        let target = patch["target"]["kind"].as_str().expect("target kind");
        kinds.extend(target.split('|').map(str::to_owned));
        // The patch's own kind must keep its pod template where the targets keep theirs.
        assert_eq!(
            doc["kind"] == "CronJob",
            target == "CronJob",
            "{file}: patch layout and target"
        );
    }
    assert_eq!(
        kinds,
        [
            "CronJob",
            "DaemonSet",
            "Deployment",
            "Job",
            "ReplicaSet",
            "StatefulSet"
        ]
        .map(str::to_owned)
        .into(),
    );

    // Render the overlay with kustomize itself where kubectl is installed.
    match Command::new("kubectl")
        .args(["kustomize", "deploy/kustomize/overlay"])
        .current_dir(root())
        .output()
    {
        Ok(out) => {
            assert!(
                out.status.success(),
                "kubectl kustomize: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let rendered = k8s::docs(&String::from_utf8_lossy(&out.stdout));
            let deployment = rendered
                .iter()
                .find(|d| d["kind"] == "Deployment")
                .expect("the overlay renders the Deployment");
            k8s::validate(deployment);
            assert_eq!(k8s::warden_init(deployment), Some(want_container));
            k8s::assert_sidecar(deployment, &k8s::default_image(), "warden-config");
        }
        Err(_) => eprintln!("kubectl not found: the overlay was not rendered with kustomize"),
    }
}

/// Every manifest that has a Kubernetes API type reads as one, field for field.
#[test]
fn the_manifests_are_valid_kubernetes_objects() {
    const CUSTOM: &[&str] = &[
        "PodMonitor",
        "PrometheusRule",
        "Issuer",
        "Certificate",
        "Kustomization",
        "Component",
    ];
    let mut checked = BTreeSet::new();
    for file in yaml_files(&root().join("deploy")) {
        let rel = file.strip_prefix(root()).expect("under root");
        if rel.starts_with("deploy/kustomize/component") {
            continue; // partial objects: patches, not manifests
        }
        for doc in k8s::docs(&std::fs::read_to_string(&file).expect("read")) {
            let kind = doc["kind"].as_str().unwrap_or_default().to_owned();
            if CUSTOM.contains(&kind.as_str()) {
                continue;
            }
            k8s::validate(&doc);
            checked.insert(kind);
        }
    }
    for kind in [
        "ConfigMap",
        "Deployment",
        "MutatingWebhookConfiguration",
        "Namespace",
        "PodDisruptionBudget",
        "Service",
    ] {
        assert!(checked.contains(kind), "no {kind} checked: {checked:?}");
    }
}

fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read dir") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            files.extend(yaml_files(&path));
        } else if path.extension().is_some_and(|e| e == "yaml")
            && !path.to_string_lossy().ends_with(".test.yaml")
        {
            files.push(path);
        }
    }
    files.sort();
    files
}

#[test]
fn every_warden_image_is_this_release() {
    let want = k8s::default_image();
    let mut seen = 0;
    for file in yaml_files(&root().join("deploy")) {
        // Kustomizations name the image without a tag; checked below.
        if file.ends_with("kustomization.yaml") {
            continue;
        }
        let text = std::fs::read_to_string(&file).expect("read");
        for (at, _) in text.match_indices("ghcr.io/warden-proxy/warden") {
            let image: String = text[at..]
                .chars()
                .take_while(|c| !c.is_whitespace() && *c != '"')
                .collect();
            assert_eq!(image, want, "{}", file.display());
            seen += 1;
        }
    }
    assert!(seen >= 4, "images found: {seen}");
}

/// One `images:` entry per deployable kustomization sets the image of everything it
/// deploys: the sidecar (through the component's patch) and the webhook, whose injected
/// image a replacement copies from its own.
#[test]
fn kustomize_images_entries_set_the_image_in_one_place() {
    let (name, tag) = k8s::default_image()
        .rsplit_once(':')
        .map(|(n, t)| (n.to_owned(), t.to_owned()))
        .expect("name:tag");
    for rel in [
        "deploy/kustomize/overlay/kustomization.yaml",
        "deploy/webhook/kustomization.yaml",
    ] {
        let k = docs(rel).remove(0);
        let images = k["images"].as_array().expect("images");
        assert_eq!(images.len(), 1, "{rel}: one entry");
        assert_eq!(images[0]["name"], name.as_str(), "{rel}");
        assert_eq!(images[0]["newName"], name.as_str(), "{rel}");
        assert_eq!(images[0]["newTag"], tag.as_str(), "{rel}");
    }
    // The webhook's injected image comes from the env var the replacement fills in, not a
    // flag kustomize could not rewrite.
    let webhook = docs("deploy/webhook/deployment.yaml").remove(0);
    let container = &webhook["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["name"], "webhook");
    assert!(
        !container["args"]
            .as_array()
            .expect("args")
            .iter()
            .any(|a| a.as_str().is_some_and(|a| a.starts_with("--image"))),
        "--image in args would override the variable"
    );
    let env = container["env"]
        .as_array()
        .expect("env")
        .iter()
        .find(|e| e["name"] == "WARDEN_SIDECAR_IMAGE")
        .expect("WARDEN_SIDECAR_IMAGE");
    assert_eq!(env["value"], container["image"]);
    let k = docs("deploy/webhook/kustomization.yaml").remove(0);
    let replacement = &k["replacements"][0];
    assert_eq!(
        replacement["source"]["fieldPath"],
        "spec.template.spec.containers.[name=webhook].image"
    );
    assert_eq!(
        replacement["targets"][0]["fieldPaths"][0],
        "spec.template.spec.containers.[name=webhook].env.[name=WARDEN_SIDECAR_IMAGE].value"
    );
}

#[test]
fn the_webhook_configuration_fits_the_webhook() {
    let config = docs("deploy/webhook/mutatingwebhookconfiguration.yaml").remove(0);
    let service = docs("deploy/webhook/service.yaml").remove(0);
    let deployment = docs("deploy/webhook/deployment.yaml").remove(0);
    let webhooks = config["webhooks"].as_array().expect("webhooks");
    let mut paths = BTreeSet::new();
    for hook in webhooks {
        let name = &hook["name"];
        assert_eq!(hook["admissionReviewVersions"], json!(["v1"]), "{name}");
        assert_eq!(hook["sideEffects"], "None", "{name}");
        assert_eq!(hook["failurePolicy"], "Ignore", "{name}: never block pods");
        assert_eq!(hook["rules"][0]["resources"], json!(["pods"]));
        assert_eq!(hook["rules"][0]["operations"], json!(["CREATE"]));
        let svc = &hook["clientConfig"]["service"];
        assert_eq!(svc["name"], service["metadata"]["name"]);
        assert_eq!(svc["namespace"], service["metadata"]["namespace"]);
        assert_eq!(svc["port"], service["spec"]["ports"][0]["port"]);
        let path = svc["path"].as_str().expect("path");
        // The API server accepts only DNS-1123 labels as path segments.
        for segment in path.trim_start_matches('/').split('/') {
            assert!(
                !segment.is_empty()
                    && segment
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'),
                "{name}: path segment {segment:?}"
            );
        }
        paths.insert(path.to_owned());
        let selectors = format!("{}{}", hook["objectSelector"], hook["namespaceSelector"]);
        assert!(
            selectors.contains("warden.io/inject"),
            "{name}: {selectors}"
        );
    }
    assert_eq!(
        paths,
        ["/mutate".to_owned(), "/mutate/namespace".to_owned()].into()
    );
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(
        service["spec"]["ports"][0]["targetPort"],
        container["ports"][0]["name"]
    );
    assert_eq!(container["args"][0], "webhook");
    assert_eq!(container["readinessProbe"]["httpGet"]["scheme"], "HTTPS");
    let mount = container["volumeMounts"][0]["mountPath"]
        .as_str()
        .expect("tls mount");
    for flag in ["--tls-cert=", "--tls-key="] {
        let arg = container["args"]
            .as_array()
            .expect("args")
            .iter()
            .filter_map(Value::as_str)
            .find(|a| a.starts_with(flag))
            .unwrap_or_else(|| panic!("{flag} missing"));
        assert!(arg[flag.len()..].starts_with(mount), "{arg} under {mount}");
    }
}

#[test]
fn the_pod_monitor_scrapes_the_sidecar_admin_port() {
    let monitor = docs("deploy/monitoring/podmonitor.yaml").remove(0);
    assert_eq!(monitor["kind"], "PodMonitor");
    let endpoint = &monitor["spec"]["podMetricsEndpoints"][0];
    assert_eq!(endpoint["port"], "warden-admin");
    assert_eq!(endpoint["path"], "/metrics");
    let example = docs("deploy/example/deployment.yaml").remove(0);
    let sidecar = k8s::warden_init(&example).expect("sidecar");
    assert_eq!(sidecar["ports"][0]["name"], endpoint["port"]);
}

#[test]
fn the_alert_rules_pass_promtool_check_and_unit_tests() {
    let Some(bin) = promtool_path("the_alert_rules_pass_promtool_check_and_unit_tests") else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    write_rules(dir.path());
    std::fs::copy(
        root().join("deploy/monitoring/prometheusrule.test.yaml"),
        dir.path().join("prometheusrule.test.yaml"),
    )
    .expect("copy the rule tests");
    let checked = promtool(&bin, &["check", "rules", "rules.yaml"], dir.path());
    assert!(checked.contains("SUCCESS: 5 rules found"), "{checked}");
    promtool(
        &bin,
        &["test", "rules", "prometheusrule.test.yaml"],
        dir.path(),
    );

    // Every alert is covered by the unit tests, firing at least once.
    let tests = read("deploy/monitoring/prometheusrule.test.yaml");
    let rule = docs("deploy/monitoring/prometheusrule.yaml").remove(0);
    for r in rule["spec"]["groups"][0]["rules"]
        .as_array()
        .expect("rules")
    {
        let alert = r["alert"].as_str().expect("alert name");
        assert!(
            tests.contains(&format!("alertname: {alert}")),
            "{alert} has no unit test"
        );
        for key in ["summary", "description", "runbook_url"] {
            assert!(r["annotations"][key].is_string(), "{alert}: no {key}");
        }
        let runbook = r["annotations"]["runbook_url"].as_str().unwrap_or_default();
        let anchor = runbook.rsplit_once('#').map(|(_, a)| a).unwrap_or_default();
        assert_eq!(
            anchor,
            alert.to_ascii_lowercase(),
            "{alert}: runbook anchor"
        );
        assert!(
            read("README.md").contains(&format!("#### {alert}")),
            "{alert}: no runbook section in the README"
        );
    }
}

/// The dashboard's queries with Grafana's variables filled in, as recording rules, so
/// promtool checks that each one is valid PromQL.
#[test]
fn the_dashboard_queries_are_valid_promql() {
    let Some(bin) = promtool_path("the_dashboard_queries_are_valid_promql") else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let rules: Vec<Value> = dashboard_exprs()
        .iter()
        .enumerate()
        .map(|(i, expr)| {
            let expr = expr
                .replace("$__rate_interval", "5m")
                .replace("$namespace", ".*")
                .replace("$pod", ".*")
                .replace("$connection", ".*");
            json!({"record": format!("dashboard:query_{i}"), "expr": expr})
        })
        .collect();
    let file = json!({"groups": [{"name": "dashboard", "rules": rules}]});
    std::fs::write(dir.path().join("dashboard.yaml"), file.to_string()).expect("write");
    promtool(&bin, &["check", "rules", "dashboard.yaml"], dir.path());
}

fn dashboard() -> Value {
    serde_json::from_str(&read("deploy/monitoring/grafana-dashboard.json"))
        .expect("the dashboard is JSON")
}

/// Every PromQL expression of the dashboard: panel targets only; the variables' label
/// queries are checked for metric names separately.
fn dashboard_exprs() -> Vec<String> {
    let dash = dashboard();
    let mut exprs = Vec::new();
    for panel in dash["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().expect("targets") {
            exprs.push(target["expr"].as_str().expect("expr").to_owned());
        }
    }
    exprs
}

fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let bytes = expr.as_bytes();
    let mut at = 0;
    while let Some(found) = expr[at..].find("warden_") {
        let start = at + found;
        let boundary =
            start == 0 || !(bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_');
        let end = expr[start..]
            .find(|c: char| !(c.is_ascii_lowercase() || c == '_'))
            .map_or(expr.len(), |n| start + n);
        if boundary {
            names.insert(expr[start..end].to_owned());
        }
        at = end;
    }
    names
}

#[test]
fn the_dashboard_shows_what_the_issue_asks_for() {
    let dash = dashboard();
    let panels = dash["panels"].as_array().expect("panels");
    let find = |title: &str| {
        panels
            .iter()
            .find(|p| p["title"].as_str().is_some_and(|t| t.starts_with(title)))
            .unwrap_or_else(|| panic!("no panel {title:?}"))
    };
    let exprs = |p: &Value| -> String {
        p["targets"]
            .as_array()
            .expect("targets")
            .iter()
            .map(|t| t["expr"].as_str().unwrap_or_default().to_owned())
            .collect::<Vec<_>>()
            .join("\n")
    };
    let state = find("Connection state");
    assert_eq!(state["type"], "state-timeline");
    assert!(exprs(state).contains("warden_connection_state"));
    assert!(exprs(find("Requests by verdict")).contains("warden_requests_total"));
    assert!(exprs(find("Retries by outcome")).contains("by (connection, role, outcome)"));
    assert!(exprs(find("Short-circuits")).contains("warden_short_circuits_total"));
    let latency = exprs(find("Latency"));
    assert!(latency.contains("histogram_quantile(0.5,"), "{latency}");
    assert!(latency.contains("histogram_quantile(0.99,"), "{latency}");
    assert!(latency.contains("warden_request_duration_seconds_bucket"));
}

/// Metric names are checked against a live scrape after traffic that makes every family
/// appear: a failing MCP upstream (errors, retries, latency) and a failing token refresh.
#[tokio::test]
async fn alerts_and_dashboard_query_only_metrics_warden_exports() {
    let upstream = support::upstream::Upstream::recording(503, "down").await;
    let config = format!(
        "version: 1
admin:
  listen: 127.0.0.1:0
connections:
  - name: crm
    mcp:
      listen: 127.0.0.1:0
      upstream: {url}
    oauth:
      listen: 127.0.0.1:0
      upstream: {url}
      token_path: /token
",
        url = upstream.url()
    );
    let warden = support::Warden::start(&config);
    let client = support::http_client();
    support::get(
        &client,
        &format!("http://{}/tools", warden.route("crm", "mcp")),
    )
    .await;
    support::token(
        warden.route("crm", "oauth"),
        "grant_type=refresh_token&refresh_token=r1",
    )
    .await;
    let scrape = support::scrape(warden.admin).await;
    let exported: BTreeSet<&str> = scrape
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .collect();
    let histogram = |name: &str| {
        ["_bucket", "_sum", "_count"].iter().any(|suffix| {
            name.strip_suffix(suffix)
                .is_some_and(|base| scrape.contains(&format!("# TYPE {base} histogram")))
        })
    };

    let mut used = BTreeSet::new();
    for expr in dashboard_exprs() {
        used.extend(metric_names(&expr));
    }
    let dash = dashboard();
    for var in dash["templating"]["list"].as_array().expect("variables") {
        if let Some(q) = var["query"]["query"].as_str() {
            used.extend(metric_names(q));
        }
    }
    let rule = docs("deploy/monitoring/prometheusrule.yaml").remove(0);
    let mut in_alerts = BTreeSet::new();
    for r in rule["spec"]["groups"][0]["rules"]
        .as_array()
        .expect("rules")
    {
        in_alerts.extend(metric_names(r["expr"].as_str().expect("expr")));
    }
    assert!(in_alerts.len() >= 4, "{in_alerts:?}");
    used.extend(in_alerts);
    for name in &used {
        assert!(
            exported.contains(name.as_str()),
            "{name} is queried but not in warden's /metrics:\n{scrape}"
        );
        if name.ends_with("_bucket") {
            assert!(histogram(name), "{name}: not a histogram's buckets");
        }
    }
    for needed in [
        "warden_connection_state",
        "warden_requests_total",
        "warden_retries_total",
        "warden_short_circuits_total",
        "warden_request_duration_seconds_bucket",
        "warden_connection_needs_reauth",
        "warden_token_refresh_total",
    ] {
        assert!(used.contains(needed), "{needed} is never queried");
    }
}

#[test]
fn the_dockerfile_builds_the_release_binary_into_a_static_nonroot_image() {
    let dockerfile = read("Dockerfile");
    let ignore = read(".dockerignore");
    // Instructions with their continuation lines joined.
    let mut instructions = Vec::new();
    let mut current = String::new();
    for line in dockerfile.lines() {
        let line = line.trim();
        if current.is_empty() && (line.is_empty() || line.starts_with('#')) {
            continue;
        }
        match line.strip_suffix('\\') {
            Some(part) => {
                current.push_str(part);
                current.push(' ');
            }
            None => {
                current.push_str(line);
                instructions.push(std::mem::take(&mut current));
            }
        }
    }
    let ignored: Vec<&str> = ignore
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| l.trim_end_matches('/'))
        .collect();
    let mut copied = 0;
    let mut sources_copied: Vec<String> = Vec::new();
    for inst in &instructions {
        let words: Vec<&str> = inst.split_whitespace().collect();
        if words[0] != "COPY" || words.iter().any(|w| w.starts_with("--from")) {
            continue;
        }
        let sources: Vec<&str> = words[1..words.len() - 1]
            .iter()
            .copied()
            .filter(|w| !w.starts_with("--"))
            .collect();
        for source in sources {
            assert!(
                root().join(source).exists(),
                "COPY {source}: not in the repository"
            );
            assert!(
                !ignored.contains(&source),
                "COPY {source}: excluded by .dockerignore"
            );
            copied += 1;
            sources_copied.push(source.to_owned());
        }
    }
    assert!(copied >= 4, "COPY sources found: {copied}");
    only_the_copied_files_resolve(&sources_copied);
    assert!(
        ignored.contains(&"target"),
        ".dockerignore keeps target/ out"
    );
    let froms: Vec<&String> = instructions
        .iter()
        .filter(|i| i.starts_with("FROM "))
        .collect();
    assert!(froms.len() >= 2, "multi-stage");
    assert!(
        froms[froms.len() - 1].starts_with("FROM gcr.io/distroless/static-debian12:nonroot"),
        "{}",
        froms[froms.len() - 1]
    );
    let runs = instructions
        .iter()
        .filter(|i| i.starts_with("RUN "))
        .cloned()
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        runs.contains("cargo build --release --locked --bin warden"),
        "{runs}"
    );
    let final_stage = dockerfile
        .rsplit_once("\nFROM ")
        .map(|(_, s)| s)
        .expect("final stage");
    assert!(final_stage.contains("\nUSER 65532:65532\n"));
    assert!(final_stage.contains("ENTRYPOINT [\"/warden\"]"));
}

/// The build context the Dockerfile copies, alone, is a whole workspace: `cargo metadata
/// --locked --offline` resolves it against Cargo.lock as it stands, and the binary keeps its
/// build script (the commit in `--version`). Cheap: nothing is compiled.
fn only_the_copied_files_resolve(sources: &[String]) {
    let dir = tempfile::tempdir().expect("dir");
    for source in sources {
        copy_tree(&root().join(source), &dir.path().join(source));
    }
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    // This platform's dependencies only: they are in the local cache after any build, so
    // --offline holds; the others (Windows crates) may never have been downloaded.
    let platform = format!("{}-unknown-linux-gnu", std::env::consts::ARCH);
    let out = Command::new(cargo)
        .args(["metadata", "--locked", "--offline", "--format-version", "1"])
        .args(["--filter-platform", &platform])
        .current_dir(dir.path())
        .env("CARGO_TARGET_DIR", dir.path().join("target"))
        .output()
        .expect("run cargo metadata");
    assert!(
        out.status.success(),
        "the files the Dockerfile copies do not make a workspace that resolves --locked:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: Value = serde_json::from_slice(&out.stdout).expect("metadata JSON");
    let warden = meta["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .find(|p| p["name"] == "warden")
        .expect("the warden package");
    let kinds: BTreeSet<String> = warden["targets"]
        .as_array()
        .expect("targets")
        .iter()
        .filter_map(|t| t["kind"][0].as_str().map(str::to_owned))
        .collect();
    for kind in ["bin", "custom-build"] {
        assert!(
            kinds.contains(kind),
            "no {kind} target in the copied files: {kinds:?}"
        );
    }
    let members = meta["workspace_members"].as_array().expect("members").len();
    let real_members = std::fs::read_dir(root().join("crates"))
        .expect("crates")
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.path().join("Cargo.toml").exists())
        })
        .count()
        + 1;
    assert_eq!(members, real_members, "workspace members");
}

fn copy_tree(from: &Path, to: &Path) {
    if from.is_dir() {
        if from.file_name().is_some_and(|n| n == "target") {
            return;
        }
        std::fs::create_dir_all(to).expect("mkdir");
        for entry in std::fs::read_dir(from).expect("read dir") {
            let entry = entry.expect("entry");
            copy_tree(&entry.path(), &to.join(entry.file_name()));
        }
    } else {
        if let Some(parent) = to.parent() {
            std::fs::create_dir_all(parent).expect("mkdir");
        }
        std::fs::copy(from, to).expect("copy");
    }
}

/// Without promtool the two promtool tests skip loudly, and under CI they fail: re-runs
/// them from this binary with `PATH` stripped of promtool.
#[test]
fn the_promtool_tests_skip_without_promtool_and_fail_under_ci() {
    tools::assert_skip_and_ci_failure(
        &[&tools::PROMTOOL],
        &[
            "the_alert_rules_pass_promtool_check_and_unit_tests",
            "the_dashboard_queries_are_valid_promql",
        ],
    );
}
