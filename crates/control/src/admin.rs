//! The admin API of `ferry serve`: HTTP + JSON on its own listener
//! (`docs/admin-api.yaml` is its OpenAPI description).
//!
//! Every `/v1/` call, and `/metrics`, needs `Authorization: Bearer <token>`, compared in
//! constant time; without it the answer is 401 and the request body is never
//! read. `/healthz` and `/readyz` answer anyone, for load balancers and
//! probes. Calls that touch the disk or compile run on blocking threads, so
//! the listener and the apps' traffic never wait for them.
//!
//! The two answers that stream (`logs?follow` and `/v1/events`) are bounded:
//! at most [`MAX_LOG_FOLLOWERS`] and [`MAX_EVENT_STREAMS`] at once, a 429
//! beyond. Each ends as soon as its client leaves (the connection is watched,
//! not only written to), when its client stops reading for
//! [`STALLED_CLIENT`], and a follower when its app is deleted; a quiet
//! follower writes an empty line every [`KEEP_ALIVE`], so that even a client
//! that vanished without closing its connection is noticed.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use ferry_api::{AppList, Deleted, Missing, MissingRequest, RollbackRequest, Uploaded};
use ferry_server::tls::Tls;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use subtle::ConstantTimeEq as _;
use tokio::net::TcpListener;
use tokio::sync::broadcast::error::RecvError;

use crate::dashboard;
use crate::guest_logs::GuestLogs;
use crate::host::{DeployRequest, Host, HostError};
use crate::metrics::Metrics;

/// The largest JSON request body (a deploy's file list).
const MAX_JSON_BODY: usize = 16 << 20;

/// `logs?follow` answers streaming at once, all apps together.
pub const MAX_LOG_FOLLOWERS: usize = 64;

/// `/v1/events` streams (open dashboards) at once.
pub const MAX_EVENT_STREAMS: usize = 16;

/// How long a quiet follower waits before writing an empty line (which
/// `ferry logs` skips), to learn whether its client is still there.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// How long a stream waits for its client to take the next piece before
/// it gives up on that client.
pub const STALLED_CLIENT: Duration = Duration::from_secs(30);

// One admin listener per process: its limits are the process's.
static LOG_FOLLOWERS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(MAX_LOG_FOLLOWERS);
static EVENT_STREAMS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(MAX_EVENT_STREAMS);

/// Every admin answer's body: whole, or (`logs?follow`) streamed.
pub type AdminBody = UnsyncBoxBody<Bytes, Infallible>;

/// How long an admin client has for its TLS handshake, and then for each
/// request head.
const ADMIN_HEADER_TIMEOUT: Duration = Duration::from_secs(10);

pub struct Admin {
    pub host: Arc<Host>,
    pub metrics: Arc<Metrics>,
    pub guest_logs: Arc<GuestLogs>,
    pub token: String,
    /// The largest blob upload.
    pub max_blob: u64,
}

/// Serves the admin API on `listener` until the runtime stops, over TLS
/// when `tls` is given.
pub async fn serve(listener: TcpListener, admin: Arc<Admin>, tls: Option<Tls>) {
    serve_http(listener, tls, move |request| admin.clone().handle(request)).await;
}

/// `ferry up --metrics-listen`: `GET /metrics` for anyone who can reach
/// the address (the dev server's; a live host's needs the token).
pub async fn serve_metrics(listener: TcpListener, metrics: Arc<Metrics>) {
    serve_http(listener, None, move |request: Request<Incoming>| {
        let metrics = metrics.clone();
        async move {
            if request.method() == Method::GET && request.uri().path() == "/metrics" {
                metrics_response(&metrics)
            } else {
                error(StatusCode::NOT_FOUND, "only GET /metrics is served here")
            }
        }
    })
    .await;
}

