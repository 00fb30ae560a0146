//! Running a `wasi:http/proxy` component for one request.
//!
//! Each request gets a new [`Store`] and instance from a [`ProxyPre`] that
//! resolved the component's imports once at load. The guest runs in its own
//! task: the response head comes back through a oneshot as soon as the guest
//! sets it, and the body streams while the guest keeps writing. The task owns
//! the store, so the sandbox lives exactly as long as the guest runs, and is
//! dropped — memory, tables, handles — when it finishes, traps or times out.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use bytes::Bytes;
use http_body_util::BodyExt;
use wasmtime::component::{Linker, Resource, ResourceTable};
use wasmtime::{Engine, Store, UpdateDeadline};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p2::types::{HostIncomingRequest, HostResponseOutparam};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks, WasiHttpView};

use crate::body::{BodyTooLarge, BoxError, FailOnFlag, Limited, ResponseBody};
use crate::sandbox::{GuestLimiter, OutboundPolicy, RequestLog, RequestStats, Sandbox};
use crate::{GuestError, Limits};

/// Per-request host state of a wasi:http guest.
pub(crate) struct HttpState {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    table: ResourceTable,
    limits: GuestLimiter,
    hooks: OutboundHooks,
    context: Arc<crate::ComponentContext>,
    redis: Arc<crate::redis::RedisPool>,
    postgres: Arc<crate::postgres::PostgresPool>,
    mysql: Arc<crate::rdbms::Sessions>,
    /// What this store holds of results its guest has not read yet.
    unread: crate::Unread,
}

impl crate::mqtt::MqttHost for HttpState {
    fn mqtt(&mut self) -> crate::mqtt::MqttView<'_> {
        crate::mqtt::MqttView {
            table: &mut self.table,
            policy: &self.hooks.policy,
        }
    }
}

impl crate::redis::RedisHost for HttpState {
    fn redis(&mut self) -> crate::redis::RedisView<'_> {
        crate::redis::RedisView {
            table: &mut self.table,
            policy: &self.hooks.policy,
            pool: &self.redis,
        }
    }
}

impl crate::postgres::PostgresHost for HttpState {
    fn postgres(&mut self) -> crate::postgres::PostgresView<'_> {
        crate::postgres::PostgresView {
            table: &mut self.table,
            policy: &self.hooks.policy,
            pool: &self.postgres,
        }
    }
}

impl crate::mysql::MysqlHost for HttpState {
    fn mysql(&mut self) -> crate::mysql::MysqlView<'_> {
        crate::mysql::MysqlView {
            table: &mut self.table,
            policy: &self.hooks.policy,
            sessions: &self.mysql,
            unread: &self.unread,
        }
    }
}

impl crate::variables::VariablesView for HttpState {
    fn variables(&self) -> &ferry_manifest::ComponentVariables {
        &self.context.variables
    }
}

impl crate::sqlite::SqliteHost for HttpState {
    fn sqlite(&mut self) -> crate::sqlite::SqliteView<'_> {
        crate::sqlite::SqliteView {
            table: &mut self.table,
            databases: &self.context.sqlite,
            unread: &self.unread,
        }
    }
}

impl crate::key_value::KeyValueHost for HttpState {
    fn key_value(&mut self) -> crate::key_value::KeyValueView<'_> {
        crate::key_value::KeyValueView {
            table: &mut self.table,
            stores: &self.context.key_value,
            unread: &self.unread,
        }
    }
}

impl WasiView for HttpState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for HttpState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            hooks: &mut self.hooks,
            table: &mut self.table,
            ctx: &mut self.http,
        }
    }
}

pub(crate) fn linker(engine: &Engine) -> anyhow::Result<Linker<HttpState>> {
    let mut linker = Linker::new(engine);
    // The whole of WASI 0.2, not only the proxy world: Rust's std imports
    // wasi:cli/environment and friends. Capabilities are still denied by
    // the context, not by missing imports.
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
    // spin-sdk 2.x's interfaces, on the same implementation.
    crate::wasi_2023_10_18::add_to_linker(&mut linker)?;
    crate::variables::add_to_linker(&mut linker)?;
    crate::key_value::add_to_linker(&mut linker)?;
    crate::sqlite::add_to_linker(&mut linker)?;
    crate::redis::add_to_linker(&mut linker)?;
    crate::rdbms::add_to_linker(&mut linker)?;
    crate::mqtt::add_to_linker(&mut linker)?;
    Ok(linker)
}

