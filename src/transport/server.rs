//! The server, written once over any [`Listener`]: accepting on one vat,
//! spreading connections over every vat, the connection cap, the TLS
//! handshake and gate deadline, graceful shutdown.
//!
//! A transport only binds its listener and sets its sockets' options
//! ([`super::tcp`], [`super::unix`]); everything a worker does with a
//! connection from then on is here and in [`super::serve_stream`].

use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use capnp::capability::{FromClientHook, FromServer};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::closing::{Closing, CLOSE_LINGER};
use super::listener::{Accept, Handoff, Incoming, Listener, Vats};
use super::options::{Limits, ServeOptions};
use super::tls::ServerTls;
use super::{ActorMint, Address, Arrival, GatePolicy, PreauthPool, ServeSite};
use crate::call::ActorCalls;
use crate::{Error, Result};

/// A running worker, on whatever transport; `A` is what it is bound to
/// (a `SocketAddr` for [`TcpServer`](crate::TcpServer), a path for
/// [`UnixServer`](crate::UnixServer), an [`Address`] for
/// [`Runtime::serve`](crate::Runtime::serve)).
///
/// Dropping it stops accepting and closes every connection at once (and
/// removes a Unix socket's file); [`Server::shutdown`] does it gracefully.
pub struct Server<A> {
    local: A,
    address: Address,
    accepting: CancellationToken,
    /// Stops every connection reading (see [`Closing`]).
    closing: CancellationToken,
    connections: CancellationToken,
    calls: Arc<ActorCalls>,
    tracker: TaskTracker,
    open: Arc<AtomicUsize>,
    preauth: Arc<PreauthPool>,
    /// Removes a Unix socket's file when the server stops accepting.
    #[cfg(unix)]
    socket_file: Option<super::unix::SocketFile>,
}

impl<A: fmt::Debug> fmt::Debug for Server<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server")
            .field("local", &self.local)
            .field("connections", &self.connections())
            .field("calls_in_flight", &self.calls_in_flight())
            .finish_non_exhaustive()
    }
}

impl<A> Server<A> {
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

    /// Calls in flight across every connection.
    pub fn calls_in_flight(&self) -> usize {
        self.calls.in_flight()
    }

    /// Calls completed so far across every connection, successfully or not.
    pub fn calls_served(&self) -> u64 {
        self.calls.served()
    }

    /// Where the server listens, as an address clients can be given (the
    /// real port when bound to port 0).
    pub fn address(&self) -> &Address {
        &self.address
    }

