//! Reports of a compression run: the per-layer table of Deep Compression's Tables 2-3
//! (weights kept, bits per weight after sharing and after Huffman coding, index bits,
//! compression rate) from the bytes actually written, the stages, the energy estimate, and
//! their Markdown and SVG renderings.

pub mod energy;

use nn::{Model, Result};
use serde::Serialize;

use crate::chart::{LineChart, Series};
use crate::compress::StageReport;
use crate::recipe::Recipe;

/// Everything a compression run measured (`report.json`).
#[derive(Clone, Debug, Serialize)]
pub struct CompressReport {
    /// The recipe run.
    pub recipe: Recipe,
    /// The input model's file.
    pub source: String,
    /// Its fingerprint.
    pub source_hash: String,
    /// Test accuracy of the input model (fraction, all test images).
    pub accuracy_before: f64,
    /// Test accuracy of the written file, read back.
    pub accuracy_after: f64,
    /// 4 bytes per parameter of the input model.
    pub dense_bytes: u64,
    /// Bytes of the written file.
    pub file_bytes: u64,
    /// `dense_bytes / file_bytes`.
    pub ratio: f64,
    /// Parameters of the input model.
    pub params: usize,
    /// Nonzero parameters of the written model.
    pub nonzero_params: usize,
    /// Multiply-accumulates per image before.
    pub macs_before: u64,
    /// Multiply-accumulates per image of the stored form.
    pub macs_after: u64,
    /// Energy per inference before and after.
    pub energy: energy::EnergyReport,
    /// One entry per stage.
    pub stages: Vec<StageReport>,
    /// One row per top-level layer with parameters.
    pub layers: Vec<LayerRow>,
    /// Wall-clock seconds of the stages and the final evaluation.
    pub seconds: f64,
}

/// One layer of the table (Deep Compression, Tables 2-3), from the written section.
#[derive(Clone, Debug, Serialize)]
pub struct LayerRow {
    /// Top-level layer path.
    pub path: String,
    /// Stored kind.
    pub kind: String,
    /// Weights of the dense layer.
    pub weights: usize,
    /// Nonzero weights kept.
    pub kept: usize,
    /// `kept / weights`.
    pub density: f64,
    /// Bits per stored weight after sharing (the code width; 32 for f32 values).
    pub weight_bits: u32,
    /// Stored bits of the weights (codes or values) per kept weight after Huffman coding.
    pub weight_bits_huffman: f64,
    /// Relative-index width (0: no index).
    pub index_bits: u32,
    /// Stored bits of the index per kept weight after Huffman coding.
    pub index_bits_huffman: f64,
    /// Centroids in the codebook (0: none).
    pub codebook: usize,
    /// Bytes of the layer's section (weights, index, codebook, bias, framing).
    pub bytes: u64,
    /// 4 bytes per parameter of the input layer.
    pub dense_bytes: u64,
    /// `dense_bytes / bytes`.
    pub rate: f64,
}

/// Storage of one shared layer (Deep Compression's accounting next to the bytes).
#[derive(Clone, Debug, Serialize)]
pub struct SharedRow {
    /// Layer path.
    pub path: String,
    /// Record kind.
    pub kind: &'static str,
    /// Code width.
    pub bits: u32,
    /// Centroids in the codebook (`codebook` is the same figure, kept for older readers).
    pub k: usize,
    /// Same as `k`.
    pub codebook: usize,
    /// Relative-index width (0: dense codes).
    pub index_bits: u32,
    /// Nonzero weights.
    pub nnz: usize,
    /// Stored entries, fillers included.
    pub entries: usize,
    /// Bytes of the packed gaps.
    pub index_bytes: usize,
    /// Bytes of the packed codes.
    pub code_bytes: usize,
    /// Bytes of the codebook.
    pub codebook_bytes: usize,
    /// Bytes of the layer (gaps, codes, codebook, bias) before Huffman coding.
    pub bytes: usize,
    /// Deep Compression's rate `32 n / (e (index_bits + bits) + 32 k)`.
    pub rate: f64,
}

