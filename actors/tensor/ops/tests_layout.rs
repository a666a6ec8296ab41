//! Unit tests of the layout ops, allocation accounting and the parallel
//! kernels (helpers in `tests.rs`).

use super::alloc::*;
use super::dtype::*;
use super::tests::*;
use super::*;
use ndarray::{s, ArrayD, Axis, Ix2, IxDyn, Zip};

// --- shape ops ---------------------------------------------------------

#[test]
fn reshape_infers_the_minus_one_dimension() {
    let a = Array::F64(seq(&[2, 3, 4]));
    let r = Array::reshape(&a, &[4, -1], U).unwrap();
    assert_close(&r, &seq(&[4, 6]));
    let r = Array::reshape(&a, &[-1], U).unwrap();
    assert_close(&r, &seq(&[24]));
    let r = Array::reshape(&arr(&[1], &[5i32]), &[], U).unwrap();
    assert_eq!(r, arr(&[], &[5i32]));
    let t = Array::transpose(&Array::F64(seq(&[2, 3])), None, U).unwrap();
    let tt = Array::F64(seq(&[2, 3]).reversed_axes());
    assert_eq!(
        Array::reshape(&tt, &[6], U).unwrap(),
        Array::reshape(&t, &[6], U).unwrap()
    );
    let e = Array::reshape(&arr::<f32>(&[0, 4], &[]), &[2, 0, -1], U).unwrap_err();
    assert!(matches!(e, OpError::InvalidArgument { .. }));
    assert_eq!(
        Array::reshape(&arr::<f32>(&[0, 4], &[]), &[2, 0, 7], U)
            .unwrap()
            .shape(),
        [2, 0, 7]
    );
}

#[test]
fn reshape_rejects_bad_shapes_naming_both() {
    let a = Array::F64(seq(&[2, 3]));
    let e = Array::reshape(&a, &[4, 2], U).unwrap_err();
    assert_eq!(
        e,
        OpError::ShapeMismatch {
            op: "reshape",
            lhs: vec![2, 3],
            rhs: vec![4, 2]
        }
    );
    assert_eq!(
        e.to_string(),
        "reshape: cannot reshape an array of shape [2, 3] into shape [4, 2]"
    );
    assert_eq!(
        err_text(Array::reshape(&a, &[-1, 4], U)),
        "reshape: cannot reshape an array of shape [2, 3] into shape [-1, 4]"
    );
    assert_eq!(
        err_text(Array::reshape(&a, &[-1, -1], U)),
        "reshape: only one dimension can be -1"
    );
    assert_eq!(
        err_text(Array::reshape(&a, &[-2, -3], U)),
        "reshape: invalid dimension -2 in shape [-2, -3]"
    );
    let huge = [1 << 40, 1 << 40, 1 << 40];
    assert!(matches!(
        Array::reshape(&a, &huge, U),
        Err(OpError::InvalidArgument { .. })
    ));
}

#[test]
fn transpose_reverses_axes_by_default_and_applies_a_permutation() {
    let x = seq(&[2, 3, 4]);
    let a = Array::F64(x.clone());
    let t = Array::transpose(&a, None, U).unwrap();
    assert_eq!(get::<f64>(&t), &x.clone().reversed_axes());
    assert!(get::<f64>(&t).is_standard_layout());
    let p = Array::transpose(&a, Some(&[1, 2, 0]), U).unwrap();
    assert_eq!(get::<f64>(&p), &x.clone().permuted_axes(IxDyn(&[1, 2, 0])));
    assert_eq!(p.shape(), [3, 4, 2]);
    assert!(get::<f64>(&p).is_standard_layout());
    let s = arr(&[], &[true]);
    assert_eq!(Array::transpose(&s, None, U).unwrap(), s);
}

#[test]
fn transpose_rejects_non_permutations() {
    let a = Array::F64(seq(&[2, 3, 4]));
    for p in [&[0, 0, 1][..], &[0, 1], &[0, 1, 3], &[0, 1, 2, 3]] {
        let e = Array::transpose(&a, Some(p), U).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("transpose: axes {p:?} are not a permutation of 0..3")
        );
    }
}

