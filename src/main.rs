//! The `warden` command line.
#![forbid(unsafe_code)]

mod cli;
mod fds;
mod logging;
mod telemetry;

use std::process::ExitCode;

/// jemalloc instead of the system allocator: it hands freed memory back to the OS after a
/// burst of connections, where glibc's arenas (and musl's allocator in the image) keep the
/// peak; docs/benchmarks.md ("Bounds under abuse") has both measured.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

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
