//! Fuzzes the foreign data readers of `interop`: the first byte picks the reader and the rest
//! is its input, which must give a dataset or an error naming what is wrong, never a panic,
//! and never an allocation beyond what the bytes can describe.
//!
//! - 0: a `.npz` archive (zip central directory, stored and deflated members, `.npy`
//!   headers, image and label arrays, split detection);
//! - 1: the same, but the input is the payload of a well-formed stored member `x.npy` beside
//!   valid labels, which sends the fuzzer straight into the `.npy` and array checks;
//! - 2: a CIFAR-10 batch;
//! - 3: an image (PNG or JPEG decoders, bounded), then resized and normalized.
#![no_main]

use std::io::Write;
use std::path::Path;

use interop::npz::Npz;
use interop::transform::{Normalize, Resize, Transform};
use libfuzzer_sys::fuzz_target;
use tensor_core::Tensor;

fn stored_npz(x: &[u8]) -> Vec<u8> {
    let mut z = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Stored);
    z.start_file("x.npy", opts).unwrap();
    z.write_all(x).unwrap();
    z.start_file("y.npy", opts).unwrap();
    z.write_all(&interop::npy::npy_bytes_i64(&[1], &[0])).unwrap();
    z.finish().unwrap().into_inner()
}

fuzz_target!(|data: &[u8]| {
    let Some((&tag, rest)) = data.split_first() else {
        return;
    };
    let name = Path::new("fuzz");
    match tag % 4 {
        0 | 1 => {
            let bytes = if tag % 4 == 0 {
                rest.to_vec()
            } else {
                stored_npz(rest)
            };
            if let Ok(mut z) = Npz::from_bytes(bytes, name) {
                let _ = z.read_all();
                let _ = z.read_test(None);
            }
        }
        2 => {
            let (mut px, mut labels) = (Vec::new(), Vec::new());
            let _ = interop::cifar::parse_batch(rest, name, &mut px, &mut labels);
        }
        _ => {
            if let Ok(img) = interop::image_folder::decode_bytes(rest, name) {
                let (w, h) = (img.width() as usize, img.height() as usize);
                if w * h <= 1 << 16 {
                    let px: Vec<f32> = img.to_luma8().iter().map(|&p| f32::from(p)).collect();
                    let t = Tensor::new(&[1, 1, h, w], px).unwrap();
                    let tr = Transform {
                        resize: Some(Resize { height: 7, width: 5 }),
                        normalize: Some(Normalize { mean: vec![0.5], std: vec![0.25] }),
                    };
                    let _ = tr.apply(t);
                }
            }
        }
    }
});
