//! Post-training calibration: choosing an activation's clipping range `[lo, hi]` from its
//! values on a calibration set.
//!
//! - **min-max**: the observed extremes;
//! - **percentile** `p`: the `(100 - p)`-th and `p`-th percentiles of the values;
//! - **MSE**: the range, among 128 shrinkings `[lo, hi] * t/128` of the observed one, that
//!   minimises the mean squared error `sum_b c_b (x_b - fq(x_b))^2` over the histogram;
//! - **KL** (entropy, Migacz, "8-bit Inference with TensorRT", GTC 2017): the threshold `T`
//!   whose clipped histogram `P` (outliers folded into the last bin) is closest to its
//!   `levels`-level quantized version `Q` in Kullback-Leibler divergence `sum P log(P / Q)`.
//!
//! The histogram methods see a [`Histogram`] of 2048 bins over the observed range widened
//! to include 0 (the range of `|x|` when values of both signs occur, for KL).

use crate::affine::fake_quantize_value;
use crate::error::{QuantError, Result};
use crate::params::{Symmetry, scale_zero_point};
use crate::qtype::QuantType;

/// Bins of a calibration histogram (TensorRT's and ONNX Runtime's default).
pub const BINS: usize = 2048;

/// How an activation's range is chosen.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Calibration {
    /// Observed minimum and maximum.
    MinMax,
    /// Percentiles `100 - p` and `p` (`p` in `(50, 100]`, e.g. 99.99).
    Percentile(f64),
    /// Least mean squared quantization error.
    Mse,
    /// Least KL divergence (entropy calibration).
    Kl,
}

impl Calibration {
    /// Parses `minmax`, `percentile` (99.99), `percentile:P`, `mse`, `kl` or `entropy`.
    pub fn parse(s: &str) -> Result<Self> {
        let bad = || QuantError::InvalidArgument {
            op: "Calibration::parse",
            reason: format!("{s:?} is not one of minmax, percentile[:P], mse, kl"),
        };
        Ok(match s.trim().to_ascii_lowercase().as_str() {
            "minmax" | "min-max" => Calibration::MinMax,
            "percentile" => Calibration::Percentile(99.99),
            "mse" => Calibration::Mse,
            "kl" | "entropy" => Calibration::Kl,
            other => match other.strip_prefix("percentile:") {
                Some(p) => {
                    let p: f64 = p.parse().map_err(|_| bad())?;
                    if !(p > 50.0 && p <= 100.0) {
                        return Err(bad());
                    }
                    Calibration::Percentile(p)
                }
                None => return Err(bad()),
            },
        })
    }

    /// Whether the method needs a histogram (a second pass over the calibration set).
    pub fn needs_histogram(self) -> bool {
        self != Calibration::MinMax
    }

    /// The method's name in reports.
    pub fn name(self) -> String {
        match self {
            Calibration::MinMax => "minmax".into(),
            Calibration::Percentile(p) => format!("percentile:{p}"),
            Calibration::Mse => "mse".into(),
            Calibration::Kl => "kl".into(),
        }
    }
}

/// Running extremes of an activation.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MinMax {
    /// Smallest finite value seen (`+inf` before any).
    pub min: f32,
    /// Largest finite value seen (`-inf` before any).
    pub max: f32,
}

impl Default for MinMax {
    fn default() -> Self {
        Self {
            min: f32::INFINITY,
            max: f32::NEG_INFINITY,
        }
    }
}

impl MinMax {
    /// Widens the range by `xs` (non-finite values ignored).
    pub fn observe(&mut self, xs: &[f32]) {
        for &x in xs.iter().filter(|x| x.is_finite()) {
            self.min = self.min.min(x);
            self.max = self.max.max(x);
        }
    }

    /// `(min, max)` widened to include 0 (`(0, 0)` before any value).
    pub fn range(&self) -> (f32, f32) {
        if self.min > self.max {
            (0.0, 0.0)
        } else {
            (self.min.min(0.0), self.max.max(0.0))
        }
    }
}

/// Counts of values in [`BINS`] equal bins over `[lo, hi]` (values outside go to the end bins).
#[derive(Clone, Debug, PartialEq)]
pub struct Histogram {
    lo: f32,
    hi: f32,
    counts: Vec<u64>,
}

impl Histogram {
    /// An empty histogram over `[lo, hi]` (`lo <= 0 <= hi`).
    pub fn new(lo: f32, hi: f32) -> Self {
        Self {
            lo,
            hi,
            counts: vec![0; BINS],
        }
    }

    /// Width of one bin.
    pub fn bin_width(&self) -> f32 {
        (self.hi - self.lo) / BINS as f32
    }