/// A component ready to instantiate, with the wasi:http incoming handler it
/// exports: WASI 0.2's, or the 2023-10-18 release candidate's (spin-sdk 2.x),
/// which runs on the same host implementation.
#[derive(Clone)]
pub(crate) enum ProxyPre {
    Wasi02(wasmtime_wasi_http::p2::bindings::ProxyPre<HttpState>),
    Candidate2023_10_18(crate::wasi_2023_10_18::ProxyPre<HttpState>),
}

enum Proxy {
    Wasi02(wasmtime_wasi_http::p2::bindings::Proxy),
    Candidate2023_10_18(crate::wasi_2023_10_18::Proxy),
}

impl ProxyPre {
    async fn instantiate(&self, store: &mut Store<HttpState>) -> wasmtime::Result<Proxy> {
        Ok(match self {
            ProxyPre::Wasi02(pre) => Proxy::Wasi02(pre.instantiate_async(store).await?),
            ProxyPre::Candidate2023_10_18(pre) => {
                Proxy::Candidate2023_10_18(pre.instantiate_async(store).await?)
            }
        })
    }
}

impl Proxy {
    async fn handle(
        &self,
        store: &mut Store<HttpState>,
        request: Resource<HostIncomingRequest>,
        out: Resource<HostResponseOutparam>,
    ) -> wasmtime::Result<()> {
        match self {
            Proxy::Wasi02(proxy) => {
                proxy
                    .wasi_http_incoming_handler()
                    .call_handle(store, request, out)
                    .await
            }
            Proxy::Candidate2023_10_18(proxy) => {
                proxy
                    .wasi_http_incoming_handler()
                    .call_handle(store, request, out)
                    .await
            }
        }
    }
}

pub(crate) fn pre(
    linker: &Linker<HttpState>,
    component: &wasmtime::component::Component,
    exports: &[String],
) -> anyhow::Result<ProxyPre> {
    let instance_pre = linker.instantiate_pre(component)?;
    if exports
        .iter()
        .any(|e| e == crate::wasi_2023_10_18::INCOMING_HANDLER)
    {
        return Ok(ProxyPre::Candidate2023_10_18(
            crate::wasi_2023_10_18::ProxyPre::new(instance_pre)?,
        ));
    }
    Ok(ProxyPre::Wasi02(
        wasmtime_wasi_http::p2::bindings::ProxyPre::new(instance_pre)?,
    ))
}

/// Enforces `allowed_outbound_hosts` on every outgoing request, and sends
/// the allowed ones only where the runtime lets a guest connect
/// (`outbound.rs`).
struct OutboundHooks {
    policy: Arc<OutboundPolicy>,
    /// The request's span, continued by each outbound request.
    traceparent: Option<Arc<str>>,
    /// How deep the request being served is in its chain (`chain.rs`).
    depth: u32,
}

impl OutboundHooks {
    /// Checks (and for `self`, rewrites) an outgoing request's destination.
    fn authorize<B>(&self, request: &mut http::Request<B>) -> Result<(), String> {
        let uri = request.uri().clone();
        let scheme = uri.scheme_str().unwrap_or("https").to_ascii_lowercase();
        let Some(host) = uri.host() else {
            return Err(format!("request to `{uri}` has no host"));
        };
        let port = uri
            .port_u16()
            .or_else(|| ferry_manifest::default_port(&scheme))
            .unwrap_or(0);
        let self_addr = self.policy.self_addr;
        let names_self = host.eq_ignore_ascii_case("self");
        let is_self = names_self
            || self_addr.is_some_and(|a| {
                a.port() == port && host.trim_matches(['[', ']']).parse() == Ok(a.ip())
            });
        if !self.policy.allowed.allows(&scheme, host, port, is_self) {
            return Err(format!(
                "{scheme}://{host}:{port} is not in allowed_outbound_hosts"
            ));
        }
        if names_self {
            let Some(addr) = self_addr else {
                return Err("`self` is not available: the app has no listener".into());
            };
            let path = uri.path_and_query().map_or("/", |p| p.as_str());
            *request.uri_mut() = format!("http://{addr}{path}")
                .parse()
                .map_err(|e| format!("rewriting `self`: {e}"))?;
            if let Ok(value) = http::HeaderValue::from_str(&addr.to_string()) {
                request.headers_mut().insert(http::header::HOST, value);
            }
        }
        Ok(())
    }
}

