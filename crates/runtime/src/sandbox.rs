//! What a guest may see and do: the capabilities the manifest granted, turned
//! into a WASI context per request.
//!
//! Deny by default: a context starts with no environment, no preopened
//! directories, no sockets and no outbound HTTP. Only what a component's
//! manifest entry lists is added, and files are always read-only. A guest's
//! stdout and stderr become host log lines with their control characters
//! escaped; where its outbound requests may connect is `outbound.rs`'s
//! business.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use anyhow::Context as _;
use bytes::{Bytes, BytesMut};
use ferry_manifest::{AllowedOutboundHosts, Component};

use crate::ComponentContext;
use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError};
use wasmtime_wasi::{FsPerms, WasiCtxBuilder};

use crate::files;
use crate::outbound::ForbiddenAddrs;

/// Everything a component was granted, prepared once at load.
pub(crate) struct Sandbox {
    pub component: Arc<str>,
    env: Vec<(String, String)>,
    /// (host directory, guest path), mounted read-only.
    mounts: Vec<(PathBuf, String)>,
    /// Holds the copies of files matched by `files` globs; removed on drop.
    _staged: Option<tempfile::TempDir>,
    /// The directories mounted in place, held open for `mounts`.
    _pinned: Vec<std::fs::File>,
    pub outbound: Arc<OutboundPolicy>,
    /// What the component reaches beyond WASI (variables, stores).
    pub context: Arc<ComponentContext>,
    /// Its outbound Redis connections, by address.
    pub redis: Arc<crate::redis::RedisPool>,
    /// Its outbound PostgreSQL sessions kept between requests.
    pub postgres: Arc<crate::postgres::PostgresPool>,
    /// Its outbound MySQL sessions, counted.
    pub mysql: Arc<crate::rdbms::Sessions>,
}

/// `allowed_outbound_hosts` plus what `self` means for this app, and the
/// runtime's listeners no guest may connect to, whatever it was granted.
#[derive(Debug)]
pub struct OutboundPolicy {
    pub component: Arc<str>,
    pub allowed: AllowedOutboundHosts,
    /// The app's own listener, for `http://self`.
    pub self_addr: Option<SocketAddr>,
    /// The runtime's (the host's admin listener, on `ferry serve`).
    pub forbidden: Arc<ForbiddenAddrs>,
    /// Where `http://<component>.spin.internal` goes (`chain.rs`).
    pub chain: crate::chain::ChainLink,
}

impl Sandbox {
    pub fn prepare(
        component: &Component,
        context: ComponentContext,
        app_dir: &Path,
        self_addr: Option<SocketAddr>,
        forbidden: Arc<ForbiddenAddrs>,
        options: &crate::EngineOptions,
    ) -> anyhow::Result<Self> {
        let id: Arc<str> = component.id.as_str().into();
        let files = files::prepare(component, app_dir, options)
            .with_context(|| format!("preparing `files` of component `{id}`"))?;
        Ok(Self {
            component: id.clone(),
            env: component.environment.clone(),
            mounts: files.mounts,
            _staged: files.staged,
            _pinned: files.pinned,
            outbound: Arc::new(OutboundPolicy {
                component: id,
                allowed: component.allowed_outbound_hosts.clone(),
                self_addr,
                forbidden,
                chain: crate::chain::ChainLink::default(),
            }),
            context: Arc::new(context),
            redis: Arc::default(),
            postgres: Arc::default(),
            mysql: Arc::default(),
        })
    }

    /// A WASI context with exactly this component's grants. Guest stdout and
    /// stderr go to the host log, each line with the request's app, route
    /// and id (`request`, where the server gave them); the caller may
    /// replace stdio (WAGI does).
    pub fn wasi_builder(&self, request: Option<&RequestLog>) -> anyhow::Result<WasiCtxBuilder> {
        let mut builder = WasiCtxBuilder::new();
        builder.envs(&self.env);
        for (host, guest) in &self.mounts {
            builder
                .preopened_dir(host, guest, FsPerms::ReadOnly)
                .map_err(anyhow::Error::from)
                .with_context(|| format!("opening {} for the guest", host.display()))?;
        }
        let budget = Arc::new(LogBudget::default());
        let log = |stream| GuestLog {
            component: self.component.clone(),
            stream,
            request: request.cloned(),
            budget: budget.clone(),
        };
        builder.stdout(log("stdout"));
        builder.stderr(log("stderr"));
        Ok(builder)
    }
}

