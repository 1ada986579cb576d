//! The seams for compressed layers: a layer kind defined outside nn, registered, stored with
//! typed payloads inside a Parallel branch, round-trips through the native file; version 1
//! files still load.

use std::any::Any;

use nn::io::native;
use nn::layers::{Linear, Merge, Parallel, ReLU};
use nn::payload::Payload;
use nn::{Layer, LayerRecord, LayerRegistry, Mode, Model, NnError, Result};
use tensor_core::rng::Rng;
use tensor_core::{Shape, Tensor};

/// A layer nn does not know: `y = x * scale[code[i]]` elementwise over features, its codes
/// stored as a `u8` payload and its scales as a `u16` payload in units of 1/256 (so every
/// value it holds is an integer, as a compressed layer's would be).
#[derive(Debug)]
struct CodedScale {
    codes: Vec<u8>,
    scales: Vec<u16>,
}

impl CodedScale {
    fn from_record(rec: &LayerRecord) -> Result<Self> {
        rec.expect_kind("coded_scale")?;
        rec.expect_fields(&[], &["codes", "scales"])?;
        let n = rec.usize_in("features", 1, 1 << 20)?;
        let k = rec.usize_in("k", 1, 256)?;
        let codes = rec.u8s("codes", &[n])?.to_vec();
        if let Some(c) = codes.iter().find(|&&c| c as usize >= k) {
            return Err(rec.corrupt("payload `codes`", format!("code {c} >= k = {k}")));
        }
        let scales = rec.u16s("scales", &[k])?.to_vec();
        Ok(Self { codes, scales })
    }
}

impl Layer for CodedScale {
    fn kind(&self) -> &'static str {
        "coded_scale"
    }
    fn output_shape(&self, input: &Shape) -> Result<Shape> {
        Ok(input.clone())
    }
    fn forward(&mut self, x: &Tensor, _mode: Mode) -> Result<Tensor> {
        let n = self.codes.len();
        let mut y = x.clone();
        for (i, v) in y.data_mut().iter_mut().enumerate() {
            *v *= self.scales[self.codes[i % n] as usize] as f32 / 256.0;
        }
        Ok(y)
    }
    fn backward(&mut self, _g: &Tensor) -> Result<Tensor> {
        Err(NnError::Unsupported("coded_scale backward".into()))
    }
    fn param_count(&self) -> usize {
        self.codes.len()
    }
    fn stored_bytes(&self) -> usize {
        self.codes.len() + 2 * self.scales.len()
    }
    fn macs(&self, input: &Shape) -> Result<u64> {
        Ok(input.numel() as u64)
    }
    fn record(&self) -> Result<LayerRecord> {
        Ok(LayerRecord::new("coded_scale")
            .with_int("features", self.codes.len() as i64)
            .with_int("k", self.scales.len() as i64)
            .with_payload(
                "codes",
                Payload::u8(&[self.codes.len()], self.codes.clone())?,
            )
            .with_payload(
                "scales",
                Payload::u16(&[self.scales.len()], self.scales.clone())?,
            ))
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}

fn registry() -> LayerRegistry {
    let mut r = LayerRegistry::nn();
    r.register("coded_scale", |rec, _| {
        Ok(Box::new(CodedScale::from_record(rec)?))
    })
    .unwrap();
    r
}

fn residual_model(rng: &mut Rng) -> Model {
    let coded = CodedScale {
        codes: (0..8).map(|i| (i % 3) as u8).collect(),
        scales: vec![128, 256, 700],
    };
    let branch: Vec<Box<dyn Layer>> = vec![
        Box::new(Linear::new(8, 8, rng).unwrap()),
        Box::new(ReLU::new()),
        Box::new(coded),
    ];
    Model::new(
        "residual-coded",
        &[8],
        vec![
            Box::new(Linear::new(8, 8, rng).unwrap()),
            Box::new(Parallel::new(vec![branch, vec![]], Merge::Add).unwrap()),
            Box::new(Linear::new(8, 3, rng).unwrap()),
        ],
    )
}

