//! Assignment into an array: `x[a:b, ::2] = y` and `x[mask] = y`.
//!
//! These are the only kernels that write into an existing array. Each one
//! checks everything (dtypes, the slices or the mask, that the value
//! broadcasts) before it writes the first element, so a failed assignment
//! leaves the target as it was. Who sees the change is the worker's
//! business (see `Tensor.assign` in docs/PROTOCOL.md); here it is plain
//! in-place mutation.

use std::borrow::Cow;

use ndarray::{ArrayD, ArrayViewD, IxDyn, Slice};

use super::dtype::{dispatch, Array, Elem};
use super::error::{invalid, OpError};
use super::gather::mask_plan;
use super::index::{norm_slice, SliceSpec};

/// The schema names of the ops here, which start their error messages.
pub(super) const ASSIGN: &str = "assign";
pub(super) const ASSIGN_MASK: &str = "assignMask";

/// `value` as an array of `T`, the target's element type.
fn value_of<'a, T: Elem>(op: &'static str, value: &'a Array) -> Result<&'a ArrayD<T>, OpError> {
    T::get(value).ok_or_else(|| {
        invalid(
            op,
            format!(
                "value has dtype {} but the target has dtype {} (cast it first)",
                value.dtype(),
                T::DTYPE
            ),
        )
    })
}

/// `value` broadcast to the `shape` it is written into.
fn spread<'a, T: Elem>(
    op: &'static str,
    value: &'a ArrayD<T>,
    shape: &[usize],
    into: &str,
) -> Result<ArrayViewD<'a, T>, OpError> {
    value.broadcast(IxDyn(shape)).ok_or_else(|| {
        invalid(
            op,
            format!(
                "could not broadcast a value of shape {:?} into the {into} of shape {shape:?}",
                value.shape()
            ),
        )
    })
}

/// The ndarray slices of `specs` over `shape` and the region's shape.
fn slice_plan(shape: &[usize], specs: &[SliceSpec]) -> Result<(Vec<Slice>, Vec<usize>), OpError> {
    if specs.len() > shape.len() {
        return Err(invalid(
            ASSIGN,
            format!(
                "{} slices given for an array with {} dimensions",
                specs.len(),
                shape.len()
            ),
        ));
    }
    let mut slices = Vec::with_capacity(shape.len());
    let mut region = Vec::with_capacity(shape.len());
    for (i, &len) in shape.iter().enumerate() {
        let (s, n) = match specs.get(i) {
            Some(spec) => norm_slice(spec, len).map_err(|r| invalid(ASSIGN, r))?,
            None => (Slice::from(..), len),
        };
        slices.push(s);
        region.push(n);
    }
    Ok((slices, region))
}

/// Checks `x[specs] = value`: the region's slices and the value spread
/// over it.
fn plan_slice<'a, T: Elem>(
    shape: &[usize],
    specs: &[SliceSpec],
    value: &'a Array,
) -> Result<(Vec<Slice>, ArrayViewD<'a, T>), OpError> {
    let value = value_of::<T>(ASSIGN, value)?;
    let (slices, region) = slice_plan(shape, specs)?;
    Ok((slices, spread(ASSIGN, value, &region, "slice")?))
}

fn check_slice_typed<T: Elem>(
    x: &ArrayD<T>,
    specs: &[SliceSpec],
    value: &Array,
) -> Result<(), OpError> {
    plan_slice::<T>(x.shape(), specs, value).map(drop)
}

fn assign_slice_typed<T: Elem>(
    x: &mut ArrayD<T>,
    specs: &[SliceSpec],
    value: &Array,
) -> Result<(), OpError> {
    let (slices, v) = plan_slice::<T>(x.shape(), specs, value)?;
    let pick = |d: ndarray::AxisDescription| {
        slices
            .get(d.axis.index())
            .copied()
            .unwrap_or(Slice::from(..))
    };
    x.slice_each_axis_mut(pick).assign(&v);
    Ok(())
}

