//! [`Handle`]: a `Send + Sync + Clone` way to reach a worker from ordinary
//! (multi-threaded) tokio code or from any thread.
//!
//! capnp-rpc is single-threaded, so its clients are `!Send`. A handle keeps
//! the client on a vat thread of a [`Runtime`] (the same one for every
//! handle of that runtime) and holds only a key to it and a way to send
//! that vat jobs. Each job runs on the vat in the order it was sent, which
//! is what keeps promise pipelining through a handle: a chain of calls sent
//! as jobs leaves the vat as calls on promises, back to back, and costs one
//! round trip, exactly as it would from the vat itself.
//!
//! Dropping the last clone of a handle drops what it holds on the vat (the
//! client, and its connection if the handle made one). Once the runtime is
//! dropped, every use of a handle fails with
//! [`Error::RuntimeStopped`](crate::Error::RuntimeStopped).

use std::any::Any;
use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use capnp::capability::{FromClientHook, FromServer};
use tokio::sync::oneshot;

use crate::runtime::VatSender;
use crate::{ConnectOptions, Connection, Error, Result, Runtime, VirtualOptions};

/// A `Send + Sync + Clone` handle to a value of type `T` (a client, a
/// tensor) that lives on a vat thread of a [`Runtime`].
///
/// Make one with [`Handle::spawn_virtual`] or [`Handle::connect_tcp`],
/// then [`run`](Handle::run) closures with the client on its vat. The
/// closure and what it returns must be `Send`; the client it is given need
/// not be. Results come back owned.
///
/// The tensor worker has typed handles on top of this:
/// [`WorkerHandle`](crate::actors::tensor::WorkerHandle) and
/// [`TensorHandle`](crate::actors::tensor::TensorHandle).
///
/// # Examples
///
/// From a multi-threaded tokio runtime:
///
/// ```
/// use capactor::actors::Probe;
/// use capactor::schema::probe_capnp::probe;
///
/// let rt = capactor::Runtime::builder().vats(2).build().unwrap();
/// let tokio_rt = tokio::runtime::Runtime::new().unwrap();
/// tokio_rt.block_on(async {
///     let probe: capactor::Handle<probe::Client> =
///         capactor::Handle::spawn_virtual(&rt, || Probe::new("p"));
///     let task = tokio::spawn({
///         let probe = probe.clone();
///         async move {
///             probe
///                 .run(|p| async move {
///                     let mut req = p.echo_request();
///                     req.get().set_data(b"hi");
///                     let reply = req.send().promise.await?;
///                     Ok::<_, capnp::Error>(reply.get()?.get_data()?.to_vec())
///                 })
///                 .await
///         }
///     });
///     assert_eq!(task.await.unwrap().unwrap().unwrap(), b"hi");
/// });
/// ```
pub struct Handle<T: 'static> {
    key: Arc<Key>,
    _value: PhantomData<fn() -> T>,
}

impl<T> Clone for Handle<T> {
    fn clone(&self) -> Self {
        Handle {
            key: self.key.clone(),
            _value: PhantomData,
        }
    }
}

impl<T> fmt::Debug for Handle<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handle")
            .field("key", &self.key.id)
            .field("type", &std::any::type_name::<T>())
            .finish()
    }
}

/// Names one value in the vat's table; removes it when the last handle to
/// it is dropped.
struct Key {
    id: u64,
    vat: VatSender,
}

impl Drop for Key {
    fn drop(&mut self) {
        let id = self.id;
        // If the runtime is gone, so is the table.
        let _ = self.vat.run(move || {
            let slot = TABLE.with(|t| t.borrow_mut().remove(&id));
            // Dropped outside the borrow: dropping a connection may run
            // code that touches the table.
            drop(slot);
        });
    }
}

/// One value a handle names, and what must live as long as it (the
/// connection its client came from).
struct Slot {
    value: Box<dyn Any>,
    _keep: Option<Rc<dyn Any>>,
}

thread_local! {
    /// What the handles of this vat name. Only handle jobs touch it, and
    /// they run on this vat only.
    static TABLE: RefCell<HashMap<u64, Slot>> = RefCell::new(HashMap::new());
}

fn next_id() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// The value `id` names on this vat. Every handle's value is inserted by a
/// job sent before any job that can look it up, so it is there.
fn lookup<T: Clone + 'static>(id: u64) -> Option<T> {
    TABLE.with(|t| {
        t.borrow()
            .get(&id)
            .and_then(|slot| slot.value.downcast_ref::<T>())
            .cloned()
    })
}

fn insert(id: u64, value: Box<dyn Any>, keep: Option<Rc<dyn Any>>) {
    TABLE.with(|t| t.borrow_mut().insert(id, Slot { value, _keep: keep }));
}

