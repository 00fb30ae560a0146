//! Turning a manifest into loaded guests, with progress for people.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use ferry_manifest::{
    App, Component, ComponentVariables, Executor, Handler, KeyValueStoreConfig, Limits,
    RuntimeConfig, Source, SqliteDatabaseConfig,
};
use ferry_runtime::{ComponentContext, Guest, Runtime};
use ferry_server::AppHost;

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

/// Granted key-value stores, by component and then label.
pub type KeyValueStores = BTreeMap<String, BTreeMap<String, Arc<dyn ferry_store::KeyValue>>>;

/// The key-value stores each used component was granted: each label's
/// backend from `runtime-config.toml`, `default` in `<state dir>/key_value.db`
/// unless configured. Without a state directory (`ferry check`) nothing is
/// opened: the labels are only checked.
pub async fn key_value_stores(
    app: &App,
    config: &RuntimeConfig,
    state_dir: Option<&Path>,
) -> anyhow::Result<KeyValueStores> {
    let mut backends = KeyValueBackends::default();
    let mut granted = BTreeMap::new();
    for (component, _) in used_components(app)? {
        let mut stores = BTreeMap::new();
        for label in &component.key_value_stores {
            let backend = match key_value_backend(config, label) {
                Some(backend) => backend,
                None => {
                    return Err(Failure::load(format!(
                        "component `{}` uses the key-value store `{label}`, which runtime-config.toml does not define: add `[key_value_store.{label}]` with `type = \"spin\"` or `type = \"redis\"`",
                        component.id
                    ))
                    .into());
                }
            };
            let Some(state_dir) = state_dir else {
                continue;
            };
            let store = backends.store(app, label, backend, state_dir).await?;
            stores.insert(label.clone(), store);
        }
        granted.insert(component.id.clone(), stores);
    }
    Ok(granted)
}

/// Where the store `label` lives: its `runtime-config.toml` table, else
/// embedded SQLite in the state directory for `default`. `None`: the label
/// has no configuration and is not `default`.
fn key_value_backend(config: &RuntimeConfig, label: &str) -> Option<KeyValueStoreConfig> {
    match config.key_value_stores.get(label) {
        Some(backend) => Some(backend.clone()),
        None => (label == "default").then_some(KeyValueStoreConfig::Sqlite { path: None }),
    }
}

/// Key-value backends opened so far, each shared by every label on it: one
/// writer thread per SQLite file, one connection per Redis URL.
#[derive(Default)]
struct KeyValueBackends {
    files: BTreeMap<PathBuf, ferry_store::SqliteDatabase>,
    servers: BTreeMap<String, ferry_store::RedisDatabase>,
}

impl KeyValueBackends {
    /// The store `label` of `app` on `backend` (opening the backend the
    /// first time): a SQLite file without a path is
    /// `<state dir>/key_value.db`.
    async fn store(
        &mut self,
        app: &App,
        label: &str,
        backend: KeyValueStoreConfig,
        state_dir: &Path,
    ) -> anyhow::Result<Arc<dyn ferry_store::KeyValue>> {
        Ok(match backend {
            KeyValueStoreConfig::Sqlite { path } => {
                let path = match path {
                    Some(path) => path,
                    None => {
                        create_private_dir(state_dir)?;
                        state_dir.join("key_value.db")
                    }
                };
                if !self.files.contains_key(&path) {
                    let db = ferry_store::SqliteDatabase::open(&path).map_err(|e| {
                        Failure::load(format!(
                            "key-value store `{label}`: cannot open {}: {e}",
                            path.display()
                        ))
                    })?;
                    self.files.insert(path.clone(), db);
                }
                self.files[&path].store(&app.name, label)
            }
            KeyValueStoreConfig::Redis { url } => {
                if !self.servers.contains_key(&url) {
                    let server = ferry_store::RedisDatabase::connect(&url)
                        .await
                        .map_err(|e| {
                            Failure::load(format!(
                                "key-value store `{label}`: cannot connect to {}: {e}",
                                ferry_manifest::redacted(&url)
                            ))
                        })?;
                    self.servers.insert(url.clone(), server);
                }
                self.servers[&url].store(&app.name, label)
            }
        })
    }
}

/// Granted SQLite databases, by component and then label.
pub type SqliteDatabases = BTreeMap<String, BTreeMap<String, Arc<ferry_store::SqlDatabase>>>;

