//! The parity harness: one test body, run over the local, virtual, TCP and
//! Unix socket transports.

#![allow(dead_code, unreachable_pub)]

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use capactor::schema::probe_capnp::probe;
use capactor::{
    Address, ConnectOptions, Connection, LinkConditions, Runtime, ServeOptions, Server, TcpServer,
    VirtualOptions,
};
use tokio::io::AsyncReadExt;

/// How a test reaches its actor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// Same thread, direct capability.
    Local,
    /// A vat thread, over an in-memory pipe.
    Virtual,
    /// A vat thread, over TCP on 127.0.0.1.
    Tcp,
    /// A vat thread, over a Unix domain socket in a fresh directory.
    Unix,
}

pub const ALL: [Transport; 4] = [
    Transport::Local,
    Transport::Virtual,
    Transport::Tcp,
    Transport::Unix,
];
pub const REMOTE: [Transport; 3] = [Transport::Virtual, Transport::Tcp, Transport::Unix];

/// Runs `body` once per transport in `transports`, each in a fresh runtime.
pub fn each<F, Fut>(transports: &[Transport], body: F)
where
    F: Fn(Harness) -> Fut,
    Fut: Future<Output = ()>,
{
    each_on(transports, 2, body)
}

/// [`each`] with runtimes of `vats` vat threads (1 puts every actor a test
/// spawns on the same vat).
pub fn each_on<F, Fut>(transports: &[Transport], vats: usize, body: F)
where
    F: Fn(Harness) -> Fut,
    Fut: Future<Output = ()>,
{
    for &t in transports {
        let rt = Arc::new(Runtime::builder().vats(vats).build().unwrap());
        eprintln!("--- over {t:?}");
        let dir = Arc::new(tempfile::tempdir().unwrap());
        capactor::block_on(body(Harness {
            transport: t,
            rt,
            dir,
        }))
        .unwrap();
    }
}

/// What a test body gets: the transport and a runtime to spawn on.
#[derive(Clone)]
pub struct Harness {
    pub transport: Transport,
    pub rt: Arc<Runtime>,
    /// A directory of the run's own, for Unix sockets; removed after it.
    pub dir: Arc<tempfile::TempDir>,
}

/// An actor reached over the harness's transport. Derefs to its client.
pub struct Spawned<C> {
    pub client: C,
    pub conn: Option<Connection<C>>,
    pub server: Option<Server<Address>>,
    /// The directory of a Unix socket, removed after the server.
    pub dir: Option<tempfile::TempDir>,
}

impl<C> std::ops::Deref for Spawned<C> {
    type Target = C;
    fn deref(&self) -> &C {
        &self.client
    }
}

impl<C> Spawned<C> {
    /// Cuts the connection (remote transports only).
    pub fn cut(&self) {
        self.link().cut();
    }

    /// The connection's link (remote transports only).
    pub fn link(&self) -> &capactor::LinkHandle {
        self.conn
            .as_ref()
            .expect("local actors have no link")
            .link()
    }

    /// Takes the server out, e.g. to shut it down (TCP and Unix only).
    pub fn take_server(&mut self) -> Server<Address> {
        self.server
            .take()
            .expect("only TCP and Unix actors have a server")
    }
}

impl Harness {
    /// Spawns the actor made by `make` over this harness's transport.
    pub async fn spawn<C, S, F>(&self, make: F) -> Spawned<C>
    where
        C: capnp::capability::FromClientHook + capnp::capability::FromServer<S> + Clone,
        S: 'static,
        F: Fn() -> S + Send + Sync + 'static,
    {
        self.spawn_with(
            make,
            LinkConditions::default(),
            ServeOptions::default(),
            ConnectOptions::default(),
        )
        .await
    }

