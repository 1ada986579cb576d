//! The compressed layers of weight sharing: [`SharedLinear`] runs from its codebook and
//! byte codes (the lookup kernels of [`crate::lookup`]) and stores the codes packed in `b`
//! bits; [`register`] adds its kind to a layer registry.

mod shared_linear;

pub use shared_linear::SharedLinear;

use nn::LayerRegistry;

/// Registers `shared_linear`.
pub fn register(registry: &mut LayerRegistry) -> nn::Result<()> {
    nn::register_kinds! { registry;
        "shared_linear" => SharedLinear,
    }
    Ok(())
}
