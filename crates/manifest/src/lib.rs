//! Ferry's app manifest: Spin's `spin.toml`, version 2.
//!
//! [`load_app`] reads a manifest, checks it completely and returns an [`App`]:
//! plain data with every path resolved, every route parsed and every grant
//! checked. Nothing here knows about wasmtime or HTTP servers; the runtime and
//! the server consume [`App`].
//!
//! Every field Spin 3.x defines in a version 2 manifest has an outcome here,
//! listed in the README: implemented; accepted where only another command
//! uses it (`watch`, `targets`, `tool`); or — where Ferry cannot honour it
//! yet or at all (a non-HTTP trigger, AI models, registry sources) — an
//! error at that field saying why. Nothing is silently ignored: an app that
//! loads in Ferry does everything its manifest asks for.
//!
//! The walk is split by table: this file reads the top level and
//! `[application]`, `component.rs` the component tables, `trigger.rs` the
//! triggers.

mod component;
mod dependency;
mod diagnostic;
mod event;
pub mod files;
mod limits;
mod outbound;
mod route;
mod trigger;
mod variables;
mod walk;

use std::path::{Path, PathBuf};

use toml::Spanned;
use toml::de::{DeTable, DeValue};

pub use dependency::{CAPABILITY_SETS, Dependency, DependencySource, Inherit};
pub use diagnostic::{Diagnostic, ManifestError, Warnings};
pub use event::{
    DEFAULT_MAX_DELIVER, EventSource, EventTrigger, MqttBroker, PipelineStage, parse_schedule,
};
pub use limits::{
    ConfinedPath, KeyValueStoreConfig, Limits, LimitsOverride, OutsidePath, RuntimeConfig,
    SqliteDatabaseConfig, normalize_relative, parse_duration, parse_size,
};
pub use outbound::{
    AllowedHost, AllowedOutboundHosts, CHAINING_SUFFIX, chained_component, default_port,
};
pub use route::{RouteMatch, RoutePattern};
pub use variables::{
    ComponentVariables, MissingVariables, Template, Variable, check_name as check_variable_name,
    render_template, resolve as resolve_variables, resolve_outbound_templates,
};
use walk::{Diagnostics, TableView};

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
    /// `[[trigger.redis]]`, `[[trigger.nats]]`, `[[trigger.mqtt]]` and
    /// `[[trigger.cron]]`, in manifest order by type.
    pub event_triggers: Vec<EventTrigger>,
    /// In manifest order (inline components where their trigger is).
    pub components: Vec<Component>,
    /// `[variables]`, in manifest order.
    pub variables: Vec<Variable>,
    /// What the manifest asks for that works but should change (legacy
    /// syntax); commands print these.
    pub warnings: Warnings,
}

impl App {
    pub fn component(&self, id: &str) -> Option<&Component> {
        self.components.iter().find(|c| c.id == id)
    }

    pub fn component_mut(&mut self, id: &str) -> Option<&mut Component> {
        self.components.iter_mut().find(|c| c.id == id)
    }

