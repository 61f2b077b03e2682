//! The connections' health records as the data plane uses them: one lock per connection,
//! gauges kept in step, a log line per state change, the prober woken when a circuit opens.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Instant, SystemTime};

use crate::catalogue;
use metrics::{Gauge, gauge};
use tokio::sync::watch;
use warden_config::{Config, Connection, ErrorKind, Role};
use warden_health::{
    Changes, ConnectionHealth, Gate, GateRequest, GrantType, HealthDetail, HealthEvent, HealthRow,
    HealthSettings, ProbeOutcome, State, TokenOutcome, UpstreamOutcome,
};

/// Every connection's health, by name and in config order. The data plane holds each
/// connection's record directly; this index is for the admin API, the prober and reloads.
pub struct HealthHub {
    index: RwLock<Index>,
    /// Bumped whenever a circuit opens, so the prober picks it up without polling and
    /// without missing an opening that happens while it looks.
    circuit_opened: Arc<watch::Sender<u64>>,
}

#[derive(Default)]
struct Index {
    ordered: Vec<Arc<HealthHandle>>,
    by_name: HashMap<String, Arc<HealthHandle>>,
}

impl HealthHub {
    /// Every connection of `config` starts healthy; later configs go through reloads, which
    /// keep the records of connections that stay.
    pub fn new(config: &Config) -> Arc<HealthHub> {
        let hub = Arc::new(HealthHub {
            index: RwLock::default(),
            circuit_opened: Arc::new(watch::Sender::new(0)),
        });
        hub.apply(config);
        hub
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Index> {
        self.index.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Brings the index in line with `config`: records of connections that still exist
    /// keep their state (with the new thresholds), new connections start healthy, removed
    /// ones are dropped.
    pub(crate) fn apply(&self, config: &Config) {
        let mut index = self.index.write().unwrap_or_else(|p| p.into_inner());
        let mut by_name = std::mem::take(&mut index.by_name);
        let ordered: Vec<Arc<HealthHandle>> = config
            .connections
            .iter()
            .map(|c| match by_name.remove(&c.name) {
                Some(existing) => {
                    existing.reconfigure(c, config.events_per_connection);
                    existing
                }
                None => Arc::new(HealthHandle::new(
                    ConnectionHealth::from_config(c, config.events_per_connection),
                    Arc::clone(&self.circuit_opened),
                )),
            })
            .collect();
        for gone in by_name.values() {
            gone.gauges.clear();
        }
        index.by_name = ordered
            .iter()
            .map(|c| (c.name.clone(), Arc::clone(c)))
            .collect();
        index.ordered = ordered;
    }

    /// The record of `connection`, created if the index does not have it yet.
    pub(crate) fn get_or_insert(
        &self,
        connection: &Connection,
        events: usize,
    ) -> Arc<HealthHandle> {
        if let Some(existing) = self.get(&connection.name) {
            return existing;
        }
        let mut index = self.index.write().unwrap_or_else(|p| p.into_inner());
        let record = Arc::new(HealthHandle::new(
            ConnectionHealth::from_config(connection, events),
            Arc::clone(&self.circuit_opened),
        ));
        index.ordered.push(Arc::clone(&record));
        index
            .by_name
            .insert(connection.name.clone(), Arc::clone(&record));
        record
    }

    pub(crate) fn circuit_openings(&self) -> watch::Receiver<u64> {
        self.circuit_opened.subscribe()
    }

    /// `None` for a name the current config does not have (the admin API answers 404).
    pub fn get(&self, name: &str) -> Option<Arc<HealthHandle>> {
        self.read().by_name.get(name).cloned()
    }

    /// A copy of the index in config order, so callers iterate without holding its lock.
    pub fn connections(&self) -> Vec<Arc<HealthHandle>> {
        self.read().ordered.clone()
    }

    /// The health rows of README › Admin listener, in config order.
    pub fn rows(&self) -> Vec<HealthRow> {
        self.connections().iter().map(|c| c.snapshot()).collect()
    }
}

/// One connection's record behind its own lock. Requests of different connections never
/// contend; requests of one connection hold the lock for a few field updates.
pub struct HealthHandle {
    /// The connection's name, kept outside the lock so lookups and logs need not take it.
    pub name: String,
    record: Mutex<ConnectionHealth>,
    gauges: StateGauges,
    circuit_opened: Arc<watch::Sender<u64>>,
}

impl HealthHandle {
    fn new(record: ConnectionHealth, circuit_opened: Arc<watch::Sender<u64>>) -> Self {
        let name = record.name().to_owned();
        let gauges = StateGauges::new(&name);
        gauges.set(record.state());
        HealthHandle {
            name,
            record: Mutex::new(record),
            gauges,
            circuit_opened,
        }
    }

    /// The record, also when a panic elsewhere poisoned the lock: the record is plain data
    /// updated field by field, and a proxy that stops answering is worse than one whose
    /// health row may miss one update.
    fn lock(&self) -> MutexGuard<'_, ConnectionHealth> {
        self.record
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Whether a request of `role` may go upstream now, or is answered locally
    /// (needs_reauth, an open circuit); asked once per request, before the first attempt.
    pub fn gate(&self, role: Role, request: GateRequest) -> Gate {
        self.lock().gate(role, request, now())
    }

    /// Feeds a classified token-endpoint answer to the record; gauges and the log follow
    /// any state change.
    pub fn record_token(&self, outcome: TokenOutcome<'_>) {
        self.change(|r| r.record_token(outcome, SystemTime::now()));
    }

    /// Feeds one attempt's outcome to `role`'s circuit; gauges and the log follow any state
    /// change.
    pub fn record_upstream(&self, role: Role, outcome: UpstreamOutcome) {
        self.change(|r| r.record_upstream(role, outcome, SystemTime::now()));
    }

    /// Feeds a prober result to `role`'s open circuit; a success closes it.
    pub fn record_probe(&self, role: Role, outcome: ProbeOutcome) {
        self.change(|r| r.record_probe(role, outcome, SystemTime::now()));
    }

    /// Runs a mutation and applies its changes, with the new state's reason for the log.
    fn change(&self, mutate: impl FnOnce(&mut ConnectionHealth) -> Changes) {
        let mut record = self.lock();
        let changes = mutate(&mut record);
        let reason = changes.state_changed.and_then(|_| record.reason().cloned());
        drop(record);
        self.apply(changes, reason.as_ref());
    }

    /// When the prober will next try `role`, shown in the health row so an operator knows
    /// when the circuit may close.
    pub fn set_next_probe(&self, role: Role, at: Instant) {
        self.lock().set_next_probe(role, at);
    }

    fn reconfigure(&self, connection: &Connection, events: usize) {
        let roles: Vec<Role> = connection.routes.iter().map(|r| r.role).collect();
        let settings = HealthSettings::for_connection(connection, events);
        self.change(|r| r.reconfigure(&roles, settings));
    }

    /// Read by the prober to decide whether `role` still needs probing.
    pub fn is_circuit_open(&self, role: Role) -> bool {
        self.lock().is_circuit_open(role)
    }

    /// The admin API's reset: clears needs_reauth and every circuit, records
    /// `reset_admin`, and returns the row as it is afterwards.
    pub fn reset(&self) -> HealthRow {
        let mut record = self.lock();
        let changes = record.reset(SystemTime::now());
        let row = record.snapshot();
        drop(record);
        self.apply(changes, row.reason.as_ref());
        row
    }

    /// The row as of now, a copy taken under the lock.
    pub fn snapshot(&self) -> HealthRow {
        self.lock().snapshot()
    }

    /// The row plus its recent events, newest first (`GET /api/v1/connections/{name}`).
    pub fn detail(&self) -> HealthDetail {
        self.lock().detail()
    }

    /// Moves the gauges and logs a state change with its cause: WARN into
    /// `needs_reauth` or `circuit_open` (what an operator must act on), INFO otherwise.
    fn apply(&self, changes: Changes, reason: Option<&HealthEvent>) {
        if let Some((from, to)) = changes.state_changed {
            self.gauges.set(to);
            let role = reason.and_then(|e| e.role).map(Role::as_str);
            let cause = reason.map(|e| e.kind.as_str());
            let status = reason.and_then(|e| e.status);
            let code = reason.and_then(|e| e.idp_error_code.as_deref());
            let error_kind = reason.and_then(|e| e.error_kind).map(ErrorKind::as_str);
            let grant_type = reason.and_then(|e| e.grant_type).map(GrantType::as_str);
            // tracing's level is part of each call site, so the one line is written once
            // here for both levels.
            macro_rules! state_line {
                ($level:expr) => {
                    tracing::event!(
                        $level,
                        connection = %self.name,
                        from = from.as_str(),
                        to = to.as_str(),
                        role,
                        cause,
                        status,
                        code,
                        error_kind,
                        grant_type,
                        "connection state changed"
                    )
                };
            }
            if matches!(to, State::NeedsReauth | State::CircuitOpen) {
                state_line!(tracing::Level::WARN);
            } else {
                state_line!(tracing::Level::INFO);
            }
        }
        for role in changes.circuits_opened.iter() {
            tracing::warn!(connection = %self.name, role = %role, "circuit opened");
        }
        for role in changes.circuits_closed.iter() {
            tracing::info!(connection = %self.name, role = %role, "circuit closed");
        }
        if !changes.circuits_opened.is_empty() {
            self.circuit_opened
                .send_modify(|generation| *generation += 1);
        }
    }
}

/// `warden_connection_state{state}` (1 for the current state, 0 for the others) and
/// `warden_connection_needs_reauth`.
struct StateGauges {
    states: [Gauge; State::ALL.len()],
    needs_reauth: Gauge,
}

impl StateGauges {
    fn new(connection: &str) -> Self {
        StateGauges {
            states: State::ALL.map(|s| {
                gauge!(
                    catalogue::CONNECTION_STATE.name,
                    "connection" => connection.to_owned(),
                    "state" => s.as_str()
                )
            }),
            needs_reauth: gauge!(
                catalogue::CONNECTION_NEEDS_REAUTH.name,
                "connection" => connection.to_owned()
            ),
        }
    }

    /// A removed connection's series read 0 rather than its last state.
    fn clear(&self) {
        for gauge in &self.states {
            gauge.set(0.0);
        }
        self.needs_reauth.set(0.0);
    }

    fn set(&self, current: State) {
        for (gauge, state) in self.states.iter().zip(State::ALL) {
            gauge.set(if state == current { 1.0 } else { 0.0 });
        }
        self.needs_reauth.set(if current == State::NeedsReauth {
            1.0
        } else {
            0.0
        });
    }
}

/// Monotonic now, from tokio's clock so paused-time tests drive it.
pub fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}
