//! A stable capability to a supervised actor: it works across restarts,
//! keeps promise pipelining, and leaves named objects with the worker.

mod common;
#[path = "common/supervised.rs"]
mod supervised;

use std::time::{Duration, Instant};

use capactor::actors::tensor::{DType, Quota, TensorWorker, Worker, WorkerState};
use capactor::actors::Probe;
use capactor::schema::probe_capnp::probe;
use capactor::schema::tensor_capnp::tensor_worker;
use capactor::supervisor::{ChildSpec, Supervisor};
use capactor::{LinkConditions, VirtualOptions};
use common::{assert_disconnected, each, eventually, ping, within, Transport, ALL};

const LIMIT: Duration = Duration::from_secs(20);

#[test]
fn a_stable_capability_works_across_restarts() {
    each(&ALL, |h| async move {
        let sup = Supervisor::new();
        let spec = supervised::spec::<probe::Client, _, _>(&h, "p", || Probe::new("p"));
        let p = within(LIMIT, sup.spawn(spec)).await.unwrap();
        // A clone made before the restarts is as stable as the original.
        let clone: probe::Client = p.client().clone();
        for n in 1..=3 {
            assert!(p.kill());
            // Calls made at once wait for the new incarnation.
            let mut req = clone.echo_request();
            req.get().set_data(b"again");
            let reply = within(LIMIT, req.send().promise).await.unwrap();
            assert_eq!(reply.get().unwrap().get_data().unwrap(), b"again");
            eventually(LIMIT, || p.restarts() == n).await;
        }
    });
}

#[test]
fn a_pipelined_chain_through_a_stable_capability_is_one_round_trip() {
    each(&[Transport::Virtual], |h| async move {
        let l = Duration::from_millis(30);
        let rtt = 2 * l;
        let mut opts = VirtualOptions::default();
        opts.link = LinkConditions::default();
        opts.link.latency = l;
        let sup = Supervisor::new();
        let spec =
            ChildSpec::<probe::Client>::virtual_on("p", h.rt.clone(), || Probe::new("p"), opts);
        let p = within(LIMIT, sup.spawn(spec)).await.unwrap();
        for round in 0..2 {
            ping(&p, LIMIT).await;
            // counter(), then ten dependent next() calls, all pipelined.
            let start = Instant::now();
            let mut req = p.counter_request();
            req.get().set_start(0);
            let counter = req.send().pipeline.get_counter();
            let calls: Vec<_> = (0..10)
                .map(|_| counter.next_request().send().promise)
                .collect();
            let mut values = Vec::new();
            for c in calls {
                values.push(within(LIMIT, c).await.unwrap().get().unwrap().get_value());
            }
            let took = start.elapsed();
            assert_eq!(values, (0..10).collect::<Vec<_>>());
            eprintln!("round {round}: 11 pipelined calls in {took:?} (one round trip is {rtt:?})");
            // Awaiting each would take 11 round trips.
            assert!(
                took < 4 * rtt,
                "{took:?} for a chain; one round trip is {rtt:?}"
            );
            // The second round runs on a restarted incarnation.
            assert!(p.kill());
        }
    });
}

#[test]
fn a_named_tensor_is_loadable_after_a_restart_and_an_unnamed_one_is_gone() {
    each(&ALL, |h| async move {
        // What outlives an incarnation lives in the state its factory captures.
        let state = WorkerState::new(Quota::new(64 << 20));
        let s = state.clone();
        let sup = Supervisor::new();
        let spec = supervised::spec::<tensor_worker::Client, _, _>(&h, "w", move || {
            TensorWorker::with_state("w", s.clone())
        });
        let t = within(LIMIT, sup.spawn(spec)).await.unwrap();
        let w = Worker::new(t.client().clone());
        let named = w.ones(DType::F32, &[8]);
        within(LIMIT, w.store("weights", &named, None))
            .await
            .unwrap();
        let unnamed = w.ones(DType::F32, &[4]);
        assert_eq!(within(LIMIT, unnamed.item_sum()).await.unwrap(), 4.0);

        assert!(t.kill());
        eventually(LIMIT, || t.restarts() == 1 && t.is_running()).await;

        // The same Worker value reaches the new incarnation; the named
        // tensor stayed with the worker's state.
        let again = w.load("weights");
        assert_eq!(within(LIMIT, again.item_sum()).await.unwrap(), 8.0);
        // Pipelined through the stable capability: one round trip each.
        let before = w.round_trips();
        let sum = within(LIMIT, w.load("weights").relu().sum().item())
            .await
            .unwrap();
        assert_eq!((sum, w.round_trips() - before), (8.0, 1));
        // A tensor of the old incarnation died with it.
        let err = within(LIMIT, unnamed.item_sum()).await.err().unwrap();
        let err: capnp::Error = err.into();
        assert_disconnected(&err);
    });
}
