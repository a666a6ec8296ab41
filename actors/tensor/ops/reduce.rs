//! Reductions over an axis or over every element.

use ndarray::{ArrayD, ArrayView1, Axis, Zip};
use rayon::prelude::*;

use super::alloc::{reserve, Alloc};
use super::dtype::{dispatch, float_sum, Array, Elem};
use super::elementwise::standard;
use super::error::OpError;
use super::parallel;
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
    f: impl Fn(ArrayView1<'_, T>) -> U + Sync + Send,
    whole: impl Fn(&[T]) -> U,
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
        (Some(ax), _) if parallel::worth(x.len()) => {
            let lanes = x.lanes(Axis(ax));
            let out = parallel::install(|| Zip::from(lanes).par_map_collect(|l| f(l)));
            standard(out).into_raw_vec_and_offset().0
        }
        (Some(ax), _) => x.lanes(Axis(ax)).into_iter().map(&f).collect(),
        (None, Some(flat)) => vec![whole(flat)],
        (None, None) => {
            reserve(alloc, op, x.shape(), T::DTYPE)?;
            let flat: Vec<T> = x.iter().copied().collect();
            vec![whole(&flat)]
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

/// Applies `f` to chunks of `flat`, in the compute pool, with each
/// chunk's offset; the results in order.
fn chunked<T: Elem, P: Send>(
    flat: &[T],
    f: impl Fn(usize, ArrayView1<'_, T>) -> P + Sync + Send,
) -> Vec<P> {
    let pieces = parallel::compute_threads() * 4;
    let chunk = flat.len().div_ceil(pieces).max(parallel::PAR_ELEMENTS / 4);
    parallel::install(|| {
        flat.par_chunks(chunk)
            .enumerate()
            .map(|(i, c)| f(i * chunk, ArrayView1::from(c)))
            .collect()
    })
}

/// The whole-array reduction of `op`: in chunks in the compute pool for a
/// large array, combined so the result is the sequential one (up to the
/// rounding of float partial sums).
fn whole<T: Elem>(op: ReduceOp, flat: &[T]) -> Whole<T> {
    let lane = ArrayView1::from(flat);
    if !parallel::worth(flat.len()) {
        return match op {
            ReduceOp::Sum => Whole::Sum(T::sum_lane(lane)),
            ReduceOp::Mean => Whole::Mean(T::mean_lane(lane)),
            ReduceOp::Max => Whole::Value(extreme(lane, true)),
            ReduceOp::Min => Whole::Value(extreme(lane, false)),
            ReduceOp::Argmax => Whole::Index(arg_extreme(lane, true)),
            ReduceOp::Argmin => Whole::Index(arg_extreme(lane, false)),
        };
    }
    match op {
        ReduceOp::Sum => {
            let parts = chunked(flat, |_, l| T::sum_lane(l));
            // Sums of sums: `T::Sum`'s own sum is of the same type.
            Whole::Sum(<T::Sum as Elem>::sum_lane(ArrayView1::from(&parts[..])).cast())
        }
        ReduceOp::Mean => {
            let parts = chunked(flat, |_, l| float_sum(l));
            let total: f64 = parts.iter().sum();
            Whole::Mean(<T::Mean as Elem>::from_f64(total / flat.len() as f64))
        }
        ReduceOp::Max | ReduceOp::Min => {
            let max = op == ReduceOp::Max;
            let parts = chunked(flat, |_, l| extreme(l, max));
            Whole::Value(extreme(ArrayView1::from(&parts[..]), max))
        }
        ReduceOp::Argmax | ReduceOp::Argmin => {
            let max = op == ReduceOp::Argmax;
            let parts = chunked(flat, |offset, l| {
                let i = arg_extreme(l, max) as usize;
                (offset + i, l[i])
            });
            let values: Vec<T> = parts.iter().map(|p| p.1).collect();
            let best = arg_extreme(ArrayView1::from(&values[..]), max) as usize;
            Whole::Index(parts.get(best).map_or(0, |p| p.0 as i64))
        }
    }
}

/// What [`whole`] gives, by op.
enum Whole<T: Elem> {
    Sum(T::Sum),
    Mean(T::Mean),
    Value(T),
    Index(i64),
}

pub(super) fn reduce_typed<T: Elem>(
    op: ReduceOp,
    x: &ArrayD<T>,
    axis: Option<i64>,
    keepdims: bool,
    alloc: &dyn Alloc,
) -> Result<Array, OpError> {
    let name = op.name();
    let (a, k, m) = (axis, keepdims, alloc);
    // Each arm's `whole` only ever sees its own variant.
    match op {
        ReduceOp::Sum => reduce_lanes(name, x, a, k, m, false, T::sum_lane, |f| {
            match whole(op, f) {
                Whole::Sum(v) => v,
                _ => T::sum_lane(ArrayView1::from(f)),
            }
        }),
        ReduceOp::Mean => reduce_lanes(name, x, a, k, m, false, T::mean_lane, |f| {
            match whole(op, f) {
                Whole::Mean(v) => v,
                _ => T::mean_lane(ArrayView1::from(f)),
            }
        }),
        ReduceOp::Max | ReduceOp::Min => {
            let max = op == ReduceOp::Max;
            reduce_lanes(
                name,
                x,
                a,
                k,
                m,
                true,
                move |l| extreme(l, max),
                |f| match whole(op, f) {
                    Whole::Value(v) => v,
                    _ => extreme(ArrayView1::from(f), max),
                },
            )
        }
        ReduceOp::Argmax | ReduceOp::Argmin => {
            let max = op == ReduceOp::Argmax;
            reduce_lanes(
                name,
                x,
                a,
                k,
                m,
                true,
                move |l| arg_extreme(l, max),
                |f| match whole(op, f) {
                    Whole::Index(v) => v,
                    _ => arg_extreme(ArrayView1::from(f), max),
                },
            )
        }
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
