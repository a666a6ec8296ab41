#!/usr/bin/env python3
"""Writes the conformance cases (tests/conformance/cases/*.json).

Expected tensor values are computed here, once, by NumPy; the runners only
compare. Run it after changing a case:

    python3 tests/conformance/generate.py

The format is described in tests/conformance/README.md.
"""

import json
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parent / "cases"
NP = {"f32": np.float32, "f64": np.float64, "i32": np.int32, "i64": np.int64, "bool": np.bool_,
      "f16": np.float16, "u8": np.uint8, "i8": np.int8, "i16": np.int16, "u16": np.uint16,
      "u32": np.uint32, "u64": np.uint64}
TOL = {"f32": 1e-5, "f64": 1e-12, "f16": 1e-3}


def dtype_name(a):
    for k, v in NP.items():
        if a.dtype == v:
            return k
    raise ValueError(a.dtype)


def values(a):
    out = []
    for v in np.asarray(a).reshape(-1).tolist():
        if isinstance(v, float) and not np.isfinite(v):
            out.append("nan" if np.isnan(v) else ("inf" if v > 0 else "-inf"))
        else:
            out.append(v)
    return out


def tensor(a):
    """A TensorData argument, written with `values` (runners pack it)."""
    a = np.asarray(a)
    return {"dtype": dtype_name(a), "shape": list(a.shape), "values": values(a)}


def expect_tensor(a):
    t = tensor(a)
    if t["dtype"] in TOL:
        t["tol"] = TOL[t["dtype"]]
    return {"results": {"data": t}}


def open_gate(worker="worker", gate="gate"):
    """Opens `gate` with the good token, pipelined, binding the actor."""
    return {"call": "Gate.open", "on": gate, "args": {"token": {"$token": "good"}},
            "as": {worker: "actor"}}


def make(name, a, worker="worker"):
    return {"call": "TensorWorker.fromData", "on": worker, "args": {"data": tensor(a)},
            "as": {name: "tensor"}}


def read(name, a):
    return {"call": "Tensor.read", "on": name, "expect": expect_tensor(a)}


def error(kind, prefix=None, contains=None):
    e = {"kind": kind}
    if prefix is not None:
        e["prefix"] = prefix
    if contains is not None:
        e["contains"] = contains
    return {"error": e}


def case(name, *steps):
    return {"name": name, "steps": list(steps)}


# ---- inputs ----

F = np.array([[1.5, -2.0, 3.25], [0.5, 4.0, -1.0]])
G = np.array([[2.0, 0.5, -1.5], [1.0, -4.0, 2.0]])
POS = np.array([[0.25, 1.0, 2.5], [4.0, 9.0, 0.5]])
I = np.array([[7, -3, 4], [0, 9, -8]])
J = np.array([[2, 5, -3], [1, -4, 3]])
JPOS = np.array([[2, 1, 3], [1, 2, 0]])
B = np.array([[True, False, True], [False, False, True]])
C = np.array([[True, True, False], [False, True, False]])

BINARY_NP = {
    "add": np.add, "sub": np.subtract, "mul": np.multiply,
    "maximum": np.maximum, "minimum": np.minimum,
}


def int_div(a, b):
    q = np.abs(a) // np.abs(b)
    return (q * np.sign(a) * np.sign(b)).astype(a.dtype)


