//! Listener plumbing shared by the proxy, the admin API and the webhook, so that every
//! socket warden accepts on is bounded and stopped the same way: a listen backlog that
//! absorbs bursts, accept failures that back off instead of spinning, a proxy-wide
//! connection limit, an idle timeout that runs from accept on (a client that never sends a
//! byte included), and one drain: a cancellation token stops accepting and closes each
//! connection after its request, a task tracker waits for what is still running.
#![forbid(unsafe_code)]

mod accept;
mod drain;
mod head;
mod idle;
mod limit;
mod listen;
mod park;
mod warn;

pub use accept::accept_loop;
pub use drain::drain;
pub use idle::{Activity, ActivityGuard, Tracked, TrackedBody, serve};
pub use limit::{ConnectionLimit, ConnectionPermit, Slot};
pub use listen::{backlog, first_byte, listen};
pub use park::{Builders, ClientBody, PARK_AFTER, serve_parked};
pub use warn::WarnEvery;
