//! Winograd convolution F(2x2, 3x3) (Lavin & Gray, "Fast Algorithms for Convolutional Neural
//! Networks", CVPR 2016, section 4) for 3x3, stride-1, undilated, one-group layers on the
//! AVX-512 F path of [`super::conv2d_forward_fused`].
//!
//! Each 2x2 output tile `Y` of one output channel is computed from the 4x4 input tile `d` at
//! padded position `(2ty, 2tx)` of every input channel and the 3x3 filters `g` as
//!
//! `Y = A^T [ sum_c (G g[o,c] G^T) . (B^T d[c] B) ] A`
//!
//! with `.` the element-wise product of 4x4 matrices and
//!
//! ```text
//! B^T = | 1  0 -1  0 |   G = | 1    0    0  |   A^T = | 1  1  1  0 |
//!       | 0  1  1  0 |       | 1/2  1/2  1/2|         | 0  1 -1 -1 |
//!       | 0 -1  1  0 |       | 1/2 -1/2  1/2|
//!       | 0  1  0 -1 |       | 0    0    1  |
//! ```
//!
//! The sum over channels of the 16 element-wise products is 16 independent GEMMs
//! `M[xi] [tiles, O] = V[xi] [tiles, C] . U[xi] [C, O]` (`xi = 4i + j` one element of the 4x4
//! tile): 16 multiplies per output tile and channel pair instead of the direct kernel's 36.
//!
//! - Weights: `U = G g G^T` once per layer ([`WinogradWeights`]), 16 matrices of `C16 x O`
//!   (`C16` = `C` rounded up to 16, rows past `C` zero), each packed as a
//!   [`PackedLinear`] for the 12x32 AVX-512 GEMM of `gemm::packed`, cached inside
//!   [`PackedConvWeights`](super::direct::PackedConvWeights) on first use.
//! - Input: the image padded and channel-blocked (NCHW16c) by the direct kernel's
//!   `Direct::pad_image_blocked`, with one more zero row / column when the output height /
//!   width is odd so that every tile reads a whole 4x4 window; `B^T d B` on 16 channels per
//!   zmm, written as `V [16][tiles][C16]`.
//! - Output: `A^T M A` on 16 output channels per zmm, then the epilogue in the same pass: bias,
//!   ReLU (`v < 0 -> 0`, NaN kept) and the 2x2 max pool, which is exactly one output tile
//!   (tiles start at even rows and columns; a last tile past the pooled output is dropped, as
//!   floor mode drops that row), staged per tile row and written to NCHW by 16 x 16 register
//!   transposes.
//! - Blocking: the tiles of one image (numbered row by row) in blocks of at most
//!   `rows_per_block` tile rows' worth, `V` and `M` together at most [`BLOCK_FLOATS`] (so
//!   that both stay in the 2 MB L2 between the transforms and the GEMMs). Batches run one
//!   image per rayon task; batch 1 splits in two halves over [`duo::join`](crate::duo::join)
//!   from [`super::DIRECT_PAR_MIN_MACS`], by tiles or by GEMM panels of output channels
//!   (`Split::of`), each half padding only the input rows it reads. Halves of whole tiles, not
//!   of tile rows: cnn-teacher's 14x14 layers have 7 tile rows, which split 4 : 3.
//!
//! Numerics: the transforms add at most 4 terms with coefficients 1 and 1/2; on small
//! integers every step is exact (results equal the reference bit for bit), on floats the
//! error measured against the reference is listed in the tests (module `tests` below).

use std::cell::RefCell;
use std::ops::Range;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU8, Ordering};

use super::direct::Direct;
use super::direct::blocked::{CB, untranspose_row_avx512};
use super::fused::with_buf;
use super::{Conv2dParams, ConvEpilogue, DIRECT_PAR_MIN_MACS, Padding};
use crate::dispatch::F32Path;
use crate::duo;
use crate::error::TensorError;
use crate::gemm::{LinearEpilogue, NR, PackedLinear, linear_packed_rows};
use crate::tensor::Tensor;

/// Floats of `V` and `M` together per block of tile rows (1 MB: half the L2 of one core of
/// the reference Xeon).
pub const BLOCK_FLOATS: usize = 1 << 18;

/// The smallest input-channel count dispatched to Winograd: below it the GEMMs' depth is too
/// short to pay for the transforms. Measured (session 13, `conv_cpu` with the threshold
/// lowered to 4 and 3x3 same-padded layers `C -> 32` on 28x28 with the pool, one thread, load
/// average 8, effective CPU GFLOP/s Winograd vs direct at batch 1 / 32 / 256): C = 4: 55 / 48
/// / 47 vs 85 / 93 / 88; C = 8: 99 / 100 / 90 vs 111 / 126 / 110; C = 16: 217 / 207 / 200
/// vs 152 / 153 / 166 (on 14x14: 203 / 191 / 189 vs 144 / 157 / 154).
pub const WINOGRAD_MIN_CHANNELS: usize = 16;

/// Whether Winograd F(2x2, 3x3) can compute `p`: 3x3 kernel, stride 1, dilation 1, one group.
pub fn winograd_applies(p: &Conv2dParams) -> bool {
    p.kernel == (3, 3) && p.stride == (1, 1) && p.dilation == (1, 1) && p.groups == 1
}

/// Which Winograd variant [`super::conv2d_forward_fused`] may run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WinogradMode {
    /// The direct kernel only.
    Off,
    /// The default: per layer, F(4x4, 3x3) where its transformed tiles need at most 3/4 of
    /// F(2x2, 3x3)'s multiplies (whole 4x4 tiles waste less than a quarter on the edges:
    /// every output of 7x7 and up but 9x9 and 10x10, cnn-teacher's 28x28 and 14x14 layers
    /// among them), else F(2x2, 3x3). The choice depends on the layer's shape alone, never on
    /// the batch, so that chunked inference gives the same bits for any chunking. Measured
    /// (session 15, `slimnet bench /work/zoo/cnn-teacher.model --batch 1`, F(2x2) against
    /// F(4x4) on every layer, three interleaved rounds, Xeon): 267-286 against 241-246 us on
    /// one thread, 158-165 against 143-151 us on two.
    Auto,
    /// F(2x2, 3x3) wherever Winograd applies.
    F2x2,
    /// F(4x4, 3x3) wherever Winograd applies: 36 multiplies per 4x4 output tile instead of 64
    /// (four 2x2 tiles), against heavier transforms and a worse rounding error: measured at
    /// most 2.2e-5 * sqrt(9C) relative (7.4e-4 on 128 -> 128 unit-normal data, 25x
    /// F(2x2, 3x3)'s), and not exact on small integers (`G` has sixths); the tests hold it to
    /// [`winograd_tolerance`] where F(2x2) is held to 1e-5 * sqrt(9C) and exact integers. Measured
    /// (session 13, `conv_cpu`, one thread, load 7.8, effective CPU GFLOP/s F(4x4) vs F(2x2)
    /// at batch 1 / 32 / 256): 28x28 layers cnn-teacher conv2 288 / 283 / 217 vs 207 / 173 /
    /// 132, wide teacher conv2 365 / 351 / 285 vs 244 / 216 / 182; 14x14 layers cnn-teacher
    /// conv3 238 / 202 / 174 vs 208 / 178 / 128, conv4 290 / 292 / 256 vs 260 / 246 / 233,
    /// wide teacher conv3 234 / 257 / 194 vs 209 / 219 / 163, conv4 268 / 262 / 241 vs 250 /
    /// 239 / 221.
    F4x4,
}

