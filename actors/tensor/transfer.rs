//! Tensor bytes in chunks: the buffer a streamed tensor is written into,
//! and chunks read out of an array. No networking.
//!
//! Both ends of a streamed transfer (an upload on the worker, a download
//! on the client) write each chunk straight into an [`Incoming`], whose
//! memory is allocated once, from the announced dtype and shape, after the
//! quota has been reserved. The sender reads each chunk out of its array
//! with a [`Chunks`] cursor, without copying the array whole. Every chunk
//! carries the CRC32C of its bytes; the whole tensor's CRC32C is checked at
//! the end.

use ndarray::{ArrayD, IxDyn};

use std::sync::Arc;

use super::ops::{self, Alloc, Array, DType, LeCursor, OpError};
use super::spill::{MappedFile, Spill, Spilled, Stored};
use crate::Error;

fn shape_u64(dims: &[usize]) -> Vec<u64> {
    dims.iter().map(|&d| d as u64).collect()
}

/// Chunk size when the reader asks for none, in bytes.
pub(crate) const DEFAULT_CHUNK: usize = 1 << 20;
/// The smallest chunk a reader may ask for.
pub(crate) const MIN_CHUNK: usize = 4 << 10;
/// The largest chunk, well under any sensible message limit.
pub(crate) const MAX_CHUNK: usize = 8 << 20;

/// A chunk size within bounds and a multiple of every element size.
pub(crate) fn chunk_size(asked: u64) -> usize {
    let asked = if asked == 0 {
        DEFAULT_CHUNK
    } else {
        usize::try_from(asked).unwrap_or(MAX_CHUNK)
    };
    asked.clamp(MIN_CHUNK, MAX_CHUNK) & !7
}

/// The CRC32C (Castagnoli) of `data`.
pub(crate) fn crc32c(data: &[u8]) -> u32 {
    crc32c::crc32c(data)
}

/// The CRC32C of `a ++ b` from that of `a` and that of `b` (`len_b`
/// bytes), without reading the bytes again: each chunk is checksummed once,
/// for itself and for the whole.
pub(crate) fn crc_combine(crc_a: u32, crc_b: u32, len_b: usize) -> u32 {
    crc32c::crc32c_combine(crc_a, crc_b, len_b)
}

/// The CRC32C of `a`'s first `upto` bytes (what a resumed transfer does
/// not send again, but the whole tensor's checksum covers).
pub(crate) fn crc_prefix(mut head: Chunks<'_>, upto: usize) -> u32 {
    let upto = upto.min(head.remaining());
    let mut crc = 0;
    let mut buf = vec![0; DEFAULT_CHUNK.min(upto)];
    while head.offset() < upto {
        let n = buf.len().min(upto - head.offset());
        head.fill(&mut buf[..n]);
        crc = crc32c::crc32c_append(crc, &buf[..n]);
    }
    crc
}

/// The destination of a streamed tensor, allocated once.
#[derive(Debug)]
pub(crate) struct Incoming {
    dtype: DType,
    dims: Vec<usize>,
    buf: Buf,
    received: usize,
    crc: u32,
}

/// Zeroed at allocation, so its pages are only touched as chunks arrive.
#[derive(Debug)]
enum Buf {
    /// Any dtype but bool: the array itself, its memory written in place.
    Mem(Array),
    /// Bytes checked to be 0 or 1 as they arrive; becomes `Vec<bool>`.
    Bool(Vec<u8>),
    /// A file in the worker's spill directory.
    Mapped(MappedFile),
}

impl Incoming {
    /// Reserves (through `alloc`) and allocates a tensor of `dtype` and
    /// `shape`.
    pub(crate) fn new(dtype: DType, shape: &[u64], alloc: &dyn Alloc) -> Result<Self, OpError> {
        let dims = ops::dims_from_u64(shape)?;
        ops::reserve(alloc, "upload", &dims, dtype)?;
        let n: usize = dims.iter().product();
        let buf = match dtype {
            DType::Bool => Buf::Bool(vec![0; n]),
            _ => Buf::Mem(Array::zeroed(dtype, &dims)?),
        };
        Ok(Incoming {
            dtype,
            dims,
            buf,
            received: 0,
            crc: 0,
        })
    }

    /// The same, in a new file of `spill`, reserved through `alloc` (the
    /// spill's own quota): for a tensor that does not fit in memory.
    pub(crate) fn new_mapped(
        dtype: DType,
        shape: &[u64],
        spill: &Arc<Spill>,
        alloc: &dyn Alloc,
    ) -> Result<Self, Error> {
        let dims = ops::dims_from_u64(shape)?;
        ops::reserve(alloc, "upload", &dims, dtype)?;
        let bytes = dims.iter().product::<usize>() * dtype.size();
        Ok(Incoming {
            dtype,
            dims,
            buf: Buf::Mapped(spill.create(bytes)?),
            received: 0,
            crc: 0,
        })
    }

