//! Apps as OCI artifacts, in Spin's layout: `ferry registry push` and
//! `pull`, `ferry up -f REF` and `ferry deploy REF`.
//!
//! An app's artifact is an OCI image manifest whose layers are each
//! component's Wasm (`application/vnd.wasm.content.layer.v1+wasm`), each
//! file of its `files` larger than 128 bytes
//! (`application/vnd.wasm.content.layer.v1+data`; smaller ones are carried
//! inline) and, last, the locked app ([`locked`]): the manifest resolved,
//! naming every Wasm and file by digest. The image config is a minimal OCI
//! image config pointing at the locked app's layer. That is what Spin's
//! `spin registry push` writes and `spin registry pull` reads, so an app
//! goes from Ferry to Spin and back unchanged; the older layout Spin
//! wrote, with the locked app as the config itself, is read too.
//!
//! Pulling turns an artifact back into an app directory (a generated
//! `spin.toml`, the Wasm, each component's files) under the cache, so it
//! is served, checked and deployed by the same code as any local app; it
//! is keyed by the manifest's digest, and layers already pulled are not
//! fetched again. Everything in an artifact is checked as an attacker's:
//! digests are verified, paths must stay inside the app, sizes are bounded.
//!
//! *Knows nothing of* wasmtime or the host: it reads manifests through
//! `ferry-manifest` and talks to registries with `oci-client`.

pub mod auth;
pub mod locked;
mod package;
mod pull;
mod push;

use std::path::PathBuf;

use anyhow::Context as _;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::manifest::OciDescriptor;
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};

pub use package::{Fetched, PackageOptions, fetch_package};
pub use pull::{PullOptions, Pulled, pull};
pub use push::{Artifact, Fetch, Pushed, push};

/// The locked app's layer (and, in Spin's older layout, the config's).
pub const LOCKED_APP_MEDIA_TYPE: &str = "application/vnd.fermyon.spin.application.v1+config";
/// A component's (or a dependency's) Wasm.
pub const WASM_LAYER_MEDIA_TYPE: &str = "application/vnd.wasm.content.layer.v1+wasm";
/// One file of a component's `files`.
pub const DATA_LAYER_MEDIA_TYPE: &str = "application/vnd.wasm.content.layer.v1+data";
/// A whole `files` tree as a gzipped tar: Spin writes these for apps of more
/// than 499 files (or when `SPIN_OCI_ARCHIVE_LAYERS` is set); pulls read
/// them, pushes do not write them.
pub const ARCHIVE_LAYER_MEDIA_TYPE: &str = "application/vnd.wasm.content.bundle.v1.tar+gzip";
/// The image config's media type.
pub const IMAGE_CONFIG_MEDIA_TYPE: &str = "application/vnd.oci.image.config.v1+json";
/// The image config label naming the locked app's layer.
pub const LOCKED_APP_DIGEST_LABEL: &str = "com.fermyon.spin.lockedAppDigest";
/// Content up to this size is carried inline in the locked app.
pub const INLINE_MAX_SIZE: usize = 128;

/// How long connecting to a registry may take, and waiting on one read.
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(15);
const READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// The most of a registry's error text a message carries.
const MAX_ERROR_TEXT: usize = 512;

/// A registry reference and how to reach it.
pub struct Registry {
    client: Client,
    reference: Reference,
    auth: RegistryAuth,
    /// Where the credentials came from (`None`: anonymous).
    pub credentials_from: Option<PathBuf>,
    /// Anonymous on purpose (a live host fetching for a tenant): a refusal
    /// is not the user's to fix by logging in, and what the registry says
    /// is not passed on (it could be anything the registry's redirects
    /// reached).
    on_behalf_of_others: bool,
}

