//! `ferry registry pull` (and `ferry up -f REF`, `ferry deploy REF`): an
//! artifact made back into an app directory Ferry serves like any other.
//!
//! Under the cache directory, `registry/blobs/sha256/<hex>` keeps each
//! layer once, verified, so a new version of an app fetches only what
//! changed; `registry/apps/<layout>-<manifest hex>/` is the app: a
//! `spin.toml` generated from the locked app, each Wasm under `wasm/` and
//! each component's files under `assets/<component>/`, mounted at its `/`.
//!
//! The artifact is an attacker's until checked: the manifest's layers are
//! bounded in size before anything is fetched, every blob is verified
//! against its digest, a file's path must be a plain relative path, ids
//! must be plain names, and the generated manifest names no path but the
//! ones written here (a trigger's inline component or middleware, which
//! could name any file on the host, is refused).

use std::collections::BTreeMap;
use std::path::{Component as PathPart, Path, PathBuf};

use anyhow::{Context as _, bail};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use ferry_api::{digest_hex, sha256_digest};
use oci_client::manifest::OciDescriptor;
use serde_json::Value;

use crate::locked::{self, LockedApp};
use crate::{Blobs, LOCKED_APP_MEDIA_TYPE, Registry};

/// Bumped when the directory made from an artifact changes shape, so an
/// older Ferry's directories are not reused.
const LAYOUT: &str = "v1";

/// The largest locked app read.
const MAX_LOCKED_APP: u64 = 16 << 20;

/// The most files an app pulled may place.
const MAX_FILES: usize = 100_000;

pub struct PullOptions {
    /// Ferry's cache directory; pulls go under `registry/` in it.
    pub cache_dir: PathBuf,
    /// The most an artifact's layers may add up to.
    pub max_size: u64,
}

/// What a pull made.
#[derive(Debug)]
pub struct Pulled {
    /// The app directory, holding `spin.toml`.
    pub dir: PathBuf,
    /// The manifest's digest.
    pub digest: String,
    /// Layers fetched now (the rest were cached), and their size.
    pub fetched: usize,
    pub fetched_bytes: u64,
}

impl Pulled {
    pub fn manifest(&self) -> PathBuf {
        self.dir.join("spin.toml")
    }
}

