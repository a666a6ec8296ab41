//! Indexing with tensors: integer indices (`takeAlongAxis`, `indexSelect`,
//! `scatter`) and boolean masks (`maskSelect`), NumPy's fancy indexing.
//!
//! Every kernel checks all of its indices before it allocates or writes
//! anything, so a bad index fails the op as a whole.

use std::borrow::Cow;

use ndarray::{ArrayD, Axis, IxDyn, Zip};

use super::alloc::{reserve, Alloc};
use super::dtype::{dispatch, Array, Elem, Num};
use super::elementwise::same;
use super::error::{invalid, OpError};
use super::shape::{broadcast_view, from_vec, norm_axis};

/// The schema names of the ops here, which start their error messages.
pub(super) const TAKE_ALONG_AXIS: &str = "takeAlongAxis";
pub(super) const INDEX_SELECT: &str = "indexSelect";
pub(super) const MASK_SELECT: &str = "maskSelect";
pub(super) const SCATTER: &str = "scatter";

/// The elements of `x` in row-major order, borrowed when it is laid out so
/// (every array the worker holds is).
pub(super) fn row_major<T: Copy>(x: &ArrayD<T>) -> Cow<'_, [T]> {
    match x.as_slice() {
        Some(s) => Cow::Borrowed(s),
        None => Cow::Owned(x.iter().copied().collect()),
    }
}

/// `idx`'s values as `usize` indices into an axis of `len`, each checked;
/// negative ones count from the end. Any integer dtype is accepted.
pub(super) fn indices(
    op: &'static str,
    idx: &Array,
    axis: usize,
    len: usize,
) -> Result<ArrayD<usize>, OpError> {
    if idx.dtype().int_range().is_none() {
        return Err(invalid(
            op,
            format!(
                "indices must have an integer dtype, not {} (cast them first)",
                idx.dtype()
            ),
        ));
    }
    let n = i128::try_from(len).unwrap_or(i128::MAX);
    let check = |v: i128| {
        let i = if v < 0 { v + n } else { v };
        usize::try_from(i).ok().filter(|&i| i < len).ok_or_else(|| {
            invalid(
                op,
                format!("index {v} is out of bounds for axis {axis} with size {len}"),
            )
        })
    };
    dispatch!(idx, x => {
        let mut out = Vec::with_capacity(x.len());
        for &v in x.iter() {
            // An unsigned value above i64::MAX would wrap to a negative one.
            let wide = v.to_f64();
            let v = if wide >= 9_223_372_036_854_775_808.0 {
                i128::from(u64::MAX)
            } else {
                i128::from(v.cast::<i64>())
            };
            out.push(check(v)?);
        }
        ArrayD::from_shape_vec(IxDyn(x.shape()), out).map_err(|_| OpError::ShapeOverflow {
            shape: x.shape().iter().map(|&d| d as u64).collect(),
        })
    })
}

/// The shape of `takeAlongAxis`'s result (and of `scatter`'s broadcast
/// indices): the indices' shape along `axis`, the broadcast of both shapes
/// elsewhere (`fixed`: the array's dimensions may not grow, as for scatter).
fn along_shape(
    op: &'static str,
    x: &[usize],
    idx: &[usize],
    axis: usize,
    fixed: bool,
) -> Result<Vec<usize>, OpError> {
    let mismatch = || {
        invalid(
            op,
            format!(
                "indices of shape {idx:?} do not broadcast against the array of shape {x:?} \
                 outside axis {axis}"
            ),
        )
    };
    if idx.len() != x.len() {
        return Err(invalid(
            op,
            format!(
                "indices have {} dimensions but the array has {} (shapes {idx:?} and {x:?})",
                idx.len(),
                x.len()
            ),
        ));
    }
    (0..x.len())
        .map(|d| match (x[d], idx[d]) {
            _ if d == axis => Ok(idx[d]),
            (a, b) if a == b || b == 1 => Ok(a),
            (1, b) if !fixed => Ok(b),
            _ => Err(mismatch()),
        })
        .collect()
}

fn take_along_typed<T: Elem>(
    x: &ArrayD<T>,
    idx: &ArrayD<usize>,
    axis: usize,
    shape: &[usize],
    alloc: &dyn Alloc,
) -> Result<Array, OpError> {
    const OP: &str = TAKE_ALONG_AXIS;
    reserve(alloc, OP, shape, T::DTYPE)?;
    let mut src_shape = shape.to_vec();
    src_shape[axis] = x.shape()[axis];
    let xv = broadcast_view(OP, x, &src_shape)?;
    let iv = broadcast_view(OP, idx, shape)?;
    let mut out = ArrayD::from_elem(IxDyn(shape), T::ZERO);
    Zip::from(out.lanes_mut(Axis(axis)))
        .and(iv.lanes(Axis(axis)))
        .and(xv.lanes(Axis(axis)))
        .for_each(|mut o, i, src| {
            for (o, &i) in o.iter_mut().zip(i) {
                if let Some(&v) = src.get(i) {
                    *o = v;
                }
            }
        });
    Ok(T::wrap(out))
}

