//! The app table: which apps a server serves now, by route and host name,
//! replaced in one atomic step on every install or removal.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use bytes::Bytes;
use ferry_manifest::RouteMatch;
use ferry_runtime::{RequestLog, RequestStats, ResponseBody};
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::BodyExt;

use crate::access_log::{AccessEntry, LoggedBody};
use crate::dispatch::{Dispatched, LoadedApp, REQUEST_ID, new_request_id, unroutable_target};
use crate::metrics::ServerMetrics;
use crate::metrics::{Counted, InFlight, RouteMetrics};
use crate::router::{RouteEntry, Router};
use crate::traces::{self, RequestSpan};

/// The apps a server serves now. Each change ([`install`](Self::install),
/// [`remove`](Self::remove)) builds a new [`AppTable`] and swaps it in in
/// one atomic step: a request runs on the table it found when it arrived
/// (its streamed body, compiled code and files live as long as it does),
/// new requests see the new one, and no request sees a mix.
pub struct LiveApps {
    pub(crate) table: arc_swap::ArcSwap<AppTable>,
    /// Where installed apps' routes record their metrics, if anywhere.
    pub(crate) metrics: Option<ServerMetrics>,
    /// Serialises changes, so each builds on the table the last one left;
    /// requests never take it.
    pub(crate) changing: std::sync::Mutex<()>,
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
    pub fn app(&self, name: &str) -> Option<Arc<LoadedApp>> {
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
        host: LoadedApp,
        hostnames: Vec<String>,
    ) -> Result<Option<Arc<LoadedApp>>, Conflict> {
        let name = host.name.clone();
        self.replace(&name, host, hostnames)
    }

    /// As [`install`](Self::install), with `host` taking the place of the
    /// app called `old` (an app renamed by its manifest).
    pub fn replace(
        &self,
        old: &str,
        host: LoadedApp,
        hostnames: Vec<String>,
    ) -> Result<Option<Arc<LoadedApp>>, Conflict> {
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
        // Its guests' chained requests go to this version, and no other.
        let chain: std::sync::Weak<dyn ferry_runtime::Chain> =
            Arc::downgrade(&mounted.host) as std::sync::Weak<LoadedApp>;
        for guest in mounted.host.guests() {
            guest.chain_to(chain.clone());
        }
        let index = apps.partition_point(|m| m.host.name < mounted.host.name);
        apps.insert(index, mounted);
        self.table
            .store(Arc::new(AppTable::new(apps, table.observe.clone())));
        Ok(replaced)
    }

