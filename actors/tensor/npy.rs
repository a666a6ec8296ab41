//! NumPy's `.npy` and `.npz` files, read into and written from [`Array`]s
//! of every dtype the format has (through `ndarray-npy`).
//!
//! Every dtype but bf16 has a `.npy` type: `<f2` (f16), `<f4`, `<f8`,
//! `|i1`, `<i2`, `<i4`, `<i8`, `|u1`, `<u2`, `<u4`, `<u8` and `|b1`; big-endian
//! files (`>f4` ...) are read too. `ndarray-npy` has no f16, so this module
//! gives it one (`<f2`/`>f2`). bf16 has no NumPy type: writing it is refused
//! (cast to f32 first). A Fortran-order file is read into row-major order.
//!
//! # Examples
//!
//! ```
//! use capactor::actors::tensor::{npy, Array};
//! let a = Array::U8(ndarray::arr1(&[1u8, 2, 255]).into_dyn());
//! let mut file = Vec::new();
//! npy::write_npy(&mut file, &a).unwrap();
//! assert_eq!(npy::read_npy(std::io::Cursor::new(file)).unwrap(), a);
//! ```

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Seek, Write};
use std::path::Path;

use half::f16;
use ndarray::{ArrayD, IxDyn, OwnedRepr};
use ndarray_npy::{
    NpzReader, NpzWriter, ReadDataError, ReadNpyError, ReadNpyExt, ReadNpzError, ReadableElement,
    WritableElement, WriteDataError, WriteNpyExt,
};
use py_literal::Value as PyValue;

use super::ops::{Array, DType};
use crate::Error;

/// f16 as `ndarray-npy` element (it has none of its own).
#[derive(Clone, Copy, Debug)]
#[repr(transparent)]
struct NpyF16(f16);

impl WritableElement for NpyF16 {
    fn type_descriptor() -> PyValue {
        PyValue::String("<f2".into())
    }
    fn write<W: Write>(&self, mut w: W) -> Result<(), WriteDataError> {
        w.write_all(&self.0.to_le_bytes())?;
        Ok(())
    }
    fn write_slice<W: Write>(slice: &[Self], mut w: W) -> Result<(), WriteDataError> {
        let bytes: Vec<u8> = slice.iter().flat_map(|v| v.0.to_le_bytes()).collect();
        w.write_all(&bytes)?;
        Ok(())
    }
}

impl ReadableElement for NpyF16 {
    fn read_to_end_exact_vec<R: Read>(
        mut r: R,
        desc: &PyValue,
        len: usize,
    ) -> Result<Vec<Self>, ReadDataError> {
        let little = match desc {
            PyValue::String(s) if s == "<f2" => true,
            PyValue::String(s) if s == ">f2" => false,
            other => return Err(ReadDataError::WrongDescriptor(other.clone())),
        };
        let mut bytes = vec![0u8; len.checked_mul(2).ok_or(ReadDataError::MissingData)?];
        r.read_exact(&mut bytes).map_err(|e| match e.kind() {
            io::ErrorKind::UnexpectedEof => ReadDataError::MissingData,
            _ => ReadDataError::Io(e),
        })?;
        let mut rest = Vec::new();
        r.read_to_end(&mut rest)?;
        if !rest.is_empty() {
            return Err(ReadDataError::ExtraBytes(rest.len()));
        }
        Ok(bytes
            .chunks_exact(2)
            .map(|b| {
                let b = [b[0], b[1]];
                NpyF16(if little {
                    f16::from_le_bytes(b)
                } else {
                    f16::from_be_bytes(b)
                })
            })
            .collect())
    }
}

/// Row-major, whatever order the file had.
fn standard<T: Clone>(a: ArrayD<T>) -> ArrayD<T> {
    if a.is_standard_layout() {
        a
    } else {
        a.as_standard_layout().into_owned()
    }
}

