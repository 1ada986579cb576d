//! Direct convolution (no im2col) for stride 1, no dilation, one group, with AVX2 + FMA and
//! a fused bias + ReLU + 2x2 max-pool epilogue: the fast path of [`super::conv2d_forward_fused`].
//!
//! Each image is copied into a zero-padded buffer `xp [C, Hp, Wp]` (`Hp = H + pad_top +
//! pad_bottom`, likewise `Wp`). With stride 1, output `(oy, ox)` reads padded input
//! `(oy + ki, ox + kj)`, so in the flat coordinate `q = oy*Wp + ox` the convolution is
//! one-dimensional:
//!
//! `acc[o, q] = sum_{c, ki, kj} w[o, c, ki, kj] * xp[c*Hp*Wp + ki*Wp + kj + q]`
//!
//! computed for every `q < OH*Wp` (rounded up to a tile); the columns `ox >= OW` are computed
//! and dropped by the epilogue (`Wp - OW = kw - 1` of `Wp`: 2 of 30 on cnn-teacher's 28x28
//! layers). The micro-kernel keeps a tile of [`MR`] = 6 output channels by [`NQ`] = 16
//! positions in 12 ymm registers (the shape of BLIS's Haswell 6x16 kernel): per tap, 2
//! unaligned loads of 8 consecutive positions and 6 weight broadcasts feed 12 FMAs (8 loads
//! per 12 FMAs, within Zen 3's 3 loads and 2 FMAs per cycle). A 4 x 24 tile would waste no
//! channel on 32- and 64-channel layers, but needs all 16 registers and LLVM spilled one
//! accumulator to the stack in the inner loop. Weights are packed once per layer ([`PackedConvWeights`]) as `[O/MR][K][MR]`
//! with the last tile zero-padded, so the tile loop reads them sequentially from L1.
//!
//! The epilogue reads the tile's `MR x q_len` accumulators once: adds the bias, applies ReLU
//! (`v < 0 -> 0`, NaN kept) and, when asked, the 2x2 stride-2 max pool (NaN wins, as
//! [`crate::pool::max_pool2d_forward`]); the bias is added after the max, which is exact
//! because `fl(a + b)` is monotone in `a`.

use super::Conv2dParams;
use crate::error::TensorError;

/// Output channels per micro-tile.
pub(super) const MR: usize = 6;
/// 8-lane vectors per micro-tile.
const NV: usize = 2;
const _: () = assert!(MR == 6 && NV == 2, "tile_avx2 names 6 x 2 accumulators");
/// Flat output positions per micro-tile.
pub(super) const NQ: usize = 8 * NV;

/// The weights of one convolution packed for the direct kernel: `[ceil(O/MR)][K][MR]` with
/// `K = C*kh*kw` (taps in weight order `(c, ki, kj)`), output channels past `O` zero.
///
/// Packing is `O*K` copies, cheap next to a forward pass, but a layer that runs many
/// inference calls keeps one (nn's `Conv2d` packs on its first inference call and drops the
/// packing whenever its parameters are handed out for writing).
#[derive(Clone, Debug, PartialEq)]
pub struct PackedConvWeights {
    data: Vec<f32>,
    weight_dims: [usize; 4],
}

impl PackedConvWeights {
    /// Packs `weight` (`[O, C/groups, kh, kw]`, row-major) of a convolution `p`.
    pub fn pack(weight: &[f32], p: &Conv2dParams) -> Result<Self, TensorError> {
        p.validate()?;
        let weight_dims = p.weight_dims();
        let (o, k) = (weight_dims[0], p.patch_len());
        if weight.len() != o * k {
            return Err(TensorError::DataLength {
                op: "conv2d: pack weights",
                len: weight.len(),
                expected: o * k,
                shape: crate::Shape::new(&weight_dims)?,
            });
        }
        let tiles = o.div_ceil(MR);
        let mut data = vec![0.0f32; tiles * k * MR];
        for (t, tile) in data.chunks_exact_mut(k * MR).enumerate() {
            for (kk, taps) in tile.chunks_exact_mut(MR).enumerate() {
                for (j, v) in taps.iter_mut().enumerate() {
                    let oc = t * MR + j;
                    if oc < o {
                        *v = weight[oc * k + kk];
                    }
                }
            }
        }
        Ok(Self { data, weight_dims })
    }

    /// The dims `[O, C/groups, kh, kw]` of the weight that was packed.
    pub fn weight_dims(&self) -> [usize; 4] {
        self.weight_dims
    }

