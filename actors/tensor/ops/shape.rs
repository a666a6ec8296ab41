//! Shape arithmetic: checked element counts, broadcasting, axes.

use ndarray::{ArrayD, ArrayViewD, IxDyn};

use super::dtype::{DType, Elem};
use super::error::OpError;

pub(super) fn shape_u64(shape: &[usize]) -> Vec<u64> {
    shape.iter().map(|&d| d as u64).collect()
}

/// Element count of `shape`, if an ndarray array of that shape can exist
/// (the product of the non-zero dimensions fits in `isize`).
pub(super) fn checked_len(shape: &[usize]) -> Option<usize> {
    let mut nonzero: usize = 1;
    let mut empty = false;
    for &d in shape {
        if d == 0 {
            empty = true;
        } else {
            nonzero = nonzero.checked_mul(d)?;
        }
    }
    (isize::try_from(nonzero).is_ok()).then_some(if empty { 0 } else { nonzero })
}

/// Size in bytes of an array of `shape` and `dtype`, if it can exist.
pub(crate) fn checked_bytes(shape: &[usize], dtype: DType) -> Option<usize> {
    checked_len(shape)?
        .checked_mul(dtype.size())
        .filter(|&b| isize::try_from(b).is_ok())
}

/// Converts a wire shape to dimensions, rejecting unrepresentable shapes.
pub(crate) fn dims_from_u64(shape: &[u64]) -> Result<Vec<usize>, OpError> {
    shape
        .iter()
        .map(|&d| usize::try_from(d).ok())
        .collect::<Option<Vec<usize>>>()
        .filter(|dims| checked_len(dims).is_some())
        .ok_or_else(|| OpError::ShapeOverflow {
            shape: shape.to_vec(),
        })
}

pub(super) fn from_vec<T: Elem>(shape: &[usize], data: Vec<T>) -> Result<ArrayD<T>, OpError> {
    ArrayD::from_shape_vec(IxDyn(shape), data).map_err(|_| OpError::ShapeOverflow {
        shape: shape_u64(shape),
    })
}

/// NumPy broadcasting of two shapes.
pub(super) fn broadcast_shape(
    op: &'static str,
    a: &[usize],
    b: &[usize],
) -> Result<Vec<usize>, OpError> {
    let n = a.len().max(b.len());
    let dim = |s: &[usize], i: usize| {
        (s.len() + i)
            .checked_sub(n)
            .and_then(|j| s.get(j))
            .copied()
            .unwrap_or(1)
    };
    (0..n)
        .map(|i| match (dim(a, i), dim(b, i)) {
            (x, y) if x == y || y == 1 => Ok(x),
            (1, y) => Ok(y),
            _ => Err(OpError::ShapeMismatch {
                op,
                lhs: a.to_vec(),
                rhs: b.to_vec(),
            }),
        })
        .collect()
}

pub(super) fn broadcast_view<'a, T>(
    op: &'static str,
    x: &'a ArrayD<T>,
    shape: &[usize],
) -> Result<ArrayViewD<'a, T>, OpError> {
    x.broadcast(IxDyn(shape))
        .ok_or_else(|| OpError::ShapeMismatch {
            op,
            lhs: x.shape().to_vec(),
            rhs: shape.to_vec(),
        })
}

/// Python-style axis normalisation.
pub(super) fn norm_axis(op: &'static str, axis: i64, ndim: usize) -> Result<usize, OpError> {
    let n = i64::try_from(ndim).unwrap_or(i64::MAX);
    let a = if axis < 0 { axis + n } else { axis };
    usize::try_from(a)
        .ok()
        .filter(|&a| a < ndim)
        .ok_or(OpError::AxisOutOfRange { op, axis, ndim })
}
