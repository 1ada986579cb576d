//! Data augmentation for image batches: random horizontal flips and small translations.
//!
//! Per image, independently: with probability 1/2 mirror left-right, then translate by
//! `(dy, dx)`, each uniform in `[-max_shift, max_shift]`, filling uncovered pixels with zero
//! (the standard flip + shift augmentation of CIFAR/Fashion-MNIST training, as in He et al.,
//! "Deep Residual Learning", 2016, with zero padding in place of pad-and-crop: the two are the
//! same map for shifts up to the padding).

use serde::{Deserialize, Serialize};
use tensor_core::Tensor;
use tensor_core::rng::Rng;

use crate::error::{NnError, Result};

/// Augmentation settings; `Default` is flip on, shifts up to 2 pixels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Augment {
    /// Mirror each image left-right with probability 1/2.
    pub flip: bool,
    /// Largest translation in pixels along each axis (0 disables shifting).
    pub max_shift: usize,
}

impl Default for Augment {
    fn default() -> Self {
        Self {
            flip: true,
            max_shift: 2,
        }
    }
}

/// Augments an NCHW batch in place (see the module docs). Random draws per image, in order:
/// the flip coin (only if `aug.flip`), then `dy`, then `dx` (only if `aug.max_shift > 0`),
/// so the same seed gives the same batch. All channels of an image move together.
///
/// Errors if `images` is not rank 4 or `max_shift` is not smaller than both H and W (a larger
/// shift can blank the whole image).
pub fn augment_batch(images: &mut Tensor, aug: &Augment, rng: &mut Rng) -> Result<()> {
    let &[n, c, h, w] = images.dims() else {
        return Err(NnError::BadInput {
            layer: "augment_batch".into(),
            input: images.shape().clone(),
            reason: "want an NCHW batch [N, C, H, W]".into(),
        });
    };
    let s = aug.max_shift;
    if s > 0 && (s >= h || s >= w) {
        return Err(NnError::BadInput {
            layer: "augment_batch".into(),
            input: images.shape().clone(),
            reason: format!("max_shift {s} must be smaller than the image ({h} x {w})"),
        });
    }
    let plane = h * w;
    let per = c * plane;
    if per == 0 {
        return Ok(());
    }
    let mut scratch = vec![0.0f32; per];
    for img in images.data_mut().chunks_exact_mut(per).take(n) {
        let flip = aug.flip && rng.below(2) == 1;
        let (dy, dx) = if s > 0 {
            // s < h, so 2s + 1 cannot overflow.
            let dy = rng.below(2 * s + 1) as isize - s as isize;
            let dx = rng.below(2 * s + 1) as isize - s as isize;
            (dy, dx)
        } else {
            (0, 0)
        };
        if !flip && dy == 0 && dx == 0 {
            continue;
        }
        scratch.copy_from_slice(img);
        transform(img, &scratch, c, h, w, flip, dy, dx);
    }
    Ok(())
}

/// `out[ch, y, x] = src[ch, y - dy, f(x - dx)]` with `f(u) = w - 1 - u` when flipping,
/// zero where the source index falls outside the image.
#[allow(clippy::too_many_arguments)]
fn transform(
    out: &mut [f32],
    src: &[f32],
    c: usize,
    h: usize,
    w: usize,
    flip: bool,
    dy: isize,
    dx: isize,
) {
    out.fill(0.0);
    // Destination columns x with 0 <= x - dx < w.
    let x0 = dx.max(0) as usize;
    let x1 = (w as isize + dx).min(w as isize).max(0) as usize;
    for ch in 0..c {
        let src_plane = &src[ch * h * w..(ch + 1) * h * w];
        let out_plane = &mut out[ch * h * w..(ch + 1) * h * w];
        for y in 0..h {
            let sy = y as isize - dy;
            if sy < 0 || sy >= h as isize {
                continue;
            }
            let src_row = &src_plane[sy as usize * w..(sy as usize + 1) * w];
            let dst = &mut out_plane[y * w + x0..y * w + x1];
            // Source columns u = x - dx for x in x0..x1, i.e. lo..hi (within 0..w).
            let lo = (x0 as isize - dx) as usize;
            let hi = lo + dst.len();
            if flip {
                // Flipped source column of u is w - 1 - u: walk src[w - hi..w - lo] backwards.
                for (d, &s) in dst.iter_mut().zip(src_row[w - hi..w - lo].iter().rev()) {
                    *d = s;
                }
            } else {
                dst.copy_from_slice(&src_row[lo..hi]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shift_moves_a_pixel() {
        let mut src = vec![0.0; 25];
        src[2 * 5 + 2] = 1.0;
        let mut out = vec![0.0; 25];
        transform(&mut out, &src, 1, 5, 5, false, 1, -2);
        assert_eq!(out[3 * 5], 1.0);
        assert_eq!(out.iter().sum::<f32>(), 1.0);
        transform(&mut out, &src, 1, 5, 5, true, 0, 1);
        // Flip maps column 2 to 2, then shift right by 1.
        assert_eq!(out[2 * 5 + 3], 1.0);
    }
}
