//! NumPy `.npy` arrays: read any numeric little-endian array as an f32 [`Tensor`], write f32.
//!
//! Format (NEP 1, "A Simple File Format for NumPy Arrays"): the magic `\x93NUMPY`, a major and
//! a minor version byte, a little-endian header length (u16 in version 1, u32 in versions 2
//! and 3), then an ASCII Python dict literal
//! `{'descr': '<f4', 'fortran_order': False, 'shape': (1, 1, 28, 28), }` padded with spaces
//! and a newline so that the data starts on a 64-byte boundary, then the raw elements.
//!
//! `slimnet run` reads its input (NCHW float32) and writes its output this way. Reading
//! accepts `<f4`, `<f8`, `<f2`, `|u1`, `|i1`, `<u2`, `<i2`, `<u4`, `<i4`, `<u8` and `<i8`
//! (converted to f32), C or
//! Fortran order; everything is validated before allocating: the element count must fit in
//! [`tensor_core::shape::MAX_ELEMENTS`] and agree with the bytes present.

use std::path::Path;

use tensor_core::{Shape, Tensor};

use crate::error::{NnError, Result};

const MAGIC: &[u8; 6] = b"\x93NUMPY";
/// Largest header accepted (NumPy itself caps headers far below this).
const MAX_HEADER: usize = 1 << 20;

/// The element types `.npy` reading understands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Descr {
    F4,
    F8,
    F2,
    U1,
    I1,
    U2,
    I2,
    U4,
    I4,
    U8,
    I8,
}

impl Descr {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "<f4" => Descr::F4,
            "<f8" => Descr::F8,
            "<f2" => Descr::F2,
            "|u1" | "<u1" => Descr::U1,
            "|i1" | "<i1" => Descr::I1,
            "<u2" => Descr::U2,
            "<i2" => Descr::I2,
            "<u4" => Descr::U4,
            "<i4" => Descr::I4,
            "<u8" => Descr::U8,
            "<i8" => Descr::I8,
            _ => return None,
        })
    }

    fn size(self) -> usize {
        match self {
            Descr::U1 | Descr::I1 => 1,
            Descr::F2 | Descr::U2 | Descr::I2 => 2,
            Descr::F4 | Descr::U4 | Descr::I4 => 4,
            Descr::F8 | Descr::U8 | Descr::I8 => 8,
        }
    }

    fn to_f32(self, b: &[u8]) -> f32 {
        // `b` has exactly `self.size()` bytes: the caller uses chunks_exact(size).
        match self {
            Descr::F4 => f32::from_le_bytes([b[0], b[1], b[2], b[3]]),
            Descr::F8 => {
                f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]) as f32
            }
            Descr::F2 => super::safetensors::f16_to_f32(u16::from_le_bytes([b[0], b[1]])),
            Descr::U1 => b[0] as f32,
            Descr::I1 => b[0] as i8 as f32,
            Descr::U2 => f32::from(u16::from_le_bytes([b[0], b[1]])),
            Descr::I2 => f32::from(i16::from_le_bytes([b[0], b[1]])),
            Descr::U4 => u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f32,
            Descr::I4 => i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f32,
            Descr::U8 => {
                u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]) as f32
            }
            Descr::I8 => {
                i64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]) as f32
            }
        }
    }
}

/// Reads a `.npy` file as an f32 tensor (any accepted element type is converted).
pub fn read_npy(path: impl AsRef<Path>) -> Result<Tensor> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|e| NnError::io(path, e))?;
    parse_npy(&bytes, &path.display().to_string())
}

/// The header of a `.npy` array: element type, order, shape, and where the elements start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NpyHeader {
    /// The `descr` type string as written (`<f4`, `|u1`, ...), an accepted one.
    pub descr: String,
    /// Whether the elements are stored column-major.
    pub fortran_order: bool,
    /// The array's dimensions.
    pub dims: Vec<usize>,
    /// Byte offset of the first element.
    pub data_offset: usize,
}

impl NpyHeader {
    /// Whether the elements are integers (`u` or `i` kinds), not floats.
    pub fn is_integer(&self) -> bool {
        self.descr[1..].starts_with(['u', 'i'])
    }

    /// Bytes per element.
    pub fn element_size(&self) -> usize {
        Descr::parse(&self.descr).map_or(0, Descr::size)
    }
}

