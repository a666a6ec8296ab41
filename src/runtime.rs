//! [`Runtime`]: the vat threads actors run on, and the one API that spawns
//! actors local, virtual or behind a TCP listener.

use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;

use capnp::capability::{FromClientHook, FromServer};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::call::ActorCalls;
// Where it lived before it moved below the transports.
pub(crate) use crate::local_loop::check_local_loop;
use crate::local_loop::{require_local_loop, LocalLoop};
use crate::transport::{self, ConnectOptions, Connection, VirtualOptions};
use crate::{Error, Result};

type Job = Box<dyn FnOnce() + Send>;

/// A set of vat threads, each an event loop (a current-thread tokio
/// runtime with a `LocalSet`) that runs actors and their connections.
///
/// Cap'n Proto RPC is single-threaded: an actor and everything it serves
/// stays on one vat. To use more cores, spawn actors on several vats;
/// [`Runtime::spawn_virtual`] places them round-robin and
/// [`Runtime::serve_tcp`] spreads connections over every vat.
///
/// Dropping the runtime stops its vats: their actors are dropped and their
/// connections closed.
///
/// # Examples
///
/// ```
/// use capactor::schema::actor_capnp::actor;
///
/// struct Hello;
/// impl actor::Server for Hello {}
///
/// let rt = capactor::Runtime::new().unwrap();
/// capactor::block_on(async {
///     let hello: capactor::Connection<actor::Client> = rt.spawn_virtual(|| Hello);
///     let err = hello.ping_request().send().promise.await.err().unwrap();
///     assert_eq!(err.kind, capnp::ErrorKind::Unimplemented);
/// });
/// ```
#[derive(Debug)]
pub struct Runtime {
    vats: Vec<Vat>,
    next: Arc<AtomicUsize>,
}

/// What places virtual actors on a runtime's vats, from any thread (a
/// handle's vat, say). Holds no vat alive.
#[derive(Clone, Debug)]
pub(crate) struct Placer {
    vats: Vec<VatSender>,
    next: Arc<AtomicUsize>,
}

/// A way to hand jobs to one vat thread, from any thread; what a
/// [`Handle`](crate::Handle) holds. Sending fails once the runtime is gone.
#[derive(Clone, Debug)]
pub(crate) struct VatSender {
    jobs: mpsc::UnboundedSender<Job>,
}

impl VatSender {
    /// Runs `job` on the vat, after every job sent before it.
    ///
    /// # Errors
    ///
    /// [`Error::RuntimeStopped`] if the runtime has been dropped.
    pub(crate) fn run(&self, job: impl FnOnce() + Send + 'static) -> Result<()> {
        self.jobs
            .send(Box::new(job))
            .map_err(|_| Error::RuntimeStopped)
    }

    /// Whether both send to the same vat.
    pub(crate) fn same_vat(&self, other: &VatSender) -> bool {
        self.jobs.same_channel(&other.jobs)
    }
}

/// Configures a [`Runtime`].
///
/// # Examples
///
/// ```
/// let rt = capactor::Runtime::builder().vats(2).build().unwrap();
/// assert_eq!(rt.vat_count(), 2);
/// ```
#[derive(Debug, Default)]
pub struct Builder {
    vats: Option<usize>,
}

impl Builder {
    /// Number of vat threads. Default: the number of cores.
    pub fn vats(&mut self, n: usize) -> &mut Self {
        self.vats = Some(n.max(1));
        self
    }

    /// Starts the vat threads.
    ///
    /// # Errors
    ///
    /// Fails if a thread or its tokio runtime cannot be created.
    pub fn build(&mut self) -> Result<Runtime> {
        let n = self.vats.unwrap_or_else(|| {
            thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        });
        let vats = (0..n).map(Vat::start).collect::<Result<Vec<_>>>()?;
        Ok(Runtime {
            vats,
            next: Arc::new(AtomicUsize::new(0)),
        })
    }
}

