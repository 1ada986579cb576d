//! The model zoo: the reference architectures of the experiments, built by name.
//!
//! | name | layers | params |
//! |---|---|---|
//! | `lenet300` | flatten, 784-300-100-10 with ReLU (LeCun et al., 1998) | 266,610 |
//! | `lenet5` | Caffe's LeNet as in Deep Compression (Han et al., 2016): conv 20@5x5, maxpool 2, conv 50@5x5, maxpool 2, flatten, fc 800-500, ReLU, fc 500-10 (no ReLU after the convolutions, as in Caffe) | 431,080 |
//! | `cnn-teacher` | conv 32@3x3 pad 1, BN, ReLU, conv 32@3x3 pad 1, BN, ReLU, maxpool 2, conv 64@3x3 pad 1, BN, ReLU, conv 64@3x3 pad 1, BN, ReLU, maxpool 2, flatten, fc 3136-256, ReLU, dropout 0.5, fc 256-10 | 871,018 training; 870,634 with BatchNorm folded |
//!
//! Parameter arithmetic of `cnn-teacher` (padding 1 keeps 28x28, two pools give 7x7, so the
//! flattened size is 64*7*7 = 3136): convolutions 320 + 9,248 + 18,496 + 36,928, linear
//! layers 803,072 + 2,570, total 870,634; the four BatchNorms add 2*(32+32+64+64) = 384 trainable
//! parameters before folding. Every model takes `[1, 28, 28]` images (Fashion-MNIST).

use tensor_core::conv::{Conv2dParams, Padding};
use tensor_core::rng::Rng;

use crate::data::FASHION_MNIST_CLASSES;
use crate::error::{NnError, Result};
use crate::layer::Layer;
use crate::layers::{BatchNorm2d, Conv2d, Dropout, Flatten, Linear, MaxPool2d, ReLU};
use crate::model::Model;

/// The names [`build`] accepts.
pub const NAMES: &[&str] = &["lenet300", "lenet5", "cnn-teacher"];

/// Input shape of every zoo model (one Fashion-MNIST image, without the batch dimension).
pub const INPUT_SHAPE: [usize; 3] = [1, 28, 28];

/// Builds zoo model `name` with PyTorch's default initialisation drawn from `rng`.
pub fn build(name: &str, rng: &mut Rng) -> Result<Model> {
    let layers = match name {
        "lenet300" => lenet300(rng)?,
        "lenet5" => lenet5(rng)?,
        "cnn-teacher" => cnn_teacher(rng)?,
        other => {
            return Err(NnError::Config(format!(
                "unknown zoo model `{other}` (known: {})",
                NAMES.join(", ")
            )));
        }
    };
    Ok(Model::new(name, &INPUT_SHAPE, layers))
}

/// Builds a zoo model by name, or a small architecture from a spec: `mlp:784-30-10`
/// (flatten, fully connected layers of those widths with ReLU between; the first width must
/// be 784, one image) or `cnn:16-32` (per width a 3x3 conv with padding 1, ReLU and 2x2 max
/// pooling, then flatten and a linear layer to 10 classes).
pub fn build_spec(spec: &str, rng: &mut Rng) -> Result<Model> {
    build_spec_for(spec, &INPUT_SHAPE, FASHION_MNIST_CLASSES, rng)
}

