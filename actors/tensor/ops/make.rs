//! Makers: filled arrays, ranges, identity matrices, seeded random
//! arrays, integers and permutations.

use ndarray::{ArrayD, IxDyn};
use rand::distr::{Distribution, Uniform};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_distr::Normal;
use rand_pcg::Pcg64;

use super::alloc::{reserve, Alloc};
use super::dtype::{with_dtype, Array, DType, Elem, Scalar};
use super::elementwise::scalar_to;
use super::error::{invalid, OpError};
use super::shape::{checked_len, dims_from_u64, from_vec};

pub(super) fn sample<T: Elem, D: Distribution<T>>(
    op: &'static str,
    dims: &[usize],
    dist: D,
    seed: u64,
    alloc: &dyn Alloc,
) -> Result<Array, OpError> {
    reserve(alloc, op, dims, T::DTYPE)?;
    let n = checked_len(dims).unwrap_or(0);
    let mut rng = Pcg64::seed_from_u64(seed);
    let data: Vec<T> = (0..n).map(|_| dist.sample(&mut rng)).collect();
    Ok(T::wrap(from_vec(dims, data)?))
}

pub(super) fn uniform_int<T>(
    dims: &[usize],
    low: f64,
    high: f64,
    seed: u64,
    alloc: &dyn Alloc,
) -> Result<Array, OpError>
where
    T: Elem + rand::distr::uniform::SampleUniform,
{
    const OP: &str = "random_uniform";
    let (lo, hi) = (
        scalar_to::<T>(OP, Scalar::Float(low))?,
        scalar_to::<T>(OP, Scalar::Float(high))?,
    );
    let dist = Uniform::new(lo, hi)
        .map_err(|_| invalid(OP, format!("low ({low}) must be less than high ({high})")))?;
    sample(OP, dims, dist, seed, alloc)
}

pub(super) fn fill<T: Elem>(
    op: &'static str,
    shape: &[u64],
    value: T,
    alloc: &dyn Alloc,
) -> Result<Array, OpError> {
    let dims = dims_from_u64(shape)?;
    reserve(alloc, op, &dims, T::DTYPE)?;
    Ok(T::wrap(ArrayD::from_elem(IxDyn(&dims), value)))
}

impl Array {
    /// An array of zeros (`false` for bool).
    pub fn zeros(dtype: DType, shape: &[u64], alloc: &dyn Alloc) -> Result<Array, OpError> {
        with_dtype!(dtype, T => fill("zeros", shape, T::ZERO, alloc))
    }

    /// An array of ones (`true` for bool).
    pub fn ones(dtype: DType, shape: &[u64], alloc: &dyn Alloc) -> Result<Array, OpError> {
        with_dtype!(dtype, T => fill("ones", shape, T::ONE, alloc))
    }

    /// An array filled with `value`, converted to `dtype` as described on
    /// [`Scalar`].
    pub fn full(
        dtype: DType,
        shape: &[u64],
        value: Scalar,
        alloc: &dyn Alloc,
    ) -> Result<Array, OpError> {
        with_dtype!(dtype, T => fill("full", shape, scalar_to::<T>("full", value)?, alloc))
    }

    /// Evenly spaced values `start, start + step, ...` below `stop` (above it
    /// for a negative step), as a 1-D array like NumPy's `arange`; the values
    /// are computed in f64 and converted with `as`. Errors on a zero or
    /// non-finite argument and on bool.
    pub fn arange(
        dtype: DType,
        start: f64,
        stop: f64,
        step: f64,
        alloc: &dyn Alloc,
    ) -> Result<Array, OpError> {
        const OP: &str = "arange";
        if dtype == DType::Bool {
            return Err(OpError::Unsupported { op: OP, dtype });
        }
        if !(start.is_finite() && stop.is_finite() && step.is_finite()) {
            return Err(invalid(OP, "start, stop and step must be finite"));
        }
        if step == 0.0 {
            return Err(invalid(OP, "step must not be zero"));
        }
        let count = ((stop - start) / step).ceil();
        let count = if count > 0.0 { count } else { 0.0 };
        if count >= isize::MAX as f64 {
            return Err(OpError::ShapeOverflow {
                shape: vec![count as u64],
            });
        }
        let count = count as usize;
        if let (Some((lo, hi)), Some(last)) = (dtype.int_range(), count.checked_sub(1)) {
            // Integer values that do not fit are refused rather than
            // saturated by `as` (NumPy would wrap them silently).
            for (i, v) in [(0, start), (last, start + last as f64 * step)] {
                if !(lo..hi).contains(&v.trunc()) {
                    return Err(invalid(
                        OP,
                        format!("value {v} at index {i} does not fit dtype {dtype}"),
                    ));
                }
            }
        }
        reserve(alloc, OP, &[count], dtype)?;
        with_dtype!(dtype, T => {
            let data: Vec<T> = (0..count).map(|i| T::from_f64(start + i as f64 * step)).collect();
            Ok(T::wrap(from_vec(&[count], data)?))
        })
    }

