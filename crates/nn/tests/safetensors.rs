//! safetensors import/export with PyTorch names, against outputs PyTorch computed on the same
//! weights (fixtures made by fixtures/make_onnx_fixtures.py from torch state_dicts in bfloat16
//! and float16).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use nn::io::npy::read_npy;
use nn::io::safetensors::{
    SaveDtype, assign_safetensors, bf16_to_f32, f16_to_f32, f32_to_bf16, f32_to_f16,
    load_safetensors, safetensors_bytes,
};
use nn::{Mode, Model};
use safetensors::tensor::{Dtype, TensorView};
use tensor_core::Tensor;
use tensor_core::rng::Rng;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/onnx")
}

fn logits(m: &mut Model, x: &Tensor) -> Tensor {
    m.forward(x, Mode::Eval).unwrap()
}

#[test]
fn pytorch_state_dicts_load_onto_the_zoo() {
    for (file, arch) in [
        ("lenet300_bfloat16", "lenet300"),
        ("lenet5_float16", "lenet5"),
    ] {
        let mut m = load_safetensors(fixtures().join(format!("{file}.safetensors")), arch).unwrap();
        let x = read_npy(fixtures().join(format!("{file}.input.npy"))).unwrap();
        let want = read_npy(fixtures().join(format!("{file}.expected.npy"))).unwrap();
        let y = logits(&mut m, &x);
        let err = tensor_core::testing::max_rel_error(y.data(), want.data(), 1e-3);
        println!("{file}: max rel error vs torch {err:.2e}");
        assert!(err <= 1e-4, "{file}: {err}");
        // The same through load_any.
        let mut n =
            nn::io::load_any(fixtures().join(format!("{file}.safetensors")), Some(arch)).unwrap();
        assert_eq!(logits(&mut n, &x), y);
        assert!(nn::io::load_any(fixtures().join(format!("{file}.safetensors")), None).is_err());
    }
}

fn zoo(arch: &str, seed: u64) -> Model {
    nn::zoo::build(arch, &mut Rng::seed_from_u64(seed)).unwrap()
}

fn input(m: &Model, seed: u64) -> Tensor {
    let mut rng = Rng::seed_from_u64(seed);
    let mut dims = vec![2];
    dims.extend_from_slice(&m.input_shape);
    let n = dims.iter().product();
    Tensor::new(&dims, (0..n).map(|_| rng.uniform()).collect()).unwrap()
}

#[test]
fn save_then_load_is_exact_in_f32() {
    for arch in ["lenet300", "lenet5", "cnn-teacher"] {
        let mut a = zoo(arch, 1);
        let bytes = safetensors_bytes(&a, SaveDtype::F32).unwrap();
        let mut b = zoo(arch, 2);
        assign_safetensors(&mut b, &bytes, "mem").unwrap();
        for (la, lb) in a.layers.iter().zip(&b.layers) {
            for (pa, pb) in la.params().iter().zip(lb.params()) {
                assert_eq!(pa.value, pb.value, "{arch} {}", pa.name);
            }
        }
        let x = input(&a, 3);
        assert_eq!(logits(&mut a, &x), logits(&mut b, &x), "{arch}");
    }
}

#[test]
fn half_precision_export_rounds_each_weight() {
    let a = zoo("lenet300", 4);
    for dt in [SaveDtype::F16, SaveDtype::BF16] {
        let bytes = safetensors_bytes(&a, dt).unwrap();
        let mut b = zoo("lenet300", 5);
        assign_safetensors(&mut b, &bytes, "mem").unwrap();
        let round = |v: f32| match dt {
            SaveDtype::F16 => f16_to_f32(f32_to_f16(v)),
            _ => bf16_to_f32(f32_to_bf16(v)),
        };
        for (la, lb) in a.layers.iter().zip(&b.layers) {
            for (pa, pb) in la.params().iter().zip(lb.params()) {
                let want: Vec<f32> = pa.value.data().iter().map(|&v| round(v)).collect();
                assert_eq!(pb.value.data(), want.as_slice());
            }
        }
    }
}

