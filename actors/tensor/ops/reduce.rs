//! Reductions over an axis or over every element.

use ndarray::{ArrayD, ArrayView1, Axis, Zip};
use rayon::prelude::*;

use super::alloc::{reserve, Alloc};
use super::dtype::{dispatch, float_sum, Array, Elem, Float, Num};
use super::elementwise::standard;
use super::error::OpError;
use super::parallel;
use super::shape::{from_vec, norm_axis};
use super::table::{CumulativeOp, ReduceOp};

/// Reduces every lane along `axis` (or the whole array) with `f`.
// The op's name, input, axes, quota, emptiness rule and its two ways of
// reducing: each a different thing every reduction passes.
#[allow(clippy::too_many_arguments)]
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
            let out = parallel::install(|| Zip::from(lanes).par_map_collect(&f));
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
            _ => Whole::Other,
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
        _ => Whole::Other,
    }
}

/// What [`whole`] gives, by op.
enum Whole<T: Elem> {
    Sum(T::Sum),
    Mean(T::Mean),
    Value(T),
    Index(i64),
    /// An op [`whole`] leaves to its lane function.
    Other,
}

/// Variance of a lane with `ddof`, in f64 (NaN when `n <= ddof`).
fn variance<T: Elem>(lane: ArrayView1<'_, T>, ddof: u32) -> f64 {
    let n = lane.len() as f64;
    let mean = float_sum(lane) / n;
    let squares = lane.iter().fold(0.0, |s, &v| {
        let d = v.to_f64() - mean;
        s + d * d
    });
    let dof = n - f64::from(ddof);
    if dof > 0.0 {
        squares / dof
    } else {
        f64::NAN
    }
}

pub(super) fn reduce_typed<T: Elem>(
    op: ReduceOp,
    x: &ArrayD<T>,
    axis: Option<i64>,
    keepdims: bool,
    ddof: u32,
    alloc: &dyn Alloc,
) -> Result<Array, OpError> {
    let name = op.name();
    let (a, k, m) = (axis, keepdims, alloc);
    let mean = <T::Mean as Elem>::from_f64;
    let lanes = |f: fn(ArrayView1<'_, T>) -> T::Mean, needs| {
        reduce_lanes(name, x, a, k, m, needs, f, |flat| f(ArrayView1::from(flat)))
    };
    // Each arm's `whole` only ever sees its own variant.
    match op {
        ReduceOp::Prod => reduce_lanes(name, x, a, k, m, false, T::prod_lane, |f| {
            T::prod_lane(ArrayView1::from(f))
        }),
        ReduceOp::Var | ReduceOp::Std => {
            let std = op == ReduceOp::Std;
            let f = move |l: ArrayView1<'_, T>| {
                let v = variance(l, ddof);
                mean(if std { v.sqrt() } else { v })
            };
            reduce_lanes(name, x, a, k, m, false, f, |flat| f(ArrayView1::from(flat)))
        }
        ReduceOp::Any | ReduceOp::All => {
            let all = op == ReduceOp::All;
            let f = move |l: ArrayView1<'_, T>| {
                if all {
                    l.iter().all(|&v| v != T::ZERO)
                } else {
                    l.iter().any(|&v| v != T::ZERO)
                }
            };
            reduce_lanes(name, x, a, k, m, false, f, |flat| f(ArrayView1::from(flat)))
        }
        ReduceOp::NormL1 => lanes(
            |l| <T::Mean as Elem>::from_f64(l.iter().map(|v| v.to_f64().abs()).sum()),
            false,
        ),
        ReduceOp::NormL2 => lanes(
            |l| {
                let s: f64 = l.iter().map(|v| v.to_f64() * v.to_f64()).sum();
                <T::Mean as Elem>::from_f64(s.sqrt())
            },
            false,
        ),
        ReduceOp::NormInf => lanes(
            |l| {
                let best = l.iter().map(|v| v.to_f64().abs()).fold(0.0, |m: f64, v| {
                    if m.is_nan() || v.is_nan() {
                        f64::NAN
                    } else {
                        m.max(v)
                    }
                });
                <T::Mean as Elem>::from_f64(best)
            },
            true,
        ),
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
        Array::reduce_ddof(op, a, axis, keepdims, 0, alloc)
    }

    /// [`Array::reduce`] with the delta degrees of freedom of
    /// [`ReduceOp::Var`] and [`ReduceOp::Std`] (other ops ignore it): the
    /// sum of squared deviations is divided by `n - ddof`, NaN if that is
    /// not positive (NumPy warns and gives inf or NaN).
    pub fn reduce_ddof(
        op: ReduceOp,
        a: &Array,
        axis: Option<i64>,
        keepdims: bool,
        ddof: u32,
        alloc: &dyn Alloc,
    ) -> Result<Array, OpError> {
        dispatch!(a, x => reduce_typed(op, x, axis, keepdims, ddof, alloc))
    }
}

