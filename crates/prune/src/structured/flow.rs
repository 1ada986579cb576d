//! Where removed channels go: the walk from a pruned layer to the layers that read its
//! channels (through BatchNorm, channelwise layers, pooling, Flatten and Parallel branches),
//! collecting the smaller layers that replace every layer it touches.
//!
//! The walk carries the channels still kept on axis 1 of the tensor between two layers, as
//! indices into the unpruned model's axis. A `conv2d` (one group) or `linear` reading that
//! tensor absorbs the removal (it loses input channels or columns) and the walk stops there;
//! BatchNorm loses the same channels and passes them on; `flatten` turns channel `c` of an
//! `[N, C, H, W]` tensor into the `H*W` consecutive columns `c*H*W .. (c+1)*H*W` (NCHW
//! flattening); a Parallel sends them down every branch and merges what comes out: a channel
//! concatenation shifts each branch's channels by the widths of the branches before it; a sum
//! or product needs the same channels removed from every branch, or it is a
//! [`StructuredError::ResidualMerge`]. The walk only reads the model: the caller applies the
//! replacements, so on error the model is unchanged.

use nn::layers::{BatchNorm2d, Conv2d, Linear, Merge, Parallel};
use nn::{Layer, LayerPath, Model};
use tensor_core::Shape;

use super::error::{StructuredError, StructuredResult};
use super::shrink;

/// One replacement: the layer at the path becomes the new layer.
pub(crate) type Edit = (LayerPath, Box<dyn Layer>);

/// Layers acting on each channel alone, so a removed channel passes through them unchanged.
const CHANNELWISE: &[&str] = &[
    "relu",
    "sigmoid",
    "tanh",
    "dropout",
    "maxpool2d",
    "avgpool2d",
    "globalavgpool",
];

/// The channels kept on axis 1: `keep` (increasing) out of `width` in the unpruned model.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Flow {
    keep: Vec<usize>,
    width: usize,
}

const OP: &str = "prune filters";

/// The output filters of the layer at `path` (`conv2d` with one group, or `linear`), or why
/// it has none to remove.
pub(crate) fn filter_count(model: &Model, path: &LayerPath) -> StructuredResult<usize> {
    let layer = model.layer(path).ok_or_else(|| StructuredError::NoLayer {
        op: OP,
        path: path.clone(),
    })?;
    let not = |reason: &str| StructuredError::NotPrunable {
        op: OP,
        path: path.clone(),
        kind: layer.kind().to_string(),
        reason: reason.to_string(),
    };
    if let Some(c) = layer.as_any().downcast_ref::<Conv2d>() {
        if c.params().groups != 1 {
            return Err(not("grouped convolutions are not filter-pruned"));
        }
        Ok(c.params().out_channels)
    } else if let Some(l) = layer.as_any().downcast_ref::<Linear>() {
        Ok(l.out_features())
    } else {
        Err(not("only conv2d and linear layers are"))
    }
}

/// The replacements that make the layer at `source` keep only the output filters `keep`
/// (increasing, at least one) and every layer reading them lose the matching channels.
///
/// Errors: no prunable layer at `source`; a bad `keep`; channels reaching a layer they cannot
/// cross (named by path), a residual merge, or the model output.
pub(crate) fn plan(
    model: &Model,
    source: &LayerPath,
    keep: &[usize],
) -> StructuredResult<Vec<Edit>> {
    let width = filter_count(model, source)?;
    check_keep(source, keep, width)?;
    let layer = model
        .layer(source)
        .ok_or_else(|| StructuredError::NoLayer {
            op: OP,
            path: source.clone(),
        })?;
    let new: Box<dyn Layer> = match layer.as_any().downcast_ref::<Conv2d>() {
        Some(c) => Box::new(shrink::conv_keep_outputs(c, keep)?),
        None => match layer.as_any().downcast_ref::<Linear>() {
            Some(l) => Box::new(shrink::linear_keep_outputs(l, keep)?),
            // filter_count accepted only these two kinds.
            None => {
                return Err(StructuredError::NoLayer {
                    op: OP,
                    path: source.clone(),
                });
            }
        },
    };
    let mut walk = Walk {
        source: source.clone(),
        edits: vec![(source.clone(), new)],
    };
    let mut shape = layer.output_shape(&input_shape(model, source)?)?;
    let mut flow = Some(Flow {
        keep: keep.to_vec(),
        width,
    });
    let mut at = source.clone();
    while let Some(f) = flow {
        let (seq, parent) = sequence_of(model, &at)?;
        let parent_ref = parent.as_ref().map(|(p, b)| (p, *b));
        let (end, _) = walk.through(seq, parent_ref, at.index() + 1, shape, Some(f))?;
        let Some(end) = end else { break };
        // The channels left this sequence: the model output, or a Parallel's merge.
        let Some((q, branch)) = parent else {
            return Err(StructuredError::ReachesOutput {
                op: OP,
                source_path: source.clone(),
            });
        };
        let par = parallel_at(model, &q)?;
        let q_in = input_shape(model, &q)?;
        let shapes = par
            .branches
            .iter()
            .map(|b| branch_output(b, &q_in))
            .collect::<StructuredResult<Vec<_>>>()?;
        let mut flows = vec![None; par.branches.len()];
        flows[branch] = Some(end);
        flow = walk.merge(&q, par, flows, &shapes)?;
        shape = par.output_shape(&q_in)?;
        at = q;
    }
    Ok(walk.edits)
}

