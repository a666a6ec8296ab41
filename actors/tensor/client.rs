//! The client API: [`Worker`] and [`RemoteTensor`].

use std::cell::Cell;
use std::rc::Rc;

use ndarray::{ArrayD, Dimension};

use super::client_element::TensorElement;
use super::codec;
use super::ops::{
    Array, BinaryOp, CompareOp, CumulativeOp, DType, ReduceOp, Scalar, SliceSpec, UnaryOp,
};
use crate::schema::tensor_capnp::{tensor, tensor_worker};
use crate::{ConnectOptions, Connection, Error, Runtime, VirtualOptions};

/// Counts what a client sent and what it waited for.
#[derive(Debug, Default)]
struct Counters {
    calls: Cell<u64>,
    waits: Cell<u64>,
}

/// A tensor worker, seen from a client: makes tensors on it.
///
/// Every method returns at once. The tensor it returns can be used as an
/// argument or have ops called on it before the worker has even received
/// the first call: the calls pipeline.
///
/// Works the same over every transport; wrap any
/// `tensor_worker::Client` (local, virtual or TCP).
///
/// # Examples
///
/// ```
/// use capactor::actors::tensor::{Quota, TensorWorker, Worker};
/// use ndarray::array;
///
/// capactor::block_on(async {
///     let w = Worker::new(capactor::spawn_local(TensorWorker::new("w", Quota::new(1 << 20))));
///     let x = w.tensor(&array![[1.0f32, 2.0], [3.0, 4.0]].into_dyn());
///     let y = (&x.matmul(&x) + 1.0).relu().sum();
///     assert_eq!(y.to_ndarray::<f32>().await.unwrap().into_iter().next(), Some(58.0));
/// }).unwrap();
/// ```
#[derive(Clone)]
pub struct Worker {
    client: tensor_worker::Client,
    counters: Rc<Counters>,
    /// The connection, when this worker made it (it closes when the last
    /// clone is dropped).
    _connection: Option<Rc<Connection<tensor_worker::Client>>>,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("calls", &self.counters.calls.get())
            .field("waits", &self.counters.waits.get())
            .finish()
    }
}

/// A worker's memory budget and what is held in it, from
/// [`Worker::memory`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Memory {
    /// The worker's limit, in bytes.
    pub limit: u64,
    /// Bytes its tensors hold (and ops under way have reserved).
    pub used: u64,
    /// The limit and use of the asking connection's own budget, if it has
    /// one.
    pub connection: Option<(u64, u64)>,
}

impl Worker {
    /// Wraps a tensor worker's capability.
    pub fn new(client: tensor_worker::Client) -> Self {
        Worker {
            client,
            counters: Rc::default(),
            _connection: None,
        }
    }

    /// Wraps a connection to a tensor worker; it closes when the last clone
    /// of the `Worker` (and of the tensors made through it) is dropped.
    pub fn from_connection(conn: Connection<tensor_worker::Client>) -> Self {
        Worker {
            client: conn.client().clone(),
            counters: Rc::default(),
            _connection: Some(Rc::new(conn)),
        }
    }

    /// Spawns the tensor worker `make` makes on a vat of `rt`, as
    /// [`Runtime::spawn_virtual`] does, and connects to it: one call.
    ///
    /// # Errors
    ///
    /// Fails, saying what to write instead, if this thread runs no event
    /// loop the client can use (see [`crate::block_on`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use capactor::actors::tensor::{Quota, TensorWorker, Worker};
    ///
    /// let rt = capactor::Runtime::builder().vats(1).build().unwrap();
    /// capactor::block_on(async {
    ///     let w = Worker::spawn_virtual(&rt, || TensorWorker::new("w", Quota::new(1 << 20))).unwrap();
    ///     assert_eq!(w.ones(capactor::actors::tensor::DType::F32, &[3]).sum().item().await.unwrap(), 3.0);
    /// })
    /// .unwrap();
    /// ```
    pub fn spawn_virtual<S, F>(rt: &Runtime, make: F) -> Result<Self, Error>
    where
        tensor_worker::Client: capnp::capability::FromServer<S>,
        S: 'static,
        F: FnOnce() -> S + Send + 'static,
    {
        Self::spawn_virtual_with(rt, make, &VirtualOptions::default())
    }

