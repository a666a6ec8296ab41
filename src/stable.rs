//! A capability whose target can be swapped: what a supervised actor's
//! clients and a reconnecting connection's clients hold.
//!
//! [`Stable`] is a `ClientHook` that forwards every call to its current
//! target, the actor's capability of the moment. Forwarding happens at the
//! hook level (`new_call` returns the target's own request), so a call's
//! pipeline is the target's pipeline and a chain of dependent calls through
//! a stable capability still leaves in one flight.
//!
//! Its owner (a supervisor, a reconnecting connection) moves it between
//! three states:
//!
//! - **up**: calls go straight to the target;
//! - **down** (restarting, reconnecting): each call is queued on a future
//!   client that resolves to the next target, or fails with
//!   [`Error::Restarting`] once the configured wait has passed (at once if
//!   the wait is zero);
//! - **closed**: calls fail at once with the reason given.
//!
//! A call whose target dies while it is in flight fails with
//! [`Error::Restarting`] (kind `disconnected`, safe to retry), unless the
//! stable capability has been closed meanwhile, in which case it gets the
//! reason. So do calls pipelined on its results that were in flight (a
//! whole chain sent before a crash fails retryably). Capabilities obtained
//! *through* a call (pipelined results, an actor's objects) belong to the
//! target that made them: a call made on one after that target is gone
//! fails with a plain `disconnected` error, since retrying it cannot help.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use capnp::any_pointer;
use capnp::capability::{FromClientHook, Promise, RemotePromise, Request};
use capnp::private::capability::{
    ClientHook, ParamsHook, PipelineHook, PipelineOp, RequestHook, ResultsHook,
};
use futures::channel::oneshot;
use futures::TryFutureExt;

use crate::Error;

/// Whether the target of the moment is still alive (its connection open,
/// its incarnation not fenced), asked when a call on it fails.
pub(crate) type Alive = Rc<dyn Fn() -> bool>;

/// A swappable capability; clones share the target. See the module docs.
#[derive(Clone)]
pub(crate) struct Stable {
    state: Rc<RefCell<State>>,
}

struct State {
    target: Target,
    /// Bumped on every change of target, so that a failure of a call sent
    /// to an old target is recognised as such.
    generation: u64,
    /// How long a call made while down waits for the next target.
    wait: Duration,
    /// Calls queued while down, waiting for the next target.
    waiters: Vec<oneshot::Sender<capnp::Result<Box<dyn ClientHook>>>>,
}

enum Target {
    Up {
        hook: Box<dyn ClientHook>,
        alive: Alive,
        /// Reached over a connection: its own errors arrive marked as
        /// remote, so an unmarked `disconnected` is the connection's.
        remote: bool,
    },
    Down {
        why: String,
    },
    Closed(capnp::Error),
}

impl Stable {
    /// A stable capability that starts down (`why` says what it waits
    /// for); calls made while it is down wait up to `wait`.
    pub(crate) fn new(wait: Duration, why: impl Into<String>) -> Self {
        Stable {
            state: Rc::new(RefCell::new(State {
                target: Target::Down { why: why.into() },
                generation: 0,
                wait,
                waiters: Vec::new(),
            })),
        }
    }

    /// A typed client of this capability.
    pub(crate) fn client<C: FromClientHook>(&self) -> C {
        C::new(Box::new(self.clone()))
    }

    /// Points the capability at `hook`, over a connection if `remote`;
    /// calls queued while down go there.
    pub(crate) fn set_up(&self, hook: Box<dyn ClientHook>, alive: Alive, remote: bool) {
        let waiters = {
            let mut s = self.state.borrow_mut();
            s.generation += 1;
            s.target = Target::Up {
                hook: hook.add_ref(),
                alive,
                remote,
            };
            std::mem::take(&mut s.waiters)
        };
        for w in waiters {
            let _ = w.send(Ok(hook.add_ref()));
        }
    }

    /// The target is gone and another is on its way (`why` says what is
    /// happening, for the errors of calls that cannot wait).
    pub(crate) fn set_down(&self, why: impl Into<String>) {
        let mut s = self.state.borrow_mut();
        if matches!(s.target, Target::Closed(_)) {
            return;
        }
        s.generation += 1;
        s.target = Target::Down { why: why.into() };
    }

    /// No target will come: every call, queued or new, fails with `err`.
    pub(crate) fn close(&self, err: capnp::Error) {
        let waiters = {
            let mut s = self.state.borrow_mut();
            if matches!(s.target, Target::Closed(_)) {
                return;
            }
            s.generation += 1;
            s.target = Target::Closed(err.clone());
            std::mem::take(&mut s.waiters)
        };
        for w in waiters {
            let _ = w.send(Err(err.clone()));
        }
    }

    /// Whether [`Stable::close`] has been called.
    pub(crate) fn is_closed(&self) -> bool {
        matches!(self.state.borrow().target, Target::Closed(_))
    }