impl SharedRow {
    fn new(path: String, s: share::LayerStorage) -> Self {
        Self {
            path,
            kind: s.kind,
            bits: s.bits,
            k: s.k,
            codebook: s.k,
            index_bits: s.index_bits,
            nnz: s.nnz,
            entries: s.entries,
            index_bytes: s.index_bytes,
            code_bytes: s.code_bytes,
            codebook_bytes: s.codebook_bytes,
            bytes: s.bytes(),
            rate: s.rate(),
        }
    }
}

/// The storage rows of every shared layer of `model`, by path.
pub fn shared_rows(model: &Model) -> Vec<SharedRow> {
    let mut rows = Vec::new();
    model.visit(&mut |path, layer| {
        if let Some(s) = share::layer_storage(layer) {
            rows.push(SharedRow::new(path.to_string(), s));
        }
    });
    rows
}

/// The per-layer table: `input` gives each layer's dense size, `working` (dense layers
/// holding zeros and shared values) its weights and kept weights, `stored` and its container
/// image `bytes` what was written.
pub fn layer_rows(
    input: &Model,
    working: &Model,
    stored: &Model,
    bytes: &[u8],
) -> Result<Vec<LayerRow>> {
    let infos = crate::container::layer_infos(bytes, "the written image")?;
    let mut rows = Vec::new();
    for (i, ((layer, work), info)) in input
        .layers
        .iter()
        .zip(&working.layers)
        .zip(&infos)
        .enumerate()
    {
        if layer.param_count() == 0 {
            continue;
        }
        let weights: Vec<f32> = work
            .params()
            .iter()
            .filter(|p| p.name == "weight")
            .flat_map(|p| p.value.data().iter().copied())
            .collect();
        let kept = weights.iter().filter(|w| **w != 0.0).count();
        let record = stored.layers[i].record()?;
        let storage = share::layer_storage(stored.layers[i].as_ref());
        let payload_bits = |name: &str| {
            info.payloads
                .iter()
                .find(|p| p.name == name)
                .map(|p| 8.0 * p.stored_bytes as f64 / kept.max(1) as f64)
        };
        let index_bits = record.int_or("index_bits", 0)?.max(0) as u32;
        let weight_bits = storage.map_or(32, |s| s.bits);
        let dense_bytes = 4 * layer.param_count() as u64;
        rows.push(LayerRow {
            path: i.to_string(),
            kind: info.kind.clone(),
            weights: weights.len(),
            kept,
            density: kept as f64 / weights.len().max(1) as f64,
            weight_bits,
            weight_bits_huffman: payload_bits("codes").unwrap_or(weight_bits as f64),
            index_bits,
            index_bits_huffman: payload_bits("gaps").unwrap_or(0.0),
            codebook: storage.map_or(0, |s| s.k),
            bytes: info.section_bytes,
            dense_bytes,
            rate: dense_bytes as f64 / info.section_bytes.max(1) as f64,
        });
    }
    Ok(rows)
}

