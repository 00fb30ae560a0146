//! Ferry's app manifest: Spin's `spin.toml`, version 2.
//!
//! [`load_app`] reads a manifest, checks it completely and returns an [`App`]:
//! plain data with every path resolved, every route parsed and every grant
//! checked. Nothing here knows about wasmtime or HTTP servers; the runtime and
//! the server consume [`App`].
//!
//! Spin features that Ferry does not implement yet are refused with an error
//! at the field that uses them, never ignored: an app that loads in Ferry does
//! everything its manifest asks for.

mod diagnostic;
mod limits;
mod outbound;
mod route;
mod walk;

use std::path::{Path, PathBuf};

use toml::Spanned;
use toml::de::{DeTable, DeValue};

pub use diagnostic::{Diagnostic, ManifestError};
pub use limits::{Limits, LimitsOverride, RuntimeConfig, parse_duration, parse_size};
pub use outbound::{AllowedHost, AllowedOutboundHosts, default_port};
pub use route::{RouteMatch, RoutePattern};
use walk::{Diagnostics, TableView, Value, as_table};

/// Manifest file names looked for, in order, when given a directory.
pub const MANIFEST_NAMES: [&str; 2] = ["spin.toml", "ferry.toml"];

/// A validated application.
#[derive(Debug, Clone)]
pub struct App {
    pub manifest_path: PathBuf,
    /// The directory relative paths are resolved against.
    pub dir: PathBuf,
    pub name: String,
    pub version: Option<String>,
    pub description: Option<String>,
    pub authors: Vec<String>,
    /// `[application.trigger.http] base`, normalised to start with `/`.
    pub base: String,
    pub triggers: Vec<HttpTrigger>,
    pub components: Vec<Component>,
}

impl App {
    pub fn component(&self, id: &str) -> Option<&Component> {
        self.components.iter().find(|c| c.id == id)
    }
}

/// One `[[trigger.http]]`.
#[derive(Debug, Clone)]
pub struct HttpTrigger {
    pub route: Route,
    /// The id of the component it runs.
    pub component: String,
    pub executor: Executor,
    /// 1-based line of the trigger's route in the manifest, for messages.
    pub line: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    Pattern(RoutePattern),
    /// `route = { private = true }`: not reachable over HTTP.
    Private,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Executor {
    /// A `wasi:http` component.
    Http,
    /// A WASI preview 1 command module run as a CGI program.
    Wagi(WagiConfig),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WagiConfig {
    /// The argv template; `${SCRIPT_NAME}` and `${ARGS}` are substituted.
    pub argv: String,
    /// The exported function to call.
    pub entrypoint: String,
}

impl Default for WagiConfig {
    fn default() -> Self {
        Self {
            argv: "${SCRIPT_NAME} ${ARGS}".into(),
            entrypoint: "_start".into(),
        }
    }
}

/// One `[component.<id>]`.
#[derive(Debug, Clone)]
pub struct Component {
    pub id: String,
    /// Absolute path to the `.wasm` file.
    pub source: PathBuf,
    pub description: Option<String>,
    pub files: Vec<FileMount>,
    /// Globs (relative to the app directory) removed from `files`.
    pub exclude_files: Vec<String>,
    /// Exactly the variables the manifest lists, in manifest order.
    pub environment: Vec<(String, String)>,
    pub allowed_outbound_hosts: AllowedOutboundHosts,
}

/// One entry of `files`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileMount {
    /// A glob relative to the app directory; matches appear at the same
    /// relative path under the guest's `/`.
    Glob(String),
    /// A host directory mounted at a guest path.
    Directory {
        source: PathBuf,
        destination: String,
    },
}

/// Finds the manifest for `path`: the file itself, or `spin.toml` (then
/// `ferry.toml`) inside a directory.
pub fn find_manifest(path: &Path) -> Result<PathBuf, ManifestError> {
    if path.is_dir() {
        MANIFEST_NAMES
            .iter()
            .map(|name| path.join(name))
            .find(|p| p.is_file())
            .ok_or_else(|| {
                ManifestError::io(
                    path,
                    format!("no {} in this directory", MANIFEST_NAMES.join(" or ")),
                )
            })
    } else if path.exists() {
        Ok(path.to_owned())
    } else {
        Err(ManifestError::io(path, "no such file or directory"))
    }
}

/// Reads and validates the manifest at `path` (a file, or a directory holding one).
pub fn load_app(path: &Path) -> Result<App, ManifestError> {
    let manifest_path = find_manifest(path)?;
    let text = std::fs::read_to_string(&manifest_path)
        .map_err(|e| ManifestError::io(&manifest_path, e))?;
    let dir = manifest_path
        .parent()
        .map(Path::to_owned)
        .unwrap_or_default();
    let dir = std::path::absolute(if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        &dir
    })
    .map_err(|e| ManifestError::io(&manifest_path, e))?;
    parse_app(&text, &manifest_path, &dir)
        .map_err(|diags| ManifestError::invalid(&manifest_path, &text, diags))
}