/// Parses and checks the header of `.npy` bytes (magic, version, `descr` among the accepted
/// types, order, shape within [`tensor_core::shape::MAX_ELEMENTS`]); the elements are not
/// read, nor compared with the bytes present. `source` names the bytes in error messages.
pub fn parse_header(bytes: &[u8], source: &str) -> Result<NpyHeader> {
    let bad = |reason: String| NnError::corrupt(source, "npy header", reason);
    if bytes.len() < 10 || &bytes[..6] != MAGIC {
        return Err(bad("missing the \\x93NUMPY magic".into()));
    }
    let major = bytes[6];
    let (header_len, start) = match major {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 => {
            if bytes.len() < 12 {
                return Err(bad("truncated version 2 header".into()));
            }
            (
                u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
                12,
            )
        }
        v => return Err(bad(format!("unsupported format version {v}"))),
    };
    if header_len > MAX_HEADER || start + header_len > bytes.len() {
        return Err(bad(format!(
            "header length {header_len} exceeds the {} bytes present",
            bytes.len() - start
        )));
    }
    let header = std::str::from_utf8(&bytes[start..start + header_len])
        .map_err(|_| bad("header is not ASCII".into()))?;
    let descr_s = dict_value(header, "descr").ok_or_else(|| bad("no 'descr' key".into()))?;
    let descr_s = descr_s.trim().trim_matches(|c| c == '\'' || c == '"');
    if Descr::parse(descr_s).is_none() {
        return Err(bad(format!(
            "element type '{descr_s}' (want <f4, <f8, <f2, |u1, |i1, <u2, <i2, <u4, <i4, <u8 or <i8)"
        )));
    }
    let fortran = match dict_value(header, "fortran_order").map(str::trim) {
        Some("False") | None => false,
        Some("True") => true,
        Some(v) => return Err(bad(format!("fortran_order is {v}"))),
    };
    let shape_s = dict_value(header, "shape").ok_or_else(|| bad("no 'shape' key".into()))?;
    let shape_s = shape_s.trim();
    let inner = shape_s
        .strip_prefix('(')
        .and_then(|s| s.strip_suffix(')'))
        .ok_or_else(|| bad(format!("shape {shape_s} is not a tuple")))?;
    let mut dims = Vec::new();
    for part in inner.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let d: usize = part
            .trim_end_matches('L')
            .parse()
            .map_err(|_| bad(format!("shape entry '{part}' is not a size")))?;
        dims.push(d);
    }
    Shape::new(&dims).map_err(|e| bad(e.to_string()))?;
    Ok(NpyHeader {
        descr: descr_s.to_string(),
        fortran_order: fortran,
        dims,
        data_offset: start + header_len,
    })
}

/// Parses `.npy` bytes; `source` names them in error messages.
pub fn parse_npy(bytes: &[u8], source: &str) -> Result<Tensor> {
    let h = parse_header(bytes, source)?;
    let (descr_s, fortran, dims) = (h.descr.as_str(), h.fortran_order, &h.dims);
    let bad = |reason: String| NnError::corrupt(source, "npy header", reason);
    // parse_header accepted the type string.
    let descr = Descr::parse(descr_s).ok_or_else(|| bad(format!("element type '{descr_s}'")))?;
    let shape = Shape::new(dims).map_err(|e| bad(e.to_string()))?;
    let data = &bytes[h.data_offset..];
    let need = shape
        .numel()
        .checked_mul(descr.size())
        .ok_or_else(|| bad(format!("shape {dims:?} overflows")))?;
    if data.len() != need {
        return Err(NnError::corrupt(
            source,
            "npy data",
            format!(
                "shape {dims:?} of {descr_s} needs {need} bytes, file holds {}",
                data.len()
            ),
        ));
    }
    let values: Vec<f32> = data
        .chunks_exact(descr.size())
        .map(|b| descr.to_f32(b))
        .collect();
    let values = if fortran && dims.len() > 1 {
        fortran_to_c(&values, dims)
    } else {
        values
    };
    Ok(Tensor::from_vec(shape, values)?)
}

/// Reorders column-major (Fortran) elements into row-major order.
fn fortran_to_c(values: &[f32], dims: &[usize]) -> Vec<f32> {
    let rank = dims.len();
    // Column-major strides.
    let mut fstride = vec![1usize; rank];
    for i in 1..rank {
        fstride[i] = fstride[i - 1] * dims[i - 1];
    }
    let mut out = Vec::with_capacity(values.len());
    let mut idx = vec![0usize; rank];
    for _ in 0..values.len() {
        let off: usize = idx.iter().zip(&fstride).map(|(i, s)| i * s).sum();
        out.push(values[off]);
        for ax in (0..rank).rev() {
            idx[ax] += 1;
            if idx[ax] < dims[ax] {
                break;
            }
            idx[ax] = 0;
        }
    }
    out
}

/// The text of `key`'s value in a Python dict literal: up to the next top-level comma.
fn dict_value<'a>(header: &'a str, key: &str) -> Option<&'a str> {
    let pat_sq = format!("'{key}'");
    let pat_dq = format!("\"{key}\"");
    let at = header.find(&pat_sq).or_else(|| header.find(&pat_dq))?;
    let rest = &header[at + key.len() + 2..];
    let rest = rest.trim_start().strip_prefix(':')?;
    let mut depth = 0i32;
    for (i, c) in rest.char_indices() {
        match c {
            '(' | '[' => depth += 1,
            ')' | ']' => depth -= 1,
            ',' | '}' if depth == 0 => return Some(&rest[..i]),
            _ => {}
        }
    }
    Some(rest)
}