/// What a guest's outbound request comes to, as `send_request` returns it.
type Sent = Box<
    dyn Future<
            Output = Result<
                (
                    http::Response<wasmtime_wasi_http::WasiBody>,
                    Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
                ),
                wasmtime_wasi_http::Error,
            >,
        > + Send,
>;

impl OutboundHooks {
    /// Sends a request for `<component>.spin.internal` to that component of
    /// the app, if the caller may chain to it (`chain.rs`).
    fn chain(
        &self,
        component: String,
        mut request: http::Request<wasmtime_wasi_http::WasiBody>,
    ) -> Sent {
        use wasmtime_wasi_http::Error;
        let caller = self.policy.component.clone();
        let deny = |why: String, error: Error| -> Sent {
            tracing::warn!(
                component = &*caller,
                uri = request.uri().to_string().as_str(),
                "chained request refused: {why}"
            );
            Box::new(async move { Err(error) })
        };
        if request.uri().scheme_str() != Some("http")
            || !self.policy.allowed.allows_chaining(&component)
        {
            return deny(
                format!("http://{component}.spin.internal is not in allowed_outbound_hosts"),
                Error::HttpRequestDenied,
            );
        }
        let depth = self.depth + 1;
        if depth > crate::MAX_CHAIN_DEPTH {
            tracing::warn!(
                component = &*caller,
                "chained request to `{component}` refused: the chain is over {} requests deep",
                crate::MAX_CHAIN_DEPTH
            );
            let mut response = http::Response::new(
                http_body_util::Full::new(bytes::Bytes::from_static(b"Loop Detected\n"))
                    .map_err(|never| match never {})
                    .boxed_unsync(),
            );
            *response.status_mut() = http::StatusCode::LOOP_DETECTED;
            return Box::new(async move {
                Ok((
                    response,
                    Box::new(std::future::ready(Ok(()))) as Box<dyn Future<Output = _> + Send>,
                ))
            });
        }
        let Some(chain) = self.policy.chain.get() else {
            return deny(
                "no app serves this component's chained requests".into(),
                Error::DestinationNotFound,
            );
        };
        // As Spin sets it, whatever the guest wrote.
        if let Ok(host) = http::HeaderValue::from_str(&format!("{component}.spin.internal")) {
            request.headers_mut().insert(http::header::HOST, host);
        }
        let request = request.map(|body| body.map_err(crate::BoxError::from).boxed_unsync());
        Box::new(async move {
            let response = chain
                .call(&component, request, depth)
                .await
                .map_err(|why| {
                    tracing::warn!(component = &*caller, "chained request failed: {why}");
                    Error::DestinationNotFound
                })?;
            Ok((
                response.map(|body| {
                    body.map_err(|e| Error::InternalError(Some(e.to_string())))
                        .boxed_unsync()
                }),
                Box::new(std::future::ready(Ok(()))) as Box<dyn Future<Output = _> + Send>,
            ))
        })
    }
}

impl WasiHttpHooks for OutboundHooks {
    fn send_request(
        &mut self,
        mut request: http::Request<wasmtime_wasi_http::WasiBody>,
        options: Option<wasmtime_wasi_http::RequestOptions>,
        _fut: Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
    ) -> Sent {
        if let Some(traceparent) = &self.traceparent
            && !request.headers().contains_key("traceparent")
            && let Ok(value) = http::HeaderValue::from_str(traceparent)
        {
            request.headers_mut().insert("traceparent", value);
        }
        if let Some(component) = request
            .uri()
            .host()
            .and_then(ferry_manifest::chained_component)
            .map(str::to_owned)
        {
            return self.chain(component, request);
        }
        if let Err(reason) = self.authorize(&mut request) {
            tracing::warn!(
                component = &*self.policy.component,
                method = request.method().as_str(),
                uri = request.uri().to_string().as_str(),
                "outbound request denied: {reason}"
            );
            return Box::new(async { Err(wasmtime_wasi_http::Error::HttpRequestDenied) });
        }
        let policy = self.policy.clone();
        Box::new(async move {
            let (response, io) =
                crate::outbound::send(request, options, &policy.forbidden, &policy.component)
                    .await?;
            Ok((
                response.map(BodyExt::boxed_unsync),
                Box::new(io) as Box<dyn Future<Output = _> + Send>,
            ))
        })
    }
}

