//! Fashion-MNIST data: the fixtures slice and the Debian set load; corrupt IDX files give
//! errors (never panics or huge allocations); the lookup order; augmentation invariants.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use nn::data::idx::{
    self, FASHION_MNIST_CLASSES, Split, dataset_from_bytes, encode_idx_u8, encode_labels, gzip,
    images_from_bytes, labels_from_bytes, load_fashion_mnist, parse_idx_u8,
};
use nn::data::source::{self, DataSource, SearchPaths, SourceKind, locate_with};
use nn::data::{Augment, augment_batch};
use nn::{Dataset, NnError};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed};
use tensor_core::Tensor;
use tensor_core::rng::Rng;

// ---------------------------------------------------------------- helpers

/// A fresh empty directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let p = std::env::temp_dir().join(format!(
            "slimnet-data-test-{}-{tag}-{n}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        Self(p)
    }
    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A tiny dataset: `n` images of 4 x 5 with pixel bytes `(i * 7 + j) % 256`, labels `i % 10`.
fn tiny(n: usize) -> Dataset {
    let bytes: Vec<u8> = (0..n * 20).map(|k| (k * 7 % 256) as u8).collect();
    let images = Tensor::new(
        &[n, 1, 4, 5],
        bytes.iter().map(|&b| f32::from(b) / 255.0).collect(),
    )
    .unwrap();
    Dataset::new(images, (0..n).map(|i| (i % 10) as u8).collect(), 10).unwrap()
}

fn tiny_image_bytes(n: usize) -> Vec<u8> {
    idx::encode_images(&tiny(n).images).unwrap()
}

/// Writes a tiny two-split Fashion-MNIST directory.
fn write_tiny_set(dir: &Path, train: usize, test: usize) {
    idx::write_split(dir, Split::Train, &tiny(train)).unwrap();
    idx::write_split(dir, Split::Test, &tiny(test)).unwrap();
}

fn corrupt_reason(e: &NnError) -> String {
    match e {
        NnError::Corrupt { .. } => e.to_string(),
        other => panic!("expected NnError::Corrupt, got {other:?}"),
    }
}

fn fixtures_dir() -> PathBuf {
    PathBuf::from(source::FIXTURES_DIR_BUILT)
}

fn check_fashion(set: &Dataset, n: usize, what: &str) {
    assert_eq!(set.len(), n, "{what}");
    assert_eq!(set.images.dims(), &[n, 1, 28, 28], "{what}");
    assert_eq!(set.classes, FASHION_MNIST_CLASSES);
    let (mut lo, mut hi) = (f32::INFINITY, f32::NEG_INFINITY);
    for &x in set.images.data() {
        lo = lo.min(x);
        hi = hi.max(x);
    }
    assert!(lo == 0.0 && hi == 1.0, "{what}: pixels in [{lo}, {hi}]");
    let counts = set.class_counts();
    assert!(
        counts.iter().all(|&c| c > 0),
        "{what}: class counts {counts:?}"
    );
    assert_eq!(counts.iter().sum::<usize>(), n);
}

// ---------------------------------------------------------------- real data

#[test]
fn fixture_slice_loads() {
    let (train, test) = load_fashion_mnist(&fixtures_dir()).unwrap();
    check_fashion(&train, 10_000, "fixtures train");
    check_fashion(&test, 10_000, "fixtures test");
    // The test split is the full t10k set: exactly 1,000 per class.
    assert_eq!(test.class_counts(), vec![1000; 10]);
    // Pixels are exactly x / 255.
    assert!(
        train
            .images
            .data()
            .iter()
            .take(5000)
            .all(|&x| ((x * 255.0).round() / 255.0 - x).abs() < 1e-7)
    );
}

