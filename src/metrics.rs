//! Prometheus metrics of a worker (or a registry): what `--metrics ADDR`
//! serves at `/metrics`.
//!
//! Names follow OpenTelemetry's RPC conventions where there is one:
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `rpc_server_call_duration_seconds` | histogram | `rpc_system="capnp"`, `rpc_service` (`tensor.capnp:Tensor`), `rpc_method` (`unary`) |
//! | `rpc_server_calls_in_flight` | gauge | |
//! | `capactor_connections` | gauge | open connections, authenticated or not |
//! | `capactor_connections_unauthenticated` | gauge | those that have not yet opened the gate |
//! | `capactor_transferred_bytes_total` | counter | `direction="sent"` / `"received"`, over every connection of the process |
//! | `capactor_live_objects`, `capactor_live_bytes` | gauge | what a tensor worker holds |
//! | `capactor_quota_used_bytes`, `capactor_quota_limit_bytes` | gauge | its memory budget |
//! | `capactor_registry_members` | gauge | `state="healthy"` / `"unhealthy"`: set by a registry through [`Metrics::registry_members`] |
//!
//! Interface and method names come from the schema nodes compiled into the
//! binary ([`crate::catalog`]). Calls of methods outside the catalog are
//! labelled by id (`0x…` / `@3`, at most 256 of them, the rest as `other`);
//! calls answered `unimplemented` share one `unimplemented` series, so no
//! caller can make the exposition grow.
//!
//! A call costs two clock reads and two relaxed atomic adds (no lock, no
//! allocation); everything else is read when scraped.
//!
//! # Examples
//!
//! ```no_run
//! let metrics = capactor::metrics::Metrics::new();
//! let mut opts = capactor::ServeOptions::insecure_loopback();
//! opts.metrics = Some(metrics.clone());
//! let members = metrics.registry_members();
//! members.set(3, 1);
//! let server = metrics.serve("127.0.0.1:0")?;
//! println!("metrics on {}", server.local_addr());
//! # Ok::<(), capactor::Error>(())
//! ```

mod calls;
mod http;

use std::fmt;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use crate::call::ActorCalls;
use crate::catalog::Catalog;
use crate::transport::preauth_pool::PreauthPool;

pub(crate) use calls::{CallStats, Slot, Timing};
pub use http::MetricsServer;

/// Bytes every connection of this process has written and read, counted
/// by the link under each (`transport/link.rs`).
pub(crate) static BYTES_SENT: AtomicU64 = AtomicU64::new(0);
/// See [`BYTES_SENT`].
pub(crate) static BYTES_RECEIVED: AtomicU64 = AtomicU64::new(0);

/// A process's metrics: the call histograms the guard fills, the gauges
/// read when scraped, and any metric an actor adds.
///
/// Cheap to clone (an `Arc`); `Send + Sync`. Give a clone to each
/// [`ServeOptions`](crate::ServeOptions) whose calls it should count.
///
/// # Examples
///
/// ```
/// use capactor::schema::probe_capnp::probe;
///
/// let metrics = capactor::metrics::Metrics::new();
/// let mut opts = capactor::ServeOptions::insecure_loopback();
/// opts.metrics = Some(metrics.clone());
/// let rt = capactor::Runtime::builder().vats(1).build().unwrap();
/// capactor::block_on(async {
///     let server = rt
///         .serve_tcp::<probe::Client, _, _>("127.0.0.1:0", || capactor::actors::Probe::new("p"), opts)
///         .await
///         .unwrap();
///     let conn: capactor::Connection<probe::Client> =
///         capactor::connect_tcp(&server.local_addr().to_string(), &Default::default())
///             .await
///             .unwrap();
///     let actor: capactor::schema::actor_capnp::actor::Client = capactor::cast(conn.client());
///     actor.ping_request().send().promise.await.unwrap();
/// }).unwrap();
/// let text = metrics.encode();
/// assert!(text.contains(
///     "rpc_server_call_duration_seconds_count{rpc_system=\"capnp\",\
///      rpc_service=\"actor.capnp:Actor\",rpc_method=\"ping\"} 1"
/// ));
/// ```
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