pub(crate) fn toml_error(error: &toml::de::Error) -> Diagnostic {
    Diagnostic::new(
        error.span().unwrap_or(0..0),
        format!("invalid TOML: {}", error.message().trim()),
    )
}

const APP_UNSUPPORTED: walk::Unsupported<'static> = &[
    (
        "variables",
        "application variables are not supported yet; use a component's `environment`",
    ),
    ("targets", "deployment targets are a Spin CLI feature"),
];

const COMPONENT_UNSUPPORTED: walk::Unsupported<'static> = &[
    (
        "key_value_stores",
        "Ferry has no key-value stores yet; remove this field",
    ),
    (
        "sqlite_databases",
        "Ferry has no SQLite databases yet; remove this field",
    ),
    ("ai_models", "Ferry does not provide AI models"),
    (
        "variables",
        "application variables are not supported yet; use `environment`",
    ),
    (
        "dependencies",
        "component dependencies (composition) are not supported yet",
    ),
    (
        "dependencies_inherit_configuration",
        "component dependencies are not supported yet",
    ),
    (
        "build",
        "Ferry does not run build commands: build the component yourself and remove this table",
    ),
    ("tool", "tool-specific tables are not supported"),
    (
        "allowed_http_hosts",
        "this is Spin manifest v1 syntax; use `allowed_outbound_hosts`",
    ),
];

/// Parses a manifest. Paths are resolved against `dir`.
pub fn parse_app(text: &str, manifest_path: &Path, dir: &Path) -> Result<App, Vec<Diagnostic>> {
    let doc = DeTable::parse(text).map_err(|e| vec![toml_error(&e)])?;
    let mut diags = Diagnostics::default();
    let mut root = TableView::new(doc.get_ref(), doc.span(), "");

    if let Some(span) = root.key_span("spin_version") {
        return Err(vec![
            Diagnostic::new(span, "this is a Spin manifest version 1")
                .with_help("Ferry reads Spin manifest version 2 (`spin_manifest_version = 2`); `spin doctor` can upgrade it"),
        ]);
    }
    check_version(&mut diags, &mut root);

    let mut app = App {
        manifest_path: manifest_path.to_owned(),
        dir: dir.to_owned(),
        name: String::new(),
        version: None,
        description: None,
        authors: Vec::new(),
        base: "/".into(),
        triggers: Vec::new(),
        components: Vec::new(),
    };

    match root.table(&mut diags, "application") {
        Some(mut table) => {
            read_application(&mut diags, &mut table, &mut app);
            table.finish(&mut diags, APP_UNSUPPORTED);
        }
        None if root.key_span("application").is_none() => {
            diags.error(
                0..0,
                "missing `[application]` table (it needs at least `name`)",
            );
        }
        None => {}
    }

    // Components first, so triggers can refer to them.
    if let Some(mut components) = root.table(&mut diags, "component") {
        for id in components.key_names() {
            let span = components.key_span(&id).unwrap_or(0..0);
            if let Err(e) = check_component_id(&id) {
                diags.error(span.clone(), e);
            }
            if let Some(mut table) = components.table(&mut diags, &id) {
                let component = read_component(&mut diags, &mut table, &id, dir);
                table.finish(&mut diags, COMPONENT_UNSUPPORTED);
                app.components.push(component);
            }
        }
        components.finish(&mut diags, &[]);
    }

    if let Some(mut triggers) = root.table(&mut diags, "trigger") {
        if let Some(http) = triggers.get("http") {
            read_http_triggers(&mut diags, http, text, &mut app);
        }
        let others: Vec<&str> = ["redis", "command", "cron", "sqs", "mqtt", "kafka"].to_vec();
        let unsupported: Vec<(&str, &str)> = others
            .iter()
            .map(|k| (*k, "Ferry serves only HTTP triggers"))
            .collect();
        triggers.finish(&mut diags, &unsupported);
    }
    if app.triggers.is_empty() && diags.0.is_empty() {
        diags.error(
            root.key_span("trigger").unwrap_or(0..0),
            "the app has no `[[trigger.http]]`: nothing to serve",
        );
    }

    root.finish(
        &mut diags,
        &[(
            "variables",
            "application variables are not supported yet; use a component's `environment`",
        )],
    );

    if diags.0.is_empty() {
        Ok(app)
    } else {
        Err(diags.0)
    }
}

