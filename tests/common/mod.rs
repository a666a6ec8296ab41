//! The parity harness: one test body, run over the local, virtual and TCP
//! transports.

#![allow(dead_code, unreachable_pub)]

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use capactor::schema::probe_capnp::probe;
use capactor::{ConnectOptions, Connection, LinkConditions, Runtime, ServeOptions, TcpServer};

/// How a test reaches its actor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// Same thread, direct capability.
    Local,
    /// A vat thread, over an in-memory pipe.
    Virtual,
    /// A vat thread, over TCP on 127.0.0.1.
    Tcp,
}

pub const ALL: [Transport; 3] = [Transport::Local, Transport::Virtual, Transport::Tcp];
pub const REMOTE: [Transport; 2] = [Transport::Virtual, Transport::Tcp];

/// Runs `body` once per transport in `transports`, each in a fresh runtime.
pub fn each<F, Fut>(transports: &[Transport], body: F)
where
    F: Fn(Harness) -> Fut,
    Fut: Future<Output = ()>,
{
    for &t in transports {
        let rt = Arc::new(Runtime::builder().vats(2).build().unwrap());
        eprintln!("--- over {t:?}");
        capactor::block_on(body(Harness { transport: t, rt }));
    }
}

/// What a test body gets: the transport and a runtime to spawn on.
#[derive(Clone)]
pub struct Harness {
    pub transport: Transport,
    pub rt: Arc<Runtime>,
}

/// An actor reached over the harness's transport. Derefs to its client.
pub struct Spawned<C> {
    pub client: C,
    pub conn: Option<Connection<C>>,
    pub server: Option<TcpServer>,
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
        self.conn
            .as_ref()
            .expect("local actors have no link")
            .link()
            .cut();
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
            },
            Transport::Virtual => {
                let conn: Connection<C> = self.rt.spawn_virtual_with(make, &link, &connect);
                Spawned {
                    client: conn.client().clone(),
                    conn: Some(conn),
                    server: None,
                }
            }
            Transport::Tcp => {
                let server = self
                    .rt
                    .serve_tcp::<C, _, _>("127.0.0.1:0", make, serve)
                    .await
                    .unwrap();
                let addr = server.local_addr().to_string();
                let conn: Connection<C> = capactor::connect_tcp(&addr, &connect).await.unwrap();
                Spawned {
                    client: conn.client().clone(),
                    conn: Some(conn),
                    server: Some(server),
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
