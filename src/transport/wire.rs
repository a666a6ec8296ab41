//! [`network`]: capactor's two-party `VatNetwork`, the Cap'n Proto stream
//! framing of RPC messages over one byte stream.
//!
//! It does what capnp-rpc's `twoparty` network does, on the path every
//! call takes, with less work per message:
//!
//! - **Small first segments.** capnp-rpc asks for a 1024-word (8 KiB,
//!   zeroed) first segment for every call; a call is usually a few dozen
//!   words. Messages start at [`FIRST_SEGMENT_WORDS`] and grow as needed.
//! - **One buffer each way, no channels.** Outgoing messages queue in a
//!   `VecDeque`; the writer copies small ones into one buffer and writes a
//!   large segment (tensor data) straight from the message, then flushes
//!   once the queue is empty. Reading is the [`Inbox`]'s: frames are
//!   checked from their segment table and their memory grows as their bytes
//!   arrive, counted against a budget shared by every connection.
//! - **Strangers get little.** On a gated connection ([`gated_network`]),
//!   the [`Preauth`] policy holds the peer to one question at a time and
//!   small messages until the gate has opened.
//!
//! Everything runs on the RPC system's own task: the reader in
//! `receive_incoming_message`, the writer in `drive_until_shutdown`.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::rc::{Rc, Weak};
use std::task::{ready, Context, Poll, Waker};

use capnp::capability::Promise;
use capnp::message::{Builder, HeapAllocator};
use capnp::Error;
use capnp_rpc::rpc_twoparty_capnp::Side;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::inbox::{FrameCap, Inbox, BUFFER};
use super::options::Limits;
use super::preauth::{GateSignal, Preauth};
use super::window::{FlowController, Window};
use super::wire_io::{poll_write_some, write_table, Drain, DRAIN_BYTES};

/// Words in the first segment of a message we send, at most.
const FIRST_SEGMENT_WORDS: u32 = 64;
/// A segment at least this large is written from the message itself, not
/// copied into the write buffer.
const DIRECT: usize = 16 << 10;

/// The two-party network of one connection over `stream`, for the RPC
/// system on `side`.
pub(crate) fn network<S>(stream: S, side: Side, limits: &Limits) -> Network<S>
where
    S: AsyncRead + AsyncWrite + Unpin + 'static,
{
    make_network(stream, side, limits, None)
}

/// [`network`] for a connection whose bootstrap is a gate: until `gate`
/// reports a credential accepted, the peer is held to the pre-auth limits
/// (see [`Preauth`]).
pub(crate) fn gated_network<S>(
    stream: S,
    side: Side,
    limits: &Limits,
    gate: GateSignal,
) -> Network<S>
where
    S: AsyncRead + AsyncWrite + Unpin + 'static,
{
    make_network(stream, side, limits, Some(Preauth::new(gate, limits)))
}

fn make_network<S>(stream: S, side: Side, limits: &Limits, preauth: Option<Preauth>) -> Network<S>
where
    S: AsyncRead + AsyncWrite + Unpin + 'static,
{
    let wire = Rc::new(Wire {
        stream: RefCell::new(stream),
        inbox: RefCell::new(Inbox::new(limits)),
        outbox: RefCell::new(Outbox::default()),
        preauth: RefCell::new(preauth),
        max_message: limits.max_message_bytes as u64,
        stream_window: limits.stream_window,
    });
    let handle = Rc::new(Handle {
        wire: wire.clone(),
        peer: match side {
            Side::Client => Side::Server,
            Side::Server => Side::Client,
        },
    });
    Network {
        wire,
        side,
        handle: Rc::downgrade(&handle),
        unaccepted: Some(handle),
    }
}

/// See [`network`].
pub(crate) struct Network<S> {
    wire: Rc<Wire<S>>,
    side: Side,
    handle: Weak<Handle<S>>,
    /// The connection, until the RPC system accepts it.
    unaccepted: Option<Rc<Handle<S>>>,
}

/// What the reader, the writer and every message share.
struct Wire<S> {
    stream: RefCell<S>,
    inbox: RefCell<Inbox>,
    outbox: RefCell<Outbox>,
    /// The pre-auth policy, until the gate opens.
    preauth: RefCell<Option<Preauth>>,
    max_message: u64,
    stream_window: usize,
}

