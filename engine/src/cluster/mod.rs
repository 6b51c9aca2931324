//! What several hub nodes must agree on without talking: which node owns
//! which store. Pure code, so the hub and the simulator run the same rule.

mod placement;

pub use placement::{placement, score};
