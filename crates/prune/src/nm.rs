//! N:M semi-structured sparsity (2:4 by default, as NVIDIA's sparse tensor cores run it:
//! Mishra et al., "Accelerating Sparse Deep Neural Networks", 2021): in every group of `M`
//! consecutive weights along the input dimension, keep the `N` largest `|w|`.
//!
//! Groups run along each output row: `W[o, :]` of a `linear` (`[out, in]`), and the
//! `(in, kh, kw)` flattening `W[o, :, :, :]` of a `conv2d`, which is the row-major layout
//! itself. A row whose length is not a multiple of `M` ends in a shorter group, which keeps
//! `min(N, its length)`. On equal magnitudes the lower index stays. The masks are ordinary
//! [`ModelMask`]s: [`crate::MaskHook`] holds them through retraining and [`crate::sparsify`]
//! stores the result in the sparse layers.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use nn::Model;

use crate::error::PruneError;
use crate::mask::Mask;
use crate::model_mask::{ModelMask, prunable_layers};
use crate::structured::{StructuredError, StructuredResult};

/// An N:M pattern: `n` kept of every `m` consecutive weights, `1 <= n <= m`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NmPattern {
    /// Weights kept per group.
    pub n: usize,
    /// Group length.
    pub m: usize,
}

impl Default for NmPattern {
    /// 2:4.
    fn default() -> Self {
        Self { n: 2, m: 4 }
    }
}

impl NmPattern {
    /// The pattern `n:m`. Errors: `n = 0`, `m = 0` or `n > m`.
    pub fn new(n: usize, m: usize) -> StructuredResult<Self> {
        if n == 0 || n > m {
            return Err(StructuredError::InvalidNm {
                op: "NmPattern::new",
                pattern: format!("{n}:{m}"),
            });
        }
        Ok(Self { n, m })
    }
}

impl FromStr for NmPattern {
    type Err = StructuredError;

    /// Parses `2:4`.
    fn from_str(s: &str) -> StructuredResult<Self> {
        let bad = || StructuredError::InvalidNm {
            op: "NmPattern::from_str",
            pattern: s.to_string(),
        };
        let (n, m) = s.split_once(':').ok_or_else(bad)?;
        let n = n.trim().parse().map_err(|_| bad())?;
        let m = m.trim().parse().map_err(|_| bad())?;
        Self::new(n, m).map_err(|_| bad())
    }
}

impl fmt::Display for NmPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.n, self.m)
    }
}

/// The N:M mask of a weight of `rows` rows (`weight.len() / rows` values each): in each
/// group of `m` consecutive values of a row, the `n` largest `|w|` stay.
///
/// Errors: `rows` not dividing `weight.len()`; a NaN or infinite weight.
pub fn nm_mask(weight: &[f32], rows: usize, pattern: NmPattern) -> StructuredResult<Mask> {
    if rows == 0 || !weight.len().is_multiple_of(rows) {
        return Err(StructuredError::Prune(PruneError::LengthMismatch {
            op: "nm_mask",
            what: format!("weight of {rows} rows"),
            got: weight.len(),
            expected: weight.len().div_ceil(rows.max(1)) * rows.max(1),
        }));
    }
    if let Some((index, &value)) = weight.iter().enumerate().find(|(_, v)| !v.is_finite()) {
        return Err(StructuredError::Prune(PruneError::NonFinite {
            op: "nm_mask",
            index,
            value,
        }));
    }
    let row_len = weight.len() / rows;
    let mut keep = vec![false; weight.len()];
    let mut order: Vec<usize> = Vec::with_capacity(pattern.m);
    for r in 0..rows {
        let row = r * row_len;
        for start in (0..row_len).step_by(pattern.m) {
            let end = (start + pattern.m).min(row_len);
            order.clear();
            order.extend(row + start..row + end);
            order.sort_by(|&a, &b| weight[b].abs().total_cmp(&weight[a].abs()).then(a.cmp(&b)));
            for &i in order.iter().take(pattern.n) {
                keep[i] = true;
            }
        }
    }
    Ok(Mask::from_keep(keep))
}

/// The N:M masks of every prunable layer of `model` ([`prunable_layers`]: the weights of
/// `linear` and `conv2d` layers, branches included), rows being the output units/filters.
pub fn nm_masks(model: &Model, pattern: NmPattern) -> StructuredResult<ModelMask> {
    let mut layers = BTreeMap::new();
    for path in prunable_layers(model) {
        let layer = model.layer(&path).ok_or_else(|| StructuredError::NoLayer {
            op: "nm_masks",
            path: path.clone(),
        })?;
        let params = layer.params();
        let w =
            params
                .iter()
                .find(|p| p.name == "weight")
                .ok_or_else(|| StructuredError::NoLayer {
                    op: "nm_masks",
                    path: path.clone(),
                })?;
        let rows = w.value.dims().first().copied().unwrap_or(1);
        layers.insert(path.clone(), nm_mask(w.value.data(), rows, pattern)?);
    }
    Ok(ModelMask { layers })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_parse_and_reject() {
        assert_eq!("2:4".parse::<NmPattern>().unwrap(), NmPattern::default());
        assert_eq!(
            " 1 : 8".parse::<NmPattern>().unwrap(),
            NmPattern::new(1, 8).unwrap()
        );
        for bad in ["", "2", "4:2", "0:4", "2:0", "a:4", "2:4:8"] {
            let e = bad.parse::<NmPattern>().unwrap_err();
            assert!(e.to_string().contains("is invalid"), "{bad}: {e}");
        }
    }

    #[test]
    fn one_row_keeps_the_two_largest_of_each_four() {
        let w = [0.1, -0.9, 0.5, 0.2, 3.0, 0.0, -3.0, 1.0, 0.7, -0.1];
        let m = nm_mask(&w, 1, NmPattern::default()).unwrap();
        let kept: Vec<usize> = (0..w.len()).filter(|&i| m.keeps(i)).collect();
        // Groups [0..4), [4..8), then the tail [8..10) keeps both.
        assert_eq!(kept, vec![1, 2, 4, 6, 8, 9]);
        assert!(nm_mask(&w, 3, NmPattern::default()).is_err());
        assert!(nm_mask(&[f32::NAN; 4], 1, NmPattern::default()).is_err());
    }
}
