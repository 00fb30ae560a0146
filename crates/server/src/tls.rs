//! TLS for Ferry's listeners (apps and admin): a PEM certificate chain and
//! its private key, on rustls with the `ring` provider the rest of the tree
//! uses.
//!
//! The pair is read once at start, where a missing file, a file with no
//! certificate or a key that does not match the certificate is an error
//! that stops the host. After that it is reloaded when either file changes,
//! without a restart: a thread of its own looks at the files' metadata
//! every [`CHECK_EVERY`], and a changed pair that reads and matches replaces
//! the served one for every later handshake (connections already open keep
//! theirs). Handshakes only read the current pair; they never touch the
//! files. A changed pair that does not read, say a certificate written
//! before its key, is logged once and the current pair is kept; it is tried
//! again when the files change again. Only regular files are read, at most
//! [`MAX_PEM_FILE`] each, opened without blocking: a path swapped for a
//! FIFO or `/dev/zero` is refused, not waited on. Polling metadata, not a
//! file watcher, works the same when a secret's directory is swapped by a
//! symlink.

use std::io::Read as _;
use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use arc_swap::ArcSwap;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// How often the files are looked at for a change.
pub const CHECK_EVERY: Duration = Duration::from_secs(1);

/// The largest certificate or key file read (a chain of a few certificates
/// is a few KiB).
pub const MAX_PEM_FILE: u64 = 1 << 20;

/// The ALPN name of HTTP/2.
pub const H2: &[u8] = b"h2";
/// The ALPN name of HTTP/1.1.
pub const HTTP1: &[u8] = b"http/1.1";
/// The ALPN name of HTTP/1.0 (served as HTTP/1, as without ALPN).
pub const HTTP10: &[u8] = b"http/1.0";

/// Where a listener's certificate chain and key are, as PEM files.
#[derive(Clone, Debug)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// A listener's TLS: what its handshakes serve.
#[derive(Clone)]
pub struct Tls {
    config: Arc<rustls::ServerConfig>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls").finish_non_exhaustive()
    }
}

impl Tls {
    /// Reads `files`; `alpn` lists the protocols offered, most preferred
    /// first. The files are then watched for as long as the `Tls` (or a
    /// listener's copy of it) lives.
    pub fn load(files: &TlsFiles, alpn: &[&[u8]]) -> anyhow::Result<Self> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        // Stamped before reading: a change during the read is seen later.
        let loaded = stamp(files);
        let first = read_pair(files, &provider)?;
        let resolver = Arc::new(Current(ArcSwap::from_pointee(first)));
        watch(
            files.clone(),
            provider.clone(),
            Arc::downgrade(&resolver),
            loaded,
        )?;
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .context("configuring TLS")?
            .with_no_client_auth()
            .with_cert_resolver(resolver);
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(Self {
            config: Arc::new(config),
        })
    }

    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        tokio_rustls::TlsAcceptor::from(self.config.clone())
    }
}

/// A regular file's contents, at most [`MAX_PEM_FILE`] bytes, opened
/// without blocking (a FIFO put in its place does not hold the reader).
fn read_bounded(path: &Path) -> anyhow::Result<Vec<u8>> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc_o_nonblock())
        .open(path)?;
    let meta = file.metadata()?;
    anyhow::ensure!(meta.is_file(), "it is not a regular file");
    anyhow::ensure!(
        meta.len() <= MAX_PEM_FILE,
        "it is over {} KiB",
        MAX_PEM_FILE >> 10
    );
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    file.take(MAX_PEM_FILE + 1).read_to_end(&mut bytes)?;
    anyhow::ensure!(
        bytes.len() as u64 <= MAX_PEM_FILE,
        "it is over {} KiB",
        MAX_PEM_FILE >> 10
    );
    Ok(bytes)
}

/// `O_NONBLOCK` on Linux (the only platform Ferry builds for).
const fn libc_o_nonblock() -> i32 {
    0o4000
}

/// Reads a certificate chain and its key, and checks that they match.
fn read_pair(files: &TlsFiles, provider: &CryptoProvider) -> anyhow::Result<CertifiedKey> {
    let (cert, key) = (&files.cert, &files.key);
    let chain = read_bounded(cert)
        .and_then(|pem| {
            CertificateDer::pem_slice_iter(&pem)
                .collect::<Result<Vec<_>, _>>()
                .map_err(anyhow::Error::from)
        })
        .with_context(|| format!("reading the TLS certificate {}", cert.display()))?;
    if chain.is_empty() {
        anyhow::bail!(
            "the TLS certificate {} holds no PEM `CERTIFICATE` block",
            cert.display()
        );
    }
    let private = read_bounded(key)
        .and_then(|pem| PrivateKeyDer::from_pem_slice(&pem).map_err(anyhow::Error::from))
        .with_context(|| format!("reading the TLS private key {}", key.display()))?;
    CertifiedKey::from_der(chain, private, provider).with_context(|| {
        format!(
            "the TLS private key {} does not go with the certificate {}",
            key.display(),
            cert.display()
        )
    })
}

/// What identifies a file's content without reading it: modification
/// time, length and inode (a file replaced by a rename gets a new inode).
type FileStamp = Option<(SystemTime, u64, u64)>;
type Stamp = [FileStamp; 2];

fn file_stamp(path: &Path) -> FileStamp {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len(), meta.ino()))
}

fn stamp(files: &TlsFiles) -> Stamp {
    [file_stamp(&files.cert), file_stamp(&files.key)]
}

/// The certificate resolver: the pair handshakes get now.
#[derive(Debug)]
struct Current(ArcSwap<CertifiedKey>);

impl ResolvesServerCert for Current {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.load_full())
    }
}

/// Looks at `files` every [`CHECK_EVERY`] on a thread of its own, and
/// stores a changed pair that reads into `current`, until `current` is
/// gone.
fn watch(
    files: TlsFiles,
    provider: Arc<CryptoProvider>,
    current: Weak<Current>,
    mut loaded: Stamp,
) -> anyhow::Result<()> {
    // The files as they were when a reload last failed (not tried again
    // until they change).
    let mut failed: Option<Stamp> = None;
    std::thread::Builder::new()
        .name("ferry-tls-reload".into())
        .spawn(move || {
            loop {
                std::thread::sleep(CHECK_EVERY);
                let Some(current) = current.upgrade() else {
                    return;
                };
                let now = stamp(&files);
                if now == loaded || failed == Some(now) {
                    continue;
                }
                match read_pair(&files, &provider) {
                    Ok(pair) => {
                        current.0.store(Arc::new(pair));
                        loaded = now;
                        failed = None;
                        tracing::info!(cert = %files.cert.display(), "TLS certificate reloaded");
                    }
                    Err(e) => {
                        failed = Some(now);
                        tracing::warn!("keeping the current TLS certificate: {e:#}");
                    }
                }
            }
        })
        .context("starting the TLS certificate reloader")?;
    Ok(())
}
