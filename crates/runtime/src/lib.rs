//! Ferry's runtime: compiles guests once, then runs every request in a fresh
//! sandbox.
//!
//! [`Runtime`] owns the wasmtime engine, the compile cache and the linkers.
//! [`Runtime::load`] turns one manifest component into a [`Guest`]: compiled
//! (or loaded from the cache), its imports resolved, its capabilities
//! prepared. [`Guest::handle`] then serves one HTTP request in a new store
//! and instance, under the component's [`Limits`].
//!
//! This crate knows nothing of routing: the server decides which guest gets a
//! request and passes what the guest must know about the route in
//! [`RequestInfo`].

mod adapt;
mod body;
mod cache;
mod chain;
mod command;
pub mod compose;
mod engine;
mod events;
mod files;
mod http;
mod key_value;
mod mqtt;
mod mysql;
mod outbound;
mod postgres;
mod rdbms;
mod redis;
mod sandbox;
mod sqlite;
mod unavailable;
mod variables;
mod wagi;
mod wasi_2023_10_18;
mod wasi_http_p3;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use ferry_manifest::{Component, ComponentVariables, Executor, WagiConfig};
use wasmtime::Engine;

pub use body::{BodyTooLarge, BoxError, Limited, ResponseBody};
pub use cache::{CompileCache, CompileStats};
pub use chain::{Chain, Chained, MAX_CHAIN_DEPTH};
pub use command::{PIPE_BUFFER, StageEnd, pipeline};
pub use engine::{EPOCH_TICK, EngineOptions};
pub use events::{Event, EventExport};
pub use ferry_manifest::Limits;
pub use mqtt::broker_options;
pub use redis::{RedisStream, frames as redis_frames, redis_address, redis_endpoint, redis_stream};
pub use sandbox::{MAX_LOG_LINES_PER_REQUEST, RequestLog, RequestStats};
/// The CGI response parser, for the fuzz targets and their corpus test.
#[doc(hidden)]
pub use wagi::parse_cgi_response;

/// One engine's instance pool: what is alive in it, and how many component
/// instances it holds at most.
#[derive(Debug, Clone, Copy)]
pub struct PoolUsage {
    pub engine: &'static str,
    pub component_instances: u64,
    /// Core instances: a WAGI module's, and those inside components.
    pub core_instances: u64,
    pub memories: u64,
    pub capacity: u64,
}

/// The engines and everything shared by all guests.
pub struct Runtime {
    options: EngineOptions,
    engine: Engine,
    cache: CompileCache,
    http_linker: wasmtime::component::Linker<http::HttpState>,
    wagi_linker: wasmtime::Linker<wagi::WagiState>,
    _epoch: engine::EpochTicker,
    /// The engine for WASI 0.3 guests, made when the first one is loaded.
    p3: std::sync::OnceLock<P3Engine>,
    /// Listeners no guest may connect to (see [`Runtime::forbid_outbound_to`]).
    forbidden: Arc<outbound::ForbiddenAddrs>,
}

struct P3Engine {
    engine: Engine,
    linker: wasmtime::component::Linker<http::HttpState>,
    _epoch: engine::EpochTicker,
}

/// A component ready to serve requests.
pub struct Guest {
    id: Arc<str>,
    engine: Engine,
    kind: GuestKind,
    sandbox: sandbox::Sandbox,
    limits: Limits,
    info: GuestInfo,
}

enum GuestKind {
    Http(http::ProxyPre),
    HttpP3(wasmtime_wasi_http::p3::bindings::ServicePre<http::HttpState>),
    Wagi(wasmtime::InstancePre<wagi::WagiState>, WagiConfig),
    Event(events::EventPre),
    Command(command::CommandPre),
}

/// What a component's guests may reach beyond WASI, made once when the app
/// loads and shared by every sandbox of the component: each store borrows it.
#[derive(Default)]
pub struct ComponentContext {
    /// Its variables, resolved.
    pub variables: ComponentVariables,
    /// The key-value stores it was granted, by label.
    pub key_value: std::collections::BTreeMap<String, Arc<dyn ferry_store::KeyValue>>,
    /// The SQLite databases it was granted, by label.
    pub sqlite: std::collections::BTreeMap<String, Arc<ferry_store::SqlDatabase>>,
    /// How its Wasm was composed with its dependencies and middleware (what
    /// they are denied among it), if it was.
    pub composition: compose::Composition,
}

