//! The built-in actors.

mod probe;
pub mod tensor;

pub use probe::{Probe, PROBE};
