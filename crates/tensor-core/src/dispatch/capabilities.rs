//! What this CPU can run: the instruction-set extensions the kernel paths need, detected once.

use std::sync::OnceLock;

/// The x86 extensions that some kernel path needs, as `is_x86_feature_detected!` names them.
///
/// Detected once per process ([`capabilities`]); every field is `false` off x86_64. Tests may
/// build other values (e.g. [`Capabilities::default`], nothing) to exercise the selection rules
/// of [`super::KernelPath::best_within`] for CPUs they do not run on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Capabilities {
    /// AVX2 (256-bit integer SIMD).
    pub avx2: bool,
    /// FMA3 (fused multiply-add on 128/256-bit vectors).
    pub fma: bool,
    /// AVX-512 Foundation (512-bit f32/i32/i64 SIMD).
    pub avx512f: bool,
    /// AVX-512 BW (byte and word lanes of 512-bit vectors).
    pub avx512bw: bool,
    /// AVX-512 VNNI (`vpdpbusd` on 512-bit vectors).
    pub avx512vnni: bool,
    /// AVX-512 VPOPCNTDQ (`vpopcntq` on 512-bit vectors).
    pub avx512vpopcntdq: bool,
    /// AVX-VNNI (the VEX-encoded, 256-bit `vpdpbusd` of Alder Lake and Zen 5 and later).
    pub avxvnni: bool,
}

impl Capabilities {
    /// Asks the CPU (through `is_x86_feature_detected!`, which also checks that the OS saves
    /// the wider registers).
    pub fn detect() -> Self {
        #[cfg(target_arch = "x86_64")]
        {
            Self {
                avx2: is_x86_feature_detected!("avx2"),
                fma: is_x86_feature_detected!("fma"),
                avx512f: is_x86_feature_detected!("avx512f"),
                avx512bw: is_x86_feature_detected!("avx512bw"),
                avx512vnni: is_x86_feature_detected!("avx512vnni"),
                avx512vpopcntdq: is_x86_feature_detected!("avx512vpopcntdq"),
                avxvnni: is_x86_feature_detected!("avxvnni"),
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            Self::default()
        }
    }

    /// Every feature with whether this value has it, in a fixed order (for reports).
    pub fn features(&self) -> [(&'static str, bool); 7] {
        [
            ("avx2", self.avx2),
            ("fma", self.fma),
            ("avx512f", self.avx512f),
            ("avx512bw", self.avx512bw),
            ("avx512vnni", self.avx512vnni),
            ("avx512vpopcntdq", self.avx512vpopcntdq),
            ("avxvnni", self.avxvnni),
        ]
    }
}

/// This CPU's capabilities, detected on first use and cached.
pub fn capabilities() -> &'static Capabilities {
    static CAPS: OnceLock<Capabilities> = OnceLock::new();
    CAPS.get_or_init(Capabilities::detect)
}
