//! [`Cluster`]: one client driving N workers through every step (the
//! engine-drives-N-workers pattern): take a pool of workers of a kind from
//! a registry, then `broadcast`, `scatter`, `gather` and `all_reduce`
//! tensors across it.
//!
//! Everything is pipelined. A collective sends its calls and returns
//! handles at once; data moves worker to worker (`TensorWorker.fetch`, the
//! ticket handoff), not through the client, except what the client itself
//! uploads or reads. So a data-parallel step over N workers — scatter,
//! local compute, all-reduce, update — costs the client no round trip
//! until it reads a result, and reading one (a loss) costs one, whatever N
//! is.

use std::cell::RefCell;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;

use super::{Change, RegistryClient, WorkerInfo};
use crate::actors::tensor::ops::SliceSpec;
use crate::actors::tensor::{Array, RemoteTensor, Worker};
use crate::schema::tensor_capnp::tensor_worker;
use crate::{ConnectOptions, Connection, Error, Result};

/// A future reaching one worker.
pub type Reached = Pin<Box<dyn Future<Output = Result<Reach>>>>;

/// A worker reached: its client, and the connection to keep open for it
/// (if the cluster owns one).
pub struct Reach {
    /// The worker.
    pub worker: Worker,
    /// Its connection, closed when the pool goes.
    pub connection: Option<Connection<tensor_worker::Client>>,
}

impl std::fmt::Debug for Reach {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reach")
            .field("worker", &self.worker)
            .field("connected", &self.connection.is_some())
            .finish()
    }
}

/// How a cluster reaches the workers the registry names.
type Connector = Rc<dyn Fn(&WorkerInfo) -> Reached>;

/// A registry and the way to reach its workers.
///
/// Runs on the current thread's `LocalSet`, like every capnp-rpc client.
///
/// # Examples
///
/// ```no_run
/// use capactor::fleet::{Cluster, Reduce};
/// use ndarray::ArrayD;
///
/// capactor::block_on(async {
///     let opts = capactor::ConnectOptions::default();
///     let cluster = Cluster::connect("127.0.0.1:7000", &opts).await?;
///     let pool = cluster.pool("tensor-worker", 4).await?;
///     let x = ArrayD::<f32>::ones(vec![8, 3]);
///     let parts = pool.scatter(&capactor::actors::tensor::Array::F32(x), 0)?;
///     let sums = pool.all_reduce(&parts.map(|_, t| t.sum_axis(0, false)), Reduce::Sum)?;
///     println!("{:?}", sums.shards()[0].to_ndarray::<f32>().await?);
///     Ok::<_, capactor::Error>(())
/// }).unwrap();
/// ```
pub struct Cluster {
    registry: RegistryClient,
    connect: Connector,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster").finish_non_exhaustive()
    }
}

/// How [`Pool::all_reduce`] combines the workers' tensors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Reduce {
    /// Element-wise sum.
    Sum,
    /// Element-wise mean.
    Mean,
}

impl Cluster {
    /// The registry at `addr` (over TCP), whose workers are reached at
    /// their registered addresses with the same options (token, TLS).
    ///
    /// # Errors
    ///
    /// The registry cannot be reached, or `addr` is not an address (see
    /// [`crate::Address`]: a registry or worker may be on TCP, TLS or a
    /// Unix socket).
    pub async fn connect(addr: &str, opts: &ConnectOptions) -> Result<Cluster> {
        let registry = RegistryClient::from_connection(crate::connect(addr, opts).await?);
        let opts = opts.clone();
        let connect: Connector = Rc::new(move |w: &WorkerInfo| {
            let (addr, opts) = (w.address.clone(), opts.clone());
            Box::pin(async move {
                let conn: Connection<tensor_worker::Client> = crate::connect(&addr, &opts).await?;
                Ok(Reach {
                    worker: Worker::new(conn.client().clone()),
                    connection: Some(conn),
                })
            })
        });
        Ok(Cluster { registry, connect })
    }

