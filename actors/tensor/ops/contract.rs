//! Contractions: matmul and tensordot (einsum is in `einsum.rs`).

use ndarray::{ArrayBase, ArrayD, ArrayView2, ArrayViewMut2, Axis, Dimension, Ix2, IxDyn, RawData};
use rayon::prelude::*;

use super::alloc::{reserve, Alloc};
use super::dtype::{dispatch, Array, DType, Num};
use super::elementwise::{promoted, same};
use super::error::{invalid, OpError};
use super::layout::distinct_axes;
use super::parallel;
use super::shape::broadcast_shape;

/// Splits `[batch.., rows, cols]`.
pub(super) fn split_matrix(shape: &[usize]) -> Option<(&[usize], usize, usize)> {
    match shape {
        [batch @ .., rows, cols] => Some((batch, *rows, *cols)),
        _ => None,
    }
}

/// The 2-D matrix at batch index `idx` of a `[batch.., rows, cols]` array.
pub(super) fn batch_matrix<S: RawData>(
    mut v: ArrayBase<S, IxDyn>,
    idx: &[usize],
) -> Result<ArrayBase<S, Ix2>, OpError> {
    for &i in idx {
        v = v.index_axis_move(Axis(0), i);
    }
    v.into_dimensionality::<Ix2>()
        .map_err(|_| invalid("matmul", "inconsistent batch shape"))
}

pub(super) fn matmul_num<T: Num>(
    x: &ArrayD<T>,
    y: &ArrayD<T>,
    alloc: &dyn Alloc,
) -> Result<Array, OpError> {
    const OP: &str = "matmul";
    let (xs, ys) = (x.shape(), y.shape());
    if xs.is_empty() || ys.is_empty() {
        return Err(invalid(
            OP,
            format!("operands must have at least one dimension, got shapes {xs:?} and {ys:?}"),
        ));
    }
    // NumPy: a 1-D left operand is a row vector, a 1-D right operand a column
    // vector; the added dimension is removed from the result.
    let xv = if xs.len() == 1 {
        x.view().insert_axis(Axis(0))
    } else {
        x.view()
    };
    let yv = if ys.len() == 1 {
        y.view().insert_axis(Axis(1))
    } else {
        y.view()
    };
    let bad_shape = || invalid(OP, "inconsistent operand shape");
    let (x_batch, m, k) = split_matrix(xv.shape()).ok_or_else(bad_shape)?;
    let (y_batch, k2, n) = split_matrix(yv.shape()).ok_or_else(bad_shape)?;
    if k != k2 {
        return Err(OpError::ShapeMismatch {
            op: OP,
            lhs: xs.to_vec(),
            rhs: ys.to_vec(),
        });
    }
    let batch = broadcast_shape(OP, x_batch, y_batch).map_err(|_| {
        invalid(
            OP,
            format!("cannot broadcast the batch dimensions of shapes {xs:?} and {ys:?}"),
        )
    })?;
    let with = |r: usize, c: usize| [batch.as_slice(), &[r, c]].concat();
    let out_shape = with(m, n);
    reserve(alloc, OP, &out_shape, T::DTYPE)?;
    let xb = xv.broadcast(IxDyn(&with(m, k))).ok_or_else(bad_shape)?;
    let yb = yv.broadcast(IxDyn(&with(k, n))).ok_or_else(bad_shape)?;
    let mut out = ArrayD::from_elem(IxDyn(&out_shape), T::ZERO);
    if k > 0 && !out.is_empty() {
        for idx in ndarray::indices(IxDyn(&batch)) {
            let i = idx.slice();
            let a = batch_matrix(xb.view(), i)?;
            let b = batch_matrix(yb.view(), i)?;
            let mut c = batch_matrix(out.view_mut(), i)?;
            gemm(&a, &b, &mut c);
        }
    }
    let mut shape = batch;
    if xs.len() > 1 {
        shape.push(m);
    }
    if ys.len() > 1 {
        shape.push(n);
    }
    let out = out
        .into_shape_with_order(IxDyn(&shape))
        .map_err(|_| bad_shape())?;
    Ok(T::wrap(out))
}

/// Products of fewer multiply-adds than this stay on one thread.
const GEMM_PARALLEL_WORK: usize = 1 << 20;

/// `c = a · b`: a large product split by rows of `a` and `c` over the
/// compute pool, each block one single-threaded GEMM.
pub(super) fn gemm<T: Num>(
    a: &ArrayView2<'_, T>,
    b: &ArrayView2<'_, T>,
    c: &mut ArrayViewMut2<'_, T>,
) {
    let (m, k) = a.dim();
    let n = b.ncols();
    let work = m.saturating_mul(k).saturating_mul(n);
    let threads = parallel::compute_threads();
    if threads < 2 || m < 2 || work < GEMM_PARALLEL_WORK {
        return T::gemm(a, b, c);
    }
    // A few blocks per thread evens out threads the vats interrupt.
    let rows = m.div_ceil(threads * 2).max(1);
    parallel::install(|| {
        a.axis_chunks_iter(Axis(0), rows)
            .into_par_iter()
            .zip(c.axis_chunks_iter_mut(Axis(0), rows).into_par_iter())
            .for_each(|(a, mut c)| T::gemm(&a, b, &mut c));
    });
}

