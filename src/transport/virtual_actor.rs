//! The virtual transport's wiring: an in-memory pipe ([`super::memory`])
//! with the client's end connected here and the server's end served on
//! whichever vat the runtime places the actor on.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use capnp::capability::{FromClientHook, FromServer};
use tokio_util::sync::CancellationToken;

use super::connection::Connection;
use super::gate_policy::{GatePolicy, Peer};
use super::memory::{self, MemoryStream, VirtualOptions};
use super::options::ServeOptions;
use super::serve::{serve_bootstrap, serve_stream, ActorMint, Arrival, ServeSite};
use crate::call::ActorCalls;

/// The server's end of a virtual connection, on its way to the vat that
/// will serve the actor.
pub(crate) struct ServerEnd {
    pipe: MemoryStream,
    cut: CancellationToken,
    serve: ServeOptions,
}

/// Opens a virtual link as `opts` say and connects to its far end from
/// this thread (which must run a `LocalSet`). The actor is served once
/// [`ServerEnd::serve`] runs on its vat; calls made before are queued.
pub(crate) fn open<C: FromClientHook>(opts: &VirtualOptions) -> (Connection<C>, ServerEnd) {
    let back = opts.reply_link.as_ref().unwrap_or(&opts.link);
    let (ours, theirs) = memory::pipe_each_way(&opts.link, back);
    let conn = super::rpc::connect_stream::<C, _>(ours, &opts.connect);
    let end = ServerEnd {
        pipe: theirs,
        cut: conn.link().cut.clone(),
        serve: opts.serve.clone(),
    };
    (conn, end)
}

impl ServerEnd {
    /// Serves the actor `make` returns as a `C` on this end, on the current
    /// vat: behind the same gate, limits and call deadline as a network
    /// worker, its calls counted in `calls`. `started` hears whether `make`
    /// returned (or the text of its panic).
    ///
    /// A panic in `make` is caught here, on the vat's own thread (unwinding
    /// through the vat loop would take every actor on the vat down with
    /// it): the connection then answers every call with an `internal
    /// error`.
    pub(crate) fn serve<C, S, F>(
        self,
        make: F,
        calls: Arc<ActorCalls>,
        started: impl FnOnce(std::result::Result<(), String>),
    ) where
        C: FromClientHook + FromServer<S>,
        S: 'static,
        F: FnOnce() -> S,
    {
        let ServerEnd { pipe, cut, serve } = self;
        let server = match catch_unwind(AssertUnwindSafe(make)) {
            Ok(server) => server,
            Err(panic) => {
                let msg = crate::call::panic_message(&*panic);
                let err = crate::Error::internal(format_args!("actor factory panicked: {msg}"));
                started(Err(msg));
                let broken = capnp_rpc::new_broken_cap(err.into());
                tokio::task::spawn_local(async move {
                    serve_bootstrap(pipe, broken, &serve.limits, None, cut, None).await;
                });
                return;
            }
        };
        started(Ok(()));
        let policy = Arc::new(GatePolicy::new(serve.gate_failures_per_second));
        let site = ServeSite::new(ActorMint::new::<C, S>(server), calls, &serve, policy);
        // A pipe has no address: its attempts count under one label.
        let arrival = Arrival::now(Peer::Label("virtual"), None);
        tokio::task::spawn_local(async move {
            serve_stream(pipe, &site, cut, arrival).await;
        });
    }
}
