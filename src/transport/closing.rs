//! [`Closing`]: how a server's connections stop reading at shutdown while
//! their writes go on.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

/// How long a connection closed by [`Server::shutdown`](super::server::Server::shutdown) has to write
/// what it has queued before it is cut.
pub(crate) const CLOSE_LINGER: Duration = Duration::from_secs(2);

/// A server's stream that stops reading when `closing` is cancelled: reads
/// then fail as if the peer had hung up, while writes go on. capnp-rpc
/// answers that by writing what it has queued, then an abort, and closing
/// the connection. (Cutting the `Link` would fail those writes too.)
pub(crate) struct Closing<S> {
    inner: S,
    token: CancellationToken,
    closing: Pin<Box<WaitForCancellationFutureOwned>>,
}

impl<S> Closing<S> {
    pub(crate) fn new(inner: S, closing: &CancellationToken) -> Self {
        Closing {
            inner,
            token: closing.clone(),
            closing: Box::pin(closing.clone().cancelled_owned()),
        }
    }
}

fn closed_read() -> io::Error {
    io::Error::new(io::ErrorKind::ConnectionAborted, "worker is shutting down")
}

impl<S: AsyncRead + Unpin> AsyncRead for Closing<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        // As in `Link`: the flag while the stream is ready, the future (which
        // registers a waker) only before parking.
        if self.token.is_cancelled() {
            return Poll::Ready(Err(closed_read()));
        }
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Pending if self.closing.as_mut().poll(cx).is_ready() => {
                Poll::Ready(Err(closed_read()))
            }
            other => other,
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Closing<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
