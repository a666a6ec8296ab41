//! The TCP transport: a listener that spreads connections over the vats,
//! and the client side.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use capnp::capability::{FromClientHook, FromServer};
use socket2::{SockRef, TcpKeepalive};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};
use tokio_util::task::TaskTracker;

use super::tls::ServerTls;
use super::{ActorMint, ConnectOptions, Connection, Limits, ServeSite};
use crate::call::ActorCalls;
use crate::{Error, Result, Runtime};

/// How a TCP worker serves.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
///
/// let mut opts = capactor::ServeOptions::default();
/// opts.max_connections = 64;
/// opts.call_deadline = Some(Duration::from_secs(60));
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ServeOptions {
    /// The token a client must offer the gate. `None` serves without
    /// authentication.
    pub token: Option<Vec<u8>>,
    /// Limits on what a client may send.
    pub limits: Limits,
    /// Connections served at once; one more is answered with a
    /// `connections limit exceeded` error and closed. Default 1024.
    pub max_connections: usize,
    /// Close a connection whose peer has sent nothing for this long.
    /// Default `None` (clients that heartbeat are never idle that long
    /// anyway; TCP keepalive catches dead hosts).
    pub idle_timeout: Option<Duration>,
    /// TCP keepalive idle time; the kernel then probes every third of it
    /// and gives up after three misses. Default 30 s.
    pub keepalive: Option<Duration>,
    /// Serve TLS with this identity; `None` for plain TCP.
    pub tls: Option<ServerTls>,
    /// How long a new connection has to open the gate before it is closed.
    /// Default 10 s.
    pub handshake_timeout: Option<Duration>,
    /// Longest a single call may run before it fails with
    /// `call exceeded its deadline`. Default 5 minutes; `None` for no limit.
    pub call_deadline: Option<Duration>,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            token: None,
            limits: Limits::default(),
            max_connections: 1024,
            idle_timeout: None,
            keepalive: Some(Duration::from_secs(30)),
            handshake_timeout: Some(Duration::from_secs(10)),
            tls: None,
            call_deadline: Some(Duration::from_secs(300)),
        }
    }
}

/// A running TCP worker. Dropping it stops accepting and closes every
/// connection at once; [`TcpServer::shutdown`] does it gracefully.
#[derive(Debug)]
pub struct TcpServer {
    local_addr: SocketAddr,
    accepting: CancellationToken,
    /// Stops every connection reading (see [`Closing`]).
    closing: CancellationToken,
    connections: CancellationToken,
    calls: Arc<ActorCalls>,
    tracker: TaskTracker,
}

impl TcpServer {
    /// The address the listener is bound to (the real port when bound to
    /// port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Calls in flight across every connection.
    pub fn calls_in_flight(&self) -> usize {
        self.calls.in_flight()
    }

    /// Shuts down gracefully: stops accepting, refuses new calls (they fail
    /// with `actor is shutting down`), lets calls in flight finish for up to
    /// `grace`, then closes every connection. Returns `true` if every call
    /// finished within `grace`.
    ///
    /// A connection closes as if its peer had hung up: it writes what it
    /// has queued (the answers of the calls that finished, refusals) and an
    /// abort, so the calls still pending on the client fail as
    /// disconnected. One whose peer has not read all that within 2 s is
    /// cut.
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe: dropping the future part way leaves the server
    /// refusing calls; drop the `TcpServer` to finish closing it.
    pub async fn shutdown(self, grace: Duration) -> bool {
        self.accepting.cancel();
        let clean = tokio::time::timeout(grace, self.calls.drain())
            .await
            .is_ok();
        // Cutting the links at once would also fail the writes of answers
        // still queued, and the calls they answer would look lost.
        self.closing.cancel();
        self.tracker.close();
        let _ = tokio::time::timeout(CLOSE_LINGER, self.tracker.wait()).await;
        self.connections.cancel();
        self.tracker.wait().await;
        clean
    }
}

impl Drop for TcpServer {
    fn drop(&mut self) {
        self.accepting.cancel();
        self.connections.cancel();
    }
}

