//! Whatever the input, `parse` answers with an error, never a panic or a hang.

use warden_config::ConfigError;

fn rejected(source: &str) -> Vec<warden_config::Diagnostic> {
    match warden_config::parse(source, "hostile.yaml") {
        Ok(config) => panic!("accepted: {config:?}"),
        Err(ConfigError::Invalid { diagnostics, .. }) => {
            assert!(!diagnostics.is_empty());
            for d in &diagnostics {
                assert!(!d.message.contains('\n'), "multi-line message: {d}");
            }
            diagnostics
        }
        Err(other) => panic!("{other}"),
    }
}

#[test]
fn deeply_nested_flow() {
    rejected(&format!("{}{}", "[".repeat(100_000), "]".repeat(100_000)));
    rejected(&format!(
        "a: {}{}",
        "{b: ".repeat(10_000),
        "}".repeat(10_000)
    ));
}

#[test]
fn deeply_nested_block() {
    let mut source = String::new();
    for depth in 0..200 {
        source.push_str(&"  ".repeat(depth));
        source.push_str("a:\n");
    }
    rejected(&source);
}

#[test]
fn huge_numbers() {
    rejected("version: 99999999999999999999999999999999999999999999999999\nconnections: []\n");
    rejected("version: 1e400\nconnections: []\n");
    rejected("version: -1\nconnections: []\n");
    rejected("version: .nan\n");
    let d = rejected(
        "version: 1\nevents_per_connection: 18446744073709551616\nconnections:\n  - name: a\n    mcp: {listen: 127.0.0.1:1, upstream: http://a}\n",
    );
    assert_eq!(d[0].path, "events_per_connection");
}

#[test]
fn non_string_keys() {
    rejected("? [a, b]\n: 1\n");
    rejected("? {a: 1}\n: 1\n");
    rejected("~: 1\n");
    let d = rejected("1: x\ntrue: y\nversion: 1\nconnections: []\n");
    assert!(d.iter().any(|d| d.path == "1"), "{d:?}");
}

#[test]
fn tags_and_anchors() {
    rejected("version: !!str 1\nconnections: []\n");
    rejected("version: !custom 1\n");
    rejected("a: &x [*x]\n");
    rejected("a: *undefined\n");
    rejected("version: !!binary AAEC\n");
    // A billion laughs is cut off by the alias budget.
    let mut source = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..12 {
        let prev = i - 1;
        source.push_str(&format!(
            "a{i}: &a{i} [*a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}]\n"
        ));
    }
    rejected(&source);
}

#[test]
fn binary_garbage() {
    let bytes: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    rejected(&String::from_utf8_lossy(&bytes));
    rejected("\u{0}\u{1}\u{2}\u{feff}version: 1");
    rejected("\t\tversion: 1\n");
    rejected("version: 1\n---\nversion: 1\n");
    rejected("%YAML 9.9\n---\na: 1\n");
    rejected("'unterminated");
    rejected("- - - - -");
    rejected("");
    rejected("   \n\n");
    rejected("just a scalar");
}

#[test]
fn wrong_shapes_everywhere() {
    for source in [
        "version: 1\nconnections: {a: 1}\n",
        "version: 1\nconnections: [1, [2], null, true]\n",
        "version: 1\nadmin: [1]\nlimits: 5\nshutdown: x\ndefaults: []\npolicy: [1]\nconnections: []\n",
        "version: 1\npolicy: {rules: {a: 1}}\nconnections: []\n",
        "version: 1\npolicy: {rules: [1, null, [], {}]}\nconnections: []\n",
        "version: [1]\nconnections:\n  - name: [a]\n    mcp: 1\n    api: null\n",
    ] {
        rejected(source);
    }
}

#[test]
fn oversized_file() {
    let source = format!("version: 1\n# {}\n", "x".repeat(5 * 1024 * 1024));
    let d = rejected(&source);
    assert!(d[0].message.contains("at most"), "{}", d[0].message);
}
