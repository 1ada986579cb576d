//! The sparse layers against their dense twins: same outputs, gradients of the kept weights
//! equal the dense gradients at the same positions, records round-trip, corrupt payloads are
//! typed errors, and `sparsify` shrinks what is stored.

use nn::layers::{Conv2d, Conv2dParams, Linear, Padding};
use nn::{Layer, LayerRegistry, Mode};
use prune::{ModelMask, SparseConv2d, SparseLinear, sparsify};
use tensor_core::Tensor;
use tensor_core::dispatch::F32Path;
use tensor_core::rng::Rng;
use tensor_core::testing::assert_close;

fn registry() -> LayerRegistry {
    let mut r = LayerRegistry::nn();
    prune::register(&mut r).unwrap();
    r
}

fn rand(rng: &mut Rng, dims: &[usize]) -> Tensor {
    let n = dims.iter().product();
    Tensor::new(dims, (0..n).map(|_| rng.normal()).collect()).unwrap()
}

fn pruned_linear(rng: &mut Rng, i: usize, o: usize, keep: f32) -> Linear {
    let mut w = rand(rng, &[o, i]);
    w.data_mut().iter_mut().for_each(|v| {
        if rng.uniform() > keep {
            *v = 0.0
        }
    });
    Linear::from_parts(w, Some(rand(rng, &[o]))).unwrap()
}

#[test]
fn sparse_linear_matches_dense_forward_and_backward() {
    let mut rng = Rng::seed_from_u64(1);
    for (i, o, batch, keep) in [
        (70, 9, 1, 0.1),
        (70, 9, 5, 0.3),
        (300, 40, 3, 0.0),
        (5, 3, 2, 1.0),
    ] {
        let mut dense = pruned_linear(&mut rng, i, o, keep);
        let mut sparse = SparseLinear::from_linear(&dense, 5).unwrap();
        let x = rand(&mut rng, &[batch, i]);
        let yd = dense.forward(&x, Mode::Train).unwrap();
        let ys = sparse.forward(&x, Mode::Train).unwrap();
        assert_close(ys.data(), yd.data(), 1e-4, 1e-5);
        let g = rand(&mut rng, &[batch, o]);
        let dxd = dense.backward(&g).unwrap();
        let dxs = sparse.backward(&g).unwrap();
        assert_close(dxs.data(), dxd.data(), 1e-4, 1e-5);
        // The gradient of each kept weight is the dense gradient at its position.
        let dense_grad = dense.params_mut()[0].grad.clone();
        let csr = sparse.csr();
        let sp = sparse.params_mut();
        let mut k = 0;
        for r in 0..o {
            for j in csr.row_ptr()[r] as usize..csr.row_ptr()[r + 1] as usize {
                let c = csr.col_idx().get(j).unwrap() as usize;
                let (a, b) = (sp[0].grad.data()[k], dense_grad.data()[r * i + c]);
                assert!((a - b).abs() <= 1e-4 * (1.0 + b.abs()), "{a} vs {b}");
                k += 1;
            }
        }
        assert_eq!(k, csr.nnz());
    }
}

#[test]
fn training_moves_kept_weights_and_the_forward_sees_them() {
    let mut rng = Rng::seed_from_u64(2);
    let dense = pruned_linear(&mut rng, 20, 4, 0.3);
    let mut sparse = SparseLinear::from_linear(&dense, 5).unwrap();
    let x = rand(&mut rng, &[2, 20]);
    let before = sparse.forward(&x, Mode::Eval).unwrap();
    for p in sparse.params_mut() {
        p.value.data_mut().iter_mut().for_each(|v| *v *= 2.0);
    }
    let after = sparse.forward(&x, Mode::Eval).unwrap();
    assert_ne!(before, after);
    assert_eq!(
        sparse
            .to_linear()
            .unwrap()
            .weight()
            .data()
            .iter()
            .filter(|v| **v != 0.0)
            .count(),
        sparse.csr().nnz()
    );
}

/// Inference at batch 1 runs the layer's batch-1 layout; after a weight update it is rebuilt
/// from the new values, and the output still equals the dense twin's.
#[test]
fn batch_one_inference_follows_weight_updates() {
    let mut rng = Rng::seed_from_u64(5);
    for keep in [0.1, 0.6] {
        let dense = pruned_linear(&mut rng, 100, 30, keep);
        let mut sparse = SparseLinear::from_linear(&dense, 5).unwrap();
        let x = rand(&mut rng, &[1, 100]);
        for _ in 0..2 {
            let want = sparse.to_linear().unwrap().forward(&x, Mode::Eval).unwrap();
            let got = sparse.forward(&x, Mode::Eval).unwrap();
            assert_close(got.data(), want.data(), 1e-5, 1e-6);
            let name = sparse.batch1_layout().name();
            // The column-block layout at 60% only where SELL does not gather (the AVX-512
            // tier's cost model keeps SELL).
            let sell = keep < 0.3 || F32Path::selected() == F32Path::Avx512F;
            assert_eq!(name, if sell { "sell" } else { "sell_perm" });
            for v in sparse.params_mut()[0].value.data_mut() {
                *v = -2.0 * *v + 0.5;
            }
        }
    }
}