pub(crate) async fn serve<C, S, F>(
    rt: &Runtime,
    addr: &str,
    make: F,
    opts: ServeOptions,
) -> Result<TcpServer>
where
    C: FromClientHook + FromServer<S>,
    S: 'static,
    F: Fn() -> S + Send + Sync + 'static,
{
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local_addr = listener.local_addr()?;
    let listener = listener.into_std()?;

    let server = TcpServer {
        local_addr,
        accepting: CancellationToken::new(),
        closing: CancellationToken::new(),
        connections: CancellationToken::new(),
        calls: ActorCalls::new(opts.call_deadline),
        tracker: TaskTracker::new(),
    };
    let make = Arc::new(make);
    let open = Arc::new(AtomicUsize::new(0));
    let mut vats = Vec::with_capacity(rt.vat_count());
    for i in 0..rt.vat_count() {
        let (tx, rx) = mpsc::unbounded_channel::<std::net::TcpStream>();
        vats.push(tx);
        let make = make.clone();
        let opts = opts.clone();
        let calls = server.calls.clone();
        let closing = server.closing.clone();
        let connections = server.connections.clone();
        let tracker = server.tracker.clone();
        let open = open.clone();
        rt.run_on_vat(i, move || {
            let site = ServeSite::new(ActorMint::new::<C, S>(make()), calls, &opts);
            tokio::task::spawn_local(vat_loop(
                rx,
                site,
                opts.tls,
                opts.keepalive,
                closing,
                connections,
                tracker,
                open,
            ));
        });
    }

    let accepting = server.accepting.clone();
    let closing = server.closing.clone();
    let connections = server.connections.clone();
    let max = opts.max_connections;
    let limits = opts.limits.clone();
    let tracker = server.tracker.clone();
    rt.run_on_vat(0, move || {
        tokio::task::spawn_local(accept_loop(
            listener,
            vats,
            accepting,
            closing,
            connections,
            open,
            max,
            limits,
            tracker,
        ));
    });
    tracing::info!(%local_addr, "serving");
    Ok(server)
}

#[allow(clippy::too_many_arguments)]
async fn accept_loop(
    listener: std::net::TcpListener,
    vats: Vec<mpsc::UnboundedSender<std::net::TcpStream>>,
    accepting: CancellationToken,
    closing: CancellationToken,
    connections: CancellationToken,
    open: Arc<AtomicUsize>,
    max: usize,
    limits: Limits,
    tracker: TaskTracker,
) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!("cannot register listener: {e}");
            return;
        }
    };
    let mut next = 0usize;
    loop {
        let accepted = tokio::select! {
            _ = accepting.cancelled() => return,
            a = listener.accept() => a,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of file descriptors and the like: back off briefly
                // rather than spin.
                tracing::warn!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let now_open = open.fetch_add(1, Ordering::AcqRel) + 1;
        if now_open > max {
            tracing::warn!(%peer, "refusing connection: {max} already open");
            let err = Error::limit("connections", now_open, max);
            let open = open.clone();
            let limits = limits.clone();
            let cut = connections.child_token();
            let stream = Closing::new(stream, &closing);
            tracker.spawn_local(async move {
                let _open = OpenSlot(open);
                let broken = capnp_rpc::new_broken_cap(err.into());
                // The refused peer gets an answer to its first call, then a
                // short while to read it. The while is not an idle timeout:
                // a peer that keeps talking (a heartbeat) would otherwise
                // hold its slot for ever. Shutdown cuts it short.
                let serve = super::serve_bootstrap(stream, broken, &limits, None, cut, None);
                let _ = tokio::time::timeout(REFUSED_LINGER, serve).await;
            });
            continue;
        }
        tracing::debug!(%peer, "accepted");
        let stream = match stream.into_std() {
            Ok(s) => s,
            Err(e) => {
                open.fetch_sub(1, Ordering::AcqRel);
                tracing::warn!("cannot hand over connection: {e}");
                continue;
            }
        };
        if vats[next % vats.len()].send(stream).is_err() {
            open.fetch_sub(1, Ordering::AcqRel);
        }
        next = next.wrapping_add(1);
    }
}

