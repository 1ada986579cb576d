//! The real streams Deep Compression entropy-codes, read from `fixtures/streams/` (shared by
//! tests and benches): per model and layer kind, the k-means code indices of the stored
//! entries of every pruned, shared layer, and their relative-index gaps.
//!
//! They come from the trained zoo models (`runs/lenet300.model`, `runs/lenet5.model`) through
//! `cargo xtask streams` (`xtask/src/streams.rs`): magnitude pruning to Han et al.'s per-layer
//! densities (lenet300 8% / 9% / 26%, lenet5 66% / 12% / 8% / 19%), no retraining, 1-D k-means
//! with linear initialisation (8-bit codes for conv, 5-bit for fc, code 0 reserved for zero),
//! relative indices with 8-bit (conv) / 5-bit (fc) gaps and filler entries (code 0) for longer
//! runs of zeros. `fixtures/streams/README.md` has the details and the per-layer figures.
#![allow(dead_code)]

/// Where the stream files are.
pub const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../fixtures/streams");

/// The committed streams: (file stem, alphabet size = 2^bits).
pub const FILES: [(&str, usize); 6] = [
    ("lenet300.fc.indices", 32),
    ("lenet300.fc.gaps", 32),
    ("lenet5.conv.indices", 256),
    ("lenet5.conv.gaps", 256),
    ("lenet5.fc.indices", 32),
    ("lenet5.fc.gaps", 32),
];

/// A named symbol stream and its alphabet size.
pub struct Stream {
    pub name: String,
    pub symbols: Vec<u8>,
    pub alphabet: usize,
}

/// Reads one committed stream (one byte per symbol); panics with the regeneration command if
/// the file is missing or holds a symbol outside its alphabet.
pub fn read_stream(name: &str, alphabet: usize) -> Stream {
    let path = format!("{DIR}/{name}.u8");
    let symbols = std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "{path}: {e} (regenerate with `cargo xtask streams`, see fixtures/streams/README.md)"
        )
    });
    if let Some(i) = symbols.iter().position(|&s| s as usize >= alphabet) {
        panic!(
            "{path}: symbol {i} is {}, outside the alphabet of {alphabet}",
            symbols[i]
        );
    }
    Stream {
        name: name.to_string(),
        symbols,
        alphabet,
    }
}

/// Every committed stream of both reference models.
pub fn all_streams() -> Vec<Stream> {
    FILES.iter().map(|&(n, a)| read_stream(n, a)).collect()
}

/// SplitMix64: small, seedable, good enough for resampling.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// A large 8-bit stream for steady-state throughput, **resampled, not real**: symbols drawn
/// uniformly (seeded) from the real `lenet5.fc.indices` (the largest index stream), so it has
/// that stream's distribution but `n` symbols.
pub fn large_stream(n: usize, seed: u64) -> Vec<u8> {
    let base = read_stream("lenet5.fc.indices", 32).symbols;
    let mut rng = Rng::new(seed);
    (0..n)
        .map(|_| base[(rng.next_u64() % base.len() as u64) as usize])
        .collect()
}

/// Empirical Shannon entropy in bits per symbol, through the crate's own
/// [`huffman_codec::entropy_bits`].
pub fn entropy_bits(symbols: &[u8]) -> f64 {
    huffman_codec::entropy_bits(&huffman_codec::histogram_u8(symbols))
}
