//! `warden status`: the health table of a running warden, from its admin API.

use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// The admin listener's base URL.
    #[arg(long, default_value = "http://127.0.0.1:9901")]
    pub admin: String,
    /// Print the API's JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

pub fn status(_args: StatusArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("warden status is not available in this build yet")
}
