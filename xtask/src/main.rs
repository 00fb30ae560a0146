//! Ferry's development tasks, run as `cargo xtask <task>` (an alias in
//! `.cargo/config.toml`).
//!
//! - `bench`: the side-by-side benchmark (see `bench.rs`; its key-value part
//!   is `state.rs`, its overload part `overload.rs`, its live-host part
//!   `host.rs`, its event-trigger part `triggers.rs`), which writes its
//!   figures into BENCHMARKS.md.
//! - `native-hello`: the native hyper baseline server the benchmark starts.
//! - `group-commit`: the store's durable writes and reads in process
//!   (`group_commit.rs`, on the measurements in `baseline.rs`).

mod baseline;
mod bench;
mod cluster;
mod group_commit;
mod host;
mod native;
mod overload;
mod process;
mod report;
mod state;
mod triggers;
mod wrk;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "cargo xtask")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Debug, Subcommand)]
enum Task {
    /// Ferry against native hyper and `wasmtime serve` on this machine; writes BENCHMARKS.md.
    Bench {
        /// Seconds per wrk run.
        #[arg(long, default_value_t = 8)]
        duration: u64,
        /// wrk connections.
        #[arg(long, default_value_t = 32)]
        connections: u32,
        /// Runs per server, alternating between servers.
        #[arg(long, default_value_t = 2)]
        rounds: u32,
        /// Distinct components in the many-components run; apps in the live host's.
        #[arg(long, default_value_t = 1000)]
        components: usize,
        /// A `wasmtime` binary to use instead of finding (or installing) the pinned version.
        #[arg(long)]
        wasmtime: Option<PathBuf>,
        /// Print the report without writing it into BENCHMARKS.md.
        #[arg(long)]
        no_write: bool,
        /// Only one part (needs no `wasmtime` unless it is `serving`); writes only that part.
        #[arg(long, value_enum)]
        only: Option<report::Section>,
        /// Idle keep-alive connections held open in the overload part.
        #[arg(long, default_value_t = 10_000)]
        idle_connections: usize,
    },
    /// Durable key-value writes per second with and without group commit, and a `get`'s cost, in process.
    GroupCommit,
    /// The native baseline: a hyper server answering every request with the hello bytes.
    NativeHello {
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
    },
}

fn main() -> ExitCode {
    let result = match Cli::parse().task {
        Task::Bench {
            duration,
            connections,
            rounds,
            components,
            wasmtime,
            no_write,
            only,
            idle_connections,
        } => bench::run(&bench::Options {
            duration: Duration::from_secs(duration),
            connections,
            rounds: rounds.max(1),
            components,
            wasmtime,
            output: (!no_write)
                .then(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../BENCHMARKS.md")),
            only,
            idle_connections,
        }),
        Task::GroupCommit => {
            group_commit::run();
            Ok(())
        }
        Task::NativeHello { listen } => native::serve(listen),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
