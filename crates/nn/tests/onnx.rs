//! ONNX import against onnxruntime's outputs (fixtures made by fixtures/make_onnx_fixtures.py),
//! export round trips, and hostile files (malformed protobuf, truncation, lying headers).
//!
//! Accuracy criterion: for every logit, `|slimnet - onnxruntime| / max(|onnxruntime|, 1e-3)`
//! must be at most 1e-4 (relative error with an absolute floor of 1e-3, so that logits
//! near zero are compared at 1e-7 absolute).

use std::path::{Path, PathBuf};

use nn::io::npy::read_npy;
use nn::io::onnx::proto::{
    AttributeProto, Dimension, DimensionValue, GraphProto, ModelProto, NodeProto,
    OperatorSetIdProto, TensorShapeProto, TypeProto, TypeProtoTensor, ValueInfoProto,
    attribute_type, data_type,
};
use nn::io::onnx::tensor::encode_f32;
use nn::io::onnx::{export_bytes, import, import_bytes};
use nn::{Mode, Model, NnError};
use prost::Message;
use tensor_core::Tensor;
use tensor_core::rng::Rng;

/// Relative error floor (see the module doc).
const FLOOR: f32 = 1e-3;
/// Largest relative error accepted against onnxruntime.
const RTOL: f32 = 1e-4;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/onnx")
}

fn max_rel(a: &[f32], b: &[f32]) -> f32 {
    tensor_core::testing::max_rel_error(a, b, FLOOR)
}

fn run(model: &mut Model, x: &Tensor) -> Tensor {
    model.forward(x, Mode::Eval).expect("forward")
}

/// Every fixture with stored onnxruntime outputs, by stem.
fn cases() -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(fixtures())
        .expect("fixtures/onnx exists")
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            name.strip_suffix(".expected.npy")
                .filter(|s| fixtures().join(format!("{s}.onnx")).exists())
                .map(str::to_string)
        })
        .collect();
    v.sort();
    v
}

#[test]
fn imported_models_match_onnxruntime() {
    let cases = cases();
    assert!(
        cases.len() >= 20,
        "expected the generated fixtures, found {cases:?}"
    );
    let mut failures = Vec::new();
    for case in &cases {
        let dir = fixtures();
        let result = (|| -> Result<f32, String> {
            let mut model = import(dir.join(format!("{case}.onnx"))).map_err(|e| e.to_string())?;
            let x = read_npy(dir.join(format!("{case}.input.npy"))).map_err(|e| e.to_string())?;
            let want =
                read_npy(dir.join(format!("{case}.expected.npy"))).map_err(|e| e.to_string())?;
            let y = model.forward(&x, Mode::Eval).map_err(|e| e.to_string())?;
            if y.dims() != want.dims() {
                return Err(format!(
                    "shape {:?} vs onnxruntime {:?}",
                    y.dims(),
                    want.dims()
                ));
            }
            Ok(max_rel(y.data(), want.data()))
        })();
        match result {
            Ok(err) => {
                println!("{case:28} max rel error {err:.2e}");
                if err.is_nan() || err > RTOL {
                    failures.push(format!("{case}: max relative error {err:e}"));
                }
            }
            Err(e) => failures.push(format!("{case}: {e}")),
        }
    }
    assert!(failures.is_empty(), "failures:\n{}", failures.join("\n"));
}

#[test]
fn residual_and_concat_graphs_become_parallel_layers() {
    let m = import(fixtures().join("residual_ts_op13.onnx")).unwrap();
    let kinds: Vec<&str> = m.layers.iter().map(|l| l.kind()).collect();
    assert_eq!(
        kinds.iter().filter(|k| **k == "parallel").count(),
        2,
        "{kinds:?}"
    );
    let m = import(fixtures().join("concat_ts_op13.onnx")).unwrap();
    assert_eq!(m.layers[0].kind(), "parallel");
}

