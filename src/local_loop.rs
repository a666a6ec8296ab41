//! Whether this thread runs a `LocalSet` capnp-rpc clients can live on:
//! set by the runtime's event loops ([`LocalLoop`]), asked by everything
//! that makes a client (the transports, the tensor client). Below both,
//! so that transport need not import the runtime.

use crate::{Error, Result};

const NO_LOCAL_SET: &str = "capnp-rpc clients must be made and used on a thread running a \
     tokio LocalSet, and this thread has none: wrap the code in capactor::block_on(async { .. }) \
     (or capactor::run_local(async { .. }).await inside a tokio runtime), write \
     #[capactor::test] instead of #[tokio::test], or use a Send-able capactor::Handle \
     made from a capactor::Runtime";

thread_local! {
    /// How many capactor event loops this thread is inside.
    static LOCAL_LOOPS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Marks the current thread as running a `LocalSet` capactor made.
pub(crate) struct LocalLoop;

impl LocalLoop {
    pub(crate) fn enter() -> LocalLoop {
        LOCAL_LOOPS.with(|n| n.set(n.get() + 1));
        LocalLoop
    }
}

impl Drop for LocalLoop {
    fn drop(&mut self) {
        LOCAL_LOOPS.with(|n| n.set(n.get() - 1));
    }
}

/// Whether capnp-rpc clients can be made on this thread: inside a
/// `LocalSet` (capactor's, or one of the caller's own).
///
/// # Errors
///
/// An [`Error::EventLoop`] that says what to write instead.
pub(crate) fn check_local_loop() -> Result<()> {
    if LOCAL_LOOPS.with(|n| n.get()) > 0 {
        return Ok(());
    }
    if tokio::runtime::Handle::try_current().is_err() {
        return Err(Error::EventLoop(NO_LOCAL_SET));
    }
    // A runtime, and perhaps a LocalSet of the caller's own: tokio offers
    // no way to ask but trying.
    let probe = std::panic::catch_unwind(|| drop(tokio::task::spawn_local(async {})));
    probe.map_err(|_| Error::EventLoop(NO_LOCAL_SET))
}

/// [`check_local_loop`] for functions that cannot return an error.
pub(crate) fn require_local_loop() {
    if let Err(e) = check_local_loop() {
        panic!("{e}");
    }
}
