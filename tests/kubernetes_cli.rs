//! What the Kubernetes side of the command line tells a user: `inject`'s next steps per
//! workload, and `check` on a ConfigMap manifest or with `--kubernetes`.

mod support;

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};

use support::run_warden;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `warden inject ARGS` with `stdin`: (exit code, stdout, stderr).
fn inject(args: &[&str], stdin: &str) -> (i32, String, String) {
    let mut child = Command::new(support::warden_bin())
        .arg("inject")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn warden inject");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("write stdin");
    let out = child.wait_with_output().expect("wait");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

const APP: &str = "apiVersion: apps/v1
kind: Deployment
metadata:
  name: support-agent
  namespace: shop
spec:
  template:
    spec:
      containers:
        - name: app
          image: app:1
";

const JOB: &str = "apiVersion: batch/v1
kind: Job
metadata:
  name: nightly
spec:
  template:
    spec:
      restartPolicy: Never
      containers:
        - name: job
          image: job:1
";

#[test]
fn inject_prints_next_steps_per_workload_to_stderr() {
    let stream = format!("{APP}---\n{JOB}");
    let (code, out, err) = inject(
        &["--config-map", "crm-proxy", "--admin-port", "9911"],
        &stream,
    );
    assert_eq!(code, 0, "{err}");
    assert!(!out.contains("next steps"), "stdout is the stream only");
    for workload in ["Deployment support-agent", "Job nightly"] {
        assert!(
            err.contains(&format!("{workload}: injected\n"))
                && err.contains(&format!("{workload}: next steps\n")),
            "{err}"
        );
    }
    assert!(err.contains("http://127.0.0.1:<route port>"), "{err}");
    assert!(
        err.contains("ConfigMap crm-proxy (proxy.yaml under data.\"proxy.yaml\") must exist in namespace shop"),
        "{err}"
    );
    assert!(
        err.contains("kubectl -n shop apply -f configmap.yaml"),
        "{err}"
    );
    assert!(
        err.contains("must exist in the namespace the workload is applied to"),
        "the Job names no namespace: {err}"
    );
    assert!(err.contains("admin.listen: 0.0.0.0:9911"), "{err}");
}

#[test]
fn inject_reads_the_routes_of_a_config_map_in_the_stream() {
    let config_map =
        std::fs::read_to_string(root().join("deploy/config/configmap.yaml")).expect("configmap");
    let (code, _, err) = inject(&[], &format!("{config_map}---\n{APP}"));
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("crm mcp → http://127.0.0.1:15001")
            && err.contains("token URL http://127.0.0.1:15002/oauth2/token"),
        "{err}"
    );
    assert!(
        err.contains("ConfigMap warden-config is in this stream"),
        "{err}"
    );
    assert!(err.contains("admin.listen 0.0.0.0:9901"), "{err}");

    // The same ConfigMap with a loopback admin listener: a warning, not a failure.
    let loopback = config_map.replace("listen: 0.0.0.0:9901", "listen: 127.0.0.1:9901");
    let (code, _, err) = inject(&[], &format!("{loopback}---\n{APP}"));
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("WARNING: ConfigMap warden-config: admin.listen is 127.0.0.1:9901"),
        "{err}"
    );
}

/// Nothing injected (opted out), nothing to do next.
#[test]
fn no_next_steps_without_an_injected_workload() {
    let disabled = APP.replace(
        "  namespace: shop\n",
        "  namespace: shop\n  annotations: { warden.io/inject: disabled }\n",
    );
    let (code, _, err) = inject(&[], &disabled);
    assert_eq!(code, 0, "{err}");
    assert!(!err.contains("next steps"), "{err}");
}

#[test]
fn check_accepts_the_shipped_config_map() {
    let (code, out, err) = run_warden(
        &["check", "--config", "deploy/config/configmap.yaml"],
        root(),
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("deploy/config/configmap.yaml (ConfigMap warden-config): ok (1 connection(s), 2 route(s)"),
        "{out}"
    );
    assert!(!err.contains("warning"), "{err}");
}

#[test]
fn check_on_a_config_map_places_errors_in_the_manifest_and_warns_about_loopback() {
    let shipped =
        std::fs::read_to_string(root().join("deploy/config/configmap.yaml")).expect("configmap");
    let dir = tempfile::tempdir().expect("dir");

    let broken = shipped.replace("drain_timeout: 20s", "drain_timeout: soon");
    std::fs::write(dir.path().join("cm.yaml"), &broken).expect("write");
    let line = broken
        .lines()
        .position(|l| l.contains("drain_timeout: soon"))
        .expect("line")
        + 1;
    let column = broken
        .lines()
        .nth(line - 1)
        .expect("line")
        .find("drain")
        .expect("col")
        + 1;
    let (code, _, err) = run_warden(&["check", "--config", "cm.yaml"], dir.path());
    assert_eq!(code, 1);
    assert!(
        err.contains(&format!("cm.yaml:{line}:{column}: shutdown.drain_timeout:")),
        "{err}"
    );

    let loopback = shipped.replace("listen: 0.0.0.0:9901", "listen: 127.0.0.1:9901");
    std::fs::write(dir.path().join("cm.yaml"), loopback).expect("write");
    let (code, _, err) = run_warden(&["check", "--config", "cm.yaml"], dir.path());
    assert_eq!(code, 0, "a warning does not fail the check: {err}");
    assert!(
        err.contains("warning (kubernetes): admin.listen is 127.0.0.1:9901"),
        "{err}"
    );

    std::fs::write(
        dir.path().join("other.yaml"),
        "apiVersion: v1\nkind: Service\nmetadata: { name: x }\n",
    )
    .expect("write");
    let (code, _, err) = run_warden(&["check", "--config", "other.yaml"], dir.path());
    assert_eq!(code, 1);
    assert!(err.contains("without a ConfigMap"), "{err}");
}

#[test]
fn check_kubernetes_warns_about_a_loopback_admin_listener() {
    let (code, _, err) = run_warden(&["check", "--kubernetes", "--config", "proxy.yaml"], root());
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("proxy.yaml: warning (kubernetes): admin.listen is 127.0.0.1:9901"),
        "{err}"
    );
    // Without the flag a laptop config is fine as it is.
    let (code, _, err) = run_warden(&["check", "--config", "proxy.yaml"], root());
    assert_eq!(code, 0);
    assert!(!err.contains("warning"), "{err}");
}
