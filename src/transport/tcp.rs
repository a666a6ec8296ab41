//! The TCP transport: its listener (the server itself is
//! [`super::server`], the same for every transport), socket options, and
//! the client side.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use capnp::capability::{FromClientHook, FromServer};
use socket2::{SockRef, TcpKeepalive};
use tokio::net::TcpStream;

use super::address::Address;
use super::connect_options::ConnectOptions;
use super::connection::Connection;
use super::gate_policy::Peer;
use super::listener::{Accept, Incoming, Listener, Vats};
use super::server::{Bound, Server};
// Where these lived before the options moved to their own file.
pub use super::options::{ServeOptions, MIN_TOKEN_BYTES};
use crate::call::ActorCalls;
use crate::{Error, Result};

/// A running TCP (or TLS) worker: a [`Server`] bound to a socket address.
///
/// # Examples
///
/// ```no_run
/// use capactor::actors::Probe;
/// use capactor::schema::probe_capnp::probe;
///
/// let rt = capactor::Runtime::new().unwrap();
/// capactor::block_on(async {
///     let opts = capactor::ServeOptions::insecure_loopback();
///     let server: capactor::TcpServer = rt
///         .serve_tcp::<probe::Client, _, _>("127.0.0.1:0", || Probe::new("p"), opts)
///         .await?;
///     println!("listening on {}", server.local_addr());
///     Ok::<_, capactor::Error>(())
/// }).unwrap();
/// ```
pub type TcpServer = Server<SocketAddr>;

/// Serves actors made by `make` on a TCP listener bound to `addr` (see
/// [`crate::Runtime::serve_tcp`]).
pub(crate) async fn serve<C, S, F>(
    vats: &dyn Vats,
    addr: &str,
    make: F,
    opts: ServeOptions,
) -> Result<TcpServer>
where
    C: FromClientHook + FromServer<S>,
    S: 'static,
    F: Fn() -> S + Send + Sync + 'static,
{
    let calls = ActorCalls::with_metrics(opts.call_deadline, opts.metrics.as_ref());
    let (bound, local) = bind(addr, &opts).await?;
    super::server::serve::<C, S, F, _, _>(vats, bound, local, make, opts, calls).await
}

/// A bound TCP listener, with the options of the sockets it accepts.
pub(crate) struct TcpBound {
    listener: std::net::TcpListener,
    keepalive: Option<Duration>,
}

/// Binds `addr` for a worker serving as `opts` say: refused without a
/// token off loopback. Returns the listener and the address it is bound to.
pub(crate) async fn bind(addr: &str, opts: &ServeOptions) -> Result<(Bound<TcpBound>, SocketAddr)> {
    opts.check_token()?;
    if opts.token.is_none() && opts.trust.is_none() {
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host(addr).await?.collect();
        if addrs.is_empty() || !addrs.iter().all(|a| a.ip().is_loopback()) {
            return Err(Error::invalid(format!(
                "serving without a token is only allowed on a loopback address, not {addr}"
            )));
        }
        tracing::warn!("serving without authentication (loopback only)");
    }
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local_addr = listener.local_addr()?;
    let listener = TcpBound {
        listener: listener.into_std()?,
        keepalive: opts.tcp.keepalive,
    };
    let address = match opts.tls {
        Some(_) => Address::Tls(local_addr.to_string()),
        None => Address::Tcp(local_addr.to_string()),
    };
    let bound = Bound {
        listener,
        address,
        on_stop: None,
    };
    Ok((bound, local_addr))
}

impl Listener for TcpBound {
    type Accept = TcpAccept;

    fn register(self) -> io::Result<TcpAccept> {
        Ok(TcpAccept {
            listener: tokio::net::TcpListener::from_std(self.listener)?,
            keepalive: self.keepalive,
        })
    }
}

/// A TCP listener registered on the accepting vat.
pub(crate) struct TcpAccept {
    listener: tokio::net::TcpListener,
    keepalive: Option<Duration>,
}

impl Accept for TcpAccept {
    type Stream = TcpStream;

    async fn accept(&mut self) -> io::Result<Incoming<TcpStream>> {
        let (stream, peer) = self.listener.accept().await?;
        configure(&stream, self.keepalive);
        Ok(Incoming {
            stream,
            peer: Peer::Addr(peer),
            refused: None,
        })
    }
}

fn configure(stream: &TcpStream, keepalive: Option<Duration>) {
    // Small RPC messages must not wait for Nagle's algorithm.
    if let Err(e) = stream.set_nodelay(true) {
        tracing::debug!("set_nodelay: {e}");
    }
    if let Some(idle) = keepalive {
        let ka = TcpKeepalive::new()
            .with_time(idle)
            .with_interval((idle / 3).max(Duration::from_secs(1)))
            .with_retries(3);
        if let Err(e) = SockRef::from(stream).set_tcp_keepalive(&ka) {
            tracing::debug!("set_tcp_keepalive: {e}");
        }
    }
}

/// Connects to the actor served at `addr` (see [`crate::connect_tcp`]).
pub(crate) async fn connect<C: FromClientHook>(
    addr: &str,
    opts: &ConnectOptions,
) -> Result<Connection<C>> {
    connect_with(addr, opts, |gate| {
        super::gatekeeper::open(gate, &opts.token)
    })
    .await
}

/// Like [`connect`], entering through `enter` (see
/// [`super::rpc::connect_stream_with`]).
pub(crate) async fn connect_with<C: FromClientHook>(
    addr: &str,
    opts: &ConnectOptions,
    enter: impl FnOnce(&crate::schema::actor_capnp::gate::Client) -> C,
) -> Result<Connection<C>> {
    crate::local_loop::check_local_loop()?;
    let stream = tokio::time::timeout(opts.connect_timeout, TcpStream::connect(addr))
        .await
        .map_err(|_| {
            Error::Disconnected(format!(
                "connecting to {addr} took longer than {:?}",
                opts.connect_timeout
            ))
        })??;
    configure(&stream, Some(Duration::from_secs(30)));
    match &opts.tls {
        None => Ok(super::rpc::connect_stream_with(stream, opts, enter)),
        Some(tls) => {
            let stream = tokio::time::timeout(opts.connect_timeout, tls.connect(addr, stream))
                .await
                .map_err(|_| {
                    Error::Disconnected(format!(
                        "tls handshake with {addr} took longer than {:?}",
                        opts.connect_timeout
                    ))
                })??;
            Ok(super::rpc::connect_stream_with(stream, opts, enter))
        }
    }
}