#[test]
fn slice_follows_python_semantics_including_negative_steps() {
    let a = Array::I64(ArrayD::from_shape_vec(IxDyn(&[10]), (0..10).collect()).unwrap());
    let sl = |start, stop, step| {
        let out = Array::slice(&a, &[SliceSpec::new(start, stop, step)], U).unwrap();
        get::<i64>(&out).iter().copied().collect::<Vec<_>>()
    };
    let rev: Vec<i64> = (0..10).rev().collect();
    assert_eq!(sl(Some(2), Some(7), 2), [2, 4, 6]);
    assert_eq!(sl(None, None, -1), rev);
    assert_eq!(sl(Some(8), Some(2), -3), [8, 5]);
    assert_eq!(sl(Some(-3), None, 1), [7, 8, 9]);
    assert_eq!(sl(Some(-100), Some(100), 1), (0..10).collect::<Vec<_>>());
    assert_eq!(sl(Some(5), Some(2), 1), [0i64; 0]);
    assert_eq!(sl(Some(2), Some(5), -1), [0i64; 0]);
    assert_eq!(sl(None, None, -4), [9, 5, 1]);
    assert_eq!(sl(Some(-1), Some(-11), -1), rev);
    assert_eq!(sl(Some(100), None, -1), rev);
    assert_eq!(sl(None, Some(-100), -1), rev);
    assert_eq!(sl(Some(-2), Some(-5), -1), [8, 7, 6]);
    assert_eq!(sl(Some(5), None, i64::MIN), [5]);
    assert_eq!(sl(Some(5), None, i64::MAX), [5]);
    assert_eq!(sl(Some(i64::MIN), Some(i64::MAX), 3), [0, 3, 6, 9]);
    let m = Array::F64(seq(&[3, 4]));
    let out = Array::slice(
        &m,
        &[
            SliceSpec::new(Some(1), None, 1),
            SliceSpec::new(None, None, -2),
        ],
        U,
    )
    .unwrap();
    assert_eq!(
        get::<f64>(&out),
        &seq(&[3, 4]).slice(s![1.., ..;-2]).into_owned().into_dyn()
    );
    assert_eq!(get::<f64>(&out).as_slice().unwrap(), [7.0, 5.0, 11.0, 9.0]);
    let rows = Array::slice(&m, &[SliceSpec::new(Some(1), Some(2), 1)], U).unwrap();
    assert_eq!(rows.shape(), [1, 4]);
    assert_eq!(Array::slice(&m, &[], U).unwrap(), m);
    let empty = Array::slice(&arr::<f32>(&[0], &[]), &[SliceSpec::new(None, None, -1)], U).unwrap();
    assert_eq!(empty.shape(), [0]);
}

#[test]
fn slice_rejects_zero_step_and_too_many_specs() {
    let a = Array::F64(seq(&[3]));
    assert_eq!(
        err_text(Array::slice(&a, &[SliceSpec::new(None, None, 0)], U)),
        "slice: slice step must not be zero"
    );
    assert_eq!(
        err_text(Array::slice(
            &a,
            &[SliceSpec::default(), SliceSpec::default()],
            U
        )),
        "slice: 2 slices given for an array with 1 dimensions"
    );
}

#[test]
fn concat_joins_along_a_negative_axis() {
    let (x, y) = (seq(&[2, 3]), seq(&[2, 1]) + 100.0);
    let (a, b) = (Array::F64(x.clone()), Array::F64(y.clone()));
    let out = Array::concat(&[&a, &b, &a], -1, U).unwrap();
    let expected = ndarray::concatenate(Axis(1), &[x.view(), y.view(), x.view()]).unwrap();
    assert_close(&out, &expected);
    let rows = Array::concat(&[&a, &a], 0, U).unwrap();
    assert_eq!(rows.shape(), [4, 3]);
    let single = Array::concat(&[&b], 0, U).unwrap();
    assert_eq!(single, b);
    let bools = Array::concat(
        &[
            &arr(&[1], &[true]),
            &arr::<bool>(&[0], &[]),
            &arr(&[1], &[false]),
        ],
        0,
        U,
    );
    assert_eq!(bools.unwrap(), arr(&[2], &[true, false]));
}

