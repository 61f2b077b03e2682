//! `timeouts`, `retry` and `circuit`: merging a route's overrides over `defaults` field by
//! field, and checking the result.
//!
//! Every resolved value remembers the key it came from, so a bad value is reported where
//! it is written (`defaults.retry.backoff.max` or the route's own key), and a conflict
//! between an inherited and an overriding value is reported at the override.

use std::time::Duration;

use crate::bounds::{self, Bound, Whole};
use crate::diag::Diags;
use crate::duration::{format_duration, parse_duration};
use crate::forms::DurationStr;
use crate::located::join_key;
use crate::model::{Backoff, Budget, Circuit, Probe, Retry, Timeouts};
use crate::raw::{RawCircuit, RawDefaults, RawRetry, RawRoute, RawTimeouts};

/// One place settings are written: `defaults` or a route.
#[derive(Clone, Copy)]
pub(crate) struct Layer<'a> {
    pub path: &'a str,
    pub timeouts: Option<&'a RawTimeouts>,
    pub retry: Option<&'a RawRetry>,
    pub circuit: Option<&'a RawCircuit>,
}

impl<'a> Layer<'a> {
    pub(crate) fn defaults(raw: Option<&'a RawDefaults>) -> Layer<'a> {
        Layer {
            path: "defaults",
            timeouts: raw.and_then(|d| d.timeouts.as_ref()),
            retry: raw.and_then(|d| d.retry.as_ref()),
            circuit: raw.and_then(|d| d.circuit.as_ref()),
        }
    }

    pub(crate) fn route(path: &'a str, raw: &'a RawRoute) -> Layer<'a> {
        Layer {
            path,
            timeouts: raw.timeouts.as_ref(),
            retry: raw.retry.as_ref(),
            circuit: raw.circuit.as_ref(),
        }
    }
}

/// Where a resolved value came from: a key path, or the built-in default.
#[derive(Clone)]
struct Source {
    path: Option<String>,
    /// Index of the layer; higher is more specific.
    layer: usize,
}

impl Source {
    const BUILTIN: Source = Source {
        path: None,
        layer: 0,
    };

    fn describe(&self) -> String {
        match &self.path {
            Some(path) => format!("from {path}"),
            None => "the default".into(),
        }
    }
}

struct Resolver<'l, 'a> {
    /// Least specific first.
    layers: &'l [Layer<'a>],
    diags: &'l mut Diags,
}

