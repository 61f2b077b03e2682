//! The configuration a connection's health record runs on.

use warden_config::{Connection, Role};

/// The default `circuit.consecutive_failures` (README › proxy.yaml), for roles nobody configured.
pub const DEFAULT_CONSECUTIVE_FAILURES: u32 = 5;

/// The default `events_per_connection` (README › proxy.yaml).
pub const DEFAULT_EVENTS_PER_CONNECTION: usize = 50;

/// `events_per_connection` plus each route's `circuit.consecutive_failures`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthSettings {
    /// Newest events kept.
    pub events_per_connection: usize,
    consecutive_failures: [u32; 3],
}

impl Default for HealthSettings {
    fn default() -> Self {
        HealthSettings::new(DEFAULT_EVENTS_PER_CONNECTION)
    }
}

impl HealthSettings {
    /// Every role at the default threshold.
    pub const fn new(events_per_connection: usize) -> Self {
        HealthSettings {
            events_per_connection,
            consecutive_failures: [DEFAULT_CONSECUTIVE_FAILURES; 3],
        }
    }

    /// The same, with `role`'s threshold set (0 counts as 1).
    pub const fn with_consecutive_failures(mut self, role: Role, failures: u32) -> Self {
        self.consecutive_failures[crate::role_index(role)] = failures;
        self
    }

    /// `role`'s circuit threshold, read on every transient failure.
    pub const fn consecutive_failures(&self, role: Role) -> u32 {
        self.consecutive_failures[crate::role_index(role)]
    }

    /// From a validated connection: each route's circuit threshold.
    pub fn for_connection(connection: &Connection, events_per_connection: usize) -> Self {
        connection
            .routes
            .iter()
            .fold(HealthSettings::new(events_per_connection), |s, route| {
                s.with_consecutive_failures(route.role, route.circuit.consecutive_failures)
            })
    }
}
