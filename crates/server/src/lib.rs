//! Ferry's HTTP front end.
//!
//! [`serve`] accepts connections (HTTP/1.1 with keep-alive, and HTTP/2 over
//! cleartext), routes each request to a guest with [`Router`], applies the
//! limits that can be checked before a guest runs (declared body size,
//! concurrency), adds Spin's request headers, runs the guest and writes one
//! access-log line. Guest failures become error responses here; nothing a
//! guest does can end the server.

mod access_log;
mod connection;
mod metrics;
mod router;
mod traces;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use ferry_manifest::{App, RouteMatch};
use ferry_runtime::{Guest, GuestError, RequestInfo, RequestLog, RequestStats, ResponseBody};
use http::{HeaderName, HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use access_log::{AccessEntry, LoggedBody};
pub use metrics::{RouteFigures, ServerMetrics};
pub use router::{RouteEntry, Router, Target};

use metrics::{Counted, InFlight, RouteMetrics};
use traces::RequestSpan;

/// Settings of the HTTP server itself (per-component limits live in
/// [`ferry_runtime::Limits`]).
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// How long a client may take to send a request's headers.
    pub header_read_timeout: Duration,
    /// Largest header section accepted (HTTP/1 buffer, HTTP/2 header list).
    pub max_header_size: usize,
    /// How long in-flight requests may take to finish after a shutdown signal.
    pub shutdown_timeout: Duration,
    /// Threads serving connections, each with its own single-threaded
    /// runtime. Defaults to the CPUs this process may run on.
    pub workers: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            max_header_size: 64 * 1024,
            shutdown_timeout: Duration::from_secs(30),
            workers: std::thread::available_parallelism().map_or(1, |n| n.get()),
        }
    }
}

/// What [`AppHost::dispatch`] decided: the response, the component that
/// produced it, and why it is an error response where it is one (for the
/// access line).
struct Dispatched<'a> {
    response: Response<ResponseBody>,
    component: Option<&'a str>,
    error: Option<String>,
    /// What failed, as the metrics' `kind` label says it.
    failure: Option<&'static str>,
}

impl<'a> Dispatched<'a> {
    fn ok(response: Response<ResponseBody>, component: Option<&'a str>) -> Self {
        Self {
            response,
            component,
            error: None,
            failure: None,
        }
    }

    /// An error response with the status's generic text: the cause is for
    /// the log only.
    fn plain(status: StatusCode, component: Option<&'a str>, error: Option<String>) -> Self {
        Self {
            response: plain(status, status.canonical_reason().unwrap_or("Error")),
            component,
            error,
            failure: None,
        }
    }

    /// A 503 that tells the client when to come back.
    fn busy(component: &'a str, error: String) -> Self {
        let mut busy = Self::plain(
            StatusCode::SERVICE_UNAVAILABLE,
            Some(component),
            Some(error),
        );
        busy.response
            .headers_mut()
            .insert(http::header::RETRY_AFTER, HeaderValue::from_static("1"));
        busy.failed("rejected")
    }

    fn failed(self, kind: &'static str) -> Self {
        Self {
            failure: Some(kind),
            ..self
        }
    }
}

/// A guest and the admission that bounds how many requests it runs at
/// once: `permits` slots, and a first-come-first-served queue of at most
/// `max_queued_requests` requests waiting up to `queue_timeout` for one.
struct Slot {
    /// The component's id, for log lines that outlive the request.
    id: Arc<str>,
    guest: Guest,
    admission: Arc<Admission>,
    /// Refusals since the last warning about them (see `note_refusal`).
    refused: AtomicUsize,
    /// When the last warning was written, in ms since `epoch`.
    last_warning_ms: std::sync::atomic::AtomicU64,
    epoch: Instant,
}

/// A component's slots and the line waiting for them, shared by every
/// version of the app that has the component.
struct Admission {
    permits: Arc<Semaphore>,
    /// Permits the semaphore was made or resized to hold.
    capacity: std::sync::Mutex<usize>,
    /// Requests waiting for a permit now.
    queued: AtomicUsize,
}

impl Admission {
    fn new(capacity: usize) -> Arc<Self> {
        Arc::new(Self {
            permits: Arc::new(Semaphore::new(capacity)),
            capacity: std::sync::Mutex::new(capacity),
            queued: AtomicUsize::new(0),
        })
    }

    /// This admission, holding `capacity` permits from now on: more are
    /// added at once; fewer are taken out as they come free (a task waits
    /// in line for them, so running requests are never cut short).
    fn resized(self: &Arc<Self>, capacity: usize) -> Arc<Self> {
        let mut current = self.capacity.lock().unwrap_or_else(|e| e.into_inner());
        if capacity > *current {
            self.permits.add_permits(capacity - *current);
        } else if capacity < *current {
            let surplus = u32::try_from(*current - capacity).unwrap_or(u32::MAX);
            let permits = self.permits.clone();
            tokio::spawn(async move {
                if let Ok(taken) = permits.acquire_many_owned(surplus).await {
                    taken.forget();
                }
            });
        }
        *current = capacity;
        self.clone()
    }
}

