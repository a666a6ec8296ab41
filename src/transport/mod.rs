//! How actors are reached: the wire-protocol plumbing shared by every
//! transport, and the transports themselves.
//!
//! Everything here works over any `AsyncRead + AsyncWrite` byte stream.
//! The virtual transport ([`memory`]), TCP ([`tcp`]) and Unix sockets
//! (`unix`) only make the stream; `serve::serve_stream` and
//! `rpc::connect_stream` put the same Cap'n Proto two-party protocol, the
//! same limits and the same gate on top of it. Every network transport is
//! served by the one [`server`], over its [`listener::Listener`].
//!
//! This file only declares the modules and re-exports their public types:
//! nothing below imports from it. The layering, from the bottom, is drawn
//! in docs/ARCHITECTURE.md ("Transports").

mod accept;
mod address;
mod closing;
mod connect_options;
mod connection;
pub(crate) mod endpoint;
mod fd_limit;
mod gate_policy;
mod gatekeeper;
mod heap;
mod inbox;
mod link;
pub(crate) mod listener;
pub(crate) mod memory;
mod options;
pub(crate) mod outgoing;
mod preauth;
pub(crate) mod preauth_pool;
pub(crate) mod reconnect;
mod rpc;
mod serve;
pub(crate) mod server;
pub(crate) mod tcp;
mod tcp_options;
pub mod tls;
#[cfg(unix)]
mod unix;
#[cfg(unix)]
mod unix_options;
pub(crate) mod virtual_actor;
mod window;
pub(crate) mod wire;
mod wire_io;

pub use address::{Address, ToAddress, MAX_UNIX_PATH};
pub use connect_options::{ConnectOptions, Heartbeat};
pub use connection::{Connection, LinkHandle};
pub(crate) use endpoint::{connect_for_ticket, IN_PROCESS};
pub use memory::{LinkConditions, VirtualOptions};
pub use options::Limits;
pub use server::Server;
pub use tcp_options::TcpOptions;
// The fuzz targets drive a link directly.
pub(crate) use link::{Link, LinkConfig};
#[cfg(unix)]
pub use unix::{PeerCredentials, UnixOptions, UnixServer};
