//! Bad tensor requests get a clear error naming the op, through pipelines,
//! and the worker keeps serving.

mod common;

use std::time::Duration;

use capactor::actors::tensor::{DType, Quota, TensorWorker, Worker};
use capactor::schema::tensor_capnp::tensor_worker;
use common::{each, within, Harness, Spawned, ALL};
use ndarray::array;

const LIMIT: Duration = Duration::from_secs(30);

async fn worker(h: &Harness, quota: u64) -> (Spawned<tensor_worker::Client>, Worker) {
    let q = Quota::new(quota);
    let s = h
        .spawn::<tensor_worker::Client, _, _>(move || TensorWorker::new("t", q.clone()))
        .await;
    let w = Worker::new(s.client.clone());
    (s, w)
}

async fn error_of(t: &capactor::actors::tensor::RemoteTensor) -> String {
    let e = within(LIMIT, t.to_array())
        .await
        .expect_err("expected an error");
    e.to_string()
}

async fn still_serves(w: &Worker) {
    let x = w.tensor(&array![1i32, 2, 3].into_dyn());
    assert_eq!(within(LIMIT, x.sum().item()).await.unwrap(), 6.0);
}

#[test]
fn an_error_mid_chain_surfaces_at_the_first_await_naming_the_op() {
    each(&ALL, |h| async move {
        let (_s, w) = worker(&h, 1 << 30).await;
        let x = w.tensor(&array![[1.0f32, 2.0, 3.0], [4.0, 5.0, 6.0]].into_dyn());
        let bad = w.tensor(&array![1.0f32, 2.0].into_dyn());
        let chain = x.relu().matmul(&bad).add_scalar(1.0).sigmoid().sum();
        let msg = error_of(&chain).await;
        assert!(
            msg.contains("matmul") && msg.contains("[2, 3]") && msg.contains("[2]"),
            "{msg}"
        );
        still_serves(&w).await;
    });
}

#[test]
fn each_kind_of_bad_request_gets_a_clear_message() {
    each(&ALL, |h| async move {
        let (_s, w) = worker(&h, 1 << 30).await;
        let f = w.tensor(&array![1.0f32, 2.0].into_dyn());
        let d = w.tensor(&array![1.0f64, 2.0].into_dyn());
        let i = w.tensor(&array![1i32, 2].into_dyn());
        let zero = w.tensor(&array![0i32, 1].into_dyn());

        let cases: Vec<(capactor::actors::tensor::RemoteTensor, &[&str])> = vec![
            // Mixed dtypes promote; an op refusing the dtype names both.
            (
                f.cast(DType::Bool).sub(&d.cast(DType::Bool)),
                &["sub", "bool"],
            ),
            (
                d.add_scalar(1.5).cast(DType::U8).add_scalar(-1),
                &["add", "-1", "u8"],
            ),
            (i.div(&zero), &["division by zero"]),
            (f.sum_axis(3, false), &["axis 3", "out of range"]),
            (f.exp().cast(DType::I32).exp(), &["exp", "i32"]),
            (f.reshape(&[3, -1]), &["reshape"]),
            (w.zeros(DType::F32, &[1 << 40, 1 << 40]), &["too large"]),
        ];
        for (t, words) in cases {
            let msg = error_of(&t).await;
            for word in words {
                assert!(msg.contains(word), "{msg:?} should mention {word:?}");
            }
        }
        still_serves(&w).await;
    });
}