    /// The tensor's dtype.
    pub(crate) fn dtype(&self) -> DType {
        self.dtype
    }

    /// The tensor's shape.
    pub(crate) fn dims(&self) -> &[usize] {
        &self.dims
    }

    /// The tensor's size in bytes.
    pub(crate) fn total(&self) -> usize {
        self.bytes_ref().len()
    }

    /// Bytes received so far: where the next chunk must start.
    pub(crate) fn received(&self) -> usize {
        self.received
    }

    fn bytes_ref(&self) -> &[u8] {
        match &self.buf {
            Buf::Mem(a) => a.memory().unwrap_or_default(),
            Buf::Bool(v) => v,
            Buf::Mapped(f) => f.bytes(),
        }
    }

    fn bytes_mut(&mut self) -> &mut [u8] {
        match &mut self.buf {
            Buf::Mem(a) => a.memory_mut().unwrap_or_default(),
            Buf::Bool(v) => v,
            Buf::Mapped(f) => f.bytes_mut(),
        }
    }

    /// Writes one chunk: it must start where the last one ended, fit in
    /// the tensor, and match its checksum.
    pub(crate) fn write(&mut self, offset: u64, data: &[u8], crc: u32) -> Result<(), Error> {
        if offset != self.received as u64 {
            return Err(Error::invalid(format!(
                "chunk at offset {offset} arrived when offset {} was due",
                self.received
            )));
        }
        let end = self.received + data.len();
        if end > self.total() {
            return Err(Error::invalid(format!(
                "chunk of {} bytes at offset {offset} runs past the tensor's {} bytes",
                data.len(),
                self.total()
            )));
        }
        if crc32c(data) != crc {
            return Err(Error::invalid(format!(
                "chunk at offset {offset} is corrupted: its CRC32C does not match"
            )));
        }
        let whole = crc_combine(self.crc, crc, data.len());
        if self.dtype == DType::Bool && data.iter().any(|&b| b > 1) {
            return Err(OpError::InvalidBool.into());
        }
        let start = self.received;
        self.bytes_mut()[start..end].copy_from_slice(data);
        self.crc = whole;
        self.received = end;
        Ok(())
    }

    /// The CRC32C of the bytes received so far.
    #[cfg(test)]
    pub(crate) fn crc(&self) -> u32 {
        self.crc
    }

    /// Like [`Incoming::finish`], keeping a spilled tensor on disk.
    pub(crate) fn finish_stored(self, crc: u32) -> Result<Stored, Error> {
        self.check(crc)?;
        match self.buf {
            Buf::Mapped(file) => Ok(Stored::Disk(Arc::new(Spilled {
                dtype: self.dtype,
                dims: self.dims,
                file,
            }))),
            _ => Ok(Stored::Mem(Arc::new(self.into_array()?))),
        }
    }

    /// The finished tensor, once every byte has arrived and `crc` is the
    /// CRC32C of them all. Hands over the buffer without copying it.
    #[cfg(test)]
    pub(crate) fn finish(self, crc: u32) -> Result<Array, Error> {
        self.check(crc)?;
        self.into_array()
    }

    fn check(&self, crc: u32) -> Result<(), Error> {
        if self.received != self.total() {
            return Err(Error::invalid(format!(
                "transfer ended after {} of {} bytes",
                self.received,
                self.total()
            )));
        }
        if self.crc != crc {
            return Err(Error::invalid(
                "tensor is corrupted: the CRC32C of its bytes does not match",
            ));
        }
        Ok(())
    }

    fn into_array(self) -> Result<Array, Error> {
        let shape = IxDyn(&self.dims);
        // The buffer was allocated for exactly these dims: this cannot fail.
        let bad = |e: ndarray::ShapeError| Error::internal(format_args!("transfer buffer: {e}"));
        Ok(match self.buf {
            // The bytes arrived little-endian; a big-endian host reorders.
            Buf::Mem(a) if cfg!(target_endian = "big") => Array::from_le_bytes(
                self.dtype,
                &shape_u64(&self.dims),
                a.memory().unwrap_or_default(),
                &ops::Unlimited,
            )?,
            Buf::Mem(a) => a,
            Buf::Bool(v) => Array::Bool(ArrayD::from_shape_vec(shape, bool_vec(v)).map_err(bad)?),
            Buf::Mapped(f) => Array::from_le_bytes(
                self.dtype,
                &shape_u64(&self.dims),
                f.bytes(),
                &ops::Unlimited,
            )?,
        })
    }
}

