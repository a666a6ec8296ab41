//! Elementwise ops: binary (with broadcasting and scalars), unary,
//! comparisons, select and cast.

use std::borrow::Cow;

use ndarray::{ArrayD, ArrayViewD, IxDyn, Zip};

use super::alloc::{reserve, Alloc};
use super::dtype::{dispatch, with_dtype, Array, DType, Elem, Float, Num, Scalar};
use super::error::{invalid, OpError};
use super::parallel;
use super::shape::{broadcast_shape, broadcast_view, checked_len, from_vec};
use super::table::{BinaryOp, CompareOp, UnaryOp};

/// The same-dtype partner of `_like` in `b`, or a dtype mismatch.
pub(super) fn same<'a, T: Elem>(
    op: &'static str,
    _like: &ArrayD<T>,
    b: &'a Array,
) -> Result<&'a ArrayD<T>, OpError> {
    T::get(b).ok_or(OpError::DTypeMismatch {
        op,
        lhs: T::DTYPE,
        rhs: b.dtype(),
    })
}

/// A 0-d array of `x`'s dtype holding `s` (see [`Scalar`]).
fn scalar_like<T: Elem>(op: &'static str, _x: &ArrayD<T>, s: Scalar) -> Result<Array, OpError> {
    Ok(T::wrap(ArrayD::from_elem(
        IxDyn(&[]),
        scalar_to::<T>(op, s)?,
    )))
}

/// Converts a scalar operand to `T` (see [`Scalar`] for the rules).
pub(super) fn scalar_to<T: Elem>(op: &'static str, s: Scalar) -> Result<T, OpError> {
    let mismatch = OpError::DTypeMismatch {
        op,
        lhs: T::DTYPE,
        rhs: s.dtype(),
    };
    match (T::DTYPE, s) {
        (DType::Bool, Scalar::Bool(b)) => Ok(T::from_bool(b)),
        (DType::Bool, _) | (_, Scalar::Bool(_)) => Err(mismatch),
        (d, Scalar::Float(f)) if d.is_float() => Ok(T::from_f64(f)),
        (d, Scalar::Int(i)) if d.is_float() => Ok(T::from_i64(i)),
        (d, Scalar::Float(f)) => {
            // 2^63 is exactly representable; i64::MAX as f64 rounds up to it.
            const LIMIT: f64 = 9_223_372_036_854_775_808.0;
            if f.fract() != 0.0 || !(-LIMIT..LIMIT).contains(&f) {
                return Err(invalid(
                    op,
                    format!("scalar {f} is not an integer that fits in {d}"),
                ));
            }
            scalar_to(op, Scalar::Int(f as i64))
        }
        (d, Scalar::Int(i)) => {
            let fits = d
                .int_bounds()
                .is_some_and(|(lo, hi)| (lo..=hi).contains(&i128::from(i)));
            if fits {
                Ok(T::from_i64(i))
            } else {
                Err(invalid(op, format!("scalar {i} does not fit in {d}")))
            }
        }
    }
}

/// `a` and `b` converted to the dtype NumPy's promotion table gives them
/// ([`DType::promote`]); an operand already of that dtype is borrowed, not
/// copied. The conversion is reserved under `op`'s name.
pub(super) fn promoted<'a>(
    op: &'static str,
    a: &'a Array,
    b: &'a Array,
    alloc: &dyn Alloc,
) -> Result<(Cow<'a, Array>, Cow<'a, Array>), OpError> {
    let to = a.dtype().promote(b.dtype());
    Ok((convert(op, a, to, alloc)?, convert(op, b, to, alloc)?))
}

/// `a` as `to`, borrowed if it is already.
pub(super) fn convert<'a>(
    op: &'static str,
    a: &'a Array,
    to: DType,
    alloc: &dyn Alloc,
) -> Result<Cow<'a, Array>, OpError> {
    if a.dtype() == to {
        Ok(Cow::Borrowed(a))
    } else {
        Ok(Cow::Owned(Array::cast_as(op, a, to, alloc)?))
    }
}

