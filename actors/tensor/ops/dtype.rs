//! The dtypes, the scalar, the dtype-dynamic [`Array`], the element
//! traits the generic kernels are written against, and NumPy's promotion
//! table. The traits' impls are in `elem.rs`.

use std::fmt;

use half::{bf16, f16};
use ndarray::{ArrayD, ArrayView1, ArrayView2, ArrayViewMut2};

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
    /// 16-bit IEEE 754 half float ([`half::f16`], NumPy's `float16`);
    /// computed through f32 and rounded back after every op, as NumPy does.
    F16,
    /// bfloat16 ([`half::bf16`]: f32's exponent, 8 bits of mantissa);
    /// computed through f32 like F16. NumPy has no such dtype.
    Bf16,
    /// 8-bit unsigned integer.
    U8,
    /// 8-bit signed integer.
    I8,
    /// 16-bit signed integer.
    I16,
    /// 16-bit unsigned integer.
    U16,
    /// 32-bit unsigned integer.
    U32,
    /// 64-bit unsigned integer.
    U64,
}

/// What kind of number a [`DType`] holds (NumPy's `dtype.kind`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// `bool`.
    Bool,
    /// A signed integer.
    Signed,
    /// An unsigned integer.
    Unsigned,
    /// A float.
    Float,
}

impl DType {
    /// Every dtype, in the schema's order.
    pub const ALL: [DType; 13] = [
        DType::F32,
        DType::F64,
        DType::I32,
        DType::I64,
        DType::Bool,
        DType::F16,
        DType::Bf16,
        DType::U8,
        DType::I8,
        DType::I16,
        DType::U16,
        DType::U32,
        DType::U64,
    ];

    /// Size of one element in bytes, in memory and in the wire format.
    pub fn size(self) -> usize {
        match self {
            DType::Bool | DType::U8 | DType::I8 => 1,
            DType::F16 | DType::Bf16 | DType::I16 | DType::U16 => 2,
            DType::F32 | DType::I32 | DType::U32 => 4,
            DType::F64 | DType::I64 | DType::U64 => 8,
        }
    }

