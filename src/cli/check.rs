//! `warden check`: a proxy.yaml, or the ConfigMap manifest that carries one.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use warden_config::{Config, ConfigError};

use super::configmap;

#[derive(Debug, Clone, clap::Args)]
pub(crate) struct CheckArgs {
    /// Config file: a proxy.yaml, or a Kubernetes ConfigMap manifest holding one under
    /// `data."proxy.yaml"` (then checked as meant for a pod, as with --kubernetes).
    #[arg(long, short = 'c', env = "WARDEN_CONFIG", default_value = "proxy.yaml")]
    pub config: PathBuf,

    /// The config is meant for a pod: warn about what works on a laptop but not there
    /// (an admin listener on loopback, which the kubelet's probes cannot reach).
    #[arg(long)]
    pub kubernetes: bool,
}

pub(super) fn check(args: &CheckArgs) -> ExitCode {
    let path = args.config.as_path();
    let source = match warden_config::read_source(path) {
        Ok(source) => source,
        Err(err) => {
            super::report_invalid(&err);
            return ExitCode::FAILURE;
        }
    };
    if configmap::is_manifest(&source) {
        return check_manifest(path, &source);
    }
    let origin = warden_config::origin(path);
    match warden_config::parse(&source, &origin) {
        Ok(config) => {
            ok(&origin, &config);
            if args.kubernetes {
                warn_for_pod(&origin, &config);
            }
            ExitCode::SUCCESS
        }
        Err(err) => {
            super::report_invalid(&err);
            ExitCode::FAILURE
        }
    }
}

fn ok(origin: &str, config: &Config) {
    for warning in warden_config::warnings(config) {
        eprintln!("{origin}: warning: {warning}");
    }
    let routes = config.routes().count();
    println!(
        "{origin}: ok ({} connection(s), {routes} route(s), {} rule(s))",
        config.connections.len(),
        config.policy.rules.len()
    );
}

/// Warnings go to stderr and do not fail the check: the file is valid, only unfit for a pod.
fn warn_for_pod(origin: &str, config: &Config) {
    if let Some(problem) = configmap::admin_problem(config.admin.listen) {
        eprintln!("{origin}: warning (kubernetes): {problem}");
    }
}

/// Every ConfigMap with a proxy.yaml in the manifest, its errors at their place in the file.
fn check_manifest(path: &Path, source: &str) -> ExitCode {
    let file = path.display().to_string();
    let found = match configmap::find(source) {
        Ok(found) => found,
        Err(problem) => {
            eprintln!("{file}: {problem}");
            return ExitCode::FAILURE;
        }
    };
    if found.is_empty() {
        eprintln!(
            "{file}: a Kubernetes manifest without a ConfigMap holding data.\"{}\"",
            configmap::DATA_KEY
        );
        return ExitCode::FAILURE;
    }
    let mut failed = false;
    for embedded in found {
        let origin = format!("{file} (ConfigMap {})", embedded.name);
        match warden_config::parse(&embedded.text, &origin) {
            Ok(config) => {
                ok(&origin, &config);
                warn_for_pod(&origin, &config);
            }
            Err(ConfigError::Invalid {
                mut diagnostics, ..
            }) => {
                failed = true;
                // Positions inside a literal block map onto the manifest's own lines.
                let shown = if configmap::relocate(&mut diagnostics, embedded.placement) {
                    file.clone()
                } else {
                    format!("{origin} data.\"{}\"", configmap::DATA_KEY)
                };
                eprint!("{}", warden_config::render(&shown, &diagnostics));
                eprintln!("{origin}: {} error(s)", diagnostics.len());
            }
            Err(other) => {
                failed = true;
                eprintln!("error: {other}");
            }
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