/// Copies a view into a new standard-layout array.
pub(super) fn std_owned<T: Elem>(v: ArrayViewD<'_, T>) -> Array {
    T::wrap(v.as_standard_layout().into_owned())
}

/// Elementwise map into a new standard-layout array; large ones in the
/// compute pool.
pub(super) fn map_std<T: Elem, U: Elem>(
    op: &'static str,
    x: &ArrayD<T>,
    alloc: &dyn Alloc,
    f: impl Fn(T) -> U + Sync + Send,
) -> Result<ArrayD<U>, OpError> {
    reserve(alloc, op, x.shape(), U::DTYPE)?;
    if parallel::worth(x.len()) {
        let out = parallel::install(|| Zip::from(x).par_map_collect(|&v| f(v)));
        return Ok(standard(out));
    }
    let data: Vec<U> = match x.as_slice() {
        Some(s) => s.iter().map(|&v| f(v)).collect(),
        None => x.iter().map(|&v| f(v)).collect(),
    };
    from_vec(x.shape(), data)
}

/// `a` in standard layout (a parallel collect follows its inputs' layout).
pub(super) fn standard<T: Elem>(a: ArrayD<T>) -> ArrayD<T> {
    if a.is_standard_layout() {
        a
    } else {
        a.as_standard_layout().into_owned()
    }
}

/// Broadcasting elementwise binary map; `shape` is the broadcast shape.
/// Large ones run in the compute pool.
pub(super) fn zip_map<T: Elem, U: Elem>(
    op: &'static str,
    shape: &[usize],
    x: &ArrayD<T>,
    y: &ArrayD<T>,
    alloc: &dyn Alloc,
    f: impl Fn(T, T) -> U + Sync + Send,
) -> Result<ArrayD<U>, OpError> {
    reserve(alloc, op, shape, U::DTYPE)?;
    let (xv, yv) = (broadcast_view(op, x, shape)?, broadcast_view(op, y, shape)?);
    if parallel::worth(xv.len()) {
        let out = parallel::install(|| Zip::from(&xv).and(&yv).par_map_collect(|&a, &b| f(a, b)));
        return Ok(standard(out));
    }
    let mut out = ArrayD::from_elem(IxDyn(shape), U::ZERO);
    Zip::from(&mut out)
        .and(&xv)
        .and(&yv)
        .for_each(|o, &a, &b| *o = f(a, b));
    Ok(out)
}

/// NumPy's `mod` and `floor_divide` of one numeric type.
type DivOps<T> = (fn(T, T) -> T, fn(T, T) -> T);

pub(super) fn binary_num<T: Num>(
    op: BinaryOp,
    x: &ArrayD<T>,
    y: &ArrayD<T>,
    alloc: &dyn Alloc,
    (modulo, floor_divide): DivOps<T>,
) -> Result<Array, OpError> {
    let name = op.name();
    let shape = broadcast_shape(name, x.shape(), y.shape())?;
    if checked_len(&shape) != Some(0) {
        check_rhs(op, y)?;
    }
    let out = match op {
        BinaryOp::Add => zip_map(name, &shape, x, y, alloc, T::add),
        BinaryOp::Sub => zip_map(name, &shape, x, y, alloc, T::sub),
        BinaryOp::Mul => zip_map(name, &shape, x, y, alloc, T::mul),
        BinaryOp::Div => zip_map(name, &shape, x, y, alloc, T::div),
        BinaryOp::Pow => zip_map(name, &shape, x, y, alloc, T::pow),
        BinaryOp::Maximum => zip_map(name, &shape, x, y, alloc, T::maximum),
        BinaryOp::Minimum => zip_map(name, &shape, x, y, alloc, T::minimum),
        BinaryOp::Mod => zip_map(name, &shape, x, y, alloc, modulo),
        BinaryOp::FloorDivide => zip_map(name, &shape, x, y, alloc, floor_divide),
        BinaryOp::LogicalAnd | BinaryOp::LogicalOr | BinaryOp::LogicalXor => {
            return logical(op, x, y, alloc)
        }
    }?;
    Ok(T::wrap(out))
}

