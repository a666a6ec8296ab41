//! The call machinery every actor's calls pass through, whatever the
//! transport.
//!
//! [`new_client`] turns a server object into a capability, as
//! `capnp_rpc::new_client` does, but every call to it goes through a
//! [`Guard`] that
//!
//! - catches a panic in the method and fails only that call (the error the
//!   caller sees carries an error id; the panic message is logged),
//! - enforces the actor's call deadline, if one is configured,
//! - refuses new calls while the actor drains for shutdown,
//! - bounds the calls one connection may have in flight, and
//! - counts calls in flight and served, for `Actor.info` and for
//!   graceful shutdown.
//!
//! Each remote connection gets its own guard: the gate hands the client its
//! own guarded capability to the vat's actor instance, and capabilities the actor
//! creates while serving a call (a tensor returned by an op, say) are
//! guarded by the same guard, because `new_client` uses the guard of the call
//! being served. So a connection's limits cover everything it reaches.
//! Outside any call `new_client` uses a fresh default guard.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use capnp::any_pointer;
use capnp::capability::{
    DispatchCallResult, DynClientHook, FromClientHook, FromServer, Params, Promise, Results, Server,
};
use tokio::sync::Notify;
use tokio_util::sync::WaitForCancellationFutureOwned;

use crate::metrics::{CallStats, Metrics, Slot, Timing};
use crate::supervisor::{ChildExit, Fence};
use crate::{Error, Quota};
// Lives with the link that counts what it writes; re-exported where it
// always was.
pub use crate::transport::outgoing::Outgoing;

/// Creates a capability of type `C` served by `server`, with every call
/// guarded (see the [module docs](self)).
///
/// Use it wherever you would use `capnp_rpc::new_client`.
///
/// # Examples
///
/// ```
/// use capactor::schema::actor_capnp::actor;
///
/// struct Echo;
/// impl actor::Server for Echo {}
///
/// let client: actor::Client = capactor::new_client(Echo);
/// # drop(client);
/// ```
pub fn new_client<C, S>(server: S) -> C
where
    C: FromServer<S>,
{
    new_client_from_rc(Rc::new(server))
}

/// Like [`new_client`], for a server already in an `Rc` (so the actor can
/// keep a reference to it, e.g. to recognise its own capabilities later).
pub fn new_client_from_rc<C, S>(server: Rc<S>) -> C
where
    C: FromServer<S>,
{
    Guard::current().client_from_rc(server)
}

/// The calls of one actor, across every vat and connection serving it:
/// its call deadline, its drain switch for shutdown, and its counters.
/// `Send + Sync`; shared through an `Arc`.
#[derive(Debug, Default)]
pub struct ActorCalls {
    deadline: Option<Duration>,
    draining: AtomicBool,
    in_flight: AtomicUsize,
    served: AtomicU64,
    idle: Notify,
    /// Call durations by method, when the actor is served with metrics.
    stats: Option<Arc<CallStats>>,
    /// Set for a supervised actor's incarnation: ends it (see `supervisor`).
    fence: Option<Fence>,
}

impl ActorCalls {
    /// Counters for an actor whose calls may each run for at most
    /// `deadline`.
    pub fn new(deadline: Option<Duration>) -> Arc<Self> {
        Arc::new(ActorCalls {
            deadline,
            ..ActorCalls::default()
        })
    }

    /// Like [`new`](Self::new), with each call's duration recorded in
    /// `metrics` (and the calls in flight counted there). TCP servers
    /// build theirs from [`ServeOptions::metrics`](crate::ServeOptions::metrics).
    ///
    /// # Examples
    ///
    /// ```
    /// let metrics = capactor::metrics::Metrics::new();
    /// let calls = capactor::call::ActorCalls::with_metrics(None, Some(&metrics));
    /// assert_eq!(calls.in_flight(), 0);
    /// assert!(metrics.encode().contains("rpc_server_calls_in_flight 0"));
    /// ```
    pub fn with_metrics(deadline: Option<Duration>, metrics: Option<&Metrics>) -> Arc<Self> {
        let calls = Arc::new(ActorCalls {
            deadline,
            stats: metrics.map(|m| m.calls().clone()),
            ..ActorCalls::default()
        });
        if let Some(m) = metrics {
            m.track_actor(&calls);
        }
        calls
    }

    /// Counters for one incarnation of a supervised actor, ended by `fence`.
    pub(crate) fn supervised(deadline: Option<Duration>, fence: Fence) -> Arc<Self> {
        Arc::new(ActorCalls {
            deadline,
            fence: Some(fence),
            ..ActorCalls::default()
        })
    }