fn index_select_typed<T: Elem>(
    x: &ArrayD<T>,
    idx: &ArrayD<usize>,
    axis: usize,
    alloc: &dyn Alloc,
) -> Result<Array, OpError> {
    let shape = x.shape();
    let out_shape: Vec<usize> = (shape[..axis].iter())
        .chain(idx.shape())
        .chain(&shape[axis + 1..])
        .copied()
        .collect();
    reserve(alloc, INDEX_SELECT, &out_shape, T::DTYPE)?;
    let src = row_major(x);
    let outer: usize = shape[..axis].iter().product();
    let n = shape[axis];
    let inner: usize = shape[axis + 1..].iter().product();
    let idx = row_major(idx);
    let mut out = Vec::with_capacity(outer * idx.len() * inner);
    for o in 0..outer {
        for &i in idx.iter() {
            let start = (o * n + i) * inner;
            out.extend_from_slice(src.get(start..start + inner).unwrap_or_default());
        }
    }
    Ok(T::wrap(from_vec(&out_shape, out)?))
}

/// Checks a boolean mask against `shape` (it must match its leading
/// dimensions) and gives it with the shape of the selection.
pub(super) fn mask_plan<'a>(
    op: &'static str,
    shape: &[usize],
    mask: &'a Array,
) -> Result<(Cow<'a, [bool]>, Vec<usize>), OpError> {
    let Array::Bool(m) = mask else {
        return Err(invalid(
            op,
            format!("mask must have dtype bool, not {}", mask.dtype()),
        ));
    };
    let k = m.ndim();
    if k > shape.len() || m.shape() != &shape[..k] {
        return Err(invalid(
            op,
            format!(
                "mask of shape {:?} does not match the array of shape {shape:?} \
                 (it must match all of it or its leading dimensions)",
                m.shape()
            ),
        ));
    }
    let m = row_major(m);
    let count = m.iter().filter(|&&b| b).count();
    let selected = std::iter::once(count)
        .chain(shape[k..].iter().copied())
        .collect();
    Ok((m, selected))
}

fn mask_select_typed<T: Elem>(
    x: &ArrayD<T>,
    mask: &Array,
    alloc: &dyn Alloc,
) -> Result<Array, OpError> {
    let (m, out_shape) = mask_plan(MASK_SELECT, x.shape(), mask)?;
    reserve(alloc, MASK_SELECT, &out_shape, T::DTYPE)?;
    let inner: usize = out_shape[1..].iter().product();
    let src = row_major(x);
    let mut out = Vec::with_capacity(out_shape[0] * inner);
    for (j, _) in m.iter().enumerate().filter(|(_, &b)| b) {
        let start = j * inner;
        out.extend_from_slice(src.get(start..start + inner).unwrap_or_default());
    }
    Ok(T::wrap(from_vec(&out_shape, out)?))
}

fn scatter_typed<T: Elem>(
    x: &ArrayD<T>,
    idx: &ArrayD<usize>,
    values: &Array,
    axis: usize,
    alloc: &dyn Alloc,
    combine: Option<fn(T, T) -> T>,
) -> Result<Array, OpError> {
    const OP: &str = SCATTER;
    let values = same(OP, x, values)?;
    let shape = along_shape(OP, x.shape(), idx.shape(), axis, true)?;
    let vv = values.broadcast(IxDyn(&shape)).ok_or_else(|| {
        invalid(
            OP,
            format!(
                "values of shape {:?} do not broadcast to the indices' shape {shape:?}",
                values.shape()
            ),
        )
    })?;
    let iv = broadcast_view(OP, idx, &shape)?;
    reserve(alloc, OP, x.shape(), T::DTYPE)?;
    let mut out = x.as_standard_layout().into_owned();
    // Indices collide only within one lane along `axis`, which is walked
    // in order: the last index wins, or all of them add up.
    Zip::from(out.lanes_mut(Axis(axis)))
        .and(iv.lanes(Axis(axis)))
        .and(vv.lanes(Axis(axis)))
        .for_each(|mut o, i, v| {
            for (&i, &v) in i.iter().zip(v) {
                if let Some(o) = o.get_mut(i) {
                    *o = match combine {
                        Some(f) => f(*o, v),
                        None => v,
                    };
                }
            }
        });
    Ok(T::wrap(out))
}

fn or(a: bool, b: bool) -> bool {
    a | b
}

