//! Filter pruning removes filters physically: the smaller model must compute exactly what the
//! original computes with those filters zeroed (weights, bias, and the BatchNorm scale and
//! shift of their channels, so their activations are 0), through BatchNorm, Flatten into a
//! linear layer, and Parallel branches; topologies it cannot handle give errors naming paths.

use nn::layers::{
    BatchNorm2d, Conv2d, Conv2dParams, Flatten, Linear, Merge, Padding, Parallel, ReLU,
};
use nn::{Layer, LayerPath, Mode, Model};
use prune::StructuredError;
use prune::structured::{
    filter_candidates, filter_l1_norms, filters_to_keep, prune_filters, remove_filters,
    uniform_fraction_for_macs, uniform_plan,
};
use tensor_core::Tensor;
use tensor_core::rng::Rng;
use tensor_core::testing::assert_close;

fn images(rng: &mut Rng, n: usize, shape: &[usize]) -> Tensor {
    let per: usize = shape.iter().product();
    let mut dims = vec![n];
    dims.extend_from_slice(shape);
    Tensor::new(&dims, (0..n * per).map(|_| rng.uniform()).collect()).unwrap()
}

/// The teacher with BatchNorm kept and its running statistics moved off the identity.
fn teacher(seed: u64) -> (Model, Tensor) {
    let mut rng = Rng::seed_from_u64(seed);
    let mut m = nn::zoo::build("cnn-teacher", &mut rng).unwrap();
    let x = images(&mut rng, 3, &[1, 28, 28]);
    for _ in 0..2 {
        m.forward(&x, Mode::Train).unwrap();
    }
    (m, x)
}

/// Zeroes output filters `gone` of the conv2d/linear at `path` and, when a BatchNorm
/// follows it in the same sequence, the scale and shift of those channels.
fn zero_filters(model: &mut Model, path: &LayerPath, gone: &[usize]) {
    let layer = model.layer_mut(path).unwrap();
    for p in layer.params_mut() {
        let per = p.value.numel() / p.value.dims()[0];
        for &o in gone {
            p.value.data_mut()[o * per..(o + 1) * per].fill(0.0);
        }
    }
    let next = LayerPath::at_index(path, path.index() + 1);
    if let Some(bn) = model.layer_mut(&next)
        && bn.kind() == "batchnorm2d"
    {
        for p in bn.params_mut() {
            for &o in gone {
                p.value.data_mut()[o] = 0.0;
            }
        }
    }
}

fn complement(n: usize, keep: &[usize]) -> Vec<usize> {
    (0..n).filter(|i| !keep.contains(i)).collect()
}

fn records(m: &Model) -> Vec<nn::LayerRecord> {
    m.layers.iter().map(|l| l.record().unwrap()).collect()
}

#[test]
fn removing_filters_equals_zeroing_them_through_batchnorm_and_flatten() {
    let (mut pruned, x) = teacher(5);
    let (mut zeroed, _) = teacher(5);
    // conv 0 (32), conv 7 (64, into conv 10), conv 10 (64, through BN, pool and flatten
    // into fc 15's columns), fc 15 (256 units into fc 18).
    let cuts: [(usize, &[usize]); 4] = [
        (0, &[0, 3, 4, 9, 17, 31]),
        (7, &[1, 2, 40, 63]),
        (10, &[5, 6, 7, 8, 60]),
        (15, &[0, 100, 255]),
    ];
    for (i, gone) in cuts {
        let path = LayerPath::top(i);
        let n = prune::structured::filter_l1_norms(&pruned, &path)
            .unwrap()
            .len();
        remove_filters(&mut pruned, &path, &complement(n, gone)).unwrap();
        zero_filters(&mut zeroed, &path, gone);
    }
    let a = pruned.forward(&x, Mode::Eval).unwrap();
    let b = zeroed.forward(&x, Mode::Eval).unwrap();
    assert_close(a.data(), b.data(), 1e-4, 1e-5);
    assert!(pruned.param_count() < zeroed.param_count());
    assert!(pruned.macs_per_sample().unwrap() < zeroed.macs_per_sample().unwrap());
    let fc = pruned.layer(&LayerPath::top(15)).unwrap();
    let fc = fc.as_any().downcast_ref::<Linear>().unwrap();
    assert_eq!((fc.in_features(), fc.out_features()), ((64 - 5) * 49, 253));
    let bn = pruned.layer(&LayerPath::top(8)).unwrap();
    assert_eq!(
        bn.as_any()
            .downcast_ref::<BatchNorm2d>()
            .unwrap()
            .num_features(),
        60
    );
}

