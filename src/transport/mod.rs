//! How actors are reached: the wire-protocol plumbing shared by every
//! transport, and the transports themselves.
//!
//! Everything here works over any `AsyncRead + AsyncWrite` byte stream.
//! The virtual transport ([`memory`]), TCP ([`tcp`]) and Unix sockets
//! (`unix`) only make the stream; [`serve_stream`] and [`connect_stream`]
//! put the same Cap'n Proto two-party protocol, the same limits and the
//! same gate on top of it. Every network transport is served by the one
//! `server`, over its [`listener::Listener`].

mod address;
mod closing;
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
mod preauth;
pub(crate) mod preauth_pool;
pub(crate) mod reconnect;
mod serve;
pub(crate) mod server;
pub(crate) mod tcp;
pub mod tls;
#[cfg(unix)]
mod unix;
pub(crate) mod virtual_actor;
mod window;
pub(crate) mod wire;
mod wire_io;

use std::fmt;
use std::time::Duration;

use capnp::capability::FromClientHook;
use capnp_rpc::rpc_twoparty_capnp::Side;
use capnp_rpc::RpcSystem;
use futures::FutureExt;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::sync::CancellationToken;

use crate::schema::actor_capnp::{actor, gate};

pub use address::{Address, ToAddress, MAX_UNIX_PATH};
pub use connection::{Connection, LinkHandle};
pub(crate) use gate_policy::{GatePolicy, Peer};
pub(crate) use gatekeeper::Gate;
pub(crate) use link::{Link, LinkConfig};
pub use memory::{LinkConditions, VirtualOptions};
pub use options::Limits;
pub(crate) use options::Redacted;
use preauth::GateSignal;
pub(crate) use preauth_pool::{PreauthPool, PreauthTicket};
pub(crate) use serve::{serve_bootstrap, serve_stream, ActorMint, Arrival, ServeSite};
pub use server::Server;
#[cfg(unix)]
pub use unix::{PeerCredentials, UnixOptions, UnixServer};

/// Heartbeats on a client connection: how a dead or half-open peer is
/// noticed (capnp-rpc itself never times anything out).
///
/// Every `interval` the client pings the actor; if a ping goes unanswered
/// for `timeout`, the connection is closed and every pending call fails with
/// `disconnected`.
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub struct Heartbeat {
    /// Time between pings. Default 5 s.
    pub interval: Duration,
    /// How long a ping may go unanswered. Default 15 s.
    pub timeout: Duration,
}

impl Default for Heartbeat {
    fn default() -> Self {
        Heartbeat {
            interval: Duration::from_secs(5),
            timeout: Duration::from_secs(15),
        }
    }
}

/// How a client connects.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
///
/// let mut opts = capactor::ConnectOptions::default();
/// opts.token = b"secret".to_vec();
/// opts.connect_timeout = Duration::from_secs(2);
/// ```
///
/// Its `Debug` output shows the token's length, never its bytes.
#[derive(Clone)]
#[non_exhaustive]
pub struct ConnectOptions {
    /// The credential offered to the worker's gate. Empty for a worker
    /// that runs without authentication.
    pub token: Vec<u8>,
    /// Limits on what the worker may send back.
    pub limits: Limits,
    /// Heartbeats, or `None` to rely on the transport alone.
    pub heartbeat: Option<Heartbeat>,
    /// How long establishing a TCP connection (and its TLS handshake) may
    /// take. Default 10 s.
    pub connect_timeout: Duration,
    /// Speak TLS, authenticating the worker this way; `None` for plain TCP.
    pub tls: Option<tls::ClientTls>,
    /// Reconnect after the connection drops, under this policy; `None`
    /// (the default) leaves a dropped connection dropped. TCP only. See
    /// [`crate::Reconnect`].
    pub reconnect: Option<reconnect::Reconnect>,
}

// --- Debug without the token (issue 16) ---
impl fmt::Debug for ConnectOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectOptions")
            .field("token", &Redacted(self.token.len()))
            .field("limits", &self.limits)
            .field("heartbeat", &self.heartbeat)
            .field("connect_timeout", &self.connect_timeout)
            .field("tls", &self.tls)
            .field("reconnect", &self.reconnect)
            .finish()
    }
}
// --- end Debug without the token ---

impl Default for ConnectOptions {
    fn default() -> Self {
        ConnectOptions {
            token: Vec::new(),
            limits: Limits::default(),
            heartbeat: Some(Heartbeat::default()),
            connect_timeout: Duration::from_secs(10),
            tls: None,
            reconnect: None,
        }
    }
}

