//! Thumbnail pixels to bytes on disk: JPEG (libjpeg-turbo), PNG (`image`), WebP (libwebp), written atomically.

use std::io::Write;
use std::panic::{self, AssertUnwindSafe};
use std::path::Path;

use image::ImageEncoder;
use image::codecs::png::{CompressionType, FilterType, PngEncoder};
use mozjpeg::{ColorSpace, Compress};

use crate::decode::Pixels;
use crate::{OutputFormat, ThumbnailError};

/// Encodes `pixels`, which must already be without alpha for JPEG.
pub(crate) fn encode(pixels: &Pixels, format: OutputFormat, quality: u8) -> Result<Vec<u8>, ThumbnailError> {
    match format {
        OutputFormat::Jpeg => encode_jpeg(pixels, quality),
        OutputFormat::Png => encode_png(pixels),
        OutputFormat::Webp => encode_webp(pixels, quality),
    }
}

fn encode_error(format: &'static str, reason: impl ToString) -> ThumbnailError {
    ThumbnailError::Encode {
        format,
        reason: reason.to_string(),
    }
}

fn encode_jpeg(pixels: &Pixels, quality: u8) -> Result<Vec<u8>, ThumbnailError> {
    debug_assert!(!pixels.alpha, "flatten before encoding jpeg");
    // libjpeg errors unwind out of the C code, as when decoding.
    panic::catch_unwind(AssertUnwindSafe(|| {
        let mut jpeg = Compress::new(ColorSpace::JCS_RGB);
        jpeg.set_size(pixels.width as usize, pixels.height as usize);
        // mozjpeg's own defaults (trellis quantisation, scan optimisation)
        // cost several times the encode time for a few percent of bytes;
        // plain libjpeg-turbo settings plus optimal Huffman tables is the
        // better trade for thumbnails.
        jpeg.set_fastest_defaults();
        jpeg.set_optimize_coding(true);
        jpeg.set_quality(f32::from(quality));
        let mut started = jpeg.start_compress(Vec::new())?;
        started.write_scanlines(&pixels.data)?;
        started.finish()
    }))
    .map_err(|_| encode_error("jpeg", "libjpeg failed"))?
    .map_err(|e| encode_error("jpeg", e))
}

fn encode_png(pixels: &Pixels) -> Result<Vec<u8>, ThumbnailError> {
    let mut out = Vec::new();
    let color = if pixels.alpha {
        image::ExtendedColorType::Rgba8
    } else {
        image::ExtendedColorType::Rgb8
    };
    PngEncoder::new_with_quality(&mut out, CompressionType::Default, FilterType::Adaptive)
        .write_image(&pixels.data, pixels.width, pixels.height, color)
        .map_err(|e| encode_error("png", e))?;
    Ok(out)
}

fn encode_webp(pixels: &Pixels, quality: u8) -> Result<Vec<u8>, ThumbnailError> {
    let encoder = if pixels.alpha {
        webp::Encoder::from_rgba(&pixels.data, pixels.width, pixels.height)
    } else {
        webp::Encoder::from_rgb(&pixels.data, pixels.width, pixels.height)
    };
    let memory = encoder
        .encode_simple(false, f32::from(quality))
        .map_err(|e| encode_error("webp", format!("{e:?}").to_lowercase()))?;
    Ok(memory.to_vec())
}

/// Writes `bytes` to `path` through a temp file in the same directory and a
/// rename, so a reader sees either the old file or the whole new one, and a
/// retried job simply replaces what an earlier attempt wrote.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), ThumbnailError> {
    let dir = path
        .parent()
        .expect("output paths are built inside the output dir");
    let write_err = |source| ThumbnailError::Write {
        path: path.to_path_buf(),
        source,
    };
    let mut builder = tempfile::Builder::new();
    builder.prefix(".thumbnail-").suffix(".tmp");
    // tempfile creates 0600 files; thumbnails are meant to be served.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(std::fs::Permissions::from_mode(0o644));
    }
    let mut file = builder.tempfile_in(dir).map_err(write_err)?;
    file.write_all(bytes).map_err(write_err)?;
    file.persist(path).map_err(|e| write_err(e.error))?;
    Ok(())
}
