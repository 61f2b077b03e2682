//! `warden check`: exit 0 on the shipped example, exit 1 with located errors on broken files.

mod support;

use std::path::Path;

use support::run_warden;

fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn the_shipped_example_is_valid() {
    let (code, stdout, stderr) = run_warden(&["check", "--config", "proxy.yaml"], repo_root());
    assert_eq!(code, 0, "stdout: {stdout}\nstderr: {stderr}");
    assert!(stdout.contains("ok"), "{stdout}");
    assert!(
        !stderr.contains("warning"),
        "the example warns about nothing: {stderr}"
    );
}

#[test]
fn a_circuit_one_request_can_open_is_a_warning_not_an_error() {
    let dir = tempfile::tempdir().expect("dir");
    let yaml = "version: 1
defaults:
  retry: { max_attempts: 3 }
connections:
  - name: billing
    api:
      listen: 127.0.0.1:15003
      upstream: https://api.example.com
      circuit: { consecutive_failures: 3 }
  - name: crm
    mcp:
      listen: 127.0.0.1:15001
      upstream: https://mcp.example.com
      retry: { max_attempts: 2 }
      circuit: { consecutive_failures: 3 }
";
    std::fs::write(dir.path().join("proxy.yaml"), yaml).expect("write");
    let (code, stdout, stderr) = run_warden(&["check", "--config", "proxy.yaml"], dir.path());
    assert_eq!(code, 0, "a warning does not fail the check: {stderr}");
    assert!(stdout.contains("ok"), "{stdout}");
    let warnings: Vec<&str> = stderr.lines().filter(|l| l.contains("warning")).collect();
    assert_eq!(warnings.len(), 1, "{stderr}");
    assert!(
        warnings[0].contains("connections[0].api.circuit.consecutive_failures")
            && warnings[0].contains("one request alone can open the circuit"),
        "{stderr}"
    );
}

