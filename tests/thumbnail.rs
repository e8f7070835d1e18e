//! End to end: `jobfleet thumbnail DIR --wait` with a real worker and a real
//! redis-server, on good images and hostile ones.

mod util;

use std::path::Path;
use std::time::Duration;

use image::{ImageFormat, Rgb, RgbImage, Rgba, RgbaImage};
use util::Fleet;

/// A photo-like image: gradients, so the encoders have something to do.
fn photo(width: u32, height: u32) -> RgbImage {
    RgbImage::from_fn(width, height, |x, y| {
        Rgb([(x % 256) as u8, (y % 256) as u8, ((x + y) % 256) as u8])
    })
}

/// The standard CRC-32 of PNG chunks.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &b in bytes {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// A valid PNG whose header claims a 60000 x 60000 canvas.
fn bomb_png(path: &Path) {
    let mut bytes = Vec::new();
    RgbImage::new(4, 4)
        .write_to(&mut std::io::Cursor::new(&mut bytes), ImageFormat::Png)
        .unwrap();
    // IHDR data starts at byte 16: width, height (big-endian), then fields.
    bytes[16..20].copy_from_slice(&60_000u32.to_be_bytes());
    bytes[20..24].copy_from_slice(&60_000u32.to_be_bytes());
    let crc = crc32(&bytes[12..29]);
    bytes[29..33].copy_from_slice(&crc.to_be_bytes());
    std::fs::write(path, bytes).unwrap();
}

fn dimensions(path: &Path) -> (u32, u32) {
    image::image_dimensions(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn thumbnail_a_folder_with_good_and_hostile_images() {
    let mut fleet = Fleet::new();
    let root = fleet.dir.path().canonicalize().unwrap();
    let photos = root.join("photos");
    let out = root.join("thumbs");
    std::fs::create_dir_all(photos.join("sub")).unwrap();
    photo(800, 600).save(photos.join("landscape.jpg")).unwrap();
    RgbaImage::from_fn(300, 500, |x, _| Rgba([255, 0, 0, (x % 256) as u8]))
        .save(photos.join("sub/portrait.png"))
        .unwrap();
    photo(40, 30).save(photos.join("tiny.png")).unwrap();
    // Hostile: truncated JPEG, empty file, not an image, a bomb, an escape.
    let mut jpeg = Vec::new();
    photo(64, 64)
        .write_to(&mut std::io::Cursor::new(&mut jpeg), ImageFormat::Jpeg)
        .unwrap();
    std::fs::write(photos.join("truncated.jpg"), &jpeg[..jpeg.len() / 3]).unwrap();
    std::fs::write(photos.join("empty.png"), b"").unwrap();
    std::fs::write(photos.join("notes.jpg"), b"this is not an image at all").unwrap();
    bomb_png(&photos.join("bomb.png"));
    let secret = tempfile::tempdir().unwrap();
    photo(10, 10).save(secret.path().join("secret.png")).unwrap();
    std::os::unix::fs::symlink(secret.path().join("secret.png"), photos.join("escape.png")).unwrap();

    fleet.start_worker(&["--allow-dir", root.to_str().unwrap(), "--concurrency", "2"]);
    let run = fleet.jobfleet(&[
        "thumbnail",
        photos.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--size",
        "64",
        "--size",
        "200",
        "--wait",
    ]);
    assert_eq!(
        run.code, 1,
        "hostile images fail, so the exit is 1: {}",
        run.stderr
    );
    assert!(
        run.stderr.contains("8 photos: 3 completed, 5 dead"),
        "{}",
        run.stderr
    );
    for reason in [
        "bomb.png) dead: image is 60000x60000 (3600 megapixels), over the 100 megapixel limit",
        "empty.png) dead: input file is empty",
        "notes.jpg) dead: input is not a supported image",
        "truncated.jpg) dead: corrupt jpeg data",
        "escape.png) dead: path",
    ] {
        assert!(
            run.stderr.contains(reason),
            "missing reason {reason:?}:\n{}",
            run.stderr
        );
    }

    // Aspect kept, longest side = size, never enlarged, folders mirrored.
    assert_eq!(dimensions(&out.join("landscape_200.jpg")), (200, 150));
    assert_eq!(dimensions(&out.join("landscape_64.jpg")), (64, 48));
    assert_eq!(dimensions(&out.join("sub/portrait_200.jpg")), (120, 200));
    assert_eq!(dimensions(&out.join("tiny_200.jpg")), (40, 30));
    assert!(!out.join("escape_64.jpg").exists());

    // The result describes the input and every output.
    let ids: Vec<String> = fleet
        .jobfleet(&["dead", "list", "--json"])
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), 5, "each hostile image is dead, none retried");

    // The worker keeps serving: a PNG run after the hostile ones succeeds.
    let again = fleet.jobfleet(&[
        "thumbnail",
        photos.join("landscape.jpg").to_str().unwrap(),
        "--out",
        root.join("png").to_str().unwrap(),
        "--format",
        "png",
        "--wait",
    ]);
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert_eq!(dimensions(&root.join("png/landscape_256.png")), (256, 192));
}

