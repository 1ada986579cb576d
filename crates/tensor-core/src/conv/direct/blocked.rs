//! The AVX-512 F direct convolution on a channel-blocked image (NCHW16c, as MLAS's NCHWc
//! kernels and oneDNN's `nChw16c`): the padded image is laid out `xb [C/16][Hp][Wp][16]`
//! (input channels past `C` zero), so that the 16 channel values of one padded position are
//! one 64-byte line and the positions of one row follow each other 64 bytes apart.
//!
//! A micro-tile holds two 16-channel output blocks (32 channels, a *pair*) by `N` consecutive
//! output positions of one row (`N` in [`WIDTHS`]) in `2N` zmm accumulators. Per tap
//! `(c-block, ki, kj)` and input channel `ci` it loads the two weight vectors (one 128-byte
//! line pair of the packed weights, [`BlockedWeights`]) and broadcasts `N` input values,
//! each from `row + 64*i + 4*ci` (one base pointer plus a constant displacement: no index
//! register, so the loads stay micro-fused and no position pointers hold registers), each
//! feeding two FMAs: `N + 2` loads per `2N` FMAs.
//!
//! `acc[p, o] = sum_{cb, ki, kj, ci} xb[cb, oy + ki, ox + kj, ci] * w[o, 16 cb + ci, ki, kj]`
//!
//! A row of `OW` positions takes tiles of the widest `N <= OW`; its last tile starts at
//! `OW - N`, recomputing (bit for bit: same operations in the same order) the positions it
//! shares with the one before instead of running a narrower kernel.
//!
//! The kernel replaced session 11's 512-bit kernel on NCHW padded planes (16 channels by 10
//! positions anywhere in the image, each broadcast `vfmadd231ps (base,index,4){1to16}`):
//! that addressing un-laminates on Intel cores and the ten position pointers filled the
//! general-purpose registers, and it measured 48-55% of the 512-bit peak on cnn-teacher
//! conv2-4 (batch 256, one thread). The measurements of this kernel are on
//! `tensor_core::conv`'s dispatch ([`super::super::fused`]) and in docs/BENCHMARKS.md.

use std::ops::Range;

use super::{Direct, Line, OB, as_floats};

/// Input channels per block of the blocked image (one 64-byte line per position).
pub(in crate::conv) const CB: usize = 16;
/// Output channels per micro-tile: two 16-lane blocks.
pub(in crate::conv) const PAIR: usize = 2 * OB;
/// Positions per micro-tile of the kernels, widest first.
pub(in crate::conv) const WIDTHS: [usize; 4] = [14, 8, 4, 1];

/// Weights packed for the blocked kernel: `[ceil(O/32)][ceil(C/16)][kh][kw][16 ci][32 co]`,
/// channels past `O` or `C` zero, each `(ci, co-block)` vector on its own 64-byte line.
#[derive(Clone, Debug, PartialEq)]
pub(in crate::conv) struct BlockedWeights {
    lines: Vec<Line>,
    /// Floats of one pair: `ceil(C/16) * kh * kw * 16 * 32`.
    pair_len: usize,
}

impl BlockedWeights {
    /// Packs `weight` (`[O, C, kh, kw]`, row-major, length checked by the caller).
    pub(in crate::conv) fn pack(weight: &[f32], [o, c, kh, kw]: [usize; 4]) -> Self {
        let (pairs, cblocks) = (o.div_ceil(PAIR), c.div_ceil(CB));
        let pair_len = cblocks * kh * kw * CB * PAIR;
        let mut lines = vec![Line::default(); pairs * pair_len / OB];
        let k = c * kh * kw;
        for (i, line) in lines.iter_mut().enumerate() {
            // Line `i` is `(t, cb, ki, kj, ci, half)` in row-major order.
            let half = i % 2;
            let ci = i / 2 % CB;
            let kj = i / (2 * CB) % kw;
            let ki = i / (2 * CB * kw) % kh;
            let cb = i / (2 * CB * kw * kh) % cblocks;
            let t = i / (2 * CB * kw * kh * cblocks);
            let ch = cb * CB + ci;
            if ch >= c {
                continue;
            }
            for (j, v) in line.0.iter_mut().enumerate() {
                let oc = t * PAIR + half * OB + j;
                if oc < o {
                    *v = weight[oc * k + (ch * kh + ki) * kw + kj];
                }
            }
        }
        Self { lines, pair_len }
    }

