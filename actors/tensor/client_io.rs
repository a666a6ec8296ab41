//! The client's data plane: tensors of any size sent and read in
//! checksummed chunks ([`Upload`], [`Download`]), and named objects.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use super::client::{RemoteTensor, Worker};
use super::codec;
use super::download::{self, Progress, Received, INLINE_BYTES};
use super::ops::{Array, Unlimited};
use super::state::ObjectInfo;
use super::transfer::{self, Chunks};
use crate::schema::tensor_capnp::{tensor, upload};
use crate::Error;

/// An upload of a tensor of any size that can be resumed on another
/// connection after a cut.
///
/// [`Worker::tensor`] uses one by itself for large tensors; use one
/// directly to watch progress or to resume.
///
/// # Examples
///
/// ```
/// use capactor::actors::tensor::{Array, Quota, TensorWorker, Upload, Worker};
///
/// capactor::block_on(async {
///     let w = Worker::new(capactor::spawn_local(TensorWorker::new("w", Quota::new(64 << 20))));
///     let big = Array::F32(ndarray::ArrayD::zeros(vec![1024, 2048])); // 8 MiB
///     let mut up = Upload::new(big);
///     up.on_progress(|done, total| eprintln!("{done}/{total}"));
///     let t = up.run(&w).await.unwrap();
///     assert_eq!(t.shape().await.unwrap(), [1024, 2048]);
/// }).unwrap();
/// ```
pub struct Upload {
    array: Arc<Array>,
    id: Option<Vec<u8>>,
    progress: Option<Progress>,
    chunk: usize,
    sent: u64,
    offset: u64,
}

impl std::fmt::Debug for Upload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upload")
            .field("bytes", &self.array.nbytes())
            .field("sent", &self.sent)
            .finish_non_exhaustive()
    }
}

impl Upload {
    /// An upload of `array`, not started.
    pub fn new(array: impl Into<Arc<Array>>) -> Self {
        Upload {
            array: array.into(),
            id: None,
            progress: None,
            chunk: transfer::DEFAULT_CHUNK,
            sent: 0,
            offset: 0,
        }
    }

    /// Calls `f(bytes acknowledged so far, total)` as the chunks go.
    pub fn on_progress(&mut self, f: impl Fn(u64, u64) + 'static) -> &mut Self {
        self.progress = Some(Rc::new(f));
        self
    }

    /// Sends chunks of `bytes` (clamped to 4 KiB..8 MiB; default 1 MiB).
    pub fn chunk_bytes(&mut self, bytes: usize) -> &mut Self {
        self.chunk = transfer::chunk_size(bytes as u64);
        self
    }

    /// The id the worker gave the upload, once it has begun.
    pub fn id(&self) -> Option<&[u8]> {
        self.id.as_deref()
    }

    /// Bytes of chunks this upload has sent, over every attempt.
    pub fn bytes_sent(&self) -> u64 {
        self.sent
    }

    /// The offset the last `run` started from: 0, or what the worker held
    /// when it resumed.
    pub fn resumed_from(&self) -> u64 {
        self.offset
    }

    /// Runs the upload to `worker`, or resumes it there from the offset the
    /// worker holds if an earlier `run` was cut: what arrived is not sent
    /// again. Returns the tensor once the worker has checked every byte.
    ///
    /// # Errors
    ///
    /// A quota the tensor does not fit, a cut connection (call `run` again
    /// with a new connection to resume, within the worker's resume time), a
    /// chunk the worker refused, or a worker older than schema version 3.
    pub async fn run(&mut self, worker: &Worker) -> Result<RemoteTensor, Error> {
        let (up, offset) = self.start(worker).await?;
        self.offset = offset;
        let a = self.array.clone();
        let mut chunks = Chunks::new(&a, offset)?;
        let mut crc = transfer::crc_prefix(Chunks::new(&a, 0)?, offset as usize);
        let total = a.nbytes() as u64;
        while chunks.remaining() > 0 {
            let n = self.chunk.min(chunks.remaining());
            let mut w = up.write_request();
            let mut p = w.get();
            p.set_offset(chunks.offset() as u64);
            let data = p.reborrow().init_data(n as u32);
            chunks.fill(data);
            let chunk_crc = transfer::crc32c(data);
            crc = transfer::crc_combine(crc, chunk_crc, n);
            p.set_crc32c(chunk_crc);
            w.send().await?;
            self.sent += n as u64;
            if let Some(progress) = &self.progress {
                progress(chunks.offset() as u64, total);
            }
        }
        let mut fin = up.finish_request();
        fin.get().set_crc32c(crc);
        let reply = fin.send().promise.await?;
        let t = reply.get()?.get_tensor()?;
        self.id = None;
        Ok(worker.sent(t))
    }

