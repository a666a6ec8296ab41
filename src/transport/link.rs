//! [`Link`]: the byte stream under every remote connection, with a cut
//! switch and an idle timeout.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use std::future::Future;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

use super::outgoing::Outgoing;

/// How a [`Link`] polices its peer.
#[derive(Debug, Default)]
pub(crate) struct LinkConfig {
    /// Fail reads after the peer has sent nothing for this long.
    pub(crate) idle_timeout: Option<Duration>,
    /// Fail writes after the peer has read nothing for this long.
    pub(crate) write_stall_timeout: Option<Duration>,
    /// Counts bytes written, for the connection's reply budget.
    pub(crate) outgoing: Option<Arc<Outgoing>>,
    /// Stop reading while writes are blocked: a server then takes no new
    /// calls from a peer that does not read its replies.
    pub(crate) pause_reads_while_blocked: bool,
    /// Holds all traffic while a partition lasts (a client's link).
    pub(crate) valve: Option<Arc<Valve>>,
}

/// A simulated network partition: while it is shut, a [`Link`] neither
/// reads from nor writes to its stream, so both directions hold their bytes
/// (as a network holds retransmitted segments); when it opens, everything
/// held flows again. `Send + Sync`.
#[derive(Debug, Default)]
pub(crate) struct Valve {
    shut: AtomicBool,
    state: Mutex<ValveState>,
}

#[derive(Debug, Default)]
struct ValveState {
    /// Opens by itself at this time (a stall), if set.
    until: Option<Instant>,
    /// The read and write halves waiting for the valve to open.
    waiting: [Option<Waker>; 2],
}

const READ: usize = 0;
const WRITE: usize = 1;

impl Valve {
    /// Holds all traffic until [`Valve::open`], or until `until` if given.
    pub(crate) fn shut(&self, until: Option<Instant>) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.until = until;
        self.shut.store(true, Ordering::Release);
        // A stall replacing a partition: the waiting halves re-arm their
        // timers.
        for w in state.waiting.iter_mut().filter_map(Option::take) {
            w.wake();
        }
    }

    /// Lets traffic flow again.
    pub(crate) fn open(&self) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.until = None;
        self.shut.store(false, Ordering::Release);
        for w in state.waiting.iter_mut().filter_map(Option::take) {
            w.wake();
        }
    }

    pub(crate) fn is_shut(&self) -> bool {
        self.shut.load(Ordering::Acquire)
    }

    /// Whether `half` may go on; if not, it is woken when it may (the
    /// caller polls `timer` for a stall's end).
    fn poll_open(
        &self,
        half: usize,
        cx: &mut Context<'_>,
        timer: &mut Option<Pin<Box<Sleep>>>,
    ) -> bool {
        loop {
            let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
            if !self.shut.load(Ordering::Acquire) {
                *timer = None;
                return true;
            }
            match state.until {
                Some(at) if at <= Instant::now() => {
                    drop(state);
                    self.open();
                    continue;
                }
                Some(at) => {
                    state.waiting[half] = Some(cx.waker().clone());
                    drop(state);
                    let sleep = timer.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(at)));
                    if sleep.deadline() != at {
                        sleep.as_mut().reset(at);
                    }
                    if sleep.as_mut().poll(cx).is_ready() {
                        continue;
                    }
                    return false;
                }
                None => {
                    state.waiting[half] = Some(cx.waker().clone());
                    *timer = None;
                    return false;
                }
            }
        }
    }
}

/// Wraps a byte stream so that it can be cut from outside and times out
/// when the peer sends nothing for too long.
///
/// Once cut, reads fail with `ConnectionAborted` and writes with
/// `BrokenPipe`, so the RPC system above sees the peer as gone and fails
/// every pending call with `disconnected`. This is how a virtual link is
/// cut, how a missed heartbeat closes a TCP connection, and how a server
/// closes its connections at shutdown: one mechanism for all of them.
pub(crate) struct Link<S> {
    inner: S,
    token: CancellationToken,
    read_cut: Pin<Box<WaitForCancellationFutureOwned>>,
    write_cut: Pin<Box<WaitForCancellationFutureOwned>>,
    idle: Option<(Duration, Pin<Box<Sleep>>)>,
    /// Set while a write is blocked: when the stall timer fires.
    stall: Option<Pin<Box<Sleep>>>,
    stall_timeout: Option<Duration>,
    paused_reader: Option<Waker>,
    /// Pause reads while writes are blocked; cleared for good once a write
    /// fails (see [`Link::write_failed`]).
    pause_reads: bool,
    outgoing: Option<Arc<Outgoing>>,
    valve: Option<Arc<Valve>>,
    /// When a stall ends, for each half held by it.
    valve_timers: [Option<Pin<Box<Sleep>>>; 2],
}

impl<S> Link<S> {
    pub(crate) fn new(inner: S, token: CancellationToken, config: LinkConfig) -> Self {
        Link {
            inner,
            read_cut: Box::pin(token.clone().cancelled_owned()),
            write_cut: Box::pin(token.clone().cancelled_owned()),
            token,
            idle: config
                .idle_timeout
                .map(|d| (d, Box::pin(tokio::time::sleep(d)))),
            stall: None,
            stall_timeout: config.write_stall_timeout,
            paused_reader: None,
            pause_reads: config.pause_reads_while_blocked,
            outgoing: config.outgoing,
            valve: config.valve,
            valve_timers: [None, None],
        }
    }

