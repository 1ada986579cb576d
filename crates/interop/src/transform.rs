//! Input preprocessing given on the command line or stored in a model's metadata: resizing
//! (bilinear) and per-channel normalization, and the check that data fits a model.
//!
//! Resizing is bilinear interpolation with half-pixel centres and edge clamping, the rule of
//! PyTorch's `F.interpolate(mode="bilinear", align_corners=False)` (without antialiasing).
//! Normalization is `(x - mean[c]) / std[c]` per channel `c`, as torchvision's `Normalize`.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use nn::Dataset;
use tensor_core::Tensor;

use crate::error::{InteropError, Result};

/// Metadata key of a model's normalization (a [`Normalize`] in its text form).
pub const META_NORMALIZE: &str = "input.normalize";
/// Metadata key of a model's input size (a [`Resize`] in its text form).
pub const META_RESIZE: &str = "input.resize";

/// An output size `HxW` for resizing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Resize {
    /// Output height.
    pub height: usize,
    /// Output width.
    pub width: usize,
}

impl FromStr for Resize {
    type Err = InteropError;
    fn from_str(s: &str) -> Result<Self> {
        let bad = || InteropError::Config(format!("resize {s:?}: want HxW, e.g. 32x32"));
        let (h, w) = s.split_once(['x', 'X']).ok_or_else(bad)?;
        let side = |v: &str| match v.trim().parse::<usize>() {
            Ok(n) if (1..=16_384).contains(&n) => Ok(n),
            _ => Err(bad()),
        };
        Ok(Self {
            height: side(h)?,
            width: side(w)?,
        })
    }
}

impl fmt::Display for Resize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}x{}", self.height, self.width)
    }
}

/// Per-channel mean and standard deviation (one value each applies to every channel).
#[derive(Clone, Debug, PartialEq)]
pub struct Normalize {
    /// Mean per channel.
    pub mean: Vec<f32>,
    /// Standard deviation per channel (positive).
    pub std: Vec<f32>,
}

impl FromStr for Normalize {
    type Err = InteropError;
    /// `mean=0.49,0.48,0.45:std=0.25,0.24,0.26`.
    fn from_str(s: &str) -> Result<Self> {
        let bad = |why: &str| {
            InteropError::Config(format!(
                "normalize {s:?}: {why} (want mean=M1,M2,..:std=S1,S2,.., e.g. \
                 mean=0.49,0.48,0.45:std=0.25,0.24,0.26)"
            ))
        };
        let (mut mean, mut std) = (None, None);
        for part in s.split(':') {
            let (key, values) = part.split_once('=').ok_or_else(|| bad("no '='"))?;
            let values: Vec<f32> = values
                .split(',')
                .map(|v| v.trim().parse::<f32>())
                .collect::<std::result::Result<_, _>>()
                .map_err(|_| bad("a value is not a number"))?;
            match key.trim() {
                "mean" => mean = Some(values),
                "std" => std = Some(values),
                _ => return Err(bad("keys are mean and std")),
            }
        }
        let (mean, std) = (
            mean.ok_or_else(|| bad("no mean"))?,
            std.ok_or_else(|| bad("no std"))?,
        );
        if mean.len() != std.len() {
            return Err(bad("mean and std differ in length"));
        }
        if mean.iter().any(|m| !m.is_finite()) || std.iter().any(|s| !(s.is_finite() && *s > 0.0)) {
            return Err(bad("means must be finite and deviations positive"));
        }
        Ok(Self { mean, std })
    }
}

impl fmt::Display for Normalize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list = |v: &[f32]| v.iter().map(f32::to_string).collect::<Vec<_>>().join(",");
        write!(f, "mean={}:std={}", list(&self.mean), list(&self.std))
    }
}

/// The preprocessing applied to every sample: resize first, then normalize.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Transform {
    /// Output size, if resizing.
    pub resize: Option<Resize>,
    /// Normalization, if any.
    pub normalize: Option<Normalize>,
}

impl Transform {
    /// The transform stored in a model's metadata ([`META_RESIZE`], [`META_NORMALIZE`]).
    pub fn from_metadata(meta: &BTreeMap<String, String>) -> Result<Self> {
        Ok(Self {
            resize: meta.get(META_RESIZE).map(|s| s.parse()).transpose()?,
            normalize: meta.get(META_NORMALIZE).map(|s| s.parse()).transpose()?,
        })
    }

