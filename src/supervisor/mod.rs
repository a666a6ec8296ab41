//! Supervision: actors restarted when they fail, behind capabilities that
//! stay valid across restarts (on the model of Erlang/OTP supervisors).
//!
//! A [`Supervisor`] starts children from [`ChildSpec`]s (local, virtual or
//! behind TCP) and watches them. When one ends (a panic in an actor that
//! restarts after panics, a lost link, the actor's own request), the
//! supervisor applies the child's [`Restart`] policy and its own
//! [`Strategy`], under a restart [`Intensity`]: more restarts than that
//! within its period and the supervisor stops every child and reports why
//! ([`Supervisor::exit`], and an error in the log).
//!
//! Clients hold a [`Supervised`] capability, which points at whichever
//! incarnation is current:
//!
//! - calls made while a child restarts wait for the new incarnation (up to
//!   [`ChildSpec::call_wait`]);
//! - calls in flight when an incarnation ends fail with
//!   [`Error::Restarting`] (`disconnected`, its
//!   message starting "actor restarting; retry"): safe to retry on the same
//!   capability, which then reaches the new incarnation;
//! - capabilities the old incarnation handed out (a tensor, a counter) fail
//!   with a plain `disconnected` error: they died with it. State that must
//!   survive goes in what the factory captures (the tensor worker's named
//!   objects live in its `WorkerState`);
//! - once the child is not restarted any more (its policy, or the
//!   supervisor stopped), calls fail with `disconnected` saying why.
//!
//! A chain of pipelined calls through a supervised capability is still one
//! round trip: the capability forwards each call to the incarnation's own
//! capability at the hook level.
//!
//! A supervisor lives on the thread that made it, which must run a tokio
//! `LocalSet` (see [`crate::block_on`]).
//!
//! # Examples
//!
//! ```
//! use capactor::schema::probe_capnp::probe;
//! use capactor::supervisor::{ChildSpec, Supervisor};
//!
//! capactor::block_on(async {
//!     let sup = Supervisor::new();
//!     let spec = ChildSpec::<probe::Client>::local("p", || capactor::actors::Probe::new("p"))
//!         .restart_on_panic(true);
//!     let p = sup.spawn(spec).await.unwrap();
//!     // The panic fails that call; the actor is restarted fresh.
//!     assert!(p.panic_request().send().promise.await.is_err());
//!     let mut req = p.echo_request();
//!     req.get().set_data(b"still here");
//!     req.send().promise.await.unwrap();
//!     assert_eq!(p.restarts(), 1);
//! }).unwrap();
//! ```

mod child;
mod exit;

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::fmt;
use std::rc::{Rc, Weak};
use std::time::{Duration, Instant};

use capnp::capability::FromClientHook;
use tokio::sync::mpsc;
use tokio::task::AbortHandle;
use tokio_util::sync::CancellationToken;

pub use child::{ChildSpec, Restart};
pub use exit::ChildExit;
pub(crate) use exit::Fence;

use crate::stable::Stable;
use crate::{Error, Result};

use child::{Incarnation, StartFn};

/// Which children a supervisor restarts when one ends (OTP's strategies).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Strategy {
    /// Only the child that ended. The default.
    #[default]
    OneForOne,
    /// Every child: the others are stopped and all are started again (for
    /// children that only make sense together).
    OneForAll,
}

/// How many restarts a supervisor makes before it gives up: at most
/// `max_restarts` within any `period`. Failed starts count.
///
/// # Examples
///
/// ```
/// let i = capactor::supervisor::Intensity::default();
/// assert_eq!((i.max_restarts, i.period.as_secs()), (5, 5));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Intensity {
    /// Restarts allowed within `period`; one more stops the supervisor.
    /// Default 5.
    pub max_restarts: u32,
    /// The sliding window restarts are counted over. Default 5 s.
    pub period: Duration,
}

impl Default for Intensity {
    fn default() -> Self {
        Intensity {
            max_restarts: 5,
            period: Duration::from_secs(5),
        }
    }
}

impl Intensity {
    /// At most `max_restarts` within `period`.
    pub fn new(max_restarts: u32, period: Duration) -> Self {
        Intensity {
            max_restarts,
            period,
        }
    }
}

/// Why a supervisor stopped.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SupervisorExit {
    /// A child needed more restarts than the [`Intensity`] allows.
    IntensityExceeded {
        /// The child whose restart went over the limit.
        child: String,
        /// How that child last ended.
        last: ChildExit,
        /// The intensity that was exceeded.
        intensity: Intensity,
    },
    /// [`Supervisor::stop`] was called.
    Stopped,
}

impl fmt::Display for SupervisorExit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SupervisorExit::IntensityExceeded {
                child,
                last,
                intensity,
            } => write!(
                f,
                "restart intensity exceeded: more than {} restarts in {:?}; child {child:?} {last}",
                intensity.max_restarts, intensity.period
            ),
            SupervisorExit::Stopped => write!(f, "stopped"),
        }
    }
}