pub async fn pull(registry: &Registry, options: &PullOptions) -> anyhow::Result<Pulled> {
    let client = &registry.client;
    let reference = &registry.reference;
    let (manifest, digest) = client
        .pull_image_manifest(reference, &registry.auth)
        .await
        .map_err(|e| registry.refused(e))
        .with_context(|| format!("fetching the manifest of {reference}"))?;
    let hex = digest_hex(&digest)
        .with_context(|| format!("the registry gave the manifest digest `{digest}`"))?
        .to_owned();
    let root = options.cache_dir.join("registry");
    let apps = root.join("apps");
    let dir = apps.join(format!("{LAYOUT}-{hex}"));
    let mut pulled = Pulled {
        dir: dir.clone(),
        digest,
        fetched: 0,
        fetched_bytes: 0,
    };
    if pulled.manifest().is_file() {
        return Ok(pulled);
    }

    let mut total: u64 = 0;
    for layer in manifest.layers.iter().chain([&manifest.config]) {
        let size = u64::try_from(layer.size)
            .with_context(|| format!("layer {} has a negative size", layer.digest))?;
        total = total.saturating_add(size);
    }
    if total > options.max_size {
        bail!(
            "{reference} is {} in all, more than the {} allowed (--max-download-size)",
            ferry_api::human::human_size(total),
            ferry_api::human::human_size(options.max_size)
        );
    }
    let locked_layer = manifest
        .layers
        .iter()
        .rev()
        .find(|l| l.media_type == LOCKED_APP_MEDIA_TYPE)
        .or((manifest.config.media_type == LOCKED_APP_MEDIA_TYPE).then_some(&manifest.config))
        .with_context(|| {
            format!(
                "{reference} is not a Spin app: no layer is a locked app ({LOCKED_APP_MEDIA_TYPE})"
            )
        })?;
    if locked_layer.size as u64 > MAX_LOCKED_APP {
        bail!("{reference}'s locked app is larger than 16 MiB");
    }
    let blobs = Blobs::open(&options.cache_dir)?;
    let mut fetch = async |descriptor: &OciDescriptor| -> anyhow::Result<PathBuf> {
        let (path, fetched) = registry.blob(reference, descriptor, &blobs).await?;
        if let Some(size) = fetched {
            pulled.fetched += 1;
            pulled.fetched_bytes += size;
        }
        Ok(path)
    };
    let json = std::fs::read(fetch(locked_layer).await?)?;
    let locked: LockedApp =
        serde_json::from_slice(&json).context("reading the app's locked app")?;
    locked.check_understood()?;

    // Files Spin packed into archive layers (apps of more than 499 files):
    // each unpacked into the blobs by its digest, so it is found like a
    // file of its own layer.
    let is_layer = |digest: &str| manifest.layers.iter().any(|l| l.digest == digest);
    let packed = locked.components.iter().flat_map(|c| &c.files).any(|f| {
        f.content.inline.is_none() && f.content.digest.as_deref().is_some_and(|d| !is_layer(d))
    });
    let mut unpacked = BTreeMap::new();
    if packed {
        let mut budget = options.max_size;
        for archive in manifest
            .layers
            .iter()
            .filter(|l| l.media_type == crate::ARCHIVE_LAYER_MEDIA_TYPE)
        {
            let path = fetch(archive).await?;
            unpack(&path, &blobs, &mut budget, &mut unpacked)
                .with_context(|| format!("unpacking the archive layer {}", archive.digest))?;
        }
    }

    // Every digest the app needs must be a layer of this artifact (or in
    // one of its archives).
    let layer = |digest: &Option<String>, what: &str| -> anyhow::Result<&OciDescriptor> {
        let digest = digest
            .as_deref()
            .with_context(|| format!("{what} has no digest"))?;
        manifest
            .layers
            .iter()
            .find(|l| l.digest == digest)
            .with_context(|| format!("{what} ({digest}) is not a layer of {reference}"))
    };
    let mut needed = Vec::new();
    let mut paths = BTreeMap::new();
    let mut sizes: BTreeMap<String, u64> = manifest
        .layers
        .iter()
        .map(|l| (l.digest.clone(), u64::try_from(l.size).unwrap_or(0)))
        .collect();
    for component in &locked.components {
        let what = format!("component `{}`", component.id);
        needed.push(layer(&component.source.content.digest, &what)?);
        for (name, dependency) in &component.dependencies {
            needed.push(layer(
                &dependency.source.content.digest,
                &format!("{what}'s dependency `{name}`"),
            )?);
        }
        for file in component
            .files
            .iter()
            .filter(|f| f.content.inline.is_none())
        {
            if let Some((digest, (path, size))) = file
                .content
                .digest
                .as_ref()
                .and_then(|d| Some((d, unpacked.get(d)?)))
            {
                paths.insert(digest.clone(), path.clone());
                sizes.insert(digest.clone(), *size);
                continue;
            }
            needed.push(layer(
                &file.content.digest,
                &format!("{what}'s file `{}`", file.path),
            )?);
        }
    }
    for descriptor in needed {
        if !paths.contains_key(&descriptor.digest) {
            let path = fetch(descriptor).await?;
            paths.insert(descriptor.digest.clone(), path);
        }
    }

    std::fs::create_dir_all(&apps)?;
    let staging = tempfile::Builder::new()
        .prefix(".pulling-")
        .tempdir_in(&apps)?;
    write_app(&locked, &paths, &sizes, options.max_size, staging.path())?;
    match std::fs::rename(staging.path(), &dir) {
        Ok(()) => {
            // Renamed away: nothing left to remove.
            let _ = staging.keep();
        }
        // Another pull of the same artifact got there first.
        Err(_) if pulled.manifest().is_file() => {}
        Err(e) => return Err(e).with_context(|| format!("writing {}", dir.display())),
    }
    Ok(pulled)
}

