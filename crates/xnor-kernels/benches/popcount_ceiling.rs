//! The measured ceiling of the binary GEMM against f32 on this CPU: register-resident
//! throughput loops of each popcount scheme, in binary multiply-accumulates per cycle, beside
//! the f32 FMA peak and faer's and the binary kernel's measured rates on the criterion shapes.
//!
//! `cargo bench -p xnor-kernels --bench popcount_ceiling` prints, on one thread:
//! - the clock, from a chain of dependent `add`s (one cycle each: iterations x adds per
//!   CPU-second is the clock the core runs at, boost included);
//! - `f32 fma`: ten independent `vfmadd231ps ymm` (f32 MACs per cycle; 16 at two FMA pipes);
//! - `f32 fma zmm` (on AVX-512 F CPUs, where faer runs 512-bit FMAs): ten independent
//!   `vfmadd231ps zmm` (32 per cycle at two 512-bit FMA pipes); the ratios are then against it;
//! - `vpopcntq zmm`, `vpaddq zmm` alone (VPOPCNTDQ CPUs): how many 512-bit pipes take each;
//! - `nibble table`: the AVX2 kernel's step per (row, column) pair and 256-bit vector
//!   (`vpxor`, `vpsrlw`, two `vpand`, two `vpshufb`, two `vpaddb`), four independent pairs;
//! - `nibble planes`: operands stored pre-split into low and high nibble planes (`vpxor`
//!   per plane, two `vpshufb`, two `vpaddb`), four independent pairs;
//! - `harley-seal 16`: XOR then carry-save adders over 16 vectors per pair, the nibble table
//!   on the `eights` only (Muła, Kurz and Lemire, 2018), two independent pairs, operands
//!   reloaded from L1 each round;
//! - `scalar popcnt`: per 64-bit word pair `mov` (load), `xor` (register), `popcnt`, `add`;
//! - mixes: each vector loop with `s` scalar word pairs interleaved per four vector pairs;
//! - `avx512 vpopcntdq` (on CPUs that have it; skipped with a note elsewhere): `vpxorq`,
//!   `vpopcntq`, `vpaddq` per 512-bit pair-vector, four independent pairs;
//! - `amx int8` (CPUs with AMX-TILE and AMX-INT8, where Linux grants the tile state):
//!   four independent `tdpbssd` on resident tiles, int8 MACs per cycle, which on ±1 bytes are
//!   binary MACs: the ceiling of a binary GEMM run on AMX instead of XNOR + popcount;
//! - `f32 faer` and `binary <path>`: the library kernels on the criterion bench's shapes
//!   (`256 x 512 x K`), one thread, MACs per CPU-cycle.
//!
//! Binary MACs: a 256-bit vector pair is 256, a word pair 64. The best ratio this CPU allows
//! is the best binary MACs per cycle over the f32 peak (or over faer's measured rate).
//! CPU time is the process's (`CLOCK_PROCESS_CPUTIME_ID`), so a shared machine slows the wall
//! clock but not these rates (up to SMT and cache interference).

use std::hint::black_box;

use tensor_core::dispatch::{KernelPath, PopcountPath};
use tensor_core::gemm::{GemmParams, gemm};
use tensor_core::rng::Rng;
use xnor_kernels::{
    AMX_PATH_NAME, AmxUse, BinaryGemmParams, PackedRows, amx_usable, binary_gemm_with,
};

/// CPU time of the whole process, in seconds.
fn cpu_now() -> f64 {
    tensor_core::testing::process_cpu_time().as_secs_f64()
}

/// The best of `reps` runs of `f`, in work units per CPU-second (`f` returns its units).
fn best_rate(reps: usize, mut f: impl FnMut() -> f64) -> f64 {
    (0..reps)
        .map(|_| {
            let t0 = cpu_now();
            let units = f();
            units / (cpu_now() - t0)
        })
        .fold(0.0, f64::max)
}

/// Loop iterations of each register-resident measurement (about a millisecond each).
const ITERS: u64 = 250_000;

#[cfg(target_arch = "x86_64")]
mod loops {
    //! The throughput loops, in `asm!` so that the instruction mix is exactly the one named
    //! (a compiler would hoist the loop-invariant XOR of register operands).

    use std::arch::asm;
    use std::arch::x86_64::*;