fn check_version(diags: &mut Diagnostics, root: &mut TableView<'_, '_>) {
    match root.get("spin_manifest_version") {
        None => diags.push(
            Diagnostic::new(0..0, "missing `spin_manifest_version`")
                .with_help("Ferry reads Spin manifest version 2: add `spin_manifest_version = 2`"),
        ),
        Some(v) => match v.get_ref() {
            DeValue::Integer(i) if i.as_str() == "2" => {}
            DeValue::String(s) if s.as_ref() == "2" => {}
            _ => diags.push(
                Diagnostic::new(v.span(), "unsupported `spin_manifest_version`")
                    .with_help("Ferry reads Spin manifest version 2"),
            ),
        },
    }
}

fn read_application(diags: &mut Diagnostics, table: &mut TableView<'_, '_>, app: &mut App) {
    if let Some(name) = table.required_string(diags, "name") {
        if name.get_ref().trim().is_empty() {
            diags.error(name.span(), "`application.name` cannot be empty");
        }
        app.name = name.into_inner();
    }
    app.version = table.string(diags, "version").map(Spanned::into_inner);
    app.description = table.string(diags, "description").map(Spanned::into_inner);
    app.authors = table
        .string_list(diags, "authors")
        .into_iter()
        .map(Spanned::into_inner)
        .collect();
    if let Some(mut triggers) = table.table(diags, "trigger") {
        if let Some(mut http) = triggers.table(diags, "http") {
            if let Some(base) = http.string(diags, "base") {
                if !base.get_ref().starts_with('/') {
                    diags.error(base.span(), "`base` must start with `/`");
                } else if let Err(e) = RoutePattern::parse(base.get_ref(), "/") {
                    diags.error(base.span(), e);
                } else {
                    app.base = base.into_inner();
                }
            }
            http.finish(diags, &[]);
        }
        triggers.finish(diags, &[("redis", "Ferry serves only HTTP triggers")]);
    }
}

fn check_component_id(id: &str) -> Result<(), String> {
    let ok = !id.is_empty()
        && id.split('-').all(|word| {
            !word.is_empty()
                && word
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        })
        && id.starts_with(|c: char| c.is_ascii_lowercase());
    if ok {
        Ok(())
    } else {
        Err(format!(
            "component id `{id}` must be kebab-case: lowercase letters and digits in words joined by `-`, starting with a letter"
        ))
    }
}