/// Where the database `label` of `app` lives: its `runtime-config.toml`
/// path, else `<state dir>/sqlite/<app>/<label>.db` (the app's name in the
/// path keeps two apps sharing a state directory apart). `None`: the label
/// has no configuration and is not `default`.
fn sqlite_path(
    app: &App,
    config: &RuntimeConfig,
    state_dir: &Path,
    label: &str,
) -> Option<PathBuf> {
    match config.sqlite_databases.get(label) {
        Some(SqliteDatabaseConfig { path: Some(path) }) => Some(path.clone()),
        Some(SqliteDatabaseConfig { path: None }) => {
            Some(default_sqlite_path(app, state_dir, label))
        }
        None if label == "default" => Some(default_sqlite_path(app, state_dir, label)),
        None => None,
    }
}

fn default_sqlite_path(app: &App, state_dir: &Path, label: &str) -> PathBuf {
    let name: String = app
        .name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    state_dir
        .join("sqlite")
        .join(name)
        .join(format!("{label}.db"))
}

/// The SQLite databases each used component was granted, as
/// [`key_value_stores`] does for stores: opened when there is a state
/// directory, only checked without one.
pub fn sqlite_databases(
    app: &App,
    config: &RuntimeConfig,
    state_dir: Option<&Path>,
) -> anyhow::Result<SqliteDatabases> {
    let mut opened: BTreeMap<PathBuf, Arc<ferry_store::SqlDatabase>> = BTreeMap::new();
    let mut granted = BTreeMap::new();
    for (component, _) in used_components(app)? {
        let mut databases = BTreeMap::new();
        for label in &component.sqlite_databases {
            let path = sqlite_path(app, config, state_dir.unwrap_or(Path::new(".")), label)
                .ok_or_else(|| {
                    Failure::load(format!(
                        "component `{}` uses the SQLite database `{label}`, which runtime-config.toml does not define: add `[sqlite_database.{label}]` with `type = \"spin\"`",
                        component.id
                    ))
                })?;
            if state_dir.is_none() {
                continue;
            }
            let database = match opened.get(&path) {
                Some(database) => database.clone(),
                None => {
                    let database = Arc::new(open_sqlite(&path, label)?);
                    opened.insert(path, database.clone());
                    database
                }
            };
            databases.insert(label.clone(), database);
        }
        granted.insert(component.id.clone(), databases);
    }
    Ok(granted)
}

fn open_sqlite(path: &Path, label: &str) -> anyhow::Result<ferry_store::SqlDatabase> {
    if let Some(dir) = path.parent() {
        create_private_dir(dir)?;
    }
    Ok(ferry_store::SqlDatabase::open(path).map_err(|e| {
        Failure::load(format!(
            "SQLite database `{label}`: cannot open {}: {e}",
            path.display()
        ))
    })?)
}

/// `ferry up --sqlite STATEMENT` / `--sqlite @FILE`: runs each against the
/// app's `default` database before anything is served, in order, as Spin's
/// flag does (migrations).
pub async fn run_sqlite_statements(
    app: &App,
    config: &RuntimeConfig,
    state_dir: &Path,
    statements: &[String],
) -> anyhow::Result<()> {
    if statements.is_empty() {
        return Ok(());
    }
    let path = sqlite_path(app, config, state_dir, "default")
        .ok_or_else(|| Failure::load("the app has no `default` SQLite database".into()))?;
    let database = open_sqlite(&path, "default")?;
    for statement in statements {
        let (script, shown) = match statement.strip_prefix('@') {
            Some(file) => (
                std::fs::read_to_string(file).map_err(|e| {
                    Failure::usage(format!("`--sqlite @{file}`: cannot read {file}: {e}"))
                })?,
                format!("@{file}"),
            ),
            None => (statement.clone(), "the statement".to_owned()),
        };
        database
            .execute_batch(script)
            .await
            .map_err(|e| Failure::load(format!("`--sqlite` ({shown}) failed: {e}")))?;
    }
    Ok(())
}

/// `ferry up --key-value KEY=VALUE`: sets each pair in the app's `default`
/// store (where `runtime-config.toml` puts it, else in the state directory)
/// before anything is served, as Spin's flag does.
pub async fn seed_default_store(
    app: &App,
    config: &RuntimeConfig,
    state_dir: &Path,
    pairs: &[String],
) -> anyhow::Result<()> {
    if pairs.is_empty() {
        return Ok(());
    }
    let mut entries = Vec::new();
    for pair in pairs {
        let Some((key, value)) = pair.split_once('=') else {
            return Err(Failure::usage(format!("`--key-value {pair}`: expected KEY=VALUE")).into());
        };
        entries.push((key.to_owned(), value.as_bytes().to_vec()));
    }
    let backend = key_value_backend(config, "default")
        .ok_or_else(|| Failure::load("the app has no `default` key-value store".into()))?;
    KeyValueBackends::default()
        .store(app, "default", backend, state_dir)
        .await?
        .set_many(entries)
        .await
        .map_err(|e| Failure::load(format!("`--key-value`: {e}")))?;
    Ok(())
}