#[test]
fn debian_set_loads_when_installed() {
    let dir = Path::new(source::DEBIAN_DIR);
    if !idx::has_fashion_mnist(dir) {
        eprintln!(
            "SKIP: {} absent (apt install dataset-fashion-mnist)",
            dir.display()
        );
        return;
    }
    eprintln!("ran: loading the Debian set from {}", dir.display());
    let (train, test) = load_fashion_mnist(dir).unwrap();
    check_fashion(&train, 60_000, "debian train");
    check_fashion(&test, 10_000, "debian test");
    assert_eq!(train.class_counts(), vec![6000; 10]);
    // The fixtures slice is a prefix of the Debian training set and equals its test set.
    let (ftrain, ftest) = load_fashion_mnist(&fixtures_dir()).unwrap();
    let prefix = train.take(ftrain.len()).unwrap();
    assert_eq!(prefix.labels, ftrain.labels);
    assert_eq!(prefix.images, ftrain.images);
    assert_eq!(test.labels, ftest.labels);
    assert_eq!(test.images, ftest.images);
}

// ---------------------------------------------------------------- corrupt files

#[test]
fn bad_magic_is_an_error() {
    let mut raw = tiny_image_bytes(3);
    raw[0] = 0x12;
    let e = corrupt_reason(&images_from_bytes(&raw, "f.idx").unwrap_err());
    assert!(e.contains("f.idx") && e.contains("bad magic"), "{e}");
}

#[test]
fn wrong_type_code_is_an_error() {
    let mut raw = tiny_image_bytes(3);
    raw[2] = 0x0D;
    let e = corrupt_reason(&images_from_bytes(&raw, "f.idx").unwrap_err());
    assert!(e.contains("type code 0x0d (f32)"), "{e}");
}

#[test]
fn wrong_rank_is_an_error() {
    // Labels file given as images and vice versa.
    let labels = encode_labels(&[1, 2, 3]).unwrap();
    let e = corrupt_reason(&images_from_bytes(&labels, "l").unwrap_err());
    assert!(e.contains("1 dimensions") && e.contains("want 3"), "{e}");
    let images = tiny_image_bytes(3);
    let e = corrupt_reason(&labels_from_bytes(&images, "i", 10).unwrap_err());
    assert!(e.contains("3 dimensions") && e.contains("want 1"), "{e}");
}

#[test]
fn truncation_at_every_offset_is_an_error() {
    let raw = tiny_image_bytes(4);
    for cut in 0..raw.len() {
        let e = images_from_bytes(&raw[..cut], "t").unwrap_err();
        let msg = corrupt_reason(&e);
        assert!(msg.contains("truncated"), "cut {cut}: {msg}");
    }
    let gz = gzip(&raw);
    for cut in 0..gz.len() {
        // A cut gzip stream is either not gzip any more (cut < 2) or an unexpected EOF.
        let e = images_from_bytes(&gz[..cut], "t.gz").unwrap_err();
        corrupt_reason(&e);
    }
    let labels = encode_labels(&[0, 1, 2, 3, 4]).unwrap();
    for cut in 0..labels.len() {
        corrupt_reason(&labels_from_bytes(&labels[..cut], "l", 10).unwrap_err());
    }
}

#[test]
fn trailing_data_is_an_error() {
    let mut raw = tiny_image_bytes(2);
    raw.extend_from_slice(&[1, 2, 3]);
    let e = corrupt_reason(&images_from_bytes(&raw, "t").unwrap_err());
    assert!(e.contains("3 bytes of trailing data"), "{e}");
    let e = corrupt_reason(&images_from_bytes(&gzip(&raw), "t.gz").unwrap_err());
    assert!(e.contains("trailing"), "{e}");
    // Garbage after a gzip member is an error too.
    let mut gz = gzip(&tiny_image_bytes(2));
    gz.extend_from_slice(b"garbage!");
    corrupt_reason(&images_from_bytes(&gz, "g.gz").unwrap_err());
}

#[test]
fn count_mismatch_is_an_error() {
    let images = tiny_image_bytes(3);
    let labels = encode_labels(&[1, 2]).unwrap();
    let e = dataset_from_bytes(&images, "imgs", &labels, "lbls", 10).unwrap_err();
    let e = corrupt_reason(&e);
    assert!(e.contains("3 images but 2 labels in lbls"), "{e}");

    // The same through files: the error names both.
    let dir = TempDir::new("mismatch");
    write_tiny_set(dir.path(), 6, 4);
    idx::write_idx_labels(
        &dir.path().join("t10k-labels-idx1-ubyte.gz"),
        &[1, 2, 3],
        true,
    )
    .unwrap();
    let e = corrupt_reason(&load_fashion_mnist(dir.path()).unwrap_err());
    assert!(
        e.contains("t10k-images-idx3-ubyte.gz") && e.contains("t10k-labels-idx1-ubyte.gz"),
        "{e}"
    );
}

