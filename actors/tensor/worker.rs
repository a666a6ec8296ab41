//! [`TensorWorker`]: the actor that serves `TensorWorker`.

use std::rc::Rc;
use std::sync::Arc;

use super::codec;
use super::ops::{Alloc, Array, OpError};
use super::quota::Reservation;
use super::server::{self, Store};
use super::state::WorkerState;
use super::transfer::Incoming;
use super::upload::UploadCap;
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
/// }).unwrap();
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
                upload(
                    $crate::schema::tensor_capnp::tensor_worker::UploadParams,
                    $crate::schema::tensor_capnp::tensor_worker::UploadResults
                ),
                resume_upload(
                    $crate::schema::tensor_capnp::tensor_worker::ResumeUploadParams,
                    $crate::schema::tensor_capnp::tensor_worker::ResumeUploadResults
                ),
                store(
                    $crate::schema::tensor_capnp::tensor_worker::StoreParams,
                    $crate::schema::tensor_capnp::tensor_worker::StoreResults
                ),
                load(
                    $crate::schema::tensor_capnp::tensor_worker::LoadParams,
                    $crate::schema::tensor_capnp::tensor_worker::LoadResults
                ),
                delete(
                    $crate::schema::tensor_capnp::tensor_worker::DeleteParams,
                    $crate::schema::tensor_capnp::tensor_worker::DeleteResults
                ),
                list(
                    $crate::schema::tensor_capnp::tensor_worker::ListParams,
                    $crate::schema::tensor_capnp::tensor_worker::ListResults
                ),
                einsum(
                    $crate::schema::tensor_capnp::tensor_worker::EinsumParams,
                    $crate::schema::tensor_capnp::tensor_worker::EinsumResults
                ),
                stack(
                    $crate::schema::tensor_capnp::tensor_worker::StackParams,
                    $crate::schema::tensor_capnp::tensor_worker::StackResults
                ),
                eye(
                    $crate::schema::tensor_capnp::tensor_worker::EyeParams,
                    $crate::schema::tensor_capnp::tensor_worker::EyeResults
                ),
                linspace(
                    $crate::schema::tensor_capnp::tensor_worker::LinspaceParams,
                    $crate::schema::tensor_capnp::tensor_worker::LinspaceResults
                ),
                randint(
                    $crate::schema::tensor_capnp::tensor_worker::RandintParams,
                    $crate::schema::tensor_capnp::tensor_worker::RandintResults
                ),
                permutation(
                    $crate::schema::tensor_capnp::tensor_worker::PermutationParams,
                    $crate::schema::tensor_capnp::tensor_worker::PermutationResults
                ),
            ]
        );
    };
}

/// A worker that holds tensors and computes on them.
///
/// One instance serves one vat; instances of one worker share a
/// [`WorkerState`]: the [`Quota`] through which the worker's memory limit
/// and its live tensors are counted, its named objects and the uploads
/// under way. A worker served on several vats gives each instance the same
/// state ([`TensorWorker::with_state`]).
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
/// }).unwrap();
/// ```
#[derive(Debug)]
pub struct TensorWorker {
    meta: ActorMeta,
    store: Rc<Store>,
}

impl TensorWorker {
    /// A worker called `name` whose tensors count against `quota`, with a
    /// state of its own (for a worker on one vat).
    pub fn new(name: impl Into<String>, quota: Arc<Quota>) -> Self {
        Self::with_state(name, WorkerState::new(quota))
    }

    /// A worker called `name` sharing `state` with the other instances of
    /// the same worker.
    pub fn with_state(name: impl Into<String>, state: Arc<WorkerState>) -> Self {
        Self::with_meta_state(
            ActorMeta::new(name, "tensor-worker", &[TENSOR_WORKER]),
            state,
        )
    }

    /// A worker with the given identity: for actors that extend
    /// `TensorWorker` and list their own interfaces first.
    pub fn with_meta(meta: ActorMeta, quota: Arc<Quota>) -> Self {
        Self::with_meta_state(meta, WorkerState::new(quota))
    }

    /// A worker with the given identity and shared state.
    pub fn with_meta_state(meta: ActorMeta, state: Arc<WorkerState>) -> Self {
        TensorWorker {
            meta,
            store: Store::new(state),
        }
    }

    /// The worker's quota.
    pub fn quota(&self) -> &Arc<Quota> {
        &self.store.state.quota
    }