/// Each component's context: its resolved variables and granted stores.
pub fn component_contexts(
    variables: &BTreeMap<String, ComponentVariables>,
    mut key_value: KeyValueStores,
    mut sqlite: SqliteDatabases,
) -> BTreeMap<String, ComponentContext> {
    variables
        .iter()
        .map(|(id, variables)| {
            let context = ComponentContext {
                variables: variables.clone(),
                key_value: key_value.remove(id).unwrap_or_default(),
                sqlite: sqlite.remove(id).unwrap_or_default(),
            };
            (id.clone(), context)
        })
        .collect()
}

/// Creates `dir` (and its parents) readable by this user only.
fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::DirBuilderExt as _;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| {
            Failure::load(format!(
                "cannot create the state directory {}: {e}",
                dir.display()
            ))
        })?;
    Ok(())
}

/// On a live host, where `runtime-config.toml` came in a bundle: moves
/// every store's and database's `path` into the app's data directory
/// `data` — a relative path `P` names `data/P` (see
/// [`RuntimeConfig::confine_paths`]) — and refuses, naming the field, one
/// that is absolute, climbs out through `..`, or leads out through a link.
/// A file the bundle ships at that path (beside the config) is copied
/// there the first time, so the app writes its own copy, never the blob
/// its version was laid out from, which other versions and apps share.
/// `ferry up` keeps these paths beside the config file, as Spin does.
pub fn confine_data_paths(prepared: &mut Prepared, data: &Path) -> anyhow::Result<()> {
    const RULE: &str = "on a live host a `path` in runtime-config.toml names a file in the app's own data directory: write it relative, without `..` leading out";
    let confined = prepared.config.confine_paths(data).map_err(|outside| {
        let fields: Vec<String> = outside
            .iter()
            .map(|p| {
                format!(
                    "`{}`: `{}` is outside the app's data directory",
                    p.field,
                    p.written.display()
                )
            })
            .collect();
        Failure::load(format!("{} ({RULE})", fields.join("; ")))
    })?;
    if confined.is_empty() {
        return Ok(());
    }
    create_private_dir(data)?;
    let root = data
        .canonicalize()
        .with_context(|| format!("opening {}", data.display()))?;
    for path in &confined {
        if !resolves_inside(&path.confined, &root) {
            return Err(Failure::load(format!(
                "`{}`: `{}` leads outside the app's data directory through a link ({RULE})",
                path.field,
                path.written.display()
            ))
            .into());
        }
        if let Some(dir) = path.confined.parent() {
            create_private_dir(dir)?;
        }
        copy_if_absent(&path.beside_config, &path.confined).map_err(|e| {
            Failure::load(format!(
                "`{}`: cannot copy the bundle's `{}` into the app's data directory: {e:#}",
                path.field,
                path.written.display()
            ))
        })?;
    }
    Ok(())
}

/// Whether `path`, with every link on the way resolved, is inside `root`
/// (itself resolved): checked on the deepest part of `path` that exists,
/// since what does not exist yet cannot be a link.
fn resolves_inside(path: &Path, root: &Path) -> bool {
    let mut existing = path;
    while existing.symlink_metadata().is_err() {
        match existing.parent() {
            Some(parent) => existing = parent,
            None => return false,
        }
    }
    existing
        .canonicalize()
        .is_ok_and(|real| real.starts_with(root))
}