#[test]
fn batchnorm_is_folded_into_the_convolution() {
    for case in ["cnn_bn_ts_op9", "cnn_bn_ts_op17", "cnn_bn_dynamo_op18"] {
        let m = import(fixtures().join(format!("{case}.onnx"))).unwrap();
        let kinds: Vec<&str> = m.layers.iter().map(|l| l.kind()).collect();
        assert!(
            !kinds
                .iter()
                .any(|k| k.contains("batch") || k.contains("const")),
            "{case}: {kinds:?}"
        );
    }
}

#[test]
fn unsupported_op_names_node_op_and_attribute() {
    let e = import(fixtures().join("unsupported_lrn.onnx")).unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, NnError::Unsupported(_)), "{msg}");
    for want in ["my_lrn", "LRN", "size"] {
        assert!(msg.contains(want), "{msg} lacks {want}");
    }
    let msg = import(fixtures().join("unsupported_attr.onnx"))
        .unwrap_err()
        .to_string();
    for want in ["gemm_ta", "Gemm", "transA"] {
        assert!(msg.contains(want), "{msg} lacks {want}");
    }
}

// ------------------------------------------------------------------------------------------
// Hand-built models
// ------------------------------------------------------------------------------------------

fn value_info(name: &str, dims: &[Option<i64>]) -> ValueInfoProto {
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            tensor_type: Some(TypeProtoTensor {
                elem_type: data_type::FLOAT,
                shape: Some(TensorShapeProto {
                    dim: dims
                        .iter()
                        .map(|d| Dimension {
                            value: Some(match d {
                                Some(v) => DimensionValue::DimValue(*v),
                                None => DimensionValue::DimParam("batch".into()),
                            }),
                            denotation: String::new(),
                        })
                        .collect(),
                }),
            }),
        }),
        doc_string: String::new(),
    }
}

fn node(
    name: &str,
    op: &str,
    inputs: &[&str],
    outputs: &[&str],
    attrs: Vec<AttributeProto>,
) -> NodeProto {
    NodeProto {
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: outputs.iter().map(|s| s.to_string()).collect(),
        name: name.into(),
        op_type: op.into(),
        attribute: attrs,
        ..Default::default()
    }
}

fn ints_attr(name: &str, v: &[i64]) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: attribute_type::INTS,
        ints: v.to_vec(),
        ..Default::default()
    }
}

