//! safetensors import and export with PyTorch `state_dict` names, and the f16/bf16 <-> f32
//! conversions that reading half-precision weights needs.
//!
//! A safetensors file holds named tensors only, no architecture. slimnet therefore builds the
//! zoo architecture named by `--arch` ([`crate::zoo::build`]) and assigns the file's tensors to
//! its parametric layers in order, under the names PyTorch gives the attributes of a module
//! written as the zoo describes it: the k-th convolution is `conv{k}`, the k-th linear layer
//! `fc{k}`, the k-th BatchNorm `bn{k}` (k from 1), each with `.weight`, `.bias` and for
//! BatchNorm `.running_mean` / `.running_var` (`num_batches_tracked` is ignored). Files whose
//! names are `nn.Sequential` indices (`0.weight`, `3.bias`, `features.0.weight`, ...) are also
//! accepted: their modules are taken in numeric order. A missing or extra tensor, or a shape
//! mismatch, is an error naming the tensor.
//!
//! Element types: F32, F16 and BF16 are read as f32 (F64 too); export writes F32, or F16 /
//! BF16 with round-to-nearest-even through [`save_safetensors_as`].

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::Path;

use safetensors::tensor::{Dtype, SafeTensors, View};
use tensor_core::Tensor;

use crate::error::{NnError, Result};
use crate::model::{LayerPath, Model};

/// IEEE 754 binary16 bits to f32 (exact: every half value is an f32 value).
///
/// Layout: 1 sign bit, 5 exponent bits (bias 15), 10 mantissa bits. Exponent 0 holds zeros
/// and subnormals (`mantissa * 2^-24`), exponent 31 infinities and NaNs (payload kept).
pub fn f16_to_f32(h: u16) -> f32 {
    let sign = ((h as u32) & 0x8000) << 16;
    let exp = ((h >> 10) & 0x1f) as u32;
    let man = (h & 0x3ff) as u32;
    let bits = match exp {
        0 => {
            if man == 0 {
                sign
            } else {
                // Subnormal: the value is man * 2^-24, exactly representable in f32.
                let v = man as f32 * f32::from_bits(0x3380_0000); // 2^-24
                return if sign != 0 { -v } else { v };
            }
        }
        31 => sign | 0x7f80_0000 | (man << 13),
        _ => sign | ((exp + 127 - 15) << 23) | (man << 13),
    };
    f32::from_bits(bits)
}

/// f32 to IEEE 754 binary16 bits, rounding to nearest, ties to even; overflow gives
/// infinity, NaN stays NaN (quiet), values below half the smallest subnormal give zero.
pub fn f32_to_f16(f: f32) -> u16 {
    let x = f.to_bits();
    let sign = ((x >> 16) & 0x8000) as u16;
    let exp = ((x >> 23) & 0xff) as i32;
    let man = x & 0x7f_ffff;
    if exp == 0xff {
        return if man == 0 {
            sign | 0x7c00
        } else {
            sign | 0x7e00 | (man >> 13) as u16
        };
    }
    let e = exp - 127 + 15;
    if e >= 31 {
        return sign | 0x7c00;
    }
    if e <= 0 {
        // Subnormal half (or zero): mantissa = (1.man) * 2^(exp - 126) in units of 2^-24.
        if e < -10 {
            return sign;
        }
        let m = man | 0x80_0000;
        let shift = (14 - e) as u32;
        let mut r = m >> shift;
        let rem = m & ((1 << shift) - 1);
        let half = 1 << (shift - 1);
        if rem > half || (rem == half && (r & 1) == 1) {
            r += 1;
        }
        return sign | r as u16;
    }
    let mut r = ((e as u32) << 10) | (man >> 13);
    let rem = man & 0x1fff;
    if rem > 0x1000 || (rem == 0x1000 && (r & 1) == 1) {
        // A carry into the exponent is the correct rounding (up to infinity at the top).
        r += 1;
    }
    sign | r as u16
}

/// bfloat16 bits to f32 (exact: bf16 is the upper half of an f32).
pub fn bf16_to_f32(h: u16) -> f32 {
    f32::from_bits((h as u32) << 16)
}

/// f32 to bfloat16 bits, rounding to nearest, ties to even; NaN stays NaN (quiet).
pub fn f32_to_bf16(f: f32) -> u16 {
    let x = f.to_bits();
    if f.is_nan() {
        return ((x >> 16) as u16) | 0x0040;
    }
    let round = 0x7fff + ((x >> 16) & 1);
    (x.wrapping_add(round) >> 16) as u16
}

