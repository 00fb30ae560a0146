//! Spin's host interfaces that Ferry does not provide (yet), linked so that
//! the apps importing them load.
//!
//! Spin links its whole world into every component, and SDKs import it
//! whether or not the app uses it (the Python SDK imports every Spin
//! interface). Ferry links each such import that a component has to
//! functions that answer with that interface's *own* error value — the
//! `other(string)` / `runtime-error(string)` / `access-denied` case of its
//! `error` variant, saying the capability is not available in Ferry — so a
//! guest sees an ordinary failure it can report, never a trap or a load
//! failure. A function returning a list or an option answers an empty one;
//! one whose result has no error case to give traps with a message naming
//! it; one returning nothing does nothing.
//!
//! The same stubs deny a composed dependency's (or middleware's) imports
//! that its parent does not hand on, which `compose.rs` renames apart:
//! those answer the interface's "denied" case first (`HTTP-request-denied`,
//! `access-denied`), and their resources are the host's own resource types,
//! read from the composition's code-less probe components.
//!
//! Nothing is granted by this: there is nothing behind the functions. The
//! stubs are made from the component's own import types, per component and
//! only for what it imports, so components that import none of this link
//! and instantiate exactly as before.

use std::collections::BTreeMap;

use wasmtime::Engine;
use wasmtime::component::types::{ComponentFunc, ComponentItem};
use wasmtime::component::{Component, Linker, LinkerInstance, ResourceType, Type, Val};

use crate::adapt::WASI_03_CANDIDATE;
use crate::compose::Composition;

/// Package prefixes of the interfaces Spin 3.x and 4.x hosts provide beyond
/// WASI itself.
const SPIN_WORLD: &[&str] = &[
    "fermyon:spin/",
    "fermyon:spin@",
    "spin:key-value/",
    "spin:mqtt/",
    "spin:mysql/",
    "spin:postgres/",
    "spin:redis/",
    "spin:sqlite/",
    "spin:variables/",
    "wasi:keyvalue/",
    "wasi:config/",
    "wasi:otel/",
];

/// Interfaces of Spin's world that Ferry implements (in the base linkers):
/// never stubbed.
const IMPLEMENTED: &[&str] = &[
    "fermyon:spin/key-value@2.0.0",
    "fermyon:spin/sqlite@2.0.0",
    "fermyon:spin/redis@2.0.0",
    "fermyon:spin/mqtt@2.0.0",
    "spin:mqtt/mqtt@3.0.0",
    "spin:redis/redis@3.0.0",
    "fermyon:spin/postgres@2.0.0",
    "fermyon:spin/mysql@2.0.0",
    "fermyon:spin/rdbms-types@2.0.0",
    "spin:postgres/postgres@3.0.0",
    "spin:postgres/postgres@4.0.0",
    "spin:postgres/postgres@4.1.0",
    "spin:postgres/postgres@4.2.0",
    "spin:mysql/mysql@3.0.0",
    // Types only (the Redis trigger's error and payload): nothing to stub.
    "fermyon:spin/redis-types",
    "spin:sqlite/sqlite@3.0.0",
    "spin:sqlite/sqlite@3.1.0",
    "spin:key-value/key-value@3.0.0",
    "fermyon:spin/variables@2.0.0",
    "spin:variables/variables@3.0.0",
    "wasi:config/store@0.2.0-draft-2024-09-27",
    "wasi:keyvalue/store@0.2.0-draft2",
    "wasi:keyvalue/atomics@0.2.0-draft2",
    "wasi:keyvalue/batch@0.2.0-draft2",
];

/// Whether Ferry links `import` (an interface name) only so that the
/// component loads: it belongs to Spin's world, or it is a WASI 0.3 release
/// candidate name. A component importing only candidate names is renamed to
/// 0.3.0 (`adapt.rs`); one importing them beside 0.3.0 itself (the Python
/// SDK 5 does) gets them linked here, answering like the rest.
pub(crate) fn linked_unsupported(import: &str) -> bool {
    (SPIN_WORLD.iter().any(|prefix| import.starts_with(prefix)) && !IMPLEMENTED.contains(&import))
        || import.ends_with(WASI_03_CANDIDATE)
}

