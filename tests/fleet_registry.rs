//! The fleet registry, over the virtual and TCP transports: leases kept by
//! streamed health, expiry of silent workers, removal on a dropped lease,
//! re-registration after a registry restart, status totals, the order of
//! watch events, a stuck watcher, routing, and bad registrations.

mod common;

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use capactor::actors::registry::{Registry, RegistryOptions, RegistryState};
use capactor::fleet::{Change, Event, Health, Joiner, Registration, RegistryClient, Watch};
use capactor::schema::registry_capnp::{observer, registry};
use capactor::{Address, ConnectOptions, Runtime, ServeOptions, Server};
use common::{each, eventually, within, Harness, Transport, REMOTE, SETUP_LIMIT};

const LIMIT: Duration = Duration::from_secs(20);

/// One registry, reached over the harness's transport by as many clients
/// as a test wants (each a connection of its own, as workers are).
struct Fleet {
    state: Arc<RegistryState>,
    transport: Transport,
    rt: Arc<Runtime>,
    server: Option<Server<Address>>,
}

fn options(ttl_ms: u64, grace_ms: u64) -> RegistryOptions {
    let mut o = RegistryOptions::default();
    o.ttl = Duration::from_millis(ttl_ms);
    o.grace = Duration::from_millis(grace_ms);
    o.report_interval = Duration::from_millis(ttl_ms / 4);
    o
}

impl Fleet {
    async fn start(h: &Harness, options: RegistryOptions) -> Fleet {
        Self::start_at(h, RegistryState::new(options), "127.0.0.1:0").await
    }

    async fn start_at(h: &Harness, state: Arc<RegistryState>, addr: &str) -> Fleet {
        let server = match h.transport {
            Transport::Tcp | Transport::Unix => {
                let s = state.clone();
                let address: Address = match (h.transport, addr) {
                    (Transport::Unix, "127.0.0.1:0") => {
                        Address::Unix(h.dir.path().join("registry.sock"))
                    }
                    _ => addr.parse().unwrap(),
                };
                let serving = h.rt.serve::<registry::Client, _, _>(
                    address,
                    move || Registry::new("registry", s.clone()),
                    ServeOptions::insecure_loopback(),
                );
                Some(within(SETUP_LIMIT, serving).await.unwrap())
            }
            _ => None,
        };
        Fleet {
            state,
            transport: h.transport,
            rt: h.rt.clone(),
            server,
        }
    }

    fn addr(&self) -> String {
        self.server.as_ref().unwrap().address().to_string()
    }

    async fn client(&self) -> RegistryClient {
        match self.transport {
            Transport::Tcp | Transport::Unix => {
                let conn = within(
                    SETUP_LIMIT,
                    capactor::connect(self.addr(), &ConnectOptions::default()),
                )
                .await
                .unwrap();
                RegistryClient::from_connection(conn)
            }
            _ => {
                let s = self.state.clone();
                RegistryClient::from_connection(
                    self.rt
                        .spawn_virtual(move || Registry::new("registry", s.clone())),
                )
            }
        }
    }
}

fn worker(name: &str) -> Registration {
    Registration::new(name, "tensor-worker", "127.0.0.1:7001")
}

fn load(l: f64) -> Health {
    Health {
        load: l,
        calls_in_flight: 1,
        quota_used: 100,
        quota_limit: 1000,
        live_objects: 2,
        live_bytes: 100,
        ..Health::default()
    }
}

