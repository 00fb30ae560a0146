//! Running a WASI command component once (`[[trigger.command]]`): its
//! `wasi:cli/run` with the arguments given and the terminal's stdin,
//! stdout and stderr, under the component's memory limit and grants, and
//! its exit status as the answer — "Wasm as a Unix tool".
//!
//! No timeout applies: a command runs as long as the person who started it
//! lets it (Ctrl-C ends `ferry up`, and the command with it).

use wasmtime::Engine;
use wasmtime::component::{Component, Linker};
use wasmtime_wasi::I32Exit;
use wasmtime_wasi::p2::bindings::CommandPre;

use crate::http::{HttpState, store_with};
use crate::sandbox::Sandbox;
use crate::{GuestError, Limits};

/// The export a command component must have, as components name it.
pub(crate) const RUN: &str = "wasi:cli/run@0.2.";

pub(crate) fn pre(
    linker: &Linker<HttpState>,
    component: &Component,
    exports: &[String],
) -> anyhow::Result<CommandPre<HttpState>> {
    anyhow::ensure!(
        exports.iter().any(|e| e.starts_with(RUN)),
        "the component does not export wasi:cli/run@0.2 (it exports {}); a `command` trigger runs a WASI command (for Rust, a binary with `fn main` built for wasm32-wasip2)",
        if exports.is_empty() {
            "nothing".to_owned()
        } else {
            exports.join(", ")
        }
    );
    Ok(CommandPre::new(linker.instantiate_pre(component)?)?)
}

/// Runs the command with `args` (`args[0]` is the program's name) and the
/// terminal's stdio; its exit status: 0 when `run` succeeds, 1 when it
/// returns its error, the status it passed to `exit` if it called it.
pub(crate) async fn run(
    engine: &Engine,
    pre: &CommandPre<HttpState>,
    sandbox: &Sandbox,
    limits: &Limits,
    args: &[String],
) -> Result<i32, GuestError> {
    let mut builder = sandbox
        .wasi_builder(None)
        .map_err(GuestError::Instantiation)?;
    builder.inherit_stdio().args(args);
    let mut store = store_with(engine, sandbox, limits, builder.build(), None, None);
    let command = pre
        .instantiate_async(&mut store)
        .await
        .map_err(|e| GuestError::from_instantiation(e.into()))?;
    match command.wasi_cli_run().call_run(&mut store).await {
        Ok(Ok(())) => Ok(0),
        Ok(Err(())) => Ok(1),
        Err(trap) => match trap.downcast_ref::<I32Exit>() {
            Some(exit) => Ok(exit.0),
            None => Err(GuestError::Trap(trap.into())),
        },
    }
}