/// Rejects right-hand operands that have no integer result (division by
/// zero, negative exponents) before anything is computed.
fn check_rhs<T: Num>(op: BinaryOp, rhs: &ArrayD<T>) -> Result<(), OpError> {
    if !T::INTEGER {
        return Ok(());
    }
    match op {
        BinaryOp::Div | BinaryOp::Mod | BinaryOp::FloorDivide
            if rhs.iter().any(|&v| v == T::ZERO) =>
        {
            Err(OpError::DivisionByZero { op: op.name() })
        }
        BinaryOp::Pow if rhs.iter().any(|&v| v < T::ZERO) => Err(invalid(
            op.name(),
            "integers cannot be raised to negative powers",
        )),
        _ => Ok(()),
    }
}

/// Bool supports the logical ops only: or (add, maximum), and (mul,
/// minimum).
fn binary_bool(
    op: BinaryOp,
    x: &ArrayD<bool>,
    y: &ArrayD<bool>,
    alloc: &dyn Alloc,
) -> Result<Array, OpError> {
    let name = op.name();
    let any = match op {
        BinaryOp::Add | BinaryOp::Maximum => true,
        BinaryOp::Mul | BinaryOp::Minimum => false,
        _ => {
            return Err(OpError::Unsupported {
                op: name,
                dtype: DType::Bool,
            })
        }
    };
    let shape = broadcast_shape(name, x.shape(), y.shape())?;
    let out = if any {
        zip_map(name, &shape, x, y, alloc, |a, b| a | b)?
    } else {
        zip_map(name, &shape, x, y, alloc, |a, b| a & b)?
    };
    Ok(Array::Bool(out))
}

/// The logical ops, on any dtype: nonzero (NaN included) is true.
fn logical<T: Elem>(
    op: BinaryOp,
    x: &ArrayD<T>,
    y: &ArrayD<T>,
    alloc: &dyn Alloc,
) -> Result<Array, OpError> {
    let name = op.name();
    let shape = broadcast_shape(name, x.shape(), y.shape())?;
    let t = |v: T| v != T::ZERO;
    let out = match op {
        BinaryOp::LogicalOr => zip_map(name, &shape, x, y, alloc, |a, b| t(a) || t(b)),
        BinaryOp::LogicalXor => zip_map(name, &shape, x, y, alloc, |a, b| t(a) != t(b)),
        _ => zip_map(name, &shape, x, y, alloc, |a, b| t(a) && t(b)),
    }?;
    Ok(Array::Bool(out))
}

/// Dispatches a binary op on two arrays of one dtype.
fn binary_typed(op: BinaryOp, a: &Array, b: &Array, alloc: &dyn Alloc) -> Result<Array, OpError> {
    use super::dtype::IntDiv;
    let name = op.name();
    if matches!(
        op,
        BinaryOp::LogicalAnd | BinaryOp::LogicalOr | BinaryOp::LogicalXor
    ) {
        return dispatch!(a, x => logical(op, x, same(name, x, b)?, alloc));
    }
    fn floats<T: Float>(x: &ArrayD<T>) -> DivOps<T> {
        let _ = x;
        (T::modulo, T::floor_divide)
    }
    fn ints<T: IntDiv>(x: &ArrayD<T>) -> DivOps<T> {
        let _ = x;
        (T::modulo, T::floor_divide)
    }
    dispatch!(a,
        float x => binary_num(op, x, same(name, x, b)?, alloc, floats(x)),
        int x => binary_num(op, x, same(name, x, b)?, alloc, ints(x)),
        bool x => binary_bool(op, x, same(name, x, b)?, alloc))
}

/// The unary ops that give bool for any dtype.
fn unary_predicate<T: Elem>(
    op: UnaryOp,
    x: &ArrayD<T>,
    alloc: &dyn Alloc,
) -> Result<Array, OpError> {
    let name = op.name();
    let out = match op {
        UnaryOp::Isnan => map_std(name, x, alloc, |v: T| v.is_nan()),
        UnaryOp::Isfinite => map_std(name, x, alloc, |v: T| v.is_finite()),
        _ => map_std(name, x, alloc, |v: T| v == T::ZERO),
    }?;
    Ok(Array::Bool(out))
}

