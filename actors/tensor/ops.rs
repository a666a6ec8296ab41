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
//! * Semantics follow NumPy, except: there is no implicit dtype promotion
//!   (operands must share a dtype), integer arithmetic wraps on overflow, and
//!   integer division truncates toward zero (Rust semantics, not NumPy's
//!   floor division).

use std::fmt;

use ndarray::linalg::general_mat_mul;
use ndarray::{
    ArrayBase, ArrayD, ArrayView1, ArrayView2, ArrayViewD, ArrayViewMut2, Axis, Dimension, Ix2,
    IxDyn, RawData, Slice, Zip,
};
use rand::distr::{Distribution, Uniform};
use rand::SeedableRng;
use rand_distr::Normal;
use rand_pcg::Pcg64;

// ---------------------------------------------------------------------------
// Public types
// ---------------------------------------------------------------------------

/// Element type of an [`Array`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DType {
    /// 32-bit IEEE 754 float.
    F32,
    /// 64-bit IEEE 754 float.
    F64,
    /// 32-bit signed integer.
    I32,
    /// 64-bit signed integer.
    I64,
    /// Boolean; one byte (0 or 1) in the wire format.
    Bool,
}

impl DType {
    /// Every dtype, in declaration order.
    pub const ALL: [DType; 5] = [DType::F32, DType::F64, DType::I32, DType::I64, DType::Bool];

    /// Size of one element in bytes, in memory and in the wire format.
    pub fn size(self) -> usize {
        match self {
            DType::F32 | DType::I32 => 4,
            DType::F64 | DType::I64 => 8,
            DType::Bool => 1,
        }
    }

    /// Lowercase name: `"f32"`, `"f64"`, `"i32"`, `"i64"` or `"bool"`.
    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::F64 => "f64",
            DType::I32 => "i32",
            DType::I64 => "i64",
            DType::Bool => "bool",
        }
    }

    /// Whether this is [`DType::F32`] or [`DType::F64`].
    pub fn is_float(self) -> bool {
        matches!(self, DType::F32 | DType::F64)
    }

    /// Parses a name produced by [`DType::name`]; NumPy's long names
    /// (`"float32"`, `"int64"`, ...) are accepted too.
    pub fn parse(s: &str) -> Option<DType> {
        Some(match s {
            "f32" | "float32" => DType::F32,
            "f64" | "float64" => DType::F64,
            "i32" | "int32" => DType::I32,
            "i64" | "int64" => DType::I64,
            "bool" => DType::Bool,
            _ => return None,
        })
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A single value used as a fill value or as a scalar operand.
///
/// When applied to an array it is converted to the array's dtype: a float
/// scalar is accepted by an integer array only if it is integral and in
/// range, an integer scalar only if it fits, and a bool scalar only by a bool
/// array (which accepts nothing else).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Scalar {
    /// A floating-point value.
    Float(f64),
    /// An integer value.
    Int(i64),
    /// A boolean value.
    Bool(bool),
}

impl Scalar {
    /// The dtype the scalar has on its own: F64, I64 or Bool.
    pub fn dtype(self) -> DType {
        match self {
            Scalar::Float(_) => DType::F64,
            Scalar::Int(_) => DType::I64,
            Scalar::Bool(_) => DType::Bool,
        }
    }
}

/// A dynamically typed n-d array.
#[derive(Clone, Debug, PartialEq)]
pub enum Array {
    /// An array of 32-bit floats.
    F32(ArrayD<f32>),
    /// An array of 64-bit floats.
    F64(ArrayD<f64>),
    /// An array of 32-bit integers.
    I32(ArrayD<i32>),
    /// An array of 64-bit integers.
    I64(ArrayD<i64>),
    /// An array of booleans.
    Bool(ArrayD<bool>),
}

/// Memory accounting hook: every op calls [`Alloc::reserve`] before it
/// allocates its output. The worker implements its memory quota with it.
pub trait Alloc {
    /// Called with the op name and the output size in bytes before the output
    /// is allocated; returning an error aborts the op without allocating.
    fn reserve(&self, op: &'static str, bytes: usize) -> Result<(), OpError>;
}

/// An [`Alloc`] that accepts every reservation.
#[derive(Clone, Copy, Debug, Default)]
pub struct Unlimited;

impl Alloc for Unlimited {
    fn reserve(&self, _op: &'static str, _bytes: usize) -> Result<(), OpError> {
        Ok(())
    }
}

/// An [`Alloc`] that refuses any single output larger than `.0` bytes with
/// [`OpError::TooLarge`].
#[derive(Clone, Copy, Debug)]
pub struct MaxBytes(pub usize);

impl Alloc for MaxBytes {
    fn reserve(&self, op: &'static str, bytes: usize) -> Result<(), OpError> {
        if bytes > self.0 {
            return Err(OpError::TooLarge {
                op,
                bytes,
                limit: self.0,
            });
        }
        Ok(())
    }
}

/// Elementwise binary operations, see [`Array::binary`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BinaryOp {
    /// `a + b`; logical or on bool.
    Add,
    /// `a - b`.
    Sub,
    /// `a * b`; logical and on bool.
    Mul,
    /// `a / b`; integer division truncates toward zero.
    Div,
    /// `a` raised to the power `b`.
    Pow,
    /// Larger of the two (NaN wins); logical or on bool.
    Maximum,
    /// Smaller of the two (NaN wins); logical and on bool.
    Minimum,
}

impl BinaryOp {
    /// Lowercase name used in error messages, e.g. `"add"`.
    pub fn name(self) -> &'static str {
        match self {
            BinaryOp::Add => "add",
            BinaryOp::Sub => "sub",
            BinaryOp::Mul => "mul",
            BinaryOp::Div => "div",
            BinaryOp::Pow => "pow",
            BinaryOp::Maximum => "maximum",
            BinaryOp::Minimum => "minimum",
        }
    }
}

/// Elementwise unary operations, see [`Array::unary`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum UnaryOp {
    /// `-a` (wrapping on integers).
    Neg,
    /// `|a|` (wrapping on integers: `abs(MIN) == MIN`).
    Abs,
    /// `e^a` (floats only).
    Exp,
    /// Natural logarithm (floats only).
    Log,
    /// Square root (floats only).
    Sqrt,
    /// `max(a, 0)`.
    Relu,
    /// `1 / (1 + e^-a)` (floats only).
    Sigmoid,
    /// Hyperbolic tangent (floats only).
    Tanh,
}