/// The mode as a byte: 0 = not read yet, then `WinogradMode as u8 + 1`.
static MODE: AtomicU8 = AtomicU8::new(0);

const MODES: [WinogradMode; 4] = [
    WinogradMode::Off,
    WinogradMode::Auto,
    WinogradMode::F2x2,
    WinogradMode::F4x4,
];

/// The Winograd mode: as last set by [`set_winograd_mode`], else from the environment
/// variable `SLIMNET_WINOGRAD` when first asked (`0` off, `2` F(2x2) only, `4` F(4x4) only,
/// anything else or unset [`WinogradMode::Auto`]), for before / after comparisons in one binary.
pub fn winograd_mode() -> WinogradMode {
    match MODE.load(Ordering::Relaxed) {
        0 => {
            let mode = match std::env::var("SLIMNET_WINOGRAD").as_deref().map(str::trim) {
                Ok("0") => WinogradMode::Off,
                Ok("2") => WinogradMode::F2x2,
                Ok("4") => WinogradMode::F4x4,
                _ => WinogradMode::Auto,
            };
            set_winograd_mode(mode);
            mode
        }
        m => MODES[(m - 1) as usize % MODES.len()],
    }
}

/// Sets the Winograd mode for the whole process (benches compare the variants).
pub fn set_winograd_mode(mode: WinogradMode) {
    MODE.store(mode as u8 + 1, Ordering::Relaxed);
}

/// Output tile side (4 or 2) of the variant `mode` runs on a layer of output `oh x ow`.
fn tile_side(mode: WinogradMode, (oh, ow): (usize, usize)) -> usize {
    match mode {
        WinogradMode::F4x4 => 4,
        WinogradMode::Auto => {
            let f4 = 36 * oh.div_ceil(4) * ow.div_ceil(4);
            let f2 = 16 * oh.div_ceil(2) * ow.div_ceil(2);
            if 4 * f4 <= 3 * f2 { 4 } else { 2 }
        }
        WinogradMode::Off | WinogradMode::F2x2 => 2,
    }
}

/// The Winograd variant the fused forward on `path` runs for `p` on outputs `oh x ow`: its
/// output tile side, 2 or 4, or `None` when the layer goes to the direct kernel.
pub fn winograd_variant(
    path: F32Path,
    p: &Conv2dParams,
    (oh, ow): (usize, usize),
) -> Option<usize> {
    dispatches(path, p).then(|| tile_side(winograd_mode(), (oh, ow)))
}

/// The relative error the tests allow the fused forward on `path` for `p` on outputs
/// `oh x ow`, per `sqrt(K)` (`K = 9C`, unit-normal data): `1e-5` for the direct kernel and
/// F(2x2, 3x3), `4e-5` for F(4x4, 3x3) (measured at most 2.2e-5, see [`WinogradMode::F4x4`]).
#[cfg(test)]
pub(super) fn winograd_tolerance(path: F32Path, p: &Conv2dParams, out: (usize, usize)) -> f32 {
    let per_root_k = if winograd_variant(path, p, out) == Some(4) {
        4e-5
    } else {
        1e-5
    };
    per_root_k * (p.patch_len() as f32).sqrt()
}

/// Whether the fused forward on `path` runs `p` on `c x h x w` images by Winograd: the
/// AVX-512 F path, the switch on, [`winograd_applies`], at least
/// [`WINOGRAD_MIN_CHANNELS`] input channels.
pub(super) fn dispatches(path: F32Path, p: &Conv2dParams) -> bool {
    path == F32Path::Avx512F
        && cfg!(target_arch = "x86_64")
        && winograd_applies(p)
        && p.in_channels >= WINOGRAD_MIN_CHANNELS
        && winograd_mode() != WinogradMode::Off
}

/// The transformed weight matrices of a layer, `U[xi] = (G g G^T)[xi]` for every element
/// `xi` of the `alpha x alpha` transformed tile (16 for F(2x2, 3x3), 36 for F(4x4, 3x3)),
/// each `[C16, O]` packed for the GEMM; each variant is transformed on its first use.
#[derive(Clone, Debug, Default, PartialEq)]
pub(super) struct WinogradWeights {
    f2: OnceLock<Vec<PackedLinear>>,
    f4: OnceLock<Vec<PackedLinear>>,
}

/// One row of `G` applied to a column `(a, b, c)` of a 3x3 filter, for F(2x2, 3x3) (4 values,
/// then zeros) and F(4x4, 3x3) (Lavin & Gray's interpolation points 0, 1, -1, 2, -2, infinity).
fn g_rows(m: usize, a: f64, b: f64, c: f64) -> [f64; 6] {
    if m == 2 {
        [a, (a + b + c) / 2.0, (a - b + c) / 2.0, c, 0.0, 0.0]
    } else {
        [
            a / 4.0,
            -(a + b + c) / 6.0,
            -(a - b + c) / 6.0,
            (a + 2.0 * b + 4.0 * c) / 24.0,
            (a - 2.0 * b + 4.0 * c) / 24.0,
            c,
        ]
    }
}

