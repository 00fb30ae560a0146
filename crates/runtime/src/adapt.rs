//! Making the Wasm that Spin apps build fit Ferry's wasi:http host, as Spin
//! does at load time.
//!
//! - **Core modules.** Rust Spin apps built with `cargo build --target
//!   wasm32-wasip1` (and TinyGo apps) are WASI preview 1 core modules that
//!   carry wit-bindgen's `component-type` sections. Such a module becomes a
//!   component through the WASI preview 1 *reactor* adapter (the one
//!   wasmtime ships for this wasmtime version), its embedded world deciding
//!   its exports — Spin's own recipe. The reactor adapter, not the smaller
//!   proxy one, so that `environment` and `files` still reach the guest.
//! - **WASI 0.3 release candidate names.** Spin 4's SDKs (spin-sdk 6, the Go
//!   SDK 3) build against `wasi:*@0.3.0-rc-2026-03-15`, whose interfaces are
//!   those of 0.3.0 (which wasmtime serves) under another version. Renaming
//!   the component's own top-level import and export names to `@0.3.0` is
//!   all it takes; nothing inside the component changes. A core module built
//!   so (spin-sdk 6 for `wasm32-wasip1`, as spin-rust-sdk's examples build)
//!   is componentized, then renamed; the names its metadata gives the
//!   component ([`TopLevel::read`]) decide, before compiling, that it runs
//!   on the engine with component-model concurrency.
//!
//! Modules built with the pre-component wit-bindgen 0.2 ABI (exporting
//! `handle-http-request`: spin-sdk 1.x, the TinyGo SDK 2) are refused with a
//! message saying so.
//!
//! Adapting costs milliseconds; the compile cache keys its artifact by the
//! original bytes and [`Adaptation::cache_tag`], so a warm start does not
//! adapt at all, and a new adapter (a new wasmtime) recompiles.

use anyhow::Context as _;
use sha2::{Digest as _, Sha256};
use wasmparser::{Parser, Payload};

/// What has to happen to a guest's bytes before they are compiled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Adaptation {
    /// A component Ferry serves as it is.
    None,
    /// A WASI preview 1 core module with component metadata: componentized
    /// with the reactor adapter.
    Componentize,
    /// A component built for WASI 0.3's release candidate: its top-level
    /// names are renamed to 0.3.0.
    RenameWasi03Candidate,
    /// A core module built for WASI 0.3's release candidate (spin-sdk 6 for
    /// `wasm32-wasip1`): componentized, then renamed.
    ComponentizeRenamingWasi03Candidate,
}

/// The release candidate of WASI 0.3 that Spin 4's SDKs build against.
pub(crate) const WASI_03_CANDIDATE: &str = "@0.3.0-rc-2026-03-15";
const WASI_03: &str = "@0.3.0";

impl Adaptation {
    /// What a guest whose names are `top` needs to be run as a component
    /// (by the `http` executor, or an event or command trigger: `http` says
    /// which), or why it cannot be.
    pub fn for_component(top: &TopLevel, http: bool) -> anyhow::Result<Self> {
        let Some(module) = &top.module else {
            return Ok(if top.built_for_wasi_03_candidate() {
                Self::RenameWasi03Candidate
            } else {
                Self::None
            });
        };
        if module.has_component_type {
            Ok(if top.built_for_wasi_03_candidate() {
                Self::ComponentizeRenamingWasi03Candidate
            } else {
                Self::Componentize
            })
        } else if module.exports.iter().any(|e| e == "handle-http-request") {
            anyhow::bail!(
                "this core module uses Spin's pre-component HTTP ABI (it exports `handle-http-request`, as spin-sdk 1.x and Spin's TinyGo SDK 2 build); Ferry does not serve that ABI yet: rebuild it with a current Spin SDK"
            )
        } else if module.exports.iter().any(|e| e == "_start") {
            if http {
                anyhow::bail!(
                    "this is a WASI command module, but the `http` executor needs a wasi:http component (for a CGI program, use `executor = {{ type = \"wagi\" }}`)"
                )
            }
            anyhow::bail!(
                "this is a WASI preview 1 command module; Ferry runs a trigger's component as a component: build it for WASI 0.2 (for Rust, `--target wasm32-wasip2`)"
            )
        } else {
            anyhow::bail!(
                "this core module carries no component metadata (no `component-type` section from wit-bindgen), so Ferry cannot tell what it exports; build it as a component (for Rust, `--target wasm32-wasip2`)"
            )
        }
    }