impl Registry {
    /// Connects to `reference`'s registry over HTTPS (the system's trust
    /// store, which `SSL_CERT_FILE` extends), or plain HTTP when
    /// `insecure` (Spin's `-k`), with the credentials [`auth::lookup`]
    /// finds for it when `credentials` (else anonymously: a live host
    /// fetching a tenant's package must not lend it the host's own).
    pub fn connect(reference: &str, insecure: bool, credentials: bool) -> anyhow::Result<Self> {
        let reference = parse_reference(reference)?;
        // reqwest's rustls has no provider of its own: the ring one Ferry
        // links everywhere else.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let config = ClientConfig {
            protocol: if insecure {
                ClientProtocol::Http
            } else {
                ClientProtocol::Https
            },
            connect_timeout: Some(CONNECT_TIMEOUT),
            read_timeout: Some(READ_TIMEOUT),
            ..Default::default()
        };
        let client = Client::try_from(config).context("configuring the registry client")?;
        let registry = reference.resolve_registry().to_owned();
        let found = if credentials {
            auth::lookup(&registry)?
        } else {
            None
        };
        let (auth, credentials_from) = match found {
            Some((c, from)) => {
                let host = registry
                    .rsplit_once(':')
                    .map_or(registry.as_str(), |(h, _)| h);
                if insecure && !matches!(host, "localhost" | "127.0.0.1" | "[::1]") {
                    tracing::warn!(
                        %registry,
                        "sending credentials over plain HTTP (-k) to a registry not on this machine"
                    );
                }
                (RegistryAuth::Basic(c.username, c.password), Some(from))
            }
            None => (RegistryAuth::Anonymous, None),
        };
        Ok(Self {
            client,
            reference,
            auth,
            credentials_from,
            on_behalf_of_others: !credentials,
        })
    }

    pub fn reference(&self) -> &Reference {
        &self.reference
    }

    /// Says what to do about a refusal: whose credentials were refused, or
    /// that there were none.
    fn refused(&self, error: oci_client::errors::OciDistributionError) -> anyhow::Error {
        use oci_client::errors::OciDistributionError as E;
        let unauthorized = match &error {
            E::UnauthorizedError { .. } => true,
            E::ServerError { code, .. } => *code == 401 || *code == 403,
            E::RegistryError { envelope, .. } => envelope.errors.iter().any(|e| {
                format!("{:?}", e.code)
                    .to_ascii_lowercase()
                    .contains("unauthorized")
            }),
            other => other.to_string().contains("401 Unauthorized"),
        };
        let registry = self.reference.resolve_registry();
        if !unauthorized && self.on_behalf_of_others {
            let what = match &error {
                E::ServerError { code, .. } => format!("answered {code}"),
                E::RegistryError { .. } => "answered with an error".to_owned(),
                E::RequestError(_) => "could not be reached".to_owned(),
                _ => "answered what Ferry could not use".to_owned(),
            };
            return anyhow::anyhow!("{registry} {what}");
        }
        if unauthorized && self.on_behalf_of_others {
            return anyhow::anyhow!(
                "{registry} needs credentials, and a live host fetches registry packages anonymously: publish the package where anyone may read it, or push the app with it (`ferry registry push`) and deploy that"
            );
        }
        if !unauthorized {
            // A registry's error body comes back in the message: bounded,
            // so a hostile one cannot fill a terminal or a host's answer.
            let mut message = format!("{:#}", anyhow::Error::new(error));
            if message.len() > MAX_ERROR_TEXT {
                let end = (0..=MAX_ERROR_TEXT)
                    .rev()
                    .find(|i| message.is_char_boundary(*i))
                    .unwrap_or(0);
                message.truncate(end);
                message.push_str(" […]");
            }
            return anyhow::anyhow!(message).context(format!("talking to {registry}"));
        }
        match &self.credentials_from {
            Some(file) => anyhow::anyhow!(
                "{registry} refused the credentials from {}: run `ferry registry login {registry}` again",
                file.display()
            ),
            None => anyhow::anyhow!(
                "{registry} needs credentials and none are kept for it: run `ferry registry login {registry}`"
            ),
        }
    }
}

impl Registry {
    /// The blob `descriptor` names in `reference`'s repository, from
    /// `blobs` if it is there, else fetched (no more than its stated size),
    /// verified and kept; with the size fetched, if it was.
    pub(crate) async fn blob(
        &self,
        reference: &Reference,
        descriptor: &OciDescriptor,
        blobs: &Blobs,
    ) -> anyhow::Result<(PathBuf, Option<u64>)> {
        let path = blobs.path(&descriptor.digest)?;
        // A cached blob is hashed again before use, as downloads are: one
        // changed on disk is fetched anew.
        if path.is_file() {
            if file_digest(&path)? == descriptor.digest {
                return Ok((path, None));
            }
            tracing::warn!(path = ?path, "a cached layer does not match its digest; fetching it again");
            std::fs::remove_file(&path)?;
        }
        let temp = tempfile::NamedTempFile::new_in(&blobs.dir)?;
        let mut out = Bounded {
            file: temp.as_file().try_clone()?,
            hasher: sha2::Sha256::default(),
            written: 0,
            max: u64::try_from(descriptor.size).unwrap_or(0),
        };
        self.client
            .pull_blob(reference, descriptor, &mut out)
            .await
            .map_err(|e| self.refused(e))
            .with_context(|| format!("fetching {}", descriptor.digest))?;
        if hex_digest(out.hasher) != descriptor.digest {
            anyhow::bail!(
                "the registry's {} does not match its digest",
                descriptor.digest
            );
        }
        temp.as_file().sync_all()?;
        temp.persist(&path)?;
        Ok((path, Some(out.written)))
    }
}

fn hex_digest(hasher: sha2::Sha256) -> String {
    use sha2::Digest as _;
    let hex: String = hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("sha256:{hex}")
}

/// The digest of the file at `path`, read in pieces.
fn file_digest(path: &std::path::Path) -> anyhow::Result<String> {
    let mut hasher = sha2::Sha256::default();
    let mut file = std::fs::File::open(path)?;
    std::io::copy(&mut file, &mut hasher)?;
    Ok(hex_digest(hasher))
}

/// Layers kept once each, by digest, under `registry/blobs/sha256/` in the
/// cache: written only once verified.
pub(crate) struct Blobs {
    dir: PathBuf,
}