impl<T: Clone + 'static> Handle<T> {
    /// A handle to the value `make` makes on the runtime's handle vat; `make`
    /// runs there, after every job sent before it. What `make` returns
    /// second is kept alive as long as the value (its connection, say).
    pub(crate) fn make_on(
        vat: VatSender,
        make: impl FnOnce() -> (T, Option<Rc<dyn Any>>) + Send + 'static,
    ) -> Self {
        let id = next_id();
        // If the runtime is gone the job is dropped; so will every later
        // job be, and each use of the handle reports it.
        let _ = vat.run(move || {
            let (value, keep) = make();
            insert(id, Box::new(value), keep);
        });
        Handle::named(id, vat)
    }

    fn named(id: u64, vat: VatSender) -> Self {
        Handle {
            key: Arc::new(Key { id, vat }),
            _value: PhantomData,
        }
    }

    /// The vat this handle's value lives on.
    #[cfg(test)]
    pub(crate) fn vat(&self) -> &VatSender {
        &self.key.vat
    }

    /// Whether `self` and `other` live on the same vat (handles of the same
    /// runtime do).
    pub fn same_runtime<U>(&self, other: &Handle<U>) -> bool {
        self.key.vat.same_vat(&other.key.vat)
    }

    /// Sends `job` to run on the vat with the value; returns at once. Jobs
    /// run in the order they are sent.
    ///
    /// # Errors
    ///
    /// [`Error::RuntimeStopped`] if the runtime is gone.
    pub(crate) fn send(&self, job: impl FnOnce(&T) + Send + 'static) -> Result<()> {
        let id = self.key.id;
        self.key.vat.run(move || match lookup::<T>(id) {
            Some(value) => job(&value),
            None => tracing::error!("a handle's value is missing from its vat's table"),
        })
    }

    /// A handle to what `f` makes from this handle's value on the vat. Returns
    /// at once: `f` runs on the vat after everything sent before it, which is
    /// how a chain of pipelined calls through handles goes out as one batch.
    pub(crate) fn derive<U: Clone + 'static>(
        &self,
        f: impl FnOnce(&T) -> U + Send + 'static,
    ) -> Handle<U> {
        let id = next_id();
        let _ = self.send(move |value| insert(id, Box::new(f(value)), None));
        Handle::named(id, self.key.vat.clone())
    }

    /// A handle to what `f` makes from the values of `self` and `others`,
    /// which must live on the same runtime's vat.
    ///
    /// # Errors
    ///
    /// Fails if a handle of `others` belongs to another runtime.
    pub(crate) fn derive_with<O: Clone + 'static, U: Clone + 'static>(
        &self,
        others: &[&Handle<O>],
        f: impl FnOnce(&T, &[O]) -> U + Send + 'static,
    ) -> Result<Handle<U>> {
        if let Some(stray) = others.iter().find(|o| !self.same_runtime(o)) {
            return Err(Error::invalid(format!(
                "handle {} belongs to another capactor runtime; handles can only be combined \
                 with handles of the same runtime",
                stray.key.id
            )));
        }
        let ids: Vec<u64> = others.iter().map(|o| o.key.id).collect();
        // The handles must outlive the job: keep them in it.
        let keep: Vec<Handle<O>> = others.iter().map(|o| (*o).clone()).collect();
        Ok(self.derive(move |value| {
            let args: Vec<O> = ids.iter().filter_map(|id| lookup::<O>(*id)).collect();
            drop(keep);
            f(value, &args)
        }))
    }

    /// Runs `f` with (a clone of) the value on its vat and returns what the
    /// future it makes resolves to.
    ///
    /// Dropping the returned future before it finishes drops `f`'s future
    /// on the vat too, which cancels the calls it was waiting for.
    ///
    /// Works from any thread and any executor: the returned future only
    /// waits for the vat's answer (`futures::executor::block_on` will do
    /// from a plain thread).
    ///
    /// # Errors
    ///
    /// [`Error::RuntimeStopped`] if the runtime is gone or shuts down before
    /// `f` finishes.
    pub async fn run<F, Fut, R>(&self, f: F) -> Result<R>
    where
        F: FnOnce(T) -> Fut + Send + 'static,
        Fut: Future<Output = R> + 'static,
        R: Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        self.send(move |value| {
            let fut = f(value.clone());
            tokio::task::spawn_local(answer(fut, tx));
        })?;
        rx.await.map_err(|_| Error::RuntimeStopped)
    }
}

/// Sends `fut`'s output to `tx`; gives up (dropping `fut`, which cancels
/// its calls) if the asker stops waiting.
async fn answer<R>(fut: impl Future<Output = R>, mut tx: oneshot::Sender<R>) {
    tokio::select! {
        out = fut => { let _ = tx.send(out); }
        () = tx.closed() => {}
    }
}

/// What a handle made from a connection holds: the value it names and what
/// must live as long as it.
pub(crate) type Wrapped<T> = (T, Option<Rc<dyn Any>>);