impl UnaryOp {
    /// Lowercase name used in error messages, e.g. `"exp"`.
    pub fn name(self) -> &'static str {
        match self {
            UnaryOp::Neg => "neg",
            UnaryOp::Abs => "abs",
            UnaryOp::Exp => "exp",
            UnaryOp::Log => "log",
            UnaryOp::Sqrt => "sqrt",
            UnaryOp::Relu => "relu",
            UnaryOp::Sigmoid => "sigmoid",
            UnaryOp::Tanh => "tanh",
        }
    }
}

/// Elementwise comparisons, see [`Array::compare`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CompareOp {
    /// `a == b`.
    Eq,
    /// `a != b`.
    Ne,
    /// `a < b`.
    Lt,
    /// `a <= b`.
    Le,
    /// `a > b`.
    Gt,
    /// `a >= b`.
    Ge,
}

impl CompareOp {
    /// Lowercase name used in error messages, e.g. `"lt"`.
    pub fn name(self) -> &'static str {
        match self {
            CompareOp::Eq => "eq",
            CompareOp::Ne => "ne",
            CompareOp::Lt => "lt",
            CompareOp::Le => "le",
            CompareOp::Gt => "gt",
            CompareOp::Ge => "ge",
        }
    }
}

/// Reductions, see [`Array::reduce`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReduceOp {
    /// Sum; integers wrap and keep their dtype, bool counts `true`s as I64.
    Sum,
    /// Arithmetic mean; integers and bool give F64, an empty mean is NaN.
    Mean,
    /// Largest element (NaN wins).
    Max,
    /// Smallest element (NaN wins).
    Min,
    /// Index (I64) of the first largest element (or of the first NaN).
    Argmax,
    /// Index (I64) of the first smallest element (or of the first NaN).
    Argmin,
}

impl ReduceOp {
    /// Lowercase name used in error messages, e.g. `"argmax"`.
    pub fn name(self) -> &'static str {
        match self {
            ReduceOp::Sum => "sum",
            ReduceOp::Mean => "mean",
            ReduceOp::Max => "max",
            ReduceOp::Min => "min",
            ReduceOp::Argmax => "argmax",
            ReduceOp::Argmin => "argmin",
        }
    }
}

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
    /// The operands have different dtypes; there is no implicit promotion.
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

fn invalid(op: &'static str, reason: impl Into<String>) -> OpError {
    OpError::InvalidArgument {
        op,
        reason: reason.into(),
    }
}

// ---------------------------------------------------------------------------
// Dispatch machinery
// ---------------------------------------------------------------------------

/// Matches an `&Array`, binding the typed ndarray to `$x` and evaluating the
/// same body for every dtype (or a separate body for Bool).
macro_rules! dispatch {
    ($a:expr, $x:ident => $num:expr, bool $b:ident => $bool:expr) => {
        match $a {
            Array::F32($x) => $num,
            Array::F64($x) => $num,
            Array::I32($x) => $num,
            Array::I64($x) => $num,
            Array::Bool($b) => $bool,
        }
    };
    ($a:expr, $x:ident => $body:expr) => {
        dispatch!($a, $x => $body, bool $x => $body)
    };
}

/// Matches a [`DType`], aliasing the element type to `$t` inside the body.
macro_rules! with_dtype {
    ($d:expr, $t:ident => $body:expr) => {
        match $d {
            DType::F32 => {
                type $t = f32;
                $body
            }
            DType::F64 => {
                type $t = f64;
                $body
            }
            DType::I32 => {
                type $t = i32;
                $body
            }
            DType::I64 => {
                type $t = i64;
                $body
            }
            DType::Bool => {
                type $t = bool;
                $body
            }
        }
    };
}

