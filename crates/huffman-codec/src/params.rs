//! Options of the encoder and limits of the decoder, as `Params` structs with `Default`.

/// Largest alphabet the format can describe: symbols are `u16`.
pub const MAX_ALPHABET: usize = 1 << 16;

/// Default cap on code lengths: with 11 bits the 8-bit fast decode table has 2,048 two-byte
/// entries (4 KiB) and stays in L1, as in zstd's Huff0.
pub const DEFAULT_MAX_CODE_LEN: u8 = 11;

/// Hard cap on code lengths accepted anywhere in the crate (the general decode table then has
/// 2^15 entries).
pub const MAX_CODE_LEN: u8 = 15;

/// Blocks with at least this many symbols are split into four interleaved streams by default.
pub const DEFAULT_FOUR_STREAM_MIN: usize = 1024;

/// How [`crate::compress`] and [`crate::compress_u8`] build a block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EncodeParams {
    /// Cap on code lengths, in `1..=15`. Default [`DEFAULT_MAX_CODE_LEN`] (11).
    pub max_code_len: u8,
    /// Inputs with at least this many symbols use four interleaved streams, smaller ones a
    /// single stream. Default [`DEFAULT_FOUR_STREAM_MIN`]. `usize::MAX` disables interleaving.
    pub four_stream_min: usize,
}

impl Default for EncodeParams {
    fn default() -> Self {
        Self {
            max_code_len: DEFAULT_MAX_CODE_LEN,
            four_stream_min: DEFAULT_FOUR_STREAM_MIN,
        }
    }
}

/// What a decoder accepts from a header before it allocates anything.
///
/// A hostile header can declare any symbol count; the decoder refuses counts above
/// `max_symbols` with [`crate::HuffError::SymbolCountAboveLimit`] instead of allocating for them.
/// Set `max_symbols` to the largest stream your application expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeLimits {
    /// Largest symbol count a block may declare. Default `1 << 26` (64 Mi symbols, i.e.
    /// 128 MiB of `u16` output).
    pub max_symbols: u64,
    /// Largest alphabet a block may declare, at most [`MAX_ALPHABET`]. Default [`MAX_ALPHABET`].
    pub max_alphabet: usize,
    /// Largest code length a table may use, at most [`MAX_CODE_LEN`]. Default [`MAX_CODE_LEN`].
    pub max_code_len: u8,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        Self {
            max_symbols: 1 << 26,
            max_alphabet: MAX_ALPHABET,
            max_code_len: MAX_CODE_LEN,
        }
    }
}