fn read_component(
    diags: &mut Diagnostics,
    table: &mut TableView<'_, '_>,
    id: &str,
    dir: &Path,
) -> Component {
    let mut component = Component {
        id: id.to_owned(),
        source: PathBuf::new(),
        description: table.string(diags, "description").map(Spanned::into_inner),
        files: Vec::new(),
        exclude_files: Vec::new(),
        environment: Vec::new(),
        allowed_outbound_hosts: AllowedOutboundHosts::default(),
    };

    match table.get("source") {
        None => diags.error(
            table.span.clone(),
            format!("missing `component.{id}.source`"),
        ),
        Some(value) => match value.get_ref() {
            DeValue::String(s) => {
                let path = dir.join(s.as_ref());
                if !path.is_file() {
                    diags.error(
                        value.span(),
                        format!("component source `{s}` is not a file (paths are relative to the manifest's directory)"),
                    );
                }
                component.source = path;
            }
            DeValue::Table(_) => diags.push(
                Diagnostic::new(
                    value.span(),
                    "remote component sources (`url`, `digest`) are not supported by Ferry yet",
                )
                .with_help("download the .wasm file and point `source` at it"),
            ),
            other => diags.error(
                value.span(),
                format!(
                    "`component.{id}.source` must be a path to a .wasm file, found {}",
                    other.type_str()
                ),
            ),
        },
    }

    if let Some(value) = table.get("files") {
        component.files = read_files(diags, value, id, dir);
    }
    for pattern in table.string_list(diags, "exclude_files") {
        if let Err(e) = check_relative_glob(pattern.get_ref()) {
            diags.error(pattern.span(), e);
        }
        component.exclude_files.push(pattern.into_inner());
    }

    if let Some(mut env) = table.table(diags, "environment") {
        let keys = env.key_names();
        for key in keys {
            let span = env.key_span(&key).unwrap_or(0..0);
            if key.is_empty() || key.contains('=') || key.contains('\0') {
                diags.error(
                    span,
                    format!("`{key}` is not a valid environment variable name"),
                );
            }
            if let Some(value) = env.string(diags, &key) {
                component.environment.push((key, value.into_inner()));
            }
        }
        env.finish(diags, &[]);
    }

    let mut hosts = Vec::new();
    for entry in table.string_list(diags, "allowed_outbound_hosts") {
        match AllowedHost::parse(entry.get_ref()) {
            Ok(host) => hosts.push(host),
            Err(e) => diags.error(entry.span(), e),
        }
    }
    component.allowed_outbound_hosts = AllowedOutboundHosts::new(hosts);
    component
}

fn check_relative_glob(pattern: &str) -> Result<(), String> {
    if pattern.starts_with('/') {
        return Err(format!("`{pattern}` must be relative to the app directory"));
    }
    if pattern.split(['/', '\\']).any(|part| part == "..") {
        return Err(format!(
            "`{pattern}` cannot reach outside the app directory (`..`)"
        ));
    }
    globset::Glob::new(pattern).map_err(|e| format!("`{pattern}` is not a valid glob: {e}"))?;
    Ok(())
}

fn read_files(diags: &mut Diagnostics, value: &Value<'_>, id: &str, dir: &Path) -> Vec<FileMount> {
    let DeValue::Array(items) = value.get_ref() else {
        diags.error(
            value.span(),
            format!("`component.{id}.files` must be an array"),
        );
        return Vec::new();
    };
    let mut mounts = Vec::new();
    for item in items.iter() {
        match item.get_ref() {
            DeValue::String(pattern) => match check_relative_glob(pattern) {
                Ok(()) => mounts.push(FileMount::Glob(pattern.to_string())),
                Err(e) => diags.error(item.span(), e),
            },
            DeValue::Table(_) => {
                let Some(mut mount) = as_table(diags, item, format!("component.{id}.files[]")) else {
                    continue;
                };
                let source = mount.required_string(diags, "source");
                let destination = mount.required_string(diags, "destination");
                mount.finish(diags, &[]);
                let (Some(source), Some(destination)) = (source, destination) else {
                    continue;
                };
                let path = dir.join(source.get_ref());
                if !path.is_dir() {
                    diags.error(
                        source.span(),
                        format!("`{}` is not a directory", path.display()),
                    );
                    continue;
                }
                if !destination.get_ref().starts_with('/')
                    || destination.get_ref().split('/').any(|p| p == "..")
                {
                    diags.error(
                        destination.span(),
                        "`destination` must be an absolute guest path without `..`",
                    );
                    continue;
                }
                mounts.push(FileMount::Directory {
                    source: path,
                    destination: destination.into_inner(),
                });
            }
            other => diags.error(
                item.span(),
                format!("a `files` entry must be a glob or a `{{ source, destination }}` table, found {}", other.type_str()),
            ),
        }
    }
    mounts
}

