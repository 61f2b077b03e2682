//! Every example proxy.yaml in the documentation passes `warden check`: each fenced
//! ```yaml block holding a `version: 1` line, in README.md and every Markdown file under
//! docs/, is written out and checked by the real binary.

mod support;

use std::path::{Path, PathBuf};

use support::run_warden;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn markdown_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|e| e.expect("entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            markdown_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "md") {
            out.push(path);
        }
    }
}

/// (first line of the block, its text) for each fenced yaml block that is a proxy.yaml.
fn proxy_yaml_blocks(markdown: &str) -> Vec<(usize, String)> {
    let mut blocks = Vec::new();
    let mut current: Option<(usize, String)> = None;
    for (i, line) in markdown.lines().enumerate() {
        let fence = line.trim_start();
        match &mut current {
            None if fence.starts_with("```yaml") => current = Some((i + 2, String::new())),
            Some(_) if fence.starts_with("```") => {
                if let Some((start, text)) = current.take()
                    && text.lines().any(|l| l.trim_end() == "version: 1")
                {
                    blocks.push((start, text));
                }
            }
            Some((_, text)) => {
                text.push_str(line);
                text.push('\n');
            }
            None => {}
        }
    }
    blocks
}

#[test]
fn every_example_proxy_yaml_in_the_docs_passes_warden_check() {
    let mut files = vec![root().join("README.md")];
    markdown_files(&root().join("docs"), &mut files);
    let dir = tempfile::tempdir().expect("dir");
    let mut checked = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).expect("read markdown");
        let rel = file.strip_prefix(root()).expect("in the repo").display();
        for (line, block) in proxy_yaml_blocks(&text) {
            // Indented blocks (inside a list item) are valid YAML once dedented.
            let indent = block
                .lines()
                .filter(|l| !l.trim().is_empty())
                .map(|l| l.len() - l.trim_start().len())
                .min()
                .unwrap_or(0);
            let dedented: String = block
                .lines()
                .map(|l| l.get(indent..).unwrap_or("").to_owned() + "\n")
                .collect();
            std::fs::write(dir.path().join("example.yaml"), &dedented).expect("write");
            let (code, stdout, stderr) =
                run_warden(&["check", "--config", "example.yaml"], dir.path());
            assert_eq!(
                code, 0,
                "{rel}:{line}: the example fails `warden check`:\n{stderr}{stdout}\n{dedented}"
            );
            checked.push(format!("{rel}:{line}"));
        }
    }
    for recipe in [
        "keycloak.md",
        "okta.md",
        "auth0.md",
        "entra-id.md",
        "mcp-clients.md",
        "discovery.md",
        "local-dev.md",
    ] {
        assert!(
            checked
                .iter()
                .any(|c| c.starts_with(&format!("docs/recipes/{recipe}:"))),
            "no example proxy.yaml checked in docs/recipes/{recipe}: {checked:?}"
        );
    }
}

/// Remote kustomize references to this repository in the docs name directories that exist
/// here (`https://github.com/warden-proxy/warden//deploy/...?ref=...`).
#[test]
fn remote_kustomize_references_point_at_directories_that_exist() {
    let mut files = vec![root().join("README.md")];
    markdown_files(&root().join("docs"), &mut files);
    let mut seen = 0;
    for file in &files {
        let text = std::fs::read_to_string(file).expect("read markdown");
        for (at, _) in text.match_indices("github.com/warden-proxy/warden//") {
            let rest = &text[at + "github.com/warden-proxy/warden//".len()..];
            let path: String = rest
                .chars()
                .take_while(|c| !c.is_whitespace() && !matches!(c, '?' | '`' | ')'))
                .collect();
            assert!(
                root().join(&path).join("kustomization.yaml").is_file(),
                "{}: {path} is not a kustomization in this repository",
                file.display()
            );
            seen += 1;
        }
    }
    assert!(seen >= 1, "the README's kustomize snippet");
}
