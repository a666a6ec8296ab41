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
use super::{
    ActorMint, Arrival, ConnectOptions, Connection, GatePolicy, Limits, Peer, PreauthPool,
    ServeSite,
};
// Where these lived before the options moved to their own file.
pub use super::options::{ServeOptions, MIN_TOKEN_BYTES};
use crate::call::ActorCalls;
use crate::{Error, Result, Runtime};

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
    open: Arc<AtomicUsize>,
    preauth: Arc<PreauthPool>,
}

impl TcpServer {
    /// Connections open now, authenticated or not (refused ones that are
    /// still being told why excluded).
    pub fn connections(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }

    /// Connections open now that have not yet opened the gate.
    pub fn unauthenticated_connections(&self) -> usize {
        self.preauth.len()
    }

    /// Unauthenticated connections closed so far to make room for new ones.
    pub fn unauthenticated_closed(&self) -> u64 {
        self.preauth.evicted()
    }

    /// The address the listener is bound to (the real port when bound to
    /// port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Calls in flight across every connection.
    pub fn calls_in_flight(&self) -> usize {
        self.calls.in_flight()
    }

    /// Calls completed so far across every connection, successfully or not.
    pub fn calls_served(&self) -> u64 {
        self.calls.served()
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
    let calls = ActorCalls::with_metrics(opts.call_deadline, opts.metrics.as_ref());
    serve_counted::<C, S, F>(rt, addr, make, opts, calls).await
}

/// [`serve`], counting the actor's calls in `calls`.
///
/// `make` runs once per vat; if it panics on any, serving fails with
/// [`Error::StartFailed`] and nothing is left listening.
pub(crate) async fn serve_counted<C, S, F>(
    rt: &Runtime,
    addr: &str,
    make: F,
    opts: ServeOptions,
    calls: Arc<ActorCalls>,
) -> Result<TcpServer>
where
    C: FromClientHook + FromServer<S>,
    S: 'static,
    F: Fn() -> S + Send + Sync + 'static,
{
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
    super::fd_limit::ensure(opts.max_connections + REFUSING_MAX)?;
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local_addr = listener.local_addr()?;
    let listener = listener.into_std()?;

    let server = TcpServer {
        local_addr,
        accepting: CancellationToken::new(),
        closing: CancellationToken::new(),
        connections: CancellationToken::new(),
        calls,
        tracker: TaskTracker::new(),
        open: Arc::new(AtomicUsize::new(0)),
        preauth: PreauthPool::new(
            opts.max_unauthenticated,
            opts.max_unauthenticated_per_address,
        ),
    };
    if let Some(m) = &opts.metrics {
        m.track_connections(&server.open, &server.preauth);
    }
    let make = Arc::new(make);
    let policy = Arc::new(GatePolicy::new(opts.gate_failures_per_second));
    let mut vats = Vec::with_capacity(rt.vat_count());
    let mut started = Vec::with_capacity(rt.vat_count());
    for i in 0..rt.vat_count() {
        let (report, heard) =
            futures::channel::oneshot::channel::<std::result::Result<(), String>>();
        started.push(heard);
        let (tx, rx) = mpsc::unbounded_channel::<Accepted>();
        vats.push(tx);
        let make = make.clone();
        let opts = opts.clone();
        let calls = server.calls.clone();
        let closing = server.closing.clone();
        let connections = server.connections.clone();
        let tracker = server.tracker.clone();
        let policy = policy.clone();
        rt.run_on_vat(i, move || {
            // A panicking factory must not take the vat's other actors down.
            let server = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| make())) {
                Ok(server) => server,
                Err(panic) => {
                    let _ = report.send(Err(crate::call::panic_message(&*panic)));
                    return;
                }
            };
            let _ = report.send(Ok(()));
            let site = ServeSite::new(ActorMint::new::<C, S>(server), calls, &opts, policy);
            tokio::task::spawn_local(vat_loop(
                rx,
                site,
                opts.tls,
                opts.keepalive,
                closing,
                connections,
                tracker,
            ));
        });
    }

    let admission = Admission {
        open: server.open.clone(),
        refusing: Arc::new(AtomicUsize::new(0)),
        max: opts.max_connections,
        preauth: server.preauth.clone(),
        limits: opts.limits.clone(),
    };
    let accepting = server.accepting.clone();
    let closing = server.closing.clone();
    let connections = server.connections.clone();
    let tracker = server.tracker.clone();
    rt.run_on_vat(0, move || {
        tokio::task::spawn_local(accept_loop(
            listener,
            vats,
            accepting,
            closing,
            connections,
            admission,
            tracker,
        ));
    });
    for heard in started {
        match heard.await {
            Ok(Ok(())) => {}
            Ok(Err(msg)) => {
                // Dropping the server stops the accept loop and the vats' loops.
                return Err(Error::StartFailed(format!(
                    "the actor's factory panicked: {msg}"
                )));
            }
            Err(_) => return Err(Error::StartFailed("the runtime is shutting down".into())),
        }
    }
    tracing::info!(%local_addr, "serving");
    Ok(server)
}

/// A connection on its way from the accept loop to its vat.
struct Accepted {
    stream: std::net::TcpStream,
    slot: OpenSlot,
    cut: CancellationToken,
    arrival: Arrival,
}

/// What the accept loop admits connections by.
struct Admission {
    /// Connections served (authenticated or not).
    open: Arc<AtomicUsize>,
    /// Refused connections still open to tell their peer why.
    refusing: Arc<AtomicUsize>,
    max: usize,
    preauth: Arc<PreauthPool>,
    limits: Limits,
}

