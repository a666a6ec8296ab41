//! Entry points for the fuzz targets in `fuzz/`: the paths hostile bytes
//! take into a worker, run without sockets. Not part of the API; may change
//! at any time.
//!
//! Each function panics when an invariant the worker relies on breaks, so
//! that a fuzzer reports it; errors that hostile input is *supposed* to
//! cause are returned, not panicked on.

use std::rc::Rc;

use capnp::message::ReaderOptions;
use capnp_rpc::rpc_capnp::{
    call, cap_descriptor, disembargo, exception, message, message_target, payload, promised_answer,
    resolve, return_,
};
use capnp_rpc::rpc_twoparty_capnp::Side;
use capnp_rpc::VatNetwork as _;
use futures::FutureExt;
use tokio_util::sync::CancellationToken;

use crate::actors::tensor::TensorWorker;
use crate::schema::tensor_capnp::{tensor_data, tensor_worker};
use crate::transport::{wire, Link, LinkConfig};
use crate::{Limits, Quota};

fn limits(max_message_bytes: usize) -> Limits {
    let mut limits = Limits::default();
    limits.max_message_bytes = max_message_bytes;
    limits
}

/// What [`read_frames`] made of a byte stream.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FramesRead {
    /// Messages read and traversed as RPC messages, in order.
    pub messages: usize,
    /// Of those, how many the traversal refused (bad pointers, over a limit,
    /// not an RPC message...).
    pub refused: usize,
    /// The stream ended cleanly after the last message (rather than on an
    /// invalid or oversized frame).
    pub clean_end: bool,
}

/// Feeds `bytes`, as a peer's whole byte stream, through the path a worker
/// reads with: the `Link`, then the two-party network's reader (with its
/// frame check) under the worker's limits for `max_message_bytes`, then a
/// traversal of each message as an RPC `Message` (every pointer followed,
/// under the traversal and nesting limits).
///
/// # Panics
///
/// Panics if the reading path waits for more input than `bytes` holds (it
/// must see the end of the stream instead), or if it refuses a stream that
/// `capnp` itself reads to a clean end under the same limits: the frame
/// check must never turn away a message the limits allow.
pub fn read_frames(bytes: &[u8], max_message_bytes: usize) -> FramesRead {
    let limits = limits(max_message_bytes);
    let options = limits.reader_options();
    // The network wants a stream it can own.
    let stream = std::io::Cursor::new(bytes.to_vec());
    let link = Link::new(stream, CancellationToken::new(), LinkConfig::default());
    let mut network = wire::network(link, Side::Server, &limits);
    let mut conn = network
        .accept()
        .now_or_never()
        .expect("a two-party network accepts at once")
        .expect("a two-party network accepts its one connection");

    let mut read = FramesRead::default();
    loop {
        let next = conn
            .receive_incoming_message()
            .now_or_never()
            .expect("reading from a byte slice waited for more input");
        match next {
            Ok(Some(incoming)) => {
                read.messages += 1;
                if incoming.get_body().and_then(traverse).is_err() {
                    read.refused += 1;
                }
            }
            Ok(None) => {
                read.clean_end = true;
                break;
            }
            Err(_) => break,
        }
    }

    // A stream capnp reads to a clean end under these limits has no frame
    // the limits forbid; the frame check must let all of it through. (It
    // refuses messages over the limit in bytes where capnp counts whole
    // words, so only limits in whole words compare.)
    if max_message_bytes % 8 == 0 {
        let plain = read_plain(bytes, options);
        if let Some(n) = plain {
            assert!(
                read.clean_end && read.messages == n,
                "the frame check refused a stream capnp reads whole ({n} messages): {read:?}"
            );
        }
    }
    read
}

/// The number of messages `capnp` reads from `bytes` before a clean end of
/// stream, or `None` if it stops on an error.
fn read_plain(mut bytes: &[u8], options: ReaderOptions) -> Option<usize> {
    let mut n = 0;
    loop {
        match capnp::serialize::try_read_message(&mut bytes, options) {
            Ok(Some(_)) => n += 1,
            Ok(None) => return Some(n),
            Err(_) => return None,
        }
    }
}

