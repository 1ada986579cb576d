//! Fuzzes the `.slim` container reader (native format version 3: sections, Huffman-coded
//! payloads): arbitrary bytes must give a model or an error naming the section, never a panic,
//! and never an allocation beyond what the bytes can describe.
//!
//! Random bytes rarely pass the header and section checksums, so inputs are steered by their
//! first byte: `0 mod 3` is read as it is; `1 mod 3` is cut into 1-4 section bodies framed
//! with valid tags, lengths and CRCs (straight into the section decoders); `2 mod 3` splices
//! the input into a layer section of a real pruned model (a sparse layer with relative-index
//! gaps and Huffman-coded payloads) and fixes the checksums, so the payload decoder and the
//! layer constructors see near-valid data. Every input also goes through
//! `container::layer_infos`, the section-size listing of `slimnet inspect` and the compress
//! report.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use nn::io::native::{self, crc32};
use pipeline::container::{self, TAG_LAYER, TAG_MODEL};

fn frame(bodies: &[&[u8]]) -> Vec<u8> {
    let mut out = native::MAGIC.to_vec();
    out.extend_from_slice(&native::CONTAINER_VERSION.to_le_bytes());
    out.extend_from_slice(&(bodies.len() as u32).to_le_bytes());
    for (i, b) in bodies.iter().enumerate() {
        out.extend_from_slice(if i == 0 { &TAG_MODEL } else { &TAG_LAYER });
        out.extend_from_slice(&(b.len() as u64).to_le_bytes());
        out.extend_from_slice(&crc32(b).to_le_bytes());
    }
    let crc = crc32(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    for b in bodies {
        out.extend_from_slice(b);
    }
    out
}

/// A small real container: a pruned, sparse two-layer perceptron.
fn seed_file() -> &'static Vec<u8> {
    static FILE: OnceLock<Vec<u8>> = OnceLock::new();
    FILE.get_or_init(|| {
        let mut rng = tensor_core::rng::Rng::seed_from_u64(1);
        let layers: Vec<Box<dyn nn::Layer>> = vec![
            Box::new(nn::layers::Flatten::new()),
            Box::new(nn::layers::Linear::new(64, 32, &mut rng).unwrap()),
            Box::new(nn::layers::ReLU::new()),
            Box::new(nn::layers::Linear::new(32, 10, &mut rng).unwrap()),
        ];
        let mut model = nn::Model::new("seed", &[1, 8, 8], layers);
        prune::global_magnitude(&model, 0.8)
            .unwrap()
            .apply(&mut model)
            .unwrap();
        prune::sparsify(&mut model, 1.0).unwrap();
        let record = native::ModelRecord::from_model(&model, Default::default()).unwrap();
        container::encode(&record, &Default::default()).unwrap()
    })
}

fuzz_target!(|data: &[u8]| {
    let built;
    let bytes = match data {
        [tag, rest @ ..] if tag % 3 == 1 && !rest.is_empty() => {
            let k = 1 + (rest[0] as usize % 4);
            let body = &rest[1..];
            let step = body.len().div_ceil(k).max(1);
            let parts: Vec<&[u8]> = (0..k)
                .map(|i| &body[(i * step).min(body.len())..((i + 1) * step).min(body.len())])
                .collect();
            built = frame(&parts);
            &built[..]
        }
        [tag, which, rest @ ..] if tag % 3 == 2 => {
            let seed = seed_file();
            let infos = container::sections(seed, "seed").unwrap();
            let bodies: Vec<Vec<u8>> = infos
                .iter()
                .enumerate()
                .map(|(i, s)| {
                    let b = &seed[s.offset as usize..(s.offset + s.len) as usize];
                    if i == 1 + (*which as usize % (infos.len() - 1)) {
                        // Overwrite the body from a fuzzer-chosen offset with the input.
                        let at = (rest.first().copied().unwrap_or(0) as usize * 7) % b.len().max(1);
                        let mut b = b.to_vec();
                        for (j, x) in rest.iter().skip(1).enumerate() {
                            if at + j < b.len() {
                                b[at + j] = *x;
                            } else {
                                b.push(*x);
                            }
                        }
                        b
                    } else {
                        b.to_vec()
                    }
                })
                .collect();
            let refs: Vec<&[u8]> = bodies.iter().map(|b| &b[..]).collect();
            built = frame(&refs);
            &built[..]
        }
        _ => data,
    };
    // The size listing `slimnet inspect` and the compress report read must not panic either,
    // and agrees with the full decoder on what it accepts.
    let infos = container::layer_infos(bytes, "fuzz");
    let Ok(record) = container::decode(bytes, "fuzz") else {
        return;
    };
    let infos = infos.expect("a file that decodes lists its sections");
    assert_eq!(infos.len(), record.layers.len());
    let Ok(model) = record.into_model_with(&pipeline::registry()) else {
        return;
    };
    // What loads must encode again, and that file must decode and encode to the same bytes
    // (bytes, not records: a fuzzed f32 may be NaN, which never equals itself).
    let again = native::ModelRecord::from_model(&model, Default::default()).unwrap();
    let file = container::encode(&again, &Default::default()).unwrap();
    let back = container::decode(&file, "again").unwrap();
    assert_eq!(container::encode(&back, &Default::default()).unwrap(), file);
});
