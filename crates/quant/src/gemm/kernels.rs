//! The GEMM microkernels: one `MR x 16` tile of `C = A W^T` over the whole depth, per path.
//!
//! Every kernel reads `MR` activation rows (`a_rows[r]` points at row `r`'s first byte, rows
//! readable for [`Segments::span`] bytes, the groups where [`Segments`] says) and one weight
//! panel (`total_groups * 64` bytes, see
//! [`PackedWeights`](super::PackedWeights)), and writes the `MR x 16` i32 sums to `tile`.
//! All sums are exact (the driver bounds the depth), so every path returns the same integers.

use super::pack::{GROUP_BYTES, KG, NR};

/// Rows per tile: four rows x two 8-lane accumulators on AVX2 (8 of 16 ymm registers), with
/// room for the two weight vectors, the broadcast row and the temporaries.
pub const MR: usize = 4;

/// Rows per AVX-512 VNNI tile: eight rows x two zmm accumulators (32 columns) are 16 of the
/// 32 zmm registers, with room for the two weight vectors and the broadcasts.
pub const ZMM_MR: usize = 8;

/// Panels (of [`NR`] columns) per AVX-512 VNNI tile.
pub const ZMM_PANELS: usize = 2;

/// One tile's accumulators.
pub type Tile = [[i32; NR]; MR];

/// Where a row's depth groups lie: `count` segments of `groups` consecutive groups each, segment
/// `s` starting `stride` bytes after segment `s - 1` (a convolution's patch read in place: one
/// segment per kernel row, the next segment one padded image row further). The weight panel
/// holds the `count * groups` groups one after the other. A plain row is one segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segments {
    /// Segments per row.
    pub count: usize,
    /// Depth groups per segment.
    pub groups: usize,
    /// Bytes from one segment's start to the next one's.
    pub stride: usize,
}

impl Segments {
    /// One segment of `groups` groups: a plain row.
    pub fn flat(groups: usize) -> Self {
        Self {
            count: 1,
            groups,
            stride: 0,
        }
    }

    /// Depth groups per row, over all segments.
    pub fn total_groups(&self) -> usize {
        self.count * self.groups
    }

    /// Bytes a row spans from its first byte to its last segment's end.
    pub fn span(&self) -> usize {
        if self.count == 0 || self.groups == 0 {
            0
        } else {
            (self.count - 1) * self.stride + self.groups * KG
        }
    }
}

