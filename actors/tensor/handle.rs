//! `Send` handles to a tensor worker and its tensors: [`WorkerHandle`] and
//! [`TensorHandle`], for multi-threaded tokio code and any other thread.
//!
//! Each wraps the `!Send` client type ([`Worker`], [`RemoteTensor`]) kept on
//! a vat of a [`Runtime`](crate::Runtime) (see [`Handle`]). An op on a
//! handle returns a new handle at once and runs on the vat behind the ops
//! sent before it, so a chain of ops goes out pipelined, as one batch, and
//! costs one round trip when its result is read.

use std::future::Future;

use ndarray::ArrayD;

use super::client::{Memory, RemoteTensor, Worker};
use super::client_element::TensorElement;
use super::ops::{Array, BinaryOp, CompareOp, DType, ReduceOp, Scalar, SliceSpec, UnaryOp};
use super::ObjectInfo;
use crate::schema::tensor_capnp::tensor_worker;
use crate::{ConnectOptions, Error, Handle, Result, Runtime, VirtualOptions};

/// A `Send + Sync + Clone` handle to a tensor worker: the [`Worker`] API
/// from any thread.
///
/// # Examples
///
/// From `#[tokio::main]`-style multi-threaded code:
///
/// ```
/// use capactor::actors::tensor::{Quota, TensorWorker, WorkerHandle};
/// use ndarray::array;
///
/// let rt = capactor::Runtime::new().unwrap();
/// let tokio_rt = tokio::runtime::Runtime::new().unwrap();
/// tokio_rt.block_on(async {
///     let w = WorkerHandle::spawn(&rt, || TensorWorker::new("w", Quota::new(1 << 20)));
///     let x = w.tensor(array![[1.0f32, 2.0], [3.0, 4.0]].into_dyn());
///     // One round trip for the whole chain, read in a spawned task.
///     let y = (&x.matmul(&x) + 1.0).relu().sum();
///     let got = tokio::spawn(async move { y.item().await }).await.unwrap();
///     assert_eq!(got.unwrap(), 58.0);
/// });
/// ```
pub type WorkerHandle = Handle<Worker>;

/// A `Send + Sync + Clone` handle to a tensor on a worker: the
/// [`RemoteTensor`] API from any thread. Dropping the last clone releases
/// the tensor, as dropping a `RemoteTensor` does.
pub type TensorHandle = Handle<RemoteTensor>;

impl Handle<Worker> {
    /// Spawns the tensor worker `make` makes on a vat of `rt` and returns a
    /// handle to it. Needs no event loop on the calling thread.
    pub fn spawn<S, F>(rt: &Runtime, make: F) -> WorkerHandle
    where
        tensor_worker::Client: capnp::capability::FromServer<S>,
        S: 'static,
        F: FnOnce() -> S + Send + 'static,
    {
        Self::spawn_with(rt, make, VirtualOptions::default())
    }

    /// [`WorkerHandle::spawn`] with the virtual link's and actor's options.
    pub fn spawn_with<S, F>(rt: &Runtime, make: F, opts: VirtualOptions) -> WorkerHandle
    where
        tensor_worker::Client: capnp::capability::FromServer<S>,
        S: 'static,
        F: FnOnce() -> S + Send + 'static,
    {
        Handle::spawn_virtual_as::<tensor_worker::Client, S, F>(rt, make, opts, |conn| {
            (Worker::from_connection(conn), None)
        })
    }

    /// Connects to the tensor worker a `capactor worker` serves at `addr`.
    ///
    /// # Errors
    ///
    /// As [`connect_tcp`](crate::connect_tcp).
    pub async fn connect(rt: &Runtime, addr: &str, opts: &ConnectOptions) -> Result<WorkerHandle> {
        Handle::connect_tcp_as::<tensor_worker::Client>(rt, addr, opts, |conn| {
            (Worker::from_connection(conn), None)
        })
        .await
    }

    /// A tensor made on the worker by `f`: the escape hatch to any
    /// [`Worker`] method that makes a tensor.
    pub fn make(&self, f: impl FnOnce(&Worker) -> RemoteTensor + Send + 'static) -> TensorHandle {
        self.derive(f)
    }

    /// Sends `array` to the worker ([`Worker::send_array`]).
    pub fn tensor<T: TensorElement + Send>(&self, array: ArrayD<T>) -> TensorHandle {
        self.from_array(T::wrap(array))
    }

