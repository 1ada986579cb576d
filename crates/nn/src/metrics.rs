//! Evaluation: accuracy, mean cross-entropy and the confusion matrix of a model on a dataset.

use std::fmt;

use serde::Serialize;
use tensor_core::Tensor;

use crate::data::Dataset;
use crate::error::{NnError, Result};
use crate::layer::Mode;
use crate::loss::softmax_cross_entropy;
use crate::model::Model;

/// The result of [`evaluate`] (serializable, for `--json` output).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Evaluation {
    /// Fraction of samples whose arg-max prediction equals the label, in `[0, 1]`.
    pub accuracy: f64,
    /// Mean softmax cross-entropy over the samples.
    pub loss: f64,
    /// `confusion[t][p]`: samples of true class `t` predicted as class `p`.
    pub confusion: Vec<Vec<u64>>,
    /// Number of samples evaluated.
    pub samples: usize,
}

impl Evaluation {
    /// Recall of each class: correct predictions over samples of that class (`NaN`-free:
    /// a class without samples reports 0).
    pub fn per_class_accuracy(&self) -> Vec<f64> {
        self.confusion
            .iter()
            .enumerate()
            .map(|(t, row)| {
                let n: u64 = row.iter().sum();
                if n == 0 {
                    0.0
                } else {
                    row[t] as f64 / n as f64
                }
            })
            .collect()
    }

    /// The confusion matrix as an aligned text table (rows: true class, columns:
    /// predicted), with optional class names for the rows and a recall column.
    pub fn confusion_table(&self, class_names: Option<&[&str]>) -> String {
        let k = self.confusion.len();
        let name = |i: usize| -> String {
            class_names
                .and_then(|n| n.get(i))
                .map(|s| s.to_string())
                .unwrap_or_else(|| i.to_string())
        };
        let label_w = (0..k).map(|i| name(i).len()).max().unwrap_or(1).max(10);
        let cell_w = self
            .confusion
            .iter()
            .flatten()
            .map(|v| v.to_string().len())
            .max()
            .unwrap_or(1)
            .max(k.saturating_sub(1).to_string().len())
            + 1;
        let mut out = format!("{:>label_w$} |", "true\\pred");
        for p in 0..k {
            out.push_str(&format!("{p:>cell_w$}"));
        }
        out.push_str(" | recall\n");
        out.push_str(&"-".repeat(label_w + 2 + cell_w * k + 9));
        out.push('\n');
        let recall = self.per_class_accuracy();
        for (t, row) in self.confusion.iter().enumerate() {
            out.push_str(&format!("{:>label_w$} |", name(t)));
            for v in row {
                out.push_str(&format!("{v:>cell_w$}"));
            }
            out.push_str(&format!(" | {:5.1}%\n", 100.0 * recall[t]));
        }
        out
    }
}

impl fmt::Display for Evaluation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "accuracy {:.2}% ({} samples), loss {:.4}",
            100.0 * self.accuracy,
            self.samples,
            self.loss
        )?;
        write!(f, "{}", self.confusion_table(None))
    }
}

/// Reshapes a dataset batch (`[B, C, H, W]`) to the model's batch input shape when only the
/// per-sample layout differs (`[B, 784]` for an MLP whose input shape is `[784]`).
///
/// Errors when the per-sample element counts differ.
pub fn to_model_input(model: &Model, images: Tensor) -> Result<Tensor> {
    let b = images.dims().first().copied().unwrap_or(0);
    let want = model.batch_shape(b)?;
    if images.dims() == want.dims() {
        return Ok(images);
    }
    if images.numel() != want.numel() {
        return Err(NnError::BadInput {
            layer: format!("model {}", model.name),
            input: images.shape().clone(),
            reason: format!(
                "samples do not fit the model's input shape {:?}",
                model.input_shape
            ),
        });
    }
    Ok(images.reshape(want.dims())?)
}

/// Runs `model` in [`Mode::Eval`] over `data` in batches of `batch_size`; returns accuracy,
/// mean cross-entropy and the confusion matrix.
///
/// Errors: `batch_size == 0`, an empty dataset, samples that do not fit the model's input,
/// or a model whose output is not `[B, data.classes]`.
pub fn evaluate(model: &mut Model, data: &Dataset, batch_size: usize) -> Result<Evaluation> {
    evaluate_observed(model, data, batch_size, &mut |_| {})
}

