//! Components from a component registry: `source = { registry, package,
//! version }` and a dependency's `"ns:pkg" = "1.2"`, through the OCI
//! mapping `wasm-pkg` (and so Spin and `wkg`) uses.
//!
//! A package `ns:name` is found as follows:
//! 1. **Its registry.** The manifest's `registry`; else `wasm-pkg`'s
//!    configuration (`$XDG_CONFIG_HOME/wasm-pkg/config.toml`:
//!    `package_registry_overrides`, `namespace_registries`,
//!    `default_registry`); else its defaults (`wasi` is `wasi.dev`, `ba` is
//!    `bytecodealliance.org`).
//! 2. **Where that registry keeps OCI packages**, from
//!    `https://<registry>/.well-known/wasm-pkg/registry.json` (`oci.registry`
//!    and `oci.namespacePrefix`, or the older `ociRegistry` and
//!    `ociNamespacePrefix`); a registry without that file (404) keeps them
//!    itself, unprefixed.
//! 3. **The version**: the repository `<prefix><ns>/<name>`'s tags that are
//!    semver versions, the highest the requirement accepts.
//! 4. **The Wasm**: that tag's manifest's first layer, fetched no larger
//!    than it says and verified like every pulled layer, kept in the same
//!    blob cache.

use std::path::PathBuf;

use anyhow::{Context as _, bail};
use ferry_manifest::Package;
use oci_client::Reference;
use serde::Deserialize;

use crate::{Blobs, Registry};

/// Tags asked for at a time, and the most read.
const TAGS_PAGE: usize = 100;
const MAX_TAGS: usize = 10_000;

/// The most tags an error lists.
const MAX_TAGS_SHOWN: usize = 20;

/// The largest `registry.json` read.
const MAX_METADATA: usize = 64 << 10;

/// What `wasm-pkg` maps namespaces to when nothing is configured.
const DEFAULT_NAMESPACES: [(&str, &str); 2] =
    [("wasi", "wasi.dev"), ("ba", "bytecodealliance.org")];

pub struct PackageOptions {
    /// Ferry's cache directory (blobs go under `registry/` in it).
    pub cache_dir: PathBuf,
    /// The largest package fetched.
    pub max_size: u64,
    /// Whether to present the credentials kept for the registry. A live
    /// host fetches its tenants' packages anonymously: a manifest must not
    /// reach what the host's own credentials open.
    pub credentials: bool,
}

/// A package fetched.
#[derive(Debug)]
pub struct Fetched {
    pub bytes: Vec<u8>,
    /// Where it came from: `registry/repository:version`.
    pub reference: String,
}

pub async fn fetch_package(package: &Package, options: &PackageOptions) -> anyhow::Result<Fetched> {
    let (namespace, name) = package
        .name
        .split_once(':')
        .with_context(|| format!("`{}` is not `namespace:name`", package.name))?;
    let host = match &package.registry {
        Some(registry) => registry.clone(),
        None => configured_registry(namespace, &package.name)?.with_context(|| {
            format!(
                "no registry is known for `{}`: give `registry = \"…\"` beside it, or map the namespace `{namespace}` in {}",
                package.name,
                wasm_pkg_config().map_or("wasm-pkg's config.toml".into(), |p| p.display().to_string())
            )
        })?,
    };
    if !plain_host(&host) {
        bail!("`{host}` is not a registry: give its host (and port)");
    }
    let (oci_registry, prefix) = oci_location(&host).await?;
    if !plain_host(&oci_registry)
        || !prefix
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_./".contains(c))
    {
        bail!(
            "{host}'s registry.json names `{oci_registry}` and `{prefix}`, which are not a registry and a repository prefix"
        );
    }
    let repository = format!("{prefix}{namespace}/{name}");
    let listing = format!("{oci_registry}/{repository}:latest");
    let registry = Registry::connect(&listing, false, options.credentials)?;
    // Page by page, as registries that cut a listing short ask; one that
    // ignores paging answers everything at once, which ends it too.
    let mut tags: Vec<String> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    loop {
        let page = registry
            .client
            .list_tags(
                &registry.reference,
                &registry.auth,
                Some(TAGS_PAGE),
                tags.last().map(String::as_str),
            )
            .await
            .map_err(|e| registry.refused(e))
            .with_context(|| format!("listing the versions of {oci_registry}/{repository}"))?
            .tags;
        let (asked_more, before) = (page.len() >= TAGS_PAGE, tags.len());
        for tag in page {
            if seen.insert(tag.clone()) {
                tags.push(tag);
            }
        }
        if !asked_more || tags.len() == before {
            break;
        }
        if tags.len() >= MAX_TAGS {
            bail!("{oci_registry}/{repository} has more than {MAX_TAGS} tags");
        }
    }
    let requirement = semver::VersionReq::parse(&package.version)
        .with_context(|| format!("`{}` is not a version requirement", package.version))?;
    let (version, tag) = tags
        .iter()
        .filter_map(|tag| Some((semver::Version::parse(tag).ok()?, tag)))
        .filter(|(version, _)| requirement.matches(version))
        .max_by(|a, b| a.0.cmp(&b.0))
        .with_context(|| {
            // Versions in order, then the other tags.
            let mut shown: Vec<&String> = tags.iter().collect();
            shown.sort_by_key(|tag| match semver::Version::parse(tag) {
                Ok(version) => (0, Some(version), ""),
                Err(_) => (1, None, tag.as_str()),
            });
            let more = shown.len().saturating_sub(MAX_TAGS_SHOWN);
            let mut shown: Vec<&str> = shown
                .iter()
                .take(MAX_TAGS_SHOWN)
                .map(|t| t.as_str())
                .collect();
            let rest = format!("{more} more");
            if more > 0 {
                shown.push(&rest);
            }
            format!(
                "no version of `{}` at {oci_registry}/{repository} matches `{}` (its versions: {})",
                package.name,
                package.version,
                if shown.is_empty() {
                    "none".to_owned()
                } else {
                    shown.join(", ")
                }
            )
        })?;
    let reference = Reference::with_tag(
        registry.reference.resolve_registry().to_owned(),
        repository.clone(),
        tag.clone(),
    );
    let (manifest, _) = registry
        .client
        .pull_image_manifest(&reference, &registry.auth)
        .await
        .map_err(|e| registry.refused(e))
        .with_context(|| format!("fetching the manifest of {reference}"))?;
    let layer = manifest
        .layers
        .first()
        .with_context(|| format!("{reference} has no layers"))?;
    if u64::try_from(layer.size).map_or(true, |size| size > options.max_size) {
        bail!(
            "{reference}'s Wasm is larger than the {} allowed (--max-download-size)",
            ferry_api::human::human_size(options.max_size)
        );
    }
    let blobs = Blobs::open(&options.cache_dir)?;
    let (path, _) = registry.blob(&reference, layer, &blobs).await?;
    let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
    tracing::debug!(package = %package.name, %version, %reference, "fetched a registry package");
    Ok(Fetched {
        bytes,
        reference: reference.whole(),
    })
}

