//! The AMX-INT8 path of the binary GEMM: ±1 rows expanded to int8 (bit 1 -> -1, bit 0 -> +1,
//! padding -> 0) and multiplied on tile registers with `tdpbssd`.
//!
//! Why: on a CPU with AVX-512 the f32 baseline runs 512-bit FMAs (32 MACs per cycle on two
//! pipes), while `vpxorq` + `vpopcntq` + `vpaddq` share the same two 512-bit pipes (VPOPCNTQ on
//! one of them): 512 binary MACs per 1.5 cycles, about 341 per cycle, 10.7x the FMA peak.
//! One `tdpbssd` is 16 x 16 x 64 = 16,384 int8 MACs in 16 cycles (1,024 per cycle, 32x the FMA
//! peak), and on ±1 bytes each is a binary MAC. The dot product comes out exact: `sum_k
//! a_k b_k` over ±1 values with 0 in the padding is `K - 2 popcount(a ^ b)`.
//!
//! Layout (Intel SDM vol. 1 ch. 3, "Intel AMX"; palette 1: tiles of 16 rows x 64 bytes):
//! - `A` expanded into tiles: per block of 16 rows and word `t`, a 1,024-byte tile whose row
//!   `r` is the 64 bytes of row `r`'s word `t` (stride 64, the `w` tiles of a block one after
//!   the other, so a block streams through memory; a row-major `A` at K = 4096 put the 16
//!   rows of a tile 4 KiB apart, on the same L1 sets); rows padded with zeros to a multiple
//!   of 32;
//! - `B` in the VNNI layout `tdpbssd` reads: per block of 16 rows `n` of `B` and word `t`, a
//!   1,024-byte tile whose row `r` holds, for `n` = 0..16, bytes `4r..4r+4` of row `n`'s word
//!   `t` (a 16 x 16 transpose of 4-byte groups, [`transpose16`]); blocks padded to an even
//!   count with zero rows;
//! - `C` computed 32 x 32 at a time (tiles 0-3), `A` in tiles 4-5 and `B` in 6-7, stored
//!   straight into `C` where the 16 x 16 tile lies inside it, through a scratch tile where it
//!   crosses an edge.
//!
//! Linux grants the tile data state only on request (`arch_prctl(ARCH_REQ_XCOMP_PERM,
//! XFEATURE_XTILEDATA)`, once per process); [`usable`] makes the request. Stable Rust has no
//! AMX intrinsics, so the tile instructions are `asm!`.

use std::arch::asm;
use std::arch::x86_64::*;
use std::sync::OnceLock;

/// Whether this CPU runs the AMX path: AMX-TILE and AMX-INT8 (CPUID leaf 7, EDX bits 24-25),
/// AVX-512 F and BW (the expansion of bits into bytes), and the OS granted the tile data
/// state. Decided once per process.
pub(super) fn usable() -> bool {
    static USABLE: OnceLock<bool> = OnceLock::new();
    *USABLE.get_or_init(|| {
        if !(is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512bw")) {
            return false;
        }
        #[allow(unused_unsafe)]
        // SAFETY: CPUID leaf 7 exists on every CPU with AVX-512 F.
        let edx = unsafe { __cpuid_count(7, 0) }.edx;
        edx & (3 << 24) == 3 << 24 && request_tile_data()
    })
}