    /// A registry client and a function reaching each worker it names (for
    /// workers in this process, or reached some other way).
    pub fn new(
        registry: RegistryClient,
        connect: impl Fn(&WorkerInfo) -> Reached + 'static,
    ) -> Self {
        Cluster {
            registry,
            connect: Rc::new(connect),
        }
    }

    /// The registry.
    pub fn registry(&self) -> &RegistryClient {
        &self.registry
    }

    /// Takes the `n` least loaded healthy workers of `kind` (by name among
    /// equals), and watches the registry for their leaving.
    ///
    /// # Errors
    ///
    /// Fewer than `n` healthy workers of `kind`; one cannot be reached.
    pub async fn pool(&self, kind: &str, n: usize) -> Result<Pool> {
        if n == 0 {
            return Err(Error::invalid("a pool needs at least one worker"));
        }
        // Watch first: a worker leaving between the status and the watch is
        // then still seen.
        let mut watch = self.registry.watch(1024).await?;
        let mut healthy: Vec<WorkerInfo> = self
            .registry
            .status()
            .await?
            .workers
            .into_iter()
            .filter(|w| w.healthy && w.kind == kind)
            .collect();
        if healthy.len() < n {
            return Err(Error::invalid(format!(
                "only {} healthy workers of kind {kind:?}, a pool of {n} asked for",
                healthy.len()
            )));
        }
        healthy.sort_by(|a, b| {
            a.health
                .load
                .total_cmp(&b.health.load)
                .then_with(|| a.name.cmp(&b.name))
        });
        healthy.truncate(n);
        healthy.sort_by(|a, b| a.name.cmp(&b.name));
        let mut members = Vec::with_capacity(n);
        for info in healthy {
            let reach = (self.connect)(&info).await.map_err(|e| {
                Error::invalid(format!(
                    "cannot reach worker {:?} at {}: {e}",
                    info.name, info.address
                ))
            })?;
            members.push(Rc::new(Member { info, reach }));
        }
        let gone: Rc<RefCell<HashMap<String, String>>> = Rc::default();
        let g = gone.clone();
        let watcher = tokio::task::spawn_local(async move {
            while let Some(event) = watch.next().await {
                let (name, why) = match event.change {
                    Change::Left { name, reason } => {
                        (name, format!("left the registry ({reason})"))
                    }
                    Change::HealthChanged(w) if !w.healthy => {
                        (w.name, "stopped reporting to the registry".to_string())
                    }
                    _ => continue,
                };
                g.borrow_mut().entry(name).or_insert(why);
            }
        });
        Ok(Pool {
            members,
            gone,
            _watcher: Rc::new(AbortOnDrop(watcher)),
        })
    }
}

struct Member {
    info: WorkerInfo,
    reach: Reach,
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// N workers of one kind, in a fixed order (by name), and what the
/// registry says about their leaving. Cheap to clone.
#[derive(Clone)]
pub struct Pool {
    members: Vec<Rc<Member>>,
    gone: Rc<RefCell<HashMap<String, String>>>,
    _watcher: Rc<AbortOnDrop>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("workers", &self.names())
            .finish()
    }
}

/// One tensor per worker of a pool, in the pool's order.
#[derive(Clone, Debug)]
pub struct Sharded {
    shards: Vec<RemoteTensor>,
}

impl Sharded {
    /// The tensors, one per worker.
    pub fn shards(&self) -> &[RemoteTensor] {
        &self.shards
    }

    /// Applies `f` to each worker's tensor (pipelined: nothing waits).
    pub fn map(&self, mut f: impl FnMut(usize, &RemoteTensor) -> RemoteTensor) -> Sharded {
        Sharded {
            shards: self
                .shards
                .iter()
                .enumerate()
                .map(|(i, t)| f(i, t))
                .collect(),
        }
    }

