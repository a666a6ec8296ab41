//! The `Tensor` capabilities a worker hands out, and the store that keeps
//! track of them.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::{Rc, Weak};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::RwLock;

use super::codec;
use super::download::{self, ReadTo};
use super::ops::{self, Alloc, Array, OpError, SliceSpec};
use super::quota::{Held, Reservation};
use super::spill::Stored;
use super::state::{Named, WorkerState};
use crate::schema::tensor_capnp::tensor;
use crate::Error;

use argument::{bounded, probe, settle};
use grant::Granted;

mod argument;
mod grant;
mod write;

/// Ops whose inputs hold more elements than this run on tokio's blocking
/// pool, so one big matmul does not stall every other call on the vat.
const OFFLOAD_ELEMENTS: usize = 1 << 16;

/// The longest a tensor argument that is still a promise is awaited when
/// the worker has no call deadline (with one, the deadline bounds it). A promise from the
/// caller's own connection resolves within a round trip; one that never does
/// fails the call after this long instead of holding it for ever.
pub(crate) const ARGUMENT_RESOLVE_LIMIT: Duration = Duration::from_secs(300);

/// The tensors of one worker instance (one vat).
#[derive(Debug)]
pub(crate) struct Store {
    pub(crate) state: Arc<WorkerState>,
    tensors: RefCell<HashMap<usize, Weak<TensorCap>>>,
}

impl Store {
    pub(crate) fn new(state: Arc<WorkerState>) -> Rc<Store> {
        Rc::new(Store {
            state,
            tensors: RefCell::default(),
        })
    }

    /// Hands out `array` (whose bytes `res` reserved) as a capability.
    pub(crate) fn publish(self: &Rc<Self>, array: Array, res: Reservation) -> tensor::Client {
        let held = res.keep(array.nbytes() as u64);
        self.publish_held(Stored::Mem(Arc::new(array)), Arc::new(held))
    }

    /// Hands out `stored`, whose bytes `held` counts, as a capability (one
    /// more handle on a named object, say).
    pub(crate) fn publish_held(self: &Rc<Self>, stored: Stored, held: Arc<Held>) -> tensor::Client {
        let cap = Rc::new(TensorCap {
            value: Arc::new(Mutex::new(Some((stored, held)))),
            store: Rc::downgrade(self),
            turns: RwLock::new(()),
        });
        self.tensors
            .borrow_mut()
            .insert(Rc::as_ptr(&cap) as usize, Rc::downgrade(&cap));
        crate::new_client_from_rc(cap)
    }

    /// The array behind a tensor capability, which must be one of ours.
    ///
    /// A promise is awaited until it settles, whoever sent it: the result of
    /// a call pipelined on this worker, or a promise the caller exported
    /// (`senderPromise`) and resolves later with a `Resolve` message, as
    /// libcapnp 0.9 does for a capability it has not yet got back from us.
    /// Only then is the capability checked: it must be one of this vat's
    /// tensors, and anything that settles elsewhere (an import from any
    /// connection, another vat) is refused.
    ///
    /// The wait is bounded: by the call's deadline when the worker has one
    /// (the guard fails the call with `call exceeded its deadline`), and by
    /// [`ARGUMENT_RESOLVE_LIMIT`] otherwise, so a promise its sender never
    /// resolves cannot hold the call for ever. (capnp-rpc 0.27 clients never
    /// resolve a promise they pass on from a third connection; such an
    /// argument fails at the deadline, a settled one at once.)
    ///
    /// An argument is read as it is when the call runs, without waiting
    /// for its turn (see [`TensorCap::turns`]): an assignment to it that
    /// has arrived but not finished may not be seen. Waiting would let
    /// `x.assign(s, y.add(x))` deadlock, the assignment holding `x`'s turn
    /// while it waits for its value, and the value for `x`'s turn.
    pub(crate) async fn resolve(&self, client: tensor::Client) -> Result<Arc<Array>, Error> {
        self.resolve_cap(client).await?.array()
    }

    /// The array behind a tensor capability of ours and the bytes it holds
    /// in the quotas, as a named object keeps them.
    pub(crate) async fn resolve_named(&self, client: tensor::Client) -> Result<Named, Error> {
        let (stored, held) = self.resolve_cap(client).await?.value()?;
        Ok(Named {
            stored,
            held,
            expires: None,
        })
    }