/// Why a request was not admitted.
#[derive(Debug)]
enum Refused {
    QueueFull(usize),
    Waited(Duration),
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refused::QueueFull(max) => write!(
                f,
                "every slot busy and the queue full ({max} requests waiting)"
            ),
            Refused::Waited(timeout) => {
                write!(f, "waited {timeout:?} in the queue without a free slot")
            }
        }
    }
}

impl Slot {
    fn new(guest: Guest, admission: Option<Arc<Admission>>) -> Self {
        Self {
            id: Arc::from(guest.id()),
            admission: admission
                .unwrap_or_else(|| Admission::new(guest.limits().max_concurrent_requests)),
            guest,
            refused: AtomicUsize::new(0),
            last_warning_ms: std::sync::atomic::AtomicU64::new(0),
            epoch: Instant::now(),
        }
    }

    /// A permit to run the guest: at once when a slot is free, else after
    /// waiting in line. The semaphore hands freed permits to waiters in the
    /// order they came, and `try_acquire` never takes one a waiter is owed,
    /// so the queue is first come, first served. A waiting request holds
    /// no instance, only its own future.
    async fn admit(&self) -> Result<tokio::sync::OwnedSemaphorePermit, Refused> {
        let admission = &self.admission;
        if let Ok(permit) = admission.permits.clone().try_acquire_owned() {
            return Ok(permit);
        }
        let limits = self.guest.limits();
        if admission.queued.fetch_add(1, Ordering::Relaxed) >= limits.max_queued_requests {
            admission.queued.fetch_sub(1, Ordering::Relaxed);
            return Err(Refused::QueueFull(limits.max_queued_requests));
        }
        let waited = tokio::time::timeout(
            limits.queue_timeout,
            admission.permits.clone().acquire_owned(),
        )
        .await;
        admission.queued.fetch_sub(1, Ordering::Relaxed);
        match waited {
            Ok(Ok(permit)) => Ok(permit),
            // The semaphore is never closed; treat it as a full wait.
            Ok(Err(_)) | Err(_) => Err(Refused::Waited(limits.queue_timeout)),
        }
    }

    /// Warns about refusals at most once a second per component, with how
    /// many there were: under overload a line per refusal would add to the
    /// load (each refusal is in its access line anyway).
    fn note_refusal(&self, app: &str, refused: &Refused) {
        self.refused.fetch_add(1, Ordering::Relaxed);
        // Milliseconds since `epoch`, plus one: 0 means never warned.
        let now = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX - 1) + 1;
        let last = self.last_warning_ms.load(Ordering::Relaxed);
        let due = last == 0 || now.saturating_sub(last) >= 1000;
        // Of the requests refused at once, the one that moves the clock on
        // writes the line.
        if !due
            || self
                .last_warning_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        let count = self.refused.swap(0, Ordering::Relaxed);
        let limits = self.guest.limits();
        tracing::warn!(
            app,
            component = &*self.id,
            refused = count,
            "answering 503: {refused} ({} running at most, {} waiting at most)",
            limits.max_concurrent_requests,
            limits.max_queued_requests,
        );
    }
}

/// The apps a server serves now. Each change ([`install`](Self::install),
/// [`remove`](Self::remove)) builds a new [`AppTable`] and swaps it in in
/// one atomic step: a request runs on the table it found when it arrived
/// (its streamed body, compiled code and files live as long as it does),
/// new requests see the new one, and no request sees a mix.
pub struct LiveApps {
    table: arc_swap::ArcSwap<AppTable>,
    /// Where installed apps' routes record their metrics, if anywhere.
    metrics: Option<ServerMetrics>,
    /// Serialises changes, so each builds on the table the last one left;
    /// requests never take it.
    changing: std::sync::Mutex<()>,
}

/// Why an app cannot join the table: a route or host name another app has.
#[derive(Debug)]
pub struct Conflict(pub String);

impl std::fmt::Display for Conflict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Conflict {}

impl LiveApps {
    pub fn new() -> Arc<Self> {
        Self::observed(None, false)
    }

    /// A table whose apps record their requests in `metrics`, and with
    /// `traces` a span per request through OpenTelemetry's global tracer.
    pub fn observed(metrics: Option<ServerMetrics>, traces: bool) -> Arc<Self> {
        let observe = Observe {
            unrouted: metrics.as_ref().map(ServerMetrics::unrouted),
            traces,
        };
        Arc::new(Self {
            table: arc_swap::ArcSwap::from_pointee(AppTable::new(Vec::new(), observe)),
            metrics,
            changing: std::sync::Mutex::new(()),
        })
    }

    /// The table new requests are routed by.
    pub fn current(&self) -> Arc<AppTable> {
        self.table.load_full()
    }

    /// The version of `name` new requests go to.
    pub fn app(&self, name: &str) -> Option<Arc<AppHost>> {
        self.current().app(name).cloned()
    }

    /// Whether an app `name` with `router`, reached by `hostnames`, could
    /// join the table as it is now (a deploy checks before it compiles;
    /// [`install`](Self::install) checks again).
    pub fn check(&self, name: &str, router: &Router, hostnames: &[String]) -> Result<(), Conflict> {
        self.current().conflicts(name, router, hostnames)
    }

