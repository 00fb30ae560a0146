//! What `ferry deploy` uploads: the manifest and every file it references,
//! each by its path inside the app directory and its digest.
//!
//! A bundle holds the manifest, `runtime-config.toml` beside it if there is
//! one, each component's local Wasm and each `files` entry (a file, a whole
//! directory, or what a glob matches). Only regular files inside the app
//! directory go in: a path or a symlink leading out of it is refused, so a
//! deploy never publishes a file the app does not contain.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use ferry_manifest::{App, FileMount, Source};

use ferry_api::sha256_digest;

/// One file to upload.
pub struct BundleFile {
    pub path: PathBuf,
    pub digest: String,
    pub size: u64,
}

pub struct Bundle {
    pub app: App,
    /// The manifest's path inside the bundle.
    pub manifest: String,
    /// By path inside the bundle (`/`-separated).
    pub files: BTreeMap<String, BundleFile>,
}

impl Bundle {
    /// Collects the bundle of the app at `path` (a manifest file or a
    /// directory holding one).
    pub fn collect(path: &Path) -> anyhow::Result<Self> {
        let app = ferry_manifest::load_app(path)?;
        let root = app
            .dir
            .canonicalize()
            .with_context(|| format!("opening the app directory {}", app.dir.display()))?;
        let mut bundle = Self {
            manifest: String::new(),
            files: BTreeMap::new(),
            app,
        };
        bundle.manifest = bundle.add(&root, &bundle.app.manifest_path.clone(), "the manifest")?;
        let runtime_config = root.join("runtime-config.toml");
        if runtime_config.is_file() {
            bundle.add(&root, &runtime_config, "runtime-config.toml")?;
        }
        for component in bundle.app.components.clone() {
            let what = format!("component `{}`", component.id);
            if let Source::File(source) = &component.source {
                bundle.add(&root, source, &what)?;
            }
            for part in component.dependency_files() {
                bundle.add(&root, part, &format!("{what}'s dependency"))?;
            }
            for mount in &component.files {
                match mount {
                    FileMount::File { source, .. } => {
                        bundle.add(&root, source, &what)?;
                    }
                    FileMount::Directory { source, .. } => bundle.add_tree(&root, source, &what)?,
                    FileMount::Glob(pattern) => {
                        let named = root.join(pattern.trim_start_matches("./"));
                        if named.is_file() {
                            bundle.add(&root, &named, &what)?;
                        } else if named.is_dir() {
                            bundle.add_tree(&root, &named, &what)?;
                        } else {
                            bundle.add_glob(&root, pattern, &what)?;
                        }
                    }
                }
            }
        }
        Ok(bundle)
    }

    pub fn total_size(&self) -> u64 {
        self.files.values().map(|f| f.size).sum()
    }

    /// Adds the file `path` (for `what`); its path inside the bundle.
    fn add(&mut self, root: &Path, path: &Path, what: &str) -> anyhow::Result<String> {
        // Paths in the app are relative to where ferry runs, not to the app.
        let absolute = std::path::absolute(path)?;
        let real = absolute
            .canonicalize()
            .with_context(|| format!("{what}: cannot read {}", absolute.display()))?;
        let Ok(inside) = real.strip_prefix(root) else {
            bail!(
                "{what}: {} is outside the app directory {}; a deployed app can only use files inside it",
                absolute.display(),
                root.display()
            );
        };
        if !real.is_file() {
            bail!("{what}: {} is not a regular file", absolute.display());
        }
        // The path the manifest names it by (a symlink's own, inside the
        // app), else where it really is.
        let named = absolute
            .strip_prefix(std::path::absolute(&self.app.dir)?)
            .ok()
            .filter(|p| {
                !p.components()
                    .any(|c| matches!(c, std::path::Component::ParentDir))
            })
            .unwrap_or(inside);
        let key = bundle_path(named)?;
        if !self.files.contains_key(&key) {
            let bytes = std::fs::read(&real)
                .with_context(|| format!("{what}: reading {}", real.display()))?;
            self.files.insert(
                key.clone(),
                BundleFile {
                    path: real,
                    digest: sha256_digest(&bytes),
                    size: bytes.len() as u64,
                },
            );
        }
        Ok(key)
    }

    /// Adds every regular file under the directory `dir`.
    fn add_tree(&mut self, root: &Path, dir: &Path, what: &str) -> anyhow::Result<()> {
        for entry in walkdir::WalkDir::new(dir)
            .follow_links(false)
            .sort_by_file_name()
        {
            let entry = entry.with_context(|| format!("{what}: reading {}", dir.display()))?;
            if entry.file_type().is_file() || entry.path_is_symlink() && entry.path().is_file() {
                self.add(root, entry.path(), what)?;
            }
        }
        Ok(())
    }

    /// Adds every file in the app directory that `pattern` matches, as a
    /// component's `files` glob matches them when it is served.
    fn add_glob(&mut self, root: &Path, pattern: &str, what: &str) -> anyhow::Result<()> {
        let matched = ferry_manifest::files::glob_matches(root, pattern.trim_start_matches("./"))
            .with_context(|| format!("{what}: the `files` glob `{pattern}`"))?;
        for (_, relative) in matched {
            self.add(root, &root.join(relative), what)?;
        }
        Ok(())
    }
}

fn bundle_path(relative: &Path) -> anyhow::Result<String> {
    let parts: Vec<&str> = relative
        .components()
        .map(|c| match c {
            std::path::Component::Normal(part) => part
                .to_str()
                .with_context(|| format!("{} is not UTF-8", relative.display())),
            _ => bail!("{} is not a plain relative path", relative.display()),
        })
        .collect::<anyhow::Result<_>>()?;
    Ok(parts.join("/"))
}
