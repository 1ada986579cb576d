//! Labelled image sets from NumPy arrays: the layouts `.npz` archives and `.npy` pairs hold.
//!
//! Images are `[N, H, W]`, `[N, C, H, W]` or `[N, H, W, C]` (channels last is recognised when
//! the last axis has at most 4 entries and the second more than 4), `uint8` (scaled by
//! `1/255`, exactly as the IDX reader does) or float (kept as stored, and required finite).
//! Labels are `[N]` (or `[N, 1]`) of any integer type, each in `0..=65535` ([`Label`]). The result is a
//! [`Dataset`] `[N, C, H, W]` whose class count is one more than the largest label.

use std::path::Path;

use nn::Dataset;
use nn::data::Label;
use nn::io::npy::{NpyHeader, parse_header, parse_npy};
use tensor_core::Tensor;

use crate::error::{InteropError, Result};

/// The `.npy` bytes of an images array and of its labels array, with names for errors.
pub struct ArrayPair<'a> {
    /// The file the arrays came from (archive or directory).
    pub file: &'a Path,
    /// Name of the images entry (e.g. `x_train.npy`).
    pub images_name: &'a str,
    /// Its bytes.
    pub images: &'a [u8],
    /// Name of the labels entry.
    pub labels_name: &'a str,
    /// Its bytes.
    pub labels: &'a [u8],
}

/// Images `[N, C, H, W]` from `.npy` bytes (see the module docs for the layouts).
pub fn images_from_npy(file: &Path, entry: &str, bytes: &[u8]) -> Result<Tensor> {
    let source = format!("{}: {entry}", file.display());
    let header = parse_header(bytes, &source)?;
    let dims = header.dims.clone();
    let layout = match *dims.as_slice() {
        [n, h, w] => Layout::Nchw([n, 1, h, w]),
        [n, a, h, c] if c <= 4 && a > 4 => Layout::Nhwc([n, a, h, c]),
        [n, c, h, w] => Layout::Nchw([n, c, h, w]),
        _ => {
            return Err(InteropError::Shape {
                file: source,
                reason: format!(
                    "images of shape {dims:?}: want N x H x W, N x C x H x W or N x H x W x C"
                ),
            });
        }
    };
    let scale = element_scale(&header, file, entry)?;
    let raw = parse_npy(bytes, &source)?;
    let mut data = raw.into_vec();
    if let Some(i) = data.iter().position(|v| !v.is_finite()) {
        return Err(InteropError::corrupt(
            file,
            entry,
            format!("image element {i} is {} (non-finite)", data[i]),
        ));
    }
    if let Some(s) = scale {
        data.iter_mut().for_each(|v| *v /= s);
    }
    Ok(match layout {
        Layout::Nchw(d) => Tensor::new(&d, data)?,
        Layout::Nhwc([n, h, w, c]) => {
            Tensor::new(&[n, c, h, w], nhwc_to_nchw(&data, [n, h, w, c]))?
        }
    })
}

/// The divisor of an images array's elements: 255 for `uint8`, none for floats; other
/// integer types are refused (their range is unknown).
fn element_scale(header: &NpyHeader, file: &Path, entry: &str) -> Result<Option<f32>> {
    match header.descr.as_str() {
        "|u1" | "<u1" => Ok(Some(255.0)),
        _ if !header.is_integer() => Ok(None),
        d => Err(InteropError::corrupt(
            file,
            entry,
            format!("images of element type {d}: want uint8 (scaled by 1/255) or float"),
        )),
    }
}

enum Layout {
    Nchw([usize; 4]),
    Nhwc([usize; 4]),
}

/// Channels-last elements `[N, H, W, C]` reordered to `[N, C, H, W]`.
pub fn nhwc_to_nchw(data: &[f32], [n, h, w, c]: [usize; 4]) -> Vec<f32> {
    let mut out = vec![0.0; data.len()];
    let plane = h * w;
    for img in 0..n {
        let src = &data[img * plane * c..(img + 1) * plane * c];
        let dst = &mut out[img * plane * c..(img + 1) * plane * c];
        for (p, px) in src.chunks_exact(c).enumerate() {
            for (ch, &v) in px.iter().enumerate() {
                dst[ch * plane + p] = v;
            }
        }
    }
    out
}

/// Labels from `.npy` bytes: `[N]` or `[N, 1]` integers in `0..=65535`.
pub fn labels_from_npy(file: &Path, entry: &str, bytes: &[u8]) -> Result<Vec<Label>> {
    let source = format!("{}: {entry}", file.display());
    let header = parse_header(bytes, &source)?;
    if !header.is_integer() {
        return Err(InteropError::corrupt(
            file,
            entry,
            format!(
                "labels of element type {}: want an integer type",
                header.descr
            ),
        ));
    }
    match header.dims.as_slice() {
        [_] | [_, 1] => {}
        d => {
            return Err(InteropError::Shape {
                file: source,
                reason: format!("labels of shape {d:?}: want [N] or [N, 1]"),
            });
        }
    }
    let values = parse_npy(bytes, &source)?.into_vec();
    values
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            if (0.0..=f32::from(Label::MAX)).contains(&v) {
                Ok(v as Label)
            } else {
                Err(InteropError::corrupt(
                    file,
                    entry,
                    format!("label {v} at index {i} is not in 0..={}", Label::MAX),
                ))
            }
        })
        .collect()
}

/// A dataset from an images and a labels array (their counts must agree); `classes` is one
/// more than the largest label unless `classes` is given.
pub fn dataset(pair: &ArrayPair<'_>, classes: Option<usize>) -> Result<Dataset> {
    let images = images_from_npy(pair.file, pair.images_name, pair.images)?;
    let labels = labels_from_npy(pair.file, pair.labels_name, pair.labels)?;
    if images.dims()[0] != labels.len() {
        return Err(InteropError::corrupt(
            pair.file,
            pair.labels_name,
            format!(
                "{} labels for {} images in {}",
                labels.len(),
                images.dims()[0],
                pair.images_name
            ),
        ));
    }
    let classes = classes.unwrap_or_else(|| class_count(&labels));
    Ok(Dataset::new(images, labels, classes)?)
}

/// One more than the largest label (0 for no labels).
pub fn class_count(labels: &[Label]) -> usize {
    labels.iter().max().map_or(0, |&m| m as usize + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nhwc_reorders_channels() {
        // One 1x2 image with 3 channels: pixels (1,2,3) and (4,5,6).
        let out = nhwc_to_nchw(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], [1, 1, 2, 3]);
        assert_eq!(out, [1.0, 4.0, 2.0, 5.0, 3.0, 6.0]);
    }
}
