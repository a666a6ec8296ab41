//! Call durations by interface and method: one histogram of atomics per
//! method of every compiled-in interface, found by binary search, so a call
//! costs two clock reads and two relaxed atomic adds, and no lock or
//! allocation.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError, Weak};
use std::time::Instant;

use crate::call::ActorCalls;
use crate::catalog::Catalog;

/// Upper bounds of the duration buckets, in seconds: OpenTelemetry's
/// recommended boundaries for `rpc.server.call.duration` (5 ms to 10 s),
/// with finer ones below them, where a call over loopback or a LAN lands
/// (tens of microseconds).
pub(crate) const BOUNDS: [f64; 20] = [
    0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025,
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 60.0,
];

const BOUNDS_NANOS: [u64; 20] = {
    let mut out = [0u64; 20];
    let mut i = 0;
    while i < BOUNDS.len() {
        out[i] = (BOUNDS[i] * 1e9) as u64;
        i += 1;
    }
    out
};

/// Distinct methods outside the catalog that get series of their own; the
/// rest share one (`rpc_service="other"`), so no caller can grow the
/// exposition without bound.
const MAX_UNCATALOGUED: usize = 256;

/// One histogram: a count per bucket (the last for anything over the top
/// bound) and the sum of durations in nanoseconds.
#[derive(Debug, Default)]
pub(crate) struct Histogram {
    buckets: [AtomicU64; BOUNDS.len() + 1],
    sum_nanos: AtomicU64,
}

impl Histogram {
    fn record(&self, nanos: u64) {
        let i = BOUNDS_NANOS.partition_point(|&b| b < nanos);
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    /// Sum in seconds, count, and each bucket's own count (the encoder
    /// makes them cumulative).
    pub(crate) fn snapshot(&self) -> Snapshot {
        let mut total = 0;
        let mut buckets = Vec::with_capacity(BOUNDS.len() + 1);
        for (i, b) in self.buckets.iter().enumerate() {
            let n = b.load(Ordering::Relaxed);
            total += n;
            buckets.push((BOUNDS.get(i).copied().unwrap_or(f64::INFINITY), n));
        }
        let sum = self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        Snapshot {
            sum,
            count: total,
            buckets,
        }
    }
}

/// A histogram as read at one scrape.
#[derive(Debug)]
pub(crate) struct Snapshot {
    /// Seconds, over every call.
    pub(crate) sum: f64,
    pub(crate) count: u64,
    /// Each bucket's upper bound and its own (not cumulative) count.
    pub(crate) buckets: Vec<(f64, u64)>,
}

/// One series: `rpc_service`, `rpc_method` and its histogram.
pub(crate) type Series = (String, String, Snapshot);

/// Where a call's duration goes, chosen when it is dispatched.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Slot(u32);

impl Slot {
    const UNCATALOGUED: Slot = Slot(u32::MAX);
    /// Calls answered `unimplemented`: whatever method they named, they
    /// share one series.
    pub(crate) const UNIMPLEMENTED: Slot = Slot(u32::MAX - 1);
}

/// The call metrics of a worker (see the module docs).
#[derive(Debug)]
pub(crate) struct CallStats {
    /// `(interface id, method ordinal)`, sorted; the index is the slot.
    keys: Box<[(u64, u16)]>,
    /// `(rpc_service, rpc_method)` of each slot.
    names: Box<[(String, String)]>,
    known: Box<[Histogram]>,
    uncatalogued: Mutex<HashMap<(u64, u16), Histogram>>,
    other: Histogram,
    unimplemented: Histogram,
    /// The actors whose calls in flight the gauge adds up.
    pub(crate) actors: Mutex<Vec<Weak<ActorCalls>>>,
}

impl CallStats {
    pub(crate) fn new(catalog: &Catalog) -> Self {
        let mut entries: Vec<((u64, u16), (String, String))> = catalog
            .interfaces()
            .flat_map(|i| {
                i.methods
                    .iter()
                    .map(move |m| ((i.id, m.ordinal), (i.name.clone(), m.name.clone())))
            })
            .collect();
        entries.sort_by_key(|e| e.0);
        let (keys, names): (Vec<_>, Vec<_>) = entries.into_iter().unzip();
        let known = keys.iter().map(|_| Histogram::default()).collect();
        CallStats {
            keys: keys.into(),
            names: names.into(),
            known,
            uncatalogued: Mutex::default(),
            other: Histogram::default(),
            unimplemented: Histogram::default(),
            actors: Mutex::default(),
        }
    }