    /// Lowercase name, as in the schema: `"f32"`, `"bf16"`, `"u8"`,
    /// `"bool"` ...
    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::F64 => "f64",
            DType::I32 => "i32",
            DType::I64 => "i64",
            DType::Bool => "bool",
            DType::F16 => "f16",
            DType::Bf16 => "bf16",
            DType::U8 => "u8",
            DType::I8 => "i8",
            DType::I16 => "i16",
            DType::U16 => "u16",
            DType::U32 => "u32",
            DType::U64 => "u64",
        }
    }

    /// NumPy's name of the dtype (`"float16"`, `"uint8"` ...), or `None`
    /// for bf16, which NumPy lacks.
    pub fn numpy_name(self) -> Option<&'static str> {
        Some(match self {
            DType::F32 => "float32",
            DType::F64 => "float64",
            DType::I32 => "int32",
            DType::I64 => "int64",
            DType::Bool => "bool",
            DType::F16 => "float16",
            DType::Bf16 => return None,
            DType::U8 => "uint8",
            DType::I8 => "int8",
            DType::I16 => "int16",
            DType::U16 => "uint16",
            DType::U32 => "uint32",
            DType::U64 => "uint64",
        })
    }

    /// The kind of number it holds.
    pub fn kind(self) -> Kind {
        match self {
            DType::Bool => Kind::Bool,
            DType::F16 | DType::Bf16 | DType::F32 | DType::F64 => Kind::Float,
            DType::I8 | DType::I16 | DType::I32 | DType::I64 => Kind::Signed,
            DType::U8 | DType::U16 | DType::U32 | DType::U64 => Kind::Unsigned,
        }
    }

    /// Whether this is a float dtype (f16, bf16, f32 or f64).
    pub fn is_float(self) -> bool {
        self.kind() == Kind::Float
    }

    /// Whether this is an integer dtype, signed or not.
    pub fn is_int(self) -> bool {
        matches!(self.kind(), Kind::Signed | Kind::Unsigned)
    }

    /// The values an integer dtype holds, as the f64 range `lo..hi` (`hi`
    /// excluded, both exact powers of two); `None` for floats and bool.
    pub fn int_range(self) -> Option<(f64, f64)> {
        let bits = 8 * self.size() as i32;
        match self.kind() {
            Kind::Signed => Some((-(2f64.powi(bits - 1)), 2f64.powi(bits - 1))),
            Kind::Unsigned => Some((0.0, 2f64.powi(bits))),
            Kind::Float | Kind::Bool => None,
        }
    }

    /// The smallest and largest value of an integer dtype, exactly; `None`
    /// for floats and bool.
    pub fn int_bounds(self) -> Option<(i128, i128)> {
        let bits = 8 * self.size() as u32;
        match self.kind() {
            Kind::Signed => Some((-(1i128 << (bits - 1)), (1i128 << (bits - 1)) - 1)),
            Kind::Unsigned => Some((0, (1i128 << bits) - 1)),
            Kind::Float | Kind::Bool => None,
        }
    }

    /// Parses a name produced by [`DType::name`]; NumPy's names
    /// (`"float32"`, `"int64"`, `"uint8"`, `"float16"`, `"bool_"` ...) and
    /// `"bfloat16"` are accepted too.
    ///
    /// ```
    /// use capactor::actors::tensor::DType;
    /// assert_eq!(DType::parse("uint8"), Some(DType::U8));
    /// assert_eq!(DType::parse("bf16"), Some(DType::Bf16));
    /// assert_eq!(DType::parse("complex64"), None);
    /// ```
    pub fn parse(s: &str) -> Option<DType> {
        if let Some(d) = DType::ALL.into_iter().find(|d| d.name() == s) {
            return Some(d);
        }
        if let Some(d) = DType::ALL.into_iter().find(|d| d.numpy_name() == Some(s)) {
            return Some(d);
        }
        Some(match s {
            "bfloat16" => DType::Bf16,
            "bool_" => DType::Bool,
            "half" => DType::F16,
            _ => return None,
        })
    }

    /// The dtype of a binary op's result on arrays of `self` and `other`:
    /// NumPy's `np.result_type` (its promotion table), extended to bf16.
    ///
    /// Bool gives way to anything; integers of one signedness widen to the
    /// larger; a signed and an unsigned integer meet in the smallest signed
    /// integer holding both (u64 with any signed integer has none: f64, as
    /// NumPy); an integer and a float give the larger of the float and the
    /// smallest float that NumPy deems to hold the integer (f16 for 8-bit,
    /// f32 for 16-bit, f64 for wider integers); floats widen. bf16 takes
    /// f16's place in that, and bf16 with f16 gives f32 (as `ml_dtypes`).
    ///
    /// ```
    /// use capactor::actors::tensor::DType;
    /// assert_eq!(DType::I8.promote(DType::U8), DType::I16);
    /// assert_eq!(DType::U64.promote(DType::I64), DType::F64);
    /// assert_eq!(DType::F16.promote(DType::I16), DType::F32);
    /// assert_eq!(DType::Bf16.promote(DType::F16), DType::F32);
    /// ```
    pub fn promote(self, other: DType) -> DType {
        use Kind::*;
        let (a, b) = (self, other);
        if a == b {
            return a;
        }
        let bigger = |x: DType, y: DType| if x.size() >= y.size() { x } else { y };
        match (a.kind(), b.kind()) {
            (Bool, _) => b,
            (_, Bool) => a,
            (Signed, Signed) | (Unsigned, Unsigned) => bigger(a, b),
            (Signed, Unsigned) | (Unsigned, Signed) => {
                let (s, u) = if a.kind() == Signed { (a, b) } else { (b, a) };
                if s.size() > u.size() {
                    s
                } else {
                    match u.size() {
                        1 => DType::I16,
                        2 => DType::I32,
                        4 => DType::I64,
                        _ => DType::F64,
                    }
                }
            }
            (Float, Float) => match (a, b) {
                (DType::F16, DType::Bf16) | (DType::Bf16, DType::F16) => DType::F32,
                _ => bigger(a, b),
            },
            (Float, _) | (_, Float) => {
                let (f, i) = if a.is_float() { (a, b) } else { (b, a) };
                let holds = match i.size() {
                    1 => f,
                    2 => DType::F32,
                    _ => DType::F64,
                };
                // An f16 or bf16 meeting a wider float: the wider one.
                if holds.size() >= f.size() {
                    holds
                } else {
                    f
                }
            }
        }
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A single value used as a fill value or as a scalar operand.
///
/// When applied to an array it is converted to the array's dtype (NumPy 2's
/// "weak" Python scalars, NEP 50, except that a float scalar never turns an
/// integer array into floats): a float scalar is accepted by an integer
/// array only if it is integral and in range, an integer scalar only if it
/// fits, and a bool scalar only by a bool array (which accepts nothing
/// else).
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
    /// An array of half floats.
    F16(ArrayD<f16>),
    /// An array of bfloat16s.
    Bf16(ArrayD<bf16>),
    /// An array of 8-bit unsigned integers.
    U8(ArrayD<u8>),
    /// An array of 8-bit integers.
    I8(ArrayD<i8>),
    /// An array of 16-bit integers.
    I16(ArrayD<i16>),
    /// An array of 16-bit unsigned integers.
    U16(ArrayD<u16>),
    /// An array of 32-bit unsigned integers.
    U32(ArrayD<u32>),
    /// An array of 64-bit unsigned integers.
    U64(ArrayD<u64>),
}