/// Element type of an exported safetensors file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SaveDtype {
    /// 32-bit float (exact).
    F32,
    /// IEEE half (rounded to nearest even).
    F16,
    /// bfloat16 (rounded to nearest even).
    BF16,
}

/// One named parameter of a model, in state_dict order.
struct Slot {
    /// `conv1.weight`, ...
    name: String,
    /// Path of the layer in the model.
    layer: LayerPath,
    /// The parameter's name within the layer.
    param: &'static str,
    /// Its dimensions.
    dims: Vec<usize>,
}

/// The PyTorch module prefix of a layer kind (`conv2d` -> `conv`), or None for layers
/// without parameters.
fn prefix_of(kind: &str) -> Option<&'static str> {
    match kind {
        "conv2d" | "conv" => Some("conv"),
        "linear" => Some("fc"),
        "batchnorm2d" | "batch_norm" | "batchnorm" => Some("bn"),
        _ => None,
    }
}

/// The state_dict names of `model`'s parameters and buffers, in the order of the model walk
/// (branches of a Parallel included). A layer that holds parameters in a form other than f32
/// tensors (a compressed layer: sparse, shared, int8, binary) cannot be carried and is an
/// error naming it.
fn slots(model: &Model) -> Result<Vec<Slot>> {
    let mut counts: BTreeMap<&'static str, usize> = BTreeMap::new();
    let mut out = Vec::new();
    let mut err = None;
    model.visit(&mut |path, layer| {
        if err.is_some() || layer.param_count() == 0 || !layer.branches().is_empty() {
            return;
        }
        let params = layer.params();
        let Some(prefix) = prefix_of(layer.kind()).filter(|_| !params.is_empty()) else {
            err = Some(NnError::Unsupported(format!(
                "safetensors: layer {path} ({}) holds its {} parameters in a form safetensors \
                 cannot carry (only dense f32 linear, conv2d and batchnorm2d tensors); keep \
                 the native format for compressed models",
                layer.kind(),
                layer.param_count()
            )));
            return;
        };
        let k = counts.entry(prefix).or_insert(0);
        *k += 1;
        for p in params {
            out.push(Slot {
                name: format!("{prefix}{k}.{}", p.name),
                layer: path.clone(),
                param: p.name,
                dims: p.value.dims().to_vec(),
            });
        }
    });
    match err {
        Some(e) => Err(e),
        None => Ok(out),
    }
}

/// Splits `a.b.3.weight` into module path `a.b.3` and attribute `weight`.
fn split_name(name: &str) -> (&str, &str) {
    match name.rfind('.') {
        Some(i) => (&name[..i], &name[i + 1..]),
        None => ("", name),
    }
}

/// Sort key of a module path: numeric segments by value, others by name.
type ModuleKey = Vec<(u64, String)>;

/// Orders module paths numerically segment by segment (`features.10` after `features.2`).
fn module_key(path: &str) -> ModuleKey {
    path.split('.')
        .map(|s| match s.parse::<u64>() {
            Ok(n) => (n, String::new()),
            Err(_) => (u64::MAX, s.to_string()),
        })
        .collect()
}

/// Reads the tensor `view` as f32, naming `name` in errors.
fn view_to_f32(
    name: &str,
    view: &safetensors::tensor::TensorView<'_>,
    source: &str,
) -> Result<Vec<f32>> {
    let data = view.data();
    let n: usize = view.shape().iter().product();
    let (size, conv): (usize, fn(&[u8]) -> f32) = match view.dtype() {
        Dtype::F32 => (4, |b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
        Dtype::F16 => (2, |b| f16_to_f32(u16::from_le_bytes([b[0], b[1]]))),
        Dtype::BF16 => (2, |b| bf16_to_f32(u16::from_le_bytes([b[0], b[1]]))),
        Dtype::F64 => (8, |b| {
            f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]) as f32
        }),
        other => {
            return Err(NnError::Unsupported(format!(
                "{source}: tensor {name} has element type {other:?} (want F32, F16, BF16 or F64)"
            )));
        }
    };
    if n.checked_mul(size) != Some(data.len()) {
        return Err(NnError::corrupt(
            source,
            format!("tensor {name}"),
            format!(
                "shape {:?} needs {n} elements, data holds {} bytes",
                view.shape(),
                data.len()
            ),
        ));
    }
    Ok(data.chunks_exact(size).map(conv).collect())
}

