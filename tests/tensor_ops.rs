//! Every tensor op, run on a worker over the local, virtual and TCP
//! transports, must give exactly what the same op gives locally.

mod common;

use std::sync::Arc;
use std::time::Duration;

use capactor::actors::tensor::ops::{
    Array, BinaryOp, CompareOp, ReduceOp, SliceSpec, UnaryOp, Unlimited,
};
use capactor::actors::tensor::{Quota, RemoteTensor, TensorWorker, Worker};
use capactor::schema::tensor_capnp::tensor_worker;
use common::{each, within, Harness, Spawned, ALL};
use ndarray::{array, ArrayD};

const LIMIT: Duration = Duration::from_secs(30);

async fn worker(h: &Harness) -> (Spawned<tensor_worker::Client>, Worker, Arc<Quota>) {
    let quota = Quota::new(1 << 30);
    let q = quota.clone();
    let s = h
        .spawn::<tensor_worker::Client, _, _>(move || TensorWorker::new("t", q.clone()))
        .await;
    let w = Worker::new(s.client.clone());
    (s, w, quota)
}

fn f32s(shape: &[usize], seed: u32) -> ArrayD<f32> {
    let n: usize = shape.iter().product();
    let v: Vec<f32> = (0..n)
        .map(|i| (((i as u32).wrapping_mul(2654435761u32) ^ seed) % 17) as f32 / 4.0 - 2.0)
        .collect();
    ArrayD::from_shape_vec(shape.to_vec(), v).unwrap()
}

async fn same(
    remote: &RemoteTensor,
    local: Result<Array, capactor::actors::tensor::OpError>,
    what: &str,
) {
    let local = local.unwrap_or_else(|e| panic!("{what}: local op failed: {e}"));
    let got = within(LIMIT, remote.to_array())
        .await
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    assert_eq!(got, local, "{what}");
}

#[test]
fn elementwise_ops_match_local_results() {
    each(&ALL, |h| async move {
        let (_s, w, _q) = worker(&h).await;
        let a = Array::F32(f32s(&[2, 3], 1));
        let b = Array::F32(f32s(&[3], 2).mapv(|x| x + 3.0)); // no zeros: div
        let (ra, rb) = (w.from_array(&a), w.from_array(&b));
        for op in [
            BinaryOp::Add,
            BinaryOp::Sub,
            BinaryOp::Mul,
            BinaryOp::Div,
            BinaryOp::Maximum,
            BinaryOp::Minimum,
        ] {
            same(
                &ra.binary(op, &rb),
                Array::binary(op, &a, &b, &Unlimited),
                &format!("{op:?}"),
            )
            .await;
            let s = 1.5f64.into();
            same(
                &ra.binary_scalar(op, s, false),
                Array::binary_scalar(op, &a, s, false, &Unlimited),
                &format!("{op:?} scalar"),
            )
            .await;
            same(
                &ra.binary_scalar(op, s, true),
                Array::binary_scalar(op, &a, s, true, &Unlimited),
                &format!("scalar {op:?}"),
            )
            .await;
        }
        let pos = Array::F32(f32s(&[4, 2], 3).mapv(|x| x.abs() + 0.5));
        let rpos = w.from_array(&pos);
        same(
            &rpos.pow(&rpos),
            Array::binary(BinaryOp::Pow, &pos, &pos, &Unlimited),
            "pow",
        )
        .await;
        for op in [
            UnaryOp::Neg,
            UnaryOp::Abs,
            UnaryOp::Exp,
            UnaryOp::Log,
            UnaryOp::Sqrt,
            UnaryOp::Relu,
            UnaryOp::Sigmoid,
            UnaryOp::Tanh,
        ] {
            same(
                &rpos.unary(op),
                Array::unary(op, &pos, &Unlimited),
                &format!("{op:?}"),
            )
            .await;
            same(
                &ra.unary(UnaryOp::Neg).unary(UnaryOp::Relu),
                Array::unary(
                    UnaryOp::Relu,
                    &Array::unary(UnaryOp::Neg, &a, &Unlimited).unwrap(),
                    &Unlimited,
                ),
                "chain",
            )
            .await;
        }
        for op in [
            CompareOp::Eq,
            CompareOp::Ne,
            CompareOp::Lt,
            CompareOp::Le,
            CompareOp::Gt,
            CompareOp::Ge,
        ] {
            same(
                &ra.compare(op, &rb),
                Array::compare(op, &a, &b, &Unlimited),
                &format!("{op:?}"),
            )
            .await;
            let s = 0.5f64.into();
            same(
                &ra.compare_scalar(op, s),
                Array::compare_scalar(op, &a, s, &Unlimited),
                &format!("{op:?} scalar"),
            )
            .await;
        }
        // Operators.
        same(
            &(&(&ra + &rb) * 2.0f32),
            Array::binary_scalar(
                BinaryOp::Mul,
                &Array::binary(BinaryOp::Add, &a, &b, &Unlimited).unwrap(),
                2.0f64.into(),
                false,
                &Unlimited,
            ),
            "operators",
        )
        .await;
        // Integer ops stay integer.
        let i = Array::I64(array![[7i64, -9], [4, 5]].into_dyn());
        let j = Array::I64(array![2i64, -3].into_dyn());
        let (ri, rj) = (w.from_array(&i), w.from_array(&j));
        same(
            &ri.div(&rj),
            Array::binary(BinaryOp::Div, &i, &j, &Unlimited),
            "i64 div",
        )
        .await;
        same(
            &ri.mul(&rj),
            Array::binary(BinaryOp::Mul, &i, &j, &Unlimited),
            "i64 mul",
        )
        .await;
    });
}

