//! `einsum`: subscripts parsed into labelled axes, operands contracted two
//! at a time through the batched GEMM of [`super::contract`].

use std::collections::{BTreeMap, BTreeSet};

use ndarray::{ArrayD, ArrayViewD, Axis, CowArray, IxDyn};

use super::alloc::{reserve, Alloc};
use super::contract::gemm;
use super::dtype::{dispatch, Array, DType, Num};
use super::elementwise::same;
use super::error::{invalid, OpError};
use super::layout::promote_all;

const OP: &str = "einsum";

/// An axis label: a letter's code, or `ELLIPSIS + i` for the i-th axis of
/// the broadcast ("...") dimensions.
type Label = u32;
const ELLIPSIS: Label = 1000;

/// One operand's subscripts: letters, and where "..." stands (if it does).
struct Term {
    letters: Vec<Label>,
    ellipsis: Option<usize>,
}

fn parse_term(term: &str, all: &str) -> Result<Term, OpError> {
    let mut letters = Vec::new();
    let mut ellipsis = None;
    let mut rest = term;
    while let Some(c) = rest.chars().next() {
        if let Some(after) = rest.strip_prefix("...") {
            if ellipsis.replace(letters.len()).is_some() {
                return Err(invalid(
                    OP,
                    format!("\"...\" appears twice in one term of subscripts {all:?}"),
                ));
            }
            rest = after;
            continue;
        }
        if !c.is_ascii_alphabetic() {
            return Err(invalid(
                OP,
                format!("invalid character {c:?} in subscripts {all:?}"),
            ));
        }
        letters.push(c as Label);
        rest = &rest[1..];
    }
    Ok(Term { letters, ellipsis })
}

/// The subscripts, checked against the operands' shapes: each operand's
/// labels (one per axis) and the output's.
struct Plan {
    inputs: Vec<Vec<Label>>,
    output: Vec<Label>,
    sizes: BTreeMap<Label, usize>,
}

fn label_name(l: Label) -> String {
    if l >= ELLIPSIS {
        format!("... axis {}", l - ELLIPSIS)
    } else {
        format!("'{}'", char::from_u32(l).unwrap_or('?'))
    }
}