/// The dtypes a file is tried as, in turn (each attempt fails on the
/// header's type before reading any data).
macro_rules! each_npy_type {
    ($m:ident) => {
        $m!(
            f32 => F32, f64 => F64, i32 => I32, i64 => I64, bool => Bool, u8 => U8, i8 => I8,
            i16 => I16, u16 => U16, u32 => U32, u64 => U64
        )
    };
}

/// What a worker holds, for the error on a file of another dtype.
fn held() -> String {
    let names: Vec<_> = DType::ALL
        .iter()
        .filter(|d| **d != DType::Bf16)
        .map(|d| d.name())
        .collect();
    names.join(", ")
}

fn unsupported(desc: &PyValue) -> Error {
    Error::invalid(format!(
        "npy: dtype {desc} is not one a worker holds ({})",
        held()
    ))
}

fn npy_error(what: &str, e: impl std::fmt::Display) -> Error {
    Error::invalid(format!("npy: cannot {what}: {e}"))
}

/// Reads one `.npy` file of any dtype a worker holds.
///
/// # Errors
///
/// A file that is not `.npy`, is truncated, or has a dtype a worker does
/// not hold (complex, strings, structured ...; the error names it).
pub fn read_npy<R: Read + Seek>(mut r: R) -> Result<Array, Error> {
    let start = r.stream_position().map_err(|e| npy_error("read", e))?;
    macro_rules! try_as {
        ($($t:ty => $v:ident),*) => {
            $(r.seek(io::SeekFrom::Start(start)).map_err(|e| npy_error("read", e))?;
            match ArrayD::<$t>::read_npy(&mut r) {
                Ok(a) => return Ok(Array::$v(standard(a))),
                Err(ReadNpyError::WrongDescriptor(_)) => {}
                Err(e) => return Err(npy_error("read", e)),
            })*
        };
    }
    each_npy_type!(try_as);
    r.seek(io::SeekFrom::Start(start))
        .map_err(|e| npy_error("read", e))?;
    match ArrayD::<NpyF16>::read_npy(&mut r) {
        Ok(a) => Ok(Array::F16(standard(a).mapv(|v| v.0))),
        Err(ReadNpyError::WrongDescriptor(desc)) => Err(unsupported(&desc)),
        Err(e) => Err(npy_error("read", e)),
    }
}

/// Writes `a` as one `.npy` file (row-major, little-endian).
///
/// # Errors
///
/// bf16, which has no `.npy` type, and I/O errors.
pub fn write_npy<W: Write>(w: W, a: &Array) -> Result<(), Error> {
    let r = match a {
        Array::F32(x) => x.write_npy(w),
        Array::F64(x) => x.write_npy(w),
        Array::I32(x) => x.write_npy(w),
        Array::I64(x) => x.write_npy(w),
        Array::Bool(x) => x.write_npy(w),
        Array::U8(x) => x.write_npy(w),
        Array::I8(x) => x.write_npy(w),
        Array::I16(x) => x.write_npy(w),
        Array::U16(x) => x.write_npy(w),
        Array::U32(x) => x.write_npy(w),
        Array::U64(x) => x.write_npy(w),
        Array::F16(x) => x.mapv(NpyF16).write_npy(w),
        Array::Bf16(_) => return Err(no_bf16()),
    };
    r.map_err(|e| npy_error("write", e))
}

fn no_bf16() -> Error {
    Error::invalid("npy: bf16 has no .npy dtype; cast it to f32 first")
}

/// Reads a `.npy` file.
///
/// # Errors
///
/// As [`read_npy`], and a file that cannot be opened (the error names it).
pub fn load_npy(path: impl AsRef<Path>) -> Result<Array, Error> {
    let path = path.as_ref();
    let file = File::open(path)
        .map_err(|e| Error::invalid(format!("npy: cannot open {}: {e}", path.display())))?;
    read_npy(BufReader::new(file))
}

