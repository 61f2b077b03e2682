//! One connection's health record: the README › Connection health state machine.

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use warden_config::{Connection, ErrorKind, Role, TlsDetail, Verdict};
use warden_policy::sanitize_code;

use crate::changes::{Changes, RoleSet};
use crate::circuit::{Circuit, retry_after};
use crate::events::{EventRing, EventType, HealthEvent};
use crate::gate::{Gate, GateRequest};
use crate::outcome::{ProbeOutcome, TokenOutcome, UpstreamOutcome};
use crate::role_index;
use crate::settings::HealthSettings;
use crate::snapshot::{CircuitMap, CircuitState, HealthDetail, HealthRow, RouteMap, RouteRow};
use crate::state::{OutcomeSource, State};

/// One connection's health. The proxy keeps one per connection behind a mutex and calls
/// [`gate`](Self::gate) before every attempt and a `record_*` method after each.
///
/// Time is always passed in: `Instant`s (the proxy's paused-time-aware clock) for what
/// decides behaviour, `SystemTime`s only for the timestamps people read.
#[derive(Debug, Clone)]
pub struct ConnectionHealth {
    name: String,
    /// Per role (mcp, api, oauth): `Some` for the connection's routes.
    circuits: [Option<Circuit>; 3],
    /// Per role: inside a failure run of non-token requests, i.e. the last upstream event
    /// recorded for the role was `upstream_failed_transient`. Drives "on change only".
    failing: [bool; 3],
    /// Per role: the route's newest request outcome, which the `degraded` derivation reads.
    routes: [RouteOutcome; 3],
    /// The event that set `needs_reauth`: the row's `reason` while it is set.
    reauth_reason: Option<HealthEvent>,
    events: EventRing,
    needs_reauth: bool,
    /// The code the short-circuit answers carry: the newest code among the terminal
    /// answers since `needs_reauth` was set. Kept apart from `idp_error_code` because a
    /// later transient failure of a new login must not turn the `400` a refresh grant
    /// gets into a retryable-looking `temporarily_unavailable`.
    reauth_code: Option<Arc<str>>,
    token_acquired: bool,
    /// README › Admin listener's `idp_error_code`, kept as state rather than searched for in the ring:
    /// the ring forgets, and bookkeeping events must never hide the code.
    idp_error_code: Option<Arc<str>>,
}

/// One route's newest request outcome, for README › Connection health's per-route `degraded`: a success on one
/// route must never hide a failing one.
#[derive(Debug, Clone, Default)]
struct RouteOutcome {
    /// The route's newest outcome (a token response on oauth, an upstream answer on
    /// mcp/api) was a transient failure, and no circuit close has ended the run since.
    failing: bool,
    /// When the current failure run began.
    since: Option<SystemTime>,
    /// The route's newest transient failure, kept after the run ends: the row's
    /// `last_failure`, and the `reason` while the route is failing.
    last_failure: Option<HealthEvent>,
    /// The `circuit_opened` event, while the route's circuit is open: the `reason` of
    /// `circuit_open`.
    opened_by: Option<HealthEvent>,
}

impl RouteOutcome {
    /// A transient failure: starts or continues the run.
    fn fail(&mut self, event: HealthEvent) {
        if !self.failing {
            self.failing = true;
            self.since = Some(event.at);
        }
        self.last_failure = Some(event);
    }

    /// Anything that proves the route works again ends the run.
    fn recover(&mut self) {
        self.failing = false;
        self.since = None;
    }
}

impl ConnectionHealth {
    /// A healthy record for a connection with routes of `roles` (duplicates are ignored).
    pub fn new(name: &str, roles: &[Role], settings: HealthSettings) -> Self {
        let mut health = ConnectionHealth {
            name: name.to_owned(),
            circuits: [None, None, None],
            failing: [false; 3],
            routes: Default::default(),
            reauth_reason: None,
            events: EventRing::new(settings.events_per_connection),
            needs_reauth: false,
            reauth_code: None,
            token_acquired: false,
            idp_error_code: None,
        };
        health.set_routes(roles, settings);
        health
    }