/// The connection, as handed to the RPC system (possibly several times:
/// by `accept` and by `connect`). When the last handle goes, the writer
/// finishes what is queued and the network's driver resolves.
struct Handle<S> {
    wire: Rc<Wire<S>>,
    peer: Side,
}

impl<S> Drop for Handle<S> {
    fn drop(&mut self) {
        let mut out = self.wire.outbox.borrow_mut();
        out.dropped = true;
        out.wake_writer();
    }
}

struct Connection<S>(Rc<Handle<S>>);

impl<S> capnp_rpc::VatNetwork<Side> for Network<S>
where
    S: AsyncRead + AsyncWrite + Unpin + 'static,
{
    fn connect(&mut self, host_id: Side) -> Option<Box<dyn capnp_rpc::Connection<Side>>> {
        if host_id == self.side {
            return None;
        }
        // Once every handle is gone the connection is over; a new handle on
        // the same wire only sees it closed.
        let handle = self.handle.upgrade().unwrap_or_else(|| {
            Rc::new(Handle {
                wire: self.wire.clone(),
                peer: host_id,
            })
        });
        Some(Box::new(Connection(handle)))
    }

    fn accept(&mut self) -> Promise<Box<dyn capnp_rpc::Connection<Side>>, Error> {
        match self.unaccepted.take() {
            Some(h) => Promise::ok(Box::new(Connection(h))),
            None => Promise::from_future(std::future::pending()),
        }
    }

    fn drive_until_shutdown(&mut self) -> Promise<(), Error> {
        let wire = self.wire.clone();
        Promise::from_future(poll_fn(move |cx| wire.poll_drive(cx)))
    }
}

impl<S> capnp_rpc::Connection<Side> for Connection<S>
where
    S: AsyncRead + AsyncWrite + Unpin + 'static,
{
    fn get_peer_vat_id(&self) -> Side {
        self.0.peer
    }

    fn new_outgoing_message(&mut self, hint: u32) -> Box<dyn capnp_rpc::OutgoingMessage> {
        let words = match hint {
            0 => FIRST_SEGMENT_WORDS,
            n => n.min(FIRST_SEGMENT_WORDS),
        };
        Box::new(Outgoing {
            message: Builder::new(HeapAllocator::new().first_segment_words(words)),
            wire: self.0.wire.clone(),
        })
    }

    fn receive_incoming_message(
        &mut self,
    ) -> Promise<Option<Box<dyn capnp_rpc::IncomingMessage>>, Error> {
        let wire = self.0.wire.clone();
        Promise::from_future(poll_fn(move |cx| wire.poll_receive(cx)))
    }

    fn new_stream(&mut self) -> (Box<dyn capnp_rpc::FlowController>, Promise<(), Error>) {
        let window = Rc::new(RefCell::new(Window::new(self.0.wire.stream_window)));
        let driver = window.clone();
        (
            Box::new(FlowController(window)),
            Promise::from_future(poll_fn(move |cx| driver.borrow_mut().poll_acks(cx))),
        )
    }

    fn shutdown(&mut self, result: capnp::Result<()>) -> Promise<(), Error> {
        {
            let mut out = self.0.wire.outbox.borrow_mut();
            out.closing = true;
            // Closing on an error (a refused frame, say): let the abort
            // that says why reach the peer (see `Drain`).
            if result.is_err() && out.drain.is_none() {
                out.drain = Drain::new();
            }
            out.wake_writer();
        }
        let wire = self.0.wire.clone();
        Promise::from_future(poll_fn(move |cx| {
            let mut out = wire.outbox.borrow_mut();
            match &out.finished {
                Some(r) => Poll::Ready(r.clone()),
                None => {
                    out.closers.push(cx.waker().clone());
                    out.wake_writer();
                    Poll::Pending
                }
            }
        }))
    }
}

// ---------------------------------------------------------------------------
// Writing.

/// A message being built, then queued on the wire.
struct Outgoing<S> {
    message: Builder<HeapAllocator>,
    wire: Rc<Wire<S>>,
}