/// Reads every part of an RPC message the RPC system may look at.
fn traverse(body: capnp::any_pointer::Reader<'_>) -> capnp::Result<()> {
    // Every word the message reaches, once per pointer to it: what the
    // traversal limit is there to bound.
    body.target_size()?;
    rpc_message(body.get_as()?, false)
}

/// `echoed`: `m` is the message an `Unimplemented` sent back, which the RPC
/// system reads one level deep (a null pointer there reads as another
/// `Unimplemented`, for ever).
fn rpc_message(m: message::Reader<'_>, echoed: bool) -> capnp::Result<()> {
    match m.which()? {
        message::Unimplemented(_) if echoed => Ok(()),
        message::Unimplemented(inner) => rpc_message(inner?, true),
        message::Abort(e) => rpc_exception(e?),
        message::Call(c) => {
            let c = c?;
            rpc_target(c.get_target()?)?;
            rpc_payload(c.get_params()?)?;
            match c.get_send_results_to().which()? {
                call::send_results_to::ThirdParty(p) => {
                    p.target_size()?;
                }
                call::send_results_to::Caller(()) | call::send_results_to::Yourself(()) => {}
            }
            Ok(())
        }
        message::Return(r) => match r?.which()? {
            return_::Results(p) => rpc_payload(p?),
            return_::Exception(e) => rpc_exception(e?),
            return_::AcceptFromThirdParty(p) => p.target_size().map(drop),
            return_::Canceled(())
            | return_::ResultsSentElsewhere(())
            | return_::TakeFromOtherQuestion(_) => Ok(()),
        },
        message::Finish(f) => f.map(drop),
        message::Resolve(r) => match r?.which()? {
            resolve::Cap(c) => rpc_cap(c?),
            resolve::Exception(e) => rpc_exception(e?),
        },
        message::Release(r) => r.map(drop),
        message::Bootstrap(b) => b?.get_deprecated_object_id().target_size().map(drop),
        message::Disembargo(d) => {
            let d = d?;
            rpc_target(d.get_target()?)?;
            match d.get_context().which()? {
                disembargo::context::SenderLoopback(_)
                | disembargo::context::ReceiverLoopback(_)
                | disembargo::context::Accept(())
                | disembargo::context::Provide(_) => Ok(()),
            }
        }
        message::ObsoleteSave(p) | message::ObsoleteDelete(p) => p.target_size().map(drop),
        message::Provide(p) => rpc_target(p?.get_target()?),
        message::Accept(a) => a.map(drop),
        message::Join(j) => rpc_target(j?.get_target()?),
    }
}

fn rpc_target(t: message_target::Reader<'_>) -> capnp::Result<()> {
    match t.which()? {
        message_target::ImportedCap(_) => Ok(()),
        message_target::PromisedAnswer(a) => rpc_answer(a?),
    }
}

fn rpc_answer(a: promised_answer::Reader<'_>) -> capnp::Result<()> {
    for op in a.get_transform()? {
        op.which()?;
    }
    Ok(())
}

fn rpc_payload(p: payload::Reader<'_>) -> capnp::Result<()> {
    p.get_content().target_size()?;
    for cap in p.get_cap_table()? {
        rpc_cap(cap)?;
    }
    Ok(())
}

fn rpc_cap(c: cap_descriptor::Reader<'_>) -> capnp::Result<()> {
    match c.which()? {
        cap_descriptor::ReceiverAnswer(a) => rpc_answer(a?),
        cap_descriptor::ThirdPartyHosted(t) => t?.get_id().target_size().map(drop),
        cap_descriptor::None(())
        | cap_descriptor::SenderHosted(_)
        | cap_descriptor::SenderPromise(_)
        | cap_descriptor::ReceiverHosted(_) => Ok(()),
    }
}

fn rpc_exception(e: exception::Reader<'_>) -> capnp::Result<()> {
    e.get_reason()?.to_str()?;
    e.get_trace()?.to_str()?;
    e.get_type()?;
    Ok(())
}

/// What [`decode_tensor`] made of a `TensorData`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decoded {
    /// The message is not a readable `TensorData` (bad pointers, over a
    /// limit...).
    Unreadable,
    /// The worker refused it (the call failed), with this message.
    Refused(String),
    /// The worker holds it as a tensor of this many bytes, and gave back
    /// the same dtype, shape and data.
    Held(u64),
}