    /// The packed pair `t` (`[C/16][kh][kw][16][32]`, flat).
    pub(in crate::conv) fn pair(&self, t: usize) -> &[f32] {
        &as_floats(&self.lines)[t * self.pair_len..(t + 1) * self.pair_len]
    }
}

impl Direct {
    /// Input-channel blocks of the blocked image: `ceil(C/16)`.
    pub(in crate::conv) fn cblocks(&self) -> usize {
        self.c.div_ceil(CB)
    }

    /// Floats of the blocked padded image: `ceil(C/16) * Hp * Wp * 16`.
    pub(in crate::conv) fn blocked_len(&self) -> usize {
        self.cblocks() * self.hp * self.wp * CB
    }

    /// Copies rows `rows` (of `0..Hp`) of image `x` (`[C, H, W]`) padded and blocked into
    /// `xb` ([`Direct::blocked_len`] floats): `xb[c/16, pt + iy, pl + ix, c%16] = x[c, iy,
    /// ix]`, zero elsewhere in those rows; other rows are left as they are. Each row of 16
    /// channels is transposed 16 positions at a time in registers ([`transpose_row_avx512`]):
    /// the scalar copy (one strided load and one store per float) took 15% of the AVX-512
    /// path's time on cnn-teacher conv4 at batch 256 (`perf record`, session 12).
    ///
    /// # Safety
    /// The CPU must support AVX-512 F; `x.len() >= C*H*W`, `xb.len() >= self.blocked_len()`,
    /// `rows.end <= Hp`.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    pub(in crate::conv) unsafe fn pad_image_blocked(
        &self,
        x: &[f32],
        xb: &mut [f32],
        rows: Range<usize>,
    ) {
        let plane = self.h * self.w;
        let row_len = self.wp * CB;
        for (cb, block) in xb.chunks_exact_mut(self.hp * row_len).enumerate() {
            let cin = (self.c - cb * CB).min(CB);
            let src = &x[cb * CB * plane..(cb * CB + cin) * plane];
            for r in rows.clone() {
                let row = &mut block[r * row_len..(r + 1) * row_len];
                let Some(iy) = r.checked_sub(self.pt).filter(|&iy| iy < self.h) else {
                    row.fill(0.0);
                    continue;
                };
                row[..self.pl * CB].fill(0.0);
                row[(self.pl + self.w) * CB..].fill(0.0);
                let inner = &mut row[self.pl * CB..(self.pl + self.w) * CB];
                // SAFETY: AVX-512 F by this function's contract; `src` holds `cin` planes,
                // each with row `iy` of `w` floats; `inner` is `w` lines of 16.
                unsafe { transpose_row_avx512(&src[iy * self.w..], plane, cin, inner) };
            }
        }
    }

    /// [`Direct::pad_image_blocked`] one float at a time: the reference it is tested against.
    #[cfg(test)]
    fn pad_image_blocked_reference(&self, x: &[f32], xb: &mut [f32]) {
        let plane = self.h * self.w;
        xb.fill(0.0);
        for ch in 0..self.c {
            for iy in 0..self.h {
                for ix in 0..self.w {
                    let at = ((ch / CB * self.hp + self.pt + iy) * self.wp + self.pl + ix) * CB;
                    xb[at + ch % CB] = x[ch * plane + iy * self.w + ix];
                }
            }
        }
    }
}

