//! Table-driven decoder: one lookup per symbol (or per pair of symbols for skewed 8-bit
//! codes), 64-bit bit container, one or four streams.
//!
//! Every check happens before or after the hot loop, never inside it:
//! - before: the code is complete (a [`CanonicalCode`] invariant), so every table entry is a
//!   real codeword; each stream is long enough for its symbols at the shortest code length;
//! - inside: the state of a stream is its bit position; every `56 / max_len` symbols, 8 bytes
//!   are loaded at that position (bytes past the end read as zero), so the loop cannot fail;
//! - after: the bits consumed must end in the stream's last byte, with zero padding.

use crate::encode::segment_bounds;
use crate::{CanonicalCode, HuffError};

/// Index bits of the 8-bit fast table: codes of the default cap (11) fit in 2,048 entries.
const FAST_BITS: u32 = 11;

/// Decodes streams written by [`crate::Encoder`] with the same [`CanonicalCode`].
///
/// It holds one flat table indexed by the next bits of the stream (least significant bit
/// first), giving the symbol and its code length; a codeword of length `l` fills
/// `2^(bits - l)` entries:
/// - the 8-bit fast table when the alphabet fits in a byte and `max_len <= 11`: 2,048 `u16`
///   entries (4 KiB, L1-resident), used for both 8- and 16-bit output;
/// - otherwise the general table of `2^max_len` `u32` entries (at most 128 KiB).
///
/// With the fast table, 8-bit output also gets a two-symbol table when codes are short enough
/// that one 11-bit lookup yields 1.5 symbols or more on average (zstd's "X2" idea): the loop is
/// bound by the latency of the lookup-shift chain, so pairs raise four-stream decoding of the
/// lenet index streams from about 1.3 to 1.6 GB/s (docs/BENCHMARKS.md).
#[derive(Debug, Clone)]
pub struct Decoder {
    alphabet_size: usize,
    max_len: u8,
    min_len: u8,
    table: Table,
    /// Two-symbol table for 8-bit output, present when it pays off (see [`PairTable`]).
    pairs: Option<PairTable>,
}

#[derive(Debug, Clone)]
enum Table {
    /// `len | symbol << 8`, indexed by 11 bits.
    Fast(Box<[u16; 1 << FAST_BITS]>),
    /// `len | symbol << 16`, `2^max_len` entries.
    General(Vec<u32>),
}

impl Decoder {
    /// Build the decode table of `code`.
    pub fn new(code: &CanonicalCode) -> Self {
        let max_len = code.max_len();
        let codewords = code.codewords();
        let table = if code.alphabet_size() <= 256 && max_len as u32 <= FAST_BITS {
            let mut fast = Box::new([0u16; 1 << FAST_BITS]);
            fill_table(code, &codewords, FAST_BITS, |i, s, l| {
                fast[i] = (l | s << 8) as u16
            });
            Table::Fast(fast)
        } else {
            let mut table = vec![0u32; 1 << max_len];
            fill_table(code, &codewords, max_len as u32, |i, s, l| {
                table[i] = l | s << 16
            });
            Table::General(table)
        };
        let pairs = match &table {
            Table::Fast(fast) => PairTable::build(fast),
            Table::General(_) => None,
        };
        Self {
            alphabet_size: code.alphabet_size(),
            max_len,
            min_len: code.min_len(),
            table,
            pairs,
        }
    }

    /// Alphabet size of the code.
    pub fn alphabet_size(&self) -> usize {
        self.alphabet_size
    }

    /// Decode exactly `out.len()` symbols from `stream`, which they must consume exactly.
    pub fn decode_stream(&self, stream: &[u8], out: &mut [u16]) -> Result<(), HuffError> {
        match (&self.table, self.max_len) {
            (Table::Fast(fast), _) => self.one(&Widen(Fast(fast)), stream, out),
            (Table::General(t), 0..=11) => self.one(&General::<5>::new(t), stream, out),
            (Table::General(t), 12..=14) => self.one(&General::<4>::new(t), stream, out),
            (Table::General(t), _) => self.one(&General::<3>::new(t), stream, out),
        }
    }

