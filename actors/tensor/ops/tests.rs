//! Unit tests of the compute layer.

use super::alloc::*;
use super::dtype::*;
use super::*;
use ndarray::{s, Array2, ArrayD, ArrayView2, Axis, Ix2, IxDyn, Zip};
use std::cell::RefCell;

const U: &Unlimited = &Unlimited;

fn arr<T: Elem>(shape: &[usize], v: &[T]) -> Array {
    T::wrap(ArrayD::from_shape_vec(IxDyn(shape), v.to_vec()).unwrap())
}

fn seq(shape: &[usize]) -> ArrayD<f64> {
    let n = shape.iter().product();
    ArrayD::from_shape_vec(IxDyn(shape), (0..n).map(|i| i as f64).collect()).unwrap()
}

fn get<T: Elem>(a: &Array) -> &ArrayD<T> {
    T::get(a).unwrap_or_else(|| panic!("expected {}, got {:?}", T::DTYPE, a.dtype()))
}

fn assert_close(actual: &Array, expected: &ArrayD<f64>) {
    let actual = get::<f64>(actual);
    assert_eq!(actual.shape(), expected.shape());
    for (a, e) in actual.iter().zip(expected) {
        let same = (a - e).abs() <= 1e-9 * (1.0 + e.abs()) || (a.is_nan() && e.is_nan());
        assert!(same, "{actual} != {expected}");
    }
}

fn err_text(r: Result<Array, OpError>) -> String {
    r.unwrap_err().to_string()
}

/// Records every reservation.
#[derive(Default)]
struct Recorder(RefCell<Vec<(&'static str, usize)>>);

impl Alloc for Recorder {
    fn reserve(&self, op: &'static str, bytes: usize) -> Result<(), OpError> {
        self.0.borrow_mut().push((op, bytes));
        Ok(())
    }
}

fn naive_matmul<T: Num>(a: ArrayView2<'_, T>, b: ArrayView2<'_, T>) -> Array2<T> {
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
