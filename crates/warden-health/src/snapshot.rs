//! What the admin API shows (README › Admin listener): one row per connection, and a row with its events.
//!
//! These are owned copies taken under the connection's lock, so the admin API serializes
//! them after releasing it and a slow client never holds up the data plane. The same types
//! deserialize, so `warden status` reads the API's JSON into them instead of walking it by
//! key: one definition of the row's shape for both sides.

use std::collections::BTreeMap;
use std::time::SystemTime;

use strum::{EnumCount as _, VariantArray as _};
use warden_config::Role;
use warden_config::variant_array;

use crate::events::HealthEvent;
use crate::state::{OutcomeSource, State};

/// One route's circuit, as the row shows it.
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
pub enum CircuitState {
    /// Requests go to the upstream.
    Closed,
    /// The route answers 503 itself while the prober waits for the upstream.
    Open,
}

impl CircuitState {
    /// Every state, closed first.
    pub const ALL: [CircuitState; CircuitState::COUNT] = variant_array(CircuitState::VARIANTS);

    /// The value in the row's `circuit` map.
    pub fn as_str(self) -> &'static str {
        self.into()
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
        serializer.collect_map(self.iter())
    }
}

impl<'de> serde::Deserialize<'de> for CircuitMap {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let entries = BTreeMap::<Role, CircuitState>::deserialize(deserializer)?;
        let mut map = CircuitMap::default();
        for (role, state) in entries {
            map.set(role, state);
        }
        Ok(map)
    }
}

/// One route's outcome, as the row's `routes` map shows it:
/// `{"failing","since","last_failure"}`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RouteRow {
    /// The route's newest request outcome was a transient failure (and no circuit close
    /// has ended the run since).
    pub failing: bool,
    /// When the current failure run began; `None` when not failing.
    #[serde(with = "crate::time::rfc3339::option")]
    pub since: Option<SystemTime>,
    /// The route's newest transient failure, also after the run ended.
    pub last_failure: Option<HealthEvent>,
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
        serializer.collect_map(self.iter())
    }
}

impl<'de> serde::Deserialize<'de> for RouteMap {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let entries = BTreeMap::<Role, RouteRow>::deserialize(deserializer)?;
        let mut map = RouteMap::default();
        for (role, row) in entries {
            map.set(role, row);
        }
        Ok(map)
    }
}

/// A row of `GET /api/v1/connections/health`:
/// `{"name","state","has_oauth","needs_reauth","token_acquired","idp_error_code","circuit","routes","reason","last_event","degraded_by"}`.
///
/// Read back, only `name` and `state` are required: a row from a warden that predates a
/// field still shows.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct HealthRow {
    /// The connection's name, the row's key.
    pub name: String,
    /// The one-word summary the badge and the exit code of `warden status` come from.
    pub state: State,
    /// The connection has an oauth route.
    #[serde(default)]
    pub has_oauth: bool,
    /// A terminal answer waits for a new login or a reset.
    #[serde(default)]
    pub needs_reauth: bool,
    /// A token answer has succeeded at least once.
    #[serde(default)]
    pub token_acquired: bool,
    /// README › Admin listener's rule: the newest token failure's code, cleared by a newer success or a
    /// reset, never hidden by bookkeeping events.
    pub idp_error_code: Option<String>,
    /// Each route's circuit, so the page can say which route is cut off.
    #[serde(default)]
    pub circuit: CircuitMap,
    /// Each route's newest outcome: what the `degraded` derivation reads.
    #[serde(default)]
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
    pub degraded_by: Option<OutcomeSource>,
}

/// `GET /api/v1/connections/{name}`: the row plus `"events"`, newest first.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct HealthDetail {
    /// The same fields as the list, so a client reads both with one type.
    #[serde(flatten)]
    pub row: HealthRow,
    /// The ring's events, newest first, as the History view shows them.
    pub events: Vec<HealthEvent>,
}

/// `GET /api/v1/connections/health`: `{"connections":[row, ...]}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct HealthReport {
    /// One row per configured connection, in config order.
    pub connections: Vec<HealthRow>,
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
