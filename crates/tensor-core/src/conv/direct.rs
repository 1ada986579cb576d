//! Direct convolution (no im2col) for stride 1, no dilation, one group, with AVX2 + FMA and
//! a fused bias + ReLU + 2x2 max-pool epilogue: the fast path of [`super::conv2d_forward_fused`].
//!
//! Each image is copied into a zero-padded buffer `xp [C, Hp, Wp]` (`Hp = H + pad_top +
//! pad_bottom`, likewise `Wp`). With stride 1, output position `p = oy*OW + ox` reads padded
//! input `(oy + ki, ox + kj)`, that is `xp[base(p) + off(c, ki, kj)]` with
//! `base(p) = oy*Wp + ox` and `off = c*Hp*Wp + ki*Wp + kj`:
//!
//! `acc[p, o] = sum_{c, ki, kj} xp[base(p) + off(c, ki, kj)] * w[o, c, ki, kj]`
//!
//! The micro-kernel is the transpose of a GEMM tile, as in MLAS's NCHWc convolutions: the
//! weights are the vectors and the input is broadcast. A tile holds [`OB`] = 16 output
//! channels (two 8-lane vectors) by [`NP`] = 6 output positions in 12 ymm accumulators; per
//! tap it loads the two weight vectors (one 64-byte line of the packed weights) and
//! broadcasts 6 input values, feeding 12 FMAs (8 loads per 12 FMAs, within Zen 3's 3 loads
//! and 2 FMAs per cycle; 15 of the 16 ymm registers). Because positions are broadcast one by
//! one, a tile may take any 6 positions (they cross row ends freely): no column of the padded
//! row is computed and dropped, and 32-, 64- and 128-channel layers fill their tiles exactly.
//! A last tile of at most 8 channels runs a one-vector variant (6 accumulators).
//!
//! The AVX-512 F path (session 12) runs on a channel-blocked copy of the image instead
//! (module `blocked`: NCHW16c, two 16-channel output blocks by up to 14 positions of one
//! row, every broadcast at a constant displacement from one base pointer); it writes the
//! same `[P][OB]` accumulators per 16-channel block, so the one epilogue below serves all
//! paths. It replaced session 11's 512-bit kernel on these NCHW planes (one 16-channel tile
//! by 10 positions, one position pointer each, `vfmadd231ps (base,index,4){1to16}`).
//! Channels past `O` are packed as zero, so no channel mask is needed. The AVX2 kernels are
//! one macro (`direct_tile!`).
//!
//! Weights are packed once per layer ([`PackedConvWeights`]) as `[ceil(O/OB)][K][OB]`, one
//! 64-byte-aligned line per tap, channels past `O` zero. The kernel writes a tile's
//! accumulators as `acc [P][OB]` (`P = OH*OW`, position-major); the epilogue reads them once:
//! adds the bias, applies ReLU (`v < 0 -> 0`, NaN kept) and, when asked, the 2x2 stride-2 max
//! pool (NaN wins, as [`crate::pool::max_pool2d_forward`]); the bias is added after the max,
//! which is exact because `fl(a + b)` is monotone in `a`.
//!
//! The previous kernel (6 channels x 16 consecutive flat positions of the padded plane,
//! session 6) dropped `kw - 1` of every `Wp` computed columns (2 of 16 on 14x14 layers),
//! padded 32-channel layers to 36 and read input vectors across cache lines.

pub(super) mod blocked;

use std::ops::Range;

use super::Conv2dParams;
use crate::error::TensorError;

/// Output channels per micro-tile (two 8-lane vectors).
pub(super) const OB: usize = 16;
/// Output positions per micro-tile of the AVX2 kernel.
pub(super) const NP: usize = 6;

/// One packed tap: the weights of [`OB`] output channels, on its own cache line.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
#[repr(C, align(64))]
struct Line([f32; OB]);

