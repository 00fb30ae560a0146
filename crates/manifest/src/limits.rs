//! Per-component limits and `runtime-config.toml`, which sets them.
//!
//! The defaults come from `ferry up`'s flags; `runtime-config.toml` may
//! override them for every component (`[limits]`) or one
//! (`[component.<id>.limits]`):
//!
//! ```toml
//! [limits]
//! max_memory = "64 MiB"
//! request_timeout = "10s"
//!
//! [component.upload.limits]
//! max_request_body = "100 MiB"
//! max_concurrent_requests = 4
//! max_queued_requests = 100
//! queue_timeout = "2s"
//! ```

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use toml::de::{DeTable, DeValue};

use crate::walk::{Diagnostics, TableView, Value};
use crate::{App, Diagnostic, ManifestError};

/// Why `[[variables_provider]]` (Vault, Azure Key Vault) is refused.
const VARIABLE_PROVIDERS: &str = "Ferry takes variable values from `--variable`, `SPIN_VARIABLE_<NAME>` / `FERRY_VARIABLE_<NAME>` environment variables and the `.env` file beside the manifest; Vault and Azure Key Vault providers are not supported";

/// The limits one component runs under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Linear memory per instance, in bytes.
    pub max_memory: u64,
    /// Wall-clock time for one request, guest execution and body included.
    pub request_timeout: Duration,
    /// Request body size, in bytes (413 beyond it).
    pub max_request_body: u64,
    /// Response body size, in bytes; `None`: a streamed response is never
    /// cut (streaming holds no more than a chunk in memory), and a WAGI
    /// guest's output, which is buffered, is bounded by
    /// [`WAGI_MAX_OUTPUT`].
    pub max_response_body: Option<u64>,
    /// Requests one component runs at once; more wait in its queue.
    pub max_concurrent_requests: usize,
    /// Requests that may wait for one of the component's slots (503 beyond
    /// it). A waiting request holds no instance.
    pub max_queued_requests: usize,
    /// How long a request may wait in the queue (503 beyond it).
    pub queue_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_memory: 128 << 20,
            request_timeout: Duration::from_secs(30),
            max_request_body: 10 << 20,
            max_response_body: None,
            max_concurrent_requests: 256,
            max_queued_requests: 4096,
            queue_timeout: Duration::from_secs(10),
        }
    }
}

/// The most output a WAGI guest may print when no response limit is set: its
/// output is held in memory until the guest exits, so it is always bounded.
pub const WAGI_MAX_OUTPUT: u64 = 32 << 20;

impl Limits {
    /// The response size a WAGI guest's buffered output is held to.
    pub fn wagi_max_output(&self) -> u64 {
        self.max_response_body.unwrap_or(WAGI_MAX_OUTPUT)
    }
}

/// Limits that a config file sets; `None` keeps the value beneath.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LimitsOverride {
    pub max_memory: Option<u64>,
    pub request_timeout: Option<Duration>,
    pub max_request_body: Option<u64>,
    pub max_response_body: Option<u64>,
    pub max_concurrent_requests: Option<usize>,
    pub max_queued_requests: Option<usize>,
    pub queue_timeout: Option<Duration>,
}

impl LimitsOverride {
    pub fn apply(&self, base: Limits) -> Limits {
        Limits {
            max_memory: self.max_memory.unwrap_or(base.max_memory),
            request_timeout: self.request_timeout.unwrap_or(base.request_timeout),
            max_request_body: self.max_request_body.unwrap_or(base.max_request_body),
            max_response_body: self.max_response_body.or(base.max_response_body),
            max_concurrent_requests: self
                .max_concurrent_requests
                .unwrap_or(base.max_concurrent_requests),
            max_queued_requests: self.max_queued_requests.unwrap_or(base.max_queued_requests),
            queue_timeout: self.queue_timeout.unwrap_or(base.queue_timeout),
        }
    }
}

