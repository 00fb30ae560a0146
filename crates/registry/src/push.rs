//! `ferry registry push`: an app on disk made into Spin's artifact and
//! uploaded, each blob only if the registry lacks it.
//!
//! The locked app is made from the validated manifest: triggers keep
//! their tables as written (with inline components given the ids Spin
//! gives them), components carry their grants as Spin's locked app names
//! them, every Wasm and file goes by digest. Its JSON is deterministic
//! (no timestamps, sorted maps), so pushing an unchanged app again gives
//! the same manifest digest and uploads nothing.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use anyhow::{Context as _, bail};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD_NO_PAD;
use bytes::Bytes;
use ferry_api::sha256_digest;
use ferry_manifest::{App, DependencySource, Inherit, Source};
use oci_client::manifest::{OCI_IMAGE_MEDIA_TYPE, OciDescriptor, OciImageManifest};
use serde_json::{Map, Value, json};

use crate::locked::{self, ContentPath, ContentRef, LockedApp};
use crate::{
    DATA_LAYER_MEDIA_TYPE, IMAGE_CONFIG_MEDIA_TYPE, INLINE_MAX_SIZE, LOCKED_APP_DIGEST_LABEL,
    LOCKED_APP_MEDIA_TYPE, Registry, WASM_LAYER_MEDIA_TYPE,
};

/// What a push did.
#[derive(Debug)]
pub struct Pushed {
    /// The manifest's digest (`sha256:…`).
    pub digest: String,
    /// Blobs in the artifact (layers and config) and how many of them were
    /// uploaded (the rest the registry had).
    pub blobs: usize,
    pub uploaded: usize,
    pub uploaded_bytes: u64,
}

/// One blob of the artifact.
struct Blob {
    media_type: &'static str,
    digest: String,
    bytes: Bytes,
}

/// The artifact of an app: its layers in order (the locked app last), and
/// the config.
pub struct Artifact {
    layers: Vec<Blob>,
    config: Blob,
    annotations: BTreeMap<String, String>,
}

/// Gets a remote source's bytes (a URL's verified against its digest, a
/// registry package's): `(component, source)`.
pub type Fetch<'a> = dyn FnMut(&str, &Source) -> anyhow::Result<Vec<u8>> + 'a;

/// Pushes `artifact` to `registry`'s reference, uploading only the blobs
/// the registry lacks.
pub async fn push(registry: &Registry, artifact: Artifact) -> anyhow::Result<Pushed> {
    let client = &registry.client;
    let reference = &registry.reference;
    client
        .store_auth_if_needed(reference.resolve_registry(), &registry.auth)
        .await;
    let mut pushed = Pushed {
        digest: String::new(),
        blobs: artifact.layers.len() + 1,
        uploaded: 0,
        uploaded_bytes: 0,
    };
    for blob in artifact.layers.iter().chain([&artifact.config]) {
        let present = client
            .blob_exists(reference, &blob.digest)
            .await
            .map_err(|e| registry.refused(e))?;
        if !present {
            client
                .push_blob(reference, blob.bytes.clone(), &blob.digest)
                .await
                .map_err(|e| registry.refused(e))
                .with_context(|| format!("uploading {}", blob.digest))?;
            pushed.uploaded += 1;
            pushed.uploaded_bytes += blob.bytes.len() as u64;
        }
    }
    let manifest = OciImageManifest {
        schema_version: 2,
        media_type: Some(OCI_IMAGE_MEDIA_TYPE.into()),
        config: descriptor(&artifact.config),
        layers: artifact.layers.iter().map(descriptor).collect(),
        artifact_type: None,
        annotations: (!artifact.annotations.is_empty()).then(|| artifact.annotations.clone()),
        subject: None,
    };
    let body = serde_json::to_vec(&manifest)?;
    pushed.digest = sha256_digest(&body);
    client
        .push_manifest_raw(reference, body, OCI_IMAGE_MEDIA_TYPE.parse()?)
        .await
        .map_err(|e| registry.refused(e))
        .context("uploading the manifest")?;
    Ok(pushed)
}

fn descriptor(blob: &Blob) -> OciDescriptor {
    OciDescriptor {
        media_type: blob.media_type.into(),
        digest: blob.digest.clone(),
        size: blob.bytes.len() as i64,
        ..Default::default()
    }
}

