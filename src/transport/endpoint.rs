//! Serving on and connecting to an [`Address`], whichever transport it
//! names.

use std::path::PathBuf;
use std::sync::Arc;

use capnp::capability::{FromClientHook, FromServer};

use super::listener::Vats;
use super::options::ServeOptions;
use super::server::{self, Server};
use super::{tcp, Address, ConnectOptions, Connection};
use crate::call::ActorCalls;
use crate::schema::actor_capnp::gate;
use crate::{Error, Result};

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
/// (see [`super::connect_stream_with`]). `tls://` needs `opts.tls`;
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
        // `tcp::connect` also reconnects when `opts.reconnect` says so.
        (Address::Tcp(host), _) | (Address::Tls(host), Some(_)) => tcp::connect(host, opts).await,
        (Address::Unix(_), _) if opts.reconnect.is_some() => Err(Error::invalid(format!(
            "ConnectOptions::reconnect is for TCP; {address} is a Unix socket"
        ))),
        _ => connect_with(address, opts, |g| super::gatekeeper::open(g, &opts.token)).await,
    }
}
