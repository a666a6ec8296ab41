//! Supervised actors restart with fresh state: after a panic (when they
//! ask for it), when they ask for a fresh start, by policy and strategy.
//! Run over local, virtual and TCP.

mod common;
#[path = "common/supervised.rs"]
mod supervised;

use std::rc::Rc;
use std::time::Duration;

use capactor::actors::Probe;
use capactor::schema::actor_capnp::actor;
use capactor::schema::probe_capnp::probe;
use capactor::supervisor::{ChildExit, Restart, Strategy, Supervisor};
use capactor::Error;
use common::{assert_disconnected, each, eventually, sleep_call, within, ALL};

const LIMIT: Duration = Duration::from_secs(20);

/// Streams `n` chunks into the probe's sink (state the probe keeps).
async fn stream(p: &probe::Client, n: u64) {
    for seq in 0..n {
        let mut req = p.sink_request();
        req.get().set_seq(seq);
        req.get().set_data(b"chunk");
        within(LIMIT, req.send()).await.unwrap();
    }
}

async fn streamed(p: &probe::Client) -> u64 {
    let reply = within(LIMIT, p.stats_request().send().promise)
        .await
        .unwrap();
    reply.get().unwrap().get_streamed_chunks()
}

#[test]
fn a_restart_after_a_panic_gives_fresh_state() {
    each(&ALL, |h| async move {
        let sup = Supervisor::new();
        let spec = supervised::spec::<probe::Client, _, _>(&h, "p", || Probe::new("p"))
            .restart_on_panic(true);
        let p = within(LIMIT, sup.spawn(spec)).await.unwrap();
        stream(&p, 3).await;
        assert_eq!(streamed(&p).await, 3);

        // The panicking call fails: with the panic's error id, or (when the
        // restart cuts the link before that answer is out) as restarting.
        let err = within(LIMIT, p.panic_request().send().promise)
            .await
            .err()
            .unwrap();
        assert!(
            err.extra.contains("internal error") || Error::is_restarting(&err),
            "{err}"
        );
        // The same capability reaches a fresh incarnation: its sink starts
        // at chunk 0 again.
        assert_eq!(streamed(&p).await, 0);
        stream(&p, 2).await;
        assert_eq!(streamed(&p).await, 2);
        assert_eq!(p.restarts(), 1);
        assert!(
            matches!(p.last_exit(), Some(ChildExit::Panicked(m)) if m.contains("probe asked to panic"))
        );
        assert!(sup.exit().is_none());
    });
}

#[test]
fn without_restart_on_panic_an_actor_serves_on_with_its_state() {
    each(&ALL, |h| async move {
        let sup = Supervisor::new();
        let spec = supervised::spec::<probe::Client, _, _>(&h, "p", || Probe::new("p"));
        let p = within(LIMIT, sup.spawn(spec)).await.unwrap();
        stream(&p, 3).await;
        assert!(within(LIMIT, p.panic_request().send().promise)
            .await
            .is_err());
        assert_eq!(streamed(&p).await, 3);
        assert_eq!(p.restarts(), 0);
    });
}

#[test]
fn calls_in_flight_when_the_actor_dies_fail_with_a_retryable_error() {
    each(&ALL, |h| async move {
        let sup = Supervisor::new();
        let spec = supervised::spec::<probe::Client, _, _>(&h, "p", || Probe::new("p"))
            .restart_on_panic(true);
        let p = within(LIMIT, sup.spawn(spec)).await.unwrap();
        let pending = sleep_call(&p, 60_000);
        let pending = tokio::task::spawn_local(pending);
        // Let the sleep reach the actor before it panics.
        common::ping(&p, LIMIT).await;
        assert!(within(LIMIT, p.panic_request().send().promise)
            .await
            .is_err());
        let err = within(LIMIT, pending).await.unwrap().err().unwrap();
        assert!(Error::is_restarting(&err), "{err}");
        // Retrying on the same capability works.
        within(LIMIT, sleep_call(&p, 1)).await.unwrap();
    });
}

#[test]
fn objects_of_the_old_incarnation_fail_with_disconnected() {
    each(&ALL, |h| async move {
        let sup = Supervisor::new();
        let spec = supervised::spec::<probe::Client, _, _>(&h, "p", || Probe::new("p"));
        let p = within(LIMIT, sup.spawn(spec)).await.unwrap();
        let mut req = p.counter_request();
        req.get().set_start(7);
        let counter = within(LIMIT, req.send().promise)
            .await
            .unwrap()
            .get()
            .unwrap()
            .get_counter()
            .unwrap();
        let v = within(LIMIT, counter.next_request().send().promise)
            .await
            .unwrap();
        assert_eq!(v.get().unwrap().get_value(), 7);
        // One held as a pipelined promise, too.
        let mut req = p.counter_request();
        req.get().set_start(3);
        let pipelined = req.send().pipeline.get_counter();
        let v = within(LIMIT, pipelined.next_request().send().promise)
            .await
            .unwrap();
        assert_eq!(v.get().unwrap().get_value(), 3);

        assert!(p.kill());
        eventually(LIMIT, || p.restarts() == 1 && p.is_running()).await;
        let err = within(LIMIT, counter.next_request().send().promise)
            .await
            .err()
            .unwrap();
        assert_disconnected(&err);
        assert!(
            !Error::is_restarting(&err),
            "an old object is not retryable: {err}"
        );
        let err = within(LIMIT, pipelined.next_request().send().promise)
            .await
            .err()
            .unwrap();
        assert_disconnected(&err);
        assert!(!Error::is_restarting(&err), "not retryable: {err}");
        // The actor itself serves on, fresh.
        let mut req = p.counter_request();
        req.get().set_start(1);
        let counter = req.send().pipeline.get_counter();
        let v = within(LIMIT, counter.next_request().send().promise)
            .await
            .unwrap();
        assert_eq!(v.get().unwrap().get_value(), 1);
        assert_eq!(p.last_exit(), Some(ChildExit::Killed));
    });
}