    /// Decode exactly `out.len()` symbols from four streams holding the segments given by
    /// [`crate::segment_bounds`]; every stream must be consumed exactly.
    pub fn decode_four(&self, streams: [&[u8]; 4], out: &mut [u16]) -> Result<(), HuffError> {
        match (&self.table, self.max_len) {
            (Table::Fast(fast), _) => self.four(&Widen(Fast(fast)), streams, out),
            (Table::General(t), 0..=11) => self.four(&General::<5>::new(t), streams, out),
            (Table::General(t), 12..=14) => self.four(&General::<4>::new(t), streams, out),
            (Table::General(t), _) => self.four(&General::<3>::new(t), streams, out),
        }
    }

    /// [`Decoder::decode_stream`] into bytes; the alphabet must have at most 256 symbols.
    pub fn decode_stream_u8(&self, stream: &[u8], out: &mut [u8]) -> Result<(), HuffError> {
        match (&self.table, self.max_len) {
            (Table::Fast(fast), _) => match &self.pairs {
                Some(pairs) => {
                    self.check_room(stream, out.len(), 0)?;
                    let mut pos = 0;
                    let done = pairs.decode_one(stream, &mut pos, out);
                    decode_rest(&Fast(fast), stream, &mut pos, &mut out[done..]);
                    finish(stream, pos, 0)
                }
                None => self.one(&Fast(fast), stream, out),
            },
            _ if self.alphabet_size > 256 => Err(self.too_large_for_u8()),
            (Table::General(t), 0..=11) => self.one(&Narrow(General::<5>::new(t)), stream, out),
            (Table::General(t), 12..=14) => self.one(&Narrow(General::<4>::new(t)), stream, out),
            (Table::General(t), _) => self.one(&Narrow(General::<3>::new(t)), stream, out),
        }
    }

    /// [`Decoder::decode_four`] into bytes; the alphabet must have at most 256 symbols.
    pub fn decode_four_u8(&self, streams: [&[u8]; 4], out: &mut [u8]) -> Result<(), HuffError> {
        match (&self.table, self.max_len) {
            (Table::Fast(fast), _) => match &self.pairs {
                Some(pairs) => self.four_pairs(fast, pairs, streams, out),
                None => self.four(&Fast(fast), streams, out),
            },
            _ if self.alphabet_size > 256 => Err(self.too_large_for_u8()),
            (Table::General(t), 0..=11) => self.four(&Narrow(General::<5>::new(t)), streams, out),
            (Table::General(t), 12..=14) => self.four(&Narrow(General::<4>::new(t)), streams, out),
            (Table::General(t), _) => self.four(&Narrow(General::<3>::new(t)), streams, out),
        }
    }

    fn too_large_for_u8(&self) -> HuffError {
        HuffError::AlphabetTooLargeForU8 {
            alphabet_size: self.alphabet_size,
        }
    }

    /// Refuse a stream shorter than `n` codes of the shortest length, before decoding.
    fn check_room(&self, stream: &[u8], n: usize, index: usize) -> Result<(), HuffError> {
        let needed = (n as u64).saturating_mul(self.min_len as u64);
        let available = stream.len() as u64 * 8;
        if needed > available {
            return Err(HuffError::StreamOverrun {
                stream: index,
                bits_needed: needed,
                bits_available: available,
            });
        }
        Ok(())
    }

    fn one<L: Lut>(&self, lut: &L, stream: &[u8], out: &mut [L::Out]) -> Result<(), HuffError> {
        self.check_room(stream, out.len(), 0)?;
        let mut pos = 0;
        decode_rest(lut, stream, &mut pos, out);
        finish(stream, pos, 0)
    }

