//! Layout: reshape, transpose, concat, stack, split, squeeze,
//! expand_dims, broadcast_to, tile, flip.

use ndarray::{ArrayD, Axis, IxDyn, Slice};

use super::alloc::{reserve, Alloc};
use super::dtype::{dispatch, Array, Elem};
use super::elementwise::{convert, same, std_owned};
use super::error::{invalid, OpError};
use super::shape::{broadcast_view, checked_len, dims_from_u64, from_vec, norm_axis};

/// `arrays` converted to the dtype they promote to together
/// (`np.result_type`), each borrowed if it has it already.
pub(super) fn promote_all<'a>(
    op: &'static str,
    first: &Array,
    arrays: &[&'a Array],
    alloc: &dyn Alloc,
) -> Result<Vec<std::borrow::Cow<'a, Array>>, OpError> {
    let to = (arrays.iter()).fold(first.dtype(), |d, a| d.promote(a.dtype()));
    (arrays.iter()).map(|a| convert(op, a, to, alloc)).collect()
}

pub(super) fn concat_typed<T: Elem>(
    first: &ArrayD<T>,
    arrays: &[&Array],
    axis: i64,
    alloc: &dyn Alloc,
) -> Result<Array, OpError> {
    const OP: &str = "concat";
    let parts = arrays
        .iter()
        .map(|a| same(OP, first, a))
        .collect::<Result<Vec<_>, _>>()?;
    let ndim = first.ndim();
    if ndim == 0 {
        return Err(invalid(
            OP,
            "zero-dimensional arrays cannot be concatenated",
        ));
    }
    let ax = norm_axis(OP, axis, ndim)?;
    let mut total: usize = 0;
    for p in &parts {
        let fits = p.ndim() == ndim
            && (p.shape().iter().zip(first.shape()))
                .enumerate()
                .all(|(i, (a, b))| i == ax || a == b);
        if !fits {
            return Err(OpError::ShapeMismatch {
                op: OP,
                lhs: first.shape().to_vec(),
                rhs: p.shape().to_vec(),
            });
        }
        total = total
            .checked_add(p.len_of(Axis(ax)))
            .ok_or_else(|| invalid(OP, "the concatenated axis is too long"))?;
    }
    let shape: Vec<usize> = (first.shape().iter().enumerate())
        .map(|(i, &d)| if i == ax { total } else { d })
        .collect();
    reserve(alloc, OP, &shape, T::DTYPE)?;
    let mut out = ArrayD::from_elem(IxDyn(&shape), T::ZERO);
    let mut offset = 0;
    for p in parts {
        let len = p.len_of(Axis(ax));
        out.slice_axis_mut(Axis(ax), Slice::from(offset..offset + len))
            .assign(p);
        offset += len;
    }
    Ok(T::wrap(out))
}

impl Array {
    /// The same elements, in row-major order, under a new shape. One
    /// dimension may be -1 and is then inferred.
    pub fn reshape(a: &Array, shape: &[i64], alloc: &dyn Alloc) -> Result<Array, OpError> {
        const OP: &str = "reshape";
        let len = a.len();
        let mismatch = || {
            invalid(
                OP,
                format!(
                    "cannot reshape an array of shape {:?} into shape {shape:?}",
                    a.shape()
                ),
            )
        };
        let mut unknown = None;
        let mut dims = Vec::with_capacity(shape.len());
        for (i, &d) in shape.iter().enumerate() {
            if d == -1 {
                if unknown.replace(i).is_some() {
                    return Err(invalid(OP, "only one dimension can be -1"));
                }
                dims.push(1);
            } else {
                dims.push(usize::try_from(d).map_err(|_| {
                    invalid(OP, format!("invalid dimension {d} in shape {shape:?}"))
                })?);
            }
        }
        let known = checked_len(&dims).ok_or_else(mismatch)?;
        match unknown {
            Some(i) => {
                if known == 0 || len % known != 0 {
                    return Err(mismatch());
                }
                if let Some(d) = dims.get_mut(i) {
                    *d = len / known;
                }
            }
            None if known != len => {
                return Err(OpError::ShapeMismatch {
                    op: OP,
                    lhs: a.shape().to_vec(),
                    rhs: dims,
                })
            }
            None => {}
        }
        reserve(alloc, OP, &dims, a.dtype())?;
        dispatch!(a, x => {
            let data = x.as_slice().map_or_else(|| x.iter().copied().collect(), <[_]>::to_vec);
            Ok(Elem::wrap(from_vec(&dims, data)?))
        })
    }

