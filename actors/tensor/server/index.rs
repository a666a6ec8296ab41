//! The `Tensor` methods of indexing with tensors and of assignment
//! (schema version 4), what `TensorCap`'s `tensor::Server` forwards to;
//! the writing itself is in `write.rs`.

use std::rc::Rc;

use super::write::Place;
use super::{slice_specs, Array, TensorCap};
use crate::schema::tensor_capnp::tensor;

pub(super) async fn take_along_axis(
    cap: &TensorCap,
    params: tensor::TakeAlongAxisParams,
    mut results: tensor::TakeAlongAxisResults,
) -> Result<(), capnp::Error> {
    let p = params.get()?;
    let axis = p.get_axis();
    result!(
        results,
        cap.binary_op(p.get_indices()?, move |a, i, m| {
            Array::take_along_axis(a, i, axis, m)
        })
        .await
    )
}

pub(super) async fn index_select(
    cap: &TensorCap,
    params: tensor::IndexSelectParams,
    mut results: tensor::IndexSelectResults,
) -> Result<(), capnp::Error> {
    let p = params.get()?;
    let axis = p.get_axis();
    result!(
        results,
        cap.binary_op(p.get_indices()?, move |a, i, m| {
            Array::index_select(a, i, axis, m)
        })
        .await
    )
}

pub(super) async fn mask_select(
    cap: &TensorCap,
    params: tensor::MaskSelectParams,
    mut results: tensor::MaskSelectResults,
) -> Result<(), capnp::Error> {
    let mask = params.get()?.get_mask()?;
    result!(results, cap.binary_op(mask, Array::mask_select).await)
}

pub(super) async fn scatter(
    cap: &TensorCap,
    params: tensor::ScatterParams,
    mut results: tensor::ScatterResults,
) -> Result<(), capnp::Error> {
    let p = params.get()?;
    let (axis, acc) = (p.get_axis(), p.get_accumulate());
    let store = cap.store()?;
    let a = cap.current().await?;
    let i = store.resolve(p.get_indices()?).await?;
    let v = store.resolve(p.get_values()?).await?;
    let n = a.len() + i.len() + v.len();
    result!(
        results,
        store
            .compute(n, move |m| Array::scatter(&a, &i, &v, axis, acc, m))
            .await
    )
}

pub(super) async fn assign(
    cap: &Rc<TensorCap>,
    params: tensor::AssignParams,
    mut results: tensor::AssignResults,
) -> Result<(), capnp::Error> {
    let p = params.get()?;
    let specs = slice_specs(p.get_specs()?);
    let value = p.get_value()?;
    result!(results, cap.write_at(Place::Slice(specs), value).await)
}

pub(super) async fn assign_mask(
    cap: &Rc<TensorCap>,
    params: tensor::AssignMaskParams,
    mut results: tensor::AssignMaskResults,
) -> Result<(), capnp::Error> {
    let p = params.get()?;
    let (mask, value) = (p.get_mask()?, p.get_value()?);
    result!(results, cap.write_at(Place::Mask(mask), value).await)
}
