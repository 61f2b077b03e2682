//! The `warden` command line.
// jemalloc is the exception, all of it in `allocator` (its settings symbol, its control
// calls and a test), each with its safety argument.
#![deny(unsafe_code)]

mod allocator;
mod cli;
mod fds;
mod idle_trim;
mod logging;
mod telemetry;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = match cli::Args::try_parse() {
        Ok(args) => args,
        Err(err) => return bad_command_line(&err),
    };
    logging::init(args.log_format);
    // The servers' fatal errors are log lines like the rest of their output (JSON under
    // `--log-format json`); the one-shot tools print theirs for the person at the terminal.
    let logs = args.command.is_server();
    match cli::dispatch(args.command) {
        Ok(code) => code,
        Err(err) => {
            let text = error_chain(&err);
            if logs {
                tracing::error!(error = %text, "warden cannot continue");
            } else {
                eprintln!("error: {text}");
            }
            ExitCode::FAILURE
        }
    }
}

/// A command line clap refuses. For the servers (`run`, `demo`, `webhook`) the refusal is
/// a log line in `--log-format` like everything else they print, so a container started
/// with a bad flag still writes JSON; help, version and the one-shot tools get clap's text.
fn bad_command_line(err: &clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let informational = matches!(
        err.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    );
    let server = argv
        .iter()
        .any(|a| matches!(a.as_str(), "run" | "demo" | "webhook"));
    if informational || !server {
        err.exit();
    }
    logging::init(logging::format_in(&argv));
    let text = err.render().to_string();
    let first = text.lines().next().unwrap_or("invalid command line");
    let first = first.strip_prefix("error: ").unwrap_or(first);
    tracing::error!(error = %first, "invalid command line; see --help");
    ExitCode::from(u8::try_from(err.exit_code()).unwrap_or(2))
}

/// The error and its causes joined by `: `, leaving out a cause whose text the message
/// before it already ends with: many errors print their source in their own message and
/// also return it from `source()`, which would otherwise read
/// `Address already in use (os error 98): Address already in use (os error 98)`.
fn error_chain(err: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in err.chain() {
        let part = cause.to_string();
        if text.ends_with(&part) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&part);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::error_chain;

    /// An error that prints its source and also returns it, as many do.
    #[derive(Debug)]
    struct Bind {
        source: std::io::Error,
    }

    impl std::fmt::Display for Bind {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "cannot listen on 127.0.0.1:1: {}", self.source)
        }
    }

    impl std::error::Error for Bind {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.source)
        }
    }

    #[test]
    fn a_source_already_in_the_message_is_not_repeated() {
        let io = std::io::Error::from(std::io::ErrorKind::AddrInUse);
        let io_text = io.to_string();
        let err = anyhow::Error::new(Bind { source: io }).context("starting");
        assert_eq!(
            error_chain(&err),
            format!("starting: cannot listen on 127.0.0.1:1: {io_text}")
        );
    }
}
