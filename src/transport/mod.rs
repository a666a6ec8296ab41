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
pub(crate) mod server;
pub(crate) mod tcp;
pub mod tls;
#[cfg(unix)]
mod unix;
mod window;
pub(crate) mod wire;

use std::cell::{Cell, RefCell};
use std::fmt;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use capnp::capability::{FromClientHook, FromServer};
use capnp_rpc::rpc_twoparty_capnp::Side;
use capnp_rpc::RpcSystem;
use futures::FutureExt;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::sync::CancellationToken;

use crate::call::{ActorCalls, Guard, Outgoing};
use crate::schema::actor_capnp::{actor, gate};
use crate::Quota;

pub use address::{Address, ToAddress, MAX_UNIX_PATH};
pub(crate) use gate_policy::{GatePolicy, Peer};
pub(crate) use gatekeeper::Gate;
pub(crate) use link::{Link, LinkConfig};
pub use memory::{LinkConditions, VirtualOptions};
pub use options::Limits;
pub(crate) use options::Redacted;
pub(crate) use options::ServeOptions;
use preauth::GateSignal;
pub(crate) use preauth_pool::{PreauthPool, PreauthTicket};
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

/// A client's connection to a remote (virtual or TCP) actor, and the
/// actor's capability.
///
/// Derefs to the typed client `C`. Dropping the `Connection` closes it:
/// every capability obtained through it (clones of the client, tensors...)
/// then fails with `disconnected`, and the actor frees whatever the
/// connection held.
///
/// Must be created and used on a thread running a tokio `LocalSet`, like
/// every capnp-rpc client (see [`crate::block_on`]).
#[derive(Debug)]
pub struct Connection<C> {
    client: C,
    link: LinkHandle,
}

impl<C> Connection<C> {
    /// The actor's capability.
    pub fn client(&self) -> &C {
        &self.client
    }

    /// A handle that can cut this connection or wait for it to close.
    pub fn link(&self) -> &LinkHandle {
        &self.link
    }
}

impl<C> std::ops::Deref for Connection<C> {
    type Target = C;
    fn deref(&self) -> &C {
        &self.client
    }
}

impl<C> Drop for Connection<C> {
    fn drop(&mut self) {
        self.link.cut();
    }
}

/// Cuts a connection, partitions it, or waits for it to end. Cheap to
/// clone, `Send + Sync`.
///
/// [`cut`](LinkHandle::cut) ends the connection for good: the RPC session
/// is gone, so nothing can heal it (a reconnecting client makes a new
/// one). [`partition`](LinkHandle::partition) is the network failing under
/// a live connection: nothing is delivered either way until
/// [`heal`](LinkHandle::heal), and then everything held is, as TCP
/// retransmits across a short outage. A partition that outlasts the
/// heartbeat timeout ends the connection as a dead peer would.
///
/// # Examples
///
/// ```
/// use capactor::actors::Probe;
/// use capactor::schema::probe_capnp::probe;
///
/// let rt = capactor::Runtime::builder().vats(1).build().unwrap();
/// capactor::block_on(async {
///     let p: capactor::Connection<probe::Client> = rt.spawn_virtual(|| Probe::new("p"));
///     p.link().partition();
///     let call = p.echo_request().send().promise; // held, not lost
///     p.link().heal();
///     call.await.unwrap();
/// }).unwrap();
/// ```
#[derive(Clone, Debug)]
pub struct LinkHandle {
    pub(crate) cut: CancellationToken,
    closed: CancellationToken,
    valve: Arc<link::Valve>,
}

impl LinkHandle {
    fn new(cut: CancellationToken) -> Self {
        LinkHandle {
            cut,
            closed: CancellationToken::new(),
            valve: Arc::default(),
        }
    }

    /// Cuts the link: both ends see the peer as gone, and every pending call
    /// on either side fails with `disconnected`.
    pub fn cut(&self) {
        self.cut.cancel();
    }

    /// Partitions the link: from now on nothing is delivered in either
    /// direction, and nothing is lost, until [`LinkHandle::heal`]. Calls
    /// made meanwhile wait (or time out, or are failed by the heartbeat,
    /// as against an unreachable peer).
    pub fn partition(&self) {
        self.valve.shut(None);
    }

    /// Heals a partition or ends a stall early: what was held is
    /// delivered, in order.
    pub fn heal(&self) {
        self.valve.open();
    }

    /// Stalls the link for `duration`: nothing is delivered, then
    /// everything is.
    pub fn stall(&self, duration: Duration) {
        self.valve
            .shut(Some(tokio::time::Instant::now() + duration));
    }

    /// True while the link is partitioned or stalled.
    pub fn is_partitioned(&self) -> bool {
        self.valve.is_shut()
    }

    /// True once the connection has ended, for whatever reason.
    pub fn is_closed(&self) -> bool {
        self.closed.is_cancelled()
    }