impl Blobs {
    pub(crate) fn open(cache_dir: &std::path::Path) -> anyhow::Result<Self> {
        let dir = cache_dir.join("registry").join("blobs").join("sha256");
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(Self { dir })
    }

    /// Keeps `bytes` (unless they are kept already); their digest and path.
    pub(crate) fn keep(&self, bytes: &[u8]) -> anyhow::Result<(String, PathBuf)> {
        let digest = ferry_api::sha256_digest(bytes);
        let path = self.path(&digest)?;
        if !path.is_file() || file_digest(&path)? != digest {
            let mut temp = tempfile::NamedTempFile::new_in(&self.dir)?;
            std::io::Write::write_all(&mut temp, bytes)?;
            temp.persist(&path)?;
        }
        Ok((digest, path))
    }

    fn path(&self, digest: &str) -> anyhow::Result<PathBuf> {
        let hex = ferry_api::digest_hex(digest)
            .with_context(|| format!("a layer has the digest `{digest}`"))?;
        Ok(self.dir.join(hex))
    }
}

/// Writes a blob to its file as it arrives, hashing it, and fails once it
/// grows past what its descriptor says.
struct Bounded {
    file: std::fs::File,
    hasher: sha2::Sha256,
    written: u64,
    max: u64,
}

impl tokio::io::AsyncWrite for Bounded {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        use sha2::Digest as _;
        use std::io::Write as _;
        if self.written + buf.len() as u64 > self.max {
            return std::task::Poll::Ready(Err(std::io::Error::other(
                "the registry sent more than the layer's size",
            )));
        }
        let this = &mut *self;
        this.file.write_all(buf)?;
        this.hasher.update(buf);
        this.written += buf.len() as u64;
        std::task::Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

/// Parses an OCI reference (`registry/repository:tag`, `…@sha256:…`),
/// refusing one without a registry host, since Docker Hub's implicit
/// `docker.io/library/` is never what a Wasm app means.
pub fn parse_reference(text: &str) -> anyhow::Result<Reference> {
    if !looks_like_reference(text) {
        anyhow::bail!(
            "`{text}` is not a registry reference: write REGISTRY/REPOSITORY:TAG, e.g. ghcr.io/me/app:1.0"
        );
    }
    text.parse::<Reference>()
        .with_context(|| format!("`{text}` is not a registry reference"))
}

/// `host/path:tag` or `host/path@sha256:…`, whose first part is a host
/// (it has a `.` or a port, or is `localhost`).
pub fn looks_like_reference(text: &str) -> bool {
    let Some((first, rest)) = text.split_once('/') else {
        return false;
    };
    !rest.is_empty()
        && (first.contains('.') || first.contains(':') || first == "localhost")
        && !text.starts_with('.')
        && !text.starts_with('/')
        && !text.contains("//")
        && !text.chars().any(char::is_whitespace)
}

/// `registry`'s `/v2/` answers these credentials: a Basic realm takes them
/// directly, a Bearer realm gives a token for them. Checked before they
/// are kept, as `docker login` does.
pub async fn login(
    registry: &str,
    credentials: &auth::Credentials,
    insecure: bool,
) -> anyhow::Result<PathBuf> {
    let registry = auth::registry_key(registry);
    if registry.is_empty() {
        anyhow::bail!("no registry given");
    }
    let scheme = if insecure { "http" } else { "https" };
    let client = reqwest::Client::builder()
        .use_preconfigured_tls(ferry_api::https::tls_config()?)
        .timeout(std::time::Duration::from_secs(30))
        .build()?;
    let base = format!("{scheme}://{registry}/v2/");
    let answer = client
        .get(&base)
        .basic_auth(&credentials.username, Some(&credentials.password))
        .send()
        .await
        .map_err(ferry_api::https::describe)
        .with_context(|| format!("reaching {base}"))?;
    let status = answer.status();
    if status.is_success() {
        return auth::save(&registry, credentials);
    }
    let challenge = answer
        .headers()
        .get(reqwest::header::WWW_AUTHENTICATE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    if status == reqwest::StatusCode::UNAUTHORIZED
        && let Some(params) = challenge.strip_prefix("Bearer ")
    {
        let param = |name: &str| {
            params.split(',').find_map(|p| {
                let (k, v) = p.trim().split_once('=')?;
                (k == name).then(|| v.trim_matches('"').to_owned())
            })
        };
        let realm = param("realm").context("the registry's Bearer challenge has no realm")?;
        let mut token = client
            .get(&realm)
            .basic_auth(&credentials.username, Some(&credentials.password));
        if let Some(service) = param("service") {
            token = token.query(&[("service", service)]);
        }
        let answer = token
            .send()
            .await
            .map_err(ferry_api::https::describe)
            .with_context(|| format!("reaching {}", ferry_manifest::redacted(&realm)))?;
        if answer.status().is_success() {
            return auth::save(&registry, credentials);
        }
    }
    if status == reqwest::StatusCode::UNAUTHORIZED || status == reqwest::StatusCode::FORBIDDEN {
        anyhow::bail!("{registry} refused these credentials; nothing was saved");
    }
    anyhow::bail!("{base} answered {status}; nothing was saved")
}
