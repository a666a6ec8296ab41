//! An actor of your own, from your own crate: a [`Trainer`] whose schema
//! (`schema/trainer.capnp`) extends capactor's `TensorWorker`.
//!
//! Only the new methods are written here. Everything a `TensorWorker` (and
//! an `Actor`) does is served by capactor's implementation through
//! [`capactor::serve_tensor_worker_via!`], and the trainer is spawned local,
//! virtual or over TCP with the same calls as capactor's own actors:
//!
//! ```
//! use capactor_trainer::{trainer, Model, Trainer};
//!
//! let rt = capactor::Runtime::new().unwrap();
//! let model = Model::new();
//! let quota = capactor::Quota::new(64 << 20);
//! capactor::block_on(async {
//!     let t: capactor::Connection<trainer::Client> =
//!         rt.spawn_virtual(move || Trainer::new("t1", model, quota));
//!     let about = capactor::describe(t.client()).await.unwrap();
//!     assert_eq!(about.interfaces[0].name, "Trainer");
//! }).unwrap();
//! ```
//!
//! How the crate is put together (build script, schema imports, the
//! delegation) is explained step by step in capactor's docs/EXTENDING.md.

use std::rc::Rc;
use std::sync::{Arc, Mutex};

use capactor::actors::tensor::{Array, OpError, Quota, TensorWorker, Worker, TENSOR_WORKER};
use capactor::schema::tensor_capnp::tensor;
use capactor::{ActorMeta, Interface};
use ndarray::{Array2, ArrayD, Ix2};

/// Code generated from `schema/trainer.capnp` by build.rs. Its types from
/// capactor's schemas are capactor's own (`capactor::schema::...`).
#[allow(
    missing_docs,
    missing_debug_implementations,
    unreachable_pub,
    clippy::all,
    clippy::pedantic
)]
pub mod trainer_capnp {
    include!(concat!(env!("OUT_DIR"), "/trainer_capnp.rs"));
}

pub use trainer_capnp::{progress, trainer};

/// The `Trainer` interface.
pub const TRAINER: Interface = Interface::of::<trainer::Client>("Trainer");

/// The version of `schema/trainer.capnp` this crate was built from.
pub const TRAINER_VERSION: u32 = trainer_capnp::TRAINER_VERSION;

/// The model a trainer fits: the weights of a logistic regression, shared
/// by every instance of one trainer (one per vat, see
/// [`capactor::Runtime::serve_tcp`]). `Send + Sync`.
#[derive(Debug, Default)]
pub struct Model {
    weights: Mutex<Option<Array2<f32>>>,
}

impl Model {
    /// A model with no weights yet: the first step sizes them, at zero.
    pub fn new() -> Arc<Model> {
        Arc::default()
    }

    /// A copy of the weights (d x 1), if a step has sized them.
    pub fn weights(&self) -> Option<Array2<f32>> {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Array2<f32>>> {
        // A panic while holding the lock (caught by capactor and reported
        // as that call's error) leaves the weights as they were.
        self.weights.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// One step of gradient descent on the batch (`x`, `y`) with learning
    /// rate `lr`; returns the batch's log loss before the update.
    ///
    /// # Errors
    ///
    /// Fails if the tensors are not f32, `x` is not 2-D, `y` does not hold
    /// one label per row of `x`, or `x` has another width than the model.
    pub fn step(&self, x: &Array, y: &Array, lr: f32) -> Result<f32, OpError> {
        let x = as_f32("x", x)?
            .view()
            .into_dimensionality::<Ix2>()
            .map_err(|_| {
                invalid(format!(
                    "x must be 2-D (samples x features), not {:?}",
                    x.shape()
                ))
            })?;
        let (n, d) = x.dim();
        let y = as_f32("y", y)?;
        let y = y.view().into_shape_with_order(n).map_err(|_| {
            invalid(format!(
                "y must hold one label per row of x ({n}), not shape {:?}",
                y.shape()
            ))
        })?;
        if n == 0 {
            return Err(invalid("the batch is empty".into()));
        }
        let mut weights = self.lock();
        let w = weights.get_or_insert_with(|| Array2::zeros((d, 1)));
        if w.nrows() != d {
            return Err(invalid(format!(
                "x has {d} features but the model has {}",
                w.nrows()
            )));
        }
        let p = x.dot(&*w).column(0).mapv(|z| 1.0 / (1.0 + (-z).exp()));
        let eps = 1e-7f32;
        let loss = -p
            .iter()
            .zip(y.iter())
            .map(|(p, y)| y * (p + eps).ln() + (1.0 - y) * (1.0 - p + eps).ln())
            .sum::<f32>()
            / n as f32;
        let err = (&p - &y).insert_axis(ndarray::Axis(1));
        let grad = x.t().dot(&err) / n as f32;
        w.scaled_add(-lr, &grad);
        Ok(loss)
    }
}

fn as_f32<'a>(name: &str, a: &'a Array) -> Result<&'a ArrayD<f32>, OpError> {
    match a {
        Array::F32(a) => Ok(a),
        other => Err(invalid(format!(
            "{name} must be f32, not {}",
            other.dtype()
        ))),
    }
}