#[test]
fn warden_config_env_names_the_file() {
    let out = std::process::Command::new(support::warden_bin())
        .arg("check")
        .env("WARDEN_CONFIG", repo_root().join("proxy.yaml"))
        .current_dir(std::env::temp_dir())
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn every_mistake_of_a_file_is_listed_in_one_run() {
    let dir = tempfile::tempdir().expect("dir");
    // Typos in three sibling sections, two in one nested section, and one rule with three
    // mistakes (a required key among them, which must not hide its siblings).
    let yaml = "version: 1
admin:
  listn: 127.0.0.1:9901
defaults:
  retry:
    max_atempts: 3
  timeouts: { conect: 2s }
limits:
  max_concurent_retries: 5
connections:
  - name: crm
    mcp:
      listen: 127.0.0.1:15001
      upstream: https://mcp.example.com
policy:
  rules:
    - name: r1
      when: { role: mcp, statuss: 500 }
      then: { verdict: transientt, retry: sometimes }
";
    std::fs::write(dir.path().join("proxy.yaml"), yaml).expect("write");
    let (code, _, stderr) = run_warden(&["check", "--config", "proxy.yaml"], dir.path());
    assert_eq!(code, 1);
    for (line, path) in [
        (3, "admin.listn"),
        (6, "defaults.retry.max_atempts"),
        (7, "defaults.timeouts.conect"),
        (9, "limits.max_concurent_retries"),
        (18, "policy.rules[0].when.statuss"),
        (19, "policy.rules[0].then.verdict"),
        (19, "policy.rules[0].then.retry"),
    ] {
        assert!(
            stderr.contains(&format!("proxy.yaml:{line}:"))
                && stderr.contains(&format!(": {path}: ")),
            "{path} (line {line}) missing:\n{stderr}"
        );
    }
    assert!(stderr.contains("7 error(s)"), "{stderr}");
}

#[test]
fn config_dash_reads_standard_input() {
    use std::io::Write as _;
    let run = |yaml: &str| {
        let mut child = std::process::Command::new(support::warden_bin())
            .args(["check", "--config", "-"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(yaml.as_bytes())
            .expect("write");
        let out = child.wait_with_output().expect("wait");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let example = std::fs::read_to_string(repo_root().join("proxy.yaml")).expect("example");
    let (code, stdout, stderr) = run(&example);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.contains("ok"), "{stdout}");
    let (code, _, stderr) = run("version: 1\nconnections: []\nbogus: 1\n");
    assert_eq!(code, Some(1));
    assert!(
        stderr.contains("<stdin>:3:1: bogus: unknown key"),
        "{stderr}"
    );
}

#[test]
fn a_missing_file_is_an_error() {
    let dir = tempfile::tempdir().expect("dir");
    let (code, _, stderr) = run_warden(&["check", "--config", "nope.yaml"], dir.path());
    assert_eq!(code, 1);
    assert!(stderr.contains("nope.yaml"), "{stderr}");
}

const VALID_CONN: &str = "connections:
  - name: crm
    mcp:
      listen: 127.0.0.1:15001
      upstream: https://mcp.example.com
";

/// (what is broken, file, the `line:column: key.path` that must appear in stderr)
const BROKEN: &[(&str, &str, &str)] = &[
    (
        "unknown top-level key",
        "version: 1\nlisten: 1\nconnections:\n  - name: a\n    mcp: { listen: 127.0.0.1:1, upstream: http://a }\n",
        "2:1: listen",
    ),
    (
        "bad duration",
        "version: 1\ndefaults:\n  timeouts:\n    connect: 2 seconds\nconnections:\n  - name: a\n    mcp: { listen: 127.0.0.1:1, upstream: http://a }\n",
        "4:5: defaults.timeouts.connect",
    ),
    (
        "ftp upstream",
        "version: 1\nconnections:\n  - name: a\n    mcp:\n      listen: 127.0.0.1:1\n      upstream: ftp://a.example\n",
        "6:7: connections[0].mcp.upstream",
    ),
    (
        "upstream without host",
        "version: 1\nconnections:\n  - name: a\n    mcp:\n      listen: 127.0.0.1:1\n      upstream: 'https://'\n",
        "6:7: connections[0].mcp.upstream",
    ),
    (
        "duplicate connection names",
        "version: 1\nconnections:\n  - name: a\n    mcp: { listen: 127.0.0.1:1, upstream: http://a }\n  - name: a\n    mcp: { listen: 127.0.0.1:2, upstream: http://a }\n",
        "5:5: connections[1].name",
    ),
    (
        "duplicate ports",
        "version: 1\nconnections:\n  - name: a\n    mcp: { listen: 127.0.0.1:7000, upstream: http://a }\n    oauth: { listen: 127.0.0.1:7000, upstream: http://a, token_path: /t }\n",
        "connections[0].oauth.listen",
    ),
    (
        "bad connection name",
        "version: 1\nconnections:\n  - name: Bad_Name\n    mcp: { listen: 127.0.0.1:1, upstream: http://a }\n",
        "3:5: connections[0].name",
    ),
    (
        "unknown route key",
        "version: 1\nconnections:\n  - name: a\n    mcp:\n      listen: 127.0.0.1:1\n      upstream: http://a\n      retries: 3\n",
        "7:7: connections[0].mcp.retries",
    ),
    (
        "bad status range in a rule",
        "version: 1\nconnections:\n  - name: a\n    mcp: { listen: 127.0.0.1:1, upstream: http://a }\npolicy:\n  rules:\n    - name: r\n      when: { status: \"599-500\" }\n      then: { verdict: transient }\n",
        "policy.rules[0].when.status",
    ),
    (
        "bad verdict",
        "version: 1\nconnections:\n  - name: a\n    mcp: { listen: 127.0.0.1:1, upstream: http://a }\npolicy:\n  rules:\n    - name: r\n      when: { status: 500 }\n      then: { verdict: maybe }\n",
        "policy.rules[0].then.verdict",
    ),
    ("not YAML", "version: 1\nconnections: [\n", "proxy.yaml:"),
];

#[test]
fn broken_files_exit_one_naming_key_and_position() {
    let dir = tempfile::tempdir().expect("dir");
    for (what, yaml, expected) in BROKEN {
        std::fs::write(dir.path().join("proxy.yaml"), yaml).expect("write");
        let (code, stdout, stderr) = run_warden(&["check"], dir.path());
        assert_eq!(
            code, 1,
            "{what}: expected exit 1\nstdout: {stdout}\nstderr: {stderr}"
        );
        assert!(
            stderr.contains(expected),
            "{what}: stderr lacks `{expected}`:\n{stderr}"
        );
    }
}

#[test]
fn every_error_of_a_file_is_reported() {
    let dir = tempfile::tempdir().expect("dir");
    let yaml = format!(
        "version: 1\nadmin:\n  listen: not-an-address\ndefaults:\n  retry:\n    max_attempts: 0\n{VALID_CONN}  - name: crm\n    api: {{ listen: 127.0.0.1:15002, upstream: http://x }}\n"
    );
    std::fs::write(dir.path().join("proxy.yaml"), yaml).expect("write");
    let (code, _, stderr) = run_warden(&["check", "--config", "proxy.yaml"], dir.path());
    assert_eq!(code, 1);
    for path in [
        "admin.listen",
        "defaults.retry.max_attempts",
        "connections[1].name",
    ] {
        assert!(stderr.contains(path), "missing error for {path}:\n{stderr}");
    }
}