struct Inner {
    registry: Mutex<Registry>,
    calls: Arc<CallStats>,
    sources: Arc<Sources>,
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

/// What the built-in gauges add up when scraped.
#[derive(Debug, Default)]
struct Sources {
    /// Open connections of each TCP server.
    open: Mutex<Vec<Weak<AtomicUsize>>>,
    /// Unauthenticated connections of each TCP server.
    preauth: Mutex<Vec<Weak<PreauthPool>>>,
}

impl Metrics {
    /// Metrics naming calls by the schemas compiled into capactor.
    ///
    /// # Examples
    ///
    /// ```
    /// let text = capactor::metrics::Metrics::new().encode();
    /// assert!(text.contains("# TYPE rpc_server_call_duration_seconds histogram"));
    /// ```
    pub fn new() -> Metrics {
        Metrics::with_catalog(Catalog::builtin())
    }

    /// Metrics naming calls by `catalog` (the built-in one
    /// [extended](Catalog::extend) with an actor's own schemas).
    ///
    /// # Examples
    ///
    /// ```
    /// let catalog = capactor::catalog::Catalog::builtin().clone();
    /// // catalog.extend(include_bytes!(...)) with your schema's nodes
    /// let metrics = capactor::metrics::Metrics::with_catalog(&catalog);
    /// # drop(metrics);
    /// ```
    pub fn with_catalog(catalog: &Catalog) -> Metrics {
        let calls = Arc::new(CallStats::new(catalog));
        let sources = Arc::new(Sources::default());
        let mut registry = Registry::default();
        registry.register_collector(Box::new(Builtin {
            calls: calls.clone(),
            sources: sources.clone(),
        }));
        Metrics {
            inner: Arc::new(Inner {
                registry: Mutex::new(registry),
                calls,
                sources,
            }),
        }
    }

    /// The call histograms, for the guard.
    pub(crate) fn calls(&self) -> &Arc<CallStats> {
        &self.inner.calls
    }

    /// Counts the calls in flight of `actor` in `rpc_server_calls_in_flight`.
    pub(crate) fn track_actor(&self, actor: &Arc<ActorCalls>) {
        lock(&self.inner.calls.actors).push(Arc::downgrade(actor));
    }

    /// Counts a TCP server's connections in `capactor_connections`.
    pub(crate) fn track_connections(&self, open: &Arc<AtomicUsize>, preauth: &Arc<PreauthPool>) {
        lock(&self.inner.sources.open).push(Arc::downgrade(open));
        lock(&self.inner.sources.preauth).push(Arc::downgrade(preauth));
    }

    /// Adds a metric of any `prometheus-client` type (a `Gauge`, `Counter`,
    /// `Family`, ...): the way an actor exposes numbers of its own.
    ///
    /// # Examples
    ///
    /// ```
    /// use prometheus_client::metrics::counter::Counter;
    ///
    /// let metrics = capactor::metrics::Metrics::new();
    /// let jobs: Counter = Counter::default();
    /// metrics.register("myapp_jobs", "Jobs finished", jobs.clone());
    /// jobs.inc();
    /// assert!(metrics.encode().contains("myapp_jobs_total 1"));
    /// ```
    pub fn register(
        &self,
        name: &str,
        help: &str,
        metric: impl prometheus_client::registry::Metric,
    ) {
        lock(&self.inner.registry).register(name, help, metric);
    }

    /// A gauge read from `read` at each scrape: for numbers something else
    /// already keeps (a quota's use, a table's size).
    ///
    /// # Examples
    ///
    /// ```
    /// let metrics = capactor::metrics::Metrics::new();
    /// let quota = capactor::Quota::new(1 << 20);
    /// let q = quota.clone();
    /// metrics.gauge_fn("capactor_quota_limit_bytes", "Memory budget", move || q.limit() as i64);
    /// assert!(metrics.encode().contains("capactor_quota_limit_bytes 1048576"));
    /// ```
    pub fn gauge_fn(
        &self,
        name: &'static str,
        help: &'static str,
        read: impl Fn() -> i64 + Send + Sync + 'static,
    ) {
        lock(&self.inner.registry).register_collector(Box::new(GaugeFn {
            name,
            help,
            read: Box::new(read),
        }));
    }

