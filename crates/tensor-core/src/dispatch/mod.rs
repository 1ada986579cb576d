//! CPU feature dispatch: which SIMD path each kernel family runs on this CPU.
//!
//! Dispatch is per kernel *family*, because the extensions arrive separately: a CPU may have
//! AVX-512 F (512-bit f32 FMA) without VNNI or VPOPCNTDQ, or AVX-VNNI (256-bit int8 dot
//! products) without any AVX-512. Each family has a portable path (the reference the others
//! must match, bit for bit for integer kernels) and upgrades chosen at run time with
//! `is_x86_feature_detected!`, never `target-cpu=native`:
//!
//! | family | path | CPU features | instructions (intrinsics) | level |
//! |---|---|---|---|---|
//! | [`F32Path`] | `portable` | none | scalar Rust | portable |
//! | | `avx2-fma` | avx2, fma | `vfmadd231ps` (`_mm256_fmadd_ps`) | avx2 |
//! | | `avx512f` | avx512f | `vfmadd231ps` zmm (`_mm512_fmadd_ps`) | avx512 |
//! | [`Int8Path`] | `portable` | none | scalar Rust, i32 accumulation | portable |
//! | | `avx2` | avx2 | `vpmovzxbw`/`vpmovsxbw` + `vpmaddwd` (`_mm256_cvtepu8_epi16`, `_mm256_cvtepi8_epi16`, `_mm256_madd_epi16`) | avx2 |
//! | | `avx-vnni` | avx2, avxvnni | VEX `vpdpbusd` ymm (`_mm256_dpbusd_avx_epi32`) | avx2 |
//! | | `avx512-vnni` | avx512f, avx512bw, avx512vnni | `vpdpbusd` zmm (`_mm512_dpbusd_epi32`) | avx512 |
//! | [`PopcountPath`] | `portable` | none | `u64::count_ones` | portable |
//! | | `avx2` | avx2 | nibble lookup `vpshufb` + `vpsadbw` (`_mm256_shuffle_epi8`, `_mm256_sad_epu8`) | avx2 |
//! | | `avx512-vpopcntdq` | avx512f, avx512vpopcntdq | `vpopcntq` (`_mm512_popcnt_epi64`) | avx512 |
//!
//! The AVX2 int8 path does not use `vpmaddubsw` (`_mm256_maddubs_epi16`): it adds two u8 x i8
//! products into a *saturating* i16, and `255*127*2 = 64770 > 32767`. The AVX2 popcount is
//! the nibble-table method of Muła, Kurz and Lemire ("Faster population counts using AVX2
//! instructions", 2018). AMX (`amx-tile`, `amx-int8`, `amx-bf16`: tile matrix multiply) has
//! no stable intrinsics or target features; the one AMX path, xnor-kernels' opt-in `amx-int8`
//! binary GEMM (±1 as bytes on `tdpbssd`), writes the tile instructions in `asm!` after the
//! Linux `arch_prctl` permission request, and is off unless asked for. No dispatch family
//! here selects AMX.
//!
//! # Choosing a path
//! [`capabilities`] detects the features once. Each family's `selected()` is the best path
//! this CPU runs at or below a *ceiling* [`Level`], decided once per process from
//! `SLIMNET_KERNEL`:
//! - `portable`: every family runs its portable path;
//! - `avx2`: every family is capped at its AVX2-level path (AVX-VNNI counts as AVX2-level: it
//!   is a 256-bit extension);
//! - `avx512`, unset or empty: the best path of each family;
//! - anything else, or a level no family of this CPU reaches (`avx2` on a CPU without AVX2,
//!   `avx512` on one without any AVX-512 path): one warning on stderr, then the best path.
//!
//! # The explicit-path convention
//! Every dispatched kernel has two entry points: `kernel(...)`, which runs the selected path,
//! and `kernel_with(path, ...)`, which runs the path it is given (an error if this CPU cannot
//! run it). Tests loop over `Family::supported()`, name each path they run, and print
//! [`report`] so that a path skipped on this CPU is never skipped silently:
//!
//! ```
//! use tensor_core::bits::xor_popcount_with;
//! use tensor_core::dispatch::{PopcountPath, report};
//!
//! eprintln!("{}", report());
//! let (a, b) = ([0b1011u64, u64::MAX], [0b0001u64, 0]);
//! for path in PopcountPath::supported() {
//!     assert_eq!(xor_popcount_with(path, &a, &b).unwrap(), 2 + 64, "path {}", path.name());
//! }
//! ```

