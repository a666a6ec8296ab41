//! What the gates of every connection of one worker share: the back-off of
//! each peer address, the worker-wide rate of failed attempts, and the
//! rate-limited log of rejections.
//!
//! `Send + Sync`: one [`GatePolicy`] per worker, shared by its vats in an
//! `Arc` (the connection-level rules, one `open` at a time and the cut on
//! the fifth failure, live in each connection's `Gate`).
//!
//! Attempts are counted when they arrive. An `open` from an address with no
//! failures on record, while the worker-wide budget lasts, is compared at
//! once under the policy's lock, so the next attempt, on whatever
//! connection or vat, already sees its outcome. Otherwise the attempt gets
//! a slot: the n-th attempt of an address is compared no earlier than
//! 100 ms × 2^(n-2) after the one before it, and no sooner than the
//! worker-wide budget allows; it is counted as a failure while it waits
//! and refunded if it turns out right (a right token also clears its
//! address's back-off). An attempt whose slot lies beyond what its
//! connection has left of the handshake deadline is refused without being
//! compared.

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Back-off after an address's first failure; it doubles with each one.
const BACKOFF_BASE: Duration = Duration::from_millis(100);
/// The longest back-off between two attempts of one address.
const BACKOFF_MAX: Duration = Duration::from_secs(60);
/// An address with no attempt for this long starts afresh.
const FORGET_AFTER: Duration = Duration::from_secs(600);
/// Addresses remembered at once (about 64 bytes each).
const MAX_PEERS: usize = 65_536;
/// Rejections logged per [`LOG_WINDOW`]; the rest are counted and summed
/// up in the next line.
const LOG_LINES: u32 = 10;
const LOG_WINDOW: Duration = Duration::from_secs(10);

/// Who is at the other end of a connection, as the gate's policy and log
/// see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Peer {
    /// A TCP peer.
    Addr(SocketAddr),
    /// A transport without addresses (the virtual one), by name.
    Label(&'static str),
}

impl Peer {
    /// The key its attempts are counted under: the address, or for IPv6 its
    /// /64 prefix (one host can take any address of its prefix).
    pub(crate) fn key(&self) -> PeerKey {
        match self {
            Peer::Addr(a) => match a.ip() {
                IpAddr::V4(v4) => PeerKey::V4(v4.octets()),
                IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                    Some(v4) => PeerKey::V4(v4.octets()),
                    None => {
                        let mut prefix = [0u8; 8];
                        prefix.copy_from_slice(&v6.octets()[..8]);
                        PeerKey::V6Prefix(prefix)
                    }
                },
            },
            Peer::Label(l) => PeerKey::Label(l),
        }
    }
}

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Peer::Addr(a) => write!(f, "{a}"),
            Peer::Label(l) => f.write_str(l),
        }
    }
}

/// What attempts and unauthenticated connections are counted under.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum PeerKey {
    V4([u8; 4]),
    V6Prefix([u8; 8]),
    Label(&'static str),
}

/// The worker-wide gate policy.
#[derive(Debug)]
pub(crate) struct GatePolicy {
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    peers: HashMap<PeerKey, Record>,
    /// Worker-wide failed attempts, as a generic cell rate: the theoretical
    /// time the bucket is empty again.
    rate: Option<Rate>,
    log: Log,
}

#[derive(Debug)]
struct Rate {
    /// Time one failure costs (1 / rate).
    interval: Duration,
    /// Failures that may come at once.
    burst: Duration,
    tat: Instant,
}

#[derive(Debug)]
struct Record {
    /// Attempts that failed or are waiting for their slot.
    strikes: u32,
    /// The earliest time the next attempt may be compared.
    next: Instant,
    last: Instant,
}

#[derive(Debug)]
struct Log {
    window: Instant,
    lines: u32,
    suppressed: u64,
}