    /// The packed tile `t` (`[K][MR]`).
    pub(super) fn tile(&self, t: usize) -> &[f32] {
        let len = self.data.len() / self.weight_dims[0].div_ceil(MR);
        &self.data[t * len..(t + 1) * len]
    }
}

impl Direct {
    /// The offset in the padded image of every tap `(c, ki, kj)`, in weight order:
    /// `c*Hp*Wp + ki*Wp + kj` (`None` if one does not fit in `u32`).
    pub(super) fn tap_offsets(&self) -> Option<Vec<u32>> {
        let mut offs = Vec::with_capacity(self.c * self.kh * self.kw);
        for c in 0..self.c {
            for ki in 0..self.kh {
                for kj in 0..self.kw {
                    offs.push(u32::try_from(c * self.hp * self.wp + ki * self.wp + kj).ok()?);
                }
            }
        }
        Some(offs)
    }
}

/// The geometry of a direct convolution on one image.
#[derive(Clone, Copy, Debug)]
pub(super) struct Direct {
    pub(super) c: usize,
    pub(super) h: usize,
    pub(super) w: usize,
    pub(super) hp: usize,
    pub(super) wp: usize,
    pub(super) pt: usize,
    pub(super) pl: usize,
    pub(super) kh: usize,
    pub(super) kw: usize,
    pub(super) o: usize,
    pub(super) oh: usize,
    pub(super) ow: usize,
    /// `OH*Wp` rounded up to [`NQ`].
    pub(super) q_len: usize,
    /// Floats of the padded image buffer: `C*Hp*Wp` plus the slack the last tile reads.
    pub(super) pad_len: usize,
}

impl Direct {
    /// The geometry of `p` (stride 1, dilation 1, one group: checked by the caller) on
    /// `C x H x W` images with output `OH x OW`.
    pub(super) fn new(
        p: &Conv2dParams,
        (c, h, w): (usize, usize, usize),
        (oh, ow): (usize, usize),
    ) -> Self {
        let pad = p.padding;
        let hp = h + pad.top + pad.bottom;
        let wp = w + pad.left + pad.right;
        let q_len = (oh * wp).div_ceil(NQ) * NQ;
        Self {
            c,
            h,
            w,
            hp,
            wp,
            pt: pad.top,
            pl: pad.left,
            kh: p.kernel.0,
            kw: p.kernel.1,
            o: p.out_channels,
            oh,
            ow,
            q_len,
            // The last tile reads up to q_len - 1 + (C-1)*Hp*Wp + (kh-1)*Wp + kw - 1, and
            // OH*Wp + (kh-1)*Wp = Hp*Wp.
            pad_len: c * hp * wp + q_len - oh * wp + wp + p.kernel.1,
        }
    }

    /// Copies image `x` (`[C, H, W]`) into the zero-padded buffer `xp` (`pad_len` floats).
    pub(super) fn pad_image(&self, x: &[f32], xp: &mut [f32]) {
        xp.fill(0.0);
        let plane = self.h * self.w;
        let pplane = self.hp * self.wp;
        for ch in 0..self.c {
            for iy in 0..self.h {
                let src = &x[ch * plane + iy * self.w..ch * plane + (iy + 1) * self.w];
                let d0 = ch * pplane + (iy + self.pt) * self.wp + self.pl;
                xp[d0..d0 + self.w].copy_from_slice(src);
            }
        }
    }
}