#[test]
fn concat_rejects_mismatched_shapes_dtypes_and_empty_lists() {
    let a = Array::F64(seq(&[2, 3]));
    let b = Array::F64(seq(&[3, 3]));
    let e = Array::concat(&[&a, &b], 1, U).unwrap_err();
    assert_eq!(
        e.to_string(),
        "concat: shapes [2, 3] and [3, 3] differ outside the concatenation axis"
    );
    let e = Array::concat(&[&a, &Array::F64(seq(&[6]))], 0, U).unwrap_err();
    assert!(matches!(e, OpError::ShapeMismatch { .. }));
    // Mixed dtypes promote (i64 and f64 to f64), as np.concatenate.
    let joined = Array::concat(&[&arr(&[2, 3], &[7i64; 6]), &a], 0, U).unwrap();
    assert_eq!(joined.dtype(), DType::F64);
    assert_eq!(joined.shape(), [4, 3]);
    assert_eq!(
        err_text(Array::concat(&[], 0, U)),
        "concat: need at least one array"
    );
    let e = Array::concat(&[&a, &a], 2, U).unwrap_err();
    assert_eq!(
        e,
        OpError::AxisOutOfRange {
            op: "concat",
            axis: 2,
            ndim: 2
        }
    );
    let s = arr(&[], &[1.0f64]);
    assert_eq!(
        err_text(Array::concat(&[&s, &s], 0, U)),
        "concat: zero-dimensional arrays cannot be concatenated"
    );
}

#[test]
fn cast_follows_rust_as_semantics() {
    let f = arr(&[6], &[1.9f64, -1.9, f64::NAN, 1e20, -1e20, 0.0]);
    assert_eq!(
        Array::cast(&f, DType::I32, U).unwrap(),
        arr(&[6], &[1i32, -1, 0, i32::MAX, i32::MIN, 0])
    );
    assert_eq!(
        Array::cast(&f, DType::Bool, U).unwrap(),
        arr(&[6], &[true, true, true, true, true, false])
    );
    let i = arr(&[3], &[i64::MAX, -1, 16_777_217]);
    assert_eq!(
        Array::cast(&i, DType::I32, U).unwrap(),
        arr(&[3], &[-1i32, -1, 16_777_217])
    );
    assert_eq!(
        Array::cast(&i, DType::F32, U).unwrap(),
        arr(&[3], &[i64::MAX as f32, -1.0, 16_777_216.0])
    );
    let b = arr(&[2], &[true, false]);
    assert_eq!(
        Array::cast(&b, DType::F32, U).unwrap(),
        arr(&[2], &[1.0f32, 0.0])
    );
    assert_eq!(
        Array::cast(&b, DType::I64, U).unwrap(),
        arr(&[2], &[1i64, 0])
    );
    let x = arr(&[2], &[0.1f32, 3.0e38]);
    assert_eq!(
        Array::cast(&x, DType::F64, U).unwrap(),
        arr(&[2], &[0.1f32 as f64, 3.0e38f32 as f64])
    );
    assert_eq!(Array::cast(&x, DType::F32, U).unwrap(), x);
}

#[test]
fn where_selects_with_broadcasting() {
    let cond = arr(&[2, 1], &[true, false]);
    let a = Array::F64(seq(&[2, 3]));
    let b = arr(&[], &[-1.0f64]);
    let out = Array::where_(&cond, &a, &b, U).unwrap();
    assert_eq!(out, arr(&[2, 3], &[0.0f64, 1.0, 2.0, -1.0, -1.0, -1.0]));
    let e = Array::where_(&a, &a, &b, U).unwrap_err();
    assert_eq!(
        e,
        OpError::DTypeMismatch {
            op: "select",
            lhs: DType::Bool,
            rhs: DType::F64
        }
    );
    // Mixed branches promote, as np.where (i32 and f64 to f64).
    let mixed = Array::where_(&cond, &a, &arr(&[1], &[1i32]), U).unwrap();
    assert_eq!(mixed.dtype(), a.dtype().promote(DType::I32));
    let e = Array::where_(&arr(&[4], &[true; 4]), &a, &b, U).unwrap_err();
    assert_eq!(
        e.to_string(),
        "select: cannot broadcast shapes [4] and [2, 3]"
    );
}