impl Artifact {
    /// The artifact of the app at `path` (a manifest, or a directory holding
    /// one), with `annotations` added to (and overriding) the manifest's, as
    /// Spin's `--annotation`. Remote sources come through `fetch`.
    pub fn of_app(
        path: &Path,
        annotations: &[(String, String)],
        fetch: &mut Fetch<'_>,
    ) -> anyhow::Result<Self> {
        let app = ferry_manifest::load_app(path)?;
        let text = std::fs::read_to_string(&app.manifest_path)
            .with_context(|| format!("reading {}", app.manifest_path.display()))?;
        let raw: toml::Table = text.parse().context("reading the manifest")?;
        let mut locker = Locker {
            app: &app,
            raw: &raw,
            layers: Vec::new(),
            fetch,
        };
        let locked = locker.lock()?;
        let json = serde_json::to_vec(&locked)?;
        let locked_blob = Blob {
            media_type: LOCKED_APP_MEDIA_TYPE,
            digest: sha256_digest(&json),
            bytes: json.into(),
        };
        let config = json!({
            "architecture": "wasm",
            "os": "wasip1",
            "config": { "Labels": { LOCKED_APP_DIGEST_LABEL: locked_blob.digest } },
            "rootfs": { "type": "layers", "diff_ids": [] },
        });
        let config = serde_json::to_vec(&config)?;
        let config = Blob {
            media_type: IMAGE_CONFIG_MEDIA_TYPE,
            digest: sha256_digest(&config),
            bytes: config.into(),
        };
        let mut layers = locker.layers;
        layers.push(locked_blob);
        let mut all = BTreeMap::new();
        let title = "org.opencontainers.image.";
        all.insert(format!("{title}title"), app.name.clone());
        if let Some(version) = &app.version {
            all.insert(format!("{title}version"), version.clone());
        }
        if let Some(description) = app.description.as_ref().filter(|d| !d.is_empty()) {
            all.insert(format!("{title}description"), description.clone());
        }
        if !app.authors.is_empty() {
            all.insert(format!("{title}authors"), app.authors.join(", "));
        }
        for (key, value) in annotations {
            all.insert(key.clone(), value.clone());
        }
        Ok(Self {
            layers,
            config,
            annotations: all,
        })
    }
}

struct Locker<'a, 'f> {
    app: &'a App,
    raw: &'a toml::Table,
    layers: Vec<Blob>,
    fetch: &'a mut Fetch<'f>,
}