/// Which request a guest's output belongs to, as its log lines say: put in
/// the request's extensions by the server, read when its sandbox is made.
#[derive(Debug, Clone)]
pub struct RequestLog {
    pub app: Arc<str>,
    /// Which life of the app: an app deleted and deployed again under the
    /// same name starts a new one, so a line the old one writes late is not
    /// taken for the new one's.
    pub incarnation: u64,
    /// The route as declared (with its base).
    pub route: Arc<str>,
    pub request_id: Arc<str>,
    /// The request's span as a W3C `traceparent`, where traces are on: sent
    /// with the guest's outbound requests that carry none of their own.
    pub traceparent: Option<Arc<str>>,
    /// How deep in a chain of requests this one is (`chain.rs`): 0 for a
    /// routed request.
    pub chain_depth: u32,
}

/// What one request cost its sandbox, filled in by the runtime as the guest
/// runs: put in the request's extensions by the server (an `Arc` of it),
/// read when the response has ended.
#[derive(Debug, Default)]
pub struct RequestStats {
    instantiate_ns: std::sync::atomic::AtomicU64,
    /// When instantiation ended, in ns since the Unix epoch.
    instantiated_unix_ns: std::sync::atomic::AtomicU64,
    linear_memory: std::sync::atomic::AtomicU64,
    peak_memory: std::sync::atomic::AtomicU64,
    memory_denied: std::sync::atomic::AtomicBool,
}

impl RequestStats {
    /// How long making the instance took, if one was made.
    pub fn instantiation(&self) -> Option<std::time::Duration> {
        match self
            .instantiate_ns
            .load(std::sync::atomic::Ordering::Relaxed)
        {
            0 => None,
            ns => Some(std::time::Duration::from_nanos(ns)),
        }
    }

    /// The most linear memory the instance had at once, all its memories
    /// together, in bytes.
    pub fn peak_memory(&self) -> u64 {
        self.peak_memory.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Whether the guest asked for memory beyond its `max_memory` (and was
    /// refused): a trap after it is the guest running out of memory.
    pub fn memory_denied(&self) -> bool {
        self.memory_denied
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// When the instance was ready, if one was made.
    pub fn instantiated_at(&self) -> Option<std::time::SystemTime> {
        match self
            .instantiated_unix_ns
            .load(std::sync::atomic::Ordering::Relaxed)
        {
            0 => None,
            ns => Some(std::time::UNIX_EPOCH + std::time::Duration::from_nanos(ns)),
        }
    }

    pub(crate) fn instantiated(&self, took: std::time::Duration) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        self.instantiated_unix_ns.store(
            u64::try_from(now.as_nanos()).unwrap_or(u64::MAX),
            std::sync::atomic::Ordering::Relaxed,
        );
        let ns = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX).max(1);
        self.instantiate_ns
            .store(ns, std::sync::atomic::Ordering::Relaxed);
    }
}

/// A store's resource limiter: the component's limits, noting in the
/// request's [`RequestStats`] how much memory it took and whether it was
/// refused some. `max_memory` bounds all of an instance's linear memories
/// together — a component can have several (a composed one has one per
/// part) — not each alone.
pub(crate) struct GuestLimiter {
    limits: wasmtime::StoreLimits,
    max_memory: usize,
    /// Every memory's size in the store, summed.
    memory: usize,
    stats: Option<Arc<RequestStats>>,
}

impl GuestLimiter {
    pub fn new(limits: &ferry_manifest::Limits, stats: Option<Arc<RequestStats>>) -> Self {
        let max_memory = usize::try_from(limits.max_memory).unwrap_or(usize::MAX);
        Self {
            // The pool bounds tables too; without it (`--disable-pooling`)
            // these are the only bounds, so they are set either way.
            limits: wasmtime::StoreLimitsBuilder::new()
                .memory_size(max_memory)
                .table_elements(crate::engine::TABLE_ELEMENTS)
                .tables(crate::engine::MAX_TABLES)
                .memories(crate::engine::MAX_MEMORIES)
                .trap_on_grow_failure(false)
                .build(),
            max_memory,
            memory: 0,
            stats,
        }
    }
}

impl wasmtime::ResourceLimiter for GuestLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let grown = desired.saturating_sub(current);
        let allowed = self.memory.saturating_add(grown) <= self.max_memory
            && self.limits.memory_growing(current, desired, maximum)?;
        if allowed {
            self.memory += grown;
        }
        if let Some(stats) = &self.stats {
            use std::sync::atomic::Ordering::Relaxed;
            if allowed {
                // Every memory's growth from zero, summed: all of them.
                let grown = grown as u64;
                let now = stats.linear_memory.fetch_add(grown, Relaxed) + grown;
                stats.peak_memory.fetch_max(now, Relaxed);
            } else {
                stats.memory_denied.store(true, Relaxed);
            }
        }
        Ok(allowed)
    }

    fn memory_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.limits.memory_grow_failed(error)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.limits.table_growing(current, desired, maximum)
    }

    fn table_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.limits.table_grow_failed(error)
    }

    fn instances(&self) -> usize {
        self.limits.instances()
    }

    fn tables(&self) -> usize {
        self.limits.tables()
    }

    fn memories(&self) -> usize {
        self.limits.memories()
    }
}