#[test]
fn to_scalar_f64_reads_one_element_arrays_only() {
    assert_eq!(arr(&[], &[2.5f32]).to_scalar_f64(), Ok(2.5));
    assert_eq!(arr(&[1, 1], &[-3i64]).to_scalar_f64(), Ok(-3.0));
    assert_eq!(arr(&[1], &[true]).to_scalar_f64(), Ok(1.0));
    let e = arr(&[2], &[1i32, 2]).to_scalar_f64().unwrap_err();
    assert_eq!(
        e.to_string(),
        "to_scalar: expected exactly one element, got shape [2]"
    );
    assert!(arr::<f64>(&[0], &[]).to_scalar_f64().is_err());
}

// --- allocation accounting ---------------------------------------------

#[test]
fn zeros_with_an_astronomical_shape_fails_without_allocating() {
    let e = Array::zeros(DType::F64, &[1 << 40, 1 << 40], U).unwrap_err();
    assert_eq!(
        e,
        OpError::ShapeOverflow {
            shape: vec![1 << 40, 1 << 40]
        }
    );
    assert_eq!(
        e.to_string(),
        "shape [1099511627776, 1099511627776] is too large"
    );
    // 2^53 bytes: would abort the process if it were allocated first.
    let e = Array::zeros(DType::F64, &[1 << 20, 1 << 20, 1 << 10], &MaxBytes(1 << 30)).unwrap_err();
    assert_eq!(
        e,
        OpError::TooLarge {
            op: "zeros",
            bytes: 1 << 53,
            limit: 1 << 30
        }
    );
    assert_eq!(
        e.to_string(),
        "zeros: output of 9007199254740992 bytes exceeds the limit of 1073741824 bytes"
    );
}

#[test]
fn max_bytes_refuses_huge_outputs_of_small_inputs_before_allocating() {
    let limit = &MaxBytes(1 << 26);
    let col = Array::zeros(DType::F64, &[1 << 20, 1], limit).unwrap();
    let row = Array::zeros(DType::F64, &[1, 1 << 20], limit).unwrap();
    let e = Array::binary(BinaryOp::Add, &col, &row, limit).unwrap_err();
    assert_eq!(
        e,
        OpError::TooLarge {
            op: "add",
            bytes: 1 << 43,
            limit: 1 << 26
        }
    );
    let e = Array::matmul(&col, &row, limit).unwrap_err();
    assert_eq!(
        e,
        OpError::TooLarge {
            op: "matmul",
            bytes: 1 << 43,
            limit: 1 << 26
        }
    );
    let e = Array::compare(CompareOp::Eq, &col, &row, limit).unwrap_err();
    assert_eq!(
        e,
        OpError::TooLarge {
            op: "eq",
            bytes: 1 << 40,
            limit: 1 << 26
        }
    );
    let e = Array::random_normal(DType::F32, &[1 << 30], 0.0, 1.0, 0, limit).unwrap_err();
    assert!(matches!(
        e,
        OpError::TooLarge {
            op: "random_normal",
            ..
        }
    ));
    assert!(Array::zeros(DType::F64, &[1 << 23], limit).is_ok());
    assert!(Array::zeros(DType::F64, &[(1 << 23) + 1], limit).is_err());
}