/// `base` with every such import of `component` linked to functions that
/// report the capability as unavailable, and every import in `denied` (a
/// dependency's import of a capability its parent does not hand on, renamed
/// by `compose.rs`) to functions that deny it; `None` when the component
/// imports none (then `base` serves as it is).
pub(crate) fn linker_for<T: 'static>(
    base: &Linker<T>,
    engine: &Engine,
    component: &Component,
    composition: &Composition,
) -> anyhow::Result<Option<Linker<T>>> {
    let denied = &composition.denied;
    let ty = component.component_type();
    let stubbed: Vec<(&str, ComponentItem)> = ty
        .imports(engine)
        .filter(|(name, _)| linked_unsupported(name) || denied.contains_key(*name))
        .map(|(name, import)| (name, import.ty))
        .collect();
    if stubbed.is_empty() {
        return Ok(None);
    }
    let resources = if denied.is_empty() {
        BTreeMap::new()
    } else {
        host_resources(base, engine, &composition.probes)?
    };
    let mut linker = base.clone();
    for (name, item) in stubbed {
        let ComponentItem::ComponentInstance(instance) = item else {
            continue;
        };
        let denial = denied.get(name);
        let mut linked = linker.instance(name)?;
        for (export, item) in instance.exports(engine) {
            let answer = match denial {
                Some(denial) => Answer::Denied(denial.message(export)),
                None => Answer::Unavailable(format!("{name}#{export} is not available in Ferry")),
            };
            // A denied interface's resources are the host's own where it
            // names them (`outgoing-request` of `wasi:http/types`, say).
            let host = denial.and_then(|d| {
                resources
                    .get(&(d.probe, d.interface.clone(), export.to_owned()))
                    .cloned()
            });
            define(&mut linked, export, item.ty, answer, host)?;
        }
    }
    Ok(Some(linker))
}

/// The resource type `base` gives each resource of each interface a probe
/// imports, by (probe, interface, resource).
fn host_resources<T: 'static>(
    base: &Linker<T>,
    engine: &Engine,
    probes: &[Vec<u8>],
) -> anyhow::Result<BTreeMap<(usize, String, String), ResourceType>> {
    let mut resources = BTreeMap::new();
    for (n, probe) in probes.iter().enumerate() {
        let probe = Component::new(engine, probe)?;
        let extended = linker_for(base, engine, &probe, &Composition::default())?;
        let ty = extended
            .as_ref()
            .unwrap_or(base)
            .substituted_component_type(&probe)?;
        for (interface, import) in ty.imports(engine) {
            let ComponentItem::ComponentInstance(instance) = import.ty else {
                continue;
            };
            for (name, item) in instance.exports(engine) {
                if let ComponentItem::Resource(resource) = item.ty {
                    resources.insert((n, interface.to_owned(), name.to_owned()), resource);
                }
            }
        }
    }
    Ok(resources)
}

fn define<T: 'static>(
    instance: &mut LinkerInstance<'_, T>,
    name: &str,
    item: ComponentItem,
    reply: Answer,
    host: Option<ResourceType>,
) -> anyhow::Result<()> {
    match item {
        ComponentItem::ComponentFunc(func) => {
            if func.async_() {
                instance.func_new_concurrent(name, move |_, ty, _, results| {
                    let answer = answer(&reply, &ty, results);
                    Box::pin(async move { answer })
                })?;
            } else {
                instance.func_new(name, move |_, ty, _, results| answer(&reply, &ty, results))?;
            }
        }
        // No value of these ever exists: every function that would make one
        // fails first.
        ComponentItem::Resource(_) => {
            let ty = host.unwrap_or_else(ResourceType::host::<Unavailable>);
            instance.resource(name, ty, |_, _| Ok(()))?;
        }
        _ => {}
    }
    Ok(())
}

