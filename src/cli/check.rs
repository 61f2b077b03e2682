//! `warden check`.

use std::path::Path;
use std::process::ExitCode;

pub fn check(path: &Path) -> ExitCode {
    match warden_config::load(path) {
        Ok(config) => {
            for warning in warden_config::warnings(&config) {
                eprintln!("{}: warning: {warning}", path.display());
            }
            let routes = config.routes().count();
            println!(
                "{}: ok ({} connection(s), {routes} route(s), {} rule(s))",
                path.display(),
                config.connections.len(),
                config.policy.rules.len()
            );
            ExitCode::SUCCESS
        }
        Err(err) => {
            super::report_invalid(&err);
            ExitCode::FAILURE
        }
    }
}
