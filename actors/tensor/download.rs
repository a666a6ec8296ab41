//! Streamed reads (`Tensor.readTo`): the worker's sending side, and the
//! `Sink` a reader (a client, or a worker fetching from another) receives
//! them with.

use std::cell::RefCell;
use std::rc::Rc;

use super::codec;
use std::sync::Arc;

use super::ops::{Alloc, Array, OpError};
use super::quota::Reservation;
use super::spill::{Spill, Stored};
use super::transfer::{self, Incoming};
use crate::schema::tensor_capnp::{sink, tensor};
use crate::Error;

/// What a `readTo` call asked for.
pub(crate) struct ReadTo {
    pub(crate) sink: Option<sink::Client>,
    pub(crate) offset: u64,
    pub(crate) chunk: usize,
    pub(crate) inline: u64,
}

impl ReadTo {
    pub(crate) fn from_params(p: tensor::read_to_params::Reader<'_>) -> Result<Self, Error> {
        Ok(ReadTo {
            sink: if p.has_sink() {
                Some(p.get_sink()?)
            } else {
                None
            },
            offset: p.get_offset(),
            chunk: transfer::chunk_size(u64::from(p.get_chunk_bytes())),
            inline: p.get_inline_bytes(),
        })
    }
}

/// Sends `a` as `req` asks: inline if small enough, else streamed into the
/// reader's sink, returning once every chunk is acknowledged.
pub(crate) async fn send(
    a: &Stored,
    req: ReadTo,
    mut results: tensor::ReadToResults,
) -> Result<(), Error> {
    let mut chunks = a.chunks(req.offset)?;
    // The CRC32C of the whole tensor: of what precedes the offset too.
    let mut crc = transfer::crc_prefix(a.chunks(0)?, req.offset as usize);
    let mut r = results.get();
    r.set_dtype(codec::to_wire(a.dtype()));
    codec::set_shape(r.reborrow().init_shape(a.shape().len() as u32), a.shape());
    if chunks.remaining() as u64 <= req.inline {
        crate::call::Guard::current().reserve_reply(chunks.remaining() as u64)?;
        let data = r.reborrow().init_data(codec::list_len(chunks.remaining())?);
        chunks.fill(data);
        let crc = crc32c::crc32c_append(crc, data);
        r.set_crc32c(crc);
        return Ok(());
    }
    let sink = req
        .sink
        .ok_or_else(|| Error::invalid("readTo needs a sink for a tensor this large"))?;
    let mut begin = sink.begin_request();
    {
        let mut b = begin.get();
        b.set_dtype(codec::to_wire(a.dtype()));
        codec::set_shape(b.reborrow().init_shape(a.shape().len() as u32), a.shape());
        b.set_offset(req.offset);
    }
    begin.send().promise.await?;
    while chunks.remaining() > 0 {
        let n = req.chunk.min(chunks.remaining());
        let mut w = sink.write_request();
        let mut p = w.get();
        p.set_offset(chunks.offset() as u64);
        let data = p.reborrow().init_data(n as u32);
        chunks.fill(data);
        let chunk_crc = transfer::crc32c(data);
        crc = transfer::crc_combine(crc, chunk_crc, n);
        p.set_crc32c(chunk_crc);
        // Resolves at once while the stream's window has room; a refused
        // chunk fails the later ones.
        w.send().await?;
    }
    let mut end = sink.end_request();
    end.get().set_crc32c(crc);
    end.send().promise.await?;
    results.get().set_crc32c(crc);
    Ok(())
}

/// Tensors up to this size are read in one message; larger ones stream.
pub(crate) const INLINE_BYTES: u64 = 4 << 20;

