//! The `thumbnail` task's payload and result: a wire format, so serde and defaults live here.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::ThumbnailError;

/// The `thumbnail` task payload.
///
/// Unknown fields are accepted on purpose: producers in other languages may
/// send fields a newer worker understands, and an older worker should still run
/// the job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThumbnailRequest {
    pub input: PathBuf,
    pub output_dir: PathBuf,
    /// Longest side of each thumbnail, in pixels.
    #[serde(default = "default_sizes")]
    pub sizes: Vec<u32>,
    #[serde(default)]
    pub format: OutputFormat,
    /// Encoder quality, 1–100; used by JPEG and WebP, ignored by PNG.
    #[serde(default = "default_quality")]
    pub quality: u8,
}

fn default_sizes() -> Vec<u32> {
    vec![256]
}

fn default_quality() -> u8 {
    80
}

impl ThumbnailRequest {
    pub(crate) fn validate(&self) -> Result<(), ThumbnailError> {
        if self.sizes.is_empty() {
            return Err(ThumbnailError::InvalidRequest("no sizes requested".into()));
        }
        if self.sizes.contains(&0) {
            return Err(ThumbnailError::InvalidRequest("size 0 is not a size".into()));
        }
        if !(1..=100).contains(&self.quality) {
            return Err(ThumbnailError::InvalidRequest(format!(
                "quality {} is outside 1-100",
                self.quality
            )));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OutputFormat {
    #[default]
    Jpeg,
    Png,
    Webp,
}

impl OutputFormat {
    pub fn extension(self) -> &'static str {
        match self {
            Self::Jpeg => "jpg",
            Self::Png => "png",
            Self::Webp => "webp",
        }
    }
}

/// Resource ceilings for one job, checked before the expensive step they guard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest canvas (width × height) accepted, read from the header before decoding.
    pub max_pixels: u64,
    /// Largest single decode buffer accepted.
    pub max_alloc_bytes: u64,
    /// Largest input file accepted, checked before reading it.
    pub max_input_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_pixels: 100_000_000,
            max_alloc_bytes: 256 * 1024 * 1024,
            max_input_bytes: 200 * 1024 * 1024,
        }
    }
}

/// What a finished job returns; its JSON is the job's result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ThumbnailResult {
    pub input: InputInfo,
    pub outputs: Vec<OutputInfo>,
}

/// The source image as displayed, i.e. after EXIF orientation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InputInfo {
    pub width: u32,
    pub height: u32,
    /// Detected from the bytes: `jpeg`, `png`, `webp`, `gif` or `tiff`.
    pub format: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OutputInfo {
    pub path: PathBuf,
    pub width: u32,
    pub height: u32,
    pub bytes: u64,
}
