//! Health events (README › Connection health) and the bounded ring that keeps the newest of them.
//!
//! An event holds only what is safe to show: a type, a role, an HTTP status, a sanitized
//! IdP code, a verdict and a network fault's kind. Nothing from a request or a response
//! body beyond the sanitized code ever reaches it.

use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

use strum::{EnumCount as _, VariantArray as _};
use warden_config::variant_array;
use warden_config::{ErrorKind, Role, TlsDetail, Verdict};
use warden_policy::Event;

use crate::grant::GrantType;

/// Every event type README › Connection health names.
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
pub enum EventType {
    /// A login finished: a grant other than `refresh_token` got a token.
    ConnectCompleted,
    /// A refresh token was exchanged: clears a stored IdP error.
    RefreshSucceeded,
    /// The IdP called the grant dead: the connection needs reauth.
    RefreshFailedRevoked,
    /// The token endpoint failed in a way that may pass.
    RefreshFailedTransient,
    /// An mcp/api answer (or network fault) was transient: the route is degraded.
    UpstreamFailedTransient,
    /// A `terminal` verdict on an mcp/api request (only a user rule gives one, e.g. a
    /// `jsonrpc_error` rule for an expired upstream credential): it set `needs_reauth`.
    UpstreamFailedTerminal,
    /// The first good mcp/api answer after a failure; logged on change only, so steady
    /// traffic does not flood the ring.
    UpstreamRecovered,
    /// Enough transient failures in a row: the route short-circuits until a probe passes.
    CircuitOpened,
    /// A recovery probe still saw the upstream down.
    ProbeFailed,
    /// A probe (or a reset) saw the upstream back: the route forwards again.
    CircuitClosed,
    /// An operator reset the connection through the admin API.
    ResetAdmin,
}

impl EventType {
    /// Every type, for labels that must be pre-registered and for exhaustive tests.
    pub const ALL: [EventType; EventType::COUNT] = variant_array(EventType::VARIANTS);

    /// The documented name (README › Connection health), the event's `type` in the admin API.
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    /// A token response's event (one per response, named by the policy engine).
    pub const fn from_token_event(event: Event) -> Self {
        match event {
            Event::ConnectCompleted => EventType::ConnectCompleted,
            Event::RefreshSucceeded => EventType::RefreshSucceeded,
            Event::RefreshFailedRevoked => EventType::RefreshFailedRevoked,
            Event::RefreshFailedTransient => EventType::RefreshFailedTransient,
        }
    }
}

impl From<Event> for EventType {
    fn from(event: Event) -> Self {
        EventType::from_token_event(event)
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One health event:
/// `{"at","type","role","status","idp_error_code","verdict","error_kind","grant_type"}` in
/// the admin API, absent values as `null`. `warden status` reads it back with the same type.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct HealthEvent {
    /// Wall-clock time, shown as RFC 3339 UTC with milliseconds.
    #[serde(with = "crate::time::rfc3339")]
    pub at: SystemTime,
    /// `type` in JSON.
    #[serde(rename = "type")]
    pub kind: EventType,
    /// The route it happened on; `None` for connection-wide events (`reset_admin`).
    pub role: Option<Role>,
    /// The HTTP status of the answer behind it, if there was one.
    pub status: Option<u16>,
    /// The sanitized, lower-case IdP code of a token response. Shared with the
    /// connection's state, so recording it costs a reference count, not a copy.
    pub idp_error_code: Option<Arc<str>>,
    /// The verdict of the request outcome behind it; `None` for probes and resets, which
    /// the policy engine does not classify.
    pub verdict: Option<Verdict>,
    /// The network fault behind it, if one caused it.
    pub error_kind: Option<ErrorKind>,
    /// Token events: the request's grant type, so a failed `client_credentials` grant is
    /// not read as a failed refresh (the event type keeps its historical name).
    pub grant_type: Option<GrantType>,
    /// Why the TLS handshake failed, when `error_kind` is `tls`; serialized only then, so
    /// every other event keeps the README › Admin listener shape.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_detail: Option<TlsDetail>,
}

impl HealthEvent {
    /// An event with nothing but its type, time and route.
    pub(crate) fn new(kind: EventType, role: Option<Role>, at: SystemTime) -> Self {
        HealthEvent {
            at,
            kind,
            role,
            status: None,
            idp_error_code: None,
            verdict: None,
            error_kind: None,
            grant_type: None,
            tls_detail: None,
        }
    }