    /// Makes `host` the version of its app that new requests go to,
    /// reached by `hostnames` (none: by its routes on any host name), and
    /// returns the version it replaces, still serving the requests that
    /// started on it. Refused, changing nothing, if another app has one of
    /// its routes or host names.
    pub fn install(
        &self,
        host: AppHost,
        hostnames: Vec<String>,
    ) -> Result<Option<Arc<AppHost>>, Conflict> {
        let name = host.name.clone();
        self.replace(&name, host, hostnames)
    }

    /// As [`install`](Self::install), with `host` taking the place of the
    /// app called `old` (an app renamed by its manifest).
    pub fn replace(
        &self,
        old: &str,
        host: AppHost,
        hostnames: Vec<String>,
    ) -> Result<Option<Arc<AppHost>>, Conflict> {
        let _changing = self.changing.lock().unwrap_or_else(|e| e.into_inner());
        let table = self.current();
        if *host.name != *old && table.app(&host.name).is_some() {
            return Err(Conflict(format!(
                "an app called `{}` is already here",
                host.name
            )));
        }
        table.conflicts(old, &host.router, &hostnames)?;
        let mut apps: Vec<Mounted> = table.apps.clone();
        let replaced = apps
            .iter()
            .position(|m| &*m.host.name == old)
            .map(|index| apps.remove(index).host);
        let mut host = host;
        if let Some(metrics) = &self.metrics {
            host.attach_metrics(metrics);
        }
        let mounted = Mounted {
            host: Arc::new(host),
            hostnames,
        };
        let index = apps.partition_point(|m| m.host.name < mounted.host.name);
        apps.insert(index, mounted);
        self.table
            .store(Arc::new(AppTable::new(apps, table.observe.clone())));
        Ok(replaced)
    }

    /// Takes the app `name` out of the table; its running requests finish.
    pub fn remove(&self, name: &str) -> Option<Arc<AppHost>> {
        let _changing = self.changing.lock().unwrap_or_else(|e| e.into_inner());
        let table = self.current();
        let mut apps = table.apps.clone();
        let index = apps.iter().position(|m| &*m.host.name == name)?;
        let removed = apps.remove(index);
        self.table
            .store(Arc::new(AppTable::new(apps, table.observe.clone())));
        Some(removed.host)
    }
}

/// An app in the table and the host names it is reached by.
#[derive(Clone)]
struct Mounted {
    host: Arc<AppHost>,
    /// Lower-case, without a port. Empty: reached on any host name.
    hostnames: Vec<String>,
}

/// Every app a server serves at one moment, and how a request finds its
/// app: by its `Host` if an app claims that name, else by path among the
/// apps that claim no host name (each at its own base, so their routes
/// never overlap).
#[derive(Default)]
pub struct AppTable {
    /// By name.
    apps: Vec<Mounted>,
    by_hostname: HashMap<String, usize>,
    /// The routes of every app without host names, each tagged with its
    /// app's index in `apps`.
    shared: Router,
    observe: Observe,
}

/// What a table records of its requests besides the access line.
#[derive(Clone, Default)]
struct Observe {
    /// The series of requests no route matched, where metrics are kept.
    unrouted: Option<Arc<RouteMetrics>>,
    /// Whether each request gets a span.
    traces: bool,
}

/// What is being recorded of one request, finished with its access line.
#[derive(Default)]
pub(crate) struct Observation {
    pub in_flight: Option<InFlight>,
    pub span: Option<RequestSpan>,
    /// Its sandbox's costs, where metrics or traces want them.
    pub stats: Option<Arc<RequestStats>>,
}

impl AppTable {
    fn new(apps: Vec<Mounted>, observe: Observe) -> Self {
        let mut by_hostname = HashMap::new();
        let mut routes = Vec::new();
        for (index, mounted) in apps.iter().enumerate() {
            for name in &mounted.hostnames {
                by_hostname.insert(name.clone(), index);
            }
            if mounted.hostnames.is_empty() {
                routes.extend(mounted.host.router.routes().iter().map(|route| RouteEntry {
                    app: index,
                    ..route.clone()
                }));
            }
        }
        Self {
            apps,
            by_hostname,
            shared: Router::from_routes(routes),
            observe,
        }
    }

    /// The apps, by name.
    pub fn apps(&self) -> impl Iterator<Item = (&Arc<AppHost>, &[String])> {
        self.apps.iter().map(|m| (&m.host, m.hostnames.as_slice()))
    }

    pub fn app(&self, name: &str) -> Option<&Arc<AppHost>> {
        self.apps
            .iter()
            .find(|m| &*m.host.name == name)
            .map(|m| &m.host)
    }