    /// Combines two sharded tensors worker by worker.
    ///
    /// # Errors
    ///
    /// They have different numbers of shards.
    pub fn zip(
        &self,
        other: &Sharded,
        mut f: impl FnMut(&RemoteTensor, &RemoteTensor) -> RemoteTensor,
    ) -> Result<Sharded> {
        if self.shards.len() != other.shards.len() {
            return Err(Error::invalid(format!(
                "cannot combine {} shards with {}",
                self.shards.len(),
                other.shards.len()
            )));
        }
        Ok(Sharded {
            shards: self
                .shards
                .iter()
                .zip(&other.shards)
                .map(|(a, b)| f(a, b))
                .collect(),
        })
    }
}

impl Pool {
    /// How many workers.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// True for an empty pool (never, from [`Cluster::pool`]).
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// The workers' names, in the pool's order.
    pub fn names(&self) -> Vec<String> {
        self.members.iter().map(|m| m.info.name.clone()).collect()
    }

    /// The workers, in the pool's order.
    pub fn workers(&self) -> Vec<Worker> {
        self.members
            .iter()
            .map(|m| m.reach.worker.clone())
            .collect()
    }

    /// Client round trips spent on the pool's workers so far (the sum of
    /// their [`Worker::round_trips`]).
    pub fn round_trips(&self) -> u64 {
        self.members
            .iter()
            .map(|m| m.reach.worker.round_trips())
            .sum()
    }

    /// Workers of the pool that have left or stopped reporting, with why.
    pub fn gone(&self) -> Vec<(String, String)> {
        let gone = self.gone.borrow();
        let mut out: Vec<_> = self
            .members
            .iter()
            .filter_map(|m| {
                if let Some(why) = gone.get(&m.info.name) {
                    return Some((m.info.name.clone(), why.clone()));
                }
                let closed = m
                    .reach
                    .connection
                    .as_ref()
                    .is_some_and(|c| c.link().is_closed());
                closed.then(|| (m.info.name.clone(), "its connection closed".to_string()))
            })
            .collect();
        out.sort();
        out
    }

    /// Fails, naming the workers, if any has left.
    ///
    /// # Errors
    ///
    /// `disconnected`: `worker "w3" of the pool left the registry
    /// (expired)`.
    pub fn check(&self) -> Result<()> {
        let gone = self.gone();
        if gone.is_empty() {
            return Ok(());
        }
        let what: Vec<String> = gone
            .iter()
            .map(|(name, why)| format!("worker {name:?} of the pool {why}"))
            .collect();
        Err(Error::Disconnected(format!(
            "{}; take a new pool (Pool::without_gone) and re-shard",
            what.join(", ")
        )))
    }

    /// `err` as the caller should see it: if a worker of the pool has
    /// gone, the error names it.
    pub fn explain(&self, err: Error) -> Error {
        match self.check() {
            Err(gone) => gone,
            Ok(()) => err,
        }
    }

    /// Waits for `fut` (a result read from the pool), naming the worker if
    /// one has gone when it fails.
    ///
    /// # Errors
    ///
    /// `fut`'s error, or the gone worker's.
    pub async fn read<T>(&self, fut: impl Future<Output = Result<T>>) -> Result<T> {
        fut.await.map_err(|e| self.explain(e))
    }

    /// The same pool without the workers that have gone (same order).
    pub fn without_gone(&self) -> Pool {
        let gone: Vec<String> = self.gone().into_iter().map(|(n, _)| n).collect();
        Pool {
            members: self
                .members
                .iter()
                .filter(|m| !gone.contains(&m.info.name))
                .cloned()
                .collect(),
            gone: self.gone.clone(),
            _watcher: self._watcher.clone(),
        }
    }

    /// `array` on every worker: uploaded once to the first, copied from
    /// there to the others worker to worker.
    ///
    /// # Errors
    ///
    /// A worker of the pool has gone.
    pub fn broadcast(&self, array: &Array) -> Result<Sharded> {
        self.check()?;
        let first = self.members[0].reach.worker.from_array(array);
        Ok(self.spread(first))
    }