/// [`build_spec`] for other data: a spec's model takes samples of `input_shape` (`[C, H, W]`)
/// and predicts `classes` classes. An mlp's first width must be the number of values of one
/// sample (`C * H * W`) and its last `classes`; a cnn ends in a linear layer to `classes`,
/// and takes as many conv widths as `H` and `W` can be halved (each pooling floors). A zoo
/// name is built as [`build`] builds it (for `[1, 28, 28]` and 10 classes only).
pub fn build_spec_for(
    spec: &str,
    input_shape: &[usize],
    classes: usize,
    rng: &mut Rng,
) -> Result<Model> {
    let bad = |reason: String| NnError::Config(format!("architecture {spec:?}: {reason}"));
    let widths = |list: &str| -> Result<Vec<usize>> {
        list.split('-')
            .map(|w| match w.parse::<usize>() {
                Ok(n) if (1..=65_536).contains(&n) => Ok(n),
                _ => Err(bad(format!("width {w:?} is not in 1..=65536"))),
            })
            .collect()
    };
    let &[channels, height, width] = input_shape else {
        return Err(bad(format!(
            "samples of shape {input_shape:?}: want [channels, height, width]"
        )));
    };
    let values = channels * height * width;
    let layers: Vec<Box<dyn Layer>> = if let Some(list) = spec.strip_prefix("mlp:") {
        let w = widths(list)?;
        if w.len() < 2 || w[0] != values || w[w.len() - 1] != classes {
            return Err(bad(format!(
                "an mlp needs at least two widths, the first {values} (one {input_shape:?} \
                 sample) and the last {classes} (the classes)"
            )));
        }
        let mut layers: Vec<Box<dyn Layer>> = vec![Box::new(Flatten::new())];
        for (i, pair) in w.windows(2).enumerate() {
            if i > 0 {
                layers.push(Box::new(ReLU::new()));
            }
            layers.push(Box::new(Linear::new(pair[0], pair[1], rng)?));
        }
        layers
    } else if let Some(list) = spec.strip_prefix("cnn:") {
        let w = widths(list)?;
        let halvings = height.min(width).max(1).ilog2() as usize;
        if w.is_empty() || w.len() > halvings {
            return Err(bad(format!(
                "a cnn takes 1 to {halvings} conv widths ({height}x{width} halves to 1 at most \
                 {halvings} times)"
            )));
        }
        let mut layers: Vec<Box<dyn Layer>> = Vec::new();
        let (mut c, mut h, mut wd) = (channels, height, width);
        for &o in &w {
            let p = Conv2dParams::new(c, o, (3, 3)).with_padding(Padding::symmetric(1));
            layers.push(Box::new(Conv2d::new(p, rng)?));
            layers.push(Box::new(ReLU::new()));
            layers.push(Box::new(MaxPool2d::square(2)?));
            (c, h, wd) = (o, h / 2, wd / 2);
        }
        layers.push(Box::new(Flatten::new()));
        layers.push(Box::new(Linear::new(c * h * wd, classes, rng)?));
        layers
    } else if input_shape == INPUT_SHAPE && classes <= FASHION_MNIST_CLASSES {
        return build(spec, rng);
    } else if NAMES.contains(&spec) {
        return Err(bad(format!(
            "zoo models take [1, 28, 28] images of 10 classes, the data has {input_shape:?} \
             samples of {classes} classes (use a spec such as cnn:16-32 or mlp:{values}-100-{classes})"
        )));
    } else {
        return build(spec, rng);
    };
    Ok(Model::new(spec, input_shape, layers))
}

fn lenet300(rng: &mut Rng) -> Result<Vec<Box<dyn Layer>>> {
    Ok(vec![
        Box::new(Flatten::new()),
        Box::new(Linear::new(784, 300, rng)?),
        Box::new(ReLU::new()),
        Box::new(Linear::new(300, 100, rng)?),
        Box::new(ReLU::new()),
        Box::new(Linear::new(100, 10, rng)?),
    ])
}

fn lenet5(rng: &mut Rng) -> Result<Vec<Box<dyn Layer>>> {
    Ok(vec![
        Box::new(Conv2d::new(Conv2dParams::new(1, 20, (5, 5)), rng)?),
        Box::new(MaxPool2d::square(2)?),
        Box::new(Conv2d::new(Conv2dParams::new(20, 50, (5, 5)), rng)?),
        Box::new(MaxPool2d::square(2)?),
        Box::new(Flatten::new()),
        Box::new(Linear::new(800, 500, rng)?),
        Box::new(ReLU::new()),
        Box::new(Linear::new(500, 10, rng)?),
    ])
}