    /// A healthy record for a configured connection.
    pub fn from_config(connection: &Connection, events_per_connection: usize) -> Self {
        let roles: RoleSet = connection.routes.iter().map(|r| r.role).collect();
        let settings = HealthSettings::for_connection(connection, events_per_connection);
        let roles: Vec<Role> = roles.iter().collect();
        ConnectionHealth::new(&connection.name, &roles, settings)
    }

    /// Applies a reloaded configuration while keeping the state (README › proxy.yaml: health
    /// survives a reload). New routes start closed; a removed route's circuit goes with
    /// it (reported in `circuits_closed` so the prober stops); thresholds apply from the
    /// next attempt on; a smaller ring drops its oldest events. Records no event.
    pub fn reconfigure(&mut self, roles: &[Role], settings: HealthSettings) -> Changes {
        self.observe(|h, changes| {
            h.events.set_capacity(settings.events_per_connection);
            changes.circuits_closed = h.set_routes(roles, settings);
        })
    }

    /// Sets the routes; returns the open circuits that were removed.
    fn set_routes(&mut self, roles: &[Role], settings: HealthSettings) -> RoleSet {
        let wanted: RoleSet = roles.iter().copied().collect();
        let mut removed_open = RoleSet::EMPTY;
        for role in Role::ALL {
            let i = role_index(role);
            let threshold = settings.consecutive_failures(role);
            match (&mut self.circuits[i], wanted.contains(role)) {
                (Some(circuit), true) => circuit.set_threshold(threshold),
                (slot @ None, true) => *slot = Some(Circuit::new(threshold)),
                (slot, false) => {
                    if slot.take().is_some_and(|c| c.is_open()) {
                        removed_open.insert(role);
                    }
                    self.failing[i] = false;
                    self.routes[i] = RouteOutcome::default();
                }
            }
        }
        removed_open
    }

    /// The connection's name: the key the admin API and the metrics use for it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The connection's routes, in the order mcp, api, oauth.
    pub fn roles(&self) -> RoleSet {
        Role::ALL
            .into_iter()
            .filter(|&r| self.circuits[role_index(r)].is_some())
            .collect()
    }

    /// Whether the connection has an oauth route: without one no token answer can ever
    /// arrive, so "no token yet" means nothing for it.
    pub fn has_oauth(&self) -> bool {
        self.circuits[role_index(Role::Oauth)].is_some()
    }

    /// Before each attempt: may a request of kind `request` on `role` go upstream?
    ///
    /// `needs_reauth` comes first (it is the state shown, and the only thing the client
    /// can act on): it refuses every mcp/api request and every refresh grant, but lets a
    /// new login through, and every other request on the oauth route too (authorize,
    /// discovery), since a login needs them. Then an open circuit on `role` refuses
    /// everything, logins included. Allocation-free.
    pub fn gate(&self, role: Role, request: GateRequest, now: Instant) -> Gate {
        let login_path = role == Role::Oauth && request != GateRequest::RefreshGrant;
        if self.needs_reauth && !login_path {
            return Gate::NeedsReauth {
                idp_error_code: self.reauth_code.clone(),
            };
        }
        match &self.circuits[role_index(role)] {
            Some(circuit) if circuit.is_open() => Gate::CircuitOpen {
                retry_after: retry_after(circuit.next_probe(), now),
            },
            _ => Gate::Forward,
        }
    }

    /// Records one classified token response (one per attempt): its event, the
    /// `needs_reauth`/`token_acquired`/`idp_error_code` rules, the oauth route's outcome
    /// and its circuit count.
    pub fn record_token(&mut self, outcome: TokenOutcome<'_>, at: SystemTime) -> Changes {
        self.observe(|h, changes| {
            let code = outcome.code.and_then(stored_code);
            let kind = EventType::from(outcome.event);
            let event = HealthEvent::new(kind, Some(Role::Oauth), at)
                .answer(outcome.status, outcome.error_kind)
                .tls(outcome.tls_detail)
                .verdict(outcome.verdict)
                .code(code.clone())
                .grant(outcome.grant_type);
            let route = &mut h.routes[role_index(Role::Oauth)];
            match outcome.verdict {
                // "Cleared by a 2xx token response": only `ok` proves the grant works.
                Verdict::Ok => {
                    h.needs_reauth = false;
                    h.reauth_code = None;
                    h.reauth_reason = None;
                    h.token_acquired |= outcome.has_access_token;
                    route.recover();
                }
                Verdict::Terminal => {
                    route.recover();
                    h.set_needs_reauth(code.clone(), event.clone());
                }
                Verdict::Transient => route.fail(event.clone()),
                // The IdP answered, but a user rule called it neither good nor failing.
                Verdict::Auth | Verdict::ClientError => {}
            }
            h.idp_error_code = match kind {
                EventType::RefreshFailedRevoked | EventType::RefreshFailedTransient => code,
                _ => None,
            };
            let transient = outcome.verdict == Verdict::Transient;
            h.events.push(event);
            h.count_attempt(
                Role::Oauth,
                transient,
                (outcome.status, outcome.error_kind, outcome.tls_detail),
                at,
                changes,
            );
        })
    }