/// Refused connections kept open at once to say why; more are closed
/// without a word (they take file descriptors, not connection slots).
const REFUSING_MAX: usize = 64;

async fn accept_loop(
    listener: std::net::TcpListener,
    vats: Vec<mpsc::UnboundedSender<Accepted>>,
    accepting: CancellationToken,
    closing: CancellationToken,
    connections: CancellationToken,
    admission: Admission,
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
        let max = admission.max;
        let now_open = admission.open.fetch_add(1, Ordering::AcqRel) + 1;
        let slot = OpenSlot(admission.open.clone());
        // At the limit, an unauthenticated connection makes room before a
        // newcomer is refused: only clients with a key hold slots for long.
        if now_open > max && !admission.preauth.evict_oldest() {
            drop(slot);
            refuse(
                stream,
                peer,
                now_open,
                &admission,
                &closing,
                &connections,
                &tracker,
            );
            continue;
        }
        tracing::debug!(%peer, "accepted");
        let stream = match stream.into_std() {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("cannot hand over connection: {e}");
                continue;
            }
        };
        let cut = connections.child_token();
        let peer = Peer::Addr(peer);
        let ticket = admission.preauth.admit(peer.key(), cut.clone());
        let accepted = Accepted {
            stream,
            slot,
            cut,
            arrival: Arrival::now(peer, Some(ticket)),
        };
        // A vat only goes away with the runtime; the connection is then
        // dropped with the message.
        let _ = vats[next % vats.len()].send(accepted);
        next = next.wrapping_add(1);
    }
}

/// Answers a connection over the connection limit with why, if few others
/// are being answered, and closes it.
fn refuse(
    stream: TcpStream,
    peer: SocketAddr,
    now_open: usize,
    admission: &Admission,
    closing: &CancellationToken,
    connections: &CancellationToken,
    tracker: &TaskTracker,
) {
    let max = admission.max;
    tracing::debug!(%peer, "refusing connection: {max} already open");
    if admission.refusing.fetch_add(1, Ordering::AcqRel) >= REFUSING_MAX {
        admission.refusing.fetch_sub(1, Ordering::AcqRel);
        return;
    }
    let refusing = OpenSlot(admission.refusing.clone());
    let err = Error::limit("connections", now_open, max);
    let limits = admission.limits.clone();
    let cut = connections.child_token();
    let stream = Closing::new(stream, closing);
    tracker.spawn_local(async move {
        let _refusing = refusing;
        let broken = capnp_rpc::new_broken_cap(err.into());
        // The refused peer gets an answer to its first call, then a short
        // while to read it. The while is not an idle timeout: a peer that
        // keeps talking (a heartbeat) would otherwise hold its place for
        // ever. Shutdown cuts it short.
        let serve = super::serve_bootstrap(stream, broken, &limits, None, cut, None);
        let _ = tokio::time::timeout(REFUSED_LINGER, serve).await;
    });
}

/// How long a connection refused for the connection limit stays open, so
/// that its peer can read why.
const REFUSED_LINGER: Duration = Duration::from_secs(2);

async fn vat_loop(
    mut rx: mpsc::UnboundedReceiver<Accepted>,
    site: ServeSite,
    tls: Option<ServerTls>,
    keepalive: Option<Duration>,
    closing: CancellationToken,
    connections: CancellationToken,
    tracker: TaskTracker,
) {
    loop {
        let accepted = tokio::select! {
            _ = connections.cancelled() => return,
            s = rx.recv() => match s { Some(s) => s, None => return },
        };
        let Accepted {
            stream,
            slot,
            cut,
            arrival,
        } = accepted;
        let stream = match TcpStream::from_std(stream) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("cannot register connection: {e}");
                continue;
            }
        };
        configure(&stream, keepalive);
        let site = site.clone();
        let closing = closing.clone();
        let tls = tls.clone();
        tracker.spawn_local(async move {
            let _slot = slot;
            let Some(tls) = tls else {
                let stream = Closing::new(stream, &closing);
                return super::serve_stream(stream, &site, cut, arrival).await;
            };
            // One deadline covers the TLS handshake and the gate: it runs
            // from the connection's arrival.
            let limit = site.handshake_timeout;
            let handshake = tls.acceptor.accept(stream);
            let handshake = async {
                match limit {
                    Some(limit) => tokio::time::timeout_at((arrival.at + limit).into(), handshake)
                        .await
                        .map_err(|_| limit),
                    None => Ok(handshake.await),
                }
            };
            match tokio::select! {
                _ = cut.cancelled() => return,
                h = handshake => h,
            } {
                Ok(Ok(stream)) => {
                    let stream = Closing::new(stream, &closing);
                    super::serve_stream(stream, &site, cut, arrival).await
                }
                Ok(Err(e)) => site
                    .policy
                    .log_rejection(&arrival.peer, format_args!("tls handshake failed: {e}")),
                Err(limit) => site.policy.log_rejection(
                    &arrival.peer,
                    format_args!("tls handshake took longer than {limit:?}"),
                ),
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
    if opts.reconnect.is_some() {
        return super::reconnect::connect(addr, opts).await;
    }
    connect_with(addr, opts, |gate| {
        super::gatekeeper::open(gate, &opts.token)
    })
    .await
}

/// Like [`connect`], entering through `enter` (see
/// [`super::connect_stream_with`]).
pub(crate) async fn connect_with<C: FromClientHook>(
    addr: &str,
    opts: &ConnectOptions,
    enter: impl FnOnce(&crate::schema::actor_capnp::gate::Client) -> C,
) -> Result<Connection<C>> {
    crate::runtime::check_local_loop()?;
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