/// The portable reference: plain i32 multiply-adds in the packed order.
pub fn portable(a_rows: &[&[u8]; MR], rows: usize, panel: &[i8], seg: Segments, tile: &mut Tile) {
    for r in 0..rows {
        let a = a_rows[r];
        let acc = &mut tile[r];
        *acc = [0; NR];
        for g in 0..seg.total_groups() {
            let w = &panel[g * GROUP_BYTES..(g + 1) * GROUP_BYTES];
            let at = (g / seg.groups) * seg.stride + (g % seg.groups) * KG;
            let x = &a[at..at + KG];
            for (j, lane) in acc.iter_mut().enumerate() {
                let wj = &w[j * KG..(j + 1) * KG];
                *lane += x
                    .iter()
                    .zip(wj)
                    .map(|(&x, &w)| i32::from(x) * i32::from(w))
                    .sum::<i32>();
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
pub mod x86 {
    //! x86 tiles. Each `#[target_feature]` function is called only after the dispatch checked
    //! the features (`KernelPath::require`) and the driver checked every slice length.
    use std::arch::x86_64::*;

    use super::super::requantize::x86::Zmm;
    use super::{GROUP_BYTES, KG, MR, NR, Segments, Tile, ZMM_MR, ZMM_PANELS};

    /// The four activation bytes `a[4g .. 4g + 4]` as one i32 (unaligned read).
    ///
    /// # Safety
    /// `a` must be readable for `4g + 4` bytes.
    #[inline(always)]
    unsafe fn group_of(a: *const u8, g: usize) -> i32 {
        // SAFETY: the caller guarantees the four bytes are readable.
        unsafe { a.add(g * KG).cast::<i32>().read_unaligned() }
    }

    /// The body of a 256-bit tile: two weight vectors per group, one broadcast per row,
    /// `$step(acc, x, w)` adding four u8 x i8 products into each i32 lane of `acc`.
    macro_rules! ymm_tile {
        ($a_rows:ident, $panel:ident, $seg:ident, $tile:ident, $step:expr) => {{
            let mut acc = [[_mm256_setzero_si256(); 2]; ROWS];
            for s in 0..$seg.count {
                let rows: [*const u8; ROWS] =
                    std::array::from_fn(|r| $a_rows[r].wrapping_add(s * $seg.stride));
                let panel = $panel.wrapping_add(s * $seg.groups * GROUP_BYTES);
                for g in 0..$seg.groups {
                    // SAFETY: the panel holds `total_groups` groups of 64 bytes; rows hold
                    // `span` bytes (the caller's contract).
                    unsafe {
                        let w = panel.add(g * GROUP_BYTES);
                        let w0 = _mm256_loadu_si256(w.cast());
                        let w1 = _mm256_loadu_si256(w.add(32).cast());
                        for r in 0..ROWS {
                            let x = _mm256_set1_epi32(group_of(rows[r], g));
                            acc[r][0] = $step(acc[r][0], x, w0);
                            acc[r][1] = $step(acc[r][1], x, w1);
                        }
                    }
                }
            }
            for r in 0..ROWS {
                // SAFETY: each tile row is 16 i32 = two 32-byte stores.
                unsafe {
                    _mm256_storeu_si256($tile[r].as_mut_ptr().cast(), acc[r][0]);
                    _mm256_storeu_si256($tile[r].as_mut_ptr().add(8).cast(), acc[r][1]);
                }
            }
        }};
    }

    /// AVX2 with reduced-range activations: `vpmaddubsw` adds two u8 x i8 products into an
    /// i16 lane, which cannot saturate because activations are at most 127
    /// (`2 * 127 * 128 = 32_512 < 32_767`; the driver checks), then `vpmaddwd` with ones
    /// widens pairs to i32: 32 multiply-adds per pair of instructions.
    ///
    /// # Safety
    /// AVX2 present; rows readable for `seg.span()` bytes; `panel` for
    /// `64 * seg.total_groups()`.
    #[target_feature(enable = "avx2")]
    pub unsafe fn avx2<const ROWS: usize>(
        a_rows: &[*const u8; MR],
        panel: *const i8,
        seg: Segments,
        tile: &mut Tile,
    ) {
        let ones = _mm256_set1_epi16(1);
        ymm_tile!(a_rows, panel, seg, tile, |acc, x, w| {
            _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(x, w), ones))
        });
    }

    /// AVX2 for narrow weights: the i16 lanes of `SUM` consecutive `vpmaddubsw` results are
    /// added (`vpaddw`) before one `vpmaddwd` widens them, so `SUM` depth groups cost `SUM + 1`
    /// multiply-unit instructions instead of `2 * SUM`. Exact when every weight magnitude is
    /// at most `16_383 / (127 * SUM)` (64 for `SUM = 2`: 7-bit weights; 32 for `SUM = 4`),
    /// so that no i16 sum leaves `[-32_768, 32_767]`; the driver picks `SUM` from the packed
    /// weights' largest magnitude ([`PackedWeights::max_abs`](super::super::PackedWeights)).
    ///
    /// # Safety
    /// AVX2 present; rows readable for `seg.span()` bytes; `panel` for
    /// `64 * seg.total_groups()`.
    #[target_feature(enable = "avx2")]
    pub unsafe fn avx2_summed<const ROWS: usize, const SUM: usize>(
        a_rows: &[*const u8; MR],
        panel: *const i8,
        seg: Segments,
        tile: &mut Tile,
    ) {
        let ones = _mm256_set1_epi16(1);
        let mut acc = [[_mm256_setzero_si256(); 2]; ROWS];
        let (groups, whole) = (seg.groups, seg.groups / SUM * SUM);
        for s in 0..seg.count {
            let rows: [*const u8; ROWS] =
                std::array::from_fn(|r| a_rows[r].wrapping_add(s * seg.stride));
            let panel = panel.wrapping_add(s * groups * GROUP_BYTES);
            let mut g = 0;
            while g < whole {
                // SAFETY: groups g .. g + SUM lie below `groups` (the caller's contract).
                unsafe {
                    let mut w = [[_mm256_setzero_si256(); 2]; SUM];
                    for (s, ws) in w.iter_mut().enumerate() {
                        let p = panel.add((g + s) * GROUP_BYTES);
                        *ws = [
                            _mm256_loadu_si256(p.cast()),
                            _mm256_loadu_si256(p.add(32).cast()),
                        ];
                    }
                    for r in 0..ROWS {
                        let mut t = [_mm256_setzero_si256(); 2];
                        for (s, ws) in w.iter().enumerate() {
                            let x = _mm256_set1_epi32(group_of(rows[r], g + s));
                            t[0] = _mm256_add_epi16(t[0], _mm256_maddubs_epi16(x, ws[0]));
                            t[1] = _mm256_add_epi16(t[1], _mm256_maddubs_epi16(x, ws[1]));
                        }
                        acc[r][0] = _mm256_add_epi32(acc[r][0], _mm256_madd_epi16(t[0], ones));
                        acc[r][1] = _mm256_add_epi32(acc[r][1], _mm256_madd_epi16(t[1], ones));
                    }
                }
                g += SUM;
            }
            while g < groups {
                // SAFETY: as above.
                unsafe {
                    let p = panel.add(g * GROUP_BYTES);
                    let w0 = _mm256_loadu_si256(p.cast());
                    let w1 = _mm256_loadu_si256(p.add(32).cast());
                    for r in 0..ROWS {
                        let x = _mm256_set1_epi32(group_of(rows[r], g));
                        let p0 = _mm256_madd_epi16(_mm256_maddubs_epi16(x, w0), ones);
                        let p1 = _mm256_madd_epi16(_mm256_maddubs_epi16(x, w1), ones);
                        acc[r][0] = _mm256_add_epi32(acc[r][0], p0);
                        acc[r][1] = _mm256_add_epi32(acc[r][1], p1);
                    }
                }
                g += 1;
            }
        }
        for r in 0..ROWS {
            // SAFETY: each tile row is 16 i32 = two 32-byte stores.
            unsafe {
                _mm256_storeu_si256(tile[r].as_mut_ptr().cast(), acc[r][0]);
                _mm256_storeu_si256(tile[r].as_mut_ptr().add(8).cast(), acc[r][1]);
            }
        }
    }

    /// AVX-VNNI: VEX `vpdpbusd` adds four u8 x i8 products into each i32 lane.
    ///
    /// # Safety
    /// AVX2 and AVX-VNNI present; rows readable for `seg.span()` bytes; `panel` for
    /// `64 * seg.total_groups()`.
    #[target_feature(enable = "avx2,avxvnni")]
    pub unsafe fn avx_vnni<const ROWS: usize>(
        a_rows: &[*const u8; MR],
        panel: *const i8,
        seg: Segments,
        tile: &mut Tile,
    ) {
        ymm_tile!(a_rows, panel, seg, tile, |acc, x, w| {
            _mm256_dpbusd_avx_epi32(acc, x, w)
        });
    }

    /// Where an AVX-512 VNNI tile goes: row `r` at `c + r * ldc`; `masks[p]` has bit `j` set
    /// when column `16 p + j` of the tile lies in C (a masked-off lane of `vmovdqu32` never
    /// touches memory). With `codes`, the tile is requantized in registers and its u8 codes
    /// stored instead (`c` is not written).
    #[derive(Clone, Copy)]
    pub struct ZmmOut {
        /// The tile's first element in C.
        pub c: *mut i32,
        /// C's row stride, in elements.
        pub ldc: usize,
        /// The columns of each panel that lie in C.
        pub masks: [u16; ZMM_PANELS],
        /// Requantized output instead of sums.
        pub codes: Option<ZmmCodes>,
    }

    /// Where an AVX-512 VNNI tile's requantized codes go: row `r` at `out + r * ldo`, with
    /// the offsets and multipliers of the tile's columns (readable under the masks) and the
    /// constants of [`Requant`](super::super::Requant).
    #[derive(Clone, Copy)]
    pub struct ZmmCodes {
        /// The tile's first code.
        pub out: *mut u8,
        /// Bytes from one output row to the next.
        pub ldo: usize,
        /// The offset of the tile's first column.
        pub offsets: *const i32,
        /// The multiplier of the tile's first column.
        pub multipliers: *const f32,
        /// The requantization's zero point and clamp (the rest of [`Requant`](super::super::Requant)).
        pub zp: i32,
        /// The lowest code.
        pub lo: i32,
        /// The highest code.
        pub hi: i32,
    }

    /// AVX-512 VNNI: EVEX `vpdpbusd` on zmm, a `ROWS x 16 PANELS` tile (up to
    /// [`ZMM_MR`]` x 32`) over the whole depth, stored straight into `C`.
    ///
    /// Per depth group: `PANELS` 64-byte weight loads, `ROWS` broadcasts of four activation
    /// bytes, `ROWS * PANELS` `vpdpbusd`. The `8 x 2` tile keeps 16 independent accumulators
    /// in flight (two `vpdpbusd` per cycle with a latency of five need ten) and issues ten
    /// loads per sixteen multiply instructions; a `4 x 1` tile had four accumulators and
    /// issued five loads per four.
    ///
    /// Columns past `n` are not stored (see [`ZmmOut`]).
    ///
    /// # Safety
    /// AVX-512 F, BW and VNNI present; `a_rows[..ROWS]` readable for `seg.span()` bytes;
    /// `panels[..PANELS]` readable for `64 * seg.total_groups()` bytes each; `out.c`
    /// writable at `out.c + r * out.ldc + 16 p + j` for every `r < ROWS`, `p < PANELS` and
    /// `j` set in `out.masks[p]` (with `out.codes`: instead, the codes, offsets and
    /// multipliers of those rows and columns as [`ZmmCodes`] places them).
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    pub unsafe fn avx512_vnni<const ROWS: usize, const PANELS: usize>(
        a_rows: &[*const u8; ZMM_MR],
        panels: [*const i8; ZMM_PANELS],
        seg: Segments,
        out: ZmmOut,
    ) {
        // Requantized tiles start from their columns' offsets (added to the sums anyway).
        let init: [__m512i; PANELS] = std::array::from_fn(|p| match out.codes {
            // SAFETY: the columns set in `masks[p]` have offsets (the caller's contract).
            Some(q) => unsafe { _mm512_maskz_loadu_epi32(out.masks[p], q.offsets.add(p * NR)) },
            None => _mm512_setzero_si512(),
        });
        let mut acc = [init; ROWS];
        for s in 0..seg.count {
            let rows: [*const u8; ROWS] =
                std::array::from_fn(|r| a_rows[r].wrapping_add(s * seg.stride));
            let pan: [*const i8; PANELS] =
                std::array::from_fn(|p| panels[p].wrapping_add(s * seg.groups * GROUP_BYTES));
            for g in 0..seg.groups {
                // SAFETY: the panels hold `total_groups` groups of 64 bytes; rows hold `span`
                // bytes (the caller's contract).
                unsafe {
                    let w: [__m512i; PANELS] = std::array::from_fn(|p| {
                        _mm512_loadu_si512(pan[p].add(g * GROUP_BYTES).cast())
                    });
                    for r in 0..ROWS {
                        let x = _mm512_set1_epi32(group_of(rows[r], g));
                        for p in 0..PANELS {
                            acc[r][p] = _mm512_dpbusd_epi32(acc[r][p], x, w[p]);
                        }
                    }
                }
            }
        }
        if let Some(q) = out.codes {
            // SAFETY: AVX-512 F is present.
            let consts = unsafe { Zmm::from_parts(q.zp, q.lo, q.hi) };
            for p in 0..PANELS {
                let mask = out.masks[p];
                // SAFETY: the columns set in `masks[p]` have an offset, a multiplier and a
                // code in each row (the caller's contract); AVX-512 F is present.
                unsafe {
                    let mul = _mm512_maskz_loadu_ps(mask, q.multipliers.add(p * NR));
                    for (r, lanes) in acc.iter().enumerate() {
                        let codes = consts.codes(lanes[p], mul);
                        let dst = q.out.add(r * q.ldo + p * NR);
                        _mm512_mask_cvtepi32_storeu_epi8(dst.cast(), mask, codes);
                    }
                }
            }
            return;
        }
        for (r, lanes) in acc.iter().enumerate() {
            for (p, &v) in lanes.iter().enumerate() {
                // SAFETY: the lanes set in `masks[p]` lie in C (the caller's contract).
                unsafe {
                    _mm512_mask_storeu_epi32(out.c.add(r * out.ldc + p * NR), out.masks[p], v)
                };
            }
        }
    }
}