    /// Keeps only the triggers of the components `ids` names (`spin up
    /// -c`), and of the components only those and the ones their
    /// dependencies take Wasm from; static routes stay. An id the app does
    /// not have is an error naming the ones it has.
    pub fn keep_components(&mut self, ids: &[String]) -> Result<(), String> {
        if let Some(unknown) = ids.iter().find(|id| self.component(id).is_none()) {
            let known: Vec<&str> = self.components.iter().map(|c| c.id.as_str()).collect();
            return Err(format!(
                "the app has no component `{unknown}` (its components: {})",
                known.join(", ")
            ));
        }
        // A per-trigger copy (middleware) is chosen with its component.
        let chosen_ids: Vec<String> = self
            .components
            .iter()
            .filter(|c| {
                ids.contains(&c.id) || c.copy_of.as_ref().is_some_and(|of| ids.contains(of))
            })
            .map(|c| c.id.clone())
            .collect();
        let chosen = |id: &str| chosen_ids.iter().any(|i| i == id);
        self.triggers.retain(|t| match &t.handler {
            Handler::Component { id, .. } => chosen(id),
            Handler::Static(_) => true,
        });
        self.event_triggers
            .retain(|t| t.components().iter().all(|id| chosen(id)));
        let mut kept = chosen_ids.clone();
        let mut at = 0;
        while at < kept.len() {
            let taken: Vec<String> = self
                .component(&kept[at])
                .into_iter()
                .flat_map(|c| c.dependencies.iter().chain(&c.middleware))
                .filter_map(|d| match &d.source {
                    dependency::DependencySource::Component(id) => Some(id.clone()),
                    dependency::DependencySource::Wasm(_) => None,
                })
                .collect();
            for id in taken {
                if !kept.contains(&id) {
                    kept.push(id);
                }
            }
            at += 1;
        }
        // As Spin: a kept component that may chain to one left out would
        // find nothing there.
        for component in self.components.iter().filter(|c| kept.contains(&c.id)) {
            if let Some(left_out) = self.components.iter().find(|other| {
                !kept.contains(&other.id)
                    && component.allowed_outbound_hosts.allows_chaining(&other.id)
            }) {
                return Err(format!(
                    "component `{}` may send requests to `{}.spin.internal` (its allowed_outbound_hosts), which this choice of components leaves out: choose it too (`-c {}`)",
                    component.id, left_out.id, left_out.id
                ));
            }
        }
        self.components.retain(|c| kept.contains(&c.id));
        Ok(())
    }
}

/// One `[[trigger.http]]`.
#[derive(Debug, Clone)]
pub struct HttpTrigger {
    /// `id` as written, or the one Spin generates for a trigger without one
    /// (`<component>-http-trigger`, `http-trigger<N>`); it names inline
    /// components.
    pub id: String,
    pub route: Route,
    /// What answers the route's requests.
    pub handler: Handler,
    /// 1-based line of the trigger's route in the manifest, for messages.
    pub line: usize,
    /// `dependencies.middleware`, outermost first. Loading moves it onto
    /// the component the trigger runs (a copy of it, when another trigger
    /// runs that component too), where the runtime composes it.
    pub middleware: Vec<Dependency>,
}

impl HttpTrigger {
    /// The component this trigger runs, if it runs one.
    pub fn component(&self) -> Option<&str> {
        match &self.handler {
            Handler::Component { id, .. } => Some(id),
            Handler::Static(_) => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    Pattern(RoutePattern),
    /// `route = { private = true }`: not reachable over HTTP.
    Private,
}

/// What answers a trigger's requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Handler {
    /// A component, run by `executor`.
    Component { id: String, executor: Executor },
    /// `static_response`: a fixed response, no component at all.
    Static(StaticResponse),
}

/// `static_response = { status_code, headers, body }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaticResponse {
    pub status: u16,
    /// In manifest order.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

/// How Ferry calls a component: what it must export, and what it is given.
/// An HTTP trigger's `executor` picks one of the first two; an event
/// trigger's type decides the others.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Executor {
    /// A `wasi:http` component.
    Http,
    /// A WASI preview 1 command module run as a CGI program.
    Wagi(WagiConfig),
    /// A component that handles one message's payload:
    /// `fermyon:spin/inbound-redis` (`[[trigger.redis]]`, `[[trigger.nats]]`).
    InboundRedis,
    /// A `[[trigger.cron]]` component: `handle-cron-event`.
    Cron,
    /// A `[[trigger.mqtt]]` component: `handle-message` of
    /// `spin:mqtt-trigger`.
    Mqtt,
    /// A `[[trigger.command]]` component: a WASI command (`wasi:cli/run`).
    Command,
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
    pub source: Source,
    pub description: Option<String>,
    pub files: Vec<FileMount>,
    /// Globs (relative to the app directory) removed from `files`.
    pub exclude_files: Vec<String>,
    /// Exactly the variables the manifest lists, in manifest order.
    pub environment: Vec<(String, String)>,
    /// `allowed_outbound_hosts`, plus what a legacy `allowed_http_hosts`
    /// grants.
    pub allowed_outbound_hosts: AllowedOutboundHosts,
    /// `[component.<id>.variables]`: the keys the component can read, each
    /// a template over application variables.
    pub variables: Vec<(String, Template)>,
    /// `allowed_outbound_hosts` entries written as templates: granted once
    /// variables are resolved ([`resolve_outbound_templates`]).
    pub outbound_templates: Vec<Template>,
    /// `key_value_stores`: the labels of the stores the component may open.
    pub key_value_stores: Vec<String>,
    /// `sqlite_databases`: the labels of the databases it may open.
    pub sqlite_databases: Vec<String>,
    /// `[component.<id>.build]`, for `ferry build`.
    pub build: Option<Build>,
    /// `[component.<id>.dependencies]`: composed with it at load.
    pub dependencies: Vec<Dependency>,
    /// The middleware of the HTTP trigger that runs it, outermost first
    /// (moved here from the trigger: see [`HttpTrigger::middleware`]).
    pub middleware: Vec<Dependency>,
    /// For the copy of a component that one trigger runs with its own
    /// middleware (`<trigger id>-<component id>`): the component's id.
    pub copy_of: Option<String>,
}