    /// Part of the compile cache key: bytes adapted differently (or by a
    /// different adapter) are different artifacts.
    pub fn cache_tag(self) -> Vec<u8> {
        match self {
            Self::None => Vec::new(),
            Self::Componentize => {
                let mut tag = b"componentize-reactor-v1:".to_vec();
                tag.extend_from_slice(&Sha256::digest(REACTOR_ADAPTER));
                tag
            }
            Self::RenameWasi03Candidate => {
                format!("rename{WASI_03_CANDIDATE}{WASI_03}-v1").into_bytes()
            }
            Self::ComponentizeRenamingWasi03Candidate => {
                let mut tag = Self::Componentize.cache_tag();
                tag.push(b'+');
                tag.extend(Self::RenameWasi03Candidate.cache_tag());
                tag
            }
        }
    }

    /// Whether the result is a component.
    pub fn yields_component(self, wasm: &[u8]) -> bool {
        self != Self::None || Parser::is_component(wasm)
    }

    /// The bytes to compile.
    pub fn apply(self, wasm: &[u8]) -> anyhow::Result<Vec<u8>> {
        match self {
            Self::None => Ok(wasm.to_vec()),
            Self::Componentize => componentize(wasm),
            Self::RenameWasi03Candidate => rename_version(wasm, WASI_03_CANDIDATE, WASI_03),
            Self::ComponentizeRenamingWasi03Candidate => {
                rename_version(&componentize(wasm)?, WASI_03_CANDIDATE, WASI_03)
            }
        }
    }

    /// How `ferry check` describes what was done, if anything.
    pub fn describe(self) -> Option<&'static str> {
        match self {
            Self::None => None,
            Self::Componentize => Some("componentized from a WASI preview 1 core module"),
            Self::RenameWasi03Candidate => {
                Some("built for WASI 0.3.0-rc-2026-03-15, served as 0.3.0")
            }
            Self::ComponentizeRenamingWasi03Candidate => Some(
                "componentized from a WASI preview 1 core module built for WASI 0.3.0-rc-2026-03-15, served as 0.3.0",
            ),
        }
    }
}

const REACTOR_ADAPTER: &[u8] =
    wasi_preview1_component_adapter_provider::WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER;

fn componentize(module: &[u8]) -> anyhow::Result<Vec<u8>> {
    wit_component::ComponentEncoder::default()
        .validate(true)
        .module(module)
        .context("reading the core module's component metadata")?
        .adapter(
            wasi_preview1_component_adapter_provider::WASI_SNAPSHOT_PREVIEW1_ADAPTER_NAME,
            REACTOR_ADAPTER,
        )
        .context("adding the WASI preview 1 adapter")?
        .encode()
        .context("turning the core module into a component")
}

/// What the adaptation decision needs to know about a core module.
struct ModuleFacts {
    /// Its core exports, as named.
    exports: Vec<String>,
    /// A `component-type*` custom section: wit-bindgen's embedded world.
    has_component_type: bool,
    /// The component exports it lifts as async functions.
    lifted_async: Vec<String>,
}

/// A guest's own import and export names: a component's top-level ones
/// (not those of components and modules nested in it), or those a core
/// module's metadata gives the component it becomes.
pub(crate) struct TopLevel {
    pub imports: Vec<String>,
    pub exports: Vec<String>,
    /// For a core module: what it carries.
    module: Option<ModuleFacts>,
}

impl TopLevel {
    /// Reads `wasm`'s names, once, whether it is a component or a core
    /// module.
    pub fn read(wasm: &[u8]) -> anyhow::Result<Self> {
        if Parser::is_core_wasm(wasm) {
            Self::read_module(wasm)
        } else {
            Self::read_component(wasm)
        }
    }

