//! Canonical, length-limited Huffman coding with a table-driven decoder. Depends on std only.
//!
//! # What it is for
//!
//! The last stage of Deep Compression (Han et al., 2016): lossless entropy coding of the
//! quantized weight indices and the sparse-index gaps of a pruned, weight-shared network, where
//! it saves 20-30% over fixed-width storage. More generally: any stream of small integers
//! (`u16` symbols, alphabets up to 65,536, or bytes) whose distribution is skewed, when decode
//! speed matters (>= 1 GB/s for bytes) and the input may be hostile.
//!
//! # What it is not for
//!
//! It is an entropy coder only: no match finding (use zstd or DEFLATE for data with repeats),
//! no adaptive model (the code is fixed per block), no arithmetic or ANS coding, so it cannot
//! go below 1 bit per symbol (a block with a single symbol is run-length coded instead).
//!
//! # Two levels
//!
//! - Blocks: [`compress`] / [`decompress`] (and the `_u8` variants) write and read one
//!   self-describing block; [`DecodeLimits`] bounds what a header may make the decoder allocate.
//! - Parts: [`CanonicalCode::from_frequencies`] builds a code, [`CanonicalCode::write_table`]
//!   / [`CanonicalCode::read_table`] store it, [`Encoder`] and [`Decoder`] code streams with it,
//!   for containers that keep several streams under one table.
//!
//! # The code
//!
//! Code lengths come from Huffman's algorithm, capped at `max_code_len` (default 11, at most
//! 15) by repaying the Kraft sum as zstd's Huff0 does (details in the `lengths` module source).
//! Every code is *complete*: `sum over used symbols of 2^-len == 1` exactly. Codewords are
//! *canonical* (RFC 1951 section 3.2.2): sort the used symbols by (length, symbol value);
//! the first gets the all-zero codeword of its length, and each next one gets
//! `(previous + 1) << (its length - previous length)`. The lengths alone define the code.
//!
//! # Bitstream format (version 1)
//!
//! All multi-byte integers are little-endian; "varint" is unsigned LEB128 (7 bits per byte,
//! low group first, high bit set on every byte but the last, at most 10 bytes, value < 2^64).
//!
//! ## Streams
//!
//! A stream is the concatenation of the codewords of its symbols, packed **least significant
//! bit first**: the first bit of the stream is bit 0 of byte 0, and a codeword is sent from its
//! most significant bit to its least. (So the stream read as one little-endian integer holds
//! each codeword bit-reversed.) After the last codeword, the last byte is padded with 0 bits.
//! A stream of `k` symbols with total codeword length `B` bits is exactly `ceil(B / 8)` bytes.
//!
//! Four-stream blocks split `n` symbols into four consecutive segments (see
//! [`segment_bounds`]): segments 0, 1 and 2 hold `ceil(n/4)` symbols each (fewer only when `n`
//! runs out) and segment 3 the rest; segment `i` is coded as stream `i`.
//!
//! ## Code-length table ([`CanonicalCode::write_table`])
//!
//! | bytes | field |
//! |---|---|
//! | 2 | `alphabet_size - 1` (u16; alphabet 1..=65,536) |
//! | 1 | `max_len`, 1..=15 (no length in the table may exceed it) |
//! | ... | the lengths of symbols `0..alphabet_size` as 4-bit nibbles, the low nibble of each byte first |
//!
//! A nibble `1..=15` is the code length of the next symbol. A nibble `0` starts a run of unused
//! symbols (length 0): the following nibbles hold `run - 1` in base 8, least significant digit
//! first, 3 bits per nibble, with bit 3 set on every digit nibble but the last (at most 6
//! digits). The nibbles describe exactly `alphabet_size` symbols; if their count is odd, the
//! high nibble of the last byte is 0. The lengths must form a complete code.
//!
//! ## Block ([`compress`])
//!
//! | bytes | field |
//! |---|---|
//! | 1 | format byte [`FORMAT_BYTE`] = `0x48` (magic and version 1) |
//! | 1 | kind: 0 empty, 1 run, 2 Huffman with one stream, 3 Huffman with four streams |
//! | varint | `n`, the number of symbols (absent for kind 0) |
//! | 2 | kind 1 only: the symbol, repeated `n` times (u16) |
//! | table | kinds 2 and 3: the code-length table |
//! | varints | kinds 2 and 3: the byte size of each stream (1 or 4 of them) |
//! | ... | kinds 2 and 3: the streams, back to back |
//!
//! The block ends exactly where its last field or stream ends. The encoder uses kind 0 for
//! empty input, kind 1 when one symbol value occurs, kind 3 when `n >=`
//! [`EncodeParams::four_stream_min`] (default 1,024) and kind 2 otherwise.
//!
//! # Hostile input
//!
//! Decoding never panics and allocates nothing from an unchecked field: the symbol count is
//! checked against [`DecodeLimits::max_symbols`] and against the payload (each symbol needs at
//! least the shortest code length in bits) before the output is allocated; the table must be a
//! complete code within the cap; the stream sizes must add up to the payload exactly; each
//! stream must be consumed exactly, with zero padding. Every failure is a typed [`HuffError`].
//!
//! # Example
//!
//! ```
//! use huffman_codec::{compress_u8, decompress_u8, DecodeLimits, EncodeParams};
//! let data = b"abracadabra, abracadabra, abracadabra".repeat(100);
//! let block = compress_u8(&data, &EncodeParams::default())?;
//! assert!(block.len() < data.len() / 2);
//! assert_eq!(decompress_u8(&block, &DecodeLimits::default())?, data);
//! # Ok::<(), huffman_codec::HuffError>(())
//! ```
#![warn(missing_docs)]
#![forbid(unsafe_code)]

mod block;
mod code;
mod decode;
mod encode;
mod error;
mod histogram;
mod lengths;
mod params;
mod varint;

pub use block::{FORMAT_BYTE, compress, compress_u8, decompress, decompress_u8};
pub use code::CanonicalCode;
pub use decode::Decoder;
pub use encode::{Encoder, segment_bounds};
pub use error::HuffError;
pub use histogram::{entropy_bits, histogram, histogram_u8};
pub use params::{
    DEFAULT_FOUR_STREAM_MIN, DEFAULT_MAX_CODE_LEN, DecodeLimits, EncodeParams, MAX_ALPHABET,
    MAX_CODE_LEN,
};
