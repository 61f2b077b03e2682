//! warden's data plane: a listener per route forwarding to that route's upstream.
#![forbid(unsafe_code)]

mod body;
mod headers;
mod local;
mod metrics;
mod server;
mod service;
mod tls;
mod upstream;

pub use server::{BoundRoute, Proxy, ProxyError};
pub use tls::TlsError;
