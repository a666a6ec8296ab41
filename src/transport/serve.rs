//! Serving one connection, whatever its transport: the actor each
//! connection gets (guarded by its own [`Guard`]), the gate it must open
//! first and its deadline, under the wire's limits.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use capnp::capability::{FromClientHook, FromServer};
use capnp_rpc::rpc_twoparty_capnp::Side;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::sync::CancellationToken;

use super::gate_policy::{GatePolicy, Peer};
use super::gatekeeper::{self, Gate};
use super::heap;
use super::link::{Link, LinkConfig};
use super::options::{Limits, ServeOptions};
use super::outgoing::Outgoing;
use super::preauth::GateSignal;
use super::preauth_pool::PreauthTicket;
use super::rpc::rpc_system;
use crate::call::{ActorCalls, Guard};
use crate::schema::actor_capnp::actor;
use crate::Quota;

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