    fn four<L: Lut>(
        &self,
        lut: &L,
        streams: [&[u8]; 4],
        out: &mut [L::Out],
    ) -> Result<(), HuffError> {
        let n = out.len();
        for (i, s) in streams.iter().enumerate() {
            let (a, b) = segment_bounds(n, i);
            self.check_room(s, b - a, i)?;
        }
        let (o0, rest) = out.split_at_mut(segment_bounds(n, 0).1);
        let (o1, rest) = rest.split_at_mut(o0.len().min(rest.len()));
        let (o2, o3) = rest.split_at_mut(o0.len().min(rest.len()));
        let [s0, s1, s2, s3] = streams;
        // Bit positions of the four streams: the whole decoder state.
        let (mut p0, mut p1, mut p2, mut p3) = (0usize, 0usize, 0usize, 0usize);

        // Hot loop: four independent dependency chains, `L::N` symbols per stream per 8-byte
        // load. It stops at the first stream with fewer than 8 bytes left at its position.
        let mut done = 0;
        let lockstep = o0
            .chunks_exact_mut(L::N)
            .zip(o1.chunks_exact_mut(L::N))
            .zip(o2.chunks_exact_mut(L::N))
            .zip(o3.chunks_exact_mut(L::N));
        for (((c0, c1), c2), c3) in lockstep {
            let (Some(mut b0), Some(mut b1), Some(mut b2), Some(mut b3)) = (
                peek_fast(s0, p0),
                peek_fast(s1, p1),
                peek_fast(s2, p2),
                peek_fast(s3, p3),
            ) else {
                break;
            };
            for k in 0..L::N {
                c0[k] = take(lut, &mut b0);
                c1[k] = take(lut, &mut b1);
                c2[k] = take(lut, &mut b2);
                c3[k] = take(lut, &mut b3);
            }
            p0 = advance(p0, b0);
            p1 = advance(p1, b1);
            p2 = advance(p2, b2);
            p3 = advance(p3, b3);
            done += L::N;
        }
        decode_rest(lut, s0, &mut p0, &mut o0[done..]);
        decode_rest(lut, s1, &mut p1, &mut o1[done..]);
        decode_rest(lut, s2, &mut p2, &mut o2[done..]);
        decode_rest(lut, s3, &mut p3, &mut o3[done..]);
        finish(s0, p0, 0)?;
        finish(s1, p1, 1)?;
        finish(s2, p2, 2)?;
        finish(s3, p3, 3)
    }
}

impl Decoder {
    /// [`Decoder::four`] for 8-bit output with the two-symbol table: lockstep while every
    /// segment has room for `2 * PAIR_N` more symbols, then one symbol per lookup.
    fn four_pairs(
        &self,
        fast: &[u16; 1 << FAST_BITS],
        pairs: &PairTable,
        streams: [&[u8]; 4],
        out: &mut [u8],
    ) -> Result<(), HuffError> {
        let n = out.len();
        for (i, s) in streams.iter().enumerate() {
            let (a, b) = segment_bounds(n, i);
            self.check_room(s, b - a, i)?;
        }
        let (o0, rest) = out.split_at_mut(segment_bounds(n, 0).1);
        let (o1, rest) = rest.split_at_mut(o0.len().min(rest.len()));
        let (o2, o3) = rest.split_at_mut(o0.len().min(rest.len()));
        let [s0, s1, s2, s3] = streams;
        let (mut p0, mut p1, mut p2, mut p3) = (0usize, 0usize, 0usize, 0usize);
        let (mut q0, mut q1, mut q2, mut q3) = (0usize, 0usize, 0usize, 0usize);
        let t = &pairs.0;
        // Streams advance by different symbol counts, so every segment's room is checked.
        while o0.len() - q0 >= 2 * PAIR_N
            && o1.len() - q1 >= 2 * PAIR_N
            && o2.len() - q2 >= 2 * PAIR_N
            && o3.len() - q3 >= 2 * PAIR_N
        {
            let (Some(mut b0), Some(mut b1), Some(mut b2), Some(mut b3)) = (
                peek_fast(s0, p0),
                peek_fast(s1, p1),
                peek_fast(s2, p2),
                peek_fast(s3, p3),
            ) else {
                break;
            };
            for _ in 0..PAIR_N {
                pair_step(t, &mut b0, o0, &mut q0);
                pair_step(t, &mut b1, o1, &mut q1);
                pair_step(t, &mut b2, o2, &mut q2);
                pair_step(t, &mut b3, o3, &mut q3);
            }
            p0 = advance(p0, b0);
            p1 = advance(p1, b1);
            p2 = advance(p2, b2);
            p3 = advance(p3, b3);
        }
        let single = Fast(fast);
        decode_rest(&single, s0, &mut p0, &mut o0[q0..]);
        decode_rest(&single, s1, &mut p1, &mut o1[q1..]);
        decode_rest(&single, s2, &mut p2, &mut o2[q2..]);
        decode_rest(&single, s3, &mut p3, &mut o3[q3..]);
        finish(s0, p0, 0)?;
        finish(s1, p1, 1)?;
        finish(s2, p2, 2)?;
        finish(s3, p3, 3)
    }
}

