//! The element traits' impls for every dtype: floats (f32, f64), half
//! floats computed through f32 (f16, bf16), integers (signed and unsigned,
//! wrapping) and bool.

use half::{bf16, f16};
use ndarray::linalg::general_mat_mul;
use ndarray::{ArrayD, ArrayView1, ArrayView2, ArrayViewMut2, Zip};

use super::dtype::{float_sum, Array, DType, Elem, Float, IntDiv, Num};

fn write_bytes<const N: usize>(bytes: [u8; N], out: &mut [u8]) {
    for (o, b) in out.iter_mut().zip(bytes) {
        *o = b;
    }
}

/// How a numeric type sums: floats in f64, integers wrapping.
trait Sum: Sized {
    fn sum(lane: ArrayView1<'_, Self>) -> Self;
}

/// Implements [`Elem`] for a numeric type: `$via` is the widest type of
/// its kind (f64, i64 or u64), through which casts go; `$to_f64` and
/// `$from_f64` convert to and from f64.
macro_rules! elem {
    ($t:ident, $v:ident, $zero:expr, $one:expr, $via:ident, $from_via:ident,
     to_f64: $to_f64:expr, from_f64: $from_f64:expr, mean: $mean:ty) => {
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
                let f: fn($t) -> f64 = $to_f64;
                f(self)
            }
            fn from_f64(v: f64) -> Self {
                let f: fn(f64) -> $t = $from_f64;
                f(v)
            }
            fn from_i64(v: i64) -> Self {
                Self::from_wide_i64(v)
            }
            fn from_u64(v: u64) -> Self {
                Self::from_wide_u64(v)
            }
            fn from_bool(v: bool) -> Self {
                if v {
                    $one
                } else {
                    $zero
                }
            }
            fn cast<D: Elem>(self) -> D {
                D::$from_via(self.to_via())
            }
            fn sum_lane(lane: ArrayView1<'_, Self>) -> Self {
                <$t as Sum>::sum(lane)
            }
            fn prod_lane(lane: ArrayView1<'_, Self>) -> Self {
                lane.iter().fold(Self::ONE, |p, &v| <$t as Num>::mul(p, v))
            }
            fn mean_lane(lane: ArrayView1<'_, Self>) -> $mean {
                <$mean as Elem>::from_f64(float_sum(lane) / lane.len() as f64)
            }
            fn slice_bytes(s: &[Self]) -> &[u8] {
                bytemuck::cast_slice(s)
            }
            fn slice_bytes_mut(s: &mut [Self]) -> Option<&mut [u8]> {
                Some(bytemuck::cast_slice_mut(s))
            }
            fn zeroed_vec(n: usize) -> Vec<Self> {
                bytemuck::zeroed_vec(n)
            }
        }

        impl From<ArrayD<$t>> for Array {
            fn from(a: ArrayD<$t>) -> Array {
                Array::$v(a)
            }
        }
    };
}

/// Conversions from the widest integers, with `as` semantics (wrapping
/// between integers, rounding to nearest for floats).
trait FromWide: Sized {
    fn from_wide_i64(v: i64) -> Self;
    fn from_wide_u64(v: u64) -> Self;
}

/// The value in the widest type of its kind, for [`Elem::cast`].
trait ToVia<V> {
    fn to_via(self) -> V;
}

macro_rules! wide_prim {
    ($($t:ident as $via:ident),*) => {$(
        #[allow(clippy::unnecessary_cast)]
        impl FromWide for $t {
            fn from_wide_i64(v: i64) -> Self {
                v as $t
            }
            fn from_wide_u64(v: u64) -> Self {
                v as $t
            }
        }
        #[allow(clippy::unnecessary_cast)]
        impl ToVia<$via> for $t {
            fn to_via(self) -> $via {
                self as $via
            }
        }
    )*};
}
wide_prim!(
    f32 as f64, f64 as f64, i8 as i64, i16 as i64, i32 as i64, i64 as i64, u8 as u64, u16 as u64,
    u32 as u64, u64 as u64
);

macro_rules! wide_half {
    ($($t:ident),*) => {$(
        impl FromWide for $t {
            fn from_wide_i64(v: i64) -> Self {
                $t::from_f64(v as f64)
            }
            fn from_wide_u64(v: u64) -> Self {
                $t::from_f64(v as f64)
            }
        }
        impl ToVia<f64> for $t {
            fn to_via(self) -> f64 {
                self.to_f64()
            }
        }
    )*};
}
wide_half!(f16, bf16);

elem!(f32, F32, 0.0, 1.0, f64, from_f64, to_f64: |v| v as f64, from_f64: |v| v as f32, mean: f32);
elem!(f64, F64, 0.0, 1.0, f64, from_f64, to_f64: |v| v, from_f64: |v| v, mean: f64);
elem!(f16, F16, f16::ZERO, f16::ONE, f64, from_f64, to_f64: f16::to_f64, from_f64: f16::from_f64, mean: f16);
elem!(bf16, Bf16, bf16::ZERO, bf16::ONE, f64, from_f64, to_f64: bf16::to_f64, from_f64: bf16::from_f64, mean: bf16);
elem!(i8, I8, 0, 1, i64, from_i64, to_f64: |v| v as f64, from_f64: |v| v as i8, mean: f64);
elem!(i16, I16, 0, 1, i64, from_i64, to_f64: |v| v as f64, from_f64: |v| v as i16, mean: f64);
elem!(i32, I32, 0, 1, i64, from_i64, to_f64: |v| v as f64, from_f64: |v| v as i32, mean: f64);
elem!(i64, I64, 0, 1, i64, from_i64, to_f64: |v| v as f64, from_f64: |v| v as i64, mean: f64);
elem!(u8, U8, 0, 1, u64, from_u64, to_f64: |v| v as f64, from_f64: |v| v as u8, mean: f64);
elem!(u16, U16, 0, 1, u64, from_u64, to_f64: |v| v as f64, from_f64: |v| v as u16, mean: f64);
elem!(u32, U32, 0, 1, u64, from_u64, to_f64: |v| v as f64, from_f64: |v| v as u32, mean: f64);
elem!(u64, U64, 0, 1, u64, from_u64, to_f64: |v| v as f64, from_f64: |v| v as u64, mean: f64);

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

