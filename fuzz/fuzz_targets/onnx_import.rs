//! Fuzzes the ONNX importer: arbitrary bytes must give a model or an error, never a panic,
//! and never an allocation beyond what the bytes can describe. Imported models with small
//! activations are also run once on zeros (a model that imports must not panic either).
#![no_main]

use libfuzzer_sys::fuzz_target;
use nn::Mode;
use tensor_core::Tensor;

fuzz_target!(|data: &[u8]| {
    let Ok(mut model) = nn::io::onnx::import_bytes(data, "fuzz") else {
        return;
    };
    // Run only models whose every activation stays small (the fuzzer's memory limit).
    let Ok(summary) = model.summary() else { return };
    let small = summary
        .iter()
        .all(|r| r.output_shape.iter().product::<usize>() <= 1 << 16 && r.macs <= 1 << 22);
    if small && let Ok(shape) = model.batch_shape(1) {
        let _ = model.forward(&Tensor::zeros(shape), Mode::Eval);
    }
    // Export of whatever imported must not panic either.
    let _ = nn::io::onnx::export_bytes(&model);
});
