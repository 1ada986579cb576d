//! Zero-copy access to the large fields of an ONNX file, at the protobuf wire level.
//!
//! Decoding a whole `ModelProto` with prost copies every initializer's `raw_data` out of the
//! file into its own `Vec<u8>`: with the file buffer and the decoded f32 values that is three
//! copies of the weights at once. Instead, [`split_field`] walks one message's fields and
//! returns those with a given tag as slices of the file's [`Bytes`] (reference-counted
//! views, no copy), and re-encodes every other field into a small buffer for prost. The
//! importer splits the model's `graph` (field 7) out of the `ModelProto`, the initializers
//! (field 5) out of the `GraphProto`, and each initializer's `raw_data` (field 9) out of its
//! `TensorProto`, so each weight is read from the file straight into its f32 values.
//!
//! Protobuf semantics are kept: several occurrences of an embedded message field merge (their
//! bytes concatenated decode as one message), and for a scalar bytes field the last one
//! wins. Every length is checked against the bytes present before it is used.

use prost::bytes::Bytes;

use crate::error::{NnError, Result};

/// Fields of one message with a chosen tag, and everything else.
#[derive(Debug, Default)]
pub struct Split {
    /// The payloads of the length-delimited fields with the tag, in file order (slices of
    /// the input buffer).
    pub taken: Vec<Bytes>,
    /// The message's other fields, re-encoded unchanged (key and value bytes).
    pub rest: Vec<u8>,
}

impl Split {
    /// The taken fields as one embedded message: the only occurrence as is (no copy), or
    /// several concatenated (protobuf merges repeated occurrences of a message field).
    pub fn merged(&self) -> Bytes {
        match self.taken.as_slice() {
            [] => Bytes::new(),
            [one] => one.clone(),
            many => Bytes::from(many.concat()),
        }
    }
}