/// Decodes `bytes`, one Cap'n Proto message in stream framing whose root is
/// a `TensorData`, read with the worker's reader options for
/// `max_message_bytes`, by sending it in a `fromData` call to a
/// [`TensorWorker`] whose quota is `memory_limit` bytes.
///
/// See [`decode_tensor_message`] for what is checked.
pub fn decode_tensor(bytes: &[u8], max_message_bytes: usize, memory_limit: u64) -> Decoded {
    let options = limits(max_message_bytes).reader_options();
    let Ok(message) = capnp::serialize::read_message(&mut &bytes[..], options) else {
        return Decoded::Unreadable;
    };
    let Ok(data) = message.get_root::<tensor_data::Reader<'_>>() else {
        return Decoded::Unreadable;
    };
    decode_tensor_message(data, memory_limit)
}

/// Sends `data` in a `fromData` call to a [`TensorWorker`] whose quota is
/// `memory_limit` bytes, and reads the tensor back.
///
/// # Panics
///
/// Panics if the worker holds more than `memory_limit` bytes, if a tensor
/// it accepts reads back as anything but the dtype, shape and bytes sent,
/// or if its quota is not back to nothing once the tensor is released.
pub fn decode_tensor_message(data: tensor_data::Reader<'_>, memory_limit: u64) -> Decoded {
    // Read once, as the worker reads a call's parameters once; the copy
    // follows every pointer under the message's own limits.
    let mut sent = capnp::message::Builder::new_default();
    if sent.set_root(data).is_err() {
        return Decoded::Unreadable;
    }
    let Ok(sent) = sent.get_root_as_reader::<tensor_data::Reader<'_>>() else {
        return Decoded::Unreadable;
    };
    let quota = Quota::new(memory_limit);
    let worker: tensor_worker::Client = crate::new_client(TensorWorker::new("fuzz", quota.clone()));
    let mut req = worker.from_data_request();
    req.get()
        .set_data(sent)
        .expect("copying a message already copied once");
    let decoded = on_local_set(async {
        let reply = match req.send().promise.await {
            Ok(reply) => reply,
            Err(e) => return Decoded::Refused(e.to_string()),
        };
        let tensor = reply
            .get()
            .and_then(|r| r.get_tensor())
            .expect("fromData returned no tensor");
        let held = quota.used();
        assert!(
            held <= memory_limit,
            "worker holds {held} bytes, over its quota of {memory_limit}"
        );
        let back = tensor
            .read_request()
            .send()
            .promise
            .await
            .expect("reading back an accepted tensor");
        let back = back.get().and_then(|r| r.get_data()).expect("read reply");
        assert_same_tensor(sent, back);
        Decoded::Held(held)
    });
    drop(worker);
    assert_eq!(quota.used(), 0, "quota not given back after release");
    decoded
}

fn assert_same_tensor(sent: tensor_data::Reader<'_>, back: tensor_data::Reader<'_>) {
    assert_eq!(
        sent.get_dtype().ok(),
        back.get_dtype().ok(),
        "dtype changed on the way through the worker"
    );
    let shape = |r: tensor_data::Reader<'_>| r.get_shape().map(|s| s.iter().collect::<Vec<_>>());
    assert_eq!(
        shape(sent).ok(),
        shape(back).ok(),
        "shape changed on the way through the worker"
    );
    assert!(
        sent.get_data().ok() == back.get_data().ok(),
        "data changed on the way through the worker"
    );
}

/// Runs `fut` on a current-thread runtime and `LocalSet` kept for the
/// thread (building one per input would dominate the fuzzer's time).
fn on_local_set<F: std::future::Future>(fut: F) -> F::Output {
    thread_local! {
        static RT: Rc<(tokio::runtime::Runtime, tokio::task::LocalSet)> = Rc::new((
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("building a current-thread tokio runtime"),
            tokio::task::LocalSet::new(),
        ));
    }
    let rt = RT.with(Rc::clone);
    rt.1.block_on(&rt.0, fut)
}
