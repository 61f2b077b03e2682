//! `warden webhook`: a mutating admission webhook that injects the warden sidecar.

use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct WebhookArgs {
    #[arg(long)]
    pub tls_cert: PathBuf,
    #[arg(long)]
    pub tls_key: PathBuf,
    #[arg(long, default_value = "0.0.0.0:8443")]
    pub listen: std::net::SocketAddr,
}

pub fn webhook(_args: WebhookArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("warden webhook is not available in this build yet")
}