/// Lookups per 8-byte load with the pair table: each consumes at most 11 bits, 5 * 11 <= 56.
const PAIR_N: usize = 5;

/// Two-symbol decode table for 8-bit output (the idea of zstd's `HUF_decompress4X2`), indexed
/// by the next 11 bits like the fast table: entry `i` holds the symbol of the code that starts
/// `i` and, when the code after it also ends within the 11 bits, that second symbol too.
/// Entry layout: `total_len | count << 8 | first << 16 | second << 24`.
///
/// One lookup then yields 1 or 2 symbols at the cost of one: the decode loop is bound by the
/// latency of `lookup -> shift -> lookup` chains, so this is worth it when the mean count over
/// the table (the expected symbols per lookup, since a code of length `l` starts `2^(11-l)`
/// entries, its probability under an optimal code) is at least [`PAIR_MIN_MEAN`].
/// Measured on the lenet streams (Xeon, 2.6 GHz, codes of 3.5-4.7 bits on average): 1.6 GB/s
/// with pairs against 1.3 GB/s without (docs/BENCHMARKS.md). The 1.5 threshold is a
/// conservative guess (a pair step costs about 3 more instructions than a single one), not a
/// measured break-even.
#[derive(Debug, Clone)]
struct PairTable(Box<[u32; 1 << FAST_BITS]>);

/// Expected symbols per lookup from which the pair table is used.
const PAIR_MIN_MEAN: f64 = 1.5;

impl PairTable {
    fn build(fast: &[u16; 1 << FAST_BITS]) -> Option<Self> {
        let mut t = Box::new([0u32; 1 << FAST_BITS]);
        let mut symbols = 0usize;
        for (i, e) in t.iter_mut().enumerate() {
            let first = fast[i] as u32;
            let l1 = first & 0xFF;
            let second = fast[i >> l1] as u32;
            let l2 = second & 0xFF;
            *e = if l1 + l2 <= FAST_BITS {
                symbols += 2;
                (l1 + l2) | 2 << 8 | (first >> 8) << 16 | (second >> 8) << 24
            } else {
                symbols += 1;
                l1 | 1 << 8 | (first >> 8) << 16
            };
        }
        let mean = symbols as f64 / (1 << FAST_BITS) as f64;
        (mean >= PAIR_MIN_MEAN).then_some(Self(t))
    }

    /// One stream: decode pairs while `out` has room for `2 * PAIR_N` more symbols and 8
    /// bytes can be loaded; returns the number of symbols written.
    fn decode_one(&self, src: &[u8], pos: &mut usize, out: &mut [u8]) -> usize {
        let mut q = 0;
        while out.len() - q >= 2 * PAIR_N {
            let Some(mut bits) = peek_fast(src, *pos) else {
                break;
            };
            for _ in 0..PAIR_N {
                pair_step(&self.0, &mut bits, out, &mut q);
            }
            *pos = advance(*pos, bits);
        }
        q
    }
}

/// One pair lookup: write two bytes at `out[*q..]` (the second is overwritten later when the
/// entry holds one symbol), advance `q` by the entry's count and consume its bits. The caller
/// guarantees `*q + 2 <= out.len()`.
#[inline(always)]
fn pair_step(t: &[u32; 1 << FAST_BITS], bits: &mut u64, out: &mut [u8], q: &mut usize) {
    let e = t[(*bits & ((1 << FAST_BITS) - 1)) as usize];
    if let Some(dst) = out.get_mut(*q..*q + 2) {
        dst.copy_from_slice(&((e >> 16) as u16).to_le_bytes());
    }
    *q += (e >> 8 & 0xFF) as usize;
    *bits >>= e & 63;
}