fn cnn_teacher(rng: &mut Rng) -> Result<Vec<Box<dyn Layer>>> {
    let mut layers: Vec<Box<dyn Layer>> = Vec::new();
    let mut conv_bn_relu = |layers: &mut Vec<Box<dyn Layer>>, cin, cout| -> Result<()> {
        let p = Conv2dParams::new(cin, cout, (3, 3)).with_padding(Padding::symmetric(1));
        layers.push(Box::new(Conv2d::new(p, rng)?));
        layers.push(Box::new(BatchNorm2d::new(cout)?));
        layers.push(Box::new(ReLU::new()));
        Ok(())
    };
    conv_bn_relu(&mut layers, 1, 32)?;
    conv_bn_relu(&mut layers, 32, 32)?;
    layers.push(Box::new(MaxPool2d::square(2)?));
    conv_bn_relu(&mut layers, 32, 64)?;
    conv_bn_relu(&mut layers, 64, 64)?;
    layers.push(Box::new(MaxPool2d::square(2)?));
    layers.push(Box::new(Flatten::new()));
    layers.push(Box::new(Linear::new(3136, 256, rng)?));
    layers.push(Box::new(ReLU::new()));
    layers.push(Box::new(Dropout::new(0.5, rng.next_u64())?));
    layers.push(Box::new(Linear::new(256, 10, rng)?));
    Ok(layers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_take_the_data_shape_and_class_count() {
        let mut rng = Rng::seed_from_u64(1);
        let m = build_spec_for("cnn:16-32", &[1, 8, 8], 10, &mut rng).unwrap();
        assert_eq!(m.input_shape, [1, 8, 8]);
        // 8 -> 4 -> 2: the linear layer takes 32 * 2 * 2 values.
        assert_eq!(
            m.param_count(),
            (9 * 16 + 16) + (16 * 9 * 32 + 32) + (128 * 10 + 10)
        );
        let rgb = build_spec_for("cnn:8", &[3, 32, 32], 4, &mut rng).unwrap();
        assert_eq!(rgb.param_count(), (27 * 8 + 8) + (8 * 16 * 16 * 4 + 4));
        assert!(build_spec_for("cnn:8-8-8-8", &[1, 8, 8], 10, &mut rng).is_err());
        let mlp = build_spec_for("mlp:64-30-10", &[1, 8, 8], 10, &mut rng).unwrap();
        assert_eq!(mlp.param_count(), 64 * 30 + 30 + 30 * 10 + 10);
        for bad in ["mlp:784-30-10", "mlp:64-30-9", "lenet5"] {
            let e = build_spec_for(bad, &[1, 8, 8], 10, &mut rng)
                .unwrap_err()
                .to_string();
            assert!(e.contains(bad), "{e}");
        }
        // The Fashion-MNIST entry point is unchanged.
        assert_eq!(
            build_spec("lenet5", &mut rng).unwrap().param_count(),
            431_080
        );
    }

    #[test]
    fn specs_build_small_architectures_and_refuse_bad_ones() {
        let mut rng = Rng::seed_from_u64(1);
        let m = build_spec("mlp:784-30-10", &mut rng).unwrap();
        assert_eq!(m.param_count(), 784 * 30 + 30 + 30 * 10 + 10);
        let mut c = build_spec("cnn:16-32", &mut rng).unwrap();
        assert_eq!(
            c.param_count(),
            (9 * 16 + 16) + (9 * 16 * 32 + 32) + (32 * 7 * 7 * 10 + 10)
        );
        let x = tensor_core::Tensor::zeros(tensor_core::Shape::new(&[2, 1, 28, 28]).unwrap());
        let y = c.forward(&x, crate::layer::Mode::Eval).unwrap();
        assert_eq!(y.dims(), &[2, 10]);
        assert_eq!(
            build_spec("lenet300", &mut rng).unwrap().param_count(),
            266_610
        );
        for bad in [
            "mlp:10-2",
            "mlp:784",
            "mlp:784-x",
            "cnn:",
            "cnn:1-1-1-1-1",
            "vgg",
        ] {
            assert!(build_spec(bad, &mut rng).is_err(), "{bad}");
        }
    }
    use crate::layer::Mode;
    use crate::layers::fold_batchnorms;
    use tensor_core::Tensor;

    #[test]
    fn parameter_counts_are_exact() {
        let mut rng = Rng::seed_from_u64(0);
        let expect = [
            ("lenet300", 266_610),
            ("lenet5", 431_080),
            ("cnn-teacher", 871_018),
        ];
        for (name, n) in expect {
            let m = build(name, &mut rng).unwrap();
            assert_eq!(m.param_count(), n, "{name}");
            // Every model maps a batch of images to 10 logits.
            let out = m.summary().unwrap().last().unwrap().output_shape.clone();
            assert_eq!(out, vec![1, 10], "{name}");
        }
        let mut teacher = build("cnn-teacher", &mut rng).unwrap();
        assert_eq!(fold_batchnorms(&mut teacher).unwrap(), 4);
        assert_eq!(teacher.param_count(), 870_634);
        assert!(build("resnet", &mut rng).is_err());
    }

    #[test]
    fn same_seed_same_weights() {
        let a = build("lenet5", &mut Rng::seed_from_u64(3)).unwrap();
        let b = build("lenet5", &mut Rng::seed_from_u64(3)).unwrap();
        for (la, lb) in a.layers.iter().zip(&b.layers) {
            assert_eq!(la.record().unwrap(), lb.record().unwrap());
        }
    }

    #[test]
    fn lenet5_macs_per_image() {
        // conv1 20*24*24*25 + conv2 50*8*8*500 + fc 800*500 + 500*10.
        let m = build("lenet5", &mut Rng::seed_from_u64(0)).unwrap();
        assert_eq!(
            m.macs_per_sample().unwrap(),
            288_000 + 1_600_000 + 400_000 + 5_000
        );
    }

    #[test]
    fn folding_the_teacher_keeps_eval_outputs() {
        let mut rng = Rng::seed_from_u64(9);
        let mut m = build("cnn-teacher", &mut rng).unwrap();
        let x = Tensor::new(
            &[4, 1, 28, 28],
            (0..4 * 784).map(|_| rng.uniform()).collect(),
        )
        .unwrap();
        // A few training passes so that the running statistics are not the identity.
        for _ in 0..3 {
            m.forward(&x, Mode::Train).unwrap();
        }
        let before = m.forward(&x, Mode::Eval).unwrap();
        fold_batchnorms(&mut m).unwrap();
        let after = m.forward(&x, Mode::Eval).unwrap();
        tensor_core::testing::assert_close(after.data(), before.data(), 1e-5, 1e-5);
    }
}