/// [`evaluate`], calling `on_batch(images done so far)` after each batch (a progress bar).
pub fn evaluate_observed(
    model: &mut Model,
    data: &Dataset,
    batch_size: usize,
    on_batch: &mut dyn FnMut(usize),
) -> Result<Evaluation> {
    if batch_size == 0 {
        return Err(NnError::Config("evaluate: batch size must be >= 1".into()));
    }
    if data.is_empty() {
        return Err(NnError::Config("evaluate: the dataset is empty".into()));
    }
    let k = data.classes;
    let mut confusion = vec![vec![0u64; k]; k];
    let mut loss_sum = 0.0f64;
    let mut correct = 0u64;
    let indices: Vec<usize> = (0..data.len()).collect();
    for chunk in indices.chunks(batch_size) {
        let (images, labels) = data.batch(chunk)?;
        let x = to_model_input(model, images)?;
        let logits = model.forward(&x, Mode::Eval)?;
        if logits.dims() != [chunk.len(), k] {
            return Err(NnError::BadInput {
                layer: format!("evaluate {}", model.name),
                input: logits.shape().clone(),
                reason: format!("model output must be [{}, {k}] classes", chunk.len()),
            });
        }
        let (loss, _) = softmax_cross_entropy(&logits, &labels)?;
        loss_sum += loss as f64 * chunk.len() as f64;
        for (&p, &t) in logits.argmax_rows()?.iter().zip(&labels) {
            confusion[t][p] += 1;
            correct += u64::from(p == t);
        }
        on_batch(chunk.last().map_or(0, |&i| i + 1));
    }
    let n = data.len();
    Ok(Evaluation {
        accuracy: correct as f64 / n as f64,
        loss: loss_sum / n as f64,
        confusion,
        samples: n,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layer::{Layer, ParamMut};
    use std::any::Any;
    use tensor_core::Shape;

    /// Flattens `[B, 1, 1, K]` to `[B, K]`: the "logits" are the pixels themselves.
    #[derive(Debug)]
    struct Flat;

    impl Layer for Flat {
        fn kind(&self) -> &'static str {
            "flat"
        }
        fn output_shape(&self, input: &Shape) -> Result<Shape> {
            let b = input.dims()[0];
            Ok(Shape::new(&[b, input.numel() / b.max(1)])?)
        }
        fn forward(&mut self, input: &Tensor, _mode: Mode) -> Result<Tensor> {
            let s = self.output_shape(input.shape())?;
            Ok(input.clone().reshape(s.dims())?)
        }
        fn backward(&mut self, g: &Tensor) -> Result<Tensor> {
            Ok(g.clone())
        }
        fn params_mut(&mut self) -> Vec<ParamMut<'_>> {
            Vec::new()
        }
        fn param_count(&self) -> usize {
            0
        }
        fn macs(&self, _input: &Shape) -> Result<u64> {
            Ok(0)
        }
        fn record(&self) -> Result<crate::record::LayerRecord> {
            Ok(crate::record::LayerRecord::new("flat"))
        }
        fn as_any(&self) -> &dyn Any {
            self
        }
        fn as_any_mut(&mut self) -> &mut dyn Any {
            self
        }
    }

    fn dataset(rows: &[[f32; 3]], labels: &[u8]) -> Dataset {
        let data = rows.iter().flatten().copied().collect();
        let images = Tensor::new(&[rows.len(), 1, 1, 3], data).unwrap();
        Dataset::new(images, labels.to_vec(), 3).unwrap()
    }

    #[test]
    fn accuracy_loss_and_confusion_match_hand_counts() {
        let data = dataset(
            &[
                [1.0, 0.0, 0.0], // predicted 0, true 0
                [0.0, 1.0, 0.0], // predicted 1, true 1
                [0.0, 0.0, 1.0], // predicted 2, true 1
                [0.0, 0.0, 1.0], // predicted 2, true 2
                [1.0, 0.0, 0.0], // predicted 0, true 2
            ],
            &[0, 1, 1, 2, 2],
        );
        let mut model = Model::new("flat", &[1, 1, 3], vec![Box::new(Flat)]);
        for batch in [1, 2, 5, 64] {
            let e = evaluate(&mut model, &data, batch).unwrap();
            assert_eq!(e.samples, 5);
            assert!((e.accuracy - 0.6).abs() < 1e-12);
            assert_eq!(
                e.confusion,
                vec![vec![1, 0, 0], vec![0, 1, 1], vec![1, 0, 1]]
            );
            // Correct rows have loss -ln(e / (e + 2)), wrong ones -ln(1 / (e + 2)).
            let e1 = std::f64::consts::E;
            let good = -(e1 / (e1 + 2.0)).ln();
            let bad = (e1 + 2.0).ln();
            let want = (3.0 * good + 2.0 * bad) / 5.0;
            assert!((e.loss - want).abs() < 1e-5, "{} vs {want}", e.loss);
            assert_eq!(e.per_class_accuracy(), vec![1.0, 0.5, 0.5]);
        }
        let e = evaluate(&mut model, &data, 2).unwrap();
        let table = e.confusion_table(Some(&["shirt", "bag", "boot"]));
        assert!(table.contains("bag |"), "{table}");
        assert!(table.contains("50.0%"), "{table}");
        assert!(format!("{e}").starts_with("accuracy 60.00% (5 samples)"));
    }

    #[test]
    fn mismatched_models_and_arguments_are_errors() {
        let data = dataset(&[[1.0, 0.0, 0.0]], &[0]);
        let mut model = Model::new("flat", &[1, 1, 3], vec![Box::new(Flat)]);
        assert!(evaluate(&mut model, &data, 0).is_err());
        assert!(evaluate(&mut model, &data.take(0).unwrap(), 4).is_err());
        // A model that expects 4 inputs per sample.
        let mut wrong = Model::new("flat4", &[4], vec![Box::new(Flat)]);
        assert!(evaluate(&mut wrong, &data, 1).is_err());
        // Output with 3 columns but the dataset says 4 classes.
        let images = Tensor::new(&[1, 1, 1, 3], vec![0.0; 3]).unwrap();
        let data4 = Dataset::new(images, vec![3u8], 4).unwrap();
        assert!(evaluate(&mut model, &data4, 1).is_err());
    }

    #[test]
    fn mlp_input_is_reshaped() {
        let data = dataset(&[[0.0, 2.0, 1.0]], &[1]);
        let mut model = Model::new("flat", &[3], vec![Box::new(Flat)]);
        let e = evaluate(&mut model, &data, 1).unwrap();
        assert_eq!(e.accuracy, 1.0);
    }
}