    pub(crate) fn answer(mut self, status: Option<u16>, error_kind: Option<ErrorKind>) -> Self {
        self.status = status;
        self.error_kind = error_kind;
        self
    }

    pub(crate) fn tls(mut self, detail: Option<TlsDetail>) -> Self {
        self.tls_detail = detail;
        self
    }

    pub(crate) fn verdict(mut self, verdict: Verdict) -> Self {
        self.verdict = Some(verdict);
        self
    }

    pub(crate) fn code(mut self, code: Option<Arc<str>>) -> Self {
        self.idp_error_code = code;
        self
    }

    pub(crate) fn grant(mut self, grant_type: Option<GrantType>) -> Self {
        self.grant_type = grant_type;
        self
    }
}

/// The newest `capacity` events, newest first.
///
/// Grows on demand up to its capacity rather than reserving it up front: most
/// connections see a handful of events, and `events_per_connection` may be 10 000.
#[derive(Debug, Clone)]
pub(crate) struct EventRing {
    events: VecDeque<HealthEvent>,
    capacity: usize,
}

impl EventRing {
    pub(crate) fn new(capacity: usize) -> Self {
        EventRing {
            events: VecDeque::new(),
            capacity,
        }
    }

    /// Records `event` as the newest, dropping the oldest past capacity.
    pub(crate) fn push(&mut self, event: HealthEvent) {
        if self.capacity == 0 {
            return;
        }
        if self.events.len() == self.capacity {
            self.events.pop_back();
        }
        self.events.push_front(event);
    }

    pub(crate) fn newest(&self) -> Option<&HealthEvent> {
        self.events.front()
    }

    /// Newest first.
    pub(crate) fn iter(&self) -> impl ExactSizeIterator<Item = &HealthEvent> {
        self.events.iter()
    }

    /// A reload may shrink the ring: the oldest events go first.
    pub(crate) fn set_capacity(&mut self, capacity: usize) {
        self.capacity = capacity;
        self.events.truncate(capacity);
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    fn event(n: u64) -> HealthEvent {
        HealthEvent::new(
            EventType::ProbeFailed,
            Some(Role::Mcp),
            UNIX_EPOCH + Duration::from_secs(n),
        )
    }

    fn times(ring: &EventRing) -> Vec<u64> {
        ring.iter()
            .map(|e| e.at.duration_since(UNIX_EPOCH).unwrap().as_secs())
            .collect()
    }

    #[test]
    fn keeps_the_newest_first() {
        let mut ring = EventRing::new(3);
        for n in 1..=5 {
            ring.push(event(n));
        }
        assert_eq!(times(&ring), [5, 4, 3]);
        assert_eq!(ring.newest(), Some(&event(5)));
        ring.set_capacity(2);
        assert_eq!(times(&ring), [5, 4]);
        ring.set_capacity(4);
        ring.push(event(6));
        ring.push(event(7));
        assert_eq!(times(&ring), [7, 6, 5, 4]);
    }

    #[test]
    fn zero_capacity_keeps_nothing() {
        let mut ring = EventRing::new(0);
        ring.push(event(1));
        assert_eq!(ring.newest(), None);
    }

    #[test]
    fn type_names_match_the_policy_engine() {
        for event in Event::ALL {
            assert_eq!(EventType::from(event).as_str(), event.as_str());
        }
        let mut names: Vec<_> = EventType::ALL.iter().map(|t| t.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), EventType::ALL.len());
    }
}