fn plan(subscripts: &str, shapes: &[&[usize]]) -> Result<Plan, OpError> {
    let s: String = subscripts.chars().filter(|c| !c.is_whitespace()).collect();
    let (lhs, rhs) = match s.split_once("->") {
        Some((l, r)) => (l, Some(r)),
        None => (&s[..], None),
    };
    if rhs.is_some_and(|r| r.contains("->")) {
        return Err(invalid(
            OP,
            format!("\"->\" appears twice in subscripts {subscripts:?}"),
        ));
    }
    let terms = lhs
        .split(',')
        .map(|t| parse_term(t, subscripts))
        .collect::<Result<Vec<_>, _>>()?;
    if terms.len() != shapes.len() {
        return Err(invalid(
            OP,
            format!(
                "subscripts {subscripts:?} name {} operands but {} were given",
                terms.len(),
                shapes.len()
            ),
        ));
    }
    // Each operand's labels, the "..." axes aligned to the right.
    let mut inputs = Vec::with_capacity(terms.len());
    let mut ell_ndim = 0;
    for (n, (t, shape)) in terms.iter().zip(shapes).enumerate() {
        let wrong = || {
            invalid(
                OP,
                format!(
                    "operand {n} has shape {shape:?}, which the subscripts {subscripts:?} \
                     do not fit ({} letters{})",
                    t.letters.len(),
                    if t.ellipsis.is_some() {
                        " and \"...\""
                    } else {
                        ""
                    }
                ),
            )
        };
        let extra = match t.ellipsis {
            Some(_) => shape.len().checked_sub(t.letters.len()).ok_or_else(wrong)?,
            None if shape.len() == t.letters.len() => 0,
            None => return Err(wrong()),
        };
        ell_ndim = ell_ndim.max(extra);
        inputs.push((t, extra));
    }
    let inputs: Vec<Vec<Label>> = inputs
        .into_iter()
        .map(|(t, extra)| {
            let at = t.ellipsis.unwrap_or(t.letters.len());
            let ell = (0..extra).map(|j| ELLIPSIS + (ell_ndim - extra + j) as Label);
            t.letters[..at]
                .iter()
                .copied()
                .chain(ell)
                .chain(t.letters[at..].iter().copied())
                .collect()
        })
        .collect();
    // Lengths: one per label; a length of 1 broadcasts, as in NumPy.
    let mut sizes: BTreeMap<Label, (usize, usize)> = BTreeMap::new();
    for (n, (labels, shape)) in inputs.iter().zip(shapes).enumerate() {
        for (&l, &d) in labels.iter().zip(shape.iter()) {
            match sizes.get(&l).copied() {
                None => {
                    sizes.insert(l, (d, n));
                }
                Some((have, _)) if have == d || d == 1 => {}
                Some((1, _)) => {
                    sizes.insert(l, (d, n));
                }
                Some((have, m)) if m == n => {
                    return Err(invalid(
                        OP,
                        format!(
                            "index {} is repeated over axes of lengths {have} and {d} in operand \
                             {n} (shape {shape:?})",
                            label_name(l)
                        ),
                    ))
                }
                Some((have, m)) => {
                    return Err(invalid(
                        OP,
                        format!(
                            "index {} has length {have} in operand {m} (shape {:?}) but {d} in \
                             operand {n} (shape {shape:?})",
                            label_name(l),
                            shapes[m]
                        ),
                    ))
                }
            }
        }
    }
    let ell: Vec<Label> = (0..ell_ndim).map(|j| ELLIPSIS + j as Label).collect();
    let output = match rhs {
        None => {
            // Implicit: the "..." axes, then the letters used once, in
            // the order of their codes (upper case first), as NumPy.
            let mut count: BTreeMap<Label, usize> = BTreeMap::new();
            for l in inputs.iter().flatten().filter(|&&l| l < ELLIPSIS) {
                *count.entry(*l).or_default() += 1;
            }
            let once = count.into_iter().filter(|&(_, c)| c == 1).map(|(l, _)| l);
            ell.iter().copied().chain(once).collect()
        }
        Some(r) => {
            let t = parse_term(r, subscripts)?;
            let at = t.ellipsis.unwrap_or(t.letters.len());
            if t.ellipsis.is_none() && ell_ndim > 0 {
                // NumPy sums the broadcast axes away only if they are
                // named; without "..." in the output it refuses.
                return Err(invalid(
                    OP,
                    format!("the inputs of subscripts {subscripts:?} use \"...\" but the output does not"),
                ));
            }
            let out: Vec<Label> = t.letters[..at]
                .iter()
                .copied()
                .chain(ell.iter().copied())
                .chain(t.letters[at..].iter().copied())
                .collect();
            let mut seen = BTreeSet::new();
            for &l in &t.letters {
                if !seen.insert(l) {
                    return Err(invalid(
                        OP,
                        format!(
                            "output index {} appears twice in subscripts {subscripts:?}",
                            label_name(l)
                        ),
                    ));
                }
                if !sizes.contains_key(&l) {
                    return Err(invalid(
                        OP,
                        format!(
                            "output index {} does not appear in the inputs of subscripts {subscripts:?}",
                            label_name(l)
                        ),
                    ));
                }
            }
            out
        }
    };
    Ok(Plan {
        inputs,
        output,
        sizes: sizes.into_iter().map(|(l, (d, _))| (l, d)).collect(),
    })
}

/// An intermediate operand: an array (borrowed or owned) and one distinct
/// label per axis.
struct Operand<'a, T> {
    array: CowArray<'a, T, IxDyn>,
    labels: Vec<Label>,
}

/// The diagonal over repeated labels ("ii" → "i"): a copy with each label
/// once, in order of first appearance.
fn diagonal<'a, T: Num>(
    x: ArrayViewD<'a, T>,
    labels: &[Label],
    alloc: &dyn Alloc,
) -> Result<Operand<'a, T>, OpError> {
    let mut unique: Vec<Label> = Vec::new();
    for &l in labels {
        if !unique.contains(&l) {
            unique.push(l);
        }
    }
    if unique.len() == labels.len() {
        return Ok(Operand {
            array: x.into(),
            labels: unique,
        });
    }
    let mut dims = Vec::with_capacity(unique.len());
    for &u in &unique {
        let lens: Vec<usize> = (labels.iter().zip(x.shape()))
            .filter(|(&l, _)| l == u)
            .map(|(_, &d)| d)
            .collect();
        if lens.iter().any(|&d| d != lens[0]) {
            return Err(invalid(
                OP,
                format!(
                    "index {} is repeated over axes of lengths {lens:?} (shape {:?})",
                    label_name(u),
                    x.shape()
                ),
            ));
        }
        dims.push(lens[0]);
    }
    reserve(alloc, OP, &dims, T::DTYPE)?;
    let pos: Vec<usize> = labels
        .iter()
        .map(|l| unique.iter().position(|u| u == l).unwrap_or(0))
        .collect();
    let mut at = vec![0; labels.len()];
    let out = ArrayD::from_shape_fn(IxDyn(&dims), |idx| {
        for (a, &p) in at.iter_mut().zip(&pos) {
            *a = idx[p];
        }
        x[IxDyn(&at)]
    });
    Ok(Operand {
        array: out.into(),
        labels: unique,
    })
}

