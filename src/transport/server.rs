//! The server, written once over any [`Listener`]: accepting on one vat,
//! spreading connections over every vat, the connection cap, the TLS
//! handshake and gate deadline, graceful shutdown.
//!
//! A transport only binds its listener and sets its sockets' options
//! ([`super::tcp`], [`super::unix`]); everything a worker does with a
//! connection from then on is here and in [`super::serve`].

use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use capnp::capability::{FromClientHook, FromServer};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::accept::{Acceptor, Admission, Shared, VatServer, REFUSING_MAX};
use super::address::Address;
use super::closing::CLOSE_LINGER;
use super::gate_policy::GatePolicy;
use super::listener::{Accept, Listener, Vats};
use super::options::ServeOptions;
use super::preauth_pool::PreauthPool;
use super::serve::{ActorMint, ServeSite};
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
    /// Dropped when the server stops accepting (a Unix socket's file,
    /// which it removes).
    on_stop: Option<OnStop>,
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
        drop(self.on_stop.take());
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
    /// What to drop when the server stops accepting (a Unix socket's
    /// file, which removes itself).
    pub(crate) on_stop: Option<OnStop>,
}

/// Something a transport leaves with its server, to be dropped when the
/// server stops accepting: the server needs to know no more about it.
pub(crate) type OnStop = Box<dyn std::any::Any + Send + Sync>;

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
        on_stop: bound.on_stop,
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