/// What loading a guest found, for `ferry up` and `ferry check` to print.
#[derive(Debug, Clone)]
pub struct GuestInfo {
    pub wasm_bytes: u64,
    pub compile: CompileStats,
    /// Imported interfaces (components) or modules (core modules), sorted.
    pub imports: Vec<String>,
    /// The wasi:http interface the component exports and Ferry serves, with
    /// its version as the component names it.
    pub serves: Option<String>,
    /// What Ferry did to the bytes before compiling them, if anything.
    pub adapted: Option<&'static str>,
    /// Imports of Spin's interfaces that Ferry links but does not provide:
    /// every call answers with the interface's "not available" error.
    pub unsupported: Vec<String>,
    /// Its composition with dependencies and middleware, described.
    pub composition: Vec<String>,
}

/// What a guest is told about the request beyond the request itself.
#[derive(Debug, Clone)]
pub struct RequestInfo {
    pub client_addr: SocketAddr,
    pub server_name: String,
    pub server_port: u16,
    /// The full URL the client asked for.
    pub full_url: String,
    /// The concrete path prefix the route matched (CGI's `SCRIPT_NAME`).
    pub script_name: String,
    /// The rest of the path, raw (undecoded), with a leading `/` or empty.
    pub path_info: String,
    /// The matched pattern, base included (`/api/users/:id`).
    pub matched_route: String,
    /// The route as written, without `/...`.
    pub component_route: String,
    /// The route as written.
    pub raw_component_route: String,
    pub base_path: String,
}

/// Why a guest did not produce a response. Each maps to a status code; the
/// message is for the log, never for the client.
#[derive(Debug)]
pub enum GuestError {
    /// The guest trapped: a panic, `unreachable`, out of memory, stack
    /// overflow, a failed host call.
    Trap(anyhow::Error),
    Timeout(Duration),
    /// The handler returned without setting a response.
    NoResponse,
    /// The guest answered with a wasi:http error code.
    ErrorCode(String),
    BadCgiOutput(String),
    ResponseTooLarge(u64),
    RequestBodyTooLarge(u64),
    BadRequest(String),
    /// No instance slot was free: the host is at its concurrency limit.
    Busy,
    Instantiation(anyhow::Error),
}

impl GuestError {
    /// An instantiation failure: [`Busy`](Self::Busy) when the instance
    /// pool (or one of its memory, table or stack pools) is full.
    pub(crate) fn from_instantiation(e: anyhow::Error) -> Self {
        if e.chain()
            .any(|c| c.is::<wasmtime::PoolConcurrencyLimitError>())
        {
            Self::Busy
        } else {
            Self::Instantiation(e)
        }
    }

    /// What failed, as a metric's label: one word per kind of failure.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Trap(e) => {
                if e.chain().any(|c| {
                    c.downcast_ref::<wasmtime::Trap>() == Some(&wasmtime::Trap::StackOverflow)
                }) {
                    "stack_overflow"
                } else {
                    "trap"
                }
            }
            Self::Timeout(_) => "timeout",
            Self::NoResponse => "no_response",
            Self::ErrorCode(_) => "error_code",
            Self::BadCgiOutput(_) => "bad_cgi_output",
            Self::ResponseTooLarge(_) => "response_too_large",
            Self::RequestBodyTooLarge(_) => "body_too_large",
            Self::BadRequest(_) => "bad_request",
            Self::Busy => "rejected",
            Self::Instantiation(_) => "instantiation",
        }
    }

    pub fn status(&self) -> ::http::StatusCode {
        use ::http::StatusCode as S;
        match self {
            Self::Timeout(_) => S::GATEWAY_TIMEOUT,
            Self::RequestBodyTooLarge(_) => S::PAYLOAD_TOO_LARGE,
            Self::BadRequest(_) => S::BAD_REQUEST,
            Self::Busy => S::SERVICE_UNAVAILABLE,
            Self::Trap(_)
            | Self::NoResponse
            | Self::ErrorCode(_)
            | Self::BadCgiOutput(_)
            | Self::ResponseTooLarge(_)
            | Self::Instantiation(_) => S::INTERNAL_SERVER_ERROR,
        }
    }
}

