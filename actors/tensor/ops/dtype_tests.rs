//! The dtypes: NumPy's promotion table, casts between every pair, and
//! every dtype through the generic kernels.

use half::{bf16, f16};
use ndarray::ArrayD;

use super::dtype::*;
use super::{BinaryOp, CompareOp, ReduceOp, UnaryOp, Unlimited};

const U: &Unlimited = &Unlimited;

/// `np.result_type(a, b)` for every pair of NumPy's dtypes (NumPy 2.4),
/// rows and columns in the order of [`NUMPY`].
const RESULT_TYPE: [&str; 12] = [
    // f32
    "f32 f64 f64 f64 f32 f32 f32 f32 f32 f32 f64 f64",
    // f64
    "f64 f64 f64 f64 f64 f64 f64 f64 f64 f64 f64 f64",
    // i32
    "f64 f64 i32 i64 i32 f64 i32 i32 i32 i32 i64 f64",
    // i64
    "f64 f64 i64 i64 i64 f64 i64 i64 i64 i64 i64 f64",
    // bool
    "f32 f64 i32 i64 bool f16 u8 i8 i16 u16 u32 u64",
    // f16
    "f32 f64 f64 f64 f16 f16 f16 f16 f32 f32 f64 f64",
    // u8
    "f32 f64 i32 i64 u8 f16 u8 i16 i16 u16 u32 u64",
    // i8
    "f32 f64 i32 i64 i8 f16 i16 i8 i16 i32 i64 f64",
    // i16
    "f32 f64 i32 i64 i16 f32 i16 i16 i16 i32 i64 f64",
    // u16
    "f32 f64 i32 i64 u16 f32 u16 i32 i32 u16 u32 u64",
    // u32
    "f64 f64 i64 i64 u32 f64 u32 i64 i64 u32 u32 u64",
    // u64
    "f64 f64 f64 f64 u64 f64 u64 f64 f64 u64 u64 u64",
];

/// Every dtype NumPy has: all but bf16, in the schema's order.
const NUMPY: [DType; 12] = [
    DType::F32,
    DType::F64,
    DType::I32,
    DType::I64,
    DType::Bool,
    DType::F16,
    DType::U8,
    DType::I8,
    DType::I16,
    DType::U16,
    DType::U32,
    DType::U64,
];

#[test]
fn promotion_matches_numpys_result_type_for_every_pair() {
    for (a, row) in NUMPY.iter().zip(RESULT_TYPE) {
        let row: Vec<DType> = row.split(' ').map(|n| DType::parse(n).unwrap()).collect();
        for (b, want) in NUMPY.iter().zip(row) {
            assert_eq!(a.promote(*b), want, "result_type({a}, {b})");
        }
    }
}

#[test]
fn bf16_promotes_in_f16s_place_and_with_f16_to_f32() {
    for d in DType::ALL {
        let want = match d {
            DType::Bf16 | DType::Bool => DType::Bf16,
            DType::F16 => DType::F32,
            _ => DType::F16.promote(d),
        };
        // f16's row gives f16 for 8-bit integers: bf16 there.
        let want = if want == DType::F16 {
            DType::Bf16
        } else {
            want
        };
        assert_eq!(DType::Bf16.promote(d), want, "bf16 with {d}");
        assert_eq!(d.promote(DType::Bf16), want, "{d} with bf16");
    }
}

#[test]
fn numpy_names_parse_to_every_dtype() {
    for d in DType::ALL {
        assert_eq!(DType::parse(d.name()), Some(d));
        if let Some(n) = d.numpy_name() {
            assert_eq!(DType::parse(n), Some(d));
        }
    }
    assert_eq!(DType::parse("bfloat16"), Some(DType::Bf16));
    assert_eq!(DType::Bf16.numpy_name(), None);
    assert_eq!(DType::U64.int_bounds(), Some((0, u64::MAX as i128)));
    assert_eq!(DType::I8.int_range(), Some((-128.0, 128.0)));
}

fn of(d: DType, v: &[f64]) -> Array {
    Array::cast(
        &Array::F64(ArrayD::from_shape_vec(vec![v.len()], v.to_vec()).unwrap()),
        d,
        U,
    )
    .unwrap()
}

fn as_f64(a: &Array) -> Vec<f64> {
    match Array::cast(a, DType::F64, U).unwrap() {
        Array::F64(x) => x.iter().copied().collect(),
        _ => unreachable!(),
    }
}

#[test]
fn casts_between_every_pair_keep_values_every_dtype_holds() {
    // Integers from 0 to 100 are exact in every dtype but bool.
    let small: Vec<f64> = (0..=100).map(f64::from).collect();
    for from in DType::ALL {
        for to in DType::ALL {
            let src = of(from, &small);
            let out = Array::cast(&src, to, U).unwrap();
            assert_eq!(out.dtype(), to, "{from} -> {to}");
            assert_eq!(out.shape(), [101]);
            let want: Vec<f64> = if from == DType::Bool || to == DType::Bool {
                small.iter().map(|&v| f64::from(v != 0.0)).collect()
            } else {
                small.clone()
            };
            assert_eq!(as_f64(&out), want, "{from} -> {to}");
        }
    }
}