#[test]
fn prune_filters_removes_the_smallest_l1_norms_and_shrinks_the_file() {
    let (mut model, x) = teacher(6);
    let path = LayerPath::top(3);
    let norms = filter_l1_norms(&model, &path).unwrap();
    let keep = filters_to_keep(&norms, 16);
    let min_kept = keep.iter().map(|&i| norms[i]).fold(f64::MAX, f64::min);
    let gone = complement(32, &keep);
    assert!(gone.iter().all(|&i| norms[i] <= min_kept));
    let (mut zeroed, _) = teacher(6);
    zero_filters(&mut zeroed, &path, &gone);
    let bytes_before = nn::io::native::to_bytes(&model).unwrap().len();
    let report = prune_filters(&mut model, &[(path.clone(), 0.5)]).unwrap();
    assert_eq!((report.layers[0].before, report.layers[0].after), (32, 16));
    assert!(report.macs_after < report.macs_before);
    assert_eq!(
        report.params_before - report.params_after,
        16 * (32 * 9 + 1 + 2) + 16 * 64 * 9
    );
    let bytes_after = nn::io::native::to_bytes(&model).unwrap().len();
    assert!(bytes_before - bytes_after >= 4 * (report.params_before - report.params_after));
    let a = model.forward(&x, Mode::Eval).unwrap();
    let b = zeroed.forward(&x, Mode::Eval).unwrap();
    assert_close(a.data(), b.data(), 1e-4, 1e-5);
    assert!(prune_filters(&mut model, &[(path.clone(), 1.5)]).is_err());
    assert!(prune_filters(&mut model, &[(path.clone(), 0.1), (path, 0.1)]).is_err());
}

fn conv(rng: &mut Rng, cin: usize, cout: usize) -> Box<dyn Layer> {
    let p = Conv2dParams::new(cin, cout, (3, 3)).with_padding(Padding::symmetric(1));
    Box::new(Conv2d::new(p, rng).unwrap())
}

/// conv 1->4, relu, Parallel{[conv 4->3], [conv 4->2, relu], []} concatenated on channels
/// (3 + 2 + 4 = 9), conv 9->5, flatten, linear 5*6*6 -> 3.
fn inception(seed: u64) -> Model {
    let mut rng = Rng::seed_from_u64(seed);
    let par = Parallel::new(
        vec![
            vec![conv(&mut rng, 4, 3)],
            vec![conv(&mut rng, 4, 2), Box::new(ReLU::new())],
            vec![],
        ],
        Merge::Concat { axis: 1 },
    )
    .unwrap();
    let layers: Vec<Box<dyn Layer>> = vec![
        conv(&mut rng, 1, 4),
        Box::new(ReLU::new()),
        Box::new(par),
        conv(&mut rng, 9, 5),
        Box::new(Flatten::new()),
        Box::new(Linear::new(5 * 36, 3, &mut rng).unwrap()),
    ];
    Model::new("inception", &[1, 6, 6], layers)
}

#[test]
fn channels_follow_parallel_branches_and_concatenation_offsets() {
    let x = images(&mut Rng::seed_from_u64(1), 2, &[1, 6, 6]);
    // Before the fork: every branch loses the input channel; the identity branch passes it
    // to the concatenation at offset 3 + 2. Inside branch 1: offset 3.
    for (path, width, gone) in [
        (LayerPath::top(0), 4, vec![1usize, 2]),
        (LayerPath::top(2).child(1, 0), 2, vec![0]),
        (LayerPath::top(2).child(0, 0), 3, vec![2]),
    ] {
        let mut pruned = inception(3);
        let mut zeroed = inception(3);
        remove_filters(&mut pruned, &path, &complement(width, &gone)).unwrap();
        zero_filters(&mut zeroed, &path, &gone);
        let a = pruned.forward(&x, Mode::Eval).unwrap();
        let b = zeroed.forward(&x, Mode::Eval).unwrap();
        assert_close(a.data(), b.data(), 1e-5, 1e-6);
        let next = pruned.layer(&LayerPath::top(3)).unwrap();
        let c = next.as_any().downcast_ref::<Conv2d>().unwrap();
        assert_eq!(c.params().in_channels, 9 - gone.len(), "{path}");
    }
}

/// conv 1->4, relu, Parallel{[conv 4->4, relu, conv 4->4], []} summed, flatten, linear.
fn residual(seed: u64) -> Model {
    let mut rng = Rng::seed_from_u64(seed);
    let par = Parallel::new(
        vec![
            vec![
                conv(&mut rng, 4, 4),
                Box::new(ReLU::new()),
                conv(&mut rng, 4, 4),
            ],
            vec![],
        ],
        Merge::Add,
    )
    .unwrap();
    let layers: Vec<Box<dyn Layer>> = vec![
        conv(&mut rng, 1, 4),
        Box::new(ReLU::new()),
        Box::new(par),
        Box::new(Flatten::new()),
        Box::new(Linear::new(4 * 25, 3, &mut rng).unwrap()),
    ];
    Model::new("residual", &[1, 5, 5], layers)
}