/// Configures a [`Supervisor`].
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use capactor::supervisor::{Intensity, Strategy, Supervisor};
///
/// capactor::block_on(async {
///     let sup = Supervisor::builder()
///         .strategy(Strategy::OneForAll)
///         .intensity(Intensity::new(3, Duration::from_secs(10)))
///         .build();
///     # drop(sup);
/// }).unwrap();
/// ```
#[derive(Clone, Debug, Default)]
pub struct Builder {
    strategy: Strategy,
    intensity: Intensity,
}

impl Builder {
    /// Which children restart together. Default [`Strategy::OneForOne`].
    pub fn strategy(&mut self, strategy: Strategy) -> &mut Self {
        self.strategy = strategy;
        self
    }

    /// How many restarts before the supervisor gives up. Default 5 in 5 s.
    pub fn intensity(&mut self, intensity: Intensity) -> &mut Self {
        self.intensity = intensity;
        self
    }

    /// Starts the supervisor on the current thread's `LocalSet`.
    ///
    /// # Panics
    ///
    /// Panics outside a tokio `LocalSet` (see [`crate::block_on`]).
    pub fn build(&mut self) -> Supervisor {
        let (events, rx) = mpsc::unbounded_channel();
        let inner = Rc::new(Inner {
            strategy: self.strategy,
            intensity: self.intensity,
            children: RefCell::default(),
            window: RefCell::default(),
            exit: RefCell::default(),
            stopped: CancellationToken::new(),
            events,
        });
        tokio::task::spawn_local(run(Rc::downgrade(&inner), rx));
        Supervisor { inner }
    }
}

/// Starts, watches and restarts actors; see the [module docs](self).
///
/// `!Send`: lives on the thread (and `LocalSet`) that built it. Dropping it
/// stops its children.
pub struct Supervisor {
    inner: Rc<Inner>,
}

impl fmt::Debug for Supervisor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Supervisor")
            .field("strategy", &self.inner.strategy)
            .field("intensity", &self.inner.intensity)
            .field("children", &self.inner.children.borrow().len())
            .field("exit", &self.inner.exit.borrow())
            .finish()
    }
}

impl Default for Supervisor {
    fn default() -> Self {
        Supervisor::new()
    }
}

impl Supervisor {
    /// A one-for-one supervisor allowing 5 restarts in 5 s.
    ///
    /// # Panics
    ///
    /// Panics outside a tokio `LocalSet` (see [`crate::block_on`]).
    pub fn new() -> Self {
        Builder::default().build()
    }

    /// Configures a supervisor.
    pub fn builder() -> Builder {
        Builder::default()
    }

    /// Starts the child `spec` describes and supervises it from now on.
    ///
    /// # Errors
    ///
    /// [`Error::StartFailed`] if its first start fails (the factory
    /// panicked, its port could not be bound), which is not retried;
    /// [`Error::Invalid`] if the supervisor has stopped.
    pub async fn spawn<C: FromClientHook + 'static>(
        &self,
        spec: ChildSpec<C>,
    ) -> Result<Supervised<C>> {
        if let Some(exit) = self.exit() {
            return Err(Error::invalid(format!(
                "the supervisor has stopped: {exit}"
            )));
        }
        let stable = Stable::new(spec.call_wait, format!("{} is starting", spec.name));
        let fence = Fence::new(spec.restart_on_panic);
        let inc = (spec.start)(fence.clone())
            .await
            .map_err(|why| Error::StartFailed(format!("{}: {why}", spec.name)))?;
        let shared = Rc::new(ChildShared::default());
        let index = {
            let mut children = self.inner.children.borrow_mut();
            children.push(Slot {
                name: spec.name,
                start: spec.start,
                restart: spec.restart,
                restart_on_panic: spec.restart_on_panic,
                stable: stable.clone(),
                generation: 0,
                running: None,
                shared: shared.clone(),
            });
            children.len() - 1
        };
        self.inner.install(index, fence, inc);
        Ok(Supervised {
            client: stable.client(),
            shared,
        })
    }

    /// Why the supervisor stopped, once it has.
    pub fn exit(&self) -> Option<SupervisorExit> {
        self.inner.exit.borrow().clone()
    }

    /// Waits until the supervisor stops, and says why.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe.
    pub async fn stopped(&self) -> SupervisorExit {
        self.inner.stopped.cancelled().await;
        self.exit().unwrap_or(SupervisorExit::Stopped)
    }

    /// Restarts made so far, failed starts included.
    pub fn restarts(&self) -> u64 {
        self.inner
            .children
            .borrow()
            .iter()
            .map(|c| c.shared.restarts.get())
            .sum()
    }

    /// Stops every child (their capabilities then fail with
    /// `disconnected`) and the supervisor.
    pub fn stop(&self) {
        self.inner.shut_down(SupervisorExit::Stopped);
    }
}

