//! A fleet of workers: the client side of the registry
//! (`schema/registry.capnp`, served by [`crate::actors::registry`]) and
//! fleet credentials.
//!
//! - [`TokenSigner`], [`PublicKey`], [`Trust`]: the registry signs
//!   short-lived PASETO `v4.public` tokens (Ed25519); a worker serving with
//!   a [`Trust`] accepts them at its gate, beside (or instead of) its
//!   static token.
//! - [`RegistryClient`], [`Joiner`]: calling a registry; keeping a
//!   worker registered.
//! - [`Cluster`]: one client driving N workers of a pool, pipelined
//!   (`broadcast`, `scatter`, `gather`, `all_reduce`).
//! - [`Health`], [`WorkerInfo`], [`Status`], [`Event`]: what the registry
//!   knows and tells, as Rust values.

mod client;
mod cluster;
mod credential;
mod join;
pub(crate) mod types;

pub use client::{Lease, Registration, RegistryClient, Watch};
pub use cluster::{Cluster, Pool, Reach, Reached, Reduce, Sharded};
pub use credential::{IssuedToken, PublicKey, TokenSigner, Trust, ALGORITHM};
pub use join::{JoinState, Joiner};
pub use types::{Change, Event, Health, Status, Totals, WorkerInfo};
