//! proxy.yaml: the schema, its defaults and its validation.
//!
//! Loading goes YAML → located JSON tree (`located`) → raw input types, one item at a time
//! (`decode`) → checked and merged `Config` (`validate`, `settings`, `rules`). Every
//! problem is collected with its key path and line:column, so `warden check` can list them
//! all at once.
#![forbid(unsafe_code)]

mod addr;
mod bounds;
mod decode;
mod defaults;
mod diag;
mod duration;
mod effective;
mod forms;
mod keys;
mod lint;
mod located;
mod model;
mod raw;
mod rules;
mod schema;
mod settings;
mod strict;
mod validate;
mod variants;

pub use defaults::{DEFAULT_ADMIN_LISTEN, DEFAULT_EVENTS_PER_CONNECTION, ZERO_CONFIG_TOKEN_PATH};
pub use diag::{Diagnostic, render};
pub use duration::parse_duration;
pub use effective::{REDACTED, effective_json};
pub use lint::{Warning, warnings};
pub use model::*;
pub use schema::json_schema;
pub use variants::variant_array;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use crate::diag::Diags;
use crate::located::Index;

/// Why a config could not be loaded: apart, because an unreadable file has nothing to
/// point at, while an invalid one has every problem located.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read at all.
    #[error("cannot read {}: {source}", path.display())]
    Io {
        /// The path as given, so the message names what the operator typed.
        path: PathBuf,
        /// The operating system's reason.
        #[source]
        source: std::io::Error,
    },
    /// The file was read but is not a valid config.
    #[error("{origin}: {} error(s)", diagnostics.len())]
    Invalid {
        /// Names the source in the report: a path, `<stdin>` or `command line`.
        origin: String,
        /// Every problem found, not just the first, so one run of `warden check` lists
        /// them all.
        diagnostics: Vec<Diagnostic>,
    },
}

impl ConfigError {
    /// The problems found, in file order; empty for an I/O error.
    pub fn diagnostics(&self) -> &[Diagnostic] {
        match self {
            ConfigError::Io { .. } => &[],
            ConfigError::Invalid { diagnostics, .. } => diagnostics,
        }
    }

    /// Everything wrong, one line per problem (see [`render`]), ready to print or log.
    pub fn render(&self) -> String {
        match self {
            ConfigError::Io { .. } => format!("{self}\n"),
            ConfigError::Invalid {
                origin,
                diagnostics,
            } => render(origin, diagnostics),
        }
    }
}

/// The zero-config mode's settings (`warden run --listen --upstream`).
#[derive(Debug, Clone)]
pub struct ZeroConfig {
    /// `--listen`: where the app connects.
    pub listen: SocketAddr,
    /// `--upstream`, as typed: checked like a file's `upstream`, errors naming the flag.
    pub upstream: String,
    /// `--role`: how the one route's answers are classified.
    pub role: Role,
    /// `--admin`: checked against `listen`, since both cannot share a port.
    pub admin: SocketAddr,
    /// `--token-path`: the token endpoint's path on an oauth route; `None` means
    /// [`ZERO_CONFIG_TOKEN_PATH`]. Only an oauth route may have one.
    pub token_path: Option<String>,
}

/// Reads and validates the file at `path` (`-`: standard input, as `inject -f -` reads);
/// errors name it as their origin (`<stdin>` for standard input).
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let source = read_source(path)?;
    parse(&source, &origin(path))
}

/// The text of `path`, or of standard input for `-`.
pub fn read_source(path: &Path) -> Result<String, ConfigError> {
    let io = |source| ConfigError::Io {
        path: path.to_owned(),
        source,
    };
    if is_stdin(path) {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut text).map_err(io)?;
        Ok(text)
    } else {
        std::fs::read_to_string(path).map_err(io)
    }
}

/// `-` names standard input.
pub fn is_stdin(path: &Path) -> bool {
    path.as_os_str() == "-"
}