/// The axis of an op that indexes along one, normalised; 0-d arrays have
/// none to index.
fn index_axis(op: &'static str, x: &Array, axis: i64) -> Result<usize, OpError> {
    if x.ndim() == 0 {
        return Err(invalid(op, "a zero-dimensional array has no axis to index"));
    }
    norm_axis(op, axis, x.ndim())
}

impl Array {
    /// NumPy's `take_along_axis`: `out[..., j, ...] = a[..., idx[..., j,
    /// ...], ...]` along `axis`. `idx` has an integer dtype and as many
    /// dimensions as `a`; elsewhere than `axis` the two shapes broadcast.
    /// Negative indices count from the end.
    ///
    /// # Errors
    ///
    /// A non-integer `idx`, shapes that do not fit, an index out of range
    /// (naming it, the axis and its size), a bad axis, or the quota.
    pub fn take_along_axis(
        a: &Array,
        idx: &Array,
        axis: i64,
        alloc: &dyn Alloc,
    ) -> Result<Array, OpError> {
        const OP: &str = TAKE_ALONG_AXIS;
        let ax = index_axis(OP, a, axis)?;
        let shape = along_shape(OP, a.shape(), idx.shape(), ax, false)?;
        let idx = indices(OP, idx, ax, a.shape()[ax])?;
        dispatch!(a, x => take_along_typed(x, &idx, ax, &shape, alloc))
    }

    /// NumPy's `take(a, idx, axis)` (torch's `index_select` for a 1-d
    /// `idx`): the sub-arrays at `idx` along `axis`, in `idx`'s shape, so
    /// the result has shape `a.shape[..axis] + idx.shape + a.shape[axis+1..]`.
    ///
    /// # Errors
    ///
    /// A non-integer `idx`, an index out of range, a bad axis, or the quota.
    pub fn index_select(
        a: &Array,
        idx: &Array,
        axis: i64,
        alloc: &dyn Alloc,
    ) -> Result<Array, OpError> {
        const OP: &str = INDEX_SELECT;
        let ax = index_axis(OP, a, axis)?;
        let idx = indices(OP, idx, ax, a.shape()[ax])?;
        dispatch!(a, x => index_select_typed(x, &idx, ax, alloc))
    }

    /// NumPy's `a[mask]` for a bool `mask` whose shape is all of `a`'s or
    /// its leading dimensions: the selected elements (or sub-arrays) in
    /// row-major order, with shape `[count] + a.shape[mask.ndim..]`.
    ///
    /// # Errors
    ///
    /// A mask that is not bool or whose shape does not match, or the quota.
    pub fn mask_select(a: &Array, mask: &Array, alloc: &dyn Alloc) -> Result<Array, OpError> {
        dispatch!(a, x => mask_select_typed(x, mask, alloc))
    }

    /// A copy of `a` with `values` written at `idx` along `axis`: for every
    /// position `p` of `idx`, `out[p with axis = idx[p]] = values[p]`
    /// (NumPy's `put_along_axis`; torch's `scatter` when `idx` has `a`'s
    /// shape outside `axis`). `idx` has as many dimensions as `a`, each
    /// either `a`'s or 1 outside `axis`; `values` (cast to `a`'s dtype, by
    /// [`Array::cast`]'s rules, when it has another) broadcasts to `idx`'s
    /// shape. Where indices repeat along the axis,
    /// the last one wins; with `accumulate` (torch's `scatter_add`, NumPy's
    /// `np.add.at`) every value is added instead (wrapping on integers,
    /// logical or on bool).
    ///
    /// # Errors
    ///
    /// A non-integer `idx`, an index out of range, shapes that do not fit,
    /// a bad axis, or the quota. Nothing is written then.
    pub fn scatter(
        a: &Array,
        idx: &Array,
        values: &Array,
        axis: i64,
        accumulate: bool,
        alloc: &dyn Alloc,
    ) -> Result<Array, OpError> {
        const OP: &str = SCATTER;
        let ax = index_axis(OP, a, axis)?;
        along_shape(OP, a.shape(), idx.shape(), ax, true)?;
        let idx = indices(OP, idx, ax, a.shape()[ax])?;
        // Values of another dtype are cast to `a`'s, as NumPy's
        // `put_along_axis` casts them.
        let cast;
        let values = match values.dtype() == a.dtype() {
            true => values,
            false => {
                cast = Array::cast_as(OP, values, a.dtype(), alloc)?;
                &cast
            }
        };
        dispatch!(a,
            x => scatter_typed(x, &idx, values, ax, alloc, accumulate.then_some(Num::add as fn(_, _) -> _)),
            bool b => scatter_typed(b, &idx, values, ax, alloc, accumulate.then_some(or as fn(bool, bool) -> bool)))
    }
}