mod capabilities;
mod families;

pub use capabilities::{Capabilities, capabilities};
pub use families::{F32Path, Int8Path, PopcountPath};

use std::fmt::{Debug, Write};
use std::sync::OnceLock;

use crate::error::TensorError;

/// How far up the instruction sets `SLIMNET_KERNEL` lets a family go; every path has one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    /// No explicit SIMD.
    Portable,
    /// 256-bit paths: AVX2, FMA, AVX-VNNI.
    Avx2,
    /// 512-bit paths: AVX-512 F, BW, VNNI, VPOPCNTDQ.
    Avx512,
}

impl Level {
    /// The level's name as `SLIMNET_KERNEL` spells it.
    pub fn name(self) -> &'static str {
        match self {
            Level::Portable => "portable",
            Level::Avx2 => "avx2",
            Level::Avx512 => "avx512",
        }
    }

    /// Parses a `SLIMNET_KERNEL` value (case and surrounding spaces ignored).
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "portable" => Some(Level::Portable),
            "avx2" => Some(Level::Avx2),
            "avx512" => Some(Level::Avx512),
            _ => None,
        }
    }
}

/// One path of a kernel family: what it needs and at which [`Level`] it sits.
///
/// The families' inherent methods (`supported`, `best`, `selected`, ...) use these; the trait
/// is public so that generic code (reports, test helpers) can walk any family.
pub trait KernelPath: Copy + Eq + Debug + 'static {
    /// The family's name (`"f32"`, `"int8"`, `"popcount"`).
    const FAMILY: &'static str;
    /// Every path, from the portable one up to the fastest.
    const ALL: &'static [Self];
    /// The portable path, which runs everywhere.
    const PORTABLE: Self;

    /// The path's name in reports and test messages.
    fn name(self) -> &'static str;
    /// The `SLIMNET_KERNEL` level the path belongs to.
    fn level(self) -> Level;
    /// The CPU features the path needs, for messages (`"avx2 + fma"`).
    fn needs(self) -> &'static str;
    /// Whether a CPU with `caps` runs the path.
    fn runs_on(self, caps: &Capabilities) -> bool;

    /// The paths a CPU with `caps` runs, portable first.
    fn supported_by(caps: &Capabilities) -> Vec<Self> {
        Self::ALL
            .iter()
            .copied()
            .filter(|p| p.runs_on(caps))
            .collect()
    }

    /// The fastest path a CPU with `caps` runs at or below `ceiling`.
    fn best_within(ceiling: Level, caps: &Capabilities) -> Self {
        Self::ALL
            .iter()
            .rev()
            .copied()
            .find(|p| p.level() <= ceiling && p.runs_on(caps))
            .unwrap_or(Self::PORTABLE)
    }

    /// `Ok(())` when this CPU runs the path, else the error an explicit-path kernel `op`
    /// returns (calling a path's `#[target_feature]` code without its features is undefined
    /// behaviour, so every `_with` entry point checks first).
    fn require(self, op: &'static str) -> Result<(), TensorError> {
        if self.runs_on(capabilities()) {
            Ok(())
        } else {
            Err(TensorError::UnsupportedPath {
                op,
                family: Self::FAMILY,
                path: self.name(),
                needs: self.needs(),
            })
        }
    }
}

