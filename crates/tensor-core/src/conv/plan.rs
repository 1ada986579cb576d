//! How a convolution call is split into blocks of images ([`Plan`], [`block_images`]), and the
//! per-thread scratch the blocks' im2col columns live in.

use super::geometry::ConvGeometry;
use crate::gemm::GemmParams;

/// The images per im2col block for a batch of `batch` images, a patch of `patch_len` rows and
/// `out_plane` output positions per image.
///
/// Blocks are the unit of parallelism: each runs im2col, its GEMMs (on one thread) and
/// col2im on one rayon worker, so a layer costs one fork/join instead of one per GEMM and
/// per pass. A block's column buffer stays near [`COL_BLOCK_FLOATS`] (cache-sized), and a
/// batch is cut into at least two blocks per thread for load balance.
///
/// Measured on the 2-core Xeon (LeNet-5, batch 64, SGD step, while two other processes kept
/// one core busy): whole-batch im2col with two-thread faer GEMMs took 59 ms per step, as faer's
/// spin barriers waited for the descheduled thread; per-block parallelism with one-thread
/// GEMMs (faer reaching 80-100 GFLOP/s on the conv2 block shapes) took the figures in
/// docs/BENCHMARKS.md. One image per task (`conv2d_forward_per_image`) loses to blocks because
/// each image's GEMM is too small (conv1: 20 x 576 x 25).
pub fn block_images(patch_len: usize, out_plane: usize, batch: usize) -> usize {
    let threads = rayon::current_num_threads().max(1);
    let per_image = (patch_len * out_plane).max(1);
    let by_memory = (COL_BLOCK_FLOATS / per_image).max(1);
    let by_balance = batch.div_ceil(2 * threads).max(1);
    by_memory.min(by_balance).min(batch.max(1))
}

/// Target size of one block's im2col buffer in floats (1 MiB; see [`block_images`]).
pub const COL_BLOCK_FLOATS: usize = 1 << 18;

/// How a call is split: images per block, number of blocks, and whether the work inside a
/// block may itself fork (only when there is a single block).
#[derive(Clone, Copy, Debug)]
pub(super) struct Plan {
    pub(super) bn: usize,
    pub(super) blocks: usize,
    /// Images per GEMM inside a block (see [`PER_IMAGE_MIN_PLANE`]).
    pub(super) sub: usize,
    pub(super) inner_parallel: bool,
}

/// Output planes at least this large (OH*OW) get one GEMM per image inside a block; smaller
/// ones batch the block's images into one wider GEMM.
///
/// Measured on the 2-core Xeon (batch 64, forward): lenet5.conv1 (24x24 = 576 positions)
/// took 1.17 ms per image against 1.67 ms batched, the batched form paying an extra pass to
/// reorder `[Og, nb, OH*OW]` into NCHW; lenet5.conv2 (8x8 = 64) took 4.2 ms batched against
/// 4.4 ms per image, its per-image GEMM being only 64 wide.
pub const PER_IMAGE_MIN_PLANE: usize = 256;

impl Plan {
    pub(super) fn new(geo: &ConvGeometry) -> Self {
        let bn = block_images(geo.patch_len(), geo.out_plane(), geo.n);
        let blocks = geo.n.div_ceil(bn);
        Self {
            bn,
            blocks,
            sub: if geo.out_plane() >= PER_IMAGE_MIN_PLANE {
                1
            } else {
                bn
            },
            // A lone small block (batch-1 inference) stays on one thread: a fork/join
            // costs more than the im2col of LeNet-5's layers.
            inner_parallel: blocks < 2 && geo.patch_len() * geo.out_plane() * bn >= INNER_PAR_MIN,
        }
    }

    /// GEMM options: one thread inside parallel blocks, the pool otherwise.
    pub(super) fn gemm(&self, trans_a: bool, trans_b: bool) -> GemmParams {
        GemmParams::with_trans(trans_a, trans_b).threads(if self.inner_parallel { 0 } else { 1 })
    }
}

/// Column-matrix size (floats) below which a single block runs on one thread.
const INNER_PAR_MIN: usize = 1 << 16;

std::thread_local! {
    /// Per-thread scratch for im2col columns and GEMM temporaries, reused across calls so
    /// that hot loops neither allocate nor page-fault fresh memory.
    static SCRATCH: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Runs `f` on `len` floats of this thread's scratch (contents unspecified: callers write
/// before reading). Re-entrant calls (a rayon worker stealing another block while waiting)
/// get a fresh allocation.
pub(super) fn with_scratch<R>(len: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    SCRATCH.with(|s| match s.try_borrow_mut() {
        Ok(mut v) => {
            if v.len() < len {
                v.resize(len, 0.0);
            }
            f(&mut v[..len])
        }
        Err(_) => f(&mut vec![0.0; len]),
    })
}