    /// Permutes the axes: `perm[i]` is the input axis that becomes output
    /// axis `i`; `None` reverses them. The result is copied into standard
    /// layout.
    pub fn transpose(
        a: &Array,
        perm: Option<&[usize]>,
        alloc: &dyn Alloc,
    ) -> Result<Array, OpError> {
        const OP: &str = "transpose";
        let shape = a.shape();
        let ndim = shape.len();
        let perm: Vec<usize> = match perm {
            None => (0..ndim).rev().collect(),
            Some(p) => {
                let mut seen = vec![false; ndim];
                let valid = p.len() == ndim
                    && p.iter().all(|&i| match seen.get_mut(i) {
                        Some(s) if !*s => {
                            *s = true;
                            true
                        }
                        _ => false,
                    });
                if !valid {
                    return Err(invalid(
                        OP,
                        format!("axes {p:?} are not a permutation of 0..{ndim}"),
                    ));
                }
                p.to_vec()
            }
        };
        let out_shape: Vec<usize> = perm
            .iter()
            .map(|&i| shape.get(i).copied().unwrap_or(0))
            .collect();
        reserve(alloc, OP, &out_shape, a.dtype())?;
        Ok(dispatch!(a, x => std_owned(x.view().permuted_axes(IxDyn(&perm)))))
    }

    /// Joins arrays along an existing axis. All must share the rank (at
    /// least 1) and every dimension except `axis`; their dtypes promote to
    /// a common one ([`DType::promote`](super::DType::promote)), as
    /// `np.concatenate` does.
    pub fn concat(arrays: &[&Array], axis: i64, alloc: &dyn Alloc) -> Result<Array, OpError> {
        const OP: &str = "concat";
        let Some(first) = arrays.first() else {
            return Err(invalid(OP, "need at least one array"));
        };
        let converted = promote_all(OP, first, arrays, alloc)?;
        let arrays: Vec<&Array> = converted.iter().map(|a| &**a).collect();
        dispatch!(arrays[0], x => concat_typed(x, &arrays, axis, alloc))
    }
}

/// Normalises a list of distinct axes of an array with `ndim` dimensions
/// (`shape` for the message).
pub(super) fn distinct_axes(
    op: &'static str,
    axes: &[i64],
    ndim: usize,
    shape: &[usize],
) -> Result<Vec<usize>, OpError> {
    let mut seen = vec![false; ndim];
    let mut out = Vec::with_capacity(axes.len());
    for &axis in axes {
        let ax = norm_axis(op, axis, ndim).map_err(|_| {
            invalid(
                op,
                format!("axis {axis} is out of range for shape {shape:?}"),
            )
        })?;
        if std::mem::replace(&mut seen[ax], true) {
            return Err(invalid(op, format!("axis {axis} is repeated in {axes:?}")));
        }
        out.push(ax);
    }
    Ok(out)
}

fn stack_typed<T: Elem>(
    first: &ArrayD<T>,
    arrays: &[&Array],
    axis: i64,
    alloc: &dyn Alloc,
) -> Result<Array, OpError> {
    const OP: &str = "stack";
    let parts = arrays
        .iter()
        .map(|a| same(OP, first, a))
        .collect::<Result<Vec<_>, _>>()?;
    if let Some(p) = parts.iter().find(|p| p.shape() != first.shape()) {
        return Err(invalid(
            OP,
            format!(
                "all arrays must have one shape, got {:?} and {:?}",
                first.shape(),
                p.shape()
            ),
        ));
    }
    let ax = norm_axis(OP, axis, first.ndim() + 1)?;
    let mut shape = first.shape().to_vec();
    shape.insert(ax, parts.len());
    reserve(alloc, OP, &shape, T::DTYPE)?;
    let mut out = ArrayD::from_elem(IxDyn(&shape), T::ZERO);
    for (i, p) in parts.iter().enumerate() {
        out.index_axis_mut(Axis(ax), i).assign(*p);
    }
    Ok(T::wrap(out))
}

/// The most parts one split makes.
pub const MAX_SPLIT_PARTS: usize = 1 << 16;