impl std::fmt::Display for GuestError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Trap(e) => write!(f, "guest trapped: {}", trap_reason(e.root_cause())),
            Self::Timeout(t) => write!(f, "guest exceeded the request timeout of {t:?}"),
            Self::NoResponse => f.write_str("guest returned without setting a response"),
            Self::ErrorCode(code) => write!(f, "guest answered with error {code}"),
            Self::BadCgiOutput(why) => write!(f, "malformed CGI output: {why}"),
            Self::ResponseTooLarge(limit) => {
                write!(f, "response body larger than the limit of {limit} bytes")
            }
            Self::RequestBodyTooLarge(limit) => {
                write!(f, "request body larger than the limit of {limit} bytes")
            }
            Self::BadRequest(why) => write!(f, "bad request: {why}"),
            Self::Busy => f.write_str("no instance slot free"),
            Self::Instantiation(e) => write!(f, "cannot instantiate: {}", one_line(e)),
        }
    }
}

impl std::error::Error for GuestError {}

/// What a trap was, on one line and without wasmtime's backtrace: pass the
/// last error in the chain
/// (`wasm trap: wasm `unreachable` instruction executed`).
pub(crate) fn trap_reason(root_cause: &dyn std::fmt::Display) -> String {
    root_cause.to_string().replace('\n', " | ")
}

/// What WASI 0.3 interfaces hand a guest for many items: a stream of them,
/// and a future saying how their reading ended.
pub(crate) type Streamed<T, E> = (
    wasmtime::component::StreamReader<T>,
    wasmtime::component::FutureReader<Result<(), E>>,
);

/// The most a store may hold of results read whole that its guest has not
/// read yet (all its SQLite, MySQL and key-value streams together), so
/// that a guest that starts queries and never reads them cannot pile them
/// up. (A result is charged once read whole: queries still running hold
/// what they read so far, each up to its own cap.)
pub const MAX_UNREAD_BYTES: usize = 64 << 20;

/// What one store holds of results its guest has not read yet.
#[derive(Default, Clone)]
pub(crate) struct Unread(std::sync::Arc<std::sync::atomic::AtomicUsize>);

impl Unread {
    /// Holds `bytes` more, if that keeps within [`MAX_UNREAD_BYTES`].
    fn hold(&self, bytes: usize) -> Result<Held, String> {
        use std::sync::atomic::Ordering;
        self.0
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
                held.checked_add(bytes).filter(|&h| h <= MAX_UNREAD_BYTES)
            })
            .map_err(|held| {
                format!(
                    "this result ({bytes} bytes) and those not read yet ({held} bytes) are over Ferry's limit of {MAX_UNREAD_BYTES} bytes held for a guest: read or drop a result before the next"
                )
            })?;
        Ok(Held {
            unread: self.0.clone(),
            bytes,
        })
    }
}

/// Bytes held for a guest, let go when dropped.
struct Held {
    unread: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    bytes: usize,
}

impl Drop for Held {
    fn drop(&mut self) {
        self.unread
            .fetch_sub(self.bytes, std::sync::atomic::Ordering::AcqRel);
    }
}

/// An item's size as held in the host, roughly.
pub(crate) trait HeldSize {
    fn held_size(&self) -> usize;
}

impl HeldSize for String {
    fn held_size(&self) -> usize {
        24 + self.len()
    }
}

/// Items read whole, handed to a guest as [`Streamed`] (a failure comes
/// with no item) as it reads them, counted against its store's [`Unread`]
/// until read or dropped. `Ok(Err(why))` when that is over
/// [`MAX_UNREAD_BYTES`]: the interface's own error, in the caller's words.
pub(crate) fn read_whole<S, T, E>(
    mut store: S,
    unread: &Unread,
    items: Vec<T>,
    outcome: Result<(), E>,
) -> wasmtime::Result<Result<Streamed<T, E>, String>>
where
    S: wasmtime::AsContextMut,
    T: HeldSize
        + wasmtime::component::Lower
        + wasmtime::component::Lift
        + Send
        + Sync
        + Unpin
        + 'static,
    E: wasmtime::component::Lower + wasmtime::component::Lift + Send + Sync + 'static,
{
    let bytes = items.iter().map(HeldSize::held_size).sum();
    let held = match unread.hold(bytes) {
        Ok(held) => held,
        Err(why) => return Ok(Err(why)),
    };
    let items = wasmtime::component::StreamReader::new(
        &mut store,
        HeldItems {
            items: items.into(),
            _held: held,
        },
    )?;
    let outcome = wasmtime::component::FutureReader::new(
        &mut store,
        std::future::ready(Ok::<_, wasmtime::Error>(outcome)),
    )?;
    Ok(Ok((items, outcome)))
}