impl Array {
    /// Matrix product with NumPy `matmul` semantics: 1-D·1-D gives a rank-0
    /// array, a 1-D operand is promoted to a matrix and the added dimension
    /// removed, and leading (batch) dimensions broadcast. Floats use
    /// matrixmultiply's GEMM; integers wrap. Bool is unsupported; rank-0
    /// operands are rejected.
    pub fn matmul(a: &Array, b: &Array, alloc: &dyn Alloc) -> Result<Array, OpError> {
        let (a, b) = promoted("matmul", a, b, alloc)?;
        dispatch!(&*a, x => matmul_num(x, same("matmul", x, &b)?, alloc), bool _x => Err(OpError::Unsupported {
            op: "matmul",
            dtype: DType::Bool,
        }))
    }
}

/// The axes `tensordot` sums over: the last `n` of `a` with the first `n`
/// of `b`, or the lists given.
fn dot_axes(
    a: &[usize],
    b: &[usize],
    n: u32,
    lists: Option<(&[i64], &[i64])>,
) -> Result<(Vec<usize>, Vec<usize>), OpError> {
    const OP: &str = "tensordot";
    let Some((la, lb)) = lists else {
        let n = n as usize;
        if n > a.len() || n > b.len() {
            return Err(invalid(
                OP,
                format!("cannot sum over {n} axes of shapes {a:?} and {b:?}"),
            ));
        }
        let (xa, xb): (Vec<usize>, Vec<usize>) =
            ((a.len() - n..a.len()).collect(), (0..n).collect());
        return same_lengths(a, b, xa, xb);
    };
    if la.len() != lb.len() {
        return Err(invalid(
            OP,
            format!("axes {la:?} and {lb:?} differ in length"),
        ));
    }
    let xa = distinct_axes(OP, la, a.len(), a)?;
    let xb = distinct_axes(OP, lb, b.len(), b)?;
    same_lengths(a, b, xa, xb)
}

/// Checks that the paired axes of `a` and `b` have one length each.
fn same_lengths(
    a: &[usize],
    b: &[usize],
    xa: Vec<usize>,
    xb: Vec<usize>,
) -> Result<(Vec<usize>, Vec<usize>), OpError> {
    const OP: &str = "tensordot";
    for (&i, &j) in xa.iter().zip(&xb) {
        if a[i] != b[j] {
            return Err(invalid(
                OP,
                format!(
                    "axis {i} of shape {a:?} (length {}) and axis {j} of shape {b:?} (length {}) differ",
                    a[i], b[j]
                ),
            ));
        }
    }
    Ok((xa, xb))
}

fn tensordot_num<T: Num>(
    x: &ArrayD<T>,
    y: &ArrayD<T>,
    n: u32,
    lists: Option<(&[i64], &[i64])>,
    alloc: &dyn Alloc,
) -> Result<Array, OpError> {
    const OP: &str = "tensordot";
    let (xs, ys) = (x.shape(), y.shape());
    let (sa, sb) = dot_axes(xs, ys, n, lists)?;
    let free_a: Vec<usize> = (0..xs.len()).filter(|i| !sa.contains(i)).collect();
    let free_b: Vec<usize> = (0..ys.len()).filter(|i| !sb.contains(i)).collect();
    let len = |s: &[usize], axes: &[usize]| -> usize { axes.iter().map(|&i| s[i]).product() };
    let (m, k, nn) = (len(xs, &free_a), len(xs, &sa), len(ys, &free_b));
    let shape: Vec<usize> = (free_a.iter().map(|&i| xs[i]))
        .chain(free_b.iter().map(|&i| ys[i]))
        .collect();
    reserve(alloc, OP, &shape, T::DTYPE)?;
    let bad = |_| invalid(OP, "inconsistent operand shape");
    let pa: Vec<usize> = [&free_a[..], &sa].concat();
    let pb: Vec<usize> = [&sb[..], &free_b].concat();
    let xa = x.view().permuted_axes(IxDyn(&pa));
    let yb = y.view().permuted_axes(IxDyn(&pb));
    // An operand whose summed axes are not already in place is copied.
    for (v, s) in [(&xa, xs), (&yb, ys)] {
        if !v.is_standard_layout() {
            reserve(alloc, OP, s, T::DTYPE)?;
        }
    }
    let xa = xa.as_standard_layout();
    let yb = yb.as_standard_layout();
    let a2: ArrayView2<'_, T> = xa.view().into_shape_with_order((m, k)).map_err(bad)?;
    let b2: ArrayView2<'_, T> = yb.view().into_shape_with_order((k, nn)).map_err(bad)?;
    let mut out = ndarray::Array2::from_elem((m, nn), T::ZERO);
    if k > 0 {
        gemm(&a2, &b2, &mut out.view_mut());
    }
    let out = out.into_shape_with_order(IxDyn(&shape)).map_err(bad)?;
    Ok(T::wrap(out))
}

impl Array {
    /// NumPy's `tensordot`: sums products over the last `n` axes of `a`
    /// and the first `n` of `b`, or, with `lists`, over the axes of `a`
    /// paired with those of `b` (negative count from the end). The result
    /// has `a`'s remaining axes, then `b`'s. One GEMM.
    pub fn tensordot(
        a: &Array,
        b: &Array,
        n: u32,
        lists: Option<(&[i64], &[i64])>,
        alloc: &dyn Alloc,
    ) -> Result<Array, OpError> {
        const OP: &str = "tensordot";
        let (a, b) = promoted(OP, a, b, alloc)?;
        dispatch!(&*a, x => tensordot_num(x, same(OP, x, &b)?, n, lists, alloc),
            bool _b => Err(OpError::Unsupported { op: OP, dtype: DType::Bool }))
    }
}
