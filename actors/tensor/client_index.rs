//! [`RemoteTensor`]'s indexing methods: gathering with integer and boolean
//! tensors, scatter, and assignment (schema version 4).

use super::client::RemoteTensor;
use super::ops::SliceSpec;
use crate::schema::tensor_capnp::tensor;

/// Fills a `List(SliceSpec)` of a request.
pub(super) fn set_specs(
    mut list: capnp::struct_list::Builder<'_, crate::schema::tensor_capnp::slice_spec::Owned>,
    specs: &[SliceSpec],
) {
    for (i, s) in specs.iter().enumerate() {
        let mut e = list.reborrow().get(i as u32);
        e.set_has_start(s.start.is_some());
        e.set_start(s.start.unwrap_or(0));
        e.set_has_stop(s.stop.is_some());
        e.set_stop(s.stop.unwrap_or(0));
        e.set_step(s.step);
    }
}

impl RemoteTensor {
    fn sent(&self, client: tensor::Client) -> RemoteTensor {
        self.worker().sent(client)
    }

    /// NumPy's `take_along_axis`: the elements at `indices` (an integer
    /// tensor with as many dimensions as this one) along `axis`.
    ///
    /// # Examples
    ///
    /// ```
    /// use capactor::actors::tensor::{Quota, TensorWorker, Worker};
    /// use ndarray::array;
    ///
    /// capactor::block_on(async {
    ///     let w = Worker::new(capactor::spawn_local(TensorWorker::new("w", Quota::new(1 << 20))));
    ///     let x = w.tensor(&array![[10.0, 30.0, 20.0], [5.0, 4.0, 6.0]].into_dyn());
    ///     let top = x.take_along_axis(&x.argmax(Some(1)).reshape(&[2, 1]), 1);
    ///     let got = top.to_ndarray::<f64>().await.unwrap();
    ///     assert_eq!(got, array![[30.0], [6.0]].into_dyn());
    /// }).unwrap();
    /// ```
    pub fn take_along_axis(&self, indices: &RemoteTensor, axis: i64) -> RemoteTensor {
        let mut req = self.client().take_along_axis_request();
        req.get().set_indices(indices.client().clone());
        req.get().set_axis(axis);
        self.sent(req.send().pipeline.get_result())
    }

    /// NumPy's `take(x, indices, axis)` (torch's `index_select`): whole
    /// sub-arrays at `indices` along `axis`, in the shape of `indices`.
    pub fn index_select(&self, indices: &RemoteTensor, axis: i64) -> RemoteTensor {
        let mut req = self.client().index_select_request();
        req.get().set_indices(indices.client().clone());
        req.get().set_axis(axis);
        self.sent(req.send().pipeline.get_result())
    }

    /// NumPy's `x[mask]` for a bool `mask` of this tensor's shape or of its
    /// leading dimensions.
    pub fn mask_select(&self, mask: &RemoteTensor) -> RemoteTensor {
        let mut req = self.client().mask_select_request();
        req.get().set_mask(mask.client().clone());
        self.sent(req.send().pipeline.get_result())
    }

    /// A new tensor: this one with `values` written at `indices` along
    /// `axis` (NumPy's `put_along_axis`, torch's `scatter`); where indices
    /// repeat along the axis the last one wins.
    pub fn scatter(
        &self,
        indices: &RemoteTensor,
        values: &RemoteTensor,
        axis: i64,
    ) -> RemoteTensor {
        self.scatter_request(indices, values, axis, false)
    }

    /// As [`RemoteTensor::scatter`], but every value is added to the
    /// element at its index, repeats included (torch's `scatter_add`,
    /// NumPy's `np.add.at`).
    pub fn scatter_add(
        &self,
        indices: &RemoteTensor,
        values: &RemoteTensor,
        axis: i64,
    ) -> RemoteTensor {
        self.scatter_request(indices, values, axis, true)
    }

    fn scatter_request(
        &self,
        indices: &RemoteTensor,
        values: &RemoteTensor,
        axis: i64,
        accumulate: bool,
    ) -> RemoteTensor {
        let mut req = self.client().scatter_request();
        let mut p = req.get();
        p.set_indices(indices.client().clone());
        p.set_values(values.client().clone());
        p.set_axis(axis);
        p.set_accumulate(accumulate);
        self.sent(req.send().pipeline.get_result())
    }

    /// `x[specs] = value`, in this tensor: `value` (cast to this dtype
    /// when it has another, as NumPy does) broadcasts to the slice. Every holder of this tensor sees the
    /// change; tensors derived from it before do not (docs/PROTOCOL.md,
    /// "Assignment"). The result is this same tensor, answered once
    /// written, and its errors are the assignment's. A failed assignment
    /// writes nothing.
    ///
    /// Dropping the result before the worker has run the assignment
    /// cancels it (then nothing is written). Over a connection, calls sent
    /// on this tensor after this one see the assignment; on the local
    /// transport, which dispatches a call only when something waits for
    /// it, wait for (or chain on) the result first.
    ///
    /// # Examples
    ///
    /// ```
    /// use capactor::actors::tensor::{ops::SliceSpec, Quota, TensorWorker, Worker};
    /// use ndarray::array;
    ///
    /// capactor::block_on(async {
    ///     let w = Worker::new(capactor::spawn_local(TensorWorker::new("w", Quota::new(1 << 20))));
    ///     let x = w.tensor(&array![1i64, 2, 3, 4].into_dyn());
    ///     // x[::2] = 0
    ///     let done = x.assign(&[SliceSpec::new(None, None, 2)], &w.tensor(&array![0i64].into_dyn()));
    ///     // The result answers once written; x itself has changed.
    ///     assert_eq!(done.to_ndarray::<i64>().await.unwrap(), array![0i64, 2, 0, 4].into_dyn());
    ///     assert_eq!(x.to_ndarray::<i64>().await.unwrap(), array![0i64, 2, 0, 4].into_dyn());
    /// }).unwrap();
    /// ```
    #[must_use = "dropping the result may cancel the assignment"]
    pub fn assign(&self, specs: &[SliceSpec], value: &RemoteTensor) -> RemoteTensor {
        let mut req = self.client().assign_request();
        set_specs(req.get().init_specs(specs.len() as u32), specs);
        req.get().set_value(value.client().clone());
        self.sent(req.send().pipeline.get_result())
    }

    /// `x[mask] = value`, in this tensor, with the semantics of
    /// [`RemoteTensor::assign`]; `value` broadcasts to the selection.
    #[must_use = "dropping the result may cancel the assignment"]
    pub fn assign_mask(&self, mask: &RemoteTensor, value: &RemoteTensor) -> RemoteTensor {
        let mut req = self.client().assign_mask_request();
        req.get().set_mask(mask.client().clone());
        req.get().set_value(value.client().clone());
        self.sent(req.send().pipeline.get_result())
    }
}
