//! The tensor ops of schema version 4 over every transport, through the
//! Rust client, pipelined: values checked against hand-computed NumPy
//! results, and bad input failing only its own call with the op's name
//! (and, for the shape ops, the offending shapes).
mod common;

use std::time::Duration;

use capactor::actors::tensor::ops::{ReduceOp, SliceSpec};
use capactor::actors::tensor::{DType, Quota, RemoteTensor, Scalar, TensorWorker, Worker};
use capactor::schema::tensor_capnp::tensor_worker;
use common::{each, within, ALL, REMOTE};
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

async fn i64s(t: &RemoteTensor) -> Vec<i64> {
    let a = within(LIMIT, t.to_ndarray::<i64>()).await.unwrap();
    a.into_raw_vec_and_offset().0
}

async fn error_of(t: &RemoteTensor) -> String {
    within(LIMIT, t.to_array()).await.unwrap_err().to_string()
}

fn spec(start: Option<i64>, stop: Option<i64>, step: i64) -> SliceSpec {
    SliceSpec::new(start, stop, step)
}

#[test]
fn indexing_ops_pipeline_and_match_numpy() {
    each(&ALL, |h| async move {
        let q = Quota::new(1 << 26);
        let s = h
            .spawn::<tensor_worker::Client, _, _>(move || TensorWorker::new("t", q.clone()))
            .await;
        let w = Worker::new(s.client.clone());
        // x = np.arange(12.).reshape(3, 4)
        let x = w.arange(DType::F64, 0.0, 12.0, 1.0).reshape(&[3, 4]);
        let idx = w.tensor(&array![[3i64, -4], [0, 1], [-1, -1]].into_dyn());
        let rows = w.tensor(&array![2i32, 0, 2].into_dyn());
        // All sent before the first answer.
        let along = x.take_along_axis(&idx, 1);
        let taken = x.index_select(&rows, 0);
        let picked = x.mask_select(&x.gt_scalar(6.5));
        let row_mask = x.mask_select(&w.tensor(&array![false, true, true].into_dyn()));
        let z = w.full(DType::I64, &[2, 3], 0i64);
        let at = w.tensor(&array![[0i64, 0], [2, -1]].into_dyn());
        let vals = w.tensor(&array![[1i64, 2], [3, 4]].into_dyn());
        let scattered = z.scatter(&at, &vals, 1);
        let added = z.scatter_add(&at, &vals, 1);

        // np.take_along_axis(x, idx, 1)
        close(&along, &[3.0, 0.0, 4.0, 5.0, 11.0, 11.0]).await;
        // np.take(x, [2, 0, 2], 0)
        let want: Vec<f64> = [8., 9., 10., 11., 0., 1., 2., 3., 8., 9., 10., 11.].to_vec();
        close(&taken, &want).await;
        close(&picked, &[7.0, 8.0, 9.0, 10.0, 11.0]).await;
        assert_eq!(within(LIMIT, row_mask.shape()).await.unwrap(), [2, 4]);
        close(&row_mask, &(4..12).map(f64::from).collect::<Vec<_>>()).await;
        // Repeated index 0 in row 0: the last wins, or both add up.
        assert_eq!(i64s(&scattered).await, [2, 0, 0, 0, 0, 4]);
        assert_eq!(i64s(&added).await, [3, 0, 0, 0, 0, 7]);
        assert_eq!(i64s(&z).await, [0; 6]);
        // f64 values are cast to z's i64 (np.put_along_axis casts them),
        // then broadcast to the indices' shape.
        let floats = w.tensor(&array![0.0f64, 1.9].into_dyn());
        assert_eq!(i64s(&z.scatter(&at, &floats, 1)).await, [1, 0, 0, 0, 0, 1]);

        // Bad input fails only its call, naming the op and what was wrong.
        for (t, words) in [
            (
                x.take_along_axis(&w.tensor(&array![[4i64]].into_dyn()), 1),
                &["takeAlongAxis:", "index 4", "axis 1", "size 4"][..],
            ),
            (
                x.index_select(&floats, 0),
                &["indexSelect:", "integer dtype", "f64"][..],
            ),
            (
                x.index_select(&rows, 0)
                    .index_select(&rows.add_scalar(5), -2),
                &["indexSelect:", "index 7", "axis 0", "size 3"][..],
            ),
            (
                x.mask_select(&w.tensor(&array![true, false].into_dyn())),
                &["maskSelect:", "[2]", "[3, 4]"][..],
            ),
            (
                z.scatter(&at, &w.tensor(&array![0.5f64, 1.0, 2.0].into_dyn()), 1),
                &["scatter:", "shape [3]", "[2, 2]"][..],
            ),
        ] {
            let msg = error_of(&t).await;
            for word in words {
                assert!(msg.contains(word), "{msg:?} should mention {word:?}");
            }
        }
        close(&x.sum(), &[66.0]).await;
    });
}

