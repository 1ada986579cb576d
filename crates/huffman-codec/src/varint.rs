//! LEB128 unsigned integers (7 bits per byte, least significant group first, high bit = more).

use crate::HuffError;

/// Append `v` as LEB128.
pub(crate) fn write(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Read a LEB128 u64 from `input[*pos..]`, advancing `pos`.
pub(crate) fn read(input: &[u8], pos: &mut usize, what: &'static str) -> Result<u64, HuffError> {
    let mut v = 0u64;
    for i in 0..10 {
        let Some(&b) = input.get(*pos + i) else {
            return Err(HuffError::Truncated {
                what,
                needed: i as u64 + 1,
                available: i as u64,
            });
        };
        let group = (b & 0x7F) as u64;
        // The tenth byte may only carry the single top bit of a u64.
        if i == 9 && group > 1 {
            return Err(HuffError::BadVarint { what });
        }
        v |= group << (7 * i);
        if b & 0x80 == 0 {
            *pos += i + 1;
            return Ok(v);
        }
    }
    Err(HuffError::BadVarint { what })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_edges() {
        for v in [0, 1, 127, 128, 16383, 16384, u32::MAX as u64, u64::MAX] {
            let mut buf = Vec::new();
            write(&mut buf, v);
            let mut pos = 0;
            assert_eq!(read(&buf, &mut pos, "test").unwrap(), v);
            assert_eq!(pos, buf.len());
        }
    }

    #[test]
    fn rejects_overlong_and_truncated() {
        let mut pos = 0;
        assert_eq!(
            read(&[0xFF; 10], &mut pos, "x"),
            Err(HuffError::BadVarint { what: "x" })
        );
        let mut pos = 0;
        assert_eq!(
            read(&[0xFF; 11], &mut pos, "x"),
            Err(HuffError::BadVarint { what: "x" })
        );
        let mut pos = 0;
        assert!(matches!(
            read(&[0x80, 0x80], &mut pos, "x"),
            Err(HuffError::Truncated {
                needed: 3,
                available: 2,
                ..
            })
        ));
    }
}
