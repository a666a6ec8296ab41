//! capactor: a Cap'n Proto actor runtime.
//!
//! Workers are actors that expose Cap'n Proto capability interfaces. A
//! program spawns them *local* (a direct capability on its own thread),
//! *virtual* (on a vat thread of this process, reached through the real
//! two-party protocol over an in-memory pipe) or serves and reaches them
//! over *TCP*, and gets the typed generated client in every case. Calls
//! chain with promise pipelining: a chain of dependent calls costs one round
//! trip.
//!
//! # Where things run
//!
//! capnp-rpc is single-threaded: clients and servers are `!Send` and live on
//! a tokio `LocalSet`. A [`Runtime`] runs one such event loop ("vat") per
//! thread; a client program runs its own on the calling thread with
//! [`block_on`].
//!
//! # Examples
//!
//! ```
//! use capactor::schema::probe_capnp::probe;
//!
//! let rt = capactor::Runtime::new().unwrap();
//! capactor::block_on(async {
//!     let worker: capactor::Connection<probe::Client> =
//!         rt.spawn_virtual(|| capactor::actors::Probe::new("p"));
//!     // Two dependent calls, one round trip.
//!     let mut req = worker.counter_request();
//!     req.get().set_start(41);
//!     let counter = req.send().pipeline.get_counter();
//!     let reply = counter.next_request().send().promise.await.unwrap();
//!     assert_eq!(reply.get().unwrap().get_value(), 41);
//! }).unwrap();
//! ```

#![warn(
    missing_docs,
    missing_debug_implementations,
    rust_2018_idioms,
    unreachable_pub
)]

pub mod actor;
#[path = "../actors/mod.rs"]
pub mod actors;
pub mod call;
pub mod catalog;
mod error;
pub mod fleet;
#[doc(hidden)]
pub mod fuzzing;
mod handle;
mod local_loop;
pub mod metrics;
mod quota;
mod runtime;
pub mod schema;
mod stable;
pub mod supervisor;
mod ticket;
mod transport;

pub(crate) use transport::IN_PROCESS;

pub use actor::{cast, describe, ActorMeta, Description, Interface};
pub use call::{new_client, new_client_from_rc};
pub use capactor_macros::test;
pub use error::{Error, ErrorId, Result, RESTARTING};
pub use handle::Handle;
pub use quota::Quota;
pub use runtime::{block_on, run_local, spawn_local, Builder, Runtime};
pub use transport::reconnect::Reconnect;
pub use transport::tcp::{ServeOptions, TcpServer, MIN_TOKEN_BYTES};
pub use transport::tls;
pub use transport::{Address, Server, TcpOptions, ToAddress, MAX_UNIX_PATH};
pub use transport::{
    ConnectOptions, Connection, Heartbeat, Limits, LinkConditions, LinkHandle, VirtualOptions,
};
#[cfg(unix)]
pub use transport::{PeerCredentials, UnixOptions, UnixServer};

/// Connects to the actor a capactor worker serves at `addr`, as the
/// interface `C`.
///
/// The gate is opened with `opts.token` and the call pipelines, so the
/// first call on the returned client goes out at once.
///
/// Must run on a thread with a tokio `LocalSet` (see [`block_on`]).
///
/// # Errors
///
/// Fails if the TCP connection cannot be made within
/// `opts.connect_timeout`. A rejected token shows up on the first call.
///
/// # Examples
///
/// ```no_run
/// use capactor::schema::actor_capnp::actor;
///
/// capactor::block_on(async {
///     let opts = capactor::ConnectOptions::default();
///     let worker: capactor::Connection<actor::Client> =
///         capactor::connect_tcp("127.0.0.1:7001", &opts).await?;
///     worker.ping_request().send().promise.await?;
///     Ok::<_, capactor::Error>(())
/// }).unwrap();
/// ```
pub async fn connect_tcp<C: capnp::capability::FromClientHook>(
    addr: &str,
    opts: &ConnectOptions,
) -> Result<Connection<C>> {
    transport::endpoint::connect_tcp(addr, opts).await
}

/// Connects to the actor a capactor worker serves at `addr`, over the
/// transport the address names: `tcp://host:port` or a bare `host:port`,
/// `tls://host:port` (with [`ConnectOptions::tls`]), or `unix:/path`.
///
/// As [`connect_tcp`] otherwise: the gate is opened with `opts.token`, the
/// call pipelines, and it must run on a thread with a tokio `LocalSet`.
///
/// # Errors
///
/// A malformed address, or a connection that cannot be made within
/// `opts.connect_timeout`. A rejected token shows up on the first call.
///
/// # Examples
///
/// ```no_run
/// use capactor::schema::actor_capnp::actor;
///
/// capactor::block_on(async {
///     let opts = capactor::ConnectOptions::default();
///     let worker: capactor::Connection<actor::Client> =
///         capactor::connect("unix:/run/capactor/w1.sock", &opts).await?;
///     worker.ping_request().send().promise.await?;
///     Ok::<_, capactor::Error>(())
/// }).unwrap();
/// ```
pub async fn connect<C: capnp::capability::FromClientHook>(
    addr: impl ToAddress,
    opts: &ConnectOptions,
) -> Result<Connection<C>> {
    transport::endpoint::connect(&addr.to_address()?, opts).await
}

/// What the exported macros need, under paths that do not depend on the
/// user's own dependencies.
#[doc(hidden)]
pub mod __private {
    pub use capnp;
}