/// Where a key-value store's data lives: `[key_value_store.<label>]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyValueStoreConfig {
    /// `type = "spin"`: embedded SQLite, at `path` (relative to the config
    /// file's directory) or, without one, in the app's state directory.
    Sqlite { path: Option<std::path::PathBuf> },
    /// `type = "redis"`: a Redis server, `url = "redis://…"`.
    Redis { url: String },
    /// `type = "nats"`: NATS JetStream, `url = "nats://…[,nats://…]"`
    /// (every server of the cluster, or some), a bucket per app and label.
    Nats { url: String },
}

/// Where a SQLite database lives: `[sqlite_database.<label>]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqliteDatabaseConfig {
    /// `type = "spin"`'s `path` (relative to the config file's directory);
    /// without one, the app's state directory.
    pub path: Option<std::path::PathBuf>,
    /// `node_local = true`: on a cluster, each node keeps a database of its
    /// own, on purpose (without it a cluster refuses the app: SQLite is not
    /// replicated).
    pub node_local: bool,
}

/// A parsed `runtime-config.toml`.
#[derive(Debug, Clone, Default)]
pub struct RuntimeConfig {
    pub limits: LimitsOverride,
    /// `[key_value_store.<label>]`, by label.
    pub key_value_stores: BTreeMap<String, KeyValueStoreConfig>,
    /// `[sqlite_database.<label>]`, by label.
    pub sqlite_databases: BTreeMap<String, SqliteDatabaseConfig>,
    components: BTreeMap<String, (Range<usize>, LimitsOverride)>,
    origin: Option<(std::path::PathBuf, std::sync::Arc<str>)>,
    /// Each store's and database's `path` as the file wrote it, by field
    /// ([`path_field`]), before [`load`](Self::load) resolved it.
    written: BTreeMap<String, PathBuf>,
}

/// A `path` of `runtime-config.toml` that [`RuntimeConfig::confine_paths`]
/// moved inside its root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfinedPath {
    /// The field, as people read it: `[sqlite_database.default] path`.
    pub field: String,
    /// The path as the file wrote it.
    pub written: PathBuf,
    /// Where it is now: inside the root, with `.` and `..` resolved.
    pub confined: PathBuf,
    /// What the same relative path names beside the config file (where
    /// it pointed before).
    pub beside_config: PathBuf,
}

/// A `path` that [`RuntimeConfig::confine_paths`] refused: absolute, or
/// leading out of the root through `..`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutsidePath {
    /// The field, as people read it: `[sqlite_database.default] path`.
    pub field: String,
    /// The path as the file wrote it.
    pub written: PathBuf,
}

/// How `[<table>.<label>] path` is named in messages.
fn path_field(table: &str, label: &str) -> String {
    format!("[{table}.{label}] path")
}

