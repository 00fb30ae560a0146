//! The state directory of `ferry serve`: everything a host needs to come
//! back after a restart or a `kill -9`, and the first implementation of
//! [`DesiredState`] (one process owns it; its compare-and-swap and watch
//! are that process's).
//!
//! ```text
//! <state>/
//!   admin-token                 the admin API's bearer token (0600), unless --admin-token-file
//!   blobs/sha256/<hex>          uploaded files, by content: shared by every version that has them
//!   apps/<name>/
//!     current                   the version serving, a number (replaced by rename)
//!     versions/<n>/version.json what the version was deployed with (manifest path, files, host names)
//!     versions/<n>/variables.json the variable values its deploy gave (0600; only if it gave any)
//!     versions/<n>/tree/        the bundle laid out as the app directory (hard links to blobs)
//!     data/                     the app's key-value stores and SQLite databases, kept across versions
//!   cache/                      compiled code, unless --cache-dir
//! ```
//!
//! Every change is made so that a crash at any point leaves either the old
//! state or the new one: a version directory is built under a temporary name,
//! its entries synced, renamed into place and `versions/` synced; `current`
//! is written to a temporary file and renamed over the old one, and a blob is
//! written to a temporary file, checked against its digest, then renamed to
//! its name (each write its own temporary file, so writers of one path never
//! meet). An app is removed by renaming its directory to
//! `apps/.deleted-<name>` first, which no restart takes for an app. What a
//! crash leaves half-done (temporary files, unrenamed versions, removals cut
//! short) goes at the next start. Should `current` still name a version whose
//! directory never reached the disk, the host restores the newest kept
//! version before it.

use std::collections::BTreeSet;
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ferry_api::{Values, digest_hex, sha256_digest, valid_app_name};

use crate::desired::{BlobError, Change, DesiredState, SwapError, VersionRecord};
use crate::locks::Locks;

use anyhow::Context as _;

/// The file beside a version's `version.json` holding the variable values
/// its deploy gave (mode 0600, only where it gave any).
const VARIABLES_FILE: &str = "variables.json";

/// A state directory, created (mode 0700) if it is not there.
#[derive(Debug, Clone)]
pub struct StateDir {
    root: PathBuf,
    /// One lock per app, held while its serving version is compared and
    /// swapped (one process owns a state directory).
    swapping: Arc<Locks>,
    changes: tokio::sync::broadcast::Sender<Change>,
}