#[test]
fn sparse_conv_matches_dense() {
    let mut rng = Rng::seed_from_u64(3);
    let p = Conv2dParams::new(4, 6, (3, 3))
        .with_padding(Padding::symmetric(1))
        .with_stride((2, 1))
        .with_groups(2);
    let conv = Conv2d::new(p, &mut rng).unwrap();
    let mut w = conv.weight().clone();
    w.data_mut().iter_mut().enumerate().for_each(|(k, v)| {
        if k % 3 != 0 {
            *v = 0.0
        }
    });
    let mut dense = Conv2d::from_parts(p, w, conv.bias().cloned()).unwrap();
    let mut sparse = SparseConv2d::from_conv2d(&dense, 8).unwrap();
    let x = rand(&mut rng, &[2, 4, 7, 6]);
    let yd = dense.forward(&x, Mode::Eval).unwrap();
    let ys = sparse.forward(&x, Mode::Eval).unwrap();
    assert_close(ys.data(), yd.data(), 1e-4, 1e-5);
    assert!(sparse.backward(&ys).is_err());
}

#[test]
fn records_round_trip_and_corrupt_payloads_are_typed_errors() {
    let mut rng = Rng::seed_from_u64(4);
    let dense = pruned_linear(&mut rng, 100, 7, 0.05);
    let sparse = SparseLinear::from_linear(&dense, 5).unwrap();
    let rec = sparse.record().unwrap();
    let back = registry().build(&rec).unwrap();
    assert_eq!(back.record().unwrap(), rec);
    assert_eq!(back.stored_bytes(), sparse.stored_bytes());
    // Gaps truncated, a gap stream of the wrong length, an absurd entry count, a missing bias.
    let mut r = rec.clone();
    r.payloads[0].1 = nn::Payload::bytes(vec![0xff; 3]);
    let e = registry().build(&r).unwrap_err().to_string();
    assert!(e.contains("sparse_linear") && e.contains("gaps"), "{e}");
    let mut r = rec.clone();
    r.attrs
        .insert("entries".into(), nn::AttrValue::Int(1 << 40));
    assert!(registry().build(&r).is_err());
    let mut r = rec.clone();
    r.tensors.retain(|(n, _)| n != "bias");
    let e = registry().build(&r).unwrap_err().to_string();
    assert!(e.contains("bias"), "{e}");
    // Every truncation of the gap stream is an error, never a panic.
    let gaps = match rec.payloads[0].1.data() {
        nn::PayloadData::Bytes(b) => b.clone(),
        _ => unreachable!(),
    };
    for cut in 0..gaps.len() {
        let mut r = rec.clone();
        r.payloads[0].1 = nn::Payload::bytes(gaps[..cut].to_vec());
        assert!(registry().build(&r).is_err(), "cut {cut}");
    }
}

#[test]
fn sparsify_keeps_outputs_and_shrinks_storage() {
    let mut rng = Rng::seed_from_u64(5);
    let mut model = nn::zoo::build("lenet5", &mut rng).unwrap();
    let masks = ModelMask::by_density(&model, &[0.66, 0.12, 0.08, 0.19]).unwrap();
    masks.apply(&mut model).unwrap();
    let x = rand(&mut rng, &[3, 1, 28, 28]);
    let y = model.forward(&x, Mode::Eval).unwrap();
    let dense_bytes = model.stored_bytes();
    assert_eq!(sparsify(&mut model, 0.9).unwrap(), 4);
    let ys = model.forward(&x, Mode::Eval).unwrap();
    assert_close(ys.data(), y.data(), 1e-4, 1e-5);
    assert!(
        model.stored_bytes() * 5 < dense_bytes,
        "{} vs {dense_bytes}",
        model.stored_bytes()
    );
    let bytes = nn::io::native::to_bytes(&model).unwrap();
    let mut back = nn::io::native::from_bytes_with(&bytes, "m", &registry()).unwrap();
    assert_eq!(back.forward(&x, Mode::Eval).unwrap(), ys);
}