    /// Records one classified answer (or network fault) of a non-token request on `role`,
    /// one per attempt. Events only on change: the first transient failure of a run
    /// records `upstream_failed_transient`, the first `ok` after it `upstream_recovered`;
    /// `auth` and `client_error` neither end nor start a run. A `terminal` verdict (only
    /// a user rule gives one here) sets `needs_reauth` and records
    /// `upstream_failed_terminal`, so the state names its cause.
    ///
    /// A non-token request on the oauth route (discovery, JWKS) counts toward that
    /// route's circuit and has its own failure-run events, but does not decide whether the
    /// route is failing: README › Connection health makes the oauth route's outcome its token responses.
    pub fn record_upstream(
        &mut self,
        role: Role,
        outcome: UpstreamOutcome,
        at: SystemTime,
    ) -> Changes {
        self.observe(|h, changes| {
            let i = role_index(role);
            let transient = outcome.verdict == Verdict::Transient;
            let decides_route = role != Role::Oauth;
            let event = |kind| {
                HealthEvent::new(kind, Some(role), at)
                    .answer(outcome.status, outcome.error_kind)
                    .tls(outcome.tls_detail)
                    .verdict(outcome.verdict)
            };
            match outcome.verdict {
                Verdict::Transient => {
                    if decides_route {
                        h.routes[i].fail(event(EventType::UpstreamFailedTransient));
                    }
                    if !h.failing[i] {
                        h.failing[i] = true;
                        h.events.push(event(EventType::UpstreamFailedTransient));
                    }
                }
                Verdict::Ok => {
                    if decides_route {
                        h.routes[i].recover();
                    }
                    if h.failing[i] {
                        h.failing[i] = false;
                        h.events.push(event(EventType::UpstreamRecovered));
                    }
                }
                Verdict::Terminal => {
                    if decides_route {
                        h.routes[i].recover();
                    }
                    h.failing[i] = false;
                    let terminal = event(EventType::UpstreamFailedTerminal);
                    if !h.needs_reauth {
                        h.events.push(terminal.clone());
                    }
                    h.set_needs_reauth(None, terminal);
                }
                Verdict::Auth | Verdict::ClientError => {}
            }
            h.count_attempt(
                role,
                transient,
                (outcome.status, outcome.error_kind, outcome.tls_detail),
                at,
                changes,
            );
        })
    }

    /// Records a background probe of `role`'s open circuit: an answer below 500 closes it
    /// (`circuit_closed`), anything else records `probe_failed` and the next probe's time.
    /// A probe of a circuit that is not open (a reset raced it) changes nothing.
    pub fn record_probe(&mut self, role: Role, probe: ProbeOutcome, at: SystemTime) -> Changes {
        self.observe(|h, changes| {
            let Some(circuit) = h.circuits[role_index(role)]
                .as_mut()
                .filter(|c| c.is_open())
            else {
                return;
            };
            let kind = if probe.is_ok() {
                circuit.close();
                changes.circuits_closed.insert(role);
                let i = role_index(role);
                h.routes[i].recover();
                h.routes[i].opened_by = None;
                h.failing[i] = false;
                EventType::CircuitClosed
            } else {
                circuit.set_next_probe(probe.next_probe);
                EventType::ProbeFailed
            };
            h.events.push(
                HealthEvent::new(kind, Some(role), at)
                    .answer(probe.status, probe.error_kind)
                    .tls(probe.tls_detail),
            );
        })
    }