/// Over a connection (virtual, TCP), calls on one capability are run in
/// the order they arrive: reads sent right after an assignment, without
/// waiting for it, see it; one sent just before it does not.
#[test]
fn reads_pipelined_after_an_assignment_over_a_connection_see_it() {
    each(&REMOTE, |h| async move {
        let q = Quota::new(1 << 26);
        let s = h
            .spawn::<tensor_worker::Client, _, _>(move || TensorWorker::new("t", q.clone()))
            .await;
        let w = Worker::new(s.client.clone());
        let x = w.arange(DType::I64, 0.0, 6.0, 1.0).reshape(&[2, 3]);
        let before = x.add_scalar(0i64);
        // The value is itself a pipelined result, computed off the vat (a
        // sum over 140K elements), so the worker has to wait for it before
        // it can write.
        let ones = w.full(DType::I64, &[2, 70_000], 1i64);
        let value = ones.sum_axis(1, true).neg();
        let done = x.assign(&[spec(None, None, 1), spec(None, None, 2)], &value);
        let after = x.mul_scalar(1i64);
        let n = -70_000;
        let want = [n, 1, n, n, 4, n];
        assert_eq!(i64s(&x).await, want);
        assert_eq!(i64s(&after).await, want);
        assert_eq!(i64s(&before).await, [0, 1, 2, 3, 4, 5]);
        assert_eq!(i64s(&done).await, want);
    });
}