impl<S: 'static> capnp_rpc::OutgoingMessage for Outgoing<S> {
    fn get_body(&mut self) -> capnp::Result<capnp::any_pointer::Builder<'_>> {
        self.message.get_root()
    }

    fn get_body_as_reader(&self) -> capnp::Result<capnp::any_pointer::Reader<'_>> {
        self.message.get_root_as_reader()
    }

    fn send(self: Box<Self>) -> (Promise<(), Error>, Rc<Builder<HeapAllocator>>) {
        let message = Rc::new(self.message);
        if let Some(p) = self.wire.preauth.borrow_mut().as_mut() {
            p.sent(&message);
        }
        let mut out = self.wire.outbox.borrow_mut();
        // After a write error or the close, there is nobody to send to.
        if out.finished.is_none() {
            out.queue.push_back(message.clone());
            out.wake_writer();
        }
        // capnp-rpc never waits for a send; nothing to report.
        (Promise::ok(()), message)
    }

    fn take(self: Box<Self>) -> Builder<HeapAllocator> {
        self.message
    }

    fn size_in_words(&self) -> usize {
        self.message.size_in_words()
    }
}

/// The writer's state.
#[derive(Default)]
struct Outbox {
    queue: VecDeque<Rc<Builder<HeapAllocator>>>,
    /// Serialized bytes not yet written, from `written` on.
    buf: Vec<u8>,
    written: usize,
    /// The message being serialized, and its next segment.
    current: Option<(Rc<Builder<HeapAllocator>>, usize)>,
    /// A large segment being written from its message: (message, segment,
    /// bytes of it written). Goes after `buf`.
    direct: Option<(Rc<Builder<HeapAllocator>>, usize, usize)>,
    writer: Option<Waker>,
    /// `shutdown` was called: finish what is queued, then stop.
    closing: bool,
    /// Every connection handle is gone.
    dropped: bool,
    /// How the writer ended: everything written after a close, or an error.
    finished: Option<Result<(), Error>>,
    /// `shutdown` promises waiting for `finished`.
    closers: Vec<Waker>,
    /// Set when closing on an error: what is left of the lingering close.
    drain: Option<Drain>,
}

impl Outbox {
    fn wake_writer(&mut self) {
        if let Some(w) = self.writer.take() {
            w.wake();
        }
    }

    fn finish(&mut self, result: Result<(), Error>) {
        self.finished = Some(result);
        self.queue.clear();
        self.current = None;
        self.direct = None;
        for w in self.closers.drain(..) {
            w.wake();
        }
    }

