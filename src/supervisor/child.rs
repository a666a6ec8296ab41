//! [`ChildSpec`]: what a supervisor starts, and how to start it again.

use std::any::Any;
use std::marker::PhantomData;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use capnp::capability::{FromClientHook, FromServer};
use capnp::private::capability::ClientHook;
use futures::future::LocalBoxFuture;
use futures::FutureExt;

use super::exit::{ChildExit, Fence};
use crate::call::{panic_message, ActorCalls, Guard};
use crate::stable::Alive;
use crate::transport::endpoint;
use crate::{
    Address, ConnectOptions, Connection, Error, Runtime, ServeOptions, Server, VirtualOptions,
};

/// When a supervisor restarts a child that ended (OTP's restart types).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Restart {
    /// Always restarted, however it ended. The default.
    #[default]
    Permanent,
    /// Restarted unless it ended normally ([`ChildExit::Normal`]).
    Transient,
    /// Never restarted: once it ends, its capability fails with
    /// `disconnected` saying how it ended.
    Never,
}

/// One running incarnation of a child, as its start made it.
pub(crate) struct Incarnation {
    /// The incarnation's capability.
    pub(crate) hook: Box<dyn ClientHook>,
    /// Whether it is still alive.
    pub(crate) alive: Alive,
    /// Whether it is reached over a connection.
    pub(crate) remote: bool,
    /// Resolves when it ends, with why.
    pub(crate) ended: LocalBoxFuture<'static, ChildExit>,
    /// What keeps it running (its connection, its server); dropped to stop it.
    pub(crate) keep: Box<dyn Any>,
}

/// Starts one incarnation, whose end `Fence` marks.
pub(crate) type StartFn = Rc<dyn Fn(Fence) -> LocalBoxFuture<'static, Result<Incarnation, String>>>;

/// How a [`Supervisor`](super::Supervisor) starts one actor, reached as the
/// interface `C`, and restarts it: local (on the supervisor's thread),
/// virtual (on a vat of a [`Runtime`], over an in-memory link) or behind a
/// TCP listener of a runtime in this process.
///
/// Every start calls the factory again, so each incarnation begins with
/// fresh state; state that must outlive a restart goes in what the factory
/// captures (the tensor worker's `WorkerState`, say, which holds its named
/// objects).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use capactor::schema::probe_capnp::probe;
/// use capactor::supervisor::{ChildSpec, Restart};
///
/// let spec = ChildSpec::<probe::Client>::local("probe", || capactor::actors::Probe::new("p"))
///     .restart(Restart::Transient)
///     .restart_on_panic(true)
///     .call_wait(Duration::from_secs(1));
/// # drop(spec);
/// ```
pub struct ChildSpec<C> {
    pub(crate) name: String,
    pub(crate) start: StartFn,
    pub(crate) restart: Restart,
    pub(crate) restart_on_panic: bool,
    pub(crate) call_wait: Duration,
    _client: PhantomData<fn() -> C>,
}

impl<C> std::fmt::Debug for ChildSpec<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChildSpec")
            .field("name", &self.name)
            .field("restart", &self.restart)
            .field("restart_on_panic", &self.restart_on_panic)
            .field("call_wait", &self.call_wait)
            .finish_non_exhaustive()
    }
}

