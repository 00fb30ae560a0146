//! `ferry up --watch`: reloading the app in place when the files it was
//! loaded from change.
//!
//! What is watched is what the loaded app was made from ([`Watched::of`]):
//! the manifest, the runtime config (the named one, or where the default one
//! would be), the `.env` beside the manifest, each component's local Wasm
//! file and each `files` entry. Directories holding them are watched rather
//! than the files themselves, so that a file replaced by a rename (as editors
//! and build tools write) is seen. Changes are gathered until the files have
//! been quiet for [`QUIET`], then the app is loaded again off the serving
//! threads and swapped in; a version that fails to load leaves the running
//! one serving, and the error is printed.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use ferry_manifest::{App, FileMount, Source};
use notify::{RecursiveMode, Watcher as _};

/// How long the files must be quiet before a reload: a build writes many
/// files, and an editor a temporary file and a rename.
const QUIET: Duration = Duration::from_millis(300);

/// The paths a loaded app depends on.
#[derive(Debug, Clone)]
pub struct Watched {
    /// Files whose change means a reload.
    files: BTreeSet<PathBuf>,
    /// Directories any change under which means a reload.
    trees: BTreeSet<PathBuf>,
    /// `files` globs, matched against paths relative to `root` (the app
    /// directory, then watched as a whole).
    globs: Option<ferry_manifest::files::GlobSet>,
    root: PathBuf,
    /// Ferry's own output under the app (`-L`): never a change to the app.
    ignored: Option<PathBuf>,
}

impl Watched {
    /// The same, with changes under `dir` (Ferry's own `-L` log files)
    /// never counted, whatever `files` pattern they match.
    pub fn ignoring(mut self, dir: Option<&Path>) -> Self {
        self.ignored = dir.map(absolute);
        self
    }

    pub fn of(app: &App, runtime_config: Option<&Path>) -> Self {
        let mut files = BTreeSet::new();
        let mut trees = BTreeSet::new();
        let mut globs = Vec::new();
        files.insert(absolute(&app.manifest_path));
        files.insert(absolute(
            &runtime_config.map_or_else(|| app.dir.join("runtime-config.toml"), Path::to_owned),
        ));
        files.insert(absolute(&app.dir.join(".env")));
        for component in &app.components {
            if let Source::File(path) = &component.source {
                files.insert(absolute(path));
            }
            // A dependency's or middleware's Wasm is part of the component.
            for path in component.dependency_files() {
                files.insert(absolute(path));
            }
            for mount in &component.files {
                let source = match mount {
                    FileMount::File { source, .. } | FileMount::Directory { source, .. } => {
                        absolute(source)
                    }
                    FileMount::Glob(pattern) => {
                        let pattern = pattern.trim_start_matches("./");
                        let plain = absolute(&app.dir.join(pattern));
                        if !plain.exists() {
                            globs.push(pattern);
                            continue;
                        }
                        plain
                    }
                };
                if source.is_dir() {
                    trees.insert(source);
                } else {
                    files.insert(source);
                }
            }
        }
        Self {
            files,
            trees,
            // The manifest checked every pattern when it was read.
            globs: (!globs.is_empty())
                .then(|| ferry_manifest::files::glob_set(globs).ok())
                .flatten(),
            root: absolute(&app.dir),
            ignored: None,
        }
    }

    /// Whether a change at `path` is a change to the app.
    fn concerns(&self, path: &Path) -> bool {
        if self
            .ignored
            .as_ref()
            .is_some_and(|ignored| path.starts_with(ignored))
        {
            return false;
        }
        self.files.contains(path)
            || self.trees.iter().any(|tree| path.starts_with(tree))
            || self.globs.as_ref().is_some_and(|globs| {
                path.strip_prefix(&self.root)
                    .is_ok_and(|relative| globs.is_match(relative))
            })
    }

    /// The directories to watch, and how.
    fn watches(&self) -> BTreeSet<(PathBuf, bool)> {
        let mut watches: BTreeSet<(PathBuf, bool)> = self
            .files
            .iter()
            .filter_map(|f| f.parent())
            .map(|dir| (dir.to_owned(), false))
            .collect();
        watches.extend(self.trees.iter().map(|tree| (tree.clone(), true)));
        if self.globs.is_some() {
            watches.insert((self.root.clone(), true));
        }
        watches
    }
}

/// `path` made absolute against the current directory (which `ferry up`
/// never changes), so that it compares equal to the paths events carry.
fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_owned())
}

