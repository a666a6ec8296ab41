//! The fleet's records as Rust values, and their `schema/registry.capnp`
//! encoding (written by the registry, read by its clients).

use std::time::Duration;

use crate::schema::actor_capnp::interface_ref;
use crate::schema::registry_capnp::{event, health, label, status, totals, worker_status};
use crate::Result;

/// What a worker reports about itself with every lease renewal.
///
/// # Examples
///
/// ```
/// let h = capactor::fleet::Health { calls_in_flight: 2, load: 2.5, ..Default::default() };
/// assert_eq!(h.calls_in_flight, 2);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Health {
    /// Calls under way.
    pub calls_in_flight: u32,
    /// Calls completed per second, over the last report interval.
    pub calls_per_second: f64,
    /// Objects (tensors...) alive on the worker.
    pub live_objects: u64,
    /// Bytes they hold.
    pub live_bytes: u64,
    /// Bytes of the worker's memory quota in use.
    pub quota_used: u64,
    /// The quota's limit.
    pub quota_limit: u64,
    /// What routing minimises (0 is idle).
    pub load: f64,
    /// How long the worker has been up.
    pub uptime: Duration,
}

/// One worker as the registry knows it.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct WorkerInfo {
    /// Its unique name.
    pub name: String,
    /// Its kind (`tensor-worker`, ...).
    pub kind: String,
    /// Where clients reach it.
    pub address: String,
    /// Its labels, as registered.
    pub labels: Vec<(String, String)>,
    /// The interfaces it implements: type id and name.
    pub interfaces: Vec<(u64, String)>,
    /// Whether it reported within the registry's TTL.
    pub healthy: bool,
    /// Its latest report.
    pub health: Health,
    /// Time since its last report (or its registration).
    pub since_report: Duration,
    /// Time since it registered.
    pub registered_for: Duration,
}

/// Sums over every registered worker.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct Totals {
    /// Registered workers.
    pub workers: u32,
    /// Those of them healthy.
    pub healthy: u32,
    /// Calls in flight, summed.
    pub calls_in_flight: u64,
    /// Calls per second, summed.
    pub calls_per_second: f64,
    /// Live objects, summed.
    pub live_objects: u64,
    /// Live bytes, summed.
    pub live_bytes: u64,
    /// Quota in use, summed.
    pub quota_used: u64,
    /// Quota limits, summed.
    pub quota_limit: u64,
}

/// The registry's answer to `status`: every worker, sorted by name, and
/// the totals.
#[derive(Clone, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct Status {
    /// Every registered worker, by name.
    pub workers: Vec<WorkerInfo>,
    /// Sums over them.
    pub totals: Totals,
}

impl Status {
    /// The status of `workers` (already sorted by name), totals computed.
    pub(crate) fn of(workers: Vec<WorkerInfo>) -> Self {
        let mut t = Totals {
            workers: u32::try_from(workers.len()).unwrap_or(u32::MAX),
            ..Totals::default()
        };
        for w in &workers {
            t.healthy += u32::from(w.healthy);
            t.calls_in_flight += u64::from(w.health.calls_in_flight);
            t.calls_per_second += w.health.calls_per_second;
            t.live_objects += w.health.live_objects;
            t.live_bytes += w.health.live_bytes;
            t.quota_used += w.health.quota_used;
            t.quota_limit += w.health.quota_limit;
        }
        Status { workers, totals: t }
    }
}

/// What a `watch` observer is told.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Change {
    /// The first event: every worker registered when the watch began.
    Membership(Vec<WorkerInfo>),
    /// A worker registered.
    Joined(WorkerInfo),
    /// A worker is gone: its lease was dropped, it expired, or a new
    /// registration replaced it.
    Left {
        /// Its name.
        name: String,
        /// "lease dropped", "expired" or "replaced".
        reason: String,
    },
    /// A worker became healthy or unhealthy.
    HealthChanged(WorkerInfo),
}

/// One event of a watch, numbered.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct Event {
    /// The registry's event number: one more for every event.
    pub sequence: u64,
    /// What happened.
    pub change: Change,
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

pub(crate) fn write_health(h: &Health, mut b: health::Builder<'_>) {
    b.set_calls_in_flight(h.calls_in_flight);
    b.set_calls_per_second(h.calls_per_second);
    b.set_live_objects(h.live_objects);
    b.set_live_bytes(h.live_bytes);
    b.set_quota_used(h.quota_used);
    b.set_quota_limit(h.quota_limit);
    b.set_load(h.load);
    b.set_uptime_millis(millis(h.uptime));
}

pub(crate) fn read_health(r: health::Reader<'_>) -> Health {
    Health {
        calls_in_flight: r.get_calls_in_flight(),
        calls_per_second: r.get_calls_per_second(),
        live_objects: r.get_live_objects(),
        live_bytes: r.get_live_bytes(),
        quota_used: r.get_quota_used(),
        quota_limit: r.get_quota_limit(),
        load: r.get_load(),
        uptime: Duration::from_millis(r.get_uptime_millis()),
    }
}

pub(crate) fn write_labels(
    labels: &[(String, String)],
    mut b: capnp::struct_list::Builder<'_, label::Owned>,
) {
    for (i, (k, v)) in labels.iter().enumerate() {
        let mut l = b.reborrow().get(i as u32);
        l.set_key(k);
        l.set_value(v);
    }
}

