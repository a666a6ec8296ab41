//! Unit tests of the shape ops of schema version 4: contractions, layout,
//! order, erf and the makers, against values worked out with NumPy.

use super::alloc::*;
use super::dtype::*;
use super::*;
use ndarray::{ArrayD, IxDyn};

const U: &Unlimited = &Unlimited;

fn arr<T: Elem>(shape: &[usize], v: &[T]) -> Array {
    T::wrap(ArrayD::from_shape_vec(IxDyn(shape), v.to_vec()).unwrap())
}

/// 0, 1, 2, ... as f64 in `shape`.
fn seq(shape: &[usize]) -> Array {
    let n = shape.iter().product();
    arr::<f64>(shape, &(0..n).map(|i| i as f64).collect::<Vec<_>>())
}

fn vals<T: Elem>(a: &Array) -> (Vec<usize>, Vec<T>) {
    let x = T::get(a).unwrap_or_else(|| panic!("expected {}, got {}", T::DTYPE, a.dtype()));
    (x.shape().to_vec(), x.iter().copied().collect())
}

fn err<T: std::fmt::Debug>(r: Result<T, OpError>) -> String {
    r.unwrap_err().to_string()
}

#[test]
fn einsum_covers_matmul_outer_batched_trace_transpose_and_sums() {
    let a = seq(&[2, 3]);
    let b = seq(&[3, 2]);
    let mm = Array::einsum("ij,jk->ik", &[&a, &b], U).unwrap();
    assert_eq!(mm, Array::matmul(&a, &b, U).unwrap());
    // Implicit mode gives the same, with spaces.
    assert_eq!(Array::einsum("ij, jk", &[&a, &b], U).unwrap(), mm);
    let v = seq(&[3]);
    let outer = Array::einsum("i,j->ij", &[&v, &v], U).unwrap();
    assert_eq!(
        vals::<f64>(&outer),
        (vec![3, 3], vec![0., 0., 0., 0., 1., 2., 0., 2., 4.])
    );
    let x = seq(&[2, 2, 3]);
    let y = seq(&[2, 3, 1]);
    let bmm = Array::einsum("bij,bjk->bik", &[&x, &y], U).unwrap();
    assert_eq!(bmm, Array::matmul(&x, &y, U).unwrap());
    let sq = seq(&[3, 3]);
    assert_eq!(
        vals::<f64>(&Array::einsum("ii->", &[&sq], U).unwrap()),
        (vec![], vec![12.0])
    );
    assert_eq!(
        vals::<f64>(&Array::einsum("ii->i", &[&sq], U).unwrap()).1,
        [0.0, 4.0, 8.0]
    );
    let t = Array::einsum("ij->ji", &[&a], U).unwrap();
    assert_eq!(t, Array::transpose(&a, None, U).unwrap());
    assert_eq!(
        vals::<f64>(&Array::einsum("ij->", &[&a], U).unwrap()).1,
        [15.0]
    );
    assert_eq!(
        vals::<f64>(&Array::einsum("ij->j", &[&a], U).unwrap()).1,
        [3.0, 5.0, 7.0]
    );
    // Dot of two vectors; three operands; "..." broadcasting.
    assert_eq!(
        vals::<f64>(&Array::einsum("i,i", &[&v, &v], U).unwrap()).1,
        [5.0]
    );
    let three = Array::einsum("ij,jk,kl->il", &[&a, &b, &seq(&[2, 2])], U).unwrap();
    let want = Array::matmul(&mm, &seq(&[2, 2]), U).unwrap();
    assert_eq!(three, want);
    let ell = Array::einsum("...ij,...jk->...ik", &[&x, &y], U).unwrap();
    assert_eq!(ell, bmm);
    // Integers wrap like matmul's.
    let i = arr::<i64>(&[2, 2], &[1, 2, 3, 4]);
    assert_eq!(
        vals::<i64>(&Array::einsum("ij,jk->ik", &[&i, &i], U).unwrap()).1,
        [7, 10, 15, 22]
    );
}

