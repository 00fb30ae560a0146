//! Dispatch: one request to one loaded app — the route's component under
//! its admission, Spin's request headers, the guest's response or the error
//! response for its failure, the request id and the access line's facts.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use ferry_manifest::{App, RouteMatch};
use ferry_runtime::{Guest, GuestError, RequestInfo, RequestLog, RequestStats, ResponseBody};
use http::{HeaderName, HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};

use crate::admission::Slot;
use crate::metrics::ServerMetrics;
use crate::router::{RouteEntry, Router, Target};

/// What [`LoadedApp::dispatch`] decided: the response, the component that
/// produced it, and why it is an error response where it is one (for the
/// access line).
pub(crate) struct Dispatched<'a> {
    pub(crate) response: Response<ResponseBody>,
    pub(crate) component: Option<&'a str>,
    pub(crate) error: Option<String>,
    /// What failed, as the metrics' `kind` label says it.
    pub(crate) failure: Option<&'static str>,
}

impl<'a> Dispatched<'a> {
    pub(crate) fn ok(response: Response<ResponseBody>, component: Option<&'a str>) -> Self {
        Self {
            response,
            component,
            error: None,
            failure: None,
        }
    }

    /// An error response with the status's generic text: the cause is for
    /// the log only.
    pub(crate) fn plain(
        status: StatusCode,
        component: Option<&'a str>,
        error: Option<String>,
    ) -> Self {
        Self {
            response: plain(status, status.canonical_reason().unwrap_or("Error")),
            component,
            error,
            failure: None,
        }
    }

    /// A 503 that tells the client when to come back.
    pub(crate) fn busy(component: &'a str, error: String) -> Self {
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

    pub(crate) fn failed(self, kind: &'static str) -> Self {
        Self {
            failure: Some(kind),
            ..self
        }
    }
}

/// The response header that tells a client its request's id, as the
/// access line and the guest's log lines have it.
pub(crate) const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// A fresh id for a request: 128 bits, hex. Random per process (keyed by
/// the hasher's random keys) and distinct per request (a counter), without
/// a system call per request. An id a client sends is not taken: logs say
/// what this host chose.
pub(crate) fn new_request_id() -> Arc<str> {
    use std::hash::BuildHasher as _;
    static KEYS: std::sync::OnceLock<std::collections::hash_map::RandomState> =
        std::sync::OnceLock::new();
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let keys = KEYS.get_or_init(std::collections::hash_map::RandomState::new);
    let (high, low) = (keys.hash_one((n, 0u8)), keys.hash_one((n, 1u8)));
    format!("{high:016x}{low:016x}").into()
}

/// The app lives begun in this process (see [`LoadedApp`]'s `incarnation`).
static INCARNATIONS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// The newest app life begun so far: every app installed later with no
/// predecessor (a new app, or one deployed again after a delete) has a
/// larger one, and every request's [`RequestLog`] carries its app's.
pub fn newest_incarnation() -> u64 {
    INCARNATIONS.load(std::sync::atomic::Ordering::SeqCst)
}

/// One application, ready to serve.
pub struct LoadedApp {
    pub(crate) name: Arc<str>,
    /// Which life of the app this version belongs to: kept by each new
    /// version, new for an app installed with no predecessor (first, or
    /// after a delete), so an old life's guest lines are told apart.
    pub(crate) incarnation: u64,
    /// `[application] version`, for `/.well-known/spin/info`.
    pub(crate) version: Option<String>,
    pub(crate) base: String,
    pub(crate) router: Router,
    pub(crate) slots: HashMap<String, Slot>,
    /// What a chained request (`http://<id>.spin.internal/…`) to each HTTP
    /// component runs as: the route `/...` of that component, its path all
    /// path info, whether or not the component has a public route.
    pub(crate) chained: HashMap<String, RouteEntry>,
}

impl std::fmt::Debug for LoadedApp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedApp")
            .field("name", &self.name)
            .field("base", &self.base)
            .field("routes", &self.router.routes().len())
            .finish_non_exhaustive()
    }
}

impl LoadedApp {
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
        previous: Option<&LoadedApp>,
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
        let mut chained = HashMap::new();
        for trigger in &app.triggers {
            if let ferry_manifest::Handler::Component { id, executor } = &trigger.handler
                && slots.contains_key(id)
            {
                let pattern =
                    ferry_manifest::RoutePattern::parse("/", "/...").map_err(anyhow::Error::msg)?;
                let target = Target::Component {
                    id: id.clone(),
                    executor: executor.clone(),
                };
                let mut entry = RouteEntry::new(pattern, target, "/");
                entry.label = format!("{id}{}", ferry_manifest::CHAINING_SUFFIX).into();
                chained.entry(id.clone()).or_insert(entry);
            }
        }
        let incarnation = previous.map_or_else(
            || INCARNATIONS.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1,
            |p| p.incarnation,
        );
        Ok(Self {
            name: Arc::from(app.name.as_str()),
            incarnation,
            version: app.version.clone(),
            base: app.base.clone(),
            router,
            slots,
            chained,
        })
    }

    pub fn router(&self) -> &Router {
        &self.router
    }

    /// Gives each route its series in `metrics`.
    pub(crate) fn attach_metrics(&mut self, metrics: &ServerMetrics) {
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

    /// Which life of the app this version belongs to.
    pub fn incarnation(&self) -> u64 {
        self.incarnation
    }

    /// The guests this version runs, by component id.
    pub fn guests(&self) -> impl Iterator<Item = &Guest> {
        self.slots.values().map(|slot| &slot.guest)
    }

    /// The guest of component `id`, if a trigger uses it.
    pub fn guest(&self, id: &str) -> Option<&Guest> {
        self.slots.get(id).map(|slot| &slot.guest)
    }

    /// Serves one request that `route` matched. Never fails: every problem
    /// is a response.
    pub(crate) async fn dispatch<'a, B>(
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
    pub(crate) fn request_info(
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
            full_url: format!(
                "{}://{authority}{path_and_query}",
                uri.scheme_str().unwrap_or("http")
            ),
            script_name,
            path_info: matched.path_info.clone(),
            matched_route: route.pattern.full(),
            component_route: route.pattern.component_route().to_owned(),
            raw_component_route: route.pattern.raw().to_owned(),
            base_path: self.base.clone(),
        }
    }
}

