//! Composition at load: a component with its dependencies
//! (`[component.<id>.dependencies]`) and an HTTP trigger's middleware
//! (`dependencies.middleware`) become one component, linked shared-nothing
//! with `wac-graph` as Spin does, before it is compiled.
//!
//! - **Dependencies.** Each dependency satisfies the parent's imports its
//!   name matches (Spin's rules: a plain name matches that import; a package
//!   `ns:pkg`, with an optional `/iface` and `@version`, matches every import
//!   of that package it narrows to). The dependency's export of the same
//!   name (or its `export`) must be a subtype of the import.
//! - **Middleware.** Each middleware exports `wasi:http/handler@0.3.0` and
//!   imports it: the first gets the request, and its import is the next
//!   one's export, down to the component itself.
//! - **Capabilities stay per component.** A dependency's (or middleware's)
//!   imports of a capability its parent does not hand on
//!   (`inherit_configuration`) are renamed before composing, so the composed
//!   component imports them apart from its parent's: Ferry links those to
//!   functions that deny (an interface's own "denied" error, an empty
//!   environment, no preopened directories) whatever the parent was granted.
//!   Renaming instead of plugging in a deny-all component covers every
//!   version of every interface the dependency was built against, so a
//!   denied import cannot slip through for want of a matching adapter.
//!
//! The composed bytes are a function of every input's bytes, so the compile
//! cache, keyed by the bytes it compiles, caches them like any component.

use std::collections::BTreeMap;

use anyhow::{Context as _, bail};
use ferry_manifest::{Dependency, Inherit};
use wac_graph::types::{Package, SubtypeChecker};
use wac_graph::{CompositionGraph, EncodeOptions, NodeId};

use crate::adapt::{Adaptation, TopLevel, rename_top_level};

/// How the name of every import renamed to deny begins.
pub const DENIED_PREFIX: &str = "ferry-denied:";

/// The interface middleware exports and imports.
pub const MIDDLEWARE_HANDLER: &str = "wasi:http/handler@0.3.0";

/// The interfaces each capability set of `inherit_configuration` covers
/// (names without their version): what a dependency reaches its parent's
/// grants through.
const CAPABILITIES: &[(&str, &[&str])] = &[
    (
        "allowed_outbound_hosts",
        &[
            "wasi:http/outgoing-handler",
            "wasi:http/client",
            "wasi:http/handler",
            "wasi:sockets/tcp",
            "wasi:sockets/udp",
            "wasi:sockets/tcp-create-socket",
            "wasi:sockets/udp-create-socket",
            "wasi:sockets/ip-name-lookup",
            "wasi:sockets/types",
            "fermyon:spin/http",
            "fermyon:spin/outbound-http",
            "fermyon:spin/redis",
            "fermyon:spin/outbound-redis",
            "fermyon:spin/mysql",
            "fermyon:spin/outbound-mysql",
            "fermyon:spin/postgres",
            "fermyon:spin/outbound-pg",
            "fermyon:spin/mqtt",
            "spin:mqtt/mqtt",
            "spin:mysql/mysql",
            "spin:postgres/postgres",
            "spin:redis/redis",
        ],
    ),
    ("environment", &["wasi:cli/environment"]),
    ("files", &["wasi:filesystem/preopens"]),
    (
        "key_value_stores",
        &[
            "fermyon:spin/key-value",
            "spin:key-value/key-value",
            "wasi:keyvalue/store",
            "wasi:keyvalue/atomics",
            "wasi:keyvalue/batch",
        ],
    ),
    (
        "sqlite_databases",
        &["fermyon:spin/sqlite", "spin:sqlite/sqlite"],
    ),
    (
        "variables",
        &[
            "fermyon:spin/config",
            "fermyon:spin/variables",
            "spin:variables/variables",
            "wasi:config/store",
            "wasi:config/runtime",
        ],
    ),
    ("ai_models", &["fermyon:spin/llm"]),
];

