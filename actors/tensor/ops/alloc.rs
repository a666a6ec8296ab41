//! Allocation under the quota: every op asks an [`Alloc`] before it
//! allocates its output.

use super::dtype::DType;
use super::error::OpError;
use super::shape::{checked_bytes, shape_u64};

/// Memory accounting hook: every op calls [`Alloc::reserve`] before it
/// allocates its output. The worker implements its memory quota with it.
pub trait Alloc {
    /// Called with the op name and the output size in bytes before the output
    /// is allocated; returning an error aborts the op without allocating.
    fn reserve(&self, op: &'static str, bytes: usize) -> Result<(), OpError>;
}

/// An [`Alloc`] that accepts every reservation.
#[derive(Clone, Copy, Debug, Default)]
pub struct Unlimited;

impl Alloc for Unlimited {
    fn reserve(&self, _op: &'static str, _bytes: usize) -> Result<(), OpError> {
        Ok(())
    }
}

/// An [`Alloc`] that refuses any single output larger than `.0` bytes with
/// [`OpError::TooLarge`].
#[derive(Clone, Copy, Debug)]
pub struct MaxBytes(pub usize);

impl Alloc for MaxBytes {
    fn reserve(&self, op: &'static str, bytes: usize) -> Result<(), OpError> {
        if bytes > self.0 {
            return Err(OpError::TooLarge {
                op,
                bytes,
                limit: self.0,
            });
        }
        Ok(())
    }
}

/// Reserves the output of an op; the only way ops obtain permission to
/// allocate.
pub(crate) fn reserve(
    alloc: &dyn Alloc,
    op: &'static str,
    shape: &[usize],
    dtype: DType,
) -> Result<(), OpError> {
    let bytes = checked_bytes(shape, dtype).ok_or_else(|| OpError::ShapeOverflow {
        shape: shape_u64(shape),
    })?;
    alloc.reserve(op, bytes)
}
