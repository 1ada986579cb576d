//! The QDQ ONNX export of a quantized model: which nodes it writes, and initializers that
//! hold exactly the integer layers' codes and scales. (onnxruntime's accuracy on the exported
//! file is measured by scripts/quant_onnx_check.py, not here: Python is no test dependency.)

use nn::io::onnx::proto::data_type;
use quant::layers::{QuantConv2d, QuantLinear};
use quant::onnx::{export_qdq, export_qdq_bytes};
use quant::{QuantConfig, quantize_model};
use tensor_core::Tensor;
use tensor_core::rng::Rng;

fn quantized_lenet5(pow2: bool) -> nn::Model {
    let mut rng = Rng::seed_from_u64(8);
    let model = nn::zoo::build("lenet5", &mut rng).unwrap();
    let calib = Tensor::new(
        &[16, 1, 28, 28],
        (0..16 * 784).map(|_| rng.uniform()).collect(),
    )
    .unwrap();
    let config = QuantConfig {
        weight_bits: 4,
        pow2,
        ..QuantConfig::default()
    };
    quantize_model(model, &calib, &config).unwrap().0
}

#[test]
fn qdq_graph_has_a_quantize_dequantize_pair_at_every_code_boundary() {
    for pow2 in [false, true] {
        let model = quantized_lenet5(pow2);
        let proto = export_qdq(&model).unwrap();
        let g = proto.graph.as_ref().unwrap();
        let count = |op: &str| g.node.iter().filter(|n| n.op_type == op).count();
        // Input, conv1 -> conv2, conv2 -> fc1, fc1 -> fc2: four activation pairs; four
        // weight dequantizations; the logits layer emits floats.
        assert_eq!(count("QuantizeLinear"), 4);
        assert_eq!(count("Clip"), 4);
        assert_eq!(count("DequantizeLinear"), 8);
        assert_eq!(count("Conv"), 2);
        assert_eq!(count("Gemm"), 2);
        assert_eq!(
            count("MaxPool"),
            2,
            "pooling fused into the convolutions comes back"
        );
        assert_eq!(g.output[0].name, "logits");
        // Weight codes and scales are the layers' own.
        let mut cores = Vec::new();
        for l in &model.layers {
            if let Some(q) = l.as_any().downcast_ref::<QuantConv2d>() {
                cores.push(q.core().clone());
            } else if let Some(q) = l.as_any().downcast_ref::<QuantLinear>() {
                cores.push(q.core().clone());
            }
        }
        let codes: Vec<_> = g
            .initializer
            .iter()
            .filter(|t| t.name.ends_with(".weight_codes"))
            .collect();
        assert_eq!(codes.len(), cores.len());
        for (t, core) in codes.iter().zip(&cores) {
            assert_eq!(t.data_type, data_type::INT8);
            let want: Vec<u8> = core.packed().unpack().iter().map(|&c| c as u8).collect();
            assert_eq!(t.raw_data, want, "{}", t.name);
        }
        let zps: Vec<_> = g
            .initializer
            .iter()
            .filter(|t| t.name.ends_with("zero_point") && !t.name.contains("weight"))
            .collect();
        assert!(
            zps.iter()
                .all(|t| t.data_type == data_type::UINT8 && t.raw_data[0] <= 127)
        );
        assert!(export_qdq_bytes(&model).unwrap().len() > 400_000);
    }
}

#[test]
fn unsupported_layers_are_named() {
    let mut rng = Rng::seed_from_u64(9);
    let mut model = quantized_lenet5(false);
    model
        .layers
        .push(Box::new(nn::layers::Linear::new(10, 10, &mut rng).unwrap()));
    let e = export_qdq(&model).unwrap_err().to_string();
    assert!(e.contains("`linear`"), "{e}");
}
