//! [`TensorWorker`]: the actor that serves `TensorWorker`.

use std::rc::Rc;
use std::sync::Arc;

use super::codec;
use super::ops::{Alloc, Array, OpError};
use super::quota::Reservation;
use super::server::{self, Store};
use crate::actor::{ActorMeta, Interface};
use crate::call::Guard;
use crate::schema::actor_capnp::actor;
use crate::schema::tensor_capnp::{distribution, tensor, tensor_worker};
use crate::Error;
use crate::Quota;

/// The `TensorWorker` interface.
pub const TENSOR_WORKER: Interface = Interface::of::<tensor_worker::Client>("TensorWorker");

/// Implements `Actor` and `TensorWorker` for a type by forwarding every
/// call to the [`TensorWorker`] in one of its fields (an
/// `Rc<TensorWorker>`).
///
/// For actors whose interface extends `TensorWorker`: write the methods of
/// your own interface, and let this serve the inherited ones with capactor's
/// implementation, including the methods later versions of capactor add.
/// Make the inner worker with [`TensorWorker::with_meta`] so that `info`
/// names your interfaces first. Your methods reach the tensors clients made
/// through [`TensorWorker::array`], and hand out new ones with
/// [`TensorWorker::publish`] or [`TensorWorker::compute`].
///
/// # Examples
///
/// A `Trainer extends(TensorWorker)` from your own schema (see
/// docs/EXTENDING.md and `examples/trainer`):
///
/// ```text
/// struct Trainer {
///     worker: Rc<TensorWorker>,
/// }
///
/// capactor::serve_tensor_worker_via!(Trainer, worker);
///
/// impl trainer::Server for Trainer {
///     async fn step(self: Rc<Self>, params: trainer::StepParams, mut results: trainer::StepResults)
///         -> Result<(), capnp::Error> {
///         let x = self.worker.array(params.get()?.get_x()?).await?;
///         // ...
///         Ok(())
///     }
/// }
/// ```
///
/// A type that only adds Rust behaviour serves `TensorWorker` itself:
///
/// ```
/// use std::rc::Rc;
/// use capactor::actors::tensor::{Quota, TensorWorker};
/// use capactor::schema::tensor_capnp::tensor_worker;
///
/// struct Logged { worker: Rc<TensorWorker> }
/// capactor::serve_tensor_worker_via!(Logged, worker);
///
/// capactor::block_on(async {
///     let w: tensor_worker::Client = capactor::spawn_local(Logged {
///         worker: Rc::new(TensorWorker::new("w", Quota::new(1 << 20))),
///     });
///     let about = capactor::describe(&w).await.unwrap();
///     assert_eq!(about.interfaces[0].name, "TensorWorker");
/// });
/// ```
#[macro_export]
macro_rules! serve_tensor_worker_via {
    ($ty:ty, $field:ident) => {
        $crate::__forward_server!(
            $ty,
            $field,
            $crate::actors::tensor::TensorWorker,
            $crate::schema::actor_capnp::actor::Server,
            [
                ping(
                    $crate::schema::actor_capnp::actor::PingParams,
                    $crate::schema::actor_capnp::actor::PingResults
                ),
                info(
                    $crate::schema::actor_capnp::actor::InfoParams,
                    $crate::schema::actor_capnp::actor::InfoResults
                ),
            ]
        );
        $crate::__forward_server!(
            $ty,
            $field,
            $crate::actors::tensor::TensorWorker,
            $crate::schema::tensor_capnp::tensor_worker::Server,
            [
                from_data(
                    $crate::schema::tensor_capnp::tensor_worker::FromDataParams,
                    $crate::schema::tensor_capnp::tensor_worker::FromDataResults
                ),
                full(
                    $crate::schema::tensor_capnp::tensor_worker::FullParams,
                    $crate::schema::tensor_capnp::tensor_worker::FullResults
                ),
                arange(
                    $crate::schema::tensor_capnp::tensor_worker::ArangeParams,
                    $crate::schema::tensor_capnp::tensor_worker::ArangeResults
                ),
                random(
                    $crate::schema::tensor_capnp::tensor_worker::RandomParams,
                    $crate::schema::tensor_capnp::tensor_worker::RandomResults
                ),
                concat(
                    $crate::schema::tensor_capnp::tensor_worker::ConcatParams,
                    $crate::schema::tensor_capnp::tensor_worker::ConcatResults
                ),
                fetch(
                    $crate::schema::tensor_capnp::tensor_worker::FetchParams,
                    $crate::schema::tensor_capnp::tensor_worker::FetchResults
                ),
                memory(
                    $crate::schema::tensor_capnp::tensor_worker::MemoryParams,
                    $crate::schema::tensor_capnp::tensor_worker::MemoryResults
                ),
            ]
        );
    };
}

