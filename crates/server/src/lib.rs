//! Ferry's HTTP front end.
//!
//! [`serve`] accepts connections (HTTP/1.1 with keep-alive, and HTTP/2 over
//! cleartext), routes each request to a guest with [`Router`], applies the
//! limits that can be checked before a guest runs (declared body size,
//! concurrency), adds Spin's request headers, runs the guest and writes one
//! access-log line. Guest failures become error responses here; nothing a
//! guest does can end the server.

mod router;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use ferry_manifest::{App, RouteMatch};
use ferry_runtime::{Guest, GuestError, RequestInfo, ResponseBody};
use http::{HeaderName, HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

pub use router::{RouteEntry, Router};

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
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            max_header_size: 64 * 1024,
            shutdown_timeout: Duration::from_secs(30),
        }
    }
}

/// A guest and the permits that bound how many requests it serves at once.
struct Slot {
    guest: Guest,
    permits: Arc<Semaphore>,
}

/// One application, ready to serve.
pub struct AppHost {
    name: String,
    base: String,
    router: Router,
    slots: HashMap<String, Slot>,
}

impl AppHost {
    /// `guests` holds one loaded guest per component that a public or
    /// private route uses.
    pub fn new(app: &App, guests: Vec<Guest>) -> anyhow::Result<Self> {
        let router = Router::new(app);
        let slots: HashMap<String, Slot> = guests
            .into_iter()
            .map(|guest| {
                let permits = Arc::new(Semaphore::new(guest.limits().max_concurrent_requests));
                (guest.id().to_owned(), Slot { guest, permits })
            })
            .collect();
        for route in router.routes() {
            anyhow::ensure!(
                slots.contains_key(&route.component),
                "route {} has no loaded component `{}`",
                route.pattern,
                route.component
            );
        }
        Ok(Self {
            name: app.name.clone(),
            base: app.base.clone(),
            router,
            slots,
        })
    }

    pub fn router(&self) -> &Router {
        &self.router
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
        let (response, component) = self.dispatch(request, client_addr, local_addr).await;
        tracing::info!(
            target: "ferry::access",
            method = %method,
            path = %path,
            status = response.status().as_u16(),
            duration_ms = started.elapsed().as_secs_f64() * 1000.0,
            component = component.unwrap_or("-"),
            client = %client_addr,
        );
        response
    }

    async fn dispatch<B>(
        &self,
        mut request: Request<B>,
        client_addr: SocketAddr,
        local_addr: SocketAddr,
    ) -> (Response<ResponseBody>, Option<&str>)
    where
        B: http_body::Body<Data = Bytes> + Send + Unpin + 'static,
        B::Error: Into<ferry_runtime::BoxError>,
    {
        let path = request.uri().path().to_owned();
        let Some((route, matched)) = self.router.route(&path) else {
            return (plain(StatusCode::NOT_FOUND, "Not Found\n"), None);
        };
        let component = route.component.as_str();
        let slot = &self.slots[component];
        let limits = slot.guest.limits();

        let declared = request
            .headers()
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|len| len > limits.max_request_body) {
            return (
                plain(StatusCode::PAYLOAD_TOO_LARGE, "Payload Too Large\n"),
                Some(component),
            );
        }

        let Ok(permit) = slot.permits.clone().try_acquire_owned() else {
            tracing::warn!(
                app = %self.name,
                component,
                "at the limit of {} concurrent requests; answering 503",
                limits.max_concurrent_requests
            );
            let mut response = plain(StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable\n");
            response
                .headers_mut()
                .insert(http::header::RETRY_AFTER, HeaderValue::from_static("1"));
            return (response, Some(component));
        };

        let info = self.request_info(&request, route, &matched, client_addr, local_addr);
        if let Err(e) = prepare_request(&mut request, &info, &matched, local_addr) {
            return (
                plain(StatusCode::BAD_REQUEST, &format!("Bad Request: {e}\n")),
                Some(component),
            );
        }
        match slot.guest.handle(request, &info, permit).await {
            Ok(response) => (response, Some(component)),
            Err(error) => {
                let status = error.status();
                log_guest_error(&self.name, component, route, &error);
                let mut response = plain(status, status.canonical_reason().unwrap_or("Error"));
                if matches!(error, GuestError::Busy) {
                    response
                        .headers_mut()
                        .insert(http::header::RETRY_AFTER, HeaderValue::from_static("1"));
                }
                (response, Some(component))
            }
        }
    }