impl<C: FromClientHook + 'static> ChildSpec<C> {
    fn new(name: impl Into<String>, start: StartFn) -> Self {
        ChildSpec {
            name: name.into(),
            start,
            restart: Restart::default(),
            restart_on_panic: false,
            call_wait: Duration::from_secs(5),
            _client: PhantomData,
        }
    }

    /// A child served on the supervisor's own thread (the local transport),
    /// made by `make`.
    pub fn local<S, F>(name: impl Into<String>, make: F) -> Self
    where
        C: FromServer<S>,
        S: 'static,
        F: Fn() -> S + 'static,
    {
        let make = Rc::new(make);
        let start: StartFn = Rc::new(move |fence: Fence| {
            let made = catch_unwind(AssertUnwindSafe(|| make()));
            async move {
                let server = made.map_err(|p| factory_panicked(panic_message(&*p)))?;
                let calls = ActorCalls::supervised(None, fence.clone());
                let client: C = Guard::new(calls, None, None, None).client_from_rc(Rc::new(server));
                let watched = fence.clone();
                Ok(Incarnation {
                    hook: client.into_client_hook(),
                    alive: Rc::new(move || !watched.is_exited()),
                    remote: false,
                    ended: async move { fence.wait().await }.boxed_local(),
                    keep: Box::new(()),
                })
            }
            .boxed_local()
        });
        Self::new(name, start)
    }

    /// A child on a vat of `rt`, reached over an in-memory link with
    /// `opts` (the same options as [`Runtime::spawn_virtual_with`]).
    pub fn virtual_on<S, F>(
        name: impl Into<String>,
        rt: Arc<Runtime>,
        make: F,
        opts: VirtualOptions,
    ) -> Self
    where
        C: FromServer<S>,
        S: 'static,
        F: Fn() -> S + Send + Sync + 'static,
    {
        let make = Arc::new(make);
        let start: StartFn = Rc::new(move |fence: Fence| {
            let calls = ActorCalls::supervised(opts.serve.call_deadline, fence.clone());
            let (report, heard) = futures::channel::oneshot::channel();
            let make = make.clone();
            let conn: Connection<C> = rt.spawn_virtual_counted(
                move || make(),
                &opts,
                calls,
                move |started| {
                    let _ = report.send(started);
                },
            );
            async move {
                match heard.await {
                    Ok(Ok(())) => {}
                    Ok(Err(msg)) => return Err(factory_panicked(msg)),
                    Err(_) => return Err("its runtime has stopped".into()),
                }
                Ok(connected(conn, fence, "its virtual link closed"))
            }
            .boxed_local()
        });
        Self::new(name, start)
    }

    /// A child served by a TCP listener of `rt` bound to `addr` (port 0
    /// takes a new free port at every start), with `serve`, and reached
    /// over TCP with `connect` (whose `reconnect` is ignored: the
    /// supervisor restarts the child instead). [`ChildSpec::serve`] with a
    /// `host:port` address.
    pub fn tcp<S, F>(
        name: impl Into<String>,
        rt: Arc<Runtime>,
        addr: impl Into<String>,
        make: F,
        serve: ServeOptions,
        connect: ConnectOptions,
    ) -> Self
    where
        C: FromServer<S>,
        S: 'static,
        F: Fn() -> S + Send + Sync + 'static,
    {
        Self::serve(name, rt, Address::Tcp(addr.into()), make, serve, connect)
    }

    /// A child served by `rt` at `address` (TCP, TLS or a Unix socket;
    /// see [`Runtime::serve`]) with `serve`, and reached there with
    /// `connect` (whose `reconnect` is ignored: the supervisor restarts the
    /// child instead). A TCP port 0 takes a new free port at every start;
    /// a Unix socket's file is removed when an incarnation ends and made
    /// again by the next.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use std::sync::Arc;
    /// use capactor::actors::Probe;
    /// use capactor::schema::probe_capnp::probe;
    /// use capactor::supervisor::ChildSpec;
    ///
    /// let rt = Arc::new(capactor::Runtime::new().unwrap());
    /// let spec: ChildSpec<probe::Client> = ChildSpec::serve(
    ///     "p",
    ///     rt,
    ///     "unix:/tmp/p.sock".parse().unwrap(),
    ///     || Probe::new("p"),
    ///     capactor::ServeOptions::insecure_loopback(),
    ///     capactor::ConnectOptions::default(),
    /// );
    /// ```
    pub fn serve<S, F>(
        name: impl Into<String>,
        rt: Arc<Runtime>,
        address: Address,
        make: F,
        serve: ServeOptions,
        connect: ConnectOptions,
    ) -> Self
    where
        C: FromServer<S>,
        S: 'static,
        F: Fn() -> S + Send + Sync + 'static,
    {
        let make = Arc::new(make);
        let mut connect = connect;
        connect.reconnect = None;
        let start: StartFn = Rc::new(move |fence: Fence| {
            let (rt, make, address) = (rt.clone(), make.clone(), address.clone());
            let (serve, connect) = (serve.clone(), connect.clone());
            async move {
                let server = bind::<C, S, F>(&rt, &address, make, serve, &fence).await?;
                let local = server.address().clone();
                let conn: Connection<C> = endpoint::connect(&local, &connect)
                    .await
                    .map_err(|e| format!("connecting to {local}: {e}"))?;
                let mut inc = connected(conn, fence, "its connection closed");
                inc.keep = Box::new((inc.keep, server));
                Ok(inc)
            }
            .boxed_local()
        });
        Self::new(name, start)
    }

    /// When the child is restarted. Default [`Restart::Permanent`].
    pub fn restart(mut self, restart: Restart) -> Self {
        self.restart = restart;
        self
    }

    /// Whether a panic in one of the actor's methods ends the incarnation,
    /// so that the next call reaches a fresh one made by the factory,
    /// rather than failing that one call and serving on with whatever state
    /// the panic left behind. Default `false`. (A worker process decides
    /// for itself; see [`ActorCalls::request_restart`] for an actor that
    /// asks at other times.)
    pub fn restart_on_panic(mut self, yes: bool) -> Self {
        self.restart_on_panic = yes;
        self
    }

    /// How long a call made while the child is restarting waits for the
    /// new incarnation before it fails with [`Error::Restarting`]; zero
    /// fails such calls at once. Default 5 s.
    pub fn call_wait(mut self, wait: Duration) -> Self {
        self.call_wait = wait;
        self
    }
}