impl<T: Clone + 'static> Handle<T> {
    /// A handle to `wrap` of a connection to the actor `make` makes on a vat
    /// of `rt`.
    pub(crate) fn spawn_virtual_as<C, S, F>(
        rt: &Runtime,
        make: F,
        opts: VirtualOptions,
        wrap: impl FnOnce(Connection<C>) -> Wrapped<T> + Send + 'static,
    ) -> Self
    where
        C: FromClientHook + FromServer<S>,
        S: 'static,
        F: FnOnce() -> S + Send + 'static,
    {
        let placer = rt.placer();
        Handle::make_on(rt.handle_vat(), move || {
            wrap(placer.spawn_virtual_with::<C, S, F>(make, &opts))
        })
    }

    /// A handle to `wrap` of a TCP connection to `addr`, made on a vat of
    /// `rt`.
    pub(crate) async fn connect_tcp_as<C: FromClientHook>(
        rt: &Runtime,
        addr: &str,
        opts: &ConnectOptions,
        wrap: impl FnOnce(Connection<C>) -> Wrapped<T> + Send + 'static,
    ) -> Result<Self> {
        let vat = rt.handle_vat();
        let (tx, rx) = oneshot::channel();
        let id = next_id();
        let (addr, opts) = (addr.to_owned(), opts.clone());
        vat.run(move || {
            tokio::task::spawn_local(async move {
                let result = crate::connect_tcp::<C>(&addr, &opts).await.map(|conn| {
                    let (value, keep) = wrap(conn);
                    insert(id, Box::new(value), keep);
                });
                let _ = tx.send(result);
            });
        })?;
        rx.await.map_err(|_| Error::RuntimeStopped)??;
        Ok(Handle::named(id, vat))
    }
}

/// A client and the connection it came from.
fn with_connection<C: Clone + 'static>(conn: Connection<C>) -> Wrapped<C> {
    let client = conn.client().clone();
    (client, Some(Rc::new(conn)))
}

impl<C: FromClientHook + Clone + 'static> Handle<C> {
    /// Spawns the actor `make` makes on a vat of `rt`, as
    /// [`Runtime::spawn_virtual`] does, and returns a handle to its client.
    /// Needs no event loop on the calling thread.
    ///
    /// # Examples
    ///
    /// ```
    /// use capactor::actors::Probe;
    /// use capactor::schema::probe_capnp::probe;
    ///
    /// let rt = capactor::Runtime::new().unwrap();
    /// let p: capactor::Handle<probe::Client> = capactor::Handle::spawn_virtual(&rt, || Probe::new("p"));
    /// let answered = futures::executor::block_on(p.run(|p| async move {
    ///     p.echo_request().send().promise.await.is_ok()
    /// }));
    /// assert!(answered.unwrap());
    /// ```
    pub fn spawn_virtual<S, F>(rt: &Runtime, make: F) -> Self
    where
        C: FromServer<S>,
        S: 'static,
        F: FnOnce() -> S + Send + 'static,
    {
        Self::spawn_virtual_with(rt, make, VirtualOptions::default())
    }

    /// [`Handle::spawn_virtual`] with options, as
    /// [`Runtime::spawn_virtual_with`].
    pub fn spawn_virtual_with<S, F>(rt: &Runtime, make: F, opts: VirtualOptions) -> Self
    where
        C: FromServer<S>,
        S: 'static,
        F: FnOnce() -> S + Send + 'static,
    {
        Self::spawn_virtual_as(rt, make, opts, with_connection)
    }

    /// Connects to the actor a worker serves over TCP at `addr`, as
    /// [`connect_tcp`](crate::connect_tcp) does, and returns a handle to its
    /// client. The connection lives on a vat of `rt`.
    ///
    /// # Errors
    ///
    /// As [`connect_tcp`](crate::connect_tcp); [`Error::RuntimeStopped`] if
    /// `rt` is shutting down.
    pub async fn connect_tcp(rt: &Runtime, addr: &str, opts: &ConnectOptions) -> Result<Self> {
        Self::connect_tcp_as(rt, addr, opts, with_connection).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actors::Probe;
    use crate::schema::probe_capnp::probe;

    fn ping(p: &Handle<probe::Client>) -> Result<bool> {
        futures::executor::block_on(
            p.run(|p| async move { p.echo_request().send().promise.await.is_ok() }),
        )
    }

    #[test]
    fn dropping_the_last_handle_frees_its_value_on_the_vat() {
        let rt = Runtime::builder().vats(1).build().unwrap();
        let p: Handle<probe::Client> = Handle::spawn_virtual(&rt, || Probe::new("p"));
        assert!(ping(&p).unwrap());
        let vat = p.vat().clone();
        let count = move || {
            let (tx, rx) = std::sync::mpsc::channel();
            vat.run(move || tx.send(TABLE.with(|t| t.borrow().len())).unwrap())
                .unwrap();
            rx.recv().unwrap()
        };
        assert_eq!(count(), 1);
        let q = p.clone();
        drop(p);
        assert_eq!(count(), 1);
        drop(q);
        assert_eq!(count(), 0);
    }

    #[test]
    fn a_handle_whose_runtime_is_gone_says_so() {
        let rt = Runtime::builder().vats(1).build().unwrap();
        let p: Handle<probe::Client> = Handle::spawn_virtual(&rt, || Probe::new("p"));
        assert!(ping(&p).unwrap());
        drop(rt);
        let err = ping(&p).unwrap_err();
        assert!(matches!(err, Error::RuntimeStopped), "{err}");
        assert!(err.to_string().contains("runtime"), "{err}");
    }
}
