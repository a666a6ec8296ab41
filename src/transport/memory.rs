//! The in-memory pipe under virtual connections, with simulated latency
//! and bandwidth, and the options a virtual actor is spawned with.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use std::future::Future;

use rand::{RngExt, SeedableRng};
use rand_pcg::Pcg64;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};
use tokio_util::sync::PollSemaphore;

use super::connect_options::ConnectOptions;
use super::options::ServeOptions;

/// How a virtual link behaves, in each direction.
///
/// Latency can vary: each chunk written waits `latency` plus a random
/// extra of up to `jitter`, drawn from a generator seeded with `seed`, so a
/// run can be replayed. Bytes still arrive in the order they were written
/// (a chunk never overtakes the one before it), as over a real stream.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use capactor::LinkConditions;
///
/// let mut slow = LinkConditions::default();
/// slow.latency = Duration::from_millis(2);
/// slow.jitter = Duration::from_millis(1);
/// slow.seed = 7;
/// slow.bandwidth = Some(100 << 20); // 100 MiB/s
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct LinkConditions {
    /// One-way delay added to every byte.
    pub latency: Duration,
    /// Up to this much extra delay per chunk, uniformly drawn. Default 0.
    pub jitter: Duration,
    /// Seeds the jitter's generator. Default 0.
    pub seed: u64,
    /// Bytes per second each direction carries; `None` for no cap.
    pub bandwidth: Option<u64>,
    /// Bytes a direction holds in flight before writers wait, like a socket
    /// buffer. Default 4 MiB.
    pub buffer: usize,
}

impl Default for LinkConditions {
    fn default() -> Self {
        LinkConditions {
            latency: Duration::ZERO,
            jitter: Duration::ZERO,
            seed: 0,
            bandwidth: None,
            buffer: 4 << 20,
        }
    }
}

/// How [`Runtime::spawn_virtual_with`](crate::Runtime::spawn_virtual_with)
/// serves a virtual actor and connects to it.
///
/// The server side takes the same [`ServeOptions`] a TCP worker does, so a
/// test written against a virtual actor meets the same token gate, limits,
/// call deadline and timeouts it would over TCP (its attempts count under
/// one address, `virtual`). `max_connections`, the unauthenticated pool,
/// `tcp`, `unix` and `tls` have nothing to act on in a pipe and are ignored,
/// and no token is needed (nothing outside the process reaches a pipe).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use capactor::VirtualOptions;
///
/// let mut opts = VirtualOptions::default();
/// opts.link.latency = Duration::from_millis(2);
/// opts.serve.call_deadline = Some(Duration::from_secs(1));
/// opts.serve.token = Some(b"a secret of 16+ bytes".to_vec());
/// opts.connect.token = b"a secret of 16+ bytes".to_vec();
/// ```
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct VirtualOptions {
    /// How the pipe between client and actor behaves: both ways, unless
    /// `reply_link` says otherwise for the way back.
    pub link: LinkConditions,
    /// How the actor-to-client direction behaves, if not as `link`.
    pub reply_link: Option<LinkConditions>,
    /// How the actor's side serves the connection.
    pub serve: ServeOptions,
    /// How the client's side connects.
    pub connect: ConnectOptions,
}

impl LinkConditions {
    fn shaped(&self) -> bool {
        !self.latency.is_zero() || !self.jitter.is_zero() || self.bandwidth.is_some()
    }
}

/// The resolution of tokio's timer.
const TIMER_TICK: Duration = Duration::from_millis(1);

/// Largest chunk one write hands to the reader.
const MAX_CHUNK: usize = 256 << 10;

/// Creates a connected pair of in-memory streams, the same conditions both
/// ways.
pub(crate) fn pipe(cond: &LinkConditions) -> (MemoryStream, MemoryStream) {
    pipe_each_way(cond, cond)
}

/// Creates a connected pair of in-memory streams: bytes the first writes
/// travel under `there`, bytes the second writes under `back`.
pub(crate) fn pipe_each_way(
    there: &LinkConditions,
    back: &LinkConditions,
) -> (MemoryStream, MemoryStream) {
    let (a_tx, a_rx) = half(there);
    let (b_tx, b_rx) = half(back);
    (
        MemoryStream { tx: a_tx, rx: b_rx },
        MemoryStream { tx: b_tx, rx: a_rx },
    )
}

fn half(cond: &LinkConditions) -> (Tx, Rx) {
    let (tx, rx) = mpsc::unbounded_channel();
    let buffer = cond.buffer.clamp(1, Semaphore::MAX_PERMITS);
    let sem = Arc::new(Semaphore::new(buffer));
    let shaper = cond.shaped().then(|| Shaper {
        latency: cond.latency,
        jitter: (!cond.jitter.is_zero()).then(|| (cond.jitter, Pcg64::seed_from_u64(cond.seed))),
        bandwidth: cond.bandwidth,
        free_at: Instant::now(),
        last: Instant::now(),
    });
    (
        Tx {
            chan: Some(tx),
            credit: PollSemaphore::new(sem),
            buffer,
            shaper,
        },
        Rx {
            chan: rx,
            current: None,
            wait: None,
        },
    )
}

