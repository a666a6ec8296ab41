//! Unit tests of matmul and the reductions (helpers in `tests.rs`).

use super::dtype::*;
use super::tests::*;
use super::*;
use ndarray::{s, Array2, ArrayD, Axis, Ix2, IxDyn};

// --- matmul ------------------------------------------------------------

#[test]
fn matmul_of_matrices_matches_ndarray_dot() {
    let a = seq(&[3, 4]).into_dimensionality::<Ix2>().unwrap() - 5.0;
    let b = seq(&[4, 5]).into_dimensionality::<Ix2>().unwrap() * 0.5;
    let out = Array::matmul(
        &Array::F64(a.clone().into_dyn()),
        &Array::F64(b.clone().into_dyn()),
        U,
    )
    .unwrap();
    assert_close(&out, &a.dot(&b).into_dyn());
    let (af, bf) = (a.mapv(|v| v as f32), b.mapv(|v| v as f32));
    let out = Array::matmul(
        &Array::F32(af.clone().into_dyn()),
        &Array::F32(bf.clone().into_dyn()),
        U,
    )
    .unwrap();
    assert_eq!(get::<f32>(&out), &af.dot(&bf).into_dyn());
}

#[test]
fn matmul_of_integer_matrices_matches_a_naive_loop() {
    let a = Array2::from_shape_fn((3, 4), |(i, j)| (i as i64 * 7 - j as i64 * 3) % 5);
    let b = Array2::from_shape_fn((4, 2), |(i, j)| (i as i64 + 2 * j as i64) - 3);
    let out = Array::matmul(
        &Array::I64(a.clone().into_dyn()),
        &Array::I64(b.clone().into_dyn()),
        U,
    )
    .unwrap();
    assert_eq!(
        get::<i64>(&out),
        &naive_matmul(a.view(), b.view()).into_dyn()
    );
    let big = arr(&[1, 1], &[i32::MAX]);
    assert_eq!(Array::matmul(&big, &big, U).unwrap(), arr(&[1, 1], &[1i32]));
}

#[test]
fn matmul_of_two_vectors_is_a_rank_zero_dot_product() {
    let a = arr(&[3], &[1.0f64, 2.0, 3.0]);
    let b = arr(&[3], &[4.0f64, 5.0, 6.0]);
    assert_eq!(Array::matmul(&a, &b, U).unwrap(), arr(&[], &[32.0f64]));
    let (ai, bi) = (arr(&[2], &[2i32, 3]), arr(&[2], &[4i32, 5]));
    assert_eq!(Array::matmul(&ai, &bi, U).unwrap(), arr(&[], &[23i32]));
}

#[test]
fn matmul_promotes_vectors_and_drops_the_added_dimension() {
    let m = seq(&[3, 4]);
    let m2 = m.view().into_dimensionality::<Ix2>().unwrap();
    let v3 = seq(&[3]).into_dimensionality::<ndarray::Ix1>().unwrap();
    let v4 = seq(&[4]).into_dimensionality::<ndarray::Ix1>().unwrap();
    let out = Array::matmul(
        &Array::F64(v3.clone().into_dyn()),
        &Array::F64(m.clone()),
        U,
    )
    .unwrap();
    assert_close(&out, &v3.dot(&m2).into_dyn());
    let out = Array::matmul(
        &Array::F64(m.clone()),
        &Array::F64(v4.clone().into_dyn()),
        U,
    )
    .unwrap();
    assert_close(&out, &m2.dot(&v4).into_dyn());
    let shape = |a: &[usize], b: &[usize]| {
        Array::matmul(&Array::F64(seq(a)), &Array::F64(seq(b)), U)
            .unwrap()
            .shape()
            .to_vec()
    };
    assert_eq!(shape(&[2, 1, 3, 4], &[4]), [2, 1, 3]);
    assert_eq!(shape(&[4], &[5, 4, 2]), [5, 2]);
    assert_eq!(shape(&[1, 3], &[3, 1]), [1, 1]);
}