    /// `ITERS` x 16 dependent `add`s of a register (not an immediate: Golden Cove folds
    /// `add reg, imm` chains at rename, and the immediate loop read 21 GHz on a Xeon of that
    /// core): returns cycles elapsed (16 per iteration).
    pub fn clock(iters: u64) -> f64 {
        let mut x = 0u64;
        let one = std::hint::black_box(1u64);
        // SAFETY: integer registers only.
        unsafe {
            asm!(
                "2:",
                "add {x}, {o}", "add {x}, {o}", "add {x}, {o}", "add {x}, {o}",
                "add {x}, {o}", "add {x}, {o}", "add {x}, {o}", "add {x}, {o}",
                "add {x}, {o}", "add {x}, {o}", "add {x}, {o}", "add {x}, {o}",
                "add {x}, {o}", "add {x}, {o}", "add {x}, {o}", "add {x}, {o}",
                "dec {n}", "jnz 2b",
                n = inout(reg) iters => _, x = inout(reg) x, o = in(reg) one,
                options(nostack, nomem),
            );
        }
        std::hint::black_box(x);
        iters as f64 * 16.0
    }

    /// `"$op {x:m}, {y:m}, {z:m}"`: one instruction on the operands `x`, `y`, `z` of a register
    /// class, printed with the modifier `m` (`y` for ymm, `z` for zmm).
    macro_rules! op3 {
        ($op:literal, $m:literal, $x:literal, $y:literal, $z:literal) => {
            concat!(
                $op, " {", $x, ":", $m, "}, {", $y, ":", $m, "}, {", $z, ":", $m, "}"
            )
        };
    }

