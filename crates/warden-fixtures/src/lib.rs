//! Fixtures for warden's test suites, each written once: real upstreams on loopback
//! (scripted answers, a switchable 200/503, connection counts, raw bytes), scripted OAuth
//! IdPs, MCP servers, a throwaway CA, a plain client with the token form POST, metric
//! reading, and a counting allocator.
//!
//! Everything here runs on the caller's tokio runtime and binds IP literals only, so tests
//! on paused time stay deterministic: nothing blocks off the runtime while tokio decides
//! whether to jump its clock.

pub mod alloc;
pub mod client;
pub mod idp;
pub mod mcp;
pub mod metrics;
pub mod pki;
pub mod upstream;

pub use client::{Answer, DEADLINE, HttpClient, get, http_client, send};
pub use upstream::Upstream;
pub mod config;