/// Most lines of guest output logged for one request (stdout and stderr
/// together): a chatty guest cannot flood the host's log. Lines beyond it
/// are dropped, and one warning says so.
pub const MAX_LOG_LINES_PER_REQUEST: usize = 1000;

/// What is left of one request's log lines.
#[derive(Default)]
struct LogBudget {
    used: std::sync::atomic::AtomicUsize,
}

impl LogBudget {
    /// Whether one more line may be logged; the first refusal warns.
    fn take(&self, log: &GuestLog) -> bool {
        let used = self.used.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if used == MAX_LOG_LINES_PER_REQUEST {
            let request = log.request.as_ref();
            tracing::warn!(
                target: "ferry::guest",
                app = request.map_or("-", |r| &*r.app),
                incarnation = request.map_or(0, |r| r.incarnation),
                component = &*log.component,
                route = request.map_or("-", |r| &*r.route),
                request_id = request.map_or("-", |r| &*r.request_id),
                stream = log.stream,
                "the guest wrote more than {MAX_LOG_LINES_PER_REQUEST} lines for this request; the rest of its output is dropped"
            );
        }
        used < MAX_LOG_LINES_PER_REQUEST
    }
}

/// Guest output forwarded to the host log, one event per line, with the
/// component and the request it is for.
#[derive(Clone)]
pub(crate) struct GuestLog {
    component: Arc<str>,
    stream: &'static str,
    request: Option<RequestLog>,
    /// Shared by the request's stdout and stderr.
    budget: Arc<LogBudget>,
}

impl IsTerminal for GuestLog {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestLog {
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(SinkStream(LineLogger::new(self.clone())))
    }

    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(SinkStream(LineLogger::new(self.clone())))
    }
}

/// Longest line kept before it is logged in pieces: a guest cannot make the
/// host buffer without bound.
const MAX_LINE: usize = 16 * 1024;

struct LineLogger {
    target: GuestLog,
    pending: Vec<u8>,
}

impl LineLogger {
    fn new(target: GuestLog) -> Self {
        Self {
            target,
            pending: Vec::new(),
        }
    }

    fn emit(&self, line: &[u8]) {
        let line = String::from_utf8_lossy(line);
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() {
            return;
        }
        // Escaped once, here, for every reader: the host log, `ferry logs`
        // and the dashboard all get the same text.
        let line = ferry_api::human::escape_control(line);
        if !self.target.budget.take(&self.target) {
            return;
        }
        let request = self.target.request.as_ref();
        tracing::info!(
            target: "ferry::guest",
            app = request.map_or("-", |r| &*r.app),
            incarnation = request.map_or(0, |r| r.incarnation),
            component = &*self.target.component,
            route = request.map_or("-", |r| &*r.route),
            request_id = request.map_or("-", |r| &*r.request_id),
            stream = self.target.stream,
            "{line}"
        );
    }

    fn push(&mut self, mut bytes: &[u8]) {
        while let Some(newline) = bytes.iter().position(|b| *b == b'\n') {
            if self.pending.is_empty() {
                self.emit(&bytes[..newline]);
            } else {
                self.pending.extend_from_slice(&bytes[..newline]);
                let line = std::mem::take(&mut self.pending);
                self.emit(&line);
            }
            bytes = &bytes[newline + 1..];
        }
        self.pending.extend_from_slice(bytes);
        if self.pending.len() >= MAX_LINE {
            let line = std::mem::take(&mut self.pending);
            self.emit(&line);
        }
    }
}

