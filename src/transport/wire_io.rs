//! The wire's writing helpers: frame tables, partial writes, and the
//! lingering close after an abort.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use capnp::Error;
use tokio::io::AsyncWrite;

/// The stream framing's segment table: count minus one, sizes in words,
/// padded to a whole word.
pub(super) fn write_table(buf: &mut Vec<u8>, segments: &[&[u8]]) {
    buf.extend_from_slice(&(segments.len() as u32 - 1).to_le_bytes());
    for s in segments {
        buf.extend_from_slice(&((s.len() / 8) as u32).to_le_bytes());
    }
    if segments.len() % 2 == 0 {
        buf.extend_from_slice(&[0; 4]);
    }
}

/// Writes some of `bytes`; writing none is an error (the stream is closed).
pub(super) fn poll_write_some<S: AsyncWrite>(
    stream: Pin<&mut S>,
    cx: &mut Context<'_>,
    bytes: &[u8],
) -> Poll<Result<usize, Error>> {
    match ready!(stream.poll_write(cx, bytes))? {
        0 => Poll::Ready(Err(io::Error::from(io::ErrorKind::WriteZero).into())),
        n => Poll::Ready(Ok(n)),
    }
}

/// Bytes read and dropped, at most, while lingering after an abort.
pub(super) const DRAIN_BYTES: usize = 1 << 20;
/// How long a close after an abort lingers, at most.
const DRAIN_TIME: std::time::Duration = std::time::Duration::from_secs(1);

/// A lingering close. Closing a socket that still holds unread bytes from
/// the peer (the rest of a refused frame, a flood) makes the kernel reset
/// the connection, and a reset can discard the abort on its way to the
/// peer: the peer would see `connection reset` instead of why. So after an
/// abort is written the writer sends end-of-stream and reads and drops
/// what the peer still sends, until the peer closes, [`DRAIN_BYTES`] or
/// [`DRAIN_TIME`].
pub(super) struct Drain {
    pub(super) deadline: Pin<Box<tokio::time::Sleep>>,
    pub(super) read: usize,
    pub(super) shut: bool,
}

impl Drain {
    /// `None` off a tokio runtime (there is no timer to bound it by).
    pub(super) fn new() -> Option<Self> {
        tokio::runtime::Handle::try_current().ok()?;
        Some(Drain {
            deadline: Box::pin(tokio::time::sleep(DRAIN_TIME)),
            read: 0,
            shut: false,
        })
    }
}
