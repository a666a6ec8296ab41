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
use std::io;
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

/// Bytes read and dropped, at most, while lingering after an abort.
const DRAIN_BYTES: usize = 1 << 20;
/// How long a close after an abort lingers, at most.
const DRAIN_TIME: std::time::Duration = std::time::Duration::from_secs(1);

/// A lingering close. Closing a socket that still holds unread bytes from
/// the peer (the rest of a refused frame, a flood) makes the kernel reset
/// the connection, and a reset can discard the abort on its way to the
/// peer: the peer would see `connection reset` instead of why. So after an
/// abort is written the writer sends end-of-stream and reads and drops
/// what the peer still sends, until the peer closes, [`DRAIN_BYTES`] or
/// [`DRAIN_TIME`].
struct Drain {
    deadline: Pin<Box<tokio::time::Sleep>>,
    read: usize,
    shut: bool,
}

impl Drain {
    /// `None` off a tokio runtime (there is no timer to bound it by).
    fn new() -> Option<Self> {
        tokio::runtime::Handle::try_current().ok()?;
        Some(Drain {
            deadline: Box::pin(tokio::time::sleep(DRAIN_TIME)),
            read: 0,
            shut: false,
        })
    }
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

/// The stream framing's segment table: count minus one, sizes in words,
/// padded to a whole word.
fn write_table(buf: &mut Vec<u8>, segments: &[&[u8]]) {
    buf.extend_from_slice(&(segments.len() as u32 - 1).to_le_bytes());
    for s in segments {
        buf.extend_from_slice(&((s.len() / 8) as u32).to_le_bytes());
    }
    if segments.len() % 2 == 0 {
        buf.extend_from_slice(&[0; 4]);
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

/// Writes some of `bytes`; writing none is an error (the stream is closed).
fn poll_write_some<S: AsyncWrite>(
    stream: Pin<&mut S>,
    cx: &mut Context<'_>,
    bytes: &[u8],
) -> Poll<Result<usize, Error>> {
    match ready!(stream.poll_write(cx, bytes))? {
        0 => Poll::Ready(Err(io::Error::from(io::ErrorKind::WriteZero).into())),
        n => Poll::Ready(Ok(n)),
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
mod tests {
    use super::super::inbox::parse_table;
    use super::*;
    use capnp_rpc::VatNetwork as _;
    use futures::FutureExt;

    /// A peer's byte stream, handed out at most `step` bytes per read; and
    /// what we write, taken at most `step` bytes per write.
    struct Trickle {
        bytes: Vec<u8>,
        at: usize,
        step: usize,
    }

    impl AsyncRead for Trickle {
        fn poll_read(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            let n = self
                .step
                .min(self.bytes.len() - self.at)
                .min(buf.remaining());
            let at = self.at;
            buf.put_slice(&self.bytes[at..at + n]);
            self.at += n;
            Poll::Ready(Ok(()))
        }
    }

    impl AsyncWrite for Trickle {
        fn poll_write(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            b: &[u8],
        ) -> Poll<io::Result<usize>> {
            let n = self.step.min(b.len());
            self.bytes.extend_from_slice(&b[..n]);
            Poll::Ready(Ok(n))
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    /// A message whose root is a `Data` of `len` bytes, in segments that
    /// start at `first_words`.
    fn data_message(len: usize, first_words: u32) -> Vec<u8> {
        let mut m = Builder::new(HeapAllocator::new().first_segment_words(first_words));
        let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        m.set_root::<capnp::data::Owned>(&data[..]).unwrap();
        capnp::serialize::write_message_to_words(&m)
    }

    #[test]
    fn messages_are_read_whole_however_the_stream_is_cut() {
        // One segment; several segments; a body larger than the read buffer.
        let lens = [10, 3000, 3 * BUFFER + 5];
        let mut stream = Vec::new();
        for (len, first) in lens.iter().zip([64, 1, 64]) {
            stream.extend(data_message(*len, first));
        }
        for step in [1, 7, 4096, BUFFER, usize::MAX] {
            let trickle = Trickle {
                bytes: stream.clone(),
                at: 0,
                step,
            };
            let mut network = network(trickle, Side::Server, &Limits::default());
            let mut conn = network.accept().now_or_never().unwrap().unwrap();
            for len in lens {
                let message = conn
                    .receive_incoming_message()
                    .now_or_never()
                    .expect("the stream is always ready")
                    .unwrap()
                    .expect("a message");
                let data: capnp::data::Reader<'_> = message.get_body().unwrap().get_as().unwrap();
                assert_eq!(data.len(), len, "step {step}");
                assert!(data.iter().enumerate().all(|(i, b)| *b == (i % 251) as u8));
            }
            let end = conn.receive_incoming_message().now_or_never().unwrap();
            assert!(
                matches!(end, Ok(None)),
                "a clean end after the last message"
            );
        }
    }

    #[test]
    fn messages_are_written_in_the_stream_framing() {
        for step in [1, 7, 4096, usize::MAX] {
            let trickle = Trickle {
                bytes: Vec::new(),
                at: 0,
                step,
            };
            let mut network = network(trickle, Side::Client, &Limits::default());
            let mut conn = network.accept().now_or_never().unwrap().unwrap();
            let mut expected = Vec::new();
            // Small ones are copied into the buffer; the large segment of
            // the last is written from the message.
            for len in [10, 3000, 3 * DIRECT] {
                let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
                let mut out = conn.new_outgoing_message(0);
                out.get_body()
                    .unwrap()
                    .set_as::<capnp::data::Owned>(&data[..])
                    .unwrap();
                let (_, sent) = out.send();
                expected.extend(capnp::serialize::write_message_to_words(&*sent));
            }
            let mut driver = network.drive_until_shutdown();
            assert!(
                (&mut driver).now_or_never().is_none(),
                "drives until shutdown"
            );
            assert_eq!(network.wire.stream.borrow().bytes, expected, "step {step}");
            // Shutdown completes once the driver has written everything;
            // the driver, once the connection is dropped too.
            let mut closed = conn.shutdown(Ok(()));
            assert!((&mut closed).now_or_never().is_none());
            assert!((&mut driver).now_or_never().is_none());
            assert!(matches!(closed.now_or_never(), Some(Ok(()))));
            drop(conn);
            assert!(matches!(driver.now_or_never(), Some(Ok(()))));
        }
    }

    #[test]
    fn a_stream_cut_mid_message_is_an_error() {
        let mut bytes = data_message(100, 64);
        bytes.truncate(bytes.len() - 3);
        let trickle = Trickle {
            bytes,
            at: 0,
            step: 10,
        };
        let mut network = network(trickle, Side::Server, &Limits::default());
        let mut conn = network.accept().now_or_never().unwrap().unwrap();
        let end = conn.receive_incoming_message().now_or_never().unwrap();
        assert_eq!(
            end.err().unwrap().kind,
            capnp::ErrorKind::PrematureEndOfFile
        );
    }

    #[test]
    fn tables_written_are_tables_read() {
        for n in 1..5 {
            let segments: Vec<Vec<u8>> = (0..n).map(|i| vec![0u8; 8 * (i + 1)]).collect();
            let slices: Vec<&[u8]> = segments.iter().map(|s| &s[..]).collect();
            let mut buf = Vec::new();
            write_table(&mut buf, &slices);
            assert_eq!(buf.len() % 8, 0);
            let (ends, len) = parse_table(&buf, 1 << 20).unwrap().unwrap();
            assert_eq!(len, buf.len());
            assert_eq!(ends.len(), n);
            assert_eq!(*ends.last().unwrap() as usize, (1..=n).sum::<usize>());
        }
    }
}
