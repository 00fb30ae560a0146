//! The live dashboard of `ferry serve`: a page served by the admin listener
//! (`/dashboard`, its assets compiled into the binary) and the stream it
//! draws from (`GET /v1/events`, server-sent events, with the admin token).
//!
//! Once a second the stream sends one snapshot: every app with its version,
//! routes and versions; per route, the request and failure counters and the
//! duration histogram; the instance pools; the last guest log lines and
//! failures. The figures are read back from the process's own metrics
//! exposition, so the dashboard and Prometheus never disagree; rates and
//! percentiles over time are computed by the page from successive
//! snapshots. One stream per open page, no polling.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{Value, json};

use crate::guest_logs::GuestLogs;
use crate::host::Host;
use crate::metrics::Metrics;

pub const INDEX_HTML: &str = include_str!("dashboard/index.html");
pub const APP_JS: &str = include_str!("dashboard/app.js");
pub const STYLE_CSS: &str = include_str!("dashboard/style.css");
pub const ICON_SVG: &str = include_str!("dashboard/icon.svg");

/// Apps whose version history a snapshot includes (each is read from the
/// state directory).
const MAX_APPS_WITH_HISTORY: usize = 100;

/// What one route has answered so far.
#[derive(Debug, Default, Serialize)]
struct RouteFigures {
    app: String,
    component: String,
    route: String,
    /// By status class.
    requests: BTreeMap<String, f64>,
    /// By kind.
    failures: BTreeMap<String, f64>,
    /// Cumulative (upper bound in seconds, count), as Prometheus has them.
    duration_buckets: Vec<(f64, f64)>,
}

/// One snapshot, as the page receives it.
pub fn snapshot(host: &Host, metrics: &Metrics, logs: &GuestLogs) -> Value {
    let text = metrics.encode();
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned())))
        .unwrap_or_else(|_| prometheus_parse::Scrape {
            docs: Default::default(),
            samples: Vec::new(),
        });
    let mut routes: BTreeMap<(String, String, String), RouteFigures> = BTreeMap::new();
    let mut pools: BTreeMap<String, Value> = BTreeMap::new();
    for sample in &scrape.samples {
        let label = |name: &str| sample.labels.get(name).unwrap_or_default().to_owned();
        let value = match &sample.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => *v,
            _ => f64::NAN,
        };
        match sample.metric.as_str() {
            "ferry_requests_total" => {
                route_of(&mut routes, sample)
                    .requests
                    .insert(label("status"), value);
            }
            "ferry_guest_failures_total" if value > 0.0 => {
                route_of(&mut routes, sample)
                    .failures
                    .insert(label("kind"), value);
            }
            "ferry_request_duration_seconds" => {
                if let prometheus_parse::Value::Histogram(buckets) = &sample.value {
                    route_of(&mut routes, sample).duration_buckets =
                        buckets.iter().map(|b| (b.less_than, b.count)).collect();
                }
            }
            "ferry_component_instances" | "ferry_instance_pool_capacity" => {
                let pool = pools
                    .entry(label("engine"))
                    .or_insert_with(|| json!({ "engine": label("engine") }));
                pool[sample.metric.trim_start_matches("ferry_")] = json!(value);
            }
            _ => {}
        }
    }
    let apps = host.list();
    let history: BTreeMap<String, Value> = apps
        .iter()
        .take(MAX_APPS_WITH_HISTORY)
        .filter_map(|app| {
            let detail = host.show(&app.name).ok()?;
            Some((app.name.clone(), json!(detail.versions)))
        })
        .collect();
    json!({
        "time_ms": std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64),
        "apps": apps,
        "versions": history,
        "routes": routes.into_values().filter(|r| r.app != "-").collect::<Vec<_>>(),
        "pools": pools.into_values().collect::<Vec<_>>(),
        "logs": logs.recent(50).iter().map(|l| &**l).collect::<Vec<_>>(),
        "failures": logs.failures().iter().rev().take(20).rev().map(|l| &**l).collect::<Vec<_>>(),
    })
}

/// The figures of the route `sample` is labelled with.
fn route_of<'a>(
    routes: &'a mut BTreeMap<(String, String, String), RouteFigures>,
    sample: &prometheus_parse::Sample,
) -> &'a mut RouteFigures {
    let label = |name: &str| sample.labels.get(name).unwrap_or_default().to_owned();
    let key = (label("app"), label("component"), label("route"));
    routes
        .entry(key)
        .or_insert_with_key(|(app, component, route)| RouteFigures {
            app: app.clone(),
            component: component.clone(),
            route: route.clone(),
            ..RouteFigures::default()
        })
}