#[test]
fn casts_follow_numpy_astype_at_the_edges() {
    let cast = |a: &Array, d| Array::cast(a, d, U).unwrap();
    // Integer to integer wraps (two's complement), as NumPy.
    let ints = Array::I64(ArrayD::from_shape_vec(vec![3], vec![300, -1, 65_536]).unwrap());
    assert_eq!(as_f64(&cast(&ints, DType::U8)), [44.0, 255.0, 0.0]);
    assert_eq!(as_f64(&cast(&ints, DType::I8)), [44.0, -1.0, 0.0]);
    assert_eq!(
        cast(&ints, DType::U64),
        Array::U64(ArrayD::from_shape_vec(vec![3], vec![300, u64::MAX, 65_536]).unwrap())
    );
    let big = Array::U64(ArrayD::from_shape_vec(vec![1], vec![u64::MAX]).unwrap());
    assert_eq!(as_f64(&cast(&big, DType::I64)), [-1.0]);
    assert_eq!(as_f64(&cast(&big, DType::F32)), [u64::MAX as f32 as f64]);
    // Float to integer truncates toward zero; out of range saturates and
    // NaN gives 0 (NumPy leaves both undefined).
    let floats = of(DType::F64, &[2.9, -2.9, 1e10, -1e10, f64::NAN]);
    assert_eq!(
        as_f64(&cast(&floats, DType::I8)),
        [2.0, -2.0, 127.0, -128.0, 0.0]
    );
    assert_eq!(
        as_f64(&cast(&floats, DType::U16)),
        [2.0, 0.0, 65535.0, 0.0, 0.0]
    );
    // To a narrower float: nearest, overflowing to infinity, as NumPy.
    let wide = of(DType::F64, &[1e6, 1.0 / 3.0, 65504.0]);
    let h = cast(&wide, DType::F16);
    assert_eq!(
        h,
        Array::F16(
            ArrayD::from_shape_vec(
                vec![3],
                vec![f16::INFINITY, f16::from_f64(1.0 / 3.0), f16::MAX]
            )
            .unwrap()
        )
    );
    let b = cast(&wide, DType::Bf16);
    assert_eq!(as_f64(&b)[0], 999_424.0, "bf16 keeps 8 bits of mantissa");
    // To bool: nonzero is true, NaN too.
    assert_eq!(
        as_f64(&cast(&floats, DType::Bool)),
        [1.0, 1.0, 1.0, 1.0, 1.0]
    );
    assert_eq!(
        as_f64(&cast(&of(DType::F16, &[0.0, -0.0]), DType::Bool)),
        [0.0, 0.0]
    );
}

#[test]
fn half_floats_compute_in_f32_and_round_back() {
    let x = of(DType::F16, &[1.0, 2.0, 3.0]);
    let y = of(DType::F16, &[3.0, 3.0, 3.0]);
    let q = Array::binary(BinaryOp::Div, &x, &y, U).unwrap();
    let want: Vec<f16> = [1.0f32, 2.0, 3.0]
        .iter()
        .map(|v| f16::from_f32(v / 3.0))
        .collect();
    assert_eq!(
        q,
        Array::F16(ArrayD::from_shape_vec(vec![3], want).unwrap())
    );
    // 2048 + 1 is not representable in f16: it rounds back to 2048.
    let s = Array::binary_scalar(
        BinaryOp::Add,
        &of(DType::F16, &[2048.0]),
        Scalar::Int(1),
        false,
        U,
    )
    .unwrap();
    assert_eq!(as_f64(&s), [2048.0]);
    let e = Array::unary(UnaryOp::Exp, &of(DType::Bf16, &[0.0, 1.0]), U).unwrap();
    assert_eq!(
        e,
        Array::Bf16(
            ArrayD::from_shape_vec(vec![2], vec![bf16::ONE, bf16::from_f32(1f32.exp())]).unwrap()
        )
    );
    let m = Array::matmul(
        &of(DType::F16, &[1.0, 2.0]),
        &of(DType::F16, &[3.0, 4.0]),
        U,
    )
    .unwrap();
    assert_eq!(as_f64(&m), [11.0]);
    assert_eq!(m.dtype(), DType::F16);
}