#[test]
fn broadcasting_follows_numpy_rules() {
    each(&ALL, |h| async move {
        let (_s, w, _q) = worker(&h).await;
        let cases: [(&[usize], &[usize]); 5] = [
            (&[3, 1], &[1, 4]),
            (&[2, 3], &[3]),
            (&[], &[2, 2]),
            (&[0, 3], &[1, 3]),
            (&[2, 1, 3], &[4, 1]),
        ];
        for (sa, sb) in cases {
            let a = Array::F32(f32s(sa, 5));
            let b = Array::F32(f32s(sb, 6));
            let r = w.from_array(&a).add(&w.from_array(&b));
            same(
                &r,
                Array::binary(BinaryOp::Add, &a, &b, &Unlimited),
                &format!("{sa:?} + {sb:?}"),
            )
            .await;
        }
        let err = within(
            LIMIT,
            w.from_array(&Array::F32(f32s(&[2, 3], 1)))
                .add(&w.from_array(&Array::F32(f32s(&[4], 1))))
                .to_array(),
        )
        .await
        .unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("add") && msg.contains("[2, 3]") && msg.contains("[4]"),
            "{msg}"
        );
    });
}

#[test]
fn matmul_reductions_and_shape_ops_match_local_results() {
    each(&ALL, |h| async move {
        let (_s, w, _q) = worker(&h).await;
        let m = Array::F32(f32s(&[3, 4], 7));
        let n = Array::F32(f32s(&[4, 2], 8));
        let batch = Array::F32(f32s(&[2, 1, 3, 4], 9));
        let batch2 = Array::F32(f32s(&[5, 4, 2], 10));
        let v = Array::F32(f32s(&[4], 11));
        let (rm, rn, rv) = (w.from_array(&m), w.from_array(&n), w.from_array(&v));
        same(
            &rm.matmul(&rn),
            Array::matmul(&m, &n, &Unlimited),
            "2-D matmul",
        )
        .await;
        same(
            &rm.matmul(&rv),
            Array::matmul(&m, &v, &Unlimited),
            "matrix-vector",
        )
        .await;
        same(&rv.matmul(&rv), Array::matmul(&v, &v, &Unlimited), "dot").await;
        same(
            &w.from_array(&batch).matmul(&w.from_array(&batch2)),
            Array::matmul(&batch, &batch2, &Unlimited),
            "batched",
        )
        .await;
        // Large enough to run off the vat.
        let big_a = Array::F32(f32s(&[300, 300], 12));
        let big_b = Array::F32(f32s(&[300, 300], 13));
        same(
            &w.from_array(&big_a).matmul(&w.from_array(&big_b)),
            Array::matmul(&big_a, &big_b, &Unlimited),
            "offloaded matmul",
        )
        .await;

        for op in [
            ReduceOp::Sum,
            ReduceOp::Mean,
            ReduceOp::Max,
            ReduceOp::Min,
            ReduceOp::Argmax,
            ReduceOp::Argmin,
        ] {
            for axis in [None, Some(0), Some(-1)] {
                for keep in [false, true] {
                    same(
                        &rm.reduce(op, axis, keep),
                        Array::reduce(op, &m, axis, keep, &Unlimited),
                        &format!("{op:?} {axis:?} {keep}"),
                    )
                    .await;
                }
            }
        }
        same(
            &rm.reshape(&[2, -1]),
            Array::reshape(&m, &[2, -1], &Unlimited),
            "reshape",
        )
        .await;
        same(&rm.t(), Array::transpose(&m, None, &Unlimited), "transpose").await;
        same(
            &w.from_array(&batch).permute(&[3, 0, 2, 1]),
            Array::transpose(&batch, Some(&[3, 0, 2, 1]), &Unlimited),
            "permute",
        )
        .await;
        let specs = [
            SliceSpec::new(Some(-2), None, 1),
            SliceSpec::new(None, None, -2),
        ];
        same(
            &rm.slice(&specs),
            Array::slice(&m, &specs, &Unlimited),
            "slice",
        )
        .await;
        for dt in [
            capactor::actors::tensor::DType::I32,
            capactor::actors::tensor::DType::F64,
            capactor::actors::tensor::DType::Bool,
        ] {
            same(
                &rm.cast(dt),
                Array::cast(&m, dt, &Unlimited),
                &format!("cast {dt}"),
            )
            .await;
        }
        same(
            &w.concat(&[&rm, &rm], 0),
            Array::concat(&[&m, &m], 0, &Unlimited),
            "concat",
        )
        .await;
        let cond = Array::compare_scalar(CompareOp::Gt, &m, 0.0f64.into(), &Unlimited).unwrap();
        same(
            &rm.gt_scalar(0.0).select(&rm, &rm.neg()),
            Array::where_(
                &cond,
                &m,
                &Array::unary(UnaryOp::Neg, &m, &Unlimited).unwrap(),
                &Unlimited,
            ),
            "select",
        )
        .await;
        assert_eq!(within(LIMIT, rm.shape()).await.unwrap(), vec![3, 4]);
        assert_eq!(
            within(LIMIT, rm.sum().dtype()).await.unwrap(),
            capactor::actors::tensor::DType::F32
        );
    });
}