pub(crate) fn new_store(
    engine: &Engine,
    sandbox: &Sandbox,
    limits: &Limits,
    request: Option<&RequestLog>,
    stats: Option<Arc<RequestStats>>,
) -> anyhow::Result<Store<HttpState>> {
    let wasi = sandbox.wasi_builder(request)?.build();
    Ok(store_with(engine, sandbox, limits, wasi, request, stats))
}

/// A store whose WASI context is `wasi` (a command's, with its arguments
/// and the terminal's stdio), with the component's other grants.
pub(crate) fn store_with(
    engine: &Engine,
    sandbox: &Sandbox,
    limits: &Limits,
    wasi: WasiCtx,
    request: Option<&RequestLog>,
    stats: Option<Arc<RequestStats>>,
) -> Store<HttpState> {
    let state = HttpState {
        wasi,
        http: WasiHttpCtx::new(),
        table: ResourceTable::new(),
        limits: GuestLimiter::new(limits, stats),
        hooks: OutboundHooks {
            policy: sandbox.outbound.clone(),
            traceparent: request.and_then(|r| r.traceparent.clone()),
            depth: request.map_or(0, |r| r.chain_depth),
        },
        context: sandbox.context.clone(),
        redis: sandbox.redis.clone(),
        postgres: sandbox.postgres.clone(),
        mysql: sandbox.mysql.clone(),
        unread: crate::Unread::default(),
    };
    let mut store = Store::new(engine, state);
    store.limiter(|s| &mut s.limits);
    // Yield to the scheduler every epoch tick so a spinning guest cannot hold
    // a worker thread; the deadline itself is a timeout around the task.
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(|_| Ok(UpdateDeadline::Yield(1)));
    store
}

/// What went wrong with a request's body while the guest read it: over the
/// size limit, or unreadable (malformed chunked encoding, a connection that
/// ended mid-body). Either way the client gets a 4xx, not whatever the guest
/// made of a body cut short.
#[derive(Default)]
pub(crate) struct RequestBodyFault {
    too_large: Arc<AtomicBool>,
    unreadable: std::sync::OnceLock<String>,
}

impl RequestBodyFault {
    /// The error the client's response must be instead of the guest's, if
    /// any.
    fn error(&self, limits: &Limits) -> Option<GuestError> {
        if self.too_large.load(Ordering::Relaxed) {
            return Some(GuestError::RequestBodyTooLarge(limits.max_request_body));
        }
        self.unreadable
            .get()
            .map(|why| GuestError::BadRequest(format!("unreadable request body: {why}")))
    }
}

/// Wraps the request body in the component's size limit, and notes in the
/// returned fault why the body failed, if it does.
pub(crate) fn limited_request<B>(
    request: http::Request<B>,
    limit: u64,
) -> (
    http::Request<
        impl http_body::Body<Data = Bytes, Error = wasmtime_wasi_http::Error> + Send + 'static,
    >,
    Arc<RequestBodyFault>,
)
where
    B: http_body::Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<BoxError>,
{
    let (parts, body) = request.into_parts();
    let body = Limited::new(body, limit);
    let fault = Arc::new(RequestBodyFault {
        too_large: body.exceeded_flag(),
        unreadable: std::sync::OnceLock::new(),
    });
    let noted = fault.clone();
    let body = body.map_err(move |e| {
        if e.is::<BodyTooLarge>() {
            wasmtime_wasi_http::Error::HttpRequestBodySize(Some(limit))
        } else {
            let _ = noted.unreadable.set(crate::one_line_error(&*e));
            wasmtime_wasi_http::Error::HttpProtocolError
        }
    });
    (http::Request::from_parts(parts, body), fault)
}

/// How a guest that ran ended: finished, trapped, or ran out of time.
pub(crate) type Outcome = Result<wasmtime::Result<()>, tokio::time::error::Elapsed>;

/// How the guest's task ended: the guest ran, or could not be instantiated.
pub(crate) type TaskEnd = Result<Outcome, GuestError>;

/// Why a guest that produced no response failed.
fn failure_outcome(
    end: Result<TaskEnd, tokio::task::JoinError>,
    request_body: &RequestBodyFault,
    limits: &Limits,
) -> GuestError {
    if let Some(error) = request_body.error(limits) {
        return error;
    }
    match end {
        Ok(Ok(Ok(Ok(())))) => GuestError::NoResponse,
        Ok(Ok(Ok(Err(trap)))) => GuestError::Trap(trap.into()),
        Ok(Ok(Err(_elapsed))) => GuestError::Timeout(limits.request_timeout),
        Ok(Err(instantiation)) => instantiation,
        Err(join) => GuestError::Trap(anyhow::anyhow!("the guest's task failed: {join}")),
    }
}

