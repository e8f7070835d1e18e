//! `ThumbnailError`: every way a thumbnail job can fail, and whether a retry can help.

use std::io;
use std::path::PathBuf;

/// Why a thumbnail job failed.
///
/// Only the variants a caller might act on; the message carries the detail.
/// [`ThumbnailError::is_permanent`] tells the worker whether to retry or send
/// the job straight to dead.
#[derive(Debug, thiserror::Error)]
pub enum ThumbnailError {
    /// The payload asks for something impossible (no sizes, size 0, quality 0).
    #[error("invalid request: {0}")]
    InvalidRequest(String),

    /// An `--allow-dir` entry does not exist or cannot be resolved.
    #[error("allowed directory {path} cannot be used: {source}")]
    AllowedDir { path: PathBuf, source: io::Error },

    /// The input path does not exist (after following symlinks).
    #[error("input file {0} does not exist")]
    NotFound(PathBuf),

    /// A path resolves, after symlinks and `..`, outside every allowed directory.
    #[error("path {0} is outside the allowed directories")]
    OutsideAllowedDirs(PathBuf),

    #[error("input {0} is not a regular file")]
    NotAFile(PathBuf),

    #[error("input file is empty")]
    Empty,

    #[error("input is {size} bytes, over the {limit} byte limit")]
    InputTooLarge { size: u64, limit: u64 },

    #[error(
        "image is {width}x{height} ({} megapixels), over the {} megapixel limit",
        megapixels(u64::from(*width) * u64::from(*height)),
        megapixels(*limit)
    )]
    TooManyPixels { width: u32, height: u32, limit: u64 },

    #[error("decoding needs {} MiB, over the {} MiB memory limit", mib(*needed), mib(*limit))]
    TooMuchMemory { needed: u64, limit: u64 },

    #[error("input is not a supported image (jpeg, png, webp, gif, tiff)")]
    NotAnImage,

    /// The bytes claim to be an image of `format` but cannot be decoded:
    /// truncated, corrupt, or a variant the decoder does not support.
    #[error("corrupt {format} data: {reason}")]
    Corrupt { format: &'static str, reason: String },

    #[error("cannot encode {format} output: {reason}")]
    Encode { format: &'static str, reason: String },

    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: io::Error },

    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
}

impl ThumbnailError {
    /// Whether retrying the same job can never succeed.
    ///
    /// Everything about the input or the request is permanent: the same bytes
    /// fail the same way. I/O errors are transient (a full disk can be freed, a
    /// network mount can come back) unless they say the path itself is wrong.
    pub fn is_permanent(&self) -> bool {
        match self {
            Self::Read { source, .. } | Self::Write { source, .. } => is_permanent_io(source),
            _ => true,
        }
    }
}

fn is_permanent_io(e: &io::Error) -> bool {
    use io::ErrorKind::*;
    matches!(
        e.kind(),
        NotFound
            | PermissionDenied
            | NotADirectory
            | IsADirectory
            | ReadOnlyFilesystem
            | InvalidInput
            | InvalidFilename
            | InvalidData
    )
}

/// Whole megapixels for photo-sized numbers, two decimals below 10 so small
/// limits (in tests, say) do not print as "0".
fn megapixels(pixels: u64) -> String {
    let mp = pixels as f64 / 1e6;
    if mp >= 10.0 {
        format!("{mp:.0}")
    } else {
        let s = format!("{mp:.2}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

fn mib(bytes: u64) -> u64 {
    bytes.div_ceil(1024 * 1024)
}
