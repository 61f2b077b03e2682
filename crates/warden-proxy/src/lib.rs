//! warden's data plane: a listener per route forwarding to that route's upstream.
#![forbid(unsafe_code)]

mod access;
mod attempt;
mod body;
mod coalesce;
#[doc(hidden)]
pub mod exchange;
mod headers;
pub mod health;
mod jitter;
mod local;
mod metrics;
#[doc(hidden)]
pub mod observe;
mod prober;
mod record;
mod request;
mod retry;
mod server;
mod service;
mod short_circuit;
mod strict;
mod tls;
mod upstream;

pub use server::{BoundRoute, Proxy, ProxyError};
pub use tls::TlsError;
