//! The listener: accepts connections and hands each to one worker thread
//! with its own current-thread runtime, and shuts down gracefully.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::net::TcpListener;

use crate::ServerConfig;
use crate::apps::LiveApps;
use crate::connection;

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

pub(crate) type Connection = (std::net::TcpStream, SocketAddr);

/// A thread with its own current-thread runtime serving the connections the
/// acceptor hands it.
pub(crate) struct Worker {
    pub(crate) index: usize,
    pub(crate) connections: tokio::sync::mpsc::UnboundedSender<Connection>,
    /// Connections handed to this worker and not yet closed.
    pub(crate) open: Arc<AtomicUsize>,
    /// Resolves when the worker has drained its connections and stopped.
    pub(crate) finished: tokio::sync::oneshot::Receiver<()>,
}

impl Worker {
    pub(crate) fn start(
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

pub(crate) async fn run_worker(
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

/// Raises this process's soft limit on open files to its hard limit, and
/// returns the limit now in force (`None`: unlimited or unknown). Every
/// connection holds a descriptor, and so does every directory an app mounts
/// in place; the soft limit services usually start with (1024) is far
/// below what one host serves, while the hard one is the operator's.
pub fn raise_open_file_limit() -> Option<u64> {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    if limit.current != limit.maximum && limit.maximum.is_some() {
        let raised = Rlimit {
            current: limit.maximum,
            maximum: limit.maximum,
        };
        if setrlimit(Resource::Nofile, raised).is_ok() {
            return limit.maximum;
        }
    }
    limit.current
}