    /// The prober says when it will probe `role` next: `Retry-After` counts down to it.
    /// Ignored unless the circuit is open.
    pub fn set_next_probe(&mut self, role: Role, at: Instant) {
        if let Some(circuit) = &mut self.circuits[role_index(role)] {
            circuit.set_next_probe(Some(at));
        }
    }

    /// `POST .../reset`: clears `needs_reauth`, `token_acquired` and the IdP code, closes
    /// every circuit (restarting its count) and records `reset_admin`. A circuit the reset
    /// closed ends its route's failure run, as a probe's close does; a route that was only
    /// failing (its circuit still closed) stays failing: its newest outcome is unchanged.
    pub fn reset(&mut self, at: SystemTime) -> Changes {
        self.observe(|h, changes| {
            h.needs_reauth = false;
            h.reauth_code = None;
            h.token_acquired = false;
            h.idp_error_code = None;
            h.reauth_reason = None;
            for role in Role::ALL {
                let i = role_index(role);
                if let Some(circuit) = &mut h.circuits[i]
                    && circuit.close()
                {
                    changes.circuits_closed.insert(role);
                    h.routes[i].recover();
                    h.routes[i].opened_by = None;
                    h.failing[i] = false;
                }
            }
            h.events
                .push(HealthEvent::new(EventType::ResetAdmin, None, at));
        })
    }

    /// By precedence: needs_reauth > circuit_open > degraded > healthy.
    pub fn state(&self) -> State {
        if self.needs_reauth {
            State::NeedsReauth
        } else if !self.open_circuits().is_empty() {
            State::CircuitOpen
        } else if self.routes.iter().any(|r| r.failing) {
            State::Degraded
        } else {
            State::Healthy
        }
    }

    /// Whether a terminal answer is waiting for a new login or an admin reset: the gate
    /// short-circuits on it.
    pub fn needs_reauth(&self) -> bool {
        self.needs_reauth
    }

    /// Whether a token answer has ever succeeded, which tells "never logged in" from
    /// "logged in and healthy".
    pub fn token_acquired(&self) -> bool {
        self.token_acquired
    }

    /// README › Admin listener's `idp_error_code`.
    pub fn idp_error_code(&self) -> Option<&str> {
        self.idp_error_code.as_deref()
    }

    /// What kind of request the newest failure of a failing route was (also while a
    /// higher-precedence state shows); `None` when no route is failing.
    pub fn degraded_by(&self) -> Option<OutcomeSource> {
        self.newest_failure().map(|e| match e.role {
            Some(Role::Oauth) => OutcomeSource::TokenResponse,
            _ => OutcomeSource::Upstream,
        })
    }

    /// The newest failure among the failing routes.
    fn newest_failure(&self) -> Option<&HealthEvent> {
        self.routes
            .iter()
            .filter(|r| r.failing)
            .filter_map(|r| r.last_failure.as_ref())
            .max_by_key(|e| e.at)
    }

    /// The event that explains the current state (README › Admin listener's `reason`): the terminal
    /// answer behind `needs_reauth`, the failure that opened the (newest) open circuit, or
    /// the failing routes' newest failure; `None` when healthy.
    pub fn reason(&self) -> Option<&HealthEvent> {
        match self.state() {
            State::NeedsReauth => self.reauth_reason.as_ref(),
            State::CircuitOpen => self
                .routes
                .iter()
                .filter_map(|r| r.opened_by.as_ref())
                .max_by_key(|e| e.at),
            State::Degraded => self.newest_failure(),
            State::Healthy => None,
        }
    }

    /// Whether `role`'s newest request outcome was a transient failure.
    pub fn is_failing(&self, role: Role) -> bool {
        self.routes[role_index(role)].failing
    }

    /// The routes whose circuit is open: what the prober should be probing.
    pub fn open_circuits(&self) -> RoleSet {
        Role::ALL
            .into_iter()
            .filter(|&r| self.is_circuit_open(r))
            .collect()
    }

    /// Whether `role`'s route is short-circuited; false for a role the connection lacks.
    pub fn is_circuit_open(&self, role: Role) -> bool {
        self.circuits[role_index(role)]
            .as_ref()
            .is_some_and(Circuit::is_open)
    }