impl Component {
    /// A component from `source` granted nothing: no files, environment,
    /// network, variables or stores, no build, no dependencies.
    pub fn granted_nothing(id: impl Into<String>, source: Source) -> Self {
        Self {
            id: id.into(),
            source,
            description: None,
            files: Vec::new(),
            exclude_files: Vec::new(),
            environment: Vec::new(),
            allowed_outbound_hosts: AllowedOutboundHosts::default(),
            variables: Vec::new(),
            outbound_templates: Vec::new(),
            key_value_stores: Vec::new(),
            sqlite_databases: Vec::new(),
            build: None,
            dependencies: Vec::new(),
            middleware: Vec::new(),
            copy_of: None,
        }
    }

    /// The local files of its dependencies and middleware (given by
    /// `path`), which a bundle must carry and a host must confine.
    pub fn dependency_files(&self) -> impl Iterator<Item = &Path> {
        self.dependencies
            .iter()
            .chain(&self.middleware)
            .filter_map(|d| match &d.source {
                DependencySource::Wasm(Source::File(path)) => Some(path.as_path()),
                _ => None,
            })
    }
}

/// Where a component's Wasm comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A local file (absolute: resolved against the manifest's directory).
    File(PathBuf),
    /// `{ url, digest }`: downloaded, checked against the digest, cached.
    Url { url: String, digest: Sha256Digest },
    /// `{ registry, package, version }` (or a dependency's version): a
    /// package from a component registry, fetched through its OCI mapping.
    Package(Package),
}

/// A package in a component registry, as `wasm-pkg` names one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Package {
    /// The registry's host; `None`: the namespace's registry as the
    /// `wasm-pkg` configuration (or its defaults) says.
    pub registry: Option<String>,
    /// `namespace:name`.
    pub name: String,
    /// A semver requirement: `=1.2.3` for a component's `version`, Cargo's
    /// caret rules for a dependency's (`1.2` is `>=1.2.0, <2.0.0`).
    pub version: String,
}

/// Shown in messages; a URL is shown [`redacted`].
impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::File(path) => write!(f, "{}", path.display()),
            Self::Url { url, .. } => f.write_str(&redacted(url)),
            Self::Package(package) => write!(f, "{package}"),
        }
    }
}

/// `ns:name@<version>` (from `registry`).
impl std::fmt::Display for Package {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}@{}", self.name, self.version)?;
        if let Some(registry) = &self.registry {
            write!(f, " from {registry}")?;
        }
        Ok(())
    }
}