    /// What stops an app `name` with `router` and `hostnames` from joining
    /// this table (replacing its namesake): the first route or host name
    /// another app has, named with that app.
    fn conflicts(&self, name: &str, router: &Router, hostnames: &[String]) -> Result<(), Conflict> {
        for other in self.apps.iter().filter(|m| &*m.host.name != name) {
            let other_name = &other.host.name;
            if let Some(taken) = hostnames.iter().find(|h| other.hostnames.contains(h)) {
                return Err(Conflict(format!(
                    "the host name `{taken}` is already the app `{other_name}`'s"
                )));
            }
            if !hostnames.is_empty() || !other.hostnames.is_empty() {
                continue;
            }
            for route in router.routes() {
                if let Some(theirs) = other
                    .host
                    .router
                    .routes()
                    .iter()
                    .find(|theirs| theirs.pattern.overlaps(&route.pattern))
                {
                    return Err(Conflict(format!(
                        "the route {} of the app `{name}` overlaps the route {} of the app `{other_name}`: give one app a different `base` or a host name",
                        route.pattern.full(),
                        theirs.pattern.full()
                    )));
                }
            }
        }
        Ok(())
    }

    /// The app and route that serve `request`.
    fn route<B>(&self, request: &Request<B>) -> Option<(&AppHost, &RouteEntry, RouteMatch)> {
        let path = request.uri().path();
        if !self.by_hostname.is_empty()
            && let Some(index) = request_hostname(request).and_then(|h| self.by_hostname.get(&h))
        {
            let host = &self.apps[*index].host;
            let (route, matched) = host.router.route(path)?;
            return Some((host, route, matched));
        }
        let (route, matched) = self.shared.route(path)?;
        Some((&self.apps[route.app].host, route, matched))
    }

    /// Serves one request. Never fails: every problem is a response.
    pub async fn handle<B>(
        &self,
        request: Request<B>,
        client_addr: SocketAddr,
        local_addr: SocketAddr,
    ) -> Response<ResponseBody>
    where
        B: http_body::Body<Data = Bytes> + Send + Unpin + 'static,
        B::Error: Into<ferry_runtime::BoxError>,
    {
        let started = Instant::now();
        let method = request.method().clone();
        let path = request.uri().path().to_owned();
        let request_id = new_request_id();
        let (app, dispatched, observation) = self
            .dispatch(request, &request_id, client_addr, local_addr)
            .await;
        let Dispatched {
            mut response,
            component,
            error,
            failure,
        } = dispatched;
        if let Ok(value) = HeaderValue::from_str(&request_id) {
            response.headers_mut().insert(REQUEST_ID, value);
        }
        let entry = AccessEntry {
            method,
            path,
            status: response.status(),
            app: app.map(|app| app.name.clone()),
            component: app.zip(component).map(|(app, id)| app.slots[id].id.clone()),
            client: client_addr,
            error,
            failure,
            observation,
            request_id,
            started,
            head: started.elapsed(),
        };
        response.map(|body| LoggedBody::new(body, entry).boxed_unsync())
    }

    async fn dispatch<B>(
        &self,
        mut request: Request<B>,
        request_id: &Arc<str>,
        client_addr: SocketAddr,
        local_addr: SocketAddr,
    ) -> (Option<&AppHost>, Dispatched<'_>, Observation)
    where
        B: http_body::Body<Data = Bytes> + Send + Unpin + 'static,
        B::Error: Into<ferry_runtime::BoxError>,
    {
        let at = self.observe.traces.then(SystemTime::now);
        let span = |request: &Request<B>, route: Option<(&str, &str, &str)>| {
            at.map(|at| {
                RequestSpan::start(&traces::Started {
                    headers: request.headers(),
                    method: request.method(),
                    path: request.uri().path(),
                    route,
                    request_id,
                    at,
                })
            })
        };
        let unrouted = |request: &Request<B>| Observation {
            in_flight: self.observe.unrouted.as_ref().map(RouteMetrics::start),
            span: span(request, None),
            stats: None,
        };
        if let Some(why) = unroutable_target(request.method(), request.uri()) {
            let observation = unrouted(&request);
            let refused = Dispatched::plain(StatusCode::BAD_REQUEST, None, Some(why.into()))
                .failed("bad_request");
            return (None, refused, observation);
        }
        let Some((app, route, matched)) = self.route(&request) else {
            let observation = unrouted(&request);
            return (
                None,
                Dispatched::plain(StatusCode::NOT_FOUND, None, None),
                observation,
            );
        };
        let span = span(
            &request,
            Some((&app.name, route.component().unwrap_or("-"), &route.label)),
        );
        request.extensions_mut().insert(RequestLog {
            app: app.name.clone(),
            incarnation: app.incarnation,
            route: route.label.clone(),
            request_id: request_id.clone(),
            traceparent: span.as_ref().map(|s| s.traceparent.clone()),
        });
        let stats =
            (route.metrics.is_some() || span.is_some()).then(|| Arc::new(RequestStats::default()));
        if let Some(stats) = &stats {
            request.extensions_mut().insert(stats.clone());
        }
        let observation = Observation {
            in_flight: route.metrics.as_ref().map(RouteMetrics::start),
            span,
            stats,
        };
        let read = route.metrics.as_ref().map(|m| m.request_bytes.clone());
        let request = request.map(|body| Counted::new(body, read));
        let dispatched = app
            .dispatch(request, route, matched, client_addr, local_addr)
            .await;
        (Some(app), dispatched, observation)
    }
}

/// The response header that tells a client its request's id, as the
/// access line and the guest's log lines have it.
const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// A fresh id for a request: 128 bits, hex. Random per process (keyed by
/// the hasher's random keys) and distinct per request (a counter), without
/// a system call per request. An id a client sends is not taken: logs say
/// what this host chose.
fn new_request_id() -> Arc<str> {
    use std::hash::BuildHasher as _;
    static KEYS: std::sync::OnceLock<std::collections::hash_map::RandomState> =
        std::sync::OnceLock::new();
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let keys = KEYS.get_or_init(std::collections::hash_map::RandomState::new);
    let (high, low) = (keys.hash_one((n, 0u8)), keys.hash_one((n, 1u8)));
    format!("{high:016x}{low:016x}").into()
}

/// The host name a request was sent to, lower-case and without a port.
fn request_hostname<B>(request: &Request<B>) -> Option<String> {
    if let Some(host) = request.uri().host() {
        return Some(host.to_ascii_lowercase());
    }
    let header = request.headers().get(http::header::HOST)?.to_str().ok()?;
    let authority = http::uri::Authority::try_from(header).ok()?;
    Some(authority.host().to_ascii_lowercase())
}

/// The app lives begun in this process (see [`AppHost`]'s `incarnation`).
static INCARNATIONS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// The newest app life begun so far: every app installed later with no
/// predecessor (a new app, or one deployed again after a delete) has a
/// larger one, and every request's [`RequestLog`] carries its app's.
pub fn newest_incarnation() -> u64 {
    INCARNATIONS.load(std::sync::atomic::Ordering::SeqCst)
}

/// One application, ready to serve.
pub struct AppHost {
    name: Arc<str>,
    /// Which life of the app this version belongs to: kept by each new
    /// version, new for an app installed with no predecessor (first, or
    /// after a delete), so an old life's guest lines are told apart.
    incarnation: u64,
    base: String,
    router: Router,
    slots: HashMap<String, Slot>,
}

impl std::fmt::Debug for AppHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppHost")
            .field("name", &self.name)
            .field("base", &self.base)
            .field("routes", &self.router.routes().len())
            .finish_non_exhaustive()
    }
}