/// Where each part of a split starts and ends along an axis of `len`.
fn split_bounds(
    op: &'static str,
    shape: &[usize],
    ax: usize,
    sections: u64,
    indices: &[i64],
) -> Result<Vec<(usize, usize)>, OpError> {
    let len = shape[ax];
    let parts = if sections > 0 {
        sections
    } else {
        indices.len() as u64 + 1
    };
    if parts > MAX_SPLIT_PARTS as u64 || (sections > 1 && sections > len as u64) {
        return Err(invalid(
            op,
            format!(
                "{parts} parts are more than axis {ax} of shape {shape:?} can give \
                 (at most one per element, and {MAX_SPLIT_PARTS} in all)"
            ),
        ));
    }
    if sections > 0 {
        let n = usize::try_from(sections).unwrap_or(usize::MAX);
        if len % n != 0 {
            return Err(invalid(
                op,
                format!("{n} sections do not divide axis {ax} of length {len} (shape {shape:?})"),
            ));
        }
        let part = len / n;
        return Ok((0..n).map(|i| (i * part, (i + 1) * part)).collect());
    }
    // NumPy: part k is a[i_(k-1):i_k] with i_(-1) = 0 and a final stop at
    // the end, each bound read as a Python slice bound.
    let clamp = |i: i64| -> usize {
        let n = len as i128;
        let i = i128::from(i);
        (if i < 0 { i + n } else { i }).clamp(0, n) as usize
    };
    let mut bounds = Vec::with_capacity(indices.len() + 1);
    let mut start = 0;
    for &i in indices {
        let stop = clamp(i);
        bounds.push((start, stop.max(start)));
        start = stop;
    }
    bounds.push((start.min(len), len));
    Ok(bounds)
}

impl Array {
    /// Joins arrays of one shape and dtype along a new axis `axis`
    /// (`-ndim-1..=ndim`), NumPy's `stack`.
    pub fn stack(arrays: &[&Array], axis: i64, alloc: &dyn Alloc) -> Result<Array, OpError> {
        let Some(first) = arrays.first() else {
            return Err(invalid("stack", "need at least one array"));
        };
        let converted = promote_all("stack", first, arrays, alloc)?;
        let arrays: Vec<&Array> = converted.iter().map(|a| &**a).collect();
        dispatch!(arrays[0], x => stack_typed(x, &arrays, axis, alloc))
    }

    /// NumPy's `split` along `axis`: into `sections` equal parts (which
    /// must divide the axis), or, when `sections` is 0, at `indices`
    /// (Python slice bounds: negative counts from the end, out of range
    /// clamps, a bound below the previous one gives an empty part). At most
    /// [`MAX_SPLIT_PARTS`] parts, and no more equal sections than the axis
    /// has elements (NumPy splits an empty axis into any number).
    pub fn split(
        a: &Array,
        axis: i64,
        sections: u64,
        indices: &[i64],
        alloc: &dyn Alloc,
    ) -> Result<Vec<Array>, OpError> {
        const OP: &str = "split";
        let shape = a.shape().to_vec();
        if shape.is_empty() {
            return Err(invalid(OP, "a zero-dimensional array cannot be split"));
        }
        let ax = norm_axis(OP, axis, shape.len())?;
        let bounds = split_bounds(OP, &shape, ax, sections, indices)?;
        let mut parts = Vec::with_capacity(bounds.len());
        for (start, stop) in bounds {
            let mut part = shape.clone();
            part[ax] = stop - start;
            reserve(alloc, OP, &part, a.dtype())?;
            parts.push(dispatch!(a, x => std_owned(
                x.slice_axis(Axis(ax), Slice::from(start..stop))
            )));
        }
        Ok(parts)
    }

    /// Removes length-1 axes: those of `axes`, or every one if `None`
    /// (NumPy's `squeeze`). Naming an axis whose length is not 1 fails.
    pub fn squeeze(a: &Array, axes: Option<&[i64]>, alloc: &dyn Alloc) -> Result<Array, OpError> {
        const OP: &str = "squeeze";
        let shape = a.shape();
        let drop: Vec<usize> = match axes {
            None => (0..shape.len()).filter(|&i| shape[i] == 1).collect(),
            Some(axes) => {
                let axes = distinct_axes(OP, axes, shape.len(), shape)?;
                if let Some(&bad) = axes.iter().find(|&&i| shape[i] != 1) {
                    return Err(invalid(
                        OP,
                        format!(
                            "cannot remove axis {bad} of length {} from shape {shape:?}",
                            shape[bad]
                        ),
                    ));
                }
                axes
            }
        };
        let dims: Vec<i64> = (0..shape.len())
            .filter(|i| !drop.contains(i))
            .map(|i| shape[i] as i64)
            .collect();
        relabel(OP, a, &dims, alloc)
    }

    /// Inserts length-1 axes at `axes`, positions in the result (NumPy's
    /// `expand_dims`; negative counts from the result's end).
    pub fn expand_dims(a: &Array, axes: &[i64], alloc: &dyn Alloc) -> Result<Array, OpError> {
        const OP: &str = "expandDims";
        let shape = a.shape();
        let ndim = shape.len() + axes.len();
        let new = distinct_axes(OP, axes, ndim, shape)?;
        let mut rest = shape.iter();
        let dims: Vec<i64> = (0..ndim)
            .map(|i| {
                if new.contains(&i) {
                    1
                } else {
                    rest.next().map_or(1, |&d| d as i64)
                }
            })
            .collect();
        relabel(OP, a, &dims, alloc)
    }

