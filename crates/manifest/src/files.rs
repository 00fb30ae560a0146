//! Which files a component's `files` entries name on disk: the one
//! matcher for globs from the manifest (see [`glob_set`]) and the walk of
//! the app directory that follows no symlink out of it.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
pub use globset::GlobSet;
use globset::{GlobBuilder, GlobSetBuilder};

use crate::FileMount;

/// Where each file of a component's `files` lands in the guest: every
/// (host file, guest path), in entry order, with `exclude` applied — what
/// the sandbox stages and what `ferry registry push` publishes.
///
/// Entries, as Spin reads them: a string naming an existing file or
/// directory (relative to the app directory) is that file, or that whole
/// tree, at the same relative path; any other string is a glob over the app
/// directory; `{ source, destination }` places a directory's tree, or one
/// file, at a guest path. `exclude` globs are matched against paths
/// relative to the app directory; a file named directly (a path, or a
/// single-file placement) is placed even if an exclusion matches it, as in
/// Spin. Only regular files inside the app directory are ever placed: a
/// symlink is followed only when it leads to a file inside it.
pub fn placements(
    files: &[FileMount],
    exclude: &[String],
    app_dir: &Path,
) -> anyhow::Result<Vec<(PathBuf, String)>> {
    let root = app_dir
        .canonicalize()
        .with_context(|| format!("opening the app directory {}", app_dir.display()))?;
    let exclude = glob_set(exclude.iter().map(String::as_str))?;
    let mut placed = Vec::new();
    for entry in files {
        match entry {
            FileMount::Glob(pattern) => {
                let named = root.join(pattern);
                if named.is_file() {
                    // Named directly: placed even if an exclusion matches.
                    if let Some(file) = inside(&root, &named) {
                        placed.push((file, pattern.clone()));
                    }
                } else {
                    let found = if named.is_dir() {
                        tree(&root, &named)?
                    } else {
                        glob_matches(&root, pattern)?
                    };
                    for (file, relative) in found {
                        if !exclude.is_match(&relative) {
                            placed.push((file, relative.to_string_lossy().into_owned()));
                        }
                    }
                }
            }
            FileMount::Directory {
                source,
                destination,
            } => {
                let source = source.canonicalize()?;
                for (file, relative) in tree(&root, &source)? {
                    if exclude.is_match(&relative) {
                        continue;
                    }
                    let within = relative.strip_prefix(source.strip_prefix(&root)?)?;
                    let to = Path::new(destination).join(within);
                    placed.push((file, to.to_string_lossy().into_owned()));
                }
            }
            FileMount::File {
                source,
                destination,
            } => {
                let file = inside(&root, source).with_context(|| {
                    format!(
                        "{} is not a file inside the app directory",
                        source.display()
                    )
                })?;
                placed.push((file, destination.clone()));
            }
        }
    }
    Ok(placed)
}

/// The file `path` leads to, if it is a regular file inside `root`
/// (following symlinks).
pub fn inside(root: &Path, path: &Path) -> Option<PathBuf> {
    let real = path.canonicalize().ok()?;
    (real.starts_with(root) && real.is_file()).then_some(real)
}

/// Every file under `dir` (inside `root`), with its path relative to `root`.
pub fn tree(root: &Path, dir: &Path) -> anyhow::Result<Vec<(PathBuf, PathBuf)>> {
    walk(root, dir, None, |_| true)
}

/// Every file inside `root` (canonical) that `pattern` matches, with its
/// path relative to `root`; `ferry deploy` bundles what this finds. Only
/// the part of the tree the pattern can reach is walked: from
/// its literal leading directories, and no deeper than its segments unless
/// it has `**` (so `*.txt` never walks `node_modules`).
pub fn glob_matches(root: &Path, pattern: &str) -> anyhow::Result<Vec<(PathBuf, PathBuf)>> {
    let glob = glob_set([pattern])?;
    let segments: Vec<&str> = pattern.split('/').collect();
    let literal = segments
        .iter()
        .take_while(|s| !s.contains(['*', '?', '[', '{']))
        .count()
        // The last segment names files, not a directory to start from.
        .min(segments.len().saturating_sub(1));
    let base = segments[..literal]
        .iter()
        .fold(root.to_owned(), |dir, s| dir.join(s));
    let rest = &segments[literal..];
    let depth = (!rest.iter().any(|s| s.contains("**"))).then_some(rest.len());
    walk(root, &base, depth, |relative| glob.is_match(relative))
}

fn walk(
    root: &Path,
    dir: &Path,
    max_depth: Option<usize>,
    wanted: impl Fn(&Path) -> bool,
) -> anyhow::Result<Vec<(PathBuf, PathBuf)>> {
    let mut found = Vec::new();
    // The starting directory is followed wherever it leads, so it must lead
    // inside the app (a symlinked `assets -> /etc` must not publish /etc).
    let Ok(dir) = dir.canonicalize() else {
        return Ok(found);
    };
    if !dir.starts_with(root) {
        tracing::warn!(
            dir = ?dir,
            "skipping a `files` directory that leads outside the app directory"
        );
        return Ok(found);
    }
    if !dir.is_dir() {
        return Ok(found);
    }
    // In name order, so what is published (a bundle, an artifact) is the
    // same on every machine.
    let mut walker = walkdir::WalkDir::new(&dir)
        .follow_links(false)
        .min_depth(1)
        .sort_by_file_name();
    if let Some(depth) = max_depth {
        walker = walker.max_depth(depth);
    }
    for entry in walker {
        let entry = entry?;
        let Ok(relative) = entry.path().strip_prefix(root) else {
            continue;
        };
        if entry.file_type().is_dir() || !wanted(relative) {
            continue;
        }
        let file = if entry.path_is_symlink() {
            match inside(root, entry.path()) {
                Some(target) => target,
                None => {
                    tracing::warn!(
                        file = ?relative,
                        "skipping a symlink that does not lead to a file inside the app directory"
                    );
                    continue;
                }
            }
        } else if entry.file_type().is_file() {
            entry.path().to_owned()
        } else {
            continue;
        };
        found.push((file, relative.to_owned()));
    }
    Ok(found)
}

/// The globs `patterns` as every `files` and `exclude_files` entry is
/// matched, by the sandbox, `ferry deploy`'s bundle and `ferry up --watch`
/// alike: against paths relative to the app directory, `*` and `?` never
/// crossing a `/` (only `**` does), as in Spin.
pub fn glob_set<'a>(patterns: impl IntoIterator<Item = &'a str>) -> anyhow::Result<GlobSet> {
    let mut set = GlobSetBuilder::new();
    for pattern in patterns {
        set.add(GlobBuilder::new(pattern).literal_separator(true).build()?);
    }
    Ok(set.build()?)
}