    /// The hook calls go to now, and the generation it belongs to.
    fn current(&self) -> (Box<dyn ClientHook>, u64) {
        let mut s = self.state.borrow_mut();
        let generation = s.generation;
        // A target that has died before its owner noticed is as good as
        // down: the call waits for the next one rather than failing.
        if let Target::Up { alive, .. } = &s.target {
            if !alive() {
                s.target = Target::Down {
                    why: "its target went away".into(),
                };
            }
        }
        let hook = match &s.target {
            Target::Up { hook, .. } => hook.add_ref(),
            Target::Closed(e) => capnp_rpc::new_broken_cap(e.clone()).hook,
            Target::Down { why } if s.wait.is_zero() => {
                capnp_rpc::new_broken_cap(Error::Restarting(why.clone()).into()).hook
            }
            Target::Down { why } => {
                let why = why.clone();
                let (tx, rx) = oneshot::channel();
                s.waiters.retain(|w| !w.is_canceled());
                s.waiters.push(tx);
                let wait = s.wait;
                let late = Error::Restarting(format!("{why}; not back within {wait:?}"));
                let next = async move {
                    tokio::select! {
                        r = rx => r.unwrap_or_else(|_| Err(late.into())).map(|hook| {
                            capnp::capability::Client::new(hook)
                        }),
                        () = tokio::time::sleep(wait) => Err(late.into()),
                    }
                };
                capnp_rpc::new_future_client::<capnp::capability::Client>(next).hook
            }
        };
        (hook, generation)
    }

    /// What a failure of a call sent to `generation`'s target becomes: a
    /// `disconnected` error of a target that is gone becomes
    /// [`Error::Restarting`], or the reason the capability was closed.
    fn rewrite(&self, generation: u64, e: capnp::Error) -> capnp::Error {
        if e.kind != capnp::ErrorKind::Disconnected || Error::is_restarting(&e) {
            return e;
        }
        let s = self.state.borrow();
        match &s.target {
            // Alive, and not the connection failing under the call: the
            // actor's own error.
            Target::Up { alive, remote, .. }
                if s.generation == generation
                    && alive()
                    && (!remote || e.extra.starts_with(REMOTE_PREFIX)) =>
            {
                e
            }
            Target::Closed(reason) => reason.clone(),
            Target::Up { .. } | Target::Down { .. } => {
                Error::Restarting(format!("its target went away: {}", e.extra)).into()
            }
        }
    }

    /// Whether `generation`'s target is the live one.
    fn live(&self, generation: u64) -> bool {
        let s = self.state.borrow();
        s.generation == generation && matches!(&s.target, Target::Up { alive, .. } if alive())
    }

    fn wrap<T: 'static>(
        &self,
        generation: u64,
        p: Promise<T, capnp::Error>,
    ) -> Promise<T, capnp::Error> {
        let this = self.clone();
        Promise::from_future(p.map_err(move |e| this.rewrite(generation, e)))
    }
}

/// How capnp-rpc marks an error that a peer sent (rather than one the
/// connection itself produced).
const REMOTE_PREFIX: &str = "remote exception: ";

impl ClientHook for Stable {
    fn add_ref(&self) -> Box<dyn ClientHook> {
        Box::new(self.clone())
    }

    fn new_call(
        &self,
        interface_id: u64,
        method_id: u16,
        size_hint: Option<capnp::MessageSize>,
    ) -> Request<any_pointer::Owned, any_pointer::Owned> {
        let (hook, generation) = self.current();
        let inner = hook.new_call(interface_id, method_id, size_hint).hook;
        Request::new(Box::new(StableRequest {
            stable: self.clone(),
            generation,
            inner,
        }))
    }

    fn call(
        &self,
        interface_id: u64,
        method_id: u16,
        params: Box<dyn ParamsHook>,
        results: Box<dyn ResultsHook>,
    ) -> Promise<(), capnp::Error> {
        let (hook, generation) = self.current();
        self.wrap(
            generation,
            hook.call(interface_id, method_id, params, results),
        )
    }

    fn get_brand(&self) -> usize {
        // Belongs to no connection: capnp-rpc exports it as a local
        // capability and calls it through `call`.
        0
    }

    fn get_ptr(&self) -> usize {
        Rc::as_ptr(&self.state) as usize
    }

    fn get_resolved(&self) -> Option<Box<dyn ClientHook>> {
        None
    }

    fn when_more_resolved(&self) -> Option<Promise<Box<dyn ClientHook>, capnp::Error>> {
        None
    }

    fn when_resolved(&self) -> Promise<(), capnp::Error> {
        Promise::ok(())
    }
}

/// A request built by the target of the moment; only its promise's
/// failure is rewritten (its pipeline is the target's own).
struct StableRequest {
    stable: Stable,
    generation: u64,
    inner: Box<dyn RequestHook>,
}

