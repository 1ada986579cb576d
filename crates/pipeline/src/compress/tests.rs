use super::*;
use crate::recipe::{PruneStage, Retrain, ShareStage};

fn data() -> (Dataset, Dataset) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/fashion-mnist");
    let (train, test) = nn::data::idx::load_fashion_mnist(&dir).unwrap();
    (train.take(3000).unwrap(), test.take(1000).unwrap())
}

/// lenet300 trained for two epochs on the slice: accurate enough that pruning has
/// something to lose.
fn trained(train: &Dataset) -> Model {
    let mut model =
        nn::zoo::build("lenet300", &mut tensor_core::rng::Rng::seed_from_u64(3)).unwrap();
    let config = nn::trainer::TrainConfig {
        epochs: 2,
        optimizer: nn::optim::OptimizerConfig::adam(1e-3),
        ..Default::default()
    };
    nn::trainer::Trainer::new(config)
        .fit(&mut model, train, None, &mut |_| {})
        .unwrap();
    model
}

#[derive(Default)]
struct Log {
    started: Vec<(usize, u64)>,
    steps: u64,
    finished: Vec<usize>,
}

impl Observer for Log {
    fn stage_started(&mut self, index: usize, _: &Stage, steps: u64) {
        self.started.push((index, steps));
    }
    fn progress(&mut self, p: &Progress) {
        if !p.epoch_done {
            self.steps += 1;
        }
    }
    fn stage_finished(&mut self, r: &StageReport) {
        self.finished.push(r.index);
    }
}

fn recipe(teacher: bool) -> Recipe {
    Recipe {
        name: "test".into(),
        stages: vec![
            Stage::Prune(PruneStage {
                ratio: Some(8.0),
                retrain: Retrain {
                    epochs: 1,
                    lr: 1e-3,
                    ..Retrain::default()
                },
                teacher: teacher.then(Teacher::input),
                ..PruneStage::default()
            }),
            Stage::Share(ShareStage {
                bits_fc: 4,
                ..ShareStage::default()
            }),
        ],
        huffman: true,
    }
}

#[test]
fn deep_compression_runs_end_to_end_and_the_report_is_the_file() {
    let (train, test) = data();
    let model = trained(&train);
    let data = Data {
        train: &train,
        test: &test,
    };
    let mut c = Compressor::new(model, recipe(true), 7, "not-a-file").unwrap();
    let mut log = Log::default();
    c.run_stages(&data, &mut log).unwrap();
    let steps_per_epoch = train.len().div_ceil(64) as u64;
    assert_eq!(
        log.started,
        vec![(0, steps_per_epoch), (1, steps_per_epoch)]
    );
    assert_eq!(log.steps, 2 * steps_per_epoch);
    assert_eq!(log.finished, vec![0, 1]);
    let out = c.finish(&data).unwrap();
    let r = &out.report;
    // The file's own accuracy, read back through the public loader path.
    let mut back = crate::container::decode(&out.bytes, "x")
        .unwrap()
        .into_model_with(&crate::registry())
        .unwrap();
    let acc = nn::metrics::evaluate(&mut back, &test, 256)
        .unwrap()
        .accuracy;
    assert_eq!(acc, r.accuracy_after);
    let meta = crate::container::decode(&out.bytes, "x").unwrap().metadata;
    assert_eq!(meta["accuracy"], format!("{acc}"));
    assert!(meta["recipe"].contains("\"test\""));
    assert_eq!(r.file_bytes, out.bytes.len() as u64);
    assert_eq!(r.dense_bytes, 4 * 266_610);
    // 8x pruning with 4-bit codes and Huffman: far past 8x in bytes.
    assert!(r.ratio > 20.0, "ratio {}", r.ratio);
    assert!(r.stages[1].file_bytes < r.stages[0].file_bytes);
    assert!(r.accuracy_after > 0.5, "accuracy {}", r.accuracy_after);
    // The table: every weight layer, 1/8 kept overall, sections summing below the file.
    assert_eq!(r.layers.len(), 3);
    let weights: usize = r.layers.iter().map(|l| l.weights).sum();
    let kept: usize = r.layers.iter().map(|l| l.kept).sum();
    assert_eq!(weights, 784 * 300 + 300 * 100 + 100 * 10);
    assert!(
        (kept as f64 / weights as f64 - 0.125).abs() < 0.002,
        "{kept}"
    );
    assert!(r.layers.iter().map(|l| l.bytes).sum::<u64>() < r.file_bytes);
    // Layers below half density are stored sparse + shared, the rest as dense codes.
    assert_eq!(r.layers[0].kind, "sparse_shared_linear");
    for l in &r.layers {
        assert_eq!(l.weight_bits, 4);
        assert!(
            l.weight_bits_huffman > 0.5 && l.weight_bits_huffman < 8.0,
            "{l:?}"
        );
        let sparse = l.kind == "sparse_shared_linear";
        assert_eq!(sparse, l.density < 0.5, "{l:?}");
        assert_eq!(
            sparse,
            l.index_bits > 0 && l.index_bits_huffman > 0.0,
            "{l:?}"
        );
    }
    assert!(r.energy.after.total_pj < r.energy.before.total_pj / 10.0);
    assert!(!r.energy.before.in_sram && r.energy.after.in_sram);
    let md = r.markdown("t", "ctx");
    assert!(md.contains("sparse_shared_linear") && md.contains("Energy"));
    assert!(r.chart("t").to_svg().starts_with("<svg"));
}

#[test]
fn the_same_seed_writes_the_same_bytes() {
    let (train, test) = data();
    let train = train.take(1000).unwrap();
    let data = Data {
        train: &train,
        test: &test,
    };
    let run = || {
        let model = trained(&train);
        let mut c = Compressor::new(model, recipe(false), 5, "not-a-file").unwrap();
        c.run_stages(&data, &mut Quiet).unwrap();
        c.finish(&data).unwrap().bytes
    };
    assert_eq!(run(), run());
}

#[test]
fn a_stage_after_share_is_refused_by_name() {
    let mut r = recipe(false);
    r.stages.reverse();
    let model = nn::zoo::build("lenet300", &mut tensor_core::rng::Rng::seed_from_u64(1)).unwrap();
    let e = Compressor::new(model, r, 1, "x").err().unwrap().to_string();
    assert!(
        e.contains("stage 1") && e.contains("sharing must come last"),
        "{e}"
    );
}
