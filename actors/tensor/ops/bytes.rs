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