/// Transposes `cin <= 16` channel rows (`src[ci*plane..][..w]`) into `w` lines of 16
/// channels (`dst [w][16]`, channels past `cin` zero), 16 positions per 16 x 16 transpose in
/// zmm registers ([`transpose16`]).
///
/// # Safety
/// The CPU must support AVX-512 F; `src.len() >= (cin-1)*plane + w` (when `cin > 0`),
/// `dst.len() == 16*w`, `cin <= 16`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
pub(in crate::conv) unsafe fn transpose_row_avx512(
    src: &[f32],
    plane: usize,
    cin: usize,
    dst: &mut [f32],
) {
    use std::arch::x86_64::*;
    let w = dst.len() / CB;
    debug_assert!(cin <= CB && (cin == 0 || src.len() >= (cin - 1) * plane + w));
    let mut x0 = 0;
    while x0 < w {
        let m = (w - x0).min(CB);
        let mask: __mmask16 = if m == CB { !0 } else { (1u16 << m) - 1 };
        // SAFETY (whole block): masked loads read positions `x0..x0+m < w` of channel rows
        // `ci < cin`; stores write lines `x0..x0+m` of `dst`.
        unsafe {
            let r: [__m512; CB] = std::array::from_fn(|ci| {
                if ci < cin {
                    _mm512_maskz_loadu_ps(mask, src.as_ptr().add(ci * plane + x0))
                } else {
                    _mm512_setzero_ps()
                }
            });
            // Each position's line is stored where it is made: gathered into an array and
            // copied out by a loop over `m`, LLVM kept the array on the stack and called
            // memcpy (2.5% of a cnn-teacher batch-256 run in `perf record`).
            transpose16(r, |j, v| {
                if j < m {
                    _mm512_storeu_ps(dst.as_mut_ptr().add((x0 + j) * CB), v);
                }
            });
        }
        x0 += m;
    }
}

/// The inverse of [`transpose_row_avx512`]: `w` lines of 16 channels (`src [w][16]`) into
/// `cout <= 16` channel rows of `w` positions (row `c` at `dst + c * plane`), 16 positions per
/// 16 x 16 transpose in zmm registers; lanes past `cout` of each line are not read out.
///
/// # Safety
/// The CPU must support AVX-512 F; `src.len() == 16 * w`; `cout <= 16`; for every `c < cout`,
/// `dst + c * plane .. + w` is valid for writes and nothing else accesses it meanwhile.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
pub(in crate::conv) unsafe fn untranspose_row_avx512(
    src: &[f32],
    dst: *mut f32,
    plane: usize,
    cout: usize,
) {
    use std::arch::x86_64::*;
    let w = src.len() / CB;
    debug_assert!(cout <= CB && src.len() == w * CB);
    let mut x0 = 0;
    while x0 < w {
        let m = (w - x0).min(CB);
        let mask: __mmask16 = if m == CB { !0 } else { (1u16 << m) - 1 };
        // SAFETY (whole block): loads read lines `x0..x0+m < w` of `src`; masked stores write
        // positions `x0..x0+m` of channel rows `c < cout`, valid by the contract.
        unsafe {
            let z = _mm512_setzero_ps();
            let r: [__m512; CB] = std::array::from_fn(|j| {
                if j < m {
                    _mm512_loadu_ps(src.as_ptr().add((x0 + j) * CB))
                } else {
                    z
                }
            });
            transpose16(r, |c, v| {
                if c < cout {
                    _mm512_mask_storeu_ps(dst.add(c * plane + x0), mask, v);
                }
            });
        }
        x0 += m;
    }
}

/// The 16 x 16 transpose of `r` (lane `j` of `r[i]` to lane `i` of row `j`) in registers:
/// `unpack{lo,hi}_ps` pairs rows, `shuffle_ps` makes 4 x 4 blocks (lane `L` of `u[4g+q]` =
/// column `4L+q`, rows `4g..4g+4`), two rounds of `shuffle_f32x4` gather each column's four
/// 128-bit quarters; each row `j` of the result goes to `put(j, row)` as it is made.
///
/// # Safety
/// The CPU must support AVX-512 F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn transpose16(
    r: [std::arch::x86_64::__m512; CB],
    mut put: impl FnMut(usize, std::arch::x86_64::__m512),
) {
    use std::arch::x86_64::*;
    let t: [__m512; CB] = std::array::from_fn(|i| {
        let (a, b) = (r[i & !1], r[i | 1]);
        if i % 2 == 0 {
            _mm512_unpacklo_ps(a, b)
        } else {
            _mm512_unpackhi_ps(a, b)
        }
    });
    let u: [__m512; CB] = std::array::from_fn(|i| {
        // u[4g+q]: q even from t[4g + q/2] and t[4g + q/2 + 2] low halves, q odd high.
        let (g, q) = (i / 4, i % 4);
        let (a, b) = (t[4 * g + q / 2], t[4 * g + q / 2 + 2]);
        if q % 2 == 0 {
            _mm512_shuffle_ps::<0x44>(a, b)
        } else {
            _mm512_shuffle_ps::<0xEE>(a, b)
        }
    });
    for q in 0..4 {
        let a = _mm512_shuffle_f32x4::<0x88>(u[q], u[4 + q]);
        let b = _mm512_shuffle_f32x4::<0xDD>(u[q], u[4 + q]);
        let c = _mm512_shuffle_f32x4::<0x88>(u[8 + q], u[12 + q]);
        let d = _mm512_shuffle_f32x4::<0xDD>(u[8 + q], u[12 + q]);
        put(q, _mm512_shuffle_f32x4::<0x88>(a, c));
        put(8 + q, _mm512_shuffle_f32x4::<0xDD>(a, c));
        put(4 + q, _mm512_shuffle_f32x4::<0x88>(b, d));
        put(12 + q, _mm512_shuffle_f32x4::<0xDD>(b, d));
    }
}