#[test]
fn creation_ops_match_local_results() {
    use capactor::actors::tensor::DType;
    each(&ALL, |h| async move {
        let (_s, w, _q) = worker(&h).await;
        same(
            &w.zeros(DType::I32, &[2, 3]),
            Array::zeros(DType::I32, &[2, 3], &Unlimited),
            "zeros",
        )
        .await;
        same(
            &w.ones(DType::F64, &[4]),
            Array::ones(DType::F64, &[4], &Unlimited),
            "ones",
        )
        .await;
        same(
            &w.full(DType::F32, &[2, 2], 2.5f64),
            Array::full(DType::F32, &[2, 2], 2.5f64.into(), &Unlimited),
            "full",
        )
        .await;
        same(
            &w.arange(DType::I64, 0.0, 10.0, 3.0),
            Array::arange(DType::I64, 0.0, 10.0, 3.0, &Unlimited),
            "arange",
        )
        .await;
        same(
            &w.random_uniform(DType::F32, &[3, 3], -1.0, 1.0, 42),
            Array::random_uniform(DType::F32, &[3, 3], -1.0, 1.0, 42, &Unlimited),
            "uniform",
        )
        .await;
        same(
            &w.random_normal(DType::F64, &[5], 0.0, 2.0, 7),
            Array::random_normal(DType::F64, &[5], 0.0, 2.0, 7, &Unlimited),
            "normal",
        )
        .await;
        let x = array![[1.0f32, 2.0], [3.0, 4.0]].into_dyn();
        assert_eq!(
            within(LIMIT, w.tensor(&x).to_ndarray::<f32>())
                .await
                .unwrap(),
            x
        );
        let flags = array![true, false, true].into_dyn();
        assert_eq!(
            within(LIMIT, w.tensor(&flags).to_ndarray::<bool>())
                .await
                .unwrap(),
            flags
        );
    });
}

#[test]
fn every_dtype_travels_promotes_and_casts_over_every_transport() {
    use capactor::actors::tensor::{bf16, f16, npy, DType};
    each(&ALL, |h| async move {
        let (_s, w, _q) = worker(&h).await;
        // Typed in, typed out: small in one message, large streamed.
        let bytes = w.tensor(&array![[0u8, 1, 255], [7, 8, 9]]);
        let got: ArrayD<u8> = within(LIMIT, bytes.to_ndarray()).await.unwrap();
        assert_eq!(got, array![[0u8, 1, 255], [7, 8, 9]].into_dyn());
        let big = ArrayD::from_shape_fn(vec![1 << 20], |d| f16::from_f32((d[0] % 2048) as f32));
        let back: ArrayD<f16> = within(LIMIT, w.tensor(&big).to_ndarray()).await.unwrap();
        assert_eq!(back, big, "2 MiB of f16, streamed");
        let b: ArrayD<bf16> = within(LIMIT, w.tensor(&array![bf16::ONE]).to_ndarray())
            .await
            .unwrap();
        assert_eq!(b, array![bf16::ONE].into_dyn());
        // Mixed dtypes promote as np.result_type: u8 + i8 is i16.
        let sum = bytes.add(&w.tensor(&array![[-1i8, 0, 1]]));
        let s: ArrayD<i16> = within(LIMIT, sum.to_ndarray()).await.unwrap();
        assert_eq!(s, array![[-1i16, 1, 256], [6, 8, 10]].into_dyn());
        // Casts, pipelined on the promoted result.
        let wrapped: ArrayD<u8> = within(LIMIT, sum.cast(DType::U8).to_ndarray())
            .await
            .unwrap();
        assert_eq!(wrapped, array![[255u8, 1, 0], [6, 8, 10]].into_dyn());
        let e = within(LIMIT, bytes.to_ndarray::<i8>()).await.unwrap_err();
        assert!(e.to_string().contains("tensor has dtype u8, not i8"), "{e}");
        // A .npy file goes up as what it holds.
        let mut file = Vec::new();
        npy::write_npy(&mut file, &Array::U64(array![u64::MAX, 3].into_dyn())).unwrap();
        let loaded = npy::read_npy(std::io::Cursor::new(file)).unwrap();
        let max = w.from_array(&loaded).reduce(ReduceOp::Max, None, false);
        let m: ArrayD<u64> = within(LIMIT, max.to_ndarray()).await.unwrap();
        assert_eq!(m, ndarray::arr0(u64::MAX).into_dyn());
    });
}