/// Call `set(index, symbol, len)` for every table index whose low `len` bits are the
/// bit-reversed codeword of `symbol`, over a table of `2^bits` entries.
fn fill_table(
    code: &CanonicalCode,
    codewords: &[u16],
    bits: u32,
    mut set: impl FnMut(usize, u32, u32),
) {
    for (s, (&c, &l)) in codewords.iter().zip(code.lengths()).enumerate() {
        if l == 0 {
            continue;
        }
        let l = l as u32;
        let reversed = (c.reverse_bits() >> (16 - l)) as usize;
        for high in 0..1usize << (bits - l) {
            set(reversed | high << l, s as u32, l);
        }
    }
}

/// A decode table: the symbol and code length for the next bits of a stream.
trait Lut {
    /// Output symbol type.
    type Out: Copy;
    /// Lookups per refill: `N * max_len <= 56`.
    const N: usize;
    fn lookup(&self, bits: u64) -> (Self::Out, u32);
}

/// The 8-bit fast table (max_len <= 11, alphabet <= 256).
struct Fast<'a>(&'a [u16; 1 << FAST_BITS]);

impl Lut for Fast<'_> {
    type Out = u8;
    const N: usize = 5;
    #[inline(always)]
    fn lookup(&self, bits: u64) -> (u8, u32) {
        let e = self.0[(bits & ((1 << FAST_BITS) - 1)) as usize];
        // The length sits in the low byte so that the shift that consumes it needs no
        // extraction on the critical path (x86 masks shift counts to 6 bits anyway).
        ((e >> 8) as u8, e as u32 & 63)
    }
}

/// The general table, `2^max_len` entries; `N` is chosen from `max_len` by the caller.
struct General<'a, const N: usize> {
    table: &'a [u32],
    mask: u64,
}

impl<'a, const N: usize> General<'a, N> {
    fn new(table: &'a [u32]) -> Self {
        Self {
            table,
            // The table has 2^max_len entries.
            mask: table.len() as u64 - 1,
        }
    }
}

impl<const N: usize> Lut for General<'_, N> {
    type Out = u16;
    const N: usize = N;
    #[inline(always)]
    fn lookup(&self, bits: u64) -> (u16, u32) {
        // The table has exactly mask + 1 entries, so the index is always in range.
        let e = self.table[(bits & self.mask) as usize];
        ((e >> 16) as u16, e & 63)
    }
}

/// The 8-bit fast table writing 16-bit symbols.
struct Widen<'a>(Fast<'a>);

impl Lut for Widen<'_> {
    type Out = u16;
    const N: usize = 5;
    #[inline(always)]
    fn lookup(&self, bits: u64) -> (u16, u32) {
        let (s, l) = self.0.lookup(bits);
        (s as u16, l)
    }
}

/// The general table writing bytes (alphabet <= 256, max_len 12..=15).
struct Narrow<'a, const N: usize>(General<'a, N>);

impl<const N: usize> Lut for Narrow<'_, N> {
    type Out = u8;
    const N: usize = N;
    #[inline(always)]
    fn lookup(&self, bits: u64) -> (u8, u32) {
        let (s, l) = self.0.lookup(bits);
        (s as u8, l)
    }
}

/// The stream bits from bit `pos` on (LSB first), with a sentinel, if 8 bytes can be loaded at
/// byte `pos / 8`.
///
/// The 8-byte word `w` loaded at `pos / 8` is returned as `(w | 1 << 63) >> (pos % 8)`: bit 63
/// of `w` becomes a sentinel 1 at bit `63 - pos % 8`. Decoding `L::N` codes reads at most
/// `pos % 8 + L::N * max_len <= 7 + 56` bits of `w`, so never the sentinel's bit. Each consumed
/// code shifts the sentinel down by its length, so afterwards the new position is
/// `pos / 8 * 8 + leading_zeros` ([`advance`]): no per-symbol bookkeeping.
#[inline(always)]
fn peek_fast(src: &[u8], pos: usize) -> Option<u64> {
    let word = src.get(pos >> 3..)?.first_chunk::<8>()?;
    Some((u64::from_le_bytes(*word) | 1 << 63) >> (pos & 7))
}

/// New bit position after decoding from `bits`, which [`peek_fast`] or [`peek`] returned for
/// position `pos`.
#[inline(always)]
fn advance(pos: usize, bits: u64) -> usize {
    (pos & !7) + bits.leading_zeros() as usize
}