impl AppHost {
    /// `guests` holds one loaded guest per component that a public or
    /// private route uses.
    pub fn new(app: &App, guests: Vec<Guest>) -> anyhow::Result<Self> {
        Self::succeeding(None, app, guests)
    }

    /// A new version of the app `previous` serves. A component that both
    /// versions have keeps its admission (permits and queue), so requests
    /// still running on `previous` count against the same limit: a swap
    /// never hands out a second set of slots. Where the limit itself
    /// changed, the count carries over and the capacity moves to the new
    /// limit (a lower one takes effect as running requests finish).
    pub fn succeeding(
        previous: Option<&AppHost>,
        app: &App,
        guests: Vec<Guest>,
    ) -> anyhow::Result<Self> {
        let router = Router::new(app)?;
        let slots: HashMap<String, Slot> = guests
            .into_iter()
            .map(|guest| {
                let admission = previous.and_then(|p| p.slots.get(guest.id())).map(|old| {
                    old.admission
                        .resized(guest.limits().max_concurrent_requests)
                });
                (guest.id().to_owned(), Slot::new(guest, admission))
            })
            .collect();
        for route in router.routes() {
            if let Some(component) = route.component() {
                anyhow::ensure!(
                    slots.contains_key(component),
                    "route {} has no loaded component `{component}`",
                    route.pattern,
                );
            }
        }
        let incarnation = previous.map_or_else(
            || INCARNATIONS.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1,
            |p| p.incarnation,
        );
        Ok(Self {
            name: Arc::from(app.name.as_str()),
            incarnation,
            base: app.base.clone(),
            router,
            slots,
        })
    }

    pub fn router(&self) -> &Router {
        &self.router
    }

