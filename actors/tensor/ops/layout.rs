//! Layout: reshape, transpose, concat.

use ndarray::{ArrayD, Axis, IxDyn, Slice};

use super::alloc::{reserve, Alloc};
use super::dtype::{dispatch, Array, Elem};
use super::elementwise::{convert, same, std_owned};
use super::error::{invalid, OpError};
use super::shape::{checked_len, from_vec, norm_axis};

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
        let to = (arrays.iter()).fold(first.dtype(), |d, a| d.promote(a.dtype()));
        let converted = (arrays.iter())
            .map(|a| convert(OP, a, to, alloc))
            .collect::<Result<Vec<_>, _>>()?;
        let arrays: Vec<&Array> = converted.iter().map(|a| &**a).collect();
        dispatch!(arrays[0], x => concat_typed(x, &arrays, axis, alloc))
    }
}