#[test]
fn label_out_of_range_is_an_error() {
    let labels = encode_labels(&[0, 9, 10, 3]).unwrap();
    let e = corrupt_reason(&labels_from_bytes(&labels, "l", 10).unwrap_err());
    assert!(e.contains("label 10 at index 2"), "{e}");
    assert!(labels_from_bytes(&labels, "l", 11).is_ok());
}

#[test]
fn huge_header_with_little_data_fails_without_allocating() {
    // 2^31 images of 28 x 28 = 1.7 TB claimed, 10 bytes present.
    let mut raw = vec![0, 0, 8, 3];
    for d in [1u32 << 31, 28, 28] {
        raw.extend_from_slice(&d.to_be_bytes());
    }
    raw.extend_from_slice(&[7; 10]);
    let e = corrupt_reason(&images_from_bytes(&raw, "huge").unwrap_err());
    assert!(e.contains("limit"), "{e}");
    // 2^31 labels (with no limit at all): still refused, because the data is not there.
    let mut raw = vec![0, 0, 8, 1];
    raw.extend_from_slice(&(1u32 << 31).to_be_bytes());
    raw.extend_from_slice(&[1; 10]);
    let e =
        corrupt_reason(&idx::labels_from_bytes_limited(&raw, "huge", 10, usize::MAX).unwrap_err());
    assert!(e.contains("truncated"), "{e}");
    // Dimensions whose product overflows usize.
    let mut raw = vec![0, 0, 8, 3];
    for _ in 0..3 {
        raw.extend_from_slice(&u32::MAX.to_be_bytes());
    }
    corrupt_reason(&images_from_bytes(&raw, "overflow").unwrap_err());
}

#[test]
fn zero_sized_images_are_an_error_but_empty_sets_load() {
    let raw = encode_idx_u8(&[2, 0, 28], &[]).unwrap();
    corrupt_reason(&images_from_bytes(&raw, "z").unwrap_err());
    let raw = encode_idx_u8(&[0, 28, 28], &[]).unwrap();
    assert_eq!(
        images_from_bytes(&raw, "e").unwrap().dims(),
        &[0, 1, 28, 28]
    );
}

#[test]
fn corrupt_file_error_names_the_path() {
    let dir = TempDir::new("corruptfile");
    write_tiny_set(dir.path(), 5, 5);
    let p = dir.path().join("train-images-idx3-ubyte.gz");
    let gz = std::fs::read(&p).unwrap();
    std::fs::write(&p, &gz[..gz.len() - 9]).unwrap();
    let e = load_fashion_mnist(dir.path()).unwrap_err().to_string();
    assert!(e.contains(&p.display().to_string()), "{e}");
}

#[test]
fn raw_file_names_are_accepted_and_round_trip() {
    let dir = TempDir::new("raw");
    let train = tiny(7);
    let test = tiny(3);
    idx::write_idx_images(
        &dir.path().join("train-images-idx3-ubyte"),
        &train.images,
        false,
    )
    .unwrap();
    let bytes: Vec<u8> = train.labels.iter().map(|&l| l as u8).collect();
    idx::write_idx_labels(&dir.path().join("train-labels-idx1-ubyte"), &bytes, false).unwrap();
    idx::write_split(dir.path(), Split::Test, &test).unwrap();
    let (a, b) = load_fashion_mnist(dir.path()).unwrap();
    assert_eq!(a.images, train.images);
    assert_eq!(a.labels, train.labels);
    assert_eq!(b.images, test.images);
    assert_eq!(b.labels, test.labels);
}

// ---------------------------------------------------------------- fuzz

