//! `warden inject` on real manifests: golden output, idempotence, pass-through of what it
//! must not touch, valid Kubernetes objects out, and clear errors.
//!
//! `WARDEN_BLESS=1 cargo test --test inject` rewrites the golden file after a deliberate
//! change to the sidecar; review the diff before committing it.

mod k8s;
mod support;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/k8s")
        .join(name)
}

/// Runs `warden inject ARGS` with `stdin`; returns (exit code, stdout, stderr).
fn inject(args: &[&str], stdin: &str) -> (i32, String, String) {
    let mut child = Command::new(support::warden_bin())
        .arg("inject")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn warden inject");
    let mut input = child.stdin.take().expect("piped stdin");
    // warden may exit before reading (a bad flag): a broken pipe here is not the failure,
    // the exit code and stderr say what happened.
    let _ = input.write_all(stdin.as_bytes());
    drop(input);
    let out = child.wait_with_output().expect("wait for warden inject");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).expect("stdout is UTF-8"),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn inject_ok(args: &[&str], stdin: &str) -> String {
    let (code, out, err) = inject(args, stdin);
    assert_eq!(code, 0, "warden inject failed: {err}");
    out
}

/// The documents of a stream as text, split at `---` lines (marker lines dropped).
fn texts(stream: &str) -> Vec<String> {
    let mut docs = vec![String::new()];
    for line in stream.split_inclusive('\n') {
        if line.trim_end() == "---" {
            docs.push(String::new());
        } else if let Some(last) = docs.last_mut() {
            last.push_str(line);
        }
    }
    docs
}

fn golden(name: &str, actual: &str) {
    let path = fixture(name);
    if std::env::var_os("WARDEN_BLESS").is_some() {
        std::fs::write(&path, actual).expect("write golden file");
        return;
    }
    let expected = std::fs::read_to_string(&path).expect("read golden file");
    assert!(
        expected == actual,
        "output differs from {} (WARDEN_BLESS=1 rewrites it):\n{actual}",
        path.display()
    );
}

#[test]
fn a_multi_document_stream_matches_the_golden_output() {
    let input = std::fs::read_to_string(fixture("stream.yaml")).expect("fixture");
    let from_file = inject_ok(&["-f", fixture("stream.yaml").to_str().expect("utf-8")], "");
    let from_stdin = inject_ok(&[], &input);
    let from_dash = inject_ok(&["-f", "-"], &input);
    assert_eq!(from_file, from_stdin);
    assert_eq!(from_file, from_dash);
    golden("stream.injected.yaml", &from_file);
}

#[test]
fn documents_it_does_not_inject_pass_through_byte_for_byte() {
    let input = std::fs::read_to_string(fixture("stream.yaml")).expect("fixture");
    let output = inject_ok(&[], &input);
    let (before, after) = (texts(&input), texts(&output));
    assert_eq!(before.len(), after.len(), "same documents, same separators");
    let mut changed = Vec::new();
    for (b, a) in before.iter().zip(&after) {
        if b != a {
            // An injected document is the original plus inserted lines, in order.
            let mut rest = a.as_str();
            for line in b.split_inclusive('\n') {
                // The one rewrite: an empty flow list becomes the block list it now is.
                let line = &line.replace("initContainers: []", "initContainers:");
                let at = rest
                    .find(line)
                    .unwrap_or_else(|| panic!("line {line:?} lost or moved:\n{a}"));
                rest = &rest[at + line.len()..];
            }
            changed.push(
                k8s::docs(a)
                    .first()
                    .map(|d| d["metadata"]["name"].as_str().unwrap_or("").to_owned()),
            );
        }
    }
    let changed: Vec<_> = changed.into_iter().flatten().collect();
    assert_eq!(changed, ["web", "db", "nightly-sync", "node-agent"]);
    // Comments, anchors, quoting and the block scalar survive where nothing was added.
    for kept in [
        "# Source: shop/templates/web.yaml\n",
        "labels: &web-labels\n",
        "matchLabels: *web-labels\n",
        "- name: web   # the app\n",
        "args: [\"--port\", \"8080\", \"--upstream=http://127.0.0.1:15001\"]\n",
        "    # not a YAML comment\n      ---\n",
        "\n...\n---\n",
    ] {
        assert!(output.contains(kept), "lost {kept:?}");
    }
}

#[test]
fn injecting_twice_changes_nothing() {
    let input = std::fs::read_to_string(fixture("stream.yaml")).expect("fixture");
    let once = inject_ok(&[], &input);
    let (code, twice, notes) = inject(&[], &once);
    assert_eq!(code, 0);
    assert_eq!(once, twice);
    assert!(
        notes.contains("Deployment web: unchanged (already injected)"),
        "{notes}"
    );
}