    /// The metadata entries that store this transform.
    pub fn to_metadata(&self) -> BTreeMap<String, String> {
        let mut m = BTreeMap::new();
        if let Some(r) = &self.resize {
            m.insert(META_RESIZE.to_string(), r.to_string());
        }
        if let Some(n) = &self.normalize {
            m.insert(META_NORMALIZE.to_string(), n.to_string());
        }
        m
    }

    /// `self`, with each field that `self` lacks taken from `fallback`.
    pub fn or(self, fallback: Transform) -> Self {
        Self {
            resize: self.resize.or(fallback.resize),
            normalize: self.normalize.or(fallback.normalize),
        }
    }

    /// Whether it changes nothing.
    pub fn is_identity(&self) -> bool {
        self.resize.is_none() && self.normalize.is_none()
    }

    /// Applies the transform to images `[N, C, H, W]`.
    pub fn apply(&self, images: Tensor) -> Result<Tensor> {
        let images = match self.resize {
            Some(r) => resize_bilinear(&images, r)?,
            None => images,
        };
        match &self.normalize {
            Some(n) => normalize(images, n),
            None => Ok(images),
        }
    }

    /// Applies the transform to a dataset's images.
    pub fn apply_dataset(&self, d: Dataset) -> Result<Dataset> {
        if self.is_identity() {
            return Ok(d);
        }
        Ok(Dataset::new(self.apply(d.images)?, d.labels, d.classes)?)
    }
}

/// `(x - mean[c]) / std[c]` over images `[N, C, H, W]`.
pub fn normalize(mut images: Tensor, n: &Normalize) -> Result<Tensor> {
    let dims = images.dims().to_vec();
    let c = dims[1];
    if n.mean.len() != 1 && n.mean.len() != c {
        return Err(InteropError::Config(format!(
            "normalize: {} means and deviations for images of {c} channels",
            n.mean.len()
        )));
    }
    let plane = dims[2] * dims[3];
    if plane == 0 {
        return Ok(images);
    }
    for (i, p) in images.data_mut().chunks_exact_mut(plane).enumerate() {
        let ch = if n.mean.len() == 1 { 0 } else { i % c };
        let (m, s) = (n.mean[ch], n.std[ch]);
        p.iter_mut().for_each(|v| *v = (*v - m) / s);
    }
    Ok(images)
}

/// Bilinear resize of images `[N, C, H, W]` to `[N, C, r.height, r.width]` (half-pixel
/// centres, edges clamped).
pub fn resize_bilinear(images: &Tensor, r: Resize) -> Result<Tensor> {
    let dims = images.dims();
    let (n, c, h, w) = (dims[0], dims[1], dims[2], dims[3]);
    if (h, w) == (r.height, r.width) {
        return Ok(images.clone());
    }
    if h == 0 || w == 0 {
        return Err(InteropError::Config(format!(
            "resize: images of shape {dims:?} have no pixels"
        )));
    }
    // Source coordinate, its two neighbours and the weight of the second, per output index.
    let taps = |src: usize, dst: usize| -> Vec<(usize, usize, f32)> {
        let scale = src as f32 / dst as f32;
        (0..dst)
            .map(|o| {
                let x = ((o as f32 + 0.5) * scale - 0.5).max(0.0);
                let i0 = (x.floor() as usize).min(src - 1);
                let i1 = (i0 + 1).min(src - 1);
                (i0, i1, x - i0 as f32)
            })
            .collect()
    };
    let (ty, tx) = (taps(h, r.height), taps(w, r.width));
    let mut out = Vec::with_capacity(n * c * r.height * r.width);
    for plane in images.data().chunks_exact(h * w) {
        for &(y0, y1, fy) in &ty {
            for &(x0, x1, fx) in &tx {
                let at = |y: usize, x: usize| plane[y * w + x];
                let top = at(y0, x0) + (at(y0, x1) - at(y0, x0)) * fx;
                let bottom = at(y1, x0) + (at(y1, x1) - at(y1, x0)) * fx;
                out.push(top + (bottom - top) * fy);
            }
        }
    }
    Ok(Tensor::new(&[n, c, r.height, r.width], out)?)
}

