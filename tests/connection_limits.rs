//! Per-connection limits: calls in flight and memory, over virtual and TCP.
//! One connection hitting its limit leaves the others untouched.

mod common;

use std::time::Duration;

use capactor::actors::tensor::{DType, TensorWorker, Worker};
use capactor::actors::Probe;
use capactor::schema::probe_capnp::probe;
use capactor::schema::tensor_capnp::tensor_worker;
use capactor::{ConnectOptions, LinkConditions, Quota, ServeOptions};
use common::{each, ping, sleep_call, within, REMOTE};

const LIMIT: Duration = Duration::from_secs(20);

fn limited(f: impl Fn(&mut capactor::Limits)) -> (ServeOptions, ConnectOptions) {
    let mut serve = ServeOptions::default();
    let mut connect = ConnectOptions::default();
    f(&mut serve.limits);
    f(&mut connect.limits);
    (serve, connect)
}

#[test]
fn a_connection_over_its_calls_in_flight_gets_overloaded() {
    each(&REMOTE, |h| async move {
        let (serve, connect) = limited(|l| l.max_calls_in_flight = 4);
        let p = h
            .spawn_with::<probe::Client, _, _>(
                || Probe::new("p"),
                LinkConditions::default(),
                serve,
                connect,
            )
            .await;
        let sleeping: Vec<_> = (0..4).map(|_| sleep_call(&p, 300)).collect();
        let mut req = p.echo_request();
        req.get().set_data(b"one too many");
        let err = within(LIMIT, req.send().promise)
            .await
            .err()
            .expect("refused");
        assert_eq!(err.kind, capnp::ErrorKind::Overloaded, "{err}");
        assert!(
            err.extra.contains("calls in flight limit exceeded: 5 > 4"),
            "{err}"
        );
        for s in sleeping {
            within(LIMIT, s).await.unwrap();
        }
        // Below the limit again.
        ping(&p, LIMIT).await;
    });
}

#[test]
fn a_connection_over_its_memory_fails_while_others_allocate() {
    each(&REMOTE, |h| async move {
        let (serve, connect) = limited(|l| l.max_connection_memory = Some(1 << 20));
        let quota = Quota::new(1 << 30);
        let q = quota.clone();
        let s = h
            .spawn_with::<tensor_worker::Client, _, _>(
                move || TensorWorker::new("t", q.clone()),
                LinkConditions::default(),
                serve,
                connect,
            )
            .await;
        let w = Worker::new(s.client.clone());
        let small = w.zeros(DType::F32, &[128, 128]); // 64 KiB
        within(LIMIT, small.shape()).await.unwrap();
        let big = w.zeros(DType::F32, &[512, 512]); // 1 MiB more: over
        let err = within(LIMIT, big.shape()).await.unwrap_err();
        assert!(
            err.to_string().contains("connection memory limit exceeded"),
            "{err}"
        );
        // The worker's own quota is far from full: only this connection is held back.
        assert_eq!(quota.used(), 128 * 128 * 4);
        drop(small);
        common::until(|| quota.used() == 0).await;
        let fits = w.zeros(DType::F32, &[500, 500]);
        within(LIMIT, fits.shape()).await.unwrap();
    });
}