#[test]
fn batched_matmul_broadcasts_batch_dimensions_like_a_naive_loop() {
    fn check<T: Num>(a: ArrayD<T>, b: ArrayD<T>) {
        let out = Array::matmul(&T::wrap(a.clone()), &T::wrap(b.clone()), U).unwrap();
        let out = get::<T>(&out);
        assert_eq!(out.shape(), [2, 5, 3, 2]);
        for i in 0..2 {
            for j in 0..5 {
                let am = a.slice(s![i, 0, .., ..]);
                let bm = b.slice(s![j, .., ..]);
                assert_eq!(out.slice(s![i, j, .., ..]), naive_matmul(am, bm));
            }
        }
    }
    let a = seq(&[2, 1, 3, 4]).mapv(|v| (v * 0.37).sin());
    let b = seq(&[5, 4, 2]).mapv(|v| (v * 0.11).cos());
    let out = Array::matmul(&Array::F64(a.clone()), &Array::F64(b.clone()), U).unwrap();
    // gemm and the naive loop may sum in different orders.
    let naive = ArrayD::from_shape_fn(IxDyn(&[2, 5, 3, 2]), |ix| {
        (0..4)
            .map(|k| a[[ix[0], 0, ix[2], k]] * b[[ix[1], k, ix[3]]])
            .sum::<f64>()
    });
    assert_close(&out, &naive);
    check(a.mapv(|v| (v * 10.0) as i32), b.mapv(|v| (v * 10.0) as i32));
    check(a.mapv(|v| (v * 10.0) as i64), b.mapv(|v| (v * 10.0) as i64));
}

#[test]
fn matmul_handles_transposed_and_empty_operands() {
    let at = seq(&[4, 3]).reversed_axes(); // [3, 4], column-major memory
    let b = seq(&[4, 2]);
    let expected = at
        .view()
        .into_dimensionality::<Ix2>()
        .unwrap()
        .dot(&b.view().into_dimensionality::<Ix2>().unwrap());
    let out = Array::matmul(&Array::F64(at.clone()), &Array::F64(b.clone()), U).unwrap();
    assert_close(&out, &expected.into_dyn());
    let ai = Array::cast(&Array::F64(at), DType::I64, U).unwrap();
    let ai = Array::I64(get::<i64>(&ai).clone().reversed_axes().reversed_axes());
    assert_eq!(
        Array::matmul(&ai, &Array::cast(&Array::F64(b), DType::I64, U).unwrap(), U)
            .unwrap()
            .shape(),
        [3, 2]
    );
    // k == 0 gives zeros, m == 0 gives an empty result.
    let z = Array::matmul(&arr::<f32>(&[2, 0], &[]), &arr::<f32>(&[0, 3], &[]), U).unwrap();
    assert_eq!(z, Array::zeros(DType::F32, &[2, 3], U).unwrap());
    let e = Array::matmul(&arr::<i32>(&[0, 2], &[]), &arr(&[2, 3], &[1i32; 6]), U).unwrap();
    assert_eq!(e.shape(), [0, 3]);
}

#[test]
fn matmul_inner_dimension_mismatch_names_both_shapes() {
    let e = Array::matmul(&Array::F64(seq(&[2, 3])), &Array::F64(seq(&[4, 5])), U).unwrap_err();
    assert_eq!(
        e,
        OpError::ShapeMismatch {
            op: "matmul",
            lhs: vec![2, 3],
            rhs: vec![4, 5]
        }
    );
    assert_eq!(
        e.to_string(),
        "matmul: inner dimensions of shapes [2, 3] and [4, 5] differ"
    );
}

#[test]
fn matmul_rejects_bool_rank_zero_and_unbroadcastable_batches() {
    let b = arr(&[2, 2], &[true; 4]);
    assert_eq!(
        Array::matmul(&b, &b, U).unwrap_err(),
        OpError::Unsupported {
            op: "matmul",
            dtype: DType::Bool
        }
    );
    let e = err_text(Array::matmul(
        &arr(&[], &[1.0f64]),
        &Array::F64(seq(&[1])),
        U,
    ));
    assert_eq!(
        e,
        "matmul: operands must have at least one dimension, got shapes [] and [1]"
    );
    let e = err_text(Array::matmul(
        &Array::F64(seq(&[2, 3, 4])),
        &Array::F64(seq(&[3, 4, 5])),
        U,
    ));
    assert_eq!(
        e,
        "matmul: cannot broadcast the batch dimensions of shapes [2, 3, 4] and [3, 4, 5]"
    );
    // Mixed dtypes promote: f64 · i64 is f64.
    let dot = Array::matmul(&arr(&[1], &[1.5f64]), &arr(&[1], &[2i64]), U).unwrap();
    assert_eq!(dot, arr(&[], &[3.0f64]));
}