    async fn start(&mut self, worker: &Worker) -> Result<(upload::Client, u64), Error> {
        if let Some(id) = &self.id {
            let mut req = worker.client().resume_upload_request();
            req.get().set_id(id);
            let reply = req.send().promise.await?;
            let r = reply.get()?;
            return Ok((r.get_upload()?, r.get_offset()));
        }
        let mut req = worker.client().upload_request();
        req.get().set_dtype(codec::to_wire(self.array.dtype()));
        let shape: Vec<u64> = self.array.shape().iter().map(|&d| d as u64).collect();
        req.get().set_shape(&shape[..])?;
        let reply = match req.send().promise.await {
            Ok(r) => r,
            Err(e) => {
                let what = "TensorWorker.upload (added in schema version 3, needed for tensors over 4 MiB)";
                return Err(crate::actor::explain_unimplemented(worker.client(), what, e).await);
            }
        };
        let r = reply.get()?;
        self.id = Some(r.get_id()?.to_vec());
        Ok((r.get_upload()?, 0))
    }
}

/// A streamed read of a tensor of any size that can be resumed after a
/// cut, from the bytes already received, on a new handle to the same
/// tensor (a named object loaded again over a new connection, say).
///
/// [`RemoteTensor::to_array`] uses one by itself.
///
/// # Examples
///
/// ```
/// use capactor::actors::tensor::{DType, Download, Quota, TensorWorker, Worker};
///
/// capactor::block_on(async {
///     let w = Worker::new(capactor::spawn_local(TensorWorker::new("w", Quota::new(64 << 20))));
///     let t = w.zeros(DType::F64, &[1 << 20]); // 8 MiB
///     let mut d = Download::new();
///     d.on_progress(|done, total| eprintln!("{done}/{total}"));
///     let a = d.run(&t).await.unwrap();
///     assert_eq!(a.shape(), &[1 << 20]);
/// }).unwrap();
/// ```
#[derive(Debug)]
pub struct Download {
    received: Rc<RefCell<Received>>,
}

impl Default for Download {
    fn default() -> Self {
        Self::new()
    }
}

impl Download {
    /// A download that has received nothing yet.
    pub fn new() -> Self {
        Download {
            received: Received::with_progress(None),
        }
    }

    /// Calls `f(bytes received so far, total)` as the chunks arrive.
    pub fn on_progress(&mut self, f: impl Fn(u64, u64) + 'static) -> &mut Self {
        self.received = Received::with_progress(Some(Rc::new(f)));
        self
    }

    /// Bytes received so far: where a resumed read starts.
    pub fn offset(&self) -> u64 {
        self.received.borrow().offset()
    }

    /// Reads `tensor`, from where an earlier, cut `run` stopped.
    ///
    /// # Errors
    ///
    /// The first error in the chain that made the tensor, a cut connection
    /// (call `run` again to resume), or a chunk or tensor whose checksum
    /// does not match.
    pub async fn run(&mut self, tensor: &RemoteTensor) -> Result<Array, Error> {
        tensor.waited();
        download::read(tensor.client(), &self.received, Rc::new(Unlimited), false).await
    }
}

