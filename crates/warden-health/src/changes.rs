//! What one call changed, so the proxy can log a line per state change, move its gauges
//! and wake the prober without comparing snapshots.

use std::fmt;

use warden_config::Role;

use crate::state::State;

/// A set of roles in one byte: a call's changes are `Copy` and cost no allocation.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct RoleSet(u8);

impl RoleSet {
    /// No role: what a call that changed nothing reports.
    pub const EMPTY: RoleSet = RoleSet(0);

    const fn bit(role: Role) -> u8 {
        1 << crate::role_index(role)
    }

    /// Whether `role`'s circuit is in the set.
    pub const fn contains(self, role: Role) -> bool {
        self.0 & Self::bit(role) != 0
    }

    /// True when no role is in the set, so callers can skip their bookkeeping.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Adds `role`; adding it twice keeps one.
    pub fn insert(&mut self, role: Role) {
        self.0 |= Self::bit(role);
    }

    /// In the order mcp, api, oauth.
    pub fn iter(self) -> impl Iterator<Item = Role> {
        Role::ALL.into_iter().filter(move |&r| self.contains(r))
    }
}

impl fmt::Debug for RoleSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

impl FromIterator<Role> for RoleSet {
    fn from_iter<I: IntoIterator<Item = Role>>(iter: I) -> Self {
        let mut set = RoleSet::EMPTY;
        for role in iter {
            set.insert(role);
        }
        set
    }
}

/// The effects of one `record_*`, `reset` or `reconfigure` call.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[must_use = "state changes are what the proxy logs and exports"]
pub struct Changes {
    /// `(from, to)` when the connection's state changed.
    pub state_changed: Option<(State, State)>,
    /// Circuits this call opened: the prober should start probing them.
    pub circuits_opened: RoleSet,
    /// Circuits this call closed (a probe, a reset, or a route removed by a reload): the
    /// prober can stop probing them.
    pub circuits_closed: RoleSet,
}

impl Changes {
    /// True for the common call that changed nothing: nothing to log, count or wake.
    pub const fn is_empty(&self) -> bool {
        self.state_changed.is_none()
            && self.circuits_opened.is_empty()
            && self.circuits_closed.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_set() {
        let mut set = RoleSet::EMPTY;
        assert!(set.is_empty());
        set.insert(Role::Oauth);
        set.insert(Role::Mcp);
        set.insert(Role::Oauth);
        assert!(set.contains(Role::Mcp) && !set.contains(Role::Api));
        assert_eq!(set.iter().collect::<Vec<_>>(), [Role::Mcp, Role::Oauth]);
        assert_eq!(format!("{set:?}"), "{Mcp, Oauth}");
        assert_eq!(
            [Role::Oauth, Role::Mcp].into_iter().collect::<RoleSet>(),
            set
        );
        assert!(Changes::default().is_empty());
    }
}