#[test]
fn einsum_refuses_malformed_subscripts_naming_the_shapes() {
    let a = seq(&[2, 3]);
    let b = seq(&[4, 5]);
    let e = err(Array::einsum("ij,j%->i", &[&a, &b], U));
    assert!(e.starts_with("einsum: invalid character '%'"), "{e}");
    let e = err(Array::einsum("ij,jk->ik", &[&a], U));
    assert!(e.contains("name 2 operands but 1 were given"), "{e}");
    let e = err(Array::einsum("ij,jk->ik", &[&a, &b], U));
    assert!(
        e.contains(
            "index 'j' has length 3 in operand 0 (shape [2, 3]) but 4 in operand 1 (shape [4, 5])"
        ),
        "{e}"
    );
    let e = err(Array::einsum("ijk->i", &[&a], U));
    assert!(e.contains("operand 0 has shape [2, 3]"), "{e}");
    let e = err(Array::einsum("ij->iz", &[&a], U));
    assert!(e.contains("output index 'z' does not appear"), "{e}");
    let e = err(Array::einsum("ij->ii", &[&a], U));
    assert!(e.contains("appears twice"), "{e}");
    let e = err(Array::einsum("ii->", &[&a], U));
    assert!(
        e.contains("index 'i' is repeated over axes of lengths 2 and 3 in operand 0"),
        "{e}"
    );
    // Mixed dtypes are not malformed: they promote (f64 with f32 is f64).
    let mixed = Array::einsum("ij,jk->ik", &[&a, &arr::<f32>(&[3, 1], &[1., 2., 3.])], U).unwrap();
    assert_eq!(vals::<f64>(&mixed).0, [2, 1]);
    let bools = arr::<bool>(&[1], &[true]);
    assert!(err(Array::einsum("i->", &[&bools], U)).contains("not supported for dtype bool"));
}

#[test]
fn tensordot_sums_over_n_axes_or_the_axes_given() {
    let a = seq(&[2, 3, 4]);
    let b = seq(&[3, 4, 5]);
    let two = Array::tensordot(&a, &b, 2, None, U).unwrap();
    assert_eq!(two, Array::einsum("ijk,jkl->il", &[&a, &b], U).unwrap());
    let c = seq(&[4, 3]);
    let lists = Array::tensordot(&a, &c, 0, Some((&[1, -1], &[1, 0])), U).unwrap();
    assert_eq!(lists, Array::einsum("ijk,kj->i", &[&a, &c], U).unwrap());
    let outer = Array::tensordot(&seq(&[2]), &seq(&[3]), 0, None, U).unwrap();
    assert_eq!(outer.shape(), [2, 3]);
    let e = err(Array::tensordot(&a, &c, 0, Some((&[2], &[1])), U));
    assert_eq!(
        e,
        "tensordot: axis 2 of shape [2, 3, 4] (length 4) and axis 1 of shape [4, 3] (length 3) differ"
    );
    let e = err(Array::tensordot(&a, &a, 1, None, U));
    assert!(
        e.contains("axis 2 of shape [2, 3, 4] (length 4) and axis 0 of shape [2, 3, 4] (length 2)"),
        "{e}"
    );
    let e = err(Array::tensordot(&a, &c, 3, None, U));
    assert!(
        e.contains("cannot sum over 3 axes of shapes [2, 3, 4] and [4, 3]"),
        "{e}"
    );
}