impl Package {
    /// Checks `name` (`namespace:name`, each part Spin's kebab words) and
    /// `version` (a semver requirement) as read from a manifest.
    pub(crate) fn check(&self) -> Result<(), String> {
        let parts = self.name.split_once(':');
        let kebab = dependency::kebab;
        if !parts.is_some_and(|(ns, name)| kebab(ns) && kebab(name)) {
            return Err(format!(
                "`{}` is not a package name: write `namespace:name`, each lowercase kebab-case",
                self.name
            ));
        }
        semver::VersionReq::parse(&self.version)
            .map_err(|e| format!("`{}` is not a version requirement: {e}", self.version))?;
        if let Some(registry) = &self.registry
            && (registry.is_empty()
                || registry.contains(['/', '@', ' ', '?', '#'])
                || registry.starts_with('.'))
        {
            return Err(format!(
                "`{registry}` is not a registry: give its host (and port), e.g. `ghcr.io`"
            ));
        }
        Ok(())
    }
}

/// `text` with every character but ASCII letters, digits, `-` and `_`
/// replaced by `_`: a name (a file's, a stream's) that an app's or
/// component's name cannot turn into a path or a pattern.
pub fn plain_name(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// `url` as it may be shown in output and logs: without credentials
/// (`user:token@`) or a query (pre-signed URLs carry their signature there).
/// A PostgreSQL connection string of `key=value` pairs (libpq's other form)
/// is shown without its passwords' values.
pub fn redacted(url: &str) -> String {
    /// Whether `text` starts as a URL does: `scheme://`.
    fn is_url(text: &str) -> bool {
        text.split_once("://").is_some_and(|(scheme, _)| {
            scheme.starts_with(|c: char| c.is_ascii_alphabetic())
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
        })
    }
    if !is_url(url) {
        // A template, say, or PostgreSQL's key=value form.
        return without_passwords(url);
    }
    // A list of servers (`nats://a:4222,nats://u:p@b:4222`): each one.
    if url.contains(',') && url.split(',').all(is_url) {
        return url.split(',').map(redacted).collect::<Vec<_>>().join(",");
    }
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let host = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    let path = tail.split(['?', '#']).next().unwrap_or_default();
    let query = if tail.contains('?') { "?…" } else { "" };
    format!("{scheme}://{host}{path}{query}")
}

/// A libpq connection string (`host=h password='it''s' dbname=d`) with
/// every `password` and `sslpassword` value replaced by `…`, quoted
/// values (with their escapes) included.
fn without_passwords(text: &str) -> String {
    let mut shown = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        shown.push(c);
        if c != '=' {
            continue;
        }
        let key = shown[..shown.len() - 1]
            .trim_end()
            .rsplit(char::is_whitespace)
            .next()
            .unwrap_or_default()
            .to_ascii_lowercase();
        let secret = key == "password" || key == "sslpassword";
        while let Some(space) = chars.next_if(|c| c.is_whitespace()) {
            shown.push(space);
        }
        // The value: quoted (with `\` escapes) or up to whitespace.
        let mut value = String::new();
        if chars.next_if_eq(&'\'').is_some() {
            value.push('\'');
            while let Some(c) = chars.next() {
                value.push(c);
                match c {
                    '\\' => value.extend(chars.next()),
                    '\'' => break,
                    _ => {}
                }
            }
        } else {
            // Up to whitespace, a `\`-escaped one included.
            while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                value.push(c);
                if c == '\\' {
                    value.extend(chars.next());
                }
            }
        }
        shown.push_str(if secret { "…" } else { &value });
    }
    shown
}

/// A SHA-256 digest, written `sha256:<64 hex digits>` in manifests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Sha256Digest(pub [u8; 32]);

impl Sha256Digest {
    /// Parses `sha256:<hex>` (hex in either case).
    pub fn parse(text: &str) -> Result<Self, String> {
        let hex = text
            .strip_prefix("sha256:")
            .ok_or_else(|| format!("digest `{text}` must start with `sha256:`"))?;
        let bytes = hex.as_bytes();
        if bytes.len() != 64 || !bytes.iter().all(u8::is_ascii_hexdigit) {
            return Err(format!(
                "digest `{text}` must be `sha256:` followed by 64 hexadecimal digits"
            ));
        }
        let mut digest = [0u8; 32];
        for (i, pair) in bytes.chunks(2).enumerate() {
            let pair = std::str::from_utf8(pair).expect("ASCII hex digits");
            digest[i] = u8::from_str_radix(pair, 16).expect("checked hex digits");
        }
        Ok(Self(digest))
    }