/// Asks to be restarted on `ping`, or to stop on `info`.
struct Asker;

impl actor::Server for Asker {
    async fn ping(
        self: Rc<Self>,
        _: actor::PingParams,
        _: actor::PingResults,
    ) -> Result<(), capnp::Error> {
        assert!(capactor::call::Guard::current().actor().request_restart());
        Ok(())
    }

    async fn info(
        self: Rc<Self>,
        _: actor::InfoParams,
        _: actor::InfoResults,
    ) -> Result<(), capnp::Error> {
        assert!(capactor::call::Guard::current().actor().request_stop());
        Ok(())
    }
}

#[test]
fn an_actor_can_ask_for_a_fresh_start() {
    each(&ALL, |h| async move {
        let sup = Supervisor::new();
        let a = within(
            LIMIT,
            sup.spawn(supervised::spec::<actor::Client, _, _>(&h, "a", || Asker)),
        )
        .await
        .unwrap();
        let _ = within(LIMIT, a.ping_request().send().promise).await;
        eventually(LIMIT, || a.restarts() == 1).await;
        assert_eq!(a.last_exit(), Some(ChildExit::RestartRequested));
    });
}

#[test]
fn a_transient_child_that_stops_normally_is_not_restarted_and_a_permanent_one_is() {
    each(&ALL, |h| async move {
        let sup = Supervisor::new();
        let transient =
            supervised::spec::<actor::Client, _, _>(&h, "t", || Asker).restart(Restart::Transient);
        let permanent = supervised::spec::<actor::Client, _, _>(&h, "p", || Asker);
        let t = within(LIMIT, sup.spawn(transient)).await.unwrap();
        let p = within(LIMIT, sup.spawn(permanent)).await.unwrap();
        let _ = within(LIMIT, t.info_request().send().promise).await;
        let _ = within(LIMIT, p.info_request().send().promise).await;
        eventually(LIMIT, || p.restarts() == 1 && p.is_running()).await;
        eventually(LIMIT, || {
            t.last_exit() == Some(ChildExit::Normal) && !t.is_running()
        })
        .await;
        assert_eq!(t.restarts(), 0);
        let err = within(LIMIT, t.ping_request().send().promise)
            .await
            .err()
            .unwrap();
        assert_disconnected(&err);
        assert!(err.extra.contains("does not restart it"), "{err}");
        // The killed transient child is restarted: it did not end normally.
        let t2 = within(
            LIMIT,
            sup.spawn(
                supervised::spec::<actor::Client, _, _>(&h, "t2", || Asker)
                    .restart(Restart::Transient),
            ),
        )
        .await
        .unwrap();
        assert!(t2.kill());
        eventually(LIMIT, || t2.restarts() == 1 && t2.is_running()).await;
    });
}

#[test]
fn a_never_child_stays_down_and_says_why() {
    each(&ALL, |h| async move {
        let sup = Supervisor::new();
        let spec = supervised::spec::<probe::Client, _, _>(&h, "p", || Probe::new("p"))
            .restart(Restart::Never)
            .restart_on_panic(true);
        let p = within(LIMIT, sup.spawn(spec)).await.unwrap();
        assert!(within(LIMIT, p.panic_request().send().promise)
            .await
            .is_err());
        eventually(LIMIT, || !p.is_running()).await;
        let err = within(LIMIT, sleep_call(&p, 1)).await.err().unwrap();
        assert_disconnected(&err);
        assert!(err.extra.contains("panicked"), "{err}");
        assert_eq!(p.restarts(), 0);
    });
}

#[test]
fn one_for_all_restarts_every_child_when_one_dies() {
    each(&ALL, |h| async move {
        let sup = Supervisor::builder().strategy(Strategy::OneForAll).build();
        let spec = |name: &str| {
            supervised::spec::<probe::Client, _, _>(&h, name, || Probe::new("p"))
                .restart_on_panic(true)
        };
        let a = within(LIMIT, sup.spawn(spec("a"))).await.unwrap();
        let b = within(LIMIT, sup.spawn(spec("b"))).await.unwrap();
        stream(&a, 2).await;
        stream(&b, 3).await;
        assert!(within(LIMIT, a.panic_request().send().promise)
            .await
            .is_err());
        eventually(LIMIT, || a.restarts() == 1 && b.restarts() == 1).await;
        assert_eq!(streamed(&a).await, 0);
        assert_eq!(streamed(&b).await, 0);
        assert_eq!(b.last_exit(), Some(ChildExit::Stopped));
        // One-for-one leaves the sibling alone.
        let sup = Supervisor::new();
        let c = within(LIMIT, sup.spawn(spec("c"))).await.unwrap();
        let d = within(LIMIT, sup.spawn(spec("d"))).await.unwrap();
        stream(&d, 3).await;
        assert!(within(LIMIT, c.panic_request().send().promise)
            .await
            .is_err());
        eventually(LIMIT, || c.restarts() == 1).await;
        assert_eq!(streamed(&d).await, 3);
        assert_eq!(d.restarts(), 0);
    });
}
