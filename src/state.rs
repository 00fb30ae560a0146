//! The state directory of `ferry serve`: everything a host needs to come
//! back after a restart or a `kill -9`.
//!
//! ```text
//! <state>/
//!   admin-token                 the admin API's bearer token (0600), unless --admin-token-file
//!   blobs/sha256/<hex>          uploaded files, by content: shared by every version that has them
//!   apps/<name>/
//!     current                   the version serving, a number (replaced by rename)
//!     versions/<n>/version.json what the version was deployed with (manifest path, files, host names)
//!     versions/<n>/tree/        the bundle laid out as the app directory (hard links to blobs)
//!     data/                     the app's key-value stores and SQLite databases, kept across versions
//!   cache/                      compiled code, unless --cache-dir
//! ```
//!
//! Every change is made so that a crash at any point leaves either the old
//! state or the new one: a version directory is built under a temporary name
//! and renamed into place, `current` is written to a temporary file and
//! renamed over the old one, and a blob is written to a temporary file,
//! checked against its digest, then renamed to its name. A version whose
//! directory is missing or half-built is never `current`.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::{Component, Path, PathBuf};

use anyhow::Context as _;
use serde::{Deserialize, Serialize};
use sha2::Digest as _;

/// What one deployed version was made of, as `version.json` records it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VersionRecord {
    pub version: u64,
    /// The manifest's path inside the bundle.
    pub manifest: String,
    /// Every file of the bundle: its path inside the bundle and its digest.
    pub files: BTreeMap<String, String>,
    /// The host names the app is reached by (none: any).
    #[serde(default)]
    pub hostnames: Vec<String>,
    /// When it was deployed, in seconds since the Unix epoch.
    pub deployed_at: u64,
}

/// A state directory, created (mode 0700) if it is not there.
#[derive(Debug, Clone)]
pub struct StateDir {
    root: PathBuf,
}

impl StateDir {
    pub fn open(root: &Path) -> anyhow::Result<Self> {
        private_dir(root)?;
        // Absolute and without symlinks, as the app directories loaded from
        // it are: a version's files are checked to lie inside its tree.
        let root = root
            .canonicalize()
            .with_context(|| format!("opening {}", root.display()))?;
        let state = Self { root };
        private_dir(&state.root.join("blobs/sha256"))?;
        private_dir(&state.root.join("apps"))?;
        state.remove_leftovers()?;
        Ok(state)
    }

    /// The admin token: read from `given`, else from `<state>/admin-token`,
    /// which is generated (32 random bytes, hex, mode 0600) the first time.
    pub fn admin_token(&self, given: Option<&Path>) -> anyhow::Result<String> {
        let path = given.map_or_else(|| self.root.join("admin-token"), Path::to_owned);
        if given.is_none() && !path.exists() {
            let mut bytes = [0u8; 32];
            getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
            let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            write_atomically(&path, format!("{token}\n").as_bytes())?;
        }
        let token = std::fs::read_to_string(&path)
            .with_context(|| format!("reading the admin token {}", path.display()))?;
        let token = token.trim().to_owned();
        anyhow::ensure!(
            token.len() >= 16,
            "the admin token in {} is shorter than 16 characters",
            path.display()
        );
        Ok(token)
    }