/// Reports until a report fails (a streamed call's error surfaces on a
/// later one, once its answer is back), and returns the error.
async fn report_fails(lease: &capactor::fleet::Lease) -> capactor::Error {
    within(LIMIT, async {
        loop {
            if let Err(e) = lease.report(&load(0.0)).await {
                return e;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await
}

async fn next(watch: &mut Watch) -> Event {
    within(LIMIT, watch.next()).await.expect("watch ended")
}

#[test]
fn a_registered_worker_stays_healthy_while_it_reports_and_shows_its_health() {
    each(&REMOTE, |h| async move {
        let fleet = Fleet::start(&h, options(300, 10_000)).await;
        let w = fleet.client().await;
        let lease = w.register(&worker("w1"), None).await.unwrap();
        assert_eq!(lease.ttl(), Duration::from_millis(300));
        // Renew well past the TTL: the worker never turns unhealthy.
        let start = Instant::now();
        let mut reports = 0;
        while start.elapsed() < Duration::from_millis(900) {
            lease.report(&load(0.5)).await.unwrap();
            reports += 1;
            tokio::time::sleep(lease.report_interval()).await;
            let s = w.status().await.unwrap();
            assert!(s.workers[0].healthy, "{s:?}");
        }
        assert!(reports >= 5);
        let s = w.status().await.unwrap();
        assert_eq!(s.workers.len(), 1);
        let info = &s.workers[0];
        assert_eq!(
            (info.name.as_str(), info.kind.as_str()),
            ("w1", "tensor-worker")
        );
        assert_eq!(info.health, load(0.5));
        assert!(info.since_report < Duration::from_millis(300));
        assert!(info.registered_for >= Duration::from_millis(900));
    });
}

#[test]
fn a_worker_that_stops_reporting_turns_unhealthy_within_the_ttl_then_leaves() {
    each(&REMOTE, |h| async move {
        let (ttl, grace) = (Duration::from_millis(200), Duration::from_millis(300));
        let fleet = Fleet::start(&h, options(200, 300)).await;
        let observer = fleet.client().await;
        let mut watch = observer.watch(64).await.unwrap();
        assert!(matches!(next(&mut watch).await.change, Change::Membership(m) if m.is_empty()));
        let w = fleet.client().await;
        let lease = w.register(&worker("silent"), None).await.unwrap();
        lease.report(&load(0.0)).await.unwrap();
        // The report is in once status shows it; from then on, silence.
        eventually(LIMIT, || {
            fleet.state.status().workers[0].health.quota_limit == 1000
        })
        .await;
        let last = Instant::now();
        assert!(matches!(next(&mut watch).await.change, Change::Joined(j) if j.name == "silent"));
        let e = next(&mut watch).await;
        let noticed = last.elapsed();
        match e.change {
            Change::HealthChanged(w) => assert!(!w.healthy && w.name == "silent"),
            other => panic!("{other:?}"),
        }
        assert!(
            noticed >= ttl,
            "unhealthy after {noticed:?}, before the TTL"
        );
        assert!(
            noticed < ttl + Duration::from_secs(1),
            "noticed after {noticed:?}"
        );
        let e = next(&mut watch).await;
        assert_eq!(
            e.change,
            Change::Left {
                name: "silent".into(),
                reason: "expired".into()
            }
        );
        assert!(last.elapsed() >= ttl + grace);
        // The expired lease cannot be renewed.
        let err = report_fails(&lease).await;
        assert!(err.to_string().contains("register again"), "{err}");
        assert!(fleet.state.status().workers.is_empty());
    });
}

#[test]
fn a_cut_link_or_a_dropped_lease_removes_the_worker_at_once() {
    each(&REMOTE, |h| async move {
        let fleet = Fleet::start(&h, options(60_000, 60_000)).await;
        let observer = fleet.client().await;
        let mut watch = observer.watch(64).await.unwrap();
        next(&mut watch).await;
        let a = fleet.client().await;
        let _lease_a = a.register(&worker("a"), None).await.unwrap();
        let b = fleet.client().await;
        let lease_b = b.register(&worker("b"), None).await.unwrap();
        next(&mut watch).await;
        next(&mut watch).await;
        a.link().unwrap().cut();
        assert_eq!(
            next(&mut watch).await.change,
            Change::Left {
                name: "a".into(),
                reason: "lease dropped".into()
            }
        );
        drop(lease_b);
        assert_eq!(
            next(&mut watch).await.change,
            Change::Left {
                name: "b".into(),
                reason: "lease dropped".into()
            }
        );
        assert_eq!(observer.status().await.unwrap().totals.workers, 0);
    });
}

#[test]
fn a_joined_worker_registers_again_after_the_registry_restarts() {
    each(&REMOTE, |h| async move {
        let first = Fleet::start(&h, options(300, 300)).await;
        let addr = (h.transport != Transport::Virtual).then(|| first.addr());
        let current: Rc<RefCell<Option<Fleet>>> = Rc::new(RefCell::new(Some(first)));
        let links = Rc::new(RefCell::new(Vec::new()));
        let (c, l) = (current.clone(), links.clone());
        let connect = move || {
            let (c, l) = (c.clone(), l.clone());
            async move {
                // Where the registry is now, read before anything waits.
                let (tcp, state, rt) = {
                    let fleet = c.borrow();
                    let fleet = fleet
                        .as_ref()
                        .ok_or_else(|| capactor::Error::invalid("down"))?;
                    let tcp = (fleet.transport != Transport::Virtual).then(|| fleet.addr());
                    (tcp, fleet.state.clone(), fleet.rt.clone())
                };
                let client = match tcp {
                    Some(addr) => RegistryClient::from_connection(
                        capactor::connect(addr, &ConnectOptions::default()).await?,
                    ),
                    None => RegistryClient::from_connection(
                        rt.spawn_virtual(move || Registry::new("registry", state.clone())),
                    ),
                };
                l.borrow_mut().push(client.link().unwrap().clone());
                Ok(client)
            }
        };
        let joiner = Joiner::spawn(connect, worker("w1"), None, || load(0.0));
        eventually(LIMIT, || joiner.state().registered).await;
        let state1 = current.borrow().as_ref().unwrap().state.clone();
        assert_eq!(state1.status().totals.workers, 1);
        // The registry goes away, its table with it, and comes back empty.
        let old = current.borrow_mut().take().unwrap();
        if let Some(server) = old.server {
            server.shutdown(Duration::from_millis(100)).await;
        }
        for link in links.borrow().iter() {
            link.cut();
        }
        eventually(LIMIT, || !joiner.state().registered).await;
        let again = match &addr {
            Some(addr) => Fleet::start_at(&h, RegistryState::new(options(300, 300)), addr).await,
            None => Fleet::start(&h, options(300, 300)).await,
        };
        let state2 = again.state.clone();
        *current.borrow_mut() = Some(again);
        eventually(LIMIT, || state2.status().totals.workers == 1).await;
        eventually(LIMIT, || joiner.state().registered).await;
        assert!(joiner.state().registrations >= 2);
        assert_eq!(state2.status().workers[0].name, "w1");
        drop(joiner);
        eventually(LIMIT, || state2.status().totals.workers == 0).await;
    });
}

#[test]
fn status_totals_sum_every_workers_latest_report() {
    each(&REMOTE, |h| async move {
        let fleet = Fleet::start(&h, options(60_000, 60_000)).await;
        let mut leases = Vec::new();
        for i in 0..5u64 {
            let c = fleet.client().await;
            let lease = c.register(&worker(&format!("w{i}")), None).await.unwrap();
            lease
                .report(&Health {
                    calls_in_flight: i as u32,
                    calls_per_second: i as f64 * 10.0,
                    live_objects: i,
                    live_bytes: i * 100,
                    quota_used: i * 100,
                    quota_limit: 1000,
                    ..Health::default()
                })
                .await
                .unwrap();
            leases.push((c, lease));
        }
        let c = fleet.client().await;
        eventually(LIMIT, || fleet.state.status().totals.live_objects == 10).await;
        let s = c.status().await.unwrap();
        let names: Vec<_> = s.workers.iter().map(|w| w.name.as_str()).collect();
        assert_eq!(names, ["w0", "w1", "w2", "w3", "w4"]);
        let t = s.totals;
        assert_eq!((t.workers, t.healthy), (5, 5));
        assert_eq!(
            (t.calls_in_flight, t.live_objects, t.live_bytes),
            (10, 10, 1000)
        );
        assert_eq!((t.quota_used, t.quota_limit), (1000, 5000));
        assert!((t.calls_per_second - 100.0).abs() < 1e-9);
    });
}

#[test]
fn watch_events_arrive_in_order_starting_with_the_current_membership() {
    each(&REMOTE, |h| async move {
        let fleet = Fleet::start(&h, options(60_000, 60_000)).await;
        let c = fleet.client().await;
        let _before = c.register(&worker("before"), None).await.unwrap();
        let mut watch = c.watch(256).await.unwrap();
        let first = next(&mut watch).await;
        match &first.change {
            Change::Membership(m) => {
                assert_eq!(m.iter().map(|w| &w.name).collect::<Vec<_>>(), ["before"])
            }
            other => panic!("{other:?}"),
        }
        let mut leases = Vec::new();
        for i in 0..20 {
            leases.push(
                c.register(&worker(&format!("n{i:02}")), None)
                    .await
                    .unwrap(),
            );
        }
        for l in leases.drain(..10) {
            drop(l);
        }
        let mut seq = first.sequence;
        for i in 0..20 {
            let e = next(&mut watch).await;
            assert_eq!(e.sequence, seq + 1);
            seq = e.sequence;
            assert!(matches!(e.change, Change::Joined(w) if w.name == format!("n{i:02}")));
        }
        // Releases reach the registry in the order they were sent.
        for i in 0..10 {
            let e = next(&mut watch).await;
            assert_eq!(e.sequence, seq + 1);
            seq = e.sequence;
            assert_eq!(
                e.change,
                Change::Left {
                    name: format!("n{i:02}"),
                    reason: "lease dropped".into()
                }
            );
        }
    });
}

/// An observer whose calls never return; records that it was dropped.
struct Stuck {
    calls: Rc<Cell<u32>>,
    dropped: Rc<Cell<bool>>,
}

impl observer::Server for Stuck {
    async fn changed(
        self: Rc<Self>,
        _: observer::ChangedParams,
        _: observer::ChangedResults,
    ) -> Result<(), capnp::Error> {
        self.calls.set(self.calls.get() + 1);
        std::future::pending::<()>().await;
        Ok(())
    }
}

impl Drop for Stuck {
    fn drop(&mut self) {
        self.dropped.set(true);
    }
}

#[test]
fn an_observer_that_never_returns_is_dropped_after_its_backlog_and_slows_nobody() {
    each(&REMOTE, |h| async move {
        let mut opts = options(60_000, 60_000);
        opts.watch_backlog = 8;
        let fleet = Fleet::start(&h, opts).await;
        let c = fleet.client().await;
        let (calls, dropped) = (Rc::new(Cell::new(0)), Rc::new(Cell::new(false)));
        let stuck = Stuck {
            calls: calls.clone(),
            dropped: dropped.clone(),
        };
        let mut req = c.client().watch_request();
        req.get().set_observer(capactor::new_client(stuck));
        let _stuck_subscription = req.send().promise.await.unwrap();
        let mut healthy = c.watch(1024).await.unwrap();
        next(&mut healthy).await;
        let started = Instant::now();
        let mut leases = Vec::new();
        for i in 0..40 {
            leases.push(c.register(&worker(&format!("x{i}")), None).await.unwrap());
        }
        for i in 0..40 {
            let e = next(&mut healthy).await;
            assert!(matches!(e.change, Change::Joined(w) if w.name == format!("x{i}")));
        }
        assert!(started.elapsed() < LIMIT / 2);
        // Its one call is still pending: it got no second.
        assert_eq!(calls.get(), 1);
        eventually(LIMIT, || dropped.get()).await;
    });
}

#[test]
fn route_spreads_picks_over_equally_loaded_workers_and_prefers_the_least_loaded() {
    each(&REMOTE, |h| async move {
        let fleet = Fleet::start(&h, options(60_000, 60_000)).await;
        let c = fleet.client().await;
        let mut leases = Vec::new();
        for name in ["a", "b", "c"] {
            let mut r = worker(name);
            r.labels = vec![(
                "zone".into(),
                if name == "c" { "east" } else { "west" }.into(),
            )];
            let lease = c.register(&r, None).await.unwrap();
            lease.report(&load(0.0)).await.unwrap();
            leases.push(lease);
        }
        let mut other = Registration::new("gpu", "trainer", "127.0.0.1:7009");
        other.labels = vec![];
        let _gpu = c.register(&other, None).await.unwrap();
        c.status().await.unwrap();
        let mut picked = std::collections::BTreeMap::new();
        for _ in 0..9 {
            let (w, actor) = c.route("tensor-worker").await.unwrap();
            assert!(actor.is_none());
            *picked.entry(w.name).or_insert(0) += 1;
        }
        assert_eq!(
            picked.values().copied().collect::<Vec<_>>(),
            [3, 3, 3],
            "{picked:?}"
        );
        // A report resets the picks; a loaded worker comes last.
        leases[0].report(&load(5.0)).await.unwrap();
        leases[1].report(&load(0.0)).await.unwrap();
        leases[2].report(&load(0.0)).await.unwrap();
        c.status().await.unwrap();
        for _ in 0..4 {
            let (w, _) = c.route("tensor-worker").await.unwrap();
            assert_ne!(w.name, "a");
        }
        let (w, _) = c
            .lookup("", &[("zone".into(), "east".into())])
            .await
            .unwrap();
        assert_eq!(w.name, "c");
        let (w, _) = c.route("trainer").await.unwrap();
        assert_eq!(w.name, "gpu");
        let err = c.route("nothing").await.err().unwrap().to_string();
        assert!(
            err.contains("no healthy worker of kind \"nothing\""),
            "{err}"
        );
    });
}

#[test]
fn route_hands_out_the_capability_a_worker_registered() {
    each(&REMOTE, |h| async move {
        let fleet = Fleet::start(&h, options(60_000, 60_000)).await;
        let c = fleet.client().await;
        let probe: capactor::schema::actor_capnp::actor::Client =
            capactor::spawn_local(capactor::actors::Probe::new("p1"));
        let _lease = c.register(&worker("p1"), Some(probe)).await.unwrap();
        let (_, actor) = c.route("tensor-worker").await.unwrap();
        let about = capactor::describe(&actor.expect("a capability"))
            .await
            .unwrap();
        assert_eq!(about.name, "p1");
    });
}

#[test]
fn a_duplicate_name_is_refused_while_its_lease_lives_and_replaces_an_expired_one() {
    each(&REMOTE, |h| async move {
        let fleet = Fleet::start(&h, options(200, 60_000)).await;
        let c = fleet.client().await;
        let old = c.register(&worker("w"), None).await.unwrap();
        old.report(&load(0.0)).await.unwrap();
        let err = c
            .register(&worker("w"), None)
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("already registered and its lease is alive"),
            "{err}"
        );
        // Silent past the TTL: unhealthy, and its name may be taken.
        eventually(LIMIT, || !fleet.state.status().workers[0].healthy).await;
        let mut watch = c.watch(16).await.unwrap();
        next(&mut watch).await;
        let new = c.register(&worker("w"), None).await.unwrap();
        assert_eq!(
            next(&mut watch).await.change,
            Change::Left {
                name: "w".into(),
                reason: "replaced".into()
            }
        );
        assert!(matches!(next(&mut watch).await.change, Change::Joined(_)));
        new.report(&load(0.0)).await.unwrap();
        // The old lease is dead: its reports fail, its drop removes nothing.
        report_fails(&old).await;
        drop(old);
        c.status().await.unwrap();
        assert_eq!(c.status().await.unwrap().totals.healthy, 1);
    });
}

#[test]
fn malformed_registrations_get_a_clear_error_and_the_registry_keeps_serving() {
    each(&REMOTE, |h| async move {
        let fleet = Fleet::start(&h, options(60_000, 60_000)).await;
        let c = fleet.client().await;
        let cases: Vec<(Registration, &str)> = vec![
            (
                Registration::new("w", "k", "no-port"),
                "malformed worker address",
            ),
            (
                Registration::new("w", "k", "host:0"),
                "malformed worker address",
            ),
            (
                Registration::new("w", "k", "host:99999"),
                "malformed worker address",
            ),
            (
                Registration::new("w", "k", "ho st:80"),
                "malformed worker address",
            ),
            (
                Registration::new("w", "k", "[not-v6]:80"),
                "malformed worker address",
            ),
            (
                Registration::new("w", "k", "unix:relative.sock"),
                "expected unix: and an absolute path",
            ),
            (
                Registration::new("w", "k", "unix:"),
                "expected unix: and an absolute path",
            ),
            (
                Registration::new("", "k", "h:1"),
                "name must be 1 to 255 bytes",
            ),
            (
                Registration::new("w\n", "k", "h:1"),
                "name must be 1 to 255 bytes",
            ),
            (
                Registration::new("w", "", "h:1"),
                "kind must be 1 to 63 bytes",
            ),
            (
                {
                    let mut r = Registration::new("w", "k", "h:1");
                    r.labels = vec![("".into(), "v".into())];
                    r
                },
                "malformed label key",
            ),
            (
                {
                    let mut r = Registration::new("w", "k", "h:1");
                    r.labels = vec![("a b".into(), "v".into())];
                    r
                },
                "malformed label key",
            ),
            (
                {
                    let mut r = Registration::new("w", "k", "h:1");
                    r.labels = vec![("a".into(), "v\u{7}".into())];
                    r
                },
                "malformed value of label",
            ),
            (
                {
                    let mut r = Registration::new("w", "k", "h:1");
                    r.labels = vec![("a".into(), "1".into()), ("a".into(), "2".into())];
                    r
                },
                "given twice",
            ),
            (
                {
                    let mut r = Registration::new("w", "k", "h:1");
                    r.labels = (0..33).map(|i| (format!("k{i}"), "v".into())).collect();
                    r
                },
                "labels per worker limit exceeded",
            ),
        ];
        for (r, expected) in cases {
            let err = c.register(&r, None).await.unwrap_err().to_string();
            assert!(err.contains(expected), "{r:?}: {err}");
        }
        // Good ones still go through.
        for addr in [
            "h:1",
            "10.0.0.1:7001",
            "[::1]:7001",
            "w-0.workers.ns.svc.cluster.local:7001",
            "in-process:w",
            "unix:/run/capactor/w1.sock",
            "tls://h:1",
        ] {
            let r = Registration::new(format!("ok-{addr}"), "k", addr);
            let lease = c.register(&r, None).await.unwrap();
            std::mem::forget(lease);
        }
        assert_eq!(c.status().await.unwrap().totals.workers, 7);
    });
}
