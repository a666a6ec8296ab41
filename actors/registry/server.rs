//! The `Registry` actor of `schema/registry.capnp`, its `Lease` and
//! `Subscription` capabilities.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::table::{Registration, Table};
use crate::actor::{ActorMeta, Interface};
use crate::fleet::types::{
    read_health, read_interfaces, read_labels, write_event, write_status, write_worker,
};
use crate::fleet::{Status, TokenSigner, ALGORITHM};
use crate::schema::actor_capnp::actor;
use crate::schema::registry_capnp::{lease, registry, subscription};
use crate::Error;

/// The `Registry` interface.
pub const REGISTRY: Interface = Interface::of::<registry::Client>("Registry");

/// How a registry treats its workers. Every limit is a number here (and a
/// flag of `capactor registry`).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
///
/// let mut opts = capactor::actors::registry::RegistryOptions::default();
/// opts.ttl = Duration::from_millis(300);
/// assert_eq!(opts.report_interval, Duration::from_secs(1));
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct RegistryOptions {
    /// A worker whose last report is older than this is unhealthy.
    /// Default 5 s.
    pub ttl: Duration,
    /// How long an unhealthy worker stays listed before it is removed.
    /// Default 30 s.
    pub grace: Duration,
    /// How often workers are asked to report (told them at registration).
    /// Default 1 s.
    pub report_interval: Duration,
    /// Workers registered at once. Default 10,000.
    pub max_workers: usize,
    /// Labels per worker. Default 32.
    pub max_labels: usize,
    /// Watches at once. Default 1,024.
    pub max_watchers: usize,
    /// Events queued for one watcher; past it the watcher is dropped.
    /// Default 1,024.
    pub watch_backlog: usize,
    /// The longest validity `issueToken` grants. Default 24 h.
    pub max_token_ttl: Duration,
}

impl Default for RegistryOptions {
    fn default() -> Self {
        RegistryOptions {
            ttl: Duration::from_secs(5),
            grace: Duration::from_secs(30),
            report_interval: Duration::from_secs(1),
            max_workers: 10_000,
            max_labels: 32,
            max_watchers: 1024,
            watch_backlog: 1024,
            max_token_ttl: Duration::from_secs(24 * 3600),
        }
    }
}

/// What every instance of one registry shares (one per vat, or one per
/// virtual connection): the membership table, the signing key, the admin
/// token. `Send + Sync`; the factory of `serve_tcp`/`spawn_virtual`
/// captures it in an `Arc`.
///
/// # Examples
///
/// ```
/// use capactor::actors::registry::{Registry, RegistryOptions, RegistryState};
/// use capactor::schema::registry_capnp::registry;
///
/// let rt = capactor::Runtime::new().unwrap();
/// capactor::block_on(async {
///     let state = RegistryState::new(RegistryOptions::default());
///     let s = state.clone();
///     let conn: capactor::Connection<registry::Client> =
///         rt.spawn_virtual(move || Registry::new("registry", s.clone()));
///     let reply = conn.status_request().send().promise.await.unwrap();
///     assert_eq!(reply.get().unwrap().get_status().unwrap().get_totals().unwrap().get_workers(), 0);
///     assert_eq!(state.status().totals.workers, 0);
/// }).unwrap();
/// ```
#[derive(Debug)]
pub struct RegistryState {
    table: Mutex<Table>,
    signer: Option<TokenSigner>,
    admin_token: Option<Vec<u8>>,
    sweeping: AtomicBool,
}

impl RegistryState {
    /// A registry with no signing key: it issues no tokens.
    pub fn new(options: RegistryOptions) -> Arc<Self> {
        Self::with_signer(options, None, None)
    }

    /// A registry that signs tokens with `signer` for callers presenting
    /// `admin_token` (no one, without one).
    pub fn with_signer(
        options: RegistryOptions,
        signer: Option<TokenSigner>,
        admin_token: Option<Vec<u8>>,
    ) -> Arc<Self> {
        Arc::new(RegistryState {
            table: Mutex::new(Table::new(options)),
            signer,
            admin_token,
            sweeping: AtomicBool::new(false),
        })
    }