/// Writes a `.npy` file (replacing it).
///
/// # Errors
///
/// As [`write_npy`], and a file that cannot be created.
pub fn save_npy(path: impl AsRef<Path>, a: &Array) -> Result<(), Error> {
    let path = path.as_ref();
    let file = File::create(path)
        .map_err(|e| Error::invalid(format!("npy: cannot create {}: {e}", path.display())))?;
    let mut w = BufWriter::new(file);
    write_npy(&mut w, a)?;
    w.flush().map_err(|e| npy_error("write", e))
}

fn npz_error(what: &str, e: impl std::fmt::Display) -> Error {
    Error::invalid(format!("npz: cannot {what}: {e}"))
}

/// Reads every array of a `.npz` archive (as `np.savez` or
/// `np.savez_compressed` writes it), with its name (without `.npy`), in the archive's order.
///
/// # Errors
///
/// As [`read_npy`] for each member (the error names it), and an archive
/// that is not a zip file.
///
/// # Examples
///
/// ```
/// use capactor::actors::tensor::{npy, Array};
/// let a = Array::F16(ndarray::arr1(&[half::f16::from_f32(0.5)]).into_dyn());
/// let mut file = std::io::Cursor::new(Vec::new());
/// npy::write_npz(&mut file, &[("w", &a)]).unwrap();
/// file.set_position(0);
/// assert_eq!(npy::read_npz(file).unwrap(), vec![("w".to_string(), a)]);
/// ```
pub fn read_npz<R: Read + Seek>(r: R) -> Result<Vec<(String, Array)>, Error> {
    let mut z = NpzReader::new(r).map_err(|e| npz_error("read", e))?;
    let names = z.names().map_err(|e| npz_error("read", e))?;
    let mut out = Vec::with_capacity(names.len());
    for (i, name) in names.into_iter().enumerate() {
        let bad = |e: &dyn std::fmt::Display| Error::invalid(format!("npz: member {name}: {e}"));
        macro_rules! try_as {
            ($($t:ty => $v:ident),*) => {
                $(match z.by_index::<OwnedRepr<$t>, IxDyn>(i) {
                    Ok(a) => {
                        out.push((name, Array::$v(standard(a))));
                        continue;
                    }
                    Err(ReadNpzError::Npy(ReadNpyError::WrongDescriptor(_))) => {}
                    Err(e) => return Err(bad(&e)),
                })*
            };
        }
        each_npy_type!(try_as);
        match z.by_index::<OwnedRepr<NpyF16>, IxDyn>(i) {
            Ok(a) => out.push((name, Array::F16(standard(a).mapv(|v| v.0)))),
            Err(ReadNpzError::Npy(ReadNpyError::WrongDescriptor(desc))) => {
                return Err(bad(&unsupported(&desc)))
            }
            Err(e) => return Err(bad(&e)),
        }
    }
    Ok(out)
}

/// Writes arrays into a `.npz` archive (uncompressed, as `np.savez`), each
/// as `name.npy`.
///
/// # Errors
///
/// As [`write_npy`] (naming the member), and I/O errors.
pub fn write_npz<W: Write + Seek>(w: W, arrays: &[(&str, &Array)]) -> Result<(), Error> {
    let mut z = NpzWriter::new(w);
    for (name, a) in arrays {
        let bad = |e: &dyn std::fmt::Display| Error::invalid(format!("npz: member {name}: {e}"));
        let r = match a {
            Array::F32(x) => z.add_array(*name, x),
            Array::F64(x) => z.add_array(*name, x),
            Array::I32(x) => z.add_array(*name, x),
            Array::I64(x) => z.add_array(*name, x),
            Array::Bool(x) => z.add_array(*name, x),
            Array::U8(x) => z.add_array(*name, x),
            Array::I8(x) => z.add_array(*name, x),
            Array::I16(x) => z.add_array(*name, x),
            Array::U16(x) => z.add_array(*name, x),
            Array::U32(x) => z.add_array(*name, x),
            Array::U64(x) => z.add_array(*name, x),
            Array::F16(x) => z.add_array(*name, &x.mapv(NpyF16)),
            Array::Bf16(_) => return Err(bad(&no_bf16())),
        };
        r.map_err(|e| bad(&e))?;
    }
    z.finish().map_err(|e| npz_error("write", e))?;
    Ok(())
}