/// A registry's host and port, and nothing else.
fn plain_host(text: &str) -> bool {
    !text.is_empty()
        && !text.starts_with(['.', '-', ':'])
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ".-:[]".contains(c))
}

/// `wasm-pkg`'s configuration file.
fn wasm_pkg_config() -> Option<PathBuf> {
    crate::auth::config_dir().map(|d| d.join("wasm-pkg").join("config.toml"))
}

/// The registry `wasm-pkg`'s configuration (or its defaults) gives the
/// package `name` in `namespace`.
fn configured_registry(namespace: &str, name: &str) -> anyhow::Result<Option<String>> {
    #[derive(Deserialize, Default)]
    struct Config {
        default_registry: Option<String>,
        #[serde(default)]
        namespace_registries: std::collections::BTreeMap<String, Mapping>,
        #[serde(default)]
        package_registry_overrides: std::collections::BTreeMap<String, Mapping>,
    }
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Mapping {
        Registry(String),
        Table { registry: String },
    }
    impl Mapping {
        fn registry(&self) -> &str {
            match self {
                Self::Registry(r) | Self::Table { registry: r } => r,
            }
        }
    }
    let config: Config = match wasm_pkg_config().map(std::fs::read_to_string) {
        Some(Ok(text)) => toml::from_str(&text).context("reading wasm-pkg's config.toml")?,
        Some(Err(e)) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(e).context("reading wasm-pkg's config.toml");
        }
        _ => Config::default(),
    };
    Ok(config
        .package_registry_overrides
        .get(name)
        .or_else(|| config.namespace_registries.get(namespace))
        .map(|m| m.registry().to_owned())
        .or(config.default_registry)
        .or_else(|| {
            DEFAULT_NAMESPACES
                .iter()
                .find(|(ns, _)| *ns == namespace)
                .map(|(_, r)| (*r).to_owned())
        }))
}

/// Where `host` keeps its packages' OCI repositories: a registry and a
/// namespace prefix.
async fn oci_location(host: &str) -> anyhow::Result<(String, String)> {
    #[derive(Deserialize, Default)]
    #[serde(rename_all = "camelCase")]
    struct Metadata {
        preferred_protocol: Option<String>,
        oci: Option<Oci>,
        oci_registry: Option<String>,
        oci_namespace_prefix: Option<String>,
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Oci {
        registry: Option<String>,
        namespace_prefix: Option<String>,
    }
    let url = format!("https://{host}/.well-known/wasm-pkg/registry.json");
    // Not followed anywhere else: the answer says where to go.
    let client = reqwest::Client::builder()
        .use_preconfigured_tls(ferry_api::https::tls_config()?)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(std::time::Duration::from_secs(30))
        .build()?;
    let mut answer = client
        .get(&url)
        .send()
        .await
        .map_err(ferry_api::https::describe)
        .with_context(|| format!("reaching {url}"))?;
    let metadata = match answer.status() {
        reqwest::StatusCode::NOT_FOUND => Metadata::default(),
        status if status.is_success() => {
            let mut body = Vec::new();
            while let Some(chunk) = answer.chunk().await.map_err(ferry_api::https::describe)? {
                body.extend_from_slice(&chunk);
                if body.len() > MAX_METADATA {
                    bail!("{url} is larger than 64 KiB");
                }
            }
            serde_json::from_slice(&body).with_context(|| format!("reading {url}"))?
        }
        status => bail!("{url} answered {status}"),
    };
    if let Some(protocol) = metadata.preferred_protocol.as_deref()
        && protocol != "oci"
    {
        bail!("{host} serves packages over `{protocol}`; Ferry fetches them over OCI only");
    }
    let (registry, prefix) = match metadata.oci {
        Some(oci) => (oci.registry, oci.namespace_prefix),
        None => (metadata.oci_registry, metadata.oci_namespace_prefix),
    };
    Ok((
        registry.unwrap_or_else(|| host.to_owned()),
        prefix.unwrap_or_default(),
    ))
}
