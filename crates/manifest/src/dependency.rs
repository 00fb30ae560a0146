//! Composition: a component's `[component.<id>.dependencies]` and an HTTP
//! trigger's `dependencies.middleware`, both made of [`Dependency`]s that
//! the runtime composes with the component at load.
//!
//! Spin's forms are all read: `{ path }`, `{ url, digest }`, `{ component }`
//! (another component's Wasm; its configuration is not used), the registry
//! forms (`"1.0"`, a version of the package the name is in, and `{ version,
//! registry, package }`), each table with `export` (component dependencies
//! only) and `inherit_configuration`. What a dependency may reach is
//! decided here too: nothing of its parent's grants unless
//! `inherit_configuration` (or the component's
//! `dependencies_inherit_configuration`) hands some on.

use std::ops::Range;
use std::path::Path;

use toml::de::DeValue;

use crate::walk::{Diagnostics, TableView, Value, as_table};
use crate::{App, Diagnostic, Package, Sha256Digest, Source};

/// A component composed into another at load: one of a component's
/// dependencies, or one of an HTTP trigger's middleware.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dependency {
    /// What it satisfies. For a component dependency, the key as written:
    /// an interface (`ns:pkg/iface@1.0.0`, `ns:pkg/iface`), a package
    /// (`ns:pkg`, `ns:pkg@1.0.0`) or a plain import name. For middleware,
    /// `middleware[N]`.
    pub name: String,
    pub source: DependencySource,
    /// `export`: the dependency's export that satisfies the import, when it
    /// is not named like the import.
    pub export: Option<String>,
    /// What of its parent's grants it may use.
    pub inherit: Inherit,
    /// Where it is written in the manifest, for messages.
    pub span: Range<usize>,
}

/// Where a dependency's Wasm comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DependencySource {
    /// `{ path }` or `{ url, digest }`.
    Wasm(Source),
    /// `{ component = "id" }`: that component's Wasm (and nothing else of it).
    Component(String),
}

/// `inherit_configuration`: which of its parent's capabilities a dependency
/// keeps. Everything else it imports is linked to implementations that deny.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inherit {
    All,
    /// These capability sets (names from [`CAPABILITY_SETS`]); empty: none.
    Only(Vec<String>),
}

impl Inherit {
    /// Whether the capability set `set` is handed on.
    pub fn allows(&self, set: &str) -> bool {
        match self {
            Self::All => true,
            Self::Only(sets) => sets.iter().any(|s| s == set),
        }
    }
}

/// The capability sets `inherit_configuration` names, as Spin names them
/// (each the manifest field that grants it).
pub const CAPABILITY_SETS: [&str; 7] = [
    "ai_models",
    "allowed_outbound_hosts",
    "environment",
    "files",
    "key_value_stores",
    "sqlite_databases",
    "variables",
];

/// `dependencies_inherit_configuration` and `dependencies`.
pub(crate) fn read_component_dependencies(
    diags: &mut Diagnostics,
    table: &mut TableView<'_, '_>,
    prefix: &str,
    dir: &Path,
) -> Vec<Dependency> {
    let inherit_all = table.bool(diags, "dependencies_inherit_configuration");
    let Some(mut deps) = table.table(diags, "dependencies") else {
        return Vec::new();
    };
    let mut read = Vec::new();
    for name in deps.key_names() {
        let key_span = deps.key_span(&name).unwrap_or(0..0);
        if let Err(e) = check_dependency_name(&name) {
            diags.error(key_span.clone(), e);
        }
        let Some(value) = deps.get(&name) else {
            continue;
        };
        let what = format!("{prefix}.dependencies.\"{name}\"");
        let explicit =
            matches!(value.get_ref(), DeValue::Table(t) if t.contains_key("inherit_configuration"));
        let Some(mut dependency) = read_one(diags, value, &what, dir, Some(&name)) else {
            continue;
        };
        dependency.name = name;
        if let Some(all) = inherit_all {
            if explicit {
                diags.push(
                    Diagnostic::new(value.span(), format!("`{what}` has `inherit_configuration` and its component has `dependencies_inherit_configuration`"))
                        .with_help("they are exclusive, as in Spin: use one or the other"),
                );
            } else if all {
                dependency.inherit = Inherit::All;
            }
        }
        read.push(dependency);
    }
    deps.finish(diags, &[]);
    read
}

/// An HTTP trigger's `dependencies`: only `middleware`, a list, outermost
/// first.
pub(crate) fn read_trigger_dependencies(
    diags: &mut Diagnostics,
    table: &mut TableView<'_, '_>,
    dir: &Path,
) -> Vec<Dependency> {
    let Some(mut deps) = table.table(diags, "dependencies") else {
        return Vec::new();
    };
    let mut middleware = Vec::new();
    if let Some(list) = deps.get("middleware") {
        match list.get_ref() {
            DeValue::Array(items) => {
                for (n, item) in items.iter().enumerate() {
                    let what = format!("dependencies.middleware[{n}]");
                    if let Some(mut dependency) = read_one(diags, item, &what, dir, None) {
                        dependency.name = format!("middleware[{n}]");
                        middleware.push(dependency);
                    }
                }
            }
            other => diags.error(
                list.span(),
                format!(
                    "`dependencies.middleware` must be an array of tables, found {}",
                    other.type_str()
                ),
            ),
        }
    }
    for key in deps.key_names() {
        if key != "middleware" {
            let span = deps.key_span(&key).unwrap_or(0..0);
            let _ = deps.get(&key);
            diags.error(
                span,
                format!("`dependencies.{key}`: the HTTP trigger's only trigger dependency is `middleware`"),
            );
        }
    }
    deps.finish(diags, &[]);
    middleware
}