    /// Gives each route its series in `metrics`.
    fn attach_metrics(&mut self, metrics: &ServerMetrics) {
        for route in self.router.routes_mut() {
            let component = route.component().unwrap_or("-").to_owned();
            route.metrics = Some(Arc::new(metrics.route(
                &self.name,
                &component,
                &route.label,
            )));
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The guests this version runs, by component id.
    pub fn guests(&self) -> impl Iterator<Item = &Guest> {
        self.slots.values().map(|slot| &slot.guest)
    }

    /// Serves one request that `route` matched. Never fails: every problem
    /// is a response.
    async fn dispatch<'a, B>(
        &'a self,
        mut request: Request<B>,
        route: &'a RouteEntry,
        matched: RouteMatch,
        client_addr: SocketAddr,
        local_addr: SocketAddr,
    ) -> Dispatched<'a>
    where
        B: http_body::Body<Data = Bytes> + Send + Unpin + 'static,
        B::Error: Into<ferry_runtime::BoxError>,
    {
        let component = match &route.target {
            Target::Component { id, .. } => id.as_str(),
            Target::Static(reply) => return Dispatched::ok(reply.response(), None),
        };
        let slot = &self.slots[component];
        let limits = slot.guest.limits();

        let declared = request
            .headers()
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|len| len > limits.max_request_body) {
            return Dispatched::plain(
                StatusCode::PAYLOAD_TOO_LARGE,
                Some(component),
                Some(format!(
                    "declared request body larger than the limit of {} bytes",
                    limits.max_request_body
                )),
            )
            .failed("body_too_large");
        }

        let permit = match slot.admit().await {
            Ok(permit) => permit,
            Err(refused) => {
                slot.note_refusal(&self.name, &refused);
                return Dispatched::busy(component, refused.to_string());
            }
        };

        if let Err(e) = prepare_request(&mut request, route, &matched, client_addr, local_addr) {
            let mut dispatched =
                Dispatched::plain(StatusCode::BAD_REQUEST, Some(component), Some(e.clone()));
            dispatched.response = plain(StatusCode::BAD_REQUEST, &format!("Bad Request: {e}\n"));
            return dispatched.failed("bad_request");
        }
        // Only WAGI guests read these CGI-style facts; wasi:http guests get
        // them as headers. The URI is absolute by now.
        let uri = request.uri().clone();
        let stats = request.extensions().get::<Arc<RequestStats>>().cloned();
        let request_id = request
            .extensions()
            .get::<RequestLog>()
            .map(|log| log.request_id.clone());
        let info = || self.request_info(&uri, route, &matched, client_addr, local_addr);
        match slot.guest.handle(request, info, permit).await {
            Ok(response) => Dispatched::ok(response, Some(component)),
            Err(error) => {
                let request_id = request_id.as_deref().unwrap_or("-");
                log_guest_error(&self.name, component, route, request_id, &error);
                if matches!(error, GuestError::Busy) {
                    return Dispatched::busy(component, error.to_string());
                }
                // A trap after the guest was refused memory is it running
                // out of memory (a Rust guest aborts, which traps).
                let kind = match &error {
                    GuestError::Trap(_) if stats.is_some_and(|s| s.memory_denied()) => {
                        "out_of_memory"
                    }
                    _ => error.kind(),
                };
                Dispatched::plain(error.status(), Some(component), Some(error.to_string()))
                    .failed(kind)
            }
        }
    }

    /// What a WAGI guest is told about the request, from its absolute URI.
    fn request_info(
        &self,
        uri: &http::Uri,
        route: &RouteEntry,
        matched: &RouteMatch,
        client_addr: SocketAddr,
        local_addr: SocketAddr,
    ) -> RequestInfo {
        let authority = uri
            .authority()
            .map_or_else(|| local_addr.to_string(), |a| a.to_string());
        let path_and_query = uri.path_and_query().map_or("/", |p| p.as_str());
        let path = uri.path();
        let script_name = path
            .strip_suffix(matched.path_info.as_str())
            .unwrap_or(path)
            .trim_end_matches('/')
            .to_owned();
        let (server_name, server_port) = match authority.rsplit_once(':') {
            Some((host, port)) if !host.ends_with(']') || authority.starts_with('[') => {
                (host.to_owned(), port.parse().unwrap_or(local_addr.port()))
            }
            _ => (authority.clone(), local_addr.port()),
        };
        RequestInfo {
            client_addr,
            server_name,
            server_port,
            full_url: format!("http://{authority}{path_and_query}"),
            script_name,
            path_info: matched.path_info.clone(),
            matched_route: route.pattern.full(),
            component_route: route.pattern.component_route().to_owned(),
            raw_component_route: route.pattern.raw().to_owned(),
            base_path: self.base.clone(),
        }
    }
}

/// Why a request target is not one a request for a route may have (RFC 9112,
/// 3.2): a bare authority (`GET example.com`) is only for `CONNECT`, and
/// `*` only for `OPTIONS`. hyper accepts both forms for any method.
fn unroutable_target(method: &http::Method, uri: &http::Uri) -> Option<&'static str> {
    if uri.scheme().is_none() && uri.authority().is_some() && method != http::Method::CONNECT {
        return Some("an authority-form request target is only for CONNECT");
    }
    if uri.path() == "*" && method != http::Method::OPTIONS {
        return Some("the request target `*` is only for OPTIONS");
    }
    None
}

/// The authority a request was sent to: from an absolute URI, the `Host`
/// header, or else the listener's address.
fn authority<B>(
    request: &Request<B>,
    local_addr: SocketAddr,
) -> Result<http::uri::Authority, String> {
    if let Some(authority) = request.uri().authority() {
        return Ok(authority.clone());
    }
    match request.headers().get(http::header::HOST) {
        Some(host) => http::uri::Authority::try_from(host.as_bytes())
            .map_err(|e| format!("invalid host {host:?}: {e}")),
        None => http::uri::Authority::try_from(local_addr.to_string())
            .map_err(|e| format!("invalid local address: {e}")),
    }
}