impl WinogradWeights {
    /// Transforms `weight` (`[O, C, 3, 3]`, length checked by the caller) for tiles of side
    /// `m` (in f64, rounded once to f32) and packs the `(m + 2)^2` matrices.
    fn pack(
        weight: &[f32],
        o: usize,
        c: usize,
        m: usize,
    ) -> Result<Vec<PackedLinear>, TensorError> {
        let alpha = m + 2;
        let c16 = c.div_ceil(CB) * CB;
        let mut u = vec![0.0f32; alpha * alpha * c16 * o];
        for (oc, filters) in weight.chunks_exact(c * 9).enumerate() {
            for (ch, g) in filters.chunks_exact(9).enumerate() {
                // t = G g (alpha x 3), then U = t G^T (alpha x alpha).
                let g = |i: usize| f64::from(g[i]);
                let cols: [[f64; 6]; 3] =
                    std::array::from_fn(|j| g_rows(m, g(j), g(3 + j), g(6 + j)));
                for i in 0..alpha {
                    let ui = g_rows(m, cols[0][i], cols[1][i], cols[2][i]);
                    for (j, &v) in ui.iter().take(alpha).enumerate() {
                        u[((alpha * i + j) * c16 + ch) * o + oc] = v as f32;
                    }
                }
            }
        }
        u.chunks_exact(c16 * o)
            .map(|mx| PackedLinear::pack_transposed(mx, c16, o))
            .collect()
    }

    /// The matrices for tiles of side `m` from the cache `cell` of `weight`, transforming them
    /// on first use.
    pub(super) fn cached<'a>(
        cell: &'a OnceLock<WinogradWeights>,
        weight: &[f32],
        p: &Conv2dParams,
        m: usize,
    ) -> Result<&'a [PackedLinear], TensorError> {
        let w = cell.get_or_init(WinogradWeights::default);
        let variant = if m == 2 { &w.f2 } else { &w.f4 };
        if let Some(u) = variant.get() {
            return Ok(u);
        }
        let u = Self::pack(weight, p.out_channels, p.in_channels, m)?;
        Ok(variant.get_or_init(|| u))
    }
}

/// The geometry of F(m x m, 3x3) on one image.
struct Tiles {
    /// Output tile side `m` (2 or 4) and transformed tile side `alpha = m + 2`.
    m: usize,
    alpha: usize,
    /// The padded, channel-blocked image (rows / columns added below / right up to whole
    /// tiles).
    d: Direct,
    /// Tile rows and columns: `ceil(OH/m)`, `ceil(OW/m)`.
    th: usize,
    tw: usize,
    /// Input channels rounded up to 16.
    c16: usize,
    o: usize,
    oh: usize,
    ow: usize,
    /// Tile rows per block of `V` / `M`.
    rows_per_block: usize,
}

impl Tiles {
    fn new(
        p: &Conv2dParams,
        (c, h, w): (usize, usize, usize),
        (oh, ow): (usize, usize),
        m: usize,
    ) -> Self {
        let (th, tw) = (oh.div_ceil(m), ow.div_ceil(m));
        let pad = p.padding;
        let whole = Padding {
            bottom: pad.bottom + m * th - oh,
            right: pad.right + m * tw - ow,
            ..pad
        };
        let d = Direct::new(&p.with_padding(whole), (c, h, w), (m * th, m * tw), 1);
        let c16 = c.div_ceil(CB) * CB;
        let o = p.out_channels;
        let alpha = m + 2;
        let per_row = (tw * alpha * alpha * (c16 + o)).max(1);
        Self {
            m,
            alpha,
            d,
            th,
            tw,
            c16,
            o,
            oh,
            ow,
            rows_per_block: (BLOCK_FLOATS / per_row).clamp(1, th.max(1)),
        }
    }
}

/// The output of one image, written through a raw pointer so that the two halves of a batch-1
/// split write their own tiles' positions of every output plane.
#[derive(Clone, Copy)]
struct Out {
    ptr: *mut f32,
    len: usize,
}

// SAFETY: `Out` is only shared by the two halves of one image's split, which write disjoint
// output positions (their own tiles) while the `&mut` slice it came from is borrowed.
unsafe impl Send for Out {}
// SAFETY: as above.
unsafe impl Sync for Out {}

std::thread_local! {
    /// Per-thread padded image, `V` and `M` blocks, reused across calls.
    static PADDED: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
    static BLOCKS: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// [`with_buf`] on a 64-byte-aligned slice: every 16-channel vector of the padded image, `V`
/// and `M` (`C16` and, for `M`, `O` a multiple of 16 floats) then sits on one cache line
/// instead of straddling two.
fn with_aligned<R>(
    cell: &'static std::thread::LocalKey<RefCell<Vec<f32>>>,
    len: usize,
    f: impl FnOnce(&mut [f32]) -> R,
) -> R {
    with_buf(cell, len + CB, |buf| {
        let skip = buf.as_ptr().align_offset(64).min(CB);
        f(&mut buf[skip..skip + len])
    })
}

/// `pool(relu(conv(input) + bias))` by Winograd (the variant [`winograd_mode`] picks), a
/// tensor of `out_dims` (the fused output's), the transformed weights taken from / made into
/// `cache` (a [`PackedConvWeights`](super::direct::PackedConvWeights)' own, or a fresh one per
/// call); the caller checked the shapes, the bias, the AVX-512 F path and
/// [`winograd_applies`].
pub(super) fn forward(
    input: &Tensor,
    weight: &[f32],
    cache: &OnceLock<WinogradWeights>,
    bias: Option<&[f32]>,
    p: &Conv2dParams,
    epi: ConvEpilogue,
    out_dims: &[usize],
) -> Result<Tensor, TensorError> {
    let d = input.dims();
    let m = tile_side(winograd_mode(), p.output_hw(d[2], d[3])?);
    forward_tiles(m, input, (weight, cache), bias, p, epi, out_dims)
}

/// [`forward`] by F(m x m, 3x3), `m` 2 or 4. Images run in parallel unless
/// [`crate::serial::threads`] is 1; a single image splits its tiles or its output channels
/// over [`duo`] from [`DIRECT_PAR_MIN_MACS`]. Each image's output is zeroed just before its
/// kernel writes it ([`crate::par_zeroed_chunks`]).
fn forward_tiles(
    m: usize,
    input: &Tensor,
    (weight, cache): (&[f32], &OnceLock<WinogradWeights>),
    bias: Option<&[f32]>,
    p: &Conv2dParams,
    epi: ConvEpilogue,
    out_dims: &[usize],
) -> Result<Tensor, TensorError> {
    let d = input.dims();
    let (oh, ow) = p.output_hw(d[2], d[3])?;
    let wts = WinogradWeights::cached(cache, weight, p, m)?;
    let geo = Tiles::new(p, (d[1], d[2], d[3]), (oh, ow), m);
    let img_out = out_dims[1] * out_dims[2] * out_dims[3];
    let img_in = d[1] * d[2] * d[3];
    if d[0] == 0 || img_out == 0 {
        return Tensor::zeros_dims(out_dims);
    }
    let x = input.data();
    let threads = crate::serial::threads();
    let macs = p.out_channels * oh * ow * p.patch_len();
    // Images in parallel when there are several; one image on two threads splits its tiles.
    let split = threads > 1 && d[0] == 1 && macs >= DIRECT_PAR_MIN_MACS && geo.th * geo.tw > 1;
    let data = crate::par_zeroed_chunks(d[0] * img_out, img_out, |k, yi| {
        image(
            &geo,
            wts,
            bias,
            epi,
            &x[k * img_in..(k + 1) * img_in],
            yi,
            split,
        )
    })?;
    Tensor::new(out_dims, data)
}

/// How a batch-1 image is shared between this thread and the [`duo`] helper.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Split {
    /// Not shared: every tile and output channel here.
    Whole,
    /// Tiles `0..mid` (numbered row by row) here, the rest on the helper; each half pads only
    /// the input rows its tiles read.
    Tiles(usize),
    /// Output channels of the GEMM panels `0..mid` (of [`NR`] channels) here, the rest on
    /// the helper; both halves pad and transform the whole image, and each reads only its
    /// panels of `U`.
    Panels(usize),
}