/// A checked `x[mask] = value`.
struct MaskWrite<'m, 'a, T> {
    /// The mask's elements, row-major.
    mask: Cow<'m, [bool]>,
    /// Elements per selected row.
    inner: usize,
    /// The value spread over the selection.
    value: ArrayViewD<'a, T>,
}

/// Checks `x[mask] = value`.
fn plan_mask<'a, 'm, T: Elem>(
    shape: &[usize],
    mask: &'m Array,
    value: &'a Array,
) -> Result<MaskWrite<'m, 'a, T>, OpError> {
    let value = value_of::<T>(ASSIGN_MASK, value)?;
    let (mask, selected) = mask_plan(ASSIGN_MASK, shape, mask)?;
    let value = spread(ASSIGN_MASK, value, &selected, "selection")?;
    Ok(MaskWrite {
        mask,
        inner: selected[1..].iter().product(),
        value,
    })
}

fn check_mask_typed<T: Elem>(x: &ArrayD<T>, mask: &Array, value: &Array) -> Result<(), OpError> {
    plan_mask::<T>(x.shape(), mask, value).map(drop)
}

fn assign_mask_typed<T: Elem>(
    x: &mut ArrayD<T>,
    mask: &Array,
    value: &Array,
) -> Result<(), OpError> {
    let MaskWrite {
        mask: m,
        inner,
        value: v,
    } = plan_mask::<T>(x.shape(), mask, value)?;
    if !x.is_standard_layout() {
        *x = x.as_standard_layout().into_owned();
    }
    let Some(dst) = x.as_slice_mut() else {
        return Ok(());
    };
    let rows = m.iter().enumerate().filter(|(_, &b)| b).map(|(j, _)| j);
    for (j, row) in rows.zip(v.outer_iter()) {
        let start = j * inner;
        if let Some(dst) = dst.get_mut(start..start + inner) {
            for (d, &s) in dst.iter_mut().zip(row.iter()) {
                *d = s;
            }
        }
    }
    Ok(())
}

impl Array {
    /// `target[specs] = value` (NumPy's `x[a:b, ::2] = y`), in place:
    /// `specs` slice the leading axes as [`Array::slice`] does, and `value`
    /// (of the target's dtype: the worker casts a value of another dtype
    /// before it comes here) broadcasts to the slice's shape.
    ///
    /// # Errors
    ///
    /// A dtype that differs, a zero step, too many specs, or a value that
    /// does not broadcast (naming both shapes). All is checked before
    /// anything is written: a failed assignment leaves `target` as it was.
    pub fn assign_slice(
        target: &mut Array,
        specs: &[SliceSpec],
        value: &Array,
    ) -> Result<(), OpError> {
        dispatch!(target, x => assign_slice_typed(x, specs, value))
    }

    /// Whether [`Array::assign_slice`] would succeed, without writing.
    ///
    /// # Errors
    ///
    /// The error [`Array::assign_slice`] would give.
    pub fn check_assign_slice(
        target: &Array,
        specs: &[SliceSpec],
        value: &Array,
    ) -> Result<(), OpError> {
        dispatch!(target, x => check_slice_typed(x, specs, value))
    }

    /// `target[mask] = value` (NumPy's boolean-mask assignment), in place:
    /// `mask` is bool with the shape of all of `target` or its leading
    /// dimensions, and `value` broadcasts to the selection's shape,
    /// `[count] + target.shape[mask.ndim..]`, whose rows are written in
    /// row-major order of the mask.
    ///
    /// # Errors
    ///
    /// As [`Array::mask_select`], plus a dtype that differs or a value that
    /// does not broadcast. Nothing is written then.
    pub fn assign_mask(target: &mut Array, mask: &Array, value: &Array) -> Result<(), OpError> {
        dispatch!(target, x => assign_mask_typed(x, mask, value))
    }

    /// Whether [`Array::assign_mask`] would succeed, without writing.
    ///
    /// # Errors
    ///
    /// The error [`Array::assign_mask`] would give.
    pub fn check_assign_mask(target: &Array, mask: &Array, value: &Array) -> Result<(), OpError> {
        dispatch!(target, x => check_mask_typed(x, mask, value))
    }
}