    /// The capability behind `client` (see [`Store::resolve`]).
    pub(crate) async fn resolve_cap(&self, client: tensor::Client) -> Result<Rc<TensorCap>, Error> {
        let hook = bounded(settle(client.client.hook)).await??;
        if hook.get_brand() == 0 {
            let cap = self
                .tensors
                .borrow()
                .get(&hook.get_ptr())
                .and_then(Weak::upgrade);
            if let Some(cap) = cap {
                return Ok(cap);
            }
        }
        // Not one of ours. A promise that broke (an error earlier in a
        // pipeline, a `Resolve` to an exception) settles to a broken
        // capability, which answers any call with its error: surface that.
        // So does an import from the caller: a client that had already
        // seen an earlier op fail (libcapnp, or ours after an await) sends
        // the broken promise back as a capability it hosts, which answers
        // with that op's error. Anything that answers `meta` is a tensor
        // of another worker (or connection).
        bounded(probe(hook)).await?
    }

    /// Runs `op` with a reservation on the quota, off the vat if the inputs
    /// are big, and publishes the result.
    pub(crate) async fn compute<F>(
        self: &Rc<Self>,
        inputs: usize,
        op: F,
    ) -> Result<tensor::Client, Error>
    where
        F: FnOnce(&dyn Alloc) -> Result<Array, OpError> + Send + 'static,
    {
        let res = Reservation::new(&self.state.quota);
        let (out, res) = if inputs > OFFLOAD_ELEMENTS {
            tokio::task::spawn_blocking(move || (op(&res), res))
                .await
                .map_err(|e| Error::internal(format_args!("tensor op task failed: {e}")))?
        } else {
            (op(&res), res)
        };
        Ok(self.publish(out?, res))
    }
}

/// A tensor's contents and the bytes they hold in the quotas; `None` once
/// moved away. Shared with a handoff ticket's grant, which empties it
/// when another worker has read it with `move`.
type Slot = Arc<Mutex<Option<(Stored, Arc<Held>)>>>;

/// One tensor.
#[derive(Debug)]
pub(crate) struct TensorCap {
    value: Slot,
    store: Weak<Store>,
    /// Orders the calls on this capability around assignments: each call
    /// that reads the contents takes a read turn before it looks at them,
    /// an assignment takes the write turn for its whole run. The lock is
    /// FIFO and each call queues for its turn before its first await, so
    /// calls run in the order they arrive (E-order): a read sent after an
    /// assignment waits for it, one sent before it is not held up.
    turns: RwLock<()>,
}

impl Drop for TensorCap {
    fn drop(&mut self) {
        if let Some(store) = self.store.upgrade() {
            store
                .tensors
                .borrow_mut()
                .remove(&(self as *const Self as usize));
        }
    }
}

impl TensorCap {
    fn value(&self) -> Result<(Stored, Arc<Held>), Error> {
        match &*super::state::lock(&self.value) {
            Some((a, h)) => Ok((a.clone(), h.clone())),
            None => Err(Error::invalid("tensor has been moved to another worker")),
        }
    }

    /// Frees the contents (moved away); other handles then fail.
    fn clear(&self) {
        super::state::lock(&self.value).take();
    }

    /// The array, in memory: a spilled tensor is read back into memory
    /// first (counted against the quotas like any new tensor), for good.
    fn array(&self) -> Result<Arc<Array>, Error> {
        let d = match self.value()?.0 {
            Stored::Mem(a) => return Ok(a),
            Stored::Disk(d) => d,
        };
        let res = Reservation::new(&self.store()?.state.quota);
        let shape: Vec<u64> = d.dims.iter().map(|&x| x as u64).collect();
        let a = Arc::new(Array::from_le_bytes(d.dtype, &shape, d.file.bytes(), &res)?);
        let held = Arc::new(res.keep(a.nbytes() as u64));
        let mut slot = super::state::lock(&self.value);
        if slot.is_some() {
            *slot = Some((Stored::Mem(a.clone()), held));
        }
        Ok(a)
    }