    /// The names of the component a core module with component metadata
    /// becomes: wit-bindgen names a core export `iface#func` (or
    /// `[async-lift]iface#func`, or `[async-lift]func` at the world's top)
    /// and an import's module `iface`, where the component's export or
    /// import is `iface` (or `func`). The preview 1 imports
    /// (`wasi_snapshot_preview1`) become the adapter's own, and are left out.
    fn read_module(wasm: &[u8]) -> anyhow::Result<Self> {
        let mut facts = ModuleFacts {
            exports: Vec::new(),
            has_component_type: false,
            lifted_async: Vec::new(),
        };
        let mut imports: Vec<String> = Vec::new();
        for payload in Parser::new(0).parse_all(wasm) {
            match payload.context("reading the core module")? {
                Payload::ExportSection(exports) => {
                    for export in exports {
                        facts.exports.push(export?.name.to_owned());
                    }
                }
                Payload::ImportSection(sections) => {
                    for import in sections.into_imports() {
                        let module = import?.module;
                        if !module.starts_with('[')
                            && !["wasi_snapshot_preview1", "env", "$root"].contains(&module)
                            && !imports.iter().any(|m| m == module)
                        {
                            imports.push(module.to_owned());
                        }
                    }
                }
                Payload::CustomSection(section) if section.name().starts_with("component-type") => {
                    facts.has_component_type = true;
                }
                _ => {}
            }
        }
        let mut exports: Vec<String> = Vec::new();
        for export in &facts.exports {
            let mut name = export.as_str();
            let mut tagged = false;
            let mut is_async = false;
            while let Some(rest) = name.strip_prefix('[') {
                let Some((tag, after)) = rest.split_once(']') else {
                    break;
                };
                tagged = true;
                // `[callback]` exports are the async lift's helpers.
                if tag == "callback" {
                    name = "";
                    break;
                }
                is_async |= tag == "async-lift" || tag == "async-lift-stackful";
                name = after;
            }
            let name = match name.split_once('#') {
                Some((interface, _)) => interface,
                // Core-only exports (`memory`, `cabi_realloc`, …) carry no
                // tag and no interface.
                None if tagged => name,
                None => continue,
            };
            if name.is_empty() || name.starts_with("cabi_") {
                continue;
            }
            if !exports.iter().any(|e| e == name) {
                exports.push(name.to_owned());
            }
            if is_async && !facts.lifted_async.iter().any(|e| e == name) {
                facts.lifted_async.push(name.to_owned());
            }
        }
        Ok(Self {
            imports,
            exports,
            module: Some(facts),
        })
    }

    fn read_component(wasm: &[u8]) -> anyhow::Result<Self> {
        let mut names = Self {
            imports: Vec::new(),
            exports: Vec::new(),
            module: None,
        };
        let mut depth = 0usize;
        for payload in Parser::new(0).parse_all(wasm) {
            match payload.context("reading the component")? {
                Payload::Version { .. } => depth += 1,
                Payload::End(_) => depth = depth.saturating_sub(1),
                Payload::ComponentImportSection(imports) if depth == 1 => {
                    for import in imports {
                        names.imports.push(import?.name.name.to_owned());
                    }
                }
                Payload::ComponentExportSection(exports) if depth == 1 => {
                    for export in exports {
                        names.exports.push(export?.name.name.to_owned());
                    }
                }
                _ => {}
            }
        }
        Ok(names)
    }

    /// Whether `wasm` (this component) exports `name` as an async function
    /// (an entry point of a WASI 0.3 guest: it then runs on the engine with
    /// component-model concurrency). Reads the component's types, so only
    /// asked where an entry point may be either.
    pub fn exports_async_func(&self, wasm: &[u8], name: &str) -> anyhow::Result<bool> {
        if !self.exports.iter().any(|e| e == name) {
            return Ok(false);
        }
        if let Some(module) = &self.module {
            return Ok(module.lifted_async.iter().any(|e| e == name));
        }
        let types = wasmparser::Validator::new_with_features(wasmparser::WasmFeatures::all())
            .validate_all(wasm)
            .context("reading the component's types")?;
        let types = types.as_ref();
        Ok(
            match types.component_item_for_export(name).map(|item| &item.ty) {
                Some(wasmparser::component_types::ComponentEntityType::Func(id)) => {
                    types[*id].async_
                }
                _ => false,
            },
        )
    }

    /// Whether it names WASI 0.3's release candidate and not 0.3.0 itself,
    /// so that renaming the candidate's names is all it needs.
    fn built_for_wasi_03_candidate(&self) -> bool {
        let names = || self.imports.iter().chain(&self.exports);
        names().any(|n| n.ends_with(WASI_03_CANDIDATE)) && !names().any(|n| n.ends_with(WASI_03))
    }

