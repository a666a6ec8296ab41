//! A tensor argument that is the failed result of an earlier pipelined op
//! fails the call that uses it with that op's own error, as PROTOCOL.md
//! promises ("one await at the end of a chain reports the first failure"),
//! and `fetch` of a failed source reports the source's error once, without
//! a doubled "remote exception:" prefix.
//!
//! Over the remote transports only: capnp-rpc's in-process pipelines
//! replace a failed call's error with "PipelineInnerSender was canceled"
//! in the pipelined capabilities before any worker sees them.

mod common;

use std::time::Duration;

use capactor::actors::tensor::{Quota, RemoteTensor, TensorWorker, Worker};
use capactor::schema::tensor_capnp::tensor_worker;
use common::{each, within, Harness, Spawned, REMOTE};
use ndarray::array;

const LIMIT: Duration = Duration::from_secs(30);

async fn worker(h: &Harness) -> (Spawned<tensor_worker::Client>, Worker) {
    let q = Quota::new(1 << 30);
    let s = h
        .spawn::<tensor_worker::Client, _, _>(move || TensorWorker::new("t", q.clone()))
        .await;
    let w = Worker::new(s.client.clone());
    (s, w)
}

async fn error_of(t: &RemoteTensor) -> String {
    within(LIMIT, t.to_array())
        .await
        .expect_err("expected an error")
        .to_string()
}

/// The matmul error every case below must report.
fn is_matmul_error(msg: &str) -> bool {
    msg.contains("matmul") && msg.contains("[2, 3]") && msg.contains("[2]")
}

#[test]
fn a_failed_pipelined_argument_fails_each_op_with_the_first_error() {
    each(&REMOTE, |h| async move {
        let (_s, w) = worker(&h).await;
        let a = w.tensor(&array![[1.0f32, 2.0, 3.0], [4.0, 5.0, 6.0]].into_dyn());
        let bad = w.tensor(&array![1.0f32, 2.0].into_dyn());
        let failed = a.matmul(&bad);
        let cond = w.tensor(&array![true, false].into_dyn());
        // Once with the failure still a promise on the worker, once after
        // the client has seen it fail: the client then sends the broken
        // promise back as a capability it hosts itself, as libcapnp does.
        for awaited in [false, true] {
            if awaited {
                error_of(&failed).await;
            }
            let cases: Vec<(&str, RemoteTensor)> = vec![
                ("binary", a.add(&failed)),
                ("matmul", a.matmul(&failed)),
                ("compare", a.lt(&failed)),
                ("select (ifTrue)", cond.select(&failed, &bad)),
                ("select (ifFalse)", cond.select(&bad, &failed)),
                ("select (condition)", failed.select(&bad, &bad)),
                ("concat", w.concat(&[&a, &failed], 0)),
                ("fetch", failed.copy_to(&w)),
            ];
            let mut wrong = Vec::new();
            for (what, t) in cases {
                let msg = error_of(&t).await;
                if !is_matmul_error(&msg) || msg.contains("another worker") {
                    wrong.push(format!("{what}: {msg}"));
                }
            }
            assert!(wrong.is_empty(), "awaited first: {awaited}: {wrong:#?}");
        }
        // The worker goes on serving.
        let ok = a.add(&a).sum();
        assert_eq!(within(LIMIT, ok.item()).await.unwrap(), 42.0);
    });
}

#[test]
fn fetch_of_a_failed_source_reports_its_error_with_one_prefix_at_most() {
    each(&REMOTE, |h| async move {
        let (_s1, w1) = worker(&h).await;
        let (_s2, w2) = worker(&h).await;
        let a = w1.tensor(&array![[1.0f32, 2.0, 3.0], [4.0, 5.0, 6.0]].into_dyn());
        let bad = w1.tensor(&array![1.0f32, 2.0].into_dyn());
        let failed = a.matmul(&bad);
        for t in [failed.copy_to(&w2), failed.clone().move_to(&w2)] {
            let msg = error_of(&t).await;
            assert!(is_matmul_error(&msg), "{msg}");
            assert!(
                msg.matches("remote exception").count() <= 1,
                "the prefix is doubled: {msg}"
            );
        }
        // An already-taken source.
        let src = w1.tensor(&array![1.0f32, 2.0].into_dyn());
        let moved = src.clone().move_to(&w2);
        within(LIMIT, moved.to_array()).await.unwrap();
        let msg = error_of(&src.copy_to(&w2)).await;
        assert!(msg.contains("moved"), "{msg}");
        assert!(
            msg.matches("remote exception").count() <= 1,
            "the prefix is doubled: {msg}"
        );
    });
}