    /// [`Worker::spawn_virtual`] with the virtual link's and actor's
    /// options, as [`Runtime::spawn_virtual_with`].
    ///
    /// # Errors
    ///
    /// As [`Worker::spawn_virtual`].
    pub fn spawn_virtual_with<S, F>(
        rt: &Runtime,
        make: F,
        opts: &VirtualOptions,
    ) -> Result<Self, Error>
    where
        tensor_worker::Client: capnp::capability::FromServer<S>,
        S: 'static,
        F: FnOnce() -> S + Send + 'static,
    {
        crate::runtime::check_local_loop()?;
        Ok(Worker::from_connection(rt.spawn_virtual_with(make, opts)))
    }

    /// Connects to the tensor worker a `capactor worker` serves at `addr`
    /// (any [`Address`](crate::Address): `host:port`, `tls://`, `unix:`).
    ///
    /// # Errors
    ///
    /// As [`connect`](crate::connect).
    pub async fn connect(
        addr: impl crate::ToAddress,
        opts: &ConnectOptions,
    ) -> Result<Self, Error> {
        Ok(Worker::from_connection(crate::connect(addr, opts).await?))
    }

    /// The underlying capability.
    pub fn client(&self) -> &tensor_worker::Client {
        &self.client
    }

    /// Calls sent through this handle and the tensors made from it.
    pub fn calls_sent(&self) -> u64 {
        self.counters.calls.get()
    }

    /// Times a client awaited a result from this worker (each costs at
    /// least one round trip).
    pub fn round_trips(&self) -> u64 {
        self.counters.waits.get()
    }

    pub(super) fn sent(&self, client: tensor::Client) -> RemoteTensor {
        self.counters.calls.set(self.counters.calls.get() + 1);
        RemoteTensor {
            client,
            worker: self.clone(),
        }
    }

    /// Sends `array` to the worker, in one message if it is small (up to
    /// 4 MiB), else streamed in checksummed chunks (see
    /// [`Worker::send_array`]). Copies `array` once; [`Worker::send_array`]
    /// takes one by value instead.
    pub fn tensor<T: TensorElement, D: Dimension>(
        &self,
        array: &ndarray::Array<T, D>,
    ) -> RemoteTensor {
        self.send_array(T::wrap(array.clone().into_dyn()))
    }

    /// Sends a dtype-dynamic array to the worker, like [`Worker::tensor`].
    pub fn from_array(&self, array: &Array) -> RemoteTensor {
        if array.nbytes() as u64 > super::download::INLINE_BYTES {
            return self.send_array(array.clone());
        }
        self.single_message(array)
    }

    fn single_message(&self, array: &Array) -> RemoteTensor {
        let mut req = self.client.from_data_request();
        if let Err(e) = codec::encode(array, req.get().init_data()) {
            return self.broken(e);
        }
        self.sent(req.send().pipeline.get_tensor())
    }

    /// A tensor of `shape` filled with `value` (converted to `dtype`).
    pub fn full(&self, dtype: DType, shape: &[u64], value: impl Into<Scalar>) -> RemoteTensor {
        let mut req = self.client.full_request();
        let mut p = req.get();
        p.set_dtype(codec::to_wire(dtype));
        p.set_shape(shape)
            .expect("setting a list of u64 cannot fail");
        codec::set_scalar(p.init_value(), value.into());
        self.sent(req.send().pipeline.get_tensor())
    }

    /// Zeros.
    pub fn zeros(&self, dtype: DType, shape: &[u64]) -> RemoteTensor {
        self.full(dtype, shape, 0i64)
    }

    /// Ones.
    pub fn ones(&self, dtype: DType, shape: &[u64]) -> RemoteTensor {
        self.full(dtype, shape, 1i64)
    }

