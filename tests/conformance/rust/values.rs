//! Values between the case files and capnp for the Rust runner: raw
//! pointers for capability fields, tensor data packing, enums, numbers.

#![allow(unreachable_pub)]

use capnp::any_pointer;
use capnp::capability::Response;
use capnp::dynamic_struct;
use capnp::dynamic_value::{self, Enum};
use capnp::private::layout::{PointerBuilder, PointerReader, StructSize};
use capnp::schema::{EnumSchema, Field, StructSchema};
use capnp::schema_capnp::{field, node};
use capnp::traits::{FromPointerBuilder, FromPointerReader};

use super::json::Json;

/// Raw access to a params or results pointer, to write and read
/// capability fields, which capnp-rust's dynamic structs do not handle.
pub struct RawB<'a>(pub PointerBuilder<'a>);
impl<'a> FromPointerBuilder<'a> for RawB<'a> {
    fn init_pointer(b: PointerBuilder<'a>, _: u32) -> Self {
        RawB(b)
    }
    fn get_from_pointer(
        b: PointerBuilder<'a>,
        _: Option<&'a [capnp::Word]>,
    ) -> capnp::Result<Self> {
        Ok(RawB(b))
    }
}
pub struct RawR<'a>(pub PointerReader<'a>);
impl<'a> FromPointerReader<'a> for RawR<'a> {
    fn get_from_pointer(
        r: &PointerReader<'a>,
        _: Option<&'a [capnp::Word]>,
    ) -> capnp::Result<Self> {
        Ok(RawR(*r))
    }
}

pub fn slot_offset(f: Field) -> Result<u16, String> {
    match f.get_proto().which() {
        Ok(field::Slot(s)) => Ok(s.get_offset() as u16),
        _ => Err("not a slot field".into()),
    }
}

pub fn size_of(schema: StructSchema) -> Result<StructSize, String> {
    match schema.get_proto().which() {
        Ok(node::Struct(s)) => Ok(StructSize {
            data: s.get_data_word_count(),
            pointers: s.get_pointer_count(),
        }),
        _ => Err("not a struct node".into()),
    }
}

pub fn results_reader<'a>(
    r: &'a Response<any_pointer::Owned>,
    schema: StructSchema,
) -> capnp::Result<dynamic_struct::Reader<'a>> {
    let RawR(p) = r.get()?.get_as::<RawR<'_>>()?;
    Ok(dynamic_struct::Reader::new(p.get_struct(None)?, schema))
}

pub fn e<E: std::fmt::Display>(x: E) -> String {
    x.to_string()
}

pub fn kind_name(k: capnp::ErrorKind) -> &'static str {
    match k {
        capnp::ErrorKind::Failed => "failed",
        capnp::ErrorKind::Overloaded => "overloaded",
        capnp::ErrorKind::Disconnected => "disconnected",
        capnp::ErrorKind::Unimplemented => "unimplemented",
        _ => "other",
    }
}

pub fn elem_size(dtype: &str) -> Result<usize, String> {
    Ok(match dtype {
        "f32" | "i32" | "u32" => 4,
        "f64" | "i64" | "u64" => 8,
        "f16" | "bf16" | "i16" | "u16" => 2,
        "bool" | "u8" | "i8" => 1,
        _ => return Err(format!("unknown dtype {dtype}")),
    })
}

pub fn pack(dtype: &str, values: &[Json]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    for v in values {
        let bad = || format!("bad {dtype} value {v:?}");
        match dtype {
            "f32" => out.extend((v.as_f64().ok_or_else(bad)? as f32).to_le_bytes()),
            "f64" => out.extend(v.as_f64().ok_or_else(bad)?.to_le_bytes()),
            "i32" => out.extend((v.as_i128().ok_or_else(bad)? as i32).to_le_bytes()),
            "i64" => out.extend((v.as_i128().ok_or_else(bad)? as i64).to_le_bytes()),
            "f16" => out.extend(half::f16::from_f64(v.as_f64().ok_or_else(bad)?).to_le_bytes()),
            "bf16" => out.extend(half::bf16::from_f64(v.as_f64().ok_or_else(bad)?).to_le_bytes()),
            "u8" | "i8" | "i16" | "u16" | "u32" | "u64" => {
                // Little-endian two's complement: the low bytes of the i128.
                let n = v.as_i128().ok_or_else(bad)?;
                out.extend(&n.to_le_bytes()[..elem_size(dtype)?]);
            }
            _ => out.push(matches!(v, Json::Bool(true)) as u8),
        }
    }
    Ok(out)
}

pub fn hex(s: &str) -> Result<Vec<u8>, String> {
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).map_err(e))
        .collect()
}

pub fn enum_value(es: EnumSchema, v: &Json) -> Result<Enum, String> {
    if let Some(n) = v.as_i128() {
        return Ok(Enum::new(n as u16, es));
    }
    let name = v.str().ok_or("an enum is a name or a number")?;
    for en in es.get_enumerants().map_err(e)?.iter() {
        if en.get_proto().get_name().map_err(e)?.to_str().map_err(e)? == name {
            return Ok(Enum::new(en.get_ordinal(), es));
        }
    }
    Err(format!("no enumerant {name}"))
}

pub fn as_int(v: &dynamic_value::Reader<'_>) -> Option<i128> {
    use dynamic_value::Reader as D;
    Some(match *v {
        D::Int8(x) => x.into(),
        D::Int16(x) => x.into(),
        D::Int32(x) => x.into(),
        D::Int64(x) => x.into(),
        D::UInt8(x) => x.into(),
        D::UInt16(x) => x.into(),
        D::UInt32(x) => x.into(),
        D::UInt64(x) => x.into(),
        _ => return None,
    })
}

pub fn as_f64(v: &dynamic_value::Reader<'_>) -> Option<f64> {
    match *v {
        dynamic_value::Reader::Float32(x) => Some(x.into()),
        dynamic_value::Reader::Float64(x) => Some(x),
        _ => as_int(v).map(|i| i as f64),
    }
}

pub fn path_value(r: dynamic_struct::Reader<'_>, path: &str) -> Result<f64, String> {
    let mut v = dynamic_value::Reader::Struct(r);
    for part in path.split('.') {
        let dynamic_value::Reader::Struct(s) = v else {
            return Err(format!("{path}: not a struct"));
        };
        v = s.get_named(part).map_err(e)?;
    }
    as_f64(&v).ok_or_else(|| format!("{path}: not a number"))
}
