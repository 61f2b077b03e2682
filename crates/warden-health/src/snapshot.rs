//! What the admin API shows (SPEC §6): one row per connection, and a row with its events.
//!
//! These are owned copies taken under the connection's lock, so the admin API serializes
//! them after releasing it and a slow client never holds up the data plane.

use std::time::SystemTime;

use serde::ser::{SerializeMap, SerializeStruct};
use warden_config::Role;

use crate::events::HealthEvent;
use crate::state::{OutcomeSource, State};
use crate::time::Rfc3339;

/// One route's circuit, as the row shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CircuitState {
    /// Requests go to the upstream.
    Closed,
    /// The route answers 503 itself while the prober waits for the upstream.
    Open,
}

impl CircuitState {
    /// The word the health API and `warden status` show.
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

/// One route's outcome, as the row's `routes` map shows it:
/// `{"failing","since","last_failure"}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteRow {
    /// The route's newest request outcome was a transient failure (and no circuit close
    /// has ended the run since).
    pub failing: bool,
    /// When the current failure run began; `None` when not failing.
    pub since: Option<SystemTime>,
    /// The route's newest transient failure, also after the run ended.
    pub last_failure: Option<HealthEvent>,
}

impl serde::Serialize for RouteRow {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut s = serializer.serialize_struct("RouteRow", 3)?;
        s.serialize_field("failing", &self.failing)?;
        s.serialize_field("since", &self.since.map(Rfc3339))?;
        s.serialize_field("last_failure", &self.last_failure)?;
        s.end()
    }
}

/// The row's `routes` object: only the connection's routes, in the order mcp, api, oauth.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RouteMap([Option<RouteRow>; 3]);

impl RouteMap {
    pub(crate) fn set(&mut self, role: Role, row: RouteRow) {
        self.0[crate::role_index(role)] = Some(row);
    }

    /// `None` when the connection has no route of that role.
    pub fn get(&self, role: Role) -> Option<&RouteRow> {
        self.0[crate::role_index(role)].as_ref()
    }

    /// The connection's routes, in the order mcp, api, oauth.
    pub fn iter(&self) -> impl Iterator<Item = (Role, &RouteRow)> + '_ {
        Role::ALL
            .into_iter()
            .filter_map(|role| self.get(role).map(|row| (role, row)))
    }
}

impl serde::Serialize for RouteMap {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.iter().count()))?;
        for (role, row) in self.iter() {
            map.serialize_entry(role.as_str(), row)?;
        }
        map.end()
    }
}

/// A row of `GET /api/v1/connections/health`:
/// `{"name","state","has_oauth","needs_reauth","token_acquired","idp_error_code","circuit","routes","reason","last_event","degraded_by"}`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct HealthRow {
    /// The connection's name, the row's key.
    pub name: String,
    /// The one-word summary the badge and the exit code of `warden status` come from.
    pub state: State,
    /// The connection has an oauth route.
    pub has_oauth: bool,
    /// A terminal answer waits for a new login or a reset.
    pub needs_reauth: bool,
    /// A token answer has succeeded at least once.
    pub token_acquired: bool,
    /// SPEC §6's rule: the newest token failure's code, cleared by a newer success or a
    /// reset, never hidden by bookkeeping events.
    pub idp_error_code: Option<String>,
    /// Each route's circuit, so the page can say which route is cut off.
    pub circuit: CircuitMap,
    /// Each route's newest outcome: what the `degraded` derivation reads.
    pub routes: RouteMap,
    /// The event that explains `state` (null when healthy): the terminal answer behind
    /// `needs_reauth`, the failure that opened the circuit, or the failing routes' newest
    /// failure. Unlike `last_event`, it never contradicts the state.
    pub reason: Option<HealthEvent>,
    /// The newest event of any kind, with its age on the page: shows the record is alive.
    pub last_event: Option<HealthEvent>,
    /// When a route is failing, which kind of request its newest failure was
    /// (`token_response` or `upstream`), else null: the status page's `refresh failing` vs
    /// `degraded` badge.
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
    /// The same fields as the list, so a client reads both with one type.
    #[serde(flatten)]
    pub row: HealthRow,
    /// The ring's events, newest first, as the History view shows them.
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