/// Each statement of docs/PROTOCOL.md's "Assignment" section that holds
/// on every transport.
#[test]
fn assignment_is_seen_by_every_holder_and_by_nothing_derived() {
    each(&ALL, |h| async move {
        let q = Quota::new(1 << 26);
        let s = h
            .spawn::<tensor_worker::Client, _, _>(move || TensorWorker::new("t", q.clone()))
            .await;
        let w = Worker::new(s.client.clone());
        let x = w.arange(DType::I64, 0.0, 6.0, 1.0).reshape(&[2, 3]);
        let holder = x.clone();
        // Derived before the assignment, and a named copy.
        let derived = x.add_scalar(0i64);
        let sliced = x.slice(&[spec(Some(1), None, 1)]);
        within(LIMIT, w.store("before", &x, None)).await.unwrap();
        // Made, not just sent: the local transport runs a call only once
        // something waits for it.
        within(LIMIT, derived.shape()).await.unwrap();
        within(LIMIT, sliced.shape()).await.unwrap();
        // x[:, ::2] = [[-1], [-2]]; its result answers once written (on
        // the local transport, which has no connection to order calls,
        // that is how to wait for it).
        let value = w.tensor(&array![[1i64], [2]].into_dyn()).neg();
        let done = x.assign(&[spec(None, None, 1), spec(None, None, 2)], &value);
        let want = [-1, 1, -1, -2, 4, -2];
        assert_eq!(i64s(&done).await, want);
        assert_eq!(i64s(&x).await, want);
        assert_eq!(i64s(&holder).await, want);
        assert_eq!(i64s(&derived).await, [0, 1, 2, 3, 4, 5]);
        assert_eq!(i64s(&sliced).await, [3, 4, 5]);
        assert_eq!(i64s(&w.load("before")).await, [0, 1, 2, 3, 4, 5]);
        // Writing through the named copy changes neither.
        let again = w.load("before");
        let one = w.full(DType::I64, &[], 1i64);
        assert_eq!(i64s(&again.assign(&[], &one)).await, [1; 6]);
        assert_eq!(i64s(&w.load("before")).await, [0, 1, 2, 3, 4, 5]);
        assert_eq!(i64s(&x).await, want);

        // Values made from the target itself, all sent at once while the
        // target is still a promise: y[:1] = y[2:] + 10, then y = y + [1, 1, 1],
        // which reads y as an argument of another tensor's op.
        let y = w.arange(DType::I64, 0.0, 3.0, 1.0);
        let tail = y.slice(&[spec(Some(2), None, 1)]).add_scalar(10i64);
        let first = y.assign(&[spec(None, Some(1), 1)], &tail);
        let ones = w.full(DType::I64, &[3], 1i64);
        let sum = ones.add(&first);
        let second = y.assign(&[], &sum);
        assert_eq!(i64s(&second).await, [13, 2, 3]);
        assert_eq!(i64s(&y).await, [13, 2, 3]);
        // y = ones + y, y read as an argument (as it is when the add runs):
        // it completes, with no wait on y's own turn.
        let third = y.assign(&[], &ones.add(&y));
        assert_eq!(i64s(&third).await, [14, 3, 4]);

        // A large tensor shared with a named copy: the copy is written off
        // the vat (past 64K elements), the named one keeps its contents.
        let big = w.full(DType::I64, &[70_000], 1i64);
        within(LIMIT, w.store("big", &big, None)).await.unwrap();
        let set = big.assign(&[spec(Some(-10), None, 1)], &w.full(DType::I64, &[], 2i64));
        assert_eq!(i64s(&set.sum()).await, [70_010]);
        assert_eq!(i64s(&w.load("big").sum()).await, [70_000]);

        // Through a mask, chained on the assignment's result.
        let odd = x.lt_scalar(0i64);
        let zeros = w.full(DType::I64, &[], 0i64);
        let masked = done.assign_mask(&odd, &zeros);
        assert_eq!(i64s(&masked).await, [0, 1, 0, 0, 4, 0]);
        assert_eq!(i64s(&x).await, [0, 1, 0, 0, 4, 0]);

        // A failed assignment fails that call, names the op and the shapes,
        // and writes nothing; the worker goes on serving.
        for (t, words) in [
            (
                x.assign(
                    &[spec(None, Some(1), 1)],
                    &w.tensor(&array![1i64, 2].into_dyn()),
                ),
                &["assign:", "shape [2]", "slice of shape [1, 3]"][..],
            ),
            (
                // Cast first (f64 to i64), then found not to broadcast.
                x.assign(&[], &w.tensor(&array![1.5f64, 2.5].into_dyn())),
                &["assign:", "shape [2]", "slice of shape [2, 3]"][..],
            ),
            (
                x.assign(&[spec(None, None, 0)], &zeros),
                &["assign:", "step"][..],
            ),
            (
                x.assign_mask(&w.tensor(&array![true].into_dyn()), &zeros),
                &["assignMask:", "[1]", "[2, 3]"][..],
            ),
            (
                x.assign_mask(&odd, &w.tensor(&array![1i64, 2].into_dyn())),
                &["assignMask:", "shape [2]", "selection of shape [4]"][..],
            ),
            (
                x.assign_mask(&zeros, &zeros),
                &["assignMask:", "bool", "i64"][..],
            ),
        ] {
            let msg = error_of(&t).await;
            for word in words {
                assert!(msg.contains(word), "{msg:?} should mention {word:?}");
            }
            assert_eq!(i64s(&x).await, [0, 1, 0, 0, 4, 0]);
        }
        // A value of another dtype is cast to the tensor's, as NumPy's
        // `x[...] = y` casts it: floats truncate toward zero into integers,
        // and a bool mask takes a float value as `!= 0`.
        let z = w.full(DType::I64, &[4], 0i64);
        let floats = w.tensor(&array![2.7f64, -1.5].into_dyn());
        let cast = z.assign(&[spec(Some(2), None, 1)], &floats);
        assert_eq!(i64s(&cast).await, [0, 0, 2, -1]);
        let flags = w.full(DType::Bool, &[3], false);
        let mask = w.tensor(&array![true, false, true].into_dyn());
        let set = flags.assign_mask(&mask, &w.full(DType::F32, &[], 0.5f32));
        assert_eq!(
            within(LIMIT, set.to_ndarray::<bool>()).await.unwrap(),
            array![true, false, true].into_dyn()
        );

        // A chain on a failed assignment reports its error.
        let bad = x.assign(&[], &w.tensor(&array![1i64, 2].into_dyn()));
        let msg = error_of(&bad.sum()).await;
        assert!(msg.contains("assign: could not broadcast"), "{msg}");
        assert_eq!(i64s(&x.sum()).await, [5]);
    });
}