pub(super) fn unary_num<T: Num>(
    op: UnaryOp,
    x: &ArrayD<T>,
    alloc: &dyn Alloc,
) -> Result<Array, OpError> {
    let name = op.name();
    let out = match op {
        UnaryOp::Neg => map_std(name, x, alloc, T::neg),
        UnaryOp::Abs => map_std(name, x, alloc, T::abs),
        UnaryOp::Relu => map_std(name, x, alloc, T::relu),
        // Integers are whole already.
        UnaryOp::Floor | UnaryOp::Ceil | UnaryOp::Round => map_std(name, x, alloc, |v| v),
        UnaryOp::LogicalNot | UnaryOp::Isnan | UnaryOp::Isfinite => {
            return unary_predicate(op, x, alloc)
        }
        UnaryOp::Exp
        | UnaryOp::Log
        | UnaryOp::Sqrt
        | UnaryOp::Sigmoid
        | UnaryOp::Tanh
        | UnaryOp::Sin
        | UnaryOp::Cos
        | UnaryOp::Tan
        | UnaryOp::Log1p
        | UnaryOp::Expm1
        | UnaryOp::Erf => Err(OpError::Unsupported {
            op: name,
            dtype: T::DTYPE,
        }),
    }?;
    Ok(T::wrap(out))
}

pub(super) fn unary_float<T: Float>(
    op: UnaryOp,
    x: &ArrayD<T>,
    alloc: &dyn Alloc,
) -> Result<Array, OpError> {
    let name = op.name();
    let out = match op {
        UnaryOp::Exp => map_std(name, x, alloc, T::exp),
        UnaryOp::Log => map_std(name, x, alloc, T::ln),
        UnaryOp::Sqrt => map_std(name, x, alloc, T::sqrt),
        UnaryOp::Sigmoid => map_std(name, x, alloc, T::sigmoid),
        UnaryOp::Tanh => map_std(name, x, alloc, T::tanh),
        UnaryOp::Floor => map_std(name, x, alloc, T::floor),
        UnaryOp::Ceil => map_std(name, x, alloc, T::ceil),
        UnaryOp::Round => map_std(name, x, alloc, T::round),
        UnaryOp::Sin => map_std(name, x, alloc, T::sin),
        UnaryOp::Cos => map_std(name, x, alloc, T::cos),
        UnaryOp::Tan => map_std(name, x, alloc, T::tan),
        UnaryOp::Log1p => map_std(name, x, alloc, T::log1p),
        UnaryOp::Expm1 => map_std(name, x, alloc, T::expm1),
        UnaryOp::Erf => map_std(name, x, alloc, T::erf),
        UnaryOp::Neg
        | UnaryOp::Abs
        | UnaryOp::Relu
        | UnaryOp::LogicalNot
        | UnaryOp::Isnan
        | UnaryOp::Isfinite => return unary_num(op, x, alloc),
    }?;
    Ok(T::wrap(out))
}

pub(super) fn compare_typed<T: Elem>(
    op: CompareOp,
    x: &ArrayD<T>,
    y: &ArrayD<T>,
    alloc: &dyn Alloc,
) -> Result<Array, OpError> {
    let name = op.name();
    let shape = broadcast_shape(name, x.shape(), y.shape())?;
    let out = match op {
        CompareOp::Eq => zip_map(name, &shape, x, y, alloc, |a, b| a == b),
        CompareOp::Ne => zip_map(name, &shape, x, y, alloc, |a, b| a != b),
        CompareOp::Lt => zip_map(name, &shape, x, y, alloc, |a, b| a < b),
        CompareOp::Le => zip_map(name, &shape, x, y, alloc, |a, b| a <= b),
        CompareOp::Gt => zip_map(name, &shape, x, y, alloc, |a, b| a > b),
        CompareOp::Ge => zip_map(name, &shape, x, y, alloc, |a, b| a >= b),
    }?;
    Ok(Array::Bool(out))
}

