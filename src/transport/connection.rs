//! [`Connection`]: a client's connection and its actor's capability, and
//! the [`LinkHandle`] that cuts, partitions or watches it.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::link;

/// A client's connection to a remote (virtual or TCP) actor, and the
/// actor's capability.
///
/// Derefs to the typed client `C`. Dropping the `Connection` closes it:
/// every capability obtained through it (clones of the client, tensors...)
/// then fails with `disconnected`, and the actor frees whatever the
/// connection held.
///
/// Must be created and used on a thread running a tokio `LocalSet`, like
/// every capnp-rpc client (see [`crate::block_on`]).
#[derive(Debug)]
pub struct Connection<C> {
    pub(super) client: C,
    pub(super) link: LinkHandle,
}

impl<C> Connection<C> {
    /// The actor's capability.
    pub fn client(&self) -> &C {
        &self.client
    }

    /// A handle that can cut this connection or wait for it to close.
    pub fn link(&self) -> &LinkHandle {
        &self.link
    }
}

impl<C> std::ops::Deref for Connection<C> {
    type Target = C;
    fn deref(&self) -> &C {
        &self.client
    }
}

impl<C> Drop for Connection<C> {
    fn drop(&mut self) {
        self.link.cut();
    }
}

/// Cuts a connection, partitions it, or waits for it to end. Cheap to
/// clone, `Send + Sync`.
///
/// [`cut`](LinkHandle::cut) ends the connection for good: the RPC session
/// is gone, so nothing can heal it (a reconnecting client makes a new
/// one). [`partition`](LinkHandle::partition) is the network failing under
/// a live connection: nothing is delivered either way until
/// [`heal`](LinkHandle::heal), and then everything held is, as TCP
/// retransmits across a short outage. A partition that outlasts the
/// heartbeat timeout ends the connection as a dead peer would.
///
/// # Examples
///
/// ```
/// use capactor::actors::Probe;
/// use capactor::schema::probe_capnp::probe;
///
/// let rt = capactor::Runtime::builder().vats(1).build().unwrap();
/// capactor::block_on(async {
///     let p: capactor::Connection<probe::Client> = rt.spawn_virtual(|| Probe::new("p"));
///     p.link().partition();
///     let call = p.echo_request().send().promise; // held, not lost
///     p.link().heal();
///     call.await.unwrap();
/// }).unwrap();
/// ```
#[derive(Clone, Debug)]
pub struct LinkHandle {
    pub(crate) cut: CancellationToken,
    pub(super) closed: CancellationToken,
    pub(super) valve: Arc<link::Valve>,
}

impl LinkHandle {
    pub(super) fn new(cut: CancellationToken) -> Self {
        LinkHandle {
            cut,
            closed: CancellationToken::new(),
            valve: Arc::default(),
        }
    }

    /// Cuts the link: both ends see the peer as gone, and every pending call
    /// on either side fails with `disconnected`.
    pub fn cut(&self) {
        self.cut.cancel();
    }

    /// Partitions the link: from now on nothing is delivered in either
    /// direction, and nothing is lost, until [`LinkHandle::heal`]. Calls
    /// made meanwhile wait (or time out, or are failed by the heartbeat,
    /// as against an unreachable peer).
    pub fn partition(&self) {
        self.valve.shut(None);
    }

    /// Heals a partition or ends a stall early: what was held is
    /// delivered, in order.
    pub fn heal(&self) {
        self.valve.open();
    }

    /// Stalls the link for `duration`: nothing is delivered, then
    /// everything is.
    pub fn stall(&self, duration: Duration) {
        self.valve
            .shut(Some(tokio::time::Instant::now() + duration));
    }

    /// True while the link is partitioned or stalled.
    pub fn is_partitioned(&self) -> bool {
        self.valve.is_shut()
    }

    /// True once the connection has ended, for whatever reason.
    pub fn is_closed(&self) -> bool {
        self.closed.is_cancelled()
    }

    /// Waits until the connection has ended.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe.
    pub async fn closed(&self) {
        self.closed.cancelled().await
    }
}
