//! The `warden` command line.
#![forbid(unsafe_code)]

mod cli;
mod fds;
mod logging;
mod telemetry;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = cli::Args::parse();
    logging::init(args.log_format);
    match cli::dispatch(args.command) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