/// The ceiling a `SLIMNET_KERNEL` value (`None`: unset) sets on a CPU with `caps`, and the
/// warning to print, if any (see the module docs for the rules).
pub fn resolve_ceiling(value: Option<&str>, caps: &Capabilities) -> (Level, Option<String>) {
    let value = match value.map(str::trim) {
        None | Some("") => return (Level::Avx512, None),
        Some(v) => v,
    };
    let Some(level) = Level::parse(value) else {
        return (
            Level::Avx512,
            Some(format!(
                "slimnet: SLIMNET_KERNEL={value:?} is not one of portable|avx2|avx512; \
                 using the best path of each kernel family"
            )),
        );
    };
    let reached = level == Level::Portable
        || reaches::<F32Path>(level, caps)
        || reaches::<Int8Path>(level, caps)
        || reaches::<PopcountPath>(level, caps);
    if reached {
        (level, None)
    } else {
        (
            Level::Avx512,
            Some(format!(
                "slimnet: SLIMNET_KERNEL={value}: no kernel family has an {} path on this CPU; \
                 using the best path of each kernel family",
                level.name()
            )),
        )
    }
}

/// Whether some path of family `P` at exactly `level` runs on `caps`.
fn reaches<P: KernelPath>(level: Level, caps: &Capabilities) -> bool {
    P::ALL.iter().any(|p| p.level() == level && p.runs_on(caps))
}

/// The process-wide choice: the ceiling, where it came from, and each family's path.
#[derive(Debug)]
struct Selection {
    env: Option<String>,
    ceiling: Level,
    f32: F32Path,
    int8: Int8Path,
    popcount: PopcountPath,
}

/// Reads `SLIMNET_KERNEL` and chooses every family's path, once; prints the warning (if any)
/// at that moment, so at most once per process.
fn selection() -> &'static Selection {
    static SELECTION: OnceLock<Selection> = OnceLock::new();
    SELECTION.get_or_init(|| {
        let caps = capabilities();
        let env = std::env::var("SLIMNET_KERNEL").ok();
        let (ceiling, warning) = resolve_ceiling(env.as_deref(), caps);
        if let Some(w) = warning {
            eprintln!("{w}");
        }
        Selection {
            env,
            ceiling,
            f32: F32Path::best_within(ceiling, caps),
            int8: Int8Path::best_within(ceiling, caps),
            popcount: PopcountPath::best_within(ceiling, caps),
        }
    })
}

/// The ceiling in force (from `SLIMNET_KERNEL`; [`Level::Avx512`] when unset).
pub fn ceiling() -> Level {
    selection().ceiling
}

/// A few lines saying, per family, which paths this CPU runs, which one is selected and which
/// are skipped (with the features they lack). Tests print it so a skip is never silent.
pub fn report() -> String {
    let s = selection();
    let caps = capabilities();
    let (have, lack): (Vec<_>, Vec<_>) = caps.features().into_iter().partition(|f| f.1);
    let names = |v: Vec<(&str, bool)>| v.iter().map(|f| f.0).collect::<Vec<_>>().join(" ");
    let mut out = format!(
        "kernel paths: SLIMNET_KERNEL={} (ceiling {}); CPU has [{}], lacks [{}]\n",
        s.env.as_deref().unwrap_or("<unset>"),
        s.ceiling.name(),
        names(have),
        names(lack),
    );
    family_line(&mut out, s.f32, caps);
    family_line(&mut out, s.int8, caps);
    family_line(&mut out, s.popcount, caps);
    out
}

/// One family's line of [`report`].
fn family_line<P: KernelPath>(out: &mut String, selected: P, caps: &Capabilities) {
    let run: Vec<_> = P::supported_by(caps).iter().map(|p| p.name()).collect();
    let skipped: Vec<_> = P::ALL
        .iter()
        .filter(|p| !p.runs_on(caps))
        .map(|p| format!("{} (needs {})", p.name(), p.needs()))
        .collect();
    let skipped = if skipped.is_empty() {
        "none".to_string()
    } else {
        skipped.join(", ")
    };
    // Writing to a String cannot fail.
    let _ = writeln!(
        out,
        "  {:<9} selected {}; supported [{}]; skipped on this CPU: {}",
        format!("{}:", P::FAMILY),
        selected.name(),
        run.join(", "),
        skipped
    );
}

#[cfg(test)]
mod tests;