/// Matches an `&Array`, binding the typed ndarray and evaluating a body
/// for it:
///
/// * `dispatch!(a, x => body)`: one body for every dtype;
/// * `dispatch!(a, x => num, bool b => other)`: one for the numeric dtypes
///   (`Num`), one for bool;
/// * `dispatch!(a, float x => f, int i => n, bool b => other)`: one for
///   the floats (`Float`), one for the integers (`Num + IntDiv`), one for
///   bool.
///
/// A new dtype is added here (and in `with_dtype!`), never in the ops.
macro_rules! dispatch {
    ($a:expr, float $f:ident => $fl:expr, int $i:ident => $int:expr, bool $b:ident => $bool:expr) => {
        match $a {
            Array::F16($f) => $fl,
            Array::Bf16($f) => $fl,
            Array::F32($f) => $fl,
            Array::F64($f) => $fl,
            Array::I8($i) => $int,
            Array::I16($i) => $int,
            Array::I32($i) => $int,
            Array::I64($i) => $int,
            Array::U8($i) => $int,
            Array::U16($i) => $int,
            Array::U32($i) => $int,
            Array::U64($i) => $int,
            Array::Bool($b) => $bool,
        }
    };
    ($a:expr, $x:ident => $num:expr, bool $b:ident => $bool:expr) => {
        dispatch!($a, float $x => $num, int $x => $num, bool $b => $bool)
    };
    ($a:expr, $x:ident => $body:expr) => {
        dispatch!($a, $x => $body, bool $x => $body)
    };
}

/// Matches a [`DType`], aliasing the element type to `$t` inside the body:
/// `with_dtype!(d, T => body)` for every dtype, or
/// `with_dtype!(d, float T => f, int T => n, bool => other)` by kind.
macro_rules! with_dtype {
    ($d:expr, float $t:ident => $fl:expr, int $ti:ident => $int:expr, bool => $bool:expr) => {
        match $d {
            DType::F16 => { type $t = half::f16; $fl }
            DType::Bf16 => { type $t = half::bf16; $fl }
            DType::F32 => { type $t = f32; $fl }
            DType::F64 => { type $t = f64; $fl }
            DType::I8 => { type $ti = i8; $int }
            DType::I16 => { type $ti = i16; $int }
            DType::I32 => { type $ti = i32; $int }
            DType::I64 => { type $ti = i64; $int }
            DType::U8 => { type $ti = u8; $int }
            DType::U16 => { type $ti = u16; $int }
            DType::U32 => { type $ti = u32; $int }
            DType::U64 => { type $ti = u64; $int }
            DType::Bool => $bool,
        }
    };
    ($d:expr, $t:ident => $body:expr) => {
        with_dtype!($d, float $t => $body, int $t => $body, bool => {
            type $t = bool;
            $body
        })
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
    fn from_u64(v: u64) -> Self;
    fn from_bool(v: bool) -> Self;
    /// `self as D`, with the semantics of [`Array::cast`]: floats go
    /// through f64, signed integers through i64, unsigned ones through
    /// u64.
    fn cast<D: Elem>(self) -> D;
    fn sum_lane(lane: ArrayView1<'_, Self>) -> Self::Sum;
    fn prod_lane(lane: ArrayView1<'_, Self>) -> Self::Sum;
    fn mean_lane(lane: ArrayView1<'_, Self>) -> Self::Mean;
    /// The elements' bytes in memory (little-endian on a little-endian
    /// host).
    fn slice_bytes(s: &[Self]) -> &[u8];
    /// The same, writable; `None` for bool, whose bytes must stay 0 or 1.
    fn slice_bytes_mut(s: &mut [Self]) -> Option<&mut [u8]>;
    /// `n` zeros, allocated zeroed (so pages are touched only when
    /// written).
    fn zeroed_vec(n: usize) -> Vec<Self>;

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

/// Integer `mod` and `floor_divide` with NumPy's sign rules (zero
/// divisors are rejected beforehand).
pub(super) trait IntDiv: Num {
    fn modulo(a: Self, b: Self) -> Self;
    fn floor_divide(a: Self, b: Self) -> Self;
}

/// Float sums accumulate in f64 for accuracy.
pub(super) fn float_sum<T: Elem>(lane: ArrayView1<'_, T>) -> f64 {
    lane.iter().fold(0.0f64, |s, &v| s + v.to_f64())
}

impl Array {
    /// The element type.
    pub fn dtype(&self) -> DType {
        fn of<T: Elem>(_: &ArrayD<T>) -> DType {
            T::DTYPE
        }
        dispatch!(self, x => of(x))
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