    /// Waits until the connection has ended.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe.
    pub async fn closed(&self) {
        self.closed.cancelled().await
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

/// A vat's actor instance, as each connection gets to call it: guarded by
/// that connection's own [`Guard`], dispatching straight to the instance
/// (no forwarding hop).
#[derive(Clone)]
pub(crate) struct ActorMint(Rc<dyn Fn(&Guard) -> actor::Client>);

impl ActorMint {
    /// Serves `server` as a `C`.
    pub(crate) fn new<C, S>(server: S) -> Self
    where
        C: FromClientHook + FromServer<S>,
        S: 'static,
    {
        let server = Rc::new(server);
        ActorMint(Rc::new(move |guard: &Guard| {
            let client: C = guard.client_from_rc(server.clone());
            actor::Client::new(client.into_client_hook())
        }))
    }

    fn guarded(&self, guard: &Guard) -> actor::Client {
        (self.0)(guard)
    }
}

/// What a server needs to serve one connection.
#[derive(Clone)]
pub(crate) struct ServeSite {
    pub(crate) actor: ActorMint,
    pub(crate) calls: Arc<ActorCalls>,
    pub(crate) credentials: Option<Rc<gatekeeper::Credentials>>,
    pub(crate) limits: Limits,
    pub(crate) idle_timeout: Option<Duration>,
    /// How long a new connection has to open the gate.
    pub(crate) handshake_timeout: Option<Duration>,
    /// The worker's gate policy, shared by its vats.
    pub(crate) policy: Arc<GatePolicy>,
    /// Whether callers may see worker-wide totals.
    pub(crate) report_worker_totals: bool,
}

impl ServeSite {
    /// The site serving `actor` as `opts` say, its calls counted in `calls`.
    pub(crate) fn new(
        actor: ActorMint,
        calls: Arc<ActorCalls>,
        opts: &ServeOptions,
        policy: Arc<GatePolicy>,
    ) -> Self {
        heap::give_large_frees_back();
        ServeSite {
            actor,
            calls,
            credentials: gatekeeper::Credentials::new(opts.token.as_deref(), opts.trust.as_ref()),
            limits: opts.limits.clone(),
            idle_timeout: opts.idle_timeout,
            handshake_timeout: opts.handshake_timeout,
            policy,
            report_worker_totals: opts.report_worker_totals,
        }
    }
}

// --- serve_stream's peer and deadline (issue 16) ---
/// How a connection arrived: who from, when (the handshake deadline runs
/// from then, TLS included), and its place among unauthenticated ones.
pub(crate) struct Arrival {
    pub(crate) peer: Peer,
    pub(crate) at: Instant,
    pub(crate) ticket: Option<PreauthTicket>,
}

impl Arrival {
    /// A connection arriving now from `peer`.
    pub(crate) fn now(peer: Peer, ticket: Option<PreauthTicket>) -> Self {
        Arrival {
            peer,
            at: Instant::now(),
            ticket,
        }
    }
}
// --- end serve_stream's peer and deadline ---

/// Serves `site`'s actor over `stream` until the peer leaves or `cut` is
/// cancelled. Must run on a `LocalSet`.
pub(crate) async fn serve_stream<S>(
    stream: S,
    site: &ServeSite,
    cut: CancellationToken,
    arrival: Arrival,
) where
    S: AsyncRead + AsyncWrite + Unpin + 'static,
{
    let _trim = heap::TrimOnClose;
    // Every connection counts what it holds (for `info`), within its budget
    // if it has one.
    let budget = site.limits.max_connection_memory.unwrap_or(u64::MAX);
    let outgoing = Outgoing::new(site.limits.max_outgoing_bytes);
    let guard = Guard::new(
        site.calls.clone(),
        Some(site.limits.max_calls_in_flight),
        Some(Quota::new(budget)),
        Some(outgoing.clone()),
    );
    if site.report_worker_totals {
        guard.allow_worker_totals();
    }
    let actor = site.actor.guarded(&guard);
    let opened = Rc::new(Cell::new(false));
    let deadline = site.handshake_timeout.map(|t| arrival.at + t);
    let who = gatekeeper::Who {
        peer: arrival.peer,
        policy: site.policy.clone(),
        deadline,
        ticket: RefCell::new(arrival.ticket),
    };
    let gate = Gate::client(
        actor,
        site.credentials.clone(),
        opened.clone(),
        cut.clone(),
        who,
    );
    let signal = GateSignal {
        opened: opened.clone(),
        cut: cut.clone(),
    };
    let serving = serve_rpc(
        stream,
        gate.client,
        &site.limits,
        site.idle_timeout,
        cut.clone(),
        Some(outgoing),
        Some(signal),
    );
    let Some(deadline) = deadline else {
        return serving.await;
    };
    tokio::pin!(serving);
    tokio::select! {
        () = &mut serving => return,
        () = tokio::time::sleep_until(deadline.into()) => {}
    }
    if !opened.get() {
        let limit = deadline - arrival.at;
        site.policy.log_rejection(
            &arrival.peer,
            format_args!("closing a connection that did not open the gate within {limit:?}"),
        );
        cut.cancel();
    }
    serving.await
}

/// Serves an arbitrary bootstrap capability over `stream`.
pub(crate) async fn serve_bootstrap<S>(
    stream: S,
    bootstrap: capnp::capability::Client,
    limits: &Limits,
    idle_timeout: Option<Duration>,
    cut: CancellationToken,
    outgoing: Option<Arc<Outgoing>>,
) where
    S: AsyncRead + AsyncWrite + Unpin + 'static,
{
    serve_rpc(stream, bootstrap, limits, idle_timeout, cut, outgoing, None).await
}

/// [`serve_bootstrap`], gated by `gate` if there is one.
async fn serve_rpc<S>(
    stream: S,
    bootstrap: capnp::capability::Client,
    limits: &Limits,
    idle_timeout: Option<Duration>,
    cut: CancellationToken,
    outgoing: Option<Arc<Outgoing>>,
    gate: Option<GateSignal>,
) where
    S: AsyncRead + AsyncWrite + Unpin + 'static,
{
    let config = LinkConfig {
        idle_timeout,
        write_stall_timeout: limits.write_stall_timeout,
        outgoing,
        pause_reads_while_blocked: true,
        valve: None,
    };
    let link = Link::new(stream, cut, config);
    let system = rpc_system(link, Side::Server, Some(bootstrap), limits, gate);
    if let Err(e) = system.await {
        tracing::debug!("connection closed: {e}");
    }
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
