//! SharedLinear against the dense layer rebuilt from its codebook; record round trip;
//! corrupt code payloads (a code >= k, a wrong length) are typed errors naming the field.

use nn::layers::Linear;
use nn::{Layer, LayerRegistry, Mode, Payload};
use share::{KMeansParams, SharedLinear};
use tensor_core::Tensor;
use tensor_core::rng::Rng;
use tensor_core::testing::assert_close;

fn registry() -> LayerRegistry {
    let mut r = LayerRegistry::nn();
    share::register(&mut r).unwrap();
    r
}

fn layer(seed: u64, i: usize, o: usize, bits: u32) -> (Linear, SharedLinear) {
    let mut rng = Rng::seed_from_u64(seed);
    let dense = Linear::new(i, o, &mut rng).unwrap();
    let shared = SharedLinear::from_linear(&dense, bits, &KMeansParams::default()).unwrap();
    (dense, shared)
}

#[test]
fn shared_linear_equals_the_dense_layer_rebuilt_from_its_codebook() {
    let mut rng = Rng::seed_from_u64(9);
    for (i, o, bits, batch) in [(784, 300, 5, 1), (50, 7, 2, 4), (13, 1, 8, 3)] {
        let (_, mut shared) = layer(i as u64, i, o, bits);
        let mut rebuilt = shared.to_linear().unwrap();
        let distinct: std::collections::BTreeSet<u32> = rebuilt
            .weight()
            .data()
            .iter()
            .map(|v| v.to_bits())
            .collect();
        assert!(distinct.len() <= 1 << bits);
        let x = Tensor::new(&[batch, i], (0..batch * i).map(|_| rng.normal()).collect()).unwrap();
        let ys = shared.forward(&x, Mode::Eval).unwrap();
        let yd = rebuilt.forward(&x, Mode::Eval).unwrap();
        assert_close(ys.data(), yd.data(), 1e-4, 1e-5);
        // Deep Compression's storage: n*b bits of codes + 32 bits per centroid (+ bias).
        let n = i * o;
        assert_eq!(
            shared.stored_bytes(),
            (n * bits as usize).div_ceil(8) + 4 * shared.centroids().len() + 4 * o
        );
    }
}

#[test]
fn records_round_trip_and_corrupt_codes_are_typed_errors() {
    let (_, shared) = layer(3, 40, 6, 3);
    let rec = shared.record().unwrap();
    let back = registry().build(&rec).unwrap();
    assert_eq!(back.record().unwrap(), rec);
    let codes = match rec.payloads[0].1.data() {
        nn::PayloadData::Bytes(b) => b.clone(),
        _ => unreachable!(),
    };
    // Wrong length.
    let mut r = rec.clone();
    r.payloads[0].1 = Payload::bytes(codes[..codes.len() - 1].to_vec());
    let e = registry().build(&r).unwrap_err().to_string();
    assert!(e.contains("shared_linear") && e.contains("codes"), "{e}");
    // A code >= k: shrink the codebook to 2 entries.
    let mut r = rec.clone();
    let cb = r.tensors.iter_mut().find(|(n, _)| n == "codebook").unwrap();
    cb.1 = Tensor::new(&[2], cb.1.data()[..2].to_vec()).unwrap();
    let e = registry().build(&r).unwrap_err().to_string();
    assert!(e.contains("codes") && e.contains('2'), "{e}");
    // A codebook too large for the code width.
    let mut r = rec.clone();
    r.attrs.insert("bits".into(), nn::AttrValue::Int(2));
    assert!(registry().build(&r).is_err());
    // Every flipped byte of the codes gives a layer or an error, never a panic.
    for i in 0..codes.len() {
        let mut r = rec.clone();
        let mut c = codes.clone();
        c[i] ^= 0xA5;
        r.payloads[0].1 = Payload::bytes(c);
        let _ = registry().build(&r);
    }
}