    /// Whether it exports WASI 0.3's `wasi:http/handler` (rather than 0.2's
    /// `wasi:http/incoming-handler`), the release candidate included: it
    /// then runs on the engine with component-model concurrency.
    pub fn exports_wasi_http_03(&self) -> bool {
        self.exports
            .iter()
            .any(|e| e.starts_with("wasi:http/handler@0.3"))
    }
}

/// Rewrites `from` to `to` in the version of the component's top-level
/// import and export names.
fn rename_version(wasm: &[u8], from: &str, to: &str) -> anyhow::Result<Vec<u8>> {
    // A composed part's denied import keeps its name: it is linked by it.
    let rename = |name: &str| {
        if name.starts_with(crate::compose::DENIED_PREFIX) {
            return None;
        }
        name.strip_suffix(from).map(|stem| format!("{stem}{to}"))
    };
    rename_top_level(wasm, &rename, &rename)
}

/// Renames the component's top-level imports and exports for which
/// `imports` / `exports` give a new name, copying every other section byte
/// for byte (so nested modules, types and code are untouched), then
/// validates the result.
pub(crate) fn rename_top_level(
    wasm: &[u8],
    rename_import: &dyn Fn(&str) -> Option<String>,
    rename_export: &dyn Fn(&str) -> Option<String>,
) -> anyhow::Result<Vec<u8>> {
    use wasm_encoder::reencode::{ReencodeComponent, RoundtripReencoder};
    use wasm_encoder::{ComponentExportSection, ComponentImportSection, RawSection};

    let mut out = wasm_encoder::Component::new();
    let mut depth = 0usize;
    for payload in Parser::new(0).parse_all(wasm) {
        let payload = payload?;
        match &payload {
            Payload::Version { .. } => {
                depth += 1;
                continue;
            }
            Payload::End(_) => {
                depth -= 1;
                continue;
            }
            // Inside a nested module or component: copied whole with the
            // section that holds it.
            _ if depth != 1 => continue,
            _ => {}
        }
        match payload {
            Payload::ComponentImportSection(imports) => {
                let mut section = ComponentImportSection::new();
                for import in imports {
                    let import = import?;
                    section.import(
                        rename_import(import.name.name)
                            .unwrap_or_else(|| import.name.name.to_owned()),
                        RoundtripReencoder.component_type_ref(import.ty)?,
                    );
                }
                out.section(&section);
            }
            Payload::ComponentExportSection(exports) => {
                let mut section = ComponentExportSection::new();
                for export in exports {
                    let export = export?;
                    let ty = export
                        .ty
                        .map(|ty| RoundtripReencoder.component_type_ref(ty))
                        .transpose()?;
                    section.export(
                        rename_export(export.name.name)
                            .unwrap_or_else(|| export.name.name.to_owned()),
                        RoundtripReencoder.component_export_kind(export.kind),
                        export.index,
                        ty,
                    );
                }
                out.section(&section);
            }
            other => {
                let (id, range) = other
                    .as_section()
                    .context("an unexpected part in a component")?;
                out.section(&RawSection {
                    id,
                    data: &wasm[range],
                });
            }
        }
    }
    let renamed = out.finish();
    wasmparser::Validator::new_with_features(wasmparser::WasmFeatures::all())
        .validate_all(&renamed)
        .context("the renamed component does not validate")?;
    Ok(renamed)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A core module exporting `names`, with a custom section if given.
    fn module(exports: &[&str], custom: Option<&str>) -> Vec<u8> {
        use wasm_encoder::{
            CodeSection, CustomSection, ExportKind, ExportSection, Function, FunctionSection,
            Module, TypeSection,
        };
        let mut module = Module::new();
        let mut types = TypeSection::new();
        types.ty().function([], []);
        module.section(&types);
        let mut functions = FunctionSection::new();
        functions.function(0);
        module.section(&functions);
        let mut export_section = ExportSection::new();
        for name in exports {
            export_section.export(name, ExportKind::Func, 0);
        }
        module.section(&export_section);
        let mut code = CodeSection::new();
        let mut body = Function::new([]);
        body.instructions().end();
        code.function(&body);
        module.section(&code);
        if let Some(name) = custom {
            module.section(&CustomSection {
                name: name.into(),
                data: b"".into(),
            });
        }
        module.finish()
    }

    #[test]
    fn core_modules_are_told_apart_by_what_they_carry() {
        let err = |wasm: Vec<u8>| {
            Adaptation::for_component(&TopLevel::read(&wasm).unwrap(), true)
                .unwrap_err()
                .to_string()
        };
        assert!(err(module(&["handle-http-request"], None)).contains("pre-component HTTP ABI"));
        assert!(err(module(&["_start"], None)).contains("executor = { type = \"wagi\" }"));
        assert!(err(module(&["run"], None)).contains("no component metadata"));
        // For a trigger's component, no word of HTTP.
        let command = TopLevel::read(&module(&["_start"], None)).unwrap();
        let trigger = Adaptation::for_component(&command, false)
            .unwrap_err()
            .to_string();
        assert!(
            trigger.contains("command module") && !trigger.contains("http"),
            "{trigger}"
        );
        assert_eq!(
            Adaptation::for_component(
                &TopLevel::read(&module(&["x"], Some("component-type:bindgen"))).unwrap(),
                true
            )
            .unwrap(),
            Adaptation::Componentize
        );
    }

    #[test]
    fn a_core_module_names_the_exports_of_the_component_it_becomes() {
        let wasm = module(
            &[
                "memory",
                "cabi_realloc",
                "_initialize",
                "[async-lift]wasi:http/handler@0.3.0-rc-2026-03-15#handle",
                "[callback][async-lift]wasi:http/handler@0.3.0-rc-2026-03-15#handle",
                "[async-lift]handle-message",
                "spin:redis/inbound-redis@3.0.0#handle-message",
            ],
            Some("component-type:bindgen"),
        );
        let top = TopLevel::read(&wasm).unwrap();
        assert_eq!(
            top.exports,
            [
                "wasi:http/handler@0.3.0-rc-2026-03-15",
                "handle-message",
                "spin:redis/inbound-redis@3.0.0"
            ]
        );
        assert!(top.exports_wasi_http_03());
        assert!(top.exports_async_func(&wasm, "handle-message").unwrap());
        assert!(
            !top.exports_async_func(&wasm, "spin:redis/inbound-redis@3.0.0")
                .unwrap()
        );
        assert_eq!(
            Adaptation::for_component(&top, true).unwrap(),
            Adaptation::ComponentizeRenamingWasi03Candidate
        );
    }

    #[test]
    fn only_the_candidate_names_are_renamed() {
        use wasm_encoder::{
            Component, ComponentExportKind, ComponentExportSection, ComponentImportSection,
            ComponentTypeRef, ComponentTypeSection, InstanceType,
        };
        let mut component = Component::new();
        let mut types = ComponentTypeSection::new();
        types.instance(&InstanceType::new());
        component.section(&types);
        let mut imports = ComponentImportSection::new();
        imports.import(
            "wasi:http/types@0.3.0-rc-2026-03-15",
            ComponentTypeRef::Instance(0),
        );
        imports.import("wasi:cli/stdout@0.2.6", ComponentTypeRef::Instance(0));
        component.section(&imports);
        let mut exports = ComponentExportSection::new();
        exports.export(
            "wasi:http/handler@0.3.0-rc-2026-03-15",
            ComponentExportKind::Instance,
            0,
            None,
        );
        component.section(&exports);
        let wasm = component.finish();

        let top = TopLevel::read(&wasm).unwrap();
        assert!(top.exports_wasi_http_03());
        let adaptation = Adaptation::for_component(&top, true).unwrap();
        assert_eq!(adaptation, Adaptation::RenameWasi03Candidate);
        let renamed = adaptation.apply(&wasm).unwrap();
        let top = TopLevel::read(&renamed).unwrap();
        assert_eq!(
            top.imports,
            ["wasi:http/types@0.3.0", "wasi:cli/stdout@0.2.6"]
        );
        assert_eq!(top.exports, ["wasi:http/handler@0.3.0"]);
        // Already renamed: nothing more to do.
        assert_eq!(
            Adaptation::for_component(&top, true).unwrap(),
            Adaptation::None
        );
    }
}