/// `path` with `.` dropped and each `..` cancelling the name before it,
/// if it is relative and never climbs above where it starts; `None` for an
/// absolute path, one that leads out, or one that names its start itself.
/// Lexical only: it reads no file system.
pub fn normalize_relative(path: &Path) -> Option<PathBuf> {
    let mut parts = Vec::new();
    for component in path.components() {
        match component {
            Component::Normal(name) => parts.push(name),
            Component::CurDir => {}
            Component::ParentDir => {
                parts.pop()?;
            }
            Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    (!parts.is_empty()).then(|| parts.iter().collect())
}

impl RuntimeConfig {
    pub fn load(path: &Path) -> Result<Self, ManifestError> {
        let text = std::fs::read_to_string(path).map_err(|e| ManifestError::io(path, e))?;
        let mut config = Self::parse(&text).map_err(|d| ManifestError::invalid(path, &text, d))?;
        config.resolve_paths(path.parent().unwrap_or(Path::new(".")));
        config.origin = Some((path.to_owned(), text.into()));
        Ok(config)
    }

    pub fn parse(text: &str) -> Result<Self, Vec<Diagnostic>> {
        let doc = DeTable::parse(text).map_err(|e| vec![crate::toml_error(&e)])?;
        let mut diags = Diagnostics::default();
        let mut root = TableView::new(doc.get_ref(), doc.span(), "");
        let mut config = RuntimeConfig::default();
        if let Some(mut limits) = root.table(&mut diags, "limits") {
            config.limits = read_limits(&mut diags, &mut limits);
            limits.finish(&mut diags, &[]);
        }
        if let Some(mut components) = root.table(&mut diags, "component") {
            for id in components.key_names() {
                let Some(mut component) = components.table(&mut diags, &id) else {
                    continue;
                };
                let span = components.key_span(&id).unwrap_or(component.span.clone());
                let mut overrides = LimitsOverride::default();
                if let Some(mut limits) = component.table(&mut diags, "limits") {
                    overrides = read_limits(&mut diags, &mut limits);
                    limits.finish(&mut diags, &[]);
                }
                component.finish(&mut diags, &[]);
                config.components.insert(id, (span, overrides));
            }
            components.finish(&mut diags, &[]);
        }
        config.key_value_stores = read_labelled(
            &mut diags,
            &mut root,
            "key_value_store",
            read_key_value_store,
        );
        config.sqlite_databases = read_labelled(
            &mut diags,
            &mut root,
            "sqlite_database",
            read_sqlite_database,
        );
        for (label, store) in &config.key_value_stores {
            if let KeyValueStoreConfig::Sqlite { path: Some(path) } = store {
                let field = path_field("key_value_store", label);
                config.written.insert(field, path.clone());
            }
        }
        for (label, database) in &config.sqlite_databases {
            if let Some(path) = &database.path {
                let field = path_field("sqlite_database", label);
                config.written.insert(field, path.clone());
            }
        }
        root.finish(
            &mut diags,
            &[
                ("llm_compute", "Ferry has no AI models"),
                ("variables_provider", VARIABLE_PROVIDERS),
                ("config_provider", VARIABLE_PROVIDERS),
            ],
        );
        if !diags.has_errors() {
            Ok(config)
        } else {
            Err(diags.errors)
        }
    }

    /// Re-roots every store's and database's `path` under `root` instead of
    /// the config file's directory (a live host keeps an app's files in the
    /// app's data directory): a relative path `P` names `root/P`, with `.`
    /// and `..` resolved first (see [`normalize_relative`]). Refused, changing
    /// nothing: every absolute path, and every path whose `..` leads out of
    /// `root`. Lexical only: the caller checks links on the file system.
    pub fn confine_paths(&mut self, root: &Path) -> Result<Vec<ConfinedPath>, Vec<OutsidePath>> {
        let dir = self
            .origin
            .as_ref()
            .and_then(|(path, _)| path.parent())
            .unwrap_or(Path::new(""))
            .to_owned();
        let mut paths: Vec<(String, &mut PathBuf)> = Vec::new();
        for (label, config) in &mut self.key_value_stores {
            if let KeyValueStoreConfig::Sqlite { path: Some(path) } = config {
                paths.push((path_field("key_value_store", label), path));
            }
        }
        for (label, config) in &mut self.sqlite_databases {
            if let Some(path) = &mut config.path {
                paths.push((path_field("sqlite_database", label), path));
            }
        }
        let mut confined = Vec::new();
        let mut outside = Vec::new();
        for (field, path) in &paths {
            let written = self.written.get(field).unwrap_or(&**path).clone();
            match normalize_relative(&written) {
                Some(relative) => confined.push(ConfinedPath {
                    field: field.clone(),
                    written,
                    confined: root.join(&relative),
                    beside_config: dir.join(&relative),
                }),
                None => outside.push(OutsidePath {
                    field: field.clone(),
                    written,
                }),
            }
        }
        if !outside.is_empty() {
            return Err(outside);
        }
        for ((_, path), confined) in paths.iter_mut().zip(&confined) {
            **path = confined.confined.clone();
        }
        Ok(confined)
    }

    /// Makes `[key_value_store.<label>] path`s absolute, against `dir` (the
    /// config file's directory).
    fn resolve_paths(&mut self, dir: &Path) {
        for config in self.key_value_stores.values_mut() {
            let KeyValueStoreConfig::Sqlite { path: Some(path) } = config else {
                continue;
            };
            *path = dir.join(&*path);
        }
        for config in self.sqlite_databases.values_mut() {
            if let Some(path) = &mut config.path {
                *path = dir.join(&*path);
            }
        }
    }

    /// The limits of each component of `app`, with `defaults` beneath this
    /// config. A component named here that the app lacks is an error.
    pub fn resolve(
        &self,
        app: &App,
        defaults: Limits,
    ) -> Result<BTreeMap<String, Limits>, ManifestError> {
        let unknown: Vec<Diagnostic> = self
            .components
            .iter()
            .filter(|(id, _)| !app.components.iter().any(|c| &c.id == *id))
            .map(|(id, (span, _))| {
                Diagnostic::new(span.clone(), format!("the app has no component `{id}`"))
            })
            .collect();
        if !unknown.is_empty() {
            let (path, text) = self
                .origin
                .clone()
                .unwrap_or_else(|| ("runtime-config.toml".into(), "".into()));
            return Err(ManifestError::invalid(&path, &text, unknown));
        }
        let base = self.limits.apply(defaults);
        Ok(app
            .components
            .iter()
            .map(|c| {
                let limits = match self.components.get(&c.id) {
                    Some((_, o)) => o.apply(base),
                    None => base,
                };
                (c.id.clone(), limits)
            })
            .collect())
    }
}

fn read_limits(diags: &mut Diagnostics, table: &mut TableView<'_, '_>) -> LimitsOverride {
    let mut size = |diags: &mut Diagnostics, key: &str| {
        let value = table.get(key)?;
        value_to(diags, value, key, parse_size)
    };
    let max_memory = size(diags, "max_memory");
    let max_request_body = size(diags, "max_request_body");
    let max_response_body = size(diags, "max_response_body");
    let mut duration = |diags: &mut Diagnostics, key: &str| {
        let value = table.get(key)?;
        value_to(diags, value, key, parse_duration)
    };
    let request_timeout = duration(diags, "request_timeout");
    let queue_timeout = duration(diags, "queue_timeout");
    let mut count = |diags: &mut Diagnostics, key: &str, least: usize| {
        let value = table.get(key)?;
        value_to(diags, value, key, |s| {
            s.parse::<usize>()
                .ok()
                .filter(|n| *n >= least)
                .ok_or_else(|| match least {
                    0 => format!("`{s}` is not a whole number"),
                    _ => format!("`{s}` is not a positive whole number"),
                })
        })
    };
    let max_concurrent_requests = count(diags, "max_concurrent_requests", 1);
    let max_queued_requests = count(diags, "max_queued_requests", 0);
    LimitsOverride {
        max_memory,
        request_timeout,
        max_request_body,
        max_response_body,
        max_concurrent_requests,
        max_queued_requests,
        queue_timeout,
    }
}

/// Reads a limit written as a string or an integer.
fn value_to<T>(
    diags: &mut Diagnostics,
    value: &Value<'_>,
    key: &str,
    parse: impl Fn(&str) -> Result<T, String>,
) -> Option<T> {
    let text = match value.get_ref() {
        DeValue::String(s) => s.to_string(),
        DeValue::Integer(i) => i.as_str().to_owned(),
        other => {
            diags.error(
                value.span(),
                format!(
                    "`{key}` must be a string or an integer, found {}",
                    other.type_str()
                ),
            );
            return None;
        }
    };
    match parse(&text) {
        Ok(v) => Some(v),
        Err(e) => {
            diags.error(value.span(), format!("`{key}`: {e}"));
            None
        }
    }
}

/// Parses a byte size: `1048576`, `512 KiB`, `10MiB`, `1 GB`.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a size (e.g. `128 MiB`)"))?;
    let multiplier: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1_000,
        "kib" => 1 << 10,
        "m" | "mb" => 1_000_000,
        "mib" => 1 << 20,
        "g" | "gb" => 1_000_000_000,
        "gib" => 1 << 30,
        other => {
            return Err(format!(
                "`{other}` is not a size unit (B, KiB, MiB, GiB, KB, MB, GB)"
            ));
        }
    };
    number
        .checked_mul(multiplier)
        .ok_or_else(|| format!("`{text}` is too large"))
}

