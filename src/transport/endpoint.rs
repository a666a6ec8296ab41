//! Serving on and connecting to an [`Address`], whichever transport it
//! names.

use std::path::PathBuf;
use std::sync::Arc;

use capnp::capability::{FromClientHook, FromServer};

use super::address::Address;
use super::connect_options::ConnectOptions;
use super::connection::Connection;
use super::gatekeeper::Gate;
use super::listener::Vats;
use super::memory::{self, LinkConditions};
use super::options::Limits;
use super::options::ServeOptions;
use super::serve::serve_bootstrap;
use super::server::{self, Server};
use super::tcp;
use super::tls::ClientTls;
use crate::call::ActorCalls;
use crate::schema::actor_capnp::gate;
use crate::{Error, Result};
use tokio_util::sync::CancellationToken;

/// Serves actors made by `make` at `address`. TLS over TCP for `tls://`
/// (which needs `opts.tls`) and for `tcp://` when `opts.tls` is set.
pub(crate) async fn serve<C, S, F>(
    vats: &dyn Vats,
    address: &Address,
    make: F,
    opts: ServeOptions,
) -> Result<Server<Address>>
where
    C: FromClientHook + FromServer<S>,
    S: 'static,
    F: Fn() -> S + Send + Sync + 'static,
{
    let calls = ActorCalls::with_metrics(opts.call_deadline, opts.metrics.as_ref());
    serve_counted::<C, S, F>(vats, address, make, opts, calls).await
}

/// [`serve`], counting the actor's calls in `calls` (a supervisor's child
/// counts them in its own).
pub(crate) async fn serve_counted<C, S, F>(
    vats: &dyn Vats,
    address: &Address,
    make: F,
    opts: ServeOptions,
    calls: Arc<ActorCalls>,
) -> Result<Server<Address>>
where
    C: FromClientHook + FromServer<S>,
    S: 'static,
    F: Fn() -> S + Send + Sync + 'static,
{
    match address {
        Address::Tls(_) if opts.tls.is_none() => Err(Error::invalid(format!(
            "serving on {address} needs a TLS identity (ServeOptions::tls, \
             or --tls-cert and --tls-key)"
        ))),
        Address::Tcp(host) | Address::Tls(host) => {
            let (bound, _) = tcp::bind(host, &opts).await?;
            let local = bound.address.clone();
            server::serve::<C, S, F, _, _>(vats, bound, local, make, opts, calls).await
        }
        #[cfg(unix)]
        Address::Unix(path) => {
            let bound = super::unix::bind(path, &opts)?;
            let local = bound.address.clone();
            server::serve::<C, S, F, _, _>(vats, bound, local, make, opts, calls).await
        }
        #[cfg(not(unix))]
        Address::Unix(_) => Err(Error::invalid("Unix sockets need a Unix system")),
    }
}

/// Serves actors made by `make` on the Unix socket at `path`.
#[cfg(unix)]
pub(crate) async fn serve_unix<C, S, F>(
    vats: &dyn Vats,
    path: PathBuf,
    make: F,
    opts: ServeOptions,
) -> Result<Server<PathBuf>>
where
    C: FromClientHook + FromServer<S>,
    S: 'static,
    F: Fn() -> S + Send + Sync + 'static,
{
    let bound = super::unix::bind(&path, &opts)?;
    let calls = ActorCalls::with_metrics(opts.call_deadline, opts.metrics.as_ref());
    server::serve::<C, S, F, _, _>(vats, bound, path, make, opts, calls).await
}

/// Connects to the actor served at `address`, entering through `enter`
/// (see [`super::rpc::connect_stream_with`]). `tls://` needs `opts.tls`;
/// `tcp://` speaks TLS when `opts.tls` is set.
pub(crate) async fn connect_with<C: FromClientHook>(
    address: &Address,
    opts: &ConnectOptions,
    enter: impl FnOnce(&gate::Client) -> C,
) -> Result<Connection<C>> {
    match address {
        Address::Tls(_) if opts.tls.is_none() => Err(Error::invalid(format!(
            "connecting to {address} needs ConnectOptions::tls (the roots or \
             certificate to trust)"
        ))),
        Address::Tcp(host) | Address::Tls(host) => tcp::connect_with(host, opts, enter).await,
        #[cfg(unix)]
        Address::Unix(path) => super::unix::connect_with(path, opts, enter).await,
        #[cfg(not(unix))]
        Address::Unix(_) => Err(Error::invalid("Unix sockets need a Unix system")),
    }
}

/// Connects to the actor served at `address`, opening its gate with
/// `opts.token`.
pub(crate) async fn connect<C: FromClientHook>(
    address: &Address,
    opts: &ConnectOptions,
) -> Result<Connection<C>> {
    match (address, &opts.tls) {
        (Address::Tcp(host), _) | (Address::Tls(host), Some(_)) => connect_tcp(host, opts).await,
        (Address::Unix(_), _) if opts.reconnect.is_some() => Err(Error::invalid(format!(
            "ConnectOptions::reconnect is for TCP; {address} is a Unix socket"
        ))),
        _ => connect_with(address, opts, |g| super::gatekeeper::open(g, &opts.token)).await,
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
        return Ok(super::rpc::connect_stream_with(near, &opts, Clone::clone));
    }
    if !tls_certificate.is_empty() {
        let cert = rustls_pki_types::CertificateDer::from(tls_certificate.to_vec());
        opts.tls = Some(ClientTls::pinned(cert)?);
    }
    connect_with(&address.parse()?, &opts, Clone::clone).await
}

/// Connects to the actor served over TCP at `addr` (see
/// [`crate::connect_tcp`]), reconnecting when `opts.reconnect` says so.
pub(crate) async fn connect_tcp<C: FromClientHook>(
    addr: &str,
    opts: &ConnectOptions,
) -> Result<Connection<C>> {
    if opts.reconnect.is_some() {
        return super::reconnect::connect(addr, opts).await;
    }
    tcp::connect(addr, opts).await
}