    /// The next probe's time as the prober last said, while `role`'s circuit is open.
    pub fn next_probe(&self, role: Role) -> Option<Instant> {
        self.circuits[role_index(role)]
            .as_ref()
            .and_then(Circuit::next_probe)
    }

    /// Transient attempts in a row on `role` so far; `None` if the connection has no such
    /// route.
    pub fn consecutive_failures(&self, role: Role) -> Option<u32> {
        self.circuits[role_index(role)]
            .as_ref()
            .map(Circuit::failures)
    }

    /// The kept events, newest first.
    pub fn events(&self) -> impl ExactSizeIterator<Item = &HealthEvent> {
        self.events.iter()
    }

    /// The newest event of any kind; unlike the row's reason it may be a probe or a success
    /// on another route.
    pub fn last_event(&self) -> Option<&HealthEvent> {
        self.events.newest()
    }

    /// The admin API's row (README › Admin listener).
    pub fn snapshot(&self) -> HealthRow {
        let mut circuit = CircuitMap::default();
        for role in self.roles().iter() {
            let state = if self.is_circuit_open(role) {
                CircuitState::Open
            } else {
                CircuitState::Closed
            };
            circuit.set(role, state);
        }
        HealthRow {
            name: self.name.clone(),
            state: self.state(),
            has_oauth: self.has_oauth(),
            needs_reauth: self.needs_reauth,
            token_acquired: self.token_acquired,
            idp_error_code: self.idp_error_code.as_deref().map(str::to_owned),
            circuit,
            routes: self.route_map(),
            reason: self.reason().cloned(),
            last_event: self.events.newest().cloned(),
            degraded_by: self.degraded_by(),
        }
    }

    fn route_map(&self) -> RouteMap {
        let mut map = RouteMap::default();
        for role in self.roles().iter() {
            let r = &self.routes[role_index(role)];
            map.set(
                role,
                RouteRow {
                    failing: r.failing,
                    since: r.since,
                    last_failure: r.last_failure.clone(),
                },
            );
        }
        map
    }

    /// The row plus every kept event, newest first.
    pub fn detail(&self) -> HealthDetail {
        HealthDetail {
            row: self.snapshot(),
            events: self.events.iter().cloned().collect(),
        }
    }

    /// Runs a mutation and reports the state change it caused.
    fn observe(&mut self, mutate: impl FnOnce(&mut Self, &mut Changes)) -> Changes {
        let before = self.state();
        let mut changes = Changes::default();
        mutate(self, &mut changes);
        let after = self.state();
        if before != after {
            changes.state_changed = Some((before, after));
        }
        changes
    }

    /// A terminal verdict: the grant is dead until a login or a reset. Keeps an earlier
    /// code when this answer named none, so the short-circuit still says why; the newest
    /// terminal answer becomes the reason.
    fn set_needs_reauth(&mut self, code: Option<Arc<str>>, reason: HealthEvent) {
        self.needs_reauth = true;
        self.token_acquired = false;
        if code.is_some() {
            self.reauth_code = code;
        }
        self.reauth_reason = Some(reason);
    }

    /// Counts an attempt on `role`'s circuit; records `circuit_opened` (naming the
    /// attempt's status or network fault, so a bad certificate shows as `tls`) when it
    /// opens the circuit.
    fn count_attempt(
        &mut self,
        role: Role,
        transient: bool,
        (status, error_kind, tls_detail): (Option<u16>, Option<ErrorKind>, Option<TlsDetail>),
        at: SystemTime,
        changes: &mut Changes,
    ) {
        let Some(circuit) = &mut self.circuits[role_index(role)] else {
            return;
        };
        if circuit.record(transient) {
            changes.circuits_opened.insert(role);
            let opened = HealthEvent::new(EventType::CircuitOpened, Some(role), at)
                .answer(status, error_kind)
                .tls(tls_detail)
                .verdict(Verdict::Transient);
            self.routes[role_index(role)].opened_by = Some(opened.clone());
            self.events.push(opened);
        }
    }
}

/// The code as stored: sanitized again (idempotent on the policy engine's output, and a
/// guarantee that no raw IdP text is ever kept); an empty result is no code.
fn stored_code(code: &str) -> Option<Arc<str>> {
    let sanitized = sanitize_code(code);
    (!sanitized.is_empty()).then(|| Arc::from(sanitized))
}