/// Writes the app directory for `locked` into `dir`, blobs taken from
/// `paths` (by digest).
fn write_app(
    locked: &LockedApp,
    paths: &BTreeMap<String, PathBuf>,
    sizes: &BTreeMap<String, u64>,
    max_size: u64,
    dir: &Path,
) -> anyhow::Result<()> {
    let (mut files_written, mut files_bytes) = (0usize, 0u64);
    let wasm_dir = dir.join("wasm");
    std::fs::create_dir_all(&wasm_dir)?;
    let place_wasm = |source: &locked::Source| -> anyhow::Result<String> {
        let digest = source.content.digest.as_deref().unwrap_or_default();
        let hex = digest_hex(digest).context("a Wasm source's digest is malformed")?;
        let name = format!("wasm/{hex}.wasm");
        let target = dir.join(&name);
        if !target.exists() {
            link_or_copy(&paths[digest], &target)?;
        }
        Ok(name)
    };

    let mut doc = toml::Table::new();
    doc.insert("spin_manifest_version".into(), 2.into());
    let mut application = toml::Table::new();
    let text = |key: &str| locked.metadata.get(key).and_then(Value::as_str);
    application.insert("name".into(), text("name").unwrap_or("app").into());
    for key in ["version", "description"] {
        if let Some(value) = text(key) {
            application.insert(key.into(), value.into());
        }
    }
    if let Some(authors) = locked.metadata.get("authors") {
        application.insert("authors".into(), strings(authors, "authors")?.into());
    }
    if let Some(Value::Object(globals)) = locked.metadata.get("triggers")
        && !globals.is_empty()
    {
        application.insert("trigger".into(), toml_of(&Value::Object(globals.clone()))?);
    }
    doc.insert("application".into(), application.into());

    let mut variables = toml::Table::new();
    for (name, variable) in &locked.variables {
        let mut table = toml::Table::new();
        match &variable.default {
            Some(default) => table.insert("default".into(), default.as_str().into()),
            None => table.insert("required".into(), true.into()),
        };
        if variable.secret {
            table.insert("secret".into(), true.into());
        }
        if let Some(description) = &variable.description {
            table.insert("description".into(), description.as_str().into());
        }
        variables.insert(name.clone(), table.into());
    }
    if !variables.is_empty() {
        doc.insert("variables".into(), variables.into());
    }

    let mut triggers = toml::Table::new();
    for trigger in &locked.triggers {
        let Value::Object(config) = &trigger.trigger_config else {
            bail!("trigger `{}`'s configuration is not a table", trigger.id);
        };
        if let Some(found) = names_a_component_inline(&trigger.trigger_config) {
            bail!(
                "trigger `{}` {found}; a locked app's triggers name components by id, and Ferry does not read middleware from a registry yet",
                trigger.id
            );
        }
        if config.is_empty() {
            bail!("trigger `{}` has no configuration", trigger.id);
        }
        let mut table = match toml_of(&trigger.trigger_config)? {
            toml::Value::Table(table) => table,
            _ => unreachable!("an object converts to a table"),
        };
        table.insert("id".into(), trigger.id.as_str().into());
        let list = triggers
            .entry(trigger.trigger_type.clone())
            .or_insert_with(|| toml::Value::Array(Vec::new()));
        if let toml::Value::Array(items) = list {
            items.push(table.into());
        }
    }
    doc.insert("trigger".into(), triggers.into());

    let mut components = toml::Table::new();
    for component in &locked.components {
        let id = &component.id;
        if id.is_empty() || ferry_manifest::plain_name(id) != *id {
            bail!("the component id `{id}` is not a plain name");
        }
        let mut table = toml::Table::new();
        table.insert("source".into(), place_wasm(&component.source)?.into());
        if let Some(description) = component
            .metadata
            .get("description")
            .and_then(Value::as_str)
        {
            table.insert("description".into(), description.into());
        }
        for (from, to) in [
            ("allowed_outbound_hosts", "allowed_outbound_hosts"),
            ("key_value_stores", "key_value_stores"),
            ("databases", "sqlite_databases"),
            ("ai_models", "ai_models"),
        ] {
            if let Some(list) = component.metadata.get(from) {
                let list = strings(list, from)?;
                if !list.is_empty() {
                    table.insert(to.into(), list.into());
                }
            }
        }
        if !component.env.is_empty() {
            table.insert("environment".into(), string_table(&component.env));
        }
        if !component.config.is_empty() {
            table.insert("variables".into(), string_table(&component.config));
        }
        if !component.files.is_empty() {
            let assets = Path::new("assets").join(id);
            for file in &component.files {
                files_written += 1;
                if files_written > MAX_FILES {
                    bail!("the app has more than {MAX_FILES} files");
                }
                files_bytes += match (&file.content.inline, file.content.digest.as_deref()) {
                    (Some(inline), _) => inline.len() as u64,
                    (None, Some(digest)) => sizes.get(digest).copied().unwrap_or(0),
                    (None, None) => 0,
                };
                if files_bytes > max_size {
                    bail!(
                        "the app's files come to more than the {} allowed (--max-pull-size), counting each place a layer is used",
                        ferry_api::human::human_size(max_size)
                    );
                }
                let relative = plain_path(&file.path)
                    .with_context(|| format!("component `{id}`: the file path `{}`", file.path))?;
                let target = dir.join(&assets).join(relative);
                if let Some(parent) = target.parent() {
                    std::fs::create_dir_all(parent)?;
                }
                if target.exists() {
                    std::fs::remove_file(&target)?;
                }
                match &file.content.inline {
                    Some(inline) => {
                        let bytes = STANDARD_NO_PAD
                            .decode(inline)
                            .or_else(|_| STANDARD.decode(inline))
                            .with_context(|| {
                                format!("component `{id}`: the file `{}` is not base64", file.path)
                            })?;
                        if let Some(digest) = &file.content.digest
                            && sha256_digest(&bytes) != *digest
                        {
                            bail!(
                                "component `{id}`: the file `{}` does not match its digest",
                                file.path
                            );
                        }
                        std::fs::write(&target, bytes)?;
                    }
                    None => {
                        let digest = file.content.digest.as_deref().unwrap_or_default();
                        link_or_copy(&paths[digest], &target)?;
                    }
                }
            }
            let mut mount = toml::Table::new();
            mount.insert("source".into(), format!("assets/{id}").into());
            mount.insert("destination".into(), "/".into());
            table.insert("files".into(), vec![toml::Value::Table(mount)].into());
        }
        if !component.dependencies.is_empty() {
            let mut dependencies = toml::Table::new();
            for (name, dependency) in &component.dependencies {
                let mut entry = toml::Table::new();
                entry.insert("path".into(), place_wasm(&dependency.source)?.into());
                if let Some(export) = &dependency.export {
                    entry.insert("export".into(), export.as_str().into());
                }
                match &dependency.inherit {
                    Some(locked::Inherit::All) => {
                        entry.insert("inherit_configuration".into(), true.into());
                    }
                    Some(locked::Inherit::Some(sets)) if !sets.is_empty() => {
                        entry.insert("inherit_configuration".into(), sets.clone().into());
                    }
                    _ => {}
                }
                dependencies.insert(name.clone(), entry.into());
            }
            table.insert("dependencies".into(), dependencies.into());
        }
        components.insert(id.clone(), table.into());
    }
    doc.insert("component".into(), components.into());

    let text = format!(
        "# Made by Ferry from a registry artifact; the files beside it are the artifact's layers.\n{}",
        toml::to_string(&doc).context("writing the app's manifest")?
    );
    std::fs::write(dir.join("spin.toml"), text)?;
    confined(dir)
}

