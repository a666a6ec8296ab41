//! The tensor worker's compute layer: a dynamically typed n-d array
//! ([`Array`]) and the ops the worker runs on it.
//!
//! Ground rules shared by every op:
//!
//! * Every op returns a freshly allocated array in standard (row-major,
//!   contiguous) layout, whatever the layout of its inputs.
//! * Before allocating its output an op calls [`Alloc::reserve`] with the op
//!   name and the output size in bytes; an error from it aborts the op before
//!   anything is allocated. Shape arithmetic is checked, so an absurd shape
//!   yields [`OpError::ShapeOverflow`] rather than a huge allocation.
//! * No op panics on any input: every failure is an [`OpError`].
//! * Semantics follow NumPy, except: integer arithmetic wraps on overflow,
//!   and integer division truncates toward zero (Rust semantics, not
//!   NumPy's floor division). Operands of different dtypes promote as
//!   NumPy's `np.result_type` ([`DType::promote`]); a scalar takes the
//!   array's dtype (NumPy 2's weak scalars).
//!
//! One file per family, none importing back up into this one:
//! [`DType`] and the element traits (`dtype.rs`), [`OpError`]
//! (`error.rs`), shape arithmetic (`shape.rs`), allocation under the quota
//! (`alloc.rs`), the op table (`table.rs`), then the ops: elementwise,
//! reductions, contractions (`contract.rs`, `einsum.rs`), indexing (slices
//! in `index.rs`, tensor indices and masks in `gather.rs`, assignment in
//! `assign.rs`), layout, order (sort, argsort, topk), makers and the byte
//! layout.

mod alloc;
mod assign;
mod bytes;
mod contract;
mod dtype;
#[cfg(test)]
mod dtype_tests;
mod einsum;
mod elem;
mod elementwise;
mod error;
mod gather;
mod index;
#[cfg(test)]
mod index_tests;
mod layout;
mod make;
mod order;
mod parallel;
mod reduce;
mod shape;
mod table;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_layout;
#[cfg(test)]
mod tests_reduce;
#[cfg(test)]
mod tests_shape;

pub(crate) use alloc::reserve;
pub use alloc::{Alloc, MaxBytes, Unlimited};
pub(crate) use bytes::LeCursor;
pub use dtype::{Array, DType, Kind, Scalar};
pub use error::OpError;
pub use index::SliceSpec;
pub use layout::MAX_SPLIT_PARTS;
pub use parallel::{compute_threads, set_compute_threads, PoolError, PAR_ELEMENTS};
pub(crate) use shape::dims_from_u64;
pub(crate) use table::op_table;
pub use table::{BinaryOp, CompareOp, CumulativeOp, ReduceOp, UnaryOp};
