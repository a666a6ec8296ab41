//! The `Gate`: the bootstrap capability of every capactor connection.

use std::rc::Rc;

use capnp::capability::FromClientHook;

use crate::schema::actor_capnp::{actor, gate};
use crate::Error;

/// Serves `Gate.open`: hands out `actor` to a caller with the right token.
pub(crate) struct Gate {
    actor: actor::Client,
    token: Option<Rc<[u8]>>,
}

impl Gate {
    pub(crate) fn client(actor: actor::Client, token: Option<Rc<[u8]>>) -> gate::Client {
        capnp_rpc::new_client(Gate { actor, token })
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
                tracing::warn!("gate: credential rejected");
                return Err(Error::Unauthorized.into());
            }
        }
        results.get().set_actor(self.actor.clone());
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
