//! Selection rules on made-up CPUs: ceilings, AVX-VNNI as an AVX2-level path, warnings.

use super::*;

const NOTHING: Capabilities = Capabilities {
    avx2: false,
    fma: false,
    avx512f: false,
    avx512bw: false,
    avx512vnni: false,
    avx512vpopcntdq: false,
    avxvnni: false,
};

/// This machine's kind: AVX2 + FMA only.
const AVX2_ONLY: Capabilities = Capabilities {
    avx2: true,
    fma: true,
    ..NOTHING
};

/// Alder Lake / Zen 5 client: AVX-VNNI, no AVX-512.
const AVX_VNNI: Capabilities = Capabilities {
    avxvnni: true,
    ..AVX2_ONLY
};

/// Skylake-SP: AVX-512 F/BW, neither VNNI nor VPOPCNTDQ.
const SKYLAKE_SP: Capabilities = Capabilities {
    avx512f: true,
    avx512bw: true,
    ..AVX2_ONLY
};

/// Ice Lake-SP / Zen 4: everything but AVX-VNNI.
const ICE_LAKE: Capabilities = Capabilities {
    avx512vnni: true,
    avx512vpopcntdq: true,
    ..SKYLAKE_SP
};

fn best3(ceiling: Level, caps: &Capabilities) -> (F32Path, Int8Path, PopcountPath) {
    (
        F32Path::best_within(ceiling, caps),
        Int8Path::best_within(ceiling, caps),
        PopcountPath::best_within(ceiling, caps),
    )
}

#[test]
fn best_path_per_family_and_cpu() {
    use {F32Path as F, Int8Path as I, PopcountPath as P};
    let top = Level::Avx512;
    assert_eq!(
        best3(top, &NOTHING),
        (F::Portable, I::Portable, P::Portable)
    );
    assert_eq!(best3(top, &AVX2_ONLY), (F::Avx2Fma, I::Avx2, P::Avx2));
    assert_eq!(best3(top, &AVX_VNNI), (F::Avx2Fma, I::AvxVnni, P::Avx2));
    // AVX-512 F alone is the f32 tier: no VNNI or VPOPCNTDQ needed for it.
    assert_eq!(best3(top, &SKYLAKE_SP), (F::Avx512F, I::Avx2, P::Avx2));
    assert_eq!(
        best3(top, &ICE_LAKE),
        (F::Avx512F, I::Avx512Vnni, P::Avx512Vpopcntdq)
    );
    // AVX2 without FMA (some VIA/Zhaoxin parts): integer paths yes, f32 FMA no.
    let no_fma = Capabilities {
        fma: false,
        ..AVX2_ONLY
    };
    assert_eq!(best3(top, &no_fma), (F::Portable, I::Avx2, P::Avx2));
}

#[test]
fn ceilings_cap_every_family() {
    use {F32Path as F, Int8Path as I, PopcountPath as P};
    let all = Capabilities {
        avxvnni: true,
        ..ICE_LAKE
    };
    assert_eq!(
        best3(Level::Portable, &all),
        (F::Portable, I::Portable, P::Portable)
    );
    // AVX-VNNI counts as AVX2-level.
    assert_eq!(best3(Level::Avx2, &all), (F::Avx2Fma, I::AvxVnni, P::Avx2));
    assert_eq!(
        best3(Level::Avx2, &ICE_LAKE),
        (F::Avx2Fma, I::Avx2, P::Avx2)
    );
    assert_eq!(
        best3(Level::Avx512, &all),
        (F::Avx512F, I::Avx512Vnni, P::Avx512Vpopcntdq)
    );
}

#[test]
fn supported_lists_start_portable_and_ascend() {
    for caps in [NOTHING, AVX2_ONLY, AVX_VNNI, SKYLAKE_SP, ICE_LAKE] {
        let f = F32Path::supported_by(&caps);
        let i = Int8Path::supported_by(&caps);
        let p = PopcountPath::supported_by(&caps);
        assert_eq!(f.first(), Some(&F32Path::Portable), "{caps:?}");
        assert_eq!(i.first(), Some(&Int8Path::Portable), "{caps:?}");
        assert_eq!(p.first(), Some(&PopcountPath::Portable), "{caps:?}");
        assert!(f.is_sorted() && i.is_sorted() && p.is_sorted(), "{caps:?}");
        assert_eq!(f.last(), Some(&F32Path::best_within(Level::Avx512, &caps)));
        assert_eq!(i.last(), Some(&Int8Path::best_within(Level::Avx512, &caps)));
        assert_eq!(
            p.last(),
            Some(&PopcountPath::best_within(Level::Avx512, &caps))
        );
    }
    assert_eq!(
        Int8Path::supported_by(&AVX_VNNI),
        vec![Int8Path::Portable, Int8Path::Avx2, Int8Path::AvxVnni]
    );
}

#[test]
fn env_values_and_warnings() {
    let r = |v: Option<&str>, caps: &Capabilities| resolve_ceiling(v, caps);
    assert_eq!(r(None, &AVX2_ONLY), (Level::Avx512, None));
    assert_eq!(r(Some(" "), &AVX2_ONLY), (Level::Avx512, None));
    assert_eq!(r(Some("portable"), &NOTHING), (Level::Portable, None));
    assert_eq!(r(Some(" AVX2 "), &AVX2_ONLY), (Level::Avx2, None));
    assert_eq!(r(Some("avx2"), &ICE_LAKE), (Level::Avx2, None));
    assert_eq!(r(Some("avx512"), &SKYLAKE_SP), (Level::Avx512, None));

    let (level, warning) = r(Some("sse9"), &ICE_LAKE);
    assert_eq!(level, Level::Avx512);
    let w = warning.unwrap_or_default();
    assert!(
        w.contains("\"sse9\"") && w.contains("portable|avx2|avx512"),
        "{w}"
    );

    // A level this CPU does not reach in any family: warn, use the best.
    let (level, warning) = r(Some("avx512"), &AVX_VNNI);
    assert_eq!(level, Level::Avx512);
    let w = warning.unwrap_or_default();
    assert!(w.contains("no kernel family has an avx512 path"), "{w}");
    let (level, warning) = r(Some("avx2"), &NOTHING);
    assert_eq!(level, Level::Avx512);
    assert!(warning.is_some());
}

#[test]
fn this_cpu_selection_is_supported_and_reported() {
    let report = report();
    eprintln!("{report}");
    assert!(F32Path::selected().is_supported());
    assert!(Int8Path::selected().is_supported());
    assert!(PopcountPath::selected().is_supported());
    assert!(F32Path::selected() <= F32Path::best());
    for line in ["f32:", "int8:", "popcount:"] {
        assert!(report.contains(line), "{report}");
    }
    for p in PopcountPath::skipped() {
        assert!(report.contains(p.name()), "{report}");
        let e = p.require("test").unwrap_err();
        assert!(e.to_string().contains(p.needs()), "{e}");
    }
    for p in Int8Path::supported() {
        assert!(p.require("test").is_ok());
        assert_eq!(Level::parse(p.level().name()), Some(p.level()));
    }
}
