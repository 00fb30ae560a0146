//! Ferry's HTTP front end.
//!
//! [`serve`] accepts connections (HTTP/1.1 with keep-alive, and HTTP/2 over
//! cleartext), routes each request to a guest with [`Router`], applies the
//! limits that can be checked before a guest runs (declared body size,
//! concurrency), adds Spin's request headers, runs the guest and writes one
//! access-log line. Guest failures become error responses here; nothing a
//! guest does can end the server.
//!
//! By job: the listener (`listener.rs`, `connection.rs`) accepts and
//! spreads connections over worker threads; the app table (`apps.rs`) says
//! which [`LoadedApp`] a request's route and host name reach; dispatch
//! (`dispatch.rs`) runs it on that app's guest, under the component's
//! admission (`admission.rs`).

mod access_log;
mod admission;
mod apps;
mod connection;
mod dispatch;
mod listener;
mod metrics;
mod router;
pub mod tls;
mod traces;

use std::time::Duration;

pub use apps::AppTable;
pub(crate) use apps::Observation;
pub use apps::{Conflict, LiveApps};
pub use dispatch::{LoadedApp, RouteHeaders, StaticReply, newest_incarnation};
pub use listener::{raise_open_file_limit, serve};
pub use metrics::{RouteFigures, ServerMetrics};
pub use router::{RouteEntry, Router, Target};

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
    /// Serve HTTPS with this certificate (HTTP/2 or HTTP/1.1 by ALPN)
    /// instead of plain HTTP.
    pub tls: Option<tls::Tls>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            max_header_size: 64 * 1024,
            shutdown_timeout: Duration::from_secs(30),
            workers: std::thread::available_parallelism().map_or(1, |n| n.get()),
            tls: None,
        }
    }
}

#[cfg(test)]
mod tests;
