//! Fuzzes the native model reader (format versions 1 and 2, typed payloads included):
//! arbitrary bytes must give a model or an error naming what is wrong, never a panic, and
//! never an allocation beyond what the bytes can describe.
//!
//! Random bytes rarely pass the header and the CRC-32, so half of the inputs (first byte odd)
//! are framed first: the rest of the input becomes the payload of a well-formed header with a
//! correct checksum and the version the second byte picks, which sends the fuzzer straight
//! into the record decoder and the layer constructors. Models that load are run once on
//! zeros when their activations are small, and encoded again.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nn::Mode;
use nn::io::native;
use tensor_core::Tensor;

fn frame(version: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = native::MAGIC.to_vec();
    out.extend_from_slice(&version.to_le_bytes());
    out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    out.extend_from_slice(payload);
    out.extend_from_slice(&native::crc32(payload).to_le_bytes());
    out
}

fuzz_target!(|data: &[u8]| {
    let framed;
    let bytes = match data {
        [tag, v, rest @ ..] if tag & 1 == 1 => {
            framed = frame(1 + (*v as u32 & 1), rest);
            &framed[..]
        }
        _ => data,
    };
    // Every kind slimnet knows, compressed layers included.
    let registry = pipeline::registry();
    let Ok(record) = native::decode(bytes, "fuzz") else {
        return;
    };
    let Ok(mut model) = record.into_model_with(&registry) else {
        return;
    };
    // Run only models whose input and every activation stay small (the fuzzer's memory
    // limit): a record may declare any input shape a `Shape` admits.
    let Ok(summary) = model.summary() else { return };
    let Ok(shape) = model.batch_shape(1) else {
        return;
    };
    let small = shape.numel() <= 1 << 16
        && summary
            .iter()
            .all(|r| r.output_shape.iter().product::<usize>() <= 1 << 16 && r.macs <= 1 << 22);
    if small {
        let _ = model.forward(&Tensor::zeros(shape), Mode::Eval);
    }
    let _ = native::to_bytes(&model);
});
