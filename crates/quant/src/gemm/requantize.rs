//! Requantization of a quantized layer's raw i32 sums into the next layer's u8 codes:
//! `q_j = clamp(round_half_even((raw_j + offset_j) * M_j) + zp, lo, hi)`, one row of
//! channels at a time, on the path of the layer's GEMM.
//!
//! The scalar loop cannot vectorise on baseline x86-64 (each f32 -> u8 conversion is a scalar
//! `cvttss2si`): in a quantized cnn-teacher it took 45% of the time at batch 256, more than
//! the GEMM. The AVX2 (8 lanes) and AVX-512 (16 lanes, masked tail) loops clamp before they
//! round (see [`x86::Zmm::codes`]), which gives the same integers in fewer instructions;
//! every path is tested bit-exact against the scalar reference.

use tensor_core::dispatch::Int8Path;

use crate::affine::round_half_even_f32;

/// What requantizing a row needs: per-channel offsets and multipliers (as long as the row),
/// the output zero point and the clamp (`lo` is the zero point when ReLU is fused).
#[derive(Clone, Copy, Debug)]
pub struct Requant<'a> {
    /// Added to each raw sum, per channel (`bias - z_in * sum_k w`).
    pub offsets: &'a [i32],
    /// `s_in * s_w / s_out`, per channel.
    pub multipliers: &'a [f32],
    /// The output zero point.
    pub zp: i32,
    /// The lowest code (the zero point when ReLU is fused).
    pub lo: i32,
    /// The highest code.
    pub hi: i32,
}

impl Requant<'_> {
    /// Codes of `raw.len() / o` output positions of `o = offsets.len()` channels each
    /// (position-major, as a GEMM's `[positions, O]` result) into `out`, on `path`'s vector
    /// width (portable: the scalar reference).
    ///
    /// `raw` and `out` must be as long as each other, a whole number of positions; `lo..=hi`
    /// must lie in `0..=255` (a u8 code type).
    pub fn codes_u8(&self, path: Int8Path, raw: &[i32], out: &mut [u8]) {
        let o = self.offsets.len();
        assert!(
            self.multipliers.len() == o
                && raw.len() == out.len()
                && raw.len().is_multiple_of(o.max(1))
                && (0..=255).contains(&self.lo)
                && (self.lo..=255).contains(&self.hi),
            "requantize: {} sums, {} codes, {o} offsets, {} multipliers, clamp {}..={}",
            raw.len(),
            out.len(),
            self.multipliers.len(),
            self.lo,
            self.hi
        );
        if o == 0 {
            return;
        }
        match path {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: the path's features were checked when it was selected (`require` on
            // every entry of the layer), and AVX-512 VNNI implies AVX-512 F; lengths were
            // checked above.
            Int8Path::Avx512Vnni => unsafe { x86::avx512(self, raw, out) },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: as above; both paths need AVX2.
            Int8Path::Avx2 | Int8Path::AvxVnni => unsafe { x86::avx2(self, raw, out) },
            _ => self.scalar(raw, out),
        }
    }

    /// The reference loop.
    fn scalar(&self, raw: &[i32], out: &mut [u8]) {
        let o = self.offsets.len().max(1);
        for (raw, out) in raw.chunks_exact(o).zip(out.chunks_exact_mut(o)) {
            for (j, (q, &r)) in out.iter_mut().zip(raw).enumerate() {
                *q = self.one(j, r);
            }
        }
    }

    /// The code of channel `j` from raw sum `r`.
    #[inline(always)]
    fn one(&self, j: usize, r: i32) -> u8 {
        let v = r.wrapping_add(self.offsets[j]) as f32 * self.multipliers[j];
        let q = round_half_even_f32(v) as i32 + self.zp;
        q.clamp(self.lo, self.hi) as u8
    }
}

#[cfg(target_arch = "x86_64")]
pub(super) mod x86 {
    use std::arch::x86_64::*;

    use super::Requant;

    /// A [`Requant`]'s constants in zmm registers.
    #[derive(Clone, Copy)]
    pub struct Zmm {
        /// `lo - zp` and `hi - zp` as f32: the clamp, applied before rounding.
        lo: __m512,
        hi: __m512,
        zp: __m512i,
    }

