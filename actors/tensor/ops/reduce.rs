//! Reductions over an axis or over every element.

use ndarray::{ArrayD, ArrayView1, Axis};

use super::alloc::{reserve, Alloc};
use super::dtype::{dispatch, Array, Elem};
use super::error::OpError;
use super::shape::{from_vec, norm_axis};
use super::table::ReduceOp;

/// Reduces every lane along `axis` (or the whole array) with `f`.
pub(super) fn reduce_lanes<T: Elem, U: Elem>(
    op: &'static str,
    x: &ArrayD<T>,
    axis: Option<i64>,
    keepdims: bool,
    alloc: &dyn Alloc,
    needs_elements: bool,
    f: impl Fn(ArrayView1<'_, T>) -> U,
) -> Result<Array, OpError> {
    let ndim = x.ndim();
    let axis = axis.map(|a| norm_axis(op, a, ndim)).transpose()?;
    let (shape, reduced): (Vec<usize>, usize) = match axis {
        Some(ax) => (
            x.shape()
                .iter()
                .enumerate()
                .filter_map(|(i, &d)| {
                    if i == ax {
                        keepdims.then_some(1)
                    } else {
                        Some(d)
                    }
                })
                .collect(),
            x.len_of(Axis(ax)),
        ),
        None => (if keepdims { vec![1; ndim] } else { Vec::new() }, x.len()),
    };
    if needs_elements && reduced == 0 {
        return Err(OpError::EmptyReduction { op });
    }
    reserve(alloc, op, &shape, U::DTYPE)?;
    let data: Vec<U> = match (axis, x.as_slice()) {
        (Some(ax), _) => x.lanes(Axis(ax)).into_iter().map(&f).collect(),
        (None, Some(flat)) => vec![f(ArrayView1::from(flat))],
        (None, None) => {
            reserve(alloc, op, x.shape(), T::DTYPE)?;
            let flat: Vec<T> = x.iter().copied().collect();
            vec![f(ArrayView1::from(flat.as_slice()))]
        }
    };
    Ok(U::wrap(from_vec(&shape, data)?))
}

/// Max (or min) of a non-empty lane; NaN wins.
pub(super) fn extreme<T: Elem>(lane: ArrayView1<'_, T>, max: bool) -> T {
    let mut it = lane.iter().copied();
    let Some(mut best) = it.next() else {
        return T::ZERO;
    };
    for v in it {
        if best.is_nan() {
            break;
        }
        if v.is_nan() || if max { v > best } else { v < best } {
            best = v;
        }
    }
    best
}

/// Index of the first max (or min) of a lane; the first NaN wins.
pub(super) fn arg_extreme<T: Elem>(lane: ArrayView1<'_, T>, max: bool) -> i64 {
    let mut best: Option<(usize, T)> = None;
    for (i, &v) in lane.iter().enumerate() {
        match best {
            Some((_, b)) if b.is_nan() => break,
            Some((_, b)) if !(v.is_nan() || if max { v > b } else { v < b }) => {}
            _ => best = Some((i, v)),
        }
    }
    best.map_or(0, |(i, _)| i as i64)
}

pub(super) fn reduce_typed<T: Elem>(
    op: ReduceOp,
    x: &ArrayD<T>,
    axis: Option<i64>,
    keepdims: bool,
    alloc: &dyn Alloc,
) -> Result<Array, OpError> {
    let name = op.name();
    match op {
        ReduceOp::Sum => reduce_lanes(name, x, axis, keepdims, alloc, false, T::sum_lane),
        ReduceOp::Mean => reduce_lanes(name, x, axis, keepdims, alloc, false, T::mean_lane),
        ReduceOp::Max => reduce_lanes(name, x, axis, keepdims, alloc, true, |l| extreme(l, true)),
        ReduceOp::Min => reduce_lanes(name, x, axis, keepdims, alloc, true, |l| extreme(l, false)),
        ReduceOp::Argmax => reduce_lanes(name, x, axis, keepdims, alloc, true, |l| {
            arg_extreme(l, true)
        }),
        ReduceOp::Argmin => reduce_lanes(name, x, axis, keepdims, alloc, true, |l| {
            arg_extreme(l, false)
        }),
    }
}

impl Array {
    /// Reduces along `axis` (negative counts from the end) or over all
    /// elements when `axis` is `None`; `keepdims` keeps reduced axes as size 1.
    /// See [`ReduceOp`] for the result dtypes. Max, min, argmax and argmin of
    /// zero elements fail with [`OpError::EmptyReduction`]; argmax/argmin with
    /// `axis: None` index the flattened array.
    pub fn reduce(
        op: ReduceOp,
        a: &Array,
        axis: Option<i64>,
        keepdims: bool,
        alloc: &dyn Alloc,
    ) -> Result<Array, OpError> {
        dispatch!(a, x => reduce_typed(op, x, axis, keepdims, alloc))
    }
}
