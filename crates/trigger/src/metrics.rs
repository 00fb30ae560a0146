//! Trigger invocations' Prometheus metrics and OpenTelemetry spans.
//!
//! Series are labelled by app, component and trigger id (never by what an
//! event carried), created when a version's triggers start and kept by the
//! trigger's invoker, so an invocation touches atomics and one histogram.
//! A new version's triggers get the same series: counts go on across
//! deploys. A trigger a new version no longer has (renamed, removed, its
//! app deleted) loses its series ([`TriggerMetrics::retain`]). What each
//! trigger's series hold can be read back as values
//! ([`TriggerMetrics::triggers`]) for the dashboard.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::AtomicI64;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use ferry_runtime::{GuestError, RequestStats};
use opentelemetry::trace::{Span as _, SpanKind, Status, Tracer as _};
use opentelemetry::{KeyValue, global};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::Invoker;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TriggerLabels {
    app: String,
    component: String,
    trigger: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FailureLabels {
    app: String,
    component: String,
    trigger: String,
    kind: String,
}

/// App, component and trigger id.
type SeriesKey = (String, String, String);

/// The trigger families, registered once into a registry.
#[derive(Clone)]
pub struct TriggerMetrics {
    invocations: Family<TriggerLabels, Counter>,
    failures: Family<FailureLabels, Counter>,
    duration: Family<TriggerLabels, Histogram, fn() -> Histogram>,
    connected: Family<TriggerLabels, Gauge<i64, AtomicI64>>,
    /// Every trigger's series, to read back.
    triggers: Arc<Mutex<BTreeMap<SeriesKey, Series>>>,
}

fn duration_histogram() -> Histogram {
    // 100 µs to about 26 s.
    Histogram::new(exponential_buckets(0.0001, 2.0, 19))
}

impl TriggerMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self {
            invocations: Family::default(),
            failures: Family::default(),
            duration: Family::new_with_constructor(duration_histogram),
            connected: Family::default(),
            triggers: Arc::default(),
        };
        registry.register(
            "ferry_trigger_invocations",
            "Events a trigger ran its component on, failed or not",
            metrics.invocations.clone(),
        );
        registry.register(
            "ferry_trigger_failures",
            "Trigger invocations a guest or a limit failed, by kind",
            metrics.failures.clone(),
        );
        registry.register(
            "ferry_trigger_duration_seconds",
            "Time from an event's dispatch to its guest's end",
            metrics.duration.clone(),
        );
        registry.register(
            "ferry_trigger_connected",
            "Sources of a trigger that are up (subscribed, consuming, scheduled): 1, or 0 while it reconnects (2 for a moment while a new version takes over)",
            metrics.connected.clone(),
        );
        metrics
    }

    /// The series of one trigger, created (at zero) if they are new.
    pub(crate) fn series(&self, app: &str, component: &str, trigger: &str) -> Series {
        let key = (app.to_owned(), component.to_owned(), trigger.to_owned());
        let mut triggers = self.triggers.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(series) = triggers.get(&key) {
            return series.clone();
        }
        let labels = TriggerLabels {
            app: key.0.clone(),
            component: key.1.clone(),
            trigger: key.2.clone(),
        };
        let series = Series {
            invocations: self.invocations.get_or_create(&labels).clone(),
            duration: self.duration.get_or_create(&labels).clone(),
            connected: self.connected.get_or_create(&labels).clone(),
            failures: self.failures.clone(),
            failed: Counter::default(),
            kinds: Arc::default(),
            labels,
        };
        triggers.insert(key, series.clone());
        series
    }

    /// Forgets the series of `app`'s triggers that `kept` (component and
    /// trigger id) does not name, from the registry too: a trigger renamed
    /// or removed by a new version, or every one of a deleted app, leaves
    /// nothing behind.
    pub fn retain(&self, app: &str, kept: &[(String, String)]) {
        let mut triggers = self.triggers.lock().unwrap_or_else(|e| e.into_inner());
        triggers.retain(|(a, component, trigger), series| {
            let keep = a != app || kept.iter().any(|(c, t)| c == component && t == trigger);
            if !keep {
                self.invocations.remove(&series.labels);
                self.duration.remove(&series.labels);
                self.connected.remove(&series.labels);
                let kinds = series.kinds.lock().unwrap_or_else(|e| e.into_inner());
                for kind in kinds.iter() {
                    self.failures.remove(&FailureLabels {
                        app: a.clone(),
                        component: component.clone(),
                        trigger: trigger.clone(),
                        kind: kind.clone(),
                    });
                }
            }
            keep
        });
    }

    /// What every trigger has counted so far, by app, component and trigger.
    pub fn triggers(&self) -> Vec<TriggerFigures> {
        let triggers = self.triggers.lock().unwrap_or_else(|e| e.into_inner());
        triggers
            .values()
            .map(|s| TriggerFigures {
                app: s.labels.app.clone(),
                component: s.labels.component.clone(),
                trigger: s.labels.trigger.clone(),
                invocations: s.invocations.get(),
                failures: s.failed.get(),
                connected: s.connected.get() > 0,
            })
            .collect()
    }
}

/// One trigger's figures, for the dashboard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TriggerFigures {
    pub app: String,
    pub component: String,
    pub trigger: String,
    pub invocations: u64,
    pub failures: u64,
    pub connected: bool,
}

/// One trigger's series.
#[derive(Clone)]
pub(crate) struct Series {
    labels: TriggerLabels,
    invocations: Counter,
    duration: Histogram,
    connected: Gauge<i64, AtomicI64>,
    failures: Family<FailureLabels, Counter>,
    /// Every failure, whatever its kind: what the dashboard shows.
    failed: Counter,
    /// The kinds of failure counted, whose series go with the trigger's.
    kinds: Arc<Mutex<BTreeSet<String>>>,
}

impl Series {
    pub fn record(&self, took: Duration, failure: Option<&str>, _stats: &RequestStats) {
        self.invocations.inc();
        self.duration.observe(took.as_secs_f64());
        if let Some(kind) = failure {
            self.failed.inc();
            self.kinds
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(kind.to_owned());
            self.failures
                .get_or_create(&FailureLabels {
                    app: self.labels.app.clone(),
                    component: self.labels.component.clone(),
                    trigger: self.labels.trigger.clone(),
                    kind: kind.to_owned(),
                })
                .inc();
        }
    }

    /// One source more (or fewer) up.
    pub fn connected(&self, up: bool) {
        if up {
            self.connected.inc();
        } else {
            self.connected.dec();
        }
    }
}

/// A span for one invocation, named `<type> <trigger id>`.
pub(crate) fn span(invoker: &Invoker, message_id: &str) -> global::BoxedSpan {
    let tracer = global::tracer("ferry");
    tracer
        .span_builder(format!("{} {}", invoker.kind, invoker.trigger))
        .with_kind(SpanKind::Consumer)
        .with_start_time(SystemTime::now())
        .with_attributes([
            KeyValue::new("ferry.app", invoker.app.to_string()),
            KeyValue::new("ferry.component", invoker.component.to_string()),
            KeyValue::new("ferry.trigger", invoker.trigger.to_string()),
            KeyValue::new("messaging.message.id", message_id.to_owned()),
        ])
        .start(&tracer)
}

pub(crate) fn end_span(
    mut span: global::BoxedSpan,
    failure: Option<&str>,
    error: Option<&GuestError>,
) {
    if let (Some(kind), Some(error)) = (failure, error) {
        span.set_attribute(KeyValue::new("ferry.failure", kind.to_owned()));
        span.set_status(Status::error(error.to_string()));
    }
    span.end();
}
