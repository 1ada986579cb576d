//! Han et al.'s dropout adjustment for retraining a pruned model (Han et al., "Learning both
//! Weights and Connections", 2015, section 3.2).
//!
//! Dropout acts on neurons and the connections `C_i = N_i N_{i-1}` of layer `i` grow with the
//! square of its neurons (their eq. 1), so once pruning leaves `C_ir` of the `C_io`
//! connections, the retraining dropout rate becomes (their eq. 2)
//! `D_r = D_o sqrt(C_ir / C_io)`: a pruned layer has less capacity to over-fit.
//!
//! The layer a dropout acts on is the nearest `linear` or `conv2d` before it in its sequence
//! (the layer whose output neurons it drops: fc6 for drop6 in AlexNet); `C_i` counts its
//! nonzero weights (`weight`, or the stored `values` of a sparse layer), so both masked and
//! physically removed connections count as gone.

use nn::layers::Dropout;
use nn::{Layer, LayerPath, Model, NnError};

use crate::error::{PruneError, Result};

/// `D_r = D_o sqrt(C_ir / C_io)` (Han et al., 2015, eq. 2); `D_o` when `C_io = 0`.
pub fn han_dropout_rate(
    original_rate: f32,
    original_connections: usize,
    connections: usize,
) -> f32 {
    if original_connections == 0 {
        return original_rate;
    }
    let ratio = (connections as f64 / original_connections as f64).min(1.0);
    (original_rate as f64 * ratio.sqrt()) as f32
}

/// One dropout layer and what its rate is scaled against.
#[derive(Clone, Debug, PartialEq)]
pub struct DropoutEntry {
    /// The dropout layer.
    pub dropout: LayerPath,
    /// The layer whose outputs it drops.
    pub layer: LayerPath,
    /// Its rate in the unpruned model, `D_o`.
    pub original_rate: f32,
    /// Nonzero weights of `layer` in the unpruned model, `C_io`.
    pub original_connections: usize,
}

/// The dropout rates and connection counts of the unpruned model, captured once, so that
/// each retraining sets `D_r` from the originals (never compounding across rounds).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DropoutAdjustment {
    /// Every dropout layer with a `linear` or `conv2d` before it in its sequence.
    pub entries: Vec<DropoutEntry>,
}

impl DropoutAdjustment {
    /// The dropout layers of `model` (branches included) and the connections of the layers
    /// they act on, now.
    pub fn capture(model: &Model) -> Result<Self> {
        let mut pairs = Vec::new();
        let mut last: Option<LayerPath> = None;
        model.visit(&mut |path, layer| {
            if matches!(
                layer.kind(),
                "linear" | "conv2d" | "sparse_linear" | "sparse_conv2d"
            ) {
                last = Some(path.clone());
            } else if let Some(d) = layer.as_any().downcast_ref::<Dropout>()
                && let Some(l) = &last
                && l.parent() == path.parent()
                && l.index() < path.index()
            {
                pairs.push((path.clone(), l.clone(), d.p()));
            }
        });
        let mut entries = Vec::with_capacity(pairs.len());
        for (dropout, layer, rate) in pairs {
            entries.push(DropoutEntry {
                original_connections: connections(model, &layer)?,
                dropout,
                layer,
                original_rate: rate,
            });
        }
        Ok(Self { entries })
    }

    /// Sets every captured dropout to `D_o sqrt(C_ir / C_io)` with the connections of the
    /// model now; returns each dropout's path and new rate.
    ///
    /// Errors: a captured path that no longer holds a dropout or a weighted layer.
    pub fn apply(&self, model: &mut Model) -> Result<Vec<(LayerPath, f32)>> {
        let mut out = Vec::with_capacity(self.entries.len());
        for e in &self.entries {
            let c = connections(model, &e.layer)?;
            let rate = han_dropout_rate(e.original_rate, e.original_connections, c);
            let d = model
                .layer_mut(&e.dropout)
                .and_then(|l| l.as_any_mut().downcast_mut::<Dropout>())
                .ok_or_else(|| missing("DropoutAdjustment::apply", &e.dropout, "dropout"))?;
            d.set_p(rate)?;
            out.push((e.dropout.clone(), rate));
        }
        Ok(out)
    }
}

fn missing(op: &str, path: &LayerPath, what: &str) -> PruneError {
    PruneError::Nn(NnError::Config(format!(
        "{op}: no {what} layer at path {path}"
    )))
}

/// Nonzero weights of the layer at `path` (`weight`, or `values` for a sparse layer).
fn connections(model: &Model, path: &LayerPath) -> Result<usize> {
    let layer: &dyn Layer = model
        .layer(path)
        .ok_or_else(|| missing("dropout adjustment", path, "weighted"))?;
    let params = layer.params();
    let w = params
        .iter()
        .find(|p| p.name == "weight" || p.name == "values")
        .ok_or_else(|| missing("dropout adjustment", path, "weighted"))?;
    Ok(w.value.data().iter().filter(|v| **v != 0.0).count())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rate_follows_the_square_root_of_the_kept_connections() {
        assert_eq!(han_dropout_rate(0.5, 100, 100), 0.5);
        assert!((han_dropout_rate(0.5, 100, 25) - 0.25).abs() < 1e-7);
        assert_eq!(han_dropout_rate(0.5, 100, 0), 0.0);
        assert_eq!(han_dropout_rate(0.5, 0, 0), 0.5);
    }
}