float!(f32, f64);

/// f16 and bf16: every op computes in f32 and rounds the result back, as
/// NumPy's float16 loops do; sums accumulate in f64 like f32's, and matmul
/// accumulates in f32.
macro_rules! half_float {
    ($($t:ident),*) => {$(
        impl Sum for $t {
            fn sum(lane: ArrayView1<'_, Self>) -> Self {
                $t::from_f64(float_sum(lane))
            }
        }

        impl Num for $t {
            const INTEGER: bool = false;
            fn add(a: Self, b: Self) -> Self {
                $t::from_f32(a.to_f32() + b.to_f32())
            }
            fn sub(a: Self, b: Self) -> Self {
                $t::from_f32(a.to_f32() - b.to_f32())
            }
            fn mul(a: Self, b: Self) -> Self {
                $t::from_f32(a.to_f32() * b.to_f32())
            }
            fn div(a: Self, b: Self) -> Self {
                $t::from_f32(a.to_f32() / b.to_f32())
            }
            fn pow(a: Self, b: Self) -> Self {
                $t::from_f32(a.to_f32().powf(b.to_f32()))
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
                $t::from_bits(a.to_bits() & 0x7fff)
            }
            fn relu(a: Self) -> Self {
                if a < $t::ZERO {
                    $t::ZERO
                } else {
                    a
                }
            }
            fn gemm(
                a: &ArrayView2<'_, Self>,
                b: &ArrayView2<'_, Self>,
                c: &mut ArrayViewMut2<'_, Self>,
            ) {
                let (a32, b32) = (a.mapv($t::to_f32), b.mapv($t::to_f32));
                let mut c32 = ndarray::Array2::<f32>::zeros(c.raw_dim());
                general_mat_mul(1.0, &a32, &b32, 0.0, &mut c32);
                Zip::from(c).and(&c32).for_each(|c, &v| *c = $t::from_f32(v));
            }
        }

        impl Float for $t {
            fn exp(a: Self) -> Self {
                $t::from_f32(a.to_f32().exp())
            }
            fn ln(a: Self) -> Self {
                $t::from_f32(a.to_f32().ln())
            }
            fn sqrt(a: Self) -> Self {
                $t::from_f32(a.to_f32().sqrt())
            }
            fn tanh(a: Self) -> Self {
                $t::from_f32(a.to_f32().tanh())
            }
            fn sigmoid(a: Self) -> Self {
                $t::from_f32(<f32 as Float>::sigmoid(a.to_f32()))
            }
            fn floor(a: Self) -> Self {
                $t::from_f32(a.to_f32().floor())
            }
            fn ceil(a: Self) -> Self {
                $t::from_f32(a.to_f32().ceil())
            }
            fn round(a: Self) -> Self {
                $t::from_f32(a.to_f32().round_ties_even())
            }
            fn sin(a: Self) -> Self {
                $t::from_f32(a.to_f32().sin())
            }
            fn cos(a: Self) -> Self {
                $t::from_f32(a.to_f32().cos())
            }
            fn tan(a: Self) -> Self {
                $t::from_f32(a.to_f32().tan())
            }
            fn log1p(a: Self) -> Self {
                $t::from_f32(a.to_f32().ln_1p())
            }
            fn expm1(a: Self) -> Self {
                $t::from_f32(a.to_f32().exp_m1())
            }
            fn modulo(a: Self, b: Self) -> Self {
                $t::from_f32(<f32 as Float>::modulo(a.to_f32(), b.to_f32()))
            }
            fn floor_divide(a: Self, b: Self) -> Self {
                $t::from_f32(<f32 as Float>::floor_divide(a.to_f32(), b.to_f32()))
            }
        }
    )*};
}

half_float!(f16, bf16);

/// Integer arithmetic: two's complement, wrapping on overflow. `abs` is
/// given per signedness (the identity for unsigned integers).
macro_rules! int {
    ($($t:ident abs $abs:expr),*) => {$(
        impl Sum for $t {
            fn sum(lane: ArrayView1<'_, Self>) -> Self {
                lane.iter().fold(0, |s: $t, &v| s.wrapping_add(v))
            }
        }

        #[allow(unused_comparisons)]
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
                let f: fn($t) -> $t = $abs;
                f(a)
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

int!(
    i8 abs i8::wrapping_abs,
    i16 abs i16::wrapping_abs,
    i32 abs i32::wrapping_abs,
    i64 abs i64::wrapping_abs,
    u8 abs |v| v,
    u16 abs |v| v,
    u32 abs |v| v,
    u64 abs |v| v
);

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
    fn from_u64(v: u64) -> Self {
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
    fn slice_bytes(s: &[Self]) -> &[u8] {
        // SAFETY: `bool` has the size and alignment of `u8` and every
        // `bool` is a valid `u8` (0 or 1).
        unsafe { std::slice::from_raw_parts(s.as_ptr().cast::<u8>(), s.len()) }
    }
    fn slice_bytes_mut(_: &mut [Self]) -> Option<&mut [u8]> {
        None
    }
    fn zeroed_vec(n: usize) -> Vec<Self> {
        vec![false; n]
    }
}