impl Runtime {
    /// A runtime with one vat per core.
    ///
    /// # Errors
    ///
    /// Fails if a thread or its tokio runtime cannot be created.
    pub fn new() -> Result<Runtime> {
        Builder::default().build()
    }

    /// Configures a runtime.
    pub fn builder() -> Builder {
        Builder::default()
    }

    /// How many vat threads this runtime runs.
    pub fn vat_count(&self) -> usize {
        self.vats.len()
    }

    /// Runs `job` on vat `index % vat_count()`, inside its `LocalSet` (so the
    /// job may `spawn_local`).
    pub fn run_on_vat(&self, index: usize, job: impl FnOnce() + Send + 'static) {
        self.vats[index % self.vats.len()].run(Box::new(job));
    }

    /// The vat every [`Handle`](crate::Handle) made from this runtime keeps
    /// its client on (one thread, so handles can be combined: a tensor of
    /// one worker handle copied to another).
    pub(crate) fn handle_vat(&self) -> VatSender {
        VatSender {
            jobs: self.vats[0].jobs.clone(),
        }
    }

    /// What places virtual actors on this runtime's vats from elsewhere.
    pub(crate) fn placer(&self) -> Placer {
        Placer {
            vats: (0..self.vats.len())
                .map(|i| VatSender {
                    jobs: self.vats[i].jobs.clone(),
                })
                .collect(),
            next: self.next.clone(),
        }
    }

    /// Spawns the actor made by `make` on the next vat and connects to it
    /// over an in-memory pipe speaking the real two-party protocol.
    ///
    /// Returns at once: calls made before the actor exists are queued, and
    /// pipelined as usual. Must be called on a thread running a `LocalSet`
    /// (the client's side of the connection runs there): inside
    /// [`block_on`], [`run_local`] or a `#[capactor::test]`. From other
    /// async code, use a [`Handle`](crate::Handle).
    ///
    /// # Panics
    ///
    /// Panics, saying what to write instead, if the thread runs no
    /// `LocalSet`.
    pub fn spawn_virtual<C, S, F>(&self, make: F) -> Connection<C>
    where
        C: FromClientHook + FromServer<S>,
        S: 'static,
        F: FnOnce() -> S + Send + 'static,
    {
        self.spawn_virtual_with(make, &VirtualOptions::default())
    }

    /// [`Runtime::spawn_virtual`] with options: the link's latency and
    /// bandwidth, and how the actor is served (token, limits, call deadline,
    /// timeouts) and connected to, as over TCP.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use capactor::actors::Probe;
    /// use capactor::schema::probe_capnp::probe;
    /// use capactor::{Runtime, VirtualOptions};
    ///
    /// let rt = Runtime::builder().vats(1).build().unwrap();
    /// capactor::block_on(async {
    ///     let mut opts = VirtualOptions::default();
    ///     opts.link.latency = Duration::from_millis(1);
    ///     opts.serve.call_deadline = Some(Duration::from_secs(2));
    ///     let conn = rt.spawn_virtual_with::<probe::Client, _, _>(|| Probe::new("p"), &opts);
    ///     let mut req = conn.client().echo_request();
    ///     req.get().set_data(b"hi");
    ///     let reply = req.send().promise.await.unwrap();
    ///     assert_eq!(reply.get().unwrap().get_data().unwrap(), b"hi");
    /// });
    /// ```
    ///
    /// A panic in `make` is caught on the vat (which goes on serving its
    /// other actors): the connection then answers every call with an
    /// `internal error` whose id the log line of the panic carries.
    pub fn spawn_virtual_with<C, S, F>(&self, make: F, opts: &VirtualOptions) -> Connection<C>
    where
        C: FromClientHook + FromServer<S>,
        S: 'static,
        F: FnOnce() -> S + Send + 'static,
    {
        self.placer().spawn_virtual_with(make, opts)
    }

