//! Which files a component's `files` entries name on disk: the one
//! matcher for globs from the manifest (see [`glob_set`]) and the walk of
//! the app directory that follows no symlink out of it.

use std::path::{Path, PathBuf};

pub use globset::GlobSet;
use globset::{GlobBuilder, GlobSetBuilder};

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
    let mut walker = walkdir::WalkDir::new(&dir).follow_links(false).min_depth(1);
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