/// Items handed over as the guest reads them, as many as each read takes;
/// what they hold is let go once all are handed over or the guest drops
/// the stream.
struct HeldItems<T> {
    items: std::collections::VecDeque<T>,
    _held: Held,
}

impl<T: Send + Sync + Unpin + 'static, D> wasmtime::component::StreamProducer<D> for HeldItems<T> {
    type Item = T;
    type Buffer = wasmtime::component::VecBuffer<T>;

    fn poll_produce<'a>(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        mut store: wasmtime::StoreContextMut<'a, D>,
        mut destination: wasmtime::component::Destination<'a, Self::Item, Self::Buffer>,
        _: bool,
    ) -> std::task::Poll<wasmtime::Result<wasmtime::component::StreamResult>> {
        use wasmtime::component::StreamResult;
        let me = self.get_mut();
        let room = destination
            .remaining(&mut store)
            .unwrap_or(usize::MAX)
            .min(me.items.len());
        let batch: Vec<T> = me.items.drain(..room).collect();
        destination.set_buffer(batch.into());
        std::task::Poll::Ready(Ok(if me.items.is_empty() {
            StreamResult::Dropped
        } else {
            StreamResult::Completed
        }))
    }
}

/// An error chain on one line, for log lines.
pub(crate) fn one_line(e: &anyhow::Error) -> String {
    format!("{e:#}").replace('\n', " | ")
}

/// A plain error and its sources on one line (`a: b: c`), for log lines.
pub(crate) fn one_line_error(e: &(dyn std::error::Error + 'static)) -> String {
    let mut line = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let cause = cause.to_string();
        // Some errors repeat their source in their own message.
        if !line.ends_with(&cause) {
            line.push_str(": ");
            line.push_str(&cause);
        }
        source = source.and_then(std::error::Error::source);
    }
    line.replace('\n', " | ")
}

impl Runtime {
    pub fn new(options: &EngineOptions, cache: CompileCache) -> anyhow::Result<Self> {
        // `SSL_CERT_FILE` is read now, not in a guest's first TLS call.
        outbound::trusted_roots();
        let engine = engine::build_engine(options, false).context("configuring wasmtime")?;
        Ok(Self {
            options: options.clone(),
            http_linker: http::linker(&engine)?,
            wagi_linker: wagi::linker(&engine)?,
            _epoch: engine::EpochTicker::start(&engine),
            engine,
            cache,
            p3: std::sync::OnceLock::new(),
            forbidden: Arc::default(),
        })
    }

    /// Keeps every guest of this runtime, whatever its
    /// `allowed_outbound_hosts`, from connecting to `listener` (`ferry
    /// serve`'s admin listener): by any name or address that reaches it,
    /// including, for a listener on `0.0.0.0` or `::`, each of this
    /// machine's addresses. Guests loaded before the call are kept from it
    /// too. A refused request gets the guest the same denial as a host
    /// outside its grants, and logs why.
    pub fn forbid_outbound_to(&self, listener: SocketAddr) {
        self.forbidden.add(listener);
    }

    fn p3(&self) -> anyhow::Result<&P3Engine> {
        if let Some(p3) = self.p3.get() {
            return Ok(p3);
        }
        let engine = engine::build_engine(&self.options, true)
            .context("configuring wasmtime for WASI 0.3")?;
        let p3 = P3Engine {
            linker: wasi_http_p3::linker(&engine)?,
            _epoch: engine::EpochTicker::start(&engine),
            engine,
        };
        Ok(self.p3.get_or_init(|| p3))
    }

    /// The settings the engine was made with.
    pub fn options(&self) -> &EngineOptions {
        &self.options
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// What each engine's instance pool holds now: the WASI 0.2 engine's,
    /// and the WASI 0.3 one's once a 0.3 component was loaded.
    pub fn pools(&self) -> Vec<PoolUsage> {
        let usage = |engine: &'static str, e: &Engine| {
            e.pooling_allocator_metrics().map(|m| PoolUsage {
                engine,
                component_instances: m.component_instances(),
                core_instances: m.core_instances(),
                memories: m.memories() as u64,
                capacity: u64::from(self.options.max_instances.max(1)),
            })
        };
        usage("wasi-0.2", &self.engine)
            .into_iter()
            .chain(self.p3.get().and_then(|p3| usage("wasi-0.3", &p3.engine)))
            .collect()
    }

