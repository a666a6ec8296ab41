//! The worker's side of a chunked upload: the `Upload` capability.

use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use super::server::Store;
use super::state::{lock, Pending, WorkerState};
use crate::schema::tensor_capnp::upload;
use crate::Error;

/// One connection's handle on an upload under way.
///
/// Chunks are written straight into the upload's buffer. A chunk that is
/// refused fails the upload and frees its bytes at once. When the
/// capability goes (the connection was cut, say) the upload waits
/// [`DataOptions::resume_timeout`](super::DataOptions::resume_timeout) to
/// be resumed on another connection, and is then freed.
pub(crate) struct UploadCap {
    state: Arc<WorkerState>,
    store: Rc<Store>,
    id: Vec<u8>,
    pending: Arc<Mutex<Pending>>,
    /// The [`Pending::generation`] this capability may write in.
    generation: u64,
}

impl UploadCap {
    pub(crate) fn client(
        state: Arc<WorkerState>,
        store: Rc<Store>,
        id: Vec<u8>,
        pending: Arc<Mutex<Pending>>,
    ) -> upload::Client {
        let generation = lock(&pending).generation;
        crate::new_client(UploadCap {
            generation,
            state,
            store,
            id,
            pending,
        })
    }

    /// Frees the upload after an error, which is returned.
    fn fail(&self, e: Error) -> capnp::Error {
        {
            let mut p = lock(&self.pending);
            p.incoming = None;
            p.failed = Some(e.to_string());
        }
        self.state.end_upload(&self.id);
        e.into()
    }
}

impl Drop for UploadCap {
    fn drop(&mut self) {
        let waiting = {
            let mut p = lock(&self.pending);
            p.attached -= 1;
            p.touched = Instant::now();
            p.attached == 0 && p.incoming.is_some()
        };
        if waiting {
            let state = self.state.clone();
            let id = std::mem::take(&mut self.id);
            let wait = state.options.resume_timeout;
            tokio::task::spawn_local(async move {
                tokio::time::sleep(wait).await;
                state.reap_upload(&id);
            });
        }
    }
}

impl upload::Server for UploadCap {
    async fn write(self: Rc<Self>, params: upload::WriteParams) -> Result<(), capnp::Error> {
        let p = params.get()?;
        let data = p.get_data()?;
        let mut pending = lock(&self.pending);
        if pending.generation != self.generation {
            return Err(superseded().into());
        }
        pending.touched = Instant::now();
        let Some((incoming, _)) = pending.incoming.as_mut() else {
            return Err(pending.gone().into());
        };
        if let Err(e) = incoming.write(p.get_offset(), data, p.get_crc32c()) {
            drop(pending);
            return Err(self.fail(e));
        }
        Ok(())
    }

    async fn finish(
        self: Rc<Self>,
        params: upload::FinishParams,
        mut results: upload::FinishResults,
    ) -> Result<(), capnp::Error> {
        let crc = params.get()?.get_crc32c();
        let taken = {
            let mut p = lock(&self.pending);
            if p.generation != self.generation {
                return Err(superseded().into());
            }
            p.incoming.take()
        };
        let Some((incoming, held)) = taken else {
            return Err(lock(&self.pending).gone().into());
        };
        self.state.end_upload(&self.id);
        let stored = incoming.finish_stored(crc).map_err(|e| self.fail(e))?;
        results
            .get()
            .set_tensor(self.store.publish_held(stored, Arc::new(held)));
        Ok(())
    }

    async fn status(
        self: Rc<Self>,
        _: upload::StatusParams,
        mut results: upload::StatusResults,
    ) -> Result<(), capnp::Error> {
        let (offset, bytes) = {
            let p = lock(&self.pending);
            match &p.incoming {
                Some((i, _)) => (i.received() as u64, i.total() as u64),
                None => return Err(p.gone().into()),
            }
        };
        let mut r = results.get();
        r.set_offset(offset);
        r.set_bytes(bytes);
        Ok(())
    }
}

/// For a capability whose upload was resumed on another connection.
fn superseded() -> Error {
    Error::invalid("this upload was resumed on another connection; write there")
}
