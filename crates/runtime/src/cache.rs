//! Cache of compiled code: on disk, across runs, and in memory, across the
//! loads of one process (the last [`MAX_LOADED`] artifacts loaded are shared
//! by every later load of the same one).
//!
//! An artifact's name is a SHA-256 over the Wasm bytes, the kind of artifact
//! and wasmtime's own compatibility hash (which covers the wasmtime version,
//! the target and every engine setting that changes generated code). A
//! different wasmtime or engine setting therefore looks for a different file
//! and never loads a stale one. Files are written to a temporary name and
//! renamed, so a crash or a concurrent `ferry up` never leaves a torn file.
//!
//! Loading an entry runs its native code inside Ferry, so only an entry
//! nobody else could have written is loaded: the directory is created with
//! mode 0700, and a directory or entry that is not the current user's, or
//! that its group or others may write, is not used (Ferry compiles instead,
//! writes nothing there, and says why once).

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use sha2::{Digest, Sha256};
use wasmtime::Engine;

use crate::adapt::Adaptation;

/// A guest compiled for the current engine.
#[derive(Clone)]
pub(crate) enum Compiled {
    Component(wasmtime::component::Component),
    Module(wasmtime::Module),
}

/// How a guest was obtained.
#[derive(Debug, Clone, Copy)]
pub struct CompileStats {
    /// Compile time, or load time when it came from the cache.
    pub elapsed: Duration,
    pub from_cache: bool,
}

#[derive(Clone)]
pub struct CompileCache {
    dir: Option<PathBuf>,
    /// Whether `dir` may be used, decided (and warned about) once.
    usable: std::sync::Arc<std::sync::OnceLock<bool>>,
    /// Code this process has loaded lately, shared by every later load of
    /// the same artifact: a thousand apps on one Wasm, or a redeploy and a
    /// rollback, map and keep one copy of it instead of one each.
    loaded: std::sync::Arc<std::sync::Mutex<std::collections::VecDeque<LoadedArtifact>>>,
}

impl std::fmt::Debug for CompileCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompileCache")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

/// One loaded artifact: its key, the engine it was loaded into, the code.
struct LoadedArtifact {
    key: [u8; 32],
    engine: Engine,
    compiled: Compiled,
}

/// How many loaded artifacts are kept for sharing (the least recently used
/// goes first); code still in use by a guest stays alive with the guest.
const MAX_LOADED: usize = 64;

impl CompileCache {
    /// A cache in `dir`, or no cache at all.
    pub fn new(dir: Option<PathBuf>) -> Self {
        Self {
            dir,
            usable: Default::default(),
            loaded: Default::default(),
        }
    }

    /// Whether the cache directory exists (created now if needed, mode
    /// 0700) and nobody but this user can write to it.
    fn usable(&self) -> bool {
        let Some(dir) = &self.dir else {
            return false;
        };
        *self.usable.get_or_init(|| match prepare_dir(dir) {
            Ok(()) => true,
            Err(why) => {
                tracing::warn!(
                    path = ?dir,
                    "not using the compile cache: {why}; compiling every component instead"
                );
                false
            }
        })
    }

    /// The default location: `$XDG_CACHE_HOME/ferry` or `~/.cache/ferry`.
    pub fn default_dir() -> Option<PathBuf> {
        std::env::var_os("XDG_CACHE_HOME")
            .filter(|d| !d.is_empty())
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache")))
            .map(|d| d.join("ferry"))
    }

    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    /// The artifact's key: a SHA-256 over the Wasm as the manifest named it,
    /// how it is adapted (the adapter's own hash included, so a warm start
    /// skips the adapting too), the kind of artifact and the engine's
    /// compatibility hash.
    fn key(
        &self,
        engine: &Engine,
        wasm: &[u8],
        adaptation: Adaptation,
        is_component: bool,
    ) -> [u8; 32] {
        let mut engine_hash = std::collections::hash_map::DefaultHasher::new();
        engine
            .precompile_compatibility_hash()
            .hash(&mut engine_hash);
        let mut digest = Sha256::new();
        digest.update(b"ferry-artifact-v1\0");
        digest.update(env!("CARGO_PKG_VERSION").as_bytes());
        digest.update(engine_hash.finish().to_le_bytes());
        digest.update([u8::from(is_component)]);
        let tag = adaptation.cache_tag();
        digest.update((tag.len() as u64).to_le_bytes());
        digest.update(&tag);
        digest.update(wasm);
        digest.finalize().into()
    }

    fn artifact_path(&self, key: &[u8; 32]) -> Option<PathBuf> {
        let dir = self.dir.as_ref()?;
        let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
        Some(dir.join(format!("{hex}.cwasm")))
    }

    /// The code loaded under `key` into `engine`, if this process has it.
    fn shared(&self, engine: &Engine, key: &[u8; 32]) -> Option<Compiled> {
        let mut loaded = self.loaded.lock().unwrap_or_else(|e| e.into_inner());
        let index = loaded
            .iter()
            .position(|a| a.key == *key && Engine::same(&a.engine, engine))?;
        let artifact = loaded.remove(index)?;
        let compiled = artifact.compiled.clone();
        loaded.push_back(artifact);
        Some(compiled)
    }

    fn share(&self, engine: &Engine, key: [u8; 32], compiled: &Compiled) {
        let mut loaded = self.loaded.lock().unwrap_or_else(|e| e.into_inner());
        if loaded.len() == MAX_LOADED {
            loaded.pop_front();
        }
        loaded.push_back(LoadedArtifact {
            key,
            engine: engine.clone(),
            compiled: compiled.clone(),
        });
    }

