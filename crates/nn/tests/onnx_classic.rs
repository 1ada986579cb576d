//! The op and graph forms of the classic architectures (issue 13) on tiny PyTorch exports
//! made by `scripts/classic_onnx.py fixtures`: which layers they import into, that they
//! match onnxruntime (the same criterion as tests/onnx.rs: `|a - b| / max(|b|, 1e-3)` at most
//! 1e-4 per logit), that they train (a backward pass through every new layer and block), and
//! the errors for what slimnet cannot hold.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use nn::io::npy::read_npy;
use nn::io::onnx::{export_bytes, import, import_bytes};
use nn::{Layer, Mode, Model};
use tensor_core::Tensor;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/onnx")
}

/// Every layer kind of `m`, branches included, with its count.
fn kinds(m: &Model) -> BTreeMap<String, usize> {
    let mut k = BTreeMap::new();
    m.visit(&mut |_, l: &dyn Layer| *k.entry(l.kind().to_string()).or_default() += 1);
    k
}

fn check_against_onnxruntime(case: &str) -> Model {
    let mut m = import(fixtures().join(format!("{case}.onnx"))).unwrap_or_else(|e| panic!("{e}"));
    let x = read_npy(fixtures().join(format!("{case}.input.npy"))).unwrap();
    let want = read_npy(fixtures().join(format!("{case}.expected.npy"))).unwrap();
    let y = m.forward(&x, Mode::Eval).unwrap();
    assert_eq!(y.dims(), want.dims(), "{case}");
    let err = tensor_core::testing::max_rel_error(y.data(), want.data(), 1e-3);
    assert!(err <= 1e-4, "{case}: max relative error {err:e}");
    m
}

#[test]
fn mobilenet_v3_block_imports_hard_swish_se_and_relu6() {
    for (case, hard_swish, hard_sigmoid) in [("mbv3_block_op13", 0, 3), ("mbv3_block_op17", 2, 1)] {
        let m = check_against_onnxruntime(case);
        let k = kinds(&m);
        let n = |s: &str| k.get(s).copied().unwrap_or(0);
        // Opset 13 writes hard swish as x * HardSigmoid(x): a Mul-merged block each.
        assert_eq!(n("hard_swish"), hard_swish, "{case}: {k:?}");
        assert_eq!(n("hard_sigmoid"), hard_sigmoid, "{case}: {k:?}");
        assert_eq!(n("clip"), 2, "{case}: {k:?}");
        // SE gate and residual (+ two hard swishes at opset 13).
        assert_eq!(
            n("parallel"),
            2 + 2 * (hard_swish == 0) as usize,
            "{case}: {k:?}"
        );
        // BatchNorm folded into the convolutions, depthwise included.
        assert_eq!(
            n("add_const") + n("mul_const") + n("batchnorm2d"),
            0,
            "{case}: {k:?}"
        );
    }
}

#[test]
fn silu_and_squeeze_excitation_gates_are_mul_blocks() {
    for case in ["silu_se_op13", "silu_se_op17"] {
        let k = kinds(&check_against_onnxruntime(case));
        // Two SiLUs (x * sigmoid(x)), the SE gate.
        assert_eq!(k.get("parallel"), Some(&3), "{case}: {k:?}");
        assert_eq!(k.get("sigmoid"), Some(&3), "{case}: {k:?}");
    }
}

#[test]
fn densenet_concatenations_nest_into_fork_joins() {
    for case in ["dense_concat_op13", "dense_concat_op17"] {
        let m = check_against_onnxruntime(case);
        let k = kinds(&m);
        // One concatenation block per dense layer (3 + 1), all on the main path.
        assert_eq!(k.get("parallel"), Some(&4), "{case}: {k:?}");
        let top = m.layers.iter().filter(|l| l.kind() == "parallel").count();
        assert_eq!(top, 4, "{case}");
    }
}

#[test]
fn conv1d_and_1d_pooling_run_as_2d_windows() {
    for case in ["conv1d_op13", "conv1d_op17"] {
        let m = check_against_onnxruntime(case);
        let k = kinds(&m);
        assert_eq!(k.get("conv2d"), Some(&3), "{case}: {k:?}");
        assert_eq!(k.get("maxpool2d"), Some(&1), "{case}: {k:?}");
        assert_eq!(k.get("avgpool2d"), Some(&1), "{case}: {k:?}");
        assert_eq!(m.input_shape.as_slice(), &[2, 24], "{case}");
    }
}

