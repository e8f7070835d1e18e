//! Tests of the whole pipeline through [`thumbnail`], on images each test generates.

use std::io::Cursor;
use std::path::{Path, PathBuf};

use image::{DynamicImage, ImageBuffer, ImageFormat, Rgba, RgbaImage};
use mozjpeg::{ColorSpace, Compress, Marker};
use tempfile::TempDir;

use crate::decode::{DECODES, Pixels};
use crate::*;

// ---- helpers ----

/// A temp tree: `allowed/` (the only allowed dir, with `in/` and `out/`) and
/// `outside/`, a sibling the jobs must never reach.
struct Fixture {
    root: TempDir,
    dirs: AllowedDirs,
}

impl Fixture {
    fn new() -> Self {
        let root = tempfile::tempdir().unwrap();
        for dir in ["allowed/in", "outside"] {
            std::fs::create_dir_all(root.path().join(dir)).unwrap();
        }
        let dirs = AllowedDirs::new(&[root.path().join("allowed")]).unwrap();
        Self { root, dirs }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.root.path().join(rel)
    }

    /// Writes `bytes` to `allowed/in/<name>` and returns a request for it
    /// into `allowed/out`, JPEG at 256.
    fn input(&self, name: &str, bytes: &[u8]) -> ThumbnailRequest {
        let input = self.path("allowed/in").join(name);
        std::fs::write(&input, bytes).unwrap();
        ThumbnailRequest {
            input,
            output_dir: self.path("allowed/out"),
            sizes: vec![256],
            format: OutputFormat::Jpeg,
            quality: 80,
        }
    }

    fn run(&self, req: &ThumbnailRequest) -> Result<ThumbnailResult, ThumbnailError> {
        thumbnail(req, &self.dirs, &Limits::default())
    }
}

/// Decodes an output file at full size.
fn load(path: &Path) -> Pixels {
    let decoded = decode::decode(&std::fs::read(path).unwrap(), u32::MAX, &Limits::default()).unwrap();
    decoded.pixels
}

fn pixel(p: &Pixels, x: u32, y: u32) -> &[u8] {
    let ch = if p.alpha { 4 } else { 3 };
    let i = (y as usize * p.width as usize + x as usize) * ch;
    &p.data[i..i + ch]
}

fn close(actual: &[u8], expected: &[u8], tolerance: u8) -> bool {
    actual.len() == expected.len()
        && actual
            .iter()
            .zip(expected)
            .all(|(a, e)| a.abs_diff(*e) <= tolerance)
}

/// Photo-like RGB: gradients plus deterministic noise, so encoders have real work.
fn photo(width: u32, height: u32) -> Vec<u8> {
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let mut data = Vec::with_capacity((width * height * 3) as usize);
    for y in 0..height {
        for x in 0..width {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let noise = (state & 31) as i32 - 16;
            let base = [
                x * 255 / width,
                y * 255 / height,
                (x + y) * 127 / (width + height) + 64,
            ];
            data.extend(base.map(|c| (c as i32 + noise).clamp(0, 255) as u8));
        }
    }
    data
}

/// One solid colour per quadrant: red, green / blue, white; how the corners
/// move shows which way an image was turned.
fn quadrants(width: u32, height: u32) -> Vec<u8> {
    let mut data = Vec::with_capacity((width * height * 3) as usize);
    for y in 0..height {
        for x in 0..width {
            data.extend_from_slice(match (x < width / 2, y < height / 2) {
                (true, true) => &RED,
                (false, true) => &GREEN,
                (true, false) => &BLUE,
                (false, false) => &WHITE,
            });
        }
    }
    data
}

const RED: [u8; 3] = [255, 0, 0];
const GREEN: [u8; 3] = [0, 255, 0];
const BLUE: [u8; 3] = [0, 0, 255];
const WHITE: [u8; 3] = [255, 255, 255];

#[derive(Clone, Copy, PartialEq)]
enum JpegKind {
    Baseline,
    Progressive,
    Gray,
    Cmyk,
    Ycck,
}