/// A worker that holds tensors and computes on them.
///
/// One instance serves one vat; instances of one worker share a [`Quota`],
/// through which the worker's memory limit and its live tensors are
/// counted.
///
/// # Examples
///
/// ```
/// use capactor::actors::tensor::{Quota, TensorWorker};
/// use capactor::schema::tensor_capnp::tensor_worker;
///
/// let rt = capactor::Runtime::new().unwrap();
/// let quota = Quota::new(1 << 30);
/// capactor::block_on(async {
///     let w: capactor::Connection<tensor_worker::Client> =
///         rt.spawn_virtual(move || TensorWorker::new("w1", quota));
/// });
/// ```
#[derive(Debug)]
pub struct TensorWorker {
    meta: ActorMeta,
    store: Rc<Store>,
}

impl TensorWorker {
    /// A worker called `name` whose tensors count against `quota`.
    pub fn new(name: impl Into<String>, quota: Arc<Quota>) -> Self {
        Self::with_meta(
            ActorMeta::new(name, "tensor-worker", &[TENSOR_WORKER]),
            quota,
        )
    }

    /// A worker with the given identity: for actors that extend
    /// `TensorWorker` and list their own interfaces first.
    pub fn with_meta(meta: ActorMeta, quota: Arc<Quota>) -> Self {
        TensorWorker {
            meta,
            store: Store::new(quota),
        }
    }

    /// The worker's quota.
    pub fn quota(&self) -> &Arc<Quota> {
        &self.store.quota
    }

    /// The actor's identity (what `info` answers with).
    pub fn meta(&self) -> &ActorMeta {
        &self.meta
    }

    /// The array behind `tensor`, a tensor this worker holds: for actors
    /// that extend `TensorWorker` and compute on the tensors their clients
    /// made on it.
    ///
    /// Waits for `tensor` if it is the pipelined result of a call to this
    /// worker that has not finished yet.
    ///
    /// # Errors
    ///
    /// Fails if `tensor` lives on another worker (or is a broken
    /// capability, in which case its error is returned), or has been moved
    /// away.
    ///
    /// # Examples
    ///
    /// ```
    /// use capactor::actors::tensor::{Array, Quota, TensorWorker};
    /// use ndarray::array;
    ///
    /// capactor::block_on(async {
    ///     let worker = TensorWorker::new("w", Quota::new(1 << 20));
    ///     let t = worker.publish(Array::F32(array![1.0f32, 2.0].into_dyn())).unwrap();
    ///     let a = worker.array(t).await.unwrap();
    ///     assert_eq!(a.shape(), &[2]);
    /// });
    /// ```
    pub async fn array(&self, tensor: tensor::Client) -> Result<Arc<Array>, Error> {
        self.store.resolve(tensor).await
    }

    /// Hands out `array` as a tensor of this worker, counted against its
    /// quota (and the calling connection's, inside a call) like the tensors
    /// its own methods make.
    ///
    /// # Errors
    ///
    /// Fails with a limit error (`overloaded` on the wire) if a quota
    /// cannot hold the array.
    pub fn publish(&self, array: Array) -> Result<tensor::Client, Error> {
        self.make(|m| -> Result<Array, Error> {
            m.reserve("publish", array.nbytes())?;
            Ok(array)
        })
    }

    /// Runs `op` on the worker's quota, as the worker's own ops run: `op`
    /// reserves its output through the [`Alloc`] before allocating it, runs
    /// on tokio's blocking pool if `inputs` (elements read) is large, and
    /// its result is handed out as a tensor of this worker.
    ///
    /// # Errors
    ///
    /// Fails with `op`'s error, or a limit error if a quota refuses the
    /// output.
    pub async fn compute<F>(&self, inputs: usize, op: F) -> Result<tensor::Client, Error>
    where
        F: FnOnce(&dyn Alloc) -> Result<Array, OpError> + Send + 'static,
    {
        self.store.compute(inputs, op).await
    }

    fn make<F, E>(&self, f: F) -> Result<tensor::Client, Error>
    where
        F: FnOnce(&dyn Alloc) -> Result<Array, E>,
        Error: From<E>,
    {
        let res = Reservation::new(&self.store.quota);
        let array = f(&res)?;
        Ok(self.store.publish(array, res))
    }
}

impl actor::Server for TensorWorker {
    async fn ping(
        self: Rc<Self>,
        _: actor::PingParams,
        _: actor::PingResults,
    ) -> Result<(), capnp::Error> {
        Ok(())
    }

    async fn info(
        self: Rc<Self>,
        _: actor::InfoParams,
        mut results: actor::InfoResults,
    ) -> Result<(), capnp::Error> {
        let q = &self.store.quota;
        self.meta
            .write_info(results.get().init_info(), q.live_tensors(), q.used());
        Ok(())
    }
}

