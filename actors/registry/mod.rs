//! The fleet's registry (`schema/registry.capnp`): workers register and
//! keep a lease alive with streamed health reports; clients ask for the
//! status, watch membership, and are routed to the least loaded healthy
//! worker. The registry also signs fleet tokens (see [`crate::fleet`]).
//!
//! - [`RegistryState`]: the membership table and signing key every
//!   instance of one registry shares (`Send`).
//! - [`Registry`]: the actor, one instance per vat or virtual connection.
//!
//! The client side (joining as a worker, the status and watch calls, the
//! `Cluster` API) lives in [`crate::fleet`].

mod server;
mod table;

pub use server::{Registry, RegistryOptions, RegistryState, REGISTRY};