/// Builds the two-party RPC system over `stream`; under the pre-auth
/// limits until `gate` opens, if there is one.
fn rpc_system<S>(
    stream: S,
    side: Side,
    bootstrap: Option<capnp::capability::Client>,
    limits: &Limits,
    gate: Option<GateSignal>,
) -> RpcSystem<Side>
where
    S: AsyncRead + AsyncWrite + Unpin + 'static,
{
    let network = match gate {
        Some(gate) => wire::gated_network(stream, side, limits, gate),
        None => wire::network(stream, side, limits),
    };
    RpcSystem::new(Box::new(network), bootstrap)
}

/// Connects to the actor served over `stream`, offering `opts.token` to its
/// gate. Spawns the RPC system (and heartbeats) on the current `LocalSet`.
pub(crate) fn connect_stream<C, S>(stream: S, opts: &ConnectOptions) -> Connection<C>
where
    C: FromClientHook,
    S: AsyncRead + AsyncWrite + Unpin + 'static,
{
    connect_stream_with(stream, opts, |gate| gatekeeper::open(gate, &opts.token))
}

/// Like [`connect_stream`], entering through `enter` (which is given the
/// connection's gate) instead of opening the gate with the token.
pub(crate) fn connect_stream_with<C, S>(
    stream: S,
    opts: &ConnectOptions,
    enter: impl FnOnce(&gate::Client) -> C,
) -> Connection<C>
where
    C: FromClientHook,
    S: AsyncRead + AsyncWrite + Unpin + 'static,
{
    let handle = LinkHandle::new(CancellationToken::new());
    let config = LinkConfig {
        write_stall_timeout: opts.limits.write_stall_timeout,
        valve: Some(handle.valve.clone()),
        ..LinkConfig::default()
    };
    let link = Link::new(stream, handle.cut.clone(), config);
    let mut system = rpc_system(link, Side::Client, None, &opts.limits, None);
    let bootstrap: gate::Client = system.bootstrap(Side::Server);
    let client = enter(&bootstrap);

    let closed = handle.closed.clone();
    let cut = handle.cut.clone();
    tokio::task::spawn_local(system.map(move |r| {
        if let Err(e) = r {
            tracing::debug!("connection closed: {e}");
        }
        cut.cancel();
        closed.cancel();
    }));

    if let Some(hb) = opts.heartbeat {
        // The same capability: a gate takes one `open` at a time.
        let actor: actor::Client = crate::cast(&client);
        tokio::task::spawn_local(heartbeat(actor, hb, handle.cut.clone()));
    }
    Connection {
        client,
        link: handle,
    }
}

/// The address a worker without a network endpoint gives out for direct
/// transfers: its tickets can be redeemed from this process only.
pub(crate) const IN_PROCESS: &str = "in-process:";

/// Connects to the gate at `address` to redeem a transfer ticket there:
/// over TCP (TLS pinned to `tls_certificate` if it is not empty), or, for
/// an [`IN_PROCESS`] address, over an in-memory link to a gate served on
/// this vat (the ticket book is process-wide).
pub(crate) async fn connect_for_ticket(
    address: &str,
    tls_certificate: &[u8],
) -> crate::Result<Connection<gate::Client>> {
    let mut opts = ConnectOptions {
        heartbeat: None,
        ..ConnectOptions::default()
    };
    if address.starts_with(IN_PROCESS) {
        let (near, far) = memory::pipe(&LinkConditions::default());
        let cut = CancellationToken::new();
        let gate = Gate::redeem_only(cut.clone());
        tokio::task::spawn_local(async move {
            serve_bootstrap(far, gate.client, &Limits::default(), None, cut, None).await;
        });
        return Ok(connect_stream_with(near, &opts, Clone::clone));
    }
    if !tls_certificate.is_empty() {
        let cert = rustls_pki_types::CertificateDer::from(tls_certificate.to_vec());
        opts.tls = Some(tls::ClientTls::pinned(cert)?);
    }
    endpoint::connect_with(&address.parse()?, &opts, Clone::clone).await
}

/// Pings `actor` until the link is cut; cuts it when a ping goes unanswered.
async fn heartbeat(actor: actor::Client, hb: Heartbeat, cut: CancellationToken) {
    loop {
        tokio::select! {
            _ = cut.cancelled() => return,
            _ = tokio::time::sleep(hb.interval) => {}
        }
        let ping = actor.ping_request().send().promise;
        tokio::select! {
            _ = cut.cancelled() => return,
            r = tokio::time::timeout(hb.timeout, ping) => match r {
                Ok(Ok(_)) => {}
                Ok(Err(e)) if e.kind == capnp::ErrorKind::Overloaded => {}
                Ok(Err(e)) => {
                    tracing::warn!("heartbeat failed, closing connection: {e}");
                    cut.cancel();
                    return;
                }
                Err(_) => {
                    tracing::warn!("heartbeat unanswered for {:?}, closing connection", hb.timeout);
                    cut.cancel();
                    return;
                }
            }
        }
    }
}
