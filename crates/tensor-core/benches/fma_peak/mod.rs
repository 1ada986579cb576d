//! The measured FMA peak of this machine, shared by the convolution benches: CPU time of
//! the process, and loops of 12 independent FMAs per vector width.

use tensor_core::dispatch::F32Path;

/// CPU time of the whole process (every thread), in seconds.
pub fn cpu_seconds() -> f64 {
    tensor_core::testing::process_cpu_time().as_secs_f64()
}

/// Defines `$name(n)`: `n` iterations of 12 independent FMAs on registers of `$class`
/// (`ymm_reg`, `zmm_reg`), zeroed first by `$zero`; unsafe: the CPU must have `$feat`.
macro_rules! fma_loop {
    ($name:ident, $feat:literal, $class:ident, $zero:literal) => {
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = $feat)]
        unsafe fn $name(n: u64) {
            // SAFETY: the caller checked `$feat`; the asm only touches its own registers.
            unsafe { std::arch::asm!(
            concat!($zero, " {a0}, {a0}, {a0}"), concat!($zero, " {a1}, {a1}, {a1}"),
            concat!($zero, " {a2}, {a2}, {a2}"), concat!($zero, " {a3}, {a3}, {a3}"),
            concat!($zero, " {a4}, {a4}, {a4}"), concat!($zero, " {a5}, {a5}, {a5}"),
            concat!($zero, " {a6}, {a6}, {a6}"), concat!($zero, " {a7}, {a7}, {a7}"),
            concat!($zero, " {a8}, {a8}, {a8}"), concat!($zero, " {a9}, {a9}, {a9}"),
            concat!($zero, " {a10}, {a10}, {a10}"), concat!($zero, " {a11}, {a11}, {a11}"),
            concat!($zero, " {x}, {x}, {x}"), concat!($zero, " {y}, {y}, {y}"),
            "2:",
            "vfmadd231ps {a0}, {x}, {y}", "vfmadd231ps {a1}, {x}, {y}",
            "vfmadd231ps {a2}, {x}, {y}", "vfmadd231ps {a3}, {x}, {y}",
            "vfmadd231ps {a4}, {x}, {y}", "vfmadd231ps {a5}, {x}, {y}",
            "vfmadd231ps {a6}, {x}, {y}", "vfmadd231ps {a7}, {x}, {y}",
            "vfmadd231ps {a8}, {x}, {y}", "vfmadd231ps {a9}, {x}, {y}",
            "vfmadd231ps {a10}, {x}, {y}", "vfmadd231ps {a11}, {x}, {y}",
            "dec {n}",
            "jnz 2b",
            n = inout(reg) n => _,
            a0 = out($class) _, a1 = out($class) _, a2 = out($class) _, a3 = out($class) _,
            a4 = out($class) _, a5 = out($class) _, a6 = out($class) _, a7 = out($class) _,
            a8 = out($class) _, a9 = out($class) _, a10 = out($class) _, a11 = out($class) _,
            x = out($class) _, y = out($class) _,
            options(nostack),
        ) }
        }
    };
}

fma_loop!(fma256, "avx2,fma", ymm_reg, "vxorps");
fma_loop!(fma512, "avx512f", zmm_reg, "vpxord");

/// FMAs per CPU-second of `bits`-wide vectors (256 or 512) in a loop of 12 independent
/// accumulators (enough to cover the 4-cycle latency of two FMA pipes), best of three runs,
/// or `None` if the CPU lacks the instructions (AVX2 + FMA, AVX-512 F).
fn fma_per_cpu_second(bits: u32) -> Option<f64> {
    #[cfg(target_arch = "x86_64")]
    {
        let supported = match bits {
            256 => F32Path::Avx2Fma.is_supported(),
            _ => F32Path::Avx512F.is_supported(),
        };
        if !supported {
            return None;
        }
        let iters: u64 = 50_000_000;
        let mut best = 0.0f64;
        for _ in 0..3 {
            let t0 = cpu_seconds();
            let n = iters;
            // SAFETY: the instructions are present (checked above).
            unsafe { if bits == 256 { fma256(n) } else { fma512(n) } }
            best = best.max(iters as f64 * 12.0 / (cpu_seconds() - t0));
        }
        Some(best)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = bits;
        None
    }
}

/// The measured per-core peak in GFLOP/s of `bits`-wide FMAs (2 FLOP x lanes per FMA),
/// printed with the clock it implies.
pub fn measured_peak(bits: u32) -> Option<f64> {
    let fma = fma_per_cpu_second(bits)?;
    let lanes = f64::from(bits / 32);
    let peak = fma * 2.0 * lanes / 1e9;
    println!(
        "# {bits}-bit FMA loop (12 accumulators): {:.2} G FMA per CPU-second = {:.2} GHz at \
         2 FMA/cycle; peak {peak:.1} GFLOP/s per core",
        fma / 1e9,
        fma / 2.0 / 1e9
    );
    Some(peak)
}