#[test]
fn assignment_copies_under_the_quota_when_the_contents_are_shared() {
    each(&ALL, |h| async move {
        // Room for the tensor and a little more, not for a second copy.
        let q = Quota::new(8 * 1000 + 4000);
        let s = h
            .spawn::<tensor_worker::Client, _, _>(move || TensorWorker::new("t", q.clone()))
            .await;
        let w = Worker::new(s.client.clone());
        let x = w.full(DType::F64, &[1000], 1.0);
        let two = w.full(DType::F64, &[], 2.0);
        within(LIMIT, w.store("shared", &x, None)).await.unwrap();
        // The named copy shares the contents: writing needs a copy, and
        // there is no room for one.
        let msg = error_of(&x.assign(&[spec(None, Some(10), 1)], &two)).await;
        assert!(msg.contains("memory limit exceeded"), "{msg}");
        close(&x.sum(), &[1000.0]).await;
        // Alone again, it is written in place, within the quota.
        within(LIMIT, w.delete("shared")).await.unwrap();
        let done = x.assign(&[spec(None, Some(10), 1)], &two);
        close(&done.sum(), &[1010.0]).await;
        close(
            &x.slice(&[spec(Some(8), Some(12), 1)]),
            &[2.0, 2.0, 1.0, 1.0],
        )
        .await;
    });
}

async fn shaped_i64s(t: &RemoteTensor) -> (Vec<usize>, Vec<i64>) {
    let a = within(LIMIT, t.to_ndarray::<i64>()).await.unwrap();
    (a.shape().to_vec(), a.into_raw_vec_and_offset().0)
}