impl tensor_worker::Server for TensorWorker {
    async fn from_data(
        self: Rc<Self>,
        params: tensor_worker::FromDataParams,
        mut results: tensor_worker::FromDataResults,
    ) -> Result<(), capnp::Error> {
        let data = params.get()?.get_data()?;
        let t = self.make(|m| codec::decode(data, m))?;
        results.get().set_tensor(t);
        Ok(())
    }

    async fn full(
        self: Rc<Self>,
        params: tensor_worker::FullParams,
        mut results: tensor_worker::FullResults,
    ) -> Result<(), capnp::Error> {
        let p = params.get()?;
        let dtype = codec::dtype(p.get_dtype())?;
        let shape = codec::shape(p.get_shape()?);
        let value = codec::scalar(p.get_value()?)?;
        let t = self.make(|m| Array::full(dtype, &shape, value, m))?;
        results.get().set_tensor(t);
        Ok(())
    }

    async fn arange(
        self: Rc<Self>,
        params: tensor_worker::ArangeParams,
        mut results: tensor_worker::ArangeResults,
    ) -> Result<(), capnp::Error> {
        let p = params.get()?;
        let dtype = codec::dtype(p.get_dtype())?;
        let (start, stop, step) = (p.get_start(), p.get_stop(), p.get_step());
        let t = self.make(|m| Array::arange(dtype, start, stop, step, m))?;
        results.get().set_tensor(t);
        Ok(())
    }

    async fn random(
        self: Rc<Self>,
        params: tensor_worker::RandomParams,
        mut results: tensor_worker::RandomResults,
    ) -> Result<(), capnp::Error> {
        let p = params.get()?;
        let dtype = codec::dtype(p.get_dtype())?;
        let shape = codec::shape(p.get_shape()?);
        let seed = p.get_seed();
        let dist = p.get_distribution()?;
        let t = match codec::tag("distribution", dist.which())? {
            distribution::Uniform(u) => {
                let (low, high) = (u.get_low(), u.get_high());
                self.make(|m| Array::random_uniform(dtype, &shape, low, high, seed, m))?
            }
            distribution::Normal(n) => {
                let (mean, std) = (n.get_mean(), n.get_std());
                self.make(|m| Array::random_normal(dtype, &shape, mean, std, seed, m))?
            }
        };
        results.get().set_tensor(t);
        Ok(())
    }

    async fn concat(
        self: Rc<Self>,
        params: tensor_worker::ConcatParams,
        mut results: tensor_worker::ConcatResults,
    ) -> Result<(), capnp::Error> {
        let p = params.get()?;
        let axis = p.get_axis();
        let arrays = server::resolve_all(&self.store, p.get_tensors()?).await?;
        let n = arrays.iter().map(|a| a.len()).sum();
        let t = self
            .store
            .compute(n, move |m| server::concat(&arrays, axis, m))
            .await?;
        results.get().set_tensor(t);
        Ok(())
    }

    async fn fetch(
        self: Rc<Self>,
        params: tensor_worker::FetchParams,
        mut results: tensor_worker::FetchResults,
    ) -> Result<(), capnp::Error> {
        let p = params.get()?;
        let source = p.get_source()?;
        // The bytes come from the source worker through the client that
        // holds both (capnp-rpc has no three-party handoff).
        let t = if p.get_move() {
            let r = source.take_request().send().promise.await?;
            self.make(|m| codec::decode(r.get()?.get_data()?, m))?
        } else {
            let r = source.read_request().send().promise.await?;
            self.make(|m| codec::decode(r.get()?.get_data()?, m))?
        };
        results.get().set_tensor(t);
        Ok(())
    }

    async fn memory(
        self: Rc<Self>,
        _: tensor_worker::MemoryParams,
        mut results: tensor_worker::MemoryResults,
    ) -> Result<(), capnp::Error> {
        let mut r = results.get();
        let q = &self.store.quota;
        let guard = Guard::current();
        r.set_limit(q.limit());
        // The worker's use is everyone's activity: only where the worker
        // shows totals. Otherwise the caller's own connection's.
        let conn = guard.memory();
        match conn {
            Some(conn) if !guard.shows_worker_totals() => r.set_used(conn.used()),
            _ => r.set_used(q.used()),
        }
        // Every remote connection counts what it holds; "no budget" is an
        // unlimited one, reported as 0 and 0 as before.
        if let Some(conn) = conn.filter(|c| c.limit() != u64::MAX) {
            r.set_connection_limit(conn.limit());
            r.set_connection_used(conn.used());
        }
        Ok(())
    }
}