proptest! {
    #![proptest_config(Config { cases: 2000, rng_seed: RngSeed::Fixed(0x1D8), ..Config::default() })]

    /// Arbitrary bytes never panic the parser.
    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = images_from_bytes(&bytes, "fuzz");
        let _ = labels_from_bytes(&bytes, "fuzz", 10);
        let _ = parse_idx_u8(&bytes, "fuzz", 2, 1 << 20);
    }

    /// Plausible headers (right magic, random dimensions) with random payloads: an error or
    /// a dataset whose size matches the bytes, never a panic.
    #[test]
    fn random_headers_never_panic(
        rank in 0u8..5,
        dims in proptest::collection::vec(prop_oneof![0u32..6, any::<u32>()], 4),
        payload in proptest::collection::vec(any::<u8>(), 0..300),
        zip in any::<bool>(),
    ) {
        let mut raw = vec![0, 0, 8, rank];
        for d in &dims[..rank as usize] {
            raw.extend_from_slice(&d.to_be_bytes());
        }
        raw.extend_from_slice(&payload);
        let bytes = if zip { gzip(&raw) } else { raw };
        if let Ok(t) = images_from_bytes(&bytes, "fuzz") {
            prop_assert_eq!(t.numel(), payload.len());
        }
        if let Ok(l) = labels_from_bytes(&bytes, "fuzz", 10) {
            prop_assert_eq!(l.len(), payload.len());
        }
    }

    /// Random gzip-looking bytes never panic the decompressor.
    #[test]
    fn random_gzip_never_panics(tail in proptest::collection::vec(any::<u8>(), 0..200)) {
        let mut bytes = vec![0x1f, 0x8b, 8, 0];
        bytes.extend_from_slice(&tail);
        let _ = images_from_bytes(&bytes, "fuzz.gz");
    }
}

// ---------------------------------------------------------------- lookup order

#[test]
fn lookup_order_explicit_env_debian_fixtures() {
    let explicit = TempDir::new("explicit");
    let env = TempDir::new("env");
    let debian = TempDir::new("debian");
    let fixtures = TempDir::new("fixtures");
    for d in [&explicit, &env, &debian, &fixtures] {
        write_tiny_set(d.path(), 2, 2);
    }
    let paths = SearchPaths {
        debian: debian.path().to_path_buf(),
        fixtures: vec![
            PathBuf::from("/nonexistent/fixtures"),
            fixtures.path().to_path_buf(),
        ],
    };
    let env_val = Some(env.path().as_os_str());
    let pick = |e: Option<&Path>, v: Option<&OsStr>, p: &SearchPaths| -> DataSource {
        locate_with(e, v, p).unwrap()
    };

    let s = pick(Some(explicit.path()), env_val, &paths);
    assert_eq!(
        (s.kind, s.dir.as_path()),
        (SourceKind::Explicit, explicit.path())
    );
    let s = pick(None, env_val, &paths);
    assert_eq!((s.kind, s.dir.as_path()), (SourceKind::Env, env.path()));
    let s = pick(None, Some(OsStr::new("")), &paths);
    assert_eq!(
        s.kind,
        SourceKind::Debian,
        "empty SLIMNET_DATA counts as unset"
    );
    let s = pick(None, None, &paths);
    assert_eq!(
        (s.kind, s.dir.as_path()),
        (SourceKind::Debian, debian.path())
    );
    assert!(
        s.to_string()
            .contains("Debian package dataset-fashion-mnist")
    );

    // Debian absent (or incomplete): fall through to the first fixtures dir that exists.
    std::fs::remove_file(debian.path().join("t10k-labels-idx1-ubyte.gz")).unwrap();
    let s = pick(None, None, &paths);
    assert_eq!(
        (s.kind, s.dir.as_path()),
        (SourceKind::Fixtures, fixtures.path())
    );
    assert!(s.to_string().contains("fixtures slice"), "{s}");

    // Nothing anywhere: an error that lists what was searched.
    std::fs::remove_file(fixtures.path().join("train-images-idx3-ubyte.gz")).unwrap();
    let e = locate_with(None, None, &paths).unwrap_err().to_string();
    assert!(e.contains("no Fashion-MNIST found"), "{e}");
}