/// Who reports a guest failure that happens after its response head was
/// returned (it can only cut the body short): the guest's task when it ends
/// after [`respond`] decided to stream its body, else `respond`. Nothing is
/// logged when the response was replaced by an error: the guest failing to
/// write into a dropped body is then expected. No extra task per request
/// waits for the guest just to do this.
pub(crate) struct AfterHead {
    component: Arc<str>,
    timeout: std::time::Duration,
    state: std::sync::Mutex<AfterHeadState>,
}

enum AfterHeadState {
    Undecided,
    Streaming,
    Replaced,
    /// The guest ended first; its failure, if it failed.
    Ended(Option<String>),
}

impl AfterHead {
    pub fn new(component: Arc<str>, timeout: std::time::Duration) -> Arc<Self> {
        Arc::new(Self {
            component,
            timeout,
            state: std::sync::Mutex::new(AfterHeadState::Undecided),
        })
    }

    /// The guest's task: how the guest ended.
    pub fn guest_ended(&self, outcome: &Outcome) {
        let failure = match outcome {
            Ok(Ok(())) => None,
            Ok(Err(trap)) => Some(format!(
                "guest failed while streaming its response: {}",
                crate::trap_reason(trap.root_cause())
            )),
            Err(_) => Some(format!(
                "guest exceeded the request timeout of {:?} while streaming its response",
                self.timeout
            )),
        };
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        match *state {
            AfterHeadState::Streaming => self.log(failure),
            AfterHeadState::Undecided => *state = AfterHeadState::Ended(failure),
            AfterHeadState::Replaced | AfterHeadState::Ended(_) => {}
        }
    }

    /// `respond`: whether the guest's body is streamed to the client.
    fn decided(&self, streaming: bool) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let previous = std::mem::replace(
            &mut *state,
            if streaming {
                AfterHeadState::Streaming
            } else {
                AfterHeadState::Replaced
            },
        );
        if let (true, AfterHeadState::Ended(failure)) = (streaming, previous) {
            self.log(failure);
        }
    }

    fn log(&self, failure: Option<String>) {
        if let Some(failure) = failure {
            tracing::error!(component = &*self.component, "{failure}");
        }
    }
}

/// Runs one request through a fresh instance. `guard` is dropped when the
/// guest finishes, which may be after the response head was returned.
pub(crate) async fn handle<B>(
    engine: &Engine,
    pre: &ProxyPre,
    sandbox: &Sandbox,
    limits: &Limits,
    request: http::Request<B>,
    guard: impl Send + 'static,
) -> Result<http::Response<ResponseBody>, GuestError>
where
    B: http_body::Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<BoxError>,
{
    let timeout = limits.request_timeout;
    let started = Instant::now();
    let log = request.extensions().get::<RequestLog>().cloned();
    let stats = request.extensions().get::<Arc<RequestStats>>().cloned();
    let (request, request_body) = limited_request(request, limits.max_request_body);

    let mut store = new_store(engine, sandbox, limits, log.as_ref(), stats.clone())
        .map_err(GuestError::Instantiation)?;

    let (tx, rx) = tokio::sync::oneshot::channel::<HeadResult>();
    let failed = Arc::new(AtomicBool::new(false));
    let after_head = AfterHead::new(sandbox.component.clone(), timeout);
    // Instantiation runs in the guest's task too: the instance is built,
    // run and torn down on one task, under one timeout.
    let pre = pre.clone();
    let task = {
        let failed = failed.clone();
        let after_head = after_head.clone();
        tokio::spawn(async move {
            let _guard = guard;
            let run = async {
                let instantiating = Instant::now();
                let proxy = match pre.instantiate(&mut store).await {
                    Ok(proxy) => proxy,
                    Err(e) => return Err(GuestError::from_instantiation(e.into())),
                };
                if let Some(stats) = &stats {
                    stats.instantiated(instantiating.elapsed());
                }
                let handled = async {
                    let data = store.data_mut();
                    let scheme = if request.uri().scheme() == Some(&http::uri::Scheme::HTTPS) {
                        Scheme::Https
                    } else {
                        Scheme::Http
                    };
                    let req = data.http().new_incoming_request(scheme, request)?;
                    let out = data
                        .http()
                        .new_response_outparam_from_callback(move |head| {
                            let _ = tx.send(head.map_err(|code| format!("{code:?}")));
                        })?;
                    proxy.handle(&mut store, req, out).await
                };
                Ok(handled.await)
            };
            let result = tokio::time::timeout(timeout.saturating_sub(started.elapsed()), run).await;
            let outcome = match result {
                Ok(Err(instantiation)) => {
                    failed.store(true, Ordering::Release);
                    return Err(instantiation);
                }
                Ok(Ok(handled)) => Ok(handled),
                Err(elapsed) => Err(elapsed),
            };
            let outcome = settle(outcome, &failed);
            drop(store);
            after_head.guest_ended(&outcome);
            Ok(outcome)
        })
    };
    respond(rx, task, failed, after_head, &request_body, limits).await
}

