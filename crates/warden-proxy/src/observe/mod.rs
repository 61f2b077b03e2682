//! Passive observers of upstream answers.
//!
//! Warden never rewrites what an upstream says (README › Classification): classification only *looks* at the
//! bytes on their way to the client. MCP "Streamable HTTP" answers either with one JSON body or
//! with a `text/event-stream` whose events carry JSON-RPC messages, and the JSON-RPC error
//! objects inside either are counted per code in `warden_jsonrpc_errors_total` (README › Admin listener (metrics)).
//!
//! * [`sse`] finds event boundaries in a stream fed as arbitrary chunks, without holding or
//!   changing the chunks (the proxy forwards them itself) and with bounded memory.
//! * [`jsonrpc`] pulls the error codes out of one JSON document;
//!   [`jsonrpc::JsonRpcSseWatcher`] ties the two together for SSE bodies.
//!
//! Neither allocates per chunk or per line, and neither can fail: a stream or document that
//! does not parse is simply not counted, since observing must never break forwarding.

pub mod jsonrpc;
pub mod sse;
