//! Subcommands.

mod check;
mod configmap;
mod demo;
mod inject;
mod reload;
mod run;
mod status;
mod webhook;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::logging::LogFormat;

#[derive(Debug, Parser)]
#[command(
    name = "warden",
    // The commit (build.rs) says exactly which source a running binary came from.
    version = concat!(env!("CARGO_PKG_VERSION"), " (commit ", env!("WARDEN_GIT_COMMIT"), ")"),
    about = "Sidecar HTTP proxy that keeps OAuth and MCP connections honest"
)]
pub(crate) struct Args {
    /// Log format: human on a terminal and JSON otherwise (auto), or forced.
    #[arg(long, global = true, value_enum, default_value = "auto")]
    pub log_format: LogFormat,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run the proxy.
    Run(run::RunArgs),
    /// Validate a config file (or a ConfigMap manifest holding one); exit 1 and print
    /// every error if it is invalid.
    Check(check::CheckArgs),
    /// Print the health table of a running warden; exit 1 when a connection needs
    /// re-authorization or has an open circuit.
    Status(status::StatusArgs),
    /// Run warden in front of simulated upstreams that fail on a script.
    Demo(demo::DemoArgs),
    /// Add the warden sidecar to the Pod templates of a Kubernetes YAML stream.
    Inject(inject::InjectArgs),
    /// Serve the mutating admission webhook that injects the sidecar.
    Webhook(webhook::WebhookArgs),
    /// Print a shell completion script (bash: `source <(warden completions bash)`).
    Completions(CompletionsArgs),
}

#[derive(Debug, clap::Args)]
pub(crate) struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

impl Command {
    /// The long-running commands, whose output is logs: their errors follow
    /// `--log-format` too.
    pub(crate) fn is_server(&self) -> bool {
        matches!(
            self,
            Command::Run(_) | Command::Demo(_) | Command::Webhook(_)
        )
    }
}

#[derive(Debug, Clone, clap::Args)]
pub(crate) struct ConfigArg {
    /// Config file.
    #[arg(long, short = 'c', env = "WARDEN_CONFIG", default_value = "proxy.yaml")]
    pub config: PathBuf,
}

pub(crate) fn dispatch(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Run(args) => run::run(args),
        Command::Check(args) => Ok(check::check(&args)),
        Command::Status(args) => status::status(args),
        Command::Demo(args) => demo::demo(args),
        Command::Inject(args) => inject::inject(args),
        Command::Webhook(args) => webhook::webhook(args),
        Command::Completions(args) => {
            let mut command = <Args as clap::CommandFactory>::command();
            clap_complete::generate(args.shell, &mut command, "warden", &mut std::io::stdout());
            Ok(ExitCode::SUCCESS)
        }
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

/// A config error at startup, as log lines in `--log-format` (JSON included), so whatever
/// collects warden's logs parses these too: one line per problem, with its position as
/// fields, then a summary.
fn log_invalid(err: &warden_config::ConfigError) {
    match err {
        warden_config::ConfigError::Invalid {
            origin,
            diagnostics,
        } => {
            for d in diagnostics {
                let text = warden_config::render(origin, std::slice::from_ref(d));
                tracing::error!(
                    file = %origin,
                    line = d.line,
                    column = d.column,
                    key = %d.path,
                    "{}",
                    text.trim_end()
                );
            }
            tracing::error!(
                file = %origin,
                errors = diagnostics.len(),
                "invalid config; not starting"
            );
        }
        other => tracing::error!(error = %other, "cannot read the config; not starting"),
    }
}