/// `lines` as their `lines.len() * OB` floats.
fn as_floats(lines: &[Line]) -> &[f32] {
    // SAFETY: `Line` is `repr(C)` over `[f32; OB]` (size 64, no padding), so the lines are
    // `lines.len() * OB` contiguous, initialised f32 values.
    unsafe { std::slice::from_raw_parts(lines.as_ptr().cast::<f32>(), lines.len() * OB) }
}

/// The weights of one convolution packed for the direct kernel: `[ceil(O/OB)][K][OB]` with
/// `K = C*kh*kw` (taps in weight order `(c, ki, kj)`), output channels past `O` zero, each
/// tap's [`OB`] weights on one 64-byte line.
///
/// Packing is `O*K` copies, cheap next to a forward pass, but a layer that runs many
/// inference calls keeps one (nn's `Conv2d` packs on its first inference call and drops the
/// packing whenever its parameters are handed out for writing). The same weights are kept
/// packed for the AVX-512 kernel on the channel-blocked image as well
/// (`[ceil(O/32)][ceil(C/16)][kh][kw][16][32]`, module `blocked`).
#[derive(Clone, Debug, PartialEq)]
pub struct PackedConvWeights {
    lines: Vec<Line>,
    blocked: blocked::BlockedWeights,
    weight_dims: [usize; 4],
    /// The Winograd F(2x2, 3x3) transform of the weights, made on first use (`winograd`).
    winograd: std::sync::OnceLock<super::winograd::WinogradWeights>,
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
        let tiles = o.div_ceil(OB);
        let mut lines = vec![Line::default(); tiles * k];
        for (t, tile) in lines.chunks_exact_mut(k.max(1)).enumerate() {
            for (kk, line) in tile.iter_mut().enumerate() {
                for (j, v) in line.0.iter_mut().enumerate() {
                    let oc = t * OB + j;
                    if oc < o {
                        *v = weight[oc * k + kk];
                    }
                }
            }
        }
        let blocked = blocked::BlockedWeights::pack(weight, weight_dims);
        Ok(Self {
            lines,
            blocked,
            weight_dims,
            winograd: std::sync::OnceLock::new(),
        })
    }

    /// The dims `[O, C/groups, kh, kw]` of the weight that was packed.
    pub fn weight_dims(&self) -> [usize; 4] {
        self.weight_dims
    }

    /// The cache of the Winograd transform of these weights.
    pub(super) fn winograd_cell(&self) -> &std::sync::OnceLock<super::winograd::WinogradWeights> {
        &self.winograd
    }

    /// The packed tile `t` (`[K][OB]`, flat).
    pub(super) fn tile(&self, t: usize) -> &[f32] {
        let k = self.lines.len() / self.weight_dims[0].div_ceil(OB);
        as_floats(&self.lines[t * k..(t + 1) * k])
    }

    /// The pair `t` (output channels `32t..32t+32`) packed for the blocked AVX-512 kernel.
    pub(super) fn blocked_pair(&self, t: usize) -> &[f32] {
        self.blocked.pair(t)
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
    /// Positions per micro-tile of the kernel that runs ([`NP`], or the widest of the blocked
    /// kernel's `WIDTHS`).
    pub(super) np: usize,
    /// Output positions `OH*OW` rounded up to `np` (the rows of the accumulator buffer).
    pub(super) p_len: usize,
    /// Floats of the padded image buffer: `C*Hp*Wp`.
    pub(super) pad_len: usize,
}

