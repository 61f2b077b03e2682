//! warden's data plane: a listener per route forwarding to that route's upstream.
#![forbid(unsafe_code)]
// The bench-only bare path leaves the retry loop and the classifier unused.
#![cfg_attr(feature = "bench-bare", allow(dead_code, unused_imports))]

mod access;
mod admit;
mod attempt;
mod backoff;
mod body;
#[doc(hidden)]
pub mod catalogue;
mod coalesce;
pub mod exchange;
mod headers;
pub mod health;
mod local;
mod metrics;
#[doc(hidden)]
pub mod observe;
mod prober;
mod read_ahead;
mod record;
mod request;
mod retry;
mod route;
mod server;
mod service;
mod short_circuit;
mod single_flight;
mod strict;
mod tls;
mod upstream;

pub use server::{BoundRoute, Proxy, ProxyError, Reloaded};
pub use tls::TlsError;