/// Answers each request on `listener` with `handle`, over HTTP/1.1 (in
/// TLS when `tls` is given), until the runtime stops.
async fn serve_http<F, Fut>(listener: TcpListener, tls: Option<Tls>, handle: F)
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<AdminBody>> + Send + 'static,
{
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!("admin listener: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let handle = handle.clone();
        let acceptor = tls.as_ref().map(Tls::acceptor);
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let answer = handle(request);
                async move { Ok::<_, Infallible>(answer.await) }
            });
            let mut http1 = hyper::server::conn::http1::Builder::new();
            http1
                .timer(TokioTimer::new())
                .header_read_timeout(ADMIN_HEADER_TIMEOUT);
            let Some(acceptor) = acceptor else {
                let _ = http1.serve_connection(TokioIo::new(stream), service).await;
                return;
            };
            match tokio::time::timeout(ADMIN_HEADER_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(stream)) => {
                    let _ = http1.serve_connection(TokioIo::new(stream), service).await;
                }
                Ok(Err(e)) => tracing::debug!("admin listener: TLS handshake failed: {e}"),
                Err(_) => tracing::debug!("admin listener: TLS handshake timed out"),
            }
        });
    }
}

fn metrics_response(metrics: &Metrics) -> Response<AdminBody> {
    let mut response = Response::new(whole(metrics.encode()));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static(crate::metrics::CONTENT_TYPE),
    );
    response
}

