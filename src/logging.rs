//! Log output: human on a terminal, JSON otherwise, level from `RUST_LOG`.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum LogFormat {
    /// Human on a terminal, JSON otherwise.
    Auto,
    Human,
    Json,
}

/// warden's own crates: a bare level in `RUST_LOG` applies to these only, so `trace` does not
/// bury the output under every dependency's internals.
const OWN_CRATES: &[&str] = &[
    "warden",
    "warden_config",
    "warden_proxy",
    "warden_admin",
    "warden_policy",
    "warden_health",
];

pub(crate) fn init(format: LogFormat) {
    let filter = EnvFilter::new(directives(std::env::var("RUST_LOG").ok().as_deref()));
    let json = match format {
        LogFormat::Auto => !std::io::stderr().is_terminal(),
        LogFormat::Human => false,
        LogFormat::Json => true,
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .init();
    } else {
        builder.with_ansi(std::io::stderr().is_terminal()).init();
    }
}

/// `--log-format` as written on a command line clap could not parse: the format its
/// refusal should be logged in (auto when absent or unreadable).
pub(crate) fn format_in(argv: &[String]) -> LogFormat {
    let value = argv.iter().enumerate().find_map(|(i, a)| {
        if a == "--log-format" {
            argv.get(i + 1).map(String::as_str)
        } else {
            a.strip_prefix("--log-format=")
        }
    });
    match value {
        Some("json") => LogFormat::Json,
        Some("human") => LogFormat::Human,
        _ => LogFormat::Auto,
    }
}

/// Turns `RUST_LOG` into filter directives: a bare level is applied to warden's crates with
/// dependencies kept at `info`; anything else is used as written.
fn directives(rust_log: Option<&str>) -> String {
    let Some(value) = rust_log.map(str::trim).filter(|v| !v.is_empty()) else {
        return "info".to_owned();
    };
    let bare = matches!(
        value.to_ascii_lowercase().as_str(),
        "trace" | "debug" | "info" | "warn" | "error" | "off"
    );
    if !bare {
        return value.to_owned();
    }
    let mut out = String::from("info");
    for krate in OWN_CRATES {
        out.push_str(&format!(",{krate}={value}"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::{LogFormat, directives, format_in};

    #[test]
    fn log_format_is_found_in_an_unparsed_command_line() {
        let argv = |s: &str| s.split(' ').map(str::to_owned).collect::<Vec<_>>();
        assert_eq!(
            format_in(&argv("--log-format json run --bogus")),
            LogFormat::Json
        );
        assert_eq!(
            format_in(&argv("run --log-format=human --bogus")),
            LogFormat::Human
        );
        assert_eq!(format_in(&argv("run --bogus")), LogFormat::Auto);
        assert_eq!(format_in(&argv("run --log-format")), LogFormat::Auto);
    }

    #[test]
    fn bare_level_applies_to_own_crates_only() {
        let d = directives(Some("trace"));
        assert!(d.starts_with("info,"));
        assert!(d.contains("warden_proxy=trace"));
        assert!(!d.contains("hyper"));
    }

    #[test]
    fn explicit_directives_are_kept() {
        assert_eq!(
            directives(Some("hyper=debug,warden=info")),
            "hyper=debug,warden=info"
        );
        assert_eq!(directives(None), "info");
        assert_eq!(directives(Some("  ")), "info");
    }
}
