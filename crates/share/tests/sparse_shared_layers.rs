//! The pruned + shared layers (Deep Compression's storage: relative index + codes): equal
//! to the dense reference, records that round trip with the bytes they report, corrupt
//! payloads (a code >= k, wrong lengths, gaps past the end) as typed errors, and
//! `to_shared_layers` choosing the sparse form for sparse layers.

use nn::layers::{Conv2d, Linear};
use nn::{Layer, LayerPath, LayerRecord, LayerRegistry, Mode, NnError, Payload, PayloadData};
use share::{
    KMeansParams, LayerStorage, SparseShared, SparseSharedConv2d, SparseSharedLinear,
    layer_storage, share_model, share_nonzeros, to_shared_layers,
};
use tensor_core::Tensor;
use tensor_core::conv::Conv2dParams;
use tensor_core::rng::Rng;
use tensor_core::sparse::pack_bits;
use tensor_core::testing::assert_close;

fn registry() -> LayerRegistry {
    let mut r = LayerRegistry::nn();
    share::register(&mut r).unwrap();
    r
}

/// Row-major weights with about `density` kept, plus a run of 300 zeros (fillers for
/// narrow gaps).
fn pruned(n: usize, density: f32, rng: &mut Rng) -> Vec<f32> {
    (0..n)
        .map(|i| {
            let keep = rng.uniform() < density && !(100..400).contains(&i);
            if keep { rng.normal() } else { 0.0 }
        })
        .collect()
}

fn sparse_linear(
    seed: u64,
    i: usize,
    o: usize,
    bits: u32,
    ib: u32,
) -> (SparseSharedLinear, Linear) {
    let mut rng = Rng::seed_from_u64(seed);
    let w = pruned(i * o, 0.1, &mut rng);
    let s = share_nonzeros(&w, bits, &KMeansParams::default()).unwrap();
    let m = SparseShared::from_shared(o, i, &s).unwrap();
    let bias = Tensor::new(&[o], (0..o).map(|_| rng.normal()).collect()).unwrap();
    let rebuilt = Linear::from_parts(
        Tensor::new(&[o, i], s.reconstruct().unwrap()).unwrap(),
        Some(bias.clone()),
    )
    .unwrap();
    (
        SparseSharedLinear::new(m, bits, ib, Some(bias)).unwrap(),
        rebuilt,
    )
}

fn payload_bytes(rec: &LayerRecord, name: &str) -> Vec<u8> {
    match rec
        .payloads
        .iter()
        .find(|(n, _)| n == name)
        .unwrap()
        .1
        .data()
    {
        PayloadData::Bytes(b) => b.clone(),
        other => panic!("{name} is {}", other.type_name()),
    }
}

fn set_payload(rec: &LayerRecord, name: &str, bytes: Vec<u8>) -> LayerRecord {
    let mut r = rec.clone();
    r.payloads.iter_mut().find(|(n, _)| n == name).unwrap().1 = Payload::bytes(bytes);
    r
}

#[test]
fn sparse_shared_linear_equals_the_dense_reference_and_round_trips() {
    let mut rng = Rng::seed_from_u64(5);
    for (i, o, bits, ib) in [(784, 300, 5, 5), (50, 9, 2, 2), (13, 1, 8, 16)] {
        let (mut layer, mut rebuilt) = sparse_linear(i as u64, i, o, bits, ib);
        for batch in [1, 5] {
            let x =
                Tensor::new(&[batch, i], (0..batch * i).map(|_| rng.normal()).collect()).unwrap();
            let y = layer.forward(&x, Mode::Eval).unwrap();
            let yd = rebuilt.forward(&x, Mode::Eval).unwrap();
            // Tolerance: a sum of up to `i` f32 terms in another order.
            assert_close(y.data(), yd.data(), 1e-4, 1e-5);
        }
        let rec = layer.record().unwrap();
        let back = registry().build(&rec).unwrap();
        assert_eq!(back.record().unwrap(), rec);
        // The bytes reported are the bytes of the payloads and tensors written.
        let st = layer.storage();
        let gaps = payload_bytes(&rec, "gaps").len();
        let codes = payload_bytes(&rec, "codes").len();
        assert_eq!((st.index_bytes, st.code_bytes), (gaps, codes));
        assert_eq!(layer.stored_bytes(), gaps + codes + 4 * st.k + 4 * o);
        assert_eq!(layer_storage(back.as_ref()), Some(st));
        assert_eq!(st.nnz, layer.matrix().nnz());
        assert!(st.entries >= st.nnz);
        let e = st.entries as f64;
        let want = 32.0 * (i * o) as f64 / (e * (ib + bits) as f64 + 32.0 * st.k as f64);
        assert!((st.rate() - want).abs() < 1e-9 * want);
    }
}

#[test]
fn fillers_are_counted_and_stored() {
    // 2-bit gaps over the 300-zero run: at least 300 / 4 fillers.
    let (layer, _) = sparse_linear(3, 50, 9, 3, 2);
    let st = layer.storage();
    assert!(st.entries >= st.nnz + 75, "{st:?}");
    let (gaps, codes) = layer.matrix().to_relative_index(2).unwrap();
    assert_eq!(
        (gaps.len(), codes.iter().filter(|&&c| c != 0).count()),
        (st.entries, st.nnz)
    );
}

