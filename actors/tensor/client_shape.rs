//! The client API of the shape ops of schema version 4: contractions,
//! layout, order and makers, on [`RemoteTensor`] and [`Worker`].

use futures::FutureExt;

use super::client::{RemoteTensor, Worker};
use super::codec;
use super::ops::{DType, MAX_SPLIT_PARTS};
use crate::schema::tensor_capnp::tensor;

/// How many parts a split into `sections` gives, as the client counts
/// them: one (which carries the worker's refusal) for more sections than a
/// split may make.
pub(super) fn split_parts(sections: u64) -> usize {
    match usize::try_from(sections) {
        Ok(n) if (1..=MAX_SPLIT_PARTS).contains(&n) => n,
        _ => 1,
    }
}

impl RemoteTensor {
    fn next(&self, client: tensor::Client) -> RemoteTensor {
        self.worker().sent(client)
    }

    /// NumPy's `tensordot(self, other, axes)`: sums over the last `axes`
    /// axes of this tensor and the first `axes` of `other`.
    pub fn tensordot(&self, other: &RemoteTensor, axes: u32) -> RemoteTensor {
        self.tensordot_request(other, axes, &[], &[])
    }

    /// NumPy's `tensordot(self, other, (axes_self, axes_other))`: sums over
    /// those axes, paired in order (negative count from the end).
    pub fn tensordot_axes(
        &self,
        other: &RemoteTensor,
        axes_self: &[i64],
        axes_other: &[i64],
    ) -> RemoteTensor {
        self.tensordot_request(other, 0, axes_self, axes_other)
    }

    fn tensordot_request(
        &self,
        other: &RemoteTensor,
        n: u32,
        a: &[i64],
        b: &[i64],
    ) -> RemoteTensor {
        let mut req = self.client().tensordot_request();
        let mut p = req.get();
        p.set_other(other.client().clone());
        p.set_axes(n);
        p.set_axes_self(a)
            .expect("setting a list of i64 cannot fail");
        p.set_axes_other(b)
            .expect("setting a list of i64 cannot fail");
        self.next(req.send().pipeline.get_result())
    }

    /// NumPy's `split(self, sections, axis)`: `sections` equal parts, which
    /// must divide the axis.
    ///
    /// The call goes out at once. Cap'n Proto cannot pipeline on the
    /// elements of a list of capabilities, so calls on a part wait on the
    /// client until the split's answer is in (one round trip), then go out;
    /// an error of the split is each part's error.
    ///
    /// # Examples
    ///
    /// ```
    /// use capactor::actors::tensor::{Quota, TensorWorker, Worker};
    /// use ndarray::array;
    ///
    /// capactor::block_on(async {
    ///     let w = Worker::new(capactor::spawn_local(TensorWorker::new("w", Quota::new(1 << 20))));
    ///     let x = w.tensor(&array![1.0f64, 2.0, 3.0, 4.0].into_dyn());
    ///     let parts = x.split(2, 0);
    ///     assert_eq!(parts[1].sum().item().await.unwrap(), 7.0);
    /// }).unwrap();
    /// ```
    pub fn split(&self, sections: u64, axis: i64) -> Vec<RemoteTensor> {
        self.split_request(axis, sections, &[], split_parts(sections))
    }

    /// NumPy's `split(self, indices, axis)`: `indices.len() + 1` parts,
    /// cut at those indices (Python slice bounds). Usable as
    /// [`RemoteTensor::split`]'s parts.
    pub fn split_at(&self, indices: &[i64], axis: i64) -> Vec<RemoteTensor> {
        self.split_request(axis, 0, indices, indices.len() + 1)
    }

    fn split_request(
        &self,
        axis: i64,
        sections: u64,
        indices: &[i64],
        n: usize,
    ) -> Vec<RemoteTensor> {
        let mut req = self.client().split_request();
        let mut p = req.get();
        p.set_axis(axis);
        p.set_sections(sections);
        p.set_indices(indices)
            .expect("setting a list of i64 cannot fail");
        let answer = req
            .send()
            .promise
            .map(|r| -> Result<Vec<tensor::Client>, capnp::Error> {
                r?.get()?.get_parts()?.iter().collect()
            })
            .shared();
        // The parts are usable after one round trip.
        self.waited();
        (0..n)
            .map(|i| {
                let part = answer.clone().map(move |r| match r {
                    Ok(parts) => parts.get(i).cloned().ok_or_else(|| {
                        capnp::Error::failed(format!(
                            "split: the answer has {} parts, not {}",
                            parts.len(),
                            i + 1
                        ))
                    }),
                    Err(e) => Err(e),
                });
                self.next(capnp_rpc::new_future_client(part))
            })
            .collect()
    }