fn invalid(reason: String) -> OpError {
    OpError::InvalidArgument { op: "step", reason }
}

/// A tensor worker that also trains a [`Model`] on the tensors it holds.
///
/// Must live on a vat (it is `!Send`): make it inside the closure given to
/// `spawn_virtual` or `serve_tcp`, sharing the [`Model`] and the [`Quota`]
/// between instances.
#[derive(Debug)]
pub struct Trainer {
    worker: Rc<TensorWorker>,
    model: Arc<Model>,
}

// Actor and TensorWorker: capactor's implementation, for everything but
// our own methods.
capactor::serve_tensor_worker_via!(Trainer, worker);

impl Trainer {
    /// A trainer called `name`, fitting `model`, whose tensors count
    /// against `quota`.
    pub fn new(name: impl Into<String>, model: Arc<Model>, quota: Arc<Quota>) -> Self {
        // Our interface first: `info` lists the most derived one first.
        let meta = ActorMeta::new(name, "trainer", &[TRAINER, TENSOR_WORKER]);
        Trainer {
            worker: Rc::new(TensorWorker::with_meta(meta, quota)),
            model,
        }
    }

    /// One step on two tensors this trainer holds; the loss comes back as a
    /// scalar tensor of this trainer.
    async fn step_on(
        &self,
        x: tensor::Client,
        y: tensor::Client,
        lr: f32,
    ) -> capactor::Result<(f32, tensor::Client)> {
        let x = self.worker.array(x).await?;
        let y = self.worker.array(y).await?;
        let model = self.model.clone();
        // Off the vat for big batches, through the worker's quota.
        let loss = Arc::new(Mutex::new(f32::NAN));
        let out = loss.clone();
        let t = self
            .worker
            .compute(x.len(), move |alloc| {
                let l = model.step(&x, &y, lr)?;
                alloc.reserve("step", std::mem::size_of::<f32>())?;
                *out.lock().unwrap_or_else(|e| e.into_inner()) = l;
                Ok(Array::F32(ndarray::arr0(l).into_dyn()))
            })
            .await?;
        let loss = *loss.lock().unwrap_or_else(|e| e.into_inner());
        Ok((loss, t))
    }

    fn weights_array(&self) -> capactor::Result<Array> {
        let w = self
            .model
            .weights()
            .ok_or_else(|| capactor::Error::invalid("weights: no step has run yet"))?;
        Ok(Array::F32(w.into_dyn()))
    }
}

impl trainer::Server for Trainer {
    async fn step(
        self: Rc<Self>,
        params: trainer::StepParams,
        mut results: trainer::StepResults,
    ) -> Result<(), capnp::Error> {
        let p = params.get()?;
        let (_, loss) = self
            .step_on(p.get_x()?, p.get_y()?, p.get_learning_rate())
            .await?;
        results.get().set_loss(loss);
        Ok(())
    }

    async fn train(
        self: Rc<Self>,
        params: trainer::TrainParams,
        mut results: trainer::TrainResults,
    ) -> Result<(), capnp::Error> {
        let p = params.get()?;
        let (x, y, lr) = (p.get_x()?, p.get_y()?, p.get_learning_rate());
        let observer = p.get_observer()?;
        let (mut loss, mut taken) = (f32::NAN, 0);
        for step in 1..=p.get_steps() {
            loss = self.step_on(x.clone(), y.clone(), lr).await?.0;
            taken = step;
            // The client's own capability, called back over its connection.
            let mut report = observer.report_request();
            report.get().set_step(step);
            report.get().set_loss(loss);
            let answer = report.send().promise.await?;
            if answer.get()?.get_stop() {
                break;
            }
        }
        let mut r = results.get();
        r.set_loss(loss);
        r.set_steps(taken);
        Ok(())
    }

    async fn weights(
        self: Rc<Self>,
        _: trainer::WeightsParams,
        mut results: trainer::WeightsResults,
    ) -> Result<(), capnp::Error> {
        let t = self.worker.publish(self.weights_array()?)?;
        results.get().set_weights(t);
        Ok(())
    }

    async fn export_to(
        self: Rc<Self>,
        params: trainer::ExportToParams,
        mut results: trainer::ExportToResults,
    ) -> Result<(), capnp::Error> {
        let dest = Worker::new(params.get()?.get_worker()?);
        // Sent to the client's worker over the client's own connection; the
        // answer is a promise there, so the client can pipeline on it.
        let t = dest.from_array(&self.weights_array()?);
        results.get().set_weights(t.client().clone());
        Ok(())
    }
}
