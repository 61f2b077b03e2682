//! The connections' health records as the data plane uses them: one lock per connection,
//! gauges kept in step, a log line per state change, the prober woken when a circuit opens.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Instant, SystemTime};

use metrics::{Gauge, gauge};
use tokio::sync::watch;
use warden_config::{Config, Role};
use warden_health::{
    Changes, ConnectionHealth, Gate, GateRequest, HealthDetail, HealthRow, ProbeOutcome, State,
    TokenOutcome, UpstreamOutcome,
};

/// Every connection's health, by name and in config order.
pub struct HealthHub {
    ordered: Vec<Arc<ConnHealth>>,
    by_name: HashMap<String, Arc<ConnHealth>>,
    /// Bumped whenever a circuit opens, so the prober picks it up without polling and
    /// without missing an opening that happens while it looks.
    circuit_opened: Arc<watch::Sender<u64>>,
}

impl HealthHub {
    pub fn new(config: &Config) -> Arc<HealthHub> {
        let circuit_opened = Arc::new(watch::Sender::new(0));
        let ordered: Vec<Arc<ConnHealth>> = config
            .connections
            .iter()
            .map(|c| {
                Arc::new(ConnHealth::new(
                    ConnectionHealth::from_config(c, config.events_per_connection),
                    Arc::clone(&circuit_opened),
                ))
            })
            .collect();
        let by_name = ordered
            .iter()
            .map(|c| (c.name.clone(), Arc::clone(c)))
            .collect();
        Arc::new(HealthHub {
            ordered,
            by_name,
            circuit_opened,
        })
    }

    pub(crate) fn circuit_openings(&self) -> watch::Receiver<u64> {
        self.circuit_opened.subscribe()
    }

    pub fn get(&self, name: &str) -> Option<&Arc<ConnHealth>> {
        self.by_name.get(name)
    }

    pub fn connections(&self) -> impl Iterator<Item = &Arc<ConnHealth>> {
        self.ordered.iter()
    }

    /// The SPEC §6 rows, in config order.
    pub fn rows(&self) -> Vec<HealthRow> {
        self.ordered.iter().map(|c| c.lock().snapshot()).collect()
    }
}

/// One connection's record behind its own lock. Requests of different connections never
/// contend; requests of one connection hold the lock for a few field updates.
pub struct ConnHealth {
    pub name: String,
    record: Mutex<ConnectionHealth>,
    gauges: StateGauges,
    circuit_opened: Arc<watch::Sender<u64>>,
}

impl ConnHealth {
    fn new(record: ConnectionHealth, circuit_opened: Arc<watch::Sender<u64>>) -> Self {
        let name = record.name().to_owned();
        let gauges = StateGauges::new(&name);
        gauges.set(record.state());
        ConnHealth {
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

    pub fn gate(&self, role: Role, request: GateRequest) -> Gate {
        self.lock().gate(role, request, now())
    }

    pub fn record_token(&self, outcome: TokenOutcome<'_>) {
        let changes = self.lock().record_token(outcome, SystemTime::now());
        self.apply(changes);
    }

    pub fn record_upstream(&self, role: Role, outcome: UpstreamOutcome) {
        let changes = self
            .lock()
            .record_upstream(role, outcome, SystemTime::now());
        self.apply(changes);
    }

    pub fn record_probe(&self, role: Role, outcome: ProbeOutcome) {
        let changes = self.lock().record_probe(role, outcome, SystemTime::now());
        self.apply(changes);
    }

    pub fn set_next_probe(&self, role: Role, at: Instant) {
        self.lock().set_next_probe(role, at);
    }

    pub fn is_circuit_open(&self, role: Role) -> bool {
        self.lock().is_circuit_open(role)
    }

    pub fn reset(&self) -> HealthRow {
        let mut record = self.lock();
        let changes = record.reset(SystemTime::now());
        let row = record.snapshot();
        drop(record);
        self.apply(changes);
        row
    }

    pub fn snapshot(&self) -> HealthRow {
        self.lock().snapshot()
    }

    pub fn detail(&self) -> HealthDetail {
        self.lock().detail()
    }

    fn apply(&self, changes: Changes) {
        if let Some((from, to)) = changes.state_changed {
            self.gauges.set(to);
            tracing::info!(
                connection = %self.name,
                from = from.as_str(),
                to = to.as_str(),
                "connection state changed"
            );
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
                    "warden_connection_state",
                    "connection" => connection.to_owned(),
                    "state" => s.as_str()
                )
            }),
            needs_reauth: gauge!(
                "warden_connection_needs_reauth",
                "connection" => connection.to_owned()
            ),
        }
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