/// A safetensors buffer from named f32 tensors.
fn file_of(tensors: &[(&str, Vec<usize>, Vec<f32>)]) -> Vec<u8> {
    let bytes: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
        .iter()
        .map(|(n, d, v)| {
            (
                n.to_string(),
                d.clone(),
                v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            )
        })
        .collect();
    let views: HashMap<String, TensorView<'_>> = bytes
        .iter()
        .map(|(n, d, b)| {
            (
                n.clone(),
                TensorView::new(Dtype::F32, d.clone(), b).unwrap(),
            )
        })
        .collect();
    safetensors::serialize(views, None).unwrap()
}

fn lenet300_tensors(m: &Model) -> Vec<(String, Vec<usize>, Vec<f32>)> {
    let mut out = Vec::new();
    let mut k = 0;
    for l in &m.layers {
        if l.kind() == "linear" {
            k += 1;
            for p in l.params() {
                out.push((
                    format!("fc{k}.{}", p.name),
                    p.value.dims().to_vec(),
                    p.value.data().to_vec(),
                ));
            }
        }
    }
    out
}

#[test]
fn missing_extra_and_misshapen_tensors_are_named() {
    let m = zoo("lenet300", 6);
    let all = lenet300_tensors(&m);
    let as_refs = |v: &[(String, Vec<usize>, Vec<f32>)]| -> Vec<u8> {
        let r: Vec<(&str, Vec<usize>, Vec<f32>)> = v
            .iter()
            .map(|(n, d, x)| (n.as_str(), d.clone(), x.clone()))
            .collect();
        file_of(&r)
    };
    // Missing.
    let missing: Vec<_> = all
        .iter()
        .filter(|(n, _, _)| n != "fc2.bias")
        .cloned()
        .collect();
    let e = assign_safetensors(&mut zoo("lenet300", 0), &as_refs(&missing), "mem")
        .unwrap_err()
        .to_string();
    assert!(e.contains("fc2.bias"), "{e}");
    // Extra.
    let mut extra = all.clone();
    extra.push(("fc9.weight".into(), vec![2], vec![0.0, 1.0]));
    let e = assign_safetensors(&mut zoo("lenet300", 0), &as_refs(&extra), "mem")
        .unwrap_err()
        .to_string();
    assert!(e.contains("fc9.weight"), "{e}");
    // Shape mismatch.
    let mut bad = all.clone();
    bad[0].1 = vec![784, 300];
    let e = assign_safetensors(&mut zoo("lenet300", 0), &as_refs(&bad), "mem")
        .unwrap_err()
        .to_string();
    assert!(e.contains("fc1.weight") && e.contains("[784, 300]"), "{e}");
    // Garbage.
    assert!(
        assign_safetensors(
            &mut zoo("lenet300", 0),
            b"\xff\xff\xff\xff\xff\xff\xff\x7f{",
            "mem"
        )
        .is_err()
    );
    assert!(assign_safetensors(&mut zoo("lenet300", 0), b"", "mem").is_err());
}

#[test]
fn sequential_indices_are_accepted_in_numeric_order() {
    // nn.Sequential(Flatten, Linear, ReLU, Linear, ReLU, Linear) names its linears 1, 3, 5.
    let m = zoo("lenet300", 7);
    let renamed: Vec<(String, Vec<usize>, Vec<f32>)> = lenet300_tensors(&m)
        .into_iter()
        .map(|(n, d, v)| {
            let n = n
                .replace("fc1.", "model.1.")
                .replace("fc2.", "model.3.")
                .replace("fc3.", "model.5.");
            (n, d, v)
        })
        .collect();
    let r: Vec<(&str, Vec<usize>, Vec<f32>)> = renamed
        .iter()
        .map(|(n, d, x)| (n.as_str(), d.clone(), x.clone()))
        .collect();
    let mut b = zoo("lenet300", 0);
    assign_safetensors(&mut b, &file_of(&r), "mem").unwrap();
    let mut a = m;
    let x = input(&a, 8);
    assert_eq!(logits(&mut a, &x), logits(&mut b, &x));
}