    /// Removes length-1 axes: those in `axes`, or every one if `axes` is
    /// empty (NumPy's `squeeze`).
    pub fn squeeze(&self, axes: &[i64]) -> RemoteTensor {
        let mut req = self.client().squeeze_request();
        req.get()
            .set_axes(axes)
            .expect("setting a list of i64 cannot fail");
        self.next(req.send().pipeline.get_result())
    }

    /// Inserts length-1 axes at `axes`, positions in the result (NumPy's
    /// `expand_dims`).
    pub fn expand_dims(&self, axes: &[i64]) -> RemoteTensor {
        let mut req = self.client().expand_dims_request();
        req.get()
            .set_axes(axes)
            .expect("setting a list of i64 cannot fail");
        self.next(req.send().pipeline.get_result())
    }

    /// A copy broadcast to `shape` (NumPy's `broadcast_to`).
    pub fn broadcast_to(&self, shape: &[u64]) -> RemoteTensor {
        let mut req = self.client().broadcast_to_request();
        req.get()
            .set_shape(shape)
            .expect("setting a list of u64 cannot fail");
        self.next(req.send().pipeline.get_result())
    }

    /// Repeated `reps[i]` times along each axis (NumPy's `tile`).
    pub fn tile(&self, reps: &[u64]) -> RemoteTensor {
        let mut req = self.client().tile_request();
        req.get()
            .set_reps(reps)
            .expect("setting a list of u64 cannot fail");
        self.next(req.send().pipeline.get_result())
    }

    /// Reversed along `axes`, or along every axis if empty (NumPy's
    /// `flip`).
    pub fn flip(&self, axes: &[i64]) -> RemoteTensor {
        let mut req = self.client().flip_request();
        req.get()
            .set_axes(axes)
            .expect("setting a list of i64 cannot fail");
        self.next(req.send().pipeline.get_result())
    }

    /// Sorted along `axis`, stably, NaN last (NumPy's `sort`).
    pub fn sort(&self, axis: i64) -> RemoteTensor {
        let mut req = self.client().sort_request();
        req.get().set_axis(axis);
        self.next(req.send().pipeline.get_result())
    }

    /// The indices (i64) that sort along `axis`, stably, NaN last (NumPy's
    /// `argsort(kind="stable")`).
    pub fn argsort(&self, axis: i64) -> RemoteTensor {
        let mut req = self.client().argsort_request();
        req.get().set_axis(axis);
        self.next(req.send().pipeline.get_result())
    }

    /// The `k` largest (or smallest) along `axis`, in order, and their
    /// indices (i64): both pipeline.
    ///
    /// # Examples
    ///
    /// ```
    /// use capactor::actors::tensor::{Quota, TensorWorker, Worker};
    /// use ndarray::array;
    ///
    /// capactor::block_on(async {
    ///     let w = Worker::new(capactor::spawn_local(TensorWorker::new("w", Quota::new(1 << 20))));
    ///     let x = w.tensor(&array![3.0f32, 1.0, 4.0, 1.5].into_dyn());
    ///     let (values, indices) = x.topk(2, -1, true);
    ///     assert_eq!(values.to_ndarray::<f32>().await.unwrap().into_raw_vec_and_offset().0, [4.0, 3.0]);
    ///     assert_eq!(indices.to_ndarray::<i64>().await.unwrap().into_raw_vec_and_offset().0, [2, 0]);
    /// }).unwrap();
    /// ```
    pub fn topk(&self, k: u64, axis: i64, largest: bool) -> (RemoteTensor, RemoteTensor) {
        let mut req = self.client().topk_request();
        let mut p = req.get();
        p.set_k(k);
        p.set_axis(axis);
        p.set_largest(largest);
        let sent = req.send();
        (
            self.next(sent.pipeline.get_values()),
            self.next(sent.pipeline.get_indices()),
        )
    }
}