    /// The slot of method `method` of interface `interface`.
    pub(crate) fn slot(&self, interface: u64, method: u16) -> Slot {
        match self.keys.binary_search(&(interface, method)) {
            Ok(i) => Slot(i as u32),
            Err(_) => Slot::UNCATALOGUED,
        }
    }

    /// Counts one call of `key` that took `nanos`.
    pub(crate) fn record(&self, slot: Slot, key: (u64, u16), nanos: u64) {
        match slot {
            Slot::UNIMPLEMENTED => self.unimplemented.record(nanos),
            Slot::UNCATALOGUED => {
                let mut map = self
                    .uncatalogued
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                if let Some(h) = map.get(&key) {
                    h.record(nanos);
                } else if map.len() < MAX_UNCATALOGUED {
                    map.entry(key).or_default().record(nanos);
                } else {
                    self.other.record(nanos);
                }
            }
            Slot(i) => self.known[i as usize].record(nanos),
        }
    }

    /// Calls in flight across the actors served with these metrics.
    pub(crate) fn in_flight(&self) -> usize {
        let mut actors = self.actors.lock().unwrap_or_else(PoisonError::into_inner);
        actors.retain(|a| a.strong_count() > 0);
        actors
            .iter()
            .filter_map(Weak::upgrade)
            .map(|a| a.in_flight())
            .sum()
    }

    /// Every series with at least one call: `(rpc_service, rpc_method)` and
    /// its histogram's snapshot.
    pub(crate) fn series(&self) -> Vec<Series> {
        let mut out = Vec::new();
        for (h, (service, method)) in self.known.iter().zip(self.names.iter()) {
            let snap = h.snapshot();
            if snap.count > 0 {
                out.push((service.clone(), method.clone(), snap));
            }
        }
        let map = self
            .uncatalogued
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let mut extra: Vec<_> = map.iter().collect();
        extra.sort_by_key(|(k, _)| **k);
        for ((interface, method), h) in extra {
            out.push((
                format!("{interface:#018x}"),
                format!("@{method}"),
                h.snapshot(),
            ));
        }
        for (name, h) in [
            ("other", &self.other),
            ("unimplemented", &self.unimplemented),
        ] {
            let snap = h.snapshot();
            if snap.count > 0 {
                out.push((name.to_owned(), name.to_owned(), snap));
            }
        }
        out
    }
}

/// A call being timed: started at dispatch, recorded when its future is
/// dropped (finished or cancelled).
#[derive(Debug)]
pub(crate) struct Timing {
    pub(crate) slot: Slot,
    pub(crate) start: Instant,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_land_in_the_first_bucket_that_holds_them() {
        let h = Histogram::default();
        h.record(5_000); // 5 µs
        h.record(10_000); // exactly 10 µs: the 10 µs bucket (le is inclusive)
        h.record(2_000_000); // 2 ms
        h.record(120_000_000_000); // 2 min: only +Inf
        let Snapshot {
            sum,
            count,
            buckets,
        } = h.snapshot();
        assert_eq!(count, 4);
        assert!((sum - 120.002_015).abs() < 1e-9, "{sum}");
        assert_eq!(buckets[0], (0.000_01, 2));
        assert_eq!(buckets[7], (0.002_5, 1));
        assert_eq!(buckets[BOUNDS.len() - 1], (60.0, 0));
        assert_eq!(buckets[BOUNDS.len()], (f64::INFINITY, 1));
        assert_eq!(buckets.iter().map(|b| b.1).sum::<u64>(), 4);
    }

    #[test]
    fn uncatalogued_methods_are_bounded() {
        let stats = CallStats::new(&Catalog::default());
        for m in 0..(MAX_UNCATALOGUED as u16 + 10) {
            let slot = stats.slot(1, m);
            stats.record(slot, (1, m), 1);
        }
        let series = stats.series();
        assert_eq!(series.len(), MAX_UNCATALOGUED + 1);
        let other = series.iter().find(|s| s.0 == "other").unwrap();
        assert_eq!(other.2.count, 10);
    }
}
