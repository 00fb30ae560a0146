//! The overload part of `cargo xtask bench`: hello world on `ferry up` with
//! two workers, loaded by `wrk` from the same machine at more and more
//! connections, then with thousands of idle keep-alive connections open
//! beside the load. What matters is goodput (2xx responses per second) and
//! the share of requests refused: a host that refuses early under load
//! serves fewer requests, not more.
//!
//! The idle connections are held by this process: each sends one request,
//! reads its answer and then waits; when the server closes an idle one (its
//! idle timeout), it connects again, as a browser would.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::bench::{Options, Setup};
use crate::wrk::{self, Load, WrkResult};

/// The server's header-read (and HTTP/1 idle) timeout in these runs.
pub const IDLE_TIMEOUT: &str = "60s";

/// Connection counts `wrk` loads with.
pub const CONNECTIONS: [u32; 3] = [64, 256, 1000];

/// What the overload runs measured.
#[derive(Debug, Clone, Default)]
pub struct Overload {
    /// One run per entry of [`CONNECTIONS`].
    pub runs: Vec<(u32, Run)>,
    /// The 1,000-connection run with `idle` idle connections open.
    pub with_idle: Option<Run>,
    pub idle: usize,
    /// Idle connections open when the run ended, and how many times one
    /// had to connect again during it.
    pub idle_open_at_end: usize,
    pub idle_reconnects: u64,
}

/// One load run and the server CPU time it took.
#[derive(Debug, Clone)]
pub struct Run {
    pub wrk: WrkResult,
    pub server_cpu: Duration,
}

impl Run {
    /// Server CPU time per request served.
    pub fn cpu_per_request(&self) -> Duration {
        self.server_cpu / u32::try_from(self.wrk.requests.max(1)).unwrap_or(u32::MAX)
    }
}

pub fn run(setup: &Setup, options: &Options) -> anyhow::Result<Overload> {
    let mut result = Overload {
        idle: options.idle_connections,
        ..Overload::default()
    };
    // The idle connections are opened over a few seconds and must all stay
    // open through the run: at the default 10 s header-read timeout the
    // first would be closed, and their reconnecting is a burst of
    // thousands of requests of its own.
    let server = setup.start_ferry("ferry-overload", None, |c| {
        c.args(["--workers", "2", "--header-read-timeout", IDLE_TIMEOUT]);
    })?;
    let load = |connections| Load {
        connections,
        duration: options.duration,
        cpus: None,
    };
    let url = format!("http://{}/", server.addr);
    let measure = |connections| -> anyhow::Result<Run> {
        let before = server.process.cpu_time()?;
        let wrk = wrk::run(&url, None, &load(connections))?;
        Ok(Run {
            wrk,
            server_cpu: server.process.cpu_time()? - before,
        })
    };
    measure(64)?;
    for connections in CONNECTIONS {
        let run = measure(connections)?;
        report(&format!("{connections} connections"), &run);
        result.runs.push((connections, run));
    }

    eprintln!("  opening {} idle keep-alive connections", result.idle);
    let idle = IdleConnections::open(server.addr, result.idle)?;
    let run = measure(1000)?;
    report(&format!("1000 connections + {} idle", result.idle), &run);
    result.idle_open_at_end = idle.open_now();
    result.idle_reconnects = idle.reconnects();
    result.with_idle = Some(run);
    drop(idle);
    Ok(result)
}

fn report(what: &str, run: &Run) {
    let wrk = &run.wrk;
    eprintln!(
        "  {what:<32} {:>9.0} req/s, {:>9.0} 2xx/s, {:.2}% refused or failed, p99 {:.1} ms, server CPU {:.1} µs/request",
        wrk.requests_per_sec,
        wrk.goodput(),
        100.0 * wrk.errors as f64 / wrk.requests.max(1) as f64,
        wrk.p99.as_secs_f64() * 1e3,
        run.cpu_per_request().as_secs_f64() * 1e6,
    );
}

/// Keep-alive connections that sent one request each and then wait, held
/// by a thread of their own until dropped.
struct IdleConnections {
    stop: Arc<AtomicBool>,
    open: Arc<AtomicUsize>,
    reconnects: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl IdleConnections {
    fn open(addr: SocketAddr, count: usize) -> anyhow::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let open = Arc::new(AtomicUsize::new(0));
        let reconnects = Arc::new(AtomicU64::new(0));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let thread = {
            let (stop, open, reconnects) = (stop.clone(), open.clone(), reconnects.clone());
            std::thread::Builder::new()
                .name("idle-connections".into())
                .spawn(move || {
                    runtime.block_on(async move {
                        for _ in 0..count {
                            let (stop, open, reconnects) =
                                (stop.clone(), open.clone(), reconnects.clone());
                            tokio::spawn(hold(addr, stop, open, reconnects));
                        }
                        while !stop.load(Ordering::Relaxed) {
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                    });
                })
                .context("starting the idle-connection thread")?
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while open.load(Ordering::Relaxed) < count {
            anyhow::ensure!(
                std::time::Instant::now() < deadline,
                "only {} of {count} idle connections opened in 60 s (is `ulimit -n` high enough?)",
                open.load(Ordering::Relaxed)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(Self {
            stop,
            open,
            reconnects,
            thread: Some(thread),
        })
    }

    fn open_now(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    fn reconnects(&self) -> u64 {
        self.reconnects.load(Ordering::Relaxed)
    }
}

impl Drop for IdleConnections {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// One idle connection: a request, its response, then waiting; again when
/// the server closes it.
async fn hold(
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    open: Arc<AtomicUsize>,
    reconnects: Arc<AtomicU64>,
) {
    let mut first = true;
    while !stop.load(Ordering::Relaxed) {
        if !first {
            reconnects.fetch_add(1, Ordering::Relaxed);
        }
        first = false;
        let Ok(mut stream) = tokio::net::TcpStream::connect(addr).await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        if stream
            .write_all(b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n")
            .await
            .is_err()
        {
            continue;
        }
        open.fetch_add(1, Ordering::Relaxed);
        // Read the answer, then whatever else comes until the server closes
        // the connection (nothing, until its idle timeout).
        let mut buf = [0; 1024];
        loop {
            tokio::select! {
                read = stream.read(&mut buf) => match read {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                },
                () = tokio::time::sleep(Duration::from_millis(200)) => {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                }
            }
        }
        open.fetch_sub(1, Ordering::Relaxed);
    }
}
