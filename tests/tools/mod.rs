//! System tools a few tests need beyond the Rust toolchain (a headless browser, promtool),
//! and the one rule for when they are missing: on a developer's machine the test skips with
//! a loud banner naming the install line; where `CI` is set the test fails, because a CI run
//! that quietly skips its browser test proves nothing.
//!
//! Tools are looked up on `PATH` (an environment variable may name the binary instead), so
//! a run with `PATH` stripped of them behaves exactly like a machine without them; the
//! `*_skip_without_*` tests check both branches that way.

// Each test binary that includes this module uses a part of it.
#![allow(dead_code)]

use std::ffi::OsString;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Command, Output};

/// One system tool: the names it goes by on `PATH`, the variable that may point at it, and
/// the line that installs it on Debian (what `.ci/run` runs).
pub(crate) struct Tool {
    pub(crate) names: &'static [&'static str],
    pub(crate) env: &'static str,
    pub(crate) install: &'static str,
}

pub(crate) const CHROMIUM: Tool = Tool {
    names: &["chromium", "chromium-browser"],
    env: "WARDEN_TEST_CHROMIUM",
    install: "apt-get update && apt-get install -y chromium chromium-driver",
};

pub(crate) const CHROMEDRIVER: Tool = Tool {
    names: &["chromedriver"],
    env: "WARDEN_TEST_CHROMEDRIVER",
    install: "apt-get update && apt-get install -y chromium chromium-driver",
};

pub(crate) const PROMTOOL: Tool = Tool {
    names: &["promtool"],
    env: "WARDEN_TEST_PROMTOOL",
    install: "apt-get update && apt-get install -y prometheus",
};

/// The words a skipping test prints; the meta-tests look for them.
pub(crate) const SKIP_BANNER: &str = "SKIPPED: system tool missing";

impl Tool {
    /// The tool's path: the environment variable's value when set, else the first of its
    /// names found on `PATH`.
    pub(crate) fn find(&self) -> Option<PathBuf> {
        if let Some(path) = std::env::var_os(self.env).filter(|p| !p.is_empty()) {
            let path = PathBuf::from(path);
            return path.is_file().then_some(path);
        }
        let dirs = std::env::var_os("PATH")?;
        std::env::split_paths(&dirs).find_map(|dir| {
            self.names
                .iter()
                .map(|name| dir.join(name))
                .find(|candidate| candidate.is_file())
        })
    }
}

/// Is this a CI run? Any non-empty `CI` but `false`/`0`, as CI services set it.
pub(crate) fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0")
}

/// Every tool's path, or `None` (after a loud banner on stderr) when one is missing outside
/// CI. Under CI a missing tool fails the calling test with the same text.
pub(crate) fn require(test: &str, tools: &[&Tool]) -> Option<Vec<PathBuf>> {
    let mut found = Vec::new();
    let mut missing = Vec::new();
    for tool in tools {
        match tool.find() {
            Some(path) => found.push(path),
            None => missing.push(*tool),
        }
    }
    if missing.is_empty() {
        return Some(found);
    }
    let mut text = String::new();
    for tool in &missing {
        text.push_str(&format!(
            "  {} not found on PATH (or in ${}): install it with `{}`\n",
            tool.names[0], tool.env, tool.install
        ));
    }
    assert!(
        !in_ci(),
        "{test} needs system tools and CI is set, so it may not skip:\n{text}\
         `.ci/run` installs them."
    );
    // Straight to the process's stderr: libtest captures `eprintln!` of passing tests, and
    // a skip nobody sees is a silent pass.
    let banner = format!(
        "\n=== {SKIP_BANNER} ===\n{test} did not run:\n{text}\
         (`.ci/run` installs every tool; with CI set a missing tool fails instead)\n\n"
    );
    let _ = std::io::stderr().write_all(banner.as_bytes());
    None
}

/// `PATH` without the directories that hold any of `tools`.
pub(crate) fn path_without(tools: &[&Tool]) -> OsString {
    let dirs = std::env::var_os("PATH").unwrap_or_default();
    let kept: Vec<PathBuf> = std::env::split_paths(&dirs)
        .filter(|dir| {
            !tools
                .iter()
                .any(|t| t.names.iter().any(|n| dir.join(n).is_file()))
        })
        .collect();
    std::env::join_paths(kept).unwrap_or_default()
}

/// Runs `tests` (exact names) of this very test binary as a machine without `tools` would:
/// `PATH` stripped of them, their variables unset, and `CI` set to `ci` or unset.
pub(crate) fn run_without(tools: &[&Tool], tests: &[&str], ci: Option<&str>) -> Output {
    let exe = std::env::current_exe().expect("the test binary's path");
    let mut cmd = Command::new(exe);
    cmd.arg("--exact")
        .args(tests)
        .arg("--test-threads=1")
        .env("PATH", path_without(tools));
    for tool in tools {
        cmd.env_remove(tool.env);
    }
    match ci {
        Some(value) => cmd.env("CI", value),
        None => cmd.env_remove("CI"),
    };
    cmd.output().expect("re-running the test binary")
}

/// Both branches for `tests`: without `CI` they pass and print the banner; with `CI=true`
/// they fail and name the install line.
pub(crate) fn assert_skip_and_ci_failure(tools: &[&Tool], tests: &[&str]) {
    let bare = run_without(tools, tests, None);
    let stderr = String::from_utf8_lossy(&bare.stderr);
    let stdout = String::from_utf8_lossy(&bare.stdout);
    assert!(
        bare.status.success(),
        "without the tools and without CI the tests must pass (skipped):\n{stdout}\n{stderr}"
    );
    assert!(
        stderr.contains(SKIP_BANNER),
        "no skip banner on stderr:\n{stderr}"
    );
    for tool in tools {
        assert!(stderr.contains(tool.install), "no install line:\n{stderr}");
    }
    let passed = format!("{} passed", tests.len());
    assert!(stdout.contains(&passed), "expected {passed}:\n{stdout}");

    let ci = run_without(tools, tests, Some("true"));
    let out = format!(
        "{}{}",
        String::from_utf8_lossy(&ci.stdout),
        String::from_utf8_lossy(&ci.stderr)
    );
    assert!(
        !ci.status.success(),
        "with CI=true the tests must fail:\n{out}"
    );
    assert!(out.contains("CI is set"), "{out}");
}
