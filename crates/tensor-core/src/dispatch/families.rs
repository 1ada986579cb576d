//! The three kernel families and their paths: f32 FMA, u8 x i8 dot products, XOR-popcount.

use super::{Capabilities, KernelPath, Level, capabilities, selection};

/// Paths of f32 multiply-add kernels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum F32Path {
    /// Plain Rust (the reference).
    Portable,
    /// 256-bit `_mm256_fmadd_ps`; needs AVX2 and FMA.
    Avx2Fma,
    /// 512-bit `_mm512_fmadd_ps`; needs AVX-512 F only.
    Avx512F,
}

/// Paths of u8 x i8 -> i32 dot products (the inner loop of int8 GEMM and convolution).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Int8Path {
    /// Plain Rust (the reference).
    Portable,
    /// Widen to i16 (`_mm256_cvtepu8_epi16`, `_mm256_cvtepi8_epi16`) then `_mm256_madd_epi16`;
    /// needs AVX2.
    Avx2,
    /// 256-bit `_mm256_dpbusd_avx_epi32`; needs AVX-VNNI. An AVX2-level path (256-bit, VEX).
    AvxVnni,
    /// 512-bit `_mm512_dpbusd_epi32`; needs AVX-512 VNNI and BW.
    Avx512Vnni,
}

/// Paths of XOR-popcount over packed u64 words (the inner loop of XNOR-Net kernels).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PopcountPath {
    /// Plain Rust `u64::count_ones` (the reference).
    Portable,
    /// Nibble lookup with `_mm256_shuffle_epi8`, summed by `_mm256_sad_epu8`; needs AVX2.
    Avx2,
    /// 512-bit `_mm512_popcnt_epi64`; needs AVX-512 VPOPCNTDQ.
    Avx512Vpopcntdq,
}

impl KernelPath for F32Path {
    const FAMILY: &'static str = "f32";
    const ALL: &'static [Self] = &[Self::Portable, Self::Avx2Fma, Self::Avx512F];
    const PORTABLE: Self = Self::Portable;

    fn name(self) -> &'static str {
        match self {
            Self::Portable => "portable",
            Self::Avx2Fma => "avx2-fma",
            Self::Avx512F => "avx512f",
        }
    }

    fn level(self) -> Level {
        match self {
            Self::Portable => Level::Portable,
            Self::Avx2Fma => Level::Avx2,
            Self::Avx512F => Level::Avx512,
        }
    }

    fn needs(self) -> &'static str {
        match self {
            Self::Portable => "nothing",
            Self::Avx2Fma => "avx2 + fma",
            Self::Avx512F => "avx512f",
        }
    }

    fn runs_on(self, caps: &Capabilities) -> bool {
        match self {
            Self::Portable => true,
            Self::Avx2Fma => caps.avx2 && caps.fma,
            Self::Avx512F => caps.avx512f,
        }
    }
}

impl KernelPath for Int8Path {
    const FAMILY: &'static str = "int8";
    const ALL: &'static [Self] = &[Self::Portable, Self::Avx2, Self::AvxVnni, Self::Avx512Vnni];
    const PORTABLE: Self = Self::Portable;

    fn name(self) -> &'static str {
        match self {
            Self::Portable => "portable",
            Self::Avx2 => "avx2",
            Self::AvxVnni => "avx-vnni",
            Self::Avx512Vnni => "avx512-vnni",
        }
    }

    fn level(self) -> Level {
        match self {
            Self::Portable => Level::Portable,
            Self::Avx2 | Self::AvxVnni => Level::Avx2,
            Self::Avx512Vnni => Level::Avx512,
        }
    }

    fn needs(self) -> &'static str {
        match self {
            Self::Portable => "nothing",
            Self::Avx2 => "avx2",
            Self::AvxVnni => "avx2 + avxvnni",
            Self::Avx512Vnni => "avx512f + avx512bw + avx512vnni",
        }
    }

    fn runs_on(self, caps: &Capabilities) -> bool {
        match self {
            Self::Portable => true,
            Self::Avx2 => caps.avx2,
            Self::AvxVnni => caps.avx2 && caps.avxvnni,
            Self::Avx512Vnni => caps.avx512f && caps.avx512bw && caps.avx512vnni,
        }
    }
}

impl KernelPath for PopcountPath {
    const FAMILY: &'static str = "popcount";
    const ALL: &'static [Self] = &[Self::Portable, Self::Avx2, Self::Avx512Vpopcntdq];
    const PORTABLE: Self = Self::Portable;

    fn name(self) -> &'static str {
        match self {
            Self::Portable => "portable",
            Self::Avx2 => "avx2",
            Self::Avx512Vpopcntdq => "avx512-vpopcntdq",
        }
    }

    fn level(self) -> Level {
        match self {
            Self::Portable => Level::Portable,
            Self::Avx2 => Level::Avx2,
            Self::Avx512Vpopcntdq => Level::Avx512,
        }
    }

    fn needs(self) -> &'static str {
        match self {
            Self::Portable => "nothing",
            Self::Avx2 => "avx2",
            Self::Avx512Vpopcntdq => "avx512f + avx512vpopcntdq",
        }
    }

    fn runs_on(self, caps: &Capabilities) -> bool {
        match self {
            Self::Portable => true,
            Self::Avx2 => caps.avx2,
            Self::Avx512Vpopcntdq => caps.avx512f && caps.avx512vpopcntdq,
        }
    }
}

/// The same inherent methods on every family, so callers need no trait in scope:
/// `PopcountPath::supported()`, `.best()`, `.selected()`, `.skipped()`, `path.name()`,
/// `path.is_supported()`.
macro_rules! family_methods {
    ($path:ty, $field:ident) => {
        impl $path {
            /// Every path of this family that this CPU runs, portable first (tests loop over
            /// these and call the kernel's `_with` entry point on each).
            pub fn supported() -> Vec<Self> {
                <Self as KernelPath>::supported_by(capabilities())
            }

            /// The paths of this family this CPU cannot run (tests print them as skipped).
            pub fn skipped() -> Vec<Self> {
                <Self as KernelPath>::ALL
                    .iter()
                    .copied()
                    .filter(|p| !p.runs_on(capabilities()))
                    .collect()
            }

            /// The fastest path this CPU runs, ignoring `SLIMNET_KERNEL`.
            pub fn best() -> Self {
                <Self as KernelPath>::best_within(Level::Avx512, capabilities())
            }

            /// The path kernels use: the best one within the `SLIMNET_KERNEL` ceiling,
            /// decided once per process.
            pub fn selected() -> Self {
                selection().$field
            }

            /// The path's name in reports and test messages.
            pub fn name(self) -> &'static str {
                <Self as KernelPath>::name(self)
            }

            /// Whether this CPU runs the path.
            pub fn is_supported(self) -> bool {
                self.runs_on(capabilities())
            }
        }
    };
}

family_methods!(F32Path, f32);
family_methods!(Int8Path, int8);
family_methods!(PopcountPath, popcount);