    /// Asks the supervisor for a fresh start of this actor, as if it had
    /// crashed: its calls in flight fail, and the next calls reach a new
    /// incarnation made by its factory. Meant for an actor that finds its
    /// own state broken; call it as
    /// `capactor::call::Guard::current().actor().request_restart()` from
    /// inside a method. Returns `false` (and does nothing) for an actor that
    /// is not supervised.
    ///
    /// # Examples
    ///
    /// ```
    /// let calls = capactor::call::Guard::current().actor().clone();
    /// assert!(!calls.request_restart(), "not supervised");
    /// ```
    pub fn request_restart(&self) -> bool {
        self.fence
            .as_ref()
            .is_some_and(|f| f.exit(ChildExit::RestartRequested))
    }

    /// Ends this supervised actor normally: a transient child is then not
    /// restarted (a permanent one is). Returns `false` (and does nothing)
    /// for an actor that is not supervised.
    pub fn request_stop(&self) -> bool {
        self.fence
            .as_ref()
            .is_some_and(|f| f.exit(ChildExit::Normal))
    }

    /// Refuses new calls from now on (they fail with "actor is shutting
    /// down") and waits until the calls already under way have finished.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: dropping the future leaves the actor refusing calls.
    pub async fn drain(&self) {
        self.draining.store(true, Ordering::Release);
        loop {
            let idle = self.idle.notified();
            if self.in_flight.load(Ordering::Acquire) == 0 {
                return;
            }
            idle.await;
        }
    }

    /// Calls in flight.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Acquire)
    }

    /// Calls completed, successfully or not.
    pub fn served(&self) -> u64 {
        self.served.load(Ordering::Acquire)
    }
}

/// Per-connection call accounting and policy, shared by every capability
/// reached through the connection. Cheap to clone. Lives on one vat thread
/// (`!Send`).
#[derive(Clone, Debug)]
pub struct Guard {
    inner: Rc<GuardInner>,
}

#[derive(Debug)]
struct GuardInner {
    actor: Arc<ActorCalls>,
    in_flight: Cell<u32>,
    max_in_flight: Option<u32>,
    memory: Option<Arc<Quota>>,
    outgoing: Option<Arc<Outgoing>>,
    /// Calls this connection has completed.
    served: Cell<u64>,
    /// Whether `Actor.info` may show this connection worker-wide totals.
    worker_totals: Cell<bool>,
}

impl Default for Guard {
    fn default() -> Self {
        Guard::new(Arc::default(), None, None, None)
    }
}

thread_local! {
    static CURRENT: RefCell<Option<Guard>> = const { RefCell::new(None) };
}

impl Guard {
    /// A guard for one connection to the actor counted by `actor`, allowing
    /// at most `max_in_flight` calls at once, with an optional memory
    /// budget for what the connection creates and an optional bound on the
    /// reply bytes it may have queued.
    pub fn new(
        actor: Arc<ActorCalls>,
        max_in_flight: Option<u32>,
        memory: Option<Arc<Quota>>,
        outgoing: Option<Arc<Outgoing>>,
    ) -> Self {
        Guard {
            inner: Rc::new(GuardInner {
                actor,
                in_flight: Cell::new(0),
                max_in_flight,
                memory,
                outgoing,
                served: Cell::new(0),
                worker_totals: Cell::new(false),
            }),
        }
    }

    /// Lets `Actor.info` and `TensorWorker.memory` show this connection the
    /// worker-wide totals (other connections' activity included), not only
    /// its own.
    pub(crate) fn allow_worker_totals(&self) {
        self.inner.worker_totals.set(true);
    }

    /// Whether this connection may see worker-wide totals: a remote
    /// connection only if its worker allows it; a local client (which has
    /// no connection of its own) always.
    pub fn shows_worker_totals(&self) -> bool {
        self.inner.worker_totals.get() || self.inner.outgoing.is_none()
    }

    /// Calls this guard's connection has completed.
    pub fn served(&self) -> u64 {
        self.inner.served.get()
    }

    /// Reserves `bytes` of reply for the connection being served, before
    /// the reply is built.
    ///
    /// # Errors
    ///
    /// `outgoing queue limit exceeded` if the connection already has too
    /// much written but not yet read by its peer.
    pub fn reserve_reply(&self, bytes: u64) -> Result<(), Error> {
        let Some(out) = &self.inner.outgoing else {
            return Ok(());
        };
        out.reserve(bytes)
            .map_err(|(queued, limit)| Error::limit("outgoing queue", queued, limit))
    }

