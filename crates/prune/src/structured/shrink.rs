//! Smaller copies of dense layers with some output or input channels kept: the edits filter
//! pruning makes (weights copied, never recomputed, so the kept connections are bit-identical).

use nn::layers::{BatchNorm2d, Conv2d, Linear};
use tensor_core::Tensor;

use super::error::StructuredResult;

/// `data` viewed as `rows` rows of `row_len`, keeping the rows in `keep` (in order).
fn gather_rows(data: &[f32], row_len: usize, keep: &[usize]) -> Vec<f32> {
    let mut out = Vec::with_capacity(keep.len() * row_len);
    for &r in keep {
        out.extend_from_slice(&data[r * row_len..(r + 1) * row_len]);
    }
    out
}

/// Keeps, in each of the `outer` rows of `data` (each `inner_count` blocks of `block`
/// values), the blocks in `keep`.
fn gather_blocks(data: &[f32], block: usize, inner_count: usize, keep: &[usize]) -> Vec<f32> {
    let row_len = inner_count * block;
    let rows = data.len() / row_len.max(1);
    let mut out = Vec::with_capacity(rows * keep.len() * block);
    for row in data.chunks_exact(row_len.max(1)) {
        for &k in keep {
            out.extend_from_slice(&row[k * block..(k + 1) * block]);
        }
    }
    out
}

fn gather(values: &[f32], keep: &[usize]) -> Vec<f32> {
    keep.iter().map(|&i| values[i]).collect()
}

/// The convolution with only the output filters `keep` (indices below `out_channels`,
/// increasing; checked by the caller). Groups must be 1.
pub(crate) fn conv_keep_outputs(conv: &Conv2d, keep: &[usize]) -> StructuredResult<Conv2d> {
    let mut p = *conv.params();
    let w = gather_rows(conv.weight().data(), p.patch_len(), keep);
    let bias = conv.bias().map(|b| gather(b.data(), keep));
    p.out_channels = keep.len();
    let weight = Tensor::new(&p.weight_dims(), w)?;
    let bias = bias.map(|b| Tensor::new(&[keep.len()], b)).transpose()?;
    Ok(Conv2d::from_parts(p, weight, bias)?)
}

/// The convolution reading only the input channels `keep`. Groups must be 1.
pub(crate) fn conv_keep_inputs(conv: &Conv2d, keep: &[usize]) -> StructuredResult<Conv2d> {
    let mut p = *conv.params();
    let (kh, kw) = p.kernel;
    let w = gather_blocks(conv.weight().data(), kh * kw, p.in_channels, keep);
    p.in_channels = keep.len();
    let weight = Tensor::new(&p.weight_dims(), w)?;
    Ok(Conv2d::from_parts(p, weight, conv.bias().cloned())?)
}

/// The linear layer with only the output units `keep`.
pub(crate) fn linear_keep_outputs(l: &Linear, keep: &[usize]) -> StructuredResult<Linear> {
    let w = gather_rows(l.weight().data(), l.in_features(), keep);
    let weight = Tensor::new(&[keep.len(), l.in_features()], w)?;
    let bias = l
        .bias()
        .map(|b| Tensor::new(&[keep.len()], gather(b.data(), keep)))
        .transpose()?;
    Ok(Linear::from_parts(weight, bias)?)
}

/// The linear layer reading only the input columns `keep`.
pub(crate) fn linear_keep_inputs(l: &Linear, keep: &[usize]) -> StructuredResult<Linear> {
    let w = gather_blocks(l.weight().data(), 1, l.in_features(), keep);
    let weight = Tensor::new(&[l.out_features(), keep.len()], w)?;
    Ok(Linear::from_parts(weight, l.bias().cloned())?)
}

/// The batch normalization of only the channels `keep` (its four tensors gathered).
pub(crate) fn batchnorm_keep(bn: &BatchNorm2d, keep: &[usize]) -> StructuredResult<BatchNorm2d> {
    let t = |x: &Tensor| Tensor::new(&[keep.len()], gather(x.data(), keep));
    Ok(BatchNorm2d::from_parts(
        t(bn.weight())?,
        t(bn.bias())?,
        t(bn.running_mean())?,
        t(bn.running_var())?,
        bn.eps(),
        bn.momentum(),
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use nn::layers::Conv2dParams;
    use tensor_core::rng::Rng;

    #[test]
    fn gathers_pick_the_kept_filters_and_channels() {
        // Weight [3, 2, 1, 2]: value = 100 o + 10 c + k.
        let w: Vec<f32> = (0..3)
            .flat_map(|o| {
                (0..2).flat_map(move |c| (0..2).map(move |k| (100 * o + 10 * c + k) as f32))
            })
            .collect();
        let p = Conv2dParams::new(2, 3, (1, 2));
        let conv = Conv2d::from_parts(
            p,
            Tensor::new(&[3, 2, 1, 2], w).unwrap(),
            Some(Tensor::new(&[3], vec![0.0, 1.0, 2.0]).unwrap()),
        )
        .unwrap();
        let out = conv_keep_outputs(&conv, &[0, 2]).unwrap();
        assert_eq!(
            out.weight().data(),
            &[0., 1., 10., 11., 200., 201., 210., 211.]
        );
        assert_eq!(out.bias().unwrap().data(), &[0.0, 2.0]);
        let inp = conv_keep_inputs(&conv, &[1]).unwrap();
        assert_eq!(inp.weight().dims(), &[3, 1, 1, 2]);
        assert_eq!(inp.weight().data(), &[10., 11., 110., 111., 210., 211.]);
        let l = Linear::new(4, 3, &mut Rng::seed_from_u64(1)).unwrap();
        let li = linear_keep_inputs(&l, &[1, 3]).unwrap();
        let lw = l.weight().data();
        assert_eq!(
            li.weight().data(),
            &[lw[1], lw[3], lw[5], lw[7], lw[9], lw[11]]
        );
        let lo = linear_keep_outputs(&l, &[2]).unwrap();
        assert_eq!(lo.weight().data(), &lw[8..12]);
    }
}