impl Drop for LineLogger {
    fn drop(&mut self) {
        if !self.pending.is_empty() {
            let line = std::mem::take(&mut self.pending);
            self.emit(&line);
        }
    }
}

impl StdioSink for LineLogger {
    fn accept(&mut self, bytes: &[u8]) -> Result<(), &'static str> {
        self.push(bytes);
        Ok(())
    }
}

/// A WAGI guest's stdout: captured in memory up to a limit. Past the limit
/// writes fail and `overflowed` is set, so the host answers with an error
/// instead of a truncated response.
#[derive(Clone)]
pub(crate) struct CapturedStdout {
    buf: Arc<Mutex<BytesMut>>,
    limit: usize,
    overflowed: Arc<std::sync::atomic::AtomicBool>,
}

impl CapturedStdout {
    pub fn new(limit: usize) -> Self {
        Self {
            buf: Arc::default(),
            limit,
            overflowed: Arc::default(),
        }
    }

    pub fn overflowed(&self) -> bool {
        self.overflowed.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn take(&self) -> Bytes {
        std::mem::take(&mut *self.buf.lock().unwrap_or_else(|e| e.into_inner())).freeze()
    }

    fn append(&self, bytes: &[u8]) -> bool {
        let mut buf = self.buf.lock().unwrap_or_else(|e| e.into_inner());
        if buf.len() + bytes.len() > self.limit {
            self.overflowed
                .store(true, std::sync::atomic::Ordering::Relaxed);
            return false;
        }
        buf.extend_from_slice(bytes);
        true
    }
}

impl IsTerminal for CapturedStdout {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for CapturedStdout {
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(SinkStream(self.clone()))
    }

    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(SinkStream(self.clone()))
    }
}

impl StdioSink for CapturedStdout {
    fn accept(&mut self, bytes: &[u8]) -> Result<(), &'static str> {
        if self.append(bytes) {
            Ok(())
        } else {
            Err("response larger than the limit")
        }
    }
}

/// Where a guest's stdio bytes go. An error refuses the write, which fails
/// inside the guest.
trait StdioSink: Send + Sync + 'static {
    fn accept(&mut self, bytes: &[u8]) -> Result<(), &'static str>;
}

/// Presents a [`StdioSink`] as both kinds of stream WASI asks for (an
/// `AsyncWrite` for preview 1, an `OutputStream` for 0.2). Writes complete at
/// once, so the stream is always ready.
struct SinkStream<S>(S);

impl<S: StdioSink + Unpin> AsyncWrite for SinkStream<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Poll::Ready(
            self.get_mut()
                .0
                .accept(buf)
                .map(|()| buf.len())
                .map_err(std::io::Error::other),
        )
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[async_trait::async_trait]
impl<S: StdioSink> Pollable for SinkStream<S> {
    async fn ready(&mut self) {}
}

impl<S: StdioSink> OutputStream for SinkStream<S> {
    fn write(&mut self, bytes: Bytes) -> Result<(), StreamError> {
        self.0
            .accept(&bytes)
            .map_err(|why| StreamError::LastOperationFailed(wasmtime::format_err!("{why}")))
    }

    fn flush(&mut self) -> Result<(), StreamError> {
        Ok(())
    }

    fn check_write(&mut self) -> Result<usize, StreamError> {
        Ok(64 * 1024)
    }
}

#[cfg(test)]
mod tests {
    use ferry_api::human::escape_control;

    #[test]
    fn control_characters_are_escaped_and_the_rest_kept() {
        // A title change, a screen clear, a bell, a carriage return that
        // would hide what came before, DEL and an 8-bit CSI.
        let hostile = "a\u{1b}]0;owned\u{7}b\u{1b}[2Jc\rd\u{7f}e\u{9b}31mf\tg";
        assert_eq!(
            escape_control(hostile),
            "a\\x1b]0;owned\\x07b\\x1b[2Jc\\x0dd\\x7fe\\u{9b}31mf\tg"
        );
        assert!(
            !escape_control(hostile)
                .chars()
                .any(|c| c.is_control() && c != '\t')
        );
        // Plain text (and text escaped already) comes back as it was.
        assert!(matches!(
            escape_control("plain ünïcödé \\x1b"),
            std::borrow::Cow::Borrowed(_)
        ));
    }
}