impl Direct {
    /// The geometry of `p` (stride 1, dilation 1, one group: checked by the caller) on
    /// `C x H x W` images with output `OH x OW`, for a kernel of `np` positions per tile.
    pub(super) fn new(
        p: &Conv2dParams,
        (c, h, w): (usize, usize, usize),
        (oh, ow): (usize, usize),
        np: usize,
    ) -> Self {
        let pad = p.padding;
        let hp = h + pad.top + pad.bottom;
        let wp = w + pad.left + pad.right;
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
            np,
            p_len: (oh * ow).div_ceil(np) * np,
            pad_len: c * hp * wp,
        }
    }

    /// Floats of one tile's accumulator buffer (`[p_len][OB]`).
    pub(super) fn acc_len(&self) -> usize {
        self.p_len * OB
    }

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

    /// The padded-image offset `oy*Wp + ox` of every output position `p < p_len` (past the
    /// last position, the last one again, so that a last partial tile recomputes it instead
    /// of reading past the image), or `None` if one does not fit in `u32`.
    pub(super) fn position_bases(&self) -> Option<Vec<u32>> {
        let last = (self.oh * self.ow).max(1) - 1;
        (0..self.p_len)
            .map(|p| {
                let p = p.min(last);
                u32::try_from((p / self.ow) * self.wp + p % self.ow).ok()
            })
            .collect()
    }

    /// Copies rows `rows` (of `0..Hp`) of the zero-padded image of `x` (`[C, H, W]`) into the
    /// buffer `xp` (`pad_len` floats, `[C][Hp][Wp]`); other rows of `xp` are left as they are.
    /// A batch-1 split by output rows pads, on each thread, only the rows its half reads.
    pub(super) fn pad_image(&self, x: &[f32], xp: &mut [f32], rows: Range<usize>) {
        let planes = PaddedPlanes {
            hw: (self.h, self.w),
            padded: (self.hp, self.wp),
            top_left: (self.pt, self.pl),
        };
        planes.pad(x, xp, self.c, rows);
    }

    /// The padded rows that output rows `rows` read: `rows.start..rows.end + kh - 1`.
    pub(super) fn padded_rows(&self, rows: &Range<usize>) -> Range<usize> {
        rows.start..(rows.end + self.kh - 1).min(self.hp)
    }
}

/// Zero-padded copies of `H x W` planes into `Hp x Wp` planes, the input at `(pt, pl)`
/// (`pl + W <= Wp`): the direct kernels' padded image and the direct weight gradient's
/// ([`super::weight_grad`]) padded input.
pub(super) struct PaddedPlanes {
    /// `(H, W)`.
    pub(super) hw: (usize, usize),
    /// `(Hp, Wp)`.
    pub(super) padded: (usize, usize),
    /// `(pt, pl)`.
    pub(super) top_left: (usize, usize),
}

impl PaddedPlanes {
    /// Copies rows `rows` (of `0..Hp`) of the first `planes` padded planes of `x` (planes of
    /// `H*W` floats) into `xp` (`[planes][Hp][Wp]`); other rows of `xp` are left as they are.
    pub(super) fn pad(&self, x: &[f32], xp: &mut [f32], planes: usize, rows: Range<usize>) {
        let ((h, w), (hp, wp), (pt, pl)) = (self.hw, self.padded, self.top_left);
        for (ch, dst) in xp.chunks_exact_mut(hp * wp).take(planes).enumerate() {
            for r in rows.clone() {
                let row = &mut dst[r * wp..(r + 1) * wp];
                match r.checked_sub(pt).filter(|&iy| iy < h) {
                    Some(iy) => {
                        row[..pl].fill(0.0);
                        row[pl..pl + w].copy_from_slice(&x[ch * h * w + iy * w..][..w]);
                        row[pl + w..].fill(0.0);
                    }
                    None => row.fill(0.0),
                }
            }
        }
    }
}

