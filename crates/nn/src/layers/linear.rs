//! Linear (fully connected) layer: `y = x W^T + b`, weight `[out, in]` as PyTorch stores it.

use std::any::Any;
use std::sync::OnceLock;

use tensor_core::gemm::{GemmParams, LinearEpilogue, PackedLinear, gemm, linear_packed};
use tensor_core::rng::Rng;
use tensor_core::{Shape, Tensor};

use super::params::WeightBias;
use super::{MAX_DIM, bad_input, check_grad, no_cache, uniform_tensor};
use crate::error::Result;
use crate::layer::{Layer, Mode, ParamMut, ParamRef};
use crate::record::LayerRecord;

/// A fully connected layer on `[N, in]` batches.
///
/// Backward (for `y = x W^T + b`, `g = dL/dy`): `dx = g W`, `dW += g^T x`,
/// `db += sum_n g[n]`.
///
/// Inference ([`Mode::Eval`] and [`Linear::forward_relu`]) runs `tensor_core`'s packed-weight
/// kernel with bias and ReLU fused into its store; the weight is packed by the first inference
/// call (behind a `OnceLock`, as `Model` reaches this layer by shared reference) and the
/// packing is dropped whenever the parameters are handed out for writing
/// ([`Layer::params_mut`]). Training forward passes run the faer GEMM, as the weights change
/// every step.
#[derive(Clone, Debug)]
pub struct Linear {
    /// Weight and bias with their gradients.
    wb: WeightBias,
    /// The weight packed for inference, made by the first inference call.
    packed: OnceLock<PackedLinear>,
    /// The input of the last training-mode forward pass.
    cache: Option<Tensor>,
    /// Whether `backward` computes the input gradient (see `Layer::set_input_grad_needed`).
    input_grad: bool,
}

impl Linear {
    /// A layer `in_features -> out_features` with bias, initialised as PyTorch's
    /// `nn.Linear`: weight and bias uniform in `[-1/sqrt(in), 1/sqrt(in)]` (He et al.'s
    /// kaiming-uniform with `a = sqrt(5)`).
    pub fn new(in_features: usize, out_features: usize, rng: &mut Rng) -> Result<Self> {
        let bound = 1.0 / (in_features.max(1) as f32).sqrt();
        let weight = uniform_tensor(&[out_features, in_features], bound, rng)?;
        let bias = uniform_tensor(&[out_features], bound, rng)?;
        Self::from_parts(weight, Some(bias))
    }

    /// A layer from its weight `[out, in]` and optional bias `[out]`.
    pub fn from_parts(weight: Tensor, bias: Option<Tensor>) -> Result<Self> {
        if weight.shape().rank() != 2 {
            return Err(bad_input(
                "linear",
                weight.shape(),
                "weight must be [out, in]",
            ));
        }
        let out = weight.dims()[0];
        if let Some(b) = &bias
            && b.dims() != [out]
        {
            return Err(bad_input(
                "linear",
                b.shape(),
                format!("bias must be [{out}] to match weight {}", weight.shape()),
            ));
        }
        Ok(Self {
            wb: WeightBias::new(weight, bias),
            packed: OnceLock::new(),
            cache: None,
            input_grad: true,
        })
    }

    /// Rebuilds the layer from its record (attributes `in_features`, `out_features`,
    /// `bias` in {0, 1}; tensors `weight` and, when `bias = 1`, `bias`).
    pub fn from_record(rec: &LayerRecord) -> Result<Self> {
        rec.expect_kind("linear")?;
        let inf = rec.usize_in("in_features", 1, MAX_DIM)?;
        let outf = rec.usize_in("out_features", 1, MAX_DIM)?;
        let (weight, bias) = WeightBias::read_record(rec, &[outf, inf], outf)?;
        Self::from_parts(weight, bias)
    }

    /// Input features.
    pub fn in_features(&self) -> usize {
        self.wb.weight.dims()[1]
    }

    /// Output features.
    pub fn out_features(&self) -> usize {
        self.wb.weight.dims()[0]
    }

    /// The weight `[out, in]`.
    pub fn weight(&self) -> &Tensor {
        &self.wb.weight
    }

    /// The bias `[out]`, if any.
    pub fn bias(&self) -> Option<&Tensor> {
        self.wb.bias.as_ref()
    }

    /// Inference of this layer and a ReLU after it in one pass: `max(x W^T + b, 0)` (what
    /// `Model::forward` calls for a linear layer followed by ReLU in [`Mode::Eval`]). Caches
    /// nothing.
    pub fn forward_relu(&self, input: &Tensor) -> Result<Tensor> {
        self.infer_with(input, true)
    }

    /// Inference, `x W^T + b`: what [`Layer::forward`] computes in [`Mode::Eval`], through a
    /// shared reference (the model's chunks of a batch run it from several threads at once).
    pub fn infer(&self, input: &Tensor) -> Result<Tensor> {
        self.infer_with(input, false)
    }

    /// Packs the weight now if it is not packed yet (what the first inference call does), so
    /// that threads about to run the layer at once do not each pack it.
    pub fn prepare_inference(&self) -> Result<()> {
        self.packing().map(|_| ())
    }

    /// The packed weight, made on first use.
    fn packing(&self) -> Result<&PackedLinear> {
        if let Some(p) = self.packed.get() {
            return Ok(p);
        }
        let p = PackedLinear::pack(
            self.wb.weight.data(),
            self.out_features(),
            self.in_features(),
        )?;
        Ok(self.packed.get_or_init(|| p))
    }

