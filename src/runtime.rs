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
use crate::transport::{
    self, memory, ActorMint, Arrival, ConnectOptions, Connection, GatePolicy, Peer, ServeSite,
    VirtualOptions,
};
use crate::Result;

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
    next: AtomicUsize,
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
            next: AtomicUsize::new(0),
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

    fn next_vat(&self) -> usize {
        self.next.fetch_add(1, Ordering::Relaxed)
    }

    /// Spawns the actor made by `make` on the next vat and connects to it
    /// over an in-memory pipe speaking the real two-party protocol.
    ///
    /// Returns at once: calls made before the actor exists are queued, and
    /// pipelined as usual. Must be called on a thread running a `LocalSet`
    /// (the client's side of the connection runs there).
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
        let calls = ActorCalls::new(opts.serve.call_deadline);
        self.spawn_virtual_counted(make, opts, calls, |_| {})
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
        let (ours, theirs) = memory::pipe(&opts.link);
        let conn = transport::connect_stream::<C, _>(ours, &opts.connect);
        let cut = conn.link().cut.clone();
        let serve = opts.serve.clone();
        self.run_on_vat(self.next_vat(), move || {
            // The factory runs on the vat's own thread: a panic in it must
            // not unwind through the vat loop, which would take every actor
            // on this vat down with it.
            let server = match catch_unwind(AssertUnwindSafe(make)) {
                Ok(server) => server,
                Err(panic) => {
                    let msg = crate::call::panic_message(&*panic);
                    let err = crate::Error::internal(format_args!("actor factory panicked: {msg}"));
                    started(Err(msg));
                    let broken = capnp_rpc::new_broken_cap(err.into());
                    tokio::task::spawn_local(async move {
                        transport::serve_bootstrap(theirs, broken, &serve.limits, None, cut, None)
                            .await;
                    });
                    return;
                }
            };
            started(Ok(()));
            let policy = Arc::new(GatePolicy::new(serve.gate_failures_per_second));
            let site = ServeSite::new(ActorMint::new::<C, S>(server), calls, &serve, policy);
            // A pipe has no address: its attempts count under one label.
            let arrival = Arrival::now(Peer::Label("virtual"), None);
            tokio::task::spawn_local(async move {
                transport::serve_stream(theirs, &site, cut, arrival).await;
            });
        });
        conn
    }

    /// Serves actors made by `make` on a TCP listener bound to `addr`
    /// (`127.0.0.1:0` picks a free port; see [`TcpServer::local_addr`](crate::TcpServer::local_addr)).
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

    /// Connects to a TCP actor; see [`connect_tcp`](crate::connect_tcp).
    pub async fn connect_tcp<C: FromClientHook>(
        &self,
        addr: &str,
        opts: &ConnectOptions,
    ) -> Result<Connection<C>> {
        transport::tcp::connect(addr, opts).await
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
/// # Panics
///
/// Panics if called from within a tokio runtime, or if the runtime cannot
/// be built.
///
/// # Examples
///
/// ```
/// let two = capactor::block_on(async { 1 + 1 });
/// assert_eq!(two, 2);
/// ```
pub fn block_on<F: Future>(fut: F) -> F::Output {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("building a current-thread tokio runtime");
    tokio::task::LocalSet::new().block_on(&rt, fut)
}

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
                local.block_on(&rt, async move {
                    loop {
                        tokio::select! {
                            _ = stopped.cancelled() => break,
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