    /// The worker gauges of a memory budget: `capactor_live_objects`,
    /// `capactor_live_bytes`, `capactor_quota_used_bytes` and
    /// `capactor_quota_limit_bytes`.
    ///
    /// # Examples
    ///
    /// ```
    /// let metrics = capactor::metrics::Metrics::new();
    /// metrics.track_quota(&capactor::Quota::new(4096));
    /// let text = metrics.encode();
    /// assert!(text.contains("capactor_live_objects 0"));
    /// assert!(text.contains("capactor_quota_limit_bytes 4096"));
    /// ```
    pub fn track_quota(&self, quota: &Arc<crate::Quota>) {
        let q = quota.clone();
        self.gauge_fn(
            "capactor_live_objects",
            "Objects (tensors) the worker holds",
            move || clamp(q.live_tensors()),
        );
        let q = quota.clone();
        self.gauge_fn(
            "capactor_live_bytes",
            "Bytes the worker's live objects hold",
            move || clamp(q.used()),
        );
        let q = quota.clone();
        self.gauge_fn(
            "capactor_quota_used_bytes",
            "Bytes taken from the worker's memory budget (live objects and requests under way)",
            move || clamp(q.used()),
        );
        let q = quota.clone();
        self.gauge_fn(
            "capactor_quota_limit_bytes",
            "The worker's memory budget",
            move || clamp(q.limit()),
        );
    }

    /// The `capactor_registry_members` gauge, for a registry to set as
    /// workers join, leave and change health. Call once per `Metrics`.
    ///
    /// # Examples
    ///
    /// ```
    /// let metrics = capactor::metrics::Metrics::new();
    /// let members = metrics.registry_members();
    /// members.set(4, 1);
    /// let text = metrics.encode();
    /// assert!(text.contains("capactor_registry_members{state=\"healthy\"} 4"));
    /// assert!(text.contains("capactor_registry_members{state=\"unhealthy\"} 1"));
    /// ```
    pub fn registry_members(&self) -> RegistryMembers {
        let members = RegistryMembers::default();
        lock(&self.inner.registry).register_collector(Box::new(members.clone()));
        members
    }

    /// The Prometheus text exposition (format 0.0.4) of every metric.
    ///
    /// # Examples
    ///
    /// ```
    /// let text = capactor::metrics::Metrics::new().encode();
    /// assert!(text.contains("capactor_transferred_bytes_total{direction=\"sent\"}"));
    /// ```
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let registry = lock(&self.inner.registry);
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &registry);
        out
    }

    /// Serves [`encode`](Self::encode) over HTTP at `GET /metrics` on
    /// `addr`, from a thread of its own (so a scrape never waits for a
    /// busy vat); every other path answers 404. Port 0 picks a free port.
    /// Dropping the returned server stops it.
    ///
    /// # Errors
    ///
    /// Fails if `addr` cannot be bound.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// let metrics = capactor::metrics::Metrics::new();
    /// let endpoint = metrics.serve("127.0.0.1:9090")?;
    /// println!("metrics on http://{}/metrics", endpoint.local_addr());
    /// # Ok::<(), capactor::Error>(())
    /// ```
    pub fn serve(&self, addr: &str) -> crate::Result<MetricsServer> {
        http::serve(self.clone(), addr)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn clamp(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// How many workers a registry has, healthy and not: the
/// `capactor_registry_members` gauge. Cheap to clone; `Send + Sync`.
///
/// # Examples
///
/// ```
/// let metrics = capactor::metrics::Metrics::new();
/// let members = metrics.registry_members();
/// members.set(2, 0);
/// assert!(metrics.encode().contains("capactor_registry_members{state=\"healthy\"} 2"));
/// ```
#[derive(Clone, Debug, Default)]
pub struct RegistryMembers {
    healthy: Arc<AtomicI64>,
    unhealthy: Arc<AtomicI64>,
}

impl RegistryMembers {
    /// Sets both counts.
    pub fn set(&self, healthy: u64, unhealthy: u64) {
        self.healthy.store(clamp(healthy), Ordering::Relaxed);
        self.unhealthy.store(clamp(unhealthy), Ordering::Relaxed);
    }
}

impl Collector for RegistryMembers {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> fmt::Result {
        let mut family = encoder.encode_descriptor(
            "capactor_registry_members",
            "Workers registered, by health",
            None,
            MetricType::Gauge,
        )?;
        for (state, n) in [("healthy", &self.healthy), ("unhealthy", &self.unhealthy)] {
            family
                .encode_family(&[("state", state)])?
                .encode_gauge(&n.load(Ordering::Relaxed))?;
        }
        Ok(())
    }
}

struct GaugeFn {
    name: &'static str,
    help: &'static str,
    read: Box<dyn Fn() -> i64 + Send + Sync>,
}

impl fmt::Debug for GaugeFn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GaugeFn").field("name", &self.name).finish()
    }
}

