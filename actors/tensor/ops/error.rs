//! [`OpError`]: why an op failed, in words for the remote caller.

use super::dtype::DType;

/// Why an op failed. The messages are lowercase, carry no trailing period
/// and are meant to be shown to the remote caller as they are.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum OpError {
    /// Operand shapes do not fit together: not broadcastable, matmul inner
    /// dimensions differ, reshape element counts differ, or concat operands
    /// differ outside the concatenation axis.
    #[error("{}", shape_mismatch_message(.op, .lhs, .rhs))]
    ShapeMismatch {
        /// The op that failed.
        op: &'static str,
        /// Shape of the first (left) operand.
        lhs: Vec<usize>,
        /// Shape of the second (right) operand, or the requested shape.
        rhs: Vec<usize>,
    },
    /// An operand has a dtype the op does not convert (a bool scalar for a
    /// number, a condition that is not bool); tensor operands of different
    /// dtypes promote instead ([`DType::promote`]).
    #[error("{op}: dtypes {lhs} and {rhs} do not match (cast one operand first)")]
    DTypeMismatch {
        /// The op that failed.
        op: &'static str,
        /// Dtype of the first operand (or the dtype required).
        lhs: DType,
        /// Dtype of the second operand (or the dtype given).
        rhs: DType,
    },
    /// The op is not defined for this dtype.
    #[error("{op}: not supported for dtype {dtype}")]
    Unsupported {
        /// The op that failed.
        op: &'static str,
        /// The offending dtype.
        dtype: DType,
    },
    /// An integer division had a zero divisor.
    #[error("{op}: integer division by zero")]
    DivisionByZero {
        /// The op that failed.
        op: &'static str,
    },
    /// An axis outside `-ndim..ndim`.
    #[error("{op}: axis {axis} is out of range for an array with {ndim} dimensions")]
    AxisOutOfRange {
        /// The op that failed.
        op: &'static str,
        /// The axis as given.
        axis: i64,
        /// Number of dimensions of the array.
        ndim: usize,
    },
    /// Raw data does not have the length its shape and dtype require.
    #[error("data has {actual} bytes but the shape and dtype require {expected}")]
    DataLength {
        /// Number of bytes the shape and dtype require.
        expected: usize,
        /// Number of bytes given.
        actual: usize,
    },
    /// A shape whose element count or size in bytes cannot be represented.
    #[error("shape {shape:?} is too large")]
    ShapeOverflow {
        /// The offending shape.
        shape: Vec<u64>,
    },
    /// An argument is out of its domain.
    #[error("{op}: {reason}")]
    InvalidArgument {
        /// The op that failed.
        op: &'static str,
        /// What was wrong with the argument.
        reason: String,
    },
    /// Max, min, argmax or argmin over zero elements.
    #[error("{op}: cannot reduce over zero elements")]
    EmptyReduction {
        /// The op that failed.
        op: &'static str,
    },
    /// A memory budget (the worker's or the connection's) refused the
    /// output.
    #[error("{op}: {what} limit exceeded: {requested} > {limit}")]
    Budget {
        /// The op that was refused.
        op: &'static str,
        /// Which budget ("worker memory", "connection memory").
        what: &'static str,
        /// Bytes the budget would have held with the output.
        requested: u64,
        /// The budget's limit in bytes.
        limit: u64,
    },
    /// The output would exceed a memory limit.
    #[error("{op}: output of {bytes} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        /// The op that was refused.
        op: &'static str,
        /// Size of the output in bytes.
        bytes: usize,
        /// The limit in bytes.
        limit: usize,
    },
    /// Bool data contains a byte other than 0 or 1.
    #[error("bool data must contain only the bytes 0 and 1")]
    InvalidBool,
}

fn shape_mismatch_message(op: &str, lhs: &[usize], rhs: &[usize]) -> String {
    match op {
        "matmul" => format!("matmul: inner dimensions of shapes {lhs:?} and {rhs:?} differ"),
        "reshape" => {
            format!("reshape: cannot reshape an array of shape {lhs:?} into shape {rhs:?}")
        }
        "concat" => {
            format!("concat: shapes {lhs:?} and {rhs:?} differ outside the concatenation axis")
        }
        _ => format!("{op}: cannot broadcast shapes {lhs:?} and {rhs:?}"),
    }
}

pub(super) fn invalid(op: &'static str, reason: impl Into<String>) -> OpError {
    OpError::InvalidArgument {
        op,
        reason: reason.into(),
    }
}