def ops_cases():
    cases = []
    for dt in ("f32", "f64"):
        a, b = F.astype(NP[dt]), G.astype(NP[dt])
        for op, fn in list(BINARY_NP.items()) + [("div", np.divide)]:
            cases.append(case(f"binary {op} {dt}", open_gate(), make("a", a), make("b", b),
                              {"call": "Tensor.binary", "on": "a", "args": {"op": op, "other": {"$ref": "b"}},
                               "as": {"y": "result"}}, read("y", fn(a, b))))
        p = POS.astype(NP[dt])
        cases.append(case(f"binary pow {dt}", open_gate(), make("a", p), make("b", b),
                          {"call": "Tensor.binary", "on": "a", "args": {"op": "pow", "other": {"$ref": "b"}},
                           "as": {"y": "result"}}, read("y", np.power(p, b))))
        unary = {"neg": np.negative, "abs": np.abs, "relu": lambda x: np.maximum(x, 0),
                 "exp": np.exp, "tanh": np.tanh, "sigmoid": lambda x: 1 / (1 + np.exp(-x))}
        for op, fn in unary.items():
            cases.append(case(f"unary {op} {dt}", open_gate(), make("a", a),
                              {"call": "Tensor.unary", "on": "a", "args": {"op": op}, "as": {"y": "result"}},
                              read("y", fn(a).astype(NP[dt]))))
        for op, fn in {"log": np.log, "sqrt": np.sqrt}.items():
            cases.append(case(f"unary {op} {dt}", open_gate(), make("a", p),
                              {"call": "Tensor.unary", "on": "a", "args": {"op": op}, "as": {"y": "result"}},
                              read("y", fn(p).astype(NP[dt]))))
    for dt in ("i32", "i64"):
        a, b = I.astype(NP[dt]), J.astype(NP[dt])
        for op, fn in list(BINARY_NP.items()) + [("div", int_div)]:
            cases.append(case(f"binary {op} {dt}", open_gate(), make("a", a), make("b", b),
                              {"call": "Tensor.binary", "on": "a", "args": {"op": op, "other": {"$ref": "b"}},
                               "as": {"y": "result"}}, read("y", fn(a, b))))
        e = JPOS.astype(NP[dt])
        cases.append(case(f"binary pow {dt}", open_gate(), make("a", a), make("b", e),
                          {"call": "Tensor.binary", "on": "a", "args": {"op": "pow", "other": {"$ref": "b"}},
                           "as": {"y": "result"}}, read("y", np.power(a, e))))
        for op, fn in {"neg": np.negative, "abs": np.abs, "relu": lambda x: np.maximum(x, 0)}.items():
            cases.append(case(f"unary {op} {dt}", open_gate(), make("a", a),
                              {"call": "Tensor.unary", "on": "a", "args": {"op": op}, "as": {"y": "result"}},
                              read("y", fn(a))))
    for op, fn in {"add": np.logical_or, "maximum": np.logical_or,
                   "mul": np.logical_and, "minimum": np.logical_and}.items():
        cases.append(case(f"binary {op} bool", open_gate(), make("a", B), make("b", C),
                          {"call": "Tensor.binary", "on": "a", "args": {"op": op, "other": {"$ref": "b"}},
                           "as": {"y": "result"}}, read("y", fn(B, C))))
    # compare, every op and dtype
    cmp = {"eq": np.equal, "ne": np.not_equal, "lt": np.less, "le": np.less_equal,
           "gt": np.greater, "ge": np.greater_equal}
    for dt, (a, b) in {"f32": (F, G), "f64": (F, G), "i32": (I, J), "i64": (I, J), "bool": (B, C)}.items():
        a, b = a.astype(NP[dt]), b.astype(NP[dt])
        ops = cmp if dt != "bool" else {"eq": np.equal, "ne": np.not_equal}
        for op, fn in ops.items():
            cases.append(case(f"compare {op} {dt}", open_gate(), make("a", a), make("b", b),
                              {"call": "Tensor.compare", "on": "a", "args": {"op": op, "other": {"$ref": "b"}},
                               "as": {"y": "result"}}, read("y", fn(a, b))))
    # scalars
    a = F.astype(np.float32)
    cases.append(case("binaryScalar mul f32 by an int scalar", open_gate(), make("a", a),
                      {"call": "Tensor.binaryScalar", "on": "a",
                       "args": {"op": "mul", "scalar": {"int": 3}, "scalarOnLeft": False}, "as": {"y": "result"}},
                      read("y", a * np.float32(3))))
    cases.append(case("binaryScalar sub with the scalar on the left", open_gate(), make("a", a),
                      {"call": "Tensor.binaryScalar", "on": "a",
                       "args": {"op": "sub", "scalar": {"float": 10.0}, "scalarOnLeft": True}, "as": {"y": "result"}},
                      read("y", np.float32(10) - a)))
    ai = I.astype(np.int64)
    cases.append(case("compareScalar gt i64", open_gate(), make("a", ai),
                      {"call": "Tensor.compareScalar", "on": "a", "args": {"op": "gt", "scalar": {"int": 0}},
                       "as": {"y": "result"}}, read("y", ai > 0)))
    # reduce
    for dt, a in {"f32": F, "f64": F, "i32": I, "i64": I}.items():
        a = a.astype(NP[dt])
        mean_dt = NP[dt] if dt in ("f32", "f64") else np.float64
        red = {"sum": lambda x, ax: np.sum(x, axis=ax, dtype=x.dtype),
               "mean": lambda x, ax: np.mean(x.astype(mean_dt), axis=ax).astype(mean_dt),
               "max": lambda x, ax: np.max(x, axis=ax), "min": lambda x, ax: np.min(x, axis=ax),
               "argmax": lambda x, ax: np.argmax(x, axis=ax).astype(np.int64),
               "argmin": lambda x, ax: np.argmin(x, axis=ax).astype(np.int64)}
        for op, fn in red.items():
            cases.append(case(f"reduce {op} over axis -1 {dt}", open_gate(), make("a", a),
                              {"call": "Tensor.reduce", "on": "a",
                               "args": {"op": op, "axis": -1, "allAxes": False, "keepDims": False},
                               "as": {"y": "result"}}, read("y", np.asarray(fn(a, -1)))))
        cases.append(case(f"reduce sum over all axes keeping dims {dt}", open_gate(), make("a", a),
                          {"call": "Tensor.reduce", "on": "a",
                           "args": {"op": "sum", "axis": 0, "allAxes": True, "keepDims": True},
                           "as": {"y": "result"}}, read("y", np.sum(a, keepdims=True, dtype=a.dtype))))
    cases.append(case("reduce sum of bool counts as i64", open_gate(), make("a", B),
                      {"call": "Tensor.reduce", "on": "a",
                       "args": {"op": "sum", "axis": 0, "allAxes": True, "keepDims": False},
                       "as": {"y": "result"}}, read("y", np.asarray(np.sum(B), dtype=np.int64))))
    # matmul: 2-D, 1-D, batched with broadcasting
    for dt in ("f32", "f64", "i32", "i64"):
        x = F.astype(NP[dt]) if dt[0] == "f" else I.astype(NP[dt])
        w = G.T.astype(NP[dt]) if dt[0] == "f" else J.T.astype(NP[dt])
        cases.append(case(f"matmul 2-D {dt}", open_gate(), make("x", x), make("w", w),
                          {"call": "Tensor.matmul", "on": "x", "args": {"other": {"$ref": "w"}}, "as": {"y": "result"}},
                          read("y", x @ w)))
    v = np.array([1.0, -1.0, 2.0], dtype=np.float32)
    x = F.astype(np.float32)
    cases.append(case("matmul matrix by vector", open_gate(), make("x", x), make("v", v),
                      {"call": "Tensor.matmul", "on": "x", "args": {"other": {"$ref": "v"}}, "as": {"y": "result"}},
                      read("y", x @ v)))
    bx = np.arange(12, dtype=np.float64).reshape(2, 2, 3)
    bw = np.arange(6, dtype=np.float64).reshape(3, 2) - 2
    cases.append(case("matmul batched with a broadcast batch dimension", open_gate(), make("x", bx), make("w", bw),
                      {"call": "Tensor.matmul", "on": "x", "args": {"other": {"$ref": "w"}}, "as": {"y": "result"}},
                      read("y", bx @ bw)))
    # shape ops
    a = np.arange(24, dtype=np.int32).reshape(2, 3, 4)
    cases.append(case("reshape with -1", open_gate(), make("a", a),
                      {"call": "Tensor.reshape", "on": "a", "args": {"shape": [4, -1]}, "as": {"y": "result"}},
                      read("y", a.reshape(4, -1))))
    cases.append(case("transpose with a permutation", open_gate(), make("a", a),
                      {"call": "Tensor.transpose", "on": "a", "args": {"perm": [2, 0, 1]}, "as": {"y": "result"}},
                      read("y", np.transpose(a, (2, 0, 1)))))
    cases.append(case("transpose with an empty perm reverses the axes", open_gate(), make("a", a),
                      {"call": "Tensor.transpose", "on": "a", "args": {"perm": []}, "as": {"y": "result"}},
                      read("y", np.transpose(a))))
    specs = [{"start": 1, "hasStart": True, "hasStop": False, "step": 1},
             {"start": 0, "hasStart": False, "stop": -1, "hasStop": True, "step": 1},
             {"hasStart": False, "hasStop": False, "step": -2}]
    cases.append(case("slice with negative bounds and steps", open_gate(), make("a", a),
                      {"call": "Tensor.slice", "on": "a", "args": {"specs": specs}, "as": {"y": "result"}},
                      read("y", a[1:, :-1, ::-2])))
    cases.append(case("slice bounds clamp", open_gate(), make("a", a),
                      {"call": "Tensor.slice", "on": "a",
                       "args": {"specs": [{"start": -10, "hasStart": True, "stop": 10, "hasStop": True, "step": 1}]},
                       "as": {"y": "result"}}, read("y", a[-10:10])))
    # cast between every pair of dtypes
    src = {"f32": np.array([1.75, -2.5, 0.0], np.float32), "f64": np.array([1.75, -2.5, 0.0]),
           "i32": np.array([3, -2, 0], np.int32), "i64": np.array([3, -2, 0], np.int64),
           "bool": np.array([True, False, True])}
    for s, sv in src.items():
        for d in src:  # the new dtypes' casts are in dtypes.json
            if s == d:
                continue
            cases.append(case(f"cast {s} to {d}", open_gate(), make("a", sv),
                              {"call": "Tensor.cast", "on": "a", "args": {"dtype": d}, "as": {"y": "result"}},
                              read("y", sv.astype(NP[d]))))
    # select, concat, full, arange, meta, take
    t, f = F.astype(np.float32), G.astype(np.float32)
    cases.append(case("select picks elementwise", open_gate(), make("c", B), make("t", t), make("f", f),
                      {"call": "Tensor.select", "on": "c", "args": {"ifTrue": {"$ref": "t"}, "ifFalse": {"$ref": "f"}},
                       "as": {"y": "result"}}, read("y", np.where(B, t, f))))
    cases.append(case("concat along axis 1", open_gate(), make("a", t), make("b", f),
                      {"call": "TensorWorker.concat", "on": "worker",
                       "args": {"tensors": [{"$ref": "a"}, {"$ref": "b"}], "axis": 1}, "as": {"y": "tensor"}},
                      read("y", np.concatenate([t, f], axis=1))))
    for dt, s in {"f32": {"float": 2.5}, "i64": {"int": -7}, "bool": {"bool": True}}.items():
        val = list(s.values())[0]
        cases.append(case(f"full {dt}", open_gate(),
                          {"call": "TensorWorker.full", "on": "worker", "args": {"dtype": dt, "shape": [2, 2], "value": s},
                           "as": {"y": "tensor"}}, read("y", np.full((2, 2), val, dtype=NP[dt]))))
    cases.append(case("arange i32 with a step", open_gate(),
                      {"call": "TensorWorker.arange", "on": "worker", "args": {"dtype": "i32", "start": 1, "stop": 10, "step": 3},
                       "as": {"y": "tensor"}}, read("y", np.arange(1, 10, 3, dtype=np.int32))))
    cases.append(case("arange f64 with the default step", open_gate(),
                      {"call": "TensorWorker.arange", "on": "worker", "args": {"dtype": "f64", "start": -1.5, "stop": 2.0},
                       "as": {"y": "tensor"}}, read("y", np.arange(-1.5, 2.0, 1.0))))
    cases.append(case("random has the asked dtype and shape", open_gate(),
                      {"call": "TensorWorker.random", "on": "worker",
                       "args": {"dtype": "f32", "shape": [3, 4], "distribution": {"normal": {"mean": 0, "std": 1}},
                                "seed": 42}, "as": {"y": "tensor"}},
                      {"call": "Tensor.meta", "on": "y", "expect": {"results": {"dtype": "f32", "shape": [3, 4]}}}))
    cases.append(case("meta gives dtype and shape", open_gate(), make("a", a),
                      {"call": "Tensor.meta", "on": "a", "expect": {"results": {"dtype": "i32", "shape": [2, 3, 4]}}}))
    cases.append(case("a scalar has the empty shape", open_gate(), make("a", np.array(3.5)),
                      read("a", np.array(3.5))))
    cases.append(case("take reads a tensor and frees it", open_gate(), make("a", t),
                      {"call": "Tensor.take", "on": "a", "expect": expect_tensor(t)},
                      {"call": "Tensor.read", "on": "a", "expect": error("failed", "tensor has been moved")}))
    cases += v4_ops_cases()
    cases += index_ops_cases()
    cases += v4_shape_cases()
    return cases


