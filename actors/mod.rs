//! The built-in actors.

mod probe;
pub mod registry;
pub mod tensor;

pub use probe::{Probe, PROBE};