    /// A tensor of the first worker, copied to every other.
    fn spread(&self, first: RemoteTensor) -> Sharded {
        let mut shards = Vec::with_capacity(self.members.len());
        for m in &self.members[1..] {
            shards.push(first.copy_to(&m.reach.worker));
        }
        shards.insert(0, first);
        Sharded { shards }
    }

    /// Splits `array` along `axis` into one nearly equal part per worker
    /// (the first parts one longer when it does not divide): uploaded once
    /// to the first worker, sliced there, and the parts copied worker to
    /// worker.
    ///
    /// # Errors
    ///
    /// A worker has gone; `axis` out of range; fewer elements along it than
    /// workers.
    pub fn scatter(&self, array: &Array, axis: usize) -> Result<Sharded> {
        self.check()?;
        let shape = array.shape();
        let Some(&len) = shape.get(axis) else {
            return Err(Error::invalid(format!(
                "cannot scatter along axis {axis} of a tensor of shape {shape:?}"
            )));
        };
        let n = self.members.len();
        if len < n {
            return Err(Error::invalid(format!(
                "cannot scatter {len} elements along axis {axis} over {n} workers"
            )));
        }
        let first = &self.members[0].reach.worker;
        let whole = first.from_array(array);
        let (base, extra) = (len / n, len % n);
        let mut start = 0;
        let mut shards = Vec::with_capacity(n);
        for (i, m) in self.members.iter().enumerate() {
            let size = base + usize::from(i < extra);
            let specs: Vec<SliceSpec> = (0..shape.len())
                .map(|d| {
                    if d == axis {
                        SliceSpec::new(Some(start as i64), Some((start + size) as i64), 1)
                    } else {
                        SliceSpec::new(None, None, 1)
                    }
                })
                .collect();
            let part = whole.slice(&specs);
            shards.push(if i == 0 {
                part
            } else {
                part.copy_to(&m.reach.worker)
            });
            start += size;
        }
        Ok(Sharded { shards })
    }

    /// Joins the shards along `axis` on the first worker (copied there
    /// worker to worker), pipelined; read it with one round trip.
    ///
    /// # Errors
    ///
    /// A worker has gone; not one shard per worker.
    pub fn gather(&self, sharded: &Sharded, axis: i64) -> Result<RemoteTensor> {
        let here = self.on_first(sharded)?;
        let refs: Vec<&RemoteTensor> = here.iter().collect();
        Ok(self.members[0].reach.worker.concat(&refs, axis))
    }

    /// Every shard, copied to the first worker.
    fn on_first(&self, sharded: &Sharded) -> Result<Vec<RemoteTensor>> {
        self.check()?;
        if sharded.shards.len() != self.members.len() {
            return Err(Error::invalid(format!(
                "{} shards for a pool of {} workers",
                sharded.shards.len(),
                self.members.len()
            )));
        }
        let first = &self.members[0].reach.worker;
        Ok(sharded
            .shards
            .iter()
            .enumerate()
            .map(|(i, t)| if i == 0 { t.clone() } else { t.copy_to(first) })
            .collect())
    }

    /// Reduces the workers' tensors element-wise and gives every worker the
    /// result: the shards are copied to the first worker, reduced there,
    /// and the result copied back, all pipelined.
    ///
    /// # Errors
    ///
    /// A worker has gone; not one shard per worker. Shape mismatches
    /// surface when the result is read.
    pub fn all_reduce(&self, sharded: &Sharded, op: Reduce) -> Result<Sharded> {
        Ok(self.spread(self.reduce(sharded, op)?))
    }

    /// [`Pool::all_reduce`], leaving the result on the first worker only.
    ///
    /// # Errors
    ///
    /// As [`Pool::all_reduce`].
    pub fn reduce(&self, sharded: &Sharded, op: Reduce) -> Result<RemoteTensor> {
        let here = self.on_first(sharded)?;
        let mut total = here[0].clone();
        for t in &here[1..] {
            total = &total + t;
        }
        Ok(match op {
            Reduce::Sum => total,
            Reduce::Mean => total * (1.0 / self.members.len() as f64),
        })
    }
}