/// Accumulators of one output-channel tile over the whole image: `acc [MR][q_len]`, from the
/// padded image `xp`, the packed tile `wt` (`[K][MR]`) and the tap offsets `offs`
/// ([`Direct::tap_offsets`]). Runs the AVX2 micro-kernel.
///
/// # Safety
/// The CPU must support AVX2 and FMA; `offs` is `d.tap_offsets()`, `xp.len() >= d.pad_len`,
/// `wt.len() == K*MR` and
/// `acc.len() >= MR*d.q_len` (every index below is then in bounds: see `Direct::pad_len`).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn tile_avx2(d: &Direct, offs: &[u32], xp: &[f32], wt: &[f32], acc: &mut [f32]) {
    use std::arch::x86_64::*;
    debug_assert!(xp.len() >= d.pad_len && acc.len() >= MR * d.q_len);
    debug_assert_eq!(wt.len(), offs.len() * MR);
    let xbase = xp.as_ptr();
    let out = acc.as_mut_ptr();
    let mut q0 = 0;
    while q0 < d.q_len {
        // SAFETY (whole block): the bounds of the function's contract. The twelve
        // accumulators are named locals: as an array of arrays LLVM spilled one to the stack
        // and shuffled the others with a `vmovaps` per FMA (cnn-teacher at batch 256, one
        // thread, under load 11: 452 images/s that way, 726 with named locals, the flat tap
        // loop and this 6 x 16 tile).
        unsafe {
            let z = _mm256_setzero_ps();
            let (mut a00, mut a01, mut a10, mut a11) = (z, z, z, z);
            let (mut a20, mut a21, mut a30, mut a31) = (z, z, z, z);
            let (mut a40, mut a41, mut a50, mut a51) = (z, z, z, z);
            let mut wptr = wt.as_ptr();
            let base = xbase.add(q0);
            // One loop over the taps (offsets precomputed): with the (c, ki, kj) nest LLVM
            // rotated the accumulators through `vmovaps` at every level.
            for &off in offs {
                let p = base.add(off as usize);
                let x0 = _mm256_loadu_ps(p);
                let x1 = _mm256_loadu_ps(p.add(8));
                let w = _mm256_broadcast_ss(&*wptr);
                a00 = _mm256_fmadd_ps(w, x0, a00);
                a01 = _mm256_fmadd_ps(w, x1, a01);
                let w = _mm256_broadcast_ss(&*wptr.add(1));
                a10 = _mm256_fmadd_ps(w, x0, a10);
                a11 = _mm256_fmadd_ps(w, x1, a11);
                let w = _mm256_broadcast_ss(&*wptr.add(2));
                a20 = _mm256_fmadd_ps(w, x0, a20);
                a21 = _mm256_fmadd_ps(w, x1, a21);
                let w = _mm256_broadcast_ss(&*wptr.add(3));
                a30 = _mm256_fmadd_ps(w, x0, a30);
                a31 = _mm256_fmadd_ps(w, x1, a31);
                let w = _mm256_broadcast_ss(&*wptr.add(4));
                a40 = _mm256_fmadd_ps(w, x0, a40);
                a41 = _mm256_fmadd_ps(w, x1, a41);
                let w = _mm256_broadcast_ss(&*wptr.add(5));
                a50 = _mm256_fmadd_ps(w, x0, a50);
                a51 = _mm256_fmadd_ps(w, x1, a51);
                wptr = wptr.add(MR);
            }
            let rows = [
                [a00, a01],
                [a10, a11],
                [a20, a21],
                [a30, a31],
                [a40, a41],
                [a50, a51],
            ];
            for (j, aj) in rows.iter().enumerate() {
                for (v, av) in aj.iter().enumerate() {
                    _mm256_storeu_ps(out.add(j * d.q_len + q0 + 8 * v), *av);
                }
            }
        }
        q0 += NQ;
    }
}

/// The epilogue of output channels `o0..o0+rows` from their accumulators `acc [rows][q_len]`
/// into `y` (`rows` output planes, pooled or not): bias, ReLU, 2x2 max pool.
#[allow(clippy::too_many_arguments)]
pub(super) fn epilogue(
    d: &Direct,
    acc: &[f32],
    bias: Option<&[f32]>,
    o0: usize,
    relu: bool,
    pool: bool,
    y: &mut [f32],
) {
    let (ph, pw) = (d.oh / 2, d.ow / 2);
    let plane = if pool { ph * pw } else { d.oh * d.ow };
    if plane == 0 {
        return;
    }
    for (j, dst) in y.chunks_exact_mut(plane).enumerate() {
        let b = bias.map_or(0.0, |b| b[o0 + j]);
        let src = &acc[j * d.q_len..(j + 1) * d.q_len];
        let fin = |v: f32| {
            let v = v + b;
            if relu && v < 0.0 { 0.0 } else { v }
        };
        if pool {
            for py in 0..ph {
                let r0 = &src[2 * py * d.wp..2 * py * d.wp + d.ow];
                let r1 = &src[(2 * py + 1) * d.wp..(2 * py + 1) * d.wp + d.ow];
                for (px, out) in dst[py * pw..(py + 1) * pw].iter_mut().enumerate() {
                    let m = max_nan(
                        max_nan(r0[2 * px], r0[2 * px + 1]),
                        max_nan(r1[2 * px], r1[2 * px + 1]),
                    );
                    *out = fin(m);
                }
            }
        } else {
            for oy in 0..d.oh {
                let row = &src[oy * d.wp..oy * d.wp + d.ow];
                for (out, &v) in dst[oy * d.ow..(oy + 1) * d.ow].iter_mut().zip(row) {
                    *out = fin(v);
                }
            }
        }
    }
}

/// `max(a, b)`, NaN if either is NaN (as max pooling propagates it).
#[inline]
fn max_nan(a: f32, b: f32) -> f32 {
    if a.is_nan() || a > b { a } else { b }
}
