//! Bytes to pixels: format sniffing, header checks against `Limits`, and one decoder per format.
//!
//! JPEG goes through libjpeg-turbo (the mozjpeg fork) because its DCT scaling
//! decodes a 12 MP photo straight to thumbnail scale, which is most of the
//! speed and nearly all of the memory saving. WebP goes through libwebp, which
//! is markedly faster than the pure-Rust decoder. PNG, GIF and TIFF use the
//! `image` crate's pure-Rust decoders, which are fast enough already.

use std::io::{self, BufRead, Cursor, Read};
use std::panic::{self, AssertUnwindSafe};

use image::metadata::Orientation;
use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader};
use mozjpeg::{ColorSpace, Decompress, Marker};

use crate::{Limits, ThumbnailError};

/// The container formats accepted as input, told apart by their magic bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SourceFormat {
    Jpeg,
    Png,
    Webp,
    Gif,
    Tiff,
}

impl SourceFormat {
    pub(crate) fn sniff(bytes: &[u8]) -> Option<Self> {
        if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
            Some(Self::Jpeg)
        } else if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
            Some(Self::Png)
        } else if bytes.len() >= 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
            Some(Self::Webp)
        } else if bytes.starts_with(b"GIF87a") || bytes.starts_with(b"GIF89a") {
            Some(Self::Gif)
        } else if bytes.starts_with(b"II*\0") || bytes.starts_with(b"MM\0*") {
            Some(Self::Tiff)
        } else {
            None
        }
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Jpeg => "jpeg",
            Self::Png => "png",
            Self::Webp => "webp",
            Self::Gif => "gif",
            Self::Tiff => "tiff",
        }
    }
}

/// 8-bit interleaved pixels, RGB or RGBA; everything is converted to one of
/// these two so resizing and encoding have only two cases.
#[derive(Debug, Clone)]
pub(crate) struct Pixels {
    pub width: u32,
    pub height: u32,
    pub alpha: bool,
    pub data: Vec<u8>,
}

/// A decoded source, possibly already shrunk by the decoder.
#[derive(Debug)]
pub(crate) struct Decoded {
    pub format: SourceFormat,
    /// The stored canvas size from the header, before any DCT scaling and
    /// before orientation; thumbnail sizes are computed from this.
    pub width: u32,
    pub height: u32,
    /// At least as large as the largest requested thumbnail, where the
    /// source allows.
    pub pixels: Pixels,
    pub orientation: Orientation,
}

#[cfg(test)]
thread_local! {
    /// Counts decodes on this thread, so a test can prove several sizes share one.
    pub(crate) static DECODES: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Decodes `bytes`, refusing from the header alone anything over `limits`.
///
/// `largest` is the longest side of the largest thumbnail wanted; decoders
/// that can shrink while decoding stop there.
pub(crate) fn decode(bytes: &[u8], largest: u32, limits: &Limits) -> Result<Decoded, ThumbnailError> {
    #[cfg(test)]
    DECODES.with(|n| n.set(n.get() + 1));

    if bytes.is_empty() {
        return Err(ThumbnailError::Empty);
    }
    match SourceFormat::sniff(bytes).ok_or(ThumbnailError::NotAnImage)? {
        SourceFormat::Jpeg => decode_jpeg(bytes, largest, limits),
        SourceFormat::Webp => decode_webp(bytes, limits),
        SourceFormat::Png => decode_with_image(bytes, SourceFormat::Png, ImageFormat::Png, limits),
        SourceFormat::Gif => decode_with_image(bytes, SourceFormat::Gif, ImageFormat::Gif, limits),
        SourceFormat::Tiff => decode_with_image(bytes, SourceFormat::Tiff, ImageFormat::Tiff, limits),
    }
}

fn check_pixels(width: u32, height: u32, limits: &Limits) -> Result<(), ThumbnailError> {
    if u64::from(width) * u64::from(height) > limits.max_pixels {
        return Err(ThumbnailError::TooManyPixels {
            width,
            height,
            limit: limits.max_pixels,
        });
    }
    Ok(())
}

fn check_alloc(width: u64, height: u64, bytes_per_pixel: u64, limits: &Limits) -> Result<(), ThumbnailError> {
    let needed = width * height * bytes_per_pixel;
    if needed > limits.max_alloc_bytes {
        return Err(ThumbnailError::TooMuchMemory {
            needed,
            limit: limits.max_alloc_bytes,
        });
    }
    Ok(())
}

fn corrupt(format: SourceFormat, reason: impl ToString) -> ThumbnailError {
    ThumbnailError::Corrupt {
        format: format.name(),
        reason: reason.to_string(),
    }
}

// ---- JPEG ----

fn decode_jpeg(bytes: &[u8], largest: u32, limits: &Limits) -> Result<Decoded, ThumbnailError> {
    // libjpeg reports fatal errors by unwinding out of the C code (the
    // `mozjpeg` crate's error manager); turn that back into a value here.
    panic::catch_unwind(AssertUnwindSafe(|| decode_jpeg_unwinding(bytes, largest, limits))).unwrap_or_else(
        |payload| {
            let message = payload
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| payload.downcast_ref::<&str>().copied())
                .unwrap_or("libjpeg failed");
            let message = message.strip_prefix("libjpeg fatal error: ").unwrap_or(message);
            Err(corrupt(SourceFormat::Jpeg, message.to_lowercase()))
        },
    )
}