#[test]
fn malformed_tensor_data_is_rejected() {
    each(&ALL, |h| async move {
        let (_s, w) = worker(&h, 1 << 30).await;
        // Data shorter than the shape says.
        let mut req = w.client().from_data_request();
        {
            let mut d = req.get().init_data();
            d.set_dtype(capactor::schema::tensor_capnp::DType::F32);
            d.set_shape(&[2u64, 3][..]).unwrap();
            d.set_data(&[0u8; 20]);
        }
        let e = within(LIMIT, req.send().promise).await.err().unwrap();
        assert!(
            e.extra.contains("data has 20 bytes") && e.extra.contains("24"),
            "{e}"
        );

        // A shape whose product overflows.
        let mut req = w.client().from_data_request();
        {
            let mut d = req.get().init_data();
            d.set_dtype(capactor::schema::tensor_capnp::DType::F64);
            d.set_shape(&[u64::MAX, 3][..]).unwrap();
        }
        let e = within(LIMIT, req.send().promise).await.err().unwrap();
        assert!(e.extra.contains("too large"), "{e}");

        // An unknown dtype tag, written as the raw enum value.
        let mut req = w.client().from_data_request();
        {
            let d = req.get().init_data();
            let dv: capnp::dynamic_value::Builder<'_> = d.into();
            let mut dynamic = dv.downcast::<capnp::dynamic_struct::Builder<'_>>();
            let field = dynamic.get_schema().get_field_by_name("dtype").unwrap();
            let schema = match field.get_type().which() {
                capnp::introspect::TypeVariant::Enum(e) => e,
                _ => unreachable!("dtype is an enum"),
            };
            dynamic
                .set(
                    field,
                    capnp::dynamic_value::Enum::new(77, schema.into()).into(),
                )
                .unwrap();
        }
        let e = within(LIMIT, req.send().promise).await.err().unwrap();
        assert!(e.extra.contains("unknown dtype tag 77"), "{e}");
        still_serves(&w).await;
    });
}

#[test]
fn an_allocation_over_the_quota_fails_and_the_worker_keeps_serving() {
    each(&ALL, |h| async move {
        let (_s, w) = worker(&h, 1 << 20).await;
        let big = w.zeros(DType::F32, &[1024, 1024]); // 4 MiB > 1 MiB
        let msg = error_of(&big).await;
        assert!(
            msg.contains("worker memory limit exceeded: 4194304 > 1048576"),
            "{msg}"
        );
        // Within the quota, fine.
        let ok = w.zeros(DType::F32, &[128, 128]);
        assert_eq!(within(LIMIT, ok.shape()).await.unwrap(), vec![128, 128]);
        still_serves(&w).await;
    });
}

#[test]
fn an_integer_arange_past_its_dtype_is_refused_not_saturated() {
    each(&ALL, |h| async move {
        let (_s, w) = worker(&h, 1 << 30).await;
        let msg = error_of(&w.arange(DType::I32, 2147483646.0, 2147483650.0, 1.0)).await;
        assert!(
            msg.contains("arange:") && msg.contains("2147483649") && msg.contains("i32"),
            "{msg}"
        );
        let msg = error_of(&w.arange(DType::I32, -2147483650.0, 0.0, 1.0)).await;
        assert!(msg.contains("arange:") && msg.contains("index 0"), "{msg}");
        let msg = error_of(&w.arange(DType::I64, 0.0, 1.1e19, 2e18)).await;
        assert!(msg.contains("arange:") && msg.contains("i64"), "{msg}");
        // The ends of the range are fine.
        let edge = w.arange(DType::I32, 2147483645.0, 2147483648.0, 1.0);
        let got = within(LIMIT, edge.to_ndarray::<i32>()).await.unwrap();
        assert_eq!(
            got.into_raw_vec_and_offset().0,
            [2147483645, 2147483646, 2147483647]
        );
        still_serves(&w).await;
    });
}

#[test]
fn select_errors_are_named_select_as_in_the_schema() {
    each(&ALL, |h| async move {
        let (_s, w) = worker(&h, 1 << 30).await;
        let cond = w.tensor(&array![true, false].into_dyn());
        let f = w.tensor(&array![1.0f32, 2.0].into_dyn());
        let long = w.tensor(&array![1.0f32, 2.0, 3.0].into_dyn());
        for (t, words) in [
            (f.select(&f, &f), &["bool", "f32"][..]),
            (cond.select(&f, &long), &["[2]", "[3]"][..]),
        ] {
            let msg = error_of(&t).await;
            assert!(msg.contains("select:"), "{msg}");
            assert!(!msg.contains("where"), "{msg}");
            for word in words {
                assert!(msg.contains(word), "{msg:?} should mention {word:?}");
            }
        }
        still_serves(&w).await;
    });
}
