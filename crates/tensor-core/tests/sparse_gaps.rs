//! Relative-index gaps and bit packing: positions -> gaps (with fillers) -> packed bytes ->
//! gaps -> positions is the identity on the stored entries, for every field width, and
//! every truncation of the packed stream is a typed error.

use proptest::prelude::*;
use tensor_core::sparse::{
    GapWriter, SparseError, check_gaps, pack_bits, packed_len, positions, unpack_bits,
};

proptest! {
    #[test]
    fn positions_round_trip_through_packed_gaps(
        steps in prop::collection::vec(0u64..700, 0..60),
        bits in 1u32..=16,
    ) {
        // Strictly increasing positions from the steps.
        let mut pos = Vec::new();
        let mut p = 0u64;
        let fillers_expected: u64 = steps.iter().map(|s| s >> bits).sum();
        for s in steps {
            p += s;
            pos.push(p);
            p += 1;
        }
        let mut gaps = Vec::new();
        let mut is_entry = Vec::new();
        let mut w = GapWriter::new("test", bits).unwrap();
        for &q in &pos {
            let fillers = w.push(q, &mut gaps).unwrap();
            is_entry.extend(std::iter::repeat_n(false, fillers));
            is_entry.push(true);
        }
        // A run of s zeros needs floor(s / 2^bits) fillers.
        prop_assert_eq!((gaps.len() - pos.len()) as u64, fillers_expected);
        let len = w.next_position() as usize;
        let bytes = pack_bits(&gaps, bits).unwrap();
        prop_assert_eq!(Some(bytes.len()), packed_len(gaps.len(), bits));
        let back = unpack_bits(&bytes, bits, gaps.len()).unwrap();
        prop_assert_eq!(&back, &gaps);
        check_gaps("test", &back, bits, len).unwrap();
        let decoded: Vec<u64> = positions(&back)
            .zip(&is_entry)
            .filter(|(_, e)| **e)
            .map(|(p, _)| p)
            .collect();
        prop_assert_eq!(decoded, pos);
        // One position short of the last entry is past the end.
        if len > 0 {
            let is_past_end = matches!(
                check_gaps("test", &back, bits, len - 1),
                Err(SparseError::PastEnd { .. })
            );
            prop_assert!(is_past_end);
        }
        for cut in 0..bytes.len() {
            prop_assert!(unpack_bits(&bytes[..cut], bits, gaps.len()).is_err());
        }
    }
}
