//! What the Rust client takes as tensor data and operands: the element
//! types a [`RemoteTensor`] is built from and read back as, scalars from
//! Rust numbers, and `+ - * /` and unary `-` on remote tensors.

use ndarray::ArrayD;

use super::ops::{Array, BinaryOp, DType, Scalar, UnaryOp};
use super::RemoteTensor;

/// Element types a [`RemoteTensor`] can be built from and read back as.
pub trait TensorElement: Copy + 'static {
    /// The matching dtype.
    const DTYPE: DType;
    /// Wraps an array of this type.
    fn wrap(a: ArrayD<Self>) -> Array;
    /// Unwraps an array of this type, if it is one.
    fn unwrap(a: Array) -> Option<ArrayD<Self>>;
}

macro_rules! element {
    ($t:ty, $v:ident) => {
        impl TensorElement for $t {
            const DTYPE: DType = DType::$v;
            fn wrap(a: ArrayD<Self>) -> Array {
                Array::$v(a)
            }
            fn unwrap(a: Array) -> Option<ArrayD<Self>> {
                match a {
                    Array::$v(a) => Some(a),
                    _ => None,
                }
            }
        }
    };
}

element!(f32, F32);
element!(f64, F64);
element!(i32, I32);
element!(i64, I64);
element!(bool, Bool);
element!(half::f16, F16);
element!(half::bf16, Bf16);
element!(u8, U8);
element!(i8, I8);
element!(i16, I16);
element!(u16, U16);
element!(u32, U32);
element!(u64, U64);

macro_rules! operator {
    ($trait:ident, $method:ident, $op:ident) => {
        impl std::ops::$trait<&RemoteTensor> for &RemoteTensor {
            type Output = RemoteTensor;
            fn $method(self, rhs: &RemoteTensor) -> RemoteTensor {
                self.binary(BinaryOp::$op, rhs)
            }
        }
        impl std::ops::$trait<RemoteTensor> for RemoteTensor {
            type Output = RemoteTensor;
            fn $method(self, rhs: RemoteTensor) -> RemoteTensor {
                self.binary(BinaryOp::$op, &rhs)
            }
        }
        impl std::ops::$trait<&RemoteTensor> for RemoteTensor {
            type Output = RemoteTensor;
            fn $method(self, rhs: &RemoteTensor) -> RemoteTensor {
                self.binary(BinaryOp::$op, rhs)
            }
        }
        impl std::ops::$trait<RemoteTensor> for &RemoteTensor {
            type Output = RemoteTensor;
            fn $method(self, rhs: RemoteTensor) -> RemoteTensor {
                self.binary(BinaryOp::$op, &rhs)
            }
        }
        impl<S: Into<Scalar>> std::ops::$trait<S> for &RemoteTensor {
            type Output = RemoteTensor;
            fn $method(self, rhs: S) -> RemoteTensor {
                self.binary_scalar(BinaryOp::$op, rhs.into(), false)
            }
        }
        impl<S: Into<Scalar>> std::ops::$trait<S> for RemoteTensor {
            type Output = RemoteTensor;
            fn $method(self, rhs: S) -> RemoteTensor {
                self.binary_scalar(BinaryOp::$op, rhs.into(), false)
            }
        }
    };
}

operator!(Add, add, Add);
operator!(Sub, sub, Sub);
operator!(Mul, mul, Mul);
operator!(Div, div, Div);

impl std::ops::Neg for &RemoteTensor {
    type Output = RemoteTensor;
    fn neg(self) -> RemoteTensor {
        self.unary(UnaryOp::Neg)
    }
}

impl std::ops::Neg for RemoteTensor {
    type Output = RemoteTensor;
    fn neg(self) -> RemoteTensor {
        self.unary(UnaryOp::Neg)
    }
}

macro_rules! into_scalar {
    ($($t:ty => $v:ident as $as:ty),*) => {$(
        impl From<$t> for Scalar {
            fn from(x: $t) -> Scalar {
                Scalar::$v(x as $as)
            }
        }
    )*};
}

into_scalar!(
    f32 => Float as f64,
    f64 => Float as f64,
    i32 => Int as i64,
    i64 => Int as i64,
    i8 => Int as i64,
    i16 => Int as i64,
    u8 => Int as i64,
    u16 => Int as i64,
    u32 => Int as i64
);

impl From<half::f16> for Scalar {
    fn from(x: half::f16) -> Scalar {
        Scalar::Float(x.to_f64())
    }
}

impl From<half::bf16> for Scalar {
    fn from(x: half::bf16) -> Scalar {
        Scalar::Float(x.to_f64())
    }
}

impl From<bool> for Scalar {
    fn from(b: bool) -> Scalar {
        Scalar::Bool(b)
    }
}