    /// `start, start + step, ...` below `stop`, like NumPy's `arange`.
    pub fn arange(&self, dtype: DType, start: f64, stop: f64, step: f64) -> RemoteTensor {
        let mut req = self.client.arange_request();
        let mut p = req.get();
        p.set_dtype(codec::to_wire(dtype));
        p.set_start(start);
        p.set_stop(stop);
        p.set_step(step);
        self.sent(req.send().pipeline.get_tensor())
    }

    /// Uniform random values in `[low, high)`, deterministic for `seed`.
    pub fn random_uniform(
        &self,
        dtype: DType,
        shape: &[u64],
        low: f64,
        high: f64,
        seed: u64,
    ) -> RemoteTensor {
        self.random(dtype, shape, seed, |d| {
            let mut u = d.init_uniform();
            u.set_low(low);
            u.set_high(high);
        })
    }

    /// Normally distributed random values, deterministic for `seed`.
    pub fn random_normal(
        &self,
        dtype: DType,
        shape: &[u64],
        mean: f64,
        std: f64,
        seed: u64,
    ) -> RemoteTensor {
        self.random(dtype, shape, seed, |d| {
            let mut n = d.init_normal();
            n.set_mean(mean);
            n.set_std(std);
        })
    }

    fn random(
        &self,
        dtype: DType,
        shape: &[u64],
        seed: u64,
        distribution: impl FnOnce(crate::schema::tensor_capnp::distribution::Builder<'_>),
    ) -> RemoteTensor {
        let mut req = self.client.random_request();
        let mut p = req.get();
        p.set_dtype(codec::to_wire(dtype));
        p.set_shape(shape)
            .expect("setting a list of u64 cannot fail");
        p.set_seed(seed);
        distribution(p.init_distribution());
        self.sent(req.send().pipeline.get_tensor())
    }

    /// Joins tensors (all on this worker) along `axis`.
    pub fn concat(&self, tensors: &[&RemoteTensor], axis: i64) -> RemoteTensor {
        let mut req = self.client.concat_request();
        let mut p = req.get();
        p.set_axis(axis);
        let mut list = p.init_tensors(tensors.len() as u32);
        for (i, t) in tensors.iter().enumerate() {
            list.set(i as u32, t.client.client.hook.add_ref());
        }
        self.sent(req.send().pipeline.get_tensor())
    }

    /// The worker's memory limit and use (`TensorWorker.memory`), waiting
    /// for the answer.
    ///
    /// # Errors
    ///
    /// Fails if the call fails. A worker built before schema version 2
    /// lacks the method: the error is then `unimplemented` and says so.
    ///
    /// # Examples
    ///
    /// ```
    /// use capactor::actors::tensor::{DType, Quota, TensorWorker, Worker};
    ///
    /// capactor::block_on(async {
    ///     let w = Worker::new(capactor::spawn_local(TensorWorker::new("w", Quota::new(1 << 20))));
    ///     let x = w.zeros(DType::F32, &[256]);
    ///     x.shape().await.unwrap(); // made by now
    ///     let m = w.memory().await.unwrap();
    ///     assert_eq!((m.limit, m.used), (1 << 20, 1024));
    /// }).unwrap();
    /// ```
    pub async fn memory(&self) -> Result<Memory, Error> {
        self.counters.calls.set(self.counters.calls.get() + 1);
        self.counters.waits.set(self.counters.waits.get() + 1);
        let reply = self.client.memory_request().send().promise.await;
        let reply = match reply {
            Ok(r) => r,
            Err(e) => {
                let method = "TensorWorker.memory (added in schema version 2)";
                return Err(crate::actor::explain_unimplemented(&self.client, method, e).await);
            }
        };
        let r = reply.get()?;
        let connection = (r.get_connection_limit() > 0)
            .then(|| (r.get_connection_limit(), r.get_connection_used()));
        Ok(Memory {
            limit: r.get_limit(),
            used: r.get_used(),
            connection,
        })
    }

    /// A handle to `tensor`, a tensor this worker holds that reached the
    /// client some other way than through this handle: e.g. the result of
    /// a method of an interface that extends `TensorWorker`. Pipelined
    /// results are fine: ops on the handle go out at once.
    pub fn adopt(&self, tensor: tensor::Client) -> RemoteTensor {
        RemoteTensor {
            client: tensor,
            worker: self.clone(),
        }
    }

    pub(super) fn fetch(&self, source: &RemoteTensor, take: bool, name: &str) -> RemoteTensor {
        let mut req = self.client.fetch_request();
        req.get().set_source(source.client.clone());
        req.get().set_move(take);
        req.get().set_name(name);
        self.sent(req.send().pipeline.get_tensor())
    }

    /// A handle whose every use fails with `e` (for errors found before
    /// anything was sent).
    pub(super) fn broken(&self, e: Error) -> RemoteTensor {
        let hook = capnp_rpc::new_broken_cap(e.into()).hook;
        RemoteTensor {
            client: tensor::Client {
                client: capnp::capability::Client::new(hook),
            },
            worker: self.clone(),
        }
    }
}

/// A tensor on a worker.
///
/// Ops return a new `RemoteTensor` at once, without waiting: the call is
/// pipelined on this one, so a chain of ops costs one round trip in all.
/// An error anywhere in a chain surfaces at the first `await` on it (or on
/// anything computed from it), with a message naming the op that failed.
///
/// Dropping the last handle (and every clone) frees the tensor on the
/// worker.
#[derive(Clone)]
pub struct RemoteTensor {
    client: tensor::Client,
    worker: Worker,
}

impl std::fmt::Debug for RemoteTensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteTensor").finish_non_exhaustive()
    }
}