fn check_keep(path: &LayerPath, keep: &[usize], width: usize) -> StructuredResult<()> {
    let bad = |what: String| StructuredError::InvalidKeep {
        op: OP,
        path: path.clone(),
        what,
    };
    if keep.is_empty() {
        return Err(bad(format!(
            "keeps none of its {width} filters (at least one must stay)"
        )));
    }
    if let Some(w) = keep.windows(2).find(|w| w[0] >= w[1]) {
        return Err(bad(format!(
            "kept filters must increase, got {} then {}",
            w[0], w[1]
        )));
    }
    if let Some(&last) = keep.last()
        && last >= width
    {
        return Err(bad(format!("keeps filter {last}, but it has {width}")));
    }
    Ok(())
}

/// The shape (batch 1) of the input of the layer at `path`.
pub(crate) fn input_shape(model: &Model, path: &LayerPath) -> StructuredResult<Shape> {
    let c = path.components();
    let mut shape = model.batch_shape(1)?;
    let mut seq: &[Box<dyn Layer>] = &model.layers;
    let mut k = 0;
    loop {
        let i = c[k];
        if i >= seq.len() {
            return Err(StructuredError::NoLayer {
                op: OP,
                path: path.clone(),
            });
        }
        for l in &seq[..i] {
            shape = l.output_shape(&shape)?;
        }
        if k + 1 >= c.len() {
            return Ok(shape);
        }
        // A branch of the container at seq[i] reads the container's input.
        seq = seq[i]
            .branches()
            .get(c[k + 1])
            .ok_or_else(|| StructuredError::NoLayer {
                op: OP,
                path: path.clone(),
            })?;
        k += 2;
    }
}

/// The sequence holding the layer at `path`, with its container's path and branch.
#[allow(clippy::type_complexity)]
fn sequence_of<'m>(
    model: &'m Model,
    path: &LayerPath,
) -> StructuredResult<(&'m [Box<dyn Layer>], Option<(LayerPath, usize)>)> {
    match path.parent() {
        None => Ok((&model.layers, None)),
        Some(q) => {
            let c = path.components();
            let branch = c[c.len() - 2];
            let seq = model
                .layer(&q)
                .and_then(|l| l.branches().get(branch))
                .ok_or_else(|| StructuredError::NoLayer {
                    op: OP,
                    path: path.clone(),
                })?;
            Ok((seq, Some((q, branch))))
        }
    }
}

fn parallel_at<'m>(model: &'m Model, q: &LayerPath) -> StructuredResult<&'m Parallel> {
    let layer = model.layer(q).ok_or_else(|| StructuredError::NoLayer {
        op: OP,
        path: q.clone(),
    })?;
    layer
        .as_any()
        .downcast_ref::<Parallel>()
        .ok_or_else(|| StructuredError::NotPrunable {
            op: OP,
            path: q.clone(),
            kind: layer.kind().to_string(),
            reason: "a container other than parallel".into(),
        })
}

fn branch_output(branch: &[Box<dyn Layer>], input: &Shape) -> StructuredResult<Shape> {
    let mut s = input.clone();
    for l in branch {
        s = l.output_shape(&s)?;
    }
    Ok(s)
}

struct Walk {
    source: LayerPath,
    edits: Vec<Edit>,
}

impl Walk {
    fn unsupported(&self, path: &LayerPath, layer: &dyn Layer, reason: String) -> StructuredError {
        StructuredError::UnsupportedLayer {
            op: OP,
            source_path: self.source.clone(),
            path: path.clone(),
            kind: layer.kind().to_string(),
            reason,
        }
    }

    /// Pushes `flow` through `seq[from..]` (input shape `shape`); returns the flow left at
    /// the end (`None` once absorbed) and the sequence's output shape.
    fn through(
        &mut self,
        seq: &[Box<dyn Layer>],
        parent: Option<(&LayerPath, usize)>,
        from: usize,
        mut shape: Shape,
        mut flow: Option<Flow>,
    ) -> StructuredResult<(Option<Flow>, Shape)> {
        for (i, layer) in seq.iter().enumerate().skip(from) {
            let path = match parent {
                Some((p, b)) => p.child(b, i),
                None => LayerPath::top(i),
            };
            if let Some(f) = flow.take() {
                flow = self.step(&path, layer.as_ref(), &shape, f)?;
            }
            shape = layer.output_shape(&shape)?;
        }
        Ok((flow, shape))
    }