    /// Serializes queued messages into `buf` until it holds [`BUFFER`]
    /// bytes, the queue is empty, or a large segment is next (set as
    /// `direct`).
    fn fill(&mut self) {
        while self.buf.len() < BUFFER {
            let (message, next) = match self.current.take() {
                Some(c) => c,
                None => match self.queue.pop_front() {
                    Some(m) => (m, 0),
                    None => return,
                },
            };
            let segments = message.get_segments_for_output();
            if next == 0 {
                write_table(&mut self.buf, &segments);
            }
            for (i, segment) in segments.iter().enumerate().skip(next) {
                if segment.len() >= DIRECT {
                    if i + 1 < segments.len() {
                        self.current = Some((message.clone(), i + 1));
                    }
                    self.direct = Some((message, i, 0));
                    return;
                }
                self.buf.extend_from_slice(segment);
            }
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Wire<S> {
    /// The network's driver: writes until the connection is closed and
    /// every handle dropped, then resolves with how writing ended.
    fn poll_drive(&self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        let mut out = self.outbox.borrow_mut();
        if out.finished.is_none() {
            match self.poll_write_all(&mut out, cx) {
                Poll::Ready(Ok(())) if out.closing || out.dropped => {
                    let lingering = match out.drain.as_mut() {
                        Some(d) => self.poll_drain(d, cx).is_pending(),
                        None => false,
                    };
                    if !lingering {
                        out.drain = None;
                        out.finish(Ok(()));
                    }
                }
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(e)) => out.finish(Err(e)),
                Poll::Pending => {}
            }
        }
        match &out.finished {
            Some(r) if out.dropped => Poll::Ready(r.clone()),
            _ => {
                out.writer = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }

    /// Lingers after an abort (see [`Drain`]): ready when done.
    fn poll_drain(&self, d: &mut Drain, cx: &mut Context<'_>) -> Poll<()> {
        let mut stream = self.stream.borrow_mut();
        let mut stream = Pin::new(&mut *stream);
        if !d.shut {
            ready!(stream.as_mut().poll_shutdown(cx)).ok();
            d.shut = true;
        }
        let mut scratch = [0u8; 8 << 10];
        while d.read < DRAIN_BYTES {
            if d.deadline.as_mut().poll(cx).is_ready() {
                return Poll::Ready(());
            }
            let mut buf = ReadBuf::new(&mut scratch);
            match ready!(stream.as_mut().poll_read(cx, &mut buf)) {
                Ok(()) if !buf.filled().is_empty() => d.read += buf.filled().len(),
                // The peer closed, or the link is gone.
                _ => return Poll::Ready(()),
            }
        }
        Poll::Ready(())
    }

    /// Writes everything queued, then flushes.
    fn poll_write_all(&self, out: &mut Outbox, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        let mut stream = self.stream.borrow_mut();
        let mut stream = Pin::new(&mut *stream);
        loop {
            if out.written < out.buf.len() {
                out.written += ready!(poll_write_some(
                    stream.as_mut(),
                    cx,
                    &out.buf[out.written..]
                ))?;
                continue;
            }
            if let Some((message, segment, done)) = &mut out.direct {
                let bytes = &message.get_segments_for_output()[*segment][*done..];
                if !bytes.is_empty() {
                    *done += ready!(poll_write_some(stream.as_mut(), cx, bytes))?;
                    continue;
                }
                out.direct = None;
            }
            out.buf.clear();
            out.written = 0;
            out.fill();
            if out.buf.is_empty() && out.direct.is_none() {
                ready!(stream.as_mut().poll_flush(cx))?;
                return Poll::Ready(Ok(()));
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Reading.

impl<S: AsyncRead + AsyncWrite + Unpin> Wire<S> {
    /// The next message, `None` at a clean end of stream.
    fn poll_receive(
        &self,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Option<Box<dyn capnp_rpc::IncomingMessage>>, Error>> {
        let mut inbox = self.inbox.borrow_mut();
        loop {
            let cap = ready!(self.poll_preauth(cx))?;
            // The stream cannot be resynchronised after a refused frame,
            // so callers see the connection as gone; capnp-rpc still tells
            // the peer why.
            if let Some((message, bytes)) = inbox.parse(cap)? {
                if let Some(p) = self.preauth.borrow_mut().as_mut() {
                    p.admit(&message, bytes)?;
                }
                return Poll::Ready(Ok(Some(Box::new(message))));
            }
            let n = {
                let mut stream = self.stream.borrow_mut();
                let mut buf = ReadBuf::new(inbox.space()?);
                ready!(Pin::new(&mut *stream).poll_read(cx, &mut buf))?;
                buf.filled().len()
            };
            if n == 0 {
                return Poll::Ready(if inbox.idle() {
                    Ok(None)
                } else {
                    Err(Error::from_kind(capnp::ErrorKind::PrematureEndOfFile))
                });
            }
            inbox.filled(n);
        }
    }

    /// Whether the reader may go on, and how large a frame may be: pending
    /// while a stranger's question awaits its answer.
    fn poll_preauth(&self, cx: &mut Context<'_>) -> Poll<Result<FrameCap, Error>> {
        let mut preauth = self.preauth.borrow_mut();
        let Some(p) = preauth.as_mut() else {
            return Poll::Ready(Ok(FrameCap::Open {
                max_message: self.max_message,
            }));
        };
        if p.is_over() {
            *preauth = None;
            return Poll::Ready(Ok(FrameCap::Open {
                max_message: self.max_message,
            }));
        }
        ready!(p.poll_turn(cx))?;
        Poll::Ready(Ok(p.frame_cap()))
    }
}

#[cfg(test)]
#[path = "wire_tests.rs"]
mod tests;
