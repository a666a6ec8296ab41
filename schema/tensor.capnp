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
  f16 @5;
  # The rest since schema version 4: IEEE half float (NumPy's float16),
  # bfloat16 (no NumPy dtype), and the other integers, all little-endian.
  bf16 @6;
  u8 @7;
  i8 @8;
  i16 @9;
  u16 @10;
  u32 @11;
  u64 @12;
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
  mod @7;
  # Remainder with the sign of the divisor (NumPy's `mod`); integer
  # division by zero is an error (schema version 4).
  floorDivide @8;
  # Division rounding toward minus infinity (NumPy's `floor_divide`).
  logicalAnd @9;
  # Elementwise truth of both, as bool; any dtype, nonzero is true.
  logicalOr @10;
  logicalXor @11;
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
  floor @8;
  # The rest since schema version 4. Floor, ceil and round (half to
  # even, as NumPy) leave integers as they are; the others need floats.
  ceil @9;
  round @10;
  sin @11;
  cos @12;
  tan @13;
  log1p @14;
  expm1 @15;
  logicalNot @16;
  # Bool result for any dtype, as do `isnan` and `isfinite`.
  isnan @17;
  isfinite @18;
  erf @19;
  # The error function (floats only).
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
  prod @6;
  # The rest since schema version 4. `prod` keeps integer dtypes (and
  # wraps), bool counts as i64.
  var @7;
  # Variance and standard deviation with `ddof` (floats keep their dtype,
  # integers and bool give f64).
  std @8;
  any @9;
  # Bool results, for any dtype (nonzero is true).
  all @10;
  normL1 @11;
  # Vector norms over the axis: sum |x|, sqrt(sum x^2), max |x|; floats
  # keep their dtype, integers and bool give f64.
  normL2 @12;
  normInf @13;
}

enum CumulativeOp {
  # Schema version 4.
  cumsum @0;
  cumprod @1;
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
  # Elementwise with NumPy broadcasting. Since schema version 4 operands
  # of different dtypes promote as NumPy's `result_type` (docs/TENSOR_OPS.md).
  binaryScalar @3 (op :BinaryOp, scalar :Scalar, scalarOnLeft :Bool) -> (result :Tensor);
  unary @4 (op :UnaryOp) -> (result :Tensor);
  compare @5 (op :CompareOp, other :Tensor) -> (result :Tensor);
  # Gives a bool tensor.
  compareScalar @6 (op :CompareOp, scalar :Scalar) -> (result :Tensor);
  matmul @7 (other :Tensor) -> (result :Tensor);
  # NumPy matmul: 1-D, 2-D and batched with broadcast batch dims.
  reduce @8 (op :ReduceOp, axis :Int64, allAxes :Bool, keepDims :Bool, ddof :UInt32) -> (result :Tensor);
  # Over `axis` (negative counts from the end), or every axis if `allAxes`.
  # `ddof` (schema version 4): delta degrees of freedom of `var` and `std`.
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

  readTo @15 (sink :Sink, offset :UInt64, chunkBytes :UInt32, inlineBytes :UInt64, move :Bool)
      -> (dtype :DType, shape :List(UInt64), crc32c :UInt32, data :Data);
  # The contents from byte `offset` on, of any size (schema version 3).
  # If they come to at most `inlineBytes`, they travel in `data` and `sink`
  # is not called. Otherwise the worker calls `sink.begin`, then streams
  # them into `sink.write` in chunks of at most `chunkBytes` (the worker
  # clamps it to 4 KiB..8 MiB; 0 means 1 MiB), calls `sink.end`, and
  # returns once the sink has accepted the whole, with `data` empty. `crc32c` is the CRC32C (Castagnoli) of
  # the whole tensor's bytes, from offset 0, whichever way they travelled.
  # A download cut midway resumes with another `readTo` from the offset
  # the sink holds. With `move`, the tensor is freed once all its bytes
  # are acknowledged (`take`, streamed).

  handoff @16 (move :Bool) -> (ticket :Data, address :Text, tlsCertificate :Data);
  # Lets another worker read this tensor straight from this one (schema
  # version 3): a one-time, unguessable, expiring ticket, the address
  # where this worker's gate redeems it (`Gate.redeem`), and this worker's
  # TLS certificate (DER) if it serves TLS, to pin. The ticket grants one
  # `readTo` (and `meta`) of this tensor and nothing else. An address
  # starting with "in-process:" is reachable only from the same process.

  softmax @17 (axis :Int64, log :Bool) -> (result :Tensor);
  # exp(x) / sum(exp(x)) over `axis`, computed stably (max subtracted
  # first); `log` gives log_softmax. Floats only (schema version 4).
  cumulative @18 (op :CumulativeOp, axis :Int64) -> (result :Tensor);
  # Running sum or product along `axis`, dtypes as `reduce`'s sum.
  clip @19 (min :Scalar, hasMin :Bool, max :Scalar, hasMax :Bool) -> (result :Tensor);
  # Each element clamped to [min, max] (either may be absent); the scalars
  # convert to the tensor's dtype; min > max gives max, as NumPy.