/// The dataset shaped for a model taking samples of `input_shape`: unchanged if the shapes
/// agree, reshaped if the model takes another `[C, H, W]` of as many values (`[1, 1, 784]`
/// from `[1, 28, 28]` images), else an error naming the data, both shapes and the option that
/// would help. (A [`Dataset`] holds `[N, C, H, W]`, so a model taking a flat vector must
/// flatten itself, as the zoo's MLPs do.)
pub fn fit_to_model(d: Dataset, input_shape: &[usize], data: &str) -> Result<Dataset> {
    let sample = d.sample_shape().to_vec();
    if sample == input_shape {
        return Ok(d);
    }
    let numel: usize = sample.iter().product();
    if numel == input_shape.iter().product::<usize>() && input_shape.len() == 3 {
        let mut dims = vec![d.len()];
        dims.extend_from_slice(input_shape);
        let images = d.images.reshape(&dims)?;
        return Ok(Dataset::new(images, d.labels, d.classes)?);
    }
    Err(InteropError::Shape {
        file: data.to_string(),
        reason: format!(
            "samples of shape {sample:?} do not fit a model taking {input_shape:?} (resize \
             with --resize HxW; the channel count must match)"
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_parse_and_print_back() {
        let n: Normalize = "mean=0.49,0.48,0.45:std=0.25,0.24,0.26".parse().unwrap();
        assert_eq!(n.mean, [0.49, 0.48, 0.45]);
        assert_eq!(n.to_string().parse::<Normalize>().unwrap(), n);
        assert!("mean=0.5:std=0".parse::<Normalize>().is_err());
        assert!("mean=0.5,0.4:std=1".parse::<Normalize>().is_err());
        assert!("avg=1:std=1".parse::<Normalize>().is_err());
        let r: Resize = "32x24".parse().unwrap();
        assert_eq!((r.height, r.width), (32, 24));
        assert!("32".parse::<Resize>().is_err() && "0x3".parse::<Resize>().is_err());
        let t = Transform {
            resize: Some(r),
            normalize: Some(n),
        };
        assert_eq!(Transform::from_metadata(&t.to_metadata()).unwrap(), t);
    }

    #[test]
    fn bilinear_matches_half_pixel_reference() {
        // 1x1x2x2 -> 4x4: PyTorch's interpolate(align_corners=False) gives these rows.
        let x = Tensor::new(&[1, 1, 2, 2], vec![0.0, 1.0, 2.0, 3.0]).unwrap();
        let y = resize_bilinear(
            &x,
            Resize {
                height: 4,
                width: 4,
            },
        )
        .unwrap();
        let want = [
            0.0, 0.25, 0.75, 1.0, 0.5, 0.75, 1.25, 1.5, 1.5, 1.75, 2.25, 2.5, 2.0, 2.25, 2.75, 3.0,
        ];
        for (a, b) in y.data().iter().zip(want) {
            assert!((a - b).abs() < 1e-6, "{:?}", y.data());
        }
        // Downscaling by 2 averages 2x2 blocks.
        let x = Tensor::new(&[1, 1, 2, 2], vec![0.0, 1.0, 2.0, 3.0]).unwrap();
        let y = resize_bilinear(
            &x,
            Resize {
                height: 1,
                width: 1,
            },
        )
        .unwrap();
        assert_eq!(y.data(), &[1.5]);
    }

    #[test]
    fn normalize_per_channel() {
        let x = Tensor::new(&[1, 2, 1, 2], vec![1.0, 3.0, 5.0, 7.0]).unwrap();
        let n = Normalize {
            mean: vec![1.0, 5.0],
            std: vec![2.0, 0.5],
        };
        assert_eq!(normalize(x, &n).unwrap().data(), &[0.0, 1.0, 0.0, 4.0]);
    }

    #[test]
    fn fit_reshapes_equal_sizes_and_names_mismatches() {
        let d = Dataset::new(
            Tensor::new(&[2, 1, 2, 2], vec![0.0; 8]).unwrap(),
            vec![0u8, 1],
            2,
        )
        .unwrap();
        let flat = fit_to_model(d.clone(), &[1, 1, 4], "d").unwrap();
        assert_eq!(flat.images.dims(), &[2, 1, 1, 4]);
        assert!(fit_to_model(d.clone(), &[4], "d").is_err());
        let e = fit_to_model(d, &[3, 32, 32], "data.npz")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("data.npz") && e.contains("[1, 2, 2]") && e.contains("[3, 32, 32]"),
            "{e}"
        );
    }
}
