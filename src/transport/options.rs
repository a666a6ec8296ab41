//! The options shared by every transport: what a peer may send
//! ([`Limits`]) and how a worker serves ([`ServeOptions`]).
//!
//! They sit at the bottom of the transport layering: the wire, the link
//! and every transport read them, and they import nothing of transport's
//! but the receive budget they carry.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::tls::ServerTls;
use crate::{Error, Result};

/// Limits on what one connection may send us.
///
/// # Examples
///
/// ```
/// let mut limits = capactor::Limits::default();
/// limits.max_message_bytes = 16 << 20;
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Limits {
    /// The largest message a peer may send, in bytes. A larger one is
    /// refused before it is allocated and the connection is closed (the
    /// protocol cannot resynchronise after a refused frame). Default 64 MiB.
    pub max_message_bytes: usize,
    /// How deeply structs and lists may nest in a message. Default 64.
    pub max_nesting: i32,
    /// Flow-control window of each `-> stream` method, in bytes.
    /// Default 1 MiB.
    pub stream_window: usize,
    /// Calls the peer may have in flight on the actors this side serves;
    /// one more fails with `calls in flight limit exceeded`. Default 1024.
    pub max_calls_in_flight: u32,
    /// Memory the objects created through this connection may hold (a
    /// tensor worker's tensors, say), on top of the actor's own quota.
    /// Default `None` (only the actor's quota applies).
    pub max_connection_memory: Option<u64>,
    /// Reply bytes this side may have queued for a peer that is not reading
    /// them; a large reply past it fails with `outgoing queue limit
    /// exceeded`. Default 256 MiB.
    pub max_outgoing_bytes: u64,
    /// Close the connection if the peer has read nothing of what this side
    /// is trying to send for this long. Default 60 s.
    pub write_stall_timeout: Option<Duration>,
    /// The largest message a peer may send before its credential is
    /// accepted, in bytes; a larger one is refused from its frame header
    /// and the connection closed. Applies to the serving side of a gated
    /// connection. Default 64 KiB.
    pub max_preauth_message_bytes: usize,
    /// Bytes a peer may send in all before its credential is accepted;
    /// the frame that would go past it is refused and the connection
    /// closed. Default 256 KiB.
    pub max_preauth_bytes: u64,
    /// Questions (`Bootstrap`s and calls) a peer may have asked and not yet
    /// finished (capnp-rpc keeps each answer until the peer's `Finish`)
    /// before its credential is accepted; it gets one answered at a time in
    /// any case, and one `Bootstrap`. One more closes the connection.
    /// Default 16.
    pub max_preauth_questions: u32,
    /// Bytes of received messages held at once, being received or in use,
    /// by every connection served (or made) with these limits and their
    /// clones: one worker's connections share this budget across its vats.
    /// A frame that would take it past the limit is refused with
    /// `receive buffers limit exceeded` and its connection closed. Memory
    /// is counted as it is allocated, which is as the bytes arrive, never
    /// from a frame header's claim. Default 1 GiB.
    pub max_buffered_bytes: u64,
    /// What `max_buffered_bytes` counts (shared by clones).
    buffered: Buffered,
}

impl Limits {
    /// Bytes of received messages held now by the connections that share
    /// these limits (see [`Limits::max_buffered_bytes`]).
    pub fn buffered_bytes(&self) -> u64 {
        self.buffered.used()
    }

    /// What [`Limits::max_buffered_bytes`] counts (shared by clones).
    pub(crate) fn budget(&self) -> &Buffered {
        &self.buffered
    }

    /// How capnp reads what a peer sends under these limits.
    pub(crate) fn reader_options(&self) -> capnp::message::ReaderOptions {
        let mut options = capnp::message::ReaderOptions::new();
        options
            .traversal_limit_in_words(Some(self.max_message_bytes.div_ceil(8)))
            .nesting_limit(self.max_nesting);
        options
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_message_bytes: 64 << 20,
            max_nesting: 64,
            stream_window: 1 << 20,
            max_calls_in_flight: 1024,
            max_connection_memory: None,
            max_outgoing_bytes: 256 << 20,
            write_stall_timeout: Some(Duration::from_secs(60)),
            max_preauth_message_bytes: 64 << 10,
            max_preauth_bytes: 256 << 10,
            max_preauth_questions: 16,
            max_buffered_bytes: 1 << 30,
            buffered: Buffered::default(),
        }
    }
}

