//! The Cap'n Proto two-party RPC system over any byte stream, and the
//! client's side of a connection: its link, its gate, its heartbeats.
//! What every transport puts on the stream it makes.

use capnp::capability::FromClientHook;
use capnp_rpc::rpc_twoparty_capnp::Side;
use capnp_rpc::RpcSystem;
use futures::FutureExt;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::sync::CancellationToken;

use super::connect_options::{ConnectOptions, Heartbeat};
use super::connection::{Connection, LinkHandle};
use super::gatekeeper;
use super::link::{Link, LinkConfig};
use super::options::Limits;
use super::preauth::GateSignal;
use super::wire;
use crate::schema::actor_capnp::{actor, gate};

/// Builds the two-party RPC system over `stream`; under the pre-auth
/// limits until `gate` opens, if there is one.
pub(crate) fn rpc_system<S>(
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