  # Indexing with tensors (schema version 4). Indices have any integer
  # dtype; negative ones count from the end; one out of range fails the
  # call, naming it, the axis and its size.
  takeAlongAxis @20 (indices :Tensor, axis :Int64) -> (result :Tensor);
  # NumPy's take_along_axis: `indices` has this tensor's number of
  # dimensions; outside `axis` the two shapes broadcast.
  indexSelect @21 (indices :Tensor, axis :Int64) -> (result :Tensor);
  # NumPy's take(x, indices, axis): shape x[:axis] + indices + x[axis+1:].
  maskSelect @22 (mask :Tensor) -> (result :Tensor);
  # NumPy's x[mask]: a bool mask of this tensor's shape or of its leading
  # dimensions; shape [count] + the rest, in row-major order.
  scatter @23 (indices :Tensor, values :Tensor, axis :Int64, accumulate :Bool) -> (result :Tensor);
  # A new tensor: this one with `values` (cast to this dtype, broadcast to
  # the indices' shape) written at `indices` along `axis` (NumPy's
  # put_along_axis; outside `axis` the indices' dimensions are this
  # tensor's or 1). Repeated
  # indices: the last along the axis wins, or with `accumulate` all add
  # up (torch's scatter_add, NumPy's add.at).

  # Assignment (schema version 4): the only calls that change a tensor.
  # The change is made in this tensor, so every holder of this capability
  # sees it; tensors derived from it earlier, named copies (`store`) and
  # handoff tickets keep the contents they had (copy-on-write). Calls on
  # this capability run in the order they arrive: one pipelined after the
  # assignment on the same connection sees it. A failed assignment writes
  # nothing. The result is this same tensor, answered once written.
  assign @24 (specs :List(SliceSpec), value :Tensor) -> (result :Tensor);
  # x[specs] = value, `value` (cast to this dtype) broadcast to the slice.
  assignMask @25 (mask :Tensor, value :Tensor) -> (result :Tensor);
  # x[mask] = value, `value` broadcast to the selection's shape.
  tensordot @26 (other :Tensor, axes :UInt32, axesSelf :List(Int64), axesOther :List(Int64))
      -> (result :Tensor);
  # NumPy's tensordot: sums over the last `axes` axes of this tensor and
  # the first `axes` of `other`, or, if the lists are given (of one
  # length), over `axesSelf` of this one paired with `axesOther`.
  split @27 (axis :Int64, sections :UInt64, indices :List(Int64)) -> (parts :List(Tensor));
  # NumPy's split along `axis`: into `sections` equal parts (which must
  # divide the axis), or, if `sections` is 0, at `indices` (slice
  # semantics: negative counts from the end, out of range clamps). A list
  # of capabilities cannot be pipelined on: the parts are usable once the
  # answer arrives.
  squeeze @28 (axes :List(Int64)) -> (result :Tensor);
  # Removes the given length-1 axes, or every one if `axes` is empty.
  expandDims @29 (axes :List(Int64)) -> (result :Tensor);
  # Inserts length-1 axes at `axes` (positions in the result).
  broadcastTo @30 (shape :List(UInt64)) -> (result :Tensor);
  # NumPy's broadcast_to, as a copy.
  tile @31 (reps :List(UInt64)) -> (result :Tensor);
  # NumPy's tile.
  flip @32 (axes :List(Int64)) -> (result :Tensor);
  # Reverses the order along `axes`, or along every axis if empty.
  sort @33 (axis :Int64) -> (result :Tensor);
  # Sorted along `axis`, stably; NaN last, as NumPy.
  argsort @34 (axis :Int64) -> (result :Tensor);
  # The indices (i64) that sort along `axis`, stably; NaN last.
  topk @35 (k :UInt64, axis :Int64, largest :Bool) -> (values :Tensor, indices :Tensor);
  # The `k` largest (or smallest) along `axis`, in order, with their
  # indices (i64); ties keep the lower index first, NaN counts as largest.
}

interface Sink {
  # Where a streamed download goes: a capability the reader passes to
  # `Tensor.readTo` (schema version 3).

  begin @0 (dtype :DType, shape :List(UInt64), offset :UInt64) -> ();
  # Announces the tensor and the offset the chunks start from.

  write @1 (offset :UInt64, data :Data, crc32c :UInt32) -> stream;
  # The bytes from `offset`, with the CRC32C of `data`. Chunks arrive in
  # order and back to back.

  end @2 (crc32c :UInt32) -> ();
  # Every chunk has been sent; `crc32c` is the CRC32C of the whole tensor.
  # The sink checks that every byte arrived and matches, and its answer
  # acknowledges the whole download.
}

interface Upload {
  # A tensor being uploaded in chunks (`TensorWorker.upload`, schema
  # version 3). Its bytes were reserved and allocated once, when the
  # upload began; chunks are written straight into them.

