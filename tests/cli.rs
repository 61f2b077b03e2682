//! The command line itself: `--version` names the commit, `completions` prints a script
//! for each shell, and the README's command table lists every subcommand `--help` shows.

mod support;

use std::path::Path;
use std::process::Command;

fn warden(args: &[&str]) -> (bool, String) {
    let out = Command::new(support::warden_bin())
        .args(args)
        .output()
        .expect("run warden");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn version_names_the_commit() {
    let (ok, out) = warden(&["--version"]);
    assert!(ok);
    let out = out.trim();
    let prefix = format!("warden {} (commit ", env!("CARGO_PKG_VERSION"));
    let commit = out
        .strip_prefix(&prefix)
        .and_then(|rest| rest.strip_suffix(')'))
        .unwrap_or_else(|| panic!("unexpected --version: {out}"));
    // A hex commit from git or WARDEN_GIT_COMMIT, or `unknown` outside a checkout.
    assert!(
        commit == "unknown"
            || (!commit.is_empty() && commit.chars().all(|c| c.is_ascii_alphanumeric())),
        "{out}"
    );
    if Path::new(env!("CARGO_MANIFEST_DIR")).join(".git").exists()
        && std::env::var_os("WARDEN_GIT_COMMIT").is_none()
    {
        assert_ne!(commit, "unknown", "a git checkout has a commit: {out}");
    }
}

#[test]
fn completions_for_each_shell_know_the_subcommands() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let (ok, script) = warden(&["completions", shell]);
        assert!(ok, "{shell}");
        for word in ["inject", "webhook", "token-path", "log-format"] {
            assert!(script.contains(word), "{shell} completions lack {word}");
        }
    }
    let (ok, _) = warden(&["completions", "tcsh"]);
    assert!(!ok, "an unknown shell is an error");
}

/// The subcommands `warden --help` lists, each in the README's command table.
#[test]
fn the_readme_command_table_lists_every_subcommand() {
    let (ok, help) = warden(&["--help"]);
    assert!(ok);
    let commands: Vec<&str> = help
        .split("Commands:")
        .nth(1)
        .and_then(|rest| rest.split("\n\n").next())
        .expect("a Commands section")
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .collect();
    assert!(commands.len() >= 7, "{commands:?}");
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
        .expect("README");
    let table = readme
        .split("## Command line")
        .nth(1)
        .and_then(|rest| rest.split("\n\n").nth(1))
        .expect("the command table");
    for command in commands {
        assert!(
            table.contains(&format!("| `warden {command}")),
            "the README's command table lacks `warden {command}`:\n{table}"
        );
    }
}