#[test]
fn shape_ops_pipeline_and_match_numpy() {
    each(&ALL, |h| async move {
        let q = Quota::new(1 << 26);
        let s = h
            .spawn::<tensor_worker::Client, _, _>(move || TensorWorker::new("t", q.clone()))
            .await;
        let w = Worker::new(s.client.clone());
        let a = w.tensor(&array![[1.0f64, 2.0, 3.0], [4.0, 5.0, 6.0]].into_dyn());
        let v = w.tensor(&array![3i64, 1, 2, 1].into_dyn());
        // Every call below goes out before any answer: one chain each,
        // awaited at the end.
        let mm = w.einsum("ij,kj->ik", &[&a, &a]).sum();
        let trace = w.einsum("ii", &[&w.eye(DType::F64, 3, None, 0)]);
        let outer = w.einsum("i,j->ij", &[&v, &v]).sum_axis(0, false);
        let dot = a.tensordot(&a, 2);
        let dot_axes = a.tensordot_axes(&a, &[0], &[0]);
        let stacked = w.stack(&[&a, &a.neg()], 0).squeeze(&[]).expand_dims(&[-1]);
        let tiled = v.tile(&[2]).flip(&[]);
        let wide = v.broadcast_to(&[2, 4]).sort(1).cast(DType::F64);
        let order = v.argsort(0);
        let (top, top_at) = v.topk(2, 0, true);
        let erf = a.erf().sum();
        let lin = w.linspace(DType::F64, 0.0, 1.0, 5, true).sum();
        let eye = w.eye(DType::I64, 2, Some(3), 1);
        let ints = w.randint(DType::I64, 0, 10, &[100], 5);
        let again = w.randint(DType::I64, 0, 10, &[100], 5);
        let perm = w.permutation(6, 9).sort(0);
        let parts = a.split(3, 1);
        let cut = v.split_at(&[1, 3], 0);

        // np.einsum("ij,kj->ik", a, a).sum(): row dots 14, 32, 32, 77.
        close(&mm, &[14.0 + 32.0 + 32.0 + 77.0]).await;
        close(&trace, &[3.0]).await;
        assert_eq!(shaped_i64s(&outer).await.1, [21, 7, 14, 7]);
        close(&dot, &[91.0]).await;
        close(
            &dot_axes,
            &[17.0, 22.0, 27.0, 22.0, 29.0, 36.0, 27.0, 36.0, 45.0],
        )
        .await;
        let st = f64s(&stacked).await;
        assert_eq!(st.shape(), [2, 2, 3, 1]);
        assert_eq!(st.iter().nth(7), Some(&-2.0));
        assert_eq!(shaped_i64s(&tiled).await.1, [1, 2, 1, 3, 1, 2, 1, 3]);
        close(&wide, &[1.0, 1.0, 2.0, 3.0, 1.0, 1.0, 2.0, 3.0]).await;
        assert_eq!(shaped_i64s(&order).await.1, [1, 3, 2, 0]);
        assert_eq!(shaped_i64s(&top).await.1, [3, 2]);
        assert_eq!(shaped_i64s(&top_at).await.1, [0, 2]);
        let erf_sum: f64 = [1.0f64, 2.0, 3.0, 4.0, 5.0, 6.0]
            .iter()
            .map(|&x| erf_approx(x))
            .sum();
        let got = within(LIMIT, erf.item()).await.unwrap();
        assert!((got - erf_sum).abs() < 1e-6, "{got} vs {erf_sum}");
        close(&lin, &[2.5]).await;
        assert_eq!(
            shaped_i64s(&eye).await,
            (vec![2, 3], vec![0, 1, 0, 0, 0, 1])
        );
        let (shape, drawn) = shaped_i64s(&ints).await;
        assert_eq!(shape, [100]);
        assert!(drawn.iter().all(|d| (0..10).contains(d)));
        assert_eq!(
            shaped_i64s(&again).await.1,
            drawn,
            "same seed, same integers"
        );
        assert_eq!(shaped_i64s(&perm).await.1, [0, 1, 2, 3, 4, 5]);
        assert_eq!(parts.len(), 3);
        close(&parts[2].sum(), &[9.0]).await;
        assert_eq!(f64s(&parts[0]).await.shape(), [2, 1]);
        let cut: Vec<Vec<i64>> = futures::future::join_all(cut.iter().map(shaped_i64s))
            .await
            .into_iter()
            .map(|p| p.1)
            .collect();
        assert_eq!(cut, [vec![3], vec![1, 2], vec![1]]);

        // Bad input fails only its call, naming the op and the shapes.
        let (too_many, _) = v.topk(5, 0, true);
        let bad_parts = a.split(2, 1);
        let absurd = a.split(1 << 40, 1);
        assert_eq!(absurd.len(), 1, "one part carries the refusal");
        for (t, words) in [
            (w.einsum("ij,j%", &[&a, &a]), &["einsum:", "'%'"][..]),
            (
                w.einsum("ij->i", &[&a, &a]),
                &["einsum:", "1 operands but 2"][..],
            ),
            (
                w.einsum("ij,jk->ik", &[&a, &a]),
                &["einsum:", "[2, 3]", "length 3", "but 2"][..],
            ),
            (
                bad_parts[0].clone(),
                &["split:", "2 sections", "[2, 3]"][..],
            ),
            (
                a.squeeze(&[0]),
                &["squeeze:", "axis 0 of length 2", "[2, 3]"][..],
            ),
            (a.flip(&[4]), &["flip:", "axis 4"][..]),
            (too_many, &["topk:", "k (5)", "[4]"][..]),
            (
                a.broadcast_to(&[3, 3]),
                &["broadcastTo:", "[2, 3]", "[3, 3]"][..],
            ),
            (a.tensordot(&v, 1), &["tensordot:", "[2, 3]", "[4]"][..]),
            (v.erf(), &["erf:", "i64"][..]),
            (
                w.randint(DType::F32, 0, 2, &[1], 0),
                &["randint:", "f32"][..],
            ),
        ] {
            let msg = within(LIMIT, t.to_array()).await.unwrap_err().to_string();
            for word in words {
                assert!(msg.contains(word), "{msg:?} should mention {word:?}");
            }
        }
        // The worker goes on serving.
        close(&a.sum(), &[21.0]).await;
    });
}

/// The error function to 1.5e-7 (Abramowitz and Stegun 7.1.26): an
/// independent check of the worker's.
fn erf_approx(x: f64) -> f64 {
    let t = 1.0 / (1.0 + 0.327_591_1 * x.abs());
    let y = 1.0
        - (((((1.061_405_429 * t - 1.453_152_027) * t) + 1.421_413_741) * t - 0.284_496_736) * t
            + 0.254_829_592)
            * t
            * (-x * x).exp();
    y.copysign(x)
}