/// The `.npy` (version 1.0, `<f4`, C order) encoding of a tensor.
pub fn npy_bytes(t: &Tensor) -> Vec<u8> {
    let data: Vec<u8> = t.data().iter().flat_map(|v| v.to_le_bytes()).collect();
    npy_bytes_raw("<f4", t.dims(), &data)
}

/// The `.npy` (version 1.0, `<i8`: little-endian int64, C order) encoding of `values` with
/// shape `dims` (class indices, for example).
pub fn npy_bytes_i64(dims: &[usize], values: &[i64]) -> Vec<u8> {
    let data: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    npy_bytes_raw("<i8", dims, &data)
}

/// A complete `.npy` file image: the header (`descr` such as `"<f4"` or `"|u1"`, C order,
/// `dims`) and the little-endian element bytes `data`, as given (not checked against `dims`:
/// test writers use it for files of any element type, malformed ones included).
pub fn npy_bytes_raw(descr: &str, dims: &[usize], data: &[u8]) -> Vec<u8> {
    let shape = match dims.len() {
        0 => "()".to_string(),
        1 => format!("({},)", dims[0]),
        _ => format!(
            "({})",
            dims.iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
    // Pad with spaces so that magic + version + length + header + '\n' is a multiple of 64.
    let unpadded = MAGIC.len() + 2 + 2 + header.len() + 1;
    header.push_str(&" ".repeat((64 - unpadded % 64) % 64));
    header.push('\n');
    let mut out = Vec::with_capacity(10 + header.len() + data.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[1, 0]);
    // The header is at most a few hundred bytes (ranks are small), so it fits in u16.
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(data);
    out
}

/// Writes a tensor as a `.npy` file (`<f4`, C order).
pub fn write_npy(path: impl AsRef<Path>, t: &Tensor) -> Result<()> {
    let path = path.as_ref();
    if t.dims().len() > 64 {
        return Err(NnError::Config(format!(
            "npy: rank {} is too large to write",
            t.dims().len()
        )));
    }
    crate::io::atomic::write_atomic(path, &npy_bytes(t))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        for dims in [vec![], vec![3], vec![2, 3], vec![1, 1, 4, 5]] {
            let n: usize = dims.iter().product();
            let t = Tensor::new(&dims, (0..n).map(|i| i as f32 * 0.5 - 1.0).collect()).unwrap();
            let b = npy_bytes(&t);
            assert_eq!(
                b.len() % 64,
                (4 * n) % 64,
                "data starts on a 64-byte boundary"
            );
            assert_eq!(parse_npy(&b, "mem").unwrap(), t);
        }
    }

    #[test]
    fn fortran_order_and_f8() {
        // [[1, 2, 3], [4, 5, 6]] stored column-major as f8.
        let header = "{'descr': '<f8', 'fortran_order': True, 'shape': (2, 3), }";
        let mut b = Vec::from(&MAGIC[..]);
        b.extend_from_slice(&[1, 0]);
        b.extend_from_slice(&(header.len() as u16).to_le_bytes());
        b.extend_from_slice(header.as_bytes());
        for v in [1.0f64, 4.0, 2.0, 5.0, 3.0, 6.0] {
            b.extend_from_slice(&v.to_le_bytes());
        }
        let t = parse_npy(&b, "mem").unwrap();
        assert_eq!(t.dims(), &[2, 3]);
        assert_eq!(t.data(), &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    }

    #[test]
    fn malformed_inputs_are_errors() {
        let good = npy_bytes(&Tensor::new(&[2, 2], vec![1.0; 4]).unwrap());
        for cut in 0..good.len() {
            assert!(parse_npy(&good[..cut], "mem").is_err(), "cut at {cut}");
        }
        let header =
            "{'descr': '<f4', 'fortran_order': False, 'shape': (1099511627776, 1099511627776), }";
        let mut b = Vec::from(&MAGIC[..]);
        b.extend_from_slice(&[1, 0]);
        b.extend_from_slice(&(header.len() as u16).to_le_bytes());
        b.extend_from_slice(header.as_bytes());
        let e = parse_npy(&b, "mem").unwrap_err().to_string();
        assert!(e.contains("too large"), "{e}");
        let mut bad_type = good.clone();
        let at = good.windows(3).position(|w| w == b"<f4").unwrap();
        bad_type[at + 2] = b'9';
        let e = parse_npy(&bad_type, "mem").unwrap_err().to_string();
        assert!(e.contains("<f9"), "{e}");
    }
}