/// The policy's answer to an attempt that arrives.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Compared at once: the token was right.
    Accepted,
    /// Compared at once: the token was wrong (and counted).
    Rejected,
    /// To be compared at this time, through [`GatePolicy::compare_slot`];
    /// counted as a failure until then.
    Slot(Instant),
    /// Not compared: its slot would come after this long, past what the
    /// connection may wait.
    Refused(Duration),
}

impl GatePolicy {
    /// A policy allowing at most `failures_per_second` failed attempts a
    /// second across the worker (in bursts of as many); 0 for no
    /// worker-wide limit.
    pub(crate) fn new(failures_per_second: u32) -> Self {
        let now = Instant::now();
        let rate = (failures_per_second > 0).then(|| {
            let interval = Duration::from_secs(1) / failures_per_second;
            Rate {
                interval,
                burst: interval * (failures_per_second - 1),
                tat: now,
            }
        });
        GatePolicy {
            state: Mutex::new(State {
                peers: HashMap::new(),
                rate,
                log: Log {
                    window: now,
                    lines: 0,
                    suppressed: 0,
                },
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // Nothing under the lock can panic half way; a poisoned lock still
        // holds consistent counts.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// An attempt from `peer` arrives; `check` compares its token. `max_wait`
    /// is how long the attempt may wait for its slot.
    pub(crate) fn arrive(
        &self,
        peer: PeerKey,
        max_wait: Duration,
        check: impl FnOnce() -> bool,
    ) -> Verdict {
        let now = Instant::now();
        let mut st = self.lock();
        let st = &mut *st;
        if st.peers.len() >= MAX_PEERS && !st.peers.contains_key(&peer) {
            st.peers
                .retain(|_, r| r.strikes > 0 && r.last + FORGET_AFTER > now);
        }
        let remembered = st.peers.len() < MAX_PEERS || st.peers.contains_key(&peer);
        let (strikes, peer_at) = match st.peers.get(&peer) {
            Some(r) if r.last + FORGET_AFTER > now && r.strikes > 0 => (r.strikes, r.next.max(now)),
            _ => (0, now),
        };
        let global_at = st
            .rate
            .as_ref()
            .map_or(now, |r| r.tat.checked_sub(r.burst).unwrap_or(now).max(now));
        let at = peer_at.max(global_at);
        if at <= now {
            if check() {
                if strikes > 0 {
                    st.peers.remove(&peer);
                }
                return Verdict::Accepted;
            }
            if remembered {
                st.record(peer, strikes + 1, now, now);
            }
            st.spend(now);
            return Verdict::Rejected;
        }
        let wait = at - now;
        if wait > max_wait {
            return Verdict::Refused(wait);
        }
        if remembered {
            st.record(peer, strikes + 1, at, now);
        }
        st.spend(at);
        Verdict::Slot(at)
    }

    /// Compares an attempt whose slot has come. A right token refunds what
    /// the attempt was counted as, and clears its address's back-off: the
    /// address holds the token, and its later clients should not queue
    /// behind its old mistakes. (Slots already handed out keep their times.)
    pub(crate) fn compare_slot(&self, peer: PeerKey, check: impl FnOnce() -> bool) -> bool {
        let ok = check();
        if ok {
            let mut st = self.lock();
            st.peers.remove(&peer);
            if let Some(rate) = st.rate.as_mut() {
                rate.tat = rate.tat.checked_sub(rate.interval).unwrap_or(rate.tat);
            }
        }
        ok
    }

    /// Logs a rejection, at most [`LOG_LINES`] lines per [`LOG_WINDOW`]
    /// across the worker.
    pub(crate) fn log_rejection(&self, peer: &Peer, what: fmt::Arguments<'_>) {
        let now = Instant::now();
        let mut st = self.lock();
        let log = &mut st.log;
        if now >= log.window + LOG_WINDOW {
            if log.suppressed > 0 {
                tracing::warn!(
                    "gate: {} more rejections in the last {:?} were not logged",
                    log.suppressed,
                    now - log.window
                );
            }
            *log = Log {
                window: now,
                lines: 0,
                suppressed: 0,
            };
        }
        if log.lines < LOG_LINES {
            log.lines += 1;
            tracing::warn!(%peer, "gate: {what}");
        } else {
            log.suppressed += 1;
        }
    }
}

impl State {
    /// Counts an attempt of `peer` compared (or to be compared) at `at`, its
    /// `strikes`-th: the next one waits its back-off after it.
    fn record(&mut self, peer: PeerKey, strikes: u32, at: Instant, now: Instant) {
        let r = self.peers.entry(peer).or_insert(Record {
            strikes: 0,
            next: now,
            last: now,
        });
        r.strikes = strikes;
        r.next = at + backoff(strikes);
        r.last = now;
    }

    /// Spends one failure of the worker-wide budget at `at`.
    fn spend(&mut self, at: Instant) {
        if let Some(r) = self.rate.as_mut() {
            r.tat = r.tat.max(at) + r.interval;
        }
    }
}

/// How long after its `n`-th failure an address waits for its next attempt.
pub(crate) fn backoff(n: u32) -> Duration {
    let doublings = n.saturating_sub(1).min(20);
    (BACKOFF_BASE * 2u32.pow(doublings)).min(BACKOFF_MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOST: PeerKey = PeerKey::V4([127, 0, 0, 1]);
    const WAIT: Duration = Duration::from_secs(5);

    #[test]
    fn a_clean_address_is_compared_at_once_and_a_right_token_costs_nothing() {
        let p = GatePolicy::new(0);
        for _ in 0..1000 {
            assert_eq!(p.arrive(HOST, WAIT, || true), Verdict::Accepted);
        }
    }

    #[test]
    fn after_a_failure_the_next_attempt_of_the_address_waits_its_back_off() {
        let p = GatePolicy::new(0);
        assert_eq!(p.arrive(HOST, WAIT, || false), Verdict::Rejected);
        let Verdict::Slot(a) = p.arrive(HOST, WAIT, || unreachable!()) else {
            panic!("no slot")
        };
        let Verdict::Slot(b) = p.arrive(HOST, WAIT, || unreachable!()) else {
            panic!("no slot")
        };
        // The second waiting attempt is counted as the third failure.
        assert!(b - a >= backoff(2), "{:?}", b - a);
        // Another address is not affected.
        assert_eq!(
            p.arrive(PeerKey::V4([10, 0, 0, 1]), WAIT, || true),
            Verdict::Accepted
        );
    }

    #[test]
    fn a_right_token_in_a_slot_clears_the_address_back_off() {
        let p = GatePolicy::new(0);
        assert_eq!(p.arrive(HOST, WAIT, || false), Verdict::Rejected);
        let Verdict::Slot(_) = p.arrive(HOST, WAIT, || unreachable!()) else {
            panic!("no slot")
        };
        assert!(p.compare_slot(HOST, || true));
        assert_eq!(p.arrive(HOST, WAIT, || true), Verdict::Accepted);
    }

    #[test]
    fn an_attempt_whose_slot_is_too_far_is_refused_uncompared() {
        let p = GatePolicy::new(0);
        assert_eq!(p.arrive(HOST, WAIT, || false), Verdict::Rejected);
        assert!(matches!(
            p.arrive(HOST, Duration::from_millis(10), || unreachable!()),
            Verdict::Refused(_)
        ));
    }

    #[test]
    fn the_worker_wide_rate_holds_back_fresh_addresses_too() {
        let p = GatePolicy::new(2);
        for i in 0..2 {
            assert_eq!(
                p.arrive(PeerKey::V4([10, 0, 0, i]), WAIT, || false),
                Verdict::Rejected
            );
        }
        assert!(matches!(
            p.arrive(PeerKey::V4([10, 0, 0, 9]), WAIT, || unreachable!()),
            Verdict::Slot(_)
        ));
    }

    #[test]
    fn back_off_doubles_up_to_its_cap() {
        assert_eq!(backoff(1), Duration::from_millis(100));
        assert_eq!(backoff(4), Duration::from_millis(800));
        assert_eq!(backoff(40), BACKOFF_MAX);
    }
}
