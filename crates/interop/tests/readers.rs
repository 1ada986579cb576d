//! Every reader on small synthetic files written here, and corrupt, truncated and hostile
//! variants of them: each defect is a typed error naming the file, never a panic.

use std::io::Write;
use std::path::{Path, PathBuf};

use interop::data::{DataOptions, Format, detect, load, load_test};
use interop::npy::{npy_bytes, npy_bytes_i64, npy_bytes_raw};
use interop::npz::{Npz, NpzData, read_npz};
use interop::transform::Transform;
use interop::{InteropError, cifar, image_folder};
use proptest::prelude::*;
use tensor_core::Tensor;
use zip::CompressionMethod;
use zip::write::SimpleFileOptions;

/// A fresh scratch directory for one test.
fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("interop-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn npy_u8(dims: &[usize], data: &[u8]) -> Vec<u8> {
    npy_bytes_raw("|u1", dims, data)
}

fn npy_f32(dims: &[usize], data: Vec<f32>) -> Vec<u8> {
    npy_bytes(&Tensor::new(dims, data).unwrap())
}

fn labels(v: &[i64]) -> Vec<u8> {
    npy_bytes_i64(&[v.len()], v)
}

/// Archive members: name and bytes.
type Members<'a> = Vec<(&'a str, Vec<u8>)>;

/// Writes a zip of `members` (name, bytes) with `method`.
fn write_zip(path: &Path, members: &[(&str, Vec<u8>)], method: CompressionMethod) {
    let mut z = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
    let opts = SimpleFileOptions::default().compression_method(method);
    for (name, bytes) in members {
        z.start_file(*name, opts).unwrap();
        z.write_all(bytes).unwrap();
    }
    z.finish().unwrap();
}

fn assert_names(e: &InteropError, what: &str) {
    let s = e.to_string();
    assert!(s.contains(what), "error {s:?} does not name {what:?}");
}