/// Every zoo model (cnn-teacher with its BatchNorm running statistics moved off their
/// initial values) and an architecture spec written as safetensors loads back without
/// `--arch` (the file records it) to the same native bytes: weights, biases and BatchNorm
/// buffers exact.
#[test]
fn every_zoo_model_round_trips_with_the_recorded_architecture() {
    use nn::io::safetensors::{load_safetensors_inferred, recorded_arch};
    let dir = std::env::temp_dir().join(format!("slimnet-st-rt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for arch in ["lenet300", "lenet5", "cnn-teacher", "mlp:784-20-10"] {
        let mut rng = Rng::seed_from_u64(9);
        let mut model = nn::zoo::build_spec(arch, &mut rng).unwrap();
        // A training-mode forward moves BatchNorm's running mean and variance.
        let x = Tensor::new(
            &[4, 1, 28, 28],
            (0..4 * 784).map(|_| rng.uniform()).collect(),
        )
        .unwrap();
        let x = nn::metrics::to_model_input(&model, x).unwrap();
        model.forward(&x, Mode::Train).unwrap();
        model.clear_cache();
        let bytes = safetensors_bytes(&model, SaveDtype::F32).unwrap();
        assert_eq!(recorded_arch(&bytes).as_deref(), Some(arch));
        let p = dir.join("m.safetensors");
        std::fs::write(&p, &bytes).unwrap();
        let mut back = load_safetensors_inferred(&p, None).unwrap();
        // Every parameter, and the eval-mode logits (which read BatchNorm's running
        // statistics), bit for bit. (Dropout's mask seed is not a weight and differs.)
        let bits = |m: &Model| -> Vec<u32> {
            m.named_params()
                .iter()
                .flat_map(|(_, p)| {
                    p.value
                        .data()
                        .iter()
                        .map(|v| v.to_bits())
                        .collect::<Vec<_>>()
                })
                .collect()
        };
        assert_eq!(bits(&back), bits(&model), "{arch}: parameters");
        let a = logits(&mut model, &x);
        let b = logits(&mut back, &x);
        let a: Vec<u32> = a.data().iter().map(|v| v.to_bits()).collect();
        let b: Vec<u32> = b.data().iter().map(|v| v.to_bits()).collect();
        assert!(a == b, "{arch}: eval logits differ");
    }
    // A file that records no architecture: the error asks for --arch.
    let st = fixtures().join("lenet300_bfloat16.safetensors");
    if recorded_arch(&std::fs::read(&st).unwrap()).is_none() {
        let e = load_safetensors_inferred(&st, None)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("--arch"), "{e}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A recorded architecture that cannot be built (issue 14, corpus case
/// `st-arch-recorded-bogus`) is an error naming the file, the architecture and where it came
/// from; so is a bogus `--arch`.
#[test]
fn an_unbuildable_architecture_names_the_file() {
    use nn::io::safetensors::load_safetensors_inferred;
    let dir = std::env::temp_dir().join(format!("slimnet-st-arch-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let header = br#"{"__metadata__":{"slimnet_arch":"mlp:784-x-10"}}"#;
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header);
    let p = dir.join("bogus.safetensors");
    std::fs::write(&p, &bytes).unwrap();
    let e = load_safetensors_inferred(&p, None)
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("bogus.safetensors") && e.contains("mlp:784-x-10") && e.contains("recorded"),
        "{e}"
    );
    let e = load_safetensors_inferred(&p, Some("nope"))
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("bogus.safetensors") && e.contains("--arch"),
        "{e}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
