//! Unit tests of indexing with tensors and of assignment, against values
//! worked out with NumPy.

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
    let n: usize = shape.iter().product();
    arr(shape, &(0..n).map(|i| i as f64).collect::<Vec<_>>())
}

fn msg(e: OpError) -> String {
    e.to_string()
}

#[test]
fn take_along_axis_gathers_with_negative_indices() {
    // np.take_along_axis(np.arange(6.).reshape(2, 3), [[2, -3], [-1, 1]], 1)
    let x = seq(&[2, 3]);
    let idx = arr(&[2, 2], &[2i64, -3, -1, 1]);
    let got = Array::take_along_axis(&x, &idx, 1, U).unwrap();
    assert_eq!(got, arr(&[2, 2], &[2.0, 0.0, 5.0, 4.0]));
    // Along axis 0 (as -2), with i32 indices broadcast over the columns.
    let idx = arr(&[1, 3], &[1i32, 0, 1]);
    let got = Array::take_along_axis(&x, &idx, -2, U).unwrap();
    assert_eq!(got, arr(&[1, 3], &[3.0, 1.0, 5.0]));
    // Indices of one column broadcast against every column of the array.
    let idx = arr(&[2, 1], &[0i64, 2]);
    let got = Array::take_along_axis(&x, &idx, 1, U).unwrap();
    assert_eq!(got, arr(&[2, 1], &[0.0, 5.0]));
}

#[test]
fn take_along_axis_rejects_bad_indices_naming_them() {
    let x = seq(&[2, 3]);
    let e = msg(Array::take_along_axis(&x, &arr(&[2, 1], &[0i64, 3]), 1, U).unwrap_err());
    assert_eq!(
        e,
        "takeAlongAxis: index 3 is out of bounds for axis 1 with size 3"
    );
    let e = msg(Array::take_along_axis(&x, &arr(&[2, 1], &[0i64, -4]), 1, U).unwrap_err());
    assert!(
        e.contains("index -4 is out of bounds for axis 1 with size 3"),
        "{e}"
    );
    let e = msg(Array::take_along_axis(&x, &arr(&[2, 1], &[0.0f64, 1.0]), 1, U).unwrap_err());
    assert!(
        e.starts_with("takeAlongAxis: indices must have an integer dtype, not f64"),
        "{e}"
    );
    let e = msg(Array::take_along_axis(&x, &arr(&[2], &[0i64, 1]), 1, U).unwrap_err());
    assert!(
        e.contains("indices have 1 dimensions but the array has 2"),
        "{e}"
    );
    let e = msg(Array::take_along_axis(&x, &arr(&[3, 1], &[0i64, 1, 2]), 1, U).unwrap_err());
    assert!(e.contains("[3, 1]") && e.contains("[2, 3]"), "{e}");
    let e = msg(Array::take_along_axis(&x, &arr(&[2, 1], &[0i64, 1]), 2, U).unwrap_err());
    assert!(
        e.starts_with("takeAlongAxis: axis 2 is out of range"),
        "{e}"
    );
}

#[test]
fn index_select_takes_whole_rows_in_the_indices_shape() {
    // np.take(np.arange(12.).reshape(3, 4), [[2, 0], [-1, 1]], axis=1)
    let x = seq(&[3, 4]);
    let idx = arr(&[2, 2], &[2i64, 0, -1, 1]);
    let got = Array::index_select(&x, &idx, 1, U).unwrap();
    let want = arr(
        &[3, 2, 2],
        &[2.0, 0.0, 3.0, 1.0, 6.0, 4.0, 7.0, 5.0, 10.0, 8.0, 11.0, 9.0],
    );
    assert_eq!(got, want);
    // Rows, repeated, of a bool array, with i32 indices.
    let b = arr(&[3, 2], &[true, false, false, false, true, true]);
    let got = Array::index_select(&b, &arr(&[3], &[2i32, 2, 0]), 0, U).unwrap();
    assert_eq!(got, arr(&[3, 2], &[true, true, true, true, true, false]));
    // A 0-d index drops the axis, as np.take(x, 1, axis=0).
    let got = Array::index_select(&x, &arr(&[], &[1i64]), 0, U).unwrap();
    assert_eq!(got, arr(&[4], &[4.0, 5.0, 6.0, 7.0]));
    // No indices: an empty axis.
    let got = Array::index_select(&x, &arr::<i64>(&[0], &[]), 0, U).unwrap();
    assert_eq!(got.shape(), &[0, 4]);
}

