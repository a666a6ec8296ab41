//! The dtypes, the scalar, the dtype-dynamic [`Array`] and the element
//! traits the generic kernels are written against.

use std::fmt;

use ndarray::linalg::general_mat_mul;
use ndarray::{ArrayD, ArrayView1, ArrayView2, ArrayViewMut2, Zip};

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
pub(super) use {dispatch, with_dtype};

/// An element type of [`Array`], with everything the generic kernels need.
pub(super) trait Elem: Copy + PartialOrd + fmt::Debug + Send + Sync + 'static {
    const DTYPE: DType;
    const ZERO: Self;
    const ONE: Self;
    /// Result type of `sum`, `prod`, `cumsum` and `cumprod`.
    type Sum: Num;
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
    fn prod_lane(lane: ArrayView1<'_, Self>) -> Self::Sum;
    fn mean_lane(lane: ArrayView1<'_, Self>) -> Self::Mean;

    fn is_nan(self) -> bool {
        self.partial_cmp(&self).is_none()
    }

    /// Neither NaN nor infinite (every integer and bool is).
    fn is_finite(self) -> bool {
        self.to_f64().is_finite()
    }
}

/// Numeric (non-bool) element types.
pub(super) trait Num: Elem {
    /// Integers reject zero divisors and negative exponents up front.
    const INTEGER: bool;
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
    /// `c = a · b` (c is zero on entry).
    fn gemm(a: &ArrayView2<'_, Self>, b: &ArrayView2<'_, Self>, c: &mut ArrayViewMut2<'_, Self>);
}

/// Floating-point element types.
pub(super) trait Float: Num {
    fn exp(a: Self) -> Self;
    fn ln(a: Self) -> Self;
    fn sqrt(a: Self) -> Self;
    fn tanh(a: Self) -> Self;
    fn sigmoid(a: Self) -> Self;
    fn floor(a: Self) -> Self;
    fn ceil(a: Self) -> Self;
    /// Half to even, as NumPy's `round`.
    fn round(a: Self) -> Self;
    fn sin(a: Self) -> Self;
    fn cos(a: Self) -> Self;
    fn tan(a: Self) -> Self;
    fn log1p(a: Self) -> Self;
    fn expm1(a: Self) -> Self;
    /// NumPy's `mod`: the remainder with the divisor's sign.
    fn modulo(a: Self, b: Self) -> Self;
    /// NumPy's `floor_divide`.
    fn floor_divide(a: Self, b: Self) -> Self;
    /// The error function, computed in f64 (libm's `erf`); a dtype that
    /// has a narrower one overrides it.
    fn erf(a: Self) -> Self {
        Self::from_f64(libm::erf(a.to_f64()))
    }
}

fn write_bytes<const N: usize>(bytes: [u8; N], out: &mut [u8]) {
    for (o, b) in out.iter_mut().zip(bytes) {
        *o = b;
    }
}

/// f32 and f64 sums accumulate in f64 for accuracy.
pub(super) fn float_sum<T: Elem>(lane: ArrayView1<'_, T>) -> f64 {
    lane.iter().fold(0.0f64, |s, &v| s + v.to_f64())
}

/// Implements [`Elem`] for a numeric type: `$via` is the widest type of
/// its kind (f64 or i64), through which casts and scalars go.
macro_rules! elem {
    ($t:ident, $v:ident, $zero:literal, $one:literal, $via:ident, $from_via:ident, mean: $mean:ty) => {
        #[allow(clippy::unnecessary_cast)]
        impl Elem for $t {
            const DTYPE: DType = DType::$v;
            const ZERO: Self = $zero;
            const ONE: Self = $one;
            type Sum = $t;
            type Mean = $mean;

            fn get(a: &Array) -> Option<&ArrayD<Self>> {
                match a {
                    Array::$v(x) => Some(x),
                    _ => None,
                }
            }
            fn wrap(a: ArrayD<Self>) -> Array {
                Array::$v(a)
            }
            fn read_le(bytes: &[u8]) -> Self {
                bytes.try_into().map_or($zero, $t::from_le_bytes)
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
                D::$from_via(self as $via)
            }
            fn sum_lane(lane: ArrayView1<'_, Self>) -> Self {
                <$t as Sum>::sum(lane)
            }
            fn prod_lane(lane: ArrayView1<'_, Self>) -> Self {
                lane.iter().fold(Self::ONE, |p, &v| <$t as Num>::mul(p, v))
            }
            fn mean_lane(lane: ArrayView1<'_, Self>) -> $mean {
                (float_sum(lane) / lane.len() as f64) as $mean
            }
        }

        impl From<ArrayD<$t>> for Array {
            fn from(a: ArrayD<$t>) -> Array {
                Array::$v(a)
            }
        }
    };
}

/// How a numeric type sums: floats in f64, integers wrapping.
trait Sum: Sized {
    fn sum(lane: ArrayView1<'_, Self>) -> Self;
}

elem!(f32, F32, 0.0, 1.0, f64, from_f64, mean: f32);
elem!(f64, F64, 0.0, 1.0, f64, from_f64, mean: f64);
elem!(i32, I32, 0, 1, i64, from_i64, mean: f64);
elem!(i64, I64, 0, 1, i64, from_i64, mean: f64);

/// Float arithmetic: IEEE semantics, NaN wins maximum and minimum.
macro_rules! float {
    ($($t:ident),*) => {$(
        impl Sum for $t {
            fn sum(lane: ArrayView1<'_, Self>) -> Self {
                float_sum(lane) as $t
            }
        }

        impl Num for $t {
            const INTEGER: bool = false;
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
            fn floor(a: Self) -> Self {
                a.floor()
            }
            fn ceil(a: Self) -> Self {
                a.ceil()
            }
            fn round(a: Self) -> Self {
                a.round_ties_even()
            }
            fn sin(a: Self) -> Self {
                a.sin()
            }
            fn cos(a: Self) -> Self {
                a.cos()
            }
            fn tan(a: Self) -> Self {
                a.tan()
            }
            fn log1p(a: Self) -> Self {
                a.ln_1p()
            }
            fn expm1(a: Self) -> Self {
                a.exp_m1()
            }
            // NumPy's npy_divmod: fmod, then the sign fixed to the divisor's.
            fn modulo(a: Self, b: Self) -> Self {
                if b == 0.0 {
                    return a % b;
                }
                let m = a % b;
                if m != 0.0 && ((b < 0.0) != (m < 0.0)) {
                    m + b
                } else if m == 0.0 {
                    (0.0 as $t).copysign(b)
                } else {
                    m
                }
            }
            fn floor_divide(a: Self, b: Self) -> Self {
                if b == 0.0 {
                    return a / b;
                }
                let mut m = a % b;
                let mut div = (a - m) / b;
                if m != 0.0 && ((b < 0.0) != (m < 0.0)) {
                    m += b;
                    div -= 1.0;
                }
                let _ = m;
                if div == 0.0 {
                    return (0.0 as $t).copysign(a / b);
                }
                let floor = div.floor();
                if div - floor > 0.5 {
                    floor + 1.0
                } else {
                    floor
                }
            }
        }
    )*};
}

/// Integer `mod` and `floor_divide` with NumPy's sign rules (zero
/// divisors are rejected beforehand).
pub(super) trait IntDiv: Num {
    fn modulo(a: Self, b: Self) -> Self;
    fn floor_divide(a: Self, b: Self) -> Self;
}

/// Integer arithmetic: two's complement, wrapping on overflow.
macro_rules! int {
    ($($t:ident),*) => {$(
        impl Sum for $t {
            fn sum(lane: ArrayView1<'_, Self>) -> Self {
                lane.iter().fold(0, |s: $t, &v| s.wrapping_add(v))
            }
        }

        impl IntDiv for $t {
            fn modulo(a: Self, b: Self) -> Self {
                if b == 0 {
                    return 0;
                }
                let r = a.wrapping_rem(b);
                if r != 0 && ((r < 0) != (b < 0)) {
                    r.wrapping_add(b)
                } else {
                    r
                }
            }
            fn floor_divide(a: Self, b: Self) -> Self {
                if b == 0 {
                    return 0;
                }
                let q = a.wrapping_div(b);
                if a.wrapping_rem(b) != 0 && ((a < 0) != (b < 0)) {
                    q.wrapping_sub(1)
                } else {
                    q
                }
            }
        }

        impl Num for $t {
            const INTEGER: bool = true;
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
                // Zero divisors are rejected beforehand (elementwise.rs).
                if b == 0 {
                    0
                } else {
                    a.wrapping_div(b)
                }
            }
            fn pow(a: Self, b: Self) -> Self {
                // Negative exponents are rejected beforehand (elementwise.rs).
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
    )*};
}

float!(f32, f64);
int!(i32, i64);

impl From<ArrayD<bool>> for Array {
    fn from(a: ArrayD<bool>) -> Array {
        Array::Bool(a)
    }
}

impl Elem for bool {
    const DTYPE: DType = DType::Bool;
    const ZERO: Self = false;
    const ONE: Self = true;
    type Sum = i64;
    type Mean = f64;

    fn get(a: &Array) -> Option<&ArrayD<Self>> {
        match a {
            Array::Bool(x) => Some(x),
            _ => None,
        }
    }
    fn wrap(a: ArrayD<Self>) -> Array {
        Array::Bool(a)
    }
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
    fn prod_lane(lane: ArrayView1<'_, Self>) -> i64 {
        i64::from(lane.iter().all(|&v| v))
    }
    fn mean_lane(lane: ArrayView1<'_, Self>) -> f64 {
        lane.iter().filter(|&&v| v).count() as f64 / lane.len() as f64
    }
}

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
}