#[test]
fn a_residual_block_prunes_inside_and_names_the_merge_otherwise() {
    let x = images(&mut Rng::seed_from_u64(2), 2, &[1, 5, 5]);
    let inner = LayerPath::top(2).child(0, 0);
    let mut pruned = residual(4);
    let mut zeroed = residual(4);
    remove_filters(&mut pruned, &inner, &[0, 3]).unwrap();
    zero_filters(&mut zeroed, &inner, &[1, 2]);
    let a = pruned.forward(&x, Mode::Eval).unwrap();
    let b = zeroed.forward(&x, Mode::Eval).unwrap();
    assert_close(a.data(), b.data(), 1e-5, 1e-6);

    let mut model = residual(4);
    let before = records(&model);
    for (source, branches) in [
        (LayerPath::top(0), "[1]"),
        (LayerPath::top(2).child(0, 2), "[0]"),
    ] {
        let err = remove_filters(&mut model, &source, &[0, 1]).unwrap_err();
        assert!(
            matches!(err, StructuredError::ResidualMerge { .. }),
            "{err}"
        );
        let msg = err.to_string();
        assert!(
            msg.contains(&format!("removed from layer {source}")),
            "{msg}"
        );
        assert!(msg.contains("add merge of parallel 2"), "{msg}");
        assert!(msg.contains(branches), "{msg}");
        // prune_filters checks every layer before touching any.
        let plan = [(inner.clone(), 0.5), (source.clone(), 0.5)];
        assert!(prune_filters(&mut model, &plan).is_err());
        assert_eq!(records(&model), before, "model unchanged on error");
    }
    let c = filter_candidates(&model);
    assert_eq!(c.prunable, vec![inner]);
    let skipped: Vec<String> = c.skipped.iter().map(|(p, _)| p.to_string()).collect();
    assert_eq!(skipped, ["0", "2/0/2", "4"]);
    assert!(matches!(
        c.skipped[2].1,
        StructuredError::ReachesOutput { .. }
    ));
}

#[test]
fn unsupported_consumers_are_named_by_path() {
    let mut rng = Rng::seed_from_u64(7);
    let grouped = Conv2dParams::new(4, 4, (1, 1)).with_groups(2);
    let layers: Vec<Box<dyn Layer>> = vec![
        conv(&mut rng, 1, 4),
        Box::new(Conv2d::new(grouped, &mut rng).unwrap()),
        Box::new(Flatten::new()),
        Box::new(Linear::new(4 * 9, 2, &mut rng).unwrap()),
    ];
    let mut model = Model::new("grouped", &[1, 3, 3], layers);
    let err = remove_filters(&mut model, &LayerPath::top(0), &[0, 1]).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("reach layer 1 (conv2d)") && msg.contains("2 groups"),
        "{msg}"
    );
    let err = remove_filters(&mut model, &LayerPath::top(1), &[0]).unwrap_err();
    assert!(
        err.to_string().contains("layer 1 (conv2d) has no filters"),
        "{err}"
    );
    let err = remove_filters(&mut model, &LayerPath::top(2), &[0]).unwrap_err();
    assert!(err.to_string().contains("layer 2 (flatten)"), "{err}");
    for bad in [vec![], vec![1, 0], vec![0, 4]] {
        assert!(matches!(
            remove_filters(&mut model, &LayerPath::top(0), &bad),
            Err(StructuredError::InvalidKeep { .. })
        ));
    }
}

#[test]
fn a_uniform_fraction_meets_a_mac_target() {
    let (model, _) = teacher(8);
    let c = filter_candidates(&model);
    let want: Vec<String> = ["0", "3", "7", "10", "15"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(
        c.prunable.iter().map(|p| p.to_string()).collect::<Vec<_>>(),
        want
    );
    let f = uniform_fraction_for_macs(&model, &c.prunable, 2.0).unwrap();
    let macs = |f: f64| {
        let mut copy = teacher(8).0;
        prune_filters(&mut copy, &uniform_plan(&c.prunable, f))
            .unwrap()
            .macs_after
    };
    let before = model.macs_per_sample().unwrap();
    assert!(2 * macs(f) <= before, "{f}");
    assert!(2 * macs(f - 0.02) > before, "{f} is not the smallest");
    assert!(matches!(
        uniform_fraction_for_macs(&model, &c.prunable, 1e4),
        Err(StructuredError::MacTargetUnreachable { .. })
    ));
    assert!(uniform_fraction_for_macs(&model, &c.prunable, 0.5).is_err());
}
