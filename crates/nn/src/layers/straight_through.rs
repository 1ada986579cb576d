//! The straight-through estimator shared by [`super::Sign`] and [`super::FakeQuantize`]
//! (Bengio, Léonard, Courville, 2013): backward passes the output gradient unchanged where the
//! forward's input was inside the layer's range, and zero elsewhere.

use tensor_core::Tensor;

use super::{check_grad, no_cache};
use crate::error::Result;

/// Where the last training forward let the gradient through (1.0) or not (0.0).
#[derive(Clone, Debug, Default)]
pub(crate) struct PassMask(Option<Tensor>);

impl PassMask {
    /// Records, for each element of `input`, whether `pass` lets its gradient through.
    pub(crate) fn record(&mut self, input: &Tensor, pass: impl Fn(f32) -> bool) {
        let mut m = input.clone();
        m.data_mut()
            .iter_mut()
            .for_each(|v| *v = if pass(*v) { 1.0 } else { 0.0 });
        self.0 = Some(m);
    }

    /// Forgets the mask.
    pub(crate) fn clear(&mut self) {
        self.0 = None;
    }
}

/// `dL/dx = dL/dy · mask`, the straight-through backward of layer `kind`.
pub(crate) fn ste_backward(kind: &str, mask: &PassMask, grad_output: &Tensor) -> Result<Tensor> {
    let m = mask.0.as_ref().ok_or_else(|| no_cache(kind))?;
    check_grad(kind, grad_output, m.dims())?;
    let mut g = grad_output.clone();
    g.data_mut()
        .iter_mut()
        .zip(m.data())
        .for_each(|(v, &k)| *v *= k);
    Ok(g)
}