    /// Uniformly distributed values in `[low, high)`, deterministic for a
    /// given `seed` (PCG64). For integer dtypes `low` and `high` must be
    /// integers that fit the dtype. Bool is unsupported.
    pub fn random_uniform(
        dtype: DType,
        shape: &[u64],
        low: f64,
        high: f64,
        seed: u64,
        alloc: &dyn Alloc,
    ) -> Result<Array, OpError> {
        const OP: &str = "random_uniform";
        let dims = dims_from_u64(shape)?;
        let bounds = |_| {
            invalid(
                OP,
                format!("low ({low}) must be less than high ({high}) and both must be finite"),
            )
        };
        match dtype {
            DType::F32 => {
                let dist = Uniform::new(low as f32, high as f32).map_err(bounds)?;
                sample::<f32, _>(OP, &dims, dist, seed, alloc)
            }
            DType::F64 => {
                let dist = Uniform::new(low, high).map_err(bounds)?;
                sample::<f64, _>(OP, &dims, dist, seed, alloc)
            }
            DType::Bool => Err(OpError::Unsupported { op: OP, dtype }),
            // Drawn in f32 and rounded: a draw may round up to `high`.
            DType::F16 | DType::Bf16 => {
                let dist = Uniform::new(low as f32, high as f32).map_err(bounds)?;
                let a = sample::<f32, _>(OP, &dims, dist, seed, alloc)?;
                Array::cast_as(OP, &a, dtype, alloc)
            }
            _ => with_dtype!(dtype,
                float _T => Err(OpError::Unsupported { op: OP, dtype }),
                int T => uniform_int::<T>(&dims, low, high, seed, alloc),
                bool => Err(OpError::Unsupported { op: OP, dtype })),
        }
    }

    /// Normally distributed values, deterministic for a given `seed` (PCG64).
    /// Float dtypes only; `std` must be finite and non-negative.
    pub fn random_normal(
        dtype: DType,
        shape: &[u64],
        mean: f64,
        std: f64,
        seed: u64,
        alloc: &dyn Alloc,
    ) -> Result<Array, OpError> {
        const OP: &str = "random_normal";
        let dims = dims_from_u64(shape)?;
        let bad = || {
            invalid(
                OP,
                format!("mean ({mean}) must be finite and std ({std}) finite and non-negative"),
            )
        };
        if !mean.is_finite() || std.is_nan() || std < 0.0 {
            return Err(bad());
        }
        match dtype {
            DType::F32 => {
                let dist = Normal::new(mean as f32, std as f32).map_err(|_| bad())?;
                sample::<f32, _>(OP, &dims, dist, seed, alloc)
            }
            DType::F64 => {
                let dist = Normal::new(mean, std).map_err(|_| bad())?;
                sample::<f64, _>(OP, &dims, dist, seed, alloc)
            }
            DType::F16 | DType::Bf16 => {
                let dist = Normal::new(mean as f32, std as f32).map_err(|_| bad())?;
                let a = sample::<f32, _>(OP, &dims, dist, seed, alloc)?;
                Array::cast_as(OP, &a, dtype, alloc)
            }
            _ => Err(OpError::Unsupported { op: OP, dtype }),
        }
    }
}

impl Array {
    /// An `n × m` array (`m` = `n` if `None`) with ones on diagonal `k`
    /// (0 the main one, positive above it, negative below) and zeros
    /// elsewhere, NumPy's `eye`; `true`/`false` for bool.
    pub fn eye(
        dtype: DType,
        n: u64,
        m: Option<u64>,
        k: i64,
        alloc: &dyn Alloc,
    ) -> Result<Array, OpError> {
        let dims = dims_from_u64(&[n, m.unwrap_or(n)])?;
        reserve(alloc, "eye", &dims, dtype)?;
        with_dtype!(dtype, T => {
            let mut out = ArrayD::from_elem(IxDyn(&dims), T::ZERO);
            for (i, mut row) in out.outer_iter_mut().enumerate() {
                let j = i as i128 + i128::from(k);
                if let Some(v) = usize::try_from(j).ok().and_then(|j| row.get_mut(j)) {
                    *v = T::ONE;
                }
            }
            Ok(T::wrap(out))
        })
    }