    /// The array once every assignment queued ahead of this call is done
    /// (see [`TensorCap::turns`]).
    async fn current(&self) -> Result<Arc<Array>, Error> {
        let _turn = self.turns.read().await;
        self.array()
    }

    /// Refuses a single-message read of a tensor too large for one.
    fn single_message(&self, a: &Array) -> Result<(), Error> {
        let limit = self.store()?.state.options.max_single_message;
        if a.nbytes() as u64 > limit {
            return Err(Error::invalid(format!(
                "tensor of {} bytes is larger than one message may carry ({limit} bytes); \
                 read it streamed (Tensor.readTo), as the capactor client does by itself",
                a.nbytes()
            )));
        }
        Ok(())
    }

    fn store(&self) -> Result<Rc<Store>, Error> {
        self.store
            .upgrade()
            .ok_or_else(|| Error::Disconnected("worker has shut down".into()))
    }

    /// Runs a one-input op on this tensor.
    async fn unary_op<F>(&self, op: F) -> Result<tensor::Client, Error>
    where
        F: FnOnce(&Array, &dyn Alloc) -> Result<Array, OpError> + Send + 'static,
    {
        let a = self.current().await?;
        self.store()?
            .compute(a.len(), move |alloc| op(&a, alloc))
            .await
    }

    /// Runs a two-input op on this tensor and `other`.
    async fn binary_op<F>(&self, other: tensor::Client, op: F) -> Result<tensor::Client, Error>
    where
        F: FnOnce(&Array, &Array, &dyn Alloc) -> Result<Array, OpError> + Send + 'static,
    {
        let store = self.store()?;
        let a = self.current().await?;
        let b = store.resolve(other).await?;
        store
            .compute(a.len() + b.len(), move |alloc| op(&a, &b, alloc))
            .await
    }
}

macro_rules! result {
    ($results:expr, $client:expr) => {{
        let client = $client.map_err(capnp::Error::from)?;
        $results.get().set_result(client);
        Ok(())
    }};
}

mod index;
mod shape;

impl tensor::Server for TensorCap {
    async fn meta(
        self: Rc<Self>,
        _: tensor::MetaParams,
        results: tensor::MetaResults,
    ) -> Result<(), capnp::Error> {
        write_meta(&self.value()?.0, results);
        Ok(())
    }

    async fn read(
        self: Rc<Self>,
        _: tensor::ReadParams,
        mut results: tensor::ReadResults,
    ) -> Result<(), capnp::Error> {
        let a = self.current().await?;
        self.single_message(&a)?;
        crate::call::Guard::current().reserve_reply(a.nbytes() as u64)?;
        codec::encode(&a, results.get().init_data())?;
        Ok(())
    }

    async fn read_to(
        self: Rc<Self>,
        params: tensor::ReadToParams,
        results: tensor::ReadToResults,
    ) -> Result<(), capnp::Error> {
        let p = params.get()?;
        let take = p.get_move();
        let req = ReadTo::from_params(p)?;
        let (stored, _) = {
            let _turn = self.turns.read().await;
            self.value()?
        };
        download::send(&stored, req, results).await?;
        if take {
            self.clear();
        }
        Ok(())
    }

    async fn handoff(
        self: Rc<Self>,
        params: tensor::HandoffParams,
        mut results: tensor::HandoffResults,
    ) -> Result<(), capnp::Error> {
        let take = params.get()?.get_move();
        let (stored, held) = {
            let _turn = self.turns.read().await;
            self.value()?
        };
        let state = self.store()?.state.clone();
        let moved = take.then(|| self.value.clone());
        let ticket = crate::ticket::mint(
            state.options.ticket_ttl,
            Box::new(move || {
                let granted: tensor::Client = crate::new_client(Granted {
                    value: RefCell::new(Some((stored, held))),
                    moved,
                });
                granted.client
            }),
        )?;
        let endpoint = state.endpoint().unwrap_or_default();
        let mut r = results.get();
        r.set_ticket(&ticket);
        if endpoint.address.is_empty() {
            r.set_address(crate::IN_PROCESS);
        } else {
            r.set_address(&endpoint.address);
        }
        r.set_tls_certificate(&endpoint.tls_certificate);
        Ok(())
    }