/// Generates the micro-kernel of one pair by `N` positions (one `($a, $b)` accumulator pair
/// per position), accumulators as named locals.
macro_rules! blocked_tile {
    ($name:ident, $n:literal, [$(($a:ident, $b:ident)),+]) => {
        #[doc = concat!("Accumulators of one pair by ", stringify!($n), " positions starting at ")]
        /// output `(oy, ox)`: block 0 into `acc[p*OB..]`, block 1 into
        /// `acc[p_len*OB + p*OB..]` (`p = oy*OW + ox + i`).
        ///
        /// # Safety
        #[doc = concat!("The CPU must support AVX-512 F; `ox + ", stringify!($n), " <= d.ow`, ")]
        /// `oy < d.oh`, `xb.len() >= d.blocked_len()`, `wt` is one pair of
        /// [`BlockedWeights`] for `d` and `acc.len() >= 2 * d.acc_len()`.
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx512f")]
        #[allow(unused_assignments)]
        unsafe fn $name(d: &Direct, xb: &[f32], wt: &[f32], oy: usize, ox: usize, acc: &mut [f32]) {
            use std::arch::x86_64::*;
            debug_assert!(oy < d.oh && d.ow.checked_sub($n).is_some_and(|last| ox <= last));
            debug_assert!(xb.len() >= d.blocked_len() && acc.len() >= 2 * d.acc_len());
            debug_assert_eq!(wt.len(), d.cblocks() * d.kh * d.kw * CB * PAIR);
            // SAFETY (whole body): every input read is `xb[((cb*Hp + oy + ki)*Wp + ox + kj
            // + i)*16 + ci]` with `oy + ki < Hp`, `ox + i + kj < Wp`, `ci < 16`; every weight
            // read is inside `wt` (one `[16][32]` block per tap); every store is a position
            // `p < OH*OW <= p_len` of one of the two accumulator halves.
            unsafe {
                let z = _mm512_setzero_ps();
                $(let mut $a = z; let mut $b = z;)+
                let x0 = xb.as_ptr();
                let mut w = wt.as_ptr();
                for cb in 0..d.cblocks() {
                    let cin = (d.c - cb * CB).min(CB);
                    for ki in 0..d.kh {
                        let row = x0.add(((cb * d.hp + oy + ki) * d.wp + ox) * CB);
                        for kj in 0..d.kw {
                            let mut x = row.add(kj * CB);
                            let mut wc = w;
                            for _ in 0..cin {
                                let w0 = _mm512_loadu_ps(wc);
                                let w1 = _mm512_loadu_ps(wc.add(OB));
                                let mut i = 0;
                                $(
                                    let v = _mm512_set1_ps(*x.add(i * CB));
                                    $a = _mm512_fmadd_ps(v, w0, $a);
                                    $b = _mm512_fmadd_ps(v, w1, $b);
                                    i += 1;
                                )+
                                x = x.add(1);
                                wc = wc.add(PAIR);
                            }
                            w = w.add(CB * PAIR);
                        }
                    }
                }
                let out = acc.as_mut_ptr();
                let half = d.acc_len();
                let p0 = oy * d.ow + ox;
                let mut i = 0;
                $(
                    _mm512_storeu_ps(out.add((p0 + i) * OB), $a);
                    _mm512_storeu_ps(out.add(half + (p0 + i) * OB), $b);
                    i += 1;
                )+
            }
        }
    };
}

