//! Shared weights: a pruned layer as `bits`-bit codes into a codebook with a reserved zero.

use nn::{LayerPath, Model};

use crate::error::{Result, ShareError};
use crate::finetune::{centroid_grads, members_from_codebook, sgd_step};
use crate::kmeans::{Codebook, KMeansParams, kmeans};

/// Default code width of convolution layers: 8 bits, 256 codes (Deep Compression: 8-bit
/// conv and 5-bit fc codes lost no accuracy on AlexNet).
pub const DEFAULT_CONV_BITS: u32 = 8;

/// Default code width of fully connected layers: 5 bits, 32 codes (as above).
pub const DEFAULT_FC_BITS: u32 = 5;

/// A layer's weights as codes into a codebook: weight `i` is `codebook.centroids[codes[i]]`.
///
/// Design: code 0 is reserved for the value 0.0 and the nonzero weights are clustered into the
/// other `2^bits - 1` codes. Deep Compression clusters the surviving weights of a pruned layer
/// and stores them in relative-index form, whose filler entries must decode to exactly zero;
/// with a reserved zero code, the codes alone (`prune::RelativeIndexed<u16>` with code 0 as
/// the zero) describe the layer losslessly, at the price of one of the `2^bits` codes
/// (31 learned centroids for 5-bit fc layers, 255 for 8-bit conv layers).
#[derive(Clone, Debug, PartialEq)]
pub struct SharedWeights {
    /// `centroids[0] == 0.0`; then the k-means centroids of the nonzero weights (ascending
    /// after clustering; fine-tuning may reorder them).
    pub codebook: Codebook,
    /// One code per weight (flattened row-major); 0 exactly for the zero weights.
    pub codes: Vec<u16>,
    /// Code width in bits: every code is `< 2^bits`.
    pub bits: u32,
}

impl SharedWeights {
    /// The weights the codes stand for.
    ///
    /// Errors: a code past the codebook.
    pub fn reconstruct(&self) -> Result<Vec<f32>> {
        let len = self.codebook.len();
        self.codes
            .iter()
            .enumerate()
            .map(|(index, &code)| {
                self.codebook.centroids.get(code as usize).copied().ok_or(
                    ShareError::CodeOutOfRange {
                        op: "SharedWeights::reconstruct",
                        index,
                        code: code as u32,
                        len,
                    },
                )
            })
            .collect()
    }

    /// One step of centroid fine-tuning with plain SGD (module [`crate::finetune`]): the
    /// centroids move by `learning_rate` times the summed gradient of their members
    /// (Deep Compression, equation 3), then `weights` (the layer's weight, flattened as the
    /// codes) is rewritten from the codebook, so every member equals its centroid.
    ///
    /// Errors: `grads` or `weights` not as long as the codes; a code past the codebook.
    pub fn fine_tune_step(
        &mut self,
        grads: &[f32],
        learning_rate: f32,
        weights: &mut [f32],
    ) -> Result<()> {
        let g = centroid_grads(&self.codes, grads, self.codebook.len())?;
        sgd_step(&mut self.codebook.centroids, &g, learning_rate)?;
        members_from_codebook(&self.codes, &self.codebook.centroids, weights)
    }
}

/// Shares the nonzero `weights` of a (pruned) layer: k-means with `k = 2^bits - 1` over the
/// nonzero values (see [`crate::kmeans()`]), code 0 for the zeros.
///
/// Errors: `bits` outside `1..=16`; a weight that is not finite.
pub fn share_nonzeros(weights: &[f32], bits: u32, params: &KMeansParams) -> Result<SharedWeights> {
    const OP: &str = "share_nonzeros";
    if !(1..=16).contains(&bits) {
        return Err(ShareError::InvalidBits {
            op: OP,
            bits,
            min: 1,
            max: 16,
        });
    }
    if let Some(index) = weights.iter().position(|v| !v.is_finite()) {
        return Err(ShareError::NonFinite {
            op: OP,
            index,
            value: weights[index],
        });
    }
    let nonzero: Vec<f32> = weights.iter().copied().filter(|&w| w != 0.0).collect();
    let mut centroids = vec![0.0f32];
    let mut codes = vec![0u16; weights.len()];
    if !nonzero.is_empty() {
        let k = (1usize << bits) - 1;
        let clustering = kmeans(&nonzero, k, params)?;
        centroids.extend_from_slice(&clustering.codebook.centroids);
        let mut members = clustering.assignments.iter();
        for (code, &w) in codes.iter_mut().zip(weights) {
            if w != 0.0 {
                // Invariant: one assignment per nonzero weight, in order; k < 2^16.
                let a = members.next().copied().unwrap_or(0);
                *code = (a + 1) as u16;
            }
        }
    }
    Ok(SharedWeights {
        codebook: Codebook { centroids },
        codes,
        bits,
    })
}