#[test]
fn named_dirs_without_files_are_errors_not_fallthrough() {
    let good = TempDir::new("good");
    write_tiny_set(good.path(), 2, 2);
    let empty = TempDir::new("empty");
    let paths = SearchPaths {
        debian: good.path().to_path_buf(),
        fixtures: vec![],
    };
    let e = locate_with(Some(empty.path()), None, &paths)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("--data") && e.contains("train-images-idx3-ubyte.gz"),
        "{e}"
    );
    let e = locate_with(None, Some(empty.path().as_os_str()), &paths)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("SLIMNET_DATA") && e.contains(&empty.path().display().to_string()),
        "{e}"
    );
    // Half a set (train only) is still an error.
    idx::write_split(empty.path(), Split::Train, &tiny(2)).unwrap();
    let e = locate_with(Some(empty.path()), None, &paths)
        .unwrap_err()
        .to_string();
    assert!(e.contains("t10k-images-idx3-ubyte.gz"), "{e}");
}

#[test]
fn default_search_finds_real_data() {
    // With no explicit dir and no env value, the default paths find the Debian set or the
    // fixtures slice (the latter is in the repository).
    let s = locate_with(None, None, &SearchPaths::default()).unwrap();
    eprintln!("default search: {s}");
    assert!(matches!(s.kind, SourceKind::Debian | SourceKind::Fixtures));
}

// ---------------------------------------------------------------- augmentation

/// A batch of `n` images `[c, h, w]` with random content in the interior (a border of
/// `border` zero pixels).
fn interior_batch(n: usize, c: usize, h: usize, w: usize, border: usize, seed: u64) -> Tensor {
    let mut rng = Rng::seed_from_u64(seed);
    let mut t = Tensor::zeros_dims(&[n, c, h, w]).unwrap();
    for (k, x) in t.data_mut().iter_mut().enumerate() {
        let (y, xx) = ((k / w) % h, k % w);
        if y >= border && y < h - border && xx >= border && xx < w - border {
            *x = rng.uniform();
        }
    }
    t
}

#[test]
fn flip_twice_is_identity() {
    let orig = interior_batch(64, 2, 6, 7, 0, 1);
    let aug = Augment {
        flip: true,
        max_shift: 0,
    };
    let mut rng = Rng::seed_from_u64(42);
    let mut again = rng.clone();
    let mut t = orig.clone();
    augment_batch(&mut t, &aug, &mut rng).unwrap();
    let per = 2 * 6 * 7;
    let flipped = (0..64)
        .filter(|&i| t.data()[i * per..(i + 1) * per] != orig.data()[i * per..(i + 1) * per])
        .count();
    assert!(
        (16..=48).contains(&flipped),
        "{flipped} of 64 flipped (seed 42)"
    );
    augment_batch(&mut t, &aug, &mut again).unwrap();
    assert_eq!(t, orig);
}

#[test]
fn shift_preserves_sum_away_from_border() {
    let aug = Augment::default();
    let orig = interior_batch(50, 1, 28, 28, aug.max_shift, 7);
    let mut t = orig.clone();
    augment_batch(&mut t, &aug, &mut Rng::seed_from_u64(3)).unwrap();
    let per = 28 * 28;
    for i in 0..50 {
        let a: f32 = orig.data()[i * per..(i + 1) * per].iter().sum();
        let b: f32 = t.data()[i * per..(i + 1) * per].iter().sum();
        assert!((a - b).abs() <= 1e-4 * a.abs(), "image {i}: sum {a} -> {b}");
    }
    assert_ne!(t, orig);
}

#[test]
fn augment_is_deterministic_per_seed() {
    let orig = interior_batch(16, 1, 28, 28, 0, 9);
    let run = |seed| {
        let mut t = orig.clone();
        augment_batch(&mut t, &Augment::default(), &mut Rng::seed_from_u64(seed)).unwrap();
        t
    };
    assert_eq!(run(5), run(5));
    assert_ne!(run(5), run(6));
}