impl Split {
    /// The split of a batch-1 image when `split` is asked for: the larger dimension of the
    /// GEMMs `M [tiles, O]` in halves. By output channels when there are more of them than
    /// tiles (and two panels or more), so that each core reads half of `U` rather than all of
    /// it: cnn-teacher's 14x14 layers have 16 tiles of F(4x4) and 64 channels, and `U` of
    /// conv4 is 590 KB, which both cores read once per image when split by tiles. Measured
    /// (session 15, `slimnet bench /work/zoo/cnn-teacher.model --batch 1 --threads 2`,
    /// timestamps around each phase): split by tiles, conv3 and conv4 took 1.13x and 1.2x
    /// less time on two threads than on one, their GEMMs 1.2x.
    fn of(geo: &Tiles, split: bool) -> Self {
        let (tiles, panels) = (geo.th * geo.tw, geo.o.div_ceil(NR));
        if !split {
            Split::Whole
        } else if geo.o > tiles && panels >= 2 {
            Split::Panels(panels.div_ceil(2))
        } else {
            Split::Tiles(tiles.div_ceil(2))
        }
    }
}

/// One image, split between this thread and the [`duo`] helper as [`Split::of`] says.
fn image(
    geo: &Tiles,
    wts: &[PackedLinear],
    bias: Option<&[f32]>,
    epi: ConvEpilogue,
    x: &[f32],
    y: &mut [f32],
    split: bool,
) -> Result<(), TensorError> {
    image_split(geo, (wts, bias, epi), x, y, Split::of(geo, split))
}

/// [`image`] split as `split` says (whole when a half would be empty).
fn image_split(
    geo: &Tiles,
    (wts, bias, epi): (&[PackedLinear], Option<&[f32]>, ConvEpilogue),
    x: &[f32],
    y: &mut [f32],
    split: Split,
) -> Result<(), TensorError> {
    let out = Out {
        ptr: y.as_mut_ptr(),
        len: y.len(),
    };
    let (tiles, panels) = (geo.th * geo.tw, geo.o.div_ceil(NR));
    let part = |t: Range<usize>, p: Range<usize>| part(geo, wts, bias, epi, x, out, t, p);
    let halves = match split {
        Split::Tiles(mid) if mid > 0 && mid < tiles => {
            Some(((0..mid, 0..panels), (mid..tiles, 0..panels)))
        }
        Split::Panels(mid) if mid > 0 && mid < panels => {
            Some(((0..tiles, 0..mid), (0..tiles, mid..panels)))
        }
        _ => None,
    };
    match halves {
        Some(((ta, pa), (tb, pb))) => {
            let (a, b) = duo::join(|| part(ta, pa), || part(tb, pb));
            a.and(b)
        }
        None => part(0..tiles, 0..panels),
    }
}

/// Tiles `tiles` of one image (numbered row by row, `t = ty * tw + tx`), output channels of
/// the GEMM panels `panels`: pads the input rows the tiles read into this thread's buffer,
/// then in blocks of at most `rows_per_block` tile rows' worth: input transform, the
/// `alpha^2` GEMMs on those panels, output transform with the epilogue.
#[allow(clippy::too_many_arguments)]
fn part(
    geo: &Tiles,
    wts: &[PackedLinear],
    bias: Option<&[f32]>,
    epi: ConvEpilogue,
    x: &[f32],
    out: Out,
    tiles: Range<usize>,
    panels: Range<usize>,
) -> Result<(), TensorError> {
    let (t0, t1) = (tiles.start, tiles.end);
    let chans = NR * panels.start..geo.o.min(NR * panels.end);
    if t0 >= t1 || chans.is_empty() {
        return Ok(());
    }
    let oc = chans.len();
    let most = geo.rows_per_block * geo.tw;
    let xi = geo.alpha * geo.alpha;
    // Padded rows read by tile rows `ty0..=ty1`: from `m ty0` to `m ty1 + alpha`.
    let (ty0, ty1) = (t0 / geo.tw, (t1 - 1) / geo.tw);
    let rows = geo.m * ty0..(geo.m * ty1 + geo.alpha).min(geo.d.hp);
    let (out_rows, out_width) = staged_rows(geo, epi);
    let staged = out_rows * out_width * CB;
    with_aligned(&PADDED, geo.d.blocked_len(), |xb| {
        // SAFETY: the caller checked the AVX-512 F path; `xb` has the blocked length.
        #[cfg(target_arch = "x86_64")]
        unsafe {
            geo.d.pad_image_blocked(x, xb, rows)
        };
        let xb = &*xb;
        let (most_v, most_m) = (skewed(most * geo.c16), skewed(most * oc));
        with_aligned(&BLOCKS, xi * (most_v + most_m) + staged, |buf| {
            let (stage, buf) = buf.split_at_mut(staged);
            let (v, m) = buf.split_at_mut(xi * most_v);
            let mut b0 = t0;
            while b0 < t1 {
                let b1 = (b0 + most).min(t1);
                let tiles = b1 - b0;
                let (sv, sm) = (skewed(tiles * geo.c16), skewed(tiles * oc));
                let (v, m) = (&mut v[..xi * sv], &mut m[..xi * sm]);
                // SAFETY: AVX-512 F checked by the caller; `xb` holds the padded rows that
                // tiles `b0..b1` read; `v` and `m` hold the block, `out` the image's output
                // (disjoint positions or channels per part).
                #[cfg(target_arch = "x86_64")]
                unsafe {
                    if geo.m == 2 {
                        input_transform::<2>(geo, xb, b0, b1, v)
                    } else {
                        input_transform::<4>(geo, xb, b0, b1, v)
                    }
                };
                let vs = v.chunks_exact(sv).map(|vx| &vx[..tiles * geo.c16]);
                let ms = m.chunks_exact_mut(sm).map(|mx| &mut mx[..tiles * oc]);
                for ((vx, mx), u) in vs.zip(ms).zip(wts) {
                    let plain = LinearEpilogue::default();
                    linear_packed_rows(F32Path::Avx512F, vx, tiles, u, plain, mx, panels.clone())?;
                }
                let block = Block {
                    tiles: b0..b1,
                    chans: chans.clone(),
                };
                // SAFETY: as above.
                #[cfg(target_arch = "x86_64")]
                unsafe {
                    if geo.m == 2 {
                        output_transform::<2>(geo, m, block, bias, epi, stage, out)
                    } else {
                        output_transform::<4>(geo, m, block, bias, epi, stage, out)
                    }
                };
                b0 = b1;
            }
            Ok(())
        })
    })
}