/// Interfaces that reach nothing outside the sandbox — types, streams,
/// clocks, randomness, the guest's own standard streams and exit: every part
/// shares them with its parent. Every other import of a part is denied
/// unless its capability set is handed on, so an interface Ferry learns
/// later is denied to dependencies until it is listed here or in
/// [`CAPABILITIES`].
const SHARED: &[&str] = &[
    "wasi:io/error",
    "wasi:io/poll",
    "wasi:io/streams",
    "wasi:clocks/monotonic-clock",
    "wasi:clocks/wall-clock",
    "wasi:clocks/system-clock",
    "wasi:clocks/timezone",
    "wasi:clocks/types",
    "wasi:random/random",
    "wasi:random/insecure",
    "wasi:random/insecure-seed",
    "wasi:cli/stdin",
    "wasi:cli/stdout",
    "wasi:cli/stderr",
    "wasi:cli/exit",
    "wasi:cli/types",
    "wasi:cli/terminal-input",
    "wasi:cli/terminal-output",
    "wasi:cli/terminal-stdin",
    "wasi:cli/terminal-stdout",
    "wasi:cli/terminal-stderr",
    // Types and resources whose every use needs a capability below.
    "wasi:http/types",
    "wasi:filesystem/types",
    "wasi:sockets/network",
    "wasi:sockets/instance-network",
    "fermyon:spin/http-types",
    "fermyon:spin/redis-types",
    "fermyon:spin/rdbms-types",
];

/// Whether every part shares `import` with its parent.
fn shared(import: &str) -> bool {
    SHARED.contains(&import.split('@').next().unwrap_or(import))
}

/// The capability set an import belongs to, if any.
pub fn capability_of(import: &str) -> Option<&'static str> {
    let interface = import.split('@').next().unwrap_or(import);
    CAPABILITIES
        .iter()
        .find(|(_, interfaces)| interfaces.contains(&interface))
        .map(|(set, _)| *set)
}

/// One input of a composition: a dependency (or middleware) of the
/// component and its Wasm.
pub struct Part<'a> {
    pub dependency: &'a Dependency,
    /// Where it came from, as `ferry check` shows it.
    pub shown: String,
    pub wasm: &'a [u8],
}

/// A composed component and what was done to make it.
pub struct Composed {
    pub wasm: Vec<u8>,
    pub composition: Composition,
}

/// What composing a component did: for `ferry check`, and for the linker
/// (which imports deny).
#[derive(Debug, Clone, Default)]
pub struct Composition {
    /// Each import a dependency satisfies.
    pub links: Vec<Link>,
    /// The middleware a request passes through, outermost first.
    pub middleware: Vec<String>,
    /// Imports of dependencies and middleware renamed to deny, by their
    /// new name.
    pub denied: BTreeMap<String, Denied>,
    /// For each confined part, a component that imports what it imports
    /// and has no code: the linker reads from it which of its own resource
    /// types a renamed import's resources are (a denied interface names
    /// resources of interfaces still shared, like `wasi:http/types`).
    pub probes: Vec<Vec<u8>>,
}

/// An import of the component satisfied by a dependency.
#[derive(Debug, Clone)]
pub struct Link {
    pub import: String,
    /// The dependency's name in the manifest.
    pub dependency: String,
    /// Its export that satisfies the import.
    pub export: String,
    /// Where its Wasm came from.
    pub shown: String,
}

/// An import of a dependency (or middleware) that its parent did not hand
/// on.
#[derive(Debug, Clone)]
pub struct Denied {
    /// The import as the dependency names it.
    pub interface: String,
    /// The dependency (its manifest name) or middleware (`middleware[N]`).
    pub dependency: String,
    /// The capability set it belongs to; `None` for an interface in no set,
    /// which only `inherit_configuration = true` hands on.
    pub capability: Option<&'static str>,
    /// Its part's probe, in [`Composition::probes`].
    pub probe: usize,
}