#[test]
fn stack_and_split_follow_numpy() {
    let a = seq(&[2, 3]);
    let b = Array::binary(BinaryOp::Add, &a, &arr::<f64>(&[], &[10.0]), U).unwrap();
    let s = Array::stack(&[&a, &b], 1, U).unwrap();
    assert_eq!(s.shape(), [2, 2, 3]);
    assert_eq!(vals::<f64>(&s).1[..6], [0., 1., 2., 10., 11., 12.]);
    assert_eq!(Array::stack(&[&a, &b], -1, U).unwrap().shape(), [2, 3, 2]);
    let e = err(Array::stack(&[&a, &seq(&[3, 2])], 0, U));
    assert!(
        e.contains("stack: all arrays must have one shape, got [2, 3] and [3, 2]"),
        "{e}"
    );

    let x = seq(&[6]);
    let parts = Array::split(&x, 0, 3, &[], U).unwrap();
    let got: Vec<Vec<f64>> = parts.iter().map(|p| vals::<f64>(p).1).collect();
    assert_eq!(got, [vec![0., 1.], vec![2., 3.], vec![4., 5.]]);
    // At indices, as np.split(np.arange(5), [3, 1, 10]).
    let parts = Array::split(&seq(&[5]), -1, 0, &[3, 1, 10], U).unwrap();
    let got: Vec<Vec<f64>> = parts.iter().map(|p| vals::<f64>(p).1).collect();
    assert_eq!(
        got,
        [vec![0., 1., 2.], vec![], vec![1., 2., 3., 4.], vec![]]
    );
    let cols = Array::split(&seq(&[2, 4]), 1, 2, &[], U).unwrap();
    assert_eq!(vals::<f64>(&cols[1]), (vec![2, 2], vec![2., 3., 6., 7.]));
    let e = err(Array::split(&seq(&[2, 5]), 1, 2, &[], U));
    assert!(
        e.contains("split: 2 sections do not divide axis 1 of length 5 (shape [2, 5])"),
        "{e}"
    );
    assert!(err(Array::split(&x, 0, 1 << 40, &[], U)).contains("more than axis 0"));
    assert!(err(Array::split(&x, 1, 2, &[], U)).contains("axis 1 is out of range"));
}

#[test]
fn squeeze_expand_broadcast_tile_flip_follow_numpy() {
    let a = seq(&[1, 3, 1]);
    assert_eq!(Array::squeeze(&a, None, U).unwrap().shape(), [3]);
    assert_eq!(Array::squeeze(&a, Some(&[-1]), U).unwrap().shape(), [1, 3]);
    let e = err(Array::squeeze(&a, Some(&[1]), U));
    assert!(
        e.contains("squeeze: cannot remove axis 1 of length 3 from shape [1, 3, 1]"),
        "{e}"
    );
    assert!(err(Array::squeeze(&a, Some(&[3]), U))
        .contains("axis 3 is out of range for shape [1, 3, 1]"));
    let v = seq(&[3]);
    assert_eq!(Array::expand_dims(&v, &[0], U).unwrap().shape(), [1, 3]);
    assert_eq!(
        Array::expand_dims(&v, &[-1, 0], U).unwrap().shape(),
        [1, 3, 1]
    );
    assert!(err(Array::expand_dims(&v, &[0, 0], U)).starts_with("expandDims: axis 0 is repeated"));

    let b = Array::broadcast_to(&v, &[2, 3], U).unwrap();
    assert_eq!(vals::<f64>(&b), (vec![2, 3], vec![0., 1., 2., 0., 1., 2.]));
    let e = err(Array::broadcast_to(&v, &[2, 4], U));
    assert_eq!(e, "broadcastTo: cannot broadcast shape [3] to shape [2, 4]");

    // np.tile(np.arange(3), (2, 2)) and np.tile(np.arange(4).reshape(2, 2), 2).
    let t = Array::tile(&v, &[2, 2], U).unwrap();
    assert_eq!(
        vals::<f64>(&t),
        (vec![2, 6], [0., 1., 2., 0., 1., 2.].repeat(2))
    );
    let t = Array::tile(&seq(&[2, 2]), &[2], U).unwrap();
    assert_eq!(
        vals::<f64>(&t),
        (vec![2, 4], vec![0., 1., 0., 1., 2., 3., 2., 3.])
    );
    assert!(err(Array::tile(&v, &[u64::MAX, 2], U)).starts_with("tile: "));
    assert!(err(Array::broadcast_to(&v, &[u64::MAX, 3], U)).starts_with("broadcastTo: "));

    let m = seq(&[2, 3]);
    assert_eq!(
        vals::<f64>(&Array::flip(&m, None, U).unwrap()).1,
        [5., 4., 3., 2., 1., 0.]
    );
    assert_eq!(
        vals::<f64>(&Array::flip(&m, Some(&[-1]), U).unwrap()).1,
        [2., 1., 0., 5., 4., 3.]
    );
    assert!(err(Array::flip(&m, Some(&[2]), U)).starts_with("flip: axis 2 is out of range"));
}

