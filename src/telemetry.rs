//! The process-wide Prometheus recorder and the metric descriptions.

use std::time::Duration;

use anyhow::Context as _;
use metrics::{Unit, describe_counter, describe_gauge, describe_histogram, gauge};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use warden_proxy::catalogue::{self, Kind};

/// Seconds; spans a fast loopback hop (1 ms) to a slow upstream near the default 30 s
/// request timeout.
const DURATION_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// How often recorded histogram samples are folded into their buckets; between scrapes the
/// raw samples are held in memory, so this bounds that memory under load.
const UPKEEP_INTERVAL: Duration = Duration::from_secs(1);

pub(crate) fn install() -> anyhow::Result<PrometheusHandle> {
    let recorder = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full(catalogue::REQUEST_DURATION.name.to_owned()),
            DURATION_BUCKETS,
        )
        .context("histogram buckets")?
        .build_recorder();
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder).context("installing the metrics recorder")?;
    describe();
    gauge!(catalogue::BUILD_INFO.name, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
    Ok(handle)
}

/// Runs the recorder's upkeep forever; spawn it on the runtime.
pub(crate) async fn upkeep(handle: PrometheusHandle) {
    let mut tick = tokio::time::interval(UPKEEP_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        handle.run_upkeep();
    }
}

/// `# HELP` for every metric family of the catalogue, so a scrape explains itself. A family
/// shows only once it has a series; describing one early costs nothing.
fn describe() {
    for family in catalogue::ALL {
        match family.kind {
            Kind::Counter => describe_counter!(family.name, family.help),
            Kind::Gauge => describe_gauge!(family.name, family.help),
            Kind::Histogram => describe_histogram!(family.name, Unit::Seconds, family.help),
        }
    }
}
