//! Remote component sources: `source = { url = "…", digest = "sha256:…" }`,
//! and registry packages (`{ registry, package, version }`, fetched by
//! `ferry-registry` into the same cache directory).
//!
//! A download is verified against its digest before anything else reads its
//! bytes, and only verified bytes are ever cached or handed on. The cache is
//! content-addressed (`<cache dir>/downloads/sha256-<hex>.wasm`, beside the
//! compiled code), so once a component has been fetched Ferry starts offline;
//! a cached file is hashed again on every load, so a corrupted or tampered
//! file is fetched anew rather than run.
//!
//! Downloads honour `HTTPS_PROXY`/`HTTP_PROXY`/`ALL_PROXY` and `NO_PROXY`
//! (reqwest reads them), are bounded in size and in time, and write to a
//! temporary file that becomes the cache entry only once verified: a failed,
//! cut-short or mismatched download leaves nothing behind.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use ferry_manifest::{Package, Sha256Digest, Source, redacted};
use sha2::{Digest as _, Sha256};

use ferry_api::https::{describe, tls_config};
use ferry_api::human::{human_duration, human_size};

/// How long connecting to a server may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// How often a running download prints its progress.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);

/// Fetches and caches remote component sources.
pub struct Downloader {
    /// `None`: keep nothing on disk (`--no-cache`).
    dir: Option<PathBuf>,
    /// The cache directory itself: registry packages' blobs go under it.
    cache_dir: Option<PathBuf>,
    /// Whether registry packages are fetched with this machine's
    /// credentials for their registry.
    registry_credentials: bool,
    max_size: u64,
    timeout: Duration,
}

impl Downloader {
    /// A downloader caching in `cache_dir/downloads` (nothing on disk when
    /// `None`), refusing bodies over `max_size` bytes and downloads longer
    /// than `timeout`.
    pub fn new(cache_dir: Option<&Path>, max_size: u64, timeout: Duration) -> Self {
        Self {
            dir: cache_dir.map(|d| d.join("downloads")),
            cache_dir: cache_dir.map(Path::to_owned),
            registry_credentials: true,
            max_size,
            timeout,
        }
    }

    /// Fetches registry packages with this machine's credentials for their
    /// registry, or anonymously.
    pub fn with_registry_credentials(self, registry_credentials: bool) -> Self {
        Self {
            registry_credentials,
            ..self
        }
    }

    /// `source`'s bytes: a file read, a URL downloaded, a registry package
    /// fetched. `component` names it in messages; progress goes to `out`.
    pub fn read(
        &self,
        component: &str,
        source: &Source,
        out: &mut dyn std::io::Write,
    ) -> anyhow::Result<Vec<u8>> {
        match source {
            Source::File(path) => std::fs::read(path).with_context(|| {
                format!("component `{component}`: cannot read {}", path.display())
            }),
            Source::Url { url, digest } => self.fetch(component, url, digest, out),
            Source::Package(package) => self.fetch_package(component, package, out),
        }
    }

    /// A registry package (its blobs cached under the cache directory, or
    /// in a directory removed afterwards with `--no-cache`), bounded by
    /// the size and time limits of downloads.
    pub fn fetch_package(
        &self,
        component: &str,
        package: &Package,
        out: &mut dyn std::io::Write,
    ) -> anyhow::Result<Vec<u8>> {
        let temporary;
        let cache_dir = match &self.cache_dir {
            Some(dir) => dir.clone(),
            None => {
                temporary = tempfile::tempdir()?;
                temporary.path().to_owned()
            }
        };
        let options = ferry_registry::PackageOptions {
            cache_dir,
            max_size: self.max_size,
            credentials: self.registry_credentials,
        };
        let started = Instant::now();
        let fetched = self
            .bounded(ferry_registry::fetch_package(package, &options))
            .with_context(|| {
                format!("component `{component}`: fetching the package {package} failed")
            })?;
        let _ = writeln!(
            out,
            "Fetched {} ({}) in {}",
            fetched.reference,
            human_size(fetched.bytes.len() as u64),
            human_duration(started.elapsed())
        );
        Ok(fetched.bytes)
    }

    fn cached_path(&self, digest: &Sha256Digest) -> Option<PathBuf> {
        Some(
            self.dir
                .as_ref()?
                .join(format!("sha256-{}.wasm", digest.to_hex())),
        )
    }

    /// The bytes at `url`, verified against `digest`: from the cache when
    /// they are there, downloaded (and cached) otherwise. `component` names
    /// the component in messages; progress goes to `out`.
    pub fn fetch(
        &self,
        component: &str,
        url: &str,
        digest: &Sha256Digest,
        out: &mut dyn std::io::Write,
    ) -> anyhow::Result<Vec<u8>> {
        if let Some(bytes) = self.cached(digest)? {
            return Ok(bytes);
        }
        let started = Instant::now();
        let shown = redacted(url);
        let _ = writeln!(out, "Downloading `{component}` from {shown}");
        let bytes = self
            .bounded(self.download(url, digest, out))
            .with_context(|| format!("component `{component}`: downloading {shown} failed"))?;
        let _ = writeln!(
            out,
            "Downloaded `{component}` ({}) in {}; {digest} verified",
            human_size(bytes.len() as u64),
            human_duration(started.elapsed())
        );
        Ok(bytes)
    }

