//! Subcommands.

mod check;
mod run;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::logging::LogFormat;

#[derive(Debug, Parser)]
#[command(
    name = "warden",
    version,
    about = "Sidecar HTTP proxy that keeps OAuth and MCP connections honest"
)]
pub struct Args {
    /// Log format: human on a terminal and JSON otherwise (auto), or forced.
    #[arg(long, global = true, value_enum, default_value = "auto")]
    pub log_format: LogFormat,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the proxy.
    Run(run::RunArgs),
    /// Validate a config file; exit 1 and print every error if it is invalid.
    Check(ConfigArg),
}

#[derive(Debug, Clone, clap::Args)]
pub struct ConfigArg {
    /// Config file.
    #[arg(long, short = 'c', env = "WARDEN_CONFIG", default_value = "proxy.yaml")]
    pub config: PathBuf,
}

pub fn dispatch(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Run(args) => run::run(args),
        Command::Check(args) => Ok(check::check(&args.config)),
    }
}

/// Prints a config's errors the way `warden check` does: one located line per error.
fn report_invalid(err: &warden_config::ConfigError) {
    match err {
        warden_config::ConfigError::Invalid {
            origin,
            diagnostics,
        } => {
            eprint!("{}", err.render());
            eprintln!("{origin}: {} error(s)", diagnostics.len());
        }
        other => eprintln!("error: {other}"),
    }
}
