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

    /// The values an integer dtype holds, as the f64 range `lo..hi` (`hi`
    /// excluded, both exact powers of two); `None` for floats and bool.
    pub fn int_range(self) -> Option<(f64, f64)> {
        match self {
            DType::I32 => Some((-2f64.powi(31), 2f64.powi(31))),
            DType::I64 => Some((-2f64.powi(63), 2f64.powi(63))),
            DType::F32 | DType::F64 | DType::Bool => None,
        }
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
pub(crate) fn checked_bytes(shape: &[usize], dtype: DType) -> Option<usize> {
    checked_len(shape)?
        .checked_mul(dtype.size())
        .filter(|&b| isize::try_from(b).is_ok())
}

/// Reserves the output of an op; the only way ops obtain permission to
/// allocate.
pub(crate) fn reserve(
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
pub(crate) fn dims_from_u64(shape: &[u64]) -> Result<Vec<usize>, OpError> {
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
    const OP: &str = "select";
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
        if let (Some((lo, hi)), Some(last)) = (dtype.int_range(), count.checked_sub(1)) {
            // Integer values that do not fit are refused rather than
            // saturated by `as` (NumPy would wrap them silently).
            for (i, v) in [(0, start), (last, start + last as f64 * step)] {
                if !(lo..hi).contains(&v.trunc()) {
                    return Err(invalid(
                        OP,
                        format!("value {v} at index {i} does not fit dtype {dtype}"),
                    ));
                }
            }
        }
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
        if !mean.is_finite() || std.is_nan() || std < 0.0 {
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
                op: "select",
                lhs: DType::Bool,
                rhs: cond.dtype(),
            });
        };
        dispatch!(a, x => where_typed(c, x, same("select", x, b)?, alloc))
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
    let chunks = out.chunks_exact_mut(std::mem::size_of::<T>());
    match x.as_slice() {
        Some(s) => chunks.zip(s).for_each(|(c, &v)| v.write_le(c)),
        None => chunks.zip(x.iter()).for_each(|(c, &v)| v.write_le(c)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{s, Array2};
    use std::cell::RefCell;

    const U: &Unlimited = &Unlimited;

    fn arr<T: Elem>(shape: &[usize], v: &[T]) -> Array {
        T::wrap(ArrayD::from_shape_vec(IxDyn(shape), v.to_vec()).unwrap())
    }

    fn seq(shape: &[usize]) -> ArrayD<f64> {
        let n = shape.iter().product();
        ArrayD::from_shape_vec(IxDyn(shape), (0..n).map(|i| i as f64).collect()).unwrap()
    }

    fn get<T: Elem>(a: &Array) -> &ArrayD<T> {
        T::get(a).unwrap_or_else(|| panic!("expected {}, got {:?}", T::DTYPE, a.dtype()))
    }

    fn assert_close(actual: &Array, expected: &ArrayD<f64>) {
        let actual = get::<f64>(actual);
        assert_eq!(actual.shape(), expected.shape());
        for (a, e) in actual.iter().zip(expected) {
            let same = (a - e).abs() <= 1e-9 * (1.0 + e.abs()) || (a.is_nan() && e.is_nan());
            assert!(same, "{actual} != {expected}");
        }
    }

    fn err_text(r: Result<Array, OpError>) -> String {
        r.unwrap_err().to_string()
    }

    /// Records every reservation.
    #[derive(Default)]
    struct Recorder(RefCell<Vec<(&'static str, usize)>>);

    impl Alloc for Recorder {
        fn reserve(&self, op: &'static str, bytes: usize) -> Result<(), OpError> {
            self.0.borrow_mut().push((op, bytes));
            Ok(())
        }
    }

    fn naive_matmul<T: Num>(a: ArrayView2<'_, T>, b: ArrayView2<'_, T>) -> Array2<T> {
        let (m, k) = a.dim();
        let n = b.dim().1;
        Array2::from_shape_fn((m, n), |(i, j)| {
            (0..k).fold(T::ZERO, |s, l| T::add(s, T::mul(a[[i, l]], b[[l, j]])))
        })
    }

    // --- dtypes, bytes, constructors ------------------------------------

    #[test]
    fn dtype_names_round_trip_through_parse_and_display() {
        for d in DType::ALL {
            assert_eq!(DType::parse(d.name()), Some(d));
            assert_eq!(d.to_string(), d.name());
        }
        assert_eq!(DType::parse("float32"), Some(DType::F32));
        assert_eq!(DType::parse("f16"), None);
        let sizes: Vec<usize> = DType::ALL.iter().map(|d| d.size()).collect();
        assert_eq!(sizes, [4, 8, 4, 8, 1]);
        assert!(DType::F64.is_float() && !DType::I64.is_float());
    }

    #[test]
    fn bytes_round_trip_for_every_dtype() {
        let arrays = [
            arr(
                &[2, 3],
                &[1.5f32, -0.0, f32::MAX, f32::MIN_POSITIVE, -3.25, 7.0],
            ),
            arr(&[2, 3], &[1.5f64, -0.0, f64::MAX, 1e-300, -3.25, 7.0]),
            arr(&[2, 3], &[1i32, -1, i32::MAX, i32::MIN, 0, 42]),
            arr(&[3, 2], &[1i64, -1, i64::MAX, i64::MIN, 0, 42]),
            arr(&[6], &[true, false, true, true, false, false]),
            arr::<f64>(&[0, 4], &[]),
            arr(&[], &[9i64]),
        ];
        for a in &arrays {
            let bytes = a.to_le_bytes();
            assert_eq!(bytes.len(), a.nbytes());
            let shape: Vec<u64> = a.shape().iter().map(|&d| d as u64).collect();
            let back = Array::from_le_bytes(a.dtype(), &shape, &bytes, U).unwrap();
            assert_eq!(&back, a);
            let mut buf = vec![0xAA; a.nbytes()];
            a.write_le_bytes(&mut buf).unwrap();
            assert_eq!(buf, bytes);
        }
        assert_eq!(arr(&[1], &[1.0f32]).to_le_bytes(), [0, 0, 0x80, 0x3f]);
        assert_eq!(arr(&[1], &[-2i32]).to_le_bytes(), [0xfe, 0xff, 0xff, 0xff]);
        assert_eq!(arr(&[2], &[true, false]).to_le_bytes(), [1, 0]);
    }

    #[test]
    fn to_le_bytes_uses_logical_order_for_transposed_memory() {
        let t = ArrayD::from_shape_vec(IxDyn(&[2, 3]), (0..6).collect::<Vec<i32>>())
            .unwrap()
            .reversed_axes();
        let a = Array::I32(t);
        let back = Array::from_le_bytes(DType::I32, &[3, 2], &a.to_le_bytes(), U).unwrap();
        assert_eq!(
            get::<i32>(&back).iter().copied().collect::<Vec<_>>(),
            [0, 3, 1, 4, 2, 5]
        );
        // Ops on non-standard inputs still give standard-layout outputs.
        let neg = Array::unary(UnaryOp::Neg, &a, U).unwrap();
        assert!(get::<i32>(&neg).is_standard_layout());
        assert_eq!(
            get::<i32>(&neg).as_slice().unwrap(),
            [0, -3, -1, -4, -2, -5]
        );
    }

    #[test]
    fn from_le_bytes_rejects_a_wrong_length_naming_both_numbers() {
        let err = Array::from_le_bytes(DType::F32, &[2, 3], &[0; 20], U).unwrap_err();
        assert_eq!(
            err,
            OpError::DataLength {
                expected: 24,
                actual: 20
            }
        );
        assert_eq!(
            err.to_string(),
            "data has 20 bytes but the shape and dtype require 24"
        );
    }

    #[test]
    fn from_le_bytes_rejects_bool_bytes_other_than_zero_and_one() {
        let err = Array::from_le_bytes(DType::Bool, &[3], &[0, 1, 2], U).unwrap_err();
        assert_eq!(err, OpError::InvalidBool);
    }

    #[test]
    fn from_le_bytes_rejects_shapes_whose_size_overflows() {
        for (dtype, shape) in [
            (DType::F32, vec![u64::MAX, 2]),
            (DType::F64, vec![1 << 62, 4]),
            (DType::Bool, vec![0, 1 << 40, 1 << 40]),
        ] {
            let err = Array::from_le_bytes(dtype, &shape, &[], U).unwrap_err();
            assert_eq!(err, OpError::ShapeOverflow { shape });
        }
    }

    #[test]
    fn write_le_bytes_rejects_a_buffer_of_the_wrong_length() {
        let a = arr(&[2], &[1i64, 2]);
        assert_eq!(
            a.write_le_bytes(&mut [0; 15]),
            Err(OpError::DataLength {
                expected: 16,
                actual: 15
            })
        );
    }

    #[test]
    fn zeros_ones_and_full_fill_every_element() {
        for d in DType::ALL {
            let z = Array::zeros(d, &[2, 3], U).unwrap();
            let o = Array::ones(d, &[2, 3], U).unwrap();
            assert_eq!((z.dtype(), z.shape()), (d, &[2, 3][..]));
            assert_eq!(
                Array::reduce(ReduceOp::Max, &z, None, false, U)
                    .unwrap()
                    .to_scalar_f64(),
                Ok(0.0)
            );
            assert_eq!(
                Array::reduce(ReduceOp::Min, &o, None, false, U)
                    .unwrap()
                    .to_scalar_f64(),
                Ok(1.0)
            );
        }
        let f = Array::full(DType::I64, &[2], Scalar::Float(3.0), U).unwrap();
        assert_eq!(f, arr(&[2], &[3i64, 3]));
        let f = Array::full(DType::F32, &[], Scalar::Int(-2), U).unwrap();
        assert_eq!(f, arr(&[], &[-2.0f32]));
        let f = Array::full(DType::Bool, &[1], Scalar::Bool(true), U).unwrap();
        assert_eq!(f, arr(&[1], &[true]));
    }

    #[test]
    fn full_rejects_scalars_that_do_not_fit_the_dtype() {
        let e = Array::full(DType::I32, &[1], Scalar::Float(0.5), U).unwrap_err();
        assert_eq!(
            e.to_string(),
            "full: scalar 0.5 is not an integer that fits in i32"
        );
        let e = Array::full(DType::I32, &[1], Scalar::Int(1 << 40), U).unwrap_err();
        assert_eq!(
            e.to_string(),
            "full: scalar 1099511627776 does not fit in i32"
        );
        let e = Array::full(DType::I64, &[1], Scalar::Float(9.3e18), U).unwrap_err();
        assert!(matches!(e, OpError::InvalidArgument { .. }));
        let e = Array::full(DType::F32, &[1], Scalar::Bool(true), U).unwrap_err();
        assert_eq!(
            e,
            OpError::DTypeMismatch {
                op: "full",
                lhs: DType::F32,
                rhs: DType::Bool
            }
        );
        let e = Array::full(DType::Bool, &[1], Scalar::Int(1), U).unwrap_err();
        assert!(matches!(e, OpError::DTypeMismatch { .. }));
    }

    #[test]
    fn arange_matches_numpy() {
        let a = |start, stop, step| Array::arange(DType::F64, start, stop, step, U).unwrap();
        assert_close(&a(0.0, 5.0, 1.0), &seq(&[5]));
        assert_close(
            &a(0.0, 1.0, 0.3),
            &ArrayD::from_shape_vec(IxDyn(&[4]), vec![0.0, 0.3, 0.6, 0.9]).unwrap(),
        );
        assert_close(
            &a(5.0, 0.0, -2.0),
            &ArrayD::from_shape_vec(IxDyn(&[3]), vec![5.0, 3.0, 1.0]).unwrap(),
        );
        assert_eq!(a(3.0, 1.0, 1.0).shape(), [0]);
        let i = Array::arange(DType::I32, -2.0, 2.0, 1.0, U).unwrap();
        assert_eq!(i, arr(&[4], &[-2i32, -1, 0, 1]));
    }

    #[test]
    fn arange_rejects_zero_step_bool_and_huge_lengths() {
        let e = Array::arange(DType::F64, 0.0, 1.0, 0.0, U).unwrap_err();
        assert_eq!(e.to_string(), "arange: step must not be zero");
        let e = Array::arange(DType::Bool, 0.0, 1.0, 1.0, U).unwrap_err();
        assert_eq!(
            e,
            OpError::Unsupported {
                op: "arange",
                dtype: DType::Bool
            }
        );
        let e = Array::arange(DType::F64, 0.0, 1e300, 1e-300, U).unwrap_err();
        assert!(matches!(e, OpError::ShapeOverflow { .. }));
        let e = Array::arange(DType::F64, 0.0, f64::NAN, 1.0, U).unwrap_err();
        assert!(matches!(e, OpError::InvalidArgument { .. }));
    }

    #[test]
    fn random_uniform_is_deterministic_and_within_bounds() {
        let draw = |dtype, seed| Array::random_uniform(dtype, &[1000], -3.0, 3.0, seed, U).unwrap();
        assert_eq!(draw(DType::F64, 7), draw(DType::F64, 7));
        assert_ne!(draw(DType::F64, 7), draw(DType::F64, 8));
        assert!(get::<f64>(&draw(DType::F64, 7))
            .iter()
            .all(|v| (-3.0..3.0).contains(v)));
        assert!(get::<f32>(&draw(DType::F32, 7))
            .iter()
            .all(|v| (-3.0..3.0).contains(v)));
        let ints = draw(DType::I32, 1);
        let ints = get::<i32>(&ints);
        assert!(ints.iter().all(|v| (-3..3).contains(v)));
        assert!(
            (-3..3).all(|k| ints.iter().any(|&v| v == k)),
            "every value drawn"
        );
        assert_eq!(draw(DType::I64, 3), draw(DType::I64, 3));
    }

    #[test]
    fn random_uniform_rejects_bad_bounds() {
        let e = Array::random_uniform(DType::F64, &[2], 1.0, 1.0, 0, U).unwrap_err();
        assert!(matches!(e, OpError::InvalidArgument { .. }), "{e}");
        let e = Array::random_uniform(DType::I32, &[2], 0.5, 4.0, 0, U).unwrap_err();
        assert!(matches!(e, OpError::InvalidArgument { .. }), "{e}");
        let e = Array::random_uniform(DType::Bool, &[2], 0.0, 1.0, 0, U).unwrap_err();
        assert!(matches!(e, OpError::Unsupported { .. }));
    }

    #[test]
    fn random_normal_has_the_requested_moments() {
        let a = Array::random_normal(DType::F64, &[20000], 2.0, 0.5, 42, U).unwrap();
        assert_eq!(
            a,
            Array::random_normal(DType::F64, &[20000], 2.0, 0.5, 42, U).unwrap()
        );
        let x = get::<f64>(&a);
        let mean = x.mean().unwrap();
        let std = x.std(0.0);
        assert!(
            (mean - 2.0).abs() < 0.02 && (std - 0.5).abs() < 0.02,
            "{mean} {std}"
        );
        let f = Array::random_normal(DType::F32, &[3, 4], 0.0, 1.0, 1, U).unwrap();
        assert_eq!((f.dtype(), f.shape()), (DType::F32, &[3, 4][..]));
        let e = Array::random_normal(DType::I32, &[2], 0.0, 1.0, 0, U).unwrap_err();
        assert_eq!(e.to_string(), "random_normal: not supported for dtype i32");
        let e = Array::random_normal(DType::F64, &[2], 0.0, -1.0, 0, U).unwrap_err();
        assert!(matches!(e, OpError::InvalidArgument { .. }));
    }

    // --- binary ------------------------------------------------------------

    #[test]
    fn add_broadcasts_column_against_row() {
        let (a, b) = (seq(&[3, 1]), seq(&[1, 4]) * 10.0);
        let out = Array::binary(
            BinaryOp::Add,
            &Array::F64(a.clone()),
            &Array::F64(b.clone()),
            U,
        )
        .unwrap();
        assert_close(&out, &(&a + &b));
        assert_eq!(out.shape(), [3, 4]);
    }

    #[test]
    fn add_broadcasts_trailing_vector_against_matrix() {
        let (a, b) = (seq(&[2, 3]), seq(&[3]) + 100.0);
        let out = Array::binary(
            BinaryOp::Add,
            &Array::F64(a.clone()),
            &Array::F64(b.clone()),
            U,
        )
        .unwrap();
        assert_close(&out, &(&a + &b));
        let out = Array::binary(
            BinaryOp::Sub,
            &Array::F64(b.clone()),
            &Array::F64(a.clone()),
            U,
        )
        .unwrap();
        assert_close(&out, &(&b - &a));
    }

    #[test]
    fn rank_zero_operand_broadcasts_against_any_shape() {
        let s = arr(&[], &[2.0f64]);
        let x = seq(&[2, 2, 2]);
        let out = Array::binary(BinaryOp::Mul, &s, &Array::F64(x.clone()), U).unwrap();
        assert_close(&out, &(&x * 2.0));
        let out = Array::binary(BinaryOp::Sub, &Array::F64(x.clone()), &s, U).unwrap();
        assert_close(&out, &(&x - 2.0));
        let out = Array::binary(BinaryOp::Add, &s, &s, U).unwrap();
        assert_eq!(out, arr(&[], &[4.0f64]));
    }

    #[test]
    fn zero_size_dimension_broadcasts_to_an_empty_result() {
        let empty = arr::<f64>(&[0, 3], &[]);
        let row = Array::F64(seq(&[1, 3]));
        assert_eq!(
            Array::binary(BinaryOp::Add, &empty, &row, U)
                .unwrap()
                .shape(),
            [0, 3]
        );
        assert_eq!(
            Array::binary(BinaryOp::Add, &row, &empty, U)
                .unwrap()
                .shape(),
            [0, 3]
        );
        let col = arr::<f64>(&[2, 0, 1], &[]);
        assert_eq!(
            Array::binary(BinaryOp::Mul, &col, &row, U).unwrap().shape(),
            [2, 0, 3]
        );
        let e = Array::binary(BinaryOp::Mul, &arr::<f64>(&[2, 1, 0], &[]), &row, U).unwrap_err();
        assert!(matches!(e, OpError::ShapeMismatch { .. }));
        // A zero divisor that is never used (empty output) is not an error.
        let zero = arr(&[1], &[0i32]);
        let none = arr::<i32>(&[0], &[]);
        assert_eq!(
            Array::binary(BinaryOp::Div, &none, &zero, U)
                .unwrap()
                .shape(),
            [0]
        );
    }

    #[test]
    fn incompatible_shapes_error_names_both_shapes() {
        let (a, b) = (Array::F64(seq(&[2, 3])), Array::F64(seq(&[4])));
        let e = Array::binary(BinaryOp::Add, &a, &b, U).unwrap_err();
        assert_eq!(
            e,
            OpError::ShapeMismatch {
                op: "add",
                lhs: vec![2, 3],
                rhs: vec![4]
            }
        );
        assert_eq!(e.to_string(), "add: cannot broadcast shapes [2, 3] and [4]");
        let e = Array::compare(CompareOp::Lt, &b, &a, U).unwrap_err();
        assert_eq!(e.to_string(), "lt: cannot broadcast shapes [4] and [2, 3]");
    }

    #[test]
    fn binary_rejects_mismatched_dtypes() {
        let e = Array::binary(
            BinaryOp::Add,
            &arr(&[1], &[1.0f32]),
            &arr(&[1], &[1.0f64]),
            U,
        )
        .unwrap_err();
        assert_eq!(
            e,
            OpError::DTypeMismatch {
                op: "add",
                lhs: DType::F32,
                rhs: DType::F64
            }
        );
        assert_eq!(
            e.to_string(),
            "add: dtypes f32 and f64 do not match (cast one operand first)"
        );
    }

    #[test]
    fn every_binary_op_matches_ndarray_on_floats() {
        let a =
            ArrayD::from_shape_vec(IxDyn(&[2, 3]), vec![1.5, -2.0, 3.0, 0.25, 4.0, -1.0]).unwrap();
        let b = ArrayD::from_shape_vec(IxDyn(&[3]), vec![2.0, 0.5, -3.0]).unwrap();
        let bb = b.broadcast(IxDyn(&[2, 3])).unwrap();
        type F2 = fn(f64, f64) -> f64;
        let cases: [(BinaryOp, F2); 7] = [
            (BinaryOp::Add, |x, y| x + y),
            (BinaryOp::Sub, |x, y| x - y),
            (BinaryOp::Mul, |x, y| x * y),
            (BinaryOp::Div, |x, y| x / y),
            (BinaryOp::Pow, f64::powf),
            (BinaryOp::Maximum, f64::max),
            (BinaryOp::Minimum, f64::min),
        ];
        for (op, f) in cases {
            let out = Array::binary(op, &Array::F64(a.clone()), &Array::F64(b.clone()), U).unwrap();
            let mut expected = a.clone();
            Zip::from(&mut expected)
                .and(&bb)
                .for_each(|x, &y| *x = f(*x, y));
            assert_close(&out, &expected);
        }
        let f32s = Array::binary(
            BinaryOp::Mul,
            &arr(&[2], &[1.5f32, 2.0]),
            &arr(&[1], &[2.0f32]),
            U,
        );
        assert_eq!(f32s.unwrap(), arr(&[2], &[3.0f32, 4.0]));
    }

    #[test]
    fn integer_division_truncates_toward_zero_and_wraps() {
        let a = arr(&[3], &[-7i32, 7, i32::MIN]);
        let b = arr(&[3], &[2i32, -2, -1]);
        let out = Array::binary(BinaryOp::Div, &a, &b, U).unwrap();
        assert_eq!(out, arr(&[3], &[-3i32, -3, i32::MIN]));
    }

    #[test]
    fn integer_division_by_zero_is_rejected() {
        let a = arr(&[3], &[1i64, 2, 3]);
        let b = arr(&[3], &[1i64, 0, 3]);
        let e = Array::binary(BinaryOp::Div, &a, &b, U).unwrap_err();
        assert_eq!(e, OpError::DivisionByZero { op: "div" });
        assert_eq!(e.to_string(), "div: integer division by zero");
        let e = Array::binary_scalar(BinaryOp::Div, &a, Scalar::Int(0), false, U).unwrap_err();
        assert_eq!(e, OpError::DivisionByZero { op: "div" });
        let e = Array::binary_scalar(BinaryOp::Div, &b, Scalar::Int(6), true, U).unwrap_err();
        assert_eq!(e, OpError::DivisionByZero { op: "div" });
        // Floats follow IEEE 754.
        let f = Array::binary_scalar(
            BinaryOp::Div,
            &arr(&[1], &[1.0f64]),
            Scalar::Int(0),
            false,
            U,
        );
        assert_eq!(f.unwrap(), arr(&[1], &[f64::INFINITY]));
    }

    #[test]
    fn integer_overflow_wraps() {
        let a = arr(&[2], &[i32::MAX, i32::MIN]);
        let one = arr(&[], &[1i32]);
        assert_eq!(
            Array::binary(BinaryOp::Add, &a, &one, U).unwrap(),
            arr(&[2], &[i32::MIN, i32::MIN + 1])
        );
        assert_eq!(
            Array::binary(BinaryOp::Sub, &a, &one, U).unwrap(),
            arr(&[2], &[i32::MAX - 1, i32::MAX])
        );
        let big = arr(&[1], &[i64::MAX]);
        assert_eq!(
            Array::binary(BinaryOp::Mul, &big, &big, U).unwrap(),
            arr(&[1], &[1i64])
        );
    }

    #[test]
    fn integer_pow_multiplies_and_rejects_negative_exponents() {
        let a = arr(&[4], &[2i64, 3, -2, 2]);
        let b = arr(&[4], &[10i64, 0, 3, 64]);
        assert_eq!(
            Array::binary(BinaryOp::Pow, &a, &b, U).unwrap(),
            arr(&[4], &[1024i64, 1, -8, 0])
        );
        let e = Array::binary_scalar(BinaryOp::Pow, &a, Scalar::Int(-1), false, U).unwrap_err();
        assert_eq!(
            e.to_string(),
            "pow: integers cannot be raised to negative powers"
        );
    }

    #[test]
    fn float_maximum_and_minimum_propagate_nan() {
        let a = arr(&[3], &[f64::NAN, 1.0, 5.0]);
        let b = arr(&[3], &[1.0, f64::NAN, 2.0]);
        for op in [BinaryOp::Maximum, BinaryOp::Minimum] {
            let out = Array::binary(op, &a, &b, U).unwrap();
            let out = get::<f64>(&out);
            assert!(out[0].is_nan() && out[1].is_nan());
        }
        let out = Array::binary(BinaryOp::Maximum, &a, &b, U).unwrap();
        assert_eq!(get::<f64>(&out)[2], 5.0);
    }

    #[test]
    fn bool_add_is_or_mul_is_and_and_sub_is_unsupported() {
        let a = arr(&[4], &[false, false, true, true]);
        let b = arr(&[4], &[false, true, false, true]);
        let or = arr(&[4], &[false, true, true, true]);
        let and = arr(&[4], &[false, false, false, true]);
        assert_eq!(Array::binary(BinaryOp::Add, &a, &b, U).unwrap(), or);
        assert_eq!(Array::binary(BinaryOp::Maximum, &a, &b, U).unwrap(), or);
        assert_eq!(Array::binary(BinaryOp::Mul, &a, &b, U).unwrap(), and);
        assert_eq!(Array::binary(BinaryOp::Minimum, &a, &b, U).unwrap(), and);
        for op in [BinaryOp::Sub, BinaryOp::Div, BinaryOp::Pow] {
            let e = Array::binary(op, &a, &b, U).unwrap_err();
            assert_eq!(
                e,
                OpError::Unsupported {
                    op: op.name(),
                    dtype: DType::Bool
                }
            );
        }
        let e = Array::binary(BinaryOp::Sub, &a, &b, U).unwrap_err();
        assert_eq!(e.to_string(), "sub: not supported for dtype bool");
    }

    #[test]
    fn binary_scalar_puts_the_scalar_on_the_requested_side() {
        let x = arr(&[3], &[1i32, 2, 3]);
        let right = Array::binary_scalar(BinaryOp::Sub, &x, Scalar::Int(10), false, U).unwrap();
        let left = Array::binary_scalar(BinaryOp::Sub, &x, Scalar::Int(10), true, U).unwrap();
        assert_eq!(right, arr(&[3], &[-9i32, -8, -7]));
        assert_eq!(left, arr(&[3], &[9i32, 8, 7]));
        let f = Array::binary_scalar(
            BinaryOp::Pow,
            &arr(&[2], &[2.0f32, 3.0]),
            Scalar::Float(2.0),
            true,
            U,
        );
        assert_eq!(f.unwrap(), arr(&[2], &[4.0f32, 8.0]));
    }

    #[test]
    fn binary_scalar_converts_integral_floats_and_rejects_fractions() {
        let x = arr(&[2], &[1i64, 2]);
        let ok = Array::binary_scalar(BinaryOp::Mul, &x, Scalar::Float(3.0), false, U).unwrap();
        assert_eq!(ok, arr(&[2], &[3i64, 6]));
        let e = Array::binary_scalar(BinaryOp::Mul, &x, Scalar::Float(0.5), false, U).unwrap_err();
        assert_eq!(
            e.to_string(),
            "mul: scalar 0.5 is not an integer that fits in i64"
        );
        let e = Array::binary_scalar(BinaryOp::Add, &x, Scalar::Bool(true), false, U).unwrap_err();
        assert!(matches!(e, OpError::DTypeMismatch { .. }));
        let b = Array::binary_scalar(
            BinaryOp::Add,
            &arr(&[1], &[false]),
            Scalar::Bool(true),
            false,
            U,
        );
        assert_eq!(b.unwrap(), arr(&[1], &[true]));
    }

    // --- unary & compare ---------------------------------------------------

    #[test]
    fn unary_float_ops_match_std() {
        let x = ArrayD::from_shape_vec(IxDyn(&[2, 2]), vec![-1.5, 0.0, 0.5, 4.0]).unwrap();
        type F1 = fn(f64) -> f64;
        let cases: [(UnaryOp, F1); 8] = [
            (UnaryOp::Neg, |v| -v),
            (UnaryOp::Abs, f64::abs),
            (UnaryOp::Exp, f64::exp),
            (UnaryOp::Log, f64::ln),
            (UnaryOp::Sqrt, f64::sqrt),
            (UnaryOp::Relu, |v| v.max(0.0)),
            (UnaryOp::Sigmoid, |v| 1.0 / (1.0 + (-v).exp())),
            (UnaryOp::Tanh, f64::tanh),
        ];
        for (op, f) in cases {
            let out = Array::unary(op, &Array::F64(x.clone()), U).unwrap();
            let expected = x.mapv(f);
            let out = get::<f64>(&out);
            for (a, e) in out.iter().zip(&expected) {
                assert!(
                    a == e || (a.is_nan() && e.is_nan()),
                    "{op:?}: {out} != {expected}"
                );
            }
        }
        let s = Array::unary(UnaryOp::Sigmoid, &arr(&[2], &[0.0f32, -1000.0]), U).unwrap();
        assert_eq!(s, arr(&[2], &[0.5f32, 0.0]));
    }

    #[test]
    fn unary_on_integers_wraps_and_rejects_float_only_ops() {
        let x = arr(&[3], &[i32::MIN, -2, 3]);
        assert_eq!(
            Array::unary(UnaryOp::Neg, &x, U).unwrap(),
            arr(&[3], &[i32::MIN, 2, -3])
        );
        assert_eq!(
            Array::unary(UnaryOp::Abs, &x, U).unwrap(),
            arr(&[3], &[i32::MIN, 2, 3])
        );
        assert_eq!(
            Array::unary(UnaryOp::Relu, &x, U).unwrap(),
            arr(&[3], &[0i32, 0, 3])
        );
        for op in [
            UnaryOp::Exp,
            UnaryOp::Log,
            UnaryOp::Sqrt,
            UnaryOp::Sigmoid,
            UnaryOp::Tanh,
        ] {
            let e = Array::unary(op, &x, U).unwrap_err();
            assert_eq!(
                e,
                OpError::Unsupported {
                    op: op.name(),
                    dtype: DType::I32
                }
            );
        }
        let e = Array::unary(UnaryOp::Exp, &x, U).unwrap_err();
        assert_eq!(e.to_string(), "exp: not supported for dtype i32");
        let e = Array::unary(UnaryOp::Neg, &arr(&[1], &[true]), U).unwrap_err();
        assert_eq!(
            e,
            OpError::Unsupported {
                op: "neg",
                dtype: DType::Bool
            }
        );
    }

    #[test]
    fn compare_broadcasts_and_returns_bool() {
        let a = arr(&[2, 2], &[1i64, 2, 3, 4]);
        let b = arr(&[2], &[2i64, 2]);
        let expect = |v: [bool; 4]| arr(&[2, 2], &v);
        assert_eq!(
            Array::compare(CompareOp::Eq, &a, &b, U).unwrap(),
            expect([false, true, false, false])
        );
        assert_eq!(
            Array::compare(CompareOp::Ne, &a, &b, U).unwrap(),
            expect([true, false, true, true])
        );
        assert_eq!(
            Array::compare(CompareOp::Lt, &a, &b, U).unwrap(),
            expect([true, false, false, false])
        );
        assert_eq!(
            Array::compare(CompareOp::Le, &a, &b, U).unwrap(),
            expect([true, true, false, false])
        );
        assert_eq!(
            Array::compare(CompareOp::Gt, &a, &b, U).unwrap(),
            expect([false, false, true, true])
        );
        assert_eq!(
            Array::compare(CompareOp::Ge, &a, &b, U).unwrap(),
            expect([false, true, true, true])
        );
        let s = Array::compare_scalar(CompareOp::Gt, &a, Scalar::Int(2), U).unwrap();
        assert_eq!(s, expect([false, false, true, true]));
        let nan = arr(&[2], &[f32::NAN, 1.0]);
        assert_eq!(
            Array::compare(CompareOp::Eq, &nan, &nan, U).unwrap(),
            arr(&[2], &[false, true])
        );
        assert_eq!(
            Array::compare(CompareOp::Ne, &nan, &nan, U).unwrap(),
            arr(&[2], &[true, false])
        );
        let e = Array::compare(CompareOp::Eq, &a, &nan, U).unwrap_err();
        assert!(matches!(e, OpError::DTypeMismatch { .. }));
    }

    // --- matmul ------------------------------------------------------------

    #[test]
    fn matmul_of_matrices_matches_ndarray_dot() {
        let a = seq(&[3, 4]).into_dimensionality::<Ix2>().unwrap() - 5.0;
        let b = seq(&[4, 5]).into_dimensionality::<Ix2>().unwrap() * 0.5;
        let out = Array::matmul(
            &Array::F64(a.clone().into_dyn()),
            &Array::F64(b.clone().into_dyn()),
            U,
        )
        .unwrap();
        assert_close(&out, &a.dot(&b).into_dyn());
        let (af, bf) = (a.mapv(|v| v as f32), b.mapv(|v| v as f32));
        let out = Array::matmul(
            &Array::F32(af.clone().into_dyn()),
            &Array::F32(bf.clone().into_dyn()),
            U,
        )
        .unwrap();
        assert_eq!(get::<f32>(&out), &af.dot(&bf).into_dyn());
    }

    #[test]
    fn matmul_of_integer_matrices_matches_a_naive_loop() {
        let a = Array2::from_shape_fn((3, 4), |(i, j)| (i as i64 * 7 - j as i64 * 3) % 5);
        let b = Array2::from_shape_fn((4, 2), |(i, j)| (i as i64 + 2 * j as i64) - 3);
        let out = Array::matmul(
            &Array::I64(a.clone().into_dyn()),
            &Array::I64(b.clone().into_dyn()),
            U,
        )
        .unwrap();
        assert_eq!(
            get::<i64>(&out),
            &naive_matmul(a.view(), b.view()).into_dyn()
        );
        let big = arr(&[1, 1], &[i32::MAX]);
        assert_eq!(Array::matmul(&big, &big, U).unwrap(), arr(&[1, 1], &[1i32]));
    }

    #[test]
    fn matmul_of_two_vectors_is_a_rank_zero_dot_product() {
        let a = arr(&[3], &[1.0f64, 2.0, 3.0]);
        let b = arr(&[3], &[4.0f64, 5.0, 6.0]);
        assert_eq!(Array::matmul(&a, &b, U).unwrap(), arr(&[], &[32.0f64]));
        let (ai, bi) = (arr(&[2], &[2i32, 3]), arr(&[2], &[4i32, 5]));
        assert_eq!(Array::matmul(&ai, &bi, U).unwrap(), arr(&[], &[23i32]));
    }

    #[test]
    fn matmul_promotes_vectors_and_drops_the_added_dimension() {
        let m = seq(&[3, 4]);
        let m2 = m.view().into_dimensionality::<Ix2>().unwrap();
        let v3 = seq(&[3]).into_dimensionality::<ndarray::Ix1>().unwrap();
        let v4 = seq(&[4]).into_dimensionality::<ndarray::Ix1>().unwrap();
        let out = Array::matmul(
            &Array::F64(v3.clone().into_dyn()),
            &Array::F64(m.clone()),
            U,
        )
        .unwrap();
        assert_close(&out, &v3.dot(&m2).into_dyn());
        let out = Array::matmul(
            &Array::F64(m.clone()),
            &Array::F64(v4.clone().into_dyn()),
            U,
        )
        .unwrap();
        assert_close(&out, &m2.dot(&v4).into_dyn());
        let shape = |a: &[usize], b: &[usize]| {
            Array::matmul(&Array::F64(seq(a)), &Array::F64(seq(b)), U)
                .unwrap()
                .shape()
                .to_vec()
        };
        assert_eq!(shape(&[2, 1, 3, 4], &[4]), [2, 1, 3]);
        assert_eq!(shape(&[4], &[5, 4, 2]), [5, 2]);
        assert_eq!(shape(&[1, 3], &[3, 1]), [1, 1]);
    }

    #[test]
    fn batched_matmul_broadcasts_batch_dimensions_like_a_naive_loop() {
        fn check<T: Num>(a: ArrayD<T>, b: ArrayD<T>) {
            let out = Array::matmul(&T::wrap(a.clone()), &T::wrap(b.clone()), U).unwrap();
            let out = get::<T>(&out);
            assert_eq!(out.shape(), [2, 5, 3, 2]);
            for i in 0..2 {
                for j in 0..5 {
                    let am = a.slice(s![i, 0, .., ..]);
                    let bm = b.slice(s![j, .., ..]);
                    assert_eq!(out.slice(s![i, j, .., ..]), naive_matmul(am, bm));
                }
            }
        }
        let a = seq(&[2, 1, 3, 4]).mapv(|v| (v * 0.37).sin());
        let b = seq(&[5, 4, 2]).mapv(|v| (v * 0.11).cos());
        let out = Array::matmul(&Array::F64(a.clone()), &Array::F64(b.clone()), U).unwrap();
        // gemm and the naive loop may sum in different orders.
        let naive = ArrayD::from_shape_fn(IxDyn(&[2, 5, 3, 2]), |ix| {
            (0..4)
                .map(|k| a[[ix[0], 0, ix[2], k]] * b[[ix[1], k, ix[3]]])
                .sum::<f64>()
        });
        assert_close(&out, &naive);
        check(a.mapv(|v| (v * 10.0) as i32), b.mapv(|v| (v * 10.0) as i32));
        check(a.mapv(|v| (v * 10.0) as i64), b.mapv(|v| (v * 10.0) as i64));
    }

    #[test]
    fn matmul_handles_transposed_and_empty_operands() {
        let at = seq(&[4, 3]).reversed_axes(); // [3, 4], column-major memory
        let b = seq(&[4, 2]);
        let expected = at
            .view()
            .into_dimensionality::<Ix2>()
            .unwrap()
            .dot(&b.view().into_dimensionality::<Ix2>().unwrap());
        let out = Array::matmul(&Array::F64(at.clone()), &Array::F64(b.clone()), U).unwrap();
        assert_close(&out, &expected.into_dyn());
        let ai = Array::cast(&Array::F64(at), DType::I64, U).unwrap();
        let ai = Array::I64(get::<i64>(&ai).clone().reversed_axes().reversed_axes());
        assert_eq!(
            Array::matmul(&ai, &Array::cast(&Array::F64(b), DType::I64, U).unwrap(), U)
                .unwrap()
                .shape(),
            [3, 2]
        );
        // k == 0 gives zeros, m == 0 gives an empty result.
        let z = Array::matmul(&arr::<f32>(&[2, 0], &[]), &arr::<f32>(&[0, 3], &[]), U).unwrap();
        assert_eq!(z, Array::zeros(DType::F32, &[2, 3], U).unwrap());
        let e = Array::matmul(&arr::<i32>(&[0, 2], &[]), &arr(&[2, 3], &[1i32; 6]), U).unwrap();
        assert_eq!(e.shape(), [0, 3]);
    }

    #[test]
    fn matmul_inner_dimension_mismatch_names_both_shapes() {
        let e = Array::matmul(&Array::F64(seq(&[2, 3])), &Array::F64(seq(&[4, 5])), U).unwrap_err();
        assert_eq!(
            e,
            OpError::ShapeMismatch {
                op: "matmul",
                lhs: vec![2, 3],
                rhs: vec![4, 5]
            }
        );
        assert_eq!(
            e.to_string(),
            "matmul: inner dimensions of shapes [2, 3] and [4, 5] differ"
        );
    }

    #[test]
    fn matmul_rejects_bool_rank_zero_and_unbroadcastable_batches() {
        let b = arr(&[2, 2], &[true; 4]);
        assert_eq!(
            Array::matmul(&b, &b, U).unwrap_err(),
            OpError::Unsupported {
                op: "matmul",
                dtype: DType::Bool
            }
        );
        let e = err_text(Array::matmul(
            &arr(&[], &[1.0f64]),
            &Array::F64(seq(&[1])),
            U,
        ));
        assert_eq!(
            e,
            "matmul: operands must have at least one dimension, got shapes [] and [1]"
        );
        let e = err_text(Array::matmul(
            &Array::F64(seq(&[2, 3, 4])),
            &Array::F64(seq(&[3, 4, 5])),
            U,
        ));
        assert_eq!(
            e,
            "matmul: cannot broadcast the batch dimensions of shapes [2, 3, 4] and [3, 4, 5]"
        );
        let e = Array::matmul(&arr(&[1], &[1.0f64]), &arr(&[1], &[1i64]), U).unwrap_err();
        assert!(matches!(e, OpError::DTypeMismatch { .. }));
    }

    // --- reductions --------------------------------------------------------

    #[test]
    fn sum_over_negative_axis_with_keepdims_matches_ndarray() {
        let x = seq(&[2, 3, 4]);
        let a = Array::F64(x.clone());
        let out = Array::reduce(ReduceOp::Sum, &a, Some(-1), true, U).unwrap();
        assert_close(&out, &x.sum_axis(Axis(2)).insert_axis(Axis(2)));
        let out = Array::reduce(ReduceOp::Sum, &a, Some(-3), false, U).unwrap();
        assert_close(&out, &x.sum_axis(Axis(0)));
        let out = Array::reduce(ReduceOp::Mean, &a, Some(1), false, U).unwrap();
        assert_close(&out, &x.mean_axis(Axis(1)).unwrap());
        let out = Array::reduce(ReduceOp::Max, &a, Some(-2), true, U).unwrap();
        assert_close(
            &out,
            &x.map_axis(Axis(1), |l| l.fold(f64::MIN, |m, &v| m.max(v)))
                .insert_axis(Axis(1)),
        );
    }

    #[test]
    fn every_reduction_over_all_elements() {
        let x =
            ArrayD::from_shape_vec(IxDyn(&[2, 3]), vec![3.0, -1.0, 7.0, 7.0, 0.0, -4.0]).unwrap();
        let a = Array::F64(x);
        let all = |op| Array::reduce(op, &a, None, false, U).unwrap();
        assert_eq!(all(ReduceOp::Sum), arr(&[], &[12.0f64]));
        assert_eq!(all(ReduceOp::Mean), arr(&[], &[2.0f64]));
        assert_eq!(all(ReduceOp::Max), arr(&[], &[7.0f64]));
        assert_eq!(all(ReduceOp::Min), arr(&[], &[-4.0f64]));
        assert_eq!(all(ReduceOp::Argmax), arr(&[], &[2i64]));
        assert_eq!(all(ReduceOp::Argmin), arr(&[], &[5i64]));
        let kept = Array::reduce(ReduceOp::Sum, &a, None, true, U).unwrap();
        assert_eq!(kept, arr(&[1, 1], &[12.0f64]));
        // Non-standard layout is flattened in logical order.
        let t = Array::transpose(&a, None, U).unwrap();
        let tt = Array::F64(get::<f64>(&a).clone().reversed_axes());
        assert_eq!(
            Array::reduce(ReduceOp::Argmin, &tt, None, false, U).unwrap(),
            Array::reduce(ReduceOp::Argmin, &t, None, false, U).unwrap()
        );
        assert_eq!(
            Array::reduce(ReduceOp::Argmin, &t, None, false, U).unwrap(),
            arr(&[], &[5i64])
        );
    }

    #[test]
    fn sum_of_bool_counts_and_integer_sums_keep_their_dtype() {
        let b = arr(&[2, 3], &[true, false, true, true, true, false]);
        assert_eq!(
            Array::reduce(ReduceOp::Sum, &b, None, false, U).unwrap(),
            arr(&[], &[4i64])
        );
        assert_eq!(
            Array::reduce(ReduceOp::Sum, &b, Some(1), false, U).unwrap(),
            arr(&[2], &[2i64, 2])
        );
        assert_eq!(
            Array::reduce(ReduceOp::Mean, &b, Some(0), false, U).unwrap(),
            arr(&[3], &[1.0f64, 0.5, 0.5])
        );
        assert_eq!(
            Array::reduce(ReduceOp::Max, &b, Some(1), false, U).unwrap(),
            arr(&[2], &[true, true])
        );
        let i = arr(&[3], &[i32::MAX, 1, 2]);
        assert_eq!(
            Array::reduce(ReduceOp::Sum, &i, None, false, U).unwrap(),
            arr(&[], &[i32::MIN + 2])
        );
        let i = arr(&[2, 2], &[1i64, 2, 4, 4]);
        assert_eq!(
            Array::reduce(ReduceOp::Mean, &i, Some(-1), false, U).unwrap(),
            arr(&[2], &[1.5f64, 4.0])
        );
        let f = arr(&[2], &[1.5f32, 2.0]);
        assert_eq!(
            Array::reduce(ReduceOp::Mean, &f, None, false, U).unwrap(),
            arr(&[], &[1.75f32])
        );
    }

    #[test]
    fn argmax_and_argmin_return_the_first_index() {
        let x = arr(&[2, 4], &[1i32, 9, 9, 0, 5, 5, -1, -1]);
        assert_eq!(
            Array::reduce(ReduceOp::Argmax, &x, Some(1), false, U).unwrap(),
            arr(&[2], &[1i64, 0])
        );
        assert_eq!(
            Array::reduce(ReduceOp::Argmin, &x, Some(-1), true, U).unwrap(),
            arr(&[2, 1], &[3i64, 2])
        );
        assert_eq!(
            Array::reduce(ReduceOp::Argmax, &x, Some(0), false, U).unwrap(),
            arr(&[4], &[1i64, 0, 0, 0])
        );
        assert_eq!(
            Array::reduce(ReduceOp::Argmax, &x, None, false, U).unwrap(),
            arr(&[], &[1i64])
        );
        assert_eq!(
            Array::reduce(ReduceOp::Argmin, &x, None, true, U).unwrap(),
            arr(&[1, 1], &[6i64])
        );
        let nan = arr(&[4], &[1.0f64, f64::NAN, 5.0, f64::NAN]);
        assert_eq!(
            Array::reduce(ReduceOp::Argmax, &nan, None, false, U).unwrap(),
            arr(&[], &[1i64])
        );
        let m = Array::reduce(ReduceOp::Max, &nan, None, false, U).unwrap();
        assert!(m.to_scalar_f64().unwrap().is_nan());
    }

    #[test]
    fn max_of_an_empty_axis_is_an_empty_reduction_but_sum_is_zero() {
        let e = arr::<f64>(&[0, 3], &[]);
        let err = Array::reduce(ReduceOp::Max, &e, Some(0), false, U).unwrap_err();
        assert_eq!(err, OpError::EmptyReduction { op: "max" });
        assert_eq!(err.to_string(), "max: cannot reduce over zero elements");
        let err = Array::reduce(ReduceOp::Argmin, &e, None, false, U).unwrap_err();
        assert_eq!(err, OpError::EmptyReduction { op: "argmin" });
        assert_eq!(
            Array::reduce(ReduceOp::Max, &e, Some(1), false, U)
                .unwrap()
                .shape(),
            [0]
        );
        assert_eq!(
            Array::reduce(ReduceOp::Sum, &e, Some(0), false, U).unwrap(),
            arr(&[3], &[0.0f64; 3])
        );
        let mean = Array::reduce(ReduceOp::Mean, &e, None, false, U).unwrap();
        assert!(mean.to_scalar_f64().unwrap().is_nan());
    }

    #[test]
    fn reduce_rejects_axes_out_of_range() {
        let a = Array::F64(seq(&[2, 3, 4]));
        for axis in [3, -4, i64::MIN, i64::MAX] {
            let e = Array::reduce(ReduceOp::Sum, &a, Some(axis), false, U).unwrap_err();
            assert_eq!(
                e,
                OpError::AxisOutOfRange {
                    op: "sum",
                    axis,
                    ndim: 3
                }
            );
        }
        let e = Array::reduce(ReduceOp::Sum, &a, Some(3), false, U).unwrap_err();
        assert_eq!(
            e.to_string(),
            "sum: axis 3 is out of range for an array with 3 dimensions"
        );
        let s = arr(&[], &[1i32]);
        assert!(Array::reduce(ReduceOp::Sum, &s, Some(0), false, U).is_err());
        assert_eq!(Array::reduce(ReduceOp::Sum, &s, None, false, U).unwrap(), s);
    }

    // --- shape ops ---------------------------------------------------------

    #[test]
    fn reshape_infers_the_minus_one_dimension() {
        let a = Array::F64(seq(&[2, 3, 4]));
        let r = Array::reshape(&a, &[4, -1], U).unwrap();
        assert_close(&r, &seq(&[4, 6]));
        let r = Array::reshape(&a, &[-1], U).unwrap();
        assert_close(&r, &seq(&[24]));
        let r = Array::reshape(&arr(&[1], &[5i32]), &[], U).unwrap();
        assert_eq!(r, arr(&[], &[5i32]));
        let t = Array::transpose(&Array::F64(seq(&[2, 3])), None, U).unwrap();
        let tt = Array::F64(seq(&[2, 3]).reversed_axes());
        assert_eq!(
            Array::reshape(&tt, &[6], U).unwrap(),
            Array::reshape(&t, &[6], U).unwrap()
        );
        let e = Array::reshape(&arr::<f32>(&[0, 4], &[]), &[2, 0, -1], U).unwrap_err();
        assert!(matches!(e, OpError::InvalidArgument { .. }));
        assert_eq!(
            Array::reshape(&arr::<f32>(&[0, 4], &[]), &[2, 0, 7], U)
                .unwrap()
                .shape(),
            [2, 0, 7]
        );
    }

    #[test]
    fn reshape_rejects_bad_shapes_naming_both() {
        let a = Array::F64(seq(&[2, 3]));
        let e = Array::reshape(&a, &[4, 2], U).unwrap_err();
        assert_eq!(
            e,
            OpError::ShapeMismatch {
                op: "reshape",
                lhs: vec![2, 3],
                rhs: vec![4, 2]
            }
        );
        assert_eq!(
            e.to_string(),
            "reshape: cannot reshape an array of shape [2, 3] into shape [4, 2]"
        );
        assert_eq!(
            err_text(Array::reshape(&a, &[-1, 4], U)),
            "reshape: cannot reshape an array of shape [2, 3] into shape [-1, 4]"
        );
        assert_eq!(
            err_text(Array::reshape(&a, &[-1, -1], U)),
            "reshape: only one dimension can be -1"
        );
        assert_eq!(
            err_text(Array::reshape(&a, &[-2, -3], U)),
            "reshape: invalid dimension -2 in shape [-2, -3]"
        );
        let huge = [1 << 40, 1 << 40, 1 << 40];
        assert!(matches!(
            Array::reshape(&a, &huge, U),
            Err(OpError::InvalidArgument { .. })
        ));
    }

    #[test]
    fn transpose_reverses_axes_by_default_and_applies_a_permutation() {
        let x = seq(&[2, 3, 4]);
        let a = Array::F64(x.clone());
        let t = Array::transpose(&a, None, U).unwrap();
        assert_eq!(get::<f64>(&t), &x.clone().reversed_axes());
        assert!(get::<f64>(&t).is_standard_layout());
        let p = Array::transpose(&a, Some(&[1, 2, 0]), U).unwrap();
        assert_eq!(get::<f64>(&p), &x.clone().permuted_axes(IxDyn(&[1, 2, 0])));
        assert_eq!(p.shape(), [3, 4, 2]);
        assert!(get::<f64>(&p).is_standard_layout());
        let s = arr(&[], &[true]);
        assert_eq!(Array::transpose(&s, None, U).unwrap(), s);
    }

    #[test]
    fn transpose_rejects_non_permutations() {
        let a = Array::F64(seq(&[2, 3, 4]));
        for p in [&[0, 0, 1][..], &[0, 1], &[0, 1, 3], &[0, 1, 2, 3]] {
            let e = Array::transpose(&a, Some(p), U).unwrap_err();
            assert_eq!(
                e.to_string(),
                format!("transpose: axes {p:?} are not a permutation of 0..3")
            );
        }
    }

    #[test]
    fn slice_follows_python_semantics_including_negative_steps() {
        let a = Array::I64(ArrayD::from_shape_vec(IxDyn(&[10]), (0..10).collect()).unwrap());
        let sl = |start, stop, step| {
            let out = Array::slice(&a, &[SliceSpec::new(start, stop, step)], U).unwrap();
            get::<i64>(&out).iter().copied().collect::<Vec<_>>()
        };
        let rev: Vec<i64> = (0..10).rev().collect();
        assert_eq!(sl(Some(2), Some(7), 2), [2, 4, 6]);
        assert_eq!(sl(None, None, -1), rev);
        assert_eq!(sl(Some(8), Some(2), -3), [8, 5]);
        assert_eq!(sl(Some(-3), None, 1), [7, 8, 9]);
        assert_eq!(sl(Some(-100), Some(100), 1), (0..10).collect::<Vec<_>>());
        assert_eq!(sl(Some(5), Some(2), 1), []);
        assert_eq!(sl(Some(2), Some(5), -1), []);
        assert_eq!(sl(None, None, -4), [9, 5, 1]);
        assert_eq!(sl(Some(-1), Some(-11), -1), rev);
        assert_eq!(sl(Some(100), None, -1), rev);
        assert_eq!(sl(None, Some(-100), -1), rev);
        assert_eq!(sl(Some(-2), Some(-5), -1), [8, 7, 6]);
        assert_eq!(sl(Some(5), None, i64::MIN), [5]);
        assert_eq!(sl(Some(5), None, i64::MAX), [5]);
        assert_eq!(sl(Some(i64::MIN), Some(i64::MAX), 3), [0, 3, 6, 9]);
        let m = Array::F64(seq(&[3, 4]));
        let out = Array::slice(
            &m,
            &[
                SliceSpec::new(Some(1), None, 1),
                SliceSpec::new(None, None, -2),
            ],
            U,
        )
        .unwrap();
        assert_eq!(
            get::<f64>(&out),
            &seq(&[3, 4]).slice(s![1.., ..;-2]).into_owned().into_dyn()
        );
        assert_eq!(get::<f64>(&out).as_slice().unwrap(), [7.0, 5.0, 11.0, 9.0]);
        let rows = Array::slice(&m, &[SliceSpec::new(Some(1), Some(2), 1)], U).unwrap();
        assert_eq!(rows.shape(), [1, 4]);
        assert_eq!(Array::slice(&m, &[], U).unwrap(), m);
        let empty =
            Array::slice(&arr::<f32>(&[0], &[]), &[SliceSpec::new(None, None, -1)], U).unwrap();
        assert_eq!(empty.shape(), [0]);
    }

    #[test]
    fn slice_rejects_zero_step_and_too_many_specs() {
        let a = Array::F64(seq(&[3]));
        assert_eq!(
            err_text(Array::slice(&a, &[SliceSpec::new(None, None, 0)], U)),
            "slice: slice step must not be zero"
        );
        assert_eq!(
            err_text(Array::slice(
                &a,
                &[SliceSpec::default(), SliceSpec::default()],
                U
            )),
            "slice: 2 slices given for an array with 1 dimensions"
        );
    }

    #[test]
    fn concat_joins_along_a_negative_axis() {
        let (x, y) = (seq(&[2, 3]), seq(&[2, 1]) + 100.0);
        let (a, b) = (Array::F64(x.clone()), Array::F64(y.clone()));
        let out = Array::concat(&[&a, &b, &a], -1, U).unwrap();
        let expected = ndarray::concatenate(Axis(1), &[x.view(), y.view(), x.view()]).unwrap();
        assert_close(&out, &expected);
        let rows = Array::concat(&[&a, &a], 0, U).unwrap();
        assert_eq!(rows.shape(), [4, 3]);
        let single = Array::concat(&[&b], 0, U).unwrap();
        assert_eq!(single, b);
        let bools = Array::concat(
            &[
                &arr(&[1], &[true]),
                &arr::<bool>(&[0], &[]),
                &arr(&[1], &[false]),
            ],
            0,
            U,
        );
        assert_eq!(bools.unwrap(), arr(&[2], &[true, false]));
    }

    #[test]
    fn concat_rejects_mismatched_shapes_dtypes_and_empty_lists() {
        let a = Array::F64(seq(&[2, 3]));
        let b = Array::F64(seq(&[3, 3]));
        let e = Array::concat(&[&a, &b], 1, U).unwrap_err();
        assert_eq!(
            e.to_string(),
            "concat: shapes [2, 3] and [3, 3] differ outside the concatenation axis"
        );
        let e = Array::concat(&[&a, &Array::F64(seq(&[6]))], 0, U).unwrap_err();
        assert!(matches!(e, OpError::ShapeMismatch { .. }));
        let e = Array::concat(&[&a, &arr(&[2, 3], &[0i64; 6])], 0, U).unwrap_err();
        assert_eq!(
            e,
            OpError::DTypeMismatch {
                op: "concat",
                lhs: DType::F64,
                rhs: DType::I64
            }
        );
        assert_eq!(
            err_text(Array::concat(&[], 0, U)),
            "concat: need at least one array"
        );
        let e = Array::concat(&[&a, &a], 2, U).unwrap_err();
        assert_eq!(
            e,
            OpError::AxisOutOfRange {
                op: "concat",
                axis: 2,
                ndim: 2
            }
        );
        let s = arr(&[], &[1.0f64]);
        assert_eq!(
            err_text(Array::concat(&[&s, &s], 0, U)),
            "concat: zero-dimensional arrays cannot be concatenated"
        );
    }

    #[test]
    fn cast_follows_rust_as_semantics() {
        let f = arr(&[6], &[1.9f64, -1.9, f64::NAN, 1e20, -1e20, 0.0]);
        assert_eq!(
            Array::cast(&f, DType::I32, U).unwrap(),
            arr(&[6], &[1i32, -1, 0, i32::MAX, i32::MIN, 0])
        );
        assert_eq!(
            Array::cast(&f, DType::Bool, U).unwrap(),
            arr(&[6], &[true, true, true, true, true, false])
        );
        let i = arr(&[3], &[i64::MAX, -1, 16_777_217]);
        assert_eq!(
            Array::cast(&i, DType::I32, U).unwrap(),
            arr(&[3], &[-1i32, -1, 16_777_217])
        );
        assert_eq!(
            Array::cast(&i, DType::F32, U).unwrap(),
            arr(&[3], &[i64::MAX as f32, -1.0, 16_777_216.0])
        );
        let b = arr(&[2], &[true, false]);
        assert_eq!(
            Array::cast(&b, DType::F32, U).unwrap(),
            arr(&[2], &[1.0f32, 0.0])
        );
        assert_eq!(
            Array::cast(&b, DType::I64, U).unwrap(),
            arr(&[2], &[1i64, 0])
        );
        let x = arr(&[2], &[0.1f32, 3.0e38]);
        assert_eq!(
            Array::cast(&x, DType::F64, U).unwrap(),
            arr(&[2], &[0.1f32 as f64, 3.0e38f32 as f64])
        );
        assert_eq!(Array::cast(&x, DType::F32, U).unwrap(), x);
    }

    #[test]
    fn where_selects_with_broadcasting() {
        let cond = arr(&[2, 1], &[true, false]);
        let a = Array::F64(seq(&[2, 3]));
        let b = arr(&[], &[-1.0f64]);
        let out = Array::where_(&cond, &a, &b, U).unwrap();
        assert_eq!(out, arr(&[2, 3], &[0.0f64, 1.0, 2.0, -1.0, -1.0, -1.0]));
        let e = Array::where_(&a, &a, &b, U).unwrap_err();
        assert_eq!(
            e,
            OpError::DTypeMismatch {
                op: "select",
                lhs: DType::Bool,
                rhs: DType::F64
            }
        );
        let e = Array::where_(&cond, &a, &arr(&[1], &[1i32]), U).unwrap_err();
        assert!(matches!(e, OpError::DTypeMismatch { .. }));
        let e = Array::where_(&arr(&[4], &[true; 4]), &a, &b, U).unwrap_err();
        assert_eq!(
            e.to_string(),
            "select: cannot broadcast shapes [4] and [2, 3]"
        );
    }

    #[test]
    fn to_scalar_f64_reads_one_element_arrays_only() {
        assert_eq!(arr(&[], &[2.5f32]).to_scalar_f64(), Ok(2.5));
        assert_eq!(arr(&[1, 1], &[-3i64]).to_scalar_f64(), Ok(-3.0));
        assert_eq!(arr(&[1], &[true]).to_scalar_f64(), Ok(1.0));
        let e = arr(&[2], &[1i32, 2]).to_scalar_f64().unwrap_err();
        assert_eq!(
            e.to_string(),
            "to_scalar: expected exactly one element, got shape [2]"
        );
        assert!(arr::<f64>(&[0], &[]).to_scalar_f64().is_err());
    }

    // --- allocation accounting ---------------------------------------------

    #[test]
    fn zeros_with_an_astronomical_shape_fails_without_allocating() {
        let e = Array::zeros(DType::F64, &[1 << 40, 1 << 40], U).unwrap_err();
        assert_eq!(
            e,
            OpError::ShapeOverflow {
                shape: vec![1 << 40, 1 << 40]
            }
        );
        assert_eq!(
            e.to_string(),
            "shape [1099511627776, 1099511627776] is too large"
        );
        // 2^53 bytes: would abort the process if it were allocated first.
        let e =
            Array::zeros(DType::F64, &[1 << 20, 1 << 20, 1 << 10], &MaxBytes(1 << 30)).unwrap_err();
        assert_eq!(
            e,
            OpError::TooLarge {
                op: "zeros",
                bytes: 1 << 53,
                limit: 1 << 30
            }
        );
        assert_eq!(
            e.to_string(),
            "zeros: output of 9007199254740992 bytes exceeds the limit of 1073741824 bytes"
        );
    }

    #[test]
    fn max_bytes_refuses_huge_outputs_of_small_inputs_before_allocating() {
        let limit = &MaxBytes(1 << 26);
        let col = Array::zeros(DType::F64, &[1 << 20, 1], limit).unwrap();
        let row = Array::zeros(DType::F64, &[1, 1 << 20], limit).unwrap();
        let e = Array::binary(BinaryOp::Add, &col, &row, limit).unwrap_err();
        assert_eq!(
            e,
            OpError::TooLarge {
                op: "add",
                bytes: 1 << 43,
                limit: 1 << 26
            }
        );
        let e = Array::matmul(&col, &row, limit).unwrap_err();
        assert_eq!(
            e,
            OpError::TooLarge {
                op: "matmul",
                bytes: 1 << 43,
                limit: 1 << 26
            }
        );
        let e = Array::compare(CompareOp::Eq, &col, &row, limit).unwrap_err();
        assert_eq!(
            e,
            OpError::TooLarge {
                op: "eq",
                bytes: 1 << 40,
                limit: 1 << 26
            }
        );
        let e = Array::random_normal(DType::F32, &[1 << 30], 0.0, 1.0, 0, limit).unwrap_err();
        assert!(matches!(
            e,
            OpError::TooLarge {
                op: "random_normal",
                ..
            }
        ));
        assert!(Array::zeros(DType::F64, &[1 << 23], limit).is_ok());
        assert!(Array::zeros(DType::F64, &[(1 << 23) + 1], limit).is_err());
    }

    #[test]
    fn every_op_reserves_exactly_its_output_bytes() {
        let rec = Recorder::default();
        let a = Array::F64(seq(&[2, 3]));
        let v = Array::F64(seq(&[3]));
        let _ = Array::binary(BinaryOp::Add, &a, &v, &rec).unwrap();
        let _ = Array::compare(CompareOp::Lt, &a, &v, &rec).unwrap();
        let _ = Array::unary(UnaryOp::Exp, &a, &rec).unwrap();
        let _ = Array::matmul(&a, &v, &rec).unwrap();
        let _ = Array::reduce(ReduceOp::Argmax, &a, Some(0), false, &rec).unwrap();
        let _ = Array::cast(&a, DType::I32, &rec).unwrap();
        let _ = Array::transpose(&a, None, &rec).unwrap();
        let _ = Array::slice(&a, &[SliceSpec::new(Some(1), None, 1)], &rec).unwrap();
        let _ = Array::concat(&[&a, &a], 0, &rec).unwrap();
        let _ = Array::reshape(&a, &[-1], &rec).unwrap();
        let _ = Array::from_le_bytes(DType::I32, &[5], &[0; 20], &rec).unwrap();
        let _ = Array::ones(DType::Bool, &[7], &rec).unwrap();
        assert_eq!(
            rec.0.into_inner(),
            [
                ("add", 48),
                ("lt", 6),
                ("exp", 48),
                ("matmul", 16),
                ("argmax", 24),
                ("cast", 24),
                ("transpose", 48),
                ("slice", 24),
                ("concat", 96),
                ("reshape", 48),
                ("from_bytes", 20),
                ("ones", 7),
            ]
        );
    }

    #[test]
    fn error_messages_are_lowercase_without_a_trailing_period() {
        let a = Array::F64(seq(&[2, 3]));
        let errors = [
            Array::binary(BinaryOp::Add, &a, &Array::F64(seq(&[4])), U).unwrap_err(),
            Array::binary(BinaryOp::Add, &a, &arr(&[1], &[1i32]), U).unwrap_err(),
            Array::unary(UnaryOp::Exp, &arr(&[1], &[1i32]), U).unwrap_err(),
            Array::binary_scalar(BinaryOp::Div, &arr(&[1], &[1i32]), Scalar::Int(0), false, U)
                .unwrap_err(),
            Array::reduce(ReduceOp::Sum, &a, Some(5), false, U).unwrap_err(),
            Array::from_le_bytes(DType::F32, &[1], &[], U).unwrap_err(),
            Array::zeros(DType::F32, &[u64::MAX, 2], U).unwrap_err(),
            Array::reshape(&a, &[-1, -1], U).unwrap_err(),
            Array::reduce(ReduceOp::Min, &arr::<f64>(&[0], &[]), None, false, U).unwrap_err(),
            Array::zeros(DType::F32, &[8], &MaxBytes(4)).unwrap_err(),
            Array::from_le_bytes(DType::Bool, &[1], &[7], U).unwrap_err(),
            Array::matmul(&a, &a, U).unwrap_err(),
            Array::concat(&[&a, &Array::F64(seq(&[3, 3]))], 1, U).unwrap_err(),
        ];
        for e in errors {
            let msg = e.to_string();
            assert!(!msg.ends_with('.'), "{msg}");
            assert!(msg.starts_with(|c: char| c.is_lowercase()), "{msg}");
        }
    }
}
