//! proxy.yaml: the schema, its defaults and its validation.
#![forbid(unsafe_code)]

mod model;

pub use model::*;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// One problem found in a config file, located by key path and, where known, line:column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// Key path such as `connections[0].mcp.upstream`; empty for the document itself.
    pub path: String,
    pub line: Option<u64>,
    pub column: Option<u64>,
    pub message: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{origin}: {} error(s)", diagnostics.len())]
    Invalid {
        origin: String,
        diagnostics: Vec<Diagnostic>,
    },
}

/// The zero-config mode's settings (`warden run --listen --upstream`).
#[derive(Debug, Clone)]
pub struct ZeroConfig {
    pub listen: SocketAddr,
    pub upstream: String,
    pub role: Role,
    pub admin: SocketAddr,
}

pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let source = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
        path: path.to_owned(),
        source,
    })?;
    parse(&source, &path.display().to_string())
}

pub fn parse(_source: &str, _origin: &str) -> Result<Config, ConfigError> {
    todo!("being written")
}

pub fn zero_config(_z: &ZeroConfig) -> Result<Config, ConfigError> {
    todo!("being written")
}