#[test]
fn the_output_is_valid_kubernetes_with_the_sidecar_where_expected() {
    let input = std::fs::read_to_string(fixture("stream.yaml")).expect("fixture");
    let output = inject_ok(&[], &input);
    let docs = k8s::docs(&output);
    let kinds: Vec<_> = docs
        .iter()
        .map(|d| {
            format!(
                "{}/{}",
                d["kind"].as_str().unwrap_or(""),
                d["metadata"]["name"].as_str().unwrap_or("")
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "Deployment/web",
            "Service/web",
            "StatefulSet/db",
            "CronJob/nightly-sync",
            "Deployment/legacy",
            "Job/one-off",
            "ConfigMap/scripts",
            "DaemonSet/node-agent"
        ]
    );
    for doc in &docs {
        k8s::validate(doc);
        let name = doc["metadata"]["name"].as_str().unwrap_or("");
        match name {
            "web" if doc["kind"] == "Service" => {}
            "web" | "db" | "nightly-sync" | "node-agent" => {
                k8s::assert_sidecar(doc, &k8s::default_image(), "warden-config");
            }
            _ => assert!(
                k8s::warden_init(doc).is_none(),
                "{name} must not be injected"
            ),
        }
    }
    // The StatefulSet's own init container and volume are still there, after warden's.
    let db = &docs[2];
    let spec = k8s::pod_spec(db).expect("pod spec");
    let names = |key: &str| -> Vec<String> {
        spec[key]
            .as_array()
            .expect("list")
            .iter()
            .map(|c| c["name"].as_str().unwrap_or("").to_owned())
            .collect()
    };
    assert_eq!(names("initContainers"), ["warden", "restore"]);
    assert_eq!(names("volumes"), ["warden-config", "scratch"]);
}

#[test]
fn image_config_map_and_port_flags_are_used() {
    let pod = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\nspec:\n  containers:\n    - name: app\n      image: app:1\n";
    let out = inject_ok(
        &[
            "--image",
            "registry.internal/warden@sha256:0123",
            "--config-map",
            "crm-proxy",
            "--admin-port",
            "19901",
        ],
        pod,
    );
    let doc = &k8s::docs(&out)[0];
    k8s::validate(doc);
    let c = k8s::warden_init(doc).expect("injected");
    assert_eq!(c["image"], "registry.internal/warden@sha256:0123");
    assert_eq!(c["ports"][0]["containerPort"], 19901);
    assert_eq!(doc["spec"]["volumes"][0]["configMap"]["name"], "crm-proxy");

    let (code, out, err) = inject(&["--config-map", "Not_Valid"], pod);
    assert_eq!(code, 1);
    assert!(out.is_empty());
    assert!(err.contains("--config-map"), "{err}");
}

#[test]
fn a_pod_volume_named_warden_config_is_kept_and_used() {
    let pod = "apiVersion: v1
kind: Pod
metadata:
  name: p
spec:
  containers:
    - name: app
      image: app:1
  volumes:
    - name: warden-config
      projected:
        sources:
          - configMap: {name: warden-config}
          - secret: {name: warden-admin-token}
";
    let out = inject_ok(&[], pod);
    let doc = &k8s::docs(&out)[0];
    k8s::validate(doc);
    let volumes = doc["spec"]["volumes"].as_array().expect("volumes");
    assert_eq!(volumes.len(), 1, "no second warden-config volume");
    assert!(volumes[0].get("projected").is_some());
}

#[test]
fn unparseable_yaml_fails_naming_the_document_and_writes_nothing() {
    let stream = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\napiVersion: v1\nkind: Service\nmetadata: {name: b}\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: [broken\n";
    let (code, out, err) = inject(&[], stream);
    assert_eq!(code, 1, "{err}");
    assert!(out.is_empty(), "nothing on stdout: {out}");
    assert!(
        err.contains("document 3") && err.contains("cannot parse YAML"),
        "{err}"
    );

    let (code, _, err) = inject(
        &[],
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec:\n  template:\n    spec:\n      initContainers: {}\n",
    );
    assert_eq!(code, 1);
    assert!(
        err.contains(
            "document 1 (line 1): Deployment web: spec.template.spec.initContainers is not a list"
        ),
        "{err}"
    );

    let (code, _, err) = inject(&["-f", "/nonexistent/app.yaml"], "");
    assert_eq!(code, 1);
    assert!(err.contains("/nonexistent/app.yaml"), "{err}");
}

#[test]
fn empty_streams_and_bare_separators_pass_through() {
    for stream in ["", "---\n", "# only a comment\n", "---\n---\n...\n", "\n\n"] {
        assert_eq!(inject_ok(&[], stream), stream);
    }
}

#[test]
fn list_items_are_injected_and_other_kinds_are_not() {
    let list = "apiVersion: v1
kind: List
items:
- apiVersion: apps/v1
  kind: Deployment
  metadata: {name: a}
  spec:
    selector: {matchLabels: {app: a}}
    template:
      metadata: {labels: {app: a}}
      spec:
        containers:
        - {name: a, image: a}
- apiVersion: example.com/v1
  kind: Deployment
  metadata: {name: custom}
  spec: {template: {spec: {containers: []}}}
";
    let out = inject_ok(&[], list);
    let doc = &k8s::docs(&out)[0];
    let items = doc["items"].as_array().expect("items");
    k8s::validate(&items[0]);
    k8s::assert_sidecar(&items[0], &k8s::default_image(), "warden-config");
    assert_eq!(
        items[1],
        k8s::docs(list)[0]["items"][1],
        "a Deployment of another API group is not a workload warden knows"
    );
}