    /// Sends `array` to the worker ([`Worker::send_array`]).
    pub fn from_array(&self, array: Array) -> TensorHandle {
        self.make(move |w| w.send_array(array))
    }

    /// [`Worker::full`].
    pub fn full(&self, dtype: DType, shape: &[u64], value: impl Into<Scalar>) -> TensorHandle {
        let (shape, value) = (shape.to_vec(), value.into());
        self.make(move |w| w.full(dtype, &shape, value))
    }

    /// [`Worker::zeros`].
    pub fn zeros(&self, dtype: DType, shape: &[u64]) -> TensorHandle {
        let shape = shape.to_vec();
        self.make(move |w| w.zeros(dtype, &shape))
    }

    /// [`Worker::ones`].
    pub fn ones(&self, dtype: DType, shape: &[u64]) -> TensorHandle {
        let shape = shape.to_vec();
        self.make(move |w| w.ones(dtype, &shape))
    }

    /// [`Worker::arange`].
    pub fn arange(&self, dtype: DType, start: f64, stop: f64, step: f64) -> TensorHandle {
        self.make(move |w| w.arange(dtype, start, stop, step))
    }

    /// [`Worker::random_uniform`].
    pub fn random_uniform(
        &self,
        dtype: DType,
        shape: &[u64],
        low: f64,
        high: f64,
        seed: u64,
    ) -> TensorHandle {
        let shape = shape.to_vec();
        self.make(move |w| w.random_uniform(dtype, &shape, low, high, seed))
    }

    /// [`Worker::random_normal`].
    pub fn random_normal(
        &self,
        dtype: DType,
        shape: &[u64],
        mean: f64,
        std: f64,
        seed: u64,
    ) -> TensorHandle {
        let shape = shape.to_vec();
        self.make(move |w| w.random_normal(dtype, &shape, mean, std, seed))
    }

    /// [`Worker::concat`].
    pub fn concat(&self, tensors: &[&TensorHandle], axis: i64) -> TensorHandle {
        let Some(first) = tensors.first() else {
            return self.make(move |w| w.concat(&[], axis));
        };
        first.zip_all(&tensors[1..], move |head, rest| {
            let all: Vec<&RemoteTensor> = std::iter::once(head).chain(rest).collect();
            head.worker().concat(&all, axis)
        })
    }

    /// [`Worker::einsum`].
    pub fn einsum(&self, subscripts: &str, operands: &[&TensorHandle]) -> TensorHandle {
        let subscripts = subscripts.to_owned();
        let Some(first) = operands.first() else {
            return self.make(move |w| w.einsum(&subscripts, &[]));
        };
        first.zip_all(&operands[1..], move |head, rest| {
            let all: Vec<&RemoteTensor> = std::iter::once(head).chain(rest).collect();
            head.worker().einsum(&subscripts, &all)
        })
    }

    /// [`Worker::stack`].
    pub fn stack(&self, tensors: &[&TensorHandle], axis: i64) -> TensorHandle {
        let Some(first) = tensors.first() else {
            return self.make(move |w| w.stack(&[], axis));
        };
        first.zip_all(&tensors[1..], move |head, rest| {
            let all: Vec<&RemoteTensor> = std::iter::once(head).chain(rest).collect();
            head.worker().stack(&all, axis)
        })
    }

    /// [`Worker::eye`].
    pub fn eye(&self, dtype: DType, n: u64, m: Option<u64>, k: i64) -> TensorHandle {
        self.make(move |w| w.eye(dtype, n, m, k))
    }

    /// [`Worker::linspace`].
    pub fn linspace(
        &self,
        dtype: DType,
        start: f64,
        stop: f64,
        num: u64,
        endpoint: bool,
    ) -> TensorHandle {
        self.make(move |w| w.linspace(dtype, start, stop, num, endpoint))
    }

    /// [`Worker::randint`].
    pub fn randint(
        &self,
        dtype: DType,
        low: i64,
        high: i64,
        shape: &[u64],
        seed: u64,
    ) -> TensorHandle {
        let shape = shape.to_vec();
        self.make(move |w| w.randint(dtype, low, high, &shape, seed))
    }

    /// [`Worker::permutation`].
    pub fn permutation(&self, n: u64, seed: u64) -> TensorHandle {
        self.make(move |w| w.permutation(n, seed))
    }

    /// A tensor stored under `name` ([`Worker::load`]).
    pub fn load(&self, name: &str) -> TensorHandle {
        let name = name.to_owned();
        self.make(move |w| w.load(&name))
    }