    /// A copy of `a` broadcast to `shape` (NumPy's `broadcast_to`).
    pub fn broadcast_to(a: &Array, shape: &[u64], alloc: &dyn Alloc) -> Result<Array, OpError> {
        const OP: &str = "broadcastTo";
        let dims = dims_from_u64(shape)
            .map_err(|_| invalid(OP, format!("shape {shape:?} is too large")))?;
        let fits = a.ndim() <= dims.len()
            && (a.shape().iter().rev().zip(dims.iter().rev())).all(|(&s, &d)| s == d || s == 1);
        if !fits {
            return Err(invalid(
                OP,
                format!("cannot broadcast shape {:?} to shape {dims:?}", a.shape()),
            ));
        }
        reserve(alloc, OP, &dims, a.dtype())?;
        dispatch!(a, x => {
            let v = broadcast_view(OP, x, &dims)?;
            Ok(std_owned(v))
        })
    }

    /// NumPy's `tile`: `a` repeated `reps[i]` times along each axis; the
    /// shorter of `reps` and the shape is padded with leading ones.
    pub fn tile(a: &Array, reps: &[u64], alloc: &dyn Alloc) -> Result<Array, OpError> {
        const OP: &str = "tile";
        let reps =
            dims_from_u64(reps).map_err(|_| invalid(OP, format!("reps {reps:?} are too large")))?;
        let n = a.ndim().max(reps.len());
        let pad = |s: &[usize]| -> Vec<usize> {
            let mut v = vec![1; n - s.len()];
            v.extend_from_slice(s);
            v
        };
        let (shape, reps) = (pad(a.shape()), pad(&reps));
        let out: Vec<usize> = shape
            .iter()
            .zip(&reps)
            .map(|(&d, &r)| d.checked_mul(r))
            .collect::<Option<_>>()
            .filter(|o: &Vec<usize>| checked_len(o).is_some())
            .ok_or_else(|| {
                invalid(
                    OP,
                    format!("tiling shape {:?} by {reps:?} is too large", a.shape()),
                )
            })?;
        reserve(alloc, OP, &out, a.dtype())?;
        // [r0, d0, r1, d1, ...]: a broadcast view of [1, d0, 1, d1, ...],
        // copied once and read as [r0 * d0, r1 * d1, ...].
        let inter: Vec<usize> = reps
            .iter()
            .zip(&shape)
            .flat_map(|(&r, &d)| [r, d])
            .collect();
        let ones: Vec<usize> = shape.iter().flat_map(|&d| [1, d]).collect();
        dispatch!(a, x => {
            let v = x
                .view()
                .into_shape_with_order(IxDyn(&ones))
                .map_err(|_| invalid(OP, "inconsistent shape"))?;
            let v = v
                .broadcast(IxDyn(&inter))
                .ok_or_else(|| invalid(OP, "inconsistent shape"))?;
            let data: Vec<_> = v.iter().copied().collect();
            Ok(Elem::wrap(from_vec(&out, data)?))
        })
    }

    /// Reverses the order of elements along `axes`, or along every axis if
    /// `None` (NumPy's `flip`).
    pub fn flip(a: &Array, axes: Option<&[i64]>, alloc: &dyn Alloc) -> Result<Array, OpError> {
        const OP: &str = "flip";
        let shape = a.shape();
        let axes = match axes {
            None => (0..shape.len()).collect(),
            Some(axes) => distinct_axes(OP, axes, shape.len(), shape)?,
        };
        reserve(alloc, OP, shape, a.dtype())?;
        dispatch!(a, x => {
            let mut v = x.view();
            for &ax in &axes {
                v.invert_axis(Axis(ax));
            }
            Ok(std_owned(v))
        })
    }
}

/// `a`'s elements under `dims` (same count, as squeeze and expand_dims
/// make), reporting failures as `op`'s.
fn relabel(op: &'static str, a: &Array, dims: &[i64], alloc: &dyn Alloc) -> Result<Array, OpError> {
    let dims: Vec<usize> = dims.iter().map(|&d| d as usize).collect();
    reserve(alloc, op, &dims, a.dtype())?;
    dispatch!(a, x => {
        let data = x.as_slice().map_or_else(|| x.iter().copied().collect(), <[_]>::to_vec);
        Ok(Elem::wrap(from_vec(&dims, data)?))
    })
}