/// Copies the regular file `from` to `to` unless `to` exists (or `from` is
/// not a file), by way of a temporary file flushed to disk, so `to` is
/// always whole.
fn copy_if_absent(from: &Path, to: &Path) -> anyhow::Result<()> {
    let is_file = from.symlink_metadata().is_ok_and(|m| m.is_file());
    if !is_file || to.symlink_metadata().is_ok() {
        return Ok(());
    }
    let dir = to.parent().context("a path with no directory")?;
    let tmp = dir.join(format!(
        ".tmp-copy-{}-{}",
        std::process::id(),
        to.file_name().unwrap_or_default().to_string_lossy()
    ));
    let result = (|| {
        std::fs::copy(from, &tmp)?;
        std::fs::File::open(&tmp)?.sync_all()?;
        std::fs::rename(&tmp, to)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    Ok(result?)
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
            tracing::warn!(
                component = component.id.as_str(),
                "no trigger uses this component; it is not loaded"
            );
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
    mut contexts: BTreeMap<String, ComponentContext>,
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
                contexts.remove(&component.id).unwrap_or_default(),
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
}

/// Everything needed to build an app's guests: the app, each used
/// component's Wasm, its runtime config and each component's limits and
/// variables.
pub struct Prepared {
    pub app: App,
    pub wasm: BTreeMap<String, Vec<u8>>,
    pub config: RuntimeConfig,
    pub limits: BTreeMap<String, Limits>,
    pub variables: BTreeMap<String, ComponentVariables>,
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
    let mut app = ferry_manifest::load_app(manifest)?;
    if let Some(name) = rename {
        name.clone_into(&mut app.name);
    }
    warn_unused(&app);
    let config = runtime_config(&app, runtime_config_file)?;
    let limits = config.resolve(&app, settings.limits)?;
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
    // Before the runtime: a download that fails costs no engine set-up.
    let downloads = Downloader::new(
        settings.cache_dir.as_deref(),
        settings.max_download_size,
        settings.download_timeout,
    );
    let wasm = fetch_sources(&app, &downloads, out)?;
    Ok(Prepared {
        app,
        wasm,
        config,
        limits,
        variables,
    })
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

/// Builds [`AppHost`]s for one engine and listener: what `ferry up` and a
/// live host share.
pub struct Assembler {
    pub runtime: Arc<Runtime>,
    /// The apps listener, for `http://self`.
    pub local: SocketAddr,
    /// The runtime the stores and the server's admission live on.
    pub tokio: tokio::runtime::Handle,
    /// Where each component's compile (or cache load) is counted.
    pub metrics: Option<Arc<crate::metrics::Metrics>>,
}

impl Assembler {
    /// The key-value stores `prepared` grants, with `state_dir` for those
    /// runtime-config.toml gives no place (opened, or shared with the
    /// version already running).
    pub async fn key_value_stores(
        &self,
        prepared: &Prepared,
        state_dir: &Path,
    ) -> anyhow::Result<KeyValueStores> {
        let mut stores = key_value_stores(&prepared.app, &prepared.config, Some(state_dir)).await?;
        if let Some(metrics) = &self.metrics {
            for granted in stores.values_mut() {
                for (label, store) in granted.iter_mut() {
                    *store = crate::metered::MeteredKeyValue::wrap(
                        store.clone(),
                        metrics.clone(),
                        &prepared.app.name,
                        label,
                    );
                }
            }
        }
        Ok(stores)
    }

    /// An [`AppHost`] for `prepared` with its stores, succeeding `previous`
    /// (see [`AppHost::succeeding`]), printing each component's compile to
    /// `out`. Called off the runtime's threads.
    pub fn host(
        &self,
        prepared: &Prepared,
        state_dir: &Path,
        key_value: KeyValueStores,
        previous: Option<&AppHost>,
        out: &mut dyn std::io::Write,
    ) -> anyhow::Result<AppHost> {
        let sqlite = sqlite_databases(&prepared.app, &prepared.config, Some(state_dir))?;
        if let Some(metrics) = &self.metrics {
            for (label, database) in sqlite.values().flatten() {
                database.observe(crate::metered::sql_observer(
                    metrics.clone(),
                    &prepared.app.name,
                    label,
                ));
            }
        }
        let _enter = self.tokio.enter();
        let guests = load_guests(
            &self.runtime,
            &prepared.app,
            &prepared.wasm,
            &prepared.limits,
            component_contexts(&prepared.variables, key_value, sqlite),
            Some(self.local),
            out,
        )?;
        if let Some(metrics) = &self.metrics {
            for guest in &guests {
                let compile = &guest.info().compile;
                metrics.component_loaded(compile.from_cache, compile.elapsed);
            }
        }
        AppHost::succeeding(previous, &prepared.app, guests)
    }
}

/// A component's `files` entries as `ferry check` and `ferry app show` list
/// them: each source (relative to `dir`, the app directory) and where the
/// guest sees it.
pub fn described_files(component: &Component, dir: &Path) -> Vec<String> {
    component
        .files
        .iter()
        .map(|f| match f {
            ferry_manifest::FileMount::Glob(g) => format!("{g} -> /"),
            ferry_manifest::FileMount::Directory {
                source,
                destination,
            }
            | ferry_manifest::FileMount::File {
                source,
                destination,
            } => format!("{} -> {destination}", relative(dir, source)),
        })
        .collect()
}

/// A component's variables as resolved, `key = value`; a secret's value is
/// never shown.
pub fn described_variables(variables: Option<&ComponentVariables>) -> Vec<String> {
    variables
        .into_iter()
        .flat_map(|v| v.shown())
        .map(|(key, value)| format!("{key} = {value}"))
        .collect()
}

/// `path` relative to `dir` if it is inside it, for people.
pub fn relative(dir: &Path, path: &Path) -> String {
    path.strip_prefix(dir).unwrap_or(path).display().to_string()
}
