//! The crate's typed error: every failure names the operation and the offending values.

use std::fmt;

/// Everything that can go wrong while building a code, encoding or decoding.
///
/// Decoding untrusted bytes returns one of these and never panics; the variants carry the
/// values that were found so that a failing stage can be diagnosed from the message alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HuffError {
    /// An alphabet (frequency table, length table or declared header field) has more symbols
    /// than the format allows ([`crate::MAX_ALPHABET`]) or than the caller's limit.
    AlphabetTooLarge {
        /// Operation that saw it.
        op: &'static str,
        /// Alphabet size found.
        size: usize,
        /// Largest size accepted.
        max: usize,
    },
    /// A code was requested for a frequency table whose counts are all zero.
    NoSymbols {
        /// Operation that saw it.
        op: &'static str,
    },
    /// A maximum code length outside `1..=15` was requested or declared.
    InvalidMaxCodeLen {
        /// Operation that saw it.
        op: &'static str,
        /// The length found.
        max_len: u8,
    },
    /// More symbols are in use than a code capped at `cap` bits can give distinct codewords.
    CapTooSmall {
        /// The length cap.
        cap: u8,
        /// Number of symbols with a non-zero count.
        used_symbols: usize,
    },
    /// A code length is larger than the cap in force (the declared maximum or the caller's).
    LengthAboveCap {
        /// Symbol that carries the length.
        symbol: usize,
        /// Its code length.
        length: u8,
        /// The cap.
        cap: u8,
    },
    /// The code lengths do not describe a complete prefix code: `sum 2^-len != 1`.
    ///
    /// The sum is reported as `numerator / 2^cap`.
    KraftSumNotExact {
        /// `sum 2^(cap - len)` over the symbols with a non-zero length.
        numerator: u64,
        /// The cap used as common denominator exponent.
        cap: u8,
    },
    /// A symbol to encode is outside the code's alphabet or has no codeword (length 0).
    SymbolNotInCode {
        /// Operation that saw it.
        op: &'static str,
        /// The symbol.
        symbol: u32,
        /// The code's alphabet size.
        alphabet_size: usize,
    },
    /// The compact code-length table is malformed (bad zero run, run past the alphabet,
    /// non-zero padding nibble).
    CorruptTable {
        /// Byte offset inside the table where the problem was found.
        offset: usize,
        /// What is wrong.
        reason: &'static str,
    },
    /// The first byte of a block is not this format's magic/version byte.
    BadMagic {
        /// Byte found.
        found: u8,
    },
    /// The block-kind byte is not one this version knows.
    UnknownBlockKind {
        /// Byte found.
        kind: u8,
    },
    /// The input ended before a field was complete.
    Truncated {
        /// Field or section being read.
        what: &'static str,
        /// Bytes needed from the field's start.
        needed: u64,
        /// Bytes available from the field's start.
        available: u64,
    },
    /// A LEB128 variable-length integer is longer than 10 bytes or overflows 64 bits.
    BadVarint {
        /// Field being read.
        what: &'static str,
    },
    /// The declared symbol count is beyond [`crate::DecodeLimits::max_symbols`].
    SymbolCountAboveLimit {
        /// Count declared by the header.
        declared: u64,
        /// Caller's limit.
        limit: u64,
    },
    /// A stream cannot hold the symbols it is declared to hold: decoding it would read past
    /// its last byte.
    StreamOverrun {
        /// Stream index (0 for a single stream, 0..4 for interleaved streams).
        stream: usize,
        /// Bits the decoder needed.
        bits_needed: u64,
        /// Bits the stream has.
        bits_available: u64,
    },
    /// A stream has bytes left over after its last symbol was decoded.
    StreamNotConsumed {
        /// Stream index.
        stream: usize,
        /// Bytes the symbols used.
        used_bytes: u64,
        /// Bytes the stream has.
        declared_bytes: u64,
    },
    /// The padding bits after a stream's last codeword are not zero.
    NonZeroPadding {
        /// Stream index.
        stream: usize,
    },
    /// The block is longer than its header and declared stream sizes account for.
    TrailingBytes {
        /// Bytes the header accounts for.
        expected: u64,
        /// Bytes in the block.
        actual: u64,
    },
    /// 8-bit output was requested but the code's alphabet has more than 256 symbols.
    AlphabetTooLargeForU8 {
        /// The code's alphabet size.
        alphabet_size: usize,
    },
}

impl fmt::Display for HuffError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use HuffError::*;
        match self {
            AlphabetTooLarge { op, size, max } => {
                write!(
                    f,
                    "{op}: alphabet of {size} symbols exceeds the maximum of {max}"
                )
            }
            NoSymbols { op } => {
                write!(f, "{op}: every frequency is zero, there is nothing to code")
            }
            InvalidMaxCodeLen { op, max_len } => {
                write!(f, "{op}: maximum code length {max_len} is outside 1..=15")
            }
            CapTooSmall { cap, used_symbols } => write!(
                f,
                "build code: {used_symbols} symbols in use cannot fit codes of at most {cap} bits"
            ),
            LengthAboveCap {
                symbol,
                length,
                cap,
            } => write!(
                f,
                "code table: symbol {symbol} has length {length}, above the cap of {cap}"
            ),
            KraftSumNotExact { numerator, cap } => write!(
                f,
                "code table: Kraft sum is {numerator}/2^{cap}, not exactly 1 (code is not complete)"
            ),
            SymbolNotInCode {
                op,
                symbol,
                alphabet_size,
            } => write!(
                f,
                "{op}: symbol {symbol} has no codeword (alphabet size {alphabet_size})"
            ),
            CorruptTable { offset, reason } => {
                write!(f, "code table: {reason} at table byte {offset}")
            }
            BadMagic { found } => write!(
                f,
                "decode block: first byte {found:#04x} is not the format byte {:#04x}",
                crate::block::FORMAT_BYTE
            ),
            UnknownBlockKind { kind } => write!(f, "decode block: unknown block kind {kind}"),
            Truncated {
                what,
                needed,
                available,
            } => write!(
                f,
                "decode block: {what} needs {needed} bytes but only {available} remain"
            ),
            BadVarint { what } => write!(f, "decode block: {what} is not a valid LEB128 u64"),
            SymbolCountAboveLimit { declared, limit } => write!(
                f,
                "decode block: declared {declared} symbols, above the caller's limit of {limit}"
            ),
            StreamOverrun {
                stream,
                bits_needed,
                bits_available,
            } => write!(
                f,
                "decode stream {stream}: needs at least {bits_needed} bits but has {bits_available}"
            ),
            StreamNotConsumed {
                stream,
                used_bytes,
                declared_bytes,
            } => write!(
                f,
                "decode stream {stream}: symbols use {used_bytes} bytes of {declared_bytes}"
            ),
            NonZeroPadding { stream } => {
                write!(
                    f,
                    "decode stream {stream}: padding bits after the last code are not zero"
                )
            }
            TrailingBytes { expected, actual } => write!(
                f,
                "decode block: header accounts for {expected} bytes but the block has {actual}"
            ),
            AlphabetTooLargeForU8 { alphabet_size } => write!(
                f,
                "decode u8: alphabet of {alphabet_size} symbols does not fit in 8-bit output"
            ),
        }
    }
}

impl std::error::Error for HuffError {}