#[test]
fn sort_and_argsort_are_stable_with_nan_last() {
    let nan = f64::NAN;
    let x = arr::<f64>(&[2, 4], &[3., nan, 1., 3., 2., 2., -0.0, nan]);
    let (shape, s) = vals::<f64>(&Array::sort(&x, -1, U).unwrap());
    assert_eq!(shape, [2, 4]);
    assert_eq!(&s[..3], [1., 3., 3.]);
    assert!(s[3].is_nan() && s[7].is_nan());
    assert_eq!(&s[4..7], [-0.0, 2., 2.]);
    let (_, i) = vals::<i64>(&Array::argsort(&x, 1, U).unwrap());
    assert_eq!(i, [2, 0, 3, 1, 2, 0, 1, 3]);
    let (_, i) = vals::<i64>(&Array::argsort(&x, 0, U).unwrap());
    assert_eq!(i, [1, 1, 1, 0, 0, 0, 0, 1]);
    let b = arr::<bool>(&[3], &[true, false, true]);
    assert_eq!(
        vals::<bool>(&Array::sort(&b, 0, U).unwrap()).1,
        [false, true, true]
    );
    assert!(err(Array::sort(&x, 2, U)).contains("sort: axis 2 is out of range"));
    assert!(err(Array::argsort(&arr::<f64>(&[], &[1.0]), 0, U)).contains("zero-dimensional"));
}

#[test]
fn topk_gives_values_and_indices_in_order() {
    let x = arr::<i32>(&[2, 4], &[5, 1, 5, 3, 0, 9, 9, 2]);
    let (v, i) = Array::topk(&x, 2, 1, true, U).unwrap();
    assert_eq!(vals::<i32>(&v), (vec![2, 2], vec![5, 5, 9, 9]));
    assert_eq!(vals::<i64>(&i).1, [0, 2, 1, 2]);
    let (v, i) = Array::topk(&x, 3, -1, false, U).unwrap();
    assert_eq!(vals::<i32>(&v).1, [1, 3, 5, 0, 2, 9]);
    assert_eq!(vals::<i64>(&i).1, [1, 3, 0, 0, 3, 1]);
    let (v, _) = Array::topk(&x, 1, 0, true, U).unwrap();
    assert_eq!(vals::<i32>(&v), (vec![1, 4], vec![5, 9, 9, 3]));
    let (v, _) = Array::topk(&x, 0, 1, true, U).unwrap();
    assert_eq!(v.shape(), [2, 0]);
    let f = arr::<f32>(&[3], &[1.0, f32::NAN, 2.0]);
    let (_, i) = Array::topk(&f, 1, 0, true, U).unwrap();
    assert_eq!(vals::<i64>(&i).1, [1]);
    let e = err(Array::topk(&x, 5, 1, true, U));
    assert_eq!(
        e,
        "topk: k (5) is larger than axis 1 of length 4 (shape [2, 4])"
    );
}

#[test]
fn erf_matches_known_values_on_floats_only() {
    let x = arr::<f64>(&[4], &[0.0, 0.5, -1.0, 3.0]);
    let (_, y) = vals::<f64>(&Array::unary(UnaryOp::Erf, &x, U).unwrap());
    let want = [
        0.0,
        0.520_499_877_813_046_5,
        -0.842_700_792_949_714_9,
        0.999_977_909_503_001_4,
    ];
    for (g, w) in y.iter().zip(want) {
        assert!((g - w).abs() < 1e-15, "{y:?}");
    }
    let f = Array::unary(UnaryOp::Erf, &arr::<f32>(&[1], &[0.5]), U).unwrap();
    assert!((vals::<f32>(&f).1[0] - 0.520_499_9).abs() < 1e-6);
    let e = err(Array::unary(UnaryOp::Erf, &arr::<i32>(&[1], &[1]), U));
    assert_eq!(e, "erf: not supported for dtype i32");
}