    /// Shuts down gracefully: stops accepting (a Unix socket's file is
    /// removed), refuses new calls (they fail with `actor is shutting
    /// down`), lets calls in flight finish for up to `grace`, then closes
    /// every connection. Returns `true` if every call finished within
    /// `grace`.
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
    /// refusing calls; drop the server to finish closing it.
    pub async fn shutdown(mut self, grace: Duration) -> bool {
        self.accepting.cancel();
        #[cfg(unix)]
        drop(self.socket_file.take());
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

impl Server<std::net::SocketAddr> {
    /// The address the listener is bound to (the real port when bound to
    /// port 0).
    pub fn local_addr(&self) -> std::net::SocketAddr {
        self.local
    }
}

impl Server<std::path::PathBuf> {
    /// The path of the socket file the worker listens on.
    pub fn path(&self) -> &std::path::Path {
        &self.local
    }
}

impl<A> Drop for Server<A> {
    fn drop(&mut self) {
        self.accepting.cancel();
        self.connections.cancel();
    }
}

/// A bound listener and what the server says about it.
pub(crate) struct Bound<L> {
    pub(crate) listener: L,
    /// Where clients reach it.
    pub(crate) address: Address,
    /// The socket file to remove when it stops accepting.
    #[cfg(unix)]
    pub(crate) socket_file: Option<super::unix::SocketFile>,
}

/// Serves actors made by `make` (one per vat) on `bound`, as `opts` say,
/// counting their calls in `calls`.
///
/// `make` runs once per vat; if it panics on any, serving fails with
/// [`Error::StartFailed`] and nothing is left listening (a Unix socket's
/// file is removed).
pub(crate) async fn serve<C, S, F, L, A>(
    vats: &dyn Vats,
    bound: Bound<L>,
    local: A,
    make: F,
    opts: ServeOptions,
    calls: Arc<ActorCalls>,
) -> Result<Server<A>>
where
    C: FromClientHook + FromServer<S>,
    S: 'static,
    F: Fn() -> S + Send + Sync + 'static,
    L: Listener,
{
    super::fd_limit::ensure(opts.max_connections + REFUSING_MAX)?;
    let server = Server {
        local,
        address: bound.address,
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
        #[cfg(unix)]
        socket_file: bound.socket_file,
    };
    let shared = Shared {
        closing: server.closing.clone(),
        connections: server.connections.clone(),
        tracker: server.tracker.clone(),
    };
    if let Some(m) = &opts.metrics {
        m.track_connections(&server.open, &server.preauth);
    }
    let make = Arc::new(make);
    let policy = Arc::new(GatePolicy::new(opts.gate_failures_per_second));
    let mut senders = Vec::with_capacity(vats.count());
    let mut started = Vec::with_capacity(vats.count());
    for i in 0..vats.count() {
        let (report, heard) = oneshot::channel::<std::result::Result<(), String>>();
        started.push(heard);
        let (tx, rx) = mpsc::unbounded_channel();
        senders.push(tx);
        let make = make.clone();
        let opts = opts.clone();
        let calls = server.calls.clone();
        let shared = shared.clone();
        let policy = policy.clone();
        vats.run(
            i,
            Box::new(move || {
                // A panicking factory must not take the vat's other actors
                // down (the job runs on the vat's own thread).
                let actor = match catch_unwind(AssertUnwindSafe(|| make())) {
                    Ok(actor) => actor,
                    Err(panic) => {
                        let _ = report.send(Err(crate::call::panic_message(&*panic)));
                        return;
                    }
                };
                let _ = report.send(Ok(()));
                let site = ServeSite::new(ActorMint::new::<C, S>(actor), calls, &opts, policy);
                let vat = VatServer {
                    site,
                    tls: opts.tls,
                    shared,
                };
                tokio::task::spawn_local(vat.run::<<L::Accept as Accept>::Stream>(rx));
            }),
        );
    }

    // Every vat's actor first: a factory that panics leaves nothing
    // accepting (dropping `server` stops the vats' loops).
    for heard in started {
        match heard.await {
            Ok(Ok(())) => {}
            Ok(Err(msg)) => {
                return Err(Error::StartFailed(format!(
                    "the actor's factory panicked: {msg}"
                )))
            }
            Err(_) => return Err(Error::StartFailed("the runtime is shutting down".into())),
        }
    }
    let admission = Admission {
        open: server.open.clone(),
        refusing: Arc::new(AtomicUsize::new(0)),
        max: opts.max_connections,
        preauth: server.preauth.clone(),
        limits: opts.limits.clone(),
    };
    let accepting = server.accepting.clone();
    let listener = bound.listener;
    vats.run(
        0,
        Box::new(move || {
            let acceptor = Acceptor {
                vats: senders,
                accepting,
                admission,
                shared,
            };
            tokio::task::spawn_local(acceptor.run(listener));
        }),
    );
    tracing::info!(address = %server.address, "serving");
    Ok(server)
}

/// What the accept loop and the vats share with the [`Server`].
#[derive(Clone)]
struct Shared {
    /// Stops every connection reading (shutdown).
    closing: CancellationToken,
    /// Cuts every connection.
    connections: CancellationToken,
    tracker: TaskTracker,
}

/// A connection on its way from the accept loop to its vat.
struct Accepted<T> {
    stream: T,
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

/// How long a refused connection stays open, so that its peer can read
/// why.
const REFUSED_LINGER: Duration = Duration::from_secs(2);

/// The accept loop, on vat 0.
struct Acceptor<T> {
    vats: Vec<mpsc::UnboundedSender<Accepted<T>>>,
    accepting: CancellationToken,
    admission: Admission,
    shared: Shared,
}

impl<T: Send + 'static> Acceptor<T> {
    async fn run<L>(self, listener: L)
    where
        L: Listener,
        <L::Accept as Accept>::Stream: Handoff<Sent = T>,
    {
        let mut listener = match listener.register() {
            Ok(l) => l,
            Err(e) => {
                tracing::error!("cannot register listener: {e}");
                return;
            }
        };
        let mut next = 0usize;
        loop {
            let accepted = tokio::select! {
                _ = self.accepting.cancelled() => return,
                a = listener.accept() => a,
            };
            let Incoming {
                stream,
                peer,
                refused,
            } = match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: back off
                    // briefly rather than spin.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            if let Some(why) = refused {
                tracing::debug!(%peer, "refusing connection: {why}");
                self.refuse(stream, why);
                continue;
            }
            let max = self.admission.max;
            let now_open = self.admission.open.fetch_add(1, Ordering::AcqRel) + 1;
            let slot = OpenSlot(self.admission.open.clone());
            // At the limit, an unauthenticated connection makes room before
            // a newcomer is refused: only clients with a key hold slots for
            // long.
            if now_open > max && !self.admission.preauth.evict_oldest() {
                drop(slot);
                tracing::debug!(%peer, "refusing connection: {max} already open");
                self.refuse(stream, Error::limit("connections", now_open, max));
                continue;
            }
            tracing::debug!(%peer, "accepted");
            let stream = match stream.send() {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!("cannot hand over connection: {e}");
                    continue;
                }
            };
            let cut = self.shared.connections.child_token();
            let ticket = self.admission.preauth.admit(peer.key(), cut.clone());
            let accepted = Accepted {
                stream,
                slot,
                cut,
                arrival: Arrival::now(peer, Some(ticket)),
            };
            // A vat only goes away with the runtime; the connection is then
            // dropped with the message.
            let _ = self.vats[next % self.vats.len()].send(accepted);
            next = next.wrapping_add(1);
        }
    }

