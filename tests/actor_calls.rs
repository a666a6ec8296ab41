//! Calls, pipelining, errors, panics, cancellation and capability release,
//! each checked over the local, virtual and TCP transports.

mod common;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use capactor::actor::ACTOR;
use capactor::actors::{Probe, PROBE};
use capactor::schema::actor_capnp::actor;
use capactor::schema::probe_capnp::probe;
use common::{each, within, ALL, REMOTE};

fn base(p: &probe::Client) -> actor::Client {
    capactor::cast(p)
}

const LIMIT: Duration = Duration::from_secs(20);

#[test]
fn ping_and_info_answer_over_every_transport() {
    each(&ALL, |h| async move {
        let p = h.probe().await;
        within(LIMIT, base(&p).ping_request().send().promise)
            .await
            .unwrap();
        let reply = within(LIMIT, base(&p).info_request().send().promise)
            .await
            .unwrap();
        let info = reply.get().unwrap().get_info().unwrap();
        assert_eq!(info.get_name().unwrap().to_str().unwrap(), "probe");
        assert_eq!(info.get_kind().unwrap().to_str().unwrap(), "probe");
        assert_eq!(
            info.get_schema_version(),
            capactor::schema::actor_capnp::SCHEMA_VERSION
        );
        let ifaces: Vec<(u64, String)> = info
            .get_interfaces()
            .unwrap()
            .iter()
            .map(|i| (i.get_id(), i.get_name().unwrap().to_string().unwrap()))
            .collect();
        assert_eq!(
            ifaces,
            vec![
                (PROBE.id, "Probe".to_string()),
                (ACTOR.id, "Actor".to_string())
            ]
        );
        // The info call itself is in flight while it is answered.
        assert_eq!(info.get_calls_in_flight(), 1);
    });
}

#[test]
fn echo_returns_the_bytes_it_was_given() {
    each(&ALL, |h| async move {
        let p = h.probe().await;
        let payload: Vec<u8> = (0..100_000u32).map(|i| (i * 7) as u8).collect();
        let mut req = p.echo_request();
        req.get().set_data(&payload);
        let reply = within(LIMIT, req.send().promise).await.unwrap();
        assert_eq!(reply.get().unwrap().get_data().unwrap(), &payload[..]);
    });
}

#[test]
fn pipelined_calls_run_on_a_capability_not_yet_returned() {
    each(&ALL, |h| async move {
        let p = h.probe().await;
        let mut req = p.counter_request();
        req.get().set_start(10);
        let counter = req.send().pipeline.get_counter();
        // Three calls on the promised counter, sent before it exists.
        let calls: Vec<_> = (0..3)
            .map(|_| counter.next_request().send().promise)
            .collect();
        let mut values = Vec::new();
        for c in calls {
            values.push(within(LIMIT, c).await.unwrap().get().unwrap().get_value());
        }
        assert_eq!(values, vec![10, 11, 12]);
    });
}

#[test]
fn an_error_reaches_the_caller_with_its_message_and_kind() {
    each(&ALL, |h| async move {
        let p = h.probe().await;
        let mut req = p.fail_request();
        req.get().set_message("bad shape [2, 3]");
        let err = within(LIMIT, req.send().promise).await.err().unwrap();
        assert_eq!(err.kind, capnp::ErrorKind::Failed);
        assert!(err.extra.contains("bad shape [2, 3]"), "{err}");
        // The actor keeps serving.
        within(LIMIT, base(&p).ping_request().send().promise)
            .await
            .unwrap();
    });
}

#[test]
fn an_error_propagates_through_a_pipeline() {
    each(&ALL, |h| async move {
        let p = h.probe().await;
        let mut req = p.counter_request();
        req.get().set_start(-1);
        let counter = req.send().pipeline.get_counter();
        // A call pipelined on the result of a failed call fails with the
        // first call's error, naming what went wrong.
        let err = within(LIMIT, counter.next_request().send().promise)
            .await
            .err()
            .unwrap();
        assert_eq!(err.kind, capnp::ErrorKind::Failed);
        assert!(
            err.extra
                .contains("counter: start must not be negative, got -1"),
            "{err}"
        );
    });
}