/// The distance in floats between consecutive matrices `V[xi]` (or `M[xi]`) of `len` floats:
/// one cache line more than `len`. Without it, F(4x4) on cnn-teacher's conv4 (16 tiles, 64
/// channels) put its 36 matrices exactly 4 KB apart, and the transforms' 36 stores or loads
/// per tile all fell in the same L1 set.
fn skewed(len: usize) -> usize {
    len + CB
}

/// The tiles and output channels of one block of [`output_transform`].
struct Block {
    tiles: Range<usize>,
    chans: Range<usize>,
}

/// `B^T x` for one column `x` of `M + 2` vectors (F(2x2, 3x3): the first 4; F(4x4, 3x3):
/// all 6), Lavin & Gray's `B^T` written as adds and FMAs.
///
/// # Safety
/// The CPU must support AVX-512 F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn bt<const M: usize>(d: [std::arch::x86_64::__m512; 6]) -> [std::arch::x86_64::__m512; 6] {
    use std::arch::x86_64::*;
    let (add, sub) = (_mm512_add_ps, _mm512_sub_ps);
    if M == 2 {
        let z = _mm512_setzero_ps();
        return [
            sub(d[0], d[2]),
            add(d[1], d[2]),
            sub(d[2], d[1]),
            sub(d[1], d[3]),
            z,
            z,
        ];
    }
    let k = _mm512_set1_ps;
    let fma = _mm512_fmadd_ps;
    [
        fma(k(4.0), d[0], fma(k(-5.0), d[2], d[4])),
        fma(k(-4.0), add(d[1], d[2]), add(d[3], d[4])),
        fma(k(4.0), sub(d[1], d[2]), sub(d[4], d[3])),
        fma(k(-2.0), sub(d[1], d[3]), sub(d[4], d[2])),
        fma(k(2.0), sub(d[1], d[3]), sub(d[4], d[2])),
        fma(k(4.0), d[1], fma(k(-5.0), d[3], d[5])),
    ]
}

/// `A^T x` for one column `x` of `M + 2` vectors: `M` outputs (then zeros). Unsafe only for
/// its target feature: the caller runs on a CPU with AVX-512 F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn at<const M: usize>(x: [std::arch::x86_64::__m512; 6]) -> [std::arch::x86_64::__m512; 4] {
    use std::arch::x86_64::{_mm512_add_ps as add, _mm512_sub_ps as sub, *};
    let (a, b) = (add(x[1], x[2]), sub(x[1], x[2]));
    if M == 2 {
        let z = _mm512_setzero_ps();
        return [add(x[0], a), sub(b, x[3]), z, z];
    }
    let (c, d) = (add(x[3], x[4]), sub(x[3], x[4]));
    let k = _mm512_set1_ps;
    [
        add(add(x[0], a), c),
        _mm512_fmadd_ps(k(2.0), d, b),
        _mm512_fmadd_ps(k(4.0), c, a),
        add(_mm512_fmadd_ps(k(8.0), d, b), x[5]),
    ]
}

/// `V[xi][t - t0][c] = (B^T d B)[xi]` for every tile `t` of `t0..t1` and channel `c` (16
/// channels per zmm), tiles of side `M` (`d` is the `(M+2)^2` window at `(M ty, M tx)`); the
/// matrices `V[xi]` lie [`skewed`] apart.
///
/// # Safety
/// The CPU must support AVX-512 F; `geo.m == M`; `xb` has the padded image's length and holds
/// (by `geo.d.pad_image_blocked`) the padded rows these tiles read;
/// `v.len() == (M+2)^2 * skewed((t1 - t0) * c16)`, `t0 <= t1 <= th * tw`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn input_transform<const M: usize>(
    geo: &Tiles,
    xb: &[f32],
    t0: usize,
    t1: usize,
    v: &mut [f32],
) {
    use std::arch::x86_64::*;
    let a = M + 2;
    let (hp, wp) = (geo.d.hp, geo.d.wp);
    let tiles = t1 - t0;
    let stride = skewed(tiles * geo.c16);
    debug_assert!(geo.m == M && xb.len() >= geo.d.blocked_len());
    debug_assert!(v.len() == a * a * stride);
    debug_assert!(M * geo.th + 2 <= hp && M * geo.tw + 2 <= wp);
    let vp = v.as_mut_ptr();
    // Tiles outside, channel blocks inside: each stream of `V` is written in order (channel
    // blocks outside measured 26% of a Winograd layer's time in this function, against 4-5%
    // expected from its 16 loads and 16 stores per tile and channel block).
    for (t, tile) in (t0..t1).enumerate() {
        let (ty, tx) = (tile / geo.tw, tile % geo.tw);
        for cb in 0..geo.c16 / CB {
            // SAFETY (whole block): rows `M ty..M ty + M + 2 <= Hp` and columns likewise
            // `<= Wp` of channel block `cb` of `xb`; stores to `V[xi][t][cb*16..+16]`.
            unsafe {
                let base = xb.as_ptr().add(((cb * hp + M * ty) * wp + M * tx) * CB);
                let z = _mm512_setzero_ps();
                let mut d = [[z; 6]; 6];
                for (r, row) in d.iter_mut().enumerate().take(a) {
                    for (s, x) in row.iter_mut().enumerate().take(a) {
                        *x = _mm512_loadu_ps(base.add((r * wp + s) * CB));
                    }
                }
                // B^T d by columns, then (.) B by rows: cols[s][i] = (B^T d)[i][s].
                let cols: [[__m512; 6]; 6] =
                    std::array::from_fn(|s| bt::<M>(std::array::from_fn(|r| d[r][s])));
                #[allow(clippy::needless_range_loop)] // `i` indexes the inner arrays.
                for i in 0..a {
                    let row = bt::<M>(std::array::from_fn(|s| cols[s][i]));
                    for (j, &val) in row.iter().enumerate().take(a) {
                        let at = (a * i + j) * stride + t * geo.c16 + cb * CB;
                        _mm512_storeu_ps(vp.add(at), val);
                    }
                }
            }
        }
    }
}

