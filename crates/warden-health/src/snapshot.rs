//! What the admin API shows (SPEC §6): one row per connection, and a row with its events.
//!
//! These are owned copies taken under the connection's lock, so the admin API serializes
//! them after releasing it and a slow client never holds up the data plane.

use serde::ser::SerializeMap;
use warden_config::Role;

use crate::events::HealthEvent;
use crate::state::{OutcomeSource, State};

/// One route's circuit, as the row shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CircuitState {
    Closed,
    Open,
}

impl CircuitState {
    pub const fn as_str(self) -> &'static str {
        match self {
            CircuitState::Closed => "closed",
            CircuitState::Open => "open",
        }
    }
}

impl serde::Serialize for CircuitState {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// The row's `circuit` object: only the connection's routes, always in the order mcp,
/// api, oauth, so the JSON is stable from one poll to the next.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CircuitMap([Option<CircuitState>; 3]);

impl CircuitMap {
    pub(crate) fn set(&mut self, role: Role, state: CircuitState) {
        self.0[crate::role_index(role)] = Some(state);
    }

    /// `None` when the connection has no route of that role.
    pub fn get(&self, role: Role) -> Option<CircuitState> {
        self.0[crate::role_index(role)]
    }

    /// The connection's routes and their circuits, in the order mcp, api, oauth.
    pub fn iter(&self) -> impl Iterator<Item = (Role, CircuitState)> + '_ {
        Role::ALL
            .into_iter()
            .filter_map(|role| self.get(role).map(|state| (role, state)))
    }
}

impl serde::Serialize for CircuitMap {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.iter().count()))?;
        for (role, state) in self.iter() {
            map.serialize_entry(role.as_str(), &state)?;
        }
        map.end()
    }
}

/// A row of `GET /api/v1/connections/health`:
/// `{"name","state","has_oauth","needs_reauth","token_acquired","idp_error_code","circuit","last_event","degraded_by"}`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct HealthRow {
    pub name: String,
    pub state: State,
    /// The connection has an oauth route.
    pub has_oauth: bool,
    pub needs_reauth: bool,
    pub token_acquired: bool,
    /// SPEC §6's rule: the newest token failure's code, cleared by a newer success or a
    /// reset, never hidden by bookkeeping events.
    pub idp_error_code: Option<String>,
    pub circuit: CircuitMap,
    pub last_event: Option<HealthEvent>,
    /// When the newest request outcome was a transient failure, which kind of request it
    /// was (`token_response` or `upstream`), else null: the status page's `refresh
    /// failing` vs `degraded` badge. An addition to SPEC §6's fields; the events alone cannot always tell, since
    /// upstream failures are recorded on change only.
    #[serde(serialize_with = "outcome_source")]
    pub degraded_by: Option<OutcomeSource>,
}

fn outcome_source<S: serde::Serializer>(
    source: &Option<OutcomeSource>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match source {
        Some(source) => serializer.serialize_str(source.as_str()),
        None => serializer.serialize_none(),
    }
}

/// `GET /api/v1/connections/{name}`: the row plus `"events"`, newest first.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct HealthDetail {
    #[serde(flatten)]
    pub row: HealthRow,
    pub events: Vec<HealthEvent>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn circuit_map_keeps_role_order_and_only_present_routes() {
        let mut map = CircuitMap::default();
        map.set(Role::Oauth, CircuitState::Open);
        map.set(Role::Mcp, CircuitState::Closed);
        assert_eq!(
            serde_json::to_string(&map).unwrap(),
            r#"{"mcp":"closed","oauth":"open"}"#
        );
        assert_eq!(map.get(Role::Api), None);
        assert_eq!(serde_json::to_string(&CircuitMap::default()).unwrap(), "{}");
    }
}
