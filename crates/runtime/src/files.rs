//! A component's `files`, laid out as the guest will see them.
//!
//! Spin copies every `files` entry of a component into one directory and
//! mounts it at the guest's `/`, so entries merge into one tree and
//! `exclude_files` applies to all of them. Ferry does the same, with one
//! shortcut: a component whose only entry is one directory placement and
//! which excludes nothing gets that directory mounted in place, uncopied (the
//! usual static-site case, where copying could be large). A directory
//! mounted in place is opened once, at load, and held: every request mounts
//! that open directory, so a path swapped for a symlink afterwards leads
//! nowhere new.
//!
//! Entries, as Spin reads them:
//! - a string naming an existing file or directory (relative to the app
//!   directory) is that file, or that whole tree, at the same relative path;
//! - any other string is a glob over the app directory;
//! - `{ source, destination }` places a directory's tree, or one file, at a
//!   guest path.
//!
//! `exclude_files` globs are matched against paths relative to the app
//! directory; a file named directly (a path, or a single-file placement) is
//! copied even if an exclusion matches it, as in Spin. Only regular files
//! inside the app directory are ever copied: a symlink is followed only when
//! it leads to a file inside it, so no entry can publish a file the app does
//! not contain.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use ferry_manifest::{Component, FileMount};

use crate::EngineOptions;
use ferry_manifest::files::placements;

/// What to mount for a component's `files`.
pub(crate) struct Layout {
    /// (host directory, guest path), mounted read-only.
    pub mounts: Vec<(PathBuf, String)>,
    /// The copy that `mounts` points into, removed on drop.
    pub staged: Option<tempfile::TempDir>,
    /// The directories mounted in place, held open: each request's mount
    /// opens the directory held here, never the path again.
    pub pinned: Vec<std::fs::File>,
}

/// Mounts `mounts` in place, each directory opened now and held: on Linux
/// the guest's mount is `/proc/self/fd/<fd>`, which is that directory
/// whatever is later renamed or put at its path (a symlink swapped in after
/// load reaches nothing); elsewhere the path as it resolves now.
fn in_place(mounts: Vec<(PathBuf, String)>) -> anyhow::Result<Layout> {
    let mut layout = Layout {
        mounts: Vec::new(),
        staged: None,
        pinned: Vec::new(),
    };
    for (dir, guest) in mounts {
        let real = dir
            .canonicalize()
            .with_context(|| format!("opening {}", dir.display()))?;
        let held =
            std::fs::File::open(&real).with_context(|| format!("opening {}", real.display()))?;
        if !held.metadata()?.is_dir() {
            anyhow::bail!("{} is not a directory", real.display());
        }
        #[cfg(target_os = "linux")]
        let real = {
            use std::os::fd::AsRawFd as _;
            let by_fd = PathBuf::from(format!("/proc/self/fd/{}", held.as_raw_fd()));
            if by_fd.is_dir() { by_fd } else { real }
        };
        layout.pinned.push(held);
        layout.mounts.push((real, guest));
    }
    Ok(layout)
}

pub(crate) fn prepare(
    component: &Component,
    app_dir: &Path,
    options: &EngineOptions,
) -> anyhow::Result<Layout> {
    let (files, exclude) = (&component.files[..], &component.exclude_files[..]);
    let placements: Option<Vec<(PathBuf, String)>> = files
        .iter()
        .map(|entry| match entry {
            FileMount::Directory {
                source,
                destination,
            } => Some((source.clone(), destination.clone())),
            _ => None,
        })
        .collect();
    if options.direct_mounts
        && exclude.is_empty()
        && let Some(mounts) = placements
    {
        return in_place(mounts);
    }
    match files {
        [] => in_place(Vec::new()),
        [
            FileMount::Directory {
                source,
                destination,
            },
        ] if exclude.is_empty() => in_place(vec![(source.clone(), destination.clone())]),
        _ => {
            let staged = stage(files, exclude, app_dir, options.staging_dir.as_deref())?;
            Ok(Layout {
                mounts: vec![(staged.path().to_owned(), "/".to_owned())],
                staged: Some(staged),
                pinned: Vec::new(),
            })
        }
    }
}

/// Copies every entry into a fresh directory laid out as the guest's `/`.
fn stage(
    files: &[FileMount],
    exclude: &[String],
    app_dir: &Path,
    staging_dir: Option<&Path>,
) -> anyhow::Result<tempfile::TempDir> {
    let placed = placements(files, exclude, app_dir)?;
    let mut builder = tempfile::Builder::new();
    builder.prefix("ferry-files-");
    let staged = match staging_dir {
        Some(dir) => std::fs::create_dir_all(dir)
            .and_then(|()| builder.tempdir_in(dir))
            .with_context(|| format!("making a directory for `files` in {}", dir.display()))?,
        None => builder.tempdir()?,
    };
    for (from, to) in placed {
        let dest = staged.path().join(to.trim_start_matches('/'));
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::copy(&from, &dest).with_context(|| format!("copying {}", from.display()))?;
    }
    Ok(staged)
}
