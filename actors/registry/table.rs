//! The registry's membership: who is registered, their health, the
//! watchers to tell. No capabilities and no I/O: `Send`, behind one mutex
//! in [`RegistryState`](super::RegistryState), so every vat serving the
//! registry sees the same table.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::RegistryOptions;
use crate::fleet::{Change, Event, Health, Status, WorkerInfo};
use crate::Error;

/// One registered worker.
#[derive(Debug)]
struct Entry {
    id: u64,
    kind: String,
    address: String,
    labels: Vec<(String, String)>,
    interfaces: Vec<(u64, String)>,
    registered: Instant,
    last_report: Instant,
    health: Health,
    healthy: bool,
    /// Times `route`/`lookup` picked it since its last report: counted as
    /// load, so that picks between reports spread out.
    picks: u32,
}

/// A watcher's queue.
#[derive(Debug)]
struct Watcher {
    id: u64,
    events: mpsc::Sender<Event>,
    /// Cancelled when the watcher is dropped for its backlog, so its task
    /// stops at once, even in the middle of a call that never returns.
    dropped: CancellationToken,
}

/// What a registration asks for.
#[derive(Debug)]
pub(crate) struct Registration {
    pub(crate) name: String,
    pub(crate) kind: String,
    pub(crate) address: String,
    pub(crate) labels: Vec<(String, String)>,
    pub(crate) interfaces: Vec<(u64, String)>,
}

/// The membership table.
#[derive(Debug)]
pub(crate) struct Table {
    options: RegistryOptions,
    entries: BTreeMap<String, Entry>,
    watchers: Vec<Watcher>,
    next_id: u64,
    sequence: u64,
}