#[test]
fn sum_and_attribute_clip_of_old_opsets() {
    let k = kinds(&check_against_onnxruntime("sum_clip_op9"));
    assert_eq!(k.get("parallel"), Some(&1), "{k:?}");
    assert_eq!(k.get("clip"), Some(&2), "{k:?}");
    assert_eq!(k.get("hard_sigmoid"), Some(&1), "{k:?}");
}

#[test]
fn models_without_a_batch_dimension_get_one_at_import() {
    // Exported on one [3, 8, 8] sample: Unsqueeze(0) -> Conv -> Squeeze(0) -> Relu ->
    // flatten(0) (Shape/Slice/Concat/Reshape) -> MatMul -> Add. slimnet runs a batch of 3.
    let m = check_against_onnxruntime("nobatch_op17");
    assert_eq!(m.input_shape, [3, 8, 8]);
    let k = kinds(&m);
    assert_eq!(k.get("conv2d"), Some(&1), "{k:?}");
    assert_eq!(k.get("linear"), Some(&1), "{k:?}");
    // An MLP on a rank-1 input [12]: MatMul/Add/Clip/Mul on 1-D values.
    let m = check_against_onnxruntime("nobatch_mlp_op17");
    assert_eq!(m.input_shape, [12]);
    assert_eq!(kinds(&m).get("linear"), Some(&2));
    // Batches of any size run (the batch dimension is slimnet's own).
    let mut m = import(fixtures().join("nobatch_mlp_op17.onnx")).unwrap();
    let x = read_npy(fixtures().join("nobatch_mlp_op17.input.npy")).unwrap();
    let want = read_npy(fixtures().join("nobatch_mlp_op17.expected.npy")).unwrap();
    let one = Tensor::new(&[1, 12], x.data()[12..24].to_vec()).unwrap();
    let y = m.forward(&one, Mode::Eval).unwrap();
    let err = tensor_core::testing::max_rel_error(y.data(), &want.data()[4..8], 1e-3);
    assert!(err <= 1e-4, "sample 1 alone: {err:e}");
}

#[test]
fn an_unbatched_value_under_an_unsupported_op_is_refused_naming_it() {
    use nn::io::onnx::proto::{ModelProto, NodeProto};
    use prost::Message;
    let bytes = std::fs::read(fixtures().join("nobatch_mlp_op17.onnx")).unwrap();
    let mut p = ModelProto::decode(bytes.as_slice()).unwrap();
    let g = p.graph.as_mut().unwrap();
    // A Softmax over the 1-D hidden value (axis 0 of the graph is not slimnet's axis 0).
    let at = g.node.iter().position(|n| n.op_type == "Mul").unwrap();
    let out = g.node[at].output[0].clone();
    g.node[at].output[0] = "pre_softmax".into();
    g.node.insert(
        at + 1,
        NodeProto {
            op_type: "Softmax".into(),
            name: "sm".into(),
            input: vec!["pre_softmax".into()],
            output: vec![out],
            ..Default::default()
        },
    );
    let e = import_bytes(&p.encode_to_vec(), "mem")
        .unwrap_err()
        .to_string();
    for want in [
        "'sm'",
        "Softmax",
        "without a batch dimension",
        "batched example input",
    ] {
        assert!(e.contains(want), "{e} lacks {want}");
    }
}

#[test]
fn new_forms_export_and_reimport_with_the_same_logits() {
    for case in [
        "mbv3_block_op17",
        "dense_concat_op13",
        "conv1d_op17",
        "sum_clip_op9",
    ] {
        let mut m = import(fixtures().join(format!("{case}.onnx"))).unwrap();
        let x = read_npy(fixtures().join(format!("{case}.input.npy"))).unwrap();
        let y = m.forward(&x, Mode::Eval).unwrap();
        let bytes = export_bytes(&m).unwrap_or_else(|e| panic!("{case}: {e}"));
        let mut back = import_bytes(&bytes, case).unwrap();
        let z = back.forward(&x, Mode::Eval).unwrap();
        let err = tensor_core::testing::max_rel_error(z.data(), y.data(), 1e-3);
        assert!(err <= 1e-5, "{case}: {err:e}");
    }
}

