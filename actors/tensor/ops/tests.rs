//! Unit tests of the compute layer: dtypes, bytes and makers,
//! elementwise ops (the shared helpers are here); matmul and reductions
//! in `tests_reduce.rs`, layout, allocation and parallelism in
//! `tests_layout.rs`.

use super::alloc::*;
use super::dtype::*;
use super::*;
use ndarray::{Array2, ArrayD, ArrayView2, IxDyn, Zip};
use std::cell::RefCell;

pub(super) const U: &Unlimited = &Unlimited;

pub(super) fn arr<T: Elem>(shape: &[usize], v: &[T]) -> Array {
    T::wrap(ArrayD::from_shape_vec(IxDyn(shape), v.to_vec()).unwrap())
}

pub(super) fn seq(shape: &[usize]) -> ArrayD<f64> {
    let n = shape.iter().product();
    ArrayD::from_shape_vec(IxDyn(shape), (0..n).map(|i| i as f64).collect()).unwrap()
}

pub(super) fn get<T: Elem>(a: &Array) -> &ArrayD<T> {
    T::get(a).unwrap_or_else(|| panic!("expected {}, got {:?}", T::DTYPE, a.dtype()))
}

pub(super) fn assert_close(actual: &Array, expected: &ArrayD<f64>) {
    let actual = get::<f64>(actual);
    assert_eq!(actual.shape(), expected.shape());
    for (a, e) in actual.iter().zip(expected) {
        let same = (a - e).abs() <= 1e-9 * (1.0 + e.abs()) || (a.is_nan() && e.is_nan());
        assert!(same, "{actual} != {expected}");
    }
}

pub(super) fn err_text(r: Result<Array, OpError>) -> String {
    r.unwrap_err().to_string()
}