fn decode_jpeg_unwinding(bytes: &[u8], largest: u32, limits: &Limits) -> Result<Decoded, ThumbnailError> {
    let io_err = |e: io::Error| corrupt(SourceFormat::Jpeg, e);
    let mut source = EofWatch {
        rest: bytes,
        hit_eof: false,
    };
    // Reading the header reads up to the first scan, nothing is allocated
    // for pixels yet, so a bomb is refused here at no cost.
    let mut jpeg = Decompress::with_markers(&[Marker::APP(1)])
        .from_reader(&mut source)
        .map_err(io_err)?;
    let (width, height) = (dim(jpeg.width())?, dim(jpeg.height())?);
    check_pixels(width, height, limits)?;
    let orientation = jpeg
        .markers()
        .filter(|m| m.marker == Marker::APP(1))
        .find_map(|m| {
            m.data
                .strip_prefix(b"Exif\0\0")
                .and_then(Orientation::from_exif_chunk)
        })
        .unwrap_or(Orientation::NoTransforms);

    jpeg.scale(dct_scale(width.max(height), largest));
    let cmyk = matches!(jpeg.color_space(), ColorSpace::JCS_CMYK | ColorSpace::JCS_YCCK);
    let mut started = if cmyk {
        // libjpeg-turbo cannot convert CMYK to RGB itself.
        jpeg.to_colorspace(ColorSpace::JCS_CMYK).map_err(io_err)?
    } else {
        // Also covers grayscale: libjpeg-turbo expands it to RGB.
        jpeg.rgb().map_err(io_err)?
    };
    let (out_w, out_h) = (started.width(), started.height());
    check_alloc(out_w as u64, out_h as u64, if cmyk { 4 } else { 3 }, limits)?;
    let data: Vec<u8> = started.read_scanlines().map_err(io_err)?;
    started.finish().map_err(io_err)?;
    // libjpeg pads a truncated file with gray and only warns; a thumbnail
    // with a gray bottom half is worse than a clear refusal.
    if source.hit_eof {
        return Err(corrupt(SourceFormat::Jpeg, "file is truncated"));
    }
    let data = if cmyk { inverted_cmyk_to_rgb(&data) } else { data };
    Ok(Decoded {
        format: SourceFormat::Jpeg,
        width,
        height,
        pixels: Pixels {
            width: dim(out_w)?,
            height: dim(out_h)?,
            alpha: false,
            data,
        },
        orientation,
    })
}

fn dim(n: usize) -> Result<u32, ThumbnailError> {
    u32::try_from(n).map_err(|_| corrupt(SourceFormat::Jpeg, format!("dimension {n} out of range")))
}

/// The smallest libjpeg scale (`n/8`) that still leaves the longest side at
/// least `target`, so the resampler always shrinks and never enlarges.
fn dct_scale(longest: u32, target: u32) -> u8 {
    (1..8u8)
        .find(|&n| (u64::from(longest) * u64::from(n)).div_ceil(8) >= u64::from(target))
        .unwrap_or(8)
}

/// CMYK JPEGs in the wild come from Adobe software, which stores the inks
/// inverted (libjpeg hands them over as stored), so `R = C' * K' / 255`.
fn inverted_cmyk_to_rgb(cmyk: &[u8]) -> Vec<u8> {
    let mut rgb = Vec::with_capacity(cmyk.len() / 4 * 3);
    for px in cmyk.chunks_exact(4) {
        let k = u16::from(px[3]);
        for &ink in &px[..3] {
            rgb.push(((u16::from(ink) * k + 127) / 255) as u8);
        }
    }
    rgb
}

/// A byte source that remembers whether the decoder asked past the end,
/// which is how a truncated JPEG shows itself.
struct EofWatch<'a> {
    rest: &'a [u8],
    hit_eof: bool,
}

impl Read for EofWatch<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.fill_buf()?.read(buf)?;
        self.consume(n);
        Ok(n)
    }
}

impl BufRead for EofWatch<'_> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        if self.rest.is_empty() {
            self.hit_eof = true;
        }
        Ok(self.rest)
    }

    fn consume(&mut self, amt: usize) {
        self.rest = &self.rest[amt.min(self.rest.len())..];
    }
}

// ---- WebP ----