    /// What `layer` (input shape `shape`) does with the channels `f`.
    fn step(
        &mut self,
        path: &LayerPath,
        layer: &dyn Layer,
        shape: &Shape,
        f: Flow,
    ) -> StructuredResult<Option<Flow>> {
        let kind = layer.kind();
        let any = layer.as_any();
        if CHANNELWISE.contains(&kind) {
            return Ok(Some(f));
        }
        if kind == "flatten" {
            let hw: usize = shape.dims().get(2..).map_or(1, |d| d.iter().product());
            let keep = f.keep.iter().flat_map(|&c| c * hw..(c + 1) * hw).collect();
            return Ok(Some(Flow {
                keep,
                width: f.width * hw,
            }));
        }
        if let Some(bn) = any.downcast_ref::<BatchNorm2d>() {
            if bn.num_features() != f.width {
                let n = bn.num_features();
                return Err(self.unsupported(
                    path,
                    layer,
                    format!("normalizes {n} channels, not the {} it receives", f.width),
                ));
            }
            self.edits
                .push((path.clone(), Box::new(shrink::batchnorm_keep(bn, &f.keep)?)));
            return Ok(Some(f));
        }
        if let Some(c) = any.downcast_ref::<Conv2d>() {
            let p = c.params();
            if p.groups != 1 || p.in_channels != f.width {
                let reason = format!(
                    "has {} groups and {} input channels (filter pruning needs one group and {})",
                    p.groups, p.in_channels, f.width
                );
                return Err(self.unsupported(path, layer, reason));
            }
            self.edits.push((
                path.clone(),
                Box::new(shrink::conv_keep_inputs(c, &f.keep)?),
            ));
            return Ok(None);
        }
        if let Some(l) = any.downcast_ref::<Linear>() {
            if l.in_features() != f.width {
                let reason = format!("reads {} features, not {}", l.in_features(), f.width);
                return Err(self.unsupported(path, layer, reason));
            }
            self.edits.push((
                path.clone(),
                Box::new(shrink::linear_keep_inputs(l, &f.keep)?),
            ));
            return Ok(None);
        }
        if let Some(par) = any.downcast_ref::<Parallel>() {
            let mut flows = Vec::with_capacity(par.branches.len());
            let mut shapes = Vec::with_capacity(par.branches.len());
            for (b, branch) in par.branches.iter().enumerate() {
                let (fb, sb) =
                    self.through(branch, Some((path, b)), 0, shape.clone(), Some(f.clone()))?;
                flows.push(fb);
                shapes.push(sb);
            }
            return self.merge(path, par, flows, &shapes);
        }
        Err(self.unsupported(
            path,
            layer,
            "neither acts on each channel alone nor reads them as a conv2d or linear input".into(),
        ))
    }

    /// The channels after the merge of `par` (at `path`), given what left each branch
    /// (`None`: the branch absorbed them, its output is whole) and each branch's output shape.
    fn merge(
        &self,
        path: &LayerPath,
        par: &Parallel,
        flows: Vec<Option<Flow>>,
        shapes: &[Shape],
    ) -> StructuredResult<Option<Flow>> {
        if flows.iter().all(Option::is_none) {
            return Ok(None);
        }
        match par.merge {
            Merge::Concat { axis: 1 } => {
                let mut keep = Vec::new();
                let mut offset = 0;
                for (f, s) in flows.iter().zip(shapes) {
                    let w = s.dims().get(1).copied().unwrap_or(1);
                    match f {
                        Some(f) => keep.extend(f.keep.iter().map(|k| k + offset)),
                        None => keep.extend(offset..offset + w),
                    }
                    offset += w;
                }
                Ok(Some(Flow {
                    keep,
                    width: offset,
                }))
            }
            Merge::Concat { axis } => Err(self.unsupported(
                path,
                par,
                format!("concatenates along axis {axis}, not the channel axis 1"),
            )),
            Merge::Add | Merge::Mul => {
                let first = &flows[0];
                if first.is_some() && flows.iter().all(|f| f == first) {
                    return Ok(first.clone());
                }
                Err(StructuredError::ResidualMerge {
                    op: OP,
                    source_path: self.source.clone(),
                    parallel: path.clone(),
                    merge: if par.merge == Merge::Add {
                        "add"
                    } else {
                        "mul"
                    },
                    branches: (0..flows.len()).filter(|&b| flows[b].is_some()).collect(),
                })
            }
        }
    }
}

/// Applies `edits` (one-for-one replacements: paths stay valid).
pub(crate) fn apply(model: &mut Model, edits: Vec<Edit>) -> StructuredResult<()> {
    for (path, layer) in edits {
        model.replace(&path, vec![layer])?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tensor_core::rng::Rng;

    #[test]
    fn input_shapes_follow_the_walk() {
        let m = nn::zoo::build("cnn-teacher", &mut Rng::seed_from_u64(0)).unwrap();
        assert_eq!(
            input_shape(&m, &LayerPath::top(0)).unwrap().dims(),
            &[1, 1, 28, 28]
        );
        assert_eq!(
            input_shape(&m, &LayerPath::top(15)).unwrap().dims(),
            &[1, 3136]
        );
        assert!(input_shape(&m, &LayerPath::top(40)).is_err());
    }
}