/// Reinterprets bytes that were each checked to be 0 or 1 as `bool`s.
fn bool_vec(v: Vec<u8>) -> Vec<bool> {
    debug_assert!(v.iter().all(|&b| b <= 1));
    let mut v = std::mem::ManuallyDrop::new(v);
    let (ptr, len, cap) = (v.as_mut_ptr(), v.len(), v.capacity());
    // SAFETY: `bool` has the size and alignment of `u8`, and every byte was
    // checked to be 0 or 1 (`Incoming::write`) before it was stored, so each
    // is a valid `bool`; the allocation is handed over whole.
    unsafe { Vec::from_raw_parts(ptr.cast::<bool>(), len, cap) }
}

/// A cursor over an array's little-endian bytes, read chunk by chunk in
/// row-major order without copying the array.
pub(crate) struct Chunks<'a> {
    source: Source<'a>,
    total: usize,
    at: usize,
}

enum Source<'a> {
    /// Standard layout on a little-endian host: the array's own memory.
    Bytes(&'a [u8]),
    /// Anything else: element by element, in logical order.
    Elements(Box<dyn LeCursor + 'a>),
}

impl std::fmt::Debug for Chunks<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Chunks")
            .field("total", &self.total)
            .field("at", &self.at)
            .finish_non_exhaustive()
    }
}

impl<'a> Chunks<'a> {
    /// Reads `a` from byte `offset`, which must be a multiple of the
    /// element size and at most its size.
    pub(crate) fn new(a: &'a Array, offset: u64) -> Result<Self, Error> {
        let total = a.nbytes();
        let size = a.dtype().size() as u64;
        if offset > total as u64 || offset % size != 0 {
            return Err(Error::invalid(format!(
                "cannot read from offset {offset}: the tensor has {total} bytes of \
                 {size}-byte elements"
            )));
        }
        let at = offset as usize;
        let source = match a.le_memory() {
            Some(bytes) => Source::Bytes(bytes),
            None => Source::Elements(a.le_cursor()),
        };
        let mut chunks = Chunks {
            source,
            total,
            at: 0,
        };
        chunks.skip(at);
        Ok(chunks)
    }

    /// Reads little-endian `bytes` of `size`-byte elements from `offset`.
    pub(crate) fn of_bytes(bytes: &'a [u8], size: usize, offset: u64) -> Result<Self, Error> {
        let total = bytes.len();
        if offset > total as u64 || offset % size as u64 != 0 {
            return Err(Error::invalid(format!(
                "cannot read from offset {offset}: the tensor has {total} bytes of \
                 {size}-byte elements"
            )));
        }
        Ok(Chunks {
            source: Source::Bytes(bytes),
            total,
            at: offset as usize,
        })
    }

    /// Bytes left to read.
    pub(crate) fn remaining(&self) -> usize {
        self.total - self.at
    }

    /// Where the next chunk starts.
    pub(crate) fn offset(&self) -> usize {
        self.at
    }

    fn skip(&mut self, bytes: usize) {
        if let Source::Elements(e) = &mut self.source {
            let n = bytes / e.size();
            e.skip(n);
        }
        self.at += bytes;
    }

