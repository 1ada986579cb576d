//! Non-finite values (NaN, ±inf) in weights and inputs: found and named before they turn a
//! run into a silent 10% accuracy.
//!
//! A NaN weight makes every logit it reaches NaN, `argmax` then returns a fixed class, and an
//! evaluation reports chance accuracy with exit code 0. Readers accept such files (a NaN is a
//! valid f32), so the check is separate: tools run [`check_model`] on every model they load
//! and [`check_values`] on every input array, and report [`NnError::NonFinite`] naming the
//! tensor and the first bad element (or only warn when the user asks to go on).

use crate::error::{NnError, Result};
use crate::model::Model;

/// The first non-finite element of `values`: `(index, value)`.
pub fn first_nonfinite(values: &[f32]) -> Option<(usize, f32)> {
    // A whole-slice sum is finite exactly when every element is (barring overflow of large
    // finite values), and vectorises; only then is the element searched for.
    let fast: f32 = values.iter().map(|v| v * 0.0).sum();
    if fast == 0.0 {
        return None;
    }
    values
        .iter()
        .copied()
        .enumerate()
        .find(|(_, v)| !v.is_finite())
}

/// [`NnError::NonFinite`] for the first non-finite element of `values`, named `what`.
pub fn check_values(what: &str, values: &[f32]) -> Result<()> {
    match first_nonfinite(values) {
        None => Ok(()),
        Some((index, value)) => Err(NnError::NonFinite {
            what: what.to_string(),
            index,
            value,
        }),
    }
}

/// Checks every f32 tensor every layer stores (weights, biases, BatchNorm statistics,
/// codebooks, scales), branches included; the error names the layer's path, its kind and
/// the tensor (`layer 3 (linear) weight`).
pub fn check_model(model: &Model) -> Result<()> {
    let mut first: Option<Result<()>> = None;
    model.visit(&mut |path, layer| {
        if first.is_some() {
            return;
        }
        let record = match layer.record() {
            Ok(r) => r,
            Err(e) => {
                first = Some(Err(e));
                return;
            }
        };
        for (name, tensor) in &record.tensors {
            let what = format!(
                "model {}: layer {path} ({}) {name}",
                model.name, record.kind
            );
            if let Err(e) = check_values(&what, tensor.data()) {
                first = Some(Err(e));
                return;
            }
        }
    });
    first.unwrap_or(Ok(()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::zoo;
    use tensor_core::rng::Rng;

    #[test]
    fn finds_the_first_nonfinite_element() {
        assert_eq!(first_nonfinite(&[]), None);
        assert_eq!(first_nonfinite(&[1.0, -3.0e38, 0.0]), None);
        assert_eq!(
            first_nonfinite(&[1.0, f32::INFINITY, f32::NAN]),
            Some((1, f32::INFINITY))
        );
        let nan = first_nonfinite(&[0.0, 0.0, f32::NAN]).unwrap();
        assert_eq!(nan.0, 2);
        assert!(nan.1.is_nan());
        assert_eq!(
            first_nonfinite(&[f32::NEG_INFINITY]),
            Some((0, f32::NEG_INFINITY))
        );
    }

    #[test]
    fn names_the_layer_and_tensor() {
        let mut rng = Rng::seed_from_u64(1);
        let mut model = zoo::build("lenet300", &mut rng).unwrap();
        check_model(&model).unwrap();
        let params = model.named_params_mut();
        let (path, p) = params.into_iter().nth(2).unwrap(); // layer 2's weight
        p.value.data_mut()[7] = f32::NAN;
        let e = check_model(&model).unwrap_err().to_string();
        assert!(
            e.contains(&format!("layer {path}")) && e.contains("weight") && e.contains("element 7"),
            "{e}"
        );
        assert!(e.contains("--allow-nonfinite"), "{e}");
    }
}