/// How a TCP worker serves.
///
/// The defaults are safe ones: serving needs a token of at least
/// [`MIN_TOKEN_BYTES`] bytes, or the explicit opt-in
/// [`insecure_no_auth`](Self::insecure_no_auth), which is refused off
/// loopback. `Debug` shows the token's length, never its bytes.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
///
/// let mut opts = capactor::ServeOptions::default();
/// opts.token = Some(b"a token of at least 16 bytes".to_vec());
/// opts.max_connections = 64;
/// opts.call_deadline = Some(Duration::from_secs(60));
/// assert!(!format!("{opts:?}").contains("at least 16"));
/// ```
#[derive(Clone)]
#[non_exhaustive]
pub struct ServeOptions {
    /// The token a client must offer the gate, at least
    /// [`MIN_TOKEN_BYTES`] long. `None` serves without authentication,
    /// which TCP allows only with [`insecure_no_auth`](Self::insecure_no_auth).
    pub token: Option<Vec<u8>>,
    /// Also accept tokens signed by a fleet registry's key (see
    /// [`crate::fleet`]): a worker with a `trust` needs no static token.
    /// Default `None`.
    pub trust: Option<crate::fleet::Trust>,
    /// Serve without a token: over TCP refused unless every address the
    /// listener binds is a loopback address; over a Unix socket allowed (its
    /// file mode and the peer-credential check still apply). Default
    /// `false` (serving without a token fails). Virtual actors need no
    /// opt-in.
    pub insecure_no_auth: bool,
    /// Limits on what a client may send.
    pub limits: Limits,
    /// Connections served at once, authenticated or not; one more is
    /// answered with a `connections limit exceeded` error and closed (unless
    /// an unauthenticated connection can be closed to make room). The
    /// process's open-file limit is raised to fit it, and serving fails if
    /// it cannot be. Default 1024.
    pub max_connections: usize,
    /// Connections that have not yet opened the gate, across the worker; a
    /// new one over it closes the oldest of them. Default 256.
    pub max_unauthenticated: usize,
    /// Connections from one address (IPv6: one /64) that have not yet
    /// opened the gate; a new one over it closes that address's oldest.
    /// Default 64.
    pub max_unauthenticated_per_address: usize,
    /// Failed `Gate.open` attempts the worker evaluates per second across
    /// all its connections (on top of each address's own back-off); later
    /// attempts wait for their turn. 0 for no worker-wide limit. Default 20.
    pub gate_failures_per_second: u32,
    /// Close a connection whose peer has sent nothing for this long.
    /// Default `None` (clients that heartbeat are never idle that long
    /// anyway; TCP keepalive catches dead hosts).
    pub idle_timeout: Option<Duration>,
    /// How accepted TCP sockets are set up (keepalive; see
    /// [`TcpOptions`](crate::TcpOptions)); ignored by the other transports.
    pub tcp: super::tcp_options::TcpOptions,
    /// Serve TLS with this identity; `None` for plain TCP.
    pub tls: Option<ServerTls>,
    /// How long a new connection has, from its arrival, to finish its TLS
    /// handshake (if any) and open the gate, before it is closed.
    /// Default 5 s.
    pub handshake_timeout: Option<Duration>,
    /// Longest a single call may run before it fails with
    /// `call exceeded its deadline`. Default 5 minutes; `None` for no limit.
    pub call_deadline: Option<Duration>,
    /// How a Unix socket worker's file is made and whom it serves (see
    /// [`UnixOptions`](crate::UnixOptions)); ignored by the other
    /// transports.
    #[cfg(unix)]
    pub unix: super::unix_options::UnixOptions,
    /// Show every caller worker-wide totals in `Actor.info` and
    /// `TensorWorker.memory` (other connections' activity included).
    /// Default `false`: each caller sees its own connection's.
    pub report_worker_totals: bool,
    /// Record every call's duration, and the connections, in these
    /// metrics (see [`crate::metrics`]). Default `None`.
    pub metrics: Option<crate::metrics::Metrics>,
}