impl Locker<'_, '_> {
    fn lock(&mut self) -> anyhow::Result<LockedApp> {
        let app = self.app;
        let mut metadata = Map::new();
        metadata.insert("name".into(), json!(app.name));
        if let Some(version) = &app.version {
            metadata.insert("version".into(), json!(version));
        }
        if let Some(description) = app.description.as_ref().filter(|d| !d.is_empty()) {
            metadata.insert("description".into(), json!(description));
        }
        if !app.authors.is_empty() {
            metadata.insert("authors".into(), json!(app.authors));
        }
        let globals = self
            .raw
            .get("application")
            .and_then(|a| a.get("trigger"))
            .and_then(|t| t.as_table())
            .cloned()
            .unwrap_or_default();
        metadata.insert(
            "triggers".into(),
            json_of(&toml::Value::Table(globals.clone())),
        );
        let triggers_raw = self
            .raw
            .get("trigger")
            .and_then(|t| t.as_table())
            .cloned()
            .unwrap_or_default();
        if triggers_raw.len() == 1
            && let Some(kind) = triggers_raw.keys().next()
        {
            let mut trigger = match globals.get(kind).map(json_of) {
                Some(Value::Object(map)) => map,
                _ => Map::new(),
            };
            trigger.insert("type".into(), json!(kind));
            metadata.insert("trigger".into(), Value::Object(trigger));
        }

        let mut variables = BTreeMap::new();
        for variable in &app.variables {
            variables.insert(
                variable.name.clone(),
                locked::Variable {
                    description: self
                        .raw
                        .get("variables")
                        .and_then(|v| v.get(&variable.name))
                        .and_then(|v| v.get("description"))
                        .and_then(|d| d.as_str())
                        .map(str::to_owned),
                    default: variable.default.clone(),
                    secret: variable.secret,
                },
            );
        }

        // Trigger tables as written; inline components get their ids and
        // are locked like the others.
        let mut triggers = Vec::new();
        let mut inline: HashMap<String, toml::Table> = HashMap::new();
        for (kind, items) in &triggers_raw {
            let items = items.as_array().map(Vec::as_slice).unwrap_or_default();
            let ids: Vec<(String, Option<String>)> = if kind == "http" {
                app.triggers
                    .iter()
                    .map(|t| (t.id.clone(), t.component().map(str::to_owned)))
                    .collect()
            } else {
                app.event_triggers
                    .iter()
                    .filter(|t| t.kind() == kind)
                    .map(|t| (t.id.clone(), Some(t.component.clone())))
                    .collect()
            };
            if ids.len() != items.len() {
                bail!("the manifest's `trigger.{kind}` entries could not be matched to the app's");
            }
            for (item, (id, component)) in items.iter().zip(ids) {
                let mut table = item.as_table().cloned().unwrap_or_default();
                table.remove("id");
                if table.contains_key("dependencies") {
                    bail!(
                        "trigger `{id}` has `dependencies` (middleware), which Spin's artifact format does not carry yet; push the app without them"
                    );
                }
                if let (Some(toml::Value::Table(component_table)), Some(component)) =
                    (table.get("component"), &component)
                {
                    inline.insert(component.clone(), component_table.clone());
                }
                if let Some(component) = component {
                    table.insert("component".into(), toml::Value::String(component));
                }
                triggers.push(locked::Trigger {
                    id,
                    trigger_type: kind.clone(),
                    trigger_config: json_of(&toml::Value::Table(table)),
                });
            }
        }

        let mut components = Vec::new();
        let mut must_understand = Vec::new();
        for component in app.components.iter().filter(|c| c.copy_of.is_none()) {
            let raw = self
                .raw
                .get("component")
                .and_then(|c| c.get(&component.id))
                .and_then(|c| c.as_table())
                .or_else(|| inline.get(&component.id))
                .cloned()
                .unwrap_or_default();
            let locked = self.component(component, &raw)?;
            if !locked.host_requirements.is_empty() {
                must_understand = vec!["component_host_requirements".to_owned()];
            }
            components.push(locked);
        }
        Ok(LockedApp {
            spin_lock_version: if must_understand.is_empty() { 0 } else { 1 },
            must_understand,
            metadata,
            host_requirements: Map::new(),
            variables,
            triggers,
            components,
        })
    }