#[test]
fn every_dtype_runs_through_the_generic_kernels() {
    for d in DType::ALL {
        let a = of(d, &[1.0, 2.0, 3.0, 4.0]);
        let b = of(d, &[1.0, 1.0, 1.0, 1.0]);
        let sum = Array::reduce(ReduceOp::Sum, &a, None, false, U).unwrap();
        let lt = Array::compare(CompareOp::Lt, &b, &a, U).unwrap();
        let want_lt = if d == DType::Bool {
            [0.0; 4]
        } else {
            [0.0, 1.0, 1.0, 1.0]
        };
        assert_eq!(as_f64(&lt), want_lt, "{d}");
        let max = Array::binary(BinaryOp::Maximum, &a, &b, U).unwrap();
        assert_eq!(max.dtype(), d);
        let back = Array::from_le_bytes(d, &[4], &a.to_le_bytes(), U).unwrap();
        assert_eq!(back, a, "{d} bytes");
        if d == DType::Bool {
            assert_eq!(sum.dtype(), DType::I64);
            continue;
        }
        assert_eq!(sum.dtype(), d, "sum keeps the dtype");
        assert_eq!(as_f64(&sum), [10.0], "{d}");
        let p = Array::binary(BinaryOp::Mul, &a, &a, U).unwrap();
        assert_eq!(as_f64(&p), [1.0, 4.0, 9.0, 16.0], "{d}");
        let m = Array::reshape(&a, &[2, 2], U).unwrap();
        let mm = Array::matmul(&m, &m, U).unwrap();
        assert_eq!(as_f64(&mm), [7.0, 10.0, 15.0, 22.0], "{d}");
        let r = Array::binary(BinaryOp::Mod, &a, &of(d, &[3.0; 4]), U).unwrap();
        assert_eq!(as_f64(&r), [1.0, 2.0, 0.0, 1.0], "{d}");
        let neg = Array::unary(UnaryOp::Neg, &b, U).unwrap();
        let want = match d.kind() {
            Kind::Unsigned => 2f64.powi(8 * d.size() as i32) - 1.0,
            _ => -1.0,
        };
        // u64::MAX is not exact in f64: compare in the dtype itself.
        assert_eq!(neg, of(d, &[want; 4]), "{d}: unsigned negation wraps");
    }
}

#[test]
fn mixed_dtype_ops_compute_in_the_promoted_dtype() {
    let u8s = of(DType::U8, &[200.0, 100.0]);
    let i8s = of(DType::I8, &[-1.0, 100.0]);
    let s = Array::binary(BinaryOp::Add, &u8s, &i8s, U).unwrap();
    assert_eq!(
        s,
        of(DType::I16, &[199.0, 200.0]),
        "no u8 wrap: i16, as NumPy"
    );
    let f = Array::binary(
        BinaryOp::Mul,
        &of(DType::F16, &[0.5]),
        &of(DType::I16, &[3.0]),
        U,
    )
    .unwrap();
    assert_eq!(f, of(DType::F32, &[1.5]));
    let big = Array::U64(ArrayD::from_shape_vec(vec![1], vec![u64::MAX]).unwrap());
    let c = Array::compare(CompareOp::Gt, &big, &of(DType::I64, &[-1.0]), U).unwrap();
    assert_eq!(as_f64(&c), [1.0], "u64 and i64 compare as f64");
    let cond = Array::Bool(ArrayD::from_shape_vec(vec![2], vec![true, false]).unwrap());
    let w = Array::where_(&cond, &u8s, &of(DType::Bf16, &[0.5, 0.5]), U).unwrap();
    assert_eq!(w, of(DType::Bf16, &[200.0, 0.5]));
    let j = Array::concat(&[&u8s, &i8s, &of(DType::Bool, &[1.0])], 0, U).unwrap();
    assert_eq!(j, of(DType::I16, &[200.0, 100.0, -1.0, 100.0, 1.0]));
}

#[test]
fn scalars_take_the_arrays_dtype_and_must_fit_it() {
    let u8s = of(DType::U8, &[250.0]);
    let s = Array::binary_scalar(BinaryOp::Add, &u8s, Scalar::Int(10), false, U).unwrap();
    assert_eq!(
        s,
        of(DType::U8, &[4.0]),
        "a weak scalar: u8 wraps, as NumPy 2"
    );
    let e = Array::binary_scalar(BinaryOp::Add, &u8s, Scalar::Int(-1), false, U).unwrap_err();
    assert_eq!(e.to_string(), "add: scalar -1 does not fit in u8");
    let e = Array::binary_scalar(BinaryOp::Add, &u8s, Scalar::Int(256), false, U).unwrap_err();
    assert_eq!(e.to_string(), "add: scalar 256 does not fit in u8");
    let big = Array::U64(ArrayD::from_shape_vec(vec![1], vec![1]).unwrap());
    let e = Array::binary_scalar(BinaryOp::Sub, &big, Scalar::Int(-5), false, U).unwrap_err();
    assert_eq!(e.to_string(), "sub: scalar -5 does not fit in u64");
    let h = Array::binary_scalar(
        BinaryOp::Mul,
        &of(DType::F16, &[2.0]),
        Scalar::Float(0.25),
        false,
        U,
    )
    .unwrap();
    assert_eq!(h, of(DType::F16, &[0.5]));
}
