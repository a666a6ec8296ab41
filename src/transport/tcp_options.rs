//! What a TCP worker's own options are: how its accepted sockets are set
//! up ([`TcpOptions`], a field of [`ServeOptions`](crate::ServeOptions)).
//! A leaf, so that the shared options can name it without importing the
//! transport.

use std::time::Duration;

/// How a worker sets up the TCP (and TLS-over-TCP) sockets it accepts.
/// `TCP_NODELAY` is always on: every message is a whole frame.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
///
/// let mut opts = capactor::ServeOptions::insecure_loopback();
/// opts.tcp.keepalive = Some(Duration::from_secs(10)); // notice dead hosts sooner
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct TcpOptions {
    /// TCP keepalive idle time; the kernel then probes every third of it
    /// and gives up after three misses. Default 30 s; `None` for off.
    pub keepalive: Option<Duration>,
}

impl Default for TcpOptions {
    fn default() -> Self {
        TcpOptions {
            keepalive: Some(Duration::from_secs(30)),
        }
    }
}