    /// Compiles (or loads from the cache) and prepares one component, whose
    /// Wasm is `wasm` (read or downloaded from `component.source` by the
    /// caller). `app_dir` resolves `files`; `self_addr` is what `http://self`
    /// reaches. `context` is what the component may reach beyond WASI.
    #[allow(clippy::too_many_arguments)]
    pub fn load(
        &self,
        component: &Component,
        context: ComponentContext,
        wasm: &[u8],
        executor: &Executor,
        limits: Limits,
        app_dir: &Path,
        self_addr: Option<SocketAddr>,
    ) -> anyhow::Result<Guest> {
        let is_component = wasmparser::Parser::is_component(wasm);
        let is_module = wasmparser::Parser::is_core_wasm(wasm);
        anyhow::ensure!(
            is_component || is_module,
            "{} is not a WebAssembly file",
            component.source
        );
        // What the component imports and exports: its own names, or those
        // a core module's metadata gives it once componentized (a WAGI
        // module stays a module).
        let (adaptation, top) = match executor {
            Executor::Wagi(_) => {
                anyhow::ensure!(
                    is_module,
                    "{} is a component, but the `wagi` executor needs a WASI preview 1 command module",
                    component.source
                );
                (adapt::Adaptation::None, None)
            }
            Executor::Http
            | Executor::InboundRedis
            | Executor::Cron
            | Executor::Mqtt
            | Executor::Command => {
                let http = *executor == Executor::Http;
                let top = adapt::TopLevel::read(wasm)
                    .with_context(|| format!("cannot read {}", component.source))?;
                let adaptation =
                    adapt::Adaptation::for_component(&top, http).with_context(|| {
                        let verb = if http { "serve" } else { "run" };
                        format!("cannot {verb} {}", component.source)
                    })?;
                (adaptation, Some(top))
            }
        };
        // A renamed WASI 0.3 candidate still names `wasi:http/handler@0.3…`;
        // spin-sdk 6+'s Redis entry point is async too, and so is the MQTT
        // plugin's from its 0.8 release.
        let wasi_03 = match &top {
            None => false,
            Some(top) => {
                top.exports_wasi_http_03()
                    || (*executor == Executor::InboundRedis
                        && top.exports.iter().any(|e| e == events::INBOUND_REDIS_3))
                    || (*executor == Executor::Command && command::is_wasi_03(&top.exports))
                    || (*executor == Executor::Mqtt
                        && top
                            .exports_async_func(wasm, EventExport::Mqtt.name())
                            .with_context(|| format!("cannot read {}", component.source))?)
            }
        };
        let engine = if wasi_03 {
            &self.p3()?.engine
        } else {
            &self.engine
        };
        let (compiled, compile) = self
            .cache
            .load_or_compile(engine, wasm, adaptation)
            .with_context(|| format!("compiling {}", component.source))?;
        let (kind, imports, serves) = match (compiled, executor) {
            (cache::Compiled::Component(c), _) => {
                let ty = c.component_type();
                let mut imports: Vec<String> = ty
                    .imports(engine)
                    .map(|(name, _)| name.to_owned())
                    .collect();
                imports.sort();
                let exports: Vec<String> = ty
                    .exports(engine)
                    .map(|(name, _)| name.to_owned())
                    .collect();
                let base = if wasi_03 {
                    &self.p3()?.linker
                } else {
                    &self.http_linker
                };
                // Spin's interfaces that Ferry lacks, linked for this
                // component only if it imports them.
                let extended = unavailable::linker_for(base, engine, &c, &context.composition)?;
                let linker = extended.as_ref().unwrap_or(base);
                let event = match executor {
                    Executor::InboundRedis => Some(EventExport::InboundRedis),
                    Executor::Cron => Some(EventExport::Cron),
                    Executor::Mqtt => Some(EventExport::Mqtt),
                    Executor::Http | Executor::Wagi(_) | Executor::Command => None,
                };
                let kind = if matches!(executor, Executor::InboundRedis | Executor::Mqtt) && wasi_03
                {
                    let export = event.expect("an event executor");
                    events::pre(linker, &c, &exports, export)
                        .map(GuestKind::Event)
                        .with_context(|| format!("cannot run {}", component.source))?
                } else if *executor == Executor::Command {
                    anyhow::ensure!(
                        !exports
                            .iter()
                            .any(|e| e.starts_with("wasi:http/handler@0.3")),
                        "{} exports WASI 0.3's HTTP handler; a `command` trigger runs wasi:cli/run",
                        component.source
                    );
                    command::pre(linker, &c, &exports)
                        .map(GuestKind::Command)
                        .with_context(|| format!("cannot run {}", component.source))?
                } else if let Some(export) = event {
                    anyhow::ensure!(
                        !wasi_03,
                        "{} exports WASI 0.3's HTTP handler; a `{}` trigger calls {}",
                        component.source,
                        export.trigger(),
                        export.name()
                    );
                    events::pre(linker, &c, &exports, export)
                        .map(GuestKind::Event)
                        .with_context(|| format!("cannot run {}", component.source))?
                } else if wasi_03 {
                    wasi_http_p3::pre(linker, &c)
                        .map(GuestKind::HttpP3)
                        .with_context(|| not_served(&exports))?
                } else {
                    http::pre(linker, &c, &exports)
                        .map(GuestKind::Http)
                        .with_context(|| not_served(&exports))?
                };
                let serves = match &kind {
                    GuestKind::Event(pre) => Some(pre.export_name().to_owned()),
                    GuestKind::Command(pre) => {
                        let run = match pre {
                            command::CommandPre::P2(_) => command::RUN,
                            command::CommandPre::P3(_) => command::RUN_03,
                        };
                        exports.iter().find(|e| e.starts_with(run)).cloned()
                    }
                    _ => exports
                        .iter()
                        .find(|e| e.starts_with("wasi:http/"))
                        .cloned(),
                };
                (kind, imports, serves)
            }
            (cache::Compiled::Module(m), Executor::Wagi(config)) => {
                let mut imports: Vec<String> = m.imports().map(|i| i.module().to_owned()).collect();
                imports.sort();
                imports.dedup();
                let pre = wagi::pre(&self.wagi_linker, &m, config)?;
                (GuestKind::Wagi(pre, config.clone()), imports, None)
            }
            (cache::Compiled::Module(_), _) => {
                unreachable!("only the wagi executor compiles a core module")
            }
        };
        let unsupported = imports
            .iter()
            .filter(|name| unavailable::linked_unsupported(name))
            .cloned()
            .collect();
        let composition = context.composition.describe();
        let sandbox = sandbox::Sandbox::prepare(
            component,
            context,
            app_dir,
            self_addr,
            self.forbidden.clone(),
            &self.options,
        )?;
        Ok(Guest {
            id: component.id.as_str().into(),
            engine: engine.clone(),
            kind,
            sandbox,
            limits,
            info: GuestInfo {
                wasm_bytes: wasm.len() as u64,
                compile,
                imports,
                serves,
                adapted: adaptation.describe(),
                unsupported,
                composition,
            },
        })
    }
}