#[rustfmt::skip]
blocked_tile!(tile14, 14, [(a0, b0), (a1, b1), (a2, b2), (a3, b3), (a4, b4), (a5, b5),
    (a6, b6), (a7, b7), (a8, b8), (a9, b9), (a10, b10), (a11, b11), (a12, b12), (a13, b13)]);
#[rustfmt::skip]
blocked_tile!(tile8, 8, [(a0, b0), (a1, b1), (a2, b2), (a3, b3), (a4, b4), (a5, b5),
    (a6, b6), (a7, b7)]);
blocked_tile!(tile4, 4, [(a0, b0), (a1, b1), (a2, b2), (a3, b3)]);
blocked_tile!(tile1, 1, [(a0, b0)]);

/// The accumulators of pair `wt` at output rows `rows`: `acc [2][p_len][OB]` (block 0, then
/// block 1), each half in the layout [`super::epilogue_avx2`] reads.
///
/// # Safety
/// The CPU must support AVX-512 F; `xb` is the image padded by [`Direct::pad_image_blocked`]
/// (`xb.len() >= d.blocked_len()`, at least the padded rows [`Direct::padded_rows`] of
/// `rows`), `wt` one pair of [`BlockedWeights`] for `d`, `acc.len() >= 2 * d.acc_len()` and
/// `rows.end <= d.oh`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
pub(in crate::conv) unsafe fn pair_avx512(
    d: &Direct,
    xb: &[f32],
    wt: &[f32],
    acc: &mut [f32],
    rows: Range<usize>,
) {
    if d.ow == 0 {
        return;
    }
    debug_assert!(rows.end <= d.oh);
    let n = WIDTHS.into_iter().find(|&n| n <= d.ow).unwrap_or(1);
    for oy in rows {
        let mut ox = 0;
        loop {
            let x0 = ox.min(d.ow - n);
            // SAFETY: `x0 + n <= OW`, `oy < OH`; the rest is this function's contract.
            unsafe {
                match n {
                    14 => tile14(d, xb, wt, oy, x0, acc),
                    8 => tile8(d, xb, wt, oy, x0, acc),
                    4 => tile4(d, xb, wt, oy, x0, acc),
                    _ => tile1(d, xb, wt, oy, x0, acc),
                }
            }
            if x0 + n >= d.ow {
                break;
            }
            ox += n;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conv::{Conv2dParams, Padding};
    use crate::dispatch::F32Path;
    use crate::rng::Rng;

    /// The register transpose against the float-by-float copy, channels around 16 and 32,
    /// widths around 16 and 32, asymmetric padding.
    #[test]
    fn blocked_padding_matches_reference() {
        if !F32Path::Avx512F.is_supported() {
            eprintln!("skipped: blocked padding (CPU lacks avx512f)");
            return;
        }
        let mut rng = Rng::seed_from_u64(5);
        for (c, h, w) in [
            (1, 2, 1),
            (15, 3, 15),
            (16, 2, 16),
            (17, 4, 17),
            (33, 2, 33),
        ] {
            let pad = Padding::from_onnx([1, 2, 0, 3]);
            let p = Conv2dParams::new(c, 4, (3, 3)).with_padding(pad);
            let d = Direct::new(&p, (c, h, w), (h - 1, w + 3), WIDTHS[0]);
            let x: Vec<f32> = (0..c * h * w).map(|_| rng.normal()).collect();
            let mut want = vec![0.0; d.blocked_len()];
            d.pad_image_blocked_reference(&x, &mut want);
            let mut got = vec![f32::NAN; d.blocked_len()];
            // SAFETY: AVX-512 F checked above; lengths as `Direct` derives them.
            unsafe { d.pad_image_blocked(&x, &mut got, 0..d.hp) };
            assert_eq!(got, want, "C={c} {h}x{w}");
        }
    }
}
