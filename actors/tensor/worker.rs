//! [`TensorWorker`]: the actor that serves `TensorWorker`.

use std::rc::Rc;
use std::sync::Arc;

use super::codec;
use super::ops::{Alloc, Array};
use super::quota::Reservation;
use super::server::{self, Store};
use crate::actor::{ActorMeta, Interface};
use crate::schema::actor_capnp::actor;
use crate::schema::tensor_capnp::{distribution, tensor, tensor_worker};
use crate::Error;
use crate::Quota;

/// The `TensorWorker` interface.
pub const TENSOR_WORKER: Interface = Interface::of::<tensor_worker::Client>("TensorWorker");

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
}