    /// Inference: `x W^T + b`, then ReLU (`v < 0 -> 0`, NaN kept) when `relu`, in one pass of
    /// the packed-weight kernel (packing the weight on first use), on the threads
    /// [`tensor_core::serial::threads`] allows (one inside a chunk of the model's batch).
    fn infer_with(&self, input: &Tensor, relu: bool) -> Result<Tensor> {
        self.check_input(input.shape())?;
        let (n, outf) = (input.dims()[0], self.out_features());
        let packed = self.packing()?;
        let mut y = Tensor::zeros_dims(&[n, outf])?;
        let epi = LinearEpilogue {
            bias: self.wb.bias.as_ref().map(|b| b.data()),
            relu,
        };
        let threads = tensor_core::serial::threads();
        linear_packed(input.data(), n, packed, epi, y.data_mut(), threads)?;
        Ok(y)
    }

    /// Training forward: `x W^T + b` by the faer GEMM, then the bias pass.
    fn affine(&self, input: &Tensor) -> Result<Tensor> {
        self.check_input(input.shape())?;
        let (n, inf, outf) = (input.dims()[0], self.in_features(), self.out_features());
        let mut y = Tensor::zeros_dims(&[n, outf])?;
        if n == 1 {
            // One sample: y^T = W x^T, the orientation faer runs fastest (DESIGN.md:
            // 21-28 GFLOP/s against 3.5 for x^T W); [out, 1] and [1, out] share a layout.
            gemm(
                outf,
                1,
                inf,
                self.wb.weight.data(),
                input.data(),
                y.data_mut(),
                &GemmParams::default(),
            )?;
        } else {
            gemm(
                n,
                outf,
                inf,
                input.data(),
                self.wb.weight.data(),
                y.data_mut(),
                &GemmParams::with_trans(false, true),
            )?;
        }
        if let Some(b) = &self.wb.bias {
            for row in y.data_mut().chunks_exact_mut(outf) {
                row.iter_mut().zip(b.data()).for_each(|(v, &bv)| *v += bv);
            }
        }
        Ok(y)
    }

    fn check_input(&self, input: &Shape) -> Result<()> {
        if input.rank() != 2 || input.dims()[1] != self.in_features() {
            return Err(bad_input(
                "linear",
                input,
                format!("expected [batch, {}]", self.in_features()),
            ));
        }
        Ok(())
    }
}

impl Layer for Linear {
    fn kind(&self) -> &'static str {
        "linear"
    }

    fn output_shape(&self, input: &Shape) -> Result<Shape> {
        self.check_input(input)?;
        Ok(Shape::new(&[input.dims()[0], self.out_features()])?)
    }

    fn forward(&mut self, input: &Tensor, mode: Mode) -> Result<Tensor> {
        if mode == Mode::Eval {
            return self.infer(input);
        }
        self.forward_owned(input.clone(), mode)
    }

    fn forward_owned(&mut self, input: Tensor, mode: Mode) -> Result<Tensor> {
        if mode == Mode::Eval {
            return self.infer(&input);
        }
        let y = self.affine(&input)?;
        // The input is kept, not copied.
        self.cache = Some(input);
        Ok(y)
    }

    fn backward(&mut self, grad_output: &Tensor) -> Result<Tensor> {
        let x = self.cache.as_ref().ok_or_else(|| no_cache("linear"))?;
        let (n, inf, outf) = (x.dims()[0], self.in_features(), self.out_features());
        check_grad("linear", grad_output, &[n, outf])?;
        let g = grad_output.data();
        // dW [out, in] += g^T [out, N] x [N, in]
        gemm(
            outf,
            inf,
            n,
            g,
            x.data(),
            self.wb.grad_weight.data_mut(),
            &GemmParams::with_trans(true, false).beta(1.0),
        )?;
        if let Some(gb) = &mut self.wb.grad_bias {
            let gb = gb.data_mut();
            for row in g.chunks_exact(outf) {
                gb.iter_mut().zip(row).for_each(|(a, &v)| *a += v);
            }
        }
        // dx [N, in] = g [N, out] W [out, in]
        let mut dx = Tensor::zeros(x.shape().clone());
        if !self.input_grad {
            return Ok(dx);
        }
        gemm(
            n,
            inf,
            outf,
            g,
            self.wb.weight.data(),
            dx.data_mut(),
            &GemmParams::default(),
        )?;
        Ok(dx)
    }

    fn params(&self) -> Vec<ParamRef<'_>> {
        self.wb.refs()
    }

    fn params_mut(&mut self) -> Vec<ParamMut<'_>> {
        // The caller may write the weight: the packing would be stale.
        self.packed = OnceLock::new();
        self.wb.muts()
    }

    fn param_count(&self) -> usize {
        self.wb.count()
    }

    fn macs(&self, input: &Shape) -> Result<u64> {
        self.check_input(input)?;
        Ok((input.dims()[0] * self.in_features()) as u64 * self.out_features() as u64)
    }

    fn clear_cache(&mut self) {
        self.cache = None;
    }

    fn set_input_grad_needed(&mut self, needed: bool) {
        self.input_grad = needed;
    }

    fn record(&self) -> Result<LayerRecord> {
        let rec = LayerRecord::new("linear")
            .with_int("in_features", self.in_features() as i64)
            .with_int("out_features", self.out_features() as i64);
        Ok(self.wb.write_record(rec))
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}