/// Expands the op table (`ops/table.rs`) into the client's per-op methods:
/// `x.add(&y)` and `x.add_scalar(2.0)`, `x.relu()`, `x.lt(&y)`, ...
macro_rules! client_methods {
    (
        binary: {
            $(#[$_bd:meta])* $_be:ident $_bw:literal $_bf:ident $_bt:ident;
            $($(#[$bdoc:meta])* $bv:ident $_bn:literal [$bm:ident, $bms:ident];)*
        }
        unary: {
            $(#[$_ud:meta])* $_ue:ident $_uw:literal $_uf:ident $_ut:ident;
            $($(#[$udoc:meta])* $uv:ident $_un:literal [$um:ident];)*
        }
        compare: {
            $(#[$_cd:meta])* $_ce:ident $_cw:literal $_cf:ident $_ct:ident;
            $($(#[$cdoc:meta])* $cv:ident $_cn:literal [$cm:ident, $cms:ident];)*
        }
        $($_rest:tt)*
    ) => {
        impl RemoteTensor {
            $(
                $(#[$bdoc])*
                pub fn $bm(&self, other: &RemoteTensor) -> RemoteTensor {
                    self.binary(BinaryOp::$bv, other)
                }
                $(#[$bdoc])*
                ///
                /// With a scalar right-hand side.
                pub fn $bms(&self, s: impl Into<Scalar>) -> RemoteTensor {
                    self.binary_scalar(BinaryOp::$bv, s.into(), false)
                }
            )*
            $(
                $(#[$udoc])*
                pub fn $um(&self) -> RemoteTensor {
                    self.unary(UnaryOp::$uv)
                }
            )*
            $(
                $(#[$cdoc])*
                ///
                /// Gives a bool tensor.
                pub fn $cm(&self, other: &RemoteTensor) -> RemoteTensor {
                    self.compare(CompareOp::$cv, other)
                }
                $(#[$cdoc])*
                ///
                /// With a scalar right-hand side; gives a bool tensor.
                pub fn $cms(&self, s: impl Into<Scalar>) -> RemoteTensor {
                    self.compare_scalar(CompareOp::$cv, s.into())
                }
            )*
        }
    };
}

super::ops::op_table!(client_methods);

impl RemoteTensor {
    /// The underlying capability.
    pub fn client(&self) -> &tensor::Client {
        &self.client
    }

    /// The worker this tensor was made through.
    pub fn worker(&self) -> &Worker {
        &self.worker
    }

    fn then(&self, client: tensor::Client) -> RemoteTensor {
        self.worker.sent(client)
    }

    /// Elementwise `op` with NumPy broadcasting.
    pub fn binary(&self, op: BinaryOp, other: &RemoteTensor) -> RemoteTensor {
        let mut req = self.client.binary_request();
        req.get().set_op(codec::binary_to_wire(op));
        req.get().set_other(other.client.clone());
        self.then(req.send().pipeline.get_result())
    }

    /// Elementwise `op` with a scalar, on the left if `scalar_on_left`.
    pub fn binary_scalar(
        &self,
        op: BinaryOp,
        scalar: Scalar,
        scalar_on_left: bool,
    ) -> RemoteTensor {
        let mut req = self.client.binary_scalar_request();
        req.get().set_op(codec::binary_to_wire(op));
        codec::set_scalar(req.get().init_scalar(), scalar);
        req.get().set_scalar_on_left(scalar_on_left);
        self.then(req.send().pipeline.get_result())
    }

    /// An elementwise function.
    pub fn unary(&self, op: UnaryOp) -> RemoteTensor {
        let mut req = self.client.unary_request();
        req.get().set_op(codec::unary_to_wire(op));
        self.then(req.send().pipeline.get_result())
    }

    /// Elementwise comparison with broadcasting; gives a bool tensor.
    pub fn compare(&self, op: CompareOp, other: &RemoteTensor) -> RemoteTensor {
        let mut req = self.client.compare_request();
        req.get().set_op(codec::compare_to_wire(op));
        req.get().set_other(other.client.clone());
        self.then(req.send().pipeline.get_result())
    }

    /// Elementwise comparison with a scalar; gives a bool tensor.
    pub fn compare_scalar(&self, op: CompareOp, scalar: Scalar) -> RemoteTensor {
        let mut req = self.client.compare_scalar_request();
        req.get().set_op(codec::compare_to_wire(op));
        codec::set_scalar(req.get().init_scalar(), scalar);
        self.then(req.send().pipeline.get_result())
    }

    /// NumPy `matmul`: 1-D, 2-D and batched.
    pub fn matmul(&self, other: &RemoteTensor) -> RemoteTensor {
        let mut req = self.client.matmul_request();
        req.get().set_other(other.client.clone());
        self.then(req.send().pipeline.get_result())
    }

    /// Reduces over `axis` (negative counts from the end), or over every
    /// axis if `None`.
    pub fn reduce(&self, op: ReduceOp, axis: Option<i64>, keep_dims: bool) -> RemoteTensor {
        let mut req = self.client.reduce_request();
        let mut p = req.get();
        p.set_op(codec::reduce_to_wire(op));
        p.set_all_axes(axis.is_none());
        p.set_axis(axis.unwrap_or(0));
        p.set_keep_dims(keep_dims);
        self.then(req.send().pipeline.get_result())
    }

    /// [`RemoteTensor::reduce`] with the delta degrees of freedom of
    /// [`ReduceOp::Var`] and [`ReduceOp::Std`] (schema version 4).
    pub fn reduce_ddof(
        &self,
        op: ReduceOp,
        axis: Option<i64>,
        keep_dims: bool,
        ddof: u32,
    ) -> RemoteTensor {
        let mut req = self.client.reduce_request();
        let mut p = req.get();
        p.set_op(codec::reduce_to_wire(op));
        p.set_all_axes(axis.is_none());
        p.set_axis(axis.unwrap_or(0));
        p.set_keep_dims(keep_dims);
        p.set_ddof(ddof);
        self.then(req.send().pipeline.get_result())
    }

    /// Product over one axis or every element (`None`).
    pub fn prod(&self, axis: Option<i64>) -> RemoteTensor {
        self.reduce(ReduceOp::Prod, axis, false)
    }

    /// Variance with `ddof` over one axis or every element.
    pub fn var(&self, axis: Option<i64>, ddof: u32) -> RemoteTensor {
        self.reduce_ddof(ReduceOp::Var, axis, false, ddof)
    }

    /// Standard deviation with `ddof` over one axis or every element.
    pub fn std(&self, axis: Option<i64>, ddof: u32) -> RemoteTensor {
        self.reduce_ddof(ReduceOp::Std, axis, false, ddof)
    }

    /// Whether any element is nonzero, over one axis or every element.
    pub fn any(&self, axis: Option<i64>) -> RemoteTensor {
        self.reduce(ReduceOp::Any, axis, false)
    }

    /// Whether every element is nonzero, over one axis or every element.
    pub fn all(&self, axis: Option<i64>) -> RemoteTensor {
        self.reduce(ReduceOp::All, axis, false)
    }

    /// A vector norm (`ReduceOp::NormL1`, `NormL2` or `NormInf`) over one
    /// axis or every element.
    pub fn norm(&self, ord: ReduceOp, axis: Option<i64>) -> RemoteTensor {
        self.reduce(ord, axis, false)
    }

    /// Softmax over `axis`, computed stably (float dtypes).
    pub fn softmax(&self, axis: i64) -> RemoteTensor {
        self.softmax_request(axis, false)
    }

    /// Log-softmax over `axis`, computed stably (float dtypes).
    pub fn log_softmax(&self, axis: i64) -> RemoteTensor {
        self.softmax_request(axis, true)
    }

    fn softmax_request(&self, axis: i64, log: bool) -> RemoteTensor {
        let mut req = self.client.softmax_request();
        req.get().set_axis(axis);
        req.get().set_log(log);
        self.then(req.send().pipeline.get_result())
    }

    /// A running sum or product along `axis`.
    pub fn cumulative(&self, op: CumulativeOp, axis: i64) -> RemoteTensor {
        let mut req = self.client.cumulative_request();
        req.get().set_op(codec::cumulative_to_wire(op));
        req.get().set_axis(axis);
        self.then(req.send().pipeline.get_result())
    }

    /// Running sum along `axis`, NumPy's `cumsum`.
    pub fn cumsum(&self, axis: i64) -> RemoteTensor {
        self.cumulative(CumulativeOp::Cumsum, axis)
    }

    /// Running product along `axis`, NumPy's `cumprod`.
    pub fn cumprod(&self, axis: i64) -> RemoteTensor {
        self.cumulative(CumulativeOp::Cumprod, axis)
    }

    /// Clamps to `[min, max]`, either bound optional, NumPy's `clip`.
    pub fn clip(&self, min: Option<Scalar>, max: Option<Scalar>) -> RemoteTensor {
        let mut req = self.client.clip_request();
        let mut p = req.get();
        p.set_has_min(min.is_some());
        p.set_has_max(max.is_some());
        if let Some(min) = min {
            codec::set_scalar(p.reborrow().init_min(), min);
        }
        if let Some(max) = max {
            codec::set_scalar(p.init_max(), max);
        }
        self.then(req.send().pipeline.get_result())
    }

    /// Sum of every element.
    pub fn sum(&self) -> RemoteTensor {
        self.reduce(ReduceOp::Sum, None, false)
    }

    /// Sum over one axis.
    pub fn sum_axis(&self, axis: i64, keep_dims: bool) -> RemoteTensor {
        self.reduce(ReduceOp::Sum, Some(axis), keep_dims)
    }

    /// Mean of every element.
    pub fn mean(&self) -> RemoteTensor {
        self.reduce(ReduceOp::Mean, None, false)
    }

    /// Mean over one axis.
    pub fn mean_axis(&self, axis: i64, keep_dims: bool) -> RemoteTensor {
        self.reduce(ReduceOp::Mean, Some(axis), keep_dims)
    }

    /// Index of the largest element over one axis (or the flattened tensor).
    pub fn argmax(&self, axis: Option<i64>) -> RemoteTensor {
        self.reduce(ReduceOp::Argmax, axis, false)
    }

    /// A view with another shape; one dimension may be -1.
    pub fn reshape(&self, shape: &[i64]) -> RemoteTensor {
        let mut req = self.client.reshape_request();
        req.get()
            .set_shape(shape)
            .expect("setting a list of i64 cannot fail");
        self.then(req.send().pipeline.get_result())
    }

    /// Reverses the axes (the matrix transpose for 2-D).
    pub fn t(&self) -> RemoteTensor {
        self.permute(&[])
    }

    /// Reorders the axes; an empty `perm` reverses them.
    pub fn permute(&self, perm: &[u32]) -> RemoteTensor {
        let mut req = self.client.transpose_request();
        req.get()
            .set_perm(perm)
            .expect("setting a list of u32 cannot fail");
        self.then(req.send().pipeline.get_result())
    }

    /// Slices the leading axes, Python style.
    pub fn slice(&self, specs: &[SliceSpec]) -> RemoteTensor {
        let mut req = self.client.slice_request();
        super::client_index::set_specs(req.get().init_specs(specs.len() as u32), specs);
        self.then(req.send().pipeline.get_result())
    }

    /// Converts to another dtype.
    pub fn cast(&self, dtype: DType) -> RemoteTensor {
        let mut req = self.client.cast_request();
        req.get().set_dtype(codec::to_wire(dtype));
        self.then(req.send().pipeline.get_result())
    }

    /// With this bool tensor as the condition, picks from `if_true` or
    /// `if_false` (broadcasting).
    pub fn select(&self, if_true: &RemoteTensor, if_false: &RemoteTensor) -> RemoteTensor {
        let mut req = self.client.select_request();
        req.get().set_if_true(if_true.client.clone());
        req.get().set_if_false(if_false.client.clone());
        self.then(req.send().pipeline.get_result())
    }

    /// A copy of this tensor on `dest`, usable there at once (pipelined
    /// like any op). The bytes travel from this tensor's worker to `dest`
    /// through this client's connections.
    pub fn copy_to(&self, dest: &Worker) -> RemoteTensor {
        dest.fetch(self, false, "")
    }

    /// Moves this tensor to `dest`: once its contents have been read the
    /// original is freed, and other handles to it fail with "tensor has
    /// been moved".
    pub fn move_to(self, dest: &Worker) -> RemoteTensor {
        dest.fetch(&self, true, "")
    }

    pub(super) fn waited(&self) {
        let c = &self.worker.counters.waits;
        c.set(c.get() + 1);
    }

    /// The shape. Waits for the tensor (and everything it depends on).
    ///
    /// # Errors
    ///
    /// The first error in the chain that made this tensor.
    pub async fn shape(&self) -> Result<Vec<usize>, Error> {
        self.waited();
        let reply = self.client.meta_request().send().promise.await?;
        Ok(reply
            .get()?
            .get_shape()?
            .iter()
            .map(|d| d as usize)
            .collect())
    }

    /// The dtype. Waits like [`RemoteTensor::shape`].
    ///
    /// # Errors
    ///
    /// The first error in the chain that made this tensor.
    pub async fn dtype(&self) -> Result<DType, Error> {
        self.waited();
        let reply = self.client.meta_request().send().promise.await?;
        codec::dtype(reply.get()?.get_dtype())
    }

    /// Fetches the contents as a dtype-dynamic array.
    ///
    /// # Errors
    ///
    /// The first error in the chain that made this tensor.
    pub async fn to_array(&self) -> Result<Array, Error> {
        super::Download::new().run(self).await
    }

    /// Fetches the contents as an `ndarray` of `T`.
    ///
    /// # Errors
    ///
    /// The first error in the chain that made this tensor, or a dtype other
    /// than `T`'s.
    pub async fn to_ndarray<T: TensorElement>(&self) -> Result<ArrayD<T>, Error> {
        let a = self.to_array().await?;
        let dtype = a.dtype();
        T::unwrap(a)
            .ok_or_else(|| Error::invalid(format!("tensor has dtype {dtype}, not {}", T::DTYPE)))
    }

    /// Fetches a one-element tensor as `f64` (a loss, say).
    ///
    /// # Errors
    ///
    /// The first error in the chain, or a tensor of more than one element.
    pub async fn item(&self) -> Result<f64, Error> {
        Ok(self.to_array().await?.to_scalar_f64()?)
    }
}