/// Reads a base-128 varint at `*pos`, advancing it.
fn varint(buf: &[u8], pos: &mut usize) -> Option<u64> {
    let mut v: u64 = 0;
    for shift in (0..70).step_by(7) {
        let b = *buf.get(*pos)?;
        *pos += 1;
        if shift == 63 && b > 1 {
            return None;
        }
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

/// Splits the fields of the message in `buf` whose number is `tag` (length-delimited) from
/// the others. `source` and `what` name the file and the message in errors.
pub fn split_field(buf: &Bytes, tag: u64, source: &str, what: &str) -> Result<Split> {
    let bad = |at: usize, reason: &str| {
        NnError::corrupt(
            source,
            "ONNX protobuf",
            format!("{what} at byte {at}: {reason}"),
        )
    };
    let mut out = Split::default();
    let mut pos = 0;
    while pos < buf.len() {
        let start = pos;
        let key = varint(buf, &mut pos).ok_or_else(|| bad(start, "truncated field key"))?;
        let (field, wire) = (key >> 3, key & 7);
        if field == 0 {
            return Err(bad(start, "field number 0"));
        }
        let value_start = pos;
        match wire {
            0 => {
                varint(buf, &mut pos).ok_or_else(|| bad(start, "truncated varint"))?;
            }
            1 | 5 => {
                let n = if wire == 1 { 8 } else { 4 };
                if buf.len() - pos < n {
                    return Err(bad(start, "truncated fixed-width value"));
                }
                pos += n;
            }
            2 => {
                let len = varint(buf, &mut pos).ok_or_else(|| bad(start, "truncated length"))?;
                let left = buf.len() - pos;
                let len = usize::try_from(len)
                    .ok()
                    .filter(|&l| l <= left)
                    .ok_or_else(|| {
                        bad(
                            start,
                            &format!("field {field} declares {len} bytes, {left} remain"),
                        )
                    })?;
                if field == tag {
                    out.taken.push(buf.slice(pos..pos + len));
                    pos += len;
                    continue;
                }
                pos += len;
            }
            w => return Err(bad(start, &format!("field {field} has wire type {w}"))),
        }
        if field == tag {
            return Err(bad(
                value_start,
                &format!("field {field} is not length-delimited"),
            ));
        }
        out.rest.extend_from_slice(&buf[start..pos]);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;
    use crate::io::onnx::proto::{GraphProto, ModelProto, TensorProto};
    use crate::io::onnx::tensor::encode_f32;

    fn model() -> ModelProto {
        let mut g = GraphProto {
            name: "g".into(),
            ..Default::default()
        };
        g.initializer.push(encode_f32("a", &[2], &[1.0, -2.0]));
        g.initializer.push(encode_f32("b", &[3], &[0.5, 0.25, 4.0]));
        ModelProto {
            ir_version: 8,
            graph: Some(g),
            ..Default::default()
        }
    }

    #[test]
    fn split_fields_decode_as_the_whole_message_does() {
        let m = model();
        let file = Bytes::from(m.encode_to_vec());
        let top = split_field(&file, 7, "mem", "ModelProto").unwrap();
        assert_eq!(top.taken.len(), 1);
        let rest = ModelProto::decode(top.rest.as_slice()).unwrap();
        assert_eq!(rest.ir_version, 8);
        assert!(rest.graph.is_none());
        let graph = top.merged();
        // A slice of the file, not a copy.
        let off = graph.as_ptr() as usize - file.as_ptr() as usize;
        assert!(off < file.len());
        let g = split_field(&graph, 5, "mem", "GraphProto").unwrap();
        assert_eq!(GraphProto::decode(g.rest.as_slice()).unwrap().name, "g");
        let want = &m.graph.as_ref().unwrap().initializer;
        assert_eq!(g.taken.len(), want.len());
        for (b, w) in g.taken.iter().zip(want) {
            let t = split_field(b, 9, "mem", "TensorProto").unwrap();
            let head = TensorProto::decode(t.rest.as_slice()).unwrap();
            assert_eq!((head.name.as_str(), &head.dims), (w.name.as_str(), &w.dims));
            assert!(head.raw_data.is_empty());
            assert_eq!(t.taken.last().unwrap().as_ref(), w.raw_data.as_slice());
        }
    }

    #[test]
    fn repeated_message_fields_merge() {
        let a = ModelProto {
            graph: Some(GraphProto {
                name: "first".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let b = ModelProto {
            graph: Some(GraphProto {
                doc_string: "second".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let mut bytes = a.encode_to_vec();
        bytes.extend(b.encode_to_vec());
        let whole = ModelProto::decode(bytes.as_slice()).unwrap();
        let top = split_field(&Bytes::from(bytes), 7, "mem", "ModelProto").unwrap();
        assert_eq!(top.taken.len(), 2);
        let g = GraphProto::decode(top.merged()).unwrap();
        assert_eq!(Some(g), whole.graph);
    }

    #[test]
    fn every_truncation_is_an_error_or_a_prefix_of_fields() {
        let file = model().encode_to_vec();
        for cut in 0..file.len() {
            let b = Bytes::copy_from_slice(&file[..cut]);
            // Either a clean error naming the message or a split whose parts fit the buffer.
            match split_field(&b, 7, "mem", "ModelProto") {
                Ok(s) => {
                    assert!(s.rest.len() + s.taken.iter().map(Bytes::len).sum::<usize>() <= cut)
                }
                Err(e) => assert!(e.to_string().contains("ModelProto"), "{e}"),
            }
        }
    }

    #[test]
    fn hostile_keys_and_lengths_are_refused() {
        for (bytes, want) in [
            (vec![0x00], "field number 0"),
            (vec![0x3a, 0xff, 0xff, 0xff, 0xff, 0x0f], "declares"),
            (vec![0x3b], "wire type 3"),
            (vec![0x38, 0x01], "not length-delimited"),
            (
                vec![
                    0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f,
                ],
                "varint",
            ),
            (vec![0x09, 1, 2, 3], "fixed-width"),
        ] {
            let e = split_field(&Bytes::from(bytes.clone()), 7, "mem", "ModelProto")
                .unwrap_err()
                .to_string();
            assert!(e.contains(want), "{bytes:?}: {e}");
        }
    }
}