    impl Zmm {
        /// The constants of zero point `zp` and clamp `lo..=hi`.
        ///
        /// # Safety
        /// The CPU has AVX-512 F.
        #[inline]
        #[target_feature(enable = "avx512f")]
        pub unsafe fn from_parts(zp: i32, lo: i32, hi: i32) -> Self {
            Self {
                lo: _mm512_set1_ps((lo - zp) as f32),
                hi: _mm512_set1_ps((hi - zp) as f32),
                zp: _mm512_set1_epi32(zp),
            }
        }

        /// The codes (one per i32 lane) of 16 raw sums with their channels' offsets added
        /// (`sums = raw + offset`, wrapping) and multipliers. The reference rounds, adds the zero point and clamps to `lo..=hi`;
        /// this clamps to `lo - zp ..= hi - zp` first, then rounds (half to even) and adds the
        /// zero point: the same integer, because rounding is monotonic and leaves integers
        /// alone (and no reference clamp at `±65_536` can bind inside `0..=255`).
        ///
        /// # Safety
        /// The CPU has AVX-512 F.
        #[inline]
        #[target_feature(enable = "avx512f")]
        pub unsafe fn codes(self, sums: __m512i, mul: __m512) -> __m512i {
            let v = _mm512_mul_ps(_mm512_cvtepi32_ps(sums), mul);
            let c = _mm512_min_ps(_mm512_max_ps(v, self.lo), self.hi);
            let q =
                _mm512_cvt_roundps_epi32::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(c);
            _mm512_add_epi32(q, self.zp)
        }
    }