fn read_http_triggers(diags: &mut Diagnostics, value: &Value<'_>, text: &str, app: &mut App) {
    let DeValue::Array(items) = value.get_ref() else {
        diags.push(
            Diagnostic::new(value.span(), "`trigger.http` must be an array of tables")
                .with_help("write each trigger as `[[trigger.http]]`"),
        );
        return;
    };
    // (pattern, line, component) of every public route so far, for duplicates.
    let mut seen: Vec<(RoutePattern, usize, String)> = Vec::new();
    for (index, item) in items.iter().enumerate() {
        let Some(mut table) = as_table(diags, item, "trigger.http[]".into()) else {
            continue;
        };
        let component = read_trigger_component(diags, &mut table, index, app);
        let executor = read_executor(diags, &mut table);
        let route_value = table.get("route");
        let trigger_span = table.span.clone();
        table.finish(
            diags,
            &[("id", "trigger ids are not used by Ferry; remove this field")],
        );
        let Some(route_value) = route_value else {
            diags.error(trigger_span, "missing `route` in `[[trigger.http]]`");
            continue;
        };
        let line = diagnostic::line_col(text, route_value.span().start).0;
        let route = match route_value.get_ref() {
            DeValue::String(route) => match RoutePattern::parse(&app.base, route) {
                Ok(pattern) => {
                    let this = component.clone().unwrap_or_default();
                    if let Some((_, other_line, other)) =
                        seen.iter().find(|(p, _, _)| p.same_paths_as(&pattern))
                    {
                        diags.error(
                            route_value.span(),
                            format!(
                                "duplicate route `{}` (component `{this}`): the trigger at line {other_line} (component `{other}`) already serves the same paths",
                                pattern.full()
                            ),
                        );
                    }
                    seen.push((pattern.clone(), line, this));
                    Route::Pattern(pattern)
                }
                Err(e) => {
                    diags.error(route_value.span(), e);
                    continue;
                }
            },
            DeValue::Table(_) => {
                let Some(mut route) = as_table(diags, route_value, "route".into()) else {
                    continue;
                };
                let private = route.get("private");
                route.finish(diags, &[]);
                match private.map(|v| v.get_ref()) {
                    Some(DeValue::Boolean(true)) => Route::Private,
                    _ => {
                        diags.error(
                            route_value.span(),
                            "a route table must be `{ private = true }`",
                        );
                        continue;
                    }
                }
            }
            other => {
                diags.error(
                    route_value.span(),
                    format!("`route` must be a string, found {}", other.type_str()),
                );
                continue;
            }
        };
        if let Some(component) = component {
            app.triggers.push(HttpTrigger {
                route,
                component,
                executor,
                line,
            });
        }
    }
}

fn read_trigger_component(
    diags: &mut Diagnostics,
    table: &mut TableView<'_, '_>,
    index: usize,
    app: &mut App,
) -> Option<String> {
    let Some(value) = table.get("component") else {
        diags.error(
            table.span.clone(),
            "missing `component` in `[[trigger.http]]`",
        );
        return None;
    };
    match value.get_ref() {
        DeValue::String(id) => {
            if app.component(id).is_none() {
                diags.push(
                    Diagnostic::new(
                        value.span(),
                        format!("no component `{id}` in this manifest"),
                    )
                    .with_help(format!("define it with a `[component.{id}]` table")),
                );
                return None;
            }
            Some(id.to_string())
        }
        DeValue::Table(_) => {
            let id = format!("inline-component-{}", index + 1);
            let mut inline = as_table(diags, value, "component".into())?;
            let component = read_component(diags, &mut inline, &id, &app.dir.clone());
            inline.finish(diags, COMPONENT_UNSUPPORTED);
            app.components.push(component);
            Some(id)
        }
        other => {
            diags.error(
                value.span(),
                format!(
                    "`component` must be a component id or an inline table, found {}",
                    other.type_str()
                ),
            );
            None
        }
    }
}

fn read_executor(diags: &mut Diagnostics, table: &mut TableView<'_, '_>) -> Executor {
    let Some(mut executor) = table.table(diags, "executor") else {
        return Executor::Http;
    };
    let kind = executor.required_string(diags, "type");
    let result = match kind.as_ref().map(|k| k.get_ref().as_str()) {
        Some("http") | Some("spin") | None => Executor::Http,
        Some("wagi") => {
            let mut wagi = WagiConfig::default();
            if let Some(argv) = executor.string(diags, "argv") {
                wagi.argv = argv.into_inner();
            }
            if let Some(entrypoint) = executor.string(diags, "entrypoint") {
                wagi.entrypoint = entrypoint.into_inner();
            }
            Executor::Wagi(wagi)
        }
        Some(other) => {
            diags.error(
                kind.as_ref().map_or(executor.span.clone(), |k| k.span()),
                format!("unknown executor `{other}`: expected `http` or `wagi`"),
            );
            Executor::Http
        }
    };
    executor.finish(diags, &[]);
    result
}

#[cfg(test)]
mod tests;