    /// The guard of the call being served on this thread, or a new default
    /// one outside any call.
    pub fn current() -> Guard {
        CURRENT.with(|c| c.borrow().clone()).unwrap_or_default()
    }

    /// Runs `f` with `self` as the current guard (so `new_client` inside it
    /// uses `self`).
    pub fn enter<R>(&self, f: impl FnOnce() -> R) -> R {
        let prev = CURRENT.with(|c| c.replace(Some(self.clone())));
        let _restore = Restore(prev);
        f()
    }

    /// Creates a guarded capability of type `C` for `server`.
    pub fn client_from_rc<C, S>(&self, server: Rc<S>) -> C
    where
        C: FromServer<S>,
    {
        self.wrap(C::from_server(server))
    }

    fn wrap<C: FromClientHook, D: Server + Clone + 'static>(&self, inner: D) -> C {
        let dispatch = GuardedDispatch {
            inner,
            guard: self.clone(),
        };
        let hook: GuardedHook = capnp_rpc::new_client_from_rc::<GuardedHook, _>(Rc::new(dispatch));
        C::new(hook.0)
    }

    /// The actor-wide counters this guard reports to.
    pub fn actor(&self) -> &Arc<ActorCalls> {
        &self.inner.actor
    }

    /// How long each call through this guard may run, if the actor has a
    /// call deadline.
    pub fn deadline(&self) -> Option<Duration> {
        self.inner.actor.deadline
    }

    /// This connection's memory budget, if it has one.
    pub fn memory(&self) -> Option<&Arc<Quota>> {
        self.inner.memory.as_ref()
    }

    /// Calls this guard's connection has in flight.
    pub fn in_flight(&self) -> u32 {
        self.inner.in_flight.get()
    }

    fn begin(&self) -> Result<CallToken, Error> {
        let g = &self.inner;
        if g.actor.draining.load(Ordering::Acquire) {
            return Err(Error::ShuttingDown);
        }
        if g.actor.fence.as_ref().is_some_and(Fence::is_exited) {
            return Err(Error::Disconnected(ENDED_INCARNATION.into()));
        }
        let n = g.in_flight.get() + 1;
        if let Some(max) = g.max_in_flight {
            if n > max {
                return Err(Error::limit("calls in flight", n, max));
            }
        }
        g.in_flight.set(n);
        g.actor.in_flight.fetch_add(1, Ordering::AcqRel);
        Ok(CallToken {
            guard: self.clone(),
        })
    }
}

struct Restore(Option<Guard>);

impl Drop for Restore {
    fn drop(&mut self) {
        let prev = self.0.take();
        CURRENT.with(|c| *c.borrow_mut() = prev);
    }
}

/// Counts one call in flight; dropping it (completion or cancellation)
/// ends the call.
struct CallToken {
    guard: Guard,
}

impl Drop for CallToken {
    fn drop(&mut self) {
        let g = &self.guard.inner;
        g.in_flight.set(g.in_flight.get().saturating_sub(1));
        g.served.set(g.served.get() + 1);
        g.actor.served.fetch_add(1, Ordering::AcqRel);
        if g.actor.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            g.actor.idle.notify_waiters();
        }
    }
}

/// The guarded server: wraps the generated `ServerDispatch`.
struct GuardedDispatch<D> {
    inner: D,
    guard: Guard,
}

#[derive(Clone)]
struct GuardedRef<D>(Rc<GuardedDispatch<D>>);

impl<D> std::ops::Deref for GuardedRef<D> {
    type Target = GuardedDispatch<D>;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl<D: Server + Clone + 'static> Server for GuardedRef<D> {
    fn dispatch_call(
        self,
        interface_id: u64,
        method_id: u16,
        params: Params<any_pointer::Owned>,
        results: Results<any_pointer::Owned>,
    ) -> DispatchCallResult {
        let guard = self.0.guard.clone();
        let token = match guard.begin() {
            Ok(t) => t,
            Err(e) => return DispatchCallResult::new(Promise::err(e.into()), false),
        };
        let timing = guard.inner.actor.stats.as_ref().map(|s| Timing {
            slot: s.slot(interface_id, method_id),
            start: std::time::Instant::now(),
        });
        let inner = self.0.inner.clone();
        let dispatched = guard.enter(|| {
            catch_unwind(AssertUnwindSafe(|| {
                inner.dispatch_call(interface_id, method_id, params, results)
            }))
        });
        match dispatched {
            Ok(DispatchCallResult {
                promise,
                is_streaming,
            }) => {
                let call = GuardedCall {
                    promise,
                    deadline: guard.inner.actor.deadline,
                    timer: None,
                    fenced: None,
                    token,
                    method: (interface_id, method_id),
                    timing,
                };
                DispatchCallResult::new(Promise::from_future(call), is_streaming)
            }
            Err(panic) => DispatchCallResult::new(Promise::err(panicked(&guard, panic)), false),
        }
    }