    /// Removes what a crash may have left half-written: temporary blobs and
    /// version directories that were never renamed into place.
    fn remove_leftovers(&self) -> anyhow::Result<()> {
        for entry in std::fs::read_dir(self.root.join("blobs/sha256"))? {
            let entry = entry?;
            if entry.file_name().to_string_lossy().starts_with(".tmp") {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        for name in self.app_names()? {
            let versions = self.app_dir(&name).join("versions");
            let Ok(entries) = std::fs::read_dir(&versions) else {
                continue;
            };
            for entry in entries.flatten() {
                if entry.file_name().to_string_lossy().starts_with(".tmp") {
                    let _ = std::fs::remove_dir_all(entry.path());
                }
            }
        }
        Ok(())
    }

    fn blob_path(&self, digest: &str) -> Option<PathBuf> {
        let hex = digest_hex(digest)?;
        Some(self.root.join("blobs/sha256").join(hex))
    }

    /// Where the blob `digest` (a valid one) is stored.
    pub fn blob_file(&self, digest: &str) -> PathBuf {
        self.blob_path(digest).unwrap_or_default()
    }

    /// Whether the blob `digest` is stored. Asking marks it as wanted now,
    /// so the clean-up after another deploy leaves it for the deploy about
    /// to use it (see [`UNUSED_BLOB_GRACE`]).
    pub fn has_blob(&self, digest: &str) -> bool {
        self.blob_path(digest).is_some_and(|p| {
            std::fs::File::options()
                .append(true)
                .open(&p)
                .and_then(|f| f.set_modified(std::time::SystemTime::now()))
                .is_ok()
        })
    }

    /// Stores `bytes` as the blob `digest`, refused if they do not hash to it.
    pub fn put_blob(&self, digest: &str, bytes: &[u8]) -> Result<(), String> {
        let path = self.blob_path(digest).ok_or_else(|| {
            format!("`{digest}` is not a digest: expected sha256:<64 hex digits>")
        })?;
        let actual = sha256_digest(bytes);
        if actual != digest {
            return Err(format!(
                "the upload does not match its digest: expected {digest}, got {actual}"
            ));
        }
        if path.is_file() {
            return Ok(());
        }
        write_atomically(&path, bytes).map_err(|e| format!("{e:#}"))
    }

    pub fn app_dir(&self, name: &str) -> PathBuf {
        self.root.join("apps").join(name)
    }

    /// Where the app keeps its key-value stores and databases.
    pub fn data_dir(&self, name: &str) -> PathBuf {
        self.app_dir(name).join("data")
    }

    fn version_dir(&self, name: &str, version: u64) -> PathBuf {
        self.app_dir(name)
            .join("versions")
            .join(version.to_string())
    }

    /// The version's bundle, laid out as its app directory.
    pub fn tree(&self, name: &str, version: u64) -> PathBuf {
        self.version_dir(name, version).join("tree")
    }

    /// Every app with a directory here, by name.
    pub fn app_names(&self) -> anyhow::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(self.root.join("apps"))? {
            let entry = entry?;
            if entry.file_type()?.is_dir()
                && let Some(name) = entry.file_name().to_str()
                && valid_app_name(name).is_ok()
            {
                names.push(name.to_owned());
            }
        }
        names.sort();
        Ok(names)
    }

    /// The version of `name` that serves, if any.
    pub fn current(&self, name: &str) -> Option<u64> {
        std::fs::read_to_string(self.app_dir(name).join("current"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    pub fn set_current(&self, name: &str, version: u64) -> anyhow::Result<()> {
        write_atomically(
            &self.app_dir(name).join("current"),
            format!("{version}\n").as_bytes(),
        )
    }

    pub fn clear_current(&self, name: &str) -> anyhow::Result<()> {
        std::fs::remove_file(self.app_dir(name).join("current"))?;
        Ok(())
    }

    /// Every complete version of `name`, oldest first.
    pub fn versions(&self, name: &str) -> Vec<VersionRecord> {
        let Ok(entries) = std::fs::read_dir(self.app_dir(name).join("versions")) else {
            return Vec::new();
        };
        let mut records: Vec<VersionRecord> = entries
            .flatten()
            .filter(|e| {
                e.file_name()
                    .to_str()
                    .is_some_and(|n| n.parse::<u64>().is_ok())
            })
            .filter_map(|e| std::fs::read(e.path().join("version.json")).ok())
            .filter_map(|bytes| serde_json::from_slice(&bytes).ok())
            .collect();
        records.sort_by_key(|r: &VersionRecord| r.version);
        records
    }

    pub fn version(&self, name: &str, version: u64) -> Option<VersionRecord> {
        let bytes = std::fs::read(self.version_dir(name, version).join("version.json")).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// Lays out a new version of `name` from blobs already stored, numbered
    /// one past the newest; the record's `version` is set to that number.
    /// Nothing is left behind if it fails.
    pub fn add_version(
        &self,
        name: &str,
        mut record: VersionRecord,
    ) -> anyhow::Result<VersionRecord> {
        let versions = self.app_dir(name).join("versions");
        private_dir(&versions)?;
        record.version = self.versions(name).last().map_or(1, |r| r.version + 1);
        let building = versions.join(format!(".tmp-{}", record.version));
        let _ = std::fs::remove_dir_all(&building);
        let result = (|| {
            let tree = building.join("tree");
            private_dir(&tree)?;
            for (path, digest) in &record.files {
                let blob = self
                    .blob_path(digest)
                    .with_context(|| format!("`{path}`: `{digest}` is not a digest"))?;
                let to = tree.join(path);
                if let Some(parent) = to.parent() {
                    private_dir(parent)?;
                }
                // A hard link shares the blob's bytes; a copy where the
                // filesystem cannot link.
                if std::fs::hard_link(&blob, &to).is_err() {
                    std::fs::copy(&blob, &to)
                        .with_context(|| format!("`{path}`: the blob {digest} is not stored"))?;
                }
            }
            write_atomically(
                &building.join("version.json"),
                &serde_json::to_vec_pretty(&record)?,
            )?;
            std::fs::rename(&building, self.version_dir(name, record.version))?;
            Ok(record)
        })();
        if result.is_err() {
            let _ = std::fs::remove_dir_all(&building);
        }
        result
    }

    pub fn remove_version(&self, name: &str, version: u64) {
        let _ = std::fs::remove_dir_all(self.version_dir(name, version));
    }

    /// Removes every version of `name` older than the newest `keep` (never
    /// `current`); the blobs they leave unused go with the next
    /// [`remove_unused_blobs`](Self::remove_unused_blobs).
    pub fn prune(&self, name: &str, keep: usize) {
        let current = self.current(name);
        let versions = self.versions(name);
        let excess = versions.len().saturating_sub(keep);
        for record in versions.iter().take(excess) {
            if Some(record.version) != current {
                self.remove_version(name, record.version);
            }
        }
    }

    /// Removes the app's directory: every version and its data.
    pub fn remove_app(&self, name: &str) -> anyhow::Result<()> {
        let dir = self.app_dir(name);
        // Renamed away first, so a crash half-way leaves no half an app.
        let doomed = self.root.join("apps").join(format!(".deleted-{name}"));
        std::fs::rename(&dir, &doomed).with_context(|| format!("removing {}", dir.display()))?;
        std::fs::remove_dir_all(&doomed)?;
        Ok(())
    }

    /// Removes every blob no version of any app uses (and that was not
    /// asked for within [`UNUSED_BLOB_GRACE`]). It reads every version of
    /// every app, so the host runs it now and then, not on every deploy.
    pub fn remove_unused_blobs(&self) {
        let Ok(names) = self.app_names() else {
            return;
        };
        let used: BTreeSet<String> = names
            .iter()
            .flat_map(|name| self.versions(name))
            .flat_map(|r| r.files.into_values())
            .filter_map(|d| digest_hex(&d).map(str::to_owned))
            .collect();
        let Ok(entries) = std::fs::read_dir(self.root.join("blobs/sha256")) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let recent = entry
                .metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|t| t.elapsed().unwrap_or_default() < UNUSED_BLOB_GRACE);
            if !used.contains(&name) && !name.starts_with(".tmp") && !recent {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
}

/// How long a blob no version uses is kept: the time between a client's
/// upload (or its question whether the blob is there) and the deploy that
/// uses it, and a failed deploy's retry.
const UNUSED_BLOB_GRACE: std::time::Duration = std::time::Duration::from_secs(3600);

/// `sha256:<hex>` of `bytes`.
pub fn sha256_digest(bytes: &[u8]) -> String {
    let hash = sha2::Sha256::digest(bytes);
    let hex: String = hash.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

/// The hex part of a well-formed `sha256:<64 lower-case hex digits>`.
pub fn digest_hex(digest: &str) -> Option<&str> {
    let hex = digest.strip_prefix("sha256:")?;
    (hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))).then_some(hex)
}

/// An app name that can be a directory name and a URL path segment.
pub fn valid_app_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        && name.as_bytes()[0].is_ascii_alphanumeric();
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{name}` is not an app name: use 1 to 64 letters, digits, `-` and `_`, starting with a letter or digit"
        ))
    }
}

/// A path inside a bundle that cannot leave it: relative, `/`-separated,
/// made only of plain names (no `..`, `.`, empty or absolute parts).
pub fn valid_bundle_path(path: &str) -> Result<(), String> {
    let plain = !path.is_empty()
        && path.len() <= 1024
        && !path.contains('\\')
        && !path.contains('\0')
        && path
            .split('/')
            .all(|part| !part.is_empty() && part != "." && part != "..")
        && Path::new(path)
            .components()
            .all(|c| matches!(c, Component::Normal(_)));
    if plain {
        Ok(())
    } else {
        Err(format!(
            "`{path}` is not a path inside the bundle: paths are relative, `/`-separated, without `..`"
        ))
    }
}

fn private_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("creating {}", dir.display()))
}

/// Writes `bytes` to `path` by way of a temporary file beside it, flushed
/// to disk before the rename, so `path` is always whole (mode 0600).
fn write_atomically(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let dir = path.parent().context("a path with no directory")?;
    let tmp = dir.join(format!(
        ".tmp-{}-{}",
        std::process::id(),
        path.file_name().unwrap_or_default().to_string_lossy()
    ));
    let result = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)?;
        // The rename itself is durable once the directory is synced.
        std::fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.with_context(|| format!("writing {}", path.display()))
}

/// `seconds` since the Unix epoch as an RFC 3339 UTC time.
pub fn rfc3339(seconds: u64) -> String {
    let days = seconds / 86_400;
    let rem = seconds % 86_400;
    // Howard Hinnant's civil-from-days, for days since 1970-01-01.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundle_paths_cannot_leave_the_bundle() {
        for good in [
            "spin.toml",
            "a/b/c.wasm",
            "static/index.html",
            "..a",
            "a..b/c",
        ] {
            assert_eq!(valid_bundle_path(good), Ok(()), "{good}");
        }
        for bad in [
            "",
            "/etc/passwd",
            "../x",
            "a/../../x",
            "a/./b",
            "a//b",
            "a/",
            "a\\..\\b",
            ".",
        ] {
            assert!(valid_bundle_path(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn times_are_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_796_300_000), "2026-12-03T12:13:20Z");
    }

    #[test]
    fn a_blob_is_stored_only_under_its_own_digest() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::open(dir.path()).unwrap();
        let digest = sha256_digest(b"hello");
        assert!(state.put_blob(&digest, b"hullo").is_err());
        assert!(!state.has_blob(&digest));
        state.put_blob(&digest, b"hello").unwrap();
        assert!(state.has_blob(&digest));
        assert!(state.put_blob("sha256:../../x", b"hello").is_err());
    }
}