    async fn binary(
        self: Rc<Self>,
        params: tensor::BinaryParams,
        mut results: tensor::BinaryResults,
    ) -> Result<(), capnp::Error> {
        let p = params.get()?;
        let op = codec::binary_op(p.get_op())?;
        let other = p.get_other()?;
        result!(
            results,
            self.binary_op(other, move |a, b, m| Array::binary(op, a, b, m))
                .await
        )
    }

    async fn binary_scalar(
        self: Rc<Self>,
        params: tensor::BinaryScalarParams,
        mut results: tensor::BinaryScalarResults,
    ) -> Result<(), capnp::Error> {
        let p = params.get()?;
        let op = codec::binary_op(p.get_op())?;
        let s = codec::scalar(p.get_scalar()?)?;
        let left = p.get_scalar_on_left();
        result!(
            results,
            self.unary_op(move |a, m| Array::binary_scalar(op, a, s, left, m))
                .await
        )
    }

    async fn unary(
        self: Rc<Self>,
        params: tensor::UnaryParams,
        mut results: tensor::UnaryResults,
    ) -> Result<(), capnp::Error> {
        let op = codec::unary_op(params.get()?.get_op())?;
        result!(
            results,
            self.unary_op(move |a, m| Array::unary(op, a, m)).await
        )
    }

    async fn compare(
        self: Rc<Self>,
        params: tensor::CompareParams,
        mut results: tensor::CompareResults,
    ) -> Result<(), capnp::Error> {
        let p = params.get()?;
        let op = codec::compare_op(p.get_op())?;
        let other = p.get_other()?;
        result!(
            results,
            self.binary_op(other, move |a, b, m| Array::compare(op, a, b, m))
                .await
        )
    }

    async fn compare_scalar(
        self: Rc<Self>,
        params: tensor::CompareScalarParams,
        mut results: tensor::CompareScalarResults,
    ) -> Result<(), capnp::Error> {
        let p = params.get()?;
        let op = codec::compare_op(p.get_op())?;
        let s = codec::scalar(p.get_scalar()?)?;
        result!(
            results,
            self.unary_op(move |a, m| Array::compare_scalar(op, a, s, m))
                .await
        )
    }

    async fn matmul(
        self: Rc<Self>,
        params: tensor::MatmulParams,
        mut results: tensor::MatmulResults,
    ) -> Result<(), capnp::Error> {
        let other = params.get()?.get_other()?;
        result!(results, self.binary_op(other, Array::matmul).await)
    }

    async fn reduce(
        self: Rc<Self>,
        params: tensor::ReduceParams,
        mut results: tensor::ReduceResults,
    ) -> Result<(), capnp::Error> {
        let p = params.get()?;
        let op = codec::reduce_op(p.get_op())?;
        let axis = (!p.get_all_axes()).then(|| p.get_axis());
        let keep = p.get_keep_dims();
        let ddof = p.get_ddof();
        result!(
            results,
            self.unary_op(move |a, m| Array::reduce_ddof(op, a, axis, keep, ddof, m))
                .await
        )
    }

    async fn softmax(
        self: Rc<Self>,
        params: tensor::SoftmaxParams,
        mut results: tensor::SoftmaxResults,
    ) -> Result<(), capnp::Error> {
        let p = params.get()?;
        let (axis, log) = (p.get_axis(), p.get_log());
        result!(
            results,
            self.unary_op(move |a, m| Array::softmax(a, axis, log, m))
                .await
        )
    }

    async fn cumulative(
        self: Rc<Self>,
        params: tensor::CumulativeParams,
        mut results: tensor::CumulativeResults,
    ) -> Result<(), capnp::Error> {
        let p = params.get()?;
        let op = codec::cumulative_op(p.get_op())?;
        let axis = p.get_axis();
        result!(
            results,
            self.unary_op(move |a, m| Array::cumulative(op, a, axis, m))
                .await
        )
    }

