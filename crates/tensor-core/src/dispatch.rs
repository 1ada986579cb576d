//! CPU feature dispatch: which SIMD tier the kernels of every crate use.
//!
//! Tiers are chosen at run time with `is_x86_feature_detected!`, never by `target-cpu=native`,
//! and cached once. `SLIMNET_KERNEL=portable|avx2|avx512` forces a tier (for tests and
//! benchmarks); forcing a tier the CPU lacks falls back to the best available one and
//! [`selected`] reports what actually runs.

use std::sync::OnceLock;

/// A SIMD tier. Every kernel has a `Portable` implementation that the others must match.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum KernelTier {
    /// Plain Rust, no explicit SIMD (the reference every faster tier is tested against).
    Portable,
    /// AVX2 + FMA (+ AVX-VNNI where present).
    Avx2,
    /// AVX-512 F/BW/VL with VNNI and VPOPCNTDQ.
    Avx512,
}

impl KernelTier {
    /// The tier's name as `SLIMNET_KERNEL` spells it.
    pub fn name(self) -> &'static str {
        match self {
            KernelTier::Portable => "portable",
            KernelTier::Avx2 => "avx2",
            KernelTier::Avx512 => "avx512",
        }
    }

    /// Parses a `SLIMNET_KERNEL` value.
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "portable" => Some(KernelTier::Portable),
            "avx2" => Some(KernelTier::Avx2),
            "avx512" => Some(KernelTier::Avx512),
            _ => None,
        }
    }

    /// Whether this CPU can run the tier.
    pub fn is_supported(self) -> bool {
        match self {
            KernelTier::Portable => true,
            #[cfg(target_arch = "x86_64")]
            KernelTier::Avx2 => is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"),
            #[cfg(target_arch = "x86_64")]
            KernelTier::Avx512 => {
                is_x86_feature_detected!("avx512f")
                    && is_x86_feature_detected!("avx512bw")
                    && is_x86_feature_detected!("avx512vl")
                    && is_x86_feature_detected!("avx512vnni")
                    && is_x86_feature_detected!("avx512vpopcntdq")
            }
            #[cfg(not(target_arch = "x86_64"))]
            _ => false,
        }
    }

    /// Every tier this CPU supports, portable first (tests iterate over these).
    pub fn supported() -> Vec<KernelTier> {
        [KernelTier::Portable, KernelTier::Avx2, KernelTier::Avx512]
            .into_iter()
            .filter(|t| t.is_supported())
            .collect()
    }

    /// The best tier this CPU supports.
    pub fn best() -> KernelTier {
        *Self::supported().last().unwrap_or(&KernelTier::Portable)
    }
}

/// The tier kernels use: `SLIMNET_KERNEL` if set and supported, else the best supported one.
pub fn selected() -> KernelTier {
    static SELECTED: OnceLock<KernelTier> = OnceLock::new();
    *SELECTED.get_or_init(|| {
        let best = KernelTier::best();
        match std::env::var("SLIMNET_KERNEL")
            .ok()
            .as_deref()
            .map(KernelTier::parse)
        {
            Some(Some(t)) if t.is_supported() => t,
            Some(Some(t)) => {
                eprintln!(
                    "slimnet: SLIMNET_KERNEL={} not supported by this CPU; using {}",
                    t.name(),
                    best.name()
                );
                best
            }
            Some(None) => {
                eprintln!(
                    "slimnet: SLIMNET_KERNEL not one of portable|avx2|avx512; using {}",
                    best.name()
                );
                best
            }
            None => best,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn portable_is_always_supported_and_selected_is_supported() {
        assert!(KernelTier::Portable.is_supported());
        assert!(selected().is_supported());
        eprintln!("kernel tiers supported here: {:?}", KernelTier::supported());
        for t in KernelTier::supported() {
            assert_eq!(KernelTier::parse(t.name()), Some(t));
        }
    }
}