/// An element type of [`Array`], with everything the generic kernels need.
trait Elem: Copy + PartialOrd + fmt::Debug + Send + Sync + 'static {
    const DTYPE: DType;
    const ZERO: Self;
    const ONE: Self;
    /// Result type of `sum`.
    type Sum: Elem;
    /// Result type of `mean`.
    type Mean: Elem;

    fn get(a: &Array) -> Option<&ArrayD<Self>>;
    fn wrap(a: ArrayD<Self>) -> Array;
    /// Decodes one little-endian element (`bytes.len() == DTYPE.size()`).
    fn read_le(bytes: &[u8]) -> Self;
    /// Encodes one little-endian element (`out.len() == DTYPE.size()`).
    fn write_le(self, out: &mut [u8]);
    fn to_f64(self) -> f64;
    /// `as` conversions (bool: `!= 0`).
    fn from_f64(v: f64) -> Self;
    fn from_i64(v: i64) -> Self;
    fn from_bool(v: bool) -> Self;
    /// `self as D`, with the semantics of [`Array::cast`].
    fn cast<D: Elem>(self) -> D;
    fn sum_lane(lane: ArrayView1<'_, Self>) -> Self::Sum;
    fn mean_lane(lane: ArrayView1<'_, Self>) -> Self::Mean;
    fn binary(
        op: BinaryOp,
        x: &ArrayD<Self>,
        y: &ArrayD<Self>,
        alloc: &dyn Alloc,
    ) -> Result<Array, OpError>;
    fn unary(op: UnaryOp, x: &ArrayD<Self>, alloc: &dyn Alloc) -> Result<Array, OpError>;
    fn matmul(x: &ArrayD<Self>, y: &ArrayD<Self>, alloc: &dyn Alloc) -> Result<Array, OpError>;

    fn is_nan(self) -> bool {
        self.partial_cmp(&self).is_none()
    }
}

/// Numeric (non-bool) element types.
trait Num: Elem {
    fn add(a: Self, b: Self) -> Self;
    fn sub(a: Self, b: Self) -> Self;
    fn mul(a: Self, b: Self) -> Self;
    fn div(a: Self, b: Self) -> Self;
    fn pow(a: Self, b: Self) -> Self;
    fn maximum(a: Self, b: Self) -> Self;
    fn minimum(a: Self, b: Self) -> Self;
    fn neg(a: Self) -> Self;
    fn abs(a: Self) -> Self;
    fn relu(a: Self) -> Self;
    /// Rejects right-hand operands that have no result (integer division by
    /// zero, negative integer exponents) before anything is computed.
    fn check_rhs(op: BinaryOp, rhs: &ArrayD<Self>) -> Result<(), OpError>;
    /// `c = a · b` (c is zero on entry).
    fn gemm(a: &ArrayView2<'_, Self>, b: &ArrayView2<'_, Self>, c: &mut ArrayViewMut2<'_, Self>);
}

/// Floating-point element types.
trait Float: Num {
    fn exp(a: Self) -> Self;
    fn ln(a: Self) -> Self;
    fn sqrt(a: Self) -> Self;
    fn tanh(a: Self) -> Self;
    fn sigmoid(a: Self) -> Self;
}

fn write_bytes<const N: usize>(bytes: [u8; N], out: &mut [u8]) {
    for (o, b) in out.iter_mut().zip(bytes) {
        *o = b;
    }
}

macro_rules! elem_common {
    ($t:ident, $v:ident) => {
        const DTYPE: DType = DType::$v;

        fn get(a: &Array) -> Option<&ArrayD<Self>> {
            match a {
                Array::$v(x) => Some(x),
                _ => None,
            }
        }

        fn wrap(a: ArrayD<Self>) -> Array {
            Array::$v(a)
        }
    };
}

macro_rules! impl_from_ndarray {
    ($t:ident, $v:ident) => {
        impl From<ArrayD<$t>> for Array {
            fn from(a: ArrayD<$t>) -> Array {
                Array::$v(a)
            }
        }
    };
}

macro_rules! impl_float {
    ($t:ident, $v:ident) => {
        #[allow(clippy::unnecessary_cast)]
        impl Elem for $t {
            elem_common!($t, $v);
            const ZERO: Self = 0.0;
            const ONE: Self = 1.0;
            type Sum = $t;
            type Mean = $t;

            fn read_le(bytes: &[u8]) -> Self {
                bytes.try_into().map_or(0.0, $t::from_le_bytes)
            }
            fn write_le(self, out: &mut [u8]) {
                write_bytes(self.to_le_bytes(), out)
            }
            fn to_f64(self) -> f64 {
                f64::from(self)
            }
            fn from_f64(v: f64) -> Self {
                v as $t
            }
            fn from_i64(v: i64) -> Self {
                v as $t
            }
            fn from_bool(v: bool) -> Self {
                $t::from(v)
            }
            fn cast<D: Elem>(self) -> D {
                D::from_f64(f64::from(self))
            }
            // f32 is accumulated in f64 for accuracy.
            fn sum_lane(lane: ArrayView1<'_, Self>) -> Self {
                lane.iter().fold(0.0f64, |s, &v| s + f64::from(v)) as $t
            }
            fn mean_lane(lane: ArrayView1<'_, Self>) -> Self {
                let sum = lane.iter().fold(0.0f64, |s, &v| s + f64::from(v));
                (sum / lane.len() as f64) as $t
            }
            fn binary(
                op: BinaryOp,
                x: &ArrayD<Self>,
                y: &ArrayD<Self>,
                alloc: &dyn Alloc,
            ) -> Result<Array, OpError> {
                binary_num(op, x, y, alloc)
            }
            fn unary(op: UnaryOp, x: &ArrayD<Self>, alloc: &dyn Alloc) -> Result<Array, OpError> {
                unary_float(op, x, alloc)
            }
            fn matmul(
                x: &ArrayD<Self>,
                y: &ArrayD<Self>,
                alloc: &dyn Alloc,
            ) -> Result<Array, OpError> {
                matmul_num(x, y, alloc)
            }
        }

        impl Num for $t {
            fn add(a: Self, b: Self) -> Self {
                a + b
            }
            fn sub(a: Self, b: Self) -> Self {
                a - b
            }
            fn mul(a: Self, b: Self) -> Self {
                a * b
            }
            fn div(a: Self, b: Self) -> Self {
                a / b
            }
            fn pow(a: Self, b: Self) -> Self {
                a.powf(b)
            }
            fn maximum(a: Self, b: Self) -> Self {
                if a.is_nan() || a > b {
                    a
                } else {
                    b
                }
            }
            fn minimum(a: Self, b: Self) -> Self {
                if a.is_nan() || a < b {
                    a
                } else {
                    b
                }
            }
            fn neg(a: Self) -> Self {
                -a
            }
            fn abs(a: Self) -> Self {
                a.abs()
            }
            fn relu(a: Self) -> Self {
                if a < 0.0 {
                    0.0
                } else {
                    a
                }
            }
            fn check_rhs(_op: BinaryOp, _rhs: &ArrayD<Self>) -> Result<(), OpError> {
                Ok(())
            }
            fn gemm(
                a: &ArrayView2<'_, Self>,
                b: &ArrayView2<'_, Self>,
                c: &mut ArrayViewMut2<'_, Self>,
            ) {
                general_mat_mul(1.0, a, b, 0.0, c);
            }
        }

        impl Float for $t {
            fn exp(a: Self) -> Self {
                a.exp()
            }
            fn ln(a: Self) -> Self {
                a.ln()
            }
            fn sqrt(a: Self) -> Self {
                a.sqrt()
            }
            fn tanh(a: Self) -> Self {
                a.tanh()
            }
            fn sigmoid(a: Self) -> Self {
                1.0 / (1.0 + (-a).exp())
            }
        }

        impl_from_ndarray!($t, $v);
    };
}

macro_rules! impl_int {
    ($t:ident, $v:ident) => {
        #[allow(clippy::unnecessary_cast)]
        impl Elem for $t {
            elem_common!($t, $v);
            const ZERO: Self = 0;
            const ONE: Self = 1;
            type Sum = $t;
            type Mean = f64;

            fn read_le(bytes: &[u8]) -> Self {
                bytes.try_into().map_or(0, $t::from_le_bytes)
            }
            fn write_le(self, out: &mut [u8]) {
                write_bytes(self.to_le_bytes(), out)
            }
            fn to_f64(self) -> f64 {
                self as f64
            }
            fn from_f64(v: f64) -> Self {
                v as $t
            }
            fn from_i64(v: i64) -> Self {
                v as $t
            }
            fn from_bool(v: bool) -> Self {
                $t::from(v)
            }
            fn cast<D: Elem>(self) -> D {
                D::from_i64(i64::from(self))
            }
            fn sum_lane(lane: ArrayView1<'_, Self>) -> Self {
                lane.iter().fold(0, |s: $t, &v| s.wrapping_add(v))
            }
            fn mean_lane(lane: ArrayView1<'_, Self>) -> f64 {
                lane.iter().fold(0.0, |s, &v| s + v as f64) / lane.len() as f64
            }
            fn binary(
                op: BinaryOp,
                x: &ArrayD<Self>,
                y: &ArrayD<Self>,
                alloc: &dyn Alloc,
            ) -> Result<Array, OpError> {
                binary_num(op, x, y, alloc)
            }
            fn unary(op: UnaryOp, x: &ArrayD<Self>, alloc: &dyn Alloc) -> Result<Array, OpError> {
                unary_num(op, x, alloc)
            }
            fn matmul(
                x: &ArrayD<Self>,
                y: &ArrayD<Self>,
                alloc: &dyn Alloc,
            ) -> Result<Array, OpError> {
                matmul_num(x, y, alloc)
            }
        }

        impl Num for $t {
            fn add(a: Self, b: Self) -> Self {
                a.wrapping_add(b)
            }
            fn sub(a: Self, b: Self) -> Self {
                a.wrapping_sub(b)
            }
            fn mul(a: Self, b: Self) -> Self {
                a.wrapping_mul(b)
            }
            fn div(a: Self, b: Self) -> Self {
                // Zero divisors are rejected by `check_rhs` beforehand.
                if b == 0 {
                    0
                } else {
                    a.wrapping_div(b)
                }
            }
            fn pow(a: Self, b: Self) -> Self {
                // Negative exponents are rejected by `check_rhs` beforehand.
                let mut exp = u64::try_from(b).unwrap_or(0);
                let (mut base, mut acc): (Self, Self) = (a, 1);
                while exp > 0 {
                    if exp & 1 == 1 {
                        acc = acc.wrapping_mul(base);
                    }
                    exp >>= 1;
                    if exp > 0 {
                        base = base.wrapping_mul(base);
                    }
                }
                acc
            }
            fn maximum(a: Self, b: Self) -> Self {
                a.max(b)
            }
            fn minimum(a: Self, b: Self) -> Self {
                a.min(b)
            }
            fn neg(a: Self) -> Self {
                a.wrapping_neg()
            }
            fn abs(a: Self) -> Self {
                a.wrapping_abs()
            }
            fn relu(a: Self) -> Self {
                a.max(0)
            }
            fn check_rhs(op: BinaryOp, rhs: &ArrayD<Self>) -> Result<(), OpError> {
                match op {
                    BinaryOp::Div if rhs.iter().any(|&v| v == 0) => {
                        Err(OpError::DivisionByZero { op: op.name() })
                    }
                    BinaryOp::Pow if rhs.iter().any(|&v| v < 0) => Err(invalid(
                        op.name(),
                        "integers cannot be raised to negative powers",
                    )),
                    _ => Ok(()),
                }
            }
            fn gemm(
                a: &ArrayView2<'_, Self>,
                b: &ArrayView2<'_, Self>,
                c: &mut ArrayViewMut2<'_, Self>,
            ) {
                for (a_row, mut c_row) in a.rows().into_iter().zip(c.rows_mut()) {
                    for (&a_ik, b_row) in a_row.iter().zip(b.rows()) {
                        Zip::from(&mut c_row)
                            .and(&b_row)
                            .for_each(|c, &b| *c = c.wrapping_add(a_ik.wrapping_mul(b)));
                    }
                }
            }
        }

        impl_from_ndarray!($t, $v);
    };
}

impl_float!(f32, F32);
impl_float!(f64, F64);
impl_int!(i32, I32);
impl_int!(i64, I64);
impl_from_ndarray!(bool, Bool);

impl Elem for bool {
    elem_common!(bool, Bool);
    const ZERO: Self = false;
    const ONE: Self = true;
    type Sum = i64;
    type Mean = f64;

    fn read_le(bytes: &[u8]) -> Self {
        bytes.first().is_some_and(|&b| b != 0)
    }
    fn write_le(self, out: &mut [u8]) {
        write_bytes([u8::from(self)], out)
    }
    fn to_f64(self) -> f64 {
        f64::from(self)
    }
    fn from_f64(v: f64) -> Self {
        v != 0.0
    }
    fn from_i64(v: i64) -> Self {
        v != 0
    }
    fn from_bool(v: bool) -> Self {
        v
    }
    fn cast<D: Elem>(self) -> D {
        D::from_bool(self)
    }
    fn sum_lane(lane: ArrayView1<'_, Self>) -> i64 {
        lane.iter().filter(|&&v| v).count() as i64
    }
    fn mean_lane(lane: ArrayView1<'_, Self>) -> f64 {
        lane.iter().filter(|&&v| v).count() as f64 / lane.len() as f64
    }
    fn binary(
        op: BinaryOp,
        x: &ArrayD<Self>,
        y: &ArrayD<Self>,
        alloc: &dyn Alloc,
    ) -> Result<Array, OpError> {
        let name = op.name();
        let any = match op {
            BinaryOp::Add | BinaryOp::Maximum => true,
            BinaryOp::Mul | BinaryOp::Minimum => false,
            _ => {
                return Err(OpError::Unsupported {
                    op: name,
                    dtype: DType::Bool,
                })
            }
        };
        let shape = broadcast_shape(name, x.shape(), y.shape())?;
        let out = if any {
            zip_map(name, &shape, x, y, alloc, |a, b| a | b)?
        } else {
            zip_map(name, &shape, x, y, alloc, |a, b| a & b)?
        };
        Ok(Array::Bool(out))
    }
    fn unary(op: UnaryOp, _x: &ArrayD<Self>, _alloc: &dyn Alloc) -> Result<Array, OpError> {
        Err(OpError::Unsupported {
            op: op.name(),
            dtype: DType::Bool,
        })
    }
    fn matmul(_x: &ArrayD<Self>, _y: &ArrayD<Self>, _alloc: &dyn Alloc) -> Result<Array, OpError> {
        Err(OpError::Unsupported {
            op: "matmul",
            dtype: DType::Bool,
        })
    }
}

// ---------------------------------------------------------------------------
// Shape helpers
// ---------------------------------------------------------------------------

fn shape_u64(shape: &[usize]) -> Vec<u64> {
    shape.iter().map(|&d| d as u64).collect()
}

/// Element count of `shape`, if an ndarray array of that shape can exist
/// (the product of the non-zero dimensions fits in `isize`).
fn checked_len(shape: &[usize]) -> Option<usize> {
    let mut nonzero: usize = 1;
    let mut empty = false;
    for &d in shape {
        if d == 0 {
            empty = true;
        } else {
            nonzero = nonzero.checked_mul(d)?;
        }
    }
    (isize::try_from(nonzero).is_ok()).then_some(if empty { 0 } else { nonzero })
}

/// Size in bytes of an array of `shape` and `dtype`, if it can exist.
fn checked_bytes(shape: &[usize], dtype: DType) -> Option<usize> {
    checked_len(shape)?
        .checked_mul(dtype.size())
        .filter(|&b| isize::try_from(b).is_ok())
}

/// Reserves the output of an op; the only way ops obtain permission to
/// allocate.
fn reserve(
    alloc: &dyn Alloc,
    op: &'static str,
    shape: &[usize],
    dtype: DType,
) -> Result<(), OpError> {
    let bytes = checked_bytes(shape, dtype).ok_or_else(|| OpError::ShapeOverflow {
        shape: shape_u64(shape),
    })?;
    alloc.reserve(op, bytes)
}

/// Converts a wire shape to dimensions, rejecting unrepresentable shapes.
fn dims_from_u64(shape: &[u64]) -> Result<Vec<usize>, OpError> {
    shape
        .iter()
        .map(|&d| usize::try_from(d).ok())
        .collect::<Option<Vec<usize>>>()
        .filter(|dims| checked_len(dims).is_some())
        .ok_or_else(|| OpError::ShapeOverflow {
            shape: shape.to_vec(),
        })
}

fn from_vec<T: Elem>(shape: &[usize], data: Vec<T>) -> Result<ArrayD<T>, OpError> {
    ArrayD::from_shape_vec(IxDyn(shape), data).map_err(|_| OpError::ShapeOverflow {
        shape: shape_u64(shape),
    })
}

/// NumPy broadcasting of two shapes.
fn broadcast_shape(op: &'static str, a: &[usize], b: &[usize]) -> Result<Vec<usize>, OpError> {
    let n = a.len().max(b.len());
    let dim = |s: &[usize], i: usize| {
        (s.len() + i)
            .checked_sub(n)
            .and_then(|j| s.get(j))
            .copied()
            .unwrap_or(1)
    };
    (0..n)
        .map(|i| match (dim(a, i), dim(b, i)) {
            (x, y) if x == y || y == 1 => Ok(x),
            (1, y) => Ok(y),
            _ => Err(OpError::ShapeMismatch {
                op,
                lhs: a.to_vec(),
                rhs: b.to_vec(),
            }),
        })
        .collect()
}

fn broadcast_view<'a, T>(
    op: &'static str,
    x: &'a ArrayD<T>,
    shape: &[usize],
) -> Result<ArrayViewD<'a, T>, OpError> {
    x.broadcast(IxDyn(shape))
        .ok_or_else(|| OpError::ShapeMismatch {
            op,
            lhs: x.shape().to_vec(),
            rhs: shape.to_vec(),
        })
}