    async fn clip(
        self: Rc<Self>,
        params: tensor::ClipParams,
        mut results: tensor::ClipResults,
    ) -> Result<(), capnp::Error> {
        let p = params.get()?;
        let min = p
            .get_has_min()
            .then(|| codec::scalar(p.get_min()?))
            .transpose()?;
        let max = p
            .get_has_max()
            .then(|| codec::scalar(p.get_max()?))
            .transpose()?;
        result!(
            results,
            self.unary_op(move |a, m| Array::clip(a, min, max, m)).await
        )
    }

    async fn reshape(
        self: Rc<Self>,
        params: tensor::ReshapeParams,
        mut results: tensor::ReshapeResults,
    ) -> Result<(), capnp::Error> {
        let shape: Vec<i64> = params.get()?.get_shape()?.iter().collect();
        result!(
            results,
            self.unary_op(move |a, m| Array::reshape(a, &shape, m))
                .await
        )
    }

    async fn transpose(
        self: Rc<Self>,
        params: tensor::TransposeParams,
        mut results: tensor::TransposeResults,
    ) -> Result<(), capnp::Error> {
        let perm: Vec<usize> = params
            .get()?
            .get_perm()?
            .iter()
            .map(|p| p as usize)
            .collect();
        result!(
            results,
            self.unary_op(move |a, m| {
                let perm = (!perm.is_empty()).then_some(&perm[..]);
                Array::transpose(a, perm, m)
            })
            .await
        )
    }

    async fn slice(
        self: Rc<Self>,
        params: tensor::SliceParams,
        mut results: tensor::SliceResults,
    ) -> Result<(), capnp::Error> {
        let specs = slice_specs(params.get()?.get_specs()?);
        result!(
            results,
            self.unary_op(move |a, m| Array::slice(a, &specs, m)).await
        )
    }

    async fn cast(
        self: Rc<Self>,
        params: tensor::CastParams,
        mut results: tensor::CastResults,
    ) -> Result<(), capnp::Error> {
        let dtype = codec::dtype(params.get()?.get_dtype())?;
        result!(
            results,
            self.unary_op(move |a, m| Array::cast(a, dtype, m)).await
        )
    }

    async fn select(
        self: Rc<Self>,
        params: tensor::SelectParams,
        mut results: tensor::SelectResults,
    ) -> Result<(), capnp::Error> {
        let p = params.get()?;
        let store = self.store()?;
        let cond = self.current().await?;
        let t = store.resolve(p.get_if_true()?).await?;
        let f = store.resolve(p.get_if_false()?).await?;
        let n = cond.len() + t.len() + f.len();
        result!(
            results,
            store
                .compute(n, move |m| Array::where_(&cond, &t, &f, m))
                .await
        )
    }

    async fn take_along_axis(
        self: Rc<Self>,
        params: tensor::TakeAlongAxisParams,
        results: tensor::TakeAlongAxisResults,
    ) -> Result<(), capnp::Error> {
        index::take_along_axis(&self, params, results).await
    }

    async fn index_select(
        self: Rc<Self>,
        params: tensor::IndexSelectParams,
        results: tensor::IndexSelectResults,
    ) -> Result<(), capnp::Error> {
        index::index_select(&self, params, results).await
    }

    async fn mask_select(
        self: Rc<Self>,
        params: tensor::MaskSelectParams,
        results: tensor::MaskSelectResults,
    ) -> Result<(), capnp::Error> {
        index::mask_select(&self, params, results).await
    }

    async fn scatter(
        self: Rc<Self>,
        params: tensor::ScatterParams,
        results: tensor::ScatterResults,
    ) -> Result<(), capnp::Error> {
        index::scatter(&self, params, results).await
    }

    async fn assign(
        self: Rc<Self>,
        params: tensor::AssignParams,
        results: tensor::AssignResults,
    ) -> Result<(), capnp::Error> {
        index::assign(&self, params, results).await
    }

    async fn assign_mask(
        self: Rc<Self>,
        params: tensor::AssignMaskParams,
        results: tensor::AssignMaskResults,
    ) -> Result<(), capnp::Error> {
        index::assign_mask(&self, params, results).await
    }

    async fn tensordot(
        self: Rc<Self>,
        params: tensor::TensordotParams,
        results: tensor::TensordotResults,
    ) -> Result<(), capnp::Error> {
        shape::tensordot(&self, params, results).await
    }

