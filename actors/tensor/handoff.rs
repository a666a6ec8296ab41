//! Copying a tensor from another worker (`TensorWorker.fetch`): straight
//! from the source worker through a transfer ticket when it can hand the
//! tensor off, else through the caller, streamed.

use std::rc::Rc;
use std::sync::Arc;

use super::download::{self, Received};
use super::ops::Array;
use super::quota::Reservation;
use super::server::Store;
use super::spill::Stored;
use super::state::Named;
use crate::schema::tensor_capnp::tensor;
use crate::Error;

/// A copy of `source` on this worker, stored under `name` too if given.
///
/// With a name, the copy runs on by itself once started: if the caller
/// goes away, the tensor still appears under its name when its bytes are
/// in.
pub(crate) async fn fetch(
    store: &Rc<Store>,
    source: tensor::Client,
    take: bool,
    name: Option<String>,
) -> Result<tensor::Client, Error> {
    // Made inside the call, so it counts against the caller's connection.
    let res = Rc::new(Reservation::new(&store.state.quota));
    let store = store.clone();
    let named = name.is_some();
    let job = async move {
        let array = Arc::new(copy(&source, &res, take).await?);
        let held = Arc::new(res.keep(array.nbytes() as u64));
        let stored = Stored::Mem(array);
        if let Some(name) = &name {
            let object = Named {
                stored: stored.clone(),
                held: held.clone(),
                expires: None,
            };
            store.state.store(name, object)?;
        }
        Ok::<_, Error>(store.publish_held(stored, held))
    };
    if !named {
        return job.await;
    }
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::task::spawn_local(async move {
        let _ = tx.send(job.await);
    });
    rx.await
        .map_err(|_| Error::internal("a named fetch ended without an answer"))?
}

async fn copy(source: &tensor::Client, res: &Rc<Reservation>, take: bool) -> Result<Array, Error> {
    let mut req = source.handoff_request();
    req.get().set_move(take);
    match req.send().promise.await {
        Ok(reply) => {
            let r = reply.get()?;
            let address = r.get_address()?.to_str().unwrap_or_default().to_owned();
            match direct(r.get_ticket()?, &address, r.get_tls_certificate()?, res).await {
                Ok(a) => return Ok(a),
                Err(e) => {
                    tracing::warn!(
                        "direct transfer from {address} failed, relaying through the caller: {e}"
                    );
                    res.reset();
                }
            }
        }
        // A worker older than schema version 3 cannot hand off.
        Err(e) if e.kind == capnp::ErrorKind::Unimplemented => {}
        Err(e) => return Err(e.into()),
    }
    download::read(source, &Received::with_progress(None), res.clone(), take).await
}

/// Reads the tensor a ticket grants, over a connection of our own to the
/// worker that minted it.
async fn direct(
    ticket: &[u8],
    address: &str,
    tls_certificate: &[u8],
    res: &Rc<Reservation>,
) -> Result<Array, Error> {
    let conn = crate::transport::connect_for_ticket(address, tls_certificate).await?;
    let mut req = conn.client().redeem_request();
    req.get().set_ticket(ticket);
    let granted = tensor::Client {
        client: capnp::capability::Client::new(req.send().pipeline.get_object().as_cap()),
    };
    download::read(&granted, &Received::with_progress(None), res.clone(), false).await
}
