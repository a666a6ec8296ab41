//! The built-in actors.

mod probe;

pub use probe::{Probe, PROBE};