    /// Loads the compiled form of `wasm` adapted by `adaptation` from the
    /// cache, or adapts, compiles and stores it.
    pub(crate) fn load_or_compile(
        &self,
        engine: &Engine,
        wasm: &[u8],
        adaptation: Adaptation,
    ) -> anyhow::Result<(Compiled, CompileStats)> {
        let start = Instant::now();
        let is_component = adaptation.yields_component(wasm);
        let key = self.key(engine, wasm, adaptation, is_component);
        if let Some(compiled) = self.shared(engine, &key) {
            return Ok((
                compiled,
                CompileStats {
                    elapsed: start.elapsed(),
                    from_cache: true,
                },
            ));
        }
        let mut path = self.artifact_path(&key).filter(|_| self.usable());
        if let Some(entry) = &path
            && let Ok(meta) = std::fs::symlink_metadata(entry)
            && let Err(why) = trusted(&meta, "entry", rustix::process::geteuid().as_raw())
        {
            tracing::warn!(
                path = ?entry,
                "not loading a compile cache entry: {why}; compiling instead, without caching"
            );
            path = None;
        }
        if let Some(path) = &path
            && path.is_file()
        {
            match deserialize(engine, path, is_component) {
                Ok(compiled) => {
                    self.share(engine, key, &compiled);
                    return Ok((
                        compiled,
                        CompileStats {
                            elapsed: start.elapsed(),
                            from_cache: true,
                        },
                    ));
                }
                Err(e) => tracing::warn!(
                    path = ?path,
                    "ignoring unusable compile cache entry: {e:#}"
                ),
            }
        }
        let adapted = adaptation.apply(wasm)?;
        let serialized = if is_component {
            engine.precompile_component(&adapted)?
        } else {
            engine.precompile_module(&adapted)?
        };
        let compiled = if is_component {
            // SAFETY: the bytes were produced by this engine just above.
            Compiled::Component(unsafe {
                wasmtime::component::Component::deserialize(engine, &serialized)?
            })
        } else {
            // SAFETY: as above.
            Compiled::Module(unsafe { wasmtime::Module::deserialize(engine, &serialized)? })
        };
        let elapsed = start.elapsed();
        self.share(engine, key, &compiled);
        if let Some(path) = &path
            && let Err(e) = store(path, &serialized)
        {
            tracing::warn!(path = ?path, "cannot write compile cache: {e:#}");
        }
        Ok((
            compiled,
            CompileStats {
                elapsed,
                from_cache: false,
            },
        ))
    }
}

/// Creates `dir` (mode 0700) if it is missing, and checks that nobody but
/// this user can write into it.
fn prepare_dir(dir: &Path) -> Result<(), String> {
    use std::os::unix::fs::DirBuilderExt as _;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| format!("cannot create it: {e}"))?;
    let meta = std::fs::symlink_metadata(dir).map_err(|e| e.to_string())?;
    trusted(&meta, "directory", rustix::process::geteuid().as_raw())
}

/// Whether a cache directory or entry with `meta` could only have been
/// written by user `uid`: it is a plain directory or file (not a symlink),
/// `uid` owns it, and neither its group nor others may write it.
fn trusted(meta: &std::fs::Metadata, what: &str, uid: u32) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt as _;
    let kind = meta.file_type();
    if kind.is_symlink() || !(kind.is_dir() || kind.is_file()) {
        return Err(format!("the {what} is not a plain file or directory"));
    }
    if meta.uid() != uid {
        return Err(format!(
            "the {what} belongs to user {}, not to this user ({uid})",
            meta.uid()
        ));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(format!(
            "the {what}'s group or other users may write it (mode {:o})",
            meta.mode() & 0o7777
        ));
    }
    Ok(())
}

fn deserialize(engine: &Engine, path: &Path, is_component: bool) -> anyhow::Result<Compiled> {
    // SAFETY: the file is named by a hash of this engine's settings and was
    // written by `store` under a temporary name and renamed into place, so it
    // is complete output of `Engine::precompile_*` for a compatible engine;
    // wasmtime also checks the header. Only this user can have written it:
    // `trusted` checked the directory and the entry.
    Ok(if is_component {
        Compiled::Component(unsafe {
            wasmtime::component::Component::deserialize_file(engine, path)?
        })
    } else {
        Compiled::Module(unsafe { wasmtime::Module::deserialize_file(engine, path)? })
    })
}

fn store(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let dir = path.parent().context("cache path has no directory")?;
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        path.file_name().unwrap_or_default().to_string_lossy(),
        std::process::id()
    ));
    // 0600 whatever the umask: an entry others may write is not loaded.
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("creating {}", tmp.display()))?;
    file.write_all(bytes)
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming into {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_what_nobody_else_could_write_is_trusted() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let me = rustix::process::geteuid().as_raw();
        let entry = dir.path().join("entry");
        std::fs::write(&entry, b"x").unwrap();
        let meta = |path: &Path| std::fs::symlink_metadata(path).unwrap();
        for (mode, ok) in [(0o600, true), (0o644, true), (0o664, false), (0o646, false)] {
            std::fs::set_permissions(&entry, std::fs::Permissions::from_mode(mode)).unwrap();
            assert_eq!(trusted(&meta(&entry), "entry", me).is_ok(), ok, "{mode:o}");
        }
        std::fs::set_permissions(&entry, std::fs::Permissions::from_mode(0o600)).unwrap();
        let someone_else = trusted(&meta(&entry), "entry", me + 1).unwrap_err();
        assert!(
            someone_else.contains(&format!("belongs to user {me}")),
            "{someone_else}"
        );
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&entry, &link).unwrap();
        assert!(trusted(&meta(&link), "entry", me).is_err());
    }
}