/// Generates the tile loop of one micro-kernel: `$nv` weight vectors (named `$w`) of
/// `$lanes` channels (together one packed line of [`OB`]) by `$np` broadcast positions (one
/// accumulator row per position), accumulators as named locals (as an array LLVM spilled
/// them to the stack and shuffled the rest with a `vmovaps` per FMA).
macro_rules! direct_tile {
    (avx2, $name:ident, $doc:literal, $w:tt, $a:tt) => {
        direct_tile!($name, $doc, "avx2,fma", 8, 6,
            (_mm256_setzero_ps, _mm256_loadu_ps, _mm256_set1_ps, _mm256_fmadd_ps,
             _mm256_storeu_ps), $w, $a);
    };
    ($name:ident, $doc:literal, $feat:literal, $lanes:literal, $np:literal,
     ($zero:ident, $load:ident, $bcast:ident, $fma:ident, $store:ident),
     [$($w:ident),+], [$([$($a:ident),+]),+]) => {
        #[doc = $doc]
        ///
        /// # Safety
        #[doc = concat!("The CPU must support ", $feat, "; `d.np` is ", stringify!($np), ", ")]
        /// `offs` is `d.tap_offsets()`, `bases` is `d.position_bases()`,
        /// `xp.len() >= d.pad_len`, `wt.len() == K*OB`, `acc.len() >= d.acc_len()` and
        /// `pos` (the positions computed) is within `0..d.p_len` with both ends multiples of
        /// the tile width (every index below is then in bounds: the bases of positions past
        /// the last are the last one's).
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = $feat)]
        #[allow(unused_assignments)]
        pub(super) unsafe fn $name(
            d: &Direct,
            offs: &[u32],
            bases: &[u32],
            xp: &[f32],
            wt: &[f32],
            acc: &mut [f32],
            pos: Range<usize>,
        ) {
            use std::arch::x86_64::*;
            debug_assert!(xp.len() >= d.pad_len && acc.len() >= d.acc_len());
            debug_assert!(d.np == $np && d.p_len.is_multiple_of($np));
            debug_assert!(pos.start.is_multiple_of($np) && pos.end.is_multiple_of($np));
            debug_assert!(pos.end <= d.p_len);
            debug_assert_eq!(bases.len(), d.p_len);
            debug_assert_eq!(wt.len(), offs.len() * OB);
            let xbase = xp.as_ptr();
            let out = acc.as_mut_ptr();
            let mut p0 = pos.start;
            while p0 < pos.end {
                // SAFETY (whole block): the bounds of the function's contract.
                unsafe {
                    let xs: [*const f32; $np] =
                        std::array::from_fn(|i| xbase.add(*bases.get_unchecked(p0 + i) as usize));
                    let z = $zero();
                    $($(let mut $a = z;)+)+
                    let mut wptr = wt.as_ptr();
                    for &off in offs {
                        let off = off as usize;
                        let mut v = 0;
                        $(let $w = $load(wptr.add($lanes * v)); v += 1;)+
                        direct_tile!(@rows $bcast, $fma, xs, off, 0, [$($w),+] $(; [$($a),+])+);
                        wptr = wptr.add(OB);
                    }
                    let mut i = 0;
                    $(
                        let mut v = 0;
                        $($store(out.add((p0 + i) * OB + $lanes * v), $a); v += 1;)+
                        i += 1;
                    )+
                }
                p0 += $np;
            }
        }
    };
    (@rows $bcast:ident, $fma:ident, $xs:ident, $off:ident, $i:expr, [$($w:ident),+];
     [$($a:ident),+] $(; [$($rest:ident),+])*) => {
        let x = $bcast(*$xs[$i].add($off));
        $($a = $fma(x, $w, $a);)+
        direct_tile!(@rows $bcast, $fma, $xs, $off, $i + 1, [$($w),+] $(; [$($rest),+])*);
    };
    (@rows $bcast:ident, $fma:ident, $xs:ident, $off:ident, $i:expr, [$($w:ident),+]) => {
    };
}

direct_tile!(
    avx2,
    tile_avx2,
    "Accumulators of one 16-channel tile at positions `pos`: `acc [p_len][OB]` from the \
     padded image `xp`, the packed tile `wt` (`[K][OB]`) and the tap offsets `offs` \
     ([`Direct::tap_offsets`]).",
    [w0, w1],
    [
        [a00, a01],
        [a10, a11],
        [a20, a21],
        [a30, a31],
        [a40, a41],
        [a50, a51]
    ]
);

