//! Calling a registry: register and keep a lease, status, watch, lookup,
//! route, tokens.

use std::rc::Rc;
use std::time::Duration;

use tokio::sync::mpsc;

use super::types::{read_event, read_status, read_worker, write_health, write_labels};
use super::{Event, Health, IssuedToken, PublicKey, Status, WorkerInfo};
use crate::actor::Interface;
use crate::schema::actor_capnp::actor;
use crate::schema::registry_capnp::{lease, observer, registry, subscription};
use crate::{Error, Result};

/// What a worker registers as.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Registration {
    /// Its unique name.
    pub name: String,
    /// Its kind (`tensor-worker`, ...): what `route` selects on.
    pub kind: String,
    /// Where clients reach it (`host:port`).
    pub address: String,
    /// Labels `lookup` selects on.
    pub labels: Vec<(String, String)>,
    /// The interfaces it implements.
    pub interfaces: Vec<Interface>,
}

impl Registration {
    /// A worker called `name` of `kind` reached at `address`.
    ///
    /// # Examples
    ///
    /// ```
    /// let r = capactor::fleet::Registration::new("w1", "tensor-worker", "127.0.0.1:7001");
    /// assert!(r.labels.is_empty());
    /// ```
    pub fn new(
        name: impl Into<String>,
        kind: impl Into<String>,
        address: impl Into<String>,
    ) -> Self {
        Registration {
            name: name.into(),
            kind: kind.into(),
            address: address.into(),
            labels: Vec::new(),
            interfaces: Vec::new(),
        }
    }
}

/// A worker's lease: renew it with [`Lease::report`] at least every
/// [`Lease::ttl`]; dropping it deregisters the worker at once.
pub struct Lease {
    client: lease::Client,
    ttl: Duration,
    every: Duration,
}

impl Lease {
    /// The registry's TTL.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// How often the registry wants a report.
    pub fn report_interval(&self) -> Duration {
        self.every
    }

    /// Sends a health report (a streamed call: it returns once flow control
    /// lets it go; an error of an earlier report may surface here).
    ///
    /// # Errors
    ///
    /// The registry removed the worker (its lease expired), or the
    /// connection is gone: register again.
    pub async fn report(&self, health: &Health) -> Result<()> {
        let mut req = self.client.report_request();
        write_health(health, req.get().init_health());
        req.send().await?;
        Ok(())
    }
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lease")
            .field("ttl", &self.ttl)
            .field("report_interval", &self.every)
            .finish_non_exhaustive()
    }
}

/// A registry, seen from a client.
///
/// # Examples
///
/// ```
/// use capactor::actors::registry::{Registry, RegistryOptions, RegistryState};
/// use capactor::fleet::{Health, RegistryClient, Registration};
///
/// capactor::block_on(async {
///     let state = RegistryState::new(RegistryOptions::default());
///     let registry = RegistryClient::new(capactor::spawn_local(Registry::new("r", state)));
///     let lease = registry
///         .register(&Registration::new("w1", "tensor-worker", "127.0.0.1:7001"), None)
///         .await?;
///     lease.report(&Health::default()).await?;
///     let status = registry.status().await?;
///     assert_eq!((status.totals.workers, status.workers[0].name.as_str()), (1, "w1"));
///     Ok::<_, capactor::Error>(())
/// }).unwrap();
/// ```
#[derive(Clone)]
pub struct RegistryClient {
    client: registry::Client,
    /// The connection, when this client owns it: closed with the last clone.
    conn: Option<Rc<crate::Connection<registry::Client>>>,
}

impl std::fmt::Debug for RegistryClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryClient").finish_non_exhaustive()
    }
}

impl RegistryClient {
    /// Wraps a registry's capability (local, virtual or TCP).
    pub fn new(client: registry::Client) -> Self {
        RegistryClient { client, conn: None }
    }

    /// Takes a connection to a registry: it closes when the last clone of
    /// this client goes.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use capactor::fleet::RegistryClient;
    ///
    /// capactor::block_on(async {
    ///     let opts = capactor::ConnectOptions::default();
    ///     let registry = RegistryClient::from_connection(
    ///         capactor::connect_tcp("127.0.0.1:7000", &opts).await?,
    ///     );
    ///     println!("{} workers", registry.status().await?.totals.workers);
    ///     Ok::<_, capactor::Error>(())
    /// }).unwrap();
    /// ```
    pub fn from_connection(conn: crate::Connection<registry::Client>) -> Self {
        RegistryClient {
            client: conn.client().clone(),
            conn: Some(Rc::new(conn)),
        }
    }

    /// The connection's link, if this client owns its connection.
    pub fn link(&self) -> Option<&crate::LinkHandle> {
        self.conn.as_ref().map(|c| c.link())
    }

    /// The capability.
    pub fn client(&self) -> &registry::Client {
        &self.client
    }

    /// Registers a worker, handing clients `actor` if given.
    ///
    /// # Errors
    ///
    /// A name already registered with a live lease, a malformed address or
    /// labels, a limit of the registry.
    pub async fn register(&self, r: &Registration, actor: Option<actor::Client>) -> Result<Lease> {
        let mut req = self.client.register_request();
        {
            let mut p = req.get();
            p.set_name(&r.name);
            p.set_kind(&r.kind);
            p.set_address(&r.address);
            write_labels(&r.labels, p.reborrow().init_labels(r.labels.len() as u32));
            let mut ifs = p.reborrow().init_interfaces(r.interfaces.len() as u32);
            for (i, iface) in r.interfaces.iter().enumerate() {
                let mut b = ifs.reborrow().get(i as u32);
                b.set_id(iface.id);
                b.set_name(iface.name);
            }
            if let Some(actor) = actor {
                p.set_actor(actor);
            }
        }
        let reply = req.send().promise.await?;
        let r = reply.get()?;
        Ok(Lease {
            client: r.get_lease()?,
            ttl: Duration::from_millis(r.get_ttl_millis()),
            every: Duration::from_millis(r.get_report_millis()),
        })
    }

