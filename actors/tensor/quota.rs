//! The worker's memory quota.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::ops::{Alloc, OpError};

/// The memory budget of one tensor worker, shared by its instances on every
/// vat. Every tensor's bytes are taken from it before they are allocated
/// and given back when the tensor is freed; an op whose output would not
/// fit fails with `tensor memory limit exceeded` instead of growing the
/// process.
///
/// # Examples
///
/// ```
/// let quota = capactor::actors::tensor::Quota::new(1 << 30);
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

    /// Bytes held by live tensors (and by ops under way).
    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Acquire)
    }

    /// Tensors alive.
    pub fn live_tensors(&self) -> u64 {
        self.live.load(Ordering::Acquire)
    }

    fn take(&self, op: &'static str, bytes: u64) -> Result<(), OpError> {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(bytes).filter(|&total| total <= self.limit)
            })
            .map(|_| ())
            .map_err(|used| OpError::TooLarge {
                op,
                bytes: usize::try_from(used.saturating_add(bytes)).unwrap_or(usize::MAX),
                limit: usize::try_from(self.limit).unwrap_or(usize::MAX),
            })
    }

    fn give_back(&self, bytes: u64) {
        self.used.fetch_sub(bytes, Ordering::AcqRel);
    }
}

/// What an op under way has taken from the quota. Given back on drop,
/// except what [`Reservation::keep`] hands to a tensor.
#[derive(Debug)]
pub(crate) struct Reservation {
    quota: Arc<Quota>,
    taken: AtomicU64,
}

impl Reservation {
    pub(crate) fn new(quota: &Arc<Quota>) -> Self {
        Reservation {
            quota: quota.clone(),
            taken: AtomicU64::new(0),
        }
    }

    /// Turns the reservation into the holding of a tensor of `bytes`.
    pub(crate) fn keep(self, bytes: u64) -> Held {
        let taken = self.taken.swap(0, Ordering::AcqRel);
        if taken >= bytes {
            self.quota.give_back(taken - bytes);
        } else {
            // An op that allocated without reserving (none should): count
            // it anyway so the books stay balanced.
            self.quota.used.fetch_add(bytes - taken, Ordering::AcqRel);
        }
        self.quota.live.fetch_add(1, Ordering::AcqRel);
        Held {
            quota: self.quota.clone(),
            bytes,
        }
    }
}

impl Alloc for Reservation {
    fn reserve(&self, op: &'static str, bytes: usize) -> Result<(), OpError> {
        let bytes = bytes as u64;
        self.quota.take(op, bytes)?;
        self.taken.fetch_add(bytes, Ordering::AcqRel);
        Ok(())
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.quota.give_back(self.taken.load(Ordering::Acquire));
    }
}

/// The bytes one live tensor holds in the quota.
#[derive(Debug)]
pub(crate) struct Held {
    quota: Arc<Quota>,
    bytes: u64,
}

impl Drop for Held {
    fn drop(&mut self) {
        self.quota.give_back(self.bytes);
        self.quota.live.fetch_sub(1, Ordering::AcqRel);
    }
}