/// Encodes a JPEG with libjpeg; `data` is RGB (3 bytes a pixel), gray (1)
/// or inverted CMYK (4), as `kind` needs.
fn jpeg(width: u32, height: u32, data: &[u8], kind: JpegKind, exif_orientation: Option<u16>) -> Vec<u8> {
    let input_space = match kind {
        JpegKind::Baseline | JpegKind::Progressive => ColorSpace::JCS_RGB,
        JpegKind::Gray => ColorSpace::JCS_GRAYSCALE,
        JpegKind::Cmyk | JpegKind::Ycck => ColorSpace::JCS_CMYK,
    };
    let mut c = Compress::new(input_space);
    c.set_size(width as usize, height as usize);
    c.set_fastest_defaults();
    c.set_quality(92.0);
    match kind {
        JpegKind::Progressive => c.set_progressive_mode(),
        JpegKind::Cmyk => c.set_color_space(ColorSpace::JCS_CMYK),
        JpegKind::Ycck => c.set_color_space(ColorSpace::JCS_YCCK),
        _ => {}
    }
    let mut started = c.start_compress(Vec::new()).unwrap();
    if let Some(o) = exif_orientation {
        started.write_marker(Marker::APP(1), &exif_app1(o));
    }
    started.write_scanlines(data).unwrap();
    started.finish().unwrap()
}

/// An EXIF APP1 payload holding only IFD0 with one Orientation (0x0112) entry,
/// big-endian, as cameras write it.
fn exif_app1(orientation: u16) -> Vec<u8> {
    let mut v = b"Exif\0\0MM\0\x2a".to_vec();
    v.extend(8u32.to_be_bytes()); // IFD0 right after the TIFF header
    v.extend(1u16.to_be_bytes()); // one entry
    v.extend(0x0112u16.to_be_bytes()); // Orientation
    v.extend(3u16.to_be_bytes()); // SHORT
    v.extend(1u32.to_be_bytes()); // count
    v.extend(orientation.to_be_bytes());
    v.extend([0, 0]); // value padded to 4 bytes
    v.extend(0u32.to_be_bytes()); // no next IFD
    v
}

fn encode_with_image(image: DynamicImage, format: ImageFormat) -> Vec<u8> {
    let mut out = Cursor::new(Vec::new());
    image.write_to(&mut out, format).unwrap();
    out.into_inner()
}

/// 40x40 RGBA: opaque red left half, fully transparent right half.
fn half_transparent() -> RgbaImage {
    ImageBuffer::from_fn(40, 40, |x, _| {
        if x < 20 {
            Rgba([255, 0, 0, 255])
        } else {
            Rgba([0, 0, 0, 0])
        }
    })
}