/// Why a compiled component cannot be served, from what it exports: the
/// wrong export, or (when the export is one Ferry serves) imports that do
/// not link — the cause beneath says which.
fn not_served(exports: &[String]) -> String {
    let served = exports.iter().any(|e| {
        (e.starts_with("wasi:http/incoming-handler@0.2.") && !e.contains("-rc-"))
            || e == wasi_2023_10_18::INCOMING_HANDLER
            || e == "wasi:http/handler@0.3.0"
    });
    if served {
        return "the component's imports cannot all be linked".to_owned();
    }
    const SERVED: &str = "Ferry serves wasi:http/incoming-handler@0.2.x (also 0.2.0-rc-2023-10-18) and wasi:http/handler@0.3.0 (also 0.3.0-rc-2026-03-15)";
    match exports
        .iter()
        .find(|e| e.starts_with("wasi:http/incoming-handler@0.2.0-rc-"))
    {
        Some(export) => format!(
            "the component exports {export}, a release candidate of WASI 0.2 that Ferry does not serve; {SERVED}"
        ),
        None => format!(
            "the component does not fit Ferry's wasi:http host: it exports {}; {SERVED}",
            if exports.is_empty() {
                "nothing".to_owned()
            } else {
                exports.join(", ")
            }
        ),
    }
}

impl Guest {
    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    pub fn info(&self) -> &GuestInfo {
        &self.info
    }