/// Parses a duration: `30` (seconds), `30s`, `500ms`, `2m`, `1h`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a duration (e.g. `30s`, `500ms`)"))?;
    let duration = match unit.trim() {
        "" | "s" => Duration::from_secs(number),
        "ms" => Duration::from_millis(number),
        "m" | "min" => Duration::from_secs(number.saturating_mul(60)),
        "h" => Duration::from_secs(number.saturating_mul(3600)),
        other => return Err(format!("`{other}` is not a duration unit (ms, s, m, h)")),
    };
    if duration.is_zero() {
        return Err(format!("`{text}` must be longer than zero"));
    }
    Ok(duration)
}

/// `[<key>.<label>]` tables (`key_value_store`, `sqlite_database`), each
/// read by `read`, by label; the ones `read` refuses are left out.
fn read_labelled<T>(
    diags: &mut Diagnostics,
    root: &mut TableView<'_, '_>,
    key: &str,
    read: impl Fn(&mut Diagnostics, TableView<'_, '_>) -> Option<T>,
) -> BTreeMap<String, T> {
    let mut read_tables = BTreeMap::new();
    if let Some(mut tables) = root.table(diags, key) {
        for label in tables.key_names() {
            if let Some(table) = tables.table(diags, &label)
                && let Some(value) = read(diags, table)
            {
                read_tables.insert(label, value);
            }
        }
        tables.finish(diags, &[]);
    }
    read_tables
}