/// The first tensor (by name) whose data offsets reach past the end of the file, with the
/// reason: what a "file not fully covered" error of the safetensors crate means in a
/// truncated file. `None` when the header cannot be read or every tensor fits.
fn tensor_past_end(bytes: &[u8]) -> Option<(String, String)> {
    let n = usize::try_from(u64::from_le_bytes(bytes.get(..8)?.try_into().ok()?)).ok()?;
    let header = std::str::from_utf8(bytes.get(8..8usize.checked_add(n)?)?).ok()?;
    let data_len = bytes.len() - 8 - n;
    let header: serde_json::Map<String, serde_json::Value> = serde_json::from_str(header).ok()?;
    header
        .iter()
        .filter(|(name, _)| *name != "__metadata__")
        .filter_map(|(name, info)| {
            let offsets = info.get("data_offsets")?.as_array()?;
            let (begin, end) = (offsets.first()?.as_u64()?, offsets.get(1)?.as_u64()?);
            (end > data_len as u64).then(|| {
                (
                    name.clone(),
                    format!(
                        "data offsets [{begin}, {end}] exceed the {data_len} data bytes of the \
                         file (truncated?)"
                    ),
                )
            })
        })
        .min()
}

/// Assigns the tensors of a safetensors buffer to `model`'s parameters (see the module doc
/// for the naming). `source` names the buffer in errors.
pub fn assign_safetensors(model: &mut Model, bytes: &[u8], source: &str) -> Result<()> {
    let st = SafeTensors::deserialize(bytes).map_err(|e| match tensor_past_end(bytes) {
        Some((name, reason)) => {
            NnError::corrupt(source, format!("safetensors tensor {name}"), reason)
        }
        None => NnError::corrupt(source, "safetensors header", e.to_string()),
    })?;
    let slots = slots(model)?;
    let mut file: BTreeMap<String, safetensors::tensor::TensorView<'_>> = st
        .tensors()
        .into_iter()
        .filter(|(n, _)| !n.ends_with("num_batches_tracked"))
        .collect();
    let expected: Vec<&str> = slots.iter().map(|s| s.name.as_str()).collect();
    let by_convention = expected.iter().all(|n| file.contains_key(*n));
    // Map slot name -> file name.
    let mapping: Vec<String> = if by_convention {
        expected.iter().map(|s| s.to_string()).collect()
    } else {
        // Positional: group the file's tensors by module, modules in numeric order, and pair
        // them with the model's layers in order.
        let mut modules: BTreeMap<ModuleKey, (String, Vec<String>)> = BTreeMap::new();
        for name in file.keys() {
            let (m, _) = split_name(name);
            modules
                .entry(module_key(m))
                .or_insert_with(|| (m.to_string(), Vec::new()))
                .1
                .push(name.clone());
        }
        let numeric = modules
            .keys()
            .all(|k| k.iter().any(|(n, _)| *n != u64::MAX));
        let mut layer_modules: Vec<&LayerPath> = slots.iter().map(|s| &s.layer).collect();
        layer_modules.dedup();
        if !numeric || modules.len() != layer_modules.len() {
            let missing: Vec<&str> = expected
                .iter()
                .filter(|n| !file.contains_key(**n))
                .copied()
                .collect();
            return Err(NnError::Config(format!(
                "{source}: missing tensor(s) {missing:?} for architecture {} (expects {expected:?}; \
                 file has {:?})",
                model.name,
                file.keys().collect::<Vec<_>>()
            )));
        }
        let module_paths: Vec<String> = modules.values().map(|(m, _)| m.clone()).collect();
        slots
            .iter()
            .map(|s| {
                let k = layer_modules
                    .iter()
                    .position(|&l| *l == s.layer)
                    .unwrap_or(0);
                let m = &module_paths[k];
                if m.is_empty() {
                    s.param.to_string()
                } else {
                    format!("{m}.{}", s.param)
                }
            })
            .collect()
    };
    // Check every tensor before changing the model.
    let mut values: Vec<Vec<f32>> = Vec::with_capacity(slots.len());
    for (slot, fname) in slots.iter().zip(&mapping) {
        let view = file.remove(fname).ok_or_else(|| {
            NnError::Config(format!(
                "{source}: missing tensor {fname} (for {} of layer {})",
                slot.name, slot.layer
            ))
        })?;
        if view.shape() != slot.dims.as_slice() {
            return Err(NnError::Config(format!(
                "{source}: tensor {fname} has shape {:?}, architecture {} needs {:?}",
                view.shape(),
                model.name,
                slot.dims
            )));
        }
        values.push(view_to_f32(fname, &view, source)?);
    }
    if !file.is_empty() {
        return Err(NnError::Config(format!(
            "{source}: extra tensor(s) {:?} not used by architecture {}",
            file.keys().collect::<Vec<_>>(),
            model.name
        )));
    }
    for (slot, v) in slots.iter().zip(values) {
        set_param(model, &slot.layer, slot.param, v)?;
    }
    Ok(())
}