/// A trigger's `static_response`, ready to be sent as often as asked: no
/// guest, no sandbox, no body read.
#[derive(Debug)]
pub struct StaticReply {
    status: StatusCode,
    headers: http::HeaderMap,
    body: Bytes,
}

impl StaticReply {
    pub fn new(fixed: &ferry_manifest::StaticResponse) -> anyhow::Result<Self> {
        let mut headers = http::HeaderMap::new();
        for (name, value) in &fixed.headers {
            headers.append(
                HeaderName::try_from(name.as_str())?,
                HeaderValue::try_from(value.as_str())?,
            );
        }
        Ok(Self {
            status: StatusCode::from_u16(fixed.status)?,
            headers,
            body: Bytes::from(fixed.body.clone()),
        })
    }

    fn response(&self) -> Response<ResponseBody> {
        let mut response = Response::new(
            Full::new(self.body.clone())
                .map_err(|never| match never {})
                .boxed_unsync(),
        );
        *response.status_mut() = self.status;
        *response.headers_mut() = self.headers.clone();
        response
    }
}

/// Header values that are the same for every request a route serves,
/// built once: the route's share of Spin's request headers.
#[derive(Debug, Clone)]
pub struct RouteHeaders(Vec<(HeaderName, HeaderValue)>);

impl RouteHeaders {
    pub fn new(pattern: &ferry_manifest::RoutePattern, base: &str) -> Self {
        let headers = [
            ("spin-matched-route", pattern.full()),
            ("spin-base-path", base.to_owned()),
            ("spin-raw-component-route", pattern.raw().to_owned()),
            ("spin-component-route", pattern.component_route().to_owned()),
        ]
        .into_iter()
        .filter_map(|(name, value)| {
            Some((
                HeaderName::from_static(name),
                HeaderValue::try_from(value).ok()?,
            ))
        })
        .collect();
        Self(headers)
    }
}

/// Makes the URI absolute (wasi:http needs an authority), strips any
/// `spin-*` headers the client sent (they must come from the host only) and
/// adds Spin's request headers.
fn prepare_request<B>(
    request: &mut Request<B>,
    route: &RouteEntry,
    matched: &RouteMatch,
    client_addr: SocketAddr,
    local_addr: SocketAddr,
) -> Result<(), String> {
    let authority = authority(request, local_addr)?;
    let mut parts = std::mem::take(request.uri_mut()).into_parts();
    parts.scheme = Some(http::uri::Scheme::HTTP);
    parts.authority = Some(authority);
    if parts.path_and_query.is_none() {
        parts.path_and_query = Some(http::uri::PathAndQuery::from_static("/"));
    }
    *request.uri_mut() = http::Uri::from_parts(parts).map_err(|e| format!("invalid URI: {e}"))?;
    let full_url = {
        let uri = request.uri();
        let authority = uri.authority().map_or("", |a| a.as_str());
        let path_and_query = uri.path_and_query().map_or("/", |p| p.as_str());
        let mut url = String::with_capacity(7 + authority.len() + path_and_query.len());
        url.push_str("http://");
        url.push_str(authority);
        url.push_str(path_and_query);
        url
    };

    let headers = request.headers_mut();
    // Empty (and not allocated) unless the client sent some.
    let spoofed: Vec<HeaderName> = headers
        .keys()
        .filter(|k| k.as_str().starts_with("spin-"))
        .cloned()
        .collect();
    for name in spoofed {
        headers.remove(name);
    }
    for (name, value) in &route.headers.0 {
        headers.insert(name.clone(), value.clone());
    }
    let mut set = |name: HeaderName, value: String| {
        if let Ok(value) = HeaderValue::try_from(value) {
            headers.insert(name, value);
        }
    };
    set(HeaderName::from_static("spin-full-url"), full_url);
    set(
        HeaderName::from_static("spin-path-info"),
        matched.path_info.clone(),
    );
    set(
        HeaderName::from_static("spin-client-addr"),
        client_addr.to_string(),
    );
    for (name, value) in &matched.params {
        if let Ok(name) =
            HeaderName::try_from(format!("spin-path-match-{}", name.to_ascii_lowercase()))
        {
            set(name, value.clone());
        }
    }
    Ok(())
}

/// One line per guest failure (target `ferry::failure`): what a dashboard
/// lists as recent errors, with the request they are about.
fn log_guest_error(
    app: &str,
    component: &str,
    route: &RouteEntry,
    request_id: &str,
    error: &GuestError,
) {
    let status = error.status().as_u16();
    let route = &*route.label;
    match error {
        GuestError::RequestBodyTooLarge(_) | GuestError::BadRequest(_) | GuestError::Busy => {
            tracing::warn!(
                target: "ferry::failure",
                app,
                component,
                route,
                request_id,
                status,
                "{error}"
            )
        }
        _ => tracing::error!(
            target: "ferry::failure",
            app,
            component,
            route,
            request_id,
            status,
            "{error}"
        ),
    }
}

