//! The jobfleet image pipeline: one source image in, thumbnails of several sizes out.
//!
//! Pure and synchronous (no tokio, no Redis): the worker's `thumbnail` task
//! deserializes a [`ThumbnailRequest`] from the job payload, calls
//! [`thumbnail`] on a blocking thread and returns the [`ThumbnailResult`] as the
//! job's JSON result, or the [`ThumbnailError`], whose
//! [`is_permanent`](ThumbnailError::is_permanent) decides retry versus dead.
//!
//! # Layout
//!
//! - `request`: the wire types — [`ThumbnailRequest`], [`OutputFormat`],
//!   [`ThumbnailResult`] — and [`Limits`].
//! - `paths`: [`AllowedDirs`], the worker's `--allow-dir` folders; every input
//!   and output path is resolved and checked against them.
//! - `decode`: bytes to pixels. Format from the magic bytes; canvas size read
//!   from the header and checked before any pixel buffer exists. JPEG via
//!   libjpeg-turbo with DCT scaling (decodes at 1/8…1 of full size, whichever
//!   still covers the largest thumbnail), WebP via libwebp, PNG/GIF/TIFF via
//!   the `image` crate.
//! - `resize`: target size, Lanczos3 resampling (SIMD, premultiplied alpha),
//!   EXIF orientation, flattening onto white.
//! - `encode`: JPEG (libjpeg-turbo), PNG, WebP (libwebp), and the
//!   temp-file-plus-rename write.
//!
//! The source is decoded once per job, at the scale the largest size needs;
//! every size is resampled from that.
//!
//! # Example
//!
//! ```no_run
//! use jobfleet_thumbnail::{thumbnail, AllowedDirs, Limits, OutputFormat, ThumbnailRequest};
//!
//! let dirs = AllowedDirs::new(&["/srv/photos".into()])?;
//! let request = ThumbnailRequest {
//!     input: "/srv/photos/in/cat.jpg".into(),
//!     output_dir: "/srv/photos/thumbs".into(),
//!     sizes: vec![256, 1024],
//!     format: OutputFormat::Webp,
//!     quality: 80,
//! };
//! let result = thumbnail(&request, &dirs, &Limits::default())?;
//! assert_eq!(result.outputs[0].path, std::path::Path::new("/srv/photos/thumbs/cat_256.webp"));
//! # Ok::<(), jobfleet_thumbnail::ThumbnailError>(())
//! ```

mod decode;
mod encode;
mod error;
mod paths;
mod request;
mod resize;

#[cfg(test)]
mod tests;

use std::fs::File;
use std::io::Read;
use std::path::Path;

pub use error::ThumbnailError;
pub use paths::AllowedDirs;
pub use request::{InputInfo, Limits, OutputFormat, OutputInfo, ThumbnailRequest, ThumbnailResult};

/// Runs one `thumbnail` job: checks paths, decodes once, writes one file per size.
///
/// Outputs are `<input stem>_<size>.<jpg|png|webp>` in `output_dir`, which is
/// created if missing. A size larger than the source gives a copy at the
/// source's size, not an enlargement.
pub fn thumbnail(
    req: &ThumbnailRequest,
    dirs: &AllowedDirs,
    limits: &Limits,
) -> Result<ThumbnailResult, ThumbnailError> {
    req.validate()?;
    let input = dirs.check_input(&req.input)?;
    let output_dir = dirs.check_output_dir(&req.output_dir)?;
    let bytes = read_input(&input, limits)?;
    let sizes = unique(&req.sizes);
    let largest = sizes.iter().copied().max().expect("validate refuses no sizes");
    let decoded = decode::decode(&bytes, largest, limits)?;
    drop(bytes);

    // The requested name, not the symlink target's: that is the name the
    // producer knows the file by.
    let stem = req
        .input
        .file_stem()
        .unwrap_or(input.as_os_str())
        .to_string_lossy();
    let mut resizer = fast_image_resize::Resizer::new();
    let mut outputs = Vec::with_capacity(sizes.len());
    for size in sizes {
        let (width, height) = resize::fit(decoded.width, decoded.height, size);
        let mut pixels = resize::resize(&mut resizer, &decoded.pixels, width, height);
        pixels = resize::orient(pixels, decoded.orientation);
        if req.format == OutputFormat::Jpeg {
            pixels = resize::flatten_on_white(pixels);
        }
        let encoded = encode::encode(&pixels, req.format, req.quality)?;
        let path = output_dir.join(format!("{stem}_{size}.{}", req.format.extension()));
        encode::write_atomically(&path, &encoded)?;
        outputs.push(OutputInfo {
            path,
            width: pixels.width,
            height: pixels.height,
            bytes: encoded.len() as u64,
        });
    }

    let (width, height) = if swaps_sides(decoded.orientation) {
        (decoded.height, decoded.width)
    } else {
        (decoded.width, decoded.height)
    };
    Ok(ThumbnailResult {
        input: InputInfo {
            width,
            height,
            format: decoded.format.name().to_string(),
        },
        outputs,
    })
}

fn swaps_sides(orientation: image::metadata::Orientation) -> bool {
    use image::metadata::Orientation::*;
    matches!(orientation, Rotate90 | Rotate270 | Rotate90FlipH | Rotate270FlipH)
}

/// The sizes in request order, each once: `[256, 256]` would otherwise write
/// the same file twice.
fn unique(sizes: &[u32]) -> Vec<u32> {
    let mut seen = Vec::with_capacity(sizes.len());
    for &size in sizes {
        if !seen.contains(&size) {
            seen.push(size);
        }
    }
    seen
}

/// Reads the whole input, refusing before reading anything that is not a
/// regular file, is empty, or is over the byte limit.
fn read_input(path: &Path, limits: &Limits) -> Result<Vec<u8>, ThumbnailError> {
    let read_err = |source| ThumbnailError::Read {
        path: path.to_path_buf(),
        source,
    };
    // Checked before opening: opening a FIFO for reading would block the job.
    if !std::fs::metadata(path).map_err(read_err)?.is_file() {
        return Err(ThumbnailError::NotAFile(path.to_path_buf()));
    }
    let file = File::open(path).map_err(read_err)?;
    let meta = file.metadata().map_err(read_err)?;
    let too_large = |size| ThumbnailError::InputTooLarge {
        size,
        limit: limits.max_input_bytes,
    };
    if meta.len() > limits.max_input_bytes {
        return Err(too_large(meta.len()));
    }
    if meta.len() == 0 {
        return Err(ThumbnailError::Empty);
    }
    // The file may grow between `metadata` and the read; `take` keeps the
    // limit true regardless.
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(limits.max_input_bytes + 1)
        .read_to_end(&mut bytes)
        .map_err(read_err)?;
    if bytes.len() as u64 > limits.max_input_bytes {
        return Err(too_large(bytes.len() as u64));
    }
    Ok(bytes)
}