/// Overwrites parameter `param` of layer `layer` (trainable parameters through
/// `params_mut`, buffers through the layer's record).
fn set_param(model: &mut Model, layer: &LayerPath, param: &str, v: Vec<f32>) -> Result<()> {
    let l = model
        .layer_mut(layer)
        .ok_or_else(|| NnError::Config(format!("safetensors: no layer at {layer}")))?;
    for p in l.params_mut() {
        if p.name == param {
            p.value.data_mut().copy_from_slice(&v);
            return Ok(());
        }
    }
    crate::layers::set_buffer(l.as_mut(), param, &v)
}

/// Builds zoo architecture `arch` (a zoo name or an architecture spec such as
/// `mlp:784-300-10`, `nn::zoo::build_spec`) and loads the safetensors file at `path` into it.
pub fn load_safetensors(path: impl AsRef<Path>, arch: &str) -> Result<Model> {
    load_safetensors_inferred(path, Some(arch))
}

/// The architecture a safetensors image records in its `slimnet_arch` metadata (slimnet's
/// writer stores the model's name there), if any.
pub fn recorded_arch(bytes: &[u8]) -> Option<String> {
    let (_, meta) = SafeTensors::read_metadata(bytes).ok()?;
    meta.metadata().as_ref()?.get("slimnet_arch").cloned()
}

/// [`load_safetensors`] with the architecture `arch`, or when `None` the one the file records
/// ([`recorded_arch`]); a file that records none needs `arch` (the error says so).
pub fn load_safetensors_inferred(path: impl AsRef<Path>, arch: Option<&str>) -> Result<Model> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|e| NnError::io(path, e))?;
    let given = arch.is_some();
    let arch = match arch {
        Some(a) => a.to_string(),
        None => recorded_arch(&bytes).ok_or_else(|| {
            NnError::Config(format!(
                "{}: a safetensors file holds weights only and this one records no \
                 architecture (slimnet_arch); name it with --arch ({}, or a spec such as \
                 mlp:784-300-10)",
                path.display(),
                crate::zoo::NAMES.join(", ")
            ))
        })?,
    };
    // The weights are all overwritten: the seed only fills them before that.
    let mut rng = tensor_core::rng::Rng::seed_from_u64(0);
    let mut model = crate::zoo::build_spec(&arch, &mut rng).map_err(|e| {
        let from = if given {
            "given with --arch"
        } else {
            "recorded in the file (slimnet_arch); name another with --arch"
        };
        NnError::Config(format!(
            "{}: architecture {arch:?} {from}: {e}",
            path.display()
        ))
    })?;
    assign_safetensors(&mut model, &bytes, &path.display().to_string())?;
    Ok(model)
}

/// A tensor to serialize: its dtype, shape and little-endian bytes.
struct Owned {
    dtype: Dtype,
    shape: Vec<usize>,
    bytes: Vec<u8>,
}

impl View for &Owned {
    fn dtype(&self) -> Dtype {
        self.dtype
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(&self.bytes)
    }
    fn data_len(&self) -> usize {
        self.bytes.len()
    }
}

/// The safetensors encoding of `model`'s parameters with PyTorch names, in `dtype`.
pub fn safetensors_bytes(model: &Model, dtype: SaveDtype) -> Result<Vec<u8>> {
    let slots = slots(model)?;
    let mut owned: Vec<(String, Owned)> = Vec::with_capacity(slots.len());
    for s in &slots {
        let layer = model
            .layer(&s.layer)
            .ok_or_else(|| NnError::Config(format!("safetensors: {} vanished", s.name)))?;
        let params = layer.params();
        let t: &Tensor = params
            .iter()
            .find(|p| p.name == s.param)
            .map(|p| p.value)
            .ok_or_else(|| NnError::Config(format!("safetensors: {} vanished", s.name)))?;
        let mut bytes = Vec::with_capacity(t.numel() * 4);
        let dt = match dtype {
            SaveDtype::F32 => {
                t.data()
                    .iter()
                    .for_each(|v| bytes.extend_from_slice(&v.to_le_bytes()));
                Dtype::F32
            }
            SaveDtype::F16 => {
                t.data()
                    .iter()
                    .for_each(|&v| bytes.extend_from_slice(&f32_to_f16(v).to_le_bytes()));
                Dtype::F16
            }
            SaveDtype::BF16 => {
                t.data()
                    .iter()
                    .for_each(|&v| bytes.extend_from_slice(&f32_to_bf16(v).to_le_bytes()));
                Dtype::BF16
            }
        };
        owned.push((
            s.name.clone(),
            Owned {
                dtype: dt,
                shape: s.dims.clone(),
                bytes,
            },
        ));
    }
    let mut meta = std::collections::HashMap::new();
    meta.insert("format".to_string(), "pt".to_string());
    meta.insert("slimnet_arch".to_string(), model.name.clone());
    safetensors::serialize(owned.iter().map(|(n, o)| (n.as_str(), o)), Some(meta))
        .map_err(|e| NnError::Config(format!("safetensors: {e}")))
}