impl Collector for GaugeFn {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> fmt::Result {
        encoder
            .encode_descriptor(self.name, self.help, None, MetricType::Gauge)?
            .encode_gauge(&(self.read)())
    }
}

/// The metrics every `Metrics` has.
#[derive(Debug)]
struct Builtin {
    calls: Arc<CallStats>,
    sources: Arc<Sources>,
}

impl Collector for Builtin {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> fmt::Result {
        let mut family = encoder.encode_descriptor(
            "rpc_server_call_duration_seconds",
            "Duration of calls the server handled, from dispatch to answer",
            None,
            MetricType::Histogram,
        )?;
        for (service, method, h) in self.calls.series() {
            let labels = [
                ("rpc_system", "capnp"),
                ("rpc_service", service.as_str()),
                ("rpc_method", method.as_str()),
            ];
            family
                .encode_family(&labels)?
                .encode_histogram::<NoLabelSet>(h.sum, h.count, &h.buckets, None)?;
        }
        encoder
            .encode_descriptor(
                "rpc_server_calls_in_flight",
                "Calls being handled now",
                None,
                MetricType::Gauge,
            )?
            .encode_gauge(&(self.calls.in_flight() as i64))?;
        let open: usize = sum(&self.sources.open, |o| o.load(Ordering::Acquire));
        encoder
            .encode_descriptor(
                "capactor_connections",
                "Connections open now, authenticated or not",
                None,
                MetricType::Gauge,
            )?
            .encode_gauge(&(open as i64))?;
        let preauth: usize = sum(&self.sources.preauth, |p| p.len());
        encoder
            .encode_descriptor(
                "capactor_connections_unauthenticated",
                "Connections open now that have not yet opened the gate",
                None,
                MetricType::Gauge,
            )?
            .encode_gauge(&(preauth as i64))?;
        let mut bytes = encoder.encode_descriptor(
            "capactor_transferred_bytes",
            "Bytes written to and read from peers, over every connection of the process",
            None,
            MetricType::Counter,
        )?;
        for (direction, n) in [("sent", &BYTES_SENT), ("received", &BYTES_RECEIVED)] {
            bytes
                .encode_family(&[("direction", direction)])?
                .encode_counter::<NoLabelSet, _, u64>(&n.load(Ordering::Relaxed), None)?;
        }
        Ok(())
    }
}

/// Adds `read` over the live entries of `list`, forgetting dead ones.
fn sum<T>(list: &Mutex<Vec<Weak<T>>>, read: impl Fn(&T) -> usize) -> usize {
    let mut list = lock(list);
    list.retain(|w| w.strong_count() > 0);
    list.iter()
        .filter_map(Weak::upgrade)
        .map(|t| read(&t))
        .sum()
}