pub(super) fn cast_typed<S: Elem>(
    op: &'static str,
    x: &ArrayD<S>,
    dtype: DType,
    alloc: &dyn Alloc,
) -> Result<Array, OpError> {
    with_dtype!(dtype, D => Ok(D::wrap(map_std(op, x, alloc, S::cast::<D>)?)))
}

pub(super) fn where_typed<T: Elem>(
    cond: &ArrayD<bool>,
    x: &ArrayD<T>,
    y: &ArrayD<T>,
    alloc: &dyn Alloc,
) -> Result<Array, OpError> {
    const OP: &str = "select";
    let shape = broadcast_shape(OP, cond.shape(), x.shape())?;
    let shape = broadcast_shape(OP, &shape, y.shape())?;
    reserve(alloc, OP, &shape, T::DTYPE)?;
    let cv = broadcast_view(OP, cond, &shape)?;
    let (xv, yv) = (
        broadcast_view(OP, x, &shape)?,
        broadcast_view(OP, y, &shape)?,
    );
    let pick = |&c: &bool, &a: &T, &b: &T| if c { a } else { b };
    if parallel::worth(cv.len()) {
        let out = parallel::install(|| Zip::from(&cv).and(&xv).and(&yv).par_map_collect(pick));
        return Ok(T::wrap(standard(out)));
    }
    let mut out = ArrayD::from_elem(IxDyn(&shape), T::ZERO);
    Zip::from(&mut out)
        .and(&cv)
        .and(&xv)
        .and(&yv)
        .for_each(|o, c, a, b| *o = pick(c, a, b));
    Ok(T::wrap(out))
}

impl Array {
    /// Elementwise `a op b` with NumPy broadcasting.
    ///
    /// Operands of different dtypes are first converted to the dtype
    /// NumPy's `np.result_type` gives them ([`DType::promote`]).
    /// Integers wrap on overflow, divide truncating toward zero
    /// ([`OpError::DivisionByZero`] if any divisor is zero) and reject
    /// negative exponents. Bool supports only Add/Maximum (or) and
    /// Mul/Minimum (and). Float maximum/minimum propagate NaN.
    pub fn binary(op: BinaryOp, a: &Array, b: &Array, alloc: &dyn Alloc) -> Result<Array, OpError> {
        let (a, b) = promoted(op.name(), a, b, alloc)?;
        binary_typed(op, &a, &b, alloc)
    }

    /// Elementwise `a op s` (or `s op a` when `scalar_on_left`), with the
    /// scalar converted to `a`'s dtype as described on [`Scalar`]; otherwise
    /// the same as [`Array::binary`].
    pub fn binary_scalar(
        op: BinaryOp,
        a: &Array,
        s: Scalar,
        scalar_on_left: bool,
        alloc: &dyn Alloc,
    ) -> Result<Array, OpError> {
        let s = dispatch!(a, x => scalar_like(op.name(), x, s)?);
        if scalar_on_left {
            binary_typed(op, &s, a, alloc)
        } else {
            binary_typed(op, a, &s, alloc)
        }
    }

    /// Elementwise `op(a)`. Exp, Log, Sqrt, Sigmoid and Tanh need a float
    /// dtype; Neg and Abs wrap on integers; bool supports none of them
    /// ([`OpError::Unsupported`]).
    pub fn unary(op: UnaryOp, a: &Array, alloc: &dyn Alloc) -> Result<Array, OpError> {
        dispatch!(a,
        float x => unary_float(op, x, alloc),
        int x => unary_num(op, x, alloc),
        bool x => match op {
            UnaryOp::LogicalNot | UnaryOp::Isnan | UnaryOp::Isfinite => {
                unary_predicate(op, x, alloc)
            }
            _ => Err(OpError::Unsupported {
                op: op.name(),
                dtype: DType::Bool,
            }),
        })
    }

