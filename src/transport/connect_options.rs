//! What a client connects with, whichever transport: [`ConnectOptions`],
//! its [`Heartbeat`] and its [`Reconnect`] policy. Above [`super::options`]
//! (whose limits it carries), below everything that connects.

use std::fmt;
use std::time::Duration;

use super::options::{Limits, Redacted};
use super::tls::ClientTls;
use crate::{Error, Result};

/// Heartbeats on a client connection: how a dead or half-open peer is
/// noticed (capnp-rpc itself never times anything out).
///
/// Every `interval` the client pings the actor; if a ping goes unanswered
/// for `timeout`, the connection is closed and every pending call fails with
/// `disconnected`.
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub struct Heartbeat {
    /// Time between pings. Default 5 s.
    pub interval: Duration,
    /// How long a ping may go unanswered. Default 15 s.
    pub timeout: Duration,
}

impl Default for Heartbeat {
    fn default() -> Self {
        Heartbeat {
            interval: Duration::from_secs(5),
            timeout: Duration::from_secs(15),
        }
    }
}

/// How a client connects.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
///
/// let mut opts = capactor::ConnectOptions::default();
/// opts.token = b"secret".to_vec();
/// opts.connect_timeout = Duration::from_secs(2);
/// ```
///
/// Its `Debug` output shows the token's length, never its bytes.
#[derive(Clone)]
#[non_exhaustive]
pub struct ConnectOptions {
    /// The credential offered to the worker's gate. Empty for a worker
    /// that runs without authentication.
    pub token: Vec<u8>,
    /// Limits on what the worker may send back.
    pub limits: Limits,
    /// Heartbeats, or `None` to rely on the transport alone.
    pub heartbeat: Option<Heartbeat>,
    /// How long establishing a TCP connection (and its TLS handshake) may
    /// take. Default 10 s.
    pub connect_timeout: Duration,
    /// Speak TLS, authenticating the worker this way; `None` for plain TCP.
    pub tls: Option<ClientTls>,
    /// Reconnect after the connection drops, under this policy; `None`
    /// (the default) leaves a dropped connection dropped. TCP only. See
    /// [`crate::Reconnect`].
    pub reconnect: Option<Reconnect>,
}

// --- Debug without the token (issue 16) ---
impl fmt::Debug for ConnectOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectOptions")
            .field("token", &Redacted(self.token.len()))
            .field("limits", &self.limits)
            .field("heartbeat", &self.heartbeat)
            .field("connect_timeout", &self.connect_timeout)
            .field("tls", &self.tls)
            .field("reconnect", &self.reconnect)
            .finish()
    }
}
// --- end Debug without the token ---

impl Default for ConnectOptions {
    fn default() -> Self {
        ConnectOptions {
            token: Vec::new(),
            limits: Limits::default(),
            heartbeat: Some(Heartbeat::default()),
            connect_timeout: Duration::from_secs(10),
            tls: None,
            reconnect: None,
        }
    }
}

/// How a client reconnects after its connection drops: exponential
/// back-off with jitter between attempts, and a limit on attempts or time.
///
/// The defaults (first retry after 20 ms, doubling to at most 250 ms, ±20%
/// jitter, giving up after 30 s of failed attempts) bring a client back
/// within about a quarter of a second of its worker.
///
/// # Examples
///
/// ```no_run
/// use std::time::Duration;
/// use capactor::schema::actor_capnp::actor;
///
/// capactor::block_on(async {
///     let mut policy = capactor::Reconnect::default();
///     policy.max_elapsed = Some(Duration::from_secs(60));
///     policy.call_wait = Duration::from_secs(2);
///     let mut opts = capactor::ConnectOptions::default();
///     opts.reconnect = Some(policy);
///     let worker: capactor::Connection<actor::Client> =
///         capactor::connect_tcp("127.0.0.1:7001", &opts).await?;
///     // Works before and after the worker restarts.
///     worker.ping_request().send().promise.await?;
///     Ok::<_, capactor::Error>(())
/// }).unwrap();
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Reconnect {
    /// The wait before the first retry. Default 20 ms.
    pub initial_backoff: Duration,
    /// The longest wait between attempts (before jitter). Default 250 ms:
    /// the time a client may take to notice its worker is back.
    pub max_backoff: Duration,
    /// How much each wait grows over the last. Default 2.
    pub multiplier: f64,
    /// Each wait is shortened or lengthened at random by up to this
    /// fraction, so clients of one worker do not retry in lockstep.
    /// Default 0.2.
    pub jitter: f64,
    /// Give up after this many failed attempts in a row. Default `None`.
    pub max_attempts: Option<u32>,
    /// Give up once attempts have failed for this long. Default 30 s.
    pub max_elapsed: Option<Duration>,
    /// How long a call made while the connection is down waits for it to
    /// come back before it fails with [`Error::Restarting`](crate::Error::Restarting); zero fails such
    /// calls at once. Default 5 s.
    pub call_wait: Duration,
}

impl Default for Reconnect {
    fn default() -> Self {
        Reconnect {
            initial_backoff: Duration::from_millis(20),
            max_backoff: Duration::from_millis(250),
            multiplier: 2.0,
            jitter: 0.2,
            max_attempts: None,
            max_elapsed: Some(Duration::from_secs(30)),
            call_wait: Duration::from_secs(5),
        }
    }
}

impl Reconnect {
    /// The wait before retry number `n` (0 for the first retry).
    pub(crate) fn backoff(&self, n: u32) -> Duration {
        let base = self.initial_backoff.as_secs_f64() * self.multiplier.max(1.0).powi(n as i32);
        let capped = base.min(self.max_backoff.as_secs_f64());
        let jitter = self.jitter.clamp(0.0, 1.0);
        let factor = 1.0 + jitter * (2.0 * rand::random::<f64>() - 1.0);
        Duration::from_secs_f64((capped * factor).max(0.0))
    }

    /// Checks the numbers make sense before any connection is tried.
    pub(crate) fn check(&self) -> Result<()> {
        if !self.multiplier.is_finite() || !self.jitter.is_finite() {
            return Err(Error::invalid(
                "reconnect: multiplier and jitter must be finite",
            ));
        }
        if self.max_attempts == Some(0) {
            return Err(Error::invalid("reconnect: max_attempts must be at least 1"));
        }
        Ok(())
    }
}
