//! `jobfleet thumbnail`: one `thumbnail` job per image found in the given
//! files and folders, submitted in batches; with `--wait`, a progress bar
//! and a summary (done, failed with reasons, photos per second).

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, bail};
use clap::ValueEnum;
use jobfleet_core::JobSpec;
use serde_json::json;

use crate::Outcome;
use crate::cmd::batches::Batches;
use crate::cmd::track;
use crate::connect::Target;
use crate::output::outln;

/// Jobs per submit call.
const BATCH: usize = 500;
/// File extensions picked up when walking folders (the worker detects the
/// real format from the bytes).
const IMAGE_EXTENSIONS: [&str; 8] = ["jpg", "jpeg", "png", "webp", "gif", "tif", "tiff", "jfif"];

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Format {
    Jpeg,
    Png,
    Webp,
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Image files or folders (walked recursively for image files).
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    /// Output folder; a walked folder's subfolders are mirrored under it.
    /// Workers must be allowed to write there (jobfleet-worker --allow-dir).
    #[arg(long)]
    out: PathBuf,
    /// Longest side of a thumbnail, in pixels; repeat for several sizes.
    #[arg(long = "size", default_value = "256")]
    sizes: Vec<u32>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Jpeg)]
    format: Format,
    /// Encoder quality (JPEG and WebP), 1 to 100.
    #[arg(long, default_value_t = 80, value_parser = clap::value_parser!(u8).range(1..=100))]
    quality: u8,
    /// Queue to submit to.
    #[arg(long, short = 'q', default_value = "default")]
    queue: String,
    /// Wait for every photo; exit 1 if any failed.
    #[arg(long)]
    wait: bool,
    /// With --wait: stop waiting after this long (exit 2); the jobs keep
    /// running. Not the jobs' own --timeout.
    #[arg(long, requires = "wait", value_parser = humantime::parse_duration)]
    wait_timeout: Option<std::time::Duration>,
    /// Machine-readable output: one JSON line per photo, `{"id", "input"}`;
    /// with --wait, each finished job with the files it wrote
    /// (`result.outputs[].path`).
    #[arg(long)]
    json: bool,
    /// Each job's timeout: the longest one attempt may run (not how long
    /// --wait waits: that is --wait-timeout).
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    timeout: std::time::Duration,
}

pub async fn run(target: &Target, args: Args) -> anyhow::Result<Outcome> {
    if args.sizes.iter().any(|&s| s == 0 || s > 16_384) {
        bail!("--size must be between 1 and 16384 pixels");
    }
    let out = std::path::absolute(&args.out)
        .with_context(|| format!("cannot resolve --out {}", args.out.display()))?;
    let images = collect(&args.paths, &out)?;
    if images.is_empty() {
        bail!(
            "no image files found in {}; give image files or folders holding .jpg, .png, .webp, .gif or .tiff files",
            args.paths
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(" ")
        );
    }
    refuse_collisions(&images, &args.sizes, &format!("{:?}", args.format).to_lowercase())?;
    let client = target.connect().await?;
    let queue = client.queue(&args.queue)?;
    let mut events = track::subscribe_if(&client, &args.queue, args.wait).await?;
    let started = Instant::now();
    let format = format!("{:?}", args.format).to_lowercase();
    let mut batches = Batches::new(&queue);
    let mut ids = Vec::with_capacity(images.len());
    for chunk in images.chunks(BATCH) {
        let specs: Vec<JobSpec> = chunk
            .iter()
            .map(|(input, output_dir)| {
                let payload = json!({
                    "input": input,
                    "output_dir": output_dir,
                    "sizes": args.sizes,
                    "format": format,
                    "quality": args.quality,
                });
                JobSpec::new("thumbnail", &payload).timeout(args.timeout)
            })
            .collect();
        ids.extend(batches.send(specs).await?);
    }
    while !batches.is_empty() {
        ids.extend(batches.next().await?);
    }
    let labels: std::collections::HashMap<String, String> = ids
        .iter()
        .zip(&images)
        .map(|(s, (input, _))| (s.id.clone(), input.display().to_string()))
        .collect();
    if !args.wait {
        for (s, (input, _)) in ids.iter().zip(&images) {
            if args.json {
                outln!("{}", json!({"id": s.id, "input": input}))?;
            } else {
                outln!("{}", s.id)?;
            }
        }
    }
    eprintln!("submitted {} photos to queue {}", ids.len(), args.queue);
    match events.as_mut() {
        None => Ok(Outcome::Success),
        Some(events) => {
            let jobs: Vec<(String, String)> = ids.into_iter().map(|s| (args.queue.clone(), s.id)).collect();
            let report = track::Report {
                json: args.json,
                noun: "photos",
                labels: Some(&labels),
                wait_timeout: args.wait_timeout,
                print_result: false,
                task: "thumbnail",
            };
            track::wait(&client, events, &jobs, started, report).await
        }
    }
}

/// Refuses a batch in which two images would write the same thumbnails
/// (`a.jpg` and `a.png` both make `a_256.jpg`): one would silently
/// overwrite the other.
fn refuse_collisions(images: &[(PathBuf, PathBuf)], sizes: &[u32], extension: &str) -> anyhow::Result<()> {
    let mut seen: std::collections::HashMap<(&Path, String), &Path> = std::collections::HashMap::new();
    let extension = if extension == "jpeg" { "jpg" } else { extension };
    for (input, out_dir) in images {
        let stem = input
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        if let Some(first) = seen.insert((out_dir.as_path(), stem.clone()), input.as_path()) {
            bail!(
                "{} and {} would both write {}: rename one, or thumbnail them into different --out folders",
                first.display(),
                input.display(),
                out_dir
                    .join(format!(
                        "{stem}_{}.{extension}",
                        sizes.first().copied().unwrap_or(0)
                    ))
                    .display()
            );
        }
    }
    Ok(())
}

/// Every image under `paths`, absolute, with the folder its thumbnails go to.
fn collect(paths: &[PathBuf], out: &Path) -> anyhow::Result<Vec<(PathBuf, PathBuf)>> {
    let mut images = Vec::new();
    for path in paths {
        let path = std::path::absolute(path).with_context(|| format!("cannot resolve {}", path.display()))?;
        let meta = std::fs::metadata(&path)
            .with_context(|| format!("cannot read {}: check that it exists", path.display()))?;
        if meta.is_dir() {
            walk(&path, &path, out, &mut images)?;
        } else {
            images.push((path, out.to_path_buf()));
        }
    }
    images.sort();
    Ok(images)
}

fn walk(root: &Path, dir: &Path, out: &Path, images: &mut Vec<(PathBuf, PathBuf)>) -> anyhow::Result<()> {
    let entries = std::fs::read_dir(dir).with_context(|| format!("cannot read folder {}", dir.display()))?;
    for entry in entries {
        let entry = entry.with_context(|| format!("cannot read folder {}", dir.display()))?;
        let path = entry.path();
        let kind = entry.file_type()?;
        if kind.is_dir() {
            walk(root, &path, out, images)?;
        } else if is_image(&path) {
            let relative = dir.strip_prefix(root).unwrap_or(Path::new(""));
            images.push((path, out.join(relative)));
        }
    }
    Ok(())
}

fn is_image(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}
