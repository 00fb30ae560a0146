//! Assembly: from a manifest on disk to an [`LoadedApp`] ready to serve, the
//! one path `ferry check`, `ferry up` (and each `--watch` reload) and a live
//! host's deploy all take: [`prepare`] reads the app and fetches its Wasm,
//! then [`Assembler::assemble`] opens (or checks) its stores and compiles
//! its components, with progress for people.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use ferry_manifest::{
    App, Component, ComponentVariables, Dependency, DependencySource, EventSource, Executor,
    Handler, Limits, RuntimeConfig, Source,
};
use ferry_runtime::compose::{self, Composition};
use ferry_runtime::{ComponentContext, Guest, Runtime};
use ferry_server::LoadedApp;

use crate::download::Downloader;
use crate::stores;
use ferry_api::Failure;
use ferry_api::human::{human_duration, human_size};

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

/// Each component that a trigger uses, with its executor: HTTP triggers'
/// first, then event triggers'. A component used with two different
/// executors (by an HTTP and a Redis trigger, say) is an error; unused
/// components are skipped.
pub fn used_components(app: &App) -> anyhow::Result<Vec<(&Component, Executor)>> {
    let http = app.triggers.iter().filter_map(|t| match &t.handler {
        Handler::Component { id, executor } => Some((id.as_str(), executor.clone(), t.line)),
        Handler::Static(_) => None,
    });
    let events = app.event_triggers.iter().flat_map(|t| {
        t.components()
            .into_iter()
            .map(move |c| (c, t.source.executor(), t.line))
    });
    let mut used: Vec<(&Component, Executor)> = Vec::new();
    for (id, executor, line) in http.chain(events) {
        let component = app
            .component(id)
            .context("trigger names a missing component")?;
        match used.iter().find(|(c, _)| c.id == component.id) {
            Some((_, used_with)) if *used_with != executor => {
                return Err(Failure::load(format!(
                    "component `{}` is used with two different executors (see the trigger at line {line}): a component exports one entry point, so give each trigger type its own component",
                    component.id
                ))
                .into());
            }
            Some(_) => {}
            None => used.push((component, executor)),
        }
    }
    Ok(used)
}

/// Logs a warning for each component no trigger uses (it is not loaded),
/// unless another component uses its Wasm as a dependency or middleware.
pub fn warn_unused(app: &App) {
    let composed = |id: &str| {
        app.components.iter().any(|c| {
            c.dependencies
                .iter()
                .chain(&c.middleware)
                .any(|d| d.source == DependencySource::Component(id.to_owned()))
        })
    };
    for component in &app.components {
        if !composed(&component.id)
            && !app
                .triggers
                .iter()
                .any(|t| t.component() == Some(component.id.as_str()))
            && !app
                .event_triggers
                .iter()
                .any(|t| t.components().contains(&component.id.as_str()))
        {
            tracing::warn!(
                component = component.id.as_str(),
                "no trigger uses this component; it is not loaded"
            );
        }
    }
}

/// The Wasm of an app's used components, by id.
#[derive(Default)]
pub struct Sources {
    pub wasm: BTreeMap<String, Vec<u8>>,
    /// How each component with dependencies or middleware was composed
    /// (its `wasm` is the composed component).
    pub compositions: BTreeMap<String, Composition>,
}

/// The Wasm of every used component: read from its file, or fetched (and
/// verified) through `downloads`, printing progress to `out`; composed with
/// its dependencies and middleware when it has any.
pub fn fetch_sources(
    app: &App,
    downloads: &Downloader,
    out: &mut dyn std::io::Write,
) -> anyhow::Result<Sources> {
    let mut wasm = BTreeMap::new();
    let mut compositions = BTreeMap::new();
    for (component, _) in used_components(app)? {
        let main = read_source(&component.id, &component.source, downloads, out)?;
        if component.dependencies.is_empty() && component.middleware.is_empty() {
            wasm.insert(component.id.clone(), main);
            continue;
        }
        let dependencies = read_parts(app, component, &component.dependencies, downloads, out)?;
        let middleware = read_parts(app, component, &component.middleware, downloads, out)?;
        let composed = compose::compose(
            &component.id,
            &main,
            &parts(&dependencies),
            &parts(&middleware),
        )
        .map_err(|e| Failure::load(format!("component `{}`: {e:#}", component.id)))?;
        wasm.insert(component.id.clone(), composed.wasm);
        compositions.insert(component.id.clone(), composed.composition);
    }
    Ok(Sources { wasm, compositions })
}