def v4_ops_cases():
    """The ops schema version 4 added, each against NumPy."""
    cases = []

    def call(method, args, a, want, dt_name):
        return case(f"{method} {dt_name}", open_gate(), make("a", a),
                    {"call": method.split(" ")[0], "on": "a", "args": args, "as": {"y": "result"}},
                    read("y", want))

    f, g = F.astype(np.float64), G.astype(np.float64)
    i, j = I.astype(np.int64), J.astype(np.int64)
    for op, fn in {"mod": np.mod, "floorDivide": np.floor_divide}.items():
        for dt, (a, b) in {"f64": (f, g), "i64": (i, j)}.items():
            cases.append(case(f"binary {op} {dt}", open_gate(), make("a", a), make("b", b),
                              {"call": "Tensor.binary", "on": "a", "args": {"op": op, "other": {"$ref": "b"}},
                               "as": {"y": "result"}}, read("y", fn(a, b))))
    for op, fn in {"logicalAnd": np.logical_and, "logicalOr": np.logical_or,
                   "logicalXor": np.logical_xor}.items():
        cases.append(case(f"binary {op} i64", open_gate(), make("a", i), make("b", j - 1),
                          {"call": "Tensor.binary", "on": "a", "args": {"op": op, "other": {"$ref": "b"}},
                           "as": {"y": "result"}}, read("y", fn(i, j - 1))))
    p = POS.astype(np.float64)
    for op, fn in {"floor": np.floor, "ceil": np.ceil, "round": np.round, "sin": np.sin,
                   "cos": np.cos, "tan": np.tan, "log1p": np.log1p, "expm1": np.expm1,
                   "logicalNot": np.logical_not, "isnan": np.isnan, "isfinite": np.isfinite}.items():
        a = p if op == "log1p" else f * 1.5
        cases.append(call(f"Tensor.unary {op}", {"op": op}, a, fn(a), "f64"))
    red = {"prod": lambda x: np.prod(x, axis=-1), "var": lambda x: np.var(x, axis=-1, ddof=1),
           "std": lambda x: np.std(x, axis=-1, ddof=1), "any": lambda x: np.any(x, axis=-1),
           "all": lambda x: np.all(x, axis=-1), "normL1": lambda x: np.linalg.norm(x, 1, axis=-1),
           "normL2": lambda x: np.linalg.norm(x, 2, axis=-1),
           "normInf": lambda x: np.linalg.norm(x, np.inf, axis=-1)}
    for op, fn in red.items():
        cases.append(call(f"Tensor.reduce {op}", {"op": op, "axis": -1, "allAxes": False,
                                                  "keepDims": False, "ddof": 1}, f, fn(f), "f64"))
    x = F.astype(np.float32)
    e = np.exp(x - x.max(axis=1, keepdims=True))
    cases.append(call("Tensor.softmax", {"axis": 1, "log": False}, x,
                      (e / e.sum(axis=1, keepdims=True)).astype(np.float32), "f32"))
    cases.append(call("Tensor.softmax log", {"axis": 1, "log": True}, x,
                      (x - x.max(axis=1, keepdims=True) - np.log(e.sum(axis=1, keepdims=True))).astype(np.float32), "f32"))
    cases.append(call("Tensor.cumulative cumsum", {"op": "cumsum", "axis": -1}, i, np.cumsum(i, -1), "i64"))
    cases.append(call("Tensor.cumulative cumprod", {"op": "cumprod", "axis": 0}, f, np.cumprod(f, 0), "f64"))
    cases.append(call("Tensor.clip", {"min": {"float": -1.0}, "hasMin": True, "max": {"float": 2.0},
                                      "hasMax": True}, f, np.clip(f, -1.0, 2.0), "f64"))
    return cases


