//! The live dashboard of `ferry serve`: a page served by the admin listener
//! (`/dashboard`, its assets compiled into the binary) and the stream it
//! draws from (`GET /v1/events`, server-sent events, with the admin token).
//!
//! Once a second the stream sends one snapshot: every app with its version,
//! routes and versions; per route, the request and failure counters and the
//! duration histogram; per event trigger, its invocations and failures and
//! whether it is connected; the instance pools; the last guest log lines and
//! failures. The figures are the values the metrics' own series hold (read
//! through `ServerMetrics::routes` and the runtime's pools), the same ones
//! `/metrics` encodes, so the dashboard and Prometheus never disagree; the
//! encoded text is never parsed back, since a label value (a route as its
//! manifest declares it) may hold the very characters a parser splits on.
//! Rates and percentiles over time are computed by the page from successive
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

/// What one route has answered so far, as the page reads it.
#[derive(Debug, Default, Serialize)]
struct RouteFigures {
    app: String,
    component: String,
    route: String,
    /// By status class.
    requests: BTreeMap<&'static str, u64>,
    /// By kind, those that happened.
    failures: BTreeMap<&'static str, u64>,
    /// Cumulative (upper bound in seconds, count), as Prometheus has them;
    /// the last bound, +Inf, is `null`.
    duration_buckets: Vec<(Option<f64>, u64)>,
}

impl From<ferry_server::RouteFigures> for RouteFigures {
    fn from(figures: ferry_server::RouteFigures) -> Self {
        Self {
            app: figures.app,
            component: figures.component,
            route: figures.route,
            requests: figures.requests.into_iter().collect(),
            failures: figures
                .failures
                .into_iter()
                .filter(|(_, count)| *count > 0)
                .collect(),
            duration_buckets: figures
                .duration_buckets
                .into_iter()
                .map(|(bound, count)| (bound.is_finite().then_some(bound), count))
                .collect(),
        }
    }
}

/// One snapshot, as the page receives it.
pub fn snapshot(host: &Host, metrics: &Metrics, logs: &GuestLogs) -> Value {
    let routes: Vec<RouteFigures> = metrics
        .server()
        .routes()
        .into_iter()
        .map(RouteFigures::from)
        .collect();
    let pools: Vec<Value> = metrics
        .pools()
        .iter()
        .map(|pool| {
            json!({
                "engine": pool.engine,
                "component_instances": pool.component_instances,
                "instance_pool_capacity": pool.capacity,
            })
        })
        .collect();
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
        "routes": routes,
        "pools": pools,
        // A cluster's nodes (none on a host of its own, or while the
        // cluster is out of reach).
        "nodes": host
            .nodes()
            .ok()
            .filter(|list| list.cluster)
            .map(|list| list.nodes),
        // Each event trigger's figures: the values its series hold.
        "triggers": metrics
            .triggers()
            .triggers()
            .into_iter()
            .map(|t| json!({
                "app": t.app,
                "component": t.component,
                "trigger": t.trigger,
                "invocations": t.invocations,
                "failures": t.failures,
                "connected": t.connected,
            }))
            .collect::<Vec<_>>(),
        "logs": logs.recent(50).iter().map(|l| &**l).collect::<Vec<_>>(),
        "failures": logs.failures().iter().rev().take(20).rev().map(|l| &**l).collect::<Vec<_>>(),
    })
}
