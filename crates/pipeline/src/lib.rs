//! Orchestration: the `.slim` container, recipes and reports.
//!
//! **Not yet filled.** This crate will hold: the `.slim` container (write, read, verify;
//! specified in `docs/FORMAT.md`); recipes that chain prune → share → Huffman and the other
//! techniques; per-layer reports of sizes as actually written and multiply-accumulates.
#![warn(missing_docs)]