/// Reads `source` into an array allocated through `alloc`: in one message
/// if it is small, else streamed into `received` (from where an earlier,
/// cut read of the same tensor stopped). With `take`, the source is freed
/// once read. A worker older than schema version 3 is read with `read` or
/// `take`.
pub(crate) async fn read(
    source: &tensor::Client,
    received: &Rc<RefCell<Received>>,
    alloc: Rc<dyn Alloc>,
    take: bool,
) -> Result<Array, Error> {
    match read_stored(source, received, alloc, take).await? {
        Stored::Mem(a) => Ok(Arc::try_unwrap(a).unwrap_or_else(|a| (*a).clone())),
        Stored::Disk(_) => Err(Error::internal(
            "a reader without a spill directory spilled",
        )),
    }
}

/// Like [`read`], into the spill directory `received` was given if the
/// tensor does not fit `alloc`.
pub(crate) async fn read_stored(
    source: &tensor::Client,
    received: &Rc<RefCell<Received>>,
    alloc: Rc<dyn Alloc>,
    take: bool,
) -> Result<Stored, Error> {
    let offset = received.borrow().offset();
    let mut req = source.read_to_request();
    {
        let mut p = req.get();
        p.set_sink(SinkCap::client(received.clone(), alloc.clone()));
        p.set_offset(offset);
        p.set_inline_bytes(if offset > 0 { 0 } else { INLINE_BYTES });
        p.set_move(take);
    }
    let reply = match req.send().promise.await {
        Ok(reply) => reply,
        Err(e) if e.kind == capnp::ErrorKind::Unimplemented && offset == 0 => {
            return Ok(Stored::Mem(Arc::new(
                read_single(source, &*alloc, take).await?,
            )));
        }
        Err(e) => return Err(e.into()),
    };
    if let Some(a) = received.borrow_mut().done.take() {
        return Ok(a);
    }
    let r = reply.get()?;
    let data = r.get_data()?;
    if transfer::crc32c(data) != r.get_crc32c() {
        return Err(Error::invalid(
            "tensor is corrupted: the CRC32C of its bytes does not match",
        ));
    }
    let dtype = codec::dtype(r.get_dtype())?;
    let shape = codec::shape(r.get_shape()?);
    let a = Array::from_le_bytes(dtype, &shape, data, &*alloc)?;
    Ok(Stored::Mem(Arc::new(a)))
}

/// `read` or `take`, in one message (workers of schema versions 1 and 2).
async fn read_single(
    source: &tensor::Client,
    alloc: &dyn Alloc,
    take: bool,
) -> Result<Array, Error> {
    if take {
        let r = source.take_request().send().promise.await?;
        codec::decode(r.get()?.get_data()?, alloc)
    } else {
        let r = source.read_request().send().promise.await?;
        codec::decode(r.get()?.get_data()?, alloc)
    }
}

/// A download in progress on the reading side: the bytes received so far,
/// in the buffer they will stay in. Kept across a cut connection, so that
/// another `readTo` resumes where this one stopped.
#[derive(Default)]
pub(crate) struct Received {
    incoming: Option<Incoming>,
    done: Option<Stored>,
    /// Where a tensor that does not fit the reader's quota goes (a worker
    /// fetching into its spill directory), with that directory's budget.
    spill: Option<(Arc<Spill>, Rc<Reservation>)>,
    /// Called with (bytes received, total) after each chunk.
    progress: Option<Progress>,
}

/// Called with (bytes done, total bytes) as a transfer goes.
pub(crate) type Progress = Rc<dyn Fn(u64, u64)>;

impl std::fmt::Debug for Received {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Received")
            .field("offset", &self.offset())
            .field("done", &self.done.is_some())
            .finish_non_exhaustive()
    }
}

impl Received {
    pub(crate) fn with_progress(progress: Option<Progress>) -> Rc<RefCell<Self>> {
        Rc::new(RefCell::new(Received {
            progress,
            ..Received::default()
        }))
    }

