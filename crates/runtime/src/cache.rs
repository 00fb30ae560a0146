//! On-disk cache of compiled code.
//!
//! An artifact's name is a SHA-256 over the Wasm bytes, the kind of artifact
//! and wasmtime's own compatibility hash (which covers the wasmtime version,
//! the target and every engine setting that changes generated code). A
//! different wasmtime or engine setting therefore looks for a different file
//! and never loads a stale one. Files are written to a temporary name and
//! renamed, so a crash or a concurrent `ferry up` never leaves a torn file.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use sha2::{Digest, Sha256};
use wasmtime::Engine;

use crate::adapt::Adaptation;

/// A guest compiled for the current engine.
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

#[derive(Debug, Clone)]
pub struct CompileCache {
    dir: Option<PathBuf>,
}

impl CompileCache {
    /// A cache in `dir`, or no cache at all.
    pub fn new(dir: Option<PathBuf>) -> Self {
        Self { dir }
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

    fn artifact_path(
        &self,
        engine: &Engine,
        wasm: &[u8],
        adaptation: Adaptation,
        is_component: bool,
    ) -> Option<PathBuf> {
        let dir = self.dir.as_ref()?;
        let mut engine_hash = std::collections::hash_map::DefaultHasher::new();
        engine
            .precompile_compatibility_hash()
            .hash(&mut engine_hash);
        let mut digest = Sha256::new();
        digest.update(b"ferry-artifact-v1\0");
        digest.update(env!("CARGO_PKG_VERSION").as_bytes());
        digest.update(engine_hash.finish().to_le_bytes());
        digest.update([u8::from(is_component)]);
        // The key is the bytes as the manifest named them, and how they are
        // adapted (the adapter's own hash included): a warm start skips the
        // adapting too.
        let tag = adaptation.cache_tag();
        digest.update((tag.len() as u64).to_le_bytes());
        digest.update(&tag);
        digest.update(wasm);
        let hex: String = digest
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        Some(dir.join(format!("{hex}.cwasm")))
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
        let path = self.artifact_path(engine, wasm, adaptation, is_component);
        if let Some(path) = &path
            && path.is_file()
        {
            match deserialize(engine, path, is_component) {
                Ok(compiled) => {
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

fn deserialize(engine: &Engine, path: &Path, is_component: bool) -> anyhow::Result<Compiled> {
    // SAFETY: the file is named by a hash of this engine's settings and was
    // written by `store` under a temporary name and renamed into place, so it
    // is complete output of `Engine::precompile_*` for a compatible engine;
    // wasmtime also checks the header. Nothing else writes to the cache dir.
    Ok(if is_component {
        Compiled::Component(unsafe {
            wasmtime::component::Component::deserialize_file(engine, path)?
        })
    } else {
        Compiled::Module(unsafe { wasmtime::Module::deserialize_file(engine, path)? })
    })
}

fn store(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let dir = path.parent().context("cache path has no directory")?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        path.file_name().unwrap_or_default().to_string_lossy(),
        std::process::id()
    ));
    std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming into {}", path.display()))?;
    Ok(())
}