/// Sums `op` over every label not in `keep`.
fn sum_out<'a, T: Num>(
    op: Operand<'a, T>,
    keep: &BTreeSet<Label>,
    alloc: &dyn Alloc,
) -> Result<Operand<'a, T>, OpError> {
    if op.labels.iter().all(|l| keep.contains(l)) {
        return Ok(op);
    }
    let Operand { array, labels } = op;
    let kept: Vec<Label> = labels
        .iter()
        .copied()
        .filter(|l| keep.contains(l))
        .collect();
    let dims: Vec<usize> = (labels.iter().zip(array.shape()))
        .filter(|(l, _)| keep.contains(l))
        .map(|(_, &d)| d)
        .collect();
    // Folded from the highest axis down, each fold reserved: the first
    // reads the operand in place.
    let mut out: Option<ArrayD<T>> = None;
    let mut shape = array.shape().to_vec();
    for ax in (0..labels.len()).rev() {
        if keep.contains(&labels[ax]) {
            continue;
        }
        shape.remove(ax);
        reserve(alloc, OP, &shape, T::DTYPE)?;
        let add = |&s: &T, &v: &T| T::add(s, v);
        out = Some(match &out {
            Some(o) => o.fold_axis(Axis(ax), T::ZERO, add),
            None => array.fold_axis(Axis(ax), T::ZERO, add),
        });
    }
    let out = out.unwrap_or_else(|| array.into_owned());
    debug_assert_eq!(out.shape(), &dims[..]);
    Ok(Operand {
        array: out.into(),
        labels: kept,
    })
}

/// `x`'s axes in the order of `labels` (each one of `x`'s), broadcast to
/// the plan's lengths and copied into standard layout if they are not
/// already, then read as `[rows.., cols..]` → a `dims`-shaped array.
fn arrange<'a, T: Num>(
    x: &'a Operand<'_, T>,
    order: &[Label],
    sizes: &BTreeMap<Label, usize>,
    dims: &[usize],
    alloc: &dyn Alloc,
) -> Result<CowArray<'a, T, IxDyn>, OpError> {
    let perm: Vec<usize> = order
        .iter()
        .map(|l| x.labels.iter().position(|m| m == l).unwrap_or(0))
        .collect();
    let full: Vec<usize> = order
        .iter()
        .map(|l| sizes.get(l).copied().unwrap_or(1))
        .collect();
    let v = x.array.view().permuted_axes(IxDyn(&perm));
    let bad = |_| invalid(OP, "inconsistent operand shape");
    if v.shape() == &full[..] && v.is_standard_layout() {
        return v
            .into_shape_with_order(IxDyn(dims))
            .map(CowArray::from)
            .map_err(bad);
    }
    reserve(alloc, OP, &full, T::DTYPE)?;
    let owned = v
        .broadcast(IxDyn(&full))
        .ok_or_else(|| invalid(OP, "inconsistent operand shape"))?
        .as_standard_layout()
        .into_owned();
    owned
        .into_shape_with_order(IxDyn(dims))
        .map(CowArray::from)
        .map_err(bad)
}

/// Contracts two operands over the labels they share and `keep` lacks,
/// keeping shared labels in `keep` as batch axes: one batched GEMM.
fn pair<'r, T: Num>(
    a: Operand<'_, T>,
    b: Operand<'_, T>,
    keep: &BTreeSet<Label>,
    sizes: &BTreeMap<Label, usize>,
    alloc: &dyn Alloc,
) -> Result<Operand<'r, T>, OpError> {
    let in_b = |l: &Label| b.labels.contains(l);
    let batch: Vec<Label> = a
        .labels
        .iter()
        .copied()
        .filter(|l| in_b(l) && keep.contains(l))
        .collect();
    let summed: Vec<Label> = a
        .labels
        .iter()
        .copied()
        .filter(|l| in_b(l) && !keep.contains(l))
        .collect();
    let a_only: Vec<Label> = a.labels.iter().copied().filter(|l| !in_b(l)).collect();
    let b_only: Vec<Label> = b
        .labels
        .iter()
        .copied()
        .filter(|l| !a.labels.contains(l))
        .collect();
    let len = |ls: &[Label]| -> usize {
        ls.iter()
            .map(|l| sizes.get(l).copied().unwrap_or(1))
            .product()
    };
    let (nb, m, k, n) = (len(&batch), len(&a_only), len(&summed), len(&b_only));
    let a_order: Vec<Label> = [&batch[..], &a_only, &summed].concat();
    let b_order: Vec<Label> = [&batch[..], &summed, &b_only].concat();
    let av = arrange(&a, &a_order, sizes, &[nb, m, k], alloc)?;
    let bv = arrange(&b, &b_order, sizes, &[nb, k, n], alloc)?;
    let labels: Vec<Label> = [&batch[..], &a_only, &b_only].concat();
    let dims: Vec<usize> = labels
        .iter()
        .map(|l| sizes.get(l).copied().unwrap_or(1))
        .collect();
    reserve(alloc, OP, &dims, T::DTYPE)?;
    let mut out = ArrayD::from_elem(IxDyn(&[nb, m, n]), T::ZERO);
    if k > 0 {
        for i in 0..nb {
            let bad = |_| invalid(OP, "inconsistent operand shape");
            let x = av
                .index_axis(Axis(0), i)
                .into_dimensionality()
                .map_err(bad)?;
            let y = bv
                .index_axis(Axis(0), i)
                .into_dimensionality()
                .map_err(bad)?;
            let mut c = out
                .index_axis_mut(Axis(0), i)
                .into_dimensionality()
                .map_err(bad)?;
            gemm(&x, &y, &mut c);
        }
    }
    let out = out
        .into_shape_with_order(IxDyn(&dims))
        .map_err(|_| invalid(OP, "inconsistent operand shape"))?;
    Ok(Operand {
        array: out.into(),
        labels,
    })
}