/// Watches `watched` on a thread of its own and calls `reload` with the
/// changed paths after each quiet change; `reload` returns what to watch
/// from then on.
pub fn spawn(
    watched: Watched,
    mut reload: impl FnMut(&[PathBuf]) -> anyhow::Result<Watched> + Send + 'static,
) -> anyhow::Result<()> {
    let (events, changes) = mpsc::channel();
    let mut watcher = notify::recommended_watcher(move |event| {
        let _ = events.send(event);
    })
    .context("starting the file watcher")?;
    let mut current = BTreeSet::new();
    register(&mut watcher, &mut current, &watched);
    std::thread::Builder::new()
        .name("ferry-watch".into())
        .spawn(move || {
            let mut watched = watched;
            while let Some(changed) = next_change(&changes, &watched) {
                let shown: Vec<String> = changed.iter().map(|p| p.display().to_string()).collect();
                println!("Changed: {}; reloading", shown.join(", "));
                let started = Instant::now();
                match reload(&changed) {
                    Ok(now) => {
                        println!("Reloaded in {:.1?}", started.elapsed());
                        register(&mut watcher, &mut current, &now);
                        watched = now;
                    }
                    Err(e) => {
                        eprintln!("error: the new version did not load: {e:#}");
                        println!("Reload failed; the previous version is still serving");
                    }
                }
            }
        })
        .context("starting the file-watching thread")?;
    Ok(())
}

/// Brings the watcher's directories in line with `watched`. A directory
/// that does not exist (yet) cannot be watched; its files are picked up
/// once a reload finds them.
fn register(
    watcher: &mut notify::RecommendedWatcher,
    current: &mut BTreeSet<(PathBuf, bool)>,
    watched: &Watched,
) {
    let wanted = watched.watches();
    for (dir, _) in current.difference(&wanted) {
        let _ = watcher.unwatch(dir);
    }
    for (dir, recursive) in wanted.difference(current) {
        let mode = if *recursive {
            RecursiveMode::Recursive
        } else {
            RecursiveMode::NonRecursive
        };
        if let Err(e) = watcher.watch(dir, mode) {
            tracing::debug!(dir = ?dir, "not watching: {e}");
        }
    }
    *current = wanted;
}

/// Waits for a change that concerns the app, then for the files to be quiet;
/// the paths that changed, or `None` once the watcher is gone.
fn next_change(
    changes: &mpsc::Receiver<notify::Result<notify::Event>>,
    watched: &Watched,
) -> Option<Vec<PathBuf>> {
    let mut changed = BTreeSet::new();
    loop {
        let event = if changed.is_empty() {
            changes.recv().ok()?
        } else {
            match changes.recv_timeout(QUIET) {
                Ok(event) => event,
                Err(mpsc::RecvTimeoutError::Timeout) => return Some(changed.into_iter().collect()),
                Err(mpsc::RecvTimeoutError::Disconnected) => return None,
            }
        };
        let Ok(event) = event else { continue };
        if matches!(event.kind, notify::EventKind::Access(_)) {
            continue;
        }
        changed.extend(event.paths.into_iter().filter(|p| watched.concerns(p)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_what_the_app_was_made_from_concerns_it() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("app.wasm"), b"\0asm").unwrap();
        std::fs::create_dir(dir.path().join("static")).unwrap();
        let manifest = dir.path().join("spin.toml");
        std::fs::write(
            &manifest,
            "spin_manifest_version = 2\n[application]\nname = \"a\"\n\
             [[trigger.http]]\nroute = \"/...\"\ncomponent = \"a\"\n\
             dependencies.middleware = [{ path = \"mw/auth.wasm\" }]\n\
             [component.a]\nsource = \"app.wasm\"\n\
             files = [{ source = \"static\", destination = \"/\" }, \"docs/**/*.md\"]\n\
             dependencies = { \"ns:dep\" = { path = \"deps/dep.wasm\" } }\n",
        )
        .unwrap();
        let app = ferry_manifest::load_app(&manifest).unwrap();
        let watched = Watched::of(&app, None);
        let root = absolute(dir.path());
        for concerned in [
            "spin.toml",
            "app.wasm",
            ".env",
            "runtime-config.toml",
            "static/a/b.css",
            "docs/a/b.md",
            "deps/dep.wasm",
            "mw/auth.wasm",
        ] {
            assert!(watched.concerns(&root.join(concerned)), "{concerned}");
        }
        for unconcerned in [
            "target/debug/x",
            "notes.txt",
            ".ferry/key_value.db",
            "docs/a.txt",
        ] {
            assert!(!watched.concerns(&root.join(unconcerned)), "{unconcerned}");
        }
        assert!(watched.watches().contains(&(root.join("static"), true)));
        assert!(watched.watches().contains(&(root.clone(), false)));
    }
}