    /// Serves one request in a fresh sandbox. `guard` is held until the guest
    /// has finished, including any body it streams after the response head.
    /// `info` is called only for guests that read it (WAGI).
    pub async fn handle<B>(
        &self,
        request: ::http::Request<B>,
        info: impl FnOnce() -> RequestInfo,
        guard: impl Send + 'static,
    ) -> Result<::http::Response<ResponseBody>, GuestError>
    where
        B: http_body::Body<Data = Bytes> + Send + Unpin + 'static,
        B::Error: Into<BoxError>,
    {
        match &self.kind {
            GuestKind::Http(pre) => {
                http::handle(
                    &self.engine,
                    pre,
                    &self.sandbox,
                    &self.limits,
                    request,
                    guard,
                )
                .await
            }
            GuestKind::HttpP3(pre) => {
                wasi_http_p3::handle(
                    &self.engine,
                    pre,
                    &self.sandbox,
                    &self.limits,
                    request,
                    guard,
                )
                .await
            }
            GuestKind::Event(pre) => {
                let _guard = guard;
                Err(GuestError::BadRequest(format!(
                    "component `{}` runs on {} events, not HTTP requests",
                    self.id,
                    pre.export().name()
                )))
            }
            GuestKind::Command(_) => {
                let _guard = guard;
                Err(GuestError::BadRequest(format!(
                    "component `{}` is a command, not an HTTP handler",
                    self.id
                )))
            }
            GuestKind::Wagi(pre, config) => {
                let _guard = guard;
                wagi::handle(
                    &self.engine,
                    pre,
                    config,
                    &self.sandbox,
                    &self.limits,
                    request,
                    &info(),
                )
                .await
            }
        }
    }
}

impl Guest {
    /// Runs one event (a message, a cron tick) in a fresh sandbox, under
    /// the component's limits. `log` says which invocation the guest's
    /// output lines belong to; `stats` collects what it cost.
    pub async fn invoke(
        &self,
        event: Event,
        log: Option<&RequestLog>,
        stats: Option<Arc<RequestStats>>,
    ) -> Result<(), GuestError> {
        match &self.kind {
            GuestKind::Event(pre) => {
                events::invoke(
                    &self.engine,
                    pre,
                    &self.sandbox,
                    &self.limits,
                    event,
                    log,
                    stats,
                )
                .await
            }
            _ => Err(GuestError::BadRequest(format!(
                "component `{}` serves HTTP requests, not events",
                self.id
            ))),
        }
    }

    /// The first of `addrs` that reaches a host listener no guest of this
    /// runtime may connect to (the admin API's), with that listener: for
    /// connections made on an app's behalf, such as its triggers'
    /// subscriptions.
    pub fn forbidden_listener(&self, addrs: &[SocketAddr]) -> Option<(SocketAddr, SocketAddr)> {
        self.sandbox.outbound.forbidden.first_reached(addrs)
    }

    /// The export an event trigger calls, if this guest runs on events.
    pub fn event_export(&self) -> Option<EventExport> {
        match &self.kind {
            GuestKind::Event(pre) => Some(pre.export()),
            _ => None,
        }
    }

    /// Sends this guest's chained requests (`http://<id>.spin.internal`)
    /// to `chain`, the app that serves it (`chain.rs`).
    pub fn chain_to(&self, chain: std::sync::Weak<dyn Chain>) {
        self.sandbox.outbound.chain.set(chain);
    }

    /// Whether this guest is a command (`[[trigger.command]]`).
    pub fn is_command(&self) -> bool {
        matches!(self.kind, GuestKind::Command(_))
    }

    /// Runs the command once with `args` (after its name) and the
    /// terminal's stdio; its exit status.
    pub async fn run_command(&self, args: &[String]) -> Result<i32, GuestError> {
        self.run_command_with(args, None, None).await
    }

    /// [`run_command`](Self::run_command) reading `stdin` and writing
    /// `stdout` instead of the terminal's ([`pipeline`]).
    pub async fn run_command_with(
        &self,
        args: &[String],
        stdin: Option<tokio::io::DuplexStream>,
        stdout: Option<tokio::io::DuplexStream>,
    ) -> Result<i32, GuestError> {
        let GuestKind::Command(pre) = &self.kind else {
            return Err(GuestError::BadRequest(format!(
                "component `{}` is not a command",
                self.id
            )));
        };
        let mut argv = vec![self.id.to_string()];
        argv.extend_from_slice(args);
        command::run(
            &self.engine,
            pre,
            &self.sandbox,
            &self.limits,
            &argv,
            stdin,
            stdout,
        )
        .await
    }
}
