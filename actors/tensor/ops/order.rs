//! Order: sort, argsort and topk along an axis.

use std::cmp::Ordering;

use ndarray::{ArrayD, ArrayView1, ArrayViewMut1, Axis, IxDyn, Zip};

use super::alloc::{reserve, Alloc};
use super::dtype::{dispatch, Array, DType, Elem};
use super::error::{invalid, OpError};
use super::parallel;
use super::shape::norm_axis;

/// NumPy's sort order: NaN after everything else, NaNs equal to each
/// other (so a stable sort keeps them in order).
fn order<T: Elem>(a: &T, b: &T) -> Ordering {
    a.partial_cmp(b)
        .unwrap_or_else(|| a.is_nan().cmp(&b.is_nan()))
}

/// Runs `f` on every pair of lanes along `ax` of `x` and `out` (the same
/// number of lanes), in the compute pool when `x` is large.
fn each_lane<T: Elem, U: Elem>(
    x: &ArrayD<T>,
    out: &mut ArrayD<U>,
    ax: usize,
    f: impl Fn(ArrayView1<'_, T>, ArrayViewMut1<'_, U>) + Sync + Send,
) {
    let zip = Zip::from(x.lanes(Axis(ax))).and(out.lanes_mut(Axis(ax)));
    if parallel::worth(x.len()) {
        parallel::install(|| zip.par_for_each(&f));
    } else {
        zip.for_each(f);
    }
}

/// The axis of a sort-like op, which needs at least one dimension.
fn sort_axis(op: &'static str, x_ndim: usize, axis: i64) -> Result<usize, OpError> {
    if x_ndim == 0 {
        return Err(invalid(op, "a zero-dimensional array has no axis to sort"));
    }
    norm_axis(op, axis, x_ndim)
}

fn sort_typed<T: Elem>(x: &ArrayD<T>, axis: i64, alloc: &dyn Alloc) -> Result<Array, OpError> {
    const OP: &str = "sort";
    let ax = sort_axis(OP, x.ndim(), axis)?;
    reserve(alloc, OP, x.shape(), T::DTYPE)?;
    let mut out = ArrayD::from_elem(IxDyn(x.shape()), T::ZERO);
    each_lane(x, &mut out, ax, |lane, mut o| {
        let mut v: Vec<T> = lane.to_vec();
        v.sort_by(order);
        for (o, v) in o.iter_mut().zip(v) {
            *o = v;
        }
    });
    Ok(T::wrap(out))
}

fn argsort_typed<T: Elem>(x: &ArrayD<T>, axis: i64, alloc: &dyn Alloc) -> Result<Array, OpError> {
    const OP: &str = "argsort";
    let ax = sort_axis(OP, x.ndim(), axis)?;
    reserve(alloc, OP, x.shape(), DType::I64)?;
    let mut out = ArrayD::from_elem(IxDyn(x.shape()), 0i64);
    each_lane(x, &mut out, ax, |lane, mut o| {
        let mut idx: Vec<usize> = (0..lane.len()).collect();
        idx.sort_by(|&i, &j| order(&lane[i], &lane[j]));
        for (o, i) in o.iter_mut().zip(idx) {
            *o = i as i64;
        }
    });
    Ok(Array::I64(out))
}

fn topk_typed<T: Elem>(
    x: &ArrayD<T>,
    k: u64,
    axis: i64,
    largest: bool,
    alloc: &dyn Alloc,
) -> Result<(Array, Array), OpError> {
    const OP: &str = "topk";
    let ax = sort_axis(OP, x.ndim(), axis)?;
    let len = x.len_of(Axis(ax));
    let k = usize::try_from(k)
        .ok()
        .filter(|&k| k <= len)
        .ok_or_else(|| {
            invalid(
                OP,
                format!(
                    "k ({k}) is larger than axis {ax} of length {len} (shape {:?})",
                    x.shape()
                ),
            )
        })?;
    let mut shape = x.shape().to_vec();
    shape[ax] = k;
    reserve(alloc, OP, &shape, T::DTYPE)?;
    reserve(alloc, OP, &shape, DType::I64)?;
    // Ties keep the lower index first, whichever the direction.
    let rank = |lane: &ArrayView1<'_, T>, i: usize, j: usize| {
        let by_value = order(&lane[i], &lane[j]);
        (if largest {
            by_value.reverse()
        } else {
            by_value
        })
        .then(i.cmp(&j))
    };
    let mut indices = ArrayD::from_elem(IxDyn(&shape), 0i64);
    each_lane(x, &mut indices, ax, |lane, mut o| {
        if k == 0 {
            return;
        }
        let mut idx: Vec<usize> = (0..lane.len()).collect();
        if k < idx.len() {
            idx.select_nth_unstable_by(k - 1, |&i, &j| rank(&lane, i, j));
            idx.truncate(k);
        }
        idx.sort_unstable_by(|&i, &j| rank(&lane, i, j));
        for (o, i) in o.iter_mut().zip(idx) {
            *o = i as i64;
        }
    });
    let mut values = ArrayD::from_elem(IxDyn(&shape), T::ZERO);
    Zip::from(x.lanes(Axis(ax)))
        .and(indices.lanes(Axis(ax)))
        .and(values.lanes_mut(Axis(ax)))
        .for_each(|lane, idx, mut v| {
            for (v, &i) in v.iter_mut().zip(idx) {
                *v = lane[i as usize];
            }
        });
    Ok((T::wrap(values), Array::I64(indices)))
}

impl Array {
    /// Sorted copy along `axis` (negative counts from the end), stable, NaN
    /// last as NumPy's `sort`; `false < true` for bool.
    pub fn sort(a: &Array, axis: i64, alloc: &dyn Alloc) -> Result<Array, OpError> {
        dispatch!(a, x => sort_typed(x, axis, alloc))
    }

    /// The indices (I64) that sort `a` along `axis`, stably (NumPy's
    /// `argsort(kind="stable")`), NaN last.
    pub fn argsort(a: &Array, axis: i64, alloc: &dyn Alloc) -> Result<Array, OpError> {
        dispatch!(a, x => argsort_typed(x, axis, alloc))
    }

    /// The `k` largest (or, with `largest` false, smallest) elements along
    /// `axis`, in that order, and their indices (I64), as `torch.topk`: ties
    /// give the lower index first and NaN counts as the largest value.
    /// `k` above the axis length fails.
    pub fn topk(
        a: &Array,
        k: u64,
        axis: i64,
        largest: bool,
        alloc: &dyn Alloc,
    ) -> Result<(Array, Array), OpError> {
        dispatch!(a, x => topk_typed(x, k, axis, largest, alloc))
    }
}