/// Shares the `weight` of the layer at `path` of `model` ([`share_nonzeros`]) and replaces it
/// by the values its codes stand for, so the model runs (and can be evaluated) as shared.
///
/// Errors: no layer at `path`; a layer without a `weight`; as [`share_nonzeros`].
pub fn share_layer(
    model: &mut Model,
    path: &LayerPath,
    bits: u32,
    params: &KMeansParams,
) -> Result<SharedWeights> {
    const OP: &str = "share_layer";
    let index = path.to_string();
    let layer = model.layer_mut(path).ok_or_else(|| ShareError::BadLayer {
        op: OP,
        index: index.clone(),
        reason: "the model has no layer there".into(),
    })?;
    let kind = layer.kind();
    let mut params_mut = layer.params_mut();
    let weight = params_mut
        .iter_mut()
        .find(|p| p.name == "weight")
        .ok_or_else(|| ShareError::BadLayer {
            op: OP,
            index,
            reason: format!("{kind} has no `weight` parameter"),
        })?;
    let shared = share_nonzeros(weight.value.data(), bits, params)?;
    let values = shared.reconstruct()?;
    weight.value.data_mut().copy_from_slice(&values);
    Ok(shared)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tensor_core::rng::Rng;

    #[test]
    fn zero_code_is_reserved_for_zeros() {
        let mut rng = Rng::seed_from_u64(1);
        let w: Vec<f32> = (0..2000)
            .map(|i| if i % 3 == 0 { rng.normal() } else { 0.0 })
            .collect();
        let s = share_nonzeros(&w, 5, &KMeansParams::default()).unwrap();
        assert_eq!(s.codebook.centroids[0], 0.0);
        assert!(s.codebook.len() <= 32);
        let r = s.reconstruct().unwrap();
        for (i, (&c, &x)) in s.codes.iter().zip(&w).enumerate() {
            assert_eq!(c == 0, x == 0.0, "weight {i}");
            assert!(c < 32);
        }
        // 31 clusters over a standard normal: the error stays far below the spread.
        let mse: f64 = w
            .iter()
            .zip(&r)
            .map(|(&a, &b)| (a as f64 - b as f64).powi(2))
            .sum::<f64>()
            / 667.0;
        assert!(mse < 1e-2, "mse {mse}");
    }

    #[test]
    fn all_zero_and_bad_bits() {
        let s = share_nonzeros(&[0.0; 5], 8, &KMeansParams::default()).unwrap();
        assert_eq!(
            (s.codebook.centroids.clone(), s.codes.clone()),
            (vec![0.0], vec![0; 5])
        );
        assert!(share_nonzeros(&[1.0], 0, &KMeansParams::default()).is_err());
        assert!(share_nonzeros(&[1.0], 17, &KMeansParams::default()).is_err());
        let bad = SharedWeights {
            codebook: Codebook {
                centroids: vec![0.0],
            },
            codes: vec![0, 3],
            bits: 2,
        };
        let e = bad.reconstruct().unwrap_err();
        assert!(e.to_string().contains("code 3 at position 1"), "{e}");
    }

    #[test]
    fn share_layer_writes_shared_values_back() {
        let mut model = nn::zoo::build("lenet300", &mut Rng::seed_from_u64(2)).unwrap();
        let top = LayerPath::top;
        let s = share_layer(&mut model, &top(5), 2, &KMeansParams::default()).unwrap();
        let params = model.layers[5].params();
        let w = params.iter().find(|p| p.name == "weight").unwrap().value;
        let distinct: std::collections::BTreeSet<u32> =
            w.data().iter().map(|x| x.to_bits()).collect();
        assert!(distinct.len() <= 3, "{} distinct values", distinct.len());
        assert_eq!(w.data(), s.reconstruct().unwrap().as_slice());
        assert!(share_layer(&mut model, &top(0), 5, &KMeansParams::default()).is_err()); // flatten
        assert!(share_layer(&mut model, &top(99), 5, &KMeansParams::default()).is_err());
    }
}