  write @0 (offset :UInt64, data :Data, crc32c :UInt32) -> stream;
  # The bytes from `offset`, which must be where the last chunk ended,
  # with the CRC32C of `data`. A chunk out of order, past the announced
  # size or with a wrong checksum fails the upload and frees its bytes.

  finish @1 (crc32c :UInt32) -> (tensor :Tensor);
  # Checks that every byte arrived and that `crc32c` is the CRC32C of the
  # whole tensor, then hands the tensor out. Only then is it visible.

  status @2 () -> (offset :UInt64, bytes :UInt64);
  # Bytes received so far, and the tensor's size.
}

struct ObjectInfo {
  # A named object on a worker (`TensorWorker.list`).

  name @0 :Text;
  dtype @1 :DType;
  shape @2 :List(UInt64);
  bytes @3 :UInt64;
  expiresInMillis @4 :UInt64;
  # 0 if it has no TTL.
}

interface TensorWorker extends(Actor) {
  # An actor that holds tensors and computes on them.

  fromData @0 (data :TensorData) -> (tensor :Tensor);
  full @1 (dtype :DType, shape :List(UInt64), value :Scalar) -> (tensor :Tensor);
  arange @2 (dtype :DType, start :Float64, stop :Float64, step :Float64 = 1) -> (tensor :Tensor);
  random @3 (dtype :DType, shape :List(UInt64), distribution :Distribution, seed :UInt64) -> (tensor :Tensor);
  # Deterministic for a given seed.
  concat @4 (tensors :List(Tensor), axis :Int64) -> (tensor :Tensor);
  fetch @5 (source :Tensor, move :Bool, name :Text) -> (tensor :Tensor);
  # A copy of `source`, a tensor held by another worker, on this one. With
  # `move`, the source is freed once its contents have been read. The
  # result is this worker's own answer, so calls pipeline on it at once.
  # Since schema version 3 the bytes go straight from the source worker
  # when it can hand them off (`Tensor.handoff`), else through the caller,
  # streamed; with a `name`, the copy is also stored under that name
  # (`store`) when its bytes are in, even if the caller has gone by then.

  memory @6 () -> (limit :UInt64, used :UInt64, connectionLimit :UInt64, connectionUsed :UInt64);
  # The worker's memory limit and the bytes its tensors hold (or that ops
  # under way have reserved); then the same for the calling connection's own
  # budget, or 0 and 0 if it has none. A call that would go over a limit
  # fails with `overloaded`. Added in schema version 2: older workers answer
  # `unimplemented`.

  upload @7 (dtype :DType, shape :List(UInt64)) -> (upload :Upload, id :Data);
  # Begins a chunked upload of a tensor of any size (schema version 3):
  # reserves its bytes from the quotas and allocates it once. `id` names
  # the upload for `resumeUpload` if the connection is cut midway.

  resumeUpload @8 (id :Data) -> (upload :Upload, offset :UInt64);
  # Picks up an upload cut midway, on any connection, from the offset the
  # worker holds. An upload left alone longer than the worker's resume
  # time is freed and can no longer be resumed.

  store @9 (name :Text, tensor :Tensor, ttlMillis :UInt64) -> ();
  # Keeps `tensor` (one of this worker's) under `name`, beyond the
  # connection that made it, until `delete` or, if `ttlMillis` > 0, that
  # long. Any client that passes the gate can `load` it. Fails if the name
  # is taken.

  load @10 (name :Text) -> (tensor :Tensor);
  # The tensor stored under `name`.

  delete @11 (name :Text) -> ();
  # Forgets `name`; the tensor is freed once no one holds it.

  list @12 () -> (objects :List(ObjectInfo));
  # Every named object, sorted by name.

  einsum @13 (subscripts :Text, operands :List(Tensor)) -> (tensor :Tensor);
  # NumPy's einsum over tensors of this worker: explicit ("ij,jk->ik")
  # or implicit ("ij,jk") subscripts, letters and "...".
  stack @14 (tensors :List(Tensor), axis :Int64) -> (tensor :Tensor);
  # Joins tensors of one shape along a new axis.
  eye @15 (dtype :DType, n :UInt64, m :UInt64, hasM :Bool, k :Int64) -> (tensor :Tensor);
  # An n x m (m = n unless `hasM`) array with ones on diagonal `k`.
  linspace @16 (dtype :DType, start :Float64, stop :Float64, num :UInt64, endpoint :Bool = true)
      -> (tensor :Tensor);
  # `num` evenly spaced values from `start` to `stop` (included if
  # `endpoint`); integer dtypes round toward minus infinity, as NumPy 2.
  randint @17 (dtype :DType, low :Int64, high :Int64, shape :List(UInt64), seed :UInt64)
      -> (tensor :Tensor);
  # Uniform integers in [low, high), deterministic for a given seed.
  permutation @18 (n :UInt64, seed :UInt64) -> (tensor :Tensor);
  # 0..n shuffled (i64), deterministic for a given seed.
}
