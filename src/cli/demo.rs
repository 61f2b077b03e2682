//! `warden demo`: warden in front of simulated upstreams that fail on a script (SPEC §9).

use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct DemoArgs {}

pub fn demo(_args: DemoArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("warden demo is not available in this build yet")
}