impl StateDir {
    pub fn open(root: &Path) -> anyhow::Result<Self> {
        private_dir(root)?;
        // Absolute and without symlinks, as the app directories loaded from
        // it are: a version's files are checked to lie inside its tree.
        let root = root
            .canonicalize()
            .with_context(|| format!("opening {}", root.display()))?;
        let state = Self {
            root,
            swapping: Arc::default(),
            changes: tokio::sync::broadcast::channel(256).0,
        };
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

    /// Removes what a crash may have left half-written: temporary files
    /// and version directories that were never renamed into place, and
    /// apps whose removal was cut short (`apps/.deleted-<name>`, already
    /// renamed out of the way, so no longer an app).
    fn remove_leftovers(&self) -> anyhow::Result<()> {
        for entry in std::fs::read_dir(self.root.join("blobs/sha256"))? {
            let entry = entry?;
            if entry.file_name().to_string_lossy().starts_with(".tmp") {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        for entry in std::fs::read_dir(self.root.join("apps"))? {
            let entry = entry?;
            if entry.file_name().to_string_lossy().starts_with(".deleted-")
                && let Err(e) = remove_dir_if_any(&entry.path())
            {
                // No app's: it only waits for the next removal of its name.
                tracing::warn!("{e:#}");
            }
        }
        for name in self.app_names()? {
            for dir in [self.app_dir(&name), self.app_dir(&name).join("versions")] {
                let Ok(entries) = std::fs::read_dir(&dir) else {
                    continue;
                };
                for entry in entries.flatten() {
                    if entry.file_name().to_string_lossy().starts_with(".tmp") {
                        let _ = match entry.file_type() {
                            Ok(kind) if kind.is_dir() => std::fs::remove_dir_all(entry.path()),
                            _ => std::fs::remove_file(entry.path()),
                        };
                    }
                }
            }
        }
        Ok(())
    }

    fn blob_path(&self, digest: &str) -> Option<PathBuf> {
        let hex = digest_hex(digest)?;
        Some(self.root.join("blobs/sha256").join(hex))
    }

    fn app_dir(&self, name: &str) -> PathBuf {
        self.root.join("apps").join(name)
    }

    fn version_dir(&self, name: &str, version: u64) -> PathBuf {
        self.app_dir(name)
            .join("versions")
            .join(version.to_string())
    }

    fn tree_dir(&self, name: &str, version: u64) -> PathBuf {
        self.version_dir(name, version).join("tree")
    }

    /// Whether version `version` of `name` is laid out here.
    pub fn has_version(&self, name: &str, version: u64) -> bool {
        self.version_dir(name, version)
            .join("version.json")
            .is_file()
    }

    /// Records `version` as the one `name` serves, whatever was recorded
    /// before: for a node's copy of a shared state, whose compare-and-swap
    /// happened elsewhere.
    pub fn record_current(&self, name: &str, version: u64) -> anyhow::Result<()> {
        write_atomically(
            &self.app_dir(name).join("current"),
            format!("{version}\n").as_bytes(),
        )
    }

    /// Lays out version `record.version` of `name` from blobs already
    /// stored, with the variable values its deploy gave: its tree, synced,
    /// then renamed into place. Nothing is left behind if it fails; a
    /// version already laid out is left as it is.
    pub fn lay_out(
        &self,
        name: &str,
        record: &VersionRecord,
        variables: &Values,
    ) -> anyhow::Result<()> {
        let versions = self.app_dir(name).join("versions");
        if !versions.is_dir() {
            // A first version: the app's own directory entries must last too.
            private_dir(&versions)?;
            sync_dir(&self.app_dir(name))?;
            sync_dir(&self.root.join("apps"))?;
        }
        if self.has_version(name, record.version) {
            return Ok(());
        }
        // Checked again here, whoever wrote the record (a cluster's may
        // come from any node): no path leaves the version's tree.
        ferry_api::valid_bundle_path(&record.manifest).map_err(anyhow::Error::msg)?;
        for path in record.files.keys() {
            ferry_api::valid_bundle_path(path).map_err(anyhow::Error::msg)?;
        }
        let building = versions.join(temporary_name(record.version.to_string().as_ref()));
        let result = (|| {
            let tree = building.join("tree");
            private_dir(&tree)?;
            // Every directory this version adds entries to, each synced
            // before the rename makes the version whole.
            let mut dirs = BTreeSet::from([building.clone(), tree.clone()]);
            for (path, digest) in &record.files {
                let blob = self
                    .blob_path(digest)
                    .with_context(|| format!("`{path}`: `{digest}` is not a digest"))?;
                let to = tree.join(path);
                if let Some(parent) = to.parent() {
                    private_dir(parent)?;
                    dirs.extend(
                        parent
                            .ancestors()
                            .take_while(|dir| dir.starts_with(&tree))
                            .map(Path::to_owned),
                    );
                }
                // A hard link shares the blob's bytes (synced when it was
                // stored); a copy, synced, where the filesystem cannot link.
                if std::fs::hard_link(&blob, &to).is_err() {
                    std::fs::copy(&blob, &to)
                        .and_then(|_| std::fs::File::open(&to)?.sync_all())
                        .with_context(|| format!("`{path}`: the blob {digest} is not stored"))?;
                }
            }
            for dir in &dirs {
                sync_dir(dir)?;
            }
            if !variables.0.is_empty() {
                // A file of its own (0600), outside the tree a guest's
                // `files` may reach, and never in what the API returns.
                write_atomically(
                    &building.join(VARIABLES_FILE),
                    &serde_json::to_vec(variables)?,
                )?;
            }
            write_atomically(
                &building.join("version.json"),
                &serde_json::to_vec_pretty(record)?,
            )?;
            let done = self.version_dir(name, record.version);
            std::fs::rename(&building, &done)?;
            // The rename is durable once `versions/` is synced; a version
            // that may not survive a crash is not one.
            if let Err(e) = sync_dir(&versions) {
                let _ = std::fs::remove_dir_all(&done);
                return Err(e);
            }
            Ok(())
        })();
        if result.is_err() {
            let _ = std::fs::remove_dir_all(&building);
        }
        result
    }

    fn retired_dir(&self, name: &str) -> PathBuf {
        self.root.join("apps").join(format!(".deleted-{name}"))
    }
}

impl DesiredState for StateDir {
    /// Whether the blob `digest` is stored. Asking marks it as wanted now,
    /// so the clean-up after another deploy leaves it for the deploy about
    /// to use it (see [`UNUSED_BLOB_GRACE`]).
    fn has_blob(&self, digest: &str) -> bool {
        self.blob_path(digest).is_some_and(|p| {
            std::fs::File::options()
                .append(true)
                .open(&p)
                .and_then(|f| f.set_modified(std::time::SystemTime::now()))
                .is_ok()
        })
    }

    /// Stores `bytes` as the blob `digest`, refused if they do not hash to it.
    fn put_blob(&self, digest: &str, bytes: &[u8]) -> Result<(), BlobError> {
        let path = self.blob_path(digest).ok_or_else(|| {
            BlobError::Refused(format!(
                "`{digest}` is not a digest: expected sha256:<64 hex digits>"
            ))
        })?;
        let actual = sha256_digest(bytes);
        if actual != digest {
            return Err(BlobError::Refused(format!(
                "the upload does not match its digest: expected {digest}, got {actual}"
            )));
        }
        if path.is_file() {
            return Ok(());
        }
        write_atomically(&path, bytes).map_err(BlobError::Write)
    }

    /// Where the app keeps its key-value stores and databases.
    fn data_dir(&self, name: &str) -> PathBuf {
        self.app_dir(name).join("data")
    }

    /// The version's bundle, laid out as its app directory (when it was
    /// added).
    fn tree(&self, name: &str, record: &VersionRecord) -> anyhow::Result<PathBuf> {
        Ok(self.tree_dir(name, record.version))
    }

    /// Every app with a directory here, by name.
    fn app_names(&self) -> anyhow::Result<Vec<String>> {
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
    fn current(&self, name: &str) -> Option<u64> {
        std::fs::read_to_string(self.app_dir(name).join("current"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// Every complete version of `name`, oldest first.
    fn versions(&self, name: &str) -> Vec<VersionRecord> {
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

    fn version(&self, name: &str, version: u64) -> Option<VersionRecord> {
        let bytes = std::fs::read(self.version_dir(name, version).join("version.json")).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// Lays out a new version of `name` from blobs already stored, numbered
    /// one past the newest; the record's `version` is set to that number.
    /// The variable values its deploy gave are written beside it (see
    /// [`variables`](Self::variables)). Nothing is left behind if it fails.
    fn add_version(
        &self,
        name: &str,
        mut record: VersionRecord,
        variables: &Values,
    ) -> anyhow::Result<VersionRecord> {
        record.version = self.versions(name).last().map_or(1, |r| r.version + 1);
        self.lay_out(name, &record, variables)?;
        Ok(record)
    }

    /// The variable values version `version` of `name` was deployed with
    /// (none if its deploy gave none). An unreadable file is an error: a
    /// version must not run without the values it was given.
    fn variables(&self, name: &str, version: u64) -> anyhow::Result<Values> {
        let path = self.version_dir(name, version).join(VARIABLES_FILE);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                // serde's message could quote a value: only say where.
                .map_err(|_| anyhow::anyhow!("{} is not a JSON object of strings", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Default::default()),
            Err(e) => Err(anyhow::Error::new(e).context(format!("reading {}", path.display()))),
        }
    }

    fn remove_version(&self, name: &str, version: u64) {
        let _ = std::fs::remove_dir_all(self.version_dir(name, version));
    }

    /// Whether anything of the app `name` is here: its directory, or what
    /// an earlier removal left.
    fn has_app(&self, name: &str) -> bool {
        self.app_dir(name).exists() || self.retired_dir(name).exists()
    }

    /// Takes the app's directory out of the state directory in one durable
    /// rename (to `apps/.deleted-<name>`, which is no app's), so a restart
    /// no longer sees the app. What an earlier removal of the same name
    /// left there is removed first. Without a directory (already retired),
    /// nothing is renamed.
    fn retire_app(&self, name: &str) -> anyhow::Result<()> {
        let existed = self.has_app(name);
        let retired = self.retired_dir(name);
        remove_dir_if_any(&retired)?;
        let dir = self.app_dir(name);
        match std::fs::rename(&dir, &retired) {
            Ok(()) => sync_dir(&self.root.join("apps"))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("removing {}", dir.display())),
        }
        if existed {
            let _ = self.changes.send(Change::Removed {
                app: name.to_owned(),
            });
        }
        Ok(())
    }

    /// Removes what [`retire_app`](Self::retire_app) set aside. Left there
    /// if it fails: the next removal of that name, or the next start,
    /// finishes it.
    fn purge_app(&self, name: &str) -> anyhow::Result<()> {
        remove_dir_if_any(&self.retired_dir(name))
    }

    /// Removes every blob no version of any app uses (and that was not
    /// asked for within [`UNUSED_BLOB_GRACE`]). It reads every version of
    /// every app, so the host runs it now and then, not on every deploy.
    fn remove_unused_blobs(&self) {
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

    fn blob_size(&self, digest: &str) -> Option<u64> {
        let path = self.blob_path(digest)?;
        std::fs::metadata(path).ok().map(|m| m.len())
    }

    fn swap_current(
        &self,
        name: &str,
        expected: Option<u64>,
        new: Option<u64>,
    ) -> Result<(), SwapError> {
        let _swapping = self.swapping.hold(name);
        let now = self.current(name);
        if now != expected {
            return Err(SwapError::Changed { now });
        }
        let file = self.app_dir(name).join("current");
        match new {
            Some(version) => write_atomically(&file, format!("{version}\n").as_bytes()),
            None => match std::fs::remove_file(&file) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    Err(anyhow::Error::new(e).context(format!("removing {}", file.display())))
                }
                _ => sync_dir(&self.app_dir(name)),
            },
        }
        .map_err(SwapError::Write)?;
        let _ = self.changes.send(Change::Current {
            app: name.to_owned(),
            current: new,
        });
        Ok(())
    }

    fn watch(&self) -> tokio::sync::broadcast::Receiver<Change> {
        self.changes.subscribe()
    }
}

/// How long a blob no version uses is kept: the time between a client's
/// upload (or its question whether the blob is there) and the deploy that
/// uses it, and a failed deploy's retry.
const UNUSED_BLOB_GRACE: std::time::Duration = std::time::Duration::from_secs(3600);

fn private_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("creating {}", dir.display()))
}

/// Removes the directory `dir` and everything in it, if it is there.
fn remove_dir_if_any(dir: &Path) -> anyhow::Result<()> {
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("removing {}", dir.display()))
        }
        _ => Ok(()),
    }
}

/// Flushes the entries of the directory `dir` (creations, renames) to disk.
fn sync_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("syncing {}", dir.display()))
}

