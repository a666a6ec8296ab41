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

/// Every dtype with its wire enumerant, once.
macro_rules! dtypes {
    ($($v:ident),*) => {
        pub(crate) fn dtype(d: Result<wire::DType, NotInSchema>) -> Result<DType, Error> {
            Ok(match tag("dtype", d)? {
                $(wire::DType::$v => DType::$v,)*
            })
        }

        pub(crate) fn to_wire(d: DType) -> wire::DType {
            match d {
                $(DType::$v => wire::DType::$v,)*
            }
        }
    };
}

dtypes!(F32, F64, I32, I64, Bool, F16, Bf16, U8, I8, I16, U16, U32, U64);

/// Reads an enum field, naming the field in the error for an unknown tag.
pub(crate) fn tag<T>(what: &str, v: Result<T, NotInSchema>) -> Result<T, Error> {
    v.map_err(|NotInSchema(tag)| Error::invalid(format!("unknown {what} tag {tag}")))
}

/// Expands the op table (`ops/table.rs`) into the mapping of each op enum
/// both ways between the wire and `ops`.
macro_rules! codec_enums {
    ($($family:ident: {
        $(#[$edoc:meta])* $enum:ident $what:literal $from:ident $to:ident;
        $($(#[$doc:meta])* $v:ident $name:literal [$($m:ident),*];)*
    })*) => {$(
        pub(crate) fn $from(v: Result<wire::$enum, NotInSchema>) -> Result<ops::$enum, Error> {
            Ok(match tag($what, v)? {
                $(wire::$enum::$v => ops::$enum::$v,)*
            })
        }

        pub(crate) fn $to(v: ops::$enum) -> wire::$enum {
            match v {
                $(ops::$enum::$v => wire::$enum::$v,)*
            }
        }
    )*};
}

ops::op_table!(codec_enums);

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

#[cfg(test)]
mod tests {
    use super::*;
    use capnp::introspect::{Introspect, TypeVariant};

    /// The schema's enumerant names of `E`, in ordinal order.
    fn schema_names<E: Introspect>() -> Vec<String> {
        let TypeVariant::Enum(raw) = E::introspect().which() else {
            panic!("not an enum");
        };
        let list = capnp::schema::EnumSchema::new(raw)
            .get_enumerants()
            .unwrap();
        (0..list.len())
            .map(|i| {
                let e = list.get(i);
                assert_eq!(e.get_ordinal(), i);
                e.get_proto().get_name().unwrap().to_string().unwrap()
            })
            .collect()
    }

    /// Walks every value of the generated enum `W` by number, decodes it,
    /// encodes it back and checks that the ops enum names it as the schema
    /// does; the ops enum has no value the schema lacks.
    fn round_trip<W, O>(
        decode: fn(Result<W, NotInSchema>) -> Result<O, Error>,
        encode: fn(O) -> W,
        name: fn(O) -> &'static str,
        all: &[O],
    ) where
        W: Introspect + TryFrom<u16, Error = NotInSchema> + Copy + PartialEq + std::fmt::Debug,
        O: Copy + PartialEq + std::fmt::Debug,
    {
        let names = schema_names::<W>();
        let mut n = 0u16;
        while let Ok(w) = W::try_from(n) {
            let o = decode(Ok(w)).unwrap();
            assert_eq!(encode(o), w);
            assert_eq!(name(o), names[usize::from(n)], "{w:?}");
            assert_eq!(all.get(usize::from(n)), Some(&o), "ALL is in schema order");
            n += 1;
        }
        assert_eq!(usize::from(n), names.len());
        assert_eq!(
            all.len(),
            names.len(),
            "the ops enum has values the schema lacks"
        );
        let unknown = decode(W::try_from(n)).unwrap_err().to_string();
        assert!(unknown.contains(&format!("tag {n}")), "{unknown}");
    }

    #[test]
    fn every_op_enum_value_of_the_schema_round_trips_under_its_schema_name() {
        round_trip(
            binary_op,
            binary_to_wire,
            ops::BinaryOp::name,
            ops::BinaryOp::ALL,
        );
        round_trip(
            unary_op,
            unary_to_wire,
            ops::UnaryOp::name,
            ops::UnaryOp::ALL,
        );
        round_trip(
            compare_op,
            compare_to_wire,
            ops::CompareOp::name,
            ops::CompareOp::ALL,
        );
        round_trip(
            reduce_op,
            reduce_to_wire,
            ops::ReduceOp::name,
            ops::ReduceOp::ALL,
        );
        round_trip(
            cumulative_op,
            cumulative_to_wire,
            ops::CumulativeOp::name,
            ops::CumulativeOp::ALL,
        );
        round_trip(dtype, to_wire, DType::name, &DType::ALL);
    }
}