impl Table {
    pub(crate) fn new(options: RegistryOptions) -> Self {
        Table {
            options,
            entries: BTreeMap::new(),
            watchers: Vec::new(),
            next_id: 1,
            sequence: 0,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    pub(crate) fn options(&self) -> &RegistryOptions {
        &self.options
    }

    fn info(name: &str, e: &Entry, now: Instant) -> WorkerInfo {
        WorkerInfo {
            name: name.to_string(),
            kind: e.kind.clone(),
            address: e.address.clone(),
            labels: e.labels.clone(),
            interfaces: e.interfaces.clone(),
            healthy: e.healthy,
            health: e.health,
            since_report: now.saturating_duration_since(e.last_report),
            registered_for: now.saturating_duration_since(e.registered),
        }
    }

    /// Sends `change` to every watcher; drops those whose backlog is full.
    fn emit(&mut self, change: Change) {
        self.sequence += 1;
        let event = Event {
            sequence: self.sequence,
            change,
        };
        self.watchers
            .retain(|w| match w.events.try_send(event.clone()) {
                Ok(()) => true,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    w.dropped.cancel();
                    tracing::warn!(
                        "dropping watcher {}: it fell more than its backlog behind",
                        w.id
                    );
                    false
                }
                Err(mpsc::error::TrySendError::Closed(_)) => false,
            });
    }

    /// Registers a worker; returns its entry id.
    pub(crate) fn register(&mut self, r: Registration, now: Instant) -> Result<u64, Error> {
        if let Some(old) = self.entries.get(&r.name) {
            if old.healthy {
                return Err(Error::invalid(format!(
                    "a worker named {:?} is already registered and its lease is alive",
                    r.name
                )));
            }
            self.entries.remove(&r.name);
            self.emit(Change::Left {
                name: r.name.clone(),
                reason: "replaced".into(),
            });
        } else if self.entries.len() >= self.options.max_workers {
            return Err(Error::limit(
                "registered workers",
                self.entries.len() + 1,
                self.options.max_workers,
            ));
        }
        let id = self.next_id;
        self.next_id += 1;
        let entry = Entry {
            id,
            kind: r.kind,
            address: r.address,
            labels: r.labels,
            interfaces: r.interfaces,
            registered: now,
            last_report: now,
            health: Health::default(),
            healthy: true,
            picks: 0,
        };
        let info = Self::info(&r.name, &entry, now);
        self.entries.insert(r.name, entry);
        self.emit(Change::Joined(info));
        Ok(id)
    }

    fn find(&mut self, name: &str, id: u64) -> Option<&mut Entry> {
        self.entries.get_mut(name).filter(|e| e.id == id)
    }

    /// A report on the lease `id` of `name`.
    pub(crate) fn report(
        &mut self,
        name: &str,
        id: u64,
        health: Health,
        now: Instant,
    ) -> Result<(), Error> {
        let Some(e) = self.find(name, id) else {
            return Err(Error::invalid(format!(
                "the lease of {name:?} has expired; register again"
            )));
        };
        e.last_report = now;
        e.health = health;
        e.picks = 0;
        if !e.healthy {
            e.healthy = true;
            let info = Self::info(name, e, now);
            self.emit(Change::HealthChanged(info));
        }
        Ok(())
    }

    /// The lease `id` of `name` was dropped.
    pub(crate) fn release(&mut self, name: &str, id: u64) {
        if self.find(name, id).is_some() {
            self.entries.remove(name);
            self.emit(Change::Left {
                name: name.to_string(),
                reason: "lease dropped".into(),
            });
        }
    }

    /// Marks workers silent past the TTL unhealthy and removes those silent
    /// past TTL + grace.
    pub(crate) fn sweep(&mut self, now: Instant) {
        let (ttl, grace) = (self.options.ttl, self.options.grace);
        let mut changed = Vec::new();
        let mut expired = Vec::new();
        for (name, e) in &mut self.entries {
            let silent = now.saturating_duration_since(e.last_report);
            if silent > ttl + grace {
                expired.push(name.clone());
            } else if silent > ttl && e.healthy {
                e.healthy = false;
                changed.push(Self::info(name, e, now));
            }
        }
        for info in changed {
            self.emit(Change::HealthChanged(info));
        }
        for name in expired {
            self.entries.remove(&name);
            self.emit(Change::Left {
                name,
                reason: "expired".into(),
            });
        }
    }

    /// Every worker, with totals.
    pub(crate) fn status(&self, now: Instant) -> Status {
        Status::of(
            self.entries
                .iter()
                .map(|(name, e)| Self::info(name, e, now))
                .collect(),
        )
    }

    /// Starts a watch: its first event, the membership, is queued before
    /// anything that happens after.
    pub(crate) fn watch(
        &mut self,
        now: Instant,
    ) -> Result<(u64, mpsc::Receiver<Event>, CancellationToken), Error> {
        self.watchers.retain(|w| !w.events.is_closed());
        if self.watchers.len() >= self.options.max_watchers {
            return Err(Error::limit(
                "watchers",
                self.watchers.len() + 1,
                self.options.max_watchers,
            ));
        }
        let (tx, rx) = mpsc::channel(self.options.watch_backlog.max(1));
        let members = self.status(now).workers;
        self.sequence += 1;
        let first = Event {
            sequence: self.sequence,
            change: Change::Membership(members),
        };
        tx.try_send(first)
            .map_err(|_| Error::internal("a new watch queue refused its first event"))?;
        let id = self.next_id;
        self.next_id += 1;
        let dropped = CancellationToken::new();
        self.watchers.push(Watcher {
            id,
            events: tx,
            dropped: dropped.clone(),
        });
        Ok((id, rx, dropped))
    }

    /// Ends the watch `id`.
    pub(crate) fn unwatch(&mut self, id: u64) {
        self.watchers.retain(|w| w.id != id);
    }

    /// Picks the healthy worker of `kind` (any if empty) carrying every
    /// label of `labels` with the least load (its reported load plus its
    /// picks since), ties broken by name; counts the pick.
    pub(crate) fn pick(
        &mut self,
        kind: &str,
        labels: &[(String, String)],
        now: Instant,
    ) -> Result<(WorkerInfo, u64), Error> {
        let best = self
            .entries
            .iter()
            .filter(|(_, e)| e.healthy && (kind.is_empty() || e.kind == kind))
            .filter(|(_, e)| labels.iter().all(|l| e.labels.contains(l)))
            .map(|(name, e)| (e.health.load + f64::from(e.picks), name))
            .min_by(|a, b| a.0.total_cmp(&b.0).then_with(|| a.1.cmp(b.1)))
            .map(|(_, name)| name.clone());
        let Some(name) = best else {
            let what = if kind.is_empty() {
                "any kind".to_string()
            } else {
                format!("kind {kind:?}")
            };
            return Err(Error::invalid(format!(
                "no healthy worker of {what}{}",
                if labels.is_empty() {
                    String::new()
                } else {
                    format!(" with labels {labels:?}")
                }
            )));
        };
        let e = self.entries.get_mut(&name).expect("picked from the table");
        e.picks = e.picks.saturating_add(1);
        Ok((Self::info(&name, e, now), e.id))
    }

    /// How often the sweeper should run: often enough to notice a silent
    /// worker within a tenth of the TTL.
    pub(crate) fn sweep_interval(&self) -> Duration {
        (self.options.ttl / 10).clamp(Duration::from_millis(5), Duration::from_millis(500))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reg(name: &str) -> Registration {
        Registration {
            name: name.into(),
            kind: "k".into(),
            address: "127.0.0.1:1".into(),
            labels: vec![],
            interfaces: vec![],
        }
    }

    #[test]
    fn a_silent_worker_turns_unhealthy_then_leaves_and_its_name_is_free_once_unhealthy() {
        let opts = RegistryOptions {
            ttl: Duration::from_secs(1),
            grace: Duration::from_secs(1),
            ..RegistryOptions::default()
        };
        let mut t = Table::new(opts);
        let t0 = Instant::now();
        let id = t.register(reg("a"), t0).unwrap();
        assert!(t.register(reg("a"), t0).is_err());
        t.sweep(t0 + Duration::from_millis(1500));
        assert!(!t.status(t0).workers[0].healthy);
        let id2 = t
            .register(reg("a"), t0 + Duration::from_millis(1500))
            .unwrap();
        assert!(t.report("a", id, Health::default(), t0).is_err());
        t.report("a", id2, Health::default(), t0 + Duration::from_secs(2))
            .unwrap();
        t.sweep(t0 + Duration::from_secs(5));
        assert!(t.status(t0).workers.is_empty());
    }
}