    /// The state the worker's instances share.
    pub fn state(&self) -> &Arc<WorkerState> {
        &self.store.state
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
    /// }).unwrap();
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
        let res = Reservation::new(&self.store.state.quota);
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
        let q = &self.store.state.quota;
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
        let name = match p.get_name()?.to_str() {
            Ok("") => None,
            Ok(n) => Some(n.to_owned()),
            Err(_) => return Err(Error::invalid("object name is not UTF-8").into()),
        };
        let t = super::handoff::fetch(&self.store, source, p.get_move(), name).await?;
        results.get().set_tensor(t);
        Ok(())
    }

    async fn memory(
        self: Rc<Self>,
        _: tensor_worker::MemoryParams,
        mut results: tensor_worker::MemoryResults,
    ) -> Result<(), capnp::Error> {
        let mut r = results.get();
        let q = &self.store.state.quota;
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

    async fn upload(
        self: Rc<Self>,
        params: tensor_worker::UploadParams,
        mut results: tensor_worker::UploadResults,
    ) -> Result<(), capnp::Error> {
        let p = params.get()?;
        let dtype = codec::dtype(p.get_dtype())?;
        let shape = codec::shape(p.get_shape()?);
        let state = &self.store.state;
        let res = Reservation::new(&state.quota);
        let (incoming, held) = match (Incoming::new(dtype, &shape, &res), &state.options.spill) {
            (Ok(i), _) => {
                let held = res.keep(i.total() as u64);
                (i, held)
            }
            // Past the memory limit: into the spill directory, if there is one.
            (Err(OpError::Budget { .. }), Some(spill)) => {
                let disk = Reservation::only(spill.quota(), "spill");
                let i = Incoming::new_mapped(dtype, &shape, spill, &disk)?;
                let held = disk.keep(i.total() as u64);
                (i, held)
            }
            (Err(e), _) => return Err(Error::from(e).into()),
        };
        let (id, pending) = state.begin_upload(incoming, held)?;
        let mut r = results.get();
        r.set_id(&id);
        r.set_upload(UploadCap::client(
            state.clone(),
            self.store.clone(),
            id,
            pending,
        ));
        Ok(())
    }

    async fn resume_upload(
        self: Rc<Self>,
        params: tensor_worker::ResumeUploadParams,
        mut results: tensor_worker::ResumeUploadResults,
    ) -> Result<(), capnp::Error> {
        let id = params.get()?.get_id()?.to_vec();
        let state = &self.store.state;
        let pending = state.resume_upload(&id)?;
        let offset = super::state::lock(&pending)
            .incoming
            .as_ref()
            .map_or(0, |(i, _)| i.received() as u64);
        let mut r = results.get();
        r.set_offset(offset);
        r.set_upload(UploadCap::client(
            state.clone(),
            self.store.clone(),
            id,
            pending,
        ));
        Ok(())
    }

    async fn store(
        self: Rc<Self>,
        params: tensor_worker::StoreParams,
        _: tensor_worker::StoreResults,
    ) -> Result<(), capnp::Error> {
        let p = params.get()?;
        let name = text(p.get_name()?)?;
        let ttl = p.get_ttl_millis();
        let mut object = self.store.resolve_named(p.get_tensor()?).await?;
        self.store.state.store_with_ttl(&name, &mut object, ttl)?;
        Ok(())
    }

    async fn load(
        self: Rc<Self>,
        params: tensor_worker::LoadParams,
        mut results: tensor_worker::LoadResults,
    ) -> Result<(), capnp::Error> {
        let name = text(params.get()?.get_name()?)?;
        let o = self.store.state.load(&name)?;
        results
            .get()
            .set_tensor(self.store.publish_held(o.stored, o.held));
        Ok(())
    }

    async fn delete(
        self: Rc<Self>,
        params: tensor_worker::DeleteParams,
        _: tensor_worker::DeleteResults,
    ) -> Result<(), capnp::Error> {
        let name = text(params.get()?.get_name()?)?;
        self.store.state.delete(&name)?;
        Ok(())
    }

    async fn list(
        self: Rc<Self>,
        _: tensor_worker::ListParams,
        mut results: tensor_worker::ListResults,
    ) -> Result<(), capnp::Error> {
        let objects = self.store.state.list();
        let mut list = results.get().init_objects(codec::list_len(objects.len())?);
        for (i, o) in objects.iter().enumerate() {
            let mut e = list.reborrow().get(i as u32);
            e.set_name(&o.name);
            e.set_dtype(codec::to_wire(o.dtype));
            e.set_shape(&o.shape[..])?;
            e.set_bytes(o.bytes);
            e.set_expires_in_millis(o.expires_in.map_or(0, |d| d.as_millis().max(1) as u64));
        }
        Ok(())
    }

    // Schema version 4: einsum, stack and the makers.

    async fn einsum(
        self: Rc<Self>,
        params: tensor_worker::EinsumParams,
        mut results: tensor_worker::EinsumResults,
    ) -> Result<(), capnp::Error> {
        let p = params.get()?;
        let subscripts = p
            .get_subscripts()?
            .to_str()
            .map_err(|_| Error::invalid("einsum: subscripts are not UTF-8"))?
            .to_owned();
        let t = self
            .over_list(p.get_operands()?, move |xs, m| {
                Array::einsum(&subscripts, xs, m)
            })
            .await?;
        results.get().set_tensor(t);
        Ok(())
    }

    async fn stack(
        self: Rc<Self>,
        params: tensor_worker::StackParams,
        mut results: tensor_worker::StackResults,
    ) -> Result<(), capnp::Error> {
        let p = params.get()?;
        let axis = p.get_axis();
        let t = self
            .over_list(p.get_tensors()?, move |xs, m| Array::stack(xs, axis, m))
            .await?;
        results.get().set_tensor(t);
        Ok(())
    }

    async fn eye(
        self: Rc<Self>,
        params: tensor_worker::EyeParams,
        mut results: tensor_worker::EyeResults,
    ) -> Result<(), capnp::Error> {
        let p = params.get()?;
        let dtype = codec::dtype(p.get_dtype())?;
        let m_cols = p.get_has_m().then(|| p.get_m());
        let (n, k) = (p.get_n(), p.get_k());
        let t = self.make(|m| Array::eye(dtype, n, m_cols, k, m))?;
        results.get().set_tensor(t);
        Ok(())
    }

    async fn linspace(
        self: Rc<Self>,
        params: tensor_worker::LinspaceParams,
        mut results: tensor_worker::LinspaceResults,
    ) -> Result<(), capnp::Error> {
        let p = params.get()?;
        let dtype = codec::dtype(p.get_dtype())?;
        let (start, stop, num, end) = (p.get_start(), p.get_stop(), p.get_num(), p.get_endpoint());
        let t = self.make(|m| Array::linspace(dtype, start, stop, num, end, m))?;
        results.get().set_tensor(t);
        Ok(())
    }

    async fn randint(
        self: Rc<Self>,
        params: tensor_worker::RandintParams,
        mut results: tensor_worker::RandintResults,
    ) -> Result<(), capnp::Error> {
        let p = params.get()?;
        let dtype = codec::dtype(p.get_dtype())?;
        let shape = codec::shape(p.get_shape()?);
        let (low, high, seed) = (p.get_low(), p.get_high(), p.get_seed());
        let t = self.make(|m| Array::randint(dtype, low, high, &shape, seed, m))?;
        results.get().set_tensor(t);
        Ok(())
    }

    async fn permutation(
        self: Rc<Self>,
        params: tensor_worker::PermutationParams,
        mut results: tensor_worker::PermutationResults,
    ) -> Result<(), capnp::Error> {
        let p = params.get()?;
        let (n, seed) = (p.get_n(), p.get_seed());
        let t = self.make(|m| Array::permutation(n, seed, m))?;
        results.get().set_tensor(t);
        Ok(())
    }
}

impl TensorWorker {
    /// `TensorWorker.einsum` and `stack`: an op over a list of this
    /// worker's tensors.
    async fn over_list<F>(
        &self,
        list: capnp::capability_list::Reader<'_, tensor::Client>,
        op: F,
    ) -> Result<tensor::Client, Error>
    where
        F: FnOnce(&[&Array], &dyn Alloc) -> Result<Array, OpError> + Send + 'static,
    {
        let arrays = server::resolve_all(&self.store, list).await?;
        let n = arrays.iter().map(|a| a.len()).sum();
        self.store
            .compute(n, move |m| {
                let refs: Vec<&Array> = arrays.iter().map(|a| &**a).collect();
                op(&refs, m)
            })
            .await
    }
}

/// A text parameter as a `String`.
fn text(t: capnp::text::Reader<'_>) -> Result<String, Error> {
    t.to_str()
        .map(str::to_owned)
        .map_err(|_| Error::invalid("object name is not UTF-8"))
}