fn model(
    nodes: Vec<NodeProto>,
    inits: Vec<nn::io::onnx::proto::TensorProto>,
    input: &[Option<i64>],
    opset: i64,
) -> ModelProto {
    ModelProto {
        ir_version: 8,
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: opset,
        }],
        producer_name: "slimnet-test".into(),
        graph: Some(GraphProto {
            node: nodes,
            name: "g".into(),
            initializer: inits,
            input: vec![value_info("x", input)],
            output: vec![value_info("y", &[None])],
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn linear_model() -> ModelProto {
    let mut rng = Rng::seed_from_u64(3);
    let w: Vec<f32> = (0..12).map(|_| rng.normal()).collect();
    model(
        vec![
            node(
                "fc",
                "Gemm",
                &["x", "w"],
                &["h"],
                vec![AttributeProto {
                    name: "transB".into(),
                    r#type: attribute_type::INT,
                    i: 1,
                    ..Default::default()
                }],
            ),
            node("act", "Relu", &["h"], &["y"], vec![]),
        ],
        vec![encode_f32("w", &[3, 4], &w)],
        &[None, Some(4)],
        13,
    )
}

#[test]
fn hand_built_model_imports() {
    let bytes = linear_model().encode_to_vec();
    let mut m = import_bytes(&bytes, "mem").unwrap();
    let y = run(&mut m, &Tensor::new(&[2, 4], vec![1.0; 8]).unwrap());
    assert_eq!(y.dims(), &[2, 3]);
}

#[test]
fn an_unusable_input_dimension_is_named_in_words() {
    for (dim, want) in [
        (Some(1i64 << 40), "1099511627776, above the limit"),
        (Some(-5), "-5, not positive"),
        (None, "the symbol \"batch\""),
    ] {
        let mut m = linear_model();
        m.graph.as_mut().unwrap().input[0] = value_info("x", &[None, dim]);
        let e = import_bytes(&m.encode_to_vec(), "mem")
            .unwrap_err()
            .to_string();
        assert!(e.contains(&format!("dimension 1 is {want}")), "{e}");
        assert!(!e.contains("DimValue") && !e.contains("Some("), "{e}");
    }
}

#[test]
fn initializer_size_disagreeing_with_dims_is_an_error() {
    let mut m = linear_model();
    let g = m.graph.as_mut().unwrap();
    g.initializer[0].raw_data.truncate(40);
    let e = import_bytes(&m.encode_to_vec(), "mem")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("'w'") && e.contains("48 bytes") && e.contains("40"),
        "{e}"
    );
    let g = m.graph.as_mut().unwrap();
    g.initializer[0].raw_data.extend_from_slice(&[0; 12]);
    assert!(import_bytes(&m.encode_to_vec(), "mem").is_err());
}

#[test]
fn absurd_shapes_are_errors_without_allocation() {
    for dims in [
        vec![1i64 << 40, 1 << 40],
        vec![1 << 31, 1 << 31, 4],
        vec![-3, 4],
        vec![1 << 34, 2],
    ] {
        let mut m = linear_model();
        m.graph.as_mut().unwrap().initializer[0].dims = dims.clone();
        let e = import_bytes(&m.encode_to_vec(), "mem").unwrap_err();
        assert!(matches!(e, NnError::Corrupt { .. }), "{dims:?}: {e}");
    }
    // Huge declared graph input.
    let m = model(
        vec![node("r", "Relu", &["x"], &["y"], vec![])],
        vec![],
        &[None, Some(1 << 40), Some(1 << 40)],
        13,
    );
    assert!(import_bytes(&m.encode_to_vec(), "mem").is_err());
    // ConstantOfShape asked for 2^40 elements.
    let shape = nn::io::onnx::tensor::encode_i64("s", &[2], &[1 << 20, 1 << 20]);
    let m = model(
        vec![
            node("c", "ConstantOfShape", &["s"], &["z"], vec![]),
            node("a", "Add", &["x", "z"], &["y"], vec![]),
        ],
        vec![shape],
        &[None, Some(4)],
        13,
    );
    let e = import_bytes(&m.encode_to_vec(), "mem")
        .unwrap_err()
        .to_string();
    assert!(e.contains("'c'") && e.contains("limit"), "{e}");
}

#[test]
fn external_data_and_bad_opsets_are_refused() {
    let mut m = linear_model();
    m.graph.as_mut().unwrap().initializer[0].data_location = Some(1);
    let e = import_bytes(&m.encode_to_vec(), "mem")
        .unwrap_err()
        .to_string();
    assert!(e.contains("external data"), "{e}");
    let mut m = linear_model();
    m.opset_import[0].version = 99;
    assert!(
        import_bytes(&m.encode_to_vec(), "mem")
            .unwrap_err()
            .to_string()
            .contains("opset 99")
    );
    m.opset_import.clear();
    assert!(import_bytes(&m.encode_to_vec(), "mem").is_err());
}

#[test]
fn graph_that_is_not_a_nest_of_fork_joins_is_a_clear_error() {
    // a = relu(x); b = sigmoid(x); c = a + b; y = c * a: `a` is both inside the first
    // fork/join and an operand of the second.
    let m = model(
        vec![
            node("ra", "Relu", &["x"], &["a"], vec![]),
            node("sb", "Sigmoid", &["x"], &["b"], vec![]),
            node("add", "Add", &["a", "b"], &["c"], vec![]),
            node("mul_c_a", "Mul", &["c", "a"], &["y"], vec![]),
        ],
        vec![],
        &[None, Some(4)],
        13,
    );
    let e = import_bytes(&m.encode_to_vec(), "mem")
        .unwrap_err()
        .to_string();
    assert!(e.contains("mul_c_a") && e.contains("fork/join"), "{e}");
}

#[test]
fn undefined_inputs_and_duplicate_outputs_are_errors() {
    let m = model(
        vec![node("r", "Relu", &["nope"], &["y"], vec![])],
        vec![],
        &[None, Some(4)],
        13,
    );
    let e = import_bytes(&m.encode_to_vec(), "mem")
        .unwrap_err()
        .to_string();
    assert!(e.contains("nope"), "{e}");
    let m = model(
        vec![
            node("r", "Relu", &["x"], &["y"], vec![]),
            node(
                "t",
                "Transpose",
                &["y"],
                &["y"],
                vec![ints_attr("perm", &[0, 1])],
            ),
        ],
        vec![],
        &[None, Some(4)],
        13,
    );
    assert!(import_bytes(&m.encode_to_vec(), "mem").is_err());
}

#[test]
fn truncated_files_are_errors_at_every_offset() {
    for case in ["lenet_ts_op13", "residual_dynamo_op18", "old_opset7"] {
        let bytes = std::fs::read(fixtures().join(format!("{case}.onnx"))).unwrap();
        let step = (bytes.len() / 400).max(1);
        let cuts = (0..bytes.len())
            .step_by(step)
            .chain(bytes.len().saturating_sub(64)..bytes.len());
        for cut in cuts {
            assert!(
                import_bytes(&bytes[..cut], "mem").is_err(),
                "{case} cut at {cut} imported"
            );
        }
    }
}

#[test]
fn corrupted_bytes_never_panic() {
    let bytes = std::fs::read(fixtures().join("residual_ts_op13.onnx")).unwrap();
    let seed = 0x5eed;
    let mut rng = Rng::seed_from_u64(seed);
    let mut imported = 0;
    for round in 0..1500 {
        let mut b = bytes.clone();
        for _ in 0..1 + rng.below(4) {
            let i = rng.below(b.len());
            b[i] = rng.next_u64() as u8;
        }
        if let Ok(mut m) = import_bytes(&b, "mem") {
            imported += 1;
            let x = Tensor::zeros(m.batch_shape(1).unwrap());
            // Running a mutated model may fail, but must not panic.
            let _ = m.forward(&x, Mode::Eval);
        }
        if round % 500 == 0 {
            println!("seed {seed:#x} round {round}: {imported} mutants imported");
        }
    }
    // Pure noise.
    for len in [0usize, 1, 7, 100, 1000] {
        let noise: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
        let _ = import_bytes(&noise, "noise");
    }
}

// ------------------------------------------------------------------------------------------
// Export
// ------------------------------------------------------------------------------------------

fn assert_round_trip(model: &mut Model, x: &Tensor, what: &str) {
    let y = run(model, x);
    let bytes = export_bytes(model).unwrap_or_else(|e| panic!("{what}: export: {e}"));
    let mut back = import_bytes(&bytes, what).unwrap_or_else(|e| panic!("{what}: re-import: {e}"));
    let z = run(&mut back, x);
    assert_eq!(y.dims(), z.dims(), "{what}");
    let err = max_rel(z.data(), y.data());
    assert!(
        err <= 1e-5,
        "{what}: export/import changes logits by {err:e}"
    );
}

#[test]
fn exported_fixtures_reimport_with_the_same_logits() {
    for case in cases() {
        let mut m = import(fixtures().join(format!("{case}.onnx"))).unwrap();
        let x = read_npy(fixtures().join(format!("{case}.input.npy"))).unwrap();
        assert_round_trip(&mut m, &x, &case);
    }
}

#[test]
fn exported_zoo_models_reimport_with_the_same_logits() {
    for arch in ["lenet300", "lenet5", "cnn-teacher"] {
        let mut rng = Rng::seed_from_u64(11);
        let mut m = nn::zoo::build(arch, &mut rng).unwrap();
        let mut dims = vec![2];
        dims.extend_from_slice(&m.input_shape);
        let n: usize = dims.iter().product();
        let x = Tensor::new(&dims, (0..n).map(|_| rng.uniform()).collect()).unwrap();
        assert_round_trip(&mut m, &x, arch);
    }
}

/// Trains zoo models briefly on Fashion-MNIST, reports slimnet's test accuracy and exports
/// them to ONNX for fixtures/check_onnx_export.py, which runs them in onnxruntime on the same
/// test set. Writes `<arch>.onnx` and `<arch>.json` into `SLIMNET_EXPORT_DIR` (default
/// `target/onnx-export`). Ignored by default: it trains (about a minute on 2 cores).
#[test]
#[ignore]
fn export_zoo_models_for_onnxruntime() {
    let out = std::env::var_os("SLIMNET_EXPORT_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/onnx-export"));
    std::fs::create_dir_all(&out).unwrap();
    let (source, train, test) = nn::data::source::load(None).expect("Fashion-MNIST");
    println!("{source}");
    for (arch, epochs) in [("lenet300", 2), ("lenet5", 1)] {
        let mut model = nn::zoo::build(arch, &mut Rng::seed_from_u64(1)).unwrap();
        let cfg = nn::TrainConfig {
            epochs,
            eval_every_epoch: false,
            ..Default::default()
        };
        nn::Trainer::new(cfg)
            .fit(&mut model, &train, None, &mut |_| {})
            .unwrap();
        let eval = nn::metrics::evaluate(&mut model, &test, 256).unwrap();
        let path = out.join(format!("{arch}.onnx"));
        nn::io::onnx::export(&model, &path).unwrap();
        // Re-import check: the exported file computes the same predictions in slimnet.
        let mut back = import(&path).unwrap();
        let again = nn::metrics::evaluate(&mut back, &test, 256).unwrap();
        assert_eq!(again.accuracy, eval.accuracy);
        std::fs::write(
            out.join(format!("{arch}.json")),
            format!(
                "{{\"arch\": \"{arch}\", \"epochs\": {epochs}, \"slimnet_accuracy\": {}, \"samples\": {}, \"data\": \"{}\"}}\n",
                eval.accuracy,
                eval.samples,
                source.dir.display()
            ),
        )
        .unwrap();
        println!(
            "{arch}: slimnet test accuracy {:.4} -> {}",
            eval.accuracy,
            path.display()
        );
    }
}

