//! The self-describing block: header, code-length table, stream sizes, streams.

use crate::encode::{EncodeOne, segment_bounds};
use crate::params::{DecodeLimits, EncodeParams, MAX_ALPHABET, MAX_CODE_LEN};
use crate::{CanonicalCode, Decoder, Encoder, HuffError, histogram, varint};

/// First byte of every block: format magic and version 1.
pub const FORMAT_BYTE: u8 = 0x48;

const KIND_EMPTY: u8 = 0;
const KIND_RUN: u8 = 1;
const KIND_ONE_STREAM: u8 = 2;
const KIND_FOUR_STREAMS: u8 = 3;

/// Compress 16-bit symbols into one self-describing block (format in the crate docs).
///
/// The alphabet is `max(symbols) + 1`. If more than `2^params.max_code_len` distinct symbols
/// occur, the cap is raised to the smallest length that fits (at most 15); more than 32,768
/// distinct symbols cannot be coded and give [`HuffError::CapTooSmall`].
pub fn compress(symbols: &[u16], params: &EncodeParams) -> Result<Vec<u8>, HuffError> {
    let hists = segment_histograms(symbols, params, histogram::histogram);
    compress_with(symbols, params, hists, Encoder::encode_stream)
}

/// Compress bytes into one self-describing block; see [`compress`].
pub fn compress_u8(symbols: &[u8], params: &EncodeParams) -> Result<Vec<u8>, HuffError> {
    let hists = segment_histograms(symbols, params, |s| histogram::histogram_u8(s).to_vec());
    compress_with(symbols, params, hists, Encoder::encode_stream_u8)
}

/// Decompress a block written by [`compress`] or [`compress_u8`].
pub fn decompress(block: &[u8], limits: &DecodeLimits) -> Result<Vec<u16>, HuffError> {
    match parse(block, limits)? {
        Parsed::Empty => Ok(Vec::new()),
        Parsed::Run { n, symbol } => Ok(vec![symbol; n]),
        Parsed::Huffman { n, code, streams } => {
            let mut out = vec![0u16; n];
            let decoder = Decoder::new(&code);
            match streams {
                Streams::One(s) => decoder.decode_stream(s, &mut out)?,
                Streams::Four(s) => decoder.decode_four(s, &mut out)?,
            }
            Ok(out)
        }
    }
}

/// Decompress a block into bytes; its alphabet (or run symbol) must fit in 8 bits, else
/// [`HuffError::AlphabetTooLargeForU8`].
pub fn decompress_u8(block: &[u8], limits: &DecodeLimits) -> Result<Vec<u8>, HuffError> {
    match parse(block, limits)? {
        Parsed::Empty => Ok(Vec::new()),
        Parsed::Run { n, symbol } => match u8::try_from(symbol) {
            Ok(byte) => Ok(vec![byte; n]),
            Err(_) => Err(HuffError::AlphabetTooLargeForU8 {
                alphabet_size: symbol as usize + 1,
            }),
        },
        Parsed::Huffman { n, code, streams } => {
            if code.alphabet_size() > 256 {
                return Err(HuffError::AlphabetTooLargeForU8 {
                    alphabet_size: code.alphabet_size(),
                });
            }
            let mut out = vec![0u8; n];
            let decoder = Decoder::new(&code);
            match streams {
                Streams::One(s) => decoder.decode_stream_u8(s, &mut out)?,
                Streams::Four(s) => decoder.decode_four_u8(s, &mut out)?,
            }
            Ok(out)
        }
    }
}

/// Histograms of the segments the block will have (one, or four per [`segment_bounds`]).
fn segment_histograms<T>(
    symbols: &[T],
    params: &EncodeParams,
    hist: impl Fn(&[T]) -> Vec<u64>,
) -> Vec<Vec<u64>> {
    if symbols.len() >= params.four_stream_min {
        (0..4)
            .map(|i| {
                let (a, b) = segment_bounds(symbols.len(), i);
                hist(&symbols[a..b])
            })
            .collect()
    } else {
        vec![hist(symbols)]
    }
}

