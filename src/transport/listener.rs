//! What a transport gives the server ([`super::server`]): a listener that
//! accepts connections on one vat and streams that can be handed to
//! another. TCP ([`super::tcp`]) and Unix sockets ([`super::unix`]) are
//! the two implementations; TLS is a layer the server puts over either.

use std::io;

use tokio::io::{AsyncRead, AsyncWrite};

use super::gate_policy::Peer;
use crate::Error;

/// A bound listener, not yet registered with an event loop, so it can be
/// moved to the vat that accepts on it.
pub(crate) trait Listener: Send + 'static {
    /// The listener once registered.
    type Accept: Accept;

    /// Registers the listener with the current vat's reactor.
    fn register(self) -> io::Result<Self::Accept>;
}

/// A listener registered on the accepting vat.
pub(crate) trait Accept: 'static {
    /// The streams it accepts.
    type Stream: Handoff;

    /// The next connection, configured (socket options set). Cancel safe:
    /// the server drops it when it stops accepting.
    async fn accept(&mut self) -> io::Result<Incoming<Self::Stream>>;
}

/// A connection just accepted.
pub(crate) struct Incoming<S> {
    pub(crate) stream: S,
    pub(crate) peer: Peer,
    /// Why the listener turns it away itself (a peer credential it does not
    /// accept); the server answers its first call with this and closes it.
    pub(crate) refused: Option<Error>,
}

/// A connection's stream, which can move from the accepting vat to the
/// vat that serves it (as a std socket: tokio's are tied to one reactor).
pub(crate) trait Handoff: AsyncRead + AsyncWrite + Unpin + Sized + 'static {
    /// The stream on its way between vats.
    type Sent: Send + 'static;

    /// Takes the stream off this vat's reactor.
    fn send(self) -> io::Result<Self::Sent>;

    /// Registers a stream with the current vat's reactor.
    fn receive(sent: Self::Sent) -> io::Result<Self>;
}

impl Handoff for tokio::net::TcpStream {
    type Sent = std::net::TcpStream;

    fn send(self) -> io::Result<Self::Sent> {
        self.into_std()
    }

    fn receive(sent: Self::Sent) -> io::Result<Self> {
        tokio::net::TcpStream::from_std(sent)
    }
}

#[cfg(unix)]
impl Handoff for tokio::net::UnixStream {
    type Sent = std::os::unix::net::UnixStream;

    fn send(self) -> io::Result<Self::Sent> {
        self.into_std()
    }

    fn receive(sent: Self::Sent) -> io::Result<Self> {
        tokio::net::UnixStream::from_std(sent)
    }
}

/// Where the server runs: a runtime's vat threads. Implemented by
/// [`Runtime`](crate::Runtime), so that transport does not depend on it.
pub(crate) trait Vats {
    /// How many vats there are.
    fn count(&self) -> usize;

    /// Runs `job` inside vat `index`'s `LocalSet`.
    fn run(&self, index: usize, job: Box<dyn FnOnce() + Send>);
}