/// A name no other temporary file of this process or another has: the
/// process id and a counter of this process's temporary files.
fn temporary_name(name: &std::ffi::OsStr) -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!(".tmp-{}-{n}-{}", std::process::id(), name.to_string_lossy())
}

/// Writes `bytes` to `path` by way of a temporary file beside it (a name
/// of its own, so writers of the same path never share one), flushed to
/// disk before the rename, so `path` is always whole (mode 0600).
fn write_atomically(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let dir = path.parent().context("a path with no directory")?;
    let tmp = dir.join(temporary_name(path.file_name().unwrap_or_default()));
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

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
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
    fn the_serving_version_changes_only_from_what_the_writer_saw() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::open(dir.path()).unwrap();
        std::fs::create_dir_all(dir.path().join("apps/x")).unwrap();
        let mut changes = state.watch();
        state.swap_current("x", None, Some(1)).unwrap();
        assert!(matches!(
            state.swap_current("x", None, Some(2)),
            Err(SwapError::Changed { now: Some(1) })
        ));
        state.swap_current("x", Some(1), Some(2)).unwrap();
        assert_eq!(state.current("x"), Some(2));
        state.swap_current("x", Some(2), None).unwrap();
        assert_eq!(state.current("x"), None);
        state.retire_app("x").unwrap();
        let seen: Vec<Change> = std::iter::from_fn(|| changes.try_recv().ok()).collect();
        let current = |current| Change::Current {
            app: "x".into(),
            current,
        };
        assert_eq!(
            seen,
            [
                current(Some(1)),
                current(Some(2)),
                current(None),
                Change::Removed { app: "x".into() }
            ]
        );
        // A restart reads what was swapped in, from disk.
        state.swap_current("y", None, Some(3)).unwrap_err();
        std::fs::create_dir_all(dir.path().join("apps/y")).unwrap();
        state.swap_current("y", None, Some(3)).unwrap();
        assert_eq!(StateDir::open(dir.path()).unwrap().current("y"), Some(3));
    }

    #[test]
    fn times_are_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_796_300_000), "2026-12-03T12:13:20Z");
    }

    #[test]
    fn writers_of_one_path_never_share_a_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("current");
        std::thread::scope(|scope| {
            for writer in 0..8u8 {
                let path = &path;
                scope.spawn(move || {
                    for _ in 0..50 {
                        write_atomically(path, &[writer; 4096]).unwrap();
                    }
                });
            }
        });
        let bytes = std::fs::read(&path).unwrap();
        assert!(bytes.len() == 4096 && bytes.iter().all(|b| *b == bytes[0]));
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1, "no temporary file is left");
    }

    #[test]
    fn a_removal_cut_short_is_finished() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::open(dir.path()).unwrap();
        let apps = dir.path().join("apps");
        std::fs::create_dir_all(apps.join("x/versions/1")).unwrap();
        std::fs::create_dir_all(apps.join(".deleted-x/versions/1")).unwrap();
        assert!(state.has_app("x"));
        state.remove_app("x").unwrap();
        assert!(!state.has_app("x"));
        assert_eq!(std::fs::read_dir(&apps).unwrap().count(), 0);
        // Again, with nothing left: nothing to do.
        state.remove_app("x").unwrap();
        // Retired but not purged: what is left goes at the next start.
        std::fs::create_dir_all(apps.join("y/data")).unwrap();
        state.retire_app("y").unwrap();
        assert!(!apps.join("y").exists() && state.has_app("y"));
        let state = StateDir::open(dir.path()).unwrap();
        assert!(!state.has_app("y"));
        assert_eq!(std::fs::read_dir(&apps).unwrap().count(), 0);
    }

    /// A record from elsewhere (a cluster's, written by any node) whose
    /// paths leave the version's tree is not laid out, and writes nothing.
    #[test]
    fn a_record_whose_paths_leave_the_tree_is_not_laid_out() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::open(dir.path()).unwrap();
        let digest = sha256_digest(b"x");
        state.put_blob(&digest, b"x").unwrap();
        for (manifest, path) in [
            ("spin.toml", "../../escaped"),
            ("../spin.toml", "spin.toml"),
        ] {
            let record = VersionRecord {
                version: 1,
                manifest: manifest.into(),
                files: [(path.to_owned(), digest.clone())].into(),
                hostnames: Vec::new(),
                deployed_at: 0,
            };
            assert!(state.lay_out("app", &record, &Values::default()).is_err());
            assert!(!state.has_version("app", 1));
        }
        assert!(!dir.path().join("escaped").exists());
        assert!(!dir.path().join("apps/escaped").exists());
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
