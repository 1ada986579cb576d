//! Layer paths: the stable address of every layer of a model, nested ones included.
//!
//! A path is the layer's index in the model's top-level sequence, followed, for a layer inside
//! a container ([`crate::Layer::branches`], e.g. a [`crate::layers::Parallel`]), by the branch
//! index and the index within that branch, repeated for deeper nesting. It is written with
//! `/`: `3` is the fourth top-level layer; `5/1/2` is the third layer of branch 1 of top-level
//! layer 5. Optimizer state, pruning masks and codebooks are keyed by path, so two nested
//! layers never share an identity (as they would if keyed by top-level index and parameter
//! name).

use std::fmt;

use crate::error::{NnError, Result};

/// The address of one layer in a [`crate::Model`] (see the module docs).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LayerPath(Vec<usize>);

impl LayerPath {
    /// The top-level layer `index`.
    pub fn top(index: usize) -> Self {
        Self(vec![index])
    }

    /// Layer `index` of branch `branch` of the container at `self`.
    pub fn child(&self, branch: usize, index: usize) -> Self {
        let mut v = self.0.clone();
        v.extend([branch, index]);
        Self(v)
    }

    /// `parent`'s child in `branch` at `index`, or the top-level `index` when there is no parent.
    pub(crate) fn at(parent: Option<(&LayerPath, usize)>, index: usize) -> Self {
        match parent {
            Some((p, b)) => p.child(b, index),
            None => Self::top(index),
        }
    }

    /// The sibling of `path` at `index` in the same sequence.
    pub fn at_index(path: &LayerPath, index: usize) -> Self {
        let mut v = path.0.clone();
        let last = v.len() - 1;
        v[last] = index;
        Self(v)
    }

    /// The components: top-level index, then (branch, index) pairs.
    pub fn components(&self) -> &[usize] {
        &self.0
    }

    /// The index of the layer within its own sequence (the last component).
    pub fn index(&self) -> usize {
        // A path always has an odd number (>= 1) of components: every constructor keeps it so.
        self.0[self.0.len() - 1]
    }

    /// How deeply nested the layer is (0 at top level).
    pub fn depth(&self) -> usize {
        self.0.len() / 2
    }

    /// The path of the container holding this layer, `None` at top level.
    pub fn parent(&self) -> Option<LayerPath> {
        (self.0.len() > 1).then(|| LayerPath(self.0[..self.0.len() - 2].to_vec()))
    }

    /// The (layer index, branch index) steps from the model down to this layer's sequence.
    pub(crate) fn steps(&self) -> impl Iterator<Item = (usize, usize)> + '_ {
        self.0[..self.0.len() - 1]
            .chunks_exact(2)
            .map(|c| (c[0], c[1]))
    }

    /// Parses `3` or `5/1/2`. Errors: an empty component, a non-number, or an even number of
    /// components.
    pub fn parse(s: &str) -> Result<Self> {
        let bad = |why: &str| NnError::Config(format!("layer path {s:?}: {why}"));
        let v = s
            .split('/')
            .map(|c| c.trim().parse::<usize>().map_err(|_| bad("not a number")))
            .collect::<Result<Vec<_>>>()?;
        if v.len() % 2 == 0 {
            return Err(bad(
                "expected a layer index, then (branch, index) pairs, such as 3 or 5/1/2",
            ));
        }
        Ok(Self(v))
    }
}

impl fmt::Display for LayerPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, c) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("/")?;
            }
            write!(f, "{c}")?;
        }
        Ok(())
    }
}

impl serde::Serialize for LayerPath {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_parse_and_navigation() {
        let p = LayerPath::top(5).child(1, 2);
        assert_eq!(p.to_string(), "5/1/2");
        assert_eq!(LayerPath::parse("5/1/2").unwrap(), p);
        assert_eq!(p.index(), 2);
        assert_eq!(p.depth(), 1);
        assert_eq!(p.parent(), Some(LayerPath::top(5)));
        assert_eq!(p.steps().collect::<Vec<_>>(), vec![(5, 1)]);
        assert_eq!(LayerPath::top(3).parent(), None);
        for bad in ["", "1/2", "a", "1//2", "1/-1/0"] {
            assert!(LayerPath::parse(bad).is_err(), "{bad}");
        }
        assert!(LayerPath::top(1) < LayerPath::top(1).child(0, 0));
    }
}