/// A capability to a supervised actor: it reaches whichever incarnation is
/// current (see the [module docs](self)). Derefs to the typed client `C`;
/// clones of that client are stable too.
pub struct Supervised<C> {
    client: C,
    shared: Rc<ChildShared>,
}

impl<C> fmt::Debug for Supervised<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Supervised")
            .field("restarts", &self.shared.restarts.get())
            .field("last_exit", &self.shared.last_exit.borrow())
            .finish_non_exhaustive()
    }
}

impl<C> std::ops::Deref for Supervised<C> {
    type Target = C;
    fn deref(&self) -> &C {
        &self.client
    }
}

impl<C> Supervised<C> {
    /// The stable capability.
    pub fn client(&self) -> &C {
        &self.client
    }

    /// Times this child has been restarted (failed starts included).
    pub fn restarts(&self) -> u64 {
        self.shared.restarts.get()
    }

    /// How its last incarnation ended, if one has.
    pub fn last_exit(&self) -> Option<ChildExit> {
        self.shared.last_exit.borrow().clone()
    }

    /// Whether an incarnation is serving now.
    pub fn is_running(&self) -> bool {
        self.shared.running.get()
    }

    /// Ends the current incarnation as a crash would ([`ChildExit::Killed`]):
    /// its calls in flight fail, and the supervisor restarts it as its
    /// policy says (counted against the intensity). For tests and for
    /// operators; returns `false` if no incarnation is running.
    pub fn kill(&self) -> bool {
        self.shared
            .fence
            .borrow()
            .as_ref()
            .is_some_and(|f| f.exit(ChildExit::Killed))
    }
}

/// What a child's [`Supervised`] handles can see.
#[derive(Default)]
struct ChildShared {
    restarts: Cell<u64>,
    last_exit: RefCell<Option<ChildExit>>,
    running: Cell<bool>,
    /// The current incarnation's fence.
    fence: RefCell<Option<Fence>>,
}

struct Inner {
    strategy: Strategy,
    intensity: Intensity,
    children: RefCell<Vec<Slot>>,
    /// When the restarts within the intensity's period happened.
    window: RefCell<VecDeque<Instant>>,
    exit: RefCell<Option<SupervisorExit>>,
    stopped: CancellationToken,
    events: mpsc::UnboundedSender<Event>,
}

struct Slot {
    name: String,
    start: StartFn,
    restart: Restart,
    restart_on_panic: bool,
    stable: Stable,
    /// Bumped for every incarnation, so that news of an old one is ignored.
    generation: u64,
    running: Option<Running>,
    shared: Rc<ChildShared>,
}

struct Running {
    fence: Fence,
    keep: Box<dyn std::any::Any>,
    watcher: AbortHandle,
}

impl Running {
    fn stop(self, why: ChildExit) {
        self.fence.exit(why);
        self.watcher.abort();
        drop(self.keep);
    }
}

/// An incarnation ended.
struct Event {
    child: usize,
    generation: u64,
    exit: ChildExit,
}

async fn run(inner: Weak<Inner>, mut rx: mpsc::UnboundedReceiver<Event>) {
    while let Some(event) = rx.recv().await {
        let Some(inner) = inner.upgrade() else { return };
        inner.on_exit(event).await;
    }
}

impl Inner {
    /// Makes `inc` child `index`'s current incarnation.
    fn install(&self, index: usize, fence: Fence, inc: Incarnation) {
        let Incarnation {
            hook,
            alive,
            remote,
            ended,
            keep,
        } = inc;
        let mut children = self.children.borrow_mut();
        let slot = &mut children[index];
        slot.generation += 1;
        slot.stable.set_up(hook, alive, remote);
        slot.shared.running.set(true);
        *slot.shared.fence.borrow_mut() = Some(fence.clone());
        let events = self.events.clone();
        let generation = slot.generation;
        let watcher = tokio::task::spawn_local(async move {
            let exit = ended.await;
            let _ = events.send(Event {
                child: index,
                generation,
                exit,
            });
        });
        slot.running = Some(Running {
            fence,
            keep,
            watcher: watcher.abort_handle(),
        });
    }

    /// Stops child `index`'s incarnation (if any); its capability waits for
    /// the next one.
    fn take_down(&self, index: usize, why: ChildExit, waiting: String) {
        let running = {
            let mut children = self.children.borrow_mut();
            let slot = &mut children[index];
            slot.generation += 1;
            slot.stable.set_down(waiting);
            slot.shared.running.set(false);
            *slot.shared.last_exit.borrow_mut() = Some(why.clone());
            slot.running.take()
        };
        if let Some(r) = running {
            r.stop(why);
        }
    }

