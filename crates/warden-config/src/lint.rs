//! Settings that are valid but almost certainly not what was meant: `warden check` and
//! `warden run` print them as warnings, and the config still loads.

use crate::model::Config;

/// One warning, located by key path like a diagnostic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// Key path of the setting that looks wrong, so an editor can jump to it.
    pub path: String,
    /// Why it is likely not what was meant.
    pub message: String,
}

impl std::fmt::Display for Warning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// The warnings for `config`, in file order.
pub fn warnings(config: &Config) -> Vec<Warning> {
    let mut out = Vec::new();
    for (i, connection) in config.connections.iter().enumerate() {
        for route in &connection.routes {
            let threshold = route.circuit.consecutive_failures;
            let attempts = route.retry.max_attempts;
            // Every attempt of one request counts toward the circuit, retries included:
            // at or below the attempts, a single request to a down upstream opens it.
            if threshold <= attempts {
                out.push(Warning {
                    path: format!(
                        "connections[{i}].{}.circuit.consecutive_failures",
                        route.role
                    ),
                    message: format!(
                        "{threshold} is not above retry.max_attempts ({attempts}): every \
                         attempt counts, so one request alone can open the circuit; set it \
                         above {attempts}"
                    ),
                });
            }
        }
    }
    out
}