/// Reads a `.npz` file ([`read_npz`]).
///
/// # Errors
///
/// As [`read_npz`], and a file that cannot be opened.
pub fn load_npz(path: impl AsRef<Path>) -> Result<Vec<(String, Array)>, Error> {
    let path = path.as_ref();
    let file = File::open(path)
        .map_err(|e| Error::invalid(format!("npz: cannot open {}: {e}", path.display())))?;
    read_npz(BufReader::new(file))
}

/// Writes a `.npz` file ([`write_npz`], replacing it).
///
/// # Errors
///
/// As [`write_npz`], and a file that cannot be created.
pub fn save_npz(path: impl AsRef<Path>, arrays: &[(&str, &Array)]) -> Result<(), Error> {
    let path = path.as_ref();
    let file = File::create(path)
        .map_err(|e| Error::invalid(format!("npz: cannot create {}: {e}", path.display())))?;
    write_npz(BufWriter::new(file), arrays)
}

#[cfg(test)]
mod tests {
    use super::*;
    use half::bf16;
    use ndarray::ArrayD;
    use ndarray_npy::npy::header::{Header, Layout};

    /// One small array of every dtype, with values at the edges of each.
    pub(crate) fn every_dtype() -> Vec<Array> {
        let v = |n: usize| ArrayD::from_shape_fn(vec![2, n], |d| (d[0] * n + d[1]) as f64 - 2.0);
        DType::ALL
            .iter()
            .map(|&d| {
                let a = Array::F64(v(3));
                Array::cast(&a, d, &super::super::ops::Unlimited).unwrap()
            })
            .chain([
                Array::F16(
                    ArrayD::from_shape_vec(vec![3], vec![f16::MAX, f16::NEG_INFINITY, f16::NAN])
                        .unwrap(),
                ),
                Array::U64(ArrayD::from_shape_vec(vec![2], vec![u64::MAX, 0]).unwrap()),
                Array::I8(ArrayD::from_shape_vec(vec![2], vec![i8::MIN, i8::MAX]).unwrap()),
                Array::U8(ArrayD::from_shape_vec(vec![0, 4], vec![]).unwrap()),
            ])
            .collect()
    }

    /// Equality that holds NaN equal to NaN (a round trip keeps its bits).
    fn same_bits(a: &Array, b: &Array) -> bool {
        a.dtype() == b.dtype() && a.shape() == b.shape() && a.to_le_bytes() == b.to_le_bytes()
    }

    #[test]
    fn npy_round_trips_every_dtype_but_bf16() {
        for a in every_dtype() {
            let mut buf = Vec::new();
            let w = write_npy(&mut buf, &a);
            if a.dtype() == DType::Bf16 {
                let e = w.unwrap_err().to_string();
                assert!(e.contains("bf16 has no .npy dtype"), "{e}");
                continue;
            }
            w.unwrap();
            let back = read_npy(io::Cursor::new(buf)).unwrap();
            assert!(same_bits(&a, &back), "{a:?} came back as {back:?}");
        }
    }

    #[test]
    fn npz_round_trips_every_dtype_but_bf16() {
        let arrays: Vec<_> = every_dtype()
            .into_iter()
            .filter(|a| a.dtype() != DType::Bf16)
            .collect();
        let names: Vec<String> = (0..arrays.len()).map(|i| format!("a{i}")).collect();
        let members: Vec<(&str, &Array)> = names.iter().map(String::as_str).zip(&arrays).collect();
        let mut file = io::Cursor::new(Vec::new());
        write_npz(&mut file, &members).unwrap();
        file.set_position(0);
        let back = read_npz(file).unwrap();
        assert_eq!(back.len(), arrays.len());
        for ((name, b), (want_name, a)) in back.iter().zip(&members) {
            assert_eq!(name, want_name);
            assert!(same_bits(a, b), "{a:?} came back as {b:?}");
        }
        let bf = Array::Bf16(ArrayD::from_elem(vec![1], bf16::ONE));
        let e = write_npz(io::Cursor::new(Vec::new()), &[("x", &bf)])
            .unwrap_err()
            .to_string();
        assert!(e.contains("member x") && e.contains("bf16"), "{e}");
    }