/// Output rows one tile row makes (`M`, or `M / 2` pooled) and their width (`OW`, or the
/// pooled `OW / 2`): the shape of the staging buffer of [`output_transform`], which holds
/// `rows * width` lines of 16 channels.
fn staged_rows(geo: &Tiles, epi: ConvEpilogue) -> (usize, usize) {
    if epi.max_pool_2x2 {
        (geo.m / 2, geo.ow / 2)
    } else {
        (geo.m, geo.ow)
    }
}

/// `Y = A^T M A` for every tile of `block.tiles` (tiles of side `M`) and output channel of
/// `block.chans`, 16 channels per zmm, then bias, ReLU and the 2x2 max pool as `epi` says,
/// into the NCHW output `out`: per group of 16 channels and per tile row, the tiles' lines of
/// 16 channels are staged in `stage` (one tile row's output rows, [`staged_rows`]) and then
/// transposed into the 16 planes' rows
/// ([`untranspose_row_avx512`]): whole row segments stored, where one masked scatter per
/// position and group wrote 16 planes at once (3x slower on cnn-teacher's conv3, whose two
/// halves then also wrote the same lines).
///
/// # Safety
/// The CPU must support AVX-512 F; `geo.m == M`; `m` is `M [(M+2)^2][tiles][chans]` of the
/// block, its matrices [`skewed`] apart, `block.tiles.end <= th * tw`, `block.chans.end <= O`; `stage.len() == 16 * rows *
/// width` of [`staged_rows`]; `out` is the image's output (`O` planes of `OH x OW`, or pooled)
/// and no other thread writes the block's positions and channels; `bias`, when given, has `O`
/// values.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
unsafe fn output_transform<const M: usize>(
    geo: &Tiles,
    m: &[f32],
    block: Block,
    bias: Option<&[f32]>,
    epi: ConvEpilogue,
    stage: &mut [f32],
    out: Out,
) {
    use std::arch::x86_64::*;
    let a = M + 2;
    let tw = geo.tw;
    let (t0, t1) = (block.tiles.start, block.tiles.end);
    let (c0, o) = (block.chans.start, block.chans.end);
    // Channels per row of `m`.
    let oc = o - c0;
    let tiles = t1 - t0;
    let stride = skewed(tiles * oc);
    let (rows, width) = staged_rows(geo, epi);
    // Output rows and plane of the image (pooled when pooling).
    let height = if epi.max_pool_2x2 { geo.oh / 2 } else { geo.oh };
    let plane = height * width;
    debug_assert!(geo.m == M && m.len() == a * a * stride && o <= geo.o);
    debug_assert_eq!(stage.len(), rows * width * CB);
    debug_assert_eq!(out.len, geo.o * plane);
    let zero = _mm512_setzero_ps();
    let sp = stage.as_mut_ptr();
    for o0 in (c0..o).step_by(16) {
        let cout = (o - o0).min(16);
        let mask: __mmask16 = if cout == 16 { !0 } else { (1u16 << cout) - 1 };
        // SAFETY (whole block): masked loads of `M[xi][t]` and of the bias read channels
        // `o0 + j < O`; stores to `stage` write lines `dy * width + x` with `dy < rows`,
        // `x < width`; the transposes write this block's rows of planes `o0..o0 + cout`.
        unsafe {
            let b = bias.map_or(zero, |b| _mm512_maskz_loadu_ps(mask, b.as_ptr().add(o0)));
            let finish = |v: __m512| {
                let v = _mm512_add_ps(v, b);
                if epi.relu {
                    _mm512_mask_mov_ps(v, _mm512_cmp_ps_mask::<_CMP_LT_OQ>(v, zero), zero)
                } else {
                    v
                }
            };
            let stage_at = |dy: usize, x: usize, v: __m512| {
                _mm512_storeu_ps(sp.add((dy * width + x) * CB), finish(v));
            };
            // NaN wins, as `max_pool2d_forward`: `max_ps(a, b)` returns `b` when either is
            // NaN, so a NaN `a` is put back.
            let nan_max = |a: __m512, b: __m512| {
                let mx = _mm512_max_ps(a, b);
                _mm512_mask_mov_ps(mx, _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(a, a), a)
            };
            // The tiles of `t0..t1` tile row by tile row: `ty`, columns `tx0..tx1`.
            let mut t = t0;
            while t < t1 {
                let (ty, tx0) = (t / tw, t % tw);
                let tx1 = tw.min(tx0 + (t1 - t));
                for tx in tx0..tx1 {
                    let mp = m.as_ptr().add((t - t0 + tx - tx0) * oc + o0 - c0);
                    let load = |xi: usize| {
                        debug_assert!(xi < a * a);
                        _mm512_maskz_loadu_ps(mask, mp.add(xi * stride))
                    };
                    // A^T M by columns, then (.) A by rows: y[i][j] for i, j < M.
                    // Only the `a x a` elements exist: reading `s >= a` (F(2x2)) would run past
                    // `M`.
                    let cols: [[__m512; 4]; 6] = std::array::from_fn(|s| {
                        at::<M>(std::array::from_fn(|r| {
                            if r < a && s < a {
                                load(r * a + s)
                            } else {
                                zero
                            }
                        }))
                    });
                    let y: [[__m512; 4]; 4] =
                        std::array::from_fn(|i| at::<M>(std::array::from_fn(|s| cols[s][i])));
                    if epi.max_pool_2x2 {
                        // The tile's M/2 x M/2 pool windows (floor mode drops those past the
                        // edge).
                        for py in 0..M / 2 {
                            for px in 0..M / 2 {
                                let qx = M / 2 * tx + px;
                                if M / 2 * ty + py < height && qx < width {
                                    let (i, j) = (2 * py, 2 * px);
                                    let top = nan_max(y[i][j], y[i][j + 1]);
                                    let v = nan_max(top, nan_max(y[i + 1][j], y[i + 1][j + 1]));
                                    stage_at(py, qx, v);
                                }
                            }
                        }
                    } else {
                        for (dy, row) in y.iter().enumerate().take(M) {
                            for (dx, &v) in row.iter().enumerate().take(M) {
                                let ox = M * tx + dx;
                                if M * ty + dy < height && ox < width {
                                    stage_at(dy, ox, v);
                                }
                            }
                        }
                    }
                }
                // The staged rows, columns `x0..x1`, into planes `o0..o0 + cout` (a tile is
                // square: it makes as many output columns as rows).
                let x0 = rows * tx0;
                let x1 = width.min(rows * tx1);
                for dy in 0..rows {
                    let oy = rows * ty + dy;
                    if oy < height && x0 < x1 {
                        let src = &stage[(dy * width + x0) * CB..(dy * width + x1) * CB];
                        let dst = out.ptr.add(o0 * plane + oy * width + x0);
                        untranspose_row_avx512(src, dst, plane, cout);
                    }
                }
                t += tx1 - tx0;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conv::direct::PackedConvWeights;
    use crate::conv::tests::fused::{EPILOGUES, assert_exact, reference};
    use crate::rng::Rng;
    use crate::shape::Shape;
    use crate::testing::tensor_from_fn as tensor;

    /// Winograd F(m x m, 3x3) itself (not the dispatch, whose channel threshold it bypasses).
    fn winograd(
        m: usize,
        (x, w, b): (&Tensor, &Tensor, Option<&[f32]>),
        p: &Conv2dParams,
        epi: ConvEpilogue,
    ) -> Result<Tensor, TensorError> {
        let [n, o, oh, ow] = p.output_dims(x.shape())?;
        let dims = if epi.max_pool_2x2 {
            ConvEpilogue::pool_params().output_dims(&Shape::new(&[n, o, oh, ow])?)?
        } else {
            [n, o, oh, ow]
        };
        forward_tiles(m, x, (w.data(), &OnceLock::new()), b, p, epi, &dims)
    }

    fn skip() -> bool {
        crate::testing::skip_without(F32Path::Avx512F, "Winograd F(2x2, 3x3)")
    }

    /// Calls `f(p, (x, weight, bias), case)` over H, W in 1..=9 (odd and even, tiles cut by
    /// the edge), padding 0, 1 and asymmetric, channels around one and two 16-lane blocks,
    /// batch 1 and 3, the values drawn by `value` from a seeded stream; `case` names the shape
    /// and seed.
    fn edge_grid(
        value: impl Fn(&mut Rng) -> f32,
        mut f: impl FnMut(Conv2dParams, (&Tensor, &Tensor, &[f32]), String),
    ) {
        let pads = [
            Padding::symmetric(0),
            Padding::symmetric(1),
            Padding::from_onnx([2, 0, 1, 3]),
        ];
        let mut seed = 0u64;
        for h in 1..=9 {
            for w in 1..=9 {
                seed += 1;
                let pad = pads[(h + w) % 3];
                let (c, o) = [(1, 1), (16, 17), (17, 15), (33, 33), (5, 40)][(h * w) % 5];
                let p = Conv2dParams::new(c, o, (3, 3)).with_padding(pad);
                let n = 1 + 2 * (seed as usize % 2);
                let mut rng = Rng::seed_from_u64(seed);
                let mut draw = || value(&mut rng);
                let x = tensor(&[n, c, h, w], &mut draw);
                let wt = tensor(&p.weight_dims(), &mut draw);
                let b: Vec<f32> = (0..o).map(|_| draw()).collect();
                f(p, (&x, &wt, &b), format!("{p:?} n={n} {h}x{w} seed={seed}"));
            }
        }
    }

    /// Worst `|got - want| / (1 + |want|)`.
    fn worst_error(got: &Tensor, want: &Tensor) -> f32 {
        assert_eq!(got.dims(), want.dims());
        let errs = got.data().iter().zip(want.data());
        errs.map(|(g, w)| (g - w).abs() / (1.0 + w.abs()))
            .fold(0.0f32, f32::max)
    }

    /// Relative tolerance per `sqrt(K)` (`K = 9C`) of F(m x m, 3x3) on unit-normal data: the
    /// direct kernel's `1e-5` for F(2x2); F(4x4)'s transforms (coefficients up to 8 and 1/24)
    /// lose more, measured at most 2.2e-5 * sqrt(K) on these tests (128 -> 128).
    fn tolerance(m: usize, p: &Conv2dParams) -> f32 {
        let per_root_k = if m == 2 { 1e-5 } else { 4e-5 };
        per_root_k * (p.patch_len() as f32).sqrt()
    }

    /// F(2x2, 3x3) on small integers keeps every transform and sum exact: equal to the
    /// reference bit for bit over [`edge_grid`], every epilogue, with and without bias.
    #[test]
    fn small_integers_match_the_reference_exactly() {
        if skip() {
            return;
        }
        let int = |rng: &mut Rng| rng.below(7) as f32 - 3.0;
        edge_grid(int, |p, (x, wt, b), case| {
            for epi in EPILOGUES {
                for bias in [Some(b), None] {
                    let got = winograd(2, (x, wt, bias), &p, epi);
                    let what = format!("{case} {epi:?} bias={}", bias.is_some());
                    assert_exact(got, (x, wt, bias), &p, epi, &what);
                }
            }
        });
    }

    /// F(4x4, 3x3) (not exact on integers: `G` has sixths) over [`edge_grid`] on unit-normal
    /// data, every epilogue, with and without bias: within [`tolerance`].
    #[test]
    fn f4x4_edge_sizes_within_tolerance() {
        if skip() {
            return;
        }
        edge_grid(Rng::normal, |p, (x, wt, b), case| {
            for epi in EPILOGUES {
                for bias in [Some(b), None] {
                    let got = winograd(4, (x, wt, bias), &p, epi);
                    let Ok(want) = reference(x, wt, bias, &p, epi) else {
                        assert!(got.is_err(), "{case} {epi:?}");
                        continue;
                    };
                    let worst = worst_error(&got.unwrap(), &want);
                    let tol = tolerance(4, &p);
                    assert!(worst <= tol, "{case} {epi:?}: {worst} > {tol}");
                }
            }
        });
    }

    /// Unit-normal data on the zoo's 3x3 layers (cnn-teacher conv2-4, the wide teacher's
    /// conv2-4) and odd shapes, both variants: within [`tolerance`], the measured worst error
    /// printed.
    #[test]
    fn unit_normal_data_within_tolerance() {
        if skip() {
            return;
        }
        let same = |c, o| Conv2dParams::new(c, o, (3, 3)).with_padding(Padding::symmetric(1));
        let layers = [
            (same(32, 32), 28, 1),
            (same(32, 64), 14, 3),
            (same(64, 64), 14, 1),
            (same(64, 64), 28, 1),
            (same(64, 128), 14, 1),
            (same(128, 128), 14, 1),
            (Conv2dParams::new(20, 37, (3, 3)), 9, 2),
            (same(50, 3), 7, 3),
        ];
        let mut rng = Rng::seed_from_u64(17);
        for (p, hw, n) in layers {
            let mut normal = || rng.normal();
            let x = tensor(&[n, p.in_channels, hw, hw], &mut normal);
            let wt = tensor(&p.weight_dims(), &mut normal);
            let b: Vec<f32> = (0..p.out_channels).map(|_| normal()).collect();
            for (m, max_pool_2x2) in [(2, false), (2, true), (4, false), (4, true)] {
                let epi = ConvEpilogue {
                    relu: false,
                    max_pool_2x2,
                };
                let want = reference(&x, &wt, Some(&b), &p, epi).unwrap();
                let got = winograd(m, (&x, &wt, Some(&b)), &p, epi).unwrap();
                let worst = worst_error(&got, &want);
                let tol = tolerance(m, &p);
                let per_root_k = worst / (p.patch_len() as f32).sqrt();
                eprintln!(
                    "F({m}x{m}) C={} O={} {hw}x{hw} pool={max_pool_2x2}: worst |err|/(1+|y|) = {worst:.2e} = {per_root_k:.2e} sqrt(K) (tol {tol:.2e})",
                    p.in_channels, p.out_channels
                );
                assert!(worst <= tol, "{p:?} {hw}x{hw} m={m}: {worst} > {tol}");
            }
        }
    }

    /// A batch-1 image split at every tile (mid-row cuts included, each half padding its own
    /// input rows on its own thread) and at every GEMM panel of output channels gives the bits
    /// of the whole image: both variants, with and without the pool, odd and even sizes,
    /// padding 0, 1 and asymmetric, 1 to 3 panels.
    #[test]
    fn split_at_any_tile_or_panel_gives_the_same_bits() {
        if skip() {
            return;
        }
        let shapes = [
            (
                Conv2dParams::new(16, 17, (3, 3)).with_padding(Padding::symmetric(1)),
                9,
                7,
            ),
            (Conv2dParams::new(20, 33, (3, 3)), 11, 10),
            (
                Conv2dParams::new(16, 65, (3, 3)).with_padding(Padding::symmetric(1)),
                5,
                8,
            ),
            (
                Conv2dParams::new(17, 16, (3, 3)).with_padding(Padding::from_onnx([2, 0, 1, 3])),
                6,
                13,
            ),
        ];
        let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build();
        let mut rng = Rng::seed_from_u64(31);
        for (p, h, w) in shapes {
            let mut normal = || rng.normal();
            let x = tensor(&[1, p.in_channels, h, w], &mut normal);
            let wt = tensor(&p.weight_dims(), &mut normal);
            let b: Vec<f32> = (0..p.out_channels).map(|_| normal()).collect();
            for (m, max_pool_2x2) in [(2, false), (2, true), (4, false), (4, true)] {
                let epi = ConvEpilogue {
                    relu: true,
                    max_pool_2x2,
                };
                let whole = winograd(m, (&x, &wt, Some(&b)), &p, epi).unwrap();
                let (oh, ow) = p.output_hw(h, w).unwrap();
                let geo = Tiles::new(&p, (p.in_channels, h, w), (oh, ow), m);
                let cache = OnceLock::new();
                let wts = WinogradWeights::cached(&cache, wt.data(), &p, m).unwrap();
                let tiles = (0..=geo.th * geo.tw).map(Split::Tiles);
                let panels = (0..=p.out_channels.div_ceil(NR)).map(Split::Panels);
                for split in tiles.chain(panels) {
                    let mut y = vec![f32::NAN; whole.data().len()];
                    let args = (wts, Some(&b[..]), epi);
                    let run = || image_split(&geo, args, x.data(), &mut y, split);
                    pool.as_ref().unwrap().install(run).unwrap();
                    let case = format!("{p:?} {h}x{w} m={m} pool={max_pool_2x2} {split:?}");
                    let bad = whole
                        .data()
                        .iter()
                        .zip(&y)
                        .position(|(a, b)| a.to_bits() != b.to_bits());
                    if let Some(i) = bad {
                        panic!(
                            "{case}: at {i} of {}: {} vs {}",
                            y.len(),
                            whole.data()[i],
                            y[i]
                        );
                    }
                }
            }
        }
    }

    /// The dispatch takes Winograd on AVX-512 F from 16 input channels and gives the same
    /// bits on 1 and 2 threads (the batch-1 split by tiles), batch 1 and 2.
    #[test]
    fn dispatched_and_split_over_two_threads() {
        if skip() {
            return;
        }
        let p = Conv2dParams::new(32, 40, (3, 3)).with_padding(Padding::symmetric(1));
        assert!(dispatches(F32Path::Avx512F, &p) || winograd_mode() == WinogradMode::Off);
        assert!(!dispatches(F32Path::Avx2Fma, &p));
        assert!(!dispatches(
            F32Path::Avx512F,
            &Conv2dParams::new(8, 40, (3, 3))
        ));
        let mut rng = Rng::seed_from_u64(23);
        let mut normal = || rng.normal();
        let wt = tensor(&p.weight_dims(), &mut normal);
        let b: Vec<f32> = (0..40).map(|_| normal()).collect();
        let packed = PackedConvWeights::pack(wt.data(), &p).unwrap();
        let epi = ConvEpilogue {
            relu: true,
            max_pool_2x2: true,
        };
        let in_pool = |threads: usize, x: &Tensor| {
            let f = crate::conv::conv2d_forward_fused_with;
            let run = || f(F32Path::Avx512F, x, &wt, Some(&packed), Some(&b), &p, epi);
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build();
            pool.unwrap().install(run).unwrap()
        };
        for n in [1, 2] {
            // 40 x 31 x 30 x 288 = 10.7 M MACs per image: batch 1 splits on 2 threads.
            let x = tensor(&[n, 32, 31, 30], &mut normal);
            let one = in_pool(1, &x);
            assert_eq!(one.data(), in_pool(2, &x).data(), "n={n}");
            // The variant the dispatch ran (none with SLIMNET_WINOGRAD=0), run by itself.
            if let Some(m) = winograd_variant(F32Path::Avx512F, &p, (31, 30)) {
                let alone = winograd(m, (&x, &wt, Some(&b)), &p, epi).unwrap();
                assert_eq!(one.data(), alone.data(), "n={n}");
            }
        }
    }
}