#[test]
fn every_op_reserves_exactly_its_output_bytes() {
    let rec = Recorder::default();
    let a = Array::F64(seq(&[2, 3]));
    let v = Array::F64(seq(&[3]));
    let _ = Array::binary(BinaryOp::Add, &a, &v, &rec).unwrap();
    let _ = Array::compare(CompareOp::Lt, &a, &v, &rec).unwrap();
    let _ = Array::unary(UnaryOp::Exp, &a, &rec).unwrap();
    let _ = Array::matmul(&a, &v, &rec).unwrap();
    let _ = Array::reduce(ReduceOp::Argmax, &a, Some(0), false, &rec).unwrap();
    let _ = Array::cast(&a, DType::I32, &rec).unwrap();
    let _ = Array::transpose(&a, None, &rec).unwrap();
    let _ = Array::slice(&a, &[SliceSpec::new(Some(1), None, 1)], &rec).unwrap();
    let _ = Array::concat(&[&a, &a], 0, &rec).unwrap();
    let _ = Array::reshape(&a, &[-1], &rec).unwrap();
    let _ = Array::from_le_bytes(DType::I32, &[5], &[0; 20], &rec).unwrap();
    let _ = Array::ones(DType::Bool, &[7], &rec).unwrap();
    assert_eq!(
        rec.0.into_inner(),
        [
            ("add", 48),
            ("lt", 6),
            ("exp", 48),
            ("matmul", 16),
            ("argmax", 24),
            ("cast", 24),
            ("transpose", 48),
            ("slice", 24),
            ("concat", 96),
            ("reshape", 48),
            ("from_bytes", 20),
            ("ones", 7),
        ]
    );
}

#[test]
fn error_messages_are_lowercase_without_a_trailing_period() {
    let a = Array::F64(seq(&[2, 3]));
    let errors = [
        Array::binary(BinaryOp::Add, &a, &Array::F64(seq(&[4])), U).unwrap_err(),
        Array::binary(BinaryOp::Pow, &arr(&[1], &[true]), &arr(&[1], &[true]), U).unwrap_err(),
        Array::unary(UnaryOp::Exp, &arr(&[1], &[1i32]), U).unwrap_err(),
        Array::binary_scalar(BinaryOp::Div, &arr(&[1], &[1i32]), Scalar::Int(0), false, U)
            .unwrap_err(),
        Array::reduce(ReduceOp::Sum, &a, Some(5), false, U).unwrap_err(),
        Array::from_le_bytes(DType::F32, &[1], &[], U).unwrap_err(),
        Array::zeros(DType::F32, &[u64::MAX, 2], U).unwrap_err(),
        Array::reshape(&a, &[-1, -1], U).unwrap_err(),
        Array::reduce(ReduceOp::Min, &arr::<f64>(&[0], &[]), None, false, U).unwrap_err(),
        Array::zeros(DType::F32, &[8], &MaxBytes(4)).unwrap_err(),
        Array::from_le_bytes(DType::Bool, &[1], &[7], U).unwrap_err(),
        Array::matmul(&a, &a, U).unwrap_err(),
        Array::concat(&[&a, &Array::F64(seq(&[3, 3]))], 1, U).unwrap_err(),
    ];
    for e in errors {
        let msg = e.to_string();
        assert!(!msg.ends_with('.'), "{msg}");
        assert!(msg.starts_with(|c: char| c.is_lowercase()), "{msg}");
    }
}

/// Large enough that every kernel takes its parallel path.
const BIG: usize = 3 * crate::actors::tensor::ops::PAR_ELEMENTS + 8;

#[test]
fn parallel_elementwise_and_select_match_the_sequential_kernels() {
    let v: Vec<f64> = (0..BIG).map(|i| (i as f64 * 0.37).sin()).collect();
    let x = arr(&[BIG], &v);
    let y = arr(&[1], &[0.5f64]);
    let out = Array::binary(BinaryOp::Mul, &x, &y, U).unwrap();
    let want: Vec<f64> = v.iter().map(|a| a * 0.5).collect();
    assert_eq!(out, arr(&[BIG], &want));
    let out = Array::unary(UnaryOp::Relu, &x, U).unwrap();
    let want: Vec<f64> = v.iter().map(|&a| if a < 0.0 { 0.0 } else { a }).collect();
    assert_eq!(out, arr(&[BIG], &want));
    let cond = Array::compare_scalar(CompareOp::Gt, &x, Scalar::Float(0.0), U).unwrap();
    let zeros = Array::zeros(DType::F64, &[BIG as u64], U).unwrap();
    assert_eq!(
        Array::where_(&cond, &x, &zeros, U).unwrap(),
        arr(&[BIG], &want)
    );
    // A broadcast, transposed operand keeps the row-major result.
    let t = Array::reshape(&x, &[-1, 8], U).unwrap();
    let tt = Array::transpose(&t, None, U).unwrap();
    let row = arr(&[1, BIG / 8], &vec![1.0f64; BIG / 8]);
    let sum = Array::binary(BinaryOp::Add, &tt, &row, U).unwrap();
    let want = get::<f64>(&tt) + 1.0;
    assert_eq!(get::<f64>(&sum), &want);
    assert!(get::<f64>(&sum).is_standard_layout());
}