pub(crate) fn read_labels(
    r: capnp::struct_list::Reader<'_, label::Owned>,
) -> Result<Vec<(String, String)>> {
    r.iter()
        .map(|l| {
            Ok((
                l.get_key()?.to_str()?.to_string(),
                l.get_value()?.to_str()?.to_string(),
            ))
        })
        .collect()
}

pub(crate) fn read_interfaces(
    r: capnp::struct_list::Reader<'_, interface_ref::Owned>,
) -> Result<Vec<(u64, String)>> {
    r.iter()
        .map(|i| Ok((i.get_id(), i.get_name()?.to_str()?.to_string())))
        .collect()
}

pub(crate) fn write_worker(w: &WorkerInfo, mut b: worker_status::Builder<'_>) {
    b.set_name(&w.name);
    b.set_kind(&w.kind);
    b.set_address(&w.address);
    write_labels(&w.labels, b.reborrow().init_labels(w.labels.len() as u32));
    let mut ifs = b.reborrow().init_interfaces(w.interfaces.len() as u32);
    for (i, (id, name)) in w.interfaces.iter().enumerate() {
        let mut r = ifs.reborrow().get(i as u32);
        r.set_id(*id);
        r.set_name(name);
    }
    b.set_healthy(w.healthy);
    write_health(&w.health, b.reborrow().init_health());
    b.set_since_report_millis(millis(w.since_report));
    b.set_registered_millis(millis(w.registered_for));
}

pub(crate) fn read_worker(r: worker_status::Reader<'_>) -> Result<WorkerInfo> {
    Ok(WorkerInfo {
        name: r.get_name()?.to_str()?.to_string(),
        kind: r.get_kind()?.to_str()?.to_string(),
        address: r.get_address()?.to_str()?.to_string(),
        labels: read_labels(r.get_labels()?)?,
        interfaces: read_interfaces(r.get_interfaces()?)?,
        healthy: r.get_healthy(),
        health: read_health(r.get_health()?),
        since_report: Duration::from_millis(r.get_since_report_millis()),
        registered_for: Duration::from_millis(r.get_registered_millis()),
    })
}

fn write_workers(ws: &[WorkerInfo], mut b: capnp::struct_list::Builder<'_, worker_status::Owned>) {
    for (i, w) in ws.iter().enumerate() {
        write_worker(w, b.reborrow().get(i as u32));
    }
}

fn write_totals(t: &Totals, mut b: totals::Builder<'_>) {
    b.set_workers(t.workers);
    b.set_healthy(t.healthy);
    b.set_calls_in_flight(t.calls_in_flight);
    b.set_calls_per_second(t.calls_per_second);
    b.set_live_objects(t.live_objects);
    b.set_live_bytes(t.live_bytes);
    b.set_quota_used(t.quota_used);
    b.set_quota_limit(t.quota_limit);
}

pub(crate) fn write_status(s: &Status, mut b: status::Builder<'_>) {
    write_workers(
        &s.workers,
        b.reborrow().init_workers(s.workers.len() as u32),
    );
    write_totals(&s.totals, b.init_totals());
}

pub(crate) fn read_status(r: status::Reader<'_>) -> Result<Status> {
    let workers = r
        .get_workers()?
        .iter()
        .map(read_worker)
        .collect::<Result<Vec<_>>>()?;
    let t = r.get_totals()?;
    Ok(Status {
        workers,
        totals: Totals {
            workers: t.get_workers(),
            healthy: t.get_healthy(),
            calls_in_flight: t.get_calls_in_flight(),
            calls_per_second: t.get_calls_per_second(),
            live_objects: t.get_live_objects(),
            live_bytes: t.get_live_bytes(),
            quota_used: t.get_quota_used(),
            quota_limit: t.get_quota_limit(),
        },
    })
}

pub(crate) fn write_event(e: &Event, mut b: event::Builder<'_>) {
    b.set_sequence(e.sequence);
    match &e.change {
        Change::Membership(ws) => write_workers(ws, b.init_membership(ws.len() as u32)),
        Change::Joined(w) => write_worker(w, b.init_joined()),
        Change::HealthChanged(w) => write_worker(w, b.init_health_changed()),
        Change::Left { name, reason } => {
            let mut l = b.init_left();
            l.set_name(name);
            l.set_reason(reason);
        }
    }
}

pub(crate) fn read_event(r: event::Reader<'_>) -> Result<Event> {
    use event::Which;
    let change = match r
        .which()
        .map_err(|_| crate::Error::invalid("unknown event kind"))?
    {
        Which::Membership(ws) => {
            Change::Membership(ws?.iter().map(read_worker).collect::<Result<Vec<_>>>()?)
        }
        Which::Joined(w) => Change::Joined(read_worker(w?)?),
        Which::HealthChanged(w) => Change::HealthChanged(read_worker(w?)?),
        Which::Left(l) => {
            let l = l?;
            Change::Left {
                name: l.get_name()?.to_str()?.to_string(),
                reason: l.get_reason()?.to_str()?.to_string(),
            }
        }
    };
    Ok(Event {
        sequence: r.get_sequence(),
        change,
    })
}
