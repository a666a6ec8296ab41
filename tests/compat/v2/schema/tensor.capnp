# Tensors held by workers, as capabilities.
#
# A `Tensor` lives on the worker that made it. Every op is a method on a
# tensor (or on the worker) that returns a new `Tensor` capability at once,
# so a chain such as x.matmul(w).binary(add, b).unary(relu).reduce(sum)
# pipelines: the client sends every call before the first returns, and the
# whole chain costs one round trip. A tensor is freed when the last
# capability to it is released (or its holder disconnects); there is no
# delete call.
#
# Errors (shape or dtype mismatch, quota, ...) fail the call with a message
# naming the op; calls pipelined on the failed result fail the same way.

@0xbc7b3de8dd6ccb2c;

using import "actor.capnp".Actor;

enum DType {
  f32 @0;
  f64 @1;
  i32 @2;
  i64 @3;
  bool @4;
}

struct TensorData {
  # A tensor's contents: row-major, little-endian.

  dtype @0 :DType;
  shape @1 :List(UInt64);
  data @2 :Data;
  # Exactly product(shape) * size(dtype) bytes; bool is one byte, 0 or 1.
}

struct Scalar {
  union {
    float @0 :Float64;
    int @1 :Int64;
    bool @2 :Bool;
  }
}

enum BinaryOp {
  add @0;
  sub @1;
  mul @2;
  div @3;
  pow @4;
  maximum @5;
  minimum @6;
}

enum UnaryOp {
  neg @0;
  abs @1;
  exp @2;
  log @3;
  sqrt @4;
  relu @5;
  sigmoid @6;
  tanh @7;
}

enum CompareOp {
  eq @0;
  ne @1;
  lt @2;
  le @3;
  gt @4;
  ge @5;
}

enum ReduceOp {
  sum @0;
  mean @1;
  max @2;
  min @3;
  argmax @4;
  argmin @5;
}

struct SliceSpec {
  # Python slice semantics for one axis: start:stop:step, negative indices
  # count from the end, out-of-range bounds clamp.
  start @0 :Int64;
  hasStart @1 :Bool;
  stop @2 :Int64;
  hasStop @3 :Bool;
  step @4 :Int64 = 1;
}

struct Distribution {
  union {
    uniform :group {
      low @0 :Float64;
      high @1 :Float64 = 1;
    }
    normal :group {
      mean @2 :Float64;
      std @3 :Float64 = 1;
    }
  }
}

interface Tensor {
  # A tensor on a worker. Tensor arguments must live on the same worker
  # (bring them over with `TensorWorker.fetch` first).

  meta @0 () -> (dtype :DType, shape :List(UInt64));
  read @1 () -> (data :TensorData);
  # The contents. Bounded by the connection's message size limit.

  binary @2 (op :BinaryOp, other :Tensor) -> (result :Tensor);
  # Elementwise with NumPy broadcasting; both operands of one dtype.
  binaryScalar @3 (op :BinaryOp, scalar :Scalar, scalarOnLeft :Bool) -> (result :Tensor);
  unary @4 (op :UnaryOp) -> (result :Tensor);
  compare @5 (op :CompareOp, other :Tensor) -> (result :Tensor);
  # Gives a bool tensor.
  compareScalar @6 (op :CompareOp, scalar :Scalar) -> (result :Tensor);
  matmul @7 (other :Tensor) -> (result :Tensor);
  # NumPy matmul: 1-D, 2-D and batched with broadcast batch dims.
  reduce @8 (op :ReduceOp, axis :Int64, allAxes :Bool, keepDims :Bool) -> (result :Tensor);
  # Over `axis` (negative counts from the end), or every axis if `allAxes`.
  reshape @9 (shape :List(Int64)) -> (result :Tensor);
  # One dimension may be -1.
  transpose @10 (perm :List(UInt32)) -> (result :Tensor);
  # An empty `perm` reverses the axes.
  slice @11 (specs :List(SliceSpec)) -> (result :Tensor);
  cast @12 (dtype :DType) -> (result :Tensor);
  select @13 (ifTrue :Tensor, ifFalse :Tensor) -> (result :Tensor);
  # This (bool) tensor picks from `ifTrue` or `ifFalse`, broadcasting.

  take @14 () -> (data :TensorData);
  # The contents, after which this tensor is freed and later calls on it
  # fail. What `TensorWorker.fetch` with `move` uses.
}

interface TensorWorker extends(Actor) {
  # An actor that holds tensors and computes on them.

  fromData @0 (data :TensorData) -> (tensor :Tensor);
  full @1 (dtype :DType, shape :List(UInt64), value :Scalar) -> (tensor :Tensor);
  arange @2 (dtype :DType, start :Float64, stop :Float64, step :Float64 = 1) -> (tensor :Tensor);
  random @3 (dtype :DType, shape :List(UInt64), distribution :Distribution, seed :UInt64) -> (tensor :Tensor);
  # Deterministic for a given seed.
  concat @4 (tensors :List(Tensor), axis :Int64) -> (tensor :Tensor);
  fetch @5 (source :Tensor, move :Bool) -> (tensor :Tensor);
  # A copy of `source`, a tensor held by another worker, on this one. With
  # `move`, the source is freed once its contents have been read. The
  # result is this worker's own answer, so calls pipeline on it at once.

  memory @6 () -> (limit :UInt64, used :UInt64, connectionLimit :UInt64, connectionUsed :UInt64);
  # The worker's memory limit and the bytes its tensors hold (or that ops
  # under way have reserved); then the same for the calling connection's own
  # budget, or 0 and 0 if it has none. A call that would go over a limit
  # fails with `overloaded`. Added in schema version 2: older workers answer
  # `unimplemented`.
}