    fn table(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Every worker with its latest health, and totals (what
    /// `Registry.status` answers).
    pub fn status(&self) -> Status {
        self.table().status(Instant::now())
    }

    /// Workers registered now.
    pub fn len(&self) -> usize {
        self.table().len()
    }

    /// True when no worker is registered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The key tokens are signed with, if there is one.
    pub fn signer(&self) -> Option<&TokenSigner> {
        self.signer.as_ref()
    }

    /// Starts the task that expires silent workers, once per registry, on
    /// the current vat.
    fn start_sweeper(self: &Arc<Self>) {
        if self.sweeping.swap(true, Ordering::AcqRel) {
            return;
        }
        let weak: Weak<RegistryState> = Arc::downgrade(self);
        let interval = self.table().sweep_interval();
        tokio::task::spawn_local(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(state) = weak.upgrade() else { return };
                state.table().sweep(Instant::now());
            }
        });
    }
}

thread_local! {
    /// The actor capabilities workers registered on this vat, by entry id:
    /// capabilities cannot leave their vat, so `lookup`/`route` hand one
    /// out only when asked on the vat it was registered on (always, for a
    /// registry served on one vat, as `capactor registry` is).
    static ACTORS: RefCell<HashMap<u64, actor::Client>> = RefCell::new(HashMap::new());
}

/// A registry: serves `Registry` over a [`RegistryState`].
///
/// Must be created on a vat (a `LocalSet`), as the factories of
/// `serve_tcp` and `spawn_virtual` are: the first instance starts the
/// registry's expiry timer there.
#[derive(Debug)]
pub struct Registry {
    meta: ActorMeta,
    state: Arc<RegistryState>,
}

impl Registry {
    /// An instance called `name` of the registry `state`.
    pub fn new(name: impl Into<String>, state: Arc<RegistryState>) -> Self {
        state.start_sweeper();
        Registry {
            meta: ActorMeta::new(name, "registry", &[REGISTRY]),
            state,
        }
    }

    fn workers(&self) -> u64 {
        self.state.len() as u64
    }
}

crate::serve_actor_via!(Registry, meta, |r: &Registry| (r.workers(), 0));

/// Names and kinds are what a person types: 1 to `max` bytes, no control
/// characters.
fn check_text(what: &str, text: &str, max: usize) -> Result<(), Error> {
    if text.is_empty() || text.len() > max || text.chars().any(char::is_control) {
        return Err(Error::invalid(format!(
            "a worker's {what} must be 1 to {max} bytes without control characters"
        )));
    }
    Ok(())
}

/// `host:port` (an IPv6 host in brackets, `tcp://` or `tls://` before it
/// if need be), `unix:` and an absolute socket path, or `in-process:` and
/// a name.
pub(crate) fn check_address(address: &str) -> Result<(), Error> {
    if let Some(rest) = address.strip_prefix(crate::IN_PROCESS) {
        return check_text("in-process address", rest, 255);
    }
    if address.starts_with("unix:") {
        let absolute = match address.parse::<crate::Address>() {
            Ok(crate::Address::Unix(path)) => path.is_absolute(),
            _ => false,
        };
        if absolute && !address.chars().any(char::is_control) {
            return Ok(());
        }
        return Err(Error::invalid(format!(
            "malformed worker address {address:?}: expected unix: and an absolute path \
             of at most {} bytes",
            crate::MAX_UNIX_PATH
        )));
    }
    let bad = || {
        Error::invalid(format!(
            "malformed worker address {address:?}: expected host:port (IPv6 in brackets)"
        ))
    };
    let host_port = ["tcp://", "tls://"]
        .iter()
        .find_map(|scheme| address.strip_prefix(scheme))
        .unwrap_or(address);
    let (host, port) = host_port.rsplit_once(':').ok_or_else(bad)?;
    match port.parse::<u16>() {
        Ok(p) if p != 0 => {}
        _ => return Err(bad()),
    }
    let host_ok = if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        v6.parse::<std::net::Ipv6Addr>().is_ok()
    } else {
        !host.is_empty()
            && host.len() <= 253
            && host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == '_')
    };
    if host_ok {
        Ok(())
    } else {
        Err(bad())
    }
}