impl Admin {
    async fn handle(self: Arc<Self>, request: Request<Incoming>) -> Response<AdminBody> {
        let path = request.uri().path().to_owned();
        let method = request.method().clone();
        match (&method, path.as_str()) {
            (&Method::GET, "/dashboard" | "/dashboard/") => {
                return asset(dashboard::INDEX_HTML, "text/html; charset=utf-8");
            }
            (&Method::GET, "/dashboard/app.js") => {
                return asset(dashboard::APP_JS, "text/javascript; charset=utf-8");
            }
            (&Method::GET, "/dashboard/style.css") => {
                return asset(dashboard::STYLE_CSS, "text/css; charset=utf-8");
            }
            (&Method::GET, "/dashboard/icon.svg") => {
                return asset(dashboard::ICON_SVG, "image/svg+xml");
            }
            (&Method::GET, "/healthz") => {
                return json(StatusCode::OK, &serde_json::json!({"ok": true}));
            }
            (&Method::GET, "/readyz") => {
                let ready = self.host.ready();
                let status = if ready {
                    StatusCode::OK
                } else {
                    StatusCode::SERVICE_UNAVAILABLE
                };
                return json(status, &serde_json::json!({ "ready": ready }));
            }
            _ => {}
        }
        if !self.authorized(&request) {
            let mut response = error(
                StatusCode::UNAUTHORIZED,
                "this call needs `Authorization: Bearer <token>` with the host's admin token",
            );
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                http::HeaderValue::from_static("Bearer"),
            );
            return response;
        }
        if method == Method::GET && path == "/metrics" {
            return metrics_response(&self.metrics);
        }
        if method == Method::GET && path == "/v1/events" {
            return self.events();
        }
        let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        if let (&Method::GET, ["v1", "apps", name, "logs"]) = (&method, segments.as_slice()) {
            let follow = request
                .uri()
                .query()
                .unwrap_or_default()
                .split('&')
                .any(|kv| kv == "follow" || kv == "follow=true" || kv == "follow=1");
            return self.logs(name, follow);
        }
        let result = match (&method, segments.as_slice()) {
            (&Method::POST, ["v1", "blobs", "missing"]) => {
                match read_json::<MissingRequest>(request).await {
                    Ok(body) => {
                        self.blocking(move |host| {
                            let missing = host.missing_blobs(&body.digests);
                            to_value(StatusCode::OK, missing.map(|missing| Missing { missing }))
                        })
                        .await
                    }
                    Err(e) => Err(e),
                }
            }
            (&Method::PUT, ["v1", "blobs", digest]) => {
                let digest = (*digest).to_owned();
                match read_body(request, self.max_blob).await {
                    Ok(bytes) => {
                        self.blocking(move |host| {
                            let stored = host.put_blob(&digest, &bytes);
                            to_value(StatusCode::CREATED, stored.map(|()| Uploaded { digest }))
                        })
                        .await
                    }
                    Err(e) => Err(e),
                }
            }
            (&Method::GET, ["v1", "nodes"]) => {
                self.blocking(|host| to_value(StatusCode::OK, host.nodes()))
                    .await
            }
            (&Method::GET, ["v1", "apps"]) => {
                self.blocking(|host| to_value(StatusCode::OK, Ok(AppList { apps: host.list() })))
                    .await
            }
            (&Method::GET, ["v1", "apps", name]) => {
                let name = (*name).to_owned();
                self.blocking(move |host| to_value(StatusCode::OK, host.show(&name)))
                    .await
            }
            (&Method::POST, ["v1", "apps", name, "versions"]) => {
                let name = (*name).to_owned();
                match read_json::<DeployRequest>(request).await {
                    Ok(body) => {
                        self.blocking(move |host| {
                            to_value(StatusCode::CREATED, host.deploy(&name, body))
                        })
                        .await
                    }
                    Err(e) => Err(e),
                }
            }
            (&Method::POST, ["v1", "apps", name, "rollback"]) => {
                let name = (*name).to_owned();
                match read_json_or_empty::<RollbackRequest>(request).await {
                    Ok(body) => {
                        self.blocking(move |host| {
                            to_value(StatusCode::OK, host.rollback(&name, body.to))
                        })
                        .await
                    }
                    Err(e) => Err(e),
                }
            }
            (&Method::DELETE, ["v1", "apps", name]) => {
                let name = (*name).to_owned();
                let deleted = name.clone();
                // Read before the delete: the deleted app's life is this one
                // or older, and a new app of its name gets a newer one.
                let newest = ferry_server::newest_incarnation();
                let result = self
                    .blocking(move |host| {
                        host.delete(&name)
                            .and_then(|()| to_value(StatusCode::OK, Ok(Deleted { deleted: name })))
                    })
                    .await;
                if result.is_ok() {
                    self.guest_logs.forget(&deleted, newest);
                }
                result
            }
            _ => Err(HostError::NotFound(format!(
                "no admin call {method} {path}"
            ))),
        };
        match result {
            Ok((status, body)) => json(status, &body),
            Err(e) => error(status_of(&e), e.message()),
        }
    }

    /// `GET /v1/apps/{name}/logs[?follow]`: the app's kept guest lines as
    /// JSON lines, then (following) each new one as it is written, until
    /// the client goes or the app is deleted.
    fn logs(&self, name: &str, follow: bool) -> Response<AdminBody> {
        if !self.host.list().iter().any(|app| app.name == name) {
            return error(
                StatusCode::NOT_FOUND,
                &format!("no app called `{name}` is deployed"),
            );
        }
        let line = |value: &dyn erased::Json| {
            let mut text = value.to_json();
            text.push('\n');
            Bytes::from(text)
        };
        let body = if follow {
            let Ok(permit) = LOG_FOLLOWERS.try_acquire() else {
                return too_many(&format!(
                    "this host already streams {MAX_LOG_FOLLOWERS} followed logs, its most at once; \
                     try again when one has ended"
                ));
            };
            let following = self.guest_logs.follow(name);
            let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(64);
            tokio::spawn(async move {
                let _permit = permit;
                let crate::guest_logs::Following {
                    kept,
                    mut feed,
                    mut alive,
                    filter,
                } = following;
                for kept in &kept {
                    if !hand_over(&tx, line(&**kept)).await {
                        return;
                    }
                }
                let mut keep_alive =
                    tokio::time::interval_at(tokio::time::Instant::now() + KEEP_ALIVE, KEEP_ALIVE);
                loop {
                    let next = tokio::select! {
                        () = tx.closed() => return,
                        // The app was deleted (or followed by a new one of
                        // its name).
                        _ = alive.changed() => return,
                        _ = keep_alive.tick() => Bytes::from_static(b"\n"),
                        next = feed.recv() => match next {
                            Ok(next) if filter.wants(&next) => line(&*next),
                            Ok(_) => continue,
                            Err(RecvError::Lagged(dropped)) => {
                                line(&ferry_api::Dropped { dropped })
                            }
                            Err(RecvError::Closed) => return,
                        },
                    };
                    if !hand_over(&tx, next).await {
                        return;
                    }
                    keep_alive.reset();
                }
            });
            Channel(rx).boxed_unsync()
        } else {
            let kept = self.guest_logs.follow(name).kept;
            let text: Vec<u8> = kept.iter().flat_map(|l| line(&**l).to_vec()).collect();
            whole(text)
        };
        let mut response = Response::new(body);
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/x-ndjson"),
        );
        response
    }

    /// `GET /v1/events`: a snapshot for the dashboard every second, as
    /// server-sent events, until the client goes.
    fn events(self: &Arc<Self>) -> Response<AdminBody> {
        let Ok(permit) = EVENT_STREAMS.try_acquire() else {
            return too_many(&format!(
                "this host already streams events to {MAX_EVENT_STREAMS} clients, its most at once; \
                 close a dashboard or try again later"
            ));
        };
        let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(2);
        let admin = self.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tokio::select! {
                    () = tx.closed() => return,
                    _ = tick.tick() => {}
                }
                let admin = admin.clone();
                let Ok(snapshot) = tokio::task::spawn_blocking(move || {
                    dashboard::snapshot(&admin.host, &admin.metrics, &admin.guest_logs)
                })
                .await
                else {
                    return;
                };
                let event = format!("event: snapshot\ndata: {snapshot}\n\n");
                if !hand_over(&tx, Bytes::from(event)).await {
                    return;
                }
            }
        });
        let mut response = Response::new(Channel(rx).boxed_unsync());
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            http::HeaderValue::from_static("text/event-stream"),
        );
        headers.insert(
            header::CACHE_CONTROL,
            http::HeaderValue::from_static("no-store"),
        );
        response
    }

    fn authorized<B>(&self, request: &Request<B>) -> bool {
        let Some(given) = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
        else {
            return false;
        };
        bool::from(given.trim().as_bytes().ct_eq(self.token.as_bytes()))
    }

    /// Runs `work` on a blocking thread: deploys read files and compile.
    /// Runs `work` on a thread of its own, at a lower scheduling priority
    /// than the threads serving requests: a deploy reads files and may
    /// compile, and where it shares a core with the apps' traffic the
    /// traffic comes first. Calls about different apps run side by side.
    async fn blocking(
        &self,
        work: impl FnOnce(&Host) -> Result<(StatusCode, serde_json::Value), HostError> + Send + 'static,
    ) -> Result<(StatusCode, serde_json::Value), HostError> {
        let host = self.host.clone();
        let (tx, rx) = tokio::sync::oneshot::channel();
        let spawned = std::thread::Builder::new()
            .name("ferry-admin".into())
            .spawn(move || {
                lower_this_threads_priority();
                let _ = tx.send(work(&host));
            });
        if let Err(e) = spawned {
            return Err(HostError::Internal(format!(
                "cannot start the admin call: {e}"
            )));
        }
        rx.await
            .unwrap_or_else(|_| Err(HostError::Internal("the admin call failed".into())))
    }
}