/// Linux: asks for the AMX tile data state; true when granted.
#[cfg(target_os = "linux")]
fn request_tile_data() -> bool {
    const SYS_ARCH_PRCTL: i64 = 158;
    const ARCH_REQ_XCOMP_PERM: i64 = 0x1023;
    const XFEATURE_XTILEDATA: i64 = 18;
    let ret: i64;
    // SAFETY: the arch_prctl system call with its documented arguments; it changes only the
    // xsave state this process may use. `syscall` clobbers rcx and r11.
    unsafe {
        asm!(
            "syscall",
            inlateout("rax") SYS_ARCH_PRCTL => ret,
            in("rdi") ARCH_REQ_XCOMP_PERM,
            in("rsi") XFEATURE_XTILEDATA,
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    ret == 0
}

/// Other systems: no request is known to work, so no AMX.
#[cfg(not(target_os = "linux"))]
fn request_tile_data() -> bool {
    false
}

/// Rows of `C` per register block (two tiles of 16).
pub(super) const BLOCK: usize = 32;

/// The bytes of one packed word of a row: bit `e` set -> -1, clear -> +1, and 0 where `valid`
/// has bit `e` clear (padding past the true depth).
#[target_feature(enable = "avx512f,avx512bw")]
#[inline]
fn word_bytes(word: u64, valid: u64) -> __m512i {
    let signs = _mm512_mask_blend_epi8(word, _mm512_set1_epi8(1), _mm512_set1_epi8(-1));
    _mm512_maskz_mov_epi8(valid, signs)
}

/// The mask of valid elements of word `t` of a row of true depth `depth`.
fn valid_bits(t: usize, depth: usize) -> u64 {
    let left = depth - 64 * t;
    if left >= 64 {
        u64::MAX
    } else {
        (1u64 << left) - 1
    }
}

/// `A` expanded into tiles: `rows.div_ceil(32) * 2` blocks of 16 rows, each `w` tiles of
/// 1,024 bytes (see the module docs).
///
/// Callers check [`usable`]; `words` holds `rows * w` words.
#[target_feature(enable = "avx512f,avx512bw")]
pub(super) fn expand_rows(words: &[u64], w: usize, depth: usize) -> Vec<i8> {
    let rows = words.len() / w;
    let mut out = vec![0i8; rows.next_multiple_of(BLOCK) * 64 * w];
    for (i, row) in words.chunks_exact(w).enumerate() {
        let (blk, r) = (i / 16, i % 16);
        for (t, &word) in row.iter().enumerate() {
            let d = &mut out[(blk * w + t) * 1024 + 64 * r..][..64];
            // SAFETY: `d` is 64 writable bytes; storeu has no alignment requirement.
            unsafe {
                _mm512_storeu_si512(
                    d.as_mut_ptr().cast(),
                    word_bytes(word, valid_bits(t, depth)),
                )
            };
        }
    }
    out
}

/// `B` in the VNNI tile layout: `rows.div_ceil(32) * 2` blocks of 16 rows, each `w` tiles of
/// 1,024 bytes (see the module docs).
///
/// Callers check [`usable`]; `words` holds `rows * w` words.
#[target_feature(enable = "avx512f,avx512bw")]
pub(super) fn pack_vnni(words: &[u64], w: usize, depth: usize) -> Vec<i8> {
    let rows = words.len() / w;
    let blocks = rows.div_ceil(BLOCK) * 2;
    let mut out = vec![0i8; blocks * w * 1024];
    for (blk, dst) in out.chunks_exact_mut(w * 1024).enumerate() {
        let first = 16 * blk;
        if first >= rows {
            break;
        }
        for (t, tile) in dst.chunks_exact_mut(1024).enumerate() {
            let valid = valid_bits(t, depth);
            let mut v: [__m512i; 16] = std::array::from_fn(|n| {
                let row = first + n;
                if row < rows {
                    word_bytes(words[row * w + t], valid)
                } else {
                    _mm512_setzero_si512()
                }
            });
            transpose16(&mut v);
            for (r, x) in v.iter().enumerate() {
                // SAFETY: bytes 64r..64r+64 of the 1,024-byte tile; storeu has no
                // alignment requirement.
                unsafe { _mm512_storeu_si512(tile.as_mut_ptr().add(64 * r).cast(), *x) };
            }
        }
    }
    out
}

/// Indices of `_mm512_permutex2var_epi32` for one butterfly step of distance `d`: the low
/// row keeps its elements `j` with `j & d == 0` and takes the high row's `j - d` elsewhere;
/// the high row takes the low row's `j + d` where `j & d == 0` and keeps the rest.
const fn butterfly(d: usize, high: bool) -> [i32; 16] {
    let mut idx = [0i32; 16];
    let mut j = 0;
    while j < 16 {
        idx[j] = match (j & d == 0, high) {
            (true, false) => j,
            (false, false) => 16 + j - d,
            (true, true) => j + d,
            (false, true) => 16 + j,
        } as i32;
        j += 1;
    }
    idx
}

/// Transposes 16 vectors of 16 dwords in place (`v[r][n]` becomes `v[n][r]`): four
/// butterfly steps (distance 8, 4, 2, 1), each swapping the off-diagonal blocks of every
/// `2d x 2d` block, 16 `vpermt2d` a step.
#[target_feature(enable = "avx512f")]
#[inline]
pub(super) fn transpose16(v: &mut [__m512i; 16]) {
    const STEPS: [(usize, [i32; 16], [i32; 16]); 4] = [
        (8, butterfly(8, false), butterfly(8, true)),
        (4, butterfly(4, false), butterfly(4, true)),
        (2, butterfly(2, false), butterfly(2, true)),
        (1, butterfly(1, false), butterfly(1, true)),
    ];
    for (d, lo, hi) in STEPS {
        // SAFETY: each index array is 16 i32, 64 readable bytes.
        let (lo, hi) = unsafe {
            (
                _mm512_loadu_si512(lo.as_ptr().cast()),
                _mm512_loadu_si512(hi.as_ptr().cast()),
            )
        };
        for i in 0..16 {
            if i & d == 0 {
                let (x, y) = (v[i], v[i + d]);
                v[i] = _mm512_permutex2var_epi32(x, lo, y);
                v[i + d] = _mm512_permutex2var_epi32(x, hi, y);
            }
        }
    }
}

/// Palette 1 with tiles 0-7 of 16 rows x 64 bytes (the `ldtilecfg` operand).
#[repr(C, align(64))]
struct TileConfig([u8; 64]);

impl TileConfig {
    fn full() -> Self {
        let mut c = [0u8; 64];
        c[0] = 1;
        for t in 0..8 {
            c[16 + 2 * t] = 64;
            c[48 + t] = 16;
        }
        Self(c)
    }
}

/// `C` rows `i0..` (the rows of `c`, `c.len() / n` of them) from the expanded `A` rows
/// starting at row `i0` (`a`, a multiple of 32 rows, at least the rows of `c` rounded up)
/// and all of the packed `B` (`b`, `n` rows): `c[i][j] = sum_k A[i][k] B[j][k]`.
///
/// # Safety
/// [`usable`] returned true; `a` and `b` come from [`expand_rows`] and [`pack_vnni`] with the
/// same `w`, and `a` holds at least `c.len() / n` rows rounded up to 32.
pub(super) unsafe fn rows(a: &[i8], b: &[i8], w: usize, n: usize, c: &mut [i32]) {
    let m = c.len() / n;
    let row_bytes = 64 * w;
    assert!(a.len() >= m.next_multiple_of(BLOCK) * row_bytes);
    assert!(b.len() >= n.div_ceil(BLOCK) * 2 * w * 1024);
    let config = TileConfig::full();
    // SAFETY: AMX usable (the caller); the config is 64 readable bytes, aligned.
    unsafe { asm!("ldtilecfg [{}]", in(reg) config.0.as_ptr(), options(nostack, readonly)) };
    let mut scratch = [0i32; 256];
    // Columns outer: a pair of `B` blocks (2 w KiB) stays in L2 while the task's rows of `A`
    // pass it, and all of `B` (2 MiB at N = 512, K = 4096: L2's size) streams in once.
    for j0 in (0..n).step_by(BLOCK) {
        for i0 in (0..m).step_by(BLOCK) {
            let a0 = a[(i0 / 16) * w * 1024..].as_ptr();
            // SAFETY: block i0/16 + 1 exists in `a` (padded to 32 rows, checked above).
            let a1 = unsafe { a0.add(w * 1024) };
            let b0 = b[(j0 / 16) * w * 1024..].as_ptr();
            // SAFETY: block j0/16 + 1 exists in `b` (padded to an even count, checked above).
            let b1 = unsafe { b0.add(w * 1024) };
            // SAFETY: AMX usable and configured; each step reads two 1,024-byte tiles of `a`
            // within blocks i0/16 and i0/16 + 1, and two of `b` within blocks j0/16 and
            // j0/16 + 1 (checked above).
            unsafe {
                asm!(
                    "tilezero tmm0", "tilezero tmm1", "tilezero tmm2", "tilezero tmm3",
                    "2:",
                    "tileloadd tmm4, [{a0} + {sb}*1]",
                    "tileloadd tmm5, [{a1} + {sb}*1]",
                    "tileloadd tmm6, [{b0} + {sb}*1]",
                    "tileloadd tmm7, [{b1} + {sb}*1]",
                    "tdpbssd tmm0, tmm4, tmm6",
                    "tdpbssd tmm1, tmm4, tmm7",
                    "tdpbssd tmm2, tmm5, tmm6",
                    "tdpbssd tmm3, tmm5, tmm7",
                    "add {a0}, 1024", "add {a1}, 1024",
                    "add {b0}, 1024", "add {b1}, 1024",
                    "dec {k}", "jnz 2b",
                    a0 = inout(reg) a0 => _, a1 = inout(reg) a1 => _,
                    b0 = inout(reg) b0 => _, b1 = inout(reg) b1 => _,
                    sb = in(reg) 64usize,
                    k = inout(reg) w => _,
                    options(nostack, readonly),
                );
            }
            // Tile (r, s) holds C rows i0+16r.., columns j0+16s...
            for (tile, (r, s)) in [(0, 0), (0, 1), (1, 0), (1, 1)].into_iter().enumerate() {
                let (i, j) = (i0 + 16 * r, j0 + 16 * s);
                if i >= m || j >= n {
                    continue;
                }
                let inside = i + 16 <= m && j + 16 <= n;
                let (dst, stride) = if inside {
                    (c[i * n + j..].as_mut_ptr(), 4 * n)
                } else {
                    (scratch.as_mut_ptr(), 64)
                };
                // SAFETY: the tile's 16 rows of 16 i32 at `stride` bytes lie inside `c` (the
                // tile is inside C) or inside the 256-i32 scratch.
                unsafe { store_tile(tile, dst, stride) };
                if !inside {
                    for (rr, src) in scratch.chunks_exact(16).enumerate().take(m - i) {
                        let cols = (n - j).min(16);
                        c[(i + rr) * n + j..][..cols].copy_from_slice(&src[..cols]);
                    }
                }
            }
        }
    }
    // SAFETY: AMX usable; releases the tile state configured above.
    unsafe { asm!("tilerelease", options(nostack, nomem)) };
}

/// `tilestored [dst + stride], tmm<tile>` for accumulator tiles 0-3.
///
/// # Safety
/// AMX configured as [`TileConfig::full`]; 16 rows of 64 bytes at `stride` from `dst` are
/// writable.
unsafe fn store_tile(tile: usize, dst: *mut i32, stride: usize) {
    // SAFETY: as the caller guarantees.
    unsafe {
        match tile {
            0 => {
                asm!("tilestored [{d} + {s}*1], tmm0", d = in(reg) dst, s = in(reg) stride, options(nostack))
            }
            1 => {
                asm!("tilestored [{d} + {s}*1], tmm1", d = in(reg) dst, s = in(reg) stride, options(nostack))
            }
            2 => {
                asm!("tilestored [{d} + {s}*1], tmm2", d = in(reg) dst, s = in(reg) stride, options(nostack))
            }
            _ => {
                asm!("tilestored [{d} + {s}*1], tmm3", d = in(reg) dst, s = in(reg) stride, options(nostack))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tile_layouts_hold_every_value_once_in_place() {
        if !usable() {
            eprintln!("skipped: amx-int8 layout test (CPU lacks AMX-INT8 or the OS denies it)");
            return;
        }
        // 21 rows (two blocks, the second partly zero), K = 130 (3 words, 62 padding bits).
        let (rows, w, depth) = (21usize, 3usize, 130usize);
        // Padding bits (past K = 130, in each row's last word) are 0, as PackedRows keeps them.
        let words: Vec<u64> = (0..rows * w)
            .map(|k| {
                let x = (k as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
                if k % w == w - 1 { x & 0b11 } else { x }
            })
            .collect();
        // SAFETY: usable() checked the features.
        let (packed, expanded) =
            unsafe { (pack_vnni(&words, w, depth), expand_rows(&words, w, depth)) };
        assert_eq!(packed.len(), 2 * w * 1024);
        assert_eq!(expanded.len(), 32 * 64 * w);
        let value = |row: usize, k: usize| -> i8 {
            if row >= rows || k >= depth {
                0
            } else if words[row * w + k / 64] >> (k % 64) & 1 == 1 {
                -1
            } else {
                1
            }
        };
        for blk in 0..2 {
            for t in 0..w {
                for r in 0..16 {
                    for nn in 0..16 {
                        for q in 0..4 {
                            let got = packed[(blk * w + t) * 1024 + 64 * r + 4 * nn + q];
                            let want = value(16 * blk + nn, 64 * t + 4 * r + q);
                            assert_eq!(got, want, "block {blk} word {t} row {r} n {nn} q {q}");
                        }
                    }
                }
            }
        }
        for row in 0..32 {
            for k in 0..64 * w {
                let at = ((row / 16) * w + k / 64) * 1024 + 64 * (row % 16) + k % 64;
                assert_eq!(expanded[at], value(row, k), "row {row} k {k}");
            }
        }
    }
}
