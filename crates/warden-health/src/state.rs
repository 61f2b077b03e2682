//! The one-word summary of a connection (SPEC §5) and what degraded it.

use std::fmt;

/// A connection's state, by precedence: `needs_reauth` > `circuit_open` > `degraded` >
/// `healthy`. The order of the variants is the precedence order, lowest first, so
/// `Ord` compares severity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
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
    pub const ALL: [State; 4] = [
        State::Healthy,
        State::Degraded,
        State::CircuitOpen,
        State::NeedsReauth,
    ];

    /// The SPEC name, used in the admin API, logs and the metric label.
    pub const fn as_str(self) -> &'static str {
        match self {
            State::Healthy => "healthy",
            State::Degraded => "degraded",
            State::CircuitOpen => "circuit_open",
            State::NeedsReauth => "needs_reauth",
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for State {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// Which kind of request outcome made a connection `degraded`.
///
/// The status page shows a degraded connection as `refresh failing` when the newest
/// failure was a token response and `degraded` when it was an upstream request (SPEC §6);
/// the row's JSON carries it as `degraded_by`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OutcomeSource {
    /// A token response on the oauth route.
    TokenResponse,
    /// An mcp/api answer, a non-token request on the oauth route, or a network fault.
    Upstream,
}

impl OutcomeSource {
    /// The `degraded_by` value of the health API.
    pub const fn as_str(self) -> &'static str {
        match self {
            OutcomeSource::TokenResponse => "token_response",
            OutcomeSource::Upstream => "upstream",
        }
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
    fn as_str_is_usable_in_const_context() {
        const NAME: &str = State::NeedsReauth.as_str();
        const FIRST: State = State::ALL[0];
        assert_eq!(NAME, "needs_reauth");
        assert_eq!(FIRST, State::Healthy);
    }
}
