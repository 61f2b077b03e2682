//! Metric handles of one route, resolved once when the route is built so the hot path
//! only touches atomics, never the registry.

use metrics::{Counter, Histogram, counter, histogram};
use warden_config::{Role, Verdict};

/// `warden_requests_total` verdict labels: the classifier's five plus warden's own answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Verdict(Verdict),
    #[expect(
        dead_code,
        reason = "warden answers for the upstream once the gate layer exists"
    )]
    ShortCircuit,
}

impl Outcome {
    fn index(self) -> usize {
        match self {
            Outcome::Verdict(v) => v as usize,
            Outcome::ShortCircuit => Verdict::ALL.len(),
        }
    }
}

pub struct RouteMetrics {
    requests: [Counter; Verdict::ALL.len() + 1],
    duration: Histogram,
}

impl RouteMetrics {
    pub fn new(connection: &str, role: Role) -> Self {
        let labels = |verdict: &'static str| {
            [
                ("connection", connection.to_owned()),
                ("role", role.as_str().to_owned()),
                ("verdict", verdict.to_owned()),
            ]
        };
        let requests = std::array::from_fn(|i| match Verdict::ALL.get(i) {
            Some(v) => counter!("warden_requests_total", &labels(v.as_str())),
            None => counter!("warden_requests_total", &labels("short_circuit")),
        });
        let duration = histogram!(
            "warden_request_duration_seconds",
            "connection" => connection.to_owned(),
            "role" => role.as_str()
        );
        RouteMetrics { requests, duration }
    }

    pub fn record(&self, outcome: Outcome, seconds: f64) {
        self.requests[outcome.index()].increment(1);
        self.duration.record(seconds);
    }
}