fn check_labels(labels: &[(String, String)], max: usize) -> Result<(), Error> {
    if labels.len() > max {
        return Err(Error::limit("labels per worker", labels.len(), max));
    }
    for (i, (k, v)) in labels.iter().enumerate() {
        let key_ok = !k.is_empty()
            && k.len() <= 63
            && k.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/'));
        if !key_ok {
            return Err(Error::invalid(format!(
                "malformed label key {k:?}: 1 to 63 of a-z A-Z 0-9 . _ - /"
            )));
        }
        if v.len() > 255 || v.chars().any(char::is_control) {
            return Err(Error::invalid(format!(
                "malformed value of label {k:?}: at most 255 bytes without control characters"
            )));
        }
        if labels[..i].iter().any(|(k2, _)| k2 == k) {
            return Err(Error::invalid(format!("label {k:?} is given twice")));
        }
    }
    Ok(())
}

/// Compares without an early exit.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl registry::Server for Registry {
    async fn register(
        self: Rc<Self>,
        params: registry::RegisterParams,
        mut results: registry::RegisterResults,
    ) -> Result<(), capnp::Error> {
        let p = params.get()?;
        let name = p.get_name()?.to_str()?.to_string();
        let kind = p.get_kind()?.to_str()?.to_string();
        let address = p.get_address()?.to_str()?.to_string();
        check_text("name", &name, 255)?;
        check_text("kind", &kind, 63)?;
        check_address(&address)?;
        let labels = read_labels(p.get_labels()?)?;
        let interfaces = read_interfaces(p.get_interfaces()?)?;
        let (max_labels, ttl, every) = {
            let t = self.state.table();
            let o = t.options();
            (o.max_labels, o.ttl, o.report_interval)
        };
        check_labels(&labels, max_labels)?;
        if interfaces.len() > 64 {
            return Err(Error::limit("interfaces per worker", interfaces.len(), 64).into());
        }
        let actor = p.has_actor().then(|| p.get_actor()).transpose()?;
        let registration = Registration {
            name: name.clone(),
            kind,
            address,
            labels,
            interfaces,
        };
        let id = self.state.table().register(registration, Instant::now())?;
        if let Some(actor) = actor {
            ACTORS.with(|a| a.borrow_mut().insert(id, actor));
        }
        let lease = LeaseServer {
            state: self.state.clone(),
            name,
            id,
        };
        let mut r = results.get();
        r.set_lease(capnp_rpc::new_client(lease));
        r.set_ttl_millis(millis(ttl));
        r.set_report_millis(millis(every));
        Ok(())
    }

    async fn status(
        self: Rc<Self>,
        _: registry::StatusParams,
        mut results: registry::StatusResults,
    ) -> Result<(), capnp::Error> {
        let status = self.state.status();
        write_status(&status, results.get().init_status());
        Ok(())
    }

    async fn watch(
        self: Rc<Self>,
        params: registry::WatchParams,
        mut results: registry::WatchResults,
    ) -> Result<(), capnp::Error> {
        let observer = params.get()?.get_observer()?;
        let (id, mut events, dropped) = self.state.table().watch(Instant::now())?;
        let ended = CancellationToken::new();
        let state = self.state.clone();
        let stop = ended.clone();
        tokio::task::spawn_local(async move {
            // One call at a time, in order: the observer sees events as the
            // registry emitted them.
            loop {
                let event = tokio::select! {
                    () = stop.cancelled() => break,
                    () = dropped.cancelled() => break,
                    e = events.recv() => match e { Some(e) => e, None => break },
                };
                let mut req = observer.changed_request();
                write_event(&event, req.get().init_event());
                let call = req.send().promise;
                tokio::select! {
                    () = stop.cancelled() => break,
                    () = dropped.cancelled() => break,
                    r = call => if r.is_err() { break },
                }
            }
            state.table().unwatch(id);
        });
        results
            .get()
            .set_subscription(capnp_rpc::new_client(SubscriptionServer(ended)));
        Ok(())
    }

    async fn lookup(
        self: Rc<Self>,
        params: registry::LookupParams,
        mut results: registry::LookupResults,
    ) -> Result<(), capnp::Error> {
        let p = params.get()?;
        let kind = p.get_kind()?.to_str()?.to_string();
        let labels = read_labels(p.get_labels()?)?;
        let (info, id) = self.state.table().pick(&kind, &labels, Instant::now())?;
        let mut r = results.get();
        write_worker(&info, r.reborrow().init_worker());
        if let Some(actor) = ACTORS.with(|a| a.borrow().get(&id).cloned()) {
            r.set_actor(actor);
        }
        Ok(())
    }

    async fn route(
        self: Rc<Self>,
        params: registry::RouteParams,
        mut results: registry::RouteResults,
    ) -> Result<(), capnp::Error> {
        let kind = params.get()?.get_kind()?.to_str()?.to_string();
        let (info, id) = self.state.table().pick(&kind, &[], Instant::now())?;
        let mut r = results.get();
        write_worker(&info, r.reborrow().init_worker());
        if let Some(actor) = ACTORS.with(|a| a.borrow().get(&id).cloned()) {
            r.set_actor(actor);
        }
        Ok(())
    }

    async fn public_key(
        self: Rc<Self>,
        _: registry::PublicKeyParams,
        mut results: registry::PublicKeyResults,
    ) -> Result<(), capnp::Error> {
        let signer = self.state.signer.as_ref().ok_or_else(|| {
            Error::invalid("this registry signs no tokens (start it with a signing key)")
        })?;
        let mut r = results.get();
        r.set_algorithm(ALGORITHM);
        r.set_key(signer.public_key().as_bytes());
        Ok(())
    }

    async fn issue_token(
        self: Rc<Self>,
        params: registry::IssueTokenParams,
        mut results: registry::IssueTokenResults,
    ) -> Result<(), capnp::Error> {
        let p = params.get()?;
        let (Some(signer), Some(admin)) = (&self.state.signer, &self.state.admin_token) else {
            return Err(Error::invalid("this registry issues no tokens").into());
        };
        if !constant_time_eq(p.get_admin_token()?, admin) {
            tracing::warn!("issueToken refused: wrong admin token");
            return Err(Error::Unauthorized.into());
        }
        let max = self.state.table().options().max_token_ttl;
        let ttl = p.get_ttl_seconds();
        if ttl == 0 {
            return Err(Error::invalid("a token's ttl must be at least 1 second").into());
        }
        if ttl > max.as_secs() {
            return Err(Error::limit("token ttl (s)", ttl, max.as_secs()).into());
        }
        let audience = p
            .get_audience()?
            .iter()
            .map(|a| Ok(a?.to_str()?.to_string()))
            .collect::<Result<Vec<_>, Error>>()?;
        if audience.len() > 1024 {
            return Err(Error::limit("token audience", audience.len(), 1024).into());
        }
        let subject = p.get_subject()?.to_str()?;
        let issued = signer.issue(subject, Duration::from_secs(ttl), &audience)?;
        tracing::info!("issued a token for {subject:?}, valid {ttl} s");
        let mut r = results.get();
        r.set_token(&issued.token);
        let at = issued
            .expires_at
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        r.set_expires_at_millis(millis(at));
        Ok(())
    }
}

/// A worker's registration; dropping it removes the worker.
struct LeaseServer {
    state: Arc<RegistryState>,
    name: String,
    id: u64,
}

impl lease::Server for LeaseServer {
    async fn report(self: Rc<Self>, params: lease::ReportParams) -> Result<(), capnp::Error> {
        let health = read_health(params.get()?.get_health()?);
        self.state
            .table()
            .report(&self.name, self.id, health, Instant::now())?;
        Ok(())
    }
}

impl Drop for LeaseServer {
    fn drop(&mut self) {
        ACTORS.with(|a| a.borrow_mut().remove(&self.id));
        self.state.table().release(&self.name, self.id);
    }
}

/// Held by a watcher; dropping it ends the watch.
struct SubscriptionServer(CancellationToken);

impl subscription::Server for SubscriptionServer {}

impl Drop for SubscriptionServer {
    fn drop(&mut self) {
        self.0.cancel();
    }
}
