//! Table-driven decoder: one lookup per symbol, 64-bit bit container, one or four streams.
//!
//! Every check happens before or after the hot loop, never inside it:
//! - before: the code is complete (a [`CanonicalCode`] invariant), so every table entry is a
//!   real codeword; each stream is long enough for its symbols at the shortest code length;
//! - inside: a refill reads 8 bytes while they exist and zero bytes past the end, so it cannot
//!   fail; the container always holds >= 56 bits after a refill, enough for `56 / max_len`
//!   lookups;
//! - after: the bits consumed must end in the stream's last byte, with zero padding.

use crate::encode::segment_bounds;
use crate::{CanonicalCode, HuffError};

/// Index bits of the 8-bit fast table: codes of the default cap (11) fit in 2,048 entries.
const FAST_BITS: u32 = 11;

/// Decodes streams written by [`crate::Encoder`] with the same [`CanonicalCode`].
///
/// It holds a flat table indexed by the next `max_len` bits of the stream (least significant
/// bit first), giving the symbol and its length; a codeword of length `l` fills `2^(max_len-l)`
/// entries. When the alphabet fits in a byte and `max_len <= 11`, it also holds the 8-bit fast
/// table of 2,048 `u16` entries (4 KiB, L1-resident) used by the `_u8` methods.
#[derive(Debug, Clone)]
pub struct Decoder {
    alphabet_size: usize,
    max_len: u8,
    min_len: u8,
    /// `symbol | len << 16`, `2^max_len` entries.
    table: Vec<u32>,
    /// `symbol | len << 8`, indexed by 11 bits.
    fast_u8: Option<Box<[u16; 1 << FAST_BITS]>>,
}

impl Decoder {
    /// Build the decode tables of `code`.
    pub fn new(code: &CanonicalCode) -> Self {
        let max_len = code.max_len();
        let codewords = code.codewords();
        let mut table = vec![0u32; 1 << max_len];
        fill_table(code, &codewords, max_len as u32, |i, s, l| {
            table[i] = s | l << 16
        });
        let fast_u8 = (code.alphabet_size() <= 256 && max_len as u32 <= FAST_BITS).then(|| {
            let mut fast = Box::new([0u16; 1 << FAST_BITS]);
            fill_table(code, &codewords, FAST_BITS, |i, s, l| {
                fast[i] = (s | l << 8) as u16
            });
            fast
        });
        Self {
            alphabet_size: code.alphabet_size(),
            max_len,
            min_len: code.min_len(),
            table,
            fast_u8,
        }
    }

    /// Alphabet size of the code.
    pub fn alphabet_size(&self) -> usize {
        self.alphabet_size
    }

    /// Decode exactly `out.len()` symbols from `stream`, which they must consume exactly.
    pub fn decode_stream(&self, stream: &[u8], out: &mut [u16]) -> Result<(), HuffError> {
        match self.max_len {
            0..=11 => self.one(&General::<5>::new(self), stream, out),
            12..=14 => self.one(&General::<4>::new(self), stream, out),
            _ => self.one(&General::<3>::new(self), stream, out),
        }
    }

    /// Decode exactly `out.len()` symbols from four streams holding the segments given by
    /// [`crate::segment_bounds`]; every stream must be consumed exactly.
    pub fn decode_four(&self, streams: [&[u8]; 4], out: &mut [u16]) -> Result<(), HuffError> {
        match self.max_len {
            0..=11 => self.four(&General::<5>::new(self), streams, out),
            12..=14 => self.four(&General::<4>::new(self), streams, out),
            _ => self.four(&General::<3>::new(self), streams, out),
        }
    }

    /// [`Decoder::decode_stream`] into bytes; the alphabet must have at most 256 symbols.
    pub fn decode_stream_u8(&self, stream: &[u8], out: &mut [u8]) -> Result<(), HuffError> {
        match (&self.fast_u8, self.max_len) {
            (Some(fast), _) => self.one(&Fast(fast), stream, out),
            _ if self.alphabet_size > 256 => Err(self.too_large_for_u8()),
            (None, 12..=14) => self.one(&Narrow(General::<4>::new(self)), stream, out),
            (None, _) => self.one(&Narrow(General::<3>::new(self)), stream, out),
        }
    }