#[test]
fn corrupt_payloads_are_typed_errors() {
    let (layer, _) = sparse_linear(7, 60, 8, 3, 4);
    let rec = layer.record().unwrap();
    let corrupt = |r: &LayerRecord, field: &str| {
        let e = registry().build(r).unwrap_err();
        let msg = e.to_string();
        assert!(matches!(e, NnError::Corrupt { .. }), "{msg}");
        assert!(
            msg.contains("sparse_shared_linear") && msg.contains(field),
            "{msg}"
        );
        msg
    };
    let (gaps, codes) = (payload_bytes(&rec, "gaps"), payload_bytes(&rec, "codes"));
    // Wrong lengths.
    corrupt(
        &set_payload(&rec, "gaps", gaps[..gaps.len() - 1].to_vec()),
        "gaps",
    );
    corrupt(
        &set_payload(&rec, "codes", codes[..codes.len() - 1].to_vec()),
        "codes",
    );
    // Gaps past the end: every gap at its widest.
    let entries = layer.storage().entries;
    let widest = pack_bits(&vec![15u16; entries], 4).unwrap();
    let msg = corrupt(&set_payload(&rec, "gaps", widest), "gaps");
    assert!(msg.contains("past the length 480"), "{msg}");
    // A code >= k: shrink the codebook to 2 entries.
    let mut r = rec.clone();
    let cb = r.tensors.iter_mut().find(|(n, _)| n == "codebook").unwrap();
    cb.1 = Tensor::new(&[2], cb.1.data()[..2].to_vec()).unwrap();
    corrupt(&r, "codes");
    // Centroid 0 must be the zero that absent weights stand for.
    let mut r = rec.clone();
    let cb = r.tensors.iter_mut().find(|(n, _)| n == "codebook").unwrap();
    let mut c = cb.1.data().to_vec();
    c[0] = 0.5;
    cb.1 = Tensor::new(&[c.len()], c).unwrap();
    corrupt(&r, "centroid 0");
    // More entries than weights.
    let mut r = rec.clone();
    r.attrs.insert("entries".into(), nn::AttrValue::Int(481));
    assert!(registry().build(&r).is_err());
    // Every flipped byte of either payload gives a layer or an error, never a panic.
    for name in ["gaps", "codes"] {
        let bytes = payload_bytes(&rec, name);
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x5A;
            let _ = registry().build(&set_payload(&rec, name, b));
        }
    }
}

#[test]
fn sparse_shared_conv_equals_the_dense_reference() {
    let mut rng = Rng::seed_from_u64(11);
    let p = Conv2dParams::new(20, 50, (5, 5));
    let w = pruned(50 * 500, 0.1, &mut rng);
    let s = share_nonzeros(&w, 8, &KMeansParams::default()).unwrap();
    let m = SparseShared::from_shared(50, 500, &s).unwrap();
    let bias = Tensor::new(&[50], (0..50).map(|_| rng.normal()).collect()).unwrap();
    let mut layer = SparseSharedConv2d::new(p, m, 8, 8, Some(bias.clone())).unwrap();
    let w = Tensor::new(&p.weight_dims(), s.reconstruct().unwrap()).unwrap();
    let mut dense = Conv2d::from_parts(p, w, Some(bias)).unwrap();
    let x = Tensor::new(
        &[3, 20, 12, 12],
        (0..3 * 20 * 144).map(|_| rng.normal()).collect(),
    )
    .unwrap();
    let y = layer.forward(&x, Mode::Eval).unwrap();
    assert_close(
        y.data(),
        dense.forward(&x, Mode::Eval).unwrap().data(),
        1e-4,
        1e-5,
    );
    let rec = layer.record().unwrap();
    let back = registry().build(&rec).unwrap();
    assert_eq!(back.record().unwrap(), rec);
    assert_eq!(back.kind(), "sparse_shared_conv2d");
    let st: LayerStorage = layer.storage();
    assert_eq!(st.index_bits, 8);
    assert_eq!(
        layer.macs(&x.shape().clone()).unwrap(),
        3 * 64 * st.nnz as u64
    );
}

#[test]
fn to_shared_layers_picks_the_sparse_form_below_half_density() {
    let mut rng = Rng::seed_from_u64(2);
    let mut model = nn::zoo::build("lenet5", &mut rng).unwrap();
    // Prune the second conv and the first fc layer to 10%.
    let mut pruned_paths = Vec::new();
    model.visit(&mut |path, layer| {
        if matches!(layer.kind(), "conv2d" | "linear") {
            pruned_paths.push(path.clone());
        }
    });
    let pruned_paths: Vec<LayerPath> = vec![pruned_paths[1].clone(), pruned_paths[2].clone()];
    for path in &pruned_paths {
        let layer = model.layer_mut(path).unwrap();
        let mut params = layer.params_mut();
        let w = params.iter_mut().find(|p| p.name == "weight").unwrap();
        for v in w.value.data_mut() {
            if rng.uniform() >= 0.1 {
                *v = 0.0;
            }
        }
    }
    let share = share_model(&mut model, 5, 8, &KMeansParams::default()).unwrap();
    let x = Tensor::new(
        &[2, 1, 28, 28],
        (0..2 * 784).map(|_| rng.uniform()).collect(),
    )
    .unwrap();
    let y = model.forward(&x, Mode::Eval).unwrap();
    assert_eq!(to_shared_layers(&mut model, &share).unwrap(), 4);
    let mut kinds = Vec::new();
    model.visit(&mut |_, layer| {
        if layer_storage(layer).is_some() {
            kinds.push(layer.kind());
        }
    });
    assert_eq!(
        kinds,
        [
            "shared_conv2d",
            "sparse_shared_conv2d",
            "sparse_shared_linear",
            "shared_linear"
        ]
    );
    let ys = model.forward(&x, Mode::Eval).unwrap();
    assert_close(ys.data(), y.data(), 1e-4, 1e-5);
}
