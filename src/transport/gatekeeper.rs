//! The `Gate`: the bootstrap capability of every capactor connection.

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use capnp::capability::FromClientHook;
use tokio_util::sync::CancellationToken;

use crate::schema::actor_capnp::{actor, gate};
use crate::Error;

/// Failed attempts after which a connection is closed.
pub(crate) const MAX_FAILURES: u32 = 5;

/// Serves `Gate.open` for one connection: hands out `actor` to a caller
/// with the right token.
///
/// Failed attempts are throttled: the n-th rejection is answered only after
/// 100 ms × 2^(n-1) (so guessing costs time), and after [`MAX_FAILURES`]
/// the connection is closed.
pub(crate) struct Gate {
    actor: actor::Client,
    token: Option<Rc<[u8]>>,
    failures: Cell<u32>,
    opened: Rc<Cell<bool>>,
    cut: CancellationToken,
}

impl Gate {
    /// The gate of one connection. `opened` turns true at the first
    /// successful `open`; `cut` closes the connection.
    pub(crate) fn client(
        actor: actor::Client,
        token: Option<Rc<[u8]>>,
        opened: Rc<Cell<bool>>,
        cut: CancellationToken,
    ) -> gate::Client {
        capnp_rpc::new_client(Gate {
            actor,
            token,
            failures: Cell::new(0),
            opened,
            cut,
        })
    }

    /// A gate that only redeems transfer tickets (for an in-process link
    /// made to redeem one): no token opens it.
    pub(crate) fn redeem_only(cut: CancellationToken) -> gate::Client {
        let mut token = [0u8; 32];
        rand::fill(&mut token);
        let nothing = actor::Client {
            client: capnp_rpc::new_broken_cap(capnp::Error::failed(
                "this link only redeems transfer tickets".into(),
            )),
        };
        Gate::client(nothing, Some(Rc::from(&token[..])), Rc::default(), cut)
    }
}

impl gate::Server for Gate {
    async fn open(
        self: Rc<Self>,
        params: gate::OpenParams,
        mut results: gate::OpenResults,
    ) -> Result<(), capnp::Error> {
        if let Some(expected) = &self.token {
            let offered = params.get()?.get_token()?;
            if !constant_time_eq(offered, expected) {
                let n = self.failures.get() + 1;
                self.failures.set(n);
                tracing::warn!(attempt = n, "gate: credential rejected");
                tokio::time::sleep(Duration::from_millis(100) * 2u32.pow(n.min(6) - 1)).await;
                if n >= MAX_FAILURES {
                    tracing::warn!("gate: closing connection after {n} failed attempts");
                    self.cut.cancel();
                }
                return Err(Error::Unauthorized.into());
            }
        }
        self.opened.set(true);
        results.get().set_actor(self.actor.clone());
        Ok(())
    }

    async fn redeem(
        self: Rc<Self>,
        params: gate::RedeemParams,
        mut results: gate::RedeemResults,
    ) -> Result<(), capnp::Error> {
        let granted = crate::ticket::redeem(params.get()?.get_ticket()?).inspect_err(|_| {
            tracing::warn!("gate: transfer ticket refused");
        })?;
        // A connection made to redeem a ticket is as good as opened: the
        // handshake timeout must not cut the transfer.
        self.opened.set(true);
        results.get().init_object().set_as_capability(granted.hook);
        Ok(())
    }
}

/// Compares without an early exit, so the time taken says nothing about
/// how much of the token matched.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Opens the gate behind `bootstrap` with `token` and casts the (pipelined)
/// actor to the interface `C`. Costs no round trip before the first call.
pub(crate) fn open<C: FromClientHook>(bootstrap: &gate::Client, token: &[u8]) -> C {
    let mut req = bootstrap.open_request();
    req.get().set_token(token);
    let actor = req.send().pipeline.get_actor();
    C::new(actor.client.hook)
}