#[test]
fn parallel_reductions_match_the_sequential_ones() {
    let mut v: Vec<i64> = (0..BIG as i64).map(|i| (i * 7919) % 1000).collect();
    // The largest value twice, in different chunks: the first one wins.
    v[BIG - 3] = 5000;
    v[100] = 5000;
    let x = arr(&[BIG], &v);
    let r = |op, axis| Array::reduce(op, &x, axis, false, U).unwrap();
    assert_eq!(r(ReduceOp::Sum, None), arr(&[], &[v.iter().sum::<i64>()]));
    assert_eq!(r(ReduceOp::Argmax, None), arr(&[], &[100i64]));
    assert_eq!(r(ReduceOp::Max, None), arr(&[], &[5000i64]));
    assert_eq!(r(ReduceOp::Min, None), arr(&[], &[0i64]));
    let mean = v.iter().sum::<i64>() as f64 / BIG as f64;
    assert_eq!(r(ReduceOp::Mean, None), arr(&[], &[mean]));
    // NaN wins, at its first position.
    let mut f: Vec<f32> = (0..BIG).map(|i| i as f32).collect();
    f[BIG - 10] = f32::NAN;
    let xf = arr(&[BIG], &f);
    assert_eq!(
        Array::reduce(ReduceOp::Argmin, &xf, None, false, U).unwrap(),
        arr(&[], &[(BIG - 10) as i64])
    );
    // Over an axis, lanes in parallel.
    let m = Array::reshape(&x, &[-1, 1], U).unwrap();
    let m = Array::concat(&[&m, &m, &m], 1, U).unwrap();
    let s = Array::reduce(ReduceOp::Sum, &m, Some(-1), true, U).unwrap();
    let want: Vec<i64> = v.iter().map(|a| a * 3).collect();
    assert_eq!(s, arr(&[BIG, 1], &want));
}

#[test]
fn parallel_matmul_matches_a_naive_product() {
    for (m, k, n) in [(131, 160, 190), (4, 600, 700)] {
        let a = seq(&[m, k]).mapv(|v| (v * 0.01).cos());
        let b = seq(&[k, n]).mapv(|v| (v * 0.02).sin());
        let out = Array::matmul(&Array::F64(a.clone()), &Array::F64(b.clone()), U).unwrap();
        let a2 = a.into_dimensionality::<Ix2>().unwrap();
        let b2 = b.into_dimensionality::<Ix2>().unwrap();
        let want = naive_matmul(a2.view(), b2.view());
        let got = get::<f64>(&out)
            .clone()
            .into_dimensionality::<Ix2>()
            .unwrap();
        assert!(
            Zip::from(&got)
                .and(&want)
                .all(|g, w| (g - w).abs() < 1e-9 * k as f64),
            "{m}x{k}x{n}"
        );
        let ai = Array::cast(&Array::F64(seq(&[m, k])), DType::I64, U).unwrap();
        let bi = Array::cast(&Array::F64(seq(&[k, n])), DType::I64, U).unwrap();
        let out = Array::matmul(&ai, &bi, U).unwrap();
        let want = naive_matmul(
            get::<i64>(&ai).view().into_dimensionality().unwrap(),
            get::<i64>(&bi).view().into_dimensionality().unwrap(),
        );
        assert_eq!(get::<i64>(&out), &want.into_dyn());
    }
}