/// The response head a guest produced, or the wasi:http error code it
/// answered with instead.
pub(crate) type HeadResult =
    Result<http::Response<wasmtime_wasi_http::p2::body::HyperOutgoingBody>, String>;

/// Instantiates within the request's time limit.
pub(crate) async fn instantiate_within<T>(
    timeout: std::time::Duration,
    instantiate: impl Future<Output = wasmtime::Result<T>>,
) -> Result<T, GuestError> {
    match tokio::time::timeout(timeout, instantiate).await {
        Ok(Ok(instance)) => Ok(instance),
        Ok(Err(e)) => Err(GuestError::from_instantiation(e.into())),
        Err(_) => Err(GuestError::Timeout(timeout)),
    }
}

/// Records how a guest's run ended. Call it before the store is dropped: the
/// store's table holds the response body's sender, and the body must see the
/// failure flag by the time it ends.
pub(crate) fn settle(result: Outcome, failed: &AtomicBool) -> Outcome {
    if !matches!(result, Ok(Ok(()))) {
        failed.store(true, Ordering::Release);
    }
    result
}

/// Waits for the guest's response head and turns how the guest fared into
/// what the client gets.
pub(crate) async fn respond(
    head: tokio::sync::oneshot::Receiver<HeadResult>,
    task: tokio::task::JoinHandle<TaskEnd>,
    failed: Arc<AtomicBool>,
    after_head: Arc<AfterHead>,
    request_body: &RequestBodyFault,
    limits: &Limits,
) -> Result<http::Response<ResponseBody>, GuestError> {
    let response = match head.await {
        Ok(Ok(response)) => response,
        Ok(Err(code)) => {
            after_head.decided(false);
            return Err(GuestError::ErrorCode(code));
        }
        // The guest ended without producing a response: find out why.
        Err(_) => return Err(failure_outcome(task.await, request_body, limits)),
    };
    // The task runs on; it reports its own end through `after_head`.
    drop(task);
    let result = finish_response(response, request_body, limits, after_head.component.clone())
        .map(|response| response.map(|body| FailOnFlag::new(body, failed).boxed_unsync()));
    // Decided before the response is dropped: a replaced guest then fails
    // writing its body, and that must not be logged.
    after_head.decided(result.is_ok());
    result
}

/// Checks a guest's response head against the limits and wraps its body in
/// the response size limit.
fn finish_response(
    response: http::Response<wasmtime_wasi_http::p2::body::HyperOutgoingBody>,
    request_body: &RequestBodyFault,
    limits: &Limits,
    component: Arc<str>,
) -> Result<http::Response<ResponseBody>, GuestError> {
    if let Some(error) = request_body.error(limits) {
        return Err(error);
    }
    // No limit set: streaming holds a chunk at a time, so nothing is cut.
    let Some(response_limit) = limits.max_response_body else {
        return Ok(response.map(|body| body.map_err(BoxError::from).boxed_unsync()));
    };
    let declared = response
        .headers()
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > response_limit) {
        return Err(GuestError::ResponseTooLarge(response_limit));
    }
    Ok(response.map(move |body| {
        Limited::new(body.map_err(BoxError::from), response_limit)
            .on_exceeded(move || {
                tracing::error!(
                    component = &*component,
                    "response body exceeded the limit of {response_limit} bytes; the response was cut short"
                )
            })
            .boxed_unsync()
    }))
}