struct Chunk {
    data: Vec<u8>,
    deliver_at: Option<Instant>,
    _credit: OwnedSemaphorePermit,
}

struct Shaper {
    latency: Duration,
    jitter: Option<(Duration, Pcg64)>,
    bandwidth: Option<u64>,
    /// When the simulated wire is free to start sending the next chunk.
    free_at: Instant,
    /// When the last chunk is delivered: the next one is not delivered
    /// before it, whatever its jitter.
    last: Instant,
}

impl Shaper {
    fn deliver_at(&mut self, len: usize) -> Instant {
        let start = self.free_at.max(Instant::now());
        let on_wire = match self.bandwidth {
            Some(bps) if bps > 0 => Duration::from_secs_f64(len as f64 / bps as f64),
            _ => Duration::ZERO,
        };
        self.free_at = start + on_wire;
        let extra = self.jitter();
        self.last = self.last.max(self.free_at + self.latency + extra);
        self.last
    }

    /// The next chunk's extra delay.
    fn jitter(&mut self) -> Duration {
        match &mut self.jitter {
            Some((max, rng)) => max.mul_f64(rng.random::<f64>()),
            None => Duration::ZERO,
        }
    }
}

struct Tx {
    chan: Option<mpsc::UnboundedSender<Chunk>>,
    credit: PollSemaphore,
    buffer: usize,
    shaper: Option<Shaper>,
}

struct Rx {
    chan: mpsc::UnboundedReceiver<Chunk>,
    current: Option<(Chunk, usize)>,
    wait: Option<Pin<Box<Sleep>>>,
}

/// One end of an in-memory pipe. Bytes written to one end are read from the
/// other, after the link's latency and bandwidth say they arrive.
pub(crate) struct MemoryStream {
    tx: Tx,
    rx: Rx,
}

impl AsyncRead for MemoryStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let rx = &mut self.rx;
        loop {
            if let Some(wait) = &mut rx.wait {
                ready!(wait.as_mut().poll(cx));
                rx.wait = None;
            }
            if let Some(at) = rx.current.as_ref().and_then(|(c, _)| c.deliver_at) {
                // tokio's timer rounds a deadline up to its next millisecond
                // tick, which would add up to a millisecond to every hop;
                // the timer wakes us a tick early and we yield until the
                // exact time.
                if Instant::now() < at {
                    cx.waker().wake_by_ref();
                    return Poll::Pending;
                }
            }
            if let Some((chunk, off)) = &mut rx.current {
                let n = (chunk.data.len() - *off).min(buf.remaining());
                buf.put_slice(&chunk.data[*off..*off + n]);
                *off += n;
                if *off == chunk.data.len() {
                    rx.current = None;
                }
                return Poll::Ready(Ok(()));
            }
            match ready!(rx.chan.poll_recv(cx)) {
                None => return Poll::Ready(Ok(())),
                Some(chunk) => {
                    if let Some(at) = chunk.deliver_at {
                        let early = at.checked_sub(TIMER_TICK).unwrap_or(at);
                        if early > Instant::now() {
                            rx.wait = Some(Box::pin(tokio::time::sleep_until(early)));
                        }
                    }
                    rx.current = Some((chunk, 0));
                }
            }
        }
    }
}

impl AsyncWrite for MemoryStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let tx = &mut self.tx;
        if tx.chan.as_ref().is_none_or(|c| c.is_closed()) {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let n = buf.len().min(MAX_CHUNK).min(tx.buffer);
        let Some(credit) = ready!(tx.credit.poll_acquire_many(cx, n as u32)) else {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        };
        let deliver_at = tx.shaper.as_mut().map(|s| s.deliver_at(n));
        let chunk = Chunk {
            data: buf[..n].to_vec(),
            deliver_at,
            _credit: credit,
        };
        match tx.chan.as_ref().map(|c| c.send(chunk)) {
            Some(Ok(())) => Poll::Ready(Ok(n)),
            _ => Poll::Ready(Err(io::ErrorKind::BrokenPipe.into())),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.tx.chan = None;
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shaper(seed: u64) -> Shaper {
        let mut c = LinkConditions::default();
        (c.jitter, c.seed) = (Duration::from_millis(10), seed);
        let (tx, _rx) = half(&c);
        tx.shaper.expect("jitter shapes the link")
    }

    #[test]
    fn the_same_seed_replays_the_same_jitter() {
        let (mut a, mut b, mut c) = (shaper(3), shaper(3), shaper(4));
        let run = |s: &mut Shaper| (0..32).map(|_| s.jitter()).collect::<Vec<_>>();
        let (ja, jb, jc) = (run(&mut a), run(&mut b), run(&mut c));
        assert_eq!(ja, jb);
        assert_ne!(ja, jc);
        assert!(ja.iter().all(|d| *d <= Duration::from_millis(10)));
    }
}