    fn request_info<B>(
        &self,
        request: &Request<B>,
        route: &RouteEntry,
        matched: &RouteMatch,
        client_addr: SocketAddr,
        local_addr: SocketAddr,
    ) -> RequestInfo {
        let authority = authority(request, local_addr);
        let path_and_query = request.uri().path_and_query().map_or("/", |p| p.as_str());
        let path = request.uri().path();
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

fn authority<B>(request: &Request<B>, local_addr: SocketAddr) -> String {
    request
        .uri()
        .authority()
        .map(|a| a.to_string())
        .or_else(|| {
            request
                .headers()
                .get(http::header::HOST)
                .and_then(|h| h.to_str().ok())
                .map(str::to_owned)
        })
        .unwrap_or_else(|| local_addr.to_string())
}

/// Makes the URI absolute (wasi:http needs an authority), strips any
/// `spin-*` headers the client sent (they must come from the host only) and
/// adds Spin's request headers.
fn prepare_request<B>(
    request: &mut Request<B>,
    info: &RequestInfo,
    matched: &RouteMatch,
    local_addr: SocketAddr,
) -> Result<(), String> {
    let authority = authority(request, local_addr);
    let path_and_query = request
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    *request.uri_mut() = http::Uri::builder()
        .scheme("http")
        .authority(authority.as_str())
        .path_and_query(path_and_query)
        .build()
        .map_err(|e| format!("invalid host {authority:?}: {e}"))?;

    let headers = request.headers_mut();
    let spoofed: Vec<HeaderName> = headers
        .keys()
        .filter(|k| k.as_str().starts_with("spin-"))
        .cloned()
        .collect();
    for name in spoofed {
        headers.remove(name);
    }
    let mut set = |name: &str, value: &str| {
        if let (Ok(name), Ok(value)) = (HeaderName::try_from(name), HeaderValue::from_str(value)) {
            headers.insert(name, value);
        }
    };
    set("spin-full-url", &info.full_url);
    set("spin-path-info", &info.path_info);
    set("spin-matched-route", &info.matched_route);
    set("spin-base-path", &info.base_path);
    set("spin-raw-component-route", &info.raw_component_route);
    set("spin-component-route", &info.component_route);
    set("spin-client-addr", &info.client_addr.to_string());
    for (name, value) in &matched.params {
        set(
            &format!("spin-path-match-{}", name.to_ascii_lowercase()),
            value,
        );
    }
    Ok(())
}

fn log_guest_error(app: &str, component: &str, route: &RouteEntry, error: &GuestError) {
    let status = error.status().as_u16();
    match error {
        GuestError::RequestBodyTooLarge(_) | GuestError::BadRequest(_) | GuestError::Busy => {
            tracing::warn!(app, component, route = %route.pattern, status, "{error}")
        }
        _ => tracing::error!(app, component, route = %route.pattern, status, "{error}"),
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
pub async fn serve(
    listener: TcpListener,
    host: Arc<AppHost>,
    config: &ServerConfig,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let local_addr = listener.local_addr()?;
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(config.header_read_timeout)
        .max_buf_size(config.max_header_size.max(8192));
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(config.max_header_size).unwrap_or(u32::MAX));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
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
        let host = host.clone();
        let service = hyper::service::service_fn(move |request: Request<Incoming>| {
            let host = host.clone();
            async move {
                Ok::<_, std::convert::Infallible>(
                    host.handle(request, client_addr, local_addr).await,
                )
            }
        });
        let connection = builder
            .serve_connection(TokioIo::new(stream), service)
            .into_owned();
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(client = %client_addr, "connection ended with an error: {e}");
            }
        });
    }
    drop(listener);
    let in_flight = graceful.count();
    tracing::info!(
        "shutting down: no longer accepting; waiting for {in_flight} open connection(s)"
    );
    tokio::select! {
        () = graceful.shutdown() => tracing::info!("all connections closed"),
        () = tokio::time::sleep(config.shutdown_timeout) => tracing::warn!(
            "shutdown deadline of {:?} passed; closing the remaining connections",
            config.shutdown_timeout
        ),
    }
    Ok(())
}
