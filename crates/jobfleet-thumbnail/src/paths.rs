//! `AllowedDirs`: the only folders a job may read from or write to.

use std::io;
use std::path::{Path, PathBuf};

use crate::ThumbnailError;

/// The worker's `--allow-dir` list, canonicalized once.
///
/// Every check resolves the candidate path with the file system (symlinks and
/// `..` included) and compares whole components, so `/data/in-evil` is not
/// inside `/data/in`, and a symlink inside an allowed folder pointing out of it
/// is refused.
#[derive(Debug, Clone)]
pub struct AllowedDirs(Vec<PathBuf>);

impl AllowedDirs {
    /// Fails if any directory does not exist: a typo in `--allow-dir` should
    /// stop the worker at start, not fail every job later.
    pub fn new(dirs: &[PathBuf]) -> Result<Self, ThumbnailError> {
        let mut canonical = Vec::with_capacity(dirs.len());
        for dir in dirs {
            let resolved = dir.canonicalize().map_err(|source| ThumbnailError::AllowedDir {
                path: dir.clone(),
                source,
            })?;
            if !resolved.is_dir() {
                return Err(ThumbnailError::AllowedDir {
                    path: dir.clone(),
                    source: io::Error::from(io::ErrorKind::NotADirectory),
                });
            }
            canonical.push(resolved);
        }
        Ok(Self(canonical))
    }

    /// True when no directory is allowed (every path is refused).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The canonical path of an existing input file inside an allowed directory.
    pub fn check_input(&self, path: &Path) -> Result<PathBuf, ThumbnailError> {
        let resolved = path.canonicalize().map_err(|source| match source.kind() {
            io::ErrorKind::NotFound => ThumbnailError::NotFound(path.to_path_buf()),
            _ => ThumbnailError::Read {
                path: path.to_path_buf(),
                source,
            },
        })?;
        self.require_inside(path, &resolved)?;
        Ok(resolved)
    }

    /// The canonical path of an output directory inside an allowed directory,
    /// created (with its parents) if missing.
    ///
    /// The part that already exists is resolved and checked before anything is
    /// created, so a refused path leaves no folder behind; the result is
    /// resolved and checked again after creation, in case a symlink appeared
    /// meanwhile.
    pub fn check_output_dir(&self, path: &Path) -> Result<PathBuf, ThumbnailError> {
        let (existing, missing) = split_existing(path)?;
        let resolved = existing.canonicalize().map_err(|source| ThumbnailError::Read {
            path: existing.clone(),
            source,
        })?;
        self.require_inside(path, &resolved)?;
        if missing.is_empty() {
            if !resolved.is_dir() {
                return Err(ThumbnailError::Write {
                    path: path.to_path_buf(),
                    source: io::Error::from(io::ErrorKind::NotADirectory),
                });
            }
            return Ok(resolved);
        }
        let target: PathBuf = missing.iter().fold(resolved, |p, c| p.join(c));
        std::fs::create_dir_all(&target).map_err(|source| ThumbnailError::Write {
            path: target.clone(),
            source,
        })?;
        let created = target.canonicalize().map_err(|source| ThumbnailError::Write {
            path: target.clone(),
            source,
        })?;
        self.require_inside(path, &created)?;
        Ok(created)
    }

    fn require_inside(&self, requested: &Path, resolved: &Path) -> Result<(), ThumbnailError> {
        if self.0.iter().any(|dir| resolved.starts_with(dir)) {
            Ok(())
        } else {
            Err(ThumbnailError::OutsideAllowedDirs(requested.to_path_buf()))
        }
    }
}

/// Splits `path` into its longest existing prefix and the plain names after it.
///
fn split_existing(path: &Path) -> Result<(PathBuf, Vec<PathBuf>), ThumbnailError> {
    let mut existing = path.to_path_buf();
    let mut missing = Vec::new();
    while !existing.as_os_str().is_empty() && std::fs::symlink_metadata(&existing).is_err() {
        let Some(name) = existing.file_name() else {
            break;
        };
        missing.push(PathBuf::from(name));
        existing.pop();
    }
    if existing.as_os_str().is_empty() {
        existing = PathBuf::from(".");
    }
    missing.reverse();
    // The walk stops at a trailing `..` (it has no file name); if that part
    // does not exist either, the path cannot be resolved, so it cannot be
    // shown to be inside an allowed directory.
    if std::fs::symlink_metadata(&existing).is_err() {
        return Err(ThumbnailError::OutsideAllowedDirs(path.to_path_buf()));
    }
    Ok((existing, missing))
}