    /// Runs `work` to its end on a runtime of its own (fetches happen before
    /// serving starts, and this keeps callers synchronous), within the
    /// download timeout.
    fn bounded<T>(&self, work: impl Future<Output = anyhow::Result<T>>) -> anyhow::Result<T> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting the download runtime")?;
        runtime.block_on(async {
            match tokio::time::timeout(self.timeout, work).await {
                Ok(result) => result,
                Err(_) => Err(anyhow::anyhow!(
                    "it took longer than {} (--download-timeout)",
                    human_duration(self.timeout)
                )),
            }
        })
    }

    /// A cached copy, if there is one whose bytes still match. One that does
    /// not is removed (and downloaded again).
    fn cached(&self, digest: &Sha256Digest) -> anyhow::Result<Option<Vec<u8>>> {
        let Some(path) = self.cached_path(digest) else {
            return Ok(None);
        };
        let fits = match std::fs::metadata(&path) {
            Ok(meta) => meta.is_file() && meta.len() <= self.max_size,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        if fits {
            let bytes =
                std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
            if sha256(&bytes) == *digest {
                return Ok(Some(bytes));
            }
        }
        tracing::warn!(
            path = ?path,
            "a cached download does not match its digest; removing it and downloading again"
        );
        let removed = if path.is_dir() {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        removed.with_context(|| format!("removing {}", path.display()))?;
        Ok(None)
    }

    async fn download(
        &self,
        url: &str,
        digest: &Sha256Digest,
        out: &mut dyn std::io::Write,
    ) -> anyhow::Result<Vec<u8>> {
        let client = reqwest::Client::builder()
            .use_preconfigured_tls(tls_config()?)
            .connect_timeout(CONNECT_TIMEOUT)
            .user_agent(concat!("ferry/", env!("CARGO_PKG_VERSION")))
            .build()
            .context("setting up the HTTP client")?;
        let mut response = client.get(url).send().await.map_err(describe)?;
        let status = response.status();
        anyhow::ensure!(status.is_success(), "the server answered {status}");
        let total = response.content_length();
        if let Some(total) = total {
            anyhow::ensure!(
                total <= self.max_size,
                "the server announces {}, more than the {} allowed (--max-download-size)",
                human_size(total),
                human_size(self.max_size)
            );
        }

        // Written to a temporary file in the cache directory as it arrives,
        // renamed into place only once verified; dropped (and so deleted) on
        // any error.
        let mut partial = match &self.dir {
            Some(dir) => {
                create_private_dir(dir)?;
                Some(
                    tempfile::Builder::new()
                        .prefix(".partial-")
                        .tempfile_in(dir)
                        .with_context(|| format!("creating a file in {}", dir.display()))?,
                )
            }
            None => None,
        };
        // What the server announces is a hint, not a promise: reserve no
        // more than a typical component up front.
        let mut bytes =
            Vec::with_capacity(total.unwrap_or(0).min(self.max_size).min(16 << 20) as usize);
        let mut hasher = Sha256::new();
        let mut last_progress = Instant::now();
        while let Some(chunk) = response.chunk().await.map_err(|e| {
            anyhow::anyhow!(
                "the connection failed after {} of {}: {}",
                human_size(bytes.len() as u64),
                total.map_or_else(|| "an unknown size".into(), human_size),
                describe(e)
            )
        })? {
            anyhow::ensure!(
                (bytes.len() + chunk.len()) as u64 <= self.max_size,
                "the body is larger than the {} allowed (--max-download-size)",
                human_size(self.max_size)
            );
            hasher.update(&chunk);
            bytes.extend_from_slice(&chunk);
            if let Some(file) = &mut partial {
                file.write_all(&chunk)
                    .with_context(|| format!("writing {}", file.path().display()))?;
            }
            if last_progress.elapsed() >= PROGRESS_EVERY {
                last_progress = Instant::now();
                let _ = match total {
                    Some(total) => writeln!(
                        out,
                        "  {} / {} ({}%)",
                        human_size(bytes.len() as u64),
                        human_size(total),
                        bytes.len() as u64 * 100 / total.max(1)
                    ),
                    None => writeln!(out, "  {}", human_size(bytes.len() as u64)),
                };
            }
        }
        if let Some(total) = total {
            anyhow::ensure!(
                bytes.len() as u64 == total,
                "the body ended after {} of the {} announced",
                human_size(bytes.len() as u64),
                human_size(total)
            );
        }

        let actual = Sha256Digest(hasher.finalize().into());
        if actual != *digest {
            return Err(DigestMismatch {
                expected: *digest,
                actual,
            }
            .into());
        }
        if let (Some(file), Some(path)) = (partial, self.cached_path(digest)) {
            file.as_file()
                .sync_all()
                .with_context(|| format!("writing {}", file.path().display()))?;
            file.persist(&path)
                .with_context(|| format!("saving {}", path.display()))?;
        }
        Ok(bytes)
    }
}

/// The downloaded bytes are not the ones the manifest names.
#[derive(Debug)]
struct DigestMismatch {
    expected: Sha256Digest,
    actual: Sha256Digest,
}

impl std::fmt::Display for DigestMismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the bytes do not match the manifest's digest (nothing was cached or run)\n  expected {}\n  actual   {}",
            self.expected, self.actual
        )
    }
}

impl std::error::Error for DigestMismatch {}

pub fn sha256(bytes: &[u8]) -> Sha256Digest {
    Sha256Digest(Sha256::digest(bytes).into())
}

/// How old a `.partial-*` file must be to be taken for the leftover of a
/// download that was killed (a live one writes to it all the time).
const STALE_PARTIAL: Duration = Duration::from_secs(3600);

/// Creates the download directory (only its owner may read it) and clears
/// out what killed downloads left.
fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder
        .create(dir)
        .with_context(|| format!("creating {}", dir.display()))?;
    for entry in std::fs::read_dir(dir)?.flatten() {
        let stale = entry.file_name().to_string_lossy().starts_with(".partial-")
            && entry
                .metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|t| t.elapsed().is_ok_and(|age| age > STALE_PARTIAL));
        if stale {
            let _ = std::fs::remove_file(entry.path());
        }
    }
    Ok(())
}
