//! [`Quota`]: a shared memory budget.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// A memory budget: bytes are taken from it before they are allocated and
/// given back when freed, and a request that would not fit is refused
/// instead of growing the process. `Send + Sync`, shared through an `Arc`.
///
/// A tensor worker has one for all its instances (the worker's memory
/// limit); a connection may have one too (what that connection may hold).
///
/// # Examples
///
/// ```
/// let quota = capactor::Quota::new(1 << 30);
/// assert_eq!(quota.used(), 0);
/// assert_eq!(quota.limit(), 1 << 30);
/// ```
#[derive(Debug)]
pub struct Quota {
    limit: u64,
    used: AtomicU64,
    live: AtomicU64,
}

impl Quota {
    /// A quota of `limit` bytes.
    pub fn new(limit: u64) -> Arc<Quota> {
        Arc::new(Quota {
            limit,
            used: AtomicU64::new(0),
            live: AtomicU64::new(0),
        })
    }

    /// Bytes the quota allows.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// Bytes held by live objects (and by requests under way).
    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Acquire)
    }

    /// Objects alive (tensors, for a tensor worker).
    pub fn live_tensors(&self) -> u64 {
        self.live.load(Ordering::Acquire)
    }

    pub(crate) fn take(&self, bytes: u64) -> Result<(), u64> {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(bytes).filter(|&total| total <= self.limit)
            })
            .map(|_| ())
            .map_err(|used| used.saturating_add(bytes))
    }

    pub(crate) fn give_back(&self, bytes: u64) {
        self.used.fetch_sub(bytes, Ordering::AcqRel);
    }
}

impl Quota {
    /// Counts `bytes` and one more live object, without checking the limit
    /// (for what was already allocated).
    pub(crate) fn force(&self, bytes: u64) {
        self.used.fetch_add(bytes, Ordering::AcqRel);
        self.live.fetch_add(1, Ordering::AcqRel);
    }

    /// Gives back `bytes` and one live object.
    pub(crate) fn release(&self, bytes: u64) {
        self.give_back(bytes);
        self.live.fetch_sub(1, Ordering::AcqRel);
    }
}
