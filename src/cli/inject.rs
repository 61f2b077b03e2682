//! `warden inject`: adds the warden native sidecar to Pod templates in a Kubernetes YAML
//! stream.

use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct InjectArgs {
    /// The YAML stream to read; stdin when absent or `-`.
    #[arg(short = 'f', long = "filename")]
    pub file: Option<PathBuf>,
}

pub fn inject(_args: InjectArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("warden inject is not available in this build yet")
}
