//! The one-word summary of a connection (README › Connection health) and what degraded it.

use std::fmt;

use strum::{EnumCount as _, VariantArray as _};
use warden_config::variant_array;

/// A connection's state, by precedence: `needs_reauth` > `circuit_open` > `degraded` >
/// `healthy`. The order of the variants is the precedence order, lowest first, so
/// `Ord` compares severity.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    serde::Serialize,
    serde::Deserialize,
    strum::IntoStaticStr,
    strum::VariantArray,
    strum::EnumCount,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum State {
    /// Every route's newest outcome was good (or there was none yet).
    Healthy,
    /// At least one route's newest outcome was a transient failure.
    Degraded,
    /// At least one route is short-circuited.
    CircuitOpen,
    /// A terminal answer waits for a new login or a reset.
    NeedsReauth,
}

impl State {
    /// Every state, in precedence order, lowest first: the `state` label values of
    /// `warden_connection_state`, which sets one of them to 1 and the others to 0.
    pub const ALL: [State; State::COUNT] = variant_array(State::VARIANTS);

    /// The documented name (README › Connection health), used in the admin API, logs and the metric label.
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which kind of request outcome made a connection `degraded`.
///
/// The status page shows a degraded connection as `refresh failing` when the newest
/// failure was a token response and `degraded` when it was an upstream request (README › Admin listener);
/// the row's JSON carries it as `degraded_by`.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    serde::Serialize,
    serde::Deserialize,
    strum::IntoStaticStr,
    strum::VariantArray,
    strum::EnumCount,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum OutcomeSource {
    /// A token response on the oauth route.
    TokenResponse,
    /// An mcp/api answer, a non-token request on the oauth route, or a network fault.
    Upstream,
}

impl OutcomeSource {
    /// The row's `degraded_by` value.
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_precedence() {
        let names: Vec<_> = State::ALL.iter().map(|s| s.as_str()).collect();
        assert_eq!(
            names,
            ["healthy", "degraded", "circuit_open", "needs_reauth"]
        );
        assert!(State::NeedsReauth > State::CircuitOpen);
        assert!(State::CircuitOpen > State::Degraded);
        assert!(State::Degraded > State::Healthy);
        assert_eq!(
            serde_json::to_string(&State::CircuitOpen).unwrap(),
            "\"circuit_open\""
        );
    }

    #[test]
    fn all_is_usable_in_const_context() {
        const FIRST: State = State::ALL[0];
        const TABLE: [u8; State::ALL.len()] = [0; State::ALL.len()];
        assert_eq!(FIRST, State::Healthy);
        assert_eq!(TABLE.len(), 4);
    }
}
