//! Energy per inference, priced with the 45 nm figures Han et al. use (Horowitz, "Computing's
//! energy problem", ISSCC 2014): a 32-bit DRAM read 640 pJ, a 32-bit SRAM read 5 pJ, a 32-bit
//! float multiply 3.7 pJ and add 0.9 pJ, an 8-bit integer multiply 0.2 pJ and add 0.03 pJ.
//!
//! The estimate counts what compression changes: every stored weight byte read once per
//! inference (in 32-bit words, from DRAM or on-chip SRAM) and one multiply and one add per
//! multiply-accumulate. Activations, control and the codebook lookup are not priced. A model
//! is placed in SRAM when its stored bytes fit [`SRAM_BYTES`]; both extremes (all from DRAM,
//! all from SRAM) are given beside the placed figure, so the assumption can be changed by
//! reading another column.
//!
//! ```
//! use pipeline::report::energy::{Costs, price};
//! let e = price(&Costs::HOROWITZ_45NM, 1_066_440, 266_200, false);
//! assert!(!e.in_sram); // 1 MB of weights is over the 512 KiB of SRAM assumed
//! assert!((e.memory_pj - 266_610.0 * 640.0).abs() < 1.0);
//! ```

use nn::{Model, Result};
use serde::Serialize;

/// On-chip SRAM assumed for placement: 512 KiB (a typical L2 cache of a CPU core).
pub const SRAM_BYTES: u64 = 512 * 1024;

/// Energy of the elementary operations, in picojoules.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Costs {
    /// One 32-bit DRAM read.
    pub dram_read_32: f64,
    /// One 32-bit SRAM read.
    pub sram_read_32: f64,
    /// One 32-bit float multiply.
    pub f32_mul: f64,
    /// One 32-bit float add.
    pub f32_add: f64,
    /// One 8-bit integer multiply.
    pub int8_mul: f64,
    /// One 8-bit integer add.
    pub int8_add: f64,
}

impl Costs {
    /// Horowitz (ISSCC 2014), 45 nm, as Deep Compression and EIE quote them.
    pub const HOROWITZ_45NM: Costs = Costs {
        dram_read_32: 640.0,
        sram_read_32: 5.0,
        f32_mul: 3.7,
        f32_add: 0.9,
        int8_mul: 0.2,
        int8_add: 0.03,
    };
}

/// One model's energy per inference.
#[derive(Clone, Debug, Serialize)]
pub struct Energy {
    /// Stored weight bytes read per inference.
    pub weight_bytes: u64,
    /// Multiply-accumulates per inference.
    pub macs: u64,
    /// Whether the weights fit [`SRAM_BYTES`] (the placed figure reads them from SRAM).
    pub in_sram: bool,
    /// Weight reads where placed, pJ.
    pub memory_pj: f64,
    /// Multiplies and adds (f32), pJ.
    pub arithmetic_pj: f64,
    /// `memory_pj + arithmetic_pj`.
    pub total_pj: f64,
    /// Total with every weight read from DRAM, pJ.
    pub total_all_dram_pj: f64,
    /// Total with every weight read from SRAM, pJ.
    pub total_all_sram_pj: f64,
}

/// The energy of reading `weight_bytes` and computing `macs` f32 multiply-accumulates
/// (`int8`: 8-bit integer arithmetic instead).
pub fn price(costs: &Costs, weight_bytes: u64, macs: u64, int8: bool) -> Energy {
    let words = weight_bytes.div_ceil(4) as f64;
    let arithmetic_pj = macs as f64
        * if int8 {
            costs.int8_mul + costs.int8_add
        } else {
            costs.f32_mul + costs.f32_add
        };
    let in_sram = weight_bytes <= SRAM_BYTES;
    let dram = words * costs.dram_read_32;
    let sram = words * costs.sram_read_32;
    let memory_pj = if in_sram { sram } else { dram };
    Energy {
        weight_bytes,
        macs,
        in_sram,
        memory_pj,
        arithmetic_pj,
        total_pj: memory_pj + arithmetic_pj,
        total_all_dram_pj: dram + arithmetic_pj,
        total_all_sram_pj: sram + arithmetic_pj,
    }
}

/// Before and after compression.
#[derive(Clone, Debug, Serialize)]
pub struct EnergyReport {
    /// The assumption, in words.
    pub assumption: String,
    /// The prices used.
    pub costs: Costs,
    /// The input model (dense f32).
    pub before: Energy,
    /// The written model (its file bytes, its multiply-accumulates).
    pub after: Energy,
    /// `before.total_pj / after.total_pj`.
    pub ratio: f64,
}

/// Energy per inference of `input` (its dense f32 bytes) and of `output` (the bytes of its
/// file, headers included), both with f32 arithmetic.
pub fn estimate(
    input: &Model,
    input_bytes: u64,
    output: &Model,
    output_bytes: u64,
) -> Result<EnergyReport> {
    let costs = Costs::HOROWITZ_45NM;
    let before = price(&costs, input_bytes, input.macs_per_sample()?, false);
    let after = price(&costs, output_bytes, output.macs_per_sample()?, false);
    Ok(EnergyReport {
        assumption: format!(
            "45 nm prices (Horowitz, ISSCC 2014); per inference, every stored weight byte read \
             once in 32-bit words, from on-chip SRAM when the model fits {} KiB, else from \
             DRAM; one f32 multiply and add per multiply-accumulate; activations not counted",
            SRAM_BYTES / 1024
        ),
        costs,
        ratio: before.total_pj / after.total_pj.max(f64::MIN_POSITIVE),
        before,
        after,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placement_follows_the_sram_size_and_prices_add_up() {
        let c = Costs::HOROWITZ_45NM;
        let small = price(&c, SRAM_BYTES, 1000, false);
        assert!(small.in_sram);
        assert_eq!(small.memory_pj, (SRAM_BYTES / 4) as f64 * 5.0);
        assert!((small.arithmetic_pj - 1000.0 * 4.6).abs() < 1e-9);
        let big = price(&c, SRAM_BYTES + 1, 1000, false);
        assert!(!big.in_sram);
        assert_eq!(big.memory_pj, (SRAM_BYTES / 4 + 1) as f64 * 640.0);
        assert_eq!(big.total_pj, big.total_all_dram_pj);
        assert_eq!(small.total_pj, small.total_all_sram_pj);
        let int8 = price(&c, 4, 100, true);
        assert!((int8.arithmetic_pj - 23.0).abs() < 1e-9);
    }
}
