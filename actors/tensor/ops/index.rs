//! Indexing: Python-style slices.

use ndarray::Slice;

use super::alloc::{reserve, Alloc};
use super::dtype::{dispatch, Array};
use super::elementwise::std_owned;
use super::error::{invalid, OpError};

/// Python-style slice of one axis: `start:stop:step`.
///
/// Negative `start`/`stop` count from the end, out-of-range values are
/// clamped, `None` means "from the beginning / to the end" in the direction
/// of `step`, which may be negative but not zero.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SliceSpec {
    /// First index taken (`None`: first in the direction of `step`).
    pub start: Option<i64>,
    /// Index at which to stop, exclusive (`None`: go to the end).
    pub stop: Option<i64>,
    /// Distance between taken indices; negative walks backwards.
    pub step: i64,
}

impl SliceSpec {
    /// `start:stop:step`.
    pub fn new(start: Option<i64>, stop: Option<i64>, step: i64) -> SliceSpec {
        SliceSpec { start, stop, step }
    }
}

impl Default for SliceSpec {
    /// The full range, `::1`.
    fn default() -> SliceSpec {
        SliceSpec::new(None, None, 1)
    }
}

/// Python slice normalisation: the ndarray slice and the resulting length.
pub(super) fn norm_slice(spec: &SliceSpec, len: usize) -> Result<(Slice, usize), String> {
    if spec.step == 0 {
        return Err("slice step must not be zero".into());
    }
    let n = len as i128;
    let step = i128::from(spec.step);
    let norm = |i: Option<i64>, default: i128, lo: i128, hi: i128| {
        i.map_or(default, |i| {
            let i = i128::from(i);
            (if i < 0 { i + n } else { i }).clamp(lo, hi)
        })
    };
    let (first, count) = if step > 0 {
        let start = norm(spec.start, 0, 0, n);
        let stop = norm(spec.stop, n, 0, n);
        (
            start,
            if stop > start {
                (stop - start + step - 1) / step
            } else {
                0
            },
        )
    } else {
        let start = norm(spec.start, n - 1, -1, n - 1);
        let stop = norm(spec.stop, -1, -1, n - 1);
        (
            start,
            if start > stop {
                (start - stop - step - 1) / -step
            } else {
                0
            },
        )
    };
    let to_isize = |v: i128| isize::try_from(v).map_err(|_| "slice is out of range".to_string());
    let slice = if count == 0 {
        Slice::new(0, Some(0), 1)
    } else {
        let last = first + (count - 1) * step;
        // A single element needs no stride; this also keeps huge steps away
        // from ndarray's stride arithmetic.
        let step = if count == 1 { step.signum() } else { step };
        if step > 0 {
            Slice::new(to_isize(first)?, Some(to_isize(last + 1)?), to_isize(step)?)
        } else {
            Slice::new(to_isize(last)?, Some(to_isize(first + 1)?), to_isize(step)?)
        }
    };
    Ok((slice, usize::try_from(count).map_err(|e| e.to_string())?))
}

impl Array {
    /// Python-style slicing, one [`SliceSpec`] per leading axis (missing
    /// trailing specs take the whole axis).
    pub fn slice(a: &Array, specs: &[SliceSpec], alloc: &dyn Alloc) -> Result<Array, OpError> {
        const OP: &str = "slice";
        let shape = a.shape();
        if specs.len() > shape.len() {
            return Err(invalid(
                OP,
                format!(
                    "{} slices given for an array with {} dimensions",
                    specs.len(),
                    shape.len()
                ),
            ));
        }
        let mut slices = Vec::with_capacity(shape.len());
        let mut out_shape = Vec::with_capacity(shape.len());
        for (i, &len) in shape.iter().enumerate() {
            let (s, n) = match specs.get(i) {
                Some(spec) => norm_slice(spec, len).map_err(|r| invalid(OP, r))?,
                None => (Slice::from(..), len),
            };
            slices.push(s);
            out_shape.push(n);
        }
        reserve(alloc, OP, &out_shape, a.dtype())?;
        let pick = |d: ndarray::AxisDescription| {
            slices
                .get(d.axis.index())
                .copied()
                .unwrap_or(Slice::from(..))
        };
        Ok(dispatch!(a, x => std_owned(x.slice_each_axis(pick))))
    }
}
