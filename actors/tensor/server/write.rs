//! Assignment into a tensor capability (`Tensor.assign`, `assignMask`):
//! the one place where a tensor's contents change.
//!
//! The rules (docs/PROTOCOL.md, "Assignment"):
//!
//! * The write is made in the capability's own contents, so every holder
//!   of this capability sees it.
//! * Everything else that has the contents keeps what it had: results
//!   derived earlier are new arrays anyway; a named copy (`store`), a
//!   handoff ticket, or an op still reading them share the array, and then
//!   the assignment writes into a copy (counted against the quotas before
//!   it is made) and swaps it in. Only an array no one else holds is
//!   written in place.
//! * The call holds the capability's write turn from the moment it
//!   arrives: calls on this capability that arrive later wait for it,
//!   earlier ones do not.
//! * A value of another dtype is cast to the tensor's first, as NumPy's
//!   `x[...] = y` casts `y` ([`Array::cast`]'s rules).
//! * Everything is checked before the first element is written, and the
//!   contents are swapped (or written) in one step on the vat, so a
//!   failed or cancelled assignment changes nothing.

use std::rc::Rc;
use std::sync::Arc;

use super::{Store, TensorCap, OFFLOAD_ELEMENTS};
use crate::actors::tensor::ops::{self, Alloc, Array, DType, OpError, SliceSpec};
use crate::actors::tensor::quota::Reservation;
use crate::actors::tensor::spill::Stored;
use crate::actors::tensor::state::lock;
use crate::schema::tensor_capnp::tensor;
use crate::Error;

/// Where an assignment writes.
pub(super) enum Place {
    /// `x[specs] = value`.
    Slice(Vec<SliceSpec>),
    /// `x[mask] = value`; the mask is a tensor argument.
    Mask(tensor::Client),
}

/// A checked assignment, ready to write.
enum Write {
    Slice(Vec<SliceSpec>, Arc<Array>),
    Mask(Arc<Array>, Arc<Array>),
}

impl Write {
    fn op(&self) -> &'static str {
        match self {
            Write::Slice(..) => "assign",
            Write::Mask(..) => "assignMask",
        }
    }

    fn check(&self, target: &Array) -> Result<(), OpError> {
        match self {
            Write::Slice(specs, v) => Array::check_assign_slice(target, specs, v),
            Write::Mask(m, v) => Array::check_assign_mask(target, m, v),
        }
    }

    /// The write with its value cast to the target's `dtype`, as NumPy's
    /// `x[...] = y` casts `y`; the cast is reserved from `alloc`.
    fn in_dtype(self, dtype: DType, alloc: &dyn Alloc) -> Result<Write, OpError> {
        let op = self.op();
        let cast = |v: Arc<Array>| match v.dtype() == dtype {
            true => Ok(v),
            false => Array::cast_as(op, &v, dtype, alloc).map(Arc::new),
        };
        Ok(match self {
            Write::Slice(specs, v) => Write::Slice(specs, cast(v)?),
            Write::Mask(m, v) => Write::Mask(m, cast(v)?),
        })
    }

    fn apply(&self, target: &mut Array) -> Result<(), OpError> {
        match self {
            Write::Slice(specs, v) => Array::assign_slice(target, specs, v),
            Write::Mask(m, v) => Array::assign_mask(target, m, v),
        }
    }
}

/// A tensor argument of an assignment, read as any argument is (as it
/// is, without waiting for its turn), so `x.assign(s, x)` reads `x` as it
/// was and two assignments reading each other's targets cannot deadlock.
async fn argument(store: &Store, client: tensor::Client) -> Result<Arc<Array>, Error> {
    store.resolve_cap(client).await?.array()
}

impl TensorCap {
    /// Runs an assignment (see the module docs) and answers with this
    /// capability.
    pub(super) async fn write_at(
        self: &Rc<Self>,
        place: Place,
        value: tensor::Client,
    ) -> Result<tensor::Client, Error> {
        let store = self.store()?;
        let (specs, mask) = match place {
            Place::Slice(specs) => (Some(specs), None),
            Place::Mask(mask) => (None, Some(mask)),
        };
        let mut value = std::pin::pin!(argument(&store, value));
        let mut mask = std::pin::pin!(async {
            match mask {
                Some(m) => argument(&store, m).await.map(Some),
                None => Ok(None),
            }
        });
        // Set the arguments going before taking the turn: the local
        // transport dispatches a call only once something polls it, and
        // an argument made from this tensor (`x.assign(s, x.neg())`) must
        // have taken its read turn first, or it would wait for this
        // assignment, which waits for it.
        let early_value = futures::poll!(value.as_mut());
        let early_mask = futures::poll!(mask.as_mut());
        let _turn = self.turns.write().await;
        let value = match early_value {
            std::task::Poll::Ready(v) => v?,
            std::task::Poll::Pending => value.await?,
        };
        let mask = match early_mask {
            std::task::Poll::Ready(m) => m?,
            std::task::Poll::Pending => mask.await?,
        };
        let write = match (specs, mask) {
            (Some(specs), _) => Write::Slice(specs, value),
            (None, Some(mask)) => Write::Mask(mask, value),
            (None, None) => return Err(Error::internal("assignment without a place")),
        };
        let current = self.array()?;
        // The cast value is counted against the quotas until the write is done.
        let cast = Reservation::new(&store.state.quota);
        let write = write.in_dtype(current.dtype(), &cast)?;
        write.check(&current)?;
        drop(current);
        if !self.write_in_place(&write)? {
            self.write_copy(&store, write).await?;
        }
        Ok(crate::new_client_from_rc(self.clone()))
    }

    /// Writes into the contents if nothing else holds them; `false` if
    /// something does.
    fn write_in_place(&self, write: &Write) -> Result<bool, Error> {
        let mut slot = lock(&self.value);
        match slot.as_mut() {
            Some((Stored::Mem(array), _)) => match Arc::get_mut(array) {
                Some(a) => write.apply(a).map(|()| true).map_err(Error::from),
                None => Ok(false),
            },
            Some((Stored::Disk(_), _)) => Ok(false),
            None => Err(Error::invalid("tensor has been moved to another worker")),
        }
    }

    /// Writes into a copy, reserved first, and swaps it in.
    async fn write_copy(&self, store: &Store, write: Write) -> Result<(), Error> {
        let current = self.array()?;
        let res = Reservation::new(&store.state.quota);
        ops::reserve(&res, write.op(), current.shape(), current.dtype())?;
        let big = current.len() > OFFLOAD_ELEMENTS;
        let job = move || {
            let mut copy = (*current).clone();
            write.apply(&mut copy).map(|()| copy)
        };
        let copy = if big {
            tokio::task::spawn_blocking(job)
                .await
                .map_err(|e| Error::internal(format_args!("tensor op task failed: {e}")))??
        } else {
            job()?
        };
        let held = Arc::new(res.keep(copy.nbytes() as u64));
        let mut slot = lock(&self.value);
        match slot.as_mut() {
            Some(v) => *v = (Stored::Mem(Arc::new(copy)), held),
            None => return Err(Error::invalid("tensor has been moved to another worker")),
        }
        Ok(())
    }
}