def index_ops_cases():
    """Indexing with tensors and assignment (schema version 4), against NumPy."""
    f, i = F.astype(np.float64), I.astype(np.int64)
    ref = lambda n: {"$ref": n}
    along = np.array([[2, -3], [0, 0]], np.int64)
    rows = np.array([1, -2, 1], np.int32)
    at = np.array([[0, 0, 2], [1, -1, 1]], np.int64)
    vals = np.array([[1, 2, 3], [4, 5, 6]], np.int64)
    scattered, added = i.copy(), i.copy()
    np.put_along_axis(scattered, at, vals, axis=1)
    np.add.at(added, (np.arange(2)[:, None], at), vals)
    assigned = f.copy()
    assigned[:, ::2] = np.array([[-1.0], [-2.0]])
    masked = assigned.copy()
    masked[B] = 9.0
    every = {"hasStart": False, "hasStop": False, "step": 1}
    evens = {"hasStart": False, "hasStop": False, "step": 2}
    return [
        case("Tensor.takeAlongAxis f64", open_gate(), make("a", f), make("i", along),
             {"call": "Tensor.takeAlongAxis", "on": "a", "args": {"indices": ref("i"), "axis": -1},
              "as": {"y": "result"}}, read("y", np.take_along_axis(f, along, -1))),
        case("Tensor.indexSelect i64 with i32 indices", open_gate(), make("a", i), make("i", rows),
             {"call": "Tensor.indexSelect", "on": "a", "args": {"indices": ref("i"), "axis": 0},
              "as": {"y": "result"}}, read("y", np.take(i, rows, axis=0))),
        case("Tensor.maskSelect f64", open_gate(), make("a", f), make("m", B),
             {"call": "Tensor.maskSelect", "on": "a", "args": {"mask": ref("m")},
              "as": {"y": "result"}}, read("y", f[B])),
        case("Tensor.scatter i64, the last repeated index wins", open_gate(), make("a", i),
             make("i", at), make("v", vals),
             {"call": "Tensor.scatter", "on": "a",
              "args": {"indices": ref("i"), "values": ref("v"), "axis": 1, "accumulate": False},
              "as": {"y": "result"}}, read("y", scattered)),
        case("Tensor.scatter accumulate i64 adds repeated indices", open_gate(), make("a", i),
             make("i", at), make("v", vals),
             {"call": "Tensor.scatter", "on": "a",
              "args": {"indices": ref("i"), "values": ref("v"), "axis": 1, "accumulate": True},
              "as": {"y": "result"}}, read("y", added)),
        case("Tensor.assign then assignMask, read pipelined on the same tensor", open_gate(),
             make("a", f), make("v", np.array([[-1.0], [-2.0]])), make("m", B),
             make("nine", np.array(9.0)),
             {"call": "Tensor.assign", "on": "a", "args": {"specs": [every, evens], "value": ref("v")},
              "as": {"done": "result"}},
             read("a", assigned),
             {"call": "Tensor.assignMask", "on": "a", "args": {"mask": ref("m"), "value": ref("nine")},
              "as": {"done2": "result"}},
             read("done2", masked), read("a", masked)),
    ]