    /// Every worker and the totals.
    ///
    /// # Errors
    ///
    /// The registry cannot be reached.
    pub async fn status(&self) -> Result<Status> {
        let reply = self.client.status_request().send().promise.await?;
        read_status(reply.get()?.get_status()?)
    }

    /// The least loaded healthy worker of `kind` with every label given,
    /// and its capability if it registered one.
    ///
    /// # Errors
    ///
    /// There is no such worker.
    pub async fn lookup(
        &self,
        kind: &str,
        labels: &[(String, String)],
    ) -> Result<(WorkerInfo, Option<actor::Client>)> {
        let mut req = self.client.lookup_request();
        req.get().set_kind(kind);
        write_labels(labels, req.get().init_labels(labels.len() as u32));
        let reply = req.send().promise.await?;
        let r = reply.get()?;
        let actor = r.has_actor().then(|| r.get_actor()).transpose()?;
        Ok((read_worker(r.get_worker()?)?, actor))
    }

    /// [`RegistryClient::lookup`] without labels, spreading picks.
    ///
    /// # Errors
    ///
    /// There is no healthy worker of `kind`.
    pub async fn route(&self, kind: &str) -> Result<(WorkerInfo, Option<actor::Client>)> {
        let mut req = self.client.route_request();
        req.get().set_kind(kind);
        let reply = req.send().promise.await?;
        let r = reply.get()?;
        let actor = r.has_actor().then(|| r.get_actor()).transpose()?;
        Ok((read_worker(r.get_worker()?)?, actor))
    }

    /// The key the registry signs tokens with.
    ///
    /// # Errors
    ///
    /// The registry signs none.
    pub async fn public_key(&self) -> Result<PublicKey> {
        let reply = self.client.public_key_request().send().promise.await?;
        let r = reply.get()?;
        let algorithm = r.get_algorithm()?.to_str()?;
        if algorithm != super::ALGORITHM {
            return Err(Error::invalid(format!(
                "the registry signs with {algorithm:?}, not {}",
                super::ALGORITHM
            )));
        }
        PublicKey::from_bytes(r.get_key()?)
    }

    /// Asks the registry for a token for `subject`, good for `ttl` at the
    /// workers in `audience` (all if empty). Needs the registry's admin
    /// token.
    ///
    /// # Errors
    ///
    /// `credential rejected` without the right admin token; a ttl over the
    /// registry's limit.
    pub async fn issue_token(
        &self,
        admin_token: &[u8],
        subject: &str,
        ttl: Duration,
        audience: &[String],
    ) -> Result<IssuedToken> {
        let mut req = self.client.issue_token_request();
        {
            let mut p = req.get();
            p.set_admin_token(admin_token);
            p.set_subject(subject);
            p.set_ttl_seconds(ttl.as_secs());
            let mut a = p.init_audience(audience.len() as u32);
            for (i, name) in audience.iter().enumerate() {
                a.set(i as u32, name);
            }
        }
        let reply = req.send().promise.await?;
        let r = reply.get()?;
        Ok(IssuedToken {
            token: r.get_token()?.to_str()?.to_string(),
            expires_at: std::time::UNIX_EPOCH + Duration::from_millis(r.get_expires_at_millis()),
        })
    }

    /// Watches membership: the first event is the current membership.
    /// Events wait in a queue of `backlog` here; past that the observer
    /// stops answering and the registry, past its own backlog, drops the
    /// watch.
    ///
    /// # Errors
    ///
    /// The registry refused the watch (its watcher limit).
    pub async fn watch(&self, backlog: usize) -> Result<Watch> {
        let (tx, rx) = mpsc::channel(backlog.max(1));
        let mut req = self.client.watch_request();
        req.get().set_observer(capnp_rpc::new_client(Observer {
            events: Rc::new(tx),
        }));
        let reply = req.send().promise.await?;
        Ok(Watch {
            events: rx,
            _subscription: reply.get()?.get_subscription()?,
        })
    }
}

/// A watch of the registry's membership; dropping it ends the watch.
pub struct Watch {
    events: mpsc::Receiver<Event>,
    _subscription: subscription::Client,
}

impl std::fmt::Debug for Watch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watch").finish_non_exhaustive()
    }
}

impl Watch {
    /// The next event; `None` once the watch has ended (the registry
    /// dropped it, or the connection is gone).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe.
    pub async fn next(&mut self) -> Option<Event> {
        self.events.recv().await
    }

    /// An event already received, if there is one.
    pub fn try_next(&mut self) -> Option<Event> {
        self.events.try_recv().ok()
    }
}

struct Observer {
    events: Rc<mpsc::Sender<Event>>,
}

impl observer::Server for Observer {
    async fn changed(
        self: Rc<Self>,
        params: observer::ChangedParams,
        _: observer::ChangedResults,
    ) -> Result<(), capnp::Error> {
        let event = read_event(params.get()?.get_event()?)?;
        self.events
            .send(event)
            .await
            .map_err(|_| Error::invalid("the watch has ended"))?;
        Ok(())
    }
}