    async fn split(
        self: Rc<Self>,
        params: tensor::SplitParams,
        results: tensor::SplitResults,
    ) -> Result<(), capnp::Error> {
        shape::split(&self, params, results).await
    }

    async fn squeeze(
        self: Rc<Self>,
        params: tensor::SqueezeParams,
        results: tensor::SqueezeResults,
    ) -> Result<(), capnp::Error> {
        shape::squeeze(&self, params, results).await
    }

    async fn expand_dims(
        self: Rc<Self>,
        params: tensor::ExpandDimsParams,
        results: tensor::ExpandDimsResults,
    ) -> Result<(), capnp::Error> {
        shape::expand_dims(&self, params, results).await
    }

    async fn broadcast_to(
        self: Rc<Self>,
        params: tensor::BroadcastToParams,
        results: tensor::BroadcastToResults,
    ) -> Result<(), capnp::Error> {
        shape::broadcast_to(&self, params, results).await
    }

    async fn tile(
        self: Rc<Self>,
        params: tensor::TileParams,
        results: tensor::TileResults,
    ) -> Result<(), capnp::Error> {
        shape::tile(&self, params, results).await
    }

    async fn flip(
        self: Rc<Self>,
        params: tensor::FlipParams,
        results: tensor::FlipResults,
    ) -> Result<(), capnp::Error> {
        shape::flip(&self, params, results).await
    }

    async fn sort(
        self: Rc<Self>,
        params: tensor::SortParams,
        results: tensor::SortResults,
    ) -> Result<(), capnp::Error> {
        shape::sort(&self, params, results).await
    }

    async fn argsort(
        self: Rc<Self>,
        params: tensor::ArgsortParams,
        results: tensor::ArgsortResults,
    ) -> Result<(), capnp::Error> {
        shape::argsort(&self, params, results).await
    }

    async fn topk(
        self: Rc<Self>,
        params: tensor::TopkParams,
        results: tensor::TopkResults,
    ) -> Result<(), capnp::Error> {
        shape::topk(&self, params, results).await
    }

    async fn take(
        self: Rc<Self>,
        _: tensor::TakeParams,
        mut results: tensor::TakeResults,
    ) -> Result<(), capnp::Error> {
        let _turn = self.turns.read().await;
        let a = self.array()?;
        self.single_message(&a)?;
        crate::call::Guard::current().reserve_reply(a.nbytes() as u64)?;
        codec::encode(&a, results.get().init_data())?;
        // Freed only once the reply is built: a failure above leaves it.
        self.clear();
        Ok(())
    }
}

/// The slices of a `Tensor.slice` or `assign` call.
fn slice_specs(
    list: capnp::struct_list::Reader<'_, crate::schema::tensor_capnp::slice_spec::Owned>,
) -> Vec<SliceSpec> {
    list.iter()
        .map(|s| SliceSpec {
            start: s.get_has_start().then(|| s.get_start()),
            stop: s.get_has_stop().then(|| s.get_stop()),
            step: s.get_step(),
        })
        .collect()
}

/// Answers `Tensor.meta` for `a`, in memory or spilled (without reading it).
fn write_meta(a: &Stored, mut results: tensor::MetaResults) {
    let mut r = results.get();
    r.set_dtype(codec::to_wire(a.dtype()));
    codec::set_shape(r.init_shape(a.shape().len() as u32), a.shape());
}

/// Reads a list of tensor capabilities and resolves them against `store`.
pub(crate) async fn resolve_all(
    store: &Store,
    list: capnp::capability_list::Reader<'_, tensor::Client>,
) -> Result<Vec<Arc<Array>>, Error> {
    let clients: Vec<tensor::Client> = list.iter().collect::<Result<_, _>>()?;
    let mut out = Vec::with_capacity(clients.len());
    for c in clients {
        out.push(store.resolve(c).await?);
    }
    Ok(out)
}

/// Needed by `ops::Array::concat`, which takes references.
pub(crate) fn concat(
    arrays: &[Arc<Array>],
    axis: i64,
    alloc: &dyn Alloc,
) -> Result<Array, OpError> {
    let refs: Vec<&Array> = arrays.iter().map(|a| &**a).collect();
    ops::Array::concat(&refs, axis, alloc)
}