    /// [`Worker::memory`].
    ///
    /// # Errors
    ///
    /// As [`Worker::memory`]; [`Error::RuntimeStopped`] if the runtime is
    /// gone.
    pub async fn memory(&self) -> Result<Memory> {
        self.run(|w| async move { w.memory().await }).await?
    }

    /// [`Worker::list`].
    ///
    /// # Errors
    ///
    /// As [`Worker::list`].
    pub async fn list(&self) -> Result<Vec<ObjectInfo>> {
        self.run(|w| async move { w.list().await }).await?
    }

    /// [`Worker::delete`].
    ///
    /// # Errors
    ///
    /// As [`Worker::delete`].
    pub async fn delete(&self, name: &str) -> Result<()> {
        let name = name.to_owned();
        self.run(move |w| async move { w.delete(&name).await })
            .await?
    }

    /// Times a client awaited a result from this worker through this handle
    /// and the tensors made from it ([`Worker::round_trips`]).
    ///
    /// # Errors
    ///
    /// [`Error::RuntimeStopped`] if the runtime is gone.
    pub async fn round_trips(&self) -> Result<u64> {
        self.run(|w| async move { w.round_trips() }).await
    }
}

macro_rules! forward {
    (unary: $($name:ident),*) => {$(
        #[doc = concat!("[`RemoteTensor::", stringify!($name), "`], through the handle.")]
        pub fn $name(&self) -> TensorHandle {
            self.map(|t| t.$name())
        }
    )*};
    (binary: $($name:ident, $scalar:ident);*) => {$(
        #[doc = concat!("[`RemoteTensor::", stringify!($name), "`], through the handle.")]
        pub fn $name(&self, other: &TensorHandle) -> TensorHandle {
            self.zip(other, |a, b| a.$name(b))
        }
        #[doc = concat!("[`RemoteTensor::", stringify!($scalar), "`], through the handle.")]
        pub fn $scalar(&self, s: impl Into<Scalar>) -> TensorHandle {
            let s = s.into();
            self.map(move |t| t.$scalar(s))
        }
    )*};
}

impl Handle<RemoteTensor> {
    /// The tensor `f` makes from this one on the worker: the escape hatch to
    /// any [`RemoteTensor`] method. Returns at once; pipelined.
    pub fn map(
        &self,
        f: impl FnOnce(&RemoteTensor) -> RemoteTensor + Send + 'static,
    ) -> TensorHandle {
        self.derive(f)
    }

    /// The tensor `f` makes from this one and `other`. Returns at once;
    /// pipelined.
    ///
    /// A handle of another runtime gives a tensor whose every use fails
    /// saying so.
    pub fn zip(
        &self,
        other: &TensorHandle,
        f: impl FnOnce(&RemoteTensor, &RemoteTensor) -> RemoteTensor + Send + 'static,
    ) -> TensorHandle {
        self.zip_all(&[other], move |a, rest| f(a, &rest[0]))
    }

    /// The tensor `f` makes from this one and `others`.
    pub fn zip_all(
        &self,
        others: &[&TensorHandle],
        f: impl FnOnce(&RemoteTensor, &[RemoteTensor]) -> RemoteTensor + Send + 'static,
    ) -> TensorHandle {
        match self.derive_with(others, f) {
            Ok(t) => t,
            Err(e) => self.broken(e),
        }
    }

    fn broken(&self, e: Error) -> TensorHandle {
        self.map(move |t| t.worker().broken(e))
    }

    /// [`RemoteTensor::binary`].
    pub fn binary(&self, op: BinaryOp, other: &TensorHandle) -> TensorHandle {
        self.zip(other, move |a, b| a.binary(op, b))
    }

    /// [`RemoteTensor::binary_scalar`].
    pub fn binary_scalar(
        &self,
        op: BinaryOp,
        scalar: Scalar,
        scalar_on_left: bool,
    ) -> TensorHandle {
        self.map(move |t| t.binary_scalar(op, scalar, scalar_on_left))
    }

    /// [`RemoteTensor::unary`].
    pub fn unary(&self, op: UnaryOp) -> TensorHandle {
        self.map(move |t| t.unary(op))
    }

    /// [`RemoteTensor::compare`].
    pub fn compare(&self, op: CompareOp, other: &TensorHandle) -> TensorHandle {
        self.zip(other, move |a, b| a.compare(op, b))
    }