/// One dependency: a table, or (for a component's dependency, `named`) a
/// version of the package its name is in. `export` is read only for a
/// component's dependency.
fn read_one(
    diags: &mut Diagnostics,
    value: &Value<'_>,
    what: &str,
    dir: &Path,
    named: Option<&str>,
) -> Option<Dependency> {
    let with_export = named.is_some();
    if let DeValue::String(version) = value.get_ref() {
        let Some(name) = named else {
            diags.error(
                value.span(),
                format!("`{what}` must be a table: `{{ path }}`, `{{ url, digest }}`, `{{ component }}` or `{{ package, version }}`"),
            );
            return None;
        };
        let package = Package {
            registry: None,
            name: package_of(name),
            version: version.to_string(),
        };
        if let Err(e) = package.check() {
            diags.error(value.span(), e);
            return None;
        }
        return Some(Dependency {
            name: String::new(),
            source: DependencySource::Wasm(Source::Package(package)),
            export: None,
            inherit: Inherit::Only(Vec::new()),
            span: value.span(),
        });
    }
    let mut table = as_table(diags, value, what.to_owned())?;
    let export = if with_export {
        table.string(diags, "export").map(|e| e.into_inner())
    } else {
        None
    };
    let inherit = read_inherit(diags, &mut table, what);
    let source = if let Some(path) = table.string(diags, "path") {
        let path = dir.join(path.get_ref());
        Some(DependencySource::Wasm(Source::File(path)))
    } else if table.key_span("url").is_some() {
        let url = table.required_string(diags, "url");
        let digest = table.required_string(diags, "digest");
        match (url, digest) {
            (Some(url), Some(digest)) => {
                if let Err(e) = crate::component::check_download_url(url.get_ref()) {
                    diags.error(url.span(), e);
                }
                Sha256Digest::parse(digest.get_ref())
                    .map_err(|e| diags.error(digest.span(), e))
                    .ok()
                    .map(|digest| {
                        DependencySource::Wasm(Source::Url {
                            url: url.into_inner(),
                            digest,
                        })
                    })
            }
            _ => None,
        }
    } else if let Some(id) = table.string(diags, "component") {
        Some(DependencySource::Component(id.into_inner()))
    } else if table.key_span("version").is_some() || table.key_span("package").is_some() {
        let registry = table.string(diags, "registry").map(|r| r.into_inner());
        let name = table.string(diags, "package").map(|p| p.into_inner());
        let version = table.required_string(diags, "version");
        let name = name.or_else(|| named.map(package_of));
        match (name, version) {
            (Some(name), Some(version)) => {
                let package = Package {
                    registry,
                    name,
                    version: version.into_inner(),
                };
                match package.check() {
                    Ok(()) => Some(DependencySource::Wasm(Source::Package(package))),
                    Err(e) => {
                        diags.error(value.span(), e);
                        None
                    }
                }
            }
            (None, _) => {
                diags.error(
                    value.span(),
                    format!("`{what}` needs `package`: the registry package to use"),
                );
                None
            }
            _ => None,
        }
    } else {
        diags.push(
            Diagnostic::new(value.span(), format!("`{what}` names no component")).with_help(
                "give `path`, `url` with `digest`, or `component` (an id in this manifest)",
            ),
        );
        None
    };
    table.finish(diags, &[]);
    Some(Dependency {
        name: String::new(),
        source: source?,
        export,
        inherit,
        span: value.span(),
    })
}

/// The package a dependency's name is in: `ns:pkg` of `ns:pkg/iface@1.0`.
fn package_of(name: &str) -> String {
    let package = name.split('@').next().unwrap_or(name);
    package.split('/').next().unwrap_or(package).to_owned()
}

fn read_inherit(diags: &mut Diagnostics, table: &mut TableView<'_, '_>, what: &str) -> Inherit {
    let Some(value) = table.get("inherit_configuration") else {
        return Inherit::Only(Vec::new());
    };
    match value.get_ref() {
        DeValue::Boolean(true) => Inherit::All,
        DeValue::Boolean(false) => Inherit::Only(Vec::new()),
        DeValue::Array(items) => {
            let mut sets = Vec::new();
            for item in items.iter() {
                match item.get_ref() {
                    DeValue::String(set) if CAPABILITY_SETS.contains(&set.as_ref()) => {
                        sets.push(set.to_string());
                    }
                    // Spin ignores names it does not know; Ferry says so.
                    DeValue::String(set) => diags.warn(
                        Diagnostic::new(
                            item.span(),
                            format!("`{set}` is not a capability a dependency can inherit: it hands nothing on"),
                        )
                        .with_help(format!("one of {}", CAPABILITY_SETS.join(", "))),
                    ),
                    other => diags.error(
                        item.span(),
                        format!(
                            "`{what}.inherit_configuration[]` must be a string, found {}",
                            other.type_str()
                        ),
                    ),
                }
            }
            Inherit::Only(sets)
        }
        other => {
            diags.error(
                value.span(),
                format!(
                    "`{what}.inherit_configuration` must be true, false or a list of capabilities, found {}",
                    other.type_str()
                ),
            );
            Inherit::Only(Vec::new())
        }
    }
}