/// The shortest token a worker accepts to serve with.
pub const MIN_TOKEN_BYTES: usize = 16;

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            token: None,
            trust: None,
            insecure_no_auth: false,
            limits: Limits::default(),
            max_connections: 1024,
            max_unauthenticated: 256,
            max_unauthenticated_per_address: 64,
            gate_failures_per_second: 20,
            idle_timeout: None,
            tcp: super::tcp_options::TcpOptions::default(),
            handshake_timeout: Some(Duration::from_secs(5)),
            tls: None,
            call_deadline: Some(Duration::from_secs(300)),
            #[cfg(unix)]
            unix: super::unix_options::UnixOptions::default(),
            report_worker_totals: false,
            metrics: None,
        }
    }
}

impl ServeOptions {
    /// The defaults, without authentication: for serving on a loopback
    /// address (tests, a worker only local processes reach).
    ///
    /// # Examples
    ///
    /// ```
    /// let opts = capactor::ServeOptions::insecure_loopback();
    /// assert!(opts.insecure_no_auth && opts.token.is_none());
    /// ```
    pub fn insecure_loopback() -> Self {
        ServeOptions {
            insecure_no_auth: true,
            ..ServeOptions::default()
        }
    }

    /// Checks the token before anything is bound.
    pub(crate) fn check_token(&self) -> Result<()> {
        match &self.token {
            Some(t) if t.len() < MIN_TOKEN_BYTES => Err(Error::invalid(format!(
                "the token is {} bytes long; a token must have at least {MIN_TOKEN_BYTES}",
                t.len()
            ))),
            Some(_) => Ok(()),
            None if self.insecure_no_auth || self.trust.is_some() => Ok(()),
            None => Err(Error::invalid(
                "serving TCP without a token needs ServeOptions::insecure_no_auth \
                 (allowed on loopback addresses only)",
            )),
        }
    }
}

impl fmt::Debug for ServeOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut f = f.debug_struct("ServeOptions");
        f.field("token", &self.token.as_ref().map(|t| Redacted(t.len())))
            .field("trust", &self.trust)
            .field("insecure_no_auth", &self.insecure_no_auth)
            .field("limits", &self.limits)
            .field("max_connections", &self.max_connections)
            .field("max_unauthenticated", &self.max_unauthenticated)
            .field(
                "max_unauthenticated_per_address",
                &self.max_unauthenticated_per_address,
            )
            .field("gate_failures_per_second", &self.gate_failures_per_second)
            .field("idle_timeout", &self.idle_timeout)
            .field("tcp", &self.tcp)
            .field("tls", &self.tls)
            .field("handshake_timeout", &self.handshake_timeout)
            .field("call_deadline", &self.call_deadline);
        #[cfg(unix)]
        f.field("unix", &self.unix);
        f.field("report_worker_totals", &self.report_worker_totals)
            .field("metrics", &self.metrics.is_some())
            .finish()
    }
}

/// How a token appears in `Debug` output: its length only.
pub(crate) struct Redacted(pub(crate) usize);

impl fmt::Debug for Redacted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<redacted, {} bytes>", self.0)
    }
}

/// Bytes of received messages held at once by every connection that
/// shares it (the clones of one [`Limits`]).
#[derive(Clone, Default)]
pub(crate) struct Buffered(pub(super) Arc<AtomicU64>);

impl Buffered {
    /// Bytes held now.
    pub(crate) fn used(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

impl fmt::Debug for Buffered {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Buffered({} bytes)", self.used())
    }
}