    /// [`RemoteTensor::compare_scalar`].
    pub fn compare_scalar(&self, op: CompareOp, scalar: Scalar) -> TensorHandle {
        self.map(move |t| t.compare_scalar(op, scalar))
    }

    /// [`RemoteTensor::tensordot`].
    pub fn tensordot(&self, other: &TensorHandle, axes: u32) -> TensorHandle {
        self.zip(other, move |a, b| a.tensordot(b, axes))
    }

    /// [`RemoteTensor::tensordot_axes`].
    pub fn tensordot_axes(
        &self,
        other: &TensorHandle,
        axes_self: &[i64],
        axes_other: &[i64],
    ) -> TensorHandle {
        let (a, b) = (axes_self.to_vec(), axes_other.to_vec());
        self.zip(other, move |x, y| x.tensordot_axes(y, &a, &b))
    }

    /// [`RemoteTensor::split`]: the parts, usable at once (each waits for
    /// the split's answer on the vat).
    pub fn split(&self, sections: u64, axis: i64) -> Vec<TensorHandle> {
        let n = super::client_shape::split_parts(sections);
        self.parts(n, move |t| t.split(sections, axis))
    }

    /// [`RemoteTensor::split_at`].
    pub fn split_at(&self, indices: &[i64], axis: i64) -> Vec<TensorHandle> {
        let (n, indices) = (indices.len() + 1, indices.to_vec());
        self.parts(n, move |t| t.split_at(&indices, axis))
    }

    /// `n` handles to the tensors `f` makes, in one job.
    fn parts(
        &self,
        n: usize,
        f: impl FnOnce(&RemoteTensor) -> Vec<RemoteTensor> + Send + 'static,
    ) -> Vec<TensorHandle> {
        let all: Handle<Vec<RemoteTensor>> = self.derive(f);
        (0..n)
            .map(|i| {
                all.derive(move |parts| match parts.get(i) {
                    Some(p) => p.clone(),
                    None => parts[0]
                        .worker()
                        .broken(Error::invalid("split: no such part")),
                })
            })
            .collect()
    }

    /// [`RemoteTensor::squeeze`].
    pub fn squeeze(&self, axes: &[i64]) -> TensorHandle {
        let axes = axes.to_vec();
        self.map(move |t| t.squeeze(&axes))
    }

    /// [`RemoteTensor::expand_dims`].
    pub fn expand_dims(&self, axes: &[i64]) -> TensorHandle {
        let axes = axes.to_vec();
        self.map(move |t| t.expand_dims(&axes))
    }

    /// [`RemoteTensor::broadcast_to`].
    pub fn broadcast_to(&self, shape: &[u64]) -> TensorHandle {
        let shape = shape.to_vec();
        self.map(move |t| t.broadcast_to(&shape))
    }

    /// [`RemoteTensor::tile`].
    pub fn tile(&self, reps: &[u64]) -> TensorHandle {
        let reps = reps.to_vec();
        self.map(move |t| t.tile(&reps))
    }

    /// [`RemoteTensor::flip`].
    pub fn flip(&self, axes: &[i64]) -> TensorHandle {
        let axes = axes.to_vec();
        self.map(move |t| t.flip(&axes))
    }

    /// [`RemoteTensor::sort`].
    pub fn sort(&self, axis: i64) -> TensorHandle {
        self.map(move |t| t.sort(axis))
    }

    /// [`RemoteTensor::argsort`].
    pub fn argsort(&self, axis: i64) -> TensorHandle {
        self.map(move |t| t.argsort(axis))
    }

    /// [`RemoteTensor::topk`]: values and indices.
    pub fn topk(&self, k: u64, axis: i64, largest: bool) -> (TensorHandle, TensorHandle) {
        let both: Handle<(RemoteTensor, RemoteTensor)> =
            self.derive(move |t| t.topk(k, axis, largest));
        (both.derive(|b| b.0.clone()), both.derive(|b| b.1.clone()))
    }

    /// [`RemoteTensor::matmul`].
    pub fn matmul(&self, other: &TensorHandle) -> TensorHandle {
        self.zip(other, |a, b| a.matmul(b))
    }

    /// [`RemoteTensor::reduce`].
    pub fn reduce(&self, op: ReduceOp, axis: Option<i64>, keep_dims: bool) -> TensorHandle {
        self.map(move |t| t.reduce(op, axis, keep_dims))
    }