#[test]
fn npz_with_both_splits_reads_every_layout() {
    let dir = scratch("npz-split");
    let path = dir.join("d.npz");
    // Training images N x H x W uint8; test images N x H x W x C float (channels last).
    let px: Vec<u8> = (0..2 * 2 * 3).map(|v| (v * 20) as u8).collect();
    let test_px: Vec<f32> = (0..2 * 5 * 6 * 3).map(|v| v as f32 / 100.0).collect();
    write_zip(
        &path,
        &[
            ("x_train.npy", npy_u8(&[2, 2, 3], &px)),
            ("y_train.npy", labels(&[3, 1])),
            ("x_test.npy", npy_f32(&[2, 5, 6, 3], test_px.clone())),
            ("y_test.npy", npy_bytes_raw("<u2", &[2], &[0, 0, 4, 0])),
        ],
        CompressionMethod::Deflated,
    );
    let NpzData::Split { train, test } = read_npz(&path).unwrap() else {
        panic!("want both splits")
    };
    assert_eq!(train.images.dims(), &[2, 1, 2, 3]);
    let want: Vec<f32> = px.iter().map(|&p| f32::from(p) / 255.0).collect();
    assert_eq!(
        train.images.data(),
        want.as_slice(),
        "uint8 scaled as IDX is"
    );
    assert_eq!(
        (train.labels.as_slice(), test.labels.as_slice()),
        (&[3, 1][..], &[0, 4][..])
    );
    assert_eq!(
        (train.classes, test.classes),
        (5, 5),
        "class count over both splits"
    );
    assert_eq!(test.images.dims(), &[2, 3, 5, 6]);
    // Channel 1 of image 1, pixel (row 2, column 4) = element [1, 2, 4, 1] of the NHWC array.
    let nhwc = test_px[((5 + 2) * 6 + 4) * 3 + 1];
    assert_eq!(test.images.data()[((3 + 1) * 5 + 2) * 6 + 4], nhwc);
    // load_test reads only the test split, and detect picks .npz.
    let (source, t) = load_test(Some(&path), &DataOptions::default()).unwrap();
    assert_eq!(source.format, Format::Npz);
    assert_eq!(t.images.data(), test.images.data());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn npz_one_set_is_split_only_on_request() {
    let dir = scratch("npz-whole");
    let path = dir.join("d.npz");
    let n = 10;
    let px: Vec<f32> = (0..n * 4).map(|v| v as f32).collect();
    write_zip(
        &path,
        &[
            ("images.npy", npy_f32(&[n, 1, 2, 2], px)),
            (
                "labels.npy",
                labels(&(0..n as i64).map(|i| i % 2).collect::<Vec<_>>()),
            ),
        ],
        CompressionMethod::Stored,
    );
    let (_, all) = load_test(Some(&path), &DataOptions::default()).unwrap();
    assert_eq!(all.len(), n);
    let e = load(Some(&path), &DataOptions::default()).unwrap_err();
    assert_names(&e, "--test-split");
    let opts = DataOptions {
        test_split: Some(0.3),
        seed: 7,
        ..Default::default()
    };
    let (source, train, test) = load(Some(&path), &opts).unwrap();
    assert_eq!((train.len(), test.len()), (7, 3));
    assert!(source.to_string().contains("test split 0.3"), "{source}");
    // load_test with the same options gives the same test side.
    let (_, test2) = load_test(Some(&path), &opts).unwrap();
    assert_eq!(test.images.data(), test2.images.data());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn npy_pairs_by_directory_and_by_file() {
    let dir = scratch("npy");
    std::fs::write(dir.join("x.npy"), npy_u8(&[3, 2, 2], &[255; 12])).unwrap();
    std::fs::write(dir.join("y.npy"), npy_bytes_raw("|i1", &[3], &[0, 1, 2])).unwrap();
    assert_eq!(detect(&dir).unwrap(), Format::NpyPair);
    let (_, d) = load_test(Some(&dir), &DataOptions::default()).unwrap();
    assert_eq!((d.images.dims(), d.classes), (&[3, 1, 2, 2][..], 3));
    assert!(d.images.data().iter().all(|&v| v == 1.0));
    let (_, f) = load_test(Some(&dir.join("x.npy")), &DataOptions::default()).unwrap();
    assert_eq!(f.labels, d.labels);
    std::fs::write(dir.join("pixels.npy"), npy_u8(&[1, 1, 1], &[0])).unwrap();
    let e = load_test(Some(&dir.join("pixels.npy")), &DataOptions::default()).unwrap_err();
    assert_names(&e, "pixels.npy");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// CIFAR-10 records: label, then the red, green and blue planes.
fn cifar_records(labels: &[u8]) -> Vec<u8> {
    let mut b = Vec::new();
    for (i, &l) in labels.iter().enumerate() {
        b.push(l);
        for c in 0..3u8 {
            b.extend((0..1024).map(|p| (p as u8).wrapping_add(c * 50).wrapping_add(i as u8)));
        }
    }
    b
}

#[test]
fn cifar_binary_layout() {
    let dir = scratch("cifar");
    std::fs::write(dir.join("data_batch_1.bin"), cifar_records(&[6, 9])).unwrap();
    std::fs::write(dir.join("data_batch_2.bin"), cifar_records(&[0])).unwrap();
    std::fs::write(dir.join("test_batch.bin"), cifar_records(&[3])).unwrap();
    assert_eq!(detect(&dir).unwrap(), Format::Cifar10);
    let (source, train, test) = load(Some(&dir), &DataOptions::default()).unwrap();
    assert_eq!(source.class_names.as_ref().unwrap()[3], "cat");
    assert_eq!(train.labels, [6, 9, 0], "batches in numeric order");
    assert_eq!((train.images.dims(), test.len()), (&[3, 3, 32, 32][..], 1));
    // Image 1, green plane (c = 1), pixel 5: byte 5 + 50 + 1.
    let at = (3 + 1) * 1024 + 5;
    assert_eq!(train.images.data()[at], f32::from(56u8) / 255.0);
    // Corrupt batches: a truncated record, a label out of range.
    std::fs::write(dir.join("test_batch.bin"), &cifar_records(&[3])[..3000]).unwrap();
    let e = cifar::read_dir_test(&dir).unwrap_err();
    assert!(matches!(e, InteropError::Corrupt { .. }));
    assert_names(&e, "test_batch.bin");
    std::fs::write(dir.join("test_batch.bin"), cifar_records(&[1, 10])).unwrap();
    let e = cifar::read_dir_test(&dir).unwrap_err();
    assert_names(&e, "record 1");
    assert_names(&e, "label 10");
    std::fs::remove_dir_all(&dir).unwrap();
}

fn gray_png(path: &Path, w: u32, h: u32, seed: u8) {
    let px: Vec<u8> = (0..w * h)
        .map(|i| (i as u8).wrapping_mul(7).wrapping_add(seed))
        .collect();
    image::GrayImage::from_raw(w, h, px)
        .unwrap()
        .save(path)
        .unwrap();
}

#[test]
fn image_folder_splits_sorted_classes_and_errors() {
    let dir = scratch("folder");
    for (split, n) in [("train", 2), ("test", 1)] {
        for class in ["b", "a"] {
            let c = dir.join(split).join(class);
            std::fs::create_dir_all(&c).unwrap();
            for i in 0..n {
                gray_png(&c.join(format!("{i}.png")), 4, 3, i as u8);
            }
        }
    }
    // A hidden file is skipped.
    std::fs::write(dir.join("train/a/.DS_Store"), b"junk").unwrap();
    assert_eq!(detect(&dir).unwrap(), Format::ImageFolder);
    let (source, train, test) = load(Some(&dir), &DataOptions::default()).unwrap();
    assert_eq!(source.class_names.unwrap(), ["a", "b"]);
    assert_eq!(train.labels, [0, 0, 1, 1]);
    assert_eq!((train.images.dims(), test.len()), (&[4, 1, 3, 4][..], 2));
    let first: Vec<f32> = (0..12u8)
        .map(|i| f32::from(i.wrapping_mul(7)) / 255.0)
        .collect();
    assert_eq!(
        &train.images.data()[..12],
        first.as_slice(),
        "pixels as IDX scales them"
    );
    // Resizing on read, then normalization.
    let opts = DataOptions {
        transform: Transform {
            resize: Some("6x8".parse().unwrap()),
            normalize: Some("mean=0.5:std=0.25".parse().unwrap()),
        },
        ..Default::default()
    };
    let (_, t) = load_test(Some(&dir), &opts).unwrap();
    assert_eq!(t.images.dims(), &[2, 1, 6, 8]);
    // A different size without --resize names both files; a non-image file names itself.
    gray_png(&dir.join("test/b/9.png"), 5, 5, 0);
    let e = load_test(Some(&dir), &DataOptions::default()).unwrap_err();
    assert!(matches!(e, InteropError::Shape { .. }), "{e}");
    assert_names(&e, "9.png");
    std::fs::remove_file(dir.join("test/b/9.png")).unwrap();
    std::fs::write(dir.join("test/a/notes.txt"), b"not an image").unwrap();
    let e = load_test(Some(&dir), &DataOptions::default()).unwrap_err();
    assert_names(&e, "notes.txt");
    std::fs::write(dir.join("test/a/notes.txt"), b"\x89PNG\r\n\x1a\n truncated").unwrap();
    let e = load_test(Some(&dir), &DataOptions::default()).unwrap_err();
    assert!(matches!(e, InteropError::Corrupt { .. }), "{e}");
    // A test class unknown to training.
    std::fs::remove_file(dir.join("test/a/notes.txt")).unwrap();
    std::fs::create_dir_all(dir.join("test/zebra")).unwrap();
    let e = image_folder::read_test_split(&dir, Default::default()).unwrap_err();
    assert_names(&e, "zebra");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The progress calls of the folder read by `image_folder_reports_progress_by_tenths`.
static PROGRESS: std::sync::Mutex<Vec<(String, usize, usize)>> = std::sync::Mutex::new(Vec::new());

fn record_progress(p: &image_folder::FolderProgress<'_>) {
    let folder = p.folder.file_name().unwrap().to_string_lossy().into_owned();
    PROGRESS.lock().unwrap().push((folder, p.done, p.total));
}

#[test]
fn image_folder_reports_progress_by_tenths() {
    let dir = scratch("folder-progress");
    // 23 training images over 2 classes, 3 test images.
    for (split, class, n) in [("train", "a", 11), ("train", "b", 12), ("test", "a", 3)] {
        let c = dir.join(split).join(class);
        std::fs::create_dir_all(&c).unwrap();
        for i in 0..n {
            gray_png(&c.join(format!("{i:02}.png")), 3, 2, i as u8);
        }
    }
    let opts = DataOptions {
        progress: Some(record_progress),
        ..Default::default()
    };
    let (_, train, test) = load(Some(&dir), &opts).unwrap();
    assert_eq!((train.len(), test.len()), (23, 3));
    let calls = std::mem::take(&mut *PROGRESS.lock().unwrap());
    let train_calls: Vec<usize> = calls
        .iter()
        .filter(|c| c.0 == "train")
        .map(|c| {
            assert_eq!(c.2, 23);
            c.1
        })
        .collect();
    // Before the first image, at each tenth (3, 5, 7, 10, 12, 14, 17, 19, 21), and at the end.
    assert_eq!(train_calls, [0, 3, 5, 7, 10, 12, 14, 17, 19, 21, 23]);
    let test_calls: Vec<(usize, usize)> = calls
        .iter()
        .filter(|c| c.0 == "test")
        .map(|c| (c.1, c.2))
        .collect();
    assert_eq!(test_calls, [(0, 3), (1, 3), (2, 3), (3, 3)]);
    // Without a callback nothing is called; an error stops the calls where it happens.
    load(Some(&dir), &DataOptions::default()).unwrap();
    assert!(PROGRESS.lock().unwrap().is_empty());
    std::fs::write(dir.join("test/a/01.png"), b"\x89PNG\r\n\x1a\n cut").unwrap();
    assert!(load_test(Some(&dir), &opts).is_err());
    let calls = std::mem::take(&mut *PROGRESS.lock().unwrap());
    assert_eq!(
        calls.iter().map(|c| c.1).collect::<Vec<_>>(),
        [0, 1],
        "{calls:?}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Byte offsets of the 4-byte little-endian signature `sig` in `b`.
fn find_all(b: &[u8], sig: u32) -> Vec<usize> {
    b.windows(4)
        .enumerate()
        .filter(|(_, w)| *w == sig.to_le_bytes())
        .map(|(i, _)| i)
        .collect()
}

/// Sets the declared uncompressed size of every member (local and central headers).
fn lie_about_size(b: &mut [u8], size: u32) {
    for at in find_all(b, 0x0403_4b50) {
        b[at + 22..at + 26].copy_from_slice(&size.to_le_bytes());
    }
    for at in find_all(b, 0x0201_4b50) {
        b[at + 24..at + 28].copy_from_slice(&size.to_le_bytes());
    }
}

#[test]
fn hostile_npz_files_are_typed_errors() {
    let dir = scratch("hostile");
    let path = dir.join("h.npz");
    let read = |bytes: &[u8]| -> InteropError {
        std::fs::write(&path, bytes).unwrap();
        let e = match Npz::open(&path) {
            Ok(mut z) => z.read_test(None).unwrap_err(),
            Err(e) => e,
        };
        assert_names(&e, "h.npz");
        e
    };
    // A deflated member declaring far more than deflate can produce from its bytes.
    write_zip(
        &path,
        &[
            (
                "x.npy",
                npy_u8(&[1000, 32, 32], &vec![0; 1 << 20][..1_024_000]),
            ),
            ("y.npy", labels(&[0; 1000])),
        ],
        CompressionMethod::Deflated,
    );
    let mut bomb = std::fs::read(&path).unwrap();
    lie_about_size(&mut bomb, u32::MAX - 1);
    let e = read(&bomb);
    assert_names(&e, "declares");
    // A stored member whose header lies about its size.
    write_zip(
        &path,
        &[("x.npy", npy_u8(&[1, 1, 1], &[0])), ("y.npy", labels(&[0]))],
        CompressionMethod::Stored,
    );
    let good = std::fs::read(&path).unwrap();
    let mut liar = good.clone();
    lie_about_size(&mut liar, 4096);
    read(&liar);
    // Every truncation of a valid archive.
    for cut in (0..good.len()).step_by(7) {
        read(&good[..cut]);
    }
    // Wrong element types, shapes and counts.
    let cases: Vec<(Members, &str)> = vec![
        (
            vec![
                ("x.npy", npy_u8(&[1, 1, 1], &[0])),
                ("y.npy", npy_f32(&[1], vec![0.0])),
            ],
            "integer type",
        ),
        (
            vec![
                ("x.npy", npy_bytes_raw("<i4", &[1, 1, 1], &[0; 4])),
                ("y.npy", labels(&[0])),
            ],
            "uint8",
        ),
        (
            vec![
                ("x.npy", npy_u8(&[2, 1, 1], &[0, 0])),
                ("y.npy", labels(&[0])),
            ],
            "1 labels for 2 images",
        ),
        (
            vec![("x.npy", npy_u8(&[1, 1], &[0])), ("y.npy", labels(&[0]))],
            "N x H x W",
        ),
        (
            vec![
                ("x.npy", npy_u8(&[1, 1, 1], &[0])),
                ("y.npy", labels(&[70000])),
            ],
            "label 70000",
        ),
        (
            vec![
                ("x.npy", npy_u8(&[1, 1, 1], &[0])),
                ("y.npy", labels(&[-1])),
            ],
            "label -1",
        ),
        (
            vec![
                ("x.npy", npy_f32(&[1, 1, 1], vec![f32::NAN])),
                ("y.npy", labels(&[0])),
            ],
            "non-finite",
        ),
        (
            vec![("x.npy", npy_u8(&[1, 1, 4], &[0])), ("y.npy", labels(&[0]))],
            "needs 4 bytes",
        ),
        (vec![("weights.npy", npy_u8(&[1], &[0]))], "want x_train"),
    ];
    for (members, what) in cases {
        write_zip(&path, &members, CompressionMethod::Deflated);
        let e = read(&std::fs::read(&path).unwrap());
        assert_names(&e, what);
    }
    std::fs::write(&path, b"PK\x03\x04 not really").unwrap();
    read(&std::fs::read(&path).unwrap());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_path_of_no_known_format_says_what_is_read() {
    let dir = scratch("unknown");
    std::fs::write(dir.join("notes.txt"), b"x").unwrap();
    let e = detect(&dir).unwrap_err();
    assert_names(&e, "CIFAR-10");
    let e = detect(&dir.join("notes.txt")).unwrap_err();
    assert_names(&e, "notes.txt");
    std::fs::remove_dir_all(&dir).unwrap();
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Arbitrary bytes as an .npz, a CIFAR batch and an image never panic.
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..4096), flip in any::<(usize, u8)>()) {
        let dir = scratch(&format!("prop-{}", flip.0 % 7));
        let npz = dir.join("p.npz");
        std::fs::write(&npz, &bytes).unwrap();
        let _ = Npz::open(&npz).and_then(|mut z| z.read_test(None));
        std::fs::write(dir.join("test_batch.bin"), &bytes).unwrap();
        let _ = cifar::read_dir_test(&dir);
        let png = dir.join("p.png");
        std::fs::write(&png, &bytes).unwrap();
        let _ = image_folder::decode(&png);
        // A valid archive with one byte changed.
        write_zip(&npz, &[("x.npy", npy_u8(&[2, 2, 2], &[9; 8])), ("y.npy", labels(&[0, 1]))], CompressionMethod::Deflated);
        let mut b = std::fs::read(&npz).unwrap();
        let i = flip.0 % b.len();
        b[i] ^= flip.1 | 1;
        std::fs::write(&npz, &b).unwrap();
        let _ = Npz::open(&npz).and_then(|mut z| z.read_test(None));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