impl Denied {
    /// What a guest calling `function` of it is told.
    pub fn message(&self, function: &str) -> String {
        let why = match self.capability {
            Some(set) => format!("its parent hands on no `{set}` (see `inherit_configuration`)"),
            None => "its parent hands it on only with `inherit_configuration = true`".to_owned(),
        };
        format!(
            "`{}#{function}` is denied to `{}`: {why}",
            self.interface, self.dependency
        )
    }
}

impl Composition {
    /// Lines for `ferry check`.
    pub fn describe(&self) -> Vec<String> {
        let mut lines = Vec::new();
        for link in &self.links {
            let export = if link.export == link.import {
                String::new()
            } else {
                format!(" (its export `{}`)", link.export)
            };
            lines.push(format!(
                "import `{}` ← dependency `{}`{export} from {}",
                link.import, link.dependency, link.shown
            ));
        }
        if !self.middleware.is_empty() {
            lines.push(format!(
                "middleware: {} → the component",
                self.middleware.join(" → ")
            ));
        }
        let mut denied: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for d in self.denied.values() {
            denied.entry(&d.dependency).or_default().push(&d.interface);
        }
        for (dependency, interfaces) in denied {
            lines.push(format!(
                "`{dependency}` denied: {}",
                interfaces
                    .iter()
                    .map(|i| format!("`{i}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        lines
    }
}

/// Composes `main` (the component `id`'s Wasm) with its `dependencies`,
/// then wraps the result in its `middleware` (outermost first).
pub fn compose(
    id: &str,
    main: &[u8],
    dependencies: &[Part<'_>],
    middleware: &[Part<'_>],
) -> anyhow::Result<Composed> {
    // wac's readers still panic on a few type constructs (`todo!`s); a
    // component that has one is refused, not the host's end.
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        compose_parts(id, main, dependencies, middleware)
    }))
    .unwrap_or_else(|_| {
        Err(anyhow::anyhow!(
            "component `{id}` or one of its parts uses a construct the composition library cannot read"
        ))
    })
}

fn compose_parts(
    id: &str,
    main: &[u8],
    dependencies: &[Part<'_>],
    middleware: &[Part<'_>],
) -> anyhow::Result<Composed> {
    let mut composition = Composition::default();
    let mut wasm = adapted(main).with_context(|| format!("component `{id}`"))?;
    if !dependencies.is_empty() {
        wasm = with_dependencies(id, &wasm, dependencies, &mut composition)?;
    }
    if !middleware.is_empty() {
        wasm = with_middleware(id, &wasm, middleware, &mut composition)?;
    }
    Ok(Composed { wasm, composition })
}

/// A part's bytes as a component Ferry serves (componentized, release
/// candidate names renamed), as a component on its own would be.
fn adapted(wasm: &[u8]) -> anyhow::Result<Vec<u8>> {
    Adaptation::for_component(&TopLevel::read(wasm)?, false)?.apply(wasm)
}

/// The part's Wasm with each import of a capability it does not inherit
/// renamed apart (recorded in `composition.denied`); `keep` is never renamed.
fn confined(
    part: &Part<'_>,
    keep: Option<&str>,
    composition: &mut Composition,
) -> anyhow::Result<Vec<u8>> {
    let name = &part.dependency.name;
    let wasm = adapted(part.wasm).with_context(|| format!("`{name}` ({})", part.shown))?;
    let top = TopLevel::read(&wasm)?;
    let mut renames: BTreeMap<String, String> = BTreeMap::new();
    for import in &top.imports {
        if Some(import.as_str()) == keep
            || shared(import)
            || part.dependency.inherit == Inherit::All
        {
            continue;
        }
        let capability = capability_of(import);
        if capability.is_some_and(|set| part.dependency.inherit.allows(set)) {
            continue;
        }
        let renamed = denied_name(composition.denied.len(), import);
        composition.denied.insert(
            renamed.clone(),
            Denied {
                interface: import.clone(),
                dependency: name.clone(),
                capability,
                probe: composition.probes.len(),
            },
        );
        renames.insert(import.clone(), renamed);
    }
    if renames.is_empty() {
        return Ok(wasm);
    }
    composition
        .probes
        .push(probe(&wasm, keep).with_context(|| format!("reading `{name}`'s imports"))?);
    rename_top_level(&wasm, &|n| renames.get(n).cloned(), &|_| None)
        .with_context(|| format!("confining `{name}`"))
}

/// A component with `wasm`'s imports (but `keep`, which composing
/// satisfies), no exports and no code: its world, decoded, less its
/// exports. It compiles in milliseconds.
fn probe(wasm: &[u8], keep: Option<&str>) -> anyhow::Result<Vec<u8>> {
    let wit_component::DecodedWasm::Component(mut resolve, world) = wit_component::decode(wasm)?
    else {
        bail!("not a component");
    };
    let kept: Vec<wit_parser::WorldKey> = resolve.worlds[world]
        .imports
        .keys()
        .filter(|key| Some(resolve.name_world_key(key).as_str()) == keep)
        .cloned()
        .collect();
    let world_mut = &mut resolve.worlds[world];
    world_mut.exports.clear();
    for key in kept {
        world_mut.imports.shift_remove(&key);
    }
    let mut module =
        wit_component::dummy_module(&resolve, world, wit_parser::ManglingAndAbi::Standard32);
    wit_component::embed_component_metadata(
        &mut module,
        &resolve,
        world,
        wit_component::StringEncoding::UTF8,
    )?;
    wit_component::ComponentEncoder::default()
        .module(&module)?
        .encode()
}

/// The name a denied import is renamed to: unique in the composition, and
/// an interface name still (`ferry-denied:d0-wasi-http/outgoing-handler@0.2.4`).
fn denied_name(n: usize, import: &str) -> String {
    let (path, version) = match import.split_once('@') {
        Some((path, version)) => (path, Some(version)),
        None => (import, None),
    };
    let (package, interface) = path.split_once('/').unwrap_or((path, "import"));
    let package = package.replace(':', "-");
    let mut name = format!("{DENIED_PREFIX}d{n}-{package}/{interface}");
    if let Some(version) = version {
        name.push('@');
        name.push_str(version);
    }
    name
}

fn register(
    graph: &mut CompositionGraph,
    name: &str,
    wasm: Vec<u8>,
) -> anyhow::Result<(wac_graph::types::WorldId, NodeId)> {
    let package = Package::from_bytes(name, None, wasm, graph.types_mut())
        .with_context(|| format!("reading `{name}`"))?;
    let world = package.ty();
    let id = graph.register_package(package)?;
    Ok((world, graph.instantiate(id)))
}

fn with_dependencies(
    id: &str,
    main: &[u8],
    dependencies: &[Part<'_>],
    composition: &mut Composition,
) -> anyhow::Result<Vec<u8>> {
    let mut graph = CompositionGraph::new();
    let (world, instance) = register(&mut graph, "ferry:main", main.to_vec())?;
    let imports: Vec<String> = graph.types()[world].imports.keys().cloned().collect();
    // Import name → the dependency satisfying it.
    let mut satisfied: BTreeMap<String, usize> = BTreeMap::new();
    let mut nodes = Vec::new();
    for (n, part) in dependencies.iter().enumerate() {
        let name = &part.dependency.name;
        let matched: Vec<&String> = imports
            .iter()
            .filter(|import| matches_import(name, import))
            .collect();
        if matched.is_empty() {
            bail!(
                "dependency `{name}` matches no import of component `{id}` (it imports {})",
                list(&imports)
            );
        }
        for import in matched {
            if let Some(other) = satisfied.insert(import.clone(), n) {
                bail!(
                    "component `{id}`'s import `{import}` is satisfied by two dependencies: `{}` and `{name}`",
                    dependencies[other].dependency.name
                );
            }
        }
        let wasm = confined(part, None, composition)?;
        nodes.push(register(&mut graph, &format!("ferry:dependency{n}"), wasm)?);
    }
    let mut cache = Default::default();
    let mut checker = SubtypeChecker::new(&mut cache);
    for (import, n) in satisfied {
        let part = &dependencies[n];
        let (dep_world, dep_instance) = nodes[n];
        let export = part
            .dependency
            .export
            .clone()
            .unwrap_or_else(|| import.clone());
        let exports = &graph.types()[dep_world].exports;
        let Some(export_ty) = exports.get(&export) else {
            bail!(
                "dependency `{}` ({}) does not export `{export}` to satisfy `{import}` (it exports {})",
                part.dependency.name,
                part.shown,
                list(&exports.keys().cloned().collect::<Vec<_>>())
            );
        };
        let import_ty = graph.types()[world].imports[&import];
        checker
            .is_subtype(*export_ty, graph.types(), import_ty, graph.types())
            .with_context(|| {
                format!(
                    "dependency `{}`'s export `{export}` does not fit component `{id}`'s import `{import}`",
                    part.dependency.name
                )
            })?;
        let node = graph.alias_instance_export(dep_instance, &export)?;
        graph.set_instantiation_argument(instance, &import, node)?;
        composition.links.push(Link {
            import,
            dependency: part.dependency.name.clone(),
            export,
            shown: part.shown.clone(),
        });
    }
    export_all(&mut graph, world, instance)?;
    graph
        .encode(EncodeOptions::default())
        .with_context(|| format!("composing component `{id}` with its dependencies"))
}

fn with_middleware(
    id: &str,
    main: &[u8],
    middleware: &[Part<'_>],
    composition: &mut Composition,
) -> anyhow::Result<Vec<u8>> {
    let mut graph = CompositionGraph::new();
    let (world, instance) = register(&mut graph, "ferry:main", main.to_vec())?;
    if !graph.types()[world]
        .exports
        .contains_key(MIDDLEWARE_HANDLER)
    {
        bail!(
            "component `{id}` has middleware, so it must export `{MIDDLEWARE_HANDLER}` (WASI 0.3's HTTP handler) for the middleware to pass requests to"
        );
    }
    let mut next = graph.alias_instance_export(instance, MIDDLEWARE_HANDLER)?;
    // Innermost first: each wraps the one registered before it.
    for (n, part) in middleware.iter().enumerate().rev() {
        let name = &part.dependency.name;
        let wasm = confined(part, Some(MIDDLEWARE_HANDLER), composition)?;
        let (mw_world, mw_instance) = register(&mut graph, &format!("ferry:middleware{n}"), wasm)?;
        let types = &graph.types()[mw_world];
        if !types.exports.contains_key(MIDDLEWARE_HANDLER)
            || !types.imports.contains_key(MIDDLEWARE_HANDLER)
        {
            bail!(
                "`{name}` ({}) is not HTTP middleware: middleware exports `{MIDDLEWARE_HANDLER}` and imports it to call the next handler",
                part.shown
            );
        }
        graph
            .set_instantiation_argument(mw_instance, MIDDLEWARE_HANDLER, next)
            .with_context(|| format!("passing `{name}`'s requests on"))?;
        next = graph.alias_instance_export(mw_instance, MIDDLEWARE_HANDLER)?;
    }
    composition.middleware = middleware
        .iter()
        .map(|p| format!("`{}` ({})", p.dependency.name, p.shown))
        .collect();
    graph.export(next, MIDDLEWARE_HANDLER)?;
    graph
        .encode(EncodeOptions::default())
        .with_context(|| format!("composing component `{id}` with its middleware"))
}

/// Exports everything the instance exports.
fn export_all(
    graph: &mut CompositionGraph,
    world: wac_graph::types::WorldId,
    instance: NodeId,
) -> anyhow::Result<()> {
    let names: Vec<String> = graph.types()[world].exports.keys().cloned().collect();
    for name in names {
        let node = graph.alias_instance_export(instance, &name)?;
        graph.export(node, &name)?;
    }
    Ok(())
}

fn list(names: &[String]) -> String {
    if names.is_empty() {
        return "nothing".into();
    }
    names
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Spin's rule for whether a dependency named `dependency` satisfies
/// `import`: a plain name matches only itself; a package (`ns:pkg`), an
/// interface (`ns:pkg/iface`) and either with a version match the imports
/// they narrow to.
pub fn matches_import(dependency: &str, import: &str) -> bool {
    let split = |name: &str| -> (String, Option<String>, Option<String>) {
        let (path, version) = match name.split_once('@') {
            Some((path, version)) => (path.to_owned(), Some(version.to_owned())),
            None => (name.to_owned(), None),
        };
        match path.split_once('/') {
            Some((package, interface)) => (package.to_owned(), Some(interface.to_owned()), version),
            None => (path, None, version),
        }
    };
    let is_package = |name: &str| name.contains(':');
    match (is_package(dependency), is_package(import)) {
        (false, false) => dependency == import,
        (true, true) => {
            let (dep_package, dep_interface, dep_version) = split(dependency);
            let (package, interface, version) = split(import);
            dep_package == package
                && dep_interface.is_none_or(|i| Some(i) == interface)
                && dep_version.is_none_or(|v| Some(v) == version)
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dependency_names_match_imports_as_spin_matches_them() {
        for (dependency, imports) in [
            ("foo:bar/baz@0.1.0", &["foo:bar/baz@0.1.0"][..]),
            ("foo:bar/baz", &["foo:bar/baz@0.1.0", "foo:bar/baz"]),
            ("foo:bar", &["foo:bar/baz@0.1.0", "foo:bar/baz"]),
            ("foo:bar@0.1.0", &["foo:bar/baz@0.1.0"]),
            ("foo-bar", &["foo-bar"]),
        ] {
            for import in imports {
                assert!(matches_import(dependency, import), "{dependency} {import}");
            }
        }
        for (dependency, imports) in [
            ("foo:bar/baz@0.1.0", &["foo:bar/baz"][..]),
            ("foo:bar/baz", &["foo:bar/bub", "foo:bar/bub@0.1.0"]),
            ("foo:bar", &["foo:bub/bib"]),
            ("foo:bar@0.1.0", &["foo:bar/baz"]),
            ("foo:bar/baz", &["foo:bar/baz-bub", "foo-bar"]),
        ] {
            for import in imports {
                assert!(!matches_import(dependency, import), "{dependency} {import}");
            }
        }
    }

    #[test]
    fn capabilities_are_found_at_every_version() {
        assert_eq!(
            capability_of("wasi:http/outgoing-handler@0.2.0"),
            Some("allowed_outbound_hosts")
        );
        assert_eq!(
            capability_of("wasi:http/client@0.3.0"),
            Some("allowed_outbound_hosts")
        );
        assert_eq!(
            capability_of("wasi:cli/environment@0.2.6"),
            Some("environment")
        );
        assert_eq!(
            capability_of("fermyon:spin/key-value"),
            Some("key_value_stores")
        );
        assert_eq!(capability_of("wasi:http/types@0.2.0"), None);
        assert!(shared("wasi:http/types@0.2.0") && shared("wasi:io/streams@0.2.6"));
        assert!(!shared("wasi:tls/types@0.2.0") && !shared("wasi:cli/environment@0.3.0"));
        assert_eq!(capability_of("wasi:cli/stdout@0.2.0"), None);
        assert_eq!(
            denied_name(3, "wasi:http/outgoing-handler@0.2.4"),
            "ferry-denied:d3-wasi-http/outgoing-handler@0.2.4"
        );
    }
}