/// Running sum or product along `axis` of a copy of `x` in `T::Sum`.
fn cumulative_typed<T: Elem>(
    op: CumulativeOp,
    x: &ArrayD<T>,
    axis: i64,
    alloc: &dyn Alloc,
) -> Result<Array, OpError> {
    let name = op.name();
    let ax = norm_axis(name, axis, x.ndim())?;
    reserve(alloc, name, x.shape(), <T::Sum as Elem>::DTYPE)?;
    let mut out: ArrayD<T::Sum> = x.mapv(|v| v.cast::<T::Sum>());
    let step: fn(T::Sum, T::Sum) -> T::Sum = match op {
        CumulativeOp::Cumsum => Num::add,
        CumulativeOp::Cumprod => Num::mul,
    };
    for mut lane in out.lanes_mut(Axis(ax)) {
        let mut acc: Option<T::Sum> = None;
        for v in lane.iter_mut() {
            let next = acc.map_or(*v, |a| step(a, *v));
            *v = next;
            acc = Some(next);
        }
    }
    Ok(<T::Sum as Elem>::wrap(standard(out)))
}

/// Softmax (or log-softmax) of every lane along `axis`, the lane's
/// maximum subtracted first so no exponential overflows.
fn softmax_typed<T: Float>(
    x: &ArrayD<T>,
    axis: i64,
    log: bool,
    alloc: &dyn Alloc,
) -> Result<Array, OpError> {
    let name = "softmax";
    let ax = norm_axis(name, axis, x.ndim())?;
    reserve(alloc, name, x.shape(), T::DTYPE)?;
    let mut out = x.as_standard_layout().into_owned();
    let each = |mut lane: ndarray::ArrayViewMut1<'_, T>| {
        let m = extreme(lane.view(), true);
        // An infinite maximum: NumPy gives NaN for the lane.
        let m = if m.is_finite() { m } else { T::ZERO };
        let mut sum = 0.0f64;
        for v in lane.iter_mut() {
            let e = T::exp(Num::sub(*v, m));
            sum += e.to_f64();
            if !log {
                *v = e;
            }
        }
        let s = T::from_f64(sum);
        let ls = T::ln(s);
        for v in lane.iter_mut() {
            *v = if log {
                Num::sub(Num::sub(*v, m), ls)
            } else {
                Num::div(*v, s)
            };
        }
    };
    if parallel::worth(out.len()) {
        let lanes = out.lanes_mut(Axis(ax));
        parallel::install(|| Zip::from(lanes).par_for_each(each));
    } else {
        out.lanes_mut(Axis(ax)).into_iter().for_each(each);
    }
    Ok(T::wrap(out))
}

impl Array {
    /// Running sum ([`CumulativeOp::Cumsum`]) or product along `axis`
    /// (negative counts from the end), NumPy's `cumsum` / `cumprod`: the
    /// result has `a`'s shape and the dtype of [`ReduceOp::Sum`]'s result
    /// (bool counts as I64; integers wrap).
    pub fn cumulative(
        op: CumulativeOp,
        a: &Array,
        axis: i64,
        alloc: &dyn Alloc,
    ) -> Result<Array, OpError> {
        dispatch!(a, x => cumulative_typed(op, x, axis, alloc))
    }

    /// `exp(x) / sum(exp(x))` over `axis`, or with `log` its logarithm
    /// (`log_softmax`), computed stably. Float dtypes only.
    pub fn softmax(a: &Array, axis: i64, log: bool, alloc: &dyn Alloc) -> Result<Array, OpError> {
        let op = "softmax";
        dispatch!(a,
            float x => softmax_typed(x, axis, log, alloc),
            int _x => Err(OpError::Unsupported { op, dtype: a.dtype() }),
            bool _x => Err(OpError::Unsupported { op, dtype: a.dtype() }))
    }
}