fn decode_webp(bytes: &[u8], limits: &Limits) -> Result<Decoded, ThumbnailError> {
    let features = webp::BitstreamFeatures::new(bytes)
        .ok_or_else(|| corrupt(SourceFormat::Webp, "unreadable header"))?;
    let (width, height) = (features.width(), features.height());
    check_pixels(width, height, limits)?;
    if features.has_animation() {
        // libwebp's animation API decodes every frame up front: unbounded memory.
        return Err(corrupt(SourceFormat::Webp, "animated webp is not supported"));
    }
    let alpha = features.has_alpha();
    check_alloc(width.into(), height.into(), if alpha { 4 } else { 3 }, limits)?;
    let image = webp::Decoder::new(bytes)
        .decode()
        .ok_or_else(|| corrupt(SourceFormat::Webp, "cannot decode image data"))?;
    Ok(Decoded {
        format: SourceFormat::Webp,
        width,
        height,
        pixels: Pixels {
            width: image.width(),
            height: image.height(),
            alpha: image.is_alpha(),
            data: image.to_vec(),
        },
        orientation: webp_orientation(bytes),
    })
}

/// Reads the orientation from a WebP's `EXIF` chunk, if it has one.
fn webp_orientation(bytes: &[u8]) -> Orientation {
    let mut rest = bytes.get(12..).unwrap_or_default();
    while rest.len() >= 8 {
        let (fourcc, len) = (
            &rest[..4],
            u32::from_le_bytes([rest[4], rest[5], rest[6], rest[7]]) as usize,
        );
        let Some(body) = rest.get(8..8 + len) else { break };
        if fourcc == b"EXIF" {
            let tiff = body.strip_prefix(b"Exif\0\0").unwrap_or(body);
            return Orientation::from_exif_chunk(tiff).unwrap_or(Orientation::NoTransforms);
        }
        rest = rest.get(8 + len + len % 2..).unwrap_or_default();
    }
    Orientation::NoTransforms
}

// ---- PNG, GIF, TIFF ----

fn decode_with_image(
    bytes: &[u8],
    format: SourceFormat,
    image_format: ImageFormat,
    limits: &Limits,
) -> Result<Decoded, ThumbnailError> {
    let mut reader = ImageReader::with_format(Cursor::new(bytes), image_format);
    let mut image_limits = image::Limits::default();
    // A backstop for what the header check below cannot see (e.g. TIFF strips).
    image_limits.max_alloc = Some(limits.max_alloc_bytes);
    reader.limits(image_limits);
    let mut decoder = reader
        .into_decoder()
        .map_err(|e| image_error(format, e, limits))?;
    let (width, height) = decoder.dimensions();
    check_pixels(width, height, limits)?;
    check_alloc(
        width.into(),
        height.into(),
        decoder.color_type().bytes_per_pixel().into(),
        limits,
    )?;
    let orientation = decoder.orientation().unwrap_or(Orientation::NoTransforms);
    // For an animated GIF this is the first frame.
    let image = DynamicImage::from_decoder(decoder).map_err(|e| image_error(format, e, limits))?;
    let alpha = image.color().has_alpha();
    let data = if alpha {
        image.into_rgba8().into_raw()
    } else {
        image.into_rgb8().into_raw()
    };
    Ok(Decoded {
        format,
        width,
        height,
        pixels: Pixels {
            width,
            height,
            alpha,
            data,
        },
        orientation,
    })
}

fn image_error(format: SourceFormat, e: image::ImageError, limits: &Limits) -> ThumbnailError {
    match e {
        image::ImageError::Limits(_) => ThumbnailError::TooMuchMemory {
            // The decoder does not say how much it wanted; at least one byte more.
            needed: limits.max_alloc_bytes + 1,
            limit: limits.max_alloc_bytes,
        },
        image::ImageError::IoError(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
            corrupt(format, "file is truncated")
        }
        other => corrupt(format, other.to_string().to_lowercase()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dct_scale_keeps_at_least_the_target() {
        assert_eq!(dct_scale(4032, 256), 1); // 504 >= 256
        assert_eq!(dct_scale(4032, 600), 2); // 1008 >= 600, 504 is not
        assert_eq!(dct_scale(4032, 1024), 3); // 1512
        assert_eq!(dct_scale(4032, 4032), 8);
        assert_eq!(dct_scale(200, 256), 8); // never enlarge by decoding
    }

    #[test]
    fn sniffing_ignores_everything_but_magic_bytes() {
        assert_eq!(SourceFormat::sniff(b"\xFF\xD8\xFF\xE0"), Some(SourceFormat::Jpeg));
        assert_eq!(
            SourceFormat::sniff(b"RIFF\0\0\0\0WEBPVP8 "),
            Some(SourceFormat::Webp)
        );
        assert_eq!(SourceFormat::sniff(b"RIFF\0\0\0\0WAVEfmt "), None);
        assert_eq!(SourceFormat::sniff(b"<html>"), None);
    }
}
