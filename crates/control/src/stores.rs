//! The stores an app's components are granted, opened (or, for `ferry
//! check`, only checked) as its manifest and runtime config name them:
//! key-value stores and SQLite databases, shared between the versions of
//! one app, plus `ferry up`'s `--key-value` and `--sqlite` seeding.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;
use ferry_manifest::{
    App, ComponentVariables, KeyValueStoreConfig, RuntimeConfig, SqliteDatabaseConfig,
};
use ferry_runtime::ComponentContext;

use crate::assemble::{Prepared, used_components};
use ferry_api::Failure;

/// Granted key-value stores, by component and then label.
pub type KeyValueStores = BTreeMap<String, BTreeMap<String, Arc<dyn ferry_store::KeyValue>>>;

/// The key-value stores each used component was granted: each label's
/// backend from `runtime-config.toml`, `default` in `<state dir>/key_value.db`
/// unless configured — or on a cluster's NATS servers (`cluster`). Without
/// a state directory (`ferry check`) nothing is opened: the labels are only
/// checked.
pub async fn key_value_stores(
    app: &App,
    config: &RuntimeConfig,
    state_dir: Option<&Path>,
    cluster: Option<&ferry_store::NatsDatabase>,
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
                        "component `{}` uses the key-value store `{label}`, which runtime-config.toml does not define: add `[key_value_store.{label}]` with `type = \"spin\"`, `type = \"redis\"` or `type = \"nats\"`",
                        component.id
                    ))
                    .into());
                }
            };
            let Some(state_dir) = state_dir else {
                continue;
            };
            if let Some(cluster) = cluster
                && !config.key_value_stores.contains_key(label)
            {
                stores.insert(label.clone(), cluster.store(&app.name, label));
                continue;
            }
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
/// writer thread per SQLite file, one connection per Redis or NATS URL.
#[derive(Default)]
struct KeyValueBackends {
    files: BTreeMap<PathBuf, ferry_store::SqliteDatabase>,
    servers: BTreeMap<String, ferry_store::RedisDatabase>,
    nats: BTreeMap<String, ferry_store::NatsDatabase>,
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
            KeyValueStoreConfig::Nats { url } => {
                if !self.nats.contains_key(&url) {
                    let servers = ferry_store::NatsDatabase::connect(&url)
                        .await
                        .map_err(|e| Failure::load(format!("key-value store `{label}`: {e}")))?;
                    self.nats.insert(url.clone(), servers);
                }
                self.nats[&url].store(&app.name, label)
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
        Some(SqliteDatabaseConfig {
            path: Some(path), ..
        }) => Some(path.clone()),
        Some(SqliteDatabaseConfig { path: None, .. }) => {
            Some(default_sqlite_path(app, state_dir, label))
        }
        None if label == "default" => Some(default_sqlite_path(app, state_dir, label)),
        None => None,
    }
}

fn default_sqlite_path(app: &App, state_dir: &Path, label: &str) -> PathBuf {
    let name = ferry_manifest::plain_name(&app.name);
    state_dir
        .join("sqlite")
        .join(name)
        .join(format!("{label}.db"))
}

/// The SQLite databases each used component was granted, as
/// [`key_value_stores`] does for stores: opened when there is a state
/// directory, only checked without one.
///
/// On a cluster (`cluster`), a database not marked `node_local = true` is
/// refused: each node would keep a database of its own, and a user would
/// see as many as there are nodes.
pub fn sqlite_databases(
    app: &App,
    config: &RuntimeConfig,
    state_dir: Option<&Path>,
    cluster: bool,
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
            let node_local = config
                .sqlite_databases
                .get(label)
                .is_some_and(|database| database.node_local);
            if cluster && !node_local {
                return Err(Failure::load(format!(
                    "component `{}` uses the SQLite database `{label}`, which a cluster does not replicate: each node would keep its own. Add `node_local = true` to `[sqlite_database.{label}]` in runtime-config.toml if that is what you want, or keep the data in a key-value store",
                    component.id
                ))
                .into());
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
                composition: Default::default(),
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