    /// Lets a tensor that does not fit the reader's quota go to `spill`.
    pub(crate) fn spilling(spill: Option<Arc<Spill>>) -> Rc<RefCell<Self>> {
        Rc::new(RefCell::new(Received {
            spill: spill.map(|s| {
                let disk = Rc::new(Reservation::only(s.quota(), "spill"));
                (s, disk)
            }),
            ..Received::default()
        }))
    }

    /// The spill budget's reservation, if the tensor went there.
    pub(crate) fn spill_reservation(&self) -> Option<Rc<Reservation>> {
        self.spill.as_ref().map(|(_, r)| r.clone())
    }

    /// Where the next `readTo` should start.
    pub(crate) fn offset(&self) -> u64 {
        self.incoming.as_ref().map_or(0, |i| i.received() as u64)
    }
}

/// The `Sink` capability a reader hands to `readTo`.
pub(crate) struct SinkCap {
    received: Rc<RefCell<Received>>,
    alloc: Rc<dyn Alloc>,
}

impl SinkCap {
    /// A sink writing into `received`, allocating through `alloc` (the
    /// reading worker's quota, or no limit on a client).
    pub(crate) fn client(received: Rc<RefCell<Received>>, alloc: Rc<dyn Alloc>) -> sink::Client {
        capnp_rpc::new_client(SinkCap { received, alloc })
    }

    fn fail(&self, e: Error) -> capnp::Error {
        self.received.borrow_mut().incoming = None;
        e.into()
    }
}

impl sink::Server for SinkCap {
    async fn begin(
        self: Rc<Self>,
        params: sink::BeginParams,
        _: sink::BeginResults,
    ) -> Result<(), capnp::Error> {
        let p = params.get()?;
        let dtype = codec::dtype(p.get_dtype())?;
        let shape = codec::shape(p.get_shape()?);
        let mut r = self.received.borrow_mut();
        let same = r.incoming.as_ref().is_some_and(|i| {
            i.dtype() == dtype && i.dims().iter().map(|&d| d as u64).eq(shape.iter().copied())
        });
        if !same {
            if p.get_offset() != 0 {
                drop(r);
                return Err(self.fail(Error::invalid(
                    "the worker resumed a download this reader never began",
                )));
            }
            let made = match (Incoming::new(dtype, &shape, &*self.alloc), &r.spill) {
                (Ok(i), _) => Ok(i),
                (Err(OpError::Budget { .. }), Some((spill, disk))) => {
                    Incoming::new_mapped(dtype, &shape, spill, &**disk)
                }
                (Err(e), _) => Err(e.into()),
            };
            match made {
                Ok(i) => r.incoming = Some(i),
                Err(e) => {
                    drop(r);
                    return Err(self.fail(e));
                }
            }
        }
        Ok(())
    }

    async fn write(self: Rc<Self>, params: sink::WriteParams) -> Result<(), capnp::Error> {
        let p = params.get()?;
        let mut r = self.received.borrow_mut();
        let result = match r.incoming.as_mut() {
            Some(i) => i
                .write(p.get_offset(), p.get_data()?, p.get_crc32c())
                .map(|()| (i.received() as u64, i.total() as u64)),
            None => Err(Error::invalid("chunk before the download began")),
        };
        match result {
            Ok((done, total)) => {
                if let Some(progress) = r.progress.clone() {
                    drop(r);
                    progress(done, total);
                }
                Ok(())
            }
            Err(e) => {
                drop(r);
                Err(self.fail(e))
            }
        }
    }

    async fn end(
        self: Rc<Self>,
        params: sink::EndParams,
        _: sink::EndResults,
    ) -> Result<(), capnp::Error> {
        let crc = params.get()?.get_crc32c();
        let incoming = self.received.borrow_mut().incoming.take();
        let incoming = incoming.ok_or_else(|| Error::invalid("end before the download began"))?;
        let stored = incoming.finish_stored(crc).map_err(|e| self.fail(e))?;
        self.received.borrow_mut().done = Some(stored);
        Ok(())
    }
}