    fn as_ptr(&self) -> usize {
        // The inner server's address, so that an actor can recognise its own
        // capabilities when they come back (see `capnp_rpc::CapabilityServerSet`).
        self.0.inner.as_ptr()
    }
}

/// Adapter so `capnp_rpc::new_client_from_rc` builds the local hook for us.
struct GuardedHook(Box<DynClientHook>);

impl FromClientHook for GuardedHook {
    fn new(hook: Box<DynClientHook>) -> Self {
        GuardedHook(hook)
    }
    fn into_client_hook(self) -> Box<DynClientHook> {
        self.0
    }
    fn as_client_hook(&self) -> &DynClientHook {
        &*self.0
    }
}

impl<D: Server + Clone + 'static> FromServer<GuardedDispatch<D>> for GuardedHook {
    type Dispatch = GuardedRef<D>;
    fn from_server(s: Rc<GuardedDispatch<D>>) -> GuardedRef<D> {
        GuardedRef(s)
    }
}

/// One guarded call in progress.
struct GuardedCall {
    promise: Promise<(), capnp::Error>,
    deadline: Option<Duration>,
    /// Started when the call first has to wait: most calls finish on their
    /// first poll and never need one.
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
    /// A supervised incarnation's end, watched once the call has to wait.
    fenced: Option<Pin<Box<WaitForCancellationFutureOwned>>>,
    token: CallToken,
    method: (u64, u16),
    /// Set when the actor records call durations.
    timing: Option<Timing>,
}

impl Drop for GuardedCall {
    fn drop(&mut self) {
        if let Some(t) = &self.timing {
            if let Some(stats) = &self.token.guard.inner.actor.stats {
                let nanos = u64::try_from(t.start.elapsed().as_nanos()).unwrap_or(u64::MAX);
                stats.record(t.slot, self.method, nanos);
            }
        }
    }
}

impl Future for GuardedCall {
    type Output = Result<(), capnp::Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        let guard = this.token.guard.clone();
        let polled =
            guard.enter(|| catch_unwind(AssertUnwindSafe(|| Pin::new(&mut this.promise).poll(cx))));
        match polled {
            Ok(Poll::Ready(Err(e))) if e.kind == capnp::ErrorKind::Unimplemented => {
                // The generated code's message names Rust types; say it in
                // schema terms.
                let (interface, method) = this.method;
                if let Some(t) = &mut this.timing {
                    t.slot = Slot::UNIMPLEMENTED;
                }
                return Poll::Ready(Err(capnp::Error::unimplemented(format!(
                    "method @{method} of interface {interface:#018x} is not implemented by this actor"
                ))));
            }
            Ok(Poll::Ready(r)) => return Poll::Ready(r),
            Ok(Poll::Pending) => {}
            Err(panic) => return Poll::Ready(Err(panicked(&guard, panic))),
        }
        if let Some(fence) = &guard.inner.actor.fence {
            let fenced = this
                .fenced
                .get_or_insert_with(|| Box::pin(fence.token().clone().cancelled_owned()));
            if fenced.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Err(Error::Disconnected(ENDED_INCARNATION.into()).into()));
            }
        }
        if let Some(limit) = this.deadline {
            let timer = this
                .timer
                .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
            if timer.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Err(Error::DeadlineExceeded(limit).into()));
            }
        }
        Poll::Pending
    }
}

fn panicked(guard: &Guard, panic: Box<dyn std::any::Any + Send>) -> capnp::Error {
    let msg = panic_message(&*panic);
    let err = Error::internal(format_args!("actor method panicked: {msg}")).into();
    // A supervised actor that restarts after a panic ends here, rather
    // than serving on with whatever state the panic left.
    if let Some(fence) = guard.inner.actor.fence.as_ref() {
        if fence.restarts_on_panic() {
            fence.exit(ChildExit::Panicked(msg));
        }
    }
    err
}

/// The text of a caught panic.
pub(crate) fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic payload".to_string())
}

/// What a call on an incarnation that has ended gets.
const ENDED_INCARNATION: &str =
    "the actor was restarted; this capability belonged to its previous incarnation";