    /// [`Harness::spawn`] with link conditions (virtual only) and options.
    pub async fn spawn_with<C, S, F>(
        &self,
        make: F,
        link: LinkConditions,
        serve: ServeOptions,
        connect: ConnectOptions,
    ) -> Spawned<C>
    where
        C: capnp::capability::FromClientHook + capnp::capability::FromServer<S> + Clone,
        S: 'static,
        F: Fn() -> S + Send + Sync + 'static,
    {
        match self.transport {
            Transport::Local => Spawned {
                client: capactor::spawn_local(make()),
                conn: None,
                server: None,
                dir: None,
            },
            Transport::Virtual => {
                let mut opts = VirtualOptions::default();
                (opts.link, opts.serve, opts.connect) = (link, serve, connect);
                let conn: Connection<C> = self.rt.spawn_virtual_with(make, &opts);
                Spawned {
                    client: conn.client().clone(),
                    conn: Some(conn),
                    server: None,
                    dir: None,
                }
            }
            Transport::Tcp | Transport::Unix => {
                let mut serve = serve;
                // Tests serve on 127.0.0.1 or a socket of their own only:
                // no token is the loopback opt-in.
                serve.insecure_no_auth |= serve.token.is_none();
                let (addr, dir) = if self.transport == Transport::Unix {
                    let dir = tempfile::tempdir().unwrap();
                    let path = dir.path().join("actor.sock");
                    (format!("unix:{}", path.display()), Some(dir))
                } else {
                    ("127.0.0.1:0".to_owned(), None)
                };
                let server = within(SETUP_LIMIT, self.rt.serve::<C, _, _>(&addr, make, serve))
                    .await
                    .unwrap();
                let conn: Connection<C> =
                    within(SETUP_LIMIT, capactor::connect(server.address(), &connect))
                        .await
                        .unwrap();
                Spawned {
                    client: conn.client().clone(),
                    conn: Some(conn),
                    server: Some(server),
                    dir,
                }
            }
        }
    }

    /// A probe actor over this transport.
    pub async fn probe(&self) -> Spawned<probe::Client> {
        self.spawn(|| capactor::actors::Probe::new("probe")).await
    }
}

/// Fails the test if `fut` takes longer than `limit` (so a bug shows as a
/// failure, not a hung test run).
pub async fn within<T>(limit: Duration, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(limit, fut).await.expect("timed out")
}

/// Waits until `cond` holds, checking every millisecond; fails the test if
/// it still does not after `limit`.
pub async fn eventually(limit: Duration, mut cond: impl FnMut() -> bool) {
    within(limit, async {
        while !cond() {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await
}

/// How long binding a listener or connecting on loopback may take.
pub const SETUP_LIMIT: Duration = Duration::from_secs(20);

/// Serves probes called `name` over TCP on 127.0.0.1 with `opts`.
pub async fn serve_probe(rt: &Runtime, name: &'static str, mut opts: ServeOptions) -> TcpServer {
    // Tests serve on 127.0.0.1 only: no token is the loopback opt-in.
    opts.insecure_no_auth |= opts.token.is_none();
    let serving = rt.serve_tcp::<probe::Client, _, _>(
        "127.0.0.1:0",
        move || capactor::actors::Probe::new(name),
        opts,
    );
    within(SETUP_LIMIT, serving).await.unwrap()
}

/// Connects a probe client to `server` with `opts`.
pub async fn connect_probe(server: &TcpServer, opts: &ConnectOptions) -> Connection<probe::Client> {
    let addr = server.local_addr().to_string();
    within(SETUP_LIMIT, capactor::connect_tcp(&addr, opts))
        .await
        .unwrap()
}

/// A raw TCP connection to `server`, for speaking bytes rather than RPC.
pub async fn connect_raw(server: &TcpServer) -> tokio::net::TcpStream {
    within(
        SETUP_LIMIT,
        tokio::net::TcpStream::connect(server.local_addr()),
    )
    .await
    .unwrap()
}

/// Pings `p` and fails the test unless it answers within `limit`.
pub async fn ping(p: &probe::Client, limit: Duration) {
    let base: capactor::schema::actor_capnp::actor::Client = capactor::cast(p);
    within(limit, base.ping_request().send().promise)
        .await
        .expect("ping failed");
}

/// A `sleep(millis)` call on `p`, sent now.
pub fn sleep_call(
    p: &probe::Client,
    millis: u32,
) -> impl Future<Output = capnp::Result<()>> + 'static {
    let mut req = p.sleep_request();
    req.get().set_millis(millis);
    let promise = req.send().promise;
    async move { promise.await.map(drop) }
}

/// Reads from a raw socket, discarding what arrives, until the peer closes
/// it (end of stream or a reset); fails the test if that takes longer than
/// `limit`.
pub async fn closed_by_peer(stream: &mut tokio::net::TcpStream, limit: Duration) {
    within(limit, async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
}

/// Asserts that `err` says the peer is gone.
#[track_caller]
pub fn assert_disconnected(err: &capnp::Error) {
    assert_eq!(err.kind, capnp::ErrorKind::Disconnected, "{err}");
}

/// Waits (bounded by `within`) until `cond` holds, yielding to the runtime
/// in between: for effects that arrive asynchronously, such as a Release
/// message freeing an object.
pub async fn until(mut cond: impl FnMut() -> bool) {
    within(Duration::from_secs(20), async {
        while !cond() {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await
}
