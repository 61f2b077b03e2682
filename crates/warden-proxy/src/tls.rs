//! rustls client settings for one upstream.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore};
use warden_config::Tls;

/// Why an upstream's `tls` settings could not be turned into a rustls client; each message
/// names the `tls.*` key at fault, so the operator knows which file or value to fix.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file could not be read or parsed.
    #[error("tls.{key}: cannot read {}: {source}", path.display())]
    Read {
        /// The config key that names the file (`ca_file`, `client_cert`, `client_key`).
        key: &'static str,
        /// The file as the config gives it.
        path: PathBuf,
        /// The read or PEM error.
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    /// A certificate file parsed but held no certificate, most likely the wrong file.
    #[error("tls.{key}: {} holds no PEM certificate", path.display())]
    Empty {
        /// The config key that names the file.
        key: &'static str,
        /// The file as the config gives it.
        path: PathBuf,
    },
    /// A certificate of `ca_file` cannot serve as a trust anchor.
    #[error("tls.ca_file: {} holds a certificate rustls rejects as a root: {source}", path.display())]
    BadRoot {
        /// The file as the config gives it.
        path: PathBuf,
        /// rustls's reason.
        #[source]
        source: rustls::Error,
    },
    /// The client certificate and key do not form a usable pair.
    #[error("tls.client_cert/client_key: {source}")]
    ClientAuth {
        /// rustls's reason.
        #[source]
        source: rustls::Error,
    },
    /// `server_name` is neither a DNS name nor an IP address; holds the value given.
    #[error("tls.server_name: `{0}` is not a valid DNS name or IP address")]
    ServerName(String),
    /// rustls refused the protocol versions of its own provider: not a config mistake.
    #[error("TLS setup: {0}")]
    Protocol(#[source] rustls::Error),
}

/// System roots are read from disk once per process: loading them is the slow part and
/// every https route shares the same set.
fn system_roots() -> &'static RootCertStore {
    static ROOTS: OnceLock<RootCertStore> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let found = rustls_native_certs::load_native_certs();
        for err in &found.errors {
            tracing::warn!(error = %err, "could not load some system root certificates");
        }
        let mut roots = RootCertStore::empty();
        let (added, ignored) = roots.add_parsable_certificates(found.certs);
        tracing::debug!(added, ignored, "loaded system root certificates");
        roots
    })
}

/// Builds the rustls client settings of one route. Plain-http routes get an empty root
/// store: the connector needs a config but never uses it for them, and skipping the system
/// roots keeps their memory out of an http-only sidecar.
pub(crate) fn client_config(tls: &Tls, https: bool) -> Result<ClientConfig, TlsError> {
    let mut roots = if https {
        system_roots().clone()
    } else {
        RootCertStore::empty()
    };
    if let Some(path) = &tls.ca_file {
        let certs = read_certs("ca_file", path)?;
        for cert in certs {
            roots.add(cert).map_err(|source| TlsError::BadRoot {
                path: path.clone(),
                source,
            })?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Protocol)?
        .with_root_certificates(roots);
    let config = match (&tls.client_cert, &tls.client_key) {
        (Some(cert), Some(key)) => {
            let chain = read_certs("client_cert", cert)?;
            let key = PrivateKeyDer::from_pem_file(key).map_err(|source| TlsError::Read {
                key: "client_key",
                path: key.clone(),
                source,
            })?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|source| TlsError::ClientAuth { source })?
        }
        _ => builder.with_no_client_auth(),
    };
    Ok(config)
}

fn read_certs(key: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
        .map_err(|source| TlsError::Read {
            key,
            path: path.to_owned(),
            source,
        })?;
    if certs.is_empty() {
        return Err(TlsError::Empty {
            key,
            path: path.to_owned(),
        });
    }
    Ok(certs)
}
