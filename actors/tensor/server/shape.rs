//! The `Tensor` methods of the shape ops of schema version 4 (what
//! `TensorCap`'s `tensor::Server` forwards to), and the publishing of ops
//! with several results.

use std::rc::Rc;
use std::sync::Arc;

use super::{
    codec, Alloc, Array, OpError, Reservation, Store, Stored, TensorCap, OFFLOAD_ELEMENTS,
};
use crate::schema::tensor_capnp::tensor;
use crate::Error;

impl Store {
    /// [`Store::compute`] for an op with several results (split, topk),
    /// each published as its own tensor.
    pub(crate) async fn compute_many<F>(
        self: &Rc<Self>,
        inputs: usize,
        op: F,
    ) -> Result<Vec<tensor::Client>, Error>
    where
        F: FnOnce(&dyn Alloc) -> Result<Vec<Array>, OpError> + Send + 'static,
    {
        let res = Reservation::new(&self.state.quota);
        let (out, res) = if inputs > OFFLOAD_ELEMENTS {
            tokio::task::spawn_blocking(move || (op(&res), res))
                .await
                .map_err(|e| Error::internal(format_args!("tensor op task failed: {e}")))?
        } else {
            (op(&res), res)
        };
        // The first `keep` gives back what the op reserved; each keeps its own.
        Ok(out?
            .into_iter()
            .map(|a| {
                let held = res.keep(a.nbytes() as u64);
                self.publish_held(Stored::Mem(Arc::new(a)), Arc::new(held))
            })
            .collect())
    }
}

pub(super) async fn tensordot(
    cap: &TensorCap,
    params: tensor::TensordotParams,
    mut results: tensor::TensordotResults,
) -> Result<(), capnp::Error> {
    let p = params.get()?;
    let n = p.get_axes();
    let la: Vec<i64> = p.get_axes_self()?.iter().collect();
    let lb: Vec<i64> = p.get_axes_other()?.iter().collect();
    let other = p.get_other()?;
    result!(
        results,
        cap.binary_op(other, move |a, b, m| {
            let lists = (!la.is_empty() || !lb.is_empty()).then_some((&la[..], &lb[..]));
            Array::tensordot(a, b, n, lists, m)
        })
        .await
    )
}

pub(super) async fn split(
    cap: &TensorCap,
    params: tensor::SplitParams,
    mut results: tensor::SplitResults,
) -> Result<(), capnp::Error> {
    let p = params.get()?;
    let (axis, sections) = (p.get_axis(), p.get_sections());
    let indices: Vec<i64> = p.get_indices()?.iter().collect();
    let a = cap.array()?;
    let parts = cap
        .store()?
        .compute_many(a.len(), move |m| {
            Array::split(&a, axis, sections, &indices, m)
        })
        .await?;
    let mut list = results.get().init_parts(codec::list_len(parts.len())?);
    for (i, t) in parts.into_iter().enumerate() {
        list.set(i as u32, t.client.hook);
    }
    Ok(())
}

pub(super) async fn squeeze(
    cap: &TensorCap,
    params: tensor::SqueezeParams,
    mut results: tensor::SqueezeResults,
) -> Result<(), capnp::Error> {
    let axes: Vec<i64> = params.get()?.get_axes()?.iter().collect();
    result!(
        results,
        cap.unary_op(move |a, m| { Array::squeeze(a, (!axes.is_empty()).then_some(&axes[..]), m) })
            .await
    )
}

pub(super) async fn expand_dims(
    cap: &TensorCap,
    params: tensor::ExpandDimsParams,
    mut results: tensor::ExpandDimsResults,
) -> Result<(), capnp::Error> {
    let axes: Vec<i64> = params.get()?.get_axes()?.iter().collect();
    result!(
        results,
        cap.unary_op(move |a, m| Array::expand_dims(a, &axes, m))
            .await
    )
}

pub(super) async fn broadcast_to(
    cap: &TensorCap,
    params: tensor::BroadcastToParams,
    mut results: tensor::BroadcastToResults,
) -> Result<(), capnp::Error> {
    let shape = codec::shape(params.get()?.get_shape()?);
    result!(
        results,
        cap.unary_op(move |a, m| Array::broadcast_to(a, &shape, m))
            .await
    )
}

pub(super) async fn tile(
    cap: &TensorCap,
    params: tensor::TileParams,
    mut results: tensor::TileResults,
) -> Result<(), capnp::Error> {
    let reps = codec::shape(params.get()?.get_reps()?);
    result!(
        results,
        cap.unary_op(move |a, m| Array::tile(a, &reps, m)).await
    )
}

pub(super) async fn flip(
    cap: &TensorCap,
    params: tensor::FlipParams,
    mut results: tensor::FlipResults,
) -> Result<(), capnp::Error> {
    let axes: Vec<i64> = params.get()?.get_axes()?.iter().collect();
    result!(
        results,
        cap.unary_op(move |a, m| Array::flip(a, (!axes.is_empty()).then_some(&axes[..]), m))
            .await
    )
}

pub(super) async fn sort(
    cap: &TensorCap,
    params: tensor::SortParams,
    mut results: tensor::SortResults,
) -> Result<(), capnp::Error> {
    let axis = params.get()?.get_axis();
    result!(
        results,
        cap.unary_op(move |a, m| Array::sort(a, axis, m)).await
    )
}

pub(super) async fn argsort(
    cap: &TensorCap,
    params: tensor::ArgsortParams,
    mut results: tensor::ArgsortResults,
) -> Result<(), capnp::Error> {
    let axis = params.get()?.get_axis();
    result!(
        results,
        cap.unary_op(move |a, m| Array::argsort(a, axis, m)).await
    )
}

pub(super) async fn topk(
    cap: &TensorCap,
    params: tensor::TopkParams,
    mut results: tensor::TopkResults,
) -> Result<(), capnp::Error> {
    let p = params.get()?;
    let (k, axis, largest) = (p.get_k(), p.get_axis(), p.get_largest());
    let a = cap.array()?;
    let mut got = cap
        .store()?
        .compute_many(a.len(), move |m| {
            let (v, i) = Array::topk(&a, k, axis, largest, m)?;
            Ok(vec![v, i])
        })
        .await?
        .into_iter();
    let mut r = results.get();
    if let (Some(v), Some(i)) = (got.next(), got.next()) {
        r.set_values(v);
        r.set_indices(i);
    }
    Ok(())
}