/// How errors name the source: the path, or `<stdin>`.
pub fn origin(path: &Path) -> String {
    if is_stdin(path) {
        "<stdin>".to_owned()
    } else {
        path.display().to_string()
    }
}

/// Parses and validates a proxy.yaml. `origin` names the source in errors (usually the
/// file path). On failure every problem found is returned, not just the first.
pub fn parse(source: &str, origin: &str) -> Result<Config, ConfigError> {
    let mut diags = Diags::default();
    let invalid = |diags: Diags, index: &Index| ConfigError::Invalid {
        origin: origin.to_owned(),
        diagnostics: diags.into_diagnostics(index),
    };
    let Ok(doc) = located::parse(source, &mut diags) else {
        return Err(invalid(diags, &Index::default()));
    };
    let decoded = decode::decode(&doc.value, &mut diags);
    match validate::validate(&decoded, &mut diags) {
        Some(config) if diags.is_empty() => Ok(config),
        _ => {
            if diags.is_empty() {
                diags.error(
                    "",
                    "internal error: the config was rejected without a reason",
                );
            }
            Err(invalid(diags, &doc.index))
        }
    }
}

/// The config of `warden run --listen --upstream`: connection `default` with one route of
/// `z.role`, every other setting at its default. An oauth route's token path is
/// `--token-path`, else [`ZERO_CONFIG_TOKEN_PATH`] (`/token`): with the wrong path every
/// token request is classified as a plain upstream request and a revoked refresh token
/// goes unnoticed, so IdPs with other paths (Okta, Entra ID) need the flag.
///
/// The upstream goes through the same checks as in a file; problems are reported with the
/// flag as their path (`--upstream`, `--admin`).
pub fn zero_config(z: &ZeroConfig) -> Result<Config, ConfigError> {
    let mut diagnostics = Vec::new();
    let flag_error = |path: &str, message: String| Diagnostic {
        path: path.into(),
        line: None,
        column: None,
        message,
    };
    let upstream = addr::parse_upstream(&z.upstream)
        .map_err(|message| diagnostics.push(flag_error("--upstream", message)))
        .ok();
    if addr::listeners_collide(z.listen, z.admin) {
        diagnostics.push(flag_error(
            "--admin",
            format!(
                "port {} is already used by --listen ({})",
                z.admin.port(),
                z.listen
            ),
        ));
    }
    match (&z.token_path, z.role) {
        (Some(_), Role::Mcp | Role::Api) => diagnostics.push(flag_error(
            "--token-path",
            format!("only applies to --role oauth, not {}", z.role),
        )),
        (Some(p), Role::Oauth)
            if !p.starts_with('/') || p.contains(['?', '#']) || p.contains(char::is_whitespace) =>
        {
            diagnostics.push(flag_error(
                "--token-path",
                format!("`{p}` is not a request path: it must start with `/` and have no query, e.g. /oauth2/v1/token"),
            ));
        }
        _ => {}
    }
    let (Some(upstream), true) = (upstream, diagnostics.is_empty()) else {
        return Err(ConfigError::Invalid {
            origin: "command line".into(),
            diagnostics,
        });
    };
    Ok(Config {
        admin: Admin {
            listen: z.admin,
            token_file: None,
        },
        limits: Limits::default(),
        events_per_connection: DEFAULT_EVENTS_PER_CONNECTION,
        shutdown: Shutdown::default(),
        log: Log::default(),
        connections: vec![Connection {
            name: "default".into(),
            routes: vec![Route {
                role: z.role,
                listen: z.listen,
                upstream,
                tls: Tls::default(),
                token_path: (z.role == Role::Oauth).then(|| {
                    z.token_path
                        .clone()
                        .unwrap_or_else(|| ZERO_CONFIG_TOKEN_PATH.to_owned())
                }),
                timeouts: Timeouts::default(),
                retry: Retry::default(),
                circuit: Circuit::default(),
            }],
        }],
        policy: Policy::default(),
    })
}