/// Chained requests (`ferry_runtime::Chain`): served as a routed request
/// to the component's `/...` would be (admission, limits, Spin's headers,
/// an error response for a failure), with `Host: <id>.spin.internal`, no
/// client address, and a log line of their own (`ferry::chain`).
impl ferry_runtime::Chain for LoadedApp {
    fn call(
        self: Arc<Self>,
        component: &str,
        mut request: Request<ResponseBody>,
        depth: u32,
    ) -> ferry_runtime::Chained {
        let component = component.to_owned();
        Box::pin(async move {
            let Some((id, route)) = self.chained.get_key_value(component.as_str()) else {
                return Err(format!(
                    "app `{}` has no HTTP component `{component}`",
                    self.name
                ));
            };
            let started = std::time::Instant::now();
            let request_id = new_request_id();
            let traceparent = request
                .headers()
                .get("traceparent")
                .and_then(|v| v.to_str().ok())
                .map(Arc::from);
            request.extensions_mut().insert(RequestLog {
                app: self.name.clone(),
                incarnation: self.incarnation,
                route: route.label.clone(),
                request_id: request_id.clone(),
                traceparent,
                chain_depth: depth,
            });
            let method = request.method().clone();
            let path = request.uri().path().to_owned();
            let matched = RouteMatch {
                params: Vec::new(),
                path_info: path.clone(),
            };
            // No client: the caller is the app itself.
            let nobody = SocketAddr::from(([0, 0, 0, 0], 0));
            // A body type of its own: the boxed error trips the compiler's
            // lifetime inference for this future's `Send`.
            let request = request.map(ChainedBody);
            let dispatched = self.dispatch(request, route, matched, nobody, nobody).await;
            let status = dispatched.response.status();
            tracing::info!(
                target: "ferry::chain",
                app = &*self.name,
                component = id.as_str(),
                method = method.as_str(),
                path = path.as_str(),
                status = status.as_u16(),
                depth,
                request_id = &*request_id,
                total_us = started.elapsed().as_micros() as u64,
                error = dispatched.error.as_deref().unwrap_or(""),
                "chained request"
            );
            let mut response = dispatched.response;
            if let Ok(value) = HeaderValue::from_str(&request_id) {
                response.headers_mut().insert("x-request-id", value);
            }
            Ok(response)
        })
    }
}

/// A chained request's body, its errors as `io::Error`s.
struct ChainedBody(ResponseBody);

impl http_body::Body for ChainedBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, std::io::Error>>> {
        std::pin::Pin::new(&mut self.0)
            .poll_frame(cx)
            .map(|frame| frame.map(|f| f.map_err(std::io::Error::other)))
    }

    fn is_end_stream(&self) -> bool {
        self.0.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.0.size_hint()
    }
}

/// Why a request target is not one a request for a route may have (RFC 9112,
/// 3.2): a bare authority (`GET example.com`) is only for `CONNECT`, and
/// `*` only for `OPTIONS`. hyper accepts both forms for any method.
pub(crate) fn unroutable_target(method: &http::Method, uri: &http::Uri) -> Option<&'static str> {
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
pub(crate) fn authority<B>(
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
    pub(crate) status: StatusCode,
    pub(crate) headers: http::HeaderMap,
    pub(crate) body: Bytes,
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

    pub(crate) fn response(&self) -> Response<ResponseBody> {
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
pub(crate) fn prepare_request<B>(
    request: &mut Request<B>,
    route: &RouteEntry,
    matched: &RouteMatch,
    client_addr: SocketAddr,
    local_addr: SocketAddr,
) -> Result<(), String> {
    let authority = authority(request, local_addr)?;
    let secure = request
        .extensions()
        .get::<crate::connection::Secure>()
        .is_some();
    let mut parts = std::mem::take(request.uri_mut()).into_parts();
    parts.scheme = Some(if secure {
        http::uri::Scheme::HTTPS
    } else {
        http::uri::Scheme::HTTP
    });
    parts.authority = Some(authority);
    if parts.path_and_query.is_none() {
        parts.path_and_query = Some(http::uri::PathAndQuery::from_static("/"));
    }
    *request.uri_mut() = http::Uri::from_parts(parts).map_err(|e| format!("invalid URI: {e}"))?;
    let full_url = {
        let uri = request.uri();
        let authority = uri.authority().map_or("", |a| a.as_str());
        let path_and_query = uri.path_and_query().map_or("/", |p| p.as_str());
        let scheme = if secure { "https://" } else { "http://" };
        let mut url = String::with_capacity(8 + authority.len() + path_and_query.len());
        url.push_str(scheme);
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
    // A chained request has no client (its address is unspecified).
    if !client_addr.ip().is_unspecified() {
        set(
            HeaderName::from_static("spin-client-addr"),
            client_addr.to_string(),
        );
    }
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
pub(crate) fn log_guest_error(
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

pub(crate) fn plain(status: StatusCode, text: &str) -> Response<ResponseBody> {
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
