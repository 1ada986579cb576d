//! quant's QuantizeLinear / DequantizeLinear against golden vectors that ONNX's reference
//! implementation (and onnxruntime for int8/uint8) computed: `fixtures/quant/golden.json`,
//! written by `scripts/quant_golden.py`. Codes must be equal and dequantized values equal bit
//! for bit.

use quant::{QuantParams, QuantType};
use serde_json::Value;

fn golden() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../fixtures/quant/golden.json"
    );
    let text = std::fs::read_to_string(path).expect("fixtures/quant/golden.json");
    serde_json::from_str(&text).expect("golden json")
}

fn floats(v: &Value) -> Vec<f32> {
    let a = v.as_array().expect("array");
    a.iter()
        .map(|x| x.as_f64().expect("number") as f32)
        .collect()
}

fn ints(v: &Value) -> Vec<i64> {
    let a = v.as_array().expect("array");
    a.iter().map(|x| x.as_i64().expect("integer")).collect()
}

#[test]
fn quantize_and_dequantize_match_onnx_bit_for_bit() {
    let doc = golden();
    let cases = doc["cases"].as_array().expect("cases");
    assert!(cases.len() >= 36, "only {} golden cases", cases.len());
    let mut types_seen = std::collections::BTreeSet::new();
    for case in cases {
        let name = case["name"].as_str().expect("name");
        let bits = case["bits"].as_u64().expect("bits") as u32;
        let qtype = QuantType::new(bits, case["signed"].as_bool().expect("signed")).unwrap();
        types_seen.insert(qtype.to_string());
        let dims: Vec<usize> = ints(&case["dims"]).iter().map(|&d| d as usize).collect();
        let axis = case["axis"].as_u64().map(|a| a as usize);
        let zero_points: Vec<i32> = ints(&case["zero_points"])
            .iter()
            .map(|&z| z as i32)
            .collect();
        let params = QuantParams::new(qtype, floats(&case["scales"]), zero_points, axis)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let x = floats(&case["x"]);
        let want_q: Vec<i32> = ints(&case["q"]).iter().map(|&q| q as i32).collect();
        let q = params.quantize(&x, &dims).unwrap();
        for (i, (&got, &want)) in q.iter().zip(&want_q).enumerate() {
            assert_eq!(got, want, "{name}: element {i}, x = {:e}", x[i]);
        }
        let y = params.dequantize(&q, &dims).unwrap();
        let want_y = floats(&case["y"]);
        for (i, (&got, &want)) in y.iter().zip(&want_y).enumerate() {
            assert_eq!(
                got.to_bits(),
                want.to_bits(),
                "{name}: element {i}: {got} vs {want}"
            );
        }
        assert_eq!(params.fake_quantize(&x, &dims).unwrap(), y, "{name}");
    }
    let want: std::collections::BTreeSet<String> = ["i8", "u8", "i4", "u4", "i2", "u2"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(types_seen, want);
}
