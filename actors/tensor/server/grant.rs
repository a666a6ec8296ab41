//! What a handoff ticket grants the worker that redeems it.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

use super::{write_meta, Held, ReadTo, Slot, Stored};
use crate::actors::tensor::download;
use crate::schema::tensor_capnp::tensor;
use crate::Error;

/// What a transfer ticket grants another worker: one streamed read of a
/// tensor (and its `meta`), nothing else. With `move`, the source tensor
/// is emptied once the reader has accepted every byte.
pub(super) struct Granted {
    pub(super) value: RefCell<Option<(Stored, Arc<Held>)>>,
    pub(super) moved: Option<Slot>,
}

impl Granted {
    fn stored(&self) -> Result<Stored, Error> {
        match &*self.value.borrow() {
            Some((a, _)) => Ok(a.clone()),
            None => Err(Error::invalid("this transfer ticket has been used")),
        }
    }
}

impl tensor::Server for Granted {
    async fn meta(
        self: Rc<Self>,
        _: tensor::MetaParams,
        results: tensor::MetaResults,
    ) -> Result<(), capnp::Error> {
        write_meta(&self.stored()?, results);
        Ok(())
    }

    async fn read_to(
        self: Rc<Self>,
        params: tensor::ReadToParams,
        results: tensor::ReadToResults,
    ) -> Result<(), capnp::Error> {
        let req = ReadTo::from_params(params.get()?)?;
        let a = self.stored()?;
        download::send(&a, req, results).await?;
        if let Some(source) = &self.moved {
            crate::actors::tensor::state::lock(source).take();
        }
        self.value.borrow_mut().take();
        Ok(())
    }
}