impl CompressReport {
    /// The report as Markdown: summary, stages, per-layer table, energy. `context` is a line
    /// naming the command, CPU, threads and date.
    pub fn markdown(&self, title: &str, context: &str) -> String {
        let mut s = format!("# {title}\n\n{context}\n\n");
        s += &format!(
            "Recipe `{}`. Accuracy {:.2}% -> {:.2}% ({:+.2} points) on the test images; {} bytes \
             -> {} bytes written: **{:.1}x smaller** than the dense f32 weights and biases. \
             {} of {} parameters nonzero; {} -> {} multiply-accumulates per image. Source {} \
             ({}).\n\n",
            self.recipe.name,
            100.0 * self.accuracy_before,
            100.0 * self.accuracy_after,
            100.0 * (self.accuracy_after - self.accuracy_before),
            self.dense_bytes,
            self.file_bytes,
            self.ratio,
            self.nonzero_params,
            self.params,
            self.macs_before,
            self.macs_after,
            self.source,
            self.source_hash
        );
        s += "## Stages\n\n| # | stage | accuracy | bytes | ratio | nonzero | MACs | seconds |\n\
              |---|---|---|---|---|---|---|---|\n";
        s += &format!(
            "| - | input | {:.2}% | {} (f32) | 1.0x | {} | {} | |\n",
            100.0 * self.accuracy_before,
            self.dense_bytes,
            self.params,
            self.macs_before
        );
        for st in &self.stages {
            s += &format!(
                "| {} | {} | {:.2}% | {} | {:.1}x | {} | {} | {:.0} |\n",
                st.index,
                st.stage,
                100.0 * st.accuracy,
                st.file_bytes,
                st.ratio,
                st.nonzero_params,
                st.macs,
                st.seconds
            );
        }
        s += "\n## Layers (Deep Compression, Tables 2-3)\n\n\
              | layer | kind | weights | kept | weight bits | after Huffman | index bits | after \
              Huffman | codebook | bytes | rate |\n|---|---|---|---|---|---|---|---|---|---|---|\n";
        for l in &self.layers {
            s += &format!(
                "| {} | {} | {} | {:.2}% | {} | {:.2} | {} | {:.2} | {} | {} | {:.1}x |\n",
                l.path,
                l.kind,
                l.weights,
                100.0 * l.density,
                l.weight_bits,
                l.weight_bits_huffman,
                l.index_bits,
                l.index_bits_huffman,
                l.codebook,
                l.bytes,
                l.rate
            );
        }
        let layer_bytes: u64 = self.layers.iter().map(|l| l.bytes).sum();
        s += &format!(
            "| total | | {} | {:.2}% | | | | | | {} (+{} header, metadata, parameterless \
             layers) | {:.1}x |\n\n\
             Bits after Huffman are the stored bits of the codes (or f32 values) and of the \
             relative index per kept weight; bytes are the layer's section as written.\n\n",
            self.layers.iter().map(|l| l.weights).sum::<usize>(),
            100.0 * self.layers.iter().map(|l| l.kept).sum::<usize>() as f64
                / self.layers.iter().map(|l| l.weights).sum::<usize>().max(1) as f64,
            layer_bytes,
            self.file_bytes - layer_bytes.min(self.file_bytes),
            self.ratio
        );
        let e = &self.energy;
        s += &format!(
            "## Energy per inference (estimate)\n\n{}.\n\n| | weight bytes | in SRAM | MACs | \
             memory | arithmetic | total | all from DRAM | all from SRAM |\n\
             |---|---|---|---|---|---|---|---|---|\n",
            e.assumption
        );
        for (name, x) in [("before", &e.before), ("after", &e.after)] {
            s += &format!(
                "| {name} | {} | {} | {} | {:.2} uJ | {:.2} uJ | **{:.2} uJ** | {:.2} uJ | {:.2} \
                 uJ |\n",
                x.weight_bytes,
                if x.in_sram { "yes" } else { "no" },
                x.macs,
                x.memory_pj * 1e-6,
                x.arithmetic_pj * 1e-6,
                x.total_pj * 1e-6,
                x.total_all_dram_pj * 1e-6,
                x.total_all_sram_pj * 1e-6
            );
        }
        s += &format!("\n{:.1}x less energy per inference as placed.\n", e.ratio);
        s
    }

    /// Accuracy against compression ratio after each stage, as an SVG line chart.
    pub fn chart(&self, title: &str) -> LineChart {
        let mut points = vec![(1.0, 100.0 * self.accuracy_before)];
        points.extend(self.stages.iter().map(|s| (s.ratio, 100.0 * s.accuracy)));
        LineChart {
            title: title.into(),
            x_label: "compression ratio (dense f32 bytes / bytes written)".into(),
            y_label: "test accuracy (%)".into(),
            series: vec![Series {
                name: format!("{} (input, then each stage)", self.recipe.name),
                points,
            }],
        }
    }
}