impl Worker {
    /// NumPy's `einsum` over tensors of this worker, e.g. `"ij,jk->ik"`
    /// (matmul), `"i,j->ij"` (outer), `"bij,bjk->bik"` (batched), `"ii->"`
    /// (trace), `"ij->ji"`, or implicit (`"ij,jk"`).
    ///
    /// # Examples
    ///
    /// ```
    /// use capactor::actors::tensor::{Quota, TensorWorker, Worker};
    /// use ndarray::array;
    ///
    /// capactor::block_on(async {
    ///     let w = Worker::new(capactor::spawn_local(TensorWorker::new("w", Quota::new(1 << 20))));
    ///     let a = w.tensor(&array![[1.0f64, 2.0], [3.0, 4.0]].into_dyn());
    ///     assert_eq!(w.einsum("ii->", &[&a]).item().await.unwrap(), 5.0);
    ///     let p = w.einsum("ij,jk->ik", &[&a, &a]).sum();
    ///     assert_eq!(p.item().await.unwrap(), 7.0 + 10.0 + 15.0 + 22.0);
    /// }).unwrap();
    /// ```
    pub fn einsum(&self, subscripts: &str, operands: &[&RemoteTensor]) -> RemoteTensor {
        let mut req = self.client().einsum_request();
        let mut p = req.get();
        p.set_subscripts(subscripts);
        let mut list = p.init_operands(operands.len() as u32);
        for (i, t) in operands.iter().enumerate() {
            list.set(i as u32, t.client().client.hook.add_ref());
        }
        self.sent(req.send().pipeline.get_tensor())
    }

    /// Joins tensors of one shape (all on this worker) along a new axis
    /// (NumPy's `stack`).
    pub fn stack(&self, tensors: &[&RemoteTensor], axis: i64) -> RemoteTensor {
        let mut req = self.client().stack_request();
        let mut p = req.get();
        p.set_axis(axis);
        let mut list = p.init_tensors(tensors.len() as u32);
        for (i, t) in tensors.iter().enumerate() {
            list.set(i as u32, t.client().client.hook.add_ref());
        }
        self.sent(req.send().pipeline.get_tensor())
    }

    /// An `n × m` matrix (`m` = `n` if `None`) with ones on diagonal `k`
    /// (NumPy's `eye`).
    pub fn eye(&self, dtype: DType, n: u64, m: Option<u64>, k: i64) -> RemoteTensor {
        let mut req = self.client().eye_request();
        let mut p = req.get();
        p.set_dtype(codec::to_wire(dtype));
        p.set_n(n);
        p.set_has_m(m.is_some());
        p.set_m(m.unwrap_or(0));
        p.set_k(k);
        self.sent(req.send().pipeline.get_tensor())
    }

    /// `num` evenly spaced values from `start` to `stop` (included if
    /// `endpoint`), NumPy's `linspace`.
    pub fn linspace(
        &self,
        dtype: DType,
        start: f64,
        stop: f64,
        num: u64,
        endpoint: bool,
    ) -> RemoteTensor {
        let mut req = self.client().linspace_request();
        let mut p = req.get();
        p.set_dtype(codec::to_wire(dtype));
        p.set_start(start);
        p.set_stop(stop);
        p.set_num(num);
        p.set_endpoint(endpoint);
        self.sent(req.send().pipeline.get_tensor())
    }

    /// Integers uniform in `[low, high)`, deterministic for `seed` (the
    /// same seed gives the same tensor; not NumPy's numbers).
    pub fn randint(
        &self,
        dtype: DType,
        low: i64,
        high: i64,
        shape: &[u64],
        seed: u64,
    ) -> RemoteTensor {
        let mut req = self.client().randint_request();
        let mut p = req.get();
        p.set_dtype(codec::to_wire(dtype));
        p.set_low(low);
        p.set_high(high);
        p.set_shape(shape)
            .expect("setting a list of u64 cannot fail");
        p.set_seed(seed);
        self.sent(req.send().pipeline.get_tensor())
    }

    /// `0..n` (i64) shuffled, deterministic for `seed`.
    pub fn permutation(&self, n: u64, seed: u64) -> RemoteTensor {
        let mut req = self.client().permutation_request();
        req.get().set_n(n);
        req.get().set_seed(seed);
        self.sent(req.send().pipeline.get_tensor())
    }
}
