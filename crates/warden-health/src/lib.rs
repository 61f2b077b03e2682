//! warden's per-connection health (README › Connection health–§7): one record per connection that answers
//! "may this request go upstream, and if not, why", learns from every classified answer,
//! and shows itself as the admin API's rows and events.
//!
//! The crate is pure — std, the config model, the policy engine's types, serde for the
//! snapshots (which `warden status` reads back), humantime for their timestamps and strum
//! for labels; no async, no HTTP, no clock. Callers pass `Instant`s for what decides
//! behaviour (so paused-time tests drive it) and `SystemTime`s for the timestamps people
//! read. Each [`ConnectionHealth`] is plain `&mut self` state; the proxy puts it behind a
//! mutex. [`ConnectionHealth::gate`] runs before every attempt and allocates nothing.
//!
//! ```
//! use std::time::{Instant, SystemTime};
//! use warden_config::{Role, Verdict};
//! use warden_health::{ConnectionHealth, Gate, GateRequest, HealthSettings, State, UpstreamOutcome};
//!
//! let settings = HealthSettings::new(50).with_consecutive_failures(Role::Mcp, 2);
//! let mut crm = ConnectionHealth::new("crm", &[Role::Mcp, Role::Oauth], settings);
//! let failure = UpstreamOutcome { verdict: Verdict::Transient, status: Some(503), error_kind: None, tls_detail: None };
//!
//! let changes = crm.record_upstream(Role::Mcp, failure, SystemTime::now());
//! assert_eq!(changes.state_changed, Some((State::Healthy, State::Degraded)));
//! let changes = crm.record_upstream(Role::Mcp, failure, SystemTime::now());
//! assert_eq!(changes.state_changed, Some((State::Degraded, State::CircuitOpen)));
//! assert!(changes.circuits_opened.contains(Role::Mcp)); // wake the prober
//!
//! let gate = crm.gate(Role::Mcp, GateRequest::NotToken, Instant::now());
//! assert!(matches!(gate, Gate::CircuitOpen { .. })); // answer 503 at once
//! ```
//!
//! Decisions the health contract (README › Connection health) leaves open, made here:
//!
//! - **Non-token requests on the oauth route are never refused for `needs_reauth`**
//!   (authorize, discovery, JWKS): a new login needs them. Only refresh grants there are.
//! - **`needs_reauth` wins over an open circuit in the gate**, as in the state: an mcp
//!   request gets the 401 (the client can act on it) rather than the 503.
//! - **The short-circuit's code is the terminal answer's code**, kept apart from the row's
//!   `idp_error_code`: a later transient failure of a new login changes the row's code
//!   (README › Admin listener's newest-event rule) but not what refused refresh grants are told.
//! - **`token_acquired` is set only by an `ok` token response with `access_token`**: a
//!   user rule that calls such an answer anything else has judged it unusable.
//! - **Only a probe or a reset closes a circuit.** A request that was in flight when it
//!   opened and then succeeds restarts the count, but recovery stays with the prober.
//! - **Failure runs (`upstream_failed_transient` / `upstream_recovered`) are per route**,
//!   so an mcp outage and a healthy api route do not make a flapping event stream. Token
//!   responses have their own events and do not touch these runs.
//! - **A `terminal` mcp/api verdict (only a user rule gives one) sets `needs_reauth`** and
//!   records `upstream_failed_terminal` (an addition to README › Connection health's event types), so the
//!   state has a cause to show.
//! - **`degraded` is per route** (README › Connection health): each route keeps its newest request outcome,
//!   and the connection is degraded while any route's was a transient failure, so a token
//!   success never hides a failing mcp route and interleaved traffic cannot flap the state.
//!   The oauth route's outcome is its token responses (discovery and JWKS requests count
//!   toward its circuit only). `auth` and `client_error` answers leave a route as it was.
//! - **Closing a circuit ends its route's failure run**, whether a probe or a reset closed
//!   it: an idle connection whose upstream came back reads healthy. A reset leaves a route
//!   that was only failing (circuit still closed) as it was. It does clear
//!   `token_acquired` and the IdP code.
//! - **Every state has a reason** ([`ConnectionHealth::reason`]): the event that explains
//!   it, kept as state so the event ring's churn can never make the row contradict itself.
//! - **`circuit_opened` names the attempt that opened it** (status or `error_kind`,
//!   verdict `transient`); probe and reset events carry no verdict (probes are not
//!   classified by the policy engine).
//! - **A reload keeps the state** ([`ConnectionHealth::reconfigure`]): new thresholds
//!   apply from the next attempt, a removed route's circuit goes with it.
#![forbid(unsafe_code)]

mod changes;
mod circuit;
mod connection;
mod events;
mod gate;
mod grant;
mod outcome;
mod settings;
mod snapshot;
mod state;
mod time;

pub use changes::{Changes, RoleSet};
pub use circuit::{MIN_RETRY_AFTER, retry_after};
pub use connection::ConnectionHealth;
pub use events::{EventType, HealthEvent};
pub use gate::{Gate, GateRequest};
pub use grant::GrantType;
pub use outcome::{ProbeOutcome, TokenOutcome, UpstreamOutcome};
pub use settings::{DEFAULT_CONSECUTIVE_FAILURES, DEFAULT_EVENTS_PER_CONNECTION, HealthSettings};
pub use snapshot::{
    CircuitMap, CircuitState, HealthDetail, HealthReport, HealthRow, RouteMap, RouteRow,
};
pub use state::{OutcomeSource, State};
pub use time::Rfc3339;

use warden_config::Role;

/// A role's slot in the per-role arrays: mcp, api, oauth — the order README › Admin listener's
/// `circuit` map and every listing use.
pub(crate) const fn role_index(role: Role) -> usize {
    match role {
        Role::Mcp => 0,
        Role::Api => 1,
        Role::Oauth => 2,
    }
}