    /// `num` evenly spaced values from `start` to `stop`, `stop` included
    /// if `endpoint` (NumPy's `linspace`). Computed in f64: integer dtypes
    /// round toward minus infinity (as NumPy 2) and must hold every value;
    /// bool is unsupported.
    pub fn linspace(
        dtype: DType,
        start: f64,
        stop: f64,
        num: u64,
        endpoint: bool,
        alloc: &dyn Alloc,
    ) -> Result<Array, OpError> {
        const OP: &str = "linspace";
        if dtype == DType::Bool {
            return Err(OpError::Unsupported { op: OP, dtype });
        }
        if !(start.is_finite() && stop.is_finite()) {
            return Err(invalid(OP, "start and stop must be finite"));
        }
        let dims = dims_from_u64(&[num])?;
        let n = dims[0];
        let div = if endpoint { n.saturating_sub(1) } else { n };
        let step = if div > 0 {
            (stop - start) / div as f64
        } else {
            0.0
        };
        let value = |i: usize| {
            if endpoint && n > 1 && i == n - 1 {
                stop
            } else {
                start + i as f64 * step
            }
        };
        if let Some((lo, hi)) = dtype.int_range() {
            for i in [0, n.saturating_sub(1)].into_iter().filter(|_| n > 0) {
                let v = value(i).floor();
                if !(lo..hi).contains(&v) {
                    return Err(invalid(
                        OP,
                        format!("value {v} at index {i} does not fit dtype {dtype}"),
                    ));
                }
            }
        }
        reserve(alloc, OP, &dims, dtype)?;
        let int = dtype.int_range().is_some();
        with_dtype!(dtype, T => {
            let data: Vec<T> = (0..n)
                .map(|i| {
                    let v = value(i);
                    T::from_f64(if int { v.floor() } else { v })
                })
                .collect();
            Ok(T::wrap(from_vec(&dims, data)?))
        })
    }

    /// Integers drawn uniformly from `[low, high)`, deterministic for a
    /// given `seed` (PCG64; the same seed gives the same array on every
    /// platform, but not NumPy's numbers). Integer dtypes only; `low` and
    /// `high - 1` must fit the dtype.
    pub fn randint(
        dtype: DType,
        low: i64,
        high: i64,
        shape: &[u64],
        seed: u64,
        alloc: &dyn Alloc,
    ) -> Result<Array, OpError> {
        const OP: &str = "randint";
        if dtype.int_range().is_none() {
            return Err(OpError::Unsupported { op: OP, dtype });
        }
        if low >= high {
            return Err(invalid(
                OP,
                format!("low ({low}) must be less than high ({high})"),
            ));
        }
        let dims = dims_from_u64(shape)?;
        with_dtype!(dtype, T => {
            for v in [low, high - 1] {
                scalar_to::<T>(OP, Scalar::Int(v)).map_err(|_| {
                    invalid(OP, format!("bounds [{low}, {high}) do not fit dtype {dtype}"))
                })?;
            }
            let dist = Uniform::new(low, high)
                .map_err(|_| invalid(OP, format!("low ({low}) must be less than high ({high})")))?;
            reserve(alloc, OP, &dims, T::DTYPE)?;
            let n = checked_len(&dims).unwrap_or(0);
            let mut rng = Pcg64::seed_from_u64(seed);
            let data: Vec<T> = (0..n).map(|_| T::from_i64(dist.sample(&mut rng))).collect();
            Ok(T::wrap(from_vec(&dims, data)?))
        })
    }

    /// `0..n` (I64) in an order shuffled by `seed` (PCG64 Fisher-Yates;
    /// the same seed gives the same permutation, not NumPy's).
    pub fn permutation(n: u64, seed: u64, alloc: &dyn Alloc) -> Result<Array, OpError> {
        const OP: &str = "permutation";
        let dims = dims_from_u64(&[n])?;
        if n > i64::MAX as u64 {
            return Err(OpError::ShapeOverflow { shape: vec![n] });
        }
        reserve(alloc, OP, &dims, DType::I64)?;
        let mut data: Vec<i64> = (0..n as i64).collect();
        let mut rng = Pcg64::seed_from_u64(seed);
        data.shuffle(&mut rng);
        Ok(Array::I64(from_vec(&dims, data)?))
    }
}