/// How long a connection refused for the connection limit stays open, so
/// that its peer can read why.
const REFUSED_LINGER: Duration = Duration::from_secs(2);

#[allow(clippy::too_many_arguments)]
async fn vat_loop(
    mut rx: mpsc::UnboundedReceiver<std::net::TcpStream>,
    site: ServeSite,
    tls: Option<ServerTls>,
    keepalive: Option<Duration>,
    closing: CancellationToken,
    connections: CancellationToken,
    tracker: TaskTracker,
    open: Arc<AtomicUsize>,
) {
    loop {
        let std_stream = tokio::select! {
            _ = connections.cancelled() => return,
            s = rx.recv() => match s { Some(s) => s, None => return },
        };
        let slot = OpenSlot(open.clone());
        let stream = match TcpStream::from_std(std_stream) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("cannot register connection: {e}");
                continue;
            }
        };
        configure(&stream, keepalive);
        let site = site.clone();
        let cut = connections.child_token();
        let closing = closing.clone();
        let tls = tls.clone();
        tracker.spawn_local(async move {
            let _slot = slot;
            let Some(tls) = tls else {
                let stream = Closing::new(stream, &closing);
                return super::serve_stream(stream, &site, cut).await;
            };
            // The TLS handshake counts against the handshake timeout too.
            let limit = site.handshake_timeout.unwrap_or(Duration::from_secs(10));
            let handshake = tokio::time::timeout(limit, tls.acceptor.accept(stream));
            match tokio::select! {
                _ = cut.cancelled() => return,
                h = handshake => h,
            } {
                Ok(Ok(stream)) => {
                    let stream = Closing::new(stream, &closing);
                    super::serve_stream(stream, &site, cut).await
                }
                Ok(Err(e)) => tracing::warn!("tls handshake failed: {e}"),
                Err(_) => tracing::warn!("tls handshake took longer than {limit:?}"),
            }
        });
    }
}

/// How long a connection closed by [`TcpServer::shutdown`] has to write
/// what it has queued before it is cut.
const CLOSE_LINGER: Duration = Duration::from_secs(2);

/// A server's stream that stops reading when `closing` is cancelled: reads
/// then fail as if the peer had hung up, while writes go on. capnp-rpc
/// answers that by writing what it has queued, then an abort, and closing
/// the connection. (Cutting the `Link` would fail those writes too.)
struct Closing<S> {
    inner: S,
    token: CancellationToken,
    closing: Pin<Box<WaitForCancellationFutureOwned>>,
}

impl<S> Closing<S> {
    fn new(inner: S, closing: &CancellationToken) -> Self {
        Closing {
            inner,
            token: closing.clone(),
            closing: Box::pin(closing.clone().cancelled_owned()),
        }
    }
}

fn closed_read() -> io::Error {
    io::Error::new(io::ErrorKind::ConnectionAborted, "worker is shutting down")
}

impl<S: AsyncRead + Unpin> AsyncRead for Closing<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        // As in `Link`: the flag while the stream is ready, the future (which
        // registers a waker) only before parking.
        if self.token.is_cancelled() {
            return Poll::Ready(Err(closed_read()));
        }
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Pending if self.closing.as_mut().poll(cx).is_ready() => {
                Poll::Ready(Err(closed_read()))
            }
            other => other,
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Closing<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Counts one open connection until dropped.
struct OpenSlot(Arc<AtomicUsize>);

impl Drop for OpenSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
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
/// [`super::connect_stream_with`]).
pub(crate) async fn connect_with<C>(
    addr: &str,
    opts: &ConnectOptions,
    enter: impl FnOnce(&crate::schema::actor_capnp::gate::Client) -> C,
) -> Result<Connection<C>> {
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
        None => Ok(super::connect_stream_with(stream, opts, enter)),
        Some(tls) => {
            let stream = tokio::time::timeout(opts.connect_timeout, tls.connect(addr, stream))
                .await
                .map_err(|_| {
                    Error::Disconnected(format!(
                        "tls handshake with {addr} took longer than {:?}",
                        opts.connect_timeout
                    ))
                })??;
            Ok(super::connect_stream_with(stream, opts, enter))
        }
    }
}
