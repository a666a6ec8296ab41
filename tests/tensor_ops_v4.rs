//! The tensor ops of schema version 4 over every transport, through the
//! Rust client, pipelined: values checked against hand-computed NumPy
//! results, and bad input failing only its own call with the op's name.

mod common;

use std::time::Duration;

use capactor::actors::tensor::ops::ReduceOp;
use capactor::actors::tensor::{DType, Quota, RemoteTensor, Scalar, TensorWorker, Worker};
use capactor::schema::tensor_capnp::tensor_worker;
use common::{each, within, ALL};
use ndarray::{array, ArrayD};

const LIMIT: Duration = Duration::from_secs(30);

async fn f64s(t: &RemoteTensor) -> ArrayD<f64> {
    within(LIMIT, t.to_ndarray::<f64>()).await.unwrap()
}

async fn close(t: &RemoteTensor, want: &[f64]) {
    let got = f64s(t).await;
    let got: Vec<f64> = got.iter().copied().collect();
    assert_eq!(got.len(), want.len(), "{got:?}");
    for (g, w) in got.iter().zip(want) {
        assert!(
            (g - w).abs() < 1e-9 || (g.is_nan() && w.is_nan()),
            "{got:?} vs {want:?}"
        );
    }
}

#[test]
fn schema_v4_ops_pipeline_and_match_numpy() {
    each(&ALL, |h| async move {
        let q = Quota::new(1 << 26);
        let s = h
            .spawn::<tensor_worker::Client, _, _>(move || TensorWorker::new("t", q.clone()))
            .await;
        let w = Worker::new(s.client.clone());
        let x = w.tensor(&array![[1.0f64, 2.0, 3.0], [-1.0, 0.5, 4.0]].into_dyn());
        let i = w.tensor(&array![-7i64, 7, -7, 7].into_dyn());
        let d = w.tensor(&array![2i64, -2, -2, 2].into_dyn());
        // Sent at once; awaited at the end.
        let softmax = x.softmax(-1);
        let log_softmax = x.log_softmax(0);
        let cumsum = x.cumsum(1);
        let cumprod = i.cumprod(0);
        let var = x.var(Some(1), 1);
        let std = x.std(None, 0);
        let l2 = x.norm(ReduceOp::NormL2, Some(0));
        let clip = x.clip(Some(Scalar::Float(0.0)), Some(Scalar::Float(2.5)));
        let modulo = i.modulo(&d);
        let floor_div = i.floor_divide(&d);
        let any = x.gt_scalar(3.5).any(Some(1));
        let rounded = x.mul_scalar(0.5).round();

        let e = |v: f64| v.exp();
        let s0 = e(1.0) + e(2.0) + e(3.0);
        let s1 = e(-1.0) + e(0.5) + e(4.0);
        close(
            &softmax,
            &[
                e(1.0) / s0,
                e(2.0) / s0,
                e(3.0) / s0,
                e(-1.0) / s1,
                e(0.5) / s1,
                e(4.0) / s1,
            ],
        )
        .await;
        let ls = |a: f64, b: f64| {
            let m = a.max(b);
            (a - m) - (e(a - m) + e(b - m)).ln()
        };
        close(
            &log_softmax,
            &[
                ls(1.0, -1.0),
                ls(2.0, 0.5),
                ls(3.0, 4.0),
                ls(-1.0, 1.0),
                ls(0.5, 2.0),
                ls(4.0, 3.0),
            ],
        )
        .await;
        close(&cumsum, &[1.0, 3.0, 6.0, -1.0, -0.5, 3.5]).await;
        let cp = within(LIMIT, cumprod.to_ndarray::<i64>()).await.unwrap();
        assert_eq!(cp.into_raw_vec_and_offset().0, [-7, -49, 343, 2401]);
        close(&var, &[1.0, 79.0 / 12.0]).await;
        // np.std([1, 2, 3, -1, 0.5, 4])
        let all = [1.0, 2.0, 3.0, -1.0, 0.5, 4.0];
        let mean = all.iter().sum::<f64>() / 6.0;
        let sd = (all.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / 6.0).sqrt();
        close(&std, &[sd]).await;
        close(&l2, &[2f64.sqrt(), 4.25f64.sqrt(), 5.0]).await;
        close(&clip, &[1.0, 2.0, 2.5, 0.0, 0.5, 2.5]).await;
        // NumPy: np.mod([-7, 7, -7, 7], [2, -2, -2, 2]), np.floor_divide(...)
        let m = within(LIMIT, modulo.to_ndarray::<i64>()).await.unwrap();
        assert_eq!(m.into_raw_vec_and_offset().0, [1, -1, -1, 1]);
        let q = within(LIMIT, floor_div.to_ndarray::<i64>()).await.unwrap();
        assert_eq!(q.into_raw_vec_and_offset().0, [-4, -4, 3, 3]);
        let a = within(LIMIT, any.to_ndarray::<bool>()).await.unwrap();
        assert_eq!(a.into_raw_vec_and_offset().0, [false, true]);
        // Half to even: 0.5 -> 0, 1.5 -> 2, -0.5 -> -0, 0.25 -> 0, 2 -> 2.
        close(&rounded, &[0.0, 1.0, 2.0, -0.0, 0.0, 2.0]).await;

        // Bad input fails only its call, naming the op.
        let zero = w.tensor(&array![1i64, 0, 1, 1].into_dyn());
        for (t, words) in [
            (i.softmax(0), &["softmax:", "i64"][..]),
            (i.modulo(&zero), &["mod:", "division by zero"][..]),
            (x.cumsum(5), &["cumsum:", "axis 5"][..]),
            (
                i.clip(Some(Scalar::Float(0.5)), None),
                &["clip:", "0.5"][..],
            ),
            // f64 with i64 promotes (to f64) and fails on the shapes.
            (x.floor_divide(&i), &["floorDivide:", "[2, 3]", "[4]"][..]),
            (
                x.cast(DType::Bool).floor_divide(&x.cast(DType::Bool)),
                &["floorDivide:", "bool"][..],
            ),
        ] {
            let msg = within(LIMIT, t.to_array()).await.unwrap_err().to_string();
            for word in words {
                assert!(msg.contains(word), "{msg:?} should mention {word:?}");
            }
        }
        close(&x.sum(), &[9.5]).await;
    });
}
