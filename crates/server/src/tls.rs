//! TLS for Ferry's listeners (apps and admin): a PEM certificate chain and
//! its private key, on rustls with the `ring` provider the rest of the tree
//! uses.
//!
//! The pair is read once at start, where a missing file, a file with no
//! certificate or a key that does not match the certificate is an error
//! that stops the host. After that it is reloaded when either file changes,
//! without a restart: a handshake checks the files' metadata at most once
//! per [`CHECK_EVERY`], and a changed pair that reads and matches replaces
//! the served one for every later handshake (connections already open keep
//! theirs). A changed pair that does not read, say a certificate written
//! before its key, is logged once and the current pair is kept; it is tried
//! again when the files change again. Checking on the handshake path, not a
//! file watcher, means no task to manage and works the same when a
//! secret's directory is swapped by a symlink.

use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context as _;
use arc_swap::ArcSwap;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// How often a handshake looks at the files for a change.
pub const CHECK_EVERY: Duration = Duration::from_secs(1);

/// The ALPN name of HTTP/2.
pub const H2: &[u8] = b"h2";
/// The ALPN name of HTTP/1.1.
pub const HTTP1: &[u8] = b"http/1.1";

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
    /// first.
    pub fn load(files: &TlsFiles, alpn: &[&[u8]]) -> anyhow::Result<Self> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let first = read_pair(files, &provider)?;
        let resolver = Reloading {
            files: files.clone(),
            current: ArcSwap::from_pointee(first),
            check: Mutex::new(Check {
                at: Instant::now(),
                loaded: stamp(files),
                failed: None,
            }),
            provider: provider.clone(),
        };
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .context("configuring TLS")?
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(resolver));
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(Self {
            config: Arc::new(config),
        })
    }

    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        tokio_rustls::TlsAcceptor::from(self.config.clone())
    }
}

/// Reads a certificate chain and its key, and checks that they match.
fn read_pair(files: &TlsFiles, provider: &CryptoProvider) -> anyhow::Result<CertifiedKey> {
    let (cert, key) = (&files.cert, &files.key);
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .with_context(|| format!("reading the TLS certificate {}", cert.display()))?;
    if chain.is_empty() {
        anyhow::bail!(
            "the TLS certificate {} holds no PEM `CERTIFICATE` block",
            cert.display()
        );
    }
    let private = PrivateKeyDer::from_pem_file(key)
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

/// The certificate resolver: serves the current pair, and looks for a new
/// one first when it is time.
struct Reloading {
    files: TlsFiles,
    current: ArcSwap<CertifiedKey>,
    check: Mutex<Check>,
    provider: Arc<CryptoProvider>,
}

struct Check {
    /// When the files were last looked at.
    at: Instant,
    /// The files as they were when the current pair was read.
    loaded: Stamp,
    /// The files as they were when a reload last failed (not tried again
    /// until they change).
    failed: Option<Stamp>,
}

impl std::fmt::Debug for Reloading {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reloading")
            .field("files", &self.files)
            .finish_non_exhaustive()
    }
}

impl Reloading {
    fn refresh(&self) {
        // A handshake never waits on another's check.
        let Ok(mut check) = self.check.try_lock() else {
            return;
        };
        if check.at.elapsed() < CHECK_EVERY {
            return;
        }
        check.at = Instant::now();
        let now = stamp(&self.files);
        if now == check.loaded || check.failed == Some(now) {
            return;
        }
        match read_pair(&self.files, &self.provider) {
            Ok(pair) => {
                self.current.store(Arc::new(pair));
                check.loaded = now;
                check.failed = None;
                tracing::info!(
                    cert = %self.files.cert.display(),
                    "TLS certificate reloaded"
                );
            }
            Err(e) => {
                check.failed = Some(now);
                tracing::warn!("keeping the current TLS certificate: {e:#}");
            }
        }
    }
}

impl ResolvesServerCert for Reloading {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.refresh();
        Some(self.current.load_full())
    }
}