    /// [`RemoteTensor::sum_axis`].
    pub fn sum_axis(&self, axis: i64, keep_dims: bool) -> TensorHandle {
        self.map(move |t| t.sum_axis(axis, keep_dims))
    }

    /// [`RemoteTensor::mean_axis`].
    pub fn mean_axis(&self, axis: i64, keep_dims: bool) -> TensorHandle {
        self.map(move |t| t.mean_axis(axis, keep_dims))
    }

    /// [`RemoteTensor::argmax`].
    pub fn argmax(&self, axis: Option<i64>) -> TensorHandle {
        self.map(move |t| t.argmax(axis))
    }

    /// [`RemoteTensor::reshape`].
    pub fn reshape(&self, shape: &[i64]) -> TensorHandle {
        let shape = shape.to_vec();
        self.map(move |t| t.reshape(&shape))
    }

    /// [`RemoteTensor::permute`].
    pub fn permute(&self, perm: &[u32]) -> TensorHandle {
        let perm = perm.to_vec();
        self.map(move |t| t.permute(&perm))
    }

    /// [`RemoteTensor::slice`].
    pub fn slice(&self, specs: &[SliceSpec]) -> TensorHandle {
        let specs = specs.to_vec();
        self.map(move |t| t.slice(&specs))
    }

    /// [`RemoteTensor::cast`].
    pub fn cast(&self, dtype: DType) -> TensorHandle {
        self.map(move |t| t.cast(dtype))
    }

    /// [`RemoteTensor::select`]: `self` is the condition.
    pub fn select(&self, if_true: &TensorHandle, if_false: &TensorHandle) -> TensorHandle {
        self.zip_all(&[if_true, if_false], |c, branches| {
            c.select(&branches[0], &branches[1])
        })
    }

    /// [`RemoteTensor::take_along_axis`].
    pub fn take_along_axis(&self, indices: &TensorHandle, axis: i64) -> TensorHandle {
        self.zip(indices, move |x, i| x.take_along_axis(i, axis))
    }

    /// [`RemoteTensor::index_select`].
    pub fn index_select(&self, indices: &TensorHandle, axis: i64) -> TensorHandle {
        self.zip(indices, move |x, i| x.index_select(i, axis))
    }

    /// [`RemoteTensor::mask_select`].
    pub fn mask_select(&self, mask: &TensorHandle) -> TensorHandle {
        self.zip(mask, |x, m| x.mask_select(m))
    }

    /// [`RemoteTensor::scatter`].
    pub fn scatter(
        &self,
        indices: &TensorHandle,
        values: &TensorHandle,
        axis: i64,
    ) -> TensorHandle {
        self.zip_all(&[indices, values], move |x, r| {
            x.scatter(&r[0], &r[1], axis)
        })
    }

    /// [`RemoteTensor::scatter_add`].
    pub fn scatter_add(
        &self,
        indices: &TensorHandle,
        values: &TensorHandle,
        axis: i64,
    ) -> TensorHandle {
        self.zip_all(&[indices, values], move |x, r| {
            x.scatter_add(&r[0], &r[1], axis)
        })
    }

    /// [`RemoteTensor::assign`]: jobs run on the vat in order, so calls
    /// made through this handle afterwards see the assignment.
    #[must_use = "dropping the result may cancel the assignment"]
    pub fn assign(&self, specs: &[SliceSpec], value: &TensorHandle) -> TensorHandle {
        let specs = specs.to_vec();
        self.zip(value, move |x, v| x.assign(&specs, v))
    }

    /// [`RemoteTensor::assign_mask`].
    #[must_use = "dropping the result may cancel the assignment"]
    pub fn assign_mask(&self, mask: &TensorHandle, value: &TensorHandle) -> TensorHandle {
        self.zip_all(&[mask, value], |x, r| x.assign_mask(&r[0], &r[1]))
    }

    /// [`RemoteTensor::copy_to`]: a copy on the worker `dest` names, which
    /// must be a handle of the same runtime.
    pub fn copy_to(&self, dest: &WorkerHandle) -> TensorHandle {
        self.to_worker(dest, |t, w| t.copy_to(w))
    }

    /// [`RemoteTensor::move_to`].
    pub fn move_to(self, dest: &WorkerHandle) -> TensorHandle {
        self.to_worker(dest, |t, w| t.clone().move_to(w))
    }