/// Nice 10 for the calling thread (Linux applies `setpriority` to one
/// thread when given its id): the scheduler then gives it about a tenth of
/// a busy core's time next to the serving threads.
fn lower_this_threads_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: plain system calls on this thread's own id; a failure only
    // leaves the priority as it was.
    unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        let _ = libc::setpriority(libc::PRIO_PROCESS, tid, 10);
    }
}

fn to_value<T: serde::Serialize>(
    status: StatusCode,
    result: Result<T, HostError>,
) -> Result<(StatusCode, serde_json::Value), HostError> {
    let value = result?;
    serde_json::to_value(value)
        .map(|v| (status, v))
        .map_err(|e| HostError::Internal(e.to_string()))
}

fn status_of(e: &HostError) -> StatusCode {
    match e {
        HostError::BadRequest(_) => StatusCode::BAD_REQUEST,
        HostError::NotFound(_) => StatusCode::NOT_FOUND,
        HostError::Conflict(_) => StatusCode::CONFLICT,
        HostError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
        HostError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        HostError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
    }
}

async fn read_body(request: Request<Incoming>, limit: u64) -> Result<Bytes, HostError> {
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    let mut body = request.into_body();
    let mut read = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame =
            frame.map_err(|e| HostError::BadRequest(format!("reading the request body: {e}")))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        if read.len() + data.len() > limit {
            // Read on (and dropped) for a while, so that the client, still
            // sending, gets to read the answer rather than a reset.
            let mut drained = read.len() + data.len();
            while drained < MAX_DRAINED
                && let Some(Ok(frame)) = body.frame().await
            {
                drained += frame.data_ref().map_or(0, Bytes::len);
            }
            return Err(too_large(limit));
        }
        read.extend_from_slice(&data);
    }
    Ok(Bytes::from(read))
}