/// Records every reservation.
#[derive(Default)]
pub(super) struct Recorder(pub(super) RefCell<Vec<(&'static str, usize)>>);

impl Alloc for Recorder {
    fn reserve(&self, op: &'static str, bytes: usize) -> Result<(), OpError> {
        self.0.borrow_mut().push((op, bytes));
        Ok(())
    }
}

pub(super) fn naive_matmul<T: Num>(a: ArrayView2<'_, T>, b: ArrayView2<'_, T>) -> Array2<T> {
    let (m, k) = a.dim();
    let n = b.dim().1;
    Array2::from_shape_fn((m, n), |(i, j)| {
        (0..k).fold(T::ZERO, |s, l| T::add(s, T::mul(a[[i, l]], b[[l, j]])))
    })
}

// --- dtypes, bytes, constructors ------------------------------------

#[test]
fn dtype_names_round_trip_through_parse_and_display() {
    for d in DType::ALL {
        assert_eq!(DType::parse(d.name()), Some(d));
        assert_eq!(d.to_string(), d.name());
    }
    assert_eq!(DType::parse("float32"), Some(DType::F32));
    assert_eq!(DType::parse("complex64"), None);
    let sizes: Vec<usize> = DType::ALL.iter().map(|d| d.size()).collect();
    assert_eq!(sizes, [4, 8, 4, 8, 1, 2, 2, 1, 1, 2, 2, 4, 8]);
    assert!(DType::F64.is_float() && !DType::I64.is_float());
}

#[test]
fn bytes_round_trip_for_every_dtype() {
    let arrays = [
        arr(
            &[2, 3],
            &[1.5f32, -0.0, f32::MAX, f32::MIN_POSITIVE, -3.25, 7.0],
        ),
        arr(&[2, 3], &[1.5f64, -0.0, f64::MAX, 1e-300, -3.25, 7.0]),
        arr(&[2, 3], &[1i32, -1, i32::MAX, i32::MIN, 0, 42]),
        arr(&[3, 2], &[1i64, -1, i64::MAX, i64::MIN, 0, 42]),
        arr(&[6], &[true, false, true, true, false, false]),
        arr::<f64>(&[0, 4], &[]),
        arr(&[], &[9i64]),
    ];
    for a in &arrays {
        let bytes = a.to_le_bytes();
        assert_eq!(bytes.len(), a.nbytes());
        let shape: Vec<u64> = a.shape().iter().map(|&d| d as u64).collect();
        let back = Array::from_le_bytes(a.dtype(), &shape, &bytes, U).unwrap();
        assert_eq!(&back, a);
        let mut buf = vec![0xAA; a.nbytes()];
        a.write_le_bytes(&mut buf).unwrap();
        assert_eq!(buf, bytes);
    }
    assert_eq!(arr(&[1], &[1.0f32]).to_le_bytes(), [0, 0, 0x80, 0x3f]);
    assert_eq!(arr(&[1], &[-2i32]).to_le_bytes(), [0xfe, 0xff, 0xff, 0xff]);
    assert_eq!(arr(&[2], &[true, false]).to_le_bytes(), [1, 0]);
}

#[test]
fn to_le_bytes_uses_logical_order_for_transposed_memory() {
    let t = ArrayD::from_shape_vec(IxDyn(&[2, 3]), (0..6).collect::<Vec<i32>>())
        .unwrap()
        .reversed_axes();
    let a = Array::I32(t);
    let back = Array::from_le_bytes(DType::I32, &[3, 2], &a.to_le_bytes(), U).unwrap();
    assert_eq!(
        get::<i32>(&back).iter().copied().collect::<Vec<_>>(),
        [0, 3, 1, 4, 2, 5]
    );
    // Ops on non-standard inputs still give standard-layout outputs.
    let neg = Array::unary(UnaryOp::Neg, &a, U).unwrap();
    assert!(get::<i32>(&neg).is_standard_layout());
    assert_eq!(
        get::<i32>(&neg).as_slice().unwrap(),
        [0, -3, -1, -4, -2, -5]
    );
}

#[test]
fn from_le_bytes_rejects_a_wrong_length_naming_both_numbers() {
    let err = Array::from_le_bytes(DType::F32, &[2, 3], &[0; 20], U).unwrap_err();
    assert_eq!(
        err,
        OpError::DataLength {
            expected: 24,
            actual: 20
        }
    );
    assert_eq!(
        err.to_string(),
        "data has 20 bytes but the shape and dtype require 24"
    );
}

#[test]
fn from_le_bytes_rejects_bool_bytes_other_than_zero_and_one() {
    let err = Array::from_le_bytes(DType::Bool, &[3], &[0, 1, 2], U).unwrap_err();
    assert_eq!(err, OpError::InvalidBool);
}

#[test]
fn from_le_bytes_rejects_shapes_whose_size_overflows() {
    for (dtype, shape) in [
        (DType::F32, vec![u64::MAX, 2]),
        (DType::F64, vec![1 << 62, 4]),
        (DType::Bool, vec![0, 1 << 40, 1 << 40]),
    ] {
        let err = Array::from_le_bytes(dtype, &shape, &[], U).unwrap_err();
        assert_eq!(err, OpError::ShapeOverflow { shape });
    }
}

#[test]
fn write_le_bytes_rejects_a_buffer_of_the_wrong_length() {
    let a = arr(&[2], &[1i64, 2]);
    assert_eq!(
        a.write_le_bytes(&mut [0; 15]),
        Err(OpError::DataLength {
            expected: 16,
            actual: 15
        })
    );
}

#[test]
fn zeros_ones_and_full_fill_every_element() {
    for d in DType::ALL {
        let z = Array::zeros(d, &[2, 3], U).unwrap();
        let o = Array::ones(d, &[2, 3], U).unwrap();
        assert_eq!((z.dtype(), z.shape()), (d, &[2, 3][..]));
        assert_eq!(
            Array::reduce(ReduceOp::Max, &z, None, false, U)
                .unwrap()
                .to_scalar_f64(),
            Ok(0.0)
        );
        assert_eq!(
            Array::reduce(ReduceOp::Min, &o, None, false, U)
                .unwrap()
                .to_scalar_f64(),
            Ok(1.0)
        );
    }
    let f = Array::full(DType::I64, &[2], Scalar::Float(3.0), U).unwrap();
    assert_eq!(f, arr(&[2], &[3i64, 3]));
    let f = Array::full(DType::F32, &[], Scalar::Int(-2), U).unwrap();
    assert_eq!(f, arr(&[], &[-2.0f32]));
    let f = Array::full(DType::Bool, &[1], Scalar::Bool(true), U).unwrap();
    assert_eq!(f, arr(&[1], &[true]));
}

#[test]
fn full_rejects_scalars_that_do_not_fit_the_dtype() {
    let e = Array::full(DType::I32, &[1], Scalar::Float(0.5), U).unwrap_err();
    assert_eq!(
        e.to_string(),
        "full: scalar 0.5 is not an integer that fits in i32"
    );
    let e = Array::full(DType::I32, &[1], Scalar::Int(1 << 40), U).unwrap_err();
    assert_eq!(
        e.to_string(),
        "full: scalar 1099511627776 does not fit in i32"
    );
    let e = Array::full(DType::I64, &[1], Scalar::Float(9.3e18), U).unwrap_err();
    assert!(matches!(e, OpError::InvalidArgument { .. }));
    let e = Array::full(DType::F32, &[1], Scalar::Bool(true), U).unwrap_err();
    assert_eq!(
        e,
        OpError::DTypeMismatch {
            op: "full",
            lhs: DType::F32,
            rhs: DType::Bool
        }
    );
    let e = Array::full(DType::Bool, &[1], Scalar::Int(1), U).unwrap_err();
    assert!(matches!(e, OpError::DTypeMismatch { .. }));
}

#[test]
fn arange_matches_numpy() {
    let a = |start, stop, step| Array::arange(DType::F64, start, stop, step, U).unwrap();
    assert_close(&a(0.0, 5.0, 1.0), &seq(&[5]));
    assert_close(
        &a(0.0, 1.0, 0.3),
        &ArrayD::from_shape_vec(IxDyn(&[4]), vec![0.0, 0.3, 0.6, 0.9]).unwrap(),
    );
    assert_close(
        &a(5.0, 0.0, -2.0),
        &ArrayD::from_shape_vec(IxDyn(&[3]), vec![5.0, 3.0, 1.0]).unwrap(),
    );
    assert_eq!(a(3.0, 1.0, 1.0).shape(), [0]);
    let i = Array::arange(DType::I32, -2.0, 2.0, 1.0, U).unwrap();
    assert_eq!(i, arr(&[4], &[-2i32, -1, 0, 1]));
}

#[test]
fn arange_rejects_zero_step_bool_and_huge_lengths() {
    let e = Array::arange(DType::F64, 0.0, 1.0, 0.0, U).unwrap_err();
    assert_eq!(e.to_string(), "arange: step must not be zero");
    let e = Array::arange(DType::Bool, 0.0, 1.0, 1.0, U).unwrap_err();
    assert_eq!(
        e,
        OpError::Unsupported {
            op: "arange",
            dtype: DType::Bool
        }
    );
    let e = Array::arange(DType::F64, 0.0, 1e300, 1e-300, U).unwrap_err();
    assert!(matches!(e, OpError::ShapeOverflow { .. }));
    let e = Array::arange(DType::F64, 0.0, f64::NAN, 1.0, U).unwrap_err();
    assert!(matches!(e, OpError::InvalidArgument { .. }));
}

#[test]
fn random_uniform_is_deterministic_and_within_bounds() {
    let draw = |dtype, seed| Array::random_uniform(dtype, &[1000], -3.0, 3.0, seed, U).unwrap();
    assert_eq!(draw(DType::F64, 7), draw(DType::F64, 7));
    assert_ne!(draw(DType::F64, 7), draw(DType::F64, 8));
    assert!(get::<f64>(&draw(DType::F64, 7))
        .iter()
        .all(|v| (-3.0..3.0).contains(v)));
    assert!(get::<f32>(&draw(DType::F32, 7))
        .iter()
        .all(|v| (-3.0..3.0).contains(v)));
    let ints = draw(DType::I32, 1);
    let ints = get::<i32>(&ints);
    assert!(ints.iter().all(|v| (-3..3).contains(v)));
    assert!(
        (-3..3).all(|k| ints.iter().any(|&v| v == k)),
        "every value drawn"
    );
    assert_eq!(draw(DType::I64, 3), draw(DType::I64, 3));
}

#[test]
fn random_uniform_rejects_bad_bounds() {
    let e = Array::random_uniform(DType::F64, &[2], 1.0, 1.0, 0, U).unwrap_err();
    assert!(matches!(e, OpError::InvalidArgument { .. }), "{e}");
    let e = Array::random_uniform(DType::I32, &[2], 0.5, 4.0, 0, U).unwrap_err();
    assert!(matches!(e, OpError::InvalidArgument { .. }), "{e}");
    let e = Array::random_uniform(DType::Bool, &[2], 0.0, 1.0, 0, U).unwrap_err();
    assert!(matches!(e, OpError::Unsupported { .. }));
}

#[test]
fn random_normal_has_the_requested_moments() {
    let a = Array::random_normal(DType::F64, &[20000], 2.0, 0.5, 42, U).unwrap();
    assert_eq!(
        a,
        Array::random_normal(DType::F64, &[20000], 2.0, 0.5, 42, U).unwrap()
    );
    let x = get::<f64>(&a);
    let mean = x.mean().unwrap();
    let std = x.std(0.0);
    assert!(
        (mean - 2.0).abs() < 0.02 && (std - 0.5).abs() < 0.02,
        "{mean} {std}"
    );
    let f = Array::random_normal(DType::F32, &[3, 4], 0.0, 1.0, 1, U).unwrap();
    assert_eq!((f.dtype(), f.shape()), (DType::F32, &[3, 4][..]));
    let e = Array::random_normal(DType::I32, &[2], 0.0, 1.0, 0, U).unwrap_err();
    assert_eq!(e.to_string(), "random_normal: not supported for dtype i32");
    let e = Array::random_normal(DType::F64, &[2], 0.0, -1.0, 0, U).unwrap_err();
    assert!(matches!(e, OpError::InvalidArgument { .. }));
}

// --- binary ------------------------------------------------------------

#[test]
fn add_broadcasts_column_against_row() {
    let (a, b) = (seq(&[3, 1]), seq(&[1, 4]) * 10.0);
    let out = Array::binary(
        BinaryOp::Add,
        &Array::F64(a.clone()),
        &Array::F64(b.clone()),
        U,
    )
    .unwrap();
    assert_close(&out, &(&a + &b));
    assert_eq!(out.shape(), [3, 4]);
}

#[test]
fn add_broadcasts_trailing_vector_against_matrix() {
    let (a, b) = (seq(&[2, 3]), seq(&[3]) + 100.0);
    let out = Array::binary(
        BinaryOp::Add,
        &Array::F64(a.clone()),
        &Array::F64(b.clone()),
        U,
    )
    .unwrap();
    assert_close(&out, &(&a + &b));
    let out = Array::binary(
        BinaryOp::Sub,
        &Array::F64(b.clone()),
        &Array::F64(a.clone()),
        U,
    )
    .unwrap();
    assert_close(&out, &(&b - &a));
}

#[test]
fn rank_zero_operand_broadcasts_against_any_shape() {
    let s = arr(&[], &[2.0f64]);
    let x = seq(&[2, 2, 2]);
    let out = Array::binary(BinaryOp::Mul, &s, &Array::F64(x.clone()), U).unwrap();
    assert_close(&out, &(&x * 2.0));
    let out = Array::binary(BinaryOp::Sub, &Array::F64(x.clone()), &s, U).unwrap();
    assert_close(&out, &(&x - 2.0));
    let out = Array::binary(BinaryOp::Add, &s, &s, U).unwrap();
    assert_eq!(out, arr(&[], &[4.0f64]));
}

#[test]
fn zero_size_dimension_broadcasts_to_an_empty_result() {
    let empty = arr::<f64>(&[0, 3], &[]);
    let row = Array::F64(seq(&[1, 3]));
    assert_eq!(
        Array::binary(BinaryOp::Add, &empty, &row, U)
            .unwrap()
            .shape(),
        [0, 3]
    );
    assert_eq!(
        Array::binary(BinaryOp::Add, &row, &empty, U)
            .unwrap()
            .shape(),
        [0, 3]
    );
    let col = arr::<f64>(&[2, 0, 1], &[]);
    assert_eq!(
        Array::binary(BinaryOp::Mul, &col, &row, U).unwrap().shape(),
        [2, 0, 3]
    );
    let e = Array::binary(BinaryOp::Mul, &arr::<f64>(&[2, 1, 0], &[]), &row, U).unwrap_err();
    assert!(matches!(e, OpError::ShapeMismatch { .. }));
    // A zero divisor that is never used (empty output) is not an error.
    let zero = arr(&[1], &[0i32]);
    let none = arr::<i32>(&[0], &[]);
    assert_eq!(
        Array::binary(BinaryOp::Div, &none, &zero, U)
            .unwrap()
            .shape(),
        [0]
    );
}

#[test]
fn incompatible_shapes_error_names_both_shapes() {
    let (a, b) = (Array::F64(seq(&[2, 3])), Array::F64(seq(&[4])));
    let e = Array::binary(BinaryOp::Add, &a, &b, U).unwrap_err();
    assert_eq!(
        e,
        OpError::ShapeMismatch {
            op: "add",
            lhs: vec![2, 3],
            rhs: vec![4]
        }
    );
    assert_eq!(e.to_string(), "add: cannot broadcast shapes [2, 3] and [4]");
    let e = Array::compare(CompareOp::Lt, &b, &a, U).unwrap_err();
    assert_eq!(e.to_string(), "lt: cannot broadcast shapes [4] and [2, 3]");
}

#[test]
fn binary_promotes_mismatched_dtypes_as_numpy() {
    let sum = Array::binary(
        BinaryOp::Add,
        &arr(&[1], &[1.5f32]),
        &arr(&[1], &[1.0f64]),
        U,
    )
    .unwrap();
    assert_eq!(sum, arr(&[1], &[2.5f64]));
    let e = Array::binary(BinaryOp::Sub, &arr(&[1], &[true]), &arr(&[1], &[false]), U).unwrap_err();
    assert_eq!(e.to_string(), "sub: not supported for dtype bool");
}

#[test]
fn every_binary_op_matches_ndarray_on_floats() {
    let a = ArrayD::from_shape_vec(IxDyn(&[2, 3]), vec![1.5, -2.0, 3.0, 0.25, 4.0, -1.0]).unwrap();
    let b = ArrayD::from_shape_vec(IxDyn(&[3]), vec![2.0, 0.5, -3.0]).unwrap();
    let bb = b.broadcast(IxDyn(&[2, 3])).unwrap();
    type F2 = fn(f64, f64) -> f64;
    let cases: [(BinaryOp, F2); 7] = [
        (BinaryOp::Add, |x, y| x + y),
        (BinaryOp::Sub, |x, y| x - y),
        (BinaryOp::Mul, |x, y| x * y),
        (BinaryOp::Div, |x, y| x / y),
        (BinaryOp::Pow, f64::powf),
        (BinaryOp::Maximum, f64::max),
        (BinaryOp::Minimum, f64::min),
    ];
    for (op, f) in cases {
        let out = Array::binary(op, &Array::F64(a.clone()), &Array::F64(b.clone()), U).unwrap();
        let mut expected = a.clone();
        Zip::from(&mut expected)
            .and(&bb)
            .for_each(|x, &y| *x = f(*x, y));
        assert_close(&out, &expected);
    }
    let f32s = Array::binary(
        BinaryOp::Mul,
        &arr(&[2], &[1.5f32, 2.0]),
        &arr(&[1], &[2.0f32]),
        U,
    );
    assert_eq!(f32s.unwrap(), arr(&[2], &[3.0f32, 4.0]));
}

#[test]
fn integer_division_truncates_toward_zero_and_wraps() {
    let a = arr(&[3], &[-7i32, 7, i32::MIN]);
    let b = arr(&[3], &[2i32, -2, -1]);
    let out = Array::binary(BinaryOp::Div, &a, &b, U).unwrap();
    assert_eq!(out, arr(&[3], &[-3i32, -3, i32::MIN]));
}

#[test]
fn integer_division_by_zero_is_rejected() {
    let a = arr(&[3], &[1i64, 2, 3]);
    let b = arr(&[3], &[1i64, 0, 3]);
    let e = Array::binary(BinaryOp::Div, &a, &b, U).unwrap_err();
    assert_eq!(e, OpError::DivisionByZero { op: "div" });
    assert_eq!(e.to_string(), "div: integer division by zero");
    let e = Array::binary_scalar(BinaryOp::Div, &a, Scalar::Int(0), false, U).unwrap_err();
    assert_eq!(e, OpError::DivisionByZero { op: "div" });
    let e = Array::binary_scalar(BinaryOp::Div, &b, Scalar::Int(6), true, U).unwrap_err();
    assert_eq!(e, OpError::DivisionByZero { op: "div" });
    // Floats follow IEEE 754.
    let f = Array::binary_scalar(
        BinaryOp::Div,
        &arr(&[1], &[1.0f64]),
        Scalar::Int(0),
        false,
        U,
    );
    assert_eq!(f.unwrap(), arr(&[1], &[f64::INFINITY]));
}

#[test]
fn integer_overflow_wraps() {
    let a = arr(&[2], &[i32::MAX, i32::MIN]);
    let one = arr(&[], &[1i32]);
    assert_eq!(
        Array::binary(BinaryOp::Add, &a, &one, U).unwrap(),
        arr(&[2], &[i32::MIN, i32::MIN + 1])
    );
    assert_eq!(
        Array::binary(BinaryOp::Sub, &a, &one, U).unwrap(),
        arr(&[2], &[i32::MAX - 1, i32::MAX])
    );
    let big = arr(&[1], &[i64::MAX]);
    assert_eq!(
        Array::binary(BinaryOp::Mul, &big, &big, U).unwrap(),
        arr(&[1], &[1i64])
    );
}

#[test]
fn integer_pow_multiplies_and_rejects_negative_exponents() {
    let a = arr(&[4], &[2i64, 3, -2, 2]);
    let b = arr(&[4], &[10i64, 0, 3, 64]);
    assert_eq!(
        Array::binary(BinaryOp::Pow, &a, &b, U).unwrap(),
        arr(&[4], &[1024i64, 1, -8, 0])
    );
    let e = Array::binary_scalar(BinaryOp::Pow, &a, Scalar::Int(-1), false, U).unwrap_err();
    assert_eq!(
        e.to_string(),
        "pow: integers cannot be raised to negative powers"
    );
}

#[test]
fn float_maximum_and_minimum_propagate_nan() {
    let a = arr(&[3], &[f64::NAN, 1.0, 5.0]);
    let b = arr(&[3], &[1.0, f64::NAN, 2.0]);
    for op in [BinaryOp::Maximum, BinaryOp::Minimum] {
        let out = Array::binary(op, &a, &b, U).unwrap();
        let out = get::<f64>(&out);
        assert!(out[0].is_nan() && out[1].is_nan());
    }
    let out = Array::binary(BinaryOp::Maximum, &a, &b, U).unwrap();
    assert_eq!(get::<f64>(&out)[2], 5.0);
}

#[test]
fn bool_add_is_or_mul_is_and_and_sub_is_unsupported() {
    let a = arr(&[4], &[false, false, true, true]);
    let b = arr(&[4], &[false, true, false, true]);
    let or = arr(&[4], &[false, true, true, true]);
    let and = arr(&[4], &[false, false, false, true]);
    assert_eq!(Array::binary(BinaryOp::Add, &a, &b, U).unwrap(), or);
    assert_eq!(Array::binary(BinaryOp::Maximum, &a, &b, U).unwrap(), or);
    assert_eq!(Array::binary(BinaryOp::Mul, &a, &b, U).unwrap(), and);
    assert_eq!(Array::binary(BinaryOp::Minimum, &a, &b, U).unwrap(), and);
    for op in [BinaryOp::Sub, BinaryOp::Div, BinaryOp::Pow] {
        let e = Array::binary(op, &a, &b, U).unwrap_err();
        assert_eq!(
            e,
            OpError::Unsupported {
                op: op.name(),
                dtype: DType::Bool
            }
        );
    }
    let e = Array::binary(BinaryOp::Sub, &a, &b, U).unwrap_err();
    assert_eq!(e.to_string(), "sub: not supported for dtype bool");
}

#[test]
fn binary_scalar_puts_the_scalar_on_the_requested_side() {
    let x = arr(&[3], &[1i32, 2, 3]);
    let right = Array::binary_scalar(BinaryOp::Sub, &x, Scalar::Int(10), false, U).unwrap();
    let left = Array::binary_scalar(BinaryOp::Sub, &x, Scalar::Int(10), true, U).unwrap();
    assert_eq!(right, arr(&[3], &[-9i32, -8, -7]));
    assert_eq!(left, arr(&[3], &[9i32, 8, 7]));
    let f = Array::binary_scalar(
        BinaryOp::Pow,
        &arr(&[2], &[2.0f32, 3.0]),
        Scalar::Float(2.0),
        true,
        U,
    );
    assert_eq!(f.unwrap(), arr(&[2], &[4.0f32, 8.0]));
}

#[test]
fn binary_scalar_converts_integral_floats_and_rejects_fractions() {
    let x = arr(&[2], &[1i64, 2]);
    let ok = Array::binary_scalar(BinaryOp::Mul, &x, Scalar::Float(3.0), false, U).unwrap();
    assert_eq!(ok, arr(&[2], &[3i64, 6]));
    let e = Array::binary_scalar(BinaryOp::Mul, &x, Scalar::Float(0.5), false, U).unwrap_err();
    assert_eq!(
        e.to_string(),
        "mul: scalar 0.5 is not an integer that fits in i64"
    );
    let e = Array::binary_scalar(BinaryOp::Add, &x, Scalar::Bool(true), false, U).unwrap_err();
    assert!(matches!(e, OpError::DTypeMismatch { .. }));
    let b = Array::binary_scalar(
        BinaryOp::Add,
        &arr(&[1], &[false]),
        Scalar::Bool(true),
        false,
        U,
    );
    assert_eq!(b.unwrap(), arr(&[1], &[true]));
}

// --- unary & compare ---------------------------------------------------

#[test]
fn unary_float_ops_match_std() {
    let x = ArrayD::from_shape_vec(IxDyn(&[2, 2]), vec![-1.5, 0.0, 0.5, 4.0]).unwrap();
    type F1 = fn(f64) -> f64;
    let cases: [(UnaryOp, F1); 8] = [
        (UnaryOp::Neg, |v| -v),
        (UnaryOp::Abs, f64::abs),
        (UnaryOp::Exp, f64::exp),
        (UnaryOp::Log, f64::ln),
        (UnaryOp::Sqrt, f64::sqrt),
        (UnaryOp::Relu, |v| v.max(0.0)),
        (UnaryOp::Sigmoid, |v| 1.0 / (1.0 + (-v).exp())),
        (UnaryOp::Tanh, f64::tanh),
    ];
    for (op, f) in cases {
        let out = Array::unary(op, &Array::F64(x.clone()), U).unwrap();
        let expected = x.mapv(f);
        let out = get::<f64>(&out);
        for (a, e) in out.iter().zip(&expected) {
            assert!(
                a == e || (a.is_nan() && e.is_nan()),
                "{op:?}: {out} != {expected}"
            );
        }
    }
    let s = Array::unary(UnaryOp::Sigmoid, &arr(&[2], &[0.0f32, -1000.0]), U).unwrap();
    assert_eq!(s, arr(&[2], &[0.5f32, 0.0]));
}

#[test]
fn unary_on_integers_wraps_and_rejects_float_only_ops() {
    let x = arr(&[3], &[i32::MIN, -2, 3]);
    assert_eq!(
        Array::unary(UnaryOp::Neg, &x, U).unwrap(),
        arr(&[3], &[i32::MIN, 2, -3])
    );
    assert_eq!(
        Array::unary(UnaryOp::Abs, &x, U).unwrap(),
        arr(&[3], &[i32::MIN, 2, 3])
    );
    assert_eq!(
        Array::unary(UnaryOp::Relu, &x, U).unwrap(),
        arr(&[3], &[0i32, 0, 3])
    );
    for op in [
        UnaryOp::Exp,
        UnaryOp::Log,
        UnaryOp::Sqrt,
        UnaryOp::Sigmoid,
        UnaryOp::Tanh,
    ] {
        let e = Array::unary(op, &x, U).unwrap_err();
        assert_eq!(
            e,
            OpError::Unsupported {
                op: op.name(),
                dtype: DType::I32
            }
        );
    }
    let e = Array::unary(UnaryOp::Exp, &x, U).unwrap_err();
    assert_eq!(e.to_string(), "exp: not supported for dtype i32");
    let e = Array::unary(UnaryOp::Neg, &arr(&[1], &[true]), U).unwrap_err();
    assert_eq!(
        e,
        OpError::Unsupported {
            op: "neg",
            dtype: DType::Bool
        }
    );
}

#[test]
fn compare_broadcasts_and_returns_bool() {
    let a = arr(&[2, 2], &[1i64, 2, 3, 4]);
    let b = arr(&[2], &[2i64, 2]);
    let expect = |v: [bool; 4]| arr(&[2, 2], &v);
    assert_eq!(
        Array::compare(CompareOp::Eq, &a, &b, U).unwrap(),
        expect([false, true, false, false])
    );
    assert_eq!(
        Array::compare(CompareOp::Ne, &a, &b, U).unwrap(),
        expect([true, false, true, true])
    );
    assert_eq!(
        Array::compare(CompareOp::Lt, &a, &b, U).unwrap(),
        expect([true, false, false, false])
    );
    assert_eq!(
        Array::compare(CompareOp::Le, &a, &b, U).unwrap(),
        expect([true, true, false, false])
    );
    assert_eq!(
        Array::compare(CompareOp::Gt, &a, &b, U).unwrap(),
        expect([false, false, true, true])
    );
    assert_eq!(
        Array::compare(CompareOp::Ge, &a, &b, U).unwrap(),
        expect([false, true, true, true])
    );
    let s = Array::compare_scalar(CompareOp::Gt, &a, Scalar::Int(2), U).unwrap();
    assert_eq!(s, expect([false, false, true, true]));
    let nan = arr(&[2], &[f32::NAN, 1.0]);
    assert_eq!(
        Array::compare(CompareOp::Eq, &nan, &nan, U).unwrap(),
        arr(&[2], &[false, true])
    );
    assert_eq!(
        Array::compare(CompareOp::Ne, &nan, &nan, U).unwrap(),
        arr(&[2], &[true, false])
    );
    // Mixed dtypes compare in their promoted dtype (f64 here).
    let mixed = Array::compare(CompareOp::Eq, &a, &arr(&[1], &[2.0f32]), U).unwrap();
    assert_eq!(mixed, expect([false, true, false, false]));
}