#[test]
fn index_select_rejects_bad_indices() {
    let x = seq(&[3, 4]);
    let e = msg(Array::index_select(&x, &arr(&[2], &[1i64, 4]), -1, U).unwrap_err());
    assert_eq!(
        e,
        "indexSelect: index 4 is out of bounds for axis 1 with size 4"
    );
    let e = msg(Array::index_select(&x, &arr(&[1], &[true]), 0, U).unwrap_err());
    assert!(e.contains("integer dtype, not bool"), "{e}");
    let e = msg(Array::index_select(&seq(&[]), &arr(&[1], &[0i64]), 0, U).unwrap_err());
    assert!(
        e.starts_with("indexSelect: a zero-dimensional array"),
        "{e}"
    );
    // The quota sees the output before it is allocated.
    let e = Array::index_select(&x, &arr(&[2], &[0i64, 1]), 0, &MaxBytes(8)).unwrap_err();
    assert!(
        matches!(
            e,
            OpError::TooLarge {
                op: "indexSelect",
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn mask_select_picks_elements_or_rows() {
    let x = seq(&[2, 3]);
    // x[x > 1.5], a full-shape mask: a 1-d result.
    let m = arr(&[2, 3], &[false, false, true, true, false, true]);
    assert_eq!(
        Array::mask_select(&x, &m, U).unwrap(),
        arr(&[3], &[2.0, 3.0, 5.0])
    );
    // A mask over the leading axis picks rows.
    let rows = arr(&[2], &[false, true]);
    assert_eq!(
        Array::mask_select(&x, &rows, U).unwrap(),
        arr(&[1, 3], &[3.0, 4.0, 5.0])
    );
    // Nothing selected.
    let none = arr(&[2], &[false, false]);
    assert_eq!(Array::mask_select(&x, &none, U).unwrap().shape(), &[0, 3]);
    // A 0-d mask: x[True] adds an axis, as NumPy.
    let t = arr(&[], &[true]);
    assert_eq!(Array::mask_select(&x, &t, U).unwrap().shape(), &[1, 2, 3]);
}

#[test]
fn mask_select_rejects_a_mask_of_the_wrong_shape_or_dtype() {
    let x = seq(&[2, 3]);
    let e = msg(Array::mask_select(&x, &arr(&[3], &[true, false, true]), U).unwrap_err());
    assert!(
        e.starts_with("maskSelect: mask of shape [3] does not match the array of shape [2, 3]"),
        "{e}"
    );
    let e = msg(Array::mask_select(&x, &arr(&[2], &[1i64, 0]), U).unwrap_err());
    assert_eq!(e, "maskSelect: mask must have dtype bool, not i64");
    let big = arr(&[2, 3, 1], &[true; 6]);
    assert!(Array::mask_select(&x, &big, U).is_err());
}

#[test]
fn scatter_writes_last_index_wins_and_scatter_add_accumulates() {
    let x = arr(&[2, 3], &[0i64; 6]);
    // Duplicates along the axis: [0, 0] in row 0.
    let idx = arr(&[2, 2], &[0i64, 0, 2, -1]);
    let v = arr(&[2, 2], &[1i64, 2, 3, 4]);
    // torch.zeros(2, 3).scatter(1, idx, v): the later index wins.
    assert_eq!(
        Array::scatter(&x, &idx, &v, 1, false, U).unwrap(),
        arr(&[2, 3], &[2i64, 0, 0, 0, 0, 4])
    );
    // scatter_add / np.add.at: both are added.
    assert_eq!(
        Array::scatter(&x, &idx, &v, 1, true, U).unwrap(),
        arr(&[2, 3], &[3i64, 0, 0, 0, 0, 7])
    );
    // The input is unchanged (a new array comes back).
    assert_eq!(x, arr(&[2, 3], &[0i64; 6]));
    // Along axis 0, a scalar value broadcast to the indices.
    let x = seq(&[2, 2]);
    let got = Array::scatter(
        &x,
        &arr(&[1, 2], &[1i64, 0]),
        &arr(&[], &[9.0]),
        0,
        false,
        U,
    );
    assert_eq!(got.unwrap(), arr(&[2, 2], &[0.0, 9.0, 9.0, 3.0]));
    // Bool accumulates as logical or.
    let b = arr(&[3], &[false, true, false]);
    let got = Array::scatter(
        &b,
        &arr(&[2], &[2i64, 2]),
        &arr(&[2], &[true, false]),
        0,
        true,
        U,
    );
    assert_eq!(got.unwrap(), arr(&[3], &[false, true, true]));
}

#[test]
fn scatter_casts_values_of_another_dtype_to_the_arrays() {
    // np.put_along_axis(np.arange(6.).reshape(2, 3), [[0], [1]], [[1], [2]], 1)
    let x = seq(&[2, 3]);
    let got = Array::scatter(
        &x,
        &arr(&[2, 1], &[0i64, 1]),
        &arr(&[2, 1], &[1i64, 2]),
        1,
        false,
        U,
    )
    .unwrap();
    assert_eq!(got, arr(&[2, 3], &[1.0, 1.0, 2.0, 3.0, 2.0, 5.0]));
    // Into integers, floats truncate toward zero (np.int64(2.7) == 2).
    let x = arr(&[3], &[0i64; 3]);
    let got = Array::scatter(&x, &arr(&[1], &[2i64]), &arr(&[1], &[2.7f64]), 0, true, U).unwrap();
    assert_eq!(got, arr(&[3], &[0i64, 0, 2]));
    // The cast counts against the quota like any output.
    let e = Array::scatter(
        &x,
        &arr(&[1], &[0i64]),
        &arr(&[1], &[1.0f64]),
        0,
        false,
        &MaxBytes(4),
    );
    assert!(
        matches!(e, Err(OpError::TooLarge { op: "scatter", .. })),
        "{e:?}"
    );
}

#[test]
fn scatter_rejects_bad_input_before_writing() {
    let x = seq(&[2, 3]);
    let v = arr(&[2, 1], &[1.0, 2.0]);
    let e = msg(Array::scatter(&x, &arr(&[2, 1], &[0i64, 3]), &v, 1, false, U).unwrap_err());
    assert_eq!(
        e,
        "scatter: index 3 is out of bounds for axis 1 with size 3"
    );
    let e = msg(Array::scatter(
        &x,
        &arr(&[2, 1], &[0i64, 1]),
        &arr(&[3], &[1.0, 2.0, 3.0]),
        1,
        false,
        U,
    )
    .unwrap_err());
    assert!(
        e.contains("values of shape [3] do not broadcast to the indices' shape [2, 1]"),
        "{e}"
    );
    // The array's shape cannot grow: indices of 3 rows for 2.
    let e = msg(Array::scatter(&x, &arr(&[3, 1], &[0i64, 1, 2]), &v, 1, false, U).unwrap_err());
    assert!(
        e.contains("do not broadcast against the array of shape [2, 3]"),
        "{e}"
    );
    let e = msg(Array::scatter(&x, &arr(&[2, 1], &[0.5f32, 1.0]), &v, 1, false, U).unwrap_err());
    assert!(e.contains("integer dtype, not f32"), "{e}");
}

#[test]
fn assign_slice_writes_the_region_broadcasting_the_value() {
    // x = np.arange(12.).reshape(3, 4); x[1:, ::2] = [[-1], [-2]]
    let mut x = seq(&[3, 4]);
    let specs = [
        SliceSpec::new(Some(1), None, 1),
        SliceSpec::new(None, None, 2),
    ];
    Array::assign_slice(&mut x, &specs, &arr(&[2, 1], &[-1.0, -2.0])).unwrap();
    let want = arr(
        &[3, 4],
        &[
            0.0, 1.0, 2.0, 3.0, -1.0, 5.0, -1.0, 7.0, -2.0, 9.0, -2.0, 11.0,
        ],
    );
    assert_eq!(x, want);
    // x[::-1] = [0, 1, 2] on i32 (a reversed slice), x[-1:] = 7 (a 0-d value).
    let mut y = arr(&[3], &[5i32, 5, 5]);
    let rev = [SliceSpec::new(None, None, -1)];
    Array::assign_slice(&mut y, &rev, &arr(&[3], &[0i32, 1, 2])).unwrap();
    assert_eq!(y, arr(&[3], &[2i32, 1, 0]));
    let last = [SliceSpec::new(Some(-1), None, 1)];
    Array::assign_slice(&mut y, &last, &arr(&[], &[7i32])).unwrap();
    assert_eq!(y, arr(&[3], &[2i32, 1, 7]));
    // An empty slice takes a value of any broadcastable shape and writes nothing.
    let empty = [SliceSpec::new(Some(2), Some(1), 1)];
    Array::assign_slice(&mut y, &empty, &arr(&[1], &[9i32])).unwrap();
    assert_eq!(y, arr(&[3], &[2i32, 1, 7]));
}

#[test]
fn a_failed_assignment_leaves_the_target_unchanged() {
    let before = seq(&[3, 4]);
    let mut x = before.clone();
    let rows = [SliceSpec::new(Some(0), Some(2), 1)];
    // Region [2, 4]; a [3] value does not broadcast.
    let e = msg(Array::assign_slice(&mut x, &rows, &seq(&[3])).unwrap_err());
    assert_eq!(
        e,
        "assign: could not broadcast a value of shape [3] into the slice of shape [2, 4]"
    );
    assert_eq!(
        Array::check_assign_slice(&x, &rows, &seq(&[3]))
            .unwrap_err()
            .to_string(),
        e
    );
    let e = msg(Array::assign_slice(&mut x, &rows, &arr(&[], &[1i64])).unwrap_err());
    assert_eq!(
        e,
        "assign: value has dtype i64 but the target has dtype f64 (cast it first)"
    );
    let zero = [SliceSpec::new(None, None, 0)];
    let e = msg(Array::assign_slice(&mut x, &zero, &seq(&[])).unwrap_err());
    assert_eq!(e, "assign: slice step must not be zero");
    let three = [SliceSpec::default(); 3];
    assert!(Array::assign_slice(&mut x, &three, &seq(&[])).is_err());
    let m = arr(&[3], &[true, false, true]);
    let e = msg(Array::assign_mask(&mut x, &m, &seq(&[3])).unwrap_err());
    assert_eq!(
        e,
        "assignMask: could not broadcast a value of shape [3] into the selection of shape [2, 4]"
    );
    let e = msg(Array::assign_mask(&mut x, &arr(&[4], &[true; 4]), &seq(&[])).unwrap_err());
    assert!(
        e.starts_with("assignMask: mask of shape [4] does not match"),
        "{e}"
    );
    assert!(Array::check_assign_mask(&x, &m, &seq(&[4])).is_ok());
    assert_eq!(x, before);
}

#[test]
fn assign_mask_writes_selected_elements_or_rows_in_order() {
    // x[x % 2 == 1] = [10, 20, 30] over a full mask.
    let mut x = arr(&[2, 3], &[0i64, 1, 2, 3, 4, 5]);
    let odd = arr(&[2, 3], &[false, true, false, true, false, true]);
    Array::assign_mask(&mut x, &odd, &arr(&[3], &[10i64, 20, 30])).unwrap();
    assert_eq!(x, arr(&[2, 3], &[0i64, 10, 2, 20, 4, 30]));
    // Rows through a leading-axis mask, with a row value broadcast.
    let rows = arr(&[2], &[true, false]);
    Array::assign_mask(&mut x, &rows, &arr(&[3], &[-1i64, -2, -3])).unwrap();
    assert_eq!(x, arr(&[2, 3], &[-1i64, -2, -3, 20, 4, 30]));
    // A scalar into every selected element.
    Array::assign_mask(&mut x, &odd, &arr(&[], &[0i64])).unwrap();
    assert_eq!(x, arr(&[2, 3], &[-1i64, 0, -3, 0, 4, 0]));
}