fn compress_with<T: Copy + Into<u32>>(
    symbols: &[T],
    params: &EncodeParams,
    hists: Vec<Vec<u64>>,
    encode: EncodeOne<T>,
) -> Result<Vec<u8>, HuffError> {
    if params.max_code_len == 0 || params.max_code_len > MAX_CODE_LEN {
        return Err(HuffError::InvalidMaxCodeLen {
            op: "compress",
            max_len: params.max_code_len,
        });
    }
    let mut total = vec![0u64; hists.iter().map(Vec::len).max().unwrap_or(0)];
    for h in &hists {
        for (t, &c) in total.iter_mut().zip(h) {
            *t += c;
        }
    }
    // Trim the alphabet to the largest symbol present.
    let alphabet = total.iter().rposition(|&c| c > 0).map_or(0, |p| p + 1);
    total.truncate(alphabet);
    let used = total.iter().filter(|&&c| c > 0).count();

    let mut out = vec![FORMAT_BYTE];
    match used {
        0 => {
            out.push(KIND_EMPTY);
            return Ok(out);
        }
        1 => {
            out.push(KIND_RUN);
            varint::write(&mut out, symbols.len() as u64);
            // The only symbol present is the largest one.
            out.extend_from_slice(&((alphabet - 1) as u16).to_le_bytes());
            return Ok(out);
        }
        _ => {}
    }
    debug_assert!(alphabet <= MAX_ALPHABET);
    let needed = usize::BITS - (used - 1).leading_zeros(); // ceil(log2(used))
    let cap = params
        .max_code_len
        .max(needed.min(MAX_CODE_LEN as u32) as u8);
    let code = CanonicalCode::from_frequencies(&total, cap)?;
    let encoder = Encoder::new(&code);

    out.push(if hists.len() == 4 {
        KIND_FOUR_STREAMS
    } else {
        KIND_ONE_STREAM
    });
    varint::write(&mut out, symbols.len() as u64);
    code.write_table(&mut out);
    let sizes: Vec<u64> = hists
        .iter()
        .map(|h| code.cost_bits(h).div_ceil(8))
        .collect();
    for &s in &sizes {
        varint::write(&mut out, s);
    }
    out.reserve(sizes.iter().sum::<u64>() as usize + 8);
    for (i, &size) in sizes.iter().enumerate() {
        let (a, b) = if hists.len() == 4 {
            segment_bounds(symbols.len(), i)
        } else {
            (0, symbols.len())
        };
        let written = encode(&encoder, &symbols[a..b], &mut out)?;
        debug_assert_eq!(written as u64, size);
    }
    Ok(out)
}

enum Streams<'a> {
    One(&'a [u8]),
    Four([&'a [u8]; 4]),
}

enum Parsed<'a> {
    Empty,
    Run {
        n: usize,
        symbol: u16,
    },
    Huffman {
        n: usize,
        code: CanonicalCode,
        streams: Streams<'a>,
    },
}

/// Validate the whole header, the table and the stream sizes before anything is allocated for
/// the output.
fn parse<'a>(block: &'a [u8], limits: &DecodeLimits) -> Result<Parsed<'a>, HuffError> {
    let Some(&[magic, kind]) = block.first_chunk::<2>() else {
        return Err(HuffError::Truncated {
            what: "block header",
            needed: 2,
            available: block.len() as u64,
        });
    };
    if magic != FORMAT_BYTE {
        return Err(HuffError::BadMagic { found: magic });
    }
    if kind > KIND_FOUR_STREAMS {
        return Err(HuffError::UnknownBlockKind { kind });
    }
    let mut pos = 2;
    let expect_end = |end: usize| -> Result<(), HuffError> {
        if block.len() != end {
            return Err(HuffError::TrailingBytes {
                expected: end as u64,
                actual: block.len() as u64,
            });
        }
        Ok(())
    };
    if kind == KIND_EMPTY {
        expect_end(pos)?;
        return Ok(Parsed::Empty);
    }
    let declared = varint::read(block, &mut pos, "symbol count")?;
    if declared > limits.max_symbols {
        return Err(HuffError::SymbolCountAboveLimit {
            declared,
            limit: limits.max_symbols,
        });
    }
    // Within the caller's limit, which is meant to be allocatable, so it fits in usize.
    let n = usize::try_from(declared).map_err(|_| HuffError::SymbolCountAboveLimit {
        declared,
        limit: usize::MAX as u64,
    })?;
    if kind == KIND_RUN {
        let Some(bytes) = block.get(pos..).and_then(|s| s.first_chunk::<2>()) else {
            return Err(HuffError::Truncated {
                what: "run symbol",
                needed: 2,
                available: (block.len() - pos) as u64,
            });
        };
        expect_end(pos + 2)?;
        return Ok(Parsed::Run {
            n,
            symbol: u16::from_le_bytes(*bytes),
        });
    }
    let (code, table_len) = CanonicalCode::read_table(&block[pos..], limits)?;
    pos += table_len;
    let count = if kind == KIND_FOUR_STREAMS { 4 } else { 1 };
    let mut sizes = [0u64; 4];
    for size in sizes.iter_mut().take(count) {
        *size = varint::read(block, &mut pos, "stream size")?;
    }
    let payload = (block.len() - pos) as u64;
    let declared_payload = sizes
        .iter()
        .try_fold(0u64, |acc, &s| acc.checked_add(s))
        .unwrap_or(u64::MAX);
    if declared_payload > payload {
        return Err(HuffError::Truncated {
            what: "streams",
            needed: declared_payload,
            available: payload,
        });
    }
    expect_end(pos + declared_payload as usize)?;
    // Each code takes at least min_len bits: refuse counts the payload cannot hold before the
    // caller allocates `n` symbols.
    let needed = declared.saturating_mul(code.min_len() as u64);
    if needed > payload * 8 {
        return Err(HuffError::StreamOverrun {
            stream: 0,
            bits_needed: needed,
            bits_available: payload * 8,
        });
    }
    let mut parts = [&block[..0]; 4];
    for (part, &size) in parts.iter_mut().zip(&sizes).take(count) {
        *part = &block[pos..pos + size as usize];
        pos += size as usize;
    }
    let streams = if count == 4 {
        Streams::Four(parts)
    } else {
        Streams::One(parts[0])
    };
    Ok(Parsed::Huffman { n, code, streams })
}
