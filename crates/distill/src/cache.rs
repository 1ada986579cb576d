//! The teacher's cached logits as a file, so that a sweep of students over one transfer set
//! runs the teacher once instead of once per run.
//!
//! Layout (little-endian): magic `SLDL`, version `u32` (1), the teacher's fingerprint `u64`
//! (the caller's: a file refused for another teacher), classes `u32`, images `u64`, then per
//! image its key (the hash of its pixels, `u64`) and `classes` f32 logits. The sizes are
//! checked against the bytes present before anything is allocated.

use nn::{NnError, Result};

use crate::Distillation;

const MAGIC: &[u8; 4] = b"SLDL";
const VERSION: u32 = 1;
const HEADER: usize = 4 + 4 + 8 + 4 + 8;
/// Most classes a cache file may hold per image.
const MAX_CLASSES: usize = 1 << 16;

impl Distillation {
    /// The cached logits as bytes, tagged with `fingerprint` (which teacher made them).
    ///
    /// Errors: cached rows of different widths.
    pub fn cache_bytes(&self, fingerprint: u64) -> Result<Vec<u8>> {
        let classes = self.cache.values().next().map_or(0, |r| r.len());
        let mut keys: Vec<u64> = self.cache.keys().copied().collect();
        keys.sort_unstable();
        let mut out = Vec::with_capacity(HEADER + keys.len() * (8 + 4 * classes));
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&VERSION.to_le_bytes());
        out.extend_from_slice(&fingerprint.to_le_bytes());
        out.extend_from_slice(&(classes as u32).to_le_bytes());
        out.extend_from_slice(&(keys.len() as u64).to_le_bytes());
        for k in keys {
            let row = &self.cache[&k];
            if row.len() != classes {
                return Err(NnError::Config(
                    "distillation: cached teacher logits of two widths".into(),
                ));
            }
            out.extend_from_slice(&k.to_le_bytes());
            row.iter()
                .for_each(|v| out.extend_from_slice(&v.to_le_bytes()));
        }
        Ok(out)
    }

    /// Adds the logits of a cache file's `bytes` (named `path` in errors) to the cache;
    /// returns how many images it held.
    ///
    /// Errors: a bad magic or version, another teacher's `fingerprint`, sizes that disagree
    /// with the bytes present, or non-finite logits.
    pub fn load_cache(&mut self, bytes: &[u8], fingerprint: u64, path: &str) -> Result<usize> {
        let corrupt = |reason: String| NnError::Corrupt {
            path: path.into(),
            what: "teacher logits cache".into(),
            reason,
        };
        if bytes.len() < HEADER || &bytes[..4] != MAGIC {
            return Err(corrupt(format!(
                "{} bytes without the {MAGIC:?} header",
                bytes.len()
            )));
        }
        let u32_at = |o: usize| u32::from_le_bytes(le_bytes(&bytes[o..]));
        let u64_at = |o: usize| u64::from_le_bytes(le_bytes(&bytes[o..]));
        let version = u32_at(4);
        if version != VERSION {
            return Err(corrupt(format!("version {version}, expected {VERSION}")));
        }
        let stored = u64_at(8);
        if stored != fingerprint {
            return Err(corrupt(format!(
                "made by teacher {stored:#018x}, not this one ({fingerprint:#018x})"
            )));
        }
        let classes = u32_at(16) as usize;
        let images = u64_at(20);
        if !(1..=MAX_CLASSES).contains(&classes) {
            return Err(corrupt(format!("{classes} classes (1 to {MAX_CLASSES})")));
        }
        let row = 8 + 4 * classes;
        let body = bytes.len() - HEADER;
        if usize::try_from(images)
            .ok()
            .and_then(|n| n.checked_mul(row))
            != Some(body)
        {
            return Err(corrupt(format!(
                "{images} images of {classes} classes need {row} bytes each, {body} bytes follow the header"
            )));
        }
        let mut rows = Vec::with_capacity(body / row);
        for chunk in bytes[HEADER..].chunks_exact(row) {
            let key = u64::from_le_bytes(le_bytes(chunk));
            let logits: Box<[f32]> = chunk[8..]
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes(le_bytes(b)))
                .collect();
            if let Some(v) = logits.iter().find(|v| !v.is_finite()) {
                return Err(corrupt(format!("logit {v} of image {key:#018x}")));
            }
            rows.push((key, logits));
        }
        self.cache.extend(rows);
        Ok(body / row)
    }
}

/// The first `N` bytes of `b` (callers have checked its length).
fn le_bytes<const N: usize>(b: &[u8]) -> [u8; N] {
    let mut a = [0u8; N];
    a.copy_from_slice(&b[..N]);
    a
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DistillParams;
    use nn::trainer::Objective;
    use tensor_core::Tensor;
    use tensor_core::rng::Rng;

    fn distillation(seed: u64) -> Distillation {
        let teacher = nn::zoo::build("lenet300", &mut Rng::seed_from_u64(seed)).unwrap();
        Distillation::new(teacher, DistillParams::default()).unwrap()
    }

    #[test]
    fn a_loaded_cache_replaces_the_teachers_passes_bit_for_bit() {
        let mut a = distillation(3);
        let x = crate::objective::tests::batch(4, 6);
        let student = Tensor::new(&[6, 10], vec![0.25; 60]).unwrap();
        let labels = [1, 2, 3, 4, 5, 6];
        let want = a.loss(&student, &x, &labels).unwrap();
        let bytes = a.cache_bytes(42).unwrap();
        assert_eq!(bytes.len(), HEADER + 6 * (8 + 40));
        // A teacher of other weights: only the cache can give the first teacher's loss.
        let mut b = distillation(9);
        assert_eq!(b.load_cache(&bytes, 42, "c").unwrap(), 6);
        let got = b.loss(&student, &x, &labels).unwrap();
        assert_eq!(b.teacher_passes(), 0);
        assert_eq!(want.0.to_bits(), got.0.to_bits());
        assert_eq!(want.1.data(), got.1.data());
    }

    #[test]
    fn corrupt_or_foreign_files_are_refused() {
        let mut a = distillation(3);
        let student = Tensor::new(&[2, 10], vec![0.0; 20]).unwrap();
        a.loss(&student, &crate::objective::tests::batch(1, 2), &[0, 1])
            .unwrap();
        let good = a.cache_bytes(7).unwrap();
        let mut b = distillation(3);
        assert!(b.load_cache(&good, 8, "c").is_err(), "another teacher");
        assert!(b.load_cache(&good[..good.len() - 1], 7, "c").is_err());
        assert!(b.load_cache(&good[..10], 7, "c").is_err());
        let mut huge = good.clone();
        huge[20..28].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(b.load_cache(&huge, 7, "c").is_err(), "image count");
        let mut wide = good.clone();
        wide[16..20].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(b.load_cache(&wide, 7, "c").is_err(), "classes");
        let mut nan = good.clone();
        let at = HEADER + 8;
        nan[at..at + 4].copy_from_slice(&f32::NAN.to_le_bytes());
        assert!(b.load_cache(&nan, 7, "c").is_err(), "NaN logit");
        let mut magic = good.clone();
        magic[0] = b'X';
        assert!(b.load_cache(&magic, 7, "c").is_err());
        assert_eq!(
            b.cached_images(),
            0,
            "nothing half-loaded before the checks"
        );
        assert_eq!(b.load_cache(&good, 7, "c").unwrap(), 2);
    }
}