    /// [`Runtime::spawn_virtual_with`] counting the actor's calls in
    /// `calls`; `started` hears on the vat whether `make` returned (or the
    /// text of its panic).
    pub(crate) fn spawn_virtual_counted<C, S, F>(
        &self,
        make: F,
        opts: &VirtualOptions,
        calls: Arc<ActorCalls>,
        started: impl FnOnce(std::result::Result<(), String>) + Send + 'static,
    ) -> Connection<C>
    where
        C: FromClientHook + FromServer<S>,
        S: 'static,
        F: FnOnce() -> S + Send + 'static,
    {
        self.placer()
            .spawn_virtual_counted(make, opts, calls, started)
    }

    /// Serves actors made by `make` on a TCP listener bound to `addr`
    /// (`127.0.0.1:0` picks a free port; see [`Server::local_addr`](crate::Server::local_addr)).
    ///
    /// Each vat gets its own actor instance, made by calling `make` on that
    /// vat, and serves the connections the listener hands it round-robin.
    /// State the instances must share goes in `Arc`s captured by `make`.
    ///
    /// # Errors
    ///
    /// Fails if the address cannot be bound.
    pub async fn serve_tcp<C, S, F>(
        &self,
        addr: &str,
        make: F,
        opts: crate::ServeOptions,
    ) -> Result<crate::TcpServer>
    where
        C: FromClientHook + FromServer<S>,
        S: 'static,
        F: Fn() -> S + Send + Sync + 'static,
    {
        transport::tcp::serve::<C, S, F>(self, addr, make, opts).await
    }

    /// Serves actors made by `make` at `addr`: `tcp://host:port` or a bare
    /// `host:port`, `tls://host:port` (with [`ServeOptions::tls`](crate::ServeOptions::tls)),
    /// or `unix:/path` (see [`Runtime::serve_unix`]). The worker is served
    /// the same way whatever the transport; [`Server::address`](crate::Server::address)
    /// says where clients reach it.
    ///
    /// # Errors
    ///
    /// A malformed address, or one that cannot be served (see
    /// [`Runtime::serve_tcp`] and [`Runtime::serve_unix`]).
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
    ///     let server = rt.serve::<probe::Client, _, _>("unix:/tmp/p.sock", || Probe::new("p"), opts).await?;
    ///     println!("listening on {}", server.address());
    ///     Ok::<_, capactor::Error>(())
    /// }).unwrap();
    /// ```
    pub async fn serve<C, S, F>(
        &self,
        addr: impl crate::ToAddress,
        make: F,
        opts: crate::ServeOptions,
    ) -> Result<crate::Server<crate::Address>>
    where
        C: FromClientHook + FromServer<S>,
        S: 'static,
        F: Fn() -> S + Send + Sync + 'static,
    {
        let addr = addr.to_address()?;
        transport::endpoint::serve::<C, S, F>(self, &addr, make, opts).await
    }

    /// Serves actors made by `make` on a Unix domain socket at `path`, as
    /// [`Runtime::serve_tcp`] does on TCP. The socket file is created with
    /// mode [`UnixOptions::mode`](crate::UnixOptions::mode) (0600) and
    /// removed when the server stops; peers are checked against
    /// [`UnixOptions::peers`](crate::UnixOptions::peers) (the same user by
    /// default). Serving without a token needs
    /// [`ServeOptions::insecure_no_auth`](crate::ServeOptions::insecure_no_auth).
    ///
    /// # Errors
    ///
    /// A path longer than [`MAX_UNIX_PATH`](crate::MAX_UNIX_PATH) bytes, a
    /// directory that does not exist, a socket a live worker answers on (a
    /// stale one, left by a worker that died, is replaced), a file that is
    /// not a socket, or TLS asked for.
    #[cfg(unix)]
    pub async fn serve_unix<C, S, F>(
        &self,
        path: impl Into<std::path::PathBuf>,
        make: F,
        opts: crate::ServeOptions,
    ) -> Result<crate::UnixServer>
    where
        C: FromClientHook + FromServer<S>,
        S: 'static,
        F: Fn() -> S + Send + Sync + 'static,
    {
        transport::endpoint::serve_unix::<C, S, F>(self, path.into(), make, opts).await
    }