/// What a stub answers: a capability Ferry lacks, or one a dependency was
/// not handed (which prefers the interface's "denied" case).
enum Answer {
    Unavailable(String),
    Denied(String),
}

/// The host type behind every resource of an unavailable interface.
struct Unavailable;

/// Fills `results` with the function's "not available" answer: its error
/// case saying `message`, or nothing (an empty list, `none`) where the
/// result has no error case (an environment, preopened directories).
fn answer(reply: &Answer, ty: &ComponentFunc, results: &mut [Val]) -> wasmtime::Result<()> {
    let (message, denied) = match reply {
        Answer::Unavailable(message) => (message.as_str(), false),
        Answer::Denied(message) => (message.as_str(), true),
    };
    let types: Vec<Type> = ty.results().collect();
    match (types.as_slice(), results) {
        ([], []) => Ok(()),
        ([Type::List(_)], [slot]) => {
            *slot = Val::List(Vec::new());
            Ok(())
        }
        ([Type::Option(_)], [slot]) => {
            *slot = Val::Option(None);
            Ok(())
        }
        ([Type::Result(result)], [slot]) => {
            let error = match result.err() {
                Some(error) => Some(Box::new(error_value(&error, message, denied).ok_or_else(
                    || wasmtime::format_err!("{message} (and its error type cannot say so)"),
                )?)),
                None => None,
            };
            *slot = Val::Result(Err(error));
            Ok(())
        }
        _ => Err(wasmtime::format_err!("{message}")),
    }
}

/// The case of an interface's error type that says "not available": a case
/// carrying a message if there is one (preferring the catch-all names Spin's
/// interfaces use), else a case meaning "refused".
fn error_value(ty: &Type, message: &str, denied: bool) -> Option<Val> {
    const WITH_MESSAGE: &[&str] = &[
        "other",
        "runtime-error",
        "unexpected-error",
        "provider",
        "upstream",
        "io",
        "connection-failed",
    ];
    /// What a host that refuses a grant answers (what Ferry's own
    /// implementations answer a component not granted).
    const DENIED: &[&str] = &[
        "HTTP-request-denied",
        "access-denied",
        "destination-not-allowed",
    ];
    const WITHOUT_MESSAGE: &[&str] = &[
        "HTTP-request-denied",
        "access-denied",
        "runtime-error",
        "no-such-store",
        "no-such-database",
        "invalid-address",
    ];
    match ty {
        Type::String => Some(Val::String(message.to_owned())),
        Type::Variant(variant) => {
            let cases: Vec<_> = variant.cases().collect();
            if denied
                && let Some(case) = DENIED
                    .iter()
                    .find_map(|wanted| cases.iter().find(|c| c.name == *wanted && c.ty.is_none()))
            {
                return Some(Val::Variant(case.name.to_owned(), None));
            }
            let with_message = WITH_MESSAGE
                .iter()
                .find_map(|wanted| {
                    cases
                        .iter()
                        .find(|c| c.name == *wanted && matches!(c.ty, Some(Type::String)))
                })
                .or_else(|| cases.iter().find(|c| matches!(c.ty, Some(Type::String))));
            if let Some(case) = with_message {
                return Some(Val::Variant(
                    case.name.to_owned(),
                    Some(Box::new(Val::String(message.to_owned()))),
                ));
            }
            let bare = WITHOUT_MESSAGE
                .iter()
                .find_map(|wanted| cases.iter().find(|c| c.name == *wanted && c.ty.is_none()))
                .or_else(|| cases.iter().find(|c| c.ty.is_none()))?;
            Some(Val::Variant(bare.name.to_owned(), None))
        }
        Type::Enum(cases) => {
            let names: Vec<&str> = cases.names().collect();
            let name = WITHOUT_MESSAGE
                .iter()
                .find(|wanted| names.contains(wanted))
                .copied()
                .or_else(|| names.iter().copied().find(|n| *n != "success"))?;
            Some(Val::Enum(name.to_owned()))
        }
        _ => None,
    }
}