// --- reductions --------------------------------------------------------

#[test]
fn sum_over_negative_axis_with_keepdims_matches_ndarray() {
    let x = seq(&[2, 3, 4]);
    let a = Array::F64(x.clone());
    let out = Array::reduce(ReduceOp::Sum, &a, Some(-1), true, U).unwrap();
    assert_close(&out, &x.sum_axis(Axis(2)).insert_axis(Axis(2)));
    let out = Array::reduce(ReduceOp::Sum, &a, Some(-3), false, U).unwrap();
    assert_close(&out, &x.sum_axis(Axis(0)));
    let out = Array::reduce(ReduceOp::Mean, &a, Some(1), false, U).unwrap();
    assert_close(&out, &x.mean_axis(Axis(1)).unwrap());
    let out = Array::reduce(ReduceOp::Max, &a, Some(-2), true, U).unwrap();
    assert_close(
        &out,
        &x.map_axis(Axis(1), |l| l.fold(f64::MIN, |m, &v| m.max(v)))
            .insert_axis(Axis(1)),
    );
}

#[test]
fn every_reduction_over_all_elements() {
    let x = ArrayD::from_shape_vec(IxDyn(&[2, 3]), vec![3.0, -1.0, 7.0, 7.0, 0.0, -4.0]).unwrap();
    let a = Array::F64(x);
    let all = |op| Array::reduce(op, &a, None, false, U).unwrap();
    assert_eq!(all(ReduceOp::Sum), arr(&[], &[12.0f64]));
    assert_eq!(all(ReduceOp::Mean), arr(&[], &[2.0f64]));
    assert_eq!(all(ReduceOp::Max), arr(&[], &[7.0f64]));
    assert_eq!(all(ReduceOp::Min), arr(&[], &[-4.0f64]));
    assert_eq!(all(ReduceOp::Argmax), arr(&[], &[2i64]));
    assert_eq!(all(ReduceOp::Argmin), arr(&[], &[5i64]));
    let kept = Array::reduce(ReduceOp::Sum, &a, None, true, U).unwrap();
    assert_eq!(kept, arr(&[1, 1], &[12.0f64]));
    // Non-standard layout is flattened in logical order.
    let t = Array::transpose(&a, None, U).unwrap();
    let tt = Array::F64(get::<f64>(&a).clone().reversed_axes());
    assert_eq!(
        Array::reduce(ReduceOp::Argmin, &tt, None, false, U).unwrap(),
        Array::reduce(ReduceOp::Argmin, &t, None, false, U).unwrap()
    );
    assert_eq!(
        Array::reduce(ReduceOp::Argmin, &t, None, false, U).unwrap(),
        arr(&[], &[5i64])
    );
}

#[test]
fn sum_of_bool_counts_and_integer_sums_keep_their_dtype() {
    let b = arr(&[2, 3], &[true, false, true, true, true, false]);
    assert_eq!(
        Array::reduce(ReduceOp::Sum, &b, None, false, U).unwrap(),
        arr(&[], &[4i64])
    );
    assert_eq!(
        Array::reduce(ReduceOp::Sum, &b, Some(1), false, U).unwrap(),
        arr(&[2], &[2i64, 2])
    );
    assert_eq!(
        Array::reduce(ReduceOp::Mean, &b, Some(0), false, U).unwrap(),
        arr(&[3], &[1.0f64, 0.5, 0.5])
    );
    assert_eq!(
        Array::reduce(ReduceOp::Max, &b, Some(1), false, U).unwrap(),
        arr(&[2], &[true, true])
    );
    let i = arr(&[3], &[i32::MAX, 1, 2]);
    assert_eq!(
        Array::reduce(ReduceOp::Sum, &i, None, false, U).unwrap(),
        arr(&[], &[i32::MIN + 2])
    );
    let i = arr(&[2, 2], &[1i64, 2, 4, 4]);
    assert_eq!(
        Array::reduce(ReduceOp::Mean, &i, Some(-1), false, U).unwrap(),
        arr(&[2], &[1.5f64, 4.0])
    );
    let f = arr(&[2], &[1.5f32, 2.0]);
    assert_eq!(
        Array::reduce(ReduceOp::Mean, &f, None, false, U).unwrap(),
        arr(&[], &[1.75f32])
    );
}