    fn raw_npy(desc: &str, layout: Layout, shape: &[usize], data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        Header {
            type_descriptor: PyValue::String(desc.into()),
            layout,
            shape: shape.to_vec(),
        }
        .write(&mut out)
        .unwrap();
        out.extend_from_slice(data);
        out
    }

    #[test]
    fn big_endian_and_fortran_order_files_read_as_numpy_means_them() {
        // [[1, 2, 3], [4, 5, 6]] as f16, big-endian, column-major.
        let col_major: Vec<u8> = [1.0f32, 4.0, 2.0, 5.0, 3.0, 6.0]
            .iter()
            .flat_map(|&v| f16::from_f32(v).to_be_bytes())
            .collect();
        let file = raw_npy(">f2", Layout::Fortran, &[2, 3], &col_major);
        let a = read_npy(io::Cursor::new(file)).unwrap();
        let want =
            ArrayD::from_shape_fn(vec![2, 3], |d| f16::from_f32((d[0] * 3 + d[1] + 1) as f32));
        assert_eq!(a, Array::F16(want));
        let file = raw_npy(">u2", Layout::Standard, &[2], &[1, 2, 0, 3]);
        assert_eq!(
            read_npy(io::Cursor::new(file)).unwrap(),
            Array::U16(ArrayD::from_shape_vec(vec![2], vec![258, 3]).unwrap())
        );
    }

    #[test]
    fn an_npz_numpy_wrote_compressed_loads_with_every_member() {
        // np.savez_compressed(half=f16 2x2, bytes=u8 2x3 Fortran order,
        // big=>i2, mask=bool, wide=u64 max), by NumPy 2.4.
        let file = include_bytes!("testdata/numpy_dtypes.npz");
        let got = read_npz(io::Cursor::new(&file[..])).unwrap();
        let names: Vec<&str> = got.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["half", "bytes", "big", "mask", "wide"]);
        let half: Vec<f16> = [0.5, -2.0, 65504.0, f32::INFINITY]
            .map(f16::from_f32)
            .into();
        let want = [
            Array::F16(ArrayD::from_shape_vec(vec![2, 2], half).unwrap()),
            Array::U8(ArrayD::from_shape_vec(vec![2, 3], (0..6).collect()).unwrap()),
            Array::I16(ArrayD::from_shape_vec(vec![2], vec![-300, 7]).unwrap()),
            Array::Bool(ArrayD::from_shape_vec(vec![2], vec![true, false]).unwrap()),
            Array::U64(ArrayD::from_shape_vec(vec![1], vec![u64::MAX]).unwrap()),
        ];
        for ((name, a), w) in got.iter().zip(&want) {
            assert_eq!(a, w, "{name}");
        }
    }

    #[test]
    fn an_npy_of_a_dtype_no_worker_holds_is_refused_naming_it() {
        let file = raw_npy("<c8", Layout::Standard, &[1], &[0; 8]);
        let e = read_npy(io::Cursor::new(file)).unwrap_err().to_string();
        assert!(e.contains("npy: dtype '<c8'") && !e.contains("bf16"), "{e}");
        assert!(e.contains("u64"), "{e}");
        let e = read_npy(io::Cursor::new(b"not an npy file".to_vec()))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("npy: cannot read"), "{e}");
        let short = raw_npy("<f2", Layout::Standard, &[4], &[0; 6]);
        let e = read_npy(io::Cursor::new(short)).unwrap_err().to_string();
        assert!(e.starts_with("npy: cannot read"), "{e}");
    }
}
