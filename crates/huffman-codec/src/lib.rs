//! Canonical length-limited Huffman coding (placeholder; being written).
#![warn(missing_docs)]