    /// Fills `out` (at most [`Chunks::remaining`] bytes, a multiple of the
    /// element size) with the next bytes.
    pub(crate) fn fill(&mut self, out: &mut [u8]) {
        let n = out.len();
        debug_assert!(n <= self.remaining());
        match &mut self.source {
            Source::Bytes(b) => out.copy_from_slice(&b[self.at..self.at + n]),
            Source::Elements(e) => e.fill(out),
        }
        self.at += n;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actors::tensor::ops::Unlimited;
    use ndarray::array;

    fn stream(a: &Array, chunk: usize) -> Incoming {
        let mut inc = Incoming::new(a.dtype(), &shape(a), &Unlimited).unwrap();
        let mut c = Chunks::new(a, 0).unwrap();
        while c.remaining() > 0 {
            let n = chunk.min(c.remaining());
            let mut buf = vec![0; n];
            let at = c.offset() as u64;
            c.fill(&mut buf);
            inc.write(at, &buf, crc32c(&buf)).unwrap();
        }
        inc
    }

    fn shape(a: &Array) -> Vec<u64> {
        a.shape().iter().map(|&d| d as u64).collect()
    }

    #[test]
    fn every_dtype_arrives_whole_in_chunks_of_any_size() {
        let arrays = [
            Array::F32(array![[1.5f32, -2.0, 3.25], [4.0, 5.0, 6.0]].into_dyn()),
            Array::F64(array![1.0f64, 2.0, f64::MAX].into_dyn()),
            Array::I32(array![[i32::MIN, 0], [7, i32::MAX]].into_dyn()),
            Array::I64(array![i64::MIN, -1, i64::MAX].into_dyn()),
            Array::Bool(array![true, false, true, true].into_dyn()),
            Array::F16(array![half::f16::MIN, half::f16::NAN, half::f16::ONE].into_dyn()),
            Array::Bf16(array![[half::bf16::MAX, half::bf16::ZERO]].into_dyn()),
            Array::U8(array![0u8, 255, 7].into_dyn()),
            Array::I8(array![i8::MIN, i8::MAX].into_dyn()),
            Array::I16(array![i16::MIN, 3, i16::MAX].into_dyn()),
            Array::U16(array![u16::MAX, 1].into_dyn()),
            Array::U32(array![u32::MAX, 0, 9].into_dyn()),
            Array::U64(array![u64::MAX, 1].into_dyn()),
            // Not contiguous: read element by element.
            Array::U16(array![[1u16, 2, 3], [4, 5, 6]].reversed_axes().into_dyn()),
        ];
        for a in &arrays {
            for chunk in [1, 8, 16, 1000] {
                let inc = stream(a, chunk.max(a.dtype().size()));
                let crc = crc32c(&a.to_le_bytes());
                let back = inc.finish(crc).unwrap();
                // Bytes, not `==`: NaN stays NaN.
                assert_eq!(
                    (back.shape(), back.to_le_bytes()),
                    (a.shape(), a.to_le_bytes())
                );
                assert_eq!(back.dtype(), a.dtype());
            }
        }
    }

    #[test]
    fn a_transposed_array_is_read_in_logical_order() {
        let t = array![[1i32, 2, 3], [4, 5, 6]].reversed_axes().into_dyn();
        let a = Array::I32(t);
        let inc = stream(&a, 8);
        assert_eq!(inc.finish(crc32c(&a.to_le_bytes())).unwrap(), a);
        // And from an offset, as a resumed download reads it.
        let mut c = Chunks::new(&a, 8).unwrap();
        let mut rest = vec![0; c.remaining()];
        c.fill(&mut rest);
        assert_eq!(rest, a.to_le_bytes()[8..]);
    }

    #[test]
    fn a_chunk_out_of_order_past_the_end_or_corrupted_is_refused() {
        let mut inc = Incoming::new(DType::I32, &[2], &Unlimited).unwrap();
        let e = inc.write(4, &[0; 4], crc32c(&[0; 4])).unwrap_err();
        assert!(
            e.to_string().contains("arrived when offset 0 was due"),
            "{e}"
        );
        let e = inc.write(0, &[0; 12], crc32c(&[0; 12])).unwrap_err();
        assert!(e.to_string().contains("runs past"), "{e}");
        let e = inc.write(0, &[1; 4], 0).unwrap_err();
        assert!(e.to_string().contains("corrupted"), "{e}");
        assert_eq!(inc.received(), 0);
    }

    #[test]
    fn a_short_or_mismatched_transfer_does_not_finish() {
        let mut inc = Incoming::new(DType::I32, &[2], &Unlimited).unwrap();
        inc.write(0, &[1; 4], crc32c(&[1; 4])).unwrap();
        let crc = inc.crc();
        let e = Incoming::finish(inc, crc).unwrap_err();
        assert!(e.to_string().contains("after 4 of 8 bytes"), "{e}");
        let mut inc = Incoming::new(DType::I32, &[1], &Unlimited).unwrap();
        inc.write(0, &[1; 4], crc32c(&[1; 4])).unwrap();
        assert!(inc.finish(0).is_err());
    }

    #[test]
    fn bool_bytes_other_than_zero_and_one_are_refused() {
        let mut inc = Incoming::new(DType::Bool, &[2], &Unlimited).unwrap();
        assert!(inc.write(0, &[1, 2], crc32c(&[1, 2])).is_err());
    }

    #[test]
    fn an_offset_inside_an_element_is_refused() {
        let a = Array::F64(array![1.0f64, 2.0].into_dyn());
        assert!(Chunks::new(&a, 3).is_err());
        assert!(Chunks::new(&a, 24).is_err());
        assert_eq!(Chunks::new(&a, 16).unwrap().remaining(), 0);
    }
}