    /// Whether `half` is held by a partition (then it is woken when the
    /// partition heals, or by a cut).
    fn held(&mut self, half: usize, cx: &mut Context<'_>) -> bool {
        let Some(valve) = &self.valve else {
            return false;
        };
        if !valve.is_shut() && self.valve_timers[half].is_none() {
            return false;
        }
        if valve.poll_open(half, cx, &mut self.valve_timers[half]) {
            return false;
        }
        let cut = if half == READ {
            &mut self.read_cut
        } else {
            &mut self.write_cut
        };
        // Still woken by a cut while held.
        cut.as_mut().poll(cx).is_pending()
    }

    /// A write made progress: the peer is reading.
    fn wrote(&mut self, n: usize) {
        crate::metrics::BYTES_SENT.fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
        if let Some(out) = &self.outgoing {
            out.wrote(n);
        }
        self.stall = None;
        if let Some(reader) = self.paused_reader.take() {
            reader.wake();
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Link<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        // Polling the cut future registers a waker each time (a few hundred
        // instructions); checking the flag is enough while the stream is
        // ready, and the future is polled below before parking.
        if this.token.is_cancelled() {
            return Poll::Ready(Err(cut_read()));
        }
        if this.held(READ, cx) {
            return Poll::Pending;
        }
        if this.token.is_cancelled() {
            return Poll::Ready(Err(cut_read()));
        }
        if this.pause_reads && this.stall.is_some() {
            // Writes are blocked: take nothing more from this peer until it
            // reads what it was sent.
            this.paused_reader = Some(cx.waker().clone());
            if this.read_cut.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Err(cut_read()));
            }
            return Poll::Pending;
        }
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(r) => {
                if buf.filled().len() > before {
                    crate::metrics::BYTES_RECEIVED.fetch_add(
                        (buf.filled().len() - before) as u64,
                        std::sync::atomic::Ordering::Relaxed,
                    );
                    if let Some((d, sleep)) = &mut this.idle {
                        sleep.as_mut().reset(Instant::now() + *d);
                    }
                }
                Poll::Ready(r)
            }
            Poll::Pending => {
                if this.read_cut.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Err(cut_read()));
                }
                if let Some((d, sleep)) = &mut this.idle {
                    if sleep.as_mut().poll(cx).is_ready() {
                        this.token.cancel();
                        return Poll::Ready(Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            format!("peer sent nothing for {d:?}"),
                        )));
                    }
                }
                Poll::Pending
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Link<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        // As in `poll_read`: the flag on the fast path, the future only
        // before parking.
        if self.token.is_cancelled() {
            return Poll::Ready(Err(cut_write()));
        }
        if self.held(WRITE, cx) {
            return Poll::Pending;
        }
        if self.token.is_cancelled() {
            return Poll::Ready(Err(cut_write()));
        }
        match Pin::new(&mut self.inner).poll_write(cx, buf) {
            Poll::Pending => self.park_write(cx),
            Poll::Ready(Ok(n)) => {
                self.wrote(n);
                Poll::Ready(Ok(n))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(self.write_failed(e))),
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.token.is_cancelled() {
            return Poll::Ready(Err(cut_write()));
        }
        if self.held(WRITE, cx) {
            return Poll::Pending;
        }
        if self.token.is_cancelled() {
            return Poll::Ready(Err(cut_write()));
        }
        match Pin::new(&mut self.inner).poll_flush(cx) {
            Poll::Pending => self.park_write(cx),
            Poll::Ready(Ok(())) => {
                self.wrote(0);
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(self.write_failed(e))),
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl<S> Link<S> {
    /// A write failed: the peer is gone (a broken pipe, a reset), so reads
    /// no longer pause behind writes, and a paused reader is woken to read
    /// what the peer left (an abort saying why) and then its end. capnp-rpc
    /// does not end a connection on a failed write; without this a reader
    /// paused while the writes were blocked would wait for ever. A Unix
    /// socket's peer that closes while the worker streams to it is seen
    /// only by the write (the small buffers keep the writer blocked),
    /// unlike TCP's, whose larger buffers usually let the reader see the
    /// end of stream. The link is not cut: that would race the reader to
    /// the peer's abort.
    fn write_failed(&mut self, e: io::Error) -> io::Error {
        self.pause_reads = false;
        self.stall = None;
        if let Some(reader) = self.paused_reader.take() {
            reader.wake();
        }
        e
    }

    /// The inner stream cannot take more yet: wake on a cut as well.
    fn park_write<T>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        if self.write_cut.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Err(cut_write()));
        }
        if let Some(limit) = self.stall_timeout {
            let stall = self
                .stall
                .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
            if stall.as_mut().poll(cx).is_ready() {
                self.token.cancel();
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("peer read nothing for {limit:?}"),
                )));
            }
        } else if self.pause_reads && self.stall.is_none() {
            // No timeout, but reads still pause while blocked.
            self.stall = Some(Box::pin(tokio::time::sleep(Duration::MAX / 4)));
        }
        Poll::Pending
    }
}

fn cut_read() -> io::Error {
    io::Error::new(io::ErrorKind::ConnectionAborted, "link cut")
}

fn cut_write() -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, "link cut")
}