/// Python-style axis normalisation.
fn norm_axis(op: &'static str, axis: i64, ndim: usize) -> Result<usize, OpError> {
    let n = i64::try_from(ndim).unwrap_or(i64::MAX);
    let a = if axis < 0 { axis + n } else { axis };
    usize::try_from(a)
        .ok()
        .filter(|&a| a < ndim)
        .ok_or(OpError::AxisOutOfRange { op, axis, ndim })
}

/// The same-dtype partner of `_like` in `b`, or a dtype mismatch.
fn same<'a, T: Elem>(
    op: &'static str,
    _like: &ArrayD<T>,
    b: &'a Array,
) -> Result<&'a ArrayD<T>, OpError> {
    T::get(b).ok_or(OpError::DTypeMismatch {
        op,
        lhs: T::DTYPE,
        rhs: b.dtype(),
    })
}

/// Converts a scalar operand to `T` (see [`Scalar`] for the rules).
fn scalar_to<T: Elem>(op: &'static str, s: Scalar) -> Result<T, OpError> {
    let mismatch = OpError::DTypeMismatch {
        op,
        lhs: T::DTYPE,
        rhs: s.dtype(),
    };
    match (T::DTYPE, s) {
        (DType::Bool, Scalar::Bool(b)) => Ok(T::from_bool(b)),
        (DType::Bool, _) | (_, Scalar::Bool(_)) => Err(mismatch),
        (d, Scalar::Float(f)) if d.is_float() => Ok(T::from_f64(f)),
        (d, Scalar::Int(i)) if d.is_float() => Ok(T::from_i64(i)),
        (d, Scalar::Float(f)) => {
            // 2^63 is exactly representable; i64::MAX as f64 rounds up to it.
            const LIMIT: f64 = 9_223_372_036_854_775_808.0;
            if f.fract() != 0.0 || !(-LIMIT..LIMIT).contains(&f) {
                return Err(invalid(
                    op,
                    format!("scalar {f} is not an integer that fits in {d}"),
                ));
            }
            scalar_to(op, Scalar::Int(f as i64))
        }
        (d, Scalar::Int(i)) => {
            let v = T::from_i64(i);
            if v.cast::<i64>() == i {
                Ok(v)
            } else {
                Err(invalid(op, format!("scalar {i} does not fit in {d}")))
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Generic kernels
// ---------------------------------------------------------------------------

/// Copies a view into a new standard-layout array.
fn std_owned<T: Elem>(v: ArrayViewD<'_, T>) -> Array {
    T::wrap(v.as_standard_layout().into_owned())
}

/// Elementwise map into a new standard-layout array.
fn map_std<T: Elem, U: Elem>(
    op: &'static str,
    x: &ArrayD<T>,
    alloc: &dyn Alloc,
    f: impl Fn(T) -> U,
) -> Result<ArrayD<U>, OpError> {
    reserve(alloc, op, x.shape(), U::DTYPE)?;
    let data: Vec<U> = match x.as_slice() {
        Some(s) => s.iter().map(|&v| f(v)).collect(),
        None => x.iter().map(|&v| f(v)).collect(),
    };
    from_vec(x.shape(), data)
}

/// Broadcasting elementwise binary map; `shape` is the broadcast shape.
fn zip_map<T: Elem, U: Elem>(
    op: &'static str,
    shape: &[usize],
    x: &ArrayD<T>,
    y: &ArrayD<T>,
    alloc: &dyn Alloc,
    f: impl Fn(T, T) -> U,
) -> Result<ArrayD<U>, OpError> {
    reserve(alloc, op, shape, U::DTYPE)?;
    let (xv, yv) = (broadcast_view(op, x, shape)?, broadcast_view(op, y, shape)?);
    let mut out = ArrayD::from_elem(IxDyn(shape), U::ZERO);
    Zip::from(&mut out)
        .and(&xv)
        .and(&yv)
        .for_each(|o, &a, &b| *o = f(a, b));
    Ok(out)
}

fn binary_num<T: Num>(
    op: BinaryOp,
    x: &ArrayD<T>,
    y: &ArrayD<T>,
    alloc: &dyn Alloc,
) -> Result<Array, OpError> {
    let name = op.name();
    let shape = broadcast_shape(name, x.shape(), y.shape())?;
    if checked_len(&shape) != Some(0) {
        T::check_rhs(op, y)?;
    }
    let out = match op {
        BinaryOp::Add => zip_map(name, &shape, x, y, alloc, T::add),
        BinaryOp::Sub => zip_map(name, &shape, x, y, alloc, T::sub),
        BinaryOp::Mul => zip_map(name, &shape, x, y, alloc, T::mul),
        BinaryOp::Div => zip_map(name, &shape, x, y, alloc, T::div),
        BinaryOp::Pow => zip_map(name, &shape, x, y, alloc, T::pow),
        BinaryOp::Maximum => zip_map(name, &shape, x, y, alloc, T::maximum),
        BinaryOp::Minimum => zip_map(name, &shape, x, y, alloc, T::minimum),
    }?;
    Ok(T::wrap(out))
}

fn unary_num<T: Num>(op: UnaryOp, x: &ArrayD<T>, alloc: &dyn Alloc) -> Result<Array, OpError> {
    let name = op.name();
    let out = match op {
        UnaryOp::Neg => map_std(name, x, alloc, T::neg),
        UnaryOp::Abs => map_std(name, x, alloc, T::abs),
        UnaryOp::Relu => map_std(name, x, alloc, T::relu),
        UnaryOp::Exp | UnaryOp::Log | UnaryOp::Sqrt | UnaryOp::Sigmoid | UnaryOp::Tanh => {
            Err(OpError::Unsupported {
                op: name,
                dtype: T::DTYPE,
            })
        }
    }?;
    Ok(T::wrap(out))
}

fn unary_float<T: Float>(op: UnaryOp, x: &ArrayD<T>, alloc: &dyn Alloc) -> Result<Array, OpError> {
    let name = op.name();
    let out = match op {
        UnaryOp::Exp => map_std(name, x, alloc, T::exp),
        UnaryOp::Log => map_std(name, x, alloc, T::ln),
        UnaryOp::Sqrt => map_std(name, x, alloc, T::sqrt),
        UnaryOp::Sigmoid => map_std(name, x, alloc, T::sigmoid),
        UnaryOp::Tanh => map_std(name, x, alloc, T::tanh),
        UnaryOp::Neg | UnaryOp::Abs | UnaryOp::Relu => return unary_num(op, x, alloc),
    }?;
    Ok(T::wrap(out))
}

fn compare_typed<T: Elem>(
    op: CompareOp,
    x: &ArrayD<T>,
    y: &ArrayD<T>,
    alloc: &dyn Alloc,
) -> Result<Array, OpError> {
    let name = op.name();
    let shape = broadcast_shape(name, x.shape(), y.shape())?;
    let out = match op {
        CompareOp::Eq => zip_map(name, &shape, x, y, alloc, |a, b| a == b),
        CompareOp::Ne => zip_map(name, &shape, x, y, alloc, |a, b| a != b),
        CompareOp::Lt => zip_map(name, &shape, x, y, alloc, |a, b| a < b),
        CompareOp::Le => zip_map(name, &shape, x, y, alloc, |a, b| a <= b),
        CompareOp::Gt => zip_map(name, &shape, x, y, alloc, |a, b| a > b),
        CompareOp::Ge => zip_map(name, &shape, x, y, alloc, |a, b| a >= b),
    }?;
    Ok(Array::Bool(out))
}

/// Splits `[batch.., rows, cols]`.
fn split_matrix(shape: &[usize]) -> Option<(&[usize], usize, usize)> {
    match shape {
        [batch @ .., rows, cols] => Some((batch, *rows, *cols)),
        _ => None,
    }
}

/// The 2-D matrix at batch index `idx` of a `[batch.., rows, cols]` array.
fn batch_matrix<S: RawData>(
    mut v: ArrayBase<S, IxDyn>,
    idx: &[usize],
) -> Result<ArrayBase<S, Ix2>, OpError> {
    for &i in idx {
        v = v.index_axis_move(Axis(0), i);
    }
    v.into_dimensionality::<Ix2>()
        .map_err(|_| invalid("matmul", "inconsistent batch shape"))
}

fn matmul_num<T: Num>(x: &ArrayD<T>, y: &ArrayD<T>, alloc: &dyn Alloc) -> Result<Array, OpError> {
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
            T::gemm(&a, &b, &mut c);
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

/// Reduces every lane along `axis` (or the whole array) with `f`.
fn reduce_lanes<T: Elem, U: Elem>(
    op: &'static str,
    x: &ArrayD<T>,
    axis: Option<i64>,
    keepdims: bool,
    alloc: &dyn Alloc,
    needs_elements: bool,
    f: impl Fn(ArrayView1<'_, T>) -> U,
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
        (Some(ax), _) => x.lanes(Axis(ax)).into_iter().map(&f).collect(),
        (None, Some(flat)) => vec![f(ArrayView1::from(flat))],
        (None, None) => {
            reserve(alloc, op, x.shape(), T::DTYPE)?;
            let flat: Vec<T> = x.iter().copied().collect();
            vec![f(ArrayView1::from(flat.as_slice()))]
        }
    };
    Ok(U::wrap(from_vec(&shape, data)?))
}

/// Max (or min) of a non-empty lane; NaN wins.
fn extreme<T: Elem>(lane: ArrayView1<'_, T>, max: bool) -> T {
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
fn arg_extreme<T: Elem>(lane: ArrayView1<'_, T>, max: bool) -> i64 {
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

fn reduce_typed<T: Elem>(
    op: ReduceOp,
    x: &ArrayD<T>,
    axis: Option<i64>,
    keepdims: bool,
    alloc: &dyn Alloc,
) -> Result<Array, OpError> {
    let name = op.name();
    match op {
        ReduceOp::Sum => reduce_lanes(name, x, axis, keepdims, alloc, false, T::sum_lane),
        ReduceOp::Mean => reduce_lanes(name, x, axis, keepdims, alloc, false, T::mean_lane),
        ReduceOp::Max => reduce_lanes(name, x, axis, keepdims, alloc, true, |l| extreme(l, true)),
        ReduceOp::Min => reduce_lanes(name, x, axis, keepdims, alloc, true, |l| extreme(l, false)),
        ReduceOp::Argmax => reduce_lanes(name, x, axis, keepdims, alloc, true, |l| {
            arg_extreme(l, true)
        }),
        ReduceOp::Argmin => reduce_lanes(name, x, axis, keepdims, alloc, true, |l| {
            arg_extreme(l, false)
        }),
    }
}

/// Python slice normalisation: the ndarray slice and the resulting length.
fn norm_slice(spec: &SliceSpec, len: usize) -> Result<(Slice, usize), String> {
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

fn concat_typed<T: Elem>(
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

fn cast_typed<S: Elem>(x: &ArrayD<S>, dtype: DType, alloc: &dyn Alloc) -> Result<Array, OpError> {
    with_dtype!(dtype, D => Ok(D::wrap(map_std("cast", x, alloc, S::cast::<D>)?)))
}

fn where_typed<T: Elem>(
    cond: &ArrayD<bool>,
    x: &ArrayD<T>,
    y: &ArrayD<T>,
    alloc: &dyn Alloc,
) -> Result<Array, OpError> {
    const OP: &str = "where";
    let shape = broadcast_shape(OP, cond.shape(), x.shape())?;
    let shape = broadcast_shape(OP, &shape, y.shape())?;
    reserve(alloc, OP, &shape, T::DTYPE)?;
    let cv = broadcast_view(OP, cond, &shape)?;
    let (xv, yv) = (
        broadcast_view(OP, x, &shape)?,
        broadcast_view(OP, y, &shape)?,
    );
    let mut out = ArrayD::from_elem(IxDyn(&shape), T::ZERO);
    Zip::from(&mut out)
        .and(&cv)
        .and(&xv)
        .and(&yv)
        .for_each(|o, &c, &a, &b| *o = if c { a } else { b });
    Ok(T::wrap(out))
}

fn sample<T: Elem, D: Distribution<T>>(
    op: &'static str,
    dims: &[usize],
    dist: D,
    seed: u64,
    alloc: &dyn Alloc,
) -> Result<Array, OpError> {
    reserve(alloc, op, dims, T::DTYPE)?;
    let n = checked_len(dims).unwrap_or(0);
    let mut rng = Pcg64::seed_from_u64(seed);
    let data: Vec<T> = (0..n).map(|_| dist.sample(&mut rng)).collect();
    Ok(T::wrap(from_vec(dims, data)?))
}

fn uniform_int<T>(
    dims: &[usize],
    low: f64,
    high: f64,
    seed: u64,
    alloc: &dyn Alloc,
) -> Result<Array, OpError>
where
    T: Elem + rand::distr::uniform::SampleUniform,
{
    const OP: &str = "random_uniform";
    let (lo, hi) = (
        scalar_to::<T>(OP, Scalar::Float(low))?,
        scalar_to::<T>(OP, Scalar::Float(high))?,
    );
    let dist = Uniform::new(lo, hi)
        .map_err(|_| invalid(OP, format!("low ({low}) must be less than high ({high})")))?;
    sample(OP, dims, dist, seed, alloc)
}

// ---------------------------------------------------------------------------
// The public API
// ---------------------------------------------------------------------------

impl Array {
    /// The element type.
    pub fn dtype(&self) -> DType {
        match self {
            Array::F32(_) => DType::F32,
            Array::F64(_) => DType::F64,
            Array::I32(_) => DType::I32,
            Array::I64(_) => DType::I64,
            Array::Bool(_) => DType::Bool,
        }
    }

    /// The dimensions, outermost first.
    pub fn shape(&self) -> &[usize] {
        dispatch!(self, x => x.shape())
    }

    /// Number of dimensions.
    pub fn ndim(&self) -> usize {
        self.shape().len()
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        dispatch!(self, x => x.len())
    }

    /// Whether the array has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Size of the elements in bytes (the length of [`Array::to_le_bytes`]).
    pub fn nbytes(&self) -> usize {
        self.len().saturating_mul(self.dtype().size())
    }

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
            let data: Vec<T> = bytes.chunks_exact(dtype.size()).map(T::read_le).collect();
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

    /// An array of zeros (`false` for bool).
    pub fn zeros(dtype: DType, shape: &[u64], alloc: &dyn Alloc) -> Result<Array, OpError> {
        with_dtype!(dtype, T => fill("zeros", shape, T::ZERO, alloc))
    }

    /// An array of ones (`true` for bool).
    pub fn ones(dtype: DType, shape: &[u64], alloc: &dyn Alloc) -> Result<Array, OpError> {
        with_dtype!(dtype, T => fill("ones", shape, T::ONE, alloc))
    }

    /// An array filled with `value`, converted to `dtype` as described on
    /// [`Scalar`].
    pub fn full(
        dtype: DType,
        shape: &[u64],
        value: Scalar,
        alloc: &dyn Alloc,
    ) -> Result<Array, OpError> {
        with_dtype!(dtype, T => fill("full", shape, scalar_to::<T>("full", value)?, alloc))
    }

    /// Evenly spaced values `start, start + step, ...` below `stop` (above it
    /// for a negative step), as a 1-D array like NumPy's `arange`; the values
    /// are computed in f64 and converted with `as`. Errors on a zero or
    /// non-finite argument and on bool.
    pub fn arange(
        dtype: DType,
        start: f64,
        stop: f64,
        step: f64,
        alloc: &dyn Alloc,
    ) -> Result<Array, OpError> {
        const OP: &str = "arange";
        if dtype == DType::Bool {
            return Err(OpError::Unsupported { op: OP, dtype });
        }
        if !(start.is_finite() && stop.is_finite() && step.is_finite()) {
            return Err(invalid(OP, "start, stop and step must be finite"));
        }
        if step == 0.0 {
            return Err(invalid(OP, "step must not be zero"));
        }
        let count = ((stop - start) / step).ceil();
        let count = if count > 0.0 { count } else { 0.0 };
        if count >= isize::MAX as f64 {
            return Err(OpError::ShapeOverflow {
                shape: vec![count as u64],
            });
        }
        let count = count as usize;
        reserve(alloc, OP, &[count], dtype)?;
        with_dtype!(dtype, T => {
            let data: Vec<T> = (0..count).map(|i| T::from_f64(start + i as f64 * step)).collect();
            Ok(T::wrap(from_vec(&[count], data)?))
        })
    }

    /// Uniformly distributed values in `[low, high)`, deterministic for a
    /// given `seed` (PCG64). For integer dtypes `low` and `high` must be
    /// integers that fit the dtype. Bool is unsupported.
    pub fn random_uniform(
        dtype: DType,
        shape: &[u64],
        low: f64,
        high: f64,
        seed: u64,
        alloc: &dyn Alloc,
    ) -> Result<Array, OpError> {
        const OP: &str = "random_uniform";
        let dims = dims_from_u64(shape)?;
        let bounds = |_| {
            invalid(
                OP,
                format!("low ({low}) must be less than high ({high}) and both must be finite"),
            )
        };
        match dtype {
            DType::F32 => {
                let dist = Uniform::new(low as f32, high as f32).map_err(bounds)?;
                sample::<f32, _>(OP, &dims, dist, seed, alloc)
            }
            DType::F64 => {
                let dist = Uniform::new(low, high).map_err(bounds)?;
                sample::<f64, _>(OP, &dims, dist, seed, alloc)
            }
            DType::I32 => uniform_int::<i32>(&dims, low, high, seed, alloc),
            DType::I64 => uniform_int::<i64>(&dims, low, high, seed, alloc),
            DType::Bool => Err(OpError::Unsupported { op: OP, dtype }),
        }
    }

    /// Normally distributed values, deterministic for a given `seed` (PCG64).
    /// Float dtypes only; `std` must be finite and non-negative.
    pub fn random_normal(
        dtype: DType,
        shape: &[u64],
        mean: f64,
        std: f64,
        seed: u64,
        alloc: &dyn Alloc,
    ) -> Result<Array, OpError> {
        const OP: &str = "random_normal";
        let dims = dims_from_u64(shape)?;
        let bad = || {
            invalid(
                OP,
                format!("mean ({mean}) must be finite and std ({std}) finite and non-negative"),
            )
        };
        if !mean.is_finite() {
            return Err(bad());
        }
        match dtype {
            DType::F32 => {
                let dist = Normal::new(mean as f32, std as f32).map_err(|_| bad())?;
                sample::<f32, _>(OP, &dims, dist, seed, alloc)
            }
            DType::F64 => {
                let dist = Normal::new(mean, std).map_err(|_| bad())?;
                sample::<f64, _>(OP, &dims, dist, seed, alloc)
            }
            DType::I32 | DType::I64 | DType::Bool => Err(OpError::Unsupported { op: OP, dtype }),
        }
    }

    /// Elementwise `a op b` with NumPy broadcasting.
    ///
    /// Both operands must have the same dtype ([`OpError::DTypeMismatch`]).
    /// Integers wrap on overflow, divide truncating toward zero
    /// ([`OpError::DivisionByZero`] if any divisor is zero) and reject
    /// negative exponents. Bool supports only Add/Maximum (or) and
    /// Mul/Minimum (and). Float maximum/minimum propagate NaN.
    pub fn binary(op: BinaryOp, a: &Array, b: &Array, alloc: &dyn Alloc) -> Result<Array, OpError> {
        dispatch!(a, x => Elem::binary(op, x, same(op.name(), x, b)?, alloc))
    }

    /// Elementwise `a op s` (or `s op a` when `scalar_on_left`), with the
    /// scalar converted to `a`'s dtype as described on [`Scalar`]; otherwise
    /// the same as [`Array::binary`].
    pub fn binary_scalar(
        op: BinaryOp,
        a: &Array,
        s: Scalar,
        scalar_on_left: bool,
        alloc: &dyn Alloc,
    ) -> Result<Array, OpError> {
        dispatch!(a, x => {
            let s = ArrayD::from_elem(IxDyn(&[]), scalar_to(op.name(), s)?);
            if scalar_on_left {
                Elem::binary(op, &s, x, alloc)
            } else {
                Elem::binary(op, x, &s, alloc)
            }
        })
    }

    /// Elementwise `op(a)`. Exp, Log, Sqrt, Sigmoid and Tanh need a float
    /// dtype; Neg and Abs wrap on integers; bool supports none of them
    /// ([`OpError::Unsupported`]).
    pub fn unary(op: UnaryOp, a: &Array, alloc: &dyn Alloc) -> Result<Array, OpError> {
        dispatch!(a, x => Elem::unary(op, x, alloc))
    }

    /// Elementwise comparison with broadcasting, giving a bool array. NaN
    /// compares unequal to everything; `false < true`.
    pub fn compare(
        op: CompareOp,
        a: &Array,
        b: &Array,
        alloc: &dyn Alloc,
    ) -> Result<Array, OpError> {
        dispatch!(a, x => compare_typed(op, x, same(op.name(), x, b)?, alloc))
    }

    /// Elementwise `a op s`, with the scalar converted as described on
    /// [`Scalar`].
    pub fn compare_scalar(
        op: CompareOp,
        a: &Array,
        s: Scalar,
        alloc: &dyn Alloc,
    ) -> Result<Array, OpError> {
        dispatch!(a, x => {
            let s = ArrayD::from_elem(IxDyn(&[]), scalar_to(op.name(), s)?);
            compare_typed(op, x, &s, alloc)
        })
    }

    /// Matrix product with NumPy `matmul` semantics: 1-D·1-D gives a rank-0
    /// array, a 1-D operand is promoted to a matrix and the added dimension
    /// removed, and leading (batch) dimensions broadcast. Floats use
    /// matrixmultiply's GEMM; integers wrap. Bool is unsupported; rank-0
    /// operands are rejected.
    pub fn matmul(a: &Array, b: &Array, alloc: &dyn Alloc) -> Result<Array, OpError> {
        dispatch!(a, x => Elem::matmul(x, same("matmul", x, b)?, alloc))
    }

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
        dispatch!(a, x => reduce_typed(op, x, axis, keepdims, alloc))
    }

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

    /// Joins arrays along an existing axis. All must share the dtype, the
    /// rank (at least 1) and every dimension except `axis`.
    pub fn concat(arrays: &[&Array], axis: i64, alloc: &dyn Alloc) -> Result<Array, OpError> {
        let Some(first) = arrays.first() else {
            return Err(invalid("concat", "need at least one array"));
        };
        dispatch!(first, x => concat_typed(x, arrays, axis, alloc))
    }

    /// Converts to `dtype` with Rust `as` semantics (float to int truncates
    /// and saturates, NaN becomes 0); bool converts to 0/1 and a number to
    /// bool as `!= 0`.
    pub fn cast(a: &Array, dtype: DType, alloc: &dyn Alloc) -> Result<Array, OpError> {
        dispatch!(a, x => cast_typed(x, dtype, alloc))
    }

    /// Elementwise `if cond { a } else { b }` with broadcasting of all three;
    /// `cond` must be bool and `a`, `b` must share a dtype.
    pub fn where_(cond: &Array, a: &Array, b: &Array, alloc: &dyn Alloc) -> Result<Array, OpError> {
        let Array::Bool(c) = cond else {
            return Err(OpError::DTypeMismatch {
                op: "where",
                lhs: DType::Bool,
                rhs: cond.dtype(),
            });
        };
        dispatch!(a, x => where_typed(c, x, same("where", x, b)?, alloc))
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

fn fill<T: Elem>(
    op: &'static str,
    shape: &[u64],
    value: T,
    alloc: &dyn Alloc,
) -> Result<Array, OpError> {
    let dims = dims_from_u64(shape)?;
    reserve(alloc, op, &dims, T::DTYPE)?;
    Ok(T::wrap(ArrayD::from_elem(IxDyn(&dims), value)))
}

fn write_le<T: Elem>(x: &ArrayD<T>, out: &mut [u8]) {
    let chunks = out.chunks_exact_mut(T::DTYPE.size());
    match x.as_slice() {
        Some(s) => chunks.zip(s).for_each(|(c, &v)| v.write_le(c)),
        None => chunks.zip(x.iter()).for_each(|(c, &v)| v.write_le(c)),
    }
}
