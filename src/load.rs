//! Turning a manifest into loaded guests, with progress for people.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use ferry_manifest::{
    App, Component, ComponentVariables, Executor, Handler, Limits, RuntimeConfig, Source,
};
use ferry_runtime::{Guest, Runtime};

use crate::download::Downloader;

/// A failure that decides the process's exit code (see [`crate::exit_code`]).
#[derive(Debug)]
pub struct Failure {
    pub exit_code: u8,
    pub message: String,
}

impl Failure {
    /// A component that cannot be loaded (not a manifest syntax problem).
    pub fn load(message: String) -> Self {
        Self {
            exit_code: 3,
            message,
        }
    }

    /// The listen address could not be bound.
    pub fn bind(message: String) -> Self {
        Self {
            exit_code: 4,
            message,
        }
    }

    /// The command line names something that is not there.
    pub fn usage(message: String) -> Self {
        Self {
            exit_code: 2,
            message,
        }
    }

    /// A build command failed; `exit_code` is its own.
    pub fn build(exit_code: u8, message: String) -> Self {
        Self { exit_code, message }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Failure {}

/// The runtime config to use: the one named, else `runtime-config.toml`
/// beside the manifest if there is one.
pub fn runtime_config(app: &App, named: Option<&Path>) -> anyhow::Result<RuntimeConfig> {
    let path = match named {
        Some(path) => Some(path.to_owned()),
        None => Some(app.dir.join("runtime-config.toml")).filter(|p| p.is_file()),
    };
    Ok(match path {
        Some(path) => RuntimeConfig::load(&path)?,
        None => RuntimeConfig::default(),
    })
}

/// Each component that a trigger uses, with its executor. A component used
/// with two different executors is an error; unused components are skipped.
pub fn used_components(app: &App) -> anyhow::Result<Vec<(&Component, Executor)>> {
    let mut used: Vec<(&Component, Executor)> = Vec::new();
    for trigger in &app.triggers {
        let Handler::Component { id, executor } = &trigger.handler else {
            continue;
        };
        let component = app
            .component(id)
            .context("trigger names a missing component")?;
        match used.iter().find(|(c, _)| c.id == component.id) {
            Some((_, used_with)) if used_with != executor => {
                return Err(Failure::load(format!(
                    "component `{}` is used with two different executors (see the trigger at line {})",
                    component.id, trigger.line
                ))
                .into());
            }
            Some(_) => {}
            None => used.push((component, executor.clone())),
        }
    }
    Ok(used)
}

/// Logs a warning for each component no trigger uses (it is not loaded).
pub fn warn_unused(app: &App) {
    for component in &app.components {
        if !app
            .triggers
            .iter()
            .any(|t| t.component() == Some(component.id.as_str()))
        {
            tracing::warn!(component = %component.id, "no trigger uses this component; it is not loaded");
        }
    }
}

/// The Wasm of every used component, by id: read from its file, or fetched
/// (and verified) through `downloads`, printing progress to `out`.
pub fn fetch_sources(
    app: &App,
    downloads: &Downloader,
    out: &mut dyn std::io::Write,
) -> anyhow::Result<BTreeMap<String, Vec<u8>>> {
    let mut wasm = BTreeMap::new();
    for (component, _) in used_components(app)? {
        let bytes = match &component.source {
            Source::File(path) => std::fs::read(path).map_err(|e| {
                Failure::load(format!(
                    "component `{}`: cannot read {}: {e}",
                    component.id,
                    path.display()
                ))
            })?,
            Source::Url { url, digest } => downloads
                .fetch(&component.id, url, digest, out)
                .map_err(|e| Failure::load(format!("{e:#}")))?,
        };
        wasm.insert(component.id.clone(), bytes);
    }
    Ok(wasm)
}

/// Compiles (or loads from the cache) every used component, whose Wasm
/// `fetch_sources` got, printing progress to `out`.
pub fn load_guests(
    runtime: &Runtime,
    app: &App,
    wasm: &BTreeMap<String, Vec<u8>>,
    limits: &BTreeMap<String, Limits>,
    variables: &BTreeMap<String, ComponentVariables>,
    self_addr: Option<SocketAddr>,
    out: &mut dyn std::io::Write,
) -> anyhow::Result<Vec<Guest>> {
    let mut guests = Vec::new();
    for (component, executor) in used_components(app)? {
        let bytes = wasm
            .get(&component.id)
            .context("a used component has no Wasm")?;
        let size = bytes.len() as u64;
        let started = Instant::now();
        let guest = with_progress(&component.id, size, out, || {
            runtime.load(
                component,
                variables.get(&component.id).cloned().unwrap_or_default(),
                bytes,
                &executor,
                limits[&component.id],
                &app.dir,
                self_addr,
            )
        })
        .map_err(|e| Failure::load(format!("component `{}`: {e:#}", component.id)))?;
        let info = guest.info();
        let _ = writeln!(
            out,
            "{} `{}` ({}) in {}",
            if info.compile.from_cache {
                "Loaded"
            } else {
                "Compiled"
            },
            component.id,
            human_size(size),
            human_duration(started.elapsed()),
        );
        guests.push(guest);
    }
    Ok(guests)
}

/// Runs `work`, printing a line every few seconds while it lasts more than one.
fn with_progress<T>(
    id: &str,
    size: u64,
    out: &mut dyn std::io::Write,
    work: impl FnOnce() -> T,
) -> T {
    let (done, finished) = mpsc::channel::<()>();
    std::thread::scope(|scope| {
        let ticker = scope.spawn(move || {
            let started = Instant::now();
            let mut lines = Vec::new();
            let mut wait = Duration::from_secs(1);
            while let Err(mpsc::RecvTimeoutError::Timeout) = finished.recv_timeout(wait) {
                lines.push(format!(
                    "Compiling `{id}` ({})... {}s",
                    human_size(size),
                    started.elapsed().as_secs()
                ));
                // Printed from here so it appears while the compile runs.
                println!("{}", lines.last().map(String::as_str).unwrap_or_default());
                wait = Duration::from_secs(5);
            }
        });
        let result = work();
        let _ = done.send(());
        let _ = ticker.join();
        let _ = out.flush();
        result
    })
}

pub fn human_size(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 20 => format!("{:.1} MiB", b as f64 / f64::from(1 << 20)),
        b if b >= 1 << 10 => format!("{:.1} KiB", b as f64 / 1024.0),
        b => format!("{b} B"),
    }
}

pub fn human_duration(d: Duration) -> String {
    if d >= Duration::from_secs(1) {
        format!("{:.2} s", d.as_secs_f64())
    } else {
        format!("{:.1} ms", d.as_secs_f64() * 1000.0)
    }
}