def v4_shape_cases():
    """The shape ops of schema version 4 (contractions, layout, order, erf,
    makers), each against NumPy."""
    cases = []
    f = F.astype(np.float64)
    sq = np.array([[1.0, 2.0, 0.5], [-1.0, 3.0, 2.0], [4.0, 0.0, -2.0]])
    bx = np.arange(12, dtype=np.float32).reshape(2, 2, 3) - 4
    by = np.arange(12, dtype=np.float32).reshape(2, 3, 2) / 4

    def worker_call(name, method, args, want, *made):
        steps = [open_gate()] + [make(n, a) for n, a in made]
        return case(name, *steps, {"call": method, "on": "worker", "args": args, "as": {"y": "tensor"}},
                    read("y", want))

    def tensor_call(name, method, args, a, want):
        return case(name, open_gate(), make("a", a),
                    {"call": method, "on": "a", "args": args, "as": {"y": "result"}}, read("y", want))

    refs = lambda *names: [{"$ref": n} for n in names]
    for name, subs, ops in [
        ("matmul", "ij,kj->ik", [f, f]),
        ("trace", "ii->", [sq]),
        ("transpose", "ij->ji", [f]),
        ("implicit outer", "i,j", [f[0], f[1]]),
        ("batched", "bij,bjk->bik", [bx, by]),
    ]:
        names = [f"x{k}" for k in range(len(ops))]
        cases.append(worker_call(f"einsum {name}", "TensorWorker.einsum",
                                 {"subscripts": subs, "operands": refs(*names)},
                                 np.einsum(subs, *ops), *zip(names, ops)))
    t3 = np.arange(24, dtype=np.float64).reshape(2, 3, 4) / 3
    t3b = np.arange(24, dtype=np.float64).reshape(4, 3, 2) - 7
    cases.append(case("tensordot over one axis", open_gate(), make("a", t3), make("b", t3b),
                      {"call": "Tensor.tensordot", "on": "a", "args": {"other": {"$ref": "b"}, "axes": 1},
                       "as": {"y": "result"}}, read("y", np.tensordot(t3, t3b, 1))))
    cases.append(case("tensordot over axis lists", open_gate(), make("a", t3), make("b", t3b),
                      {"call": "Tensor.tensordot", "on": "a",
                       "args": {"other": {"$ref": "b"}, "axesSelf": [1, -1], "axesOther": [1, 0]},
                       "as": {"y": "result"}}, read("y", np.tensordot(t3, t3b, ([1, -1], [1, 0])))))
    i = I.astype(np.int64)
    cases.append(worker_call("stack along a new last axis", "TensorWorker.stack",
                             {"tensors": refs("p", "q"), "axis": -1}, np.stack([i, i * 2], -1),
                             ("p", i), ("q", i * 2)))
    # A list of capabilities cannot be pipelined on (nor read by every
    # runner): the split itself is checked to succeed.
    cases.append(case("split into equal sections succeeds", open_gate(), make("a", i),
                      {"call": "Tensor.split", "on": "a", "args": {"axis": 1, "sections": 3, "indices": []},
                       "expect": {"ok": True}}))
    a3 = np.arange(6, dtype=np.int32).reshape(1, 2, 1, 3)
    cases.append(tensor_call("squeeze every length-1 axis", "Tensor.squeeze", {"axes": []}, a3, a3.squeeze()))
    cases.append(tensor_call("squeeze one axis", "Tensor.squeeze", {"axes": [-2]}, a3, a3.squeeze(-2)))
    cases.append(tensor_call("expandDims", "Tensor.expandDims", {"axes": [0, -1]}, i, np.expand_dims(i, (0, -1))))
    v = np.array([1.5, -2.0, 3.0], np.float32)
    cases.append(tensor_call("broadcastTo", "Tensor.broadcastTo", {"shape": [2, 3]}, v, np.broadcast_to(v, (2, 3))))
    cases.append(tensor_call("tile", "Tensor.tile", {"reps": [2, 1, 2]}, i, np.tile(i, (2, 1, 2))))
    cases.append(tensor_call("flip every axis", "Tensor.flip", {"axes": []}, i, np.flip(i)))
    cases.append(tensor_call("flip one axis", "Tensor.flip", {"axes": [1]}, i, np.flip(i, 1)))
    s = np.array([[3.0, np.nan, 1.0, 3.0], [2.0, -1.0, np.nan, 2.0]])
    cases.append(tensor_call("sort puts NaN last", "Tensor.sort", {"axis": -1}, s, np.sort(s, -1)))
    cases.append(tensor_call("argsort is stable", "Tensor.argsort", {"axis": 1}, s,
                             np.argsort(s, 1, kind="stable")))
    order = np.argsort(-i, 1, kind="stable")[:, :2]
    cases.append(case("topk gives values and indices", open_gate(), make("a", i),
                      {"call": "Tensor.topk", "on": "a", "args": {"k": 2, "axis": 1, "largest": True},
                       "as": {"v": "values", "ix": "indices"}},
                      read("v", np.take_along_axis(i, order, 1)), read("ix", order)))
    erf = np.vectorize(__import__("math").erf)
    cases.append(tensor_call("unary erf f64", "Tensor.unary", {"op": "erf"}, f, erf(f)))
    cases.append(worker_call("eye with an offset diagonal", "TensorWorker.eye",
                             {"dtype": "f32", "n": 3, "m": 4, "hasM": True, "k": -1},
                             np.eye(3, 4, -1, dtype=np.float32)))
    cases.append(worker_call("linspace with the endpoint", "TensorWorker.linspace",
                             {"dtype": "f64", "start": -1, "stop": 2, "num": 7}, np.linspace(-1, 2, 7)))
    cases.append(worker_call("linspace i64 rounds down", "TensorWorker.linspace",
                             {"dtype": "i64", "start": -1, "stop": 10, "num": 4, "endpoint": True},
                             np.linspace(-1, 10, 4, dtype=np.int64)))
    cases.append(case("randint has the asked dtype and shape", open_gate(),
                      {"call": "TensorWorker.randint", "on": "worker",
                       "args": {"dtype": "i32", "low": -3, "high": 3, "shape": [4, 5], "seed": 7},
                       "as": {"y": "tensor"}},
                      {"call": "Tensor.meta", "on": "y", "expect": {"results": {"dtype": "i32", "shape": [4, 5]}}}))
    cases.append(case("permutation sorted is a range", open_gate(),
                      {"call": "TensorWorker.permutation", "on": "worker", "args": {"n": 6, "seed": 3},
                       "as": {"p": "tensor"}},
                      {"call": "Tensor.sort", "on": "p", "args": {"axis": 0}, "as": {"y": "result"}},
                      read("y", np.arange(6, dtype=np.int64))))
    return cases


def bf16(values, shape):
    """A bf16 TensorData (NumPy has no bf16): values exact in bf16."""
    return {"dtype": "bf16", "shape": list(shape), "values": list(values)}


def dtypes_cases():
    """The dtypes schema version 4 added, NumPy's promotion and casts."""
    cases = []
    edge = {
        "f16": np.array([[0.5, -2.0, 65504.0], [-65504.0, -0.0, 1 / 3]], np.float16),
        "u8": np.array([0, 1, 255], np.uint8), "i8": np.array([-128, 0, 127], np.int8),
        "i16": np.array([-32768, 7, 32767], np.int16), "u16": np.array([0, 65535], np.uint16),
        "u32": np.array([4294967295, 3], np.uint32),
        "u64": np.array([18446744073709551615, 0], np.uint64),
    }
    for dt, a in edge.items():
        cases.append(case(f"{dt} round-trips with its edge values", open_gate(), make("a", a),
                          read("a", a)))
    b = bf16([1.0, -0.5, 2.0 ** 127, 256.0], [2, 2])
    cases.append(case("bf16 round-trips", open_gate(),
                      {"call": "TensorWorker.fromData", "on": "worker", "args": {"data": b},
                       "as": {"a": "tensor"}},
                      {"call": "Tensor.read", "on": "a", "expect": {"results": {"data": b}}}))

    def binary(name, op, x, y, fn=None):
        want = (fn or {"add": np.add, "mul": np.multiply, "sub": np.subtract}[op])(x, y)
        return case(name, open_gate(), make("a", x), make("b", y),
                    {"call": "Tensor.binary", "on": "a", "args": {"op": op, "other": {"$ref": "b"}},
                     "as": {"y": "result"}}, read("y", want))

    u8, i8 = np.array([200, 100], np.uint8), np.array([-1, 100], np.int8)
    cases.append(binary("u8 + i8 promotes to i16 as np.result_type", "add", u8, i8))
    cases.append(binary("f16 * i16 promotes to f32", "mul", np.array([0.5, 1.5], np.float16),
                        np.array([3, -2], np.int16)))
    cases.append(binary("i64 - u64 promotes to f64", "sub", np.array([-5, 2], np.int64),
                        np.array([1, 18446744073709551615], np.uint64)))
    cases.append(binary("f16 arithmetic rounds to f16 as NumPy", "add",
                        np.array([2048, 0.1, 1], np.float16), np.array([1, 0.2, 1 / 3], np.float16)))
    cases.append(case("compare u8 with i8 in their promoted dtype", open_gate(), make("a", u8), make("b", i8),
                      {"call": "Tensor.compare", "on": "a", "args": {"op": "lt", "other": {"$ref": "b"}},
                       "as": {"y": "result"}}, read("y", u8 < i8)))
    ints = np.array([300, -1, 2049], np.int64)  # 2049 rounds to 2048 in f16
    for dt in ["u8", "i8", "u16", "f16"]:
        cases.append(case(f"cast i64 to {dt} as astype", open_gate(), make("a", ints),
                          {"call": "Tensor.cast", "on": "a", "args": {"dtype": dt}, "as": {"y": "result"}},
                          read("y", ints.astype(NP[dt]))))
    cases.append(case("a scalar that does not fit u8 is refused naming it", open_gate(), make("a", u8),
                      {"call": "Tensor.binaryScalar", "on": "a",
                       "args": {"op": "add", "scalar": {"int": 256}, "scalarOnLeft": False},
                       "as": {"y": "result"}},
                      {"call": "Tensor.meta", "on": "y", "expect": error("failed", "add: scalar 256 does not fit in u8")}))
    cases.append(case("sum of u16 keeps u16 and wraps", open_gate(), make("a", np.array([65535, 2], np.uint16)),
                      {"call": "Tensor.reduce", "on": "a", "args": {"op": "sum", "axis": 0, "allAxes": True,
                                                                   "keepDims": False},
                       "as": {"y": "result"}}, read("y", np.array(1, np.uint16))))
    return cases