#[test]
fn an_outside_kind_inside_a_parallel_branch_round_trips() {
    let mut rng = Rng::seed_from_u64(5);
    let mut model = residual_model(&mut rng);
    let bytes = native::to_bytes(&model).unwrap();
    // nn alone does not know the kind, and says which layer and kind.
    let e = native::from_bytes(&bytes, "m").unwrap_err().to_string();
    assert!(e.contains("coded_scale") && e.contains("layer 1"), "{e}");
    let mut back = native::from_bytes_with(&bytes, "m", &registry()).unwrap();
    let kinds = |m: &Model| {
        let mut v = Vec::new();
        m.visit(&mut |p, l| v.push(format!("{p}:{}", l.kind())));
        v
    };
    assert_eq!(kinds(&back), kinds(&model));
    assert!(kinds(&back).contains(&"1/0/2:coded_scale".to_string()));
    let x = Tensor::new(&[4, 8], (0..32).map(|_| rng.normal()).collect()).unwrap();
    assert_eq!(
        model.forward(&x, Mode::Eval).unwrap(),
        back.forward(&x, Mode::Eval).unwrap()
    );
    // Same model, same bytes.
    assert_eq!(native::to_bytes(&back).unwrap(), bytes);
    assert_eq!(back.stored_bytes(), model.stored_bytes());
}

#[test]
fn corrupt_payloads_are_errors_naming_layer_and_payload() {
    let mut rng = Rng::seed_from_u64(6);
    let model = residual_model(&mut rng);
    let rec = native::ModelRecord::from_model(&model, Default::default()).unwrap();
    // The model with the coded layer's `codes` payload replaced, loaded: the error message.
    let load_with_codes = |codes: Payload| {
        let mut rec = rec.clone();
        let slot = rec.layers[1]
            .payloads
            .iter_mut()
            .find(|(n, _)| n == "0.2/codes")
            .unwrap();
        slot.1 = codes;
        native::decode(&native::encode(&rec).unwrap(), "m")
            .unwrap()
            .into_model_with(&registry())
            .unwrap_err()
            .to_string()
    };
    let e = load_with_codes(Payload::u8(&[8], vec![0, 1, 2, 3, 0, 1, 2, 0]).unwrap());
    assert!(
        e.contains("codes") && e.contains("3 >= k") && e.contains("layer 1"),
        "{e}"
    );
    let e = load_with_codes(Payload::u16(&[8], vec![0; 8]).unwrap());
    assert!(e.contains("expected u8 elements, found u16"), "{e}");
    let e = load_with_codes(Payload::u8(&[7], vec![0; 7]).unwrap());
    assert!(
        e.contains("dimensions [7] but the attributes require [8]"),
        "{e}"
    );
}

#[test]
fn the_registry_refuses_a_second_constructor_for_a_kind() {
    let mut r = registry();
    let e = r
        .register("coded_scale", |rec, _| {
            Ok(Box::new(CodedScale::from_record(rec)?))
        })
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("coded_scale") && e.contains("already registered"),
        "{e}"
    );
}

/// `fixtures/native/residual_v1.model` was written by the version-1 writer (slimnet before the
/// typed payloads: `slimnet import fixtures/onnx/residual_ts_op13.onnx`); it must still load
/// and compute what the ONNX model computes.
#[test]
fn version_1_files_still_load() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures");
    let v1 = root.join("native/residual_v1.model");
    let bytes = std::fs::read(&v1).unwrap();
    assert_eq!(u32::from_le_bytes(bytes[8..12].try_into().unwrap()), 1);
    let mut old = native::load(&v1).unwrap();
    let mut onnx = nn::io::onnx::import(root.join("onnx/residual_ts_op13.onnx")).unwrap();
    let x = nn::io::npy::read_npy(root.join("onnx/residual_ts_op13.input.npy")).unwrap();
    assert_eq!(
        old.forward(&x, Mode::Eval).unwrap(),
        onnx.forward(&x, Mode::Eval).unwrap()
    );
    // Saved again, it is a version-2 file of the same model.
    let v2 = native::to_bytes(&old).unwrap();
    assert_eq!(u32::from_le_bytes(v2[8..12].try_into().unwrap()), 2);
    assert_eq!(
        native::decode(&v2, "v2").unwrap().layers,
        native::decode(&bytes, "v1").unwrap().layers
    );
}
