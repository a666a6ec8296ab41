//! The pool unauthenticated connections come from, so that they cannot
//! crowd out the clients that have a key.
//!
//! A TCP worker keeps at most `max_unauthenticated` connections that have
//! not yet opened the gate, and at most `max_unauthenticated_per_address`
//! from one address (IPv6: one /64). A new connection over either number
//! is not refused: the oldest unauthenticated connections of its address
//! (or of the worker) are closed to make room, once they have had
//! [`GRACE`] to open the gate. So every connection gets that long, however
//! many silent sockets arrive after it; a client that opens the gate leaves
//! the pool at once; and a flood of silent sockets recycles its own slots
//! instead of taking the authenticated ones. Connections younger than
//! [`GRACE`] may take the pool over its numbers for that long, within
//! `max_connections`; at `max_connections` a newcomer closes the oldest
//! unauthenticated connection, however young.
//!
//! `Send + Sync`: one pool per worker, shared by the accept loop and the
//! vats in an `Arc`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::gate_policy::PeerKey;

/// How long an unauthenticated connection is safe from being closed to make
/// room: what a client has to open the gate while silent sockets flood in.
pub(crate) const GRACE: Duration = Duration::from_secs(1);

/// The worker's unauthenticated connections.
#[derive(Debug)]
pub(crate) struct PreauthPool {
    max_total: usize,
    max_per_peer: usize,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    next: u64,
    /// Oldest first.
    by_age: BTreeMap<u64, Entry>,
    per_peer: HashMap<PeerKey, BTreeSet<u64>>,
    evicted: u64,
}

#[derive(Debug)]
struct Entry {
    peer: PeerKey,
    cut: CancellationToken,
    since: Instant,
}

/// One connection's place in the pool; dropping it (the gate opened, or
/// the connection ended) gives the place up.
#[derive(Debug)]
pub(crate) struct PreauthTicket {
    pool: Arc<PreauthPool>,
    id: u64,
}

impl PreauthPool {
    /// A pool of `max_total` connections, `max_per_peer` per address (each
    /// at least 1).
    pub(crate) fn new(max_total: usize, max_per_peer: usize) -> Arc<Self> {
        Arc::new(PreauthPool {
            max_total: max_total.max(1),
            max_per_peer: max_per_peer.max(1),
            state: Mutex::new(State::default()),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Admits a new connection from `peer`, which `cut` closes, making room
    /// by closing the oldest unauthenticated ones past their grace.
    pub(crate) fn admit(self: &Arc<Self>, peer: PeerKey, cut: CancellationToken) -> PreauthTicket {
        let now = Instant::now();
        let mut st = self.lock();
        let id = st.next;
        st.next += 1;
        st.by_age.insert(
            id,
            Entry {
                peer,
                cut,
                since: now,
            },
        );
        st.per_peer.entry(peer).or_default().insert(id);
        while st.per_peer.get(&peer).map_or(0, BTreeSet::len) > self.max_per_peer {
            let Some(&oldest) = st.per_peer.get(&peer).and_then(|s| s.first()) else {
                break;
            };
            if !st.evict_if_old(oldest, now) {
                break;
            }
        }
        while st.by_age.len() > self.max_total {
            let Some(&oldest) = st.by_age.keys().next() else {
                break;
            };
            if !st.evict_if_old(oldest, now) {
                break;
            }
        }
        PreauthTicket {
            pool: self.clone(),
            id,
        }
    }

    /// Closes the oldest unauthenticated connection, if any, grace or not:
    /// room for a newcomer when the worker is at `max_connections`. (A
    /// newcomer closes at most one, so a flood that keeps the worker at its
    /// limit closes the oldest first, and one that has just arrived has all
    /// the older ones in front of it.)
    pub(crate) fn evict_oldest(&self) -> bool {
        let mut st = self.lock();
        match st.by_age.keys().next() {
            Some(&oldest) => {
                st.evict(oldest);
                true
            }
            None => false,
        }
    }

    /// Unauthenticated connections now.
    pub(crate) fn len(&self) -> usize {
        self.lock().by_age.len()
    }

    /// Connections closed to make room so far.
    pub(crate) fn evicted(&self) -> u64 {
        self.lock().evicted
    }
}

impl State {
    fn remove(&mut self, id: u64) -> Option<CancellationToken> {
        let e = self.by_age.remove(&id)?;
        if let Some(set) = self.per_peer.get_mut(&e.peer) {
            set.remove(&id);
            if set.is_empty() {
                self.per_peer.remove(&e.peer);
            }
        }
        Some(e.cut)
    }

    /// Closes connection `id` if it has had its grace; false if it is
    /// younger.
    fn evict_if_old(&mut self, id: u64, now: Instant) -> bool {
        match self.by_age.get(&id) {
            Some(e) if now.duration_since(e.since) >= GRACE => {
                self.evict(id);
                true
            }
            _ => false,
        }
    }

    fn evict(&mut self, id: u64) {
        if let Some(cut) = self.remove(id) {
            self.evicted += 1;
            cut.cancel();
        }
    }
}

impl Drop for PreauthTicket {
    fn drop(&mut self) {
        self.pool.lock().remove(self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: PeerKey = PeerKey::V4([10, 0, 0, 1]);
    const B: PeerKey = PeerKey::V4([10, 0, 0, 2]);

    /// Ages every entry past its grace.
    fn age(pool: &PreauthPool) {
        for e in pool.lock().by_age.values_mut() {
            e.since -= GRACE;
        }
    }

    #[test]
    fn an_address_over_its_share_loses_its_own_oldest_connection_after_its_grace() {
        let pool = PreauthPool::new(10, 2);
        let cuts: Vec<_> = (0..4).map(|_| CancellationToken::new()).collect();
        let other = CancellationToken::new();
        let _b = pool.admit(B, other.clone());
        let mut tickets: Vec<_> = cuts[..3].iter().map(|c| pool.admit(A, c.clone())).collect();
        // Young connections are safe, even over the share.
        assert!(cuts.iter().all(|c| !c.is_cancelled()));
        age(&pool);
        tickets.push(pool.admit(A, cuts[3].clone()));
        assert!(cuts[0].is_cancelled() && cuts[1].is_cancelled());
        assert!(!cuts[2].is_cancelled() && !cuts[3].is_cancelled());
        assert!(!other.is_cancelled());
        assert_eq!(pool.len(), 3);
        assert_eq!(pool.evicted(), 2);
    }

    #[test]
    fn a_full_pool_closes_its_oldest_and_an_opened_gate_leaves_it() {
        let pool = PreauthPool::new(2, 2);
        let (a, b, c) = (
            CancellationToken::new(),
            CancellationToken::new(),
            CancellationToken::new(),
        );
        let ta = pool.admit(A, a.clone());
        let _tb = pool.admit(B, b.clone());
        drop(ta);
        let _tc = pool.admit(A, c.clone());
        assert!(!a.is_cancelled() && !b.is_cancelled());
        age(&pool);
        let _td = pool.admit(A, CancellationToken::new());
        assert!(b.is_cancelled());
        assert_eq!(pool.evicted(), 1);
        // At the connection limit, the oldest goes, grace or not.
        assert!(pool.evict_oldest());
        assert!(c.is_cancelled());
    }
}