/// Writes `model`'s parameters as an f32 safetensors file with PyTorch names.
pub fn save_safetensors(model: &Model, path: impl AsRef<Path>) -> Result<()> {
    save_safetensors_as(model, path, SaveDtype::F32)
}

/// Writes `model`'s parameters as a safetensors file in `dtype`.
pub fn save_safetensors_as(model: &Model, path: impl AsRef<Path>, dtype: SaveDtype) -> Result<()> {
    let path = path.as_ref();
    let bytes = safetensors_bytes(model, dtype)?;
    crate::io::atomic::write_atomic(path, &bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f16_edge_values() {
        let cases: &[(u16, f32)] = &[
            (0x0000, 0.0),
            (0x8000, -0.0),
            (0x3c00, 1.0),
            (0xc000, -2.0),
            (0x7bff, 65504.0),
            (0x0400, 2f32.powi(-14)),          // smallest normal
            (0x0001, 2f32.powi(-24)),          // smallest subnormal
            (0x03ff, 1023.0 * 2f32.powi(-24)), // largest subnormal
            (0x7c00, f32::INFINITY),
            (0xfc00, f32::NEG_INFINITY),
            (0x3555, 1365.0 / 4096.0),
        ];
        for &(h, f) in cases {
            let g = f16_to_f32(h);
            assert_eq!(g.to_bits(), f.to_bits(), "f16 {h:#06x} -> {g} want {f}");
            assert_eq!(f32_to_f16(f), h, "f32 {f} -> f16");
        }
        assert!(f16_to_f32(0x7e00).is_nan());
        assert!(f16_to_f32(0xfd01).is_nan());
        assert!(f16_to_f32(f32_to_f16(f32::NAN)).is_nan());
        // Every finite half round-trips exactly.
        for h in 0..=u16::MAX {
            let f = f16_to_f32(h);
            if f.is_nan() {
                continue;
            }
            assert_eq!(f32_to_f16(f), h, "{h:#06x}");
        }
        // Rounding: overflow, ties to even, underflow.
        assert_eq!(f32_to_f16(65520.0), 0x7c00);
        assert_eq!(f32_to_f16(65519.0), 0x7bff);
        assert_eq!(f32_to_f16(1.0 + 1.0 / 2048.0), 0x3c00); // tie -> even (down)
        assert_eq!(f32_to_f16(1.0 + 3.0 / 2048.0), 0x3c02); // tie -> even (up)
        assert_eq!(f32_to_f16(2.0f32.powi(-25)), 0x0000); // tie at half the smallest subnormal
        assert_eq!(f32_to_f16(2.0f32.powi(-25) * 1.5), 0x0001);
        assert_eq!(f32_to_f16(-1e-10), 0x8000);
    }

    #[test]
    fn bf16_edge_values() {
        for h in [
            0x0000u16, 0x8000, 0x3f80, 0x0001, 0x807f, 0x7f7f, 0x7f80, 0xff80,
        ] {
            assert_eq!(f32_to_bf16(bf16_to_f32(h)), h);
        }
        assert_eq!(bf16_to_f32(0x3f80), 1.0);
        assert_eq!(bf16_to_f32(0x0001).to_bits(), 0x0001_0000); // subnormal
        assert!(bf16_to_f32(0x7fc0).is_nan());
        assert!(bf16_to_f32(f32_to_bf16(f32::NAN)).is_nan());
        assert_eq!(f32_to_bf16(f32::from_bits(0x3f80_8000)), 0x3f80); // tie -> even
        assert_eq!(f32_to_bf16(f32::from_bits(0x3f81_8000)), 0x3f82); // tie -> even
        assert_eq!(f32_to_bf16(f32::from_bits(0x3f80_8001)), 0x3f81);
        assert_eq!(f32_to_bf16(f32::MAX), 0x7f80); // rounds up to infinity
    }
}