    /// [`Decoder::decode_four`] into bytes; the alphabet must have at most 256 symbols.
    pub fn decode_four_u8(&self, streams: [&[u8]; 4], out: &mut [u8]) -> Result<(), HuffError> {
        match (&self.fast_u8, self.max_len) {
            (Some(fast), _) => self.four(&Fast(fast), streams, out),
            _ if self.alphabet_size > 256 => Err(self.too_large_for_u8()),
            (None, 12..=14) => self.four(&Narrow(General::<4>::new(self)), streams, out),
            (None, _) => self.four(&Narrow(General::<3>::new(self)), streams, out),
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
        let mut r = BitReader::new(stream);
        decode_rest(lut, &mut r, out);
        r.finish(0)
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
        let mut r = streams.map(BitReader::new);
        let [r0, r1, r2, r3] = &mut r;

        // Hot loop: four independent dependency chains, `L::N` symbols per stream per refill.
        let mut done = 0;
        let lockstep = o0
            .chunks_exact_mut(L::N)
            .zip(o1.chunks_exact_mut(L::N))
            .zip(o2.chunks_exact_mut(L::N))
            .zip(o3.chunks_exact_mut(L::N));
        for (((c0, c1), c2), c3) in lockstep {
            r0.refill();
            r1.refill();
            r2.refill();
            r3.refill();
            for k in 0..L::N {
                c0[k] = r0.decode(lut);
                c1[k] = r1.decode(lut);
                c2[k] = r2.decode(lut);
                c3[k] = r3.decode(lut);
            }
            done += L::N;
        }
        decode_rest(lut, r0, &mut o0[done..]);
        decode_rest(lut, r1, &mut o1[done..]);
        decode_rest(lut, r2, &mut o2[done..]);
        decode_rest(lut, r3, &mut o3[done..]);
        for (i, reader) in r.iter().enumerate() {
            reader.finish(i)?;
        }
        Ok(())
    }
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
        (e as u8, (e >> 8) as u32)
    }
}

/// The general table, `2^max_len` entries; `N` is chosen from `max_len` by the caller.
struct General<'a, const N: usize> {
    table: &'a [u32],
    mask: u64,
}

impl<'a, const N: usize> General<'a, N> {
    fn new(d: &'a Decoder) -> Self {
        Self {
            table: &d.table,
            mask: (1u64 << d.max_len) - 1,
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
        (e as u16, e >> 16)
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


/// LSB-first bit reader over one stream, with a 64-bit container.
struct BitReader<'a> {
    src: &'a [u8],
    /// Next byte to load; may run past `src.len()` while zero bytes are loaded at the end.
    pos: usize,
    buf: u64,
    /// Valid bits in `buf`.
    count: u32,
}

impl<'a> BitReader<'a> {
    fn new(src: &'a [u8]) -> Self {
        Self {
            src,
            pos: 0,
            buf: 0,
            count: 0,
        }
    }

    /// Top the container up to at least 56 bits. Branch-free 8-byte load while 8 bytes remain
    /// ("variant 4" of F. Giesen, "Reading bits in far too many ways", 2018), byte by byte
    /// with zeros past the end otherwise.
    #[inline(always)]
    fn refill(&mut self) {
        if let Some(word) = self.src.get(self.pos..).and_then(|s| s.first_chunk::<8>()) {
            self.buf |= u64::from_le_bytes(*word) << self.count;
            self.pos += ((63 - self.count) >> 3) as usize;
            self.count |= 56;
        } else {
            while self.count <= 56 {
                let byte = self.src.get(self.pos).copied().unwrap_or(0);
                self.buf |= (byte as u64) << self.count;
                self.pos += 1;
                self.count += 8;
            }
        }
    }

    #[inline(always)]
    fn decode<L: Lut>(&mut self, lut: &L) -> L::Out {
        let (s, l) = lut.lookup(self.buf);
        self.buf >>= l;
        self.count -= l;
        s
    }

    /// Check that the bits consumed end inside the last byte and that the rest is zero padding.
    fn finish(&self, stream: usize) -> Result<(), HuffError> {
        let consumed = self.pos as u64 * 8 - self.count as u64;
        let available = self.src.len() as u64 * 8;
        if consumed > available {
            return Err(HuffError::StreamOverrun {
                stream,
                bits_needed: consumed,
                bits_available: available,
            });
        }
        let used_bytes = consumed.div_ceil(8);
        if used_bytes != self.src.len() as u64 {
            return Err(HuffError::StreamNotConsumed {
                stream,
                used_bytes,
                declared_bytes: self.src.len() as u64,
            });
        }
        let tail_bits = (consumed % 8) as u32;
        if tail_bits != 0 && self.src.last().is_some_and(|&b| b >> tail_bits != 0) {
            return Err(HuffError::NonZeroPadding { stream });
        }
        Ok(())
    }
}

/// Decode `out.len()` symbols from one reader, `L::N` per refill.
#[inline(always)]
fn decode_rest<L: Lut>(lut: &L, r: &mut BitReader<'_>, out: &mut [L::Out]) {
    let mut chunks = out.chunks_exact_mut(L::N);
    for chunk in &mut chunks {
        r.refill();
        for o in chunk {
            *o = r.decode(lut);
        }
    }
    let rest = chunks.into_remainder();
    if !rest.is_empty() {
        r.refill();
        for o in rest {
            *o = r.decode(lut);
        }
    }
}
