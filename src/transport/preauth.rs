//! [`Preauth`]: what a peer may make a worker do before its gate opens.
//!
//! A stranger gets one question at a time, small messages and a small
//! budget of bytes in all, enforced where every frame passes (the wire's
//! reader) and cheaply: a message's kind is its root union's tag.
//!
//! - **One question at a time.** After a `Bootstrap` or `Call`, the reader
//!   takes nothing more from the stream until that question's `Return` has
//!   gone out. What the peer pipelines behind it (calls on the actor the
//!   gate will hand out, further `open`s) waits in the kernel's socket
//!   buffers, where it costs the worker nothing, and is read once the gate
//!   has opened, so a legitimate client's pipelined first call still costs
//!   no extra round trip.
//! - **Few unfinished questions, one `Bootstrap`.** Each answer stays in
//!   capnp-rpc's answer table until the peer sends `Finish`, so the
//!   questions not yet finished are capped too (a client that finishes what
//!   it asked, as every RPC library does, never meets the cap); a second
//!   `Bootstrap` is refused outright.
//! - **Small messages, few bytes.** A frame larger than the pre-auth
//!   message size, or one that would take the bytes received past the
//!   pre-auth budget, is refused from its segment table.
//!
//! Any refusal closes the connection; capnp-rpc tells the peer why in its
//! `Abort`. Once the gate reports success the policy is dropped and the
//! connection runs under its ordinary limits.

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use capnp::message::{Builder, HeapAllocator};
use capnp_rpc::rpc_capnp::message;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

use super::inbox::{FrameCap, Incoming};
use super::options::Limits;
use crate::Error;

/// How the gate of a connection reports to its wire: `opened` turns true
/// once a credential is accepted; `cut` closes the connection.
#[derive(Clone, Debug)]
pub(crate) struct GateSignal {
    pub(crate) opened: Rc<Cell<bool>>,
    pub(crate) cut: CancellationToken,
}

/// The pre-auth policy of one connection; see the module docs.
pub(crate) struct Preauth {
    opened: Rc<Cell<bool>>,
    /// Resolves when the connection is cut: a parked reader polls no
    /// stream, so it must notice the cut itself.
    cut: Pin<Box<WaitForCancellationFutureOwned>>,
    max_message: u64,
    max_bytes: u64,
    max_questions: u32,
    /// Frame bytes received so far.
    bytes: u64,
    /// Questions asked and not yet finished by the peer.
    unfinished: Vec<u32>,
    bootstrapped: bool,
    /// The question whose `Return` has not gone out yet.
    outstanding: Option<u32>,
    /// The reader, parked until `outstanding` is answered.
    reader: Option<Waker>,
}

impl Preauth {
    pub(crate) fn new(gate: GateSignal, limits: &Limits) -> Self {
        Preauth {
            opened: gate.opened,
            cut: Box::pin(gate.cut.cancelled_owned()),
            max_message: limits
                .max_preauth_message_bytes
                .min(limits.max_message_bytes) as u64,
            max_bytes: limits.max_preauth_bytes,
            max_questions: limits.max_preauth_questions,
            bytes: 0,
            unfinished: Vec::new(),
            bootstrapped: false,
            outstanding: None,
            reader: None,
        }
    }

    /// True once the gate has accepted a credential: the policy is over.
    pub(crate) fn is_over(&self) -> bool {
        self.opened.get()
    }

    /// `Ready` when the reader may take the next message; `Ready(Err)` if
    /// the connection was cut while it waited.
    pub(crate) fn poll_turn(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), capnp::Error>> {
        if self.outstanding.is_none() {
            return Poll::Ready(Ok(()));
        }
        if self.cut.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Err(capnp::Error::disconnected("link cut".into())));
        }
        self.reader = Some(cx.waker().clone());
        Poll::Pending
    }

    /// How large the next frame may be.
    pub(crate) fn frame_cap(&self) -> FrameCap {
        FrameCap::Preauth {
            max_message: self.max_message,
            spent: self.bytes,
            budget: self.max_bytes,
        }
    }

    /// Lets `message` (a frame of `frame_bytes`) through, or refuses it.
    pub(crate) fn admit(
        &mut self,
        message: &Incoming,
        frame_bytes: u64,
    ) -> Result<(), capnp::Error> {
        // The frame cap kept this within the budget already.
        self.bytes += frame_bytes;
        // What does not parse is capnp-rpc's to refuse, in its own words.
        let Ok(root) = message.root::<message::Reader<'_>>() else {
            return Ok(());
        };
        let question = match root.which() {
            Ok(message::Bootstrap(Ok(b))) => {
                if std::mem::replace(&mut self.bootstrapped, true) {
                    return Err(Error::invalid(
                        "a second Bootstrap before the gate opened is refused",
                    )
                    .into());
                }
                b.get_question_id()
            }
            Ok(message::Call(Ok(c))) => c.get_question_id(),
            Ok(message::Finish(Ok(f))) => {
                let question = f.get_question_id();
                self.unfinished.retain(|&q| q != question);
                return Ok(());
            }
            _ => return Ok(()),
        };
        let asked = self.unfinished.len() + 1;
        if asked > self.max_questions as usize {
            return Err(Error::limit(
                "unfinished questions before the gate opens",
                asked,
                self.max_questions,
            )
            .into());
        }
        self.unfinished.push(question);
        self.outstanding = Some(question);
        Ok(())
    }

    /// `message` is going out: if it answers the outstanding question, the
    /// reader may take the next one.
    pub(crate) fn sent(&mut self, message: &Builder<HeapAllocator>) {
        let Some(question) = self.outstanding else {
            return;
        };
        let Ok(root) = message.get_root_as_reader::<message::Reader<'_>>() else {
            return;
        };
        if let Ok(message::Return(Ok(r))) = root.which() {
            if r.get_answer_id() == question {
                self.outstanding = None;
                if let Some(w) = self.reader.take() {
                    w.wake();
                }
            }
        }
    }
}
