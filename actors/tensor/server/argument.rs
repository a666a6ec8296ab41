//! Tensor arguments that are promises or capabilities of another worker:
//! waiting for them to settle, and telling a broken pipeline's error from
//! a tensor held elsewhere.

use std::rc::Rc;

use super::{TensorCap, ARGUMENT_RESOLVE_LIMIT};
use crate::schema::tensor_capnp::tensor;
use crate::Error;
use capnp::capability::DynClientHook;

/// `Tensor.meta`'s method number: the harmless call that tells a broken
/// capability from someone else's tensor.
const META: u16 = 0;

pub(super) fn foreign() -> Error {
    Error::invalid("tensor argument lives on another worker; bring it here with fetch first")
}

/// Bounds a wait on a tensor argument: by the call's deadline when the
/// worker has one (the guard then fails the whole call), else by
/// [`ARGUMENT_RESOLVE_LIMIT`].
pub(super) async fn bounded<T>(f: impl std::future::Future<Output = T>) -> Result<T, Error> {
    match crate::call::Guard::current().deadline() {
        Some(_) => Ok(f.await),
        None => tokio::time::timeout(ARGUMENT_RESOLVE_LIMIT, f)
            .await
            .map_err(|_| Error::DeadlineExceeded(ARGUMENT_RESOLVE_LIMIT)),
    }
}

/// Calls `meta` on a capability that is not one of ours: the error of a
/// broken one (the first failure of a pipeline) is the argument's error;
/// anything that answers is a tensor held elsewhere.
pub(super) async fn probe(hook: Box<DynClientHook>) -> Result<Rc<TensorCap>, Error> {
    use capnp::traits::HasTypeId;
    let probe = hook.new_call(tensor::Client::TYPE_ID, META, None);
    match probe.send().promise.await {
        Err(e) if e.kind != capnp::ErrorKind::Unimplemented => Err(e.into()),
        _ => Err(foreign()),
    }
}

/// Follows `hook` through every promise until it settles, and surfaces the
/// error of a promise that broke (an error earlier in a pipeline, or a
/// `Resolve` to an exception).
pub(super) async fn settle(mut hook: Box<DynClientHook>) -> Result<Box<DynClientHook>, Error> {
    loop {
        while let Some(next) = hook.get_resolved() {
            hook = next;
        }
        match hook.when_more_resolved() {
            Some(next) => hook = next.await?,
            None => break,
        }
    }
    hook.when_resolved().await?;
    Ok(hook)
}