/// One `[sqlite_database.<label>]`: its `type`, and that type's fields.
fn read_sqlite_database(
    diags: &mut Diagnostics,
    mut database: TableView<'_, '_>,
) -> Option<SqliteDatabaseConfig> {
    let kind = database.required_string(diags, "type")?;
    match kind.get_ref().as_str() {
        "spin" => {
            let path = database
                .string(diags, "path")
                .map(|p| std::path::PathBuf::from(p.into_inner()));
            let node_local = database.bool(diags, "node_local").unwrap_or(false);
            database.finish(diags, &[]);
            Some(SqliteDatabaseConfig { path, node_local })
        }
        "libsql" => {
            diags.push(
                Diagnostic::new(
                    kind.span(),
                    "remote libSQL databases are not supported by Ferry",
                )
                .with_help("use `type = \"spin\"` (embedded SQLite)"),
            );
            None
        }
        other => {
            diags.push(
                Diagnostic::new(kind.span(), format!("unknown SQLite database type `{other}`"))
                    .with_help("Ferry keeps SQLite databases in `type = \"spin\"` (embedded, optionally at `path = \"…\"`)"),
            );
            None
        }
    }
}

/// One `[key_value_store.<label>]`: its `type`, and that type's fields.
fn read_key_value_store(
    diags: &mut Diagnostics,
    mut store: TableView<'_, '_>,
) -> Option<KeyValueStoreConfig> {
    let kind = store.required_string(diags, "type")?;
    let config = match kind.get_ref().as_str() {
        "spin" => {
            let path = store
                .string(diags, "path")
                .map(|p| std::path::PathBuf::from(p.into_inner()));
            Some(KeyValueStoreConfig::Sqlite { path })
        }
        "redis" => {
            let url = store.required_string(diags, "url")?;
            if !url.get_ref().starts_with("redis://") && !url.get_ref().starts_with("rediss://") {
                diags.error(
                    url.span(),
                    "a Redis URL starts with `redis://` (or `rediss://` for TLS)",
                );
                return None;
            }
            Some(KeyValueStoreConfig::Redis {
                url: url.into_inner(),
            })
        }
        "nats" => {
            let url = store.required_string(diags, "url")?;
            let bad = url
                .get_ref()
                .split(',')
                .map(str::trim)
                .any(|u| !u.starts_with("nats://") && !u.starts_with("tls://"));
            if bad {
                diags.error(
                    url.span(),
                    "NATS servers are `nats://HOST:PORT` (or `tls://`), comma separated",
                );
                return None;
            }
            Some(KeyValueStoreConfig::Nats {
                url: url.into_inner(),
            })
        }
        other => {
            diags.push(
                Diagnostic::new(kind.span(), format!("unknown key-value store type `{other}`"))
                    .with_help("Ferry stores key-value data in `type = \"spin\"` (embedded SQLite, optionally at `path = \"…\"`), `type = \"redis\"` (`url = \"redis://…\"`) or `type = \"nats\"` (`url = \"nats://…\"`, JetStream)"),
            );
            None
        }
    };
    // A refused type's other fields are its own: only its `type` is reported.
    if config.is_some() {
        store.finish(diags, &[]);
    }
    config
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("128 MiB"), Ok(128 << 20));
        assert_eq!(parse_size("10MB"), Ok(10_000_000));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert!(parse_size("ten").is_err());
        assert!(parse_size("10 parsecs").is_err());
        assert!(parse_size("99999999999999 GiB").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("5"), Ok(Duration::from_secs(5)));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("soon").is_err());
    }

    #[test]
    fn runtime_config_overrides_layer_over_defaults() {
        let config = RuntimeConfig::parse(
            "[limits]\nmax_memory = \"64 MiB\"\n[component.a.limits]\nrequest_timeout = \"1s\"\nmax_concurrent_requests = 2\n",
        )
        .unwrap();
        let base = config.limits.apply(Limits::default());
        assert_eq!(base.max_memory, 64 << 20);
        let a = config.components["a"].1.apply(base);
        assert_eq!(a.request_timeout, Duration::from_secs(1));
        assert_eq!(a.max_concurrent_requests, 2);
        assert_eq!(a.max_memory, 64 << 20);
    }

    #[test]
    fn key_value_stores_pick_a_backend_per_label() {
        let mut config = RuntimeConfig::parse(
            "[key_value_store.default]\ntype = \"spin\"\n[key_value_store.cache]\ntype = \"spin\"\npath = \"data/cache.db\"\n[key_value_store.shared]\ntype = \"redis\"\nurl = \"redis://127.0.0.1:6379/2\"\n",
        )
        .unwrap();
        config.resolve_paths(Path::new("/app"));
        assert_eq!(
            config.key_value_stores["shared"],
            KeyValueStoreConfig::Redis {
                url: "redis://127.0.0.1:6379/2".into()
            }
        );
        assert_eq!(
            config.key_value_stores["default"],
            KeyValueStoreConfig::Sqlite { path: None }
        );
        assert_eq!(
            config.key_value_stores["cache"],
            KeyValueStoreConfig::Sqlite {
                path: Some("/app/data/cache.db".into())
            }
        );
        let errors = RuntimeConfig::parse(
            "[key_value_store.a]\ntype = \"redis\"\nurl = \"localhost:6379\"\n[key_value_store.b]\ntype = \"azure_cosmos\"\n[key_value_store.c]\npath = \"x\"\n[key_value_store.d]\ntype = \"spin\"\npaht = \"x\"\n[key_value_store.e]\ntype = \"redis\"\n",
        )
        .unwrap_err();
        let messages: Vec<&str> = errors.iter().map(|d| d.message.as_str()).collect();
        assert_eq!(
            messages,
            [
                "a Redis URL starts with `redis://` (or `rediss://` for TLS)",
                "unknown key-value store type `azure_cosmos`",
                "missing `key_value_store.c.type`",
                "unknown field `key_value_store.d.paht`",
                "missing `key_value_store.e.url`",
            ]
        );
    }

    #[test]
    fn relative_paths_normalize_without_climbing_out() {
        for (path, normal) in [
            ("a.db", "a.db"),
            ("./a/b.db", "a/b.db"),
            ("a/../b.db", "b.db"),
            ("a/./b/../../c.db", "c.db"),
        ] {
            assert_eq!(
                normalize_relative(Path::new(path)).as_deref(),
                Some(Path::new(normal)),
                "{path}"
            );
        }
        for path in ["/a.db", "../a.db", "a/../../b.db", ".", "a/..", ""] {
            assert_eq!(normalize_relative(Path::new(path)), None, "{path}");
        }
    }

    #[test]
    fn confined_paths_move_under_the_root_or_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("runtime-config.toml");
        std::fs::write(
            &file,
            "[key_value_store.cache]\ntype = \"spin\"\npath = \"kv/../cache.db\"\n\
             [key_value_store.default]\ntype = \"spin\"\n\
             [sqlite_database.default]\ntype = \"spin\"\npath = \"db/main.db\"\n",
        )
        .unwrap();
        let mut config = RuntimeConfig::load(&file).unwrap();
        assert_eq!(
            config.sqlite_databases["default"].path,
            Some(dir.path().join("db/main.db")),
            "resolved beside the file first"
        );
        let confined = config.confine_paths(Path::new("/data")).unwrap();
        assert_eq!(
            confined,
            [
                ConfinedPath {
                    field: "[key_value_store.cache] path".into(),
                    written: "kv/../cache.db".into(),
                    confined: "/data/cache.db".into(),
                    beside_config: dir.path().join("cache.db"),
                },
                ConfinedPath {
                    field: "[sqlite_database.default] path".into(),
                    written: "db/main.db".into(),
                    confined: "/data/db/main.db".into(),
                    beside_config: dir.path().join("db/main.db"),
                },
            ]
        );
        assert_eq!(
            config.key_value_stores["cache"],
            KeyValueStoreConfig::Sqlite {
                path: Some("/data/cache.db".into())
            }
        );
        assert_eq!(
            config.key_value_stores["default"],
            KeyValueStoreConfig::Sqlite { path: None }
        );
        assert_eq!(
            config.sqlite_databases["default"].path,
            Some("/data/db/main.db".into())
        );

        let mut config = RuntimeConfig::parse(
            "[key_value_store.default]\ntype = \"spin\"\npath = \"/etc/kv.db\"\n\
             [sqlite_database.default]\ntype = \"spin\"\npath = \"a/../../other/x.db\"\n\
             [sqlite_database.fine]\ntype = \"spin\"\npath = \"fine.db\"\n",
        )
        .unwrap();
        let before = config.sqlite_databases.clone();
        let outside = config.confine_paths(Path::new("/data")).unwrap_err();
        assert_eq!(
            outside,
            [
                OutsidePath {
                    field: "[key_value_store.default] path".into(),
                    written: "/etc/kv.db".into(),
                },
                OutsidePath {
                    field: "[sqlite_database.default] path".into(),
                    written: "a/../../other/x.db".into(),
                },
            ]
        );
        assert_eq!(config.sqlite_databases, before, "nothing changed");
    }

    #[test]
    fn runtime_config_errors_point_at_the_value() {
        let errors =
            RuntimeConfig::parse("[limits]\nmax_memory = \"lots\"\nspeed = 1\n").unwrap_err();
        assert_eq!(errors.len(), 2);
        assert!(errors.iter().any(|d| d.message.contains("max_memory")));
        assert!(
            errors
                .iter()
                .any(|d| d.message.contains("unknown field `limits.speed`"))
        );
    }
}