/// Keeps each regular file of the gzipped tar at `archive` in `blobs`, by
/// its digest, into `unpacked` (digest to path and size). Entry names are
/// not used (the locked app places each file by digest), so none can lead
/// anywhere; what the entries add up to comes off `budget`, and there may
/// be no more than [`MAX_FILES`] of them.
fn unpack(
    archive: &Path,
    blobs: &Blobs,
    budget: &mut u64,
    unpacked: &mut BTreeMap<String, (PathBuf, u64)>,
) -> anyhow::Result<()> {
    use std::io::Read as _;
    let file = std::fs::File::open(archive)?;
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(file));
    for entry in tar.entries()? {
        let entry = entry?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let size = entry.header().size()?;
        if size > *budget {
            bail!("it unpacks to more than --max-pull-size allows");
        }
        *budget -= size;
        if unpacked.len() >= MAX_FILES {
            bail!("it holds more than {MAX_FILES} files");
        }
        let mut bytes = Vec::new();
        entry.take(size).read_to_end(&mut bytes)?;
        let (digest, path) = blobs.keep(&bytes)?;
        unpacked.insert(digest, (path, size));
    }
    Ok(())
}

/// What in a trigger's configuration could name a file on this machine:
/// a component given as a table anywhere in it (a pipeline's stages
/// included) or `dependencies` (middleware, by path). Either would make
/// the generated manifest read, or build, whatever the artifact says.
fn names_a_component_inline(config: &Value) -> Option<String> {
    match config {
        Value::Object(map) => map
            .iter()
            .find_map(|(key, value)| match (key.as_str(), value) {
                ("component", Value::String(_)) => None,
                ("component", _) => Some("names a component by a table".to_owned()),
                ("dependencies", _) => Some("has `dependencies`".to_owned()),
                _ => names_a_component_inline(value),
            }),
        Value::Array(items) => items.iter().find_map(names_a_component_inline),
        _ => None,
    }
}