    /// Lowercase hexadecimal, without the `sha256:` prefix.
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }
}

impl std::fmt::Display for Sha256Digest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "sha256:{}", self.to_hex())
    }
}

/// `[component.<id>.build]`: how `ferry build` makes the component's source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Build {
    /// Shell command lines, run one after another (`command` as a string is
    /// one of them).
    pub commands: Vec<String>,
    /// Where they run: the manifest's directory, or `workdir` under it.
    pub workdir: PathBuf,
    /// Globs (relative to `workdir`) whose changes call for a rebuild; Spin's
    /// `spin watch` reads them, and so will a watching `ferry up`.
    pub watch: Vec<String>,
}

/// One entry of `files`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileMount {
    /// A glob relative to the app directory; matches appear at the same
    /// relative path under the guest's `/`. A plain path naming a directory
    /// brings everything under it, as in Spin.
    Glob(String),
    /// A host directory mounted at a guest path.
    Directory {
        source: PathBuf,
        destination: String,
    },
    /// One host file placed at a guest path (Spin's `{ source, destination }`
    /// with a file as the source).
    File {
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

/// Reads and validates the manifest at `path` (a file, or a directory holding
/// one). Every local component source must exist.
pub fn load_app(path: &Path) -> Result<App, ManifestError> {
    load(path, Sources::MustExist)
}

/// Reads and validates the manifest at `path` for `ferry build`: local
/// component sources need not exist yet, since building makes them.
pub fn load_app_to_build(path: &Path) -> Result<App, ManifestError> {
    load(path, Sources::MayBeMissing)
}

/// Whether a local `source` that is not there is an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Sources {
    MustExist,
    MayBeMissing,
}

fn load(path: &Path, sources: Sources) -> Result<App, ManifestError> {
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
    parse(&text, &manifest_path, &dir, sources)
        .map_err(|diags| ManifestError::invalid(&manifest_path, &text, diags))
}

pub(crate) fn toml_error(error: &toml::de::Error) -> Diagnostic {
    Diagnostic::new(
        error.span().unwrap_or(0..0),
        format!("invalid TOML: {}", error.message().trim()),
    )
}

/// Parses a manifest. Paths are resolved against `dir`; every local source
/// must exist.
pub fn parse_app(text: &str, manifest_path: &Path, dir: &Path) -> Result<App, Vec<Diagnostic>> {
    parse(text, manifest_path, dir, Sources::MustExist)
}

