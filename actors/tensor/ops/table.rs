//! The op table: every op enum of `schema/tensor.capnp`, written once.
//!
//! [`op_table!`] hands the whole table to a macro of the caller's. This
//! module expands it into the op enums and their names (the schema's
//! enumerant names, which start every error message of the op); the codec
//! expands it into the mapping to and from the generated wire enums, and
//! the client into its methods. A tensor op added to the schema's enums is
//! added here, once; the codec's `match`es stop compiling until it is, and
//! a codec test walks every value of the generated enums.

/// Calls `$then!` with the table. Each family gives: the enum's name, what
/// the codec calls a tag it does not know, the codec's decoding and
/// encoding functions; then per variant its doc, the schema's enumerant
/// name and the client methods (`[tensor, scalar]` for binary and compare
/// ops, `[method]` for unary ops, `[]` for reductions, whose client
/// methods take axes).
macro_rules! op_table {
    ($then:ident) => {
        $then! {
            binary: {
                /// Elementwise binary operations, see [`Array::binary`](crate::actors::tensor::Array::binary).
                BinaryOp "binary op" binary_op binary_to_wire;
                /// `a + b`; logical or on bool.
                Add "add" [add, add_scalar];
                /// `a - b`.
                Sub "sub" [sub, sub_scalar];
                /// `a * b`; logical and on bool.
                Mul "mul" [mul, mul_scalar];
                /// `a / b`; integer division truncates toward zero.
                Div "div" [div, div_scalar];
                /// `a` raised to the power `b`.
                Pow "pow" [pow, pow_scalar];
                /// Larger of the two (NaN wins); logical or on bool.
                Maximum "maximum" [maximum, maximum_scalar];
                /// Smaller of the two (NaN wins); logical and on bool.
                Minimum "minimum" [minimum, minimum_scalar];
                /// Remainder with the divisor's sign (NumPy `mod`).
                Mod "mod" [modulo, modulo_scalar];
                /// Division rounded toward minus infinity (NumPy `floor_divide`).
                FloorDivide "floorDivide" [floor_divide, floor_divide_scalar];
                /// Both nonzero, as bool (any dtype).
                LogicalAnd "logicalAnd" [logical_and, logical_and_scalar];
                /// Either nonzero, as bool (any dtype).
                LogicalOr "logicalOr" [logical_or, logical_or_scalar];
                /// Exactly one nonzero, as bool (any dtype).
                LogicalXor "logicalXor" [logical_xor, logical_xor_scalar];
            }
            unary: {
                /// Elementwise unary operations, see [`Array::unary`](crate::actors::tensor::Array::unary).
                UnaryOp "unary op" unary_op unary_to_wire;
                /// `-a` (wrapping on integers).
                Neg "neg" [neg];
                /// `|a|` (wrapping on integers: `abs(MIN) == MIN`).
                Abs "abs" [abs];
                /// `e^a` (floats only).
                Exp "exp" [exp];
                /// Natural logarithm (floats only).
                Log "log" [log];
                /// Square root (floats only).
                Sqrt "sqrt" [sqrt];
                /// `max(a, 0)`.
                Relu "relu" [relu];
                /// `1 / (1 + e^-a)` (floats only).
                Sigmoid "sigmoid" [sigmoid];
                /// Hyperbolic tangent (floats only).
                Tanh "tanh" [tanh];
                /// Largest integer not above (integers unchanged).
                Floor "floor" [floor];
                /// Smallest integer not below (integers unchanged).
                Ceil "ceil" [ceil];
                /// Nearest integer, half to even as NumPy (integers unchanged).
                Round "round" [round];
                /// Sine (floats only).
                Sin "sin" [sin];
                /// Cosine (floats only).
                Cos "cos" [cos];
                /// Tangent (floats only).
                Tan "tan" [tan];
                /// `ln(1 + a)`, accurate near 0 (floats only).
                Log1p "log1p" [log1p];
                /// `e^a - 1`, accurate near 0 (floats only).
                Expm1 "expm1" [expm1];
                /// Zero (or false), as bool (any dtype).
                LogicalNot "logicalNot" [logical_not];
                /// Whether NaN, as bool (any dtype).
                Isnan "isnan" [isnan];
                /// Whether neither NaN nor infinite, as bool (any dtype).
                Isfinite "isfinite" [isfinite];
                /// The error function (floats only).
                Erf "erf" [erf];
            }
            compare: {
                /// Elementwise comparisons, see [`Array::compare`](crate::actors::tensor::Array::compare).
                CompareOp "compare op" compare_op compare_to_wire;
                /// `a == b`.
                Eq "eq" [eq, eq_scalar];
                /// `a != b`.
                Ne "ne" [ne, ne_scalar];
                /// `a < b`.
                Lt "lt" [lt, lt_scalar];
                /// `a <= b`.
                Le "le" [le, le_scalar];
                /// `a > b`.
                Gt "gt" [gt, gt_scalar];
                /// `a >= b`.
                Ge "ge" [ge, ge_scalar];
            }
            reduce: {
                /// Reductions, see [`Array::reduce`](crate::actors::tensor::Array::reduce).
                ReduceOp "reduce op" reduce_op reduce_to_wire;
                /// Sum; integers wrap and keep their dtype, bool counts `true`s as I64.
                Sum "sum" [];
                /// Arithmetic mean; integers and bool give F64, an empty mean is NaN.
                Mean "mean" [];
                /// Largest element (NaN wins).
                Max "max" [];
                /// Smallest element (NaN wins).
                Min "min" [];
                /// Index (I64) of the first largest element (or of the first NaN).
                Argmax "argmax" [];
                /// Index (I64) of the first smallest element (or of the first NaN).
                Argmin "argmin" [];
                /// Product; integers wrap and keep their dtype, bool gives I64.
                Prod "prod" [];
                /// Variance with `ddof`; integers and bool give F64.
                Var "var" [];
                /// Standard deviation with `ddof`; integers and bool give F64.
                Std "std" [];
                /// Whether any element is nonzero (Bool).
                Any "any" [];
                /// Whether every element is nonzero (Bool).
                All "all" [];
                /// Sum of absolute values; integers and bool give F64.
                NormL1 "normL1" [];
                /// Square root of the sum of squares; integers and bool give F64.
                NormL2 "normL2" [];
                /// Largest absolute value; integers and bool give F64.
                NormInf "normInf" [];
            }
            cumulative: {
                /// Running reductions, see [`Array::cumulative`](crate::actors::tensor::Array::cumulative).
                CumulativeOp "cumulative op" cumulative_op cumulative_to_wire;
                /// Running sum (dtypes as `sum`'s).
                Cumsum "cumsum" [cumsum];
                /// Running product (dtypes as `prod`'s).
                Cumprod "cumprod" [cumprod];
            }
        }
    };
}
pub(crate) use op_table;

/// Expands the table into the op enums.
macro_rules! op_enums {
    ($($family:ident: {
        $(#[$edoc:meta])* $enum:ident $what:literal $from:ident $to:ident;
        $($(#[$doc:meta])* $v:ident $name:literal [$($m:ident),*];)*
    })*) => {$(
        $(#[$edoc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum $enum {
            $($(#[$doc])* $v,)*
        }

        impl $enum {
            /// Every op of the family, in schema order.
            pub const ALL: &'static [$enum] = &[$($enum::$v),*];

            /// The schema's name of the op, which starts its error
            /// messages, e.g. `"add"`.
            pub fn name(self) -> &'static str {
                match self {
                    $($enum::$v => $name,)*
                }
            }
        }
    )*};
}

op_table!(op_enums);