#[test]
fn fixed_batch_reshape_keeps_the_batch() {
    // Exported with a fixed batch of 1: Reshape(x, [1, -1]) must become a per-sample
    // flatten, so the imported model runs on any batch.
    let shape = nn::io::onnx::tensor::encode_i64("s", &[2], &[1, -1]);
    let m = model(
        vec![node("flat", "Reshape", &["x", "s"], &["y"], vec![])],
        vec![shape],
        &[Some(1), Some(2), Some(3)],
        13,
    );
    let mut m = import_bytes(&m.encode_to_vec(), "mem").unwrap();
    let x = Tensor::new(&[3, 2, 3], (0..18).map(|v| v as f32).collect()).unwrap();
    let y = run(&mut m, &x);
    assert_eq!(y.dims(), &[3, 6]);
    assert_eq!(y.data(), x.data());
}

#[test]
fn load_any_dispatches_every_format() {
    let dir = std::env::temp_dir().join(format!("slimnet-load-any-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut m = nn::zoo::build("lenet300", &mut Rng::seed_from_u64(21)).unwrap();
    let x = Tensor::new(
        &[2, 1, 28, 28],
        (0..1568).map(|v| (v % 17) as f32 / 17.0).collect(),
    )
    .unwrap();
    let want = run(&mut m, &x);
    let native = dir.join("m.model");
    nn::io::native::save(&m, &native).unwrap();
    let onnx = dir.join("m.onnx");
    nn::io::onnx::export(&m, &onnx).unwrap();
    let st = dir.join("m.safetensors");
    nn::io::safetensors::save_safetensors(&m, &st).unwrap();
    for (path, arch) in [(&native, None), (&onnx, None), (&st, Some("lenet300"))] {
        let mut back =
            nn::io::load_any(path, arch).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let y = run(&mut back, &x);
        assert!(max_rel(y.data(), want.data()) <= 1e-6, "{}", path.display());
    }
    let junk = dir.join("m.bin");
    std::fs::write(&junk, b"not a model").unwrap();
    assert!(nn::io::load_any(&junk, None).is_err());
    std::fs::remove_dir_all(&dir).unwrap();
}
