//! Each file under tests/broken/ is rejected with exactly the listed problems, each at its
//! key path and line:column.

use std::path::PathBuf;

use warden_config::{ConfigError, Diagnostic};

/// (key path, line, column, part of the message)
type Expected = (&'static str, u64, u64, &'static str);

/// Each file and the problems it must produce, in file order.
const CASES: &[(&str, &[Expected])] = &[
    (
        "unknown_key.yaml",
        &[(
            "connections[0].mcp.retry.backof",
            8,
            9,
            "unknown key `backof` (did you mean `backoff`?)",
        )],
    ),
    (
        "bad_duration.yaml",
        &[(
            "defaults.timeouts.connect",
            4,
            5,
            "`2sec` is not a duration",
        )],
    ),
    (
        "duplicate_connection_name.yaml",
        &[(
            "connections[1].name",
            5,
            5,
            "duplicate connection name `crm` (also connections[0])",
        )],
    ),
    (
        "duplicate_port.yaml",
        &[(
            "connections[1].api.listen",
            9,
            7,
            "port 15001 is already used by connections[0].mcp.listen (0.0.0.0:15001)",
        )],
    ),
    (
        "ftp_upstream.yaml",
        &[(
            "connections[0].api.upstream",
            6,
            7,
            "scheme `ftp` is not supported",
        )],
    ),
    (
        "missing_host.yaml",
        &[("connections[0].mcp.upstream", 6, 7, "has no host")],
    ),
    (
        "upstream_with_path.yaml",
        &[(
            "connections[0].mcp.upstream",
            6,
            7,
            "has a path (`/mcp`): the client's path and query are forwarded as is",
        )],
    ),
    (
        "bad_status_range.yaml",
        &[(
            "policy.rules[0].when.status",
            8,
            15,
            "the range is backwards (599 > 500)",
        )],
    ),
    (
        "bad_regex.yaml",
        &[(
            "policy.rules[0].when.header.x-maintenance",
            10,
            11,
            "invalid regex `(true`: unclosed group",
        )],
    ),
    (
        "contradictory_rule.yaml",
        &[(
            "policy.rules[0].when.jsonrpc_error",
            13,
            9,
            "can never match with role oauth",
        )],
    ),
    (
        "token_path_on_mcp.yaml",
        &[(
            "connections[0].mcp.token_path",
            7,
            7,
            "token_path only applies to oauth routes",
        )],
    ),
    (
        "missing_token_path.yaml",
        &[(
            "connections[0].oauth",
            4,
            5,
            "missing required key `token_path`",
        )],
    ),
    (
        "syntax_error.yaml",
        &[("", 5, 9, "did not find expected ',' or '}'")],
    ),
    (
        "duplicate_yaml_key.yaml",
        &[(
            "connections[0].mcp.listen",
            7,
            7,
            "duplicate key `listen` (first at line 5, column 7)",
        )],
    ),
    (
        "wrong_type.yaml",
        &[(
            "defaults.retry.max_attempts",
            4,
            5,
            "expected a whole number (0 or more), found string \"three\"",
        )],
    ),
    (
        "tls_on_http.yaml",
        &[(
            "connections[0].mcp.tls.server_name",
            8,
            9,
            "TLS settings need an https:// upstream",
        )],
    ),
    (
        "backoff_order.yaml",
        &[(
            "connections[0].mcp.retry.backoff.max",
            11,
            20,
            "backoff max 200ms is less than backoff base 500ms (from defaults.retry.backoff.base)",
        )],
    ),
    (
        "no_routes.yaml",
        &[
            ("version", 1, 1, "unsupported version 2"),
            (
                "connections[0]",
                3,
                5,
                "a connection needs at least one route",
            ),
        ],
    ),
    ("empty.yaml", &[("", 1, 1, "the file is empty")]),
    (
        "three_errors.yaml",
        &[
            (
                "admin.listen",
                4,
                3,
                "`localhost:9901` is not an ip:port address",
            ),
            (
                "connections[0].name",
                6,
                5,
                "`CRM` is not a valid connection name",
            ),
            (
                "policy.rules[0].when.error_kind",
                13,
                28,
                "can never match together with status: a network error has no response",
            ),
        ],
    ),
];

fn check(file: &str) -> Vec<Diagnostic> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/broken")
        .join(file);
    match warden_config::load(&path) {
        Ok(_) => panic!("{file} was accepted"),
        Err(ConfigError::Invalid {
            origin,
            diagnostics,
        }) => {
            assert!(origin.ends_with(file), "{origin}");
            diagnostics
        }
        Err(other) => panic!("{file}: {other}"),
    }
}

#[test]
fn every_broken_file_reports_exactly_its_problems() {
    let mut failures = Vec::new();
    for (file, expected) in CASES {
        let got = check(file);
        let matches = got.len() == expected.len()
            && got
                .iter()
                .zip(expected.iter())
                .all(|(d, (path, line, column, message))| {
                    d.path == *path
                        && d.line == Some(*line)
                        && d.column == Some(*column)
                        && d.message.contains(message)
                });
        if !matches {
            failures.push(format!(
                "{file}:\n  expected {expected:?}\n  got:\n{}",
                warden_config::render(file, &got)
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_fixture_is_listed() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/broken");
    for entry in std::fs::read_dir(dir).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        assert!(
            CASES.iter().any(|(file, _)| *file == name),
            "tests/broken/{name} has no expectations in CASES"
        );
    }
}

#[test]
fn rendered_output_is_one_line_per_problem() {
    let diagnostics = check("three_errors.yaml");
    let out = warden_config::render("proxy.yaml", &diagnostics);
    let lines: Vec<_> = out.lines().collect();
    assert_eq!(lines.len(), 3);
    assert!(lines[0].starts_with("proxy.yaml:4:3: admin.listen: `localhost:9901` is not"));
    assert!(lines[2].starts_with("proxy.yaml:13:28: policy.rules[0].when.error_kind: "));
    assert!(out.ends_with('\n'));
}