def gate_cases():
    return [
        case("open with the good token gives an actor that answers ping", open_gate("a"),
             {"call": "Actor.ping", "on": "a", "expect": {"ok": True}}),
        case("open with a bad token is refused", {"call": "Gate.open", "on": "gate",
             "args": {"token": {"$token": "bad"}}, "expect": error("failed", "credential rejected")}),
        case("calls pipelined on a rejected gate fail with its error",
             {"call": "Gate.open", "on": "gate", "args": {"token": {"$token": "bad"}}, "as": {"a": "actor"}},
             {"call": "Actor.ping", "on": "a", "expect": error("failed", "credential rejected")}),
        case("a connection may retry open after a rejection",
             {"call": "Gate.open", "on": "gate", "args": {"token": {"$token": "bad"}},
              "expect": error("failed", "credential rejected")},
             open_gate("a"), {"call": "Actor.ping", "on": "a", "expect": {"ok": True}}),
        case("a chain pipelined on open costs no wait for the gate", open_gate(),
             make("x", np.array([1.0, 2.0], np.float32)),
             {"call": "Tensor.unary", "on": "x", "args": {"op": "neg"}, "as": {"y": "result"}},
             read("y", np.array([-1.0, -2.0], np.float32))),
    ]


def actor_cases():
    return [
        case("ping answers", open_gate("a"), {"call": "Actor.ping", "on": "a", "expect": {"ok": True}}),
        case("info describes a tensor worker", open_gate("a"),
             {"call": "Actor.info", "on": "a", "expect": {"results": {"info": {
                 "kind": "tensor-worker",
                 "schemaVersion": {"$schemaVersion": True},
                 "interfaces": [{"id": {"$typeId": "TensorWorker"}, "name": "TensorWorker"},
                                {"id": {"$typeId": "Actor"}, "name": "Actor"}],
                 "runtime": {"$nonEmpty": True},
                 "callsInFlight": {"$atLeast": 1}}}}}),
        case("TensorWorker calls Actor methods directly", open_gate(),
             {"call": "Actor.ping", "on": "worker", "expect": {"ok": True}}),
        case("memory reports a limit and the use", open_gate(),
             {"call": "TensorWorker.memory", "on": "worker", "expect": {"results": {"limit": {"$atLeast": 1}}}}),
    ]


def schema_cases():
    return [
        case("info reports the schema version of schema/actor.capnp", open_gate("a"),
             {"call": "Actor.info", "on": "a",
              "expect": {"results": {"info": {"schemaVersion": {"$schemaVersion": True}}}}}),
        case("an interface the actor does not implement answers unimplemented", open_gate("a"),
             {"call": "TensorWorker.fromData", "on": "gate", "args": {"data": tensor(np.array([1.0]))},
              "expect": error("unimplemented")}),
        case("an unknown enum value fails with unknown tag", open_gate(),
             make("a", F.astype(np.float32)),
             {"call": "Tensor.unary", "on": "a", "args": {"op": 77}, "expect": error("failed", "unknown")}),
    ]


def pipelining_cases():
    x = F.astype(np.float32)
    w = G.T.astype(np.float32)
    b = np.array([0.5, -1.0], np.float32)
    y = np.maximum(x @ w + b, 0).sum()
    chain = [open_gate(), make("x", x), make("w", w), make("b", b),
             {"call": "Tensor.matmul", "on": "x", "args": {"other": {"$ref": "w"}}, "as": {"m": "result"}},
             {"call": "Tensor.binary", "on": "m", "args": {"op": "add", "other": {"$ref": "b"}}, "as": {"s": "result"}},
             {"call": "Tensor.unary", "on": "s", "args": {"op": "relu"}, "as": {"r": "result"}},
             {"call": "Tensor.reduce", "on": "r", "args": {"op": "sum", "axis": 0, "allAxes": True, "keepDims": False},
              "as": {"t": "result"}}]
    cases = [case("a chain read only at its end", *chain,
                  {"call": "Tensor.read", "on": "t", "expect": expect_tensor(np.asarray(y, np.float32))})]
    cases.append(case("a failure in the middle of a chain reaches its end",
                      open_gate(), make("x", x),
                      {"call": "Tensor.matmul", "on": "x", "args": {"other": {"$ref": "x"}}, "as": {"m": "result"}},
                      {"call": "Tensor.unary", "on": "m", "args": {"op": "relu"}, "as": {"r": "result"}},
                      {"call": "Tensor.read", "on": "r", "expect": error("failed", "matmul: inner dimensions")},
                      {"call": "Tensor.read", "on": "x", "expect": expect_tensor(x)}))
    cases.append(case("a failed argument fails the call that uses it with its error",
                      open_gate(), make("x", x),
                      {"call": "Tensor.reshape", "on": "x", "args": {"shape": [7]}, "as": {"bad": "result"}},
                      {"call": "Tensor.binary", "on": "x", "args": {"op": "add", "other": {"$ref": "bad"}},
                       "as": {"y": "result"}},
                      {"call": "Tensor.read", "on": "y", "expect": error("failed", "reshape:")}))
    # Promise arguments in every order a client may send them: the
    # argument made before the call, after it, or still unresolved when
    # the call that uses it is sent, on a worker still being opened.
    mm = {"call": "Tensor.matmul", "on": "x", "args": {"other": {"$ref": "w"}}, "as": {"m": "result"}}
    orders = {
        "argument made before the call": [open_gate(), make("x", x), make("w", w), mm],
        "argument made after the call": [open_gate(), make("x", x), {"bind": "w", "later": True}, mm, make("w", w)],
        "both operands made after the call": [open_gate(), {"bind": "x", "later": True},
                                              {"bind": "w", "later": True}, mm, make("w", w), make("x", x)],
        "gate awaited first": [{"call": "Gate.open", "on": "gate", "args": {"token": {"$token": "good"}},
                                "as": {"worker": "actor"}, "expect": {"ok": True}}, make("x", x), make("w", w), mm],
    }
    for name, steps in orders.items():
        c = case(f"promise arguments: {name}", *steps,
                 {"call": "Tensor.read", "on": "m", "expect": expect_tensor(x @ w)})
        if any("bind" in s for s in steps):
            c["requires"] = ["promise-capabilities"]
        cases.append(c)
    return cases