#[test]
fn makers_follow_numpy_and_seeds_repeat() {
    let e = Array::eye(DType::I32, 2, Some(3), 1, U).unwrap();
    assert_eq!(vals::<i32>(&e), (vec![2, 3], vec![0, 1, 0, 0, 0, 1]));
    let e = Array::eye(DType::F64, 3, None, -2, U).unwrap();
    assert_eq!(vals::<f64>(&e).1, [0., 0., 0., 0., 0., 0., 1., 0., 0.]);
    assert_eq!(
        Array::eye(DType::Bool, 2, None, 5, U).unwrap().shape(),
        [2, 2]
    );

    let l = Array::linspace(DType::F64, 0.0, 1.0, 5, true, U).unwrap();
    assert_eq!(vals::<f64>(&l).1, [0.0, 0.25, 0.5, 0.75, 1.0]);
    let l = Array::linspace(DType::F64, 0.0, 1.0, 4, false, U).unwrap();
    assert_eq!(vals::<f64>(&l).1, [0.0, 0.25, 0.5, 0.75]);
    // np.linspace(-1, 10, 4, dtype=int): rounded toward minus infinity.
    let l = Array::linspace(DType::I64, -1.0, 10.0, 4, true, U).unwrap();
    assert_eq!(vals::<i64>(&l).1, [-1, 2, 6, 10]);
    assert_eq!(
        Array::linspace(DType::F32, 3.0, 4.0, 1, true, U)
            .unwrap()
            .len(),
        1
    );
    assert!(
        err(Array::linspace(DType::I32, 0.0, 1e10, 2, true, U)).contains("does not fit dtype i32")
    );
    assert!(err(Array::linspace(DType::Bool, 0.0, 1.0, 2, true, U)).contains("dtype bool"));

    let r = Array::randint(DType::I32, -3, 4, &[1000], 7, U).unwrap();
    assert_eq!(r, Array::randint(DType::I32, -3, 4, &[1000], 7, U).unwrap());
    assert_ne!(r, Array::randint(DType::I32, -3, 4, &[1000], 8, U).unwrap());
    let (_, v) = vals::<i32>(&r);
    assert!(v.iter().all(|x| (-3..4).contains(x)));
    assert!((-3..4).all(|k| v.contains(&k)));
    assert!(err(Array::randint(DType::I32, 5, 5, &[1], 0, U))
        .contains("low (5) must be less than high (5)"));
    assert!(
        err(Array::randint(DType::I32, 0, 1 << 40, &[1], 0, U)).contains("do not fit dtype i32")
    );
    assert!(
        err(Array::randint(DType::F32, 0, 2, &[1], 0, U)).contains("not supported for dtype f32")
    );

    let p = Array::permutation(50, 3, U).unwrap();
    assert_eq!(p, Array::permutation(50, 3, U).unwrap());
    let (_, mut v) = vals::<i64>(&p);
    assert_ne!(v, (0..50).collect::<Vec<_>>());
    v.sort();
    assert_eq!(v, (0..50).collect::<Vec<_>>());
}

