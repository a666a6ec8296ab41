//! The one error model of capactor, and its mapping onto `capnp::Error`.
//!
//! Code inside the runtime and the actors returns [`Error`]. It becomes a
//! `capnp::Error` in exactly one place, [`From<Error> for capnp::Error`],
//! which decides what crosses the wire: a stable kind (`failed`,
//! `overloaded`, `disconnected`, `unimplemented`) and a message about the
//! caller's own request. Internal causes (I/O errors, panics) are logged on
//! the worker under an error id and only the id crosses the wire.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// A result whose error is capactor's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in capactor, as the caller should see it.
///
/// # Examples
///
/// ```
/// use capactor::Error;
///
/// let e = Error::limit("tensor size", 1 << 20, 1 << 10);
/// assert_eq!(e.to_string(), "tensor size limit exceeded: 1048576 > 1024");
/// let wire: capnp::Error = e.into();
/// assert_eq!(wire.kind, capnp::ErrorKind::Overloaded);
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The caller asked for something invalid; the message says what.
    #[error("{0}")]
    Invalid(String),

    /// A configured limit was hit.
    #[error("{what} limit exceeded: {requested} > {limit}")]
    Limit {
        /// What is limited ("message size", "memory quota", ...).
        what: &'static str,
        /// What the request needed.
        requested: u64,
        /// The configured limit.
        limit: u64,
    },

    /// The credential offered to a gate was rejected.
    #[error("credential rejected")]
    Unauthorized,

    /// The peer is gone, the link was cut, or a heartbeat went unanswered.
    #[error("disconnected: {0}")]
    Disconnected(String),

    /// The actor is draining for shutdown and takes no new calls.
    #[error("actor is shutting down")]
    ShuttingDown,

    /// A call ran longer than the configured deadline.
    #[error("call exceeded its deadline of {0:?}")]
    DeadlineExceeded(Duration),

    /// The actor behind a stable capability (a supervised actor, a
    /// reconnecting client) could not take this call: it was restarting or
    /// its connection was being re-made when the call was made or while it
    /// was in flight. A call in flight may or may not have run; retrying
    /// reaches the new incarnation. Crosses as `disconnected`, its message
    /// starting with [`RESTARTING`]; test for it with [`Error::is_restarting`].
    #[error("actor restarting; retry ({0})")]
    Restarting(String),

    /// An actor could not be started: its factory panicked, or what it
    /// needs (a port, a process) could not be had. Local only: across the
    /// wire it becomes an [`Error::Internal`] (the cause may name paths).
    #[error("actor failed to start: {0}")]
    StartFailed(String),

    /// An error returned by a remote peer, kept as it arrived.
    #[error("{0}")]
    Remote(capnp::Error),

    /// Something failed inside the worker. The details were logged there
    /// under `id`; only the id is shown to the caller.
    #[error("internal error (id {id})")]
    Internal {
        /// Matches the `error_id` field of the worker's log line.
        id: ErrorId,
    },

    /// A client API was used where it cannot run (outside an event loop it
    /// can use, or `block_on` inside a tokio runtime); the message says
    /// what to write instead.
    #[error("{0}")]
    EventLoop(&'static str),

    /// The [`Runtime`](crate::Runtime) that owned a [`Handle`](crate::Handle)
    /// has shut down.
    #[error("disconnected: the capactor runtime this handle belongs to has shut down")]
    RuntimeStopped,

    /// A local I/O error (binding, connecting, reading a file).
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

impl Error {
    /// Shorthand for [`Error::Invalid`].
    pub fn invalid(msg: impl Into<String>) -> Self {
        Error::Invalid(msg.into())
    }

    /// Shorthand for [`Error::Limit`].
    pub fn limit(
        what: &'static str,
        requested: impl TryInto<u64>,
        limit: impl TryInto<u64>,
    ) -> Self {
        Error::Limit {
            what,
            requested: requested.try_into().unwrap_or(u64::MAX),
            limit: limit.try_into().unwrap_or(u64::MAX),
        }
    }

    /// Logs `cause` on this process under a fresh error id and returns the
    /// [`Error::Internal`] that carries only the id.
    pub fn internal(cause: impl fmt::Display) -> Self {
        let id = ErrorId::next();
        tracing::error!(error_id = %id, "internal error: {cause}");
        Error::Internal { id }
    }

    /// The `capnp::ErrorKind` this error crosses the wire as.
    pub fn kind(&self) -> capnp::ErrorKind {
        use capnp::ErrorKind as K;
        match self {
            Error::Limit { .. } | Error::ShuttingDown | Error::DeadlineExceeded(_) => K::Overloaded,
            Error::Disconnected(_) | Error::RuntimeStopped | Error::Restarting(_) => {
                K::Disconnected
            }
            Error::Remote(e) => e.kind,
            Error::Invalid(_)
            | Error::Unauthorized
            | Error::Internal { .. }
            | Error::Io(_)
            | Error::EventLoop(_)
            | Error::StartFailed(_) => K::Failed,
        }
    }

    /// True if the peer is gone (remote disconnects included).
    pub fn is_disconnected(&self) -> bool {
        self.kind() == capnp::ErrorKind::Disconnected
    }

    /// True if `e` is the [`Error::Restarting`] of a stable capability: the
    /// call failed because its actor was restarting or reconnecting, and
    /// may be retried on the same capability.
    ///
    /// # Examples
    ///
    /// ```
    /// use capactor::Error;
    ///
    /// let e: capnp::Error = Error::Restarting("the actor panicked".into()).into();
    /// assert!(Error::is_restarting(&e));
    /// assert!(!Error::is_restarting(&capnp::Error::disconnected("peer gone".into())));
    /// ```
    pub fn is_restarting(e: &capnp::Error) -> bool {
        // capnp-rpc prefixes an error that crossed a connection.
        let text = e
            .extra
            .strip_prefix("remote exception: ")
            .unwrap_or(&e.extra);
        e.kind == capnp::ErrorKind::Disconnected && text.starts_with(RESTARTING)
    }
}

/// How the message of every [`Error::Restarting`] starts.
pub const RESTARTING: &str = "actor restarting; retry";

/// The one place where capactor errors become wire errors.
///
/// I/O errors are internal: their text can hold paths, so it is logged
/// and replaced by an error id.
impl From<Error> for capnp::Error {
    fn from(e: Error) -> Self {
        match e {
            // capnp-rpc prefixes what it receives with "remote exception: "
            // at every hop (a client relaying between two workers is one);
            // the caller's own library adds the one it should see.
            Error::Remote(e) => {
                let mut extra = e.extra.as_str();
                while let Some(rest) = extra.strip_prefix(REMOTE_PREFIX) {
                    extra = rest;
                }
                capnp::Error {
                    extra: extra.to_owned(),
                    kind: e.kind,
                }
            }
            Error::Io(io) => Error::internal(io).into(),
            Error::StartFailed(why) => Error::internal(format_args!("start failed: {why}")).into(),
            other => capnp::Error {
                kind: other.kind(),
                extra: other.to_string(),
            },
        }
    }
}

/// What capnp-rpc puts before the message of an error it received.
const REMOTE_PREFIX: &str = "remote exception: ";

impl From<std::str::Utf8Error> for Error {
    fn from(_: std::str::Utf8Error) -> Self {
        Error::invalid("text field is not valid UTF-8")
    }
}

impl From<capnp::Error> for Error {
    fn from(e: capnp::Error) -> Self {
        Error::Remote(e)
    }
}

/// Identifies one internal error in a worker's log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ErrorId(u64);

impl ErrorId {
    fn next() -> Self {
        // Process-unique and not guessable from the outside: a counter mixed
        // with the process start time, so ids from two runs do not collide.
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        static SALT: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
        let salt = *SALT.get_or_init(|| {
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0);
            t ^ u64::from(std::process::id()).rotate_left(32)
        });
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        ErrorId(salt.wrapping_add(n.wrapping_mul(0x9E37_79B9_7F4A_7C15)))
    }
}

impl fmt::Display for ErrorId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}
