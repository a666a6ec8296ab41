//! Reserving tensor memory from the worker's quota and the connection's.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::ops::{Alloc, OpError};
use crate::call::Guard;
use crate::Quota;

/// What an op under way has taken from the quotas it counts against: the
/// worker's, and the memory budget of the connection whose call it serves,
/// if that connection has one. Given back on drop, except what
/// [`Reservation::keep`] hands to a tensor.
#[derive(Debug)]
pub(crate) struct Reservation {
    quotas: Vec<(Arc<Quota>, &'static str)>,
    taken: AtomicU64,
}

impl Reservation {
    pub(crate) fn new(worker: &Arc<Quota>) -> Self {
        let mut quotas = vec![(worker.clone(), "worker memory")];
        if let Some(conn) = Guard::current().memory() {
            quotas.push((conn.clone(), "connection memory"));
        }
        Reservation {
            quotas,
            taken: AtomicU64::new(0),
        }
    }

    /// Turns the reservation into the holding of a tensor of `bytes` (no
    /// more than what was reserved, for every op reserves its output).
    pub(crate) fn keep(&self, bytes: u64) -> Held {
        let taken = self.taken.swap(0, Ordering::AcqRel);
        for (q, _) in &self.quotas {
            q.give_back(taken);
            q.force(bytes);
        }
        Held {
            quotas: self.quotas.iter().map(|(q, _)| q.clone()).collect(),
            bytes,
        }
    }
}

impl Reservation {
    /// A reservation on `quota` alone, named `what` in errors (a spill
    /// directory's disk budget, say).
    pub(crate) fn only(quota: &Arc<Quota>, what: &'static str) -> Self {
        Reservation {
            quotas: vec![(quota.clone(), what)],
            taken: AtomicU64::new(0),
        }
    }

    /// Gives back everything reserved so far (a failed attempt's).
    pub(crate) fn reset(&self) {
        let taken = self.taken.swap(0, Ordering::AcqRel);
        for (q, _) in &self.quotas {
            q.give_back(taken);
        }
    }
}

impl Alloc for Reservation {
    fn reserve(&self, op: &'static str, bytes: usize) -> Result<(), OpError> {
        let bytes = bytes as u64;
        for (i, (q, what)) in self.quotas.iter().enumerate() {
            if let Err(requested) = q.take(bytes) {
                for (earlier, _) in &self.quotas[..i] {
                    earlier.give_back(bytes);
                }
                return Err(OpError::Budget {
                    op,
                    what,
                    requested,
                    limit: q.limit(),
                });
            }
        }
        self.taken.fetch_add(bytes, Ordering::AcqRel);
        Ok(())
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let taken = self.taken.load(Ordering::Acquire);
        for (q, _) in &self.quotas {
            q.give_back(taken);
        }
    }
}

/// The bytes one live tensor holds in its quotas.
#[derive(Debug)]
pub(crate) struct Held {
    quotas: Vec<Arc<Quota>>,
    bytes: u64,
}

impl Drop for Held {
    fn drop(&mut self) {
        for q in &self.quotas {
            q.release(self.bytes);
        }
    }
}