fn parse(
    text: &str,
    manifest_path: &Path,
    dir: &Path,
    sources: Sources,
) -> Result<App, Vec<Diagnostic>> {
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
        event_triggers: Vec::new(),
        components: Vec::new(),
        variables: Vec::new(),
        warnings: Warnings::default(),
    };
    // Before the components, whose templates refer to them.
    app.variables = variables::read_app_variables(&mut diags, &mut root);

    let mut defaults = event::Defaults::default();
    match root.table(&mut diags, "application") {
        Some(mut table) => {
            defaults = read_application(&mut diags, &mut table, &mut app);
            table.finish(&mut diags, &[]);
        }
        None if root.key_span("application").is_none() => {
            diags.error(
                0..0,
                "missing `[application]` table (it needs at least `name`)",
            );
        }
        None => {}
    }

    // Components first, so triggers can refer to them. Each keeps where it
    // was defined, so that inline ones can be put in manifest order.
    let mut defined_at = Vec::new();
    if let Some(mut components) = root.table(&mut diags, "component") {
        for id in components.key_names() {
            let span = components.key_span(&id).unwrap_or(0..0);
            if let Err(e) = component::check_id(&id) {
                diags.error(span.clone(), e);
            }
            if let Some(mut table) = components.table(&mut diags, &id) {
                let component =
                    component::read(&mut diags, &mut table, &id, dir, sources, &app.variables);
                table.finish(&mut diags, &[]);
                defined_at.push(span.start);
                app.components.push(component);
            }
        }
        components.finish(&mut diags, &[]);
    }

    if let Some(triggers) = root.table(&mut diags, "trigger") {
        trigger::read_all(
            &mut diags,
            triggers,
            text,
            sources,
            &mut app,
            &mut defined_at,
            &defaults,
        );
    }
    if app.triggers.is_empty() && app.event_triggers.is_empty() && !diags.has_errors() {
        diags.error(
            root.key_span("trigger").unwrap_or(0..0),
            "the app has no trigger (`[[trigger.http]]`, `[[trigger.redis]]`, `[[trigger.nats]]`, `[[trigger.mqtt]]`, `[[trigger.cron]]`, `[[trigger.command]]`, `[[trigger.pipeline]]`): nothing to run",
        );
    }

    root.finish(&mut diags, &[]);

    // Manifest order: a `[component.x]` table where it is written, an
    // inline component where its trigger is.
    let mut order: Vec<(usize, Component)> = defined_at.into_iter().zip(app.components).collect();
    order.sort_by_key(|(at, _)| *at);
    app.components = order.into_iter().map(|(_, c)| c).collect();
    dependency::resolve(&mut diags, &mut app);

    if diags.has_errors() {
        Err(diags.errors)
    } else {
        app.warnings = Warnings::new(manifest_path, text, diags.warnings);
        Ok(app)
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
            // Spin reads only the integer; `"1"` (a string) is version 1.
            DeValue::String(s) if s.as_ref() == "1" => diags.push(
                Diagnostic::new(v.span(), "this is a Spin manifest version 1")
                    .with_help("Ferry reads Spin manifest version 2 (`spin_manifest_version = 2`); `spin doctor` can upgrade it"),
            ),
            _ => diags.push(
                Diagnostic::new(v.span(), "unsupported `spin_manifest_version`")
                    .with_help("Ferry reads Spin manifest version 2, written as the integer `spin_manifest_version = 2`"),
            ),
        },
    }
}

/// Reads `[application]`; returns what `[application.trigger.*]` gives
/// every event trigger of a type.
fn read_application(
    diags: &mut Diagnostics,
    table: &mut TableView<'_, '_>,
    app: &mut App,
) -> event::Defaults {
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
    // Deployment targets: `spin build` checks components against them;
    // nothing at run time uses them.
    component::check_targets(diags, table);
    walk::check_tool_tables(diags, table);
    let mut defaults = event::Defaults::default();
    if let Some(mut triggers) = table.table(diags, "trigger") {
        for kind in triggers.key_names() {
            if kind == "http" {
                continue;
            }
            if kind == "redis" || kind == "nats" || kind == "mqtt" {
                if let Some(mut settings) = triggers.table(diags, &kind) {
                    match kind.as_str() {
                        "redis" => {
                            defaults.redis_address =
                                event::read_defaults(diags, &mut settings, "address", app);
                        }
                        "nats" => {
                            defaults.nats_url =
                                event::read_defaults(diags, &mut settings, "url", app);
                        }
                        _ => defaults.mqtt = event::read_mqtt_broker(diags, &mut settings, app),
                    }
                    settings.finish(diags, &[]);
                }
                continue;
            }
            if trigger::EVENT_KINDS.contains(&kind.as_str()) {
                // The cron trigger has no application-level settings.
                let _ = triggers.get(&kind);
                diags.push(
                    Diagnostic::new(
                        triggers.key_span(&kind).unwrap_or(0..0),
                        format!("`application.trigger.{kind}` has no settings"),
                    )
                    .with_help(format!(
                        "the `{kind}` trigger takes its settings from each `[[trigger.{kind}]]`"
                    )),
                );
                continue;
            }
            let _ = triggers.get(&kind);
            diags.push(trigger::refuse_kind(
                triggers.key_span(&kind).unwrap_or(0..0),
                &format!("application.trigger.{kind}"),
                &kind,
            ));
        }
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
        triggers.finish(diags, &[]);
    }
    defaults
}

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;