    fn to_worker(
        &self,
        dest: &WorkerHandle,
        f: impl FnOnce(&RemoteTensor, &Worker) -> RemoteTensor + Send + 'static,
    ) -> TensorHandle {
        match self.derive_with(&[dest], move |t, w| f(t, &w[0])) {
            Ok(t) => t,
            Err(e) => self.broken(e),
        }
    }

    /// Keeps the tensor on its worker under `name` ([`Worker::store`]).
    ///
    /// # Errors
    ///
    /// As [`Worker::store`].
    pub async fn store(&self, name: &str, ttl: Option<std::time::Duration>) -> Result<()> {
        let name = name.to_owned();
        self.read(move |t| async move { t.worker().store(&name, &t, ttl).await })
            .await
    }

    forward!(unary: neg, abs, exp, log, sqrt, relu, sigmoid, tanh, sum, mean, t, erf);
    forward!(binary: add, add_scalar; sub, sub_scalar; mul, mul_scalar; div, div_scalar;
        pow, pow_scalar; maximum, maximum_scalar; minimum, minimum_scalar;
        eq, eq_scalar; ne, ne_scalar; lt, lt_scalar; le, le_scalar; gt, gt_scalar; ge, ge_scalar);

    /// Runs `f` with the tensor on its vat and returns its result: the
    /// escape hatch to any reading [`RemoteTensor`] method.
    ///
    /// # Errors
    ///
    /// What `f` returns; [`Error::RuntimeStopped`] if the runtime is gone.
    pub async fn read<F, Fut, R>(&self, f: F) -> Result<R>
    where
        F: FnOnce(RemoteTensor) -> Fut + Send + 'static,
        Fut: Future<Output = Result<R>> + 'static,
        R: Send + 'static,
    {
        self.run(f).await?
    }

    /// [`RemoteTensor::shape`].
    ///
    /// # Errors
    ///
    /// The first error in the chain that made this tensor.
    pub async fn shape(&self) -> Result<Vec<usize>> {
        self.read(|t| async move { t.shape().await }).await
    }

    /// [`RemoteTensor::dtype`].
    ///
    /// # Errors
    ///
    /// The first error in the chain that made this tensor.
    pub async fn dtype(&self) -> Result<DType> {
        self.read(|t| async move { t.dtype().await }).await
    }

    /// [`RemoteTensor::to_array`].
    ///
    /// # Errors
    ///
    /// The first error in the chain that made this tensor.
    pub async fn to_array(&self) -> Result<Array> {
        self.read(|t| async move { t.to_array().await }).await
    }

    /// [`RemoteTensor::to_ndarray`].
    ///
    /// # Errors
    ///
    /// The first error in the chain, or a dtype other than `T`'s.
    pub async fn to_ndarray<T: TensorElement + Send>(&self) -> Result<ArrayD<T>> {
        self.read(|t| async move { t.to_ndarray::<T>().await })
            .await
    }

    /// [`RemoteTensor::item`].
    ///
    /// # Errors
    ///
    /// The first error in the chain, or a tensor of more than one element.
    pub async fn item(&self) -> Result<f64> {
        self.read(|t| async move { t.item().await }).await
    }
}

macro_rules! operator {
    ($trait:ident, $method:ident) => {
        impl std::ops::$trait<&TensorHandle> for &TensorHandle {
            type Output = TensorHandle;
            fn $method(self, rhs: &TensorHandle) -> TensorHandle {
                self.zip(rhs, |a, b| std::ops::$trait::$method(a, b))
            }
        }
        impl<S: Into<Scalar>> std::ops::$trait<S> for &TensorHandle {
            type Output = TensorHandle;
            fn $method(self, rhs: S) -> TensorHandle {
                let rhs = rhs.into();
                self.map(move |a| std::ops::$trait::$method(a, rhs))
            }
        }
        impl std::ops::$trait<&TensorHandle> for TensorHandle {
            type Output = TensorHandle;
            fn $method(self, rhs: &TensorHandle) -> TensorHandle {
                std::ops::$trait::$method(&self, rhs)
            }
        }
        impl<S: Into<Scalar>> std::ops::$trait<S> for TensorHandle {
            type Output = TensorHandle;
            fn $method(self, rhs: S) -> TensorHandle {
                std::ops::$trait::$method(&self, rhs)
            }
        }
    };
}

operator!(Add, add);
operator!(Sub, sub);
operator!(Mul, mul);
operator!(Div, div);

impl std::ops::Neg for &TensorHandle {
    type Output = TensorHandle;
    fn neg(self) -> TensorHandle {
        self.map(|t| -t)
    }
}