#[test]
fn augment_matches_naive_reference() {
    // Replays the documented draw order (flip coin, dy, dx) and applies the map naively.
    let (n, c, h, w) = (40, 2, 5, 6);
    let aug = Augment {
        flip: true,
        max_shift: 2,
    };
    let orig = interior_batch(n, c, h, w, 0, 11);
    let mut t = orig.clone();
    let mut rng = Rng::seed_from_u64(99);
    let mut replay = rng.clone();
    augment_batch(&mut t, &aug, &mut rng).unwrap();
    let s = aug.max_shift as isize;
    let mut seen = std::collections::HashSet::new();
    for i in 0..n {
        let flip = replay.below(2) == 1;
        let dy = replay.below(5) as isize - s;
        let dx = replay.below(5) as isize - s;
        seen.insert((flip, dy, dx));
        for ch in 0..c {
            for y in 0..h {
                for x in 0..w {
                    let (sy, mut sx) = (y as isize - dy, x as isize - dx);
                    if flip {
                        sx = w as isize - 1 - sx;
                    }
                    let want = if (0..h as isize).contains(&sy) && (0..w as isize).contains(&sx) {
                        orig.data()[((i * c + ch) * h + sy as usize) * w + sx as usize]
                    } else {
                        0.0
                    };
                    let got = t.data()[((i * c + ch) * h + y) * w + x];
                    assert_eq!(
                        got, want,
                        "image {i} ch {ch} ({y},{x}) flip {flip} dy {dy} dx {dx}"
                    );
                }
            }
        }
    }
    assert!(seen.len() > 20, "only {} distinct transforms", seen.len());
}

#[test]
fn augment_rejects_bad_input() {
    let mut rng = Rng::seed_from_u64(0);
    let mut flat = Tensor::zeros_dims(&[4, 784]).unwrap();
    let e = augment_batch(&mut flat, &Augment::default(), &mut rng).unwrap_err();
    assert!(matches!(e, NnError::BadInput { .. }), "{e}");
    let mut small = Tensor::zeros_dims(&[1, 1, 2, 2]).unwrap();
    let e = augment_batch(&mut small, &Augment::default(), &mut rng).unwrap_err();
    assert!(e.to_string().contains("max_shift 2"), "{e}");
    // No-op settings consume no randomness and change nothing.
    let orig = interior_batch(3, 1, 4, 4, 0, 1);
    let mut t = orig.clone();
    augment_batch(
        &mut t,
        &Augment {
            flip: false,
            max_shift: 0,
        },
        &mut rng,
    )
    .unwrap();
    assert_eq!(t, orig);
}

#[test]
fn augment_default_is_flip_and_shift_2() {
    let a = Augment::default();
    assert!(a.flip);
    assert_eq!(a.max_shift, 2);
}

#[test]
fn validation_split_partitions_the_samples_deterministically() {
    // tiny(n): sample i's pixels encode i, so the split can be traced back to indices.
    let set = tiny(50);
    let (train, val) = set.split_validation(0.2, 3).unwrap();
    assert_eq!((train.len(), val.len()), (40, 10));
    let ids = |d: &Dataset| -> Vec<u32> {
        (0..d.len())
            .map(|i| {
                let (x, _) = d.batch(&[i]).unwrap();
                x.data()
                    .iter()
                    .map(|v| v.to_bits())
                    .fold(0u32, |h, b| h.rotate_left(5) ^ b)
            })
            .collect()
    };
    let (mut all, whole) = (ids(&train), ids(&set));
    all.extend(ids(&val));
    let mut sorted_all = all.clone();
    sorted_all.sort_unstable();
    let mut sorted_whole = whole.clone();
    sorted_whole.sort_unstable();
    assert_eq!(
        sorted_all, sorted_whole,
        "train + validation = every sample once"
    );
    let (_, again) = set.split_validation(0.2, 3).unwrap();
    assert_eq!(ids(&again), ids(&val), "same seed, same split");
    let (_, other) = set.split_validation(0.2, 4).unwrap();
    assert_ne!(ids(&other), ids(&val));
    for bad in [0.0, 1.0, -0.1, f64::NAN, 0.001] {
        assert!(set.split_validation(bad, 1).is_err(), "{bad}");
    }
}