    fn component(
        &mut self,
        component: &ferry_manifest::Component,
        raw: &toml::Table,
    ) -> anyhow::Result<locked::Component> {
        let id = &component.id;
        let mut metadata = Map::new();
        if let Some(description) = &component.description {
            metadata.insert("description".into(), json!(description));
        }
        let mut hosts: Vec<Value> = Vec::new();
        if let Some(toml::Value::Array(list)) = raw.get("allowed_outbound_hosts") {
            hosts.extend(list.iter().map(json_of));
        }
        // The legacy field, as Spin converts it: a locked app has only
        // `allowed_outbound_hosts`.
        if let Some(toml::Value::Array(list)) = raw.get("allowed_http_hosts") {
            for entry in list.iter().filter_map(toml::Value::as_str) {
                match entry {
                    "insecure:allow-all" => {
                        hosts.extend([json!("http://*:*"), json!("https://*:*")])
                    }
                    "self" => hosts.push(json!("http://self")),
                    scheme if scheme.contains("://") => hosts.push(json!(scheme)),
                    host => hosts.extend([
                        json!(format!("http://{host}")),
                        json!(format!("https://{host}")),
                    ]),
                }
            }
        }
        let chains = hosts
            .iter()
            .any(|h| h.as_str().is_some_and(|h| h.contains(".spin.internal")));
        if !hosts.is_empty() {
            metadata.insert("allowed_outbound_hosts".into(), Value::Array(hosts));
        }
        if !component.key_value_stores.is_empty() {
            metadata.insert("key_value_stores".into(), json!(component.key_value_stores));
        }
        if !component.sqlite_databases.is_empty() {
            metadata.insert("databases".into(), json!(component.sqlite_databases));
        }
        let wasm = self.wasm(id, &component.source)?;
        let config = raw
            .get("variables")
            .and_then(|v| v.as_table())
            .map(|t| {
                t.iter()
                    .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
                    .collect()
            })
            .unwrap_or_default();
        let mut files = Vec::new();
        let placed = ferry_manifest::files::placements(
            &component.files,
            &component.exclude_files,
            &self.app.dir,
        )
        .with_context(|| format!("component `{id}`'s files"))?;
        for (file, guest) in placed {
            let bytes = std::fs::read(&file)
                .with_context(|| format!("component `{id}`: reading {}", file.display()))?;
            let digest = sha256_digest(&bytes);
            let inline = (bytes.len() <= INLINE_MAX_SIZE).then(|| STANDARD_NO_PAD.encode(&bytes));
            if inline.is_none() {
                self.layer(DATA_LAYER_MEDIA_TYPE, digest.clone(), bytes);
            }
            files.push(ContentPath {
                content: ContentRef {
                    source: None,
                    inline,
                    digest: Some(digest),
                },
                path: guest.trim_start_matches('/').to_owned(),
            });
        }
        let mut dependencies = BTreeMap::new();
        for dependency in &component.dependencies {
            let what = format!("{id}'s dependency `{}`", dependency.name);
            let source = match &dependency.source {
                DependencySource::Wasm(source) => self.wasm(&what, source)?,
                DependencySource::Component(other) => {
                    let other = self
                        .app
                        .component(other)
                        .with_context(|| format!("component `{what}`: no component `{other}`"))?;
                    self.wasm(&what, &other.source.clone())?
                }
            };
            dependencies.insert(
                dependency.name.clone(),
                locked::Dependency {
                    source,
                    export: dependency.export.clone(),
                    inherit: match &dependency.inherit {
                        Inherit::All => Some(locked::Inherit::All),
                        Inherit::Only(sets) if sets.is_empty() => None,
                        Inherit::Only(sets) => Some(locked::Inherit::Some(sets.clone())),
                    },
                },
            );
        }
        let mut host_requirements = Map::new();
        if chains {
            host_requirements.insert("local_service_chaining".into(), json!("required"));
        }
        Ok(locked::Component {
            id: id.clone(),
            metadata,
            source: wasm,
            env: component.environment.iter().cloned().collect(),
            files,
            config,
            dependencies,
            host_requirements,
        })
    }

    /// A Wasm source as a layer.
    fn wasm(&mut self, what: &str, source: &Source) -> anyhow::Result<locked::Source> {
        let bytes = match source {
            Source::File(path) => std::fs::read(path)
                .with_context(|| format!("component `{what}`: reading {}", path.display()))?,
            remote => (self.fetch)(what, remote)?,
        };
        let digest = sha256_digest(&bytes);
        self.layer(WASM_LAYER_MEDIA_TYPE, digest.clone(), bytes);
        Ok(locked::Source {
            content_type: "application/wasm".into(),
            content: ContentRef {
                source: None,
                inline: None,
                digest: Some(digest),
            },
        })
    }

    /// Adds a layer unless one with the same digest is there.
    fn layer(&mut self, media_type: &'static str, digest: String, bytes: Vec<u8>) {
        if !self.layers.iter().any(|l| l.digest == digest) {
            self.layers.push(Blob {
                media_type,
                digest,
                bytes: bytes.into(),
            });
        }
    }
}

/// A TOML value as JSON (datetimes as their text).
pub(crate) fn json_of(value: &toml::Value) -> Value {
    match value {
        toml::Value::String(s) => json!(s),
        toml::Value::Integer(i) => json!(i),
        toml::Value::Float(f) => json!(f),
        toml::Value::Boolean(b) => json!(b),
        toml::Value::Datetime(d) => json!(d.to_string()),
        toml::Value::Array(items) => Value::Array(items.iter().map(json_of).collect()),
        toml::Value::Table(table) => {
            Value::Object(table.iter().map(|(k, v)| (k.clone(), json_of(v))).collect())
        }
    }
}
