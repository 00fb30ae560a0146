//! The request path's Prometheus metrics: requests by status class, the
//! time to the response head and to its end, requests in flight, body
//! bytes each way, and guest failures by kind; labelled by app, component
//! and route (the route as declared, never the raw path, so the number of
//! series is bounded by the manifests).
//!
//! Every series a route can have is created when its app is installed
//! ([`ServerMetrics::attach`]), and the route keeps handles to them, so a
//! request touches atomics (and, for a histogram, one uncontended lock) but
//! never hashes a label set. A new version of an app gets the same series:
//! counts go on across deploys. This module records; encoding the registry
//! is the caller's business (the CLI and admin layers). What each route's
//! series hold can also be read back as values ([`ServerMetrics::routes`],
//! for the dashboard), never by parsing the encoded text: a label value is
//! a route as its manifest declares it, and may hold any character.

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::atomic::AtomicI64;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use ferry_runtime::RequestStats;
use http_body::{Frame, SizeHint};
use prometheus_client::encoding::{EncodeLabelSet, EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::Registry;

/// What went wrong with a request, as the `kind` label says it.
pub const FAILURE_KINDS: &[&str] = &[
    "trap",
    "out_of_memory",
    "stack_overflow",
    "no_response",
    "bad_cgi_output",
    "error_code",
    "instantiation",
    "timeout",
    "rejected",
    "body_too_large",
    "response_too_large",
    "bad_request",
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    app: String,
    component: String,
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabels {
    app: String,
    component: String,
    route: String,
    status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FailureLabels {
    app: String,
    component: String,
    route: String,
    kind: &'static str,
}

type Histograms = Family<RouteLabels, Histogram, fn() -> Histogram>;

/// (app, component, route).
type RouteKey = (String, String, String);

fn latency_histogram() -> Histogram {
    Histogram::new(latency_buckets())
}

fn latency_buckets() -> impl Iterator<Item = f64> {
    // 250 µs to ~16 s.
    exponential_buckets(0.000_25, 2.0, 17)
}

fn readable_latency_histogram() -> ReadableHistogram {
    ReadableHistogram::new(latency_buckets())
}

fn instantiation_histogram() -> Histogram {
    // 5 µs to ~80 ms.
    Histogram::new(exponential_buckets(0.000_005, 2.0, 15))
}

fn memory_histogram() -> Histogram {
    // 64 KiB (one page) to 4 GiB.
    Histogram::new(exponential_buckets(65_536.0, 4.0, 9))
}

/// A histogram, encoded as prometheus-client's own is, whose buckets can
/// also be read back as values (prometheus-client's cannot): the duration
/// the dashboard shows is the one Prometheus scrapes.
#[derive(Clone, Debug)]
pub(crate) struct ReadableHistogram(Arc<Mutex<HistogramState>>);

#[derive(Debug)]
struct HistogramState {
    sum: f64,
    count: u64,
    /// (upper bound, observations in this bucket alone); the last bound is
    /// +Inf.
    buckets: Vec<(f64, u64)>,
}

impl ReadableHistogram {
    fn new(bounds: impl Iterator<Item = f64>) -> Self {
        let buckets = bounds
            .filter(|b| b.is_finite())
            .chain(std::iter::once(f64::INFINITY))
            .map(|b| (b, 0))
            .collect();
        Self(Arc::new(Mutex::new(HistogramState {
            sum: 0.0,
            count: 0,
            buckets,
        })))
    }

    fn state(&self) -> std::sync::MutexGuard<'_, HistogramState> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn observe(&self, value: f64) {
        let mut state = self.state();
        state.sum += value;
        state.count += 1;
        // NaN lands in +Inf, as prometheus-client puts it.
        let last = state.buckets.len() - 1;
        let index = state
            .buckets
            .iter()
            .position(|(bound, _)| *bound >= value)
            .unwrap_or(last);
        state.buckets[index].1 += 1;
    }

    /// Cumulative (upper bound, count), as Prometheus has them; the last
    /// bound is +Inf.
    pub(crate) fn cumulative(&self) -> Vec<(f64, u64)> {
        let state = self.state();
        let mut total = 0;
        state
            .buckets
            .iter()
            .map(|(bound, count)| {
                total += count;
                (*bound, total)
            })
            .collect()
    }
}

impl TypedMetric for ReadableHistogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for ReadableHistogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let state = self.state();
        encoder.encode_histogram::<NoLabelSet>(state.sum, state.count, &state.buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

/// What one route's series hold now, read from the series themselves.
#[derive(Debug, Clone)]
pub struct RouteFigures {
    pub app: String,
    pub component: String,
    /// The route as declared (with its base).
    pub route: String,
    /// Requests answered, by status class (`1xx` to `5xx`).
    pub requests: Vec<(&'static str, u64)>,
    /// Requests failed, by kind (in [`FAILURE_KINDS`] order).
    pub failures: Vec<(&'static str, u64)>,
    /// Time to the end of the response: cumulative (upper bound in
    /// seconds, count), the last bound +Inf.
    pub duration_buckets: Vec<(f64, u64)>,
}

/// The families of the request path, registered once into a registry.
#[derive(Clone)]
pub struct ServerMetrics {
    families: Families,
    /// Requests no app's route matched.
    unrouted: Arc<RouteMetrics>,
}

#[derive(Clone)]
struct Families {
    requests: Family<StatusLabels, Counter>,
    head: Histograms,
    total: Family<RouteLabels, ReadableHistogram, fn() -> ReadableHistogram>,
    in_flight: Family<RouteLabels, Gauge<i64, AtomicI64>>,
    request_bytes: Family<RouteLabels, Counter>,
    response_bytes: Family<RouteLabels, Counter>,
    failures: Family<FailureLabels, Counter>,
    instantiation: Histograms,
    peak_memory: Histograms,
    /// Every route's series, by (app, component, route), to read back.
    routes: Arc<Mutex<BTreeMap<RouteKey, RouteMetrics>>>,
}

impl ServerMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Families {
            requests: Family::default(),
            head: Family::new_with_constructor(latency_histogram),
            total: Family::new_with_constructor(readable_latency_histogram),
            in_flight: Family::default(),
            request_bytes: Family::default(),
            response_bytes: Family::default(),
            failures: Family::default(),
            instantiation: Family::new_with_constructor(instantiation_histogram),
            peak_memory: Family::new_with_constructor(memory_histogram),
            routes: Arc::default(),
        };
        registry.register(
            "ferry_requests",
            "Requests answered, by status class (1xx to 5xx)",
            metrics.requests.clone(),
        );
        registry.register(
            "ferry_request_head_seconds",
            "Time from receiving a request to having its response head",
            metrics.head.clone(),
        );
        registry.register(
            "ferry_request_duration_seconds",
            "Time from receiving a request to the end of its response body",
            metrics.total.clone(),
        );
        registry.register(
            "ferry_requests_in_flight",
            "Requests received whose response has not ended",
            metrics.in_flight.clone(),
        );
        registry.register(
            "ferry_request_body_bytes",
            "Request body bytes read",
            metrics.request_bytes.clone(),
        );
        registry.register(
            "ferry_response_body_bytes",
            "Response body bytes sent",
            metrics.response_bytes.clone(),
        );
        registry.register(
            "ferry_instantiation_seconds",
            "Time to make a request's fresh instance",
            metrics.instantiation.clone(),
        );
        registry.register(
            "ferry_peak_memory_bytes",
            "Most linear memory a request's instance had at once",
            metrics.peak_memory.clone(),
        );
        registry.register(
            "ferry_guest_failures",
            "Requests a guest or a limit failed, by kind",
            metrics.failures.clone(),
        );
        Self {
            unrouted: Arc::new(metrics.route("-", "-", "-")),
            families: metrics,
        }
    }

    /// The series of one route, created (at zero) if they are new.
    pub(crate) fn route(&self, app: &str, component: &str, route: &str) -> RouteMetrics {
        self.families.route(app, component, route)
    }

    pub(crate) fn unrouted(&self) -> Arc<RouteMetrics> {
        self.unrouted.clone()
    }

    /// What every app's route has counted so far (not the requests no
    /// route matched), by app, component and route: the values the series
    /// hold, the same the registry encodes.
    pub fn routes(&self) -> Vec<RouteFigures> {
        let routes = self
            .families
            .routes
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        routes
            .iter()
            .filter(|((app, _, _), _)| app != "-")
            .map(|((app, component, route), series)| RouteFigures {
                app: app.clone(),
                component: component.clone(),
                route: route.clone(),
                requests: STATUS_CLASSES
                    .iter()
                    .zip(&series.by_class)
                    .map(|(class, counter)| (*class, counter.get()))
                    .collect(),
                failures: FAILURE_KINDS
                    .iter()
                    .zip(&series.failures)
                    .map(|(kind, counter)| (*kind, counter.get()))
                    .collect(),
                duration_buckets: series.total.cumulative(),
            })
            .collect()
    }
}

/// The `status` label's values, in [`RouteMetrics`]' `by_class` order.
const STATUS_CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

impl Families {
    fn route(&self, app: &str, component: &str, route: &str) -> RouteMetrics {
        let labels = RouteLabels {
            app: app.to_owned(),
            component: component.to_owned(),
            route: route.to_owned(),
        };
        let by_class = STATUS_CLASSES.map(|status| {
            self.requests.get_or_create_owned(&StatusLabels {
                app: labels.app.clone(),
                component: labels.component.clone(),
                route: labels.route.clone(),
                status,
            })
        });
        let failures = FAILURE_KINDS
            .iter()
            .map(|kind| {
                self.failures.get_or_create_owned(&FailureLabels {
                    app: labels.app.clone(),
                    component: labels.component.clone(),
                    route: labels.route.clone(),
                    kind,
                })
            })
            .collect();
        let series = RouteMetrics {
            by_class,
            head: self.head.get_or_create_owned(&labels),
            total: self.total.get_or_create_owned(&labels),
            in_flight: self.in_flight.get_or_create_owned(&labels),
            request_bytes: self.request_bytes.get_or_create_owned(&labels),
            response_bytes: self.response_bytes.get_or_create_owned(&labels),
            instantiation: self.instantiation.get_or_create_owned(&labels),
            peak_memory: self.peak_memory.get_or_create_owned(&labels),
            failures,
        };
        // Handles to the same series: a new version's route replaces its
        // predecessor's entry with equal ones.
        self.routes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert((labels.app, labels.component, labels.route), series.clone());
        series
    }
}

/// Handles to one route's series.
#[derive(Debug, Clone)]
pub(crate) struct RouteMetrics {
    by_class: [Counter; 5],
    head: Histogram,
    total: ReadableHistogram,
    in_flight: Gauge<i64, AtomicI64>,
    pub request_bytes: Counter,
    response_bytes: Counter,
    instantiation: Histogram,
    peak_memory: Histogram,
    /// In [`FAILURE_KINDS`] order.
    failures: Vec<Counter>,
}

impl RouteMetrics {
    /// Counts a request as in flight until the returned guard is dropped.
    pub(crate) fn start(self: &Arc<Self>) -> InFlight {
        self.in_flight.inc();
        InFlight(self.clone())
    }
}

/// A request in flight: its route's gauge is decremented when it drops.
pub(crate) struct InFlight(Arc<RouteMetrics>);

impl InFlight {
    /// Records the request's end: its status, times, bytes sent, what its
    /// sandbox cost and, if it failed, why.
    pub(crate) fn finish(
        self,
        status: http::StatusCode,
        head: Duration,
        total: Duration,
        bytes: u64,
        failure: Option<&str>,
        stats: Option<&RequestStats>,
    ) {
        let route = &self.0;
        let class = usize::from(status.as_u16() / 100).clamp(1, 5) - 1;
        route.by_class[class].inc();
        route.head.observe(head.as_secs_f64());
        route.total.observe(total.as_secs_f64());
        route.response_bytes.inc_by(bytes);
        if let Some(stats) = stats
            && let Some(took) = stats.instantiation()
        {
            route.instantiation.observe(took.as_secs_f64());
            route.peak_memory.observe(stats.peak_memory() as f64);
        }
        if let Some(kind) = failure
            && let Some(index) = FAILURE_KINDS.iter().position(|k| *k == kind)
            && let Some(counter) = route.failures.get(index)
        {
            counter.inc();
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.dec();
    }
}

/// A request body that counts the bytes read from it.
pub(crate) struct Counted<B> {
    inner: B,
    read: Option<Counter>,
}

impl<B> Counted<B> {
    pub(crate) fn new(inner: B, read: Option<Counter>) -> Self {
        Self { inner, read }
    }
}

impl<B> http_body::Body for Counted<B>
where
    B: http_body::Body<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let poll = Pin::new(&mut self.inner).poll_frame(cx);
        if let (Poll::Ready(Some(Ok(frame))), Some(read)) = (&poll, &self.read)
            && let Some(data) = frame.data_ref()
        {
            read.inc_by(data.len() as u64);
        }
        poll
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