    /// Ten independent `vfmadd231ps` on `$class` registers per iteration (modifier `$m`),
    /// `$lanes` f32 lanes each: returns f32 MACs.
    macro_rules! fma_loop {
        ($(#[$doc:meta])* $name:ident, $feature:literal, $class:ident, $m:literal, $lanes:literal) => {
            $(#[$doc])*
            #[target_feature(enable = $feature)]
            pub unsafe fn $name(iters: u64) -> f64 {
                // SAFETY: the caller checked the features; the asm touches only its operands.
                unsafe {
                    asm!(
                        op3!("vxorps", $m, "a0", "a0", "a0"), op3!("vxorps", $m, "a1", "a1", "a1"),
                        op3!("vxorps", $m, "a2", "a2", "a2"), op3!("vxorps", $m, "a3", "a3", "a3"),
                        op3!("vxorps", $m, "a4", "a4", "a4"), op3!("vxorps", $m, "a5", "a5", "a5"),
                        op3!("vxorps", $m, "a6", "a6", "a6"), op3!("vxorps", $m, "a7", "a7", "a7"),
                        op3!("vxorps", $m, "a8", "a8", "a8"), op3!("vxorps", $m, "a9", "a9", "a9"),
                        op3!("vxorps", $m, "s", "s", "s"), op3!("vxorps", $m, "t", "t", "t"),
                        "2:",
                        op3!("vfmadd231ps", $m, "a0", "s", "t"), op3!("vfmadd231ps", $m, "a1", "s", "t"),
                        op3!("vfmadd231ps", $m, "a2", "s", "t"), op3!("vfmadd231ps", $m, "a3", "s", "t"),
                        op3!("vfmadd231ps", $m, "a4", "s", "t"), op3!("vfmadd231ps", $m, "a5", "s", "t"),
                        op3!("vfmadd231ps", $m, "a6", "s", "t"), op3!("vfmadd231ps", $m, "a7", "s", "t"),
                        op3!("vfmadd231ps", $m, "a8", "s", "t"), op3!("vfmadd231ps", $m, "a9", "s", "t"),
                        "dec {n}", "jnz 2b",
                        n = inout(reg) iters => _,
                        a0 = out($class) _, a1 = out($class) _, a2 = out($class) _,
                        a3 = out($class) _, a4 = out($class) _, a5 = out($class) _,
                        a6 = out($class) _, a7 = out($class) _, a8 = out($class) _,
                        a9 = out($class) _, s = out($class) _, t = out($class) _,
                        options(nostack, nomem),
                    );
                }
                iters as f64 * 10.0 * $lanes
            }
        };
    }

    fma_loop!(
        /// Ten independent 256-bit FMAs per iteration: returns f32 MACs (80 per iteration).
        ///
        /// # Safety
        /// The CPU has AVX2 and FMA.
        fma, "avx2,fma", ymm_reg, "y", 8.0
    );
    fma_loop!(
        /// Ten independent 512-bit FMAs per iteration: returns f32 MACs (160 per iteration),
        /// the peak of an AVX-512 f32 GEMM (faer's on such a CPU).
        ///
        /// # Safety
        /// The CPU has AVX-512 F.
        fma512, "avx512f", zmm_reg, "z", 16.0
    );

    /// Eight independent instructions per iteration, `$line!("a0")` .. `$line!("a7")` on
    /// registers of `$class` (the source `s` left as it is: the values do not matter):
    /// returns instructions, whose rate per cycle says how many pipes take the instruction.
    macro_rules! pipes_loop {
        ($name:ident, $feature:literal, $class:ident, $line:ident) => {
            /// # Safety
            /// The CPU has the features of the loop's `target_feature`.
            #[target_feature(enable = $feature)]
            pub unsafe fn $name(iters: u64) -> f64 {
                // SAFETY: the caller checked the features; the asm touches only its operands.
                unsafe {
                    asm!(
                        "2:",
                        $line!("a0"), $line!("a1"), $line!("a2"), $line!("a3"),
                        $line!("a4"), $line!("a5"), $line!("a6"), $line!("a7"),
                        "dec {n}", "jnz 2b",
                        n = inout(reg) iters => _,
                        a0 = out($class) _, a1 = out($class) _, a2 = out($class) _,
                        a3 = out($class) _, a4 = out($class) _, a5 = out($class) _,
                        a6 = out($class) _, a7 = out($class) _, s = out($class) _,
                        options(nostack, nomem),
                    );
                }
                iters as f64 * 8.0
            }
        };
    }

    /// `$op r, r, s` on ymm registers.
    macro_rules! ymm3 {
        ($op:literal, $r:literal) => {
            op3!($op, "y", $r, $r, "s")
        };
    }
    macro_rules! vpaddb_line {
        ($r:literal) => {
            ymm3!("vpaddb", $r)
        };
    }
    macro_rules! vpxor_line {
        ($r:literal) => {
            ymm3!("vpxor", $r)
        };
    }
    macro_rules! vpshufb_line {
        ($r:literal) => {
            ymm3!("vpshufb", $r)
        };
    }
    macro_rules! vpaddq_zmm_line {
        ($r:literal) => {
            op3!("vpaddq", "z", $r, $r, "s")
        };
    }
    macro_rules! vpopcntq_zmm_line {
        ($r:literal) => {
            concat!("vpopcntq {", $r, ":z}, {s:z}")
        };
    }

    pipes_loop!(vpaddb, "avx2", ymm_reg, vpaddb_line);
    pipes_loop!(vpxor, "avx2", ymm_reg, vpxor_line);
    pipes_loop!(vpshufb, "avx2", ymm_reg, vpshufb_line);
    pipes_loop!(vpaddq_zmm, "avx512f", zmm_reg, vpaddq_zmm_line);
    pipes_loop!(
        vpopcntq_zmm,
        "avx512f,avx512vpopcntdq",
        zmm_reg,
        vpopcntq_zmm_line
    );

    /// One pair's nibble-table step as `tile_avx2` does it: `x = a ^ b`, `acc += T[x & 15] +
    /// T[(x >> 4) & 15]` (ymm15 the table, ymm14 the nibble mask, ymm12/13 the operands).
    macro_rules! nibble_step {
        ($acc:literal, $x:literal, $h:literal) => {
            concat!(
                "vpxor ymm",
                $x,
                ", ymm12, ymm13\n",
                "vpsrlw ymm",
                $h,
                ", ymm",
                $x,
                ", 4\n",
                "vpand ymm",
                $x,
                ", ymm",
                $x,
                ", ymm14\n",
                "vpand ymm",
                $h,
                ", ymm",
                $h,
                ", ymm14\n",
                "vpshufb ymm",
                $x,
                ", ymm15, ymm",
                $x,
                "\n",
                "vpshufb ymm",
                $h,
                ", ymm15, ymm",
                $h,
                "\n",
                "vpaddb ymm",
                $x,
                ", ymm",
                $x,
                ", ymm",
                $h,
                "\n",
                "vpaddb ymm",
                $acc,
                ", ymm",
                $acc,
                ", ymm",
                $x,
                "\n",
            )
        };
    }

    /// One pair's step on pre-split nibble planes: `acc += T[alo ^ blo] + T[ahi ^ bhi]`.
    macro_rules! planes_step {
        ($acc:literal, $x:literal, $h:literal) => {
            concat!(
                "vpxor ymm",
                $x,
                ", ymm12, ymm13\n",
                "vpxor ymm",
                $h,
                ", ymm13, ymm12\n",
                "vpshufb ymm",
                $x,
                ", ymm15, ymm",
                $x,
                "\n",
                "vpshufb ymm",
                $h,
                ", ymm15, ymm",
                $h,
                "\n",
                "vpaddb ymm",
                $x,
                ", ymm",
                $x,
                ", ymm",
                $h,
                "\n",
                "vpaddb ymm",
                $acc,
                ", ymm",
                $acc,
                ", ymm",
                $x,
                "\n",
            )
        };
    }

    /// One scalar word pair: the word of `B` loaded, XORed with `A`'s word (in a register),
    /// popcounted, added to an accumulator.
    macro_rules! scalar_step {
        (($off:literal, $acc:literal)) => {
            concat!(
                "mov {t",
                $acc,
                "}, [{p} + ",
                $off,
                "]\n",
                "xor {t",
                $acc,
                "}, {a}\n",
                "popcnt {t",
                $acc,
                "}, {t",
                $acc,
                "}\n",
                "add {s",
                $acc,
                "}, {t",
                $acc,
                "}\n",
            )
        };
    }

    /// Four independent vector pairs of `$step` and `scalar` word pairs per iteration;
    /// returns binary MACs. `words` is a 64-word buffer the scalar steps read.
    macro_rules! vector_loop {
        ($name:ident, $step:ident, $($scalar:tt)*) => {
            /// # Safety
            /// The CPU has AVX2 and POPCNT.
            #[target_feature(enable = "avx2,popcnt")]
            pub unsafe fn $name(iters: u64, words: &[u64; 64]) -> f64 {
                let a = words[0];
                let (mut s0, mut s1, mut s2, mut s3) = (0u64, 0u64, 0u64, 0u64);
                let scalar: &[&str] = &[$(stringify!($scalar)),*];
                let scalar_words = scalar.len() as f64;
                // SAFETY: the caller checked the features; memory operands read `words`.
                unsafe {
                    asm!(
                        "vpxor ymm0, ymm0, ymm0", "vpxor ymm1, ymm1, ymm1",
                        "vpxor ymm2, ymm2, ymm2", "vpxor ymm3, ymm3, ymm3",
                        "vpcmpeqb ymm12, ymm12, ymm12", "vpxor ymm13, ymm13, ymm13",
                        "vpxor ymm15, ymm15, ymm15",
                        "vpcmpeqb ymm14, ymm14, ymm14", "vpsrlw ymm14, ymm14, 12",
                        "2:",
                        $step!("0", "4", "5"),
                        $step!("1", "6", "7"),
                        $step!("2", "8", "9"),
                        $step!("3", "10", "11"),
                        $(scalar_step!($scalar),)*
                        // Every operand named once (the loops without scalar steps).
                        "# {p} {a} {t0} {t1} {t2} {t3} {s0} {s1} {s2} {s3}",
                        "dec {n}", "jnz 2b",
                        n = inout(reg) iters => _,
                        p = in(reg) words.as_ptr(),
                        a = in(reg) a,
                        t0 = out(reg) _, t1 = out(reg) _, t2 = out(reg) _, t3 = out(reg) _,
                        s0 = inout(reg) s0, s1 = inout(reg) s1,
                        s2 = inout(reg) s2, s3 = inout(reg) s3,
                        out("ymm0") _, out("ymm1") _, out("ymm2") _, out("ymm3") _,
                        out("ymm4") _, out("ymm5") _, out("ymm6") _, out("ymm7") _,
                        out("ymm8") _, out("ymm9") _, out("ymm10") _, out("ymm11") _,
                        out("ymm12") _, out("ymm13") _, out("ymm14") _, out("ymm15") _,
                        options(nostack, readonly),
                    );
                }
                std::hint::black_box((s0, s1, s2, s3));
                iters as f64 * (4.0 * 256.0 + 64.0 * scalar_words)
            }
        };
    }

    vector_loop!(nibble, nibble_step,);
    vector_loop!(nibble_s1, nibble_step, ("0", "0"));
    vector_loop!(nibble_s2, nibble_step, ("0", "0")("8", "1"));
    vector_loop!(
        nibble_s4,
        nibble_step,
        ("0", "0")("8", "1")("16", "2")("24", "3")
    );
    vector_loop!(
        nibble_s8,
        nibble_step,
        ("0", "0")("8", "1")("16", "2")("24", "3")("32", "0")("40", "1")("48", "2")("56", "3")
    );
    vector_loop!(planes, planes_step,);
    vector_loop!(planes_s1, planes_step, ("0", "0"));
    vector_loop!(planes_s2, planes_step, ("0", "0")("8", "1"));
    vector_loop!(
        planes_s4,
        planes_step,
        ("0", "0")("8", "1")("16", "2")("24", "3")
    );
    vector_loop!(
        planes_s8,
        planes_step,
        ("0", "0")("8", "1")("16", "2")("24", "3")("32", "0")("40", "1")("48", "2")("56", "3")
    );

    /// Scalar `popcnt` alone: 16 word pairs per iteration over four accumulators.
    ///
    /// # Safety
    /// The CPU has POPCNT.
    #[target_feature(enable = "popcnt")]
    pub unsafe fn scalar(iters: u64, words: &[u64; 64]) -> f64 {
        let a = words[0];
        let (mut s0, mut s1, mut s2, mut s3) = (0u64, 0u64, 0u64, 0u64);
        macro_rules! four {
            ($o0:literal, $o1:literal, $o2:literal, $o3:literal) => {
                concat!(
                    "mov {t0}, [{p} + ",
                    $o0,
                    "]\n",
                    "xor {t0}, {a}\n",
                    "popcnt {t0}, {t0}\n",
                    "add {s0}, {t0}\n",
                    "mov {t1}, [{p} + ",
                    $o1,
                    "]\n",
                    "xor {t1}, {a}\n",
                    "popcnt {t1}, {t1}\n",
                    "add {s1}, {t1}\n",
                    "mov {t2}, [{p} + ",
                    $o2,
                    "]\n",
                    "xor {t2}, {a}\n",
                    "popcnt {t2}, {t2}\n",
                    "add {s2}, {t2}\n",
                    "mov {t3}, [{p} + ",
                    $o3,
                    "]\n",
                    "xor {t3}, {a}\n",
                    "popcnt {t3}, {t3}\n",
                    "add {s3}, {t3}\n",
                )
            };
        }
        // SAFETY: the caller checked POPCNT; memory operands read `words`.
        unsafe {
            asm!(
                "2:",
                four!("0", "8", "16", "24"),
                four!("32", "40", "48", "56"),
                four!("64", "72", "80", "88"),
                four!("96", "104", "112", "120"),
                "dec {n}", "jnz 2b",
                n = inout(reg) iters => _, p = in(reg) words.as_ptr(), a = in(reg) a,
                t0 = out(reg) _, t1 = out(reg) _, t2 = out(reg) _, t3 = out(reg) _,
                s0 = inout(reg) s0, s1 = inout(reg) s1, s2 = inout(reg) s2, s3 = inout(reg) s3,
                options(nostack, readonly),
            );
        }
        std::hint::black_box((s0, s1, s2, s3));
        iters as f64 * 16.0 * 64.0
    }

    /// AVX-512 VPOPCNTDQ: `vpxorq`, `vpopcntq`, `vpaddq` per 512-bit pair-vector, four
    /// independent pairs per iteration: returns binary MACs (4 x 512 per iteration).
    ///
    /// # Safety
    /// The CPU has AVX-512 F and VPOPCNTDQ.
    #[target_feature(enable = "avx512f,avx512vpopcntdq")]
    pub unsafe fn vpopcntdq(iters: u64) -> f64 {
        // SAFETY: the caller checked the features; the asm touches only named registers.
        unsafe {
            asm!(
                "vpxorq zmm0, zmm0, zmm0", "vpxorq zmm1, zmm1, zmm1",
                "vpxorq zmm2, zmm2, zmm2", "vpxorq zmm3, zmm3, zmm3",
                "vpternlogq zmm12, zmm12, zmm12, 0xff", "vpxorq zmm13, zmm13, zmm13",
                "2:",
                "vpxorq zmm4, zmm12, zmm13", "vpopcntq zmm4, zmm4", "vpaddq zmm0, zmm0, zmm4",
                "vpxorq zmm5, zmm12, zmm13", "vpopcntq zmm5, zmm5", "vpaddq zmm1, zmm1, zmm5",
                "vpxorq zmm6, zmm12, zmm13", "vpopcntq zmm6, zmm6", "vpaddq zmm2, zmm2, zmm6",
                "vpxorq zmm7, zmm12, zmm13", "vpopcntq zmm7, zmm7", "vpaddq zmm3, zmm3, zmm7",
                "dec {n}", "jnz 2b",
                n = inout(reg) iters => _,
                out("zmm0") _, out("zmm1") _, out("zmm2") _, out("zmm3") _,
                out("zmm4") _, out("zmm5") _, out("zmm6") _, out("zmm7") _,
                out("zmm12") _, out("zmm13") _,
                options(nostack, nomem),
            );
        }
        iters as f64 * 4.0 * 512.0
    }

    /// AMX-INT8: four independent `tdpbssd` (a 16 x 64 int8 tile times a 64 x 16 one into a
    /// 16 x 16 i32 tile, 16,384 MACs) per iteration on tiles loaded once: returns int8 MACs,
    /// which on ±1 operands are binary MACs (the ceiling of a binary GEMM run as int8 on
    /// AMX rather than XNOR + popcount).
    ///
    /// # Safety
    /// `xnor_kernels::amx_usable()` returned true (it requests the OS permission).
    pub unsafe fn amx_int8(iters: u64) -> f64 {
        // Palette 1; tiles 0-7 of 16 rows x 64 bytes.
        #[repr(C, align(64))]
        struct Config([u8; 64]);
        let mut config = Config([0; 64]);
        config.0[0] = 1;
        for t in 0..8 {
            config.0[16 + 2 * t] = 64;
            config.0[48 + t] = 16;
        }
        let data = [1i8; 1024];
        // SAFETY: the caller checked AMX and the OS permission; the tile loads read the
        // 1,024 bytes of `data` (16 rows of 64, stride 64); the tiles are released at the end.
        unsafe {
            asm!(
                "ldtilecfg [{cfg}]",
                "tilezero tmm0", "tilezero tmm1", "tilezero tmm2", "tilezero tmm3",
                "tileloadd tmm4, [{d} + {s}*1]", "tileloadd tmm5, [{d} + {s}*1]",
                "tileloadd tmm6, [{d} + {s}*1]", "tileloadd tmm7, [{d} + {s}*1]",
                "2:",
                "tdpbssd tmm0, tmm4, tmm6", "tdpbssd tmm1, tmm4, tmm7",
                "tdpbssd tmm2, tmm5, tmm6", "tdpbssd tmm3, tmm5, tmm7",
                "dec {n}", "jnz 2b",
                "tilerelease",
                cfg = in(reg) config.0.as_ptr(), d = in(reg) data.as_ptr(), s = in(reg) 64usize,
                n = inout(reg) iters => _,
                options(nostack, readonly),
            );
        }
        iters as f64 * 4.0 * 16384.0
    }

    /// Carry-save adder: `(high, low)` bits of `a + b + c` per bit position.
    #[target_feature(enable = "avx2")]
    #[inline]
    fn csa(a: __m256i, b: __m256i, c: __m256i) -> (__m256i, __m256i) {
        let u = _mm256_xor_si256(a, b);
        (
            _mm256_or_si256(_mm256_and_si256(a, b), _mm256_and_si256(u, c)),
            _mm256_xor_si256(u, c),
        )
    }

    /// Per-byte popcount by the nibble table.
    #[target_feature(enable = "avx2")]
    #[inline]
    fn bytes_popcount(x: __m256i) -> __m256i {
        #[rustfmt::skip]
        let table = _mm256_setr_epi8(
            0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4,
            0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4,
        );
        let m = _mm256_set1_epi8(0x0f);
        _mm256_add_epi8(
            _mm256_shuffle_epi8(table, _mm256_and_si256(x, m)),
            _mm256_shuffle_epi8(table, _mm256_and_si256(_mm256_srli_epi16::<4>(x), m)),
        )
    }

    /// Harley-Seal state of one (row, column) pair.
    #[derive(Clone, Copy)]
    struct Hs {
        ones: __m256i,
        twos: __m256i,
        fours: __m256i,
        eights: __m256i,
        total: __m256i,
    }

    /// 16 vectors of `a ^ b` into `s` by carry-save adders; the `eights` popcounted.
    #[target_feature(enable = "avx2")]
    #[inline]
    fn hs16(s: &mut Hs, a: &[__m256i; 16], b: &[__m256i; 16]) {
        let d = |k: usize| _mm256_xor_si256(a[k], b[k]);
        let (twos_a, ones) = csa(s.ones, d(0), d(1));
        let (twos_b, ones) = csa(ones, d(2), d(3));
        let (fours_a, twos) = csa(s.twos, twos_a, twos_b);
        let (twos_a, ones) = csa(ones, d(4), d(5));
        let (twos_b, ones) = csa(ones, d(6), d(7));
        let (fours_b, twos) = csa(twos, twos_a, twos_b);
        let (eights_a, fours) = csa(s.fours, fours_a, fours_b);
        let (twos_a, ones) = csa(ones, d(8), d(9));
        let (twos_b, ones) = csa(ones, d(10), d(11));
        let (fours_a, twos) = csa(twos, twos_a, twos_b);
        let (twos_a, ones) = csa(ones, d(12), d(13));
        let (twos_b, ones) = csa(ones, d(14), d(15));
        let (fours_b, twos) = csa(twos, twos_a, twos_b);
        let (eights_b, fours) = csa(fours, fours_a, fours_b);
        let (sixteens, eights) = csa(s.eights, eights_a, eights_b);
        // A kernel would sum the bytes of several rounds before `vpsadbw`; here every
        // round, the worst case (2 of about 100 uops per round).
        let c = bytes_popcount(sixteens);
        s.total = _mm256_add_epi64(s.total, _mm256_sad_epu8(c, _mm256_setzero_si256()));
        (s.ones, s.twos, s.fours, s.eights) = (ones, twos, fours, eights);
    }

    /// Harley-Seal over 16 vectors for two independent pairs per round, operands reloaded
    /// from L1 every round: returns binary MACs (2 x 16 x 256 per round).
    ///
    /// # Safety
    /// The CPU has AVX2.
    #[target_feature(enable = "avx2")]
    pub unsafe fn harley_seal(rounds: u64, words: &[u64; 256]) -> f64 {
        let z = _mm256_setzero_si256();
        let mut st = [Hs {
            ones: z,
            twos: z,
            fours: z,
            eights: z,
            total: z,
        }; 2];
        for _ in 0..rounds {
            // The pointer through black_box: the loads cannot be hoisted out of the loop.
            let p: *const u64 = std::hint::black_box(words.as_ptr());
            // SAFETY: 4 * 48 + 4 <= 256 words; loadu has no alignment need.
            let v: [__m256i; 48] =
                std::array::from_fn(|k| unsafe { _mm256_loadu_si256(p.add(4 * k).cast()) });
            let a: [__m256i; 16] = std::array::from_fn(|k| v[k]);
            let b0: [__m256i; 16] = std::array::from_fn(|k| v[16 + k]);
            let b1: [__m256i; 16] = std::array::from_fn(|k| v[32 + k]);
            hs16(&mut st[0], &a, &b0);
            hs16(&mut st[1], &a, &b1);
        }
        std::hint::black_box(&st);
        rounds as f64 * 2.0 * 16.0 * 256.0
    }
}

fn rand_vec(rng: &mut Rng, n: usize) -> Vec<f32> {
    (0..n).map(|_| rng.normal()).collect()
}

fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .trim()
        .to_string()
}

fn main() {
    println!("# popcount ceiling, one thread; load: {}", load());
    // The best of many short runs: on a shared machine most runs share the core's time
    // slice with a neighbour's context switches; the best is the undisturbed one.
    let reps = 100;
    let ghz = best_rate(reps, || loops_clock(ITERS)) / 1e9;
    println!("# clock (dependent add chain): {ghz:.3} GHz");
    let per_cycle = |rate: f64| rate / (ghz * 1e9);
    let mut rows: Vec<(String, f64)> = Vec::new();
    let mut f32_peak = None;
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::is_x86_feature_detected as has;
        let words: [u64; 64] =
            std::array::from_fn(|k| (k as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let big: [u64; 256] =
            std::array::from_fn(|k| (k as u64).wrapping_mul(0xbf58_476d_1ce4_e5b9));
        if has!("avx2") && has!("fma") {
            // SAFETY: AVX2 and FMA checked.
            let fma = per_cycle(best_rate(reps, || unsafe { loops::fma(ITERS) }));
            f32_peak = Some(fma);
            rows.push(("f32 fma (f32 MACs)".into(), fma));
        } else {
            println!("skipped: f32 fma loop (CPU lacks AVX2 + FMA)");
        }
        if has!("avx2") && has!("popcnt") {
            type Pipes = unsafe fn(u64) -> f64;
            let pipes: [(&str, Pipes); 3] = [
                ("vpaddb", loops::vpaddb),
                ("vpxor", loops::vpxor),
                ("vpshufb", loops::vpshufb),
            ];
            for (name, f) in pipes {
                // SAFETY: AVX2 checked.
                let r = per_cycle(best_rate(reps, || unsafe { f(ITERS) }));
                println!("# {name} ymm, 8 independent: {r:.2} per cycle");
            }
            type Loop = unsafe fn(u64, &[u64; 64]) -> f64;
            let vector: [(&str, Loop); 10] = [
                ("nibble table", loops::nibble),
                ("nibble table + 1 scalar", loops::nibble_s1),
                ("nibble table + 2 scalar", loops::nibble_s2),
                ("nibble table + 4 scalar", loops::nibble_s4),
                ("nibble table + 8 scalar", loops::nibble_s8),
                ("nibble planes", loops::planes),
                ("nibble planes + 1 scalar", loops::planes_s1),
                ("nibble planes + 2 scalar", loops::planes_s2),
                ("nibble planes + 4 scalar", loops::planes_s4),
                ("nibble planes + 8 scalar", loops::planes_s8),
            ];
            for (name, f) in vector {
                // SAFETY: AVX2 and POPCNT checked.
                let r = per_cycle(best_rate(reps, || unsafe { f(ITERS, &words) }));
                rows.push((name.into(), r));
            }
            // SAFETY: POPCNT checked.
            let r = per_cycle(best_rate(reps, || unsafe { loops::scalar(ITERS, &words) }));
            rows.push(("scalar popcnt".into(), r));
            // SAFETY: AVX2 checked.
            let r = per_cycle(best_rate(reps, || unsafe {
                loops::harley_seal(ITERS / 8, &big)
            }));
            rows.push(("harley-seal 16".into(), r));
        } else {
            println!("skipped: AVX2 popcount loops (CPU lacks AVX2 or POPCNT)");
        }
        if has!("avx512f") {
            // SAFETY: AVX-512 F checked.
            let fma = per_cycle(best_rate(reps, || unsafe { loops::fma512(ITERS) }));
            // faer runs 512-bit FMAs where the CPU has AVX-512 F: their peak is the baseline.
            f32_peak = Some(fma);
            rows.push(("f32 fma zmm (f32 MACs)".into(), fma));
        } else {
            println!("skipped: f32 fma zmm loop (CPU lacks AVX-512 F)");
        }
        if has!("avx512f") && has!("avx512vpopcntdq") {
            type Pipes = unsafe fn(u64) -> f64;
            let pipes: [(&str, Pipes); 2] = [
                ("vpopcntq", loops::vpopcntq_zmm),
                ("vpaddq", loops::vpaddq_zmm),
            ];
            for (name, f) in pipes {
                // SAFETY: AVX-512 F and VPOPCNTDQ checked.
                let r = per_cycle(best_rate(reps, || unsafe { f(ITERS) }));
                println!("# {name} zmm, 8 independent: {r:.2} per cycle");
            }
            // SAFETY: AVX-512 F and VPOPCNTDQ checked.
            let r = per_cycle(best_rate(reps, || unsafe { loops::vpopcntdq(ITERS) }));
            rows.push(("avx512 vpopcntdq".into(), r));
        } else {
            println!("skipped: avx512-vpopcntdq loop (CPU lacks AVX-512 F + VPOPCNTDQ)");
        }
        if amx_usable() {
            // SAFETY: AMX-TILE, AMX-INT8 and the OS permission checked.
            let r = per_cycle(best_rate(reps, || unsafe { loops::amx_int8(ITERS / 16) }));
            rows.push(("amx int8 tdpbssd (+-1 bytes)".into(), r));
        } else {
            println!("skipped: amx int8 loop (CPU lacks AMX-TILE + AMX-INT8, or the OS denies it)");
        }
    }
    let peak = f32_peak.unwrap_or(f64::NAN);
    println!(
        "{:<28} {:>12} {:>14}",
        "loop", "MACs/cycle", "vs f32 peak (the last fma row)"
    );
    for (name, r) in &rows {
        println!("{name:<28} {r:>12.1} {:>13.1}x", r / peak);
    }

    // The library kernels on the criterion shapes, one thread, per CPU-cycle.
    println!(
        "{:<22} {:>14} {:>16} {:>18}",
        "shape M x N x K", "f32 faer", "binary path", "binary / faer"
    );
    for k in [256usize, 1024, 4096] {
        let (m, n) = (256usize, 512usize);
        let mut rng = Rng::seed_from_u64(1);
        let (a, b) = (rand_vec(&mut rng, m * k), rand_vec(&mut rng, n * k));
        let macs = (m * n * k) as f64;
        let mut out = vec![0.0f32; m * n];
        let p = GemmParams::with_trans(false, true).threads(1);
        let faer = per_cycle(best_rate(reps, || {
            gemm(m, n, k, black_box(&a), black_box(&b), &mut out, &p).unwrap();
            macs
        }));
        let (pa, pb) = (
            PackedRows::pack(&a, m, k).unwrap(),
            PackedRows::pack(&b, n, k).unwrap(),
        );
        let mut c = vec![0i32; m * n];
        for path in PopcountPath::supported() {
            let mut variants = vec![(path.name(), BinaryGemmParams::on(path).threads(1))];
            if path == PopcountPath::Avx2 {
                variants.push(("avx2-table", variants[0].1.nibble_planes(false)));
            }
            if path == PopcountPath::best() && amx_usable() {
                variants.push((AMX_PATH_NAME, variants[0].1.amx(AmxUse::Always)));
            }
            for (name, bp) in variants {
                let bin = per_cycle(best_rate(reps, || {
                    binary_gemm_with(black_box(&pa), black_box(&pb), &mut c, &bp).unwrap();
                    macs
                }));
                println!(
                    "{:<22} {faer:>8.2} MAC/c {name:>12} {bin:>6.1} MAC/c {:>10.1}x",
                    format!("{m} x {n} x {k}"),
                    bin / faer
                );
            }
        }
    }
    for p in PopcountPath::skipped() {
        println!("skipped: binary {} (CPU lacks {})", p.name(), p.needs());
    }
    println!("# load after: {}", load());
}

/// The clock loop's cycles (portable fallback: none).
fn loops_clock(iters: u64) -> f64 {
    #[cfg(target_arch = "x86_64")]
    return loops::clock(iters);
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = iters;
        f64::NAN
    }
}