impl RequestHook for StableRequest {
    fn get(&mut self) -> any_pointer::Builder<'_> {
        self.inner.get()
    }

    fn get_brand(&self) -> usize {
        // `tail_send` is the target's, so its brand is too.
        self.inner.get_brand()
    }

    fn send(self: Box<Self>) -> RemotePromise<any_pointer::Owned> {
        let StableRequest {
            stable,
            generation,
            inner,
        } = *self;
        let mut sent = inner.send();
        sent.promise = stable.wrap(generation, sent.promise);
        // Calls pipelined on the results are in flight on the same target:
        // they too fail with `Restarting` if it dies under them.
        let pipeline = std::mem::replace(&mut sent.pipeline.hook, Box::new(NoPipeline));
        sent.pipeline = any_pointer::Pipeline::new(Box::new(StablePipeline {
            stable,
            generation,
            inner: pipeline,
        }));
        sent
    }

    fn send_streaming(self: Box<Self>) -> Promise<(), capnp::Error> {
        let StableRequest {
            stable,
            generation,
            inner,
        } = *self;
        stable.wrap(generation, inner.send_streaming())
    }

    fn tail_send(
        self: Box<Self>,
    ) -> Option<(u32, Promise<(), capnp::Error>, Box<dyn PipelineHook>)> {
        self.inner.tail_send()
    }
}

/// The pipeline of a call through a stable capability: its capabilities are
/// [`Tracked`] by the target's generation.
struct StablePipeline {
    stable: Stable,
    generation: u64,
    inner: Box<dyn PipelineHook>,
}

impl PipelineHook for StablePipeline {
    fn add_ref(&self) -> Box<dyn PipelineHook> {
        Box::new(StablePipeline {
            stable: self.stable.clone(),
            generation: self.generation,
            inner: self.inner.add_ref(),
        })
    }

    fn get_pipelined_cap(&self, ops: &[PipelineOp]) -> Box<dyn ClientHook> {
        Box::new(Tracked {
            stable: self.stable.clone(),
            generation: self.generation,
            inner: self.inner.get_pipelined_cap(ops),
        })
    }
}

/// A capability pipelined on a call through a stable capability. Calls
/// made on it while its target lives are rewritten as the stable
/// capability's own are (a call in flight when the target dies fails with
/// `Restarting`); calls made after, on an object of a dead target, fail
/// with its plain `disconnected`. Everything else is the inner
/// capability's, brand and pointer included, so that capnp-rpc still sees
/// it as its own when it is passed back in a call (and writes it as a
/// reference to the worker's object, not as a proxy).
struct Tracked {
    stable: Stable,
    generation: u64,
    inner: Box<dyn ClientHook>,
}

impl ClientHook for Tracked {
    fn add_ref(&self) -> Box<dyn ClientHook> {
        Box::new(Tracked {
            stable: self.stable.clone(),
            generation: self.generation,
            inner: self.inner.add_ref(),
        })
    }

    fn new_call(
        &self,
        interface_id: u64,
        method_id: u16,
        size_hint: Option<capnp::MessageSize>,
    ) -> Request<any_pointer::Owned, any_pointer::Owned> {
        let request = self.inner.new_call(interface_id, method_id, size_hint);
        if !self.stable.live(self.generation) {
            return request;
        }
        Request::new(Box::new(StableRequest {
            stable: self.stable.clone(),
            generation: self.generation,
            inner: request.hook,
        }))
    }

    fn call(
        &self,
        interface_id: u64,
        method_id: u16,
        params: Box<dyn ParamsHook>,
        results: Box<dyn ResultsHook>,
    ) -> Promise<(), capnp::Error> {
        let live = self.stable.live(self.generation);
        let promise = self.inner.call(interface_id, method_id, params, results);
        if live {
            self.stable.wrap(self.generation, promise)
        } else {
            promise
        }
    }

    fn get_brand(&self) -> usize {
        self.inner.get_brand()
    }

    fn get_ptr(&self) -> usize {
        self.inner.get_ptr()
    }

    fn get_resolved(&self) -> Option<Box<dyn ClientHook>> {
        self.inner.get_resolved()
    }

    fn when_more_resolved(&self) -> Option<Promise<Box<dyn ClientHook>, capnp::Error>> {
        self.inner.when_more_resolved()
    }

    fn when_resolved(&self) -> Promise<(), capnp::Error> {
        self.inner.when_resolved()
    }
}

/// Stands in for a pipeline while it is being wrapped.
struct NoPipeline;

impl PipelineHook for NoPipeline {
    fn add_ref(&self) -> Box<dyn PipelineHook> {
        Box::new(NoPipeline)
    }

    fn get_pipelined_cap(&self, _: &[PipelineOp]) -> Box<dyn ClientHook> {
        capnp_rpc::new_broken_cap(capnp::Error::failed("no pipeline".into())).hook
    }
}
