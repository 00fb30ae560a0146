//! The key-value part of `cargo xtask bench`: a `get` and a durable `set`
//! through a real Spin guest, against the same guest's plain route and
//! against the same operations on SQLite in-process, in one run.
//!
//! The guest is `crates/test-programs/spin-apps/rust-sdk5` (spin-sdk 5.2,
//! `fermyon:spin/key-value@2.0.0`), built with `ferry build` as the
//! integration tests build it, and served by `ferry up` on the server core
//! with a state directory of its own (embedded SQLite). The in-process
//! baselines (`baseline.rs`, also run by `cargo xtask group-commit`)
//! run after the server has stopped, on the same filesystem.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::baseline::{self, GetCost};
use anyhow::{Context as _, ensure};

use crate::bench::{Options, Running, Series, Setup, Target, alternate, named};
use crate::process;

/// Distinct keys the `set` load cycles through.
pub(crate) const SET_KEYS: u32 = 1000;

/// Bytes of each value the `set` load writes.
const SET_VALUE_BYTES: usize = 64;

/// What the key-value runs measured.
#[derive(Debug, Clone, Default)]
pub struct State {
    /// `GET /hello`: the guest answers without touching a store.
    pub hello: Series,
    /// `GET /kv/a`: opens the default store and reads 5 bytes.
    pub get: Series,
    /// `PUT /kv/k<n>`: writes 64 bytes, answered after the commit.
    pub set: Series,
    /// Concurrent writers in the in-process baselines: as many as wrk's
    /// connections.
    pub writers: usize,
    /// In-process durable sets per second, one fsync per write.
    pub one_fsync_per_write: f64,
    /// In-process durable sets per second, group commit.
    pub group_commit: f64,
    pub get_cost: Option<GetCost>,
}

pub fn run(setup: &Setup, options: &Options) -> anyhow::Result<State> {
    let app = setup.root.join("crates/test-programs/spin-apps/rust-sdk5");
    build_app(setup, &app)?;
    let state_dir = setup.work.join("run").join("state");
    let _ = std::fs::remove_dir_all(&state_dir);
    std::fs::create_dir_all(&state_dir)?;

    let mut result = State {
        hello: named("`GET /hello` (no store)"),
        get: named("`GET /kv/a` (open the store, get 5 bytes)"),
        set: named(&format!(
            "`PUT /kv/k<n>` ({SET_VALUE_BYTES}-byte values over {SET_KEYS} keys, answered after the commit)"
        )),
        writers: usize::try_from(options.connections)?,
        ..State::default()
    };
    {
        let server = start(setup, &app, &state_dir)?;
        let stored = process::request(server.addr, "PUT", "/kv/a", b"hello")?;
        ensure!(stored.status == 200, "PUT /kv/a answered {}", stored.status);
        let read = process::get(server.addr, "/kv/a")?;
        ensure!(
            read.status == 200 && read.body == b"hello",
            "GET /kv/a answered {} {:?}",
            read.status,
            String::from_utf8_lossy(&read.body)
        );
        let script = setup.work.join("run").join("put.lua");
        std::fs::write(&script, put_script())?;
        let load = setup.load(setup.client_cpus.as_deref(), options);
        alternate(
            &mut [
                Target::get(&mut result.hello, &server, "/hello"),
                Target::get(&mut result.get, &server, "/kv/a"),
                Target {
                    series: &mut result.set,
                    server: &server,
                    path: "/",
                    script: Some(&script),
                },
            ],
            &load,
            options.rounds,
        )?;
        let written = process::get(server.addr, &format!("/kv/k{}", SET_KEYS - 1))?;
        ensure!(
            written.status == 200 && written.body.len() == SET_VALUE_BYTES,
            "after the PUT runs, GET /kv/k{} answered {}",
            SET_KEYS - 1,
            written.status
        );
    }

    eprintln!("  in-process baselines ({} writers)", result.writers);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let scratch = setup.work.join("run");
    let sets = |max_batch| {
        runtime.block_on(baseline::durable_sets_per_second(
            &scratch,
            result.writers,
            max_batch,
            options.duration,
        ))
    };
    result.one_fsync_per_write = sets(1)?;
    result.group_commit = sets(ferry_store::SqliteOptions::default().max_batch)?;
    result.get_cost = Some(runtime.block_on(baseline::get_cost(&scratch))?);
    eprintln!(
        "  durable sets/s: {:.0} one fsync per write, {:.0} group commit; get: {:?}",
        result.one_fsync_per_write, result.group_commit, result.get_cost
    );
    Ok(result)
}

/// `ferry build` of the app: its `cargo build --target wasm32-wasip2`.
pub(crate) fn build_app(setup: &Setup, app: &Path) -> anyhow::Result<()> {
    eprintln!("building {} (ferry build)", app.display());
    let log = setup.log("state-build");
    let mut command = Command::new(&setup.ferry);
    crate::bench::without_cargo_package_env(&mut command);
    let status = command
        .arg("build")
        .arg(app)
        .stdout(std::fs::File::create(&log)?)
        .stderr(std::fs::File::create(setup.log("state-build-stderr"))?)
        .status()
        .context("running ferry build")?;
    ensure!(
        status.success(),
        "ferry build {} failed; see {}",
        app.display(),
        log.display()
    );
    Ok(())
}

fn start(setup: &Setup, app: &Path, state_dir: &PathBuf) -> anyhow::Result<Running> {
    start_with(setup, "ferry-state", app, state_dir, &[])
}

/// [`start`] with `extra` arguments (`--runtime-config-file`).
pub(crate) fn start_with(
    setup: &Setup,
    name: &str,
    app: &Path,
    state_dir: &PathBuf,
    extra: &[&str],
) -> anyhow::Result<Running> {
    let port = process::free_port()?;
    let mut command = setup.ferry_command(
        app,
        setup.server_cpus.as_deref(),
        port,
        &setup.work.join("cache"),
    );
    command.arg("--state-dir").arg(state_dir).args(extra);
    let running = setup.start(name, command, port)?;
    let addr: SocketAddr = running.addr;
    let hello = process::get(addr, "/hello")?;
    ensure!(hello.status == 200, "GET /hello answered {}", hello.status);
    Ok(running)
}

/// wrk's script for the `set` load: `PUT /kv/k<n>`, n cycling over
/// [`SET_KEYS`] keys.
pub(crate) fn put_script() -> String {
    format!(
        "-- Written by cargo xtask bench.\n\
         local n = 0\n\
         wrk.method = \"PUT\"\n\
         wrk.body = string.rep(\"v\", {SET_VALUE_BYTES})\n\
         request = function()\n\
         \x20 n = (n + 1) % {SET_KEYS}\n\
         \x20 return wrk.format(nil, \"/kv/k\" .. n)\n\
         end\n"
    )
}

impl State {
    /// Seconds per request, from mean throughput (the server's core is
    /// saturated, so this is its time per request).
    pub fn seconds_per_request(series: &Series) -> f64 {
        1.0 / series.requests_per_sec()
    }

    /// Seconds a `get` adds to the plain request (below zero when the
    /// difference is smaller than the run-to-run noise).
    pub fn get_adds(&self) -> f64 {
        Self::seconds_per_request(&self.get) - Self::seconds_per_request(&self.hello)
    }

    /// Durable sets through the guest against one fsync per write.
    pub fn set_ratio(&self) -> f64 {
        self.set.requests_per_sec() / self.one_fsync_per_write
    }
}