#[test]
fn a_panic_fails_only_that_call() {
    each(&ALL, |h| async move {
        let p = h.probe().await;
        let err = within(LIMIT, p.panic_request().send().promise)
            .await
            .err()
            .unwrap();
        assert_eq!(err.kind, capnp::ErrorKind::Failed);
        assert!(err.extra.contains("internal error (id "), "{err}");
        assert!(
            !err.extra.contains("probe asked to panic"),
            "panic text leaked: {err}"
        );
        // Same actor, same vat: still serving.
        within(LIMIT, base(&p).ping_request().send().promise)
            .await
            .unwrap();
        let mut req = p.counter_request();
        req.get().set_start(1);
        let c = req.send().pipeline.get_counter();
        let v = within(LIMIT, c.next_request().send().promise)
            .await
            .unwrap();
        assert_eq!(v.get().unwrap().get_value(), 1);
    });
}

#[test]
fn an_unimplemented_method_answers_unimplemented() {
    each(&ALL, |h| async move {
        let p = h.probe().await;
        // Call a method id the Probe interface does not have.
        let req = p
            .client
            .client
            .new_call::<capnp::any_pointer::Owned, capnp::any_pointer::Owned>(PROBE.id, 999, None);
        let err = within(LIMIT, req.send().promise).await.err().unwrap();
        assert_eq!(err.kind, capnp::ErrorKind::Unimplemented);
        within(LIMIT, base(&p).ping_request().send().promise)
            .await
            .unwrap();
    });
}

#[test]
fn dropping_a_call_cancels_it_on_the_actor() {
    each(&ALL, |h| async move {
        let p = h.probe().await;
        let mut req = p.sleep_request();
        req.get().set_millis(60_000);
        let mut sleeping = req.send().promise;
        // Make sure the sleep has started before dropping it. A local call
        // starts when its promise is first polled; a remote one when sent,
        // and a later call on the same capability is delivered after it.
        assert!(futures::poll!(&mut sleeping).is_pending());
        within(LIMIT, base(&p).ping_request().send().promise)
            .await
            .unwrap();
        drop(sleeping);
        within(LIMIT, async {
            loop {
                let s = p.stats_request().send().promise.await.unwrap();
                if s.get().unwrap().get_cancelled_sleeps() == 1 {
                    break;
                }
                tokio::task::yield_now().await;
            }
        })
        .await;
    });
}

#[test]
fn dropping_the_last_reference_frees_the_object() {
    each(&ALL, |h| async move {
        let p = h.probe().await;
        let live = |p: &capactor::schema::probe_capnp::probe::Client| {
            let req = p.stats_request().send().promise;
            async move { req.await.unwrap().get().unwrap().get_live_counters() }
        };
        let mut req = p.counter_request();
        req.get().set_start(0);
        let reply = within(LIMIT, req.send().promise).await.unwrap();
        let counter = reply.get().unwrap().get_counter().unwrap();
        let twin = counter.clone();
        drop(reply);
        assert_eq!(within(LIMIT, live(&p)).await, 1);
        drop(counter);
        within(LIMIT, twin.next_request().send().promise)
            .await
            .unwrap();
        assert_eq!(
            within(LIMIT, live(&p)).await,
            1,
            "one reference is still held"
        );
        drop(twin);
        within(LIMIT, async {
            while live(&p).await != 0 {
                tokio::task::yield_now().await;
            }
        })
        .await;
    });
}

#[test]
fn calls_on_one_capability_are_delivered_in_order() {
    each(&ALL, |h| async move {
        let p = h.probe().await;
        let mut req = p.counter_request();
        req.get().set_start(0);
        let c = req.send().pipeline.get_counter();
        let calls: Vec<_> = (0..200).map(|_| c.next_request().send().promise).collect();
        let values: Vec<i64> = futures::future::join_all(calls)
            .await
            .into_iter()
            .map(|r| r.unwrap().get().unwrap().get_value())
            .collect();
        assert_eq!(values, (0..200).collect::<Vec<_>>());
    });
}

#[test]
fn freeing_on_disconnect_releases_what_the_client_held() {
    each(&REMOTE, |h| async move {
        let live = Arc::new(AtomicU32::new(0));
        let shared = live.clone();
        let p = h
            .spawn::<probe::Client, _, _>(move || Probe::counting("probe", shared.clone()))
            .await;
        let mut held = Vec::new();
        for start in 0..3 {
            let mut req = p.counter_request();
            req.get().set_start(start);
            let c = req.send().pipeline.get_counter();
            within(LIMIT, c.next_request().send().promise)
                .await
                .unwrap();
            held.push(c);
        }
        assert_eq!(live.load(Ordering::Relaxed), 3);
        // The client goes away without releasing anything.
        let conn = p.conn.as_ref().unwrap().link().clone();
        drop(p);
        within(LIMIT, conn.closed()).await;
        within(LIMIT, async {
            while live.load(Ordering::Relaxed) != 0 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
        .await;
        drop(held);
    });
}