    /// 16 channels per step, the tail of each position under a mask.
    ///
    /// # Safety
    /// The CPU has AVX-512 F; `raw` and `out` are as long as each other, a whole number of
    /// positions of `r.offsets.len()` (non-zero) channels, as many multipliers.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn avx512(r: &Requant, raw: &[i32], out: &mut [u8]) {
        let n = r.offsets.len();
        // SAFETY: AVX-512 F (the caller's contract).
        let k = unsafe { Zmm::from_parts(r.zp, r.lo, r.hi) };
        for (raw, out) in raw.chunks_exact(n).zip(out.chunks_exact_mut(n)) {
            let mut j = 0;
            while j < n {
                let left = n - j;
                let mask: __mmask16 = if left >= 16 {
                    u16::MAX
                } else {
                    ((1u32 << left) - 1) as u16
                };
                // SAFETY: lanes under `mask` are j .. min(j + 16, n), within every slice.
                unsafe {
                    let x = _mm512_maskz_loadu_epi32(mask, raw.as_ptr().add(j));
                    let o = _mm512_maskz_loadu_epi32(mask, r.offsets.as_ptr().add(j));
                    let m = _mm512_maskz_loadu_ps(mask, r.multipliers.as_ptr().add(j));
                    let q = k.codes(_mm512_add_epi32(x, o), m);
                    _mm512_mask_cvtepi32_storeu_epi8(out.as_mut_ptr().add(j).cast(), mask, q);
                }
                j += 16;
            }
        }
    }

    /// 8 channels per step, the tail of each position on the scalar reference.
    ///
    /// # Safety
    /// The CPU has AVX2; slices as [`avx512`].
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn avx2(r: &Requant, raw: &[i32], out: &mut [u8]) {
        let n = r.offsets.len();
        // As [`Zmm::codes`]: clamp to `lo - zp ..= hi - zp`, round half to even (the
        // default rounding mode of `vcvtps2dq`), add the zero point.
        let (lo, hi, zp) = (
            _mm256_set1_ps((r.lo - r.zp) as f32),
            _mm256_set1_ps((r.hi - r.zp) as f32),
            _mm256_set1_epi32(r.zp),
        );
        // Dwords 0 and 4 of the packed bytes: codes 0..4 and 4..8.
        let gather = _mm256_setr_epi32(0, 4, 0, 0, 0, 0, 0, 0);
        for (raw, out) in raw.chunks_exact(n).zip(out.chunks_exact_mut(n)) {
            let mut j = 0;
            while j + 8 <= n {
                // SAFETY: elements j .. j + 8 lie within every slice.
                unsafe {
                    let x = _mm256_loadu_si256(raw.as_ptr().add(j).cast());
                    let o = _mm256_loadu_si256(r.offsets.as_ptr().add(j).cast());
                    let m = _mm256_loadu_ps(r.multipliers.as_ptr().add(j));
                    let v = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_add_epi32(x, o)), m);
                    let c = _mm256_min_ps(_mm256_max_ps(v, lo), hi);
                    let q = _mm256_add_epi32(_mm256_cvtps_epi32(c), zp);
                    // Codes are in 0..=255: the saturating packs keep them.
                    let w = _mm256_packus_epi32(q, q);
                    let b = _mm256_permutevar8x32_epi32(_mm256_packus_epi16(w, w), gather);
                    let bytes = _mm_cvtsi128_si64(_mm256_castsi256_si128(b));
                    out.as_mut_ptr().add(j).cast::<i64>().write_unaligned(bytes);
                }
                j += 8;
            }
            for (k, (o, &x)) in out[j..].iter_mut().zip(&raw[j..]).enumerate() {
                *o = r.one(j + k, x);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use tensor_core::dispatch::{Int8Path, KernelPath};
    use tensor_core::rng::Rng;

    use super::*;

    /// Every path this CPU has gives the scalar codes, on three positions of every channel
    /// count around the vector widths, for sums from small to far beyond the clamp, with and without ReLU.
    #[test]
    fn every_path_equals_the_scalar_reference() {
        let mut rng = Rng::seed_from_u64(7);
        for path in Int8Path::ALL {
            if !Int8Path::supported().contains(path) {
                eprintln!("skipped: {} (CPU lacks {})", path.name(), path.needs());
                continue;
            }
            for n in [0, 1, 7, 8, 9, 15, 16, 17, 31, 32, 33, 64, 100] {
                for (zp, lo) in [(0, 0), (37, 37), (64, 0), (127, 0)] {
                    let offsets: Vec<i32> = (0..n)
                        .map(|_| (rng.next_u64() % 20_001) as i32 - 10_000)
                        .collect();
                    let multipliers: Vec<f32> = (0..n)
                        .map(|_| {
                            let e = (rng.next_u64() % 24) as i32 - 20;
                            2f32.powi(e) * (1.0 + (rng.next_u64() % 1000) as f32 / 1000.0)
                        })
                        .collect();
                    let raw: Vec<i32> = (0..3 * n)
                        .map(|i| match i % 5 {
                            0 => i32::MAX - 20_000,
                            1 => i32::MIN + 20_000,
                            _ => (rng.next_u64() % 4_000_001) as i32 - 2_000_000,
                        })
                        .collect();
                    let r = Requant {
                        offsets: &offsets,
                        multipliers: &multipliers,
                        zp,
                        lo,
                        hi: 127,
                    };
                    let mut want = vec![0xAAu8; 3 * n];
                    r.scalar(&raw, &mut want);
                    let mut got = vec![0x55u8; 3 * n];
                    r.codes_u8(*path, &raw, &mut got);
                    assert_eq!(got, want, "path {} n={n} zp={zp}", path.name());
                }
            }
            eprintln!("ran: {}", path.name());
        }
    }

    /// Ties round to even, as ONNX QuantizeLinear: 2.5 -> 2, 3.5 -> 4, -2.5 -> -2; also ties
    /// next to both ends of the clamp (with ReLU fused: the lower end is the zero point).
    #[test]
    fn ties_round_to_even_on_every_path() {
        let raw = [
            5, 7, -5, 1, 3, 0, 9, 11, 13, -7, -9, 15, 17, 19, 21, 23, 25, -1, -3, 233, 235, 237,
        ];
        let offsets = [0; 22];
        let multipliers = [0.5f32; 22];
        for lo in [0, 10] {
            let r = Requant {
                offsets: &offsets,
                multipliers: &multipliers,
                zp: 10,
                lo,
                hi: 127,
            };
            let want: Vec<u8> = raw
                .iter()
                .map(|&x| ((x as f64 / 2.0).round_ties_even() as i32 + 10).clamp(lo, 127) as u8)
                .collect();
            for path in Int8Path::supported() {
                let mut got = [0u8; 22];
                r.codes_u8(path, &raw, &mut got);
                assert_eq!(
                    got.as_slice(),
                    want.as_slice(),
                    "path {} lo {lo}",
                    path.name()
                );
            }
        }
    }
}