fn plain(status: StatusCode, text: &str) -> Response<ResponseBody> {
    let mut response = Response::new(
        Full::new(Bytes::from(text.to_owned()))
            .map_err(|never| match never {})
            .boxed_unsync(),
    );
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// Serves `host` on `listener` until `shutdown` resolves, then stops
/// accepting, lets in-flight requests finish for up to
/// `config.shutdown_timeout`, and returns.
///
/// The caller's runtime only accepts connections. Each connection is handed
/// to one of `config.workers` threads, each running its own current-thread
/// runtime, the one with the fewest open connections. A request and the
/// guest task it spawns then stay on one thread from start to end: no work
/// stealing, no cross-thread wakeups, and a guest's store stays in that
/// core's cache (a multi-thread runtime costs ~40% more per request; see
/// BENCHMARKS.md).
pub async fn serve(
    listener: TcpListener,
    host: Arc<LiveApps>,
    config: &ServerConfig,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let local_addr = listener.local_addr()?;
    let workers = (0..config.workers.max(1))
        .map(|index| Worker::start(index, host.clone(), config.clone(), local_addr))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, client_addr) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // Out of file descriptors and the like: back off, don't die.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let stream = match stream.into_std() {
            Ok(stream) => stream,
            Err(e) => {
                tracing::warn!(client = %client_addr, "cannot hand the connection to a worker: {e}");
                continue;
            }
        };
        let worker = workers
            .iter()
            .min_by_key(|w| w.open.load(Ordering::Relaxed))
            .expect("at least one worker");
        worker.open.fetch_add(1, Ordering::Relaxed);
        if worker.connections.send((stream, client_addr)).is_err() {
            anyhow::bail!("worker thread {} stopped unexpectedly", worker.index);
        }
    }
    drop(listener);
    let open: usize = workers.iter().map(|w| w.open.load(Ordering::Relaxed)).sum();
    tracing::info!("shutting down: no longer accepting; waiting for {open} open connection(s)");
    let mut finished = Vec::new();
    for worker in workers {
        // Closing the channel tells the worker to drain and stop.
        drop(worker.connections);
        finished.push(worker.finished);
    }
    for done in finished {
        let _ = done.await;
    }
    tracing::info!("server stopped");
    Ok(())
}

type Connection = (std::net::TcpStream, SocketAddr);

/// A thread with its own current-thread runtime serving the connections the
/// acceptor hands it.
struct Worker {
    index: usize,
    connections: tokio::sync::mpsc::UnboundedSender<Connection>,
    /// Connections handed to this worker and not yet closed.
    open: Arc<AtomicUsize>,
    /// Resolves when the worker has drained its connections and stopped.
    finished: tokio::sync::oneshot::Receiver<()>,
}

impl Worker {
    fn start(
        index: usize,
        host: Arc<LiveApps>,
        config: ServerConfig,
        local_addr: SocketAddr,
    ) -> anyhow::Result<Self> {
        let (connections, incoming) = tokio::sync::mpsc::unbounded_channel();
        let (finished_tx, finished) = tokio::sync::oneshot::channel();
        let open = Arc::new(AtomicUsize::new(0));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let counter = open.clone();
        std::thread::Builder::new()
            .name(format!("ferry-worker-{index}"))
            .spawn(move || {
                runtime.block_on(run_worker(incoming, host, &config, local_addr, counter));
                // Guests still streaming past the shutdown deadline are
                // abandoned, not awaited.
                runtime.shutdown_timeout(Duration::from_millis(100));
                let _ = finished_tx.send(());
            })?;
        Ok(Self {
            index,
            connections,
            open,
            finished,
        })
    }
}

async fn run_worker(
    mut incoming: tokio::sync::mpsc::UnboundedReceiver<Connection>,
    host: Arc<LiveApps>,
    config: &ServerConfig,
    local_addr: SocketAddr,
    open: Arc<AtomicUsize>,
) {
    let protocols = Arc::new(connection::Protocols::new(config));
    let (stop, stopping) = tokio::sync::watch::channel(false);
    let closed = Arc::new(tokio::sync::Notify::new());
    while let Some((stream, client_addr)) = incoming.recv().await {
        let stream = match tokio::net::TcpStream::from_std(stream) {
            Ok(stream) => stream,
            Err(e) => {
                open.fetch_sub(1, Ordering::Relaxed);
                tracing::warn!(client = %client_addr, "cannot serve the connection: {e}");
                continue;
            }
        };
        let serve = connection::serve(
            stream,
            client_addr,
            local_addr,
            host.clone(),
            protocols.clone(),
            stopping.clone(),
        );
        let (open, closed) = (open.clone(), closed.clone());
        tokio::spawn(async move {
            serve.await;
            open.fetch_sub(1, Ordering::Relaxed);
            closed.notify_one();
        });
    }
    // Every connection finishes what it is doing and closes, within the
    // shutdown deadline.
    let _ = stop.send(true);
    let deadline = tokio::time::Instant::now() + config.shutdown_timeout;
    while open.load(Ordering::Relaxed) > 0 {
        tokio::select! {
            () = closed.notified() => {}
            () = tokio::time::sleep_until(deadline) => {
                tracing::warn!(
                    "shutdown deadline of {:?} passed; closing the remaining connections",
                    config.shutdown_timeout
                );
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests;
