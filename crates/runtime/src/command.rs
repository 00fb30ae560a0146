//! Running a WASI command component once (`[[trigger.command]]`): its
//! `wasi:cli/run` with the arguments given and the terminal's stdin,
//! stdout and stderr, under the component's memory limit and grants, and
//! its exit status as the answer — "Wasm as a Unix tool". A WASI 0.2
//! command (`wasi:cli/run@0.2`, what a Rust binary for `wasm32-wasip2`
//! exports) or a WASI 0.3 one (`wasi:cli/run@0.3`, an async `run`, on the
//! engine with component-model concurrency, called inside
//! `run_concurrent`).
//!
//! No timeout applies: a command runs as long as the person who started it
//! lets it (Ctrl-C ends `ferry up`, and the command with it).

use wasmtime::Engine;
use wasmtime::component::{Component, Linker};
use wasmtime_wasi::I32Exit;

use crate::http::{HttpState, store_with};
use crate::sandbox::Sandbox;
use crate::{GuestError, Limits};

/// The export a WASI 0.2 command has, as components name it.
pub(crate) const RUN: &str = "wasi:cli/run@0.2.";
/// The export a WASI 0.3 command has: the release wasmtime binds (a
/// release candidate's is another interface).
pub(crate) const RUN_03: &str = "wasi:cli/run@0.3.0";

/// A command ready to instantiate.
#[derive(Clone)]
pub(crate) enum CommandPre {
    P2(wasmtime_wasi::p2::bindings::CommandPre<HttpState>),
    P3(wasmtime_wasi::p3::bindings::CommandPre<HttpState>),
}

/// Whether a component with these exports is a WASI 0.3 command. One that
/// exports both runs are run as WASI 0.3 (Rust's toolchain adds 0.2's to a
/// binary that exports 0.3's itself).
pub(crate) fn is_wasi_03(exports: &[String]) -> bool {
    exports.iter().any(|e| e == RUN_03)
}

pub(crate) fn pre(
    linker: &Linker<HttpState>,
    component: &Component,
    exports: &[String],
) -> anyhow::Result<CommandPre> {
    if is_wasi_03(exports) {
        return Ok(CommandPre::P3(
            wasmtime_wasi::p3::bindings::CommandPre::new(linker.instantiate_pre(component)?)?,
        ));
    }
    anyhow::ensure!(
        exports.iter().any(|e| e.starts_with(RUN)),
        "the component does not export wasi:cli/run (it exports {}); a `command` trigger runs a WASI command (for Rust, a binary with `fn main` built for wasm32-wasip2)",
        if exports.is_empty() {
            "nothing".to_owned()
        } else {
            exports.join(", ")
        }
    );
    Ok(CommandPre::P2(
        wasmtime_wasi::p2::bindings::CommandPre::new(linker.instantiate_pre(component)?)?,
    ))
}

/// A pipe between two commands' stdout and stdin: at most this much is
/// in it at once, so a fast writer waits for its reader.
pub const PIPE_BUFFER: usize = 64 << 10;

/// Runs the command with `args` (`args[0]` is the program's name), reading
/// `stdin` and writing `stdout` (the terminal's where `None`; stderr is
/// always the terminal's); its exit status: 0 when `run` succeeds, 1 when
/// it returns its error, the status it passed to `exit` if it called it.
pub(crate) async fn run(
    engine: &Engine,
    pre: &CommandPre,
    sandbox: &Sandbox,
    limits: &Limits,
    args: &[String],
    stdin: Option<tokio::io::DuplexStream>,
    stdout: Option<tokio::io::DuplexStream>,
) -> Result<i32, GuestError> {
    let mut builder = sandbox
        .wasi_builder(None)
        .map_err(GuestError::Instantiation)?;
    builder.inherit_stdio().args(args);
    if let Some(stdin) = stdin {
        builder.stdin(wasmtime_wasi::cli::AsyncStdinStream::new(stdin));
    }
    if let Some(stdout) = stdout {
        builder.stdout(wasmtime_wasi::cli::AsyncStdoutStream::new(
            PIPE_BUFFER,
            stdout,
        ));
    }
    let mut store = store_with(engine, sandbox, limits, builder.build(), None, None);
    let ran = match pre {
        CommandPre::P2(pre) => {
            let command = pre
                .instantiate_async(&mut store)
                .await
                .map_err(|e| GuestError::from_instantiation(e.into()))?;
            command.wasi_cli_run().call_run(&mut store).await
        }
        CommandPre::P3(pre) => {
            let command = pre
                .instantiate_async(&mut store)
                .await
                .map_err(|e| GuestError::from_instantiation(e.into()))?;
            store
                .run_concurrent(async move |store| command.wasi_cli_run().call_run(store).await)
                .await
                .and_then(|ran| ran)
        }
    };
    match ran {
        Ok(Ok(())) => Ok(0),
        Ok(Err(())) => Ok(1),
        Err(trap) => match trap.downcast_ref::<I32Exit>() {
            Some(exit) => Ok(exit.0),
            None => Err(GuestError::Trap(trap.into())),
        },
    }
}

/// How one stage of a pipeline ended.
#[derive(Debug)]
pub struct StageEnd {
    /// Its place in the pipeline, from 0.
    pub stage: usize,
    pub outcome: Result<i32, GuestError>,
}

/// Runs `stages` (command guests, each with its arguments after its name)
/// as a shell runs a pipeline: all at once, each in its own sandbox, each
/// one's stdout into the next one's stdin through a pipe of
/// [`PIPE_BUFFER`] bytes (streaming: a stage reads what the one before
/// wrote as it is written), the first's stdin and the last's stdout the
/// terminal's, every stderr the terminal's. A stage that ends closes its
/// pipes: the next one reads the end of its input, the one before gets an
/// error writing. How each ended, in the order they ended.
pub async fn pipeline(stages: &[(&crate::Guest, Vec<String>)]) -> Vec<StageEnd> {
    use futures_util::StreamExt as _;
    let mut ends = Vec::with_capacity(stages.len());
    let mut stdin = None;
    let mut running = futures_util::stream::FuturesUnordered::new();
    for (stage, (guest, args)) in stages.iter().enumerate() {
        let (stdout, next) = if stage + 1 < stages.len() {
            let (write, read) = tokio::io::duplex(PIPE_BUFFER);
            (Some(write), Some(read))
        } else {
            (None, None)
        };
        let input = std::mem::replace(&mut stdin, next);
        running.push(async move {
            StageEnd {
                stage,
                outcome: guest.run_command_with(args, input, stdout).await,
            }
        });
    }
    while let Some(end) = running.next().await {
        ends.push(end);
    }
    ends
}