#[test]
fn thumbnail_refuses_output_outside_the_allowed_folders_and_bad_arguments() {
    let mut fleet = Fleet::new();
    let root = fleet.dir.path().canonicalize().unwrap();
    let allowed = root.join("allowed");
    std::fs::create_dir_all(&allowed).unwrap();
    photo(100, 100).save(allowed.join("a.jpg")).unwrap();
    fleet.start_worker(&["--allow-dir", allowed.to_str().unwrap()]);
    let run = fleet.jobfleet(&[
        "thumbnail",
        allowed.join("a.jpg").to_str().unwrap(),
        "--out",
        root.join("elsewhere").to_str().unwrap(),
        "--wait",
    ]);
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("outside"), "{}", run.stderr);
    assert!(
        !root.join("elsewhere").exists(),
        "a refused output folder is not created"
    );

    let missing = fleet.jobfleet(&["thumbnail", "/no/such/folder", "--out", "/tmp/x"]);
    assert_eq!(missing.code, 3);
    assert!(
        missing.stderr.contains("cannot read /no/such/folder"),
        "{}",
        missing.stderr
    );
    let empty = tempfile::tempdir().unwrap();
    let none = fleet.jobfleet(&["thumbnail", empty.path().to_str().unwrap(), "--out", "/tmp/x"]);
    assert_eq!(none.code, 3);
    assert!(none.stderr.contains("no image files found"), "{}", none.stderr);
}

#[test]
fn two_images_that_would_write_the_same_thumbnails_are_refused_before_anything_is_submitted() {
    let fleet = Fleet::new();
    let root = fleet.dir.path().canonicalize().unwrap();
    let photos = root.join("photos");
    std::fs::create_dir_all(&photos).unwrap();
    photo(100, 100).save(photos.join("a.jpg")).unwrap();
    photo(100, 100).save(photos.join("a.png")).unwrap();
    photo(100, 100).save(photos.join("b.png")).unwrap();
    let out = root.join("thumbs");
    let run = fleet.jobfleet(&[
        "thumbnail",
        photos.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--size",
        "64",
    ]);
    assert_eq!(run.code, 3, "{}", run.stderr);
    let expected = format!(
        "{} and {} would both write {}: rename one, or thumbnail them into different --out folders",
        photos.join("a.jpg").display(),
        photos.join("a.png").display(),
        out.join("a_64.jpg").display()
    );
    assert!(run.stderr.contains(&expected), "{}", run.stderr);
    assert_eq!(run.stdout, "", "nothing was submitted");
    assert_eq!(fleet.stats()["queues"].as_array().map(Vec::len), Some(0));
}

