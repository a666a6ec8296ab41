//! [`Outgoing`]: a connection's budget of reply bytes queued but not yet
//! written, shared by the guard that reserves them and the link that
//! counts what it writes.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Bytes of replies a connection has produced but not yet written to its
/// peer. capnp-rpc's outgoing queue is unbounded; actors that build large
/// replies (a tensor's contents) reserve them here first
/// ([`Guard::reserve_reply`](crate::call::Guard::reserve_reply)), and the connection's link counts what it
/// writes, so a peer that does not read cannot make the worker queue more
/// than the limit.
#[derive(Debug)]
pub struct Outgoing {
    limit: u64,
    produced: AtomicU64,
    written: AtomicU64,
}

impl Outgoing {
    /// A budget of `limit` queued bytes.
    pub fn new(limit: u64) -> Arc<Self> {
        Arc::new(Outgoing {
            limit,
            produced: AtomicU64::new(0),
            written: AtomicU64::new(0),
        })
    }

    /// Counts bytes written to the peer.
    pub(crate) fn wrote(&self, n: usize) {
        self.written.fetch_add(n as u64, Ordering::AcqRel);
    }

    /// Reserves `bytes` more of reply, unless that would queue more than
    /// the limit: then `Err((bytes it would queue, limit))`.
    pub(crate) fn reserve(&self, bytes: u64) -> Result<(), (u64, u64)> {
        let queued = self.queued().saturating_add(bytes);
        if queued > self.limit {
            return Err((queued, self.limit));
        }
        self.produced.fetch_add(bytes, Ordering::AcqRel);
        Ok(())
    }

    /// Bytes produced and not yet written.
    pub fn queued(&self) -> u64 {
        let produced = self.produced.load(Ordering::Acquire);
        produced.saturating_sub(self.written.load(Ordering::Acquire))
    }
}
