//! Code generated from `schema/*.capnp` by capnpc-rust.
//!
//! The generated files are committed so that a fresh machine needs nothing
//! but cargo. `tests/schema_drift.rs` regenerates them (with the Cap'n Proto
//! compiler embedded as WebAssembly) and fails when they differ from what is
//! committed; `CAPACTOR_BLESS=1 cargo test --test schema_drift` rewrites them.
//!
//! Every type here is what other languages see too: `schema/` is the only
//! contract a client in C++, Python or Go needs.

/// `schema/actor.capnp`: the `Gate` bootstrap and the base `Actor` interface.
#[allow(missing_docs, missing_debug_implementations, unreachable_pub, clippy::all, clippy::pedantic)]
#[rustfmt::skip]
#[path = "actor_capnp.rs"]
pub mod actor_capnp;

/// `schema/probe.capnp`: the diagnostic `Probe` actor.
#[allow(missing_docs, missing_debug_implementations, unreachable_pub, clippy::all, clippy::pedantic)]
#[rustfmt::skip]
#[path = "probe_capnp.rs"]
pub mod probe_capnp;

/// `schema/tensor.capnp`: `Tensor` capabilities and the `TensorWorker`.
#[allow(missing_docs, missing_debug_implementations, unreachable_pub, clippy::all, clippy::pedantic)]
#[rustfmt::skip]
#[path = "tensor_capnp.rs"]
pub mod tensor_capnp;

/// `schema/registry.capnp`: the fleet's `Registry`, `Lease` and `Observer`.
#[allow(missing_docs, missing_debug_implementations, unreachable_pub, clippy::all, clippy::pedantic)]
#[rustfmt::skip]
#[path = "registry_capnp.rs"]
pub mod registry_capnp;