    /// Elementwise comparison with broadcasting, giving a bool array. NaN
    /// compares unequal to everything; `false < true`. Operands of
    /// different dtypes are compared in their promoted dtype
    /// ([`DType::promote`]).
    pub fn compare(
        op: CompareOp,
        a: &Array,
        b: &Array,
        alloc: &dyn Alloc,
    ) -> Result<Array, OpError> {
        let (a, b) = promoted(op.name(), a, b, alloc)?;
        dispatch!(&*a, x => compare_typed(op, x, same(op.name(), x, &b)?, alloc))
    }

    /// Elementwise `a op s`, with the scalar converted as described on
    /// [`Scalar`].
    pub fn compare_scalar(
        op: CompareOp,
        a: &Array,
        s: Scalar,
        alloc: &dyn Alloc,
    ) -> Result<Array, OpError> {
        dispatch!(a, x => {
            let s = ArrayD::from_elem(IxDyn(&[]), scalar_to(op.name(), s)?);
            compare_typed(op, x, &s, alloc)
        })
    }

    /// Converts to `dtype`, NumPy's `astype`: between integers the value
    /// wraps (two's complement, as NumPy); an integer or float becomes the
    /// nearest float (overflowing to infinity, as NumPy); a float becomes
    /// an integer truncated toward zero, and one out of the integer's range
    /// saturates to its minimum or maximum, NaN giving 0 (NumPy leaves
    /// both undefined); bool converts to 0/1 and a number to bool as `!= 0`
    /// (NaN is true).
    pub fn cast(a: &Array, dtype: DType, alloc: &dyn Alloc) -> Result<Array, OpError> {
        Array::cast_as("cast", a, dtype, alloc)
    }

    /// [`Array::cast`] for the op `op`, whose name an error carries.
    pub(crate) fn cast_as(
        op: &'static str,
        a: &Array,
        dtype: DType,
        alloc: &dyn Alloc,
    ) -> Result<Array, OpError> {
        dispatch!(a, x => cast_typed(op, x, dtype, alloc))
    }

    /// Elementwise `if cond { a } else { b }` with broadcasting of all three;
    /// `cond` must be bool; `a` and `b` are promoted to a common dtype
    /// ([`DType::promote`]), as `np.where` does.
    pub fn where_(cond: &Array, a: &Array, b: &Array, alloc: &dyn Alloc) -> Result<Array, OpError> {
        let Array::Bool(c) = cond else {
            return Err(OpError::DTypeMismatch {
                op: "select",
                lhs: DType::Bool,
                rhs: cond.dtype(),
            });
        };
        let (a, b) = promoted("select", a, b, alloc)?;
        dispatch!(&*a, x => where_typed(c, x, same("select", x, &b)?, alloc))
    }
}

fn clip_typed<T: Num>(
    x: &ArrayD<T>,
    min: Option<Scalar>,
    max: Option<Scalar>,
    alloc: &dyn Alloc,
) -> Result<Array, OpError> {
    const OP: &str = "clip";
    let lo = min.map(|s| scalar_to::<T>(OP, s)).transpose()?;
    let hi = max.map(|s| scalar_to::<T>(OP, s)).transpose()?;
    // NumPy: minimum(maximum(x, lo), hi), so NaN stays and lo > hi gives hi.
    let out = map_std(OP, x, alloc, move |v| {
        let v = lo.map_or(v, |lo| T::maximum(v, lo));
        hi.map_or(v, |hi| T::minimum(v, hi))
    })?;
    Ok(T::wrap(out))
}

impl Array {
    /// Clamps every element to `[min, max]` (either bound may be absent),
    /// NumPy's `clip`: the bounds convert to `a`'s dtype as described on
    /// [`Scalar`]; NaN stays NaN; `min > max` gives `max`. Bool is
    /// unsupported.
    pub fn clip(
        a: &Array,
        min: Option<Scalar>,
        max: Option<Scalar>,
        alloc: &dyn Alloc,
    ) -> Result<Array, OpError> {
        dispatch!(a, x => clip_typed(x, min, max, alloc), bool _x => Err(OpError::Unsupported {
            op: "clip",
            dtype: DType::Bool,
        }))
    }
}
