//! Copying a tensor from another worker (`TensorWorker.fetch`): straight
//! from the source worker through a transfer ticket when it can hand the
//! tensor off, else through the caller, streamed.

use std::rc::Rc;
use std::sync::Arc;

use super::download::{self, Received};
use super::quota::{Held, Reservation};
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
        let (stored, held) = copy(&source, &res, take, &store).await?;
        let held = Arc::new(held);
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

/// Reads `source` into this worker's quota (`res`), or its spill
/// directory if the quota is full, and returns it with what holds its bytes.
async fn copy(
    source: &tensor::Client,
    res: &Rc<Reservation>,
    take: bool,
    store: &Store,
) -> Result<(Stored, Held), Error> {
    let spill = store.state.options.spill.clone();
    let kept = |stored: Stored, received: &Rc<std::cell::RefCell<Received>>| {
        let bytes = stored.nbytes() as u64;
        let disk = received.borrow().spill_reservation();
        let held = match (&stored, disk) {
            (Stored::Disk(_), Some(disk)) => disk.keep(bytes),
            _ => res.keep(bytes),
        };
        (stored, held)
    };
    let mut req = source.handoff_request();
    req.get().set_move(take);
    match req.send().promise.await {
        Ok(reply) => {
            let r = reply.get()?;
            let address = r.get_address()?.to_str().unwrap_or_default().to_owned();
            let received = Received::spilling(spill.clone());
            let ticket = r.get_ticket()?;
            match direct(ticket, &address, r.get_tls_certificate()?, res, &received).await {
                Ok(stored) => return Ok(kept(stored, &received)),
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
    let received = Received::spilling(spill);
    let stored = download::read_stored(source, &received, res.clone(), take).await?;
    Ok(kept(stored, &received))
}

/// Reads the tensor a ticket grants, over a connection of our own to the
/// worker that minted it.
async fn direct(
    ticket: &[u8],
    address: &str,
    tls_certificate: &[u8],
    res: &Rc<Reservation>,
    received: &Rc<std::cell::RefCell<Received>>,
) -> Result<Stored, Error> {
    let conn = crate::transport::connect_for_ticket(address, tls_certificate).await?;
    let mut req = conn.client().redeem_request();
    req.get().set_ticket(ticket);
    let granted = tensor::Client {
        client: capnp::capability::Client::new(req.send().pipeline.get_object().as_cap()),
    };
    download::read_stored(&granted, received, res.clone(), false).await
}
