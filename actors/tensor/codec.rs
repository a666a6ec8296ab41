//! Between the wire (`schema/tensor.capnp`) and [`ops`](super::ops).

use capnp::NotInSchema;

use super::ops::{self, Alloc, Array, DType, OpError, Scalar};
use crate::schema::tensor_capnp as wire;
use crate::Error;

impl From<OpError> for Error {
    fn from(e: OpError) -> Self {
        match e {
            OpError::TooLarge { bytes, limit, .. } => Error::limit("tensor size", bytes, limit),
            OpError::Budget {
                what,
                requested,
                limit,
                ..
            } => Error::limit(what, requested, limit),
            other => Error::invalid(other.to_string()),
        }
    }
}

pub(crate) fn dtype(d: Result<wire::DType, NotInSchema>) -> Result<DType, Error> {
    Ok(match tag("dtype", d)? {
        wire::DType::F32 => DType::F32,
        wire::DType::F64 => DType::F64,
        wire::DType::I32 => DType::I32,
        wire::DType::I64 => DType::I64,
        wire::DType::Bool => DType::Bool,
    })
}

pub(crate) fn to_wire(d: DType) -> wire::DType {
    match d {
        DType::F32 => wire::DType::F32,
        DType::F64 => wire::DType::F64,
        DType::I32 => wire::DType::I32,
        DType::I64 => wire::DType::I64,
        DType::Bool => wire::DType::Bool,
    }
}

/// Reads an enum field, naming the field in the error for an unknown tag.
pub(crate) fn tag<T>(what: &str, v: Result<T, NotInSchema>) -> Result<T, Error> {
    v.map_err(|NotInSchema(tag)| Error::invalid(format!("unknown {what} tag {tag}")))
}

/// Maps an op enum both ways between the wire and `ops`.
macro_rules! op_enum {
    ($from:ident, $to:ident, $what:literal, $ty:ident { $($v:ident),* $(,)? }) => {
        pub(crate) fn $from(v: Result<wire::$ty, NotInSchema>) -> Result<ops::$ty, Error> {
            Ok(match tag($what, v)? {
                $(wire::$ty::$v => ops::$ty::$v,)*
            })
        }

        pub(crate) fn $to(v: ops::$ty) -> wire::$ty {
            match v {
                $(ops::$ty::$v => wire::$ty::$v,)*
            }
        }
    };
}

op_enum!(
    binary_op,
    binary_to_wire,
    "binary op",
    BinaryOp {
        Add,
        Sub,
        Mul,
        Div,
        Pow,
        Maximum,
        Minimum
    }
);
op_enum!(
    unary_op,
    unary_to_wire,
    "unary op",
    UnaryOp {
        Neg,
        Abs,
        Exp,
        Log,
        Sqrt,
        Relu,
        Sigmoid,
        Tanh
    }
);
op_enum!(
    compare_op,
    compare_to_wire,
    "compare op",
    CompareOp {
        Eq,
        Ne,
        Lt,
        Le,
        Gt,
        Ge
    }
);
op_enum!(
    reduce_op,
    reduce_to_wire,
    "reduce op",
    ReduceOp {
        Sum,
        Mean,
        Max,
        Min,
        Argmax,
        Argmin
    }
);

pub(crate) fn scalar(r: wire::scalar::Reader<'_>) -> Result<Scalar, Error> {
    Ok(match tag("scalar", r.which())? {
        wire::scalar::Float(f) => Scalar::Float(f),
        wire::scalar::Int(i) => Scalar::Int(i),
        wire::scalar::Bool(b) => Scalar::Bool(b),
    })
}

pub(crate) fn set_scalar(mut b: wire::scalar::Builder<'_>, s: Scalar) {
    match s {
        Scalar::Float(f) => b.set_float(f),
        Scalar::Int(i) => b.set_int(i),
        Scalar::Bool(v) => b.set_bool(v),
    }
}

pub(crate) fn shape(r: capnp::primitive_list::Reader<'_, u64>) -> Vec<u64> {
    r.iter().collect()
}

/// Decodes tensor data, checking it against its shape and dtype.
pub(crate) fn decode(r: wire::tensor_data::Reader<'_>, alloc: &dyn Alloc) -> Result<Array, Error> {
    let dtype = dtype(r.get_dtype())?;
    let shape = shape(r.get_shape()?);
    let data = r.get_data()?;
    Ok(Array::from_le_bytes(dtype, &shape, data, alloc)?)
}

/// Encodes `a` into `b`, writing the elements straight into the message.
pub(crate) fn encode(a: &Array, mut b: wire::tensor_data::Builder<'_>) -> Result<(), Error> {
    b.set_dtype(to_wire(a.dtype()));
    let shape = a.shape();
    set_shape(b.reborrow().init_shape(list_len(shape.len())?), shape);
    let n = a.nbytes();
    let data = b.init_data(list_len(n)?);
    a.write_le_bytes(data)?;
    Ok(())
}

/// Writes a shape into a list of the right length.
pub(crate) fn set_shape(mut list: capnp::primitive_list::Builder<'_, u64>, shape: &[usize]) {
    for (i, d) in shape.iter().enumerate() {
        list.set(i as u32, *d as u64);
    }
}

/// A byte count as the length of one Data or List field, which holds
/// fewer than 2^29 elements.
pub(crate) fn list_len(n: usize) -> Result<u32, Error> {
    // One Data or List field holds fewer than 2^29 elements.
    const MAX: usize = (1 << 29) - 1;
    if n > MAX {
        return Err(Error::limit("single message field (bytes)", n, MAX));
    }
    Ok(n as u32)
}