fn einsum_num<T: Num>(
    subscripts: &str,
    xs: &[&ArrayD<T>],
    alloc: &dyn Alloc,
) -> Result<Array, OpError> {
    let shapes: Vec<&[usize]> = xs.iter().map(|x| x.shape()).collect();
    let p = plan(subscripts, &shapes)?;
    let out: BTreeSet<Label> = p.output.iter().copied().collect();
    // Labels wanted after operand i: the output's and those of later ones.
    let later = |i: usize| -> BTreeSet<Label> {
        let mut k = out.clone();
        k.extend(p.inputs[i + 1..].iter().flatten().copied());
        k
    };
    let mut acc: Option<Operand<'_, T>> = None;
    for (i, (x, labels)) in xs.iter().zip(&p.inputs).enumerate() {
        let op = diagonal(x.view(), labels, alloc)?;
        // What no other operand and not the output names is summed first.
        let mut keep = later(i);
        if let Some(a) = &acc {
            keep.extend(a.labels.iter().copied());
        }
        let op = sum_out(op, &keep, alloc)?;
        acc = Some(match acc {
            None => op,
            Some(a) => pair(a, op, &later(i), &p.sizes, alloc)?,
        });
    }
    let Some(last) = acc else {
        return Err(invalid(OP, "need at least one operand"));
    };
    let last = sum_out(last, &out, alloc)?;
    let dims: Vec<usize> = p
        .output
        .iter()
        .map(|l| p.sizes.get(l).copied().unwrap_or(1))
        .collect();
    // A product already in the output's order is the result as it is
    // (a matmul's, say); anything else is arranged (and copied) once.
    if last.labels == p.output && last.array.shape() == &dims[..] && !last.array.is_view() {
        return Ok(T::wrap(last.array.into_owned()));
    }
    let result = arrange(&last, &p.output, &p.sizes, &dims, alloc)?;
    if result.is_view() {
        reserve(alloc, OP, &dims, T::DTYPE)?;
    }
    Ok(T::wrap(result.into_owned()))
}

impl Array {
    /// NumPy's `einsum`: explicit (`"ij,jk->ik"`) or implicit (`"ij,jk"`:
    /// the letters used once, in order, upper case first) subscripts over
    /// ASCII letters and `...` (broadcast axes, which an explicit output
    /// must name). Repeated letters in one operand take its diagonal
    /// (`"ii->"` is the trace); letters missing from the output are summed.
    /// Operands are contracted left to right, two at a time, each pair as
    /// one batched GEMM. Operands of different dtypes promote as
    /// `np.result_type` first.
    pub fn einsum(
        subscripts: &str,
        operands: &[&Array],
        alloc: &dyn Alloc,
    ) -> Result<Array, OpError> {
        let Some(first) = operands.first() else {
            return Err(invalid(OP, "need at least one operand"));
        };
        let converted = promote_all(OP, first, operands, alloc)?;
        let operands: Vec<&Array> = converted.iter().map(|a| &**a).collect();
        macro_rules! num {
            ($x:expr) => {{
                let xs = operands
                    .iter()
                    .map(|a| same(OP, $x, a))
                    .collect::<Result<Vec<_>, _>>()?;
                einsum_num(subscripts, &xs, alloc)
            }};
        }
        dispatch!(operands[0], x => num!(x), bool _b => Err(OpError::Unsupported {
            op: OP,
            dtype: DType::Bool,
        }))
    }
}