/// [`peek_fast`] near the end of the stream: bytes past the end read as zero, so this cannot
/// fail; [`finish`] later reports a position past the end as an overrun.
#[inline(always)]
fn peek(src: &[u8], pos: usize) -> u64 {
    if let Some(bits) = peek_fast(src, pos) {
        return bits;
    }
    let mut word = [0u8; 8];
    let tail = src.get(pos >> 3..).unwrap_or(&[]);
    for (w, &b) in word.iter_mut().zip(tail) {
        *w = b;
    }
    (u64::from_le_bytes(word) | 1 << 63) >> (pos & 7)
}

/// Decode one symbol from `bits` and consume its code.
#[inline(always)]
fn take<L: Lut>(lut: &L, bits: &mut u64) -> L::Out {
    let (s, l) = lut.lookup(*bits);
    *bits >>= l;
    s
}

/// Check that the `pos` bits consumed end inside the last byte and that the rest is zero.
fn finish(src: &[u8], pos: usize, stream: usize) -> Result<(), HuffError> {
    let consumed = pos as u64;
    let available = src.len() as u64 * 8;
    if consumed > available {
        return Err(HuffError::StreamOverrun {
            stream,
            bits_needed: consumed,
            bits_available: available,
        });
    }
    let used_bytes = consumed.div_ceil(8);
    if used_bytes != src.len() as u64 {
        return Err(HuffError::StreamNotConsumed {
            stream,
            used_bytes,
            declared_bytes: src.len() as u64,
        });
    }
    let tail_bits = (consumed % 8) as u32;
    if tail_bits != 0 && src.last().is_some_and(|&b| b >> tail_bits != 0) {
        return Err(HuffError::NonZeroPadding { stream });
    }
    Ok(())
}

/// Decode `out.len()` symbols from one stream starting at bit `pos`, `L::N` per load.
#[inline(always)]
fn decode_rest<L: Lut>(lut: &L, src: &[u8], pos: &mut usize, out: &mut [L::Out]) {
    for chunk in out.chunks_mut(L::N) {
        let mut bits = peek(src, *pos);
        for o in chunk {
            *o = take(lut, &mut bits);
        }
        *pos = advance(*pos, bits);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn skewed_code() -> CanonicalCode {
        let freqs: Vec<u64> = (0..32).map(|k| 1 + (1u64 << 20 >> k)).collect();
        CanonicalCode::from_frequencies(&freqs, 11).unwrap()
    }

    #[test]
    fn pair_table_is_chosen_for_short_codes_only() {
        assert!(Decoder::new(&skewed_code()).pairs.is_some());
        let flat = CanonicalCode::from_lengths(vec![8; 256], 11).unwrap();
        assert!(Decoder::new(&flat).pairs.is_none());
    }

    /// Pair and single decoding agree at every length around the room limits.
    #[test]
    fn pair_path_matches_single_path() {
        let code = skewed_code();
        let enc = crate::Encoder::new(&code);
        let with_pairs = Decoder::new(&code);
        let mut without = with_pairs.clone();
        without.pairs = None;
        let mut state = 7u64;
        for n in (0..200).chain(995..1010) {
            let data: Vec<u8> = (0..n)
                .map(|_| {
                    state = state
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    ((state >> 33).trailing_zeros() % 32) as u8
                })
                .collect();
            let mut one = Vec::new();
            enc.encode_stream_u8(&data, &mut one).unwrap();
            let mut four = Vec::new();
            let sizes = enc.encode_four_u8(&data, &mut four).unwrap();
            let (a, b, c) = (
                sizes[0],
                sizes[0] + sizes[1],
                sizes[0] + sizes[1] + sizes[2],
            );
            let parts = [&four[..a], &four[a..b], &four[b..c], &four[c..]];
            for d in [&with_pairs, &without] {
                let mut out = vec![0u8; n];
                d.decode_stream_u8(&one, &mut out).unwrap();
                assert_eq!(out, data, "one stream, n = {n}");
                let mut out = vec![0u8; n];
                d.decode_four_u8(parts, &mut out).unwrap();
                assert_eq!(out, data, "four streams, n = {n}");
            }
        }
    }
}