direct_tile!(
    avx2,
    tile_avx2_half,
    "[`tile_avx2`] for a last tile of at most 8 channels: only `acc[p][0..8]` is written.",
    [w0],
    [[a00], [a10], [a20], [a30], [a40], [a50]]
);

/// The epilogue of output channels `o0..o0+rows` from their accumulators `acc [p_len][OB]`
/// into the `rows` output planes at `y` (pooled or not), for output rows `oy` only (pooled
/// rows `oy.start/2..oy.end/2` when pooling): bias, ReLU, 2x2 max pool. The pooled
/// maximum, bias and ReLU run on 8-channel vectors (each position's accumulators are
/// contiguous channels); without pooling an 8 x 8 transpose per 8 channels x 8 positions
/// writes every output plane by vector stores. Channels and positions past the last whole
/// block of 8 take the same arithmetic in scalar form (same bits: `max_nan`, `v + b`, ReLU),
/// so any split of the rows gives the same output.
///
/// # Safety
/// The CPU must support AVX2; `acc.len() >= d.acc_len()` and its positions of rows `oy` are
/// computed; `y` is valid for writes of `rows <= OB` output planes (pooled when `pool`), and
/// no other thread touches their rows `oy`; `oy.end <= d.oh`, `oy.start` even when `pool`;
/// `bias`, when given, has `o0 + rows` values at least.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn epilogue_avx2(
    d: &Direct,
    acc: &[f32],
    bias: Option<&[f32]>,
    o0: usize,
    (relu, pool): (bool, bool),
    y: *mut f32,
    rows: usize,
    oy: Range<usize>,
) {
    use std::arch::x86_64::*;
    let (ph, pw) = (d.oh / 2, d.ow / 2);
    let plane = if pool { ph * pw } else { d.oh * d.ow };
    if plane == 0 {
        return;
    }
    debug_assert!(rows <= OB && acc.len() >= d.acc_len() && oy.end <= d.oh);
    debug_assert!(!pool || oy.start.is_multiple_of(2));
    let mut b = [0.0f32; OB];
    if let Some(bias) = bias {
        b[..rows].copy_from_slice(&bias[o0..o0 + rows]);
    }
    let fin = |v: f32, b: f32| {
        let v = v + b;
        if relu && v < 0.0 { 0.0 } else { v }
    };
    let blocks = rows / 8;
    // SAFETY (whole body): every load reads `acc[p*OB + 8*cb..+8]` with `p < OH*OW <= p_len`
    // and `cb < blocks <= OB/8`; every store is inside `y` (`rows` planes of `plane`), at a
    // position of rows `oy`.
    unsafe {
        let zero = _mm256_setzero_ps();
        let fin_v = |v: __m256, cb: usize| {
            let v = _mm256_add_ps(v, _mm256_loadu_ps(b.as_ptr().add(8 * cb)));
            if relu {
                _mm256_blendv_ps(v, zero, _mm256_cmp_ps::<_CMP_LT_OQ>(v, zero))
            } else {
                v
            }
        };
        let a = acc.as_ptr();
        let out = y;
        if pool {
            // (a NaN || a > b) ? a : b, lane by lane: max_nan's bits.
            let vmax = |x: __m256, z: __m256| {
                let take_x = _mm256_or_ps(
                    _mm256_cmp_ps::<_CMP_GT_OQ>(x, z),
                    _mm256_cmp_ps::<_CMP_UNORD_Q>(x, x),
                );
                _mm256_blendv_ps(z, x, take_x)
            };
            let mut m = [0.0f32; OB];
            for py in oy.start / 2..(oy.end / 2).min(ph) {
                for px in 0..pw {
                    let p00 = 2 * py * d.ow + 2 * px;
                    for cb in 0..blocks {
                        let at = |p: usize| _mm256_loadu_ps(a.add(p * OB + 8 * cb));
                        let v = vmax(
                            vmax(at(p00), at(p00 + 1)),
                            vmax(at(p00 + d.ow), at(p00 + d.ow + 1)),
                        );
                        _mm256_storeu_ps(m.as_mut_ptr().add(8 * cb), fin_v(v, cb));
                    }
                    for (j, mj) in m.iter_mut().enumerate().take(rows).skip(8 * blocks) {
                        let at = |p: usize| *a.add(p * OB + j);
                        let v = max_nan(
                            max_nan(at(p00), at(p00 + 1)),
                            max_nan(at(p00 + d.ow), at(p00 + d.ow + 1)),
                        );
                        *mj = fin(v, b[j]);
                    }
                    let q = py * pw + px;
                    for (j, &mj) in m.iter().enumerate().take(rows) {
                        *out.add(j * plane + q) = mj;
                    }
                }
            }
        } else {
            let (q0, q1) = (oy.start * d.ow, oy.end * d.ow);
            let whole = q0 + (q1 - q0) / 8 * 8;
            for cb in 0..blocks {
                for p in (q0..whole).step_by(8) {
                    let r: [__m256; 8] = std::array::from_fn(|i| {
                        fin_v(_mm256_loadu_ps(a.add((p + i) * OB + 8 * cb)), cb)
                    });
                    let t0 = _mm256_unpacklo_ps(r[0], r[1]);
                    let t1 = _mm256_unpackhi_ps(r[0], r[1]);
                    let t2 = _mm256_unpacklo_ps(r[2], r[3]);
                    let t3 = _mm256_unpackhi_ps(r[2], r[3]);
                    let t4 = _mm256_unpacklo_ps(r[4], r[5]);
                    let t5 = _mm256_unpackhi_ps(r[4], r[5]);
                    let t6 = _mm256_unpacklo_ps(r[6], r[7]);
                    let t7 = _mm256_unpackhi_ps(r[6], r[7]);
                    let u0 = _mm256_shuffle_ps::<0x44>(t0, t2);
                    let u1 = _mm256_shuffle_ps::<0xEE>(t0, t2);
                    let u2 = _mm256_shuffle_ps::<0x44>(t1, t3);
                    let u3 = _mm256_shuffle_ps::<0xEE>(t1, t3);
                    let u4 = _mm256_shuffle_ps::<0x44>(t4, t6);
                    let u5 = _mm256_shuffle_ps::<0xEE>(t4, t6);
                    let u6 = _mm256_shuffle_ps::<0x44>(t5, t7);
                    let u7 = _mm256_shuffle_ps::<0xEE>(t5, t7);
                    let cols = [
                        _mm256_permute2f128_ps::<0x20>(u0, u4),
                        _mm256_permute2f128_ps::<0x20>(u1, u5),
                        _mm256_permute2f128_ps::<0x20>(u2, u6),
                        _mm256_permute2f128_ps::<0x20>(u3, u7),
                        _mm256_permute2f128_ps::<0x31>(u0, u4),
                        _mm256_permute2f128_ps::<0x31>(u1, u5),
                        _mm256_permute2f128_ps::<0x31>(u2, u6),
                        _mm256_permute2f128_ps::<0x31>(u3, u7),
                    ];
                    for (j, col) in cols.iter().enumerate() {
                        _mm256_storeu_ps(out.add((8 * cb + j) * plane + p), *col);
                    }
                }
            }
            for (j, &bj) in b.iter().enumerate().take(rows) {
                let from = if j < 8 * blocks { whole } else { q0 };
                for p in from..q1 {
                    *out.add(j * plane + p) = fin(*a.add(p * OB + j), bj);
                }
            }
        }
    }
}

/// `max(a, b)`, NaN if either is NaN (as max pooling propagates it).
#[inline]
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
fn max_nan(a: f32, b: f32) -> f32 {
    if a.is_nan() || a > b { a } else { b }
}