    async fn on_exit(self: &Rc<Self>, event: Event) {
        if self.exit.borrow().is_some() {
            return;
        }
        let (name, restart) = {
            let children = self.children.borrow();
            let slot = &children[event.child];
            if slot.generation != event.generation {
                return;
            }
            *slot.shared.last_exit.borrow_mut() = Some(event.exit.clone());
            (slot.name.clone(), slot.restart)
        };
        let exit = event.exit;
        tracing::warn!(child = %name, "supervised actor {exit}");
        let again = match restart {
            Restart::Permanent => true,
            Restart::Transient => !exit.is_normal(),
            Restart::Never => false,
        };
        self.take_down(
            event.child,
            exit.clone(),
            format!("{name} is restarting ({exit})"),
        );
        if !again {
            let children = self.children.borrow();
            children[event.child].stable.close(
                Error::Disconnected(format!(
                    "actor {name} {exit}, and its restart policy ({restart:?}) does not restart it"
                ))
                .into(),
            );
            return;
        }
        let targets: Vec<usize> = match self.strategy {
            Strategy::OneForOne => vec![event.child],
            Strategy::OneForAll => {
                let n = self.children.borrow().len();
                for other in (0..n).filter(|&i| i != event.child) {
                    let waiting = format!("restarting with {name}");
                    self.take_down(other, ChildExit::Stopped, waiting);
                }
                (0..n)
                    .filter(|&i| !self.children.borrow()[i].stable.is_closed())
                    .collect()
            }
        };
        for index in targets {
            if !self.restart_child(index).await {
                return;
            }
        }
    }

    /// Starts child `index` again, counting every attempt against the
    /// intensity; false once the supervisor has given up.
    async fn restart_child(self: &Rc<Self>, index: usize) -> bool {
        loop {
            if self.exit.borrow().is_some() {
                return false;
            }
            if !self.count_restart() {
                let (child, last) = {
                    let children = self.children.borrow();
                    let slot = &children[index];
                    let last = slot.shared.last_exit.borrow().clone();
                    (slot.name.clone(), last.unwrap_or(ChildExit::Stopped))
                };
                self.shut_down(SupervisorExit::IntensityExceeded {
                    child,
                    last,
                    intensity: self.intensity,
                });
                return false;
            }
            let (start, fence, shared, name) = {
                let children = self.children.borrow();
                let slot = &children[index];
                slot.shared.restarts.set(slot.shared.restarts.get() + 1);
                (
                    slot.start.clone(),
                    Fence::new(slot.restart_on_panic),
                    slot.shared.clone(),
                    slot.name.clone(),
                )
            };
            match start(fence.clone()).await {
                Ok(inc) => {
                    if self.exit.borrow().is_some() {
                        return false;
                    }
                    self.install(index, fence, inc);
                    tracing::info!(child = %name, "supervised actor restarted");
                    return true;
                }
                Err(why) => {
                    tracing::warn!(child = %name, "supervised actor failed to start: {why}");
                    *shared.last_exit.borrow_mut() = Some(ChildExit::FailedStart(why));
                }
            }
        }
    }

    /// Counts a restart; false if it would go over the intensity.
    fn count_restart(&self) -> bool {
        let now = Instant::now();
        let mut window = self.window.borrow_mut();
        while window
            .front()
            .is_some_and(|&t| now.duration_since(t) > self.intensity.period)
        {
            window.pop_front();
        }
        if window.len() >= self.intensity.max_restarts as usize {
            return false;
        }
        window.push_back(now);
        true
    }

    /// Stops every child and the supervisor, for `why`.
    fn shut_down(&self, why: SupervisorExit) {
        if self.exit.borrow().is_some() {
            return;
        }
        if let SupervisorExit::IntensityExceeded { .. } = why {
            tracing::error!("supervisor stopping its children: {why}");
        }
        *self.exit.borrow_mut() = Some(why.clone());
        let running: Vec<Running> = {
            let mut children = self.children.borrow_mut();
            children
                .iter_mut()
                .filter_map(|slot| {
                    slot.generation += 1;
                    slot.shared.running.set(false);
                    slot.stable.close(
                        Error::Disconnected(format!("its supervisor stopped: {why}")).into(),
                    );
                    slot.running.take()
                })
                .collect()
        };
        for r in running {
            r.stop(ChildExit::Stopped);
        }
        self.stopped.cancel();
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        if self.exit.get_mut().is_none() {
            *self.exit.get_mut() = Some(SupervisorExit::Stopped);
        }
        for slot in self.children.get_mut().iter_mut() {
            slot.stable
                .close(Error::Disconnected("its supervisor was dropped".into()).into());
            if let Some(r) = slot.running.take() {
                r.stop(ChildExit::Stopped);
            }
        }
        self.stopped.cancel();
    }
}
