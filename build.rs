//! Puts the git commit into `warden --version`, so a running binary can be traced to its
//! source. `WARDEN_GIT_COMMIT` wins (a container build has no `.git`: pass it as a build
//! argument); otherwise `git rev-parse`; with neither, the commit reads `unknown` and the
//! build goes on, since a source tarball must still build.

use std::path::PathBuf;
use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8(out.stdout).ok()?;
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_owned())
}

fn main() {
    println!("cargo:rerun-if-env-changed=WARDEN_GIT_COMMIT");
    let from_env = std::env::var("WARDEN_GIT_COMMIT")
        .ok()
        .map(|c| c.trim().to_owned())
        .filter(|c| !c.is_empty());
    let commit = from_env.or_else(|| {
        // Rebuild when HEAD moves: HEAD itself (a checkout), the branch it names (a
        // commit) and packed-refs (a gc). Paths from git, as a worktree keeps them apart.
        let git_dir = git(&["rev-parse", "--git-dir"]).map(PathBuf::from);
        let common = git(&["rev-parse", "--git-common-dir"]).map(PathBuf::from);
        // Only paths that exist: cargo reruns the script on every build for one that does
        // not (a fresh repository has no packed-refs), which rebuilds the binary each time.
        let watch = |path: PathBuf| {
            if path.exists() {
                println!("cargo:rerun-if-changed={}", path.display());
            }
        };
        if let Some(dir) = &git_dir {
            watch(dir.join("HEAD"));
        }
        if let Some(dir) = &common {
            watch(dir.join("packed-refs"));
            if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
                watch(dir.join(branch));
            }
        }
        git(&["rev-parse", "--short=12", "HEAD"])
    });
    // Without a git checkout, only the variable can change the answer.
    println!("cargo:rerun-if-changed=build.rs");
    let commit = commit.unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=WARDEN_GIT_COMMIT={commit}");
}