    /// Answers a connection turned away with why, if few others are being
    /// answered, and closes it.
    fn refuse<S: Handoff>(&self, stream: S, why: Error) {
        let refusing = &self.admission.refusing;
        if refusing.fetch_add(1, Ordering::AcqRel) >= REFUSING_MAX {
            refusing.fetch_sub(1, Ordering::AcqRel);
            return;
        }
        let refusing = OpenSlot(refusing.clone());
        let limits = self.admission.limits.clone();
        let cut = self.shared.connections.child_token();
        let stream = Closing::new(stream, &self.shared.closing);
        self.shared.tracker.spawn_local(async move {
            let _refusing = refusing;
            let broken = capnp_rpc::new_broken_cap(why.into());
            // The refused peer gets an answer to its first call, then a
            // short while to read it. The while is not an idle timeout: a
            // peer that keeps talking (a heartbeat) would otherwise hold its
            // place for ever. Shutdown cuts it short.
            let serve = super::serve_bootstrap(stream, broken, &limits, None, cut, None);
            let _ = tokio::time::timeout(REFUSED_LINGER, serve).await;
        });
    }
}

/// One vat's side of the server: serves the connections handed to it.
struct VatServer {
    site: ServeSite,
    tls: Option<ServerTls>,
    shared: Shared,
}

impl VatServer {
    async fn run<S: Handoff>(self, mut rx: mpsc::UnboundedReceiver<Accepted<S::Sent>>) {
        loop {
            let accepted = tokio::select! {
                _ = self.shared.connections.cancelled() => return,
                s = rx.recv() => match s { Some(s) => s, None => return },
            };
            let Accepted {
                stream,
                slot,
                cut,
                arrival,
            } = accepted;
            let stream = match S::receive(stream) {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!("cannot register connection: {e}");
                    continue;
                }
            };
            let site = self.site.clone();
            let closing = self.shared.closing.clone();
            let tls = self.tls.clone();
            self.shared.tracker.spawn_local(async move {
                let _slot = slot;
                match tls {
                    None => {
                        let stream = Closing::new(stream, &closing);
                        super::serve_stream(stream, &site, cut, arrival).await
                    }
                    Some(tls) => serve_tls(stream, tls, site, closing, cut, arrival).await,
                }
            });
        }
    }
}

/// Serves a connection that first does its TLS handshake.
async fn serve_tls<S: Handoff>(
    stream: S,
    tls: ServerTls,
    site: ServeSite,
    closing: CancellationToken,
    cut: CancellationToken,
    arrival: Arrival,
) {
    // One deadline covers the TLS handshake and the gate: it runs from the
    // connection's arrival.
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
}

/// Counts one open connection until dropped.
struct OpenSlot(Arc<AtomicUsize>);

impl Drop for OpenSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}