fn png_chunk(kind: &[u8; 4], body: &[u8]) -> Vec<u8> {
    let mut v = (body.len() as u32).to_be_bytes().to_vec();
    v.extend(kind);
    v.extend(body);
    let crc = crc32(&v[4..]);
    v.extend(crc.to_be_bytes());
    v
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn assert_permanent(result: Result<ThumbnailResult, ThumbnailError>) -> ThumbnailError {
    let err = result.expect_err("job should fail");
    assert!(err.is_permanent(), "{err} should be permanent");
    err
}

// ---- inputs ----

#[test]
fn jpeg_photo_becomes_fitted_thumbnail_with_documented_json() {
    let fx = Fixture::new();
    let bytes = jpeg(800, 600, &photo(800, 600), JpegKind::Baseline, None);
    assert!(
        bytes.windows(2).any(|w| w == [0xFF, 0xC0]),
        "baseline SOF0 expected"
    );
    let req = fx.input("photo.jpg", &bytes);

    let result = fx.run(&req).unwrap();

    let out = fx
        .path("allowed/out")
        .canonicalize()
        .unwrap()
        .join("photo_256.jpg");
    let json = serde_json::to_value(&result).unwrap();
    let expected = serde_json::json!({
        "input": {"width": 800, "height": 600, "format": "jpeg"},
        "outputs": [{"path": out, "width": 256, "height": 192, "bytes": std::fs::metadata(&out).unwrap().len()}],
    });
    assert_eq!(json, expected);
    let written = load(&out);
    assert_eq!((written.width, written.height), (256, 192));
}

#[test]
fn progressive_jpeg_is_decoded() {
    let fx = Fixture::new();
    let bytes = jpeg(640, 480, &quadrants(640, 480), JpegKind::Progressive, None);
    assert!(
        bytes.windows(2).any(|w| w == [0xFF, 0xC2]),
        "progressive SOF2 expected"
    );
    let result = fx.run(&fx.input("p.jpg", &bytes)).unwrap();
    let out = load(&result.outputs[0].path);
    assert_eq!((out.width, out.height), (256, 192));
    assert!(close(pixel(&out, 5, 5), &RED, 40));
    assert!(close(pixel(&out, 250, 187), &WHITE, 40));
}

#[test]
fn grayscale_jpeg_is_decoded() {
    let fx = Fixture::new();
    let gray: Vec<u8> = (0..300 * 200)
        .map(|i| if i % 300 < 150 { 30 } else { 220 })
        .collect();
    let result = fx
        .run(&fx.input("g.jpg", &jpeg(300, 200, &gray, JpegKind::Gray, None)))
        .unwrap();
    let out = load(&result.outputs[0].path);
    assert_eq!((out.width, out.height), (256, 171));
    assert!(close(pixel(&out, 10, 100), &[30, 30, 30], 12));
    assert!(close(pixel(&out, 245, 100), &[220, 220, 220], 12));
}

#[test]
fn cmyk_and_ycck_jpegs_come_out_in_the_right_colours() {
    // Adobe-inverted inks: red is C'=255 M'=0 Y'=0 K'=255, blue is C'=0 M'=0 Y'=255 K'=255.
    let cmyk: Vec<u8> = (0..64 * 64)
        .flat_map(|i| {
            if i % 64 < 32 {
                [255, 0, 0, 255]
            } else {
                [0, 0, 255, 255]
            }
        })
        .collect();
    for kind in [JpegKind::Cmyk, JpegKind::Ycck] {
        let fx = Fixture::new();
        let result = fx
            .run(&fx.input("c.jpg", &jpeg(64, 64, &cmyk, kind, None)))
            .unwrap();
        let out = load(&result.outputs[0].path);
        assert!(
            close(pixel(&out, 4, 32), &RED, 40),
            "left {:?}",
            pixel(&out, 4, 32)
        );
        assert!(
            close(pixel(&out, 60, 32), &BLUE, 40),
            "right {:?}",
            pixel(&out, 60, 32)
        );
    }
}

#[test]
fn png_variants_are_decoded() {
    let gray16 = DynamicImage::ImageLuma16(ImageBuffer::from_fn(300, 100, |_, _| image::Luma([40_000u16])));
    let rgb8 = DynamicImage::ImageRgb8(image::RgbImage::from_raw(300, 100, photo(300, 100)).unwrap());
    let rgba16 = DynamicImage::ImageRgba16(ImageBuffer::from_fn(300, 100, |_, _| {
        Rgba([65535u16, 0, 0, 65535])
    }));
    let gray8 = DynamicImage::ImageLuma8(ImageBuffer::from_fn(300, 100, |_, _| image::Luma([200u8])));
    for (name, image, expected) in [
        ("gray16", gray16, Some([156u8, 156, 156])),
        ("rgb8", rgb8, None),
        ("rgba16", rgba16, Some(RED)),
        ("gray8", gray8, Some([200, 200, 200])),
    ] {
        let fx = Fixture::new();
        let mut req = fx.input(
            &format!("{name}.png"),
            &encode_with_image(image, ImageFormat::Png),
        );
        req.format = OutputFormat::Png;
        let result = fx.run(&req).unwrap();
        assert_eq!(result.input.format, "png");
        let out = load(&result.outputs[0].path);
        assert_eq!((out.width, out.height), (256, 85), "{name}");
        if let Some(colour) = expected {
            assert!(
                close(&pixel(&out, 128, 40)[..3], &colour, 2),
                "{name}: {:?}",
                pixel(&out, 128, 40)
            );
        }
    }
}

#[test]
fn webp_input_lossy_and_lossless_with_alpha() {
    let fx = Fixture::new();
    let lossy = webp::Encoder::from_rgb(&quadrants(400, 300), 400, 300)
        .encode_simple(false, 90.0)
        .unwrap();
    let result = fx.run(&fx.input("lossy.webp", &lossy)).unwrap();
    assert_eq!(
        result.input,
        InputInfo {
            width: 400,
            height: 300,
            format: "webp".into()
        }
    );
    let out = load(&result.outputs[0].path);
    assert!(close(pixel(&out, 5, 5), &RED, 40));

    let rgba = half_transparent();
    let lossless = webp::Encoder::from_rgba(&rgba, 40, 40)
        .encode_simple(true, 100.0)
        .unwrap();
    let mut req = fx.input("alpha.webp", &lossless);
    req.format = OutputFormat::Png;
    let out = load(&fx.run(&req).unwrap().outputs[0].path);
    assert!(out.alpha);
    assert_eq!(pixel(&out, 35, 20)[3], 0);
}

#[test]
fn gif_animation_gives_its_first_frame() {
    let fx = Fixture::new();
    let frame = |colour: [u8; 3]| {
        let image = RgbaImage::from_pixel(50, 30, Rgba([colour[0], colour[1], colour[2], 255]));
        image::Frame::new(image)
    };
    let mut bytes = Vec::new();
    {
        let mut encoder = image::codecs::gif::GifEncoder::new(&mut bytes);
        encoder.encode_frames([frame(RED), frame(BLUE)]).unwrap();
    }
    let result = fx.run(&fx.input("anim.gif", &bytes)).unwrap();
    assert_eq!(
        result.input,
        InputInfo {
            width: 50,
            height: 30,
            format: "gif".into()
        }
    );
    let out = load(&result.outputs[0].path);
    assert_eq!((out.width, out.height), (50, 30));
    assert!(close(pixel(&out, 25, 15), &RED, 30), "{:?}", pixel(&out, 25, 15));
}

#[test]
fn tiff_input_is_decoded() {
    let fx = Fixture::new();
    let image = DynamicImage::ImageRgb8(image::RgbImage::from_raw(400, 300, quadrants(400, 300)).unwrap());
    let result = fx
        .run(&fx.input("scan.tif", &encode_with_image(image, ImageFormat::Tiff)))
        .unwrap();
    assert_eq!(
        result.input,
        InputInfo {
            width: 400,
            height: 300,
            format: "tiff".into()
        }
    );
    let out = load(&result.outputs[0].path);
    assert!(close(pixel(&out, 250, 5), &GREEN, 40));
}

#[test]
fn format_comes_from_the_bytes_not_the_name() {
    let fx = Fixture::new();
    let image = DynamicImage::ImageRgb8(image::RgbImage::from_raw(100, 80, photo(100, 80)).unwrap());
    let result = fx
        .run(&fx.input("actually-a-png.jpg", &encode_with_image(image, ImageFormat::Png)))
        .unwrap();
    assert_eq!(result.input.format, "png");
}

// ---- geometry ----

#[test]
fn all_eight_exif_orientations_are_applied() {
    // Corners (top-left, top-right, bottom-left, bottom-right) as displayed,
    // for a stored image whose quadrants are red, green / blue, white.
    let expected = [
        (1, false, [RED, GREEN, BLUE, WHITE]),
        (2, false, [GREEN, RED, WHITE, BLUE]),
        (3, false, [WHITE, BLUE, GREEN, RED]),
        (4, false, [BLUE, WHITE, RED, GREEN]),
        (5, true, [RED, BLUE, GREEN, WHITE]),
        (6, true, [BLUE, RED, WHITE, GREEN]),
        (7, true, [WHITE, GREEN, BLUE, RED]),
        (8, true, [GREEN, WHITE, RED, BLUE]),
    ];
    let fx = Fixture::new();
    let stored = quadrants(128, 64);
    for (orientation, portrait, corners) in expected {
        let bytes = jpeg(128, 64, &stored, JpegKind::Baseline, Some(orientation));
        let mut req = fx.input(&format!("o{orientation}.jpg"), &bytes);
        req.sizes = vec![64];
        let result = fx.run(&req).unwrap();
        let out = load(&result.outputs[0].path);
        let (w, h) = if portrait { (32, 64) } else { (64, 32) };
        assert_eq!((out.width, out.height), (w, h), "orientation {orientation}");
        assert_eq!(
            (result.input.width, result.input.height),
            if portrait { (64, 128) } else { (128, 64) }
        );
        let at = [(3, 3), (w - 4, 3), (3, h - 4), (w - 4, h - 4)];
        for ((x, y), colour) in at.into_iter().zip(corners) {
            assert!(
                close(pixel(&out, x, y), &colour, 60),
                "orientation {orientation} at ({x},{y}): {:?} != {colour:?}",
                pixel(&out, x, y)
            );
        }
    }
}

#[test]
fn several_sizes_decode_once_keep_aspect_and_never_enlarge() {
    let fx = Fixture::new();
    let mut req = fx.input(
        "wide.jpg",
        &jpeg(1000, 400, &photo(1000, 400), JpegKind::Baseline, None),
    );
    req.sizes = vec![100, 500, 2000, 100];
    DECODES.with(|n| n.set(0));

    let result = fx.run(&req).unwrap();

    assert_eq!(DECODES.with(|n| n.get()), 1);
    let sizes: Vec<_> = result.outputs.iter().map(|o| (o.width, o.height)).collect();
    assert_eq!(
        sizes,
        [(100, 40), (500, 200), (1000, 400)],
        "the duplicate 100 is written once"
    );
    let names: Vec<_> = result
        .outputs
        .iter()
        .map(|o| o.path.file_name().unwrap().to_owned())
        .collect();
    assert_eq!(names, ["wide_100.jpg", "wide_500.jpg", "wide_2000.jpg"]);
    for o in &result.outputs {
        let written = load(&o.path);
        assert_eq!((written.width, written.height), (o.width, o.height));
        assert_eq!(std::fs::metadata(&o.path).unwrap().len(), o.bytes);
    }
}

// ---- outputs ----

#[test]
fn alpha_is_kept_for_png_and_webp_and_flattened_on_white_for_jpeg() {
    let fx = Fixture::new();
    let png = encode_with_image(DynamicImage::ImageRgba8(half_transparent()), ImageFormat::Png);
    for (format, alpha) in [
        (OutputFormat::Png, true),
        (OutputFormat::Webp, true),
        (OutputFormat::Jpeg, false),
    ] {
        let mut req = fx.input("logo.png", &png);
        req.format = format;
        let result = fx.run(&req).unwrap();
        let out = load(&result.outputs[0].path);
        assert_eq!(out.alpha, alpha, "{format:?}");
        assert!(
            close(&pixel(&out, 5, 20)[..3], &RED, 30),
            "{format:?} opaque side"
        );
        let clear = pixel(&out, 35, 20);
        if alpha {
            assert_eq!(clear[3], 0, "{format:?} transparent side");
        } else {
            assert!(
                close(clear, &WHITE, 3),
                "jpeg transparent side is white, got {clear:?}"
            );
        }
    }
}

#[test]
fn outputs_are_named_by_format_and_quality_changes_jpeg_size() {
    let fx = Fixture::new();
    let bytes = jpeg(600, 400, &photo(600, 400), JpegKind::Baseline, None);
    for (format, ext) in [
        (OutputFormat::Jpeg, "jpg"),
        (OutputFormat::Png, "png"),
        (OutputFormat::Webp, "webp"),
    ] {
        let mut req = fx.input("shot.jpeg", &bytes);
        req.format = format;
        let result = fx.run(&req).unwrap();
        assert_eq!(
            result.outputs[0].path.file_name().unwrap(),
            format!("shot_256.{ext}").as_str()
        );
        let written = std::fs::read(&result.outputs[0].path).unwrap();
        assert_eq!(
            decode::SourceFormat::sniff(&written).unwrap().name(),
            if ext == "jpg" { "jpeg" } else { ext }
        );
    }
    let sized = |quality| {
        let mut req = fx.input("shot.jpeg", &bytes);
        req.quality = quality;
        fx.run(&req).unwrap().outputs[0].bytes
    };
    assert!(sized(95) > sized(30) * 3 / 2);
}

#[test]
fn output_dir_is_created_and_a_retry_overwrites_without_leftovers() {
    let fx = Fixture::new();
    let mut req = fx.input(
        "a.jpg",
        &jpeg(300, 300, &photo(300, 300), JpegKind::Baseline, None),
    );
    req.output_dir = fx.path("allowed/out/2024/07");
    let first = fx.run(&req).unwrap();
    req.quality = 20;
    let second = fx.run(&req).unwrap();

    assert_eq!(first.outputs[0].path, second.outputs[0].path);
    assert_eq!(
        std::fs::metadata(&second.outputs[0].path).unwrap().len(),
        second.outputs[0].bytes
    );
    let entries: Vec<_> = std::fs::read_dir(fx.path("allowed/out/2024/07"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(entries, ["a_256.jpg"], "no temp files left behind");
}

// ---- hostile input ----

#[test]
fn truncated_and_corrupt_data_are_refused() {
    let fx = Fixture::new();
    let jpg = jpeg(400, 300, &photo(400, 300), JpegKind::Baseline, None);
    let png = encode_with_image(
        DynamicImage::ImageRgb8(image::RgbImage::from_raw(400, 300, photo(400, 300)).unwrap()),
        ImageFormat::Png,
    );
    let webp = webp::Encoder::from_rgb(&photo(400, 300), 400, 300)
        .encode_simple(false, 80.0)
        .unwrap();
    let mut garbled = jpg[..20].to_vec();
    garbled.extend((0..2000u32).map(|i| (i * 7919 % 251) as u8));
    for (name, bytes, fragment) in [
        (
            "cut.jpg",
            &jpg[..jpg.len() / 2],
            "corrupt jpeg data: file is truncated",
        ),
        ("cut.png", &png[..png.len() / 2], "corrupt png data"),
        ("cut.webp", &webp[..webp.len() / 2], "corrupt webp data"),
        ("garbled.jpg", &garbled[..], "corrupt jpeg data"),
    ] {
        let err = assert_permanent(fx.run(&fx.input(name, bytes)));
        assert!(err.to_string().contains(fragment), "{name}: {err}");
    }
}

#[test]
fn empty_and_non_image_files_are_refused() {
    let fx = Fixture::new();
    let err = assert_permanent(fx.run(&fx.input("empty.jpg", b"")));
    assert_eq!(err.to_string(), "input file is empty");
    let err = assert_permanent(fx.run(&fx.input("notes.jpg", b"just some text, not pixels\n")));
    assert_eq!(
        err.to_string(),
        "input is not a supported image (jpeg, png, webp, gif, tiff)"
    );
}

#[test]
fn a_directory_as_input_is_refused() {
    let fx = Fixture::new();
    let mut req = fx.input("x.jpg", b"x");
    req.input = fx.path("allowed/in");
    let err = assert_permanent(fx.run(&req));
    assert!(matches!(err, ThumbnailError::NotAFile(_)), "{err}");
}

#[test]
fn decompression_bombs_are_refused_from_the_header() {
    let fx = Fixture::new();
    let mut ihdr = 60_000u32.to_be_bytes().to_vec();
    ihdr.extend(60_000u32.to_be_bytes());
    ihdr.extend([8, 6, 0, 0, 0]); // 8-bit RGBA: 14.4 GB if decoded
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    png.extend(png_chunk(b"IHDR", &ihdr));
    png.extend(png_chunk(
        b"IDAT",
        &[0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01],
    ));
    png.extend(png_chunk(b"IEND", &[]));

    // A real small JPEG whose frame header is patched to claim 60000x60000.
    let mut jpg = jpeg(16, 16, &photo(16, 16), JpegKind::Baseline, None);
    let sof = jpg.windows(2).position(|w| w == [0xFF, 0xC0]).unwrap();
    jpg[sof + 5..sof + 9].copy_from_slice(&[0xEA, 0x60, 0xEA, 0x60]);

    for (name, bytes) in [("bomb.png", png), ("bomb.jpg", jpg)] {
        let err = assert_permanent(fx.run(&fx.input(name, &bytes)));
        assert!(
            matches!(
                err,
                ThumbnailError::TooManyPixels {
                    width: 60_000,
                    height: 60_000,
                    ..
                }
            ),
            "{name}: {err}"
        );
        assert_eq!(
            err.to_string(),
            "image is 60000x60000 (3600 megapixels), over the 100 megapixel limit"
        );
    }
}

#[test]
fn byte_and_memory_limits_are_enforced() {
    let fx = Fixture::new();
    let req = fx.input(
        "p.jpg",
        &jpeg(400, 300, &photo(400, 300), JpegKind::Baseline, None),
    );
    let size = std::fs::metadata(&req.input).unwrap().len();

    let small_input = Limits {
        max_input_bytes: 1000,
        ..Limits::default()
    };
    let err = thumbnail(&req, &fx.dirs, &small_input).unwrap_err();
    assert!(err.is_permanent());
    assert_eq!(
        err.to_string(),
        format!("input is {size} bytes, over the 1000 byte limit")
    );

    let small_alloc = Limits {
        max_alloc_bytes: 100_000,
        ..Limits::default()
    };
    let mut big = req.clone();
    big.sizes = vec![400]; // no DCT scaling: 400x300x3 = 360000 bytes
    let err = thumbnail(&big, &fx.dirs, &small_alloc).unwrap_err();
    assert!(err.is_permanent());
    assert!(
        matches!(
            err,
            ThumbnailError::TooMuchMemory {
                needed: 360_000,
                limit: 100_000
            }
        ),
        "{err}"
    );
    // Decoded at 1/8 scale (50x38) the same photo fits: DCT scaling is what keeps memory down.
    let mut small = req.clone();
    small.sizes = vec![50];
    assert!(thumbnail(&small, &fx.dirs, &small_alloc).is_ok());

    let few_pixels = Limits {
        max_pixels: 100_000,
        ..Limits::default()
    };
    let err = thumbnail(&req, &fx.dirs, &few_pixels).unwrap_err();
    assert_eq!(
        err.to_string(),
        "image is 400x300 (0.12 megapixels), over the 0.1 megapixel limit"
    );
}

#[test]
fn missing_input_is_a_clear_permanent_error() {
    let fx = Fixture::new();
    let mut req = fx.input("there.jpg", b"x");
    req.input = fx.path("allowed/in/not-there.jpg");
    let err = assert_permanent(fx.run(&req));
    assert_eq!(
        err.to_string(),
        format!("input file {} does not exist", req.input.display())
    );
}

#[test]
fn paths_outside_the_allowed_dirs_are_refused() {
    let fx = Fixture::new();
    let photo_jpg = jpeg(64, 64, &photo(64, 64), JpegKind::Baseline, None);
    std::fs::write(fx.path("outside/secret.jpg"), &photo_jpg).unwrap();
    std::fs::create_dir_all(fx.path("allowed-evil")).unwrap();
    std::fs::write(fx.path("allowed-evil/p.jpg"), &photo_jpg).unwrap();
    std::os::unix::fs::symlink(fx.path("outside/secret.jpg"), fx.path("allowed/in/link.jpg")).unwrap();
    std::os::unix::fs::symlink(fx.path("outside"), fx.path("allowed/escape")).unwrap();
    let good = fx.input("ok.jpg", &photo_jpg);

    let inputs = [
        fx.path("allowed/in/link.jpg"),
        fx.path("allowed/../outside/secret.jpg"),
        fx.path("allowed/escape/secret.jpg"),
        fx.path("allowed-evil/p.jpg"),
    ];
    for input in inputs {
        let req = ThumbnailRequest {
            input: input.clone(),
            ..good.clone()
        };
        let err = assert_permanent(fx.run(&req));
        assert_eq!(
            err.to_string(),
            format!("path {} is outside the allowed directories", input.display())
        );
    }

    let outputs = [
        fx.path("allowed/escape/new"),
        fx.path("allowed/../outside/new"),
        fx.path("allowed/missing/../../outside/new"),
        fx.path("outside"),
    ];
    for output_dir in outputs {
        let req = ThumbnailRequest {
            output_dir: output_dir.clone(),
            ..good.clone()
        };
        let err = assert_permanent(fx.run(&req));
        assert!(
            matches!(err, ThumbnailError::OutsideAllowedDirs(_)),
            "{}: {err}",
            output_dir.display()
        );
    }
    assert!(
        !fx.path("outside/new").exists(),
        "a refused output dir is not created"
    );
    assert!(!fx.path("allowed/missing").exists());
    let leaked: Vec<_> = std::fs::read_dir(fx.path("outside")).unwrap().collect();
    assert_eq!(leaked.len(), 1, "nothing written outside");

    // The same request with paths inside works, through a symlink that stays inside.
    std::os::unix::fs::symlink(fx.path("allowed/in"), fx.path("allowed/in-link")).unwrap();
    let req = ThumbnailRequest {
        input: fx.path("allowed/in-link/ok.jpg"),
        ..good
    };
    assert_eq!(fx.run(&req).unwrap().outputs.len(), 1);
}

#[test]
fn allowed_dirs_must_exist() {
    let err = AllowedDirs::new(&[PathBuf::from("/definitely/not/here")]).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("allowed directory /definitely/not/here cannot be used"),
        "{err}"
    );
}

// ---- the request and the error contract ----

#[test]
fn request_json_has_documented_defaults_and_tolerates_unknown_fields() {
    let req: ThumbnailRequest =
        serde_json::from_str(r#"{"input": "/a/b.jpg", "output_dir": "/a/out", "added_later": true}"#)
            .unwrap();
    assert_eq!(req.sizes, [256]);
    assert_eq!(req.format, OutputFormat::Jpeg);
    assert_eq!(req.quality, 80);
    let req: ThumbnailRequest = serde_json::from_str(
        r#"{"input": "/a", "output_dir": "/b", "format": "webp", "sizes": [64, 128], "quality": 60}"#,
    )
    .unwrap();
    assert_eq!(
        (req.format, req.sizes, req.quality),
        (OutputFormat::Webp, vec![64, 128], 60)
    );
    assert!(
        serde_json::from_str::<ThumbnailRequest>(r#"{"input": "/a", "output_dir": "/b", "format": "JPEG"}"#)
            .is_err()
    );
}

#[test]
fn impossible_requests_are_refused_before_touching_files() {
    let fx = Fixture::new();
    let good = fx.input("p.jpg", &jpeg(64, 64, &photo(64, 64), JpegKind::Baseline, None));
    for (req, message) in [
        (
            ThumbnailRequest {
                sizes: vec![],
                ..good.clone()
            },
            "invalid request: no sizes requested",
        ),
        (
            ThumbnailRequest {
                sizes: vec![128, 0],
                ..good.clone()
            },
            "invalid request: size 0 is not a size",
        ),
        (
            ThumbnailRequest {
                quality: 0,
                ..good.clone()
            },
            "invalid request: quality 0 is outside 1-100",
        ),
        (
            ThumbnailRequest {
                quality: 101,
                ..good.clone()
            },
            "invalid request: quality 101 is outside 1-100",
        ),
    ] {
        let err = assert_permanent(fx.run(&req));
        assert_eq!(err.to_string(), message);
    }
    assert!(!fx.path("allowed/out").exists());
}

#[test]
fn io_errors_are_retryable_unless_the_path_itself_is_wrong() {
    let write = |kind| ThumbnailError::Write {
        path: "/o/x.jpg".into(),
        source: std::io::Error::from(kind),
    };
    assert!(!write(std::io::ErrorKind::StorageFull).is_permanent());
    assert!(!write(std::io::ErrorKind::Interrupted).is_permanent());
    assert!(write(std::io::ErrorKind::PermissionDenied).is_permanent());
    assert!(write(std::io::ErrorKind::ReadOnlyFilesystem).is_permanent());
}

#[test]
fn pixel_limit_message_names_the_limit() {
    let err = ThumbnailError::TooManyPixels {
        width: 20_000,
        height: 20_000,
        limit: 100_000_000,
    };
    assert_eq!(
        err.to_string(),
        "image is 20000x20000 (400 megapixels), over the 100 megapixel limit"
    );
}
