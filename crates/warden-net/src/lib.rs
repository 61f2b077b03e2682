//! Listener plumbing shared by the proxy, the admin API and the webhook, so that every
//! socket warden accepts on is bounded the same way: a listen backlog that absorbs bursts,
//! accept failures that back off instead of spinning, a proxy-wide connection limit, and an
//! idle timeout that runs from accept on (a client that never sends a byte included).
#![forbid(unsafe_code)]

mod accept;
mod idle;
mod limit;
mod listen;
mod park;
mod warn;

pub use accept::{AcceptBackoff, is_per_connection};
pub use idle::{Activity, ActivityGuard, Tracked, TrackedBody, serve};
pub use limit::{ConnectionLimit, ConnectionPermit, Slot};
pub use listen::{backlog, first_byte, listen};
pub use park::{Builders, ClientBody, serve_parked};
pub use warn::WarnEvery;