fn factory_panicked(msg: impl Into<String>) -> String {
    let msg: String = msg.into();
    format!("the actor's factory panicked: {msg}")
}

/// The incarnation behind `conn`: it ends when the link closes or the
/// fence is set.
fn connected<C: FromClientHook + 'static>(
    conn: Connection<C>,
    fence: Fence,
    lost: &'static str,
) -> Incarnation {
    let link = conn.link().clone();
    let watched = (link.clone(), fence.clone());
    Incarnation {
        hook: conn.client().as_client_hook().add_ref(),
        alive: Rc::new(move || !watched.0.is_closed() && !watched.1.is_exited()),
        remote: true,
        ended: async move {
            tokio::select! {
                () = link.closed() => fence.exited().unwrap_or_else(|| ChildExit::Lost(lost.into())),
                exit = fence.wait() => exit,
            }
        }
        .boxed_local(),
        keep: Box::new(conn),
    }
}

/// Serves `make` at `address`, retrying for a second while a TCP port is
/// still held by the previous incarnation's listener.
async fn bind<C, S, F>(
    rt: &Runtime,
    address: &Address,
    make: Arc<F>,
    serve: ServeOptions,
    fence: &Fence,
) -> Result<Server<Address>, String>
where
    C: FromClientHook + FromServer<S>,
    S: 'static,
    F: Fn() -> S + Send + Sync + 'static,
{
    let mut tries = 0;
    loop {
        let calls = ActorCalls::supervised(serve.call_deadline, fence.clone());
        let m = make.clone();
        match endpoint::serve_counted::<C, S, _>(rt, address, move || m(), serve.clone(), calls)
            .await
        {
            Ok(server) => return Ok(server),
            Err(Error::Io(e)) if e.kind() == std::io::ErrorKind::AddrInUse && tries < 50 => {
                tries += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(Error::StartFailed(why)) => return Err(why),
            Err(e) => return Err(format!("serving on {address}: {e}")),
        }
    }
}
