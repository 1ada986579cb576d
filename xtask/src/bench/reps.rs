//! The representations `cargo xtask bench` compares, each as the `slimnet` command that makes
//! it from the trained dense model (so every row can be remade and re-checked by hand).

/// Every representation, in table order.
pub const ALL: [&str; 7] = [
    "dense",
    "pruned",
    "deep-compression",
    "int8",
    "binary",
    "decomposed",
    "distilled",
];

/// The representations of `--quick`: those made in seconds (at most one epoch of retraining).
pub const QUICK: [&str; 4] = ["dense", "pruned", "int8", "decomposed"];

/// What a representation is, for the report.
pub fn describe(rep: &str) -> &'static str {
    match rep {
        "dense" => "the trained f32 model (zoo recipe)",
        "pruned" => "magnitude pruning (Han et al. 2015) with sparse kernels, or L1 filter pruning",
        "deep-compression" => "prune + k-means sharing + Huffman (Han et al. 2016)",
        "int8" => "post-training int8, integer kernels",
        "binary" => "binary weights (BinaryConnect / XNOR-Net alpha), XNOR-popcount kernels",
        "decomposed" => "low-rank (SVD) or separable factors",
        "distilled" => "a small student distilled from this model (Hinton et al. 2015)",
        _ => "",
    }
}

/// The `slimnet` arguments that write representation `rep` of zoo model `model` (trained,
/// at `input`) to `output`; `None` when the representation does not apply to the model.
/// `quick` trades retraining for speed (the report prints the command either way).
pub fn command(
    model: &str,
    rep: &str,
    input: &str,
    output: &str,
    quick: bool,
) -> Option<Vec<String>> {
    let teacher = model == "cnn-teacher";
    let template = match rep {
        "pruned" if teacher && quick => "prune IN --method filters --ratio 2 --retrain-epochs 0",
        "pruned" if teacher => "prune IN --method filters --ratio 2 --retrain-epochs 2 --lr 1e-3",
        "pruned" if quick => {
            "prune IN --method global --ratio 5 --schedule oneshot --retrain-epochs 1 --lr 1e-3"
        }
        "pruned" => {
            "prune IN --method global --ratio 12 --schedule agp --retrain-epochs 30 --lr 1e-3 \
             --teacher self"
        }
        "deep-compression" if !teacher => "compress IN --recipe deep-compression",
        "int8" => "quantize IN --bits 8 --per-channel",
        // An MLP's first layer holds most of its weights (lenet300's fc1: 88%): kept in f32
        // as XNOR-Net keeps first and last layers, the "binary" file would be 1.1x smaller.
        // Binarized whole, with three epochs of self-distillation, it is 29x smaller.
        "binary" if model == "lenet300" && !quick => {
            "binarize IN --mode bwn --epochs 3 --teacher self --keep-first-last false"
        }
        "binary" => "binarize IN --mode bwn --epochs 1",
        "decomposed" if teacher && quick => {
            "decompose IN --method separable --mac-target 0.4 --finetune-epochs 0"
        }
        "decomposed" if teacher => {
            "decompose IN --method separable --mac-target 0.4 --finetune-epochs 1"
        }
        "decomposed" if quick => "decompose IN --energy 0.9 --finetune-epochs 0",
        "decomposed" => "decompose IN --energy 0.9 --finetune-epochs 1",
        "distilled" if teacher => "distill --teacher IN --student cnn:16-32 --epochs 20",
        _ => return None,
    };
    let mut out: Vec<String> = template
        .split_whitespace()
        .map(|a| if a == "IN" { input } else { a }.to_string())
        .collect();
    out.extend(["-o".to_string(), output.to_string()]);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_representation_but_dense_has_a_command_for_lenet300_or_the_teacher() {
        for rep in ALL.iter().filter(|r| **r != "dense") {
            let some = ["lenet300", "cnn-teacher"]
                .iter()
                .any(|m| command(m, rep, "in.model", "out.slim", false).is_some());
            assert!(some, "{rep} has no command");
            assert!(!describe(rep).is_empty());
        }
        assert!(command("lenet300", "dense", "a", "b", false).is_none());
        let c = command("lenet5", "int8", "in.model", "out.slim", true).unwrap();
        assert_eq!(c[0], "quantize");
        assert_eq!(&c[c.len() - 2..], ["-o", "out.slim"]);
    }

    #[test]
    fn quick_commands_retrain_at_most_one_epoch() {
        for m in ["lenet300", "lenet5", "cnn-teacher"] {
            for rep in QUICK {
                if let Some(c) = command(m, rep, "i", "o", true) {
                    for flag in ["--retrain-epochs", "--finetune-epochs", "--epochs"] {
                        if let Some(p) = c.iter().position(|a| a == flag) {
                            assert!(c[p + 1] == "0" || c[p + 1] == "1", "{m} {rep}: {c:?}");
                        }
                    }
                }
            }
        }
    }
}
