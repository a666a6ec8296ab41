//! The tensor worker: tensors held on a worker as capabilities, with
//! pipelined ops computed by [`ndarray`].
//!
//! - [`ops`]: the compute layer (dtype-dynamic arrays, broadcasting, every
//!   op). No networking.
//! - [`npy`]: NumPy's `.npy` and `.npz` files, to and from [`Array`]s.
//! - [`TensorWorker`]: the actor of `schema/tensor.capnp`, serving
//!   `TensorWorker` and the `Tensor` capabilities it hands out.
//! - [`RemoteTensor`] and [`Worker`]: the client API. Every op returns a
//!   new handle at once, so chains pipeline.
//! - Actors whose own interface extends `TensorWorker` serve it with
//!   [`serve_tensor_worker_via!`](crate::serve_tensor_worker_via) and reach
//!   their clients' tensors through [`TensorWorker::array`],
//!   [`TensorWorker::publish`] and [`TensorWorker::compute`]
//!   (docs/EXTENDING.md).

mod client;
mod client_element;
mod client_index;
mod client_io;
mod client_shape;
mod codec;
mod download;
mod handle;
mod handoff;
pub mod npy;
pub mod ops;
mod quota;
mod server;
mod spill;
mod state;
mod transfer;
mod upload;
mod worker;

pub use crate::Quota;
pub use client::{Memory, RemoteTensor, Worker};
pub use client_element::TensorElement;
pub use client_io::{Download, Upload};
pub use half::{bf16, f16};
pub use handle::{TensorHandle, WorkerHandle};
pub use ops::{Array, DType, Kind, OpError, Scalar};
pub use spill::Spill;
pub use state::{DataOptions, ObjectInfo, WorkerState};
pub use worker::{TensorWorker, TENSOR_WORKER};