/// The Wasm of each of `component`'s dependencies (or middleware) in
/// `list`, with where it came from as `ferry check` shows it.
fn read_parts<'a>(
    app: &App,
    component: &Component,
    list: &'a [Dependency],
    downloads: &Downloader,
    out: &mut dyn std::io::Write,
) -> anyhow::Result<Vec<(&'a Dependency, String, Vec<u8>)>> {
    let mut read = Vec::new();
    for dependency in list {
        let (source, shown) = match &dependency.source {
            DependencySource::Wasm(source @ Source::File(path)) => {
                (source, crate::summary::relative(&app.dir, path))
            }
            DependencySource::Wasm(source) => (source, source.to_string()),
            DependencySource::Component(id) => {
                let other = app
                    .component(id)
                    .context("a dependency names a missing component")?;
                (&other.source, format!("component `{id}`"))
            }
        };
        let what = format!("{}'s dependency `{}`", component.id, dependency.name);
        let bytes = read_source(&what, source, downloads, out)?;
        read.push((dependency, shown, bytes));
    }
    Ok(read)
}

fn parts<'a>(read: &'a [(&'a Dependency, String, Vec<u8>)]) -> Vec<compose::Part<'a>> {
    read.iter()
        .map(|(dependency, shown, wasm)| compose::Part {
            dependency,
            shown: shown.clone(),
            wasm,
        })
        .collect()
}

/// What `load_app` checks of every component, for the ones `-c` kept: each
/// local source (its own, its dependencies' and middleware's) is a file and
/// each `files` directory is there.
fn sources_exist(app: &App) -> anyhow::Result<()> {
    for component in &app.components {
        let id = &component.id;
        let own = match &component.source {
            Source::File(path) => Some(path.as_path()),
            _ => None,
        };
        for path in own.into_iter().chain(component.dependency_files()) {
            if !path.is_file() {
                return Err(Failure::load(format!(
                    "component `{id}`: its source {} is not a file{}",
                    path.display(),
                    if component.build.is_some() {
                        format!(" (build it: `ferry build -c {id}`, or `ferry up --build`)")
                    } else {
                        String::new()
                    }
                ))
                .into());
            }
        }
        for mount in &component.files {
            if let ferry_manifest::FileMount::Directory { source, .. } = mount
                && !source.is_dir()
            {
                return Err(Failure::load(format!(
                    "component `{id}`: the `files` directory {} is not there",
                    source.display()
                ))
                .into());
            }
        }
    }
    Ok(())
}

/// The Wasm of `source`, read, downloaded or fetched from a registry;
/// `what` names it in messages.
fn read_source(
    what: &str,
    source: &Source,
    downloads: &Downloader,
    out: &mut dyn std::io::Write,
) -> anyhow::Result<Vec<u8>> {
    downloads
        .read(what, source, out)
        .map_err(|e| Failure::load(format!("{e:#}")).into())
}

/// A WASI command component from a file, for `ferry pipe`: named after the
/// file (its stem is the program's name), granted nothing (no files,
/// environment, network or stores), under `limits`.
pub fn load_command_file(runtime: &Runtime, path: &Path, limits: Limits) -> anyhow::Result<Guest> {
    let wasm = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let id = path
        .file_stem()
        .and_then(|s| s.to_str())
        .filter(|s| !s.is_empty())
        .unwrap_or("command")
        .to_owned();
    let component = Component::granted_nothing(id, Source::File(path.to_owned()));
    let dir = path.parent().unwrap_or(Path::new("."));
    runtime
        .load(
            &component,
            ComponentContext::default(),
            &wasm,
            &ferry_manifest::Executor::Command,
            limits,
            dir,
            None,
        )
        .with_context(|| format!("loading {}", path.display()))
}

/// Compiles (or loads from the cache) every used component, whose Wasm
/// `fetch_sources` got, printing progress to `out`.
pub fn load_guests(
    runtime: &Runtime,
    app: &App,
    sources: &Sources,
    limits: &BTreeMap<String, Limits>,
    mut contexts: BTreeMap<String, ComponentContext>,
    self_addr: Option<SocketAddr>,
    out: &mut dyn std::io::Write,
) -> anyhow::Result<Vec<Guest>> {
    let mut guests = Vec::new();
    for (component, executor) in used_components(app)? {
        let bytes = sources
            .wasm
            .get(&component.id)
            .context("a used component has no Wasm")?;
        let mut context = contexts.remove(&component.id).unwrap_or_default();
        if let Some(composition) = sources.compositions.get(&component.id) {
            context.composition = composition.clone();
        }
        let size = bytes.len() as u64;
        let started = Instant::now();
        let guest = with_progress(&component.id, size, out, || {
            runtime.load(
                component,
                context,
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

/// What loading an app takes besides its files: the defaults a command line
/// (or a host's) gives every component.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Limits for components runtime-config.toml says nothing about.
    pub limits: Limits,
    /// Where compiled code and downloads are cached (none: not at all).
    pub cache_dir: Option<PathBuf>,
    pub max_download_size: u64,
    pub download_timeout: Duration,
    /// Where variables get their values: `ferry up`'s `--variable` flags
    /// and environment, or a live host's per-app values.
    pub variables: crate::variables::Sources,
    /// Environment variables given to every component on top of its own
    /// (`ferry up -e`, Spin's `spin up -e`); a name set both ways takes
    /// this value.
    pub environment: Vec<(String, String)>,
    /// Only these components' triggers run (`ferry up -c`, Spin's `spin up
    /// -c`); empty: all.
    pub component_ids: Vec<String>,
    /// Whether registry packages are fetched with the credentials kept on
    /// this machine: yes for `ferry up`, no on a live host, where a
    /// tenant's manifest must not reach what the host's credentials open.
    pub registry_credentials: bool,
}

/// Everything needed to build an app's guests: the app, each used
/// component's Wasm, its runtime config and each component's limits and
/// variables.
pub struct Prepared {
    pub app: App,
    pub sources: Sources,
    pub config: RuntimeConfig,
    pub limits: BTreeMap<String, Limits>,
    pub variables: BTreeMap<String, ComponentVariables>,
    /// The app's event triggers, their templates filled in.
    pub triggers: Vec<ferry_trigger::Trigger>,
}

/// Reads the app whose manifest is `manifest` (a file or a directory
/// holding one) with its runtime config (`runtime_config`, else the one
/// beside the manifest), resolves its limits and variables and fetches each
/// used component's Wasm, printing download progress to `out`. `rename`
/// gives the app another name than its manifest's (a host's deploy name).
pub fn prepare(
    manifest: &Path,
    runtime_config_file: Option<&Path>,
    rename: Option<&str>,
    settings: &Settings,
    out: &mut dyn std::io::Write,
) -> anyhow::Result<Prepared> {
    // With `-c`, a component left out need not be built: its source may
    // be missing, as long as the chosen ones' are there.
    let mut app = if settings.component_ids.is_empty() {
        ferry_manifest::load_app(manifest)?
    } else {
        ferry_manifest::load_app_to_build(manifest)?
    };
    if let Some(name) = rename {
        name.clone_into(&mut app.name);
    }
    for component in &mut app.components {
        for (key, value) in &settings.environment {
            component.environment.retain(|(k, _)| k != key);
            component.environment.push((key.clone(), value.clone()));
        }
    }
    warn_unused(&app);
    let config = runtime_config(&app, runtime_config_file)?;
    let limits = config.resolve(&app, settings.limits)?;
    // After the runtime config is read against the whole app: it may name
    // components `-c` leaves out.
    if !settings.component_ids.is_empty() {
        app.keep_components(&settings.component_ids)
            .map_err(Failure::usage)?;
        sources_exist(&app)?;
    }
    let given = crate::variables::given(&app, &settings.variables)
        .map_err(|e| Failure::usage(format!("{e:#}")))?;
    let variables = ferry_manifest::resolve_variables(&app, &given)
        .map_err(|missing| Failure::load(settings.variables.missing(&missing)))?;
    for (id, hosts) in
        ferry_manifest::resolve_outbound_templates(&app, &given).map_err(Failure::load)?
    {
        if let Some(component) = app.component_mut(&id) {
            component.allowed_outbound_hosts.extend(hosts);
        }
    }
    let triggers = event_triggers(&app, &given)?;
    // Before the runtime: a download that fails costs no engine set-up.
    let downloads = Downloader::new(
        settings.cache_dir.as_deref(),
        settings.max_download_size,
        settings.download_timeout,
    )
    .with_registry_credentials(settings.registry_credentials);
    let sources = fetch_sources(&app, &downloads, out)?;
    Ok(Prepared {
        app,
        sources,
        config,
        limits,
        variables,
        triggers,
    })
}

/// The app's event triggers with their templates filled in from `given`
/// (and the variables' defaults), each address checked.
fn event_triggers(
    app: &App,
    given: &BTreeMap<String, String>,
) -> anyhow::Result<Vec<ferry_trigger::Trigger>> {
    let render = |template| {
        ferry_manifest::render_template(app, given, template)
            .map_err(|missing| Failure::load(missing.to_string()))
    };
    let mut triggers = Vec::new();
    for trigger in &app.event_triggers {
        let source = match &trigger.source {
            EventSource::Redis { address, channel } => ferry_trigger::Source::Redis {
                address: render(address)?,
                channel: render(channel)?,
            },
            EventSource::Nats {
                url,
                subject,
                stream,
                max_deliver,
                dead_letter,
            } => ferry_trigger::Source::Nats {
                url: render(url)?,
                subject: render(subject)?,
                stream: stream.clone(),
                max_deliver: *max_deliver,
                dead_letter: dead_letter.as_ref().map(&render).transpose()?,
            },
            EventSource::Mqtt { broker, topic, qos } => ferry_trigger::Source::Mqtt {
                address: render(&broker.address)?,
                username: broker.username.as_ref().map(&render).transpose()?,
                password: broker.password.as_ref().map(&render).transpose()?,
                keep_alive: broker.keep_alive,
                topic: render(topic)?,
                qos: *qos,
            },
            EventSource::Cron { schedule } => ferry_trigger::Source::Cron {
                schedule: schedule.clone(),
            },
            // Run by `ferry up` itself, once: not a source of events.
            EventSource::Command | EventSource::Pipeline { .. } => continue,
        };
        source.check().map_err(|e| {
            Failure::load(format!(
                "trigger `{}` (line {}): {e}",
                trigger.id, trigger.line
            ))
        })?;
        triggers.push(ferry_trigger::Trigger {
            id: trigger.id.clone(),
            component: trigger.component.clone(),
            source,
        });
    }
    Ok(triggers)
}

impl Prepared {
    /// The most linear memory any component may have: what the engine's
    /// instance slots must be sized for.
    pub fn max_memory(&self) -> u64 {
        self.limits
            .values()
            .map(|l| l.max_memory)
            .max()
            .unwrap_or(128 << 20)
    }
}

/// How far [`Assembler::assemble`] goes with an app's stores.
pub enum Mode<'a> {
    /// `ferry check`: stores are checked, never opened, and nothing is
    /// written anywhere.
    Check,
    /// To serve: stores with no place of their own in runtime-config.toml
    /// are opened in `data` — or, on a cluster (`cluster`), the `default`
    /// key-value store on its NATS servers, and SQLite databases only where
    /// marked node-local; the result succeeds `previous` (see
    /// [`LoadedApp::succeeding`]).
    Serve {
        data: &'a Path,
        previous: Option<&'a LoadedApp>,
        cluster: Option<&'a ferry_store::NatsDatabase>,
    },
}

/// Assembles apps for one engine (and listener): what `ferry check`,
/// `ferry up` and a live host share.
pub struct Assembler {
    pub runtime: Arc<Runtime>,
    /// The apps listener, for `http://self` (none for `ferry check`).
    pub local: Option<SocketAddr>,
    /// The runtime the stores and the server's admission live on. It must
    /// be driven by another thread while [`Assembler::assemble`] runs (see
    /// [`off_runtime`]).
    pub tokio: tokio::runtime::Handle,
    /// Where each component's compile (or cache load) and each store's
    /// calls are counted.
    pub metrics: Option<Arc<crate::metrics::Metrics>>,
    /// What decided the engine's instance size, for the error when an app
    /// needs more.
    pub sized_by: SizedBy,
    /// Whether event trigger invocations record spans (the server's
    /// requests do where its table was made with traces on).
    pub traces: bool,
}

/// What decided how much memory the engine's instance slots have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SizedBy {
    /// The operator: `ferry serve --max-memory`.
    Flag,
    /// The app as it was first loaded (`ferry up`, `ferry check`).
    FirstLoad,
}

impl Assembler {
    /// The app `prepared` ready to serve: its components compiled (or
    /// loaded from the cache) with their stores, printing each compile to
    /// `out`. Refuses an app whose components need more memory than the
    /// engine's instance slots have. Called off the runtime's threads.
    pub fn assemble(
        &self,
        prepared: &Prepared,
        mode: Mode<'_>,
        out: &mut dyn std::io::Write,
    ) -> anyhow::Result<Assembled> {
        let engine_memory = self.runtime.options().max_memory;
        if prepared.max_memory() > engine_memory {
            let (needed, engine) = (human_size(prepared.max_memory()), human_size(engine_memory));
            return Err(Failure::load(match self.sized_by {
                SizedBy::Flag => format!(
                    "a component's `max_memory` ({needed}) is above this host's --max-memory ({engine})"
                ),
                SizedBy::FirstLoad => format!(
                    "a component's `max_memory` ({needed}) is above what this process's engine was \
                     started with ({engine}); restart `ferry up` to raise it"
                ),
            })
            .into());
        }
        let (data, previous, cluster) = match mode {
            Mode::Check => (None, None, None),
            Mode::Serve {
                data,
                previous,
                cluster,
            } => (Some(data), previous, cluster),
        };
        let app = &prepared.app;
        // On a cluster, a Redis, MQTT or cron trigger runs on the one node
        // holding the app's lease (`Host::lead_triggers`), not on each.
        let mut key_value = self.tokio.block_on(stores::key_value_stores(
            app,
            &prepared.config,
            data,
            cluster,
        ))?;
        let sqlite = stores::sqlite_databases(app, &prepared.config, data, cluster.is_some())?;
        if let Some(metrics) = &self.metrics {
            for granted in key_value.values_mut() {
                for (label, store) in granted.iter_mut() {
                    *store = crate::metered::MeteredKeyValue::wrap(
                        store.clone(),
                        metrics.clone(),
                        &app.name,
                        label,
                    );
                }
            }
            for (label, database) in sqlite.values().flatten() {
                database.observe(crate::metered::sql_observer(
                    metrics.clone(),
                    &app.name,
                    label,
                ));
            }
        }
        let _enter = self.tokio.enter();
        let guests = load_guests(
            &self.runtime,
            app,
            &prepared.sources,
            &prepared.limits,
            stores::component_contexts(&prepared.variables, key_value, sqlite),
            self.local,
            out,
        )?;
        if let Some(metrics) = &self.metrics {
            for guest in &guests {
                let compile = &guest.info().compile;
                metrics.component_loaded(compile.from_cache, compile.elapsed);
            }
        }
        // Event guests run beside the server, not behind a route; a
        // command is run by `ferry up` itself.
        let (commands, guests): (Vec<Guest>, Vec<Guest>) =
            guests.into_iter().partition(Guest::is_command);
        let (events, http): (Vec<Guest>, Vec<Guest>) =
            guests.into_iter().partition(|g| g.event_export().is_some());
        let loaded = LoadedApp::succeeding(previous, app, http)?;
        let events: Vec<Arc<Guest>> = events.into_iter().map(Arc::new).collect();
        let triggers = prepared
            .triggers
            .iter()
            .map(|trigger| {
                let guest = events
                    .iter()
                    .find(|g| g.id() == trigger.component)
                    .context("an event trigger's component was not loaded")?;
                Ok((trigger.clone(), guest.clone()))
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(Assembled {
            triggers: ferry_trigger::Triggers::new(&app.name, loaded.incarnation(), triggers),
            app: loaded,
            commands,
        })
    }
}

/// One version of an app, assembled: what the server serves, and the
/// event triggers that run beside it.
pub struct Assembled {
    pub app: LoadedApp,
    pub triggers: ferry_trigger::Triggers,
    /// The `[[trigger.command]]` component, or the components of the
    /// `[[trigger.pipeline]]`, which `ferry up` runs once.
    pub commands: Vec<Guest>,
}

/// Runs `work` on another thread while this one drives `tokio`, for a
/// caller that owns a runtime nothing else drives yet (`ferry check`,
/// `ferry up` before it serves): [`Assembler::assemble`] waits on the
/// runtime from outside it.
pub fn off_runtime<T: Send>(tokio: &tokio::runtime::Runtime, work: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|scope| {
        let (done, result) = tokio::sync::oneshot::channel();
        let worker = scope.spawn(move || {
            let _ = done.send(work());
        });
        match tokio.block_on(result) {
            Ok(value) => value,
            // It panicked: the panic is the error to report.
            Err(_) => std::panic::resume_unwind(
                worker
                    .join()
                    .expect_err("a worker that sent nothing panicked"),
            ),
        }
    })
}
