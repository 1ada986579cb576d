//! The layer registry: which constructor rebuilds a layer from a record of a given kind.
//!
//! Every reader of layers (the native model file, [`crate::io::load_any_with`], the nested
//! branches of [`crate::layers::Parallel`]) takes a [`LayerRegistry`] instead of matching on
//! kind names. nn registers its own kinds ([`LayerRegistry::nn`]); each technique crate
//! exposes `register(&mut LayerRegistry)` for the compressed layers it defines (sparse,
//! shared, int8, binary, low-rank), and `pipeline::registry()` composes them all, so a tool
//! that loads through it runs every representation.
//!
//! ```
//! use nn::registry::LayerRegistry;
//! use nn::layers::ReLU;
//! use nn::{Layer, LayerRecord};
//!
//! let mut registry = LayerRegistry::nn();
//! assert!(registry.contains("linear"));
//! // A second constructor for a kind already taken is refused.
//! assert!(registry.register("relu", |rec, _| Ok(Box::new(ReLU::from_record(rec)?))).is_err());
//! let relu = registry.build(&LayerRecord::new("relu")).unwrap();
//! assert_eq!(relu.kind(), "relu");
//! ```

use std::collections::BTreeMap;
use std::sync::OnceLock;

use crate::error::{NnError, Result};
use crate::layer::Layer;
use crate::record::LayerRecord;

/// A constructor: rebuilds a layer from its record, validating every attribute, tensor and
/// payload (a corrupt record is [`NnError::Corrupt`], never a panic). The registry is passed
/// along so that container layers rebuild their nested layers through it.
pub type LayerBuilder = fn(&LayerRecord, &LayerRegistry) -> Result<Box<dyn Layer>>;

/// Maps a layer kind (`"linear"`, `"sparse_linear"`, ...) to its constructor.
///
/// Design: a registry rather than a `match` so that a crate above nn (prune, share, quant,
/// ...) adds its compressed layers without nn knowing them, and every reader, nested ones
/// included, rebuilds every kind it was given.
#[derive(Clone, Default)]
pub struct LayerRegistry {
    builders: BTreeMap<String, LayerBuilder>,
}

impl std::fmt::Debug for LayerRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LayerRegistry")
            .field("kinds", &self.builders.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl LayerRegistry {
    /// A registry that knows no kind.
    pub fn empty() -> Self {
        Self::default()
    }

    /// A registry with nn's own kinds: the dense layers, the graph operators of imported
    /// ONNX models, `parallel`, and the straight-through layers.
    pub fn nn() -> Self {
        let mut r = Self::empty();
        // nn's kinds are distinct by construction; a clash is a programming error caught by
        // the `nn_kinds_register_once` test, so it is ignored here rather than unwrapped.
        let _ = crate::layers::register(&mut r);
        r
    }

    /// The shared registry of nn's kinds ([`LayerRegistry::nn`]), built once: what the
    /// convenience readers without a registry argument use.
    pub fn nn_default() -> &'static LayerRegistry {
        static NN: OnceLock<LayerRegistry> = OnceLock::new();
        NN.get_or_init(LayerRegistry::nn)
    }

    /// Registers `builder` for `kind`. Errors: the kind is empty or already registered
    /// (two crates claiming one kind would make files ambiguous).
    pub fn register(&mut self, kind: &str, builder: LayerBuilder) -> Result<()> {
        if kind.is_empty() {
            return Err(NnError::Config("layer registry: an empty kind name".into()));
        }
        if self.builders.contains_key(kind) {
            return Err(NnError::Config(format!(
                "layer registry: kind `{kind}` is already registered"
            )));
        }
        self.builders.insert(kind.to_string(), builder);
        Ok(())
    }

    /// Adds every kind of `other` (errors on the first duplicate).
    pub fn extend(&mut self, other: &LayerRegistry) -> Result<()> {
        for (k, b) in &other.builders {
            self.register(k, *b)?;
        }
        Ok(())
    }

    /// Whether `kind` is registered.
    pub fn contains(&self, kind: &str) -> bool {
        self.builders.contains_key(kind)
    }

    /// Every registered kind, sorted.
    pub fn kinds(&self) -> Vec<&str> {
        self.builders.keys().map(String::as_str).collect()
    }

    /// Rebuilds the layer of `rec`. Errors: an unknown kind ([`NnError::Unsupported`],
    /// listing the known ones), or whatever the kind's constructor finds wrong.
    pub fn build(&self, rec: &LayerRecord) -> Result<Box<dyn Layer>> {
        match self.builders.get(rec.kind.as_str()) {
            Some(b) => b(rec, self),
            None => Err(NnError::Unsupported(format!(
                "layer kind `{}` is not registered (known kinds: {}); a compressed layer needs \
                 its crate's `register` (pipeline::registry() composes them all)",
                rec.kind,
                self.kinds().join(", ")
            ))),
        }
    }
}

/// Registers layer types whose `from_record(&LayerRecord) -> Result<Self, E>` needs no
/// registry (`E` converting into [`NnError`]): `register_kinds! { registry; "linear" => Linear,
/// "relu" => ReLU }` inside a function returning `nn::Result<()>`.
#[macro_export]
macro_rules! register_kinds {
    ($registry:expr; $($kind:literal => $ty:ty),* $(,)?) => {
        $( $registry.register($kind, |rec, _| {
            let layer = <$ty>::from_record(rec).map_err($crate::NnError::from)?;
            Ok(Box::new(layer))
        })?; )*
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nn_kinds_register_once() {
        let mut r = LayerRegistry::empty();
        crate::layers::register(&mut r).unwrap();
        for k in [
            "linear",
            "conv2d",
            "parallel",
            "reshape",
            "sign",
            "fake_quantize",
        ] {
            assert!(r.contains(k), "{k}");
        }
        let e = crate::layers::register(&mut r).unwrap_err().to_string();
        assert!(e.contains("already registered"), "{e}");
        assert!(r.register("", |_, _| unreachable!()).is_err());
    }

    #[test]
    fn unknown_kind_names_itself_and_the_known_ones() {
        let e = LayerRegistry::nn()
            .build(&LayerRecord::new("warp-drive"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("warp-drive") && e.contains("linear"), "{e}");
        let e = LayerRegistry::empty()
            .build(&LayerRecord::new("linear"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("not registered"), "{e}");
    }
}