impl<'a> Resolver<'_, 'a> {
    /// The most specific layer's value for `key` (e.g. `retry.backoff.base`).
    fn find<T: ?Sized>(
        &self,
        key: &str,
        get: impl Fn(&Layer<'a>) -> Option<&'a T>,
    ) -> Option<(&'a T, String, usize)> {
        self.layers
            .iter()
            .enumerate()
            .rev()
            .find_map(|(i, layer)| get(layer).map(|v| (v, join_key(layer.path, key), i + 1)))
    }

    fn duration(
        &mut self,
        key: &str,
        get: impl Fn(&Layer<'a>) -> Option<&'a DurationStr>,
        builtin: Duration,
        zero_allowed: bool,
    ) -> (Duration, Option<Source>) {
        let Some((raw, path, layer)) = self.find(key, get) else {
            return (builtin, Some(Source::BUILTIN));
        };
        match parse_duration(&raw.0) {
            Ok(d) if d.is_zero() && !zero_allowed => {
                self.diags.error(path, "must be more than 0");
                (builtin, None)
            }
            Ok(d) => (
                d,
                Some(Source {
                    path: Some(path),
                    layer,
                }),
            ),
            Err(message) => {
                self.diags.error(path, message);
                (builtin, None)
            }
        }
    }

    /// A whole number within `bound`, converted to the model's type.
    fn number<T: Whole>(
        &mut self,
        key: &str,
        get: impl Fn(&Layer<'a>) -> Option<&'a u64>,
        builtin: T,
        bound: Bound,
    ) -> T {
        let Some((raw, path, _)) = self.find(key, get) else {
            return builtin;
        };
        match bound.check(*raw) {
            Ok(value) => value,
            Err(message) => {
                self.diags.error(path, message);
                builtin
            }
        }
    }

    /// Reports `lower > upper` at whichever of the two is more specific; skipped when
    /// either is already reported as invalid.
    fn ordered(
        &mut self,
        (lower, lower_src, lower_name): (Duration, &Option<Source>, &str),
        (upper, upper_src, upper_name): (Duration, &Option<Source>, &str),
    ) {
        let (Some(lower_src), Some(upper_src)) = (lower_src, upper_src) else {
            return;
        };
        if lower <= upper {
            return;
        }
        let (at, message) = if upper_src.layer > lower_src.layer {
            (
                &upper_src.path,
                format!(
                    "{upper_name} {} is less than {lower_name} {} ({})",
                    format_duration(upper),
                    format_duration(lower),
                    lower_src.describe()
                ),
            )
        } else {
            (
                &lower_src.path,
                format!(
                    "{lower_name} {} is more than {upper_name} {} ({})",
                    format_duration(lower),
                    format_duration(upper),
                    upper_src.describe()
                ),
            )
        };
        if let Some(at) = at {
            self.diags.error(at.as_str(), message);
        }
    }
}

/// Merges `layers` (least specific first) over the built-in defaults and checks the result.
/// Bad values are reported and replaced by the default, so checks further on still run.
pub(crate) fn resolve(layers: &[Layer<'_>], diags: &mut Diags) -> (Timeouts, Retry, Circuit) {
    let mut r = Resolver { layers, diags };
    let builtin_timeouts = Timeouts::default();
    let builtin_retry = Retry::default();
    let builtin_circuit = Circuit::default();

    let (connect, _) = r.duration(
        "timeouts.connect",
        |l| l.timeouts?.connect.as_ref(),
        builtin_timeouts.connect,
        false,
    );
    let (request, _) = r.duration(
        "timeouts.request",
        |l| l.timeouts?.request.as_ref(),
        builtin_timeouts.request,
        false,
    );

    let (client_idle, _) = r.duration(
        "timeouts.client_idle",
        |l| l.timeouts?.client_idle.as_ref(),
        builtin_timeouts.client_idle,
        false,
    );

    let max_attempts = r.number(
        "retry.max_attempts",
        |l| l.retry?.max_attempts.as_ref(),
        builtin_retry.max_attempts,
        bounds::MAX_ATTEMPTS,
    );
    let (base, base_src) = r.duration(
        "retry.backoff.base",
        |l| l.retry?.backoff.as_ref()?.base.as_ref(),
        builtin_retry.backoff.base,
        false,
    );
    let (max, max_src) = r.duration(
        "retry.backoff.max",
        |l| l.retry?.backoff.as_ref()?.max.as_ref(),
        builtin_retry.backoff.max,
        false,
    );
    r.ordered(
        (base, &base_src, "backoff base"),
        (max, &max_src, "backoff max"),
    );
    let ratio = match r.find("retry.budget.ratio", |l| {
        l.retry?.budget.as_ref()?.ratio.as_ref()
    }) {
        Some((ratio, _, _)) if bounds::BUDGET_RATIO.contains_fraction(*ratio) => *ratio,
        Some((ratio, path, _)) => {
            r.diags.error(
                path,
                format!(
                    "{ratio} is out of range: must be {} (0.2 = 20%)",
                    bounds::BUDGET_RATIO
                ),
            );
            builtin_retry.budget.ratio
        }
        None => builtin_retry.budget.ratio,
    };
    let min_per_second = r.number(
        "retry.budget.min_per_second",
        |l| l.retry?.budget.as_ref()?.min_per_second.as_ref(),
        builtin_retry.budget.min_per_second,
        bounds::UNBOUNDED,
    );
    let max_body_bytes = r.number(
        "retry.max_body_bytes",
        |l| l.retry?.max_body_bytes.as_ref(),
        builtin_retry.max_body_bytes,
        bounds::UNBOUNDED,
    );

    let consecutive_failures = r.number(
        "circuit.consecutive_failures",
        |l| l.circuit?.consecutive_failures.as_ref(),
        builtin_circuit.consecutive_failures,
        bounds::CONSECUTIVE_FAILURES,
    );
    let probe_path = match r.find("circuit.probe.path", |l| {
        l.circuit?.probe.as_ref()?.path.as_deref()
    }) {
        Some((path, key, _)) => {
            if !path.starts_with('/') || path.contains(char::is_whitespace) || path.contains('#') {
                r.diags.error(
                    key,
                    format!(
                        "`{path}` is not a request path: it must start with `/`, e.g. /healthz"
                    ),
                );
            }
            path.to_owned()
        }
        None => builtin_circuit.probe.path.clone(),
    };
    let (interval, interval_src) = r.duration(
        "circuit.probe.interval",
        |l| l.circuit?.probe.as_ref()?.interval.as_ref(),
        builtin_circuit.probe.interval,
        false,
    );
    let (max_interval, max_interval_src) = r.duration(
        "circuit.probe.max_interval",
        |l| l.circuit?.probe.as_ref()?.max_interval.as_ref(),
        builtin_circuit.probe.max_interval,
        false,
    );
    r.ordered(
        (interval, &interval_src, "probe interval"),
        (max_interval, &max_interval_src, "probe max_interval"),
    );

    (
        Timeouts {
            connect,
            request,
            client_idle,
        },
        Retry {
            max_attempts,
            backoff: Backoff { base, max },
            budget: Budget {
                ratio,
                min_per_second,
            },
            max_body_bytes,
        },
        Circuit {
            consecutive_failures,
            probe: Probe {
                path: probe_path,
                interval,
                max_interval,
            },
        },
    )
}