    /// Takes the app `name` out of the table; its running requests finish.
    pub fn remove(&self, name: &str) -> Option<Arc<LoadedApp>> {
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
pub(crate) struct Mounted {
    pub(crate) host: Arc<LoadedApp>,
    /// Lower-case, without a port. Empty: reached on any host name.
    pub(crate) hostnames: Vec<String>,
}

/// Every app a server serves at one moment, and how a request finds its
/// app: by its `Host` if an app claims that name, else by path among the
/// apps that claim no host name (each at its own base, so their routes
/// never overlap).
#[derive(Default)]
pub struct AppTable {
    /// By name.
    pub(crate) apps: Vec<Mounted>,
    pub(crate) by_hostname: HashMap<String, usize>,
    /// The routes of every app without host names, each tagged with its
    /// app's index in `apps`.
    pub(crate) shared: Router,
    pub(crate) observe: Observe,
}

/// What a table records of its requests besides the access line.
#[derive(Clone, Default)]
pub(crate) struct Observe {
    /// The series of requests no route matched, where metrics are kept.
    pub(crate) unrouted: Option<Arc<RouteMetrics>>,
    /// Whether each request gets a span.
    pub(crate) traces: bool,
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
    pub(crate) fn new(apps: Vec<Mounted>, observe: Observe) -> Self {
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
    pub fn apps(&self) -> impl Iterator<Item = (&Arc<LoadedApp>, &[String])> {
        self.apps.iter().map(|m| (&m.host, m.hostnames.as_slice()))
    }

    pub fn app(&self, name: &str) -> Option<&Arc<LoadedApp>> {
        self.apps
            .iter()
            .find(|m| &*m.host.name == name)
            .map(|m| &m.host)
    }

    /// What stops an app `name` with `router` and `hostnames` from joining
    /// this table (replacing its namesake): the first route or host name
    /// another app has, named with that app.
    pub(crate) fn conflicts(
        &self,
        name: &str,
        router: &Router,
        hostnames: &[String],
    ) -> Result<(), Conflict> {
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
    pub(crate) fn route<B>(
        &self,
        request: &Request<B>,
    ) -> Option<(&LoadedApp, &RouteEntry, RouteMatch)> {
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

    pub(crate) async fn dispatch<B>(
        &self,
        mut request: Request<B>,
        request_id: &Arc<str>,
        client_addr: SocketAddr,
        local_addr: SocketAddr,
    ) -> (Option<&LoadedApp>, Dispatched<'_>, Observation)
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
        forget_chaining_host(&mut request);
        if let Some(why) = unroutable_target(request.method(), request.uri()) {
            let observation = unrouted(&request);
            let refused = Dispatched::plain(StatusCode::BAD_REQUEST, None, Some(why.into()))
                .failed("bad_request");
            return (None, refused, observation);
        }
        if let Some(name) = request.uri().path().strip_prefix(WELL_KNOWN_PREFIX) {
            let observation = unrouted(&request);
            return (None, self.well_known(&request, name), observation);
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
            chain_depth: 0,
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

/// Paths Spin answers itself, before any route: no app route under them is
/// ever reached (`Router::new` warns of one).
pub const WELL_KNOWN_PREFIX: &str = "/.well-known/spin/";

impl AppTable {
    /// `/.well-known/spin/health` (`OK` while the listener serves) and
    /// `/.well-known/spin/info` (the app's name and version, as Spin
    /// answers it: the app the request's host name selects, or the only
    /// app; with several and no host name, none is named: 404).
    fn well_known<B>(&self, request: &Request<B>, name: &str) -> Dispatched<'_> {
        let not_found = || Dispatched::plain(StatusCode::NOT_FOUND, None, None);
        match name {
            "health" => Dispatched {
                response: crate::dispatch::plain(StatusCode::OK, "OK"),
                component: None,
                error: None,
                failure: None,
            },
            "info" => {
                let by_host = request_hostname(request)
                    .and_then(|h| self.by_hostname.get(&h))
                    .map(|&index| &self.apps[index]);
                let app = by_host.or(match self.apps.as_slice() {
                    [only] => Some(only),
                    _ => None,
                });
                let Some(app) = app else {
                    return not_found();
                };
                let mut info = serde_json::json!({ "name": &*app.host.name });
                if let Some(version) = &app.host.version {
                    info["version"] = version.clone().into();
                }
                let body = serde_json::to_vec_pretty(&info).unwrap_or_default();
                let mut response = Response::new(
                    http_body_util::Full::new(Bytes::from(body))
                        .map_err(|never| match never {})
                        .boxed_unsync(),
                );
                response.headers_mut().insert(
                    http::header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                );
                Dispatched {
                    response,
                    component: None,
                    error: None,
                    failure: None,
                }
            }
            _ => not_found(),
        }
    }
}

/// The host name a request was sent to, lower-case and without a port.
pub(crate) fn request_hostname<B>(request: &Request<B>) -> Option<String> {
    if let Some(host) = request.uri().host() {
        return Some(host.to_ascii_lowercase());
    }
    let header = request.headers().get(http::header::HOST)?.to_str().ok()?;
    let authority = http::uri::Authority::try_from(header).ok()?;
    Some(authority.host().to_ascii_lowercase())
}

/// A request from outside never names a `*.spin.internal` host: only a
/// chained request does (Spin strips it too), so a guest can trust that
/// `Host: <id>.spin.internal` came from its own app.
fn forget_chaining_host<B>(request: &mut Request<B>) {
    let chaining = |host: &str| {
        let host = host.rsplit_once(':').map_or(host, |(h, _)| h);
        host.to_ascii_lowercase()
            .ends_with(ferry_manifest::CHAINING_SUFFIX)
    };
    if request
        .headers()
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .is_some_and(chaining)
    {
        request.headers_mut().remove(http::header::HOST);
    }
    if request.uri().host().is_some_and(chaining) {
        let path = request
            .uri()
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_owned();
        if let Ok(uri) = path.parse() {
            *request.uri_mut() = uri;
        }
    }
}