def errors_cases():
    f32, f64 = F.astype(np.float32), F.astype(np.float64)
    return [
        case("matmul of mismatched shapes fails naming the op", open_gate(), make("a", f32),
             {"call": "Tensor.matmul", "on": "a", "args": {"other": {"$ref": "a"}}, "as": {"y": "result"}},
             {"call": "Tensor.meta", "on": "y", "expect": error("failed", "matmul: inner dimensions of shapes [2, 3] and [2, 3] differ")}),
        case("shapes that do not broadcast", open_gate(), make("a", f32), make("b", np.ones((3, 2), np.float32)),
             {"call": "Tensor.binary", "on": "a", "args": {"op": "add", "other": {"$ref": "b"}}, "as": {"y": "result"}},
             {"call": "Tensor.meta", "on": "y", "expect": error("failed", "add: cannot broadcast shapes [2, 3] and [3, 2]")}),
        # Since schema version 4 mixed dtypes promote (dtypes.json); bool
        # arithmetic other than or/and is refused, as NumPy's.
        case("bool subtraction is refused naming the op and dtype", open_gate(),
             make("a", np.array([True, False])), make("b", np.array([False, False])),
             {"call": "Tensor.binary", "on": "a", "args": {"op": "sub", "other": {"$ref": "b"}}, "as": {"y": "result"}},
             {"call": "Tensor.meta", "on": "y", "expect": error("failed", "sub: not supported for dtype bool")}),
        case("integer division by zero", open_gate(), make("a", I.astype(np.int32)),
             make("z", np.zeros((2, 3), np.int32)),
             {"call": "Tensor.binary", "on": "a", "args": {"op": "div", "other": {"$ref": "z"}}, "as": {"y": "result"}},
             {"call": "Tensor.meta", "on": "y", "expect": error("failed", "div: integer division by zero")}),
        case("an axis out of range", open_gate(), make("a", f32),
             {"call": "Tensor.reduce", "on": "a", "args": {"op": "sum", "axis": 5, "allAxes": False, "keepDims": False},
              "as": {"y": "result"}},
             {"call": "Tensor.meta", "on": "y", "expect": error("failed", "sum: axis 5 is out of range")}),
        case("a float unary op on integers", open_gate(), make("a", I.astype(np.int64)),
             {"call": "Tensor.unary", "on": "a", "args": {"op": "exp"}, "as": {"y": "result"}},
             {"call": "Tensor.meta", "on": "y", "expect": error("failed", "exp: not supported for dtype i64")}),
        case("a failed call leaves the connection and other tensors working", open_gate(), make("a", f32),
             {"call": "Tensor.reshape", "on": "a", "args": {"shape": [7]}, "expect": error("failed", "reshape:")},
             {"call": "Tensor.read", "on": "a", "expect": expect_tensor(f32)}),
    ]


def bad_input_cases():
    return [
        case("an unknown dtype tag is refused", open_gate(),
             {"call": "TensorWorker.fromData", "on": "worker",
              "args": {"data": {"dtype": 77, "shape": [1], "data": {"$hex": "00000000"}}},
              "expect": error("failed", "unknown dtype tag 77")}),
        case("an unknown op tag is refused", open_gate(), make("a", np.array([1.0], np.float32)),
             {"call": "Tensor.binary", "on": "a", "args": {"op": 99, "other": {"$ref": "a"}},
              "expect": error("failed", "unknown")}),
        case("data of the wrong length is refused", open_gate(),
             {"call": "TensorWorker.fromData", "on": "worker",
              "args": {"data": {"dtype": "f32", "shape": [2, 3], "data": {"$hex": "00" * 20}}},
              "expect": error("failed", "data has 20 bytes but the shape and dtype require 24")}),
        case("bool data other than 0 and 1 is refused", open_gate(),
             {"call": "TensorWorker.fromData", "on": "worker",
              "args": {"data": {"dtype": "bool", "shape": [2], "data": {"$hex": "0102"}}},
              "expect": error("failed", contains="bool data must contain only the bytes 0 and 1")}),
        case("a tensor from another connection is refused", open_gate(), open_gate("worker2", "gate2"),
             make("a", np.array([1.0], np.float32)), make("b", np.array([1.0], np.float32), worker="worker2"),
             {"call": "Tensor.read", "on": "b", "expect": expect_tensor(np.array([1.0], np.float32))},
             {"call": "Tensor.binary", "on": "a", "args": {"op": "add", "other": {"$ref": "b", "settled": True}},
              "as": {"y": "result"}},
             {"call": "Tensor.meta", "on": "y",
              "expect": error("failed", "tensor argument lives on another worker")}),
        case("a bad token is refused and calls pipelined on it fail alike",
             {"call": "Gate.open", "on": "gate", "args": {"token": {"$token": "bad"}}, "as": {"worker": "actor"}},
             {"call": "TensorWorker.fromData", "on": "worker", "args": {"data": tensor(np.array([1.0]))},
              "as": {"x": "tensor"}},
             {"call": "Tensor.read", "on": "x", "expect": error("failed", "credential rejected")}),
        case("a shape too large is refused", open_gate(),
             {"call": "TensorWorker.full", "on": "worker",
              "args": {"dtype": "f64", "shape": [1099511627776, 1099511627776], "value": {"float": 0}},
              "expect": error("failed", "shape [1099511627776, 1099511627776] is too large")}),
        case("an index out of range is refused, naming it and the axis", open_gate(),
             make("a", F), make("i", np.array([0, 3])),
             {"call": "Tensor.indexSelect", "on": "a", "args": {"indices": {"$ref": "i"}, "axis": -1},
              "as": {"y": "result"}},
             {"call": "Tensor.meta", "on": "y",
              "expect": error("failed", "indexSelect: index 3 is out of bounds for axis 1 with size 3")}),
        case("a float index tensor is refused", open_gate(), make("a", F),
             {"call": "Tensor.takeAlongAxis", "on": "a", "args": {"indices": {"$ref": "a"}, "axis": 0},
              "as": {"y": "result"}},
             {"call": "Tensor.meta", "on": "y",
              "expect": error("failed", "takeAlongAxis: indices must have an integer dtype, not f64")}),
        case("a mask of the wrong shape is refused", open_gate(), make("a", F),
             make("m", np.array([True, False, True])),
             {"call": "Tensor.maskSelect", "on": "a", "args": {"mask": {"$ref": "m"}}, "as": {"y": "result"}},
             {"call": "Tensor.meta", "on": "y",
              "expect": error("failed", "maskSelect: mask of shape [3] does not match the array of shape [2, 3]")}),
        case("an assignment that does not broadcast writes nothing", open_gate(), make("a", F),
             make("v", np.array([1.0, 2.0])),
             {"call": "Tensor.assign", "on": "a",
              "args": {"specs": [{"hasStart": False, "hasStop": False, "step": 1}], "value": {"$ref": "v"}},
              "as": {"y": "result"}},
             {"call": "Tensor.meta", "on": "y",
              "expect": error("failed", "assign: could not broadcast a value of shape [2] into the slice of shape [2, 3]")},
             {"call": "Tensor.read", "on": "a", "expect": expect_tensor(F)}),
    ] + shape_bad_input_cases()