/// Loads the manifest written into `dir` as every command will, and checks
/// that it reads nothing outside `dir` and builds nothing: every component
/// source and dependency a file inside it, every `files` entry inside it,
/// no build command. What `write_app` writes passes by construction; this
/// holds it if that ever changes.
fn confined(dir: &Path) -> anyhow::Result<()> {
    use ferry_manifest::{DependencySource, FileMount, Source};
    let app = ferry_manifest::load_app(dir).context("the manifest made from the artifact")?;
    let root = dir.canonicalize()?;
    let inside = |path: &Path| {
        path.canonicalize()
            .is_ok_and(|real| real.starts_with(&root))
    };
    for component in &app.components {
        let id = &component.id;
        if component.build.is_some() {
            bail!("component `{id}` has a build command");
        }
        let sources = std::iter::once(&component.source).chain(
            component
                .dependencies
                .iter()
                .chain(&component.middleware)
                .filter_map(|d| match &d.source {
                    DependencySource::Wasm(source) => Some(source),
                    DependencySource::Component(_) => None,
                }),
        );
        for source in sources {
            match source {
                Source::File(path) if inside(path) => {}
                other => bail!("component `{id}` takes Wasm from outside the artifact: {other}"),
            }
        }
        for mount in &component.files {
            let named = match mount {
                FileMount::Glob(pattern) => dir.join(pattern),
                FileMount::Directory { source, .. } | FileMount::File { source, .. } => {
                    source.clone()
                }
            };
            if !inside(&named) {
                bail!("component `{id}` mounts files from outside the artifact");
            }
        }
    }
    Ok(())
}

/// `path` if it is a plain relative path: normal parts only.
fn plain_path(path: &str) -> anyhow::Result<&Path> {
    let as_path = Path::new(path);
    if path.is_empty()
        || path.contains('\0')
        || as_path
            .components()
            .any(|part| !matches!(part, PathPart::Normal(_)))
    {
        bail!("not a plain relative path");
    }
    Ok(as_path)
}

fn link_or_copy(from: &Path, to: &Path) -> anyhow::Result<()> {
    if std::fs::hard_link(from, to).is_err() {
        std::fs::copy(from, to).with_context(|| format!("copying {}", from.display()))?;
    }
    Ok(())
}

fn strings(value: &Value, what: &str) -> anyhow::Result<Vec<String>> {
    value
        .as_array()
        .and_then(|items| {
            items
                .iter()
                .map(|i| i.as_str().map(str::to_owned))
                .collect()
        })
        .with_context(|| format!("`{what}` is not a list of strings"))
}

fn string_table(map: &BTreeMap<String, String>) -> toml::Value {
    toml::Value::Table(
        map.iter()
            .map(|(k, v)| (k.clone(), toml::Value::String(v.clone())))
            .collect(),
    )
}

/// A JSON value as TOML: `null`s in tables are left out; one in a list is
/// an error, as TOML has no null.
fn toml_of(value: &Value) -> anyhow::Result<toml::Value> {
    Ok(match value {
        Value::Null => bail!("a list holds `null`, which TOML cannot"),
        Value::Bool(b) => (*b).into(),
        Value::Number(n) => match n.as_i64() {
            Some(i) => i.into(),
            None => n.as_f64().unwrap_or_default().into(),
        },
        Value::String(s) => s.as_str().into(),
        Value::Array(items) => {
            toml::Value::Array(items.iter().map(toml_of).collect::<Result<_, _>>()?)
        }
        Value::Object(map) => toml::Value::Table(
            map.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| Ok((k.clone(), toml_of(v)?)))
                .collect::<anyhow::Result<_>>()?,
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_relative_paths_are_written() {
        assert!(plain_path("static/index.html").is_ok());
        for bad in [
            "",
            "../etc/passwd",
            "/etc/passwd",
            "a/../../b",
            "./a",
            "a\0b",
        ] {
            assert!(plain_path(bad).is_err(), "{bad:?}");
        }
    }
}