/// How much of an upload over the limit is read and dropped before the
/// connection is closed on it.
const MAX_DRAINED: usize = 64 << 20;

fn too_large(limit: usize) -> HostError {
    HostError::Invalid(format!(
        "the upload is larger than this host takes ({})",
        ferry_api::human::human_size(limit as u64)
    ))
}

async fn read_json<T: serde::de::DeserializeOwned>(
    request: Request<Incoming>,
) -> Result<T, HostError> {
    let bytes = read_body(request, MAX_JSON_BODY as u64).await?;
    serde_json::from_slice(&bytes)
        .map_err(|e| HostError::BadRequest(format!("the request body: {e}")))
}

async fn read_json_or_empty<T: serde::de::DeserializeOwned + Default>(
    request: Request<Incoming>,
) -> Result<T, HostError> {
    let bytes = read_body(request, MAX_JSON_BODY as u64).await?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(&bytes)
        .map_err(|e| HostError::BadRequest(format!("the request body: {e}")))
}

fn json(status: StatusCode, body: &serde_json::Value) -> Response<AdminBody> {
    let mut text = serde_json::to_vec_pretty(body).unwrap_or_default();
    text.push(b'\n');
    let mut response = Response::new(whole(text));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
}

fn error(status: StatusCode, message: &str) -> Response<AdminBody> {
    let refusal = ferry_api::Refusal {
        error: message.to_owned(),
    };
    json(status, &serde_json::to_value(refusal).unwrap_or_default())
}

/// A 429: a stream over its limit.
fn too_many(message: &str) -> Response<AdminBody> {
    let mut response = error(StatusCode::TOO_MANY_REQUESTS, message);
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, http::HeaderValue::from_static("10"));
    response
}

/// Hands `bytes` to a streamed body; false when its client has gone or
/// took nothing for [`STALLED_CLIENT`], and the stream should end.
async fn hand_over(tx: &tokio::sync::mpsc::Sender<Bytes>, bytes: Bytes) -> bool {
    matches!(
        tokio::time::timeout(STALLED_CLIENT, tx.send(bytes)).await,
        Ok(Ok(()))
    )
}

fn whole(bytes: impl Into<Bytes>) -> AdminBody {
    Full::new(bytes.into()).boxed_unsync()
}

/// A body made of what a channel delivers, ending when its senders go.
struct Channel(tokio::sync::mpsc::Receiver<Bytes>);

impl hyper::body::Body for Channel {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Infallible>>> {
        self.0
            .poll_recv(cx)
            .map(|next| next.map(|bytes| Ok(hyper::body::Frame::data(bytes))))
    }
}

/// One JSON line of any serialisable value, behind a trait object.
mod erased {
    pub trait Json {
        fn to_json(&self) -> String;
    }

    impl<T: serde::Serialize> Json for T {
        fn to_json(&self) -> String {
            serde_json::to_string(self).unwrap_or_default()
        }
    }
}

/// One of the dashboard's files: compiled in, and allowed to load nothing
/// but this host's own files.
fn asset(text: &'static str, content_type: &'static str) -> Response<AdminBody> {
    let mut response = Response::new(whole(text));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static(content_type),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        http::HeaderValue::from_static(
            "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
        ),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        http::HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        http::HeaderValue::from_static("no-referrer"),
    );
    response
}