/// WIT's kebab-case: lowercase words of letters and digits, each starting
/// with a letter, joined by `-`.
pub(crate) fn kebab(word: &str) -> bool {
    !word.is_empty()
        && word.split('-').all(|w| {
            w.starts_with(|c: char| c.is_ascii_lowercase())
                && w.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        })
}

/// A dependency key: a plain kebab-case import name, or a package
/// (`ns:pkg`), optionally with an interface (`/iface`) and a version
/// (`@1.2.3`).
pub(crate) fn check_dependency_name(name: &str) -> Result<(), String> {
    let bad = || {
        format!(
            "`{name}` is not a dependency name: expected an import name (`my-dep`), a package (`ns:pkg`, `ns:pkg@1.0.0`) or an interface (`ns:pkg/iface`, `ns:pkg/iface@1.0.0`)"
        )
    };
    let (rest, version) = match name.split_once('@') {
        Some((rest, version)) => (rest, Some(version)),
        None => (name, None),
    };
    if let Some(version) = version {
        let core = version.split(['-', '+']).next().unwrap_or_default();
        let parts: Vec<_> = core.split('.').collect();
        if parts.len() != 3 || parts.iter().any(|p| p.parse::<u64>().is_err()) {
            return Err(bad());
        }
    }
    match rest.split_once(':') {
        None if version.is_none() && kebab(rest) => Ok(()),
        None => Err(bad()),
        Some((ns, pkg)) => {
            let (pkg, iface) = match pkg.split_once('/') {
                Some((pkg, iface)) => (pkg, Some(iface)),
                None => (pkg, None),
            };
            if kebab(ns) && kebab(pkg) && iface.is_none_or(kebab) {
                Ok(())
            } else {
                Err(bad())
            }
        }
    }
}

/// After every table is read: each `{ component = "id" }` names a component
/// of the app (not the one depending on it), and each trigger's middleware
/// moves to the component it runs. A component that two triggers run with
/// different middleware is split, as Spin does: the trigger with middleware
/// gets a copy named `<trigger id>-<component id>`.
pub(crate) fn resolve(diags: &mut Diagnostics, app: &mut App) {
    let ids: Vec<String> = app.components.iter().map(|c| c.id.clone()).collect();
    let check = |diags: &mut Diagnostics, owner: &str, dependency: &Dependency| {
        if let DependencySource::Component(id) = &dependency.source {
            if !ids.contains(id) {
                diags.push(
                    Diagnostic::new(
                        dependency.span.clone(),
                        format!("no component `{id}` in this manifest"),
                    )
                    .with_help(format!("define it with a `[component.{id}]` table")),
                );
            } else if id == owner {
                diags.error(
                    dependency.span.clone(),
                    format!("component `{owner}` cannot depend on itself"),
                );
            }
        }
    };
    for component in &app.components {
        for dependency in &component.dependencies {
            check(diags, &component.id, dependency);
        }
    }
    for index in 0..app.triggers.len() {
        let trigger = &app.triggers[index];
        if trigger.middleware.is_empty() {
            continue;
        }
        let Some(id) = trigger.component().map(str::to_owned) else {
            diags.error(
                trigger.middleware[0].span.clone(),
                "middleware needs a component to pass requests on to, not a `static_response`",
            );
            continue;
        };
        for dependency in &trigger.middleware {
            check(diags, &id, dependency);
        }
        let shared = app
            .triggers
            .iter()
            .enumerate()
            .any(|(other, t)| other != index && t.component() == Some(id.as_str()));
        let middleware = app.triggers[index].middleware.clone();
        let Some(component) = app.component(&id).cloned() else {
            continue;
        };
        let target = if shared {
            let split = format!("{}-{id}", app.triggers[index].id);
            if app.component(&split).is_some() {
                diags.error(
                    app.triggers[index].middleware[0].span.clone(),
                    format!(
                        "the copy of component `{id}` that this trigger runs with its middleware would be named `{split}`, which is taken: rename that component, or give the trigger another `id`"
                    ),
                );
                continue;
            }
            let mut copy = component;
            copy.id = split.clone();
            copy.copy_of = Some(id.clone());
            app.components.push(copy);
            if let crate::Handler::Component { id, .. } = &mut app.triggers[index].handler {
                *id = split.clone();
            }
            split
        } else {
            id
        };
        if let Some(component) = app.component_mut(&target) {
            component.middleware = middleware;
        }
    }
}