#[test]
fn large_sorts_and_contractions_match_the_small_path() {
    // Past PAR_ELEMENTS the lanes go to the compute pool.
    let n = PAR_ELEMENTS * 2;
    let x = Array::randint(DType::I64, 0, 1000, &[4, (n / 4) as u64], 1, U).unwrap();
    let (_, s) = vals::<i64>(&Array::sort(&x, 1, U).unwrap());
    for lane in s.chunks(n / 4) {
        assert!(lane.windows(2).all(|w| w[0] <= w[1]));
    }
    let (_, idx) = vals::<i64>(&Array::argsort(&x, 1, U).unwrap());
    let (_, orig) = vals::<i64>(&x);
    for (r, lane) in idx.chunks(n / 4).enumerate() {
        let sorted: Vec<i64> = lane.iter().map(|&i| orig[r * n / 4 + i as usize]).collect();
        assert_eq!(sorted, s[r * n / 4..(r + 1) * n / 4]);
    }
    let a = Array::cast(
        &Array::randint(DType::I64, -5, 5, &[300, 200], 2, U).unwrap(),
        DType::F64,
        U,
    )
    .unwrap();
    let b = Array::cast(
        &Array::randint(DType::I64, -5, 5, &[200, 100], 3, U).unwrap(),
        DType::F64,
        U,
    )
    .unwrap();
    assert_eq!(
        Array::einsum("ij,jk->ik", &[&a, &b], U).unwrap(),
        Array::matmul(&a, &b, U).unwrap()
    );
    assert_eq!(
        Array::tensordot(&a, &b, 1, None, U).unwrap(),
        Array::matmul(&a, &b, U).unwrap()
    );
}

#[test]
fn shape_ops_reserve_their_outputs_before_allocating() {
    let small = MaxBytes(64);
    let x = seq(&[4, 4]);
    for r in [
        Array::einsum("ij,jk->ik", &[&x, &x], &small).map(|_| ()),
        Array::tile(&x, &[2], &small).map(|_| ()),
        Array::broadcast_to(&x, &[2, 4, 4], &small).map(|_| ()),
        Array::sort(&x, 0, &small).map(|_| ()),
        Array::eye(DType::F64, 4, None, 0, &small).map(|_| ()),
    ] {
        assert!(err(r).contains("exceeds the limit of 64 bytes"));
    }
}

/// Sums every reservation.
#[derive(Default)]
struct Total(std::cell::Cell<usize>);

impl Alloc for Total {
    fn reserve(&self, _op: &'static str, bytes: usize) -> Result<(), OpError> {
        self.0.set(self.0.get() + bytes);
        Ok(())
    }
}

#[test]
fn einsum_as_matmul_reserves_and_copies_nothing_but_its_output() {
    let a = seq(&[8, 4]);
    let b = seq(&[4, 2]);
    let t = Total::default();
    let out = Array::einsum("ij,jk->ik", &[&a, &b], &t).unwrap();
    assert_eq!(t.0.get(), 8 * 2 * 8);
    assert_eq!(out, Array::matmul(&a, &b, U).unwrap());
    // A transposed output is arranged once more.
    let t = Total::default();
    Array::einsum("ij,jk->ki", &[&a, &b], &t).unwrap();
    assert_eq!(t.0.get(), 2 * 8 * 8 * 2);
}

#[test]
fn einsum_tensordot_and_stack_promote_mixed_dtypes_as_numpy() {
    // np.result_type(np.int32, np.float32) is float64; (uint8, int8) int16.
    let f = arr::<f32>(&[2, 2], &[1.0, 2.0, 3.0, 4.0]);
    let i = arr::<i32>(&[2, 2], &[1, 0, 0, 1]);
    let mm = Array::einsum("ij,jk->ik", &[&f, &i], U).unwrap();
    assert_eq!(vals::<f64>(&mm), (vec![2, 2], vec![1.0, 2.0, 3.0, 4.0]));
    let td = Array::tensordot(&i, &f, 1, None, U).unwrap();
    assert_eq!(vals::<f64>(&td).1, [1.0, 2.0, 3.0, 4.0]);
    let u = arr::<u8>(&[2], &[200, 1]);
    let s = arr::<i8>(&[2], &[-1, 2]);
    let st = Array::stack(&[&u, &s], 0, U).unwrap();
    assert_eq!(vals::<i16>(&st), (vec![2, 2], vec![200, 1, -1, 2]));
}