#[test]
fn argmax_and_argmin_return_the_first_index() {
    let x = arr(&[2, 4], &[1i32, 9, 9, 0, 5, 5, -1, -1]);
    assert_eq!(
        Array::reduce(ReduceOp::Argmax, &x, Some(1), false, U).unwrap(),
        arr(&[2], &[1i64, 0])
    );
    assert_eq!(
        Array::reduce(ReduceOp::Argmin, &x, Some(-1), true, U).unwrap(),
        arr(&[2, 1], &[3i64, 2])
    );
    assert_eq!(
        Array::reduce(ReduceOp::Argmax, &x, Some(0), false, U).unwrap(),
        arr(&[4], &[1i64, 0, 0, 0])
    );
    assert_eq!(
        Array::reduce(ReduceOp::Argmax, &x, None, false, U).unwrap(),
        arr(&[], &[1i64])
    );
    assert_eq!(
        Array::reduce(ReduceOp::Argmin, &x, None, true, U).unwrap(),
        arr(&[1, 1], &[6i64])
    );
    let nan = arr(&[4], &[1.0f64, f64::NAN, 5.0, f64::NAN]);
    assert_eq!(
        Array::reduce(ReduceOp::Argmax, &nan, None, false, U).unwrap(),
        arr(&[], &[1i64])
    );
    let m = Array::reduce(ReduceOp::Max, &nan, None, false, U).unwrap();
    assert!(m.to_scalar_f64().unwrap().is_nan());
}

#[test]
fn max_of_an_empty_axis_is_an_empty_reduction_but_sum_is_zero() {
    let e = arr::<f64>(&[0, 3], &[]);
    let err = Array::reduce(ReduceOp::Max, &e, Some(0), false, U).unwrap_err();
    assert_eq!(err, OpError::EmptyReduction { op: "max" });
    assert_eq!(err.to_string(), "max: cannot reduce over zero elements");
    let err = Array::reduce(ReduceOp::Argmin, &e, None, false, U).unwrap_err();
    assert_eq!(err, OpError::EmptyReduction { op: "argmin" });
    assert_eq!(
        Array::reduce(ReduceOp::Max, &e, Some(1), false, U)
            .unwrap()
            .shape(),
        [0]
    );
    assert_eq!(
        Array::reduce(ReduceOp::Sum, &e, Some(0), false, U).unwrap(),
        arr(&[3], &[0.0f64; 3])
    );
    let mean = Array::reduce(ReduceOp::Mean, &e, None, false, U).unwrap();
    assert!(mean.to_scalar_f64().unwrap().is_nan());
}

#[test]
fn reduce_rejects_axes_out_of_range() {
    let a = Array::F64(seq(&[2, 3, 4]));
    for axis in [3, -4, i64::MIN, i64::MAX] {
        let e = Array::reduce(ReduceOp::Sum, &a, Some(axis), false, U).unwrap_err();
        assert_eq!(
            e,
            OpError::AxisOutOfRange {
                op: "sum",
                axis,
                ndim: 3
            }
        );
    }
    let e = Array::reduce(ReduceOp::Sum, &a, Some(3), false, U).unwrap_err();
    assert_eq!(
        e.to_string(),
        "sum: axis 3 is out of range for an array with 3 dimensions"
    );
    let s = arr(&[], &[1i32]);
    assert!(Array::reduce(ReduceOp::Sum, &s, Some(0), false, U).is_err());
    assert_eq!(Array::reduce(ReduceOp::Sum, &s, None, false, U).unwrap(), s);
}
