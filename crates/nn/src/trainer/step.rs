//! The passes of a training step through a sequential model: each layer's output is handed
//! to the next ([`Layer::forward_owned`](crate::Layer::forward_owned), [`Layer::backward_owned`](crate::Layer::backward_owned)), so a layer keeps or
//! reuses the buffer it receives instead of copying it, and a [`BatchNorm2d`] followed by a
//! [`ReLU`] runs as one pass. The results equal [`Model::forward`] in [`Mode::Train`] and
//! [`Model::backward`] bit for bit (tested below).

use tensor_core::Tensor;

use crate::error::Result;
use crate::layer::Mode;
use crate::layers::{BatchNorm2d, ReLU};
use crate::model::Model;

/// [`Model::forward`] in [`Mode::Train`], layers receiving their input by value.
pub(crate) fn forward(model: &mut Model, input: &Tensor) -> Result<Tensor> {
    model.check_input(input, " (training step)")?;
    let layers = &mut model.layers;
    let mut x: Option<Tensor> = None;
    let mut i = 0;
    while i < layers.len() {
        let owned = x.take().unwrap_or_else(|| input.clone());
        let (head, tail) = layers.split_at_mut(i + 1);
        if let (Some(bn), Some(relu)) = (
            head[i].as_any_mut().downcast_mut::<BatchNorm2d>(),
            tail.first_mut()
                .and_then(|l| l.as_any_mut().downcast_mut::<ReLU>()),
        ) {
            let shape = owned.shape().clone();
            let (y, mask) = bn.forward_train(owned, Mode::Train, true)?;
            if let Some(mask) = mask {
                relu.set_train_mask(shape, mask);
            }
            x = Some(y);
            i += 2;
            continue;
        }
        x = Some(head[i].forward_owned(owned, Mode::Train)?);
        i += 1;
    }
    Ok(x.unwrap_or_else(|| input.clone()))
}

/// [`Model::backward`], layers receiving the gradient by value.
pub(crate) fn backward(model: &mut Model, grad_output: Tensor) -> Result<Tensor> {
    model
        .layers
        .iter_mut()
        .rev()
        .try_fold(grad_output, |g, layer| layer.backward_owned(g))
}

#[cfg(test)]
mod tests {
    use tensor_core::rng::Rng;

    use super::*;
    use crate::zoo;

    fn bits(t: &Tensor) -> Vec<u32> {
        t.data().iter().map(|v| v.to_bits()).collect()
    }

    /// Every gradient and buffer of a model, as bits, in walk order.
    fn state(m: &Model) -> Vec<Vec<u32>> {
        let mut out = Vec::new();
        m.visit(&mut |_, l| l.params().iter().for_each(|p| out.push(bits(p.value))));
        out
    }

    #[test]
    fn owned_passes_equal_the_layer_by_layer_model_bit_for_bit() {
        for name in ["cnn-teacher", "lenet5", "lenet300"] {
            let mut rng = Rng::seed_from_u64(7);
            let mut a = zoo::build(name, &mut rng).unwrap();
            let mut rng = Rng::seed_from_u64(7);
            let mut b = zoo::build(name, &mut rng).unwrap();
            let mut data = Rng::seed_from_u64(11);
            let mut dims = vec![3];
            dims.extend_from_slice(&a.input_shape);
            let n: usize = dims.iter().product();
            let x = Tensor::new(&dims, (0..n).map(|_| data.uniform() - 0.3).collect()).unwrap();
            for step in 0..2 {
                let ya = a.forward(&x, Mode::Train).unwrap();
                let yb = forward(&mut b, &x).unwrap();
                assert_eq!(bits(&ya), bits(&yb), "{name} step {step}: logits");
                let g = Tensor::new(
                    ya.dims(),
                    (0..ya.numel()).map(|_| data.uniform() - 0.5).collect(),
                )
                .unwrap();
                let da = a.backward(&g).unwrap();
                let db = backward(&mut b, g).unwrap();
                assert_eq!(bits(&da), bits(&db), "{name} step {step}: input gradient");
                let (mut ga, mut gb) = (Vec::new(), Vec::new());
                for l in a.layers.iter_mut() {
                    l.params_mut().iter().for_each(|p| ga.push(bits(p.grad)));
                }
                for l in b.layers.iter_mut() {
                    l.params_mut().iter().for_each(|p| gb.push(bits(p.grad)));
                }
                assert_eq!(ga, gb, "{name} step {step}: parameter gradients");
                assert_eq!(
                    state(&a),
                    state(&b),
                    "{name} step {step}: parameters, buffers"
                );
            }
        }
    }

    #[test]
    fn a_wrong_input_shape_is_an_error_naming_the_model() {
        let mut m = zoo::build("lenet5", &mut Rng::seed_from_u64(1)).unwrap();
        let x = Tensor::zeros_dims(&[2, 1, 27, 28]).unwrap();
        let err = forward(&mut m, &x).unwrap_err().to_string();
        assert!(err.contains("lenet5"), "{err}");
    }
}
