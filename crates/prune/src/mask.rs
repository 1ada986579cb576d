//! Mask: one keep bit per parameter of a layer (true = kept, false = pruned).

use crate::error::{PruneError, Result};

/// Which parameters of one tensor are kept, flattened row-major like the tensor's data.
///
/// Design: a `Vec<bool>` (one byte per weight) rather than packed bits. Masks are built once
/// and applied to gradients and weights elementwise, where a byte per weight costs nothing
/// next to the f32 it guards; packed forms belong to the sparse formats
/// ([`crate::RelativeIndexed`]), which store positions instead.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mask {
    keep: Vec<bool>,
}

impl Mask {
    /// A mask that keeps all `len` parameters.
    pub fn all(len: usize) -> Self {
        Self {
            keep: vec![true; len],
        }
    }

    /// A mask from its keep bits.
    pub fn from_keep(keep: Vec<bool>) -> Self {
        Self { keep }
    }

    /// The mask keeping exactly the nonzero values of `values` (e.g. of an already pruned
    /// layer).
    pub fn from_nonzeros(values: &[f32]) -> Self {
        Self {
            keep: values.iter().map(|&v| v != 0.0).collect(),
        }
    }

    /// Number of parameters the mask covers.
    pub fn len(&self) -> usize {
        self.keep.len()
    }

    /// Whether the mask covers no parameter.
    pub fn is_empty(&self) -> bool {
        self.keep.is_empty()
    }

    /// The keep bits.
    pub fn as_slice(&self) -> &[bool] {
        &self.keep
    }

    /// Whether parameter `i` is kept (false past the end).
    pub fn keeps(&self, i: usize) -> bool {
        self.keep.get(i).copied().unwrap_or(false)
    }

    /// Number of kept parameters.
    pub fn kept(&self) -> usize {
        self.keep.iter().filter(|&&k| k).count()
    }

    /// Fraction kept, `kept / len` (1 for an empty mask: nothing was pruned).
    pub fn density(&self) -> f64 {
        if self.keep.is_empty() {
            1.0
        } else {
            self.kept() as f64 / self.keep.len() as f64
        }
    }

    /// Zeroes the entries of `values` this mask prunes.
    pub fn apply(&self, values: &mut [f32]) -> Result<()> {
        self.check_len("Mask::apply", values.len())?;
        // A select rather than a branch: pruned positions are unpredictable, and the select
        // vectorises.
        for (v, &k) in values.iter_mut().zip(&self.keep) {
            *v = if k { *v } else { 0.0 };
        }
        Ok(())
    }

    /// Errors unless the mask covers exactly `len` parameters.
    pub(crate) fn check_len(&self, op: &'static str, len: usize) -> Result<()> {
        if len != self.keep.len() {
            return Err(PruneError::LengthMismatch {
                op,
                what: "tensor".into(),
                got: len,
                expected: self.keep.len(),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apply_zeroes_pruned_only() {
        let m = Mask::from_keep(vec![true, false, true, false]);
        let mut v = [1.0, 2.0, -3.0, 4.0];
        m.apply(&mut v).unwrap();
        assert_eq!(v, [1.0, 0.0, -3.0, 0.0]);
        assert_eq!(m.kept(), 2);
        assert_eq!(m.density(), 0.5);
        assert!(m.keeps(0) && !m.keeps(1) && !m.keeps(99));
    }

    #[test]
    fn apply_rejects_wrong_length() {
        let m = Mask::all(3);
        let err = m.apply(&mut [0.0; 4]).unwrap_err();
        assert!(err.to_string().contains("length 4, expected 3"), "{err}");
    }

    #[test]
    fn from_nonzeros_and_empty() {
        assert_eq!(
            Mask::from_nonzeros(&[0.0, 1.0, -0.0, -2.0]).as_slice(),
            &[false, true, false, true]
        );
        assert_eq!(Mask::all(0).density(), 1.0);
        assert!(Mask::all(0).is_empty());
    }
}