def shape_bad_input_cases():
    """Bad input to the shape ops of schema version 4: each fails its own
    call, naming the op and the offending shapes."""
    a = np.arange(6, dtype=np.float64).reshape(2, 3)

    def bad(name, call, prefix, contains=None):
        return case(name, open_gate(), make("a", a), dict(call, expect=error("failed", prefix, contains)))

    def einsum(subs, n):
        return {"call": "TensorWorker.einsum", "on": "worker",
                "args": {"subscripts": subs, "operands": [{"$ref": "a"}] * n}}

    return [
        bad("einsum with a bad character", einsum("ij,j%", 2), "einsum: invalid character '%'"),
        bad("einsum with too few operands", einsum("ij,jk->ik", 1), "einsum:",
            "name 2 operands but 1 were given"),
        bad("einsum with mismatched lengths", einsum("ij,jk->ik", 2), "einsum:",
            "length 3 in operand 0 (shape [2, 3]) but 2 in operand 1"),
        bad("split that does not divide", {"call": "Tensor.split", "on": "a",
                                            "args": {"axis": 1, "sections": 2, "indices": []}},
            "split: 2 sections do not divide axis 1 of length 3 (shape [2, 3])"),
        bad("squeeze of an axis longer than 1", {"call": "Tensor.squeeze", "on": "a", "args": {"axes": [0]}},
            "squeeze: cannot remove axis 0 of length 2 from shape [2, 3]"),
        bad("flip of an axis out of range", {"call": "Tensor.flip", "on": "a", "args": {"axes": [-3]}},
            "flip: axis -3 is out of range for shape [2, 3]"),
        bad("topk with k over the axis length", {"call": "Tensor.topk", "on": "a",
                                                  "args": {"k": 4, "axis": -1, "largest": True}},
            "topk: k (4) is larger than axis 1 of length 3 (shape [2, 3])"),
        bad("broadcastTo a shape that does not fit", {"call": "Tensor.broadcastTo", "on": "a",
                                                      "args": {"shape": [3, 3]}},
            "broadcastTo: cannot broadcast shape [2, 3] to shape [3, 3]"),
    ]


def lifetime_cases():
    big = np.arange(1024, dtype=np.float64)
    return [
        case("a released tensor is freed", open_gate(),
             {"call": "Actor.info", "on": "worker", "as_value": {"before": "info.liveObjects"}, "expect": {"ok": True}},
             make("a", big),
             {"call": "Tensor.meta", "on": "a", "expect": {"results": {"shape": [1024]}}},
             {"release": ["a"]},
             {"call": "Actor.info", "on": "worker", "retry": True,
              "expect": {"results": {"info": {"liveObjects": {"$atMost": "before"}}}}}),
        case("results used only inside a pipeline are freed with it", open_gate(),
             {"call": "Actor.info", "on": "worker", "as_value": {"before": "info.liveObjects"}, "expect": {"ok": True}},
             make("a", big),
             {"call": "Tensor.unary", "on": "a", "args": {"op": "neg"}, "as": {"n": "result"}},
             {"call": "Tensor.reduce", "on": "n", "args": {"op": "sum", "axis": 0, "allAxes": True, "keepDims": False},
              "as": {"s": "result"}},
             read("s", np.asarray(-big.sum())),
             {"release": ["a", "n", "s"]},
             {"call": "Actor.info", "on": "worker", "retry": True,
              "expect": {"results": {"info": {"liveObjects": {"$atMost": "before"}}}}}),
    ]


def transfer_cases():
    x = np.array([[1.0, -2.0], [3.0, 4.5]], np.float32)
    return [
        case("fetch copies a tensor from another worker and pipelines on the copy",
             open_gate(), open_gate("worker2", "gate2"), make("a", x, worker="worker2"),
             {"call": "TensorWorker.fetch", "on": "worker", "args": {"source": {"$ref": "a"}, "move": False},
              "as": {"b": "tensor"}},
             {"call": "Tensor.binaryScalar", "on": "b", "args": {"op": "mul", "scalar": {"float": 2}, "scalarOnLeft": False},
              "as": {"d": "result"}},
             read("d", x * 2), read("a", x)),
        case("fetch with move frees the source",
             open_gate(), open_gate("worker2", "gate2"), make("a", x, worker="worker2"),
             {"call": "TensorWorker.fetch", "on": "worker", "args": {"source": {"$ref": "a"}, "move": True},
              "as": {"b": "tensor"}},
             read("b", x),
             {"call": "Tensor.read", "on": "a", "expect": error("failed", "tensor has been moved")}),
    ]


def quota_cases():
    return [
        case("a tensor over the memory limit is refused as overloaded", open_gate(),
             {"call": "TensorWorker.full", "on": "worker",
              "args": {"dtype": "f64", "shape": [65536, 65536], "value": {"float": 0}},
              "expect": error("overloaded", contains="limit exceeded")}),
        case("after a refusal the worker still serves", open_gate(),
             {"call": "TensorWorker.full", "on": "worker",
              "args": {"dtype": "f64", "shape": [65536, 65536], "value": {"float": 0}},
              "expect": error("overloaded", contains="limit exceeded")},
             make("a", np.array([1, 2], np.int64)), read("a", np.array([1, 2], np.int64))),
    ]


FILES = {
    "gate": gate_cases, "actor": actor_cases, "schema": schema_cases, "ops": ops_cases,
    "pipelining": pipelining_cases, "errors": errors_cases, "bad_input": bad_input_cases,
    "lifetime": lifetime_cases, "transfer": transfer_cases, "quota": quota_cases,
    "dtypes": dtypes_cases,
}


def main():
    OUT.mkdir(exist_ok=True)
    total = 0
    for name, make_cases in FILES.items():
        cases = make_cases()
        total += len(cases)
        doc = {"format": 1, "cases": cases}
        (OUT / f"{name}.json").write_text(json.dumps(doc, indent=1) + "\n")
    print(f"wrote {total} cases to {OUT}")


if __name__ == "__main__":
    main()