    /// Adds `xs` (non-finite values ignored).
    pub fn observe(&mut self, xs: &[f32]) {
        let w = self.bin_width();
        if w <= 0.0 {
            return;
        }
        for &x in xs.iter().filter(|x| x.is_finite()) {
            let b = (((x - self.lo) / w) as usize).min(BINS - 1);
            self.counts[b] += 1;
        }
    }

    /// Center of bin `b`.
    fn center(&self, b: usize) -> f32 {
        self.lo + (b as f32 + 0.5) * self.bin_width()
    }

    /// The value below which a fraction `q` of the counts lies.
    fn quantile(&self, q: f64) -> f32 {
        let total: u64 = self.counts.iter().sum();
        let target = (q * total as f64).ceil() as u64;
        let mut seen = 0;
        for (b, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= target.max(1) {
                return self.lo + (b + 1) as f32 * self.bin_width();
            }
        }
        self.hi
    }
}

/// The range `method` chooses for values with extremes `mm` and (for the histogram methods)
/// histogram `hist` (built over `mm.range()`, or over `[0, max |x|]` of `|x|` for KL when
/// both signs occur: see [`histogram_range`]).
pub fn choose_range(
    method: Calibration,
    mm: &MinMax,
    hist: Option<&Histogram>,
    qtype: QuantType,
    symmetry: Symmetry,
) -> (f32, f32) {
    let (lo, hi) = mm.range();
    let Some(h) = hist.filter(|h| h.bin_width() > 0.0) else {
        return (lo, hi);
    };
    match method {
        Calibration::MinMax => (lo, hi),
        Calibration::Percentile(p) => {
            let upper = h.quantile(p / 100.0).min(hi);
            let lower = if lo < 0.0 {
                h.quantile(1.0 - p / 100.0).max(lo).min(0.0)
            } else {
                0.0
            };
            (lower, upper.max(0.0))
        }
        Calibration::Mse => {
            let mut best = (f64::INFINITY, lo, hi);
            for t in 1..=128u32 {
                let f = t as f32 / 128.0;
                let (l, u) = (lo * f, hi * f);
                let Ok((s, z)) = scale_zero_point(qtype, symmetry, l, u, 0) else {
                    continue;
                };
                let err: f64 = h
                    .counts
                    .iter()
                    .enumerate()
                    .filter(|(_, c)| **c > 0)
                    .map(|(b, &c)| {
                        let x = h.center(b);
                        let d = f64::from(x - fake_quantize_value(x, s, z, qtype));
                        c as f64 * d * d
                    })
                    .sum();
                if err < best.0 {
                    best = (err, l, u);
                }
            }
            (best.1, best.2)
        }
        Calibration::Kl => {
            let levels = if lo < 0.0 {
                qtype.levels() as usize / 2
            } else {
                qtype.levels() as usize
            };
            // The first bin holds every exact zero a ReLU produced; left as is, that spike
            // dominates P and the divergence favours thresholds far too small (lenet300's
            // second layer: 1.23 of 9.95, -1.6 points). As NVIDIA's pytorch-quantization
            // entropy calibrator does, the first bin is given the second's count.
            let mut counts = h.counts.clone();
            if counts.len() > 1 {
                counts[0] = counts[1];
            }
            let t = kl_threshold(&counts, levels.max(2));
            let threshold = h.lo + t as f32 * h.bin_width();
            if lo < 0.0 {
                (lo.max(-threshold), hi.min(threshold))
            } else {
                (0.0, threshold.min(hi))
            }
        }
    }
}

/// The histogram range for `method`: `mm.range()`, or `[0, max(|lo|, hi)]` for KL when both
/// signs occur (the histogram then counts `|x|`).
pub fn histogram_range(method: Calibration, mm: &MinMax) -> (f32, f32, bool) {
    let (lo, hi) = mm.range();
    if method == Calibration::Kl && lo < 0.0 {
        (0.0, (-lo).max(hi), true)
    } else {
        (lo, hi, false)
    }
}

/// TensorRT's entropy calibration: the number of bins `i` in `levels..=counts.len()` whose
/// clipped distribution loses least information when merged into `levels` levels.
pub fn kl_threshold(counts: &[u64], levels: usize) -> usize {
    let n = counts.len();
    if n <= levels {
        return n;
    }
    let mut best = (f64::INFINITY, n);
    for i in levels..=n {
        let mut p: Vec<f64> = counts[..i].iter().map(|&c| c as f64).collect();
        p[i - 1] += counts[i..].iter().map(|&c| c as f64).sum::<f64>();
        // Q: merge the i bins into `levels` groups, spread each group's count over its
        // nonzero bins.
        let mut q = vec![0f64; i];
        for g in 0..levels {
            let (s, e) = (g * i / levels, (g + 1) * i / levels);
            let total: f64 = counts[s..e].iter().map(|&c| c as f64).sum();
            let nonzero = counts[s..e].iter().filter(|&&c| c > 0).count();
            if nonzero > 0 {
                for b in s..e {
                    if counts[b] > 0 {
                        q[b] = total / nonzero as f64;
                    }
                }
            }
        }
        let (sp, sq): (f64, f64) = (p.iter().sum(), q.iter().sum());
        if sp == 0.0 || sq == 0.0 {
            continue;
        }
        let kl: f64 = p
            .iter()
            .zip(&q)
            .filter(|(pi, _)| **pi > 0.0)
            .map(|(&pi, &qi)| {
                let (pn, qn) = (pi / sp, (qi / sq).max(1e-12));
                pn * (pn / qn).ln()
            })
            .sum();
        if kl < best.0 {
            best = (kl, i);
        }
    }
    best.1
}

