//! The wire's byte layout of an array: little-endian, row-major.

use ndarray::ArrayD;

use super::alloc::{reserve, Alloc};
use super::dtype::{dispatch, with_dtype, Array, DType, Elem};
use super::error::{invalid, OpError};
use super::shape::{checked_bytes, dims_from_u64, from_vec};

pub(super) fn write_le<T: Elem>(x: &ArrayD<T>, out: &mut [u8]) {
    let chunks = out.chunks_exact_mut(std::mem::size_of::<T>());
    match x.as_slice() {
        Some(s) => chunks.zip(s).for_each(|(c, &v)| v.write_le(c)),
        None => chunks.zip(x.iter()).for_each(|(c, &v)| v.write_le(c)),
    }
}

impl Array {
    /// Decodes little-endian row-major data.
    ///
    /// Errors: [`OpError::ShapeOverflow`] for an unrepresentable shape,
    /// [`OpError::DataLength`] when `bytes` is not exactly
    /// `product(shape) * dtype.size()` long, [`OpError::InvalidBool`] for a
    /// bool byte other than 0 or 1.
    pub fn from_le_bytes(
        dtype: DType,
        shape: &[u64],
        bytes: &[u8],
        alloc: &dyn Alloc,
    ) -> Result<Array, OpError> {
        let dims = dims_from_u64(shape)?;
        let expected = checked_bytes(&dims, dtype).ok_or_else(|| OpError::ShapeOverflow {
            shape: shape.to_vec(),
        })?;
        if bytes.len() != expected {
            return Err(OpError::DataLength {
                expected,
                actual: bytes.len(),
            });
        }
        if dtype == DType::Bool && bytes.iter().any(|&b| b > 1) {
            return Err(OpError::InvalidBool);
        }
        reserve(alloc, "from_bytes", &dims, dtype)?;
        with_dtype!(dtype, T => {
            let data: Vec<T> = bytes.chunks_exact(std::mem::size_of::<T>()).map(T::read_le).collect();
            Ok(T::wrap(from_vec(&dims, data)?))
        })
    }

    /// Encodes the elements little-endian in logical row-major order.
    pub fn to_le_bytes(&self) -> Vec<u8> {
        let mut out = vec![0; self.nbytes()];
        dispatch!(self, x => write_le(x, &mut out));
        out
    }

    /// Like [`Array::to_le_bytes`] into a caller-provided buffer, which must
    /// be exactly [`Array::nbytes`] long (else [`OpError::DataLength`]).
    pub fn write_le_bytes(&self, out: &mut [u8]) -> Result<(), OpError> {
        if out.len() != self.nbytes() {
            return Err(OpError::DataLength {
                expected: self.nbytes(),
                actual: out.len(),
            });
        }
        dispatch!(self, x => write_le(x, out));
        Ok(())
    }

    /// The only element of a one-element array (of any rank) as f64; bool
    /// gives 0 or 1.
    pub fn to_scalar_f64(&self) -> Result<f64, OpError> {
        let only = dispatch!(self, x => (x.len() == 1).then(|| x.iter().next().map(|v| v.to_f64())).flatten());
        only.ok_or_else(|| {
            invalid(
                "to_scalar",
                format!("expected exactly one element, got shape {:?}", self.shape()),
            )
        })
    }
}

/// An array's elements as little-endian bytes, element by element in
/// logical order: how a non-contiguous array (or any array on a
/// big-endian host) is streamed without copying it whole.
pub(crate) trait LeCursor: Send {
    /// Size of one element in bytes.
    fn size(&self) -> usize;
    /// Skips `n` elements.
    fn skip(&mut self, n: usize);
    /// Fills `out` (a multiple of the element size) with the next elements.
    fn fill(&mut self, out: &mut [u8]);
}

struct Cursor<'a, T: Elem>(ndarray::iter::Iter<'a, T, ndarray::IxDyn>);

impl<T: Elem> LeCursor for Cursor<'_, T> {
    fn size(&self) -> usize {
        T::DTYPE.size()
    }
    fn skip(&mut self, n: usize) {
        if n > 0 {
            self.0.nth(n - 1);
        }
    }
    fn fill(&mut self, out: &mut [u8]) {
        for (o, v) in out.chunks_exact_mut(T::DTYPE.size()).zip(&mut self.0) {
            v.write_le(o);
        }
    }
}

impl Array {
    /// A zeroed array of `dtype` and `dims` (a streamed tensor's buffer),
    /// allocated zeroed, so its pages are touched only as bytes arrive.
    /// The caller has reserved its size.
    pub(crate) fn zeroed(dtype: DType, dims: &[usize]) -> Result<Array, OpError> {
        let n = checked_bytes(dims, dtype).ok_or_else(|| OpError::ShapeOverflow {
            shape: dims.iter().map(|&d| d as u64).collect(),
        })? / dtype.size();
        with_dtype!(dtype, T => Ok(T::wrap(from_vec(dims, T::zeroed_vec(n))?)))
    }

    /// The elements' memory, if it is row-major and contiguous and the host
    /// little-endian: then it is the wire's byte layout.
    pub(crate) fn le_memory(&self) -> Option<&[u8]> {
        if cfg!(target_endian = "big") {
            return None;
        }
        self.memory()
    }

    /// The elements' memory in the host's byte order, if it is row-major
    /// and contiguous.
    pub(crate) fn memory(&self) -> Option<&[u8]> {
        fn of<T: Elem>(x: &ArrayD<T>) -> Option<&[u8]> {
            x.as_slice().map(T::slice_bytes)
        }
        dispatch!(self, x => of(x))
    }

    /// The same, writable, for any dtype but bool (whose bytes must stay
    /// 0 or 1); in the host's byte order.
    pub(crate) fn memory_mut(&mut self) -> Option<&mut [u8]> {
        fn of<T: Elem>(x: &mut ArrayD<T>) -> Option<&mut [u8]> {
            x.as_slice_mut().and_then(T::slice_bytes_mut)
        }
        dispatch!(self, x => of(x))
    }

    /// A cursor over the elements' little-endian bytes in logical order.
    pub(crate) fn le_cursor(&self) -> Box<dyn LeCursor + '_> {
        fn of<T: Elem>(x: &ArrayD<T>) -> Box<dyn LeCursor + '_> {
            Box::new(Cursor(x.iter()))
        }
        dispatch!(self, x => of(x))
    }
}