#[test]
fn thumbnail_json_lists_the_files_each_photo_wrote() {
    let mut fleet = Fleet::new();
    let root = fleet.dir.path().canonicalize().unwrap();
    let photos = root.join("photos");
    std::fs::create_dir_all(&photos).unwrap();
    photo(300, 200).save(photos.join("wide.jpg")).unwrap();
    let out = root.join("thumbs");
    fleet.start_worker(&["--allow-dir", root.to_str().unwrap()]);
    let run = fleet.jobfleet(&[
        "thumbnail",
        photos.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--size",
        "64",
        "--size",
        "128",
        "--wait",
        "--json",
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let line: serde_json::Value = serde_json::from_str(run.stdout.trim()).expect("one JSON line");
    assert_eq!(line["state"], "completed", "{line}");
    let written: Vec<String> = line["result"]["outputs"]
        .as_array()
        .expect("the outputs")
        .iter()
        .map(|o| o["path"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        written,
        [out.join("wide_64.jpg"), out.join("wide_128.jpg")].map(|p| p.display().to_string())
    );
    for path in &written {
        assert!(Path::new(path).exists(), "{path}");
    }
    // Without --wait: one line per photo with its input.
    let run = fleet.jobfleet(&[
        "thumbnail",
        photos.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let line: serde_json::Value = serde_json::from_str(run.stdout.trim()).unwrap();
    assert_eq!(line["input"], photos.join("wide.jpg").display().to_string());
    assert!(line["id"].is_string());
}

#[test]
fn a_worker_that_may_read_no_folder_leaves_thumbnails_to_one_that_may_through_a_sigkill() {
    let mut fleet = Fleet::new();
    let root = fleet.dir.path().canonicalize().unwrap();
    let photos = root.join("photos");
    std::fs::create_dir_all(&photos).unwrap();
    photo(400, 300).save(photos.join("cat.jpg")).unwrap();
    // An old-style fleet: a worker started without --allow-dir, which
    // would have buried every thumbnail job.
    let plain = fleet.start_worker(&[]);
    let run = fleet.jobfleet(&[
        "thumbnail",
        photos.join("cat.jpg").to_str().unwrap(),
        "--out",
        root.join("thumbs").to_str().unwrap(),
        "--size",
        "100",
        "--wait",
        "--wait-timeout",
        "1s",
        "--json",
    ]);
    assert_eq!(run.code, 2, "nothing runs it yet: {}", run.stderr);
    assert!(
        run.stderr
            .contains("warning: no live worker runs task thumbnail on queue default"),
        "{}",
        run.stderr
    );
    fleet.until(Duration::from_secs(10), "the job to be parked", |f| {
        f.queue_stats("default")["parked"]["thumbnail"] == 1
    });
    let stats = fleet.jobfleet(&["stats"]);
    assert!(
        stats
            .stdout
            .contains("warning: no live worker runs task thumbnail on queue default: 1 job waits for one"),
        "{}",
        stats.stdout
    );
    let job = &fleet.jobfleet(&["jobs", "default", "--json"]).json()[0];
    assert_eq!(
        (&job["task"], &job["attempts"]),
        (&"thumbnail".into(), &0.into()),
        "{job}"
    );
    let id = job["id"].as_str().unwrap().to_string();

    // The plain worker dies; one that may read the folder takes the job.
    fleet.workers[plain].signal("KILL");
    fleet.workers[plain].wait_exit(Duration::from_secs(5));
    fleet.start_worker(&["--allow-dir", root.to_str().unwrap()]);
    let wait = fleet.jobfleet(&["wait", &id, "--timeout", "30s"]);
    assert_eq!(wait.code, 0, "{}", wait.stderr);
    assert_eq!(dimensions(&root.join("thumbs/cat_100.jpg")), (100, 75));
    assert!(
        fleet
            .jobfleet(&["stats"])
            .stdout
            .lines()
            .all(|l| !l.starts_with("warning"))
    );
}