    /// Connects to a TCP actor; see [`connect_tcp`](crate::connect_tcp).
    pub async fn connect_tcp<C: FromClientHook>(
        &self,
        addr: &str,
        opts: &ConnectOptions,
    ) -> Result<Connection<C>> {
        transport::endpoint::connect_tcp(addr, opts).await
    }
}

impl transport::listener::Vats for Runtime {
    fn count(&self) -> usize {
        self.vat_count()
    }

    fn run(&self, index: usize, job: Box<dyn FnOnce() + Send>) {
        self.vats[index % self.vats.len()].run(job);
    }
}

impl Placer {
    /// [`Runtime::spawn_virtual_with`], from wherever this placer was taken.
    pub(crate) fn spawn_virtual_with<C, S, F>(
        &self,
        make: F,
        opts: &VirtualOptions,
    ) -> Connection<C>
    where
        C: FromClientHook + FromServer<S>,
        S: 'static,
        F: FnOnce() -> S + Send + 'static,
    {
        let calls = ActorCalls::new(opts.serve.call_deadline);
        self.spawn_virtual_counted(make, opts, calls, |_| {})
    }

    /// [`Runtime::spawn_virtual_counted`], from wherever this placer was
    /// taken.
    pub(crate) fn spawn_virtual_counted<C, S, F>(
        &self,
        make: F,
        opts: &VirtualOptions,
        calls: Arc<ActorCalls>,
        started: impl FnOnce(std::result::Result<(), String>) + Send + 'static,
    ) -> Connection<C>
    where
        C: FromClientHook + FromServer<S>,
        S: 'static,
        F: FnOnce() -> S + Send + 'static,
    {
        require_local_loop();
        let (conn, end) = transport::virtual_actor::open::<C>(opts);
        let vat = &self.vats[self.next.fetch_add(1, Ordering::Relaxed) % self.vats.len()];
        // A runtime being dropped refuses the job; the connection then fails
        // its calls with `disconnected`.
        let _ = vat.run(move || end.serve::<C, S, F>(make, calls, started));
        conn
    }
}

/// Creates a capability served by `server` on the current thread: the
/// *local* transport (no wire, direct calls, still guarded). Same as
/// [`crate::new_client`].
///
/// A local call is dispatched when its promise is first polled, not when
/// it is sent (capnp-rpc's rule, so the callee has no side effects before
/// the caller holds the promise): await or poll a local call for it to run.
/// Dropping its promise cancels it, as over the other transports.
pub fn spawn_local<C, S>(server: S) -> C
where
    C: FromServer<S>,
{
    crate::new_client(server)
}

