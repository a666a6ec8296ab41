//! Why an incarnation of a supervised actor ended, and the fence that ends
//! it.

use std::fmt;
use std::sync::{Arc, Mutex};

use tokio_util::sync::CancellationToken;

/// Why one incarnation of a supervised actor ended.
///
/// # Examples
///
/// ```
/// use capactor::supervisor::ChildExit;
///
/// assert!(ChildExit::Normal.is_normal());
/// assert!(!ChildExit::Panicked("boom".into()).is_normal());
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ChildExit {
    /// A method panicked, and the actor is one that restarts after a panic
    /// ([`ChildSpec::restart_on_panic`](super::ChildSpec::restart_on_panic)).
    /// Holds the panic message.
    Panicked(String),
    /// The actor asked for a fresh start
    /// ([`ActorCalls::request_restart`](crate::call::ActorCalls::request_restart)).
    RestartRequested,
    /// The actor ended on its own accord: it asked to stop
    /// ([`ActorCalls::request_stop`](crate::call::ActorCalls::request_stop)),
    /// or its worker process exited with status 0.
    Normal,
    /// Its connection, link or process was lost; the text says how.
    Lost(String),
    /// It could not be started (its factory panicked, its port could not
    /// be bound, ...); the text says why.
    FailedStart(String),
    /// [`Supervised::kill`](super::Supervised::kill) ended it, as a crash
    /// would.
    Killed,
    /// Its supervisor stopped it (a one-for-all restart, or the supervisor
    /// shutting down).
    Stopped,
}

impl ChildExit {
    /// True for [`ChildExit::Normal`]: the exit a transient child is not
    /// restarted after.
    pub fn is_normal(&self) -> bool {
        matches!(self, ChildExit::Normal)
    }
}

impl fmt::Display for ChildExit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChildExit::Panicked(msg) => write!(f, "panicked: {msg}"),
            ChildExit::RestartRequested => write!(f, "asked to be restarted"),
            ChildExit::Normal => write!(f, "exited normally"),
            ChildExit::Lost(how) => write!(f, "lost: {how}"),
            ChildExit::FailedStart(why) => write!(f, "failed to start: {why}"),
            ChildExit::Killed => write!(f, "was killed"),
            ChildExit::Stopped => write!(f, "stopped by its supervisor"),
        }
    }
}

/// Ends one incarnation of a supervised actor: once it is set, the guard
/// refuses the incarnation's calls and fails those in flight, and the
/// supervisor sees why. `Send`; clones share it.
#[derive(Clone, Debug)]
pub(crate) struct Fence {
    inner: Arc<FenceInner>,
}

#[derive(Debug)]
struct FenceInner {
    token: CancellationToken,
    exit: Mutex<Option<ChildExit>>,
    restart_on_panic: bool,
}

impl Fence {
    /// A fence; `restart_on_panic` makes a panic in a method end the
    /// incarnation.
    pub(crate) fn new(restart_on_panic: bool) -> Self {
        Fence {
            inner: Arc::new(FenceInner {
                token: CancellationToken::new(),
                exit: Mutex::new(None),
                restart_on_panic,
            }),
        }
    }

    /// Ends the incarnation for `why`, unless it has ended already.
    /// Returns whether this call ended it.
    pub(crate) fn exit(&self, why: ChildExit) -> bool {
        let mut exit = self.inner.exit.lock().unwrap_or_else(|e| e.into_inner());
        if exit.is_some() {
            return false;
        }
        *exit = Some(why);
        self.inner.token.cancel();
        true
    }

    /// Why the incarnation ended, if it has.
    pub(crate) fn exited(&self) -> Option<ChildExit> {
        self.inner
            .exit
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// True once the incarnation has ended.
    pub(crate) fn is_exited(&self) -> bool {
        self.inner.token.is_cancelled()
    }

    /// Waits until the incarnation has ended, and says why.
    pub(crate) async fn wait(&self) -> ChildExit {
        self.inner.token.cancelled().await;
        self.exited().unwrap_or(ChildExit::Stopped)
    }

    /// Cancelled when the incarnation ends.
    pub(crate) fn token(&self) -> &CancellationToken {
        &self.inner.token
    }

    /// Whether a panic in a method ends the incarnation.
    pub(crate) fn restarts_on_panic(&self) -> bool {
        self.inner.restart_on_panic
    }
}