#[cfg(test)]
mod tests {
    use super::*;
    use tensor_core::rng::Rng;

    fn observed(xs: &[f32], method: Calibration) -> (MinMax, Histogram) {
        let mut mm = MinMax::default();
        mm.observe(xs);
        let (lo, hi, abs) = histogram_range(method, &mm);
        let mut h = Histogram::new(lo, hi);
        if abs {
            h.observe(&xs.iter().map(|x| x.abs()).collect::<Vec<_>>());
        } else {
            h.observe(xs);
        }
        (mm, h)
    }

    /// Mostly small values plus a few huge outliers: every histogram method clips.
    fn with_outliers() -> Vec<f32> {
        let mut rng = Rng::seed_from_u64(5);
        let mut xs: Vec<f32> = (0..20_000).map(|_| rng.normal().abs()).collect();
        xs.extend([100.0, 90.0, 80.0]);
        xs
    }

    #[test]
    fn minmax_keeps_the_extremes() {
        let xs = with_outliers();
        let (mm, h) = observed(&xs, Calibration::MinMax);
        let r = choose_range(
            Calibration::MinMax,
            &mm,
            Some(&h),
            QuantType::U7,
            Symmetry::Asymmetric,
        );
        assert_eq!(r, (0.0, 100.0));
    }

    #[test]
    fn percentile_and_kl_clip_outliers() {
        // (MSE keeps these three outliers: clipping them costs more squared error than the
        // coarser steps do; `mse_range_has_lower_error_than_minmax` checks MSE.)
        let xs = with_outliers();
        for method in [Calibration::Percentile(99.9), Calibration::Kl] {
            let (mm, h) = observed(&xs, method);
            let (lo, hi) = choose_range(method, &mm, Some(&h), QuantType::U7, Symmetry::Asymmetric);
            assert_eq!(lo, 0.0, "{method:?}");
            assert!(hi > 2.0 && hi < 50.0, "{method:?} chose hi = {hi}");
        }
    }

    #[test]
    fn mse_range_has_lower_error_than_minmax() {
        let xs = with_outliers();
        let (mm, h) = observed(&xs, Calibration::Mse);
        let t = QuantType::U7;
        let mse = |(lo, hi): (f32, f32)| -> f64 {
            let (s, z) = scale_zero_point(t, Symmetry::Asymmetric, lo, hi, 0).unwrap();
            xs.iter()
                .map(|&x| f64::from(x - fake_quantize_value(x, s, z, t)).powi(2))
                .sum()
        };
        let chosen = choose_range(Calibration::Mse, &mm, Some(&h), t, Symmetry::Asymmetric);
        assert!(mse(chosen) < mse(mm.range()), "{chosen:?}");
    }

    #[test]
    fn kl_of_a_uniform_histogram_keeps_everything() {
        let counts = vec![10u64; 512];
        assert_eq!(kl_threshold(&counts, 128), 512);
    }

    #[test]
    fn signed_values_get_both_ends() {
        let mut rng = Rng::seed_from_u64(8);
        let xs: Vec<f32> = (0..10_000).map(|_| rng.normal()).collect();
        for method in [
            Calibration::Percentile(99.0),
            Calibration::Mse,
            Calibration::Kl,
        ] {
            let (mm, h) = observed(&xs, method);
            let (lo, hi) = choose_range(method, &mm, Some(&h), QuantType::U8, Symmetry::Asymmetric);
            assert!(lo < -1.0 && hi > 1.0, "{method:?}: [{lo}, {hi}]");
        }
    }

    #[test]
    fn parse_names_each_method() {
        assert_eq!(Calibration::parse("KL").unwrap(), Calibration::Kl);
        assert_eq!(
            Calibration::parse("percentile:99.9").unwrap(),
            Calibration::Percentile(99.9)
        );
        let e = Calibration::parse("median").unwrap_err().to_string();
        assert!(e.contains("\"median\""), "{e}");
        assert!(Calibration::parse("percentile:30").is_err());
    }
}