/// Runs `fut` to completion on the current thread inside a `LocalSet`,
/// which is where capnp-rpc clients must live.
///
/// This is how synchronous code (a `main`, a plain `#[test]`, a thread of
/// your own) talks to workers. Tests can use [`#[capactor::test]`](crate::test)
/// instead, which wraps the body in it.
///
/// # Inside a tokio runtime
///
/// A thread can run only one tokio runtime at a time, so this cannot be
/// called from async code (a `#[tokio::main]` or `#[tokio::test]` body, an
/// axum handler). There:
///
/// - from any tokio code, multi-threaded or not, use a `Send` [`Handle`](crate::Handle)
///   (or [`WorkerHandle`](crate::actors::tensor::WorkerHandle) for a tensor
///   worker): it runs the client on a vat thread of a [`Runtime`] and hands
///   back owned results;
/// - on a current-thread runtime, the clients themselves can run inside
///   [`run_local`].
///
/// # Errors
///
/// Fails, without running `fut`, if called inside a tokio runtime, or if
/// the runtime cannot be built.
///
/// # Examples
///
/// ```
/// let two = capactor::block_on(async { 1 + 1 }).unwrap();
/// assert_eq!(two, 2);
/// ```
pub fn block_on<F: Future>(fut: F) -> Result<F::Output> {
    if tokio::runtime::Handle::try_current().is_ok() {
        return Err(Error::EventLoop(INSIDE_RUNTIME));
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let _local = LocalLoop::enter();
    Ok(tokio::task::LocalSet::new().block_on(&rt, fut))
}

/// Runs `fut` inside a fresh `LocalSet` on the current tokio runtime, so
/// capnp-rpc clients can be made and used in it: what a `#[tokio::test]`
/// or current-thread `#[tokio::main]` body wraps its capactor code in.
///
/// # Examples
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// use capactor::actors::tensor::{TensorWorker, Quota, Worker};
///
/// let rt = capactor::Runtime::builder().vats(1).build().unwrap();
/// let sum = capactor::run_local(async {
///     let w = Worker::spawn_virtual(&rt, || TensorWorker::new("w", Quota::new(1 << 20)))?;
///     w.arange(capactor::actors::tensor::DType::F64, 0.0, 4.0, 1.0).sum().item().await
/// })
/// .await
/// .unwrap();
/// assert_eq!(sum, 6.0);
/// # });
/// ```
pub async fn run_local<F: Future>(fut: F) -> F::Output {
    tokio::task::LocalSet::new()
        .run_until(async move {
            let _local = LocalLoop::enter();
            fut.await
        })
        .await
}

const INSIDE_RUNTIME: &str = "capactor::block_on was called inside a tokio runtime, which cannot \
     start another on the same thread: from async code, use a Send-able capactor::Handle \
     (or WorkerHandle) made from a capactor::Runtime, or wrap the body in \
     capactor::run_local(async { .. }).await on a current-thread runtime; \
     in tests, write #[capactor::test] instead of #[tokio::test]";

#[derive(Debug)]
struct Vat {
    jobs: mpsc::UnboundedSender<Job>,
    stop: CancellationToken,
    thread: Option<thread::JoinHandle<()>>,
}

impl Vat {
    fn start(index: usize) -> Result<Vat> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (jobs, mut rx) = mpsc::unbounded_channel::<Job>();
        let stop = CancellationToken::new();
        let stopped = stop.clone();
        let thread = thread::Builder::new()
            .name(format!("capactor-vat-{index}"))
            .spawn(move || {
                let local = tokio::task::LocalSet::new();
                let _local = LocalLoop::enter();
                local.block_on(&rt, async move {
                    // One waiter on the stop switch for the vat's life, not
                    // one per job (each is a lock and a list insert).
                    let stop = stopped.cancelled();
                    tokio::pin!(stop);
                    loop {
                        tokio::select! {
                            biased;
                            _ = &mut stop => break,
                            job = rx.recv() => match job {
                                // A job that panics (an actor's factory,
                                // say) must not end the vat's loop: every
                                // actor on the vat would go with it.
                                Some(job) => if let Err(panic) = catch_unwind(AssertUnwindSafe(job)) {
                                    let msg = crate::call::panic_message(&*panic);
                                    tracing::error!("a job on vat {index} panicked: {msg}");
                                },
                                None => break,
                            }
                        }
                    }
                });
                // Dropping the LocalSet drops every actor and connection on
                // this vat.
                drop(local);
            })?;
        Ok(Vat {
            jobs,
            stop,
            thread: Some(thread),
        })
    }

    fn run(&self, job: Job) {
        // The vat only stops when the runtime drops, so the send cannot fail
        // while `self` is alive.
        let _ = self.jobs.send(job);
    }
}

impl Drop for Vat {
    fn drop(&mut self) {
        self.stop.cancel();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