#[test]
fn imported_blocks_train_a_step() {
    // A backward pass through every new layer and block: the gradient of sum(y) with
    // respect to the input, against a central difference on a few input elements.
    for case in [
        "mbv3_block_op17",
        "dense_concat_op17",
        "conv1d_op13",
        "silu_se_op13",
    ] {
        let mut m = import(fixtures().join(format!("{case}.onnx"))).unwrap();
        let x = read_npy(fixtures().join(format!("{case}.input.npy"))).unwrap();
        let loss = |m: &mut Model, x: &Tensor| -> f64 {
            let y = m.forward(x, Mode::Train).unwrap();
            y.data().iter().map(|&v| v as f64).sum()
        };
        let y = m.forward(&x, Mode::Train).unwrap();
        let ones = Tensor::new(y.dims(), vec![1.0; y.numel()]).unwrap();
        let mut g = ones;
        for l in m.layers.iter_mut().rev() {
            g = l.backward(&g).unwrap();
        }
        assert_eq!(g.dims(), x.dims());
        let eps = 1e-2f32;
        for i in [0, x.numel() / 3, x.numel() - 1] {
            let mut xp = x.clone();
            xp.data_mut()[i] += eps;
            let mut xm = x.clone();
            xm.data_mut()[i] -= eps;
            let numeric = (loss(&mut m, &xp) - loss(&mut m, &xm)) / (2.0 * eps as f64);
            let analytic = g.data()[i] as f64;
            assert!(
                (numeric - analytic).abs() <= 2e-2 * (1.0 + numeric.abs()),
                "{case}: d/dx[{i}] numeric {numeric} analytic {analytic}"
            );
        }
    }
}

#[test]
fn initializers_beyond_the_folding_limit_load() {
    // 2100 x 2048 = 4.3 M weights, above the 4 M-element cap on tensors the importer
    // computes (ConstantOfShape, Expand): initializers are bounded by the file only.
    let mut rng = tensor_core::rng::Rng::seed_from_u64(7);
    let fc = nn::layers::Linear::new(2048, 2100, &mut rng).unwrap();
    let mut m = Model::new("big", &[2048], vec![Box::new(fc)]);
    assert!(m.param_count() > nn::io::onnx::fold_limit());
    let bytes = export_bytes(&m).unwrap();
    let mut back = import_bytes(&bytes, "big").unwrap();
    let x = Tensor::new(
        &[2, 2048],
        (0..4096).map(|i| (i % 7) as f32 - 3.0).collect(),
    )
    .unwrap();
    let (a, b) = (
        m.forward(&x, Mode::Eval).unwrap(),
        back.forward(&x, Mode::Eval).unwrap(),
    );
    assert_eq!(a.data(), b.data());
}

/// The full architectures written by `python3 scripts/classic_onnx.py gen` (hundreds of MB,
/// not committed): `SLIMNET_CLASSIC_DIR=/tmp/s7-onnx/classic cargo test --release -p nn
/// --test onnx_classic -- --ignored --nocapture`. Error: `max|a - b| / max|b|` over the logits.
#[test]
#[ignore = "needs the generated architectures (scripts/classic_onnx.py gen)"]
fn classic_architectures_match_onnxruntime() {
    let dir = PathBuf::from(std::env::var("SLIMNET_CLASSIC_DIR").expect("SLIMNET_CLASSIC_DIR"));
    let mut models: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| Some(e.ok()?.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "onnx"))
        .collect();
    models.sort();
    assert!(!models.is_empty(), "no .onnx in {dir:?}");
    for p in models {
        let stem = p.file_stem().unwrap().to_string_lossy().into_owned();
        let arch = stem.rsplit_once("_op").unwrap().0;
        let mut m = import(&p).unwrap_or_else(|e| panic!("{stem}: {e}"));
        let x = read_npy(dir.join(format!("{arch}.input.npy"))).unwrap();
        let want = read_npy(dir.join(format!("{stem}.ort.npy"))).unwrap();
        let y = m.forward(&x, Mode::Eval).unwrap();
        assert_eq!(y.dims(), want.dims(), "{stem}");
        let scale = want.data().iter().fold(0f32, |a, &b| a.max(b.abs()));
        let err = y
            .data()
            .iter()
            .zip(want.data())
            .fold(0f32, |a, (p, q)| a.max((p - q).abs()))
            / scale;
        println!("{stem}: {err:.2e}");
        assert!(err <= 1e-4, "{stem}: {err:e}");
    }
}
