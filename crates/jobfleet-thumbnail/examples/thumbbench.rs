//! Benchmark driver for `scripts/bench-thumbnail.sh`: generates a photo-like corpus and times the pipeline on N threads.
//!
//! ```text
//! thumbbench gen DIR                 writes DIR/{jpeg12,jpeg24,png1080,webp1080}/ (deterministic)
//! thumbbench run SRC_DIR OUT_DIR [--threads N] [--size 256] [--format jpeg] [--quality 80]
//!                                    prints one line: files=.. threads=.. seconds=..
//! ```
//!
//! `run` mirrors how a worker uses the crate: N threads, each running whole
//! jobs (`thumbnail()` on one file) one after another.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use jobfleet_thumbnail::{AllowedDirs, Limits, OutputFormat, ThumbnailRequest, thumbnail};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("gen") if args.len() == 2 => generate_corpus(Path::new(&args[1])),
        Some("run") if args.len() >= 3 => run(&args[1..]),
        _ => {
            eprintln!(
                "usage: thumbbench gen DIR | thumbbench run SRC_DIR OUT_DIR [--threads N] [--size S] [--format F] [--quality Q]"
            );
            std::process::exit(2);
        }
    }
}

// ---- corpus ----

/// (subdirectory, count, width, height, encoder)
const SETS: [(&str, usize, u32, u32, Codec); 4] = [
    ("jpeg12", 16, 4032, 3024, Codec::Jpeg),
    ("jpeg24", 8, 6000, 4000, Codec::Jpeg),
    ("png1080", 16, 1920, 1080, Codec::Png),
    ("webp1080", 16, 1920, 1080, Codec::Webp),
];

#[derive(Clone, Copy)]
enum Codec {
    Jpeg,
    Png,
    Webp,
}

fn generate_corpus(dir: &Path) {
    for (set, count, width, height, codec) in SETS {
        let set_dir = dir.join(set);
        std::fs::create_dir_all(&set_dir).unwrap();
        for i in 0..count {
            let (ext, bytes) = match codec {
                Codec::Jpeg => ("jpg", encode_jpeg(&photo(width, height, i as u64), width, height)),
                Codec::Png => ("png", encode_png(&photo(width, height, i as u64), width, height)),
                Codec::Webp => (
                    "webp",
                    encode_webp(&photo(width, height, i as u64), width, height),
                ),
            };
            std::fs::write(set_dir.join(format!("{set}_{i:02}.{ext}")), bytes).unwrap();
        }
        eprintln!("generated {count} x {width}x{height} in {}", set_dir.display());
    }
}

/// Photo-like RGB, deterministic per `seed`: smooth gradients and large soft
/// shapes (what DCT coding compresses well) plus sensor-like noise (what it
/// does not), so file sizes and decode costs resemble camera output (~3 MB
/// for 12 MP at quality 90) rather than flat colour.
fn photo(width: u32, height: u32, seed: u64) -> Vec<u8> {
    let mut state = 0x9E37_79B9_7F4A_7C15u64 ^ seed.wrapping_mul(0x2545_F491_4F6C_DD1D);
    let phase = (seed % 7) as f32;
    let mut data = Vec::with_capacity(width as usize * height as usize * 3);
    for y in 0..height {
        let fy = y as f32 / height as f32;
        for x in 0..width {
            let fx = x as f32 / width as f32;
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let noise = (state & 0x1f) as f32 - 16.0;
            let shape = ((fx * 9.0 + phase).sin() * (fy * 7.0 - phase).cos()) * 70.0;
            let detail = ((fx * 180.0).sin() * (fy * 140.0).sin()) * 12.0;
            let rgb = [
                40.0 + fx * 150.0 + shape + detail,
                60.0 + fy * 120.0 - shape * 0.5 + detail,
                90.0 + (1.0 - fx) * 80.0 + shape * 0.3,
            ];
            data.extend(rgb.map(|c| (c + noise).clamp(0.0, 255.0) as u8));
        }
    }
    data
}

fn encode_jpeg(rgb: &[u8], width: u32, height: u32) -> Vec<u8> {
    let mut c = mozjpeg::Compress::new(mozjpeg::ColorSpace::JCS_RGB);
    c.set_size(width as usize, height as usize);
    // Baseline 4:2:0 at quality 90: what phone cameras write.
    c.set_fastest_defaults();
    c.set_quality(90.0);
    let mut started = c.start_compress(Vec::new()).unwrap();
    started.write_scanlines(rgb).unwrap();
    started.finish().unwrap()
}

fn encode_png(rgb: &[u8], width: u32, height: u32) -> Vec<u8> {
    use image::ImageEncoder;
    let mut out = Vec::new();
    image::codecs::png::PngEncoder::new(&mut out)
        .write_image(rgb, width, height, image::ExtendedColorType::Rgb8)
        .unwrap();
    out
}

fn encode_webp(rgb: &[u8], width: u32, height: u32) -> Vec<u8> {
    webp::Encoder::from_rgb(rgb, width, height)
        .encode_simple(false, 85.0)
        .unwrap()
        .to_vec()
}

// ---- timing ----

fn run(args: &[String]) {
    let (src, out) = (PathBuf::from(&args[0]), PathBuf::from(&args[1]));
    let mut threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut size = 256;
    let mut format = OutputFormat::Jpeg;
    let mut quality = 80;
    let mut rest = args[2..].iter();
    while let Some(flag) = rest.next() {
        let value = rest.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--threads" => threads = value.parse().unwrap(),
            "--size" => size = value.parse().unwrap(),
            "--quality" => quality = value.parse().unwrap(),
            "--format" => format = serde_json::from_value(serde_json::Value::String(value.clone())).unwrap(),
            _ => panic!("unknown flag {flag}"),
        }
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(&src)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    std::fs::create_dir_all(&out).unwrap();
    let dirs = AllowedDirs::new(&[src.clone(), out.clone()]).unwrap();
    let limits = Limits::default();

    let next = AtomicUsize::new(0);
    let started = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                while let Some(input) = files.get(next.fetch_add(1, Ordering::Relaxed)) {
                    let req = ThumbnailRequest {
                        input: input.clone(),
                        output_dir: out.clone(),
                        sizes: vec![size],
                        format,
                        quality,
                    };
                    if let Err(e) = thumbnail(&req, &dirs, &limits) {
                        panic!("{}: {e}", input.display());
                    }
                }
            });
        }
    });
    let seconds = started.elapsed().as_secs_f64();
    println!("files={} threads={threads} seconds={seconds:.4}", files.len());
}