impl Worker {
    /// Sends `array` to the worker without copying it: in one message up
    /// to 4 MiB, else streamed in checksummed 1 MiB chunks with flow
    /// control, by a task on this thread's `LocalSet`. Returns at once; ops
    /// on the result wait for the upload, and fail with its error if it
    /// fails.
    pub fn send_array(&self, array: impl Into<Arc<Array>>) -> RemoteTensor {
        let array = array.into();
        if array.nbytes() as u64 <= INLINE_BYTES {
            return self.from_array(&array);
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        let worker = self.clone();
        tokio::task::spawn_local(async move {
            let r = Upload::new(array).run(&worker).await;
            let _ = tx.send(r.map(|t| t.client().clone()));
        });
        let client: tensor::Client = capnp_rpc::new_future_client(async move {
            match rx.await {
                Ok(r) => r.map_err(capnp::Error::from),
                Err(_) => Err(capnp::Error::failed("the upload was abandoned".into())),
            }
        });
        self.sent(client)
    }

    /// Keeps `tensor` (one of this worker's) under `name`, beyond this
    /// connection, for `ttl` if given: any client that passes the gate can
    /// [`load`](Worker::load) it, until [`delete`](Worker::delete).
    ///
    /// # Errors
    ///
    /// A name that is taken or not valid (1 to 255 bytes, no control
    /// characters), a tensor of another worker, or the chain's error.
    ///
    /// # Examples
    ///
    /// ```
    /// use capactor::actors::tensor::{DType, Quota, TensorWorker, Worker};
    ///
    /// capactor::block_on(async {
    ///     let w = Worker::new(capactor::spawn_local(TensorWorker::new("w", Quota::new(1 << 20))));
    ///     w.store("weights", &w.ones(DType::F32, &[4]), None).await.unwrap();
    ///     let again = w.load("weights");
    ///     assert_eq!(again.item_sum().await.unwrap(), 4.0);
    ///     assert_eq!(w.list().await.unwrap()[0].name, "weights");
    ///     w.delete("weights").await.unwrap();
    /// }).unwrap();
    /// ```
    pub async fn store(
        &self,
        name: &str,
        tensor: &RemoteTensor,
        ttl: Option<Duration>,
    ) -> Result<(), Error> {
        let mut req = self.client().store_request();
        req.get().set_name(name);
        req.get().set_tensor(tensor.client().clone());
        let ttl = ttl.map_or(0, |t| (t.as_millis() as u64).max(1));
        req.get().set_ttl_millis(ttl);
        self.named_call("store", req.send().promise).await
    }

    /// The tensor stored under `name` (pipelined: ops on it go out at once
    /// and fail if there is none).
    pub fn load(&self, name: &str) -> RemoteTensor {
        let mut req = self.client().load_request();
        req.get().set_name(name);
        self.sent(req.send().pipeline.get_tensor())
    }

    /// Forgets `name`; the tensor is freed once nobody holds it.
    ///
    /// # Errors
    ///
    /// There is no object of that name.
    pub async fn delete(&self, name: &str) -> Result<(), Error> {
        let mut req = self.client().delete_request();
        req.get().set_name(name);
        self.named_call("delete", req.send().promise).await
    }

    /// Every named object on the worker, sorted by name.
    ///
    /// # Errors
    ///
    /// If the call fails.
    pub async fn list(&self) -> Result<Vec<ObjectInfo>, Error> {
        let reply = self.client().list_request().send().promise.await;
        let reply = match reply {
            Ok(r) => r,
            Err(e) => return Err(self.explain("list", e).await),
        };
        let mut out = Vec::new();
        for o in reply.get()?.get_objects()? {
            let expires = o.get_expires_in_millis();
            out.push(ObjectInfo {
                name: o.get_name()?.to_string()?,
                dtype: codec::dtype(o.get_dtype())?,
                shape: codec::shape(o.get_shape()?),
                bytes: o.get_bytes(),
                expires_in: (expires > 0).then(|| Duration::from_millis(expires)),
            });
        }
        Ok(out)
    }

    async fn named_call<T>(
        &self,
        method: &str,
        promise: impl std::future::Future<Output = capnp::Result<T>>,
    ) -> Result<(), Error> {
        match promise.await {
            Ok(_) => Ok(()),
            Err(e) => Err(self.explain(method, e).await),
        }
    }

    async fn explain(&self, method: &str, e: capnp::Error) -> Error {
        let what = format!("TensorWorker.{method} (added in schema version 3)");
        crate::actor::explain_unimplemented(self.client(), &what, e).await
    }
}

impl RemoteTensor {
    /// Moves the contents out: reads them (streamed if large) and frees
    /// the tensor on the worker, after which other handles to it fail.
    ///
    /// # Errors
    ///
    /// The first error in the chain that made this tensor.
    pub async fn take(self) -> Result<Array, Error> {
        self.waited();
        let received = Received::with_progress(None);
        download::read(self.client(), &received, Rc::new(Unlimited), true).await
    }

    /// A copy of this tensor on `dest`, also stored there under `name` once
    /// its bytes are in, even if this client has gone by then (see
    /// [`RemoteTensor::copy_to`]).
    pub fn copy_to_named(&self, dest: &Worker, name: &str) -> RemoteTensor {
        dest.fetch(self, false, name)
    }

    /// Sum of every element, as `f64` (waits for it).
    ///
    /// # Errors
    ///
    /// The first error in the chain that made this tensor.
    pub async fn item_sum(&self) -> Result<f64, Error> {
        self.sum().item().await
    }
}
